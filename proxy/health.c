/* proxy/health.c: see health.h. Each check owns its timer, its parser and, while a probe is
 * out, an upstream leased from the control loop's own pools; it is freed when its timer's close
 * callback runs. */
#include "proxy/health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "proxy/balance.h"
#include "proxy/base/bufq.h"
#include "proxy/base/list.h"
#include "proxy/log.h"
#include "proxy/runtime.h"
#include "proxy/upstream.h"

struct check {
    struct moat_list node;        /* in hc.checks */
    struct moat_runtime *rt;      /* one reference: its pools and limits */
    size_t backend;               /* index into rt->backends */
    struct moat_target *target;   /* borrowed from rt */
    const struct moat_cfg_health *cfg; /* borrowed from rt->cfg */
    uv_timer_t timer;             /* the next probe, or the probe's deadline */
    struct moat_upstream *up;     /* leased while a probe is out */
    struct moat_up_waiter waiter; /* unused: a probe never waits for a slot */
    struct moat_http_parser *parser; /* owned */
    struct moat_bufq out;         /* the request, until the upstream takes it */
    int status;                   /* of the probe's response, 0 before */
    int is_done;                  /* the response ended */
    int is_reusable;              /* its connection may serve the next probe */
    unsigned passes, failures;    /* in a row */
    int is_closing;
};

static struct {
    uv_loop_t *loop;              /* borrowed: the control loop */
    struct moat_pools *pools;     /* owned: the checks' connections */
    struct moat_list checks;      /* struct check by node */
    uint64_t rng;
    char slab[16384];             /* every probe's reads land here */
} hc;

static uint64_t next_random(void)
{
    hc.rng ^= hc.rng << 13;
    hc.rng ^= hc.rng >> 7;
    hc.rng ^= hc.rng << 17;
    return hc.rng;
}

static void on_timer(uv_timer_t *t);

static void arm(struct check *k, uint64_t ms)
{
    uv_timer_start(&k->timer, on_timer, ms, 0);
}

/* The next probe: the interval, give or take 10 %, so checks of many backends spread out. */
static void schedule(struct check *k)
{
    uint64_t iv = k->cfg->interval_ms;
    uint64_t jitter = iv / 10;
    uint64_t ms = iv - jitter + (jitter > 0 ? next_random() % (2 * jitter + 1) : 0);
    uv_timer_start(&k->timer, on_timer, ms, 0);
}

static void end_probe(struct check *k, int passed, const char *why)
{
    struct moat_target *t = k->target;
    moat_upstream_release(k->up, passed && k->is_done && k->is_reusable);
    k->up = NULL;
    moat_bufq_clear(&k->out);
    int was_down = atomic_load(&t->check_down);
    int is_known = atomic_load(&t->last_check_status) != 0;
    atomic_store(&t->last_check_status, passed ? k->status : (k->status != 0 ? k->status : -1));
    if (passed) {
        k->failures = 0;
        k->passes++;
        if (was_down && (k->passes >= k->cfg->rise || !is_known)) {
            moat_target_check_up(t, uv_now(hc.loop));
            moat_log(MOAT_LOG_INFO, "main backend %s passes its health check again (%u in a "
                     "row)", t->addr_text, k->passes);
        }
    } else {
        k->passes = 0;
        k->failures++;
        if (!was_down && (k->failures >= k->cfg->fall || !is_known || k->status == 503)) {
            atomic_store(&t->check_down, 1);
            moat_log(MOAT_LOG_WARN, "main backend %s fails its health check (%s); no new "
                     "requests go to it", t->addr_text, why);
        }
    }
    schedule(k);
}

static int on_head(void *ctx, const struct moat_http_head *h)
{
    struct check *k = ctx;
    if (h->status >= 200)
        k->status = h->status;
    k->is_reusable = h->is_keep_alive;
    return 0;
}

static int on_body(void *ctx, const char *data, size_t len)
{
    (void)ctx; /* dropped */
    (void)data;
    (void)len;
    return 0;
}

static int on_done(void *ctx)
{
    struct check *k = ctx;
    if (k->status != 0)
        k->is_done = 1;
    return 0;
}

static const struct moat_http_parser_cbs parser_cbs = {on_head, on_body, on_done};

static void send_probe(struct check *k)
{
    if (moat_upstream_write(k->up, &k->out) != 0)
        end_probe(k, 0, "write failed");
}

static void on_connected(void *owner, int status)
{
    struct check *k = owner;
    if (status != 0) {
        char why[96];
        snprintf(why, sizeof(why), "connect: %s", uv_strerror(status));
        end_probe(k, 0, why);
        return;
    }
    send_probe(k);
}

static void on_read(void *owner, const char *buf, ssize_t nread)
{
    struct check *k = owner;
    if (nread < 0) {
        end_probe(k, 0, nread == UV_EOF ? "closed before answering" : uv_strerror((int)nread));
        return;
    }
    size_t used = 0;
    enum moat_http_status st = moat_http_parser_feed(k->parser, buf, (size_t)nread, &used);
    while (st == MOAT_HTTP_DONE && !k->is_done) { /* an interim 1xx */
        moat_http_parser_next(k->parser);
        size_t more = 0;
        st = moat_http_parser_feed(k->parser, buf + used, (size_t)nread - used, &more);
        used += more;
    }
    if (st == MOAT_HTTP_ERROR) {
        end_probe(k, 0, "invalid response");
        return;
    }
    if (!k->is_done)
        return;
    int passed = k->status >= (int)k->cfg->expect_lo && k->status <= (int)k->cfg->expect_hi;
    char why[64];
    snprintf(why, sizeof(why), "status %d", k->status);
    end_probe(k, passed, why);
}

static void on_silence(void *owner)
{
    end_probe(owner, 0, "no answer");
}

static void on_drained(void *owner)
{
    (void)owner;
}

static const struct moat_upstream_ops probe_ops = {on_connected, on_read, on_silence,
                                                   on_drained};

static void on_slot(struct moat_up_waiter *w)
{
    (void)w; /* never queued: see start_probe() */
}

static void start_probe(struct check *k)
{
    const struct moat_backend *b = &k->rt->backends[k->backend];
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: moat-health\r\n\r\n",
                     k->cfg->path, k->cfg->host != NULL ? k->cfg->host : b->target->addr_text);
    moat_bufq_clear(&k->out);
    if (n < 0 || (size_t)n >= sizeof(req) || moat_bufq_append(&k->out, req, (size_t)n) != 0) {
        schedule(k);
        return;
    }
    k->status = k->is_done = k->is_reusable = 0;
    moat_http_parser_reset(k->parser);
    moat_http_parser_set_request_method(k->parser, MOAT_HTTP_M_GET);
    arm(k, k->cfg->timeout_ms); /* the deadline of the whole probe, connect included */
    struct moat_upstream *up = NULL;
    int err = moat_upstream_lease(hc.pools, k->rt, k->backend, 0, &probe_ops, k, &k->waiter,
                                  &up);
    if (err == MOAT_UP_WAIT) {
        moat_list_remove(&k->waiter.node); /* every slot busy: skip this round */
        schedule(k);
        return;
    }
    if (err != 0) {
        char why[96];
        snprintf(why, sizeof(why), "connect: %s", uv_strerror(err));
        end_probe(k, 0, why);
        return;
    }
    k->up = up;
    if (moat_upstream_is_ready(up))
        send_probe(k);
}

static void on_timer(uv_timer_t *t)
{
    struct check *k = t->data;
    if (k->up != NULL) {
        end_probe(k, 0, "timed out");
        return;
    }
    start_probe(k);
}

static void on_check_closed(uv_handle_t *h)
{
    struct check *k = h->data;
    moat_http_parser_free(k->parser);
    moat_bufq_clear(&k->out);
    moat_runtime_unref(k->rt);
    free(k);
}

static void check_close(struct check *k)
{
    if (k->is_closing)
        return;
    k->is_closing = 1;
    moat_list_remove(&k->node);
    moat_upstream_release(k->up, 0);
    k->up = NULL;
    uv_close((uv_handle_t *)&k->timer, on_check_closed);
}

static int is_checked(const struct moat_list *checks, const struct moat_target *t)
{
    for (const struct moat_list *n = checks->next; n != checks; n = n->next)
        if (moat_list_entry(n, struct check, node)->target == t)
            return 1;
    return 0;
}

void moat_health_apply(uv_loop_t *loop, struct moat_runtime *rt)
{
    if (hc.loop == NULL) {
        hc.loop = loop;
        moat_list_init(&hc.checks);
        hc.pools = moat_pools_new(loop, 0, hc.slab, sizeof(hc.slab));
        hc.rng = (uint64_t)uv_hrtime() | 1;
        if (hc.pools == NULL) {
            moat_log(MOAT_LOG_ERROR, "main health checks: out of memory%s", "");
            return;
        }
    }
    moat_pools_adopt(hc.pools, rt);
    struct moat_list fresh;
    moat_list_init(&fresh);
    for (size_t b = 0; b < rt->n_backends; b++) {
        const struct moat_cfg_health *cfg = &rt->cfg->pools[rt->backends[b].pool].health;
        if (cfg->path == NULL || is_checked(&fresh, rt->backends[b].target))
            continue;
        struct check *k = calloc(1, sizeof(*k));
        if (k == NULL)
            break;
        k->rt = rt;
        moat_runtime_ref(rt);
        k->backend = b;
        k->target = rt->backends[b].target;
        k->cfg = cfg;
        moat_list_init(&k->waiter.node);
        k->waiter.on_slot = on_slot;
        moat_bufq_init(&k->out);
        k->parser = moat_http_parser_new(MOAT_HTTP_RESPONSE, &rt->http_limits, &parser_cbs, k);
        uv_timer_init(loop, &k->timer);
        k->timer.data = k;
        moat_list_push_back(&fresh, &k->node);
        /* The first probe within one interval, at a random point, so they spread out. */
        uv_timer_start(&k->timer, on_timer, next_random() % (cfg->interval_ms + 1), 0);
    }
    /* The old checks go; a backend no longer checked is no longer held out by them. */
    while (!moat_list_is_empty(&hc.checks)) {
        struct check *k = moat_list_entry(hc.checks.next, struct check, node);
        if (!is_checked(&fresh, k->target)) {
            atomic_store(&k->target->check_down, 0);
            atomic_store(&k->target->last_check_status, 0);
        }
        check_close(k);
    }
    while (!moat_list_is_empty(&fresh)) {
        struct moat_list *n = fresh.next;
        moat_list_remove(n);
        moat_list_push_back(&hc.checks, n);
    }
}

void moat_health_stop(void)
{
    if (hc.loop == NULL)
        return;
    while (!moat_list_is_empty(&hc.checks))
        check_close(moat_list_entry(hc.checks.next, struct check, node));
    moat_pools_drain(hc.pools);
    moat_pools_stop(hc.pools);
}

void moat_health_free(void)
{
    moat_pools_free(hc.pools);
    hc.pools = NULL;
    hc.loop = NULL;
}
