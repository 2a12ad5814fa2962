/* config/model.h: what config/'s loaders share: a model with every default set, and array
 * growth. Not for other modules. */
#ifndef MOAT_CONFIG_MODEL_H
#define MOAT_CONFIG_MODEL_H
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

#define MOAT_CFG_MAX_WORKERS 256
#define MOAT_CFG_MAX_DRAIN_MS 3600000 /* --drain-timeout and timeouts.drain: at most an hour */

/* A configuration holding every default; default_workers is clamped to 1..MAX_WORKERS. */
struct moat_cfg *moat_cfg_new(unsigned default_workers);

/* Makes room for element n of an array holding n elements (4, 8, 16, ... slots). Returns the
 * array to use (possibly moved), or NULL when memory ran out (the old array is still valid). */
void *moat_cfg_grow(void *array, size_t n, size_t elem_size);

/* ---- settings both loaders share (settings.c): one range and one message per setting ---- */

enum moat_cfg_tunable_kind {
    MOAT_CFG_TUNE_DURATION, /* moat_cfg_duration_parse(); min 0 also takes "0" */
    MOAT_CFG_TUNE_SIZE,     /* moat_cfg_size_parse() */
    MOAT_CFG_TUNE_COUNT,    /* decimal digits only */
};

enum moat_cfg_tunable_type { MOAT_CFG_FIELD_U64, MOAT_CFG_FIELD_SIZE, MOAT_CFG_FIELD_UNSIGNED };

/* A number-valued setting: its flag, its YAML key, the field it sets and the range allowed. */
struct moat_cfg_tunable {
    const char *flag;    /* "--idle-timeout"; NULL: the file only */
    const char *section; /* "timeouts" or "limits"; NULL: a top-level key */
    const char *key;     /* "idle" */
    enum moat_cfg_tunable_kind kind;
    enum moat_cfg_tunable_type type; /* the C type of the field */
    size_t offset;                   /* of the field in struct moat_cfg */
    uint64_t min, max;               /* milliseconds, bytes or a count; inclusive */
};

/* The tunable named by a flag ("--max-headers"), or NULL. */
const struct moat_cfg_tunable *moat_cfg_tunable_by_flag(const char *flag);

/* The tunable at section.key (section NULL: top level), or NULL. */
const struct moat_cfg_tunable *moat_cfg_tunable_by_key(const char *section, const char *key);

/* The tunable after prev in section (prev NULL: the first), or NULL: to list a section's keys. */
const struct moat_cfg_tunable *moat_cfg_tunable_next(const char *section,
                                                     const struct moat_cfg_tunable *prev);

/* Parses value and stores it in cfg. Returns 0, or -1 with why set to "expected ..., got
 * 'value'" for the caller to prefix with the flag or the key. */
int moat_cfg_tunable_set(struct moat_cfg *cfg, const struct moat_cfg_tunable *t, const char *value,
                         char *why, size_t why_len);

/* "error", "warn", "info", "debug" -> MOAT_CFG_LOG_*; -1 for anything else. */
int moat_cfg_log_level_parse(const char *text);

/* "moat", "combined", "json" -> enum moat_cfg_access_format; -1 for anything else. */
int moat_cfg_access_format_parse(const char *text);

/* 1 if listeners on a and b would bind the same socket: SO_REUSEPORT would then split its
 * connections between the copies. Port 0 never clashes (each asks for its own free port). */
int moat_cfg_listen_clashes(const struct moat_cfg_hostport *a, const struct moat_cfg_hostport *b);

#endif
