/* proxy/upstream.h: plain-HTTP connections to backends, their per-worker idle pools, and the
 * round-robin choice of backend. A client connection leases one upstream per request. */
#ifndef MOAT_UPSTREAM_H
#define MOAT_UPSTREAM_H
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/base/bufq.h"
#include "proxy/base/list.h"
#include "proxy/deadline.h"
#include "proxy/wire.h"

struct moat_worker;
struct moat_gen;
struct moat_conn;

enum moat_up_state {
    MOAT_UP_CONNECTING, /* leased; TCP connect in progress; nothing written */
    MOAT_UP_ACTIVE,     /* leased; connected; carries the lessee's request and response */
    MOAT_UP_IDLE,       /* in its pool; reading only to notice the backend's close */
    MOAT_UP_CLOSING,    /* handles closing; freed by the last close callback */
};

struct moat_upstream {
    struct moat_list node;     /* in the pool's idle list while IDLE */
    struct moat_worker *w;     /* borrowed */
    struct moat_gen *gen;      /* held: the configuration whose pools and backends these are */
    size_t backend;            /* index into gen->rt->backends */
    uv_tcp_t tcp;
    struct moat_deadline deadline; /* connect deadline, backend silence, or pool expiry */
    uv_connect_t connect_req;
    enum moat_up_state state;
    int closes_pending;        /* handles not yet closed; freed at 0 */
    struct moat_conn *client;  /* borrowed while leased, NULL otherwise */
    struct moat_wire wire;     /* writes to tcp; counts bytes in uv_write */
    unsigned rx_blocked;       /* MOAT_RX_* reasons reads are stopped */
    int is_reused;             /* served an earlier request: a death may be staleness */
    int bytes_sent;            /* a write of the current request completed */
    uint64_t keepalive_ms;     /* may idle in the pool this long (backend's Keep-Alive) */
    uint64_t idle_since_ms;    /* loop time it entered the pool */
};

/* Read-stop reasons, shared with conn.c. */
#define MOAT_RX_PEER_FULL 0x1u /* the other side holds more than its high water */
#define MOAT_RX_PIPELINE 0x2u  /* a parsed request waits for its response to finish */
#define MOAT_RX_EOF 0x4u       /* the peer finished sending; never restart */
#define MOAT_RX_IDLE 0x8u      /* upstream: not leased and not watched */

/* Creates a generation's pools (one per backend). 0 or -1. */
int moat_pools_init(struct moat_gen *g);

/* Closes every idle pooled connection (drain, reload); frees the pools once none is left. */
void moat_pools_close(struct moat_gen *g);
void moat_pools_free(struct moat_gen *g);

/* Picks the next backend of pool (an index into g->rt->pools) in round-robin order, skipping
 * `avoid` (SIZE_MAX: none). Returns an index into g->rt->backends. */
size_t moat_backend_next(struct moat_gen *g, size_t pool, size_t avoid);

/* How moat_upstream_lease() may pick. */
#define MOAT_LEASE_FRESH 0x1u      /* never a pooled connection (a resend after a stale one) */
#define MOAT_LEASE_RESENDABLE 0x2u /* the request can be sent again whole if a pooled connection
                                    * proves dead: a recently pooled one is taken unchecked */

/* Leases a connection to backend for client c: a pooled one still open (state ACTIVE,
 * is_reused 1) unless flags has MOAT_LEASE_FRESH, else a new one (state CONNECTING; c gets
 * moat_conn_on_up_connected() later). Returns 0, a negative libuv error (nothing leased), or
 * MOAT_UP_WAIT: the backend has --max-backend-connections open in this worker; wait_node was
 * queued and moat_conn_on_backend_free(wait_node) runs when one is free (the caller leases
 * again then; it may drop out of the queue earlier with moat_list_remove(wait_node)). */
#define MOAT_UP_WAIT 1
int moat_upstream_lease(struct moat_gen *g, size_t backend, unsigned flags,
                        struct moat_conn *c, struct moat_list *wait_node,
                        struct moat_upstream **out);

/* Runs once per loop turn (worker.c): hands freed backend slots to waiting requests. */
void moat_pools_wake(struct moat_gen *g);

/* Ends a lease: reuse=1 returns it to its pool (if the pool has room), else it is closed.
 * Accepts NULL. The client pointer is cut at once: no callback reaches c afterwards. */
void moat_upstream_release(struct moat_upstream *up, int reuse);

/* Moves every chunk of q into uv_writes on up (ACTIVE only). 0 or a negative libuv error. */
int moat_upstream_write(struct moat_upstream *up, struct moat_bufq *q);

/* Starts or stops reading from the backend (see STYLE.md §5). */
void moat_upstream_rx_block(struct moat_upstream *up, unsigned why);
void moat_upstream_rx_unblock(struct moat_upstream *up, unsigned why);

/* Arms the silence timer: the backend must send something within ms (0: disarm). */
void moat_upstream_set_deadline(struct moat_upstream *up, uint64_t ms);

#endif
