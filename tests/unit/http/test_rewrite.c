/* tests/unit/http/test_rewrite.c: the heads moat forwards, through http.h only. Heads come from
 * the real parser (they only live during on_head), the rewrite runs inside on_head. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/http.h"
#include "test_http.h"

struct wctx {
    struct moat_http_fwd fwd;         /* requests */
    enum moat_http_method req_method; /* responses */
    int client_minor, client_keep_alive;
    size_t cap; /* passed to the writer; <= sizeof(out) */
    char out[4096];
    long n;
    struct moat_http_resp_plan plan;
    int calls;
};

static int on_head(void *ctx, const struct moat_http_head *h)
{
    struct wctx *w = ctx;
    w->calls++;
    memset(w->out, '~', sizeof(w->out));
    if (h->is_request)
        w->n = moat_http_request_head_write(h, &w->fwd, w->out, w->cap);
    else
        w->n = moat_http_response_head_write(h, w->req_method, w->client_minor,
                                             w->client_keep_alive, w->out, w->cap, &w->plan);
    if (w->n >= 0)
        assert_true((size_t)w->n <= w->cap);
    return 0;
}

static const struct moat_http_parser_cbs cbs = {on_head, NULL, NULL};

/* Parses @in (one head) and rewrites it inside on_head; returns the writer's result. */
static long rewrite(enum moat_http_kind kind, const char *in, struct wctx *w)
{
    struct moat_http_parser *p = moat_http_parser_new(kind, NULL, &cbs, w);
    assert_non_null(p);
    moat_http_parser_set_request_method(p, w->req_method);
    w->calls = 0;
    size_t used;
    enum moat_http_status st = moat_http_parser_feed(p, in, strlen(in), &used);
    if (st == MOAT_HTTP_ERROR)
        fail_msg("parse failed (%d %s) for:\n%s", moat_http_parser_error_status(p),
                 moat_http_parser_error_reason(p), in);
    assert_int_equal(w->calls, 1);
    moat_http_parser_free(p);
    return w->n;
}

static void expect_out(const char *name, const struct wctx *w, const char *want)
{
    if (w->n < 0)
        fail_msg("case \"%s\": writer returned %ld", name, w->n);
    if ((size_t)w->n != strlen(want) || memcmp(w->out, want, (size_t)w->n) != 0)
        fail_msg("case \"%s\":\n--- want:\n%s--- got:\n%.*s", name, want, (int)w->n, w->out);
}

/* ---- requests ----------------------------------------------------------------------------- */

struct rcase {
    const char *name;
    const char *in;
    int is_trusted;
    const char *want;
};

static const struct rcase requests[] = {
    {"hop-by-hop fields removed, Connection-named ones too",
     "GET /p HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\n"
     "X-Secret: s\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nTrailer: X-T\r\n"
     "Proxy-Authorization: Basic eDp5\r\nUpgrade: h2c\r\nAccept: */*\r\n\r\n",
     0,
     "GET /p HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Forwarded-For: 192.0.2.7\r\n"
     "X-Forwarded-Proto: https\r\nX-Forwarded-Host: a\r\nVia: 1.1 moat\r\n\r\n"},
    {"Connection on several lines, any case",
     "GET / HTTP/1.1\r\nhost: a\r\nConnection: x-a\r\nconnection: , X-B ,\r\nX-A: 1\r\nx-b: 2\r\n"
     "X-C: 3\r\n\r\n",
     0,
     "GET / HTTP/1.1\r\nhost: a\r\nX-C: 3\r\nX-Forwarded-For: 192.0.2.7\r\n"
     "X-Forwarded-Proto: https\r\nX-Forwarded-Host: a\r\nVia: 1.1 moat\r\n\r\n"},
    {"Connection cannot name Host, framing or forwarding fields",
     "POST /f HTTP/1.1\r\nHost: a\r\nConnection: host, Content-Length, X-Forwarded-For, "
     "X-Forwarded-Proto, X-Forwarded-Host, Forwarded, Transfer-Encoding\r\n"
     "Forwarded: for=198.51.100.1\r\nX-Forwarded-For: 198.51.100.1\r\nContent-Length: 3\r\n\r\nabc",
     1,
     "POST /f HTTP/1.1\r\nHost: a\r\nForwarded: for=198.51.100.1\r\nContent-Length: 3\r\n"
     "X-Forwarded-For: 198.51.100.1, 192.0.2.7\r\nX-Forwarded-Proto: https\r\n"
     "X-Forwarded-Host: a\r\nVia: 1.1 moat\r\n\r\n"},
    {"untrusted peer: forwarding claims replaced, Forwarded dropped",
     "GET / HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-For: 10.0.0.1\r\n"
     "x-forwarded-for: 10.0.0.2\r\nx-forwarded-proto: http\r\nX-Forwarded-Host: evil.example\r\n"
     "Forwarded: for=10.0.0.1;proto=http\r\nAccept: */*\r\n\r\n",
     0,
     "GET / HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\nX-Forwarded-For: 192.0.2.7\r\n"
     "x-forwarded-proto: https\r\nX-Forwarded-Host: a.example\r\nVia: 1.1 moat\r\n\r\n"},
    {"trusted peer: chain appended, its proto and host kept",
     "GET / HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-For: 10.0.0.1\r\n"
     "x-forwarded-for: 10.0.0.2\r\nx-forwarded-proto: http\r\nX-Forwarded-Host: b.example\r\n"
     "Forwarded: for=10.0.0.1;proto=http\r\nAccept: */*\r\n\r\n",
     1,
     "GET / HTTP/1.1\r\nHost: a.example\r\nForwarded: for=10.0.0.1;proto=http\r\n"
     "Accept: */*\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\n"
     "x-forwarded-proto: http\r\nX-Forwarded-Host: b.example\r\nVia: 1.1 moat\r\n\r\n"},
    {"trusted peer without a chain", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1,
     "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n"
     "X-Forwarded-Host: a\r\nVia: 1.1 moat\r\n\r\n"},
    {"Content-Length regenerated from the parsed number",
     "PUT /x HTTP/1.1\r\nHost: a\r\ncontent-length:  003 \r\n\r\nabc", 0,
     "PUT /x HTTP/1.1\r\nHost: a\r\ncontent-length: 3\r\nX-Forwarded-For: 192.0.2.7\r\n"
     "X-Forwarded-Proto: https\r\nX-Forwarded-Host: a\r\nVia: 1.1 moat\r\n\r\n"},
    {"chunked re-framed",
     "POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\nX: y\r\n\r\n", 0,
     "POST / HTTP/1.1\r\nHost: a\r\nX: y\r\ntransfer-encoding: chunked\r\n"
     "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: a\r\n"
     "Via: 1.1 moat\r\n\r\n"},
    {"absolute-form becomes origin-form",
     "GET http://b.example:8080/p/q?x=1 HTTP/1.1\r\nHost: b.example:8080\r\n\r\n", 0,
     "GET /p/q?x=1 HTTP/1.1\r\nHost: b.example:8080\r\nX-Forwarded-For: 192.0.2.7\r\n"
     "X-Forwarded-Proto: https\r\nX-Forwarded-Host: b.example:8080\r\nVia: 1.1 moat\r\n\r\n"},
    {"absolute-form with empty path", "GET HTTPS://b.example HTTP/1.0\r\n\r\n", 0,
     "GET / HTTP/1.1\r\nHost: b.example\r\nX-Forwarded-For: 192.0.2.7\r\n"
     "X-Forwarded-Proto: https\r\nX-Forwarded-Host: b.example\r\nVia: 1.1 moat\r\n\r\n"},
    {"absolute-form with query only", "GET http://b?q HTTP/1.1\r\nHost: b\r\n\r\n", 0,
     "GET /?q HTTP/1.1\r\nHost: b\r\nX-Forwarded-For: 192.0.2.7\r\n"
     "X-Forwarded-Proto: https\r\nX-Forwarded-Host: b\r\nVia: 1.1 moat\r\n\r\n"},
    {"server-wide OPTIONS in absolute-form", "OPTIONS http://b:81 HTTP/1.1\r\nHost: b:81\r\n\r\n",
     0,
     "OPTIONS * HTTP/1.1\r\nHost: b:81\r\nX-Forwarded-For: 192.0.2.7\r\n"
     "X-Forwarded-Proto: https\r\nX-Forwarded-Host: b:81\r\nVia: 1.1 moat\r\n\r\n"},
    {"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: b\r\n\r\n", 0,
     "OPTIONS * HTTP/1.1\r\nHost: b\r\nX-Forwarded-For: 192.0.2.7\r\n"
     "X-Forwarded-Proto: https\r\nX-Forwarded-Host: b\r\nVia: 1.1 moat\r\n\r\n"},
    {"Via appended to earlier hops",
     "GET / HTTP/1.1\r\nHost: a\r\nvia: 1.0 fred, 1.1 p.example\r\nVia: 1.1 q\r\n\r\n", 0,
     "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n"
     "X-Forwarded-Host: a\r\nvia: 1.0 fred, 1.1 p.example, 1.1 q, 1.1 moat\r\n\r\n"},
    {"upgrade request keeps Upgrade",
     "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nupgrade: websocket\r\n"
     "Sec-WebSocket-Key: k==\r\n\r\n",
     0,
     "GET /ws HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Key: k==\r\nX-Forwarded-For: 192.0.2.7\r\n"
     "X-Forwarded-Proto: https\r\nX-Forwarded-Host: a\r\nVia: 1.1 moat\r\n"
     "Connection: upgrade\r\nupgrade: websocket\r\n\r\n"},
    {"HTTP/1.0 becomes HTTP/1.1 with an empty Host",
     "GET /old HTTP/1.0\r\nConnection: keep-alive\r\nUser-Agent: u\r\n\r\n", 0,
     "GET /old HTTP/1.1\r\nHost: \r\nUser-Agent: u\r\nX-Forwarded-For: 192.0.2.7\r\n"
     "X-Forwarded-Proto: https\r\nVia: 1.1 moat\r\n\r\n"},
    {"empty values keep their field", "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n", 0,
     "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Forwarded-For: 192.0.2.7\r\n"
     "X-Forwarded-Proto: https\r\nX-Forwarded-Host: a\r\nVia: 1.1 moat\r\n\r\n"},
};

static void test_request_heads(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
        const struct rcase *c = &requests[i];
        struct wctx w = {.fwd = {"192.0.2.7", c->is_trusted}};
        w.cap = sizeof(w.out);
        rewrite(MOAT_HTTP_REQUEST, c->in, &w);
        expect_out(c->name, &w, c->want);
    }
}

/* Every capacity below the exact length fails; the exact length works. */
static void test_request_cap_too_small(void **state)
{
    (void)state;
    static const char in[] = "POST http://a/x HTTP/1.1\r\nHost: a\r\nVia: 1.0 v\r\n"
                             "X-Forwarded-For: 10.0.0.1\r\nContent-Length: 1\r\n\r\nz";
    struct wctx w = {.fwd = {"2001:db8::1", 1}};
    w.cap = sizeof(w.out);
    long full = rewrite(MOAT_HTTP_REQUEST, in, &w);
    assert_true(full > 0);
    for (size_t cap = 0; cap < (size_t)full; cap++) {
        w.cap = cap;
        assert_int_equal(rewrite(MOAT_HTTP_REQUEST, in, &w), -1);
    }
    w.cap = (size_t)full;
    assert_int_equal(rewrite(MOAT_HTTP_REQUEST, in, &w), full);
    expect_out("exact cap", &w,
               "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
               "X-Forwarded-For: 10.0.0.1, 2001:db8::1\r\nX-Forwarded-Proto: https\r\n"
               "X-Forwarded-Host: a\r\nVia: 1.0 v, 1.1 moat\r\n\r\n");
}

/* ---- X-Request-Id ---------------------------------------------------------------------------- */

struct idctx {
    int found;        /* moat_http_request_id_get() result */
    char id[256];     /* what it found */
    char out[4096];   /* the head rewritten with fwd.request_id = found id or "gen" */
    long n;
};

static int id_head(void *ctx, const struct moat_http_head *h)
{
    struct idctx *x = ctx;
    const char *v = NULL;
    size_t len = 0;
    x->found = moat_http_request_id_get(h, &v, &len);
    x->id[0] = '\0';
    if (x->found) {
        assert_true(len < sizeof(x->id));
        memcpy(x->id, v, len);
        x->id[len] = '\0';
    }
    struct moat_http_fwd fwd = {.client_addr = "192.0.2.7",
                                .request_id = x->found ? x->id : "gen"};
    x->n = moat_http_request_head_write(h, &fwd, x->out, sizeof(x->out));
    return 0;
}

static void test_request_id(void **state)
{
    (void)state;
    char long_ok[256], long_bad[256];
    memset(long_ok, 'k', 200);
    long_ok[200] = '\0';
    memset(long_bad, 'k', 201);
    long_bad[201] = '\0';
    static const char tail[] = "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n"
                               "X-Forwarded-Host: a\r\n";
    const struct {
        const char *name, *field; /* field: the X-Request-Id lines sent */
        int found;
        const char *id, *sent; /* id found; the X-Request-Id line the backend gets */
    } cases[] = {
        {"absent: generated", "", 0, "", "X-Request-Id: gen\r\n"},
        {"sane: kept, name as spelled", "x-request-id: A1b2-c3_d4.e5:f6/=+\r\n", 1,
         "A1b2-c3_d4.e5:f6/=+", "x-request-id: A1b2-c3_d4.e5:f6/=+\r\n"},
        {"200 characters: kept", NULL, 1, long_ok, NULL},
        {"201 characters: replaced", NULL, 0, "", "X-Request-Id: gen\r\n"},
        {"inner space: replaced", "X-Request-Id: a b\r\n", 0, "", "X-Request-Id: gen\r\n"},
        {"empty: replaced", "X-Request-Id:\r\n", 0, "", "X-Request-Id: gen\r\n"},
        {"non-ASCII: replaced", "X-Request-Id: caf\xc3\xa9\r\n", 0, "",
         "X-Request-Id: gen\r\n"},
        {"tab inside: replaced", "X-Request-Id: a\tb\r\n", 0, "", "X-Request-Id: gen\r\n"},
        {"twice: replaced, both dropped", "X-Request-Id: a\r\nX-Request-Id: b\r\n", 0, "",
         "X-Request-Id: gen\r\n"},
        {"named by Connection: still taken", "Connection: X-Request-Id\r\nX-Request-Id: c\r\n",
         1, "c", "X-Request-Id: c\r\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char in[1024], want[1024], field[512], sent[512];
        const char *f = cases[i].field, *snt = cases[i].sent;
        if (f == NULL) { /* the long cases */
            const char *v = cases[i].found ? long_ok : long_bad;
            snprintf(field, sizeof(field), "X-Request-Id: %s\r\n", v);
            f = field;
            if (snt == NULL) {
                snprintf(sent, sizeof(sent), "X-Request-Id: %s\r\n", v);
                snt = sent;
            }
        }
        snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: a\r\n%sAccept: */*\r\n\r\n", f);
        snprintf(want, sizeof(want), "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n%s%sVia: 1.1 moat\r\n\r\n",
                 tail, snt);
        struct idctx x;
        static const struct moat_http_parser_cbs id_cbs = {id_head, NULL, NULL};
        struct moat_http_parser *p = moat_http_parser_new(MOAT_HTTP_REQUEST, NULL, &id_cbs, &x);
        assert_non_null(p);
        size_t used;
        if (moat_http_parser_feed(p, in, strlen(in), &used) == MOAT_HTTP_ERROR)
            fail_msg("case \"%s\": parse failed: %s", cases[i].name,
                     moat_http_parser_error_reason(p));
        moat_http_parser_free(p);
        if (x.found != cases[i].found)
            fail_msg("case \"%s\": found %d", cases[i].name, x.found);
        assert_string_equal(x.id, cases[i].id);
        if (x.n < 0 || (size_t)x.n != strlen(want) || memcmp(x.out, want, (size_t)x.n) != 0)
            fail_msg("case \"%s\":\n--- want:\n%s--- got:\n%.*s", cases[i].name, want,
                     x.n < 0 ? 0 : (int)x.n, x.out);
    }
    assert_int_equal(moat_http_request_id_is_sane("!~", 2), 1);
    assert_int_equal(moat_http_request_id_is_sane("a\x7f", 2), 0);
    assert_int_equal(moat_http_request_id_is_sane("", 0), 0);
}

/* Without fwd.request_id the client's fields pass untouched (and none is added). */
static void test_request_id_unset_passes_through(void **state)
{
    (void)state;
    struct wctx w = {.fwd = {"192.0.2.7", 0, NULL, NULL, NULL}};
    w.cap = sizeof(w.out);
    rewrite(MOAT_HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: a b\r\n\r\n", &w);
    expect_out("pass-through", &w,
               "GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: a b\r\nX-Forwarded-For: 192.0.2.7\r\n"
               "X-Forwarded-Proto: https\r\nX-Forwarded-Host: a\r\nVia: 1.1 moat\r\n\r\n");
}

/* RFC 9440: a client's own Client-Cert fields never pass; moat's (a verified certificate)
 * follow the forwarding fields. */
static void test_client_cert_fields(void **state)
{
    (void)state;
    const char *in = "GET / HTTP/1.1\r\nHost: a\r\nClient-Cert: :Zm9yZ2Vk:\r\n"
                     "client-cert-chain: :eA==:\r\n\r\n";
    struct wctx w = {.fwd = {"192.0.2.7", 0, NULL, NULL, NULL}};
    w.cap = sizeof(w.out);
    rewrite(MOAT_HTTP_REQUEST, in, &w);
    expect_out("stripped", &w,
               "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.7\r\n"
               "X-Forwarded-Proto: https\r\nX-Forwarded-Host: a\r\nVia: 1.1 moat\r\n\r\n");
    w.fwd.client_cert = ":TUlJ:";
    w.fwd.client_cert_chain = ":Q0E=:";
    rewrite(MOAT_HTTP_REQUEST, in, &w);
    expect_out("moat's", &w,
               "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.7\r\n"
               "X-Forwarded-Proto: https\r\nX-Forwarded-Host: a\r\nClient-Cert: :TUlJ:\r\n"
               "Client-Cert-Chain: :Q0E=:\r\nVia: 1.1 moat\r\n\r\n");
}

/* ---- a forwarded chunked request parses back to the same request ---------------------------- */

struct hop {
    struct moat_http_fwd fwd;
    char wire[4096]; /* what moat would send to the backend */
    size_t wire_len;
    int is_chunked;
};

static void wire_put(struct hop *h, const char *s, size_t n)
{
    assert_true(n <= sizeof(h->wire) - h->wire_len);
    memcpy(h->wire + h->wire_len, s, n);
    h->wire_len += n;
}

static int hop_head(void *ctx, const struct moat_http_head *head)
{
    struct hop *h = ctx;
    long n = moat_http_request_head_write(head, &h->fwd, h->wire + h->wire_len,
                                          sizeof(h->wire) - h->wire_len);
    assert_true(n > 0);
    h->wire_len += (size_t)n;
    h->is_chunked = head->framing == MOAT_HTTP_BODY_CHUNKED;
    return 0;
}

static int hop_body(void *ctx, const char *data, size_t len)
{
    struct hop *h = ctx;
    if (!h->is_chunked) {
        wire_put(h, data, len);
        return 0;
    }
    char ch[24];
    wire_put(h, ch, moat_http_chunk_head(ch, len));
    wire_put(h, data, len);
    wire_put(h, MOAT_HTTP_CRLF, 2);
    return 0;
}

static int hop_done(void *ctx)
{
    struct hop *h = ctx;
    if (h->is_chunked)
        wire_put(h, MOAT_HTTP_LAST_CHUNK, sizeof(MOAT_HTTP_LAST_CHUNK) - 1);
    return 0;
}

struct seen {
    char body[256];
    size_t body_len;
    int is_done;
    char host[64];
};

static int seen_head(void *ctx, const struct moat_http_head *head)
{
    struct seen *s = ctx;
    assert_true(head->host_len < sizeof(s->host));
    memcpy(s->host, head->host, head->host_len);
    assert_int_equal(head->framing, MOAT_HTTP_BODY_CHUNKED);
    return 0;
}

static int seen_body(void *ctx, const char *data, size_t len)
{
    struct seen *s = ctx;
    assert_true(len <= sizeof(s->body) - s->body_len);
    memcpy(s->body + s->body_len, data, len);
    s->body_len += len;
    return 0;
}

static int seen_done(void *ctx)
{
    ((struct seen *)ctx)->is_done = 1;
    return 0;
}

static void test_forwarded_request_parses_back(void **state)
{
    (void)state;
    static const char in[] = "POST http://b.example/up HTTP/1.1\r\nHost: b.example\r\n"
                             "Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
                             "4;name=v\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Sum: 9\r\n\r\n";
    static const struct moat_http_parser_cbs hop_cbs = {hop_head, hop_body, hop_done};
    struct hop h = {.fwd = {"192.0.2.7", 0}};
    /* Fed byte by byte: moat forwards each piece as it comes, as its own chunk. */
    struct moat_http_parser *p = moat_http_parser_new(MOAT_HTTP_REQUEST, NULL, &hop_cbs, &h);
    size_t used = 0;
    enum moat_http_status st = MOAT_HTTP_MORE;
    for (size_t i = 0; i < sizeof(in) - 1 && st == MOAT_HTTP_MORE; i++)
        st = moat_http_parser_feed(p, in + i, 1, &used);
    assert_int_equal(st, MOAT_HTTP_DONE);
    moat_http_parser_free(p);

    static const struct moat_http_parser_cbs seen_cbs = {seen_head, seen_body, seen_done};
    struct seen s = {0};
    p = moat_http_parser_new(MOAT_HTTP_REQUEST, NULL, &seen_cbs, &s);
    assert_int_equal(moat_http_parser_feed(p, h.wire, h.wire_len, &used), MOAT_HTTP_DONE);
    assert_int_equal(used, h.wire_len);
    assert_true(s.is_done);
    assert_int_equal(s.body_len, 9);
    assert_memory_equal(s.body, "wikipedia", 9);
    assert_string_equal(s.host, "b.example");
    assert_null(memmem(h.wire, h.wire_len, "Trailer", 7));
    assert_null(memmem(h.wire, h.wire_len, "X-Sum", 5));
    moat_http_parser_free(p);
}

/* ---- responses ---------------------------------------------------------------------------- */

struct scase {
    const char *name;
    const char *in;
    enum moat_http_method req_method;
    int client_minor, client_keep_alive;
    const char *want;
    enum moat_http_framing framing;
    int is_keep_alive;
};

static const struct scase responses[] = {
    {"1.1 client, Content-Length, hop-by-hop fields dropped",
     "HTTP/1.1 200 OK\r\nServer: s\r\nConnection: close, X-Hop\r\nKeep-Alive: timeout=5\r\n"
     "X-Hop: 1\r\nProxy-Authenticate: Basic\r\nTrailer: X-T\r\nContent-Length: 2\r\n\r\n",
     MOAT_HTTP_M_GET, 1, 1, "HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 2\r\n\r\n",
     MOAT_HTTP_BODY_LENGTH, 1},
    {"1.1 client that closes", "HTTP/1.1 200 OK\r\nContent-Length:  02\r\n\r\n", MOAT_HTTP_M_GET, 1,
     0, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n", MOAT_HTTP_BODY_LENGTH,
     0},
    {"1.0 client with keep-alive", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", MOAT_HTTP_M_GET,
     0, 1, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n",
     MOAT_HTTP_BODY_LENGTH, 1},
    {"1.1 client, chunked backend", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     MOAT_HTTP_M_GET, 1, 1, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     MOAT_HTTP_BODY_CHUNKED, 1},
    {"1.0 client, chunked backend: until close",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", MOAT_HTTP_M_GET, 0, 1,
     "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", MOAT_HTTP_BODY_EOF, 0},
    {"1.1 client, EOF-delimited backend: chunked", "HTTP/1.0 200 OK\r\nX: y\r\n\r\n",
     MOAT_HTTP_M_GET, 1, 1, "HTTP/1.1 200 OK\r\nX: y\r\nTransfer-Encoding: chunked\r\n\r\n",
     MOAT_HTTP_BODY_CHUNKED, 1},
    {"1.0 client, EOF-delimited backend", "HTTP/1.0 200 OK\r\n\r\n", MOAT_HTTP_M_GET, 0, 0,
     "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", MOAT_HTTP_BODY_EOF, 0},
    {"HEAD keeps Content-Length", "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", MOAT_HTTP_M_HEAD,
     1, 1, "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", MOAT_HTTP_BODY_NONE, 1},
    {"HEAD of a chunked resource", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     MOAT_HTTP_M_HEAD, 1, 1, "HTTP/1.1 200 OK\r\n\r\n", MOAT_HTTP_BODY_NONE, 1},
    {"304 keeps Content-Length",
     "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: \"e\"\r\n\r\n", MOAT_HTTP_M_GET, 1, 1,
     "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 5\r\n\r\n", MOAT_HTTP_BODY_NONE,
     1},
    {"204 drops Content-Length", "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
     MOAT_HTTP_M_DELETE, 1, 1, "HTTP/1.1 204 No Content\r\n\r\n", MOAT_HTTP_BODY_NONE, 1},
    {"100 Continue", "HTTP/1.1 100 Continue\r\n\r\n", MOAT_HTTP_M_PUT, 1, 1,
     "HTTP/1.1 100 Continue\r\n\r\n", MOAT_HTTP_BODY_NONE, 1},
    {"103 Early Hints keeps its fields",
     "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n", MOAT_HTTP_M_GET, 1, 0,
     "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n", MOAT_HTTP_BODY_NONE, 0},
    {"101 keeps Upgrade",
     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     "Sec-WebSocket-Accept: a=\r\n\r\n",
     MOAT_HTTP_M_GET, 1, 1,
     "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: a=\r\nConnection: upgrade\r\n"
     "Upgrade: websocket\r\n\r\n",
     MOAT_HTTP_BODY_NONE, 0},
    {"reason phrase as sent, even empty", "HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n",
     MOAT_HTTP_M_GET, 1, 1, "HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n", MOAT_HTTP_BODY_LENGTH, 1},
    {"Connection cannot name Content-Length",
     "HTTP/1.1 200 OK\r\nConnection: Content-Length, Transfer-Encoding\r\nContent-Length: "
     "1\r\n\r\n",
     MOAT_HTTP_M_GET, 1, 1, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", MOAT_HTTP_BODY_LENGTH,
     1},
    {"Via and Server untouched",
     "HTTP/1.1 200 OK\r\nVia: 1.1 cdn\r\nServer: x\r\nContent-Length: 0\r\n\r\n", MOAT_HTTP_M_GET,
     1, 1, "HTTP/1.1 200 OK\r\nVia: 1.1 cdn\r\nServer: x\r\nContent-Length: 0\r\n\r\n",
     MOAT_HTTP_BODY_LENGTH, 1},
};

static void test_response_heads(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(responses) / sizeof(responses[0]); i++) {
        const struct scase *c = &responses[i];
        struct wctx w = {.req_method = c->req_method,
                         .client_minor = c->client_minor,
                         .client_keep_alive = c->client_keep_alive};
        w.cap = sizeof(w.out);
        rewrite(MOAT_HTTP_RESPONSE, c->in, &w);
        expect_out(c->name, &w, c->want);
        if (w.plan.framing != c->framing || w.plan.is_keep_alive != c->is_keep_alive)
            fail_msg("case \"%s\": plan framing %d keep-alive %d, want %d %d", c->name,
                     w.plan.framing, w.plan.is_keep_alive, c->framing, c->is_keep_alive);
    }
}

static void test_response_cap_too_small(void **state)
{
    (void)state;
    static const char in[] = "HTTP/1.1 404 Not Found\r\nX: y\r\nTransfer-Encoding: chunked\r\n\r\n";
    struct wctx w = {.req_method = MOAT_HTTP_M_GET, .client_minor = 0, .client_keep_alive = 1};
    w.cap = sizeof(w.out);
    long full = rewrite(MOAT_HTTP_RESPONSE, in, &w);
    assert_true(full > 0);
    for (size_t cap = 0; cap < (size_t)full; cap++) {
        w.cap = cap;
        assert_int_equal(rewrite(MOAT_HTTP_RESPONSE, in, &w), -1);
    }
    w.cap = (size_t)full;
    assert_int_equal(rewrite(MOAT_HTTP_RESPONSE, in, &w), full);
    expect_out("exact cap", &w, "HTTP/1.1 404 Not Found\r\nX: y\r\nConnection: close\r\n\r\n");
}

int run_rewrite_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_heads),
        cmocka_unit_test(test_request_cap_too_small),
        cmocka_unit_test(test_request_id),
        cmocka_unit_test(test_request_id_unset_passes_through),
        cmocka_unit_test(test_client_cert_fields),
        cmocka_unit_test(test_forwarded_request_parses_back),
        cmocka_unit_test(test_response_heads),
        cmocka_unit_test(test_response_cap_too_small),
    };
    return cmocka_run_group_tests_name("http rewrite", tests, NULL, NULL);
}
