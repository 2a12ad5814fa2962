/* proxy/worker.c: a worker thread: its loop, its listeners (bound by main(), one SO_REUSEPORT
 * socket per listener per worker), its TLS server, its connections and pools, and its drain. */
#include "proxy/worker.h"

#include <stdlib.h>
#include <unistd.h>

#include "proxy/balance.h"
#include "proxy/conn.h"
#include "proxy/keylog.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/upstream.h"
#include "tls/tls.h"

static void on_connection(uv_stream_t *server, int status)
{
    struct moat_worker *w = server->data;
    if (status < 0) {
        moat_log(MOAT_LOG_WARN, "w%u accept: %s", w->id, uv_strerror(status));
        return;
    }
    if (w->n_conns >= w->gen->rt->max_connections) {
        /* Not accepting makes libuv stop polling this listener: new clients wait in the kernel's
         * backlog instead of being refused, until a connection ends (moat_worker_conn_gone). */
        if (w->n_paused == 0)
            moat_log(MOAT_LOG_WARN, "w%u accepting paused: %zu connections (--max-connections)",
                     w->id, w->n_conns);
        for (size_t i = 0; i < w->n_listeners; i++)
            if ((uv_stream_t *)&w->listeners[i] == server && !w->paused[i]) {
                w->paused[i] = 1;
                w->n_paused++;
            }
        return;
    }
    moat_conn_accept(w, server);
}

/* A connection ended: paused listeners take the client waiting in their backlog. */
static void resume_accepting(struct moat_worker *w)
{
    if (w->n_paused == 0 || w->is_draining || w->n_conns >= w->gen->rt->max_connections)
        return;
    moat_log(MOAT_LOG_INFO, "w%u accepting resumed", w->id);
    for (size_t i = 0; i < w->n_listeners; i++) {
        if (!w->paused[i])
            continue;
        w->paused[i] = 0;
        w->n_paused--;
        moat_conn_accept(w, (uv_stream_t *)&w->listeners[i]); /* restarts polling too */
    }
}

static void tls_servers_unref(struct moat_tls_servers *s)
{
    if (s == NULL || --s->refs > 0)
        return;
    for (size_t i = 0; i < s->n; i++)
        moat_tls_server_free(s->srv[i]);
    free(s);
}

/* Every listener's TLS server for rt. NULL after logging why. */
static struct moat_tls_servers *tls_servers_new(struct moat_worker *w, struct moat_runtime *rt)
{
    struct moat_tls_servers *s = calloc(1, sizeof(*s) + w->n_listeners * sizeof(s->srv[0]));
    if (s == NULL) {
        moat_log(MOAT_LOG_ERROR, "w%u out of memory for a configuration", w->id);
        return NULL;
    }
    s->refs = 1;
    for (; s->n < w->n_listeners; s->n++) {
        char err[256];
        s->srv[s->n] = moat_tls_server_new(rt->tls[s->n], err, sizeof(err));
        if (s->srv[s->n] == NULL) {
            moat_log(MOAT_LOG_ERROR, "w%u tls: %s", w->id, err);
            tls_servers_unref(s);
            return NULL;
        }
        if (moat_keylog_is_on())
            moat_tls_server_set_keylog(s->srv[s->n], moat_keylog_write, NULL);
    }
    return s;
}

static void gen_free(struct moat_gen *g)
{
    tls_servers_unref(g->tls);
    moat_picker_free(g->picker);
    moat_runtime_unref(g->rt);
    free(g);
}

/* This worker's TLS servers and choosing state for rt; the TLS servers are prev's when rt has
 * prev's certificates (a DNS rebuild; prev: NULL or the current generation). NULL after
 * logging why. */
static struct moat_gen *gen_new(struct moat_worker *w, struct moat_runtime *rt,
                                const struct moat_gen *prev)
{
    struct moat_gen *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        moat_log(MOAT_LOG_ERROR, "w%u out of memory for a configuration", w->id);
        return NULL;
    }
    moat_list_init(&g->node);
    g->w = w;
    g->rt = rt;
    moat_runtime_ref(rt);
    if (prev != NULL && prev->rt->tls == rt->tls) { /* both hold it: not a reused address */
        g->tls = prev->tls;
        g->tls->refs++;
    } else {
        g->tls = tls_servers_new(w, rt);
    }
    g->picker = moat_picker_new(rt->n_pools, rt->n_backends);
    if (g->tls == NULL || g->picker == NULL) {
        if (g->picker == NULL)
            moat_log(MOAT_LOG_ERROR, "w%u out of memory for a configuration", w->id);
        gen_free(g);
        return NULL;
    }
    return g;
}

struct moat_gen *moat_worker_members(struct moat_worker *w, struct moat_gen *g)
{
    /* Both are alive, so equal roots are one configuration, not a reused address. */
    return moat_runtime_root(w->gen->rt) == moat_runtime_root(g->rt) ? w->gen : g;
}

void moat_gen_hold(struct moat_gen *g)
{
    g->n_users++;
}

void moat_gen_release(struct moat_gen *g)
{
    if (--g->n_users == 0 && g->is_retired) {
        moat_list_remove(&g->node);
        gen_free(g);
    }
}

/* g stops taking new connections; it goes with its last user. */
static void gen_retire(struct moat_gen *g)
{
    g->is_retired = 1;
    moat_list_push_back(&g->w->old_gens, &g->node);
    g->n_users++;
    moat_gen_release(g); /* frees g now if nobody uses it */
}

int moat_worker_init(struct moat_worker *w, unsigned id, struct moat_runtime *rt,
                     int *listen_fds, size_t n_listeners)
{
    w->id = id;
    w->listen_fds = listen_fds;
    w->n_listeners = n_listeners;
    moat_list_init(&w->conns);
    moat_list_init(&w->old_gens);
    atomic_init(&w->stop_requested, 0);
    atomic_init(&w->next_rt, NULL);
    if (uv_loop_init(&w->loop) != 0)
        return -1;
    w->pools = moat_pools_new(&w->loop, id, w->slab, sizeof(w->slab));
    if (w->pools == NULL)
        return -1;
    w->gen = gen_new(w, rt, NULL);
    if (w->gen == NULL)
        return -1;
    w->listeners = calloc(n_listeners, sizeof(*w->listeners));
    w->paused = calloc(n_listeners, sizeof(*w->paused));
    if (w->listeners == NULL || w->paused == NULL)
        return -1;
    for (size_t i = 0; i < n_listeners; i++) {
        uv_tcp_t *l = &w->listeners[i];
        uv_tcp_init(&w->loop, l);
        l->data = w;
        int e = uv_tcp_open(l, listen_fds[i]);
        if (e == 0)
            e = uv_listen((uv_stream_t *)l, 511, on_connection);
        if (e != 0) {
            moat_log(MOAT_LOG_ERROR, "w%u listen: %s", id, uv_strerror(e));
            return -1;
        }
    }
    return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

/* The worker is done when draining found no connection left: close what keeps the loop alive. */
static void finish_if_drained(struct moat_worker *w)
{
    if (!w->is_draining || w->n_conns != 0)
        return;
    if (!uv_is_closing((uv_handle_t *)&w->wake))
        uv_close((uv_handle_t *)&w->wake, on_handle_closed);
    uv_handle_t *mine[] = {(uv_handle_t *)&w->drain_timer, (uv_handle_t *)&w->hs_prepare,
                           (uv_handle_t *)&w->hs_check, (uv_handle_t *)&w->hs_idle};
    for (size_t i = 0; i < sizeof(mine) / sizeof(mine[0]); i++)
        if (!uv_is_closing(mine[i]))
            uv_close(mine[i], on_handle_closed);
    moat_pools_stop(w->pools);
}

void moat_worker_conn_gone(struct moat_worker *w)
{
    w->n_conns--;
    moat_metrics_conn_closed(w->metrics);
    resume_accepting(w);
    finish_if_drained(w);
}

static void on_drain_timeout(uv_timer_t *t)
{
    struct moat_worker *w = t->data;
    moat_log(MOAT_LOG_WARN, "w%u drain timeout: closing %zu connection(s)", w->id, w->n_conns);
    struct moat_list *n = w->conns.next;
    while (n != &w->conns) {
        struct moat_list *next = n->next;
        moat_conn_close(moat_list_entry(n, struct moat_conn, node));
        n = next;
    }
}

/* A reload: new connections take the new generation, the old one serves its own to the end. */
static void install(struct moat_worker *w, struct moat_runtime *rt)
{
    struct moat_gen *g = gen_new(w, rt, w->gen);
    if (g == NULL)
        return; /* logged; the running configuration stays */
    gen_retire(w->gen);
    w->gen = g;
    moat_pools_adopt(w->pools, rt); /* idle connections to the backends rt keeps stay */
    /* What "configuration N loaded" cannot say (main logs it on posting): from here on, every
     * new connection of every worker is served by it. */
    if (atomic_fetch_add(&rt->n_installed, 1) + 1 != rt->n_workers)
        return;
    if (rt->view == 0)
        moat_log(MOAT_LOG_INFO, "w%u configuration %llu in use by every worker", w->id,
                 (unsigned long long)rt->generation);
    else
        moat_log(MOAT_LOG_INFO, "w%u configuration %llu, DNS view %llu, in use by every worker",
                 w->id, (unsigned long long)rt->generation, (unsigned long long)rt->view);
}

void moat_worker_reload(struct moat_worker *w, struct moat_runtime *rt)
{
    moat_runtime_ref(rt);
    moat_runtime_unref(atomic_exchange(&w->next_rt, rt)); /* one not picked up yet is stale */
    uv_async_send(&w->wake);
}

static void on_wake(uv_async_t *a)
{
    struct moat_worker *w = a->data;
    struct moat_runtime *rt = atomic_exchange(&w->next_rt, NULL);
    if (rt != NULL) {
        if (!w->is_draining)
            install(w, rt);
        moat_runtime_unref(rt);
    }
    if (!atomic_load(&w->stop_requested) || w->is_draining)
        return;
    w->is_draining = 1;
    moat_metrics_listening(w->metrics, 0);
    for (size_t i = 0; i < w->n_listeners; i++)
        uv_close((uv_handle_t *)&w->listeners[i], on_handle_closed);
    moat_log(MOAT_LOG_INFO, "w%u draining: listeners closed, %zu connection(s) open", w->id,
             w->n_conns);
    moat_pools_drain(w->pools);
    struct moat_list *n = w->conns.next;
    while (n != &w->conns) {
        struct moat_list *next = n->next; /* drain may close (not yet free) the connection */
        moat_conn_drain(moat_list_entry(n, struct moat_conn, node));
        n = next;
    }
    uv_timer_start(&w->drain_timer, on_drain_timeout, w->gen->rt->cfg->drain_timeout_ms, 0);
    finish_if_drained(w);
}

static void *worker_main(void *arg)
{
    struct moat_worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void on_hs_prepare(uv_prepare_t *h)
{
    struct moat_worker *w = h->data;
    w->hs_budget = MOAT_HS_PER_TURN;
}

static void on_hs_idle(uv_idle_t *h)
{
    (void)h; /* its being active is the point: the poll returns at once */
}

static void on_hs_check(uv_check_t *h)
{
    struct moat_worker *w = h->data;
    while (w->hs_budget > 0 && !moat_list_is_empty(&w->hs_queue)) {
        struct moat_conn *c = moat_list_entry(w->hs_queue.next, struct moat_conn, hs_node);
        moat_list_remove(&c->hs_node);
        w->hs_budget--;
        moat_conn_hs_turn(c);
    }
    if (moat_list_is_empty(&w->hs_queue))
        uv_idle_stop(&w->hs_idle);
}

int moat_worker_hs_admit(struct moat_worker *w, struct moat_conn *c)
{
    if (w->hs_budget > 0 && moat_list_is_empty(&w->hs_queue)) {
        w->hs_budget--;
        return 1;
    }
    if (moat_list_is_empty(&c->hs_node))
        moat_list_push_back(&w->hs_queue, &c->hs_node);
    uv_idle_start(&w->hs_idle, on_hs_idle);
    return 0;
}

int moat_worker_start(struct moat_worker *w)
{
    w->wake.data = w;
    w->drain_timer.data = w;
    w->hs_prepare.data = w;
    w->hs_check.data = w;
    moat_list_init(&w->hs_queue);
    w->hs_budget = MOAT_HS_PER_TURN;
    if (uv_async_init(&w->loop, &w->wake, on_wake) != 0)
        return -1;
    uv_timer_init(&w->loop, &w->drain_timer);
    uv_prepare_init(&w->loop, &w->hs_prepare);
    uv_check_init(&w->loop, &w->hs_check);
    uv_idle_init(&w->loop, &w->hs_idle);
    uv_prepare_start(&w->hs_prepare, on_hs_prepare);
    uv_check_start(&w->hs_check, on_hs_check);
    return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : -1;
}

void moat_worker_stop(struct moat_worker *w)
{
    atomic_store(&w->stop_requested, 1);
    uv_async_send(&w->wake);
}

static void on_walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, on_handle_closed);
}

void moat_worker_join(struct moat_worker *w)
{
    pthread_join(w->thread, NULL);
    /* Everything closed itself while draining; this only catches what a bug left open. */
    uv_walk(&w->loop, on_walk_close, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&w->loop);
    if (rc != 0)
        moat_log(MOAT_LOG_ERROR, "w%u loop close: %s", w->id, uv_err_name(rc));
    /* Every connection and upstream is gone, and with them every retired generation. */
    if (w->gen != NULL)
        gen_free(w->gen);
    moat_pools_free(w->pools);
    moat_runtime_unref(atomic_exchange(&w->next_rt, NULL));
    free(w->listeners);
    free(w->paused);
    free(w->listen_fds);
}
