/* proxy/reqid.h: request ids moat makes for requests that bring no usable X-Request-Id. */
#ifndef MOAT_REQID_H
#define MOAT_REQID_H

#define MOAT_REQID_LEN 32 /* hex digits of a generated id (128 bits) */

/* Writes a new id, MOAT_REQID_LEN lower-case hex digits and a NUL, into out. Thread-safe and
 * lock-free: each thread keeps its own generator, seeded from getrandom(2) on first use. Ids of
 * one thread never repeat (a counter under a bijective mix); ids of different threads and
 * processes differ by 128-bit random keys. */
void moat_reqid_generate(char out[MOAT_REQID_LEN + 1]);

#endif
