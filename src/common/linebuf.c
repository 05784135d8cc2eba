/* Frame splitting with a hard limit; see linebuf.h. */
#include "common/linebuf.h"

#include <stdlib.h>
#include <string.h>

void linebuf_init(struct linebuf *lb, size_t max_line)
{
    memset(lb, 0, sizeof(*lb));
    lb->max_line = max_line < 2 ? 2 : max_line;
}

size_t linebuf_pending(const struct linebuf *lb)
{
    return lb->discarding ? 0 : lb->len;
}

void linebuf_free(struct linebuf *lb)
{
    free(lb->data);
    lb->data = NULL;
    lb->len = lb->cap = 0;
    lb->discarding = false;
}

static void remember_head(struct linebuf *lb, const char *a, size_t alen, const char *b,
                          size_t blen)
{
    size_t n = alen < LINEBUF_HEAD ? alen : LINEBUF_HEAD;
    memcpy(lb->head, a, n);
    size_t m = blen < LINEBUF_HEAD - n ? blen : LINEBUF_HEAD - n;
    if (m > 0)
        memcpy(lb->head + n, b, m);
    lb->head_len = (unsigned char)(n + m);
}

static int append(struct linebuf *lb, const char *p, size_t n)
{
    if (lb->len + n > lb->cap) {
        size_t cap = lb->cap ? lb->cap : 256;
        while (cap < lb->len + n)
            cap *= 2;
        if (cap > lb->max_line)
            cap = lb->max_line;
        char *d = realloc(lb->data, cap);
        if (!d)
            return -1;
        lb->data = d;
        lb->cap = cap;
    }
    memcpy(lb->data + lb->len, p, n);
    lb->len += n;
    return 0;
}

/* Starts dropping an over-long frame whose first bytes are a then b. */
static void start_discard(struct linebuf *lb, const char *a, size_t alen, const char *b,
                          size_t blen)
{
    remember_head(lb, a, alen, b, blen);
    free(lb->data);
    lb->data = NULL;
    lb->len = lb->cap = 0;
    lb->discarding = true;
}

/* Handles the bytes up to (not including) an LF found at `nl`. */
static int complete_frame(struct linebuf *lb, const char *p, size_t n, linebuf_fn fn, void *ctx)
{
    if (lb->discarding) {
        lb->discarding = false;
        return fn(ctx, LINEBUF_TOO_LONG, lb->head, lb->head_len);
    }
    if (lb->len == 0) {
        if (n + 1 > lb->max_line) {
            remember_head(lb, p, n, NULL, 0);
            return fn(ctx, LINEBUF_TOO_LONG, lb->head, lb->head_len);
        }
        return fn(ctx, LINEBUF_LINE, p, n);
    }
    if (lb->len + n + 1 > lb->max_line) {
        remember_head(lb, lb->data, lb->len, p, n);
        linebuf_free(lb);
        return fn(ctx, LINEBUF_TOO_LONG, lb->head, lb->head_len);
    }
    if (append(lb, p, n) < 0)
        return -1;
    char *line = lb->data;
    size_t len = lb->len;
    lb->data = NULL;
    lb->len = lb->cap = 0;
    int rc = fn(ctx, LINEBUF_LINE, line, len);
    free(line);
    return rc;
}

/* Keeps the tail of the input that has no LF yet. */
static int keep_partial(struct linebuf *lb, const char *p, size_t n)
{
    if (lb->discarding || n == 0)
        return 0;
    if (lb->len + n + 1 > lb->max_line) {
        start_discard(lb, lb->data ? lb->data : p, lb->data ? lb->len : n, lb->data ? p : NULL,
                      lb->data ? n : 0);
        return 0;
    }
    return append(lb, p, n);
}

int linebuf_feed(struct linebuf *lb, const char *data, size_t len, linebuf_fn fn, void *ctx)
{
    const char *p = data;
    const char *end = data + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return keep_partial(lb, p, (size_t)(end - p));
        int rc = complete_frame(lb, p, (size_t)(nl - p), fn, ctx);
        if (rc != 0)
            return rc;
        p = nl + 1;
    }
    return 0;
}
