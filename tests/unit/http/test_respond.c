/* tests/unit/http/test_respond.c: moat's own responses, reason phrases, chunk heads, methods. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/http.h"
#include "test_http.h"

static void test_error_responses(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *detail;
        int keep_alive;
        const char *want;
    } cases[] = {
        {502, "no backend answered", 0,
         "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n"
         "Content-Length: 37\r\nConnection: close\r\n\r\n502 Bad Gateway: no backend answered\n"},
        {404, NULL, 1,
         "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
         "Content-Length: 14\r\nConnection: keep-alive\r\n\r\n404 Not Found\n"},
        {503, "draining", 0,
         "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
         "Content-Length: 34\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
         "503 Service Unavailable: draining\n"},
        {431, "too many header fields", 0,
         "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; "
         "charset=utf-8\r\n"
         "Content-Length: 60\r\nConnection: close\r\n\r\n"
         "431 Request Header Fields Too Large: too many header fields\n"},
        {599, "x", 0,
         "HTTP/1.1 599 \r\nContent-Type: text/plain; charset=utf-8\r\n"
         "Content-Length: 7\r\nConnection: close\r\n\r\n599: x\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[512];
        long n = moat_http_error_write(cases[i].status, cases[i].detail, cases[i].keep_alive, out,
                                       sizeof(out));
        size_t want_len = strlen(cases[i].want);
        assert_int_equal(n, (long)want_len);
        assert_memory_equal(out, cases[i].want, want_len);
        /* The stated Content-Length is the body's. */
        const char *body = strstr(out, "\r\n\r\n") + 4;
        const char *cl = strstr(out, "Content-Length: ") + 16;
        assert_int_equal(strtoul(cl, NULL, 10), (unsigned long)(out + n - body));
        /* Any smaller buffer fails. */
        for (size_t cap = 0; cap < want_len; cap++)
            assert_int_equal(moat_http_error_write(cases[i].status, cases[i].detail,
                                                   cases[i].keep_alive, out, cap),
                             -1);
        assert_int_equal(moat_http_error_write(cases[i].status, cases[i].detail,
                                               cases[i].keep_alive, out, want_len + 1),
                         n);
    }
}

static void test_reasons(void **state)
{
    (void)state;
    static const int statuses[] = {400, 404, 405, 408, 413, 414, 417,
                                   431, 500, 501, 502, 503, 504, 505};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
        assert_true(moat_http_reason(statuses[i])[0] != '\0');
    assert_string_equal(moat_http_reason(502), "Bad Gateway");
    assert_string_equal(moat_http_reason(414), "URI Too Long");
    assert_string_equal(moat_http_reason(413), "Content Too Large");
    assert_string_equal(moat_http_reason(505), "HTTP Version Not Supported");
    assert_string_equal(moat_http_reason(299), "");
}

static void test_chunk_heads(void **state)
{
    (void)state;
    static const struct {
        size_t len;
        const char *want;
    } cases[] = {
        {1, "1\r\n"},    {15, "f\r\n"},        {16, "10\r\n"},
        {255, "ff\r\n"}, {65536, "10000\r\n"}, {SIZE_MAX, "ffffffffffffffff\r\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[18];
        size_t n = moat_http_chunk_head(out, cases[i].len);
        assert_int_equal(n, strlen(cases[i].want));
        assert_memory_equal(out, cases[i].want, n);
    }
    assert_string_equal(MOAT_HTTP_LAST_CHUNK, "0\r\n\r\n");
}

static void test_idempotent_methods(void **state)
{
    (void)state;
    assert_true(moat_http_method_is_idempotent(MOAT_HTTP_M_GET));
    assert_true(moat_http_method_is_idempotent(MOAT_HTTP_M_HEAD));
    assert_true(moat_http_method_is_idempotent(MOAT_HTTP_M_OPTIONS));
    assert_true(moat_http_method_is_idempotent(MOAT_HTTP_M_TRACE));
    assert_true(moat_http_method_is_idempotent(MOAT_HTTP_M_PUT));
    assert_true(moat_http_method_is_idempotent(MOAT_HTTP_M_DELETE));
    assert_false(moat_http_method_is_idempotent(MOAT_HTTP_M_POST));
    assert_false(moat_http_method_is_idempotent(MOAT_HTTP_M_PATCH));
    assert_false(moat_http_method_is_idempotent(MOAT_HTTP_M_CONNECT));
    assert_false(moat_http_method_is_idempotent(MOAT_HTTP_M_OTHER));
}

/* Cookies are found in any Cookie field, by exact (case-sensitive) name, quotes removed. */
static void test_cookie_lookup(void **state)
{
    (void)state;
    struct moat_http_field fields[] = {
        {"Host", 4, "a", 1},
        {"cookie", 6, "a=1; pin=\"0123\"; B=2", 21},
        {"Cookie", 6, "late=yes;x", 10},
    };
    struct moat_http_head h = {.fields = fields, .n_fields = 3};
    const char *v;
    size_t len;
    assert_true(moat_http_cookie_get(&h, "pin", &v, &len));
    assert_int_equal(len, 4);
    assert_memory_equal(v, "0123", 4);
    assert_true(moat_http_cookie_get(&h, "B", &v, &len));
    assert_memory_equal(v, "2", 1);
    assert_false(moat_http_cookie_get(&h, "b", &v, &len)); /* names are case-sensitive */
    assert_true(moat_http_cookie_get(&h, "late", &v, &len));
    assert_int_equal(len, 3);
    assert_false(moat_http_cookie_get(&h, "x", &v, &len)); /* no '=': not a cookie */
    assert_ptr_equal(moat_http_field_find(&h, "COOKIE"), &fields[1]);
    assert_null(moat_http_field_find(&h, "Set-Cookie"));
}

/* The port-80 redirect's Location for a parsed request. */
struct loc_case {
    const char *request;
    unsigned port;
    const char *want; /* "" when refused (no usable Host) */
};

static int loc_head(void *ctx, const struct moat_http_head *h)
{
    const struct loc_case *c = ctx;
    char out[256];
    long n = moat_http_https_location(h, c->port, out, sizeof(out));
    if (c->want[0] == '\0') {
        assert_int_equal(n, 0);
    } else {
        assert_true(n > 0);
        assert_string_equal(out, c->want);
    }
    assert_int_equal(moat_http_https_location(h, c->port, out, 9), c->want[0] ? -1 : 0);
    return 0;
}

static void test_https_location(void **state)
{
    (void)state;
    static const struct loc_case cases[] = {
        {"GET /a/b?c=1 HTTP/1.1\r\nHost: example.test\r\n\r\n", 443,
         "https://example.test/a/b?c=1"},
        {"GET / HTTP/1.1\r\nHost: example.test:80\r\n\r\n", 8443, "https://example.test:8443/"},
        {"GET http://abs.test/x?y HTTP/1.1\r\nHost: abs.test\r\n\r\n", 443,
         "https://abs.test/x?y"},
        {"OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n", 443, "https://a.test/"},
        {"GET /p HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 443, "https://[::1]/p"},
        {"GET / HTTP/1.0\r\n\r\n", 443, ""},                       /* no Host */
        {"GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n", 443, ""},           /* not a host name */
        {"GET / HTTP/1.1\r\nHost: user@a.test\r\n\r\n", 443, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct moat_http_parser_cbs cbs = {.on_head = loc_head};
        struct moat_http_parser *p =
            moat_http_parser_new(MOAT_HTTP_REQUEST, NULL, &cbs, (void *)&cases[i]);
        size_t used;
        enum moat_http_status st = moat_http_parser_feed(p, cases[i].request,
                                                         strlen(cases[i].request), &used);
        if (st == MOAT_HTTP_ERROR && cases[i].want[0] != '\0')
            fail_msg("case %zu did not parse", i);
        moat_http_parser_free(p);
    }
}

static void test_head_add_field(void **state)
{
    (void)state;
    char head[64] = "HTTP/1.1 200 OK\r\nA: 1\r\n\r\n";
    size_t len = strlen(head);
    long n = moat_http_head_add_field(head, len, sizeof(head), "Set-Cookie", "p=1");
    assert_int_equal(n, (long)(len + strlen("Set-Cookie: p=1\r\n")));
    assert_memory_equal(head, "HTTP/1.1 200 OK\r\nA: 1\r\nSet-Cookie: p=1\r\n\r\n", (size_t)n);
    assert_int_equal(moat_http_head_add_field(head, (size_t)n, (size_t)n + 3, "X", "y"), -1);
    assert_int_equal(moat_http_head_add_field(head, 5, sizeof(head), "X", "y"), -1);
}

int run_respond_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_responses),
        cmocka_unit_test(test_reasons),
        cmocka_unit_test(test_chunk_heads),
        cmocka_unit_test(test_idempotent_methods),
        cmocka_unit_test(test_cookie_lookup),
        cmocka_unit_test(test_head_add_field),
        cmocka_unit_test(test_https_location),
    };
    return cmocka_run_group_tests_name("http respond", tests, NULL, NULL);
}
