/* proxy/exchange.c: one request of a client connection and its end: the access log line and
 * the counters, the error responses moat makes itself, and the request parser's callbacks
 * (routing, the head and body toward the backend). See conn_internal.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "proxy/accesslog.h"
#include "proxy/balance.h"
#include "proxy/conn_internal.h"
#include "proxy/metrics.h"
#include "proxy/reqid.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"
#include "tls/tls.h"

static void remember_for_log(struct moat_conn *c, const struct moat_http_head *h);
static void exchange_reset(struct moat_conn *c);

/* ---- the exchange ------------------------------------------------------------------------- */

/* Passive health: how the exchange with the chosen backend went, once per attempt. */
void conn_report_backend(struct moat_conn *c, int failed)
{
    if (c->ex.tries == 0 || c->ex.is_reported)
        return;
    c->ex.is_reported = 1;
    const struct moat_rt_pool *rp = &c->ex.rt->pools[c->ex.pool];
    struct moat_target *t = c->ex.rt->backends[c->ex.backend].target;
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
void conn_pick_end(struct moat_conn *c)
{
    if (c->ex.is_counted)
        moat_picker_ended(c->ex.gen->picker, c->ex.pool, c->ex.backend);
    c->ex.is_counted = 0;
}

/* The exchange is over: what it held of the choosing state goes back. */
void conn_exchange_release(struct moat_conn *c)
{
    conn_pick_end(c);
    if (c->ex.is_retry)
        moat_picker_retry_end(c->ex.gen->picker, c->ex.pool);
    c->ex.is_retry = 0;
}

/* After the upstream went back: it used ex.rt while leased. */
static void exchange_reset(struct moat_conn *c)
{
    conn_exchange_release(c);
    if (c->ex.gen != NULL)
        moat_gen_release(c->ex.gen);
    free(c->ex.replay);
    free(c->ex.log_req);
    memset(&c->ex, 0, sizeof(c->ex));
}

/* Keeps what the access log needs of a request head, and settles the request id: the client's
 * when it sent one sane X-Request-Id, else a new one. */
static void remember_for_log(struct moat_conn *c, const struct moat_http_head *h)
{
    free(c->ex.log_req);
    c->ex.log_req = NULL;
    if (c->rt->cfg->access_log) {
        const struct moat_http_field *ref = moat_http_field_find(h, "Referer");
        const struct moat_http_field *ua = moat_http_field_find(h, "User-Agent");
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
size_t conn_metrics_pool(const struct moat_conn *c)
{
    return c->rt->pools[c->ex.has_head ? c->ex.pool : c->rt->cfg->default_pool].metrics_slot;
}

void conn_write_access_log(struct moat_conn *c)
{
    /* Once per request, access log or not. */
    moat_metrics_request(c->w->metrics, conn_metrics_pool(c), c->ex.status,
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
        .upstream = c->ex.tries > 0 ? c->ex.rt->backends[c->ex.backend].target->addr_text : NULL,
        .upstream_ms = c->ex.tries > 0 ? (int64_t)(loop_now - c->ex.up_start_ms) : -1,
        .pool = c->ex.tries > 0 ? c->ex.rt->pools[c->ex.pool].name : NULL,
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
void conn_complete_exchange(struct moat_conn *c)
{
    conn_write_access_log(c);
    int reuse_up = c->ex.up_reusable && c->ex.req_done && c->to_up.bytes == 0;
    moat_upstream_release(c->up, reuse_up);
    c->up = NULL;
    moat_http_parser_reset(c->resp); /* the next exchange may use another backend connection */
    moat_bufq_clear(&c->to_up);
    int keep = c->ex.plan.is_keep_alive && c->ex.is_keep_alive && c->ex.req_done &&
               !c->peer_eof && !c->w->is_draining;
    exchange_reset(c);
    if (!keep) {
        conn_begin_shutdown(c);
        return;
    }
    conn_set_state(c, MOAT_CONN_HEAD);
    moat_http_parser_next(c->req);
    conn_set_deadline(c, c->rt->idle_timeout_ms);
    conn_rx_unblock(c, MOAT_RX_PIPELINE);
    conn_pump(c); /* the next request may be buffered whole already */
}

/* Answers with a short error response of moat's own. After the response head went out only an
 * abort is left: the client sees the truncation. */
void conn_respond_error(struct moat_conn *c, int status, const char *detail)
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
    moat_metrics_error_response(c->w->metrics, conn_metrics_pool(c), status);
    conn_cli_send(c, buf, (size_t)n);
    const char *body = strstr(buf, "\r\n\r\n"); /* the access log counts body bytes */
    c->ex.body_bytes_out = body != NULL ? (uint64_t)(buf + n - body - 4) : 0;
    c->ex.status = status;
    c->ex.head_sent = 1;
    c->ex.resp_done = 1;
    c->ex.plan.is_keep_alive = keep;
    c->ex.plan.framing = MOAT_HTTP_BODY_LENGTH;
    conn_complete_exchange(c);
    conn_cli_flush(c);
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

/* RFC 9440's Client-Cert and Client-Cert-Chain values of the connection's verified client
 * certificate, made once per connection. */
#define CLIENT_CERT_FIELD_MAX 12000 /* the forwarded head must still fit its 32 KiB */
static void client_cert_fields(struct moat_conn *c)
{
    if (c->has_client_cert || c->rt->cfg->listeners[c->listener].client_auth == 0)
        return;
    c->has_client_cert = 1;
    char **out[2] = {&c->client_cert, &c->client_cert_chain};
    for (int chain = 0; chain < 2; chain++) {
        char *v = malloc(CLIENT_CERT_FIELD_MAX);
        long n = v != NULL ? moat_tls_session_client_cert(c->tls, chain, v,
                                                          CLIENT_CERT_FIELD_MAX) : -1;
        if (n < 0 && v != NULL)
            conn_log(c, MOAT_LOG_WARN, "client certificate %s too large to forward",
                     chain ? "chain" : "");
        if (n <= 0) {
            free(v);
            continue;
        }
        char *fit = realloc(v, (size_t)n + 1); /* kept for the connection's life */
        *out[chain] = fit != NULL ? fit : v;
    }
}

/* The Host names a site of another certificate of this listener than the one the handshake
 * chose (a client reusing a connection across sites, or a name fronted by another's SNI). */
static int is_misdirected(const struct moat_conn *c, const struct moat_http_head *h)
{
    size_t len = h->host_len;
    if (len == 0 || h->host[0] == '[')
        return 0; /* no Host, or an IPv6 literal: never a certificate's name */
    const char *colon = memchr(h->host, ':', len);
    if (colon != NULL)
        len = (size_t)(colon - h->host);
    return moat_tls_session_is_misdirected(c->tls, h->host, len);
}

static int on_req_head(void *ctx, const struct moat_http_head *h)
{
    struct moat_conn *c = ctx;
    struct moat_worker *w = c->w;
    conn_set_state(c, MOAT_CONN_RELAY);
    c->ex.has_head = 1;
    c->ex.method = h->method;
    c->ex.minor = h->version_minor;
    c->ex.is_keep_alive = h->is_keep_alive && !w->is_draining;
    c->ex.replay_ok = 1;
    c->ex.gen = moat_worker_members(w, c->gen);
    moat_gen_hold(c->ex.gen);
    c->ex.rt = c->ex.gen->rt;
    c->ex.pool = pick_pool(c->rt->cfg, h);
    const struct moat_balance_pool *members = &c->ex.rt->pools[c->ex.pool].members;
    moat_pick_req_make(members, h, c->peer_ip, &c->ex.pick);
    if (c->ex.pick.pinned != NULL && c->ex.pick.pinned_len < sizeof(c->ex.pinned)) {
        memcpy(c->ex.pinned, c->ex.pick.pinned, c->ex.pick.pinned_len); /* h goes away */
        c->ex.pinned[c->ex.pick.pinned_len] = '\0';
    }
    c->ex.pick.pinned = NULL;
    remember_for_log(c, h);
    if (is_misdirected(c, h)) { /* (the SNI itself is raw client bytes: not logged) */
        conn_log(c, MOAT_LOG_INFO, "request for %.*s on a connection whose certificate is "
                 "another site's: 421", (int)h->host_len, h->host);
        moat_http_parser_fail(c->req, 421, "this connection serves another site: open a new "
                              "one for this host");
        return -1;
    }
    uint64_t max = c->rt->max_body_bytes;
    if (max != 0 && h->framing == MOAT_HTTP_BODY_LENGTH && h->content_length > max) {
        conn_log(c, MOAT_LOG_INFO, "request body of %llu bytes over --max-body-size (%llu)",
                 (unsigned long long)h->content_length, (unsigned long long)max);
        moat_http_parser_fail(c->req, 413, "request body too large");
        return -1; /* refused before a byte of it is forwarded */
    }
    struct moat_http_fwd fwd = {.client_addr = c->peer_ip, .peer_is_trusted = c->is_trusted,
                                .request_id = c->ex.request_id};
    client_cert_fields(c);
    fwd.client_cert = c->client_cert;
    fwd.client_cert_chain = c->client_cert_chain;
    long n = moat_http_request_head_write(h, &fwd, w->head_buf, sizeof(w->head_buf));
    if (n < 0) {
        moat_http_parser_fail(c->req, 431, "request head too large to forward");
        return -1;
    }
    if (conn_up_queue(c, w->head_buf, (size_t)n) != 0)
        return -1;
    c->ex.req_chunked = h->framing == MOAT_HTTP_BODY_CHUNKED;
    c->ex.is_upgrade = h->is_upgrade;
    /* While a body is due the client's silence is bounded; once it is sent, only the backend's. */
    conn_set_deadline(c, h->framing == MOAT_HTTP_BODY_NONE ? 0 : c->rt->body_gap_ms);
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
         * connection (conn_respond_error never pools it). */
        conn_log(c, MOAT_LOG_INFO, "request body over --max-body-size (%llu bytes)",
                 (unsigned long long)max);
        moat_http_parser_fail(c->req, 413, "request body too large");
        return -1;
    }
    int rc;
    if (c->ex.req_chunked) {
        char ch[24];
        rc = conn_up_queue(c, ch, moat_http_chunk_head(ch, len));
        rc = rc != 0 ? rc : conn_up_queue(c, data, len);
        rc = rc != 0 ? rc : conn_up_queue(c, MOAT_HTTP_CRLF, 2);
    } else {
        rc = conn_up_queue(c, data, len);
    }
    moat_deadline_again(&c->deadline);
    return rc;
}

static int on_req_done(void *ctx)
{
    struct moat_conn *c = ctx;
    if (c->ex.req_chunked &&
        conn_up_queue(c, MOAT_HTTP_LAST_CHUNK, sizeof(MOAT_HTTP_LAST_CHUNK) - 1) != 0)
        return -1;
    c->ex.req_done = 1;
    conn_set_deadline(c, 0);
    if (c->up != NULL && moat_upstream_is_ready(c->up))
        moat_upstream_set_deadline(c->up, c->rt->backend_gap_ms);
    return 0;
}

const struct moat_http_parser_cbs conn_req_cbs = {
    .on_head = on_req_head,
    .on_body = on_req_body,
    .on_done = on_req_done,
};

