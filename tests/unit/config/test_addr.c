/* tests/unit/config/test_addr.c: HOST:PORT and CIDR parsing and CIDR matching, through
 * config/config.h only. Every refused input must also say why, in words a user can act on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "config/config.h"
#include "test_config.h"

/* ---- HOST:PORT ---------------------------------------------------------------------------- */

static void expect_hp(const char *text, int allow_zero, const char *host, unsigned port,
                      int is_ipv6)
{
    struct moat_cfg_hostport hp;
    char err[512] = "";
    if (moat_cfg_hostport_parse(text, allow_zero, &hp, err, sizeof(err)) != 0)
        fail_msg("'%s' refused: %s", text, err);
    if (strcmp(hp.host, host) != 0 || hp.port != port || hp.is_ipv6 != is_ipv6)
        fail_msg("'%s': got host '%s' port %u is_ipv6 %d", text, hp.host, hp.port, hp.is_ipv6);
}

/* err_part: a piece the message must hold; the message must also quote the input (or, for
 * very long inputs, its start) so the user sees which value was refused. */
static void expect_hp_error(const char *text, int allow_zero, const char *err_part)
{
    struct moat_cfg_hostport hp;
    char err[512] = "";
    if (moat_cfg_hostport_parse(text, allow_zero, &hp, err, sizeof(err)) != -1)
        fail_msg("'%s' accepted as host '%s' port %u", text, hp.host, hp.port);
    if (strstr(err, err_part) == NULL)
        fail_msg("'%s': error '%s' lacks '%s'", text, err, err_part);
    char start[24];
    snprintf(start, sizeof(start), "%s", text);
    if (start[0] != '\0' && strstr(err, start) == NULL)
        fail_msg("'%s': error '%s' does not quote the input", text, err);
    assert_string_equal(hp.host, ""); /* nothing half-parsed is left behind */
    assert_int_equal(hp.port, 0);
    assert_int_equal(hp.is_ipv6, 0);
}

static void test_hostport_name(void **state)
{
    (void)state;
    expect_hp("localhost:8080", 0, "localhost", 8080, 0);
    expect_hp("example.com:443", 0, "example.com", 443, 0);
    expect_hp("app_1.internal-net:65535", 0, "app_1.internal-net", 65535, 0);
    expect_hp("example.com.:80", 0, "example.com.", 80, 0); /* a rooted name */
    expect_hp("Backend-7:1", 0, "Backend-7", 1, 0);
}

static void test_hostport_ipv4(void **state)
{
    (void)state;
    expect_hp("127.0.0.1:80", 0, "127.0.0.1", 80, 0);
    expect_hp("1.2.3.4:80", 0, "1.2.3.4", 80, 0);
    expect_hp("255.255.255.255:9", 0, "255.255.255.255", 9, 0);
    expect_hp("0.0.0.0:8443", 1, "0.0.0.0", 8443, 0);
}

static void test_hostport_ipv6(void **state)
{
    (void)state;
    expect_hp("[::1]:8443", 0, "::1", 8443, 1);
    expect_hp("[2001:db8::1]:443", 0, "2001:db8::1", 443, 1);
    expect_hp("[::]:0", 1, "::", 0, 1);
    expect_hp("[::ffff:192.0.2.1]:80", 0, "::ffff:192.0.2.1", 80, 1);
    expect_hp("[fe80:0000:0000:0000:0202:b3ff:fe1e:8329]:1", 0,
              "fe80:0000:0000:0000:0202:b3ff:fe1e:8329", 1, 1);
}

static void test_hostport_port_range(void **state)
{
    (void)state;
    expect_hp("a:1", 0, "a", 1, 0);
    expect_hp("a:65535", 0, "a", 65535, 0);
    expect_hp("a:0080", 0, "a", 80, 0);
    expect_hp_error("a:65536", 0, "invalid port '65536'");
    expect_hp_error("a:99999", 1, "invalid port");
    expect_hp_error("a:123456789012345678901234567890", 0, "invalid port");
    expect_hp_error("[::1]:70000", 0, "invalid port '70000'");
}

static void test_hostport_port_zero(void **state)
{
    (void)state;
    expect_hp("127.0.0.1:0", 1, "127.0.0.1", 0, 0);
    expect_hp_error("127.0.0.1:0", 0, "invalid port '0'");
    expect_hp_error("[::1]:0", 0, "1 to 65535"); /* says what is allowed */
    expect_hp_error("a:x", 1, "or 0 for any free port");
}

static void test_hostport_port_not_a_number(void **state)
{
    (void)state;
    expect_hp_error("localhost:80x", 0, "invalid port '80x'");
    expect_hp_error("localhost:+80", 0, "invalid port '+80'");
    expect_hp_error("localhost:-1", 0, "invalid port '-1'");
    expect_hp_error("localhost: 80", 0, "invalid port ' 80'");
    expect_hp_error("localhost:0x50", 0, "invalid port '0x50'");
    expect_hp_error("localhost:http", 0, "invalid port 'http'");
}

static void test_hostport_missing_port(void **state)
{
    (void)state;
    expect_hp_error("localhost", 0, "missing port in 'localhost'");
    expect_hp_error("10.0.0.1", 0, "missing port");
    expect_hp_error("localhost:", 0, "invalid port ''");
    expect_hp_error("[::1]", 0, "missing port in '[::1]'");
    expect_hp_error("[::1]:", 0, "invalid port ''");
}

static void test_hostport_missing_host(void **state)
{
    (void)state;
    expect_hp_error(":8080", 0, "missing host in ':8080'");
    expect_hp_error("", 0, "empty address");
    expect_hp_error(":", 1, "missing host");
}

static void test_hostport_ipv6_needs_brackets(void **state)
{
    (void)state;
    expect_hp_error("::1:80", 0, "IPv6 addresses need brackets");
    expect_hp_error("2001:db8::1:443", 0, "[ADDRESS]:PORT");
    expect_hp_error("::1", 0, "need brackets");
    expect_hp_error("a:b:80", 0, "need brackets");
}

static void test_hostport_bad_brackets(void **state)
{
    (void)state;
    expect_hp_error("[::1:8443", 0, "missing ']'");
    expect_hp_error("[::1]8443", 0, "unexpected text after ']'");
    expect_hp_error("[::1]x:80", 0, "unexpected text after ']'");
    expect_hp_error("[example.com]:80", 0, "'example.com' is not an IPv6 address");
    expect_hp_error("[1.2.3.4]:80", 0, "'1.2.3.4' is not an IPv6 address");
    expect_hp_error("[]:80", 0, "not an IPv6 address");
    expect_hp_error("[::g]:80", 0, "not an IPv6 address");
    expect_hp_error("[fe80::1%eth0]:80", 0, "not an IPv6 address"); /* no zone ids */
    expect_hp_error("[1:2:3:4:5:6:7:8:9]:80", 0, "not an IPv6 address");
}

static void test_hostport_bad_host_chars(void **state)
{
    (void)state;
    expect_hp_error("bad host:80", 0, "invalid host 'bad host'");
    expect_hp_error("a/b:80", 0, "invalid host 'a/b'");
    expect_hp_error("user@host:80", 0, "invalid host");
    expect_hp_error("h\xc3\xa9:80", 0, "letters, digits"); /* says what a name may hold */
    expect_hp_error("a]:80", 0, "invalid host");
    expect_hp_error("tab\t:80", 0, "invalid host");
}

static void test_hostport_bad_ipv4(void **state)
{
    (void)state;
    expect_hp_error("999.1.1.1:80", 0, "'999.1.1.1' in '999.1.1.1:80': not an IPv4 address");
    expect_hp_error("1.2.3:80", 0, "not an IPv4 address");
    expect_hp_error("10.1:80", 0, "not an IPv4 address");
    expect_hp_error("3232235777:80", 0, "not an IPv4 address");
    expect_hp_error("1.2.3.4.5:80", 0, "not an IPv4 address");
}

static void test_hostport_name_length(void **state)
{
    (void)state;
    char text[400], host[300];
    memset(host, 'a', 253);
    host[253] = '\0';
    snprintf(text, sizeof(text), "%s:80", host);
    expect_hp(text, 0, host, 80, 0); /* RFC 1035: 253 characters fit */
    host[253] = '.';
    host[254] = '\0';
    snprintf(text, sizeof(text), "%s:80", host);
    expect_hp(text, 0, host, 80, 0); /* and a rooted name's final dot besides */
    memset(host, 'b', 254);
    host[254] = '\0';
    snprintf(text, sizeof(text), "%s:80", host);
    expect_hp_error(text, 0, "longer than 253 characters");
    memset(host, 'c', 299);
    host[299] = '\0';
    snprintf(text, sizeof(text), "%s:80", host);
    expect_hp_error(text, 0, "longer than 253 characters");
}

static void test_hostport_small_err_buffer(void **state)
{
    (void)state;
    struct moat_cfg_hostport hp;
    char err[8];
    memset(err, 'x', sizeof(err));
    assert_int_equal(moat_cfg_hostport_parse("localhost", 0, &hp, err, sizeof(err)), -1);
    assert_int_equal(strlen(err), sizeof(err) - 1); /* truncated, still terminated */
    assert_int_equal(moat_cfg_hostport_parse("localhost", 0, &hp, NULL, 0), -1);
}

/* ---- CIDR --------------------------------------------------------------------------------- */

static struct moat_cfg_cidr cidr(const char *text)
{
    struct moat_cfg_cidr c;
    char err[512] = "";
    if (moat_cfg_cidr_parse(text, &c, err, sizeof(err)) != 0)
        fail_msg("'%s' refused: %s", text, err);
    return c;
}

static int contains(const char *range, const char *addr)
{
    struct moat_cfg_cidr c = cidr(range);
    uint8_t buf[16];
    if (inet_pton(AF_INET, addr, buf) == 1)
        return moat_cfg_cidr_contains(&c, 4, buf);
    assert_int_equal(inet_pton(AF_INET6, addr, buf), 1);
    return moat_cfg_cidr_contains(&c, 6, buf);
}

static void expect_cidr_addr(const char *text, int family, unsigned prefix_len, const char *addr)
{
    struct moat_cfg_cidr c = cidr(text);
    uint8_t want[16] = {0};
    assert_int_equal(inet_pton(family == 4 ? AF_INET : AF_INET6, addr, want), 1);
    assert_int_equal(c.family, family);
    assert_int_equal(c.prefix_len, prefix_len);
    if (memcmp(c.addr, want, family == 4 ? 4 : 16) != 0)
        fail_msg("'%s': stored address differs from %s", text, addr);
}

static void test_cidr_parse(void **state)
{
    (void)state;
    expect_cidr_addr("10.0.0.0/8", 4, 8, "10.0.0.0");
    expect_cidr_addr("192.0.2.7", 4, 32, "192.0.2.7"); /* a bare address is a /32 */
    expect_cidr_addr("192.0.2.7/32", 4, 32, "192.0.2.7");
    expect_cidr_addr("0.0.0.0/0", 4, 0, "0.0.0.0");
    expect_cidr_addr("2001:db8::/32", 6, 32, "2001:db8::");
    expect_cidr_addr("::1", 6, 128, "::1"); /* and a bare IPv6 address a /128 */
    expect_cidr_addr("::/0", 6, 0, "::");
    expect_cidr_addr("10.0.0.0/008", 4, 8, "10.0.0.0");
}

/* Host bits are masked to zero (documented in config/addr.c), not refused. */
static void test_cidr_masks_host_bits(void **state)
{
    (void)state;
    expect_cidr_addr("10.1.2.3/8", 4, 8, "10.0.0.0");
    expect_cidr_addr("172.31.200.1/12", 4, 12, "172.16.0.0");
    expect_cidr_addr("192.0.2.255/25", 4, 25, "192.0.2.128");
    expect_cidr_addr("203.0.113.9/0", 4, 0, "0.0.0.0");
    expect_cidr_addr("2001:db8:ffff::1/32", 6, 32, "2001:db8::");
    expect_cidr_addr("2001:db8:abcd:ef12::1/57", 6, 57, "2001:db8:abcd:ef00::");
    expect_cidr_addr("fe80::1/0", 6, 0, "::");
}

static void test_cidr_contains_ipv4(void **state)
{
    (void)state;
    assert_true(contains("10.0.0.0/8", "10.200.3.4"));
    assert_true(contains("10.0.0.0/8", "10.0.0.0"));
    assert_true(contains("10.0.0.0/8", "10.255.255.255"));
    assert_false(contains("10.0.0.0/8", "11.0.0.1"));
    assert_false(contains("10.0.0.0/8", "9.255.255.255"));
    assert_true(contains("192.0.2.7", "192.0.2.7"));
    assert_false(contains("192.0.2.7", "192.0.2.8"));
    assert_true(contains("192.0.2.7/32", "192.0.2.7"));
    assert_false(contains("192.0.2.7/32", "192.0.2.6"));
    assert_true(contains("172.16.0.0/12", "172.31.255.255"));
    assert_false(contains("172.16.0.0/12", "172.32.0.0"));
    assert_false(contains("172.16.0.0/12", "172.15.255.255"));
    assert_true(contains("10.1.2.3/8", "10.9.9.9")); /* the range is 10.0.0.0/8 */
}

static void test_cidr_contains_zero_prefix(void **state)
{
    (void)state;
    assert_true(contains("0.0.0.0/0", "203.0.113.9"));
    assert_true(contains("0.0.0.0/0", "0.0.0.0"));
    assert_true(contains("0.0.0.0/0", "255.255.255.255"));
    assert_true(contains("::/0", "fe80::1"));
    assert_true(contains("::/0", "::"));
    assert_true(contains("::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
}

static void test_cidr_contains_ipv6(void **state)
{
    (void)state;
    assert_true(contains("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(contains("2001:db8::/32", "2001:db9::1"));
    assert_true(contains("::1", "::1"));
    assert_false(contains("::1", "::2"));
    assert_true(contains("::1/128", "::1"));
    assert_false(contains("::1/128", "::1:0"));
    assert_true(contains("2001:db8:abcd:ef00::/57", "2001:db8:abcd:ef7f::9"));
    assert_false(contains("2001:db8:abcd:ef00::/57", "2001:db8:abcd:ef80::"));
    assert_true(contains("fe80::/10", "febf::1"));
    assert_false(contains("fe80::/10", "fec0::1"));
}

static void test_cidr_contains_mapped(void **state)
{
    (void)state;
    /* A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d. */
    assert_true(contains("127.0.0.0/8", "::ffff:127.0.0.1"));
    assert_false(contains("127.0.0.0/8", "::ffff:10.0.0.1"));
    assert_true(contains("192.0.2.7", "::ffff:192.0.2.7"));
    assert_true(contains("0.0.0.0/0", "::ffff:1.2.3.4"));
    /* Only ::ffff:0:0/96 is mapped: IPv4-compatible and NAT64 addresses are not. */
    assert_false(contains("127.0.0.0/8", "::127.0.0.1"));
    assert_false(contains("192.0.2.0/24", "64:ff9b::192.0.2.1"));
    /* An IPv6 range written in mapped form matches mapped IPv6 addresses. */
    assert_true(contains("::ffff:10.0.0.0/104", "::ffff:10.1.2.3"));
}

static void test_cidr_families_do_not_mix(void **state)
{
    (void)state;
    assert_false(contains("::/0", "127.0.0.1"));
    assert_false(contains("0.0.0.0/0", "::1"));
    assert_false(contains("::ffff:0:0/96", "10.0.0.1"));
    struct moat_cfg_cidr c = cidr("0.0.0.0/0");
    uint8_t addr[16] = {0};
    assert_false(moat_cfg_cidr_contains(&c, 5, addr)); /* neither 4 nor 6 */
}

static void expect_cidr_error(const char *text, const char *err_part)
{
    struct moat_cfg_cidr c;
    char err[512] = "";
    if (moat_cfg_cidr_parse(text, &c, err, sizeof(err)) != -1)
        fail_msg("'%s' accepted", text);
    if (strstr(err, err_part) == NULL)
        fail_msg("'%s': error '%s' lacks '%s'", text, err, err_part);
    if (strstr(err, text) == NULL)
        fail_msg("'%s': error '%s' does not quote the input", text, err);
    assert_int_equal(c.family, 0);
}

static void test_cidr_prefix_errors(void **state)
{
    (void)state;
    expect_cidr_error("10.0.0.0/33", "invalid prefix length '33'");
    expect_cidr_error("10.0.0.0/33", "0 to 32");
    expect_cidr_error("::/129", "0 to 128");
    expect_cidr_error("10.0.0.0/", "invalid prefix length ''");
    expect_cidr_error("10.0.0.0/-1", "invalid prefix length");
    expect_cidr_error("10.0.0.0/+8", "invalid prefix length");
    expect_cidr_error("10.0.0.0/8x", "invalid prefix length");
    expect_cidr_error("10.0.0.0/8/8", "invalid prefix length");
    expect_cidr_error("10.0.0.0/ 8", "invalid prefix length");
    expect_cidr_error("::/99999999999999999999", "invalid prefix length");
}

static void test_cidr_address_errors(void **state)
{
    (void)state;
    expect_cidr_error("10.0.0", "'10.0.0' is not an IPv4 or IPv6 address");
    expect_cidr_error("example.com/8", "not an IPv4 or IPv6 address");
    expect_cidr_error("256.0.0.0/8", "not an IPv4 or IPv6 address");
    expect_cidr_error("[::1]/128", "not an IPv4 or IPv6 address");
    expect_cidr_error(" 10.0.0.0/8", "not an IPv4 or IPv6 address");
    expect_cidr_error("2001:db8::/32 ", "invalid prefix length");
    expect_cidr_error("", "is not an address range");
    expect_cidr_error("/8", "is not an address range");
    expect_cidr_error("1111:2222:3333:4444:5555:6666:7777:8888:9999/64", "not an IPv4 or IPv6");
}

int run_addr_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostport_name),
        cmocka_unit_test(test_hostport_ipv4),
        cmocka_unit_test(test_hostport_ipv6),
        cmocka_unit_test(test_hostport_port_range),
        cmocka_unit_test(test_hostport_port_zero),
        cmocka_unit_test(test_hostport_port_not_a_number),
        cmocka_unit_test(test_hostport_missing_port),
        cmocka_unit_test(test_hostport_missing_host),
        cmocka_unit_test(test_hostport_ipv6_needs_brackets),
        cmocka_unit_test(test_hostport_bad_brackets),
        cmocka_unit_test(test_hostport_bad_host_chars),
        cmocka_unit_test(test_hostport_bad_ipv4),
        cmocka_unit_test(test_hostport_name_length),
        cmocka_unit_test(test_hostport_small_err_buffer),
        cmocka_unit_test(test_cidr_parse),
        cmocka_unit_test(test_cidr_masks_host_bits),
        cmocka_unit_test(test_cidr_contains_ipv4),
        cmocka_unit_test(test_cidr_contains_zero_prefix),
        cmocka_unit_test(test_cidr_contains_ipv6),
        cmocka_unit_test(test_cidr_contains_mapped),
        cmocka_unit_test(test_cidr_families_do_not_mix),
        cmocka_unit_test(test_cidr_prefix_errors),
        cmocka_unit_test(test_cidr_address_errors),
    };
    return cmocka_run_group_tests_name("config addresses", tests, NULL, NULL);
}
