/* proxy/devcert.h: the development certificate moat uses when no --cert is given: a local CA
 * and a leaf for localhost, 127.0.0.1 and ::1, made once in the state directory and reused. */
#ifndef MOAT_DEVCERT_H
#define MOAT_DEVCERT_H
#include <stddef.h>

struct moat_devcert_paths {
    char ca_cert[4096]; /* the file a user trusts (curl --cacert) */
    char ca_key[4096];
    char cert[4096];    /* leaf + CA chain, for the TLS server */
    char key[4096];
    int is_created;     /* 1: made by this call; 0: reused from an earlier run */
};

/* Finds the state directory (flag_dir if not NULL, else $MOAT_STATE_DIR, $XDG_STATE_HOME/moat,
 * ~/.local/state/moat), reuses its certificate if still valid for a week, else makes a new CA
 * and leaf there. Returns 0, or -1 with err naming the path and the reason. */
int moat_devcert_ensure(const char *flag_dir, struct moat_devcert_paths *paths, char *err,
                        size_t err_len);

#endif
