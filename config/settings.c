/* config/settings.c: what the flag loader and the YAML loader share, so that a setting has one
 * range, one parser and one message whichever way it is given. */
#include "config/model.h"

#include <stdio.h>
#include <string.h>

#define FIELD(field) offsetof(struct moat_cfg, field)
#define DURATION(flag, key, field, min, max)                                                       \
    {flag, "timeouts", key, MOAT_CFG_TUNE_DURATION, MOAT_CFG_FIELD_U64, FIELD(field), min, max}
#define LIMIT(flag, key, kind, type, field, min, max)                                              \
    {flag, "limits", key, kind, type, FIELD(field), min, max}
#define DAY_MS (UINT64_C(24) * 3600 * 1000)

/* Keep in step with cli.c's usage text, docs/configuration.md and README.md. */
static const struct moat_cfg_tunable tunables[] = {
    {"--workers", NULL, "workers", MOAT_CFG_TUNE_COUNT, MOAT_CFG_FIELD_UNSIGNED, FIELD(workers), 1,
     MOAT_CFG_MAX_WORKERS},
    DURATION("--handshake-timeout", "handshake", handshake_timeout_ms, 1, DAY_MS),
    DURATION("--head-timeout", "head", head_timeout_ms, 1, DAY_MS),
    DURATION("--idle-timeout", "idle", idle_timeout_ms, 1, DAY_MS),
    DURATION("--body-timeout", "body", body_timeout_ms, 1, DAY_MS),
    DURATION("--connect-timeout", "connect", connect_timeout_ms, 1, DAY_MS),
    DURATION("--backend-timeout", "backend", backend_timeout_ms, 1, DAY_MS),
    DURATION("--pool-idle-timeout", "pool_idle", pool_idle_timeout_ms, 1, DAY_MS),
    DURATION("--tunnel-timeout", "tunnel", tunnel_timeout_ms, 1, DAY_MS),
    DURATION("--send-timeout", "send", send_timeout_ms, 1, DAY_MS),
    /* --drain-timeout keeps its own plain-seconds parser in cli.c; the file takes a duration. */
    DURATION(NULL, "drain", drain_timeout_ms, 0, MOAT_CFG_MAX_DRAIN_MS),
    LIMIT("--max-head-size", "head_size", MOAT_CFG_TUNE_SIZE, MOAT_CFG_FIELD_SIZE, max_head_bytes,
          1024, 1 << 20),
    LIMIT("--max-headers", "headers", MOAT_CFG_TUNE_COUNT, MOAT_CFG_FIELD_SIZE, max_headers, 1,
          10000),
    LIMIT("--max-target-size", "target_size", MOAT_CFG_TUNE_SIZE, MOAT_CFG_FIELD_SIZE,
          max_target_bytes, 64, 1 << 20),
    LIMIT("--max-body-size", "body_size", MOAT_CFG_TUNE_SIZE, MOAT_CFG_FIELD_U64, max_body_bytes, 0,
          UINT64_C(1) << 50),
    LIMIT("--max-connections", "connections", MOAT_CFG_TUNE_COUNT, MOAT_CFG_FIELD_SIZE,
          max_connections, 1, 1000000),
    LIMIT("--max-backend-connections", "backend_connections", MOAT_CFG_TUNE_COUNT,
          MOAT_CFG_FIELD_SIZE, max_backend_connections, 0, 1000000),
};

#define N_TUNABLES (sizeof(tunables) / sizeof(tunables[0]))

const struct moat_cfg_tunable *moat_cfg_tunable_by_flag(const char *flag)
{
    for (size_t i = 0; i < N_TUNABLES; i++)
        if (tunables[i].flag != NULL && strcmp(tunables[i].flag, flag) == 0)
            return &tunables[i];
    return NULL;
}

static int same_section(const char *a, const char *b)
{
    return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

const struct moat_cfg_tunable *moat_cfg_tunable_by_key(const char *section, const char *key)
{
    for (size_t i = 0; i < N_TUNABLES; i++)
        if (same_section(tunables[i].section, section) && strcmp(tunables[i].key, key) == 0)
            return &tunables[i];
    return NULL;
}

const struct moat_cfg_tunable *moat_cfg_tunable_next(const char *section,
                                                     const struct moat_cfg_tunable *prev)
{
    for (size_t i = prev == NULL ? 0 : (size_t)(prev - tunables) + 1; i < N_TUNABLES; i++)
        if (same_section(tunables[i].section, section))
            return &tunables[i];
    return NULL;
}

/* Decimal digits only: no sign, no spaces, no "1e3" or "0x10" (strtoull would take those).
 * Leading zeros are fine. Returns 0, or -1 (empty, not digits, or above max). */
static int count_parse(const char *text, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (*text == '\0')
        return -1;
    for (const char *p = text; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > max) /* also keeps the sum from overflowing on long inputs */
            return -1;
    }
    *out = v;
    return 0;
}

/* A duration as people write it: "0", "1ms", "10s", "5m", "24h". */
static void format_ms(uint64_t ms, char *out, size_t len)
{
    if (ms == 0)
        snprintf(out, len, "0");
    else if (ms % 3600000 == 0)
        snprintf(out, len, "%lluh", (unsigned long long)(ms / 3600000));
    else if (ms % 60000 == 0)
        snprintf(out, len, "%llum", (unsigned long long)(ms / 60000));
    else if (ms % 1000 == 0)
        snprintf(out, len, "%llus", (unsigned long long)(ms / 1000));
    else
        snprintf(out, len, "%llums", (unsigned long long)ms);
}

int moat_cfg_tunable_set(struct moat_cfg *cfg, const struct moat_cfg_tunable *t, const char *value,
                         char *why, size_t why_len)
{
    uint64_t v = 0;
    int ok;
    if (t->kind == MOAT_CFG_TUNE_DURATION)
        ok = (t->min == 0 && strcmp(value, "0") == 0) || moat_cfg_duration_parse(value, &v) == 0;
    else if (t->kind == MOAT_CFG_TUNE_SIZE)
        ok = moat_cfg_size_parse(value, &v) == 0;
    else
        ok = count_parse(value, t->max, &v) == 0;
    if (!ok || v < t->min || v > t->max) {
        if (t->kind == MOAT_CFG_TUNE_DURATION) {
            char min[32], max[32];
            format_ms(t->min, min, sizeof(min));
            format_ms(t->max, max, sizeof(max));
            snprintf(why, why_len,
                     "expected a duration from %s to %s (e.g. 500ms, 10s, 5m), got '%s'", min,
                     max, value);
        } else {
            snprintf(why, why_len, "expected %s from %llu to %llu, got '%s'",
                     t->kind == MOAT_CFG_TUNE_SIZE ? "a size (e.g. 16k, 1m)" : "a number",
                     (unsigned long long)t->min, (unsigned long long)t->max, value);
        }
        return -1;
    }
    char *field = (char *)cfg + t->offset;
    if (t->type == MOAT_CFG_FIELD_U64) {
        memcpy(field, &v, sizeof(v));
    } else if (t->type == MOAT_CFG_FIELD_SIZE) {
        size_t n = (size_t)v;
        memcpy(field, &n, sizeof(n));
    } else {
        unsigned n = (unsigned)v;
        memcpy(field, &n, sizeof(n));
    }
    return 0;
}

static int name_index(const char *const *names, size_t n, const char *text)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(text, names[i]) == 0)
            return (int)i;
    return -1;
}

int moat_cfg_log_level_parse(const char *text)
{
    static const char *const names[] = {
        [MOAT_CFG_LOG_ERROR] = "error",
        [MOAT_CFG_LOG_WARN] = "warn",
        [MOAT_CFG_LOG_INFO] = "info",
        [MOAT_CFG_LOG_DEBUG] = "debug",
    };
    return name_index(names, sizeof(names) / sizeof(names[0]), text);
}

int moat_cfg_access_format_parse(const char *text)
{
    static const char *const names[] = {
        [MOAT_CFG_ACCESS_MOAT] = "moat",
        [MOAT_CFG_ACCESS_COMBINED] = "combined",
        [MOAT_CFG_ACCESS_JSON] = "json",
    };
    return name_index(names, sizeof(names) / sizeof(names[0]), text);
}

int moat_cfg_listen_clashes(const struct moat_cfg_hostport *a, const struct moat_cfg_hostport *b)
{
    return a->port != 0 && a->port == b->port && strcmp(a->host, b->host) == 0;
}
