/* proxy/metrics.h: the counters behind the admin listener's /metrics and /readyz. Each worker
 * owns one struct moat_metrics and is its only writer; the control thread reads every worker's
 * with relaxed atomic loads and sums them when scraped. No lock and no read-modify-write
 * instruction on the request path: a single writer makes load + store an exact increment. */
#ifndef MOAT_METRICS_H
#define MOAT_METRICS_H
#include <stddef.h>
#include <stdint.h>

/* Pool counters are kept in slots named by pool. A reload maps its snapshot's pools onto slots
 * by name, so a pool's counters go on across reloads (Prometheus counters never go back) and a
 * renamed pool starts its own. Pool slots are never freed while the process runs: a writer
 * holding an old snapshot still writes a valid slot. Pools beyond this bound are not counted
 * (MOAT_METRICS_NO_SLOT). A backend's counters are its target's (proxy/balance.h), by the
 * target's slot: they go on as long as some snapshot or connection keeps the target, and a
 * target that takes a freed slot starts from zero (nobody writes a freed target's slot). */
#define MOAT_METRICS_MAX_POOLS 64
#define MOAT_METRICS_NO_SLOT SIZE_MAX

struct moat_metrics;     /* opaque; one per worker, written by that worker's thread only */
struct moat_metrics_set; /* opaque; every worker's metrics and the names they are labelled by */

/* A configuration's pools and backends, as moat_metrics_set_layout() reads them. Backend b
 * belongs to pool backend_pool[b] (an index into pool_names). */
struct moat_target;

struct moat_metrics_layout {
    const char *const *pool_names;
    size_t n_pools;
    const char *const *backend_names; /* "host:port" as configured */
    const size_t *backend_pool;
    struct moat_target *const *backend_targets; /* address, slot, shared state */
    size_t n_backends;
};

enum moat_metrics_handshake {
    MOAT_METRICS_HS_FULL = 0, /* completed with a full key exchange */
    MOAT_METRICS_HS_RESUMED,  /* completed by resuming a session from a ticket */
    MOAT_METRICS_HS_FAILED,   /* ended by an error, a timeout or the client before completing */
    MOAT_METRICS_HS_KINDS
};

enum moat_metrics_client_timeout {
    MOAT_METRICS_CT_HANDSHAKE = 0, /* the TLS handshake did not finish in time */
    MOAT_METRICS_CT_HEAD,          /* a request head did not arrive whole in time (408) */
    MOAT_METRICS_CT_BODY,          /* a request body stalled (408) */
    MOAT_METRICS_CT_SEND,          /* the client took none of moat's bytes in time (cut off) */
    MOAT_METRICS_CT_KINDS
};

enum moat_metrics_upstream_error {
    MOAT_METRICS_UP_CONNECT_FAILED = 0, /* a backend refused or reset the TCP connect */
    MOAT_METRICS_UP_CONNECT_TIMEOUT,    /* a backend connect did not finish within the timeout */
    MOAT_METRICS_UP_502,                /* moat answered 502 Bad Gateway */
    MOAT_METRICS_UP_504,                /* moat answered 504 Gateway Timeout */
    MOAT_METRICS_UP_KINDS
};

enum moat_metrics_retry {
    MOAT_METRICS_RETRY_CONNECT = 0, /* another backend after a failed connect */
    MOAT_METRICS_RETRY_STALE,       /* a fresh connection after a pooled one proved dead */
    MOAT_METRICS_RETRY_EMPTY,       /* another backend after one closed without answering */
    MOAT_METRICS_RETRY_503,         /* another backend after a 503 */
    MOAT_METRICS_RETRY_REFUSED,     /* a retry the budget did not allow */
    MOAT_METRICS_RETRY_KINDS
};

/* Allocates zeroed metrics for n_workers workers, with no pool yet. NULL on ENOMEM. Records
 * the process start time (wall clock) for moat_start_time_seconds. */
struct moat_metrics_set *moat_metrics_set_new(size_t n_workers);

/* Makes layout the one /metrics and /readyz show, and writes each of its pools' slot to
 * pool_slot[] (MOAT_METRICS_NO_SLOT when the slots ran out), finding slots by name, taking new
 * ones for new names. Control thread only (the same thread that renders), before any worker
 * writes for the layout's targets. Returns how many pools found no slot, or -ENOMEM. */
int moat_metrics_set_layout(struct moat_metrics_set *set, const struct moat_metrics_layout *layout,
                            size_t *pool_slot);

/* After every writer is gone (workers joined). NULL: nothing. */
void moat_metrics_set_free(struct moat_metrics_set *set);

/* Worker i's metrics (0-based), to hand to that worker before its thread starts. */
struct moat_metrics *moat_metrics_set_worker(struct moat_metrics_set *set, size_t i);

/* Renders every metric in the Prometheus text format 0.0.4 into a new buffer (*out, owned by
 * the caller, free()) of *len bytes. now_ms: the monotonic clock in milliseconds as libuv's
 * uv_now() reads it, to tell which backends are still marked down. 0 or -ENOMEM. */
int moat_metrics_set_render(const struct moat_metrics_set *set, uint64_t now_ms, char **out,
                            size_t *len);

/* 1 when no worker is draining and every pool has a backend at least one worker does not hold
 * marked down at now_ms; else 0 and why says which (a line of text). */
int moat_metrics_set_is_ready(const struct moat_metrics_set *set, uint64_t now_ms, char *why,
                              size_t why_cap);

/* ---- writers: the owning worker's thread only; m may be NULL (no admin: nothing counted) ---- */

/* Writers take slots from moat_metrics_set_layout(); MOAT_METRICS_NO_SLOT counts nothing.
 * A request was answered with status after duration_ms (loop time since its first byte). */
void moat_metrics_request(struct moat_metrics *m, size_t pool, int status, uint64_t duration_ms);

/* A response head from the backend whose target has this slot: its status, and the ms since it
 * was chosen. */
void moat_metrics_backend_response(struct moat_metrics *m, size_t target_slot, int status,
                                   uint64_t first_byte_ms);

void moat_metrics_bytes_in(struct moat_metrics *m, uint64_t n);  /* from clients (on the wire) */
void moat_metrics_bytes_out(struct moat_metrics *m, uint64_t n); /* to clients (on the wire) */

void moat_metrics_conn_opened(struct moat_metrics *m); /* a client connection was accepted */
void moat_metrics_conn_closed(struct moat_metrics *m); /* and is gone */

void moat_metrics_handshake(struct moat_metrics *m, enum moat_metrics_handshake kind);

/* A client connection ran out of time (and was answered 408 or cut off). */
void moat_metrics_client_timeout(struct moat_metrics *m, enum moat_metrics_client_timeout kind);

void moat_metrics_upstream_error(struct moat_metrics *m, size_t pool,
                                 enum moat_metrics_upstream_error kind);

/* For status 502 or 504 counts that upstream error; other statuses count nothing. */
void moat_metrics_error_response(struct moat_metrics *m, size_t pool, int status);

void moat_metrics_retry(struct moat_metrics *m, size_t pool, enum moat_metrics_retry reason);

/* The worker's listeners accept (1, from the start: main() opened them) or were closed for a
 * drain (0). */
void moat_metrics_listening(struct moat_metrics *m, int is_listening);

#endif
