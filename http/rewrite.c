/* http/rewrite.c: the heads moat forwards. Drops hop-by-hop fields (RFC 9110 §7.6.1), adds the
 * forwarding fields and Via, regenerates body framing, and serializes into caller-owned memory. */
#include "http/http.h"

#include <stdint.h>
#include <string.h>

#include "http/fields.h"

/* Serialization into the caller's buffer; once something does not fit, nothing more is written
 * and the result is reported unusable. */
struct out {
    char *buf; /* borrowed: the caller's */
    size_t cap, len;
    int is_full; /* something did not fit */
};

static void put(struct out *o, const char *s, size_t n)
{
    if (n == 0)
        return; /* s may be NULL then (a request without Host), which memcpy() must not see */
    if (o->is_full || n > o->cap - o->len) {
        o->is_full = 1;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_u64(struct out *o, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[sizeof(digits) - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(o, digits + sizeof(digits) - n, n);
}

static const struct moat_http_field *find(const struct moat_http_head *h, const char *name)
{
    for (size_t i = 0; i < h->n_fields; i++)
        if (moat_http_field_is(&h->fields[i], name))
            return &h->fields[i];
    return NULL;
}

/* How many fields named @name have a non-empty value. */
static size_t count_values(const struct moat_http_head *h, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < h->n_fields; i++)
        n += moat_http_field_is(&h->fields[i], name) && h->fields[i].value_len > 0;
    return n;
}

/* The non-empty values of every field named @name joined by ", ": RFC 9110 §5.3 makes that
 * equivalent to the separate lines. */
static void put_values(struct out *o, const struct moat_http_head *h, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < h->n_fields; i++) {
        const struct moat_http_field *f = &h->fields[i];
        if (!moat_http_field_is(f, name) || f->value_len == 0)
            continue;
        if (n++ > 0)
            put(o, ", ", 2);
        put(o, f->value, f->value_len);
    }
}

/* Starts a field line named as the peer spelled it (@as_sent), or @name if it sent none. */
static void put_name(struct out *o, const struct moat_http_field *as_sent, const char *name)
{
    if (as_sent != NULL)
        put(o, as_sent->name, as_sent->name_len);
    else
        put_str(o, name);
    put(o, ": ", 2);
}

static void put_field(struct out *o, const struct moat_http_field *f)
{
    put(o, f->name, f->name_len);
    put(o, ":", 1);
    if (f->value_len > 0) {
        put(o, " ", 1);
        put(o, f->value, f->value_len);
    }
    put(o, MOAT_HTTP_CRLF, 2);
}

static int is_one_of(const struct moat_http_field *f, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (moat_http_field_is(f, names[i]))
            return 1;
    return 0;
}

/* RFC 9110 §7.6.1: fields that only concern one connection, plus those addressed to proxies
 * (§11.7) and Trailer (§6.6.2, end-to-end, but moat drops the trailers it describes). */
static const char *const hop_by_hop[] = {
    "Connection",          /* its tokens name more, see moat_http_is_named_by_connection() */
    "Keep-Alive",          /* parameters of the client's connection */
    "Proxy-Connection",    /* pre-standard Connection */
    "TE",                  /* what the sender accepts on this hop */
    "Trailer",             /* announces trailers, which moat drops */
    "Transfer-Encoding",   /* moat re-frames every body */
    "Upgrade",             /* re-added when moat itself asks for the upgrade */
    "Proxy-Authorization", /* credentials for a proxy, not for the backend */
    "Proxy-Authenticate",  /* a proxy's challenge */
};
#define N_HOP_BY_HOP (sizeof(hop_by_hop) / sizeof(hop_by_hop[0]))

/* Request fields moat writes itself, from the parsed head and the peer. */
static const char *const req_regenerated[] = {
    "Host", "Content-Length", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Via",
    "Client-Cert", "Client-Cert-Chain",
};
#define N_REQ_REGENERATED (sizeof(req_regenerated) / sizeof(req_regenerated[0]))

/* The request target in origin-form (RFC 9112 §3.2.1): the backend is an origin server. */
static void put_origin_form(struct out *o, const struct moat_http_head *h)
{
    const char *authority, *rest;
    size_t authority_len, rest_len;
    if (!moat_http_target_split(h->target, h->target_len, &authority, &authority_len, &rest,
                                &rest_len)) {
        put(o, h->target, h->target_len); /* origin-form or "*" already */
        return;
    }
    /* RFC 9112 §3.2.4: server-wide OPTIONS in absolute-form becomes "*". */
    if (rest_len == 0 && h->method == MOAT_HTTP_M_OPTIONS) {
        put(o, "*", 1);
        return;
    }
    /* §3.2.1: an empty path is sent as "/". */
    if (rest_len == 0 || rest[0] != '/')
        put(o, "/", 1);
    put(o, rest, rest_len);
}

int moat_http_request_id_is_sane(const char *v, size_t len)
{
    if (len == 0 || len > MOAT_HTTP_REQUEST_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)v[i] < 0x21 || (unsigned char)v[i] > 0x7e)
            return 0;
    return 1;
}

int moat_http_request_id_get(const struct moat_http_head *h, const char **v, size_t *len)
{
    const struct moat_http_field *found = NULL;
    for (size_t i = 0; i < h->n_fields; i++) {
        if (!moat_http_field_is(&h->fields[i], "X-Request-Id"))
            continue;
        if (found != NULL)
            return 0; /* which one would the backend believe? Neither. */
        found = &h->fields[i];
    }
    if (found == NULL || !moat_http_request_id_is_sane(found->value, found->value_len))
        return 0;
    *v = found->value;
    *len = found->value_len;
    return 1;
}

long moat_http_request_head_write(const struct moat_http_head *h, const struct moat_http_fwd *fwd,
                                  char *out, size_t cap)
{
    struct out o = {out, cap, 0, 0};
    put_str(&o, h->method_name);
    put(&o, " ", 1);
    put_origin_form(&o, h);
    put_str(&o, " HTTP/1.1\r\n");
    /* RFC 9112 §3.2: Host first; an absolute-form target's authority replaces it (§3.2.2). An
     * HTTP/1.0 request may lack both: then Host is empty, as for a URI without authority. */
    put_name(&o, find(h, "Host"), "Host");
    put(&o, h->host, h->host_len);
    put(&o, MOAT_HTTP_CRLF, 2);

    for (size_t i = 0; i < h->n_fields; i++) {
        const struct moat_http_field *f = &h->fields[i];
        if (is_one_of(f, hop_by_hop, N_HOP_BY_HOP) ||
            is_one_of(f, req_regenerated, N_REQ_REGENERATED))
            continue;
        /* Tested before the Connection tokens: a client cannot make moat strip Host, the
         * framing or the forwarding fields, all of which are decided above or below. */
        if (fwd->request_id != NULL && moat_http_field_is(f, "X-Request-Id"))
            continue; /* replaced below */
        if (moat_http_field_is(f, "Forwarded")) {
            if (fwd->peer_is_trusted)
                put_field(&o, f);
            continue;
        }
        if (moat_http_is_named_by_connection(h, f->name, f->name_len))
            continue;
        put_field(&o, f);
    }

    /* RFC 9112 §6.1, §6.2: the framing is regenerated from what was parsed, never copied, so
     * the backend cannot read the body differently from moat ("Content-Length:  003 "). */
    if (h->framing == MOAT_HTTP_BODY_LENGTH) {
        put_name(&o, find(h, "Content-Length"), "Content-Length");
        put_u64(&o, h->content_length);
        put(&o, MOAT_HTTP_CRLF, 2);
    } else if (h->framing == MOAT_HTTP_BODY_CHUNKED) {
        put_name(&o, find(h, "Transfer-Encoding"), "Transfer-Encoding");
        put_str(&o, "chunked\r\n");
    }

    /* Forwarding fields: a trusted proxy's chain is extended, anyone else's claims replaced. */
    int trusted = fwd->peer_is_trusted;
    put_name(&o, find(h, "X-Forwarded-For"), "X-Forwarded-For");
    if (trusted && count_values(h, "X-Forwarded-For") > 0) {
        put_values(&o, h, "X-Forwarded-For");
        put(&o, ", ", 2);
    }
    put_str(&o, fwd->client_addr);
    put(&o, MOAT_HTTP_CRLF, 2);

    put_name(&o, find(h, "X-Forwarded-Proto"), "X-Forwarded-Proto");
    if (trusted && count_values(h, "X-Forwarded-Proto") > 0)
        put_values(&o, h, "X-Forwarded-Proto");
    else
        put_str(&o, "https");
    put(&o, MOAT_HTTP_CRLF, 2);

    if (trusted && count_values(h, "X-Forwarded-Host") > 0) {
        put_name(&o, find(h, "X-Forwarded-Host"), "X-Forwarded-Host");
        put_values(&o, h, "X-Forwarded-Host");
        put(&o, MOAT_HTTP_CRLF, 2);
    } else if (h->host_len > 0) {
        put_name(&o, find(h, "X-Forwarded-Host"), "X-Forwarded-Host");
        put(&o, h->host, h->host_len);
        put(&o, MOAT_HTTP_CRLF, 2);
    }

    if (fwd->request_id != NULL) {
        put_name(&o, find(h, "X-Request-Id"), "X-Request-Id");
        put_str(&o, fwd->request_id);
        put(&o, MOAT_HTTP_CRLF, 2);
    }

    if (fwd->client_cert != NULL) {
        put_str(&o, "Client-Cert: ");
        put_str(&o, fwd->client_cert);
        put(&o, MOAT_HTTP_CRLF, 2);
    }
    if (fwd->client_cert_chain != NULL) {
        put_str(&o, "Client-Cert-Chain: ");
        put_str(&o, fwd->client_cert_chain);
        put(&o, MOAT_HTTP_CRLF, 2);
    }

    /* RFC 9110 §7.6.3: a gateway MUST add Via to requests it forwards, after earlier hops. */
    put_name(&o, find(h, "Via"), "Via");
    if (count_values(h, "Via") > 0) {
        put_values(&o, h, "Via");
        put(&o, ", ", 2);
    }
    put_str(&o, "1.1 moat\r\n");

    /* RFC 9110 §7.8: Upgrade is hop-by-hop, so asking the backend is moat's own request. */
    if (h->is_upgrade) {
        put_str(&o, "Connection: upgrade\r\n");
        put_name(&o, find(h, "Upgrade"), "Upgrade");
        put_values(&o, h, "Upgrade");
        put(&o, MOAT_HTTP_CRLF, 2);
    }
    put(&o, MOAT_HTTP_CRLF, 2);
    return o.is_full ? -1 : (long)o.len;
}

long moat_http_response_head_write(const struct moat_http_head *h, enum moat_http_method req_method,
                                   int client_minor, int client_keep_alive, char *out, size_t cap,
                                   struct moat_http_resp_plan *plan)
{
    struct out o = {out, cap, 0, 0};
    put_str(&o, "HTTP/1.1 ");
    put_u64(&o, (uint64_t)h->status);
    put(&o, " ", 1); /* RFC 9112 §4: the space stays even without a reason phrase */
    put(&o, h->reason, h->reason_len);
    put(&o, MOAT_HTTP_CRLF, 2);

    struct moat_http_resp_plan pl = {MOAT_HTTP_BODY_NONE, client_keep_alive};
    int is_tunnel = h->status == 101 ||
                    (req_method == MOAT_HTTP_M_CONNECT && h->status >= 200 && h->status < 300);
    int is_interim = h->status < 200 && !is_tunnel;
    /* RFC 9110 §8.6: HEAD and 304 responses may state the length the body would have; 1xx and
     * 204 must not carry Content-Length at all, nor a 2xx to CONNECT (§9.3.6). */
    int keeps_length = (req_method == MOAT_HTTP_M_HEAD || h->status == 304) && !is_interim &&
                       find(h, "Content-Length") != NULL;
    if (is_tunnel) {
        pl.is_keep_alive = 0; /* the connection is handed over */
    } else if (is_interim || h->status == 204 || h->status == 304 ||
               req_method == MOAT_HTTP_M_HEAD) {
        pl.framing = MOAT_HTTP_BODY_NONE;
    } else if (h->framing == MOAT_HTTP_BODY_LENGTH) {
        pl.framing = MOAT_HTTP_BODY_LENGTH;
    } else if (client_minor >= 1) {
        pl.framing = MOAT_HTTP_BODY_CHUNKED; /* chunked or EOF-delimited from the backend */
    } else {
        /* RFC 9112 §6.1: never chunked toward HTTP/1.0; the close delimits the body. */
        pl.framing = MOAT_HTTP_BODY_EOF;
        pl.is_keep_alive = 0;
    }

    for (size_t i = 0; i < h->n_fields; i++) {
        const struct moat_http_field *f = &h->fields[i];
        /* Content-Length is regenerated below; with the framing fields dropped first, no
         * Connection token can remove what the client needs to read the body. */
        if (is_one_of(f, hop_by_hop, N_HOP_BY_HOP) || moat_http_field_is(f, "Content-Length"))
            continue;
        if (moat_http_is_named_by_connection(h, f->name, f->name_len))
            continue;
        put_field(&o, f);
    }

    if (keeps_length || pl.framing == MOAT_HTTP_BODY_LENGTH) {
        put_name(&o, find(h, "Content-Length"), "Content-Length");
        put_u64(&o, h->content_length);
        put(&o, MOAT_HTTP_CRLF, 2);
    } else if (pl.framing == MOAT_HTTP_BODY_CHUNKED) {
        put_str(&o, "Transfer-Encoding: chunked\r\n");
    }

    if (h->status == 101) {
        put_str(&o, "Connection: upgrade\r\n");
        if (find(h, "Upgrade") != NULL) {
            put_name(&o, find(h, "Upgrade"), "Upgrade");
            put_values(&o, h, "Upgrade");
            put(&o, MOAT_HTTP_CRLF, 2);
        }
    } else if (!is_interim && !is_tunnel) {
        /* RFC 9112 §9.6: announce the close; §9.3: HTTP/1.0 persists only when told so. */
        if (!pl.is_keep_alive)
            put_str(&o, "Connection: close\r\n");
        else if (client_minor == 0)
            put_str(&o, "Connection: keep-alive\r\n");
    }
    put(&o, MOAT_HTTP_CRLF, 2);
    *plan = pl;
    return o.is_full ? -1 : (long)o.len;
}
