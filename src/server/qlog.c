/* The message queue as an append-only log with the queues in memory; see qlog.h.
 *
 * File: the 8 bytes "PARLEYQ1", then records. A record is a 4-byte payload length, the CRC-32C
 * of the payload (both little-endian), then the payload, whose first byte is its type:
 *   PUSH    id:i64 sent_at:i64 recipient_len:u16 sender_len:u16 body_len:u32
 *           recipient sender body
 *   ACK     up_to_id:i64 recipient_len:u16 recipient
 *   NEXT_ID next_id:i64            (ids below it are used; written first after a rewrite)
 *   STORE_ID id:32 bytes           (the store this log belongs to; written again by a rewrite)
 *   COMMIT                         (ends a batch)
 * At open, only records followed by a COMMIT are applied; an unfinished batch at the end (a
 * crash during a write, or what a failed write left) is cut off. Damage anywhere else (a
 * record whose check fails but after which whole records follow, or a whole record at the end
 * that no interrupted write leaves) never deletes a committed record: the file is copied to
 * parley.queue.damaged-<time>, the unreadable stretches are skipped, the rest is applied and
 * the log is rewritten. */
#include "server/qlog.h"

#include "common/fileio.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/strmap.h"
#include "server/mqueue.h"
#include "server/log.h"

#define QLOG_MAGIC "PARLEYQ1"
#define QLOG_MAGIC_LEN 8
#define QLOG_REC_HEAD 8                /* payload length + CRC */
#define QLOG_MAX_PAYLOAD (16u << 20)   /* larger lengths are corruption */
#define QLOG_COMPACT_MIN (16ull << 20) /* never rewrite a log smaller than this */
#define QLOG_COMPACT_RATIO 4           /* rewrite when the file is this many times the live data */
#define QLOG_BATCH_KEEP (1u << 20)     /* a batch buffer larger than this is freed after use */
#define QLOG_PUSH_FIXED 25             /* type, id, sent_at, three lengths */
#define QLOG_ACK_FIXED 11              /* type, up_to_id, recipient length */
#define QLOG_NEXT_ID_LEN 9
#define QLOG_QUEUE_STEP 64       /* bytes a queue counts for in a slice of a rewrite */
#define QLOG_FREE_STEP (8 << 20) /* the old log is freed in steps of this many bytes */
#define QLOG_MAX_COPIES 100      /* names tried for the copy of a damaged log */
#define QLOG_MAX_REPORTED 10     /* unreadable stretches logged one by one */

enum rec_type { REC_PUSH = 1, REC_ACK = 2, REC_NEXT_ID = 3, REC_COMMIT = 4, REC_STORE_ID = 5 };

/* The queue of one recipient. Queues are never freed before the log closes. */
struct qqueue {
    struct qqueue *all_next; /* the one made before it: the list is newest first */
    uint64_t seq;            /* the order it was made in */
    struct mqueue mq;
    uint16_t name_len;
    char name[];
};

enum undo_kind { UNDO_PUSH, UNDO_ACK };

/* How to take back one change of the current batch. */
struct undo {
    enum undo_kind kind;
    struct qqueue *queue;
    struct mqueue_mark mark;
};

/* Records being gathered before they are written: the batch, the copy of a rewrite. */
struct buf {
    unsigned char *p;
    size_t len, cap;
};

/* A flush of a rewrite's file handed to a worker. It owns a duplicate of the descriptor, so
 * the log may drop the rewrite, or close, while it runs. */
struct flush {
    struct qlog *q; /* NULL once the log no longer waits for it */
    int fd;
    uint64_t size; /* bytes of the file it covers */
    int err;       /* errno of its fdatasync, or 0 */
};

/* A rewrite of the log (see "the rewrite" below). */
struct rewrite {
    enum qlog_rewrite_state state; /* changed by rewrite_enter only */
    int fd;                        /* <path>.new, or -1 */
    uint64_t size;                 /* bytes written to it */
    uint64_t synced;               /* bytes a finished flush covered */
    uint64_t copy_end;             /* SYNCING: its size when the copy was whole */
    int flush_err;                 /* errno of a flush that failed, or 0 */
    struct flush *flush;           /* the flush handed off and not done, or NULL */
    struct qqueue *queue;          /* COPYING: the queue being copied; NULL when all are */
    struct mqueue_pos pos;         /* where in it */
    size_t pushed;                 /* bytes the batch pushed to it: the next slice adds them */
    uint64_t first_new;            /* a queue with this seq or above was made during it */
    struct buf out;                /* for the file: the batch's mirror, then a slice */
};

struct qlog {
    int fd;
    char *path;
    char *new_path; /* <path>.new, the file of a rewrite */
    bool fsync;
    uint64_t file_size;     /* bytes of committed records (the file may hold more) */
    uint64_t live_bytes;    /* what the live messages take as records */
    uint64_t compact_floor; /* do not try a rewrite below this file size */
    uint64_t compact_min;   /* the floor after a rewrite; it rises by this after a failure */
    size_t slice;           /* bytes a commit copies in a rewrite */
    size_t sync_every;      /* bytes a rewrite writes between two flushes handed off */
    store_submit_fn submit; /* hands the flushes of a rewrite off the loop, or NULL */
    void *submit_ctx;
    struct rewrite rw;
    int64_t next_id;
    struct strmap queues;
    struct qqueue *all;
    uint64_t next_seq;
    struct buf batch;
    bool batch_pushes; /* the batch holds a new message (it needs the flush of --fsync) */
    struct undo *undo;
    size_t undo_len, undo_cap;
    bool damaged;                         /* the file was damaged when opened */
    char store_id[QLOG_STORE_ID_LEN + 1]; /* empty until the log holds one */
    char err[512];
};

/* ---- encoding ---- */

/* CRC-32C (Castagnoli): the SSE4.2 instruction where the CPU has it, a table elsewhere. */
static uint32_t crc_table[256];
static uint32_t (*crc_fn)(uint32_t c, const unsigned char *p, size_t n);

static uint32_t crc32c_table(uint32_t c, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t c, const unsigned char *p,
                                                               size_t n)
{
    uint64_t c64 = c;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c64 = __builtin_ia32_crc32di(c64, w);
    }
    c = (uint32_t)c64;
    for (; n > 0; n--, p++)
        c = __builtin_ia32_crc32qi(c, *p);
    return c;
}
#endif

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0x82F63B78u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
    crc_fn = crc32c_table;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2"))
        crc_fn = crc32c_sse42;
#endif
}

/* CRC-32C of `n` bytes. */
static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    return crc_fn(0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu;
}

static unsigned char *put_u16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    return p + 2;
}

static unsigned char *put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return p + 4;
}

static unsigned char *put_i64(unsigned char *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(u >> (8 * i));
    return p + 8;
}

static uint16_t get_u16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int64_t get_i64(const unsigned char *p)
{
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--)
        u = u << 8 | p[i];
    return (int64_t)u;
}

/* ---- failures ---- */

static int fail(struct qlog *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct qlog *q, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->err, sizeof q->err, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- the queues in memory ---- */

/* Bytes the waiting messages of `queue` take as PUSH records. */
static uint64_t queue_log_bytes(const struct qqueue *queue)
{
    return (uint64_t)queue->mq.count * (QLOG_REC_HEAD + QLOG_PUSH_FIXED + queue->name_len) +
           queue->mq.text_bytes;
}

static struct qqueue *queue_find(const struct qlog *q, const char *name, size_t len)
{
    return strmap_get(&q->queues, name, len);
}

/* Returns the queue of `name`, creating it; NULL when memory ran out. */
static struct qqueue *queue_get(struct qlog *q, const char *name, size_t len)
{
    struct qqueue *queue = queue_find(q, name, len);
    if (queue)
        return queue;
    queue = calloc(1, sizeof *queue + len + 1);
    if (!queue)
        return NULL;
    memcpy(queue->name, name, len);
    queue->name_len = (uint16_t)len;
    queue->seq = q->next_seq++;
    if (strmap_put(&q->queues, queue->name, queue) != 0) {
        free(queue);
        return NULL;
    }
    queue->all_next = q->all;
    q->all = queue;
    return queue;
}

/* Appends a message to `queue`, recording how to take it back in `undo`. */
static int queue_push(struct qlog *q, struct qqueue *queue, int64_t id, int64_t sent_at,
                      const char *sender, size_t sender_len, const char *body, size_t body_len,
                      struct mqueue_mark *undo)
{
    uint64_t before = queue_log_bytes(queue);
    if (mqueue_push(&queue->mq, id, sent_at, sender, sender_len, body, body_len, undo) != 0)
        return -1;
    q->live_bytes += queue_log_bytes(queue) - before;
    return 0;
}

/* Removes the messages with ids up to `up_to_id` from `queue`; returns how many. */
static int64_t queue_cut(struct qlog *q, struct qqueue *queue, int64_t up_to_id,
                         struct mqueue_mark *undo)
{
    uint64_t before = queue_log_bytes(queue);
    int64_t n = mqueue_cut(&queue->mq, up_to_id, undo);
    q->live_bytes -= before - queue_log_bytes(queue);
    return n;
}

/* ---- the batch ---- */

/* Makes room for `n` more bytes in `b`; returns where they go, or NULL. */
static unsigned char *buf_room(struct buf *b, size_t n)
{
    size_t need = b->len + n;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < need)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p)
            return NULL;
        b->p = p;
        b->cap = cap;
    }
    return b->p + b->len;
}

/* Empties `b`, freeing its memory when it grew large. */
static void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->cap > QLOG_BATCH_KEEP) {
        free(b->p);
        b->p = NULL;
        b->cap = 0;
    }
}

/* Makes room for a record of `payload_len` bytes; returns where its payload goes, or NULL. */
static unsigned char *record_begin(struct buf *b, size_t payload_len)
{
    unsigned char *head = buf_room(b, QLOG_REC_HEAD + payload_len);
    return head ? head + QLOG_REC_HEAD : NULL;
}

/* Seals the record whose payload record_begin returned. */
static void record_end(struct buf *b, size_t payload_len)
{
    unsigned char *head = b->p + b->len;
    put_u32(head, (uint32_t)payload_len);
    put_u32(head + 4, crc32_of(head + QLOG_REC_HEAD, payload_len));
    b->len += QLOG_REC_HEAD + payload_len;
}

static int undo_reserve(struct qlog *q)
{
    if (q->undo_len < q->undo_cap)
        return 0;
    size_t cap = q->undo_cap ? q->undo_cap * 2 : 64;
    struct undo *u = realloc(q->undo, cap * sizeof *u);
    if (!u)
        return -1;
    q->undo = u;
    q->undo_cap = cap;
    return 0;
}

/* Writes the payload of a PUSH record at `p`. */
static void encode_push_fields(unsigned char *p, const struct qqueue *queue, int64_t id,
                               int64_t sent_at, const char *sender, size_t sender_len,
                               const char *body, size_t body_len)
{
    *p++ = REC_PUSH;
    p = put_i64(p, id);
    p = put_i64(p, sent_at);
    p = put_u16(p, queue->name_len);
    p = put_u16(p, (uint16_t)sender_len);
    p = put_u32(p, (uint32_t)body_len);
    memcpy(p, queue->name, queue->name_len);
    p += queue->name_len;
    memcpy(p, sender, sender_len);
    if (body_len)
        memcpy(p + sender_len, body, body_len);
}

static void encode_push(unsigned char *p, const struct qqueue *queue, const struct mqueue_msg *m)
{
    encode_push_fields(p, queue, m->id, m->sent_at, m->text, m->sender_len,
                       m->text + m->sender_len + 1, m->body_len);
}

/* Adds a NEXT_ID record to `b`. */
static int add_next_id(struct qlog *q, struct buf *b)
{
    unsigned char *p = record_begin(b, QLOG_NEXT_ID_LEN);
    if (!p)
        return fail(q, "out of memory");
    p[0] = REC_NEXT_ID;
    put_i64(p + 1, q->next_id);
    record_end(b, QLOG_NEXT_ID_LEN);
    return 0;
}

/* Adds a STORE_ID record to `b` when the log has a store id. */
static int add_store_id(struct qlog *q, struct buf *b)
{
    if (!q->store_id[0])
        return 0;
    unsigned char *p = record_begin(b, 1 + QLOG_STORE_ID_LEN);
    if (!p)
        return fail(q, "out of memory");
    p[0] = REC_STORE_ID;
    memcpy(p + 1, q->store_id, QLOG_STORE_ID_LEN);
    record_end(b, 1 + QLOG_STORE_ID_LEN);
    return 0;
}

/* Adds a COMMIT record to `b`. */
static int add_commit(struct qlog *q, struct buf *b)
{
    unsigned char *p = record_begin(b, 1);
    if (!p)
        return fail(q, "out of memory");
    p[0] = REC_COMMIT;
    record_end(b, 1);
    return 0;
}

/* Takes back every change of the batch, newest first. */
static void batch_undo(struct qlog *q)
{
    while (q->undo_len > 0) {
        struct undo *u = &q->undo[--q->undo_len];
        struct qqueue *queue = u->queue;
        uint64_t before = queue_log_bytes(queue);
        if (u->kind == UNDO_PUSH)
            mqueue_unpush(&queue->mq, &u->mark);
        else
            mqueue_uncut(&queue->mq, &u->mark);
        q->live_bytes = q->live_bytes - before + queue_log_bytes(queue);
    }
}

/* Frees what the committed batch removed and empties the batch. */
static void batch_done(struct qlog *q)
{
    for (size_t i = 0; i < q->undo_len; i++)
        if (q->undo[i].kind == UNDO_ACK)
            mqueue_release(&q->undo[i].queue->mq);
    q->undo_len = 0;
    q->batch_pushes = false;
    buf_reset(&q->batch);
}

/* ---- the file ---- */

/* ---- the rewrite ----
 *
 * When the log has grown well past its live messages they are copied to <path>.new, a slice
 * per commit (q->slice bytes), by a walk down the list of queues (newest first) that keeps
 * its place: the queue being copied and the position in it. The log stays the log meanwhile:
 * every batch is written to it first, and what the batch changed in the part already copied
 * is mirrored to the new file, with the batch's COMMIT, so that each change reaches it once and
 * in order:
 * - a PUSH to a queue copied whole is mirrored; one to the queue being copied, or to one not
 *   reached yet, is not: the walk copies it when it gets there (the next slice is larger by
 *   what the batch pushed to the queue being copied, so that pushes cannot outrun the walk);
 * - an ACK to a queue whose copy has begun is mirrored (the part copied loses what it took;
 *   the walk does not see it in the rest); one to a queue not reached yet is not;
 * - a queue made during the rewrite goes to the front of the list, behind the walk: it counts
 *   as copied whole (asserted);
 * - NEXT_ID and STORE_ID records are always mirrored.
 * A batch that is taken back takes its mirror back. When the walk is done (NEXT_ID, COMMIT),
 * the file is flushed off the loop (q->submit; also every q->sync_every bytes while copying)
 * while commits go on writing to both files; the first commit after a flush covered the whole
 * copy renames the new file over the log and writes only there from then on (the old log's
 * close, and without --fsync the directory's flush, go off the loop too). Any failure
 * drops the new file and keeps the log, and the next try waits until the log grew by
 * compact_min. A crash leaves the old log whole (a stale <path>.new is removed at open), or the
 * new one, renamed only once flushed. */

/* The only place the state changes. */
static void rewrite_enter(struct qlog *q, enum qlog_rewrite_state to)
{
    struct rewrite *rw = &q->rw;
    assert((rw->state == QLOG_REWRITE_IDLE && to == QLOG_REWRITE_COPYING) ||
           (rw->state == QLOG_REWRITE_COPYING && to == QLOG_REWRITE_SYNCING) ||
           (rw->state != QLOG_REWRITE_IDLE && to == QLOG_REWRITE_IDLE));
    if (to == QLOG_REWRITE_SYNCING)
        rw->copy_end = rw->size;
    rw->state = to;
}

/* True when the rewrite has copied `queue` whole, so that its new messages go to the new file
 * as they come. */
static bool copied_whole(const struct qlog *q, const struct qqueue *queue)
{
    const struct rewrite *rw = &q->rw;
    if (rw->state != QLOG_REWRITE_COPYING)
        return rw->state == QLOG_REWRITE_SYNCING;
    bool whole = !rw->queue || queue->seq > rw->queue->seq; /* ahead of the walk in the list */
    assert(whole || queue->seq < rw->first_new);
    return whole;
}

/* True when the rewrite has begun to copy `queue`, or copied it whole. */
static bool copy_begun(const struct qlog *q, const struct qqueue *queue)
{
    return copied_whole(q, queue) || (q->rw.state == QLOG_REWRITE_COPYING && queue == q->rw.queue);
}

/* Drops the rewrite: its file goes, the log stays as it is. */
static void rewrite_drop(struct qlog *q)
{
    struct rewrite *rw = &q->rw;
    if (rw->state == QLOG_REWRITE_IDLE)
        return;
    if (rw->flush)
        rw->flush->q = NULL; /* its descriptor is its own: it ends by itself */
    rw->flush = NULL;
    close(rw->fd);
    rw->fd = -1;
    unlink(q->new_path);
    buf_reset(&rw->out);
    rewrite_enter(q, QLOG_REWRITE_IDLE);
}

/* Drops a rewrite that failed; the next try waits until the log grew by compact_min. Returns
 * -1. */
static int rewrite_abandon(struct qlog *q)
{
    rewrite_drop(q);
    q->compact_floor = q->file_size + q->compact_min;
    return -1;
}

/* Copies the batch's records from `from` on to the new file's buffer. */
static void mirror(struct qlog *q, size_t from)
{
    size_t n = q->batch.len - from;
    unsigned char *p = buf_room(&q->rw.out, n);
    if (!p) {
        fail(q, "rewriting %s: out of memory", q->path);
        log_error("queue log: %s; keeping the old log", q->err);
        rewrite_abandon(q);
        return;
    }
    memcpy(p, q->batch.p + from, n);
    q->rw.out.len += n;
}

/* Mirrors the PUSH to `queue` the batch holds from `from` on when the queue was copied whole;
 * one to the queue being copied makes the next slice larger by as much instead. */
static void mirror_push(struct qlog *q, const struct qqueue *queue, size_t from)
{
    if (copied_whole(q, queue))
        mirror(q, from);
    else if (q->rw.state == QLOG_REWRITE_COPYING && queue == q->rw.queue)
        q->rw.pushed += q->batch.len - from;
}

/* Runs on a worker: flushes the new file. */
static void flush_run(void *arg)
{
    struct flush *f = arg;
    f->err = fdatasync(f->fd) == 0 ? 0 : errno;
}

/* Runs on the loop when the flush is done: tells the rewrite, unless it was dropped. */
static void flush_done(void *arg)
{
    struct flush *f = arg;
    if (f->q) {
        struct rewrite *rw = &f->q->rw;
        rw->flush = NULL;
        if (f->err)
            rw->flush_err = f->err;
        else
            rw->synced = f->size;
    }
    close(f->fd);
    free(f);
}

/* Starts a flush of the new file as it is now: handed off, or run here when the log has no
 * submit function. A hand-off refused (a full queue) is tried again at the next commit. */
static int flush_start(struct qlog *q)
{
    struct rewrite *rw = &q->rw;
    struct flush *f = malloc(sizeof *f);
    int fd = f ? fcntl(rw->fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (fd < 0) {
        int e = f ? errno : ENOMEM;
        free(f);
        return fail(q, "flushing %s: %s", q->new_path, strerror(e));
    }
    *f = (struct flush){q, fd, rw->size, 0};
    if (!q->submit) {
        flush_run(f);
        flush_done(f);
        return 0;
    }
    rw->flush = f;
    if (q->submit(q->submit_ctx, flush_run, flush_done, f) != 0) {
        rw->flush = NULL;
        close(fd);
        free(f);
    }
    return 0;
}

/* Starts a rewrite: the new file with the magic, NEXT_ID and STORE_ID; the walk at the newest
 * queue. */
static int rewrite_start(struct qlog *q)
{
    struct rewrite *rw = &q->rw;
    int fd = open(q->new_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail(q, "creating %s: %s", q->new_path, strerror(errno));
    assert(!rw->flush && rw->out.len == 0);
    rw->fd = fd;
    rw->size = rw->synced = 0;
    rw->flush_err = 0;
    rw->queue = q->all;
    rw->pos = (struct mqueue_pos){0};
    rw->pushed = 0;
    rw->first_new = q->next_seq;
    rewrite_enter(q, QLOG_REWRITE_COPYING);
    unsigned char *p = buf_room(&rw->out, QLOG_MAGIC_LEN);
    if (!p)
        return fail(q, "out of memory");
    memcpy(p, QLOG_MAGIC, QLOG_MAGIC_LEN);
    rw->out.len += QLOG_MAGIC_LEN;
    if (add_next_id(q, &rw->out) != 0 || add_store_id(q, &rw->out) != 0)
        return -1;
    if (fileio_pwrite_all(fd, rw->out.p, rw->out.len, 0) != 0)
        return fail(q, "writing %s: %s", q->new_path, strerror(errno));
    rw->size = rw->out.len;
    buf_reset(&rw->out);
    return 0;
}

/* A slice of the copy being made. */
struct copy {
    struct qlog *q;
    const struct qqueue *queue;
    size_t budget; /* bytes the slice may take */
    size_t bytes;  /* counted towards it */
    bool nomem;
};

/* Adds one message to the slice; stops the walk when the slice is full. */
static int copy_one(void *ctx, const struct mqueue_msg *m)
{
    struct copy *c = ctx;
    struct buf *out = &c->q->rw.out;
    size_t len = QLOG_PUSH_FIXED + c->queue->name_len + m->sender_len + m->body_len;
    unsigned char *p = record_begin(out, len);
    if (!p) {
        c->nomem = true;
        return 1;
    }
    encode_push(p, c->queue, m);
    record_end(out, len);
    c->bytes += QLOG_REC_HEAD + len;
    return c->bytes >= c->budget;
}

/* Moves the walk on to the next queue down the list (an older one). */
static void next_queue(struct rewrite *rw)
{
    struct qqueue *next = rw->queue->all_next;
    assert(!next || next->seq < rw->queue->seq);
    rw->queue = next;
    rw->pos = (struct mqueue_pos){0};
}

/* Adds the next slice of live messages to the new file's buffer, from where the walk stopped
 * until the slice is full or every queue is copied; the slice that ends the walk ends with
 * NEXT_ID and COMMIT. */
static int copy_slice(struct qlog *q)
{
    struct rewrite *rw = &q->rw;
    struct copy c = {q, NULL, q->slice + rw->pushed, 0, false};
    rw->pushed = 0;
    while (rw->queue && !c.nomem && c.bytes < c.budget) {
        c.queue = rw->queue;
        if (mqueue_walk_from(&rw->queue->mq, &rw->pos, copy_one, &c) == 0) {
            next_queue(rw);
            c.bytes += QLOG_QUEUE_STEP;
        }
    }
    if (c.nomem)
        return fail(q, "rewriting %s: out of memory", q->path);
    if (!rw->queue && (add_next_id(q, &rw->out) != 0 || add_commit(q, &rw->out) != 0))
        return -1;
    return 0;
}

/* Writes to the new file what this commit gave it: the batch's mirror, sealed with a COMMIT,
 * and while copying the next slice. The slice that ends the walk ends the copy. */
static int rewrite_write(struct qlog *q)
{
    struct rewrite *rw = &q->rw;
    if (rw->out.len > 0 && add_commit(q, &rw->out) != 0)
        return -1;
    if (rw->state == QLOG_REWRITE_COPYING && copy_slice(q) != 0)
        return -1;
    if (rw->out.len > 0) {
        if (fileio_pwrite_all(rw->fd, rw->out.p, rw->out.len, (off_t)rw->size) != 0)
            return fail(q, "writing %s: %s", q->new_path, strerror(errno));
        rw->size += rw->out.len;
        buf_reset(&rw->out);
    }
    if (rw->state == QLOG_REWRITE_COPYING && !rw->queue)
        rewrite_enter(q, QLOG_REWRITE_SYNCING);
    return 0;
}

/* Runs `job(arg)` on a worker when the log can hand work off and the pool takes it, here
 * otherwise. */
static void off_loop(const struct qlog *q, void (*job)(void *arg), void *arg)
{
    if (!q->submit || q->submit(q->submit_ctx, job, NULL, arg) != 0)
        job(arg);
}

/* Runs on a worker: closes the old log, which no name refers to any more. Its last descriptor
 * going frees its blocks and pages (60 ms for 100 MB), in one journal transaction that a flush
 * on the loop (--fsync) would wait behind (25 ms); a few MB at a time, it waits for little. */
static void close_run(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct stat sb;
    if (fstat(fd, &sb) == 0)
        for (off_t size = sb.st_size; size > 0;) {
            size = size > QLOG_FREE_STEP ? size - QLOG_FREE_STEP : 0;
            if (ftruncate(fd, size) != 0)
                break;
        }
    close(fd);
}

/* Runs on a worker: makes the rename durable, and frees the path it is given. */
static void sync_dir_run(void *arg)
{
    fileio_sync_parent(arg); /* best effort: the data itself is flushed already */
    free(arg);
}

/* Makes the rename durable. With --fsync the next commit's flush counts only once it is, so it
 * is done here (the data before it is flushed: the journal has little to write). Without, no
 * commit waits for the disk, and the directory's flush, which waits for every block written
 * since the last one, goes to a worker (it took up to 350 ms on the loop under load). */
static void sync_rename(const struct qlog *q)
{
    char *path = q->fsync ? NULL : strdup(q->path);
    if (path)
        off_loop(q, sync_dir_run, path);
    else
        fileio_sync_parent(q->path); /* best effort, as above */
}

/* Puts the flushed new file in place of the log; from now on it is the log. */
static int rewrite_finish(struct qlog *q)
{
    struct rewrite *rw = &q->rw;
    assert(!rw->flush && rw->out.len == 0);
    /* With --fsync a commit's guarantee is about the log it was written to: the old one, which
     * stays the log until the rename, so nothing changes for a commit during a rewrite. What
     * was mirrored since the flush began must be on the disk in the new file before it takes
     * over; that tail is short (what came during one flush), and only --fsync waits for it. */
    if (q->fsync && rw->size > rw->synced && fdatasync(rw->fd) != 0)
        return fail(q, "flushing %s: %s", q->new_path, strerror(errno));
    if (rename(q->new_path, q->path) != 0)
        return fail(q, "renaming %s: %s", q->new_path, strerror(errno));
    sync_rename(q);
    off_loop(q, close_run, (void *)(intptr_t)q->fd);
    q->fd = rw->fd;
    q->file_size = rw->size;
    q->compact_floor = q->compact_min;
    rw->fd = -1;
    rewrite_enter(q, QLOG_REWRITE_IDLE);
    return 0;
}

/* Hands off a flush of the new file when one is due (while copying, every sync_every bytes,
 * and only when there is a submit function; once the copy is whole, until a flush covered it)
 * and puts the file in place once one has. */
static int rewrite_sync(struct qlog *q)
{
    struct rewrite *rw = &q->rw;
    bool due = rw->state == QLOG_REWRITE_SYNCING
                   ? rw->synced < rw->copy_end
                   : q->submit && rw->size - rw->synced >= q->sync_every;
    if (due && !rw->flush && flush_start(q) != 0)
        return -1;
    if (rw->flush_err)
        return fail(q, "flushing %s: %s", q->new_path, strerror(rw->flush_err));
    if (rw->state == QLOG_REWRITE_SYNCING && rw->synced >= rw->copy_end)
        return rewrite_finish(q);
    return 0;
}

/* True when the log has grown well past its live messages. */
static bool rewrite_due(const struct qlog *q)
{
    return q->file_size >= q->compact_floor && q->file_size >= QLOG_COMPACT_RATIO * q->live_bytes;
}

/* Moves the rewrite on after a commit: starts one when the log is due, writes this commit's
 * share to the new file and hands off or checks its flush. Returns 0, or -1 when it failed:
 * then it is dropped and the log kept. */
static int rewrite_step(struct qlog *q)
{
    if (q->rw.state == QLOG_REWRITE_IDLE && !rewrite_due(q))
        return 0;
    if ((q->rw.state == QLOG_REWRITE_IDLE && rewrite_start(q) != 0) || rewrite_write(q) != 0 ||
        rewrite_sync(q) != 0)
        return rewrite_abandon(q);
    return 0;
}

/* Rewrites the log whole, here and now (at open, before anything is served). */
static int rewrite_all(struct qlog *q)
{
    assert(q->rw.state == QLOG_REWRITE_IDLE && !q->submit);
    if (rewrite_start(q) != 0)
        return rewrite_abandon(q);
    while (q->rw.state != QLOG_REWRITE_IDLE)
        if (rewrite_write(q) != 0 || rewrite_sync(q) != 0)
            return rewrite_abandon(q);
    return 0;
}

/* ---- loading ---- */

/* Returns true when the `len` bytes at `p` are the payload of a well-formed record. */
static bool well_formed(const unsigned char *p, size_t len)
{
    switch (p[0]) {
    case REC_PUSH:
        return len >= QLOG_PUSH_FIXED && get_i64(p + 1) >= 1 && get_u16(p + 17) > 0 &&
               QLOG_PUSH_FIXED + (size_t)get_u16(p + 17) + get_u16(p + 19) + get_u32(p + 21) == len;
    case REC_ACK:
        return len >= QLOG_ACK_FIXED && QLOG_ACK_FIXED + (size_t)get_u16(p + 9) == len;
    case REC_NEXT_ID:
        return len == QLOG_NEXT_ID_LEN;
    case REC_STORE_ID:
        return len == 1 + QLOG_STORE_ID_LEN;
    case REC_COMMIT:
        return len == 1;
    default:
        return false;
    }
}

/* Applies the well-formed payload of one record at open (see well_formed). Returns 0, or -1
 * when memory ran out. */
static int apply(struct qlog *q, const unsigned char *p)
{
    struct mqueue_mark undo;

    if (p[0] == REC_PUSH) {
        int64_t id = get_i64(p + 1), sent_at = get_i64(p + 9);
        size_t rlen = get_u16(p + 17), slen = get_u16(p + 19), blen = get_u32(p + 21);
        const char *s = (const char *)p + QLOG_PUSH_FIXED;
        struct qqueue *queue = queue_get(q, s, rlen);
        if (!queue ||
            queue_push(q, queue, id, sent_at, s + rlen, slen, s + rlen + slen, blen, &undo) != 0)
            return -1;
        if (id >= q->next_id)
            q->next_id = id + 1;
    } else if (p[0] == REC_ACK) {
        struct qqueue *queue = queue_find(q, (const char *)p + QLOG_ACK_FIXED, get_u16(p + 9));
        if (queue && queue_cut(q, queue, get_i64(p + 1), &undo) > 0)
            mqueue_release(&queue->mq);
    } else if (p[0] == REC_NEXT_ID) {
        int64_t next = get_i64(p + 1);
        if (next > q->next_id)
            q->next_id = next;
    } else if (p[0] == REC_STORE_ID) {
        memcpy(q->store_id, p + 1, QLOG_STORE_ID_LEN);
        q->store_id[QLOG_STORE_ID_LEN] = '\0';
    }
    return 0;
}

/* Returns the length of the record at `off` of `size` bytes when it is whole, well formed and
 * its CRC matches, or 0. */
static size_t record_at(const unsigned char *map, uint64_t size, uint64_t off)
{
    if (size - off < QLOG_REC_HEAD)
        return 0;
    uint32_t len = get_u32(map + off);
    if (len == 0 || len > QLOG_MAX_PAYLOAD || size - off - QLOG_REC_HEAD < len)
        return 0;
    const unsigned char *p = map + off + QLOG_REC_HEAD;
    if (!well_formed(p, len) || crc32_of(p, len) != get_u32(map + off + 4))
        return 0;
    return len;
}

/* An unreadable stretch of the file, skipped at open. */
struct span {
    uint64_t off, end;
};

/* What reading the file found. */
struct scan {
    uint64_t commit_end; /* end of the last COMMIT: every record before it was committed */
    uint64_t tail;       /* where the bytes after the last whole record begin (or the size) */
    bool tail_torn;      /* those bytes are what an interrupted write leaves */
    struct span *spans;  /* unreadable stretches followed by whole records, in file order */
    size_t n_spans, cap_spans;
};

/* Returns the offset of the first whole record after `off`, or `size` when none follows. Text
 * fields never hold a NUL and a record head always does, so a message cannot fake one. */
static uint64_t next_record(const unsigned char *map, uint64_t size, uint64_t off)
{
    for (uint64_t at = off + 1; at + QLOG_REC_HEAD < size; at++)
        if (record_at(map, size, at) > 0)
            return at;
    return size;
}

/* True when the bytes from `off` are what a write cut short leaves: a record head or a record
 * that runs past the end of the file, or zeroes (a file extended but never written). */
static bool torn_at(const unsigned char *map, uint64_t size, uint64_t off)
{
    if (size - off < QLOG_REC_HEAD || get_u32(map + off) > size - off - QLOG_REC_HEAD)
        return true;
    for (uint64_t at = off; at < size; at++)
        if (map[at] != 0)
            return false;
    return true;
}

/* True when the bytes from `off` are one whole COMMIT-sized record whose check failed: the
 * batch before it was written whole, and only its last record was damaged since. */
static bool damaged_commit_at(const unsigned char *map, uint64_t size, uint64_t off)
{
    return size - off == QLOG_REC_HEAD + 1 && get_u32(map + off) == 1;
}

static int add_span(struct qlog *q, struct scan *sc, uint64_t off, uint64_t end)
{
    if (sc->n_spans == sc->cap_spans) {
        size_t cap = sc->cap_spans ? sc->cap_spans * 2 : 8;
        struct span *s = realloc(sc->spans, cap * sizeof *s);
        if (!s)
            return fail(q, "out of memory");
        sc->spans = s;
        sc->cap_spans = cap;
    }
    sc->spans[sc->n_spans++] = (struct span){off, end};
    return 0;
}

/* Reads the records of the file, skipping unreadable stretches, and finds where the committed
 * records end. */
static int scan_file(struct qlog *q, const unsigned char *map, uint64_t size, struct scan *sc)
{
    uint64_t off = QLOG_MAGIC_LEN;
    sc->commit_end = QLOG_MAGIC_LEN;
    while (off < size) {
        size_t len = record_at(map, size, off);
        if (len > 0) {
            off += QLOG_REC_HEAD + len;
            if (map[off - len] == REC_COMMIT)
                sc->commit_end = off;
            continue;
        }
        uint64_t next = next_record(map, size, off);
        if (next == size)
            break;
        if (add_span(q, sc, off, next) != 0)
            return -1;
        off = next;
    }
    sc->tail = off;
    sc->tail_torn = off == size || torn_at(map, size, off);
    if (off < size && off > sc->commit_end && damaged_commit_at(map, size, off))
        sc->commit_end = size;
    return 0;
}

/* Applies every committed record, skipping the unreadable stretches. */
static int replay(struct qlog *q, const unsigned char *map, const struct scan *sc)
{
    size_t span = 0;
    for (uint64_t off = QLOG_MAGIC_LEN; off < sc->commit_end && off < sc->tail;) {
        if (span < sc->n_spans && off == sc->spans[span].off) {
            off = sc->spans[span++].end;
            continue;
        }
        size_t len = get_u32(map + off);
        if (apply(q, map + off + QLOG_REC_HEAD) != 0)
            return fail(q, "loading %s: out of memory", q->path);
        off += QLOG_REC_HEAD + len;
    }
    return 0;
}

/* Starts an empty log in the open, empty (or torn at birth) file. */
static int create_log(struct qlog *q)
{
    if (ftruncate(q->fd, 0) != 0 || fileio_pwrite_all(q->fd, QLOG_MAGIC, QLOG_MAGIC_LEN, 0) != 0)
        return fail(q, "creating %s: %s", q->path, strerror(errno));
    q->file_size = QLOG_MAGIC_LEN;
    if (add_next_id(q, &q->batch) != 0 || qlog_commit(q) != 0 || fdatasync(q->fd) != 0)
        return fail(q, "creating %s: %s", q->path, strerror(errno));
    fileio_sync_parent(q->path); /* best effort: the data itself is flushed already */
    return 0;
}

/* Writes the `size` bytes of the damaged log at `map` to a new file beside it, named after the
 * time, and puts its name in `name`. */
static int keep_copy(struct qlog *q, const unsigned char *map, uint64_t size, char *name)
{
    long long now = (long long)time(NULL);
    int fd = -1;
    for (int i = 0; fd < 0 && i < QLOG_MAX_COPIES; i++) {
        int n = i ? snprintf(name, PATH_MAX, "%s.damaged-%lld-%d", q->path, now, i)
                  : snprintf(name, PATH_MAX, "%s.damaged-%lld", q->path, now);
        if (n < 0 || n >= PATH_MAX)
            return fail(q, "log path too long");
        fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0)
        return fail(q, "cannot keep a copy of the damaged %s: %s", q->path, strerror(errno));
    if (fileio_pwrite_all(fd, map, size, 0) != 0 || fdatasync(fd) != 0) {
        fail(q, "cannot keep a copy of the damaged %s in %s: %s", q->path, name, strerror(errno));
        close(fd);
        unlink(name);
        return -1;
    }
    close(fd);
    fileio_sync_parent(q->path); /* best effort: the data itself is flushed already */
    return 0;
}

/* Says loudly what was skipped and cut in a damaged log and where its copy is. */
static void report_damage(const struct qlog *q, const struct scan *sc, uint64_t size,
                          const char *copy)
{
    for (size_t i = 0; i < sc->n_spans && i < QLOG_MAX_REPORTED; i++)
        log_error("queue log %s: %llu unreadable bytes at offset %llu skipped (a message or an "
                  "acknowledgement there is lost); the records after them are kept",
                  q->path, (unsigned long long)(sc->spans[i].end - sc->spans[i].off),
                  (unsigned long long)sc->spans[i].off);
    if (sc->n_spans > QLOG_MAX_REPORTED)
        log_error("queue log %s: %zu more unreadable stretches skipped", q->path,
                  sc->n_spans - QLOG_MAX_REPORTED);
    if (sc->commit_end < size)
        log_error("queue log %s: %llu bytes after the last committed batch cut off", q->path,
                  (unsigned long long)(size - sc->commit_end));
    else if (sc->tail < size)
        log_error("queue log %s: its last record, a COMMIT, is damaged; the batch before it was "
                  "written whole and is kept",
                  q->path);
    log_error("queue log %s was damaged; the damaged file is kept as %s", q->path, copy);
}

/* Reads and applies the records of the mapped file, keeping a copy of it when it is damaged
 * (anything but a torn write at its end). Sets the committed size. */
static int load_records(struct qlog *q, const unsigned char *map, uint64_t size)
{
    struct scan sc = {0};
    char copy[PATH_MAX];
    int rc = -1;

    if (scan_file(q, map, size, &sc) != 0 || replay(q, map, &sc) != 0)
        goto done;
    q->damaged = sc.n_spans > 0 || !sc.tail_torn;
    if (q->damaged) {
        if (keep_copy(q, map, size, copy) != 0)
            goto done;
        report_damage(q, &sc, size, copy);
    } else if (sc.commit_end < size) {
        log_error("queue log %s: cutting %llu bytes of an unfinished batch at offset %llu", q->path,
                  (unsigned long long)(size - sc.commit_end), (unsigned long long)sc.commit_end);
    }
    q->file_size = sc.commit_end;
    rc = 0;
done:
    free(sc.spans);
    return rc;
}

/* Loads the queues from the file. Only its unfinished last batch is cut off; a damaged log is
 * copied aside, read around the damage and then rewritten whole. */
static int load(struct qlog *q)
{
    struct stat sb;
    if (fstat(q->fd, &sb) != 0)
        return fail(q, "reading %s: %s", q->path, strerror(errno));
    uint64_t size = (uint64_t)sb.st_size;
    if (size < QLOG_MAGIC_LEN)
        return create_log(q);
    unsigned char *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, q->fd, 0);
    if (map == MAP_FAILED)
        return fail(q, "reading %s: %s", q->path, strerror(errno));
    int rc = memcmp(map, QLOG_MAGIC, QLOG_MAGIC_LEN) != 0
                 ? fail(q, "%s is not a Parley queue log", q->path)
                 : load_records(q, map, size);
    munmap(map, (size_t)size);
    if (rc != 0)
        return -1;
    if (q->file_size < size && ftruncate(q->fd, (off_t)q->file_size) != 0)
        return fail(q, "truncating %s: %s", q->path, strerror(errno));
    if (q->damaged && rewrite_all(q) != 0)
        log_error("queue log: %s; the damage stays in the file and is skipped again", q->err);
    return 0;
}

/* ---- the interface ---- */

/* Writes the batch to the log, flushed with --fsync when it holds a message. Returns 0, or -1
 * when it was lost: then it is undone, in memory and in a rewrite's mirror. */
static int write_batch(struct qlog *q)
{
    if (add_commit(q, &q->batch) != 0)
        goto fail;
    /* Acknowledgements alone are not flushed: losing them to a power cut only means those
     * messages are delivered again (at-least-once); the next flush covers them. */
    if (fileio_pwrite_all(q->fd, q->batch.p, q->batch.len, (off_t)q->file_size) != 0 ||
        (q->fsync && q->batch_pushes && fdatasync(q->fd) != 0)) {
        fail(q, "writing %s: %s", q->path, strerror(errno));
        goto fail;
    }
    q->file_size += q->batch.len;
    batch_done(q);
    return 0;

fail:
    /* What reached the file has no COMMIT after it (or is cut here): it is never loaded, and
     * the next batch is written over it. */
    if (ftruncate(q->fd, (off_t)q->file_size) != 0)
        log_error("queue log: cannot cut a failed batch from %s: %s", q->path, strerror(errno));
    batch_undo(q);
    batch_done(q);
    buf_reset(&q->rw.out); /* it held this batch's mirror alone */
    q->rw.pushed = 0;
    return -1;
}

/* Takes the parameters of qlog_open, or their defaults. */
static void take_params(struct qlog *q, const struct qlog_params *p)
{
    const struct qlog_params none = {0};
    if (!p)
        p = &none;
    q->slice = p->rewrite_slice ? p->rewrite_slice : QLOG_REWRITE_SLICE;
    q->sync_every = p->rewrite_sync_every ? p->rewrite_sync_every : QLOG_REWRITE_SYNC_EVERY;
    q->compact_min = p->compact_min ? p->compact_min : QLOG_COMPACT_MIN;
    q->compact_floor = q->compact_min;
}

/* Keeps the path of the log and makes the path of a rewrite's file. */
static int take_paths(struct qlog *q, const char *path)
{
    size_t n = strlen(path);
    q->path = strdup(path);
    q->new_path = malloc(n + sizeof ".new");
    if (!q->path || !q->new_path)
        return fail(q, "out of memory");
    memcpy(q->new_path, path, n);
    memcpy(q->new_path + n, ".new", sizeof ".new");
    return 0;
}

/* Removes the file of a rewrite that did not finish: the log still holds everything (the new
 * file replaces it only by a rename, and then its old name is gone). */
static void remove_stale_rewrite(const struct qlog *q)
{
    if (unlink(q->new_path) == 0)
        log_info("queue log: removed %s, left by a rewrite that did not finish", q->new_path);
}

int qlog_open(struct qlog **out, const char *path, const struct qlog_params *p, char *err,
              size_t errlen)
{
    struct qlog *q = calloc(1, sizeof *q);
    *out = NULL;
    if (!q) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (!crc_fn)
        crc_init();
    q->fd = q->rw.fd = -1;
    q->next_id = 1;
    take_params(q, p);
    strmap_init(&q->queues);
    if (take_paths(q, path) != 0)
        goto fail;
    remove_stale_rewrite(q);
    q->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (q->fd < 0) {
        fail(q, "opening %s: %s", path, strerror(errno));
        goto fail;
    }
    if (load(q) != 0)
        goto fail;
    if (rewrite_due(q) && rewrite_all(q) != 0)
        log_error("queue log: %s; keeping the old log", q->err);
    *out = q;
    return 0;

fail:
    if (err && errlen)
        snprintf(err, errlen, "%s", q->err[0] ? q->err : "cannot open the queue log");
    qlog_close(q);
    return -1;
}

void qlog_close(struct qlog *q)
{
    if (!q)
        return;
    rewrite_drop(q); /* the log holds everything; the last batch goes to it alone */
    if (q->fd >= 0) {
        if (q->batch.len > 0 && write_batch(q) != 0) /* and starts no rewrite */
            log_error("queue log: last batch lost at close: %s", q->err);
        close(q->fd);
    }
    for (struct qqueue *queue = q->all, *next; queue; queue = next) {
        next = queue->all_next;
        mqueue_free(&queue->mq);
        free(queue);
    }
    strmap_free(&q->queues);
    free(q->batch.p);
    free(q->rw.out.p);
    free(q->undo);
    free(q->path);
    free(q->new_path);
    free(q);
}

void qlog_set_submit(struct qlog *q, store_submit_fn submit, void *ctx)
{
    q->submit = submit;
    q->submit_ctx = ctx;
}

enum qlog_rewrite_state qlog_rewrite_state(const struct qlog *q)
{
    return q->rw.state;
}

void qlog_set_fsync(struct qlog *q, bool on)
{
    q->fsync = on;
}

int qlog_commit(struct qlog *q)
{
    if (q->batch.len > 0 && write_batch(q) != 0)
        return -1;
    if (rewrite_step(q) != 0)
        log_error("queue log: %s; keeping the old log", q->err);
    return 0;
}

const char *qlog_error(const struct qlog *q)
{
    return q->err[0] ? q->err : "no error";
}

int qlog_push_with_id(struct qlog *q, int64_t id, const char *sender, const char *recipient,
                      int64_t sent_at, const char *body, size_t body_len)
{
    size_t rlen = strlen(recipient), slen = strlen(sender);
    if (rlen == 0 || rlen > UINT16_MAX || slen > UINT16_MAX ||
        body_len > QLOG_MAX_PAYLOAD - QLOG_PUSH_FIXED - rlen - slen)
        return fail(q, "message or name too long");
    if (id < q->next_id)
        return fail(q, "message id %lld was given before", (long long)id);
    struct qqueue *queue = queue_get(q, recipient, rlen);
    size_t len = QLOG_PUSH_FIXED + rlen + slen + body_len, from = q->batch.len;
    unsigned char *p = queue && undo_reserve(q) == 0 ? record_begin(&q->batch, len) : NULL;
    if (!p)
        return fail(q, "out of memory");
    struct undo *u = &q->undo[q->undo_len];
    *u = (struct undo){.kind = UNDO_PUSH, .queue = queue};
    if (queue_push(q, queue, id, sent_at, sender, slen, body ? body : "", body_len, &u->mark) != 0)
        return fail(q, "out of memory");
    q->undo_len++;
    encode_push_fields(p, queue, id, sent_at, sender, slen, body, body_len);
    record_end(&q->batch, len);
    mirror_push(q, queue, from);
    q->next_id = id + 1;
    q->batch_pushes = true;
    return 0;
}

int qlog_push(struct qlog *q, const char *sender, const char *recipient, int64_t sent_at,
              const char *body, size_t body_len, int64_t *id)
{
    int64_t new_id = q->next_id;
    if (qlog_push_with_id(q, new_id, sender, recipient, sent_at, body, body_len) != 0)
        return -1;
    if (id)
        *id = new_id;
    return 0;
}

int qlog_raise_next_id(struct qlog *q, int64_t next_id)
{
    if (next_id <= q->next_id)
        return 0;
    int64_t old = q->next_id;
    size_t from = q->batch.len;
    q->next_id = next_id;
    if (add_next_id(q, &q->batch) != 0) {
        q->next_id = old;
        return -1;
    }
    if (q->rw.state != QLOG_REWRITE_IDLE)
        mirror(q, from);
    return 0;
}

int64_t qlog_next_id(const struct qlog *q)
{
    return q->next_id;
}

bool qlog_damaged(const struct qlog *q)
{
    return q->damaged;
}

const char *qlog_store_id(const struct qlog *q)
{
    return q->store_id[0] ? q->store_id : NULL;
}

int qlog_set_store_id(struct qlog *q, const char *id)
{
    if (strlen(id) != QLOG_STORE_ID_LEN)
        return fail(q, "a store id has %d characters", QLOG_STORE_ID_LEN);
    memcpy(q->store_id, id, QLOG_STORE_ID_LEN + 1);
    size_t from = q->batch.len;
    if (add_store_id(q, &q->batch) != 0)
        return -1;
    if (q->rw.state != QLOG_REWRITE_IDLE)
        mirror(q, from);
    return 0;
}

/* Hands messages of a walk to a store_msg callback. */
struct load {
    const struct qqueue *queue;
    store_msg_fn fn;
    void *ctx;
};

static int load_one(void *ctx, const struct mqueue_msg *m)
{
    const struct load *l = ctx;
    struct store_msg sm = {
        .id = m->id,
        .sender = m->text,
        .recipient = l->queue->name,
        .sent_at = m->sent_at,
        .body = m->text + m->sender_len + 1,
        .body_len = m->body_len,
    };
    return l->fn(l->ctx, &sm);
}

int qlog_load(struct qlog *q, const char *recipient, int64_t after_id, size_t limit,
              store_msg_fn fn, void *ctx)
{
    struct qqueue *queue = queue_find(q, recipient, strlen(recipient));
    if (!queue)
        return 0;
    struct load l = {queue, fn, ctx};
    mqueue_walk(&queue->mq, after_id, limit, load_one, &l);
    return 0;
}

int qlog_ack(struct qlog *q, const char *recipient, int64_t up_to_id)
{
    size_t rlen = strlen(recipient);
    struct qqueue *queue = queue_find(q, recipient, rlen);
    if (!queue || queue->mq.count == 0)
        return 0; /* nothing to remove, nothing to write */
    size_t len = QLOG_ACK_FIXED + rlen, from = q->batch.len;
    unsigned char *p = undo_reserve(q) == 0 ? record_begin(&q->batch, len) : NULL;
    if (!p)
        return fail(q, "out of memory");
    struct undo *u = &q->undo[q->undo_len];
    *u = (struct undo){.kind = UNDO_ACK, .queue = queue};
    if (queue_cut(q, queue, up_to_id, &u->mark) == 0)
        return 0; /* nothing removed: the record is not sealed, so not written */
    q->undo_len++;
    p[0] = REC_ACK;
    put_i64(p + 1, up_to_id);
    put_u16(p + 9, (uint16_t)rlen);
    memcpy(p + QLOG_ACK_FIXED, recipient, rlen);
    record_end(&q->batch, len);
    if (copy_begun(q, queue))
        mirror(q, from);
    return 0;
}

int64_t qlog_count(const struct qlog *q, const char *recipient)
{
    const struct qqueue *queue = queue_find(q, recipient, strlen(recipient));
    return queue ? queue->mq.count : 0;
}

void qlog_totals(const struct qlog *q, int64_t *messages, uint64_t *bytes)
{
    *messages = 0;
    *bytes = 0;
    for (const struct qqueue *queue = q->all; queue; queue = queue->all_next) {
        *messages += queue->mq.count;
        *bytes += queue->mq.text_bytes;
    }
}
