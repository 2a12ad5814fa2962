/* proxy/accesslog.c: formats access-log lines (moat, combined, JSON) from a plain record, and
 * the escaping each format needs. Pure functions over caller-owned memory. */
#include "proxy/accesslog.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char hex_upper[] = "0123456789ABCDEF";

/* Values no configuration or peer may make longer than this (pool names, TLS names): cut. */
#define SHORT_MAX 256

/* Copies n bytes and a NUL to *p, moves *p past them; returns where the copy starts. */
static char *copy_field(char **p, const char *s, size_t n)
{
    char *start = *p;
    if (n > 0)
        memcpy(start, s, n);
    start[n] = '\0';
    *p = start + n + 1;
    return start;
}

struct moat_access_req *moat_access_req_new(const char *method, int http_minor,
                                            const char *target, size_t target_len,
                                            const char *referer, size_t referer_len,
                                            const char *user_agent, size_t user_agent_len)
{
    if (target_len > MOAT_ACCESSLOG_TARGET_MAX)
        target_len = MOAT_ACCESSLOG_TARGET_MAX;
    if (referer == NULL)
        referer_len = 0;
    if (user_agent == NULL)
        user_agent_len = 0;
    if (referer_len > MOAT_ACCESSLOG_FIELD_MAX)
        referer_len = MOAT_ACCESSLOG_FIELD_MAX;
    if (user_agent_len > MOAT_ACCESSLOG_FIELD_MAX)
        user_agent_len = MOAT_ACCESSLOG_FIELD_MAX;
    struct moat_access_req *r = malloc(sizeof(*r) + target_len + referer_len + user_agent_len + 3);
    if (r == NULL)
        return NULL;
    r->method = method;
    r->http_minor = http_minor;
    char *p = r->data;
    r->target = copy_field(&p, target, target_len);
    r->target_len = target_len;
    char *copy = copy_field(&p, referer, referer_len);
    r->referer = referer_len > 0 ? copy : NULL; /* absent and empty are both "-" */
    r->referer_len = referer_len;
    copy = copy_field(&p, user_agent, user_agent_len);
    r->user_agent = user_agent_len > 0 ? copy : NULL;
    r->user_agent_len = user_agent_len;
    return r;
}

/* ---- escaping ------------------------------------------------------------------------------ */

size_t moat_accesslog_escape_text(char *out, size_t cap, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        /* The set nginx's ngx_http_log_escape() escapes: controls, '"', '\\', DEL and above. */
        if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') {
            if (cap - o < 4)
                break;
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex_upper[ch >> 4];
            out[o++] = hex_upper[ch & 15];
        } else {
            if (cap - o < 1)
                break;
            out[o++] = (char)ch;
        }
    }
    return o;
}

/* Length of the well-formed UTF-8 sequence starting at s[0] (RFC 3629 §4, the table of
 * Unicode's §3.9), or 0 if it is ill-formed or cut short. s[0] >= 0x80. */
static size_t utf8_seq_len(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf; /* the allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0; /* no overlong forms */
        else if (c == 0xed)
            hi = 0x9f; /* no surrogates U+D800..U+DFFF */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90; /* no overlong forms */
        else if (c == 0xf4)
            hi = 0x8f; /* nothing above U+10FFFF */
    } else {
        return 0; /* a continuation byte, an overlong lead (C0, C1) or F5..FF */
    }
    if (len < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

size_t moat_accesslog_escape_json(char *out, size_t cap, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        unsigned char ch = u[i];
        if (ch == '"' || ch == '\\') {
            if (cap - o < 2)
                break;
            out[o++] = '\\';
            out[o++] = (char)ch;
            i++;
            continue;
        }
        if (ch >= 0x20 && ch < 0x7f) {
            if (cap - o < 1)
                break;
            out[o++] = (char)ch;
            i++;
            continue;
        }
        size_t n = ch >= 0x80 ? utf8_seq_len(u + i, len - i) : 0;
        if (n > 0) {
            if (cap - o < n)
                break;
            memcpy(out + o, u + i, n);
            o += n;
            i += n;
            continue;
        }
        /* Controls (RFC 8259 §7 requires them escaped), DEL, and bytes that are not UTF-8. */
        if (cap - o < 6)
            break;
        memcpy(out + o, "\\u00", 4);
        out[o + 4] = hex_upper[ch >> 4];
        out[o + 5] = hex_upper[ch & 15];
        o += 6;
        i++;
    }
    return o;
}

/* ---- lines --------------------------------------------------------------------------------- */

/* Output into the caller's buffer. The caller's cap is large enough for every bounded field, so
 * a cut only happens on a broken promise; the line then stays a line (see finish()). */
struct out {
    char *buf; /* borrowed */
    size_t cap; /* bytes usable, one kept back for the final '\n' */
    size_t len;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (n > o->cap - o->len)
        n = o->cap - o->len;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_u64(struct out *o, uint64_t v)
{
    char digits[24];
    int n = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)v);
    put(o, digits, (size_t)n);
}

/* Escaped text as nginx logs it, cut at max input bytes; "-" for NULL or empty (nginx's empty
 * variable). */
static void put_text(struct out *o, const char *s, size_t len, size_t max)
{
    if (s == NULL || len == 0) {
        put(o, "-", 1);
        return;
    }
    o->len += moat_accesslog_escape_text(o->buf + o->len, o->cap - o->len, s,
                                         len < max ? len : max);
}

/* A JSON value: a string, or null for NULL. */
static void put_json(struct out *o, const char *s, size_t len, size_t max)
{
    if (s == NULL) {
        put(o, "null", 4);
        return;
    }
    put(o, "\"", 1);
    if (o->cap - o->len > 1) /* keep room for the closing quote */
        o->len += moat_accesslog_escape_json(o->buf + o->len, o->cap - o->len - 1, s,
                                             len < max ? len : max);
    put(o, "\"", 1);
}

static size_t len_of(const char *s)
{
    return s != NULL ? strlen(s) : 0;
}

static void split_time(int64_t ms, struct tm *tm, unsigned *millis)
{
    time_t secs = (time_t)(ms / 1000);
    int64_t rest = ms % 1000;
    if (rest < 0) {
        rest += 1000;
        secs--;
    }
    gmtime_r(&secs, tm);
    *millis = (unsigned)rest;
}

/* nginx's $time_local, here always in UTC: "10/Oct/2026:13:55:36 +0000". Month names are
 * English whatever the locale, as nginx's are. */
static void put_clf_time(struct out *o, int64_t ms)
{
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    unsigned millis;
    split_time(ms, &tm, &millis);
    char buf[40];
    int n = snprintf(buf, sizeof(buf), "%02d/%s/%04d:%02d:%02d:%02d +0000", tm.tm_mday,
                     months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    put(o, buf, (size_t)n);
}

/* RFC 3339 in UTC with milliseconds: "2026-10-10T13:55:36.123Z". */
static void put_rfc3339(struct out *o, int64_t ms)
{
    struct tm tm;
    unsigned millis;
    split_time(ms, &tm, &millis);
    char buf[40];
    int n = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
    put(o, buf, (size_t)n);
}

/* The combined format: $remote_addr - - [$time_local] "$request" $status $body_bytes_sent
 * "$http_referer" "$http_user_agent". */
static void put_combined(struct out *o, const struct moat_access_rec *r)
{
    const struct moat_access_req *q = r->req;
    put_text(o, r->client_ip, len_of(r->client_ip), SHORT_MAX);
    put(o, " - - [", 6);
    put_clf_time(o, r->time_ms);
    put(o, "] \"", 3);
    if (q != NULL) {
        put_text(o, q->method, len_of(q->method), SHORT_MAX);
        put(o, " ", 1);
        put_text(o, q->target, q->target_len, MOAT_ACCESSLOG_TARGET_MAX);
        put_str(o, q->http_minor == 0 ? " HTTP/1.0" : " HTTP/1.1");
    } else {
        put(o, "-", 1);
    }
    put(o, "\" ", 2);
    put_u64(o, (uint64_t)(r->status > 0 ? r->status : 0));
    put(o, " ", 1);
    put_u64(o, r->bytes_out);
    put(o, " \"", 2);
    put_text(o, q != NULL ? q->referer : NULL, q != NULL ? q->referer_len : 0,
             MOAT_ACCESSLOG_FIELD_MAX);
    put(o, "\" \"", 3);
    put_text(o, q != NULL ? q->user_agent : NULL, q != NULL ? q->user_agent_len : 0,
             MOAT_ACCESSLOG_FIELD_MAX);
    put(o, "\"", 1);
}

static void put_moat(struct out *o, const struct moat_access_rec *r)
{
    put_combined(o, r);
    char secs[32];
    int n = snprintf(secs, sizeof(secs), " %llu.%03u ",
                     (unsigned long long)(r->duration_ms / 1000), (unsigned)(r->duration_ms % 1000));
    put(o, secs, (size_t)n);
    put_text(o, r->upstream, len_of(r->upstream), SHORT_MAX);
    put(o, " ", 1);
    put_text(o, r->request_id, len_of(r->request_id), MOAT_ACCESSLOG_REQID_MAX);
}

static void put_key(struct out *o, const char *key)
{
    put(o, ",\"", 2);
    put_str(o, key);
    put(o, "\":", 2);
}

static void put_json_str(struct out *o, const char *key, const char *s, size_t len, size_t max)
{
    put_key(o, key);
    put_json(o, s, len, max);
}

static void put_json_u64(struct out *o, const char *key, uint64_t v)
{
    put_key(o, key);
    put_u64(o, v);
}

static void put_jsonl(struct out *o, const struct moat_access_rec *r)
{
    const struct moat_access_req *q = r->req;
    put(o, "{\"time\":\"", 9);
    put_rfc3339(o, r->time_ms);
    put(o, "\"", 1);
    put_json_str(o, "client", r->client_ip, len_of(r->client_ip), SHORT_MAX);
    put_json_str(o, "method", q != NULL ? q->method : NULL, q != NULL ? len_of(q->method) : 0,
                 SHORT_MAX);
    put_json_str(o, "target", q != NULL ? q->target : NULL, q != NULL ? q->target_len : 0,
                 MOAT_ACCESSLOG_TARGET_MAX);
    put_json_str(o, "protocol",
                 q == NULL ? NULL : q->http_minor == 0 ? "HTTP/1.0" : "HTTP/1.1", 8, 8);
    put_key(o, "status");
    if (r->status > 0)
        put_u64(o, (uint64_t)r->status);
    else
        put(o, "null", 4);
    put_json_u64(o, "bytes_in", r->bytes_in);
    put_json_u64(o, "bytes_out", r->bytes_out);
    put_json_u64(o, "duration_ms", r->duration_ms);
    put_json_str(o, "upstream", r->upstream, len_of(r->upstream), SHORT_MAX);
    put_key(o, "upstream_ms");
    if (r->upstream != NULL && r->upstream_ms >= 0)
        put_u64(o, (uint64_t)r->upstream_ms);
    else
        put(o, "null", 4);
    put_json_str(o, "pool", r->pool, len_of(r->pool), SHORT_MAX);
    put_json_str(o, "referer", q != NULL ? q->referer : NULL, q != NULL ? q->referer_len : 0,
                 MOAT_ACCESSLOG_FIELD_MAX);
    put_json_str(o, "user_agent", q != NULL ? q->user_agent : NULL,
                 q != NULL ? q->user_agent_len : 0, MOAT_ACCESSLOG_FIELD_MAX);
    put_json_str(o, "tls_version", r->tls_version, len_of(r->tls_version), SHORT_MAX);
    put_json_str(o, "tls_cipher", r->tls_cipher, len_of(r->tls_cipher), SHORT_MAX);
    put_json_str(o, "sni", r->sni, r->sni_len, MOAT_ACCESSLOG_SNI_MAX);
    put_json_str(o, "request_id", r->request_id, len_of(r->request_id),
                 MOAT_ACCESSLOG_REQID_MAX);
    put(o, "}", 1);
}

size_t moat_accesslog_format(enum moat_cfg_access_format format, const struct moat_access_rec *r,
                             char *out, size_t cap)
{
    assert(cap >= MOAT_ACCESSLOG_LINE_MAX);
    struct out o = {out, cap - 1, 0};
    switch (format) {
    case MOAT_CFG_ACCESS_COMBINED:
        put_combined(&o, r);
        break;
    case MOAT_CFG_ACCESS_JSON:
        put_jsonl(&o, r);
        break;
    case MOAT_CFG_ACCESS_MOAT:
    default:
        put_moat(&o, r);
        break;
    }
    out[o.len++] = '\n';
    return o.len;
}
