/* tls/tickets.c: the process's session-ticket keys. One mbedTLS ticket context serves every
 * worker's server (its mutex guards the keys and a random generator of its own), made by
 * moat_tls_global_init() and kept until the process ends, so a returning client resumes on
 * whichever worker the kernel hands it to, and after a reload. mbedTLS makes a new key every
 * ticket lifetime and keeps the one before for the tickets it sealed.
 *
 * A ticket moat issues is BINDING (8 bytes) followed by mbedTLS's ticket: the binding names
 * the site (the set of names of the certificate the handshake chose, and the listener's SNI
 * policy), so a ticket issued for one site never resumes a session on another, where the full
 * handshake would have shown another certificate (or refused the client). */
#include "tls/internal.h"

#include <stdio.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/ssl_ticket.h>

#define TICKET_LIFETIME_S 86400 /* above 604800 mbedTLS fails every TLS 1.3 handshake */
#define BINDING_LEN 8

static struct {
    mbedtls_ssl_ticket_context ctx;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg; /* used under ctx's mutex only (ticket calls) */
    int is_ready;
} keys;

int moat_tls_tickets_init(char *err, size_t err_len)
{
    mbedtls_ssl_ticket_init(&keys.ctx);
    mbedtls_entropy_init(&keys.entropy);
    mbedtls_ctr_drbg_init(&keys.drbg);
    int rc = mbedtls_ctr_drbg_seed(&keys.drbg, mbedtls_entropy_func, &keys.entropy,
                                   (const unsigned char *)"moat-tickets", 12);
    if (rc == 0)
        rc = mbedtls_ssl_ticket_setup(&keys.ctx, mbedtls_ctr_drbg_random, &keys.drbg,
                                      MBEDTLS_CIPHER_AES_256_GCM, TICKET_LIFETIME_S);
    if (rc != 0) {
        char why[128];
        moat_tls_strerror(rc, why, sizeof(why));
        snprintf(err, err_len, "session ticket keys: %s", why);
        moat_tls_tickets_free();
        return -1;
    }
    keys.is_ready = 1;
    return 0;
}

void moat_tls_tickets_free(void)
{
    mbedtls_ssl_ticket_free(&keys.ctx);
    mbedtls_ctr_drbg_free(&keys.drbg);
    mbedtls_entropy_free(&keys.entropy);
    keys.is_ready = 0;
}

int moat_tls_tickets_write(uint64_t binding, const mbedtls_ssl_session *session,
                           unsigned char *start, const unsigned char *end, size_t *tlen,
                           uint32_t *lifetime)
{
    if (!keys.is_ready || end - start < BINDING_LEN)
        return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
    memcpy(start, &binding, BINDING_LEN);
    int rc = mbedtls_ssl_ticket_write(&keys.ctx, session, start + BINDING_LEN, end, tlen,
                                      lifetime);
    if (rc == 0)
        *tlen += BINDING_LEN;
    return rc;
}

int moat_tls_tickets_parse(uint64_t binding, mbedtls_ssl_session *session, unsigned char *buf,
                           size_t len)
{
    uint64_t bound;
    if (!keys.is_ready || len < BINDING_LEN)
        return MBEDTLS_ERR_SSL_INVALID_MAC;
    memcpy(&bound, buf, BINDING_LEN);
    if (bound != binding)
        return MBEDTLS_ERR_SSL_INVALID_MAC; /* another site's: a full handshake instead */
    return mbedtls_ssl_ticket_parse(&keys.ctx, session, buf + BINDING_LEN, len - BINDING_LEN);
}
