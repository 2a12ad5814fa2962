/* proxy/plain.c: the one-request plain-HTTP server of plain.h. */
#include "proxy/plain.h"

#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/base/list.h"
#include "proxy/log.h"

#define CONN_TIMEOUT_MS 5000 /* from accept to the answer */
#define LINGER_MS 1000       /* after our FIN: wait this long for the client's */

struct moat_plain_server {
    uv_loop_t *loop;           /* borrowed */
    char name[16];
    uv_tcp_t listener;
    int is_open;               /* the listener handle was initialised, not closed */
    int is_closing;            /* moat_plain_close(): freed once every handle is closed */
    struct moat_list conns;    /* struct moat_plain_conn by node */
    size_t n_conns, max_conns;
    int is_paused;             /* a client waits in the backlog for a free slot */
    moat_plain_on_head on_head;
    void *arg;
    char slab[4096];           /* every read lands here; nothing is kept */
};

struct moat_plain_conn {
    struct moat_list node;     /* in server->conns */
    struct moat_plain_server *server;
    uv_tcp_t tcp;
    uv_timer_t timer;          /* the connection's deadline */
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    struct moat_http_parser *parser; /* owned */
    char *out;                 /* owned: the answer, in uv_write until its callback */
    int closes_pending;        /* handles not yet closed; freed at 0 */
    int is_closing;
    int is_answered;           /* an answer was queued: input is discarded from now on */
    int is_shut;               /* our FIN went out */
    int peer_eof;              /* the client closed its side */
};

static const struct moat_http_limits limits = {
    .max_head_bytes = 4096,
    .max_fields = 32,
    .max_target_bytes = 1024,
};

static void accept_one(struct moat_plain_server *s);

static void free_if_done(struct moat_plain_server *s)
{
    if (s->is_closing && !s->is_open && s->n_conns == 0)
        free(s);
}

static void on_conn_closed(uv_handle_t *h)
{
    struct moat_plain_conn *c = h->data;
    if (--c->closes_pending > 0)
        return;
    struct moat_plain_server *s = c->server;
    moat_http_parser_free(c->parser);
    free(c->out);
    free(c);
    s->n_conns--;
    if (s->is_paused && s->is_open && !s->is_closing) {
        s->is_paused = 0;
        accept_one(s); /* the client waiting in the backlog; libuv polls the listener again */
    }
    free_if_done(s);
}

static void conn_close(struct moat_plain_conn *c)
{
    if (c->is_closing)
        return;
    c->is_closing = 1;
    moat_list_remove(&c->node);
    c->closes_pending = 2;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

static void on_conn_timer(uv_timer_t *t)
{
    conn_close(t->data);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct moat_plain_conn *c = req->data;
    if (c->is_closing)
        return;
    if (status < 0 || c->peer_eof) {
        conn_close(c);
        return;
    }
    c->is_shut = 1;
    uv_timer_start(&c->timer, on_conn_timer, LINGER_MS, 0);
}

static void on_write_done(uv_write_t *req, int status)
{
    struct moat_plain_conn *c = req->data;
    free(c->out); /* ours again, whatever the status */
    c->out = NULL;
    if (c->is_closing)
        return;
    if (status < 0 || uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        conn_close(c);
}

void moat_plain_answer(struct moat_plain_conn *c, int status, const char *extra,
                       const char *content_type, const char *body, size_t body_len,
                       int head_only)
{
    if (c->is_answered || c->is_closing)
        return;
    c->is_answered = 1;
    char head[2048];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s"
                     "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                     status, moat_http_reason(status), content_type, body_len,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "", /* RFC 9110 §15.5.6 */
                     extra != NULL ? extra : "");
    if (n < 0 || (size_t)n >= sizeof(head)) {
        conn_close(c);
        return;
    }
    size_t total = (size_t)n + (head_only ? 0 : body_len);
    c->out = malloc(total);
    if (c->out == NULL) {
        conn_close(c);
        return;
    }
    memcpy(c->out, head, (size_t)n);
    if (!head_only && body_len > 0)
        memcpy(c->out + n, body, body_len);
    uv_buf_t buf = uv_buf_init(c->out, (unsigned)total);
    if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, on_write_done) != 0) {
        free(c->out);
        c->out = NULL;
        conn_close(c);
    }
}

void moat_plain_answer_text(struct moat_plain_conn *c, int status, const char *text,
                            int head_only)
{
    moat_plain_answer(c, status, NULL, "text/plain; charset=utf-8", text, strlen(text),
                      head_only);
}

static int on_head(void *ctx, const struct moat_http_head *h)
{
    struct moat_plain_conn *c = ctx;
    c->server->on_head(c->server->arg, c, h);
    return -1; /* answered: stop parsing (a body, the next request: nothing more is read) */
}

static const struct moat_http_parser_cbs parser_cbs = {.on_head = on_head};

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct moat_plain_conn *c = h->data;
    buf->base = c->server->slab;
    buf->len = sizeof(c->server->slab);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct moat_plain_conn *c = st->data;
    if (nread == 0 || c->is_closing)
        return;
    if (nread < 0) {
        c->peer_eof = 1;
        uv_read_stop(st);
        /* An answer still being written finishes first (its callbacks close then). */
        if (!c->is_answered || c->is_shut)
            conn_close(c);
        return;
    }
    if (c->is_answered)
        return; /* lingering: discarded */
    size_t used;
    if (moat_http_parser_feed(c->parser, buf->base, (size_t)nread, &used) == MOAT_HTTP_ERROR &&
        !c->is_answered) {
        int status = moat_http_parser_error_status(c->parser);
        char text[200];
        snprintf(text, sizeof(text), "%s\n", moat_http_parser_error_reason(c->parser));
        moat_log(MOAT_LOG_DEBUG, "%s bad request: %d %s", c->server->name, status,
                 moat_http_parser_error_reason(c->parser));
        moat_plain_answer_text(c, status, text, 0);
    }
}

static void accept_one(struct moat_plain_server *s)
{
    struct moat_plain_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return; /* the client waits in the backlog until memory frees up or it gives up */
    s->n_conns++;
    c->server = s;
    moat_list_init(&c->node);
    moat_list_push_back(&s->conns, &c->node);
    c->tcp.data = c->timer.data = c->write_req.data = c->shutdown_req.data = c;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    c->parser = moat_http_parser_new(MOAT_HTTP_REQUEST, &limits, &parser_cbs, c);
    if (c->parser == NULL) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_conn_timer, CONN_TIMEOUT_MS, 0);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct moat_plain_server *s = server->data;
    if (status < 0) {
        moat_log(MOAT_LOG_WARN, "%s accept: %s", s->name, uv_strerror(status));
        return;
    }
    if (s->n_conns >= s->max_conns) {
        /* Not accepting makes libuv stop polling the listener: the client waits in the
         * kernel's backlog until a connection ends (on_conn_closed). */
        s->is_paused = 1;
        return;
    }
    accept_one(s);
}

static void on_listener_closed(uv_handle_t *h)
{
    struct moat_plain_server *s = h->data;
    s->is_open = 0;
    free_if_done(s);
}

struct moat_plain_server *moat_plain_listen(uv_loop_t *loop, const struct moat_cfg_hostport *hp,
                                            const char *name, size_t max_conns,
                                            moat_plain_on_head on_head, void *arg,
                                            struct sockaddr_storage *bound, char *err,
                                            size_t err_len)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    char port[8];
    snprintf(port, sizeof(port), "%u", hp->port);
    struct addrinfo *res;
    int rc = getaddrinfo(hp->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_len, "%s", gai_strerror(rc));
        return NULL;
    }
    struct moat_plain_server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        freeaddrinfo(res);
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    s->loop = loop;
    snprintf(s->name, sizeof(s->name), "%s", name);
    moat_list_init(&s->conns);
    s->max_conns = max_conns;
    s->on_head = on_head;
    s->arg = arg;
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    s->is_open = 1;
    int e = uv_tcp_bind(&s->listener, res->ai_addr, 0);
    freeaddrinfo(res);
    if (e == 0)
        e = uv_listen((uv_stream_t *)&s->listener, 64, on_connection);
    if (e != 0) {
        snprintf(err, err_len, "%s", uv_strerror(e));
        moat_plain_close(s);
        return NULL;
    }
    int len = sizeof(*bound);
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)bound, &len);
    return s;
}

void moat_plain_close(struct moat_plain_server *s)
{
    if (s == NULL || s->is_closing)
        return;
    s->is_closing = 1;
    if (s->is_open)
        uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    while (!moat_list_is_empty(&s->conns))
        conn_close(moat_list_entry(s->conns.next, struct moat_plain_conn, node));
    free_if_done(s);
}

void moat_plain_url(const struct sockaddr_storage *addr, char *out, size_t cap)
{
    char ip[64] = "?";
    if (addr->ss_family == AF_INET6) {
        uv_ip6_name((const struct sockaddr_in6 *)addr, ip, sizeof(ip));
        snprintf(out, cap, "http://[%s]:%d", ip,
                 ntohs(((const struct sockaddr_in6 *)addr)->sin6_port));
    } else {
        uv_ip4_name((const struct sockaddr_in *)addr, ip, sizeof(ip));
        snprintf(out, cap, "http://%s:%d", ip, ntohs(((const struct sockaddr_in *)addr)->sin_port));
    }
}
