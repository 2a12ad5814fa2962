/* proxy/base/bufq.c: chunk queues; see bufq.h. */
#include "proxy/base/bufq.h"

#include <stdlib.h>
#include <string.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MOAT_ASAN 1
#endif
#elif defined(__SANITIZE_ADDRESS__)
#define MOAT_ASAN 1
#endif
#ifdef MOAT_ASAN
#include <sanitizer/asan_interface.h>
/* A pooled chunk's bytes stay poisoned, so ASan still catches a use after moat_chunk_free(). */
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Spare minimum-size chunks of this thread (each worker is one thread, so this is the worker's
 * buffer pool). Every keep-alive request and response passes through one such chunk on each
 * side and frees it once the socket took the bytes: taking it from here instead of malloc saves
 * two 16 KiB allocations per exchange and keeps glibc from consolidating its free lists. */
static _Thread_local struct {
    struct moat_chunk *head;
    unsigned n;
} spare;

void moat_bufq_init(struct moat_bufq *q)
{
    q->head = NULL;
    q->tail = NULL;
    q->bytes = 0;
}

static struct moat_chunk *chunk_new(size_t min_cap)
{
    size_t cap = min_cap < MOAT_CHUNK_MIN ? MOAT_CHUNK_MIN : min_cap;
    struct moat_chunk *c;
    if (cap == MOAT_CHUNK_MIN && spare.head != NULL) {
        c = spare.head;
        spare.head = c->next;
        spare.n--;
        UNPOISON(c->data, cap);
    } else {
        c = malloc(sizeof(*c) + cap);
        if (c == NULL)
            return NULL;
    }
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
        moat_chunk_free(c);
    }
    if (q->head == NULL)
        q->tail = NULL;
}

void moat_bufq_clear(struct moat_bufq *q)
{
    struct moat_chunk *c = q->head;
    while (c != NULL) {
        struct moat_chunk *next = c->next;
        moat_chunk_free(c);
        c = next;
    }
    moat_bufq_init(q);
}

void moat_chunk_free(struct moat_chunk *c)
{
    if (c == NULL)
        return;
    if (c->cap != MOAT_CHUNK_MIN || spare.n >= MOAT_CHUNK_SPARE_MAX) {
        free(c);
        return;
    }
    POISON(c->data, c->cap);
    c->next = spare.head;
    spare.head = c;
    spare.n++;
}

unsigned moat_chunk_spares(void)
{
    return spare.n;
}

void moat_chunk_spares_free(void)
{
    while (spare.head != NULL) {
        struct moat_chunk *c = spare.head;
        spare.head = c->next;
        UNPOISON(c->data, c->cap);
        free(c);
    }
    spare.n = 0;
}
