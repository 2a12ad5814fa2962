/* proxy/balance.h: backend choice and backend state. A target is one backend address of one
 * pool, once per process: every configuration snapshot that lists it shares it, so what moat
 * learnt about a backend (a failed connect) survives a reload, and every worker sees it at once.
 * Workers read a target's state with relaxed atomic loads at pick time (no lock on the request
 * path) and store into it only on a failure or a recovery; the control thread stores the health
 * checks' results and the admin's word. Choosing a backend for a request, and whether a failed
 * attempt may go to another one, is decided here too. */
#ifndef MOAT_BALANCE_H
#define MOAT_BALANCE_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"
#include "http/http.h"

/* Per-worker arrays are indexed by a target's slot: at most this many targets at a time. */
#define MOAT_MAX_TARGETS 1024

struct moat_target {
    atomic_int refs;               /* snapshots and upstream connections holding it */
    unsigned slot;                 /* < MOAT_MAX_TARGETS, unique among live targets */
    uint64_t id;                   /* unique for the process's life (a slot is reused) */
    char pool[128];                /* the pool's name: with addr, the target's identity */
    struct sockaddr_storage addr;  /* where to connect */
    char addr_text[64];            /* "127.0.0.1:8080" / "[::1]:8080", for logs */
    uint64_t seed;                 /* a hash of pool and address: rendezvous hashing's weight,
                                    * the same in every worker and every moat */
    char cookie[17];               /* the sticky cookie's value for it: seed in hex (names the
                                    * backend without its address) */
    /* Passed over until this uv_now() time (the monotonic clock every loop shares) after a
     * failed connect; 0: usable. Any worker may store it; the last store wins. */
    _Atomic uint64_t down_until_ms;
    /* Passive health: consecutive failed exchanges (any worker adds, a success clears), and
     * the end of the current ejection or Retry-After pause (uv_now() time; 0: none). */
    _Atomic uint32_t fails;
    _Atomic uint64_t ejected_until_ms;
    _Atomic uint32_t ejections;     /* in a row: each is longer than the last */
    _Atomic uint64_t ejections_total;
    _Atomic uint64_t paused_until_ms;
    /* The admin's word (PUT /backends/...), kept across reloads: its state, and a weight that
     * overrides the configuration's (-1: none). */
    _Atomic int admin_state;        /* enum moat_target_admin */
    _Atomic int32_t admin_weight;
    _Atomic int connections;        /* open, in every worker (one add and one sub per
                                     * connection, never per request) */
    /* Active health checks (proxy/health.c, the control thread writes): 1 while it fails them;
     * the last check's status (-1: no answer; 0: never checked). */
    _Atomic int check_down;
    _Atomic int last_check_status;
    /* When it last came back (a connect or a health check after failures; uv_now() time; 0:
     * never left): slow start ramps its share from then. */
    _Atomic uint64_t up_since_ms;
};

enum moat_target_admin {
    MOAT_TARGET_READY = 0, /* takes requests */
    MOAT_TARGET_DRAIN,     /* no new clients; pinned ones and requests in flight go on */
    MOAT_TARGET_MAINT,     /* nothing new at all; its connections are not pooled again */
};

/* Passive health settings of a pool. */
struct moat_passive {
    unsigned consecutive_errors; /* failures in a row that eject (0: never) */
    uint64_t ejection_ms;        /* the first ejection; each repeat adds as much */
    uint64_t max_ejection_ms;    /* the longest */
};

/* The live target for (pool, addr), or a new one named addr_text: one reference for the caller.
 * NULL when MOAT_MAX_TARGETS targets are live or memory ran out. Thread-safe (a mutex: snapshot
 * builds only, never the request path). */
struct moat_target *moat_target_get(const char *pool, const struct sockaddr_storage *addr,
                                    const char *addr_text);
void moat_target_ref(struct moat_target *t);   /* atomic */
void moat_target_unref(struct moat_target *t); /* atomic; frees at 0 (its slot too); NULL: nothing */

/* What t is at now_ms, as /backends and /metrics name it: "maint", "down" (a failed connect
 * or health check), "ejected", "paused", "draining" or "up"; *why (when why is not NULL) says
 * it in words. */
const char *moat_target_state(const struct moat_target *t, uint64_t now_ms, const char **why);

/* 1 if t is not passed over at now_ms (failed connect, ejection, pause). */
int moat_target_is_up(const struct moat_target *t, uint64_t now_ms);

/* After a connect to t: status 0 clears a failure mark, anything else passes t over for
 * MOAT_TARGET_DOWN_MS from now_ms. Returns 1 when this call changed t's state (the caller logs
 * the transition: only one worker does), else 0. */
#define MOAT_TARGET_DOWN_MS 10000
int moat_target_mark(struct moat_target *t, int status, uint64_t now_ms);

/* t was made for an address a DNS name gained while moat runs: unless someone else holds it
 * already (it is not new then), slow start ramps it from now_ms, as a recovered backend. */
void moat_target_joined(struct moat_target *t, uint64_t now_ms);

/* The health check passes again after failing (the control thread). */
void moat_target_check_up(struct moat_target *t, uint64_t now_ms);

/* Passive health, from any worker. An exchange with t failed (connect refused or timed out,
 * reset or closed before the response ended, backend silence, or a 500, 502, 503 or 504):
 * at pool's consecutive_errors in a row t is ejected for ejection_ms times the ejections in a
 * row (capped), unless that would leave pool with no other usable member or eject more than
 * half of it. Returns the ejection's length in ms when this call ejected t (the caller logs
 * it: only one worker does), else 0. */
struct moat_balance_pool;
uint64_t moat_target_failed(struct moat_target *t, const struct moat_balance_pool *pool,
                            const struct moat_passive *cfg, uint64_t now_ms);

/* An exchange with t succeeded: its run of failures ends (and, after a quiet ejection period,
 * its count of ejections in a row). */
void moat_target_succeeded(struct moat_target *t, const struct moat_passive *cfg,
                           uint64_t now_ms);

/* A 503 with Retry-After: t takes nothing new for ms (capped at MOAT_PAUSE_MAX_MS), unless
 * that would leave pool with no other usable member. Returns 1 when paused. */
#define MOAT_PAUSE_MAX_MS 30000
int moat_target_pause(struct moat_target *t, const struct moat_balance_pool *pool, uint64_t ms,
                      uint64_t now_ms);

/* A pool's members as a snapshot lists them: targets[0..n) with their weights; first is the
 * pool's offset among all the snapshot's members (the picker keeps state per member). */
struct moat_balance_pool {
    struct moat_target *const *targets; /* borrowed from the snapshot */
    const unsigned *weights;            /* likewise; 0: no new requests */
    size_t first;
    size_t n;
    enum moat_cfg_balance alg;
    enum moat_cfg_hash_by hash_by;      /* alg hash */
    const char *hash_name;              /* borrowed: hash_by header or cookie */
    const char *sticky_cookie;          /* borrowed: the sticky cookie's name, or NULL */
    uint64_t slow_start_ms;             /* a member back from a failure ramps up over this */
};

/* What the request offers the choice. */
struct moat_pick_req {
    int has_key;          /* alg hash: key was found (else round robin) */
    uint64_t key;         /* its hash */
    const char *pinned;   /* the sticky cookie's value the client sent, or NULL */
    size_t pinned_len;
};

/* Fills req from request head h and the client's address. */
void moat_pick_req_make(const struct moat_balance_pool *pool, const struct moat_http_head *h,
                        const char *client_ip, struct moat_pick_req *req);

/* A worker's choosing state for one snapshot: per member, smooth weighted round robin's
 * current weight; per pool, a cursor for when no member is usable. */
struct moat_picker;
struct moat_picker *moat_picker_new(size_t n_pools, size_t n_members);
void moat_picker_free(struct moat_picker *p);

/* The member of pool (index pool_idx in the snapshot) the next request goes to, other than
 * `avoid` (SIZE_MAX: none). A client pinned by the sticky cookie to a member that is not passed
 * over gets it (weight 0 included: it drains its pinned clients). Otherwise, over the members
 * with a weight that are not passed over: round_robin is smooth weighted round robin (nginx's:
 * weights 3 and 1 give a a b a), random is weighted, least_request takes the one of two random
 * members with fewer of this worker's requests in flight per weight, hash takes the member
 * whose rendezvous score for req's key is highest (round robin without a key). When every such
 * member is passed over, plain round robin over those with a weight, so a recovered backend is
 * found by the next request rather than after its mark expires. SIZE_MAX when no member other
 * than `avoid` has a weight: nothing to try. Returns an index into pool->targets. */
size_t moat_pick(struct moat_picker *p, size_t pool_idx, const struct moat_balance_pool *pool,
                 const struct moat_pick_req *req, size_t avoid, uint64_t now_ms);

/* After moat_pick(): 1 when this worker just found every member of pool passed over (it tries
 * them anyway), -1 when one is usable again after that, 0 otherwise (each change once). */
int moat_picker_panic_change(struct moat_picker *p, size_t pool_idx);

/* The retry budget: may one more request of pool be retried on another member now? At most
 * max(3, budget_pct % of the pool's requests in flight in this worker) retries at once, so a
 * sick fleet never sees a retry storm. moat_picker_retry_begin() takes one if so (returns 1),
 * moat_picker_retry_end() gives it back. */
int moat_picker_retry_allowed(const struct moat_picker *p, size_t pool_idx, unsigned budget_pct);
int moat_picker_retry_begin(struct moat_picker *p, size_t pool_idx, unsigned budget_pct);
void moat_picker_retry_end(struct moat_picker *p, size_t pool_idx);

/* A request went to, or left, member (pool->first + the index moat_pick() gave): the in-flight
 * counts least_request compares. */
void moat_picker_started(struct moat_picker *p, size_t pool_idx, size_t member);
void moat_picker_ended(struct moat_picker *p, size_t pool_idx, size_t member);

/* Whether a request whose attempt `tries` (1-based) failed before any byte of a response may
 * try another member of a pool of n, with `attempts` extra attempts allowed. */
int moat_may_try_another(size_t tries, size_t n, unsigned attempts);

#endif
