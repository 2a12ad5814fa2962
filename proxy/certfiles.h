/* proxy/certfiles.h: a listener's certificates, from the files and directories its
 * configuration names (or the development certificate when it names none). */
#ifndef MOAT_CERTFILES_H
#define MOAT_CERTFILES_H
#include <stddef.h>

#include "config/config.h"

struct moat_tls_ctx;

/* Loads li's pairs: its certificates in order, then each directory's pairs (NAME.pem with its
 * key, or NAME.crt + NAME.key, in name order), or the development certificate under
 * cfg->state_dir when there are none. Warns about private keys other users can read. 0, or -1
 * with err naming the file. */
int moat_certfiles_load(const struct moat_cfg *cfg, const struct moat_cfg_listener *li,
                        struct moat_tls_ctx **out, char *err, size_t err_len);

/* out[l] for every listener l of cfg (out zeroed, cfg->n_listeners long): listeners with the
 * same files and options share one context. 0, or -1 with err (out holds what was loaded). */
int moat_certfiles_load_all(const struct moat_cfg *cfg, struct moat_tls_ctx **out, char *err,
                            size_t err_len);

#endif
