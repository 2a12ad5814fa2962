/* http/parser.c: the streaming HTTP/1.x parser of one connection side. Owns the llhttp state and,
 * while a head is being read, the head arena; checks what llhttp leaves to its user (versions,
 * Host, target form, transfer codings, size limits) before anyone sees the head. */
#include "http/http.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#include "http/fields.h"

#define DEFAULT_MAX_HEAD_BYTES 16384
#define DEFAULT_MAX_FIELDS 100
#define DEFAULT_MAX_TARGET_BYTES 8192
#define ARENA_FIRST_BYTES 1024 /* most heads fit; the arena doubles up to max_head_bytes */
#define SPANS_FIRST 16

enum phase {
    PH_IDLE,    /* between messages; nothing but blank lines of the next one seen; no arena */
    PH_HEAD,    /* inside a head: the arena holds its pieces */
    PH_BODY,    /* on_head ran: body and trailer bytes stream through; no arena */
    PH_DONE,    /* on_done ran and llhttp is paused; moat_http_parser_next() goes on */
    PH_UPGRADE, /* as PH_DONE, but what follows belongs to a tunnel */
    PH_DEAD,    /* an error was reported; llhttp errors are sticky */
};

/* A piece of the head inside the arena, by offset: the arena moves when it grows. */
struct span {
    size_t off, len;
};

struct field_span {
    struct span name, value;
};

struct moat_http_parser {
    llhttp_t llh; /* llh.data points back at this struct */
    enum moat_http_kind kind;
    struct moat_http_limits limits; /* defaults filled in: every limit > 0 */
    struct moat_http_parser_cbs cbs;
    void *ctx;                        /* borrowed: handed to every callback */
    enum moat_http_method req_method; /* responses: the method the next response answers */
    enum phase phase;
    int is_upgrade;       /* the message being parsed hands the connection over when done */
    size_t head_bytes;    /* bytes fed while the head was incomplete, from the message's start */
    size_t trailer_bytes; /* names and values of a trailer section, which is dropped */
    /* The head arena exists in PH_HEAD only: allocated at the message's first byte, freed right
     * after on_head returned, so an idle parser holds just this struct. */
    char *arena;                 /* owned: target, reason, field names and values */
    size_t arena_len, arena_cap; /* bytes used and allocated; cap <= limits.max_head_bytes */
    size_t item_off;             /* arena offset where the item being received began */
    struct field_span *spans;    /* owned: committed fields, in arrival order */
    size_t n_spans, spans_cap;
    struct span name; /* the field name whose value is being received */
    struct span target, reason;
    int err_status;         /* 0, or the status of the failure being reported */
    const char *err_reason; /* static string; meaningful when err_status != 0 */
};

/* ---- failures ----------------------------------------------------------------------------- */

/* Records a rejection of the peer's message. Response parsers always answer 502: the client is
 * not at fault when a backend misbehaves (RFC 9110 §15.6.3). Returns -1 for llhttp. */
static int reject(struct moat_http_parser *p, int status, const char *reason)
{
    if (p->err_status == 0) {
        p->err_status = p->kind == MOAT_HTTP_RESPONSE ? 502 : status;
        p->err_reason = reason;
    }
    return -1;
}

/* A user callback returned non-zero or called moat_http_parser_fail(). Returns -1. */
static int callback_failed(struct moat_http_parser *p)
{
    if (p->err_status == 0) {
        p->err_status = 500;
        p->err_reason = "callback failed";
    }
    return -1;
}

static int out_of_memory(struct moat_http_parser *p)
{
    if (p->err_status == 0) {
        p->err_status = 500;
        p->err_reason = "out of memory";
    }
    return -1;
}

static void arena_release(struct moat_http_parser *p)
{
    free(p->arena);
    free(p->spans);
    p->arena = NULL;
    p->spans = NULL;
    p->arena_len = p->arena_cap = p->item_off = 0;
    p->n_spans = p->spans_cap = 0;
    p->name = p->target = p->reason = (struct span){0, 0};
}

/* The status llhttp's own error deserves when no callback chose one. */
static void set_llhttp_error(struct moat_http_parser *p, llhttp_errno_t err)
{
    const char *reason = llhttp_get_error_reason(&p->llh);
    if (reason == NULL)
        reason = llhttp_errno_name(err);
    switch (err) {
    case HPE_INVALID_METHOD:
        /* RFC 9110 §9.1: a method the server does not recognize gets 501. */
        reject(p, 501, "unknown method");
        break;
    case HPE_INVALID_VERSION:
        /* llhttp also reports a malformed line this way; the digits it stored tell a version
         * it parsed and refused (1.2, 3.0: 505) from broken syntax (400). */
        if ((p->llh.http_major == 1 && p->llh.http_minor <= 1) ||
            (p->llh.http_major == 0 && p->llh.http_minor == 0))
            reject(p, 400, reason);
        else
            reject(p, 505, "unsupported HTTP version");
        break;
    case HPE_PAUSED_H2_UPGRADE:
        /* The HTTP/2 connection preface on an HTTP/1 port (RFC 9113 §3.4). */
        reject(p, 400, "HTTP/2 connection preface");
        break;
    default:
        reject(p, 400, reason);
        break;
    }
}

/* Ends the parser's life after an error: status and reason are set, the arena is gone. */
static enum moat_http_status die(struct moat_http_parser *p, llhttp_errno_t err)
{
    if (p->err_status == 0)
        set_llhttp_error(p, err);
    arena_release(p);
    p->phase = PH_DEAD;
    return MOAT_HTTP_ERROR;
}

/* ---- the head arena ----------------------------------------------------------------------- */

static int arena_append(struct moat_http_parser *p, const char *at, size_t len)
{
    if (len == 0)
        return 0;                                 /* llhttp may hand over empty pieces */
    assert(p->arena != NULL && p->arena_cap > 0); /* on_message_begin ran */
    size_t max = p->limits.max_head_bytes;
    /* Stored bytes are a subset of the head's bytes, which feed() bounds by max_head_bytes; this
     * only keeps the arena's own bound independent of that argument. */
    if (len > max - p->arena_len)
        return reject(p, 431, "head too large");
    size_t need = p->arena_len + len;
    if (need > p->arena_cap) {
        size_t cap = p->arena_cap;
        while (cap < need)
            cap *= 2;
        if (cap > max)
            cap = max;
        char *a = realloc(p->arena, cap);
        if (a == NULL)
            return out_of_memory(p);
        p->arena = a;
        p->arena_cap = cap;
    }
    memcpy(p->arena + p->arena_len, at, len);
    p->arena_len = need;
    return 0;
}

/* The item received since the last commit, which starts the next item. */
static struct span take_item(struct moat_http_parser *p)
{
    struct span s = {p->item_off, p->arena_len - p->item_off};
    p->item_off = p->arena_len;
    return s;
}

/* ---- llhttp callbacks --------------------------------------------------------------------- */

static int on_message_begin(llhttp_t *llh)
{
    struct moat_http_parser *p = llh->data;
    assert(p->arena == NULL);
    p->arena_cap =
        p->limits.max_head_bytes < ARENA_FIRST_BYTES ? p->limits.max_head_bytes : ARENA_FIRST_BYTES;
    p->arena = malloc(p->arena_cap);
    if (p->arena == NULL) {
        p->arena_cap = 0;
        return out_of_memory(p);
    }
    p->phase = PH_HEAD;
    return 0;
}

static int on_url(llhttp_t *llh, const char *at, size_t len)
{
    struct moat_http_parser *p = llh->data;
    if (len > p->limits.max_target_bytes - (p->arena_len - p->item_off))
        return reject(p, 414, "request target too long");
    return arena_append(p, at, len);
}

static int on_url_complete(llhttp_t *llh)
{
    struct moat_http_parser *p = llh->data;
    p->target = take_item(p);
    return 0;
}

static int on_status(llhttp_t *llh, const char *at, size_t len)
{
    return arena_append(llh->data, at, len);
}

static int on_status_complete(llhttp_t *llh)
{
    struct moat_http_parser *p = llh->data;
    p->reason = take_item(p);
    return 0;
}

/* Trailer fields (after the last chunk) are dropped; they only count against a limit so that a
 * peer cannot keep a message open forever on them. */
static int count_trailer(struct moat_http_parser *p, size_t len)
{
    p->trailer_bytes += len;
    if (p->trailer_bytes > p->limits.max_head_bytes)
        return reject(p, 431, "trailer section too large");
    return 0;
}

static int on_header_field(llhttp_t *llh, const char *at, size_t len)
{
    struct moat_http_parser *p = llh->data;
    if (p->phase == PH_BODY)
        return count_trailer(p, len);
    return arena_append(p, at, len);
}

static int on_header_field_complete(llhttp_t *llh)
{
    struct moat_http_parser *p = llh->data;
    if (p->phase == PH_BODY)
        return 0;
    if (p->n_spans >= p->limits.max_fields)
        return reject(p, 431, "too many header fields");
    p->name = take_item(p);
    return 0;
}

static int on_header_value(llhttp_t *llh, const char *at, size_t len)
{
    return on_header_field(llh, at, len);
}

static int on_header_value_complete(llhttp_t *llh)
{
    struct moat_http_parser *p = llh->data;
    if (p->phase == PH_BODY)
        return 0;
    struct span v = take_item(p);
    /* RFC 9112 §5: the field value excludes leading and trailing whitespace (OWS). */
    while (v.len > 0 && (p->arena[v.off] == ' ' || p->arena[v.off] == '\t')) {
        v.off++;
        v.len--;
    }
    while (v.len > 0 && (p->arena[v.off + v.len - 1] == ' ' || p->arena[v.off + v.len - 1] == '\t'))
        v.len--;
    if (p->n_spans == p->spans_cap) {
        size_t cap = p->spans_cap == 0 ? SPANS_FIRST : p->spans_cap * 2;
        if (cap > p->limits.max_fields)
            cap = p->limits.max_fields;
        struct field_span *s = realloc(p->spans, cap * sizeof(*s));
        if (s == NULL)
            return out_of_memory(p);
        p->spans = s;
        p->spans_cap = cap;
    }
    p->spans[p->n_spans++] = (struct field_span){p->name, v};
    return 0;
}

static enum moat_http_method method_of(uint8_t m)
{
    switch (m) {
    case HTTP_GET:
        return MOAT_HTTP_M_GET;
    case HTTP_HEAD:
        return MOAT_HTTP_M_HEAD;
    case HTTP_POST:
        return MOAT_HTTP_M_POST;
    case HTTP_PUT:
        return MOAT_HTTP_M_PUT;
    case HTTP_DELETE:
        return MOAT_HTTP_M_DELETE;
    case HTTP_OPTIONS:
        return MOAT_HTTP_M_OPTIONS;
    case HTTP_TRACE:
        return MOAT_HTTP_M_TRACE;
    case HTTP_PATCH:
        return MOAT_HTTP_M_PATCH;
    case HTTP_CONNECT:
        return MOAT_HTTP_M_CONNECT;
    default:
        return MOAT_HTTP_M_OTHER;
    }
}

/* Transfer-Encoding over all its lines, as a list of codings: 0 if it is exactly "chunked", else
 * -1 after rejecting. Requests: RFC 9112 §6.3 ¶4 (chunked not final: 400), §6.1 (chunked twice:
 * 400; a coding we do not implement: 501). Responses with another coding would reach the client
 * still encoded once we drop Transfer-Encoding, so they are refused as well (502). */
static int check_transfer_coding(struct moat_http_parser *p, const struct moat_http_head *h)
{
    size_t n = 0, n_chunked = 0;
    int is_last_chunked = 0;
    for (size_t i = 0; i < h->n_fields; i++) {
        const struct moat_http_field *f = &h->fields[i];
        if (!moat_http_field_is(f, "Transfer-Encoding"))
            continue;
        size_t pos = 0;
        const char *c;
        size_t c_len;
        while (moat_http_list_next(f->value, f->value_len, &pos, &c, &c_len)) {
            is_last_chunked = moat_http_token_is(c, c_len, "chunked");
            n_chunked += is_last_chunked;
            n++;
        }
    }
    if (!is_last_chunked || n_chunked > 1)
        return reject(p, 400, "Transfer-Encoding does not end in one chunked");
    if (n > 1)
        return reject(p, 501, "transfer coding not implemented");
    return 0;
}

static int is_keep_alive(const llhttp_t *llh)
{
    /* RFC 9112 §9.3: "close" ends persistence; HTTP/1.1 persists by default, 1.0 only when
     * asked with "keep-alive". The same flags decide what llhttp accepts after the message. */
    if (llh->flags & F_CONNECTION_CLOSE)
        return 0;
    return llh->http_minor == 1 || (llh->flags & F_CONNECTION_KEEP_ALIVE) != 0;
}

/* Fills the request part of @h and validates it. Returns 0 or -1 after rejecting. */
static int check_request(struct moat_http_parser *p, struct moat_http_head *h)
{
    const llhttp_t *llh = &p->llh;
    h->is_request = 1;
    /* llhttp also accepts 0.9 (even "GET /x" + bare LF), 2.0 and 3.0 request lines. */
    if (llh->http_major != 1 || llh->http_minor > 1)
        return reject(p, 505, "unsupported HTTP version");
    h->version_minor = llh->http_minor;
    h->method = method_of(llh->method);
    h->method_name = llhttp_method_name((llhttp_method_t)llh->method);
    if (h->method == MOAT_HTTP_M_CONNECT)
        return reject(p, 405, "CONNECT not allowed");
    h->target = p->arena + p->target.off;
    h->target_len = p->target.len;
    if (h->target_len == 0)
        return reject(p, 400, "empty request target");

    const struct moat_http_field *host = NULL, *expect = NULL;
    size_t n_host = 0;
    for (size_t i = 0; i < h->n_fields; i++) {
        const struct moat_http_field *f = &h->fields[i];
        if (moat_http_field_is(f, "Host")) {
            host = f;
            n_host++;
        } else if (moat_http_field_is(f, "Expect")) {
            expect = f;
        }
    }
    /* RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, any request with several, or
     * an invalid one. */
    if (n_host > 1)
        return reject(p, 400, "several Host fields");
    if (n_host == 0 && h->version_minor == 1)
        return reject(p, 400, "Host missing");
    if (host != NULL && !moat_http_authority_is_valid(host->value, host->value_len))
        return reject(p, 400, "invalid Host");
    if (host != NULL) {
        h->host = host->value;
        h->host_len = host->value_len;
    }

    /* RFC 9112 §3.2: a request-target has no fragment. */
    if (memchr(h->target, '#', h->target_len) != NULL)
        return reject(p, 400, "fragment in request target");
    const char *authority, *rest;
    size_t authority_len, rest_len;
    if (h->target[0] == '/') {
        /* origin-form */
    } else if (h->target_len == 1 && h->target[0] == '*') {
        /* RFC 9112 §3.2.4: asterisk-form is for server-wide OPTIONS only. */
        if (h->method != MOAT_HTTP_M_OPTIONS)
            return reject(p, 400, "asterisk-form target without OPTIONS");
    } else if (moat_http_target_split(h->target, h->target_len, &authority, &authority_len, &rest,
                                      &rest_len)) {
        /* RFC 9110 §4.2.1: an http(s) URI needs a host; §4.2.4: no userinfo. */
        if (authority_len == 0 || !moat_http_authority_is_valid(authority, authority_len))
            return reject(p, 400, "invalid authority in request target");
        /* RFC 9112 §3.2.2 lets the target's authority override Host; two names for one request
         * are where proxies and backends start to disagree, so they must match. */
        if (host != NULL && (host->value_len != authority_len ||
                             strncasecmp(host->value, authority, authority_len) != 0))
            return reject(p, 400, "Host differs from the target's authority");
        h->host = authority;
        h->host_len = authority_len;
    } else {
        return reject(p, 400, "invalid request target");
    }

    h->is_keep_alive = is_keep_alive(llh);
    if (llh->flags & F_TRANSFER_ENCODING) {
        /* RFC 9112 §6.1 ¶15 lets a server reject both; llhttp already does, this keeps the rule
         * in one place we control. */
        if (llh->flags & F_CONTENT_LENGTH)
            return reject(p, 400, "Content-Length with Transfer-Encoding");
        if (check_transfer_coding(p, h) != 0)
            return -1;
        h->framing = MOAT_HTTP_BODY_CHUNKED;
        /* RFC 9112 §6.1 ¶16: Transfer-Encoding in HTTP/1.0 means faulty framing: serve the
         * message, then close. */
        if (h->version_minor == 0)
            h->is_keep_alive = 0;
    } else if (llh->flags & F_CONTENT_LENGTH) {
        h->framing = MOAT_HTTP_BODY_LENGTH;
        h->content_length = llh->content_length; /* counts down in the body: read it now */
    } else {
        h->framing = MOAT_HTTP_BODY_NONE; /* RFC 9112 §6.3 ¶7 */
    }
    /* An upgrade hands the connection over to another protocol once the request ends; a body
     * on such a request is where a front end and a backend can disagree about which bytes are
     * HTTP and which belong to the tunnel (request smuggling). No real client sends one. */
    if ((llh->flags & F_UPGRADE) &&
        (h->framing == MOAT_HTTP_BODY_CHUNKED ||
         (h->framing == MOAT_HTTP_BODY_LENGTH && h->content_length > 0)))
        return reject(p, 400, "Upgrade request with a body");
    h->is_upgrade = (llh->flags & F_UPGRADE) && (llh->flags & F_CONNECTION_UPGRADE);
    /* RFC 9110 §10.1.1: the expectation means nothing in an HTTP/1.0 request. */
    h->expects_continue = h->version_minor == 1 && expect != NULL &&
                          moat_http_token_is(expect->value, expect->value_len, "100-continue");
    return 0;
}

/* Fills the response part of @h and validates it. Returns what on_headers_complete must tell
 * llhttp (0 body as framed, 1 no body, 2 tunnel), or -1 after rejecting. */
static int check_response(struct moat_http_parser *p, struct moat_http_head *h)
{
    const llhttp_t *llh = &p->llh;
    if (llh->http_major != 1 || llh->http_minor > 1)
        return reject(p, 502, "unsupported HTTP version");
    h->version_minor = llh->http_minor;
    h->status = llh->status_code;
    if (h->status < 100) /* llhttp takes any three digits */
        return reject(p, 502, "invalid status code");
    h->reason = p->arena + p->reason.off;
    h->reason_len = p->reason.len;
    if (llh->flags & F_TRANSFER_ENCODING) {
        if (llh->flags & F_CONTENT_LENGTH)
            return reject(p, 502, "Content-Length with Transfer-Encoding");
        if (check_transfer_coding(p, h) != 0)
            return -1;
    }
    if (llh->flags & F_CONTENT_LENGTH)
        h->content_length = llh->content_length; /* also the declared length of HEAD and 304 */

    /* RFC 9112 §6.3: the order of these rules is the RFC's. */
    int skip = 0;
    if (h->status < 200 || h->status == 204 || h->status == 304) {
        h->framing = MOAT_HTTP_BODY_NONE; /* llhttp skips these bodies by itself */
        h->is_upgrade = h->status == 101;
    } else if (p->req_method == MOAT_HTTP_M_HEAD) {
        h->framing = MOAT_HTTP_BODY_NONE;
        skip = 1;
    } else if (p->req_method == MOAT_HTTP_M_CONNECT && h->status < 300) {
        h->framing = MOAT_HTTP_BODY_NONE;
        h->is_upgrade = 1;
        skip = 2;
    } else if (llh->flags & F_CHUNKED) {
        h->framing = MOAT_HTTP_BODY_CHUNKED;
    } else if (llh->flags & F_CONTENT_LENGTH) {
        h->framing = MOAT_HTTP_BODY_LENGTH;
    } else {
        h->framing = MOAT_HTTP_BODY_EOF;
    }
    h->is_keep_alive = is_keep_alive(llh) && h->framing != MOAT_HTTP_BODY_EOF && !h->is_upgrade;
    return skip;
}

/* The head is complete: validate it, hand it to on_head, and drop the arena. Nothing is handed
 * out before every check passed, so a rejected request commits the proxy to nothing. */
static int on_headers_complete(llhttp_t *llh)
{
    struct moat_http_parser *p = llh->data;
    struct moat_http_head h;
    memset(&h, 0, sizeof(h));
    /* Nearly every head fits the stack array: no allocation per head for the field list. */
    struct moat_http_field small[32];
    struct moat_http_field *fields = small;
    if (p->n_spans > sizeof(small) / sizeof(small[0])) {
        fields = malloc(p->n_spans * sizeof(*fields));
        if (fields == NULL) {
            arena_release(p);
            return out_of_memory(p);
        }
    }
    for (size_t i = 0; i < p->n_spans; i++) {
        const struct field_span *s = &p->spans[i];
        fields[i] = (struct moat_http_field){p->arena + s->name.off, s->name.len,
                                             p->arena + s->value.off, s->value.len};
    }
    h.fields = fields;
    h.n_fields = p->n_spans;
    int rc = p->kind == MOAT_HTTP_REQUEST ? check_request(p, &h) : check_response(p, &h);
    if (rc >= 0) {
        p->phase = PH_BODY;
        p->is_upgrade = h.is_upgrade;
        if (p->cbs.on_head != NULL && p->cbs.on_head(p->ctx, &h) != 0)
            rc = callback_failed(p);
        else if (p->err_status != 0) /* moat_http_parser_fail() without an error return */
            rc = -1;
    }
    if (fields != small)
        free(fields);
    arena_release(p);
    return rc;
}

static int on_body(llhttp_t *llh, const char *at, size_t len)
{
    struct moat_http_parser *p = llh->data;
    if (len == 0 || p->cbs.on_body == NULL)
        return 0;
    if (p->cbs.on_body(p->ctx, at, len) != 0 || p->err_status != 0)
        return callback_failed(p);
    return 0;
}

static int on_message_complete(llhttp_t *llh)
{
    struct moat_http_parser *p = llh->data;
    if (p->cbs.on_done != NULL && p->cbs.on_done(p->ctx) != 0)
        return callback_failed(p);
    if (p->err_status != 0)
        return -1;
    p->phase = p->is_upgrade ? PH_UPGRADE : PH_DONE;
    /* An interim response is followed by the real one to the same request (RFC 9110 §15.2). */
    if (p->kind == MOAT_HTTP_RESPONSE && (llh->status_code >= 200 || llh->status_code == 101))
        p->req_method = MOAT_HTTP_M_OTHER;
    return HPE_PAUSED; /* one message at a time: the next waits for moat_http_parser_next() */
}

/* Trailers and chunk extensions have no callbacks here: both are dropped. */
static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_url_complete = on_url_complete,
    .on_status_complete = on_status_complete,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value_complete = on_header_value_complete,
};

/* ---- the contract ------------------------------------------------------------------------- */

struct moat_http_parser *moat_http_parser_new(enum moat_http_kind kind,
                                              const struct moat_http_limits *limits,
                                              const struct moat_http_parser_cbs *cbs, void *ctx)
{
    struct moat_http_parser *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->kind = kind;
    if (limits != NULL)
        p->limits = *limits;
    if (p->limits.max_head_bytes == 0)
        p->limits.max_head_bytes = DEFAULT_MAX_HEAD_BYTES;
    if (p->limits.max_fields == 0)
        p->limits.max_fields = DEFAULT_MAX_FIELDS;
    if (p->limits.max_target_bytes == 0)
        p->limits.max_target_bytes = DEFAULT_MAX_TARGET_BYTES;
    if (cbs != NULL)
        p->cbs = *cbs;
    p->ctx = ctx;
    p->phase = PH_IDLE;
    /* Strict by default in llhttp 9; no lenient flag is ever set (DESIGN-NOTES §3). */
    llhttp_init(&p->llh, kind == MOAT_HTTP_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE, &settings);
    p->llh.data = p;
    return p;
}

void moat_http_parser_free(struct moat_http_parser *p)
{
    if (p == NULL)
        return;
    arena_release(p);
    free(p);
}

void moat_http_parser_reset(struct moat_http_parser *p)
{
    arena_release(p);
    enum moat_http_method m = p->req_method;
    struct moat_http_limits limits = p->limits;
    struct moat_http_parser_cbs cbs = p->cbs;
    void *ctx = p->ctx;
    enum moat_http_kind kind = p->kind;
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->limits = limits;
    p->cbs = cbs;
    p->ctx = ctx;
    p->req_method = m;
    p->phase = PH_IDLE;
    llhttp_init(&p->llh, kind == MOAT_HTTP_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE, &settings);
    p->llh.data = p;
}

void moat_http_parser_set_request_method(struct moat_http_parser *p, enum moat_http_method m)
{
    p->req_method = m;
}

static int is_in_head(const struct moat_http_parser *p)
{
    return p->phase == PH_IDLE || p->phase == PH_HEAD;
}

enum moat_http_status moat_http_parser_feed(struct moat_http_parser *p, const char *data,
                                            size_t len, size_t *consumed)
{
    *consumed = 0;
    if (p->phase == PH_DEAD)
        return MOAT_HTTP_ERROR;
    /* Still paused (moat_http_parser_next() not called): llhttp would parse nothing, and its
     * error position would be the previous call's. */
    if (p->phase == PH_DONE)
        return MOAT_HTTP_DONE;
    if (p->phase == PH_UPGRADE)
        return MOAT_HTTP_UPGRADE;
    size_t off = 0;
    while (off < len) {
        /* llhttp has no limits: while the head is open, hand it no more than the head may
         * still grow, so a head that is not complete after max_head_bytes fails right there. */
        size_t n = len - off;
        int was_in_head = is_in_head(p);
        if (was_in_head && n > p->limits.max_head_bytes - p->head_bytes)
            n = p->limits.max_head_bytes - p->head_bytes;
        llhttp_errno_t err = llhttp_execute(&p->llh, data + off, n);
        if (err == HPE_OK) {
            off += n;
            if (was_in_head && is_in_head(p)) {
                p->head_bytes += n;
                if (p->head_bytes >= p->limits.max_head_bytes) {
                    *consumed = off;
                    reject(p, 431, "head too large");
                    return die(p, err);
                }
            }
            continue;
        }
        const char *pos = llhttp_get_error_pos(&p->llh);
        *consumed = pos != NULL ? (size_t)(pos - data) : off;
        if (err == HPE_PAUSED && p->phase == PH_DONE)
            return MOAT_HTTP_DONE;
        if (err == HPE_PAUSED && p->phase == PH_UPGRADE)
            return MOAT_HTTP_UPGRADE;
        return die(p, err);
    }
    *consumed = len;
    return MOAT_HTTP_MORE;
}

enum moat_http_status moat_http_parser_finish(struct moat_http_parser *p)
{
    switch (p->phase) {
    case PH_DEAD:
        return MOAT_HTTP_ERROR;
    case PH_IDLE:
    case PH_DONE:
    case PH_UPGRADE:
        return MOAT_HTTP_MORE; /* between messages: an orderly end */
    case PH_HEAD:
        reject(p, 400, "connection closed inside a head");
        return die(p, HPE_OK);
    case PH_BODY:
        break;
    }
    /* Only a body delimited by the close ends cleanly: llhttp then runs on_message_complete. */
    llhttp_errno_t err = llhttp_finish(&p->llh);
    if (p->phase == PH_DONE && p->err_status == 0)
        return MOAT_HTTP_DONE;
    if (p->err_status == 0)
        reject(p, 400, "connection closed inside a body");
    return die(p, err);
}

void moat_http_parser_next(struct moat_http_parser *p)
{
    if (p->phase != PH_DONE && p->phase != PH_UPGRADE)
        return;                                  /* not paused: nothing to resume */
    if (llhttp_get_errno(&p->llh) == HPE_PAUSED) /* not after finish(): no pause there */
        llhttp_resume(&p->llh);
    if (p->phase == PH_UPGRADE) {
        /* llhttp pauses a second time for the upgrade itself, without consuming anything;
         * going on with HTTP means leaving that pause too. */
        static const char none[1];
        if (llhttp_execute(&p->llh, none, 0) == HPE_PAUSED_UPGRADE)
            llhttp_resume_after_upgrade(&p->llh);
    }
    p->phase = PH_IDLE;
    p->is_upgrade = 0;
    p->head_bytes = 0;
    p->trailer_bytes = 0;
}

int moat_http_parser_is_idle(const struct moat_http_parser *p)
{
    /* PH_IDLE may have seen blank lines, which RFC 9112 §2.2 lets precede a request. */
    return p->phase == PH_IDLE || p->phase == PH_DONE || p->phase == PH_UPGRADE;
}

int moat_http_parser_error_status(const struct moat_http_parser *p)
{
    return p->err_status;
}

const char *moat_http_parser_error_reason(const struct moat_http_parser *p)
{
    return p->err_reason != NULL ? p->err_reason : "";
}

void moat_http_parser_fail(struct moat_http_parser *p, int status, const char *reason)
{
    p->err_status = status;
    p->err_reason = reason;
}
