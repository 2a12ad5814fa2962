/* tls/session.c: one client connection's TLS session, run over memory. Ciphertext comes in through
 * feed() into a buffer that exists only while it holds bytes; ciphertext goes out through the
 * caller's emit callback, which always takes everything, so mbedTLS never sees WANT_WRITE and
 * the caller's own queue size is the backpressure signal. */
#include "tls/tls.h"
#include "tls/internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/error.h>
#include <mbedtls/ssl.h>

/* Unprocessed ciphertext a session holds at most: a little over what one read of the caller's
 * 64 KiB slab adds to a partly consumed record; more means the caller forgot to stop reading. */
#define MAX_BUFFERED (160u * 1024u)

/* Reset sessions kept per worker for reuse: mbedTLS allocates ~38 KiB of record buffers in
 * mbedtls_ssl_setup() and keeps them across mbedtls_ssl_session_reset(). */
#define MAX_SPARE 32

struct moat_tls_session {
    mbedtls_ssl_context ssl;
    struct moat_tls_server *srv;
    moat_tls_emit_cb emit;
    void *emit_ctx;
    unsigned char *in; /* ciphertext not yet taken by mbedTLS: in[in_off..in_len) */
    size_t in_off, in_len, in_cap;
    int eof;           /* the transport ended after the buffered bytes */
    int handshake_done;
    int is_resumed;    /* the handshake accepted a session ticket */
    int failed;        /* a fatal error: only _free() may follow */
    int last_error;
    char error_text[128];
    const char *cipher;  /* static: the suite's IANA name, set when the handshake completes */
    unsigned char sni_len;
    char sni[MOAT_TLS_SNI_MAX + 1]; /* the server_name the client sent, cut at MOAT_TLS_SNI_MAX
                                     * bytes; NUL-terminated (raw bytes: may hold anything) */
    struct moat_tls_session *next; /* in the server's spare list */
};

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    struct moat_tls_session *s = ctx;
    if (len > INT_MAX)
        len = INT_MAX;
    return s->emit(s->emit_ctx, buf, len) == 0 ? (int)len : MBEDTLS_ERR_SSL_ALLOC_FAILED;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    struct moat_tls_session *s = ctx;
    size_t avail = s->in_len - s->in_off;
    if (avail == 0)
        return s->eof ? 0 : MBEDTLS_ERR_SSL_WANT_READ;
    if (len > avail)
        len = avail;
    if (len > INT_MAX)
        len = INT_MAX;
    memcpy(buf, s->in + s->in_off, len);
    s->in_off += len;
    return (int)len;
}

/* Gives the input buffer back once mbedTLS has taken every byte of it. */
static void release_input(struct moat_tls_session *s)
{
    if (s->in_off < s->in_len)
        return;
    free(s->in);
    s->in = NULL;
    s->in_off = s->in_len = s->in_cap = 0;
}

/* IANA's names (the TLS Cipher Suites registry, also OpenSSL's for TLS 1.3) of the suites
 * tls/context.c allows; mbedTLS's own spelling for any other. */
static const char *iana_name(const char *mbedtls_name)
{
    static const struct {
        int id;
        const char *name;
    } names[] = {
        {MBEDTLS_TLS1_3_AES_128_GCM_SHA256, "TLS_AES_128_GCM_SHA256"},
        {MBEDTLS_TLS1_3_AES_256_GCM_SHA384, "TLS_AES_256_GCM_SHA384"},
        {MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256, "TLS_CHACHA20_POLY1305_SHA256"},
        {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
         "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
        {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
         "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"},
        {MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
         "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"},
        {MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
        {MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"},
        {MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
         "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"},
    };
    int id = mbedtls_ssl_get_ciphersuite_id(mbedtls_name);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].id == id)
            return names[i].name;
    return mbedtls_name;
}

int moat_tls_session_on_sni(void *arg, mbedtls_ssl_context *ssl, const unsigned char *name,
                            size_t len)
{
    (void)arg;
    struct moat_tls_session *s = mbedtls_ssl_get_user_data_p(ssl);
    if (s == NULL)
        return 0;
    if (len > MOAT_TLS_SNI_MAX)
        len = MOAT_TLS_SNI_MAX; /* RFC 6066 allows 65535 bytes; a DNS name has at most 253 */
    memcpy(s->sni, name, len);
    s->sni[len] = '\0';
    s->sni_len = (unsigned char)len;
    return 0; /* the configured certificate serves every name */
}

static int fail(struct moat_tls_session *s, int code)
{
    s->failed = 1;
    s->last_error = code;
    mbedtls_strerror(code, s->error_text, sizeof(s->error_text));
    return MOAT_TLS_FATAL;
}

struct moat_tls_session *moat_tls_session_new(struct moat_tls_server *srv, moat_tls_emit_cb emit,
                                              void *emit_ctx)
{
    struct moat_tls_session *s = srv->spare;
    if (s != NULL) {
        srv->spare = s->next;
        srv->n_spare--;
    } else {
        s = malloc(sizeof(*s));
        if (s == NULL)
            return NULL;
        mbedtls_ssl_init(&s->ssl);
        if (mbedtls_ssl_setup(&s->ssl, &srv->conf) != 0) {
            mbedtls_ssl_free(&s->ssl);
            free(s);
            return NULL;
        }
        mbedtls_ssl_set_bio(&s->ssl, s, bio_send, bio_recv, NULL);
    }
    mbedtls_ssl_set_user_data_p(&s->ssl, s); /* for the SNI callback; cheap to set again */
    s->srv = srv;
    s->emit = emit;
    s->emit_ctx = emit_ctx;
    s->in = NULL;
    s->in_off = s->in_len = s->in_cap = 0;
    s->eof = s->handshake_done = s->is_resumed = s->failed = s->last_error = 0;
    s->error_text[0] = '\0';
    s->cipher = NULL;
    s->sni_len = 0;
    s->sni[0] = '\0';
    s->next = NULL;
    return s;
}

static void destroy(struct moat_tls_session *s)
{
    mbedtls_ssl_free(&s->ssl);
    free(s->in);
    free(s);
}

void moat_tls_session_free(struct moat_tls_session *s)
{
    if (s == NULL)
        return;
    struct moat_tls_server *srv = s->srv;
    free(s->in);
    s->in = NULL;
    if (srv->n_spare >= MAX_SPARE || mbedtls_ssl_session_reset(&s->ssl) != 0) {
        destroy(s);
        return;
    }
    s->next = srv->spare;
    srv->spare = s;
    srv->n_spare++;
}

void moat_tls_session_pool_drain(struct moat_tls_server *srv)
{
    while (srv->spare != NULL) {
        struct moat_tls_session *s = srv->spare;
        srv->spare = s->next;
        destroy(s);
    }
    srv->n_spare = 0;
}

int moat_tls_session_feed(struct moat_tls_session *s, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    size_t held = s->in_len - s->in_off;
    if (held + len > MAX_BUFFERED)
        return fail(s, MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL);
    if (s->in_off > 0) { /* keep the unread bytes at the front: the buffer never grows past need */
        memmove(s->in, s->in + s->in_off, held);
        s->in_off = 0;
        s->in_len = held;
    }
    if (held + len > s->in_cap) {
        unsigned char *bigger = realloc(s->in, held + len);
        if (bigger == NULL)
            return fail(s, MBEDTLS_ERR_SSL_ALLOC_FAILED);
        s->in = bigger;
        s->in_cap = held + len;
    }
    memcpy(s->in + s->in_len, data, len);
    s->in_len += len;
    return 0;
}

void moat_tls_session_feed_eof(struct moat_tls_session *s)
{
    s->eof = 1;
}

size_t moat_tls_session_buffered(const struct moat_tls_session *s)
{
    return s->in_len - s->in_off;
}

int moat_tls_session_handshake(struct moat_tls_session *s)
{
    if (s->failed)
        return MOAT_TLS_FATAL;
    if (s->handshake_done)
        return MOAT_TLS_OK;
    s->srv->hs_current = s;
    int rc = mbedtls_ssl_handshake(&s->ssl);
    s->srv->hs_current = NULL;
    if (rc == 0) {
        s->handshake_done = 1;
        s->cipher = iana_name(mbedtls_ssl_get_ciphersuite(&s->ssl));
        release_input(s);
        return MOAT_TLS_OK;
    }
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
        release_input(s);
        return MOAT_TLS_AGAIN;
    }
    if (rc == MBEDTLS_ERR_SSL_CONN_EOF)
        return MOAT_TLS_EOF;
    return fail(s, rc);
}

int moat_tls_ticket_parse(void *p_ticket, mbedtls_ssl_session *session, unsigned char *buf,
                          size_t len)
{
    struct moat_tls_server *srv = p_ticket;
    int rc = mbedtls_ssl_ticket_parse(&srv->tickets, session, buf, len);
    /* TLS 1.2 resumes whenever the ticket parses; TLS 1.3 may still refuse it for its age or
     * key-exchange modes, which clients that resume as moat's tickets allow never hit. */
    if (rc == 0 && srv->hs_current != NULL)
        srv->hs_current->is_resumed = 1;
    return rc;
}

int moat_tls_session_is_resumed(const struct moat_tls_session *s)
{
    return s->handshake_done && s->is_resumed;
}

long moat_tls_session_read(struct moat_tls_session *s, void *buf, size_t cap)
{
    if (s->failed)
        return MOAT_TLS_FATAL;
    if (cap > INT_MAX)
        cap = INT_MAX;
    /* mbedTLS may answer WANT_READ right after a non-data record (a ticket, an alert it skips)
     * while more input waits: go on until our buffer and its own are both empty. */
    for (int spins = 0;; spins++) {
        int rc = mbedtls_ssl_read(&s->ssl, buf, cap);
        if (rc > 0)
            return rc;
        if (rc == 0 || rc == MBEDTLS_ERR_SSL_CONN_EOF)
            return MOAT_TLS_EOF;
        if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
            return MOAT_TLS_CLOSED;
        if (rc != MBEDTLS_ERR_SSL_WANT_READ && rc != MBEDTLS_ERR_SSL_WANT_WRITE)
            return fail(s, rc);
        if (spins < 64 && (s->in_off < s->in_len || mbedtls_ssl_check_pending(&s->ssl)))
            continue;
        release_input(s);
        return MOAT_TLS_AGAIN;
    }
}

int moat_tls_session_write(struct moat_tls_session *s, const void *data, size_t len)
{
    if (s->failed)
        return MOAT_TLS_FATAL;
    const unsigned char *p = data;
    while (len > 0) {
        /* One record per call: the library caps the length itself. */
        int rc = mbedtls_ssl_write(&s->ssl, p, len);
        if (rc <= 0)
            return fail(s, rc == 0 ? MBEDTLS_ERR_SSL_INTERNAL_ERROR : rc);
        p += rc;
        len -= (size_t)rc;
    }
    return MOAT_TLS_OK;
}

void moat_tls_session_close_notify(struct moat_tls_session *s)
{
    if (s->handshake_done && !s->failed)
        mbedtls_ssl_close_notify(&s->ssl);
}

int moat_tls_session_last_error(const struct moat_tls_session *s, const char **text)
{
    *text = s->failed ? s->error_text : "no error";
    return s->last_error;
}

const char *moat_tls_session_version(const struct moat_tls_session *s)
{
    return s->handshake_done ? mbedtls_ssl_get_version(&s->ssl) : "-";
}

const char *moat_tls_session_cipher(const struct moat_tls_session *s)
{
    return s->handshake_done && s->cipher != NULL ? s->cipher : "-";
}

const char *moat_tls_session_sni(const struct moat_tls_session *s, size_t *len)
{
    *len = s->sni_len;
    return s->sni_len > 0 ? s->sni : NULL;
}
