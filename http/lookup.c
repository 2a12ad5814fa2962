/* http/lookup.c: reading a field or a cookie of a parsed head, and adding a field to a head
 * already written; pure functions on spans. */
#include <string.h>

#include "http/fields.h"
#include "http/http.h"

const struct moat_http_field *moat_http_field_find(const struct moat_http_head *h,
                                                   const char *name)
{
    for (size_t i = 0; i < h->n_fields; i++)
        if (moat_http_field_is(&h->fields[i], name))
            return &h->fields[i];
    return NULL;
}

/* RFC 6265 §5.4 sends one Cookie field ("a=1; b=2"); HTTP/2 may split it, and a client may send
 * several: every Cookie field is searched, first match wins. */
int moat_http_cookie_get(const struct moat_http_head *h, const char *name, const char **value,
                         size_t *len)
{
    size_t name_len = strlen(name);
    for (size_t i = 0; i < h->n_fields; i++) {
        const struct moat_http_field *f = &h->fields[i];
        if (!moat_http_field_is(f, "Cookie"))
            continue;
        size_t pos = 0;
        while (pos < f->value_len) {
            size_t end = pos;
            while (end < f->value_len && f->value[end] != ';')
                end++;
            size_t a = pos;
            while (a < end && (f->value[a] == ' ' || f->value[a] == '\t'))
                a++;
            const char *eq = memchr(f->value + a, '=', end - a);
            if (eq != NULL && (size_t)(eq - (f->value + a)) == name_len &&
                memcmp(f->value + a, name, name_len) == 0) { /* cookie names are case-sensitive */
                const char *v = eq + 1;
                size_t vlen = (size_t)(f->value + end - v);
                while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                    vlen--;
                if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') { /* a quoted cookie-value */
                    v++;
                    vlen -= 2;
                }
                *value = v;
                *len = vlen;
                return 1;
            }
            pos = end + 1;
        }
    }
    return 0;
}

long moat_http_head_add_field(char *head, size_t len, size_t cap, const char *name,
                              const char *value)
{
    size_t nlen = strlen(name), vlen = strlen(value);
    if (len < 4 || memcmp(head + len - 4, "\r\n\r\n", 4) != 0)
        return -1;
    size_t add = nlen + 2 + vlen + 2;
    if (len + add > cap)
        return -1;
    char *at = head + len - 2; /* before the empty line that ends the head */
    memcpy(at, name, nlen);
    at += nlen;
    memcpy(at, ": ", 2);
    at += 2;
    memcpy(at, value, vlen);
    at += vlen;
    memcpy(at, "\r\n\r\n", 4);
    return (long)(len + add);
}
