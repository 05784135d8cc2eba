/* The message queue of the store: every queued direct message and every acknowledgement is a
 * record appended to one log file, and the queues themselves live in memory, one per
 * recipient, rebuilt from the log at open. Writes are grouped: they take effect in memory at
 * once and reach the file together at qlog_commit (one write, and one fdatasync when asked),
 * which the server calls once per event-loop iteration before any reply leaves. A batch that
 * cannot be written is undone in memory too, so memory always equals the file. The log is
 * rewritten with only the live messages when it has grown well past them, a slice per commit
 * into `<path>.new` while the log stays in use, flushed off the loop, then renamed over it.
 * Record format: docs/PERFORMANCE.md ("The queue log"). Every function returns 0 on success and
 * -1 on failure (then qlog_error() says why), unless it says otherwise. */
#ifndef PARLEY_QLOG_H
#define PARLEY_QLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/store.h"

struct qlog;

/* Characters of a store id (STORE_ID record): lower-case hex. */
#define QLOG_STORE_ID_LEN 32

/* Bytes of live records a commit copies into the new file of a rewrite, at most (and one
 * record more), so that a commit during a rewrite stays short. A commit whose batch pushed to
 * the queue being copied copies that much more, so that the copy always gains on the pushes. */
#define QLOG_REWRITE_SLICE (256u << 10)

/* While a rewrite copies, its file is flushed each time this many bytes were written to it
 * since the last flush (off the loop, with qlog_set_submit), so that the final flush is short
 * and the disk never gets the whole file at once (Redis: aof-rewrite-incremental-fsync). */
#define QLOG_REWRITE_SYNC_EVERY (4u << 20)

/* Where a rewrite of the log stands (qlog_rewrite_state). */
enum qlog_rewrite_state {
    QLOG_REWRITE_IDLE,    /* none: the log is the only file */
    QLOG_REWRITE_COPYING, /* the live messages go to `<path>.new`, a slice per commit */
    QLOG_REWRITE_SYNCING, /* the copy is whole; it waits for a flush to cover it */
};

/* How a log is opened. A zero field, or a NULL pointer for all, takes the default. */
struct qlog_params {
    size_t rewrite_slice;      /* QLOG_REWRITE_SLICE */
    size_t rewrite_sync_every; /* QLOG_REWRITE_SYNC_EVERY */
    uint64_t compact_min;      /* a log smaller than this is never rewritten: 16 MiB */
};

/* Opens (creating when missing) the log at `path` with parameters `p` and loads its queues. A
 * `<path>.new` left by a rewrite that did not finish is removed. An unfinished batch at the end
 * (a crash during a write) is cut off and reported on stderr. A damaged log (see qlog_damaged)
 * is copied to `<path>.damaged-<unix time>` first, read around its unreadable parts (every
 * readable committed record is kept), reported on stderr and rewritten; when the copy cannot
 * be written it is not opened. On failure returns -1 and, when `err` is given, a message in
 * it. */
int qlog_open(struct qlog **out, const char *path, const struct qlog_params *p, char *err,
              size_t errlen);

/* Hands the slow file work of a rewrite (the flushes of its file, the close of the old log, the
 * directory's flush without --fsync) to `submit` from now on (the worker pool), so that a
 * commit never waits for it; without it, it runs in qlog_commit. */
void qlog_set_submit(struct qlog *q, store_submit_fn submit, void *ctx);

/* Returns where a rewrite of the log stands. */
enum qlog_rewrite_state qlog_rewrite_state(const struct qlog *q);

/* Returns true when the log was damaged at open (more than a torn end was wrong): the
 * messages and the ids of its unreadable parts are lost, so its next id may be too low. */
bool qlog_damaged(const struct qlog *q);

/* Returns the id of the store this log belongs to, or NULL when it records none. */
const char *qlog_store_id(const struct qlog *q);

/* Records that the log belongs to store `id` (QLOG_STORE_ID_LEN characters); durable at the
 * next qlog_commit, and kept by every rewrite. */
int qlog_set_store_id(struct qlog *q, const char *id);

/* Writes the pending batch and frees everything; a rewrite not finished is dropped (the log
 * holds everything). NULL is allowed. */
void qlog_close(struct qlog *q);

/* When `on`, every batch with a new message is flushed to the disk (fdatasync) before
 * qlog_commit returns, so it survives a power loss; otherwise it survives a crash of the
 * process. A batch of acknowledgements alone is not flushed (a power loss may bring those
 * messages back, to be delivered again). During a rewrite the flush is of the old log, which
 * is the log until the rename; the new file takes over only once it is on the disk whole. */
void qlog_set_fsync(struct qlog *q, bool on);

/* Writes the batch of queue changes made since the last call, then moves a rewrite on by one
 * step (a slice of the copy, or putting the flushed copy in place); a rewrite that fails is
 * logged and dropped, the log kept. Returns 0, or -1 when the batch was lost: then it is undone
 * in memory too (its ids are not given out again). */
int qlog_commit(struct qlog *q);

/* Returns the last failure's description; never NULL. */
const char *qlog_error(const struct qlog *q);

/* Queues a message for `recipient` and returns its id (greater than any id before). */
int qlog_push(struct qlog *q, const char *sender, const char *recipient, int64_t sent_at,
              const char *body, size_t body_len, int64_t *id);

/* Queues a message under a given id (importing a queue from elsewhere); the id must be above
 * every id the log has given. */
int qlog_push_with_id(struct qlog *q, int64_t id, const char *sender, const char *recipient,
                      int64_t sent_at, const char *body, size_t body_len);

/* Makes the next id at least `next_id` (ids below it were given elsewhere). */
int qlog_raise_next_id(struct qlog *q, int64_t next_id);

/* Returns the id the next message will get. */
int64_t qlog_next_id(const struct qlog *q);

/* Calls `fn` for each message queued for `recipient` with an id above `after_id`, in id
 * order, at most `limit` of them (0: no limit). A non-zero return from `fn` stops the walk. */
int qlog_load(struct qlog *q, const char *recipient, int64_t after_id, size_t limit,
              store_msg_fn fn, void *ctx);

/* Removes the messages queued for `recipient` with ids up to `up_to_id`. */
int qlog_ack(struct qlog *q, const char *recipient, int64_t up_to_id);

/* Returns the number of messages queued for `recipient`. */
int64_t qlog_count(const struct qlog *q, const char *recipient);

/* Sums the waiting messages of every recipient into `*messages` and their sender and body
 * bytes into `*bytes` (one step per recipient ever queued for). */
void qlog_totals(const struct qlog *q, int64_t *messages, uint64_t *bytes);

#endif
