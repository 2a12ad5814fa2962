/* http/http.h: HTTP/1.x for moat on top of llhttp (strict): a streaming parser for requests and
 * responses, the hop-by-hop and forwarding rules that rewrite heads, and serialization of heads,
 * chunks and error responses into caller-owned memory. Never touches sockets, clocks or logs. */
#ifndef MOAT_HTTP_H
#define MOAT_HTTP_H
#include <stddef.h>
#include <stdint.h>

/* Methods moat tells apart; everything llhttp knows but these is MOAT_HTTP_M_OTHER. */
enum moat_http_method {
    MOAT_HTTP_M_OTHER = 0,
    MOAT_HTTP_M_GET,
    MOAT_HTTP_M_HEAD,
    MOAT_HTTP_M_POST,
    MOAT_HTTP_M_PUT,
    MOAT_HTTP_M_DELETE,
    MOAT_HTTP_M_OPTIONS,
    MOAT_HTTP_M_TRACE,
    MOAT_HTTP_M_PATCH,
    MOAT_HTTP_M_CONNECT,
};

/* How a message body is delimited on the wire. */
enum moat_http_framing {
    MOAT_HTTP_BODY_NONE = 0, /* no body (request without CL/TE, HEAD/1xx/204/304 response) */
    MOAT_HTTP_BODY_LENGTH,   /* Content-Length: content_length bytes (may be 0) */
    MOAT_HTTP_BODY_CHUNKED,  /* Transfer-Encoding: chunked */
    MOAT_HTTP_BODY_EOF,      /* responses only: the body runs until the connection closes */
};

struct moat_http_field {
    const char *name; /* borrowed from the parser's head arena; not NUL-terminated */
    size_t name_len;
    const char *value; /* OWS trimmed at both ends; not NUL-terminated */
    size_t value_len;
};

/* A parsed request or response head. Every pointer is borrowed from the parser and valid only
 * during the on_head callback. */
struct moat_http_head {
    int is_request;
    enum moat_http_method method; /* requests */
    const char *method_name;      /* requests: e.g. "GET" (NUL-terminated, static) */
    const char *target;           /* requests: request-target as sent (origin or absolute form) */
    size_t target_len;
    const char *host; /* requests: authority from an absolute-form target, else the Host value */
    size_t host_len;
    int status;         /* responses: 100..999 */
    const char *reason; /* responses: reason phrase, may be empty */
    size_t reason_len;
    int version_minor; /* HTTP/1.<minor>: 0 or 1 (anything else was rejected) */
    struct moat_http_field *fields; /* in arrival order, all of them (hop-by-hop included) */
    size_t n_fields;
    enum moat_http_framing framing;
    uint64_t content_length; /* framing == MOAT_HTTP_BODY_LENGTH; responses to HEAD and 304s:
                              * the declared length of the body they do not have */
    int is_keep_alive;       /* the sender allows another message on this connection */
    int is_upgrade;          /* requests: Connection: upgrade + Upgrade; responses: status 101 */
    int expects_continue;    /* requests: "Expect: 100-continue" on HTTP/1.1 */
};

/* Limits enforced while parsing; 0 means the default shown. */
struct moat_http_limits {
    size_t max_head_bytes;   /* request line/status line + fields (default 16384): 431 */
    size_t max_fields;       /* default 100: 431 */
    size_t max_target_bytes; /* default 8192: 414 */
};

/* Events of one parser. Return 0 to go on; any other value stops parsing with an error
 * (moat_http_parser_feed() returns MOAT_HTTP_ERROR and error_status() is 500 unless the callback
 * set one with moat_http_parser_fail()). on_body may be called many times per message with
 * de-chunked payload bytes in pieces; trailers and chunk extensions are dropped. */
struct moat_http_parser_cbs {
    int (*on_head)(void *ctx, const struct moat_http_head *head);
    int (*on_body)(void *ctx, const char *data, size_t len);
    int (*on_done)(void *ctx); /* the message ended (after its last on_body) */
};

struct moat_http_parser; /* opaque; owned by exactly one connection side */

enum moat_http_kind { MOAT_HTTP_REQUEST, MOAT_HTTP_RESPONSE };

/* Creates a parser. cbs and limits are copied. ctx is passed to every callback. NULL on ENOMEM.
 * Idle parsers hold no head arena: it is allocated at a message's first byte and released once
 * on_head returned. */
struct moat_http_parser *moat_http_parser_new(enum moat_http_kind kind,
                                              const struct moat_http_limits *limits,
                                              const struct moat_http_parser_cbs *cbs, void *ctx);
void moat_http_parser_free(struct moat_http_parser *p); /* NULL: nothing */

/* Response parsers: the method of the request the next response answers (HEAD: no body, even
 * with Content-Length; CONNECT 2xx: tunnel). Call before feeding each response. */
void moat_http_parser_set_request_method(struct moat_http_parser *p, enum moat_http_method m);

/* What moat_http_parser_feed() stopped at. */
enum moat_http_status {
    MOAT_HTTP_MORE = 0,  /* all input consumed; the message (if any) is not finished */
    MOAT_HTTP_DONE = 1,  /* a message finished (on_done ran); *consumed says where. The parser is
                          * paused: call moat_http_parser_next() before feeding the next one. */
    MOAT_HTTP_UPGRADE = 2, /* a message with upgrade semantics finished (request with Upgrade,
                            * response 101 or 2xx to CONNECT); bytes after *consumed belong to
                            * the tunnel, not to HTTP. Call _next() to go on with HTTP instead. */
    MOAT_HTTP_ERROR = -1,  /* invalid input or a callback failed; see error_status/reason. The
                            * parser is dead: feed nothing more. */
};

/* Parses len bytes; callbacks run inside. *consumed is set to the bytes used (all of them for
 * MOAT_HTTP_MORE). Requests are validated beyond llhttp: only HTTP/1.0 and 1.1; HTTP/1.1 needs
 * exactly one Host; Transfer-Encoding must end in chunked (other codings before it: 501);
 * unknown methods 501; CONNECT 405; "PRI * HTTP/2.0" 400. */
enum moat_http_status moat_http_parser_feed(struct moat_http_parser *p, const char *data,
                                            size_t len, size_t *consumed);

/* The peer closed its side: for an EOF-delimited response this ends the message (on_done runs,
 * returns MOAT_HTTP_DONE); between messages it returns MOAT_HTTP_MORE; inside any other message
 * it returns MOAT_HTTP_ERROR (truncated). */
enum moat_http_status moat_http_parser_finish(struct moat_http_parser *p);

/* After MOAT_HTTP_DONE or MOAT_HTTP_UPGRADE: resume for the next message on the connection.
 * Until then feed() parses nothing and repeats that status with *consumed 0; at any other time
 * this does nothing. */
void moat_http_parser_next(struct moat_http_parser *p);

/* Forgets everything, errors included: the parser is as new (same kind, limits, callbacks).
 * Response parsers are reset before every exchange, since each may use another backend
 * connection and llhttp carries connection state (such as a seen `Connection: close`). */
void moat_http_parser_reset(struct moat_http_parser *p);

/* 1 between messages (nothing of a next message has been seen yet). */
int moat_http_parser_is_idle(const struct moat_http_parser *p);

/* After MOAT_HTTP_ERROR: the status to answer with (400, 405, 413, 414, 431, 501, 505; 500 when
 * memory ran out or a callback failed; or what a callback set; for response parsers 502) and a
 * short reason for logs ("invalid header value char", "Host missing"). Static strings. */
int moat_http_parser_error_status(const struct moat_http_parser *p);
const char *moat_http_parser_error_reason(const struct moat_http_parser *p);

/* For callbacks: make the current feed fail with this status and reason (static string). */
void moat_http_parser_fail(struct moat_http_parser *p, int status, const char *reason);

/* ---- rewriting and serialization ------------------------------------------------------------ */

/* What moat adds to a request it forwards. */
struct moat_http_fwd {
    const char *client_addr; /* NUL-terminated textual peer IP ("192.0.2.7", "2001:db8::1") */
    int peer_is_trusted;     /* peer is a trusted proxy: append to its X-Forwarded-For chain
                              * and keep its X-Forwarded-Proto/Host; else replace them */
    const char *request_id;  /* NUL-terminated: sent as the only X-Request-Id (every incoming
                              * one dropped); NULL: incoming X-Request-Id fields pass as sent */
    /* RFC 9440: the client certificate moat verified (":BASE64-DER:") and the rest of its
     * chain (":...:, :...:"), or NULL. A client's own Client-Cert and Client-Cert-Chain fields
     * are always dropped: only moat vouches for a certificate. */
    const char *client_cert;
    const char *client_cert_chain;
};

/* X-Request-Id: not in any RFC, but the field proxies, load balancers and tracing agree on. */
#define MOAT_HTTP_REQUEST_ID_MAX 200

/* 1 if the len bytes at v make a usable request id: 1..MOAT_HTTP_REQUEST_ID_MAX visible ASCII
 * characters (0x21..0x7e: no space, control or non-ASCII byte, so it is safe in any log). */
int moat_http_request_id_is_sane(const char *v, size_t len);

/* The client's request id: 1 with *v and *len pointing into h when h has exactly one
 * X-Request-Id field and its value is sane; 0 when it has none, several, or one not sane (the
 * caller then makes its own). Fields named by Connection count too: moat always regenerates
 * X-Request-Id, so the client cannot have it stripped. */
int moat_http_request_id_get(const struct moat_http_head *h, const char **v, size_t *len);

/* Writes the head moat sends to a backend for request head h: "METHOD origin-form HTTP/1.1",
 * Host (from an absolute-form target when there is one), the end-to-end fields, then framing
 * (Content-Length regenerated from the parsed number, or Transfer-Encoding: chunked),
 * X-Forwarded-For, X-Forwarded-Proto: https, X-Forwarded-Host, X-Request-Id (when
 * fwd->request_id is set), Via: 1.1 moat, and for upgrade
 * requests "Connection: upgrade" + the Upgrade field. Dropped: hop-by-hop fields (Connection and
 * every field it names except Host, Content-Length and the forwarding fields, Keep-Alive,
 * Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade unless upgrading,
 * Proxy-Authorization), and incoming X-Forwarded-* / Forwarded unless the peer is trusted.
 * Returns the length written, or -1 if cap is too small (nothing usable is written). */
long moat_http_request_head_write(const struct moat_http_head *h, const struct moat_http_fwd *fwd,
                                  char *out, size_t cap);

/* How moat frames a response body toward the client. */
struct moat_http_resp_plan {
    enum moat_http_framing framing; /* toward the client */
    int is_keep_alive;              /* the client connection may carry another request */
};

/* Writes the head moat sends to the client for backend response head h. req_method: the
 * request's method; client_minor: the client's HTTP/1.x minor; client_keep_alive: the client
 * asked for, and moat allows, keep-alive. Hop-by-hop fields are dropped as for requests. Body
 * framing: responses without a body keep their Content-Length (HEAD, 304; regenerated from the
 * parsed number) or lose it (1xx, 204, 2xx to CONNECT: RFC 9110 §8.6, §9.3.6);
 * Content-Length stays Content-Length; chunked and EOF-delimited bodies are sent chunked to
 * HTTP/1.1 clients and EOF-delimited (with Connection: close) to HTTP/1.0 clients. Adds
 * "Connection: close" when the connection will close, "Connection: keep-alive" to HTTP/1.0
 * clients that keep it, and "Connection: upgrade" + Upgrade for 101. The status line is always
 * HTTP/1.1. *plan says what the caller must do. Returns the length written or -1 (cap). */
long moat_http_response_head_write(const struct moat_http_head *h, enum moat_http_method req_method,
                                   int client_minor, int client_keep_alive, char *out, size_t cap,
                                   struct moat_http_resp_plan *plan);

/* Chunk framing for re-chunked bodies: writes "<hex len>\r\n" (len > 0) into out (>= 18 bytes)
 * and returns its length. The chunk's data follows, then MOAT_HTTP_CRLF. */
size_t moat_http_chunk_head(char *out, size_t len);
#define MOAT_HTTP_CRLF "\r\n"
#define MOAT_HTTP_LAST_CHUNK "0\r\n\r\n" /* end of a chunked body (no trailers) */

/* Writes a complete short error response: status line, Content-Type: text/plain, Content-Length,
 * "Connection: close" ("Connection: keep-alive" if keep_alive, for HTTP/1.0 clients), for 503
 * "Retry-After: 1", and a one-line body naming the status and detail (may be NULL). Returns the
 * length written or -1 (cap). 400, 404, 405, 408, 413, 414, 417, 431, 500, 501, 502, 503, 504,
 * 505 have their standard reason phrases. */
long moat_http_error_write(int status, const char *detail, int keep_alive, char *out, size_t cap);

/* Where moat's redirect sends request h on https:// (RFC 9110 §15.4.9, 308): "https://HOST" +
 * ":PORT" unless https_port is 443 + the target's path and query (an absolute-form target's
 * own; "/" for "*"). HOST is the Host's name or IP literal, without its port. Returns the
 * length written into out (NUL-terminated), 0 when h has no Host a Location may carry (400),
 * or -1 when cap is too small. Every byte written is visible ASCII. */
long moat_http_https_location(const struct moat_http_head *h, unsigned https_port, char *out,
                              size_t cap);

/* The first field of h named name (any case), or NULL. */
const struct moat_http_field *moat_http_field_find(const struct moat_http_head *h,
                                                   const char *name);

/* The value of cookie name (case-sensitive, RFC 6265) in h's Cookie fields: 1 with *value and
 * *len pointing into h (quotes removed), or 0. */
int moat_http_cookie_get(const struct moat_http_head *h, const char *name, const char **value,
                         size_t *len);

/* Adds "name: value" at the end of the len bytes of a head already written into head (which
 * ends with its empty line), cap bytes in all. Returns the new length, or -1 when it does not
 * fit or head is not a whole head (head is unchanged then). name and value are the caller's
 * to make valid. */
long moat_http_head_add_field(char *head, size_t len, size_t cap, const char *name,
                              const char *value);

/* The standard reason phrase for a status ("Bad Gateway"), "" if unknown. */
const char *moat_http_reason(int status);

/* 1 for methods RFC 9110 §9.2.2 calls idempotent (GET HEAD OPTIONS TRACE PUT DELETE). */
int moat_http_method_is_idempotent(enum moat_http_method m);

#endif
