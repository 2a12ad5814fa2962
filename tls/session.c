/* tls/session.c: one client connection's TLS session, run over memory. Ciphertext comes in through
 * feed() into a buffer that exists only while it holds bytes; ciphertext goes out through the
 * caller's emit callback, which always takes everything, so mbedTLS never sees WANT_WRITE and
 * the caller's own queue size is the backpressure signal. */
#include "tls/tls.h"
#include "tls/internal.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/error.h>
#include <mbedtls/ssl.h>

/* Unprocessed ciphertext a session holds at most: a little over what one read of the caller's
 * 64 KiB slab adds to a partly consumed record; more means the caller forgot to stop reading. */
#define MAX_BUFFERED (160u * 1024u)

/* Reset sessions kept per worker for reuse: mbedTLS allocates ~38 KiB of record buffers in
 * mbedtls_ssl_setup() and keeps them across mbedtls_ssl_session_reset(). Not where moat gives
 * mbedTLS its own pages (alloc.c): the reset writes zeros over both buffers, which makes every
 * page of them resident, where a new context's stay untouched until records fill them. */
#if defined(MBEDTLS_PLATFORM_MEMORY)
#define MAX_SPARE 0
#else
#define MAX_SPARE 32
#endif

struct moat_tls_session {
    mbedtls_ssl_context ssl;
    struct moat_tls_server *srv;
    moat_tls_emit_cb emit;
    void *emit_ctx;
    unsigned char *in; /* ciphertext not yet taken by mbedTLS: in[in_off..in_len) */
    size_t in_off, in_len, in_cap;
    const unsigned char *lent; /* borrowed: ciphertext lent by the caller (after in's bytes),
                                * lent_len of it not yet taken; until _settle() */
    size_t lent_len;
    int eof;           /* the transport ended after the buffered bytes */
    int handshake_done;
    int is_resumed;    /* the handshake accepted a session ticket */
    int failed;        /* a fatal error: only _free() may follow */
    uint64_t emitted;  /* ciphertext bytes handed to emit so far (tells whether a call sent any) */
    /* The record framing of what was emitted, followed byte by byte: mbedTLS may hand several
     * records, or part of one, to bio_send. */
    unsigned char out_hdr[5]; /* the header being collected */
    unsigned out_hdr_len;     /* its bytes so far (5: complete, body follows) */
    size_t out_body_left;     /* bytes of the current record's body still to come */
    unsigned char last_type;  /* content type of the last record whose header was emitted */
    int last_error;
    char error_text[256];
    const char *cipher;  /* static: the suite's IANA name, set when the handshake completes */
    unsigned char sni_len;
    char sni[MOAT_TLS_SNI_MAX + 1]; /* the server_name the client sent, cut at MOAT_TLS_SNI_MAX
                                     * bytes; NUL-terminated (raw bytes: may hold anything) */
    long site;                      /* the site whose certificate the handshake chose (-1:
                                     * none yet); the default for no name or an unknown one */
    struct moat_tls_session *next; /* in the server's spare list */
};

/* Follows the records in len emitted bytes, so last_type names the last one begun. */
static void track_records(struct moat_tls_session *s, const unsigned char *buf, size_t len)
{
    while (len > 0) {
        if (s->out_body_left > 0) {
            size_t n = len < s->out_body_left ? len : s->out_body_left;
            s->out_body_left -= n;
            buf += n;
            len -= n;
            continue;
        }
        s->out_hdr[s->out_hdr_len++] = *buf++;
        len--;
        if (s->out_hdr_len == sizeof(s->out_hdr)) {
            s->last_type = s->out_hdr[0];
            s->out_body_left = (size_t)s->out_hdr[3] << 8 | s->out_hdr[4];
            s->out_hdr_len = 0;
        }
    }
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    struct moat_tls_session *s = ctx;
    if (len > INT_MAX)
        len = INT_MAX;
    if (s->emit(s->emit_ctx, buf, len) != 0)
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    s->emitted += len;
    track_records(s, buf, len);
    return (int)len;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    struct moat_tls_session *s = ctx;
    size_t avail = s->in_len - s->in_off;
    if (avail == 0 && s->lent_len > 0) { /* the caller's bytes, read where they are */
        if (len > s->lent_len)
            len = s->lent_len;
        if (len > INT_MAX)
            len = INT_MAX;
        memcpy(buf, s->lent, len);
        s->lent += len;
        s->lent_len -= len;
        return (int)len;
    }
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

/* mbedTLS hands over a secret: one key log line (NSS format), to the server's key log. */
static void export_key(void *arg, mbedtls_ssl_key_export_type type, const unsigned char *secret,
                       size_t secret_len, const unsigned char client_random[32],
                       const unsigned char server_random[32], mbedtls_tls_prf_types prf)
{
    (void)server_random;
    (void)prf;
    static const struct {
        mbedtls_ssl_key_export_type type;
        const char *label;
    } labels[] = {
        {MBEDTLS_SSL_KEY_EXPORT_TLS12_MASTER_SECRET, "CLIENT_RANDOM"},
        {MBEDTLS_SSL_KEY_EXPORT_TLS1_3_CLIENT_HANDSHAKE_TRAFFIC_SECRET,
         "CLIENT_HANDSHAKE_TRAFFIC_SECRET"},
        {MBEDTLS_SSL_KEY_EXPORT_TLS1_3_SERVER_HANDSHAKE_TRAFFIC_SECRET,
         "SERVER_HANDSHAKE_TRAFFIC_SECRET"},
        {MBEDTLS_SSL_KEY_EXPORT_TLS1_3_CLIENT_APPLICATION_TRAFFIC_SECRET,
         "CLIENT_TRAFFIC_SECRET_0"},
        {MBEDTLS_SSL_KEY_EXPORT_TLS1_3_SERVER_APPLICATION_TRAFFIC_SECRET,
         "SERVER_TRAFFIC_SECRET_0"},
    };
    struct moat_tls_session *s = arg;
    const char *label = NULL;
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]) && label == NULL; i++)
        if (labels[i].type == type)
            label = labels[i].label;
    if (label == NULL || secret_len > 64 || s->srv->keylog == NULL)
        return;
    char line[64 + 1 + 64 + 1 + 128 + 2];
    size_t n = (size_t)snprintf(line, sizeof(line), "%s ", label);
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < 32; i++) {
        line[n++] = hex[client_random[i] >> 4];
        line[n++] = hex[client_random[i] & 15];
    }
    line[n++] = ' ';
    for (size_t i = 0; i < secret_len; i++) {
        line[n++] = hex[secret[i] >> 4];
        line[n++] = hex[secret[i] & 15];
    }
    line[n++] = '\n';
    s->srv->keylog(s->srv->keylog_arg, line, n);
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
    /* A strict listener refuses a name it has no certificate for: mbedTLS then sends
     * unrecognized_name. */
    return s->srv->ctx->strict_sni && moat_tls_site_find(s->srv->ctx, s->sni, len) < 0 ? -1 : 0;
}

/* The site the handshake serves: the one cert_cb chose, or before it the one the SNI selects
 * (the default without a name or for an unknown one); -1 for a strict listener's refusal. */
static long chosen_site(const struct moat_tls_session *s)
{
    if (s->site >= 0)
        return s->site;
    long site = s->sni_len > 0 ? moat_tls_site_find(s->srv->ctx, s->sni, s->sni_len) : -1;
    return site >= 0 ? site : s->srv->ctx->strict_sni ? -1 : 0;
}

uint64_t moat_tls_session_binding(const struct moat_tls_session *s)
{
    long site = chosen_site(s);
    return site >= 0 ? s->srv->ctx->sites[site].binding : 0;
}

int moat_tls_session_on_cert(mbedtls_ssl_context *ssl)
{
    struct moat_tls_session *s = mbedtls_ssl_get_user_data_p(ssl);
    const struct moat_tls_ctx *ctx = s->srv->ctx;
    long site = chosen_site(s);
    if (site < 0)
        return MBEDTLS_ERR_SSL_UNRECOGNIZED_NAME; /* strict, and no name at all */
    s->site = site;
    /* A HelloRetryRequest runs this again: start from an empty list each time. */
    int rc = mbedtls_ssl_set_hs_own_cert(ssl, NULL, NULL);
    const struct moat_tls_site *st = &ctx->sites[s->site];
    for (size_t i = 0; rc == 0 && i < st->n_pairs; i++) {
        mbedtls_pk_context *key;
        rc = moat_tls_server_key(s->srv, st->pair[i], &key);
        if (rc == 0)
            rc = mbedtls_ssl_set_hs_own_cert(ssl, &ctx->certs[st->pair[i]].chain, key);
    }
    return rc;
}

/* The fatal alert an mbedTLS error names, or -1 for errors that name none (the peer's own alert,
 * the transport's end, moat's own out-of-memory). */
static int alert_for(int code, int in_handshake)
{
    switch (code) {
    case MBEDTLS_ERR_SSL_HANDSHAKE_FAILURE:
        return MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE;
    case MBEDTLS_ERR_SSL_UNEXPECTED_MESSAGE:
    case MBEDTLS_ERR_SSL_INVALID_RECORD: /* RFC 8446 §5: malformed records are unexpected */
        return MBEDTLS_SSL_ALERT_MSG_UNEXPECTED_MESSAGE;
    case MBEDTLS_ERR_SSL_DECODE_ERROR:
        return MBEDTLS_SSL_ALERT_MSG_DECODE_ERROR;
    case MBEDTLS_ERR_SSL_ILLEGAL_PARAMETER:
        return MBEDTLS_SSL_ALERT_MSG_ILLEGAL_PARAMETER;
    case MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION:
        return MBEDTLS_SSL_ALERT_MSG_PROTOCOL_VERSION;
    case MBEDTLS_ERR_SSL_UNSUPPORTED_EXTENSION:
        return MBEDTLS_SSL_ALERT_MSG_UNSUPPORTED_EXT;
    case MBEDTLS_ERR_SSL_NO_APPLICATION_PROTOCOL:
        return MBEDTLS_SSL_ALERT_MSG_NO_APPLICATION_PROTOCOL;
    case MBEDTLS_ERR_SSL_UNRECOGNIZED_NAME: /* a strict listener and no name (on_cert) */
        return MBEDTLS_SSL_ALERT_MSG_UNRECOGNIZED_NAME;
    case MBEDTLS_ERR_SSL_BAD_INPUT_DATA:
        /* In a handshake this is the client's data failing a check inside the crypto (a key
         * share off its curve, RFC 8446 §4.2.8) or a message too large to hold. */
        return in_handshake ? MBEDTLS_SSL_ALERT_MSG_ILLEGAL_PARAMETER : -1;
    default:
        return -1;
    }
}

/* mbedTLS 3.6 fails some handshakes and records without telling the peer (no group in common,
 * an invalid key share, an empty alert, a KeyUpdate): RFC 8446 §6.2 wants a fatal alert, so
 * send the one the error names unless the failing call's output ended with one of mbedTLS's
 * own. A plaintext alert record says so; an encrypted TLS 1.3 record hides its type, so one
 * ending the call counts as the alert (mbedTLS fails after writing a flight only before it
 * has keys: an invalid key share, found after the ServerHello). */
static int ended_with_alert(const struct moat_tls_session *s, uint64_t emitted_before)
{
    return s->emitted != emitted_before && (s->last_type == MBEDTLS_SSL_MSG_ALERT ||
                                            s->last_type == MBEDTLS_SSL_MSG_APPLICATION_DATA);
}

static void alert_if_silent(struct moat_tls_session *s, int code, uint64_t emitted_before,
                            int in_handshake)
{
    int alert = alert_for(code, in_handshake);
    /* A flight mbedTLS had not flushed yet (its ServerHello, before an invalid key share) goes
     * out first: send_alert_message() then only flushes, and a second call writes the alert. */
    for (int tries = 0; alert >= 0 && tries < 2 && !ended_with_alert(s, emitted_before); tries++)
        if (mbedtls_ssl_send_alert_message(&s->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                           (unsigned char)alert) != 0)
            break;
}

static int fail(struct moat_tls_session *s, int code)
{
    s->failed = 1;
    s->last_error = code;
    mbedtls_strerror(code, s->error_text, sizeof(s->error_text));
    uint32_t flags = mbedtls_ssl_get_verify_result(&s->ssl);
    if (code == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags != 0 && flags != (uint32_t)-1) {
        size_t used = (size_t)snprintf(s->error_text, sizeof(s->error_text),
                                       "client certificate refused: ");
        mbedtls_x509_crt_verify_info(s->error_text + used, sizeof(s->error_text) - used, "",
                                     flags);
        for (char *p = s->error_text; *p != '\0'; p++) /* one log line */
            if (*p == '\n')
                *p = *(p + 1) == '\0' ? '\0' : ';';
    }
    return MOAT_TLS_FATAL;
}

/* With client certificates optional, mbedTLS ends the handshake even when the one the client
 * sent fails its checks: refuse it here, with the alert its failure names. 1 when refused. */
static int bad_client_cert(struct moat_tls_session *s)
{
    uint32_t flags = mbedtls_ssl_get_verify_result(&s->ssl);
    if (s->srv->ctx->client_auth != 1 || mbedtls_ssl_get_peer_cert(&s->ssl) == NULL || flags == 0)
        return 0;
    unsigned char alert = MBEDTLS_SSL_ALERT_MSG_BAD_CERT;
    if (flags & MBEDTLS_X509_BADCERT_EXPIRED)
        alert = MBEDTLS_SSL_ALERT_MSG_CERT_EXPIRED;
    else if (flags & MBEDTLS_X509_BADCERT_REVOKED)
        alert = MBEDTLS_SSL_ALERT_MSG_CERT_REVOKED;
    else if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
        alert = MBEDTLS_SSL_ALERT_MSG_UNKNOWN_CA;
    mbedtls_ssl_send_alert_message(&s->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL, alert);
    fail(s, MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
    return 1;
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
    mbedtls_ssl_set_export_keys_cb(&s->ssl, srv->keylog != NULL ? export_key : NULL, s);
    s->srv = srv;
    s->emit = emit;
    s->emit_ctx = emit_ctx;
    s->in = NULL;
    s->in_off = s->in_len = s->in_cap = 0;
    s->lent = NULL;
    s->lent_len = 0;
    s->eof = s->handshake_done = s->is_resumed = s->failed = s->last_error = 0;
    s->emitted = 0;
    s->out_hdr_len = 0;
    s->out_body_left = 0;
    s->last_type = 0;
    s->error_text[0] = '\0';
    s->cipher = NULL;
    s->sni_len = 0;
    s->sni[0] = '\0';
    s->site = -1;
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
    if (srv->n_spare + 1 > MAX_SPARE || mbedtls_ssl_session_reset(&s->ssl) != 0) {
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

int moat_tls_session_lend(struct moat_tls_session *s, const void *data, size_t len)
{
    if (s->lent_len > 0 && moat_tls_session_settle(s) != 0) /* keeps the bytes in order */
        return MOAT_TLS_FATAL;
    if (s->in_len - s->in_off + len > MAX_BUFFERED)
        return moat_tls_session_feed(s, data, len); /* over the cap: fails as feed() does */
    s->lent = data;
    s->lent_len = len;
    return 0;
}

int moat_tls_session_settle(struct moat_tls_session *s)
{
    const unsigned char *rest = s->lent;
    size_t len = s->lent_len;
    s->lent = NULL;
    s->lent_len = 0;
    return len > 0 ? moat_tls_session_feed(s, rest, len) : 0;
}

void moat_tls_session_feed_eof(struct moat_tls_session *s)
{
    s->eof = 1;
}

size_t moat_tls_session_buffered(const struct moat_tls_session *s)
{
    return s->in_len - s->in_off + s->lent_len;
}

int moat_tls_session_handshake(struct moat_tls_session *s)
{
    if (s->failed)
        return MOAT_TLS_FATAL;
    if (s->handshake_done)
        return MOAT_TLS_OK;
    s->srv->hs_current = s;
    uint64_t emitted_before = s->emitted;
    int rc = mbedtls_ssl_handshake(&s->ssl);
    s->srv->hs_current = NULL;
    if (rc == 0 && bad_client_cert(s)) /* optional: a certificate was sent, and failed */
        return MOAT_TLS_FATAL;
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
    alert_if_silent(s, rc, emitted_before, 1);
    return fail(s, rc);
}

int moat_tls_ticket_parse(void *p_ticket, mbedtls_ssl_session *session, unsigned char *buf,
                          size_t len)
{
    struct moat_tls_server *srv = p_ticket;
    if (srv->hs_current == NULL)
        return MBEDTLS_ERR_SSL_INVALID_MAC;
    int rc = moat_tls_tickets_parse(moat_tls_session_binding(srv->hs_current), session, buf,
                                    len);
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
        uint64_t emitted_before = s->emitted;
        int rc = mbedtls_ssl_read(&s->ssl, buf, cap);
        if (rc > 0)
            return rc;
        if (rc == 0 || rc == MBEDTLS_ERR_SSL_CONN_EOF)
            return MOAT_TLS_EOF;
        if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
            return MOAT_TLS_CLOSED;
        if (rc != MBEDTLS_ERR_SSL_WANT_READ && rc != MBEDTLS_ERR_SSL_WANT_WRITE) {
            alert_if_silent(s, rc, emitted_before, 0);
            return fail(s, rc);
        }
        if (spins < 64 &&
            (s->in_off < s->in_len || s->lent_len > 0 || mbedtls_ssl_check_pending(&s->ssl)))
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

int moat_tls_session_is_misdirected(const struct moat_tls_session *s, const char *host,
                                    size_t len)
{
    if (s->srv->ctx->n_sites == 1)
        return 0; /* one certificate: every name is its */
    long chosen = chosen_site(s);
    long site = moat_tls_site_find(s->srv->ctx, host, len);
    return chosen >= 0 && site >= 0 && site != chosen;
}

long moat_tls_session_client_cert(const struct moat_tls_session *s, int chain, char *out,
                                  size_t cap)
{
    const mbedtls_x509_crt *crt = mbedtls_ssl_get_peer_cert(&s->ssl);
    if (crt == NULL || !s->handshake_done || mbedtls_ssl_get_verify_result(&s->ssl) != 0)
        return 0;
    size_t used = 0;
    for (crt = chain ? crt->next : crt; crt != NULL && crt->raw.p != NULL; crt = crt->next) {
        if (used > 0) {
            if (cap - used < 3)
                return -1;
            memcpy(out + used, ", ", 2);
            used += 2;
        }
        size_t n = 0;
        if (cap - used < 2 ||
            mbedtls_base64_encode((unsigned char *)out + used + 1, cap - used - 2, &n,
                                  crt->raw.p, crt->raw.len) != 0 ||
            used + n + 2 >= cap)
            return -1;
        out[used] = ':';
        out[used + 1 + n] = ':';
        used += n + 2;
        out[used] = '\0';
        if (!chain)
            break;
    }
    return (long)used;
}
