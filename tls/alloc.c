/* tls/alloc.c: where mbedTLS's memory comes from, on an engine built with MBEDTLS_PLATFORM_MEMORY
 * (the project's). A connection's two record buffers (16 KiB and more each) get pages of their
 * own from mmap: a page nobody wrote costs no memory, as the kernel counts only touched pages
 * (fresh anonymous pages are zero, so calloc has nothing to clear), and freeing returns the pages
 * at once. From glibc's heap the same buffers are zeroed on allocation, so every page is resident
 * even when a connection exchanged a few hundred bytes, and freed ones stay in the heap. An idle
 * connection's buffers then hold only the pages its records touched. Everything smaller comes
 * from calloc. */
#include "tls/internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mbedtls/platform.h>

/* Under AddressSanitizer mbedTLS keeps calloc: ASan checks the bounds of calloc's blocks, not
 * of pages of our own. */
#if defined(__SANITIZE_ADDRESS__)
#define IS_SANITIZED 1 /* gcc */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define IS_SANITIZED 1 /* clang */
#endif
#endif

#if defined(MBEDTLS_PLATFORM_MEMORY) && !defined(IS_SANITIZED)

#define OWN_PAGES_FROM 16384 /* record buffers are 16 KiB plus headers; nothing else is this big */

/* Before each block of our own: its mapping's length, and a tag that tells our blocks from
 * calloc's when freed (a calloc'd block is never 16 bytes past a page boundary with both). */
struct head {
    uint64_t map_len;
    uint64_t tag; /* TAG ^ map_len */
};
#define TAG UINT64_C(0x6d6f6174706167e5)

static size_t page_size;

static void *engine_calloc(size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    size_t len = n * size;
    if (len < OWN_PAGES_FROM)
        return calloc(n, size);
    size_t map_len = (len + sizeof(struct head) + page_size - 1) / page_size * page_size;
    void *p = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    struct head *h = p;
    h->map_len = map_len;
    h->tag = TAG ^ map_len;
    return h + 1;
}

static void engine_free(void *ptr)
{
    if (ptr == NULL)
        return;
    struct head *h = (struct head *)ptr - 1;
    if (((uintptr_t)h & (page_size - 1)) == 0 && h->tag == (TAG ^ h->map_len)) {
        munmap(h, h->map_len);
        return;
    }
    free(ptr);
}

void moat_tls_alloc_init(void)
{
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    mbedtls_platform_set_calloc_free(engine_calloc, engine_free);
}

#else

void moat_tls_alloc_init(void)
{
    /* Debian's library (or a sanitized build) allocates with calloc itself: nothing to set. */
}

#endif
