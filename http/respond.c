/* http/respond.c: what moat says itself: its own short error responses, reason phrases, chunk
 * framing, and the method facts the proxy decides retries by. */
#include "http/http.h"
#include "http/fields.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

/* RFC 9110 §15, plus RFC 8297 (103) and RFC 6585 (429, 431). */
static const struct {
    int status;
    const char *reason;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {103, "Early Hints"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {206, "Partial Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {411, "Length Required"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {426, "Upgrade Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

const char *moat_http_reason(int status)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (reasons[i].status == status)
            return reasons[i].reason;
    return "";
}

long moat_http_error_write(int status, const char *detail, int keep_alive, char *out, size_t cap)
{
    assert(status >= 100 && status <= 999);
    const char *reason = moat_http_reason(status);
    const char *sp = reason[0] != '\0' ? " " : "";
    const char *sep = detail != NULL ? ": " : "";
    if (detail == NULL)
        detail = "";
    /* The body first, to know its length: "502 Bad Gateway: no backend answered\n". */
    int body_len = snprintf(NULL, 0, "%d%s%s%s%s\n", status, sp, reason, sep, detail);
    if (body_len < 0)
        return -1;
    /* RFC 9110 §10.2.3: tell clients of an overloaded or backend-less moat when to come back.
     * "Connection: keep-alive" is redundant for HTTP/1.1 but keeps HTTP/1.0 clients too. */
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %d\r\n"
                     "%s"
                     "Connection: %s\r\n"
                     "\r\n"
                     "%d%s%s%s%s\n",
                     status, reason, body_len, status == 503 ? "Retry-After: 1\r\n" : "",
                     keep_alive ? "keep-alive" : "close", status, sp, reason, sep, detail);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    return n;
}

size_t moat_http_chunk_head(char *out, size_t len)
{
    assert(len > 0); /* a zero-size chunk would end the body: that is MOAT_HTTP_LAST_CHUNK */
    static const char hex[] = "0123456789abcdef";
    char digits[2 * sizeof(len)];
    size_t n = 0;
    do {
        digits[sizeof(digits) - ++n] = hex[len & 15];
        len >>= 4;
    } while (len != 0);
    memcpy(out, digits + sizeof(digits) - n, n);
    memcpy(out + n, "\r\n", 2);
    return n + 2;
}

int moat_http_method_is_idempotent(enum moat_http_method m)
{
    switch (m) {
    case MOAT_HTTP_M_GET:
    case MOAT_HTTP_M_HEAD:
    case MOAT_HTTP_M_OPTIONS:
    case MOAT_HTTP_M_TRACE:
    case MOAT_HTTP_M_PUT:
    case MOAT_HTTP_M_DELETE:
        return 1;
    default:
        return 0;
    }
}

/* The host of a Host value without its port: a name (letters, digits, '-', '.', '_') or a
 * bracketed IPv6 literal. 1 with *n its length, else 0. */
static int location_host(const char *host, size_t len, size_t *n)
{
    size_t i = 0;
    if (len > 0 && host[0] == '[') {
        for (i = 1; i < len && host[i] != ']'; i++)
            if (!strchr("0123456789abcdefABCDEF:.", host[i]))
                return 0;
        if (i == len || i == 1)
            return 0;
        i++; /* the bracket */
    } else {
        for (; i < len && host[i] != ':'; i++) {
            char c = host[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_'))
                return 0;
        }
    }
    *n = i;
    return i > 0 && (i == len || host[i] == ':');
}

long moat_http_https_location(const struct moat_http_head *h, unsigned https_port, char *out,
                              size_t cap)
{
    size_t host_len;
    if (!location_host(h->host, h->host_len, &host_len))
        return 0;
    const char *path = h->target, *authority;
    size_t path_len = h->target_len, authority_len;
    if (moat_http_target_split(h->target, h->target_len, &authority, &authority_len, &path,
                               &path_len) == 0 && (path_len == 0 || path[0] != '/'))
        path_len = 0; /* "*" (OPTIONS) */
    if (path_len == 0 || path[0] != '/') {
        path = "/";
        path_len = 1;
    }
    for (size_t i = 0; i < path_len; i++)
        if ((unsigned char)path[i] <= 0x20 || (unsigned char)path[i] >= 0x7f)
            return 0; /* the parser lets no such byte through; never into a header */
    char port[8] = "";
    if (https_port != 443)
        snprintf(port, sizeof(port), ":%u", https_port % 65536);
    int n = snprintf(out, cap, "https://%.*s%s%.*s", (int)host_len, h->host, port,
                     (int)path_len, path);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}
