/* proxy/conn.c: one client connection, from accept to close: TLS over memory, reads and writes
 * toward the client, backpressure, timeouts, the handshake budget, and orderly or abortive
 * ends. It owns its TLS session, parsers, queues and handles; it leases at most one upstream.
 * The exchange itself is in exchange.c (the request side) and relay.c (the backend side). */
#include "proxy/conn_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy/base/tcp.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"
#include "tls/tls.h"

const char *const conn_state_names[] = {"HANDSHAKE", "HEAD",     "RELAY",
                                          "TUNNEL",    "SHUTDOWN", "CLOSING"};

void conn_set_state(struct moat_conn *c, enum moat_conn_state to)
{
    moat_log(MOAT_LOG_DEBUG, "w%u c%llu %s -> %s", c->w->id, (unsigned long long)c->id,
             conn_state_names[c->state], conn_state_names[to]);
    c->state = to;
}

/* ---- deadlines ---------------------------------------------------------------------------- */

static void on_conn_timer(void *owner);

/* One deadline carries the current state's timeout; repeating, so moat_deadline_again() moves
 * it on with traffic. */
void conn_set_deadline(struct moat_conn *c, uint64_t ms)
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
            conn_begin_shutdown(c); /* keep-alive idle: an ordinary end */
            break;
        }
        moat_metrics_client_timeout(c->w->metrics, MOAT_METRICS_CT_HEAD);
        conn_log(c, MOAT_LOG_INFO, "request head timeout after %llu ms",
                 (unsigned long long)c->rt->head_timeout_ms);
        conn_respond_error(c, 408, "request head not received in time");
        break;
    case MOAT_CONN_RELAY:
        if (c->ex.is_waiting) {
            conn_log(c, MOAT_LOG_INFO, "no backend connection free within %llu ms "
                     "(--max-backend-connections)",
                     (unsigned long long)c->rt->connect_timeout_ms);
            conn_respond_error(c, 503, "backend busy");
            break;
        }
        moat_metrics_client_timeout(c->w->metrics, MOAT_METRICS_CT_BODY);
        conn_log(c, MOAT_LOG_INFO, "request body stalled for %llu ms",
                 (unsigned long long)c->rt->body_gap_ms);
        conn_respond_error(c, 408, "request body not received in time");
        break;
    case MOAT_CONN_TUNNEL:
        conn_log(c, MOAT_LOG_INFO, "tunnel idle for %llu ms (--tunnel-timeout)",
                 (unsigned long long)c->rt->tunnel_idle_ms);
        conn_begin_shutdown(c);
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

void conn_rx_block(struct moat_conn *c, unsigned why)
{
    c->rx_blocked |= why;
    rx_apply(c);
}

void conn_rx_unblock(struct moat_conn *c, unsigned why)
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
void conn_cli_send(struct moat_conn *c, const char *data, size_t len)
{
    struct moat_worker *w = c->w;
    if (w->stage_conn != c && w->stage_len > 0)
        conn_cli_flush(w->stage_conn); /* every handler flushes before returning: defensive only */
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
            return; /* conn_cli_flush() notices the dead session through the closed state */
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

void conn_cli_flush(struct moat_conn *c)
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
    free(c->client_cert);
    free(c->client_cert_chain);
    free(c->ex.replay);
    free(c->ex.log_req);
    moat_list_remove(&c->node);
    struct moat_gen *g = c->gen, *ex_gen = c->ex.gen;
    free(c);
    if (ex_gen != NULL)
        moat_gen_release(ex_gen);
    moat_gen_release(g);
    moat_worker_conn_gone(w);
}

void moat_conn_close(struct moat_conn *c)
{
    if (c->state == MOAT_CONN_CLOSING)
        return; /* idempotent: a timeout, an error and EOF may all land here */
    conn_set_state(c, MOAT_CONN_CLOSING);
    moat_list_remove(&c->hs_node);   /* a no-op unless it waits for a handshake turn */
    moat_list_remove(&c->waiter.node); /* or for a backend slot */
    conn_exchange_release(c);
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
    conn_set_deadline(c, c->rt->linger_ms);
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
void conn_begin_shutdown(struct moat_conn *c)
{
    if (c->state == MOAT_CONN_SHUTDOWN || c->state == MOAT_CONN_CLOSING)
        return;
    moat_upstream_release(c->up, 0);
    c->up = NULL;
    int was_handshaking = c->state == MOAT_CONN_HANDSHAKE;
    conn_set_state(c, MOAT_CONN_SHUTDOWN);
    if (!c->is_plain_reject && !was_handshaking) {
        if (stage_seal(c) != 0) {
            moat_conn_close(c);
            return;
        }
        moat_tls_session_close_notify(c->tls);
    }
    /* Until the FIN, only the send deadline runs: a client that stops reading our last
     * response does not hold the connection for ever. */
    conn_set_deadline(c, 0);
    conn_rx_block(c, MOAT_RX_EOF);
    conn_cli_flush(c);
}

void moat_conn_drain(struct moat_conn *c)
{
    switch (c->state) {
    case MOAT_CONN_HANDSHAKE:
        moat_conn_close(c);
        break;
    case MOAT_CONN_HEAD:
        if (!c->ex.is_head_timed && c->pending == NULL)
            conn_begin_shutdown(c);
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
        conn_tunnel_to_backend(c, data, len);
        return;
    }
    if (c->state == MOAT_CONN_HEAD && !c->ex.is_head_timed) {
        c->ex.is_head_timed = 1; /* the first byte of a request: its head is now due */
        c->ex.start_ms = uv_now(&c->w->loop);
        conn_set_deadline(c, c->rt->head_timeout_ms);
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
        conn_rx_block(c, MOAT_RX_PIPELINE);
        break;
    case MOAT_HTTP_ERROR:
        keep_pending(c, NULL, 0);
        conn_log(c, MOAT_LOG_INFO, "bad request: %d %s", moat_http_parser_error_status(c->req),
                 moat_http_parser_error_reason(c->req));
        conn_respond_error(c, moat_http_parser_error_status(c->req),
                      moat_http_parser_error_reason(c->req));
        return;
    }
    if (c->state != MOAT_CONN_RELAY)
        return;
    /* Bytes for an active upstream are written once per client read, by conn_pump(): one decrypted
     * record at a time would mean a write(2) per 16 KiB. */
    if (c->up == NULL && c->ex.tries == 0)
        conn_start_upstream(c);
    if (c->state != MOAT_CONN_CLOSING && conn_up_pending(c) > c->rt->high_water)
        conn_rx_block(c, MOAT_RX_PEER_FULL);
}

/* The client will send nothing more (close_notify or a bare transport EOF). */
static void on_client_eof(struct moat_conn *c, int is_orderly)
{
    c->peer_eof = 1;
    conn_rx_block(c, MOAT_RX_EOF);
    if (c->state == MOAT_CONN_HEAD && !c->ex.is_head_timed && c->pending == NULL) {
        if (is_orderly)
            conn_begin_shutdown(c); /* answer close_notify with ours */
        else
            moat_conn_close(c);
        return;
    }
    if (c->state == MOAT_CONN_RELAY && c->ex.req_done)
        return; /* a half-close after a complete request: finish the response, then close */
    if (c->state == MOAT_CONN_TUNNEL) {
        conn_tunnel_client_done(c);
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
        conn_begin_shutdown(c);
        return;
    }
    moat_metrics_handshake(c->w->metrics, moat_tls_session_is_resumed(c->tls)
                                              ? MOAT_METRICS_HS_RESUMED : MOAT_METRICS_HS_FULL);
    conn_set_state(c, MOAT_CONN_HEAD);
    conn_set_deadline(c, c->rt->head_timeout_ms);
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
        conn_begin_shutdown(c);
        return -1;
    }
    return 0;
}

/* Moves the client's bytes forward as far as the state and backpressure allow. */
void conn_pump(struct moat_conn *c)
{
    if (c->state == MOAT_CONN_HANDSHAKE)
        handshake(c);
    do {
        if (read_requests(c) != 0)
            return;
    } while (conn_up_flush(c)); /* the backend took everything at once: read on */
    rx_apply(c);           /* reads resume once the session's backlog is consumed */
    if (c->state != MOAT_CONN_CLOSING)
        conn_cli_flush(c);
}

void moat_conn_hs_turn(struct moat_conn *c)
{
    if (c->state != MOAT_CONN_HANDSHAKE)
        return;
    c->hs_granted = 1;
    conn_pump(c);
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
    conn_begin_shutdown(c);
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
        conn_rx_block(c, MOAT_RX_EOF);
        moat_tls_session_feed_eof(c->tls);
    } else {
        moat_metrics_bytes_in(c->w->metrics, (uint64_t)nread);
        if (c->state == MOAT_CONN_HANDSHAKE && moat_tls_session_buffered(c->tls) == 0 &&
            !c->tls_started && reject_plain_http(c, buf->base, (size_t)nread))
            return;
        c->tls_started = 1;
        /* The slab holds the bytes until this callback returns: lent, not copied, and what the
         * conn_pump leaves is kept by settle(). */
        if (moat_tls_session_lend(c->tls, buf->base, (size_t)nread) != 0) {
            moat_tls_session_settle(c->tls);
            conn_log(c, MOAT_LOG_INFO, "client sends faster than it is served%s", "");
            moat_conn_close(c);
            return;
        }
        rx_apply(c); /* what waits unprocessed is bounded */
        conn_pump(c);
        if (moat_tls_session_settle(c->tls) != 0 && c->state != MOAT_CONN_CLOSING) {
            conn_log(c, MOAT_LOG_INFO, "client sends faster than it is served%s", "");
            moat_conn_close(c);
        }
        return;
    }
    conn_pump(c);
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
    c->waiter.on_slot = conn_on_backend_slot;
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
    c->listener = (size_t)((uv_tcp_t *)server - w->listeners);
    c->tls = moat_tls_session_new(c->gen->tls->srv[c->listener], on_tls_emit, c);
    c->req = moat_http_parser_new(MOAT_HTTP_REQUEST, &c->rt->http_limits, &conn_req_cbs, c);
    c->resp = conn_new_resp_parser(c);
    if (c->tls == NULL || c->req == NULL || c->resp == NULL) {
        conn_log(c, MOAT_LOG_ERROR, "out of memory for a new connection%s", "");
        moat_conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_set_deadline(c, c->rt->handshake_timeout_ms);
    uv_read_start((uv_stream_t *)&c->tcp, on_cli_alloc, on_cli_read);
}
