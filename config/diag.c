/* config/diag.c: a configuration file's errors, kept until they are all known, then written
 * sorted, so a line's errors read top to bottom whatever order the checks ran in. */
#include "config/diag.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the last line of a cut-short list needs: "\n(4294967295 more errors not shown)". */
#define TAIL_RESERVE 48

/* Copies src to dst (room for 4 bytes per byte of src, plus 1) with control characters
 * written as escapes: a value quoted in a message may span lines ("a\nb" or a folded scalar),
 * and each error must stay on one line. */
static void copy_escaped(char *dst, const char *src)
{
    for (const unsigned char *p = (const unsigned char *)src; *p != '\0'; p++) {
        if (*p == '\n')
            dst += sprintf(dst, "\\n");
        else if (*p == '\t')
            dst += sprintf(dst, "\\t");
        else if (*p < 0x20 || *p == 0x7f)
            dst += sprintf(dst, "\\x%02x", *p);
        else
            *dst++ = (char)*p;
    }
    *dst = '\0';
}

void moat_cfg_diag_add(struct moat_cfg_diag *d, unsigned line, unsigned column, const char *key,
                       const char *fmt, ...)
{
    d->n_errors++;
    if (d->n_entries >= MOAT_CFG_DIAG_MAX)
        return;
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    size_t len = strlen(key) + 2 + strlen(reason);
    char *text = malloc(len * 4 + 1);
    struct moat_cfg_diag_entry *grown =
        text != NULL ? realloc(d->entries, (d->n_entries + 1) * sizeof(*grown)) : NULL;
    if (grown == NULL) {
        free(text);
        return;
    }
    copy_escaped(text, key);
    strcat(text, ": ");
    copy_escaped(text + strlen(text), reason);
    d->entries = grown;
    d->entries[d->n_entries] = (struct moat_cfg_diag_entry){line, column, d->n_entries, text};
    d->n_entries++;
}

static int by_position(const void *pa, const void *pb)
{
    const struct moat_cfg_diag_entry *a = pa, *b = pb;
    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    if (a->column != b->column)
        return a->column < b->column ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

void moat_cfg_diag_write(struct moat_cfg_diag *d, const char *file, char *err, size_t err_len)
{
    if (err_len == 0)
        return;
    err[0] = '\0';
    if (d->n_entries > 1)
        qsort(d->entries, d->n_entries, sizeof(*d->entries), by_position);
    size_t used = 0;
    size_t shown = 0;
    for (; shown < d->n_entries; shown++) {
        const struct moat_cfg_diag_entry *e = &d->entries[shown];
        const char *sep = shown > 0 ? "\n" : "";
        int len = snprintf(NULL, 0, "%s%s:%u:%u: %s", sep, file, e->line, e->column, e->text);
        int is_last = shown + 1 == d->n_errors;
        /* The first line goes in even if cut: a truncated error beats none. */
        if (shown > 0 && len >= 0 &&
            used + (size_t)len + (is_last ? 0 : TAIL_RESERVE) >= err_len)
            break;
        snprintf(err + used, err_len - used, "%s%s:%u:%u: %s", sep, file, e->line, e->column,
                 e->text);
        used += strlen(err + used);
    }
    if (shown < d->n_errors)
        snprintf(err + used, err_len - used, "\n(%zu more errors not shown)",
                 d->n_errors - shown);
}

void moat_cfg_diag_free(struct moat_cfg_diag *d)
{
    for (size_t i = 0; i < d->n_entries; i++)
        free(d->entries[i].text);
    free(d->entries);
    d->entries = NULL;
    d->n_entries = d->n_errors = 0;
}
