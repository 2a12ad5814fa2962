/* proxy/privs.c: dropping root after the ports are bound. */
#include "proxy/privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int moat_privs_lookup(const char *user, const char *group, struct moat_privs *out, char *err,
                      size_t err_len)
{
    memset(out, 0, sizeof(*out));
    if (user == NULL) {
        if (group != NULL) {
            snprintf(err, err_len, "group '%s' is set without a user", group);
            return -1;
        }
        return 0;
    }
    errno = 0;
    const struct passwd *pw = getpwnam(user);
    if (pw == NULL) {
        snprintf(err, err_len, "user '%s': %s", user, errno ? strerror(errno) : "no such user");
        return -1;
    }
    out->is_set = 1;
    snprintf(out->user, sizeof(out->user), "%s", user);
    out->uid = pw->pw_uid;
    out->gid = pw->pw_gid;
    if (group != NULL) {
        errno = 0;
        const struct group *gr = getgrnam(group);
        if (gr == NULL) {
            snprintf(err, err_len, "group '%s': %s", group,
                     errno ? strerror(errno) : "no such group");
            return -1;
        }
        out->gid = gr->gr_gid;
    }
    return 0;
}

int moat_privs_drop(const struct moat_privs *p, char *err, size_t err_len)
{
    if (!p->is_set)
        return 0;
    if (geteuid() != 0) {
        if (geteuid() == p->uid)
            return 0; /* already that user (e.g. a container started with --user) */
        snprintf(err, err_len, "cannot switch to user '%s': moat was not started as root",
                 p->user);
        return -1;
    }
    /* Supplementary groups first: after setuid() they could no longer be changed. */
    if (initgroups(p->user, p->gid) != 0 || setgid(p->gid) != 0 || setuid(p->uid) != 0) {
        snprintf(err, err_len, "cannot switch to user '%s': %s", p->user, strerror(errno));
        return -1;
    }
    if (p->uid != 0 && setuid(0) == 0) {
        snprintf(err, err_len, "switched to user '%s' but root could be regained", p->user);
        return -1;
    }
    return 0;
}
