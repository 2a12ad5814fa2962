/* config/addr.c: HOST:PORT and CIDR parsing. Text in, numbers out; no name resolution. */
#include "config/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A port number: 1..65535, or 0 when allowed; digits only. -1 if invalid. */
static long parse_port(const char *s, int allow_zero)
{
    if (*s == '\0' || strlen(s) > 5)
        return -1;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p))
            return -1;
    long v = strtol(s, NULL, 10);
    if (v > 65535 || (v == 0 && !allow_zero))
        return -1;
    return v;
}

/* A DNS name or an IPv4 literal: letters, digits, '-', '.', '_'. */
static int is_host_name(const char *s, size_t len)
{
    if (len == 0 || len > 253)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!isalnum(ch) && ch != '-' && ch != '.' && ch != '_')
            return 0;
    }
    return 1;
}

int moat_cfg_hostport_parse(const char *text, int allow_port_zero, struct moat_cfg_hostport *out,
                            char *err, size_t err_len)
{
    memset(out, 0, sizeof(*out));
    const char *host = text, *host_end, *port;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL) {
            snprintf(err, err_len, "missing ']' in '%s'", text);
            return -1;
        }
        host = text + 1;
        host_end = close;
        if (close[1] != ':') {
            snprintf(err, err_len, "missing port in '%s' (write [ADDRESS]:PORT)", text);
            return -1;
        }
        port = close + 2;
        size_t len = (size_t)(host_end - host);
        unsigned char buf[16];
        char lit[64];
        if (len == 0 || len >= sizeof(lit)) {
            snprintf(err, err_len, "'%s' is not an IPv6 address", text);
            return -1;
        }
        memcpy(lit, host, len);
        lit[len] = '\0';
        if (inet_pton(AF_INET6, lit, buf) != 1) {
            snprintf(err, err_len, "'%s' is not an IPv6 address", lit);
            return -1;
        }
        out->is_ipv6 = 1;
    } else {
        const char *colon = strrchr(text, ':');
        if (colon == NULL) {
            snprintf(err, err_len, "missing port in '%s' (write HOST:PORT)", text);
            return -1;
        }
        if (memchr(text, ':', (size_t)(colon - text)) != NULL) {
            snprintf(err, err_len, "IPv6 addresses need brackets: '[ADDRESS]:PORT', not '%s'",
                     text);
            return -1;
        }
        host_end = colon;
        port = colon + 1;
        if (!is_host_name(host, (size_t)(host_end - host))) {
            snprintf(err, err_len, "invalid host in '%s'", text);
            return -1;
        }
    }
    long p = parse_port(port, allow_port_zero);
    if (p < 0) {
        snprintf(err, err_len, "invalid port '%s' in '%s' (1 to 65535%s)", port, text,
                 allow_port_zero ? ", or 0 for any free port" : "");
        return -1;
    }
    size_t len = (size_t)(host_end - host);
    memcpy(out->host, host, len);
    out->host[len] = '\0';
    out->port = (uint16_t)p;
    return 0;
}

int moat_cfg_cidr_parse(const char *text, struct moat_cfg_cidr *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof(*out));
    char addr[64];
    const char *slash = strchr(text, '/');
    size_t len = slash != NULL ? (size_t)(slash - text) : strlen(text);
    if (len == 0 || len >= sizeof(addr)) {
        snprintf(err, err_len, "'%s' is not an address range (e.g. 10.0.0.0/8)", text);
        return -1;
    }
    memcpy(addr, text, len);
    addr[len] = '\0';
    unsigned max;
    if (inet_pton(AF_INET, addr, out->addr) == 1) {
        out->family = 4;
        max = 32;
    } else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
        out->family = 6;
        max = 128;
    } else {
        snprintf(err, err_len, "'%s' is not an IPv4 or IPv6 address", addr);
        return -1;
    }
    out->prefix_len = max;
    if (slash != NULL) {
        const char *p = slash + 1;
        int ok = *p != '\0' && strlen(p) <= 3;
        for (const char *q = p; ok && *q; q++)
            ok = isdigit((unsigned char)*q);
        long v = ok ? strtol(p, NULL, 10) : -1;
        if (v < 0 || v > (long)max) {
            snprintf(err, err_len, "invalid prefix length in '%s' (0 to %u)", text, max);
            return -1;
        }
        out->prefix_len = (unsigned)v;
    }
    /* Host bits are cleared rather than refused: "10.1.2.3/8" means 10.0.0.0/8, as in most
     * firewall and proxy configurations. */
    for (unsigned bit = out->prefix_len; bit < max; bit++)
        out->addr[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
    return 0;
}

int moat_cfg_cidr_contains(const struct moat_cfg_cidr *c, int family, const uint8_t *addr)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (family == 6 && c->family == 4 && memcmp(addr, mapped, sizeof(mapped)) == 0) {
        family = 4; /* ::ffff:a.b.c.d, as a dual-stack socket reports IPv4 clients */
        addr += 12;
    }
    if (family != c->family)
        return 0;
    unsigned full = c->prefix_len / 8, rest = c->prefix_len % 8;
    if (memcmp(addr, c->addr, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (addr[full] & mask) == c->addr[full];
}
