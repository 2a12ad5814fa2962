/* tests/unit/proxy/test_balance.c: backend targets (one per pool and address, for the whole
 * process), their shared state, and the choice of a pool's member (proxy/balance.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "proxy/balance.h"

static struct sockaddr_storage v4(const char *ip, unsigned port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &a->sin_addr);
    return ss;
}

/* A reload that lists the same pool and address gets the same target, so what was learnt
 * about it survives; another pool or address is another target. */
static void test_targets_are_shared_by_identity(void **state)
{
    (void)state;
    struct sockaddr_storage a = v4("127.0.0.2", 8080), b = v4("127.0.0.3", 8080);
    struct moat_target *t1 = moat_target_get("app", &a, "127.0.0.2:8080");
    struct moat_target *t2 = moat_target_get("app", &a, "127.0.0.2:8080");
    struct moat_target *other_pool = moat_target_get("api", &a, "127.0.0.2:8080");
    struct moat_target *other_addr = moat_target_get("app", &b, "127.0.0.3:8080");
    assert_non_null(t1);
    assert_ptr_equal(t1, t2);
    assert_ptr_not_equal(t1, other_pool);
    assert_ptr_not_equal(t1, other_addr);
    assert_string_equal(t1->addr_text, "127.0.0.2:8080");
    assert_int_not_equal(t1->slot, other_pool->slot);

    assert_int_equal(moat_target_mark(t1, -111, 1000), 1); /* down: a change */
    moat_target_unref(t2);
    struct moat_target *t3 = moat_target_get("app", &a, "127.0.0.2:8080");
    assert_ptr_equal(t3, t1);
    assert_false(moat_target_is_up(t3, 1000)); /* the mark is still there */

    moat_target_unref(t3);
    moat_target_unref(t1); /* the last reference: gone, state and all */
    struct moat_target *fresh = moat_target_get("app", &a, "127.0.0.2:8080");
    assert_true(moat_target_is_up(fresh, 1000));
    moat_target_unref(fresh);
    moat_target_unref(other_pool);
    moat_target_unref(other_addr);
}

/* One worker's failed connect passes the backend over for every worker, for
 * MOAT_TARGET_DOWN_MS; only the change is reported, so only one worker logs it. */
static void test_marks_report_changes_once(void **state)
{
    (void)state;
    struct sockaddr_storage a = v4("127.0.0.4", 81);
    struct moat_target *t = moat_target_get("p", &a, "127.0.0.4:81");
    assert_int_equal(moat_target_mark(t, 0, 500), 0);    /* up, and was up: nothing */
    assert_int_equal(moat_target_mark(t, -111, 500), 1); /* down */
    assert_int_equal(moat_target_mark(t, -110, 600), 0); /* still down: no new line */
    assert_false(moat_target_is_up(t, 600 + MOAT_TARGET_DOWN_MS - 1));
    assert_true(moat_target_is_up(t, 600 + MOAT_TARGET_DOWN_MS));
    assert_int_equal(moat_target_mark(t, 0, 700), 1); /* answers again */
    assert_true(moat_target_is_up(t, 700));
    moat_target_unref(t);
}

struct pool3 {
    struct moat_target *t[3];
    unsigned w[3];
    struct moat_balance_pool pool;
};

static void pool3_make(struct pool3 *p, const char *name, unsigned w0, unsigned w1, unsigned w2)
{
    const char *ips[3] = {"127.0.1.1", "127.0.1.2", "127.0.1.3"};
    for (int i = 0; i < 3; i++) {
        struct sockaddr_storage a = v4(ips[i], 80);
        p->t[i] = moat_target_get(name, &a, ips[i]);
    }
    p->w[0] = w0;
    p->w[1] = w1;
    p->w[2] = w2;
    p->pool = (struct moat_balance_pool){.targets = p->t, .weights = p->w, .first = 0, .n = 3};
}

static void pool3_free(struct pool3 *p)
{
    for (int i = 0; i < 3; i++)
        moat_target_unref(p->t[i]);
}

static void test_round_robin_skips_members_passed_over(void **state)
{
    (void)state;
    struct pool3 p;
    pool3_make(&p, "rr", 1, 1, 1);
    struct moat_picker *k = moat_picker_new(1, 3);
    size_t seq[6];
    for (int i = 0; i < 6; i++)
        seq[i] = moat_pick(k, 0, &p.pool, NULL, SIZE_MAX, 0);
    const size_t want[6] = {0, 1, 2, 0, 1, 2};
    assert_memory_equal(seq, want, sizeof(want));

    moat_target_mark(p.t[1], -111, 0); /* 1 is down until MOAT_TARGET_DOWN_MS */
    for (int i = 0; i < 6; i++)
        assert_int_not_equal(moat_pick(k, 0, &p.pool, NULL, SIZE_MAX, 100), 1);

    /* A retry avoids the member that failed, even when it is the only one up. */
    assert_int_equal(moat_pick(k, 0, &p.pool, NULL, 0, 100), 2);
    assert_int_equal(moat_pick(k, 0, &p.pool, NULL, 2, 100), 0);

    /* Every member down: plain round robin, so a recovered one is found by the next request. */
    moat_target_mark(p.t[0], -111, 0);
    moat_target_mark(p.t[2], -111, 0);
    size_t seen[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++)
        seen[moat_pick(k, 0, &p.pool, NULL, SIZE_MAX, 100)]++;
    assert_int_equal(seen[0] + seen[1] + seen[2], 3);
    assert_true(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
    moat_picker_free(k);
    pool3_free(&p);
}

/* picks n members of p into out, as letters. */
static void picks(struct moat_picker *k, const struct pool3 *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        size_t m = moat_pick(k, 0, &p->pool, NULL, SIZE_MAX, 0);
        out[i] = m == SIZE_MAX ? '-' : (char)('a' + m);
    }
    out[n] = '\0';
}

/* Smooth weighted round robin interleaves (nginx's own examples), weight 0 takes nothing. */
static void test_weights_interleave(void **state)
{
    (void)state;
    char got[32];
    struct pool3 p;
    pool3_make(&p, "w31", 3, 1, 0);
    struct moat_picker *k = moat_picker_new(1, 3);
    picks(k, &p, 8, got);
    assert_string_equal(got, "aabaaaba");
    moat_picker_free(k);
    pool3_free(&p);

    pool3_make(&p, "w511", 5, 1, 1);
    k = moat_picker_new(1, 3);
    picks(k, &p, 14, got);
    assert_string_equal(got, "aabacaaaabacaa");
    moat_picker_free(k);
    pool3_free(&p);

    /* Weight 0 everywhere: nothing to try, even on a retry. */
    pool3_make(&p, "w000", 0, 0, 0);
    k = moat_picker_new(1, 3);
    picks(k, &p, 2, got);
    assert_string_equal(got, "--");
    moat_picker_free(k);
    pool3_free(&p);

    /* Every weighted member down: round robin over the weighted ones only. */
    pool3_make(&p, "w101", 1, 0, 1);
    k = moat_picker_new(1, 3);
    moat_target_mark(p.t[0], -111, 0);
    moat_target_mark(p.t[2], -111, 0);
    picks(k, &p, 4, got);
    assert_string_equal(got, "acac");
    moat_target_mark(p.t[0], 0, 0);
    moat_target_mark(p.t[2], 0, 0);
    moat_picker_free(k);
    pool3_free(&p);
}

static void test_random_follows_weights(void **state)
{
    (void)state;
    struct pool3 p;
    pool3_make(&p, "rnd", 3, 1, 0);
    p.pool.alg = MOAT_CFG_BALANCE_RANDOM;
    struct moat_picker *k = moat_picker_new(1, 3);
    int seen[3] = {0, 0, 0};
    for (int i = 0; i < 8000; i++)
        seen[moat_pick(k, 0, &p.pool, NULL, SIZE_MAX, 0)]++;
    assert_int_equal(seen[2], 0);
    assert_true(seen[0] > 5700 && seen[0] < 6300); /* 6000 expected; 5 sigma is about 200 */
    moat_picker_free(k);
    pool3_free(&p);
}

static void test_least_request_avoids_the_busy_member(void **state)
{
    (void)state;
    struct pool3 p;
    pool3_make(&p, "lr", 1, 1, 1);
    p.pool.alg = MOAT_CFG_BALANCE_LEAST_REQUEST;
    struct moat_picker *k = moat_picker_new(1, 3);
    for (int i = 0; i < 50; i++)
        moat_picker_started(k, 0, 0); /* member 0 is stuck on 50 slow requests */
    int seen[3] = {0, 0, 0};
    for (int i = 0; i < 3000; i++) {
        size_t m = moat_pick(k, 0, &p.pool, NULL, SIZE_MAX, 0);
        seen[m]++;
        moat_picker_started(k, 0, m);
        moat_picker_ended(k, 0, m); /* the others answer at once */
    }
    /* Member 0 wins only when both draws are member 0 (1 in 9). */
    assert_true(seen[0] < 3000 / 9 + 150);
    assert_true(seen[1] > 1000 && seen[2] > 1000);
    moat_picker_free(k);
    pool3_free(&p);
}

/* The same key goes to the same member in every worker (picker); a member leaving moves only
 * the keys it had. */
static void test_hash_is_stable_and_moves_little(void **state)
{
    (void)state;
    struct pool3 p;
    pool3_make(&p, "hrw", 1, 1, 1);
    p.pool.alg = MOAT_CFG_BALANCE_HASH;
    struct moat_picker *k1 = moat_picker_new(1, 3), *k2 = moat_picker_new(1, 3);
    size_t before[1000];
    int count[3] = {0, 0, 0};
    for (int i = 0; i < 1000; i++) {
        struct moat_pick_req req = {.has_key = 1, .key = (uint64_t)i * 0x9e3779b97f4a7c15u};
        before[i] = moat_pick(k1, 0, &p.pool, &req, SIZE_MAX, 0);
        assert_int_equal(moat_pick(k2, 0, &p.pool, &req, SIZE_MAX, 0), before[i]);
        count[before[i]]++;
    }
    for (int m = 0; m < 3; m++)
        assert_true(count[m] > 250 && count[m] < 420); /* about a third each */
    moat_target_mark(p.t[1], -111, 0);
    for (int i = 0; i < 1000; i++) {
        struct moat_pick_req req = {.has_key = 1, .key = (uint64_t)i * 0x9e3779b97f4a7c15u};
        size_t now = moat_pick(k1, 0, &p.pool, &req, SIZE_MAX, 100);
        if (before[i] != 1)
            assert_int_equal(now, before[i]); /* untouched by member 1's going */
        else
            assert_int_not_equal(now, 1);
    }
    moat_target_mark(p.t[1], 0, 0);
    moat_picker_free(k1);
    moat_picker_free(k2);
    pool3_free(&p);
}

/* A pinned client keeps its member while it is up, even at weight 0 (draining), and moves
 * when it is down. */
static void test_sticky_cookie_pins(void **state)
{
    (void)state;
    struct pool3 p;
    pool3_make(&p, "sticky", 1, 0, 1);
    p.pool.sticky_cookie = "moat_backend";
    struct moat_picker *k = moat_picker_new(1, 3);
    assert_int_equal(strlen(p.t[1]->cookie), 16);
    assert_string_not_equal(p.t[1]->cookie, p.t[0]->cookie);
    assert_null(strstr(p.t[1]->cookie, "127")); /* not the address */
    struct moat_pick_req req = {.pinned = p.t[1]->cookie, .pinned_len = 16};
    for (int i = 0; i < 5; i++)
        assert_int_equal(moat_pick(k, 0, &p.pool, &req, SIZE_MAX, 0), 1);
    moat_target_mark(p.t[1], -111, 0);
    size_t m = moat_pick(k, 0, &p.pool, &req, SIZE_MAX, 100);
    assert_true(m == 0 || m == 2);
    moat_target_mark(p.t[1], 0, 0);
    struct moat_pick_req junk = {.pinned = "0123456789abcdef", .pinned_len = 16};
    m = moat_pick(k, 0, &p.pool, &junk, SIZE_MAX, 0);
    assert_true(m == 0 || m == 2);
    moat_picker_free(k);
    pool3_free(&p);
}

/* Failures in a row eject, for longer each time; never the last usable member, never more
 * than half the pool; a success ends the run. */
static void test_passive_ejection_rules(void **state)
{
    (void)state;
    const struct moat_passive cfg = {.consecutive_errors = 3, .ejection_ms = 1000,
                                     .max_ejection_ms = 2500};
    struct pool3 p;
    pool3_make(&p, "passive", 1, 1, 1);
    assert_int_equal(moat_target_failed(p.t[0], &p.pool, &cfg, 0), 0);
    assert_int_equal(moat_target_failed(p.t[0], &p.pool, &cfg, 0), 0);
    moat_target_succeeded(p.t[0], &cfg, 0); /* the run ends */
    assert_int_equal(moat_target_failed(p.t[0], &p.pool, &cfg, 0), 0);
    assert_int_equal(moat_target_failed(p.t[0], &p.pool, &cfg, 0), 0);
    assert_int_equal(moat_target_failed(p.t[0], &p.pool, &cfg, 0), 1000); /* third in a row */
    assert_false(moat_target_is_up(p.t[0], 999));
    assert_true(moat_target_is_up(p.t[0], 1000));
    /* A second member may not go too: one of three is the most (never more than half). */
    for (int i = 0; i < 5; i++)
        assert_int_equal(moat_target_failed(p.t[1], &p.pool, &cfg, 10), 0);
    assert_true(moat_target_is_up(p.t[1], 10));
    /* Back, and failing again at once: ejected for twice as long, then capped. */
    for (int i = 0; i < 2; i++)
        moat_target_failed(p.t[0], &p.pool, &cfg, 1000);
    assert_int_equal(moat_target_failed(p.t[0], &p.pool, &cfg, 1000), 2000);
    for (int i = 0; i < 2; i++)
        moat_target_failed(p.t[0], &p.pool, &cfg, 3000);
    assert_int_equal(moat_target_failed(p.t[0], &p.pool, &cfg, 3000), 2500);
    pool3_free(&p);

    /* The last usable member is never ejected, nor paused. */
    pool3_make(&p, "last", 1, 0, 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(moat_target_failed(p.t[0], &p.pool, &cfg, 0), 0);
    assert_true(moat_target_is_up(p.t[0], 0));
    assert_int_equal(moat_target_pause(p.t[0], &p.pool, 5000, 0), 0);
    pool3_free(&p);

    /* A pause lasts what Retry-After asked, at most MOAT_PAUSE_MAX_MS. */
    pool3_make(&p, "pause", 1, 1, 1);
    assert_int_equal(moat_target_pause(p.t[2], &p.pool, 3600000, 0), 1);
    assert_false(moat_target_is_up(p.t[2], MOAT_PAUSE_MAX_MS - 1));
    assert_true(moat_target_is_up(p.t[2], MOAT_PAUSE_MAX_MS));
    pool3_free(&p);
}

/* Back from a failure, a member's share grows over the slow-start window; not at start. */
static void test_slow_start(void **state)
{
    (void)state;
    struct pool3 p;
    pool3_make(&p, "slow", 1, 1, 0);
    p.pool.slow_start_ms = 10000;
    struct moat_picker *k = moat_picker_new(1, 3);
    int seen[3] = {0, 0, 0};
    for (int i = 0; i < 100; i++) /* never failed: full share at once */
        seen[moat_pick(k, 0, &p.pool, NULL, SIZE_MAX, 0)]++;
    assert_int_equal(seen[0], 50);
    moat_target_mark(p.t[1], -111, 1000);
    assert_int_equal(moat_target_mark(p.t[1], 0, 20000), 1); /* back at 20 s */
    int at_start[3] = {0, 0, 0}, later[3] = {0, 0, 0};
    for (int i = 0; i < 1100; i++) /* a tenth of its share at first */
        at_start[moat_pick(k, 0, &p.pool, NULL, SIZE_MAX, 20000)]++;
    for (int i = 0; i < 1500; i++) /* half of it at 25 s */
        later[moat_pick(k, 0, &p.pool, NULL, SIZE_MAX, 25000)]++;
    assert_int_equal(at_start[1], 100);
    assert_int_equal(later[1], 500);
    seen[1] = 0;
    for (int i = 0; i < 100; i++) /* all of it after the window */
        seen[moat_pick(k, 0, &p.pool, NULL, SIZE_MAX, 30000)]++;
    assert_int_equal(seen[1], 50);
    moat_picker_free(k);
    pool3_free(&p);
}

/* An address a DNS name gained while moat runs ramps up; one some snapshot held already
 * (the same address again) does not. */
static void test_a_new_dns_address_ramps_up(void **state)
{
    (void)state;
    struct pool3 p;
    pool3_make(&p, "joined", 1, 1, 0);
    p.pool.slow_start_ms = 10000;
    moat_target_ref(p.t[0]); /* an older snapshot holds it too */
    moat_target_joined(p.t[0], 20000);
    moat_target_joined(p.t[1], 20000); /* the only reference: new */
    struct moat_picker *k = moat_picker_new(1, 3);
    int seen[3] = {0, 0, 0};
    for (int i = 0; i < 1100; i++)
        seen[moat_pick(k, 0, &p.pool, NULL, SIZE_MAX, 20000)]++;
    assert_int_equal(seen[0], 1000);
    assert_int_equal(seen[1], 100); /* a tenth of its share at first */
    moat_picker_free(k);
    moat_target_unref(p.t[0]);
    pool3_free(&p);
}

/* The key hash takes from a request, for each hash_key; no key, no hash (round robin). */
static void test_hash_keys_from_a_request(void **state)
{
    (void)state;
    struct moat_http_field fields[] = {{"X-User", 6, "alice", 5},
                                       {"Cookie", 6, "sid=42; pin=0123456789abcdef", 28}};
    struct moat_http_head h = {.fields = fields, .n_fields = 2, .target = "/a/b?x=1",
                               .target_len = 8, .host = "example.com", .host_len = 11};
    struct moat_balance_pool pool = {.alg = MOAT_CFG_BALANCE_HASH};
    struct moat_pick_req r1, r2;
    const struct {
        enum moat_cfg_hash_by by;
        const char *name;
    } kinds[] = {{MOAT_CFG_HASH_CLIENT_IP, NULL}, {MOAT_CFG_HASH_HEADER, "X-User"},
                 {MOAT_CFG_HASH_COOKIE, "sid"},   {MOAT_CFG_HASH_URI, NULL},
                 {MOAT_CFG_HASH_PATH, NULL},      {MOAT_CFG_HASH_HOST, NULL}};
    uint64_t keys[6];
    for (size_t i = 0; i < 6; i++) {
        pool.hash_by = kinds[i].by;
        pool.hash_name = kinds[i].name;
        moat_pick_req_make(&pool, &h, "192.0.2.7", &r1);
        moat_pick_req_make(&pool, &h, "192.0.2.7", &r2);
        assert_true(r1.has_key);
        assert_true(r1.key == r2.key); /* the same request, the same key */
        keys[i] = r1.key;
        for (size_t j = 0; j < i; j++)
            assert_true(keys[j] != keys[i]); /* each kind reads a different part */
    }
    /* The path is the target without its query: another query, the same key. */
    pool.hash_by = MOAT_CFG_HASH_PATH;
    h.target = "/a/b?y=2";
    moat_pick_req_make(&pool, &h, "192.0.2.7", &r1);
    assert_true(r1.key == keys[4]);
    /* A header or cookie the request lacks: no key. */
    pool.hash_by = MOAT_CFG_HASH_HEADER;
    pool.hash_name = "X-Tenant";
    moat_pick_req_make(&pool, &h, "192.0.2.7", &r1);
    assert_false(r1.has_key);
    /* The sticky cookie is read whatever the algorithm. */
    pool.alg = MOAT_CFG_BALANCE_ROUND_ROBIN;
    pool.sticky_cookie = "pin";
    moat_pick_req_make(&pool, &h, "192.0.2.7", &r1);
    assert_false(r1.has_key);
    assert_int_equal(r1.pinned_len, 16);
    assert_memory_equal(r1.pinned, "0123456789abcdef", 16);
}

static void test_retry_rule(void **state)
{
    (void)state;
    assert_true(moat_may_try_another(1, 2, 1));  /* one more attempt on another member */
    assert_false(moat_may_try_another(2, 2, 1)); /* never a third */
    assert_false(moat_may_try_another(1, 1, 1)); /* nobody else to try */
    assert_false(moat_may_try_another(1, 3, 0)); /* attempts: 0 turns retries off */
    assert_true(moat_may_try_another(2, 3, 2));
    /* The budget: three at once, or a fifth of what is in flight when that is more. */
    struct moat_picker *k = moat_picker_new(1, 1);
    for (int i = 0; i < 3; i++)
        assert_true(moat_picker_retry_begin(k, 0, 20));
    assert_false(moat_picker_retry_begin(k, 0, 20));
    for (int i = 0; i < 20; i++)
        moat_picker_started(k, 0, 0);
    assert_true(moat_picker_retry_begin(k, 0, 20)); /* 20 in flight: 4 allowed */
    assert_false(moat_picker_retry_begin(k, 0, 20));
    moat_picker_retry_end(k, 0);
    assert_true(moat_picker_retry_allowed(k, 0, 20));
    moat_picker_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_targets_are_shared_by_identity),
        cmocka_unit_test(test_marks_report_changes_once),
        cmocka_unit_test(test_round_robin_skips_members_passed_over),
        cmocka_unit_test(test_weights_interleave),
        cmocka_unit_test(test_random_follows_weights),
        cmocka_unit_test(test_least_request_avoids_the_busy_member),
        cmocka_unit_test(test_hash_is_stable_and_moves_little),
        cmocka_unit_test(test_sticky_cookie_pins),
        cmocka_unit_test(test_passive_ejection_rules),
        cmocka_unit_test(test_slow_start),
        cmocka_unit_test(test_a_new_dns_address_ramps_up),
        cmocka_unit_test(test_hash_keys_from_a_request),
        cmocka_unit_test(test_retry_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
