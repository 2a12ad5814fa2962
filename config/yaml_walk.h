/* config/yaml_walk.h: how the configuration file's schema is walked, shared by yaml_keys.c (the
 * top level, listeners, routes, logging, admin) and yaml_pools.c (the pools). config/-internal. */
#ifndef MOAT_CONFIG_YAML_WALK_H
#define MOAT_CONFIG_YAML_WALK_H
#include <stddef.h>

#include "config/config.h"
#include "config/diag.h"
#include "config/yaml_tree.h"

#define PATH_LEN 256 /* "listeners[0].tls.certificates[1].cert"; longer paths are cut */

struct walk {
    struct moat_cfg *cfg;                /* borrowed: being filled */
    struct moat_cfg_diag *diag;          /* borrowed */
    struct moat_yaml_node *pools;        /* borrowed: the "pools" value, or NULL */
    struct moat_yaml_node *routes;       /* borrowed: resolved once every pool is known */
    struct moat_yaml_node *default_pool; /* borrowed: likewise */
};

/* Sets what the key at path says from its value v; target is the struct being filled. */
typedef void (*apply_cb)(struct walk *w, struct moat_yaml_node *v, const char *path, void *target);

struct key {
    const char *name;
    apply_cb apply;
};

/* The keys a mapping may hold: a table, or the tunables of a settings.c section. */
struct section {
    const struct key *keys;
    size_t n_keys;
    const char *tunables; /* "timeouts", "limits": keys come from moat_cfg_tunable_by_key() */
};

__attribute__((format(printf, 4, 5))) void yw_fail(struct walk *w, const struct moat_yaml_node *at,
                                                   const char *path, const char *fmt, ...);
void yw_out_of_memory(struct walk *w, const struct moat_yaml_node *at, const char *path);
int yw_is_null(const struct moat_yaml_node *n);
const char *yw_kind_name(const struct moat_yaml_node *n);
void yw_join_key(char *out, const char *path, const char *key);
void yw_join_index(char *out, const char *path, size_t i);
const char *yw_scalar(struct walk *w, struct moat_yaml_node *n, const char *path, const char *what);
const char *yw_word(struct walk *w, struct moat_yaml_node *n, const char *path, const char *what);
/* A timeout, a limit or the workers' count, parsed and range-checked as settings.c says. */
struct moat_cfg_tunable;
void yw_set_tunable(struct walk *w, const struct moat_cfg_tunable *t, struct moat_yaml_node *v,
                    const char *path);
/* A whole number from lo to hi (lo >= 0), what naming it in the message ("a number", "a
 * port"), or -1 after saying why. */
long yw_number(struct walk *w, struct moat_yaml_node *v, const char *path, const char *what,
               long lo, long hi);
/* true/yes/on or false/no/off into *out (1 or 0), or nothing after saying why. */
void yw_set_bool(struct walk *w, struct moat_yaml_node *v, const char *path, int *out);
void yw_set_string(struct walk *w, struct moat_yaml_node *v, const char *path, const char *what,
                   char **field);
int yw_set_hostport(struct walk *w, struct moat_yaml_node *v, const char *path, int allow_port_zero,
                    struct moat_cfg_hostport *out);
struct moat_yaml_node *yw_lookup(const struct moat_yaml_node *m, const char *key);
void yw_require(struct walk *w, const struct moat_yaml_node *m, const char *path, const char *key,
                const char *example);
void yw_walk_map(struct walk *w, struct moat_yaml_node *m, const char *path,
                 const struct section *s, void *target);
struct moat_yaml_node **yw_items(struct walk *w, struct moat_yaml_node *v, const char *path,
                                 const char *what, size_t *n);
void *yw_items_array(struct walk *w, struct moat_yaml_node *v, const char *path, const char *what,
                     size_t elem_size, struct moat_yaml_node ***item, size_t *n);

/* pools: {NAME: {backends, balance, hash_key, sticky, passive, retries, health_check}} */
void yw_apply_pools(struct walk *w, struct moat_yaml_node *v, const char *path, void *target);
void yw_apply_resolver(struct walk *w, struct moat_yaml_node *v, const char *path, void *target);

#endif
