/* proxy/metrics.c: per-worker counters and their Prometheus rendering. A worker's struct is
 * written by its thread alone (relaxed load + relaxed store: exact with one writer, plain moves
 * on x86, no lock prefix) and read by the control thread with relaxed loads, one counter at a
 * time: a scrape sees each counter exact as of some instant, not all of them at one instant. */
#include "proxy/metrics.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <uv.h>

#include "config/config.h"
#include "proxy/balance.h"
#include "proxy/base/text.h"

#define MAX_BACKENDS MOAT_MAX_TARGETS /* backend counters are by target slot */

/* Upper bounds of the request duration buckets, in milliseconds (loop time has no finer
 * resolution), and as Prometheus writes them, in seconds. */
static const uint64_t bucket_ms[] = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000};
static const char *const bucket_le[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                                        "0.5",   "1",    "2.5",   "5",    "10"};
#define N_BUCKETS (sizeof(bucket_ms) / sizeof(bucket_ms[0]))

#define N_CLASSES 5 /* 1xx .. 5xx */

struct pool_counters {
    _Atomic uint64_t requests[N_CLASSES];
    _Atomic uint64_t buckets[N_BUCKETS + 1]; /* per bucket, not cumulative; last: above 10 s */
    _Atomic uint64_t duration_ms_sum;
    _Atomic uint64_t up_errors[MOAT_METRICS_UP_KINDS];
    _Atomic uint64_t retries[MOAT_METRICS_RETRY_KINDS];
};

/* Aligned to a cache line so two workers never write the same line. */
struct moat_metrics {
    _Alignas(64) _Atomic uint64_t bytes_in;
    _Atomic uint64_t bytes_out;
    _Atomic uint64_t conns_accepted;
    _Atomic uint64_t conns_closed; /* open = accepted - closed */
    _Atomic uint64_t handshakes[MOAT_METRICS_HS_KINDS];
    _Atomic uint64_t client_timeouts[MOAT_METRICS_CT_KINDS];
    _Atomic int is_listening;
    /* Per target slot: the backend's own responses by class, and the time to their heads
     * (a histogram: per bucket, not cumulative; last: above 10 s). */
    _Atomic uint64_t backend_responses[MAX_BACKENDS][N_CLASSES];
    _Atomic uint64_t backend_first_byte[MAX_BACKENDS][N_BUCKETS + 1];
    _Atomic uint64_t backend_first_byte_ms[MAX_BACKENDS];
    struct pool_counters pools[MOAT_METRICS_MAX_POOLS];
};

/* A backend of the current layout. */
struct cur_backend {
    struct moat_target *target; /* held: its slot, address and shared state */
    size_t pool;                /* its pool's slot */
    char *name;                 /* owned: as configured ("app:8080") */
};

/* What a target slot's counters held when its current target took it: subtracted, so that
 * target's series start from zero. */
struct slot_base {
    uint64_t owner_id; /* the target the slot counts for (0: none yet) */
    uint64_t responses[N_CLASSES];
    uint64_t first_byte[N_BUCKETS + 1];
    uint64_t first_byte_ms;
};

/* Slots are written by the control thread alone (layout) and read by it alone (render). */
struct moat_metrics_set {
    struct moat_metrics **workers; /* owned array of owned structs */
    size_t n_workers;
    char *pool_names[MOAT_METRICS_MAX_POOLS];       /* owned: slot names */
    size_t n_pool_slots;
    size_t cur_pools[MOAT_METRICS_MAX_POOLS];       /* the current layout's pool slots */
    size_t n_cur_pools;
    struct cur_backend cur_backends[MAX_BACKENDS];  /* and its backends, each target once */
    size_t n_cur_backends;
    struct slot_base base[MAX_BACKENDS];            /* by target slot */
    double start_time_s;                            /* wall clock at creation */
};

/* ---- writers ------------------------------------------------------------------------------ */

static inline void add(_Atomic uint64_t *c, uint64_t n)
{
    /* One writer: nobody can slip an increment in between, so no atomic RMW is needed. */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static size_t bucket_of(uint64_t ms)
{
    size_t b = 0;
    while (b < N_BUCKETS && ms > bucket_ms[b])
        b++;
    return b;
}

void moat_metrics_request(struct moat_metrics *m, size_t pool, int status, uint64_t duration_ms)
{
    if (m == NULL || pool >= MOAT_METRICS_MAX_POOLS || status < 100 || status > 599)
        return;
    struct pool_counters *p = &m->pools[pool];
    add(&p->requests[status / 100 - 1], 1);
    add(&p->buckets[bucket_of(duration_ms)], 1);
    add(&p->duration_ms_sum, duration_ms);
}

void moat_metrics_backend_response(struct moat_metrics *m, size_t target_slot, int status,
                                   uint64_t first_byte_ms)
{
    if (m == NULL || target_slot >= MAX_BACKENDS || status < 100 || status > 599)
        return;
    add(&m->backend_responses[target_slot][status / 100 - 1], 1);
    add(&m->backend_first_byte[target_slot][bucket_of(first_byte_ms)], 1);
    add(&m->backend_first_byte_ms[target_slot], first_byte_ms);
}

void moat_metrics_bytes_in(struct moat_metrics *m, uint64_t n)
{
    if (m != NULL)
        add(&m->bytes_in, n);
}

void moat_metrics_bytes_out(struct moat_metrics *m, uint64_t n)
{
    if (m != NULL)
        add(&m->bytes_out, n);
}

void moat_metrics_conn_opened(struct moat_metrics *m)
{
    if (m != NULL)
        add(&m->conns_accepted, 1);
}

void moat_metrics_conn_closed(struct moat_metrics *m)
{
    if (m != NULL)
        add(&m->conns_closed, 1);
}

void moat_metrics_handshake(struct moat_metrics *m, enum moat_metrics_handshake kind)
{
    if (m != NULL && kind < MOAT_METRICS_HS_KINDS)
        add(&m->handshakes[kind], 1);
}

void moat_metrics_client_timeout(struct moat_metrics *m, enum moat_metrics_client_timeout kind)
{
    if (m != NULL && kind < MOAT_METRICS_CT_KINDS)
        add(&m->client_timeouts[kind], 1);
}

void moat_metrics_upstream_error(struct moat_metrics *m, size_t pool,
                                 enum moat_metrics_upstream_error kind)
{
    if (m != NULL && pool < MOAT_METRICS_MAX_POOLS && kind < MOAT_METRICS_UP_KINDS)
        add(&m->pools[pool].up_errors[kind], 1);
}

void moat_metrics_error_response(struct moat_metrics *m, size_t pool, int status)
{
    if (status == 502)
        moat_metrics_upstream_error(m, pool, MOAT_METRICS_UP_502);
    else if (status == 504)
        moat_metrics_upstream_error(m, pool, MOAT_METRICS_UP_504);
}

void moat_metrics_retry(struct moat_metrics *m, size_t pool, enum moat_metrics_retry reason)
{
    if (m != NULL && pool < MOAT_METRICS_MAX_POOLS && reason < MOAT_METRICS_RETRY_KINDS)
        add(&m->pools[pool].retries[reason], 1);
}

void moat_metrics_listening(struct moat_metrics *m, int is_listening)
{
    if (m != NULL)
        atomic_store_explicit(&m->is_listening, is_listening, memory_order_relaxed);
}

/* ---- the set ------------------------------------------------------------------------------ */

static uint64_t get(const _Atomic uint64_t *c)
{
    return atomic_load_explicit((_Atomic uint64_t *)c, memory_order_relaxed);
}

static void worker_free(struct moat_metrics *m)
{
    free(m);
}

static struct moat_metrics *worker_new(void)
{
    size_t size = (sizeof(struct moat_metrics) + 63) / 64 * 64; /* aligned_alloc wants this */
    struct moat_metrics *m = aligned_alloc(64, size);
    if (m == NULL)
        return NULL;
    memset(m, 0, size);
    /* main() binds and listens on every socket before the metrics exist; until a worker's
     * thread runs, the kernel queues its clients in the backlog. */
    atomic_init(&m->is_listening, 1);
    return m;
}

struct moat_metrics_set *moat_metrics_set_new(size_t n_workers)
{
    struct moat_metrics_set *set = calloc(1, sizeof(*set));
    if (set == NULL)
        return NULL;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    set->start_time_s = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
    set->workers = calloc(n_workers, sizeof(*set->workers));
    if (set->workers == NULL) {
        moat_metrics_set_free(set);
        return NULL;
    }
    for (size_t i = 0; i < n_workers; i++) {
        set->workers[i] = worker_new();
        set->n_workers = i + 1; /* so _free() frees what was made */
        if (set->workers[i] == NULL) {
            moat_metrics_set_free(set);
            return NULL;
        }
    }
    return set;
}

void moat_metrics_set_free(struct moat_metrics_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; set->workers != NULL && i < set->n_workers; i++)
        worker_free(set->workers[i]);
    free(set->workers);
    for (size_t i = 0; i < set->n_pool_slots; i++)
        free(set->pool_names[i]);
    for (size_t i = 0; i < set->n_cur_backends; i++) {
        free(set->cur_backends[i].name);
        moat_target_unref(set->cur_backends[i].target);
    }
    free(set);
}

/* A counter summed over the workers: offset is where it sits inside struct moat_metrics. */
static uint64_t sum(const struct moat_metrics_set *set, size_t offset)
{
    uint64_t total = 0;
    for (size_t w = 0; w < set->n_workers; w++)
        total += get((const _Atomic uint64_t *)((const char *)set->workers[w] + offset));
    return total;
}

#define SUM(set, field) sum((set), offsetof(struct moat_metrics, field))

/* The pool slot named name, taken now if new. NO_SLOT when every slot is taken; -ENOMEM as a
 * slot when the name cannot be copied. */
static size_t pool_slot_for(struct moat_metrics_set *set, const char *name)
{
    for (size_t i = 0; i < set->n_pool_slots; i++)
        if (strcmp(set->pool_names[i], name) == 0)
            return i;
    if (set->n_pool_slots == MOAT_METRICS_MAX_POOLS)
        return MOAT_METRICS_NO_SLOT;
    set->pool_names[set->n_pool_slots] = strdup(name);
    if (set->pool_names[set->n_pool_slots] == NULL)
        return (size_t)-ENOMEM;
    return set->n_pool_slots++;
}

/* Target t counts in its slot from now on: what the slot holds (a freed target's counts) is
 * its base. */
static void claim_slot(struct moat_metrics_set *set, const struct moat_target *t)
{
    struct slot_base *b = &set->base[t->slot];
    if (b->owner_id == t->id)
        return;
    b->owner_id = t->id;
    for (size_t k = 0; k < N_CLASSES; k++)
        b->responses[k] = SUM(set, backend_responses[t->slot][k]);
    for (size_t k = 0; k <= N_BUCKETS; k++)
        b->first_byte[k] = SUM(set, backend_first_byte[t->slot][k]);
    b->first_byte_ms = SUM(set, backend_first_byte_ms[t->slot]);
}

int moat_metrics_set_layout(struct moat_metrics_set *set, const struct moat_metrics_layout *layout,
                            size_t *pool_slot)
{
    int missed = 0;
    set->n_cur_pools = 0;
    for (size_t p = 0; p < layout->n_pools; p++) {
        size_t slot = pool_slot_for(set, layout->pool_names[p]);
        if (slot == (size_t)-ENOMEM)
            return -ENOMEM;
        pool_slot[p] = slot;
        if (slot == MOAT_METRICS_NO_SLOT)
            missed++;
        else
            set->cur_pools[set->n_cur_pools++] = slot;
    }
    for (size_t i = 0; i < set->n_cur_backends; i++) {
        free(set->cur_backends[i].name);
        moat_target_unref(set->cur_backends[i].target);
    }
    set->n_cur_backends = 0;
    for (size_t b = 0; b < layout->n_backends; b++) {
        struct moat_target *t = layout->backend_targets[b];
        size_t pool = pool_slot[layout->backend_pool[b]];
        int seen = pool == MOAT_METRICS_NO_SLOT; /* its pool is not counted */
        for (size_t i = 0; i < set->n_cur_backends && !seen; i++)
            seen = set->cur_backends[i].target == t; /* two names for one address */
        char *name = seen ? NULL : strdup(layout->backend_names[b]);
        if (seen || name == NULL) {
            if (!seen)
                missed++;
            continue;
        }
        claim_slot(set, t);
        moat_target_ref(t);
        set->cur_backends[set->n_cur_backends++] = (struct cur_backend){t, pool, name};
    }
    return missed;
}

struct moat_metrics *moat_metrics_set_worker(struct moat_metrics_set *set, size_t i)
{
    return i < set->n_workers ? set->workers[i] : NULL;
}

/* 1 if the workers do not pass current backend i by at now_ms (its state is shared by all). */
static int backend_is_up(const struct moat_metrics_set *set, size_t i, uint64_t now_ms)
{
    return moat_target_is_up(set->cur_backends[i].target, now_ms);
}

int moat_metrics_set_is_ready(const struct moat_metrics_set *set, uint64_t now_ms, char *why,
                              size_t why_cap)
{
    for (size_t w = 0; w < set->n_workers; w++) {
        if (!atomic_load_explicit(&set->workers[w]->is_listening, memory_order_relaxed)) {
            snprintf(why, why_cap, "worker %zu stopped accepting connections (draining)", w + 1);
            return 0;
        }
    }
    for (size_t i = 0; i < set->n_cur_pools; i++) {
        size_t p = set->cur_pools[i];
        int usable = 0;
        for (size_t j = 0; !usable && j < set->n_cur_backends; j++)
            usable = set->cur_backends[j].pool == p && backend_is_up(set, j, now_ms);
        if (!usable) {
            snprintf(why, why_cap, "pool %s has no usable backend (all marked down)",
                     set->pool_names[p]);
            return 0;
        }
    }
    snprintf(why, why_cap, "ready");
    return 1;
}

/* ---- rendering ---------------------------------------------------------------------------- */

#define put moat_text_put /* the renderers print into a struct moat_text */

/* A label value with the text format's escapes: backslash, double quote and line feed. */
static void put_label(struct moat_text *t, const char *s)
{
    for (; *s != '\0' && !t->failed; s++) {
        if (*s == '\\')
            put(t, "\\\\");
        else if (*s == '"')
            put(t, "\\\"");
        else if (*s == '\n')
            put(t, "\\n");
        else
            put(t, "%c", *s);
    }
}

static void put_family(struct moat_text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}


static const char *const hs_names[MOAT_METRICS_HS_KINDS] = {"full", "resumed", "failed"};
static const char *const ct_names[MOAT_METRICS_CT_KINDS] = {"handshake", "head", "body", "send"};
static const char *const up_names[MOAT_METRICS_UP_KINDS] = {"connect_failed", "connect_timeout",
                                                            "bad_gateway", "gateway_timeout"};
static const char *const retry_names[MOAT_METRICS_RETRY_KINDS] = {"connect", "stale", "empty",
                                                                   "status_503",
                                                                   "refused_by_budget"};

static void put_pool_label(struct moat_text *t, const struct moat_metrics_set *set, size_t p)
{
    put(t, "pool=\"");
    put_label(t, set->pool_names[p]);
    put(t, "\"");
}

static const char *const class_names[N_CLASSES] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

/* One sample per current pool and kind: counters[kind] sits at offset in struct pool_counters. */
static void put_pool_kinds(struct moat_text *t, const struct moat_metrics_set *set, const char *metric,
                           const char *label, const char *const *kinds, size_t n_kinds,
                           size_t offset)
{
    for (size_t i = 0; i < set->n_cur_pools; i++) {
        size_t pool = offsetof(struct moat_metrics, pools) +
                      set->cur_pools[i] * sizeof(struct pool_counters) + offset;
        for (size_t k = 0; k < n_kinds; k++) {
            put(t, "%s{", metric);
            put_pool_label(t, set, set->cur_pools[i]);
            put(t, ",%s=\"%s\"} %llu\n", label, kinds[k],
                (unsigned long long)sum(set, pool + k * sizeof(_Atomic uint64_t)));
        }
    }
}

/* pool="...",backend="app:8080",address="172.18.0.5:8080" of current backend i. */
static void put_backend_labels(struct moat_text *t, const struct moat_metrics_set *set, size_t i)
{
    const struct cur_backend *cb = &set->cur_backends[i];
    put_pool_label(t, set, cb->pool);
    put(t, ",backend=\"");
    put_label(t, cb->name);
    put(t, "\",address=\"");
    put_label(t, cb->target->addr_text);
    put(t, "\"");
}

/* Per backend: its responses and their time to first byte. */
static void render_backend_responses(struct moat_text *t, const struct moat_metrics_set *set)
{
    put_family(t, "moat_backend_responses_total", "counter",
               "Responses from the backend itself, by status class (moat's own errors not "
               "included).");
    for (size_t i = 0; i < set->n_cur_backends; i++) {
        unsigned slot = set->cur_backends[i].target->slot;
        for (size_t k = 0; k < N_CLASSES; k++) {
            put(t, "moat_backend_responses_total{");
            put_backend_labels(t, set, i);
            put(t, ",code=\"%zuxx\"} %llu\n", k + 1,
                (unsigned long long)(SUM(set, backend_responses[slot][k]) -
                                     set->base[slot].responses[k]));
        }
    }
    put_family(t, "moat_backend_first_byte_seconds", "histogram",
               "Time from choosing the backend to its response head (connect and upload "
               "included), per response.");
    for (size_t i = 0; i < set->n_cur_backends; i++) {
        unsigned slot = set->cur_backends[i].target->slot;
        uint64_t cumulative = 0;
        for (size_t k = 0; k <= N_BUCKETS; k++) {
            cumulative += SUM(set, backend_first_byte[slot][k]) - set->base[slot].first_byte[k];
            put(t, "moat_backend_first_byte_seconds_bucket{");
            put_backend_labels(t, set, i);
            put(t, ",le=\"%s\"} %llu\n", k < N_BUCKETS ? bucket_le[k] : "+Inf",
                (unsigned long long)cumulative);
        }
        uint64_t ms = SUM(set, backend_first_byte_ms[slot]) - set->base[slot].first_byte_ms;
        put(t, "moat_backend_first_byte_seconds_sum{");
        put_backend_labels(t, set, i);
        put(t, "} %llu.%03u\n", (unsigned long long)(ms / 1000), (unsigned)(ms % 1000));
        put(t, "moat_backend_first_byte_seconds_count{");
        put_backend_labels(t, set, i);
        put(t, "} %llu\n", (unsigned long long)cumulative);
    }
}

/* Per backend: its state, connections and ejections, from its shared state. */
static void render_backends(struct moat_text *t, const struct moat_metrics_set *set, uint64_t now_ms)
{
    render_backend_responses(t, set);
    static const char *const states[] = {"up", "down", "ejected", "paused", "draining",
                                         "maint"};
    put_family(t, "moat_backend_state", "gauge",
               "1 for the backend's state now (up, down: a failed connect or health check, "
               "ejected: passive health, paused: Retry-After, draining, maint: the admin API).");
    for (size_t i = 0; i < set->n_cur_backends; i++) {
        const char *now = moat_target_state(set->cur_backends[i].target, now_ms, NULL);
        for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++) {
            put(t, "moat_backend_state{");
            put_backend_labels(t, set, i);
            put(t, ",state=\"%s\"} %d\n", states[k], strcmp(states[k], now) == 0);
        }
    }
    put_family(t, "moat_backend_connections", "gauge",
               "Connections open to the backend, every worker's and the health checks'.");
    put_family(t, "moat_backend_ejections_total", "counter",
               "Times passive health ejected the backend.");
    for (size_t i = 0; i < set->n_cur_backends; i++) {
        const struct moat_target *tg = set->cur_backends[i].target;
        put(t, "moat_backend_connections{");
        put_backend_labels(t, set, i);
        put(t, "} %d\n", atomic_load(&tg->connections));
        put(t, "moat_backend_ejections_total{");
        put_backend_labels(t, set, i);
        put(t, "} %llu\n", (unsigned long long)atomic_load(&tg->ejections_total));
    }
    put_family(t, "moat_backend_up", "gauge",
               "1 if the workers send requests to the backend, 0 while they pass it by (a "
               "failed connect or health check, an ejection, a pause).");
    for (size_t i = 0; i < set->n_cur_backends; i++) {
        put(t, "moat_backend_up{");
        put_backend_labels(t, set, i);
        put(t, "} %d\n", backend_is_up(set, i, now_ms));
    }
}

static void render_pools(struct moat_text *t, const struct moat_metrics_set *set)
{
    put_family(t, "moat_requests_total", "counter",
               "Requests answered, by pool and status class (moat's own error responses "
               "included).");
    put_pool_kinds(t, set, "moat_requests_total", "code", class_names, N_CLASSES,
                   offsetof(struct pool_counters, requests));

    put_family(t, "moat_request_duration_seconds", "histogram",
               "Time from a request's first byte to its response's end (or its switch to a "
               "tunnel), by pool.");
    for (size_t i = 0; i < set->n_cur_pools; i++) {
        size_t p = set->cur_pools[i];
        uint64_t cumulative = 0;
        for (size_t b = 0; b <= N_BUCKETS; b++) {
            cumulative += SUM(set, pools[p].buckets[b]);
            put(t, "moat_request_duration_seconds_bucket{");
            put_pool_label(t, set, p);
            put(t, ",le=\"%s\"} %llu\n", b < N_BUCKETS ? bucket_le[b] : "+Inf",
                (unsigned long long)cumulative);
        }
        uint64_t ms = SUM(set, pools[p].duration_ms_sum);
        put(t, "moat_request_duration_seconds_sum{");
        put_pool_label(t, set, p);
        put(t, "} %llu.%03u\n", (unsigned long long)(ms / 1000), (unsigned)(ms % 1000));
        put(t, "moat_request_duration_seconds_count{");
        put_pool_label(t, set, p);
        put(t, "} %llu\n", (unsigned long long)cumulative); /* equals the +Inf bucket */
    }

    put_family(t, "moat_upstream_errors_total", "counter",
               "Backend failures by pool and kind: connect_failed, connect_timeout, "
               "bad_gateway (moat answered 502), gateway_timeout (moat answered 504).");
    put_pool_kinds(t, set, "moat_upstream_errors_total", "kind", up_names, MOAT_METRICS_UP_KINDS,
                   offsetof(struct pool_counters, up_errors));

    put_family(t, "moat_upstream_retries_total", "counter",
               "Requests sent again, by pool and reason: connect (to another backend after a "
               "failed connect), stale (on a fresh connection after a pooled one proved dead).");
    put_pool_kinds(t, set, "moat_upstream_retries_total", "reason", retry_names,
                   MOAT_METRICS_RETRY_KINDS, offsetof(struct pool_counters, retries));
}

int moat_metrics_set_render(const struct moat_metrics_set *set, uint64_t now_ms, char **out,
                            size_t *len)
{
    struct moat_text t = {.cap = 8192};
    t.buf = malloc(t.cap);
    if (t.buf == NULL)
        return -ENOMEM;
    t.buf[0] = '\0';

    const char *version = moat_cfg_version();
    if (strncmp(version, "moat ", 5) == 0)
        version += 5;
    put_family(&t, "moat_build_info", "gauge", "Always 1; labels: moat's and libuv's versions.");
    put(&t, "moat_build_info{version=\"");
    put_label(&t, version);
    put(&t, "\",libuv=\"");
    put_label(&t, uv_version_string());
    put(&t, "\"} 1\n");
    put_family(&t, "moat_start_time_seconds", "gauge",
               "When the process started, in seconds since the Unix epoch.");
    put(&t, "moat_start_time_seconds %.3f\n", set->start_time_s);
    put_family(&t, "moat_workers", "gauge", "Worker threads.");
    put(&t, "moat_workers %zu\n", set->n_workers);

    uint64_t closed = SUM(set, conns_closed); /* first: open never reads below zero */
    uint64_t accepted = SUM(set, conns_accepted);
    put_family(&t, "moat_connections_accepted_total", "counter", "Client connections accepted.");
    put(&t, "moat_connections_accepted_total %llu\n", (unsigned long long)accepted);
    put_family(&t, "moat_connections_open", "gauge", "Client connections open now.");
    put(&t, "moat_connections_open %llu\n",
        (unsigned long long)(accepted >= closed ? accepted - closed : 0));
    put_family(&t, "moat_client_received_bytes_total", "counter",
               "Bytes received from clients, as on the wire (TLS records).");
    put(&t, "moat_client_received_bytes_total %llu\n", (unsigned long long)SUM(set, bytes_in));
    put_family(&t, "moat_client_sent_bytes_total", "counter",
               "Bytes sent to clients, as on the wire (TLS records).");
    put(&t, "moat_client_sent_bytes_total %llu\n", (unsigned long long)SUM(set, bytes_out));
    put_family(&t, "moat_tls_handshakes_total", "counter",
               "TLS handshakes by result: full, resumed (a session ticket was accepted), failed "
               "(an error, a timeout, or the client gave up after sending a byte).");
    for (size_t k = 0; k < MOAT_METRICS_HS_KINDS; k++)
        put(&t, "moat_tls_handshakes_total{result=\"%s\"} %llu\n", hs_names[k],
            (unsigned long long)SUM(set, handshakes[k]));
    put_family(&t, "moat_client_timeouts_total", "counter",
               "Client connections out of time, by deadline: handshake, head and body (--*-timeout; "
               "408 where a response can be sent), send (the client took none of moat's bytes "
               "for --send-timeout and was cut off, with its backend connection).");
    for (size_t k = 0; k < MOAT_METRICS_CT_KINDS; k++)
        put(&t, "moat_client_timeouts_total{kind=\"%s\"} %llu\n", ct_names[k],
            (unsigned long long)SUM(set, client_timeouts[k]));

    render_pools(&t, set);

    render_backends(&t, set, now_ms);

    if (t.failed) {
        free(t.buf);
        return -ENOMEM;
    }
    *out = t.buf;
    *len = t.len;
    return 0;
}
