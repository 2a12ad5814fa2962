/* tests/unit/http/test_parser.c: the request and response parser of http/, through http.h only.
 * Each case is fed whole, split at every byte offset, and byte by byte; every way must produce
 * the same log of events (heads, bodies, ends, statuses). */
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

/* ---- the recorder ------------------------------------------------------------------------- */

struct rec {
    struct moat_http_parser *p;
    char log[8192];
    size_t log_len;
    char body[4096]; /* body bytes of the current message, concatenated */
    size_t body_len;
    int is_show_fields;
    int last_keep_alive; /* of the last head */
    int last_status;
    int head_fail_status; /* != 0: on_head fails the parse with this status */
    int head_fail_plain;  /* on_head returns -1 without moat_http_parser_fail() */
    int head_calls, done_calls;
};

static void say(struct rec *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->log + r->log_len, sizeof(r->log) - r->log_len, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof(r->log) - r->log_len);
    r->log_len += (size_t)n;
}

static void say_framing(struct rec *r, const struct moat_http_head *h)
{
    switch (h->framing) {
    case MOAT_HTTP_BODY_NONE:
        say(r, "none");
        if (h->content_length != 0)
            say(r, " cl:%llu", (unsigned long long)h->content_length);
        break;
    case MOAT_HTTP_BODY_LENGTH:
        say(r, "len:%llu", (unsigned long long)h->content_length);
        break;
    case MOAT_HTTP_BODY_CHUNKED:
        say(r, "chunked");
        break;
    case MOAT_HTTP_BODY_EOF:
        say(r, "eof");
        break;
    }
}

static int on_head(void *ctx, const struct moat_http_head *h)
{
    struct rec *r = ctx;
    r->head_calls++;
    if (h->is_request) {
        say(r, "%s %.*s host=[%.*s] 1.%d ", h->method_name, (int)h->target_len, h->target,
            (int)h->host_len, h->host != NULL ? h->host : "", h->version_minor);
        say_framing(r, h);
        say(r, " ka=%d up=%d ec=%d\n", h->is_keep_alive, h->is_upgrade, h->expects_continue);
    } else {
        say(r, "%d [%.*s] 1.%d ", h->status, (int)h->reason_len, h->reason, h->version_minor);
        say_framing(r, h);
        say(r, " ka=%d up=%d\n", h->is_keep_alive, h->is_upgrade);
    }
    if (r->is_show_fields)
        for (size_t i = 0; i < h->n_fields; i++)
            say(r, "  %.*s=[%.*s]\n", (int)h->fields[i].name_len, h->fields[i].name,
                (int)h->fields[i].value_len, h->fields[i].value);
    r->last_keep_alive = h->is_keep_alive;
    r->last_status = h->status;
    if (r->head_fail_status != 0) {
        moat_http_parser_fail(r->p, r->head_fail_status, "refused by on_head");
        return -1;
    }
    return r->head_fail_plain ? -1 : 0;
}

static int on_body(void *ctx, const char *data, size_t len)
{
    struct rec *r = ctx;
    assert_true(len > 0);
    assert_true(len <= sizeof(r->body) - r->body_len);
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    return 0;
}

static void say_body(struct rec *r, const char *what)
{
    if (r->body_len > 0)
        say(r, "%s [%.*s]\n", what, (int)r->body_len, r->body);
    r->body_len = 0;
}

static int on_done(void *ctx)
{
    struct rec *r = ctx;
    r->done_calls++;
    say_body(r, "body");
    say(r, "done\n");
    return 0;
}

static const struct moat_http_parser_cbs cbs = {on_head, on_body, on_done};

/* ---- the cases ---------------------------------------------------------------------------- */

struct pcase {
    const char *name;
    enum moat_http_kind kind;
    const char *in;
    size_t in_len;
    const char *want;
    enum moat_http_method method;  /* responses: the request's method */
    enum moat_http_method method2; /* responses: for responses after the first final one */
    int is_finish;                 /* call finish() once the input is fed */
    int is_show_fields;
    struct moat_http_limits limits;
};

#define IN(s) .in = s, .in_len = sizeof(s) - 1
#define REQ .kind = MOAT_HTTP_REQUEST
#define RESP .kind = MOAT_HTTP_RESPONSE

/* Feeds c->in in pieces ending at cuts[0..n_cuts) as the proxy does: on DONE it logs the
 * position, stops if the message ended the connection, else calls next() and goes on with the
 * rest; UPGRADE and ERROR end the run. Returns the log (owned by r). */
static const char *run(const struct pcase *c, const size_t *cuts, size_t n_cuts, struct rec *r)
{
    memset(r, 0, sizeof(*r));
    r->is_show_fields = c->is_show_fields;
    r->p = moat_http_parser_new(c->kind, &c->limits, &cbs, r);
    assert_non_null(r->p);
    struct moat_http_parser *p = r->p;
    if (c->kind == MOAT_HTTP_RESPONSE)
        moat_http_parser_set_request_method(p, c->method);
    size_t cur = 0;
    int is_stopped = 0;
    for (size_t i = 0; i < n_cuts && !is_stopped; i++) {
        size_t end = cuts[i];
        while (cur < end) {
            size_t used = SIZE_MAX;
            enum moat_http_status st = moat_http_parser_feed(p, c->in + cur, end - cur, &used);
            assert_true(used <= end - cur);
            if (st == MOAT_HTTP_MORE) {
                assert_int_equal(used, end - cur);
                cur = end;
                break;
            }
            cur += used;
            if (st == MOAT_HTTP_DONE) {
                say(r, "DONE@%zu\n", cur);
                assert_true(moat_http_parser_is_idle(p));
                int is_interim = r->last_status >= 100 && r->last_status < 200;
                if (!r->last_keep_alive && !is_interim) {
                    is_stopped = 1; /* the proxy ends such a connection */
                    break;
                }
                moat_http_parser_next(p);
                if (c->kind == MOAT_HTTP_RESPONSE && !is_interim)
                    moat_http_parser_set_request_method(p, c->method2);
                continue;
            }
            if (st == MOAT_HTTP_UPGRADE) {
                say(r, "UPGRADE@%zu\n", cur);
            } else {
                assert_int_equal(st, MOAT_HTTP_ERROR);
                say_body(r, "partial");
                say(r, "ERROR %d\n", moat_http_parser_error_status(p));
                assert_true(moat_http_parser_error_reason(p)[0] != '\0');
            }
            is_stopped = 1;
            break;
        }
    }
    if (!is_stopped && c->is_finish) {
        enum moat_http_status st = moat_http_parser_finish(p);
        if (st == MOAT_HTTP_ERROR)
            say(r, "EOF ERROR %d\n", moat_http_parser_error_status(p));
        else
            say(r, "EOF %s\n", st == MOAT_HTTP_DONE ? "DONE" : "MORE");
    }
    moat_http_parser_free(p);
    return r->log;
}

static void expect_log(const struct pcase *c, const char *how, size_t at, const char *got)
{
    if (strcmp(got, c->want) != 0)
        fail_msg("case \"%s\" fed %s %zu:\n--- want:\n%s--- got:\n%s", c->name, how, at, c->want,
                 got);
}

/* Whole, split in two at every offset, then byte by byte. */
static void check_case(const struct pcase *c)
{
    struct rec *r = malloc(sizeof(*r));
    assert_non_null(r);
    size_t len = c->in_len;
    size_t whole[1] = {len};
    expect_log(c, "whole", len, run(c, whole, 1, r));
    for (size_t k = 1; k < len; k++) {
        size_t two[2] = {k, len};
        expect_log(c, "split at", k, run(c, two, 2, r));
    }
    size_t *bytes = malloc(len * sizeof(*bytes));
    assert_non_null(bytes);
    for (size_t k = 0; k < len; k++)
        bytes[k] = k + 1;
    expect_log(c, "byte by byte, length", len, run(c, bytes, len, r));
    free(bytes);
    free(r);
}

static void check_table(const struct pcase *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check_case(&cases[i]);
}

#define CHECK_TABLE(t) check_table(t, sizeof(t) / sizeof(t[0]))

/* ---- requests that parse ------------------------------------------------------------------ */

static const struct pcase good_requests[] = {
    {"GET with fields, OWS trimmed", REQ,
     IN("GET /x?y=1 HTTP/1.1\r\nHost: a.example\r\nUser-Agent:  t 1 \t\r\nEmpty:\r\n"
        "Blank: \t \r\n\r\n"),
     .is_show_fields = 1,
     .want = "GET /x?y=1 host=[a.example] 1.1 none ka=1 up=0 ec=0\n"
             "  Host=[a.example]\n  User-Agent=[t 1]\n  Empty=[]\n  Blank=[]\n"
             "done\nDONE@79\n"},
    {"POST with Content-Length", REQ,
     IN("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"),
     .want = "POST /up host=[a] 1.1 len:5 ka=1 up=0 ec=0\nbody [hello]\ndone\nDONE@54\n"},
    {"POST with Content-Length 0", REQ,
     IN("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
     .want = "POST /up host=[a] 1.1 len:0 ka=1 up=0 ec=0\ndone\nDONE@49\n"},
    {"chunked with extensions and trailers dropped", REQ,
     IN("POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "3;ext=1;q=\"x\"\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n"
        "X-Other: u\r\n\r\n"),
     .is_show_fields = 1,
     .want = "POST /c host=[a] 1.1 chunked ka=1 up=0 ec=0\n"
             "  Host=[a]\n  Transfer-Encoding=[chunked]\n"
             "body [abc0123456789abcdef]\ndone\nDONE@130\n"},
    {"pipelined: one at a time, DONE at each request's end", REQ,
     IN("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
        "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n"),
     .want = "GET /1 host=[a] 1.1 none ka=1 up=0 ec=0\ndone\nDONE@28\n"
             "POST /2 host=[a] 1.1 len:3 ka=1 up=0 ec=0\nbody [abc]\ndone\nDONE@79\n"
             "GET /3 host=[a] 1.1 none ka=1 up=0 ec=0\ndone\nDONE@107\n"},
    {"pipelined after a chunked request", REQ,
     IN("POST /1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
        "HEAD /2 HTTP/1.1\r\nHost: a\r\n\r\n"),
     .want = "POST /1 host=[a] 1.1 chunked ka=1 up=0 ec=0\nbody [hi]\ndone\nDONE@69\n"
             "HEAD /2 host=[a] 1.1 none ka=1 up=0 ec=0\ndone\nDONE@98\n"},
    {"fields at the limit", REQ, IN("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
     .limits = {.max_fields = 4},
     .want = "GET / host=[a] 1.1 none ka=1 up=0 ec=0\ndone\nDONE@45\n"},
    {"blank lines before a request", REQ, IN("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
     .want = "GET / host=[a] 1.1 none ka=1 up=0 ec=0\ndone\nDONE@31\n"},
    {"HTTP/1.0 keep-alive, no Host needed", REQ,
     IN("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n"),
     .want = "GET / host=[] 1.0 none ka=1 up=0 ec=0\ndone\nDONE@42\n"
             "GET /2 host=[] 1.0 none ka=0 up=0 ec=0\ndone\nDONE@61\n"},
    {"Connection: close is served, the rest ignored", REQ,
     IN("GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
     .want = "GET / host=[a] 1.1 none ka=0 up=0 ec=0\ndone\nDONE@46\n"},
    {"Connection: close among other tokens", REQ,
     IN("GET / HTTP/1.1\r\nHost: a\r\nConnection: x-foo, close\r\n\r\n"),
     .want = "GET / host=[a] 1.1 none ka=0 up=0 ec=0\ndone\nDONE@53\n"},
    {"HTTP/1.0 chunked: served, then closed", REQ,
     IN("POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        "1\r\nx\r\n0\r\n\r\n"),
     .want = "POST / host=[] 1.0 chunked ka=0 up=0 ec=0\nbody [x]\ndone\nDONE@82\n"},
    {"Expect: 100-continue", REQ,
     IN("PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nhi"),
     .want = "PUT /f host=[a] 1.1 len:2 ka=1 up=0 ec=1\nbody [hi]\ndone\nDONE@71\n"},
    {"Expect in HTTP/1.0 means nothing", REQ,
     IN("PUT /f HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"),
     .want = "PUT /f host=[] 1.0 len:2 ka=0 up=0 ec=0\nbody [hi]\ndone\nDONE@62\n"},
    {"upgrade: the rest belongs to the tunnel", REQ,
     IN("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        "\x81\x05hello"),
     .want = "GET /ws host=[a] 1.1 none ka=1 up=1 ec=0\ndone\nUPGRADE@70\n"},
    {"upgrade with an empty Content-Length body", REQ,
     IN("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
        "Content-Length: 0\r\n\r\n"),
     .want = "GET /ws host=[a] 1.1 len:0 ka=1 up=1 ec=0\ndone\nUPGRADE@89\n"},
    {"Upgrade without Connection: upgrade is a plain request", REQ,
     IN("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n"),
     .want = "GET / host=[a] 1.1 none ka=1 up=0 ec=0\ndone\nDONE@41\n"},
    {"absolute-form supplies the host", REQ,
     IN("GET http://A.example:8080/p?q HTTP/1.1\r\nHost: a.EXAMPLE:8080\r\n\r\n"),
     .want = "GET http://A.example:8080/p?q host=[A.example:8080] 1.1 none ka=1 up=0 ec=0\n"
             "done\nDONE@64\n"},
    {"absolute-form in HTTP/1.0 without Host", REQ, IN("GET https://b.example HTTP/1.0\r\n\r\n"),
     .want = "GET https://b.example host=[b.example] 1.0 none ka=0 up=0 ec=0\ndone\nDONE@34\n"},
    {"OPTIONS *", REQ, IN("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
     .want = "OPTIONS * host=[a] 1.1 none ka=1 up=0 ec=0\ndone\nDONE@31\n"},
    {"extension method llhttp knows", REQ, IN("PROPFIND /d HTTP/1.1\r\nHost: a\r\n\r\n"),
     .want = "PROPFIND /d host=[a] 1.1 none ka=1 up=0 ec=0\ndone\nDONE@33\n"},
    {"empty Host is valid", REQ, IN("GET / HTTP/1.1\r\nHost:\r\n\r\n"),
     .want = "GET / host=[] 1.1 none ka=1 up=0 ec=0\ndone\nDONE@25\n"},
    {"Host with IPv6 literal and port", REQ,
     IN("GET / HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n"),
     .want = "GET / host=[[2001:db8::1]:8443] 1.1 none ka=1 up=0 ec=0\ndone\nDONE@44\n"},
};

static void test_requests_that_parse(void **state)
{
    (void)state;
    CHECK_TABLE(good_requests);
}

/* ---- requests that are refused ------------------------------------------------------------ */

static const struct pcase bad_requests[] = {
    {"CL and TE", REQ,
     IN("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
     .want = "ERROR 400\n"},
    {"TE and CL", REQ,
     IN("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
     .want = "ERROR 400\n"},
    {"two Content-Length", REQ,
     IN("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
     .want = "ERROR 400\n"},
    {"Content-Length list", REQ, IN("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n"),
     .want = "ERROR 400\n"},
    {"Content-Length sign", REQ, IN("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n"),
     .want = "ERROR 400\n"},
    {"TE gzip", REQ, IN("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc"),
     .want = "ERROR 400\n"},
    {"TE gzip, chunked", REQ,
     IN("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
     .want = "ERROR 501\n"},
    {"TE gzip then chunked on two lines", REQ,
     IN("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
        "\r\n0\r\n\r\n"),
     .want = "ERROR 501\n"},
    {"TE chunked, gzip", REQ,
     IN("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
     .want = "ERROR 400\n"},
    {"TE xchunked", REQ, IN("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"),
     .want = "ERROR 400\n"},
    {"TE chunked twice", REQ,
     IN("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
     .want = "ERROR 400\n"},
    {"bad chunk size", REQ,
     IN("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3x\r\nabc\r\n"),
     .want = "POST / host=[a] 1.1 chunked ka=1 up=0 ec=0\nERROR 400\n"},
    {"chunk data longer than its size", REQ,
     IN("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n"),
     .want = "POST / host=[a] 1.1 chunked ka=1 up=0 ec=0\npartial [ab]\nERROR 400\n"},
    {"upgrade with a Content-Length body", REQ,
     IN("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
        "Content-Length: 5\r\n\r\nhello"),
     .want = "ERROR 400\n"},
    {"upgrade with a chunked body", REQ,
     IN("POST /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
     .want = "ERROR 400\n"},
    {"Upgrade without Connection: upgrade, with a body", REQ,
     IN("POST / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\nhi"),
     .want = "ERROR 400\n"},
    {"obs-fold", REQ, IN("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"), .want = "ERROR 400\n"},
    {"bare LF line ends", REQ, IN("GET / HTTP/1.1\nHost: a\n\n"), .want = "ERROR 400\n"},
    {"bare LF inside the head", REQ, IN("GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n"),
     .want = "ERROR 400\n"},
    {"bare CR", REQ, IN("GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n"), .want = "ERROR 400\n"},
    {"NUL in a value", REQ, IN("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"),
     .want = "ERROR 400\n"},
    {"space before colon", REQ, IN("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), .want = "ERROR 400\n"},
    {"Host missing", REQ, IN("GET / HTTP/1.1\r\nX: y\r\n\r\n"), .want = "ERROR 400\n"},
    {"two Host", REQ, IN("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), .want = "ERROR 400\n"},
    {"two Host in HTTP/1.0", REQ, IN("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"),
     .want = "ERROR 400\n"},
    {"invalid Host", REQ, IN("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), .want = "ERROR 400\n"},
    {"Host with userinfo", REQ, IN("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), .want = "ERROR 400\n"},
    {"absolute-form and Host disagree", REQ,
     IN("GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n"), .want = "ERROR 400\n"},
    {"absolute-form without Host in HTTP/1.1", REQ, IN("GET http://a.example/ HTTP/1.1\r\n\r\n"),
     .want = "ERROR 400\n"},
    {"absolute-form with userinfo", REQ,
     IN("GET http://u@a.example/ HTTP/1.1\r\nHost: u@a.example\r\n\r\n"), .want = "ERROR 400\n"},
    {"absolute-form with empty authority", REQ, IN("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"),
     .want = "ERROR 400\n"},
    {"other scheme", REQ, IN("GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n"), .want = "ERROR 400\n"},
    {"fragment in target", REQ, IN("GET /x#f HTTP/1.1\r\nHost: a\r\n\r\n"), .want = "ERROR 400\n"},
    {"asterisk without OPTIONS", REQ, IN("GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
     .want = "ERROR 400\n"},
    {"HTTP/0.9 simple request", REQ, IN("GET /x\r\n\r\n"), .want = "ERROR 505\n"},
    {"HTTP/0.9 with bare LF", REQ, IN("GET /x\nHost: a\r\n\r\n"), .want = "ERROR 505\n"},
    {"HTTP/0.9 with bare LFs only", REQ, IN("GET /x\nHost: a\n\n"), .want = "ERROR 400\n"},
    {"HTTP/0.9 named", REQ, IN("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), .want = "ERROR 505\n"},
    {"HTTP/1.2", REQ, IN("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), .want = "ERROR 505\n"},
    {"HTTP/2.0 request line", REQ, IN("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), .want = "ERROR 505\n"},
    {"HTTP/2 preface", REQ, IN("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), .want = "ERROR 400\n"},
    {"unknown method", REQ, IN("BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n"), .want = "ERROR 501\n"},
    {"lower-case method", REQ, IN("get / HTTP/1.1\r\nHost: a\r\n\r\n"), .want = "ERROR 501\n"},
    {"CONNECT", REQ, IN("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n"),
     .want = "ERROR 405\n"},
    {"raw non-ASCII in target", REQ, IN("GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"),
     .want = "ERROR 400\n"},
    {"DEL in a value", REQ, IN("GET / HTTP/1.1\r\nHost: a\r\nX: \x7f\r\n\r\n"),
     .want = "ERROR 400\n"},
    {"target too long", REQ, IN("GET /0123456789abcdef HTTP/1.1\r\nHost: a\r\n\r\n"),
     .limits = {.max_target_bytes = 16}, .want = "ERROR 414\n"},
    {"head too large", REQ, IN("GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789abcdefghij\r\n\r\n"),
     .limits = {.max_head_bytes = 40}, .want = "ERROR 431\n"},
    {"endless blank lines count as head", REQ, IN("\r\n\r\n\r\n\r\n\r\n\r\n"),
     .limits = {.max_head_bytes = 8}, .want = "ERROR 431\n"},
    {"too many fields", REQ, IN("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
     .limits = {.max_fields = 3}, .want = "ERROR 431\n"},
    {"trailer section too large", REQ,
     IN("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
        "X-T: 0123456789012345678901234567890123456789\r\n"
        "X-U: 0123456789012345678901234567890123456789\r\n\r\n"),
     .limits = {.max_head_bytes = 80},
     .want = "POST / host=[a] 1.1 chunked ka=1 up=0 ec=0\npartial [x]\nERROR 431\n"},
    {"truncated at EOF: head", REQ, IN("GET / HTTP/1.1\r\nHost: a\r\n"), .is_finish = 1,
     .want = "EOF ERROR 400\n"},
    {"truncated at EOF: body", REQ, IN("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nab"),
     .is_finish = 1, .want = "POST / host=[a] 1.1 len:9 ka=1 up=0 ec=0\nEOF ERROR 400\n"},
    {"EOF between requests", REQ, IN("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), .is_finish = 1,
     .want = "GET / host=[a] 1.1 none ka=1 up=0 ec=0\ndone\nDONE@27\nEOF MORE\n"},
};

static void test_requests_refused(void **state)
{
    (void)state;
    CHECK_TABLE(bad_requests);
}

/* ---- responses ---------------------------------------------------------------------------- */

static const struct pcase responses[] = {
    {"200 with Content-Length", RESP, IN("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
     .method = MOAT_HTTP_M_GET, .want = "200 [OK] 1.1 len:2 ka=1 up=0\nbody [ok]\ndone\nDONE@40\n"},
    {"chunked with trailers", RESP,
     IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n1;a=b\r\n!\r\n0\r\n"
        "Server-Timing: x\r\n\r\n"),
     .method = MOAT_HTTP_M_GET,
     .want = "200 [OK] 1.1 chunked ka=1 up=0\nbody [ok!]\ndone\nDONE@87\n"},
    {"HEAD: Content-Length but no body, the next response follows", RESP,
     IN("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
        "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno"),
     .method = MOAT_HTTP_M_HEAD, .method2 = MOAT_HTTP_M_GET,
     .want = "200 [OK] 1.1 none cl:5 ka=1 up=0\ndone\nDONE@38\n"
             "404 [Not Found] 1.1 len:2 ka=1 up=0\nbody [no]\ndone\nDONE@85\n"},
    {"HEAD with chunked has no body either", RESP,
     IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), .method = MOAT_HTTP_M_HEAD,
     .want = "200 [OK] 1.1 none ka=1 up=0\ndone\nDONE@47\n"},
    {"100 then 200, same request method kept", RESP,
     IN("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
     .method = MOAT_HTTP_M_HEAD,
     .want = "100 [Continue] 1.1 none ka=1 up=0\ndone\nDONE@25\n"
             "200 [OK] 1.1 none cl:5 ka=1 up=0\ndone\nDONE@63\n"},
    {"103 then 200", RESP,
     IN("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"),
     .method = MOAT_HTTP_M_GET,
     .want = "103 [Early Hints] 1.1 none ka=1 up=0\ndone\nDONE@57\n"
             "200 [OK] 1.1 len:1 ka=1 up=0\nbody [x]\ndone\nDONE@96\n"},
    {"204 ignores Content-Length", RESP,
     IN("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\n"
        "Content-Length: 0\r\n\r\n"),
     .method = MOAT_HTTP_M_DELETE, .method2 = MOAT_HTTP_M_GET,
     .want = "204 [No Content] 1.1 none cl:5 ka=1 up=0\ndone\nDONE@46\n"
             "200 [OK] 1.1 len:0 ka=1 up=0\ndone\nDONE@84\n"},
    {"304 ignores Content-Length", RESP,
     IN("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"), .method = MOAT_HTTP_M_GET,
     .want = "304 [Not Modified] 1.1 none cl:5 ka=1 up=0\ndone\nDONE@48\n"},
    {"EOF-delimited body ends at finish", RESP, IN("HTTP/1.1 200 OK\r\n\r\nabc"),
     .method = MOAT_HTTP_M_GET, .is_finish = 1,
     .want = "200 [OK] 1.1 eof ka=0 up=0\nbody [abc]\ndone\nEOF DONE\n"},
    {"Content-Length body truncated at finish", RESP,
     IN("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc"), .method = MOAT_HTTP_M_GET,
     .is_finish = 1, .want = "200 [OK] 1.1 len:5 ka=1 up=0\nEOF ERROR 502\n"},
    {"chunked body truncated at finish", RESP,
     IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc"), .method = MOAT_HTTP_M_GET,
     .is_finish = 1, .want = "200 [OK] 1.1 chunked ka=1 up=0\nEOF ERROR 502\n"},
    {"head truncated at finish", RESP, IN("HTTP/1.1 200 OK\r\nContent-Le"),
     .method = MOAT_HTTP_M_GET, .is_finish = 1, .want = "EOF ERROR 502\n"},
    {"finish between responses", RESP, IN("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
     .method = MOAT_HTTP_M_GET, .is_finish = 1,
     .want = "200 [OK] 1.1 len:0 ka=1 up=0\ndone\nDONE@38\nEOF MORE\n"},
    {"101 upgrade", RESP,
     IN("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        "\x81\x00"),
     .method = MOAT_HTTP_M_GET,
     .want = "101 [Switching Protocols] 1.1 none ka=0 up=1\ndone\nUPGRADE@77\n"},
    {"2xx to CONNECT opens a tunnel", RESP, IN("HTTP/1.1 200 Connected\r\n\r\ntunnel"),
     .method = MOAT_HTTP_M_CONNECT,
     .want = "200 [Connected] 1.1 none ka=0 up=1\ndone\nUPGRADE@26\n"},
    {"HTTP/1.0 response closes", RESP, IN("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx"),
     .method = MOAT_HTTP_M_GET, .want = "200 [OK] 1.0 len:1 ka=0 up=0\nbody [x]\ndone\nDONE@39\n"},
    {"HTTP/1.0 response with keep-alive", RESP,
     IN("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx"),
     .method = MOAT_HTTP_M_GET, .want = "200 [OK] 1.0 len:1 ka=1 up=0\nbody [x]\ndone\nDONE@63\n"},
    {"Connection: close response", RESP,
     IN("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx"),
     .method = MOAT_HTTP_M_GET, .want = "200 [OK] 1.1 len:1 ka=0 up=0\nbody [x]\ndone\nDONE@58\n"},
    {"no reason phrase", RESP, IN("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"),
     .method = MOAT_HTTP_M_GET, .is_show_fields = 1,
     .want = "200 [] 1.1 len:0 ka=1 up=0\n  Content-Length=[0]\ndone\nDONE@36\n"},
    {"status below 100", RESP, IN("HTTP/1.1 099 X\r\n\r\n"), .method = MOAT_HTTP_M_GET,
     .want = "ERROR 502\n"},
    {"HTTP/2.0 status line", RESP, IN("HTTP/2.0 200 OK\r\n\r\n"), .method = MOAT_HTTP_M_GET,
     .want = "ERROR 502\n"},
    {"TE gzip response", RESP, IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc"),
     .method = MOAT_HTTP_M_GET, .want = "ERROR 502\n"},
    {"TE gzip, chunked response", RESP,
     IN("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
     .method = MOAT_HTTP_M_GET, .want = "ERROR 502\n"},
    {"two Content-Length response", RESP,
     IN("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
     .method = MOAT_HTTP_M_GET, .want = "ERROR 502\n"},
    {"CL and TE response", RESP,
     IN("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
     .method = MOAT_HTTP_M_GET, .want = "ERROR 502\n"},
    {"garbage", RESP, IN("HTTP/1.1 OK 200\r\n\r\n"), .method = MOAT_HTTP_M_GET,
     .want = "ERROR 502\n"},
    {"response head too large", RESP, IN("HTTP/1.1 200 OK\r\nServer: 0123456789abcdef\r\n\r\n"),
     .method = MOAT_HTTP_M_GET, .limits = {.max_head_bytes = 32}, .want = "ERROR 502\n"},
};

static void test_responses(void **state)
{
    (void)state;
    CHECK_TABLE(responses);
}

/* ---- single behaviours -------------------------------------------------------------------- */

/* A head of exactly max_head_bytes passes; one byte less of allowance fails with 431. */
static void test_head_limit_is_exact(void **state)
{
    (void)state;
    static const char req[] = "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789\r\n\r\nGET";
    size_t head_len = sizeof(req) - 1 - 3;
    struct pcase c = {"head exactly at the limit", REQ, IN(req),
                      .want = "GET / host=[a] 1.1 none ka=1 up=0 ec=0\ndone\nDONE@42\n"};
    c.limits.max_head_bytes = head_len;
    check_case(&c);
    c.limits.max_head_bytes = head_len - 1;
    c.want = "ERROR 431\n";
    check_case(&c);
}

/* So is a target of exactly max_target_bytes. */
static void test_target_limit_is_exact(void **state)
{
    (void)state;
    struct pcase c = {"target at the limit", REQ, IN("GET /0123456789 HTTP/1.1\r\nHost: a\r\n\r\n"),
                      .want = "GET /0123456789 host=[a] 1.1 none ka=1 up=0 ec=0\ndone\nDONE@37\n"};
    c.limits.max_target_bytes = 11;
    check_case(&c);
    c.limits.max_target_bytes = 10;
    c.want = "ERROR 414\n";
    check_case(&c);
}

static void test_on_head_can_refuse(void **state)
{
    (void)state;
    static const char req[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999\r\n\r\nab";
    struct rec r;
    memset(&r, 0, sizeof(r));
    r.head_fail_status = 413;
    r.p = moat_http_parser_new(MOAT_HTTP_REQUEST, NULL, &cbs, &r);
    assert_non_null(r.p);
    size_t used;
    assert_int_equal(moat_http_parser_feed(r.p, req, sizeof(req) - 1, &used), MOAT_HTTP_ERROR);
    assert_int_equal(moat_http_parser_error_status(r.p), 413);
    assert_string_equal(moat_http_parser_error_reason(r.p), "refused by on_head");
    assert_int_equal(r.body_len, 0); /* nothing after a refused head */
    /* The parser is dead: more input changes nothing. */
    assert_int_equal(moat_http_parser_feed(r.p, "GET", 3, &used), MOAT_HTTP_ERROR);
    assert_int_equal(used, 0);
    assert_int_equal(moat_http_parser_finish(r.p), MOAT_HTTP_ERROR);
    moat_http_parser_free(r.p);

    /* A plain non-zero return means 500. */
    memset(&r, 0, sizeof(r));
    r.head_fail_plain = 1;
    r.p = moat_http_parser_new(MOAT_HTTP_RESPONSE, NULL, &cbs, &r);
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(moat_http_parser_feed(r.p, resp, sizeof(resp) - 1, &used), MOAT_HTTP_ERROR);
    assert_int_equal(moat_http_parser_error_status(r.p), 500);
    moat_http_parser_free(r.p);
}

/* Rejections name their cause for the log. */
static void test_error_reasons(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int status;
        const char *reason;
    } cases[] = {
        {"GET / HTTP/1.1\r\n\r\n", 400, "Host missing"},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "several Host fields"},
        {"GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n", 400,
         "Host differs from the target's authority"},
        {"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n", 405, "CONNECT not allowed"},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501,
         "transfer coding not implemented"},
        {"BREW / HTTP/1.1\r\n\r\n", 501, "unknown method"},
        {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "HTTP/2 connection preface"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rec r;
        memset(&r, 0, sizeof(r));
        struct moat_http_parser *p = moat_http_parser_new(MOAT_HTTP_REQUEST, NULL, &cbs, &r);
        size_t used;
        assert_int_equal(moat_http_parser_feed(p, cases[i].in, strlen(cases[i].in), &used),
                         MOAT_HTTP_ERROR);
        assert_int_equal(moat_http_parser_error_status(p), cases[i].status);
        assert_string_equal(moat_http_parser_error_reason(p), cases[i].reason);
        assert_int_equal(r.head_calls, 0); /* nothing was handed out */
        moat_http_parser_free(p);
    }
}

/* After UPGRADE, _next() goes on with HTTP when the backend refused the upgrade. */
static void test_upgrade_then_http(void **state)
{
    (void)state;
    static const char req[] = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n"
                              "Upgrade: websocket\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    struct rec r;
    memset(&r, 0, sizeof(r));
    struct moat_http_parser *p = moat_http_parser_new(MOAT_HTTP_REQUEST, NULL, &cbs, &r);
    size_t used;
    assert_int_equal(moat_http_parser_feed(p, req, sizeof(req) - 1, &used), MOAT_HTTP_UPGRADE);
    assert_int_equal(used, 70);
    moat_http_parser_next(p);
    assert_true(moat_http_parser_is_idle(p));
    size_t used2;
    assert_int_equal(moat_http_parser_feed(p, req + used, sizeof(req) - 1 - used, &used2),
                     MOAT_HTTP_DONE);
    assert_int_equal(used + used2, sizeof(req) - 1);
    assert_int_equal(r.head_calls, 2);
    assert_int_equal(r.done_calls, 2);
    moat_http_parser_next(p);
    assert_int_equal(moat_http_parser_finish(p), MOAT_HTTP_MORE);
    moat_http_parser_free(p);
}

/* Until _next(), feed() parses nothing; _next() at other times changes nothing. */
static void test_paused_until_next(void **state)
{
    (void)state;
    static const char req[] =
        "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    struct rec r;
    memset(&r, 0, sizeof(r));
    struct moat_http_parser *p = moat_http_parser_new(MOAT_HTTP_REQUEST, NULL, &cbs, &r);
    moat_http_parser_next(p); /* idle: nothing to resume */
    size_t used, again;
    assert_int_equal(moat_http_parser_feed(p, req, sizeof(req) - 1, &used), MOAT_HTTP_DONE);
    assert_int_equal(used, 28);
    assert_int_equal(moat_http_parser_feed(p, req + used, sizeof(req) - 1 - used, &again),
                     MOAT_HTTP_DONE);
    assert_int_equal(again, 0);
    assert_int_equal(r.head_calls, 1);
    moat_http_parser_next(p);
    assert_int_equal(moat_http_parser_feed(p, req + used, 5, &again), MOAT_HTTP_MORE);
    moat_http_parser_next(p); /* inside a head: ignored, the head goes on */
    assert_int_equal(moat_http_parser_feed(p, req + used + 5, sizeof(req) - 1 - used - 5, &again),
                     MOAT_HTTP_DONE);
    assert_int_equal(r.head_calls, 2);
    assert_string_equal(r.log, "GET /1 host=[a] 1.1 none ka=1 up=0 ec=0\ndone\n"
                               "GET /2 host=[a] 1.1 none ka=1 up=0 ec=0\ndone\n");
    moat_http_parser_free(p);
}

static void test_idle_and_free(void **state)
{
    (void)state;
    struct rec r;
    memset(&r, 0, sizeof(r));
    moat_http_parser_free(NULL);
    struct moat_http_parser *p = moat_http_parser_new(MOAT_HTTP_REQUEST, NULL, &cbs, &r);
    assert_true(moat_http_parser_is_idle(p));
    size_t used;
    assert_int_equal(moat_http_parser_feed(p, "", 0, &used), MOAT_HTTP_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(moat_http_parser_feed(p, "GET / HT", 8, &used), MOAT_HTTP_MORE);
    assert_false(moat_http_parser_is_idle(p));
    /* Freed in the middle of a head: the arena goes too (ASan would tell). */
    moat_http_parser_free(p);

    p = moat_http_parser_new(MOAT_HTTP_REQUEST, NULL, &cbs, &r);
    static const char req[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab";
    assert_int_equal(moat_http_parser_feed(p, req, sizeof(req) - 1, &used), MOAT_HTTP_MORE);
    assert_false(moat_http_parser_is_idle(p));
    moat_http_parser_free(p);
}

/* The head handed to on_head, and its strings, survive only the callback: a second head on the
 * same parser gets fresh memory. Checked here through values rather than addresses. */
static void test_fields_are_copied(void **state)
{
    (void)state;
    char req[] = "GET /a HTTP/1.1\r\nHost: h\r\nX-Long-Name: value\r\n\r\n";
    struct rec r;
    memset(&r, 0, sizeof(r));
    r.is_show_fields = 1;
    struct moat_http_parser *p = moat_http_parser_new(MOAT_HTTP_REQUEST, NULL, &cbs, &r);
    size_t n = sizeof(req) - 1, used;
    /* Feed in pieces and scribble over each piece once it was fed: the parser must copy. */
    for (size_t i = 0; i < n; i += 3) {
        size_t k = n - i < 3 ? n - i : 3;
        enum moat_http_status st = moat_http_parser_feed(p, req + i, k, &used);
        memset(req + i, '#', used);
        if (st == MOAT_HTTP_DONE)
            break;
        assert_int_equal(st, MOAT_HTTP_MORE);
    }
    assert_string_equal(r.log, "GET /a host=[h] 1.1 none ka=1 up=0 ec=0\n"
                               "  Host=[h]\n  X-Long-Name=[value]\ndone\n");
    moat_http_parser_free(p);
}

int run_parser_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests_that_parse),
        cmocka_unit_test(test_requests_refused),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_head_limit_is_exact),
        cmocka_unit_test(test_target_limit_is_exact),
        cmocka_unit_test(test_on_head_can_refuse),
        cmocka_unit_test(test_error_reasons),
        cmocka_unit_test(test_upgrade_then_http),
        cmocka_unit_test(test_paused_until_next),
        cmocka_unit_test(test_idle_and_free),
        cmocka_unit_test(test_fields_are_copied),
    };
    return cmocka_run_group_tests_name("http parser", tests, NULL, NULL);
}
