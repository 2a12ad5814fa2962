/* tls/context.c: certificates and keys (shared, read-only, refcounted) and each worker's mbedTLS
 * server configuration over them. */
#include "tls/tls.h"
#include "tls/internal.h"

#include <errno.h>
#include <psa/crypto.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/build_info.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#if defined(MOAT_TLS_ENGINE_PROJECT)
#include <openssl/crypto.h> /* the accelerator's version, for the logs */
#endif

/* Static because mbedTLS keeps the pointers for the life of every configuration. Suites are in
 * our order of preference for TLS 1.2 (TLS 1.3 takes the client's first supported suite). Only
 * ECDHE + AEAD: forward secrecy and no CBC padding oracles. */
static const int ciphersuites[] = {
    MBEDTLS_TLS1_3_AES_128_GCM_SHA256,
    MBEDTLS_TLS1_3_AES_256_GCM_SHA384,
    MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};

/* Without an explicit list mbedTLS also offers FFDHE up to 8192 bits: a client asking only for
 * that costs hundreds of milliseconds of CPU per handshake. */
static const uint16_t groups[] = {
    MBEDTLS_SSL_IANA_TLS_GROUP_X25519,
    MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
    MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1,
    MBEDTLS_SSL_IANA_TLS_GROUP_NONE,
};

static const char *alpn[] = {"http/1.1", NULL};


void moat_tls_strerror(int code, char *buf, size_t len)
{
    mbedtls_strerror(code, buf, len);
}

const char *moat_tls_engine_describe(void)
{
    static char text[128];
    if (text[0] == '\0') {
#if defined(MOAT_TLS_ENGINE_PROJECT)
        snprintf(text, sizeof(text), "mbedTLS %s, moat's build, accelerated by OpenSSL %s",
                 MBEDTLS_VERSION_STRING, OpenSSL_version(OPENSSL_VERSION_STRING));
#else
        snprintf(text, sizeof(text), "mbedTLS %s, Debian's library", MBEDTLS_VERSION_STRING);
#endif
    }
    return text;
}

int moat_tls_global_init(char *err, size_t err_len)
{
    moat_tls_alloc_init();
    psa_status_t st = psa_crypto_init();
    if (st != PSA_SUCCESS) {
        snprintf(err, err_len, "PSA crypto initialisation failed (%d)", (int)st);
        return -1;
    }
    return moat_tls_tickets_init(err, err_len);
}

void moat_tls_global_free(void)
{
    moat_tls_tickets_free();
    mbedtls_psa_crypto_free();
}

/* Reads a whole file plus a terminating NUL (mbedTLS's PEM parser needs it). */
char *moat_tls_read_file(const char *path, size_t *len, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_len, "%s: cannot read: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1 || cap >= (1u << 24))
            break;
        char *bigger = realloc(buf, cap * 2);
        if (bigger == NULL) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    int failed = ferror(f);
    fclose(f);
    if (buf == NULL || failed) {
        snprintf(err, err_len, "%s: cannot read: %s", path, buf == NULL ? "out of memory" : "I/O error");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n + 1;
    return buf;
}

/* A one-off RNG for key parsing and pair checks at start-up. */
struct start_rng {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
};

static int start_rng_init(struct start_rng *r)
{
    mbedtls_entropy_init(&r->entropy);
    mbedtls_ctr_drbg_init(&r->drbg);
    return mbedtls_ctr_drbg_seed(&r->drbg, mbedtls_entropy_func, &r->entropy,
                                 (const unsigned char *)"moat-start", 10);
}

static void start_rng_free(struct start_rng *r)
{
    mbedtls_ctr_drbg_free(&r->drbg);
    mbedtls_entropy_free(&r->entropy);
}

/* "ECDSA P-256", "RSA 2048", or NULL for a key moat does not serve with. */
static const char *key_kind(const mbedtls_pk_context *pk, char *buf, size_t len)
{
    mbedtls_pk_type_t t = mbedtls_pk_get_type(pk);
    if (t == MBEDTLS_PK_RSA) {
        size_t bits = mbedtls_pk_get_bitlen(pk);
        if (bits < 2048)
            return NULL;
        snprintf(buf, len, "RSA %zu", bits);
        return buf;
    }
    if (t == MBEDTLS_PK_ECKEY || t == MBEDTLS_PK_ECDSA) {
        mbedtls_ecp_group_id g = mbedtls_ecp_keypair_get_group_id(mbedtls_pk_ec(*pk));
        if (g == MBEDTLS_ECP_DP_SECP256R1)
            snprintf(buf, len, "ECDSA P-256");
        else if (g == MBEDTLS_ECP_DP_SECP384R1)
            snprintf(buf, len, "ECDSA P-384");
        else
            return NULL;
        return buf;
    }
    return NULL;
}

static int load_pair(const struct moat_tls_pair *p, struct moat_tls_cert *c, struct start_rng *rng,
                     char *kind, size_t kind_len, char *err, size_t err_len)
{
    char why[160];
    size_t len;
    char *pem = moat_tls_read_file(p->cert_file, &len, err, err_len);
    if (pem == NULL)
        return -1;
    int rc = mbedtls_x509_crt_parse(&c->chain, (const unsigned char *)pem, len);
    free(pem);
    if (rc != 0) {
        if (rc > 0)
            snprintf(why, sizeof(why), "%d certificate(s) in it could not be parsed", rc);
        else
            mbedtls_strerror(rc, why, sizeof(why));
        snprintf(err, err_len, "%s: not a PEM certificate chain: %s", p->cert_file, why);
        return -1;
    }
    pem = moat_tls_read_file(p->key_file, &len, err, err_len);
    if (pem == NULL)
        return -1;
    rc = mbedtls_pk_parse_key(&c->key, (const unsigned char *)pem, len, NULL, 0,
                              mbedtls_ctr_drbg_random, &rng->drbg);
    mbedtls_platform_zeroize(pem, len);
    free(pem);
    if (rc != 0) {
        mbedtls_strerror(rc, why, sizeof(why));
        snprintf(err, err_len, "%s: not a PEM private key (encrypted keys are not supported): %s",
                 p->key_file, why);
        return -1;
    }
    if (key_kind(&c->key, kind, kind_len) == NULL) {
        snprintf(err, err_len, "%s: unsupported key: use ECDSA P-256 or P-384, or RSA of 2048 bits "
                 "or more", p->key_file);
        return -1;
    }
    if (mbedtls_pk_check_pair(&c->chain.pk, &c->key, mbedtls_ctr_drbg_random, &rng->drbg) != 0) {
        snprintf(err, err_len, "%s: key does not match certificate %s", p->key_file, p->cert_file);
        return -1;
    }
    return 0;
}

/* The CAs (and CRL) client certificates are checked against. 0, or -1 with err. */
static int load_client_auth(struct moat_tls_ctx *ctx, const struct moat_tls_opts *opts,
                            char *err, size_t err_len)
{
    ctx->client_auth = opts->client_auth;
    if (opts->client_auth == 0)
        return 0;
    const char *files[2] = {opts->client_ca_file, opts->client_crl_file};
    for (int i = 0; i < 2; i++) {
        if (files[i] == NULL)
            continue;
        size_t len;
        char *pem = moat_tls_read_file(files[i], &len, err, err_len);
        if (pem == NULL)
            return -1;
        int rc = -1;
#if defined(MBEDTLS_X509_CRL_PARSE_C)
        rc = i == 0 ? mbedtls_x509_crt_parse(&ctx->client_ca, (const unsigned char *)pem, len)
                    : mbedtls_x509_crl_parse(&ctx->client_crl, (const unsigned char *)pem, len);
#else
        if (i == 0)
            rc = mbedtls_x509_crt_parse(&ctx->client_ca, (const unsigned char *)pem, len);
#endif
        free(pem);
        if (rc != 0) {
            char why[160] = "this TLS engine reads no CRLs";
            if (rc != -1)
                mbedtls_strerror(rc, why, sizeof(why));
            snprintf(err, err_len, "%s: not a PEM %s: %s", files[i],
                     i == 0 ? "file of CA certificates" : "CRL", why);
            return -1;
        }
        ctx->has_crl |= i == 1;
    }
    if (opts->client_ca_file == NULL) {
        snprintf(err, err_len, "client certificates need a CA file");
        return -1;
    }
    return 0;
}

#define DESCRIBED_PAIRS 4 /* the start-up line names this many pairs, then counts the rest */

int moat_tls_ctx_new(const struct moat_tls_opts *opts, struct moat_tls_ctx **out, char *err,
                     size_t err_len)
{
    *out = NULL;
    if (opts->n_pairs < 1) {
        snprintf(err, err_len, "give at least one certificate/key pair");
        return -1;
    }
    struct moat_tls_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx != NULL)
        ctx->certs = calloc(opts->n_pairs, sizeof(*ctx->certs));
    if (ctx == NULL || ctx->certs == NULL) {
        free(ctx);
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    atomic_init(&ctx->refs, 1);
    ctx->tls13_only = opts->min_version == 13;
    ctx->strict_sni = opts->strict_sni;
    mbedtls_x509_crt_init(&ctx->client_ca);
    mbedtls_x509_crl_init(&ctx->client_crl);
    struct start_rng rng;
    int rc = start_rng_init(&rng);
    if (rc != 0) {
        snprintf(err, err_len, "cannot seed the random generator (-0x%04x)", (unsigned)-rc);
        goto fail;
    }
    size_t used = 0;
    for (size_t i = 0; i < opts->n_pairs; i++) {
        struct moat_tls_cert *c = &ctx->certs[i];
        mbedtls_x509_crt_init(&c->chain);
        mbedtls_pk_init(&c->key);
        ctx->n_certs = i + 1;
        c->cert_file = strdup(opts->pairs[i].cert_file);
        char kind[32];
        if (c->cert_file == NULL) {
            snprintf(err, err_len, "out of memory");
            goto fail;
        }
        if (load_pair(&opts->pairs[i], c, &rng, kind, sizeof(kind), err, err_len) != 0)
            goto fail;
        char dn[256];
        if (mbedtls_x509_dn_gets(dn, sizeof(dn), &c->chain.subject) < 0)
            snprintf(dn, sizeof(dn), "?");
        if (i < DESCRIBED_PAIRS)
            used += (size_t)snprintf(ctx->describe + used, sizeof(ctx->describe) - used,
                                     "%s%s %s", i ? ", " : "", kind, dn);
        else if (i == opts->n_pairs - 1)
            used += (size_t)snprintf(ctx->describe + used, sizeof(ctx->describe) - used,
                                     " and %zu more", opts->n_pairs - DESCRIBED_PAIRS);
        if (used >= sizeof(ctx->describe))
            used = sizeof(ctx->describe) - 1;
    }
    if (load_client_auth(ctx, opts, err, err_len) != 0 ||
        moat_tls_sites_build(ctx, err, err_len) != 0)
        goto fail;
    start_rng_free(&rng);
    *out = ctx;
    return 0;
fail:
    start_rng_free(&rng);
    moat_tls_ctx_unref(ctx);
    return -1;
}

void moat_tls_ctx_ref(struct moat_tls_ctx *ctx)
{
    atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
}

void moat_tls_ctx_unref(struct moat_tls_ctx *ctx)
{
    if (ctx == NULL || atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < ctx->n_certs; i++) {
        mbedtls_x509_crt_free(&ctx->certs[i].chain);
        mbedtls_pk_free(&ctx->certs[i].key);
        free(ctx->certs[i].cert_file);
    }
    moat_tls_sites_free(ctx);
    mbedtls_x509_crt_free(&ctx->client_ca);
    mbedtls_x509_crl_free(&ctx->client_crl);
    free(ctx->certs);
    free(ctx);
}

const char *moat_tls_ctx_describe(const struct moat_tls_ctx *ctx)
{
    return ctx->describe;
}

size_t moat_tls_ctx_count(const struct moat_tls_ctx *ctx)
{
    return ctx->n_certs;
}

const char *moat_tls_ctx_cert(const struct moat_tls_ctx *ctx, size_t i, int64_t *not_after)
{
    const mbedtls_x509_time *t = &ctx->certs[i].chain.valid_to;
    struct tm tm = {.tm_year = t->year - 1900, .tm_mon = t->mon - 1, .tm_mday = t->day,
                    .tm_hour = t->hour, .tm_min = t->min, .tm_sec = t->sec};
    *not_after = (int64_t)timegm(&tm); /* a date's conversion, not a clock */
    return ctx->certs[i].cert_file;
}

/* Gives key (parsed, shared by every worker) a copy of this worker's own in *out. */
static int copy_key(struct moat_tls_server *srv, const mbedtls_pk_context *key,
                    mbedtls_pk_context *out, mbedtls_svc_key_id_t *id)
{
    *id = MBEDTLS_SVC_KEY_ID_INIT;
#if defined(MBEDTLS_USE_PSA_CRYPTO)
    (void)srv;
    psa_key_attributes_t attr = PSA_KEY_ATTRIBUTES_INIT;
    int rc = mbedtls_pk_get_psa_attributes(key, PSA_KEY_USAGE_SIGN_HASH, &attr);
    if (rc != 0)
        return rc;
    if (mbedtls_pk_get_type(key) == MBEDTLS_PK_RSA) {
        /* TLS 1.2 signs with PKCS#1 v1.5, TLS 1.3 with PSS (RFC 8446 §4.2.3): allow both. */
        psa_set_key_algorithm(&attr, PSA_ALG_RSA_PKCS1V15_SIGN(PSA_ALG_ANY_HASH));
        psa_set_key_enrollment_algorithm(&attr, PSA_ALG_RSA_PSS(PSA_ALG_ANY_HASH));
    } else {
        psa_set_key_algorithm(&attr, PSA_ALG_ECDSA(PSA_ALG_ANY_HASH)); /* randomized */
    }
    psa_set_key_usage_flags(&attr, PSA_KEY_USAGE_SIGN_HASH);
    rc = mbedtls_pk_import_into_psa(key, &attr, id);
    psa_reset_key_attributes(&attr);
    if (rc == 0)
        rc = mbedtls_pk_setup_opaque(out, *id);
    return rc;
#else
    /* A DER round trip: the only public way to copy a parsed key. */
    unsigned char der[8192];
    int len = mbedtls_pk_write_key_der((mbedtls_pk_context *)key, der, sizeof(der));
    if (len < 0)
        return len;
    int rc = mbedtls_pk_parse_key(out, der + sizeof(der) - len, (size_t)len, NULL, 0,
                                  mbedtls_ctr_drbg_random, &srv->drbg);
    mbedtls_platform_zeroize(der, sizeof(der));
    return rc;
#endif
}

int moat_tls_server_key(struct moat_tls_server *srv, size_t pair, mbedtls_pk_context **out)
{
    if (!srv->has_key[pair]) {
        mbedtls_pk_init(&srv->keys[pair]);
        int rc = copy_key(srv, &srv->ctx->certs[pair].key, &srv->keys[pair],
                          &srv->key_ids[pair]);
        if (rc != 0) {
            mbedtls_pk_free(&srv->keys[pair]);
            psa_destroy_key(srv->key_ids[pair]);
            return rc;
        }
        srv->has_key[pair] = 1;
    }
    *out = &srv->keys[pair];
    return 0;
}

/* The ticket callbacks get the server so that they know the session whose handshake runs:
 * its site binds the ticket (tickets.c), and a parsed one marks it resumed (session.c). */
static int ticket_write(void *p_ticket, const mbedtls_ssl_session *session, unsigned char *start,
                        const unsigned char *end, size_t *tlen, uint32_t *lifetime)
{
    struct moat_tls_server *srv = p_ticket;
    if (srv->hs_current == NULL)
        return MBEDTLS_ERR_SSL_INTERNAL_ERROR; /* only ever called inside a handshake step */
    return moat_tls_tickets_write(moat_tls_session_binding(srv->hs_current), session, start,
                                  end, tlen, lifetime);
}

struct moat_tls_server *moat_tls_server_new(struct moat_tls_ctx *ctx, char *err, size_t err_len)
{
    struct moat_tls_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    moat_tls_ctx_ref(ctx);
    srv->ctx = ctx;
    mbedtls_ssl_config_init(&srv->conf);
    mbedtls_entropy_init(&srv->entropy);
    mbedtls_ctr_drbg_init(&srv->drbg);
    const char *step = "seeding the random generator";
    int rc = mbedtls_ctr_drbg_seed(&srv->drbg, mbedtls_entropy_func, &srv->entropy,
                                   (const unsigned char *)"moat-worker", 11);
    if (rc == 0) {
        step = "configuring TLS defaults";
        rc = mbedtls_ssl_config_defaults(&srv->conf, MBEDTLS_SSL_IS_SERVER,
                                         MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    }
    srv->keys = calloc(ctx->n_certs, sizeof(*srv->keys));
    srv->key_ids = calloc(ctx->n_certs, sizeof(*srv->key_ids));
    srv->has_key = calloc(ctx->n_certs, sizeof(*srv->has_key));
    if (rc == 0 && (srv->keys == NULL || srv->key_ids == NULL || srv->has_key == NULL)) {
        step = "allocating";
        rc = MBEDTLS_ERR_SSL_ALLOC_FAILED;
    }
    if (rc == 0) {
        step = "setting ALPN";
        rc = mbedtls_ssl_conf_alpn_protocols(&srv->conf, alpn);
    }
    if (rc != 0) {
        char why[160];
        mbedtls_strerror(rc, why, sizeof(why));
        snprintf(err, err_len, "TLS set-up failed %s: %s", step, why);
        moat_tls_server_free(srv);
        return NULL;
    }
    mbedtls_ssl_conf_rng(&srv->conf, mbedtls_ctr_drbg_random, &srv->drbg);
    mbedtls_ssl_conf_min_tls_version(&srv->conf, ctx->tls13_only ? MBEDTLS_SSL_VERSION_TLS1_3
                                                                  : MBEDTLS_SSL_VERSION_TLS1_2);
    mbedtls_ssl_conf_max_tls_version(&srv->conf, MBEDTLS_SSL_VERSION_TLS1_3);
    mbedtls_ssl_conf_ciphersuites(&srv->conf, ciphersuites);
    mbedtls_ssl_conf_groups(&srv->conf, groups);
#if defined(MBEDTLS_SSL_RENEGOTIATION) /* compiled out of the project's engine */
    mbedtls_ssl_conf_renegotiation(&srv->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
    mbedtls_ssl_conf_sni(&srv->conf, moat_tls_session_on_sni, NULL); /* records the name */
    if (ctx->client_auth != 0) {
        /* OPTIONAL lets the handshake end even when the client's certificate fails: session.c
         * refuses that one itself, and serves a client that sent none. */
        mbedtls_ssl_conf_authmode(&srv->conf, ctx->client_auth == 2 ? MBEDTLS_SSL_VERIFY_REQUIRED
                                                                    : MBEDTLS_SSL_VERIFY_OPTIONAL);
        mbedtls_ssl_conf_ca_chain(&srv->conf, &ctx->client_ca,
                                  ctx->has_crl ? &ctx->client_crl : NULL);
    }
    mbedtls_ssl_conf_cert_cb(&srv->conf, moat_tls_session_on_cert); /* picks the site */
    /* A TLS 1.3 ticket does not keep the client's certificate, so a resumed session would
     * reach the backend without it: a listener that asks for client certificates neither
     * issues nor accepts tickets. */
    if (ctx->client_auth == 0)
        mbedtls_ssl_conf_session_tickets_cb(&srv->conf, ticket_write, moat_tls_ticket_parse,
                                            srv);
    return srv;
}

void moat_tls_server_free(struct moat_tls_server *srv)
{
    if (srv == NULL)
        return;
    moat_tls_session_pool_drain(srv);
    mbedtls_ssl_config_free(&srv->conf);
    for (size_t i = 0; srv->has_key != NULL && i < srv->ctx->n_certs; i++) {
        if (!srv->has_key[i])
            continue;
        mbedtls_pk_free(&srv->keys[i]); /* an opaque context leaves its PSA key alone */
        psa_destroy_key(srv->key_ids[i]);
    }
    free(srv->keys);
    free(srv->key_ids);
    free(srv->has_key);
    mbedtls_ctr_drbg_free(&srv->drbg);
    mbedtls_entropy_free(&srv->entropy);
    moat_tls_ctx_unref(srv->ctx);
    free(srv);
}

void moat_tls_server_set_keylog(struct moat_tls_server *srv, moat_tls_keylog_cb cb, void *arg)
{
    srv->keylog = cb;
    srv->keylog_arg = arg;
}
