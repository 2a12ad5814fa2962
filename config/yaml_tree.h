/* config/yaml_tree.h: a YAML document as a small tree of scalars, mappings and sequences, each
 * node marked with where it starts. config/-internal; only yaml_tree.c includes libyaml. */
#ifndef MOAT_CONFIG_YAML_TREE_H
#define MOAT_CONFIG_YAML_TREE_H
#include <stddef.h>

#define MOAT_YAML_MAX_DEPTH 32 /* nesting beyond this is refused: the walkers recurse */

enum moat_yaml_kind {
    MOAT_YAML_SCALAR,
    MOAT_YAML_MAP,
    MOAT_YAML_SEQ,
};

struct moat_yaml_node {
    enum moat_yaml_kind kind;
    unsigned line, column; /* 1-based; columns count characters, not bytes */
    char *text;            /* SCALAR: owned, NUL-terminated; may hold a NUL before len */
    size_t len;            /* SCALAR: bytes in text */
    int is_plain;          /* SCALAR: written without quotes, so "null", "~", "true" are words */
    int is_expanded;       /* SCALAR: text already had its ${VAR}s replaced (by yaml_keys.c) */
    struct moat_yaml_node **kids; /* owned array of owned nodes; MAP: key, value, key, value */
    size_t n_kids;
};

/* Parses one YAML document of len bytes. Returns 0 with *root owned by the caller
 * (moat_yaml_free; NULL when the document is empty), or -1 with *line, *column (1-based) and
 * why set: a syntax error, an alias (refused: "*a" would let a small file expand without
 * bound), a second document, nesting deeper than MOAT_YAML_MAX_DEPTH, or no memory. Anchors
 * and tags are ignored. */
int moat_yaml_parse(const char *buf, size_t len, struct moat_yaml_node **root, unsigned *line,
                    unsigned *column, char *why, size_t why_len);

void moat_yaml_free(struct moat_yaml_node *n); /* NULL: nothing */

#endif
