/* bench/pick-cost.c: what choosing a backend costs, per algorithm and pool size, in ns per
 * pick on one core (proxy/balance.c's moat_pick(), as a worker calls it per request; for hash,
 * moat_pick_req_make() on a request head too). Built and run by hand:
 *   cc -O2 -I. -o /tmp/pick-cost bench/pick-cost.c proxy/balance.c build/http/libmoat_http.a \
 *      $(pkg-config --libs libllhttp) -lpthread -lm && /tmp/pick-cost
 * Prints `name value unit` lines. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "proxy/balance.h"

#define PICKS 2000000

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void measure(const char *alg_name, enum moat_cfg_balance alg, size_t n)
{
    struct moat_target *t[64];
    unsigned w[64];
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(8080);
        a->sin_addr.s_addr = htonl(0x0a000001u + (uint32_t)i);
        char text[32];
        snprintf(text, sizeof(text), "10.0.0.%zu:8080", i + 1);
        t[i] = moat_target_get(alg_name, &ss, text);
        w[i] = 1 + (unsigned)(i % 3);
    }
    struct moat_balance_pool pool = {.targets = t, .weights = w, .first = 0, .n = n, .alg = alg,
                                     .hash_by = MOAT_CFG_HASH_HEADER, .hash_name = "X-User"};
    struct moat_picker *p = moat_picker_new(1, n);
    char value[32];
    struct moat_http_field f = {"X-User", 6, value, 0};
    struct moat_http_head h = {.fields = &f, .n_fields = 1, .target = "/", .target_len = 1};
    volatile size_t sink = 0; /* so the picks are not optimised away */
    double t0 = now_ns();
    for (int i = 0; i < PICKS; i++) {
        struct moat_pick_req req = {0};
        if (alg == MOAT_CFG_BALANCE_HASH) {
            f.value_len = (size_t)snprintf(value, sizeof(value), "user-%d", i & 4095);
            moat_pick_req_make(&pool, &h, "10.1.2.3", &req);
        }
        size_t m = moat_pick(p, 0, &pool, &req, SIZE_MAX, 0);
        moat_picker_started(p, 0, m);
        moat_picker_ended(p, 0, m);
        sink += m;
    }
    double ns = (now_ns() - t0) / PICKS;
    printf("pick_%s_%zu_backends %.1f ns\n", alg_name, n, ns);
    moat_picker_free(p);
    for (size_t i = 0; i < n; i++)
        moat_target_unref(t[i]);
}

int main(void)
{
    static const struct {
        const char *name;
        enum moat_cfg_balance alg;
    } algs[] = {{"round_robin", MOAT_CFG_BALANCE_ROUND_ROBIN},
                {"random", MOAT_CFG_BALANCE_RANDOM},
                {"least_request", MOAT_CFG_BALANCE_LEAST_REQUEST},
                {"hash", MOAT_CFG_BALANCE_HASH}};
    static const size_t sizes[] = {1, 4, 16, 64};
    for (size_t a = 0; a < sizeof(algs) / sizeof(algs[0]); a++)
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
            measure(algs[a].name, algs[a].alg, sizes[s]);
    return 0;
}
