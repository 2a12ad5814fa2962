/* config/route.c: which pool a request goes to. */
#include <string.h>
#include <strings.h>

#include "config/config.h"

/* host (no port) matches a route's host: equal, or under a "*.suffix" wildcard. */
static int host_matches(const char *pattern, const char *host, size_t host_len)
{
    if (pattern[0] == '*' && pattern[1] == '.') {
        size_t suffix_len = strlen(pattern + 1); /* ".example.com" */
        return host_len > suffix_len &&
               strncasecmp(host + host_len - suffix_len, pattern + 1, suffix_len) == 0;
    }
    return strlen(pattern) == host_len && strncasecmp(pattern, host, host_len) == 0;
}

/* The Host value without its port: "example.com:8443" -> "example.com", "[::1]:8443" ->
 * "[::1]". */
static size_t host_without_port(const char *host, size_t len)
{
    if (len > 0 && host[0] == '[') {
        const char *close = memchr(host, ']', len);
        return close != NULL ? (size_t)(close - host) + 1 : len;
    }
    const char *colon = memchr(host, ':', len);
    return colon != NULL ? (size_t)(colon - host) : len;
}

size_t moat_cfg_route_pick(const struct moat_cfg *cfg, const char *host, size_t host_len,
                           const char *path, size_t path_len)
{
    size_t bare_len = host != NULL ? host_without_port(host, host_len) : 0;
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const struct moat_cfg_route *r = &cfg->routes[i];
        if (r->host != NULL && !host_matches(r->host, host, bare_len))
            continue;
        size_t prefix_len = strlen(r->path_prefix);
        if (prefix_len <= path_len && memcmp(path, r->path_prefix, prefix_len) == 0)
            return r->pool;
    }
    return cfg->default_pool;
}
