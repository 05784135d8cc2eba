/* Unit tests of src/server/auth.c: line parsing, loading, checks, hashing, appending, the
 * hashed rewrite and the lock-out rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "server/auth.h"

static const struct auth_cost cheap = {crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN};

/* A fresh temporary directory per test, removed afterwards. */
struct fixture {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/parley-auth-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/credentials.txt", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    DIR *d = opendir(f->dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            char p[512];
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", f->dir, de->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static char *read_text(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static int count_dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* Parses a NUL-terminated line; returns the result and fills `e` (secret freed by caller). */
static int parse(const char *line, struct auth_entry *e, bool *skipped, char *err)
{
    return auth_parse_line(line, strlen(line), e, skipped, err, 128);
}

static void test_parse_good(void **state)
{
    (void)state;
    struct auth_entry e;
    bool skipped = true;
    char err[128] = "";
    assert_int_equal(parse("hans falcon*solo", &e, &skipped, err), 0);
    assert_false(skipped);
    assert_string_equal(e.name, "hans");
    assert_string_equal(e.secret, "falcon*solo");
    assert_int_equal(e.kind, AUTH_PLAIN);
    free(e.secret);

    assert_int_equal(parse("yoda wise@!\r", &e, &skipped, err), 0);
    assert_string_equal(e.name, "yoda");
    assert_string_equal(e.secret, "wise@!");
    free(e.secret);

    assert_int_equal(parse("vader $argon2id$v=19$m=8,t=1,p=1$abc$def", &e, &skipped, err), 0);
    assert_int_equal(e.kind, AUTH_ARGON2ID);
    assert_string_equal(e.secret, "$argon2id$v=19$m=8,t=1,p=1$abc$def");
    free(e.secret);

    /* "$argon2i$" is not argon2id: a plain password that happens to look alike. */
    assert_int_equal(parse("leia $argon2i$x", &e, &skipped, err), 0);
    assert_int_equal(e.kind, AUTH_PLAIN);
    free(e.secret);

    char name32[40], line[200];
    memset(name32, 'n', 32);
    name32[32] = '\0';
    snprintf(line, sizeof line, "%s pw", name32);
    assert_int_equal(parse(line, &e, &skipped, err), 0);
    assert_string_equal(e.name, name32);
    free(e.secret);
}

static void test_parse_skipped(void **state)
{
    (void)state;
    struct auth_entry e;
    memset(&e, 0x5a, sizeof e);
    struct auth_entry before = e;
    bool skipped = false;
    char err[128] = "";
    assert_int_equal(parse("", &e, &skipped, err), 0);
    assert_true(skipped);
    skipped = false;
    assert_int_equal(parse("\r", &e, &skipped, err), 0);
    assert_true(skipped);
    skipped = false;
    assert_int_equal(parse("# a comment with spaces", &e, &skipped, err), 0);
    assert_true(skipped);
    skipped = false;
    assert_int_equal(parse("#nospace", &e, &skipped, err), 0);
    assert_true(skipped);
    assert_memory_equal(&e, &before, sizeof e);
}

static void expect_bad(const char *line, size_t len)
{
    struct auth_entry e;
    memset(&e, 0, sizeof e);
    bool skipped = true;
    char err[128] = "";
    assert_int_equal(auth_parse_line(line, len, &e, &skipped, err, sizeof err), -1);
    assert_false(skipped);
    assert_true(strlen(err) > 0);
    assert_null(e.secret);
}

static void test_parse_bad(void **state)
{
    (void)state;
    const char *bad[] = {
        "hans",        "hans  falcon", "hans falcon solo", " falcon",     "hans ",
        " ",           "ha\tns pw",    "hans fal\x01con",  "hans pw\x7f", "h\x80s pw",
        "hans pw\r\r", "\rhans pw",    "hans pw\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_bad(bad[i], strlen(bad[i]));

    char line[400];
    memset(line, 'n', 33);
    snprintf(line + 33, sizeof line - 33, " pw");
    expect_bad(line, strlen(line)); /* name of 33 bytes */
    memset(line, 'p', sizeof line);
    memcpy(line, "hans ", 5);
    expect_bad(line, 5 + 129); /* password of 129 bytes */
    expect_bad("hans p\0w", 8);

    /* the reason never echoes the password */
    struct auth_entry e;
    char err[128] = "";
    assert_int_equal(parse("hans sec ret", &e, NULL, err), -1);
    assert_null(strstr(err, "sec"));
}

static void test_load_mixed(void **state)
{
    struct fixture *f = *state;
    write_file(f->path, "# accounts\n"
                        "hans falcon\n"
                        "\n"
                        "yoda wise\r\n"
                        "broken\n"
                        "hans other\n"
                        "two  spaces\n"
                        "vader $argon2id$v=19$m=8,t=1,p=1$salt$hash\n"
                        "leia last"); /* no final newline */
    struct auth_table t;
    char err[256] = "junk";
    assert_int_equal(auth_load(f->path, NULL, &t, err, sizeof err), 0);
    assert_int_equal(t.count, 6);
    assert_int_equal(t.bad_lines, 2);
    assert_string_equal(t.entries[0].name, "hans");
    assert_string_equal(t.entries[0].secret, "falcon"); /* duplicate keeps the first */
    assert_string_equal(t.entries[1].name, "yoda");
    assert_string_equal(t.entries[1].secret, "wise");
    /* the names of broken lines stay taken, and no password fits them */
    assert_string_equal(t.entries[2].name, "broken");
    assert_int_equal(t.entries[2].kind, AUTH_UNUSABLE);
    assert_string_equal(t.entries[3].name, "two");
    assert_int_equal(t.entries[3].kind, AUTH_UNUSABLE);
    assert_false(auth_check(&t.entries[3], "spaces"));
    assert_false(auth_check(&t.entries[3], ""));
    assert_string_equal(t.entries[4].name, "vader");
    assert_int_equal(t.entries[4].kind, AUTH_ARGON2ID);
    assert_string_equal(t.entries[5].name, "leia");
    assert_string_equal(t.entries[5].secret, "last");
    assert_non_null(strstr(err, "line 5"));
    assert_null(strstr(err, "broken")); /* no space: it might hold a password, never shown */

    assert_ptr_equal(auth_find(&t, "yoda"), &t.entries[1]);
    assert_ptr_equal(auth_find(&t, "leia"), &t.entries[5]);
    assert_null(auth_find(&t, "Yoda"));
    assert_null(auth_find(&t, ""));
    auth_table_free(&t);
    assert_int_equal(t.count, 0);
    assert_null(t.entries);
}

static void test_load_clean_and_many(void **state)
{
    struct fixture *f = *state;
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 5000; i++)
        fprintf(fp, "user%d pw%d\n", i, i);
    fprintf(fp, "user42 again\n");
    assert_int_equal(fclose(fp), 0);
    struct auth_table t;
    char err[256] = "junk";
    assert_int_equal(auth_load(f->path, NULL, &t, err, sizeof err), 0);
    assert_int_equal(t.count, 5000);
    assert_non_null(strstr(err, "line 5001"));
    const struct auth_entry *e = auth_find(&t, "user42");
    assert_non_null(e);
    assert_string_equal(e->secret, "pw42");
    assert_string_equal(auth_find(&t, "user4999")->secret, "pw4999");
    auth_table_free(&t);

    write_file(f->path, "a b\nc d\n");
    assert_int_equal(auth_load(f->path, NULL, &t, err, sizeof err), 0);
    assert_int_equal(t.count, 2);
    assert_string_equal(err, "");
    auth_table_free(&t);
}

static void test_load_long_line(void **state)
{
    struct fixture *f = *state;
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    fputs("first one\n", fp);
    for (int i = 0; i < 100000; i++)
        fputc('x', fp);
    fputs(" y\nlast two\n", fp);
    assert_int_equal(fclose(fp), 0);
    struct auth_table t;
    char err[256] = "";
    assert_int_equal(auth_load(f->path, NULL, &t, err, sizeof err), 0);
    assert_int_equal(t.count, 2);
    assert_string_equal(t.entries[1].name, "last");
    assert_non_null(strstr(err, "line 2"));
    auth_table_free(&t);
}

static void test_load_missing(void **state)
{
    struct fixture *f = *state;
    struct auth_table t;
    char err[256] = "";
    assert_int_equal(auth_load(f->path, NULL, &t, err, sizeof err), -1);
    assert_int_equal(t.count, 0);
    assert_null(t.entries);
    assert_true(strlen(err) > 0);
}

static void test_check_plain(void **state)
{
    (void)state;
    char secret[] = "falcon";
    struct auth_entry e = {"hans", AUTH_PLAIN, secret};
    assert_true(auth_check(&e, "falcon"));
    assert_false(auth_check(&e, "Falcon"));
    assert_false(auth_check(&e, "falco"));
    assert_false(auth_check(&e, "falcon1"));
    assert_false(auth_check(&e, ""));
    assert_false(auth_check(&e, NULL));
    assert_false(auth_check(NULL, "falcon"));
    assert_false(auth_check_is_slow(&e));
}

static void test_hash_and_check(void **state)
{
    (void)state;
    char hash[128];
    assert_int_equal(auth_hash("s3cret!", &cheap, hash, sizeof hash), 0);
    assert_int_equal(strncmp(hash, "$argon2id$", 10), 0);
    assert_true(strlen(hash) < sizeof hash);
    struct auth_entry e = {"hans", AUTH_ARGON2ID, hash};
    assert_true(auth_check_is_slow(&e));
    assert_true(auth_check(&e, "s3cret!"));
    assert_false(auth_check(&e, "s3cret"));
    assert_false(auth_check(&e, "s3cret!!"));
    assert_false(auth_check(&e, ""));
    /* the same hash string read back through a line parses as argon2id */
    char line[200];
    snprintf(line, sizeof line, "hans %s", hash);
    struct auth_entry p;
    assert_int_equal(auth_parse_line(line, strlen(line), &p, NULL, NULL, 0), 0);
    assert_int_equal(p.kind, AUTH_ARGON2ID);
    assert_true(auth_check(&p, "s3cret!"));
    free(p.secret);

    char small[64];
    assert_int_equal(auth_hash("x", &cheap, small, sizeof small), -1);
}

static void test_append(void **state)
{
    struct fixture *f = *state;
    char hash[128];
    assert_int_equal(auth_hash("newpw", &cheap, hash, sizeof hash), 0);

    write_file(f->path, "hans falcon\n");
    assert_int_equal(auth_append(f->path, "luke", hash), 0);
    struct auth_table t;
    char err[256];
    assert_int_equal(auth_load(f->path, NULL, &t, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_int_equal(t.count, 2);
    const struct auth_entry *e = auth_find(&t, "luke");
    assert_non_null(e);
    assert_int_equal(e->kind, AUTH_ARGON2ID);
    assert_true(auth_check(e, "newpw"));
    assert_false(auth_check(e, "falcon"));
    auth_table_free(&t);

    /* no final newline: one is added first, the last line stays intact */
    write_file(f->path, "hans falcon");
    assert_int_equal(auth_append(f->path, "luke", hash), 0);
    char expect[256];
    snprintf(expect, sizeof expect, "hans falcon\nluke %s\n", hash);
    assert_string_equal(read_text(f->path), expect);
    assert_int_equal(auth_load(f->path, NULL, &t, err, sizeof err), 0);
    assert_int_equal(t.count, 2);
    assert_string_equal(auth_find(&t, "hans")->secret, "falcon");
    assert_true(auth_check(auth_find(&t, "luke"), "newpw"));
    auth_table_free(&t);

    /* empty file: no leading newline */
    write_file(f->path, "");
    assert_int_equal(auth_append(f->path, "luke", hash), 0);
    snprintf(expect, sizeof expect, "luke %s\n", hash);
    assert_string_equal(read_text(f->path), expect);

    /* refused: bad name, a hash with a space or newline, a missing file */
    assert_int_equal(auth_append(f->path, "bad name", hash), -1);
    assert_int_equal(auth_append(f->path, "x", "a\nb"), -1);
    assert_int_equal(auth_append(f->path, "x", "a b"), -1);
    assert_string_equal(read_text(f->path), expect);
    char missing[200];
    snprintf(missing, sizeof missing, "%s/nope.txt", f->dir);
    assert_int_equal(auth_append(missing, "x", hash), -1);
    assert_int_equal(access(missing, F_OK), -1);
}

static void test_rewrite_hashed(void **state)
{
    struct fixture *f = *state;
    char old_hash[128];
    assert_int_equal(auth_hash("kept", &cheap, old_hash, sizeof old_hash), 0);
    char text[1024];
    snprintf(text, sizeof text,
             "# header comment\n"
             "hans falcon\n"
             "\n"
             "yoda wise\r\n"
             "vader %s\n"
             "bad line here\n"
             "leia last",
             old_hash);
    write_file(f->path, text);
    assert_int_equal(chmod(f->path, 0640), 0);

    char err[256] = "";
    assert_int_equal(auth_rewrite_hashed(f->path, &cheap, err, sizeof err), 3);
    assert_string_equal(err, "");

    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    assert_int_equal(count_dir_entries(f->dir), 1); /* no temporary file left */

    const char *out = read_text(f->path);
    assert_null(strstr(out, "falcon"));
    assert_null(strstr(out, "wise"));
    assert_int_equal(strncmp(out, "# header comment\nhans $argon2id$", 32), 0);
    assert_non_null(strstr(out, "\n\nyoda $argon2id$"));
    assert_non_null(strstr(out, "\r\nvader "));
    char vader[200];
    snprintf(vader, sizeof vader, "vader %s\nbad line here\nleia $argon2id$", old_hash);
    assert_non_null(strstr(out, vader));
    assert_int_equal(out[strlen(out) - 1] != '\n', 1); /* still no final newline */

    struct auth_table t;
    assert_int_equal(auth_load(f->path, NULL, &t, err, sizeof err), 0);
    assert_int_equal(t.count, 5); /* and "bad", kept out of use */
    assert_int_equal(t.bad_lines, 1);
    const char *names[] = {"hans", "yoda", "vader", "leia"};
    const char *pws[] = {"falcon", "wise", "kept", "last"};
    for (int i = 0; i < 4; i++) {
        const struct auth_entry *e = auth_find(&t, names[i]);
        assert_non_null(e);
        assert_int_equal(e->kind, AUTH_ARGON2ID);
        assert_true(auth_check(e, pws[i]));
        assert_false(auth_check(e, "wrong"));
    }
    assert_string_equal(auth_find(&t, "vader")->secret, old_hash);
    auth_table_free(&t);

    /* a second pass has nothing to hash and leaves the file as it is */
    char before[4096];
    snprintf(before, sizeof before, "%s", read_text(f->path));
    assert_int_equal(auth_rewrite_hashed(f->path, &cheap, err, sizeof err), 0);
    assert_string_equal(read_text(f->path), before);
    assert_int_equal(count_dir_entries(f->dir), 1);
}

static void test_rewrite_missing(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    assert_int_equal(auth_rewrite_hashed(f->path, &cheap, err, sizeof err), -1);
    assert_true(strlen(err) > 0);
    assert_int_equal(count_dir_entries(f->dir), 0);
}

static void test_rewrite_bad_cost(void **state)
{
    /* a cost libsodium refuses: the hash fails, the original stays, nothing is left behind */
    struct fixture *f = *state;
    write_file(f->path, "hans falcon\n");
    struct auth_cost bad = {0, 0};
    char err[256] = "";
    assert_int_equal(auth_rewrite_hashed(f->path, &bad, err, sizeof err), -1);
    assert_true(strlen(err) > 0);
    assert_null(strstr(err, "falcon"));
    assert_string_equal(read_text(f->path), "hans falcon\n");
    assert_int_equal(count_dir_entries(f->dir), 1);
}

/* Issue 9 point 6: a registered "#x" became a comment at the next load. Every name the
 * server accepts must survive the file: each byte alone, first, in the middle and last, and
 * the longest names, are appended as the server appends a registration, read back and found
 * with their own secret; a name proto_is_name refuses is refused by auth_append. */
static void test_every_name_round_trips(void **state)
{
    struct fixture *f = *state;
    static char names[256 * 5][PROTO_MAX_NAME + 1];
    size_t n = 0;
    write_file(f->path, "# accounts\n");
    for (unsigned c = 1; c < 256; c++) {
        char shapes[5][PROTO_MAX_NAME + 1] = {
            {(char)c}, {(char)c, 'a'}, {'b', (char)c}, {'d', (char)c, 'e'}};
        memset(shapes[4], (int)c, PROTO_MAX_NAME);
        for (size_t k = 0; k < 5; k++) {
            const char *name = shapes[k];
            bool valid = proto_is_name((struct proto_slice){name, strlen(name)});
            bool seen = false;
            for (size_t i = 0; i < n && !seen; i++)
                seen = strcmp(names[i], name) == 0;
            char secret[32];
            snprintf(secret, sizeof secret, "pw%zu", n);
            if (!valid) {
                assert_int_equal(auth_append(f->path, name, secret), -1);
                continue;
            }
            if (seen)
                continue;
            assert_int_equal(auth_append(f->path, name, secret), 0);
            snprintf(names[n++], sizeof names[0], "%s", name);
        }
    }
    assert_true(n > 300);
    struct auth_table t;
    char err[256] = "junk";
    assert_int_equal(auth_load(f->path, NULL, &t, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_int_equal(t.bad_lines, 0);
    assert_int_equal(t.count, n);
    for (size_t i = 0; i < n; i++) {
        char secret[32];
        snprintf(secret, sizeof secret, "pw%zu", i);
        const struct auth_entry *e = auth_find(&t, names[i]);
        if (!e)
            fail_msg("name \"%s\" did not survive the file", names[i]);
        assert_string_equal(e->name, names[i]);
        assert_true(auth_check(e, secret));
    }
    auth_table_free(&t);
}

static void test_hash_cost(void **state)
{
    (void)state;
    struct auth_cost c;
    assert_int_equal(auth_hash_cost("$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA", &c), 0);
    assert_int_equal(c.ops, 2);
    assert_int_equal(c.mem, 65536u * 1024u);
    assert_int_equal(auth_hash_cost("$argon2id$m=8,t=1,p=1$a$b", &c), 0); /* no version */
    assert_int_equal(c.mem, 8192);
    assert_int_equal(auth_hash_cost("$argon2id$v=19$m=4294967295,t=4294967295,p=1$a$b", &c), 0);
    assert_int_equal(c.ops, 4294967295ull);
    char hash[128];
    assert_int_equal(auth_hash("pw", &cheap, hash, sizeof hash), 0);
    assert_int_equal(auth_hash_cost(hash, &c), 0);
    assert_int_equal(c.ops, cheap.ops);
    assert_int_equal(c.mem, cheap.mem);
    static const char *bad[] = {
        "$argon2i$v=19$m=8,t=1,p=1$a$b",   "$argon2id$v=19$m=,t=1,p=1$a$b",
        "$argon2id$v=19$m=8,t=1$a$b",      "$argon2id$v=19$m=99999999999,t=1,p=1$a$b",
        "$argon2id$v=19$t=1,m=8,p=1$a$b",  "$argon2id$v=$m=8,t=1,p=1$a$b",
        "$argon2id$v=19$m=8,t=1,p=1",      "$argon2id$v=19$m=-8,t=1,p=1$a$b",
        "$argon2id$v=19$m=8,t=1,p=1x$a$b", "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (auth_hash_cost(bad[i], &c) == 0)
            fail_msg("cost of \"%s\" was read", bad[i]);
    assert_int_equal(auth_hash_cost(NULL, &c), -1);
}

/* Issue 9 point 9: a line with a 4 GiB memory cost made every login for that name take
 * seconds and gigabytes. Over the cap, the line is refused at load with the reason and its
 * line number, its name stays out of use, and the rest of the file loads. */
static void test_load_caps_hash_cost(void **state)
{
    struct fixture *f = *state;
    char ok_hash[128], text[1024];
    assert_int_equal(auth_hash("right", &cheap, ok_hash, sizeof ok_hash), 0);
    snprintf(text, sizeof text,
             "big $argon2id$v=19$m=4194304,t=1,p=1$c2FsdA$aGFzaA\n"
             "slow $argon2id$v=19$m=8,t=100,p=1$c2FsdA$aGFzaA\n"
             "odd $argon2id$v=19$m=8$c2FsdA$aGFzaA\n"
             "fine %s\n"
             "hans falcon\n"
             "twice $argon2id$v=19$m=4194304,t=1,p=1$c2FsdA$aGFzaA\n"
             "twice %s\n",
             ok_hash, ok_hash);
    write_file(f->path, text);
    const struct auth_cost cap = {3, 256u << 20};
    struct auth_table t;
    char err[256] = "";
    assert_int_equal(auth_load(f->path, &cap, &t, err, sizeof err), 0);
    assert_int_equal(t.bad_lines, 4);
    assert_non_null(strstr(err, "line 1: argon2id cost t=1 m=4194304 KiB is over the cap"));
    assert_non_null(strstr(err, "big cannot log in"));
    const char *unusable[] = {"big", "slow", "odd"};
    for (size_t i = 0; i < 3; i++) {
        const struct auth_entry *e = auth_find(&t, unusable[i]);
        assert_non_null(e);
        assert_int_equal(e->kind, AUTH_UNUSABLE);
        assert_false(auth_check_is_slow(e));
    }
    assert_true(auth_check(auth_find(&t, "fine"), "right"));
    assert_true(auth_check(auth_find(&t, "hans"), "falcon"));
    /* a usable line takes the place of a refused one of the same name */
    assert_int_equal(auth_find(&t, "twice")->kind, AUTH_ARGON2ID);
    assert_true(auth_check(auth_find(&t, "twice"), "right"));
    assert_int_equal(t.count, 6);
    auth_table_free(&t);

    /* without a cap only the unreadable parameters are refused */
    assert_int_equal(auth_load(f->path, NULL, &t, err, sizeof err), 0);
    assert_int_equal(t.bad_lines, 1);
    assert_int_equal(auth_find(&t, "big")->kind, AUTH_ARGON2ID);
    assert_int_equal(auth_find(&t, "odd")->kind, AUTH_UNUSABLE);
    auth_table_free(&t);
}

/* Issue 9 point 7: a reload of an empty, truncated or garbled file removed every offline
 * account. The verdict refuses a file with a bad line or one that loses more than the
 * allowed share, and lets a reload that removes a few accounts on purpose through. */
static void test_reload_verdict(void **state)
{
    (void)state;
    struct auth_table clean = {0}, garbled = {0};
    garbled.bad_lines = 1;
    assert_int_equal(auth_reload_verdict(&clean, 0, 0, 50), AUTH_RELOAD_OK);
    assert_int_equal(auth_reload_verdict(&clean, 10, 0, 50), AUTH_RELOAD_OK);
    assert_int_equal(auth_reload_verdict(&clean, 10, 5, 50), AUTH_RELOAD_OK);
    assert_int_equal(auth_reload_verdict(&clean, 10, 6, 50), AUTH_RELOAD_LOSES_MANY);
    assert_int_equal(auth_reload_verdict(&clean, 6, 6, 50), AUTH_RELOAD_LOSES_MANY); /* empty */
    assert_int_equal(auth_reload_verdict(&clean, 1, 1, 50), AUTH_RELOAD_LOSES_MANY);
    assert_int_equal(auth_reload_verdict(&clean, 2, 1, 50), AUTH_RELOAD_OK);
    assert_int_equal(auth_reload_verdict(&clean, 6, 6, 100), AUTH_RELOAD_OK);
    assert_int_equal(auth_reload_verdict(&clean, 1000, 1, 0), AUTH_RELOAD_LOSES_MANY);
    assert_int_equal(auth_reload_verdict(&clean, 1000, 0, 0), AUTH_RELOAD_OK);
    assert_int_equal(auth_reload_verdict(&garbled, 10, 0, 100), AUTH_RELOAD_BAD_LINES);
    assert_int_equal(auth_reload_verdict(&garbled, 0, 0, 50), AUTH_RELOAD_BAD_LINES);
}

/* Unix seconds to the milliseconds lockout_* take. */
#define MS(sec) ((int64_t)(sec)*1000)

static void test_lockout(void **state)
{
    (void)state;
    struct lockout l = {0, 0};
    int64_t t0 = 1000;
    assert_false(lockout_is_locked(&l, MS(t0)));
    assert_int_equal(lockout_fail(&l, MS(t0), 3, 60), LOCKOUT_RETRY);
    assert_int_equal(l.failures, 1);
    assert_int_equal(lockout_fail(&l, MS(t0 + 1), 3, 60), LOCKOUT_RETRY);
    assert_int_equal(l.failures, 2);
    assert_false(lockout_is_locked(&l, MS(t0 + 1)));
    assert_int_equal(lockout_fail(&l, MS(t0 + 2), 3, 60), LOCKOUT_NOW_LOCKED);
    assert_int_equal(l.failures, 3);
    assert_int_equal(l.locked_until, t0 + 62);
    assert_true(lockout_is_locked(&l, MS(t0 + 2)));
    assert_true(lockout_is_locked(&l, MS(t0 + 62) - 1));
    assert_int_equal(l.failures, 3);
    /* expiry clears the lock and the count */
    assert_false(lockout_is_locked(&l, MS(t0 + 62)));
    assert_int_equal(l.locked_until, 0);
    assert_int_equal(l.failures, 0);
    assert_int_equal(lockout_fail(&l, MS(t0 + 70), 3, 60), LOCKOUT_RETRY);
    assert_int_equal(l.failures, 1);

    /* success resets */
    assert_int_equal(lockout_fail(&l, MS(t0 + 71), 3, 60), LOCKOUT_RETRY);
    lockout_success(&l);
    assert_int_equal(l.failures, 0);
    assert_int_equal(l.locked_until, 0);
    assert_int_equal(lockout_fail(&l, MS(t0 + 72), 3, 60), LOCKOUT_RETRY);
    assert_int_equal(lockout_fail(&l, MS(t0 + 73), 3, 60), LOCKOUT_RETRY);
    assert_int_equal(lockout_fail(&l, MS(t0 + 74), 3, 60), LOCKOUT_NOW_LOCKED);

    /* a failure after an expired lock (without asking first) starts a fresh count */
    assert_int_equal(lockout_fail(&l, MS(t0 + 200), 3, 60), LOCKOUT_RETRY);
    assert_int_equal(l.failures, 1);
    assert_int_equal(l.locked_until, 0);

    /* max 1: the first failure locks */
    struct lockout one = {0, 0};
    assert_int_equal(lockout_fail(&one, MS(5), 1, 10), LOCKOUT_NOW_LOCKED);
    assert_true(lockout_is_locked(&one, MS(15) - 1));
    assert_false(lockout_is_locked(&one, MS(15)));

    /* the longest duration does not overflow: locked for good */
    struct lockout ever = {0, 0};
    assert_int_equal(lockout_fail(&ever, INT64_MAX, 1, INT64_MAX), LOCKOUT_NOW_LOCKED);
    assert_true(lockout_is_locked(&ever, INT64_MAX));
}

/* Issue 9 point 20: a lock-out made 0.9 s into a second lasted up to a second less than
 * block_duration (the end was whole seconds from the start's whole second). It must last at
 * least the duration, whatever the fraction of the second it starts in. */
static void test_lockout_lasts_at_least_duration(void **state)
{
    (void)state;
    for (int64_t frac = 0; frac < 1000; frac += 100) {
        for (int64_t d = 0; d <= 3; d++) {
            struct lockout l = {0, 0};
            int64_t start = MS(100) + frac;
            assert_int_equal(lockout_fail(&l, start, 1, d), LOCKOUT_NOW_LOCKED);
            if (d > 0)
                assert_true(lockout_is_locked(&l, start + MS(d) - 1));
            /* and never more than a second longer */
            struct lockout copy = l;
            assert_false(lockout_is_locked(&copy, start + MS(d) + 1000));
        }
    }
    struct lockout l = {0, 0};
    assert_int_equal(lockout_fail(&l, 100900, 1, 2), LOCKOUT_NOW_LOCKED);
    assert_int_equal(l.locked_until, 103);
    assert_true(lockout_is_locked(&l, 102899));
    assert_false(lockout_is_locked(&l, 103000));
}

int main(void)
{
    if (auth_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_skipped),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test_setup_teardown(test_load_mixed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_clean_and_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_long_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_missing, setup, teardown),
        cmocka_unit_test(test_check_plain),
        cmocka_unit_test(test_hash_and_check),
        cmocka_unit_test_setup_teardown(test_append, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rewrite_hashed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rewrite_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rewrite_bad_cost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_name_round_trips, setup, teardown),
        cmocka_unit_test(test_hash_cost),
        cmocka_unit_test_setup_teardown(test_load_caps_hash_cost, setup, teardown),
        cmocka_unit_test(test_reload_verdict),
        cmocka_unit_test(test_lockout),
        cmocka_unit_test(test_lockout_lasts_at_least_duration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
