/* proxy/wire.c: direct writes first, uv_write requests for the rest. */
#include "proxy/wire.h"

#include <stdlib.h>

#define MAX_BUFS 16

/* One uv_write: owns its chunks until the callback, whatever the status. */
struct wire_write {
    uv_write_t req;
    struct moat_wire *wire; /* borrowed: lives in a handle's owner, freed after its close */
    size_t n;
    size_t bytes;
    struct moat_chunk *chunks[MAX_BUFS];
};

static void on_write(uv_write_t *req, int status)
{
    struct wire_write *wr = req->data;
    struct moat_wire *wire = wr->wire;
    for (size_t i = 0; i < wr->n; i++)
        moat_chunk_free(wr->chunks[i]);
    wire->inflight -= wr->bytes;
    free(wr);
    wire->on_done(wire, status);
}

long moat_wire_send(struct moat_wire *wire, struct moat_bufq *q)
{
    long direct = 0;
    if (wire->inflight == 0 && q->head != NULL) {
        uv_buf_t bufs[MAX_BUFS];
        unsigned n = 0;
        for (struct moat_chunk *c = q->head; c != NULL && n < MAX_BUFS; c = c->next)
            bufs[n++] = uv_buf_init(c->data, (unsigned)c->len);
        int r = uv_try_write(wire->stream, bufs, n);
        if (r > 0) {
            moat_bufq_drop(q, (size_t)r);
            direct = r;
        }
        /* r < 0: EAGAIN, or an error that uv_write below reports the usual way. */
    }
    while (q->head != NULL) {
        struct wire_write *wr = malloc(sizeof(*wr));
        if (wr == NULL)
            return UV_ENOMEM;
        wr->wire = wire;
        wr->req.data = wr;
        wr->n = moat_bufq_take(q, wr->chunks, MAX_BUFS);
        wr->bytes = 0;
        uv_buf_t bufs[MAX_BUFS];
        for (size_t i = 0; i < wr->n; i++) {
            bufs[i] = uv_buf_init(wr->chunks[i]->data, (unsigned)wr->chunks[i]->len);
            wr->bytes += wr->chunks[i]->len;
        }
        wire->inflight += wr->bytes;
        int err = uv_write(&wr->req, wire->stream, bufs, (unsigned)wr->n, on_write);
        if (err != 0) {
            wire->inflight -= wr->bytes;
            for (size_t i = 0; i < wr->n; i++)
                moat_chunk_free(wr->chunks[i]);
            free(wr);
            return err;
        }
    }
    return direct;
}
