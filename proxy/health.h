/* proxy/health.h: active health checks. Once per process, on the control loop (never once per
 * worker: N workers would send N times the probes and could disagree), each backend of a pool
 * with a health_check gets "GET path" every interval (with jitter) on a kept-alive connection
 * (an upstream like a request's, owned by the checker). fall failures in a row take it out,
 * rise passes bring it back, the first result decides at once; a 503 from the check takes it
 * out at once (the signal a backend gives before it stops). The result is a flag of the
 * backend's target (proxy/balance.h), so every worker sees it at its next pick. */
#ifndef MOAT_HEALTH_H
#define MOAT_HEALTH_H
#include <uv.h>

struct moat_runtime;

/* rt is the configuration from now on: checks follow its pools (a reload keeps a backend's
 * result, since its target stays). Control thread only. */
void moat_health_apply(uv_loop_t *loop, struct moat_runtime *rt);

/* Stops every check and closes their handles (the loop then runs their close callbacks). */
void moat_health_stop(void);

/* After the loop has run: frees what is left. */
void moat_health_free(void);

#endif
