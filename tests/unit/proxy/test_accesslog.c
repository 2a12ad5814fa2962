/* tests/unit/proxy/test_accesslog.c: access-log escaping and the three line formats, through
 * proxy/accesslog.h; request ids through proxy/reqid.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "proxy/accesslog.h"
#include "proxy/reqid.h"

static char line[MOAT_ACCESSLOG_LINE_MAX];

/* ---- escaping ------------------------------------------------------------------------------ */

struct ecase {
    const char *name;
    const char *in;
    size_t in_len; /* 0: strlen(in) */
    const char *want;
};

static void check_escape(size_t (*esc)(char *, size_t, const char *, size_t),
                         const struct ecase *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct ecase *c = &cases[i];
        char out[256];
        size_t len = c->in_len ? c->in_len : strlen(c->in);
        size_t got = esc(out, sizeof(out), c->in, len);
        if (got != strlen(c->want) || memcmp(out, c->want, got) != 0)
            fail_msg("case \"%s\": want [%s] got [%.*s]", c->name, c->want, (int)got, out);
    }
}

static void test_escape_text_as_nginx(void **state)
{
    (void)state;
    static const struct ecase cases[] = {
        {"plain", "Mozilla/5.0 (X11; Linux) ~!", 0, "Mozilla/5.0 (X11; Linux) ~!"},
        {"quote and backslash", "a\"b\\c", 0, "a\\x22b\\x5Cc"},
        {"controls", "\r\n\t\x1b", 0, "\\x0D\\x0A\\x09\\x1B"},
        {"NUL", "a\0b", 3, "a\\x00b"},
        {"DEL and high bytes", "\x7f\x80\xc3\xa9\xff", 0, "\\x7F\\x80\\xC3\\xA9\\xFF"},
        {"empty", "", 0, ""},
    };
    check_escape(moat_accesslog_escape_text, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_escape_json(void **state)
{
    (void)state;
    static const struct ecase cases[] = {
        {"plain", "GET /a?b=c&d", 0, "GET /a?b=c&d"},
        {"quote and backslash", "a\"b\\c/", 0, "a\\\"b\\\\c/"},
        {"controls", "\r\n\t\x01\x1f", 0, "\\u000D\\u000A\\u0009\\u0001\\u001F"},
        {"NUL", "a\0b", 3, "a\\u0000b"},
        {"DEL", "\x7f", 0, "\\u007F"},
        {"2-byte UTF-8 kept", "caf\xc3\xa9", 0, "caf\xc3\xa9"},
        {"3-byte UTF-8 kept", "\xe2\x82\xac", 0, "\xe2\x82\xac"},
        {"4-byte UTF-8 kept", "\xf0\x9f\x98\x80", 0, "\xf0\x9f\x98\x80"},
        {"U+10FFFF kept", "\xf4\x8f\xbf\xbf", 0, "\xf4\x8f\xbf\xbf"},
        {"lone continuation", "\x80", 0, "\\u0080"},
        {"overlong 2-byte", "\xc0\xaf", 0, "\\u00C0\\u00AF"},
        {"overlong 3-byte", "\xe0\x80\xaf", 0, "\\u00E0\\u0080\\u00AF"},
        {"overlong 4-byte", "\xf0\x80\x80\xaf", 0, "\\u00F0\\u0080\\u0080\\u00AF"},
        {"surrogate", "\xed\xa0\x80", 0, "\\u00ED\\u00A0\\u0080"},
        {"above U+10FFFF", "\xf4\x90\x80\x80", 0, "\\u00F4\\u0090\\u0080\\u0080"},
        {"F5 and up", "\xf5\xff", 0, "\\u00F5\\u00FF"},
        {"cut short, then ASCII", "\xe2\x82" "A", 0, "\\u00E2\\u0082A"},
        {"cut short at the end", "x\xf0\x9f\x98", 0, "x\\u00F0\\u009F\\u0098"},
        {"Latin-1 text", "caf\xe9", 0, "caf\\u00E9"},
    };
    check_escape(moat_accesslog_escape_json, cases, sizeof(cases) / sizeof(cases[0]));
}

/* Both escapers stop before an escape that does not fit, never inside one. */
static void test_escape_never_cuts_an_escape(void **state)
{
    (void)state;
    static const char in[] = "ab\"\xc3\xa9\x01z";
    for (size_t cap = 0; cap < 40; cap++) {
        char out[64];
        memset(out, '#', sizeof(out));
        size_t n = moat_accesslog_escape_json(out, cap, in, sizeof(in) - 1);
        assert_true(n <= cap);
        assert_int_equal(out[n], '#'); /* nothing written past the length */
        static const char full[] = "ab\\\"\xc3\xa9\\u0001z";
        assert_memory_equal(out, full, n);
        /* The prefix ends at a unit boundary of the full output. */
        static const size_t ends[] = {0, 1, 2, 4, 6, 12, 13};
        int ok = 0;
        for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++)
            ok |= n == ends[i];
        assert_true(ok);

        memset(out, '#', sizeof(out));
        n = moat_accesslog_escape_text(out, cap, in, sizeof(in) - 1);
        assert_true(n <= cap);
        assert_int_equal(out[n], '#');
        static const char full_text[] = "ab\\x22\\xC3\\xA9\\x01z";
        assert_memory_equal(out, full_text, n);
        static const size_t text_ends[] = {0, 1, 2, 6, 10, 14, 18, 19};
        ok = 0;
        for (size_t i = 0; i < sizeof(text_ends) / sizeof(text_ends[0]); i++)
            ok |= n == text_ends[i];
        assert_true(ok);
    }
}

/* Decodes what escape_json wrote (\" \\ \u00XX, raw UTF-8) back to bytes: \u00XX gives byte XX. */
static size_t json_unescape(const char *s, size_t len, unsigned char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (s[i] != '\\') {
            out[o++] = (unsigned char)s[i++];
            continue;
        }
        assert_true(i + 1 < len);
        if (s[i + 1] == '"' || s[i + 1] == '\\') {
            out[o++] = (unsigned char)s[i + 1];
            i += 2;
            continue;
        }
        assert_true(i + 5 < len);
        assert_memory_equal(s + i, "\\u00", 4);
        unsigned v;
        assert_int_equal(sscanf(s + i + 4, "%2X", &v), 1);
        out[o++] = (unsigned char)v;
        i += 6;
    }
    return o;
}

/* An independent UTF-8 check (decode, then range-check each code point). */
static int is_valid_utf8(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        unsigned c = s[i];
        size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (n == 0 || i + n > len)
            return 0;
        unsigned cp = n == 1 ? c : n == 2 ? c & 0x1f : n == 3 ? c & 0x0f : c & 0x07;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        static const unsigned min[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n;
    }
    return 1;
}

/* Any bytes at all: the output is valid UTF-8, holds no control byte, no unescaped quote, and
 * decodes back to the input. */
static void test_escape_json_any_bytes(void **state)
{
    (void)state;
    unsigned seed = 12345;
    static unsigned char in[512], back[512];
    static char out[512 * 6];
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)(round % 64) + 1;
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            unsigned r = seed >> 16;
            /* Bias toward bytes that make or break UTF-8. */
            in[i] = (unsigned char)(r % 3 == 0 ? 0x80 + (r >> 2) % 0x80 : r % 3 == 1 ? 0xc0 + (r >> 2) % 0x40 : r >> 3);
        }
        size_t n = moat_accesslog_escape_json(out, sizeof(out), (const char *)in, len);
        assert_true(is_valid_utf8((const unsigned char *)out, n));
        for (size_t i = 0; i < n; i++) {
            assert_true((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
            if (out[i] == '"')
                assert_true(i > 0 && out[i - 1] == '\\');
        }
        size_t m = json_unescape(out, n, back);
        assert_int_equal(m, len);
        assert_memory_equal(back, in, len);
    }
}

/* ---- lines --------------------------------------------------------------------------------- */

static struct moat_access_req *sample_req(void)
{
    static const char ua[] = "curl/8.0 \"evil\"\n\x01";
    struct moat_access_req *q = moat_access_req_new("GET", 1, "/p?q=\"x\"", 8, "https://r/", 10,
                                                    ua, sizeof(ua) - 1);
    assert_non_null(q);
    return q;
}

static struct moat_access_rec sample_rec(const struct moat_access_req *q)
{
    struct moat_access_rec r = {
        .time_ms = 1791640536123, /* 2026-10-10T13:55:36.123Z */
        .client_ip = "198.51.100.7",
        .req = q,
        .status = 200,
        .bytes_in = 5,
        .bytes_out = 141,
        .duration_ms = 1234,
        .upstream = "127.0.0.1:8080",
        .upstream_ms = 1001,
        .pool = "default",
        .tls_version = "TLSv1.3",
        .tls_cipher = "TLS_AES_128_GCM_SHA256",
        .sni = "www.example",
        .sni_len = 11,
        .request_id = "0123456789abcdef0123456789abcdef",
    };
    return r;
}

static void expect_line(enum moat_cfg_access_format f, const struct moat_access_rec *r,
                        const char *want)
{
    memset(line, '#', sizeof(line));
    size_t n = moat_accesslog_format(f, r, line, sizeof(line));
    if (n != strlen(want) || memcmp(line, want, n) != 0)
        fail_msg("format %d:\nwant %s\ngot  %.*s", (int)f, want, (int)n, line);
}

static void test_combined(void **state)
{
    (void)state;
    struct moat_access_req *q = sample_req();
    struct moat_access_rec r = sample_rec(q);
    expect_line(MOAT_CFG_ACCESS_COMBINED, &r,
                "198.51.100.7 - - [10/Oct/2026:13:55:36 +0000] \"GET /p?q=\\x22x\\x22 HTTP/1.1\" "
                "200 141 \"https://r/\" \"curl/8.0 \\x22evil\\x22\\x0A\\x01\"\n");
    free(q);

    /* No head (a 408 before the request arrived): nginx's "-" everywhere. */
    r = sample_rec(NULL);
    r.status = 408;
    r.bytes_out = 0;
    r.time_ms = 1709164805007; /* 2024-02-29T00:00:05.007Z */
    expect_line(MOAT_CFG_ACCESS_COMBINED, &r,
                "198.51.100.7 - - [29/Feb/2024:00:00:05 +0000] \"-\" 408 0 \"-\" \"-\"\n");

    /* HTTP/1.0, no referer or agent. */
    q = moat_access_req_new("HEAD", 0, "/", 1, NULL, 0, NULL, 0);
    r = sample_rec(q);
    r.status = 304;
    r.bytes_out = 0;
    expect_line(MOAT_CFG_ACCESS_COMBINED, &r,
                "198.51.100.7 - - [10/Oct/2026:13:55:36 +0000] \"HEAD / HTTP/1.0\" 304 0 \"-\" "
                "\"-\"\n");
    free(q);
}

static void test_moat_format(void **state)
{
    (void)state;
    struct moat_access_req *q = sample_req();
    struct moat_access_rec r = sample_rec(q);
    expect_line(MOAT_CFG_ACCESS_MOAT, &r,
                "198.51.100.7 - - [10/Oct/2026:13:55:36 +0000] \"GET /p?q=\\x22x\\x22 HTTP/1.1\" "
                "200 141 \"https://r/\" \"curl/8.0 \\x22evil\\x22\\x0A\\x01\" 1.234 "
                "127.0.0.1:8080 0123456789abcdef0123456789abcdef\n");
    free(q);
    r = sample_rec(NULL);
    r.status = 400;
    r.upstream = NULL;
    r.duration_ms = 5;
    expect_line(MOAT_CFG_ACCESS_MOAT, &r,
                "198.51.100.7 - - [10/Oct/2026:13:55:36 +0000] \"-\" 400 141 \"-\" \"-\" 0.005 - "
                "0123456789abcdef0123456789abcdef\n");
}

static void test_json(void **state)
{
    (void)state;
    struct moat_access_req *q = sample_req();
    struct moat_access_rec r = sample_rec(q);
    expect_line(MOAT_CFG_ACCESS_JSON, &r,
                "{\"time\":\"2026-10-10T13:55:36.123Z\",\"client\":\"198.51.100.7\","
                "\"method\":\"GET\",\"target\":\"/p?q=\\\"x\\\"\",\"protocol\":\"HTTP/1.1\","
                "\"status\":200,\"bytes_in\":5,\"bytes_out\":141,\"duration_ms\":1234,"
                "\"upstream\":\"127.0.0.1:8080\",\"upstream_ms\":1001,\"pool\":\"default\","
                "\"referer\":\"https://r/\",\"user_agent\":\"curl/8.0 \\\"evil\\\"\\u000A\\u0001\","
                "\"tls_version\":\"TLSv1.3\",\"tls_cipher\":\"TLS_AES_128_GCM_SHA256\","
                "\"sni\":\"www.example\",\"request_id\":\"0123456789abcdef0123456789abcdef\"}\n");
    free(q);

    /* Nothing known but the client: nulls, never empty strings or missing keys. */
    struct moat_access_rec bare = {.time_ms = 0, .client_ip = "::1", .upstream_ms = 5};
    expect_line(MOAT_CFG_ACCESS_JSON, &bare,
                "{\"time\":\"1970-01-01T00:00:00.000Z\",\"client\":\"::1\",\"method\":null,"
                "\"target\":null,\"protocol\":null,\"status\":null,\"bytes_in\":0,\"bytes_out\":0,"
                "\"duration_ms\":0,\"upstream\":null,\"upstream_ms\":null,\"pool\":null,"
                "\"referer\":null,\"user_agent\":null,\"tls_version\":null,\"tls_cipher\":null,"
                "\"sni\":null,\"request_id\":null}\n");
}

/* The longest and most hostile values still make one line that fits, in every format. */
static void test_worst_case_fits(void **state)
{
    (void)state;
    static char big[8192], hostile_sni[MOAT_ACCESSLOG_SNI_MAX], pool[1000];
    memset(big, 0x01, sizeof(big)); /* escapes to 6 bytes in JSON, 4 in text */
    memset(hostile_sni, 0xff, sizeof(hostile_sni));
    memset(pool, '"', sizeof(pool) - 1);
    pool[sizeof(pool) - 1] = '\0';
    struct moat_access_req *q = moat_access_req_new("OPTIONS", 1, big, sizeof(big), big,
                                                    sizeof(big), big, sizeof(big));
    assert_non_null(q);
    assert_int_equal(q->target_len, MOAT_ACCESSLOG_TARGET_MAX);
    assert_int_equal(q->referer_len, MOAT_ACCESSLOG_FIELD_MAX);
    assert_int_equal(q->user_agent_len, MOAT_ACCESSLOG_FIELD_MAX);
    struct moat_access_rec r = sample_rec(q);
    r.sni = hostile_sni;
    r.sni_len = sizeof(hostile_sni);
    r.pool = pool;
    r.upstream = pool;
    r.tls_cipher = pool;
    r.client_ip = pool;
    for (int f = MOAT_CFG_ACCESS_MOAT; f <= MOAT_CFG_ACCESS_JSON; f++) {
        size_t n = moat_accesslog_format((enum moat_cfg_access_format)f, &r, line, sizeof(line));
        assert_true(n <= sizeof(line));
        assert_int_equal(line[n - 1], '\n');
        assert_null(memchr(line, '\n', n - 1)); /* one line */
        for (size_t i = 0; i < n - 1; i++)
            assert_true((unsigned char)line[i] >= 0x20);
        if (f == MOAT_CFG_ACCESS_JSON) {
            assert_memory_equal(line + n - 2, "}\n", 2);
            assert_true(is_valid_utf8((const unsigned char *)line, n));
        }
    }
    free(q);
}

/* ---- request ids --------------------------------------------------------------------------- */

#define IDS_PER_THREAD 20000
#define THREADS 4

static char ids[THREADS * IDS_PER_THREAD][MOAT_REQID_LEN + 1];

static void *make_ids(void *arg)
{
    char (*mine)[MOAT_REQID_LEN + 1] = arg;
    for (int i = 0; i < IDS_PER_THREAD; i++)
        moat_reqid_generate(mine[i]);
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, MOAT_REQID_LEN);
}

static void test_reqids_unique_across_threads(void **state)
{
    (void)state;
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, make_ids, ids[i * IDS_PER_THREAD]), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (size_t i = 0; i < THREADS * IDS_PER_THREAD; i++) {
        assert_int_equal(strlen(ids[i]), MOAT_REQID_LEN);
        assert_int_equal(strspn(ids[i], "0123456789abcdef"), MOAT_REQID_LEN);
    }
    qsort(ids, THREADS * IDS_PER_THREAD, sizeof(ids[0]), cmp_id);
    for (size_t i = 1; i < THREADS * IDS_PER_THREAD; i++)
        assert_true(cmp_id(ids[i - 1], ids[i]) != 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_text_as_nginx),
        cmocka_unit_test(test_escape_json),
        cmocka_unit_test(test_escape_never_cuts_an_escape),
        cmocka_unit_test(test_escape_json_any_bytes),
        cmocka_unit_test(test_combined),
        cmocka_unit_test(test_moat_format),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_worst_case_fits),
        cmocka_unit_test(test_reqids_unique_across_threads),
    };
    return cmocka_run_group_tests_name("accesslog", tests, NULL, NULL);
}
