/* The server's durable state behind one small interface: offline messages, blocks, login
 * history and lock-outs. The backend is chosen by name when the server starts (--store NAME,
 * OpenSMTPD's queue_backend style): each is a table of operations (struct store_ops, at the
 * end), and the functions below only pass each call to the table of the open store. Today's
 * one backend is "local" (store_local.c): messages in an append-only log with the queues in
 * memory (qlog.c), the rest in SQLite (WAL), both in the data directory. Every function
 * returns 0 on success and -1 on a store failure (then store_error() says why), unless it says
 * otherwise; tests/unit/test_store.c is the suite every backend must pass.
 *
 * Asynchronous backends. Only store_commit reports through a callback: the writes of one batch
 * (one event-loop iteration: queued messages, acknowledgements, login history) are confirmed
 * together, as the local backend's group commit is. A backend on a network engine (Redis: one
 * pipelined script per batch) returns from store_commit at once and calls `done` when the
 * engine answered; the server holds the batch's output until then, and the undo list it keeps
 * for the local backend (server_undo_on_failure) is what `done(-1)` corrects. A value a reply
 * carries (a message id) is given at push time; a backend that learns it only from the
 * engine's answer gives a provisional one, and the server rewrites the held replies that carry
 * it before they are flushed, as the undo does (docs/ARCHITECTURE.md, "Seams"). */
#ifndef PARLEY_STORE_H
#define PARLEY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct cluster;
struct store;

/* A queued direct message, valid only during the callback that receives it. */
struct store_msg {
    int64_t id; /* increases with every message ever queued, across restarts */
    const char *sender;
    const char *recipient;
    int64_t sent_at; /* unix seconds */
    const char *body;
    size_t body_len;
};

/* A lock-out record of one user name. */
struct store_lock {
    int failures;         /* consecutive wrong passwords */
    int64_t locked_until; /* unix seconds; 0 when not locked */
};

typedef int (*store_msg_fn)(void *ctx, const struct store_msg *msg);
typedef int (*store_pair_fn)(void *ctx, const char *a, const char *b);
typedef int (*store_name_fn)(void *ctx, const char *name);
typedef int (*store_lock_fn)(void *ctx, const char *name, const struct store_lock *lock);
/* Told once whether a batch of writes was confirmed (rc 0) or lost (rc -1). */
typedef void (*store_commit_fn)(void *arg, int rc);
/* The answer of an asynchronous operation: rc as the operation says. */
typedef void (*store_done_fn)(void *arg, int rc);
/* The answer of store_queue_push: rc 0 with the message as stored (valid during the call),
 * STORE_FULL, STORE_FENCED or STORE_BLOCKED_BY_PEER / STORE_BLOCKING_PEER with `m` NULL, -1
 * (failure) with `m` NULL. */
typedef void (*store_push_fn)(void *arg, int rc, const struct store_msg *m);
/* The answer of store_queue_count: the count, or -1 on failure. */
typedef void (*store_count_fn)(void *arg, int64_t count);

/* store_queue_push refused: the recipient has max_queued messages waiting. */
#define STORE_FULL 1
/* store_queue_push refused: the sender is not logged in through this node any more (a
 * cluster node that lost its claim on the user: presence.h). */
#define STORE_FENCED 2
/* store_queue_push refused: the recipient blocks the sender, or the sender the recipient (the
 * store knew of a block before this node did: a cluster's other node made it). */
#define STORE_BLOCKED_BY_PEER 3
#define STORE_BLOCKING_PEER 4

/* How wrong passwords lock an account (store_lock_attempt). */
struct store_lock_policy {
    int max_failures;       /* consecutive wrong passwords that lock */
    int64_t block_duration; /* seconds a lock lasts */
};

/* What store_lock_attempt decided. */
enum store_lock_verdict {
    STORE_LOCK_PASS,       /* the password was right and the account not locked: failures reset */
    STORE_LOCK_WRONG,      /* a wrong password, counted; ask again */
    STORE_LOCK_NOW_LOCKED, /* a wrong password, counted: the account is locked from now */
    STORE_LOCK_LOCKED,     /* the account was locked: nothing counted */
};

/* The answer of store_lock_attempt: rc 0 with the verdict and the record as it is now, or -1
 * (the attempt could not be recorded: the login is refused). */
typedef void (*store_lock_done_fn)(void *arg, int rc, enum store_lock_verdict v,
                                   const struct store_lock *lock);

struct store_ops;

/* Returns the backend called `name` ("local"), or NULL when there is none. */
const struct store_ops *store_backend(const char *name);

/* Writes the names of the backends, separated by ", ", into `out` (for a usage message). */
void store_backend_names(char *out, size_t len);

/* Opens (creating when missing) the store in directory `dir`, creating the directory too.
 * The store holds the directory's lock (parley.lock) until store_close: while one process has
 * it open, every other store_open of that directory fails, before reading or writing any of
 * its files, with "in use by another parleyd (pid N)". Applies schema migrations.
 * Both files record the store's id, and parley.db the ids reserved for messages. A directory
 * that lost one of them (parley.db or parley.queue missing or emptied while the other shows the
 * store had it, or a log of another store) is refused, naming the file, before that file is
 * created again; so is a log whose copy for a damaged file cannot be written. On failure
 * returns -1 and, when `err` is given, a message in it. */
int store_open(struct store **out, const struct store_ops *ops, const char *dir, char *err,
               size_t errlen);

/* Runs `job(arg)` on another thread, then `done(arg)` (unless NULL) on the loop's thread.
 * Returns 0, or -1 when the job cannot be queued now (then neither runs). */
typedef int (*store_submit_fn)(void *ctx, void (*job)(void *arg), void (*done)(void *arg),
                               void *arg);

/* What a backend on a network engine needs besides the directory (store_open_with). */
struct store_params {
    const char *dir; /* the data directory (the local files; a cluster node's own files) */
    bool accept_loss;
    struct event_base *base; /* the loop an asynchronous backend answers from */
    struct cluster *cluster; /* the node's cluster (cluster.h), for the redis backend */
    store_submit_fn submit;  /* slow file work off the loop (the worker pool); NULL: on it */
    void *submit_ctx;        /* its first argument */
    struct store *owner;     /* set by store_open_with: what a backend passes to store_note */
};

/* For backends: the write answered with `rc` (0 or more: taken; -1: failed) counts for
 * store_writable, like the writes whose functions return their rc. */
void store_note(struct store *st, int rc);

/* Like store_open, with every parameter a backend may need. */
int store_open_with(struct store **out, const struct store_ops *ops, const struct store_params *p,
                    char *err, size_t errlen);

/* True when the backend answers a write before the batch that holds it is committed (the
 * local one: its answers are corrected if the commit fails, server_undo_on_failure); false
 * when it answers only once the engine confirmed (nothing to correct). */
bool store_answers_early(const struct store *st);

/* Like store_open, but a lost or foreign file is logged and replaced by an empty one. Message
 * ids still go on above every id given before (the reservation in parley.db, or the ids in the
 * log when the database was lost). */
int store_open_accepting_loss(struct store **out, const struct store_ops *ops, const char *dir,
                              char *err, size_t errlen);

/* Returns false when the last write the store answered (a message queued, an acknowledgement,
 * a block, the login history, a lock-out; not a commit, which the caller is told of) failed,
 * true once one succeeds again (the heartbeat every few seconds tries). NULL: false. */
bool store_writable(const struct store *st);

/* Closes the store; every accepted write is durable. NULL is allowed. */
void store_close(struct store *st);

/* Commits the queue writes made since the last call (group commit: the server calls it once
 * per event-loop iteration, before any reply is written) and calls `done(arg, rc)` exactly
 * once: rc 0, or -1 when any of them was lost (then they are undone, and the callers that were
 * told "accepted" must not be told so). The local backend calls it before returning; another
 * may call it later, from the event loop. Other writes are durable when they return, except
 * login history. A NULL store calls done(arg, 0). */
void store_commit(struct store *st, store_commit_fn done, void *arg);

/* With `on`, queued messages, blocks and lock-outs are flushed to the disk before they count
 * as done, so they survive a power loss; without, a crash of the process (the default).
 * Acknowledgements and login history are never flushed on their own: a power loss may bring
 * back delivered messages (delivered again) and lose the latest logins and logouts. */
int store_set_fsync(struct store *st, bool on);

/* Keeps `bytes` of disk held back in parley.reserve (0: none; without a call, none): when the
 * disk is full, a lock-out write frees 64 KiB of it and takes that place, so wrong passwords
 * are still counted durably. A disk too full for it now is logged, and it is filled at a later
 * heartbeat. A lock-out the disk refuses even so is kept and written again at each heartbeat
 * and at close. Returns 0, or -1 when the file could not be shrunk. */
int store_set_reserve(struct store *st, size_t bytes);

/* Returns the last failure's description; never NULL. */
const char *store_error(const struct store *st);

/* Queues a direct message (the redis backend refuses a body with a NUL byte, which no line of
 * the protocol has, as a failure) unless `recipient` has `max_queued` (0: no limit) waiting, and
 * answers with it and its id: above every id queued before for the same recipient (even after
 * a lost or damaged log). Ids of different recipients are not related: the local backend
 * counts for everyone, the redis backend per recipient (parley:qnext). Queue writes (this and
 * store_queue_ack) are grouped: they are durable once store_commit confirmed them, and then
 * survive a crash of the process. `done` is called exactly once (before this returns, or
 * later from the loop). */
void store_queue_push(struct store *st, const char *sender, const char *recipient, int64_t sent_at,
                      const char *body, size_t body_len, int64_t max_queued, store_push_fn done,
                      void *arg);

/* Calls `fn` for each message queued for `recipient`, in id order, at most `limit` of them
 * (0: no limit), with ids greater than `after_id`, then `done(ctx, rc)` (0, or -1 when the
 * queue could not be read). A non-zero return from `fn` stops the walk (rc stays 0). */
void store_queue_load(struct store *st, const char *recipient, int64_t after_id, size_t limit,
                      store_msg_fn fn, store_done_fn done, void *ctx);

/* Removes every message queued for `recipient` with id <= `up_to_id` (it was delivered). */
int store_queue_ack(struct store *st, const char *recipient, int64_t up_to_id);

/* Answers the number of messages queued for `recipient`, or -1 on failure. */
void store_queue_count(struct store *st, const char *recipient, store_count_fn done, void *arg);

/* What waits in the store for all recipients together. */
struct store_totals {
    int64_t messages;
    uint64_t bytes; /* sender names and bodies */
};

/* Fills `*out` (for /metrics; may take a step per recipient). */
int store_queue_totals(struct store *st, struct store_totals *out);

/* Records that `blocker` blocks `blocked` (idempotent); answers 0 once it is durable, or -1. */
void store_block_add(struct store *st, const char *blocker, const char *blocked, store_done_fn done,
                     void *arg);

/* Lifts a block; answers 1 when it existed, 0 when it did not, -1 on failure. */
void store_block_remove(struct store *st, const char *blocker, const char *blocked,
                        store_done_fn done, void *arg);

/* Calls `fn(ctx, blocker, blocked)` for every block. */
int store_block_each(struct store *st, store_pair_fn fn, void *ctx);

/* Records that `name` logged in at `now`. Login history (this and store_presence_logout) is
 * grouped like the queue: durable once store_commit returns, failures only logged there. */
int store_presence_login(struct store *st, const char *name, int64_t now);

/* Records that `name` logged out at `now`. */
int store_presence_logout(struct store *st, const char *name, int64_t now);

/* Records that the server was alive at `now` (called every few seconds). */
int store_heartbeat(struct store *st, int64_t now);

/* At start-up: users recorded as logged in (the previous run crashed) are recorded as logged
 * out at the last heartbeat of that run (or at `now` when there was none). */
int store_presence_recover(struct store *st, int64_t now);

/* Calls `fn` for every user whose last logout was at or after `since`, the latest first, then
 * `done(ctx, rc)`; the cost is that of the users listed (an index), not of the whole history. */
void store_presence_since(struct store *st, int64_t since, store_name_fn fn, store_done_fn done,
                          void *ctx);

/* Forgets everything about `name`'s logins and logouts (its account is gone: no WHOSINCE
 * window can list it any more). Grouped like the other login-history writes. */
int store_presence_forget(struct store *st, const char *name);

/* Reads the lock-out record of `name` (zeroes when there is none). */
int store_lock_get(struct store *st, const char *name, struct store_lock *lock);

/* Writes the lock-out record of `name`; a record of zeroes is deleted. */
int store_lock_put(struct store *st, const char *name, const struct store_lock *lock);

/* Calls `fn` for every stored lock-out record. */
int store_lock_each(struct store *st, store_lock_fn fn, void *ctx);

/* Counts one login attempt of `name` at `now_ms` (unix milliseconds) whose password was right
 * (`password_ok`) or not, atomically against every other attempt on the same record (in a
 * cluster: on every node), and answers the verdict with the record as it is now: a locked
 * account stays locked and counts nothing; a right password resets the failures; a wrong one
 * counts, and locks for `policy->block_duration` seconds (rounded up to the next second) at
 * `policy->max_failures`. An expired lock is cleared first. */
void store_lock_attempt(struct store *st, const char *name, bool password_ok, int64_t now_ms,
                        const struct store_lock_policy *policy, store_lock_done_fn done, void *arg);

/* Records an account made by registration (`hash` is its argon2id string) where every node
 * finds it; answers 0 or -1. The local backend has nothing to add (the credentials file is
 * where accounts live) and answers 0. */
void store_account_add(struct store *st, const char *name, const char *hash, store_done_fn done,
                       void *arg);

/* Calls `fn(ctx, name, hash)` for every account store_account_add recorded. */
typedef int (*store_account_fn)(void *ctx, const char *name, const char *hash);
int store_account_each(struct store *st, store_account_fn fn, void *ctx);

/* What a backend implements: one function per operation above, with the same contract, on
 * the backend's own state `be` (made by `open`). */
struct store_ops {
    const char *name;   /* what --store calls it */
    bool answers_early; /* see store_answers_early */
    int (*open)(void **be, const struct store_params *p, char *err, size_t errlen);
    void (*close)(void *be);
    int (*set_fsync)(void *be, bool on);
    int (*set_reserve)(void *be, size_t bytes);
    const char *(*error)(const void *be);
    void (*commit)(void *be, store_commit_fn done, void *arg);
    void (*queue_push)(void *be, const char *sender, const char *recipient, int64_t sent_at,
                       const char *body, size_t body_len, int64_t max_queued, store_push_fn done,
                       void *arg);
    void (*queue_load)(void *be, const char *recipient, int64_t after_id, size_t limit,
                       store_msg_fn fn, store_done_fn done, void *ctx);
    int (*queue_ack)(void *be, const char *recipient, int64_t up_to_id);
    void (*queue_count)(void *be, const char *recipient, store_count_fn done, void *arg);
    int (*queue_totals)(void *be, struct store_totals *out);
    void (*block_add)(void *be, const char *blocker, const char *blocked, store_done_fn done,
                      void *arg);
    void (*block_remove)(void *be, const char *blocker, const char *blocked, store_done_fn done,
                         void *arg);
    int (*block_each)(void *be, store_pair_fn fn, void *ctx);
    int (*presence_login)(void *be, const char *name, int64_t now);
    int (*presence_logout)(void *be, const char *name, int64_t now);
    int (*heartbeat)(void *be, int64_t now);
    int (*presence_recover)(void *be, int64_t now);
    void (*presence_since)(void *be, int64_t since, store_name_fn fn, store_done_fn done,
                           void *ctx);
    int (*presence_forget)(void *be, const char *name);
    int (*lock_get)(void *be, const char *name, struct store_lock *lock);
    int (*lock_put)(void *be, const char *name, const struct store_lock *lock);
    int (*lock_each)(void *be, store_lock_fn fn, void *ctx);
    void (*lock_attempt)(void *be, const char *name, bool password_ok, int64_t now_ms,
                         const struct store_lock_policy *policy, store_lock_done_fn done,
                         void *arg);
    void (*account_add)(void *be, const char *name, const char *hash, store_done_fn done,
                        void *arg);
    int (*account_each)(void *be, store_account_fn fn, void *ctx);
};

/* The backend of store_local.c: this process's data directory. */
extern const struct store_ops store_local_ops;

/* The local backend's bounds on parley.db's write-ahead log, in pages (4 KiB each by default):
 * past the first, a commit asks the checkpoint thread to copy the WAL into the database; past
 * the second (the thread failed or fell behind), the commit does it on the loop, logged. */
#define STORE_LOCAL_WAL_CHECKPOINT_PAGES 1000
#define STORE_LOCAL_WAL_LIMIT_PAGES 4000

/* For tests of the local backend: `hook` runs on the checkpoint thread before each of its
 * checkpoints (a test may wait in it); a non-zero return fails that checkpoint, as a refusing
 * disk would. NULL, the default: none. */
typedef int (*store_checkpoint_hook_fn)(void);
void store_local_set_checkpoint_hook(store_checkpoint_hook_fn hook);

/* The backend of store_redis.c: the cluster's Redis (--redis). */
extern const struct store_ops store_redis_ops;

#endif
