/* tests/fuzz/fuzz_response.c: bytes from a backend in, the response head moat sends to the
 * client out. The first input byte picks the request method and the client's HTTP version.
 * Oracle: the head moat writes parses again as a response with the same status, and the body
 * framing moat plans matches what that head announces. */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_http.h"

struct ctx {
    enum moat_http_method method;
    int client_minor;
};

struct reparse {
    int status;
    int heads;
};

static int check_head(void *ctx, const struct moat_http_head *h)
{
    struct reparse *r = ctx;
    r->heads++;
    if (h->status != r->status)
        abort();
    return 0;
}

static int on_head(void *vctx, const struct moat_http_head *h)
{
    struct ctx *c = vctx;
    static char out[65536];
    struct moat_http_resp_plan plan;
    long n = moat_http_response_head_write(h, c->method, c->client_minor, 1, out, sizeof(out),
                                           &plan);
    if (n < 0)
        return 0;
    if (c->client_minor == 0 && plan.framing == MOAT_HTTP_BODY_CHUNKED)
        abort(); /* HTTP/1.0 clients cannot read chunked bodies */
    struct reparse r = {.status = h->status};
    struct moat_http_parser_cbs cbs = {.on_head = check_head};
    struct moat_http_limits roomy = {65536, 1000, 65536};
    struct moat_http_parser *p = moat_http_parser_new(MOAT_HTTP_RESPONSE, &roomy, &cbs, &r);
    if (p == NULL)
        return 0;
    moat_http_parser_set_request_method(p, c->method);
    size_t used = 0;
    if (moat_http_parser_feed(p, out, (size_t)n, &used) == MOAT_HTTP_ERROR || r.heads != 1)
        abort();
    moat_http_parser_free(p);
    return 0;
}

static int on_body(void *ctx, const char *data, size_t len)
{
    (void)ctx;
    (void)data;
    (void)len;
    return 0;
}

static int on_done(void *ctx)
{
    (void)ctx;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const enum moat_http_method methods[] = {MOAT_HTTP_M_GET, MOAT_HTTP_M_HEAD,
                                                     MOAT_HTTP_M_POST, MOAT_HTTP_M_CONNECT};
    struct ctx c = {.method = methods[data[0] & 3], .client_minor = (data[0] >> 2) & 1};
    static const struct moat_http_parser_cbs cbs = {on_head, on_body, on_done};
    struct moat_http_parser *p = moat_http_parser_new(MOAT_HTTP_RESPONSE, NULL, &cbs, &c);
    if (p == NULL)
        return 0;
    moat_http_parser_set_request_method(p, c.method);
    if (fuzz_feed(p, data + 1, size - 1) != MOAT_HTTP_ERROR)
        moat_http_parser_finish(p);
    else if (moat_http_parser_error_status(p) != 502 && moat_http_parser_error_status(p) != 500)
        abort(); /* a backend's fault is never the client's */
    moat_http_parser_free(p);
    return 0;
}
