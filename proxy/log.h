/* proxy/log.h: moat's error log (stderr, level-tagged, one line per event) and access log. */
#ifndef MOAT_LOG_H
#define MOAT_LOG_H
#include <stdarg.h>

enum moat_log_level {
    MOAT_LOG_ERROR = 0,
    MOAT_LOG_WARN = 1,
    MOAT_LOG_INFO = 2,
    MOAT_LOG_DEBUG = 3,
};

extern int moat_log_level; /* set once at start, read by every thread */

/* The level test comes first, so arguments of suppressed lines are never evaluated. */
#define moat_log(level, ...)                                                                       \
    do {                                                                                           \
        if ((level) <= moat_log_level)                                                             \
            moat_log_write((level), __VA_ARGS__);                                                  \
    } while (0)

/* Writes "<UTC time> <level> <message>\n" to stderr with one write(2), so lines of different
 * threads never interleave. */
void moat_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes one access-log line (already formatted, ending in '\n') to stdout with one write(2). */
void moat_log_access(const char *line, int len);

#endif
