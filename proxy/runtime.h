/* proxy/runtime.h: a configuration snapshot made ready to run: certificates loaded per listener,
 * backends resolved and grouped in pools, timeouts and limits in the form workers read them.
 * Immutable once published to the workers (the admin sets the metrics slots just before) and
 * reference-counted: a reload builds a new one while connections
 * started under the old one finish on it; the old one is freed with its last reference. */
#ifndef MOAT_RUNTIME_H
#define MOAT_RUNTIME_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"
#include "http/http.h"
#include "proxy/balance.h"

struct moat_tls_ctx;

/* One backend, resolved once when the snapshot is built. */
struct moat_backend {
    char name[300];               /* "host:port" as configured, for logs */
    struct moat_target *target;   /* = targets[i]: its address and shared state */
    unsigned weight;              /* = weights[i]: its share of new requests (0: none) */
    size_t pool;                  /* index into moat_runtime.pools */
};

/* A pool's backends are backends[first .. first + n); members points into targets and
 * weights. */
struct moat_rt_pool {
    const char *name; /* borrowed from cfg */
    size_t first;
    size_t n;
    struct moat_balance_pool members;
    struct moat_passive passive;
    unsigned retry_attempts;   /* tries on other backends after the first */
    unsigned retry_budget_pct; /* retries at once, as a share of requests in flight */
    enum moat_cfg_same_site sticky_same_site;
    size_t metrics_slot; /* where its admin metrics go (SIZE_MAX: none) */
};

struct moat_runtime {
    atomic_int refs;
    /* NULL, or (a snapshot rebuilt for new DNS answers or new certificates) one reference on
     * the snapshot that was built from the configuration: cfg is its. */
    struct moat_runtime *root;
    /* NULL: tls is this snapshot's own; else one reference on the snapshot that owns it (a
     * DNS rebuild keeps its predecessor's certificates). */
    struct moat_runtime *tls_owner;
    struct moat_cfg *cfg;          /* owned (borrowed from root when there is one) */
    struct moat_backend *backends; /* owned: every pool's backends, pool after pool */
    struct moat_target **targets;  /* owned array, a reference on each: backends[i].target */
    unsigned *weights;             /* owned array: backends[i].weight */
    size_t n_backends;
    struct moat_rt_pool *pools;    /* owned: one per cfg->pools entry */
    size_t n_pools;
    struct moat_tls_ctx **tls;     /* one reference each, one per cfg->listeners entry (owned,
                                    * or tls_owner's) */
    struct moat_http_limits http_limits;
    uint64_t handshake_timeout_ms; /* TLS handshake must finish within */
    uint64_t head_timeout_ms;      /* a request head must arrive within, from its first byte */
    uint64_t idle_timeout_ms;      /* keep-alive wait for the next request's first byte */
    uint64_t body_gap_ms;          /* longest silence inside a request body */
    uint64_t connect_timeout_ms;   /* backend TCP connect */
    uint64_t backend_gap_ms;       /* longest silence from a backend while a response is due */
    uint64_t pool_idle_ms;         /* longest life of an idle pooled backend connection */
    uint64_t tunnel_idle_ms;       /* a tunnel silent both ways this long is closed */
    uint64_t send_stall_ms;        /* a client taking none of our bytes this long is cut off */
    uint64_t linger_ms;            /* after our last byte: drain the client this long */
    size_t high_water;             /* stop reading the other side above this many queued bytes */
    size_t low_water;              /* resume at or below */
    size_t pool_max_idle;          /* idle connections kept per backend per worker */
    uint64_t max_body_bytes;       /* request body limit (413); 0: none */
    size_t max_connections;        /* client connections per worker; then accepting pauses */
    size_t max_backend_conns;      /* per backend per worker; then requests wait; 0: none */
    /* Set by main() before publishing; only the counter changes afterwards. */
    uint64_t generation;           /* 1 for the start's configuration, then +1 per reload */
    uint64_t view;                 /* 0 as built, then +1 per rebuild for DNS answers */
    unsigned n_workers;            /* the workers it is published to */
    atomic_uint n_installed;       /* workers whose new connections take it */
};

struct moat_dns;

/* Builds a snapshot from cfg (taken over, freed on failure too): loads every listener's
 * certificates (or the development certificate), warns about private keys other users can
 * read, makes every address dns has for a backend name (moat_dns_track() has seen cfg) a
 * backend. NULL with err naming the file that failed. The result holds one reference. */
struct moat_runtime *moat_runtime_build(struct moat_cfg *cfg, const struct moat_dns *dns,
                                        char *err, size_t err_len);

/* A snapshot of cur's configuration with the backends' addresses dns has now: what moat keeps
 * of a backend (its state, pooled connections) follows its address. With tls (an array of
 * cur's listeners' contexts, references taken over, freed on failure too), those are its
 * certificates; else cur's. NULL with err set. */
struct moat_runtime *moat_runtime_rebuild(struct moat_runtime *cur, const struct moat_dns *dns,
                                          struct moat_tls_ctx **tls, char *err, size_t err_len);

/* The snapshot built from rt's configuration: rt itself, or the one rt was rebuilt from. Two
 * snapshots with the same root differ only by their backends' addresses and certificates. */
static inline const struct moat_runtime *moat_runtime_root(const struct moat_runtime *rt)
{
    return rt->root != NULL ? rt->root : rt;
}

void moat_runtime_ref(struct moat_runtime *rt);   /* atomic */
void moat_runtime_unref(struct moat_runtime *rt); /* atomic; frees at 0; NULL: nothing */

/* "127.0.0.1:8443" or "[::1]:8443". */
void moat_format_addr(const struct sockaddr *sa, char *out, size_t cap);

/* Every address of host:port, up to cap, without repeats (blocking; at start and on reload
 * only). 0 or a getaddrinfo() error. */
int moat_resolve_all(const struct moat_cfg_hostport *hp, struct sockaddr_storage *out,
                     size_t cap, size_t *n);

/* Resolves host:port (blocking; at start and on reload only). 0 or a getaddrinfo() error. */
int moat_resolve(const struct moat_cfg_hostport *hp, int passive, struct sockaddr_storage *out);

#endif
