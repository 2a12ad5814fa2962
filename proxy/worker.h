/* proxy/worker.h: one worker thread: its libuv loop, its SO_REUSEPORT listeners, its TLS server
 * configuration, its client connections and its upstream pools. Nothing here is shared with
 * another worker except the read-only runtime (struct moat_runtime) and the backends' state
 * (proxy/balance.h). */
#ifndef MOAT_WORKER_H
#define MOAT_WORKER_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "proxy/base/list.h"
#include "proxy/runtime.h"

struct moat_tls_ctx;
struct moat_tls_server;
struct moat_conn;
struct moat_metrics;

struct moat_picker; /* balance.c */
struct moat_pools;  /* upstream.c */
struct moat_worker;

/* A worker's side of one configuration snapshot: its TLS servers and its choosing state.
 * Connections and upstreams started under it keep it alive after a reload made a newer one
 * current; it is freed when the last of them is gone. */
struct moat_gen {
    struct moat_list node;          /* in w->old_gens once retired */
    struct moat_worker *w;          /* borrowed */
    struct moat_runtime *rt;        /* one reference held */
    struct moat_tls_servers *tls;   /* one reference: the listeners' TLS servers, shared by the
                                     * generations with the same certificates (DNS rebuilds) */
    struct moat_picker *picker;     /* owned: this worker's backend choice for rt's pools */
    size_t n_users;                 /* connections and upstreams started under it */
    int is_retired;                 /* no longer current: freed at n_users 0 */
};

/* One TLS server per listener (srv[i] for listener i), built for one configuration. */
struct moat_tls_servers {
    size_t refs; /* generations using it (the worker's thread only) */
    size_t n;
    struct moat_tls_server *srv[];
};

/* Connections and upstreams take and drop their generation with these. */
void moat_gen_hold(struct moat_gen *g);
void moat_gen_release(struct moat_gen *g);

/* The generation whose backends a new request of a connection started under g chooses among:
 * the worker's current one when it differs from g only by DNS answers, else g. */
struct moat_gen *moat_worker_members(struct moat_worker *w, struct moat_gen *g);

struct moat_worker {
    unsigned id;                       /* 1-based, for logs */
    struct moat_gen *gen;              /* owned: the current generation; new conns take it */
    struct moat_list old_gens;         /* retired generations still in use (by node) */
    _Atomic(struct moat_runtime *) next_rt; /* a reload for us to pick up, one reference */
    uv_loop_t loop;
    uv_async_t wake;                   /* control thread -> worker: "stop" or "reload" */
    uv_timer_t drain_timer;            /* drain deadline after stop */
    uv_tcp_t *listeners;               /* owned array of n_listeners */
    unsigned char *paused;             /* owned array: listener i waits for a free slot */
    size_t n_paused;
    int *listen_fds;                   /* owned array: bound sockets handed over by main() */
    size_t n_listeners;
    pthread_t thread;
    struct moat_list conns;            /* every live client connection (struct moat_conn) */
    size_t n_conns;
    uint64_t next_conn_id;
    int is_draining;                   /* stop was asked: no new requests on kept connections */
    atomic_int stop_requested;         /* set by the control thread before waking us */
    struct moat_metrics *metrics;      /* borrowed from the admin (NULL: off); we write it */
    /* Scratch space, valid only inside one callback (the loop is single-threaded). */
    char slab[65536];   /* every uv_read lands here; callers copy what they keep */
    char plain[16384];  /* decrypted client bytes */
    /* Plaintext for the client, coalesced into full TLS records: 16383 bytes, the most one
     * mbedTLS TLS 1.3 record carries (its content-type byte takes the 16384th), so a full stage
     * is one record, not a full one and a 1-byte one. */
    char stage[16383];
    size_t stage_len;   /* bytes in stage */
    struct moat_conn *stage_conn; /* borrowed: whose bytes are in stage */
    char head_buf[32768]; /* a serialized head */
    /* A handshake step costs 1-3 ms of CPU: at most MOAT_HS_PER_TURN run per loop turn and the
     * rest wait their turn in FIFO order, so a burst of new clients cannot stall the requests
     * of established ones for tens of milliseconds. */
    struct moat_list hs_queue; /* conns (by hs_node) whose handshake step waits */
    unsigned hs_budget;        /* steps left in this loop turn */
    uv_prepare_t hs_prepare;   /* refills the budget before each poll */
    uv_check_t hs_check;       /* runs waiting steps after each poll */
    uv_idle_t hs_idle;         /* keeps the poll from blocking while steps wait */
    struct moat_pools *pools;  /* owned: connections to backends, kept across reloads */
};

#define MOAT_HS_PER_TURN 2

/* Sets up the worker (loop, listeners on listen_fds, a generation for rt). Takes ownership of
 * the fds, and a reference on rt. Returns 0 or -1 after logging why. */
int moat_worker_init(struct moat_worker *w, unsigned id, struct moat_runtime *rt,
                     int *listen_fds, size_t n_listeners);

/* Thread-safe: new connections of this worker will use rt (the worker takes its own reference);
 * existing ones finish on theirs. */
void moat_worker_reload(struct moat_worker *w, struct moat_runtime *rt);

/* Starts the worker's thread. 0 or -1. */
int moat_worker_start(struct moat_worker *w);

/* Thread-safe: asks the worker to stop accepting, drain for drain_ms, and return. */
void moat_worker_stop(struct moat_worker *w);

/* Joins the thread and frees everything the worker owns. */
void moat_worker_join(struct moat_worker *w);

/* 1 if c may run a handshake step now (the turn's budget allows and nobody waits before it);
 * else c is queued and moat_conn_hs_turn(c) runs it later. */
int moat_worker_hs_admit(struct moat_worker *w, struct moat_conn *c);

/* Connections call this when they are freed. */
void moat_worker_conn_gone(struct moat_worker *w);

#endif
