/* proxy/backends.c: see backends.h. */
#include "proxy/backends.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/balance.h"
#include "proxy/base/text.h"
#include "proxy/runtime.h"

#define put moat_text_put /* the answer is printed into a struct moat_text */

/* s as a JSON string, quotes included. */
static void put_string(struct moat_text *t, const char *s)
{
    put(t, "\"");
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            put(t, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            put(t, "\\u%04x", ch);
        else
            put(t, "%c", ch);
    }
    put(t, "\"");
}

static const char *const admin_names[] = {"ready", "drain", "maint"};

static uint64_t remaining_ms(_Atomic uint64_t *until, uint64_t now_ms)
{
    uint64_t u = atomic_load(until);
    return u > now_ms ? u - now_ms : 0;
}

int moat_backends_json(const struct moat_runtime *rt, uint64_t now_ms, char **out, size_t *len)
{
    struct moat_text t = {0};
    put(&t, "{\"pools\": [");
    for (size_t p = 0; p < rt->n_pools; p++) {
        const struct moat_rt_pool *rp = &rt->pools[p];
        static const char *const algs[] = {"round_robin", "random", "least_request", "hash"};
        put(&t, "%s\n  {\"name\": ", p ? "," : "");
        put_string(&t, rp->name);
        put(&t, ", \"balance\": \"%s\", \"backends\": [", algs[rp->members.alg]);
        for (size_t i = 0; i < rp->n; i++) {
            const struct moat_backend *b = &rt->backends[rp->first + i];
            struct moat_target *tg = b->target;
            const char *why;
            const char *state = moat_target_state(tg, now_ms, &why);
            int32_t aw = atomic_load(&tg->admin_weight);
            put(&t, "%s\n    {\"name\": ", i ? "," : "");
            put_string(&t, b->name);
            put(&t, ", \"address\": ");
            put_string(&t, tg->addr_text);
            put(&t, ", \"weight\": %u, \"admin_weight\": ", b->weight);
            if (aw >= 0)
                put(&t, "%d", (int)aw);
            else
                put(&t, "null");
            put(&t, ", \"admin\": \"%s\", \"state\": \"%s\", \"why\": ",
                admin_names[atomic_load(&tg->admin_state)], state);
            put_string(&t, why);
            put(&t, ", \"connections\": %d, \"failures_in_a_row\": %u, \"ejections_in_a_row\": "
                "%u, \"down_ms_left\": %llu, \"ejected_ms_left\": %llu, \"paused_ms_left\": "
                "%llu, \"last_check\": %d, \"sticky_value\": \"%s\"}",
                atomic_load(&tg->connections), (unsigned)atomic_load(&tg->fails),
                (unsigned)atomic_load(&tg->ejections),
                (unsigned long long)remaining_ms(&tg->down_until_ms, now_ms),
                (unsigned long long)remaining_ms(&tg->ejected_until_ms, now_ms),
                (unsigned long long)remaining_ms(&tg->paused_until_ms, now_ms),
                atomic_load(&tg->last_check_status), tg->cookie);
        }
        put(&t, "]}");
    }
    put(&t, "\n]}\n");
    if (t.failed) {
        free(t.buf);
        return -1;
    }
    *out = t.buf;
    *len = t.len;
    return 0;
}

/* The backend of pool pool_name whose address or configured name is who. */
static struct moat_target *find(const struct moat_runtime *rt, const char *pool_name,
                                const char *who)
{
    for (size_t p = 0; p < rt->n_pools; p++) {
        const struct moat_rt_pool *rp = &rt->pools[p];
        if (strcmp(rp->name, pool_name) != 0)
            continue;
        for (size_t i = 0; i < rp->n; i++) {
            const struct moat_backend *b = &rt->backends[rp->first + i];
            if (strcmp(b->target->addr_text, who) == 0 || strcmp(b->name, who) == 0)
                return b->target;
        }
    }
    return NULL;
}

/* Copies the next '/'-separated piece of *path (percent-decoding nothing: names with '/' or
 * '%' cannot be addressed). 0, or -1 when there is none or it does not fit. */
static int next_piece(const char **path, const char *end, char *out, size_t cap)
{
    const char *p = *path;
    if (p >= end || *p != '/')
        return -1;
    p++;
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *stop = slash != NULL ? slash : end;
    size_t len = (size_t)(stop - p);
    if (len == 0 || len >= cap)
        return -1;
    memcpy(out, p, len);
    out[len] = '\0';
    *path = stop;
    return 0;
}

int moat_backends_put(const struct moat_runtime *rt, const char *path, size_t path_len,
                      const char *query, size_t query_len, char *msg, size_t msg_cap)
{
    const char *p = path, *end = path + path_len;
    char root[16], pool[128], who[320], what[16], to[32] = "";
    if (next_piece(&p, end, root, sizeof(root)) != 0 || strcmp(root, "backends") != 0 ||
        next_piece(&p, end, pool, sizeof(pool)) != 0 ||
        next_piece(&p, end, who, sizeof(who)) != 0 ||
        next_piece(&p, end, what, sizeof(what)) != 0 || p != end) {
        snprintf(msg, msg_cap, "not found: PUT /backends/POOL/ADDRESS/state?to=ready|drain|"
                 "maint or /backends/POOL/ADDRESS/weight?to=0..256\n");
        return 404;
    }
    if (query_len > 3 && query_len - 3 < sizeof(to) && memcmp(query, "to=", 3) == 0) {
        memcpy(to, query + 3, query_len - 3);
        to[query_len - 3] = '\0';
    }
    struct moat_target *t = find(rt, pool, who);
    if (t == NULL) {
        snprintf(msg, msg_cap, "not found: no backend %s in pool %s\n", who, pool);
        return 404;
    }
    if (strcmp(what, "state") == 0) {
        for (int s = MOAT_TARGET_READY; s <= MOAT_TARGET_MAINT; s++) {
            if (strcmp(to, admin_names[s]) == 0) {
                atomic_store(&t->admin_state, s);
                snprintf(msg, msg_cap, "backend %s of pool %s: %s\n", t->addr_text, pool, to);
                return 200;
            }
        }
        snprintf(msg, msg_cap, "bad request: state?to= ready, drain or maint\n");
        return 400;
    }
    if (strcmp(what, "weight") == 0) {
        char *stop = NULL;
        long w = strtol(to, &stop, 10);
        if (to[0] == '\0' || *stop != '\0' || w < -1 || w > 256) {
            snprintf(msg, msg_cap, "bad request: weight?to= 0 to 256 (-1: the configured one)\n");
            return 400;
        }
        atomic_store(&t->admin_weight, (int32_t)w);
        snprintf(msg, msg_cap, "backend %s of pool %s: weight %ld\n", t->addr_text, pool, w);
        return 200;
    }
    snprintf(msg, msg_cap, "not found: /state or /weight\n");
    return 404;
}
