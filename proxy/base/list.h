/* proxy/base/list.h: intrusive doubly linked lists (the node lives inside its owner). */
#ifndef MOAT_LIST_H
#define MOAT_LIST_H
#include <stddef.h>

struct moat_list {
    struct moat_list *prev;
    struct moat_list *next;
};

/* An empty list (or an unlinked node) points at itself. */
static inline void moat_list_init(struct moat_list *l)
{
    l->prev = l;
    l->next = l;
}

static inline int moat_list_is_empty(const struct moat_list *l)
{
    return l->next == l;
}

static inline void moat_list_push_back(struct moat_list *l, struct moat_list *n)
{
    n->prev = l->prev;
    n->next = l;
    l->prev->next = n;
    l->prev = n;
}

/* Unlinks n; a no-op for an unlinked node. */
static inline void moat_list_remove(struct moat_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    moat_list_init(n);
}

#define moat_list_entry(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

#endif
