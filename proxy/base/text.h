/* proxy/base/text.h: a text that grows as it is printed into (the admin listener's answers).
 * Out of memory, it stops growing and says so in failed; the caller then drops it. */
#ifndef MOAT_BASE_TEXT_H
#define MOAT_BASE_TEXT_H
#include <stddef.h>

struct moat_text {
    char *buf;  /* owned; NUL-terminated when len > 0 */
    size_t len, cap;
    int failed; /* out of memory: the rest is dropped */
};

/* Appends printf-style. */
void moat_text_put(struct moat_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
