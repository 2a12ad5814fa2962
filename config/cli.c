/* config/cli.c: the command-line loader. A small table-driven parser instead of getopt_long:
 * reentrant (no global state), and every error names the flag and the value it refused. */
#include "config/config.h"
#include "config/model.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DRAIN_TIMEOUT_S (MOAT_CFG_MAX_DRAIN_MS / 1000)

enum flag_id {
    F_LISTEN,
    F_CERT,
    F_KEY,
    F_BACKEND,
    F_BALANCE,
    F_HASH_KEY,
    F_STICKY_COOKIE,
    F_HEALTH_CHECK,
    F_RESOLVER,
    F_STRICT_SNI,
    F_REDIRECT_HTTP,
    F_HSTS,
    F_DNS_REFRESH,
    F_TRUSTED_PROXY,
    F_STATE_DIR,
    F_LOG_LEVEL,
    F_NO_ACCESS_LOG,
    F_DRAIN_TIMEOUT,
    F_TUNABLE, /* --workers, a timeout or a limit: field and range from settings.c */
    F_ACCESS_FORMAT,
    F_ACCESS_FILE,
    F_ADMIN,
    F_USER,
    F_GROUP,
    F_CONFIG,
    F_CHECK,
    F_VERSION,
    F_HELP,
};

struct flag {
    const char *name;       /* "--listen" */
    const char *short_name; /* "-h", or NULL */
    int takes_value;
    enum flag_id id;
};

#define FLAG(name, short_name, takes_value, id) {name, short_name, takes_value, id}
#define TUNABLE(name) {name, NULL, 1, F_TUNABLE}

static const struct flag flags[] = {
    FLAG("--listen", NULL, 1, F_LISTEN),
    FLAG("--cert", NULL, 1, F_CERT),
    FLAG("--key", NULL, 1, F_KEY),
    FLAG("--backend", NULL, 1, F_BACKEND),
    FLAG("--balance", NULL, 1, F_BALANCE),
    FLAG("--hash-key", NULL, 1, F_HASH_KEY),
    FLAG("--sticky-cookie", NULL, 1, F_STICKY_COOKIE),
    FLAG("--health-check", NULL, 1, F_HEALTH_CHECK),
    FLAG("--resolver", NULL, 1, F_RESOLVER),
    FLAG("--strict-sni", NULL, 0, F_STRICT_SNI),
    FLAG("--redirect-http", NULL, 1, F_REDIRECT_HTTP),
    FLAG("--hsts", NULL, 1, F_HSTS),
    FLAG("--dns-refresh", NULL, 1, F_DNS_REFRESH),
    TUNABLE("--workers"),
    FLAG("--trusted-proxy", NULL, 1, F_TRUSTED_PROXY),
    FLAG("--state-dir", NULL, 1, F_STATE_DIR),
    FLAG("--log-level", NULL, 1, F_LOG_LEVEL),
    FLAG("--no-access-log", NULL, 0, F_NO_ACCESS_LOG),
    FLAG("--drain-timeout", NULL, 1, F_DRAIN_TIMEOUT),
    TUNABLE("--handshake-timeout"),
    TUNABLE("--head-timeout"),
    TUNABLE("--idle-timeout"),
    TUNABLE("--body-timeout"),
    TUNABLE("--connect-timeout"),
    TUNABLE("--backend-timeout"),
    TUNABLE("--pool-idle-timeout"),
    TUNABLE("--tunnel-timeout"),
    TUNABLE("--send-timeout"),
    TUNABLE("--max-head-size"),
    TUNABLE("--max-headers"),
    TUNABLE("--max-target-size"),
    TUNABLE("--max-body-size"),
    TUNABLE("--max-connections"),
    TUNABLE("--max-backend-connections"),
    FLAG("--access-log-format", NULL, 1, F_ACCESS_FORMAT),
    FLAG("--access-log", NULL, 1, F_ACCESS_FILE),
    FLAG("--admin", NULL, 1, F_ADMIN),
    FLAG("--user", NULL, 1, F_USER),
    FLAG("--group", NULL, 1, F_GROUP),
    FLAG("--config", "-c", 1, F_CONFIG),
    FLAG("--check-config", "-t", 0, F_CHECK),
    FLAG("--version", "-V", 0, F_VERSION),
    FLAG("--help", "-h", 0, F_HELP),
};

/* The loader's working state: the model being built and the cert/key flags seen. */
struct loader {
    struct moat_cfg *cfg; /* owned until handed to the caller */
    /* Flags that finish() turns into listeners and the "default" pool. */
    struct moat_cfg_hostport *listen; /* owned array */
    size_t n_listen;
    struct moat_cfg_backend *backends; /* owned array */
    size_t n_backends;
    struct moat_cfg_pool choice; /* --balance, --hash-key, --sticky-cookie (owned strings) */
    int has_hash_key;
    struct moat_cfg_cert *certs; /* owned array and strings; copied to each listener */
    size_t n_cert_flags;  /* --cert flags seen: certs[0..n) have cert_file set */
    size_t n_key_flags;   /* --key flags seen: certs[0..n) have key_file set */
    int strict_sni;       /* --strict-sni: for every listener */
    char *hsts;           /* owned: --hsts's header value, for every listener */
    int is_check;         /* --check-config */
    const char *config_file; /* --config, borrowed from argv */
    const char *setting_flag; /* the first flag seen that --config excludes */
    char *err;            /* borrowed: the caller's message buffer */
    size_t err_len;
};

static const struct flag *find_flag(const char *arg, size_t name_len)
{
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        const struct flag *f = &flags[i];
        if ((strlen(f->name) == name_len && strncmp(arg, f->name, name_len) == 0) ||
            (f->short_name != NULL && strlen(f->short_name) == name_len &&
             strncmp(arg, f->short_name, name_len) == 0))
            return f;
    }
    return NULL;
}

/* Reads the flag at argv[*i] and its value ("--flag value" or "--flag=value"), leaving *i on
 * the last argument used. Returns 0 with *f set (and *value, NULL for flags without one), or -1
 * with err set (err may be NULL when err_len is 0). Only "--" names take "=value"; short names
 * are exactly "-h" and "-V". */
static int next_flag(int argc, char **argv, int *i, const struct flag **f, const char **value,
                     char *err, size_t err_len)
{
    const char *arg = argv[*i];
    *f = NULL;
    *value = NULL;
    if (arg[0] != '-' || arg[1] == '\0' || strcmp(arg, "--") == 0) {
        snprintf(err, err_len, "unexpected argument '%s' (every setting is a --flag)", arg);
        return -1;
    }
    const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
    size_t name_len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    *f = find_flag(arg, name_len);
    if (*f == NULL) {
        snprintf(err, err_len, "unknown option '%.*s'", (int)name_len, arg);
        return -1;
    }
    if (!(*f)->takes_value) {
        if (eq != NULL) {
            snprintf(err, err_len, "%s takes no value, got '%s'", (*f)->name, eq + 1);
            return -1;
        }
        return 0;
    }
    if (eq != NULL) {
        *value = eq + 1;
        return 0;
    }
    /* "--backend --workers 2" forgot the backend: say so rather than refuse "--workers" as an
     * address. A value that really starts with "--" can still be given as --flag=--value. */
    if (*i + 1 >= argc) {
        snprintf(err, err_len, "%s needs a value", (*f)->name);
        return -1;
    }
    if (strncmp(argv[*i + 1], "--", 2) == 0) {
        snprintf(err, err_len, "%s needs a value, got option '%s'", (*f)->name, argv[*i + 1]);
        return -1;
    }
    *value = argv[++*i];
    return 0;
}

static int out_of_memory(struct loader *l)
{
    snprintf(l->err, l->err_len, "out of memory");
    return -1;
}

static int add_hostport(struct loader *l, const char *flag, const char *value, int allow_zero,
                        struct moat_cfg_hostport **array, size_t *n)
{
    struct moat_cfg_hostport hp;
    char why[512];
    if (moat_cfg_hostport_parse(value, allow_zero, &hp, why, sizeof(why)) != 0) {
        snprintf(l->err, l->err_len, "%s: %s", flag, why);
        return -1;
    }
    /* A listener must not repeat (see moat_cfg_listen_clashes()). */
    for (size_t i = 0; allow_zero && i < *n; i++) {
        if (moat_cfg_listen_clashes(&(*array)[i], &hp)) {
            snprintf(l->err, l->err_len, "%s: '%s' is given twice", flag, value);
            return -1;
        }
    }
    struct moat_cfg_hostport *grown = moat_cfg_grow(*array, *n, sizeof(**array));
    if (grown == NULL)
        return out_of_memory(l);
    *array = grown;
    grown[(*n)++] = hp;
    return 0;
}

/* --backend HOST:PORT[,weight=N]. A backend may repeat: listed twice, it has twice the share. */
static int add_backend(struct loader *l, const char *flag, const char *value)
{
    struct moat_cfg_backend b;
    char why[512];
    if (moat_cfg_backend_parse(value, &b, why, sizeof(why)) != 0) {
        snprintf(l->err, l->err_len, "%s: %s", flag, why);
        return -1;
    }
    struct moat_cfg_backend *grown = moat_cfg_grow(l->backends, l->n_backends, sizeof(b));
    if (grown == NULL)
        return out_of_memory(l);
    l->backends = grown;
    grown[l->n_backends++] = b;
    return 0;
}

static int set_string(struct loader *l, const char *flag, const char *value, char **field);

static int parse_balance(struct loader *l, const char *flag, const char *value)
{
    char why[512];
    if (moat_cfg_balance_parse(value, &l->choice.balance, why, sizeof(why)) != 0) {
        snprintf(l->err, l->err_len, "%s: %s", flag, why);
        return -1;
    }
    return 0;
}

static int parse_hash_key(struct loader *l, const char *flag, const char *value)
{
    char why[512];
    int rc = moat_cfg_hash_key_parse(value, &l->choice, why, sizeof(why));
    if (rc == -2)
        return out_of_memory(l);
    if (rc != 0) {
        snprintf(l->err, l->err_len, "%s: %s", flag, why);
        return -1;
    }
    l->has_hash_key = 1;
    return 0;
}

static int parse_sticky_cookie(struct loader *l, const char *flag, const char *value)
{
    char why[512];
    if (moat_cfg_cookie_name_check(value, why, sizeof(why)) != 0) {
        snprintf(l->err, l->err_len, "%s: %s", flag, why);
        return -1;
    }
    return set_string(l, flag, value, &l->choice.sticky_cookie);
}

/* The i-th --cert pairs with the i-th --key, whatever their order on the line. */
static int add_cert_file(struct loader *l, const char *flag, const char *value, int is_key)
{
    size_t *count = is_key ? &l->n_key_flags : &l->n_cert_flags;
    if (*value == '\0') {
        snprintf(l->err, l->err_len, "%s: empty file name", flag);
        return -1;
    }
    if (*count >= MOAT_CFG_MAX_CERTS) {
        snprintf(l->err, l->err_len, "%s '%s': at most %d certificate/key pairs", flag, value,
                 MOAT_CFG_MAX_CERTS);
        return -1;
    }
    size_t made = l->n_cert_flags > l->n_key_flags ? l->n_cert_flags : l->n_key_flags;
    if (*count == made) { /* the first of a new pair */
        struct moat_cfg_cert *grown = moat_cfg_grow(l->certs, made, sizeof(*grown));
        if (grown == NULL)
            return out_of_memory(l);
        l->certs = grown;
        memset(&l->certs[made], 0, sizeof(l->certs[made]));
    }
    char *copy = strdup(value);
    if (copy == NULL)
        return out_of_memory(l);
    struct moat_cfg_cert *c = &l->certs[(*count)++];
    if (is_key)
        c->key_file = copy;
    else
        c->cert_file = copy;
    return 0;
}

/* Seconds as "30", "2.5" or "0.25": digits, at most one '.', no sign or exponent (strtod would
 * also take "1e3", "0x10", "inf" and leading spaces). Sub-millisecond digits round to nearest. */
static int parse_drain_timeout(struct loader *l, const char *value)
{
    uint64_t ms = 0;
    int n_digits = 0, n_frac = -1; /* n_frac: digits after the '.', -1 before one is seen */
    int ok = 1, round_up = 0;
    for (const char *p = value; ok && *p != '\0'; p++) {
        if (*p == '.') {
            ok = n_frac < 0;
            n_frac = 0;
        } else if (*p < '0' || *p > '9') {
            ok = 0;
        } else if (n_frac < 0) {
            ms = ms * 10 + (uint64_t)(*p - '0');
            ok = ms <= MAX_DRAIN_TIMEOUT_S; /* still whole seconds here */
            n_digits++;
        } else {
            if (n_frac < 3)
                ms = ms * 10 + (uint64_t)(*p - '0');
            else if (n_frac == 3)
                round_up = *p >= '5';
            n_frac++;
            n_digits++;
        }
    }
    for (int k = n_frac < 0 ? 0 : n_frac; ok && k < 3; k++)
        ms *= 10;
    ms += (uint64_t)round_up;
    if (!ok || n_digits == 0 || ms > (uint64_t)MAX_DRAIN_TIMEOUT_S * 1000) {
        snprintf(l->err, l->err_len,
                 "--drain-timeout: expected seconds from 0 to %d (e.g. 30 or 2.5), got '%s'",
                 MAX_DRAIN_TIMEOUT_S, value);
        return -1;
    }
    l->cfg->drain_timeout_ms = ms;
    return 0;
}

static int parse_log_level(struct loader *l, const char *value)
{
    int level = moat_cfg_log_level_parse(value);
    if (level < 0) {
        snprintf(l->err, l->err_len, "--log-level: expected error, warn, info or debug, got '%s'",
                 value);
        return -1;
    }
    l->cfg->log_level = level;
    return 0;
}

static int add_trusted_proxy(struct loader *l, const char *value)
{
    struct moat_cfg *cfg = l->cfg;
    struct moat_cfg_cidr c;
    char why[512];
    if (moat_cfg_cidr_parse(value, &c, why, sizeof(why)) != 0) {
        snprintf(l->err, l->err_len, "--trusted-proxy: %s", why);
        return -1;
    }
    struct moat_cfg_cidr *grown =
        moat_cfg_grow(cfg->trusted_proxies, cfg->n_trusted_proxies, sizeof(*grown));
    if (grown == NULL)
        return out_of_memory(l);
    cfg->trusted_proxies = grown;
    grown[cfg->n_trusted_proxies++] = c;
    return 0;
}

/* A non-empty text setting; the last one given wins. */
static int set_string(struct loader *l, const char *flag, const char *value, char **field)
{
    if (*value == '\0') {
        snprintf(l->err, l->err_len, "%s: empty value", flag);
        return -1;
    }
    char *copy = strdup(value);
    if (copy == NULL)
        return out_of_memory(l);
    free(*field);
    *field = copy;
    return 0;
}

static int parse_access_format(struct loader *l, const char *value)
{
    int format = moat_cfg_access_format_parse(value);
    if (format < 0) {
        snprintf(l->err, l->err_len,
                 "--access-log-format: expected moat, combined or json, got '%s'", value);
        return -1;
    }
    l->cfg->access_format = (enum moat_cfg_access_format)format;
    return 0;
}

static int parse_one_hostport(struct loader *l, const char *flag, const char *value,
                              struct moat_cfg_hostport *out)
{
    char why[512];
    if (moat_cfg_hostport_parse(value, 1, out, why, sizeof(why)) != 0) {
        snprintf(l->err, l->err_len, "%s: %s", flag, why);
        return -1;
    }
    return 0;
}

static int add_resolver(struct loader *l, const char *flag, const char *value)
{
    struct moat_cfg_resolver *r = &l->cfg->resolver;
    if (r->n_servers == MOAT_CFG_MAX_RESOLVERS) {
        snprintf(l->err, l->err_len, "%s: at most %d DNS servers", flag, MOAT_CFG_MAX_RESOLVERS);
        return -1;
    }
    char why[512];
    struct moat_cfg_hostport *hp = &r->servers[r->n_servers];
    if (moat_cfg_hostport_parse(value, 0, hp, why, sizeof(why)) != 0) {
        snprintf(l->err, l->err_len, "%s: %s", flag, why);
        return -1;
    }
    if (!moat_cfg_host_is_ip(hp)) {
        snprintf(l->err, l->err_len, "%s: expected an IP address and port (a DNS server cannot "
                 "be a name), got '%s'", flag, value);
        return -1;
    }
    r->n_servers++;
    return 0;
}

/* --hsts SECONDS: Strict-Transport-Security max-age=SECONDS (the file can add
 * includeSubDomains and preload). */
static int parse_hsts(struct loader *l, const char *flag, const char *value)
{
    char *end = NULL;
    unsigned long long n = strtoull(value, &end, 10);
    char why[256];
    char *hsts = NULL;
    if (end == value || *end != '\0' || value[0] == '-' ||
        (hsts = moat_cfg_hsts_value(n, 0, 0, why, sizeof(why))) == NULL) {
        snprintf(l->err, l->err_len, "%s: expected a max-age in seconds from 0 to 2147483647 "
                 "(e.g. 31536000: a year), got '%s'", flag, value);
        return -1;
    }
    free(l->hsts);
    l->hsts = hsts;
    return 0;
}

static int parse_dns_refresh(struct loader *l, const char *flag, const char *value)
{
    uint64_t ms = 0;
    if (strcmp(value, "0") != 0 &&
        (moat_cfg_duration_parse(value, &ms) != 0 || ms < 1000 || ms > 3600000)) {
        snprintf(l->err, l->err_len, "%s: expected 0 (resolve once) or a duration from 1s to "
                 "1h, got '%s'", flag, value);
        return -1;
    }
    l->cfg->resolver.refresh_ms = ms;
    return 0;
}

/* --workers, a timeout or a limit: parsed and stored as settings.c says. */
static int parse_tunable(struct loader *l, const struct flag *f, const char *value)
{
    char why[512];
    if (moat_cfg_tunable_set(l->cfg, moat_cfg_tunable_by_flag(f->name), value, why, sizeof(why)) !=
        0) {
        snprintf(l->err, l->err_len, "%s: %s", f->name, why);
        return -1;
    }
    return 0;
}

static int apply(struct loader *l, const struct flag *f, const char *value)
{
    struct moat_cfg *cfg = l->cfg;
    switch (f->id) {
    case F_LISTEN:
        return add_hostport(l, f->name, value, 1, &l->listen, &l->n_listen);
    case F_BACKEND:
        return add_backend(l, f->name, value);
    case F_BALANCE:
        return parse_balance(l, f->name, value);
    case F_HASH_KEY:
        return parse_hash_key(l, f->name, value);
    case F_STICKY_COOKIE:
        return parse_sticky_cookie(l, f->name, value);
    case F_HEALTH_CHECK:
        if (value[0] != '/' || strpbrk(value, " \t\r\n") != NULL) {
            snprintf(l->err, l->err_len, "%s: expected a path starting with '/', got '%s'",
                     f->name, value);
            return -1;
        }
        return set_string(l, f->name, value, &l->choice.health.path);
    case F_RESOLVER:
        return add_resolver(l, f->name, value);
    case F_STRICT_SNI:
        l->strict_sni = 1;
        return 0;
    case F_REDIRECT_HTTP:
        cfg->has_redirect = 1;
        return parse_one_hostport(l, f->name, value, &cfg->redirect);
    case F_HSTS:
        return parse_hsts(l, f->name, value);
    case F_DNS_REFRESH:
        return parse_dns_refresh(l, f->name, value);
    case F_CERT:
        return add_cert_file(l, f->name, value, 0);
    case F_KEY:
        return add_cert_file(l, f->name, value, 1);
    case F_TRUSTED_PROXY:
        return add_trusted_proxy(l, value);
    case F_STATE_DIR:
        return set_string(l, f->name, value, &cfg->state_dir);
    case F_LOG_LEVEL:
        return parse_log_level(l, value);
    case F_NO_ACCESS_LOG:
        cfg->access_log = 0;
        return 0;
    case F_DRAIN_TIMEOUT:
        return parse_drain_timeout(l, value);
    case F_TUNABLE:
        return parse_tunable(l, f, value);
    case F_ACCESS_FORMAT:
        return parse_access_format(l, value);
    case F_ACCESS_FILE:
        return set_string(l, f->name, value, &cfg->access_log_file);
    case F_ADMIN:
        cfg->has_admin = 1;
        return parse_one_hostport(l, f->name, value, &cfg->admin);
    case F_USER:
        return set_string(l, f->name, value, &cfg->user);
    case F_GROUP:
        return set_string(l, f->name, value, &cfg->group);
    case F_CONFIG:
        l->config_file = value;
        return 0;
    case F_CHECK:
        l->is_check = 1;
        return 0;
    case F_VERSION:
    case F_HELP:
        return 0; /* answered by find_help_or_version() before any flag is applied */
    }
    return 0;
}

/* Every listener gets a copy of the --cert/--key pairs. */
static int copy_certs(struct loader *l, struct moat_cfg_listener *li)
{
    li->tls_min = 12;
    li->strict_sni = l->strict_sni;
    if (l->hsts != NULL && (li->hsts = strdup(l->hsts)) == NULL)
        return out_of_memory(l);
    li->certs = l->n_cert_flags > 0 ? calloc(l->n_cert_flags, sizeof(*li->certs)) : NULL;
    if (l->n_cert_flags > 0 && li->certs == NULL)
        return out_of_memory(l);
    for (size_t i = 0; i < l->n_cert_flags; i++) {
        li->certs[i].cert_file = strdup(l->certs[i].cert_file);
        li->certs[i].key_file = strdup(l->certs[i].key_file);
        if (li->certs[i].cert_file == NULL || li->certs[i].key_file == NULL)
            return out_of_memory(l);
    }
    li->n_certs = l->n_cert_flags;
    return 0;
}

/* Checks what no single flag can (required flags, pairs), then builds listeners and the
 * "default" pool with its catch-all route. */
static int finish(struct loader *l)
{
    struct moat_cfg *cfg = l->cfg;
    if (l->n_cert_flags > l->n_key_flags) {
        snprintf(l->err, l->err_len,
                 "--cert '%s' has no matching --key (got %zu --cert and %zu --key; give "
                 "--cert FILE --key FILE in pairs)",
                 l->certs[l->n_key_flags].cert_file, l->n_cert_flags, l->n_key_flags);
        return -1;
    }
    if (l->n_key_flags > l->n_cert_flags) {
        snprintf(l->err, l->err_len,
                 "--key '%s' has no matching --cert (got %zu --cert and %zu --key; give "
                 "--cert FILE --key FILE in pairs)",
                 l->certs[l->n_cert_flags].key_file, l->n_cert_flags, l->n_key_flags);
        return -1;
    }
    if (l->n_backends == 0) {
        snprintf(l->err, l->err_len,
                 "at least one --backend HOST:PORT is required (e.g. --backend 127.0.0.1:8080)");
        return -1;
    }
    if (l->n_listen == 0 &&
        add_hostport(l, "--listen", "0.0.0.0:8443", 1, &l->listen, &l->n_listen) != 0)
        return -1;
    cfg->listeners = calloc(l->n_listen, sizeof(*cfg->listeners));
    cfg->pools = calloc(1, sizeof(*cfg->pools));
    if (cfg->listeners == NULL || cfg->pools == NULL)
        return out_of_memory(l);
    for (size_t i = 0; i < l->n_listen; i++) {
        cfg->listeners[i].addr = l->listen[i];
        cfg->n_listeners++;
        if (copy_certs(l, &cfg->listeners[i]) != 0)
            return -1;
    }
    cfg->n_pools = 1;
    moat_cfg_pool_init(&cfg->pools[0]);
    cfg->pools[0].name = strdup("default");
    if (cfg->pools[0].name == NULL)
        return out_of_memory(l);
    if (l->has_hash_key && l->choice.balance != MOAT_CFG_BALANCE_HASH) {
        snprintf(l->err, l->err_len, "--hash-key: only with --balance hash");
        return -1;
    }
    cfg->pools[0].backends = l->backends; /* handed over, with the choice's strings */
    cfg->pools[0].n_backends = l->n_backends;
    cfg->pools[0].balance = l->choice.balance;
    cfg->pools[0].hash_by = l->choice.hash_by;
    cfg->pools[0].hash_name = l->choice.hash_name;
    cfg->pools[0].sticky_cookie = l->choice.sticky_cookie;
    cfg->pools[0].health.path = l->choice.health.path;
    l->choice.hash_name = l->choice.sticky_cookie = l->choice.health.path = NULL;
    l->backends = NULL;
    l->n_backends = 0;
    cfg->default_pool = 0;
    return 0;
}

static void loader_free(struct loader *l)
{
    free(l->listen);
    free(l->backends);
    free(l->choice.hash_name);
    free(l->choice.sticky_cookie);
    free(l->choice.health.path);
    size_t made = l->n_cert_flags > l->n_key_flags ? l->n_cert_flags : l->n_key_flags;
    for (size_t i = 0; i < made; i++) {
        free(l->certs[i].cert_file);
        free(l->certs[i].key_file);
    }
    free(l->certs);
    free(l->hsts);
}

/* --help and --version answer whatever else the line holds, even mistakes: "moat --frob --help"
 * prints the help. The first of them wins. Values are skipped as values ("--state-dir -h" names
 * a directory). Returns MOAT_CFG_HELP, MOAT_CFG_VERSION, or MOAT_CFG_RUN when neither is there. */
static enum moat_cfg_result find_help_or_version(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const struct flag *f;
        const char *value;
        if (next_flag(argc, argv, &i, &f, &value, NULL, 0) != 0)
            continue; /* reported by the second pass, if neither is found */
        if (f->id == F_HELP)
            return MOAT_CFG_HELP;
        if (f->id == F_VERSION)
            return MOAT_CFG_VERSION;
    }
    return MOAT_CFG_RUN;
}

enum moat_cfg_result moat_cfg_from_argv(int argc, char **argv, unsigned default_workers,
                                        struct moat_cfg **out, char *err, size_t err_len)
{
    *out = NULL;
    if (err_len > 0)
        err[0] = '\0';
    enum moat_cfg_result r = find_help_or_version(argc, argv);
    if (r != MOAT_CFG_RUN)
        return r;
    struct loader l = {.cfg = moat_cfg_new(default_workers), .err = err, .err_len = err_len};
    if (l.cfg == NULL) {
        out_of_memory(&l);
        return MOAT_CFG_BAD_ARGS;
    }
    for (int i = 1; i < argc; i++) {
        const struct flag *f;
        const char *value;
        if (next_flag(argc, argv, &i, &f, &value, err, err_len) != 0 || apply(&l, f, value) != 0)
            goto out_free;
        if (f->id != F_CONFIG && f->id != F_CHECK && l.setting_flag == NULL)
            l.setting_flag = f->name;
    }
    if (l.config_file != NULL) {
        if (l.setting_flag != NULL) {
            snprintf(err, err_len, "%s cannot be combined with --config (set it in the file)",
                     l.setting_flag);
            goto out_free;
        }
        loader_free(&l);
        moat_cfg_free(l.cfg);
        if (moat_cfg_load_yaml(l.config_file, default_workers, out, err, err_len) != 0)
            return MOAT_CFG_BAD_CONFIG;
        return l.is_check ? MOAT_CFG_CHECK : MOAT_CFG_RUN;
    }
    if (finish(&l) != 0)
        goto out_free;
    loader_free(&l);
    *out = l.cfg;
    return l.is_check ? MOAT_CFG_CHECK : MOAT_CFG_RUN;
out_free:
    loader_free(&l);
    moat_cfg_free(l.cfg); /* frees whatever the flags so far allocated */
    return MOAT_CFG_BAD_ARGS;
}
