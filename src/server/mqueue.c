/* Waiting messages in blocks; see mqueue.h. A block holds records back to back, each
 * 8-byte aligned; blocks grow from MQUEUE_FIRST_BLOCK by doubling up to MQUEUE_MAX_BLOCK (or
 * one record, when larger). */
#include "server/mqueue.h"

#include <stdlib.h>
#include <string.h>

#define MQUEUE_FIRST_BLOCK 512u
#define MQUEUE_MAX_BLOCK (64u << 10)

struct mqueue_block {
    struct mqueue_block *next;
    uint32_t used;
    uint32_t cap;
    _Alignas(8) unsigned char data[];
};

static struct mqueue_msg *msg_at(const struct mqueue_block *b, uint32_t off)
{
    return (struct mqueue_msg *)(void *)(b->data + off);
}

/* Bytes a record with these lengths takes, or 0 when it cannot be stored. */
static size_t record_size(size_t sender_len, size_t body_len)
{
    size_t n = offsetof(struct mqueue_msg, text) + sender_len + body_len + 2;
    n = (n + 7) & ~(size_t)7;
    return n > UINT32_MAX ? 0 : n;
}

/* Returns a block with room for `need` bytes at the tail, allocating one; NULL when memory ran
 * out. */
static struct mqueue_block *tail_with_room(struct mqueue *mq, size_t need)
{
    struct mqueue_block *t = mq->tail;
    if (t && t->cap - t->used >= need)
        return t;
    size_t cap = t ? (size_t)t->cap * 2 : MQUEUE_FIRST_BLOCK;
    if (cap > MQUEUE_MAX_BLOCK)
        cap = MQUEUE_MAX_BLOCK;
    if (cap < need)
        cap = need;
    struct mqueue_block *b = malloc(sizeof *b + cap);
    if (!b)
        return NULL;
    b->next = NULL;
    b->used = 0;
    b->cap = (uint32_t)cap;
    if (t) {
        t->next = b;
    } else {
        mq->first = mq->head = b;
        mq->head_off = 0;
    }
    mq->tail = b;
    return b;
}

int mqueue_push(struct mqueue *mq, int64_t id, int64_t sent_at, const char *sender,
                size_t sender_len, const char *body, size_t body_len, struct mqueue_mark *undo)
{
    size_t need = record_size(sender_len, body_len);
    if (need == 0 || sender_len > UINT16_MAX)
        return -1;
    *undo =
        (struct mqueue_mark){mq->tail, mq->tail ? mq->tail->used : 0, mq->count, mq->text_bytes};
    struct mqueue_block *b = tail_with_room(mq, need);
    if (!b)
        return -1;
    struct mqueue_msg *m = msg_at(b, b->used);
    m->id = id;
    m->sent_at = sent_at;
    m->body_len = (uint32_t)body_len;
    m->size = (uint32_t)need;
    m->sender_len = (uint16_t)sender_len;
    memcpy(m->text, sender, sender_len);
    m->text[sender_len] = '\0';
    if (body_len)
        memcpy(m->text + sender_len + 1, body, body_len);
    m->text[sender_len + 1 + body_len] = '\0';
    b->used += (uint32_t)need;
    mq->count++;
    mq->text_bytes += sender_len + body_len;
    return 0;
}

void mqueue_unpush(struct mqueue *mq, const struct mqueue_mark *undo)
{
    struct mqueue_block *t = mq->tail;
    if (t != undo->block) { /* the push took a new block */
        free(t);
        if (undo->block) {
            undo->block->next = NULL;
            mq->tail = undo->block;
        } else {
            mq->first = mq->head = mq->tail = NULL;
            mq->head_off = 0;
        }
    }
    if (mq->tail)
        mq->tail->used = undo->off;
    mq->count = undo->count;
    mq->text_bytes = undo->text_bytes;
    mq->cursor = NULL;
}

int64_t mqueue_cut(struct mqueue *mq, int64_t up_to_id, struct mqueue_mark *undo)
{
    *undo = (struct mqueue_mark){mq->head, mq->head_off, mq->count, mq->text_bytes};
    struct mqueue_block *b = mq->head;
    uint32_t off = mq->head_off;
    int64_t n = 0;
    while (b) {
        if (off >= b->used) {
            if (!b->next)
                break;
            b = b->next;
            off = 0;
            continue;
        }
        const struct mqueue_msg *m = msg_at(b, off);
        if (m->id > up_to_id)
            break;
        off += m->size;
        mq->text_bytes -= m->sender_len + m->body_len;
        n++;
    }
    mq->head = b;
    mq->head_off = off;
    mq->count -= n;
    if (mq->cursor && up_to_id >= mq->cursor_after)
        mq->cursor = NULL; /* the front may have passed it */
    return n;
}

void mqueue_uncut(struct mqueue *mq, const struct mqueue_mark *undo)
{
    mq->head = undo->block;
    mq->head_off = undo->off;
    mq->count = undo->count;
    mq->text_bytes = undo->text_bytes;
}

void mqueue_release(struct mqueue *mq)
{
    if (mq->count == 0) {
        mqueue_free(mq);
        return;
    }
    while (mq->first != mq->head) {
        struct mqueue_block *next = mq->first->next;
        free(mq->first);
        mq->first = next;
    }
}

/* Returns the message at (*b, *off), past the ends of blocks, and moves the place after it; or
 * NULL at the end of the queue. */
static const struct mqueue_msg *step(struct mqueue_block **b, uint32_t *off)
{
    while (*b && *off >= (*b)->used) {
        *b = (*b)->next;
        *off = 0;
    }
    if (!*b)
        return NULL;
    const struct mqueue_msg *m = msg_at(*b, *off);
    *off += m->size;
    return m;
}

void mqueue_walk(struct mqueue *mq, int64_t after_id, size_t limit,
                 int (*fn)(void *ctx, const struct mqueue_msg *m), void *ctx)
{
    struct mqueue_block *b = mq->head;
    uint32_t off = mq->head_off;
    if (mq->cursor && after_id >= mq->cursor_after) {
        b = mq->cursor;
        off = mq->cursor_off;
    }
    size_t n = 0;
    const struct mqueue_msg *m;
    while ((limit == 0 || n < limit) && (m = step(&b, &off))) {
        if (m->id <= after_id)
            continue;
        n++;
        mq->cursor = b;
        mq->cursor_off = off;
        mq->cursor_after = m->id;
        if (fn(ctx, m) != 0)
            break;
    }
}

/* Returns the first waiting message, or NULL when there is none. */
static const struct mqueue_msg *front(const struct mqueue *mq)
{
    struct mqueue_block *b = mq->count ? mq->head : NULL;
    uint32_t off = mq->head_off;
    return step(&b, &off);
}

int mqueue_walk_from(struct mqueue *mq, struct mqueue_pos *pos,
                     int (*fn)(void *ctx, const struct mqueue_msg *m), void *ctx)
{
    const struct mqueue_msg *first = front(mq);
    if (!first)
        return 0;
    /* While the first message is at or before the one last passed, that one is still queued and
     * its block allocated; otherwise every message is new to this walk. */
    struct mqueue_block *b = pos->block;
    uint32_t off = pos->off;
    if (!b || first->id > pos->after) {
        b = mq->head;
        off = mq->head_off;
    }
    const struct mqueue_msg *m;
    while ((m = step(&b, &off))) {
        *pos = (struct mqueue_pos){b, off, m->id};
        if (fn(ctx, m) != 0)
            return 1;
    }
    return 0;
}

void mqueue_free(struct mqueue *mq)
{
    struct mqueue_block *b = mq->first;
    while (b) {
        struct mqueue_block *next = b->next;
        free(b);
        b = next;
    }
    memset(mq, 0, sizeof *mq);
}
