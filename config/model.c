/* config/model.c: the configuration model's defaults, growth and release. */
#include "config/config.h"
#include "config/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct moat_cfg *moat_cfg_new(unsigned default_workers)
{
    struct moat_cfg *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return NULL;
    cfg->workers = default_workers >= 1 ? default_workers : 1;
    if (cfg->workers > MOAT_CFG_MAX_WORKERS)
        cfg->workers = MOAT_CFG_MAX_WORKERS;
    cfg->log_level = MOAT_CFG_LOG_INFO;
    cfg->access_log = 1;
    cfg->admin.port = MOAT_CFG_DEFAULT_ADMIN_PORT;
    cfg->admin_writes = -1;
    memcpy(cfg->admin.host, "127.0.0.1", sizeof("127.0.0.1"));
    cfg->drain_timeout_ms = 30000;
    cfg->resolver.refresh_ms = MOAT_CFG_DEFAULT_DNS_REFRESH_MS;
    cfg->resolver.hold_ms = MOAT_CFG_DEFAULT_DNS_HOLD_MS;
    cfg->handshake_timeout_ms = MOAT_CFG_DEFAULT_HANDSHAKE_TIMEOUT_MS;
    cfg->head_timeout_ms = MOAT_CFG_DEFAULT_HEAD_TIMEOUT_MS;
    cfg->idle_timeout_ms = MOAT_CFG_DEFAULT_IDLE_TIMEOUT_MS;
    cfg->body_timeout_ms = MOAT_CFG_DEFAULT_BODY_TIMEOUT_MS;
    cfg->connect_timeout_ms = MOAT_CFG_DEFAULT_CONNECT_TIMEOUT_MS;
    cfg->backend_timeout_ms = MOAT_CFG_DEFAULT_BACKEND_TIMEOUT_MS;
    cfg->pool_idle_timeout_ms = MOAT_CFG_DEFAULT_POOL_IDLE_TIMEOUT_MS;
    cfg->tunnel_timeout_ms = MOAT_CFG_DEFAULT_TUNNEL_TIMEOUT_MS;
    cfg->send_timeout_ms = MOAT_CFG_DEFAULT_SEND_TIMEOUT_MS;
    cfg->max_head_bytes = MOAT_CFG_DEFAULT_MAX_HEAD_BYTES;
    cfg->max_headers = MOAT_CFG_DEFAULT_MAX_HEADERS;
    cfg->max_target_bytes = MOAT_CFG_DEFAULT_MAX_TARGET_BYTES;
    cfg->max_body_bytes = 0;
    cfg->max_connections = MOAT_CFG_DEFAULT_MAX_CONNECTIONS;
    return cfg;
}

void *moat_cfg_grow(void *array, size_t n, size_t elem_size)
{
    /* Called before adding element n. Capacity is 4, then doubles whenever it is full. */
    size_t cap;
    if (n == 0)
        cap = 4;
    else if (n >= 4 && (n & (n - 1)) == 0)
        cap = n * 2;
    else
        return array;
    return realloc(array, cap * elem_size);
}

void moat_cfg_free(struct moat_cfg *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t l = 0; l < cfg->n_listeners; l++) {
        struct moat_cfg_listener *li = &cfg->listeners[l];
        for (size_t i = 0; i < li->n_certs; i++) {
            free(li->certs[i].cert_file);
            free(li->certs[i].key_file);
        }
        free(li->certs);
        free(li->hsts);
        free(li->client_ca_file);
        free(li->client_crl_file);
        for (size_t i = 0; i < li->n_cert_dirs; i++)
            free(li->cert_dirs[i]);
        free(li->cert_dirs);
    }
    free(cfg->listeners);
    free(cfg->tls_key_log);
    for (size_t p = 0; p < cfg->n_pools; p++) {
        free(cfg->pools[p].name);
        free(cfg->pools[p].backends);
        free(cfg->pools[p].hash_name);
        free(cfg->pools[p].sticky_cookie);
        free(cfg->pools[p].health.path);
        free(cfg->pools[p].health.host);
    }
    free(cfg->pools);
    for (size_t r = 0; r < cfg->n_routes; r++) {
        free(cfg->routes[r].host);
        free(cfg->routes[r].path_prefix);
    }
    free(cfg->routes);
    free(cfg->trusted_proxies);
    free(cfg->state_dir);
    free(cfg->access_log_file);
    free(cfg->user);
    free(cfg->group);
    free(cfg->config_file);
    free(cfg);
}

void moat_cfg_pool_init(struct moat_cfg_pool *pool)
{
    pool->passive_errors = MOAT_CFG_PASSIVE_ERRORS;
    pool->passive_ejection_ms = MOAT_CFG_PASSIVE_EJECTION_MS;
    pool->retry_attempts = 1;
    pool->retry_budget_pct = 20;
    pool->health = (struct moat_cfg_health){.interval_ms = 5000, .timeout_ms = 2000, .rise = 2,
                                            .fall = 3, .expect_lo = 200, .expect_hi = 399};
}

char *moat_cfg_hsts_value(uint64_t max_age, int include_subdomains, int preload, char *err,
                          size_t err_len)
{
    if (max_age > 2147483647u) {
        snprintf(err, err_len, "max_age: at most 2147483647 seconds");
        return NULL;
    }
    if (preload && (!include_subdomains || max_age < MOAT_CFG_HSTS_PRELOAD_MIN_AGE)) {
        snprintf(err, err_len, "preload needs include_subdomains: true and max_age of at least "
                 "%d (a year): the preload list refuses less, and a preloaded name is hard "
                 "to take back", MOAT_CFG_HSTS_PRELOAD_MIN_AGE);
        return NULL;
    }
    char value[96];
    snprintf(value, sizeof(value), "max-age=%llu%s%s", (unsigned long long)max_age,
             include_subdomains ? "; includeSubDomains" : "", preload ? "; preload" : "");
    char *out = strdup(value);
    if (out == NULL)
        snprintf(err, err_len, "out of memory");
    return out;
}
