/* tls/tls.h: moat's TLS layer on mbedTLS 3.6. Certificates and keys are loaded once and shared
 * read-only; each worker builds its own server configuration (RNG, ticket keys) on top; each
 * connection runs a session over memory: ciphertext in through feed(), ciphertext out through a
 * caller's callback. Never touches sockets, clocks or logs; errors come back as values and text. */
#ifndef MOAT_TLS_H
#define MOAT_TLS_H
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* One certificate chain and its key, as files. */
struct moat_tls_pair {
    const char *cert_file; /* PEM: leaf first, then intermediates */
    const char *key_file;  /* PEM private key: ECDSA P-256/P-384 or RSA >= 2048 */
};

/* Options of a listener's TLS (copied; strings borrowed only during the call). */
struct moat_tls_opts {
    const struct moat_tls_pair *pairs; /* at least 1: each serves the names of its leaf's
                                        * subjectAltName (its CN without one); an ECDSA and an
                                        * RSA pair for the same names serve both kinds of
                                        * client; the first pair's names are the default */
    size_t n_pairs;
    int min_version; /* 13: TLS 1.3 only; anything else: TLS 1.2 and 1.3 */
    int strict_sni;  /* refuse a client whose name no certificate has, or that sends none */
    int client_auth; /* 0: no client certificates; 1: optional (a bad one is refused); 2:
                      * required */
    const char *client_ca_file;  /* PEM CAs a client certificate must chain to (client_auth) */
    const char *client_crl_file; /* PEM CRL of revoked client certificates, or NULL */
};

struct moat_tls_ctx;    /* certificates + keys; immutable, shared by all workers, refcounted */
struct moat_tls_server; /* one worker's mbedTLS server configuration over a ctx */
struct moat_tls_session;

/* Which TLS engine this moat was built with, for --version and the start-up line:
 * "mbedTLS 3.6.6, moat's build, accelerated by OpenSSL 3.0.19" or "mbedTLS 3.6.6, Debian's
 * library". Static storage; safe before moat_tls_global_init(). */
const char *moat_tls_engine_describe(void);

/* Must run once in main() before any other call here (psa_crypto_init). 0 or -1. */
int moat_tls_global_init(char *err, size_t err_len);
void moat_tls_global_free(void);

/* Loads and checks every pair: readable files, parseable PEM, a supported key type and size, the
 * key matches its certificate, at most one pair per key type for one set of names. On error
 * returns -1 and err names the file and the reason ("site.key: key does not match certificate
 * site.pem"). A name that two sets list belongs to the first. */
int moat_tls_ctx_new(const struct moat_tls_opts *opts, struct moat_tls_ctx **out, char *err,
                     size_t err_len);
void moat_tls_ctx_ref(struct moat_tls_ctx *ctx);   /* atomic */
void moat_tls_ctx_unref(struct moat_tls_ctx *ctx); /* atomic; frees at 0; NULL: nothing */

/* Text describing the loaded certificates for the start-up log, e.g.
 * "ECDSA P-256 CN=localhost, RSA 2048 CN=localhost" (static storage inside ctx). */
const char *moat_tls_ctx_describe(const struct moat_tls_ctx *ctx);

/* The loaded pairs: how many, and pair i's certificate file and its leaf's notAfter (seconds
 * since the Unix epoch, UTC). */
size_t moat_tls_ctx_count(const struct moat_tls_ctx *ctx);
const char *moat_tls_ctx_cert(const struct moat_tls_ctx *ctx, size_t i, int64_t *not_after);

/* Builds one worker's server configuration: TLS 1.2 + 1.3 only; TLS 1.3 AES-GCM and
 * ChaCha20-Poly1305 suites; TLS 1.2 ECDHE + AEAD suites only; groups X25519, P-256, P-384; ALPN
 * http/1.1; session tickets; no renegotiation. Takes a reference on ctx. NULL on failure with
 * err. Used by one thread only. */
struct moat_tls_server *moat_tls_server_new(struct moat_tls_ctx *ctx, char *err, size_t err_len);
void moat_tls_server_free(struct moat_tls_server *srv); /* after its last session is freed */

/* Debugging only: called with each TLS secret of every later session of srv, as one line of
 * the NSS key log format Wireshark reads ("CLIENT_RANDOM <hex> <hex>\n" for TLS 1.2, the four
 * traffic secrets for TLS 1.3), on the worker's thread. NULL cb: none (the default). */
typedef void (*moat_tls_keylog_cb)(void *arg, const char *line, size_t len);
void moat_tls_server_set_keylog(struct moat_tls_server *srv, moat_tls_keylog_cb cb, void *arg);

/* Called with every ciphertext byte a session produces, in order. The callee copies the bytes
 * (they are not valid after return). Returns 0, or -1 (out of memory: the session fails). */
typedef int (*moat_tls_emit_cb)(void *ctx, const void *data, size_t len);

/* A new session for one accepted connection (recycled from a per-server free list, so the ~38 KiB
 * of mbedTLS record buffers are not reallocated per connection). NULL on ENOMEM. */
struct moat_tls_session *moat_tls_session_new(struct moat_tls_server *srv, moat_tls_emit_cb emit,
                                              void *emit_ctx);
void moat_tls_session_free(struct moat_tls_session *s); /* back to the free list; NULL: nothing */

/* Results of the session calls below. */
enum moat_tls_result {
    MOAT_TLS_OK = 0,
    MOAT_TLS_AGAIN = -1,  /* needs more ciphertext */
    MOAT_TLS_CLOSED = -2, /* the peer sent close_notify: orderly end */
    MOAT_TLS_EOF = -3,    /* the transport ended without close_notify (feed_eof() was called) */
    MOAT_TLS_FATAL = -4,  /* protocol or crypto error: see last_error; use nothing but _free() */
};

/* Copies len ciphertext bytes received from the network into the session's input buffer (the
 * buffer exists only while it holds bytes). Returns 0, or MOAT_TLS_FATAL when more than 64 KiB
 * would be held unprocessed (the caller should have stopped reading). */
int moat_tls_session_feed(struct moat_tls_session *s, const void *data, size_t len);

/* As feed(), without the copy: the session reads data where it is until
 * moat_tls_session_settle(), which copies what it has not taken yet (the caller's buffer is
 * only valid until then). Same returns as feed(); call settle() whatever happens. */
int moat_tls_session_lend(struct moat_tls_session *s, const void *data, size_t len);
int moat_tls_session_settle(struct moat_tls_session *s);

/* The network said EOF: after the buffered bytes, the transport has ended. */
void moat_tls_session_feed_eof(struct moat_tls_session *s);

/* Bytes fed (or lent) but not yet consumed by mbedTLS. */
size_t moat_tls_session_buffered(const struct moat_tls_session *s);

/* Advances the handshake: MOAT_TLS_OK when it is complete (also on later calls), MOAT_TLS_AGAIN,
 * MOAT_TLS_EOF or MOAT_TLS_FATAL. May emit ciphertext; on MOAT_TLS_FATAL that ends with the
 * fatal alert the error names, also where mbedTLS itself sends none (no group in common, an
 * invalid key share): flush it before closing. */
int moat_tls_session_handshake(struct moat_tls_session *s);

/* After the handshake: 1 if it resumed a session from a ticket the client offered, else 0. */
int moat_tls_session_is_resumed(const struct moat_tls_session *s);

/* Decrypts at most cap bytes of application data into buf. Returns > 0 (bytes), MOAT_TLS_AGAIN
 * (nothing more until more ciphertext is fed), MOAT_TLS_CLOSED, MOAT_TLS_EOF or MOAT_TLS_FATAL.
 * Call again until MOAT_TLS_AGAIN: one feed may hold several records. May emit (alerts: on
 * MOAT_TLS_FATAL the fatal alert for a bad record, as for the handshake). */
long moat_tls_session_read(struct moat_tls_session *s, void *buf, size_t cap);

/* Encrypts all len bytes (in records of up to 16 KiB) and emits them. MOAT_TLS_OK or
 * MOAT_TLS_FATAL. */
int moat_tls_session_write(struct moat_tls_session *s, const void *data, size_t len);

/* Emits close_notify (after a completed handshake; otherwise does nothing). */
void moat_tls_session_close_notify(struct moat_tls_session *s);

/* After MOAT_TLS_FATAL: mbedTLS's code (negative, e.g. -0x7780) and a short text for logs. */
int moat_tls_session_last_error(const struct moat_tls_session *s, const char **text);

/* After the handshake, for access logs: the version ("TLSv1.2", "TLSv1.3") and the
 * ciphersuite's IANA name ("TLS_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384");
 * "-" before. Static strings. */
const char *moat_tls_session_version(const struct moat_tls_session *s);
const char *moat_tls_session_cipher(const struct moat_tls_session *s);

#define MOAT_TLS_SNI_MAX 255 /* longest server name a session records (a DNS name: 253) */

/* The server_name the client sent (RFC 6066 §3), as raw bytes: not validated, not case-folded,
 * cut at MOAT_TLS_SNI_MAX; NUL-terminated. NULL with *len 0 when the client sent none (or the
 * handshake has not reached it). Valid until the session is freed. */
const char *moat_tls_session_sni(const struct moat_tls_session *s, size_t *len);

/* After the handshake: the client certificate the handshake verified, as RFC 9440's
 * Client-Cert value (":BASE64-DER:") in out, and with chain the rest of the chain the client
 * sent (Client-Cert-Chain: ":...:, :...:"). Returns the length, 0 when the client sent no
 * certificate (or chain has none), -1 when cap is too small. */
long moat_tls_session_client_cert(const struct moat_tls_session *s, int chain, char *out,
                                  size_t cap);

/* 1 when host (a request's Host without its port, len bytes) is a name of another certificate
 * of the listener than the one the handshake chose by SNI: the request belongs on another
 * connection (421, RFC 9110 §15.5.20). 0 for the chosen certificate's names and for names no
 * certificate has (routes decide those). */
int moat_tls_session_is_misdirected(const struct moat_tls_session *s, const char *host,
                                    size_t len);

/* ---- development certificate ------------------------------------------------------------- */

/* PEM texts of a development CA and a leaf it signed, all owned by the struct. */
struct moat_tls_devcert {
    char *ca_cert_pem;
    char *ca_key_pem;
    char *leaf_cert_pem; /* leaf, then the CA certificate (a chain) */
    char *leaf_key_pem;
};

/* Makes a new ECDSA P-256 CA ("moat development CA", 10 years from now) and a leaf for
 * localhost, 127.0.0.1 and ::1 (SAN; serverAuth; valid from an hour before now for 825 days),
 * with mbedTLS's own key and x509 writing APIs. now: the current time (the caller reads the
 * clock). Returns 0, or -1 with err. */
int moat_tls_devcert_make(time_t now, struct moat_tls_devcert *out, char *err, size_t err_len);
void moat_tls_devcert_free(struct moat_tls_devcert *dc); /* frees the strings; the struct stays */

/* 1 if the PEM certificate at path is valid at now + margin_s, 0 if it expires (or is not yet
 * valid) by then, -1 if it cannot be read or parsed. */
int moat_tls_cert_file_valid_at(const char *path, time_t now, time_t margin_s);

#endif
