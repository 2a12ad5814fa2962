/* proxy/backends.h: the admin listener's view of the backends (GET /backends) and its writes
 * (PUT /backends/POOL/ADDRESS/state?to=ready|drain|maint, .../weight?to=N). What a write sets
 * lives in the backend's target (proxy/balance.h): every worker sees it at its next pick, and it
 * stays across reloads while the backend stays. Control thread only. */
#ifndef MOAT_BACKENDS_H
#define MOAT_BACKENDS_H
#include <stddef.h>
#include <stdint.h>

struct moat_runtime;

/* Every pool of rt and its backends as JSON (state and why, weights, connections, health) in a
 * new buffer (*out, free() it) of *len bytes. now_ms: uv_now()'s clock. 0, or -1 (memory). */
int moat_backends_json(const struct moat_runtime *rt, uint64_t now_ms, char **out, size_t *len);

/* Carries out a PUT on path (query without its '?'); writes a one-line answer into msg and
 * returns its status: 200, 400 or 404. */
int moat_backends_put(const struct moat_runtime *rt, const char *path, size_t path_len,
                      const char *query, size_t query_len, char *msg, size_t msg_cap);

#endif
