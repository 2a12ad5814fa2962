/* proxy/keylog.c: the TLS key log file (keylog.h). */
#include "proxy/keylog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "proxy/log.h"

static int keylog_fd = -1;

int moat_keylog_open(const char *path, char *err, size_t err_len)
{
    if (path == NULL)
        return 0;
    keylog_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (keylog_fd < 0) {
        snprintf(err, err_len, "debug.tls_key_log %s: %s", path, strerror(errno));
        return -1;
    }
    moat_log(MOAT_LOG_WARN, "main TLS KEY LOG ON: the secrets of every TLS session go to %s; "
             "whoever reads it can decrypt all of moat's traffic. Debugging only: remove "
             "debug.tls_key_log and restart", path);
    return 0;
}

int moat_keylog_is_on(void)
{
    return keylog_fd >= 0;
}

void moat_keylog_write(void *arg, const char *line, size_t len)
{
    (void)arg;
    if (keylog_fd >= 0 && write(keylog_fd, line, len) < 0) {
        /* A full disk loses debugging lines, never a connection. */
    }
}

void moat_keylog_close(void)
{
    if (keylog_fd >= 0)
        close(keylog_fd);
    keylog_fd = -1;
}
