/* tests/fuzz/fuzz_yaml.c: the YAML configuration loader, whole: libyaml's events, the node
 * tree, ${VAR} expansion, the schema and the error list. Oracle: an accepted file gives a model
 * moat can run (a listener, pools with backends, routes and default_pool naming real pools,
 * paired certificates, ranges kept); a refused one gives only lines "fuzz.yaml:LINE:COLUMN: "
 * (or the last line's count of errors left out), NUL-terminated within the buffer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

#define NAME "fuzz.yaml"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Some variables to expand, one empty; anything else is unset (an error path). */
    setenv("A", "127.0.0.1:8080", 1);
    setenv("B", "web", 1);
    setenv("E", "", 1);
    return 0;
}

static void check_model(const struct moat_cfg *cfg)
{
    if (cfg->n_listeners == 0 || cfg->n_pools == 0 || cfg->default_pool >= cfg->n_pools ||
        cfg->workers < 1 || cfg->workers > 256 || cfg->config_file == NULL ||
        strcmp(cfg->config_file, NAME) != 0)
        abort();
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct moat_cfg_listener *li = &cfg->listeners[i];
        if (li->n_certs > MOAT_CFG_MAX_CERTS || (li->tls_min != 12 && li->tls_min != 13))
            abort();
        for (size_t c = 0; c < li->n_certs; c++)
            if (li->certs[c].cert_file == NULL || li->certs[c].key_file == NULL)
                abort();
    }
    for (size_t p = 0; p < cfg->n_pools; p++) {
        if (cfg->pools[p].name == NULL || cfg->pools[p].n_backends == 0)
            abort();
        for (size_t b = 0; b < cfg->pools[p].n_backends; b++)
            if (cfg->pools[p].backends[b].addr.port == 0 ||
                cfg->pools[p].backends[b].weight > MOAT_CFG_MAX_WEIGHT)
                abort();
    }
    for (size_t r = 0; r < cfg->n_routes; r++) {
        const struct moat_cfg_route *route = &cfg->routes[r];
        if (route->pool >= cfg->n_pools || route->path_prefix == NULL ||
            route->path_prefix[0] != '/')
            abort();
        /* The route's own host and prefix must pick it or an earlier route. */
        const char *h = route->host;
        if (h != NULL && h[0] == '*')
            h += 1; /* "*.x" matches "a.x": use "a" + ".x" */
        char host[300];
        snprintf(host, sizeof(host), "%s%s", h != NULL && route->host[0] == '*' ? "a" : "",
                 h != NULL ? h : "");
        size_t got = moat_cfg_route_pick(cfg, host, strlen(host), route->path_prefix,
                                         strlen(route->path_prefix));
        if (got >= cfg->n_pools)
            abort();
    }
}

static void check_errors(const char *err, size_t len)
{
    if (memchr(err, '\0', len) == NULL || err[0] == '\0')
        abort();
    for (const char *line = err; *line != '\0';) {
        unsigned l, c;
        int n = 0;
        if (strncmp(line, NAME ":", sizeof(NAME)) == 0) {
            if (sscanf(line + sizeof(NAME), "%u:%u: %n", &l, &c, &n) != 2 || n == 0 || l == 0 ||
                c == 0)
                abort();
        } else if (line[0] != '(') { /* "(N more errors not shown)" */
            abort();
        }
        const char *end = strchr(line, '\n');
        if (end == NULL)
            break;
        line = end + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384)
        return 0;
    struct moat_cfg *cfg = NULL;
    char err[4096];
    memset(err, 'x', sizeof(err));
    int rc = moat_cfg_load_yaml_buffer(NAME, (const char *)data, size, 2, &cfg, err, sizeof(err));
    if (rc == 0) {
        if (cfg == NULL)
            abort();
        check_model(cfg);
        moat_cfg_free(cfg);
    } else {
        if (cfg != NULL)
            abort();
        check_errors(err, sizeof(err));
    }
    return 0;
}
