/* proxy/runtime.c: building, sharing and freeing configuration snapshots. */
#include "proxy/runtime.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "proxy/certfiles.h"
#include "proxy/dns.h"
#include "proxy/log.h"
#include "tls/tls.h"

/* What the configuration does not set: moat's own buffer and pool sizes. */
static const struct moat_runtime runtime_defaults = {
    .linger_ms = 2000,
    .high_water = 256 * 1024,
    .low_water = 64 * 1024,
    .pool_max_idle = 64,
};

void moat_format_addr(const struct sockaddr *sa, char *out, size_t cap)
{
    char ip[64] = "?";
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(a, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%d", ip, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        uv_ip4_name(a, ip, sizeof(ip));
        snprintf(out, cap, "%s:%d", ip, ntohs(a->sin_port));
    }
}

/* getaddrinfo() for a stream socket to hp. */
static int lookup(const struct moat_cfg_hostport *hp, int passive, struct addrinfo **res)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0};
    char port[8];
    snprintf(port, sizeof(port), "%u", hp->port);
    return getaddrinfo(hp->host, port, &hints, res);
}

int moat_resolve(const struct moat_cfg_hostport *hp, int passive, struct sockaddr_storage *out)
{
    struct addrinfo *res;
    int rc = lookup(hp, passive, &res);
    if (rc != 0)
        return rc;
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

int moat_resolve_all(const struct moat_cfg_hostport *hp, struct sockaddr_storage *out,
                     size_t cap, size_t *n)
{
    struct addrinfo *res;
    int rc = lookup(hp, 0, &res);
    *n = 0;
    if (rc != 0)
        return rc;
    for (struct addrinfo *a = res; a != NULL && *n < cap; a = a->ai_next) {
        if (a->ai_addrlen > sizeof(out[0]))
            continue;
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        memcpy(&ss, a->ai_addr, a->ai_addrlen);
        int seen = 0; /* the same address for another protocol or from /etc/hosts twice */
        for (size_t i = 0; i < *n && !seen; i++)
            seen = memcmp(&out[i], &ss, sizeof(ss)) == 0;
        if (!seen)
            out[(*n)++] = ss;
    }
    freeaddrinfo(res);
    return 0;
}

static void copy_limits(const struct moat_cfg *cfg, struct moat_runtime *rt)
{
    rt->handshake_timeout_ms = cfg->handshake_timeout_ms;
    rt->head_timeout_ms = cfg->head_timeout_ms;
    rt->idle_timeout_ms = cfg->idle_timeout_ms;
    rt->body_gap_ms = cfg->body_timeout_ms;
    rt->connect_timeout_ms = cfg->connect_timeout_ms;
    rt->backend_gap_ms = cfg->backend_timeout_ms;
    rt->pool_idle_ms = cfg->pool_idle_timeout_ms;
    rt->tunnel_idle_ms = cfg->tunnel_timeout_ms;
    rt->send_stall_ms = cfg->send_timeout_ms;
    rt->http_limits.max_head_bytes = cfg->max_head_bytes;
    rt->http_limits.max_fields = cfg->max_headers;
    rt->http_limits.max_target_bytes = cfg->max_target_bytes;
    rt->max_body_bytes = cfg->max_body_bytes;
    rt->max_connections = cfg->max_connections;
    rt->max_backend_conns = cfg->max_backend_connections;
}

static int load_tls(struct moat_runtime *rt, char *err, size_t err_len)
{
    rt->tls = calloc(rt->cfg->n_listeners, sizeof(*rt->tls));
    if (rt->tls == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    return moat_certfiles_load_all(rt->cfg, rt->tls, err, err_len);
}

/* Every address of every backend name becomes a backend (a Compose service scaled to three
 * answers with three). A name that does not resolve is a warning, not an error: its pool has
 * fewer members, none at all answers 503 and /readyz says not ready, until DNS answers (a
 * rebuild, which says nothing here: proxy/dns.c logs what changed). */
#define MAX_ADDRS_PER_NAME MOAT_DNS_MAX_ADDRS
static size_t backend_addrs(const struct moat_dns *dns, const struct moat_cfg_hostport *hp,
                            struct sockaddr_storage *out, const char **why)
{
    size_t n = 0;
    if (!moat_cfg_host_is_ip(hp))
        return moat_dns_addresses(dns, hp->host, hp->port, out, MAX_ADDRS_PER_NAME, why);
    int rc = moat_resolve_all(hp, out, 1, &n); /* a numeric host: no lookup */
    *why = rc != 0 ? gai_strerror(rc) : "no address";
    return n;
}

static int resolve_backends(struct moat_runtime *rt, const struct moat_dns *dns, int is_rebuild,
                            char *err, size_t err_len)
{
    const struct moat_cfg *cfg = rt->cfg;
    size_t n_cfg = 0;
    for (size_t p = 0; p < cfg->n_pools; p++)
        n_cfg += cfg->pools[p].n_backends;
    struct sockaddr_storage *addrs = calloc(n_cfg * MAX_ADDRS_PER_NAME + 1, sizeof(*addrs));
    size_t *n_addrs = calloc(n_cfg + 1, sizeof(*n_addrs));
    if (addrs == NULL || n_addrs == NULL) {
        free(addrs);
        free(n_addrs);
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    size_t total = 0, k = 0;
    for (size_t p = 0; p < cfg->n_pools; p++) {
        for (size_t i = 0; i < cfg->pools[p].n_backends; i++, k++) {
            const struct moat_cfg_hostport *hp = &cfg->pools[p].backends[i].addr;
            const char *why = NULL;
            n_addrs[k] = backend_addrs(dns, hp, &addrs[k * MAX_ADDRS_PER_NAME], &why);
            if (n_addrs[k] == 0 && !is_rebuild)
                moat_log(MOAT_LOG_WARN, "main backend %s%s%s:%u (pool %s) does not resolve: %s; "
                         "it gets no requests until it does",
                         hp->is_ipv6 ? "[" : "", hp->host, hp->is_ipv6 ? "]" : "", hp->port,
                         cfg->pools[p].name, why);
            total += n_addrs[k];
        }
    }
    rt->backends = calloc(total + 1, sizeof(*rt->backends));
    rt->targets = calloc(total + 1, sizeof(*rt->targets));
    rt->weights = calloc(total + 1, sizeof(*rt->weights));
    rt->pools = calloc(cfg->n_pools + 1, sizeof(*rt->pools));
    int rc = 0;
    if (rt->backends == NULL || rt->targets == NULL || rt->weights == NULL || rt->pools == NULL) {
        snprintf(err, err_len, "out of memory");
        rc = -1;
    }
    rt->n_pools = rc == 0 ? cfg->n_pools : 0;
    k = 0;
    for (size_t p = 0; rc == 0 && p < cfg->n_pools; p++) {
        const struct moat_cfg_pool *cp = &cfg->pools[p];
        size_t first = rt->n_backends;
        for (size_t i = 0; rc == 0 && i < cp->n_backends; i++, k++) {
            const struct moat_cfg_hostport *hp = &cp->backends[i].addr;
            for (size_t a = 0; a < n_addrs[k]; a++) {
                const struct sockaddr_storage *addr = &addrs[k * MAX_ADDRS_PER_NAME + a];
                struct moat_backend *b = &rt->backends[rt->n_backends];
                snprintf(b->name, sizeof(b->name), hp->is_ipv6 ? "[%s]:%u" : "%s:%u", hp->host,
                         hp->port);
                b->pool = p;
                char text[64];
                moat_format_addr((const struct sockaddr *)addr, text, sizeof(text));
                /* The same pool and address as in the snapshot before: the same target. */
                b->target = moat_target_get(cp->name, addr, text);
                if (b->target == NULL) {
                    snprintf(err, err_len, "backend %s (pool %s): more than %d backends",
                             b->name, cp->name, MOAT_MAX_TARGETS);
                    rc = -1;
                    break;
                }
                /* A new address of a running name ramps up like a recovered backend (never
                 * at start or on a reload). */
                if (is_rebuild && cp->slow_start_ms != 0)
                    moat_target_joined(b->target, uv_now(uv_default_loop()));
                b->weight = cp->backends[i].weight;
                rt->weights[rt->n_backends] = b->weight;
                rt->targets[rt->n_backends++] = b->target;
            }
        }
        size_t n = rt->n_backends - first;
        rt->pools[p] = (struct moat_rt_pool){
            .name = cp->name, .first = first, .n = n,
            .members = {.targets = &rt->targets[first], .weights = &rt->weights[first],
                        .first = first, .n = n, .alg = cp->balance, .hash_by = cp->hash_by,
                        .hash_name = cp->hash_name, .sticky_cookie = cp->sticky_cookie,
                        .slow_start_ms = cp->slow_start_ms},
            .passive = {.consecutive_errors = cp->passive_errors,
                        .ejection_ms = cp->passive_ejection_ms,
                        .max_ejection_ms = 300000},
            .retry_attempts = cp->retry_attempts, .retry_budget_pct = cp->retry_budget_pct,
            .sticky_same_site = cp->sticky_same_site,
            .metrics_slot = SIZE_MAX};
    }
    free(addrs);
    free(n_addrs);
    return rc;
}

static void free_tls(struct moat_tls_ctx **tls, size_t n)
{
    for (size_t l = 0; tls != NULL && l < n; l++)
        moat_tls_ctx_unref(tls[l]);
    free(tls);
}

struct moat_runtime *moat_runtime_rebuild(struct moat_runtime *cur, const struct moat_dns *dns,
                                          struct moat_tls_ctx **tls, char *err, size_t err_len)
{
    struct moat_runtime *root = cur->root != NULL ? cur->root : cur;
    struct moat_runtime *rt = malloc(sizeof(*rt));
    if (rt == NULL) {
        free_tls(tls, cur->cfg->n_listeners);
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    *rt = *root; /* configuration and limits */
    atomic_init(&rt->refs, 1);
    atomic_init(&rt->n_installed, 0);
    moat_runtime_ref(root);
    rt->root = root;
    if (tls != NULL) {
        rt->tls = tls;
        rt->tls_owner = NULL;
    } else { /* cur's certificates, kept alive by their owner */
        rt->tls = cur->tls;
        rt->tls_owner = cur->tls_owner != NULL ? cur->tls_owner : cur;
        moat_runtime_ref(rt->tls_owner);
    }
    rt->backends = NULL;
    rt->targets = NULL;
    rt->weights = NULL;
    rt->pools = NULL;
    rt->n_backends = rt->n_pools = 0;
    rt->generation = cur->generation;
    rt->view = cur->view + 1;
    if (resolve_backends(rt, dns, 1, err, err_len) != 0) {
        moat_runtime_unref(rt);
        return NULL;
    }
    return rt;
}

struct moat_runtime *moat_runtime_build(struct moat_cfg *cfg, const struct moat_dns *dns,
                                        char *err, size_t err_len)
{
    struct moat_runtime *rt = malloc(sizeof(*rt));
    if (rt == NULL) {
        snprintf(err, err_len, "out of memory");
        moat_cfg_free(cfg);
        return NULL;
    }
    *rt = runtime_defaults;
    atomic_init(&rt->refs, 1);
    rt->cfg = cfg;
    copy_limits(cfg, rt);
    if (load_tls(rt, err, err_len) != 0 || resolve_backends(rt, dns, 0, err, err_len) != 0) {
        moat_runtime_unref(rt);
        return NULL;
    }
    return rt;
}

void moat_runtime_ref(struct moat_runtime *rt)
{
    atomic_fetch_add_explicit(&rt->refs, 1, memory_order_relaxed);
}

void moat_runtime_unref(struct moat_runtime *rt)
{
    if (rt == NULL || atomic_fetch_sub_explicit(&rt->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (rt->tls_owner == NULL)
        free_tls(rt->tls, rt->cfg->n_listeners);
    moat_runtime_unref(rt->tls_owner);
    for (size_t i = 0; i < rt->n_backends; i++)
        moat_target_unref(rt->targets[i]);
    free(rt->targets);
    free(rt->weights);
    free(rt->backends);
    free(rt->pools);
    if (rt->root == NULL)
        moat_cfg_free(rt->cfg);
    moat_runtime_unref(rt->root);
    free(rt);
}
