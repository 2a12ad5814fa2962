/* config/diag.h: the errors found in a configuration file, gathered so that all of them are
 * reported at once, in file order. config/-internal. */
#ifndef MOAT_CONFIG_DIAG_H
#define MOAT_CONFIG_DIAG_H
#include <stddef.h>

#define MOAT_CFG_DIAG_MAX 1000 /* errors kept; more are only counted */

struct moat_cfg_diag_entry {
    unsigned line, column; /* 1-based */
    size_t seq;            /* order of discovery: keeps the sort stable */
    char *text;            /* owned: "KEY: reason" */
};

struct moat_cfg_diag {
    struct moat_cfg_diag_entry *entries; /* owned array */
    size_t n_entries;
    size_t n_errors;       /* every error, kept or not (no memory, beyond the cap) */
};

/* Records "KEY: reason" at line:column. Never fails: an error that cannot be kept is counted. */
void moat_cfg_diag_add(struct moat_cfg_diag *d, unsigned line, unsigned column, const char *key,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Writes every error as "FILE:LINE:COLUMN: KEY: reason", sorted by position, one per line (no
 * final newline), into err. When err is too small the last line says how many were left out;
 * err is always NUL-terminated (err_len 0: nothing is written). */
void moat_cfg_diag_write(struct moat_cfg_diag *d, const char *file, char *err, size_t err_len);

void moat_cfg_diag_free(struct moat_cfg_diag *d); /* leaves it empty and reusable */

#endif
