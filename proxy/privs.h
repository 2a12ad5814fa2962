/* proxy/privs.h: running as an unprivileged user once the ports are open. */
#ifndef MOAT_PRIVS_H
#define MOAT_PRIVS_H
#include <stddef.h>
#include <sys/types.h>

struct moat_privs {
    int is_set;    /* a user was configured */
    char user[64]; /* for initgroups() and logs */
    uid_t uid;
    gid_t gid;
};

/* Looks user (and group; NULL: the user's primary group) up. user NULL: out->is_set 0.
 * Returns 0, or -1 with err saying which name is unknown. */
int moat_privs_lookup(const char *user, const char *group, struct moat_privs *out, char *err,
                      size_t err_len);

/* Switches the whole process (every thread: glibc broadcasts set*id) to the looked-up ids, for
 * good: supplementary groups, then gid, then uid, then checks that root cannot be regained.
 * Returns 0, or -1 with err. A no-op when nothing was configured. */
int moat_privs_drop(const struct moat_privs *p, char *err, size_t err_len);

#endif
