/* proxy/admin.c: the admin listener: a plain-HTTP server (proxy/plain.h) on the control loop
 * serving the metrics, health, readiness and backends' state, and the admin's writes on
 * backends. Owns the workers' metrics. */
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
#include "proxy/dns.h"
#include "proxy/base/text.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/plain.h"
#include "proxy/runtime.h"
#include "proxy/worker.h"
#include "tls/tls.h"

#define MAX_CONNS 32 /* admin connections open at once; more wait in the backlog */

/* The process's admin listener: created by moat_admin_start(), used by the control loop only. */
static struct {
    uv_loop_t *loop;                     /* borrowed */
    struct moat_metrics_set *metrics;    /* owned */
    struct moat_plain_server *server;    /* owned; NULL once stopped */
    int writes_allowed;                  /* PUT is served (admin.writes, or on loopback) */
    int (*cert_swap)(void *arg, const char *why, char *msg, size_t cap); /* or NULL */
    const struct moat_dns *dns;          /* borrowed: the backend names, or NULL */
    void *cert_swap_arg;
    struct moat_runtime *rt;             /* one reference: the configuration /backends shows */
} admin;

static uint64_t now_ms(void)
{
    /* The workers mark backends down with their loops' uv_now(): the same monotonic clock. */
    uv_update_time(admin.loop);
    return uv_now(admin.loop);
}

/* Each listener's certificates and when they expire, so that expiry can be alerted on. */
static void put_cert_expiry(struct moat_text *t)
{
    if (admin.rt == NULL)
        return;
    moat_text_put(t, "# HELP moat_tls_certificate_not_after_seconds When the certificate "
                  "expires (its notAfter), in seconds since the Unix epoch.\n# TYPE "
                  "moat_tls_certificate_not_after_seconds gauge\n");
    const struct moat_cfg *cfg = admin.rt->cfg;
    for (size_t l = 0; l < cfg->n_listeners; l++) {
        const struct moat_cfg_hostport *hp = &cfg->listeners[l].addr;
        for (size_t i = 0; i < moat_tls_ctx_count(admin.rt->tls[l]); i++) {
            int64_t not_after;
            const char *file = moat_tls_ctx_cert(admin.rt->tls[l], i, &not_after);
            moat_text_put(t, "moat_tls_certificate_not_after_seconds{listener=\"%s%s%s:%u\","
                          "file=\"", hp->is_ipv6 ? "[" : "", hp->host, hp->is_ipv6 ? "]" : "",
                          hp->port);
            for (const char *p = file; *p != '\0'; p++) /* the text format's escapes */
                moat_text_put(t, *p == '"' || *p == '\\' ? "\\%c" : *p == '\n' ? "\\n" : "%c",
                              *p);
            moat_text_put(t, "\"} %lld\n", (long long)not_after);
        }
    }
}

static void serve_path(struct moat_plain_conn *c, const char *path, size_t len, int head_only)
{
    if (len == 8 && memcmp(path, "/metrics", 8) == 0) {
        char *text;
        size_t text_len;
        if (moat_metrics_set_render(admin.metrics, now_ms(), &text, &text_len) != 0) {
            moat_plain_answer_text(c, 500, "out of memory\n", head_only);
            return;
        }
        struct moat_text t = {0};
        moat_text_put(&t, "%s", text);
        free(text);
        put_cert_expiry(&t);
        if (admin.dns != NULL)
            moat_dns_render(admin.dns, &t);
        if (t.failed) {
            free(t.buf);
            moat_plain_answer_text(c, 500, "out of memory\n", head_only);
            return;
        }
        moat_plain_answer(c, 200, NULL, "text/plain; version=0.0.4; charset=utf-8", t.buf,
                          t.len, head_only);
        free(t.buf);
    } else if (len == 8 && memcmp(path, "/healthz", 8) == 0) {
        moat_plain_answer_text(c, 200, "ok\n", head_only);
    } else if (len == 7 && memcmp(path, "/readyz", 7) == 0) {
        char why[300];
        char body[320];
        int ready = moat_metrics_set_is_ready(admin.metrics, now_ms(), why, sizeof(why));
        snprintf(body, sizeof(body), "%s%s\n", ready ? "" : "not ready: ", why);
        moat_plain_answer_text(c, ready ? 200 : 503, body, head_only);
    } else if (len == 9 && memcmp(path, "/backends", 9) == 0 && admin.rt != NULL) {
        char *json;
        size_t json_len;
        if (moat_backends_json(admin.rt, now_ms(), &json, &json_len) != 0) {
            moat_plain_answer_text(c, 500, "out of memory\n", head_only);
            return;
        }
        moat_plain_answer(c, 200, NULL, "application/json", json, json_len, head_only);
        free(json);
    } else {
        moat_plain_answer_text(c, 404, "not found: try /metrics, /healthz, /readyz or /backends\n",
                    head_only);
    }
}

/* PUT /backends/...: the admin's word on a backend (proxy/backends.h). */
static void serve_put(struct moat_plain_conn *c, const struct moat_http_head *h, size_t path_len)
{
    if (!admin.writes_allowed) {
        moat_plain_answer_text(c, 403, "forbidden: writes need an admin listener on a "
                               "loopback address (or admin.writes: true)\n", 0);
        return;
    }
    if (admin.rt == NULL) {
        moat_plain_answer_text(c, 503, "no configuration yet\n", 0);
        return;
    }
    const char *query = path_len < h->target_len ? h->target + path_len + 1 : "";
    size_t query_len = path_len < h->target_len ? h->target_len - path_len - 1 : 0;
    char msg[512];
    int status = moat_backends_put(admin.rt, h->target, path_len, query, query_len, msg,
                                   sizeof(msg));
    if (status == 200)
        moat_log(MOAT_LOG_INFO, "main admin: %.*s", (int)strcspn(msg, "\n"), msg);
    moat_plain_answer_text(c, status, msg, 0);
}

void moat_admin_set_dns(const struct moat_dns *dns)
{
    admin.dns = dns;
}

void moat_admin_on_cert_swap(int (*swap)(void *arg, const char *why, char *msg, size_t cap),
                             void *arg)
{
    admin.cert_swap = swap;
    admin.cert_swap_arg = arg;
}

/* PUT /certificates/reload: the certificate files loaded and swapped in now. */
static void serve_cert_swap(struct moat_plain_conn *c)
{
    char msg[1100];
    if (!admin.writes_allowed) {
        moat_plain_answer_text(c, 403, "forbidden: writes need an admin listener on a "
                               "loopback address (or admin.writes: true)\n", 0);
        return;
    }
    if (admin.cert_swap == NULL) {
        moat_plain_answer_text(c, 503, "not serving yet\n", 0);
        return;
    }
    int rc = admin.cert_swap(admin.cert_swap_arg, "asked on the admin listener", msg,
                             sizeof(msg));
    moat_plain_answer_text(c, rc == 0 ? 200 : 422, msg, 0);
}

static void on_head(void *arg, struct moat_plain_conn *c, const struct moat_http_head *h)
{
    (void)arg;
    size_t len = 0; /* the path, without a query */
    while (len < h->target_len && h->target[len] != '?')
        len++;
    if (h->method == MOAT_HTTP_M_PUT && len == 20 && memcmp(h->target, "/certificates/reload",
                                                            20) == 0)
        serve_cert_swap(c);
    else if (h->method == MOAT_HTTP_M_PUT && len > 10 &&
             memcmp(h->target, "/backends/", 10) == 0)
        serve_put(c, h, len);
    else if (h->method != MOAT_HTTP_M_GET && h->method != MOAT_HTTP_M_HEAD)
        moat_plain_answer_text(c, 405, "method not allowed: use GET or HEAD (PUT on "
                               "/backends/...)\n", 0);
    else
        serve_path(c, h->target, len, h->method == MOAT_HTTP_M_HEAD);
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
    struct sockaddr_storage ss;
    admin.server = moat_plain_listen(admin.loop, hp, "admin", MAX_CONNS, on_head, NULL, &ss, err,
                                     err_len);
    if (admin.server == NULL)
        return -1;
    int is_local = is_loopback((const struct sockaddr *)&ss);
    admin.writes_allowed = admin_writes == -1 ? is_local : admin_writes;
    if (!is_local)
        moat_log(MOAT_LOG_WARN, "main admin listener on %s is not a loopback address: anyone "
                 "who can reach it reads the metrics%s", hp->host, admin.writes_allowed
                 ? " and can drain backends (admin.writes: true)"
                 : " (writes, PUT /backends/..., are refused)");
    char url[96];
    moat_plain_url(&ss, url, sizeof(url));
    moat_log(MOAT_LOG_INFO, "main admin listening on %s", url);
    return 0;
}

int moat_admin_start(uv_loop_t *loop, struct moat_runtime *rt, struct moat_worker *workers,
                     size_t n_workers)
{
    const struct moat_cfg *cfg = rt->cfg;
    if (!cfg->has_admin)
        return 0;
    admin.loop = loop;
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
    moat_plain_close(admin.server);
    admin.server = NULL;
}

void moat_admin_free(void)
{
    moat_runtime_unref(admin.rt);
    admin.rt = NULL;
    moat_metrics_set_free(admin.metrics);
    admin.metrics = NULL;
}
