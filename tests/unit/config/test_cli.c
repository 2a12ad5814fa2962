/* tests/unit/config/test_cli.c: the command-line loader, through config/config.h only: defaults,
 * every flag in both spellings, repetition, cert/key pairing, --help and --version, and every
 * refusal, whose message must name the flag and the value refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"
#include "test_config.h"

#define MAX_ARGS 96

/* ARGS("--backend", "a:1"): a NULL-terminated argument list without argv[0]. */
#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Runs the loader on args (argv[0] is "moat"). *cfg and err are always set, err to "" on
 * success so a test can see that nothing was reported. */
static enum moat_cfg_result load(const char *const *args, unsigned default_workers,
                                 struct moat_cfg **cfg, char *err, size_t err_len)
{
    char *argv[MAX_ARGS + 2] = {"moat"};
    int argc = 1;
    for (; args[argc - 1] != NULL; argc++) {
        assert_true(argc <= MAX_ARGS);
        argv[argc] = (char *)args[argc - 1];
    }
    memset(err, 'x', err_len - 1); /* stale text must not survive */
    err[err_len - 1] = '\0';
    return moat_cfg_from_argv(argc, argv, default_workers, cfg, err, err_len);
}

/* Loads args that must be accepted; the caller frees the result. */
static struct moat_cfg *load_ok(const char *const *args)
{
    struct moat_cfg *cfg = NULL;
    char err[1024];
    enum moat_cfg_result r = load(args, 4, &cfg, err, sizeof(err));
    if (r != MOAT_CFG_RUN)
        fail_msg("refused (%d): %s", (int)r, err);
    assert_non_null(cfg);
    assert_string_equal(err, "");
    return cfg;
}

/* Loads args that must be refused with a message holding each of the (up to three) parts. */
static void expect_bad(const char *const *args, const char *part1, const char *part2,
                       const char *part3)
{
    struct moat_cfg *cfg = (struct moat_cfg *)&cfg; /* must become NULL */
    char err[1024];
    enum moat_cfg_result r = load(args, 4, &cfg, err, sizeof(err));
    if (r != MOAT_CFG_BAD_ARGS)
        fail_msg("accepted (%d) what should fail with '%s'", (int)r, part1);
    assert_null(cfg);
    const char *parts[] = {part1, part2, part3};
    for (int i = 0; i < 3; i++)
        if (parts[i] != NULL && strstr(err, parts[i]) == NULL)
            fail_msg("error '%s' lacks '%s'", err, parts[i]);
}

/* ---- accepted command lines --------------------------------------------------------------- */

static void test_cli_defaults(void **state)
{
    (void)state;
    struct moat_cfg *cfg = load_ok(ARGS("--backend", "127.0.0.1:8080"));
    assert_int_equal(cfg->n_listeners, 1);
    assert_string_equal(cfg->listeners[0].addr.host, "0.0.0.0");
    assert_int_equal(cfg->listeners[0].addr.port, 8443);
    assert_int_equal(cfg->listeners[0].addr.is_ipv6, 0);
    assert_int_equal(cfg->pools[0].n_backends, 1);
    assert_string_equal(cfg->pools[0].backends[0].addr.host, "127.0.0.1");
    assert_int_equal(cfg->pools[0].backends[0].addr.port, 8080);
    assert_int_equal(cfg->listeners[0].n_certs, 0);
    assert_null(cfg->listeners[0].certs);
    assert_int_equal(cfg->listeners[0].strict_sni, 0);
    assert_int_equal(cfg->workers, 4); /* default_workers */
    assert_int_equal(cfg->n_trusted_proxies, 0);
    assert_null(cfg->trusted_proxies);
    assert_null(cfg->state_dir);
    assert_int_equal(cfg->log_level, MOAT_CFG_LOG_INFO);
    assert_int_equal(cfg->access_log, 1);
    assert_int_equal(cfg->drain_timeout_ms, 30000);
    moat_cfg_free(cfg);
}

static void test_cli_default_workers_clamped(void **state)
{
    (void)state;
    char *argv[] = {"moat", "--backend", "a:1"};
    struct moat_cfg *cfg;
    char err[256];
    assert_int_equal(moat_cfg_from_argv(3, argv, 0, &cfg, err, sizeof(err)), MOAT_CFG_RUN);
    assert_int_equal(cfg->workers, 1); /* an unknown CPU count still runs one worker */
    moat_cfg_free(cfg);
    assert_int_equal(moat_cfg_from_argv(3, argv, 1000, &cfg, err, sizeof(err)), MOAT_CFG_RUN);
    assert_int_equal(cfg->workers, 256);
    moat_cfg_free(cfg);
}

static void test_cli_every_flag(void **state)
{
    (void)state;
    struct moat_cfg *cfg = load_ok(
        ARGS("--listen", "127.0.0.1:0", "--cert", "ec.pem", "--key", "ec.key", "--backend",
             "app:8080", "--workers", "3", "--trusted-proxy", "10.0.0.0/8", "--state-dir",
             "/var/lib/moat", "--log-level", "debug", "--no-access-log", "--drain-timeout", "5"));
    assert_int_equal(cfg->n_listeners, 1);
    assert_string_equal(cfg->listeners[0].addr.host, "127.0.0.1");
    assert_int_equal(cfg->listeners[0].addr.port, 0);
    assert_int_equal(cfg->listeners[0].n_certs, 1);
    assert_string_equal(cfg->listeners[0].certs[0].cert_file, "ec.pem");
    assert_string_equal(cfg->listeners[0].certs[0].key_file, "ec.key");
    assert_int_equal(cfg->pools[0].n_backends, 1);
    assert_string_equal(cfg->pools[0].backends[0].addr.host, "app");
    assert_int_equal(cfg->pools[0].backends[0].addr.port, 8080);
    assert_int_equal(cfg->workers, 3);
    assert_int_equal(cfg->n_trusted_proxies, 1);
    assert_int_equal(cfg->trusted_proxies[0].family, 4);
    assert_int_equal(cfg->trusted_proxies[0].prefix_len, 8);
    assert_string_equal(cfg->state_dir, "/var/lib/moat");
    assert_int_equal(cfg->log_level, MOAT_CFG_LOG_DEBUG);
    assert_int_equal(cfg->access_log, 0);
    assert_int_equal(cfg->drain_timeout_ms, 5000);
    moat_cfg_free(cfg);
}

static void test_cli_equals_form(void **state)
{
    (void)state;
    struct moat_cfg *cfg =
        load_ok(ARGS("--listen=[::1]:8443", "--cert=a.pem", "--key=a.key", "--backend=b:2",
                     "--workers=7", "--trusted-proxy=2001:db8::/32", "--state-dir=/tmp/s=x",
                     "--log-level=warn", "--drain-timeout=0.25"));
    assert_int_equal(cfg->listeners[0].addr.port, 8443);
    assert_int_equal(cfg->listeners[0].addr.is_ipv6, 1);
    assert_string_equal(cfg->listeners[0].addr.host, "::1");
    assert_string_equal(cfg->listeners[0].certs[0].cert_file, "a.pem");
    assert_string_equal(cfg->listeners[0].certs[0].key_file, "a.key");
    assert_string_equal(cfg->pools[0].backends[0].addr.host, "b");
    assert_int_equal(cfg->workers, 7);
    assert_int_equal(cfg->trusted_proxies[0].family, 6);
    assert_int_equal(cfg->trusted_proxies[0].prefix_len, 32);
    assert_string_equal(cfg->state_dir, "/tmp/s=x"); /* only the first '=' splits */
    assert_int_equal(cfg->log_level, MOAT_CFG_LOG_WARN);
    assert_int_equal(cfg->drain_timeout_ms, 250);
    moat_cfg_free(cfg);
}

static void test_cli_equals_value_may_start_with_dashes(void **state)
{
    (void)state;
    struct moat_cfg *cfg =
        load_ok(ARGS("--backend", "a:1", "--state-dir=--odd", "--cert=-c", "--key", "-k"));
    assert_string_equal(cfg->state_dir, "--odd");
    assert_string_equal(cfg->listeners[0].certs[0].cert_file, "-c");
    assert_string_equal(cfg->listeners[0].certs[0].key_file, "-k"); /* one dash: a value, not a flag */
    moat_cfg_free(cfg);
}

static void test_cli_repeated_listen(void **state)
{
    (void)state;
    struct moat_cfg *cfg =
        load_ok(ARGS("--listen", "0.0.0.0:8443", "--listen", "[::]:8443", "--listen=localhost:0",
                     "--listen", "localhost:0", "--backend", "a:1"));
    assert_int_equal(cfg->n_listeners, 4); /* in order; port 0 twice is two ports */
    assert_string_equal(cfg->listeners[0].addr.host, "0.0.0.0");
    assert_string_equal(cfg->listeners[1].addr.host, "::");
    assert_int_equal(cfg->listeners[1].addr.is_ipv6, 1);
    assert_string_equal(cfg->listeners[2].addr.host, "localhost");
    assert_int_equal(cfg->listeners[3].addr.port, 0);
    moat_cfg_free(cfg);
}

static void test_cli_many_backends(void **state)
{
    (void)state;
    const char *args[MAX_ARGS + 1];
    char names[40][16];
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof(names[i]), "h%d:%d", i, 1000 + i);
        args[2 * i] = "--backend";
        args[2 * i + 1] = names[i];
    }
    args[80] = "--backend=h0:1000"; /* repeating one is allowed: it gets a bigger share */
    args[81] = NULL;
    struct moat_cfg *cfg = load_ok(args);
    assert_int_equal(cfg->pools[0].n_backends, 41);
    for (int i = 0; i < 40; i++) {
        char host[8];
        snprintf(host, sizeof(host), "h%d", i);
        assert_string_equal(cfg->pools[0].backends[i].addr.host, host);
        assert_int_equal(cfg->pools[0].backends[i].addr.port, 1000 + i);
    }
    assert_string_equal(cfg->pools[0].backends[40].addr.host, "h0");
    moat_cfg_free(cfg);
}

static void test_cli_repeated_trusted_proxy(void **state)
{
    (void)state;
    struct moat_cfg *cfg = load_ok(ARGS(
        "--backend", "a:1", "--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "192.0.2.7",
        "--trusted-proxy=::1", "--trusted-proxy", "fd00::/8", "--trusted-proxy", "172.16.0.0/12"));
    assert_int_equal(cfg->n_trusted_proxies, 5);
    assert_int_equal(cfg->trusted_proxies[1].prefix_len, 32);
    assert_int_equal(cfg->trusted_proxies[2].family, 6);
    assert_int_equal(cfg->trusted_proxies[2].prefix_len, 128);
    assert_int_equal(cfg->trusted_proxies[4].prefix_len, 12);
    uint8_t addr[4] = {172, 20, 1, 1};
    assert_true(moat_cfg_cidr_contains(&cfg->trusted_proxies[4], 4, addr));
    moat_cfg_free(cfg);
}

static void test_cli_last_value_wins(void **state)
{
    (void)state;
    struct moat_cfg *cfg = load_ok(
        ARGS("--workers", "2", "--state-dir", "/a", "--log-level", "error", "--drain-timeout", "1",
             "--backend", "a:1", "--workers=9", "--state-dir", "/b", "--log-level=info",
             "--drain-timeout", "2", "--no-access-log", "--no-access-log"));
    assert_int_equal(cfg->workers, 9);
    assert_string_equal(cfg->state_dir, "/b");
    assert_int_equal(cfg->log_level, MOAT_CFG_LOG_INFO);
    assert_int_equal(cfg->drain_timeout_ms, 2000);
    assert_int_equal(cfg->access_log, 0);
    moat_cfg_free(cfg);
}

static void test_cli_log_levels(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int level;
    } levels[] = {{"error", MOAT_CFG_LOG_ERROR},
                  {"warn", MOAT_CFG_LOG_WARN},
                  {"info", MOAT_CFG_LOG_INFO},
                  {"debug", MOAT_CFG_LOG_DEBUG}};
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        struct moat_cfg *cfg = load_ok(ARGS("--backend", "a:1", "--log-level", levels[i].name));
        assert_int_equal(cfg->log_level, levels[i].level);
        moat_cfg_free(cfg);
    }
}

static void test_cli_workers_range(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        unsigned workers;
    } good[] = {{"1", 1}, {"256", 256}, {"016", 16}, {"64", 64}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct moat_cfg *cfg = load_ok(ARGS("--backend", "a:1", "--workers", good[i].text));
        assert_int_equal(cfg->workers, good[i].workers);
        moat_cfg_free(cfg);
    }
}

static void test_cli_drain_timeout_values(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t ms;
    } cases[] = {
        {"0", 0},       {"30", 30000},         {"2.5", 2500},     {"0.25", 250},
        {".5", 500},    {"7.", 7000},          {"0.001", 1},      {"0.0004", 0},
        {"0.0005", 1},  {"1.9999", 2000},      {"3600", 3600000}, {"3600.000", 3600000},
        {"0003", 3000}, {"12.3456789", 12346},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct moat_cfg *cfg = load_ok(ARGS("--backend", "a:1", "--drain-timeout", cases[i].text));
        if (cfg->drain_timeout_ms != cases[i].ms)
            fail_msg("'%s': %llu ms, expected %llu", cases[i].text,
                     (unsigned long long)cfg->drain_timeout_ms, (unsigned long long)cases[i].ms);
        moat_cfg_free(cfg);
    }
}

/* ---- certificates ------------------------------------------------------------------------- */

static void test_cli_cert_key_pairs_in_order(void **state)
{
    (void)state;
    /* The i-th --cert goes with the i-th --key, wherever each stands on the line. */
    struct moat_cfg *cfg = load_ok(ARGS("--key", "ec.key", "--backend", "a:1", "--key=rsa.key",
                                        "--cert", "ec.pem", "--cert", "rsa.pem"));
    assert_int_equal(cfg->listeners[0].n_certs, 2);
    assert_string_equal(cfg->listeners[0].certs[0].cert_file, "ec.pem");
    assert_string_equal(cfg->listeners[0].certs[0].key_file, "ec.key");
    assert_string_equal(cfg->listeners[0].certs[1].cert_file, "rsa.pem");
    assert_string_equal(cfg->listeners[0].certs[1].key_file, "rsa.key");
    moat_cfg_free(cfg);

    cfg = load_ok(ARGS("--cert", "1.pem", "--key", "1.key", "--cert", "2.pem", "--key", "2.key",
                       "--backend", "a:1"));
    assert_int_equal(cfg->listeners[0].n_certs, 2);
    assert_string_equal(cfg->listeners[0].certs[1].cert_file, "2.pem");
    assert_string_equal(cfg->listeners[0].certs[1].key_file, "2.key");
    moat_cfg_free(cfg);
}

static void test_cli_cert_without_key(void **state)
{
    (void)state;
    expect_bad(ARGS("--backend", "a:1", "--cert", "c.pem"), "--cert 'c.pem' has no matching --key",
               "got 1 --cert and 0 --key", NULL);
    expect_bad(ARGS("--backend", "a:1", "--cert", "1.pem", "--key", "1.key", "--cert", "2.pem"),
               "--cert '2.pem' has no matching --key", NULL, NULL);
}

static void test_cli_key_without_cert(void **state)
{
    (void)state;
    expect_bad(ARGS("--backend", "a:1", "--key", "k.pem"), "--key 'k.pem' has no matching --cert",
               "got 0 --cert and 1 --key", NULL);
    expect_bad(ARGS("--key", "1.key", "--key", "2.key", "--cert", "1.pem", "--backend", "a:1"),
               "--key '2.key' has no matching --cert", NULL, NULL);
}

/* Any number of pairs (one per site, by SNI), in order, the n-th --cert with the n-th --key. */
static void test_cli_many_pairs(void **state)
{
    (void)state;
    struct moat_cfg *cfg = load_ok(ARGS("--backend", "a:1", "--cert", "1.pem", "--key", "1.key",
                                        "--key", "2.key", "--cert", "2.pem", "--cert", "3.pem",
                                        "--key", "3.key", "--cert", "4.pem", "--key", "4.key",
                                        "--cert", "5.pem", "--key", "5.key", "--strict-sni",
                                        "--hsts", "600", "--redirect-http", "0.0.0.0:80"));
    const struct moat_cfg_listener *li = &cfg->listeners[0];
    assert_int_equal(li->n_certs, 5);
    for (size_t i = 0; i < 5; i++) {
        char cert[16], key[16];
        snprintf(cert, sizeof(cert), "%zu.pem", i + 1);
        snprintf(key, sizeof(key), "%zu.key", i + 1);
        assert_string_equal(li->certs[i].cert_file, cert);
        assert_string_equal(li->certs[i].key_file, key);
    }
    assert_int_equal(li->strict_sni, 1);
    assert_string_equal(li->hsts, "max-age=600");
    assert_int_equal(cfg->has_redirect, 1);
    assert_int_equal(cfg->redirect.port, 80);
    moat_cfg_free(cfg);
    expect_bad(ARGS("--backend", "a:1", "--hsts", "soon"), "--hsts: expected a max-age in "
               "seconds", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "--key", "1", "--key", "2", "--cert", "3.pem"),
               "--key '2' has no matching --cert", NULL, NULL);
}

static void test_cli_empty_file_names(void **state)
{
    (void)state;
    expect_bad(ARGS("--backend", "a:1", "--cert", "", "--key", "k"), "--cert: empty file name",
               NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "--cert", "c", "--key="), "--key: empty file name", NULL,
               NULL);
}

/* ---- --help and --version ----------------------------------------------------------------- */

static enum moat_cfg_result result_of(const char *const *args)
{
    struct moat_cfg *cfg = (struct moat_cfg *)&cfg;
    char err[512];
    enum moat_cfg_result r = load(args, 4, &cfg, err, sizeof(err));
    if (r != MOAT_CFG_RUN)
        assert_null(cfg); /* nothing to free after help, version or an error */
    else
        moat_cfg_free(cfg);
    return r;
}

static void test_cli_help(void **state)
{
    (void)state;
    assert_int_equal(result_of(ARGS("--help")), MOAT_CFG_HELP);
    assert_int_equal(result_of(ARGS("-h")), MOAT_CFG_HELP);
    /* Help needs no --backend, and answers even a line with mistakes in it. */
    assert_int_equal(result_of(ARGS("--backend", "a:1", "--help")), MOAT_CFG_HELP);
    assert_int_equal(result_of(ARGS("--frob", "--workers", "x", "stray", "-h")), MOAT_CFG_HELP);
    assert_int_equal(result_of(ARGS("--listen", "--help")), MOAT_CFG_HELP);
    /* As a value, "-h" is a value. */
    assert_int_equal(result_of(ARGS("--backend", "a:1", "--state-dir", "-h")), MOAT_CFG_RUN);
    assert_int_equal(result_of(ARGS("--backend", "a:1", "--state-dir=--help")), MOAT_CFG_RUN);
}

static void test_cli_version(void **state)
{
    (void)state;
    assert_int_equal(result_of(ARGS("--version")), MOAT_CFG_VERSION);
    assert_int_equal(result_of(ARGS("-V")), MOAT_CFG_VERSION);
    assert_int_equal(result_of(ARGS("--backend", "a:1", "--version")), MOAT_CFG_VERSION);
    assert_int_equal(result_of(ARGS("--workers", "0", "--version")), MOAT_CFG_VERSION);
    /* The first of the two wins. */
    assert_int_equal(result_of(ARGS("--version", "--help")), MOAT_CFG_VERSION);
    assert_int_equal(result_of(ARGS("-h", "-V")), MOAT_CFG_HELP);
    assert_string_equal(moat_cfg_version(), "moat 0.1.0");
}

static void test_cli_help_and_version_take_no_value(void **state)
{
    (void)state;
    expect_bad(ARGS("--backend", "a:1", "--help=yes"), "--help takes no value", "'yes'", NULL);
    expect_bad(ARGS("--backend", "a:1", "--version=1"), "--version takes no value", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "-hV"), "unknown option '-hV'", NULL, NULL);
}

/* The usage lists every flag once, each entry with its default (--help and --version have
 * none), and its example is a command line the loader accepts. */
static void test_cli_usage_lists_every_flag(void **state)
{
    (void)state;
    const char *u = moat_cfg_usage();
    static const char *const with_default[] = {
        "  --listen HOST:PORT", "  --cert FILE --key FILE", "  --backend HOST:PORT",
        "  --workers N",        "  --trusted-proxy CIDR",   "  --state-dir DIR",
        "  --log-level LEVEL",  "  --no-access-log",        "  --drain-timeout SECS",
    };
    for (size_t i = 0; i < sizeof(with_default) / sizeof(with_default[0]); i++) {
        const char *entry = strstr(u, with_default[i]);
        if (entry == NULL)
            fail_msg("usage lacks '%s'", with_default[i]);
        const char *next = strstr(entry + 3, "\n  -"); /* the next entry */
        const char *dflt = strstr(entry, "(default");
        if (dflt == NULL || (next != NULL && dflt > next))
            fail_msg("usage entry '%s' gives no default", with_default[i]);
    }
    assert_non_null(strstr(u, "default: 0.0.0.0:8443"));
    assert_non_null(strstr(u, "default: info"));
    assert_non_null(strstr(u, "default: 30)"));
    assert_non_null(strstr(u, "1 to 256"));
    assert_non_null(strstr(u, "0 to 3600"));
    assert_non_null(strstr(u, "-h, --help"));
    assert_non_null(strstr(u, "-V, --version"));
    assert_non_null(strstr(u, "--flag=value"));
}

static void test_cli_usage_example_parses(void **state)
{
    (void)state;
    const char *ex = strstr(moat_cfg_usage(), "\n  moat ");
    assert_non_null(ex);
    char line[1024];
    snprintf(line, sizeof(line), "%s", ex + 1);
    const char *args[MAX_ARGS + 1];
    int n = 0;
    char *save = NULL;
    assert_string_equal(strtok_r(line, " ", &save), "moat"); /* argv[0], not an argument */
    for (char *w; (w = strtok_r(NULL, " \\\n", &save)) != NULL;) {
        assert_true(n < MAX_ARGS);
        args[n++] = w;
    }
    args[n] = NULL;
    assert_true(n >= 2);
    struct moat_cfg *cfg = load_ok(args);
    assert_true(cfg->pools[0].n_backends >= 1);
    moat_cfg_free(cfg);
}

/* ---- refusals ----------------------------------------------------------------------------- */

static void test_cli_unknown_option(void **state)
{
    (void)state;
    expect_bad(ARGS("--frob"), "unknown option '--frob'", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "--frob=3"), "unknown option '--frob'", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "-x"), "unknown option '-x'", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "--Listen", "a:2"), "unknown option '--Listen'", NULL,
               NULL);
    expect_bad(ARGS("--backend", "a:1", "--listen-x", "a:2"), "unknown option '--listen-x'", NULL,
               NULL);
    expect_bad(ARGS("--backend", "a:1", "--list", "a:2"), "unknown option '--list'", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "-backend", "a:2"), "unknown option '-backend'", NULL,
               NULL);
}

static void test_cli_positional_arguments(void **state)
{
    (void)state;
    expect_bad(ARGS("--backend", "a:1", "stray"), "unexpected argument 'stray'", NULL, NULL);
    expect_bad(ARGS("a:1"), "unexpected argument 'a:1'", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "--"), "unexpected argument '--'", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "-"), "unexpected argument '-'", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", ""), "unexpected argument ''", NULL, NULL);
    expect_bad(ARGS("--no-access-log", "yes", "--backend", "a:1"), "unexpected argument 'yes'",
               NULL, NULL);
}

static void test_cli_missing_value(void **state)
{
    (void)state;
    expect_bad(ARGS("--backend"), "--backend needs a value", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "--listen"), "--listen needs a value", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "--workers"), "--workers needs a value", NULL, NULL);
    /* The next flag is not taken as the value. */
    expect_bad(ARGS("--backend", "--workers", "2"), "--backend needs a value",
               "got option '--workers'", NULL);
    expect_bad(ARGS("--backend", "a:1", "--cert", "--key", "k"), "--cert needs a value", NULL,
               NULL);
}

static void test_cli_no_value_flag_with_value(void **state)
{
    (void)state;
    expect_bad(ARGS("--backend", "a:1", "--no-access-log=1"), "--no-access-log takes no value",
               "'1'", NULL);
}

static void test_cli_backend_required(void **state)
{
    (void)state;
    expect_bad(ARGS(NULL), "at least one --backend HOST:PORT is required", NULL, NULL);
    expect_bad(ARGS("--listen", "0.0.0.0:8443", "--workers", "2"), "at least one --backend", NULL,
               NULL);
}

static void test_cli_bad_backend(void **state)
{
    (void)state;
    expect_bad(ARGS("--backend", "localhost"), "--backend: missing port in 'localhost'", NULL,
               NULL);
    expect_bad(ARGS("--backend", "a:0"), "--backend: invalid port '0' in 'a:0'", NULL, NULL);
    expect_bad(ARGS("--backend", "a:65536"), "--backend: invalid port '65536'", NULL, NULL);
    expect_bad(ARGS("--backend", "::1:80"), "--backend: IPv6 addresses need brackets", "'::1:80'",
               NULL);
    expect_bad(ARGS("--backend="), "--backend: empty address", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "--backend", "b c:2"), "--backend: invalid host 'b c'",
               NULL, NULL);
}

static void test_cli_bad_listen(void **state)
{
    (void)state;
    expect_bad(ARGS("--backend", "a:1", "--listen", "8443"), "--listen: missing port in '8443'",
               NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "--listen", "[::1]"), "--listen: missing port in '[::1]'",
               NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "--listen", "::1:80"), "--listen: IPv6 addresses need",
               NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "--listen", "0.0.0.0:99999"),
               "--listen: invalid port '99999'", "or 0 for any free port", NULL);
}

static void test_cli_duplicate_listen(void **state)
{
    (void)state;
    expect_bad(ARGS("--backend", "a:1", "--listen", "0.0.0.0:8443", "--listen=0.0.0.0:8443"),
               "--listen: '0.0.0.0:8443' is given twice", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "--listen", "[::1]:1", "--listen", "[::1]:2", "--listen",
                    "[::1]:1"),
               "'[::1]:1' is given twice", NULL, NULL);
}

static void test_cli_bad_workers(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "0", "257", "-1", "", "two", "2x", " 2", "1e2", "99999999999999999999", "+3", "3.0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char got[64];
        snprintf(got, sizeof(got), "got '%s'", bad[i]);
        expect_bad(ARGS("--backend", "a:1", "--workers", bad[i]),
                   "--workers: expected a number from 1 to 256", got, NULL);
    }
}

static void test_cli_bad_log_level(void **state)
{
    (void)state;
    expect_bad(ARGS("--backend", "a:1", "--log-level", "loud"),
               "--log-level: expected error, warn, info or debug", "got 'loud'", NULL);
    expect_bad(ARGS("--backend", "a:1", "--log-level", "INFO"), "got 'INFO'", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "--log-level=warning"), "got 'warning'", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "--log-level="), "--log-level: expected", "got ''", NULL);
}

static void test_cli_bad_drain_timeout(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "-1", "3601", "3600.001", "3600.0005", "5s",    "1e3",  "inf", "nan",
        " 5", "5 ",   "",         ".",         "1.2.3", "0x10", "+5",  "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char got[64];
        snprintf(got, sizeof(got), "got '%s'", bad[i]);
        expect_bad(ARGS("--backend", "a:1", "--drain-timeout", bad[i]),
                   "--drain-timeout: expected seconds from 0 to 3600", got, NULL);
    }
}

static void test_cli_bad_trusted_proxy(void **state)
{
    (void)state;
    expect_bad(ARGS("--backend", "a:1", "--trusted-proxy", "10.0.0.0/40"),
               "--trusted-proxy: invalid prefix length '40' in '10.0.0.0/40'", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "--trusted-proxy", "proxy.example"),
               "--trusted-proxy: 'proxy.example' is not an IPv4 or IPv6 address", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "--trusted-proxy="),
               "--trusted-proxy:", "not an address range", NULL);
}

static void test_cli_backend_weights(void **state)
{
    (void)state;
    struct moat_cfg *cfg = load_ok(ARGS("--backend", "a:1,weight=3", "--backend", "b:2",
                                        "--backend", "[::1]:3,weight=0"));
    assert_int_equal(cfg->pools[0].n_backends, 3);
    assert_string_equal(cfg->pools[0].backends[0].addr.host, "a");
    assert_int_equal(cfg->pools[0].backends[0].weight, 3);
    assert_int_equal(cfg->pools[0].backends[1].weight, 1); /* the default */
    assert_string_equal(cfg->pools[0].backends[2].addr.host, "::1");
    assert_int_equal(cfg->pools[0].backends[2].weight, 0);
    moat_cfg_free(cfg);
    expect_bad(ARGS("--backend", "a:1,weight=257"),
               "--backend: weight '257' is not a whole number from 0 to 256", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1,weight="),
               "--backend: weight '' is not a whole number from 0 to 256", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1,max_fails=3"),
               "--backend: unknown option 'max_fails=3' in 'a:1,max_fails=3' (write "
               "HOST:PORT,weight=N)", NULL, NULL);
    expect_bad(ARGS("--backend", "a,weight=2"), "--backend: missing port in 'a'", NULL, NULL);
}

static void test_cli_pool_choices(void **state)
{
    (void)state;
    struct moat_cfg *cfg = load_ok(ARGS("--backend", "a:1", "--balance", "hash", "--hash-key",
                                        "header:X-User", "--sticky-cookie", "pin",
                                        "--health-check", "/healthz"));
    const struct moat_cfg_pool *p = &cfg->pools[0];
    assert_int_equal(p->balance, MOAT_CFG_BALANCE_HASH);
    assert_int_equal(p->hash_by, MOAT_CFG_HASH_HEADER);
    assert_string_equal(p->hash_name, "X-User");
    assert_string_equal(p->sticky_cookie, "pin");
    assert_string_equal(p->health.path, "/healthz");
    assert_int_equal(p->health.interval_ms, 5000); /* the pool defaults around the flags */
    assert_int_equal(p->passive_errors, MOAT_CFG_PASSIVE_ERRORS);
    moat_cfg_free(cfg);
    expect_bad(ARGS("--backend", "a:1", "--hash-key", "uri"),
               "--hash-key: only with --balance hash", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "--balance", "fair"), "--balance: unknown balance 'fair'",
               NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "--sticky-cookie", "a b"),
               "--sticky-cookie: 'a b' is not a cookie name", NULL, NULL);
    expect_bad(ARGS("--backend", "a:1", "--health-check", "healthz"),
               "--health-check: expected a path starting with '/'", NULL, NULL);
}

static void test_cli_bad_state_dir(void **state)
{
    (void)state;
    expect_bad(ARGS("--backend", "a:1", "--state-dir", ""), "--state-dir: empty value",
               NULL, NULL);
}

static void test_cli_error_after_allocations(void **state)
{
    (void)state;
    /* Everything allocated before the mistake is freed (the ASan build checks for leaks). */
    expect_bad(ARGS("--cert", "c", "--key", "k", "--state-dir", "/s", "--trusted-proxy", "::1",
                    "--listen", "a:1", "--backend", "b:2", "--backend", "c:3", "--workers", "x"),
               "--workers", NULL, NULL);
    expect_bad(
        ARGS("--cert", "c", "--key", "k", "--state-dir", "/s", "--backend", "b:2", "--cert", "d"),
        "--cert 'd' has no matching --key", NULL, NULL);
}

static void test_cli_small_err_buffer(void **state)
{
    (void)state;
    char *argv[] = {"moat", "--frob-something-long"};
    struct moat_cfg *cfg;
    char err[12];
    assert_int_equal(moat_cfg_from_argv(2, argv, 1, &cfg, err, sizeof(err)), MOAT_CFG_BAD_ARGS);
    assert_string_equal(err, "unknown opt"); /* truncated, still terminated */
    assert_null(cfg);
}

static void test_cli_free_null(void **state)
{
    (void)state;
    moat_cfg_free(NULL);
}

int run_cli_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_defaults),
        cmocka_unit_test(test_cli_default_workers_clamped),
        cmocka_unit_test(test_cli_every_flag),
        cmocka_unit_test(test_cli_equals_form),
        cmocka_unit_test(test_cli_equals_value_may_start_with_dashes),
        cmocka_unit_test(test_cli_repeated_listen),
        cmocka_unit_test(test_cli_many_backends),
        cmocka_unit_test(test_cli_backend_weights),
        cmocka_unit_test(test_cli_pool_choices),
        cmocka_unit_test(test_cli_repeated_trusted_proxy),
        cmocka_unit_test(test_cli_last_value_wins),
        cmocka_unit_test(test_cli_log_levels),
        cmocka_unit_test(test_cli_workers_range),
        cmocka_unit_test(test_cli_drain_timeout_values),
        cmocka_unit_test(test_cli_cert_key_pairs_in_order),
        cmocka_unit_test(test_cli_cert_without_key),
        cmocka_unit_test(test_cli_key_without_cert),
        cmocka_unit_test(test_cli_many_pairs),
        cmocka_unit_test(test_cli_empty_file_names),
        cmocka_unit_test(test_cli_help),
        cmocka_unit_test(test_cli_version),
        cmocka_unit_test(test_cli_help_and_version_take_no_value),
        cmocka_unit_test(test_cli_usage_lists_every_flag),
        cmocka_unit_test(test_cli_usage_example_parses),
        cmocka_unit_test(test_cli_unknown_option),
        cmocka_unit_test(test_cli_positional_arguments),
        cmocka_unit_test(test_cli_missing_value),
        cmocka_unit_test(test_cli_no_value_flag_with_value),
        cmocka_unit_test(test_cli_backend_required),
        cmocka_unit_test(test_cli_bad_backend),
        cmocka_unit_test(test_cli_bad_listen),
        cmocka_unit_test(test_cli_duplicate_listen),
        cmocka_unit_test(test_cli_bad_workers),
        cmocka_unit_test(test_cli_bad_log_level),
        cmocka_unit_test(test_cli_bad_drain_timeout),
        cmocka_unit_test(test_cli_bad_trusted_proxy),
        cmocka_unit_test(test_cli_bad_state_dir),
        cmocka_unit_test(test_cli_error_after_allocations),
        cmocka_unit_test(test_cli_small_err_buffer),
        cmocka_unit_test(test_cli_free_null),
    };
    return cmocka_run_group_tests_name("config command line", tests, NULL, NULL);
}
