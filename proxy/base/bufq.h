/* proxy/base/bufq.h: a queue of heap byte chunks, the unit that moat hands to uv_write. Appends
 * copy; whole chunks are taken off the front for writing and freed by whoever took them. */
#ifndef MOAT_BUFQ_H
#define MOAT_BUFQ_H
#include <stddef.h>

/* One heap block of bytes; data[0..len) is valid. */
struct moat_chunk {
    struct moat_chunk *next; /* owned by the queue while queued, by the taker after */
    size_t len;              /* bytes used */
    size_t cap;              /* bytes allocated in data */
    char data[];
};

struct moat_bufq {
    struct moat_chunk *head; /* owned */
    struct moat_chunk *tail; /* borrowed: last of the list */
    size_t bytes;            /* sum of len over the list */
};

/* Chunks are at least this big, so small appends (chunk heads, TLS records) coalesce. */
#define MOAT_CHUNK_MIN 16640

void moat_bufq_init(struct moat_bufq *q);

/* Copies len bytes to the tail. Returns 0 or -1 (ENOMEM: nothing appended). */
int moat_bufq_append(struct moat_bufq *q, const void *data, size_t len);

/* Detaches up to max_chunks chunks from the front into out[] and returns how many; the caller
 * owns them now and frees each with moat_chunk_free(). q->bytes drops by their lengths. */
size_t moat_bufq_take(struct moat_bufq *q, struct moat_chunk **out, size_t max_chunks);

/* Drops n bytes (at most q->bytes) from the front: whole chunks are freed, a partly sent one
 * keeps its unsent tail. */
void moat_bufq_drop(struct moat_bufq *q, size_t n);

/* Frees every queued chunk; the queue is empty and reusable after. */
void moat_bufq_clear(struct moat_bufq *q);

void moat_chunk_free(struct moat_chunk *c); /* NULL: nothing */

#endif
