/* proxy/balance.c: see balance.h. */
#include "proxy/balance.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The live targets, by slot. The mutex guards the table and the slots, never a target's state. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct moat_target *registry[MOAT_MAX_TARGETS];

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    size_t len = a->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in);
    return memcmp(a, b, len) == 0;
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
        snprintf(t->pool, sizeof(t->pool), "%s", pool);
        t->addr = *addr;
        snprintf(t->addr_text, sizeof(t->addr_text), "%s", addr_text);
        atomic_init(&t->down_until_ms, 0);
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
    return atomic_load_explicit(&t->down_until_ms, memory_order_relaxed) <= now_ms;
}

int moat_target_mark(struct moat_target *t, int status, uint64_t now_ms)
{
    if (status == 0) {
        /* The success path reads first: most connects succeed, and a store per connect would
         * bounce the line between the workers' cores. */
        if (atomic_load_explicit(&t->down_until_ms, memory_order_relaxed) == 0)
            return 0;
        return atomic_exchange_explicit(&t->down_until_ms, 0, memory_order_relaxed) != 0;
    }
    uint64_t until = now_ms + MOAT_TARGET_DOWN_MS;
    return atomic_exchange_explicit(&t->down_until_ms, until, memory_order_relaxed) == 0;
}

struct moat_picker {
    size_t *next;       /* owned: per pool, the round-robin cursor when nobody is usable */
    int64_t current[];  /* per member: smooth weighted round robin's current weight */
};

struct moat_picker *moat_picker_new(size_t n_pools, size_t n_members)
{
    struct moat_picker *p = calloc(1, sizeof(*p) + n_members * sizeof(p->current[0]));
    if (p == NULL)
        return NULL;
    p->next = calloc(n_pools + 1, sizeof(*p->next));
    if (p->next == NULL) {
        free(p);
        return NULL;
    }
    return p;
}

void moat_picker_free(struct moat_picker *p)
{
    if (p == NULL)
        return;
    free(p->next);
    free(p);
}

size_t moat_pick(struct moat_picker *p, size_t pool_idx, const struct moat_balance_pool *pool,
                 size_t avoid, uint64_t now_ms)
{
    /* Every usable member gains its weight; the one with the most wins and gives back the
     * total, so over a cycle each wins in proportion to its weight, interleaved. */
    int64_t *current = &p->current[pool->first];
    int64_t total = 0;
    size_t best = SIZE_MAX;
    for (size_t m = 0; m < pool->n; m++) {
        if (m == avoid || pool->weights[m] == 0 || !moat_target_is_up(pool->targets[m], now_ms))
            continue;
        current[m] += pool->weights[m];
        total += pool->weights[m];
        if (best == SIZE_MAX || current[m] > current[best])
            best = m;
    }
    if (best != SIZE_MAX) {
        current[best] -= total;
        return best;
    }
    for (size_t i = 0; i < pool->n; i++) {
        size_t m = p->next[pool_idx]++ % pool->n;
        if (m != avoid && pool->weights[m] > 0)
            return m;
    }
    return SIZE_MAX;
}

int moat_may_try_another(size_t tries, size_t n)
{
    return tries < 2 && n > 1;
}
