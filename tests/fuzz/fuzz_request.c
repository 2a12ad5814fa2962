/* tests/fuzz/fuzz_request.c: bytes from a client in, rewritten heads and body framing out.
 * Oracle: every head moat would forward must parse again, strictly, as the same request (same
 * method, target and framing, and exactly the one X-Request-Id moat chose): a rewrite that a
 * backend could read differently is a smuggling bug, and it aborts here. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_http.h"

struct reparse {
    const struct moat_http_head *orig;
    const char *request_id; /* what moat chose to send */
    int heads;
};

static int check_head(void *ctx, const struct moat_http_head *h)
{
    struct reparse *r = ctx;
    const struct moat_http_head *o = r->orig;
    r->heads++;
    if (h->method != o->method || h->framing != o->framing ||
        (h->framing == MOAT_HTTP_BODY_LENGTH && h->content_length != o->content_length))
        abort();
    size_t ids = 0;
    for (size_t i = 0; i < h->n_fields; i++) {
        const struct moat_http_field *f = &h->fields[i];
        if (f->name_len != 12 || strncasecmp(f->name, "X-Request-Id", 12) != 0)
            continue;
        if (f->value_len != strlen(r->request_id) ||
            memcmp(f->value, r->request_id, f->value_len) != 0)
            abort();
        ids++;
    }
    if (ids != 1)
        abort();
    return 0;
}

static int on_head(void *ctx, const struct moat_http_head *h)
{
    (void)ctx;
    static char out[65536];
    /* As proxy/conn.c does: the client's request id when sane, else one of moat's. */
    char id[MOAT_HTTP_REQUEST_ID_MAX + 1] = "0123456789abcdef0123456789abcdef";
    const char *v;
    size_t v_len;
    if (moat_http_request_id_get(h, &v, &v_len)) {
        memcpy(id, v, v_len);
        id[v_len] = '\0';
    }
    /* The port-80 redirector's Location: "https://", then visible ASCII only (a header). */
    static char loc[2048];
    long ln = moat_http_https_location(h, 8443, loc, sizeof(loc));
    if (ln > 0 && (strncmp(loc, "https://", 8) != 0 || strlen(loc) != (size_t)ln))
        abort();
    for (long i = 0; i < ln; i++)
        if ((unsigned char)loc[i] <= 0x20 || (unsigned char)loc[i] >= 0x7f)
            abort();
    struct moat_http_fwd fwd = {.client_addr = "192.0.2.7", .peer_is_trusted = h->n_fields & 1,
                                .request_id = id};
    long n = moat_http_request_head_write(h, &fwd, out, sizeof(out));
    if (n < 0)
        return 0; /* too big to forward: moat answers 431 */
    struct reparse r = {.orig = h, .request_id = id};
    struct moat_http_parser_cbs cbs = {.on_head = check_head};
    /* Roomier limits than moat's own: what moat adds may push a head past them, and that is
     * a size question, not an ambiguity. */
    struct moat_http_limits roomy = {65536, 1000, 65536};
    struct moat_http_parser *p = moat_http_parser_new(MOAT_HTTP_REQUEST, &roomy, &cbs, &r);
    if (p == NULL)
        return 0;
    size_t used = 0;
    enum moat_http_status st = moat_http_parser_feed(p, out, (size_t)n, &used);
    /* A head alone is a complete message unless a body is announced. */
    if (st == MOAT_HTTP_ERROR || r.heads != 1)
        abort();
    moat_http_parser_free(p);
    return 0;
}

static int on_body(void *ctx, const char *data, size_t len)
{
    (void)ctx;
    char head[24];
    if (len > 0 && moat_http_chunk_head(head, len) < 3)
        abort();
    (void)data;
    return 0;
}

static int on_done(void *ctx)
{
    (void)ctx;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct moat_http_parser_cbs cbs = {on_head, on_body, on_done};
    struct moat_http_parser *p = moat_http_parser_new(MOAT_HTTP_REQUEST, NULL, &cbs, NULL);
    if (p == NULL)
        return 0;
    if (fuzz_feed(p, data, size) == MOAT_HTTP_ERROR) {
        int st = moat_http_parser_error_status(p);
        if (st < 400 || st > 599 || moat_http_parser_error_reason(p) == NULL)
            abort();
        char buf[512];
        if (moat_http_error_write(st, moat_http_parser_error_reason(p), 0, buf, sizeof(buf)) < 0)
            abort();
    } else {
        moat_http_parser_finish(p);
    }
    moat_http_parser_free(p);
    return 0;
}
