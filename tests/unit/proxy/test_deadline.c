/* tests/unit/proxy/test_deadline.c: lazy deadlines (proxy/deadline.h) on a real libuv loop.
 * Times are the loop's own (uv_now()), and a timer never fires before its time, so the asserts
 * hold however slow the machine is. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "proxy/deadline.h"

struct probe {
    uv_loop_t loop;
    struct moat_deadline d;
    uv_timer_t helper; /* does something to d at a set time */
    uv_timer_t guard;  /* ends the test's loop */
    int fired;
    uint64_t start_ms, fired_ms;
    int stop_on_fire; /* a repeating deadline is stopped by its first firing */
};

static void on_due(void *owner)
{
    struct probe *p = owner;
    p->fired++;
    p->fired_ms = uv_now(&p->loop);
    if (p->stop_on_fire)
        moat_deadline_stop(&p->d);
}

static void on_guard(uv_timer_t *t)
{
    struct probe *p = t->data;
    uv_timer_stop(&p->helper);
    moat_deadline_stop(&p->d);
    moat_deadline_close(&p->d, NULL);
    uv_close((uv_handle_t *)&p->helper, NULL);
    uv_close((uv_handle_t *)&p->guard, NULL);
}

static void probe_init(struct probe *p, uint64_t guard_ms)
{
    *p = (struct probe){.stop_on_fire = 1};
    assert_int_equal(uv_loop_init(&p->loop), 0);
    moat_deadline_init(&p->loop, &p->d, on_due, p);
    uv_timer_init(&p->loop, &p->helper);
    uv_timer_init(&p->loop, &p->guard);
    p->helper.data = p->guard.data = p;
    uv_timer_start(&p->guard, on_guard, guard_ms, 0);
    p->start_ms = uv_now(&p->loop);
}

static void probe_run(struct probe *p)
{
    uv_run(&p->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&p->loop), 0);
}

static void fires_once_at_its_time(void **state)
{
    (void)state;
    struct probe p;
    probe_init(&p, 200);
    moat_deadline_start(&p.d, 20, 0);
    probe_run(&p);
    assert_int_equal(p.fired, 1);
    assert_true(p.fired_ms >= p.start_ms + 20);
}

static void stopped_never_fires(void **state)
{
    (void)state;
    struct probe p;
    probe_init(&p, 60);
    moat_deadline_start(&p.d, 20, 1);
    moat_deadline_stop(&p.d); /* the timer stays armed, but finds nothing due */
    probe_run(&p);
    assert_int_equal(p.fired, 0);
}

static void on_helper_again(uv_timer_t *t)
{
    moat_deadline_again(&((struct probe *)t->data)->d);
}

static void again_moves_it_later(void **state)
{
    (void)state;
    struct probe p;
    probe_init(&p, 300);
    moat_deadline_start(&p.d, 40, 1);
    uv_timer_start(&p.helper, on_helper_again, 30, 0);
    uint64_t helper_from = uv_now(&p.loop);
    probe_run(&p);
    assert_int_equal(p.fired, 1);
    assert_true(p.fired_ms >= helper_from + 30 + 40); /* a period after the again, not before */
}

static void sooner_deadline_rearms(void **state)
{
    (void)state;
    struct probe p;
    probe_init(&p, 500);
    moat_deadline_start(&p.d, 10000, 1);
    moat_deadline_start(&p.d, 20, 1); /* sooner: the armed timer would be too late */
    probe_run(&p);
    assert_int_equal(p.fired, 1);
    assert_true(p.fired_ms >= p.start_ms + 20);
    assert_true(p.fired_ms < p.start_ms + 10000);
}

static void repeating_fires_again(void **state)
{
    (void)state;
    struct probe p;
    probe_init(&p, 115);
    p.stop_on_fire = 0;
    moat_deadline_start(&p.d, 20, 1);
    probe_run(&p);
    assert_true(p.fired >= 2); /* at 20, 40, ... until the guard */
}

static void on_helper_again_after_pause(uv_timer_t *t)
{
    struct probe *p = t->data;
    assert_int_equal(p->fired, 0);
    moat_deadline_again(&p->d);
}

static void paused_waits_for_again(void **state)
{
    (void)state;
    struct probe p;
    probe_init(&p, 300);
    moat_deadline_start(&p.d, 20, 1);
    moat_deadline_pause(&p.d); /* keeps its period */
    assert_false(moat_deadline_is_due(&p.d));
    assert_true(moat_deadline_is_repeating(&p.d));
    uv_timer_start(&p.helper, on_helper_again_after_pause, 50, 0);
    probe_run(&p);
    assert_int_equal(p.fired, 1);
    assert_true(p.fired_ms >= p.start_ms + 50 + 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fires_once_at_its_time), cmocka_unit_test(stopped_never_fires),
        cmocka_unit_test(again_moves_it_later),   cmocka_unit_test(sooner_deadline_rearms),
        cmocka_unit_test(repeating_fires_again),  cmocka_unit_test(paused_waits_for_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
