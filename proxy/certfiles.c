/* proxy/certfiles.c: a listener's certificate files, as its configuration names them (pairs,
 * directories of pairs, or none: the development certificate), loaded into one TLS context. */
#include "proxy/certfiles.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "proxy/devcert.h"
#include "proxy/log.h"
#include "tls/tls.h"

/* The pairs of a listener, with the paths this file made (a directory's). */
struct pair_list {
    struct moat_tls_pair *pairs; /* owned array; paths borrowed from the cfg or from paths */
    size_t n, cap;
    char **paths;                /* owned array of owned strings */
    size_t n_paths, cap_paths;
};

/* A private key that every local user can read is a leak waiting to happen: say so, as sshd
 * does, but run (containers often mount secrets world-readable). */
static void warn_if_key_exposed(const char *key_file)
{
    struct stat st;
    if (stat(key_file, &st) == 0 && (st.st_mode & S_IROTH))
        moat_log(MOAT_LOG_WARN, "main private key %s is readable by other users (mode %03o): "
                 "chmod 600 it", key_file, (unsigned)(st.st_mode & 0777));
}

static int add_pair(struct pair_list *l, const char *cert, const char *key)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        struct moat_tls_pair *grown = realloc(l->pairs, cap * sizeof(*grown));
        if (grown == NULL)
            return -1;
        l->pairs = grown;
        l->cap = cap;
    }
    l->pairs[l->n].cert_file = cert;
    l->pairs[l->n++].key_file = key;
    warn_if_key_exposed(key);
    return 0;
}

/* dir/name, kept in l. NULL: out of memory. */
static const char *keep_path(struct pair_list *l, const char *dir, const char *name)
{
    if (l->n_paths == l->cap_paths) {
        size_t cap = l->cap_paths ? l->cap_paths * 2 : 16;
        char **grown = realloc(l->paths, cap * sizeof(*grown));
        if (grown == NULL)
            return NULL;
        l->paths = grown;
        l->cap_paths = cap;
    }
    size_t len = strlen(dir) + strlen(name) + 2;
    char *p = malloc(len);
    if (p != NULL)
        snprintf(p, len, "%s/%s", dir, name);
    return p != NULL ? (l->paths[l->n_paths++] = p) : NULL;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode); /* through symlinks (Kubernetes) */
}

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n > t && strcmp(s + n - t, tail) == 0;
}

/* 1 when the PEM file holds a private key besides its certificates. */
static int holds_key(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[128];
    int found = 0;
    while (f != NULL && !found && fgets(line, sizeof(line), f) != NULL)
        found = strncmp(line, "-----BEGIN ", 11) == 0 && strstr(line, "PRIVATE KEY-----") != NULL;
    if (f != NULL)
        fclose(f);
    return found;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every pair in dir, in name order: NAME.pem holding its chain and key, or NAME.crt beside
 * NAME.key. Hidden entries are skipped (a Kubernetes secret volume's ..data and its timestamped
 * folders). 0, or -1 with err. */
static int add_dir(struct pair_list *l, const char *dir, char *err, size_t err_len)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        snprintf(err, err_len, "certificate directory %s: cannot open it", dir);
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.' || !(ends_with(e->d_name, ".pem") || ends_with(e->d_name, ".crt")))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **grown = realloc(names, cap * sizeof(*grown));
            rc = grown != NULL ? 0 : -1;
            names = grown != NULL ? grown : names;
        }
        if (rc == 0 && (names[n] = strdup(e->d_name)) != NULL)
            n++;
        else
            rc = -1;
    }
    closedir(d);
    if (rc != 0)
        snprintf(err, err_len, "out of memory");
    qsort(names, n, sizeof(*names), by_name);
    size_t found = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *cert = keep_path(l, dir, names[i]);
        if (cert == NULL || !is_file(cert))
            continue;
        const char *key = cert;
        if (ends_with(names[i], ".crt")) {
            names[i][strlen(names[i]) - 4] = '\0';
            char key_name[300];
            snprintf(key_name, sizeof(key_name), "%s.key", names[i]);
            key = keep_path(l, dir, key_name);
            if (key == NULL || !is_file(key)) {
                snprintf(err, err_len, "%s: no %s beside it", cert, key_name);
                rc = -1;
            }
        } else if (!holds_key(cert)) {
            continue; /* a CA bundle or a chain without its key: not a pair */
        }
        if (rc == 0 && add_pair(l, cert, key) != 0) {
            snprintf(err, err_len, "out of memory");
            rc = -1;
        }
        found += rc == 0;
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (rc == 0 && found == 0) {
        snprintf(err, err_len, "certificate directory %s: no NAME.pem with its key, nor "
                 "NAME.crt with NAME.key, in it", dir);
        rc = -1;
    }
    return rc;
}

static void pair_list_free(struct pair_list *l)
{
    for (size_t i = 0; i < l->n_paths; i++)
        free(l->paths[i]);
    free(l->paths);
    free(l->pairs);
}

int moat_certfiles_load(const struct moat_cfg *cfg, const struct moat_cfg_listener *li,
                        struct moat_tls_ctx **out, char *err, size_t err_len)
{
    struct pair_list l = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < li->n_certs; i++)
        if (add_pair(&l, li->certs[i].cert_file, li->certs[i].key_file) != 0) {
            snprintf(err, err_len, "out of memory");
            rc = -1;
        }
    for (size_t i = 0; rc == 0 && i < li->n_cert_dirs; i++)
        rc = add_dir(&l, li->cert_dirs[i], err, err_len);
    struct moat_devcert_paths *dev = NULL;
    if (rc == 0 && l.n == 0) {
        dev = malloc(sizeof(*dev));
        if (dev == NULL) {
            snprintf(err, err_len, "out of memory");
            rc = -1;
        } else if ((rc = moat_devcert_ensure(cfg->state_dir, dev, err, err_len)) == 0) {
            moat_log(MOAT_LOG_INFO, "main development certificate %s cert=%s ca=%s (trust it: "
                     "curl --cacert %s)", dev->is_created ? "created" : "reused", dev->cert,
                     dev->ca_cert, dev->ca_cert);
            rc = add_pair(&l, dev->cert, dev->key);
        }
    }
    if (rc == 0) {
        struct moat_tls_opts opts = {.pairs = l.pairs, .n_pairs = l.n,
                                     .min_version = li->tls_min, .strict_sni = li->strict_sni,
                                     .client_auth = li->client_auth,
                                     .client_ca_file = li->client_ca_file,
                                     .client_crl_file = li->client_crl_file};
        rc = moat_tls_ctx_new(&opts, out, err, err_len);
    }
    free(dev);
    pair_list_free(&l);
    return rc;
}

/* Two listeners with the same files and options share one loaded context. */
static int same_tls(const struct moat_cfg_listener *a, const struct moat_cfg_listener *b)
{
    if (a->n_certs != b->n_certs || a->n_cert_dirs != b->n_cert_dirs || a->tls_min != b->tls_min ||
        a->strict_sni != b->strict_sni || a->client_auth != b->client_auth ||
        (a->client_auth != 0 && (strcmp(a->client_ca_file, b->client_ca_file) != 0 ||
                                 (a->client_crl_file == NULL) != (b->client_crl_file == NULL) ||
                                 (a->client_crl_file != NULL &&
                                  strcmp(a->client_crl_file, b->client_crl_file) != 0))))
        return 0;
    for (size_t i = 0; i < a->n_certs; i++)
        if (strcmp(a->certs[i].cert_file, b->certs[i].cert_file) != 0 ||
            strcmp(a->certs[i].key_file, b->certs[i].key_file) != 0)
            return 0;
    for (size_t i = 0; i < a->n_cert_dirs; i++)
        if (strcmp(a->cert_dirs[i], b->cert_dirs[i]) != 0)
            return 0;
    return 1;
}

int moat_certfiles_load_all(const struct moat_cfg *cfg, struct moat_tls_ctx **out, char *err,
                            size_t err_len)
{
    for (size_t l = 0; l < cfg->n_listeners; l++) {
        for (size_t k = 0; k < l && out[l] == NULL; k++) {
            if (same_tls(&cfg->listeners[k], &cfg->listeners[l])) {
                moat_tls_ctx_ref(out[k]);
                out[l] = out[k];
            }
        }
        if (out[l] == NULL &&
            moat_certfiles_load(cfg, &cfg->listeners[l], &out[l], err, err_len) != 0)
            return -1;
    }
    return 0;
}
