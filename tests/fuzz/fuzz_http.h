/* tests/fuzz/fuzz_http.h: what the HTTP harnesses share: feeding a parser in pieces whose sizes
 * come from the input itself, so split points are fuzzed too. */
#ifndef MOAT_FUZZ_HTTP_H
#define MOAT_FUZZ_HTTP_H
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "http/http.h"

/* Feeds data into p as a connection would: in pieces of 1..64 bytes chosen by a cheap generator
 * seeded from the input, resuming after each complete message, until the input is used up or
 * the parser fails. Returns the last status. */
static inline enum moat_http_status fuzz_feed(struct moat_http_parser *p, const uint8_t *data,
                                              size_t size)
{
    uint32_t seed = 2166136261u;
    for (size_t i = 0; i < size && i < 16; i++)
        seed = (seed ^ data[i]) * 16777619u;
    enum moat_http_status st = MOAT_HTTP_MORE;
    size_t off = 0;
    while (off < size) {
        seed = seed * 1103515245u + 12345u;
        size_t piece = 1 + (seed >> 16) % 64;
        if (piece > size - off)
            piece = size - off;
        size_t used = 0;
        st = moat_http_parser_feed(p, (const char *)data + off, piece, &used);
        if (st == MOAT_HTTP_ERROR)
            return st;
        if (used > piece)
            abort(); /* the parser claims bytes it was not given */
        off += used;
        if (st == MOAT_HTTP_DONE || st == MOAT_HTTP_UPGRADE)
            moat_http_parser_next(p);
    }
    return st;
}

#endif
