/* The store: blocks, login history and lock-outs in one SQLite database, parley.db, in WAL
 * mode with synchronous=NORMAL, so a write that returned 0 survives a crash of the process
 * (blocks and lock-outs a power loss too, with store_set_fsync); each such call is its own
 * transaction, except login history, which joins one transaction per store_commit. Every statement
 * is prepared once. The message queue is the append-only log of qlog.c, parley.queue, next to it.
 * Callbacks of the walking functions must not call back into the store. */
#include "server/store.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "server/log.h"
#include "server/qlog.h"

#define STORE_DB_NAME "parley.db"
#define STORE_QUEUE_NAME "parley.queue"
#define STORE_BUSY_MS 5000

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
};

struct store {
    sqlite3 *db;
    sqlite3_stmt *stmt[STMT_COUNT];
    struct qlog *queue;
    int walking;   /* non-zero while a walk's callback runs */
    bool in_batch; /* login-history writes wait in an open transaction for store_commit */
    bool fsync;    /* blocks and lock-outs are flushed to the disk when written */
    char err[256];
};

/* Records a formatted failure message and returns -1. */
static int fail(struct store *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct store *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->err, sizeof st->err, fmt, ap);
    va_end(ap);
    return -1;
}

/* Records `what` and SQLite's description of the last failure; returns -1. */
static int fail_db(struct store *st, const char *what)
{
    return fail(st, "%s: %s", what, st->db ? sqlite3_errmsg(st->db) : "no database");
}

/* Refuses a call made from inside a walk's callback (it could reuse a running statement). */
static int guard(struct store *st)
{
    if (st->walking)
        return fail(st, "store called from inside a store callback");
    return 0;
}

/* Returns statement `id`, ready to bind (every use ends with stmt_done). */
static sqlite3_stmt *stmt_get(struct store *st, enum stmt_id id)
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
static int bind_fail(struct store *st, sqlite3_stmt *s, const char *what)
{
    fail_db(st, what);
    stmt_done(s);
    return -1;
}

/* Runs statement `s` (already bound) that returns no rows; `what` names it in errors. */
static int exec_stmt(struct store *st, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    stmt_done(s);
    if (rc != SQLITE_DONE)
        return fail_db(st, what);
    return 0;
}

/* Runs `sql` (one or more statements, no rows wanted). */
static int exec_sql(struct store *st, const char *sql, const char *what)
{
    if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return fail_db(st, what);
    return 0;
}

/* Runs statement `s` (bound, no rows) as its own transaction; with store_set_fsync, that
 * commit is flushed to the disk (synchronous=FULL for it alone). */
static int exec_durable(struct store *st, sqlite3_stmt *s, const char *what)
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
static int batch_join(struct store *st)
{
    if (st->in_batch)
        return 0;
    if (exec_sql(st, "BEGIN IMMEDIATE", "starting a batch") != 0)
        return -1;
    st->in_batch = true;
    return 0;
}

/* Commits the open batch, if any; a lost batch is logged (login history is best effort). */
static void batch_end(struct store *st)
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
static int write_guard(struct store *st)
{
    if (guard(st) != 0)
        return -1;
    batch_end(st);
    return 0;
}

/* Creates directory `dir` and its missing parents with mode 0700; an existing directory is
 * fine. */
static int make_dirs(struct store *st, const char *dir)
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

/* Reads PRAGMA user_version into `*version`. */
static int schema_version(struct store *st, int *version)
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
static int migrate_from(struct store *st, int version)
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
static int migrate(struct store *st)
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
static int enable_wal(struct store *st)
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
static int prepare_all(struct store *st)
{
    for (int i = 0; i < STMT_COUNT; i++) {
        if (sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i],
                               NULL) != SQLITE_OK)
            return fail_db(st, "preparing statement");
    }
    return 0;
}

/* Copies the queue log's last failure into the store's. Returns -1. */
static int fail_queue(struct store *st)
{
    return fail(st, "%s", qlog_error(st->queue));
}

/* Opens the queue log in `dir`. */
static int open_queue(struct store *st, const char *dir)
{
    char path[PATH_MAX];

    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, STORE_QUEUE_NAME) >= sizeof path)
        return fail(st, "data directory path too long");
    return qlog_open(&st->queue, path, st->err, sizeof st->err);
}

/* Steps `s` and hands each row to `row` until the rows end or `row` returns non-zero. */
static int walk(struct store *st, sqlite3_stmt *s, const char *what,
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
    struct store *st = arg;
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
static int import_queue_table(struct store *st)
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

/* Opens (creating when missing) the store in directory `dir`, creating the directory too. */
int store_open(struct store **out, const char *dir, char *err, size_t errlen)
{
    struct store *st;
    char path[PATH_MAX];

    *out = NULL;
    st = calloc(1, sizeof *st);
    if (!st) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (make_dirs(st, dir) != 0)
        goto fail;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, STORE_DB_NAME) >= sizeof path) {
        fail(st, "data directory path too long");
        goto fail;
    }
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        fail(st, "opening %s: %s", path, st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto fail;
    }
    if (sqlite3_busy_timeout(st->db, STORE_BUSY_MS) != SQLITE_OK || enable_wal(st) != 0 ||
        exec_sql(st, "PRAGMA synchronous = NORMAL", "setting synchronous") != 0)
        goto fail;
    if (open_queue(st, dir) != 0 || import_queue_table(st) != 0)
        goto fail;
    if (migrate(st) != 0 || prepare_all(st) != 0)
        goto fail;
    *out = st;
    return 0;

fail:
    if (err && errlen)
        snprintf(err, errlen, "%s", st->err[0] ? st->err : "cannot open the store");
    store_close(st);
    return -1;
}

/* Closes the store; every accepted write is durable. NULL is allowed. */
void store_close(struct store *st)
{
    if (!st)
        return;
    if (st->db)
        batch_end(st);
    qlog_close(st->queue);
    for (int i = 0; i < STMT_COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    sqlite3_close(st->db);
    free(st);
}

/* Makes later messages, blocks and lock-outs survive a power loss, not only a crash. */
int store_set_fsync(struct store *st, bool on)
{
    qlog_set_fsync(st->queue, on);
    st->fsync = on;
    return 0;
}

/* Commits every queue write since the last call. Returns -1 when any of them was lost. */
int store_commit(struct store *st)
{
    if (!st)
        return 0;
    int rc = qlog_commit(st->queue) == 0 ? 0 : fail_queue(st);
    batch_end(st);
    return rc;
}

/* Returns the last failure's description; never NULL. */
const char *store_error(const struct store *st)
{
    if (!st)
        return "no store";
    return st->err[0] ? st->err : "no error";
}

/* Queues a direct message and returns its id in `*id`; durable at the next store_commit. */
int store_queue_push(struct store *st, const char *sender, const char *recipient, int64_t sent_at,
                     const char *body, size_t body_len, int64_t *id)
{
    if (guard(st) != 0)
        return -1;
    if (qlog_push(st->queue, sender, recipient, sent_at, body, body_len, id) != 0)
        return fail(st, "queueing message: %s", qlog_error(st->queue));
    return 0;
}

/* Calls `fn` for each message queued for `recipient` with an id above `after_id`, in id order,
 * at most `limit` of them (0: no limit). */
int store_queue_load(struct store *st, const char *recipient, int64_t after_id, size_t limit,
                     store_msg_fn fn, void *ctx)
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

/* Removes every message queued for `recipient` with id <= `up_to_id`. */
int store_queue_ack(struct store *st, const char *recipient, int64_t up_to_id)
{
    if (guard(st) != 0)
        return -1;
    if (qlog_ack(st->queue, recipient, up_to_id) != 0)
        return fail(st, "acknowledging messages: %s", qlog_error(st->queue));
    return 0;
}

/* Returns the number of messages queued for `recipient`, or -1 on failure. */
int64_t store_queue_count(struct store *st, const char *recipient)
{
    if (guard(st) != 0)
        return -1;
    return qlog_count(st->queue, recipient);
}

/* Records that `blocker` blocks `blocked`. Idempotent. */
int store_block_add(struct store *st, const char *blocker, const char *blocked)
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
int store_block_remove(struct store *st, const char *blocker, const char *blocked)
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
int store_block_each(struct store *st, store_pair_fn fn, void *ctx)
{
    struct pair_walk w = {fn, ctx};

    if (guard(st) != 0)
        return -1;
    return walk(st, stmt_get(st, B_EACH), "listing blocks", pair_row, &w);
}

/* Runs the bound login-history statement `s` in the batch. */
static int exec_batched(struct store *st, sqlite3_stmt *s, const char *what)
{
    if (exec_stmt(st, s, what) == 0)
        return 0;
    if (sqlite3_get_autocommit(st->db))
        st->in_batch = false; /* SQLite rolled the batch back */
    return -1;
}

/* Runs a presence statement `id` binding (text, int64) in the batch. */
static int exec_name_time(struct store *st, enum stmt_id id, const char *name, int64_t t,
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
int store_presence_login(struct store *st, const char *name, int64_t now)
{
    return exec_name_time(st, P_LOGIN, name, now, "recording login");
}

/* Records that `name` logged out at `now`. */
int store_presence_logout(struct store *st, const char *name, int64_t now)
{
    return exec_name_time(st, P_LOGOUT, name, now, "recording logout");
}

/* Forgets the login history of `name`. */
int store_presence_forget(struct store *st, const char *name)
{
    sqlite3_stmt *s;

    if (guard(st) != 0 || batch_join(st) != 0)
        return -1;
    s = stmt_get(st, P_FORGET);
    if (bind_str(s, 1, name))
        return bind_fail(st, s, "forgetting login history");
    return exec_batched(st, s, "forgetting login history");
}

/* Runs a statement `id` whose only parameter is a time. */
static int exec_time(struct store *st, enum stmt_id id, int64_t t, const char *what)
{
    sqlite3_stmt *s;

    if (write_guard(st) != 0)
        return -1;
    s = stmt_get(st, id);
    if (sqlite3_bind_int64(s, 1, t))
        return bind_fail(st, s, what);
    return exec_stmt(st, s, what);
}

/* Records that the server was alive at `now`. */
int store_heartbeat(struct store *st, int64_t now)
{
    return exec_time(st, P_HEARTBEAT, now, "writing heartbeat");
}

/* Records users still marked as logged in as logged out at the last heartbeat (or `now`), but
 * never before their last login. */
int store_presence_recover(struct store *st, int64_t now)
{
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
int store_presence_since(struct store *st, int64_t since, store_name_fn fn, void *ctx)
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

/* Reads the lock-out record of `name` (zeroes when there is none). */
int store_lock_get(struct store *st, const char *name, struct store_lock *lock)
{
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

/* Writes the lock-out record of `name`; a record of zeroes is deleted. */
int store_lock_put(struct store *st, const char *name, const struct store_lock *lock)
{
    sqlite3_stmt *s;

    if (write_guard(st) != 0)
        return -1;
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
int store_lock_each(struct store *st, store_lock_fn fn, void *ctx)
{
    struct lock_walk w = {fn, ctx};

    if (guard(st) != 0)
        return -1;
    return walk(st, stmt_get(st, L_EACH), "listing lock-outs", lock_row, &w);
}
