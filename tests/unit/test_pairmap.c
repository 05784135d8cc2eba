/* Unit tests of src/server/pairmap.c: ordered keys, replacing, removal with backward shifts
 * (checked against a plain array through long random runs), growth and shrinking, freeing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "server/pairmap.h"

static void test_empty(void **state)
{
    (void)state;
    struct pairmap zero = {0};
    assert_null(pairmap_get(&zero, 1, 2));
    assert_null(pairmap_remove(&zero, 1, 2));
    pairmap_free(&zero, NULL);
    pairmap_free(&zero, NULL); /* twice is harmless */
}

static void test_ordered_keys_and_replace(void **state)
{
    (void)state;
    struct pairmap m;
    pairmap_init(&m);
    int a = 1, b = 2, c = 3;
    assert_int_equal(pairmap_put(&m, 7, 9, &a), 0);
    assert_int_equal(pairmap_put(&m, 9, 7, &b), 0);
    assert_int_equal(m.count, 2);
    assert_ptr_equal(pairmap_get(&m, 7, 9), &a);
    assert_ptr_equal(pairmap_get(&m, 9, 7), &b);
    assert_null(pairmap_get(&m, 7, 7));
    assert_int_equal(pairmap_put(&m, 7, 9, &c), 0); /* replaces */
    assert_int_equal(m.count, 2);
    assert_ptr_equal(pairmap_get(&m, 7, 9), &c);
    assert_ptr_equal(pairmap_remove(&m, 7, 9), &c);
    assert_null(pairmap_remove(&m, 7, 9));
    assert_ptr_equal(pairmap_get(&m, 9, 7), &b);
    /* Extreme ids. */
    assert_int_equal(pairmap_put(&m, UINT32_MAX, 0, &a), 0);
    assert_int_equal(pairmap_put(&m, 0, UINT32_MAX, &c), 0);
    assert_ptr_equal(pairmap_get(&m, UINT32_MAX, 0), &a);
    assert_ptr_equal(pairmap_get(&m, 0, UINT32_MAX), &c);
    pairmap_free(&m, NULL);
    assert_int_equal(m.count, 0);
}

#define SIDE 64 /* keys (a, b) with a, b < SIDE: collisions and long probe runs are certain */

/* Checks every key of the small key space against the reference array. */
static void check_all(const struct pairmap *m, void *const ref[SIDE][SIDE])
{
    size_t n = 0;
    for (uint32_t a = 0; a < SIDE; a++)
        for (uint32_t b = 0; b < SIDE; b++) {
            assert_ptr_equal(pairmap_get(m, a, b), ref[a][b]);
            n += ref[a][b] != NULL;
        }
    assert_int_equal(m->count, n);
}

static void test_random_against_reference(void **state)
{
    (void)state;
    static void *ref[SIDE][SIDE];
    static char values[SIDE][SIDE];
    memset(ref, 0, sizeof(ref));
    struct pairmap m;
    pairmap_init(&m);
    srand(12345);
    for (int round = 0; round < 200000; round++) {
        uint32_t a = (uint32_t)rand() % SIDE, b = (uint32_t)rand() % SIDE;
        /* Phases that fill up and then drain, so the table both grows and shrinks. */
        bool filling = (round / 20000) % 2 == 0;
        if (rand() % 4 != 0 ? filling : !filling) {
            assert_int_equal(pairmap_put(&m, a, b, &values[a][b]), 0);
            ref[a][b] = &values[a][b];
        } else {
            assert_ptr_equal(pairmap_remove(&m, a, b), ref[a][b]);
            ref[a][b] = NULL;
        }
        if (round % 997 == 0)
            check_all(&m, ref);
    }
    check_all(&m, ref);
    pairmap_free(&m, NULL);
}

static void test_shrinks_when_emptied(void **state)
{
    (void)state;
    struct pairmap m;
    pairmap_init(&m);
    static int v[100000];
    for (uint32_t i = 0; i < 100000; i++)
        assert_int_equal(pairmap_put(&m, i, i * 7u, &v[i]), 0);
    size_t big = m.cap;
    assert_true(big >= 100000);
    for (uint32_t i = 0; i < 100000; i++)
        assert_ptr_equal(pairmap_remove(&m, i, i * 7u), &v[i]);
    assert_int_equal(m.count, 0);
    assert_true(m.cap <= 128); /* memory comes back after a storm */
    pairmap_free(&m, NULL);
}

static int freed;

static void count_free(void *value)
{
    (void)value;
    freed++;
}

static void test_free_calls_back_each_value(void **state)
{
    (void)state;
    struct pairmap m;
    pairmap_init(&m);
    static int v[300];
    for (uint32_t i = 0; i < 300; i++)
        assert_int_equal(pairmap_put(&m, i, 1, &v[i]), 0);
    freed = 0;
    pairmap_free(&m, count_free);
    assert_int_equal(freed, 300);
    assert_null(pairmap_get(&m, 0, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_ordered_keys_and_replace),
        cmocka_unit_test(test_random_against_reference),
        cmocka_unit_test(test_shrinks_when_emptied),
        cmocka_unit_test(test_free_calls_back_each_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
