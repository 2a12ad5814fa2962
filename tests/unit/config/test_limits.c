/* tests/unit/config/test_limits.c: durations, sizes, and the timeout and limit flags. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"
#include "test_config.h"

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t ms; /* 0: refused */
    } cases[] = {
        {"500ms", 500}, {"10s", 10000}, {"5m", 300000}, {"1h", 3600000}, {"2.5", 2500},
        {"30", 30000},  {".5", 500},    {"1.5s", 1500}, {"24h", 86400000}, {"1ms", 1},
        {"0", 0},       {"0s", 0},      {"25h", 0},     {"10x", 0},       {"", 0},
        {"-1s", 0},     {" 1s", 0},     {"1e3", 0},     {"0x10", 0},      {"inf", 0},
        {"s", 0},       {"1.2.3", 0},   {"0.1ms", 0},   {"10 s", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t ms = 12345;
        int rc = moat_cfg_duration_parse(cases[i].text, &ms);
        if (cases[i].ms == 0 ? rc != -1 : (rc != 0 || ms != cases[i].ms))
            fail_msg("duration '%s': rc %d, %llu ms", cases[i].text, rc, (unsigned long long)ms);
    }
}

static void test_sizes(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int ok;
        uint64_t bytes;
    } cases[] = {
        {"0", 1, 0},           {"16k", 1, 16384},   {"16K", 1, 16384},  {"1m", 1, 1048576},
        {"2g", 1, 2147483648}, {"100", 1, 100},     {"1.5k", 1, 1536},  {"0.5", 0, 0},
        {"1t", 0, 0},          {"-1", 0, 0},        {"", 0, 0},         {"k", 0, 0},
        {"1e3", 0, 0},         {"2000000g", 0, 0},  {"16 k", 0, 0},     {"0x10", 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t b = 777;
        int rc = moat_cfg_size_parse(cases[i].text, &b);
        if (cases[i].ok ? (rc != 0 || b != cases[i].bytes) : rc != -1)
            fail_msg("size '%s': rc %d, %llu bytes", cases[i].text, rc, (unsigned long long)b);
    }
}

static struct moat_cfg *load(char *err, size_t len, const char *a1, const char *a2)
{
    char *argv[] = {"moat", "--backend", "a:1", (char *)a1, (char *)a2};
    struct moat_cfg *cfg = NULL;
    moat_cfg_from_argv(a2 != NULL ? 5 : 4, argv, 2, &cfg, err, len);
    return cfg;
}

static void test_defaults(void **state)
{
    (void)state;
    char err[256];
    struct moat_cfg *cfg = load(err, sizeof(err), "--workers", "1");
    assert_non_null(cfg);
    assert_int_equal(cfg->handshake_timeout_ms, 10000);
    assert_int_equal(cfg->head_timeout_ms, 10000);
    assert_int_equal(cfg->idle_timeout_ms, 60000);
    assert_int_equal(cfg->body_timeout_ms, 60000);
    assert_int_equal(cfg->connect_timeout_ms, 5000);
    assert_int_equal(cfg->backend_timeout_ms, 60000);
    assert_int_equal(cfg->pool_idle_timeout_ms, 15000);
    assert_int_equal(cfg->tunnel_timeout_ms, 3600000);
    assert_int_equal(cfg->send_timeout_ms, 60000);
    assert_int_equal(cfg->max_head_bytes, 16384);
    assert_int_equal(cfg->max_headers, 100);
    assert_int_equal(cfg->max_target_bytes, 8192);
    assert_int_equal(cfg->max_body_bytes, 0);
    assert_int_equal(cfg->max_connections, 10000);
    assert_int_equal(cfg->max_backend_connections, 0);
    moat_cfg_free(cfg);
}

static void test_each_flag_lands_in_its_field(void **state)
{
    (void)state;
    char err[256];
    static const struct {
        const char *flag, *value;
        size_t offset;
        int is_size_t;
        uint64_t want;
    } cases[] = {
        {"--handshake-timeout", "3s", offsetof(struct moat_cfg, handshake_timeout_ms), 0, 3000},
        {"--head-timeout", "250ms", offsetof(struct moat_cfg, head_timeout_ms), 0, 250},
        {"--idle-timeout", "2m", offsetof(struct moat_cfg, idle_timeout_ms), 0, 120000},
        {"--body-timeout", "1.5", offsetof(struct moat_cfg, body_timeout_ms), 0, 1500},
        {"--connect-timeout", "100ms", offsetof(struct moat_cfg, connect_timeout_ms), 0, 100},
        {"--backend-timeout", "1h", offsetof(struct moat_cfg, backend_timeout_ms), 0, 3600000},
        {"--pool-idle-timeout", "4s", offsetof(struct moat_cfg, pool_idle_timeout_ms), 0, 4000},
        {"--tunnel-timeout", "90s", offsetof(struct moat_cfg, tunnel_timeout_ms), 0, 90000},
        {"--send-timeout", "20s", offsetof(struct moat_cfg, send_timeout_ms), 0, 20000},
        {"--max-head-size", "8k", offsetof(struct moat_cfg, max_head_bytes), 1, 8192},
        {"--max-headers", "20", offsetof(struct moat_cfg, max_headers), 1, 20},
        {"--max-target-size", "1k", offsetof(struct moat_cfg, max_target_bytes), 1, 1024},
        {"--max-body-size", "10m", offsetof(struct moat_cfg, max_body_bytes), 0, 10485760},
        {"--max-connections", "500", offsetof(struct moat_cfg, max_connections), 1, 500},
        {"--max-backend-connections", "8", offsetof(struct moat_cfg, max_backend_connections), 1,
         8},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char eq[64];
        snprintf(eq, sizeof(eq), "%s=%s", cases[i].flag, cases[i].value);
        struct moat_cfg *cfgs[2] = {load(err, sizeof(err), cases[i].flag, cases[i].value),
                                    load(err, sizeof(err), eq, NULL)};
        for (int k = 0; k < 2; k++) {
            if (cfgs[k] == NULL)
                fail_msg("%s %s refused: %s", cases[i].flag, cases[i].value, err);
            const char *field = (const char *)cfgs[k] + cases[i].offset;
            uint64_t got;
            if (cases[i].is_size_t) {
                size_t n;
                memcpy(&n, field, sizeof(n));
                got = n;
            } else {
                memcpy(&got, field, sizeof(got));
            }
            if (got != cases[i].want)
                fail_msg("%s %s: got %llu", cases[i].flag, cases[i].value,
                         (unsigned long long)got);
            moat_cfg_free(cfgs[k]);
        }
    }
}

static void test_bad_values_name_the_flag(void **state)
{
    (void)state;
    static const char *const bad[][3] = {
        {"--head-timeout", "0", "--head-timeout: expected a duration"},
        {"--idle-timeout", "forever", "got 'forever'"},
        {"--connect-timeout", "25h", "from 1ms to 24h"},
        {"--max-head-size", "512", "--max-head-size: expected a size (e.g. 16k, 1m) from 1024"},
        {"--max-head-size", "2m", "to 1048576"},
        {"--max-headers", "0", "--max-headers: expected a number from 1 to 10000, got '0'"},
        {"--max-target-size", "lots", "got 'lots'"},
        {"--max-body-size", "-1", "--max-body-size: expected a size"},
        {"--max-connections", "1e6", "--max-connections: expected a number"},
        {"--max-connections", "2000000", "to 1000000"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        struct moat_cfg *cfg = load(err, sizeof(err), bad[i][0], bad[i][1]);
        assert_null(cfg);
        if (strstr(err, bad[i][2]) == NULL)
            fail_msg("%s %s: error '%s' lacks '%s'", bad[i][0], bad[i][1], err, bad[i][2]);
    }
    char err[256];
    assert_null(load(err, sizeof(err), "--head-timeout", NULL)); /* a value is required */
    assert_non_null(strstr(err, "--head-timeout"));
}

int run_limits_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_each_flag_lands_in_its_field),
        cmocka_unit_test(test_bad_values_name_the_flag),
    };
    return cmocka_run_group_tests_name("limits", tests, NULL, NULL);
}
