/* proxy/conn.c: one client connection, from accept to close: TLS over memory, request parsing,
 * the exchange with a leased upstream, backpressure both ways, timeouts, and orderly or abortive
 * ends. It owns its TLS session, parsers, queues and handles; it leases at most one upstream. */
#include "proxy/conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "proxy/accesslog.h"
#include "proxy/balance.h"
#include "proxy/base/tcp.h"
#include "proxy/log.h"
#include "proxy/reqid.h"
#include "proxy/metrics.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"
#include "tls/tls.h"

/* Requests up to this size are kept whole until the first response byte, so one whose pooled
 * connection turns out dead can be sent again (see ARCHITECTURE.md, Retries). */
#define REPLAY_MAX 65536

/* One uv_write toward the client: owns its chunks until the callback, whatever the status. */
struct cli_write {
    uv_write_t req;
    struct moat_conn *c; /* borrowed: write callbacks run before the close callback */
    size_t n;
    size_t bytes;
    struct moat_chunk *chunks[16];
};

static const char *const state_names[] = {"HANDSHAKE", "HEAD",     "RELAY",
                                          "TUNNEL",    "SHUTDOWN", "CLOSING"};

#define conn_log(c, level, fmt, ...)                                                               \
    moat_log(level, "w%u c%llu %s %s " fmt, (c)->w->id, (unsigned long long)(c)->id, (c)->peer,    \
             state_names[(c)->state], __VA_ARGS__)

static void pump(struct moat_conn *c);
static void cli_flush(struct moat_conn *c);
static void begin_shutdown(struct moat_conn *c);
static void respond_error(struct moat_conn *c, int status, const char *detail);
static void complete_exchange(struct moat_conn *c);
static struct moat_http_parser *new_resp_parser(struct moat_conn *c);
static void tunnel_end(struct moat_conn *c, const char *why);
static void pick_end(struct moat_conn *c);
static void exchange_release(struct moat_conn *c);
static int may_try_another(struct moat_conn *c);
static void start_upstream(struct moat_conn *c);

static void set_state(struct moat_conn *c, enum moat_conn_state to)
{
    moat_log(MOAT_LOG_DEBUG, "w%u c%llu %s -> %s", c->w->id, (unsigned long long)c->id,
             state_names[c->state], state_names[to]);
    c->state = to;
}

/* ---- deadlines ---------------------------------------------------------------------------- */

static void on_conn_timer(void *owner);

/* One deadline carries the current state's timeout; repeating, so moat_deadline_again() moves
 * it on with traffic. */
static void set_deadline(struct moat_conn *c, uint64_t ms)
{
    if (ms == 0)
        moat_deadline_stop(&c->deadline);
    else
        moat_deadline_start(&c->deadline, ms, 1);
}

static void on_conn_timer(void *owner)
{
    struct moat_conn *c = owner;
    switch (c->state) {
    case MOAT_CONN_HANDSHAKE:
        moat_metrics_handshake(c->w->metrics, MOAT_METRICS_HS_FAILED);
        moat_metrics_client_timeout(c->w->metrics, MOAT_METRICS_CT_HANDSHAKE);
        conn_log(c, MOAT_LOG_INFO, "tls handshake timeout after %llu ms",
                 (unsigned long long)c->rt->handshake_timeout_ms);
        moat_conn_close(c);
        break;
    case MOAT_CONN_HEAD:
        if (!c->ex.is_head_timed) {
            begin_shutdown(c); /* keep-alive idle: an ordinary end */
            break;
        }
        moat_metrics_client_timeout(c->w->metrics, MOAT_METRICS_CT_HEAD);
        conn_log(c, MOAT_LOG_INFO, "request head timeout after %llu ms",
                 (unsigned long long)c->rt->head_timeout_ms);
        respond_error(c, 408, "request head not received in time");
        break;
    case MOAT_CONN_RELAY:
        if (c->ex.is_waiting) {
            conn_log(c, MOAT_LOG_INFO, "no backend connection free within %llu ms "
                     "(--max-backend-connections)",
                     (unsigned long long)c->rt->connect_timeout_ms);
            respond_error(c, 503, "backend busy");
            break;
        }
        moat_metrics_client_timeout(c->w->metrics, MOAT_METRICS_CT_BODY);
        conn_log(c, MOAT_LOG_INFO, "request body stalled for %llu ms",
                 (unsigned long long)c->rt->body_gap_ms);
        respond_error(c, 408, "request body not received in time");
        break;
    case MOAT_CONN_TUNNEL:
        conn_log(c, MOAT_LOG_INFO, "tunnel idle for %llu ms (--tunnel-timeout)",
                 (unsigned long long)c->rt->tunnel_idle_ms);
        begin_shutdown(c);
        break;
    case MOAT_CONN_SHUTDOWN:
    case MOAT_CONN_CLOSING:
        moat_conn_close(c); /* the linger is over (a stalled flush is the send deadline's) */
        break;
    }
}

/* ---- a client that stops reading ---------------------------------------------------------- */

/* What the client has taken of our bytes: what its TCP acknowledged, which grows with any
 * progress, however slow; the socket turning writable (libuv's view) can lag by seconds.
 * UINT64_MAX when the kernel cannot tell: then every check counts as progress, never a cut. */
static uint64_t send_taken(struct moat_conn *c)
{
    uv_os_fd_t fd;
    uint64_t acked;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0 || moat_tcp_bytes_acked(fd, &acked) != 0)
        return UINT64_MAX - c->send_taken; /* differs from the last value */
    return acked;
}

/* After bytes went to the wire and after each write completes: the send deadline watches
 * exactly while some wait in uv_write. It checks every quarter of --send-timeout, so a stalled
 * client is cut between 1 and 1.25 timeouts after the last byte it took. */
static void send_watch(struct moat_conn *c)
{
    if (c->cli_wire.inflight == 0) {
        moat_deadline_stop(&c->send_deadline);
        return;
    }
    if (moat_deadline_is_due(&c->send_deadline))
        return; /* already watching: progress is measured from the last check */
    c->send_taken = send_taken(c);
    c->send_progress_ms = uv_now(&c->w->loop);
    uint64_t check_ms = c->rt->send_stall_ms / 4;
    moat_deadline_start(&c->send_deadline, check_ms > 0 ? check_ms : 1, 1);
}

static void on_send_check(void *owner)
{
    struct moat_conn *c = owner;
    uint64_t now = uv_now(&c->w->loop);
    uint64_t taken = send_taken(c);
    if (taken != c->send_taken) { /* the client reads: a slow but steady reader stays */
        c->send_taken = taken;
        c->send_progress_ms = now;
        return;
    }
    if (now - c->send_progress_ms < c->rt->send_stall_ms)
        return;
    /* Holding the connection (and its backend connection, which would otherwise wait on our
     * backpressure for ever) is all such a client does: end both, nothing pooled. */
    moat_metrics_client_timeout(c->w->metrics, MOAT_METRICS_CT_SEND);
    conn_log(c, MOAT_LOG_INFO, "client took no bytes for %llu ms (--send-timeout), %zu waiting: "
             "closing it and its backend connection",
             (unsigned long long)(now - c->send_progress_ms),
             uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp));
    moat_conn_close(c);
}

/* ---- reads from the client ---------------------------------------------------------------- */

static void on_cli_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct moat_conn *c = h->data;
    (void)suggested;
    buf->base = c->w->slab;
    buf->len = sizeof(c->w->slab);
}

static void on_cli_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Reads stop at once for backpressure and EOF. Otherwise they stop only when READ_AHEAD bytes
 * of ciphertext wait unprocessed in the TLS session (a request waiting behind the one being
 * served, a handshake waiting its turn): a client that simply waits for its response (nearly
 * all do) then costs no epoll_ctl per request, and no client can make moat buffer more. */
#define READ_AHEAD (32 * 1024)

static void rx_apply(struct moat_conn *c)
{
    if (c->state == MOAT_CONN_CLOSING || c->state == MOAT_CONN_SHUTDOWN)
        return;
    int stop = (c->rx_blocked & ~MOAT_RX_PIPELINE) != 0 ||
               moat_tls_session_buffered(c->tls) >= READ_AHEAD;
    if (stop && !c->rx_stopped)
        uv_read_stop((uv_stream_t *)&c->tcp);
    else if (!stop && c->rx_stopped)
        uv_read_start((uv_stream_t *)&c->tcp, on_cli_alloc, on_cli_read);
    c->rx_stopped = stop;
}

static void rx_block(struct moat_conn *c, unsigned why)
{
    c->rx_blocked |= why;
    rx_apply(c);
}

static void rx_unblock(struct moat_conn *c, unsigned why)
{
    c->rx_blocked &= ~why;
    rx_apply(c);
}

/* ---- writes to the client ----------------------------------------------------------------- */

static int on_tls_emit(void *ctx, const void *data, size_t len)
{
    struct moat_conn *c = ctx;
    return moat_bufq_append(&c->to_cli, data, len);
}

static size_t cli_pending(const struct moat_conn *c)
{
    size_t staged = c->w->stage_conn == c ? c->w->stage_len : 0;
    return c->to_cli.bytes + c->cli_wire.inflight + staged;
}

/* Encrypts len bytes of plaintext into c's queue. 0 or -1 (the session failed). */
static int seal(struct moat_conn *c, const char *data, size_t len)
{
    if (moat_tls_session_write(c->tls, data, len) != MOAT_TLS_OK) {
        const char *text;
        int code = moat_tls_session_last_error(c->tls, &text);
        conn_log(c, MOAT_LOG_INFO, "tls write failed: -0x%04x (%s)", (unsigned)-code, text);
        return -1;
    }
    return 0;
}

/* Encrypts the worker's staged plaintext into c's queue. 0 or -1 (the session failed). */
static int stage_seal(struct moat_conn *c)
{
    struct moat_worker *w = c->w;
    if (w->stage_conn != c || w->stage_len == 0)
        return 0;
    size_t len = w->stage_len;
    w->stage_len = 0;
    w->stage_conn = NULL;
    return seal(c, w->stage, len);
}

/* Plaintext for the client is coalesced in the worker's stage, so a head and a small body (or
 * a chunk head, its data and CRLF) leave in one TLS record instead of three. */
static void cli_send(struct moat_conn *c, const char *data, size_t len)
{
    struct moat_worker *w = c->w;
    if (w->stage_conn != c && w->stage_len > 0)
        cli_flush(w->stage_conn); /* every handler flushes before returning: defensive only */
    w->stage_conn = c;
    while (len > 0) {
        if (w->stage_len == 0 && len >= sizeof(w->stage)) {
            /* Whole records of a body: sealed straight from where they are, not copied into
             * the stage first (bulk transfers spent a quarter of their CPU in copies). */
            size_t n = len - len % sizeof(w->stage);
            if (seal(c, data, n) != 0) {
                w->stage_conn = NULL;
                return;
            }
            data += n;
            len -= n;
            continue;
        }
        size_t room = sizeof(w->stage) - w->stage_len;
        size_t n = len < room ? len : room;
        memcpy(w->stage + w->stage_len, data, n);
        w->stage_len += n;
        w->stage_conn = c;
        data += n;
        len -= n;
        if (w->stage_len == sizeof(w->stage) && stage_seal(c) != 0) {
            w->stage_len = 0;
            w->stage_conn = NULL;
            return; /* cli_flush() notices the dead session through the closed state */
        }
    }
}

static void maybe_shutdown(struct moat_conn *c);

static void on_cli_write_done(struct moat_wire *wire, int status)
{
    struct moat_conn *c = moat_wire_owner(wire, struct moat_conn, cli_wire);
    if (c->state == MOAT_CONN_CLOSING)
        return;
    if (status < 0) {
        conn_log(c, MOAT_LOG_DEBUG, "write to client failed: %s", uv_err_name(status));
        moat_conn_close(c);
        return;
    }
    send_watch(c);
    if (c->state == MOAT_CONN_SHUTDOWN) {
        maybe_shutdown(c);
        return;
    }
    if (c->up != NULL && cli_pending(c) <= c->rt->low_water)
        moat_upstream_rx_unblock(c->up, MOAT_RX_PEER_FULL);
}

static void cli_flush(struct moat_conn *c)
{
    if (c->state == MOAT_CONN_CLOSING)
        return;
    if (stage_seal(c) != 0) {
        moat_conn_close(c);
        return;
    }
    moat_metrics_bytes_out(c->w->metrics, c->to_cli.bytes);
    long err = moat_wire_send(&c->cli_wire, &c->to_cli);
    if (err < 0) {
        conn_log(c, MOAT_LOG_DEBUG, "write to client failed: %s", uv_err_name((int)err));
        moat_conn_close(c);
        return;
    }
    send_watch(c);
    if (c->up != NULL) {
        if (cli_pending(c) > c->rt->high_water)
            moat_upstream_rx_block(c->up, MOAT_RX_PEER_FULL);
        else if (cli_pending(c) <= c->rt->low_water)
            moat_upstream_rx_unblock(c->up, MOAT_RX_PEER_FULL);
    }
    maybe_shutdown(c);
}

/* ---- orderly and abortive ends ------------------------------------------------------------ */

static void on_cli_closed(uv_handle_t *h)
{
    struct moat_conn *c = h->data;
    if (--c->closes_pending > 0)
        return;
    struct moat_worker *w = c->w;
    moat_tls_session_free(c->tls);
    moat_http_parser_free(c->req);
    moat_http_parser_free(c->resp);
    moat_bufq_clear(&c->to_cli);
    moat_bufq_clear(&c->to_up);
    free(c->pending);
    free(c->ex.replay);
    free(c->ex.log_req);
    moat_list_remove(&c->node);
    struct moat_gen *g = c->gen;
    free(c);
    moat_gen_release(g);
    moat_worker_conn_gone(w);
}

void moat_conn_close(struct moat_conn *c)
{
    if (c->state == MOAT_CONN_CLOSING)
        return; /* idempotent: a timeout, an error and EOF may all land here */
    set_state(c, MOAT_CONN_CLOSING);
    moat_list_remove(&c->hs_node);   /* a no-op unless it waits for a handshake turn */
    moat_list_remove(&c->waiter.node); /* or for a backend slot */
    exchange_release(c);
    moat_upstream_release(c->up, 0);
    c->up = NULL;
    if (c->w->stage_conn == c) {
        c->w->stage_len = 0;
        c->w->stage_conn = NULL;
    }
    c->closes_pending = 3;
    uv_close((uv_handle_t *)&c->tcp, on_cli_closed);
    moat_deadline_close(&c->deadline, on_cli_closed);
    moat_deadline_close(&c->send_deadline, on_cli_closed);
}

static void on_cli_shutdown(uv_shutdown_t *req, int status)
{
    struct moat_conn *c = req->data;
    if (c->state == MOAT_CONN_CLOSING)
        return;
    if (status < 0) {
        moat_conn_close(c);
        return;
    }
    /* Closing with unread input would send RST and could destroy the response in flight, so
     * read and discard until the client closes, for a bounded time. */
    set_deadline(c, c->rt->linger_ms);
    c->rx_blocked = 0;
    c->rx_stopped = 0;
    uv_read_start((uv_stream_t *)&c->tcp, on_cli_alloc, on_cli_read);
    if (c->peer_eof)
        moat_conn_close(c);
}

static void maybe_shutdown(struct moat_conn *c)
{
    if (c->state != MOAT_CONN_SHUTDOWN || c->shutdown_started || cli_pending(c) != 0)
        return;
    c->shutdown_started = 1;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_cli_shutdown) != 0)
        moat_conn_close(c);
}

/* Our last bytes (and close_notify) go out, then FIN, then a bounded linger. */
static void begin_shutdown(struct moat_conn *c)
{
    if (c->state == MOAT_CONN_SHUTDOWN || c->state == MOAT_CONN_CLOSING)
        return;
    moat_upstream_release(c->up, 0);
    c->up = NULL;
    int was_handshaking = c->state == MOAT_CONN_HANDSHAKE;
    set_state(c, MOAT_CONN_SHUTDOWN);
    if (!c->is_plain_reject && !was_handshaking) {
        if (stage_seal(c) != 0) {
            moat_conn_close(c);
            return;
        }
        moat_tls_session_close_notify(c->tls);
    }
    /* Until the FIN, only the send deadline runs: a client that stops reading our last
     * response does not hold the connection for ever. */
    set_deadline(c, 0);
    rx_block(c, MOAT_RX_EOF);
    cli_flush(c);
}

void moat_conn_drain(struct moat_conn *c)
{
    switch (c->state) {
    case MOAT_CONN_HANDSHAKE:
        moat_conn_close(c);
        break;
    case MOAT_CONN_HEAD:
        if (!c->ex.is_head_timed && c->pending == NULL)
            begin_shutdown(c);
        else
            c->ex.is_keep_alive = 0; /* a head is arriving: serve it, then close */
        break;
    case MOAT_CONN_RELAY:
        c->ex.is_keep_alive = 0;
        break;
    case MOAT_CONN_TUNNEL: /* in flight until it ends or the drain timeout closes it */
    case MOAT_CONN_SHUTDOWN:
    case MOAT_CONN_CLOSING:
        break;
    }
}

/* ---- the exchange ------------------------------------------------------------------------- */

/* Passive health: how the exchange with the chosen backend went, once per attempt. */
static void report_backend(struct moat_conn *c, int failed)
{
    if (c->ex.tries == 0 || c->ex.is_reported)
        return;
    c->ex.is_reported = 1;
    const struct moat_rt_pool *rp = &c->rt->pools[c->ex.pool];
    struct moat_target *t = c->rt->backends[c->ex.backend].target;
    uint64_t now = uv_now(&c->w->loop);
    if (!failed) {
        moat_target_succeeded(t, &rp->passive, now);
        return;
    }
    uint64_t ms = moat_target_failed(t, &rp->members, &rp->passive, now);
    if (ms != 0)
        conn_log(c, MOAT_LOG_WARN, "backend %s ejected for %llu ms after %u failures in a row",
                 t->addr_text, (unsigned long long)ms, rp->passive.consecutive_errors);
}

/* The exchange no longer counts as in flight on its backend (least_request). */
static void pick_end(struct moat_conn *c)
{
    if (c->ex.is_counted)
        moat_picker_ended(c->gen->picker, c->ex.pool, c->ex.backend);
    c->ex.is_counted = 0;
}

/* The exchange is over: what it held of the choosing state goes back. */
static void exchange_release(struct moat_conn *c)
{
    pick_end(c);
    if (c->ex.is_retry)
        moat_picker_retry_end(c->gen->picker, c->ex.pool);
    c->ex.is_retry = 0;
}

static void exchange_reset(struct moat_conn *c)
{
    exchange_release(c);
    free(c->ex.replay);
    free(c->ex.log_req);
    memset(&c->ex, 0, sizeof(c->ex));
}

static const struct moat_http_field *find_field(const struct moat_http_head *h, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < h->n_fields; i++)
        if (h->fields[i].name_len == len && strncasecmp(h->fields[i].name, name, len) == 0)
            return &h->fields[i];
    return NULL;
}

/* Keeps what the access log needs of a request head, and settles the request id: the client's
 * when it sent one sane X-Request-Id, else a new one. */
static void remember_for_log(struct moat_conn *c, const struct moat_http_head *h)
{
    free(c->ex.log_req);
    c->ex.log_req = NULL;
    if (c->rt->cfg->access_log) {
        const struct moat_http_field *ref = find_field(h, "Referer");
        const struct moat_http_field *ua = find_field(h, "User-Agent");
        c->ex.log_req = moat_access_req_new(h->method_name, h->version_minor, h->target,
                                            h->target_len, ref ? ref->value : NULL,
                                            ref ? ref->value_len : 0, ua ? ua->value : NULL,
                                            ua ? ua->value_len : 0); /* NULL: logged as "-" */
    }
    const char *id;
    size_t id_len;
    if (moat_http_request_id_get(h, &id, &id_len)) {
        memcpy(c->ex.request_id, id, id_len);
        c->ex.request_id[id_len] = '\0';
    } else {
        moat_reqid_generate(c->ex.request_id);
    }
}

/* The admin metrics slot of the request's pool; a request refused before it was routed counts
 * in the default pool. */
static size_t metrics_pool(const struct moat_conn *c)
{
    return c->rt->pools[c->ex.has_head ? c->ex.pool : c->rt->cfg->default_pool].metrics_slot;
}

static void write_access_log(struct moat_conn *c)
{
    /* Once per request, access log or not. */
    moat_metrics_request(c->w->metrics, metrics_pool(c), c->ex.status,
                         uv_now(&c->w->loop) - c->ex.start_ms);
    const struct moat_worker *w = c->w;
    if (!c->rt->cfg->access_log)
        return;
    /* A line is at most 64 KiB: one buffer per thread, not on the stack of every callback. */
    static _Thread_local char line[MOAT_ACCESSLOG_LINE_MAX];
    if (c->ex.request_id[0] == '\0') /* no head was parsed (400, 408): still one id per line */
        moat_reqid_generate(c->ex.request_id);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t loop_now = uv_now((uv_loop_t *)&w->loop);
    struct moat_access_rec r = {
        .time_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000,
        .client_ip = c->peer_ip,
        .req = c->ex.log_req,
        .status = c->ex.status,
        .bytes_in = c->ex.body_bytes_in,
        .bytes_out = c->ex.body_bytes_out,
        .duration_ms = loop_now - c->ex.start_ms,
        .upstream = c->ex.tries > 0 ? c->rt->backends[c->ex.backend].target->addr_text : NULL,
        .upstream_ms = c->ex.tries > 0 ? (int64_t)(loop_now - c->ex.up_start_ms) : -1,
        .pool = c->ex.tries > 0 ? c->rt->pools[c->ex.pool].name : NULL,
        .tls_version = moat_tls_session_version(c->tls),
        .tls_cipher = moat_tls_session_cipher(c->tls),
        .request_id = c->ex.request_id,
    };
    r.sni = moat_tls_session_sni(c->tls, &r.sni_len);
    size_t n = moat_accesslog_format(c->rt->cfg->access_format, &r, line, sizeof(line));
    moat_log_access(line, (int)n);
}

/* The response was relayed whole (or an error answered): log, hand the upstream back, and go on
 * with the next request or end the connection. */
static void complete_exchange(struct moat_conn *c)
{
    write_access_log(c);
    int reuse_up = c->ex.up_reusable && c->ex.req_done && c->to_up.bytes == 0;
    moat_upstream_release(c->up, reuse_up);
    c->up = NULL;
    moat_http_parser_reset(c->resp); /* the next exchange may use another backend connection */
    moat_bufq_clear(&c->to_up);
    int keep = c->ex.plan.is_keep_alive && c->ex.is_keep_alive && c->ex.req_done &&
               !c->peer_eof && !c->w->is_draining;
    exchange_reset(c);
    if (!keep) {
        begin_shutdown(c);
        return;
    }
    set_state(c, MOAT_CONN_HEAD);
    moat_http_parser_next(c->req);
    set_deadline(c, c->rt->idle_timeout_ms);
    rx_unblock(c, MOAT_RX_PIPELINE);
    pump(c); /* the next request may be buffered whole already */
}

/* Answers with a short error response of moat's own. After the response head went out only an
 * abort is left: the client sees the truncation. */
static void respond_error(struct moat_conn *c, int status, const char *detail)
{
    if (c->state == MOAT_CONN_CLOSING || c->state == MOAT_CONN_SHUTDOWN)
        return;
    if (c->ex.head_sent) {
        conn_log(c, MOAT_LOG_INFO, "aborting response after its head: %s", detail);
        moat_conn_close(c);
        return;
    }
    moat_upstream_release(c->up, 0);
    c->up = NULL;
    moat_list_remove(&c->waiter.node);
    c->ex.is_waiting = 0;
    /* Backend failures leave the client's framing intact; client errors do not. */
    int keep = status >= 500 && c->ex.req_done && c->ex.is_keep_alive;
    char buf[512];
    long n = moat_http_error_write(status, detail, keep, buf, sizeof(buf));
    if (c->state == MOAT_CONN_HANDSHAKE || n < 0) {
        moat_conn_close(c);
        return;
    }
    if (c->ex.start_ms == 0)
        c->ex.start_ms = uv_now(&c->w->loop);
    moat_metrics_error_response(c->w->metrics, metrics_pool(c), status);
    cli_send(c, buf, (size_t)n);
    const char *body = strstr(buf, "\r\n\r\n"); /* the access log counts body bytes */
    c->ex.body_bytes_out = body != NULL ? (uint64_t)(buf + n - body - 4) : 0;
    c->ex.status = status;
    c->ex.head_sent = 1;
    c->ex.resp_done = 1;
    c->ex.plan.is_keep_alive = keep;
    c->ex.plan.framing = MOAT_HTTP_BODY_LENGTH;
    complete_exchange(c);
    cli_flush(c);
}

/* ---- toward the backend ------------------------------------------------------------------- */

/* Queues request bytes for the backend (and keeps them for a resend while small). Called from
 * request parser callbacks: on failure it fails the parse, which answers 500. */
static int up_queue(struct moat_conn *c, const char *data, size_t len)
{
    if (moat_bufq_append(&c->to_up, data, len) != 0) {
        moat_http_parser_fail(c->req, 500, "out of memory");
        return -1;
    }
    if (!c->ex.replay_ok)
        return 0;
    char *r = NULL;
    if (c->ex.replay_len + len <= REPLAY_MAX)
        r = realloc(c->ex.replay, c->ex.replay_len + len);
    if (r == NULL) {
        free(c->ex.replay); /* too big to resend: a retry is no longer possible */
        c->ex.replay = NULL;
        c->ex.replay_ok = 0;
        return 0;
    }
    memcpy(r + c->ex.replay_len, data, len);
    c->ex.replay = r;
    c->ex.replay_len += len;
    return 0;
}

/* What the leased upstream tells this connection. */
static void on_up_connected(void *owner, int status);
static void on_up_read(void *owner, const char *buf, ssize_t nread);
static void on_up_silence(void *owner);
static void on_up_drained(void *owner);
static void on_backend_slot(struct moat_up_waiter *waiter);

static const struct moat_upstream_ops up_ops = {
    .on_connected = on_up_connected,
    .on_read = on_up_read,
    .on_silence = on_up_silence,
    .on_drained = on_up_drained,
};

/* The leased backend's address, for logs. */
static const char *up_name(const struct moat_conn *c)
{
    return c->rt->backends[moat_upstream_backend(c->up)].target->addr_text;
}

static size_t up_pending(const struct moat_conn *c)
{
    return c->to_up.bytes + (c->up != NULL ? moat_upstream_inflight(c->up) : 0);
}

/* Hands queued request bytes to the backend connection. Returns 1 when that lifted the
 * backpressure on the client (the socket took the bytes at once, so no write callback will
 * come to lift it): the caller must pump the client again. */
static int up_flush(struct moat_conn *c)
{
    if (c->up == NULL || !moat_upstream_is_ready(c->up) || c->to_up.head == NULL)
        return 0;
    int err = moat_upstream_write(c->up, &c->to_up);
    if (err != 0) {
        on_up_read(c, NULL, err);
        return 0;
    }
    if (!(c->rx_blocked & MOAT_RX_PEER_FULL) || up_pending(c) > c->rt->low_water)
        return 0;
    rx_unblock(c, MOAT_RX_PEER_FULL);
    return 1;
}

static int lease_upstream(struct moat_conn *c, size_t backend, int fresh_only);

/* The leased connection is ready: the request can flow, and the response is due once the whole
 * request has been sent (a slow upload is not the backend's silence). */
static void up_ready(struct moat_conn *c)
{
    moat_http_parser_set_request_method(c->resp, c->ex.method);
    if (c->ex.req_done)
        moat_upstream_set_deadline(c->up, c->rt->backend_gap_ms);
    if (up_flush(c))
        pump(c);
}

static int lease_upstream(struct moat_conn *c, size_t backend, int fresh_only)
{
    struct moat_upstream *up;
    /* What retry_stale() could send again whole, were a pooled connection dead. */
    int is_resendable = c->ex.req_done && c->ex.replay_ok &&
                        moat_http_method_is_idempotent(c->ex.method);
    unsigned flags = (fresh_only ? MOAT_LEASE_FRESH : 0u) |
                     (is_resendable ? MOAT_LEASE_RESENDABLE : 0u);
    int err = moat_upstream_lease(c->w->pools, c->rt, backend, flags, &up_ops, c, &c->waiter,
                                  &up);
    if (err == MOAT_UP_WAIT) {
        /* Every slot of this backend is busy: wait (as long as a connect may take) for one. */
        c->ex.is_waiting = 1;
        set_deadline(c, c->rt->connect_timeout_ms);
        return 0;
    }
    if (err != 0) {
        conn_log(c, MOAT_LOG_WARN, "backend %s: %s", c->rt->backends[backend].target->addr_text,
                 uv_strerror(err));
        return err;
    }
    c->up = up;
    if (moat_upstream_is_ready(up))
        up_ready(c);
    return 0;
}

static void on_backend_slot(struct moat_up_waiter *waiter)
{
    struct moat_conn *c = moat_list_entry(waiter, struct moat_conn, waiter);
    if (c->state != MOAT_CONN_RELAY || !c->ex.is_waiting)
        return;
    c->ex.is_waiting = 0;
    /* Back to the deadline the request had: the body's, or none once it is all here. */
    set_deadline(c, c->ex.req_done ? 0 : c->rt->body_gap_ms);
    if (lease_upstream(c, c->ex.backend, 0) != 0) {
        respond_error(c, 502, "no backend answered");
        cli_flush(c);
        return;
    }
    cli_flush(c);
}

/* A failed connect may go to another backend (any method: nothing was sent). */
static int may_try_another(struct moat_conn *c)
{
    const struct moat_rt_pool *rp = &c->rt->pools[c->ex.pool];
    return moat_may_try_another((size_t)c->ex.tries, rp->n, rp->retry_attempts);
}

/* After an attempt that produced no response a client may see (the backend closed without a
 * byte, or answered 503): an idempotent request still held whole goes to another backend, if
 * the attempts and the retry budget allow. Returns 1 when it went. */
static int retry_elsewhere(struct moat_conn *c, enum moat_metrics_retry kind)
{
    const struct moat_rt_pool *rp = &c->rt->pools[c->ex.pool];
    if (c->ex.head_sent || !c->ex.replay_ok || !c->ex.req_done ||
        !moat_http_method_is_idempotent(c->ex.method) || !may_try_another(c))
        return 0;
    if (!c->ex.is_retry) {
        if (!moat_picker_retry_begin(c->gen->picker, c->ex.pool, rp->retry_budget_pct)) {
            moat_metrics_retry(c->w->metrics, metrics_pool(c), MOAT_METRICS_RETRY_REFUSED);
            return 0;
        }
        c->ex.is_retry = 1;
    }
    conn_log(c, MOAT_LOG_INFO, "backend %s: %s; trying another", up_name(c),
             kind == MOAT_METRICS_RETRY_503 ? "503" : "closed without answering");
    moat_metrics_retry(c->w->metrics, metrics_pool(c), kind);
    moat_upstream_release(c->up, 0);
    c->up = NULL;
    moat_http_parser_reset(c->resp);
    c->ex.resp_started = 0;
    c->ex.retry_503 = 0;
    moat_bufq_clear(&c->to_up);
    if (moat_bufq_append(&c->to_up, c->ex.replay, c->ex.replay_len) != 0)
        return 0;
    start_upstream(c);
    return 1;
}

/* Chooses a backend for a new request, or the next one after a refusal. */
static void start_upstream(struct moat_conn *c)
{
    for (;;) {
        const struct moat_rt_pool *rp = &c->rt->pools[c->ex.pool];
        size_t avoid = c->ex.tries == 0 ? SIZE_MAX : c->ex.backend - rp->first;
        struct moat_pick_req req = c->ex.pick;
        req.pinned = c->ex.pinned[0] != '\0' ? c->ex.pinned : NULL;
        req.pinned_len = req.pinned != NULL ? strlen(c->ex.pinned) : 0;
        size_t m = moat_pick(c->gen->picker, c->ex.pool, &rp->members, &req, avoid,
                             uv_now(&c->w->loop));
        pick_end(c);
        int change = moat_picker_panic_change(c->gen->picker, c->ex.pool);
        if (change != 0)
            conn_log(c, change > 0 ? MOAT_LOG_WARN : MOAT_LOG_INFO, "pool %s: %s", rp->name,
                     change > 0 ? "no backend is usable (all passed over or weight 0); "
                                  "trying those with a weight anyway"
                                : "a backend is usable again");
        if (m == SIZE_MAX) {
            if (c->ex.tries == 0) /* every backend has weight 0: nothing to try */
                respond_error(c, 503, "no backend takes new requests");
            else
                respond_error(c, 502, "no backend answered");
            return;
        }
        c->ex.backend = rp->first + m;
        c->ex.is_reported = 0;
        moat_picker_started(c->gen->picker, c->ex.pool, c->ex.backend);
        c->ex.is_counted = 1;
        if (c->ex.tries++ == 0)
            c->ex.up_start_ms = uv_now(&c->w->loop); /* the access log's upstream time */
        size_t be = c->ex.backend;
        if (lease_upstream(c, be, 0) == 0)
            return;
        if (!may_try_another(c)) {
            respond_error(c, 502, "no backend answered");
            return;
        }
        moat_metrics_retry(c->w->metrics, metrics_pool(c), MOAT_METRICS_RETRY_CONNECT);
    }
}

/* A connection attempt failed or timed out before anything was sent: one more backend. */
static void up_connect_failed(struct moat_conn *c, int status)
{
    int is_timeout = status == UV_ETIMEDOUT;
    report_backend(c, 1);
    conn_log(c, MOAT_LOG_WARN, "backend %s: connect failed: %s", up_name(c),
             is_timeout ? "timed out" : uv_strerror(status));
    moat_upstream_release(c->up, 0);
    moat_metrics_upstream_error(c->w->metrics, metrics_pool(c),
                                is_timeout ? MOAT_METRICS_UP_CONNECT_TIMEOUT
                                           : MOAT_METRICS_UP_CONNECT_FAILED);
    c->up = NULL;
    if (may_try_another(c)) {
        moat_metrics_retry(c->w->metrics, metrics_pool(c), MOAT_METRICS_RETRY_CONNECT);
        start_upstream(c);
        cli_flush(c);
        return;
    }
    respond_error(c, is_timeout ? 504 : 502,
                  is_timeout ? "backend connect timed out" : "no backend answered");
}

static void on_up_connected(void *owner, int status)
{
    struct moat_conn *c = owner;
    if (status < 0) {
        up_connect_failed(c, status);
        return;
    }
    up_ready(c);
    cli_flush(c);
}

static void on_up_silence(void *owner)
{
    struct moat_conn *c = owner;
    conn_log(c, MOAT_LOG_WARN, "backend %s: no response for %llu ms", up_name(c),
             (unsigned long long)c->rt->backend_gap_ms);
    report_backend(c, 1);
    respond_error(c, 504, "backend timed out");
}

static void on_up_drained(void *owner)
{
    struct moat_conn *c = owner;
    if (c->state == MOAT_CONN_TUNNEL && c->peer_eof && up_pending(c) == 0) {
        tunnel_end(c, "client closed");
        return;
    }
    if (up_pending(c) > c->rt->low_water || !(c->rx_blocked & MOAT_RX_PEER_FULL))
        return;
    rx_unblock(c, MOAT_RX_PEER_FULL);
    pump(c);
}

/* A reused connection died before any response byte: the backend had closed it while it sat in
 * the pool. That must never become a 502, so send again on a fresh connection when that is safe:
 * the request is still held whole, and it is idempotent or none of it reached the backend. */
static int retry_stale(struct moat_conn *c)
{
    struct moat_upstream *up = c->up;
    if (!moat_upstream_was_pooled(up) || c->ex.resp_started || !c->ex.replay_ok ||
        !(moat_http_method_is_idempotent(c->ex.method) || !moat_upstream_has_sent(up)))
        return 0;
    conn_log(c, MOAT_LOG_DEBUG, "backend %s: pooled connection was dead; resending",
             up_name(c));
    size_t be = moat_upstream_backend(up);
    moat_metrics_retry(c->w->metrics, metrics_pool(c), MOAT_METRICS_RETRY_STALE);
    moat_upstream_release(up, 0);
    c->up = NULL;
    moat_bufq_clear(&c->to_up);
    if (moat_bufq_append(&c->to_up, c->ex.replay, c->ex.replay_len) != 0)
        return 0;
    return lease_upstream(c, be, 1) == 0;
}

static void up_failed(struct moat_conn *c, ssize_t err)
{
    if (err == UV_EOF) {
        /* A body delimited by the close ends here; anything else is a truncation. */
        enum moat_http_status st = moat_http_parser_finish(c->resp);
        if (st == MOAT_HTTP_DONE && c->ex.resp_done) {
            c->ex.up_reusable = 0;
            complete_exchange(c);
            cli_flush(c);
            return;
        }
    }
    if (retry_stale(c)) {
        cli_flush(c);
        return;
    }
    if (!c->ex.resp_started) {
        report_backend(c, 1);
        if (retry_elsewhere(c, MOAT_METRICS_RETRY_EMPTY)) {
            cli_flush(c);
            return;
        }
    }
    conn_log(c, MOAT_LOG_WARN, "backend %s: connection ended %s: %s", up_name(c),
             c->ex.head_sent ? "mid-response" : "before a response",
             uv_strerror((int)err));
    report_backend(c, 1);
    respond_error(c, 502, "backend closed the connection");
    cli_flush(c);
}

/* ---- tunnels (after 101 Switching Protocols) ------------------------------------------------ */

/* Client bytes for the backend, as they are: no HTTP any more. */
static void tunnel_to_backend(struct moat_conn *c, const char *data, size_t len)
{
    if (moat_bufq_append(&c->to_up, data, len) != 0) {
        conn_log(c, MOAT_LOG_WARN, "tunnel: out of memory%s", "");
        moat_conn_close(c);
        return;
    }
    moat_deadline_again(&c->deadline); /* traffic either way keeps the tunnel alive */
    if (up_pending(c) > c->rt->high_water)
        rx_block(c, MOAT_RX_PEER_FULL);
}

/* Either side has finished: what the other side still has to receive goes out first. */
static void tunnel_end(struct moat_conn *c, const char *why)
{
    conn_log(c, MOAT_LOG_DEBUG, "tunnel ends: %s", why);
    begin_shutdown(c); /* close_notify to the client; the backend connection is closed */
}

static void tunnel_from_backend(struct moat_conn *c, const char *buf, ssize_t nread)
{
    if (nread < 0) {
        tunnel_end(c, nread == UV_EOF ? "backend closed" : uv_strerror((int)nread));
        return;
    }
    cli_send(c, buf, (size_t)nread);
    moat_deadline_again(&c->deadline);
    cli_flush(c);
}

/* The client finished sending: once its last bytes reached the backend, the tunnel ends. */
static void tunnel_client_done(struct moat_conn *c)
{
    up_flush(c);
    if (c->state == MOAT_CONN_TUNNEL && up_pending(c) == 0)
        tunnel_end(c, "client closed");
}

/* The backend answered 101 to an upgrade request: from here on the connection carries another
 * protocol (WebSocket) in both directions, with the same backpressure as bodies. */
static void start_tunnel(struct moat_conn *c, const char *rest, size_t rest_len)
{
    if (!c->ex.is_upgrade || c->ex.status != 101) {
        conn_log(c, MOAT_LOG_WARN, "backend %s switched protocols without being asked",
                 up_name(c));
        respond_error(c, 502, "unexpected protocol switch");
        cli_flush(c);
        return;
    }
    write_access_log(c);
    set_state(c, MOAT_CONN_TUNNEL);
    moat_upstream_set_deadline(c->up, 0); /* the tunnel's idle timer watches both sides */
    set_deadline(c, c->rt->tunnel_idle_ms);
    if (rest_len > 0)
        cli_send(c, rest, rest_len); /* the backend spoke first, in the same read */
    if (c->pending != NULL) {        /* and so did the client, right after its request */
        tunnel_to_backend(c, c->pending, c->pending_len);
        free(c->pending);
        c->pending = NULL;
        c->pending_len = 0;
    }
    rx_unblock(c, MOAT_RX_PIPELINE);
    pump(c);
}

static void on_up_read(void *owner, const char *buf, ssize_t nread)
{
    struct moat_conn *c = owner;
    if (c->state == MOAT_CONN_TUNNEL) {
        tunnel_from_backend(c, buf, nread);
        return;
    }
    if (nread < 0) {
        up_failed(c, nread);
        return;
    }
    c->ex.resp_started = 1;
    size_t off = 0;
    while (off < (size_t)nread) {
        size_t used = 0;
        enum moat_http_status st = moat_http_parser_feed(c->resp, buf + off, (size_t)nread - off,
                                                         &used);
        off += used;
        if (c->state == MOAT_CONN_CLOSING)
            return;
        if (st == MOAT_HTTP_MORE)
            break;
        if (st == MOAT_HTTP_DONE) {
            if (!c->ex.resp_done) {
                moat_http_parser_next(c->resp); /* an interim 1xx: the final response follows */
                continue;
            }
            if (off < (size_t)nread)
                c->ex.up_reusable = 0; /* bytes nobody asked for: never reuse this connection */
            complete_exchange(c);
            cli_flush(c);
            return;
        }
        if (st == MOAT_HTTP_UPGRADE) {
            start_tunnel(c, buf + off, (size_t)nread - off);
            return;
        }
        if (c->ex.retry_503) {
            if (!retry_elsewhere(c, MOAT_METRICS_RETRY_503)) {
                respond_error(c, 503, "backends busy"); /* lost the 503: answer one ourselves */
            }
            cli_flush(c);
            return;
        }
        conn_log(c, MOAT_LOG_WARN, "backend %s: invalid response: %s", up_name(c),
                 moat_http_parser_error_reason(c->resp));
        respond_error(c, 502, "invalid response from backend");
        cli_flush(c);
        return;
    }
    cli_flush(c);
}

/* ---- response parser callbacks ------------------------------------------------------------ */

/* "timeout=5, max=100" -> 5000 ms; 0 when absent or unreadable. */
static uint64_t keep_alive_timeout_ms(const struct moat_http_head *h)
{
    const struct moat_http_field *f = find_field(h, "Keep-Alive");
    if (f == NULL)
        return 0;
    for (size_t i = 0; i + 8 <= f->value_len; i++) {
        if (strncasecmp(f->value + i, "timeout=", 8) != 0)
            continue;
        uint64_t s = 0;
        size_t j = i + 8;
        while (j < f->value_len && f->value[j] >= '0' && f->value[j] <= '9' && s < 100000)
            s = s * 10 + (uint64_t)(f->value[j++] - '0');
        return s * 1000;
    }
    return 0;
}

/* "Retry-After: 120" -> 120000 ms; 0 when absent or an HTTP-date (RFC 9110 §10.2.3). */
static uint64_t retry_after_ms(const struct moat_http_head *h)
{
    const struct moat_http_field *f = moat_http_field_find(h, "Retry-After");
    if (f == NULL || f->value_len == 0 || f->value_len > 9)
        return 0;
    uint64_t s = 0;
    for (size_t i = 0; i < f->value_len; i++) {
        if (f->value[i] < '0' || f->value[i] > '9')
            return 0;
        s = s * 10 + (uint64_t)(f->value[i] - '0');
    }
    return s * 1000;
}

/* A final response says how the backend is: 500, 502, 503 and 504 are failures, but a 503
 * with Retry-After is the backend asking for a pause, and gets it. */
static void judge_response(struct moat_conn *c, const struct moat_http_head *h)
{
    int st = h->status;
    if (c->ex.tries > 0)
        moat_metrics_backend_response(c->w->metrics, c->rt->backends[c->ex.backend].metrics_slot,
                                      st, uv_now(&c->w->loop) - c->ex.up_start_ms);
    c->ex.retry_503 = st == 503 && c->ex.replay_ok && c->ex.req_done &&
                      moat_http_method_is_idempotent(c->ex.method) && may_try_another(c) &&
                      (c->ex.is_retry ||
                       moat_picker_retry_allowed(c->gen->picker, c->ex.pool,
                                                 c->rt->pools[c->ex.pool].retry_budget_pct));
    uint64_t pause = st == 503 ? retry_after_ms(h) : 0;
    if (pause != 0) {
        const struct moat_rt_pool *rp = &c->rt->pools[c->ex.pool];
        struct moat_target *t = c->rt->backends[c->ex.backend].target;
        if (c->ex.tries > 0 &&
            moat_target_pause(t, &rp->members, pause, uv_now(&c->w->loop)))
            conn_log(c, MOAT_LOG_INFO, "backend %s paused for %llu ms (503, Retry-After)",
                     t->addr_text,
                     (unsigned long long)(pause < MOAT_PAUSE_MAX_MS ? pause : MOAT_PAUSE_MAX_MS));
        c->ex.is_reported = 1;
        return;
    }
    report_backend(c, st == 500 || st == 502 || st == 503 || st == 504);
}

/* A pool with sticky sessions pins the client to the backend that answered, unless its
 * cookie already says so. Returns the head's new length (unchanged if it does not fit). */
static long add_sticky_cookie(struct moat_conn *c, char *head, size_t len, size_t cap)
{
    const struct moat_rt_pool *rp = &c->rt->pools[c->ex.pool];
    if (rp->members.sticky_cookie == NULL || c->ex.tries == 0)
        return (long)len;
    const struct moat_target *t = c->rt->backends[c->ex.backend].target;
    if (strcmp(c->ex.pinned, t->cookie) == 0)
        return (long)len;
    static const char *const same_site[] = {"None", "Lax", "Strict"};
    char value[256];
    snprintf(value, sizeof(value), "%s=%s; Path=/; Secure; HttpOnly; SameSite=%s",
             rp->members.sticky_cookie, t->cookie, same_site[rp->sticky_same_site]);
    long n = moat_http_head_add_field(head, len, cap, "Set-Cookie", value);
    return n < 0 ? (long)len : n;
}

static int on_resp_head(void *ctx, const struct moat_http_head *h)
{
    struct moat_conn *c = ctx;
    struct moat_worker *w = c->w;
    struct moat_http_resp_plan plan;
    if (h->status < 200 && h->status != 101) {
        /* RFC 9110 §15.2: interim responses go to HTTP/1.1 clients only. */
        if (c->ex.minor >= 1) {
            long n = moat_http_response_head_write(h, c->ex.method, c->ex.minor, 1, w->head_buf,
                                                   sizeof(w->head_buf), &plan);
            if (n > 0)
                cli_send(c, w->head_buf, (size_t)n);
        }
        return 0;
    }
    if (h->status == 101 && !c->ex.is_upgrade) {
        moat_http_parser_fail(c->resp, 502, "protocol switch nobody asked for");
        return -1;
    }
    c->ex.up_reusable = h->is_keep_alive;
    judge_response(c, h);
    if (c->ex.retry_503)
        return -1; /* on_up_read sends the request elsewhere; nothing of this reaches the client */
    free(c->ex.replay); /* a response is on its way: this request will not be sent again */
    c->ex.replay = NULL;
    c->ex.replay_ok = 0;
    uint64_t ka = keep_alive_timeout_ms(h);
    if (ka != 0 && c->up != NULL) {
        /* Leave the pool a second before the backend's own idle close can race our reuse. */
        moat_upstream_set_keepalive(c->up, ka > 1500 ? ka - 1000 : ka / 2);
    }
    int keep = c->ex.is_keep_alive && c->ex.req_done;
    long n = moat_http_response_head_write(h, c->ex.method, c->ex.minor, keep, w->head_buf,
                                           sizeof(w->head_buf), &c->ex.plan);
    if (n < 0) {
        moat_http_parser_fail(c->resp, 502, "response head too large to relay");
        return -1;
    }
    n = add_sticky_cookie(c, w->head_buf, (size_t)n, sizeof(w->head_buf));
    cli_send(c, w->head_buf, (size_t)n);
    c->ex.status = h->status;
    c->ex.head_sent = 1;
    return 0;
}

static int on_resp_body(void *ctx, const char *data, size_t len)
{
    struct moat_conn *c = ctx;
    if (len == 0)
        return 0;
    if (c->ex.plan.framing == MOAT_HTTP_BODY_CHUNKED) {
        char ch[24];
        cli_send(c, ch, moat_http_chunk_head(ch, len));
        cli_send(c, data, len);
        cli_send(c, MOAT_HTTP_CRLF, 2);
    } else {
        cli_send(c, data, len);
    }
    c->ex.body_bytes_out += len;
    return 0;
}

static int on_resp_done(void *ctx)
{
    struct moat_conn *c = ctx;
    if (!c->ex.head_sent)
        return 0; /* an interim response ended */
    if (c->ex.plan.framing == MOAT_HTTP_BODY_CHUNKED)
        cli_send(c, MOAT_HTTP_LAST_CHUNK, sizeof(MOAT_HTTP_LAST_CHUNK) - 1);
    c->ex.resp_done = 1;
    return 0;
}

static const struct moat_http_parser_cbs resp_cbs = {
    .on_head = on_resp_head,
    .on_body = on_resp_body,
    .on_done = on_resp_done,
};

static struct moat_http_parser *new_resp_parser(struct moat_conn *c)
{
    return moat_http_parser_new(MOAT_HTTP_RESPONSE, &c->rt->http_limits, &resp_cbs, c);
}

/* ---- request parser callbacks ------------------------------------------------------------- */

/* The routes match the path of the target: an absolute-form target ("http://host/p") is
 * matched from its first '/' after the authority. */
static size_t pick_pool(const struct moat_cfg *cfg, const struct moat_http_head *h)
{
    if (cfg->n_routes == 0)
        return cfg->default_pool;
    const char *path = h->target;
    size_t len = h->target_len;
    if (len > 0 && path[0] != '/') {
        const char *scheme_end = memmem(path, len, "://", 3);
        const char *from = scheme_end != NULL ? scheme_end + 3 : path;
        const char *slash = memchr(from, '/', len - (size_t)(from - path));
        path = slash != NULL ? slash : "/";
        len = slash != NULL ? h->target_len - (size_t)(slash - h->target) : 1;
    }
    return moat_cfg_route_pick(cfg, h->host, h->host_len, path, len);
}

static int on_req_head(void *ctx, const struct moat_http_head *h)
{
    struct moat_conn *c = ctx;
    struct moat_worker *w = c->w;
    set_state(c, MOAT_CONN_RELAY);
    c->ex.has_head = 1;
    c->ex.method = h->method;
    c->ex.minor = h->version_minor;
    c->ex.is_keep_alive = h->is_keep_alive && !w->is_draining;
    c->ex.replay_ok = 1;
    c->ex.pool = pick_pool(c->rt->cfg, h);
    const struct moat_balance_pool *members = &c->rt->pools[c->ex.pool].members;
    moat_pick_req_make(members, h, c->peer_ip, &c->ex.pick);
    if (c->ex.pick.pinned != NULL && c->ex.pick.pinned_len < sizeof(c->ex.pinned)) {
        memcpy(c->ex.pinned, c->ex.pick.pinned, c->ex.pick.pinned_len); /* h goes away */
        c->ex.pinned[c->ex.pick.pinned_len] = '\0';
    }
    c->ex.pick.pinned = NULL;
    remember_for_log(c, h);
    uint64_t max = c->rt->max_body_bytes;
    if (max != 0 && h->framing == MOAT_HTTP_BODY_LENGTH && h->content_length > max) {
        conn_log(c, MOAT_LOG_INFO, "request body of %llu bytes over --max-body-size (%llu)",
                 (unsigned long long)h->content_length, (unsigned long long)max);
        moat_http_parser_fail(c->req, 413, "request body too large");
        return -1; /* refused before a byte of it is forwarded */
    }
    struct moat_http_fwd fwd = {.client_addr = c->peer_ip, .peer_is_trusted = c->is_trusted,
                                .request_id = c->ex.request_id};
    long n = moat_http_request_head_write(h, &fwd, w->head_buf, sizeof(w->head_buf));
    if (n < 0) {
        moat_http_parser_fail(c->req, 431, "request head too large to forward");
        return -1;
    }
    if (up_queue(c, w->head_buf, (size_t)n) != 0)
        return -1;
    c->ex.req_chunked = h->framing == MOAT_HTTP_BODY_CHUNKED;
    c->ex.is_upgrade = h->is_upgrade;
    /* While a body is due the client's silence is bounded; once it is sent, only the backend's. */
    set_deadline(c, h->framing == MOAT_HTTP_BODY_NONE ? 0 : c->rt->body_gap_ms);
    return 0;
}

static int on_req_body(void *ctx, const char *data, size_t len)
{
    struct moat_conn *c = ctx;
    if (len == 0)
        return 0;
    c->ex.body_bytes_in += len;
    uint64_t max = c->rt->max_body_bytes;
    if (max != 0 && c->ex.body_bytes_in > max) {
        /* A chunked body grew past the limit: what reached the backend is cut off with its
         * connection (respond_error never pools it). */
        conn_log(c, MOAT_LOG_INFO, "request body over --max-body-size (%llu bytes)",
                 (unsigned long long)max);
        moat_http_parser_fail(c->req, 413, "request body too large");
        return -1;
    }
    int rc;
    if (c->ex.req_chunked) {
        char ch[24];
        rc = up_queue(c, ch, moat_http_chunk_head(ch, len));
        rc = rc != 0 ? rc : up_queue(c, data, len);
        rc = rc != 0 ? rc : up_queue(c, MOAT_HTTP_CRLF, 2);
    } else {
        rc = up_queue(c, data, len);
    }
    moat_deadline_again(&c->deadline);
    return rc;
}

static int on_req_done(void *ctx)
{
    struct moat_conn *c = ctx;
    if (c->ex.req_chunked &&
        up_queue(c, MOAT_HTTP_LAST_CHUNK, sizeof(MOAT_HTTP_LAST_CHUNK) - 1) != 0)
        return -1;
    c->ex.req_done = 1;
    set_deadline(c, 0);
    if (c->up != NULL && moat_upstream_is_ready(c->up))
        moat_upstream_set_deadline(c->up, c->rt->backend_gap_ms);
    return 0;
}

static const struct moat_http_parser_cbs req_cbs = {
    .on_head = on_req_head,
    .on_body = on_req_body,
    .on_done = on_req_done,
};

/* ---- the client's plaintext --------------------------------------------------------------- */

/* Keeps rest (which may point into c->pending itself) as the pending plaintext. */
static void keep_pending(struct moat_conn *c, const char *rest, size_t len)
{
    char *copy = NULL;
    if (len > 0) {
        copy = malloc(len);
        if (copy == NULL) {
            moat_conn_close(c);
            return;
        }
        memcpy(copy, rest, len);
    }
    free(c->pending);
    c->pending = copy;
    c->pending_len = len;
}

/* Feeds decrypted request bytes to the parser and acts on where it stopped. */
static void feed_request(struct moat_conn *c, const char *data, size_t len)
{
    if (c->state == MOAT_CONN_TUNNEL) {
        keep_pending(c, NULL, 0);
        tunnel_to_backend(c, data, len);
        return;
    }
    if (c->state == MOAT_CONN_HEAD && !c->ex.is_head_timed) {
        c->ex.is_head_timed = 1; /* the first byte of a request: its head is now due */
        c->ex.start_ms = uv_now(&c->w->loop);
        set_deadline(c, c->rt->head_timeout_ms);
    }
    size_t used = 0;
    enum moat_http_status st = moat_http_parser_feed(c->req, data, len, &used);
    if (c->state == MOAT_CONN_CLOSING)
        return;
    switch (st) {
    case MOAT_HTTP_MORE:
        keep_pending(c, NULL, 0);
        break;
    case MOAT_HTTP_DONE:
    case MOAT_HTTP_UPGRADE:
        /* One request at a time: the next one waits until this response is relayed. */
        keep_pending(c, data + used, len - used);
        rx_block(c, MOAT_RX_PIPELINE);
        break;
    case MOAT_HTTP_ERROR:
        keep_pending(c, NULL, 0);
        conn_log(c, MOAT_LOG_INFO, "bad request: %d %s", moat_http_parser_error_status(c->req),
                 moat_http_parser_error_reason(c->req));
        respond_error(c, moat_http_parser_error_status(c->req),
                      moat_http_parser_error_reason(c->req));
        return;
    }
    if (c->state != MOAT_CONN_RELAY)
        return;
    /* Bytes for an active upstream are written once per client read, by pump(): one decrypted
     * record at a time would mean a write(2) per 16 KiB. */
    if (c->up == NULL && c->ex.tries == 0)
        start_upstream(c);
    if (c->state != MOAT_CONN_CLOSING && up_pending(c) > c->rt->high_water)
        rx_block(c, MOAT_RX_PEER_FULL);
}

/* The client will send nothing more (close_notify or a bare transport EOF). */
static void on_client_eof(struct moat_conn *c, int is_orderly)
{
    c->peer_eof = 1;
    rx_block(c, MOAT_RX_EOF);
    if (c->state == MOAT_CONN_HEAD && !c->ex.is_head_timed && c->pending == NULL) {
        if (is_orderly)
            begin_shutdown(c); /* answer close_notify with ours */
        else
            moat_conn_close(c);
        return;
    }
    if (c->state == MOAT_CONN_RELAY && c->ex.req_done)
        return; /* a half-close after a complete request: finish the response, then close */
    if (c->state == MOAT_CONN_TUNNEL) {
        tunnel_client_done(c);
        return;
    }
    conn_log(c, MOAT_LOG_INFO, "client closed mid-request%s", "");
    moat_conn_close(c);
}

static void handshake(struct moat_conn *c)
{
    if (!c->hs_granted && !moat_worker_hs_admit(c->w, c))
        return; /* queued: moat_conn_hs_turn() comes back here */
    c->hs_granted = 0;
    int r = moat_tls_session_handshake(c->tls);
    if (r == MOAT_TLS_AGAIN)
        return;
    if (r != MOAT_TLS_OK) {
        if (c->tls_started) /* a bare connect and close (a port probe) is no handshake */
            moat_metrics_handshake(c->w->metrics, MOAT_METRICS_HS_FAILED);
        const char *text = "transport closed";
        int code = r == MOAT_TLS_FATAL ? moat_tls_session_last_error(c->tls, &text) : 0;
        /* A bare close (port probes, health checks) is routine; a failed handshake is news. */
        conn_log(c, r == MOAT_TLS_FATAL ? MOAT_LOG_INFO : MOAT_LOG_DEBUG,
                 "tls handshake failed: -0x%04x (%s)", (unsigned)-code, text);
        /* Send the alert mbedTLS queued, then end. */
        begin_shutdown(c);
        return;
    }
    moat_metrics_handshake(c->w->metrics, moat_tls_session_is_resumed(c->tls)
                                              ? MOAT_METRICS_HS_RESUMED : MOAT_METRICS_HS_FULL);
    set_state(c, MOAT_CONN_HEAD);
    set_deadline(c, c->rt->head_timeout_ms);
}

/* Decrypts and parses the client's bytes as far as the state and backpressure allow. Returns
 * -1 if the connection was closed. */
static int read_requests(struct moat_conn *c)
{
    struct moat_worker *w = c->w;
    while (c->state == MOAT_CONN_HEAD || c->state == MOAT_CONN_RELAY ||
           c->state == MOAT_CONN_TUNNEL) {
        if (c->rx_blocked & (MOAT_RX_PIPELINE | MOAT_RX_PEER_FULL))
            break;
        if (c->pending != NULL) {
            feed_request(c, c->pending, c->pending_len);
            continue;
        }
        if (c->peer_eof)
            break;
        long n = moat_tls_session_read(c->tls, w->plain, sizeof(w->plain));
        if (n > 0) {
            feed_request(c, w->plain, (size_t)n);
            continue;
        }
        if (n == MOAT_TLS_AGAIN)
            break;
        if (n == MOAT_TLS_CLOSED || n == MOAT_TLS_EOF) {
            on_client_eof(c, n == MOAT_TLS_CLOSED);
            break;
        }
        const char *text;
        int code = moat_tls_session_last_error(c->tls, &text);
        conn_log(c, MOAT_LOG_INFO, "tls read failed: -0x%04x (%s)", (unsigned)-code, text);
        /* The session queued its fatal alert in to_cli: send it and nothing of ours (staged
         * plaintext can no longer be sealed), then FIN and the usual linger, so unread input
         * does not turn the close into a reset that destroys the alert. */
        if (w->stage_conn == c) {
            w->stage_len = 0;
            w->stage_conn = NULL;
        }
        begin_shutdown(c);
        return -1;
    }
    return 0;
}

/* Moves the client's bytes forward as far as the state and backpressure allow. */
static void pump(struct moat_conn *c)
{
    if (c->state == MOAT_CONN_HANDSHAKE)
        handshake(c);
    do {
        if (read_requests(c) != 0)
            return;
    } while (up_flush(c)); /* the backend took everything at once: read on */
    rx_apply(c);           /* reads resume once the session's backlog is consumed */
    if (c->state != MOAT_CONN_CLOSING)
        cli_flush(c);
}

void moat_conn_hs_turn(struct moat_conn *c)
{
    if (c->state != MOAT_CONN_HANDSHAKE)
        return;
    c->hs_granted = 1;
    pump(c);
}

/* A client speaking plain HTTP to the TLS port: a TLS record starts with 0x16, a request with
 * an upper-case method letter. Tell it in its own language, then close. */
static int reject_plain_http(struct moat_conn *c, const char *data, size_t len)
{
    if (len == 0 || data[0] < 'A' || data[0] > 'Z')
        return 0;
    c->is_plain_reject = 1;
    char buf[512];
    long n = moat_http_error_write(400, "this port speaks HTTPS; use an https:// URL", 0, buf,
                                   sizeof(buf));
    conn_log(c, MOAT_LOG_INFO, "plain HTTP on the TLS port%s", "");
    if (n > 0)
        moat_bufq_append(&c->to_cli, buf, (size_t)n);
    begin_shutdown(c);
    return 1;
}

static void on_cli_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct moat_conn *c = s->data;
    if (nread == 0 || c->state == MOAT_CONN_CLOSING)
        return;
    if (c->state == MOAT_CONN_SHUTDOWN) {
        if (nread < 0)
            moat_conn_close(c); /* lingering is over: the client has closed too */
        return;                 /* bytes after our last response are discarded */
    }
    if (nread < 0) {
        if (nread != UV_EOF) {
            conn_log(c, MOAT_LOG_DEBUG, "read failed: %s", uv_err_name((int)nread));
            moat_conn_close(c);
            return;
        }
        rx_block(c, MOAT_RX_EOF);
        moat_tls_session_feed_eof(c->tls);
    } else {
        moat_metrics_bytes_in(c->w->metrics, (uint64_t)nread);
        if (c->state == MOAT_CONN_HANDSHAKE && moat_tls_session_buffered(c->tls) == 0 &&
            !c->tls_started && reject_plain_http(c, buf->base, (size_t)nread))
            return;
        c->tls_started = 1;
        /* The slab holds the bytes until this callback returns: lent, not copied, and what the
         * pump leaves is kept by settle(). */
        if (moat_tls_session_lend(c->tls, buf->base, (size_t)nread) != 0) {
            moat_tls_session_settle(c->tls);
            conn_log(c, MOAT_LOG_INFO, "client sends faster than it is served%s", "");
            moat_conn_close(c);
            return;
        }
        rx_apply(c); /* what waits unprocessed is bounded */
        pump(c);
        if (moat_tls_session_settle(c->tls) != 0 && c->state != MOAT_CONN_CLOSING) {
            conn_log(c, MOAT_LOG_INFO, "client sends faster than it is served%s", "");
            moat_conn_close(c);
        }
        return;
    }
    pump(c);
}

/* ---- accept ------------------------------------------------------------------------------- */

static void describe_peer(struct moat_conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    strcpy(c->peer, "?");
    strcpy(c->peer_ip, "?");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    const struct moat_cfg *cfg = c->rt->cfg;
    const uint8_t *raw;
    int family;
    int port;
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, c->peer_ip, sizeof(c->peer_ip));
        snprintf(c->peer, sizeof(c->peer), "[%s]:%d", c->peer_ip, ntohs(a->sin6_port));
        raw = a->sin6_addr.s6_addr;
        family = 6;
        port = ntohs(a->sin6_port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        uv_ip4_name(a, c->peer_ip, sizeof(c->peer_ip));
        snprintf(c->peer, sizeof(c->peer), "%s:%d", c->peer_ip, ntohs(a->sin_port));
        raw = (const uint8_t *)&a->sin_addr.s_addr;
        family = 4;
        port = ntohs(a->sin_port);
    }
    (void)port;
    for (size_t i = 0; i < cfg->n_trusted_proxies; i++)
        if (moat_cfg_cidr_contains(&cfg->trusted_proxies[i], family, raw))
            c->is_trusted = 1;
}

void moat_conn_accept(struct moat_worker *w, uv_stream_t *server)
{
    struct moat_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        moat_log(MOAT_LOG_ERROR, "w%u accept: out of memory", w->id);
        return;
    }
    c->w = w;
    c->gen = w->gen;
    moat_gen_hold(c->gen);
    c->rt = c->gen->rt;
    c->id = ++w->next_conn_id;
    moat_list_init(&c->node);
    moat_list_init(&c->hs_node);
    moat_list_init(&c->waiter.node);
    c->waiter.on_slot = on_backend_slot;
    moat_bufq_init(&c->to_cli);
    moat_bufq_init(&c->to_up);
    c->tcp.data = c;
    c->cli_wire.stream = (uv_stream_t *)&c->tcp;
    c->cli_wire.on_done = on_cli_write_done;
    c->shutdown_req.data = c;
    strcpy(c->peer, "?");
    strcpy(c->peer_ip, "?");
    uv_tcp_init(&w->loop, &c->tcp);
    moat_deadline_init(&w->loop, &c->deadline, on_conn_timer, c);
    moat_deadline_init(&w->loop, &c->send_deadline, on_send_check, c);
    moat_list_push_back(&w->conns, &c->node);
    w->n_conns++;
    moat_metrics_conn_opened(w->metrics);
    c->state = MOAT_CONN_HANDSHAKE;
    int err = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (err != 0) {
        moat_log(MOAT_LOG_DEBUG, "w%u accept failed: %s", w->id, uv_err_name(err));
        moat_conn_close(c);
        return;
    }
    describe_peer(c);
    c->tls = moat_tls_session_new(c->gen->tls[(uv_tcp_t *)server - w->listeners], on_tls_emit, c);
    c->req = moat_http_parser_new(MOAT_HTTP_REQUEST, &c->rt->http_limits, &req_cbs, c);
    c->resp = new_resp_parser(c);
    if (c->tls == NULL || c->req == NULL || c->resp == NULL) {
        conn_log(c, MOAT_LOG_ERROR, "out of memory for a new connection%s", "");
        moat_conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    set_deadline(c, c->rt->handshake_timeout_ms);
    uv_read_start((uv_stream_t *)&c->tcp, on_cli_alloc, on_cli_read);
}
