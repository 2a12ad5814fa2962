/* proxy/main.c: process start, reload and stop. Reads the configuration, loads certificates,
 * resolves backends and binds every listening socket before any thread starts (so a bad start
 * fails before a port opens), drops privileges, then runs the workers and waits on the control
 * loop for signals: SIGHUP reloads, SIGTERM and SIGINT drain. */
#include <errno.h>
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "config/config.h"
#include "proxy/log.h"
#include "proxy/privs.h"
#include "proxy/redirect.h"
#include "proxy/runtime.h"
#include "proxy/worker.h"
#include "proxy/admin.h"
#include "proxy/certfiles.h"
#include "proxy/certwatch.h"
#include "proxy/dns.h"
#include "proxy/health.h"
#include "proxy/keylog.h"
#include "tls/tls.h"

struct control {
    int argc;                    /* the command line, parsed again on every reload */
    char **argv;
    unsigned default_workers;
    struct moat_runtime *rt;     /* one reference: the snapshot new connections get */
    uint64_t generation;         /* 1 at start, +1 per successful reload */
    struct moat_dns *dns;        /* owned: the backends' names, kept fresh */
    struct moat_certwatch *watch; /* owned: the certificate files' directories */
    struct moat_worker *workers; /* owned array */
    size_t n_workers;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    uv_signal_t sighup;
    uv_signal_t sigusr1; /* reopens the access-log file (logrotate) */
    int stopping;
};

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
                          size_t names_cap, unsigned *first_port)
{
    names[0] = '\0';
    for (size_t l = 0; l < cfg->n_listeners; l++) {
        const struct moat_cfg_hostport *hp = &cfg->listeners[l].addr;
        struct sockaddr_storage addr;
        int rc = moat_resolve(hp, 1, &addr);
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
        moat_format_addr((const struct sockaddr *)&addr, name, sizeof(name));
        if (l == 0)
            *first_port = ntohs(addr.ss_family == AF_INET6
                                    ? ((const struct sockaddr_in6 *)&addr)->sin6_port
                                    : ((const struct sockaddr_in *)&addr)->sin_port);
        size_t used = strlen(names);
        snprintf(names + used, names_cap - used, "%s%s", l == 0 ? "" : ",", name);
    }
    return 0;
}

/* What a reload cannot change in a running process: sockets, threads, identity, log files. */
static const char *start_only_change(const struct moat_cfg *a, const struct moat_cfg *b)
{
    if (a->n_listeners != b->n_listeners)
        return "listeners";
    for (size_t i = 0; i < a->n_listeners; i++)
        if (a->listeners[i].addr.port != b->listeners[i].addr.port ||
            strcmp(a->listeners[i].addr.host, b->listeners[i].addr.host) != 0)
            return "listeners";
    return NULL;
}

static int same_text(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Settings read at start only: b (the new configuration) is given a's running values, with a
 * warning for each that differed. */
static void keep_start_settings(const struct moat_cfg *a, struct moat_cfg *b)
{
    const char *kept[12];
    size_t n = 0;
    if (a->workers != b->workers)
        kept[n++] = "workers";
    if (!same_text(a->user, b->user) || !same_text(a->group, b->group))
        kept[n++] = "user/group";
    /* The access log's sink is opened (or not) at start: turning it on later would write to
     * stdout whatever the target says. Its format does reload. */
    if (a->log_level != b->log_level || a->access_log != b->access_log ||
        !same_text(a->access_log_file, b->access_log_file))
        kept[n++] = "log level/access log on-off and target";
    b->access_log = a->access_log;
    if (a->has_admin != b->has_admin || a->admin.port != b->admin.port ||
        strcmp(a->admin.host, b->admin.host) != 0 || a->admin_writes != b->admin_writes)
        kept[n++] = "admin listener";
    int same_servers = a->resolver.n_servers == b->resolver.n_servers;
    for (size_t i = 0; same_servers && i < a->resolver.n_servers; i++)
        same_servers = a->resolver.servers[i].port == b->resolver.servers[i].port &&
                       strcmp(a->resolver.servers[i].host, b->resolver.servers[i].host) == 0;
    if (!same_servers)
        kept[n++] = "resolver servers";
    if (!same_text(a->tls_key_log, b->tls_key_log))
        kept[n++] = "debug.tls_key_log";
    if (a->has_redirect != b->has_redirect || a->redirect.port != b->redirect.port ||
        strcmp(a->redirect.host, b->redirect.host) != 0 ||
        a->redirect_https_port != b->redirect_https_port)
        kept[n++] = "redirect listener";
    for (size_t i = 0; i < n; i++)
        moat_log(MOAT_LOG_WARN, "main reload: %s can only change at a restart; keeping the "
                 "running value", kept[i]);
}

/* rt (its one reference taken over) becomes the snapshot of every new connection, and of every
 * new request that differs from it only by DNS answers. */
static void publish(struct control *ctl, struct moat_runtime *rt)
{
    moat_admin_map(rt); /* before any worker sees it: the snapshot is read-only from then on */
    moat_health_apply(uv_default_loop(), rt);
    rt->n_workers = (unsigned)ctl->n_workers;
    for (size_t i = 0; i < ctl->n_workers; i++)
        moat_worker_reload(&ctl->workers[i], rt);
    moat_runtime_unref(ctl->rt);
    ctl->rt = rt;
}

static int swap_certificates(void *arg, const char *why, char *msg, size_t cap);

/* Builds a new snapshot from the same command line (and so the same --config file, re-read)
 * and hands it to every worker. On any error the running snapshot stays. */
static void reload(struct control *ctl)
{
    static char err[16384];
    struct moat_cfg *cfg = NULL;
    enum moat_cfg_result r = moat_cfg_from_argv(ctl->argc, ctl->argv, ctl->default_workers,
                                                &cfg, err, sizeof(err));
    if (r != MOAT_CFG_RUN && r != MOAT_CFG_CHECK) {
        for (char *p = err; *p != '\0'; p++) /* one log line, however many errors */
            if (*p == '\n')
                *p = ' ';
        moat_log(MOAT_LOG_ERROR, "main reload failed, the running configuration stays: %s", err);
        return;
    }
    const char *fixed = start_only_change(ctl->rt->cfg, cfg);
    if (fixed != NULL) {
        moat_log(MOAT_LOG_ERROR, "main reload refused, the running configuration stays: %s "
                 "changed (addresses can only change at a restart)", fixed);
        moat_cfg_free(cfg);
        return;
    }
    keep_start_settings(ctl->rt->cfg, cfg);
    moat_dns_track(ctl->dns, cfg); /* new names are resolved now (blocking) */
    struct moat_runtime *rt = moat_runtime_build(cfg, ctl->dns, err, sizeof(err));
    if (rt == NULL) {
        moat_log(MOAT_LOG_ERROR, "main reload failed, the running configuration stays: %s", err);
        return;
    }
    rt->generation = ++ctl->generation;
    moat_certwatch_stop(ctl->watch); /* the new configuration's files from now on */
    ctl->watch = moat_certwatch_start(uv_default_loop(), rt->cfg, swap_certificates, ctl);
    /* Before the workers get it: the last to take it logs "in use by every worker". */
    moat_log(MOAT_LOG_INFO, "main configuration %llu loaded: %zu pool(s), %zu backend(s), "
             "%zu route(s)", (unsigned long long)ctl->generation, rt->n_pools, rt->n_backends,
             rt->cfg->n_routes);
    publish(ctl, rt);
}

/* Every certificate of cfg's listeners, as loaded into tls: none may have expired. 0, or -1
 * with err naming the file. */
static int check_not_expired(const struct moat_cfg *cfg, struct moat_tls_ctx **tls, char *err,
                             size_t err_len)
{
    time_t now = time(NULL);
    for (size_t l = 0; l < cfg->n_listeners; l++) {
        for (size_t i = 0; i < moat_tls_ctx_count(tls[l]); i++) {
            int64_t not_after;
            const char *file = moat_tls_ctx_cert(tls[l], i, &not_after);
            if (not_after < (int64_t)now) {
                snprintf(err, err_len, "%s: expired %lld s ago", file,
                         (long long)((int64_t)now - not_after));
                return -1;
            }
        }
    }
    return 0;
}

/* New certificates for the running configuration: every file loaded and checked (parses, key
 * matches, not expired), then swapped in with nothing else changed (backends, their state and
 * pooled connections, established connections: untouched; session tickets stay valid). 0, or
 * -1 with msg saying why: the running certificates stay. */
static int swap_certificates(void *arg, const char *why, char *msg, size_t cap)
{
    struct control *ctl = arg;
    char err[1024] = "moat is stopping";
    const struct moat_cfg *cfg = ctl->rt->cfg;
    struct moat_tls_ctx **tls = ctl->stopping ? NULL : calloc(cfg->n_listeners, sizeof(*tls));
    int rc = -1;
    if (tls != NULL && (rc = moat_certfiles_load_all(cfg, tls, err, sizeof(err))) == 0)
        rc = check_not_expired(cfg, tls, err, sizeof(err));
    struct moat_runtime *rt = NULL;
    if (rc == 0) {
        rt = moat_runtime_rebuild(ctl->rt, ctl->dns, tls, err, sizeof(err)); /* takes tls */
        tls = NULL;
    }
    for (size_t l = 0; tls != NULL && l < cfg->n_listeners; l++)
        moat_tls_ctx_unref(tls[l]);
    free(tls);
    if (rt == NULL) {
        moat_log(MOAT_LOG_ERROR, "main certificates not swapped (%s), the running ones stay: "
                 "%s", why, err);
        snprintf(msg, cap, "certificates not swapped, the running ones stay: %s\n", err);
        return -1;
    }
    moat_log(MOAT_LOG_INFO, "main certificates swapped (%s): %s", why,
             moat_tls_ctx_describe(rt->tls[0]));
    snprintf(msg, cap, "certificates swapped: %s\n", moat_tls_ctx_describe(rt->tls[0]));
    publish(ctl, rt);
    return 0;
}

/* A backend name's addresses changed: the same configuration with the new backends. */
static void on_dns_change(void *arg)
{
    struct control *ctl = arg;
    char err[256];
    if (ctl->stopping)
        return;
    struct moat_runtime *rt = moat_runtime_rebuild(ctl->rt, ctl->dns, NULL, err, sizeof(err));
    if (rt == NULL) {
        moat_log(MOAT_LOG_ERROR, "main dns: the backends stay as they were: %s", err);
        return;
    }
    moat_log(MOAT_LOG_INFO, "main configuration %llu, DNS view %llu: %zu backend(s)",
             (unsigned long long)rt->generation, (unsigned long long)rt->view, rt->n_backends);
    publish(ctl, rt);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct control *ctl = s->data;
    if (signum == SIGUSR1) {
        moat_log_reopen();
        return;
    }
    if (signum == SIGHUP) {
        if (!ctl->stopping)
            reload(ctl);
        return;
    }
    if (ctl->stopping)
        return;
    ctl->stopping = 1;
    moat_log(MOAT_LOG_INFO, "main %s: draining (up to %llu ms)", strsignal(signum),
             (unsigned long long)ctl->rt->cfg->drain_timeout_ms);
    for (size_t i = 0; i < ctl->n_workers; i++)
        moat_worker_stop(&ctl->workers[i]);
    uv_close((uv_handle_t *)&ctl->sigterm, NULL);
    uv_close((uv_handle_t *)&ctl->sigint, NULL);
    uv_close((uv_handle_t *)&ctl->sighup, NULL);
    uv_close((uv_handle_t *)&ctl->sigusr1, NULL);
    moat_admin_stop();
    moat_admin_set_dns(NULL); /* stopped below */
    moat_redirect_stop();
    moat_certwatch_stop(ctl->watch);
    ctl->watch = NULL;
    moat_health_stop();
    moat_dns_stop(ctl->dns);
}

static void describe_start(const struct moat_runtime *rt, const char *listen_names,
                           size_t n_workers)
{
    char backends[2048] = "";
    for (size_t i = 0; i < rt->n_backends; i++) {
        size_t used = strlen(backends);
        const struct moat_backend *b = &rt->backends[i];
        if (i > 0 && b->pool == rt->backends[i - 1].pool &&
            strcmp(b->name, rt->backends[i - 1].name) == 0)
            continue; /* another address of the same name */
        /* Pools are named only when there are several: "web:10.0.0.1:80" */
        snprintf(backends + used, sizeof(backends) - used, "%s%s%s%s", i ? "," : "",
                 rt->n_pools > 1 ? rt->pools[b->pool].name : "", rt->n_pools > 1 ? ":" : "",
                 b->name);
    }
    moat_log(MOAT_LOG_INFO, "main %s started listen=%s backends=%s workers=%zu tls=\"%s\" "
             "engine=\"%s\"", moat_cfg_version(), listen_names, backends, n_workers,
             moat_tls_ctx_describe(rt->tls[0]), moat_tls_engine_describe());
}

/* Opens the listeners, drops privileges, starts the workers and runs the control loop (signals)
 * until a drain has finished. Takes over ctl->rt. 0, or 1 after saying why. */
static int serve(struct control *ctl, const struct moat_privs *privs)
{
    const struct moat_cfg *cfg = ctl->rt->cfg;
    size_t n_workers = cfg->workers;
    ctl->n_workers = n_workers;
    ctl->workers = calloc(n_workers, sizeof(*ctl->workers));
    int **fds = calloc(n_workers, sizeof(*fds));
    int ok = ctl->workers != NULL && fds != NULL;
    for (size_t w = 0; ok && w < n_workers; w++) {
        fds[w] = calloc(cfg->n_listeners, sizeof(int));
        ok = fds[w] != NULL;
    }
    char listen_names[2048];
    char err[512];
    unsigned https_port = 0;
    int failed = !ok ||
                 open_listeners(cfg, n_workers, fds, listen_names, sizeof(listen_names),
                                &https_port) != 0 ||
                 moat_admin_start(uv_default_loop(), ctl->rt, ctl->workers, n_workers) != 0;
    int admin_up = !failed; /* undone below if a later step fails */
    if (!failed)
        failed = moat_redirect_start(uv_default_loop(), cfg, https_port) != 0;
    if (!failed && moat_privs_drop(privs, err, sizeof(err)) != 0) {
        fprintf(stderr, "moat: error: %s\n", err);
        failed = 1;
    }
    if (failed && admin_up) {
        moat_redirect_stop();
        moat_admin_stop();
        uv_run(uv_default_loop(), UV_RUN_NOWAIT); /* their close callbacks */
        moat_admin_free();
    }
    if (failed) {
        for (size_t w = 0; fds != NULL && w < n_workers; w++)
            free(fds[w]);
        free(fds);
        free(ctl->workers);
        return 1;
    }
    if (privs->is_set)
        moat_log(MOAT_LOG_INFO, "main running as user %s (uid %u, gid %u)", privs->user,
                 (unsigned)privs->uid, (unsigned)privs->gid);
    for (size_t w = 0; w < n_workers; w++) {
        if (moat_worker_init(&ctl->workers[w], (unsigned)w + 1, ctl->rt, fds[w],
                             cfg->n_listeners) != 0)
            return 1;
    }
    free(fds); /* each worker owns its row now */

    uv_loop_t *loop = uv_default_loop();
    uv_signal_init(loop, &ctl->sigterm);
    uv_signal_init(loop, &ctl->sigint);
    uv_signal_init(loop, &ctl->sighup);
    ctl->sigterm.data = ctl->sigint.data = ctl->sighup.data = ctl;
    uv_signal_start(&ctl->sigterm, on_signal, SIGTERM);
    uv_signal_start(&ctl->sigint, on_signal, SIGINT);
    uv_signal_start(&ctl->sighup, on_signal, SIGHUP);
    uv_signal_init(loop, &ctl->sigusr1);
    ctl->sigusr1.data = ctl;
    uv_signal_start(&ctl->sigusr1, on_signal, SIGUSR1);

    for (size_t w = 0; w < n_workers; w++) {
        if (moat_worker_start(&ctl->workers[w]) != 0) {
            moat_log(MOAT_LOG_ERROR, "main cannot start worker %zu", w + 1);
            return 1;
        }
    }
    moat_health_apply(loop, ctl->rt);
    moat_dns_start(ctl->dns);
    ctl->watch = moat_certwatch_start(loop, ctl->rt->cfg, swap_certificates, ctl);
    moat_admin_on_cert_swap(swap_certificates, ctl);
    moat_admin_set_dns(ctl->dns);
    /* Last: a SIGHUP or SIGTERM sent as soon as this line shows finds its handler. */
    describe_start(ctl->rt, listen_names, n_workers);
    uv_run(loop, UV_RUN_DEFAULT); /* returns once a signal closed the watchers */
    for (size_t w = 0; w < n_workers; w++)
        moat_worker_join(&ctl->workers[w]);
    uv_loop_close(loop);
    moat_health_free();
    moat_admin_free();
    moat_log(MOAT_LOG_INFO, "main stopped%s", "");

    free(ctl->workers);
    return 0;
}

/* The access-log sink, opened before any port (a file that cannot be opened stops the start)
 * and before privileges are dropped (the file may be root's). */
static int open_access_log(const struct moat_cfg *cfg)
{
    char err[512];
    if ((!cfg->access_log || moat_log_access_open(cfg->access_log_file, err, sizeof(err)) == 0) &&
        moat_keylog_open(cfg->tls_key_log, err, sizeof(err)) == 0)
        return 0;
    fprintf(stderr, "moat: error: %s\n", err);
    return -1;
}

/* After serving (the resolver stopped with the control loop) or instead of it. */
static void stop_dns(struct control *ctl)
{
    if (!ctl->stopping) {
        moat_dns_stop(ctl->dns);
        uv_run(uv_default_loop(), UV_RUN_NOWAIT); /* the close callbacks */
    }
    moat_dns_free(ctl->dns);
    ctl->dns = NULL;
}

/* Loads certificates, resolves backends and users, opens the access log, then serves until a
 * signal (or, checking, says so). Takes over cfg. 0, or 1 after saying why. Start-up failures
 * free what they made, so sanitizer builds stay leak-free on every path. */
static int run(struct control *ctl, struct moat_cfg *cfg, int is_check)
{
    static char err[4096];
    struct moat_privs privs;
    if (moat_privs_lookup(cfg->user, cfg->group, &privs, err, sizeof(err)) != 0) {
        fprintf(stderr, "moat: error: %s\n", err);
        moat_cfg_free(cfg);
        return 1;
    }
    ctl->dns = moat_dns_new(uv_default_loop(), &cfg->resolver, on_dns_change, ctl, err,
                            sizeof(err));
    if (ctl->dns == NULL) {
        fprintf(stderr, "moat: error: %s\n", err);
        moat_cfg_free(cfg);
        return 1;
    }
    moat_dns_track(ctl->dns, cfg);
    ctl->rt = moat_runtime_build(cfg, ctl->dns, err, sizeof(err));
    if (ctl->rt == NULL) {
        fprintf(stderr, "moat: error: %s\n", err);
        stop_dns(ctl);
        return 1;
    }
    ctl->rt->generation = ctl->generation;
    int rc = 1;
    if (open_access_log(ctl->rt->cfg) == 0) {
        if (is_check) {
            printf("configuration OK\n");
            rc = 0;
        } else {
            rc = serve(ctl, &privs);
        }
    }
    moat_runtime_unref(ctl->rt);
    moat_log_access_close();
    moat_keylog_close();
    stop_dns(ctl);
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

    struct control ctl = {.argc = argc, .argv = argv,
                          .default_workers = uv_available_parallelism(), .generation = 1};
    struct moat_cfg *cfg = NULL;
    static char err[16384]; /* a configuration file's errors, one per line */
    enum moat_cfg_result mode =
        moat_cfg_from_argv(argc, argv, ctl.default_workers, &cfg, err, sizeof(err));
    switch (mode) {
    case MOAT_CFG_HELP:
        fputs(moat_cfg_usage(), stdout);
        return 0;
    case MOAT_CFG_VERSION:
        printf("%s\nTLS engine: %s\n", moat_cfg_version(), moat_tls_engine_describe());
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
        moat_cfg_free(cfg);
    } else {
        rc = run(&ctl, cfg, mode == MOAT_CFG_CHECK);
        moat_tls_global_free();
    }
    return rc;
}
