/* tls/internal.h: what tls/'s files share and nobody else sees. */
#ifndef MOAT_TLS_INTERNAL_H
#define MOAT_TLS_INTERNAL_H
#include <stddef.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/pk.h>
#include <mbedtls/entropy.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>

/* One worker's server configuration. Used by its thread only: the DRBG, the ticket keys and the
 * free list need no locks. */
struct moat_tls_server {
    struct moat_tls_ctx *ctx; /* a reference: certificates the config points into */
    /* This worker's own copy of each certificate's private key, so no signature waits for
     * another worker's (mbedTLS holds an RSA key's mutex for the whole signature): an opaque
     * PSA key where mbedTLS runs on PSA (the project's engine: signatures then reach the
     * accelerator), else a parsed copy. */
    mbedtls_pk_context keys[2];
    mbedtls_svc_key_id_t key_ids[2]; /* the PSA keys behind keys[] (0: none) */
    size_t n_keys;
    mbedtls_ssl_config conf;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_ssl_ticket_context tickets;
    struct moat_tls_session *spare; /* reset sessions, linked through their next field */
    size_t n_spare;
    struct moat_tls_session *hs_current; /* borrowed: whose handshake step runs now, so the
                                          * ticket callback can mark it resumed; else NULL */
};

/* mbedTLS's SNI callback (mbedtls_ssl_conf_sni): records the name the client sent in the
 * session (found through the context's user data). Never fails a handshake. */
int moat_tls_session_on_sni(void *arg, mbedtls_ssl_context *ssl, const unsigned char *name,
                            size_t len);

/* mbedTLS's ticket parse callback (p_ticket: the server): marks hs_current resumed on success. */
int moat_tls_ticket_parse(void *p_ticket, mbedtls_ssl_session *session, unsigned char *buf,
                          size_t len);

/* Frees every spare session (the server is going away). */
void moat_tls_session_pool_drain(struct moat_tls_server *srv);

/* Reads a whole file plus a NUL. NULL with err naming the file. */
char *moat_tls_read_file(const char *path, size_t *len, char *err, size_t err_len);

void moat_tls_strerror(int code, char *buf, size_t len);

/* Gives mbedTLS moat's allocator (alloc.c) where the engine allows it; before any other call. */
void moat_tls_alloc_init(void);

#endif
