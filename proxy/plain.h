/* proxy/plain.h: a small plain-HTTP/1.1 server on the control loop, one request per
 * connection: the admin listener and the port-80 redirector are two of them. The head is
 * parsed with http/'s strict parser (bounded: 4 KiB, 32 fields), the answer never depends on
 * a body, and the connection closes after it (FIN, then a short linger so unread input does
 * not turn into a reset that destroys the answer). A connection lives at most 5 s; at most
 * max_conns are open, more wait in the kernel's backlog. */
#ifndef MOAT_PLAIN_H
#define MOAT_PLAIN_H
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

#include "config/config.h"
#include "http/http.h"

struct moat_plain_server;
struct moat_plain_conn;

/* A request head arrived: answer it (moat_plain_answer), now or never. */
typedef void (*moat_plain_on_head)(void *arg, struct moat_plain_conn *c,
                                   const struct moat_http_head *h);

/* Binds hp and listens on loop; name ("admin", "redirect") names it in logs and errors; the
 * address it got is in *bound. NULL with err set. */
struct moat_plain_server *moat_plain_listen(uv_loop_t *loop, const struct moat_cfg_hostport *hp,
                                            const char *name, size_t max_conns,
                                            moat_plain_on_head on_head, void *arg,
                                            struct sockaddr_storage *bound, char *err,
                                            size_t err_len);

/* Queues the whole answer, with Connection: close and Cache-Control: no-store; extra (NULL or
 * header lines, each ending in CRLF) is added to the head; head_only for HEAD requests. A
 * second answer on one connection is ignored. */
void moat_plain_answer(struct moat_plain_conn *c, int status, const char *extra,
                       const char *content_type, const char *body, size_t body_len,
                       int head_only);
void moat_plain_answer_text(struct moat_plain_conn *c, int status, const char *text,
                            int head_only);

/* Closes the listener and every connection; the loop runs their close callbacks, then frees
 * the server. NULL: nothing. */
void moat_plain_close(struct moat_plain_server *s);

/* "http://127.0.0.1:9901" for addr. */
void moat_plain_url(const struct sockaddr_storage *addr, char *out, size_t cap);

#endif
