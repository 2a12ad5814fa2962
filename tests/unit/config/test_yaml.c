/* tests/unit/config/test_yaml.c: the YAML configuration file, through config/config.h only:
 * every key's happy path, the exact FILE:LINE:COLUMN: KEY: reason of each kind of mistake
 * (wrong type, unknown key, out of range, missing, repeated, syntax), ${VAR} expansion, several
 * errors at once, truncation, --config through the flags, and route picking. Files are written
 * under a mkdtemp() folder removed at the end. */
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

static char dir[64];       /* the temp folder of this group */
static char file[128];     /* dir/t.yaml: every test's file */
static char err[8192];     /* the loader's message */

static int make_dir(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/moat-test-yaml-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(file, sizeof(file), "%s/t.yaml", dir);
    return 0;
}

static int remove_dir(void **state)
{
    (void)state;
    unlink(file);
    return rmdir(dir);
}

static void write_file(const char *text)
{
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* Writes text to t.yaml and loads it; err is reset first so stale text cannot pass. */
static int load(const char *text, struct moat_cfg **cfg)
{
    write_file(text);
    memset(err, 'x', sizeof(err) - 1);
    err[sizeof(err) - 1] = '\0';
    *cfg = (struct moat_cfg *)&cfg; /* must become NULL or a configuration */
    return moat_cfg_load_yaml(file, 3, cfg, err, sizeof(err));
}

static struct moat_cfg *load_ok(const char *text)
{
    struct moat_cfg *cfg;
    if (load(text, &cfg) != 0)
        fail_msg("refused: %s", err);
    assert_non_null(cfg);
    return cfg;
}

/* Loads text that must be refused with exactly these lines, written with "t.yaml" for the
 * file: each line of expected is prefixed with the temp folder. */
static void expect_errors(const char *text, const char *expected)
{
    struct moat_cfg *cfg;
    if (load(text, &cfg) == 0)
        fail_msg("accepted what should fail with: %s", expected);
    assert_null(cfg);
    char want[8192] = "";
    size_t used = 0;
    for (const char *line = expected; *line != '\0';) {
        const char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) + 1 : strlen(line);
        used += (size_t)snprintf(want + used, sizeof(want) - used, "%s/%.*s", dir, (int)len, line);
        line += len;
    }
    if (strcmp(err, want) != 0) { /* cmocka cuts long messages: show both whole */
        fprintf(stderr, "got:\n%s\n---- expected:\n%s\n", err, want);
        fail();
    }
}

/* A pool section for files about something else. */
#define POOL "pools:\n  web:\n    backends: [127.0.0.1:8080]\n"

/* ---- happy paths ---------------------------------------------------------------------------- */

static void test_yaml_every_key(void **state)
{
    (void)state;
    struct moat_cfg *cfg = load_ok(
        "workers: 2\n"
        "state_dir: /var/lib/moat\n"
        "user: moat\n"
        "group: daemon\n"
        "listeners:\n"
        "  - listen: 0.0.0.0:8443\n"
        "    tls:\n"
        "      min_version: \"1.3\"\n"
        "      certificates:\n"
        "        - cert: /etc/moat/ec.pem\n"
        "          key: /etc/moat/ec.key\n"
        "        - {cert: /etc/moat/rsa.pem, key: /etc/moat/rsa.key}\n"
        "  - listen: \"[::1]:0\"\n"
        "pools:\n"
        "  web:\n"
        "    backends: [127.0.0.1:8080, 127.0.0.1:8081]\n"
        "  api:\n"
        "    backends:\n"
        "      - 10.0.0.5:9000\n"
        "routes:\n"
        "  - host: API.Example.com\n"
        "    path: /v1/\n"
        "    pool: api\n"
        "  - host: \"*.example.org\"\n"
        "    pool: web\n"
        "default_pool: web\n"
        "trusted_proxies: [10.0.0.0/8, \"2001:db8::/32\"]\n"
        "timeouts: {handshake: 3s, head: 4s, idle: 2m, body: 1500ms, connect: 100ms,\n"
        "           backend: 1h, pool_idle: 4s, tunnel: 90s, send: 7s, drain: 5s}\n"
        "limits: {head_size: 8k, headers: 20, target_size: 1k, body_size: 10m,\n"
        "         connections: 500, backend_connections: 8}\n"
        "logging:\n"
        "  level: debug\n"
        "  access_log: false\n"
        "  access_log_format: json\n"
        "  access_log_target: /var/log/moat/access.log\n"
        "admin:\n"
        "  listen: 127.0.0.1:9902\n"
        "  writes: false\n");
    assert_int_equal(cfg->workers, 2);
    assert_string_equal(cfg->state_dir, "/var/lib/moat");
    assert_string_equal(cfg->user, "moat");
    assert_string_equal(cfg->group, "daemon");
    assert_string_equal(cfg->config_file, file);
    assert_int_equal(cfg->n_listeners, 2);
    assert_string_equal(cfg->listeners[0].addr.host, "0.0.0.0");
    assert_int_equal(cfg->listeners[0].addr.port, 8443);
    assert_int_equal(cfg->listeners[0].tls_min, 13);
    assert_int_equal(cfg->listeners[0].n_certs, 2);
    assert_string_equal(cfg->listeners[0].certs[0].cert_file, "/etc/moat/ec.pem");
    assert_string_equal(cfg->listeners[0].certs[0].key_file, "/etc/moat/ec.key");
    assert_string_equal(cfg->listeners[0].certs[1].cert_file, "/etc/moat/rsa.pem");
    assert_string_equal(cfg->listeners[0].certs[1].key_file, "/etc/moat/rsa.key");
    assert_string_equal(cfg->listeners[1].addr.host, "::1");
    assert_int_equal(cfg->listeners[1].addr.is_ipv6, 1);
    assert_int_equal(cfg->listeners[1].addr.port, 0);
    assert_int_equal(cfg->listeners[1].tls_min, 12);
    assert_int_equal(cfg->listeners[1].n_certs, 0);
    assert_int_equal(cfg->n_pools, 2);
    assert_string_equal(cfg->pools[0].name, "web");
    assert_int_equal(cfg->pools[0].n_backends, 2);
    assert_int_equal(cfg->pools[0].backends[1].addr.port, 8081);
    assert_string_equal(cfg->pools[1].name, "api");
    assert_int_equal(cfg->pools[1].n_backends, 1);
    assert_string_equal(cfg->pools[1].backends[0].addr.host, "10.0.0.5");
    assert_int_equal(cfg->n_routes, 2);
    assert_string_equal(cfg->routes[0].host, "api.example.com"); /* lower-cased */
    assert_string_equal(cfg->routes[0].path_prefix, "/v1/");
    assert_int_equal(cfg->routes[0].pool, 1);
    assert_string_equal(cfg->routes[1].host, "*.example.org");
    assert_string_equal(cfg->routes[1].path_prefix, "/"); /* the default */
    assert_int_equal(cfg->routes[1].pool, 0);
    assert_int_equal(cfg->default_pool, 0);
    assert_int_equal(cfg->n_trusted_proxies, 2);
    assert_int_equal(cfg->trusted_proxies[0].family, 4);
    assert_int_equal(cfg->trusted_proxies[0].prefix_len, 8);
    assert_int_equal(cfg->trusted_proxies[1].family, 6);
    assert_int_equal(cfg->handshake_timeout_ms, 3000);
    assert_int_equal(cfg->head_timeout_ms, 4000);
    assert_int_equal(cfg->idle_timeout_ms, 120000);
    assert_int_equal(cfg->body_timeout_ms, 1500);
    assert_int_equal(cfg->connect_timeout_ms, 100);
    assert_int_equal(cfg->backend_timeout_ms, 3600000);
    assert_int_equal(cfg->pool_idle_timeout_ms, 4000);
    assert_int_equal(cfg->tunnel_timeout_ms, 90000);
    assert_int_equal(cfg->send_timeout_ms, 7000);
    assert_int_equal(cfg->drain_timeout_ms, 5000);
    assert_int_equal(cfg->max_head_bytes, 8192);
    assert_int_equal(cfg->max_headers, 20);
    assert_int_equal(cfg->max_target_bytes, 1024);
    assert_int_equal(cfg->max_body_bytes, 10485760);
    assert_int_equal(cfg->max_connections, 500);
    assert_int_equal(cfg->max_backend_connections, 8);
    assert_int_equal(cfg->log_level, MOAT_CFG_LOG_DEBUG);
    assert_int_equal(cfg->access_log, 0);
    assert_int_equal(cfg->access_format, MOAT_CFG_ACCESS_JSON);
    assert_string_equal(cfg->access_log_file, "/var/log/moat/access.log");
    assert_int_equal(cfg->has_admin, 1);
    assert_string_equal(cfg->admin.host, "127.0.0.1");
    assert_int_equal(cfg->admin.port, 9902);
    assert_int_equal(cfg->admin_writes, 0);
    moat_cfg_free(cfg);
}

/* A file holding only a pool gets what the flags give by default. */
static void test_yaml_defaults(void **state)
{
    (void)state;
    struct moat_cfg *cfg = load_ok(POOL);
    assert_int_equal(cfg->workers, 3); /* default_workers */
    assert_null(cfg->state_dir);
    assert_null(cfg->user);
    assert_null(cfg->group);
    assert_int_equal(cfg->n_listeners, 1);
    assert_string_equal(cfg->listeners[0].addr.host, "0.0.0.0");
    assert_int_equal(cfg->listeners[0].addr.port, 8443);
    assert_int_equal(cfg->listeners[0].n_certs, 0); /* the development certificate */
    assert_int_equal(cfg->listeners[0].tls_min, 12);
    assert_int_equal(cfg->n_pools, 1);
    assert_int_equal(cfg->default_pool, 0);
    assert_int_equal(cfg->n_routes, 0);
    assert_int_equal(cfg->n_trusted_proxies, 0);
    assert_int_equal(cfg->idle_timeout_ms, 60000);
    assert_int_equal(cfg->drain_timeout_ms, 30000);
    assert_int_equal(cfg->max_head_bytes, 16384);
    assert_int_equal(cfg->log_level, MOAT_CFG_LOG_INFO);
    assert_int_equal(cfg->access_log, 1);
    assert_int_equal(cfg->access_format, MOAT_CFG_ACCESS_MOAT);
    assert_null(cfg->access_log_file);
    assert_int_equal(cfg->has_admin, 0);
    moat_cfg_free(cfg);
}

static void test_yaml_empty_values(void **state)
{
    (void)state;
    /* "key:" alone: an empty list or mapping, so commented-out items leave a valid file;
     * "admin:" alone turns the admin listener on at its default address. */
    struct moat_cfg *cfg = load_ok(POOL "listeners:\nroutes:\ntrusted_proxies: []\ntimeouts:\n"
                                        "logging: {}\nadmin:\n");
    assert_int_equal(cfg->n_listeners, 1);
    assert_int_equal(cfg->listeners[0].addr.port, 8443);
    assert_int_equal(cfg->n_routes, 0);
    assert_int_equal(cfg->has_admin, 1);
    assert_string_equal(cfg->admin.host, "127.0.0.1");
    assert_int_equal(cfg->admin.port, 9901);
    assert_int_equal(cfg->admin_writes, -1); /* on loopback only */
    moat_cfg_free(cfg);
}

static void test_yaml_scalar_spellings(void **state)
{
    (void)state;
    /* Quoted or not, numbers and durations read the same; YAML 1.1 booleans; drain 0. */
    struct moat_cfg *cfg = load_ok(POOL "workers: \"016\"\ntimeouts: {idle: 30, drain: 0}\n"
                                        "limits: {headers: '7', body_size: 0}\n"
                                        "logging: {access_log: Off}\n"
                                        "listeners: [{listen: 127.0.0.1:0, tls: {min_version: 1.2}}]\n");
    assert_int_equal(cfg->workers, 16);
    assert_int_equal(cfg->idle_timeout_ms, 30000);
    assert_int_equal(cfg->drain_timeout_ms, 0);
    assert_int_equal(cfg->max_headers, 7);
    assert_int_equal(cfg->max_body_bytes, 0);
    assert_int_equal(cfg->access_log, 0);
    assert_int_equal(cfg->listeners[0].tls_min, 12);
    moat_cfg_free(cfg);
    cfg = load_ok(POOL "logging: {access_log: yes, access_log_format: combined, level: warn}\n");
    assert_int_equal(cfg->access_log, 1);
    assert_int_equal(cfg->access_format, MOAT_CFG_ACCESS_COMBINED);
    assert_int_equal(cfg->log_level, MOAT_CFG_LOG_WARN);
    moat_cfg_free(cfg);
}

/* Several pools without default_pool: fine when a route catches everything. */
static void test_yaml_default_pool_from_catch_all_route(void **state)
{
    (void)state;
    struct moat_cfg *cfg = load_ok("pools: {a: {backends: [a:1]}, b: {backends: [b:1]}}\n"
                                   "routes: [{host: x.test, pool: a}, {pool: b}]\n");
    assert_int_equal(cfg->default_pool, 1);
    moat_cfg_free(cfg);
}

/* ---- ${VAR} --------------------------------------------------------------------------------- */

static void test_yaml_env_expansion(void **state)
{
    (void)state;
    setenv("MOAT_T_DIR", "/etc/moat", 1);
    setenv("MOAT_T_PORT", "9443", 1);
    setenv("MOAT_T_POOL", "web", 1);
    setenv("MOAT_T_EMPTY", "", 1);
    setenv("MOAT_T_WORKERS", "5", 1);
    unsetenv("MOAT_T_UNSET");
    struct moat_cfg *cfg = load_ok(
        "workers: ${MOAT_T_WORKERS}\n"
        "listeners:\n"
        "  - listen: 127.0.0.1:${MOAT_T_PORT}\n"
        "    tls: {certificates: [{cert: '${MOAT_T_DIR}/site.pem', key: \"${MOAT_T_DIR}/k$1\"}]}\n"
        "pools:\n"
        "  ${MOAT_T_POOL}: {backends: [127.0.0.1:8080]}\n"
        "default_pool: web\n"
        "state_dir: /s$${MOAT_T_DIR}${MOAT_T_EMPTY}/x\n"
        "user: ${MOAT_T_UNSET:-no:b-dy}${MOAT_T_EMPTY:-!}${MOAT_T_POOL:-x}${MOAT_T_UNSET:-}\n");
    assert_int_equal(cfg->workers, 5);
    assert_int_equal(cfg->listeners[0].addr.port, 9443);
    assert_string_equal(cfg->listeners[0].certs[0].cert_file, "/etc/moat/site.pem");
    assert_string_equal(cfg->listeners[0].certs[0].key_file, "/etc/moat/k$1"); /* a lone $ */
    assert_string_equal(cfg->pools[0].name, "web");
    assert_string_equal(cfg->state_dir, "/s${MOAT_T_DIR}/x"); /* $${ is a literal ${ */
    /* ${V:-d}: d when V is unset or empty, else V; an empty default is fine */
    assert_string_equal(cfg->user, "no:b-dy!web");
    moat_cfg_free(cfg);
}

static void test_yaml_env_errors(void **state)
{
    (void)state;
    unsetenv("MOAT_T_UNSET");
    setenv("MOAT_T_EMPTY", "", 1);
    expect_errors(POOL "user: ${MOAT_T_UNSET}\n"
                       "group: a${MOAT_T_DIR\n"
                       "state_dir: ${1X:-a}\n"
                       "logging: {access_log_target: \"${MOAT_T_EMPTY}\"}\n",
                  "t.yaml:4:7: user: environment variable MOAT_T_UNSET is not set (give a "
                  "default with ${MOAT_T_UNSET:-default})\n"
                  "t.yaml:5:8: group: '${' without a closing '}' (write '$${' for a literal "
                  "'${')\n"
                  "t.yaml:6:12: state_dir: '${1X:-a}': a variable name is letters, digits and '_', "
                  "not starting with a digit\n"
                  "t.yaml:7:30: logging.access_log_target: expected stdout, stderr or a file, "
                  "got an empty value");
}

/* ---- each kind of mistake, with its exact position ----------------------------------------- */

static void test_yaml_wrong_types(void **state)
{
    (void)state;
    expect_errors(POOL "workers: [1, 2]\n"
                       "user: {name: moat}\n"
                       "listeners: {listen: 0.0.0.0:8443}\n"
                       "timeouts: 10s\n"
                       "limits: {headers: {n: 1}}\n"
                       "logging: [level]\n"
                       "trusted_proxies: 10.0.0.0/8\n"
                       "routes:\n"
                       "  - nope\n"
                       "admin: {listen: [127.0.0.1:9901]}\n"
                       "state_dir:\n",
                  "t.yaml:4:10: workers: expected a number, got a list\n"
                  "t.yaml:5:7: user: expected a user name, got a mapping\n"
                  "t.yaml:6:12: listeners: expected a list of listeners, got a mapping\n"
                  "t.yaml:7:11: timeouts: expected a mapping, got a value\n"
                  "t.yaml:8:19: limits.headers: expected a number, got a mapping\n"
                  "t.yaml:9:10: logging: expected a mapping, got a list\n"
                  "t.yaml:10:18: trusted_proxies: expected a list of address ranges, got a "
                  "value\n"
                  "t.yaml:12:5: routes[0]: expected a mapping, got a value\n"
                  "t.yaml:13:17: admin.listen: expected a HOST:PORT address, got a list\n"
                  "t.yaml:14:11: state_dir: expected a directory, got nothing");
}

static void test_yaml_unknown_keys(void **state)
{
    (void)state;
    expect_errors(POOL "wokers: 2\n"
                       "listeners:\n"
                       "  - listen: 0.0.0.0:8443\n"
                       "    tls: {min: \"1.2\"}\n"
                       "    port: 1\n"
                       "timeouts: {idle: 5s, read: 5s}\n"
                       "limits: {bodysize: 1m}\n"
                       "logging: {format: json}\n"
                       "admin: {port: 1}\n"
                       "pools2: {}\n",
                  "t.yaml:4:1: wokers: unknown key (expected one of: workers, state_dir, user, "
                  "group, listeners, pools, resolver, routes, default_pool, trusted_proxies, "
                  "timeouts, limits, logging, admin, redirect_http, debug)\n"
                  "t.yaml:7:11: listeners[0].tls.min: unknown key (expected one of: min_version, "
                  "certificates, certificate_dirs, strict_sni, hsts, client_auth)\n"
                  "t.yaml:8:5: listeners[0].port: unknown key (expected one of: listen, tls)\n"
                  "t.yaml:9:22: timeouts.read: unknown key (expected one of: handshake, head, "
                  "idle, body, connect, backend, pool_idle, tunnel, send, drain)\n"
                  "t.yaml:10:10: limits.bodysize: unknown key (expected one of: head_size, "
                  "headers, target_size, body_size, connections, backend_connections)\n"
                  "t.yaml:11:11: logging.format: unknown key (expected one of: level, "
                  "access_log, access_log_format, access_log_target)\n"
                  "t.yaml:12:9: admin.port: unknown key (expected one of: listen, writes)\n"
                  "t.yaml:13:1: pools2: unknown key (expected one of: workers, state_dir, user, "
                  "group, listeners, pools, resolver, routes, default_pool, trusted_proxies, "
                  "timeouts, limits, logging, admin, redirect_http, debug)");
}

static void test_yaml_out_of_range(void **state)
{
    (void)state;
    expect_errors(POOL "workers: 257\n"
                       "listeners:\n"
                       "  - listen: 0.0.0.0:65536\n"
                       "    tls: {min_version: \"1.1\"}\n"
                       "timeouts: {head: 0, tunnel: 25h, drain: 61m}\n"
                       "limits: {head_size: 512, headers: 10001, target_size: 2m,\n"
                       "         connections: 0, backend_connections: -1, body_size: 2000000g}\n"
                       "logging: {level: verbose, access_log_format: clf, access_log: 2}\n"
                       "trusted_proxies: [10.0.0.0/33]\n",
                  "t.yaml:4:10: workers: expected a number from 1 to 256, got '257'\n"
                  "t.yaml:6:13: listeners[0].listen: invalid port '65536' in '0.0.0.0:65536' (1 "
                  "to 65535, or 0 for any free port)\n"
                  "t.yaml:7:24: listeners[0].tls.min_version: expected \"1.2\" or \"1.3\", got "
                  "'1.1'\n"
                  "t.yaml:8:18: timeouts.head: expected a duration from 1ms to 24h (e.g. 500ms, "
                  "10s, 5m), got '0'\n"
                  "t.yaml:8:29: timeouts.tunnel: expected a duration from 1ms to 24h (e.g. "
                  "500ms, 10s, 5m), got '25h'\n"
                  "t.yaml:8:41: timeouts.drain: expected a duration from 0 to 1h (e.g. 500ms, "
                  "10s, 5m), got '61m'\n"
                  "t.yaml:9:21: limits.head_size: expected a size (e.g. 16k, 1m) from 1024 to "
                  "1048576, got '512'\n"
                  "t.yaml:9:35: limits.headers: expected a number from 1 to 10000, got '10001'\n"
                  "t.yaml:9:55: limits.target_size: expected a size (e.g. 16k, 1m) from 64 to "
                  "1048576, got '2m'\n"
                  "t.yaml:10:23: limits.connections: expected a number from 1 to 1000000, got "
                  "'0'\n"
                  "t.yaml:10:47: limits.backend_connections: expected a number from 0 to "
                  "1000000, got '-1'\n"
                  "t.yaml:10:62: limits.body_size: expected a size (e.g. 16k, 1m) from 0 to "
                  "1125899906842624, got '2000000g'\n"
                  "t.yaml:11:18: logging.level: expected error, warn, info or debug, got "
                  "'verbose'\n"
                  "t.yaml:11:46: logging.access_log_format: expected moat, combined or json, got "
                  "'clf'\n"
                  "t.yaml:11:63: logging.access_log: expected true or false, got '2'\n"
                  "t.yaml:12:19: trusted_proxies[0]: invalid prefix length '33' in "
                  "'10.0.0.0/33' (0 to 32)");
}

static void test_yaml_missing(void **state)
{
    (void)state;
    expect_errors("listeners:\n"
                  "  - tls:\n"
                  "      certificates:\n"
                  "        - cert: a.pem\n"
                  "        - key: b.key\n"
                  "        - {cert: c.pem, key: c.key}\n",
                  "t.yaml:1:1: pools: at least one pool is required (e.g. pools: {web: "
                  "{backends: [127.0.0.1:8080]}})\n"
                  "t.yaml:2:5: listeners[0].listen: required (e.g. listen: 0.0.0.0:8443)\n"
                  "t.yaml:4:11: listeners[0].tls.certificates[0].key: required (e.g. key: "
                  "/etc/moat/site.key)\n"
                  "t.yaml:5:11: listeners[0].tls.certificates[1].cert: required (e.g. cert: "
                  "/etc/moat/site.pem)");
    expect_errors("pools:\n"
                  "  web: {}\n"
                  "  api:\n"
                  "    backends: []\n"
                  "routes:\n"
                  "  - host: a.test\n"
                  "  - pool: nope\n",
                  "t.yaml:2:8: pools.web.backends: required (e.g. backends: [127.0.0.1:8080])\n"
                  "t.yaml:4:15: pools.api.backends: at least one backend is required (e.g. "
                  "[127.0.0.1:8080])\n"
                  "t.yaml:6:5: routes[0].pool: required (e.g. pool: web)\n"
                  "t.yaml:7:11: routes[1].pool: no pool named 'nope' (pools: web, api)");
    expect_errors("", "t.yaml:1:1: pools: at least one pool is required (e.g. pools: {web: "
                      "{backends: [127.0.0.1:8080]}})");
    expect_errors(POOL "default_pool: api\n",
                  "t.yaml:4:15: default_pool: no pool named 'api' (pools: web)");
}

static void test_yaml_repeated(void **state)
{
    (void)state;
    setenv("MOAT_T_POOL", "web", 1);
    expect_errors("pools:\n"
                  "  web: {backends: [a:1]}\n"
                  "  ${MOAT_T_POOL}: {backends: [b:1]}\n"
                  "listeners:\n"
                  "  - listen: 127.0.0.1:8443\n"
                  "  - listen: 127.0.0.1:0\n"
                  "  - listen: 127.0.0.1:0\n"
                  "  - listen: 127.0.0.1:8443\n"
                  "workers: 1\n"
                  "workers: 2\n",
                  "t.yaml:3:3: pools.web: pool 'web' is defined twice\n"
                  "t.yaml:8:13: listeners[3].listen: '127.0.0.1:8443' is given twice (also "
                  "listeners[0])\n"
                  "t.yaml:10:1: workers: given twice (first at line 9)");
}

static void test_yaml_bad_routes(void **state)
{
    (void)state;
    expect_errors(POOL "routes:\n"
                       "  - {host: \"a.test:8443\", pool: web}\n"
                       "  - {host: \"*\", pool: web}\n"
                       "  - {path: v1/, pool: web}\n"
                       "  - {host: \"[::1]\", path: /, pool: web}\n",
                  "t.yaml:5:12: routes[0].host: expected a host name without a port (e.g. "
                  "api.example.com, *.example.com), got 'a.test:8443'\n"
                  "t.yaml:6:12: routes[1].host: expected a host name without a port (e.g. "
                  "api.example.com, *.example.com), got '*'\n"
                  "t.yaml:7:12: routes[2].path: expected a path prefix starting with '/', got "
                  "'v1/'");
}

static void test_yaml_syntax_errors(void **state)
{
    (void)state;
    expect_errors(POOL "workers: [1\n",
                  "t.yaml:5:1: syntax error: did not find expected ',' or ']' (while parsing a "
                  "flow sequence at line 4 column 10)");
    expect_errors(POOL " bad: 1\n", "t.yaml:4:2: syntax error: did not find expected key (while "
                                    "parsing a block mapping at line 1 column 1)");
    expect_errors(POOL "user: \"unterminated\n",
                  "t.yaml:5:1: syntax error: found unexpected end of stream (while scanning a "
                  "quoted scalar at line 4 column 7)");
    expect_errors(POOL "user: \xff\n", "t.yaml:4:7: syntax error: invalid leading UTF-8 octet");
    expect_errors("a: &x 1\nb: *x\n", "t.yaml:2:4: syntax error: alias '*x': aliases are not "
                                      "supported; repeat the value");
    expect_errors(POOL "---\n" POOL, "t.yaml:4:1: syntax error: a second document; a "
                                     "configuration file holds one");
    expect_errors("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
                  "t.yaml:1:33: syntax error: nested deeper than 32 levels");
    expect_errors("- 1\n", "t.yaml:1:1: (top level): expected a mapping, got a list\n"
                           "t.yaml:1:1: pools: at least one pool is required (e.g. pools: {web: "
                           "{backends: [127.0.0.1:8080]}})");
    expect_errors(POOL "{a: 1}: 2\n", "t.yaml:4:1: (top level): expected a key, got a mapping");
}

/* A value spanning lines is quoted on one line: one error, one line (found by fuzz_yaml). */
static void test_yaml_multiline_value_in_message(void **state)
{
    (void)state;
    expect_errors(POOL "listeners: [{listen: \"1.2.3.4\\n:8443\"}]\n"
                       "trusted_proxies: [\"a\\tb\\x01\"]\n",
                  "t.yaml:4:22: listeners[0].listen: invalid host '1.2.3.4\\n' in "
                  "'1.2.3.4\\n:8443': a name may hold letters, digits, '-', '.' and '_'\n"
                  "t.yaml:5:19: trusted_proxies[0]: 'a\\tb\\x01' is not an IPv4 or IPv6 address "
                  "(in 'a\\tb\\x01')");
}

/* A backend is "HOST:PORT" or {address, weight}; the weight's default is 1. */
static void test_yaml_backend_weights(void **state)
{
    (void)state;
    struct moat_cfg *cfg = load_ok("pools:\n"
                                   "  app:\n"
                                   "    backends:\n"
                                   "      - 10.0.0.1:80\n"
                                   "      - {address: 10.0.0.2:80, weight: 3}\n"
                                   "      - address: 10.0.0.3:80\n"
                                   "        weight: 0\n");
    assert_int_equal(cfg->pools[0].n_backends, 3);
    assert_int_equal(cfg->pools[0].backends[0].weight, 1);
    assert_string_equal(cfg->pools[0].backends[1].addr.host, "10.0.0.2");
    assert_int_equal(cfg->pools[0].backends[1].weight, 3);
    assert_int_equal(cfg->pools[0].backends[2].weight, 0);
    moat_cfg_free(cfg);
    expect_errors("pools:\n"
                  "  app:\n"
                  "    backends:\n"
                  "      - {address: 10.0.0.2:80, weight: 300}\n"
                  "      - {weight: 2}\n"
                  "      - {address: 10.0.0.4:80, wieght: 2}\n",
                  "t.yaml:4:40: pools.app.backends[0].weight: weight '300' is not a whole "
                  "number from 0 to 256\n"
                  "t.yaml:5:9: pools.app.backends[1].address: required (e.g. address: "
                  "127.0.0.1:8080)\n"
                  "t.yaml:6:32: pools.app.backends[2].wieght: unknown key (expected one of: "
                  "address, weight)");
}

/* A pool's choice and health keys, their defaults, and their mistakes. */
static void test_yaml_pool_choices(void **state)
{
    (void)state;
    struct moat_cfg *cfg = load_ok("pools:\n"
                                   "  plain: {backends: [10.0.0.1:80]}\n"
                                   "  app:\n"
                                   "    backends: [10.0.0.2:80]\n"
                                   "    balance: hash\n"
                                   "    hash_key: cookie:session\n"
                                   "    sticky: {cookie: pin, same_site: strict}\n"
                                   "    passive: {consecutive_errors: 0, ejection: 2s}\n"
                                   "    retries: {attempts: 2, budget_percent: 50}\n"
                                   "    slow_start: 30s\n"
                                   "    health_check: {path: /hz, interval: 1s, timeout: 500ms,\n"
                                   "                   rise: 4, fall: 5, expect: 204, host: a.b}\n"
                                   "default_pool: plain\n");
    const struct moat_cfg_pool *plain = &cfg->pools[0], *app = &cfg->pools[1];
    assert_int_equal(plain->balance, MOAT_CFG_BALANCE_ROUND_ROBIN);
    assert_int_equal(plain->passive_errors, MOAT_CFG_PASSIVE_ERRORS); /* on by default */
    assert_int_equal(plain->passive_ejection_ms, MOAT_CFG_PASSIVE_EJECTION_MS);
    assert_int_equal(plain->retry_attempts, 1);
    assert_int_equal(plain->retry_budget_pct, 20);
    assert_int_equal(plain->slow_start_ms, 0);
    assert_null(plain->health.path); /* checks are opt-in */
    assert_null(plain->sticky_cookie);
    assert_int_equal(app->balance, MOAT_CFG_BALANCE_HASH);
    assert_int_equal(app->hash_by, MOAT_CFG_HASH_COOKIE);
    assert_string_equal(app->hash_name, "session");
    assert_string_equal(app->sticky_cookie, "pin");
    assert_int_equal(app->sticky_same_site, MOAT_CFG_SAME_SITE_STRICT);
    assert_int_equal(app->passive_errors, 0);
    assert_int_equal(app->passive_ejection_ms, 2000);
    assert_int_equal(app->retry_attempts, 2);
    assert_int_equal(app->retry_budget_pct, 50);
    assert_int_equal(app->slow_start_ms, 30000);
    assert_string_equal(app->health.path, "/hz");
    assert_string_equal(app->health.host, "a.b");
    assert_int_equal(app->health.interval_ms, 1000);
    assert_int_equal(app->health.timeout_ms, 500);
    assert_int_equal(app->health.rise, 4);
    assert_int_equal(app->health.fall, 5);
    assert_int_equal(app->health.expect_lo, 204);
    assert_int_equal(app->health.expect_hi, 204);
    moat_cfg_free(cfg);
    expect_errors("pools:\n"
                  "  app:\n"
                  "    backends: [10.0.0.2:80]\n"
                  "    balance: fastest\n"
                  "    hash_key: ip\n"
                  "    sticky: {same_site: lax}\n"
                  "    retries: {attempts: 9}\n"
                  "    slow_start: 2h\n"
                  "    health_check: {interval: 10ms, expect: 300-200}\n",
                  "t.yaml:4:14: pools.app.balance: unknown balance 'fastest' (expected "
                  "round_robin, random, least_request or hash)\n"
                  "t.yaml:5:15: pools.app.hash_key: unknown hash key 'ip' (expected client_ip, "
                  "header:NAME, cookie:NAME, uri, path or host)\n"
                  "t.yaml:5:15: pools.app.hash_key: only with balance: hash\n"
                  "t.yaml:6:13: pools.app.sticky.cookie: required (e.g. cookie: moat_backend)\n"
                  "t.yaml:7:25: pools.app.retries.attempts: expected a number from 0 to 5, got "
                  "'9'\n"
                  "t.yaml:8:17: pools.app.slow_start: expected a duration from 0 to 1h (e.g. "
                  "10s), got '2h'\n"
                  "t.yaml:9:19: pools.app.health_check.path: required (e.g. path: /healthz)\n"
                  "t.yaml:9:30: pools.app.health_check.interval: expected a duration from "
                  "100ms to 1h (e.g. 10s), got '10ms'\n"
                  "t.yaml:9:44: pools.app.health_check.expect: expected a status or a range "
                  "of statuses (e.g. 200-399), got '300-200'");
}

/* Every error of a file comes back, in file order, whatever order the checks ran in. */
static void test_yaml_many_errors_together(void **state)
{
    (void)state;
    expect_errors("routes: [{pool: x}]\n"
                  "workers: many\n"
                  "pools:\n"
                  "  a: {backends: [\"a\"]}\n"
                  "timeouts: {idle: 1y}\n",
                  "t.yaml:1:17: routes[0].pool: no pool named 'x' (pools: a)\n"
                  "t.yaml:2:10: workers: expected a number from 1 to 256, got 'many'\n"
                  "t.yaml:4:18: pools.a.backends[0]: missing port in 'a' (write HOST:PORT)\n"
                  "t.yaml:5:18: timeouts.idle: expected a duration from 1ms to 24h (e.g. 500ms, "
                  "10s, 5m), got '1y'");
}

/* A small err buffer holds what fits, says how many errors it left out, stays terminated. */
static void test_yaml_small_err_buffer(void **state)
{
    (void)state;
    char text[4096] = POOL;
    for (int i = 0; i < 40; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "k%d: 1\n", i);
    write_file(text);
    char small[300];
    memset(small, 'x', sizeof(small));
    struct moat_cfg *cfg = NULL;
    assert_int_equal(moat_cfg_load_yaml(file, 2, &cfg, small, sizeof(small)), -1);
    assert_null(cfg);
    assert_non_null(memchr(small, '\0', sizeof(small)));
    assert_non_null(strstr(small, "t.yaml:4:1: k0: unknown key"));
    const char *tail = strrchr(small, '\n');
    assert_non_null(tail);
    unsigned more = 0;
    assert_int_equal(sscanf(tail, "\n(%u more errors not shown)", &more), 1);
    assert_true(more > 30 && more < 40);
    char tiny[8];
    assert_int_equal(moat_cfg_load_yaml(file, 2, &cfg, tiny, sizeof(tiny)), -1);
    assert_int_equal(strlen(tiny), 7);
}

static void test_yaml_unreadable_file(void **state)
{
    (void)state;
    struct moat_cfg *cfg = (struct moat_cfg *)&cfg;
    char path[160];
    snprintf(path, sizeof(path), "%s/absent.yaml", dir);
    assert_int_equal(moat_cfg_load_yaml(path, 2, &cfg, err, sizeof(err)), -1);
    assert_null(cfg);
    char want[256];
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    assert_string_equal(err, want);
}

/* The buffer entry point (used by the fuzzer) says the same with the name it is given. */
static void test_yaml_buffer(void **state)
{
    (void)state;
    static const char text[] = "workers: 0\n" POOL;
    struct moat_cfg *cfg = NULL;
    assert_int_equal(
        moat_cfg_load_yaml_buffer("mem.yaml", text, strlen(text), 2, &cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "mem.yaml:1:10: workers: expected a number from 1 to 256, got '0'");
    assert_int_equal(moat_cfg_load_yaml_buffer("mem.yaml", POOL, strlen(POOL), 2, &cfg, err,
                                               sizeof(err)),
                     0);
    assert_string_equal(cfg->config_file, "mem.yaml");
    moat_cfg_free(cfg);
}

/* --config through the flags: RUN, CHECK with -t, BAD_CONFIG with the file's errors. */
static void test_yaml_through_flags(void **state)
{
    (void)state;
    write_file(POOL "workers: 7\n");
    struct moat_cfg *cfg = NULL;
    char *run[] = {"moat", "--config", file};
    assert_int_equal(moat_cfg_from_argv(3, run, 2, &cfg, err, sizeof(err)), MOAT_CFG_RUN);
    assert_int_equal(cfg->workers, 7);
    moat_cfg_free(cfg);
    char *check[] = {"moat", "-t", "-c", file};
    assert_int_equal(moat_cfg_from_argv(4, check, 2, &cfg, err, sizeof(err)), MOAT_CFG_CHECK);
    moat_cfg_free(cfg);
    write_file(POOL "workers: 0\n");
    assert_int_equal(moat_cfg_from_argv(4, check, 2, &cfg, err, sizeof(err)),
                     MOAT_CFG_BAD_CONFIG);
    assert_null(cfg);
    assert_non_null(strstr(err, "t.yaml:4:10: workers: expected a number from 1 to 256"));
}

/* ---- route picking -------------------------------------------------------------------------- */

static void test_yaml_route_pick(void **state)
{
    (void)state;
    struct moat_cfg *cfg = load_ok("pools:\n"
                                   "  web: {backends: [a:1]}\n"
                                   "  api: {backends: [b:1]}\n"
                                   "  wild: {backends: [c:1]}\n"
                                   "  static: {backends: [d:1]}\n"
                                   "routes:\n"
                                   "  - {host: api.example.com, path: /v1/, pool: api}\n"
                                   "  - {host: \"*.example.com\", pool: wild}\n"
                                   "  - {path: /static/, pool: static}\n"
                                   "default_pool: web\n");
    static const struct {
        const char *host, *path;
        size_t pool;
    } cases[] = {
        {"api.example.com", "/v1/users", 1},
        {"API.Example.COM:8443", "/v1/", 1},  /* case and port ignored */
        {"api.example.com", "/v2/", 2},       /* same host, other path: the wildcard */
        {"api.example.com", "/v1", 2},        /* the prefix is "/v1/" */
        {"a.b.example.com", "/", 2},          /* any depth under the wildcard */
        {"example.com", "/", 0},              /* not a subdomain */
        {"badexample.com", "/", 0},
        {"other.test", "/static/x.css", 3},   /* no host on the route: any host */
        {NULL, "/static/", 3},                /* no Host at all */
        {"", "/", 0},
        {"[::1]:8443", "/static/a", 3},
        {"other.test", "/", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *h = cases[i].host;
        size_t pool = moat_cfg_route_pick(cfg, h, h != NULL ? strlen(h) : 0, cases[i].path,
                                          strlen(cases[i].path));
        if (pool != cases[i].pool)
            fail_msg("%s %s: pool %zu, expected %zu", h != NULL ? h : "(none)", cases[i].path,
                     pool, cases[i].pool);
    }
    moat_cfg_free(cfg);
}

int run_yaml_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yaml_every_key),
        cmocka_unit_test(test_yaml_defaults),
        cmocka_unit_test(test_yaml_empty_values),
        cmocka_unit_test(test_yaml_scalar_spellings),
        cmocka_unit_test(test_yaml_default_pool_from_catch_all_route),
        cmocka_unit_test(test_yaml_env_expansion),
        cmocka_unit_test(test_yaml_env_errors),
        cmocka_unit_test(test_yaml_wrong_types),
        cmocka_unit_test(test_yaml_unknown_keys),
        cmocka_unit_test(test_yaml_out_of_range),
        cmocka_unit_test(test_yaml_missing),
        cmocka_unit_test(test_yaml_repeated),
        cmocka_unit_test(test_yaml_bad_routes),
        cmocka_unit_test(test_yaml_syntax_errors),
        cmocka_unit_test(test_yaml_multiline_value_in_message),
        cmocka_unit_test(test_yaml_backend_weights),
        cmocka_unit_test(test_yaml_pool_choices),
        cmocka_unit_test(test_yaml_many_errors_together),
        cmocka_unit_test(test_yaml_small_err_buffer),
        cmocka_unit_test(test_yaml_unreadable_file),
        cmocka_unit_test(test_yaml_buffer),
        cmocka_unit_test(test_yaml_through_flags),
        cmocka_unit_test(test_yaml_route_pick),
    };
    return cmocka_run_group_tests_name("config YAML file", tests, make_dir, remove_dir);
}
