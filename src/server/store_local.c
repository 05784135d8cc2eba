/* The "local" store backend (--store local, the default; see store.h for the contract of each
 * operation): blocks, login history and lock-outs in one SQLite database, parley.db, in WAL
 * mode with synchronous=NORMAL, so a write that returned 0 survives a crash of the process
 * (blocks and lock-outs a power loss too, with store_set_fsync); each such call is its own
 * transaction, except login history, which joins one transaction per store_commit. Every statement
 * is prepared once. The message queue is the append-only log of qlog.c, parley.queue, next to it.
 * Callbacks of the walking functions must not call back into the store.
 *
 * Checkpoints (copying the WAL into parley.db, with two fsyncs) never run inside the loop's
 * commits, where SQLite would run them by itself: a commit that leaves the WAL past
 * STORE_LOCAL_WAL_CHECKPOINT_PAGES asks the checkpoint thread, which has its own connection, for
 * one (PASSIVE: it never blocks the loop's writer), one at a time. A failed one is logged once
 * and asked again at the next heartbeat; past STORE_LOCAL_WAL_LIMIT_PAGES the commit checkpoints
 * on the loop, the last resort that keeps the WAL bounded. What stays on the loop is SQLite's
 * sync of the WAL's header in the commit that starts the WAL over after a checkpoint (a small
 * fdatasync, once per STORE_LOCAL_WAL_CHECKPOINT_PAGES at most; without it a power loss could
 * bring back old frames) and, with store_set_fsync, the flush of each durable write.
 *
 * The thread is its own, not one of the worker pool's (worker.h): those run at SCHED_IDLE,
 * behind a bounded queue of password hashes, and answer through the event loop. In a login
 * storm, when the WAL grows fastest, a checkpoint would wait behind hundreds of milliseconds of
 * hashing (or find the queue full) while the loop reached the limit and paid for it; the thread
 * is mostly waiting for the disk, and takes little CPU from the loop at the normal priority. */
#include "server/store.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "server/auth.h"
#include "server/log.h"
#include "server/qlog.h"

#define STORE_DB_NAME "parley.db"
#define STORE_QUEUE_NAME "parley.queue"
/* Held (flock) by the one server using the directory; holds its process id. */
#define STORE_LOCK_NAME "parley.lock"
/* Disk space held back for lock-outs (store_set_reserve), released STORE_RESERVE_STEP at a time
 * when one finds the disk full. */
#define STORE_RESERVE_NAME "parley.reserve"
#define STORE_RESERVE_STEP (64 << 10)
/* Message ids are reserved in parley.db this many at a time, before the log gives them out: a
 * lost or damaged log never makes ids go back. */
#define STORE_ID_BLOCK 65536
#define STORE_BUSY_MS 5000
/* A checkpoint that gave up on a lock (busy) is tried again this many times, this many
 * microseconds apart, on the checkpoint thread, before it counts as failed. */
#define STORE_CKPT_BUSY_TRIES 50
#define STORE_CKPT_BUSY_US 1000

/* Schema migrations: entry i takes the schema from version i to version i + 1. */
static const char *const migrations[] = {
    /* 1: the first schema. */
    "CREATE TABLE queue ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  sender TEXT NOT NULL,"
    "  recipient TEXT NOT NULL,"
    "  sent_at INTEGER NOT NULL,"
    "  body BLOB NOT NULL);"
    "CREATE INDEX queue_recipient ON queue (recipient, id);"
    "CREATE TABLE blocks ("
    "  blocker TEXT NOT NULL,"
    "  blocked TEXT NOT NULL,"
    "  PRIMARY KEY (blocker, blocked)) WITHOUT ROWID;"
    "CREATE TABLE presence ("
    "  name TEXT PRIMARY KEY,"
    "  logged_in INTEGER NOT NULL DEFAULT 0,"
    "  last_login INTEGER,"
    "  last_logout INTEGER);"
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY,"
    "  value);"
    "CREATE TABLE lockouts ("
    "  name TEXT PRIMARY KEY,"
    "  failures INTEGER NOT NULL,"
    "  locked_until INTEGER NOT NULL);",
    /* 2: the queue moved to parley.queue (its rows were imported before this runs). */
    "DROP TABLE queue;",
    /* 3: WHOSINCE reads the recent logouts only, not the whole history. */
    "CREATE INDEX presence_logout ON presence (last_logout);",
};

/* The schema version whose queue table is imported into the queue log. */
#define SCHEMA_WITH_QUEUE_TABLE 1

#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

enum stmt_id {
    B_ADD,
    B_REMOVE,
    B_EACH,
    P_LOGIN,
    P_LOGOUT,
    P_HEARTBEAT,
    P_RECOVER,
    P_SINCE,
    P_FORGET,
    L_GET,
    L_PUT,
    L_DELETE,
    L_EACH,
    M_GET,
    M_PUT,
    STMT_COUNT
};

static const char *const stmt_sql[STMT_COUNT] = {
    [B_ADD] = "INSERT OR IGNORE INTO blocks (blocker, blocked) VALUES (?1, ?2)",
    [B_REMOVE] = "DELETE FROM blocks WHERE blocker = ?1 AND blocked = ?2",
    [B_EACH] = "SELECT blocker, blocked FROM blocks ORDER BY blocker, blocked",
    [P_LOGIN] = "INSERT INTO presence (name, logged_in, last_login) VALUES (?1, 1, ?2)"
                " ON CONFLICT (name) DO UPDATE SET logged_in = 1, last_login = excluded.last_login",
    [P_LOGOUT] = "INSERT INTO presence (name, logged_in, last_logout) VALUES (?1, 0, ?2)"
                 " ON CONFLICT (name) DO UPDATE SET logged_in = 0,"
                 " last_logout = excluded.last_logout",
    [P_HEARTBEAT] = "INSERT INTO meta (key, value) VALUES ('heartbeat', ?1)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    /* A user who logged in after the last heartbeat was still online at login time. */
    [P_RECOVER] = "UPDATE presence SET logged_in = 0, last_logout = max(coalesce(last_login, 0),"
                  " coalesce((SELECT value FROM meta WHERE key = 'heartbeat'), ?1))"
                  " WHERE logged_in = 1",
    /* The newest first, straight from the index: no sort, no look at older logouts. */
    [P_SINCE] = "SELECT name FROM presence INDEXED BY presence_logout WHERE last_logout >= ?1"
                " ORDER BY last_logout DESC",
    [P_FORGET] = "DELETE FROM presence WHERE name = ?1",
    [L_GET] = "SELECT failures, locked_until FROM lockouts WHERE name = ?1",
    [L_PUT] = "INSERT INTO lockouts (name, failures, locked_until) VALUES (?1, ?2, ?3)"
              " ON CONFLICT (name) DO UPDATE SET failures = excluded.failures,"
              " locked_until = excluded.locked_until",
    [L_DELETE] = "DELETE FROM lockouts WHERE name = ?1",
    [L_EACH] = "SELECT name, failures, locked_until FROM lockouts ORDER BY name",
    [M_GET] = "SELECT value FROM meta WHERE key = ?1",
    [M_PUT] = "INSERT INTO meta (key, value) VALUES (?1, ?2)"
              " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
};

/* Where the checkpoint thread is. */
enum ckpt_state {
    CKPT_IDLE,    /* waiting to be asked */
    CKPT_ASKED,   /* asked; it has not started yet */
    CKPT_RUNNING, /* checkpointing */
    CKPT_DONE,    /* finished; its result waits for the loop */
};

/* The checkpoint thread and its own connection to parley.db. */
struct checkpointer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    enum ckpt_state state; /* under mu */
    bool stopping;         /* under mu */
    int rc;                /* under mu: SQLite's result of the last checkpoint */
    char err[256];         /* under mu: why it failed */
    sqlite3 *db;           /* the thread's alone */
    sqlite3_stmt *stmt;    /* the thread's alone: PRAGMA wal_checkpoint(PASSIVE) */
    char path[PATH_MAX];
};

/* A lock-out record the disk refused, written again at each heartbeat until it is stored. */
struct pending_lock {
    struct pending_lock *next;
    struct store_lock lock;
    char name[];
};

struct store_local {
    int lock_fd;          /* the data directory's lock file, locked while the store is open */
    int reserve_fd;       /* parley.reserve: space a lock-out may take when the disk is full */
    size_t reserve_bytes; /* the size it is kept at */
    sqlite3 *db;
    sqlite3_stmt *stmt[STMT_COUNT];
    struct qlog *queue;
    struct pending_lock *pending; /* lock-outs not yet stored */
    int last_rc;                  /* SQLite's result of the last statement run */
    int64_t id_reserved;          /* ids below it may have been given; the log stays below */
    int walking;                  /* non-zero while a walk's callback runs */
    bool in_batch;       /* login-history writes wait in an open transaction for store_commit */
    bool fsync;          /* blocks and lock-outs are flushed to the disk when written */
    struct store *owner; /* told of asynchronous writes' outcomes (store_note) */
    struct checkpointer *ckpt; /* started at the first checkpoint asked for */
    bool ckpt_asked;           /* a checkpoint was asked for; its result is not read yet */
    bool ckpt_failing;         /* the last one failed (logged once) */
    bool ckpt_hold;            /* after a failure: none asked for before the next heartbeat */
    bool loop_hold;            /* after a failure on the loop: none there before it either */
    char err[512];
};

static void local_close(void *be);

/* Records a formatted failure message and returns -1. */
static int fail(struct store_local *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct store_local *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->err, sizeof st->err, fmt, ap);
    va_end(ap);
    return -1;
}

/* Records `what` and SQLite's description of the last failure; returns -1. */
static int fail_db(struct store_local *st, const char *what)
{
    return fail(st, "%s: %s", what, st->db ? sqlite3_errmsg(st->db) : "no database");
}

/* Refuses a call made from inside a walk's callback (it could reuse a running statement). */
static int guard(struct store_local *st)
{
    if (st->walking)
        return fail(st, "store called from inside a store callback");
    return 0;
}

/* Returns statement `id`, ready to bind (every use ends with stmt_done). */
static sqlite3_stmt *stmt_get(struct store_local *st, enum stmt_id id)
{
    return st->stmt[id];
}

/* Resets `s` so it holds no lock and no reference to the caller's bound buffers. */
static void stmt_done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Binds a NUL-terminated string (SQLite copies it). */
static int bind_str(sqlite3_stmt *s, int i, const char *v)
{
    return sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
}

/* Records a failed bind of `s` (which is reset) and returns -1. */
static int bind_fail(struct store_local *st, sqlite3_stmt *s, const char *what)
{
    fail_db(st, what);
    stmt_done(s);
    return -1;
}

/* Runs statement `s` (already bound) that returns no rows; `what` names it in errors. */
static int exec_stmt(struct store_local *st, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    st->last_rc = rc;
    stmt_done(s);
    if (rc != SQLITE_DONE)
        return fail_db(st, what);
    return 0;
}

/* Runs `sql` (one or more statements, no rows wanted). */
static int exec_sql(struct store_local *st, const char *sql, const char *what)
{
    if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return fail_db(st, what);
    return 0;
}

/* Runs statement `s` (bound, no rows) as its own transaction; with store_set_fsync, that
 * commit is flushed to the disk (synchronous=FULL for it alone). */
static int exec_durable(struct store_local *st, sqlite3_stmt *s, const char *what)
{
    if (!st->fsync)
        return exec_stmt(st, s, what);
    if (exec_sql(st, "PRAGMA synchronous = FULL", "setting synchronous") != 0) {
        stmt_done(s);
        return -1;
    }
    int rc = exec_stmt(st, s, what);
    sqlite3_exec(st->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
    return rc;
}

/* Opens the transaction that login-history writes join until store_commit (so a login costs
 * no commit, and no disk flush, of its own). */
static int batch_join(struct store_local *st)
{
    if (st->in_batch)
        return 0;
    if (exec_sql(st, "BEGIN IMMEDIATE", "starting a batch") != 0)
        return -1;
    st->in_batch = true;
    return 0;
}

/* Commits the open batch, if any; a lost batch is logged (login history is best effort). */
static void batch_end(struct store_local *st)
{
    if (!st->in_batch)
        return;
    st->in_batch = false;
    if (exec_sql(st, "COMMIT", "committing login history") == 0)
        return;
    log_error("store: %s", st->err);
    if (!sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Checks a write that must be durable when it returns: commits the batch first. */
static int write_guard(struct store_local *st)
{
    if (guard(st) != 0)
        return -1;
    batch_end(st);
    return 0;
}

/* ---- checkpoints, off the loop (see the top of this file) ---- */

static _Atomic(store_checkpoint_hook_fn) ckpt_hook;

/* Sets the test hook of the checkpoint threads (store.h). */
void store_local_set_checkpoint_hook(store_checkpoint_hook_fn hook)
{
    atomic_store(&ckpt_hook, hook);
}

/* On the thread: closes its connection (the loop's, still open, keeps the WAL). */
static void ckpt_disconnect(struct checkpointer *c)
{
    sqlite3_finalize(c->stmt);
    sqlite3_close(c->db);
    c->stmt = NULL;
    c->db = NULL;
}

/* On the thread: opens its connection to parley.db; returns SQLite's result (`err` says why). */
static int ckpt_connect(struct checkpointer *c, char *err, size_t len)
{
    int rc = sqlite3_open_v2(c->path, &c->db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(c->db, STORE_BUSY_MS);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(c->db, "PRAGMA wal_checkpoint(PASSIVE)", -1, &c->stmt, NULL);
    if (rc == SQLITE_OK)
        return SQLITE_OK;
    snprintf(err, len, "opening its connection: %s",
             c->db ? sqlite3_errmsg(c->db) : "out of memory");
    ckpt_disconnect(c);
    return rc;
}

/* On the thread: steps PRAGMA wal_checkpoint(PASSIVE) once; returns SQLite's result, and in
 * `*busy` whether the checkpoint gave up on a lock (its first column). */
static int ckpt_step(struct checkpointer *c, bool *busy, char *err, size_t len)
{
    int rc = sqlite3_step(c->stmt);

    *busy = rc == SQLITE_ROW && sqlite3_column_int(c->stmt, 0) != 0;
    if (rc != SQLITE_ROW)
        snprintf(err, len, "%s", sqlite3_errmsg(c->db));
    sqlite3_reset(c->stmt);
    return rc;
}

/* On the thread: one PASSIVE checkpoint; returns SQLite's result (`err` says why it failed). A
 * checkpoint that finds the WAL's index in the middle of a commit's update gives up (busy):
 * it is tried again, STORE_CKPT_BUSY_TRIES times, STORE_CKPT_BUSY_US apart. A failed
 * connection is opened again for the next checkpoint. */
static int ckpt_run(struct checkpointer *c, char *err, size_t len)
{
    store_checkpoint_hook_fn hook = atomic_load(&ckpt_hook);
    bool busy = true;
    int rc = SQLITE_OK;

    if (hook && hook() != 0) {
        snprintf(err, len, "refused by the test hook");
        return SQLITE_IOERR;
    }
    if (!c->db && (rc = ckpt_connect(c, err, len)) != SQLITE_OK)
        return rc;
    for (int i = 0; busy && i < STORE_CKPT_BUSY_TRIES; i++) {
        if (i > 0)
            usleep(STORE_CKPT_BUSY_US);
        if ((rc = ckpt_step(c, &busy, err, len)) != SQLITE_ROW) {
            ckpt_disconnect(c);
            return rc;
        }
    }
    if (busy) {
        snprintf(err, len, "another connection kept %s-wal locked", STORE_DB_NAME);
        return SQLITE_BUSY;
    }
    return SQLITE_OK;
}

/* The thread: runs each checkpoint it is asked for, until told to stop (one asked for and not
 * started then is dropped: the loop's connection checkpoints as it closes). */
static void *ckpt_main(void *arg)
{
    struct checkpointer *c = arg;
    char err[sizeof c->err];

    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (c->state != CKPT_ASKED && !c->stopping)
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->stopping)
            break;
        c->state = CKPT_RUNNING;
        pthread_mutex_unlock(&c->mu);
        err[0] = '\0';
        int rc = ckpt_run(c, err, sizeof err);
        pthread_mutex_lock(&c->mu);
        c->rc = rc;
        memcpy(c->err, err, sizeof err);
        c->state = CKPT_DONE;
    }
    pthread_mutex_unlock(&c->mu);
    ckpt_disconnect(c);
    return NULL;
}

/* Starts the thread with every signal blocked (they are the loop's); it connects at its first
 * checkpoint. Returns 0, or an errno value. */
static int ckpt_start(struct store_local *st)
{
    const char *path = sqlite3_db_filename(st->db, "main");
    struct checkpointer *c;
    sigset_t all, old;
    int rc;

    if (!path || !path[0] || strlen(path) >= sizeof c->path)
        return ENAMETOOLONG;
    c = calloc(1, sizeof *c);
    if (!c)
        return ENOMEM;
    memcpy(c->path, path, strlen(path) + 1);
    if ((rc = pthread_mutex_init(&c->mu, NULL)) != 0)
        goto fail;
    if ((rc = pthread_cond_init(&c->cv, NULL)) != 0)
        goto fail_mu;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&c->thread, NULL, ckpt_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        goto fail_cv;
    st->ckpt = c;
    return 0;

fail_cv:
    pthread_cond_destroy(&c->cv);
fail_mu:
    pthread_mutex_destroy(&c->mu);
fail:
    free(c);
    return rc;
}

/* Stops the thread, after the checkpoint it is running, if any. */
static void ckpt_stop(struct store_local *st)
{
    struct checkpointer *c = st->ckpt;

    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
    st->ckpt = NULL;
    st->ckpt_asked = false;
}

/* Takes in a checkpoint's result `rc`: a failure is logged once, and no checkpoint is asked for
 * again before the next heartbeat. */
static void ckpt_note(struct store_local *st, int rc, const char *err)
{
    if (rc == SQLITE_OK) {
        if (st->ckpt_failing)
            log_error("store: checkpoints of %s work again", STORE_DB_NAME);
        st->ckpt_failing = false;
        return;
    }
    if (!st->ckpt_failing)
        log_error("store: checkpoint of %s failed: %s; tried again at each heartbeat, and on "
                  "the loop past %d pages of WAL",
                  STORE_DB_NAME, err, STORE_LOCAL_WAL_LIMIT_PAGES);
    st->ckpt_failing = true;
    st->ckpt_hold = true;
}

/* Reads the result of the checkpoint asked for, once the thread is done with it. */
static void ckpt_collect(struct store_local *st)
{
    struct checkpointer *c = st->ckpt;
    char err[sizeof c->err];
    bool done;
    int rc;

    if (!st->ckpt_asked)
        return;
    pthread_mutex_lock(&c->mu);
    done = c->state == CKPT_DONE;
    rc = c->rc;
    if (done) {
        memcpy(err, c->err, sizeof err);
        c->state = CKPT_IDLE;
    }
    pthread_mutex_unlock(&c->mu);
    if (!done)
        return;
    st->ckpt_asked = false;
    ckpt_note(st, rc, err);
}

/* Asks the thread for a checkpoint (starting it the first time), unless one is in flight or a
 * failure holds them until the next heartbeat. */
static void ckpt_ask(struct store_local *st)
{
    int rc;

    if (st->ckpt_asked || st->ckpt_hold)
        return;
    if (!st->ckpt && (rc = ckpt_start(st)) != 0) {
        char why[128];
        snprintf(why, sizeof why, "cannot start its thread: %s", strerror(rc));
        ckpt_note(st, SQLITE_ERROR, why);
        return;
    }
    pthread_mutex_lock(&st->ckpt->mu);
    assert(st->ckpt->state == CKPT_IDLE);
    st->ckpt->state = CKPT_ASKED;
    pthread_cond_signal(&st->ckpt->cv);
    pthread_mutex_unlock(&st->ckpt->mu);
    st->ckpt_asked = true;
}

/* The last resort past STORE_LOCAL_WAL_LIMIT_PAGES: a PASSIVE checkpoint on the loop (what
 * SQLite does in every commit past 1000 pages), logged; a failed one waits for the heartbeat. */
static void ckpt_on_loop(struct store_local *st, int pages)
{
    if (st->loop_hold)
        return;
    log_error("store: the WAL of %s has %d pages (limit %d): checkpointing it on the loop",
              STORE_DB_NAME, pages, STORE_LOCAL_WAL_LIMIT_PAGES);
    if (sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL) == SQLITE_OK)
        return;
    log_error("store: checkpoint of %s on the loop failed: %s; tried again after the next "
              "heartbeat",
              STORE_DB_NAME, sqlite3_errmsg(st->db));
    st->loop_hold = true;
}

/* SQLite's WAL hook, called on the loop after each commit with the pages in the WAL. Installing
 * it turns SQLite's automatic checkpoint off (sqlite3_wal_autocheckpoint is such a hook). */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct store_local *st = arg;

    (void)db;
    (void)name;
    ckpt_collect(st);
    if (pages >= STORE_LOCAL_WAL_LIMIT_PAGES && !st->ckpt_asked)
        ckpt_on_loop(st, pages);
    else if (pages >= STORE_LOCAL_WAL_CHECKPOINT_PAGES)
        ckpt_ask(st);
    return SQLITE_OK;
}

/* At each heartbeat: checkpoints held back by a failure may be tried again. */
static void ckpt_retry(struct store_local *st)
{
    st->ckpt_hold = false;
    st->loop_hold = false;
}

/* Creates directory `dir` and its missing parents with mode 0700; an existing directory is
 * fine. */
static int make_dirs(struct store_local *st, const char *dir)
{
    char path[PATH_MAX];
    struct stat sb;
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof path)
        return fail(st, "invalid data directory \"%s\"", dir);
    memcpy(path, dir, len + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return fail(st, "cannot create %s: %s", path, strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return fail(st, "cannot create %s: %s", path, strerror(errno));
    if (stat(path, &sb) != 0)
        return fail(st, "cannot use %s: %s", path, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return fail(st, "cannot use %s: not a directory", path);
    return 0;
}

/* Writes "dir/name" into `out` (PATH_MAX bytes). */
static int store_path(struct store_local *st, char *out, const char *dir, const char *name)
{
    if ((size_t)snprintf(out, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
        return fail(st, "data directory path too long");
    return 0;
}

/* Refuses a data directory whose lock file `fd` another process holds, naming it by the process
 * id it wrote there (when it did). Returns -1. */
static int fail_in_use(struct store_local *st, int fd)
{
    char pid[24] = "";
    ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
    long holder = n > 0 ? strtol(pid, NULL, 10) : 0;

    if (holder > 0)
        return fail(st,
                    "in use by another parleyd (pid %ld); one data directory serves one "
                    "server",
                    holder);
    return fail(st, "in use by another parleyd; one data directory serves one server");
}

/* Takes the lock of data directory `dir` for the life of the store and writes this process's
 * id in the lock file; refuses, changing nothing, when another process holds it. */
static int take_lock(struct store_local *st, const char *dir)
{
    char path[PATH_MAX], pid[24];

    if (store_path(st, path, dir, STORE_LOCK_NAME) != 0)
        return -1;
    st->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (st->lock_fd < 0)
        return fail(st, "cannot open %s: %s", path, strerror(errno));
    if (flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            return fail_in_use(st, st->lock_fd);
        return fail(st, "cannot lock %s: %s", path, strerror(errno));
    }
    /* The process id is only for the message above: a full disk must not stop the server. */
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(st->lock_fd, 0) != 0 || pwrite(st->lock_fd, pid, (size_t)n, 0) != n)
        log_error("store: cannot write the process id into %s: %s", path, strerror(errno));
    return 0;
}

/* Opens parley.reserve in `dir` (store_set_reserve gives it its size). */
static void reserve_open(struct store_local *st, const char *dir)
{
    char path[PATH_MAX];

    if (store_path(st, path, dir, STORE_RESERVE_NAME) != 0)
        return;
    st->reserve_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (st->reserve_fd < 0)
        log_error("store: cannot open %s: %s", path, strerror(errno));
}

/* Gives the reserve its full size when the disk has room for it; returns true when it has. */
static bool reserve_refill(struct store_local *st)
{
    struct stat sb;

    if (st->reserve_fd < 0 || fstat(st->reserve_fd, &sb) != 0)
        return false;
    if ((uint64_t)sb.st_size >= st->reserve_bytes)
        return true;
    return posix_fallocate(st->reserve_fd, 0, (off_t)st->reserve_bytes) == 0;
}

/* Frees STORE_RESERVE_STEP bytes of the reserve for a write the full disk refused. Returns 0,
 * or -1 when the reserve is used up. */
static int reserve_release(struct store_local *st)
{
    struct stat sb;

    if (st->reserve_fd < 0 || fstat(st->reserve_fd, &sb) != 0 || sb.st_blocks == 0)
        return -1;
    off_t left = sb.st_size > STORE_RESERVE_STEP ? sb.st_size - STORE_RESERVE_STEP : 0;
    /* The flush makes the freed blocks usable at once (ext4 frees them at its next commit). */
    if (ftruncate(st->reserve_fd, left) != 0 || fsync(st->reserve_fd) != 0)
        return -1;
    log_error("store: disk full; %lld bytes of the reserve left for lock-outs", (long long)left);
    return 0;
}

/* Writes the lock-out record of `name` in the database; a record of zeroes is deleted. */
static int lock_write(struct store_local *st, const char *name, const struct store_lock *lock)
{
    sqlite3_stmt *s;

    if (lock->failures == 0 && lock->locked_until == 0) {
        s = stmt_get(st, L_DELETE);
        if (bind_str(s, 1, name))
            return bind_fail(st, s, "deleting lock-out");
        return exec_durable(st, s, "deleting lock-out");
    }
    s = stmt_get(st, L_PUT);
    if (bind_str(s, 1, name) || sqlite3_bind_int(s, 2, lock->failures) ||
        sqlite3_bind_int64(s, 3, lock->locked_until))
        return bind_fail(st, s, "writing lock-out");
    return exec_durable(st, s, "writing lock-out");
}

/* Unlinks and returns the pending record of `name`, or NULL. */
static struct pending_lock *pending_take(struct store_local *st, const char *name)
{
    for (struct pending_lock **pp = &st->pending; *pp; pp = &(*pp)->next) {
        struct pending_lock *p = *pp;
        if (strcmp(p->name, name) == 0) {
            *pp = p->next;
            return p;
        }
    }
    return NULL;
}

/* Keeps the newest record of `name` for pending_retry. */
static void pending_keep(struct store_local *st, const char *name, const struct store_lock *lock)
{
    struct pending_lock *p = pending_take(st, name);
    size_t len = strlen(name);

    if (!p) {
        p = malloc(sizeof *p + len + 1);
        if (!p) {
            log_error("store: out of memory: the lock-out of %s is not kept", name);
            return;
        }
        memcpy(p->name, name, len + 1);
    }
    p->lock = *lock;
    p->next = st->pending;
    st->pending = p;
}

/* Writes the records the disk refused before; those it refuses again stay pending. */
static void pending_retry(struct store_local *st)
{
    struct pending_lock *p = st->pending, *keep = NULL;

    st->pending = NULL;
    while (p) {
        struct pending_lock *next = p->next;
        if (lock_write(st, p->name, &p->lock) == 0) {
            log_error("store: lock-out of %s recorded now", p->name);
            free(p);
        } else {
            p->next = keep;
            keep = p;
        }
        p = next;
    }
    st->pending = keep;
}

static void pending_free(struct store_local *st)
{
    while (st->pending) {
        struct pending_lock *next = st->pending->next;
        if (st->db)
            log_error("store: lock-out of %s lost: %s", st->pending->name, st->err);
        free(st->pending);
        st->pending = next;
    }
}

/* Reads PRAGMA user_version into `*version`. */
static int schema_version(struct store_local *st, int *version)
{
    sqlite3_stmt *s = NULL;
    int rc;

    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
        return fail_db(st, "reading schema version");
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW)
        return fail_db(st, "reading schema version");
    return 0;
}

/* Applies the migrations after `version` and records the new version; the caller holds the
 * write transaction. */
static int migrate_from(struct store_local *st, int version)
{
    char sql[64];

    if (version > SCHEMA_VERSION)
        return fail(st, "database schema version %d is newer than this program's (%d)", version,
                    SCHEMA_VERSION);
    for (; version < SCHEMA_VERSION; version++)
        if (exec_sql(st, migrations[version], "migrating schema") != 0)
            return -1;
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
    return exec_sql(st, sql, "setting schema version");
}

/* Brings the schema up to SCHEMA_VERSION in one transaction; the version is read again under
 * the write lock so two processes opening a new store at once do not both migrate it. */
static int migrate(struct store_local *st)
{
    int version = 0;

    if (schema_version(st, &version) != 0)
        return -1;
    if (version == SCHEMA_VERSION)
        return 0;
    if (exec_sql(st, "BEGIN IMMEDIATE", "starting migration") != 0)
        return -1;
    if (schema_version(st, &version) != 0 || migrate_from(st, version) != 0 ||
        exec_sql(st, "COMMIT", "committing migration") != 0) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

/* Switches the database to WAL and checks that SQLite accepted it. */
static int enable_wal(struct store_local *st)
{
    sqlite3_stmt *s = NULL;
    int ok = 0;

    if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &s, NULL) != SQLITE_OK)
        return fail_db(st, "enabling WAL");
    if (sqlite3_step(s) == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(s, 0);
        ok = mode && strcmp(mode, "wal") == 0;
    }
    sqlite3_finalize(s);
    if (!ok)
        return fail_db(st, "enabling WAL");
    return 0;
}

/* Prepares every statement of stmt_sql once, for the store's lifetime. */
static int prepare_all(struct store_local *st)
{
    for (int i = 0; i < STMT_COUNT; i++) {
        if (sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i],
                               NULL) != SQLITE_OK)
            return fail_db(st, "preparing statement");
    }
    return 0;
}

/* Copies the queue log's last failure into the store's. Returns -1. */
static int fail_queue(struct store_local *st)
{
    return fail(st, "%s", qlog_error(st->queue));
}

/* Opens the queue log in `dir`. */
static int open_queue(struct store_local *st, const char *dir)
{
    char path[PATH_MAX];

    if (store_path(st, path, dir, STORE_QUEUE_NAME) != 0)
        return -1;
    return qlog_open(&st->queue, path, NULL, st->err, sizeof st->err);
}

/* Steps `s` and hands each row to `row` until the rows end or `row` returns non-zero. */
static int walk(struct store_local *st, sqlite3_stmt *s, const char *what,
                int (*row)(sqlite3_stmt *s, void *arg), void *arg)
{
    int rc;

    st->walking = 1;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (row(s, arg) != 0)
            break;
    st->walking = 0;
    stmt_done(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return fail_db(st, what);
    return 0;
}

/* Copies one row of the old queue table into the log, unless an earlier, interrupted import
 * copied it already. */
static int import_row(sqlite3_stmt *s, void *arg)
{
    struct store_local *st = arg;
    int64_t id = sqlite3_column_int64(s, 0);
    const char *sender = (const char *)sqlite3_column_text(s, 1);
    const char *recipient = (const char *)sqlite3_column_text(s, 2);
    const char *body = (const char *)sqlite3_column_blob(s, 4);

    if (id < qlog_next_id(st->queue) || !sender || !recipient)
        return 0;
    return qlog_push_with_id(st->queue, id, sender, recipient, sqlite3_column_int64(s, 3),
                             body ? body : "", (size_t)sqlite3_column_bytes(s, 4));
}

/* Moves the messages of a version-1 database's queue table into the queue log (the migration
 * to version 2 then drops the table). */
static int import_queue_table(struct store_local *st)
{
    sqlite3_stmt *s = NULL;
    int version = 0;
    int rc;

    if (schema_version(st, &version) != 0)
        return -1;
    if (version != SCHEMA_WITH_QUEUE_TABLE)
        return 0;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT id, sender, recipient, sent_at, body FROM queue ORDER BY id", -1,
                           &s, NULL) != SQLITE_OK)
        return fail_db(st, "reading the old queue");
    rc = walk(st, s, "reading the old queue", import_row, st);
    sqlite3_finalize(s);
    if (rc != 0)
        return -1;
    /* Ids of acknowledged messages are gone from the table but not from sqlite_sequence. */
    if (sqlite3_prepare_v2(st->db, "SELECT seq FROM sqlite_sequence WHERE name = 'queue'", -1, &s,
                           NULL) != SQLITE_OK)
        return fail_db(st, "reading the old queue");
    rc = sqlite3_step(s) == SQLITE_ROW
             ? qlog_raise_next_id(st->queue, sqlite3_column_int64(s, 0) + 1)
             : 0;
    sqlite3_finalize(s);
    if (rc != 0)
        return fail_queue(st);
    if (qlog_commit(st->queue) != 0)
        return fail_queue(st);
    return 0;
}

/* What store_open learns of the two files of a data directory. */
struct found {
    bool accept;   /* go on after a loss (--accept-store-loss) */
    bool db_had;   /* parley.db existed with data before it was opened */
    bool log_had;  /* parley.queue existed with data before it was opened */
    bool lost_log; /* the log is not the one this store had: ids jump to the reservation */
    char db_id[QLOG_STORE_ID_LEN + 1]; /* the store id parley.db records, or "" */
};

/* True when `path` is a file with data. */
static bool has_data(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && sb.st_size > 0;
}

/* Opens (creating when missing) parley.db at `path`, in WAL mode. */
static int open_db(struct store_local *st, const char *path)
{
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK)
        return fail(st, "opening %s: %s", path, st->db ? sqlite3_errmsg(st->db) : "out of memory");
    if (sqlite3_busy_timeout(st->db, STORE_BUSY_MS) != SQLITE_OK || enable_wal(st) != 0 ||
        exec_sql(st, "PRAGMA synchronous = NORMAL", "setting synchronous") != 0)
        return -1;
    sqlite3_wal_hook(st->db, on_wal_commit, st);
    return 0;
}

/* Reads the store id of parley.db into `id` ("" when it records none), before migrations. */
static int read_db_id(struct store_local *st, char *id)
{
    sqlite3_stmt *s = NULL;
    int version = 0;

    id[0] = '\0';
    if (schema_version(st, &version) != 0)
        return -1;
    if (version < 1)
        return 0; /* a new database: no meta table yet */
    if (sqlite3_prepare_v2(st->db, "SELECT value FROM meta WHERE key = 'store_id'", -1, &s, NULL) !=
        SQLITE_OK)
        return fail_db(st, "reading the store id");
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_bytes(s, 0) == QLOG_STORE_ID_LEN)
        memcpy(id, sqlite3_column_text(s, 0), QLOG_STORE_ID_LEN + 1);
    sqlite3_finalize(s);
    return 0;
}

/* Returns what the data directory lost, judging by the two files, or NULL. */
static const char *loss_of(const struct found *f, const char *log_id)
{
    if (f->log_had && !f->db_had)
        return STORE_DB_NAME " is missing or empty, but " STORE_QUEUE_NAME
                             " shows this store had one: its blocks, lock-outs and login "
                             "history are gone";
    if (f->db_id[0] && !f->log_had)
        return STORE_QUEUE_NAME " is missing or empty, but " STORE_DB_NAME
                                " shows this store had one: the messages waiting in it are gone";
    if (f->db_id[0] && !log_id)
        return STORE_QUEUE_NAME " is not this store's log (it records no store id): the messages "
                                "waiting in this store's log are gone";
    if (f->db_id[0] && strcmp(f->db_id, log_id) != 0)
        return STORE_QUEUE_NAME " belongs to another store than " STORE_DB_NAME;
    /* A database with data but no id takes the log's: that is also what a crash between the
     * two writes of adopt_store_id leaves. */
    return NULL;
}

/* Refuses the loss `what` unless told to accept it; then says so loudly. */
static int refuse_loss(struct store_local *st, const char *what, bool accept)
{
    if (!accept)
        return fail(st,
                    "%s. Put the file back from a backup, or start once with "
                    "--accept-store-loss to go on without it",
                    what);
    log_error("store: %s; going on without it, as --accept-store-loss says", what);
    return 0;
}

/* The checks before any file is opened: a lost parley.db is refused before one is created. */
static int check_before_open(struct store_local *st, struct found *f, const char *db_path,
                             const char *log_path)
{
    f->db_had = has_data(db_path);
    f->log_had = has_data(log_path);
    if (f->log_had && !f->db_had && !f->accept)
        return refuse_loss(st, loss_of(f, NULL), false);
    return 0;
}

/* The checks once parley.db is open: a lost log is refused before a new one is created. */
static int check_db(struct store_local *st, struct found *f)
{
    if (read_db_id(st, f->db_id) != 0)
        return -1;
    if (f->db_id[0] && !f->log_had && !f->accept)
        return refuse_loss(st, loss_of(f, NULL), false);
    return 0;
}

/* The checks once both files are open: each must be the other's. A log that is not the
 * store's, or lost records, cannot vouch for its ids. */
static int check_pair(struct store_local *st, struct found *f)
{
    const char *what = loss_of(f, qlog_store_id(st->queue));
    f->lost_log = qlog_damaged(st->queue) || (what && f->db_id[0]);
    return what ? refuse_loss(st, what, f->accept) : 0;
}

/* Writes meta `key` = the text `text`, or the number `n` when `text` is NULL. */
static int meta_put(struct store_local *st, const char *key, const char *text, int64_t n)
{
    sqlite3_stmt *s = stmt_get(st, M_PUT);

    if (bind_str(s, 1, key) || (text ? bind_str(s, 2, text) : sqlite3_bind_int64(s, 2, n)))
        return bind_fail(st, s, "writing the store's meta data");
    return exec_durable(st, s, "writing the store's meta data");
}

/* Reads the number in meta `key` (0 when there is none). */
static int meta_get_int(struct store_local *st, const char *key, int64_t *n)
{
    sqlite3_stmt *s = stmt_get(st, M_GET);
    int rc;

    *n = 0;
    if (bind_str(s, 1, key))
        return bind_fail(st, s, "reading the store's meta data");
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *n = sqlite3_column_int64(s, 0);
    stmt_done(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return fail_db(st, "reading the store's meta data");
    return 0;
}

/* Draws a new store id: QLOG_STORE_ID_LEN lower-case hex digits. */
static void new_store_id(char *id)
{
    unsigned char raw[QLOG_STORE_ID_LEN / 2];

    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        uint64_t mix = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)id;
        for (size_t i = 0; i < sizeof raw; i++, mix = mix * 6364136223846793005ull + 1)
            raw[i] = (unsigned char)(mix >> 56);
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(id + 2 * i, 3, "%02x", raw[i]);
}

/* Makes both files record one store id (the database's, else the log's, else a new one): the
 * log first, so a database with an id always has a log with it. */
static int adopt_store_id(struct store_local *st, const struct found *f)
{
    const char *log_id = qlog_store_id(st->queue);
    char id[QLOG_STORE_ID_LEN + 1];

    if (f->db_id[0])
        memcpy(id, f->db_id, sizeof id);
    else if (log_id)
        memcpy(id, log_id, sizeof id);
    else
        new_store_id(id);
    if (!log_id || strcmp(log_id, id) != 0) {
        if (qlog_set_store_id(st->queue, id) != 0 || qlog_commit(st->queue) != 0)
            return fail_queue(st);
    }
    if (strcmp(f->db_id, id) != 0 && meta_put(st, "store_id", id, 0) != 0)
        return -1;
    return 0;
}

/* Reads the id reservation; a log that lost ids goes on above every id ever reserved. */
static int load_reservation(struct store_local *st, const struct found *f)
{
    if (meta_get_int(st, "id_reserved", &st->id_reserved) != 0)
        return -1;
    if (!f->lost_log || st->id_reserved <= qlog_next_id(st->queue))
        return 0;
    log_error("store: message ids go on from %lld, above every id given before",
              (long long)st->id_reserved);
    if (qlog_raise_next_id(st->queue, st->id_reserved) != 0 || qlog_commit(st->queue) != 0)
        return fail_queue(st);
    return 0;
}

/* Reserves the next block of ids in parley.db before the log gives one above the reservation. */
static int reserve_ids(struct store_local *st)
{
    int64_t upto = qlog_next_id(st->queue) + STORE_ID_BLOCK;

    if (write_guard(st) != 0 || meta_put(st, "id_reserved", NULL, upto) != 0)
        return -1;
    st->id_reserved = upto;
    return 0;
}

/* Opens parley.db and parley.queue of `dir` and checks that they belong together. */
static int open_files(struct store_local *st, const char *dir, struct found *f)
{
    char db_path[PATH_MAX], log_path[PATH_MAX];

    if (store_path(st, db_path, dir, STORE_DB_NAME) != 0 ||
        store_path(st, log_path, dir, STORE_QUEUE_NAME) != 0 ||
        check_before_open(st, f, db_path, log_path) != 0 || open_db(st, db_path) != 0 ||
        check_db(st, f) != 0 || open_queue(st, dir) != 0 || check_pair(st, f) != 0)
        return -1;
    return 0;
}

/* Opens the store in `dir`; `accept` lets it start after a loss. */
static int open_store(struct store_local **out, const char *dir, bool accept, char *err,
                      size_t errlen)
{
    struct store_local *st;
    struct found f = {.accept = accept};

    *out = NULL;
    st = calloc(1, sizeof *st);
    if (!st) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return -1;
    }
    st->lock_fd = -1;
    st->reserve_fd = -1;
    if (make_dirs(st, dir) != 0 || take_lock(st, dir) != 0)
        goto fail;
    reserve_open(st, dir);
    if (open_files(st, dir, &f) != 0 || import_queue_table(st) != 0 || migrate(st) != 0 ||
        prepare_all(st) != 0 || adopt_store_id(st, &f) != 0 || load_reservation(st, &f) != 0)
        goto fail;
    *out = st;
    return 0;

fail:
    if (err && errlen)
        snprintf(err, errlen, "%s", st->err[0] ? st->err : "cannot open the store");
    local_close(st);
    return -1;
}

/* Opens the store in `dir` (see store_open); `accept` lets it start after a loss. */
static int local_open(void **out, const struct store_params *p, char *err, size_t errlen)
{
    struct store_local *st;
    int rc = open_store(&st, p->dir, p->accept_loss, err, errlen);
    if (rc == 0) {
        st->owner = p->owner;
        qlog_set_submit(st->queue, p->submit, p->submit_ctx);
    }
    *out = st;
    return rc;
}

/* Closes the store; every accepted write is durable. NULL is allowed. */
static void local_close(void *be)
{
    struct store_local *st = be;
    if (!st)
        return;
    if (st->db)
        batch_end(st);
    if (st->db && st->stmt[L_PUT])
        pending_retry(st);
    pending_free(st);
    if (st->reserve_fd >= 0)
        close(st->reserve_fd);
    qlog_close(st->queue);
    ckpt_stop(st); /* first: the loop's connection, closed last, checkpoints the WAL */
    for (int i = 0; i < STMT_COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    sqlite3_close(st->db);
    if (st->lock_fd >= 0)
        close(st->lock_fd); /* releases the lock */
    free(st);
}

/* Makes later messages, blocks and lock-outs survive a power loss, not only a crash. */
static int local_set_fsync(void *be, bool on)
{
    struct store_local *st = be;
    qlog_set_fsync(st->queue, on);
    st->fsync = on;
    return 0;
}

/* Commits every queue write since the last call; tells `done` at once, with -1 when any of them
 * was lost. */
static void local_commit(void *be, store_commit_fn done, void *arg)
{
    struct store_local *st = be;
    int rc = qlog_commit(st->queue) == 0 ? 0 : fail_queue(st);
    batch_end(st);
    done(arg, rc);
}

/* Returns the last failure's description; never NULL. */
static const char *local_error(const void *be)
{
    const struct store_local *st = be;
    return st->err[0] ? st->err : "no error";
}

/* Queues a direct message and returns its id in `*id`; durable at the next store_commit. */
static int push_message(struct store_local *st, const char *sender, const char *recipient,
                        int64_t sent_at, const char *body, size_t body_len, int64_t *id)
{
    if (guard(st) != 0)
        return -1;
    if (qlog_next_id(st->queue) >= st->id_reserved && reserve_ids(st) != 0)
        return -1;
    if (qlog_push(st->queue, sender, recipient, sent_at, body, body_len, id) != 0)
        return fail(st, "queueing message: %s", qlog_error(st->queue));
    return 0;
}

/* Answers at once: queues the message unless the recipient's queue is full. */
static void local_queue_push(void *be, const char *sender, const char *recipient, int64_t sent_at,
                             const char *body, size_t body_len, int64_t max_queued,
                             store_push_fn done, void *arg)
{
    struct store_local *st = be;
    int64_t id;
    if (guard(st) == 0 && max_queued > 0 && qlog_count(st->queue, recipient) >= max_queued) {
        done(arg, STORE_FULL, NULL);
        return;
    }
    int rc = push_message(st, sender, recipient, sent_at, body, body_len, &id);
    store_note(st->owner, rc);
    if (rc < 0) {
        done(arg, -1, NULL);
        return;
    }
    struct store_msg m = {id, sender, recipient, sent_at, body, body_len};
    done(arg, 0, &m);
}

/* Calls `fn` for each message queued for `recipient` with an id above `after_id`, in id order,
 * at most `limit` of them (0: no limit). */
static int load_messages(struct store_local *st, const char *recipient, int64_t after_id,
                         size_t limit, store_msg_fn fn, void *ctx)
{
    int rc;

    if (guard(st) != 0)
        return -1;
    st->walking = 1;
    rc = qlog_load(st->queue, recipient, after_id, limit, fn, ctx);
    st->walking = 0;
    if (rc != 0)
        return fail(st, "loading messages: %s", qlog_error(st->queue));
    return 0;
}

static void local_queue_load(void *be, const char *recipient, int64_t after_id, size_t limit,
                             store_msg_fn fn, store_done_fn done, void *ctx)
{
    done(ctx, load_messages(be, recipient, after_id, limit, fn, ctx));
}

/* Removes every message queued for `recipient` with id <= `up_to_id`. */
static int local_queue_ack(void *be, const char *recipient, int64_t up_to_id)
{
    struct store_local *st = be;
    if (guard(st) != 0)
        return -1;
    if (qlog_ack(st->queue, recipient, up_to_id) != 0)
        return fail(st, "acknowledging messages: %s", qlog_error(st->queue));
    return 0;
}

/* Answers the number of messages queued for `recipient`, or -1 on failure. */
static void local_queue_count(void *be, const char *recipient, store_count_fn done, void *arg)
{
    struct store_local *st = be;
    done(arg, guard(st) != 0 ? -1 : qlog_count(st->queue, recipient));
}

static int local_queue_totals(void *be, struct store_totals *out)
{
    struct store_local *st = be;
    if (guard(st) != 0)
        return -1;
    qlog_totals(st->queue, &out->messages, &out->bytes);
    return 0;
}

/* Records that `blocker` blocks `blocked`. Idempotent. */
static int add_block(struct store_local *st, const char *blocker, const char *blocked)
{
    sqlite3_stmt *s;

    if (write_guard(st) != 0)
        return -1;
    s = stmt_get(st, B_ADD);
    if (bind_str(s, 1, blocker) || bind_str(s, 2, blocked))
        return bind_fail(st, s, "adding block");
    return exec_durable(st, s, "adding block");
}

/* Lifts a block. Returns 1 when it existed, 0 when it did not, -1 on failure. */
static int remove_block(struct store_local *st, const char *blocker, const char *blocked)
{
    sqlite3_stmt *s;

    if (write_guard(st) != 0)
        return -1;
    s = stmt_get(st, B_REMOVE);
    if (bind_str(s, 1, blocker) || bind_str(s, 2, blocked))
        return bind_fail(st, s, "removing block");
    if (exec_durable(st, s, "removing block") != 0)
        return -1;
    return sqlite3_changes(st->db) > 0;
}

static void local_block_add(void *be, const char *blocker, const char *blocked, store_done_fn done,
                            void *arg)
{
    struct store_local *st = be;
    int rc = add_block(st, blocker, blocked);
    store_note(st->owner, rc);
    done(arg, rc);
}

static void local_block_remove(void *be, const char *blocker, const char *blocked,
                               store_done_fn done, void *arg)
{
    struct store_local *st = be;
    int rc = remove_block(st, blocker, blocked);
    store_note(st->owner, rc);
    done(arg, rc);
}

struct pair_walk {
    store_pair_fn fn;
    void *ctx;
};

static int pair_row(sqlite3_stmt *s, void *arg)
{
    const struct pair_walk *w = arg;

    return w->fn(w->ctx, (const char *)sqlite3_column_text(s, 0),
                 (const char *)sqlite3_column_text(s, 1));
}

/* Calls `fn(ctx, blocker, blocked)` for every block. */
static int local_block_each(void *be, store_pair_fn fn, void *ctx)
{
    struct store_local *st = be;
    struct pair_walk w = {fn, ctx};

    if (guard(st) != 0)
        return -1;
    return walk(st, stmt_get(st, B_EACH), "listing blocks", pair_row, &w);
}

/* Runs the bound login-history statement `s` in the batch. */
static int exec_batched(struct store_local *st, sqlite3_stmt *s, const char *what)
{
    if (exec_stmt(st, s, what) == 0)
        return 0;
    if (sqlite3_get_autocommit(st->db))
        st->in_batch = false; /* SQLite rolled the batch back */
    return -1;
}

/* Runs a presence statement `id` binding (text, int64) in the batch. */
static int exec_name_time(struct store_local *st, enum stmt_id id, const char *name, int64_t t,
                          const char *what)
{
    sqlite3_stmt *s;

    if (guard(st) != 0 || batch_join(st) != 0)
        return -1;
    s = stmt_get(st, id);
    if (bind_str(s, 1, name) || sqlite3_bind_int64(s, 2, t))
        return bind_fail(st, s, what);
    return exec_batched(st, s, what);
}

/* Records that `name` logged in at `now`. */
static int local_presence_login(void *be, const char *name, int64_t now)
{
    struct store_local *st = be;
    return exec_name_time(st, P_LOGIN, name, now, "recording login");
}

/* Records that `name` logged out at `now`. */
static int local_presence_logout(void *be, const char *name, int64_t now)
{
    struct store_local *st = be;
    return exec_name_time(st, P_LOGOUT, name, now, "recording logout");
}

/* Forgets the login history of `name`. */
static int local_presence_forget(void *be, const char *name)
{
    struct store_local *st = be;
    sqlite3_stmt *s;

    if (guard(st) != 0 || batch_join(st) != 0)
        return -1;
    s = stmt_get(st, P_FORGET);
    if (bind_str(s, 1, name))
        return bind_fail(st, s, "forgetting login history");
    return exec_batched(st, s, "forgetting login history");
}

/* Runs a statement `id` whose only parameter is a time. */
static int exec_time(struct store_local *st, enum stmt_id id, int64_t t, const char *what)
{
    sqlite3_stmt *s;

    if (write_guard(st) != 0)
        return -1;
    s = stmt_get(st, id);
    if (sqlite3_bind_int64(s, 1, t))
        return bind_fail(st, s, what);
    return exec_stmt(st, s, what);
}

/* Records that the server was alive at `now`; writes the lock-outs the disk refused before,
 * refills the reserve when the disk has room again and lets failed checkpoints be tried again. */
static int local_heartbeat(void *be, int64_t now)
{
    struct store_local *st = be;
    if (write_guard(st) != 0)
        return -1;
    pending_retry(st);
    reserve_refill(st);
    ckpt_retry(st); /* the heartbeat's own commit asks for one when the WAL needs it */
    return exec_time(st, P_HEARTBEAT, now, "writing heartbeat");
}

/* Keeps `bytes` of disk in parley.reserve for lock-outs on a full disk (0: none). */
static int local_set_reserve(void *be, size_t bytes)
{
    struct store_local *st = be;
    struct stat sb;

    st->reserve_bytes = bytes;
    if (st->reserve_fd < 0 || fstat(st->reserve_fd, &sb) != 0)
        return 0;
    if ((uint64_t)sb.st_size > bytes && ftruncate(st->reserve_fd, (off_t)bytes) != 0)
        return fail(st, "shrinking %s: %s", STORE_RESERVE_NAME, strerror(errno));
    if (!reserve_refill(st))
        log_error("store: no room on the disk for the %zu bytes of %s yet", bytes,
                  STORE_RESERVE_NAME);
    return 0;
}

/* Records users still marked as logged in as logged out at the last heartbeat (or `now`), but
 * never before their last login. */
static int local_presence_recover(void *be, int64_t now)
{
    struct store_local *st = be;
    return exec_time(st, P_RECOVER, now, "recovering presence");
}

struct name_walk {
    store_name_fn fn;
    void *ctx;
};

static int name_row(sqlite3_stmt *s, void *arg)
{
    const struct name_walk *w = arg;

    return w->fn(w->ctx, (const char *)sqlite3_column_text(s, 0));
}

/* Calls `fn` for every user whose last logout was at or after `since`. */
static int list_since(struct store_local *st, int64_t since, store_name_fn fn, void *ctx)
{
    struct name_walk w = {fn, ctx};
    sqlite3_stmt *s;

    if (guard(st) != 0)
        return -1;
    s = stmt_get(st, P_SINCE);
    if (sqlite3_bind_int64(s, 1, since))
        return bind_fail(st, s, "listing logouts");
    return walk(st, s, "listing logouts", name_row, &w);
}

static void local_presence_since(void *be, int64_t since, store_name_fn fn, store_done_fn done,
                                 void *ctx)
{
    done(ctx, list_since(be, since, fn, ctx));
}

/* Reads the lock-out record of `name` (zeroes when there is none). */
static int local_lock_get(void *be, const char *name, struct store_lock *lock)
{
    struct store_local *st = be;
    sqlite3_stmt *s;
    int rc;

    if (guard(st) != 0)
        return -1;
    s = stmt_get(st, L_GET);
    lock->failures = 0;
    lock->locked_until = 0;
    if (bind_str(s, 1, name))
        return bind_fail(st, s, "reading lock-out");
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        lock->failures = sqlite3_column_int(s, 0);
        lock->locked_until = sqlite3_column_int64(s, 1);
    }
    stmt_done(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return fail_db(st, "reading lock-out");
    return 0;
}

/* Writes the lock-out record of `name`: on a full disk into the space of the reserve; when even
 * that fails, it is kept and written again at each heartbeat and at close. */
static int local_lock_put(void *be, const char *name, const struct store_lock *lock)
{
    struct store_local *st = be;
    if (write_guard(st) != 0)
        return -1;
    free(pending_take(st, name)); /* this record replaces it */
    while (lock_write(st, name, lock) != 0) {
        if (st->last_rc != SQLITE_FULL || reserve_release(st) != 0) {
            char why[sizeof st->err];
            snprintf(why, sizeof why, "%s", st->err);
            pending_keep(st, name, lock);
            return fail(st, "%s; kept, to be written when the store can", why);
        }
    }
    return 0;
}

struct lock_walk {
    store_lock_fn fn;
    void *ctx;
};

static int lock_row(sqlite3_stmt *s, void *arg)
{
    const struct lock_walk *w = arg;
    struct store_lock lock = {
        .failures = sqlite3_column_int(s, 1),
        .locked_until = sqlite3_column_int64(s, 2),
    };

    return w->fn(w->ctx, (const char *)sqlite3_column_text(s, 0), &lock);
}

/* Calls `fn` for every stored lock-out record. */
static int local_lock_each(void *be, store_lock_fn fn, void *ctx)
{
    struct store_local *st = be;
    struct lock_walk w = {fn, ctx};

    if (guard(st) != 0)
        return -1;
    return walk(st, stmt_get(st, L_EACH), "listing lock-outs", lock_row, &w);
}

/* The local backend: this process's data directory (see the top of this file). */
/* Decides a login attempt on the record of `name` (one process: nothing can come between the
 * read and the write). */
static void local_lock_attempt(void *be, const char *name, bool password_ok, int64_t now_ms,
                               const struct store_lock_policy *policy, store_lock_done_fn done,
                               void *arg)
{
    struct store_lock rec;
    if (local_lock_get(be, name, &rec) < 0) {
        done(arg, -1, STORE_LOCK_LOCKED, NULL);
        return;
    }
    struct lockout l = {rec.failures, rec.locked_until};
    enum store_lock_verdict v = STORE_LOCK_PASS;
    if (lockout_is_locked(&l, now_ms))
        v = STORE_LOCK_LOCKED;
    else if (password_ok)
        lockout_success(&l);
    else if (lockout_fail(&l, now_ms, policy->max_failures, policy->block_duration) ==
             LOCKOUT_NOW_LOCKED)
        v = STORE_LOCK_NOW_LOCKED;
    else
        v = STORE_LOCK_WRONG;
    struct store_lock now = {l.failures, l.locked_until};
    if ((now.failures != rec.failures || now.locked_until != rec.locked_until)) {
        struct store_local *st = be;
        int rc = local_lock_put(be, name, &now);
        store_note(st->owner, rc);
        /* A lock-out the disk refused is kept and written later (local_lock_put): it counts. */
        if (rc < 0)
            log_error("store: cannot record lock-out of %s: %s", name, st->err);
    }
    done(arg, 0, v, &now);
}

/* Accounts live in the credentials file: nothing to add. */
static void local_account_add(void *be, const char *name, const char *hash, store_done_fn done,
                              void *arg)
{
    (void)be;
    (void)name;
    (void)hash;
    done(arg, 0);
}

static int local_account_each(void *be, store_account_fn fn, void *ctx)
{
    (void)be;
    (void)fn;
    (void)ctx;
    return 0;
}

const struct store_ops store_local_ops = {
    .name = "local",
    .answers_early = true,
    .open = local_open,
    .close = local_close,
    .set_fsync = local_set_fsync,
    .set_reserve = local_set_reserve,
    .error = local_error,
    .commit = local_commit,
    .queue_push = local_queue_push,
    .queue_load = local_queue_load,
    .queue_ack = local_queue_ack,
    .queue_count = local_queue_count,
    .queue_totals = local_queue_totals,
    .block_add = local_block_add,
    .block_remove = local_block_remove,
    .block_each = local_block_each,
    .presence_login = local_presence_login,
    .presence_logout = local_presence_logout,
    .heartbeat = local_heartbeat,
    .presence_recover = local_presence_recover,
    .presence_since = local_presence_since,
    .presence_forget = local_presence_forget,
    .lock_get = local_lock_get,
    .lock_put = local_lock_put,
    .lock_each = local_lock_each,
    .lock_attempt = local_lock_attempt,
    .account_add = local_account_add,
    .account_each = local_account_each,
};
