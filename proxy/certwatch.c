/* proxy/certwatch.c: the directories of the listeners' certificate files are watched (libuv fs
 * events: inotify), so that a renewed certificate is served without a reload. Renewal tools
 * and Kubernetes write several files and rename them into place; a change is acted on once the
 * directories have been quiet for SETTLE_MS, and the owner's swap does the rest. */
#include "proxy/certwatch.h"

#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/log.h"

#define SETTLE_MS 1000
#define MAX_DIRS 64

struct watched {
    uv_fs_event_t ev;
    char dir[4096];
};

struct moat_certwatch {
    uv_loop_t *loop;
    uv_timer_t settle;
    struct watched *dirs[MAX_DIRS];
    size_t n_dirs;
    int (*swap)(void *arg, const char *why, char *msg, size_t cap);
    void *arg;
    int closes_pending; /* handles not yet closed: freed at 0 once stopped */
    int is_stopped;
};

static void on_settled(uv_timer_t *t)
{
    struct moat_certwatch *w = t->data;
    char msg[1024];
    w->swap(w->arg, "their files changed", msg, sizeof(msg));
}

/* A name a certificate or key can have, or Kubernetes' ..data link flip: other files in the
 * directory (a log, say) are not a reason to load anything. */
static int is_cert_name(const char *name)
{
    static const char *const tails[] = {".pem", ".crt", ".cer", ".key"};
    if (name == NULL || strncmp(name, "..", 2) == 0)
        return 1;
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++)
        if (n >= 4 && strcmp(name + n - 4, tails[i]) == 0)
            return 1;
    return 0;
}

static void on_event(uv_fs_event_t *ev, const char *name, int events, int status)
{
    (void)events;
    struct moat_certwatch *w = ev->data;
    if (status < 0 || w->is_stopped || !is_cert_name(name))
        return;
    uv_timer_start(&w->settle, on_settled, SETTLE_MS, 0); /* again: wait for quiet */
}

static void add_dir(struct moat_certwatch *w, const char *path, int is_dir)
{
    char copy[4096];
    snprintf(copy, sizeof(copy), "%s", path);
    const char *dir = is_dir ? copy : dirname(copy);
    for (size_t i = 0; i < w->n_dirs; i++)
        if (strcmp(w->dirs[i]->dir, dir) == 0)
            return;
    struct watched *d = calloc(1, sizeof(*d));
    if (w->n_dirs == MAX_DIRS || d == NULL) {
        free(d);
        moat_log(MOAT_LOG_WARN, "main certificates: more than %d directories to watch; %s is "
                 "not watched (PUT /certificates/reload on the admin listener swaps them)",
                 MAX_DIRS, dir);
        return;
    }
    snprintf(d->dir, sizeof(d->dir), "%s", dir);
    uv_fs_event_init(w->loop, &d->ev);
    d->ev.data = w;
    int e = uv_fs_event_start(&d->ev, on_event, d->dir, 0);
    if (e != 0)
        moat_log(MOAT_LOG_WARN, "main certificates: cannot watch %s: %s", d->dir, uv_strerror(e));
    w->dirs[w->n_dirs++] = d;
}

struct moat_certwatch *moat_certwatch_start(uv_loop_t *loop, const struct moat_cfg *cfg,
                                            int (*swap)(void *arg, const char *why, char *msg,
                                                        size_t cap),
                                            void *arg)
{
    struct moat_certwatch *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->loop = loop;
    w->swap = swap;
    w->arg = arg;
    uv_timer_init(loop, &w->settle);
    w->settle.data = w;
    for (size_t l = 0; l < cfg->n_listeners; l++) {
        const struct moat_cfg_listener *li = &cfg->listeners[l];
        for (size_t i = 0; i < li->n_certs; i++) {
            add_dir(w, li->certs[i].cert_file, 0);
            add_dir(w, li->certs[i].key_file, 0);
        }
        for (size_t i = 0; i < li->n_cert_dirs; i++)
            add_dir(w, li->cert_dirs[i], 1);
    }
    return w;
}

static void on_closed(uv_handle_t *h)
{
    struct moat_certwatch *w = h->data;
    if (h->type == UV_FS_EVENT)
        free((struct watched *)(void *)h); /* ev is its first member */
    if (--w->closes_pending == 0)
        free(w);
}

void moat_certwatch_stop(struct moat_certwatch *w)
{
    if (w == NULL || w->is_stopped)
        return;
    w->is_stopped = 1;
    w->closes_pending = 1 + (int)w->n_dirs;
    uv_close((uv_handle_t *)&w->settle, on_closed);
    for (size_t i = 0; i < w->n_dirs; i++)
        uv_close((uv_handle_t *)&w->dirs[i]->ev, on_closed);
}
