/* Unit tests of src/server/ratelimit.c: the token bucket starts full, refuses when empty,
 * refills at its rate, never holds more than its burst, a charge can leave a debt that the
 * refill pays back, and rate 0 means no limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "server/ratelimit.h"

/* Takes as many tokens as possible at `now`; returns how many were granted. */
static unsigned drain(struct ratelimit *rl, int64_t now, unsigned rate, unsigned burst)
{
    unsigned n = 0;
    while (ratelimit_take(rl, now, rate, burst)) {
        n++;
        assert_true(n <= burst + 1000000u);
    }
    return n;
}

static void test_starts_full(void **state)
{
    (void)state;
    struct ratelimit rl;
    memset(&rl, 0, sizeof rl);
    assert_int_equal(drain(&rl, 1000, 1, 5), 5);
    /* At any starting time, including 0 and negative clocks. */
    static const int64_t starts[] = {0, -5000, 123456789, INT64_C(1) << 50};
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++) {
        memset(&rl, 0, sizeof rl);
        assert_int_equal(drain(&rl, starts[i], 50, 200), 200);
    }
    memset(&rl, 0, sizeof rl);
    assert_int_equal(drain(&rl, 0, 1000, 1), 1);
}

static void test_refuses_when_empty(void **state)
{
    (void)state;
    struct ratelimit rl;
    memset(&rl, 0, sizeof rl);
    assert_int_equal(drain(&rl, 10000, 1, 3), 3);
    /* Refused as often as asked at the same time. */
    for (int i = 0; i < 100; i++)
        assert_false(ratelimit_take(&rl, 10000, 1, 3));
    /* Refusals cost nothing: one token a second later, no more. */
    assert_false(ratelimit_take(&rl, 10999, 1, 3));
    assert_true(ratelimit_take(&rl, 11000, 1, 3));
    assert_false(ratelimit_take(&rl, 11000, 1, 3));
}

static void test_refill_rate(void **state)
{
    (void)state;
    struct ratelimit rl;
    memset(&rl, 0, sizeof rl);
    int64_t t = 5000;
    assert_int_equal(drain(&rl, t, 10, 10), 10);
    /* 10 a second: one every 100 ms. */
    assert_false(ratelimit_take(&rl, t + 99, 10, 10));
    assert_true(ratelimit_take(&rl, t + 100, 10, 10));
    assert_false(ratelimit_take(&rl, t + 100, 10, 10));
    /* Fractions accumulate across refused attempts. */
    assert_false(ratelimit_take(&rl, t + 150, 10, 10));
    assert_false(ratelimit_take(&rl, t + 199, 10, 10));
    assert_true(ratelimit_take(&rl, t + 200, 10, 10));
    /* Half a second gives five. */
    assert_int_equal(drain(&rl, t + 700, 10, 10), 5);

    /* 3 a second: 333.3 ms each; the fractions are kept. */
    memset(&rl, 0, sizeof rl);
    assert_int_equal(drain(&rl, 0, 3, 5), 5);
    assert_false(ratelimit_take(&rl, 333, 3, 5));
    assert_true(ratelimit_take(&rl, 334, 3, 5));
    assert_false(ratelimit_take(&rl, 666, 3, 5));
    assert_true(ratelimit_take(&rl, 667, 3, 5));
    assert_false(ratelimit_take(&rl, 999, 3, 5));
    assert_true(ratelimit_take(&rl, 1000, 3, 5));
    assert_false(ratelimit_take(&rl, 1000, 3, 5));

    /* With a burst of 1, what comes in while the bucket is full is lost: after a token at
     * 334 ms (the bucket was full since 333.3 ms) the next one is due at 667.3 ms. */
    memset(&rl, 0, sizeof rl);
    assert_int_equal(drain(&rl, 0, 3, 1), 1);
    assert_false(ratelimit_take(&rl, 333, 3, 1));
    assert_true(ratelimit_take(&rl, 334, 3, 1));
    assert_false(ratelimit_take(&rl, 667, 3, 1));
    assert_true(ratelimit_take(&rl, 668, 3, 1));

    /* A fast rate: 1000 a second is one per millisecond. */
    memset(&rl, 0, sizeof rl);
    assert_int_equal(drain(&rl, 0, 1000, 1), 1);
    for (int64_t ms = 1; ms <= 100; ms++) {
        assert_true(ratelimit_take(&rl, ms, 1000, 1));
        assert_false(ratelimit_take(&rl, ms, 1000, 1));
    }
}

/* The defaults (50/s, burst 200) over ten seconds of a client trying every millisecond. */
static void test_sustained(void **state)
{
    (void)state;
    struct ratelimit rl;
    memset(&rl, 0, sizeof rl);
    unsigned granted = 0;
    for (int64_t ms = 0; ms <= 10000; ms++)
        while (ratelimit_take(&rl, 1000000 + ms, 50, 200))
            granted++;
    assert_int_equal(granted, 200 + 50 * 10);
    /* Once the burst is spent, one every 20 ms. */
    memset(&rl, 0, sizeof rl);
    assert_int_equal(drain(&rl, 0, 50, 200), 200);
    int64_t last = 0;
    for (int64_t ms = 1; ms <= 1000; ms++)
        if (ratelimit_take(&rl, ms, 50, 200)) {
            assert_int_equal(ms - last, 20);
            last = ms;
        }
    assert_int_equal(last, 1000);
}

static void test_never_exceeds_burst(void **state)
{
    (void)state;
    struct ratelimit rl;
    memset(&rl, 0, sizeof rl);
    assert_int_equal(drain(&rl, 0, 50, 200), 200);
    /* A long idle time refills to the burst, not beyond. */
    assert_int_equal(drain(&rl, 3600 * 1000, 50, 200), 200);
    assert_int_equal(drain(&rl, INT64_C(365) * 24 * 3600 * 1000, 50, 200), 200);
    /* Partly used, then idle: still only the burst. */
    assert_true(ratelimit_take(&rl, INT64_C(400) * 24 * 3600 * 1000, 50, 200));
    assert_int_equal(drain(&rl, INT64_C(401) * 24 * 3600 * 1000, 50, 200), 200);
    /* Never more than `burst` at any instant, draining every 7 ms. */
    memset(&rl, 0, sizeof rl);
    for (int64_t ms = 0; ms < 5000; ms += 7) {
        unsigned n = drain(&rl, ms, 4, 3);
        assert_true(n <= 3);
    }
    /* Idle long after a single use: back to the burst, not burst + what was refilled. */
    memset(&rl, 0, sizeof rl);
    assert_true(ratelimit_take(&rl, 0, 10, 5));
    assert_int_equal(drain(&rl, 10000, 10, 5), 5);
    /* Frequent checks of a full bucket do not store the surplus either. */
    memset(&rl, 0, sizeof rl);
    for (int64_t ms = 0; ms <= 10000; ms += 100) {
        assert_true(ratelimit_take(&rl, ms, 10, 5));
        assert_true(ratelimit_take(&rl, ms, 10, 5)); /* 2 spent per 100 ms, 1 refilled */
        if (ms >= 300)                               /* 5 + 3 refilled = 8 spent so far */
            break;
    }
    assert_int_equal(drain(&rl, 20000, 10, 5), 5);
}

/* parleyd accepts --msg-burst up to 10,000,000 (src/server/config.c); a burst that large must
 * still start full and refill to exactly the burst. */
static void test_large_burst(void **state)
{
    (void)state;
    struct ratelimit rl;
    /* The largest burst whose thousandths fit in 32 bits, and the next one. */
    memset(&rl, 0, sizeof rl);
    assert_true(ratelimit_take(&rl, 0, 50, 4294967));
    memset(&rl, 0, sizeof rl);
    assert_true(ratelimit_take(&rl, 0, 50, 4294968));
    /* The configuration's maximum. */
    memset(&rl, 0, sizeof rl);
    assert_int_equal(drain(&rl, 0, 10000000, 10000000), 10000000);
    assert_false(ratelimit_take(&rl, 0, 10000000, 10000000));
    /* One second later it is full again, not more and not less. */
    assert_int_equal(drain(&rl, 1000, 10000000, 10000000), 10000000);
}

static void test_clock_backwards(void **state)
{
    (void)state;
    struct ratelimit rl;
    memset(&rl, 0, sizeof rl);
    assert_int_equal(drain(&rl, 10000, 1, 2), 2);
    /* An earlier time gives nothing back. */
    assert_false(ratelimit_take(&rl, 5000, 1, 2));
    assert_false(ratelimit_take(&rl, 10000, 1, 2));
    assert_true(ratelimit_take(&rl, 11000, 1, 2));
}

static void test_rate_zero_unlimited(void **state)
{
    (void)state;
    struct ratelimit rl;
    memset(&rl, 0, sizeof rl);
    for (int i = 0; i < 100000; i++)
        assert_true(ratelimit_take(&rl, 0, 0, 200));
    for (int i = 0; i < 1000; i++)
        assert_true(ratelimit_take(&rl, 0, 0, 0));
    for (int i = 0; i < 1000; i++)
        assert_true(ratelimit_take(&rl, i, 0, 1));
}

/* A bucket counted per minute: `rate` tokens a minute refill to at most `burst`. */
static void test_per_period(void **state)
{
    (void)state;
    struct ratelimit rl;
    memset(&rl, 0, sizeof rl);
    for (int i = 0; i < 3; i++)
        assert_true(ratelimit_take_per(&rl, 1000, 3, 60000, 3));
    assert_false(ratelimit_take_per(&rl, 1000, 3, 60000, 3));
    assert_false(ratelimit_take_per(&rl, 20999, 3, 60000, 3));
    assert_true(ratelimit_take_per(&rl, 21000, 3, 60000, 3)); /* one every 20 s */
    assert_false(ratelimit_take_per(&rl, 21000, 3, 60000, 3));
    /* a year later: full, not more */
    int64_t later = INT64_C(365) * 24 * 3600 * 1000;
    for (int i = 0; i < 3; i++)
        assert_true(ratelimit_take_per(&rl, later, 3, 60000, 3));
    assert_false(ratelimit_take_per(&rl, later, 3, 60000, 3));
    /* period 1000 is ratelimit_take */
    struct ratelimit a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    for (int64_t ms = 0; ms < 5000; ms += 7)
        assert_int_equal(ratelimit_take(&a, ms, 10, 5), ratelimit_take_per(&b, ms, 10, 1000, 5));
    assert_true(ratelimit_take_per(&rl, 0, 0, 60000, 1));
}

/* Issue 9 point 10: registrations are limited per source address. Each address has its own
 * bucket, an IPv6 /64 shares one, rate 0 tracks nothing. */
static void test_table_per_address(void **state)
{
    (void)state;
    struct ratelimit_table t;
    memset(&t, 0, sizeof t);
    for (int i = 0; i < 2; i++)
        assert_true(ratelimit_table_take(&t, "10.0.0.1", 0, 2, 60000, 2));
    assert_false(ratelimit_table_take(&t, "10.0.0.1", 0, 2, 60000, 2));
    assert_true(ratelimit_table_take(&t, "10.0.0.2", 0, 2, 60000, 2));
    assert_true(ratelimit_table_take(&t, "10.0.0.1", 30000, 2, 60000, 2));
    assert_true(ratelimit_table_take(&t, "2001:db8::1", 0, 1, 60000, 1));
    assert_false(ratelimit_table_take(&t, "2001:db8::2", 0, 1, 60000, 1));
    assert_false(ratelimit_table_take(&t, "2001:db8:0:0:ffff::9", 0, 1, 60000, 1));
    assert_true(ratelimit_table_take(&t, "2001:db8:0:1::1", 0, 1, 60000, 1));
    assert_int_equal(t.used, 4);
    size_t used = t.used;
    for (int i = 0; i < 1000; i++)
        assert_true(ratelimit_table_take(&t, "10.9.9.9", 0, 0, 60000, 1));
    assert_int_equal(t.used, used);
    ratelimit_table_free(&t);
    assert_int_equal(t.used, 0);
    assert_null(t.slots);
}

/* The table stays bounded: buckets that filled up again are forgotten, and past
 * RATELIMIT_TABLE_MAX live addresses new ones are refused until some fill up. */
static void test_table_bounded(void **state)
{
    (void)state;
    struct ratelimit_table t;
    memset(&t, 0, sizeof t);
    char addr[32];
    for (unsigned i = 0; i < RATELIMIT_TABLE_MAX; i++) {
        snprintf(addr, sizeof addr, "10.%u.%u.%u", i >> 16, (i >> 8) & 255, i & 255);
        assert_true(ratelimit_table_take(&t, addr, 0, 1, 1000, 1));
    }
    assert_int_equal(t.used, RATELIMIT_TABLE_MAX);
    assert_false(ratelimit_table_take(&t, "192.168.0.1", 500, 1, 1000, 1));
    assert_false(ratelimit_table_take(&t, "10.0.0.0", 500, 1, 1000, 1)); /* still empty */
    /* a second later every bucket is full again: forgotten, room for new ones */
    assert_true(ratelimit_table_take(&t, "192.168.0.1", 1000, 1, 1000, 1));
    assert_true(t.used < 100);
    assert_true(t.cap <= 2u * RATELIMIT_TABLE_MAX);
    ratelimit_table_free(&t);
}

/* A charge for work already done may leave a debt: refused until the refill paid it back. */
static void test_charge_makes_a_debt(void **state)
{
    (void)state;
    struct ratelimit rl;
    memset(&rl, 0, sizeof rl);
    assert_true(ratelimit_take(&rl, 0, 10, 20)); /* 19 left */
    ratelimit_charge(&rl, 0, 10, 20, 49);        /* 30 in debt */
    assert_false(ratelimit_take(&rl, 0, 10, 20));
    assert_false(ratelimit_take(&rl, 3000, 10, 20)); /* 3 s = 30 tokens: back to 0 */
    assert_true(ratelimit_take(&rl, 3100, 10, 20));  /* one more */
    assert_false(ratelimit_take(&rl, 3100, 10, 20));
    /* A charge within what is left just takes it. */
    memset(&rl, 0, sizeof rl);
    ratelimit_charge(&rl, 0, 10, 20, 15);
    assert_int_equal(drain(&rl, 0, 10, 20), 5);
    /* The refill after a debt still stops at the burst. */
    assert_int_equal(drain(&rl, 1000000, 10, 20), 20);
    /* The deepest charge, twice, stays representable and is paid back at the rate. */
    memset(&rl, 0, sizeof rl);
    ratelimit_charge(&rl, 0, 10000000, 1, UINT32_MAX);
    ratelimit_charge(&rl, 0, 10000000, 1, UINT32_MAX);
    assert_false(ratelimit_take(&rl, 0, 10000000, 1));
    assert_false(ratelimit_take(&rl, 429496, 10000000, 1));
    assert_true(ratelimit_take(&rl, 429497, 10000000, 1));
    /* Rate 0: no limit, nothing charged. */
    memset(&rl, 0, sizeof rl);
    ratelimit_charge(&rl, 0, 0, 1, 1000);
    assert_true(ratelimit_take(&rl, 0, 0, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_starts_full),         cmocka_unit_test(test_refuses_when_empty),
        cmocka_unit_test(test_refill_rate),         cmocka_unit_test(test_sustained),
        cmocka_unit_test(test_never_exceeds_burst), cmocka_unit_test(test_large_burst),
        cmocka_unit_test(test_clock_backwards),     cmocka_unit_test(test_rate_zero_unlimited),
        cmocka_unit_test(test_per_period),          cmocka_unit_test(test_table_per_address),
        cmocka_unit_test(test_table_bounded),       cmocka_unit_test(test_charge_makes_a_debt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
