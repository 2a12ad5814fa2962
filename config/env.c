/* config/env.c: ${VAR} and ${VAR:-default} expansion, so one file can serve several hosts
 * (${CERT_DIR}/site.pem) and keep secrets' paths out of it. Reads the environment; writes nothing. */
#include "config/env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_name_start(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

static int is_name_char(char ch)
{
    return is_name_start(ch) || (ch >= '0' && ch <= '9');
}

/* Appends len bytes to the growing *buf (capacity *cap, *used in use, kept NUL-terminated). */
static int append(char **buf, size_t *used, size_t *cap, const char *src, size_t len)
{
    if (*used + len + 1 > *cap) {
        size_t want = (*used + len + 1) * 2;
        char *grown = realloc(*buf, want);
        if (grown == NULL)
            return -1;
        *buf = grown;
        *cap = want;
    }
    memcpy(*buf + *used, src, len);
    *used += len;
    (*buf)[*used] = '\0';
    return 0;
}

/* The reference whose "${" starts at p: "${NAME}" or "${NAME:-default}". Sets the name's length
 * and, for the default form, where the default starts and its length (else *dflt = NULL).
 * Returns the reference's whole length, or -1 with why set. */
static int reference_parse(const char *p, size_t *name_len, const char **dflt, size_t *dflt_len,
                           char *why, size_t why_len)
{
    const char *name = p + 2;
    const char *close = strchr(name, '}');
    if (close == NULL) {
        snprintf(why, why_len, "'${' without a closing '}' (write '$${' for a literal '${')");
        return -1;
    }
    const char *end = name; /* the name ends at '}' or at ":-" */
    while (end < close && !(end[0] == ':' && end[1] == '-'))
        end++;
    int ok = is_name_start(*name);
    for (const char *q = name; ok && q < end; q++)
        ok = is_name_char(*q);
    if (!ok || end - name > 255) {
        snprintf(why, why_len,
                 "'${%.*s}': a variable name is letters, digits and '_', not starting with a "
                 "digit",
                 (int)(close - name > 64 ? 64 : close - name), name);
        return -1;
    }
    *name_len = (size_t)(end - name);
    *dflt = end < close ? end + 2 : NULL;
    *dflt_len = end < close ? (size_t)(close - end - 2) : 0;
    return (int)(close + 1 - p);
}

int moat_cfg_env_expand(const char *text, char **out, char *why, size_t why_len)
{
    size_t used = 0, cap = 0;
    char *buf = NULL;
    *out = NULL;
    if (append(&buf, &used, &cap, "", 0) != 0)
        goto out_of_memory;
    const char *p = text;
    while (*p != '\0') {
        const char *dollar = strchr(p, '$');
        if (dollar == NULL)
            dollar = p + strlen(p);
        if (append(&buf, &used, &cap, p, (size_t)(dollar - p)) != 0)
            goto out_of_memory;
        p = dollar;
        if (*p == '\0')
            break;
        if (strncmp(p, "$${", 3) == 0) { /* the escape: a literal "${" */
            if (append(&buf, &used, &cap, "${", 2) != 0)
                goto out_of_memory;
            p += 3;
        } else if (strncmp(p, "${", 2) == 0) {
            size_t name_len, dflt_len;
            const char *dflt;
            int len = reference_parse(p, &name_len, &dflt, &dflt_len, why, why_len);
            if (len < 0)
                goto out_fail;
            char name[256];
            memcpy(name, p + 2, name_len);
            name[name_len] = '\0';
            const char *value = getenv(name);
            /* As in a shell: ":-" stands in when the variable is unset or empty. */
            if (dflt != NULL && (value == NULL || *value == '\0')) {
                value = dflt;
            } else if (value == NULL) {
                snprintf(why, why_len,
                         "environment variable %s is not set (give a default with "
                         "${%s:-default})",
                         name, name);
                goto out_fail;
            }
            size_t value_len = value == dflt ? dflt_len : strlen(value);
            if (append(&buf, &used, &cap, value, value_len) != 0)
                goto out_of_memory;
            p += len;
        } else { /* a '$' on its own is just a character */
            if (append(&buf, &used, &cap, "$", 1) != 0)
                goto out_of_memory;
            p++;
        }
    }
    *out = buf;
    return 0;
out_of_memory:
    snprintf(why, why_len, "out of memory");
out_fail:
    free(buf);
    return -1;
}
