/* parley-bench's reader of a server's /metrics (docs/PERFORMANCE.md §12): one bounded HTTP/1.0
 * GET on 127.0.0.1 with a timeout, and a parser of the Prometheus text format as far as
 * parleyd's output needs it: `name{labels} value` lines (`#` lines skipped), the sum of a
 * family over its labels, and a histogram's `_bucket{le="..."}` lines as bounds and cumulative
 * counts. Every function checks the whole text: bad or truncated input is an error, never a
 * crash, and nothing is read past the given length. */
#ifndef PARLEY_BENCH_SCRAPE_H
#define PARLEY_BENCH_SCRAPE_H

#include <stddef.h>

/* The longest answer read (headers and body); a longer one is an error. */
#define SCRAPE_MAX_BYTES (1024 * 1024)
/* Histogram buckets kept, +Inf included (parleyd has 11). */
#define SCRAPE_MAX_BUCKETS 32

/* What the parser functions return. */
enum scrape_status {
    SCRAPE_OK = 0,
    SCRAPE_BAD = -1,     /* not the text format, truncated, or a value out of range */
    SCRAPE_MISSING = -2, /* well formed, but no sample of that family */
};

/* A histogram: le[i] is the upper bound of bucket i (increasing; the last is +Inf) and cum[i]
 * the observations <= le[i] (non-decreasing; cum[n - 1] is the count). */
struct scrape_hist {
    size_t n;
    double le[SCRAPE_MAX_BUCKETS];
    double cum[SCRAPE_MAX_BUCKETS];
};

/* GETs http://127.0.0.1:`port`/metrics, waiting `timeout_ms` at most in all. On success
 * returns 0 and sets `*body` (malloc'd, NUL-terminated, the caller frees it) and `*len`; else
 * returns -1 with a message in `err`. */
int scrape_get(int port, int timeout_ms, char **body, size_t *len, char *err, size_t errlen);

/* Splits an HTTP answer of `len` bytes: the status must be 200 and, when a Content-Length is
 * given, the body as long. Sets `*body` and `*body_len` (inside `resp`); returns 0 or -1. */
int scrape_response(const char *resp, size_t len, const char **body, size_t *body_len);

/* Sums the samples of `family` (the exact metric name, any labels) in `text`. */
enum scrape_status scrape_sum(const char *text, size_t len, const char *family, double *out);

/* Reads the `<family>_bucket` samples of `text` into `h`; samples of the same bound with other
 * labels are added together. There must be a +Inf bucket. */
enum scrape_status scrape_histogram(const char *text, size_t len, const char *family,
                                    struct scrape_hist *h);

/* `*out` = `after` - `before` bucket by bucket (the same bounds; no count may go back).
 * Returns 0, or -1 when the two do not fit (other bounds, or a restarted server). */
int scrape_hist_delta(const struct scrape_hist *before, const struct scrape_hist *after,
                      struct scrape_hist *out);

/* Adds `h` to `into` (the same bounds; an empty `into`, n == 0, takes h's). Returns 0 or -1. */
int scrape_hist_merge(struct scrape_hist *into, const struct scrape_hist *h);

/* The number of observations. */
double scrape_hist_count(const struct scrape_hist *h);

/* The q-quantile (0 < q <= 1), interpolated linearly inside its bucket (the first bucket from
 * 0); in the +Inf bucket, the highest finite bound. 0 when the histogram is empty. */
double scrape_hist_quantile(const struct scrape_hist *h, double q);

/* The upper bound of the highest bucket with an observation (+Inf possible), 0 when empty. */
double scrape_hist_max_bound(const struct scrape_hist *h);

/* Observations above `bound`, counted from the highest bucket bound <= `bound` (exact when
 * `bound` is one of the bounds). */
double scrape_hist_above(const struct scrape_hist *h, double bound);

#endif
