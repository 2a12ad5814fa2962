/* proxy/certwatch.h: watching the certificate files, to swap renewed ones in without a
 * reload. */
#ifndef MOAT_CERTWATCH_H
#define MOAT_CERTWATCH_H
#include <stddef.h>
#include <uv.h>

#include "config/config.h"

struct moat_certwatch;

/* Watches the directories of cfg's certificate and key files and certificate directories on
 * loop; once they have been quiet for a second after a change, calls swap(arg, why, msg, cap)
 * (its answer is for callers that want one). NULL: out of memory. */
struct moat_certwatch *moat_certwatch_start(uv_loop_t *loop, const struct moat_cfg *cfg,
                                            int (*swap)(void *arg, const char *why, char *msg,
                                                        size_t cap),
                                            void *arg);

/* Stops watching; the loop runs the close callbacks, which free it. NULL: nothing. */
void moat_certwatch_stop(struct moat_certwatch *w);

#endif
