/* proxy/deadline.c: lazy deadlines; see deadline.h. */
#include "proxy/deadline.h"

static void on_timer(uv_timer_t *t);

/* The timer fires no later than ms from now. */
static void arm_within(struct moat_deadline *d, uint64_t ms)
{
    if (!uv_is_active((uv_handle_t *)&d->timer) || uv_timer_get_due_in(&d->timer) > ms)
        uv_timer_start(&d->timer, on_timer, ms, 0);
}

static void on_timer(uv_timer_t *t)
{
    struct moat_deadline *d = (struct moat_deadline *)t; /* the timer is the first member */
    if (d->due_ms == 0)
        return; /* stopped since it was armed */
    uint64_t now = uv_now(t->loop);
    if (now < d->due_ms) { /* moved later since it was armed */
        uv_timer_start(t, on_timer, d->due_ms - now, 0);
        return;
    }
    /* As libuv does for a repeating timer: due again a period on, before the callback (which
     * may change it). */
    d->due_ms = d->period_ms != 0 ? now + d->period_ms : 0;
    if (d->due_ms != 0)
        uv_timer_start(t, on_timer, d->period_ms, 0);
    d->on_due(t->data);
}

void moat_deadline_init(uv_loop_t *loop, struct moat_deadline *d, void (*on_due)(void *owner),
                        void *owner)
{
    uv_timer_init(loop, &d->timer);
    d->timer.data = owner;
    d->due_ms = 0;
    d->period_ms = 0;
    d->on_due = on_due;
}

void moat_deadline_start(struct moat_deadline *d, uint64_t ms, int is_repeating)
{
    d->period_ms = is_repeating ? ms : 0;
    d->due_ms = uv_now(d->timer.loop) + ms;
    arm_within(d, ms);
}

void moat_deadline_stop(struct moat_deadline *d)
{
    d->due_ms = 0;
    d->period_ms = 0;
}

void moat_deadline_pause(struct moat_deadline *d)
{
    d->due_ms = 0;
}

void moat_deadline_again(struct moat_deadline *d)
{
    if (d->period_ms == 0)
        return;
    d->due_ms = uv_now(d->timer.loop) + d->period_ms;
    arm_within(d, d->period_ms);
}

void moat_deadline_close(struct moat_deadline *d, uv_close_cb cb)
{
    uv_close((uv_handle_t *)&d->timer, cb);
}
