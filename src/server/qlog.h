/* The message queue of the store: every queued direct message and every acknowledgement is a
 * record appended to one log file, and the queues themselves live in memory, one per
 * recipient, rebuilt from the log at open. Writes are grouped: they take effect in memory at
 * once and reach the file together at qlog_commit (one write, and one fdatasync when asked),
 * which the server calls once per event-loop iteration before any reply leaves. A batch that
 * cannot be written is undone in memory too, so memory always equals the file. The log is
 * rewritten with only the live messages when it has grown well past them.
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

/* Opens (creating when missing) the log at `path` and loads its queues. An unfinished batch
 * at the end (a crash during a write) is cut off and reported on stderr. A damaged log (see
 * qlog_damaged) is copied to `<path>.damaged-<unix time>` first, read around its unreadable
 * parts (every readable committed record is kept), reported on stderr and rewritten; when the
 * copy cannot be written it is not opened. On failure returns -1 and, when `err` is given, a
 * message in it. */
int qlog_open(struct qlog **out, const char *path, char *err, size_t errlen);

/* Returns true when the log was damaged at open (more than a torn end was wrong): the
 * messages and the ids of its unreadable parts are lost, so its next id may be too low. */
bool qlog_damaged(const struct qlog *q);

/* Returns the id of the store this log belongs to, or NULL when it records none. */
const char *qlog_store_id(const struct qlog *q);

/* Records that the log belongs to store `id` (QLOG_STORE_ID_LEN characters); durable at the
 * next qlog_commit, and kept by every rewrite. */
int qlog_set_store_id(struct qlog *q, const char *id);

/* Writes the pending batch and frees everything. NULL is allowed. */
void qlog_close(struct qlog *q);

/* When `on`, every batch with a new message is flushed to the disk (fdatasync) before
 * qlog_commit returns, so it survives a power loss; otherwise it survives a crash of the
 * process. A batch of acknowledgements alone is not flushed (a power loss may bring those
 * messages back, to be delivered again). */
void qlog_set_fsync(struct qlog *q, bool on);

/* Writes the batch of queue changes made since the last call. Returns 0, or -1 when the batch
 * was lost: then it is undone in memory too (its ids are not given out again). */
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
