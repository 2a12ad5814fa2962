/* tls/engine/moat_accel.c: see moat_accel.h. Compiled into libmbedcrypto; links libcrypto.
 *
 * A transparent driver gets the key bytes on every call, so each call builds what OpenSSL
 * needs from them. Per-thread state keeps the costly parts: one cipher context, the curve
 * groups, and two small caches:
 *   - X25519: loading a raw private key into OpenSSL computes its public key, so the key object
 *     made when the key share is exported is kept for the agreement with the same key, which
 *     takes it out of the cache (TLS 1.3 does both in one flight; TLS 1.2 a round trip apart,
 *     with other handshakes in between: hence several entries);
 *   - RSA: the parsed private key (and its blinding state) of the last few keys that signed,
 *     the servers' long-lived certificate keys.
 * Cached keys are freed, and cleansed by OpenSSL, when replaced or when their thread ends.
 *
 * Constant time: OpenSSL's AES-GCM (AES-NI/VAES with carry-less multiplication) and
 * ChaCha20-Poly1305 assembly, X25519 (constant-time ladder), P-256 (ecp_nistz256) and P-384
 * scalar multiplications with BN_FLG_CONSTTIME scalars, ECDSA with blinded inversion and a nonce
 * hedged with the key and digest, RSA with blinding and constant-time exponentiation: the code
 * nginx relies on. Private scalars live in BN_secure_new() memory. */
#define OPENSSL_SUPPRESS_DEPRECATED /* EC_KEY / EC_POINT: OpenSSL 3's low-overhead EC route */
#include "moat_accel.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

/* ---- counts ------------------------------------------------------------------------------- */

static unsigned long served[MOAT_ACCEL_ENTRIES], declined[MOAT_ACCEL_ENTRIES];

static psa_status_t count(enum moat_accel_entry e, psa_status_t st)
{
    __atomic_fetch_add(st == PSA_ERROR_NOT_SUPPORTED ? &declined[e] : &served[e], 1,
                       __ATOMIC_RELAXED);
    return st;
}

void moat_accel_counts_get(struct moat_accel_counts *out)
{
    for (int i = 0; i < MOAT_ACCEL_ENTRIES; i++) {
        out->served[i] = __atomic_load_n(&served[i], __ATOMIC_RELAXED);
        out->declined[i] = __atomic_load_n(&declined[i], __ATOMIC_RELAXED);
    }
}

/* ---- per-thread state --------------------------------------------------------------------- */

#define X25519_SLOTS 8 /* TLS 1.2 handshakes in flight between key share and agreement */
#define RSA_SLOTS 4    /* certificate keys signing on one thread */

enum { CURVE_P256, CURVE_P384, CURVES };

struct curve {
    int nid;
    size_t bits, bytes; /* the field element size: a scalar, an x coordinate */
};
static const struct curve curves[CURVES] = {
    [CURVE_P256] = {NID_X9_62_prime256v1, 256, 32},
    [CURVE_P384] = {NID_secp384r1, 384, 48},
};

struct x25519_slot {
    unsigned char priv[32];
    EVP_PKEY *pkey; /* NULL: free */
};

struct rsa_slot {
    unsigned char *der; /* the key buffer it was parsed from (OpenSSL-allocated copy) */
    size_t der_len;
    EVP_PKEY *pkey;     /* NULL: free */
};

struct tstate {
    EVP_CIPHER_CTX *cctx;
    EC_GROUP *group[CURVES];
    BN_CTX *bn;
    struct x25519_slot x25519[X25519_SLOTS];
    unsigned x25519_next; /* the slot to reuse when all are taken */
    struct rsa_slot rsa[RSA_SLOTS];
    unsigned rsa_next;
};

enum { C_AES128GCM, C_AES192GCM, C_AES256GCM, C_CHACHAPOLY, C_COUNT };
static EVP_CIPHER *ciphers[C_COUNT]; /* fetched once; NULL: that cipher falls back */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t tkey;

static void x25519_clear(struct x25519_slot *s)
{
    EVP_PKEY_free(s->pkey);
    s->pkey = NULL;
    OPENSSL_cleanse(s->priv, sizeof(s->priv));
}

static void rsa_clear(struct rsa_slot *s)
{
    EVP_PKEY_free(s->pkey);
    s->pkey = NULL;
    OPENSSL_clear_free(s->der, s->der_len);
    s->der = NULL;
    s->der_len = 0;
}

static void tstate_free(void *p)
{
    struct tstate *t = p;
    if (t == NULL)
        return;
    EVP_CIPHER_CTX_free(t->cctx);
    for (int i = 0; i < CURVES; i++)
        EC_GROUP_free(t->group[i]);
    BN_CTX_free(t->bn);
    for (int i = 0; i < X25519_SLOTS; i++)
        x25519_clear(&t->x25519[i]);
    for (int i = 0; i < RSA_SLOTS; i++)
        rsa_clear(&t->rsa[i]);
    free(t);
}

/* The main thread ends with exit(), which runs no thread-specific destructor. */
static void free_main_thread_state(void)
{
    tstate_free(pthread_getspecific(tkey));
    pthread_setspecific(tkey, NULL);
}

static void init_once(void)
{
    static const char *const names[C_COUNT] = {"AES-128-GCM", "AES-192-GCM", "AES-256-GCM",
                                               "ChaCha20-Poly1305"};
    for (int i = 0; i < C_COUNT; i++)
        ciphers[i] = EVP_CIPHER_fetch(NULL, names[i], NULL);
    pthread_key_create(&tkey, tstate_free);
    atexit(free_main_thread_state);
}

static struct tstate *tstate(void)
{
    pthread_once(&once, init_once);
    struct tstate *t = pthread_getspecific(tkey);
    if (t != NULL)
        return t;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->cctx = EVP_CIPHER_CTX_new();
    t->bn = BN_CTX_new();
    int ok = t->cctx != NULL && t->bn != NULL;
    for (int i = 0; i < CURVES; i++)
        ok = ok && (t->group[i] = EC_GROUP_new_by_curve_name(curves[i].nid)) != NULL;
    if (!ok || pthread_setspecific(tkey, t) != 0) {
        tstate_free(t);
        return NULL;
    }
    return t;
}

/* ---- AEAD --------------------------------------------------------------------------------- */

/* The OpenSSL cipher for alg with a key_bytes key, with *tag_len; NULL if not ours. Only the
 * 12-byte nonces TLS uses, and the tag lengths PSA allows for each. */
static const EVP_CIPHER *aead_cipher(const psa_key_attributes_t *attributes, size_t key_bytes,
                                     psa_algorithm_t alg, size_t nonce_length, size_t *tag_len)
{
    psa_key_type_t type = psa_get_key_type(attributes);
    psa_algorithm_t base = PSA_ALG_AEAD_WITH_DEFAULT_LENGTH_TAG(alg);
    size_t tl = PSA_ALG_AEAD_GET_TAG_LENGTH(alg);
    pthread_once(&once, init_once);
    if (nonce_length != 12)
        return NULL;
    if (type == PSA_KEY_TYPE_AES && base == PSA_ALG_GCM) {
        if (tl != 4 && tl != 8 && (tl < 12 || tl > 16))
            return NULL;
        *tag_len = tl;
        switch (key_bytes) {
        case 16: return ciphers[C_AES128GCM];
        case 24: return ciphers[C_AES192GCM];
        case 32: return ciphers[C_AES256GCM];
        default: return NULL;
        }
    }
    if (type == PSA_KEY_TYPE_CHACHA20 && base == PSA_ALG_CHACHA20_POLY1305 && tl == 16 &&
        key_bytes == 32) {
        *tag_len = 16;
        return ciphers[C_CHACHAPOLY];
    }
    return NULL;
}

psa_status_t moat_accel_transparent_aead_encrypt(
    const psa_key_attributes_t *attributes, const uint8_t *key_buffer, size_t key_buffer_size,
    psa_algorithm_t alg, const uint8_t *nonce, size_t nonce_length,
    const uint8_t *additional_data, size_t additional_data_length, const uint8_t *plaintext,
    size_t plaintext_length, uint8_t *ciphertext, size_t ciphertext_size,
    size_t *ciphertext_length)
{
    size_t tag_len = 0;
    const EVP_CIPHER *c = aead_cipher(attributes, key_buffer_size, alg, nonce_length, &tag_len);
    struct tstate *t;
    if (c == NULL || plaintext_length > INT_MAX || additional_data_length > INT_MAX ||
        ciphertext_size < plaintext_length + tag_len || (t = tstate()) == NULL)
        return count(MOAT_ACCEL_AEAD_ENCRYPT, PSA_ERROR_NOT_SUPPORTED);
    EVP_CIPHER_CTX *x = t->cctx;
    int len = 0, final_len = 0;
    if (EVP_EncryptInit_ex(x, c, NULL, key_buffer, nonce) != 1 ||
        (additional_data_length > 0 &&
         EVP_EncryptUpdate(x, NULL, &len, additional_data, (int)additional_data_length) != 1) ||
        EVP_EncryptUpdate(x, ciphertext, &len, plaintext, (int)plaintext_length) != 1 ||
        EVP_EncryptFinal_ex(x, ciphertext + len, &final_len) != 1 ||
        EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, (int)tag_len,
                            ciphertext + plaintext_length) != 1)
        return count(MOAT_ACCEL_AEAD_ENCRYPT, PSA_ERROR_CORRUPTION_DETECTED);
    *ciphertext_length = plaintext_length + tag_len;
    return count(MOAT_ACCEL_AEAD_ENCRYPT, PSA_SUCCESS);
}

psa_status_t moat_accel_transparent_aead_decrypt(
    const psa_key_attributes_t *attributes, const uint8_t *key_buffer, size_t key_buffer_size,
    psa_algorithm_t alg, const uint8_t *nonce, size_t nonce_length,
    const uint8_t *additional_data, size_t additional_data_length, const uint8_t *ciphertext,
    size_t ciphertext_length, uint8_t *plaintext, size_t plaintext_size,
    size_t *plaintext_length)
{
    size_t tag_len = 0;
    const EVP_CIPHER *c = aead_cipher(attributes, key_buffer_size, alg, nonce_length, &tag_len);
    struct tstate *t;
    if (c == NULL || ciphertext_length < tag_len || ciphertext_length > INT_MAX ||
        additional_data_length > INT_MAX || plaintext_size < ciphertext_length - tag_len ||
        (t = tstate()) == NULL)
        return count(MOAT_ACCEL_AEAD_DECRYPT, PSA_ERROR_NOT_SUPPORTED);
    size_t body = ciphertext_length - tag_len;
    unsigned char tag[16];
    memcpy(tag, ciphertext + body, tag_len); /* TLS decrypts in place: keep it before it goes */
    EVP_CIPHER_CTX *x = t->cctx;
    int len = 0, final_len = 0;
    if (EVP_DecryptInit_ex(x, c, NULL, key_buffer, nonce) != 1 ||
        (additional_data_length > 0 &&
         EVP_DecryptUpdate(x, NULL, &len, additional_data, (int)additional_data_length) != 1) ||
        EVP_DecryptUpdate(x, plaintext, &len, ciphertext, (int)body) != 1 ||
        EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, (int)tag_len, tag) != 1)
        return count(MOAT_ACCEL_AEAD_DECRYPT, PSA_ERROR_CORRUPTION_DETECTED);
    if (EVP_DecryptFinal_ex(x, plaintext + len, &final_len) != 1) {
        OPENSSL_cleanse(plaintext, body); /* unauthenticated plaintext never leaves */
        return count(MOAT_ACCEL_AEAD_DECRYPT, PSA_ERROR_INVALID_SIGNATURE);
    }
    *plaintext_length = body;
    return count(MOAT_ACCEL_AEAD_DECRYPT, PSA_SUCCESS);
}

/* ---- elliptic curves ---------------------------------------------------------------------- */

static int is_x25519_pair(const psa_key_attributes_t *a, size_t key_size)
{
    return psa_get_key_type(a) == PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_MONTGOMERY) &&
           psa_get_key_bits(a) == 255 && key_size == 32;
}

/* The NIST curve of a key pair (CURVE_*), or -1 if not ours. */
static int secp_curve(const psa_key_attributes_t *a, size_t key_size)
{
    if (psa_get_key_type(a) != PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_SECP_R1))
        return -1;
    for (int i = 0; i < CURVES; i++)
        if (psa_get_key_bits(a) == curves[i].bits && key_size == curves[i].bytes)
            return i;
    return -1;
}

/* The X25519 key object for priv: taken out of the cache, or made anew. */
static EVP_PKEY *x25519_take(struct tstate *t, const uint8_t *priv)
{
    for (int i = 0; i < X25519_SLOTS; i++) {
        struct x25519_slot *s = &t->x25519[i];
        if (s->pkey != NULL && CRYPTO_memcmp(s->priv, priv, 32) == 0) {
            EVP_PKEY *k = s->pkey;
            s->pkey = NULL;
            OPENSSL_cleanse(s->priv, sizeof(s->priv));
            return k;
        }
    }
    return EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
}

/* Keeps k (made from priv) for the agreement that follows; takes k over. */
static void x25519_keep(struct tstate *t, const uint8_t *priv, EVP_PKEY *k)
{
    struct x25519_slot *s = NULL;
    for (int i = 0; i < X25519_SLOTS && s == NULL; i++)
        if (t->x25519[i].pkey == NULL)
            s = &t->x25519[i];
    if (s == NULL) { /* full: a handshake that never came back loses its entry */
        s = &t->x25519[t->x25519_next];
        t->x25519_next = (t->x25519_next + 1) % X25519_SLOTS;
        x25519_clear(s);
    }
    memcpy(s->priv, priv, 32);
    s->pkey = k;
}

/* d as a secret BIGNUM (constant-time flag, secure heap). NULL on failure. */
static BIGNUM *secret_scalar(const uint8_t *bytes, size_t len)
{
    BIGNUM *d = BN_secure_new();
    if (d == NULL || BN_bin2bn(bytes, (int)len, d) == NULL) {
        BN_clear_free(d);
        return NULL;
    }
    BN_set_flags(d, BN_FLG_CONSTTIME);
    return d;
}

static psa_status_t export_public(const psa_key_attributes_t *attributes, const uint8_t *key,
                                  size_t key_size, uint8_t *data, size_t data_size,
                                  size_t *data_length)
{
    struct tstate *t;
    if (is_x25519_pair(attributes, key_size)) {
        if (data_size < 32 || (t = tstate()) == NULL)
            return PSA_ERROR_NOT_SUPPORTED;
        EVP_PKEY *k = x25519_take(t, key);
        size_t len = 32;
        if (k == NULL || EVP_PKEY_get_raw_public_key(k, data, &len) != 1 || len != 32) {
            EVP_PKEY_free(k);
            return PSA_ERROR_CORRUPTION_DETECTED;
        }
        x25519_keep(t, key, k);
        *data_length = 32;
        return PSA_SUCCESS;
    }
    int cv = secp_curve(attributes, key_size);
    size_t point_len = cv >= 0 ? 1 + 2 * curves[cv].bytes : 0; /* uncompressed (SEC 1 §2.3.3) */
    if (cv < 0 || data_size < point_len || (t = tstate()) == NULL)
        return PSA_ERROR_NOT_SUPPORTED;
    const EC_GROUP *g = t->group[cv];
    psa_status_t st = PSA_ERROR_CORRUPTION_DETECTED;
    BIGNUM *d = secret_scalar(key, key_size);
    EC_POINT *q = EC_POINT_new(g);
    if (d != NULL && q != NULL && EC_POINT_mul(g, q, d, NULL, NULL, t->bn) == 1 &&
        EC_POINT_point2oct(g, q, POINT_CONVERSION_UNCOMPRESSED, data, point_len, t->bn) ==
            point_len) {
        *data_length = point_len;
        st = PSA_SUCCESS;
    }
    EC_POINT_free(q);
    BN_clear_free(d);
    return st;
}

psa_status_t moat_accel_transparent_export_public_key(
    const psa_key_attributes_t *attributes, const uint8_t *key_buffer, size_t key_buffer_size,
    uint8_t *data, size_t data_size, size_t *data_length)
{
    if (!PSA_KEY_TYPE_IS_ECC_KEY_PAIR(psa_get_key_type(attributes)))
        return PSA_ERROR_NOT_SUPPORTED; /* RSA and public keys: never ours, not counted */
    return count(MOAT_ACCEL_EXPORT_PUBLIC_KEY,
                 export_public(attributes, key_buffer, key_buffer_size, data, data_size,
                               data_length));
}

static psa_status_t agree_x25519(struct tstate *t, const uint8_t *key, const uint8_t *peer,
                                 uint8_t *out, size_t *out_length)
{
    psa_status_t st = PSA_ERROR_CORRUPTION_DETECTED;
    EVP_PKEY *k = x25519_take(t, key);
    EVP_PKEY *p = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
    EVP_PKEY_CTX *c = k != NULL ? EVP_PKEY_CTX_new(k, NULL) : NULL;
    size_t len = 32;
    if (c != NULL && p != NULL && EVP_PKEY_derive_init(c) == 1 &&
        EVP_PKEY_derive_set_peer(c, p) == 1) {
        /* OpenSSL refuses an all-zero secret (a small-order peer point), as RFC 8446 §7.4.2
         * asks of TLS; mbedTLS's own code would return the zeros. */
        if (EVP_PKEY_derive(c, out, &len) == 1 && len == 32) {
            *out_length = 32;
            st = PSA_SUCCESS;
        } else {
            st = PSA_ERROR_INVALID_ARGUMENT;
        }
    }
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(p);
    EVP_PKEY_free(k);
    return st;
}

static psa_status_t agree_secp(struct tstate *t, int cv, const uint8_t *key, const uint8_t *peer,
                               uint8_t *out, size_t *out_length)
{
    const EC_GROUP *g = t->group[cv];
    size_t n = curves[cv].bytes;
    psa_status_t st = PSA_ERROR_CORRUPTION_DETECTED;
    BIGNUM *d = secret_scalar(key, n), *x = BN_new();
    EC_POINT *p = EC_POINT_new(g), *r = EC_POINT_new(g);
    if (d != NULL && x != NULL && p != NULL && r != NULL) {
        /* oct2point checks that the peer's point is on the curve (RFC 8446 §4.2.8.2). */
        if (EC_POINT_oct2point(g, p, peer, 1 + 2 * n, t->bn) != 1) {
            st = PSA_ERROR_INVALID_ARGUMENT;
        } else if (EC_POINT_mul(g, r, NULL, p, d, t->bn) == 1 &&
                   EC_POINT_get_affine_coordinates(g, r, x, NULL, t->bn) == 1 &&
                   BN_bn2binpad(x, out, (int)n) == (int)n) {
            *out_length = n;
            st = PSA_SUCCESS;
        }
    }
    EC_POINT_free(p);
    EC_POINT_free(r);
    BN_clear_free(d);
    BN_clear_free(x);
    return st;
}

static psa_status_t agree(const psa_key_attributes_t *attributes, const uint8_t *key,
                          size_t key_size, psa_algorithm_t alg, const uint8_t *peer,
                          size_t peer_length, uint8_t *out, size_t out_size, size_t *out_length)
{
    struct tstate *t;
    if (alg != PSA_ALG_ECDH)
        return PSA_ERROR_NOT_SUPPORTED;
    if (is_x25519_pair(attributes, key_size)) {
        if (peer_length != 32 || out_size < 32 || (t = tstate()) == NULL)
            return PSA_ERROR_NOT_SUPPORTED;
        return agree_x25519(t, key, peer, out, out_length);
    }
    int cv = secp_curve(attributes, key_size);
    /* Only the uncompressed form TLS sends; anything else gets mbedTLS's own checks. */
    if (cv < 0 || peer_length != 1 + 2 * curves[cv].bytes || peer[0] != 0x04 ||
        out_size < curves[cv].bytes || (t = tstate()) == NULL)
        return PSA_ERROR_NOT_SUPPORTED;
    return agree_secp(t, cv, key, peer, out, out_length);
}

psa_status_t moat_accel_transparent_key_agreement(
    const psa_key_attributes_t *attributes, const uint8_t *key_buffer, size_t key_buffer_size,
    psa_algorithm_t alg, const uint8_t *peer_key, size_t peer_key_length,
    uint8_t *shared_secret, size_t shared_secret_size, size_t *shared_secret_length)
{
    return count(MOAT_ACCEL_KEY_AGREEMENT,
                 agree(attributes, key_buffer, key_buffer_size, alg, peer_key, peer_key_length,
                       shared_secret, shared_secret_size, shared_secret_length));
}

/* ---- signatures --------------------------------------------------------------------------- */

static psa_status_t ecdsa_sign(struct tstate *t, int cv, const uint8_t *key,
                               const uint8_t *hash, size_t hash_length, uint8_t *sig,
                               size_t *sig_length)
{
    size_t n = curves[cv].bytes;
    psa_status_t st = PSA_ERROR_CORRUPTION_DETECTED;
    EC_KEY *k = EC_KEY_new();
    BIGNUM *d = secret_scalar(key, n);
    ECDSA_SIG *s = NULL;
    if (k != NULL && d != NULL && EC_KEY_set_group(k, t->group[cv]) == 1 &&
        EC_KEY_set_private_key(k, d) == 1 &&
        (s = ECDSA_do_sign(hash, (int)hash_length, k)) != NULL) {
        const BIGNUM *r, *ss;
        ECDSA_SIG_get0(s, &r, &ss);
        /* PSA's ECDSA signature format: r then s, each the curve's size (PSA spec §10.7.4) */
        if (BN_bn2binpad(r, sig, (int)n) == (int)n && BN_bn2binpad(ss, sig + n, (int)n) == (int)n) {
            *sig_length = 2 * n;
            st = PSA_SUCCESS;
        }
    }
    ECDSA_SIG_free(s);
    BN_clear_free(d);
    EC_KEY_free(k);
    return st;
}

static const EVP_MD *md_of(psa_algorithm_t hash_alg)
{
    switch (hash_alg) {
    case PSA_ALG_SHA_256: return EVP_sha256();
    case PSA_ALG_SHA_384: return EVP_sha384();
    case PSA_ALG_SHA_512: return EVP_sha512();
    default: return NULL;
    }
}

/* The parsed RSA key for der (PSA's export format of an RSA key pair: RSAPrivateKey). */
static EVP_PKEY *rsa_key(struct tstate *t, const uint8_t *der, size_t der_len)
{
    for (int i = 0; i < RSA_SLOTS; i++) {
        struct rsa_slot *s = &t->rsa[i];
        if (s->pkey != NULL && s->der_len == der_len && CRYPTO_memcmp(s->der, der, der_len) == 0)
            return s->pkey;
    }
    const unsigned char *p = der;
    EVP_PKEY *k = d2i_PrivateKey(EVP_PKEY_RSA, NULL, &p, (long)der_len);
    unsigned char *copy = k != NULL ? OPENSSL_malloc(der_len) : NULL;
    if (copy == NULL) {
        EVP_PKEY_free(k);
        return NULL;
    }
    memcpy(copy, der, der_len);
    struct rsa_slot *s = &t->rsa[t->rsa_next];
    t->rsa_next = (t->rsa_next + 1) % RSA_SLOTS;
    rsa_clear(s);
    s->pkey = k;
    s->der = copy;
    s->der_len = der_len;
    return k;
}

static psa_status_t rsa_sign(struct tstate *t, const psa_key_attributes_t *attributes,
                             const uint8_t *key, size_t key_size, psa_algorithm_t alg,
                             const uint8_t *hash, size_t hash_length, uint8_t *sig,
                             size_t sig_size, size_t *sig_length)
{
    int is_pss = PSA_ALG_IS_RSA_PSS(alg);
    if (!is_pss && !PSA_ALG_IS_RSA_PKCS1V15_SIGN(alg))
        return PSA_ERROR_NOT_SUPPORTED;
    const EVP_MD *md = NULL;
    if (alg != PSA_ALG_RSA_PKCS1V15_SIGN_RAW) {
        md = md_of(PSA_ALG_SIGN_GET_HASH(alg));
        if (md == NULL || (size_t)EVP_MD_get_size(md) != hash_length)
            return PSA_ERROR_NOT_SUPPORTED;
    }
    size_t n_bytes = PSA_BITS_TO_BYTES(psa_get_key_bits(attributes));
    /* What does not fit (PSS: salt = hash length, RFC 8446 §4.2.3; v1.5: 11 bytes of padding
     * around a 19-byte DigestInfo) goes to mbedTLS's code, for its error. */
    if (sig_size < n_bytes || (is_pss && n_bytes < 2 + 2 * hash_length) ||
        (!is_pss && n_bytes < 11 + hash_length + (md != NULL ? 19 : 0)))
        return PSA_ERROR_NOT_SUPPORTED;
    EVP_PKEY *k = rsa_key(t, key, key_size);
    if (k == NULL)
        return PSA_ERROR_NOT_SUPPORTED;
    psa_status_t st = PSA_ERROR_CORRUPTION_DETECTED;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(k, NULL);
    size_t len = sig_size;
    if (c != NULL && EVP_PKEY_sign_init(c) == 1 &&
        EVP_PKEY_CTX_set_rsa_padding(c, is_pss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING) ==
            1 &&
        (md == NULL || EVP_PKEY_CTX_set_signature_md(c, md) == 1) &&
        (!is_pss || EVP_PKEY_CTX_set_rsa_pss_saltlen(c, RSA_PSS_SALTLEN_DIGEST) == 1) &&
        EVP_PKEY_sign(c, sig, &len, hash, hash_length) == 1 && len == n_bytes) {
        *sig_length = len;
        st = PSA_SUCCESS;
    }
    EVP_PKEY_CTX_free(c);
    return st;
}

static psa_status_t sign_hash(const psa_key_attributes_t *attributes, const uint8_t *key,
                              size_t key_size, psa_algorithm_t alg, const uint8_t *hash,
                              size_t hash_length, uint8_t *sig, size_t sig_size,
                              size_t *sig_length)
{
    struct tstate *t;
    int cv = secp_curve(attributes, key_size);
    if (cv >= 0 && PSA_ALG_IS_RANDOMIZED_ECDSA(alg)) {
        /* Deterministic ECDSA stays mbedTLS's: OpenSSL 3.0 has none. */
        if (sig_size < 2 * curves[cv].bytes || hash_length == 0 || hash_length > INT_MAX ||
            (t = tstate()) == NULL)
            return PSA_ERROR_NOT_SUPPORTED;
        return ecdsa_sign(t, cv, key, hash, hash_length, sig, sig_length);
    }
    if (psa_get_key_type(attributes) == PSA_KEY_TYPE_RSA_KEY_PAIR) {
        if ((t = tstate()) == NULL)
            return PSA_ERROR_NOT_SUPPORTED;
        return rsa_sign(t, attributes, key, key_size, alg, hash, hash_length, sig, sig_size,
                        sig_length);
    }
    return PSA_ERROR_NOT_SUPPORTED;
}

psa_status_t moat_accel_transparent_sign_hash(
    const psa_key_attributes_t *attributes, const uint8_t *key_buffer, size_t key_buffer_size,
    psa_algorithm_t alg, const uint8_t *hash, size_t hash_length, uint8_t *signature,
    size_t signature_size, size_t *signature_length)
{
    return count(MOAT_ACCEL_SIGN_HASH,
                 sign_hash(attributes, key_buffer, key_buffer_size, alg, hash, hash_length,
                           signature, signature_size, signature_length));
}
