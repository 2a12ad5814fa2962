/* proxy/log.c: the error log and the access-log sink. */
#include "proxy/log.h"

#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int moat_log_level = MOAT_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void moat_log_write(int level, const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof(line) - (size_t)n, ".%03ldZ %s ", (long)(tv.tv_usec / 1000),
                  level_names[level < 0 ? 0 : level > 3 ? 3 : level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += m;
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2; /* truncated: still one line */
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w; /* nowhere left to report a failing stderr */
}

void moat_log_access(const char *line, int len)
{
    ssize_t w = write(STDOUT_FILENO, line, (size_t)len);
    (void)w;
}
