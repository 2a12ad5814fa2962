/* Unit tests for tls/: certificate loading and checks, the development certificate, and a
 * session driven in memory by a real mbedTLS client (no sockets). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/oid.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "tls/tls.h"

static char dir[] = "/tmp/moat-tls-test-XXXXXX";

static char *path_of(const char *name)
{
    static char buf[4][256];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, 256, "%s/%s", dir, name);
    return p;
}

static void write_text(const char *name, const char *text)
{
    FILE *f = fopen(path_of(name), "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    fclose(f);
}

/* Files every test may use: the development pair (ECDSA P-256), an RSA 2048 pair, a weak RSA
 * 1024 pair, and a stray ECDSA key that matches nothing. */
static int make_files(void **state)
{
    (void)state;
    if (mkdtemp(dir) == NULL)
        return -1;
    char err[256];
    struct moat_tls_devcert dc;
    if (moat_tls_global_init(err, sizeof(err)) != 0 ||
        moat_tls_devcert_make(time(NULL), &dc, err, sizeof(err)) != 0)
        return -1;
    write_text("ca.pem", dc.ca_cert_pem);
    write_text("ec.pem", dc.leaf_cert_pem);
    write_text("ec.key", dc.leaf_key_pem);
    write_text("stray.key", dc.ca_key_pem);
    moat_tls_devcert_free(&dc);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout rsa.key -out rsa.pem "
             "-days 2 -subj /CN=localhost 2>/dev/null && openssl req -x509 -newkey rsa:1024 "
             "-nodes -keyout weak.key -out weak.pem -days 2 -subj /CN=weak 2>/dev/null",
             dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int remove_files(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    moat_tls_global_free();
    return system(cmd) == 0 ? 0 : -1;
}

/* Loads pairs given as "cert,key" names; returns 0 or -1 with err. */
static int load(struct moat_tls_ctx **ctx, char *err, size_t len, const char *c1, const char *k1,
                const char *c2, const char *k2)
{
    struct moat_tls_pair pairs[2] = {{path_of(c1), path_of(k1)}, {NULL, NULL}};
    size_t n = 1;
    if (c2 != NULL) {
        pairs[1].cert_file = path_of(c2);
        pairs[1].key_file = path_of(k2);
        n = 2;
    }
    struct moat_tls_opts opts = {.pairs = pairs, .n_pairs = n};
    return moat_tls_ctx_new(&opts, ctx, err, len);
}

static void test_loads_ecdsa_and_rsa(void **state)
{
    (void)state;
    struct moat_tls_ctx *ctx;
    char err[256] = "";
    assert_int_equal(load(&ctx, err, sizeof(err), "ec.pem", "ec.key", "rsa.pem", "rsa.key"), 0);
    const char *d = moat_tls_ctx_describe(ctx);
    assert_non_null(strstr(d, "ECDSA P-256 CN=localhost"));
    assert_non_null(strstr(d, "RSA 2048 CN=localhost"));
    moat_tls_ctx_unref(ctx);
}

static void expect_load_error(const char *c1, const char *k1, const char *c2, const char *k2,
                              const char *needle1, const char *needle2)
{
    struct moat_tls_ctx *ctx = (void *)1;
    char err[512] = "";
    assert_int_equal(load(&ctx, err, sizeof(err), c1, k1, c2, k2), -1);
    assert_null(ctx);
    if (strstr(err, needle1) == NULL || strstr(err, needle2) == NULL)
        fail_msg("error '%s' lacks '%s' or '%s'", err, needle1, needle2);
}

static void test_load_errors_name_the_file(void **state)
{
    (void)state;
    expect_load_error("missing.pem", "ec.key", NULL, NULL, "missing.pem", "No such file");
    expect_load_error("ec.pem", "missing.key", NULL, NULL, "missing.key", "No such file");
    expect_load_error("ec.pem", "stray.key", NULL, NULL, "stray.key", "does not match");
    expect_load_error("ec.pem", "rsa.key", NULL, NULL, "rsa.key", "does not match");
    expect_load_error("ec.key", "ec.key", NULL, NULL, "ec.key", "not a PEM certificate");
    expect_load_error("ec.pem", "ec.pem", NULL, NULL, "ec.pem", "not a PEM private key");
    expect_load_error("weak.pem", "weak.key", NULL, NULL, "weak.key", "unsupported key");
    expect_load_error("ec.pem", "ec.key", "ec.pem", "ec.key", "ec.pem",
                      "same key type for the same names");
}

static void test_devcert_chain_verifies_for_local_names(void **state)
{
    (void)state;
    mbedtls_x509_crt ca, leaf;
    mbedtls_x509_crt_init(&ca);
    mbedtls_x509_crt_init(&leaf);
    assert_int_equal(mbedtls_x509_crt_parse_file(&ca, path_of("ca.pem")), 0);
    assert_int_equal(mbedtls_x509_crt_parse_file(&leaf, path_of("ec.pem")), 0);
    uint32_t flags = 0;
    assert_int_equal(mbedtls_x509_crt_verify(&leaf, &ca, NULL, "localhost", &flags, NULL, NULL), 0);
    assert_int_equal(mbedtls_x509_crt_verify(&leaf, &ca, NULL, "example.com", &flags, NULL, NULL),
                     MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
    assert_int_equal(mbedtls_x509_crt_check_key_usage(&ca, MBEDTLS_X509_KU_KEY_CERT_SIGN), 0);
    assert_int_not_equal(mbedtls_x509_crt_check_key_usage(&leaf, MBEDTLS_X509_KU_KEY_CERT_SIGN), 0);
    assert_int_equal(mbedtls_x509_crt_check_extended_key_usage(
                         &leaf, MBEDTLS_OID_SERVER_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)),
                     0);
    mbedtls_x509_crt_free(&ca);
    mbedtls_x509_crt_free(&leaf);

    time_t now = time(NULL);
    assert_int_equal(moat_tls_cert_file_valid_at(path_of("ec.pem"), now, 86400), 1);
    assert_int_equal(moat_tls_cert_file_valid_at(path_of("ec.pem"), now, 900L * 86400), 0);
    assert_int_equal(moat_tls_cert_file_valid_at(path_of("ec.pem"), now - 86400, 0), 0);
    assert_int_equal(moat_tls_cert_file_valid_at(path_of("missing.pem"), now, 0), -1);
}

/* ---- a session against a real mbedTLS client, in memory ---------------------------------- */

struct pipe {
    unsigned char data[1 << 20];
    size_t len, off;
};

struct peer {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt ca;
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    struct pipe to_server, to_client;
    struct moat_tls_ctx *ctx;
    struct moat_tls_server *srv;
    struct moat_tls_session *s;
};

static int server_emit(void *ctx, const void *data, size_t len)
{
    struct pipe *p = ctx;
    if (p->len + len > sizeof(p->data))
        return -1;
    memcpy(p->data + p->len, data, len);
    p->len += len;
    return 0;
}

static int client_send(void *ctx, const unsigned char *buf, size_t len)
{
    struct peer *p = ctx;
    return server_emit(&p->to_server, buf, len) == 0 ? (int)len : MBEDTLS_ERR_SSL_ALLOC_FAILED;
}

static int client_recv(void *ctx, unsigned char *buf, size_t len)
{
    struct pipe *q = &((struct peer *)ctx)->to_client;
    size_t avail = q->len - q->off;
    if (avail == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (len > avail)
        len = avail;
    memcpy(buf, q->data + q->off, len);
    q->off += len;
    if (q->off == q->len)
        q->off = q->len = 0;
    return (int)len;
}

/* Hands the client's bytes to the server session. */
static void to_server(struct peer *p)
{
    struct pipe *q = &p->to_server;
    if (q->len > q->off)
        assert_int_equal(moat_tls_session_feed(p->s, q->data + q->off, q->len - q->off), 0);
    q->off = q->len = 0;
}

static struct peer *peer_new(const char *cert, const char *key, int max_version,
                             const int *client_suites)
{
    struct peer *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    char err[256];
    assert_int_equal(load(&p->ctx, err, sizeof(err), cert, key, NULL, NULL), 0);
    p->srv = moat_tls_server_new(p->ctx, err, sizeof(err));
    assert_non_null(p->srv);
    p->s = moat_tls_session_new(p->srv, server_emit, &p->to_client);
    assert_non_null(p->s);

    mbedtls_entropy_init(&p->entropy);
    mbedtls_ctr_drbg_init(&p->drbg);
    mbedtls_x509_crt_init(&p->ca);
    mbedtls_ssl_config_init(&p->conf);
    mbedtls_ssl_init(&p->ssl);
    assert_int_equal(mbedtls_ctr_drbg_seed(&p->drbg, mbedtls_entropy_func, &p->entropy, NULL, 0), 0);
    assert_int_equal(mbedtls_x509_crt_parse_file(&p->ca, path_of("ca.pem")), 0);
    assert_int_equal(mbedtls_ssl_config_defaults(&p->conf, MBEDTLS_SSL_IS_CLIENT,
                                                 MBEDTLS_SSL_TRANSPORT_STREAM,
                                                 MBEDTLS_SSL_PRESET_DEFAULT),
                     0);
    mbedtls_ssl_conf_rng(&p->conf, mbedtls_ctr_drbg_random, &p->drbg);
    mbedtls_ssl_conf_ca_chain(&p->conf, &p->ca, NULL);
    mbedtls_ssl_conf_authmode(&p->conf, strcmp(cert, "ec.pem") == 0 ? MBEDTLS_SSL_VERIFY_REQUIRED
                                                                     : MBEDTLS_SSL_VERIFY_NONE);
    mbedtls_ssl_conf_max_tls_version(&p->conf, max_version);
    if (client_suites != NULL)
        mbedtls_ssl_conf_ciphersuites(&p->conf, client_suites);
    assert_int_equal(mbedtls_ssl_setup(&p->ssl, &p->conf), 0);
    assert_int_equal(mbedtls_ssl_set_hostname(&p->ssl, "localhost"), 0);
    mbedtls_ssl_set_bio(&p->ssl, p, client_send, client_recv, NULL);
    return p;
}

static void peer_free(struct peer *p)
{
    moat_tls_session_free(p->s);
    moat_tls_server_free(p->srv);
    moat_tls_ctx_unref(p->ctx);
    mbedtls_ssl_free(&p->ssl);
    mbedtls_ssl_config_free(&p->conf);
    mbedtls_x509_crt_free(&p->ca);
    mbedtls_ctr_drbg_free(&p->drbg);
    mbedtls_entropy_free(&p->entropy);
    free(p);
}

/* Runs both handshakes to completion; returns the server's final result. */
static int handshake(struct peer *p)
{
    int srv = MOAT_TLS_AGAIN, cli = MBEDTLS_ERR_SSL_WANT_READ;
    for (int round = 0; round < 50 && (srv == MOAT_TLS_AGAIN || cli != 0); round++) {
        if (cli != 0) {
            cli = mbedtls_ssl_handshake(&p->ssl);
            if (cli != 0 && cli != MBEDTLS_ERR_SSL_WANT_READ)
                fail_msg("client handshake failed: -0x%04x", (unsigned)-cli);
        }
        to_server(p);
        if (srv == MOAT_TLS_AGAIN)
            srv = moat_tls_session_handshake(p->s);
        if (srv == MOAT_TLS_FATAL)
            return srv;
    }
    assert_int_equal(cli, 0);
    return srv;
}

static void test_tls13_session_roundtrip(void **state)
{
    (void)state;
    struct peer *p = peer_new("ec.pem", "ec.key", MBEDTLS_SSL_VERSION_TLS1_3, NULL);
    assert_int_equal(handshake(p), MOAT_TLS_OK);
    assert_string_equal(moat_tls_session_version(p->s), "TLSv1.3");
    const char *suite = moat_tls_session_cipher(p->s); /* the client's first choice we allow */
    assert_true(strcmp(suite, "TLS_AES_128_GCM_SHA256") == 0 ||
                strcmp(suite, "TLS_AES_256_GCM_SHA384") == 0 ||
                strcmp(suite, "TLS_CHACHA20_POLY1305_SHA256") == 0);
    size_t sni_len;
    assert_string_equal(moat_tls_session_sni(p->s, &sni_len), "localhost");
    assert_int_equal(sni_len, 9);
    assert_int_equal(moat_tls_session_buffered(p->s), 0);

    /* Client to server: a message larger than one record arrives whole, in order. */
    static unsigned char msg[40000], got[40000];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (unsigned char)(i * 7);
    size_t sent = 0;
    while (sent < sizeof(msg)) {
        int n = mbedtls_ssl_write(&p->ssl, msg + sent, sizeof(msg) - sent);
        assert_true(n > 0);
        sent += (size_t)n;
    }
    to_server(p);
    size_t have = 0;
    long n;
    while ((n = moat_tls_session_read(p->s, got + have, sizeof(got) - have)) > 0)
        have += (size_t)n;
    assert_int_equal(n, MOAT_TLS_AGAIN);
    assert_int_equal(have, sizeof(msg));
    assert_memory_equal(got, msg, sizeof(msg));

    /* Server to client, then close_notify: the client sees the data and an orderly close. */
    assert_int_equal(moat_tls_session_write(p->s, "pong", 4), MOAT_TLS_OK);
    moat_tls_session_close_notify(p->s);
    unsigned char buf[16];
    int r;
    do
        r = mbedtls_ssl_read(&p->ssl, buf, sizeof(buf)); /* skips the TLS 1.3 ticket first */
    while (r == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET);
    assert_int_equal(r, 4);
    assert_memory_equal(buf, "pong", 4);
    assert_int_equal(mbedtls_ssl_read(&p->ssl, buf, sizeof(buf)), MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY);

    /* And the other way: the client's close_notify reads as CLOSED. */
    mbedtls_ssl_close_notify(&p->ssl);
    to_server(p);
    assert_int_equal(moat_tls_session_read(p->s, got, sizeof(got)), MOAT_TLS_CLOSED);
    peer_free(p);
}

/* A second connection offering the first one's ticket resumes, and says so; the first did not.
 * TLS 1.2 only: this mbedTLS client never got a TLS 1.3 ticket from the server here (even with
 * mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets()), so TLS 1.3 resumption is
 * checked in tests/integration/test_admin.py with OpenSSL clients, which resume. */
static void check_resumption(int max_version)
{
    struct peer *p = peer_new("ec.pem", "ec.key", max_version, NULL);
    assert_int_equal(handshake(p), MOAT_TLS_OK);
    assert_int_equal(moat_tls_session_is_resumed(p->s), 0);
    unsigned char buf[16];
    mbedtls_ssl_session saved;
    mbedtls_ssl_session_init(&saved);
    assert_int_equal(mbedtls_ssl_read(&p->ssl, buf, sizeof(buf)), MBEDTLS_ERR_SSL_WANT_READ);
    assert_int_equal(mbedtls_ssl_get_session(&p->ssl, &saved), 0);

    moat_tls_session_free(p->s);
    p->s = moat_tls_session_new(p->srv, server_emit, &p->to_client);
    assert_non_null(p->s);
    p->to_client.off = p->to_client.len = p->to_server.off = p->to_server.len = 0;
    assert_int_equal(mbedtls_ssl_session_reset(&p->ssl), 0);
    assert_int_equal(mbedtls_ssl_set_session(&p->ssl, &saved), 0);
    assert_int_equal(handshake(p), MOAT_TLS_OK);
    if (moat_tls_session_is_resumed(p->s) != 1)
        fail_msg("TLS 0x%04x: a session offering a ticket was not resumed", max_version);
    mbedtls_ssl_session_free(&saved);
    peer_free(p);
}

static void test_resumed_sessions_are_told_apart(void **state)
{
    (void)state;
    check_resumption(MBEDTLS_SSL_VERSION_TLS1_2);
}

static void test_tls12_ecdhe_aead_only(void **state)
{
    (void)state;
    static const int aead[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, 0};
    struct peer *p = peer_new("ec.pem", "ec.key", MBEDTLS_SSL_VERSION_TLS1_2, aead);
    assert_int_equal(handshake(p), MOAT_TLS_OK);
    assert_string_equal(moat_tls_session_version(p->s), "TLSv1.2");
    assert_string_equal(moat_tls_session_cipher(p->s), "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384");
    size_t sni_len;
    assert_string_equal(moat_tls_session_sni(p->s, &sni_len), "localhost");
    peer_free(p);

    /* A CBC suite is refused even though the library supports it. */
    static const int cbc[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, 0};
    p = peer_new("ec.pem", "ec.key", MBEDTLS_SSL_VERSION_TLS1_2, cbc);
    int cli = mbedtls_ssl_handshake(&p->ssl);
    assert_int_equal(cli, MBEDTLS_ERR_SSL_WANT_READ);
    to_server(p);
    assert_int_equal(moat_tls_session_handshake(p->s), MOAT_TLS_FATAL);
    const char *text;
    assert_true(moat_tls_session_last_error(p->s, &text) < 0);
    assert_true(strlen(text) > 0);
    peer_free(p);
}

static void test_rsa_pair_serves_rsa_clients(void **state)
{
    (void)state;
    static const int rsa[] = {MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, 0};
    struct peer *p = peer_new("rsa.pem", "rsa.key", MBEDTLS_SSL_VERSION_TLS1_2, rsa);
    assert_int_equal(handshake(p), MOAT_TLS_OK);
    assert_string_equal(moat_tls_session_cipher(p->s), "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
    peer_free(p);
}

/* Names are recorded as sent (raw bytes, case kept) up to MOAT_TLS_SNI_MAX, the longest an
 * mbedTLS client sends (longer ones are cut); no SNI reads as NULL. */
static void test_sni_is_recorded_bounded(void **state)
{
    (void)state;
    struct peer *p = peer_new("rsa.pem", "rsa.key", MBEDTLS_SSL_VERSION_TLS1_3, NULL);
    char name[MOAT_TLS_SNI_MAX + 1];
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    memcpy(name, "Mixed.Case.", 11);
    assert_int_equal(mbedtls_ssl_set_hostname(&p->ssl, name), 0);
    assert_int_equal(handshake(p), MOAT_TLS_OK);
    size_t sni_len;
    const char *sni = moat_tls_session_sni(p->s, &sni_len);
    assert_non_null(sni);
    assert_int_equal(sni_len, MOAT_TLS_SNI_MAX);
    assert_int_equal(strlen(sni), MOAT_TLS_SNI_MAX);
    assert_memory_equal(sni, name, MOAT_TLS_SNI_MAX);
    peer_free(p);

    p = peer_new("rsa.pem", "rsa.key", MBEDTLS_SSL_VERSION_TLS1_2, NULL);
    assert_int_equal(mbedtls_ssl_set_hostname(&p->ssl, NULL), 0); /* no server_name at all */
    assert_int_equal(handshake(p), MOAT_TLS_OK);
    assert_null(moat_tls_session_sni(p->s, &sni_len));
    assert_int_equal(sni_len, 0);
    peer_free(p);
}

static void test_garbage_and_eof(void **state)
{
    (void)state;
    struct peer *p = peer_new("ec.pem", "ec.key", MBEDTLS_SSL_VERSION_TLS1_3, NULL);
    assert_int_equal(moat_tls_session_handshake(p->s), MOAT_TLS_AGAIN);
    assert_int_equal(moat_tls_session_feed(p->s, "GET / HTTP/1.1\r\n\r\n", 18), 0);
    assert_int_equal(moat_tls_session_handshake(p->s), MOAT_TLS_FATAL);
    assert_int_equal(moat_tls_session_handshake(p->s), MOAT_TLS_FATAL); /* stays failed */
    peer_free(p);

    /* A transport that ends before the handshake completes reads as EOF, not as an error. */
    p = peer_new("ec.pem", "ec.key", MBEDTLS_SSL_VERSION_TLS1_3, NULL);
    moat_tls_session_feed_eof(p->s);
    assert_int_equal(moat_tls_session_handshake(p->s), MOAT_TLS_EOF);
    peer_free(p);

    /* A client that floods beyond the input cap is refused. */
    p = peer_new("ec.pem", "ec.key", MBEDTLS_SSL_VERSION_TLS1_3, NULL);
    static char junk[64 * 1024];
    int rc = 0;
    for (int i = 0; i < 4 && rc == 0; i++)
        rc = moat_tls_session_feed(p->s, junk, sizeof(junk));
    assert_int_equal(rc, MOAT_TLS_FATAL);
    peer_free(p);
}

/* On Debian's engine a freed session is kept and reset for the next client; on the project's
 * engine it is not (its record buffers go back to the system: tls/alloc.c). Either way a new
 * session knows nothing of the last client. */
static void test_a_new_session_forgets_the_last_client(void **state)
{
    (void)state;
    struct peer *p = peer_new("ec.pem", "ec.key", MBEDTLS_SSL_VERSION_TLS1_3, NULL);
    assert_int_equal(handshake(p), MOAT_TLS_OK);
    struct moat_tls_session *old = p->s;
    moat_tls_session_free(old);
    p->s = moat_tls_session_new(p->srv, server_emit, &p->to_client);
#if !defined(MBEDTLS_PLATFORM_MEMORY)
    assert_ptr_equal(p->s, old); /* the same memory, reset */
#endif
    assert_string_equal(moat_tls_session_version(p->s), "-");
    size_t sni_len = 1;
    assert_null(moat_tls_session_sni(p->s, &sni_len)); /* the last client's name is gone */
    assert_int_equal(sni_len, 0);
    mbedtls_ssl_session_reset(&p->ssl);
    p->to_client.len = p->to_client.off = 0;
    assert_int_equal(handshake(p), MOAT_TLS_OK);
    assert_string_equal(moat_tls_session_sni(p->s, &sni_len), "localhost"); /* recorded again */
    peer_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loads_ecdsa_and_rsa),
        cmocka_unit_test(test_load_errors_name_the_file),
        cmocka_unit_test(test_devcert_chain_verifies_for_local_names),
        cmocka_unit_test(test_tls13_session_roundtrip),
        cmocka_unit_test(test_resumed_sessions_are_told_apart),
        cmocka_unit_test(test_tls12_ecdhe_aead_only),
        cmocka_unit_test(test_rsa_pair_serves_rsa_clients),
        cmocka_unit_test(test_sni_is_recorded_bounded),
        cmocka_unit_test(test_garbage_and_eof),
        cmocka_unit_test(test_a_new_session_forgets_the_last_client),
    };
    return cmocka_run_group_tests(tests, make_files, remove_files);
}
