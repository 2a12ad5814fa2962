/* proxy/worker.h: one worker thread: its libuv loop, its SO_REUSEPORT listeners, its TLS server
 * configuration, its client connections and its upstream pools. Nothing here is shared with
 * another worker except the read-only runtime (struct moat_runtime). */
#ifndef MOAT_WORKER_H
#define MOAT_WORKER_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "config/config.h"
#include "http/http.h"
#include "proxy/base/list.h"

struct moat_tls_ctx;
struct moat_tls_server;
struct moat_conn;
struct moat_metrics;

/* One backend, resolved once at start. */
struct moat_backend {
    char name[300];               /* "host:port" as configured, for logs */
    struct sockaddr_storage addr; /* resolved address */
    char addr_text[64];           /* "127.0.0.1:8080" / "[::1]:8080", for logs */
};

/* Timeouts, limits and watermarks in force; built by main() from the configuration. */
struct moat_runtime {
    const struct moat_cfg *cfg;    /* borrowed: outlives every worker */
    struct moat_backend *backends; /* owned by main(): cfg->n_backends entries */
    size_t n_backends;
    struct moat_tls_ctx *tls;      /* borrowed reference held by main() */
    struct moat_http_limits http_limits;
    uint64_t handshake_timeout_ms; /* TLS handshake must finish within */
    uint64_t head_timeout_ms;      /* a request head must arrive within, from its first byte */
    uint64_t idle_timeout_ms;      /* keep-alive wait for the next request's first byte */
    uint64_t body_gap_ms;          /* longest silence inside a request body */
    uint64_t connect_timeout_ms;   /* backend TCP connect */
    uint64_t backend_gap_ms;       /* longest silence from a backend while a response is due */
    uint64_t pool_idle_ms;         /* longest life of an idle pooled backend connection */
    uint64_t tunnel_idle_ms;       /* a tunnel silent both ways this long is closed */
    uint64_t linger_ms;            /* after our last byte: drain the client this long */
    size_t high_water;             /* stop reading the other side above this many queued bytes */
    size_t low_water;              /* resume at or below */
    size_t pool_max_idle;          /* idle connections kept per backend per worker */
    uint64_t max_body_bytes;       /* request body limit (413); 0: none */
    size_t max_connections;        /* client connections per worker; then accepting pauses */
    size_t max_backend_conns;      /* per backend per worker; then requests wait; 0: none */
};

struct moat_pool; /* upstream.c: idle connections of one backend */

struct moat_worker {
    unsigned id;                       /* 1-based, for logs */
    const struct moat_runtime *rt;     /* borrowed */
    uv_loop_t loop;
    uv_async_t wake;                   /* control thread -> worker: "stop" */
    uv_timer_t drain_timer;            /* drain deadline after stop */
    uv_tcp_t *listeners;               /* owned array of n_listeners */
    unsigned char *paused;             /* owned array: listener i waits for a free slot */
    size_t n_paused;
    int *listen_fds;                   /* owned array: bound sockets handed over by main() */
    size_t n_listeners;
    pthread_t thread;
    struct moat_tls_server *tls;       /* owned: this worker's mbedTLS configuration */
    struct moat_list conns;            /* every live client connection (struct moat_conn) */
    size_t n_conns;
    struct moat_pool *pools;           /* owned array: one per backend */
    size_t rr_next;                    /* round-robin cursor over rt->backends */
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
};

#define MOAT_HS_PER_TURN 2

/* Sets up the worker (loop, listeners on listen_fds, TLS server). Takes ownership of the fds.
 * Returns 0 or -1 after logging why. */
int moat_worker_init(struct moat_worker *w, unsigned id, const struct moat_runtime *rt,
                     int *listen_fds, size_t n_listeners);

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
