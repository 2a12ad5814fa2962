/* tests/unit/tls/test_engine.c: the accelerator driver of the project's TLS engine, through the
 * PSA API as mbedTLS's TLS code calls it: known answers from the standards, then a comparison
 * with mbedTLS's own implementations (still compiled in, as the driver's fallback) over random
 * keys and lengths, and the driver's counts to prove it served each call. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <mbedtls/chachapoly.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdh.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/gcm.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>
#include <mbedtls/sha256.h>
#include <psa/crypto.h>

#include "tls/engine/moat_accel.h"

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;

static int setup(void **state)
{
    (void)state;
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0) != 0)
        return -1;
    return psa_crypto_init() == PSA_SUCCESS ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    mbedtls_psa_crypto_free();
    return 0;
}

static void random_bytes(void *out, size_t len)
{
    for (size_t off = 0; off < len; off += MBEDTLS_CTR_DRBG_MAX_REQUEST) {
        size_t n = len - off < MBEDTLS_CTR_DRBG_MAX_REQUEST ? len - off : MBEDTLS_CTR_DRBG_MAX_REQUEST;
        assert_int_equal(mbedtls_ctr_drbg_random(&drbg, (uint8_t *)out + off, n), 0);
    }
}

static size_t random_below(size_t n)
{
    uint32_t r;
    random_bytes(&r, sizeof(r));
    return r % n;
}

static void unhex(const char *hex, uint8_t *out, size_t len)
{
    assert_int_equal(strlen(hex), 2 * len);
    for (size_t i = 0; i < len; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

/* How many calls of entry e the driver served since the counts were *before. */
static unsigned long served_since(const struct moat_accel_counts *before, enum moat_accel_entry e)
{
    struct moat_accel_counts now;
    moat_accel_counts_get(&now);
    return now.served[e] - before->served[e];
}

static psa_key_id_t import_key(psa_key_type_t type, psa_algorithm_t alg, psa_key_usage_t usage,
                               const uint8_t *key, size_t len)
{
    psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
    psa_set_key_type(&a, type);
    psa_set_key_algorithm(&a, alg);
    psa_set_key_usage_flags(&a, usage);
    psa_key_id_t id = 0;
    assert_int_equal(psa_import_key(&a, key, len, &id), PSA_SUCCESS);
    return id;
}

/* ---- AEAD --------------------------------------------------------------------------------- */

/* The GCM specification's test case 4 (AES-128, 60 bytes, 20 bytes of AAD). */
static void test_aes_gcm_known_answer(void **state)
{
    (void)state;
    uint8_t key[16], iv[12], aad[20], pt[60], want[60 + 16], out[60 + 16], back[60];
    unhex("feffe9928665731c6d6a8f9467308308", key, 16);
    unhex("cafebabefacedbaddecaf888", iv, 12);
    unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad, 20);
    unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
          "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39", pt, 60);
    unhex("42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
          "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
          "5bc94fbc3221a5db94fae95ae7121a47", want, 76);
    struct moat_accel_counts c;
    moat_accel_counts_get(&c);
    psa_key_id_t id = import_key(PSA_KEY_TYPE_AES, PSA_ALG_GCM,
                                 PSA_KEY_USAGE_ENCRYPT | PSA_KEY_USAGE_DECRYPT, key, 16);
    size_t n;
    assert_int_equal(psa_aead_encrypt(id, PSA_ALG_GCM, iv, 12, aad, 20, pt, 60, out, sizeof(out),
                                      &n), PSA_SUCCESS);
    assert_int_equal(n, 76);
    assert_memory_equal(out, want, 76);
    assert_int_equal(served_since(&c, MOAT_ACCEL_AEAD_ENCRYPT), 1);
    assert_int_equal(psa_aead_decrypt(id, PSA_ALG_GCM, iv, 12, aad, 20, out, 76, back,
                                      sizeof(back), &n), PSA_SUCCESS);
    assert_memory_equal(back, pt, 60);
    out[75] ^= 1; /* a tampered tag is refused, and nothing of the plaintext comes out */
    memset(back, 0x55, sizeof(back));
    assert_int_equal(psa_aead_decrypt(id, PSA_ALG_GCM, iv, 12, aad, 20, out, 76, back,
                                      sizeof(back), &n), PSA_ERROR_INVALID_SIGNATURE);
    assert_int_equal(served_since(&c, MOAT_ACCEL_AEAD_DECRYPT), 2);
    psa_destroy_key(id);
}

/* AEAD against mbedTLS's own GCM and ChaCha20-Poly1305, random keys, nonces, AAD and lengths. */
static void test_aead_matches_mbedtls(void **state)
{
    (void)state;
    enum { MAX = 20000, ROUNDS = 300 };
    uint8_t *pt = malloc(MAX), *ct = malloc(MAX + 16), *ref = malloc(MAX + 16), *back = malloc(MAX);
    assert_non_null(pt);
    assert_non_null(ct);
    assert_non_null(ref);
    assert_non_null(back);
    struct moat_accel_counts c;
    moat_accel_counts_get(&c);
    for (int r = 0; r < ROUNDS; r++) {
        int kind = r % 3; /* AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 */
        size_t key_len = kind == 0 ? 16 : 32;
        uint8_t key[32], iv[12], aad[40], tag[16];
        random_bytes(key, key_len);
        random_bytes(iv, sizeof(iv));
        size_t aad_len = random_below(sizeof(aad) + 1);
        size_t len = r < 3 ? 0 : random_below(MAX + 1); /* some empty ones, as TLS sends */
        random_bytes(aad, aad_len);
        random_bytes(pt, len);
        if (kind < 2) {
            mbedtls_gcm_context g;
            mbedtls_gcm_init(&g);
            assert_int_equal(mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key,
                                                (unsigned)key_len * 8), 0);
            assert_int_equal(mbedtls_gcm_crypt_and_tag(&g, MBEDTLS_GCM_ENCRYPT, len, iv, 12, aad,
                                                       aad_len, pt, ref, 16, tag), 0);
            mbedtls_gcm_free(&g);
        } else {
            mbedtls_chachapoly_context cp;
            mbedtls_chachapoly_init(&cp);
            assert_int_equal(mbedtls_chachapoly_setkey(&cp, key), 0);
            assert_int_equal(mbedtls_chachapoly_encrypt_and_tag(&cp, len, iv, aad, aad_len, pt,
                                                                ref, tag), 0);
            mbedtls_chachapoly_free(&cp);
        }
        memcpy(ref + len, tag, 16);
        psa_algorithm_t alg = kind < 2 ? PSA_ALG_GCM : PSA_ALG_CHACHA20_POLY1305;
        psa_key_id_t id = import_key(kind < 2 ? PSA_KEY_TYPE_AES : PSA_KEY_TYPE_CHACHA20, alg,
                                     PSA_KEY_USAGE_ENCRYPT | PSA_KEY_USAGE_DECRYPT, key, key_len);
        size_t n;
        assert_int_equal(psa_aead_encrypt(id, alg, iv, 12, aad, aad_len, pt, len, ct, len + 16,
                                          &n), PSA_SUCCESS);
        assert_int_equal(n, len + 16);
        assert_memory_equal(ct, ref, len + 16);
        assert_int_equal(psa_aead_decrypt(id, alg, iv, 12, aad, aad_len, ct, len + 16, back, len,
                                          &n), PSA_SUCCESS);
        assert_int_equal(n, len);
        assert_memory_equal(back, pt, len);
        ct[random_below(len + 16)] ^= 0x80;
        assert_int_equal(psa_aead_decrypt(id, alg, iv, 12, aad, aad_len, ct, len + 16, back, len,
                                          &n), PSA_ERROR_INVALID_SIGNATURE);
        psa_destroy_key(id);
    }
    assert_int_equal(served_since(&c, MOAT_ACCEL_AEAD_ENCRYPT), ROUNDS);
    assert_int_equal(served_since(&c, MOAT_ACCEL_AEAD_DECRYPT), 2 * ROUNDS); /* good, tampered */
    free(pt);
    free(ct);
    free(ref);
    free(back);
}

/* ---- key agreement ------------------------------------------------------------------------ */

/* RFC 7748 §5.2, the first X25519 vector. */
static void test_x25519_known_answer(void **state)
{
    (void)state;
    uint8_t scalar[32], u[32], want[32], out[32];
    unhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4", scalar, 32);
    unhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c", u, 32);
    unhex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552", want, 32);
    struct moat_accel_counts c;
    moat_accel_counts_get(&c);
    psa_key_id_t id = import_key(PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_MONTGOMERY),
                                 PSA_ALG_ECDH, PSA_KEY_USAGE_DERIVE, scalar, 32);
    size_t n;
    assert_int_equal(psa_raw_key_agreement(PSA_ALG_ECDH, id, u, 32, out, sizeof(out), &n),
                     PSA_SUCCESS);
    assert_int_equal(n, 32);
    assert_memory_equal(out, want, 32);
    /* A small-order point (0) gives an all-zero secret, which RFC 8446 §7.4.2 forbids. */
    memset(u, 0, sizeof(u));
    assert_int_not_equal(psa_raw_key_agreement(PSA_ALG_ECDH, id, u, 32, out, sizeof(out), &n),
                         PSA_SUCCESS);
    assert_int_equal(served_since(&c, MOAT_ACCEL_KEY_AGREEMENT), 2);
    psa_destroy_key(id);
}

struct curve_case {
    const char *name;
    psa_ecc_family_t family;
    size_t bits;
    mbedtls_ecp_group_id group;
};
static const struct curve_case curve_cases[] = {
    {"X25519", PSA_ECC_FAMILY_MONTGOMERY, 255, MBEDTLS_ECP_DP_CURVE25519},
    {"P-256", PSA_ECC_FAMILY_SECP_R1, 256, MBEDTLS_ECP_DP_SECP256R1},
    {"P-384", PSA_ECC_FAMILY_SECP_R1, 384, MBEDTLS_ECP_DP_SECP384R1},
};

static psa_key_id_t generate(const struct curve_case *cc, psa_algorithm_t alg,
                             psa_key_usage_t usage)
{
    psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
    psa_set_key_type(&a, PSA_KEY_TYPE_ECC_KEY_PAIR(cc->family));
    psa_set_key_bits(&a, cc->bits);
    psa_set_key_algorithm(&a, alg);
    psa_set_key_usage_flags(&a, usage | PSA_KEY_USAGE_EXPORT);
    psa_key_id_t id = 0;
    assert_int_equal(psa_generate_key(&a, &id), PSA_SUCCESS);
    return id;
}

/* Key shares and secrets against mbedTLS's own ECDH, as a TLS handshake makes them. */
static void test_key_agreement_matches_mbedtls(void **state)
{
    (void)state;
    struct moat_accel_counts c;
    moat_accel_counts_get(&c);
    int rounds = 0;
    for (size_t k = 0; k < sizeof(curve_cases) / sizeof(curve_cases[0]); k++) {
        const struct curve_case *cc = &curve_cases[k];
        for (int r = 0; r < 20; r++, rounds++) {
            psa_key_id_t a = generate(cc, PSA_ALG_ECDH, PSA_KEY_USAGE_DERIVE);
            psa_key_id_t b = generate(cc, PSA_ALG_ECDH, PSA_KEY_USAGE_DERIVE);
            uint8_t pa[97], pb[97], priv[48], sa[48], sb[48];
            size_t la, lb, lp, na, nb;
            assert_int_equal(psa_export_public_key(a, pa, sizeof(pa), &la), PSA_SUCCESS);
            assert_int_equal(psa_export_public_key(b, pb, sizeof(pb), &lb), PSA_SUCCESS);
            assert_int_equal(psa_raw_key_agreement(PSA_ALG_ECDH, a, pb, lb, sa, sizeof(sa), &na),
                             PSA_SUCCESS);
            assert_int_equal(psa_raw_key_agreement(PSA_ALG_ECDH, b, pa, la, sb, sizeof(sb), &nb),
                             PSA_SUCCESS);
            assert_int_equal(na, nb);
            assert_memory_equal(sa, sb, na);
            /* mbedTLS's own arithmetic: a's public key, and the secret with b's. */
            assert_int_equal(psa_export_key(a, priv, sizeof(priv), &lp), PSA_SUCCESS);
            mbedtls_ecp_keypair kp;
            mbedtls_ecp_keypair_init(&kp);
            assert_int_equal(mbedtls_ecp_read_key(cc->group, &kp, priv, lp), 0);
            assert_int_equal(mbedtls_ecp_keypair_calc_public(&kp, mbedtls_ctr_drbg_random, &drbg),
                             0);
            mbedtls_ecp_group g;
            mbedtls_ecp_point q, peer, shared;
            mbedtls_mpi d, z;
            mbedtls_ecp_group_init(&g);
            mbedtls_ecp_point_init(&q);
            mbedtls_ecp_point_init(&peer);
            mbedtls_ecp_point_init(&shared);
            mbedtls_mpi_init(&d);
            mbedtls_mpi_init(&z);
            assert_int_equal(mbedtls_ecp_export(&kp, &g, &d, &q), 0);
            uint8_t ref[97];
            size_t lr;
            assert_int_equal(mbedtls_ecp_point_write_binary(&g, &q, MBEDTLS_ECP_PF_UNCOMPRESSED,
                                                            &lr, ref, sizeof(ref)), 0);
            assert_int_equal(lr, la);
            assert_memory_equal(ref, pa, la);
            assert_int_equal(mbedtls_ecp_point_read_binary(&g, &peer, pb, lb), 0);
            assert_int_equal(mbedtls_ecdh_compute_shared(&g, &z, &peer, &d,
                                                         mbedtls_ctr_drbg_random, &drbg), 0);
            uint8_t zb[48];
            if (cc->group == MBEDTLS_ECP_DP_CURVE25519) /* RFC 7748: little-endian */
                assert_int_equal(mbedtls_mpi_write_binary_le(&z, zb, na), 0);
            else
                assert_int_equal(mbedtls_mpi_write_binary(&z, zb, na), 0);
            assert_memory_equal(zb, sa, na);
            mbedtls_mpi_free(&z);
            mbedtls_mpi_free(&d);
            mbedtls_ecp_point_free(&shared);
            mbedtls_ecp_point_free(&peer);
            mbedtls_ecp_point_free(&q);
            mbedtls_ecp_group_free(&g);
            mbedtls_ecp_keypair_free(&kp);
            psa_destroy_key(a);
            psa_destroy_key(b);
        }
        /* A point that is not on the curve is refused (RFC 8446 §4.2.8.2). */
        if (cc->family == PSA_ECC_FAMILY_SECP_R1) {
            psa_key_id_t a = generate(cc, PSA_ALG_ECDH, PSA_KEY_USAGE_DERIVE);
            uint8_t bad[97], out[48];
            size_t n, plen = 1 + 2 * (cc->bits / 8);
            memset(bad, 0x01, sizeof(bad));
            bad[0] = 0x04;
            assert_int_not_equal(psa_raw_key_agreement(PSA_ALG_ECDH, a, bad, plen, out,
                                                       sizeof(out), &n), PSA_SUCCESS);
            psa_destroy_key(a);
        }
    }
    assert_int_equal(served_since(&c, MOAT_ACCEL_EXPORT_PUBLIC_KEY), 2 * rounds);
    assert_int_equal(served_since(&c, MOAT_ACCEL_KEY_AGREEMENT), 2 * rounds + 2); /* + bad points */
}

/* ---- signatures --------------------------------------------------------------------------- */

/* Randomized ECDSA on P-256 and P-384, checked by mbedTLS's own verifier (the driver has
 * none), with each curve's TLS hash. */
static void test_ecdsa_verifies(void **state)
{
    (void)state;
    struct moat_accel_counts c;
    moat_accel_counts_get(&c);
    int signed_n = 0;
    for (size_t k = 1; k < sizeof(curve_cases) / sizeof(curve_cases[0]); k++) {
        const struct curve_case *cc = &curve_cases[k];
        psa_algorithm_t hash = cc->bits == 256 ? PSA_ALG_SHA_256 : PSA_ALG_SHA_384;
        psa_algorithm_t alg = PSA_ALG_ECDSA(hash);
        psa_key_id_t id = generate(cc, PSA_ALG_ECDSA(PSA_ALG_ANY_HASH),
                                   PSA_KEY_USAGE_SIGN_HASH | PSA_KEY_USAGE_VERIFY_HASH);
        for (int r = 0; r < 20; r++, signed_n++) {
            uint8_t h[48], sig[96], sig2[96];
            size_t hl = PSA_HASH_LENGTH(hash), sl, sl2;
            random_bytes(h, hl);
            assert_int_equal(psa_sign_hash(id, alg, h, hl, sig, sizeof(sig), &sl), PSA_SUCCESS);
            assert_int_equal(sl, 2 * cc->bits / 8);
            assert_int_equal(psa_verify_hash(id, alg, h, hl, sig, sl), PSA_SUCCESS);
            /* randomized: the same hash signs differently */
            assert_int_equal(psa_sign_hash(id, alg, h, hl, sig2, sizeof(sig2), &sl2), PSA_SUCCESS);
            assert_memory_not_equal(sig, sig2, sl);
            signed_n++;
            h[0] ^= 1;
            assert_int_equal(psa_verify_hash(id, alg, h, hl, sig, sl),
                             PSA_ERROR_INVALID_SIGNATURE);
        }
        psa_destroy_key(id);
    }
    assert_int_equal(served_since(&c, MOAT_ACCEL_SIGN_HASH), signed_n);
}

/* RSA: PKCS#1 v1.5 signatures equal mbedTLS's own byte for byte (the padding is deterministic);
 * PSS ones pass mbedTLS's verifier. The key is the example RSA key the repository ships. */
static void test_rsa_signatures(void **state)
{
    (void)state;
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    assert_int_equal(mbedtls_pk_parse_keyfile(&pk, MOAT_SOURCE_DIR "/config/examples/certs/rsa.key",
                                              NULL, mbedtls_ctr_drbg_random, &drbg), 0);
    psa_key_attributes_t a = PSA_KEY_ATTRIBUTES_INIT;
    assert_int_equal(mbedtls_pk_get_psa_attributes(&pk, PSA_KEY_USAGE_SIGN_HASH, &a), 0);
    psa_set_key_algorithm(&a, PSA_ALG_RSA_PKCS1V15_SIGN(PSA_ALG_ANY_HASH));
    psa_set_key_enrollment_algorithm(&a, PSA_ALG_RSA_PSS(PSA_ALG_ANY_HASH));
    psa_key_id_t id = 0;
    assert_int_equal(mbedtls_pk_import_into_psa(&pk, &a, &id), 0);
    struct moat_accel_counts c;
    moat_accel_counts_get(&c);
    mbedtls_rsa_context *rsa = mbedtls_pk_rsa(pk);
    for (int r = 0; r < 8; r++) {
        uint8_t h[32], sig[256], ref[256];
        size_t sl;
        random_bytes(h, sizeof(h));
        assert_int_equal(psa_sign_hash(id, PSA_ALG_RSA_PKCS1V15_SIGN(PSA_ALG_SHA_256), h, 32, sig,
                                       sizeof(sig), &sl), PSA_SUCCESS);
        assert_int_equal(sl, 256);
        assert_int_equal(mbedtls_rsa_set_padding(rsa, MBEDTLS_RSA_PKCS_V15, MBEDTLS_MD_NONE), 0);
        assert_int_equal(mbedtls_rsa_pkcs1_sign(rsa, mbedtls_ctr_drbg_random, &drbg,
                                                MBEDTLS_MD_SHA256, 32, h, ref), 0);
        assert_memory_equal(sig, ref, 256);
        assert_int_equal(psa_sign_hash(id, PSA_ALG_RSA_PSS(PSA_ALG_SHA_256), h, 32, sig,
                                       sizeof(sig), &sl), PSA_SUCCESS);
        assert_int_equal(mbedtls_rsa_set_padding(rsa, MBEDTLS_RSA_PKCS_V21, MBEDTLS_MD_SHA256), 0);
        assert_int_equal(mbedtls_rsa_rsassa_pss_verify(rsa, MBEDTLS_MD_SHA256, 32, h, sig), 0);
        sig[0] ^= 1;
        assert_int_not_equal(mbedtls_rsa_rsassa_pss_verify(rsa, MBEDTLS_MD_SHA256, 32, h, sig), 0);
    }
    assert_int_equal(served_since(&c, MOAT_ACCEL_SIGN_HASH), 16);
    psa_destroy_key(id);
    mbedtls_pk_free(&pk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aes_gcm_known_answer),
        cmocka_unit_test(test_aead_matches_mbedtls),
        cmocka_unit_test(test_x25519_known_answer),
        cmocka_unit_test(test_key_agreement_matches_mbedtls),
        cmocka_unit_test(test_ecdsa_verifies),
        cmocka_unit_test(test_rsa_signatures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
