/* http/fields.c: field name and list helpers shared inside http/; pure functions on spans. */
#include "http/fields.h"

#include <string.h>
#include <strings.h>

int moat_http_token_is(const char *s, size_t len, const char *name)
{
    return strlen(name) == len && strncasecmp(s, name, len) == 0;
}

int moat_http_field_is(const struct moat_http_field *f, const char *name)
{
    return moat_http_token_is(f->name, f->name_len, name);
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

int moat_http_list_next(const char *value, size_t len, size_t *pos, const char **elem,
                        size_t *elem_len)
{
    size_t i = *pos;
    while (i < len) {
        size_t start = i;
        while (i < len && value[i] != ',')
            i++;
        size_t end = i;
        if (i < len)
            i++; /* past the comma */
        while (start < end && is_ows(value[start]))
            start++;
        while (end > start && is_ows(value[end - 1]))
            end--;
        if (end > start) {
            *pos = i;
            *elem = value + start;
            *elem_len = end - start;
            return 1;
        }
    }
    *pos = len;
    return 0;
}

int moat_http_is_named_by_connection(const struct moat_http_head *h, const char *name,
                                     size_t name_len)
{
    for (size_t i = 0; i < h->n_fields; i++) {
        const struct moat_http_field *c = &h->fields[i];
        if (!moat_http_field_is(c, "Connection"))
            continue;
        size_t pos = 0;
        const char *tok;
        size_t tok_len;
        while (moat_http_list_next(c->value, c->value_len, &pos, &tok, &tok_len))
            if (tok_len == name_len && strncasecmp(tok, name, name_len) == 0)
                return 1;
    }
    return 0;
}

static size_t prefix_len(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && strncasecmp(s, prefix, n) == 0 ? n : 0;
}

int moat_http_target_split(const char *target, size_t len, const char **authority,
                           size_t *authority_len, const char **rest, size_t *rest_len)
{
    size_t skip = prefix_len(target, len, "http://");
    if (skip == 0)
        skip = prefix_len(target, len, "https://");
    if (skip == 0)
        return 0;
    size_t end = skip;
    while (end < len && target[end] != '/' && target[end] != '?' && target[end] != '#')
        end++;
    *authority = target + skip;
    *authority_len = end - skip;
    *rest = target + end;
    *rest_len = len - end;
    return 1;
}

int moat_http_authority_is_valid(const char *s, size_t len)
{
    /* RFC 3986 §3.2.2: reg-name = unreserved / pct-encoded / sub-delims; IP-literal adds the
     * brackets and ':' (which also separates the port). '@' would mean userinfo, which RFC 9110
     * §4.2.4 forbids in http(s) URIs. */
    static const char extra[] = "-._~%!$&'()*+,;=:[]";
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int is_alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!is_alnum && (c == '\0' || strchr(extra, c) == NULL))
            return 0;
    }
    return 1;
}
