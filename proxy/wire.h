/* proxy/wire.h: writing a chunk queue to a libuv stream. What the socket takes at once is
 * written directly with uv_try_write(); only the rest becomes uv_write requests. libuv re-arms
 * epoll (an epoll_ctl) after every completed uv_write and runs its callback a loop phase later,
 * so the direct path saves a syscall and a callback for nearly every request and response of a
 * keep-alive exchange. */
#ifndef MOAT_WIRE_H
#define MOAT_WIRE_H
#include <stddef.h>
#include <uv.h>

#include "proxy/base/bufq.h"

struct moat_wire {
    uv_stream_t *stream; /* borrowed: the owner's handle */
    size_t inflight;     /* bytes in uv_write requests whose callback has not run */
    /* Runs after each uv_write request completes (inflight already lowered), with its status;
     * UV_ECANCELED when the stream was closed first. Never runs for direct writes. */
    void (*on_done)(struct moat_wire *wire, int status);
};

/* The struct a wire is embedded in, from the wire (for on_done). */
#define moat_wire_owner(wire, type, member) ((type *)((char *)(wire) - offsetof(type, member)))

/* Sends everything in q (the chunks leave q). Returns the bytes written directly (>= 0) or a
 * negative libuv error from uv_write (the chunks not handed over are freed). */
long moat_wire_send(struct moat_wire *wire, struct moat_bufq *q);

#endif
