/* proxy/dns.c: c-ares driven by libuv. A channel is c-ares's state on one loop: its sockets are
 * watched by uv_poll handles that the socket-state callback opens and closes, its retransmits
 * by one uv_timer. The refreshing channel lives on the control loop; a blocking resolution
 * (start, reload) runs a channel of its own on a private loop, so it can wait without
 * re-entering the control loop. */
#include "proxy/dns.h"

#include <arpa/inet.h>
#include <ares.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/base/list.h"
#include "proxy/base/text.h"
#include "proxy/log.h"
#include "proxy/runtime.h"

#define LOOKUP_TIMEOUT_MS 1000 /* per try; c-ares tries each server LOOKUP_TRIES times */
#define LOOKUP_TRIES 2
#define BLOCKING_MAX_MS 5000   /* a blocking resolution gives up after this */
#define MIN_REFRESH_MS 1000

struct chan {
    uv_loop_t *loop;        /* borrowed */
    ares_channel ch;
    uv_timer_t timer;       /* c-ares's next timeout */
    struct moat_list socks; /* struct sock by node */
    int is_open;            /* ch and timer are set up and not closed */
};

struct sock {
    struct moat_list node;  /* in c->socks */
    struct chan *c;
    ares_socket_t fd;
    uv_poll_t poll;
};

struct name {
    struct moat_list node;  /* in d->names */
    struct moat_dns *d;
    char host[256];
    struct sockaddr_storage addrs[MOAT_DNS_MAX_ADDRS]; /* sorted, port 0 */
    size_t n;
    int is_used;            /* the configuration lists it; else freed when its lookup ends */
    int in_flight;          /* a lookup waits for its answer */
    uint64_t gone_since_ms; /* the DNS has said "no such name" since (0: it has not) */
    uint64_t retry_ms;      /* the wait after a failed lookup; doubles up to refresh */
    uint64_t next_ms;       /* ask again this long after the last answer (0: never) */
    const char *why;        /* the last failure (static text), or NULL */
    uint64_t answers[3];    /* lookups by result: addresses, no such name or address, failed */
    uv_timer_t timer;       /* the next refresh */
};

struct moat_dns {
    uv_loop_t *loop;        /* borrowed: the control loop */
    char servers[MOAT_CFG_MAX_RESOLVERS * 72]; /* "127.0.0.1:53,[::1]:5353"; "": the system's */
    uint64_t refresh_ms, hold_ms;
    struct chan chan;       /* the refreshing channel, on loop */
    struct moat_list names; /* struct name by node */
    uv_timer_t notify;      /* calls on_change once per turn */
    void (*on_change)(void *arg);
    void *arg;
    int is_running;         /* refresh timers run */
};

/* A lookup of one name on one channel (the name outlives it: in_flight). */
struct lookup {
    struct name *n;
    struct chan *c;
};

/* ---- a channel on a loop ------------------------------------------------------------------ */

static void on_chan_timer(uv_timer_t *h);

static void chan_arm(struct chan *c)
{
    struct timeval tv, *t = ares_timeout(c->ch, NULL, &tv);
    if (t == NULL) {
        uv_timer_stop(&c->timer);
        return;
    }
    uint64_t ms = (uint64_t)t->tv_sec * 1000 + (uint64_t)t->tv_usec / 1000 + 1;
    uv_timer_start(&c->timer, on_chan_timer, ms, 0);
}

static void on_chan_timer(uv_timer_t *h)
{
    struct chan *c = h->data;
    ares_process_fd(c->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    chan_arm(c);
}

static void on_sock_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct sock *s = p->data;
    struct chan *c = s->c;
    /* An error on the socket is for c-ares to read (it then closes the socket). */
    ares_socket_t rfd = status < 0 || (events & UV_READABLE) ? s->fd : ARES_SOCKET_BAD;
    ares_socket_t wfd = status == 0 && (events & UV_WRITABLE) ? s->fd : ARES_SOCKET_BAD;
    ares_process_fd(c->ch, rfd, wfd); /* may close s (through on_sock_state) */
    chan_arm(c);
}

static void sock_close(struct sock *s)
{
    moat_list_remove(&s->node);
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

/* c-ares opens, changes or closes a socket: watch it as told. */
static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct chan *c = data;
    struct sock *s = NULL;
    for (struct moat_list *i = c->socks.next; i != &c->socks && s == NULL; i = i->next)
        if (moat_list_entry(i, struct sock, node)->fd == fd)
            s = moat_list_entry(i, struct sock, node);
    if (!readable && !writable) {
        if (s != NULL)
            sock_close(s);
        return;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL || uv_poll_init(c->loop, &s->poll, fd) != 0) {
            free(s); /* the lookup times out: c-ares is never told its socket is ready */
            moat_log(MOAT_LOG_ERROR, "main dns: cannot watch a socket (out of memory)%s", "");
            return;
        }
        s->c = c;
        s->fd = fd;
        s->poll.data = s;
        moat_list_push_back(&c->socks, &s->node);
    }
    uv_poll_start(&s->poll, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0), on_poll);
}

static int chan_open(struct chan *c, uv_loop_t *loop, const char *servers, char *err,
                     size_t err_len)
{
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    moat_list_init(&c->socks);
    struct ares_options o = {.sock_state_cb = on_sock_state, .sock_state_cb_data = c,
                             .timeout = LOOKUP_TIMEOUT_MS, .tries = LOOKUP_TRIES};
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
#ifdef ARES_OPT_QUERY_CACHE
    /* c-ares >= 1.23 caches answers for their TTL: moat asks when it wants a fresh one. */
    o.qcache_max_ttl = 0;
    mask |= ARES_OPT_QUERY_CACHE;
#endif
    int rc = ares_init_options(&c->ch, &o, mask);
    if (rc == ARES_SUCCESS && servers[0] != '\0')
        rc = ares_set_servers_ports_csv(c->ch, servers);
    if (rc != ARES_SUCCESS) {
        snprintf(err, err_len, "DNS resolver: %s", ares_strerror(rc));
        if (c->ch != NULL)
            ares_destroy(c->ch);
        c->ch = NULL;
        return -1;
    }
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->is_open = 1;
    return 0;
}

/* Pending lookups end (ARES_EDESTRUCTION), sockets and the timer close; the loop runs their
 * close callbacks. */
static void chan_close(struct chan *c)
{
    if (!c->is_open)
        return;
    c->is_open = 0;
    ares_destroy(c->ch);
    while (!moat_list_is_empty(&c->socks))
        sock_close(moat_list_entry(c->socks.next, struct sock, node));
    uv_close((uv_handle_t *)&c->timer, NULL);
}

/* ---- names ---------------------------------------------------------------------------------- */

static int addr_cmp(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(struct sockaddr_storage));
}

/* "127.0.0.2, 127.0.0.3" into out. */
static void list_addrs(const struct name *n, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0, used = 0; i < n->n && used + 1 < cap; i++) {
        char text[64];
        moat_format_addr((const struct sockaddr *)&n->addrs[i], text, sizeof(text));
        char *colon = strrchr(text, ':'); /* the port is 0: drop it, and IPv6's brackets */
        if (colon != NULL)
            *colon = '\0';
        const char *ip = text[0] == '[' ? text + 1 : text;
        size_t len = strlen(ip);
        if (ip != text && len > 0)
            len--; /* the closing bracket */
        snprintf(out + used, cap - used, "%s%.*s", i ? ", " : "", (int)len, ip);
        used = strlen(out);
    }
}

/* Every address of the answer (A and AAAA records, as nginx takes them), sorted and without
 * repeats (c-ares returns one record set in varying orders); *ttl_s: the lowest TTL. */
static size_t answer_addrs(const struct ares_addrinfo *res, struct sockaddr_storage *out,
                           unsigned *ttl_s)
{
    size_t n = 0;
    *ttl_s = UINT32_MAX;
    for (const struct ares_addrinfo_node *a = res->nodes; a != NULL; a = a->ai_next) {
        if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) || n == MOAT_DNS_MAX_ADDRS ||
            (size_t)a->ai_addrlen > sizeof(out[0]))
            continue;
        memset(&out[n], 0, sizeof(out[n]));
        memcpy(&out[n], a->ai_addr, (size_t)a->ai_addrlen);
        if (a->ai_family == AF_INET)
            ((struct sockaddr_in *)&out[n])->sin_port = 0;
        else
            ((struct sockaddr_in6 *)&out[n])->sin6_port = 0;
        if (a->ai_ttl >= 0 && (unsigned)a->ai_ttl < *ttl_s)
            *ttl_s = (unsigned)a->ai_ttl;
        n++;
    }
    qsort(out, n, sizeof(out[0]), addr_cmp);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (kept == 0 || addr_cmp(&out[kept - 1], &out[i]) != 0)
            out[kept++] = out[i];
    return kept;
}

static void on_refresh(uv_timer_t *h);

static void schedule(struct name *n)
{
    if (n->d->is_running && n->is_used && !n->in_flight && n->next_ms != 0)
        uv_timer_start(&n->timer, on_refresh, n->next_ms, 0);
}

static void on_name_closed(uv_handle_t *h)
{
    free(h->data);
}

/* The configuration no longer lists it: freed now, or when its lookup ends. */
static void name_forget(struct name *n)
{
    moat_list_remove(&n->node);
    n->is_used = 0;
    if (!n->in_flight)
        uv_close((uv_handle_t *)&n->timer, on_name_closed);
}

static void on_notify(uv_timer_t *h)
{
    struct moat_dns *d = h->data;
    d->on_change(d->arg);
}

/* n's addresses become got[0..k): said and told when they differ and the refresh found it. */
static void set_addrs(struct name *n, const struct sockaddr_storage *got, size_t k,
                      int is_refresh)
{
    if (k == n->n && (k == 0 || memcmp(got, n->addrs, k * sizeof(got[0])) == 0))
        return;
    char before[512], after[512];
    list_addrs(n, before, sizeof(before));
    if (k > 0)
        memcpy(n->addrs, got, k * sizeof(got[0]));
    n->n = k;
    list_addrs(n, after, sizeof(after));
    if (!is_refresh)
        return;
    moat_log(MOAT_LOG_INFO, "main dns %s: %s (was: %s)", n->host, k ? after : "no address",
             before[0] ? before : "no address");
    uv_timer_start(&n->d->notify, on_notify, 0, 0); /* one rebuild for this turn's changes */
}

static void on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct lookup *q = arg;
    struct name *n = q->n;
    int is_refresh = q->c == &n->d->chan;
    free(q);
    n->in_flight = 0;
    struct sockaddr_storage got[MOAT_DNS_MAX_ADDRS];
    unsigned ttl_s = 0;
    size_t k = status == ARES_SUCCESS && res != NULL ? answer_addrs(res, got, &ttl_s) : 0;
    ares_freeaddrinfo(res);
    if (!n->is_used) {
        uv_close((uv_handle_t *)&n->timer, on_name_closed);
        return;
    }
    if (status == ARES_EDESTRUCTION)
        return; /* stopping */
    const struct moat_dns *d = n->d;
    uint64_t now = uv_hrtime() / 1000000;
    int was_failing = n->why != NULL;
    int is_gone = status == ARES_SUCCESS || status == ARES_ENOTFOUND || status == ARES_ENODATA;
    n->answers[k > 0 ? 0 : is_gone ? 1 : 2]++;
    if (k > 0) {
        n->why = NULL;
        n->gone_since_ms = 0;
        n->retry_ms = 0;
        uint64_t ms = (uint64_t)ttl_s * 1000;
        n->next_ms = d->refresh_ms == 0 ? 0 : ms < MIN_REFRESH_MS ? MIN_REFRESH_MS
                     : ms > d->refresh_ms ? d->refresh_ms : ms;
        set_addrs(n, got, k, is_refresh);
        if (was_failing && is_refresh)
            moat_log(MOAT_LOG_INFO, "main dns %s: answering again", n->host);
    } else if (is_gone) {
        /* The name (or its address) is gone: what it had serves on for hold. */
        n->why = status == ARES_ENOTFOUND ? "no such name" : "no address";
        if (n->gone_since_ms == 0)
            n->gone_since_ms = now;
        if (n->n > 0 && now - n->gone_since_ms >= d->hold_ms)
            set_addrs(n, NULL, 0, is_refresh);
        else if (n->n > 0 && is_refresh && !was_failing)
            moat_log(MOAT_LOG_WARN, "main dns %s: %s; its %zu address(es) stay for %llu ms",
                     n->host, n->why, n->n, (unsigned long long)d->hold_ms);
        n->next_ms = d->refresh_ms;
    } else {
        /* The DNS server failed (timeout, SERVFAIL, refused): the last answer stays. */
        n->why = ares_strerror(status);
        n->retry_ms = n->retry_ms == 0 ? 1000 : n->retry_ms * 2;
        n->next_ms = d->refresh_ms == 0 ? 0 : n->retry_ms < d->refresh_ms ? n->retry_ms
                     : d->refresh_ms;
        if (is_refresh && !was_failing)
            moat_log(MOAT_LOG_WARN, "main dns %s: %s; keeping its %zu address(es)", n->host,
                     n->why, n->n);
    }
    schedule(n);
}

static void ask(struct name *n, struct chan *c)
{
    struct lookup *q = malloc(sizeof(*q));
    if (q == NULL) {
        n->why = "out of memory";
        return;
    }
    q->n = n;
    q->c = c;
    n->in_flight = 1;
    /* Every address of the name, unsorted (RFC 6724 sorting would connect a socket per
     * address; moat sorts them itself). */
    struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                        .ai_flags = ARES_AI_NOSORT};
    ares_getaddrinfo(c->ch, n->host, NULL, &hints, on_answer, q); /* may answer at once */
    chan_arm(c);
}

static void on_refresh(uv_timer_t *h)
{
    struct name *n = h->data;
    ask(n, &n->d->chan);
}

static void on_blocking_deadline(uv_timer_t *h)
{
    ares_cancel(((struct chan *)h->data)->ch); /* the lookups end with ARES_ECANCELLED */
}

/* Resolves todo[0..k) on a private loop, waiting for the answers (BLOCKING_MAX_MS at most). */
static void resolve_now(struct moat_dns *d, struct name **todo, size_t k)
{
    uv_loop_t loop;
    struct chan c;
    char err[256];
    if (k == 0 || uv_loop_init(&loop) != 0)
        return;
    if (chan_open(&c, &loop, d->servers, err, sizeof(err)) != 0) {
        moat_log(MOAT_LOG_ERROR, "main %s", err);
        uv_loop_close(&loop);
        return;
    }
    uv_timer_t deadline;
    uv_timer_init(&loop, &deadline);
    deadline.data = &c;
    uv_timer_start(&deadline, on_blocking_deadline, BLOCKING_MAX_MS, 0);
    for (size_t i = 0; i < k; i++)
        ask(todo[i], &c);
    for (size_t i = 0; i < k;) {
        if (!todo[i]->in_flight)
            i++;
        else
            uv_run(&loop, UV_RUN_ONCE);
    }
    chan_close(&c);
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(&loop, UV_RUN_DEFAULT); /* the close callbacks */
    uv_loop_close(&loop);
}

/* ---- the interface -------------------------------------------------------------------------- */

struct moat_dns *moat_dns_new(uv_loop_t *loop, const struct moat_cfg_resolver *r,
                              void (*on_change)(void *arg), void *arg, char *err,
                              size_t err_len)
{
    struct moat_dns *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    d->loop = loop;
    d->on_change = on_change;
    d->arg = arg;
    d->refresh_ms = r->refresh_ms;
    d->hold_ms = r->hold_ms;
    moat_list_init(&d->names);
    for (size_t i = 0, used = 0; i < r->n_servers; i++) {
        const struct moat_cfg_hostport *s = &r->servers[i];
        snprintf(d->servers + used, sizeof(d->servers) - used, s->is_ipv6 ? "%s[%s]:%u"
                 : "%s%s:%u", i ? "," : "", s->host, s->port);
        used = strlen(d->servers);
    }
    ares_library_init(ARES_LIB_INIT_ALL);
    if (chan_open(&d->chan, loop, d->servers, err, err_len) != 0) {
        ares_library_cleanup();
        free(d);
        return NULL;
    }
    uv_timer_init(loop, &d->notify);
    d->notify.data = d;
    return d;
}

static struct name *name_find(const struct moat_dns *d, const char *host)
{
    for (struct moat_list *i = d->names.next; i != &d->names; i = i->next)
        if (strcasecmp(moat_list_entry(i, struct name, node)->host, host) == 0)
            return moat_list_entry(i, struct name, node);
    return NULL;
}

void moat_dns_track(struct moat_dns *d, const struct moat_cfg *cfg)
{
    d->refresh_ms = cfg->resolver.refresh_ms;
    d->hold_ms = cfg->resolver.hold_ms;
    for (struct moat_list *i = d->names.next; i != &d->names; i = i->next)
        moat_list_entry(i, struct name, node)->is_used = 0;
    size_t n_names = 0;
    for (size_t p = 0; p < cfg->n_pools; p++)
        n_names += cfg->pools[p].n_backends;
    struct name **todo = calloc(n_names + 1, sizeof(*todo));
    size_t k = 0;
    for (size_t p = 0; p < cfg->n_pools; p++) {
        for (size_t b = 0; b < cfg->pools[p].n_backends; b++) {
            const struct moat_cfg_hostport *hp = &cfg->pools[p].backends[b].addr;
            if (moat_cfg_host_is_ip(hp))
                continue;
            struct name *n = name_find(d, hp->host);
            if (n == NULL && todo != NULL && (n = calloc(1, sizeof(*n))) != NULL) {
                n->d = d;
                snprintf(n->host, sizeof(n->host), "%s", hp->host);
                uv_timer_init(d->loop, &n->timer);
                n->timer.data = n;
                moat_list_push_back(&d->names, &n->node);
                todo[k++] = n;
            }
            if (n != NULL)
                n->is_used = 1;
        }
    }
    for (struct moat_list *i = d->names.next; i != &d->names;) {
        struct name *n = moat_list_entry(i, struct name, node);
        i = i->next;
        if (!n->is_used)
            name_forget(n);
    }
    resolve_now(d, todo, k);
    free(todo);
}

void moat_dns_start(struct moat_dns *d)
{
    d->is_running = 1;
    for (struct moat_list *i = d->names.next; i != &d->names; i = i->next)
        schedule(moat_list_entry(i, struct name, node));
}

size_t moat_dns_addresses(const struct moat_dns *d, const char *host, uint16_t port,
                          struct sockaddr_storage *out, size_t cap, const char **why)
{
    const struct name *n = name_find(d, host);
    size_t k = 0;
    for (; n != NULL && k < n->n && k < cap; k++) {
        out[k] = n->addrs[k];
        if (out[k].ss_family == AF_INET)
            ((struct sockaddr_in *)&out[k])->sin_port = htons(port);
        else
            ((struct sockaddr_in6 *)&out[k])->sin6_port = htons(port);
    }
    *why = n == NULL ? "not resolved" : n->why != NULL ? n->why : "no address";
    return k;
}

void moat_dns_stop(struct moat_dns *d)
{
    d->is_running = 0;
    uv_close((uv_handle_t *)&d->notify, NULL);
    while (!moat_list_is_empty(&d->names))
        name_forget(moat_list_entry(d->names.next, struct name, node));
    chan_close(&d->chan); /* lookups in flight end now, and free their names */
}

void moat_dns_free(struct moat_dns *d)
{
    if (d == NULL)
        return;
    free(d);
    ares_library_cleanup();
}

void moat_dns_render(const struct moat_dns *d, struct moat_text *t)
{
    static const char *const results[3] = {"ok", "no_address", "failed"};
    moat_text_put(t, "# HELP moat_dns_addresses Addresses a backend name has now.\n"
                  "# TYPE moat_dns_addresses gauge\n");
    for (struct moat_list *i = d->names.next; i != &d->names; i = i->next) {
        const struct name *n = moat_list_entry(i, struct name, node);
        moat_text_put(t, "moat_dns_addresses{name=\"%s\"} %zu\n", n->host, n->n);
    }
    moat_text_put(t, "# HELP moat_dns_lookups_total Lookups of backend names by result: ok "
                  "(addresses), no_address (no such name, or no address), failed (timeout, "
                  "SERVFAIL, refused).\n# TYPE moat_dns_lookups_total counter\n");
    for (struct moat_list *i = d->names.next; i != &d->names; i = i->next) {
        const struct name *n = moat_list_entry(i, struct name, node);
        for (int r = 0; r < 3; r++)
            moat_text_put(t, "moat_dns_lookups_total{name=\"%s\",result=\"%s\"} %llu\n",
                          n->host, results[r], (unsigned long long)n->answers[r]);
    }
}
