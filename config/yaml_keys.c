/* config/yaml_keys.c: the configuration file's schema. Walks the node tree key by key, sets the
 * model's fields and records every mistake with its position and dotted key path; never stops
 * at the first one. Ranges and messages for numbers come from settings.c, shared with the
 * flags. */
#include "config/yaml_keys.h"
#include "config/yaml_walk.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/env.h"
#include "config/model.h"

void yw_fail(struct walk *w, const struct moat_yaml_node *at, const char *path, const char *fmt,
             ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    moat_cfg_diag_add(w->diag, at->line, at->column, path, "%s", reason);
}

void yw_out_of_memory(struct walk *w, const struct moat_yaml_node *at, const char *path)
{
    yw_fail(w, at, path, "out of memory");
}

/* YAML 1.1's null: an empty plain value ("key:"), "~" or "null". */
int yw_is_null(const struct moat_yaml_node *n)
{
    return n->kind == MOAT_YAML_SCALAR && n->is_plain && !n->is_expanded &&
           (n->len == 0 || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
            strcmp(n->text, "Null") == 0 || strcmp(n->text, "NULL") == 0);
}

const char *yw_kind_name(const struct moat_yaml_node *n)
{
    if (yw_is_null(n))
        return "nothing";
    return n->kind == MOAT_YAML_MAP ? "a mapping" : n->kind == MOAT_YAML_SEQ ? "a list" : "a value";
}

void yw_join_key(char *out, const char *path, const char *key)
{
    snprintf(out, PATH_LEN, "%s%s%s", path, path[0] != '\0' ? "." : "", key);
}

void yw_join_index(char *out, const char *path, size_t i)
{
    snprintf(out, PATH_LEN, "%s[%zu]", path, i);
}

/* A scalar's text with its ${VAR}s replaced, or NULL after saying why it has none. what names
 * the value expected ("a file name"). The text stays owned by the node. */
const char *yw_scalar(struct walk *w, struct moat_yaml_node *n, const char *path, const char *what)
{
    if (n->kind != MOAT_YAML_SCALAR || yw_is_null(n)) {
        yw_fail(w, n, path, "expected %s, got %s", what, yw_kind_name(n));
        return NULL;
    }
    if (n->is_expanded)
        return n->text;
    if (strlen(n->text) != n->len) {
        yw_fail(w, n, path, "expected %s, got a value holding a NUL character", what);
        return NULL;
    }
    char *expanded;
    char why[512];
    if (moat_cfg_env_expand(n->text, &expanded, why, sizeof(why)) != 0) {
        yw_fail(w, n, path, "%s", why);
        return NULL;
    }
    free(n->text);
    n->text = expanded;
    n->len = strlen(expanded);
    n->is_expanded = 1;
    return n->text;
}

/* A non-empty scalar, or NULL after saying why. */
const char *yw_word(struct walk *w, struct moat_yaml_node *n, const char *path, const char *what)
{
    const char *text = yw_scalar(w, n, path, what);
    if (text != NULL && text[0] == '\0') {
        yw_fail(w, n, path, "expected %s, got an empty value", what);
        return NULL;
    }
    return text;
}

/* Replaces *field with a copy of a non-empty scalar. */
void yw_set_string(struct walk *w, struct moat_yaml_node *v, const char *path, const char *what,
                   char **field)
{
    const char *text = yw_word(w, v, path, what);
    if (text == NULL)
        return;
    char *copy = strdup(text);
    if (copy == NULL) {
        yw_out_of_memory(w, v, path);
        return;
    }
    free(*field);
    *field = copy;
}

/* Returns 0, or -1 after saying why v is not an address. */
int yw_set_hostport(struct walk *w, struct moat_yaml_node *v, const char *path, int allow_port_zero,
                    struct moat_cfg_hostport *out)
{
    const char *text = yw_word(w, v, path, "a HOST:PORT address");
    char why[512];
    if (text == NULL)
        return -1;
    if (moat_cfg_hostport_parse(text, allow_port_zero, out, why, sizeof(why)) != 0) {
        yw_fail(w, v, path, "%s", why);
        return -1;
    }
    return 0;
}

static void set_tunable(struct walk *w, const struct moat_cfg_tunable *t, struct moat_yaml_node *v,
                        const char *path)
{
    static const char *const what[] = {
        [MOAT_CFG_TUNE_DURATION] = "a duration (e.g. 500ms, 10s, 5m)",
        [MOAT_CFG_TUNE_SIZE] = "a size (e.g. 16k, 1m)",
        [MOAT_CFG_TUNE_COUNT] = "a number",
    };
    const char *text = yw_scalar(w, v, path, what[t->kind]);
    char why[512];
    if (text != NULL && moat_cfg_tunable_set(w->cfg, t, text, why, sizeof(why)) != 0)
        yw_fail(w, v, path, "%s", why);
}

/* The value under key in mapping m, or NULL (also when m is not a mapping). */
struct moat_yaml_node *yw_lookup(const struct moat_yaml_node *m, const char *key)
{
    for (size_t i = 0; m->kind == MOAT_YAML_MAP && i + 1 < m->n_kids; i += 2)
        if (m->kids[i]->kind == MOAT_YAML_SCALAR && strcmp(m->kids[i]->text, key) == 0)
            return m->kids[i + 1];
    return NULL;
}

/* Reports a key that mapping m (at path) must hold and does not. */
void yw_require(struct walk *w, const struct moat_yaml_node *m, const char *path, const char *key,
                const char *example)
{
    if (m->kind != MOAT_YAML_MAP && !yw_is_null(m))
        return; /* already reported as the wrong kind */
    if (yw_lookup(m, key) != NULL)
        return;
    char kpath[PATH_LEN];
    yw_join_key(kpath, path, key);
    yw_fail(w, m, kpath, "required (e.g. %s)", example);
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
            yw_fail(w, key, path, "given twice (first at line %u)", m->kids[j]->line);
            return 1;
        }
    }
    return 0;
}

/* Applies each key of mapping m as section s says; an empty value ("key:") is an empty mapping. */
void yw_walk_map(struct walk *w, struct moat_yaml_node *m, const char *path,
                 const struct section *s, void *target)
{
    const char *where = path[0] != '\0' ? path : "(top level)";
    if (yw_is_null(m))
        return;
    if (m->kind != MOAT_YAML_MAP) {
        yw_fail(w, m, where, "expected a mapping, got %s", yw_kind_name(m));
        return;
    }
    for (size_t i = 0; i + 1 < m->n_kids; i += 2) {
        struct moat_yaml_node *key = m->kids[i], *value = m->kids[i + 1];
        if (key->kind != MOAT_YAML_SCALAR) {
            yw_fail(w, key, where, "expected a key, got %s", yw_kind_name(key));
            continue;
        }
        char kpath[PATH_LEN];
        yw_join_key(kpath, path, key->text);
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
        yw_fail(w, key, kpath, "unknown key (expected one of: %s)", names);
    }
}

/* The items of a list: NULL with *n 0 for an empty value, NULL after a report for another kind. */
struct moat_yaml_node **yw_items(struct walk *w, struct moat_yaml_node *v, const char *path,
                                 const char *what, size_t *n)
{
    *n = 0;
    if (yw_is_null(v))
        return NULL;
    if (v->kind != MOAT_YAML_SEQ) {
        yw_fail(w, v, path, "expected a list of %s, got %s", what, yw_kind_name(v));
        return NULL;
    }
    *n = v->n_kids;
    return v->kids;
}

/* The items of a list and a zeroed array of as many elem_size elements for them (owned by the
 * caller), or NULL with *n 0: an empty list, or one reported as the wrong kind or as too big
 * for memory. */
void *yw_items_array(struct walk *w, struct moat_yaml_node *v, const char *path, const char *what,
                     size_t elem_size, struct moat_yaml_node ***item, size_t *n)
{
    *item = yw_items(w, v, path, what, n);
    if (*n == 0)
        return NULL;
    void *array = calloc(*n, elem_size);
    if (array == NULL) {
        yw_out_of_memory(w, v, path);
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
    yw_set_string(w, v, path, "a directory", &w->cfg->state_dir);
}

static void apply_user(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    (void)target;
    yw_set_string(w, v, path, "a user name", &w->cfg->user);
}

static void apply_group(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    (void)target;
    yw_set_string(w, v, path, "a group name", &w->cfg->group);
}

static void apply_trusted_proxies(struct walk *w, struct moat_yaml_node *v, const char *path,
                                  void *target)
{
    (void)target;
    struct moat_cfg *cfg = w->cfg;
    struct moat_yaml_node **item;
    size_t n;
    cfg->trusted_proxies = yw_items_array(w, v, path, "address ranges",
                                       sizeof(*cfg->trusted_proxies), &item, &n);
    for (size_t i = 0; i < n; i++) {
        char ipath[PATH_LEN];
        yw_join_index(ipath, path, i);
        const char *text = yw_word(w, item[i], ipath, "an address range (e.g. 10.0.0.0/8)");
        char why[512];
        if (text == NULL)
            continue;
        if (moat_cfg_cidr_parse(text, &cfg->trusted_proxies[cfg->n_trusted_proxies], why,
                                sizeof(why)) != 0)
            yw_fail(w, item[i], ipath, "%s", why);
        else
            cfg->n_trusted_proxies++;
    }
}

/* ---- listeners ------------------------------------------------------------------------------ */

static void apply_listen(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    struct moat_cfg_listener *li = target;
    struct moat_cfg_hostport hp;
    if (yw_set_hostport(w, v, path, 1, &hp) != 0)
        return;
    for (struct moat_cfg_listener *other = w->cfg->listeners; other < li; other++) {
        if (moat_cfg_listen_clashes(&other->addr, &hp)) {
            yw_fail(w, v, path, "'%s' is given twice (also listeners[%zu])", v->text,
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
    const char *text = yw_word(w, v, path, "a TLS version");
    if (text == NULL)
        return;
    if (strcmp(text, "1.2") == 0)
        li->tls_min = 12;
    else if (strcmp(text, "1.3") == 0)
        li->tls_min = 13;
    else
        yw_fail(w, v, path, "expected \"1.2\" or \"1.3\", got '%s'", text);
}

static void apply_cert(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    struct moat_cfg_cert *c = target;
    yw_set_string(w, v, path, "a PEM certificate file", &c->cert_file);
}

static void apply_key(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    struct moat_cfg_cert *c = target;
    yw_set_string(w, v, path, "a PEM private key file", &c->key_file);
}

static const struct key cert_keys[] = {{"cert", apply_cert}, {"key", apply_key}};
static const struct section cert_section = {cert_keys, 2, NULL};

static void apply_certificates(struct walk *w, struct moat_yaml_node *v, const char *path,
                               void *target)
{
    struct moat_cfg_listener *li = target;
    size_t n;
    struct moat_yaml_node **item = yw_items(w, v, path, "cert/key pairs", &n);
    for (size_t i = 0; i < n; i++) {
        char ipath[PATH_LEN];
        yw_join_index(ipath, path, i);
        if (i >= MOAT_CFG_MAX_CERTS) {
            yw_fail(w, item[i], ipath, "at most %d certificate/key pairs (one ECDSA and one RSA)",
                 MOAT_CFG_MAX_CERTS);
            return;
        }
        struct moat_cfg_cert *c = &li->certs[li->n_certs++];
        yw_walk_map(w, item[i], ipath, &cert_section, c);
        yw_require(w, item[i], ipath, "cert", "cert: /etc/moat/site.pem");
        yw_require(w, item[i], ipath, "key", "key: /etc/moat/site.key");
    }
}

static const struct key tls_keys[] = {{"min_version", apply_min_version},
                                      {"certificates", apply_certificates}};
static const struct section tls_section = {tls_keys, 2, NULL};

static void apply_tls(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    yw_walk_map(w, v, path, &tls_section, target);
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
    cfg->listeners = yw_items_array(w, v, path, "listeners", sizeof(*cfg->listeners), &item, &n);
    for (size_t i = 0; i < n; i++) {
        char ipath[PATH_LEN];
        yw_join_index(ipath, path, i);
        struct moat_cfg_listener *li = &cfg->listeners[cfg->n_listeners++];
        li->tls_min = 12;
        yw_walk_map(w, item[i], ipath, &listener_section, li);
        yw_require(w, item[i], ipath, "listen", "listen: 0.0.0.0:8443");
    }
}

/* ---- routes --------------------------------------------------------------------------------- */

/* The pool a name refers to, or -1 after saying which pools there are. */
static long pool_by_name(struct walk *w, struct moat_yaml_node *v, const char *path)
{
    const struct moat_cfg *cfg = w->cfg;
    const char *name = yw_word(w, v, path, "a pool name");
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
        yw_fail(w, v, path, "no pool named '%s' (pools: %s)", name, names);
    else
        yw_fail(w, v, path, "no pool named '%s' (no pools are defined)", name);
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
    yw_set_string(w, v, path, "a host name", &r->host);
    if (r->host != NULL && !is_route_host(r->host)) {
        yw_fail(w, v, path,
             "expected a host name without a port (e.g. api.example.com, *.example.com), "
             "got '%s'",
             r->host);
    }
}

static void apply_route_path(struct walk *w, struct moat_yaml_node *v, const char *path,
                             void *target)
{
    struct moat_cfg_route *r = target;
    yw_set_string(w, v, path, "a path prefix", &r->path_prefix);
    if (r->path_prefix != NULL && r->path_prefix[0] != '/')
        yw_fail(w, v, path, "expected a path prefix starting with '/', got '%s'", r->path_prefix);
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
    cfg->routes = yw_items_array(w, v, path, "routes", sizeof(*cfg->routes), &item, &n);
    for (size_t i = 0; i < n; i++) {
        char ipath[PATH_LEN];
        yw_join_index(ipath, path, i);
        struct moat_cfg_route *r = &cfg->routes[cfg->n_routes++];
        yw_walk_map(w, item[i], ipath, &route_section, r);
        yw_require(w, item[i], ipath, "pool", "pool: web");
        if (r->path_prefix == NULL && (r->path_prefix = strdup("/")) == NULL)
            yw_out_of_memory(w, item[i], ipath);
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
    const char *text = yw_word(w, v, path, "a log level");
    int level = text != NULL ? moat_cfg_log_level_parse(text) : 0;
    if (level < 0)
        yw_fail(w, v, path, "expected error, warn, info or debug, got '%s'", text);
    else if (text != NULL)
        w->cfg->log_level = level;
}

static void apply_access_log(struct walk *w, struct moat_yaml_node *v, const char *path,
                             void *target)
{
    (void)target;
    /* YAML 1.1's booleans, which is what a reader of the file expects "on" and "no" to be. */
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    const char *text = yw_word(w, v, path, "true or false");
    for (size_t i = 0; text != NULL && i < 3; i++) {
        if (strcasecmp(text, yes[i]) == 0 || strcasecmp(text, no[i]) == 0) {
            w->cfg->access_log = strcasecmp(text, yes[i]) == 0;
            return;
        }
    }
    if (text != NULL)
        yw_fail(w, v, path, "expected true or false, got '%s'", text);
}

static void apply_access_format(struct walk *w, struct moat_yaml_node *v, const char *path,
                                void *target)
{
    (void)target;
    const char *text = yw_word(w, v, path, "an access-log format");
    int format = text != NULL ? moat_cfg_access_format_parse(text) : 0;
    if (format < 0)
        yw_fail(w, v, path, "expected moat, combined or json, got '%s'", text);
    else if (text != NULL)
        w->cfg->access_format = (enum moat_cfg_access_format)format;
}

static void apply_access_target(struct walk *w, struct moat_yaml_node *v, const char *path,
                                void *target)
{
    (void)target;
    yw_set_string(w, v, path, "stdout, stderr or a file", &w->cfg->access_log_file);
}

static const struct key logging_keys[] = {{"level", apply_level},
                                          {"access_log", apply_access_log},
                                          {"access_log_format", apply_access_format},
                                          {"access_log_target", apply_access_target}};
static const struct section logging_section = {logging_keys, 4, NULL};

static void apply_logging(struct walk *w, struct moat_yaml_node *v, const char *path,
                          void *target)
{
    yw_walk_map(w, v, path, &logging_section, target);
}

static void apply_admin_listen(struct walk *w, struct moat_yaml_node *v, const char *path,
                               void *target)
{
    (void)target;
    yw_set_hostport(w, v, path, 1, &w->cfg->admin);
}

static void apply_admin_writes(struct walk *w, struct moat_yaml_node *v, const char *path,
                               void *target)
{
    (void)target;
    const char *text = yw_word(w, v, path, "true or false");
    if (text != NULL && (strcasecmp(text, "true") == 0 || strcasecmp(text, "false") == 0))
        w->cfg->admin_writes = strcasecmp(text, "true") == 0;
    else if (text != NULL)
        yw_fail(w, v, path, "expected true or false, got '%s'", text);
}

static const struct key admin_keys[] = {{"listen", apply_admin_listen},
                                        {"writes", apply_admin_writes}};
static const struct section admin_section = {admin_keys, 2, NULL};

static void apply_admin(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    w->cfg->has_admin = 1; /* "admin:" alone turns it on at the default address */
    yw_walk_map(w, v, path, &admin_section, target);
}

/* ---- timeouts and limits: keys and ranges from settings.c --------------------------------- */

static const struct section timeouts_section = {NULL, 0, "timeouts"};
static const struct section limits_section = {NULL, 0, "limits"};

static void apply_timeouts(struct walk *w, struct moat_yaml_node *v, const char *path,
                           void *target)
{
    yw_walk_map(w, v, path, &timeouts_section, target);
}

static void apply_limits(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    yw_walk_map(w, v, path, &limits_section, target);
}

/* ---- the document --------------------------------------------------------------------------- */

static const struct key top_keys[] = {
    {"workers", apply_workers},
    {"state_dir", apply_state_dir},
    {"user", apply_user},
    {"group", apply_group},
    {"listeners", apply_listeners},
    {"pools", yw_apply_pools},
    {"resolver", yw_apply_resolver},
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
        yw_fail(w, at, "default_pool",
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
        yw_out_of_memory(w, at, "listeners");
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
        yw_walk_map(&w, root, "", &top_section, cfg);
    if (w.routes != NULL)
        apply_routes(&w, w.routes, "routes");
    if (cfg->n_pools == 0) {
        if (w.pools == NULL || w.pools->kind != MOAT_YAML_MAP || w.pools->n_kids == 0)
            yw_fail(&w, w.pools != NULL ? w.pools : top, "pools",
                 "at least one pool is required (e.g. pools: {web: {backends: "
                 "[127.0.0.1:8080]}})");
    } else {
        pick_default_pool(&w, w.pools);
    }
    if (cfg->n_listeners == 0)
        add_default_listener(&w, top);
}
