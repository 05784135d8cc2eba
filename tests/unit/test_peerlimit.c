/* Unit tests of src/server/peerlimit.c: which addresses count as one source (IPv4 addresses,
 * IPv6 /64 networks, IPv4-mapped IPv6), the limit, giving back, and no memory left behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "server/peerlimit.h"

static struct peerlimit_key key4(const char *text)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, text, &sa.sin_addr), 1);
    return peerlimit_key_of((const struct sockaddr *)&sa);
}

static struct peerlimit_key key6(const char *text)
{
    struct sockaddr_in6 sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, text, &sa.sin6_addr), 1);
    return peerlimit_key_of((const struct sockaddr *)&sa);
}

static bool same(struct peerlimit_key a, struct peerlimit_key b)
{
    return a.hi == b.hi && a.lo == b.lo;
}

static void test_sources(void **state)
{
    (void)state;
    assert_true(same(key4("10.0.0.1"), key4("10.0.0.1")));
    assert_false(same(key4("10.0.0.1"), key4("10.0.0.2")));
    assert_false(same(key4("127.0.0.1"), key4("127.0.0.2")));
    /* One IPv6 /64 is one source; another /64 is another. */
    assert_true(same(key6("2001:db8:1:2::1"), key6("2001:db8:1:2:ffff:ffff:ffff:ffff")));
    assert_false(same(key6("2001:db8:1:2::1"), key6("2001:db8:1:3::1")));
    /* An IPv4-mapped address is its IPv4 address. */
    assert_true(same(key6("::ffff:10.0.0.1"), key4("10.0.0.1")));
    assert_false(same(key6("::ffff:10.0.0.1"), key6("::ffff:10.0.0.2")));
    assert_false(same(key6("::1"), key4("127.0.0.1")));
}

static void test_limit_and_release(void **state)
{
    (void)state;
    struct peerlimit pl = {0};
    struct peerlimit_key a = key4("192.0.2.1"), b = key4("192.0.2.2");
    for (int i = 0; i < 3; i++)
        assert_true(peerlimit_take(&pl, a, 3));
    assert_false(peerlimit_take(&pl, a, 3));
    assert_int_equal(peerlimit_count(&pl, a), 3);
    assert_true(peerlimit_take(&pl, b, 3)); /* another source has its own */
    peerlimit_release(&pl, a);
    assert_true(peerlimit_take(&pl, a, 3));
    assert_false(peerlimit_take(&pl, a, 3));
    /* 0: no limit, still counted. */
    for (int i = 0; i < 1000; i++)
        assert_true(peerlimit_take(&pl, b, 0));
    assert_int_equal(peerlimit_count(&pl, b), 1001);
    for (int i = 0; i < 1001; i++)
        peerlimit_release(&pl, b);
    for (int i = 0; i < 3; i++)
        peerlimit_release(&pl, a);
    assert_int_equal(peerlimit_count(&pl, a), 0);
    assert_int_equal(pl.counts.count, 0); /* sources without connections cost nothing */
    peerlimit_free(&pl);
}

static void test_many_sources_come_and_go(void **state)
{
    (void)state;
    struct peerlimit pl = {0};
    char text[32];
    for (int i = 0; i < 50000; i++) {
        snprintf(text, sizeof(text), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        assert_true(peerlimit_take(&pl, key4(text), 1));
    }
    assert_int_equal(pl.counts.count, 50000);
    for (int i = 0; i < 50000; i++) {
        snprintf(text, sizeof(text), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        peerlimit_release(&pl, key4(text));
    }
    assert_int_equal(pl.counts.count, 0);
    assert_true(pl.counts.cap <= 128);
    peerlimit_free(&pl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sources),
        cmocka_unit_test(test_limit_and_release),
        cmocka_unit_test(test_many_sources_come_and_go),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
