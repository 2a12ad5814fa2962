/* Unit tests for config/: HOST:PORT and CIDR parsing, and the command-line loader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "config/config.h"

/* ---- HOST:PORT ---------------------------------------------------------------------------- */

struct hp_case {
    const char *text;
    int allow_zero;
    const char *host; /* NULL: must fail */
    unsigned port;
    int is_ipv6;
    const char *err_part; /* for failures: a piece of the message */
};

static const struct hp_case hp_cases[] = {
    {"localhost:8080", 0, "localhost", 8080, 0, NULL},
    {"127.0.0.1:80", 0, "127.0.0.1", 80, 0, NULL},
    {"[::1]:8443", 0, "::1", 8443, 1, NULL},
    {"[2001:db8::7]:443", 0, "2001:db8::7", 443, 1, NULL},
    {"app_1.internal-net:65535", 0, "app_1.internal-net", 65535, 0, NULL},
    {"0.0.0.0:0", 1, "0.0.0.0", 0, 0, NULL},
    {"[::]:0", 1, "::", 0, 1, NULL},
    {"localhost:0", 0, NULL, 0, 0, "invalid port"},
    {"localhost", 0, NULL, 0, 0, "missing port"},
    {"localhost:", 0, NULL, 0, 0, "invalid port"},
    {":8080", 0, NULL, 0, 0, "invalid host"},
    {"localhost:65536", 0, NULL, 0, 0, "invalid port"},
    {"localhost:80x", 0, NULL, 0, 0, "invalid port"},
    {"localhost:+80", 0, NULL, 0, 0, "invalid port"},
    {"::1:8443", 0, NULL, 0, 0, "brackets"},
    {"[::1]", 0, NULL, 0, 0, "missing port"},
    {"[::1:8443", 0, NULL, 0, 0, "missing ']'"},
    {"[example.com]:80", 0, NULL, 0, 0, "not an IPv6 address"},
    {"[]:80", 0, NULL, 0, 0, "not an IPv6 address"},
    {"bad host:80", 0, NULL, 0, 0, "invalid host"},
    {"a/b:80", 0, NULL, 0, 0, "invalid host"},
};

static void test_hostport(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(hp_cases) / sizeof(hp_cases[0]); i++) {
        const struct hp_case *c = &hp_cases[i];
        struct moat_cfg_hostport hp;
        char err[256] = "";
        int rc = moat_cfg_hostport_parse(c->text, c->allow_zero, &hp, err, sizeof(err));
        if (c->host != NULL) {
            if (rc != 0)
                fail_msg("'%s' refused: %s", c->text, err);
            assert_string_equal(hp.host, c->host);
            assert_int_equal(hp.port, c->port);
            assert_int_equal(hp.is_ipv6, c->is_ipv6);
        } else {
            if (rc != -1)
                fail_msg("'%s' accepted", c->text);
            if (strstr(err, c->err_part) == NULL)
                fail_msg("'%s': error '%s' lacks '%s'", c->text, err, c->err_part);
        }
    }
}

/* ---- CIDR --------------------------------------------------------------------------------- */

static int contains(const char *cidr, const char *addr)
{
    struct moat_cfg_cidr c;
    char err[128];
    assert_int_equal(moat_cfg_cidr_parse(cidr, &c, err, sizeof(err)), 0);
    uint8_t buf[16];
    if (inet_pton(AF_INET, addr, buf) == 1)
        return moat_cfg_cidr_contains(&c, 4, buf);
    assert_int_equal(inet_pton(AF_INET6, addr, buf), 1);
    return moat_cfg_cidr_contains(&c, 6, buf);
}

static void test_cidr_contains(void **state)
{
    (void)state;
    assert_true(contains("10.0.0.0/8", "10.200.3.4"));
    assert_false(contains("10.0.0.0/8", "11.0.0.1"));
    assert_true(contains("192.0.2.7", "192.0.2.7")); /* a bare address is a /32 */
    assert_false(contains("192.0.2.7", "192.0.2.8"));
    assert_true(contains("0.0.0.0/0", "203.0.113.9"));
    assert_true(contains("172.16.0.0/12", "172.31.255.255"));
    assert_false(contains("172.16.0.0/12", "172.32.0.0"));
    assert_true(contains("10.1.2.3/8", "10.9.9.9")); /* host bits are cleared */
    assert_true(contains("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(contains("2001:db8::/32", "2001:db9::1"));
    assert_true(contains("::1", "::1"));
    assert_false(contains("::1", "::2"));
    assert_true(contains("::/0", "fe80::1"));
    assert_true(contains("127.0.0.0/8", "::ffff:127.0.0.1")); /* IPv4-mapped */
    assert_false(contains("127.0.0.0/8", "::ffff:10.0.0.1"));
    assert_false(contains("::/0", "127.0.0.1")); /* families do not mix otherwise */
    assert_false(contains("0.0.0.0/0", "::1"));
}

static void test_cidr_errors(void **state)
{
    (void)state;
    static const char *const bad[][2] = {
        {"10.0.0.0/33", "prefix length"}, {"::/129", "prefix length"},
        {"10.0.0.0/", "prefix length"},   {"10.0.0.0/-1", "prefix length"},
        {"10.0.0.0/8x", "prefix length"}, {"10.0.0", "not an IPv4 or IPv6"},
        {"", "not an address range"},     {"example.com/8", "not an IPv4 or IPv6"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct moat_cfg_cidr c;
        char err[128] = "";
        assert_int_equal(moat_cfg_cidr_parse(bad[i][0], &c, err, sizeof(err)), -1);
        if (strstr(err, bad[i][1]) == NULL)
            fail_msg("'%s': error '%s' lacks '%s'", bad[i][0], err, bad[i][1]);
    }
}

/* ---- the command line --------------------------------------------------------------------- */

/* Parses a NULL-terminated argument list (without argv[0]). */
static enum moat_cfg_result parse(struct moat_cfg **cfg, char *err, size_t len, ...)
{
    char *argv[64] = {"moat"};
    int argc = 1;
    va_list ap;
    va_start(ap, len);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 63;)
        argv[argc++] = a;
    va_end(ap);
    err[0] = '\0';
    return moat_cfg_from_argv(argc, argv, 4, cfg, err, len);
}

static void test_cli_defaults(void **state)
{
    (void)state;
    struct moat_cfg *cfg;
    char err[512];
    assert_int_equal(parse(&cfg, err, sizeof(err), "--backend", "127.0.0.1:8080", NULL),
                     MOAT_CFG_RUN);
    assert_int_equal(cfg->n_listeners, 1);
    assert_string_equal(cfg->listeners[0].host, "0.0.0.0");
    assert_int_equal(cfg->listeners[0].port, 8443);
    assert_int_equal(cfg->n_backends, 1);
    assert_int_equal(cfg->backends[0].port, 8080);
    assert_int_equal(cfg->n_certs, 0);
    assert_int_equal(cfg->workers, 4);
    assert_int_equal(cfg->n_trusted_proxies, 0);
    assert_null(cfg->state_dir);
    assert_int_equal(cfg->log_level, MOAT_CFG_LOG_INFO);
    assert_int_equal(cfg->access_log, 1);
    assert_int_equal(cfg->drain_timeout_ms, 30000);
    moat_cfg_free(cfg);
}

static void test_cli_every_flag(void **state)
{
    (void)state;
    struct moat_cfg *cfg;
    char err[512];
    enum moat_cfg_result r =
        parse(&cfg, err, sizeof(err), "--listen", "127.0.0.1:0", "--listen=[::1]:8443",
              "--cert", "ec.pem", "--key", "ec.key", "--key=rsa.key", "--cert=rsa.pem",
              "--backend", "a:1", "--backend=b:2", "--backend", "[::1]:3", "--workers", "2",
              "--trusted-proxy", "10.0.0.0/8", "--trusted-proxy=::1", "--state-dir", "/tmp/s",
              "--state-dir", "/tmp/t", "--log-level=debug", "--no-access-log",
              "--drain-timeout", "2.5", NULL);
    if (r != MOAT_CFG_RUN)
        fail_msg("refused: %s", err);
    assert_int_equal(cfg->n_listeners, 2);
    assert_int_equal(cfg->listeners[0].port, 0);
    assert_int_equal(cfg->listeners[1].is_ipv6, 1);
    assert_int_equal(cfg->n_certs, 2);
    assert_string_equal(cfg->certs[0].cert_file, "ec.pem");
    assert_string_equal(cfg->certs[0].key_file, "ec.key");
    assert_string_equal(cfg->certs[1].cert_file, "rsa.pem"); /* the i-th --cert, the i-th --key */
    assert_string_equal(cfg->certs[1].key_file, "rsa.key");
    assert_int_equal(cfg->n_backends, 3);
    assert_string_equal(cfg->backends[1].host, "b");
    assert_string_equal(cfg->backends[2].host, "::1");
    assert_int_equal(cfg->workers, 2);
    assert_int_equal(cfg->n_trusted_proxies, 2);
    assert_int_equal(cfg->trusted_proxies[1].family, 6);
    assert_string_equal(cfg->state_dir, "/tmp/t"); /* the last one wins */
    assert_int_equal(cfg->log_level, MOAT_CFG_LOG_DEBUG);
    assert_int_equal(cfg->access_log, 0);
    assert_int_equal(cfg->drain_timeout_ms, 2500);
    moat_cfg_free(cfg);
}

static void test_cli_many_backends(void **state)
{
    (void)state;
    char *argv[1 + 2 * 40] = {"moat"};
    char names[40][16];
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof(names[i]), "h%d:%d", i, 1000 + i);
        argv[1 + 2 * i] = "--backend";
        argv[2 + 2 * i] = names[i];
    }
    struct moat_cfg *cfg;
    char err[256];
    assert_int_equal(moat_cfg_from_argv(81, argv, 1, &cfg, err, sizeof(err)), MOAT_CFG_RUN);
    assert_int_equal(cfg->n_backends, 40);
    assert_int_equal(cfg->backends[39].port, 1039);
    assert_string_equal(cfg->backends[17].host, "h17");
    moat_cfg_free(cfg);
}

static void test_cli_help_and_version(void **state)
{
    (void)state;
    struct moat_cfg *cfg = (void *)1;
    char err[256];
    assert_int_equal(parse(&cfg, err, sizeof(err), "--help", NULL), MOAT_CFG_HELP);
    assert_null(cfg);
    assert_int_equal(parse(&cfg, err, sizeof(err), "-h", NULL), MOAT_CFG_HELP);
    assert_int_equal(parse(&cfg, err, sizeof(err), "--backend", "a:1", "--version", NULL),
                     MOAT_CFG_VERSION);
    assert_int_equal(parse(&cfg, err, sizeof(err), "-V", NULL), MOAT_CFG_VERSION);
    assert_string_equal(moat_cfg_version(), "moat 0.1.0");
    /* The usage names every flag. */
    static const char *const names[] = {"--listen",        "--cert",      "--key",
                                        "--backend",       "--workers",   "--trusted-proxy",
                                        "--state-dir",     "--log-level", "--no-access-log",
                                        "--drain-timeout", "--version",   "--help"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_non_null(strstr(moat_cfg_usage(), names[i]));
}

struct bad_case {
    const char *args[6];
    const char *err_part;
};

static const struct bad_case bad_cases[] = {
    {{"--frob", NULL}, "unknown option '--frob'"},
    {{"--backend", "a:1", "-x", NULL}, "unknown option '-x'"},
    {{"--backend", "a:1", "stray", NULL}, "unexpected argument 'stray'"},
    {{"--backend", NULL}, "--backend needs a value"},
    {{"--backend", "a:1", "--listen", NULL}, "--listen needs a value"},
    {{NULL}, "at least one --backend"},
    {{"--listen", "0.0.0.0:8443", NULL}, "at least one --backend"},
    {{"--backend", "a", NULL}, "--backend: missing port in 'a'"},
    {{"--backend", "a:0", NULL}, "--backend: invalid port"},
    {{"--backend", "a:1", "--listen", "::1:80", NULL}, "--listen: IPv6 addresses need brackets"},
    {{"--backend", "a:1", "--workers", "0", NULL}, "--workers: expected a number from 1 to 256"},
    {{"--backend", "a:1", "--workers", "257", NULL}, "got '257'"},
    {{"--backend", "a:1", "--workers", "two", NULL}, "got 'two'"},
    {{"--backend", "a:1", "--workers=", NULL}, "--workers: expected"},
    {{"--backend", "a:1", "--log-level", "loud", NULL}, "--log-level: expected error, warn"},
    {{"--backend", "a:1", "--drain-timeout", "-1", NULL}, "--drain-timeout: expected seconds"},
    {{"--backend", "a:1", "--drain-timeout", "3601", NULL}, "got '3601'"},
    {{"--backend", "a:1", "--drain-timeout", "5s", NULL}, "got '5s'"},
    {{"--backend", "a:1", "--trusted-proxy", "10.0.0.0/40", NULL}, "--trusted-proxy: invalid prefix"},
    {{"--backend", "a:1", "--cert", "c.pem", NULL}, "got 1 --cert and 0 --key"},
    {{"--backend", "a:1", "--key", "k.pem", NULL}, "got 0 --cert and 1 --key"},
    {{"--backend", "a:1", "--cert", "", NULL}, "--cert: empty file name"},
    {{"--backend", "a:1", "--no-access-log=1", NULL}, "--no-access-log takes no value"},
    {{"--backend", "a:1", "--state-dir", "", NULL}, "--state-dir: empty"},
};

static void test_cli_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *c = &bad_cases[i];
        char *argv[8] = {"moat"};
        int argc = 1;
        for (int k = 0; c->args[k] != NULL; k++)
            argv[argc++] = (char *)c->args[k];
        struct moat_cfg *cfg = (void *)1;
        char err[512] = "";
        assert_int_equal(moat_cfg_from_argv(argc, argv, 2, &cfg, err, sizeof(err)),
                         MOAT_CFG_BAD_ARGS);
        assert_null(cfg);
        if (strstr(err, c->err_part) == NULL)
            fail_msg("case %zu: error '%s' lacks '%s'", i, err, c->err_part);
    }
}

static void test_cli_three_pairs_refused(void **state)
{
    (void)state;
    struct moat_cfg *cfg;
    char err[512];
    assert_int_equal(parse(&cfg, err, sizeof(err), "--backend", "a:1", "--cert", "1", "--key",
                           "1", "--cert", "2", "--key", "2", "--cert", "3", "--key", "3", NULL),
                     MOAT_CFG_BAD_ARGS);
    assert_non_null(strstr(err, "at most 2 certificate/key pairs"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostport),
        cmocka_unit_test(test_cidr_contains),
        cmocka_unit_test(test_cidr_errors),
        cmocka_unit_test(test_cli_defaults),
        cmocka_unit_test(test_cli_every_flag),
        cmocka_unit_test(test_cli_many_backends),
        cmocka_unit_test(test_cli_help_and_version),
        cmocka_unit_test(test_cli_errors),
        cmocka_unit_test(test_cli_three_pairs_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
