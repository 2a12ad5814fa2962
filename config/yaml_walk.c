/* config/yaml_walk.c: walking the YAML node tree for the schema files (yaml_keys.c,
 * yaml_pools.c): typed scalars, mappings checked against their known keys, lists, and every
 * mistake recorded with its FILE:LINE:COLUMN and dotted key path. */
#include "config/yaml_walk.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/env.h"
#include "config/model.h"

void yw_fail(struct walk *w, const struct moat_yaml_node *at, const char *path, const char *fmt,
             ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    moat_cfg_diag_add(w->diag, at->line, at->column, path, "%s", reason);
}

void yw_out_of_memory(struct walk *w, const struct moat_yaml_node *at, const char *path)
{
    yw_fail(w, at, path, "out of memory");
}

/* YAML 1.1's null: an empty plain value ("key:"), "~" or "null". */
int yw_is_null(const struct moat_yaml_node *n)
{
    return n->kind == MOAT_YAML_SCALAR && n->is_plain && !n->is_expanded &&
           (n->len == 0 || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
            strcmp(n->text, "Null") == 0 || strcmp(n->text, "NULL") == 0);
}

const char *yw_kind_name(const struct moat_yaml_node *n)
{
    if (yw_is_null(n))
        return "nothing";
    return n->kind == MOAT_YAML_MAP ? "a mapping" : n->kind == MOAT_YAML_SEQ ? "a list" : "a value";
}

void yw_join_key(char *out, const char *path, const char *key)
{
    snprintf(out, PATH_LEN, "%s%s%s", path, path[0] != '\0' ? "." : "", key);
}

void yw_join_index(char *out, const char *path, size_t i)
{
    snprintf(out, PATH_LEN, "%s[%zu]", path, i);
}

/* A scalar's text with its ${VAR}s replaced, or NULL after saying why it has none. what names
 * the value expected ("a file name"). The text stays owned by the node. */
const char *yw_scalar(struct walk *w, struct moat_yaml_node *n, const char *path, const char *what)
{
    if (n->kind != MOAT_YAML_SCALAR || yw_is_null(n)) {
        yw_fail(w, n, path, "expected %s, got %s", what, yw_kind_name(n));
        return NULL;
    }
    if (n->is_expanded)
        return n->text;
    if (strlen(n->text) != n->len) {
        yw_fail(w, n, path, "expected %s, got a value holding a NUL character", what);
        return NULL;
    }
    char *expanded;
    char why[512];
    if (moat_cfg_env_expand(n->text, &expanded, why, sizeof(why)) != 0) {
        yw_fail(w, n, path, "%s", why);
        return NULL;
    }
    free(n->text);
    n->text = expanded;
    n->len = strlen(expanded);
    n->is_expanded = 1;
    return n->text;
}

/* A non-empty scalar, or NULL after saying why. */
const char *yw_word(struct walk *w, struct moat_yaml_node *n, const char *path, const char *what)
{
    const char *text = yw_scalar(w, n, path, what);
    if (text != NULL && text[0] == '\0') {
        yw_fail(w, n, path, "expected %s, got an empty value", what);
        return NULL;
    }
    return text;
}

/* Replaces *field with a copy of a non-empty scalar. */
long yw_number(struct walk *w, struct moat_yaml_node *v, const char *path, const char *what,
               long lo, long hi)
{
    const char *text = yw_word(w, v, path, what);
    if (text == NULL)
        return -1;
    char *end = NULL;
    long n = strtol(text, &end, 10);
    if (end == text || *end != '\0' || n < lo || n > hi) {
        yw_fail(w, v, path, "expected %s from %ld to %ld, got '%s'", what, lo, hi, text);
        return -1;
    }
    return n;
}

void yw_set_bool(struct walk *w, struct moat_yaml_node *v, const char *path, int *out)
{
    /* YAML 1.1's booleans, which is what a reader of the file expects "on" and "no" to be. */
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    const char *text = yw_word(w, v, path, "true or false");
    for (size_t i = 0; text != NULL && i < 3; i++) {
        if (strcasecmp(text, yes[i]) == 0 || strcasecmp(text, no[i]) == 0) {
            *out = strcasecmp(text, yes[i]) == 0;
            return;
        }
    }
    if (text != NULL)
        yw_fail(w, v, path, "expected true or false, got '%s'", text);
}

void yw_set_string(struct walk *w, struct moat_yaml_node *v, const char *path, const char *what,
                   char **field)
{
    const char *text = yw_word(w, v, path, what);
    if (text == NULL)
        return;
    char *copy = strdup(text);
    if (copy == NULL) {
        yw_out_of_memory(w, v, path);
        return;
    }
    free(*field);
    *field = copy;
}

/* Returns 0, or -1 after saying why v is not an address. */
int yw_set_hostport(struct walk *w, struct moat_yaml_node *v, const char *path, int allow_port_zero,
                    struct moat_cfg_hostport *out)
{
    const char *text = yw_word(w, v, path, "a HOST:PORT address");
    char why[512];
    if (text == NULL)
        return -1;
    if (moat_cfg_hostport_parse(text, allow_port_zero, out, why, sizeof(why)) != 0) {
        yw_fail(w, v, path, "%s", why);
        return -1;
    }
    return 0;
}

void yw_set_tunable(struct walk *w, const struct moat_cfg_tunable *t, struct moat_yaml_node *v,
                    const char *path)
{
    static const char *const what[] = {
        [MOAT_CFG_TUNE_DURATION] = "a duration (e.g. 500ms, 10s, 5m)",
        [MOAT_CFG_TUNE_SIZE] = "a size (e.g. 16k, 1m)",
        [MOAT_CFG_TUNE_COUNT] = "a number",
    };
    const char *text = yw_scalar(w, v, path, what[t->kind]);
    char why[512];
    if (text != NULL && moat_cfg_tunable_set(w->cfg, t, text, why, sizeof(why)) != 0)
        yw_fail(w, v, path, "%s", why);
}

/* The value under key in mapping m, or NULL (also when m is not a mapping). */
struct moat_yaml_node *yw_lookup(const struct moat_yaml_node *m, const char *key)
{
    for (size_t i = 0; m->kind == MOAT_YAML_MAP && i + 1 < m->n_kids; i += 2)
        if (m->kids[i]->kind == MOAT_YAML_SCALAR && strcmp(m->kids[i]->text, key) == 0)
            return m->kids[i + 1];
    return NULL;
}

/* Reports a key that mapping m (at path) must hold and does not. */
void yw_require(struct walk *w, const struct moat_yaml_node *m, const char *path, const char *key,
                const char *example)
{
    if (m->kind != MOAT_YAML_MAP && !yw_is_null(m))
        return; /* already reported as the wrong kind */
    if (yw_lookup(m, key) != NULL)
        return;
    char kpath[PATH_LEN];
    yw_join_key(kpath, path, key);
    yw_fail(w, m, kpath, "required (e.g. %s)", example);
}

/* "a, b or c": the keys a section accepts, for "unknown key" messages. */
static void list_keys(const struct section *s, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    const struct moat_cfg_tunable *t = NULL;
    for (size_t i = 0;; i++) {
        const char *name;
        if (s->tunables != NULL) {
            t = moat_cfg_tunable_next(s->tunables, t);
            name = t != NULL ? t->key : NULL;
        } else {
            name = i < s->n_keys ? s->keys[i].name : NULL;
        }
        if (name == NULL || used >= len)
            return;
        snprintf(out + used, len - used, "%s%s", i > 0 ? ", " : "", name);
        used += strlen(out + used);
    }
}

/* Has the key at kids[i] of m been given before it? Reports the repeat. */
static int is_repeated(struct walk *w, const struct moat_yaml_node *m, size_t i, const char *path)
{
    const struct moat_yaml_node *key = m->kids[i];
    for (size_t j = 0; j < i; j += 2) {
        if (m->kids[j]->kind == MOAT_YAML_SCALAR && strcmp(m->kids[j]->text, key->text) == 0) {
            yw_fail(w, key, path, "given twice (first at line %u)", m->kids[j]->line);
            return 1;
        }
    }
    return 0;
}

/* Applies each key of mapping m as section s says; an empty value ("key:") is an empty mapping. */
void yw_walk_map(struct walk *w, struct moat_yaml_node *m, const char *path,
                 const struct section *s, void *target)
{
    const char *where = path[0] != '\0' ? path : "(top level)";
    if (yw_is_null(m))
        return;
    if (m->kind != MOAT_YAML_MAP) {
        yw_fail(w, m, where, "expected a mapping, got %s", yw_kind_name(m));
        return;
    }
    for (size_t i = 0; i + 1 < m->n_kids; i += 2) {
        struct moat_yaml_node *key = m->kids[i], *value = m->kids[i + 1];
        if (key->kind != MOAT_YAML_SCALAR) {
            yw_fail(w, key, where, "expected a key, got %s", yw_kind_name(key));
            continue;
        }
        char kpath[PATH_LEN];
        yw_join_key(kpath, path, key->text);
        if (is_repeated(w, m, i, kpath))
            continue;
        if (s->tunables != NULL) {
            const struct moat_cfg_tunable *t = moat_cfg_tunable_by_key(s->tunables, key->text);
            if (t != NULL) {
                yw_set_tunable(w, t, value, kpath);
                continue;
            }
        }
        const struct key *k = NULL;
        for (size_t j = 0; j < s->n_keys && k == NULL; j++)
            if (strcmp(s->keys[j].name, key->text) == 0)
                k = &s->keys[j];
        if (k != NULL) {
            k->apply(w, value, kpath, target);
            continue;
        }
        char names[512];
        list_keys(s, names, sizeof(names));
        yw_fail(w, key, kpath, "unknown key (expected one of: %s)", names);
    }
}

/* The items of a list: NULL with *n 0 for an empty value, NULL after a report for another kind. */
struct moat_yaml_node **yw_items(struct walk *w, struct moat_yaml_node *v, const char *path,
                                 const char *what, size_t *n)
{
    *n = 0;
    if (yw_is_null(v))
        return NULL;
    if (v->kind != MOAT_YAML_SEQ) {
        yw_fail(w, v, path, "expected a list of %s, got %s", what, yw_kind_name(v));
        return NULL;
    }
    *n = v->n_kids;
    return v->kids;
}

/* The items of a list and a zeroed array of as many elem_size elements for them (owned by the
 * caller), or NULL with *n 0: an empty list, or one reported as the wrong kind or as too big
 * for memory. */
void *yw_items_array(struct walk *w, struct moat_yaml_node *v, const char *path, const char *what,
                     size_t elem_size, struct moat_yaml_node ***item, size_t *n)
{
    *item = yw_items(w, v, path, what, n);
    if (*n == 0)
        return NULL;
    void *array = calloc(*n, elem_size);
    if (array == NULL) {
        yw_out_of_memory(w, v, path);
        *n = 0;
    }
    return array;
}

