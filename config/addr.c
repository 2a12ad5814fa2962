/* config/addr.c: HOST:PORT and CIDR parsing. Text in, numbers out; no name resolution (proxy/
 * resolves names once at start). Locale-independent: character classes are spelled out. */
#include "config/config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* RFC 1035 §2.3.4: a name is at most 255 octets on the wire, which is 253 characters as text,
 * not counting a rooted name's final dot. Longer ones can never resolve: refused here, by name. */
#define MAX_NAME_LEN 253

/* Longer texts are quoted in error messages by their first this-many characters and "...". */
#define QUOTE_LEN 48

static int is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static int is_name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || is_digit(ch) || ch == '-' ||
           ch == '.' || ch == '_';
}

/* A port: digits only (no sign, no spaces), 1..65535, or 0 when allowed. -1 if invalid. */
static long parse_port(const char *s, int allow_zero)
{
    long v = 0;
    if (*s == '\0')
        return -1;
    for (const char *p = s; *p != '\0'; p++) {
        if (!is_digit(*p))
            return -1;
        v = v * 10 + (*p - '0');
        if (v > 65535) /* also stops the sum from growing on long inputs */
            return -1;
    }
    if (v == 0 && !allow_zero)
        return -1;
    return v;
}

/* Checks a host that is not in brackets: a DNS name, or an IPv4 literal. Returns 0, or -1 with
 * err saying what is wrong with it. */
static int check_host(const char *text, const char *host, size_t len, char *err, size_t err_len)
{
    if (len == 0) {
        snprintf(err, err_len, "missing host in '%s' (write HOST:PORT)", text);
        return -1;
    }
    if (len - (host[len - 1] == '.') > MAX_NAME_LEN) {
        snprintf(err, err_len, "host name longer than %d characters in '%.*s...'", MAX_NAME_LEN,
                 QUOTE_LEN, text);
        return -1;
    }
    int is_dotted_number = 1; /* only digits and dots: it can only mean an IPv4 address */
    for (size_t i = 0; i < len; i++) {
        if (!is_name_char(host[i])) {
            snprintf(err, err_len,
                     "invalid host '%.*s' in '%s': a name may hold letters, digits, '-', '.' "
                     "and '_'",
                     (int)len, host, text);
            return -1;
        }
        if (!is_digit(host[i]) && host[i] != '.')
            is_dotted_number = 0;
    }
    if (is_dotted_number) {
        /* inet_pton() takes only the four-part dotted quad; getaddrinfo() would also take "10.1"
         * or "3232235777" (inet_aton forms), which are more likely typos than intent. */
        char lit[INET_ADDRSTRLEN];
        unsigned char buf[4];
        int is_v4 = len < sizeof(lit);
        if (is_v4) {
            memcpy(lit, host, len);
            lit[len] = '\0';
            is_v4 = inet_pton(AF_INET, lit, buf) == 1;
        }
        if (!is_v4) {
            snprintf(err, err_len, "invalid host '%.*s' in '%s': not an IPv4 address", (int)len,
                     host, text);
            return -1;
        }
    }
    return 0;
}

int moat_cfg_host_is_ip(const struct moat_cfg_hostport *hp)
{
    if (hp->is_ipv6)
        return 1;
    for (const char *p = hp->host; *p != '\0'; p++)
        if (!is_digit(*p) && *p != '.')
            return 0;
    return hp->host[0] != '\0'; /* the parser took only a four-part dotted quad */
}

int moat_cfg_hostport_parse(const char *text, int allow_port_zero, struct moat_cfg_hostport *out,
                            char *err, size_t err_len)
{
    memset(out, 0, sizeof(*out));
    const char *host, *host_end, *port;
    if (text[0] == '\0') {
        snprintf(err, err_len, "empty address (write HOST:PORT)");
        return -1;
    }
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL) {
            snprintf(err, err_len, "missing ']' in '%s' (write [ADDRESS]:PORT)", text);
            return -1;
        }
        host = text + 1;
        host_end = close;
        size_t len = (size_t)(host_end - host);
        char lit[INET6_ADDRSTRLEN];
        unsigned char buf[16];
        int is_v6 = len > 0 && len < sizeof(lit);
        if (is_v6) {
            memcpy(lit, host, len);
            lit[len] = '\0';
            is_v6 = inet_pton(AF_INET6, lit, buf) == 1;
        }
        if (!is_v6) {
            snprintf(err, err_len,
                     "'%.*s' is not an IPv6 address in '%s' (brackets are for IPv6 only)", (int)len,
                     host, text);
            return -1;
        }
        if (close[1] == '\0') {
            snprintf(err, err_len, "missing port in '%s' (write [ADDRESS]:PORT)", text);
            return -1;
        }
        if (close[1] != ':') {
            snprintf(err, err_len, "unexpected text after ']' in '%s' (write [ADDRESS]:PORT)",
                     text);
            return -1;
        }
        port = close + 2;
        out->is_ipv6 = 1;
    } else {
        const char *colon = strrchr(text, ':');
        if (colon == NULL) {
            snprintf(err, err_len, "missing port in '%s' (write HOST:PORT)", text);
            return -1;
        }
        if (memchr(text, ':', (size_t)(colon - text)) != NULL) {
            snprintf(err, err_len,
                     "IPv6 addresses need brackets: write '[ADDRESS]:PORT' (e.g. [::1]:8443), "
                     "not '%s'",
                     text);
            return -1;
        }
        host = text;
        host_end = colon;
        port = colon + 1;
        if (check_host(text, host, (size_t)(host_end - host), err, err_len) != 0)
            return -1;
    }
    long p = parse_port(port, allow_port_zero);
    if (p < 0) {
        snprintf(err, err_len, "invalid port '%s' in '%s' (1 to 65535%s)", port, text,
                 allow_port_zero ? ", or 0 for any free port" : "");
        out->is_ipv6 = 0;
        return -1;
    }
    size_t len = (size_t)(host_end - host); /* <= MAX_NAME_LEN < sizeof(out->host) */
    memcpy(out->host, host, len);
    out->host[len] = '\0';
    out->port = (uint16_t)p;
    return 0;
}

int moat_cfg_cidr_parse(const char *text, struct moat_cfg_cidr *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof(*out));
    const char *slash = strchr(text, '/');
    size_t len = slash != NULL ? (size_t)(slash - text) : strlen(text);
    if (len == 0) {
        snprintf(err, err_len,
                 "'%s' is not an address range (write ADDRESS/PREFIX, e.g. 10.0.0.0/8, or one "
                 "address)",
                 text);
        return -1;
    }
    char addr[INET6_ADDRSTRLEN];
    unsigned max = 0;
    if (len < sizeof(addr)) {
        memcpy(addr, text, len);
        addr[len] = '\0';
        if (inet_pton(AF_INET, addr, out->addr) == 1) {
            out->family = 4;
            max = 32;
        } else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
            out->family = 6;
            max = 128;
        }
    }
    if (max == 0) {
        snprintf(err, err_len, "'%.*s' is not an IPv4 or IPv6 address (in '%s')",
                 len > QUOTE_LEN ? QUOTE_LEN : (int)len, text, text);
        memset(out, 0, sizeof(*out));
        return -1;
    }
    out->prefix_len = max; /* a bare address is a range of one */
    if (slash != NULL) {
        const char *p = slash + 1;
        long v = *p != '\0' ? 0 : -1;
        for (; v >= 0 && *p != '\0'; p++)
            v = is_digit(*p) && v <= 128 ? v * 10 + (*p - '0') : -1;
        if (v < 0 || v > (long)max) {
            snprintf(err, err_len, "invalid prefix length '%s' in '%s' (0 to %u)", slash + 1, text,
                     max);
            memset(out, 0, sizeof(*out));
            return -1;
        }
        out->prefix_len = (unsigned)v;
    }
    /* Host bits are cleared rather than refused: "10.1.2.3/8" means 10.0.0.0/8, as it does in
     * most firewall and proxy configurations. moat_cfg_cidr_contains() relies on this. */
    for (unsigned bit = out->prefix_len; bit < max; bit++)
        out->addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
    return 0;
}

int moat_cfg_cidr_contains(const struct moat_cfg_cidr *c, int family, const uint8_t *addr)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (family == 6 && c->family == 4 && memcmp(addr, mapped, sizeof(mapped)) == 0) {
        family = 4; /* ::ffff:a.b.c.d: how a dual-stack socket reports an IPv4 client */
        addr += 12;
    }
    if (family != c->family || (family != 4 && family != 6))
        return 0;
    unsigned full = c->prefix_len / 8, rest = c->prefix_len % 8;
    if (memcmp(addr, c->addr, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (addr[full] & mask) == c->addr[full];
}

int moat_cfg_weight_parse(const char *text, unsigned *out, char *err, size_t err_len)
{
    unsigned long v = 0;
    const char *p = text;
    while (*p >= '0' && *p <= '9' && v <= MOAT_CFG_MAX_WEIGHT)
        v = v * 10 + (unsigned long)(*p++ - '0');
    if (p == text || *p != '\0' || v > MOAT_CFG_MAX_WEIGHT) {
        snprintf(err, err_len, "weight '%s' is not a whole number from 0 to %d", text,
                 MOAT_CFG_MAX_WEIGHT);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

int moat_cfg_backend_parse(const char *text, struct moat_cfg_backend *out, char *err,
                           size_t err_len)
{
    out->weight = 1;
    const char *comma = strchr(text, ',');
    if (comma == NULL)
        return moat_cfg_hostport_parse(text, 0, &out->addr, err, err_len);
    char addr[sizeof(out->addr.host) + 16];
    size_t len = (size_t)(comma - text);
    if (len >= sizeof(addr)) {
        snprintf(err, err_len, "address too long in '%s'", text);
        return -1;
    }
    memcpy(addr, text, len);
    addr[len] = '\0';
    if (moat_cfg_hostport_parse(addr, 0, &out->addr, err, err_len) != 0)
        return -1;
    if (strncmp(comma + 1, "weight=", 7) != 0) {
        snprintf(err, err_len, "unknown option '%s' in '%s' (write HOST:PORT,weight=N)",
                 comma + 1, text);
        return -1;
    }
    return moat_cfg_weight_parse(comma + 8, &out->weight, err, err_len);
}

int moat_cfg_balance_parse(const char *text, enum moat_cfg_balance *out, char *err,
                           size_t err_len)
{
    static const char *const names[] = {"round_robin", "random", "least_request", "hash"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = (enum moat_cfg_balance)i;
            return 0;
        }
    }
    snprintf(err, err_len,
             "unknown balance '%s' (expected round_robin, random, least_request or hash)", text);
    return -1;
}

/* RFC 9110 §5.6.2 tchar. */
static int is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int is_token(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if (!is_tchar((unsigned char)*s))
            return 0;
    return 1;
}

int moat_cfg_cookie_name_check(const char *text, char *err, size_t err_len)
{
    if (is_token(text) && strlen(text) <= 128)
        return 0;
    snprintf(err, err_len, "'%s' is not a cookie name (letters, digits and !#$%%&'*+-.^_`|~; "
             "at most 128)", text);
    return -1;
}

int moat_cfg_hash_key_parse(const char *text, struct moat_cfg_pool *pool, char *err,
                            size_t err_len)
{
    static const struct {
        const char *name;
        enum moat_cfg_hash_by by;
    } plain[] = {{"client_ip", MOAT_CFG_HASH_CLIENT_IP}, {"uri", MOAT_CFG_HASH_URI},
                 {"path", MOAT_CFG_HASH_PATH}, {"host", MOAT_CFG_HASH_HOST}};
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        if (strcmp(text, plain[i].name) == 0) {
            pool->hash_by = plain[i].by;
            free(pool->hash_name);
            pool->hash_name = NULL;
            return 0;
        }
    }
    enum moat_cfg_hash_by by;
    const char *name;
    if (strncmp(text, "header:", 7) == 0) {
        by = MOAT_CFG_HASH_HEADER;
        name = text + 7;
    } else if (strncmp(text, "cookie:", 7) == 0) {
        by = MOAT_CFG_HASH_COOKIE;
        name = text + 7;
    } else {
        snprintf(err, err_len, "unknown hash key '%s' (expected client_ip, header:NAME, "
                 "cookie:NAME, uri, path or host)", text);
        return -1;
    }
    if (!is_token(name)) {
        snprintf(err, err_len, "'%s' names no header or cookie (write %s:NAME)", text,
                 by == MOAT_CFG_HASH_HEADER ? "header" : "cookie");
        return -1;
    }
    char *copy = strdup(name);
    if (copy == NULL)
        return -2;
    free(pool->hash_name);
    pool->hash_name = copy;
    pool->hash_by = by;
    return 0;
}
