/* Unit tests of src/client/known.c (the known_servers file) and src/common/tlsfp.c's parser.
 * The module is included whole, so this test links only the common objects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/known.c"

#define FP_A "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define FP_B "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static void names_bracket_ipv6(void **state)
{
    (void)state;
    char out[64];
    known_name("127.0.0.1", "5001", out, sizeof(out));
    assert_string_equal(out, "127.0.0.1:5001");
    known_name("::1", "5001", out, sizeof(out));
    assert_string_equal(out, "[::1]:5001");
}

static void finds_match_mismatch_and_unknown(void **state)
{
    (void)state;
    const char *text = "# servers\n\nhost:1 " FP_A "\r\nother:2 " FP_B "\nbroken line\n";
    char on_file[TLSFP_LEN + 1] = "";
    int line = 0;
    assert_int_equal(known_find(text, "host:1", FP_A, on_file, &line), KNOWN_MATCH);
    assert_int_equal(known_find(text, "other:2", FP_A, on_file, &line), KNOWN_MISMATCH);
    assert_string_equal(on_file, FP_B);
    assert_int_equal(line, 4);
    assert_int_equal(known_find(text, "host:2", FP_A, on_file, &line), KNOWN_UNKNOWN);
    assert_int_equal(known_find(text, "host", FP_A, on_file, &line), KNOWN_UNKNOWN);
    assert_int_equal(known_find("", "host:1", FP_A, on_file, &line), KNOWN_UNKNOWN);
}

static void malformed_keys_are_skipped(void **state)
{
    (void)state;
    char on_file[TLSFP_LEN + 1];
    int line = 0;
    assert_int_equal(known_find("host:1 sha256:abc\n", "host:1", FP_A, on_file, &line),
                     KNOWN_UNKNOWN);
    assert_int_equal(known_find("host:1 md5:" FP_A "\n", "host:1", FP_A, on_file, &line),
                     KNOWN_UNKNOWN);
    /* upper-case hex on file is the same key */
    assert_int_equal(
        known_find(
            "host:1 sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
            "host:1", FP_A, on_file, &line),
        KNOWN_MATCH);
}

static void fingerprint_parser(void **state)
{
    (void)state;
    char norm[TLSFP_LEN + 1];
    assert_true(tlsfp_parse(FP_A, norm));
    assert_string_equal(norm, FP_A);
    assert_false(tlsfp_parse("sha256:", norm));
    assert_false(tlsfp_parse(FP_A "0", norm));
    assert_false(tlsfp_parse(
        "sha256:gaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", norm));
}

static void add_then_lookup_in_a_new_directory(void **state)
{
    (void)state;
    char dir[] = "/tmp/parley-known-XXXXXX", path[256], on_file[TLSFP_LEN + 1];
    int line = 0;
    struct stat st;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/parley/known_servers", dir);
    assert_int_equal(known_lookup(path, "h:1", FP_A, on_file, &line), KNOWN_UNKNOWN);
    assert_int_equal(known_add(path, "h:1", FP_A), 0);
    assert_int_equal(known_add(path, "h:2", FP_B), 0);
    assert_int_equal(known_lookup(path, "h:1", FP_A, on_file, &line), KNOWN_MATCH);
    assert_int_equal(known_lookup(path, "h:2", FP_A, on_file, &line), KNOWN_MISMATCH);
    assert_int_equal(line, 2);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    unlink(path);
    snprintf(path, sizeof(path), "%s/parley", dir);
    rmdir(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_bracket_ipv6),
        cmocka_unit_test(finds_match_mismatch_and_unknown),
        cmocka_unit_test(malformed_keys_are_skipped),
        cmocka_unit_test(fingerprint_parser),
        cmocka_unit_test(add_then_lookup_in_a_new_directory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
