/* The store conformance suite: every case of `conformance` runs against each backend named on
 * the command line (default: "local" and "redis"), so a new backend passes the same tests as
 * the one it sits beside. For "redis" the group starts its own redis-server on a Unix socket in
 * a temporary directory (it must be installed: scripts/deps.sh does), each case empties it
 * (FLUSHALL) and opens the store on a new cluster node "t1", as parleyd does. The cases of
 * `local files` look at the local backend's own files (parley.db, parley.queue, parley.lock),
 * and those of `local only` at parts of store.h the redis backend does not hold (each says
 * why); both run on it alone. Each test gets a fresh temporary directory. Every wait runs the
 * event loop until the answer or a deadline, and fails on the deadline. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <sqlite3.h>

#include "server/cluster.h"
#include "server/store.h"

/* How long any wait for an answer may take; how long redis-server may take to start. */
#define WAIT_MS 5000
#define REDIS_START_MS 5000
/* The cluster node of the redis cases, and its lease (short: a node killed by a case is
 * taken over by the next cluster_new of the same id at once anyway). */
#define NODE_ID "t1"
#define LEASE_MS 2000

/* The backend the running group tests. */
static const struct store_ops *backend;

/* The loop asynchronous answers come from (made by each case's setup), and the timer that
 * bounds each wait on it. */
static struct event_base *loop;
static struct event *wake;

/* The redis-server of the "redis" group. */
static struct {
    char dir[PATH_MAX];
    char sock[PATH_MAX + 16];
    char addr[PATH_MAX + 32];
    pid_t pid;
} redis;

struct fx {
    char root[PATH_MAX]; /* the mkdtemp directory */
    char dir[PATH_MAX];  /* the store's data directory inside it */
    struct store *st;
    struct cluster *cl; /* the redis backend's node; NULL on "local" */
};

/* True when the running group tests the redis backend. */
static bool on_redis(void)
{
    return backend == &store_redis_ops;
}

/* ---- helpers ---- */

/* Writes "a/b" into `out`, which must be large enough. */
static void join(char *out, size_t len, const char *a, const char *b)
{
    int n = snprintf(out, len, "%s/%s", a, b);

    assert_true(n > 0 && (size_t)n < len);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Makes the loop the waits run (a case's setup; a forked child's own). */
static void make_loop(void)
{
    loop = event_base_new();
    assert_non_null(loop);
    wake = event_new(loop, -1, 0, on_wake, NULL);
    assert_non_null(wake);
}

static void free_loop(void)
{
    if (wake)
        event_free(wake);
    if (loop)
        event_base_free(loop);
    wake = NULL;
    loop = NULL;
}

static void commit_ignored(void *arg, int rc)
{
    (void)arg;
    (void)rc;
}

/* Runs the loop until `done(arg)` holds; fails the test when WAIT_MS pass first. With `st`,
 * each iteration ends with store_commit, as the server's do: a backend that sends one batch
 * per iteration (redis) answers its writes once the batch ran. */
static void run_until(struct store *st, bool (*done)(const void *arg), const void *arg)
{
    int64_t deadline = mono_ms() + WAIT_MS;

    while (!done(arg)) {
        int64_t left = deadline - mono_ms();
        if (left <= 0)
            fail_msg("no answer within %d ms", WAIT_MS);
        if (st)
            store_commit(st, commit_ignored, NULL);
        struct timeval tv = {left / 1000, (left % 1000) * 1000};
        assert_int_equal(event_add(wake, &tv), 0);
        assert_true(event_base_loop(loop, EVLOOP_ONCE) >= 0);
    }
    event_del(wake);
}

/* ---- the redis backend's server and node ---- */

/* A connection to the group's redis-server, or NULL. */
static redisContext *redis_direct(void)
{
    redisContext *c = redisConnectUnix(redis.sock);

    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Runs one command on the group's redis-server; true when it was not refused. */
static bool redis_run(int argc, const char **argv)
{
    redisContext *c = redis_direct();
    redisReply *r = c ? redisCommandArgv(c, argc, argv, NULL) : NULL;
    bool ok = r && r->type != REDIS_REPLY_ERROR;

    freeReplyObject(r);
    redisFree(c);
    return ok;
}

/* The integer answer of one command on the group's redis-server; -1 when there is none. */
static long long redis_integer(int argc, const char **argv)
{
    redisContext *c = redis_direct();
    redisReply *r = c ? redisCommandArgv(c, argc, argv, NULL) : NULL;
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;

    freeReplyObject(r);
    redisFree(c);
    return v;
}

static bool redis_answers(void)
{
    const char *argv[] = {"PING"};

    return redis_run(1, argv);
}

/* Group setup of "redis": starts a redis-server that keeps nothing on disk, on a Unix socket
 * in a temporary directory. Fails when it does not start (not installed: scripts/deps.sh). */
static int redis_start(void **state)
{
    (void)state;
    snprintf(redis.dir, sizeof redis.dir, "%s/parley-store-redis-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(redis.dir))
        return -1;
    snprintf(redis.sock, sizeof redis.sock, "%s/redis.sock", redis.dir);
    snprintf(redis.addr, sizeof redis.addr, "unix:%s", redis.sock);
    redis.pid = fork();
    if (redis.pid < 0)
        return -1;
    if (redis.pid == 0) {
        /* It dies with this test, even a crashed one, and keeps off its output. */
        int null = open("/dev/null", O_WRONLY);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", redis.sock, "--dir",
               redis.dir, "--save", "", "--appendonly", "no", "--logfile", "/dev/null",
               (char *)NULL);
        _exit(127);
    }
    for (int64_t t0 = mono_ms(); !redis_answers();) {
        int status;
        if (waitpid(redis.pid, &status, WNOHANG) == redis.pid) {
            fprintf(stderr,
                    "test_store: redis-server did not start (%s); scripts/deps.sh "
                    "installs it\n",
                    WIFEXITED(status) && WEXITSTATUS(status) == 127 ? "not installed"
                                                                    : "it exited");
            redis.pid = 0;
            return -1;
        }
        if (mono_ms() - t0 > REDIS_START_MS) {
            fprintf(stderr, "test_store: redis-server did not answer within %d ms\n",
                    REDIS_START_MS);
            return -1;
        }
        struct timespec ts = {0, 10 * 1000000L}; /* polled until it answers, or the deadline */
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int redis_stop(void **state)
{
    (void)state;
    if (redis.pid > 0) {
        kill(redis.pid, SIGTERM);
        waitpid(redis.pid, NULL, 0);
        redis.pid = 0;
    }
    unlink(redis.sock);
    rmdir(redis.dir);
    return 0;
}

/* Claims `sender` for this node as a login through it would, so that store_queue_push takes
 * its messages (the redis store refuses those of a sender another node holds: STORE_FENCED).
 * Only in parley:online, which is all the fence (batch.lua) reads: a claim also listed in
 * parley:claims:t1 is a session of the node, which every cluster_new (a reopen), cluster_free
 * and re-validation (each_local here holds no one) ends with a logout at the wall clock in
 * parley:lastout, where the login-history cases would find it. Called before every push, as
 * store_presence_logout of a claimed name ends its claim. */
static void claim(const char *sender)
{
    const char *argv[] = {"HSET", "parley:online", sender, NODE_ID};

    if (on_redis())
        assert_true(redis_run(4, argv));
}

/* The direct messages the node read from the stream, in order (test_stream_runs). */
#define STREAM_SEEN 512
static struct {
    int n;
    int64_t id[STREAM_SEEN];
    char to[STREAM_SEEN][16], from[STREAM_SEEN][16], body[STREAM_SEEN][32];
} stream_seen;

static void ignore_event(void *ctx, const struct cluster_event *ev)
{
    (void)ctx;
    int i = stream_seen.n;
    if (ev->kind != CLUSTER_MSG || i >= STREAM_SEEN)
        return;
    stream_seen.id[i] = ev->n1;
    snprintf(stream_seen.to[i], sizeof stream_seen.to[i], "%s", ev->a);
    snprintf(stream_seen.from[i], sizeof stream_seen.from[i], "%s", ev->b);
    snprintf(stream_seen.body[i], sizeof stream_seen.body[i], "%.*s", (int)ev->text_len, ev->text);
    stream_seen.n++;
}

static void ignore_name(void *ctx, const char *name)
{
    (void)ctx;
    (void)name;
}

static void ignore_resync(void *ctx)
{
    (void)ctx;
}

static void hold_no_one(void *ctx, void (*fn)(void *arg, const char *name), void *arg)
{
    (void)ctx;
    (void)fn;
    (void)arg;
}

static void ignore_online(void *ctx, const char *name, const char *node, bool online)
{
    (void)ctx;
    (void)name;
    (void)node;
    (void)online;
}

static bool always_read(void *ctx)
{
    (void)ctx;
    return true;
}

/* A node with no sessions: the store is all these cases look at. */
static const struct cluster_handlers no_sessions = {ignore_event, ignore_name,   ignore_resync,
                                                    hold_no_one,  ignore_online, always_read};

static bool node_up(const void *cl)
{
    return cluster_up(cl);
}

/* Start-up reads of a store being opened (open_store). */
typedef void (*startup_fn)(struct store *st, void *arg);

/* Opens the fixture's store, runs `reads` (NULL: none) on it at start-up, and returns 0, or
 * -1 with a message in `err`. On "redis", as server.c does: a node (cluster_new) on the
 * group's Redis, the store on it (store_open_with), the start-up reads (the walks read Redis
 * on the node's blocking connection, which only start-up has), then cluster_start, and the
 * loop runs until the node is up. */
static int open_store(struct fx *f, startup_fn reads, void *arg, char *err, size_t errlen)
{
    if (!on_redis()) {
        if (store_open(&f->st, backend, f->dir, err, errlen) != 0)
            return -1;
        if (reads)
            reads(f->st, arg);
        return 0;
    }
    struct cluster_settings cs = {.addr = redis.addr,
                                  .node_id = NODE_ID,
                                  .timeout_ms = 1000,
                                  .max_inflight = 64,
                                  .lease_ms = LEASE_MS,
                                  .stream_max = 1000};
    f->cl = cluster_new(loop, &cs, err, errlen);
    if (!f->cl)
        return -1;
    struct store_params p = {.dir = f->dir, .base = loop, .cluster = f->cl};
    if (store_open_with(&f->st, backend, &p, err, errlen) != 0)
        return -1;
    if (reads)
        reads(f->st, arg);
    if (cluster_start(f->cl, &no_sessions, NULL) != 0) {
        snprintf(err, errlen, "cluster_start failed");
        return -1;
    }
    run_until(NULL, node_up, f->cl);
    return 0;
}

/* Closes the fixture's store (and its node, which leaves the cluster). */
static void close_store(struct fx *f)
{
    store_close(f->st);
    f->st = NULL;
    cluster_free(f->cl);
    f->cl = NULL;
}

/* Closes and opens the store again (on "redis": a new node on the same Redis), running
 * `reads` at its start-up. */
static void reopen_reading(struct fx *f, startup_fn reads, void *arg)
{
    char err[256] = "";

    close_store(f);
    if (open_store(f, reads, arg, err, sizeof err) != 0)
        fail_msg("reopening the store: %s", err);
    assert_non_null(f->st);
}

static void reopen(struct fx *f)
{
    reopen_reading(f, NULL, NULL);
}

static void hook_remove(void);

static int teardown(void **state)
{
    struct fx *f = *state;

    hook_remove();
    close_store(f);
    free_loop();
    nftw(f->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    char err[256] = "";
    const char *flush[] = {"FLUSHALL"};

    assert_non_null(f);
    snprintf(f->root, sizeof f->root, "%s/parley-store-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(f->root));
    join(f->dir, sizeof f->dir, f->root, "data");
    *state = f;
    make_loop();
    if (on_redis() && !redis_run(1, flush)) {
        fprintf(stderr, "FLUSHALL refused\n");
        teardown(state);
        return -1;
    }
    if (open_store(f, NULL, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "opening the store: %s\n", err);
        teardown(state);
        return -1;
    }
    return 0;
}

/* Runs a one-row integer query on the database file with a separate connection. */
static int64_t sql_int(const char *dir, const char *sql)
{
    char path[PATH_MAX];
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int64_t v = -999;

    join(path, sizeof path, dir, "parley.db");
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* Runs statements on the database file with a separate connection. */
static void sql_exec(const char *dir, const char *sql)
{
    char path[PATH_MAX];
    sqlite3 *db = NULL;

    join(path, sizeof path, dir, "parley.db");
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

#define MAX_SEEN 16

/* Messages seen by collect_msg, copied out of the callback. */
struct seen_msgs {
    size_t n;
    size_t stop_after; /* 0: never stop */
    int64_t id[MAX_SEEN];
    char sender[MAX_SEEN][32];
    char recipient[MAX_SEEN][32];
    int64_t sent_at[MAX_SEEN];
    char body[MAX_SEEN][512];
    size_t body_len[MAX_SEEN];
    int body_terminated[MAX_SEEN];
};

static int collect_msg(void *ctx, const struct store_msg *m)
{
    struct seen_msgs *s = ctx;

    assert_true(s->n < MAX_SEEN);
    assert_true(m->body_len < sizeof s->body[0]);
    s->id[s->n] = m->id;
    snprintf(s->sender[s->n], sizeof s->sender[0], "%s", m->sender);
    snprintf(s->recipient[s->n], sizeof s->recipient[0], "%s", m->recipient);
    s->sent_at[s->n] = m->sent_at;
    memcpy(s->body[s->n], m->body, m->body_len);
    s->body[s->n][m->body_len] = '\0';
    s->body_len[s->n] = m->body_len;
    s->body_terminated[s->n] = m->body[m->body_len] == '\0';
    s->n++;
    return s->stop_after && s->n >= s->stop_after;
}

/* An asynchronous operation's answer: `rc` once `answered`. */
struct answer {
    int answered;
    int rc;
    int64_t value;
};

static bool answered(const void *a)
{
    return ((const struct answer *)a)->answered != 0;
}

/* Waits for an answer of `st`, which may come before the call returned (local) or later, from
 * the loop (redis): runs the loop until it came, failing after WAIT_MS. Returns its rc. */
static int wait_answer(struct store *st, struct answer *a)
{
    run_until(st, answered, a);
    return a->rc;
}

static void on_done(void *arg, int rc)
{
    struct answer *a = arg;

    a->answered++;
    assert_int_equal(a->answered, 1);
    a->rc = rc;
}

/* Commits the pending batch and returns its answer (0 or -1), waited for. */
static int commit(struct store *st)
{
    struct answer a = {0};

    store_commit(st, on_done, &a);
    return wait_answer(st, &a);
}

static void on_pushed(void *arg, int rc, const struct store_msg *m)
{
    struct answer *a = arg;

    on_done(a, rc);
    a->value = m ? m->id : -1;
    assert_true(rc == 0 ? m != NULL : m == NULL);
}

static void on_count(void *arg, int64_t count)
{
    struct answer *a = arg;

    on_done(a, 0);
    a->value = count;
}

/* A loaded page's messages, then its answer. */
struct loaded {
    struct seen_msgs seen;
    struct answer a;
};

static int collect_loaded(void *ctx, const struct store_msg *m)
{
    struct loaded *l = ctx;

    return collect_msg(&l->seen, m);
}

static void on_loaded(void *ctx, int rc)
{
    struct loaded *l = ctx;

    on_done(&l->a, rc);
}

/* store_queue_load, waited for: returns its rc, the messages in `*out`. */
static int load_rc(struct store *st, const char *recipient, int64_t after, size_t limit,
                   struct seen_msgs *out)
{
    struct loaded *l = calloc(1, sizeof *l);

    assert_non_null(l);
    l->seen.stop_after = out->stop_after;
    store_queue_load(st, recipient, after, limit, collect_loaded, on_loaded, l);
    int rc = wait_answer(st, &l->a);
    *out = l->seen;
    free(l);
    return rc;
}

static struct seen_msgs load(struct store *st, const char *recipient, int64_t after, size_t limit)
{
    struct seen_msgs s = {0};

    assert_int_equal(load_rc(st, recipient, after, limit, &s), 0);
    return s;
}

/* store_queue_push, waited for: returns its rc, the id in `*id`. */
static int push_rc(struct store *st, const char *from, const char *to, int64_t at, const char *body,
                   size_t len, int64_t max_queued, int64_t *id)
{
    struct answer a = {0};

    claim(from);
    store_queue_push(st, from, to, at, body, len, max_queued, on_pushed, &a);
    int rc = wait_answer(st, &a);
    *id = a.value;
    return rc;
}

static int64_t push(struct store *st, const char *from, const char *to, int64_t at,
                    const char *body)
{
    int64_t id = -1;

    assert_int_equal(push_rc(st, from, to, at, body, strlen(body), 0, &id), 0);
    assert_true(id > 0);
    return id;
}

/* store_queue_count, waited for. */
static int64_t count(struct store *st, const char *recipient)
{
    struct answer a = {0};

    store_queue_count(st, recipient, on_count, &a);
    wait_answer(st, &a);
    return a.value;
}

/* store_block_add and store_block_remove, waited for. */
static int block_add(struct store *st, const char *a, const char *b)
{
    struct answer ans = {0};

    store_block_add(st, a, b, on_done, &ans);
    return wait_answer(st, &ans);
}

static int block_remove(struct store *st, const char *a, const char *b)
{
    struct answer ans = {0};

    store_block_remove(st, a, b, on_done, &ans);
    return wait_answer(st, &ans);
}

/* Names (or "a>b" pairs, or "name:failures:until") collected by the walk callbacks, joined
 * with ',' in the order seen. */
struct names {
    char text[512];
    int n;
    int stop_after;
};

static int add_name(struct names *nm, const char *fmt, ...)
{
    va_list ap;
    size_t len = strlen(nm->text);

    if (len)
        nm->text[len++] = ',';
    va_start(ap, fmt);
    vsnprintf(nm->text + len, sizeof nm->text - len, fmt, ap);
    va_end(ap);
    nm->n++;
    return nm->stop_after && nm->n >= nm->stop_after;
}

static int collect_name(void *ctx, const char *name)
{
    return add_name(ctx, "%s", name);
}

static int collect_pair(void *ctx, const char *a, const char *b)
{
    return add_name(ctx, "%s>%s", a, b);
}

static int collect_lock(void *ctx, const char *name, const struct store_lock *lock)
{
    return add_name(ctx, "%s:%d:%lld", name, lock->failures, (long long)lock->locked_until);
}

/* store_presence_since into `nm`, waited for: returns its rc. */
struct since_walk {
    struct names nm; /* first: collect_name takes the walk as its names */
    struct answer a;
};

static void since_done(void *ctx, int rc)
{
    struct since_walk *w = ctx;

    on_done(&w->a, rc);
}

static int since_names(struct store *st, int64_t t, struct names *nm)
{
    struct since_walk w = {0};

    store_presence_since(st, t, collect_name, since_done, &w);
    int rc = wait_answer(st, &w.a);
    *nm = w.nm;
    return rc;
}

/* The names of `nm` sorted (the walks give them in no set order), joined with ',' in `buf`. */
static char *sorted(struct names *nm, char *buf, size_t len)
{
    char *names[32];
    int n = 0;

    for (char *tok = strtok(nm->text, ","); tok && n < 32; tok = strtok(NULL, ","))
        names[n++] = tok;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *tmp = names[j];
            names[j] = names[j - 1];
            names[j - 1] = tmp;
        }
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t used = strlen(buf);
        snprintf(buf + used, len - used, "%s%s", i ? "," : "", names[i]);
    }
    return buf;
}

/* The users whose last logout was at or after `since`, sorted and joined. */
static char *since(struct store *st, int64_t t, char *buf, size_t len)
{
    struct names nm = {0};

    assert_int_equal(since_names(st, t, &nm), 0);
    return sorted(&nm, buf, len);
}

/* What the start-up walks found: blocks as "a>b", lock-out records as "name:failures:until". */
struct walked {
    struct names blocks, locks;
};

/* Start-up reads (open_store) that walk the blocks into `arg` (struct names). */
static void walk_blocks(struct store *st, void *arg)
{
    assert_int_equal(store_block_each(st, collect_pair, arg), 0);
}

/* Start-up reads that walk the lock-out records into `arg` (struct names). */
static void walk_locks(struct store *st, void *arg)
{
    assert_int_equal(store_lock_each(st, collect_lock, arg), 0);
}

/* Start-up reads that walk both into `arg` (struct walked). */
static void walk_all(struct store *st, void *arg)
{
    struct walked *w = arg;

    walk_blocks(st, &w->blocks);
    walk_locks(st, &w->locks);
}

/* The answer of store_lock_attempt. */
struct attempt {
    struct answer a;
    enum store_lock_verdict v;
    struct store_lock lock;
};

static void on_attempt(void *arg, int rc, enum store_lock_verdict v, const struct store_lock *l)
{
    struct attempt *at = arg;

    on_done(&at->a, rc);
    at->v = v;
    assert_true(rc == 0 ? l != NULL : l == NULL);
    if (l)
        at->lock = *l;
}

/* The policy of the lock-out cases: three wrong passwords lock for a minute. */
static const struct store_lock_policy three_strikes = {.max_failures = 3, .block_duration = 60};

/* store_lock_attempt of `name` at `now_ms` under three_strikes, waited for: returns the
 * verdict and expects the record as it is now to be `failures` and `until`. */
static enum store_lock_verdict attempt(struct store *st, const char *name, bool ok, int64_t now_ms,
                                       int failures, int64_t until)
{
    struct attempt at = {0};

    store_lock_attempt(st, name, ok, now_ms, &three_strikes, on_attempt, &at);
    assert_int_equal(wait_answer(st, &at.a), 0);
    assert_int_equal(at.lock.failures, failures);
    assert_int_equal(at.lock.locked_until, until);
    return at.v;
}

/* ---- open ---- */

static void test_open_creates_dir_and_db(void **state)
{
    struct fx *f = *state;
    struct stat sb;
    char path[PATH_MAX];
    char nested[PATH_MAX];
    char err[256] = "";
    struct store *st = NULL;

    assert_int_equal(stat(f->dir, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0700);
    join(path, sizeof path, f->dir, "parley.db");
    assert_int_equal(stat(path, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(sql_int(f->dir, "PRAGMA user_version"), 3);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sqlite_schema WHERE name IN "
                                     "('blocks','presence','meta','lockouts')"),
                     4);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sqlite_schema WHERE name = 'queue'"), 0);
    join(path, sizeof path, f->dir, "parley.queue");
    assert_int_equal(stat(path, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0600);

    /* Missing parents are created too. */
    join(nested, sizeof nested, f->root, "x/y/z");
    assert_int_equal(store_open(&st, backend, nested, err, sizeof err), 0);
    assert_non_null(st);
    store_close(st);
    assert_int_equal(stat(nested, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
}

static void test_reopen_is_idempotent(void **state)
{
    struct fx *f = *state;

    push(f->st, "alice", "bob", 1, "kept");
    reopen(f);
    reopen(f);
    assert_int_equal(count(f->st, "bob"), 1);
}

/* Local only: opening again changes nothing in the schema of parley.db. */
static void test_reopen_keeps_the_schema(void **state)
{
    struct fx *f = *state;
    int64_t tables = sql_int(f->dir, "SELECT count(*) FROM sqlite_schema");

    reopen(f);
    reopen(f);
    assert_int_equal(sql_int(f->dir, "PRAGMA user_version"), 3);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sqlite_schema"), tables);
}

/* Local only: store_queue_totals answers at once (it is synchronous), which a backend on a
 * network engine cannot: the redis one gives the count it read at the previous call, and no
 * bytes. */
static void test_queue_totals_follow_pushes_and_acks(void **state)
{
    struct fx *f = *state;
    struct store_totals t = {-1, 1};

    assert_int_equal(store_queue_totals(f->st, &t), 0);
    assert_int_equal(t.messages, 0);
    assert_int_equal(t.bytes, 0);
    push(f->st, "alice", "bob", 1, "hello");
    int64_t second = push(f->st, "alice", "bob", 2, "again");
    push(f->st, "bob", "carol", 3, "x");
    assert_int_equal(store_queue_totals(f->st, &t), 0);
    assert_int_equal(t.messages, 3);
    assert_true(t.bytes >= strlen("alicehelloaliceagainbobx"));
    assert_int_equal(store_queue_ack(f->st, "bob", second), 0);
    reopen(f);
    assert_int_equal(store_queue_totals(f->st, &t), 0);
    assert_int_equal(t.messages, 1);
}

static void test_open_uses_wal(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX];
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;

    join(path, sizeof path, f->dir, "parley.db");
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static void test_open_fails_when_dir_is_a_file(void **state)
{
    struct fx *f = *state;
    char file[PATH_MAX];
    char inside[PATH_MAX];
    char err[256] = "";
    struct store *st = (struct store *)f; /* a stale value that must be reset to NULL */

    join(file, sizeof file, f->root, "plain");
    write_file(file, "not a directory\n");

    assert_int_equal(store_open(&st, backend, file, err, sizeof err), -1);
    assert_null(st);
    assert_non_null(strstr(err, "not a directory"));

    join(inside, sizeof inside, f->root, "plain/data");
    err[0] = '\0';
    assert_int_equal(store_open(&st, backend, inside, err, sizeof err), -1);
    assert_null(st);
    assert_non_null(strstr(err, inside));
    assert_non_null(strstr(err, strerror(ENOTDIR)));

    /* No error buffer is allowed. */
    assert_int_equal(store_open(&st, backend, inside, NULL, 0), -1);
    assert_null(st);
}

static void test_open_fails_on_garbage_db(void **state)
{
    struct fx *f = *state;
    char dir[PATH_MAX];
    char path[PATH_MAX];
    char err[256] = "";
    struct store *st = NULL;

    join(dir, sizeof dir, f->root, "bad");
    assert_int_equal(mkdir(dir, 0700), 0);
    join(path, sizeof path, dir, "parley.db");
    write_file(path, "this is definitely not an SQLite database, just some text that is long "
                     "enough to fill a header of one hundred bytes or so....................\n");
    assert_int_equal(store_open(&st, backend, dir, err, sizeof err), -1);
    assert_null(st);
    assert_non_null(strstr(err, "not a database"));
}

static void test_open_refuses_newer_schema(void **state)
{
    struct fx *f = *state;
    char err[256] = "";

    store_close(f->st);
    f->st = NULL;
    sql_exec(f->dir, "PRAGMA user_version = 99");
    assert_int_equal(store_open(&f->st, backend, f->dir, err, sizeof err), -1);
    assert_null(f->st);
    assert_non_null(strstr(err, "newer"));
}

/* One process at a time: a second open of a directory in use fails, naming the holder's
 * process id, and changes none of its files; once the holder closes, it opens. */
static void test_open_refuses_a_directory_in_use(void **state)
{
    struct fx *f = *state;
    char err[256] = "", want[64], path[PATH_MAX];
    struct store *st = (struct store *)f;
    struct stat before, after;

    push(f->st, "alice", "bob", 1, "held");
    assert_int_equal(commit(f->st), 0);
    join(path, sizeof path, f->dir, "parley.queue");
    assert_int_equal(stat(path, &before), 0);
    assert_int_equal(store_open(&st, backend, f->dir, err, sizeof err), -1);
    assert_null(st);
    snprintf(want, sizeof want, "in use by another parleyd (pid %ld)", (long)getpid());
    assert_non_null(strstr(err, want));
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(after.st_size, before.st_size);
    assert_int_equal(count(f->st, "bob"), 1);
    reopen(f);
    assert_int_equal(count(f->st, "bob"), 1);
}

/* Closes the fixture's store and expects store_open to refuse the directory with a message
 * holding `what` and the way out; `file` must still be missing or empty afterwards. */
static void expect_refused(struct fx *f, const char *what, const char *file)
{
    char err[512] = "", path[PATH_MAX];
    struct stat sb;

    store_close(f->st);
    f->st = NULL;
    assert_int_equal(store_open(&f->st, backend, f->dir, err, sizeof err), -1);
    assert_null(f->st);
    assert_non_null(strstr(err, what));
    assert_non_null(strstr(err, "--accept-store-loss"));
    join(path, sizeof path, f->dir, file);
    assert_true(stat(path, &sb) != 0 || sb.st_size == 0); /* not created again */
}

/* Opens the fixture's store accepting a loss. */
static void reopen_accepting_loss(struct fx *f)
{
    char err[512] = "";

    store_close(f->st);
    f->st = NULL;
    assert_int_equal(store_open_accepting_loss(&f->st, backend, f->dir, err, sizeof err), 0);
}

/* A missing or emptied parley.queue is refused while parley.db shows the store had one; told
 * to go on, the store keeps its blocks and message ids go on above every id given. */
static void test_lost_log_refused(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX];

    int64_t last = 0;
    for (int i = 0; i < 3; i++)
        last = push(f->st, "alice", "bob", 1, "lost");
    assert_int_equal(block_add(f->st, "bob", "eve"), 0);
    assert_int_equal(commit(f->st), 0);
    assert_true(sql_int(f->dir, "SELECT value FROM meta WHERE key = 'id_reserved'") > last);
    join(path, sizeof path, f->dir, "parley.queue");
    for (int emptied = 0; emptied < 2; emptied++) {
        if (emptied)
            write_file(path, ""); /* the refusal before did not create it again */
        else
            assert_int_equal(unlink(path), 0);
        expect_refused(f, "parley.queue is missing or empty, but parley.db shows", "parley.queue");
    }
    reopen_accepting_loss(f);
    assert_int_equal(count(f->st, "bob"), 0);
    assert_true(push(f->st, "alice", "bob", 2, "new") > last);
    assert_int_equal(block_remove(f->st, "bob", "eve"), 1);
    assert_int_equal(commit(f->st), 0);
    reopen(f); /* a store again: no loss to accept */
    assert_int_equal(count(f->st, "bob"), 1);
}

/* An emptied or missing parley.db is refused while parley.queue shows the store had one;
 * told to go on, the messages stay and their ids go on. */
static void test_lost_db_refused(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX];
    static const char *const sqlite_files[] = {"parley.db", "parley.db-wal", "parley.db-shm"};

    int64_t last = push(f->st, "alice", "bob", 1, "kept");
    assert_int_equal(block_add(f->st, "bob", "eve"), 0);
    assert_int_equal(commit(f->st), 0);
    store_close(f->st);
    f->st = NULL;
    for (size_t i = 0; i < 3; i++) {
        join(path, sizeof path, f->dir, sqlite_files[i]);
        if (i == 0)
            assert_int_equal(truncate(path, 0), 0);
        else if (unlink(path) != 0)
            assert_int_equal(errno, ENOENT);
    }
    expect_refused(f, "parley.db is missing or empty, but parley.queue shows", "parley.db");
    reopen_accepting_loss(f);
    assert_int_equal(count(f->st, "bob"), 1);
    assert_int_equal(block_remove(f->st, "bob", "eve"), 0);
    assert_true(push(f->st, "alice", "bob", 2, "new") > last);
    assert_int_equal(commit(f->st), 0);
    reopen(f);
    assert_int_equal(count(f->st, "bob"), 2);
    assert_int_equal(sql_int(f->dir, "SELECT length(value) FROM meta WHERE key = 'store_id'"), 32);
}

/* The log of another store is refused. */
static void test_foreign_log_refused(void **state)
{
    struct fx *f = *state;
    char other[PATH_MAX], from[PATH_MAX], to[PATH_MAX], err[256] = "";
    struct store *st = NULL;

    join(other, sizeof other, f->root, "other");
    assert_int_equal(store_open(&st, backend, other, err, sizeof err), 0);
    store_close(st);
    push(f->st, "alice", "bob", 1, "mine");
    assert_int_equal(commit(f->st), 0);
    join(from, sizeof from, other, "parley.queue");
    join(to, sizeof to, f->dir, "parley.queue");
    store_close(f->st);
    f->st = NULL;
    assert_int_equal(rename(from, to), 0);
    expect_refused(f, "parley.queue belongs to another store than parley.db", "none");
}

/* When damage took the newest messages of the log (and with them the log's knowledge of their
 * ids), ids still never go back: they go on above the reservation. */
static void test_ids_never_go_back_after_damage(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX];
    struct stat sb;
    unsigned char b;

    push(f->st, "alice", "bob", 1, "kept");
    assert_int_equal(commit(f->st), 0);
    int64_t lost = push(f->st, "alice", "bob", 2, "damaged, and the newest");
    assert_int_equal(commit(f->st), 0);
    store_close(f->st);
    f->st = NULL;
    join(path, sizeof path, f->dir, "parley.queue");
    assert_int_equal(stat(path, &sb), 0);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    off_t at = sb.st_size - 9 - 12; /* in the last message's body, before its COMMIT */
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x01;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
    reopen(f);
    assert_int_equal(count(f->st, "bob"), 1);
    assert_true(push(f->st, "alice", "bob", 3, "new") > lost);
}

static void test_close_null_and_error_text(void **state)
{
    struct fx *f = *state;

    store_close(NULL);
    assert_non_null(store_error(NULL));
    assert_non_null(store_error(f->st));
}

/* ---- queue ---- */

static void test_push_load_order(void **state)
{
    struct fx *f = *state;
    int64_t a = push(f->st, "alice", "bob", 100, "one");
    int64_t c = push(f->st, "carol", "dave", 101, "other");
    int64_t b = push(f->st, "carol", "bob", 102, "two");
    int64_t d = push(f->st, "alice", "bob", 103, "three");
    struct seen_msgs s = load(f->st, "bob", 0, 0);

    assert_true(a < b && b < d); /* ids grow per recipient (across recipients: store.h) */
    assert_true(c > 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.id[0], a);
    assert_int_equal(s.id[1], b);
    assert_int_equal(s.id[2], d);
    assert_string_equal(s.sender[0], "alice");
    assert_string_equal(s.sender[1], "carol");
    assert_string_equal(s.recipient[1], "bob");
    assert_int_equal(s.sent_at[0], 100);
    assert_int_equal(s.sent_at[2], 103);
    assert_string_equal(s.body[0], "one");
    assert_string_equal(s.body[1], "two");
    assert_string_equal(s.body[2], "three");

    s = load(f->st, "dave", 0, 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.id[0], c);
    assert_int_equal(load(f->st, "nobody", 0, 0).n, 0);
}

static void test_ids_not_reused_after_ack_and_restart(void **state)
{
    struct fx *f = *state;
    int64_t last = 0;

    for (int i = 0; i < 3; i++)
        last = push(f->st, "alice", "bob", i, "x");
    assert_int_equal(store_queue_ack(f->st, "bob", last), 0);
    assert_int_equal(count(f->st, "bob"), 0);
    reopen(f);
    assert_true(push(f->st, "alice", "bob", 9, "y") > last);
}

static void test_load_after_and_limit(void **state)
{
    struct fx *f = *state;
    int64_t id[5];
    struct seen_msgs s;

    for (int i = 0; i < 5; i++)
        id[i] = push(f->st, "alice", "bob", i, "m");

    s = load(f->st, "bob", id[1], 2);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.id[0], id[2]);
    assert_int_equal(s.id[1], id[3]);

    s = load(f->st, "bob", id[1], 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.id[2], id[4]);

    assert_int_equal(load(f->st, "bob", 0, 1).n, 1);
    assert_int_equal(load(f->st, "bob", 0, 100).n, 5);
    assert_int_equal(load(f->st, "bob", id[4], 0).n, 0);
}

static void test_load_callback_stops(void **state)
{
    struct fx *f = *state;
    struct seen_msgs s = {.stop_after = 2};

    for (int i = 0; i < 4; i++)
        push(f->st, "alice", "bob", i, "m");
    assert_int_equal(load_rc(f->st, "bob", 0, 0, &s), 0);
    assert_int_equal(s.n, 2);
    /* The statement was reset: a new walk sees everything again. */
    assert_int_equal(load(f->st, "bob", 0, 0).n, 4);
}

static void test_ack_only_up_to_id_and_recipient(void **state)
{
    struct fx *f = *state;
    int64_t b1 = push(f->st, "alice", "bob", 1, "b1");
    int64_t c1 = push(f->st, "alice", "carol", 2, "c1");
    int64_t b2 = push(f->st, "alice", "bob", 3, "b2");
    int64_t b3 = push(f->st, "alice", "bob", 4, "b3");
    struct seen_msgs s;

    (void)b1;
    assert_int_equal(store_queue_ack(f->st, "bob", b2), 0);
    s = load(f->st, "bob", 0, 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.id[0], b3);
    assert_int_equal(count(f->st, "carol"), 1);
    assert_int_equal(load(f->st, "carol", 0, 0).id[0], c1);

    /* Acking past carol's id for bob leaves carol alone; acking nothing is fine. */
    assert_int_equal(store_queue_ack(f->st, "bob", b3 + 100), 0);
    assert_int_equal(count(f->st, "bob"), 0);
    assert_int_equal(count(f->st, "carol"), 1);
    assert_int_equal(store_queue_ack(f->st, "nobody", 1000), 0);
}

static void test_count(void **state)
{
    struct fx *f = *state;

    assert_int_equal(count(f->st, "bob"), 0);
    push(f->st, "alice", "bob", 1, "a");
    push(f->st, "alice", "bob", 2, "b");
    push(f->st, "bob", "alice", 3, "c");
    assert_int_equal(count(f->st, "bob"), 2);
    assert_int_equal(count(f->st, "alice"), 1);
    assert_int_equal(count(f->st, "Bob"), 0); /* names are exact */
}

/* A recipient with max_queued messages waiting takes no more (STORE_FULL) until one is acked;
 * 0 is no limit, and the limit is each recipient's own. */
static void test_push_refused_when_full(void **state)
{
    struct fx *f = *state;
    int64_t id = 0, first = push(f->st, "alice", "bob", 1, "one");

    assert_int_equal(push_rc(f->st, "carol", "bob", 2, "two", 3, 2, &id), 0);
    assert_true(id > first);
    assert_int_equal(push_rc(f->st, "alice", "bob", 3, "three", 5, 2, &id), STORE_FULL);
    assert_int_equal(id, -1);
    assert_int_equal(count(f->st, "bob"), 2);
    assert_int_equal(push_rc(f->st, "alice", "carol", 4, "other", 5, 2, &id), 0);
    assert_int_equal(push_rc(f->st, "alice", "bob", 5, "unlimited", 9, 0, &id), 0);
    assert_int_equal(count(f->st, "bob"), 3);
    assert_int_equal(store_queue_ack(f->st, "bob", first), 0);
    assert_int_equal(push_rc(f->st, "alice", "bob", 6, "room", 4, 3, &id), 0);
    assert_int_equal(push_rc(f->st, "alice", "bob", 7, "full", 4, 3, &id), STORE_FULL);
    struct seen_msgs s = load(f->st, "bob", 0, 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.body[0], "two");
    assert_string_equal(s.body[1], "unlimited");
    assert_string_equal(s.body[2], "room");
}

static void test_bodies_exact(void **state)
{
    struct fx *f = *state;
    const char *spaces = "  hello   world with  spaces  ";
    const char *utf8 = "h\xc3\xa9llo \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac "
                       "\xf0\x9f\x8e\x89";
    char bytes[256];
    int64_t id;
    struct seen_msgs s;

    for (int i = 0; i < 255; i++)
        bytes[i] = (char)(i + 1); /* every byte but NUL, including invalid UTF-8 */
    bytes[255] = '\0';

    push(f->st, "alice", "bob", 1, spaces);
    push(f->st, "alice", "bob", 2, utf8);
    /* Only the first 3 bytes of the buffer are the body. */
    assert_int_equal(push_rc(f->st, "alice", "bob", 3, "abcdef", 3, 0, &id), 0);
    assert_int_equal(push_rc(f->st, "alice", "bob", 4, "", 0, 0, &id), 0);
    assert_int_equal(push_rc(f->st, "alice", "bob", 5, bytes, 255, 0, &id), 0);

    s = load(f->st, "bob", 0, 0);
    assert_int_equal(s.n, 5);
    assert_int_equal(s.body_len[0], strlen(spaces));
    assert_string_equal(s.body[0], spaces);
    assert_int_equal(s.body_len[1], strlen(utf8));
    assert_string_equal(s.body[1], utf8);
    assert_int_equal(s.body_len[2], 3);
    assert_string_equal(s.body[2], "abc");
    assert_int_equal(s.body_len[3], 0);
    assert_int_equal(s.body_len[4], 255);
    assert_memory_equal(s.body[4], bytes, 255);
    for (size_t i = 0; i < s.n; i++)
        assert_true(s.body_terminated[i]);
}

/* Calls back into the store from inside a walk, which must be refused. */
struct reentry {
    struct store *st;
    struct answer a;
};

static void reentry_done(void *ctx, int rc)
{
    struct reentry *r = ctx;

    on_done(&r->a, rc);
}

static int reenter(void *ctx, const struct store_msg *m)
{
    struct store *st = ((struct reentry *)ctx)->st;
    int64_t id;

    (void)m;
    assert_int_equal(push_rc(st, "x", "y", 1, "z", 1, 0, &id), -1);
    assert_non_null(strstr(store_error(st), "callback"));
    return 0;
}

/* Local only: store.h does not say whether a walk's callback may call the store; the local
 * backend refuses it (a running statement), the redis one answers walks from the loop, where
 * a wait inside a callback cannot run the loop again. */
static void test_reentry_refused(void **state)
{
    struct fx *f = *state;

    push(f->st, "alice", "bob", 1, "m");
    struct reentry r = {f->st, {0}};
    store_queue_load(f->st, "bob", 0, 0, reenter, reentry_done, &r);
    assert_int_equal(wait_answer(f->st, &r.a), 0);
    /* The store works again after the walk. */
    assert_int_equal(count(f->st, "y"), 0);
    push(f->st, "alice", "bob", 2, "n");
    assert_int_equal(count(f->st, "bob"), 2);
}

static void test_sqlite_failure_reported(void **state)
{
    struct fx *f = *state;
    int64_t id = 0;
    struct store_lock lock;

    /* Another connection breaks the schema under the open store. */
    sql_exec(f->dir, "DROP TABLE lockouts;");
    assert_int_equal(store_lock_get(f->st, "alice", &lock), -1);
    assert_non_null(strstr(store_error(f->st), "lock-out"));
    assert_non_null(strstr(store_error(f->st), "no such table"));
    /* Unaffected tables, and the queue, still work. */
    assert_int_equal(block_add(f->st, "a", "b"), 0);
    assert_int_equal(push_rc(f->st, "alice", "bob", 1, "m", 1, 0, &id), 0);
    assert_int_equal(commit(f->st), 0);
}

/* Closes the fixture's store, then in a child process opens it, runs `steps` and dies by
 * SIGKILL (no close, no exit handlers); reopens it in this process afterwards. */
static void crash_after(struct fx *f, int (*steps)(struct store *st))
{
    pid_t pid;
    int status = 0;

    close_store(f);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[256];

        make_loop(); /* its own: the parent's is not the child's to use */
        if (open_store(f, NULL, NULL, err, sizeof err) != 0 || steps(f->st) != 0)
            _exit(1);
        raise(SIGKILL);
        _exit(2);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    reopen(f);
}

static int commit_one_push_another(struct store *st)
{
    int64_t id;

    return push_rc(st, "alice", "bob", 1, "committed", 9, 0, &id) != 0 || commit(st) != 0 ||
           push_rc(st, "alice", "bob", 2, "in flight", 9, 0, &id) != 0;
}

/* Queue writes are grouped: a crash keeps what store_commit committed; of a backend that answers
 * early, nothing after it, while one that answers once the engine confirmed answered the
 * second push only when it was stored. */
static void test_group_commit_boundary(void **state)
{
    struct fx *f = *state;
    struct seen_msgs s;

    crash_after(f, commit_one_push_another);
    s = load(f->st, "bob", 0, 0);
    assert_int_equal(s.n, store_answers_early(f->st) ? 1 : 2);
    assert_string_equal(s.body[0], "committed");
    assert_int_equal(commit(f->st), 0); /* nothing pending is not a failure */
}

/* Login history joins the group commit: a crash keeps what store_commit committed, and a write
 * that must be durable at once (a block) commits the pending history first. */
static int history_then_block(struct store *st)
{
    return store_presence_logout(st, "alice", 200) || commit(st) != 0 ||
           store_presence_logout(st, "carol", 200) || block_add(st, "x", "y") != 0 ||
           store_presence_logout(st, "bob", 300);
}

static void test_login_history_grouped(void **state)
{
    struct fx *f = *state;
    char buf[256];

    crash_after(f, history_then_block);
    assert_string_equal(since(f->st, 100, buf, sizeof buf), "alice,carol");
    /* Not yet committed, but visible to the store's own reads. */
    assert_int_equal(store_presence_logout(f->st, "dave", 400), 0);
    assert_string_equal(since(f->st, 400, buf, sizeof buf), "dave");
    assert_int_equal(commit(f->st), 0);
    reopen(f);
    assert_string_equal(since(f->st, 400, buf, sizeof buf), "dave");
}

static int push_commit_block(struct store *st)
{
    int64_t id;

    return push_rc(st, "alice", "bob", 42, "after crash", 11, 0, &id) != 0 || commit(st) != 0 ||
           block_add(st, "bob", "eve") != 0;
}

static void test_message_survives_kill(void **state)
{
    struct fx *f = *state;
    struct seen_msgs s;

    crash_after(f, push_commit_block);
    s = load(f->st, "bob", 0, 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.body[0], "after crash");
    assert_int_equal(s.sent_at[0], 42);
    assert_int_equal(block_remove(f->st, "bob", "eve"), 1);
}

/* ---- blocks ---- */

/* The blocks are walked at start-up (server.c reads them then; the redis backend can only
 * then), in no set order. */
static void test_blocks(void **state)
{
    struct fx *f = *state;
    struct names nm = {0};
    char buf[256];

    assert_int_equal(block_add(f->st, "bob", "alice"), 0);
    assert_int_equal(block_add(f->st, "bob", "alice"), 0);
    assert_int_equal(block_add(f->st, "alice", "carol"), 0);
    assert_int_equal(block_add(f->st, "alice", "bob"), 0);
    reopen_reading(f, walk_blocks, &nm);
    assert_int_equal(nm.n, 3);
    assert_string_equal(sorted(&nm, buf, sizeof buf), "alice>bob,alice>carol,bob>alice");

    assert_int_equal(block_remove(f->st, "alice", "bob"), 1);
    assert_int_equal(block_remove(f->st, "alice", "bob"), 0);
    assert_int_equal(block_remove(f->st, "nobody", "bob"), 0);
    memset(&nm, 0, sizeof nm);
    reopen_reading(f, walk_blocks, &nm);
    assert_string_equal(sorted(&nm, buf, sizeof buf), "alice>carol,bob>alice");

    memset(&nm, 0, sizeof nm);
    nm.stop_after = 1;
    reopen_reading(f, walk_blocks, &nm);
    assert_int_equal(nm.n, 1);
}

/* ---- persistence ---- */

/* A version-1 database kept its queue in a table: opening it moves the messages into the
 * queue log with their ids, and later ids stay above every id the table ever gave. */
static void test_old_queue_table_imported(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX];
    struct seen_msgs s;

    store_close(f->st);
    f->st = NULL;
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    assert_int_equal(mkdir(f->dir, 0700), 0);
    join(path, sizeof path, f->dir, "parley.db");
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                     SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TABLE queue (id INTEGER PRIMARY KEY AUTOINCREMENT, sender TEXT NOT "
                     "NULL, recipient TEXT NOT NULL, sent_at INTEGER NOT NULL, body BLOB NOT "
                     "NULL);"
                     "CREATE INDEX queue_recipient ON queue (recipient, id);"
                     "CREATE TABLE blocks (blocker TEXT NOT NULL, blocked TEXT NOT NULL, PRIMARY "
                     "KEY (blocker, blocked)) WITHOUT ROWID;"
                     "CREATE TABLE presence (name TEXT PRIMARY KEY, logged_in INTEGER NOT NULL "
                     "DEFAULT 0, last_login INTEGER, last_logout INTEGER);"
                     "CREATE TABLE meta (key TEXT PRIMARY KEY, value);"
                     "CREATE TABLE lockouts (name TEXT PRIMARY KEY, failures INTEGER NOT NULL, "
                     "locked_until INTEGER NOT NULL);"
                     "INSERT INTO queue VALUES (5, 'alice', 'bob', 50, 'five');"
                     "INSERT INTO queue VALUES (7, 'carol', 'bob', 70, 'seven');"
                     "INSERT INTO queue VALUES (9, 'alice', 'dave', 90, 'acked');"
                     "DELETE FROM queue WHERE id = 9;"
                     "PRAGMA user_version = 1;",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);

    reopen(f);
    s = load(f->st, "bob", 0, 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.id[0], 5);
    assert_string_equal(s.body[0], "five");
    assert_int_equal(s.sent_at[0], 50);
    assert_int_equal(s.id[1], 7);
    assert_string_equal(s.sender[1], "carol");
    assert_int_equal(count(f->st, "dave"), 0);
    assert_int_equal(push(f->st, "alice", "bob", 100, "new"), 10);
    assert_int_equal(commit(f->st), 0);
    assert_int_equal(sql_int(f->dir, "PRAGMA user_version"), 3);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sqlite_schema WHERE name = 'queue'"), 0);
    reopen(f);
    assert_int_equal(count(f->st, "bob"), 3);
}

static void test_everything_survives_reopen(void **state)
{
    struct fx *f = *state;
    struct walked w = {0};
    char buf[256];
    struct seen_msgs s;

    push(f->st, "alice", "bob", 10, "first");
    push(f->st, "carol", "bob", 11, "second");
    assert_int_equal(block_add(f->st, "bob", "eve"), 0);
    for (int i = 1; i <= 3; i++)
        attempt(f->st, "mallory", false, 4000000, i, i < 3 ? 0 : 4060);
    assert_int_equal(store_presence_login(f->st, "alice", 100), 0);
    assert_int_equal(store_presence_logout(f->st, "alice", 200), 0);

    reopen_reading(f, walk_all, &w);
    s = load(f->st, "bob", 0, 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.body[0], "first");
    assert_string_equal(s.sender[1], "carol");
    assert_string_equal(w.blocks.text, "bob>eve");
    assert_string_equal(w.locks.text, "mallory:3:4060");
    assert_int_equal(attempt(f->st, "mallory", true, 4001000, 3, 4060), STORE_LOCK_LOCKED);
    assert_string_equal(since(f->st, 200, buf, sizeof buf), "alice");
    assert_string_equal(since(f->st, 201, buf, sizeof buf), "");
}

/* ---- presence ---- */

static void test_presence_since(void **state)
{
    struct fx *f = *state;
    char buf[256];

    assert_int_equal(store_presence_login(f->st, "alice", 100), 0);
    assert_int_equal(store_presence_login(f->st, "bob", 120), 0);
    assert_int_equal(store_presence_login(f->st, "carol", 130), 0);
    assert_int_equal(store_presence_logout(f->st, "alice", 150), 0);
    assert_int_equal(store_presence_logout(f->st, "bob", 200), 0);
    /* carol stays logged in; dave logs out without a recorded login. */
    assert_int_equal(store_presence_logout(f->st, "dave", 90), 0);

    assert_string_equal(since(f->st, 0, buf, sizeof buf), "alice,bob,dave");
    assert_string_equal(since(f->st, 150, buf, sizeof buf), "alice,bob");
    assert_string_equal(since(f->st, 151, buf, sizeof buf), "bob");
    assert_string_equal(since(f->st, 200, buf, sizeof buf), "bob");
    assert_string_equal(since(f->st, 201, buf, sizeof buf), "");

    /* A later logout moves the time forward. */
    assert_int_equal(store_presence_login(f->st, "alice", 300), 0);
    assert_int_equal(store_presence_logout(f->st, "alice", 310), 0);
    assert_string_equal(since(f->st, 201, buf, sizeof buf), "alice");
}

/* Local only (this and the next): the redis backend records no logins (a login is a claim of
 * the cluster: presence.c) and no heartbeat (the node's lease is one); a node that crashed
 * has its claims ended when it starts again or its lease runs out (cluster.c). */
static void test_recover_uses_heartbeat(void **state)
{
    struct fx *f = *state;
    char buf[256];

    assert_int_equal(store_presence_login(f->st, "alice", 100), 0);
    assert_int_equal(store_presence_login(f->st, "bob", 100), 0);
    assert_int_equal(store_presence_logout(f->st, "bob", 110), 0);
    assert_int_equal(store_heartbeat(f->st, 130), 0);
    assert_int_equal(store_heartbeat(f->st, 140), 0);
    /* carol logs in after the last heartbeat, then the server "crashes". */
    assert_int_equal(store_presence_login(f->st, "carol", 145), 0);
    assert_string_equal(since(f->st, 0, buf, sizeof buf), "bob");

    reopen(f);
    assert_int_equal(store_presence_recover(f->st, 1000), 0);
    assert_string_equal(since(f->st, 140, buf, sizeof buf), "alice,carol");
    assert_string_equal(since(f->st, 141, buf, sizeof buf), "carol"); /* not before login */
    assert_string_equal(since(f->st, 146, buf, sizeof buf), "");
    assert_string_equal(since(f->st, 110, buf, sizeof buf), "alice,bob,carol");

    /* Recovered users are no longer logged in: a second recovery changes nothing. */
    assert_int_equal(store_heartbeat(f->st, 500), 0);
    assert_int_equal(store_presence_recover(f->st, 2000), 0);
    assert_string_equal(since(f->st, 146, buf, sizeof buf), "");
}

static void test_recover_without_heartbeat_uses_now(void **state)
{
    struct fx *f = *state;
    char buf[256];

    assert_int_equal(store_presence_login(f->st, "alice", 100), 0);
    assert_int_equal(store_presence_recover(f->st, 1000), 0);
    assert_string_equal(since(f->st, 1000, buf, sizeof buf), "alice");
    assert_string_equal(since(f->st, 1001, buf, sizeof buf), "");
}

/* Seconds of wall time since `t0`. */
static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* WHOSINCE's query reads the recent logouts only (an index on the logout time), the newest
 * first: with 200,000 old logouts, a thousand short-window look-ups stay far under a second
 * (a full scan takes about 10 ms each: 10 s). */
static void test_presence_since_reads_only_recent(void **state)
{
    struct fx *f = *state;
    struct names nm = {0};
    struct timespec t0;

    sql_exec(f->dir, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
                     " WHERE i < 200000) INSERT INTO presence (name, logged_in, last_login,"
                     " last_logout) SELECT 'old' || i, 0, i, i FROM n");
    assert_int_equal(store_presence_logout(f->st, "alice", 1000000), 0);
    assert_int_equal(store_presence_logout(f->st, "bob", 1000001), 0);
    assert_int_equal(commit(f->st), 0);
    assert_int_equal(since_names(f->st, 999999, &nm), 0);
    assert_string_equal(nm.text, "bob,alice"); /* the latest first */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 1000; i++) {
        memset(&nm, 0, sizeof nm);
        assert_int_equal(since_names(f->st, 1000001, &nm), 0);
        assert_string_equal(nm.text, "bob");
    }
    assert_true(seconds_since(&t0) < 1.0);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sqlite_schema"
                                     " WHERE name = 'presence_logout'"),
                     1);
}

/* The history of a name can be forgotten (its account is gone), durably. */
static void test_presence_forget(void **state)
{
    struct fx *f = *state;
    char buf[256];

    assert_int_equal(store_presence_logout(f->st, "alice", 100), 0);
    assert_int_equal(store_presence_logout(f->st, "bob", 110), 0);
    assert_int_equal(store_presence_login(f->st, "carol", 120), 0);
    assert_int_equal(store_presence_forget(f->st, "alice"), 0);
    assert_int_equal(store_presence_forget(f->st, "carol"), 0);
    assert_int_equal(store_presence_forget(f->st, "nobody"), 0);
    assert_int_equal(commit(f->st), 0);
    assert_string_equal(since(f->st, 0, buf, sizeof buf), "bob");
    reopen(f);
    assert_int_equal(store_presence_recover(f->st, 1000), 0); /* carol is no longer online */
    assert_string_equal(since(f->st, 0, buf, sizeof buf), "bob");
    /* A name that comes back is recorded again. */
    assert_int_equal(store_presence_logout(f->st, "alice", 300), 0);
    assert_string_equal(since(f->st, 200, buf, sizeof buf), "alice");
}

/* Local only: a forgotten name leaves no row behind in parley.db. */
static void test_presence_forget_deletes_the_row(void **state)
{
    struct fx *f = *state;

    assert_int_equal(store_presence_logout(f->st, "alice", 100), 0);
    assert_int_equal(store_presence_login(f->st, "carol", 120), 0);
    assert_int_equal(store_presence_forget(f->st, "alice"), 0);
    assert_int_equal(store_presence_forget(f->st, "carol"), 0);
    assert_int_equal(commit(f->st), 0);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM presence"), 0);
}

/* ---- lock-outs ---- */

/* Three wrong passwords lock for the policy's duration from the third, rounded up to the next
 * second; each name counts on its own. */
static void test_lock_attempts_lock_at_max_failures(void **state)
{
    struct fx *f = *state;
    const int64_t t = 1700000000500; /* half a second past */

    assert_int_equal(attempt(f->st, "mallory", false, t, 1, 0), STORE_LOCK_WRONG);
    assert_int_equal(attempt(f->st, "mallory", false, t + 1000, 2, 0), STORE_LOCK_WRONG);
    assert_int_equal(attempt(f->st, "trudy", false, t, 1, 0), STORE_LOCK_WRONG);
    assert_int_equal(attempt(f->st, "mallory", false, t + 2000, 3, 1700000003 + 60),
                     STORE_LOCK_NOW_LOCKED);
    assert_int_equal(attempt(f->st, "trudy", true, t, 0, 0), STORE_LOCK_PASS);
}

/* While locked, an attempt counts nothing, even with the right password, up to the lock's last
 * millisecond. */
static void test_lock_attempt_while_locked_counts_nothing(void **state)
{
    struct fx *f = *state;
    const int64_t until = 1000 + 60;

    for (int i = 1; i <= 3; i++)
        attempt(f->st, "mallory", false, 1000000, i, i < 3 ? 0 : until);
    assert_int_equal(attempt(f->st, "mallory", true, 1001000, 3, until), STORE_LOCK_LOCKED);
    assert_int_equal(attempt(f->st, "mallory", false, 1002000, 3, until), STORE_LOCK_LOCKED);
    assert_int_equal(attempt(f->st, "mallory", true, until * 1000 - 1, 3, until),
                     STORE_LOCK_LOCKED);
}

/* An expired lock is cleared before the attempt counts: a wrong password starts the count
 * again, a right one passes. */
static void test_lock_expiry_clears(void **state)
{
    struct fx *f = *state;
    const int64_t until = 1000 + 60;

    for (int i = 1; i <= 3; i++) {
        attempt(f->st, "mallory", false, 1000000, i, i < 3 ? 0 : until);
        attempt(f->st, "trudy", false, 1000000, i, i < 3 ? 0 : until);
    }
    assert_int_equal(attempt(f->st, "mallory", false, until * 1000, 1, 0), STORE_LOCK_WRONG);
    assert_int_equal(attempt(f->st, "mallory", false, until * 1000 + 1, 2, 0), STORE_LOCK_WRONG);
    assert_int_equal(attempt(f->st, "trudy", true, until * 1000, 0, 0), STORE_LOCK_PASS);
}

/* A right password resets the count: three more wrong ones are needed to lock. */
static void test_lock_right_password_resets(void **state)
{
    struct fx *f = *state;

    attempt(f->st, "alice", false, 1000000, 1, 0);
    attempt(f->st, "alice", false, 1000000, 2, 0);
    assert_int_equal(attempt(f->st, "alice", true, 1000000, 0, 0), STORE_LOCK_PASS);
    assert_int_equal(attempt(f->st, "alice", false, 1000000, 1, 0), STORE_LOCK_WRONG);
    assert_int_equal(attempt(f->st, "alice", false, 1000000, 2, 0), STORE_LOCK_WRONG);
    assert_int_equal(attempt(f->st, "alice", false, 1000000, 3, 1060), STORE_LOCK_NOW_LOCKED);
}

/* The records walked at start-up are those with failures or a lock; a reset one is gone. */
static void test_lock_records_walked(void **state)
{
    struct fx *f = *state;
    struct names nm = {0};
    char buf[256];

    for (int i = 1; i <= 3; i++)
        attempt(f->st, "mallory", false, 1000000, i, i < 3 ? 0 : 1060);
    attempt(f->st, "trudy", false, 1000000, 1, 0);
    attempt(f->st, "alice", false, 1000000, 1, 0);
    attempt(f->st, "alice", true, 1000000, 0, 0);
    reopen_reading(f, walk_locks, &nm);
    assert_string_equal(sorted(&nm, buf, sizeof buf), "mallory:3:1060,trudy:1:0");
    memset(&nm, 0, sizeof nm);
    nm.stop_after = 1;
    reopen_reading(f, walk_locks, &nm);
    assert_int_equal(nm.n, 1);
}

/* Local only: single records are read and written (store_lock_get, store_lock_put); the redis
 * backend decides lock-outs with store_lock_attempt alone. */
static void test_lock_get_put(void **state)
{
    struct fx *f = *state;
    struct store_lock lock = {.failures = 7, .locked_until = 7};
    struct store_lock put;
    struct names nm = {0};

    assert_int_equal(store_lock_get(f->st, "alice", &lock), 0);
    assert_int_equal(lock.failures, 0);
    assert_int_equal(lock.locked_until, 0);

    put = (struct store_lock){.failures = 2, .locked_until = 0};
    assert_int_equal(store_lock_put(f->st, "alice", &put), 0);
    put = (struct store_lock){.failures = 3, .locked_until = 1700000000};
    assert_int_equal(store_lock_put(f->st, "bob", &put), 0);
    assert_int_equal(store_lock_get(f->st, "alice", &lock), 0);
    assert_int_equal(lock.failures, 2);
    assert_int_equal(lock.locked_until, 0);

    put = (struct store_lock){.failures = 3, .locked_until = 1800000000};
    assert_int_equal(store_lock_put(f->st, "alice", &put), 0);
    assert_int_equal(store_lock_each(f->st, collect_lock, &nm), 0);
    assert_string_equal(nm.text, "alice:3:1800000000,bob:3:1700000000");

    put = (struct store_lock){0};
    assert_int_equal(store_lock_put(f->st, "alice", &put), 0);
    assert_int_equal(store_lock_put(f->st, "nobody", &put), 0);
    assert_int_equal(store_lock_get(f->st, "alice", &lock), 0);
    assert_int_equal(lock.failures, 0);
    assert_int_equal(lock.locked_until, 0);
    memset(&nm, 0, sizeof nm);
    assert_int_equal(store_lock_each(f->st, collect_lock, &nm), 0);
    assert_string_equal(nm.text, "bob:3:1700000000");
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM lockouts"), 1);

    /* A zero failure count with a lock still in force is kept. */
    put = (struct store_lock){.failures = 0, .locked_until = 5};
    assert_int_equal(store_lock_put(f->st, "carol", &put), 0);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM lockouts"), 2);
}

/* Sets the largest file this process may write (RLIMIT_FSIZE); writes past it fail. */
static void limit_file_size(rlim_t bytes)
{
    struct rlimit rl;

    assert_int_equal(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rl.rlim_cur = bytes;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

/* A lock-out the disk refuses (here the file-size limit stops the WAL from growing) is kept and
 * written at the next heartbeat or at close, once the disk takes it; a newer record of the same
 * name replaces the kept one. */
static void test_lock_refused_by_the_disk_written_later(void **state)
{
    struct fx *f = *state;
    char wal[PATH_MAX];
    struct stat sb;
    struct store_lock lock = {.failures = 1, .locked_until = 0}, got;

    join(wal, sizeof wal, f->dir, "parley.db-wal");
    assert_int_equal(stat(wal, &sb), 0);
    signal(SIGXFSZ, SIG_IGN);
    limit_file_size((rlim_t)sb.st_size);
    assert_int_equal(store_lock_put(f->st, "mallory", &lock), -1);
    assert_non_null(strstr(store_error(f->st), "kept"));
    lock.failures = 2;
    assert_int_equal(store_lock_put(f->st, "mallory", &lock), -1);
    assert_int_equal(store_lock_put(f->st, "trudy", &lock), -1);
    assert_int_equal(store_heartbeat(f->st, 100), -1); /* still refused: still kept */
    limit_file_size(RLIM_INFINITY);
    signal(SIGXFSZ, SIG_DFL);
    assert_int_equal(store_heartbeat(f->st, 101), 0);
    assert_int_equal(sql_int(f->dir, "SELECT failures FROM lockouts WHERE name = 'mallory'"), 2);
    assert_int_equal(sql_int(f->dir, "SELECT failures FROM lockouts WHERE name = 'trudy'"), 2);
    /* A record refused at the end is written by store_close. */
    limit_file_size((rlim_t)sb.st_size);
    signal(SIGXFSZ, SIG_IGN);
    lock.failures = 0;
    lock.locked_until = 900;
    assert_int_equal(store_lock_put(f->st, "trudy", &lock), -1);
    limit_file_size(RLIM_INFINITY);
    signal(SIGXFSZ, SIG_DFL);
    reopen(f);
    assert_int_equal(store_lock_get(f->st, "trudy", &got), 0);
    assert_int_equal(got.failures, 0);
    assert_int_equal(got.locked_until, 900);
}

/* ---- checkpoints of parley.db (local) ---- */

/* The logouts of a batch of write_history, and the logouts a case wrote. */
#define HISTORY_BATCH 20
static int history_written;

/* What the checkpoint hook saw and does: it counts the checkpoints, notes one run on the loop's
 * (the test's) thread, waits while `gate` is closed and fails when `refuse` is set. */
static struct {
    atomic_int calls;
    atomic_bool on_loop;
    atomic_bool gate;
    atomic_bool refuse;
    atomic_int sleep_ms;
    pthread_t loop;
} hook;

static int checkpoint_hook(void)
{
    atomic_fetch_add(&hook.calls, 1);
    if (pthread_equal(pthread_self(), hook.loop))
        atomic_store(&hook.on_loop, true);
    while (atomic_load(&hook.gate))
        usleep(1000);
    usleep((useconds_t)atomic_load(&hook.sleep_ms) * 1000);
    return atomic_load(&hook.refuse) ? -1 : 0;
}

static void hook_install(void)
{
    atomic_store(&hook.calls, 0);
    history_written = 0;
    atomic_store(&hook.on_loop, false);
    hook.loop = pthread_self();
    store_local_set_checkpoint_hook(checkpoint_hook);
}

/* Waits until the hook was called `n` times (fails after WAIT_MS); returns the count then. */
static int wait_calls(int n)
{
    for (int64_t deadline = mono_ms() + WAIT_MS; atomic_load(&hook.calls) < n; usleep(1000))
        if (mono_ms() > deadline)
            fail_msg("%d checkpoints, not %d", atomic_load(&hook.calls), n);
    usleep(20000); /* time for one more, if one came */
    return atomic_load(&hook.calls);
}

/* Teardown: nothing waits in the hook (a store closing waits for its checkpoint). */
static void hook_remove(void)
{
    atomic_store(&hook.gate, false);
    atomic_store(&hook.refuse, false);
    atomic_store(&hook.sleep_ms, 0);
    store_local_set_checkpoint_hook(NULL);
}

/* The WAL as SQLite's shared index (parley.db-shm) tells it, in the layout of
 * https://sqlite.org/walformat.html: the frames since it last started over (mxFrame) and how
 * many of them are in parley.db (nBackfill). */
struct wal_state {
    uint32_t frames;
    uint32_t backfilled;
};

static struct wal_state wal_state(const char *dir)
{
    char path[PATH_MAX];
    uint32_t hdr[12], backfilled;

    join(path, sizeof path, dir, "parley.db-shm");
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, hdr, sizeof hdr, 0), (ssize_t)sizeof hdr);
    assert_int_equal(pread(fd, &backfilled, sizeof backfilled, 96), (ssize_t)sizeof backfilled);
    close(fd);
    return (struct wal_state){hdr[4], backfilled};
}

/* The frames parley.db-wal has room for: its size is that of the most it ever held. */
static long wal_file_frames(const char *dir)
{
    char path[PATH_MAX];
    unsigned char hdr[32];
    struct stat sb;

    join(path, sizeof path, dir, "parley.db-wal");
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, hdr, sizeof hdr, 0), (ssize_t)sizeof hdr);
    assert_int_equal(fstat(fd, &sb), 0);
    close(fd);
    long page = (long)hdr[8] << 24 | (long)hdr[9] << 16 | (long)hdr[10] << 8 | (long)hdr[11];
    return (long)(sb.st_size - 32) / (page + 24);
}

/* Logouts of users not seen before, in one batch of the login history (one commit). */

static void write_history(struct store *st)
{
    char name[40];

    for (int i = 0; i < HISTORY_BATCH; i++, history_written++) {
        snprintf(name, sizeof name, "user-%08d-of-the-checkpoint-tests", history_written);
        assert_int_equal(store_presence_logout(st, name, 1000 + history_written), 0);
    }
    assert_int_equal(commit(st), 0);
}

/* Writes batches until the WAL holds at least `frames` frames (it must not start over). */
static void grow_wal(struct fx *f, uint32_t frames)
{
    while (wal_state(f->dir).frames < frames) {
        uint32_t before = wal_state(f->dir).frames;
        write_history(f->st);
        assert_true(wal_state(f->dir).frames > before);
    }
}

/* Writes batches until `frames` frames went into the WAL, however often it starts over. */
static void write_frames(struct fx *f, long frames)
{
    for (long done = 0; done < frames;) {
        uint32_t before = wal_state(f->dir).frames, after;
        write_history(f->st);
        after = wal_state(f->dir).frames;
        done += after > before ? after - before : after;
    }
}

/* Writes batches until the WAL starts over (the loop checkpointed it at its limit). */
static void start_over(struct fx *f)
{
    for (uint32_t before = 0, now; (now = wal_state(f->dir).frames) >= before; before = now)
        write_history(f->st);
}

/* Heartbeats, as a server's, until every frame the WAL has now is in parley.db (or it started
 * over, which it does only then), for at most `ms`; returns whether it came to that. */
static bool heartbeats_until_checkpointed(struct fx *f, int64_t ms)
{
    int64_t deadline = mono_ms() + ms;
    uint32_t frames = wal_state(f->dir).frames;

    for (int64_t t = 2000000000;; t++) {
        struct wal_state w = wal_state(f->dir);
        if (w.backfilled == w.frames || w.frames < frames)
            return true;
        if (mono_ms() > deadline)
            return false;
        usleep(10000);
        assert_int_equal(store_heartbeat(f->st, t), 0);
    }
}

/* The same, failing the case after WAIT_MS. */
static void wait_checkpointed(struct fx *f)
{
    if (!heartbeats_until_checkpointed(f, WAIT_MS))
        fail_msg("the WAL is not checkpointed within %d ms", WAIT_MS);
}

/* A commit past STORE_LOCAL_WAL_CHECKPOINT_PAGES asks the thread for a checkpoint: one, while it
 * runs, however many commits follow, and none on the loop. The next commit after it starts the
 * WAL over. */
static void test_checkpoint_runs_off_the_loop(void **state)
{
    struct fx *f = *state;

    hook_install();
    atomic_store(&hook.gate, true);
    grow_wal(f, STORE_LOCAL_WAL_CHECKPOINT_PAGES + 500);
    assert_int_equal(wait_calls(1), 1);
    assert_int_equal(wal_state(f->dir).backfilled, 0);
    atomic_store(&hook.gate, false);
    wait_checkpointed(f);
    assert_false(atomic_load(&hook.on_loop));
    write_history(f->st);
    assert_true(wal_state(f->dir).frames < 100);
}

/* Writes in bursts with pauses of heartbeats between them (a server's load): the checkpoints
 * keep the WAL's file near STORE_LOCAL_WAL_CHECKPOINT_PAGES, far under the limit where the loop
 * takes over. A pause lasts until the checkpoint is done, or a second. */
static void test_wal_bounded_by_checkpoints(void **state)
{
    struct fx *f = *state;

    hook_install();
    for (int burst = 0; burst < 30; burst++) {
        write_frames(f, STORE_LOCAL_WAL_CHECKPOINT_PAGES / 5);
        if (wal_state(f->dir).frames >= STORE_LOCAL_WAL_CHECKPOINT_PAGES)
            heartbeats_until_checkpointed(f, 1000);
    }
    assert_true(wal_file_frames(f->dir) <= STORE_LOCAL_WAL_CHECKPOINT_PAGES * 3 / 2);
    assert_true(atomic_load(&hook.calls) >= 5);
}

/* Failed checkpoints: logged, not asked for again before the next heartbeat, and the store
 * works on; the loop checkpoints past STORE_LOCAL_WAL_LIMIT_PAGES, so the WAL stays bounded
 * without them. Once they work again, the WAL is checkpointed off the loop again. */
static void test_wal_bounded_when_checkpoints_fail(void **state)
{
    struct fx *f = *state;
    int64_t rows;

    hook_install();
    atomic_store(&hook.refuse, true);
    write_frames(f, 3L * STORE_LOCAL_WAL_LIMIT_PAGES);
    assert_int_equal(wait_calls(1), 1);
    assert_true(wal_file_frames(f->dir) <= STORE_LOCAL_WAL_LIMIT_PAGES + 100);
    rows = sql_int(f->dir, "SELECT count(*) FROM presence");
    assert_int_equal(rows, history_written);
    start_over(f);
    grow_wal(f, STORE_LOCAL_WAL_CHECKPOINT_PAGES);
    assert_int_equal(store_heartbeat(f->st, 2000000000), 0); /* tried again: refused again */
    assert_int_equal(wait_calls(2), 2);
    atomic_store(&hook.refuse, false);
    wait_checkpointed(f);
    assert_true(atomic_load(&hook.calls) >= 3);
    assert_false(atomic_load(&hook.on_loop));
}

/* A checkpoint still running when the store closes: the close waits for it, then checkpoints
 * what is left itself (the WAL is gone), and every write is there at the next open. */
static void test_checkpoint_in_flight_at_close(void **state)
{
    struct fx *f = *state;
    char wal[PATH_MAX];
    struct stat sb;

    hook_install();
    atomic_store(&hook.sleep_ms, 300);
    grow_wal(f, STORE_LOCAL_WAL_CHECKPOINT_PAGES);
    wait_calls(1);
    write_history(f->st); /* a commit while it runs */
    close_store(f);
    join(wal, sizeof wal, f->dir, "parley.db-wal");
    assert_int_equal(stat(wal, &sb), -1);
    assert_int_equal(errno, ENOENT);
    reopen(f);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM presence"), history_written);
}

/* Many pushes to one recipient in one batch (one group commit; in Redis one script, whose
 * messages to a recipient go in chunks of one ZADD), with the queue limit reached inside the
 * batch and an acknowledgement in the middle of it that makes room: every backend takes the same
 * ones, in order. */
#define MANY_PUSHES 2500
#define MANY_LIMIT 2400
static bool stream_has(const void *arg)
{
    return stream_seen.n >= *(const int *)arg;
}

/* Redis only: the messages of one batch reach the stream of their recipient's node as runs,
 * one per recipient, split over several entries when long (batch.lua); the node reads each
 * back with its id, sender, recipient and body as the push answered them, in order. Messages
 * to an offline user are only queued, those to a user of another node go to that node's stream
 * only: pushed first, they would be the first the node reads. */
static void test_stream_runs(void **state)
{
    struct fx *f = *state;
    if (!on_redis())
        skip();
    enum { TO_BOB = 150, TO_DAVE = 5, ELSEWHERE = 3 };
    static struct answer a[TO_BOB + TO_DAVE], other[2 * ELSEWHERE];
    const char *frank_at_t2[] = {"HSET", "parley:online", "frank", "t2"};
    const char *t2_entries[] = {"XLEN", "parley:events:t2"};
    char body[32];

    memset(a, 0, sizeof a);
    memset(&stream_seen, 0, sizeof stream_seen);
    claim("carol");
    claim("bob");
    claim("dave");
    assert_true(redis_run(4, frank_at_t2));
    for (int i = 0; i < 2 * ELSEWHERE; i++)
        store_queue_push(f->st, "carol", i < ELSEWHERE ? "erin" : "frank", 1, "x", 1, 0, on_pushed,
                         &other[i]);
    for (int i = 0; i < TO_BOB + TO_DAVE; i++) {
        bool dave = i % 31 == 7;
        int n = snprintf(body, sizeof body, "%s %d", dave ? "d" : "b", i);
        store_queue_push(f->st, "carol", dave ? "dave" : "bob", 10 + i, body, (size_t)n, 0,
                         on_pushed, &a[i]);
    }
    wait_answer(f->st, &a[TO_BOB + TO_DAVE - 1]);
    int want = TO_BOB + TO_DAVE;
    run_until(f->st, stream_has, &want);
    assert_int_equal(stream_seen.n, want);
    int next_bob = 0, next_dave = 0;
    for (int k = 0; k < want; k++) {
        bool dave = strcmp(stream_seen.to[k], "dave") == 0;
        int *next = dave ? &next_dave : &next_bob;
        int i = *next; /* the next push of this recipient, in push order */
        while (i < want && (i % 31 == 7) != dave)
            i++;
        assert_true(i < want);
        *next = i + 1;
        assert_int_equal(a[i].rc, 0);
        assert_int_equal(stream_seen.id[k], a[i].value);
        assert_string_equal(stream_seen.from[k], "carol");
        snprintf(body, sizeof body, "%s %d", dave ? "d" : "b", i);
        assert_string_equal(stream_seen.body[k], body);
    }
    assert_int_equal(count(f->st, "bob") + count(f->st, "dave"), want);
    assert_int_equal(count(f->st, "erin"), ELSEWHERE);
    assert_int_equal(redis_integer(2, t2_entries), 1);
}

/* Redis only: a body with a NUL byte would cut its run in the stream short (batch.lua joins a
 * run's messages with NULs), so it is refused as a failure and nothing is queued. */
static void test_nul_in_a_body_refused(void **state)
{
    struct fx *f = *state;
    struct answer a = {0};
    if (!on_redis())
        skip();
    claim("carol");
    store_queue_push(f->st, "carol", "bob", 1, "two\0parts", 9, 0, on_pushed, &a);
    assert_int_equal(wait_answer(f->st, &a), -1);
    assert_int_equal(count(f->st, "bob"), 0);
    assert_true(push(f->st, "carol", "bob", 2, "one line") > 0);
}

static void test_many_pushes_in_one_batch(void **state)
{
    struct fx *f = *state;
    static struct answer a[MANY_PUSHES];
    int64_t first = push(f->st, "alice", "bob", 1, "first");
    char body[32];

    memset(a, 0, sizeof a);
    claim("carol");
    for (int i = 0; i < MANY_PUSHES; i++) {
        if (i == MANY_PUSHES / 2)
            assert_int_equal(store_queue_ack(f->st, "bob", first), 0);
        int n = snprintf(body, sizeof body, "m%d", i);
        store_queue_push(f->st, "carol", "bob", 2 + i, body, (size_t)n, MANY_LIMIT, on_pushed,
                         &a[i]);
    }
    assert_int_equal(wait_answer(f->st, &a[MANY_PUSHES - 1]), STORE_FULL);
    int taken = 0;
    int64_t last = first;
    for (int i = 0; i < MANY_PUSHES; i++) {
        assert_int_equal(a[i].answered, 1);
        if (a[i].rc == 0) {
            assert_true(a[i].value > last);
            last = a[i].value;
            taken++;
        } else {
            assert_int_equal(a[i].rc, STORE_FULL);
        }
    }
    /* 1 waiting + the first 1250 = 1251; the ack makes 1250; then up to the limit */
    assert_int_equal(taken, MANY_LIMIT);
    assert_int_equal(count(f->st, "bob"), MANY_LIMIT);
    struct seen_msgs s = load(f->st, "bob", 0, MAX_SEEN);
    assert_int_equal(s.n, MAX_SEEN);
    assert_string_equal(s.body[0], "m0");
    assert_string_equal(s.body[MAX_SEEN - 1], "m15");
    s = load(f->st, "bob", a[MANY_PUSHES / 2 - 1].value, 2); /* across the acknowledgement */
    assert_int_equal(s.n, 2);
    assert_string_equal(s.body[0], "m1250");
    assert_string_equal(s.body[1], "m1251");
}

/* Two senders' messages to one recipient, alternating in one batch (one run of several
 * operations in the redis store), against a limit: the first ones in order fit, with ids in a
 * row, and the rest are refused. */
static void test_alternating_senders_against_the_limit(void **state)
{
    struct fx *f = *state;
    struct answer a[6];
    const char *from[6] = {"carol", "dave", "carol", "dave", "carol", "dave"};
    const char *body[6] = {"c1", "d1", "c2", "d2", "c3", "d3"};

    memset(a, 0, sizeof a);
    claim("carol");
    claim("dave");
    int64_t first = push(f->st, "alice", "bob", 1, "already waiting");
    for (int i = 0; i < 6; i++)
        store_queue_push(f->st, from[i], "bob", 2 + i, body[i], 2, 4, on_pushed, &a[i]);
    assert_int_equal(wait_answer(f->st, &a[5]), STORE_FULL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(a[i].rc, 0);
        assert_int_equal(a[i].value, first + 1 + i);
    }
    for (int i = 3; i < 6; i++)
        assert_int_equal(a[i].rc, STORE_FULL);
    struct seen_msgs s = load(f->st, "bob", first, MAX_SEEN);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.body[0], "c1");
    assert_string_equal(s.body[1], "d1");
    assert_string_equal(s.body[2], "c2");
}

/* Messages queued in one batch (one element of the redis store's queue) and acknowledged in two
 * steps: after the first, the rest are still there, counted and loaded; after the second the
 * queue is empty, and in Redis both of its lists are gone. */
static void test_ack_within_one_batch_of_messages(void **state)
{
    struct fx *f = *state;
    struct answer a[10];
    char body[10][8];

    memset(a, 0, sizeof a);
    claim("carol");
    for (int i = 0; i < 10; i++) {
        int n = snprintf(body[i], sizeof body[i], "b%d", i);
        store_queue_push(f->st, "carol", "bob", 1 + i, body[i], (size_t)n, 0, on_pushed, &a[i]);
    }
    assert_int_equal(wait_answer(f->st, &a[9]), 0);
    assert_int_equal(store_queue_ack(f->st, "bob", a[3].value), 0);
    assert_int_equal(count(f->st, "bob"), 6);
    struct seen_msgs s = load(f->st, "bob", 0, MAX_SEEN);
    assert_int_equal(s.n, 6);
    assert_int_equal(s.id[0], a[4].value);
    assert_string_equal(s.body[0], "b4");
    assert_string_equal(s.body[5], "b9");
    s = load(f->st, "bob", a[6].value, 2);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.body[0], "b7");
    assert_int_equal(store_queue_ack(f->st, "bob", a[9].value), 0);
    assert_int_equal(count(f->st, "bob"), 0);
    assert_int_equal(load(f->st, "bob", 0, MAX_SEEN).n, 0);
    if (on_redis()) {
        const char *q[] = {"EXISTS", "parley:q:bob", "parley:qc:bob"};
        assert_int_equal(redis_integer(3, q), 0);
    }
    assert_true(push(f->st, "carol", "bob", 20, "after all") > a[9].value);
    assert_int_equal(load(f->st, "bob", 0, MAX_SEEN).n, 1);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

/* Runs the conformance cases on the backend `name`; returns the number that failed. */
static int run_conformance(const char *name)
{
    const struct CMUnitTest conformance[] = {
        T(test_reopen_is_idempotent),
        T(test_close_null_and_error_text),
        T(test_push_load_order),
        T(test_ids_not_reused_after_ack_and_restart),
        T(test_load_after_and_limit),
        T(test_load_callback_stops),
        T(test_ack_only_up_to_id_and_recipient),
        T(test_count),
        T(test_push_refused_when_full),
        T(test_many_pushes_in_one_batch),
        T(test_alternating_senders_against_the_limit),
        T(test_ack_within_one_batch_of_messages),
        T(test_stream_runs),
        T(test_nul_in_a_body_refused),
        T(test_bodies_exact),
        T(test_group_commit_boundary),
        T(test_message_survives_kill),
        T(test_blocks),
        T(test_everything_survives_reopen),
        T(test_login_history_grouped),
        T(test_presence_since),
        T(test_presence_forget),
        T(test_lock_attempts_lock_at_max_failures),
        T(test_lock_attempt_while_locked_counts_nothing),
        T(test_lock_expiry_clears),
        T(test_lock_right_password_resets),
        T(test_lock_records_walked),
    };

    backend = store_backend(name);
    if (!backend) {
        fprintf(stderr, "test_store: no store backend called '%s'\n", name);
        return 1;
    }
    if (on_redis())
        return cmocka_run_group_tests_name(name, conformance, redis_start, redis_stop);
    return cmocka_run_group_tests_name(name, conformance, NULL, NULL);
}

/* Runs the cases of the local backend alone (its files; what only it holds of store.h);
 * returns the number that failed. */
static int run_local(void)
{
    const struct CMUnitTest local_files[] = {
        T(test_open_creates_dir_and_db),
        T(test_reopen_keeps_the_schema),
        T(test_open_uses_wal),
        T(test_open_fails_when_dir_is_a_file),
        T(test_open_fails_on_garbage_db),
        T(test_open_refuses_newer_schema),
        T(test_open_refuses_a_directory_in_use),
        T(test_lost_log_refused),
        T(test_lost_db_refused),
        T(test_foreign_log_refused),
        T(test_ids_never_go_back_after_damage),
        T(test_sqlite_failure_reported),
        T(test_old_queue_table_imported),
        T(test_presence_since_reads_only_recent),
        T(test_presence_forget_deletes_the_row),
        T(test_lock_refused_by_the_disk_written_later),
        T(test_checkpoint_runs_off_the_loop),
        T(test_wal_bounded_by_checkpoints),
        T(test_wal_bounded_when_checkpoints_fail),
        T(test_checkpoint_in_flight_at_close),
    };
    const struct CMUnitTest local_only[] = {
        T(test_queue_totals_follow_pushes_and_acks),
        T(test_reentry_refused),
        T(test_recover_uses_heartbeat),
        T(test_recover_without_heartbeat_uses_now),
        T(test_lock_get_put),
    };

    backend = &store_local_ops;
    return cmocka_run_group_tests_name("local files", local_files, NULL, NULL) +
           cmocka_run_group_tests_name("local only", local_only, NULL, NULL);
}

/* Usage: test_store [BACKEND...]; no name: every backend ("redis" starts its own
 * redis-server, and fails when there is none). */
int main(int argc, char **argv)
{
    static const char *const every[] = {"local", "redis"};
    int failed = 0;

    if (argc > 1)
        for (int i = 1; i < argc; i++)
            failed += run_conformance(argv[i]);
    else
        for (size_t i = 0; i < sizeof every / sizeof every[0]; i++)
            failed += run_conformance(every[i]);
    return failed + run_local();
}
