/* config/config.h: moat's immutable configuration model and its CLI-flag loader. Plain C only:
 * no sockets, no logging, no libuv; addresses are text plus parsed numbers. */
#ifndef MOAT_CONFIG_H
#define MOAT_CONFIG_H
#include <stddef.h>
#include <stdint.h>

#define MOAT_CFG_MAX_CERTS 100000 /* certificate/key pairs per listener */

/* A HOST:PORT as written by the user. host is a name, an IPv4 literal, or an IPv6 literal
 * (written "[::1]:8443", stored without brackets). */
struct moat_cfg_hostport {
    char host[256];  /* NUL-terminated; no brackets */
    uint16_t port;   /* 0 allowed only where the caller allows it (listeners: "pick one") */
    int is_ipv6;     /* the host is an IPv6 literal */
};

/* An address range: family 4 or 6, addr in network byte order (4 or 16 bytes used). */
struct moat_cfg_cidr {
    int family;          /* 4 or 6 */
    uint8_t addr[16];    /* host bits are zero */
    unsigned prefix_len; /* 0..32 or 0..128 */
};

struct moat_cfg_cert {
    char *cert_file; /* owned; PEM, leaf first then chain */
    char *key_file;  /* owned; PEM private key */
};

/* One listening address and the TLS it speaks. Each certificate serves the names of its
 * subjectAltName (clients choose by SNI); the first is the default for clients that send no
 * name or one no certificate has. */
struct moat_cfg_listener {
    struct moat_cfg_hostport addr;
    struct moat_cfg_cert *certs; /* owned array */
    size_t n_certs;  /* certs listed; with no dirs either: the development certificate */
    char **cert_dirs; /* owned array of owned paths: every pair found in each (X.crt + X.key,
                       * or X.pem holding both) */
    size_t n_cert_dirs;
    int strict_sni;  /* refuse clients whose name no certificate has (none sent included) */
    int tls_min;     /* lowest TLS version accepted: 12 (default) or 13 */
    int client_auth; /* client certificates: MOAT_CFG_CLIENT_AUTH_* */
    char *client_ca_file;  /* owned: the CAs a client certificate must chain to */
    char *client_crl_file; /* owned: revoked client certificates (PEM CRL), or NULL */
    char *hsts;      /* owned: the Strict-Transport-Security value added to every backend
                      * response without one ("max-age=31536000; includeSubDomains"), or NULL */
};

enum {
    MOAT_CFG_CLIENT_AUTH_OFF = 0,  /* no client certificate is asked for */
    MOAT_CFG_CLIENT_AUTH_OPTIONAL, /* asked for; a client without one is served; a bad one is
                                    * refused */
    MOAT_CFG_CLIENT_AUTH_REQUIRED, /* a client without a good one is refused */
};

#define MOAT_CFG_HSTS_PRELOAD_MIN_AGE 31536000 /* the preload list's least max-age (1 year) */

#define MOAT_CFG_MAX_WEIGHT 256

/* One backend of a pool. */
struct moat_cfg_backend {
    struct moat_cfg_hostport addr; /* a name is resolved by proxy/ */
    unsigned weight; /* its share of new requests against the pool's others: 0 (none) to
                      * MOAT_CFG_MAX_WEIGHT; 1 unless set */
};

/* How a pool chooses a backend for a new request. */
enum moat_cfg_balance {
    MOAT_CFG_BALANCE_ROUND_ROBIN = 0, /* smooth weighted round robin (the default) */
    MOAT_CFG_BALANCE_RANDOM,          /* weighted random */
    MOAT_CFG_BALANCE_LEAST_REQUEST,   /* the fewer in-flight requests of two random members */
    MOAT_CFG_BALANCE_HASH,            /* rendezvous hashing of hash_by: same key, same backend */
};

/* What balance: hash hashes. */
enum moat_cfg_hash_by {
    MOAT_CFG_HASH_CLIENT_IP = 0, /* the client's address (as X-Forwarded-For gets it) */
    MOAT_CFG_HASH_HEADER,        /* a request header's value (hash_name) */
    MOAT_CFG_HASH_COOKIE,        /* a cookie's value (hash_name) */
    MOAT_CFG_HASH_URI,           /* the request target, query included */
    MOAT_CFG_HASH_PATH,          /* the target's path */
    MOAT_CFG_HASH_HOST,          /* the Host */
};

enum moat_cfg_same_site { MOAT_CFG_SAME_SITE_NONE = 0, MOAT_CFG_SAME_SITE_LAX,
                          MOAT_CFG_SAME_SITE_STRICT };

/* A pool's active health check; path NULL: none. */
struct moat_cfg_health {
    char *path;             /* owned: "GET path" (origin form), or NULL: no checks */
    char *host;             /* owned: the Host sent, or NULL: the backend's address */
    uint64_t interval_ms;   /* between checks of one backend (10 % jitter) */
    uint64_t timeout_ms;    /* a check's answer must come within */
    unsigned rise, fall;    /* passes that bring a backend back, failures that take it out */
    unsigned expect_lo, expect_hi; /* the statuses that pass */
};

/* A named group of backends. */
struct moat_cfg_pool {
    char *name;                        /* owned; "default" for --backend flags */
    struct moat_cfg_backend *backends; /* owned array, at least one */
    size_t n_backends;
    enum moat_cfg_balance balance;
    enum moat_cfg_hash_by hash_by;     /* balance hash only */
    char *hash_name;                   /* owned: the header's or cookie's name, else NULL */
    char *sticky_cookie;               /* owned: the sticky-session cookie's name, or NULL */
    enum moat_cfg_same_site sticky_same_site;
    unsigned passive_errors;           /* failures in a row that eject a backend; 0: never */
    uint64_t passive_ejection_ms;      /* its first ejection; repeats are longer */
    struct moat_cfg_health health;
    uint64_t slow_start_ms;            /* a backend back from a failure ramps up over this;
                                        * 0: at once */
    unsigned retry_attempts;           /* tries on other backends after the first (0-5) */
    unsigned retry_budget_pct;         /* retries at once: this share of requests in flight */
};

#define MOAT_CFG_PASSIVE_ERRORS 5
#define MOAT_CFG_PASSIVE_EJECTION_MS 10000

/* A pool's defaults (passive health on), before a loader fills it. */
void moat_cfg_pool_init(struct moat_cfg_pool *pool);

/* Requests whose Host matches host and whose path starts with path_prefix go to pool. */
struct moat_cfg_route {
    char *host;        /* owned; lower case, no port; "*.example.com" matches any subdomain;
                        * NULL: any host */
    char *path_prefix; /* owned; starts with '/' ("/" matches every path) */
    size_t pool;       /* index into moat_cfg.pools */
};

/* Where and how often backend names are resolved while moat runs. */
#define MOAT_CFG_MAX_RESOLVERS 4
struct moat_cfg_resolver {
    struct moat_cfg_hostport servers[MOAT_CFG_MAX_RESOLVERS]; /* DNS servers, tried in order */
    size_t n_servers;    /* 0: the system's (/etc/resolv.conf) */
    uint64_t refresh_ms; /* a name is asked again after min(its TTL, this), never under 1 s;
                          * 0: once, at start and reload (default 5000) */
    uint64_t hold_ms;    /* a name that stops existing keeps its addresses this long
                          * (default 30000) */
};

#define MOAT_CFG_DEFAULT_DNS_REFRESH_MS 5000
#define MOAT_CFG_DEFAULT_DNS_HOLD_MS 30000

enum moat_cfg_access_format {
    MOAT_CFG_ACCESS_MOAT = 0, /* moat's own key=value line (default) */
    MOAT_CFG_ACCESS_COMBINED, /* nginx's and Apache's "combined" */
    MOAT_CFG_ACCESS_JSON,     /* one JSON object per line */
};

/* Everything moat runs with. Built once by a loader, then read-only (shared by all workers). */
struct moat_cfg {
    struct moat_cfg_listener *listeners; /* owned array, at least one */
    size_t n_listeners;
    struct moat_cfg_pool *pools;         /* owned array, at least one */
    size_t n_pools;
    struct moat_cfg_route *routes;       /* owned array; tried in order, first match wins */
    size_t n_routes;
    size_t default_pool;                 /* index into pools: requests no route matches */
    struct moat_cfg_resolver resolver;
    struct moat_cfg_cidr *trusted_proxies; /* owned array */
    size_t n_trusted_proxies;
    unsigned workers;          /* >= 1; default: number of CPUs (set by the caller's default) */
    char *state_dir;           /* owned; NULL: $MOAT_STATE_DIR, $XDG_STATE_HOME/moat, ~/.local/state/moat */
    int log_level;             /* MOAT_CFG_LOG_* */
    int access_log;            /* 1: one line per request (default), 0: off */
    enum moat_cfg_access_format access_format;
    char *access_log_file;     /* owned; NULL: stdout; "stderr"/"stdout": those; else a path
                                * opened for appending (reopened on SIGUSR1) */
    int has_redirect;          /* a plain-HTTP listener redirects to https:// (308) */
    struct moat_cfg_hostport redirect; /* where it listens (port 80, usually) */
    unsigned redirect_https_port; /* the port Location names (443: none); 0: the first
                                   * listener's */
    int has_admin;             /* the admin listener is on */
    int admin_writes;          /* PUT /backends/...: -1 only on a loopback address (default),
                                * 1 wherever it listens, 0 never */
    struct moat_cfg_hostport admin; /* plain HTTP: /metrics /healthz /readyz (default
                                     * 127.0.0.1:9901 when on) */
    char *user;                /* owned; NULL: keep the starting user; else drop to it after
                                * opening the ports */
    char *group;               /* owned; NULL: the user's primary group */
    char *config_file;         /* owned; the YAML file this came from, NULL for flags */
    char *tls_key_log;         /* owned: debug.tls_key_log, every session's secrets appended
                                * here (debugging only); NULL: none */
    uint64_t drain_timeout_ms; /* SIGTERM: in-flight requests get this long (default 30000) */

    /* Timeouts, in milliseconds, each > 0 (defaults: MOAT_CFG_DEFAULT_*). */
    uint64_t handshake_timeout_ms; /* the TLS handshake must finish within */
    uint64_t head_timeout_ms;      /* a request head must arrive whole within, from its first
                                    * byte (the first request: from the handshake's end) */
    uint64_t idle_timeout_ms;      /* keep-alive: wait for the next request's first byte */
    uint64_t body_timeout_ms;      /* longest silence inside a request body */
    uint64_t connect_timeout_ms;   /* backend TCP connect */
    uint64_t backend_timeout_ms;   /* longest backend silence while a response is due */
    uint64_t pool_idle_timeout_ms; /* longest life of an idle pooled backend connection */
    uint64_t tunnel_timeout_ms;    /* a WebSocket tunnel silent both ways this long is closed */
    uint64_t send_timeout_ms;      /* a client that takes none of the bytes moat has for it this
                                    * long is cut off (write stall) */

    /* Limits (defaults: MOAT_CFG_DEFAULT_*). */
    size_t max_head_bytes;   /* request line and header fields: 431 beyond */
    size_t max_headers;      /* header fields: 431 beyond */
    size_t max_target_bytes; /* request-target: 414 beyond */
    uint64_t max_body_bytes; /* request body: 413 beyond; 0: unlimited */
    size_t max_connections;  /* client connections per worker; beyond it accepting pauses */
    size_t max_backend_connections; /* per backend per worker; then requests wait; 0: none */
};

#define MOAT_CFG_DEFAULT_ADMIN_PORT 9901
#define MOAT_CFG_DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define MOAT_CFG_DEFAULT_HEAD_TIMEOUT_MS 10000
#define MOAT_CFG_DEFAULT_IDLE_TIMEOUT_MS 60000
#define MOAT_CFG_DEFAULT_BODY_TIMEOUT_MS 60000
#define MOAT_CFG_DEFAULT_SEND_TIMEOUT_MS 60000
#define MOAT_CFG_DEFAULT_CONNECT_TIMEOUT_MS 5000
#define MOAT_CFG_DEFAULT_BACKEND_TIMEOUT_MS 60000
#define MOAT_CFG_DEFAULT_POOL_IDLE_TIMEOUT_MS 15000
#define MOAT_CFG_DEFAULT_TUNNEL_TIMEOUT_MS 3600000
#define MOAT_CFG_DEFAULT_MAX_HEAD_BYTES 16384
#define MOAT_CFG_DEFAULT_MAX_HEADERS 100
#define MOAT_CFG_DEFAULT_MAX_TARGET_BYTES 8192
#define MOAT_CFG_DEFAULT_MAX_CONNECTIONS 10000

enum moat_cfg_log_level {
    MOAT_CFG_LOG_ERROR = 0,
    MOAT_CFG_LOG_WARN = 1,
    MOAT_CFG_LOG_INFO = 2,
    MOAT_CFG_LOG_DEBUG = 3,
};

/* What moat_cfg_from_argv() found on the command line. */
enum moat_cfg_result {
    MOAT_CFG_RUN = 0,      /* *out holds a configuration to run */
    MOAT_CFG_HELP = 1,     /* --help: print moat_cfg_usage(), exit 0 */
    MOAT_CFG_VERSION = 2,  /* --version: print moat_cfg_version(), exit 0 */
    MOAT_CFG_CHECK = 3,    /* --check-config: *out holds a configuration to check, not run */
    MOAT_CFG_BAD_ARGS = -1, /* err says why; print it and the usage, exit 2 */
    MOAT_CFG_BAD_CONFIG = -2 /* the --config file is wrong: err lists every error, one per
                              * line; print it, exit 1 */
};

/* Parses a duration: "500ms", "30s", "5m", "1h", or a plain number of seconds ("2.5").
 * 0 < result <= 24 h. Returns 0 or -1. */
int moat_cfg_duration_parse(const char *text, uint64_t *ms);

/* Parses a size: "16k", "1m", "2g" (powers of 1024) or a plain number of bytes. Returns 0 or -1
 * (not a size, or above 2^50). */
int moat_cfg_size_parse(const char *text, uint64_t *bytes);

/* Parses argv (flags below) into a new configuration. default_workers is used when --workers is
 * absent (the caller passes the CPU count). Flags: --listen HOST:PORT (repeatable; default
 * 0.0.0.0:8443), --cert FILE / --key FILE (pairs, up to 2), --backend HOST:PORT (repeatable, at
 * least one), --workers N (1..256), --trusted-proxy CIDR (repeatable), --state-dir DIR,
 * --log-level error|warn|info|debug, --no-access-log, --drain-timeout SECONDS, --version, --help.
 * --handshake-timeout, --head-timeout, --idle-timeout, --body-timeout, --connect-timeout,
 * --backend-timeout, --pool-idle-timeout, --tunnel-timeout, --send-timeout (durations),
 * --max-head-size, --max-headers, --max-target-size, --max-body-size, --max-connections,
 * --max-backend-connections (limits).
 * --access-log-format moat|combined|json, --access-log stdout|stderr|FILE, --admin HOST:PORT,
 * --user NAME, --group NAME. --config FILE (-c) loads a YAML file instead and excludes every
 * other setting; --check-config (-t) asks for MOAT_CFG_CHECK.
 * "--flag=value" is accepted too. On MOAT_CFG_RUN and MOAT_CFG_CHECK *out is owned by the caller
 * (moat_cfg_free). Reads no file but the --config one: certificates are read by tls/. */
enum moat_cfg_result moat_cfg_from_argv(int argc, char **argv, unsigned default_workers,
                                        struct moat_cfg **out, char *err, size_t err_len);

/* Loads a YAML configuration file into a new model (every default set, as from the flags).
 * ${VAR} in a scalar is replaced from the environment. On error returns -1 and err lists every
 * error found, one per line, each "FILE:LINE:COLUMN: KEY: reason". Reads no certificate. */
int moat_cfg_load_yaml(const char *path, unsigned default_workers, struct moat_cfg **out,
                       char *err, size_t err_len);

/* moat_cfg_load_yaml() on len bytes already in memory (tests and the fuzzer); name stands for
 * the file in messages and in cfg->config_file. */
int moat_cfg_load_yaml_buffer(const char *name, const char *buf, size_t len,
                              unsigned default_workers, struct moat_cfg **out, char *err,
                              size_t err_len);

/* The pool for a request: the first route whose host matches (case-insensitive; a ":port" on
 * the Host value is ignored; "*.example.com" matches subdomains) and whose path_prefix starts
 * path; else cfg->default_pool. host may be NULL or empty (matches only routes without one). */
size_t moat_cfg_route_pick(const struct moat_cfg *cfg, const char *host, size_t host_len,
                           const char *path, size_t path_len);

/* The --help text. */
const char *moat_cfg_usage(void);

/* "moat 0.1.0" */
const char *moat_cfg_version(void);

void moat_cfg_free(struct moat_cfg *cfg); /* NULL: nothing */

/* Parses "host:port", "1.2.3.4:80", "[::1]:8443". allow_port_zero: listeners may ask for an
 * ephemeral port. Returns 0, or -1 with err set ("missing port in 'x'", ...). */
int moat_cfg_hostport_parse(const char *text, int allow_port_zero, struct moat_cfg_hostport *out,
                            char *err, size_t err_len);

/* The Strict-Transport-Security value for max_age seconds (0 to 2^31), includeSubDomains and
 * preload (which the preload list accepts only with includeSubDomains and a year or more).
 * Returns a new string, or NULL with err set. */
char *moat_cfg_hsts_value(uint64_t max_age, int include_subdomains, int preload, char *err,
                          size_t err_len);

/* 1 if hp's host is an IP address (nothing to resolve), 0 if it is a name. */
int moat_cfg_host_is_ip(const struct moat_cfg_hostport *hp);

/* Parses a backend as --backend gives it: "HOST:PORT" or "HOST:PORT,weight=N". Returns 0, or
 * -1 with err set. */
int moat_cfg_backend_parse(const char *text, struct moat_cfg_backend *out, char *err,
                           size_t err_len);

/* "round_robin", "random", "least_request", "hash". Returns 0, or -1 with err set. */
int moat_cfg_balance_parse(const char *text, enum moat_cfg_balance *out, char *err,
                           size_t err_len);

/* "client_ip", "header:NAME", "cookie:NAME", "uri", "path", "host" into pool's hash_by and
 * hash_name. Returns 0, -1 with err set, or -2 (out of memory). */
int moat_cfg_hash_key_parse(const char *text, struct moat_cfg_pool *pool, char *err,
                            size_t err_len);

/* A cookie name as RFC 6265 §4.1.1 allows (a token). Returns 0, or -1 with err set. */
int moat_cfg_cookie_name_check(const char *text, char *err, size_t err_len);

/* Parses a weight, "0" to MOAT_CFG_MAX_WEIGHT. Returns 0, or -1 with err set. */
int moat_cfg_weight_parse(const char *text, unsigned *out, char *err, size_t err_len);

/* Parses "10.0.0.0/8", "192.0.2.7" (a /32), "2001:db8::/32", "::1". Returns 0 or -1 with err. */
int moat_cfg_cidr_parse(const char *text, struct moat_cfg_cidr *out, char *err, size_t err_len);

/* 1 if addr (4 or 16 bytes in network order, per family 4 or 6) lies in c. An IPv4-mapped IPv6
 * address (::ffff:a.b.c.d) matches IPv4 ranges. */
int moat_cfg_cidr_contains(const struct moat_cfg_cidr *c, int family, const uint8_t *addr);

#endif
