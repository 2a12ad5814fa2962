/* proxy/relay.c: the backend side of a client connection's exchange: choosing a backend and
 * leasing an upstream, retries, passive health reports, the response parser's callbacks (head,
 * sticky cookie, body), and tunnels after 101. See conn_internal.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "proxy/balance.h"
#include "proxy/conn_internal.h"
#include "proxy/metrics.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

static const char *up_name(const struct moat_conn *c);
static void tunnel_end(struct moat_conn *c, const char *why);
static int may_try_another(const struct moat_conn *c);

/* ---- toward the backend ------------------------------------------------------------------- */

/* Queues request bytes for the backend (and keeps them for a resend while small). Called from
 * request parser callbacks: on failure it fails the parse, which answers 500. */
int conn_up_queue(struct moat_conn *c, const char *data, size_t len)
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

static const struct moat_upstream_ops up_ops = {
    .on_connected = on_up_connected,
    .on_read = on_up_read,
    .on_silence = on_up_silence,
    .on_drained = on_up_drained,
};

/* The leased backend's address, for logs. */
static const char *up_name(const struct moat_conn *c)
{
    return c->ex.rt->backends[moat_upstream_backend(c->up)].target->addr_text;
}

size_t conn_up_pending(const struct moat_conn *c)
{
    return c->to_up.bytes + (c->up != NULL ? moat_upstream_inflight(c->up) : 0);
}

/* Hands queued request bytes to the backend connection. Returns 1 when that lifted the
 * backpressure on the client (the socket took the bytes at once, so no write callback will
 * come to lift it): the caller must conn_pump the client again. */
int conn_up_flush(struct moat_conn *c)
{
    if (c->up == NULL || !moat_upstream_is_ready(c->up) || c->to_up.head == NULL)
        return 0;
    int err = moat_upstream_write(c->up, &c->to_up);
    if (err != 0) {
        on_up_read(c, NULL, err);
        return 0;
    }
    if (!(c->rx_blocked & MOAT_RX_PEER_FULL) || conn_up_pending(c) > c->rt->low_water)
        return 0;
    conn_rx_unblock(c, MOAT_RX_PEER_FULL);
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
    if (conn_up_flush(c))
        conn_pump(c);
}

static int lease_upstream(struct moat_conn *c, size_t backend, int fresh_only)
{
    struct moat_upstream *up;
    /* What retry_stale() could send again whole, were a pooled connection dead. */
    int is_resendable = c->ex.req_done && c->ex.replay_ok &&
                        moat_http_method_is_idempotent(c->ex.method);
    unsigned flags = (fresh_only ? MOAT_LEASE_FRESH : 0u) |
                     (is_resendable ? MOAT_LEASE_RESENDABLE : 0u);
    int err = moat_upstream_lease(c->w->pools, c->ex.rt, backend, flags, &up_ops, c, &c->waiter,
                                  &up);
    if (err == MOAT_UP_WAIT) {
        /* Every slot of this backend is busy: wait (as long as a connect may take) for one. */
        c->ex.is_waiting = 1;
        conn_set_deadline(c, c->rt->connect_timeout_ms);
        return 0;
    }
    if (err != 0) {
        conn_log(c, MOAT_LOG_WARN, "backend %s: %s", c->ex.rt->backends[backend].target->addr_text,
                 uv_strerror(err));
        return err;
    }
    c->up = up;
    if (moat_upstream_is_ready(up))
        up_ready(c);
    return 0;
}

void conn_on_backend_slot(struct moat_up_waiter *waiter)
{
    struct moat_conn *c = moat_list_entry(waiter, struct moat_conn, waiter);
    if (c->state != MOAT_CONN_RELAY || !c->ex.is_waiting)
        return;
    c->ex.is_waiting = 0;
    /* Back to the deadline the request had: the body's, or none once it is all here. */
    conn_set_deadline(c, c->ex.req_done ? 0 : c->rt->body_gap_ms);
    if (lease_upstream(c, c->ex.backend, 0) != 0) {
        conn_respond_error(c, 502, "no backend answered");
        conn_cli_flush(c);
        return;
    }
    conn_cli_flush(c);
}

/* A failed connect may go to another backend (any method: nothing was sent). */
static int may_try_another(const struct moat_conn *c)
{
    const struct moat_rt_pool *rp = &c->ex.rt->pools[c->ex.pool];
    return moat_may_try_another((size_t)c->ex.tries, rp->n, rp->retry_attempts);
}

/* Drops the leased upstream and queues the held request again, whole. 0, or -1 (memory). */
static int requeue_held(struct moat_conn *c)
{
    moat_upstream_release(c->up, 0);
    c->up = NULL;
    moat_bufq_clear(&c->to_up);
    return moat_bufq_append(&c->to_up, c->ex.replay, c->ex.replay_len);
}

/* Whether the request may go to another backend, the retry budget aside: idempotent, held
 * whole, no byte of the response sent to the client, and an attempt left. */
static int is_retryable(const struct moat_conn *c)
{
    return !c->ex.head_sent && c->ex.replay_ok && c->ex.req_done &&
           moat_http_method_is_idempotent(c->ex.method) && may_try_another(c);
}

/* Whether retry_elsewhere() would send it on: retryable, with a place in the budget. */
static int can_retry_elsewhere(const struct moat_conn *c)
{
    const struct moat_rt_pool *rp = &c->ex.rt->pools[c->ex.pool];
    return is_retryable(c) &&
           (c->ex.is_retry ||
            moat_picker_retry_allowed(c->ex.gen->picker, c->ex.pool, rp->retry_budget_pct));
}

/* After an attempt that produced no response a client may see (the backend closed without a
 * byte, or answered 503): an idempotent request still held whole goes to another backend, if
 * the attempts and the retry budget allow. Returns 1 when it went. */
static int retry_elsewhere(struct moat_conn *c, enum moat_metrics_retry kind)
{
    const struct moat_rt_pool *rp = &c->ex.rt->pools[c->ex.pool];
    if (!is_retryable(c))
        return 0;
    if (!c->ex.is_retry) {
        if (!moat_picker_retry_begin(c->ex.gen->picker, c->ex.pool, rp->retry_budget_pct)) {
            moat_metrics_retry(c->w->metrics, conn_metrics_pool(c), MOAT_METRICS_RETRY_REFUSED);
            return 0;
        }
        c->ex.is_retry = 1;
    }
    conn_log(c, MOAT_LOG_INFO, "backend %s: %s; trying another", up_name(c),
             kind == MOAT_METRICS_RETRY_503 ? "503" : "closed without answering");
    moat_metrics_retry(c->w->metrics, conn_metrics_pool(c), kind);
    moat_http_parser_reset(c->resp);
    c->ex.resp_started = 0;
    c->ex.retry_503 = 0;
    if (requeue_held(c) != 0)
        return 0;
    conn_start_upstream(c);
    return 1;
}

/* Chooses a backend for a new request, or the next one after a refusal. */
void conn_start_upstream(struct moat_conn *c)
{
    for (;;) {
        const struct moat_rt_pool *rp = &c->ex.rt->pools[c->ex.pool];
        size_t avoid = c->ex.tries == 0 ? SIZE_MAX : c->ex.backend - rp->first;
        struct moat_pick_req req = c->ex.pick;
        req.pinned = c->ex.pinned[0] != '\0' ? c->ex.pinned : NULL;
        req.pinned_len = req.pinned != NULL ? strlen(c->ex.pinned) : 0;
        size_t m = moat_pick(c->ex.gen->picker, c->ex.pool, &rp->members, &req, avoid,
                             uv_now(&c->w->loop));
        conn_pick_end(c);
        int change = moat_picker_panic_change(c->ex.gen->picker, c->ex.pool);
        if (change != 0)
            conn_log(c, change > 0 ? MOAT_LOG_WARN : MOAT_LOG_INFO, "pool %s: %s", rp->name,
                     change > 0 ? "no backend is usable (all passed over or weight 0); "
                                  "trying those with a weight anyway"
                                : "a backend is usable again");
        if (m == SIZE_MAX) {
            if (c->ex.tries == 0) /* every backend has weight 0: nothing to try */
                conn_respond_error(c, 503, "no backend takes new requests");
            else
                conn_respond_error(c, 502, "no backend answered");
            return;
        }
        c->ex.backend = rp->first + m;
        c->ex.is_reported = 0;
        moat_picker_started(c->ex.gen->picker, c->ex.pool, c->ex.backend);
        c->ex.is_counted = 1;
        if (c->ex.tries++ == 0)
            c->ex.up_start_ms = uv_now(&c->w->loop); /* the access log's upstream time */
        size_t be = c->ex.backend;
        if (lease_upstream(c, be, 0) == 0)
            return;
        if (!may_try_another(c)) {
            conn_respond_error(c, 502, "no backend answered");
            return;
        }
        moat_metrics_retry(c->w->metrics, conn_metrics_pool(c), MOAT_METRICS_RETRY_CONNECT);
    }
}

/* A connection attempt failed or timed out before anything was sent: one more backend. */
static void up_connect_failed(struct moat_conn *c, int status)
{
    int is_timeout = status == UV_ETIMEDOUT;
    conn_report_backend(c, 1);
    conn_log(c, MOAT_LOG_WARN, "backend %s: connect failed: %s", up_name(c),
             is_timeout ? "timed out" : uv_strerror(status));
    moat_upstream_release(c->up, 0);
    moat_metrics_upstream_error(c->w->metrics, conn_metrics_pool(c),
                                is_timeout ? MOAT_METRICS_UP_CONNECT_TIMEOUT
                                           : MOAT_METRICS_UP_CONNECT_FAILED);
    c->up = NULL;
    if (may_try_another(c)) {
        moat_metrics_retry(c->w->metrics, conn_metrics_pool(c), MOAT_METRICS_RETRY_CONNECT);
        conn_start_upstream(c);
        conn_cli_flush(c);
        return;
    }
    conn_respond_error(c, is_timeout ? 504 : 502,
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
    conn_cli_flush(c);
}

static void on_up_silence(void *owner)
{
    struct moat_conn *c = owner;
    conn_log(c, MOAT_LOG_WARN, "backend %s: no response for %llu ms", up_name(c),
             (unsigned long long)c->rt->backend_gap_ms);
    conn_report_backend(c, 1);
    conn_respond_error(c, 504, "backend timed out");
}

static void on_up_drained(void *owner)
{
    struct moat_conn *c = owner;
    if (c->state == MOAT_CONN_TUNNEL && c->peer_eof && conn_up_pending(c) == 0) {
        tunnel_end(c, "client closed");
        return;
    }
    if (conn_up_pending(c) > c->rt->low_water || !(c->rx_blocked & MOAT_RX_PEER_FULL))
        return;
    conn_rx_unblock(c, MOAT_RX_PEER_FULL);
    conn_pump(c);
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
    moat_metrics_retry(c->w->metrics, conn_metrics_pool(c), MOAT_METRICS_RETRY_STALE);
    if (requeue_held(c) != 0)
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
            conn_complete_exchange(c);
            conn_cli_flush(c);
            return;
        }
    }
    if (retry_stale(c)) {
        conn_cli_flush(c);
        return;
    }
    if (!c->ex.resp_started) {
        conn_report_backend(c, 1);
        if (retry_elsewhere(c, MOAT_METRICS_RETRY_EMPTY)) {
            conn_cli_flush(c);
            return;
        }
    }
    conn_log(c, MOAT_LOG_WARN, "backend %s: connection ended %s: %s", up_name(c),
             c->ex.head_sent ? "mid-response" : "before a response",
             uv_strerror((int)err));
    conn_report_backend(c, 1);
    conn_respond_error(c, 502, "backend closed the connection");
    conn_cli_flush(c);
}

/* ---- tunnels (after 101 Switching Protocols) ------------------------------------------------ */

/* Client bytes for the backend, as they are: no HTTP any more. */
void conn_tunnel_to_backend(struct moat_conn *c, const char *data, size_t len)
{
    if (moat_bufq_append(&c->to_up, data, len) != 0) {
        conn_log(c, MOAT_LOG_WARN, "tunnel: out of memory%s", "");
        moat_conn_close(c);
        return;
    }
    moat_deadline_again(&c->deadline); /* traffic either way keeps the tunnel alive */
    if (conn_up_pending(c) > c->rt->high_water)
        conn_rx_block(c, MOAT_RX_PEER_FULL);
}

/* Either side has finished: what the other side still has to receive goes out first. */
static void tunnel_end(struct moat_conn *c, const char *why)
{
    conn_log(c, MOAT_LOG_DEBUG, "tunnel ends: %s", why);
    conn_begin_shutdown(c); /* close_notify to the client; the backend connection is closed */
}

static void tunnel_from_backend(struct moat_conn *c, const char *buf, ssize_t nread)
{
    if (nread < 0) {
        tunnel_end(c, nread == UV_EOF ? "backend closed" : uv_strerror((int)nread));
        return;
    }
    conn_cli_send(c, buf, (size_t)nread);
    moat_deadline_again(&c->deadline);
    conn_cli_flush(c);
}

/* The client finished sending: once its last bytes reached the backend, the tunnel ends. */
void conn_tunnel_client_done(struct moat_conn *c)
{
    conn_up_flush(c);
    if (c->state == MOAT_CONN_TUNNEL && conn_up_pending(c) == 0)
        tunnel_end(c, "client closed");
}

/* The backend answered 101 to an upgrade request: from here on the connection carries another
 * protocol (WebSocket) in both directions, with the same backpressure as bodies. */
static void start_tunnel(struct moat_conn *c, const char *rest, size_t rest_len)
{
    if (!c->ex.is_upgrade || c->ex.status != 101) {
        conn_log(c, MOAT_LOG_WARN, "backend %s switched protocols without being asked",
                 up_name(c));
        conn_respond_error(c, 502, "unexpected protocol switch");
        conn_cli_flush(c);
        return;
    }
    conn_write_access_log(c);
    conn_set_state(c, MOAT_CONN_TUNNEL);
    moat_upstream_set_deadline(c->up, 0); /* the tunnel's idle timer watches both sides */
    conn_set_deadline(c, c->rt->tunnel_idle_ms);
    if (rest_len > 0)
        conn_cli_send(c, rest, rest_len); /* the backend spoke first, in the same read */
    if (c->pending != NULL) {        /* and so did the client, right after its request */
        conn_tunnel_to_backend(c, c->pending, c->pending_len);
        free(c->pending);
        c->pending = NULL;
        c->pending_len = 0;
    }
    conn_rx_unblock(c, MOAT_RX_PIPELINE);
    conn_pump(c);
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
            conn_complete_exchange(c);
            conn_cli_flush(c);
            return;
        }
        if (st == MOAT_HTTP_UPGRADE) {
            start_tunnel(c, buf + off, (size_t)nread - off);
            return;
        }
        if (c->ex.retry_503) {
            if (!retry_elsewhere(c, MOAT_METRICS_RETRY_503)) {
                conn_respond_error(c, 503, "backends busy"); /* lost the 503: answer one ourselves */
            }
            conn_cli_flush(c);
            return;
        }
        conn_log(c, MOAT_LOG_WARN, "backend %s: invalid response: %s", up_name(c),
                 moat_http_parser_error_reason(c->resp));
        conn_respond_error(c, 502, "invalid response from backend");
        conn_cli_flush(c);
        return;
    }
    conn_cli_flush(c);
}

/* ---- response parser callbacks ------------------------------------------------------------ */

/* "timeout=5, max=100" -> 5000 ms; 0 when absent or unreadable. */
static uint64_t keep_alive_timeout_ms(const struct moat_http_head *h)
{
    const struct moat_http_field *f = moat_http_field_find(h, "Keep-Alive");
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
        moat_metrics_backend_response(c->w->metrics,
                                      c->ex.rt->backends[c->ex.backend].target->slot, st,
                                      uv_now(&c->w->loop) - c->ex.up_start_ms);
    c->ex.retry_503 = st == 503 && can_retry_elsewhere(c);
    uint64_t pause = st == 503 ? retry_after_ms(h) : 0;
    if (pause != 0) {
        const struct moat_rt_pool *rp = &c->ex.rt->pools[c->ex.pool];
        struct moat_target *t = c->ex.rt->backends[c->ex.backend].target;
        if (c->ex.tries > 0 &&
            moat_target_pause(t, &rp->members, pause, uv_now(&c->w->loop)))
            conn_log(c, MOAT_LOG_INFO, "backend %s paused for %llu ms (503, Retry-After)",
                     t->addr_text,
                     (unsigned long long)(pause < MOAT_PAUSE_MAX_MS ? pause : MOAT_PAUSE_MAX_MS));
        c->ex.is_reported = 1;
        return;
    }
    conn_report_backend(c, st == 500 || st == 502 || st == 503 || st == 504);
}

/* A pool with sticky sessions pins the client to the backend that answered, unless its
 * cookie already says so. Returns the head's new length (unchanged if it does not fit). */
static long add_sticky_cookie(struct moat_conn *c, char *head, size_t len, size_t cap)
{
    const struct moat_rt_pool *rp = &c->ex.rt->pools[c->ex.pool];
    if (rp->members.sticky_cookie == NULL || c->ex.tries == 0)
        return (long)len;
    const struct moat_target *t = c->ex.rt->backends[c->ex.backend].target;
    if (strcmp(c->ex.pinned, t->cookie) == 0)
        return (long)len;
    static const char *const same_site[] = {"None", "Lax", "Strict"};
    char value[256];
    snprintf(value, sizeof(value), "%s=%s; Path=/; Secure; HttpOnly; SameSite=%s",
             rp->members.sticky_cookie, t->cookie, same_site[rp->sticky_same_site]);
    long n = moat_http_head_add_field(head, len, cap, "Set-Cookie", value);
    return n < 0 ? (long)len : n;
}

/* The listener's Strict-Transport-Security, unless the backend sent its own. */
static long add_hsts(const struct moat_conn *c, const struct moat_http_head *h, char *head,
                     size_t len, size_t cap)
{
    const char *value = c->rt->cfg->listeners[c->listener].hsts;
    if (value == NULL || moat_http_field_find(h, "Strict-Transport-Security") != NULL)
        return (long)len;
    long n = moat_http_head_add_field(head, len, cap, "Strict-Transport-Security", value);
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
                conn_cli_send(c, w->head_buf, (size_t)n);
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
    n = add_hsts(c, h, w->head_buf, (size_t)n, sizeof(w->head_buf));
    conn_cli_send(c, w->head_buf, (size_t)n);
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
        conn_cli_send(c, ch, moat_http_chunk_head(ch, len));
        conn_cli_send(c, data, len);
        conn_cli_send(c, MOAT_HTTP_CRLF, 2);
    } else {
        conn_cli_send(c, data, len);
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
        conn_cli_send(c, MOAT_HTTP_LAST_CHUNK, sizeof(MOAT_HTTP_LAST_CHUNK) - 1);
    c->ex.resp_done = 1;
    return 0;
}

static const struct moat_http_parser_cbs resp_cbs = {
    .on_head = on_resp_head,
    .on_body = on_resp_body,
    .on_done = on_resp_done,
};

struct moat_http_parser *conn_new_resp_parser(struct moat_conn *c)
{
    return moat_http_parser_new(MOAT_HTTP_RESPONSE, &c->rt->http_limits, &resp_cbs, c);
}

