/* config/cli.c: the command-line loader. A small table-driven parser instead of getopt_long:
 * reentrant, and every error names the flag and the value it refused. */
#include "config/config.h"
#include "config/model.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef MOAT_VERSION
#define MOAT_VERSION "0.0.0"
#endif

static const char usage[] =
    "usage: moat [options]\n"
    "\n"
    "HTTPS in front of plain-HTTP applications: terminates TLS 1.3 and 1.2 and forwards each\n"
    "request as HTTP/1.1 to the backends, in round-robin order.\n"
    "\n"
    "  --listen HOST:PORT      accept TLS here; repeatable; IPv6 as [::1]:8443; port 0 picks a\n"
    "                          free port (default: 0.0.0.0:8443)\n"
    "  --cert FILE --key FILE  PEM certificate chain (leaf first) and its private key, ECDSA\n"
    "                          P-256/P-384 or RSA >= 2048; give a second pair of the other key\n"
    "                          type to serve both (default: a development certificate)\n"
    "  --backend HOST:PORT     plain-HTTP backend; repeatable; at least one is required\n"
    "  --workers N             worker threads, 1 to 256 (default: the number of CPUs)\n"
    "  --trusted-proxy CIDR    a front proxy whose X-Forwarded-For chain is extended rather\n"
    "                          than replaced; repeatable (default: none)\n"
    "  --state-dir DIR         where the development certificate is kept (default:\n"
    "                          $MOAT_STATE_DIR, else $XDG_STATE_HOME/moat, else\n"
    "                          ~/.local/state/moat)\n"
    "  --log-level LEVEL       error, warn, info or debug (default: info)\n"
    "  --no-access-log         no access-log line per request on stdout\n"
    "  --drain-timeout SECS    on SIGTERM or SIGINT, how long in-flight requests may take,\n"
    "                          0 to 3600 (default: 30)\n"
    "  -V, --version           print the version and exit\n"
    "  -h, --help              print this help and exit\n"
    "\n"
    "Flags also take the form --flag=value.\n"
    "\n"
    "example:\n"
    "  moat --listen 0.0.0.0:8443 --cert site.pem --key site.key \\\n"
    "       --backend 127.0.0.1:8080 --backend 127.0.0.1:8081\n";

const char *moat_cfg_usage(void)
{
    return usage;
}

const char *moat_cfg_version(void)
{
    return "moat " MOAT_VERSION;
}

enum flag_id {
    F_LISTEN,
    F_CERT,
    F_KEY,
    F_BACKEND,
    F_WORKERS,
    F_TRUSTED_PROXY,
    F_STATE_DIR,
    F_LOG_LEVEL,
    F_NO_ACCESS_LOG,
    F_DRAIN_TIMEOUT,
    F_VERSION,
    F_HELP,
};

struct flag {
    const char *name;       /* "--listen" */
    const char *short_name; /* "-h", or NULL */
    int takes_value;
    enum flag_id id;
};

static const struct flag flags[] = {
    {"--listen", NULL, 1, F_LISTEN},
    {"--cert", NULL, 1, F_CERT},
    {"--key", NULL, 1, F_KEY},
    {"--backend", NULL, 1, F_BACKEND},
    {"--workers", NULL, 1, F_WORKERS},
    {"--trusted-proxy", NULL, 1, F_TRUSTED_PROXY},
    {"--state-dir", NULL, 1, F_STATE_DIR},
    {"--log-level", NULL, 1, F_LOG_LEVEL},
    {"--no-access-log", NULL, 0, F_NO_ACCESS_LOG},
    {"--drain-timeout", NULL, 1, F_DRAIN_TIMEOUT},
    {"--version", "-V", 0, F_VERSION},
    {"--help", "-h", 0, F_HELP},
};

/* The loader's working state: the model being built and the cert/key flags seen. */
struct loader {
    struct moat_cfg *cfg;
    size_t n_cert_flags, n_key_flags;
    char *err;
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

static int out_of_memory(struct loader *l)
{
    snprintf(l->err, l->err_len, "out of memory");
    return -1;
}

static int add_hostport(struct loader *l, const char *flag, const char *value, int allow_zero,
                        struct moat_cfg_hostport **array, size_t *n)
{
    struct moat_cfg_hostport *grown = moat_cfg_grow(*array, *n, sizeof(**array));
    if (grown == NULL)
        return out_of_memory(l);
    *array = grown;
    char why[384];
    if (moat_cfg_hostport_parse(value, allow_zero, &grown[*n], why, sizeof(why)) != 0) {
        snprintf(l->err, l->err_len, "%s: %s", flag, why);
        return -1;
    }
    (*n)++;
    return 0;
}

/* The i-th --cert pairs with the i-th --key, whatever their order on the line. */
static int add_cert_file(struct loader *l, const char *flag, const char *value, int is_key)
{
    size_t *count = is_key ? &l->n_key_flags : &l->n_cert_flags;
    if (*count >= MOAT_CFG_MAX_CERTS) {
        snprintf(l->err, l->err_len,
                 "%s: at most %d certificate/key pairs (one ECDSA and one RSA)", flag,
                 MOAT_CFG_MAX_CERTS);
        return -1;
    }
    if (*value == '\0') {
        snprintf(l->err, l->err_len, "%s: empty file name", flag);
        return -1;
    }
    char *copy = strdup(value);
    if (copy == NULL)
        return out_of_memory(l);
    struct moat_cfg_cert *c = &l->cfg->certs[(*count)++];
    if (is_key)
        c->key_file = copy;
    else
        c->cert_file = copy;
    return 0;
}

static int parse_workers(struct loader *l, const char *value)
{
    int digits = *value != '\0' && strlen(value) <= 3;
    for (const char *p = value; digits && *p; p++)
        digits = isdigit((unsigned char)*p);
    long v = digits ? strtol(value, NULL, 10) : 0;
    if (v < 1 || v > MOAT_CFG_MAX_WORKERS) {
        snprintf(l->err, l->err_len, "--workers: expected a number from 1 to %d, got '%s'",
                 MOAT_CFG_MAX_WORKERS, value);
        return -1;
    }
    l->cfg->workers = (unsigned)v;
    return 0;
}

static int parse_drain_timeout(struct loader *l, const char *value)
{
    char *end = NULL;
    double secs = strtod(value, &end);
    if (*value == '\0' || isspace((unsigned char)*value) || end == NULL || *end != '\0' ||
        !isfinite(secs) || secs < 0 || secs > 3600) {
        snprintf(l->err, l->err_len,
                 "--drain-timeout: expected seconds from 0 to 3600 (e.g. 30 or 2.5), got '%s'",
                 value);
        return -1;
    }
    l->cfg->drain_timeout_ms = (uint64_t)(secs * 1000.0 + 0.5);
    return 0;
}

static int parse_log_level(struct loader *l, const char *value)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(value, names[i]) == 0) {
            l->cfg->log_level = i;
            return 0;
        }
    }
    snprintf(l->err, l->err_len, "--log-level: expected error, warn, info or debug, got '%s'",
             value);
    return -1;
}

static int apply(struct loader *l, const struct flag *f, const char *value)
{
    struct moat_cfg *cfg = l->cfg;
    switch (f->id) {
    case F_LISTEN:
        return add_hostport(l, f->name, value, 1, &cfg->listeners, &cfg->n_listeners);
    case F_BACKEND:
        return add_hostport(l, f->name, value, 0, &cfg->backends, &cfg->n_backends);
    case F_CERT:
        return add_cert_file(l, f->name, value, 0);
    case F_KEY:
        return add_cert_file(l, f->name, value, 1);
    case F_WORKERS:
        return parse_workers(l, value);
    case F_TRUSTED_PROXY: {
        struct moat_cfg_cidr *grown =
            moat_cfg_grow(cfg->trusted_proxies, cfg->n_trusted_proxies, sizeof(*grown));
        if (grown == NULL)
            return out_of_memory(l);
        cfg->trusted_proxies = grown;
        char why[256];
        if (moat_cfg_cidr_parse(value, &grown[cfg->n_trusted_proxies], why, sizeof(why)) != 0) {
            snprintf(l->err, l->err_len, "--trusted-proxy: %s", why);
            return -1;
        }
        cfg->n_trusted_proxies++;
        return 0;
    }
    case F_STATE_DIR:
        if (*value == '\0') {
            snprintf(l->err, l->err_len, "--state-dir: empty directory name");
            return -1;
        }
        free(cfg->state_dir);
        cfg->state_dir = strdup(value);
        return cfg->state_dir != NULL ? 0 : out_of_memory(l);
    case F_LOG_LEVEL:
        return parse_log_level(l, value);
    case F_NO_ACCESS_LOG:
        cfg->access_log = 0;
        return 0;
    case F_DRAIN_TIMEOUT:
        return parse_drain_timeout(l, value);
    case F_VERSION:
    case F_HELP:
        return 0; /* answered by the caller before apply() */
    }
    return 0;
}

/* Checks what no single flag can: required flags, pairs, defaults. */
static int finish(struct loader *l)
{
    struct moat_cfg *cfg = l->cfg;
    if (cfg->n_backends == 0) {
        snprintf(l->err, l->err_len, "at least one --backend HOST:PORT is required");
        return -1;
    }
    if (l->n_cert_flags != l->n_key_flags) {
        snprintf(l->err, l->err_len,
                 "--cert and --key come in pairs: got %zu --cert and %zu --key",
                 l->n_cert_flags, l->n_key_flags);
        return -1;
    }
    cfg->n_certs = l->n_cert_flags;
    if (cfg->n_listeners == 0)
        return add_hostport(l, "--listen", "0.0.0.0:8443", 1, &cfg->listeners,
                            &cfg->n_listeners);
    return 0;
}

enum moat_cfg_result moat_cfg_from_argv(int argc, char **argv, unsigned default_workers,
                                        struct moat_cfg **out, char *err, size_t err_len)
{
    *out = NULL;
    struct loader l = {.cfg = moat_cfg_new(default_workers), .err = err, .err_len = err_len};
    if (l.cfg == NULL) {
        out_of_memory(&l);
        return MOAT_CFG_BAD_ARGS;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || arg[1] == '\0' || strcmp(arg, "--") == 0) {
            snprintf(err, err_len, "unexpected argument '%s' (every setting is a --flag)", arg);
            goto bad;
        }
        const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
        size_t name_len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
        const struct flag *f = find_flag(arg, name_len);
        if (f == NULL) {
            snprintf(err, err_len, "unknown option '%.*s'", (int)name_len, arg);
            goto bad;
        }
        if (f->id == F_HELP || f->id == F_VERSION) {
            moat_cfg_free(l.cfg);
            return f->id == F_HELP ? MOAT_CFG_HELP : MOAT_CFG_VERSION;
        }
        const char *value = NULL;
        if (f->takes_value) {
            if (eq != NULL) {
                value = eq + 1;
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                snprintf(err, err_len, "%s needs a value", f->name);
                goto bad;
            }
        } else if (eq != NULL) {
            snprintf(err, err_len, "%s takes no value", f->name);
            goto bad;
        }
        if (apply(&l, f, value) != 0)
            goto bad;
    }
    if (finish(&l) != 0)
        goto bad;
    *out = l.cfg;
    return MOAT_CFG_RUN;
bad:
    moat_cfg_free(l.cfg);
    return MOAT_CFG_BAD_ARGS;
}
