/* Unit tests of src/server/nodeid.c: a node id is made once and kept, a given one wins, a
 * damaged file is refused and left as it is, and the length and character rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/nodeid.h"

/* A fresh empty directory for one test (left behind in /tmp only when a test fails). */
static int make_dir(void **state)
{
    char *dir = strdup("/tmp/parley-nodeid-XXXXXX");
    assert_non_null(mkdtemp(dir));
    *state = dir;
    return 0;
}

static int remove_dir(void **state)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", (char *)*state);
    free(*state);
    return system(cmd) == 0 ? 0 : -1;
}

/* The path of the id file in `dir`. */
static void id_path(const char *dir, char *out, size_t len)
{
    snprintf(out, len, "%s/node-id", dir);
}

/* Writes `len` bytes of `data` as the id file. */
static void write_file(const char *dir, const char *data, size_t len)
{
    char path[PATH_MAX];
    id_path(dir, path, sizeof path);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* The id file's whole text (at most 255 bytes). */
static void read_file(const char *dir, char *out, size_t len)
{
    char path[PATH_MAX];
    id_path(dir, path, sizeof path);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(out, 1, len - 1, f);
    out[n] = '\0';
    fclose(f);
}

/* The directory holds exactly `n` entries (no temporary file left behind). */
static void assert_entries(const char *dir, int n)
{
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq %d", dir, n);
    assert_int_equal(system(cmd), 0);
}

static void test_made_once_and_kept(void **state)
{
    const char *dir = *state;
    char id[NODEID_MAX + 1], again[NODEID_MAX + 1], err[256], text[256];
    assert_int_equal(nodeid_resolve(NULL, dir, id, sizeof id, err, sizeof err), 0);
    assert_true(nodeid_valid(id));
    /* <hostname, at most 40 of the id characters>-<8 hex digits> */
    const char *dash = strrchr(id, '-');
    assert_non_null(dash);
    assert_int_equal(strlen(dash + 1), 8);
    assert_int_equal(strspn(dash + 1, "0123456789abcdef"), 8);
    assert_true(dash > id && dash - id <= 40);
    read_file(dir, text, sizeof text);
    assert_string_equal(text, strcat(strcpy(again, id), "\n"));
    assert_entries(dir, 1);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(nodeid_resolve(NULL, dir, again, sizeof again, err, sizeof err), 0);
        assert_string_equal(again, id);
    }
}

/* Two directories (two nodes on one machine) get two ids. */
static void test_two_dirs_two_ids(void **state)
{
    const char *dir = *state;
    char other[PATH_MAX], a[NODEID_MAX + 1], b[NODEID_MAX + 1], err[256];
    snprintf(other, sizeof other, "%s/other", dir);
    assert_int_equal(mkdir(other, 0700), 0);
    assert_int_equal(nodeid_resolve(NULL, dir, a, sizeof a, err, sizeof err), 0);
    assert_int_equal(nodeid_resolve(NULL, other, b, sizeof b, err, sizeof err), 0);
    assert_string_not_equal(a, b);
}

static void test_given_wins(void **state)
{
    const char *dir = *state;
    char id[NODEID_MAX + 1], err[256], text[256];
    assert_int_equal(nodeid_resolve("node2", dir, id, sizeof id, err, sizeof err), 0);
    assert_string_equal(id, "node2");
    assert_entries(dir, 0); /* a given id is not written down */
    write_file(dir, "kept-1\n", 7);
    assert_int_equal(nodeid_resolve("node3", dir, id, sizeof id, err, sizeof err), 0);
    assert_string_equal(id, "node3");
    read_file(dir, text, sizeof text);
    assert_string_equal(text, "kept-1\n");
    assert_int_equal(nodeid_resolve(NULL, dir, id, sizeof id, err, sizeof err), 0);
    assert_string_equal(id, "kept-1");
}

/* A hand-written id without its newline is read as well. */
static void test_kept_without_newline(void **state)
{
    const char *dir = *state;
    char id[NODEID_MAX + 1], err[256];
    write_file(dir, "hand.made_id", 12);
    assert_int_equal(nodeid_resolve(NULL, dir, id, sizeof id, err, sizeof err), 0);
    assert_string_equal(id, "hand.made_id");
}

/* Refuses the id file holding `len` bytes of `data`, says so, and leaves it as it was. */
static void assert_damaged_refused(const char *dir, const char *data, size_t len, const char *why)
{
    char id[NODEID_MAX + 1] = "", err[256] = "", text[256];
    write_file(dir, data, len);
    assert_int_equal(nodeid_resolve(NULL, dir, id, sizeof id, err, sizeof err), -1);
    if (!strstr(err, "node-id") || !strstr(err, why))
        fail_msg("refused with '%s', expected '%s'", err, why);
    read_file(dir, text, sizeof text);
    assert_memory_equal(text, data, len);
    assert_entries(dir, 1);
}

static void test_damaged_file_refused(void **state)
{
    const char *dir = *state;
    char too_long[NODEID_MAX + 2];
    memset(too_long, 'x', NODEID_MAX + 1);
    too_long[NODEID_MAX + 1] = '\n';
    assert_damaged_refused(dir, "", 0, "is empty");
    assert_damaged_refused(dir, "\n", 1, "is empty");
    assert_damaged_refused(dir, "bad id\n", 7, "no valid node id");
    assert_damaged_refused(dir, "two\nlines\n", 10, "no valid node id");
    assert_damaged_refused(dir, "nul\0after\n", 10, "no valid node id");
    assert_damaged_refused(dir, "id\n\n", 4, "no valid node id");
    assert_damaged_refused(dir, too_long, sizeof too_long, "no valid node id");
}

/* A node-id that cannot be read (here a directory) is an error, not replaced. */
static void test_unreadable_file_refused(void **state)
{
    const char *dir = *state;
    char path[PATH_MAX], id[NODEID_MAX + 1], err[256] = "";
    struct stat sb;
    id_path(dir, path, sizeof path);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(nodeid_resolve(NULL, dir, id, sizeof id, err, sizeof err), -1);
    assert_non_null(strstr(err, "node-id"));
    assert_int_equal(stat(path, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
}

/* A directory where the id cannot be written is an error (no id made up without a file). */
static void test_unwritable_dir_refused(void **state)
{
    const char *dir = *state;
    char missing[PATH_MAX], id[NODEID_MAX + 1], err[256] = "";
    snprintf(missing, sizeof missing, "%s/missing", dir);
    assert_int_equal(nodeid_resolve(NULL, missing, id, sizeof id, err, sizeof err), -1);
    assert_true(err[0] != '\0');
}

/* An id that does not fit the caller's buffer is an error, not cut short. */
static void test_small_buffer_refused(void **state)
{
    const char *dir = *state;
    char id[6], err[256];
    assert_int_equal(nodeid_resolve("node1", dir, id, sizeof id, err, sizeof err), 0);
    assert_int_equal(nodeid_resolve("node10", dir, id, sizeof id, err, sizeof err), -1);
}

static void test_valid_rules(void **state)
{
    (void)state;
    char longest[NODEID_MAX + 1], too_long[NODEID_MAX + 2];
    memset(longest, 'a', NODEID_MAX);
    longest[NODEID_MAX] = '\0';
    memset(too_long, 'a', NODEID_MAX + 1);
    too_long[NODEID_MAX + 1] = '\0';
    const char *good[] = {"a", "Z", "0", ".", "_", "-", "web-01.example_B", longest};
    const char *bad[] = {"", too_long, "a b", "a/b", "a:b", "a\n", "a\t", "caf\xc3\xa9", "a*"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!nodeid_valid(good[i]))
            fail_msg("'%s' refused", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (nodeid_valid(bad[i]))
            fail_msg("'%s' accepted", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_made_once_and_kept, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_two_dirs_two_ids, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_given_wins, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_kept_without_newline, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_damaged_file_refused, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_unreadable_file_refused, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_unwritable_dir_refused, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_small_buffer_refused, make_dir, remove_dir),
        cmocka_unit_test(test_valid_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
