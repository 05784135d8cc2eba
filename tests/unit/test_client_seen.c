/* Unit tests of src/client/seen.c: remembering, per server and user, the newest direct message
 * shown, so that a redelivery after a server crash is not shown twice (issue 9, point 5); and
 * never letting a missing, damaged or strange state file crash, block or hide a message. The
 * module is included whole; each test gets its own XDG_STATE_HOME under a temporary dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/seen.c"

/* A literal and its length (embedded NULs included). */
#define LIT(s) s, sizeof(s) - 1
/* The first three lines of a record of `user` on 127.0.0.1:5000. */
#define HEAD(user) "parley-seen 1\nserver 127.0.0.1 5000\nuser " user "\n"

struct fixture {
    struct event_base *base;
    char root[256];  /* the temporary directory: XDG_STATE_HOME */
    char dir[300];   /* root/parley */
    char file[4400]; /* the record of hans on 127.0.0.1:5000 */
};

static void remove_tree(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    static struct fixture f;
    memset(&f, 0, sizeof(f));
    f.base = event_base_new();
    assert_non_null(f.base);
    snprintf(f.root, sizeof(f.root), "/tmp/parley-seen-XXXXXX");
    assert_non_null(mkdtemp(f.root));
    snprintf(f.dir, sizeof(f.dir), "%s/parley", f.root);
    setenv("XDG_STATE_HOME", f.root, 1);
    struct seen *s = seen_open(f.base, "127.0.0.1", "5000", "hans");
    assert_non_null(s);
    snprintf(f.file, sizeof(f.file), "%s", s->path);
    seen_close(s);
    alarm(10); /* nothing here may block */
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    alarm(0);
    remove_tree(f->root);
    event_base_free(f->base);
    return 0;
}

static struct seen *open_hans(struct fixture *f)
{
    struct seen *s = seen_open(f->base, "127.0.0.1", "5000", "hans");
    assert_non_null(s);
    return s;
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, len, fp), len);
    fclose(fp);
}

/* Counts the entries of `dir` other than . and .. */
static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* What was shown survives the run; another server or user has its own record. */
static void remembers_across_runs(void **state)
{
    struct fixture *f = *state;
    struct seen *s = open_hans(f);
    assert_false(seen_already(s, 1, 1000));
    seen_note(s, 7, 1000);
    seen_note(s, 9, 1010);
    assert_true(seen_already(s, 9, 1010));
    assert_true(seen_already(s, 3, 990));
    assert_false(seen_already(s, 10, 1010));
    event_base_loop(f->base, EVLOOP_NONBLOCK); /* saved at the end of the turn */
    struct stat st;
    assert_int_equal(stat(f->file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(f->dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    seen_close(s);
    assert_int_equal(entries(f->dir), 1); /* no temporary file left */

    s = open_hans(f);
    assert_true(seen_already(s, 9, 1010));
    assert_false(seen_already(s, 10, 1011));
    seen_close(s);
    /* The same port written with a leading zero is the same server. */
    s = seen_open(f->base, "127.0.0.1", "05000", "hans");
    assert_true(seen_already(s, 9, 1010));
    seen_close(s);
    const char *others[][3] = {{"127.0.0.1", "5001", "hans"},
                               {"localhost", "5000", "hans"},
                               {"127.0.0.1", "5000", "yoda"}};
    for (size_t i = 0; i < 3; i++) {
        s = seen_open(f->base, others[i][0], others[i][1], others[i][2]);
        assert_false(seen_already(s, 1, 1));
        seen_close(s);
    }
    assert_false(seen_already(NULL, 1, 1));
    seen_note(NULL, 1, 1);
    seen_close(NULL);
}

/* A message with an id at most the newest but newer than it was not shown: the server's ids
 * started again (a new server at the same address). It is shown and replaces the record. */
static void restarted_ids_are_shown(void **state)
{
    struct fixture *f = *state;
    struct seen *s = open_hans(f);
    seen_note(s, 500, 2000);
    assert_true(seen_already(s, 499, 1999));
    assert_false(seen_already(s, 1, 2001));
    seen_note(s, 1, 2001);
    assert_false(seen_already(s, 2, 2001));
    assert_true(seen_already(s, 1, 2001));
    seen_close(s);
    s = open_hans(f);
    assert_true(seen_already(s, 1, 2001));
    assert_false(seen_already(s, 2, 2002));
    seen_close(s);
}

/* Each damaged or strange file counts as nothing shown, and the next save repairs it. */
static void damaged_files_are_ignored(void **state)
{
    struct fixture *f = *state;
    char good[256];
    int n = snprintf(good, sizeof(good),
                     "parley-seen 1\nserver 127.0.0.1 5000\nuser hans\nlast 42 1700000000\n");
    const struct {
        const char *what;
        const char *text;
        size_t len;
    } cases[] = {
        {"empty", LIT("")},
        {"garbage", LIT("\xff\xfe\x00junk\n")},
        {"cut short", good, (size_t)n - 5},
        {"no newline at the end", good, (size_t)n - 1},
        {"another user's record", LIT(HEAD("yoda") "last 42 1\n")},
        {"a NUL inside", LIT(HEAD("hans") "last 4\0002 1\n")},
        {"a number too long", LIT(HEAD("hans") "last 1234567890123456789 1\n")},
        {"a negative number", LIT(HEAD("hans") "last -4 1\n")},
        {"an extra line", LIT(HEAD("hans") "last 42 1\nx\n")},
        {"an older format", LIT("parley-seen 0\nserver 127.0.0.1 5000\nuser hans\nlast 4 1\n")},
    };
    assert_int_equal(mkdir(f->dir, 0700), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_file(f->file, cases[i].text, cases[i].len);
        struct seen *s = open_hans(f);
        if (seen_already(s, 1, 1))
            fail_msg("%s: taken as a record", cases[i].what);
        seen_close(s);
    }
    /* The good one is read; a huge one is not. */
    write_file(f->file, good, (size_t)n);
    struct seen *s = open_hans(f);
    assert_true(seen_already(s, 42, 1700000000));
    seen_close(s);
    static char huge[8192];
    memset(huge, 'x', sizeof(huge));
    memcpy(huge, good, (size_t)n);
    write_file(f->file, huge, sizeof(huge));
    s = open_hans(f);
    assert_false(seen_already(s, 1, 1));
    seen_note(s, 5, 5);
    seen_close(s); /* the save replaces the damaged file */
    s = open_hans(f);
    assert_true(seen_already(s, 5, 5));
    seen_close(s);
}

/* A FIFO, a directory or a symbolic link where the file should be: never blocks, never
 * follows, and the client goes on (remembering in memory). */
static void strange_files_do_not_block(void **state)
{
    struct fixture *f = *state;
    char target[4500];
    assert_int_equal(mkdir(f->dir, 0700), 0);
    assert_int_equal(mkfifo(f->file, 0600), 0);
    struct seen *s = open_hans(f);
    assert_false(seen_already(s, 1, 1));
    seen_note(s, 3, 3);
    assert_true(seen_already(s, 3, 3));
    seen_close(s);
    unlink(f->file);

    assert_int_equal(mkdir(f->file, 0700), 0);
    s = open_hans(f);
    seen_note(s, 3, 3);
    seen_close(s); /* the rename onto a directory fails, silently */
    assert_int_equal(entries(f->dir), 1);
    rmdir(f->file);

    snprintf(target, sizeof(target), "%s/elsewhere", f->root);
    write_file(target, LIT(HEAD("hans") "last 42 1\n"));
    assert_int_equal(symlink(target, f->file), 0);
    s = open_hans(f);
    assert_false(seen_already(s, 1, 1));
    seen_close(s);
}

/* XDG_STATE_HOME must be absolute, else $HOME/.local/state; with neither, or a state directory
 * that cannot be made, nothing is written and nothing fails. */
static void where_the_record_lives(void **state)
{
    struct fixture *f = *state;
    char home[300], expect[400];
    snprintf(home, sizeof(home), "%s/home", f->root);
    setenv("HOME", home, 1);
    setenv("XDG_STATE_HOME", "relative/path", 1);
    struct seen *s = open_hans(f);
    snprintf(expect, sizeof(expect), "%s/.local/state/parley/seen-", home);
    assert_memory_equal(s->path, expect, strlen(expect));
    seen_note(s, 1, 1);
    seen_close(s);
    s = open_hans(f);
    assert_true(seen_already(s, 1, 1));
    seen_close(s);

    unsetenv("XDG_STATE_HOME");
    unsetenv("HOME");
    s = open_hans(f);
    assert_string_equal(s->path, "");
    seen_note(s, 1, 1);
    assert_true(seen_already(s, 1, 1));
    seen_close(s);

    char file[300];
    snprintf(file, sizeof(file), "%s/a-file", f->root);
    write_file(file, "x", 1);
    setenv("XDG_STATE_HOME", file, 1); /* parley/ cannot be made under a file */
    s = open_hans(f);
    seen_note(s, 1, 1);
    seen_close(s);
    setenv("XDG_STATE_HOME", f->root, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(remembers_across_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(restarted_ids_are_shown, setup, teardown),
        cmocka_unit_test_setup_teardown(damaged_files_are_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(strange_files_do_not_block, setup, teardown),
        cmocka_unit_test_setup_teardown(where_the_record_lives, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
