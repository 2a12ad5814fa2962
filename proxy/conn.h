/* proxy/conn.h: one client connection: TLS session, request parsing, the exchange with a
 * leased upstream, and its orderly or abortive end. */
#ifndef MOAT_CONN_H
#define MOAT_CONN_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "http/http.h"
#include "proxy/base/bufq.h"
#include "proxy/balance.h"
#include "proxy/base/list.h"
#include "proxy/deadline.h"
#include "proxy/upstream.h"
#include "proxy/wire.h"

struct moat_worker;
struct moat_gen;
struct moat_runtime;
struct moat_upstream;
struct moat_access_req;

enum moat_conn_state {
    MOAT_CONN_HANDSHAKE, /* TLS handshake running; parser idle; no upstream */
    MOAT_CONN_HEAD,      /* reading a request head; no upstream leased */
    MOAT_CONN_RELAY,     /* a request is being served: upstream leased or being chosen */
    MOAT_CONN_TUNNEL,    /* after 101 Switching Protocols: bytes both ways, no HTTP */
    MOAT_CONN_SHUTDOWN,  /* our last bytes are flushing, then shutdown and a bounded linger */
    MOAT_CONN_CLOSING,   /* handles closing; only close callbacks still run */
};

/* One request and its response. Reset between requests. */
struct moat_exchange {
    enum moat_http_method method;
    int minor;                /* the client's HTTP/1.<minor> */
    int is_keep_alive;        /* the client connection may carry another request after this */
    int is_head_timed;        /* the head timer runs since this request's first byte */
    int has_head;             /* the request head was parsed */
    int req_done;             /* the whole request was parsed (and queued for the backend) */
    int resp_started;         /* a byte of the response arrived from the backend */
    int head_sent;            /* the response head went to the client */
    int resp_done;            /* the whole response was relayed */
    int up_reusable;          /* the backend allows another request on its connection */
    int status;               /* status sent to the client, 0 before */
    struct moat_http_resp_plan plan; /* how the response body is framed to the client */
    /* Held from the head on: the backends this request chooses among. The worker's newest
     * snapshot when it differs from the connection's only by DNS answers, so a keep-alive
     * client follows a backend's new address; else the connection's own. */
    struct moat_gen *gen;
    const struct moat_runtime *rt; /* gen->rt: pools, backends (the rest is the conn's rt) */
    size_t pool;              /* the routes' choice: an index into rt->pools */
    size_t backend;           /* the backend tried last (an index into rt->backends) */
    int req_chunked;          /* the request body is re-chunked toward the backend */
    int is_upgrade;           /* the request asks for a protocol upgrade (Upgrade: websocket) */
    int is_waiting;           /* queued for a backend slot (--max-backend-connections) */
    int tries;                /* connection attempts made for this request */
    int is_counted;           /* in flight on backend for the picker (least_request) */
    int is_reported;          /* passive health heard how this attempt on backend went */
    int is_retry;             /* holds one of the retry budget's places */
    int retry_503;            /* the backend's 503 is dropped: the request goes elsewhere */
    struct moat_pick_req pick; /* what the request offers the choice (pinned: see below) */
    char pinned[17];          /* the sticky cookie's value the client sent, "" if none */
    char *replay;             /* owned: copy of the request bytes while small enough to resend */
    size_t replay_len;
    int replay_ok;            /* replay holds the whole request sent so far */
    uint64_t start_ms;        /* loop time of the first byte */
    uint64_t body_bytes_out;  /* response body bytes relayed to the client */
    uint64_t body_bytes_in;   /* request body bytes received from the client */
    uint64_t up_start_ms;     /* loop time a backend was first chosen (tries > 0) */
    struct moat_access_req *log_req; /* owned: what the access log keeps of the head */
    char request_id[MOAT_HTTP_REQUEST_ID_MAX + 1]; /* sent to the backend and logged; "" before
                                                    * the head (or until the log line) */
};

struct moat_conn {
    struct moat_list node;       /* in w->conns */
    struct moat_list hs_node;    /* in w->hs_queue while a handshake step waits its turn */
    int hs_granted;              /* the worker gave this conn a handshake step */
    struct moat_up_waiter waiter; /* queued while a backend slot is awaited */
    struct moat_worker *w;       /* borrowed */
    struct moat_gen *gen;        /* held: the configuration this connection started under */
    const struct moat_runtime *rt; /* gen->rt: its timeouts, limits, backends */
    size_t listener;             /* which of rt->cfg->listeners accepted it */
    /* On a listener that asks for client certificates, the verified one as RFC 9440 field
     * values, made at the first request (owned; NULL: none, or not made yet). */
    char *client_cert, *client_cert_chain;
    int has_client_cert;         /* client_cert* were made */
    uint64_t id;
    uv_tcp_t tcp;
    struct moat_deadline deadline; /* the current state's timeout */
    /* Whatever the state: armed while bytes for the client wait in uv_write, it cuts the
     * connection once the client has taken none of them for --send-timeout. */
    struct moat_deadline send_deadline;
    uint64_t send_taken;         /* bytes of cli_wire the kernel had taken at the last check */
    uint64_t send_progress_ms;   /* loop time that count last grew, or the wait began */
    uv_shutdown_t shutdown_req;
    enum moat_conn_state state;
    int closes_pending;          /* handles not yet closed; conn freed at 0 */
    struct moat_tls_session *tls;    /* owned */
    struct moat_http_parser *req;    /* owned: requests from the client */
    struct moat_http_parser *resp;   /* owned: responses from upstreams (created on first use) */
    struct moat_bufq to_cli;     /* ciphertext for the client not yet handed to uv_write */
    struct moat_wire cli_wire;   /* writes to tcp; counts ciphertext in uv_write */
    struct moat_bufq to_up;      /* request bytes for the backend not yet handed to uv_write */
    char *pending;               /* owned: plaintext received after a complete request */
    size_t pending_len;
    unsigned rx_blocked;         /* MOAT_RX_* reasons client reads are (or may be) stopped */
    int rx_stopped;              /* uv_read_stop() is in effect */
    int peer_eof;                /* the client will send nothing more */
    int tls_started;             /* a byte was fed to the TLS session */
    int is_plain_reject;         /* plain HTTP on the TLS port: raw 400, no TLS */
    int shutdown_started;
    struct moat_upstream *up;    /* leased */
    struct moat_exchange ex;
    char peer[64];               /* "198.51.100.7:50122", for logs */
    char peer_ip[48];            /* "198.51.100.7", for X-Forwarded-For and the access log */
    int is_trusted;              /* peer lies in a --trusted-proxy range */
};

/* Takes a freshly accepted connection from server. Logs and drops it on failure. */
void moat_conn_accept(struct moat_worker *w, uv_stream_t *server);

/* Drain: idle connections end now (orderly), busy ones after their current response. */
void moat_conn_drain(struct moat_conn *c);

/* Closes at once (no close_notify): a timeout, an error and EOF may all land here. */
void moat_conn_close(struct moat_conn *c);

/* The worker grants a queued handshake step (worker.c). */
void moat_conn_hs_turn(struct moat_conn *c);

#endif
