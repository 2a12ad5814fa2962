/* config/yaml_keys.c: the configuration file's schema. Walks the node tree key by key, sets the
 * model's fields and records every mistake with its position and dotted key path; never stops
 * at the first one. Ranges and messages for numbers come from settings.c, shared with the
 * flags. */
#include "config/yaml_keys.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/env.h"
#include "config/model.h"

#define PATH_LEN 256 /* "listeners[0].tls.certificates[1].cert"; longer paths are cut */

struct walk {
    struct moat_cfg *cfg;       /* borrowed: being filled */
    struct moat_cfg_diag *diag; /* borrowed */
    struct moat_yaml_node *pools;        /* borrowed: the "pools" value, or NULL */
    struct moat_yaml_node *routes;       /* borrowed: resolved once every pool is known */
    struct moat_yaml_node *default_pool; /* borrowed: likewise */
};

/* Sets what the key at path says from its value v; target is the struct being filled. */
typedef void (*apply_cb)(struct walk *w, struct moat_yaml_node *v, const char *path,
                         void *target);

struct key {
    const char *name;
    apply_cb apply;
};

/* The keys a mapping may hold: a table, or the tunables of a settings.c section. */
struct section {
    const struct key *keys;
    size_t n_keys;
    const char *tunables; /* "timeouts", "limits": keys come from moat_cfg_tunable_by_key() */
};

__attribute__((format(printf, 4, 5))) static void fail(struct walk *w,
                                                       const struct moat_yaml_node *at,
                                                       const char *path, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    moat_cfg_diag_add(w->diag, at->line, at->column, path, "%s", reason);
}

static void out_of_memory(struct walk *w, const struct moat_yaml_node *at, const char *path)
{
    fail(w, at, path, "out of memory");
}

/* YAML 1.1's null: an empty plain value ("key:"), "~" or "null". */
static int is_null(const struct moat_yaml_node *n)
{
    return n->kind == MOAT_YAML_SCALAR && n->is_plain && !n->is_expanded &&
           (n->len == 0 || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
            strcmp(n->text, "Null") == 0 || strcmp(n->text, "NULL") == 0);
}

static const char *kind_name(const struct moat_yaml_node *n)
{
    if (is_null(n))
        return "nothing";
    return n->kind == MOAT_YAML_MAP ? "a mapping" : n->kind == MOAT_YAML_SEQ ? "a list" : "a value";
}

static void join_key(char *out, const char *path, const char *key)
{
    snprintf(out, PATH_LEN, "%s%s%s", path, path[0] != '\0' ? "." : "", key);
}

static void join_index(char *out, const char *path, size_t i)
{
    snprintf(out, PATH_LEN, "%s[%zu]", path, i);
}

/* A scalar's text with its ${VAR}s replaced, or NULL after saying why it has none. what names
 * the value expected ("a file name"). The text stays owned by the node. */
static const char *scalar(struct walk *w, struct moat_yaml_node *n, const char *path,
                          const char *what)
{
    if (n->kind != MOAT_YAML_SCALAR || is_null(n)) {
        fail(w, n, path, "expected %s, got %s", what, kind_name(n));
        return NULL;
    }
    if (n->is_expanded)
        return n->text;
    if (strlen(n->text) != n->len) {
        fail(w, n, path, "expected %s, got a value holding a NUL character", what);
        return NULL;
    }
    char *expanded;
    char why[512];
    if (moat_cfg_env_expand(n->text, &expanded, why, sizeof(why)) != 0) {
        fail(w, n, path, "%s", why);
        return NULL;
    }
    free(n->text);
    n->text = expanded;
    n->len = strlen(expanded);
    n->is_expanded = 1;
    return n->text;
}

/* A non-empty scalar, or NULL after saying why. */
static const char *word(struct walk *w, struct moat_yaml_node *n, const char *path,
                        const char *what)
{
    const char *text = scalar(w, n, path, what);
    if (text != NULL && text[0] == '\0') {
        fail(w, n, path, "expected %s, got an empty value", what);
        return NULL;
    }
    return text;
}

/* Replaces *field with a copy of a non-empty scalar. */
static void set_string(struct walk *w, struct moat_yaml_node *v, const char *path,
                       const char *what, char **field)
{
    const char *text = word(w, v, path, what);
    if (text == NULL)
        return;
    char *copy = strdup(text);
    if (copy == NULL) {
        out_of_memory(w, v, path);
        return;
    }
    free(*field);
    *field = copy;
}

/* Returns 0, or -1 after saying why v is not an address. */
static int set_hostport(struct walk *w, struct moat_yaml_node *v, const char *path,
                        int allow_port_zero, struct moat_cfg_hostport *out)
{
    const char *text = word(w, v, path, "a HOST:PORT address");
    char why[512];
    if (text == NULL)
        return -1;
    if (moat_cfg_hostport_parse(text, allow_port_zero, out, why, sizeof(why)) != 0) {
        fail(w, v, path, "%s", why);
        return -1;
    }
    return 0;
}

static void set_tunable(struct walk *w, const struct moat_cfg_tunable *t,
                        struct moat_yaml_node *v, const char *path)
{
    static const char *const what[] = {
        [MOAT_CFG_TUNE_DURATION] = "a duration (e.g. 500ms, 10s, 5m)",
        [MOAT_CFG_TUNE_SIZE] = "a size (e.g. 16k, 1m)",
        [MOAT_CFG_TUNE_COUNT] = "a number",
    };
    const char *text = scalar(w, v, path, what[t->kind]);
    char why[512];
    if (text != NULL && moat_cfg_tunable_set(w->cfg, t, text, why, sizeof(why)) != 0)
        fail(w, v, path, "%s", why);
}

/* The value under key in mapping m, or NULL (also when m is not a mapping). */
static struct moat_yaml_node *lookup(const struct moat_yaml_node *m, const char *key)
{
    for (size_t i = 0; m->kind == MOAT_YAML_MAP && i + 1 < m->n_kids; i += 2)
        if (m->kids[i]->kind == MOAT_YAML_SCALAR && strcmp(m->kids[i]->text, key) == 0)
            return m->kids[i + 1];
    return NULL;
}

/* Reports a key that mapping m (at path) must hold and does not. */
static void require(struct walk *w, const struct moat_yaml_node *m, const char *path,
                    const char *key, const char *example)
{
    if (m->kind != MOAT_YAML_MAP && !is_null(m))
        return; /* already reported as the wrong kind */
    if (lookup(m, key) != NULL)
        return;
    char kpath[PATH_LEN];
    join_key(kpath, path, key);
    fail(w, m, kpath, "required (e.g. %s)", example);
}

/* "a, b or c": the keys a section accepts, for "unknown key" messages. */
static void list_keys(const struct section *s, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    const struct moat_cfg_tunable *t = NULL;
    for (size_t i = 0;; i++) {
        const char *name;
        if (s->tunables != NULL) {
            t = moat_cfg_tunable_next(s->tunables, t);
            name = t != NULL ? t->key : NULL;
        } else {
            name = i < s->n_keys ? s->keys[i].name : NULL;
        }
        if (name == NULL || used >= len)
            return;
        snprintf(out + used, len - used, "%s%s", i > 0 ? ", " : "", name);
        used += strlen(out + used);
    }
}

/* Has the key at kids[i] of m been given before it? Reports the repeat. */
static int is_repeated(struct walk *w, const struct moat_yaml_node *m, size_t i, const char *path)
{
    const struct moat_yaml_node *key = m->kids[i];
    for (size_t j = 0; j < i; j += 2) {
        if (m->kids[j]->kind == MOAT_YAML_SCALAR && strcmp(m->kids[j]->text, key->text) == 0) {
            fail(w, key, path, "given twice (first at line %u)", m->kids[j]->line);
            return 1;
        }
    }
    return 0;
}

/* Applies each key of mapping m as section s says; an empty value ("key:") is an empty mapping. */
static void walk_map(struct walk *w, struct moat_yaml_node *m, const char *path,
                     const struct section *s, void *target)
{
    const char *where = path[0] != '\0' ? path : "(top level)";
    if (is_null(m))
        return;
    if (m->kind != MOAT_YAML_MAP) {
        fail(w, m, where, "expected a mapping, got %s", kind_name(m));
        return;
    }
    for (size_t i = 0; i + 1 < m->n_kids; i += 2) {
        struct moat_yaml_node *key = m->kids[i], *value = m->kids[i + 1];
        if (key->kind != MOAT_YAML_SCALAR) {
            fail(w, key, where, "expected a key, got %s", kind_name(key));
            continue;
        }
        char kpath[PATH_LEN];
        join_key(kpath, path, key->text);
        if (is_repeated(w, m, i, kpath))
            continue;
        if (s->tunables != NULL) {
            const struct moat_cfg_tunable *t = moat_cfg_tunable_by_key(s->tunables, key->text);
            if (t != NULL) {
                set_tunable(w, t, value, kpath);
                continue;
            }
        }
        const struct key *k = NULL;
        for (size_t j = 0; j < s->n_keys && k == NULL; j++)
            if (strcmp(s->keys[j].name, key->text) == 0)
                k = &s->keys[j];
        if (k != NULL) {
            k->apply(w, value, kpath, target);
            continue;
        }
        char names[512];
        list_keys(s, names, sizeof(names));
        fail(w, key, kpath, "unknown key (expected one of: %s)", names);
    }
}

/* The items of a list: NULL with *n 0 for an empty value, NULL after a report for another kind. */
static struct moat_yaml_node **items(struct walk *w, struct moat_yaml_node *v, const char *path,
                                     const char *what, size_t *n)
{
    *n = 0;
    if (is_null(v))
        return NULL;
    if (v->kind != MOAT_YAML_SEQ) {
        fail(w, v, path, "expected a list of %s, got %s", what, kind_name(v));
        return NULL;
    }
    *n = v->n_kids;
    return v->kids;
}

/* The items of a list and a zeroed array of as many elem_size elements for them (owned by the
 * caller), or NULL with *n 0: an empty list, or one reported as the wrong kind or as too big
 * for memory. */
static void *items_array(struct walk *w, struct moat_yaml_node *v, const char *path,
                         const char *what, size_t elem_size, struct moat_yaml_node ***item,
                         size_t *n)
{
    *item = items(w, v, path, what, n);
    if (*n == 0)
        return NULL;
    void *array = calloc(*n, elem_size);
    if (array == NULL) {
        out_of_memory(w, v, path);
        *n = 0;
    }
    return array;
}

/* ---- top-level scalars ---------------------------------------------------------------------- */

static void apply_workers(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    (void)target;
    set_tunable(w, moat_cfg_tunable_by_key(NULL, "workers"), v, path);
}

static void apply_state_dir(struct walk *w, struct moat_yaml_node *v, const char *path,
                            void *target)
{
    (void)target;
    set_string(w, v, path, "a directory", &w->cfg->state_dir);
}

static void apply_user(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    (void)target;
    set_string(w, v, path, "a user name", &w->cfg->user);
}

static void apply_group(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    (void)target;
    set_string(w, v, path, "a group name", &w->cfg->group);
}

static void apply_trusted_proxies(struct walk *w, struct moat_yaml_node *v, const char *path,
                                  void *target)
{
    (void)target;
    struct moat_cfg *cfg = w->cfg;
    struct moat_yaml_node **item;
    size_t n;
    cfg->trusted_proxies = items_array(w, v, path, "address ranges",
                                       sizeof(*cfg->trusted_proxies), &item, &n);
    for (size_t i = 0; i < n; i++) {
        char ipath[PATH_LEN];
        join_index(ipath, path, i);
        const char *text = word(w, item[i], ipath, "an address range (e.g. 10.0.0.0/8)");
        char why[512];
        if (text == NULL)
            continue;
        if (moat_cfg_cidr_parse(text, &cfg->trusted_proxies[cfg->n_trusted_proxies], why,
                                sizeof(why)) != 0)
            fail(w, item[i], ipath, "%s", why);
        else
            cfg->n_trusted_proxies++;
    }
}

/* ---- listeners ------------------------------------------------------------------------------ */

static void apply_listen(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    struct moat_cfg_listener *li = target;
    struct moat_cfg_hostport hp;
    if (set_hostport(w, v, path, 1, &hp) != 0)
        return;
    for (struct moat_cfg_listener *other = w->cfg->listeners; other < li; other++) {
        if (moat_cfg_listen_clashes(&other->addr, &hp)) {
            fail(w, v, path, "'%s' is given twice (also listeners[%zu])", v->text,
                 (size_t)(other - w->cfg->listeners));
            return;
        }
    }
    li->addr = hp;
}

static void apply_min_version(struct walk *w, struct moat_yaml_node *v, const char *path,
                              void *target)
{
    struct moat_cfg_listener *li = target;
    const char *text = word(w, v, path, "a TLS version");
    if (text == NULL)
        return;
    if (strcmp(text, "1.2") == 0)
        li->tls_min = 12;
    else if (strcmp(text, "1.3") == 0)
        li->tls_min = 13;
    else
        fail(w, v, path, "expected \"1.2\" or \"1.3\", got '%s'", text);
}

static void apply_cert(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    struct moat_cfg_cert *c = target;
    set_string(w, v, path, "a PEM certificate file", &c->cert_file);
}

static void apply_key(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    struct moat_cfg_cert *c = target;
    set_string(w, v, path, "a PEM private key file", &c->key_file);
}

static const struct key cert_keys[] = {{"cert", apply_cert}, {"key", apply_key}};
static const struct section cert_section = {cert_keys, 2, NULL};

static void apply_certificates(struct walk *w, struct moat_yaml_node *v, const char *path,
                               void *target)
{
    struct moat_cfg_listener *li = target;
    size_t n;
    struct moat_yaml_node **item = items(w, v, path, "cert/key pairs", &n);
    for (size_t i = 0; i < n; i++) {
        char ipath[PATH_LEN];
        join_index(ipath, path, i);
        if (i >= MOAT_CFG_MAX_CERTS) {
            fail(w, item[i], ipath, "at most %d certificate/key pairs (one ECDSA and one RSA)",
                 MOAT_CFG_MAX_CERTS);
            return;
        }
        struct moat_cfg_cert *c = &li->certs[li->n_certs++];
        walk_map(w, item[i], ipath, &cert_section, c);
        require(w, item[i], ipath, "cert", "cert: /etc/moat/site.pem");
        require(w, item[i], ipath, "key", "key: /etc/moat/site.key");
    }
}

static const struct key tls_keys[] = {{"min_version", apply_min_version},
                                      {"certificates", apply_certificates}};
static const struct section tls_section = {tls_keys, 2, NULL};

static void apply_tls(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    walk_map(w, v, path, &tls_section, target);
}

static const struct key listener_keys[] = {{"listen", apply_listen}, {"tls", apply_tls}};
static const struct section listener_section = {listener_keys, 2, NULL};

static void apply_listeners(struct walk *w, struct moat_yaml_node *v, const char *path,
                            void *target)
{
    (void)target;
    struct moat_cfg *cfg = w->cfg;
    struct moat_yaml_node **item;
    size_t n; /* 0: the default listener, added at the end */
    cfg->listeners = items_array(w, v, path, "listeners", sizeof(*cfg->listeners), &item, &n);
    for (size_t i = 0; i < n; i++) {
        char ipath[PATH_LEN];
        join_index(ipath, path, i);
        struct moat_cfg_listener *li = &cfg->listeners[cfg->n_listeners++];
        li->tls_min = 12;
        walk_map(w, item[i], ipath, &listener_section, li);
        require(w, item[i], ipath, "listen", "listen: 0.0.0.0:8443");
    }
}

/* ---- pools and routes ----------------------------------------------------------------------- */

static void apply_backend_address(struct walk *w, struct moat_yaml_node *v, const char *path,
                                  void *target)
{
    struct moat_cfg_backend *b = target;
    set_hostport(w, v, path, 0, &b->addr);
}

static void apply_backend_weight(struct walk *w, struct moat_yaml_node *v, const char *path,
                                 void *target)
{
    struct moat_cfg_backend *b = target;
    const char *text = word(w, v, path, "a weight (0 to 256)");
    char why[512];
    if (text != NULL && moat_cfg_weight_parse(text, &b->weight, why, sizeof(why)) != 0)
        fail(w, v, path, "%s", why);
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
        set_hostport(w, v, path, 0, &b->addr);
        return;
    }
    walk_map(w, v, path, &backend_section, b);
    require(w, v, path, "address", "address: 127.0.0.1:8080");
}

static void apply_backends(struct walk *w, struct moat_yaml_node *v, const char *path,
                           void *target)
{
    struct moat_cfg_pool *pool = target;
    struct moat_yaml_node **item;
    size_t n;
    pool->backends = items_array(w, v, path, "backends", sizeof(*pool->backends), &item, &n);
    if (n == 0 && (is_null(v) || (v->kind == MOAT_YAML_SEQ && v->n_kids == 0)))
        fail(w, v, path, "at least one backend is required (e.g. [127.0.0.1:8080])");
    for (size_t i = 0; i < n; i++) {
        char ipath[PATH_LEN];
        join_index(ipath, path, i);
        set_backend(w, item[i], ipath, &pool->backends[pool->n_backends++]);
    }
}

static void apply_balance(struct walk *w, struct moat_yaml_node *v, const char *path,
                          void *target)
{
    struct moat_cfg_pool *pool = target;
    const char *text = word(w, v, path, "a balance algorithm");
    char why[512];
    if (text != NULL && moat_cfg_balance_parse(text, &pool->balance, why, sizeof(why)) != 0)
        fail(w, v, path, "%s", why);
}

static void apply_hash_key(struct walk *w, struct moat_yaml_node *v, const char *path,
                           void *target)
{
    struct moat_cfg_pool *pool = target;
    const char *text = word(w, v, path, "a hash key");
    char why[512];
    if (text == NULL)
        return;
    int rc = moat_cfg_hash_key_parse(text, pool, why, sizeof(why));
    if (rc == -2)
        out_of_memory(w, v, path);
    else if (rc != 0)
        fail(w, v, path, "%s", why);
}

static void apply_sticky_cookie(struct walk *w, struct moat_yaml_node *v, const char *path,
                                void *target)
{
    struct moat_cfg_pool *pool = target;
    const char *text = word(w, v, path, "a cookie name");
    char why[512];
    if (text == NULL)
        return;
    if (moat_cfg_cookie_name_check(text, why, sizeof(why)) != 0) {
        fail(w, v, path, "%s", why);
        return;
    }
    set_string(w, v, path, "a cookie name", &pool->sticky_cookie);
}

static void apply_same_site(struct walk *w, struct moat_yaml_node *v, const char *path,
                            void *target)
{
    struct moat_cfg_pool *pool = target;
    const char *text = word(w, v, path, "none, lax or strict");
    if (text == NULL)
        return;
    if (strcmp(text, "none") == 0)
        pool->sticky_same_site = MOAT_CFG_SAME_SITE_NONE;
    else if (strcmp(text, "lax") == 0)
        pool->sticky_same_site = MOAT_CFG_SAME_SITE_LAX;
    else if (strcmp(text, "strict") == 0)
        pool->sticky_same_site = MOAT_CFG_SAME_SITE_STRICT;
    else
        fail(w, v, path, "expected none, lax or strict, got '%s'", text);
}

static const struct key sticky_keys[] = {{"cookie", apply_sticky_cookie},
                                         {"same_site", apply_same_site}};
static const struct section sticky_section = {sticky_keys, 2, NULL};

static void apply_sticky(struct walk *w, struct moat_yaml_node *v, const char *path,
                         void *target)
{
    walk_map(w, v, path, &sticky_section, target);
    require(w, v, path, "cookie", "cookie: moat_backend");
}

static void apply_passive_errors(struct walk *w, struct moat_yaml_node *v, const char *path,
                                 void *target)
{
    struct moat_cfg_pool *pool = target;
    const char *text = word(w, v, path, "a number");
    char *end = NULL;
    unsigned long n = text != NULL ? strtoul(text, &end, 10) : 0;
    if (text == NULL)
        return;
    if (end == text || *end != '\0' || text[0] == '-' || n > 1000) {
        fail(w, v, path, "expected a number from 0 (off) to 1000, got '%s'", text);
        return;
    }
    pool->passive_errors = (unsigned)n;
}

static void apply_passive_ejection(struct walk *w, struct moat_yaml_node *v, const char *path,
                                   void *target)
{
    struct moat_cfg_pool *pool = target;
    const char *text = word(w, v, path, "a duration");
    uint64_t ms;
    if (text == NULL)
        return;
    if (moat_cfg_duration_parse(text, &ms) != 0 || ms < 100 || ms > 3600000) {
        fail(w, v, path, "expected a duration from 100ms to 1h (e.g. 10s), got '%s'", text);
        return;
    }
    pool->passive_ejection_ms = ms;
}

static const struct key passive_keys[] = {{"consecutive_errors", apply_passive_errors},
                                          {"ejection", apply_passive_ejection}};
static const struct section passive_section = {passive_keys, 2, NULL};

static void apply_passive(struct walk *w, struct moat_yaml_node *v, const char *path,
                          void *target)
{
    walk_map(w, v, path, &passive_section, target);
}

/* A whole number from lo to hi, or -1 after saying why. */
static long small_number(struct walk *w, struct moat_yaml_node *v, const char *path, long lo,
                         long hi)
{
    const char *text = word(w, v, path, "a number");
    if (text == NULL)
        return -1;
    char *end = NULL;
    long n = strtol(text, &end, 10);
    if (end == text || *end != '\0' || n < lo || n > hi) {
        fail(w, v, path, "expected a number from %ld to %ld, got '%s'", lo, hi, text);
        return -1;
    }
    return n;
}

static void apply_retry_attempts(struct walk *w, struct moat_yaml_node *v, const char *path,
                                 void *target)
{
    long n = small_number(w, v, path, 0, 5);
    if (n >= 0)
        ((struct moat_cfg_pool *)target)->retry_attempts = (unsigned)n;
}

static void apply_retry_budget(struct walk *w, struct moat_yaml_node *v, const char *path,
                               void *target)
{
    long n = small_number(w, v, path, 0, 100);
    if (n >= 0)
        ((struct moat_cfg_pool *)target)->retry_budget_pct = (unsigned)n;
}

static const struct key retries_keys[] = {{"attempts", apply_retry_attempts},
                                          {"budget_percent", apply_retry_budget}};
static const struct section retries_section = {retries_keys, 2, NULL};

static void apply_retries(struct walk *w, struct moat_yaml_node *v, const char *path,
                          void *target)
{
    walk_map(w, v, path, &retries_section, target);
}

static void apply_hc_path(struct walk *w, struct moat_yaml_node *v, const char *path,
                          void *target)
{
    const char *text = word(w, v, path, "a path");
    if (text != NULL && (text[0] != '/' || strpbrk(text, " \t\r\n") != NULL)) {
        fail(w, v, path, "expected a path starting with '/', got '%s'", text);
        return;
    }
    set_string(w, v, path, "a path", &((struct moat_cfg_health *)target)->path);
}

static void apply_hc_host(struct walk *w, struct moat_yaml_node *v, const char *path,
                          void *target)
{
    const char *text = word(w, v, path, "a host name");
    if (text != NULL && strpbrk(text, " \t\r\n/") != NULL) {
        fail(w, v, path, "expected a host name, got '%s'", text);
        return;
    }
    set_string(w, v, path, "a host name", &((struct moat_cfg_health *)target)->host);
}

static void hc_duration(struct walk *w, struct moat_yaml_node *v, const char *path,
                        uint64_t *out)
{
    const char *text = word(w, v, path, "a duration");
    uint64_t ms;
    if (text == NULL)
        return;
    if (moat_cfg_duration_parse(text, &ms) != 0 || ms < 100 || ms > 3600000) {
        fail(w, v, path, "expected a duration from 100ms to 1h (e.g. 5s), got '%s'", text);
        return;
    }
    *out = ms;
}

static void apply_hc_interval(struct walk *w, struct moat_yaml_node *v, const char *path,
                              void *target)
{
    hc_duration(w, v, path, &((struct moat_cfg_health *)target)->interval_ms);
}

static void apply_hc_timeout(struct walk *w, struct moat_yaml_node *v, const char *path,
                             void *target)
{
    hc_duration(w, v, path, &((struct moat_cfg_health *)target)->timeout_ms);
}

static void apply_hc_rise(struct walk *w, struct moat_yaml_node *v, const char *path,
                          void *target)
{
    long n = small_number(w, v, path, 1, 100);
    if (n > 0)
        ((struct moat_cfg_health *)target)->rise = (unsigned)n;
}

static void apply_hc_fall(struct walk *w, struct moat_yaml_node *v, const char *path,
                          void *target)
{
    long n = small_number(w, v, path, 1, 100);
    if (n > 0)
        ((struct moat_cfg_health *)target)->fall = (unsigned)n;
}

/* "200", "200-399". */
static void apply_hc_expect(struct walk *w, struct moat_yaml_node *v, const char *path,
                            void *target)
{
    struct moat_cfg_health *hc = target;
    const char *text = word(w, v, path, "a status or a range (200-399)");
    unsigned lo, hi;
    char extra;
    if (text == NULL)
        return;
    int n = sscanf(text, "%u-%u%c", &lo, &hi, &extra);
    if (n == 1)
        hi = lo;
    if ((n != 1 && n != 2) || lo < 100 || hi > 599 || lo > hi) {
        fail(w, v, path, "expected a status or a range of statuses (e.g. 200-399), got '%s'",
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
    walk_map(w, v, path, &hc_section, &pool->health);
    require(w, v, path, "path", "path: /healthz");
}

static const struct key pool_keys[] = {{"backends", apply_backends},
                                       {"balance", apply_balance},
                                       {"hash_key", apply_hash_key},
                                       {"sticky", apply_sticky},
                                       {"passive", apply_passive},
                                       {"retries", apply_retries},
                                       {"health_check", apply_health_check}};
static const struct section pool_section = {pool_keys, 7, NULL};

static void apply_pools(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    (void)target;
    struct moat_cfg *cfg = w->cfg;
    w->pools = v;
    if (is_null(v))
        return;
    if (v->kind != MOAT_YAML_MAP) {
        fail(w, v, path, "expected a mapping of pool names to pools, got %s", kind_name(v));
        return;
    }
    cfg->pools = calloc(v->n_kids / 2 + 1, sizeof(*cfg->pools));
    if (cfg->pools == NULL) {
        out_of_memory(w, v, path);
        return;
    }
    for (size_t i = 0; i + 1 < v->n_kids; i += 2) {
        struct moat_yaml_node *key = v->kids[i], *value = v->kids[i + 1];
        const char *name = word(w, key, path, "a pool name");
        if (name == NULL)
            continue;
        char ppath[PATH_LEN];
        join_key(ppath, path, name);
        size_t first = 0;
        while (first < cfg->n_pools && strcmp(cfg->pools[first].name, name) != 0)
            first++;
        if (first < cfg->n_pools) {
            fail(w, key, ppath, "pool '%s' is defined twice", name);
            continue;
        }
        struct moat_cfg_pool *pool = &cfg->pools[cfg->n_pools];
        moat_cfg_pool_init(pool);
        pool->name = strdup(name);
        if (pool->name == NULL) {
            out_of_memory(w, key, ppath);
            continue;
        }
        cfg->n_pools++;
        walk_map(w, value, ppath, &pool_section, pool);
        require(w, value, ppath, "backends", "backends: [127.0.0.1:8080]");
        struct moat_yaml_node *hash_key = lookup(value, "hash_key");
        if (hash_key != NULL && pool->balance != MOAT_CFG_BALANCE_HASH) {
            char kpath[PATH_LEN + 16];
            snprintf(kpath, sizeof(kpath), "%s.hash_key", ppath);
            fail(w, hash_key, kpath, "only with balance: hash");
        }
    }
}

/* The pool a name refers to, or -1 after saying which pools there are. */
static long pool_by_name(struct walk *w, struct moat_yaml_node *v, const char *path)
{
    const struct moat_cfg *cfg = w->cfg;
    const char *name = word(w, v, path, "a pool name");
    if (name == NULL)
        return -1;
    for (size_t i = 0; i < cfg->n_pools; i++)
        if (strcmp(cfg->pools[i].name, name) == 0)
            return (long)i;
    char names[256] = "";
    for (size_t i = 0, used = 0; i < cfg->n_pools && used < sizeof(names); i++) {
        snprintf(names + used, sizeof(names) - used, "%s%s", i > 0 ? ", " : "",
                 cfg->pools[i].name);
        used += strlen(names + used);
    }
    if (cfg->n_pools > 0)
        fail(w, v, path, "no pool named '%s' (pools: %s)", name, names);
    else
        fail(w, v, path, "no pool named '%s' (no pools are defined)", name);
    return -1;
}

/* A route's host: a name or "*.name" (no port), or a bracketed IPv6 literal; lower-cased. */
static int is_route_host(char *host)
{
    char *p = host;
    if (host[0] == '[') {
        size_t len = strlen(host);
        if (len < 3 || host[len - 1] != ']')
            return 0;
        for (p = host + 1; p < host + len - 1; p++)
            if (strchr("0123456789abcdefABCDEF:.", *p) == NULL)
                return 0;
    } else {
        if (p[0] == '*' && p[1] == '.' && p[2] != '\0')
            p += 2;
        if (*p == '\0')
            return 0;
        for (; *p != '\0'; p++)
            if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._", *p) ==
                NULL)
                return 0;
    }
    for (p = host; *p != '\0'; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return 1;
}

static void apply_route_host(struct walk *w, struct moat_yaml_node *v, const char *path,
                             void *target)
{
    struct moat_cfg_route *r = target;
    set_string(w, v, path, "a host name", &r->host);
    if (r->host != NULL && !is_route_host(r->host)) {
        fail(w, v, path,
             "expected a host name without a port (e.g. api.example.com, *.example.com), "
             "got '%s'",
             r->host);
    }
}

static void apply_route_path(struct walk *w, struct moat_yaml_node *v, const char *path,
                             void *target)
{
    struct moat_cfg_route *r = target;
    set_string(w, v, path, "a path prefix", &r->path_prefix);
    if (r->path_prefix != NULL && r->path_prefix[0] != '/')
        fail(w, v, path, "expected a path prefix starting with '/', got '%s'", r->path_prefix);
}

static void apply_route_pool(struct walk *w, struct moat_yaml_node *v, const char *path,
                             void *target)
{
    struct moat_cfg_route *r = target;
    long pool = pool_by_name(w, v, path);
    if (pool >= 0)
        r->pool = (size_t)pool;
}

static const struct key route_keys[] = {
    {"host", apply_route_host}, {"path", apply_route_path}, {"pool", apply_route_pool}};
static const struct section route_section = {route_keys, 3, NULL};

static void apply_routes(struct walk *w, struct moat_yaml_node *v, const char *path)
{
    struct moat_cfg *cfg = w->cfg;
    struct moat_yaml_node **item;
    size_t n;
    cfg->routes = items_array(w, v, path, "routes", sizeof(*cfg->routes), &item, &n);
    for (size_t i = 0; i < n; i++) {
        char ipath[PATH_LEN];
        join_index(ipath, path, i);
        struct moat_cfg_route *r = &cfg->routes[cfg->n_routes++];
        walk_map(w, item[i], ipath, &route_section, r);
        require(w, item[i], ipath, "pool", "pool: web");
        if (r->path_prefix == NULL && (r->path_prefix = strdup("/")) == NULL)
            out_of_memory(w, item[i], ipath);
    }
}

/* Kept for after the walk: routes and default_pool name pools defined anywhere in the file. */
static void defer_routes(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    (void)path;
    (void)target;
    w->routes = v;
}

static void defer_default_pool(struct walk *w, struct moat_yaml_node *v, const char *path,
                               void *target)
{
    (void)path;
    (void)target;
    w->default_pool = v;
}

/* ---- logging and admin ---------------------------------------------------------------------- */

static void apply_level(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    (void)target;
    const char *text = word(w, v, path, "a log level");
    int level = text != NULL ? moat_cfg_log_level_parse(text) : 0;
    if (level < 0)
        fail(w, v, path, "expected error, warn, info or debug, got '%s'", text);
    else if (text != NULL)
        w->cfg->log_level = level;
}

static void apply_access_log(struct walk *w, struct moat_yaml_node *v, const char *path,
                             void *target)
{
    (void)target;
    /* YAML 1.1's booleans, which is what a reader of the file expects "on" and "no" to be. */
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    const char *text = word(w, v, path, "true or false");
    for (size_t i = 0; text != NULL && i < 3; i++) {
        if (strcasecmp(text, yes[i]) == 0 || strcasecmp(text, no[i]) == 0) {
            w->cfg->access_log = strcasecmp(text, yes[i]) == 0;
            return;
        }
    }
    if (text != NULL)
        fail(w, v, path, "expected true or false, got '%s'", text);
}

static void apply_access_format(struct walk *w, struct moat_yaml_node *v, const char *path,
                                void *target)
{
    (void)target;
    const char *text = word(w, v, path, "an access-log format");
    int format = text != NULL ? moat_cfg_access_format_parse(text) : 0;
    if (format < 0)
        fail(w, v, path, "expected moat, combined or json, got '%s'", text);
    else if (text != NULL)
        w->cfg->access_format = (enum moat_cfg_access_format)format;
}

static void apply_access_target(struct walk *w, struct moat_yaml_node *v, const char *path,
                                void *target)
{
    (void)target;
    set_string(w, v, path, "stdout, stderr or a file", &w->cfg->access_log_file);
}

static const struct key logging_keys[] = {{"level", apply_level},
                                          {"access_log", apply_access_log},
                                          {"access_log_format", apply_access_format},
                                          {"access_log_target", apply_access_target}};
static const struct section logging_section = {logging_keys, 4, NULL};

static void apply_logging(struct walk *w, struct moat_yaml_node *v, const char *path,
                          void *target)
{
    walk_map(w, v, path, &logging_section, target);
}

static void apply_admin_listen(struct walk *w, struct moat_yaml_node *v, const char *path,
                               void *target)
{
    (void)target;
    set_hostport(w, v, path, 1, &w->cfg->admin);
}

static const struct key admin_keys[] = {{"listen", apply_admin_listen}};
static const struct section admin_section = {admin_keys, 1, NULL};

static void apply_admin(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    w->cfg->has_admin = 1; /* "admin:" alone turns it on at the default address */
    walk_map(w, v, path, &admin_section, target);
}

/* ---- timeouts and limits: keys and ranges from settings.c --------------------------------- */

static const struct section timeouts_section = {NULL, 0, "timeouts"};
static const struct section limits_section = {NULL, 0, "limits"};

static void apply_timeouts(struct walk *w, struct moat_yaml_node *v, const char *path,
                           void *target)
{
    walk_map(w, v, path, &timeouts_section, target);
}

static void apply_limits(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    walk_map(w, v, path, &limits_section, target);
}

/* ---- the document --------------------------------------------------------------------------- */

static const struct key top_keys[] = {
    {"workers", apply_workers},
    {"state_dir", apply_state_dir},
    {"user", apply_user},
    {"group", apply_group},
    {"listeners", apply_listeners},
    {"pools", apply_pools},
    {"routes", defer_routes},
    {"default_pool", defer_default_pool},
    {"trusted_proxies", apply_trusted_proxies},
    {"timeouts", apply_timeouts},
    {"limits", apply_limits},
    {"logging", apply_logging},
    {"admin", apply_admin},
};
static const struct section top_section = {top_keys, sizeof(top_keys) / sizeof(top_keys[0]),
                                           NULL};

/* A route with neither host nor narrower path takes every request it is reached with. */
static long catch_all_route(const struct moat_cfg *cfg)
{
    for (size_t i = 0; i < cfg->n_routes; i++)
        if (cfg->routes[i].host == NULL && strcmp(cfg->routes[i].path_prefix, "/") == 0)
            return (long)i;
    return -1;
}

/* default_pool, or the only pool, or the pool of a catch-all route. */
static void pick_default_pool(struct walk *w, const struct moat_yaml_node *at)
{
    struct moat_cfg *cfg = w->cfg;
    if (w->default_pool != NULL) {
        long pool = pool_by_name(w, w->default_pool, "default_pool");
        cfg->default_pool = pool >= 0 ? (size_t)pool : 0;
        return;
    }
    long route = catch_all_route(cfg);
    if (cfg->n_pools > 1 && route < 0)
        fail(w, at, "default_pool",
             "required with several pools (it serves requests no route matches)");
    cfg->default_pool = route >= 0 ? cfg->routes[route].pool : 0;
}

/* Without listeners the file means what the flags do: 0.0.0.0:8443 with the development
 * certificate. */
static void add_default_listener(struct walk *w, const struct moat_yaml_node *at)
{
    struct moat_cfg *cfg = w->cfg;
    char why[256];
    cfg->listeners = calloc(1, sizeof(*cfg->listeners));
    if (cfg->listeners == NULL) {
        out_of_memory(w, at, "listeners");
        return;
    }
    cfg->n_listeners = 1;
    cfg->listeners[0].tls_min = 12;
    moat_cfg_hostport_parse("0.0.0.0:8443", 1, &cfg->listeners[0].addr, why, sizeof(why));
}

void moat_cfg_yaml_apply(struct moat_yaml_node *root, struct moat_cfg *cfg,
                         struct moat_cfg_diag *d)
{
    struct walk w = {.cfg = cfg, .diag = d};
    static const struct moat_yaml_node start = {.kind = MOAT_YAML_MAP, .line = 1, .column = 1};
    const struct moat_yaml_node *top = root != NULL ? root : &start;
    if (root != NULL)
        walk_map(&w, root, "", &top_section, cfg);
    if (w.routes != NULL)
        apply_routes(&w, w.routes, "routes");
    if (cfg->n_pools == 0) {
        if (w.pools == NULL || w.pools->kind != MOAT_YAML_MAP || w.pools->n_kids == 0)
            fail(&w, w.pools != NULL ? w.pools : top, "pools",
                 "at least one pool is required (e.g. pools: {web: {backends: "
                 "[127.0.0.1:8080]}})");
    } else {
        pick_default_pool(&w, w.pools);
    }
    if (cfg->n_listeners == 0)
        add_default_listener(&w, top);
}
