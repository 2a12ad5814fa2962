/* proxy/admin.c: the admin listener. Plain HTTP/1.1 on the control loop, one request per
 * connection: the head is parsed with http/'s strict parser (bounded: 4 KiB, 32 fields), the
 * answer never depends on a body, and the connection closes after it (FIN, then a short linger
 * so unread input does not turn into a reset that destroys the answer). A connection lives at
 * most CONN_TIMEOUT_MS; at most MAX_CONNS are open. Owns the workers' metrics. */
#include "proxy/admin.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "http/http.h"
#include "proxy/backends.h"
#include "proxy/base/list.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/runtime.h"
#include "proxy/worker.h"

#define MAX_CONNS 32          /* admin connections open at once; more wait in the backlog */
#define CONN_TIMEOUT_MS 5000  /* from accept to the answer */
#define LINGER_MS 1000        /* after our FIN: wait this long for the client's */

struct admin_conn {
    struct moat_list node;           /* in admin.conns */
    uv_tcp_t tcp;
    uv_timer_t timer;                /* the connection's deadline */
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    struct moat_http_parser *parser; /* owned */
    char *out;                       /* owned: the answer, in uv_write until its callback */
    int closes_pending;              /* handles not yet closed; freed at 0 */
    int is_closing;
    int is_answered;                 /* an answer was queued: input is discarded from now on */
    int is_shut;                     /* our FIN went out */
    int peer_eof;                    /* the client closed its side */
};

/* The process's admin listener: created by moat_admin_start(), used by the control loop only. */
static struct {
    uv_loop_t *loop;                     /* borrowed */
    struct moat_metrics_set *metrics;    /* owned */
    uv_tcp_t listener;
    int is_open;                         /* the listener handle was initialised, not closed */
    struct moat_list conns;              /* struct admin_conn by node */
    size_t n_conns;
    int is_paused;                       /* a client waits in the backlog for a free slot */
    int writes_allowed;                  /* PUT is served (admin.writes, or on loopback) */
    struct moat_runtime *rt;             /* one reference: the configuration /backends shows */
    char slab[4096];                     /* every read lands here; nothing is kept */
} admin;

static const struct moat_http_limits admin_limits = {
    .max_head_bytes = 4096,
    .max_fields = 32,
    .max_target_bytes = 1024,
};

static void accept_one(void);

static void on_conn_closed(uv_handle_t *h)
{
    struct admin_conn *c = h->data;
    if (--c->closes_pending > 0)
        return;
    moat_http_parser_free(c->parser);
    free(c->out);
    free(c);
    admin.n_conns--;
    if (admin.is_paused && admin.is_open) {
        admin.is_paused = 0;
        accept_one(); /* the client waiting in the backlog; libuv polls the listener again */
    }
}

static void conn_close(struct admin_conn *c)
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
    struct admin_conn *c = req->data;
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
    struct admin_conn *c = req->data;
    free(c->out); /* ours again, whatever the status */
    c->out = NULL;
    if (c->is_closing)
        return;
    if (status < 0 || uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        conn_close(c);
}

/* Queues the whole answer, with Connection: close; head_only for HEAD requests. */
static void answer(struct admin_conn *c, int status, const char *content_type, const char *body,
                   size_t body_len, int head_only)
{
    if (c->is_answered)
        return;
    c->is_answered = 1;
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                     status, moat_http_reason(status), content_type, body_len,
                     status == 405 ? "Allow: GET, HEAD\r\n" : ""); /* RFC 9110 §15.5.6 */
    size_t total = (size_t)n + (head_only ? 0 : body_len);
    c->out = malloc(total);
    if (c->out == NULL) {
        conn_close(c);
        return;
    }
    memcpy(c->out, head, (size_t)n);
    if (!head_only)
        memcpy(c->out + n, body, body_len);
    uv_buf_t buf = uv_buf_init(c->out, (unsigned)total);
    if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, on_write_done) != 0) {
        free(c->out);
        c->out = NULL;
        conn_close(c);
    }
}

static void answer_text(struct admin_conn *c, int status, const char *text, int head_only)
{
    answer(c, status, "text/plain; charset=utf-8", text, strlen(text), head_only);
}

static uint64_t now_ms(void)
{
    /* The workers mark backends down with their loops' uv_now(): the same monotonic clock. */
    uv_update_time(admin.loop);
    return uv_now(admin.loop);
}

static void serve_path(struct admin_conn *c, const char *path, size_t len, int head_only)
{
    if (len == 8 && memcmp(path, "/metrics", 8) == 0) {
        char *text;
        size_t text_len;
        if (moat_metrics_set_render(admin.metrics, now_ms(), &text, &text_len) != 0) {
            answer_text(c, 500, "out of memory\n", head_only);
            return;
        }
        answer(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, text_len, head_only);
        free(text);
    } else if (len == 8 && memcmp(path, "/healthz", 8) == 0) {
        answer_text(c, 200, "ok\n", head_only);
    } else if (len == 7 && memcmp(path, "/readyz", 7) == 0) {
        char why[300];
        char body[320];
        int ready = moat_metrics_set_is_ready(admin.metrics, now_ms(), why, sizeof(why));
        snprintf(body, sizeof(body), "%s%s\n", ready ? "" : "not ready: ", why);
        answer_text(c, ready ? 200 : 503, body, head_only);
    } else if (len == 9 && memcmp(path, "/backends", 9) == 0 && admin.rt != NULL) {
        char *json;
        size_t json_len;
        if (moat_backends_json(admin.rt, now_ms(), &json, &json_len) != 0) {
            answer_text(c, 500, "out of memory\n", head_only);
            return;
        }
        answer(c, 200, "application/json", json, json_len, head_only);
        free(json);
    } else {
        answer_text(c, 404, "not found: try /metrics, /healthz, /readyz or /backends\n",
                    head_only);
    }
}

/* PUT /backends/...: the admin's word on a backend (proxy/backends.h). */
static void serve_put(struct admin_conn *c, const struct moat_http_head *h, size_t path_len)
{
    if (!admin.writes_allowed) {
        answer_text(c, 403, "forbidden: writes need an admin listener on a loopback address "
                    "(or admin.writes: true)\n", 0);
        return;
    }
    if (admin.rt == NULL) {
        answer_text(c, 503, "no configuration yet\n", 0);
        return;
    }
    const char *query = path_len < h->target_len ? h->target + path_len + 1 : "";
    size_t query_len = path_len < h->target_len ? h->target_len - path_len - 1 : 0;
    char msg[512];
    int status = moat_backends_put(admin.rt, h->target, path_len, query, query_len, msg,
                                   sizeof(msg));
    if (status == 200)
        moat_log(MOAT_LOG_INFO, "main admin: %.*s", (int)strcspn(msg, "\n"), msg);
    answer_text(c, status, msg, 0);
}

static int on_head(void *ctx, const struct moat_http_head *h)
{
    struct admin_conn *c = ctx;
    size_t len = 0; /* the path, without a query */
    while (len < h->target_len && h->target[len] != '?')
        len++;
    if (h->method == MOAT_HTTP_M_PUT && len > 10 && memcmp(h->target, "/backends/", 10) == 0)
        serve_put(c, h, len);
    else if (h->method != MOAT_HTTP_M_GET && h->method != MOAT_HTTP_M_HEAD)
        answer_text(c, 405, "method not allowed: use GET or HEAD (PUT on /backends/...)\n", 0);
    else
        serve_path(c, h->target, len, h->method == MOAT_HTTP_M_HEAD);
    return -1; /* answered: stop parsing (a body, the next request: nothing more is read) */
}

static const struct moat_http_parser_cbs parser_cbs = {.on_head = on_head};

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = admin.slab;
    buf->len = sizeof(admin.slab);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct admin_conn *c = s->data;
    if (nread == 0 || c->is_closing)
        return;
    if (nread < 0) {
        c->peer_eof = 1;
        uv_read_stop(s);
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
        moat_log(MOAT_LOG_DEBUG, "admin bad request: %d %s", status,
                 moat_http_parser_error_reason(c->parser));
        answer_text(c, status, text, 0);
    }
}

static void accept_one(void)
{
    struct admin_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return; /* the client waits in the backlog until memory frees up or it gives up */
    admin.n_conns++;
    moat_list_init(&c->node);
    moat_list_push_back(&admin.conns, &c->node);
    c->tcp.data = c->timer.data = c->write_req.data = c->shutdown_req.data = c;
    uv_tcp_init(admin.loop, &c->tcp);
    uv_timer_init(admin.loop, &c->timer);
    if (uv_accept((uv_stream_t *)&admin.listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    c->parser = moat_http_parser_new(MOAT_HTTP_REQUEST, &admin_limits, &parser_cbs, c);
    if (c->parser == NULL) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_conn_timer, CONN_TIMEOUT_MS, 0);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_connection(uv_stream_t *server, int status)
{
    (void)server;
    if (status < 0) {
        moat_log(MOAT_LOG_WARN, "admin accept: %s", uv_strerror(status));
        return;
    }
    if (admin.n_conns >= MAX_CONNS) {
        /* Not accepting makes libuv stop polling the listener: the client waits in the
         * kernel's backlog until a connection ends (on_conn_closed). */
        admin.is_paused = 1;
        return;
    }
    accept_one();
}

void moat_admin_map(struct moat_runtime *rt)
{
    if (admin.metrics == NULL)
        return;
    moat_runtime_ref(rt);
    moat_runtime_unref(admin.rt);
    admin.rt = rt;
    const char **pool_names = calloc(rt->n_pools + 1, sizeof(*pool_names));
    size_t *pool_slot = calloc(rt->n_pools + 1, sizeof(*pool_slot));
    const char **names = calloc(rt->n_backends + 1, sizeof(*names));
    size_t *pools = calloc(rt->n_backends + 1, sizeof(*pools));
    int missed = -ENOMEM;
    if (pool_names != NULL && pool_slot != NULL && names != NULL && pools != NULL) {
        for (size_t p = 0; p < rt->n_pools; p++)
            pool_names[p] = rt->pools[p].name;
        for (size_t b = 0; b < rt->n_backends; b++) {
            names[b] = rt->backends[b].name;
            pools[b] = rt->backends[b].pool;
        }
        struct moat_metrics_layout layout = {.pool_names = pool_names, .n_pools = rt->n_pools,
                                             .backend_names = names, .backend_pool = pools,
                                             .backend_targets = rt->targets,
                                             .n_backends = rt->n_backends};
        missed = moat_metrics_set_layout(admin.metrics, &layout, pool_slot);
    }
    if (missed >= 0)
        for (size_t p = 0; p < rt->n_pools; p++)
            rt->pools[p].metrics_slot = pool_slot[p];
    if (missed != 0)
        moat_log(MOAT_LOG_WARN, "main admin: %s; their requests are not counted in /metrics",
                 missed < 0 ? "out of memory for the pools' metrics"
                            : "more pools than metrics slots since the start");
    free(pool_names);
    free(pool_slot);
    free(names);
    free(pools);
}

static int is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    return sa->sa_family == AF_INET6 &&
           IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
}

/* Binds and listens; writes (PUT) are served as admin_writes says (-1: on loopback only).
 * 0, or -1 with err. */
static int open_listener(const struct moat_cfg_hostport *hp, int admin_writes, char *err,
                         size_t err_len)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    char port[8];
    snprintf(port, sizeof(port), "%u", hp->port);
    struct addrinfo *res;
    int rc = getaddrinfo(hp->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_len, "%s", gai_strerror(rc));
        return -1;
    }
    int is_local = is_loopback(res->ai_addr);
    admin.writes_allowed = admin_writes == -1 ? is_local : admin_writes;
    if (!is_local)
        moat_log(MOAT_LOG_WARN, "main admin listener on %s is not a loopback address: anyone "
                 "who can reach it reads the metrics%s", hp->host, admin.writes_allowed
                 ? " and can drain backends (admin.writes: true)"
                 : " (writes, PUT /backends/..., are refused)");
    uv_tcp_init(admin.loop, &admin.listener);
    admin.is_open = 1;
    int e = uv_tcp_bind(&admin.listener, res->ai_addr, 0);
    freeaddrinfo(res);
    if (e == 0)
        e = uv_listen((uv_stream_t *)&admin.listener, 64, on_connection);
    if (e != 0) {
        snprintf(err, err_len, "%s", uv_strerror(e));
        return -1;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[64] = "?";
    uv_tcp_getsockname(&admin.listener, (struct sockaddr *)&ss, &len);
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((const struct sockaddr_in6 *)&ss, ip, sizeof(ip));
        moat_log(MOAT_LOG_INFO, "main admin listening on http://[%s]:%d", ip,
                 ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port));
    } else {
        uv_ip4_name((const struct sockaddr_in *)&ss, ip, sizeof(ip));
        moat_log(MOAT_LOG_INFO, "main admin listening on http://%s:%d", ip,
                 ntohs(((const struct sockaddr_in *)&ss)->sin_port));
    }
    return 0;
}

int moat_admin_start(uv_loop_t *loop, struct moat_runtime *rt, struct moat_worker *workers,
                     size_t n_workers)
{
    const struct moat_cfg *cfg = rt->cfg;
    if (!cfg->has_admin)
        return 0;
    admin.loop = loop;
    moat_list_init(&admin.conns);
    admin.metrics = moat_metrics_set_new(n_workers);
    if (admin.metrics != NULL)
        moat_admin_map(rt);
    if (admin.metrics == NULL) {
        fprintf(stderr, "moat: error: --admin: out of memory\n");
        return -1;
    }
    char err[256];
    if (open_listener(&cfg->admin, cfg->admin_writes, err, sizeof(err)) != 0) {
        fprintf(stderr, "moat: error: --admin %s%s%s:%u: %s\n", cfg->admin.is_ipv6 ? "[" : "",
                cfg->admin.host, cfg->admin.is_ipv6 ? "]" : "", cfg->admin.port, err);
        moat_admin_stop();
        uv_run(loop, UV_RUN_NOWAIT); /* the listener's close callback */
        moat_admin_free();
        return -1;
    }
    for (size_t i = 0; i < n_workers; i++)
        workers[i].metrics = moat_metrics_set_worker(admin.metrics, i);
    return 0;
}

void moat_admin_stop(void)
{
    if (admin.is_open) {
        admin.is_open = 0;
        uv_close((uv_handle_t *)&admin.listener, NULL);
    }
    while (admin.loop != NULL && !moat_list_is_empty(&admin.conns))
        conn_close(moat_list_entry(admin.conns.next, struct admin_conn, node));
}

void moat_admin_free(void)
{
    moat_runtime_unref(admin.rt);
    admin.rt = NULL;
    moat_metrics_set_free(admin.metrics);
    admin.metrics = NULL;
}
