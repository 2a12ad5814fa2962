/* proxy/log.h: moat's error log (stderr, level-tagged, one line per event) and access log. */
#ifndef MOAT_LOG_H
#define MOAT_LOG_H
#include <stdarg.h>
#include <stddef.h>

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

/* Writes one access-log line (already formatted, ending in '\n') to the access-log sink with
 * one write(2), so lines of different threads never interleave (O_APPEND makes each write land
 * whole at the end of a file). Thread-safe; safe during moat_log_reopen(). */
void moat_log_access(const char *line, int len);

/* Chooses the access-log sink before any worker starts: NULL or "stdout", "stderr", or a file
 * path opened O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC, mode 0640 (less the umask). Returns 0, or -1
 * with err naming the file and the reason. Not thread-safe: call once, at start. */
int moat_log_access_open(const char *target, char *err, size_t err_len);

/* SIGUSR1 (logrotate): opens the access-log file's path again and puts the new file in place of
 * the old under the same descriptor number with dup3(2), which swaps them atomically: a worker
 * writing at that moment writes whole into the old file or the new one, never to a closed or
 * reused descriptor. The old file is closed once no write uses it. Call from one thread (the
 * control loop). Returns 0 (also when the sink is not a file), or -errno after logging why; the
 * old file then stays in use. */
int moat_log_reopen(void);

/* Closes the access-log file, if any (after the workers stopped). */
void moat_log_access_close(void);

#endif
