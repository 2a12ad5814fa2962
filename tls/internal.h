/* tls/internal.h: what tls/'s files share and nobody else sees. */
#ifndef MOAT_TLS_INTERNAL_H
#define MOAT_TLS_INTERNAL_H
#include <stddef.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/pk.h>
#include <mbedtls/entropy.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>

#include <stdatomic.h>
#include <stdint.h>
#include <mbedtls/x509_crl.h>
#include <mbedtls/x509_crt.h>

#include "tls/tls.h"

/* One certificate chain and its private key, as loaded (read-only once loaded). */
struct moat_tls_cert {
    mbedtls_x509_crt chain;
    mbedtls_pk_context key;
    char *cert_file; /* owned: for messages */
};

/* Pairs that serve the same names: at most one ECDSA and one RSA (indexes into certs). */
struct moat_tls_site {
    size_t pair[2];
    size_t n_pairs;
    uint64_t binding; /* names its tickets (tickets.c): a hash of its names and the listener's
                       * SNI and client-certificate policies, the same across reloads and
                       * replicas */
};

/* A name in the index, lower case (a wildcard's parent in the wildcard index). */
struct moat_tls_name {
    char *name; /* owned */
    size_t site;
};

/* A listener's certificates and the index of their names (certs.c); immutable once built,
 * shared by every worker. */
struct moat_tls_ctx {
    atomic_int refs;
    struct moat_tls_cert *certs; /* owned array */
    size_t n_certs;
    struct moat_tls_site *sites; /* owned: sites[0] is the default (its first pair listed) */
    size_t n_sites;
    size_t *pair_site;           /* owned: the site of each pair */
    struct moat_tls_name *exact, *wild; /* owned, sorted by name */
    size_t n_exact, n_wild;
    int tls13_only; /* the listener refuses TLS 1.2 */
    int strict_sni; /* a client whose name no site has is refused (unrecognized_name) */
    int client_auth;                /* 0 none, 1 optional, 2 required (moat_tls_opts) */
    mbedtls_x509_crt client_ca;     /* what client certificates chain to (client_auth) */
    mbedtls_x509_crl client_crl;    /* revoked ones */
    int has_crl;
    char describe[512];
};

/* Groups ctx's loaded pairs into sites and indexes their names. 0, or -1 with err. */
int moat_tls_sites_build(struct moat_tls_ctx *ctx, char *err, size_t err_len);
void moat_tls_sites_free(struct moat_tls_ctx *ctx);

/* The site whose certificates name host (len bytes, any case, a trailing dot allowed): an
 * exact name first, else a wildcard one label up. -1 when none does. */
long moat_tls_site_find(const struct moat_tls_ctx *ctx, const char *host, size_t len);

/* One worker's server configuration. Used by its thread only: the DRBG, the ticket keys and the
 * free list need no locks. */
struct moat_tls_server {
    struct moat_tls_ctx *ctx; /* a reference: certificates the config points into */
    /* This worker's own copy of each certificate's private key, made when a handshake first
     * needs it, so no signature waits for another worker's (mbedTLS holds an RSA key's mutex
     * for the whole signature), and 10,000 certificates cost no key until their site is
     * asked for: an opaque PSA key where mbedTLS runs on PSA (the project's engine:
     * signatures then reach the accelerator), else a parsed copy. Arrays of ctx->n_certs. */
    mbedtls_pk_context *keys;
    mbedtls_svc_key_id_t *key_ids; /* the PSA keys behind keys[] (0: none) */
    unsigned char *has_key;        /* keys[i] is ready */
    mbedtls_ssl_config conf;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    moat_tls_keylog_cb keylog;      /* NULL: no key log (the default) */
    void *keylog_arg;
    struct moat_tls_session *spare; /* reset sessions, linked through their next field */
    size_t n_spare;
    struct moat_tls_session *hs_current; /* borrowed: whose handshake step runs now, so the
                                          * ticket callback can mark it resumed; else NULL */
};

/* mbedTLS's SNI callback (mbedtls_ssl_conf_sni): records the name the client sent in the
 * session (found through the context's user data). Never fails a handshake. */
int moat_tls_session_on_sni(void *arg, mbedtls_ssl_context *ssl, const unsigned char *name,
                            size_t len);

/* mbedTLS's certificate callback (mbedtls_ssl_conf_cert_cb): gives the handshake the
 * certificates of the site the client's name selects (the default site without a name or for
 * an unknown one, unless the listener is strict: then the handshake fails). */
int moat_tls_session_on_cert(mbedtls_ssl_context *ssl);

/* This worker's copy of pair's private key, made now if it is the first use. 0 or an mbedTLS
 * error. */
int moat_tls_server_key(struct moat_tls_server *srv, size_t pair, mbedtls_pk_context **out);

/* The process's ticket keys (tickets.c): made by moat_tls_global_init(), shared by every
 * worker. A ticket is sealed with binding (the issuing site's) in front, and opens only for
 * the same binding; mbedTLS's ticket errors otherwise (a full handshake follows). */
int moat_tls_tickets_init(char *err, size_t err_len);
void moat_tls_tickets_free(void);
int moat_tls_tickets_write(uint64_t binding, const mbedtls_ssl_session *session,
                           unsigned char *start, const unsigned char *end, size_t *tlen,
                           uint32_t *lifetime);
int moat_tls_tickets_parse(uint64_t binding, mbedtls_ssl_session *session, unsigned char *buf,
                           size_t len);

/* The binding of the site s's handshake serves (or will: the one its SNI selects). */
uint64_t moat_tls_session_binding(const struct moat_tls_session *s);

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
