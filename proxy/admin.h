/* proxy/admin.h: the admin listener (--admin): plain HTTP on the control loop serving GET
 * /metrics (Prometheus text), /healthz and /readyz. One per process; it owns the workers'
 * metrics (proxy/metrics.h). */
#ifndef MOAT_ADMIN_H
#define MOAT_ADMIN_H
#include <stddef.h>
#include <uv.h>

struct moat_worker;
struct moat_runtime;

/* When rt->cfg->has_admin: creates every worker's metrics (workers[i].metrics, so call it before
 * the worker threads start), maps rt's pools and backends to metrics (moat_admin_map), binds
 * rt->cfg->admin and listens on loop. Otherwise does nothing (workers count nothing). workers
 * are borrowed until moat_admin_free(). Returns 0, or -1 after printing why to stderr: a
 * start-up error (the address is taken, say). */
int moat_admin_start(uv_loop_t *loop, struct moat_runtime *rt, struct moat_worker *workers,
                     size_t n_workers);

/* Before a snapshot reaches any worker: gives its pools and backends their metrics slots
 * (same names, same counters) and makes them the ones /metrics and /readyz show. Nothing when
 * the admin is off. Control thread only. */
void moat_admin_map(struct moat_runtime *rt);

/* /metrics shows dns's names too (NULL: none). */
struct moat_dns;
void moat_admin_set_dns(const struct moat_dns *dns);

/* PUT /certificates/reload calls swap(arg, why, msg, cap): 0 and msg, or -1 and why not. */
void moat_admin_on_cert_swap(int (*swap)(void *arg, const char *why, char *msg, size_t cap),
                             void *arg);

/* Closes the listener and every admin connection; their close callbacks run on the loop, which
 * then no longer waits for the admin. Idempotent; nothing when the admin is off. */
void moat_admin_stop(void);

/* After the loop ran the close callbacks and the workers were joined (the last writers of the
 * metrics): frees what moat_admin_start() made. */
void moat_admin_free(void);

#endif
