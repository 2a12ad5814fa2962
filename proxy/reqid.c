/* proxy/reqid.c: request-id generation, one generator per thread (workers never share one). */
#include "proxy/reqid.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

struct gen {
    uint64_t key[2]; /* random per thread and process start */
    uint64_t counter;
    int is_seeded;
};

static _Thread_local struct gen gen;

/* splitmix64's finalizer: a bijection on 64-bit values that spreads every input bit. */
static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void seed(struct gen *g)
{
    uint64_t r[3];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        /* No kernel entropy (very old kernel or seccomp): time, pid and thread still make the
         * keys differ between threads and restarts. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r[0] = mix((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
        r[1] = mix(((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)pthread_self());
        r[2] = mix(r[0] ^ r[1]);
    }
    g->key[0] = r[0];
    g->key[1] = r[1];
    g->counter = r[2];
    g->is_seeded = 1;
}

static void put_hex(char *out, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        out[i] = hex[v & 15];
        v >>= 4;
    }
}

void moat_reqid_generate(char out[MOAT_REQID_LEN + 1])
{
    struct gen *g = &gen;
    if (!g->is_seeded)
        seed(g);
    uint64_t n = g->counter++;
    /* The low half is a bijection of the counter, so one thread never repeats an id. */
    put_hex(out, mix(n ^ g->key[0]));
    put_hex(out + 16, mix(n + g->key[1]));
    out[MOAT_REQID_LEN] = '\0';
}
