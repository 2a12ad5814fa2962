/* tests/unit/base/test_bufq.c: chunk queues and lists of proxy/base. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/base/bufq.h"
#include "proxy/base/list.h"

/* Takes every chunk off q and returns their bytes concatenated (caller frees). */
static char *drain_all(struct moat_bufq *q, size_t *len)
{
    char *out = malloc(q->bytes + 1);
    size_t o = 0;
    struct moat_chunk *cs[4];
    size_t n;
    while ((n = moat_bufq_take(q, cs, 4)) > 0) {
        for (size_t i = 0; i < n; i++) {
            memcpy(out + o, cs[i]->data, cs[i]->len);
            o += cs[i]->len;
            moat_chunk_free(cs[i]);
        }
    }
    *len = o;
    return out;
}

static void test_append_take_keeps_order_and_count(void **state)
{
    (void)state;
    struct moat_bufq q;
    moat_bufq_init(&q);
    /* Mixed sizes: small ones coalesce, a big one gets its own chunk. */
    size_t sizes[] = {1, 100, 5000, 40000, 3, MOAT_CHUNK_MIN, 7};
    size_t total = 0;
    unsigned char v = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char *b = malloc(sizes[i]);
        for (size_t j = 0; j < sizes[i]; j++)
            b[j] = (char)v++;
        assert_int_equal(moat_bufq_append(&q, b, sizes[i]), 0);
        total += sizes[i];
        free(b);
        assert_int_equal(q.bytes, total);
    }
    size_t len;
    char *all = drain_all(&q, &len);
    assert_int_equal(len, total);
    for (size_t j = 0; j < len; j++)
        assert_int_equal((unsigned char)all[j], (unsigned char)j);
    assert_null(q.head);
    assert_null(q.tail);
    assert_int_equal(q.bytes, 0);
    free(all);
}

static void test_record_never_split(void **state)
{
    (void)state;
    struct moat_bufq q;
    moat_bufq_init(&q);
    char small[100] = {0};
    char rec[16600]; /* more than the tail has left after 100 bytes */
    memset(rec, 'r', sizeof(rec));
    assert_int_equal(moat_bufq_append(&q, small, sizeof(small)), 0);
    assert_int_equal(moat_bufq_append(&q, rec, sizeof(rec)), 0);
    /* The record does not fit the tail's remainder whole, so it starts a chunk of its own. */
    assert_non_null(q.head->next);
    assert_int_equal(q.head->next->len, sizeof(rec));
    moat_bufq_clear(&q);
    assert_int_equal(q.bytes, 0);
    assert_null(q.head);
}

static void test_empty_append_and_take(void **state)
{
    (void)state;
    struct moat_bufq q;
    moat_bufq_init(&q);
    assert_int_equal(moat_bufq_append(&q, "x", 0), 0);
    assert_null(q.head);
    struct moat_chunk *c[1];
    assert_int_equal(moat_bufq_take(&q, c, 1), 0);
    moat_chunk_free(NULL);
}

struct item {
    struct moat_list node;
    int v;
};

/* What a partial direct write leaves: the unsent bytes, in order, whatever the chunk bounds. */
static void test_drop_front_bytes(void **state)
{
    (void)state;
    struct moat_bufq q;
    moat_bufq_init(&q);
    static char data[3 * MOAT_CHUNK_MIN];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)(i % 251);
    for (size_t off = 0; off < sizeof(data); off += 1000) { /* big enough for several chunks */
        size_t n = sizeof(data) - off < 1000 ? sizeof(data) - off : 1000;
        assert_int_equal(moat_bufq_append(&q, data + off, n), 0);
    }
    assert_true(q.head != q.tail);
    size_t dropped = MOAT_CHUNK_MIN + 5; /* a whole chunk and part of the next */
    moat_bufq_drop(&q, dropped);
    assert_int_equal(q.bytes, sizeof(data) - dropped);
    size_t at = dropped;
    for (struct moat_chunk *c = q.head; c != NULL; c = c->next) {
        assert_memory_equal(c->data, data + at, c->len);
        at += c->len;
    }
    assert_int_equal(at, sizeof(data));
    moat_bufq_drop(&q, q.bytes);
    assert_null(q.head);
    assert_null(q.tail);
    assert_int_equal(q.bytes, 0);
    assert_int_equal(moat_bufq_append(&q, "x", 1), 0); /* still usable */
    assert_ptr_equal(q.head, q.tail);
    moat_bufq_clear(&q);
}

static void test_list(void **state)
{
    (void)state;
    struct moat_list l;
    moat_list_init(&l);
    assert_true(moat_list_is_empty(&l));
    struct item a = {.v = 1}, b = {.v = 2}, c = {.v = 3};
    moat_list_push_back(&l, &a.node);
    moat_list_push_back(&l, &b.node);
    moat_list_push_back(&l, &c.node);
    moat_list_remove(&b.node);
    moat_list_remove(&b.node); /* unlinked: a no-op */
    int seen[3], n = 0;
    for (struct moat_list *p = l.next; p != &l; p = p->next)
        seen[n++] = moat_list_entry(p, struct item, node)->v;
    assert_int_equal(n, 2);
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_take_keeps_order_and_count),
        cmocka_unit_test(test_record_never_split),
        cmocka_unit_test(test_empty_append_and_take),
        cmocka_unit_test(test_drop_front_bytes),
        cmocka_unit_test(test_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
