/* proxy/log.c: the error log and the access-log sink (stdout, stderr or a file reopened on
 * SIGUSR1). */
#include "proxy/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* The access-log descriptor. Set before any worker starts and never changed after: a reopen
 * replaces the file behind this number, not the number, so workers read it without locks. */
static int access_fd = STDOUT_FILENO;
static char *access_path; /* owned: the file's path; NULL for stdout and stderr */

void moat_log_access(const char *line, int len)
{
    size_t left = len > 0 ? (size_t)len : 0;
    while (left > 0) {
        ssize_t w = write(access_fd, line, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* a full disk or a closed pipe: the line is lost, the request is not */
        /* Short writes happen only on a full disk or a pipe: finish the line rather than drop
         * its tail (it may then interleave, but it is not cut). */
        line += w;
        left -= (size_t)w;
    }
}

static int open_append(const char *path)
{
    int fd;
    do
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    while (fd < 0 && errno == EINTR);
    return fd;
}

int moat_log_access_open(const char *target, char *err, size_t err_len)
{
    if (target == NULL || strcmp(target, "stdout") == 0) {
        access_fd = STDOUT_FILENO;
        return 0;
    }
    if (strcmp(target, "stderr") == 0) {
        access_fd = STDERR_FILENO;
        return 0;
    }
    int fd = open_append(target);
    if (fd < 0) {
        snprintf(err, err_len, "access log %s: %s", target, strerror(errno));
        return -1;
    }
    char *path = strdup(target);
    if (path == NULL) {
        close(fd);
        snprintf(err, err_len, "access log %s: out of memory", target);
        return -1;
    }
    free(access_path);
    access_path = path;
    access_fd = fd;
    return 0;
}

int moat_log_reopen(void)
{
    if (access_path == NULL)
        return 0;
    int fd = open_append(access_path);
    if (fd < 0) {
        int e = errno;
        moat_log(MOAT_LOG_ERROR, "main SIGUSR1: cannot reopen access log %s: %s (still writing "
                 "to the old file)", access_path, strerror(e));
        return -e;
    }
    /* dup3() closes the old file under access_fd and installs the new one in one step (dup2()
     * would also drop O_CLOEXEC). A write already in the kernel holds its own reference to the
     * old file and completes there. */
    int rc;
    do
        rc = dup3(fd, access_fd, O_CLOEXEC);
    while (rc < 0 && errno == EINTR);
    int e = errno;
    close(fd);
    if (rc < 0) {
        moat_log(MOAT_LOG_ERROR, "main SIGUSR1: cannot reopen access log %s: dup3: %s",
                 access_path, strerror(e));
        return -e;
    }
    moat_log(MOAT_LOG_INFO, "main SIGUSR1: access log %s reopened", access_path);
    return 0;
}

void moat_log_access_close(void)
{
    if (access_path == NULL)
        return;
    close(access_fd);
    access_fd = STDOUT_FILENO;
    free(access_path);
    access_path = NULL;
}
