/* proxy/conn_internal.h: what the three files of a client connection share (conn.c: the
 * client side, from accept to close; exchange.c: one request and its end, the request parser's
 * callbacks; relay.c: the backend side, tunnels, the response parser's callbacks). Not for
 * anyone else: the rest of proxy/ uses conn.h. */
#ifndef MOAT_CONN_INTERNAL_H
#define MOAT_CONN_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"
#include "proxy/conn.h"
#include "proxy/log.h"

/* Requests up to this size are kept whole until the final response head, so one whose pooled
 * connection turns out dead, or whose backend closes without answering or answers 503, can be
 * sent again (see ARCHITECTURE.md, Retries). */
#define REPLAY_MAX 65536

extern const char *const conn_state_names[];

#define conn_log(c, level, fmt, ...)                                                               \
    moat_log(level, "w%u c%llu %s %s " fmt, (c)->w->id, (unsigned long long)(c)->id, (c)->peer,    \
             conn_state_names[(c)->state], __VA_ARGS__)

extern const struct moat_http_parser_cbs conn_req_cbs;

/* the client side (conn.c) */
void conn_begin_shutdown(struct moat_conn *c);
void conn_cli_flush(struct moat_conn *c);
void conn_cli_send(struct moat_conn *c, const char *data, size_t len);
void conn_pump(struct moat_conn *c);
void conn_rx_block(struct moat_conn *c, unsigned why);
void conn_rx_unblock(struct moat_conn *c, unsigned why);
void conn_set_deadline(struct moat_conn *c, uint64_t ms);
void conn_set_state(struct moat_conn *c, enum moat_conn_state to);

/* the exchange (exchange.c) */
void conn_complete_exchange(struct moat_conn *c);
size_t conn_metrics_pool(const struct moat_conn *c);
void conn_pick_end(struct moat_conn *c);
void conn_report_backend(struct moat_conn *c, int failed);
void conn_respond_error(struct moat_conn *c, int status, const char *detail);
void conn_write_access_log(struct moat_conn *c);
void conn_exchange_release(struct moat_conn *c);

/* the backend side (relay.c) */
void conn_on_backend_slot(struct moat_up_waiter *waiter); /* a slot this waited for is free */
struct moat_http_parser *conn_new_resp_parser(struct moat_conn *c);
void conn_start_upstream(struct moat_conn *c);
void conn_tunnel_client_done(struct moat_conn *c);
void conn_tunnel_to_backend(struct moat_conn *c, const char *data, size_t len);
int conn_up_flush(struct moat_conn *c);
size_t conn_up_pending(const struct moat_conn *c);
int conn_up_queue(struct moat_conn *c, const char *data, size_t len);

#endif
