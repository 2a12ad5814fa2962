/* proxy/redirect.h: the plain-HTTP listener that sends clients to https:// (redirect_http). */
#ifndef MOAT_REDIRECT_H
#define MOAT_REDIRECT_H
#include <uv.h>

#include "config/config.h"

/* When cfg->has_redirect: listens on cfg->redirect on loop (before privileges are dropped:
 * port 80 needs them) and answers every request with 308 to https://HOST[:PORT]/same/path,
 * PORT being cfg->redirect_https_port or else https_port (the first listener's, as bound).
 * 0, or -1 after printing why to stderr. */
int moat_redirect_start(uv_loop_t *loop, const struct moat_cfg *cfg, unsigned https_port);

/* Closes the listener and its connections (the loop runs the close callbacks). Idempotent. */
void moat_redirect_stop(void);

#endif
