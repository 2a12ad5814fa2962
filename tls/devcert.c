/* tls/devcert.c: a local development CA and a localhost certificate it signs, made with mbedTLS's
 * own key and X.509 writing APIs, so a first run needs no openssl and no flags. */
#include "tls/tls.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#define PEM_MAX 4096
#define HOUR_S 3600
#define DAY_S 86400
#define CA_DAYS 3650
#define LEAF_DAYS 825 /* the longest lifetime clients accept for certificates under a local CA */

struct rng {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
};

/* "YYYYMMDDhhmmss" in UTC, the form mbedtls_x509write_crt_set_validity() takes. */
static void x509_time(time_t t, char out[15])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 15, "%Y%m%d%H%M%S", &tm);
}

static int new_p256_key(mbedtls_pk_context *pk, struct rng *r)
{
    int rc = mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (rc == 0)
        rc = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*pk),
                                 mbedtls_ctr_drbg_random, &r->drbg);
    return rc;
}

/* What differs between the CA and the leaf. */
struct cert_spec {
    const char *subject;
    const char *issuer;
    mbedtls_pk_context *subject_key;
    mbedtls_pk_context *issuer_key;
    time_t not_before, not_after;
    int is_ca;
};

/* Writes one certificate as PEM into out (PEM_MAX bytes). */
static int write_cert(const struct cert_spec *spec, struct rng *r, char *out)
{
    mbedtls_x509write_cert crt;
    mbedtls_x509write_crt_init(&crt);
    mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&crt, spec->subject_key);
    mbedtls_x509write_crt_set_issuer_key(&crt, spec->issuer_key);

    unsigned char serial[16];
    int rc = mbedtls_ctr_drbg_random(&r->drbg, serial, sizeof(serial));
    serial[0] &= 0x7f; /* a positive INTEGER */
    serial[0] |= 0x01; /* and no leading zero byte */
    char from[15], to[15];
    x509_time(spec->not_before, from);
    x509_time(spec->not_after, to);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_serial_raw(&crt, serial, sizeof(serial));
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_validity(&crt, from, to);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_subject_name(&crt, spec->subject);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_issuer_name(&crt, spec->issuer);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_basic_constraints(&crt, spec->is_ca, spec->is_ca ? 0 : -1);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_subject_key_identifier(&crt);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_authority_key_identifier(&crt);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_key_usage(
            &crt, spec->is_ca ? MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_CRL_SIGN
                              : MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
    if (rc == 0 && !spec->is_ca) {
        /* serverAuth, and the names clients check: localhost, 127.0.0.1 and ::1. */
        mbedtls_asn1_sequence eku = {
            .buf = {.tag = MBEDTLS_ASN1_OID,
                    .len = MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH),
                    .p = (unsigned char *)MBEDTLS_OID_SERVER_AUTH},
        };
        rc = mbedtls_x509write_crt_set_ext_key_usage(&crt, &eku);
        static unsigned char v4[4] = {127, 0, 0, 1};
        static unsigned char v6[16] = {[15] = 1};
        mbedtls_x509_san_list san[3] = {0};
        san[0].node.type = MBEDTLS_X509_SAN_DNS_NAME;
        san[0].node.san.unstructured_name.p = (unsigned char *)"localhost";
        san[0].node.san.unstructured_name.len = 9;
        san[0].next = &san[1];
        san[1].node.type = MBEDTLS_X509_SAN_IP_ADDRESS;
        san[1].node.san.unstructured_name.p = v4;
        san[1].node.san.unstructured_name.len = sizeof(v4);
        san[1].next = &san[2];
        san[2].node.type = MBEDTLS_X509_SAN_IP_ADDRESS;
        san[2].node.san.unstructured_name.p = v6;
        san[2].node.san.unstructured_name.len = sizeof(v6);
        if (rc == 0)
            rc = mbedtls_x509write_crt_set_subject_alternative_name(&crt, san);
    }
    if (rc == 0)
        rc = mbedtls_x509write_crt_pem(&crt, (unsigned char *)out, PEM_MAX,
                                       mbedtls_ctr_drbg_random, &r->drbg);
    mbedtls_x509write_crt_free(&crt);
    return rc;
}

static char *key_pem(mbedtls_pk_context *pk, int *rc)
{
    char *out = malloc(PEM_MAX);
    if (out == NULL) {
        *rc = MBEDTLS_ERR_PK_ALLOC_FAILED;
        return NULL;
    }
    *rc = mbedtls_pk_write_key_pem(pk, (unsigned char *)out, PEM_MAX);
    if (*rc != 0) {
        free(out);
        return NULL;
    }
    return out;
}

int moat_tls_devcert_make(time_t now, struct moat_tls_devcert *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof(*out));
    struct rng r;
    mbedtls_entropy_init(&r.entropy);
    mbedtls_ctr_drbg_init(&r.drbg);
    mbedtls_pk_context ca_key, leaf_key;
    mbedtls_pk_init(&ca_key);
    mbedtls_pk_init(&leaf_key);
    char *ca = malloc(PEM_MAX), *leaf = malloc(2 * PEM_MAX);
    int rc = ca == NULL || leaf == NULL ? MBEDTLS_ERR_PK_ALLOC_FAILED : 0;
    if (rc == 0)
        rc = mbedtls_ctr_drbg_seed(&r.drbg, mbedtls_entropy_func, &r.entropy,
                                   (const unsigned char *)"moat-devcert", 12);
    if (rc == 0)
        rc = new_p256_key(&ca_key, &r);
    if (rc == 0)
        rc = new_p256_key(&leaf_key, &r);

    /* The time in the CA's name tells apart the CAs of several machines or state folders. */
    char ca_name[96], stamp[15];
    x509_time(now, stamp);
    snprintf(ca_name, sizeof(ca_name), "CN=moat development CA %.8s-%.6s,O=moat development",
             stamp, stamp + 8);
    struct cert_spec ca_spec = {
        .subject = ca_name,
        .issuer = ca_name,
        .subject_key = &ca_key,
        .issuer_key = &ca_key,
        .not_before = now - HOUR_S,
        .not_after = now + (time_t)CA_DAYS * DAY_S,
        .is_ca = 1,
    };
    struct cert_spec leaf_spec = {
        .subject = "CN=localhost,O=moat development",
        .issuer = ca_name,
        .subject_key = &leaf_key,
        .issuer_key = &ca_key,
        .not_before = now - HOUR_S,
        .not_after = now + (time_t)LEAF_DAYS * DAY_S,
        .is_ca = 0,
    };
    if (rc == 0)
        rc = write_cert(&ca_spec, &r, ca);
    if (rc == 0)
        rc = write_cert(&leaf_spec, &r, leaf);
    if (rc == 0) {
        /* The leaf file carries the chain: leaf, then the CA. */
        size_t n = strlen(leaf);
        snprintf(leaf + n, 2 * PEM_MAX - n, "%s", ca);
        out->ca_cert_pem = ca;
        out->leaf_cert_pem = leaf;
        ca = leaf = NULL;
        out->ca_key_pem = key_pem(&ca_key, &rc);
    }
    if (rc == 0)
        out->leaf_key_pem = key_pem(&leaf_key, &rc);
    if (rc != 0) {
        char why[128];
        mbedtls_strerror(rc, why, sizeof(why));
        snprintf(err, err_len, "cannot make the development certificate: %s", why);
        moat_tls_devcert_free(out);
    }
    free(ca);
    free(leaf);
    mbedtls_pk_free(&ca_key);
    mbedtls_pk_free(&leaf_key);
    mbedtls_ctr_drbg_free(&r.drbg);
    mbedtls_entropy_free(&r.entropy);
    return rc == 0 ? 0 : -1;
}

void moat_tls_devcert_free(struct moat_tls_devcert *dc)
{
    char **keys[] = {&dc->ca_key_pem, &dc->leaf_key_pem};
    for (size_t i = 0; i < 2; i++)
        if (*keys[i] != NULL)
            mbedtls_platform_zeroize(*keys[i], strlen(*keys[i]));
    free(dc->ca_cert_pem);
    free(dc->ca_key_pem);
    free(dc->leaf_cert_pem);
    free(dc->leaf_key_pem);
    memset(dc, 0, sizeof(*dc));
}

/* YYYYMMDDhhmmss as one comparable number. */
static int64_t x509_time_number(const mbedtls_x509_time *t)
{
    return ((((int64_t)t->year * 100 + t->mon) * 100 + t->day) * 100 + t->hour) * 10000 +
           t->min * 100 + t->sec;
}

int moat_tls_cert_file_valid_at(const char *path, time_t now, time_t margin_s)
{
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    if (mbedtls_x509_crt_parse_file(&crt, path) != 0) {
        mbedtls_x509_crt_free(&crt);
        return -1;
    }
    time_t at = now + margin_s;
    struct tm tm;
    gmtime_r(&at, &tm);
    mbedtls_x509_time t = {tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                           tm.tm_hour,        tm.tm_min,     tm.tm_sec};
    gmtime_r(&now, &tm);
    mbedtls_x509_time n = {tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                           tm.tm_hour,        tm.tm_min,     tm.tm_sec};
    int ok = x509_time_number(&crt.valid_from) <= x509_time_number(&n) &&
             x509_time_number(&t) <= x509_time_number(&crt.valid_to);
    mbedtls_x509_crt_free(&crt);
    return ok;
}
