/* Unit tests for the queue log (src/server/qlog.c): replay, cut-off of unfinished batches,
 * undo of a batch the disk refused, rewrite, ids that never repeat, and damaged files: only a
 * torn end may be cut; damage elsewhere is copied aside and read around. The rewrite in slices:
 * every change made while it copies reaches the new file once, a crash in any state leaves a
 * whole log, and a failure keeps the old one. */
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
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>

#include <cmocka.h>

#include "server/qlog.h"

struct fx {
    char dir[PATH_MAX / 2];
    char path[PATH_MAX];
    char new_path[PATH_MAX + 8]; /* the file of a rewrite */
    struct qlog_params params;   /* what every open of the test uses */
    bool hold;                   /* the log hands its flushes to hold_job */
    struct qlog *q;
};

/* ---- jobs handed off by the log, held until the test runs them (the worker pool) ---- */

struct held_job {
    void (*job)(void *arg);
    void (*done)(void *arg);
    void *arg;
};

static struct held_job held[8];
static size_t n_held;
static bool refuse_jobs; /* hand-offs fail, as when the pool's queue is full */

static int hold_job(void *ctx, void (*job)(void *arg), void (*done)(void *arg), void *arg)
{
    (void)ctx;
    if (refuse_jobs || n_held == sizeof held / sizeof held[0])
        return -1;
    held[n_held++] = (struct held_job){job, done, arg};
    return 0;
}

/* Runs every held job, then its `done` (as the loop would); returns how many ran. */
static size_t run_held(void)
{
    size_t n = n_held;
    for (size_t i = 0; i < n; i++) {
        held[i].job(held[i].arg);
        if (held[i].done)
            held[i].done(held[i].arg);
    }
    n_held = 0;
    return n;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    char err[256] = "";

    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "%s/parley-qlog-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/parley.queue", f->dir);
    snprintf(f->new_path, sizeof f->new_path, "%s.new", f->path);
    assert_int_equal(qlog_open(&f->q, f->path, NULL, err, sizeof err), 0);
    *state = f;
    return 0;
}

/* The log of a rewrite test: it is rewritten past a few KB, a commit copies one message (or
 * moves to the next queue), and its flushes are held for the test to run. */
static int setup_rewrite(void **state)
{
    char err[256] = "";

    setup(state);
    struct fx *f = *state;
    qlog_close(f->q);
    f->params = (struct qlog_params){
        .rewrite_slice = 1, .rewrite_sync_every = 1u << 30, .compact_min = 4096};
    f->hold = true;
    refuse_jobs = false;
    assert_int_equal(qlog_open(&f->q, f->path, &f->params, err, sizeof err), 0);
    qlog_set_submit(f->q, hold_job, NULL);
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
    run_held(); /* flushes of a rewrite dropped at close end by themselves */
    unlink(f->path);
    snprintf(tmp, sizeof tmp, "%s.new", f->path);
    unlink(tmp);
    rmdir(tmp);
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
    assert_int_equal(qlog_open(&f->q, f->path, &f->params, err, sizeof err), 0);
    if (f->hold)
        qlog_set_submit(f->q, hold_job, NULL);
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
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
    assert_int_equal(qlog_open(&q, f->path, NULL, err, sizeof err), -1);
    assert_null(q);
    assert_non_null(strstr(err, "not a Parley queue log"));
    unlink(f->path);
    reopen(f); /* a missing file is a new, empty log */
    assert_int_equal(qlog_next_id(f->q), 1);
}

/* ---- a random walk against a model ---- */

#define MODEL_USERS 6 /* the first three from the start; the others appear during rewrites */
#define MODEL_FIRST 3
#define MODEL_MAX 4000

/* What the log should hold: per recipient, the ids and body lengths in order. */
struct model {
    int64_t id[MODEL_USERS][MODEL_MAX];
    size_t len[MODEL_USERS][MODEL_MAX];
    size_t n[MODEL_USERS];
};

static const char *const model_names[MODEL_USERS] = {"ann", "bob", "cyd", "dan", "eve", "fay"};

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

/* Commits with a disk that may refuse part of the batch: the model of what is committed follows
 * when the commit succeeds; when it is refused, what was pending goes back to the committed model
 * (refused ids may come again after a reopen). */
static void commit_maybe_refused(struct fx *f, struct model *committed, struct model *pending,
                                 int64_t *committed_max, int64_t *pushed_max)
{
    limit_file_size((rlim_t)file_size(f->path) + (rlim_t)(rand() % 64));
    int rc = qlog_commit(f->q);
    limit_file_size(RLIM_INFINITY);
    if (rc == 0) {
        *committed = *pending;
        *committed_max = *pushed_max;
    } else {
        *pending = *committed;
        *pushed_max = *committed_max;
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
        int op = rand() % 100, u = rand() % MODEL_FIRST;
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
            commit_maybe_refused(f, &committed, &pending, &committed_max, &pushed_max);
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

/* ---- the rewrite in slices ---- */

/* Pushes a message of `len` bytes for user `u` and records it in `m`; returns its id. */
static int64_t model_push(struct qlog *q, struct model *m, int u, size_t len)
{
    static char body[256];
    int64_t id;
    assert_true(len <= sizeof body && m->n[u] < MODEL_MAX);
    model_body(qlog_next_id(q), len, body);
    assert_int_equal(qlog_push(q, "x", model_names[u], 1, body, len, &id), 0);
    m->id[u][m->n[u]] = id;
    m->len[u][m->n[u]++] = len;
    return id;
}

/* Acknowledges user `u`'s messages up to `up_to` in the log and in `m`. */
static void model_ack_both(struct qlog *q, struct model *m, int u, int64_t up_to)
{
    assert_int_equal(qlog_ack(q, model_names[u], up_to), 0);
    model_ack(m, u, up_to);
}

/* Commits, which must succeed; the committed model becomes the pending one. */
static void commit_ok(struct fx *f, struct model *committed, const struct model *pending)
{
    assert_int_equal(qlog_commit(f->q), 0);
    *committed = *pending;
}

/* Writes and acknowledges one message of user 0 per commit until a rewrite starts. */
static void churn_until_rewrite(struct fx *f, struct model *committed, struct model *pending)
{
    for (int i = 0; qlog_rewrite_state(f->q) == QLOG_REWRITE_IDLE; i++) {
        assert_true(i < 10000);
        model_ack_both(f->q, pending, 0, model_push(f->q, pending, 0, 200));
        commit_ok(f, committed, pending);
    }
}

/* The users of test_rewrite_mirrors_each_change_once, by their part. The list of queues is
 * newest first and the walk goes down it: WHOLE is copied first, then PART, then LATER, then
 * the churn's queue. */
enum { CHURN = 0, LATER = 1, PART = 2, WHOLE = 3, FRESH = 4, GHOST = 5 };

/* Commits `n` times with nothing in the batch, each commit one step of the copy. */
static void steps(struct fx *f, int n)
{
    for (int i = 0; i < n; i++) {
        assert_int_equal(qlog_rewrite_state(f->q), QLOG_REWRITE_COPYING);
        assert_int_equal(qlog_commit(f->q), 0);
    }
}

/* Pushes and acknowledgements to queues copied whole, partly and not yet, new recipients, a
 * batch refused and taken back, a hand-off refused: after the rename and a reopen every queue
 * holds exactly what was committed, in order. With --fsync, for the flush of the last tail. */
static void test_rewrite_mirrors_each_change_once(void **state)
{
    struct fx *f = *state;
    static struct model committed, pending;
    int64_t id[MODEL_USERS][8];

    memset(&pending, 0, sizeof pending);
    qlog_set_fsync(f->q, true);
    model_ack_both(f->q, &pending, CHURN, model_push(f->q, &pending, CHURN, 10));
    for (int u = LATER; u <= WHOLE; u++)
        for (int i = 0; i < 3; i++)
            id[u][i] = model_push(f->q, &pending, u, 30);
    commit_ok(f, &committed, &pending);
    churn_until_rewrite(f, &committed, &pending); /* the first commit copied WHOLE's first */
    off_t old_size = file_size(f->path);
    assert_true(exists(f->new_path));
    steps(f, 4); /* WHOLE's second and third, on to PART, PART's first */

    /* WHOLE is copied whole, PART in part, LATER not yet. */
    id[WHOLE][3] = model_push(f->q, &pending, WHOLE, 40); /* mirrored */
    id[PART][3] = model_push(f->q, &pending, PART, 40);   /* the walk copies it */
    id[LATER][3] = model_push(f->q, &pending, LATER, 40); /* the walk copies it */
    model_push(f->q, &pending, FRESH, 40);                /* a new queue: mirrored */
    model_ack_both(f->q, &pending, WHOLE, id[WHOLE][0]);  /* mirrored */
    model_ack_both(f->q, &pending, PART, id[PART][0]);    /* mirrored: its copy has begun */
    model_ack_both(f->q, &pending, LATER, id[LATER][0]);  /* not: the walk finds it gone */
    commit_ok(f, &committed, &pending); /* copies PART's second and, for the push, third */

    /* A batch refused by the disk: taken back in memory and in the mirror. */
    model_push(f->q, &pending, WHOLE, 50);
    model_ack_both(f->q, &pending, PART, id[PART][1]);
    model_push(f->q, &pending, LATER, 50);
    model_push(f->q, &pending, FRESH, 50);
    model_push(f->q, &pending, GHOST, 50);
    model_ack_both(f->q, &pending, WHOLE, id[WHOLE][3]);
    signal(SIGXFSZ, SIG_IGN);
    limit_file_size((rlim_t)file_size(f->path) + 10);
    assert_int_equal(qlog_commit(f->q), -1);
    limit_file_size(RLIM_INFINITY);
    signal(SIGXFSZ, SIG_DFL);
    pending = committed;
    model_compare(f->q, &pending);

    /* An acknowledgement past PART's copied part: the walk goes on at the front. */
    model_ack_both(f->q, &pending, PART, id[PART][3]);
    id[PART][4] = model_push(f->q, &pending, PART, 60);
    commit_ok(f, &committed, &pending); /* copies PART's fifth, on to LATER */
    steps(f, 1);                        /* LATER's second (its first was acknowledged) */
    id[LATER][4] = model_push(f->q, &pending, LATER, 60); /* the queue being copied: walked */
    model_ack_both(f->q, &pending, LATER, id[LATER][1]);  /* mirrored: cuts the copied part */
    commit_ok(f, &committed, &pending);                   /* copies LATER's third and more */

    /* Once the copy is whole, every change is mirrored; a refused hand-off is tried again. */
    refuse_jobs = true;
    for (int i = 0; qlog_rewrite_state(f->q) == QLOG_REWRITE_COPYING; i++) {
        assert_true(i < 20);
        assert_int_equal(qlog_commit(f->q), 0);
    }
    assert_int_equal(qlog_rewrite_state(f->q), QLOG_REWRITE_SYNCING);
    model_push(f->q, &pending, WHOLE, 70);
    model_ack_both(f->q, &pending, FRESH, INT64_MAX);
    model_push(f->q, &pending, GHOST, 70); /* its queue was made by the refused batch */
    commit_ok(f, &committed, &pending);
    assert_int_equal(n_held, 0);
    refuse_jobs = false;
    commit_ok(f, &committed, &pending);
    assert_int_equal(n_held, 1);
    model_push(f->q, &pending, LATER, 80); /* while the flush runs */
    commit_ok(f, &committed, &pending);
    assert_int_equal(run_held(), 1);
    model_push(f->q, &pending, PART, 80); /* the commit that renames writes it to both */
    commit_ok(f, &committed, &pending);
    assert_int_equal(qlog_rewrite_state(f->q), QLOG_REWRITE_IDLE);
    assert_false(exists(f->new_path));
    assert_int_equal(run_held(), 1); /* the old log's close */
    assert_true(file_size(f->path) < old_size);
    model_push(f->q, &pending, WHOLE, 90); /* to the new log alone */
    commit_ok(f, &committed, &pending);
    model_compare(f->q, &committed);
    reopen(f);
    model_compare(f->q, &committed);
}

/* Reopens the log and checks it against the committed model, and that no committed id can
 * be given again. */
static void reopen_and_compare(struct fx *f, const struct model *committed, int64_t committed_max)
{
    reopen(f);
    model_compare(f->q, committed);
    assert_true(qlog_next_id(f->q) > committed_max);
}

/* Commits (running the held flushes) until the rewrite is done. */
static void commit_until_idle(struct fx *f, struct model *committed, const struct model *pending)
{
    for (int i = 0; qlog_rewrite_state(f->q) != QLOG_REWRITE_IDLE; i++) {
        assert_true(i < 100);
        run_held();
        commit_ok(f, committed, pending);
    }
    run_held();
}

/* A message pushed and acknowledged while the walk had not reached its queue never reaches
 * the new file, yet its id is not given again after the rename; nor are ids below a raise of
 * the next id, and a store id set during a rewrite is kept. */
static void test_rewrite_keeps_ids_it_never_copied(void **state)
{
    struct fx *f = *state;
    static struct model committed, pending;

    memset(&pending, 0, sizeof pending);
    model_ack_both(f->q, &pending, CHURN, model_push(f->q, &pending, CHURN, 10));
    for (int u = LATER; u <= WHOLE; u++)
        model_push(f->q, &pending, u, 30);
    commit_ok(f, &committed, &pending);
    churn_until_rewrite(f, &committed, &pending);
    int64_t last = model_push(f->q, &pending, CHURN, 10); /* its queue is walked last */
    model_ack_both(f->q, &pending, CHURN, last);
    commit_ok(f, &committed, &pending);
    commit_until_idle(f, &committed, &pending);
    reopen(f);
    model_compare(f->q, &committed);
    assert_int_equal(qlog_next_id(f->q), last + 1);

    static const char id[] = "0123456789abcdef0123456789abcdef";
    churn_until_rewrite(f, &committed, &pending);
    assert_int_equal(qlog_set_store_id(f->q, id), 0);
    for (int i = 0; qlog_rewrite_state(f->q) == QLOG_REWRITE_COPYING; i++) {
        assert_true(i < 100);
        commit_ok(f, &committed, &pending);
    }
    int64_t raised = qlog_next_id(f->q) + 1000;
    assert_int_equal(qlog_raise_next_id(f->q, raised), 0);
    commit_ok(f, &committed, &pending);
    commit_until_idle(f, &committed, &pending);
    reopen(f);
    model_compare(f->q, &committed);
    assert_int_equal(qlog_next_id(f->q), raised);
    assert_string_equal(qlog_store_id(f->q), id);
}

/* The last batch, written by the close, starts no rewrite even when it makes the log due. */
static void test_close_starts_no_rewrite(void **state)
{
    struct fx *f = *state;
    static struct model committed, pending;

    memset(&pending, 0, sizeof pending);
    model_push(f->q, &pending, 1, 30);
    commit_ok(f, &committed, &pending);
    while (file_size(f->path) < 4096 - 250) {
        model_ack_both(f->q, &pending, 0, model_push(f->q, &pending, 0, 20));
        commit_ok(f, &committed, &pending);
    }
    assert_int_equal(qlog_rewrite_state(f->q), QLOG_REWRITE_IDLE);
    model_ack_both(f->q, &pending, 0, model_push(f->q, &pending, 0, 250));
    qlog_close(f->q);
    f->q = NULL;
    assert_true(file_size(f->path) >= 4096);
    assert_false(exists(f->new_path));
    assert_int_equal(n_held, 0);
    reopen(f); /* due: rewritten whole at open */
    model_compare(f->q, &pending);
    assert_true(file_size(f->path) < 4096);
}

/* Random pushes, acknowledgements, refused batches, flushes that finish at random times and
 * closes in the middle of rewrites, with slices of a few records and flushes while copying:
 * after every rewrite, and every reopening, the log holds exactly the committed model. */
static void test_rewrite_random_against_model(void **state)
{
    struct fx *f = *state;
    static struct model committed, pending;
    int rewrites = 0, dropped = 0;
    int64_t pushed_max = 0, committed_max = 0;

    f->params.rewrite_slice = 300;
    f->params.rewrite_sync_every = 2000;
    reopen(f);
    memset(&committed, 0, sizeof committed);
    memset(&pending, 0, sizeof pending);
    srand(4242);
    signal(SIGXFSZ, SIG_IGN);
    for (int step = 0; step < 20000; step++) {
        enum qlog_rewrite_state was = qlog_rewrite_state(f->q);
        int op = rand() % 100;
        int u = rand() % (was == QLOG_REWRITE_IDLE && step < 4000 ? MODEL_FIRST : MODEL_USERS);
        if (op < 50 && pending.n[u] < MODEL_MAX) {
            pushed_max = model_push(f->q, &pending, u, (size_t)(rand() % 120));
        } else if (op < 75) {
            int64_t up_to = pending.n[u] ? pending.id[u][rand() % pending.n[u]] : 0;
            model_ack_both(f->q, &pending, u, up_to);
        } else if (op < 80) {
            commit_maybe_refused(f, &committed, &pending, &committed_max, &pushed_max);
        } else if (op < 85) {
            run_held();
        } else if (op < 99) {
            commit_ok(f, &committed, &pending);
            committed_max = pushed_max;
        } else if (was != QLOG_REWRITE_IDLE) {
            commit_ok(f, &committed, &pending);
            committed_max = pushed_max;
            reopen_and_compare(f, &committed, committed_max); /* drops the rewrite */
            dropped++;
        }
        if (was == QLOG_REWRITE_SYNCING && qlog_rewrite_state(f->q) == QLOG_REWRITE_IDLE) {
            rewrites++;
            run_held();
            reopen_and_compare(f, &committed, committed_max);
        }
        model_compare(f->q, &pending);
    }
    signal(SIGXFSZ, SIG_DFL);
    reopen(f);
    model_compare(f->q, &pending);
    assert_true(rewrites >= 10);
    assert_true(dropped >= 3);
}

/* Where the child of test_crash_in_every_state dies. */
enum crash_at { CRASH_COPYING, CRASH_SYNCING, CRASH_FLUSHED, CRASH_RENAMED, CRASH_POINTS };

/* Writes every user's ids and bodies, as "name:id=body,...;", into `out`. */
static int dump_one(void *ctx, const struct store_msg *m)
{
    struct listing *l = ctx;
    size_t used = strlen(l->text);
    snprintf(l->text + used, sizeof l->text - used, "%lld=%.*s,", (long long)m->id,
             (int)m->body_len, m->body);
    return 0;
}

static void dump(struct qlog *q, struct listing *l)
{
    l->text[0] = '\0';
    for (int u = 0; u < MODEL_USERS; u++) {
        size_t used = strlen(l->text);
        snprintf(l->text + used, sizeof l->text - used, "%s:", model_names[u]);
        qlog_load(q, model_names[u], 0, 0, dump_one, l);
        used = strlen(l->text);
        snprintf(l->text + used, sizeof l->text - used, ";");
    }
}

/* In the child, without cmocka (whose failures jump back into the parent's test): dies with
 * status 2 when `ok` is false. */
static void child_check(bool ok)
{
    if (!ok)
        _exit(2);
}

static void child_push(struct qlog *q, int u, const char *body)
{
    child_check(qlog_push(q, "x", model_names[u], 1, body, strlen(body), NULL) == 0);
}

static void child_commit(struct qlog *q)
{
    child_check(qlog_commit(q) == 0);
}

/* The child: a rewrite taken to the state `at` with changes on the way, then the committed
 * queues written to `out_fd` and a death without closing anything. */
static void child_until(struct fx *f, enum crash_at at, int out_fd)
{
    struct qlog *q;
    struct listing l;
    char err[256];
    int64_t id;

    child_check(qlog_open(&q, f->path, &f->params, err, sizeof err) == 0);
    qlog_set_submit(q, hold_job, NULL);
    for (int u = 1; u < 4; u++)
        for (int i = 0; i < 3; i++)
            child_push(q, u, "live");
    child_commit(q);
    for (int i = 0; qlog_rewrite_state(q) == QLOG_REWRITE_IDLE; i++) {
        child_check(i < 10000);
        child_check(qlog_push(q, "x", "ann", 1, "churn", 5, &id) == 0);
        child_check(qlog_ack(q, "ann", id) == 0);
        child_commit(q);
    }
    child_push(q, 3, "copying");
    child_push(q, 4, "new");
    child_check(qlog_ack(q, "cyd", qlog_next_id(q) - 1) == 0);
    child_commit(q);
    for (int i = 0; at > CRASH_COPYING && qlog_rewrite_state(q) == QLOG_REWRITE_COPYING; i++) {
        child_check(i < 1000);
        child_push(q, 1, "walked");
        child_commit(q);
    }
    child_push(q, 2, "syncing");
    child_commit(q);
    if (at >= CRASH_FLUSHED)
        child_check(run_held() == 1);
    if (at >= CRASH_RENAMED) {
        child_commit(q);
        child_check(qlog_rewrite_state(q) == QLOG_REWRITE_IDLE);
        child_push(q, 5, "renamed");
        child_commit(q);
    }
    child_check(qlog_rewrite_state(q) == (at == CRASH_COPYING   ? QLOG_REWRITE_COPYING
                                          : at == CRASH_RENAMED ? QLOG_REWRITE_IDLE
                                                                : QLOG_REWRITE_SYNCING));
    dump(q, &l);
    child_check(write(out_fd, l.text, strlen(l.text)) == (ssize_t)strlen(l.text));
    _exit(0);
}

/* A crash (the process dies, nothing closed) while copying, while the flush runs, after it
 * but before the rename, and after the rename: at the next open the log holds every committed
 * change, and a left-over new file is removed. */
static void test_crash_in_every_state(void **state)
{
    struct fx *f = *state;
    static struct listing before, after;

    for (int at = 0; at < CRASH_POINTS; at++) {
        int fds[2];
        qlog_close(f->q);
        f->q = NULL;
        unlink(f->path);
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child_until(f, (enum crash_at)at, fds[1]);
        }
        close(fds[1]);
        ssize_t n = read(fds[0], before.text, sizeof before.text - 1);
        close(fds[0]);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_true(n > 0);
        before.text[n] = '\0';
        assert_true(exists(f->new_path) == (at != CRASH_RENAMED));
        reopen(f);
        assert_false(exists(f->new_path));
        assert_int_equal(qlog_rewrite_state(f->q), QLOG_REWRITE_IDLE);
        dump(f->q, &after);
        assert_string_equal(after.text, before.text);
    }
    /* One left beside a log that needs no rewrite is removed too. */
    qlog_close(f->q);
    f->q = NULL;
    int fd = open(f->new_path, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "PARLEYQ1junk", 12), 12);
    close(fd);
    reopen(f);
    assert_false(exists(f->new_path));
    dump(f->q, &after);
    assert_string_equal(after.text, before.text);
}

/* A rewrite that cannot start (the new file cannot be made) or that fails at its end (the new
 * file gone before the rename) keeps the old log whole, and the next try waits until the log
 * has grown by compact_min. */
static void test_rewrite_failure_keeps_the_log(void **state)
{
    struct fx *f = *state;
    static struct model committed, pending;

    memset(&pending, 0, sizeof pending);
    for (int u = 1; u < 4; u++)
        model_push(f->q, &pending, u, 30);
    commit_ok(f, &committed, &pending);
    assert_int_equal(mkdir(f->new_path, 0700), 0);
    off_t failed_at = 0;
    while (file_size(f->path) < 32768) {
        model_ack_both(f->q, &pending, 0, model_push(f->q, &pending, 0, 200));
        commit_ok(f, &committed, &pending);
        assert_int_equal(qlog_rewrite_state(f->q), QLOG_REWRITE_IDLE);
        if (!failed_at && file_size(f->path) >= 4 * 4096)
            failed_at = file_size(f->path); /* past the floor and the ratio: it was tried */
    }
    assert_int_equal(rmdir(f->new_path), 0);
    for (int i = 0; qlog_rewrite_state(f->q) == QLOG_REWRITE_IDLE; i++) {
        assert_true(i < 1000);
        model_ack_both(f->q, &pending, 0, model_push(f->q, &pending, 0, 200));
        commit_ok(f, &committed, &pending);
    }
    assert_true(file_size(f->path) > failed_at);
    model_compare(f->q, &committed);

    /* The new file goes while copying: the rename fails, the old log stays. */
    off_t size = file_size(f->path);
    assert_int_equal(unlink(f->new_path), 0);
    model_push(f->q, &pending, 2, 30);
    for (int i = 0; qlog_rewrite_state(f->q) != QLOG_REWRITE_IDLE; i++) {
        assert_true(i < 100);
        commit_ok(f, &committed, &pending);
        run_held();
    }
    assert_true(file_size(f->path) > size);
    reopen(f);
    model_compare(f->q, &committed);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define R(fn) cmocka_unit_test_setup_teardown(fn, setup_rewrite, teardown)
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
        R(test_rewrite_mirrors_each_change_once),
        R(test_rewrite_keeps_ids_it_never_copied),
        R(test_close_starts_no_rewrite),
        R(test_rewrite_random_against_model),
        R(test_crash_in_every_state),
        R(test_rewrite_failure_keeps_the_log),
    };
#undef T
#undef R
    return cmocka_run_group_tests(tests, NULL, NULL);
}
