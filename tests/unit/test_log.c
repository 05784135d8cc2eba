/* Unit tests of src/server/log.c's throttled lines: the first is printed, the next ones within
 * LOG_THROTTLE_MS only counted, and the next line printed says how many were left out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/log.h"

/* Runs `n` throttled lines with stderr going to a file; returns what was printed. */
static const char *run(struct log_throttle *t, int n)
{
    static char out[4096];
    char path[] = "/tmp/parley-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    assert_true(dup2(fd, 2) >= 0);
    for (int i = 0; i < n; i++)
        log_error_throttled(t, "refused a connection from %s", "192.0.2.7");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *f = fdopen(fd, "r");
    rewind(f);
    size_t len = fread(out, 1, sizeof(out) - 1, f);
    out[len] = '\0';
    fclose(f);
    unlink(path);
    return out;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_one_line_a_window(void **state)
{
    (void)state;
    struct log_throttle t = {0};
    const char *out = run(&t, 101);
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, " error: refused a connection from 192.0.2.7\n"));
    assert_null(strstr(out, "more like it"));
    assert_int_equal(t.suppressed, 100);
    /* Still inside the window: counted only. */
    assert_string_equal(run(&t, 5), "");
    /* The window is over: one line, with the count. */
    t.last_ms -= LOG_THROTTLE_MS;
    out = run(&t, 3);
    assert_int_equal(count_lines(out), 1);
    assert_non_null(
        strstr(out, "from 192.0.2.7 (and 105 more like it since the last such line)\n"));
    assert_int_equal(t.suppressed, 2);
}

static void test_kinds_are_independent(void **state)
{
    (void)state;
    struct log_throttle a = {0}, b = {0};
    assert_int_equal(count_lines(run(&a, 10)), 1);
    assert_int_equal(count_lines(run(&b, 10)), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_line_a_window),
        cmocka_unit_test(test_kinds_are_independent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
