/* proxy/dns.h: backend names, resolved with c-ares and asked again while moat runs. Each name
 * has one set of addresses (every A and AAAA record), sorted, asked again after min(its TTL,
 * resolver.refresh), never under a second. A failing DNS server changes nothing (the last
 * answer stays, asked again sooner); a name that stops existing keeps its addresses for
 * resolver.hold, then has none. Runs on the control loop: configuration snapshots read the
 * sets when they are built, and a changed set is told to the owner, who rebuilds the
 * snapshot's backends. */
#ifndef MOAT_DNS_H
#define MOAT_DNS_H
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "config/config.h"

#define MOAT_DNS_MAX_ADDRS 64 /* per name: more records are left out */

struct moat_dns;

/* A resolver on loop (the control loop) with r's servers (read once: they do not reload).
 * on_change(arg) runs on loop after a name's addresses changed, once for all the names that
 * changed in one loop turn. NULL with err set. */
struct moat_dns *moat_dns_new(uv_loop_t *loop, const struct moat_cfg_resolver *r,
                              void (*on_change)(void *arg), void *arg, char *err,
                              size_t err_len);

/* From now on the names cfg's backends use (IP addresses aside) are kept fresh, with cfg's
 * refresh and hold: a name not known yet is resolved now, blocking (a few seconds at most when
 * the DNS server does not answer); a name cfg no longer uses is forgotten. */
void moat_dns_track(struct moat_dns *d, const struct moat_cfg *cfg);

/* The refreshing starts (once the process serves). */
void moat_dns_start(struct moat_dns *d);

/* host's addresses as last resolved, each with port, at most cap. Returns how many; with 0,
 * *why says why ("no such name", "timeout", ...). */
size_t moat_dns_addresses(const struct moat_dns *d, const char *host, uint16_t port,
                          struct sockaddr_storage *out, size_t cap, const char **why);

/* The Prometheus lines of every name: moat_dns_addresses{name} (how many it has now) and
 * moat_dns_lookups_total{name,result}. Control loop only (as every other call here). */
struct moat_text;
void moat_dns_render(const struct moat_dns *d, struct moat_text *t);

/* Stops asking and closes the handles (the loop runs their close callbacks); then
 * moat_dns_free() once the loop has finished. */
void moat_dns_stop(struct moat_dns *d);
void moat_dns_free(struct moat_dns *d); /* NULL: nothing */

#endif
