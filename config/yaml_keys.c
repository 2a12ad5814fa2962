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

/* ---- top-level scalars ---------------------------------------------------------------------- */

static void apply_workers(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    (void)target;
    yw_set_tunable(w, moat_cfg_tunable_by_key(NULL, "workers"), v, path);
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
    if (n > MOAT_CFG_MAX_CERTS) {
        yw_fail(w, v, path, "at most %d certificate/key pairs", MOAT_CFG_MAX_CERTS);
        return;
    }
    li->certs = n > 0 ? calloc(n, sizeof(*li->certs)) : NULL;
    if (n > 0 && li->certs == NULL) {
        yw_out_of_memory(w, v, path);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char ipath[PATH_LEN];
        yw_join_index(ipath, path, i);
        struct moat_cfg_cert *c = &li->certs[li->n_certs++];
        yw_walk_map(w, item[i], ipath, &cert_section, c);
        yw_require(w, item[i], ipath, "cert", "cert: /etc/moat/site.pem");
        yw_require(w, item[i], ipath, "key", "key: /etc/moat/site.key");
    }
}

static void apply_certificate_dirs(struct walk *w, struct moat_yaml_node *v, const char *path,
                                   void *target)
{
    struct moat_cfg_listener *li = target;
    size_t n;
    struct moat_yaml_node **item = yw_items(w, v, path, "directories", &n);
    li->cert_dirs = n > 0 ? calloc(n, sizeof(*li->cert_dirs)) : NULL;
    if (n > 0 && li->cert_dirs == NULL) {
        yw_out_of_memory(w, v, path);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char ipath[PATH_LEN];
        yw_join_index(ipath, path, i);
        yw_set_string(w, item[i], ipath, "a directory of PEM files", &li->cert_dirs[i]);
        li->n_cert_dirs = i + 1;
    }
}

static void apply_strict_sni(struct walk *w, struct moat_yaml_node *v, const char *path,
                             void *target)
{
    yw_set_bool(w, v, path, &((struct moat_cfg_listener *)target)->strict_sni);
}

/* tls.hsts: {max_age, include_subdomains, preload}, gathered then turned into the header's
 * value. */
struct hsts_keys {
    unsigned long long max_age;
    int include_subdomains, preload;
};

static void apply_hsts_max_age(struct walk *w, struct moat_yaml_node *v, const char *path,
                               void *target)
{
    long n = yw_number(w, v, path, "a number of seconds", 0, 2147483647);
    if (n >= 0)
        ((struct hsts_keys *)target)->max_age = (unsigned long long)n;
}

static void apply_hsts_subdomains(struct walk *w, struct moat_yaml_node *v, const char *path,
                                  void *target)
{
    yw_set_bool(w, v, path, &((struct hsts_keys *)target)->include_subdomains);
}

static void apply_hsts_preload(struct walk *w, struct moat_yaml_node *v, const char *path,
                               void *target)
{
    yw_set_bool(w, v, path, &((struct hsts_keys *)target)->preload);
}

static const struct key hsts_keys[] = {{"max_age", apply_hsts_max_age},
                                       {"include_subdomains", apply_hsts_subdomains},
                                       {"preload", apply_hsts_preload}};
static const struct section hsts_section = {hsts_keys, 3, NULL};

static void apply_hsts(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    struct moat_cfg_listener *li = target;
    struct hsts_keys k = {0};
    size_t errors = w->diag->n_errors;
    yw_walk_map(w, v, path, &hsts_section, &k);
    yw_require(w, v, path, "max_age", "max_age: 31536000");
    if (w->diag->n_errors != errors)
        return;
    char why[256];
    free(li->hsts);
    li->hsts = moat_cfg_hsts_value(k.max_age, k.include_subdomains, k.preload, why, sizeof(why));
    if (li->hsts == NULL)
        yw_fail(w, v, path, "%s", why);
}

static void apply_client_mode(struct walk *w, struct moat_yaml_node *v, const char *path,
                              void *target)
{
    const char *text = yw_word(w, v, path, "optional or required");
    struct moat_cfg_listener *li = target;
    if (text != NULL && strcmp(text, "optional") == 0)
        li->client_auth = MOAT_CFG_CLIENT_AUTH_OPTIONAL;
    else if (text != NULL && strcmp(text, "required") == 0)
        li->client_auth = MOAT_CFG_CLIENT_AUTH_REQUIRED;
    else if (text != NULL)
        yw_fail(w, v, path, "expected optional or required, got '%s'", text);
}

static void apply_client_ca(struct walk *w, struct moat_yaml_node *v, const char *path,
                            void *target)
{
    yw_set_string(w, v, path, "a PEM file of CA certificates",
                  &((struct moat_cfg_listener *)target)->client_ca_file);
}

static void apply_client_crl(struct walk *w, struct moat_yaml_node *v, const char *path,
                             void *target)
{
    struct moat_cfg_listener *li = target;
    yw_set_string(w, v, path, "a PEM CRL file", &li->client_crl_file);
}

static const struct key client_keys[] = {{"mode", apply_client_mode}, {"ca", apply_client_ca},
                                         {"crl", apply_client_crl}};
static const struct section client_section = {client_keys, 3, NULL};

static void apply_client_auth(struct walk *w, struct moat_yaml_node *v, const char *path,
                              void *target)
{
    struct moat_cfg_listener *li = target;
    li->client_auth = MOAT_CFG_CLIENT_AUTH_REQUIRED;
    yw_walk_map(w, v, path, &client_section, target);
    yw_require(w, v, path, "ca", "ca: /etc/moat/clients-ca.pem");
}

static const struct key tls_keys[] = {{"min_version", apply_min_version},
                                      {"certificates", apply_certificates},
                                      {"certificate_dirs", apply_certificate_dirs},
                                      {"strict_sni", apply_strict_sni},
                                      {"hsts", apply_hsts},
                                      {"client_auth", apply_client_auth}};
static const struct section tls_section = {tls_keys, 6, NULL};

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
    yw_set_bool(w, v, path, &w->cfg->access_log);
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
    yw_set_bool(w, v, path, &w->cfg->admin_writes);
}

static const struct key admin_keys[] = {{"listen", apply_admin_listen},
                                        {"writes", apply_admin_writes}};
static const struct section admin_section = {admin_keys, 2, NULL};

static void apply_admin(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    w->cfg->has_admin = 1; /* "admin:" alone turns it on at the default address */
    yw_walk_map(w, v, path, &admin_section, target);
}

static void apply_redirect_listen(struct walk *w, struct moat_yaml_node *v, const char *path,
                                  void *target)
{
    (void)target;
    yw_set_hostport(w, v, path, 1, &w->cfg->redirect);
}

static void apply_redirect_port(struct walk *w, struct moat_yaml_node *v, const char *path,
                                void *target)
{
    (void)target;
    long n = yw_number(w, v, path, "a port", 1, 65535);
    if (n >= 0)
        w->cfg->redirect_https_port = (unsigned)n;
}

static const struct key redirect_keys[] = {{"listen", apply_redirect_listen},
                                           {"https_port", apply_redirect_port}};
static const struct section redirect_section = {redirect_keys, 2, NULL};

static void apply_redirect(struct walk *w, struct moat_yaml_node *v, const char *path,
                           void *target)
{
    w->cfg->has_redirect = 1;
    yw_walk_map(w, v, path, &redirect_section, target);
    yw_require(w, v, path, "listen", "listen: 0.0.0.0:80");
}

static void apply_key_log(struct walk *w, struct moat_yaml_node *v, const char *path,
                          void *target)
{
    (void)target;
    yw_set_string(w, v, path, "a file", &w->cfg->tls_key_log);
}

static const struct key debug_keys[] = {{"tls_key_log", apply_key_log}};
static const struct section debug_section = {debug_keys, 1, NULL};

static void apply_debug(struct walk *w, struct moat_yaml_node *v, const char *path, void *target)
{
    yw_walk_map(w, v, path, &debug_section, target);
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
    {"redirect_http", apply_redirect},
    {"debug", apply_debug},
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
