/* tls/engine/moat_accel.h: moat's PSA transparent driver for mbedTLS 3.6, backed by OpenSSL 3's
 * libcrypto. It takes over what a TLS server spends its CPU in:
 *   AEAD one-shot encrypt and decrypt: AES-128/192/256-GCM and ChaCha20-Poly1305 (12-byte
 *   nonces), the record protection of TLS 1.2 and 1.3;
 *   ECDH key agreement on X25519, P-256 and P-384, and the public-key export that makes the key
 *   share;
 *   sign_hash: randomized ECDSA on P-256 and P-384, RSA PKCS#1 v1.5 and PSS.
 * Anything else, and any unusual parameter, returns PSA_ERROR_NOT_SUPPORTED: the PSA core then
 * runs mbedTLS's own code, which also gives the canonical errors for bad input.
 *
 * Built into libmbedcrypto by scripts/engine.sh when PSA_MOAT_ACCEL_DRIVER_ENABLED is defined;
 * the PSA driver wrappers are generated with moat_accel.json and the entry points
 * tls/engine/driver-wrappers.patch adds to mbedTLS's template. */
#ifndef MOAT_ACCEL_H
#define MOAT_ACCEL_H

#if defined(PSA_MOAT_ACCEL_DRIVER_ENABLED) && !defined(PSA_CRYPTO_ACCELERATOR_DRIVER_PRESENT)
#define PSA_CRYPTO_ACCELERATOR_DRIVER_PRESENT
#endif

#include <stddef.h>
#include <stdint.h>

#include "psa/crypto.h"

psa_status_t moat_accel_transparent_aead_encrypt(
    const psa_key_attributes_t *attributes, const uint8_t *key_buffer, size_t key_buffer_size,
    psa_algorithm_t alg, const uint8_t *nonce, size_t nonce_length,
    const uint8_t *additional_data, size_t additional_data_length, const uint8_t *plaintext,
    size_t plaintext_length, uint8_t *ciphertext, size_t ciphertext_size,
    size_t *ciphertext_length);

psa_status_t moat_accel_transparent_aead_decrypt(
    const psa_key_attributes_t *attributes, const uint8_t *key_buffer, size_t key_buffer_size,
    psa_algorithm_t alg, const uint8_t *nonce, size_t nonce_length,
    const uint8_t *additional_data, size_t additional_data_length, const uint8_t *ciphertext,
    size_t ciphertext_length, uint8_t *plaintext, size_t plaintext_size,
    size_t *plaintext_length);

psa_status_t moat_accel_transparent_key_agreement(
    const psa_key_attributes_t *attributes, const uint8_t *key_buffer, size_t key_buffer_size,
    psa_algorithm_t alg, const uint8_t *peer_key, size_t peer_key_length,
    uint8_t *shared_secret, size_t shared_secret_size, size_t *shared_secret_length);

psa_status_t moat_accel_transparent_export_public_key(
    const psa_key_attributes_t *attributes, const uint8_t *key_buffer, size_t key_buffer_size,
    uint8_t *data, size_t data_size, size_t *data_length);

psa_status_t moat_accel_transparent_sign_hash(
    const psa_key_attributes_t *attributes, const uint8_t *key_buffer, size_t key_buffer_size,
    psa_algorithm_t alg, const uint8_t *hash, size_t hash_length, uint8_t *signature,
    size_t signature_size, size_t *signature_length);

/* What the driver did so far, process-wide: calls it served and calls it handed back to
 * mbedTLS's own code, per entry point. For tests and the benchmark. */
enum moat_accel_entry {
    MOAT_ACCEL_AEAD_ENCRYPT,
    MOAT_ACCEL_AEAD_DECRYPT,
    MOAT_ACCEL_KEY_AGREEMENT,
    MOAT_ACCEL_EXPORT_PUBLIC_KEY,
    MOAT_ACCEL_SIGN_HASH,
    MOAT_ACCEL_ENTRIES
};
struct moat_accel_counts {
    unsigned long served[MOAT_ACCEL_ENTRIES];
    unsigned long declined[MOAT_ACCEL_ENTRIES];
};
void moat_accel_counts_get(struct moat_accel_counts *out);

#endif
