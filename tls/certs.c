/* tls/certs.c: which certificate serves which name. Pairs whose leaves name the same set of
 * hosts form one site (at most one ECDSA and one RSA pair: mbedTLS gives each client the one it
 * supports); every name of a site's leaves (its subjectAltName dNSNames, or its subject's CN
 * when it has none) points to it, in a sorted index of exact names and one of wildcard
 * parents ("*.example.com" is indexed as "example.com"). A name listed by two sites belongs
 * to the first. Matching follows RFC 6125 §6.4.3: case-insensitive, one trailing dot ignored,
 * a wildcard is the whole left-most label and covers exactly one label. */
#include "tls/internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/asn1.h>
#include <mbedtls/oid.h>
#include <mbedtls/x509.h>

/* A name of one leaf, lower case, and the pair it came from. */
struct leaf_name {
    char *name;  /* owned until moved into the index */
    size_t pair;
    int is_wild; /* "*.": name is the parent */
};

static int name_cmp(const void *a, const void *b)
{
    return strcmp(((const struct moat_tls_name *)a)->name, ((const struct moat_tls_name *)b)->name);
}

#define HOST_MAX 253

/* Lower-cased copy of len bytes into out (HOST_MAX + 1 bytes); a wildcard's "*." is dropped and
 * *is_wild set. 0, or -1 for what cannot be a host name (empty, a partial wildcard such as
 * "w*.example.com", bytes outside letters, digits, '-', '.', '_'). */
static int host_name(const unsigned char *p, size_t len, char *out, int *is_wild)
{
    *is_wild = len > 2 && p[0] == '*' && p[1] == '.';
    if (*is_wild) {
        p += 2;
        len -= 2;
    }
    if (len > 0 && p[len - 1] == '.')
        len--;
    if (len == 0 || len > HOST_MAX)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!isalnum(p[i]) && p[i] != '-' && p[i] != '.' && p[i] != '_')
            return -1;
        out[i] = (char)tolower(p[i]);
    }
    out[len] = '\0';
    return 0;
}

/* host_name() into a new string, or NULL. */
static char *host_name_dup(const unsigned char *p, size_t len, int *is_wild)
{
    char name[HOST_MAX + 1];
    return host_name(p, len, name, is_wild) == 0 ? strdup(name) : NULL;
}

/* Appends every host name of pair's leaf to *names (grown as needed). 0 or -1 (memory). */
static int leaf_names(const mbedtls_x509_crt *leaf, size_t pair, struct leaf_name **names,
                      size_t *n, size_t *cap)
{
    const mbedtls_x509_sequence *san = &leaf->subject_alt_names;
    int has_san = 0;
    for (; san != NULL && san->buf.p != NULL; san = san->next) {
        if (san->buf.tag != (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_DNS_NAME))
            continue;
        has_san = 1;
        if (*n == *cap) {
            size_t bigger = *cap ? *cap * 2 : 16;
            struct leaf_name *grown = realloc(*names, bigger * sizeof(*grown));
            if (grown == NULL)
                return -1;
            *names = grown;
            *cap = bigger;
        }
        struct leaf_name *ln = &(*names)[*n];
        ln->name = host_name_dup(san->buf.p, san->buf.len, &ln->is_wild);
        ln->pair = pair;
        if (ln->name != NULL)
            (*n)++;
    }
    if (has_san)
        return 0;
    for (const mbedtls_x509_name *dn = &leaf->subject; dn != NULL; dn = dn->next) {
        if (dn->oid.p == NULL || MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &dn->oid) != 0)
            continue;
        struct leaf_name *grown = realloc(*names, (*n + 1) * sizeof(*grown));
        if (grown == NULL)
            return -1;
        *names = grown;
        *cap = *n + 1;
        grown[*n].name = host_name_dup(dn->val.p, dn->val.len, &grown[*n].is_wild);
        grown[*n].pair = pair;
        if (grown[*n].name != NULL)
            (*n)++;
    }
    return 0;
}

/* The names of pair as one text ("a.test\n*.b.test\n"), to compare leaves' name sets. */
static char *name_set(const struct leaf_name *names, size_t n, size_t pair)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        if (names[i].pair == pair)
            len += strlen(names[i].name) + 3;
    char *out = malloc(len);
    if (out == NULL)
        return NULL;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        if (names[i].pair == pair)
            strcat(strcat(strcat(out, names[i].is_wild ? "*." : ""), names[i].name), "\n");
    return out;
}

int moat_tls_sites_build(struct moat_tls_ctx *ctx, char *err, size_t err_len)
{
    struct leaf_name *names = NULL;
    size_t n = 0, cap = 0;
    char **sets = calloc(ctx->n_certs, sizeof(*sets));
    ctx->sites = calloc(ctx->n_certs, sizeof(*ctx->sites));
    ctx->pair_site = calloc(ctx->n_certs, sizeof(*ctx->pair_site));
    int rc = sets != NULL && ctx->sites != NULL && ctx->pair_site != NULL ? 0 : -1;
    for (size_t p = 0; rc == 0 && p < ctx->n_certs; p++)
        rc = leaf_names(&ctx->certs[p].chain, p, &names, &n, &cap);
    for (size_t p = 0; rc == 0 && p < ctx->n_certs; p++)
        rc = (sets[p] = name_set(names, n, p)) != NULL ? 0 : -1;
    if (rc != 0)
        snprintf(err, err_len, "out of memory");
    /* Sites: a pair joins the first site with the same names and no pair of its key type. */
    for (size_t p = 0; rc == 0 && p < ctx->n_certs; p++) {
        mbedtls_pk_type_t type = mbedtls_pk_get_type(&ctx->certs[p].key);
        size_t s = 0;
        for (; s < ctx->n_sites; s++) {
            struct moat_tls_site *site = &ctx->sites[s];
            if (strcmp(sets[site->pair[0]], sets[p]) != 0)
                continue;
            if (site->n_pairs == 2 ||
                mbedtls_pk_get_type(&ctx->certs[site->pair[0]].key) == type) {
                snprintf(err, err_len, "%s: a second certificate of the same key type for the "
                         "same names (one ECDSA and one RSA pair per set of names)",
                         ctx->certs[p].cert_file);
                rc = -1;
            }
            break;
        }
        if (rc != 0)
            break;
        if (s == ctx->n_sites) {
            ctx->n_sites++;
            /* FNV-1a over the names and the SNI policy: stable across reloads and replicas. */
            uint64_t h = 1469598103934665603ull ^ (uint64_t)ctx->strict_sni ^
                         (uint64_t)ctx->client_auth << 8;
            for (const char *c = sets[p]; *c != '\0'; c++)
                h = (h ^ (unsigned char)*c) * 1099511628211ull;
            ctx->sites[s].binding = h;
        }
        ctx->sites[s].pair[ctx->sites[s].n_pairs++] = p;
        ctx->pair_site[p] = s;
    }
    /* The index: each name once, for the first site that lists it. */
    size_t n_exact = 0, n_wild = 0;
    for (size_t i = 0; i < n; i++)
        (names[i].is_wild ? &n_wild : &n_exact)[0]++;
    ctx->exact = rc == 0 ? calloc(n_exact + 1, sizeof(*ctx->exact)) : NULL;
    ctx->wild = rc == 0 ? calloc(n_wild + 1, sizeof(*ctx->wild)) : NULL;
    if (rc == 0 && (ctx->exact == NULL || ctx->wild == NULL)) {
        snprintf(err, err_len, "out of memory");
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct moat_tls_name *to = names[i].is_wild ? &ctx->wild[ctx->n_wild++]
                                                    : &ctx->exact[ctx->n_exact++];
        to->name = names[i].name;
        to->site = ctx->pair_site[names[i].pair];
        names[i].name = NULL; /* the index owns it */
    }
    if (rc == 0) { /* equal names stay side by side: the lookup takes the lowest site */
        qsort(ctx->exact, ctx->n_exact, sizeof(*ctx->exact), name_cmp);
        qsort(ctx->wild, ctx->n_wild, sizeof(*ctx->wild), name_cmp);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i].name);
    free(names);
    for (size_t p = 0; sets != NULL && p < ctx->n_certs; p++)
        free(sets[p]);
    free(sets);
    return rc;
}

void moat_tls_sites_free(struct moat_tls_ctx *ctx)
{
    for (size_t i = 0; i < ctx->n_exact; i++)
        free(ctx->exact[i].name);
    for (size_t i = 0; i < ctx->n_wild; i++)
        free(ctx->wild[i].name);
    free(ctx->exact);
    free(ctx->wild);
    free(ctx->sites);
    free(ctx->pair_site);
}

/* The lowest site among index entries equal to name, or -1. */
static long find_in(const struct moat_tls_name *index, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) { /* the first entry not below name */
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(index[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    long best = -1;
    for (; lo < n && strcmp(index[lo].name, name) == 0; lo++)
        if (best < 0 || (long)index[lo].site < best)
            best = (long)index[lo].site;
    return best;
}

long moat_tls_site_find(const struct moat_tls_ctx *ctx, const char *name, size_t len)
{
    char host[HOST_MAX + 1];
    int is_wild;
    if (host_name((const unsigned char *)name, len, host, &is_wild) != 0 || is_wild)
        return -1; /* a client asks for a host, never for "*.x" */
    long site = find_in(ctx->exact, ctx->n_exact, host);
    const char *dot = strchr(host, '.');
    if (site < 0 && dot != NULL && dot[1] != '\0')
        site = find_in(ctx->wild, ctx->n_wild, dot + 1); /* one label only */
    return site;
}
