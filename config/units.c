/* config/units.c: durations ("500ms", "30s", "5m") and sizes ("16k", "1m") as people write them. */
#include "config/config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A non-negative decimal number ("30", "2.5", ".5") at the start of text; *end is where it
 * stopped. Checked by hand first: strtod alone would also take "1e3", "0x10", "inf" and
 * leading spaces. */
static int leading_number(const char *text, double *value, const char **end)
{
    const char *p = text;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
        p++;
        digits++;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            p++;
            digits++;
        }
    }
    if (digits == 0 || p - text > 20)
        return -1;
    *value = strtod(text, NULL);
    *end = p;
    return 0;
}

int moat_cfg_duration_parse(const char *text, uint64_t *ms)
{
    static const struct {
        const char *unit;
        double ms;
    } units[] = {{"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    double v;
    const char *unit;
    if (leading_number(text, &v, &unit) != 0)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(unit, units[i].unit) != 0)
            continue;
        double total = v * units[i].ms;
        if (total < 1 || total > 24.0 * 3600000)
            return -1;
        *ms = (uint64_t)(total + 0.5);
        return 0;
    }
    return -1;
}

int moat_cfg_size_parse(const char *text, uint64_t *bytes)
{
    double v;
    const char *unit;
    if (leading_number(text, &v, &unit) != 0)
        return -1;
    double scale;
    if (strcmp(unit, "") == 0)
        scale = 1;
    else if (strcasecmp(unit, "k") == 0)
        scale = 1024.0;
    else if (strcasecmp(unit, "m") == 0)
        scale = 1024.0 * 1024;
    else if (strcasecmp(unit, "g") == 0)
        scale = 1024.0 * 1024 * 1024;
    else
        return -1;
    double total = v * scale;
    if (total > 1125899906842624.0 || (double)(uint64_t)total != total)
        return -1; /* beyond 2^50, or a fraction of a byte */
    *bytes = (uint64_t)total;
    return 0;
}
