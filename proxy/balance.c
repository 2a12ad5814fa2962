/* proxy/balance.c: see balance.h. */
#include "proxy/balance.h"

#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The live targets, by slot. The mutex guards the table and the slots, never a target's state. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct moat_target *registry[MOAT_MAX_TARGETS];
static uint64_t last_id; /* under the mutex */

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    size_t len = a->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in);
    return memcmp(a, b, len) == 0;
}

/* FNV-1a, then a 64-bit finalizer (splitmix64's) so that every bit of the input moves every
 * bit of the result: the same value on every machine and in every moat. */
static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t hash_bytes(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * UINT64_C(0x100000001b3);
    return h;
}

static uint64_t hash_of(const void *data, size_t len)
{
    return mix(hash_bytes(UINT64_C(0xcbf29ce484222325), data, len));
}

/* Takes a reference unless the last one is already gone (the target is being freed). */
static int ref_if_live(struct moat_target *t)
{
    int n = atomic_load_explicit(&t->refs, memory_order_relaxed);
    while (n > 0)
        if (atomic_compare_exchange_weak_explicit(&t->refs, &n, n + 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return 1;
    return 0;
}

struct moat_target *moat_target_get(const char *pool, const struct sockaddr_storage *addr,
                                    const char *addr_text)
{
    struct moat_target *t = NULL;
    size_t free_slot = MOAT_MAX_TARGETS;
    pthread_mutex_lock(&registry_lock);
    for (size_t i = 0; i < MOAT_MAX_TARGETS; i++) {
        struct moat_target *r = registry[i];
        if (r == NULL) {
            if (free_slot == MOAT_MAX_TARGETS)
                free_slot = i;
        } else if (strcmp(r->pool, pool) == 0 && same_addr(&r->addr, addr) && ref_if_live(r)) {
            t = r;
            break;
        }
    }
    if (t == NULL && free_slot < MOAT_MAX_TARGETS && (t = calloc(1, sizeof(*t))) != NULL) {
        atomic_init(&t->refs, 1);
        t->slot = (unsigned)free_slot;
        t->id = ++last_id;
        snprintf(t->pool, sizeof(t->pool), "%s", pool);
        t->addr = *addr;
        snprintf(t->addr_text, sizeof(t->addr_text), "%s", addr_text);
        uint64_t h = hash_bytes(UINT64_C(0xcbf29ce484222325), pool, strlen(pool) + 1);
        t->seed = mix(hash_bytes(h, addr_text, strlen(addr_text)));
        snprintf(t->cookie, sizeof(t->cookie), "%016llx", (unsigned long long)t->seed);
        atomic_init(&t->down_until_ms, 0);
        atomic_init(&t->fails, 0);
        atomic_init(&t->ejected_until_ms, 0);
        atomic_init(&t->ejections, 0);
        atomic_init(&t->ejections_total, 0);
        atomic_init(&t->paused_until_ms, 0);
        atomic_init(&t->admin_state, MOAT_TARGET_READY);
        atomic_init(&t->admin_weight, -1);
        atomic_init(&t->connections, 0);
        atomic_init(&t->check_down, 0);
        atomic_init(&t->up_since_ms, 0);
        atomic_init(&t->last_check_status, 0);
        registry[free_slot] = t;
    }
    pthread_mutex_unlock(&registry_lock);
    return t;
}

void moat_target_ref(struct moat_target *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
}

void moat_target_unref(struct moat_target *t)
{
    if (t == NULL || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    /* moat_target_get() no longer takes it (ref_if_live); its slot frees once it is out. */
    pthread_mutex_lock(&registry_lock);
    registry[t->slot] = NULL;
    pthread_mutex_unlock(&registry_lock);
    free(t);
}

int moat_target_is_up(const struct moat_target *t, uint64_t now_ms)
{
    return !atomic_load_explicit(&t->check_down, memory_order_relaxed) &&
           atomic_load_explicit(&t->down_until_ms, memory_order_relaxed) <= now_ms &&
           atomic_load_explicit(&t->ejected_until_ms, memory_order_relaxed) <= now_ms &&
           atomic_load_explicit(&t->paused_until_ms, memory_order_relaxed) <= now_ms;
}

#define WEIGHT_SCALE 100 /* weights are compared scaled, so that slow start can take a part */

/* m's weight now: the admin's, or the configuration's; 0 while it drains or is in
 * maintenance (a draining member still takes its pinned clients: see moat_pick()). */
static unsigned weight_of(const struct moat_balance_pool *pool, size_t m, uint64_t now_ms)
{
    const struct moat_target *t = pool->targets[m];
    if (atomic_load_explicit(&t->admin_state, memory_order_relaxed) != MOAT_TARGET_READY)
        return 0;
    int32_t aw = atomic_load_explicit(&t->admin_weight, memory_order_relaxed);
    unsigned w = (aw >= 0 ? (unsigned)aw : pool->weights[m]) * WEIGHT_SCALE;
    if (pool->slow_start_ms == 0 || w == 0)
        return w;
    /* Slow start: back from a failure (or an ejection's end), the share grows from a tenth to
     * all of it over the window. */
    uint64_t since = atomic_load_explicit(&t->up_since_ms, memory_order_relaxed);
    uint64_t ejected = atomic_load_explicit(&t->ejected_until_ms, memory_order_relaxed);
    if (ejected <= now_ms && ejected > since)
        since = ejected;
    if (since == 0 || now_ms >= since + pool->slow_start_ms)
        return w;
    uint64_t part = (uint64_t)w * (now_ms - since) / pool->slow_start_ms;
    return part > w / 10 ? (unsigned)part : (w / 10 > 0 ? w / 10 : 1);
}

const char *moat_target_state(const struct moat_target *t, uint64_t now_ms, const char **why)
{
    const char *unused;
    if (why == NULL)
        why = &unused;
    int admin_state = atomic_load_explicit(&t->admin_state, memory_order_relaxed);
    *why = "";
    if (admin_state == MOAT_TARGET_MAINT) {
        *why = "put in maintenance by the admin API";
        return "maint";
    }
    if (atomic_load_explicit(&t->check_down, memory_order_relaxed)) {
        *why = "fails its health check";
        return "down";
    }
    if (atomic_load_explicit(&t->down_until_ms, memory_order_relaxed) > now_ms) {
        *why = "a connect failed or timed out";
        return "down";
    }
    if (atomic_load_explicit(&t->ejected_until_ms, memory_order_relaxed) > now_ms) {
        *why = "failures in a row (passive health)";
        return "ejected";
    }
    if (atomic_load_explicit(&t->paused_until_ms, memory_order_relaxed) > now_ms) {
        *why = "503 with Retry-After";
        return "paused";
    }
    if (admin_state == MOAT_TARGET_DRAIN) {
        *why = "draining by the admin API: pinned clients only";
        return "draining";
    }
    return "up";
}

/* How many of pool's members other than t are usable, and how many are ejected. */
static void count_others(const struct moat_balance_pool *pool, const struct moat_target *t,
                         uint64_t now_ms, size_t *usable_n, size_t *ejected_n)
{
    *usable_n = *ejected_n = 0;
    for (size_t m = 0; m < pool->n; m++) {
        const struct moat_target *o = pool->targets[m];
        if (o == t)
            continue;
        if (atomic_load_explicit(&o->ejected_until_ms, memory_order_relaxed) > now_ms)
            (*ejected_n)++;
        else if (weight_of(pool, m, now_ms) > 0 && moat_target_is_up(o, now_ms))
            (*usable_n)++;
    }
}

uint64_t moat_target_failed(struct moat_target *t, const struct moat_balance_pool *pool,
                            const struct moat_passive *cfg, uint64_t now_ms)
{
    if (cfg->consecutive_errors == 0)
        return 0;
    uint32_t fails = atomic_fetch_add_explicit(&t->fails, 1, memory_order_relaxed) + 1;
    if (fails < cfg->consecutive_errors ||
        atomic_load_explicit(&t->ejected_until_ms, memory_order_relaxed) > now_ms)
        return 0;
    size_t usable_n, ejected_n;
    count_others(pool, t, now_ms, &usable_n, &ejected_n);
    /* Never the last usable member; never more than half the pool (the last of two may go). */
    if (usable_n == 0 || (ejected_n + 1) * 2 > pool->n + (pool->n == 2))
        return 0;
    uint32_t k = atomic_fetch_add_explicit(&t->ejections, 1, memory_order_relaxed) + 1;
    uint64_t ms = cfg->ejection_ms * k;
    if (ms > cfg->max_ejection_ms)
        ms = cfg->max_ejection_ms;
    uint64_t until = now_ms + ms;
    uint64_t was = atomic_load_explicit(&t->ejected_until_ms, memory_order_relaxed);
    if (was > now_ms || !atomic_compare_exchange_strong_explicit(
                            &t->ejected_until_ms, &was, until, memory_order_relaxed,
                            memory_order_relaxed))
        return 0; /* another worker ejected it first */
    atomic_store_explicit(&t->fails, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->ejections_total, 1, memory_order_relaxed);
    return ms;
}

void moat_target_succeeded(struct moat_target *t, const struct moat_passive *cfg,
                           uint64_t now_ms)
{
    /* The success path reads first: no store, so no cache line bouncing, when all is well. */
    if (atomic_load_explicit(&t->fails, memory_order_relaxed) != 0)
        atomic_store_explicit(&t->fails, 0, memory_order_relaxed);
    if (atomic_load_explicit(&t->ejections, memory_order_relaxed) == 0)
        return;
    uint64_t until = atomic_load_explicit(&t->ejected_until_ms, memory_order_relaxed);
    if (until + cfg->ejection_ms <= now_ms) /* a quiet period after the last ejection */
        atomic_store_explicit(&t->ejections, 0, memory_order_relaxed);
}

int moat_target_pause(struct moat_target *t, const struct moat_balance_pool *pool, uint64_t ms,
                      uint64_t now_ms)
{
    size_t usable_n, ejected_n;
    count_others(pool, t, now_ms, &usable_n, &ejected_n);
    if (usable_n == 0)
        return 0;
    if (ms > MOAT_PAUSE_MAX_MS)
        ms = MOAT_PAUSE_MAX_MS;
    atomic_store_explicit(&t->paused_until_ms, now_ms + ms, memory_order_relaxed);
    return 1;
}

int moat_target_mark(struct moat_target *t, int status, uint64_t now_ms)
{
    if (status == 0) {
        /* The success path reads first: most connects succeed, and a store per connect would
         * bounce the line between the workers' cores. */
        if (atomic_load_explicit(&t->down_until_ms, memory_order_relaxed) == 0)
            return 0;
        if (atomic_exchange_explicit(&t->down_until_ms, 0, memory_order_relaxed) == 0)
            return 0;
        atomic_store_explicit(&t->up_since_ms, now_ms, memory_order_relaxed);
        return 1;
    }
    uint64_t until = now_ms + MOAT_TARGET_DOWN_MS;
    return atomic_exchange_explicit(&t->down_until_ms, until, memory_order_relaxed) == 0;
}

void moat_target_joined(struct moat_target *t, uint64_t now_ms)
{
    /* The caller's reference alone: nobody picked it yet. */
    if (atomic_load_explicit(&t->refs, memory_order_acquire) == 1)
        atomic_store_explicit(&t->up_since_ms, now_ms, memory_order_relaxed);
}

void moat_target_check_up(struct moat_target *t, uint64_t now_ms)
{
    atomic_store_explicit(&t->up_since_ms, now_ms, memory_order_relaxed);
    atomic_store_explicit(&t->check_down, 0, memory_order_relaxed);
}

struct moat_picker {
    size_t *next;       /* owned: per pool, the round-robin cursor when nobody is usable */
    unsigned char *panic; /* owned: per pool, 1 while nobody is usable (the last first try) */
    unsigned char *panic_told; /* owned: per pool, what moat_picker_panic_change() said last */
    uint32_t *in_flight; /* owned: per member, this worker's requests on it */
    uint32_t *pool_in_flight; /* owned: per pool, the same summed */
    uint32_t *retrying;  /* owned: per pool, retries under way (the budget) */
    uint64_t rng;       /* xorshift64 state: random and least_request */
    int64_t current[];  /* per member: smooth weighted round robin's current weight */
};

struct moat_picker *moat_picker_new(size_t n_pools, size_t n_members)
{
    struct moat_picker *p = calloc(1, sizeof(*p) + n_members * sizeof(p->current[0]));
    if (p == NULL)
        return NULL;
    p->next = calloc(n_pools + 1, sizeof(*p->next));
    p->in_flight = calloc(n_members + 1, sizeof(*p->in_flight));
    p->panic = calloc(n_pools + 1, sizeof(*p->panic));
    p->panic_told = calloc(n_pools + 1, sizeof(*p->panic_told));
    p->pool_in_flight = calloc(n_pools + 1, sizeof(*p->pool_in_flight));
    p->retrying = calloc(n_pools + 1, sizeof(*p->retrying));
    if (p->next == NULL || p->in_flight == NULL || p->panic == NULL || p->panic_told == NULL ||
        p->pool_in_flight == NULL || p->retrying == NULL) {
        moat_picker_free(p);
        return NULL;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    p->rng = mix((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uintptr_t)p) | 1;
    return p;
}

void moat_picker_free(struct moat_picker *p)
{
    if (p == NULL)
        return;
    free(p->next);
    free(p->in_flight);
    free(p->panic);
    free(p->panic_told);
    free(p->pool_in_flight);
    free(p->retrying);
    free(p);
}

int moat_picker_panic_change(struct moat_picker *p, size_t pool_idx)
{
    int now = p->panic[pool_idx], told = p->panic_told[pool_idx];
    p->panic_told[pool_idx] = (unsigned char)now;
    return now - told;
}

void moat_picker_started(struct moat_picker *p, size_t pool_idx, size_t member)
{
    p->in_flight[member]++;
    p->pool_in_flight[pool_idx]++;
}

void moat_picker_ended(struct moat_picker *p, size_t pool_idx, size_t member)
{
    if (p->in_flight[member] > 0)
        p->in_flight[member]--;
    if (p->pool_in_flight[pool_idx] > 0)
        p->pool_in_flight[pool_idx]--;
}

int moat_picker_retry_allowed(const struct moat_picker *p, size_t pool_idx, unsigned budget_pct)
{
    uint64_t allowed = (uint64_t)p->pool_in_flight[pool_idx] * budget_pct / 100;
    if (allowed < 3)
        allowed = 3;
    return p->retrying[pool_idx] < allowed;
}

int moat_picker_retry_begin(struct moat_picker *p, size_t pool_idx, unsigned budget_pct)
{
    if (!moat_picker_retry_allowed(p, pool_idx, budget_pct))
        return 0;
    p->retrying[pool_idx]++;
    return 1;
}

void moat_picker_retry_end(struct moat_picker *p, size_t pool_idx)
{
    if (p->retrying[pool_idx] > 0)
        p->retrying[pool_idx]--;
}

static uint64_t next_random(struct moat_picker *p)
{
    p->rng ^= p->rng << 13;
    p->rng ^= p->rng >> 7;
    p->rng ^= p->rng << 17;
    return p->rng;
}

void moat_pick_req_make(const struct moat_balance_pool *pool, const struct moat_http_head *h,
                        const char *client_ip, struct moat_pick_req *req)
{
    memset(req, 0, sizeof(*req));
    if (pool->sticky_cookie != NULL)
        if (!moat_http_cookie_get(h, pool->sticky_cookie, &req->pinned, &req->pinned_len))
            req->pinned = NULL;
    if (pool->alg != MOAT_CFG_BALANCE_HASH)
        return;
    const char *v = NULL;
    size_t len = 0;
    switch (pool->hash_by) {
    case MOAT_CFG_HASH_CLIENT_IP:
        v = client_ip;
        len = strlen(client_ip);
        break;
    case MOAT_CFG_HASH_HEADER: {
        const struct moat_http_field *f = moat_http_field_find(h, pool->hash_name);
        if (f != NULL) {
            v = f->value;
            len = f->value_len;
        }
        break;
    }
    case MOAT_CFG_HASH_COOKIE:
        if (!moat_http_cookie_get(h, pool->hash_name, &v, &len))
            v = NULL;
        break;
    case MOAT_CFG_HASH_URI:
        v = h->target;
        len = h->target_len;
        break;
    case MOAT_CFG_HASH_PATH: {
        v = h->target;
        const char *q = memchr(h->target, '?', h->target_len);
        len = q != NULL ? (size_t)(q - h->target) : h->target_len;
        break;
    }
    case MOAT_CFG_HASH_HOST:
        v = h->host;
        len = h->host_len;
        break;
    }
    if (v != NULL) {
        req->has_key = 1;
        req->key = hash_of(v, len);
    }
}

/* What m may take of this request: its weight now, or 0 when it is avoid, has no weight or is
 * passed over. Read once per member and pick: each read is a few atomic loads. */
static unsigned share(const struct moat_balance_pool *pool, size_t m, size_t avoid,
                      uint64_t now_ms)
{
    if (m == avoid || !moat_target_is_up(pool->targets[m], now_ms))
        return 0;
    return weight_of(pool, m, now_ms);
}

/* Every usable member gains its weight; the one with the most wins and gives back the total,
 * so over a cycle each wins in proportion to its weight, interleaved. */
static size_t pick_round_robin(struct moat_picker *p, const struct moat_balance_pool *pool,
                               size_t avoid, uint64_t now_ms)
{
    int64_t *current = &p->current[pool->first];
    int64_t total = 0;
    size_t best = SIZE_MAX;
    for (size_t m = 0; m < pool->n; m++) {
        unsigned w = share(pool, m, avoid, now_ms);
        if (w == 0)
            continue;
        current[m] += w;
        total += w;
        if (best == SIZE_MAX || current[m] > current[best])
            best = m;
    }
    if (best != SIZE_MAX)
        current[best] -= total;
    return best;
}

/* The usable member other than skip at which the running sum of shares passes r (r < the total
 * of those); *w gets its share. */
static size_t nth_by_weight(const struct moat_balance_pool *pool, uint64_t r, size_t avoid,
                            size_t skip, uint64_t now_ms, unsigned *w)
{
    for (size_t m = 0; m < pool->n; m++) {
        unsigned s = m == skip ? 0 : share(pool, m, avoid, now_ms);
        if (r < s) {
            *w = s;
            return m;
        }
        r -= s;
    }
    return SIZE_MAX;
}

static uint64_t usable_weight(const struct moat_balance_pool *pool, size_t avoid,
                              uint64_t now_ms)
{
    uint64_t total = 0;
    for (size_t m = 0; m < pool->n; m++)
        total += share(pool, m, avoid, now_ms);
    return total;
}

/* Power of two choices: two different members drawn by weight; the one with fewer requests in
 * flight per weight wins (ties: the first drawn). */
static size_t pick_least_request(struct moat_picker *p, const struct moat_balance_pool *pool,
                                 size_t avoid, uint64_t now_ms)
{
    uint64_t total = usable_weight(pool, avoid, now_ms);
    if (total == 0)
        return SIZE_MAX;
    unsigned wa = 0, wb = 0;
    size_t a = nth_by_weight(pool, next_random(p) % total, avoid, SIZE_MAX, now_ms, &wa);
    if (total == wa)
        return a; /* the only usable member */
    size_t b = nth_by_weight(pool, next_random(p) % (total - wa), avoid, a, now_ms, &wb);
    const uint32_t *in_flight = &p->in_flight[pool->first];
    uint64_t cost_a = (uint64_t)in_flight[a] * wb;
    uint64_t cost_b = (uint64_t)in_flight[b] * wa;
    return cost_b < cost_a ? b : a;
}

/* Rendezvous (highest random weight) hashing: each member scores the key; weights scale the
 * score as -w / ln(u), so a member's share follows its weight, and a member leaving moves only
 * the keys it had. */
static size_t pick_hash(const struct moat_balance_pool *pool, uint64_t key, size_t avoid,
                        uint64_t now_ms)
{
    size_t best = SIZE_MAX;
    double best_score = 0;
    for (size_t m = 0; m < pool->n; m++) {
        unsigned w = share(pool, m, avoid, now_ms);
        if (w == 0)
            continue;
        uint64_t h = mix(key ^ pool->targets[m]->seed);
        double u = ((double)(h >> 11) + 1.0) / 9007199254740993.0; /* (0, 1) */
        double score = -(double)w / log(u);
        if (best == SIZE_MAX || score > best_score) {
            best = m;
            best_score = score;
        }
    }
    return best;
}

size_t moat_pick(struct moat_picker *p, size_t pool_idx, const struct moat_balance_pool *pool,
                 const struct moat_pick_req *req, size_t avoid, uint64_t now_ms)
{
    if (req != NULL && req->pinned != NULL && req->pinned_len == 16) {
        for (size_t m = 0; m < pool->n; m++)
            if (m != avoid && memcmp(pool->targets[m]->cookie, req->pinned, 16) == 0 &&
                moat_target_is_up(pool->targets[m], now_ms) &&
                atomic_load_explicit(&pool->targets[m]->admin_state, memory_order_relaxed) !=
                    MOAT_TARGET_MAINT)
                return m;
    }
    size_t m = SIZE_MAX;
    switch (pool->alg) {
    case MOAT_CFG_BALANCE_ROUND_ROBIN:
        m = pick_round_robin(p, pool, avoid, now_ms);
        break;
    case MOAT_CFG_BALANCE_RANDOM: {
        uint64_t total = usable_weight(pool, avoid, now_ms);
        unsigned w = 0;
        if (total > 0)
            m = nth_by_weight(pool, next_random(p) % total, avoid, SIZE_MAX, now_ms, &w);
        break;
    }
    case MOAT_CFG_BALANCE_LEAST_REQUEST:
        m = pick_least_request(p, pool, avoid, now_ms);
        break;
    case MOAT_CFG_BALANCE_HASH:
        m = req != NULL && req->has_key ? pick_hash(pool, req->key, avoid, now_ms)
                                        : pick_round_robin(p, pool, avoid, now_ms);
        break;
    }
    if (avoid == SIZE_MAX) /* a first try says how the pool is */
        p->panic[pool_idx] = m == SIZE_MAX;
    if (m != SIZE_MAX)
        return m;
    for (size_t i = 0; i < pool->n; i++) {
        m = p->next[pool_idx]++ % pool->n;
        if (m != avoid && weight_of(pool, m, now_ms) > 0)
            return m;
    }
    return SIZE_MAX;
}

int moat_may_try_another(size_t tries, size_t n, unsigned attempts)
{
    return tries <= attempts && n > 1;
}
