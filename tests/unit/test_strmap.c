/* Unit tests of src/common/strmap.c: put/get, replacing, growth, length-bounded look-ups,
 * missing keys and freeing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strmap.h"

static void *get(const struct strmap *m, const char *key)
{
    return strmap_get(m, key, strlen(key));
}

static void test_empty(void **state)
{
    (void)state;
    struct strmap zero = {0}; /* zero-initialised works without strmap_init */
    assert_null(get(&zero, "alice"));
    assert_null(strmap_get(&zero, "", 0));
    int v = 1;
    assert_int_equal(strmap_put(&zero, "alice", &v), 0);
    assert_ptr_equal(get(&zero, "alice"), &v);
    strmap_free(&zero);

    struct strmap m;
    memset(&m, 0xa5, sizeof m);
    strmap_init(&m);
    assert_int_equal(m.count, 0);
    assert_null(get(&m, "alice"));
    strmap_free(&m);
    strmap_free(&m); /* freeing an empty map twice is harmless */
}

static void test_put_get(void **state)
{
    (void)state;
    struct strmap m;
    strmap_init(&m);
    int a = 1, b = 2, c = 3;
    assert_int_equal(strmap_put(&m, "alice", &a), 0);
    assert_int_equal(strmap_put(&m, "bob", &b), 0);
    assert_int_equal(strmap_put(&m, "carol", &c), 0);
    assert_int_equal(m.count, 3);
    assert_ptr_equal(get(&m, "alice"), &a);
    assert_ptr_equal(get(&m, "bob"), &b);
    assert_ptr_equal(get(&m, "carol"), &c);
    /* Look-ups copy nothing: a different buffer with the same bytes finds the entry. */
    char copy[] = "bob";
    assert_ptr_equal(get(&m, copy), &b);
    strmap_free(&m);
}

static void test_replace(void **state)
{
    (void)state;
    struct strmap m;
    strmap_init(&m);
    int a = 1, b = 2, c = 3;
    assert_int_equal(strmap_put(&m, "alice", &a), 0);
    assert_int_equal(strmap_put(&m, "bob", &b), 0);
    assert_int_equal(strmap_put(&m, "alice", &c), 0);
    assert_int_equal(m.count, 2);
    assert_ptr_equal(get(&m, "alice"), &c);
    assert_ptr_equal(get(&m, "bob"), &b);
    /* Replacing through another buffer holding the same key. */
    static const char other[] = "bob";
    assert_int_equal(strmap_put(&m, other, &a), 0);
    assert_int_equal(m.count, 2);
    assert_ptr_equal(get(&m, "bob"), &a);
    /* A NULL value is stored too (and reads back as NULL). */
    assert_int_equal(strmap_put(&m, "alice", NULL), 0);
    assert_int_equal(m.count, 2);
    assert_null(get(&m, "alice"));
    strmap_free(&m);
}

static void test_lengths(void **state)
{
    (void)state;
    struct strmap m;
    strmap_init(&m);
    int a = 1, ab = 2, e = 3;
    assert_int_equal(strmap_put(&m, "alice", &a), 0);
    assert_int_equal(strmap_put(&m, "alicebob", &ab), 0);
    assert_int_equal(strmap_put(&m, "", &e), 0);
    /* Keys as slices of a frame, not NUL-terminated. */
    const char *frame = "MSG alicebob hi alice";
    assert_ptr_equal(strmap_get(&m, frame + 4, 5), &a);
    assert_ptr_equal(strmap_get(&m, frame + 4, 8), &ab);
    assert_ptr_equal(strmap_get(&m, frame + 16, 5), &a);
    assert_null(strmap_get(&m, frame + 4, 4));  /* "alic" */
    assert_null(strmap_get(&m, frame + 4, 6));  /* "aliceb" */
    assert_null(strmap_get(&m, frame + 4, 9));  /* "alicebob " */
    assert_null(strmap_get(&m, frame + 16, 6)); /* "alice\0" */
    assert_ptr_equal(strmap_get(&m, frame, 0), &e);
    assert_ptr_equal(strmap_get(&m, "anything", 0), &e);
    strmap_free(&m);
}

static void test_missing(void **state)
{
    (void)state;
    struct strmap m;
    strmap_init(&m);
    int a = 1;
    assert_int_equal(strmap_put(&m, "alice", &a), 0);
    assert_null(get(&m, "Alice"));
    assert_null(get(&m, "alic"));
    assert_null(get(&m, "alicee"));
    assert_null(get(&m, "ecila"));
    assert_null(get(&m, ""));
    assert_null(get(&m, "bob"));
    assert_int_equal(m.count, 1);
    strmap_free(&m);
}

static void test_many(void **state)
{
    (void)state;
    enum { N = 10000 };
    char(*keys)[16] = malloc(N * sizeof *keys);
    int *vals = malloc(N * sizeof *vals);
    assert_non_null(keys);
    assert_non_null(vals);
    struct strmap m;
    strmap_init(&m);
    size_t last_cap = 0;
    int grew = 0;
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "user%d", i);
        vals[i] = i;
        assert_int_equal(strmap_put(&m, keys[i], &vals[i]), 0);
        assert_int_equal(m.count, (size_t)i + 1);
        if (m.cap != last_cap) {
            grew++;
            last_cap = m.cap;
        }
        /* The map never fills up (open addressing needs empty slots). */
        assert_true(m.count < m.cap);
        /* Early keys survive every growth. */
        if ((i & (i - 1)) == 0)
            for (int j = 0; j <= i; j++)
                assert_ptr_equal(get(&m, keys[j]), &vals[j]);
    }
    assert_true(grew >= 5);
    assert_true((m.cap & (m.cap - 1)) == 0);
    for (int i = 0; i < N; i++) {
        void *v = get(&m, keys[i]);
        if (v != &vals[i])
            fail_msg("key %s: got %p, want %p", keys[i], v, (void *)&vals[i]);
    }
    /* Missing keys that look alike. */
    char buf[32];
    for (int i = N; i < N + 1000; i++) {
        snprintf(buf, sizeof buf, "user%d", i);
        assert_null(get(&m, buf));
        snprintf(buf, sizeof buf, "User%d", i - N);
        assert_null(get(&m, buf));
    }
    /* Replace every other one: the count stays. */
    for (int i = 0; i < N; i += 2)
        assert_int_equal(strmap_put(&m, keys[i], &vals[N - 1 - i]), 0);
    assert_int_equal(m.count, N);
    for (int i = 0; i < N; i++)
        assert_ptr_equal(get(&m, keys[i]), (i % 2 == 0) ? &vals[N - 1 - i] : &vals[i]);
    strmap_free(&m);
    assert_int_equal(m.count, 0);
    assert_int_equal(m.cap, 0);
    assert_null(m.slots);
    free(keys);
    free(vals);
}

static void test_free_and_reuse(void **state)
{
    (void)state;
    struct strmap m;
    strmap_init(&m);
    int a = 1, b = 2;
    assert_int_equal(strmap_put(&m, "alice", &a), 0);
    strmap_free(&m);
    assert_int_equal(m.count, 0);
    assert_null(get(&m, "alice"));
    assert_int_equal(strmap_put(&m, "bob", &b), 0);
    assert_int_equal(m.count, 1);
    assert_ptr_equal(get(&m, "bob"), &b);
    assert_null(get(&m, "alice"));
    strmap_free(&m);
}

/* Keys with bytes above 0x7F and differing only in their last byte. */
static void test_binary_keys(void **state)
{
    (void)state;
    struct strmap m;
    strmap_init(&m);
    static char keys[256][4];
    static int vals[255];
    for (int i = 1; i < 256; i++) {
        keys[i][0] = 'k';
        keys[i][1] = (char)i;
        keys[i][2] = '\0';
        vals[i - 1] = i;
        assert_int_equal(strmap_put(&m, keys[i], &vals[i - 1]), 0);
    }
    assert_int_equal(m.count, 255);
    for (int i = 1; i < 256; i++)
        assert_ptr_equal(strmap_get(&m, keys[i], 2), &vals[i - 1]);
    assert_null(strmap_get(&m, "k", 1));
    strmap_free(&m);
}

/* Removing keeps every other key reachable, whatever the collisions (a small map, so runs of
 * probed slots wrap around its end), and frees the slot for a new put. */
static void test_remove(void **state)
{
    (void)state;
    enum { N = 40 };
    static char keys[N][16];
    static int vals[N];
    struct strmap m;
    strmap_init(&m);
    assert_null(strmap_remove(&m, "x", 1)); /* empty map */
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            snprintf(keys[i], sizeof keys[i], "u%d", i);
            vals[i] = i;
            assert_int_equal(strmap_put(&m, keys[i], &vals[i]), 0);
        }
        assert_int_equal(m.count, N);
        /* Remove in an order that breaks runs in the middle, checking all others each time. */
        for (int k = 0; k < N; k++) {
            int i = (k * 7 + round) % N;
            assert_ptr_equal(strmap_remove(&m, keys[i], strlen(keys[i])), &vals[i]);
            assert_null(strmap_remove(&m, keys[i], strlen(keys[i])));
            assert_null(get(&m, keys[i]));
            assert_int_equal(m.count, (size_t)(N - 1 - k));
            for (int j = 0; j < N; j++) {
                bool gone = false;
                for (int q = 0; q <= k; q++)
                    gone = gone || (q * 7 + round) % N == j;
                if (!gone && get(&m, keys[j]) != &vals[j])
                    fail_msg("round %d: after removing %s, %s is lost", round, keys[i], keys[j]);
            }
        }
        for (size_t s = 0; s < m.cap; s++)
            assert_null(m.slots[s].key);
    }
    int a = 1;
    assert_int_equal(strmap_put(&m, "alice", &a), 0);
    assert_null(strmap_remove(&m, "alicex", 6));
    assert_null(strmap_remove(&m, "alice", 4));
    assert_ptr_equal(strmap_remove(&m, "alice", 5), &a);
    strmap_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),          cmocka_unit_test(test_put_get),
        cmocka_unit_test(test_replace),        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_missing),        cmocka_unit_test(test_many),
        cmocka_unit_test(test_free_and_reuse), cmocka_unit_test(test_binary_keys),
        cmocka_unit_test(test_remove),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
