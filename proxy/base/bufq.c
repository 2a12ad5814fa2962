/* proxy/base/bufq.c: chunk queues; see bufq.h. */
#include "proxy/base/bufq.h"

#include <stdlib.h>
#include <string.h>

void moat_bufq_init(struct moat_bufq *q)
{
    q->head = NULL;
    q->tail = NULL;
    q->bytes = 0;
}

static struct moat_chunk *chunk_new(size_t min_cap)
{
    size_t cap = min_cap < MOAT_CHUNK_MIN ? MOAT_CHUNK_MIN : min_cap;
    struct moat_chunk *c = malloc(sizeof(*c) + cap);
    if (c == NULL)
        return NULL;
    c->next = NULL;
    c->len = 0;
    c->cap = cap;
    return c;
}

int moat_bufq_append(struct moat_bufq *q, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    struct moat_chunk *t = q->tail;
    size_t room = t != NULL ? t->cap - t->len : 0;
    if (room >= len) {
        memcpy(t->data + t->len, data, len);
        t->len += len;
        q->bytes += len;
        return 0;
    }
    /* Never split an append across the tail's remainder: a TLS record stays in one chunk. */
    struct moat_chunk *c = chunk_new(len);
    if (c == NULL)
        return -1;
    memcpy(c->data, data, len);
    c->len = len;
    if (t != NULL)
        t->next = c;
    else
        q->head = c;
    q->tail = c;
    q->bytes += len;
    return 0;
}

size_t moat_bufq_take(struct moat_bufq *q, struct moat_chunk **out, size_t max_chunks)
{
    size_t n = 0;
    while (n < max_chunks && q->head != NULL) {
        struct moat_chunk *c = q->head;
        q->head = c->next;
        c->next = NULL;
        q->bytes -= c->len;
        out[n++] = c;
    }
    if (q->head == NULL)
        q->tail = NULL;
    return n;
}

void moat_bufq_drop(struct moat_bufq *q, size_t n)
{
    while (n > 0 && q->head != NULL) {
        struct moat_chunk *c = q->head;
        if (n < c->len) {
            /* Rare (the socket took part of a chunk): move the tail to the front. */
            memmove(c->data, c->data + n, c->len - n);
            c->len -= n;
            q->bytes -= n;
            return;
        }
        n -= c->len;
        q->bytes -= c->len;
        q->head = c->next;
        free(c);
    }
    if (q->head == NULL)
        q->tail = NULL;
}

void moat_bufq_clear(struct moat_bufq *q)
{
    struct moat_chunk *c = q->head;
    while (c != NULL) {
        struct moat_chunk *next = c->next;
        free(c);
        c = next;
    }
    moat_bufq_init(q);
}

void moat_chunk_free(struct moat_chunk *c)
{
    free(c);
}
