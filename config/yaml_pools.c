/* config/yaml_pools.c: the pools of the configuration file: backends and weights, the balance
 * algorithm and its hash key, sticky sessions, passive and active health, retries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/model.h"
#include "config/yaml_walk.h"

static void apply_backend_address(struct walk *w, struct moat_yaml_node *v, const char *path,
                                  void *target)
{
    struct moat_cfg_backend *b = target;
    yw_set_hostport(w, v, path, 0, &b->addr);
}

static void apply_backend_weight(struct walk *w, struct moat_yaml_node *v, const char *path,
                                 void *target)
{
    struct moat_cfg_backend *b = target;
    const char *text = yw_word(w, v, path, "a weight (0 to 256)");
    char why[512];
    if (text != NULL && moat_cfg_weight_parse(text, &b->weight, why, sizeof(why)) != 0)
        yw_fail(w, v, path, "%s", why);
}

static const struct key backend_keys[] = {{"address", apply_backend_address},
                                          {"weight", apply_backend_weight}};
static const struct section backend_section = {backend_keys, 2, NULL};

/* A pool's backend: "HOST:PORT", or {address: HOST:PORT, weight: N}. */
static void set_backend(struct walk *w, struct moat_yaml_node *v, const char *path,
                        struct moat_cfg_backend *b)
{
    b->weight = 1;
    if (v->kind != MOAT_YAML_MAP) {
        yw_set_hostport(w, v, path, 0, &b->addr);
        return;
    }
    yw_walk_map(w, v, path, &backend_section, b);
    yw_require(w, v, path, "address", "address: 127.0.0.1:8080");
}

static void apply_backends(struct walk *w, struct moat_yaml_node *v, const char *path,
                           void *target)
{
    struct moat_cfg_pool *pool = target;
    struct moat_yaml_node **item;
    size_t n;
    pool->backends = yw_items_array(w, v, path, "backends", sizeof(*pool->backends), &item, &n);
    if (n == 0 && (yw_is_null(v) || (v->kind == MOAT_YAML_SEQ && v->n_kids == 0)))
        yw_fail(w, v, path, "at least one backend is required (e.g. [127.0.0.1:8080])");
    for (size_t i = 0; i < n; i++) {
        char ipath[PATH_LEN];
        yw_join_index(ipath, path, i);
        set_backend(w, item[i], ipath, &pool->backends[pool->n_backends++]);
    }
}

static void apply_balance(struct walk *w, struct moat_yaml_node *v, const char *path,
                          void *target)
{
    struct moat_cfg_pool *pool = target;
    const char *text = yw_word(w, v, path, "a balance algorithm");
    char why[512];
    if (text != NULL && moat_cfg_balance_parse(text, &pool->balance, why, sizeof(why)) != 0)
        yw_fail(w, v, path, "%s", why);
}

static void apply_hash_key(struct walk *w, struct moat_yaml_node *v, const char *path,
                           void *target)
{
    struct moat_cfg_pool *pool = target;
    const char *text = yw_word(w, v, path, "a hash key");
    char why[512];
    if (text == NULL)
        return;
    int rc = moat_cfg_hash_key_parse(text, pool, why, sizeof(why));
    if (rc == -2)
        yw_out_of_memory(w, v, path);
    else if (rc != 0)
        yw_fail(w, v, path, "%s", why);
}

static void apply_sticky_cookie(struct walk *w, struct moat_yaml_node *v, const char *path,
                                void *target)
{
    struct moat_cfg_pool *pool = target;
    const char *text = yw_word(w, v, path, "a cookie name");
    char why[512];
    if (text == NULL)
        return;
    if (moat_cfg_cookie_name_check(text, why, sizeof(why)) != 0) {
        yw_fail(w, v, path, "%s", why);
        return;
    }
    yw_set_string(w, v, path, "a cookie name", &pool->sticky_cookie);
}

static void apply_same_site(struct walk *w, struct moat_yaml_node *v, const char *path,
                            void *target)
{
    struct moat_cfg_pool *pool = target;
    const char *text = yw_word(w, v, path, "none, lax or strict");
    if (text == NULL)
        return;
    if (strcmp(text, "none") == 0)
        pool->sticky_same_site = MOAT_CFG_SAME_SITE_NONE;
    else if (strcmp(text, "lax") == 0)
        pool->sticky_same_site = MOAT_CFG_SAME_SITE_LAX;
    else if (strcmp(text, "strict") == 0)
        pool->sticky_same_site = MOAT_CFG_SAME_SITE_STRICT;
    else
        yw_fail(w, v, path, "expected none, lax or strict, got '%s'", text);
}

static const struct key sticky_keys[] = {{"cookie", apply_sticky_cookie},
                                         {"same_site", apply_same_site}};
static const struct section sticky_section = {sticky_keys, 2, NULL};

static void apply_sticky(struct walk *w, struct moat_yaml_node *v, const char *path,
                         void *target)
{
    yw_walk_map(w, v, path, &sticky_section, target);
    yw_require(w, v, path, "cookie", "cookie: moat_backend");
}


/* A duration from min_ms to 1 h into *out ("0" too when min_ms is 0), or nothing after saying
 * why. */
static void small_duration(struct walk *w, struct moat_yaml_node *v, const char *path,
                           uint64_t min_ms, uint64_t *out)
{
    const char *text = yw_word(w, v, path, "a duration");
    uint64_t ms = 0;
    if (text == NULL)
        return;
    int is_zero = min_ms == 0 && strcmp(text, "0") == 0;
    if (!is_zero && (moat_cfg_duration_parse(text, &ms) != 0 || ms < min_ms || ms > 3600000)) {
        yw_fail(w, v, path, "expected a duration from %s to 1h (e.g. 10s), got '%s'",
                min_ms == 0 ? "0" : min_ms >= 1000 ? "1s" : "100ms", text);
        return;
    }
    *out = ms;
}

static void apply_passive_errors(struct walk *w, struct moat_yaml_node *v, const char *path,
                                 void *target)
{
    long n = yw_number(w, v, path, "a number", 0, 1000);
    if (n >= 0)
        ((struct moat_cfg_pool *)target)->passive_errors = (unsigned)n;
}

static void apply_passive_ejection(struct walk *w, struct moat_yaml_node *v, const char *path,
                                   void *target)
{
    small_duration(w, v, path, 100, &((struct moat_cfg_pool *)target)->passive_ejection_ms);
}

static const struct key passive_keys[] = {{"consecutive_errors", apply_passive_errors},
                                          {"ejection", apply_passive_ejection}};
static const struct section passive_section = {passive_keys, 2, NULL};

static void apply_passive(struct walk *w, struct moat_yaml_node *v, const char *path,
                          void *target)
{
    yw_walk_map(w, v, path, &passive_section, target);
}

static void apply_retry_attempts(struct walk *w, struct moat_yaml_node *v, const char *path,
                                 void *target)
{
    long n = yw_number(w, v, path, "a number", 0, 5);
    if (n >= 0)
        ((struct moat_cfg_pool *)target)->retry_attempts = (unsigned)n;
}

static void apply_retry_budget(struct walk *w, struct moat_yaml_node *v, const char *path,
                               void *target)
{
    long n = yw_number(w, v, path, "a number", 0, 100);
    if (n >= 0)
        ((struct moat_cfg_pool *)target)->retry_budget_pct = (unsigned)n;
}

static const struct key retries_keys[] = {{"attempts", apply_retry_attempts},
                                          {"budget_percent", apply_retry_budget}};
static const struct section retries_section = {retries_keys, 2, NULL};

static void apply_retries(struct walk *w, struct moat_yaml_node *v, const char *path,
                          void *target)
{
    yw_walk_map(w, v, path, &retries_section, target);
}

static void apply_hc_path(struct walk *w, struct moat_yaml_node *v, const char *path,
                          void *target)
{
    const char *text = yw_word(w, v, path, "a path");
    if (text != NULL && (text[0] != '/' || strpbrk(text, " \t\r\n") != NULL)) {
        yw_fail(w, v, path, "expected a path starting with '/', got '%s'", text);
        return;
    }
    yw_set_string(w, v, path, "a path", &((struct moat_cfg_health *)target)->path);
}

static void apply_hc_host(struct walk *w, struct moat_yaml_node *v, const char *path,
                          void *target)
{
    const char *text = yw_word(w, v, path, "a host name");
    if (text != NULL && strpbrk(text, " \t\r\n/") != NULL) {
        yw_fail(w, v, path, "expected a host name, got '%s'", text);
        return;
    }
    yw_set_string(w, v, path, "a host name", &((struct moat_cfg_health *)target)->host);
}

static void apply_hc_interval(struct walk *w, struct moat_yaml_node *v, const char *path,
                              void *target)
{
    small_duration(w, v, path, 100, &((struct moat_cfg_health *)target)->interval_ms);
}

static void apply_hc_timeout(struct walk *w, struct moat_yaml_node *v, const char *path,
                             void *target)
{
    small_duration(w, v, path, 100, &((struct moat_cfg_health *)target)->timeout_ms);
}

static void apply_hc_rise(struct walk *w, struct moat_yaml_node *v, const char *path,
                          void *target)
{
    long n = yw_number(w, v, path, "a number", 1, 100);
    if (n > 0)
        ((struct moat_cfg_health *)target)->rise = (unsigned)n;
}

static void apply_hc_fall(struct walk *w, struct moat_yaml_node *v, const char *path,
                          void *target)
{
    long n = yw_number(w, v, path, "a number", 1, 100);
    if (n > 0)
        ((struct moat_cfg_health *)target)->fall = (unsigned)n;
}

/* "200", "200-399". */
static void apply_hc_expect(struct walk *w, struct moat_yaml_node *v, const char *path,
                            void *target)
{
    struct moat_cfg_health *hc = target;
    const char *text = yw_word(w, v, path, "a status or a range (200-399)");
    unsigned lo, hi;
    char extra;
    if (text == NULL)
        return;
    int n = sscanf(text, "%u-%u%c", &lo, &hi, &extra);
    if (n == 1)
        hi = lo;
    if ((n != 1 && n != 2) || lo < 100 || hi > 599 || lo > hi) {
        yw_fail(w, v, path, "expected a status or a range of statuses (e.g. 200-399), got '%s'",
                text);
        return;
    }
    hc->expect_lo = lo;
    hc->expect_hi = hi;
}

static const struct key hc_keys[] = {{"path", apply_hc_path},         {"host", apply_hc_host},
                                     {"interval", apply_hc_interval}, {"timeout", apply_hc_timeout},
                                     {"rise", apply_hc_rise},         {"fall", apply_hc_fall},
                                     {"expect", apply_hc_expect}};
static const struct section hc_section = {hc_keys, 7, NULL};

static void apply_health_check(struct walk *w, struct moat_yaml_node *v, const char *path,
                               void *target)
{
    struct moat_cfg_pool *pool = target;
    yw_walk_map(w, v, path, &hc_section, &pool->health);
    yw_require(w, v, path, "path", "path: /healthz");
}

static void apply_slow_start(struct walk *w, struct moat_yaml_node *v, const char *path,
                             void *target)
{
    small_duration(w, v, path, 0, &((struct moat_cfg_pool *)target)->slow_start_ms);
}

static const struct key pool_keys[] = {{"backends", apply_backends},
                                       {"slow_start", apply_slow_start},
                                       {"balance", apply_balance},
                                       {"hash_key", apply_hash_key},
                                       {"sticky", apply_sticky},
                                       {"passive", apply_passive},
                                       {"retries", apply_retries},
                                       {"health_check", apply_health_check}};
static const struct section pool_section = {pool_keys, 8, NULL};

void yw_apply_pools(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    (void)target;
    struct moat_cfg *cfg = w->cfg;
    w->pools = v;
    if (yw_is_null(v))
        return;
    if (v->kind != MOAT_YAML_MAP) {
        yw_fail(w, v, path, "expected a mapping of pool names to pools, got %s", yw_kind_name(v));
        return;
    }
    cfg->pools = calloc(v->n_kids / 2 + 1, sizeof(*cfg->pools));
    if (cfg->pools == NULL) {
        yw_out_of_memory(w, v, path);
        return;
    }
    for (size_t i = 0; i + 1 < v->n_kids; i += 2) {
        struct moat_yaml_node *key = v->kids[i], *value = v->kids[i + 1];
        const char *name = yw_word(w, key, path, "a pool name");
        if (name == NULL)
            continue;
        char ppath[PATH_LEN];
        yw_join_key(ppath, path, name);
        size_t first = 0;
        while (first < cfg->n_pools && strcmp(cfg->pools[first].name, name) != 0)
            first++;
        if (first < cfg->n_pools) {
            yw_fail(w, key, ppath, "pool '%s' is defined twice", name);
            continue;
        }
        struct moat_cfg_pool *pool = &cfg->pools[cfg->n_pools];
        moat_cfg_pool_init(pool);
        pool->name = strdup(name);
        if (pool->name == NULL) {
            yw_out_of_memory(w, key, ppath);
            continue;
        }
        cfg->n_pools++;
        yw_walk_map(w, value, ppath, &pool_section, pool);
        yw_require(w, value, ppath, "backends", "backends: [127.0.0.1:8080]");
        struct moat_yaml_node *hash_key = yw_lookup(value, "hash_key");
        if (hash_key != NULL && pool->balance != MOAT_CFG_BALANCE_HASH) {
            char kpath[PATH_LEN + 16];
            snprintf(kpath, sizeof(kpath), "%s.hash_key", ppath);
            yw_fail(w, hash_key, kpath, "only with balance: hash");
        }
    }
}


/* ---- resolver: where backend names are resolved --------------------------------------------- */

static void apply_resolver_servers(struct walk *w, struct moat_yaml_node *v, const char *path,
                                   void *target)
{
    struct moat_cfg_resolver *r = target;
    size_t n = 0;
    struct moat_yaml_node **item = yw_items(w, v, path, "DNS servers (HOST:PORT)", &n);
    if (n > MOAT_CFG_MAX_RESOLVERS) {
        yw_fail(w, v, path, "at most %d DNS servers", MOAT_CFG_MAX_RESOLVERS);
        return;
    }
    r->n_servers = 0;
    for (size_t i = 0; item != NULL && i < n; i++) {
        char ipath[PATH_LEN];
        yw_join_index(ipath, path, i);
        if (yw_set_hostport(w, item[i], ipath, 0, &r->servers[r->n_servers]) != 0)
            continue;
        if (moat_cfg_host_is_ip(&r->servers[r->n_servers]))
            r->n_servers++;
        else
            yw_fail(w, item[i], ipath, "expected an IP address and port (a DNS server cannot "
                    "be a name), got '%s'", item[i]->text);
    }
}

static void apply_resolver_refresh(struct walk *w, struct moat_yaml_node *v, const char *path,
                                   void *target)
{
    struct moat_cfg_resolver *r = target;
    uint64_t ms = r->refresh_ms;
    small_duration(w, v, path, 0, &ms);
    if (ms != 0 && ms < 1000)
        yw_fail(w, v, path, "expected 0 (resolve once) or at least 1s, got '%s'", v->text);
    else
        r->refresh_ms = ms;
}

static void apply_resolver_hold(struct walk *w, struct moat_yaml_node *v, const char *path,
                                void *target)
{
    small_duration(w, v, path, 0, &((struct moat_cfg_resolver *)target)->hold_ms);
}

static const struct key resolver_keys[] = {{"servers", apply_resolver_servers},
                                           {"refresh", apply_resolver_refresh},
                                           {"hold", apply_resolver_hold}};
static const struct section resolver_section = {resolver_keys, 3, NULL};

void yw_apply_resolver(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    (void)target;
    yw_walk_map(w, v, path, &resolver_section, &w->cfg->resolver);
}
