/* tests/unit/config/test_resolver.c: where backend names are resolved (the resolver section and
 * --resolver / --dns-refresh): defaults, every key, and each mistake's message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "test_config.h"

static char path[] = "/tmp/moat-test-resolver-XXXXXX";
static char err[4096];

/* Loads text as a configuration file: 0 and *cfg, or -1 with err. */
static int load_text(const char *text, struct moat_cfg **cfg)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (int)strlen(text));
    close(fd);
    int rc = moat_cfg_load_yaml(path, 1, cfg, err, sizeof(err));
    unlink(path);
    memcpy(path + strlen(path) - 6, "XXXXXX", 6);
    return rc;
}

static enum moat_cfg_result load_args(int argc, char **argv, struct moat_cfg **cfg)
{
    return moat_cfg_from_argv(argc, argv, 1, cfg, err, sizeof(err));
}

static void test_resolver_defaults(void **state)
{
    (void)state;
    struct moat_cfg *cfg = NULL;
    assert_int_equal(load_text("pools: {app: {backends: [app:80]}}\n", &cfg), 0);
    assert_int_equal(cfg->resolver.n_servers, 0); /* the system's */
    assert_int_equal(cfg->resolver.refresh_ms, MOAT_CFG_DEFAULT_DNS_REFRESH_MS);
    assert_int_equal(cfg->resolver.hold_ms, MOAT_CFG_DEFAULT_DNS_HOLD_MS);
    moat_cfg_free(cfg);
}

static void test_resolver_keys(void **state)
{
    (void)state;
    struct moat_cfg *cfg = NULL;
    assert_int_equal(load_text("resolver:\n"
                               "  servers: [\"127.0.0.1:5353\", \"[::1]:53\"]\n"
                               "  refresh: 2s\n"
                               "  hold: 0\n"
                               "pools: {app: {backends: [app:80]}}\n", &cfg), 0);
    assert_int_equal(cfg->resolver.n_servers, 2);
    assert_string_equal(cfg->resolver.servers[0].host, "127.0.0.1");
    assert_int_equal(cfg->resolver.servers[0].port, 5353);
    assert_string_equal(cfg->resolver.servers[1].host, "::1");
    assert_true(cfg->resolver.servers[1].is_ipv6);
    assert_int_equal(cfg->resolver.refresh_ms, 2000);
    assert_int_equal(cfg->resolver.hold_ms, 0);
    moat_cfg_free(cfg);
    assert_int_equal(load_text("resolver: {refresh: 0}\npools: {app: {backends: [app:80]}}\n",
                               &cfg), 0);
    assert_int_equal(cfg->resolver.refresh_ms, 0); /* resolve once */
    moat_cfg_free(cfg);
}

static void test_resolver_mistakes(void **state)
{
    (void)state;
    struct moat_cfg *cfg = NULL;
    assert_int_equal(load_text("resolver:\n"
                               "  servers: [dns.local:53, \"127.0.0.1\"]\n"
                               "  refresh: 500ms\n"
                               "  hold: forever\n"
                               "  port: 53\n"
                               "pools: {app: {backends: [app:80]}}\n", &cfg), -1);
    assert_null(cfg);
    const char *want[] = {
        ":2:13: resolver.servers[0]: expected an IP address and port (a DNS server cannot be "
        "a name), got 'dns.local:53'",
        ":2:27: resolver.servers[1]: missing port in '127.0.0.1'",
        ":3:12: resolver.refresh: expected 0 (resolve once) or at least 1s, got '500ms'",
        ":4:9: resolver.hold: expected a duration from 0 to 1h (e.g. 10s), got 'forever'",
        ":5:3: resolver.port: unknown key (expected one of: servers, refresh, hold)",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (strstr(err, want[i]) == NULL)
            fail_msg("missing \"%s\" in:\n%s", want[i], err);
    assert_int_equal(load_text("resolver: {servers: [1.1.1.1:53, 1.1.1.2:53, 1.1.1.3:53, "
                               "1.1.1.4:53, 1.1.1.5:53]}\npools: {app: {backends: [app:80]}}\n",
                               &cfg), -1);
    assert_non_null(strstr(err, "resolver.servers: at most 4 DNS servers"));
}

static void test_resolver_flags(void **state)
{
    (void)state;
    struct moat_cfg *cfg = NULL;
    char *args[] = {"moat", "--backend", "app:80", "--resolver", "127.0.0.1:5353",
                    "--resolver", "[::1]:53", "--dns-refresh", "30s"};
    assert_int_equal(load_args(9, args, &cfg), MOAT_CFG_RUN);
    assert_int_equal(cfg->resolver.n_servers, 2);
    assert_int_equal(cfg->resolver.servers[0].port, 5353);
    assert_int_equal(cfg->resolver.refresh_ms, 30000);
    moat_cfg_free(cfg);
    char *once[] = {"moat", "--backend", "app:80", "--dns-refresh", "0"};
    assert_int_equal(load_args(5, once, &cfg), MOAT_CFG_RUN);
    assert_int_equal(cfg->resolver.refresh_ms, 0);
    moat_cfg_free(cfg);
    char *name[] = {"moat", "--backend", "app:80", "--resolver", "dns:53"};
    assert_int_equal(load_args(5, name, &cfg), MOAT_CFG_BAD_ARGS);
    assert_non_null(strstr(err, "--resolver: expected an IP address and port"));
    char *fast[] = {"moat", "--backend", "app:80", "--dns-refresh", "100ms"};
    assert_int_equal(load_args(5, fast, &cfg), MOAT_CFG_BAD_ARGS);
    assert_non_null(strstr(err, "--dns-refresh: expected 0 (resolve once) or a duration from "
                                "1s to 1h, got '100ms'"));
}

static void test_host_is_ip(void **state)
{
    (void)state;
    struct moat_cfg_hostport hp;
    char why[128];
    const char *ips[] = {"127.0.0.1:80", "[::1]:80", "10.1.2.3:1"};
    const char *names[] = {"app:80", "app.test:80", "1a.example:80", "localhost:80"};
    for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++) {
        assert_int_equal(moat_cfg_hostport_parse(ips[i], 0, &hp, why, sizeof(why)), 0);
        assert_int_equal(moat_cfg_host_is_ip(&hp), 1);
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_int_equal(moat_cfg_hostport_parse(names[i], 0, &hp, why, sizeof(why)), 0);
        assert_int_equal(moat_cfg_host_is_ip(&hp), 0);
    }
}

int run_resolver_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolver_defaults),
        cmocka_unit_test(test_resolver_keys),
        cmocka_unit_test(test_resolver_mistakes),
        cmocka_unit_test(test_resolver_flags),
        cmocka_unit_test(test_host_is_ip),
    };
    return cmocka_run_group_tests_name("config resolver", tests, NULL, NULL);
}
