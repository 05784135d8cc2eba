/* Splits a byte stream into LF-terminated frames with a hard length limit. Used by every
 * program that reads the Parley protocol. */
#ifndef PARLEY_LINEBUF_H
#define PARLEY_LINEBUF_H

#include <stdbool.h>
#include <stddef.h>

/* Bytes of an over-long frame kept so the reader can still answer its tag. */
#define LINEBUF_HEAD 24

/* What a linebuf callback is handed. */
enum linebuf_kind {
    LINEBUF_LINE,     /* a complete frame, without its LF */
    LINEBUF_TOO_LONG, /* a frame over the limit was dropped; the bytes are its first ones */
};

/* Called once per frame, in order. Returns 0 to go on, non-zero to stop reading (the rest of
 * the input is dropped; the reader is usually closing). */
typedef int (*linebuf_fn)(void *ctx, enum linebuf_kind kind, const char *line, size_t len);

/* Holds a partial frame between reads. Memory is allocated only while a partial frame is
 * pending and freed as soon as it completes, so an idle reader costs no heap. */
struct linebuf {
    char *data;
    size_t len;
    size_t cap;
    size_t max_line; /* frame limit in bytes, LF included */
    unsigned char head_len;
    bool discarding; /* inside an over-long frame: drop bytes up to the next LF */
    char head[LINEBUF_HEAD];
};

/* Prepares an empty buffer for frames of at most `max_line` bytes (LF included). */
void linebuf_init(struct linebuf *lb, size_t max_line);

/* Feeds `len` bytes and calls `fn` for each complete frame. Returns non-zero when `fn` asked to
 * stop (then `lb` must not be fed again), 0 otherwise. Returns -1 on allocation failure. */
int linebuf_feed(struct linebuf *lb, const char *data, size_t len, linebuf_fn fn, void *ctx);

/* Returns the number of bytes of a partial frame held. */
size_t linebuf_pending(const struct linebuf *lb);

/* Frees what the buffer holds; it can be initialised again. */
void linebuf_free(struct linebuf *lb);

#endif
