/* Unit tests of src/common/linebuf.c: frames split across reads, several frames per read,
 * over-long frames, exact limits, empty lines, stopping, pending counts and memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/linebuf.h"

#define MAX_FRAMES 4096

/* One frame handed to the callback, copied. */
struct frame {
    enum linebuf_kind kind;
    size_t len;
    char *bytes;
};

/* What the callback saw; `stop_at` (1-based frame number) makes it return `stop_rc`. */
struct recorder {
    struct frame frames[MAX_FRAMES];
    size_t count;
    size_t stop_at;
    int stop_rc;
};

static int record(void *ctx, enum linebuf_kind kind, const char *line, size_t len)
{
    struct recorder *r = ctx;
    assert_true(r->count < MAX_FRAMES);
    assert_true(len == 0 || line != NULL);
    struct frame *f = &r->frames[r->count++];
    f->kind = kind;
    f->len = len;
    f->bytes = malloc(len + 1);
    assert_non_null(f->bytes);
    if (len)
        memcpy(f->bytes, line, len);
    f->bytes[len] = '\0';
    if (r->stop_at && r->count == r->stop_at)
        return r->stop_rc;
    return 0;
}

static struct recorder *recorder_new(void)
{
    struct recorder *r = calloc(1, sizeof *r);
    assert_non_null(r);
    return r;
}

static void recorder_clear(struct recorder *r)
{
    for (size_t i = 0; i < r->count; i++)
        free(r->frames[i].bytes);
    r->count = 0;
}

static void recorder_free(struct recorder *r)
{
    recorder_clear(r);
    free(r);
}

static void expect_line(const struct recorder *r, size_t i, const char *text)
{
    assert_true(i < r->count);
    assert_int_equal(r->frames[i].kind, LINEBUF_LINE);
    assert_int_equal(r->frames[i].len, strlen(text));
    assert_memory_equal(r->frames[i].bytes, text, strlen(text) + 1);
}

/* An over-long frame whose head must be exactly the first `head_len` bytes of `frame`. */
static void expect_too_long(const struct recorder *r, size_t i, const char *frame, size_t head_len)
{
    assert_true(i < r->count);
    assert_int_equal(r->frames[i].kind, LINEBUF_TOO_LONG);
    assert_int_equal(r->frames[i].len, head_len);
    assert_memory_equal(r->frames[i].bytes, frame, head_len);
}

static int feed(struct linebuf *lb, const char *s, struct recorder *r)
{
    return linebuf_feed(lb, s, strlen(s), record, r);
}

static void test_byte_at_a_time(void **state)
{
    (void)state;
    struct recorder *r = recorder_new();
    struct linebuf lb;
    linebuf_init(&lb, 64);
    const char *in = "1 HELLO 1\n2 USER hans\n\n3 MSG bob caf\xc3\xa9  x\n";
    size_t pending = 0;
    for (size_t i = 0; in[i]; i++) {
        assert_int_equal(linebuf_feed(&lb, in + i, 1, record, r), 0);
        pending = in[i] == '\n' ? 0 : pending + 1;
        assert_int_equal(linebuf_pending(&lb), pending);
        if (pending == 0)
            assert_null(lb.data);
    }
    assert_int_equal(r->count, 4);
    expect_line(r, 0, "1 HELLO 1");
    expect_line(r, 1, "2 USER hans");
    expect_line(r, 2, "");
    expect_line(r, 3, "3 MSG bob caf\xc3\xa9  x");
    linebuf_free(&lb);
    recorder_free(r);
}

static void test_many_in_one_feed(void **state)
{
    (void)state;
    struct recorder *r = recorder_new();
    struct linebuf lb;
    linebuf_init(&lb, 64);
    /* Starts with a partial frame from an earlier read, ends with a new partial one. */
    assert_int_equal(feed(&lb, "1 WH", r), 0);
    assert_int_equal(r->count, 0);
    assert_int_equal(linebuf_pending(&lb), 4);
    assert_int_equal(feed(&lb, "O\n2 TOUCH\n3 LOGOUT\n\n4 PA", r), 0);
    assert_int_equal(r->count, 4);
    expect_line(r, 0, "1 WHO");
    expect_line(r, 1, "2 TOUCH");
    expect_line(r, 2, "3 LOGOUT");
    expect_line(r, 3, "");
    assert_int_equal(linebuf_pending(&lb), 4);
    assert_int_equal(feed(&lb, "SS x\n", r), 0);
    assert_int_equal(r->count, 5);
    expect_line(r, 4, "4 PASS x");
    assert_int_equal(linebuf_pending(&lb), 0);
    assert_null(lb.data);
    linebuf_free(&lb);
    recorder_free(r);
}

static void test_empty_lines(void **state)
{
    (void)state;
    struct recorder *r = recorder_new();
    struct linebuf lb;
    linebuf_init(&lb, 16);
    assert_int_equal(feed(&lb, "\n\n\n", r), 0);
    assert_int_equal(r->count, 3);
    for (size_t i = 0; i < 3; i++)
        expect_line(r, i, "");
    assert_int_equal(feed(&lb, "\n", r), 0);
    assert_int_equal(feed(&lb, "a\n\nb\n", r), 0);
    assert_int_equal(r->count, 7);
    expect_line(r, 3, "");
    expect_line(r, 4, "a");
    expect_line(r, 5, "");
    expect_line(r, 6, "b");
    /* A feed of nothing does nothing. */
    assert_int_equal(linebuf_feed(&lb, "x", 0, record, r), 0);
    assert_int_equal(r->count, 7);
    assert_int_equal(linebuf_pending(&lb), 0);
    assert_null(lb.data);
    linebuf_free(&lb);
    recorder_free(r);
}

/* A frame of 100 bytes (no LF): "<tag> " then filler that says where it is. */
static void make_long(char *buf, size_t len)
{
    const char *tag = "7a ";
    for (size_t i = 0; i < len; i++)
        buf[i] = i < 3 ? tag[i] : (char)('A' + (i % 26));
    buf[len] = '\0';
}

static void test_too_long_one_feed(void **state)
{
    (void)state;
    struct recorder *r = recorder_new();
    struct linebuf lb;
    linebuf_init(&lb, 64);
    char frame[101];
    make_long(frame, 100);
    char in[256];
    snprintf(in, sizeof in, "1 WHO\n%s\n2 TOUCH\n", frame);
    assert_int_equal(feed(&lb, in, r), 0);
    assert_int_equal(r->count, 3);
    expect_line(r, 0, "1 WHO");
    expect_too_long(r, 1, frame, LINEBUF_HEAD);
    expect_line(r, 2, "2 TOUCH");
    assert_int_equal(linebuf_pending(&lb), 0);
    assert_null(lb.data);
    linebuf_free(&lb);
    recorder_free(r);
}

static void test_too_long_across_feeds(void **state)
{
    (void)state;
    struct recorder *r = recorder_new();
    struct linebuf lb;
    linebuf_init(&lb, 64);
    char frame[1001];
    make_long(frame, 1000);
    /* Start after a complete frame, in the same read. */
    char first[64];
    snprintf(first, sizeof first, "1 WHO\n%.10s", frame);
    assert_int_equal(feed(&lb, first, r), 0);
    assert_int_equal(r->count, 1);
    assert_int_equal(linebuf_pending(&lb), 10);
    /* Then many reads of the same frame, crossing the limit: nothing reported yet. */
    for (size_t off = 10; off < 1000; off += 30) {
        size_t n = 1000 - off < 30 ? 1000 - off : 30;
        assert_int_equal(linebuf_feed(&lb, frame + off, n, record, r), 0);
        assert_int_equal(r->count, 1);
        assert_true(linebuf_pending(&lb) < 64);
        assert_true(lb.cap <= 64);
    }
    /* While discarding, no bytes of the frame are held. */
    assert_int_equal(linebuf_pending(&lb), 0);
    assert_null(lb.data);
    assert_int_equal(feed(&lb, "\n2 TOUCH\n3 W", r), 0);
    assert_int_equal(r->count, 3);
    expect_too_long(r, 1, frame, LINEBUF_HEAD);
    expect_line(r, 2, "2 TOUCH");
    assert_int_equal(linebuf_pending(&lb), 3);
    assert_int_equal(feed(&lb, "HO\n", r), 0);
    assert_int_equal(r->count, 4);
    expect_line(r, 3, "3 WHO");
    linebuf_free(&lb);
    recorder_free(r);
}

static void test_too_long_byte_at_a_time(void **state)
{
    (void)state;
    struct recorder *r = recorder_new();
    struct linebuf lb;
    linebuf_init(&lb, 64);
    char frame[201];
    make_long(frame, 200);
    for (size_t i = 0; i < 200; i++) {
        assert_int_equal(linebuf_feed(&lb, frame + i, 1, record, r), 0);
        assert_true(linebuf_pending(&lb) < 64);
    }
    assert_int_equal(r->count, 0);
    assert_int_equal(feed(&lb, "\n", r), 0);
    assert_int_equal(feed(&lb, "\n", r), 0);
    assert_int_equal(r->count, 2);
    expect_too_long(r, 0, frame, LINEBUF_HEAD);
    expect_line(r, 1, ""); /* the LF after the over-long one is a separate, empty frame */
    linebuf_free(&lb);
    recorder_free(r);
}

/* The head of an over-long frame is its first bytes even when the limit is below LINEBUF_HEAD. */
static void test_too_long_small_limit(void **state)
{
    (void)state;
    struct recorder *r = recorder_new();
    struct linebuf lb;
    linebuf_init(&lb, 8);
    const char *frame = "12 MSG bob hello";
    for (size_t i = 0; frame[i]; i++)
        assert_int_equal(linebuf_feed(&lb, frame + i, 1, record, r), 0);
    assert_int_equal(feed(&lb, "\n1 WHO\n", r), 0);
    assert_int_equal(r->count, 2);
    assert_int_equal(r->frames[0].kind, LINEBUF_TOO_LONG);
    assert_true(r->frames[0].len >= 3); /* at least "12 " so the tag can be answered */
    assert_true(r->frames[0].len <= LINEBUF_HEAD);
    assert_memory_equal(r->frames[0].bytes, frame, r->frames[0].len);
    expect_line(r, 1, "1 WHO");
    linebuf_free(&lb);
    recorder_free(r);
}

/* Feeds `in` split at `cut` and checks it gives one frame of `len` bytes, LINE or TOO_LONG,
 * followed by "next". */
static void check_split(size_t max_line, const char *in, size_t total, size_t cut, size_t len,
                        bool fits)
{
    struct recorder *r = recorder_new();
    struct linebuf lb;
    linebuf_init(&lb, max_line);
    assert_int_equal(linebuf_feed(&lb, in, cut, record, r), 0);
    assert_int_equal(linebuf_feed(&lb, in + cut, total - cut, record, r), 0);
    if (r->count != 2)
        fail_msg("max_line %zu, frame %zu bytes cut at %zu: %zu frames", max_line, len, cut,
                 r->count);
    if (fits) {
        assert_int_equal(r->frames[0].kind, LINEBUF_LINE);
        assert_int_equal(r->frames[0].len, len);
        assert_memory_equal(r->frames[0].bytes, in, len);
    } else {
        if (r->frames[0].kind != LINEBUF_TOO_LONG)
            fail_msg("max_line %zu, frame %zu bytes cut at %zu: not TOO_LONG", max_line, len, cut);
        size_t head = len < LINEBUF_HEAD ? len : LINEBUF_HEAD;
        assert_int_equal(r->frames[0].len, head);
        assert_memory_equal(r->frames[0].bytes, in, head);
    }
    expect_line(r, 1, "next");
    assert_int_equal(linebuf_pending(&lb), 0);
    assert_null(lb.data);
    linebuf_free(&lb);
    recorder_free(r);
}

static void test_exact_limit(void **state)
{
    (void)state;
    const size_t max = 40; /* above LINEBUF_HEAD, so a full head is always available */
    char in[128];
    for (size_t len = max - 1; len <= max; len++) {
        make_long(in, len);
        memcpy(in + len, "\nnext\n", 7);
        size_t total = len + 6;
        for (size_t cut = 0; cut <= total; cut++)
            check_split(max, in, total, cut, len, len == max - 1);
        /* And byte at a time. */
        struct recorder *r = recorder_new();
        struct linebuf lb;
        linebuf_init(&lb, max);
        for (size_t i = 0; i < total; i++)
            assert_int_equal(linebuf_feed(&lb, in + i, 1, record, r), 0);
        assert_int_equal(r->count, 2);
        if (len == max - 1) {
            assert_int_equal(r->frames[0].kind, LINEBUF_LINE);
            assert_int_equal(r->frames[0].len, max - 1);
            assert_memory_equal(r->frames[0].bytes, in, max - 1);
        } else {
            expect_too_long(r, 0, in, LINEBUF_HEAD);
        }
        expect_line(r, 1, "next");
        linebuf_free(&lb);
        recorder_free(r);
    }
}

static void test_default_limit(void **state)
{
    (void)state;
    struct recorder *r = recorder_new();
    struct linebuf lb;
    linebuf_init(&lb, 4096);
    char *in = malloc(2 * 4097 + 8);
    assert_non_null(in);
    make_long(in, 4095);
    in[4095] = '\n';
    make_long(in + 4096, 4096);
    in[8192] = '\n';
    assert_int_equal(linebuf_feed(&lb, in, 8193, record, r), 0);
    assert_int_equal(r->count, 2);
    assert_int_equal(r->frames[0].kind, LINEBUF_LINE);
    assert_int_equal(r->frames[0].len, 4095);
    assert_memory_equal(r->frames[0].bytes, in, 4095);
    expect_too_long(r, 1, in + 4096, LINEBUF_HEAD);
    /* The same in reads of 1000 bytes. */
    recorder_clear(r);
    for (size_t off = 0; off < 8193; off += 1000)
        assert_int_equal(
            linebuf_feed(&lb, in + off, 8193 - off < 1000 ? 8193 - off : 1000, record, r), 0);
    assert_int_equal(r->count, 2);
    assert_int_equal(r->frames[0].kind, LINEBUF_LINE);
    assert_int_equal(r->frames[0].len, 4095);
    assert_memory_equal(r->frames[0].bytes, in, 4095);
    expect_too_long(r, 1, in + 4096, LINEBUF_HEAD);
    free(in);
    linebuf_free(&lb);
    recorder_free(r);
}

static void test_stop(void **state)
{
    (void)state;
    struct recorder *r = recorder_new();
    struct linebuf lb;
    linebuf_init(&lb, 64);
    r->stop_at = 2;
    r->stop_rc = 7;
    assert_int_equal(feed(&lb, "a\nb\nc\nd", r), 7);
    assert_int_equal(r->count, 2);
    expect_line(r, 0, "a");
    expect_line(r, 1, "b");
    linebuf_free(&lb);

    /* Stopping on a frame completed from a partial one. */
    recorder_clear(r);
    linebuf_init(&lb, 64);
    r->stop_at = 1;
    r->stop_rc = -5;
    assert_int_equal(feed(&lb, "par", r), 0);
    assert_int_equal(feed(&lb, "tial\nmore\n", r), -5);
    assert_int_equal(r->count, 1);
    expect_line(r, 0, "partial");
    linebuf_free(&lb);

    /* Stopping on an over-long frame. */
    recorder_clear(r);
    linebuf_init(&lb, 64);
    r->stop_at = 1;
    r->stop_rc = 1;
    char frame[101];
    make_long(frame, 100);
    char in[128];
    snprintf(in, sizeof in, "%s\nafter\n", frame);
    assert_int_equal(feed(&lb, in, r), 1);
    assert_int_equal(r->count, 1);
    expect_too_long(r, 0, frame, LINEBUF_HEAD);
    linebuf_free(&lb);

    /* The same, the over-long frame coming in two reads. */
    recorder_clear(r);
    linebuf_init(&lb, 64);
    r->stop_at = 1;
    r->stop_rc = 42;
    assert_int_equal(linebuf_feed(&lb, frame, 100, record, r), 0);
    assert_int_equal(feed(&lb, "\nafter\n", r), 42);
    assert_int_equal(r->count, 1);
    expect_too_long(r, 0, frame, LINEBUF_HEAD);
    linebuf_free(&lb);
    recorder_free(r);
}

static void test_pending_and_memory(void **state)
{
    (void)state;
    struct recorder *r = recorder_new();
    struct linebuf lb;
    linebuf_init(&lb, 64);
    assert_int_equal(linebuf_pending(&lb), 0);
    assert_null(lb.data);
    assert_int_equal(feed(&lb, "abc", r), 0);
    assert_int_equal(linebuf_pending(&lb), 3);
    assert_int_equal(feed(&lb, "de", r), 0);
    assert_int_equal(linebuf_pending(&lb), 5);
    assert_int_equal(feed(&lb, "f\n", r), 0);
    assert_int_equal(linebuf_pending(&lb), 0);
    assert_null(lb.data);
    expect_line(r, 0, "abcdef");
    assert_int_equal(feed(&lb, "gh\nij", r), 0);
    assert_int_equal(linebuf_pending(&lb), 2);
    assert_int_equal(feed(&lb, "\n", r), 0);
    assert_int_equal(linebuf_pending(&lb), 0);
    assert_null(lb.data);
    expect_line(r, 1, "gh");
    expect_line(r, 2, "ij");
    /* Complete frames only: nothing is ever held. */
    assert_int_equal(feed(&lb, "k\nl\n", r), 0);
    assert_null(lb.data);
    assert_int_equal(r->count, 5);
    /* A partial frame of max_line - 1 bytes is held (its LF may still come). */
    char frame[64];
    make_long(frame, 63);
    assert_int_equal(feed(&lb, frame, r), 0);
    assert_int_equal(linebuf_pending(&lb), 63);
    assert_true(lb.cap <= 64);
    assert_int_equal(feed(&lb, "\n", r), 0);
    assert_null(lb.data);
    expect_line(r, 5, frame);
    linebuf_free(&lb);
    recorder_free(r);
}

static void test_free_and_reuse(void **state)
{
    (void)state;
    struct recorder *r = recorder_new();
    struct linebuf lb;
    linebuf_init(&lb, 64);
    linebuf_free(&lb); /* freeing an idle buffer is harmless */
    linebuf_free(&lb);
    linebuf_init(&lb, 64);
    assert_int_equal(feed(&lb, "stale partial", r), 0);
    assert_int_equal(linebuf_pending(&lb), 13);
    linebuf_free(&lb);
    assert_null(lb.data);
    assert_int_equal(linebuf_pending(&lb), 0);
    linebuf_init(&lb, 64);
    assert_int_equal(feed(&lb, "fresh\n", r), 0);
    assert_int_equal(r->count, 1);
    expect_line(r, 0, "fresh");

    /* Freed in the middle of an over-long frame: the next frame is not dropped. */
    char frame[101];
    make_long(frame, 100);
    assert_int_equal(feed(&lb, frame, r), 0);
    linebuf_free(&lb);
    linebuf_init(&lb, 64);
    assert_int_equal(feed(&lb, "again\n", r), 0);
    assert_int_equal(r->count, 2);
    expect_line(r, 1, "again");
    linebuf_free(&lb);
    recorder_free(r);
}

/* A tiny deterministic PRNG (xorshift64*). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

/* Random frames (some empty, some over the limit) in random reads, against a model. */
static void test_random_streams(void **state)
{
    (void)state;
    enum { MAX = 48, NFRAMES = 300 };
    struct recorder *r = recorder_new();
    char *stream = malloc(NFRAMES * 200);
    size_t *lens = malloc(NFRAMES * sizeof *lens);
    size_t *starts = malloc(NFRAMES * sizeof *starts);
    assert_non_null(stream);
    assert_non_null(lens);
    assert_non_null(starts);
    for (int round = 0; round < 200; round++) {
        size_t total = 0;
        for (size_t i = 0; i < NFRAMES; i++) {
            size_t len;
            switch (rnd() % 6) {
            case 0:
                len = 0;
                break;
            case 1:
                len = MAX - 2 + rnd() % 4; /* around the limit */
                break;
            case 2:
                len = MAX + rnd() % 150;
                break;
            default:
                len = rnd() % MAX;
            }
            starts[i] = total;
            lens[i] = len;
            for (size_t j = 0; j < len; j++)
                stream[total++] = (char)(' ' + rnd() % 95);
            stream[total++] = '\n';
        }
        struct linebuf lb;
        linebuf_init(&lb, MAX);
        size_t max_read = 1 + rnd() % 300;
        for (size_t off = 0; off < total;) {
            size_t n = 1 + rnd() % max_read;
            if (n > total - off)
                n = total - off;
            assert_int_equal(linebuf_feed(&lb, stream + off, n, record, r), 0);
            assert_true(linebuf_pending(&lb) < MAX);
            assert_true(lb.cap <= MAX);
            off += n;
        }
        assert_int_equal(r->count, NFRAMES);
        for (size_t i = 0; i < NFRAMES; i++) {
            const struct frame *f = &r->frames[i];
            const char *want = stream + starts[i];
            if (lens[i] + 1 <= MAX) {
                if (f->kind != LINEBUF_LINE || f->len != lens[i] ||
                    memcmp(f->bytes, want, lens[i]) != 0)
                    fail_msg("round %d frame %zu (%zu bytes): wrong LINE", round, i, lens[i]);
            } else {
                size_t head = LINEBUF_HEAD;
                if (f->kind != LINEBUF_TOO_LONG || f->len != head ||
                    memcmp(f->bytes, want, head) != 0)
                    fail_msg("round %d frame %zu (%zu bytes): wrong TOO_LONG", round, i, lens[i]);
            }
        }
        assert_int_equal(linebuf_pending(&lb), 0);
        assert_null(lb.data);
        recorder_clear(r);
        linebuf_free(&lb);
    }
    free(stream);
    free(lens);
    free(starts);
    recorder_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_many_in_one_feed),
        cmocka_unit_test(test_empty_lines),
        cmocka_unit_test(test_too_long_one_feed),
        cmocka_unit_test(test_too_long_across_feeds),
        cmocka_unit_test(test_too_long_byte_at_a_time),
        cmocka_unit_test(test_too_long_small_limit),
        cmocka_unit_test(test_exact_limit),
        cmocka_unit_test(test_default_limit),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_pending_and_memory),
        cmocka_unit_test(test_free_and_reuse),
        cmocka_unit_test(test_random_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
