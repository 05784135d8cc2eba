/* Unit tests for the queue log (src/server/qlog.c): replay, cut-off of unfinished batches,
 * undo of a batch the disk refused, rewrite, ids that never repeat, and damaged files: only a
 * torn end may be cut; damage elsewhere is copied aside and read around. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>

#include <cmocka.h>

#include "server/qlog.h"

struct fx {
    char dir[PATH_MAX / 2];
    char path[PATH_MAX];
    struct qlog *q;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    char err[256] = "";

    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "%s/parley-qlog-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/parley.queue", f->dir);
    assert_int_equal(qlog_open(&f->q, f->path, err, sizeof err), 0);
    *state = f;
    return 0;
}

/* Calls `fn` with the path of every copy of a damaged log in the fixture's directory; returns
 * how many there are. */
static int each_copy(struct fx *f, void (*fn)(const char *path))
{
    DIR *d = opendir(f->dir);
    struct dirent *e;
    char path[PATH_MAX + 256];
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "parley.queue.damaged-", 21) != 0)
            continue;
        n++;
        snprintf(path, sizeof path, "%s/%s", f->dir, e->d_name);
        if (fn)
            fn(path);
    }
    closedir(d);
    return n;
}

static void remove_file(const char *path)
{
    unlink(path);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char tmp[PATH_MAX + 8];

    qlog_close(f->q);
    unlink(f->path);
    snprintf(tmp, sizeof tmp, "%s.new", f->path);
    unlink(tmp);
    each_copy(f, remove_file);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void reopen(struct fx *f)
{
    char err[256] = "";

    qlog_close(f->q);
    f->q = NULL;
    assert_int_equal(qlog_open(&f->q, f->path, err, sizeof err), 0);
}

static off_t file_size(const char *path)
{
    struct stat sb;

    assert_int_equal(stat(path, &sb), 0);
    return sb.st_size;
}

static int64_t push(struct qlog *q, const char *to, const char *body)
{
    int64_t id = -1;

    assert_int_equal(qlog_push(q, "alice", to, 7, body, strlen(body), &id), 0);
    assert_true(id > 0);
    return id;
}

/* The ids and bodies of a queue, joined as "id:body,id:body". */
struct listing {
    char text[1024];
};

static int list_one(void *ctx, const struct store_msg *m)
{
    struct listing *l = ctx;
    size_t used = strlen(l->text);

    snprintf(l->text + used, sizeof l->text - used, "%s%lld:%.*s", used ? "," : "",
             (long long)m->id, (int)m->body_len, m->body);
    return 0;
}

static const char *list(struct qlog *q, const char *to, struct listing *l)
{
    l->text[0] = '\0';
    assert_int_equal(qlog_load(q, to, 0, 0, list_one, l), 0);
    return l->text;
}

static void test_replay_after_reopen(void **state)
{
    struct fx *f = *state;
    struct listing l;

    int64_t a = push(f->q, "bob", "one");
    push(f->q, "bob", "two");
    int64_t c = push(f->q, "carol", "three");
    int64_t d = push(f->q, "bob", "four");
    assert_int_equal(qlog_ack(f->q, "bob", a + 1), 0);
    assert_int_equal(qlog_commit(f->q), 0);
    reopen(f);
    assert_int_equal(qlog_count(f->q, "bob"), 1);
    assert_int_equal(qlog_count(f->q, "carol"), 1);
    assert_int_equal(qlog_count(f->q, "dave"), 0);
    char want[64];
    snprintf(want, sizeof want, "%lld:four", (long long)d);
    assert_string_equal(list(f->q, "bob", &l), want);
    snprintf(want, sizeof want, "%lld:three", (long long)c);
    assert_string_equal(list(f->q, "carol", &l), want);
    assert_int_equal(push(f->q, "bob", "five"), d + 1);
}

/* Ids stay unique across restarts and rewrites even when every message was acknowledged. */
static void test_ids_never_repeat(void **state)
{
    struct fx *f = *state;

    int64_t last = 0;
    for (int i = 0; i < 5; i++)
        last = push(f->q, "bob", "x");
    assert_int_equal(qlog_ack(f->q, "bob", last), 0);
    assert_int_equal(qlog_commit(f->q), 0);
    reopen(f);
    assert_int_equal(qlog_count(f->q, "bob"), 0);
    assert_int_equal(qlog_next_id(f->q), last + 1);
    assert_int_equal(qlog_raise_next_id(f->q, last + 100), 0);
    assert_int_equal(qlog_raise_next_id(f->q, 3), 0); /* never lowers */
    assert_int_equal(qlog_commit(f->q), 0);
    reopen(f);
    assert_int_equal(push(f->q, "bob", "y"), last + 100);
}

/* A batch whose COMMIT never reached the file whole (a crash during the write) is cut off at
 * open; what was committed before stays; nothing is reported as damage. */
static void test_unfinished_batch_cut(void **state)
{
    struct fx *f = *state;
    struct listing l;

    int64_t a = push(f->q, "bob", "kept");
    assert_int_equal(qlog_commit(f->q), 0);
    off_t committed = file_size(f->path);
    push(f->q, "bob", "torn");
    assert_int_equal(qlog_commit(f->q), 0);
    qlog_close(f->q);
    f->q = NULL;
    assert_int_equal(truncate(f->path, file_size(f->path) - 1), 0); /* part of the COMMIT */

    reopen(f);
    char want[64];
    snprintf(want, sizeof want, "%lld:kept", (long long)a);
    assert_string_equal(list(f->q, "bob", &l), want);
    assert_int_equal(file_size(f->path), committed);
    assert_false(qlog_damaged(f->q));
    assert_int_equal(each_copy(f, NULL), 0);
    /* The log goes on from there. */
    int64_t c = push(f->q, "bob", "after");
    assert_true(c > a);
    assert_int_equal(qlog_commit(f->q), 0);
    reopen(f);
    assert_int_equal(qlog_count(f->q, "bob"), 2);
}

/* Zeroes after the last batch (a file extended by a crash but never written) are a torn end. */
static void test_zero_tail_cut(void **state)
{
    struct fx *f = *state;
    static const char zeroes[4096];

    push(f->q, "bob", "kept");
    assert_int_equal(qlog_commit(f->q), 0);
    off_t committed = file_size(f->path);
    qlog_close(f->q);
    f->q = NULL;
    int fd = open(f->path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, zeroes, sizeof zeroes), (ssize_t)sizeof zeroes);
    close(fd);
    reopen(f);
    assert_int_equal(qlog_count(f->q, "bob"), 1);
    assert_int_equal(file_size(f->path), committed);
    assert_false(qlog_damaged(f->q));
    assert_int_equal(each_copy(f, NULL), 0);
}

/* Flips one bit of the file at `off`. */
static void flip_bit(const char *path, off_t off)
{
    unsigned char b;
    int fd = open(path, O_RDWR);

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x10;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

/* Reads a whole file into `buf` (of `cap` bytes); returns its length. */
static size_t read_all(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, cap);
    assert_true(n >= 0 && (size_t)n < cap);
    close(fd);
    return (size_t)n;
}

static char copy_text[1 << 16];
static size_t copy_len;

static void read_copy(const char *path)
{
    copy_len = read_all(path, copy_text, sizeof copy_text);
}

/* Commits three batches for bob ("one", "two", "three") and closes the log; returns the ids
 * and the offset where the second batch begins. */
static off_t three_batches(struct fx *f, int64_t id[3])
{
    static const char *const bodies[3] = {"one", "two", "three"};
    off_t second = 0;

    for (int i = 0; i < 3; i++) {
        if (i == 1)
            second = file_size(f->path);
        id[i] = push(f->q, "bob", bodies[i]);
        assert_int_equal(qlog_commit(f->q), 0);
    }
    qlog_close(f->q);
    f->q = NULL;
    return second;
}

/* Damage in the middle (a bit flipped in a committed record, or in its length) deletes no
 * other record: the damaged file is copied aside byte for byte, the records before and after
 * the damage are kept, and the log is rewritten without it. */
static void test_damage_in_the_middle_keeps_the_rest(void **state)
{
    struct fx *f = *state;
    struct listing l;
    static char before[1 << 16];
    int64_t id[3];
    char want[64];
    static const off_t where[] = {8 + 30, 0}; /* in the body of "two"; in its length field */

    for (size_t w = 0; w < sizeof where / sizeof where[0]; w++) {
        if (w > 0) {
            each_copy(f, remove_file);
            unlink(f->path);
            reopen(f);
        }
        off_t second = three_batches(f, id);
        flip_bit(f->path, second + where[w]);
        size_t before_len = read_all(f->path, before, sizeof before);

        reopen(f);
        assert_true(qlog_damaged(f->q));
        snprintf(want, sizeof want, "%lld:one,%lld:three", (long long)id[0], (long long)id[2]);
        assert_string_equal(list(f->q, "bob", &l), want);
        assert_int_equal(each_copy(f, read_copy), 1);
        assert_int_equal(copy_len, before_len);
        assert_memory_equal(copy_text, before, before_len);
        /* Ids go on above every readable one; the rewritten log is whole. */
        assert_true(push(f->q, "bob", "four") > id[2]);
        assert_int_equal(qlog_commit(f->q), 0);
        reopen(f);
        assert_false(qlog_damaged(f->q));
        assert_int_equal(each_copy(f, NULL), 1);
        assert_int_equal(qlog_count(f->q, "bob"), 3);
    }
}

/* A damaged last COMMIT (the record is whole: the batch was written whole) keeps its batch. */
static void test_damaged_last_commit_keeps_its_batch(void **state)
{
    struct fx *f = *state;
    struct listing l;
    int64_t id[3];
    char want[64];

    three_batches(f, id);
    flip_bit(f->path, file_size(f->path) - 1);
    reopen(f);
    assert_true(qlog_damaged(f->q));
    snprintf(want, sizeof want, "%lld:one,%lld:two,%lld:three", (long long)id[0], (long long)id[1],
             (long long)id[2]);
    assert_string_equal(list(f->q, "bob", &l), want);
    assert_int_equal(each_copy(f, NULL), 1);
}

/* Junk after an unfinished batch is no torn write: the batch is cut as before, but the file
 * is kept aside and the damage reported. */
static void test_junk_at_the_end_is_kept_aside(void **state)
{
    struct fx *f = *state;

    push(f->q, "bob", "kept");
    assert_int_equal(qlog_commit(f->q), 0);
    push(f->q, "bob", "torn");
    assert_int_equal(qlog_commit(f->q), 0);
    qlog_close(f->q);
    f->q = NULL;
    assert_int_equal(truncate(f->path, file_size(f->path) - 1), 0);
    int fd = open(f->path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "\x05\0\0\0junkjunk", 12), 12);
    close(fd);
    reopen(f);
    assert_true(qlog_damaged(f->q));
    assert_int_equal(qlog_count(f->q, "bob"), 1);
    assert_int_equal(each_copy(f, NULL), 1);
}

/* The store id survives reopening and every rewrite; a log without one says so. */
static void test_store_id_kept(void **state)
{
    struct fx *f = *state;
    static const char id[] = "0123456789abcdef0123456789abcdef";
    int64_t ids[3];

    assert_null(qlog_store_id(f->q));
    assert_int_equal(qlog_set_store_id(f->q, "short"), -1);
    assert_int_equal(qlog_set_store_id(f->q, id), 0);
    assert_int_equal(qlog_commit(f->q), 0);
    reopen(f);
    assert_string_equal(qlog_store_id(f->q), id);
    off_t second = three_batches(f, ids);
    flip_bit(f->path, second + 8 + 30); /* damaged: rewritten at open */
    reopen(f);
    assert_true(qlog_damaged(f->q));
    assert_string_equal(qlog_store_id(f->q), id);
    reopen(f);
    assert_false(qlog_damaged(f->q));
    assert_string_equal(qlog_store_id(f->q), id);
}

/* Sets the largest file this process may write (RLIMIT_FSIZE); writes past it fail. */
static void limit_file_size(rlim_t bytes)
{
    struct rlimit rl;

    assert_int_equal(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rl.rlim_cur = bytes;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

/* A batch the disk refuses (here: a file size limit, as on a full disk) is undone in memory:
 * pushes gone, acknowledged messages back, the file as before; its ids are not given again. */
static void test_failed_batch_undone(void **state)
{
    struct fx *f = *state;
    struct listing l;
    char before[1024];

    int64_t a = push(f->q, "bob", "a");
    push(f->q, "bob", "b");
    assert_int_equal(qlog_commit(f->q), 0);
    snprintf(before, sizeof before, "%s", list(f->q, "bob", &l));
    off_t size = file_size(f->path);

    signal(SIGXFSZ, SIG_IGN);
    limit_file_size((rlim_t)size + 10); /* room for a part of the batch only */
    assert_int_equal(qlog_ack(f->q, "bob", a), 0);
    int64_t c = push(f->q, "bob", "c");
    assert_int_equal(qlog_ack(f->q, "bob", c), 0);
    int64_t d = push(f->q, "carol", "d");
    assert_int_equal(qlog_count(f->q, "bob"), 0);
    assert_int_equal(qlog_commit(f->q), -1);
    assert_non_null(strstr(qlog_error(f->q), "writing"));
    limit_file_size(RLIM_INFINITY);
    signal(SIGXFSZ, SIG_DFL);

    assert_string_equal(list(f->q, "bob", &l), before);
    assert_int_equal(qlog_count(f->q, "bob"), 2);
    assert_int_equal(qlog_count(f->q, "carol"), 0);
    assert_int_equal(file_size(f->path), size);
    int64_t e = push(f->q, "bob", "e");
    assert_true(e > d);
    assert_int_equal(qlog_commit(f->q), 0);
    reopen(f);
    assert_int_equal(qlog_count(f->q, "bob"), 3);
    assert_int_equal(qlog_count(f->q, "carol"), 0);
    assert_int_equal(qlog_next_id(f->q), e + 1);
}

/* When the log has grown well past its live messages it is rewritten with only them. */
static void test_rewrite_keeps_live_messages(void **state)
{
    struct fx *f = *state;
    static char body[1001];
    struct listing l;
    int64_t keep = 0, last = 0;

    memset(body, 'z', 1000);
    keep = push(f->q, "carol", "live");
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < 100; i++)
            last = push(f->q, "bob", body);
        assert_int_equal(qlog_ack(f->q, "bob", last - 1), 0);
        assert_int_equal(qlog_commit(f->q), 0);
    }
    /* 20 MB were written; the live data is two messages: a rewrite at 16 MiB left the file
     * with what came after it. */
    assert_true(file_size(f->path) < (8 << 20));
    reopen(f);
    char want[64];
    snprintf(want, sizeof want, "%lld:live", (long long)keep);
    assert_string_equal(list(f->q, "carol", &l), want);
    assert_int_equal(qlog_count(f->q, "bob"), 1);
    assert_int_equal(qlog_next_id(f->q), last + 1);
}

static void test_load_after_and_limit(void **state)
{
    struct fx *f = *state;
    struct listing l = {{0}};

    int64_t a = push(f->q, "bob", "1");
    push(f->q, "bob", "2");
    int64_t c = push(f->q, "bob", "3");
    push(f->q, "bob", "4");
    assert_int_equal(qlog_load(f->q, "bob", a, 2, list_one, &l), 0);
    char want[64];
    snprintf(want, sizeof want, "%lld:2,%lld:3", (long long)a + 1, (long long)c);
    assert_string_equal(l.text, want);
    /* An empty body and an unknown recipient. */
    int64_t id;
    assert_int_equal(qlog_push(f->q, "alice", "dave", 1, NULL, 0, &id), 0);
    snprintf(want, sizeof want, "%lld:", (long long)id);
    assert_string_equal(list(f->q, "dave", &l), want);
    assert_int_equal(qlog_count(f->q, "dave"), 1);
    assert_int_equal(qlog_count(f->q, "nobody"), 0);
    assert_int_equal(qlog_ack(f->q, "nobody", 100), 0);
    assert_int_equal(qlog_push(f->q, "alice", "", 1, "x", 1, &id), -1);
}

static void test_not_a_log_refused(void **state)
{
    struct fx *f = *state;
    char err[256] = "";
    struct qlog *q = NULL;

    qlog_close(f->q);
    f->q = NULL;
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    fputs("SQLite format 3\n", fp);
    fclose(fp);
    assert_int_equal(qlog_open(&q, f->path, err, sizeof err), -1);
    assert_null(q);
    assert_non_null(strstr(err, "not a Parley queue log"));
    unlink(f->path);
    reopen(f); /* a missing file is a new, empty log */
    assert_int_equal(qlog_next_id(f->q), 1);
}

/* ---- a random walk against a model ---- */

#define MODEL_USERS 3
#define MODEL_MAX 4000

/* What the log should hold: per recipient, the ids and body lengths in order. */
struct model {
    int64_t id[MODEL_USERS][MODEL_MAX];
    size_t len[MODEL_USERS][MODEL_MAX];
    size_t n[MODEL_USERS];
};

static const char *const model_names[MODEL_USERS] = {"ann", "bob", "cyd"};

/* A body of `len` bytes that encodes its id, so a mix-up shows. */
static void model_body(int64_t id, size_t len, char *out)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (char)('a' + (id * 7 + (int64_t)i) % 26);
}

static void model_ack(struct model *m, int u, int64_t up_to)
{
    size_t k = 0;
    while (k < m->n[u] && m->id[u][k] <= up_to)
        k++;
    memmove(m->id[u], m->id[u] + k, (m->n[u] - k) * sizeof m->id[u][0]);
    memmove(m->len[u], m->len[u] + k, (m->n[u] - k) * sizeof m->len[u][0]);
    m->n[u] -= k;
}

struct model_check {
    const struct model *m;
    int u;
    size_t at;
    char body[70000];
};

static int model_one(void *ctx, const struct store_msg *sm)
{
    struct model_check *c = ctx;
    assert_true(c->at < c->m->n[c->u]);
    assert_int_equal(sm->id, c->m->id[c->u][c->at]);
    assert_int_equal(sm->body_len, c->m->len[c->u][c->at]);
    model_body(sm->id, sm->body_len, c->body);
    assert_memory_equal(sm->body, c->body, sm->body_len);
    assert_string_equal(sm->recipient, model_names[c->u]);
    c->at++;
    return 0;
}

static void model_compare(struct qlog *q, const struct model *m)
{
    static struct model_check c;
    for (int u = 0; u < MODEL_USERS; u++) {
        c.m = m;
        c.u = u;
        c.at = 0;
        assert_int_equal(qlog_load(q, model_names[u], 0, 0, model_one, &c), 0);
        assert_int_equal(c.at, m->n[u]);
        assert_int_equal(qlog_count(q, model_names[u]), (int64_t)m->n[u]);
    }
}

/* Thousands of random pushes, acknowledgements, commits (some refused by the disk, part
 * written) and reopenings: the log always holds exactly what the committed model holds. */
static void test_random_against_model(void **state)
{
    struct fx *f = *state;
    static struct model committed, pending;
    static char body[70000];
    int64_t last_id = 0, pushed_max = 0, committed_max = 0;

    memset(&committed, 0, sizeof committed);
    memset(&pending, 0, sizeof pending);
    srand(12345);
    signal(SIGXFSZ, SIG_IGN);
    for (int step = 0; step < 6000; step++) {
        int op = rand() % 100, u = rand() % MODEL_USERS;
        if (op < 55 && pending.n[u] < MODEL_MAX) {
            size_t len =
                rand() % 50 == 0 ? 65000 + (size_t)(rand() % 4000) : (size_t)(rand() % 200);
            int64_t id;
            model_body(qlog_next_id(f->q), len, body);
            assert_int_equal(qlog_push(f->q, "x", model_names[u], 1, body, len, &id), 0);
            assert_true(id > last_id);
            last_id = pushed_max = id;
            pending.id[u][pending.n[u]] = id;
            pending.len[u][pending.n[u]++] = len;
        } else if (op < 80) {
            int64_t up_to = pending.n[u] ? pending.id[u][rand() % pending.n[u]] : 0;
            assert_int_equal(qlog_ack(f->q, model_names[u], up_to), 0);
            model_ack(&pending, u, up_to);
        } else if (op < 88) {
            limit_file_size((rlim_t)file_size(f->path) + (rlim_t)(rand() % 64));
            int rc = qlog_commit(f->q);
            limit_file_size(RLIM_INFINITY);
            if (rc == 0) {
                committed = pending;
                committed_max = pushed_max;
            } else {
                pending = committed;
                pushed_max = committed_max;
            }
        } else {
            assert_int_equal(qlog_commit(f->q), 0);
            committed = pending;
            committed_max = pushed_max;
            if (op >= 97) {
                /* Ids of refused batches were never shown to anyone and may come again after
                 * a restart; a committed id never does. */
                reopen(f);
                assert_true(qlog_next_id(f->q) > committed_max);
                last_id = committed_max;
            }
        }
        model_compare(f->q, &pending);
    }
    signal(SIGXFSZ, SIG_DFL);
    reopen(f); /* closing writes the pending batch */
    model_compare(f->q, &pending);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_replay_after_reopen),
        T(test_ids_never_repeat),
        T(test_unfinished_batch_cut),
        T(test_failed_batch_undone),
        T(test_rewrite_keeps_live_messages),
        T(test_load_after_and_limit),
        T(test_not_a_log_refused),
        T(test_random_against_model),
        T(test_zero_tail_cut),
        T(test_damage_in_the_middle_keeps_the_rest),
        T(test_damaged_last_commit_keeps_its_batch),
        T(test_junk_at_the_end_is_kept_aside),
        T(test_store_id_kept),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
