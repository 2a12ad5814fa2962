/* proxy/upstream.h: plain-HTTP connections to backends and their per-worker pools. An owner (a
 * client connection) leases one upstream per request and hears from it through its ops
 * table. Which backend to lease is proxy/balance.h's choice. */
#ifndef MOAT_UPSTREAM_H
#define MOAT_UPSTREAM_H
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/base/bufq.h"
#include "proxy/base/list.h"

struct moat_upstream; /* opaque: upstream.c */

/* What an upstream tells the one who leased it (its owner: a client connection today, a health
 * checker or an HTTP/2 stream tomorrow). Any callback may release the upstream. */
struct moat_upstream_ops {
    /* The connect finished: 0, or a negative libuv error (UV_ETIMEDOUT: the connect deadline
     * passed). After a failure the owner releases the upstream. */
    void (*on_connected)(void *owner, int status);
    /* Response bytes (nread > 0, in the worker's slab until the callback returns), or the end:
     * UV_EOF, or the negative libuv error of a read or of a write. */
    void (*on_read)(void *owner, const char *buf, ssize_t nread);
    /* The backend sent nothing for the time moat_upstream_set_deadline() gave it. */
    void (*on_silence)(void *owner);
    /* The request bytes in flight fell to the low-water mark: the owner may send more. */
    void (*on_drained)(void *owner);
};

/* A request waiting for a slot of a backend (--max-backend-connections), queued by
 * moat_upstream_lease(); on_slot runs when one is free (the owner leases again then). */
struct moat_up_waiter {
    struct moat_list node; /* in the backend's queue while waiting; the owner may remove it */
    void (*on_slot)(struct moat_up_waiter *waiter);
};

/* Read-stop reasons, shared with conn.c. */
#define MOAT_RX_PEER_FULL 0x1u /* the other side holds more than its high water */
#define MOAT_RX_PIPELINE 0x2u  /* a parsed request waits for its response to finish */
#define MOAT_RX_EOF 0x4u       /* the peer finished sending; never restart */
#define MOAT_RX_IDLE 0x8u      /* upstream: not leased and not watched */

/* A worker's connections to backends, by target. */
struct moat_pools;
struct moat_runtime;

/* The pools of the worker whose loop this is; reads land in slab (slab_len bytes). NULL: out of
 * memory. */
struct moat_pools *moat_pools_new(uv_loop_t *loop, unsigned worker_id, char *slab,
                                  size_t slab_len);

/* rt is the worker's configuration from now on: connections to targets it does not list are
 * not pooled any more (idle ones close now, busy ones when released). */
void moat_pools_adopt(struct moat_pools *ps, const struct moat_runtime *rt);

/* Drain: idle connections close now, released ones close too. */
void moat_pools_drain(struct moat_pools *ps);

/* Closes the pools' own handle (the last step of a drain); then moat_pools_free() once the loop
 * has run every close callback. */
void moat_pools_stop(struct moat_pools *ps);
void moat_pools_free(struct moat_pools *ps);

/* How moat_upstream_lease() may pick. */
#define MOAT_LEASE_FRESH 0x1u      /* never a pooled connection (a resend after a stale one) */
#define MOAT_LEASE_RESENDABLE 0x2u /* the request can be sent again whole if a pooled connection
                                    * proves dead: a recently pooled one is taken unchecked */

/* Leases a connection to rt's backend (an index into rt->backends) for owner, who keeps rt
 * alive until the release: a pooled one still open (ready at once,
 * moat_upstream_was_pooled() 1) unless flags has MOAT_LEASE_FRESH, else a new one (its
 * ops->on_connected() comes later). Returns 0, a negative libuv error (nothing leased), or
 * MOAT_UP_WAIT: the backend has --max-backend-connections open in this worker; waiter was
 * queued. ops must outlive the lease. */
#define MOAT_UP_WAIT 1
int moat_upstream_lease(struct moat_pools *ps, const struct moat_runtime *rt, size_t backend,
                        unsigned flags, const struct moat_upstream_ops *ops, void *owner,
                        struct moat_up_waiter *waiter, struct moat_upstream **out);

/* Connected and leased: request bytes can be written. */
int moat_upstream_is_ready(const struct moat_upstream *up);
/* While leased: its backend, an index into the lessee's rt->backends. */
size_t moat_upstream_backend(const struct moat_upstream *up);
/* Request bytes handed to uv_write and not yet taken by the kernel. */
size_t moat_upstream_inflight(const struct moat_upstream *up);
/* It came from the pool (it served an earlier request): its death may be staleness. */
int moat_upstream_was_pooled(const struct moat_upstream *up);
/* A write of the current request completed. */
int moat_upstream_has_sent(const struct moat_upstream *up);
/* The backend keeps an idle connection open this long (its Keep-Alive: timeout): the pool
 * expires it earlier than that. */
void moat_upstream_set_keepalive(struct moat_upstream *up, uint64_t ms);

/* Ends a lease: reuse=1 returns it to its pool (if the pool has room), else it is closed.
 * Accepts NULL. No callback reaches the owner afterwards. */
void moat_upstream_release(struct moat_upstream *up, int reuse);

/* Moves every chunk of q into uv_writes on up (ACTIVE only). 0 or a negative libuv error. */
int moat_upstream_write(struct moat_upstream *up, struct moat_bufq *q);

/* Starts or stops reading from the backend (see STYLE.md §5). */
void moat_upstream_rx_block(struct moat_upstream *up, unsigned why);
void moat_upstream_rx_unblock(struct moat_upstream *up, unsigned why);

/* Arms the silence timer: the backend must send something within ms (0: disarm). */
void moat_upstream_set_deadline(struct moat_upstream *up, uint64_t ms);

#endif
