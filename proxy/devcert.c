/* proxy/devcert.c: the development certificate's files: where they live, whether they can be
 * reused, and writing them (keys 0600). The certificates themselves are made by tls/. */
#include "proxy/devcert.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tls/tls.h"

/* A leaf that expires within this margin is made anew rather than reused. */
#define RENEW_MARGIN_S (7 * 24 * 3600)

static int state_dir(const char *flag_dir, char *out, size_t cap, char *err, size_t err_len)
{
    const char *env = getenv("MOAT_STATE_DIR");
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    int n;
    if (flag_dir != NULL)
        n = snprintf(out, cap, "%s", flag_dir);
    else if (env != NULL && env[0] != '\0')
        n = snprintf(out, cap, "%s", env);
    else if (xdg != NULL && xdg[0] == '/')
        n = snprintf(out, cap, "%s/moat", xdg);
    else if (home != NULL && home[0] != '\0')
        n = snprintf(out, cap, "%s/.local/state/moat", home);
    else {
        snprintf(err, err_len, "no state directory: set MOAT_STATE_DIR or pass --cert/--key");
        return -1;
    }
    if (n < 0 || (size_t)n >= cap) {
        snprintf(err, err_len, "state directory path too long");
        return -1;
    }
    return 0;
}

/* mkdir -p, new components 0700 (they will hold private keys). */
static int make_dirs(const char *path, char *err, size_t err_len)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
            snprintf(err, err_len, "%s: cannot create directory: %s", tmp, strerror(errno));
            return -1;
        }
        *p = saved;
        if (saved == '\0')
            return 0;
    }
}

/* Writes text to path through a temporary file and rename(), so a crash leaves no half file. */
static int write_file(const char *path, const char *text, mode_t mode, char *err, size_t err_len)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        snprintf(err, err_len, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    size_t len = strlen(text);
    ssize_t w = write(fd, text, len);
    int ok = w == (ssize_t)len && fchmod(fd, mode) == 0 && fsync(fd) == 0;
    int saved = errno;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(ok ? errno : saved));
        unlink(tmp);
        return -1;
    }
    return 0;
}

int moat_devcert_ensure(const char *flag_dir, struct moat_devcert_paths *p, char *err,
                        size_t err_len)
{
    char dir[3800];
    if (state_dir(flag_dir, dir, sizeof(dir), err, err_len) != 0)
        return -1;
    snprintf(p->ca_cert, sizeof(p->ca_cert), "%s/ca.pem", dir);
    snprintf(p->ca_key, sizeof(p->ca_key), "%s/ca.key", dir);
    snprintf(p->cert, sizeof(p->cert), "%s/localhost.pem", dir);
    snprintf(p->key, sizeof(p->key), "%s/localhost.key", dir);
    p->is_created = 0;

    time_t now = time(NULL);
    if (access(p->ca_cert, R_OK) == 0 && access(p->key, R_OK) == 0 &&
        moat_tls_cert_file_valid_at(p->cert, now, RENEW_MARGIN_S) == 1)
        return 0;

    if (make_dirs(dir, err, err_len) != 0)
        return -1;
    struct moat_tls_devcert dc = {0};
    char why[256];
    if (moat_tls_devcert_make(now, &dc, why, sizeof(why)) != 0) {
        snprintf(err, err_len, "development certificate: %s", why);
        return -1;
    }
    int rc = -1;
    /* Keys first: a certificate without its key must never be left behind as "reusable". */
    if (write_file(p->ca_key, dc.ca_key_pem, 0600, err, err_len) == 0 &&
        write_file(p->key, dc.leaf_key_pem, 0600, err, err_len) == 0 &&
        write_file(p->ca_cert, dc.ca_cert_pem, 0644, err, err_len) == 0 &&
        write_file(p->cert, dc.leaf_cert_pem, 0644, err, err_len) == 0)
        rc = 0;
    moat_tls_devcert_free(&dc);
    p->is_created = rc == 0;
    return rc;
}
