/* config/yaml_tree.c: libyaml's event stream folded into a moat_yaml_node tree. The only file
 * that includes libyaml; what is above it sees plain nodes with marks. */
#include "config/yaml_tree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

/* The tree under construction: the open mappings and sequences, innermost last. */
struct builder {
    struct moat_yaml_node *root;                          /* owned */
    struct moat_yaml_node *open[MOAT_YAML_MAX_DEPTH + 1]; /* borrowed from root's tree */
    size_t depth;
    size_t n_docs;
};

void moat_yaml_free(struct moat_yaml_node *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->n_kids; i++)
        moat_yaml_free(n->kids[i]);
    free(n->kids);
    free(n->text);
    free(n);
}

/* Hangs n under the innermost open collection (or makes it the root). Takes n either way. */
static int attach(struct builder *b, struct moat_yaml_node *n)
{
    if (b->depth == 0) {
        moat_yaml_free(b->root); /* only reachable with a single document: root is NULL */
        b->root = n;
        return 0;
    }
    struct moat_yaml_node *parent = b->open[b->depth - 1];
    /* Capacity doubles from 4: grow when n_kids is 0, 4, 8, 16, ... */
    size_t n_kids = parent->n_kids;
    if (n_kids == 0 || (n_kids >= 4 && (n_kids & (n_kids - 1)) == 0)) {
        struct moat_yaml_node **grown =
            realloc(parent->kids, (n_kids == 0 ? 4 : n_kids * 2) * sizeof(*grown));
        if (grown == NULL) {
            moat_yaml_free(n);
            return -1;
        }
        parent->kids = grown;
    }
    parent->kids[parent->n_kids++] = n;
    return 0;
}

static struct moat_yaml_node *node_new(enum moat_yaml_kind kind, yaml_mark_t mark)
{
    struct moat_yaml_node *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return NULL;
    n->kind = kind;
    n->line = (unsigned)mark.line + 1;
    n->column = (unsigned)mark.column + 1;
    return n;
}

static int add_scalar(struct builder *b, const yaml_event_t *ev)
{
    struct moat_yaml_node *n = node_new(MOAT_YAML_SCALAR, ev->start_mark);
    if (n == NULL)
        return -1;
    n->len = ev->data.scalar.length;
    n->text = malloc(n->len + 1);
    if (n->text == NULL) {
        free(n);
        return -1;
    }
    memcpy(n->text, ev->data.scalar.value, n->len);
    n->text[n->len] = '\0';
    n->is_plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    return attach(b, n);
}

/* 1-based line and column of a byte offset: libyaml's reader errors (bad UTF-8) carry only
 * the offset. Columns count bytes here, which is what is known about a broken character. */
static void offset_mark(const char *buf, size_t len, size_t offset, unsigned *line,
                        unsigned *column)
{
    *line = 1;
    *column = 1;
    for (size_t i = 0; i < offset && i < len; i++) {
        if (buf[i] == '\n') {
            ++*line;
            *column = 1;
        } else {
            ++*column;
        }
    }
}

static void syntax_error(const yaml_parser_t *p, const char *buf, size_t len, unsigned *line,
                         unsigned *column, char *why, size_t why_len)
{
    if (p->error == YAML_MEMORY_ERROR) {
        *line = *column = 1;
        snprintf(why, why_len, "out of memory");
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        offset_mark(buf, len, p->problem_offset, line, column);
        snprintf(why, why_len, "%s", p->problem != NULL ? p->problem : "unreadable input");
        return;
    }
    *line = (unsigned)p->problem_mark.line + 1;
    *column = (unsigned)p->problem_mark.column + 1;
    if (p->context != NULL)
        snprintf(why, why_len, "%s (%s at line %u column %u)",
                 p->problem != NULL ? p->problem : "invalid YAML", p->context,
                 (unsigned)p->context_mark.line + 1, (unsigned)p->context_mark.column + 1);
    else
        snprintf(why, why_len, "%s", p->problem != NULL ? p->problem : "invalid YAML");
}

/* Applies one event. Returns 1 at the stream's end, 0 to go on, -1 with the error set. */
static int apply_event(struct builder *b, const yaml_event_t *ev, unsigned *line,
                       unsigned *column, char *why, size_t why_len)
{
    struct moat_yaml_node *n;
    *line = (unsigned)ev->start_mark.line + 1;
    *column = (unsigned)ev->start_mark.column + 1;
    switch (ev->type) {
    case YAML_STREAM_END_EVENT:
        return 1;
    case YAML_DOCUMENT_START_EVENT:
        if (++b->n_docs > 1) {
            snprintf(why, why_len, "a second document; a configuration file holds one");
            return -1;
        }
        return 0;
    case YAML_ALIAS_EVENT:
        snprintf(why, why_len, "alias '*%s': aliases are not supported; repeat the value",
                 (const char *)ev->data.alias.anchor);
        return -1;
    case YAML_SCALAR_EVENT:
        if (add_scalar(b, ev) == 0)
            return 0;
        snprintf(why, why_len, "out of memory");
        return -1;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        if (b->depth >= MOAT_YAML_MAX_DEPTH) {
            snprintf(why, why_len, "nested deeper than %d levels", MOAT_YAML_MAX_DEPTH);
            return -1;
        }
        n = node_new(ev->type == YAML_MAPPING_START_EVENT ? MOAT_YAML_MAP : MOAT_YAML_SEQ,
                     ev->start_mark);
        if (n == NULL || attach(b, n) != 0) {
            snprintf(why, why_len, "out of memory");
            return -1;
        }
        b->open[b->depth++] = n; /* attached: the tree owns it */
        return 0;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        b->depth--; /* libyaml balances starts and ends */
        return 0;
    default: /* stream start, document end, no event */
        return 0;
    }
}

int moat_yaml_parse(const char *buf, size_t len, struct moat_yaml_node **root, unsigned *line,
                    unsigned *column, char *why, size_t why_len)
{
    struct builder b = {0};
    yaml_parser_t parser;
    *root = NULL;
    if (!yaml_parser_initialize(&parser)) {
        *line = *column = 1;
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    int rc = 0;
    while (rc == 0) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            syntax_error(&parser, buf, len, line, column, why, why_len);
            rc = -1;
            break;
        }
        rc = apply_event(&b, &ev, line, column, why, why_len);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    if (rc < 0) {
        moat_yaml_free(b.root);
        return -1;
    }
    *root = b.root;
    return 0;
}
