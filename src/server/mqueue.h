/* One recipient's waiting messages, in arrival order, stored back to back in a few growing
 * blocks of memory (no allocation per message, and walking them reads memory in order).
 * Every change can be taken back until mqueue_release: the queue log undoes a batch the disk
 * refused. Not thread-safe. */
#ifndef PARLEY_MQUEUE_H
#define PARLEY_MQUEUE_H

#include <stddef.h>
#include <stdint.h>

/* One stored message; `text` holds the sender, a NUL, the body and a NUL. */
struct mqueue_msg {
    int64_t id;
    int64_t sent_at;
    uint32_t body_len;
    uint32_t size; /* bytes this record takes in its block */
    uint16_t sender_len;
    char text[];
};

struct mqueue_block;

/* A place in a queue and what the queue held then, to take a change back. */
struct mqueue_mark {
    struct mqueue_block *block;
    uint32_t off;
    int64_t count;
    uint64_t text_bytes;
};

/* The queue; zero-initialised is empty. */
struct mqueue {
    struct mqueue_block *first; /* oldest block still allocated */
    struct mqueue_block *head;  /* block of the first waiting message */
    struct mqueue_block *tail;
    uint32_t head_off;
    int64_t count;
    uint64_t text_bytes;         /* sender and body bytes of the waiting messages */
    struct mqueue_block *cursor; /* where the last walk stopped, or NULL */
    uint32_t cursor_off;
    int64_t cursor_after; /* every message before the cursor has an id up to this */
};

/* Appends a message (ids must increase). `undo` receives what mqueue_unpush needs. Returns 0,
 * or -1 when memory ran out (the queue is unchanged). */
int mqueue_push(struct mqueue *mq, int64_t id, int64_t sent_at, const char *sender,
                size_t sender_len, const char *body, size_t body_len, struct mqueue_mark *undo);

/* Takes back the last push, given its `undo`. */
void mqueue_unpush(struct mqueue *mq, const struct mqueue_mark *undo);

/* Removes the messages with ids up to `up_to_id` from the front; returns how many. `undo`
 * receives what mqueue_uncut needs. Their memory stays until mqueue_release. */
int64_t mqueue_cut(struct mqueue *mq, int64_t up_to_id, struct mqueue_mark *undo);

/* Takes back the last cut, given its `undo`. */
void mqueue_uncut(struct mqueue *mq, const struct mqueue_mark *undo);

/* Frees the memory of removed messages; changes before it can no longer be taken back. */
void mqueue_release(struct mqueue *mq);

/* Calls `fn` for each message with an id above `after_id`, in order, at most `limit` of them
 * (0: no limit), until it returns non-zero. A walk that goes on from where the previous one
 * stopped does not pass the earlier messages again. */
void mqueue_walk(struct mqueue *mq, int64_t after_id, size_t limit,
                 int (*fn)(void *ctx, const struct mqueue_msg *m), void *ctx);

/* A place in a queue that a caller keeps between walks of its own (mqueue_walk_from), apart
 * from the queue's cursor, which every mqueue_walk moves. Zero-initialised it is the front. It
 * stays usable across pushes, cuts, releases and undos, as long as the message it was last
 * moved past is not taken back (mqueue_unpush). */
struct mqueue_pos {
    struct mqueue_block *block; /* block of the message last passed, or NULL */
    uint32_t off;               /* just after that message */
    int64_t after;              /* its id */
};

/* Calls `fn` for each message after `pos`, in order, moving `pos` past each, until `fn` returns
 * non-zero. Messages cut since are not passed; when every message `pos` had passed is gone, the
 * walk starts at the front. Returns 1 when `fn` stopped it, 0 when it passed the last message. */
int mqueue_walk_from(struct mqueue *mq, struct mqueue_pos *pos,
                     int (*fn)(void *ctx, const struct mqueue_msg *m), void *ctx);

/* Frees everything; the queue is empty afterwards. */
void mqueue_free(struct mqueue *mq);

#endif
