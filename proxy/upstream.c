/* proxy/upstream.c: backend connections and their per-worker idle pools.
 * An upstream is owned by its pool while idle and leased to one owner while busy;
 * its memory lives until the last of its two handles has closed. A worker's pools are keyed by
 * target (balance.h), not by configuration snapshot: a reload keeps the idle connections to the
 * backends it keeps. */
#include "proxy/upstream.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "proxy/balance.h"
#include "proxy/deadline.h"
#include "proxy/log.h"
#include "proxy/runtime.h"
#include "proxy/wire.h"

enum up_state {
    UP_CONNECTING, /* leased; TCP connect in progress; nothing written */
    UP_ACTIVE,     /* leased; connected; carries the owner's request and response */
    UP_IDLE,       /* in its pool; reading only to notice the backend's close */
    UP_CLOSING,    /* handles closing; freed by the last close callback */
};

/* Connections of one target in one worker; the idle ones most recently used at the back. */
struct moat_pool {
    struct moat_list node;    /* in ps->pools */
    struct moat_list idle;
    size_t n_idle;
    size_t n_open;            /* connections of this target in this worker, idle or not */
    struct moat_list waiters; /* requests waiting for a slot (--max-backend-connections) */
    size_t max_open;          /* the last lessee's --max-backend-connections (0: none) */
    int is_current;           /* the worker's configuration lists this target: pool on release */
};

struct moat_pools {
    uv_loop_t *loop;          /* borrowed: the worker's */
    unsigned worker_id;       /* for logs */
    char *slab;               /* borrowed: where every read lands */
    size_t slab_len;
    int is_draining;          /* nothing is pooled any more */
    uv_idle_t wake;           /* active while freed slots wait to be handed over */
    struct moat_list pools;   /* every pool made (struct moat_pool by node) */
    struct moat_pool *by_slot[MOAT_MAX_TARGETS]; /* owned, made on first use */
};

struct moat_upstream {
    struct moat_list node;     /* in the pool's idle list while IDLE */
    struct moat_pools *ps;     /* borrowed: the worker's pools */
    struct moat_pool *pool;    /* borrowed: its target's pool in ps */
    struct moat_target *target; /* held */
    const struct moat_runtime *rt; /* borrowed from the owner while leased, NULL otherwise */
    size_t backend;            /* while leased: index into rt->backends */
    uv_tcp_t tcp;
    struct moat_deadline deadline; /* connect deadline, backend silence, or pool expiry */
    uv_connect_t connect_req;
    enum up_state state;
    int closes_pending;        /* handles not yet closed; freed at 0 */
    const struct moat_upstream_ops *ops; /* borrowed while leased, with owner */
    void *owner;               /* borrowed while leased, NULL otherwise */
    struct moat_wire wire;     /* writes to tcp; counts bytes in uv_write */
    unsigned rx_blocked;       /* MOAT_RX_* reasons reads are stopped */
    int is_reused;             /* served an earlier request: a death may be staleness */
    int bytes_sent;            /* a write of the current request completed */
    uint64_t keepalive_ms;     /* may idle in the pool this long (backend's Keep-Alive) */
    uint64_t idle_since_ms;    /* loop time it entered the pool */
};

#define UNCHECKED_IDLE_MS 250 /* see moat_upstream_lease() */

static void up_close(struct moat_upstream *up);
static void on_up_write_done(struct moat_wire *wire, int status);
static void on_wake(uv_idle_t *h);

struct moat_pools *moat_pools_new(uv_loop_t *loop, unsigned worker_id, char *slab,
                                  size_t slab_len)
{
    struct moat_pools *ps = calloc(1, sizeof(*ps));
    if (ps == NULL)
        return NULL;
    ps->loop = loop;
    ps->worker_id = worker_id;
    ps->slab = slab;
    ps->slab_len = slab_len;
    moat_list_init(&ps->pools);
    uv_idle_init(loop, &ps->wake);
    ps->wake.data = ps;
    return ps;
}

static void close_idle(struct moat_pool *p)
{
    while (!moat_list_is_empty(&p->idle))
        up_close(moat_list_entry(p->idle.next, struct moat_upstream, node));
}

void moat_pools_adopt(struct moat_pools *ps, const struct moat_runtime *rt)
{
    for (struct moat_list *n = ps->pools.next; n != &ps->pools; n = n->next)
        moat_list_entry(n, struct moat_pool, node)->is_current = 0;
    for (size_t i = 0; i < rt->n_backends; i++) {
        struct moat_pool *p = ps->by_slot[rt->targets[i]->slot];
        if (p != NULL)
            p->is_current = 1;
    }
    /* The backends the configuration dropped: idle connections close now, busy ones when
     * released. */
    for (struct moat_list *n = ps->pools.next; n != &ps->pools; n = n->next) {
        struct moat_pool *p = moat_list_entry(n, struct moat_pool, node);
        if (!p->is_current)
            close_idle(p);
    }
}

static void on_wake_closed(uv_handle_t *h)
{
    (void)h;
}

void moat_pools_drain(struct moat_pools *ps)
{
    ps->is_draining = 1;
    for (struct moat_list *n = ps->pools.next; n != &ps->pools; n = n->next)
        close_idle(moat_list_entry(n, struct moat_pool, node));
}

void moat_pools_stop(struct moat_pools *ps)
{
    if (!uv_is_closing((uv_handle_t *)&ps->wake))
        uv_close((uv_handle_t *)&ps->wake, on_wake_closed);
}

void moat_pools_free(struct moat_pools *ps)
{
    if (ps == NULL)
        return;
    for (size_t i = 0; i < MOAT_MAX_TARGETS; i++)
        free(ps->by_slot[i]);
    free(ps);
}

/* t's pool in ps, made on first use. NULL: out of memory. A slot's pool outlives its target:
 * it is empty by then (every connection and waiter held the target), and a later target in
 * the same slot starts from that empty pool. */
static struct moat_pool *pool_of(struct moat_pools *ps, const struct moat_target *t)
{
    struct moat_pool *p = ps->by_slot[t->slot];
    if (p != NULL)
        return p;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    moat_list_init(&p->idle);
    moat_list_init(&p->waiters);
    p->is_current = 1; /* the lessee's configuration lists it; adopt() may say otherwise */
    moat_list_push_back(&ps->pools, &p->node);
    ps->by_slot[t->slot] = p;
    return p;
}

static void wake_waiters(struct moat_pools *ps)
{
    if (!uv_is_closing((uv_handle_t *)&ps->wake))
        uv_idle_start(&ps->wake, on_wake);
}

/* After a connect: the target's shared state, and one log line per change of it. */
static void mark_backend(struct moat_upstream *up, int status)
{
    struct moat_target *t = up->target;
    if (!moat_target_mark(t, status, uv_now(up->ps->loop)))
        return;
    if (status == 0)
        moat_log(MOAT_LOG_INFO, "w%u backend %s answers again", up->ps->worker_id, t->addr_text);
    else
        moat_log(MOAT_LOG_WARN, "w%u backend %s marked down for %d s: %s", up->ps->worker_id,
                 t->addr_text, MOAT_TARGET_DOWN_MS / 1000,
                 status == UV_ETIMEDOUT ? "connect timed out" : uv_strerror(status));
}

static void on_up_closed(uv_handle_t *h)
{
    struct moat_upstream *up = h->data;
    if (--up->closes_pending == 0) {
        atomic_fetch_sub_explicit(&up->target->connections, 1, memory_order_relaxed);
        moat_target_unref(up->target);
        free(up);
    }
}

static void up_close(struct moat_upstream *up)
{
    if (up->state == UP_CLOSING)
        return;
    struct moat_pool *p = up->pool;
    if (up->state == UP_IDLE)
        p->n_idle--;
    p->n_open--; /* the slot is free for a waiting request */
    if (!moat_list_is_empty(&p->waiters))
        wake_waiters(up->ps);
    moat_list_remove(&up->node);
    up->state = UP_CLOSING;
    up->owner = NULL;
    up->closes_pending = 2;
    uv_close((uv_handle_t *)&up->tcp, on_up_closed);
    moat_deadline_close(&up->deadline, on_up_closed);
}

/* A pooled connection is usable only if the backend neither closed it nor sent anything: a FIN
 * that arrived in this loop iteration has not reached on_up_read yet, so ask the socket. */
static int up_is_stale(struct moat_upstream *up)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&up->tcp, &fd) != 0)
        return 1;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

static void on_up_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct moat_upstream *up = h->data;
    (void)suggested;
    buf->base = up->ps->slab;
    buf->len = up->ps->slab_len;
}

static void on_up_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct moat_upstream *up = s->data;
    if (nread == 0)
        return; /* nothing now */
    if (up->state != UP_ACTIVE || up->owner == NULL) {
        /* Idle: the backend closed (or sent bytes nobody asked for); it is no longer usable. */
        moat_log(MOAT_LOG_DEBUG, "w%u upstream %s idle connection ended: %s",
                 up->ps->worker_id, up->target->addr_text,
                 nread < 0 ? uv_err_name((int)nread) : "unexpected bytes");
        up_close(up);
        return;
    }
    if (nread > 0 && moat_deadline_is_due(&up->deadline))
        moat_deadline_again(&up->deadline); /* silence is measured from the last byte */
    up->ops->on_read(up->owner, buf->base, nread);
}

static void on_up_timer(void *owner)
{
    struct moat_upstream *up = owner;
    if (up->state == UP_IDLE) {
        up_close(up); /* expired before the backend's own idle timeout can bite */
        return;
    }
    if (up->owner == NULL)
        return;
    if (up->state == UP_CONNECTING) {
        mark_backend(up, UV_ETIMEDOUT);
        up->ops->on_connected(up->owner, UV_ETIMEDOUT); /* the owner releases us */
        return;
    }
    up->ops->on_silence(up->owner);
}

static void on_up_connect(uv_connect_t *req, int status)
{
    struct moat_upstream *up = req->data;
    if (status == UV_ECANCELED || up->state == UP_CLOSING)
        return;
    moat_deadline_stop(&up->deadline);
    if (status == 0) {
        up->state = UP_ACTIVE;
        uv_tcp_nodelay(&up->tcp, 1);
        if (up->rx_blocked == 0) /* the client may still be flushing an earlier response */
            status = uv_read_start((uv_stream_t *)&up->tcp, on_up_alloc, on_up_read);
    }
    mark_backend(up, status);
    if (up->owner != NULL)
        up->ops->on_connected(up->owner, status); /* on failure the owner releases us */
    else
        up_close(up);
}

int moat_upstream_lease(struct moat_pools *ps, const struct moat_runtime *rt, size_t backend,
                        unsigned flags, const struct moat_upstream_ops *ops, void *owner,
                        struct moat_up_waiter *waiter, struct moat_upstream **out)
{
    struct moat_target *t = rt->backends[backend].target;
    struct moat_pool *p = pool_of(ps, t);
    if (p == NULL)
        return UV_ENOMEM;
    while (!(flags & MOAT_LEASE_FRESH) && !moat_list_is_empty(&p->idle)) {
        struct moat_upstream *up = moat_list_entry(p->idle.prev, struct moat_upstream, node);
        moat_list_remove(&up->node);
        p->n_idle--;
        up->state = UP_ACTIVE;
        /* The loop saw no close or stray byte when it last polled, so only what arrived since
         * can make it stale. Backends close idle connections after their idle timeout (a second
         * or more) or announce it (Connection: close), so one pooled for less than
         * UNCHECKED_IDLE_MS is stale only if the backend died; a resendable request then goes
         * again on a fresh connection (the owner's stale retry), so the syscall is saved. */
        int is_recent = uv_now(ps->loop) - up->idle_since_ms < UNCHECKED_IDLE_MS;
        if (!((flags & MOAT_LEASE_RESENDABLE) && is_recent) && up_is_stale(up)) {
            up_close(up);
            continue;
        }
        moat_deadline_stop(&up->deadline);
        up->rt = rt;
        up->backend = backend;
        up->ops = ops;
        up->owner = owner;
        up->is_reused = 1;
        up->bytes_sent = 0;
        *out = up;
        return 0;
    }

    size_t max = rt->max_backend_conns;
    p->max_open = max;
    if (max != 0 && p->n_open >= max) {
        /* A stale idle connection closed above may have freed a slot: not yet counted out. */
        moat_list_push_back(&p->waiters, &waiter->node);
        return MOAT_UP_WAIT;
    }
    struct moat_upstream *up = calloc(1, sizeof(*up));
    if (up == NULL)
        return UV_ENOMEM;
    p->n_open++;
    moat_list_init(&up->node);
    up->ps = ps;
    up->pool = p;
    up->target = t;
    moat_target_ref(t);
    atomic_fetch_add_explicit(&t->connections, 1, memory_order_relaxed);
    up->rt = rt;
    up->backend = backend;
    up->state = UP_CONNECTING;
    up->ops = ops;
    up->owner = owner;
    up->tcp.data = up;
    up->wire.stream = (uv_stream_t *)&up->tcp;
    up->wire.on_done = on_up_write_done;
    up->connect_req.data = up;
    uv_tcp_init(ps->loop, &up->tcp);
    moat_deadline_init(ps->loop, &up->deadline, on_up_timer, up);
    int err = uv_tcp_connect(&up->connect_req, &up->tcp, (const struct sockaddr *)&t->addr,
                             on_up_connect);
    if (err != 0) {
        up_close(up);
        return err;
    }
    moat_deadline_start(&up->deadline, rt->connect_timeout_ms, 0);
    *out = up;
    return 0;
}

/* Hands the slots freed since the last turn to waiting requests: from a handle of its own,
 * outside the callback that freed them (a woken request leases, which can free a slot again). */
static void on_wake(uv_idle_t *h)
{
    struct moat_pools *ps = h->data;
    uv_idle_stop(h);
    for (struct moat_list *n = ps->pools.next; n != &ps->pools; n = n->next) {
        struct moat_pool *p = moat_list_entry(n, struct moat_pool, node);
        /* Each pass hands one slot over; the woken request leases (or queues) again. */
        size_t rounds = p->n_idle + (p->n_open < p->max_open ? p->max_open - p->n_open : 0);
        while (rounds-- > 0 && !moat_list_is_empty(&p->waiters)) {
            struct moat_up_waiter *waiter =
                moat_list_entry(p->waiters.next, struct moat_up_waiter, node);
            moat_list_remove(&waiter->node);
            waiter->on_slot(waiter);
        }
    }
}

void moat_upstream_release(struct moat_upstream *up, int reuse)
{
    if (up == NULL)
        return;
    const struct moat_runtime *rt = up->rt;
    struct moat_pool *p = up->pool;
    up->owner = NULL;
    up->rt = NULL;
    int is_maint = atomic_load_explicit(&up->target->admin_state, memory_order_relaxed) ==
                   MOAT_TARGET_MAINT;
    if (!reuse || up->state != UP_ACTIVE || up->wire.inflight != 0 || up->ps->is_draining ||
        !p->is_current || is_maint || p->n_idle >= rt->pool_max_idle) {
        up_close(up);
        return;
    }
    up->state = UP_IDLE;
    up->idle_since_ms = uv_now(up->ps->loop);
    moat_list_push_back(&p->idle, &up->node);
    p->n_idle++;
    if (!moat_list_is_empty(&p->waiters))
        wake_waiters(up->ps); /* a waiting request can have this one */
    /* Watch for the backend's close while idle, whatever the last lessee had stopped. */
    up->rx_blocked = 0;
    int err = uv_read_start((uv_stream_t *)&up->tcp, on_up_alloc, on_up_read);
    if (err != 0 && err != UV_EALREADY) {
        up_close(up);
        return;
    }
    uint64_t ms = rt->pool_idle_ms;
    if (up->keepalive_ms != 0 && up->keepalive_ms < ms)
        ms = up->keepalive_ms;
    moat_deadline_start(&up->deadline, ms, 0);
}

static void on_up_write_done(struct moat_wire *wire, int status)
{
    struct moat_upstream *up = moat_wire_owner(wire, struct moat_upstream, wire);
    if (status == UV_ECANCELED || up->owner == NULL)
        return;
    if (status < 0) {
        up->ops->on_read(up->owner, NULL, status);
        return;
    }
    up->bytes_sent = 1;
    if (up->wire.inflight <= up->rt->low_water)
        up->ops->on_drained(up->owner);
}

int moat_upstream_write(struct moat_upstream *up, struct moat_bufq *q)
{
    long r = moat_wire_send(&up->wire, q);
    if (r < 0)
        return (int)r;
    if (r > 0)
        up->bytes_sent = 1;
    return 0;
}

void moat_upstream_rx_block(struct moat_upstream *up, unsigned why)
{
    if (up->rx_blocked == 0 && up->state == UP_ACTIVE) {
        uv_read_stop((uv_stream_t *)&up->tcp);
        /* We stopped reading: the backend's silence is ours, not its fault. */
        moat_deadline_pause(&up->deadline);
    }
    up->rx_blocked |= why;
}

void moat_upstream_rx_unblock(struct moat_upstream *up, unsigned why)
{
    unsigned before = up->rx_blocked;
    up->rx_blocked &= ~why;
    if (before == 0 || up->rx_blocked != 0 || up->state != UP_ACTIVE)
        return;
    uv_read_start((uv_stream_t *)&up->tcp, on_up_alloc, on_up_read);
    moat_deadline_again(&up->deadline); /* a silence deadline, if set, runs again from now */
}

void moat_upstream_set_deadline(struct moat_upstream *up, uint64_t ms)
{
    if (ms == 0)
        moat_deadline_stop(&up->deadline);
    else /* repeating, so moat_deadline_again() can move it on with every byte */
        moat_deadline_start(&up->deadline, ms, 1);
}

int moat_upstream_is_ready(const struct moat_upstream *up)
{
    return up->state == UP_ACTIVE;
}

size_t moat_upstream_backend(const struct moat_upstream *up)
{
    return up->backend;
}

size_t moat_upstream_inflight(const struct moat_upstream *up)
{
    return up->wire.inflight;
}

int moat_upstream_was_pooled(const struct moat_upstream *up)
{
    return up->is_reused;
}

int moat_upstream_has_sent(const struct moat_upstream *up)
{
    return up->bytes_sent;
}

void moat_upstream_set_keepalive(struct moat_upstream *up, uint64_t ms)
{
    up->keepalive_ms = ms;
}
