/* Unit tests for one recipient's message queue in blocks (src/server/mqueue.c): order across
 * block boundaries, cuts, undo of pushes and cuts, release, walks that resume, and walks from a
 * position the caller keeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/mqueue.h"

#define BIG_BODY (100u << 10) /* larger than a block */

/* The body of message `id`: its length varies, one is larger than any block. */
static size_t body_of(int64_t id, char *buf)
{
    size_t len = id == 77 ? BIG_BODY : (size_t)(id * 37 % 300);
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)('a' + (id + (int64_t)i) % 26);
    return len;
}

static char *scratch(void)
{
    static char *buf;
    if (!buf)
        buf = malloc(BIG_BODY + 1);
    assert_non_null(buf);
    return buf;
}

static void push(struct mqueue *mq, int64_t id, struct mqueue_mark *undo)
{
    struct mqueue_mark ignored;
    char *buf = scratch();
    size_t len = body_of(id, buf);
    char sender[24];
    snprintf(sender, sizeof sender, "s%lld", (long long)id);
    assert_int_equal(
        mqueue_push(mq, id, id * 10, sender, strlen(sender), buf, len, undo ? undo : &ignored), 0);
}

/* What a walk saw. */
struct seen {
    int64_t ids[2000];
    size_t n;
    size_t stop_after; /* 0: never */
};

/* Checks each message against what push stored for its id. */
static int check_one(void *ctx, const struct mqueue_msg *m)
{
    struct seen *s = ctx;
    char *buf = scratch();
    size_t len = body_of(m->id, buf);
    char sender[24];
    snprintf(sender, sizeof sender, "s%lld", (long long)m->id);
    assert_int_equal(m->sent_at, m->id * 10);
    assert_int_equal(m->sender_len, strlen(sender));
    assert_string_equal(m->text, sender);
    assert_int_equal(m->body_len, len);
    assert_memory_equal(m->text + m->sender_len + 1, buf, len);
    assert_int_equal(m->text[m->sender_len + 1 + len], '\0');
    assert_true(s->n < sizeof s->ids / sizeof s->ids[0]);
    s->ids[s->n++] = m->id;
    return s->stop_after && s->n >= s->stop_after;
}

static struct seen walk(struct mqueue *mq, int64_t after, size_t limit)
{
    struct seen s = {.n = 0};
    mqueue_walk(mq, after, limit, check_one, &s);
    return s;
}

/* Asserts that a walk of everything gives exactly the ids lo..hi. */
static void expect_range(struct mqueue *mq, int64_t lo, int64_t hi)
{
    struct seen s = walk(mq, 0, 0);
    assert_int_equal(s.n, (size_t)(hi >= lo ? hi - lo + 1 : 0));
    for (size_t i = 0; i < s.n; i++)
        assert_int_equal(s.ids[i], lo + (int64_t)i);
    assert_int_equal(mq->count, (int64_t)s.n);
}

static void test_order_across_blocks(void **state)
{
    (void)state;
    struct mqueue mq = {0};
    for (int64_t id = 1; id <= 1000; id++)
        push(&mq, id, NULL);
    expect_range(&mq, 1, 1000);
    struct seen s = walk(&mq, 500, 3);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.ids[0], 501);
    assert_int_equal(s.ids[2], 503);
    mqueue_free(&mq);
    assert_int_equal(mq.count, 0);
    expect_range(&mq, 1, 0);
}

static void test_cut_and_release(void **state)
{
    (void)state;
    struct mqueue mq = {0};
    struct mqueue_mark undo;
    for (int64_t id = 1; id <= 600; id++)
        push(&mq, id, NULL);
    uint64_t bytes = mq.text_bytes;
    assert_int_equal(mqueue_cut(&mq, 0, &undo), 0);
    assert_int_equal(mqueue_cut(&mq, 250, &undo), 250);
    assert_true(mq.text_bytes < bytes);
    mqueue_release(&mq);
    expect_range(&mq, 251, 600);
    assert_int_equal(mqueue_cut(&mq, 10000, &undo), 350);
    assert_int_equal(mq.text_bytes, 0);
    mqueue_release(&mq); /* empty: every block is freed */
    assert_null(mq.first);
    assert_null(mq.tail);
    push(&mq, 601, NULL);
    expect_range(&mq, 601, 601);
    mqueue_free(&mq);
}

/* Changes taken back newest first leave the queue as it was. */
static void test_undo(void **state)
{
    (void)state;
    struct mqueue mq = {0};
    struct mqueue_mark u[4];
    for (int64_t id = 1; id <= 40; id++)
        push(&mq, id, NULL);
    uint64_t bytes = mq.text_bytes;
    assert_int_equal(mqueue_cut(&mq, 30, &u[0]), 30);
    push(&mq, 77, &u[1]); /* larger than a block: a new block */
    push(&mq, 78, &u[2]);
    assert_int_equal(mqueue_cut(&mq, 77, &u[3]), 11);
    expect_range(&mq, 78, 78);
    mqueue_uncut(&mq, &u[3]);
    mqueue_unpush(&mq, &u[2]);
    mqueue_unpush(&mq, &u[1]);
    mqueue_uncut(&mq, &u[0]);
    expect_range(&mq, 1, 40);
    assert_int_equal(mq.text_bytes, bytes);
    /* The queue works on as before. */
    push(&mq, 41, NULL);
    expect_range(&mq, 1, 41);
    mqueue_free(&mq);

    /* A push into an empty queue, taken back. */
    push(&mq, 5, &u[0]);
    mqueue_unpush(&mq, &u[0]);
    assert_null(mq.first);
    expect_range(&mq, 1, 0);
}

/* A walk that goes on from where the last stopped sees the same as one from the front, also
 * after cuts and pushes in between. */
static void test_resumed_walks(void **state)
{
    (void)state;
    struct mqueue mq = {0};
    struct mqueue_mark undo;
    for (int64_t id = 1; id <= 300; id++)
        push(&mq, id, NULL);
    int64_t after = 0;
    for (int round = 0; round < 30; round++) {
        struct seen s = walk(&mq, after, 7);
        assert_int_equal(s.n, 7);
        assert_int_equal(s.ids[0], after + 1);
        after = s.ids[6];
        if (round % 3 == 0)
            mqueue_cut(&mq, after - 3, &undo);
        if (round % 5 == 0)
            mqueue_release(&mq);
    }
    /* A cut past the walk's position, then a walk from before it. */
    assert_true(mqueue_cut(&mq, after + 5, &undo) > 0);
    struct seen s = walk(&mq, after, 2);
    assert_int_equal(s.ids[0], after + 6);
    /* Walk to the end, push, walk on: the new message is found. */
    s = walk(&mq, 0, 0);
    int64_t last = s.ids[s.n - 1];
    push(&mq, last + 1, NULL);
    s = walk(&mq, last, 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.ids[0], last + 1);
    /* A walk stopped by its callback. */
    s = (struct seen){.stop_after = 2};
    mqueue_walk(&mq, 0, 0, check_one, &s);
    assert_int_equal(s.n, 2);
    mqueue_free(&mq);
}

/* Walks `n` messages from `pos`; returns what they were and whether `fn` stopped the walk. */
static struct seen walk_from(struct mqueue *mq, struct mqueue_pos *pos, size_t n, int *stopped)
{
    struct seen s = {.stop_after = n};
    *stopped = mqueue_walk_from(mq, pos, check_one, &s);
    return s;
}

/* A walk from a kept position goes on where it stopped whatever other walks, cuts, releases,
 * undos and pushes happened since; once the messages it passed are gone it starts at the
 * front. */
static void test_walk_from_kept_position(void **state)
{
    (void)state;
    struct mqueue mq = {0};
    struct mqueue_pos pos = {0};
    struct mqueue_mark undo, undo2;
    int stopped;
    for (int64_t id = 1; id <= 300; id++)
        push(&mq, id, NULL);
    int64_t next = 1;
    for (int round = 0; round < 20; round++) {
        struct seen s = walk_from(&mq, &pos, 7, &stopped);
        assert_int_equal(stopped, 1);
        assert_int_equal(s.n, 7);
        assert_int_equal(s.ids[0], next);
        next = s.ids[6] + 1;
        walk(&mq, (int64_t)round * 13, 5); /* moves the queue's own cursor elsewhere */
        if (round % 3 == 0)
            mqueue_cut(&mq, next - 3, &undo); /* behind the position */
        if (round % 6 == 3)
            mqueue_cut(&mq, next - 1, &undo); /* up to the message it passed */
        if (round % 4 == 0)
            mqueue_release(&mq);
    }
    /* A cut past the position, taken back: the walk goes on from the position. */
    assert_true(mqueue_cut(&mq, next + 20, &undo) > 0);
    mqueue_uncut(&mq, &undo);
    struct seen s = walk_from(&mq, &pos, 1, &stopped);
    assert_int_equal(s.ids[0], next);
    /* A cut past the position, released: the walk starts at the new front. */
    assert_true(mqueue_cut(&mq, next + 20, &undo) > 0);
    mqueue_release(&mq);
    s = walk_from(&mq, &pos, 1, &stopped);
    assert_int_equal(s.ids[0], next + 21);
    /* To the end; a push taken back and one kept: only the kept one is seen next. */
    s = walk_from(&mq, &pos, 0, &stopped);
    assert_int_equal(stopped, 0);
    assert_int_equal(s.ids[s.n - 1], 300);
    s = walk_from(&mq, &pos, 0, &stopped);
    assert_int_equal(s.n, 0);
    push(&mq, 77, &undo); /* larger than a block: a new block, freed by the undo */
    push(&mq, 301, &undo2);
    mqueue_unpush(&mq, &undo2);
    mqueue_unpush(&mq, &undo);
    push(&mq, 302, NULL);
    s = walk_from(&mq, &pos, 0, &stopped);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.ids[0], 302);
    /* Everything cut and freed, then new messages: they are seen. */
    assert_true(mqueue_cut(&mq, 302, &undo) > 0);
    assert_int_equal(mq.count, 0);
    mqueue_release(&mq);
    assert_null(mq.first);
    s = walk_from(&mq, &pos, 0, &stopped);
    assert_int_equal(s.n, 0);
    push(&mq, 303, NULL);
    push(&mq, 304, NULL);
    s = walk_from(&mq, &pos, 0, &stopped);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.ids[0], 303);
    mqueue_free(&mq);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_across_blocks),
        cmocka_unit_test(test_cut_and_release),
        cmocka_unit_test(test_undo),
        cmocka_unit_test(test_resumed_walks),
        cmocka_unit_test(test_walk_from_kept_position),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(scratch());
    return rc;
}
