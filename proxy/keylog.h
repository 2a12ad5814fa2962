/* proxy/keylog.h: the TLS key log (debug.tls_key_log), for decrypting captured traffic while
 * debugging: every session's secrets, one NSS key log line each, appended to a file. */
#ifndef MOAT_KEYLOG_H
#define MOAT_KEYLOG_H
#include <stddef.h>

/* Opens path for appending (created 0600) before privileges are dropped, and warns loudly.
 * NULL path: off. 0, or -1 with err. */
int moat_keylog_open(const char *path, char *err, size_t err_len);

/* 1 when the key log is on. */
int moat_keylog_is_on(void);

/* A moat_tls_keylog_cb: one line, in one write(2) (O_APPEND: lines from several workers never
 * interleave). */
void moat_keylog_write(void *arg, const char *line, size_t len);

void moat_keylog_close(void);

#endif
