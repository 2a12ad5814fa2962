/* proxy/main.c: process start and stop. Reads the configuration, loads certificates, resolves
 * backends and binds every listening socket before any thread starts (so a bad start fails
 * before a port opens), then runs the workers and waits on the control loop for signals. */
#include <errno.h>
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "config/config.h"
#include "proxy/devcert.h"
#include "proxy/log.h"
#include "proxy/worker.h"
#include "proxy/admin.h"
#include "tls/tls.h"

/* What the configuration does not set: moat's own buffer and pool sizes. */
static const struct moat_runtime runtime_defaults = {
    .linger_ms = 2000,
    .high_water = 256 * 1024,
    .low_water = 64 * 1024,
    .pool_max_idle = 64,
};

/* The configuration's timeouts and limits, in the form the workers read them. */
static void runtime_from_cfg(const struct moat_cfg *cfg, struct moat_runtime *rt)
{
    *rt = runtime_defaults;
    rt->cfg = cfg;
    rt->handshake_timeout_ms = cfg->handshake_timeout_ms;
    rt->head_timeout_ms = cfg->head_timeout_ms;
    rt->idle_timeout_ms = cfg->idle_timeout_ms;
    rt->body_gap_ms = cfg->body_timeout_ms;
    rt->connect_timeout_ms = cfg->connect_timeout_ms;
    rt->backend_gap_ms = cfg->backend_timeout_ms;
    rt->pool_idle_ms = cfg->pool_idle_timeout_ms;
    rt->tunnel_idle_ms = cfg->tunnel_timeout_ms;
    rt->http_limits.max_head_bytes = cfg->max_head_bytes;
    rt->http_limits.max_fields = cfg->max_headers;
    rt->http_limits.max_target_bytes = cfg->max_target_bytes;
    rt->max_body_bytes = cfg->max_body_bytes;
    rt->max_connections = cfg->max_connections;
    rt->max_backend_conns = cfg->max_backend_connections;
}

struct control {
    struct moat_worker *workers; /* owned array */
    size_t n_workers;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    uv_signal_t sighup;
    int stopping;
};

static void format_addr(const struct sockaddr *sa, char *out, size_t cap)
{
    char ip[64] = "?";
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(a, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%d", ip, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        uv_ip4_name(a, ip, sizeof(ip));
        snprintf(out, cap, "%s:%d", ip, ntohs(a->sin_port));
    }
}

/* Resolves host:port once, at start (never on the request path). */
static int resolve(const struct moat_cfg_hostport *hp, int passive, struct sockaddr_storage *out)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0};
    char port[8];
    snprintf(port, sizeof(port), "%u", hp->port);
    struct addrinfo *res;
    int rc = getaddrinfo(hp->host, port, &hints, &res);
    if (rc != 0)
        return rc;
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/* One SO_REUSEPORT socket bound to addr; the kernel spreads connections over the workers'
 * sockets (libuv 1.44 has no UV_TCP_REUSEPORT, so the socket is made here). */
static int bind_reuseport(const struct sockaddr_storage *addr, char *err, size_t err_len)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, err_len, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (addr->ss_family == AF_INET6) /* [::] and 0.0.0.0 may both be listed */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    socklen_t len = addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                 : sizeof(struct sockaddr_in);
    if (bind(fd, (const struct sockaddr *)addr, len) != 0 || listen(fd, 511) != 0) {
        snprintf(err, err_len, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* fds[w][l]: the socket of listener l for worker w. Port 0 becomes the port the first worker's
 * socket got, so every worker listens on the same one. */
static int open_listeners(const struct moat_cfg *cfg, size_t n_workers, int **fds, char *names,
                          size_t names_cap)
{
    names[0] = '\0';
    for (size_t l = 0; l < cfg->n_listeners; l++) {
        const struct moat_cfg_hostport *hp = &cfg->listeners[l].addr;
        struct sockaddr_storage addr;
        int rc = resolve(hp, 1, &addr);
        if (rc != 0) {
            fprintf(stderr, "moat: error: --listen %s:%u: %s\n", hp->host, hp->port,
                    gai_strerror(rc));
            return -1;
        }
        for (size_t w = 0; w < n_workers; w++) {
            char err[256];
            int fd = bind_reuseport(&addr, err, sizeof(err));
            if (fd < 0) {
                fprintf(stderr, "moat: error: --listen %s:%u: %s\n", hp->host, hp->port, err);
                return -1;
            }
            fds[w][l] = fd;
            if (w == 0) {
                socklen_t len = sizeof(addr);
                getsockname(fd, (struct sockaddr *)&addr, &len);
            }
        }
        char name[80];
        format_addr((const struct sockaddr *)&addr, name, sizeof(name));
        size_t used = strlen(names);
        snprintf(names + used, names_cap - used, "%s%s", l == 0 ? "" : ",", name);
    }
    return 0;
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct control *ctl = s->data;
    if (signum == SIGHUP) {
        moat_log(MOAT_LOG_WARN, "main SIGHUP: configuration reload is not supported yet (#4)");
        return;
    }
    if (ctl->stopping)
        return;
    ctl->stopping = 1;
    moat_log(MOAT_LOG_INFO, "main %s: draining (up to %llu ms)", strsignal(signum),
             (unsigned long long)ctl->workers[0].rt->cfg->drain_timeout_ms);
    for (size_t i = 0; i < ctl->n_workers; i++)
        moat_worker_stop(&ctl->workers[i]);
    uv_close((uv_handle_t *)&ctl->sigterm, NULL);
    uv_close((uv_handle_t *)&ctl->sigint, NULL);
    uv_close((uv_handle_t *)&ctl->sighup, NULL);
    moat_admin_stop();
}

static int load_tls(const struct moat_cfg *cfg, struct moat_tls_ctx **out)
{
    struct moat_tls_pair pairs[MOAT_CFG_MAX_CERTS];
    struct moat_devcert_paths *dev = NULL;
    size_t n = cfg->listeners[0].n_certs;
    char err[1024];
    for (size_t i = 0; i < n; i++) {
        pairs[i].cert_file = cfg->listeners[0].certs[i].cert_file;
        pairs[i].key_file = cfg->listeners[0].certs[i].key_file;
    }
    if (n == 0) {
        dev = malloc(sizeof(*dev));
        if (dev == NULL || moat_devcert_ensure(cfg->state_dir, dev, err, sizeof(err)) != 0) {
            fprintf(stderr, "moat: error: %s\n", dev == NULL ? "out of memory" : err);
            free(dev);
            return -1;
        }
        pairs[0].cert_file = dev->cert;
        pairs[0].key_file = dev->key;
        n = 1;
        moat_log(MOAT_LOG_INFO,
                 "main development certificate %s cert=%s ca=%s (trust it: curl --cacert %s)",
                 dev->is_created ? "created" : "reused", dev->cert, dev->ca_cert, dev->ca_cert);
    }
    struct moat_tls_opts opts = {.pairs = pairs, .n_pairs = n};
    int rc = moat_tls_ctx_new(&opts, out, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "moat: error: %s\n", err);
    free(dev);
    return rc;
}

static int resolve_backends(const struct moat_cfg *cfg, struct moat_runtime *rt)
{
    rt->n_backends = cfg->pools[0].n_backends;
    rt->backends = calloc(cfg->pools[0].n_backends, sizeof(*rt->backends));
    if (rt->backends == NULL)
        return -1;
    for (size_t i = 0; i < cfg->pools[0].n_backends; i++) {
        const struct moat_cfg_hostport *hp = &cfg->pools[0].backends[i];
        struct moat_backend *b = &rt->backends[i];
        snprintf(b->name, sizeof(b->name), hp->is_ipv6 ? "[%s]:%u" : "%s:%u", hp->host, hp->port);
        int rc = resolve(hp, 0, &b->addr);
        if (rc != 0) {
            fprintf(stderr, "moat: error: --backend %s: %s\n", b->name, gai_strerror(rc));
            return -1;
        }
        format_addr((const struct sockaddr *)&b->addr, b->addr_text, sizeof(b->addr_text));
    }
    return 0;
}

/* Opens the listeners, starts the workers and runs the control loop (signals) until a drain
 * has finished. 0, or 1 after saying why. */
static int serve(const struct moat_runtime *rt)
{
    const struct moat_cfg *cfg = rt->cfg;
    size_t n_workers = cfg->workers;
    struct control ctl = {.n_workers = n_workers};
    ctl.workers = calloc(n_workers, sizeof(*ctl.workers));
    int **fds = calloc(n_workers, sizeof(*fds));
    int ok = ctl.workers != NULL && fds != NULL;
    for (size_t w = 0; ok && w < n_workers; w++) {
        fds[w] = calloc(cfg->n_listeners, sizeof(int));
        ok = fds[w] != NULL;
    }
    char listen_names[2048];
    if (!ok || open_listeners(cfg, n_workers, fds, listen_names, sizeof(listen_names)) != 0 ||
        moat_admin_start(uv_default_loop(), rt, ctl.workers, n_workers) != 0) {
        for (size_t w = 0; fds != NULL && w < n_workers; w++)
            free(fds[w]);
        free(fds);
        free(ctl.workers);
        return 1;
    }
    for (size_t w = 0; w < n_workers; w++) {
        if (moat_worker_init(&ctl.workers[w], (unsigned)w + 1, rt, fds[w], cfg->n_listeners) !=
            0)
            return 1;
    }
    free(fds); /* each worker owns its row now */

    char backend_names[2048] = "";
    for (size_t i = 0; i < rt->n_backends; i++) {
        size_t used = strlen(backend_names);
        snprintf(backend_names + used, sizeof(backend_names) - used, "%s%s", i ? "," : "",
                 rt->backends[i].name);
    }
    moat_log(MOAT_LOG_INFO, "main %s started listen=%s backends=%s workers=%zu tls=\"%s\"",
             moat_cfg_version(), listen_names, backend_names, n_workers,
             moat_tls_ctx_describe(rt->tls));

    uv_loop_t *loop = uv_default_loop();
    uv_signal_init(loop, &ctl.sigterm);
    uv_signal_init(loop, &ctl.sigint);
    uv_signal_init(loop, &ctl.sighup);
    ctl.sigterm.data = ctl.sigint.data = ctl.sighup.data = &ctl;
    uv_signal_start(&ctl.sigterm, on_signal, SIGTERM);
    uv_signal_start(&ctl.sigint, on_signal, SIGINT);
    uv_signal_start(&ctl.sighup, on_signal, SIGHUP);

    for (size_t w = 0; w < n_workers; w++) {
        if (moat_worker_start(&ctl.workers[w]) != 0) {
            moat_log(MOAT_LOG_ERROR, "main cannot start worker %zu", w + 1);
            return 1;
        }
    }
    uv_run(loop, UV_RUN_DEFAULT); /* returns once a signal closed the watchers */
    for (size_t w = 0; w < n_workers; w++)
        moat_worker_join(&ctl.workers[w]);
    uv_loop_close(loop);
    moat_admin_free();
    moat_log(MOAT_LOG_INFO, "main stopped%s", "");

    free(ctl.workers);
    return 0;
}

/* Loads certificates, resolves backends, then serves until a signal. 0, or 1 after saying why.
 * Start-up failures free what they made, so sanitizer builds stay leak-free on every path. */
static int run(const struct moat_cfg *cfg, int is_check)
{
    struct moat_runtime rt;
    runtime_from_cfg(cfg, &rt);
    int rc = 1;
    if (load_tls(cfg, &rt.tls) == 0 && resolve_backends(cfg, &rt) == 0) {
        if (is_check) {
            printf("configuration OK\n");
            rc = 0;
        } else {
            rc = serve(&rt);
        }
    }
    free(rt.backends);
    moat_tls_ctx_unref(rt.tls);
    return rc;
}

int main(int argc, char **argv)
{
    /* libuv writes without MSG_NOSIGNAL: a reset peer would otherwise kill the process. */
    signal(SIGPIPE, SIG_IGN);
    /* Every connection allocates and frees 16 KiB buffers all the time. With glibc's default
     * 128 KiB trim threshold a worker's heap top can shrink and regrow on every loop turn
     * (madvise, then page faults on the next allocation): a third of the CPU in a keep-alive
     * benchmark. Returning memory only beyond 8 MiB of free heap top stops that. */
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
    /* Each client costs a descriptor, and one more while it has a backend connection: the
     * usual soft limit of 1024 would refuse clients long before --max-connections. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }

    struct moat_cfg *cfg = NULL;
    static char err[16384]; /* a configuration file's errors, one per line */
    enum moat_cfg_result mode;
    switch (mode = moat_cfg_from_argv(argc, argv, uv_available_parallelism(), &cfg, err, sizeof(err))) {
    case MOAT_CFG_HELP:
        fputs(moat_cfg_usage(), stdout);
        return 0;
    case MOAT_CFG_VERSION:
        printf("%s\n", moat_cfg_version());
        return 0;
    case MOAT_CFG_BAD_ARGS:
        fprintf(stderr, "moat: %s\n\n%s", err, moat_cfg_usage());
        return 2;
    case MOAT_CFG_BAD_CONFIG:
        fprintf(stderr, "%s\n", err);
        return 1;
    case MOAT_CFG_RUN:
    case MOAT_CFG_CHECK:
        break;
    }
    moat_log_level = cfg->log_level;
    int rc = 1;
    if (moat_tls_global_init(err, sizeof(err)) != 0) {
        fprintf(stderr, "moat: error: %s\n", err);
    } else {
        rc = run(cfg, mode == MOAT_CFG_CHECK);
        moat_tls_global_free();
    }
    moat_cfg_free(cfg);
    return rc;
}
