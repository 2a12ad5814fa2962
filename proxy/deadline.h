/* proxy/deadline.h: a connection's timeout on a libuv timer, with libuv's own start/stop/again
 * semantics, but lazy: the timer is re-armed only when the deadline comes sooner than the time
 * it is armed for. Moving a deadline later (every request, every byte of a tunnel) or clearing
 * it then costs no timer-heap operation; a timer that fires early re-arms itself for the rest. */
#ifndef MOAT_DEADLINE_H
#define MOAT_DEADLINE_H
#include <stdint.h>
#include <uv.h>

struct moat_deadline {
    uv_timer_t timer;   /* its data is the owner, handed to on_due */
    uint64_t due_ms;    /* loop time on_due runs at; 0: none */
    uint64_t period_ms; /* moat_deadline_again() and firing restart from now with it; 0: one-shot */
    void (*on_due)(void *owner);
};

void moat_deadline_init(uv_loop_t *loop, struct moat_deadline *d, void (*on_due)(void *owner),
                        void *owner);

/* Due in ms from now (ms > 0); repeating (as uv_timer_start() with repeat = ms) or once. */
void moat_deadline_start(struct moat_deadline *d, uint64_t ms, int is_repeating);

/* Not due any more; a repeating deadline forgets its period (uv_timer_stop() with repeat 0). */
void moat_deadline_stop(struct moat_deadline *d);

/* Not due, but a repeating deadline keeps its period for moat_deadline_again(). */
void moat_deadline_pause(struct moat_deadline *d);

/* A repeating deadline is due a period from now (uv_timer_again()); else nothing. */
void moat_deadline_again(struct moat_deadline *d);

static inline int moat_deadline_is_repeating(const struct moat_deadline *d)
{
    return d->period_ms != 0;
}

static inline int moat_deadline_is_due(const struct moat_deadline *d)
{
    return d->due_ms != 0;
}

/* Closes the timer; cb as for uv_close(). */
void moat_deadline_close(struct moat_deadline *d, uv_close_cb cb);

#endif
