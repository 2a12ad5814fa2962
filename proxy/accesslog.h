/* proxy/accesslog.h: access-log lines in moat's, the combined and the JSON format, built from a
 * plain record of one exchange into caller-owned memory. Pure: no clock, no socket, no libuv. */
#ifndef MOAT_ACCESSLOG_H
#define MOAT_ACCESSLOG_H
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* What the access log keeps of a request head past its parse (heads only live during on_head).
 * Long values are cut at these many bytes, so a line always fits MOAT_ACCESSLOG_LINE_MAX. */
#define MOAT_ACCESSLOG_TARGET_MAX 4096
#define MOAT_ACCESSLOG_FIELD_MAX 1024 /* Referer, User-Agent */
#define MOAT_ACCESSLOG_SNI_MAX 255    /* what tls/ records at most */
#define MOAT_ACCESSLOG_REQID_MAX 200  /* longest X-Request-Id taken from a client */

/* Every line fits: the cut values above escaped at worst 6 bytes per byte (JSON \u00XX) plus
 * the fixed parts. */
#define MOAT_ACCESSLOG_LINE_MAX 65536

struct moat_access_req {
    const char *method; /* static: "GET" */
    int http_minor;     /* HTTP/1.<minor> */
    char *target;       /* points into data: as sent, cut at MOAT_ACCESSLOG_TARGET_MAX */
    size_t target_len;
    char *referer;      /* points into data; NULL: absent or empty */
    size_t referer_len;
    char *user_agent;   /* points into data; NULL: absent or empty */
    size_t user_agent_len;
    char data[];        /* the copies, in one allocation with the struct */
};

/* Copies what the log needs of a request head (values cut as said above; referer and agent may
 * be NULL). Returns a new record owned by the caller (free()), or NULL when out of memory. */
struct moat_access_req *moat_access_req_new(const char *method, int http_minor,
                                            const char *target, size_t target_len,
                                            const char *referer, size_t referer_len,
                                            const char *user_agent, size_t user_agent_len);

/* One finished exchange, as the log writes it. Every pointer is borrowed for the call; strings
 * are NUL-terminated unless a length is given. NULL means "not known" ("-" or null). */
struct moat_access_rec {
    int64_t time_ms;                  /* when the exchange ended, Unix epoch milliseconds (UTC) */
    const char *client_ip;            /* "198.51.100.7" */
    const struct moat_access_req *req; /* NULL: no request head was parsed (400, 408...) */
    int status;                       /* sent to the client; 0: none */
    uint64_t bytes_in;                /* request body bytes received from the client */
    uint64_t bytes_out;               /* response body bytes sent to the client */
    uint64_t duration_ms;             /* from the request's first byte to the log line */
    const char *upstream;             /* "127.0.0.1:8080"; NULL: no backend was tried */
    int64_t upstream_ms;              /* from choosing a backend to the end; < 0: none */
    const char *pool;                 /* NULL: none */
    const char *tls_version;          /* "TLSv1.3"; NULL: none */
    const char *tls_cipher;           /* "TLS_AES_128_GCM_SHA256"; NULL: none */
    const char *sni;                  /* raw bytes the client sent; NULL: none */
    size_t sni_len;
    const char *request_id;           /* NULL: none */
};

/* Writes one line, ending in '\n', into out (cap >= MOAT_ACCESSLOG_LINE_MAX) and returns its
 * length. Formats:
 *  - MOAT_CFG_ACCESS_COMBINED, as nginx and Apache write it (time in UTC):
 *    `ip - - [10/Oct/2026:13:55:36 +0000] "GET / HTTP/1.1" 200 141 "referer" "agent"`
 *  - MOAT_CFG_ACCESS_MOAT: combined, then the duration in seconds, the backend and the request
 *    id: `... "agent" 0.002 127.0.0.1:8080 0f8c...`
 *  - MOAT_CFG_ACCESS_JSON: one object: time (RFC 3339, UTC, milliseconds), client, method,
 *    target, protocol, status, bytes_in, bytes_out, duration_ms, upstream, upstream_ms, pool,
 *    referer, user_agent, tls_version, tls_cipher, sni, request_id; unknown values are null.
 * Quoted text of the first two is escaped as nginx does (see moat_accesslog_escape_text()); JSON
 * strings as moat_accesslog_escape_json() does, so every line is valid JSON and valid UTF-8. */
size_t moat_accesslog_format(enum moat_cfg_access_format format, const struct moat_access_rec *r,
                             char *out, size_t cap);

/* nginx's escaping of logged text: '"', '\\', bytes below 0x20 and from 0x7f up become \xHH
 * (upper-case hex). Writes the escaped form of len bytes of s into out and returns its length;
 * stops before a byte whose escape would not fit in cap (never a partial escape). */
size_t moat_accesslog_escape_text(char *out, size_t cap, const char *s, size_t len);

/* JSON string contents (RFC 8259 §7), without the quotes: '"' and '\\' get a backslash, the
 * other bytes below 0x20 and 0x7f become \u00XX, well-formed UTF-8 (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF) passes through, and each byte of ill-formed UTF-8
 * becomes \u00XX (the byte read as Latin-1), so the output is valid JSON and valid UTF-8 for
 * any input. Stops, like the function above, before what would not fit. */
size_t moat_accesslog_escape_json(char *out, size_t cap, const char *s, size_t len);

#endif
