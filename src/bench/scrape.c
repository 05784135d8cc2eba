/* The /metrics reader of parley-bench; see scrape.h. */
#include "bench/scrape.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* The request: HTTP/1.0, so the server closes the connection after the answer. */
static const char scrape_request[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";

/* A value or bound longer than this (sign, digits, exponent) is refused. */
#define SCRAPE_MAX_NUMBER 64

/* ---- HTTP -------------------------------------------------------------------------------- */

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Sets SO_RCVTIMEO and SO_SNDTIMEO (SO_SNDTIMEO also bounds connect) to `ms`, at least 1. */
static int set_timeouts(int fd, double ms)
{
    if (ms < 1)
        ms = 1;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((long)ms % 1000 * 1000)};
    return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0 &&
                   setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0
               ? 0
               : -1;
}

/* Connects to 127.0.0.1:port and sends the request. Returns the socket or -1. */
static int open_request(int port, double timeout_ms, char *err, size_t errlen)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (set_timeouts(fd, timeout_ms) < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        send(fd, scrape_request, sizeof(scrape_request) - 1, MSG_NOSIGNAL) !=
            (ssize_t)(sizeof(scrape_request) - 1)) {
        snprintf(err, errlen, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads until the server closes, at most SCRAPE_MAX_BYTES, until `deadline` (ms). Returns the
 * bytes read into `buf` (SCRAPE_MAX_BYTES + 1 long) or -1. */
static long read_answer(int fd, char *buf, double deadline, char *err, size_t errlen)
{
    size_t n = 0;
    for (;;) {
        double left = deadline - mono_ms();
        if (left <= 0 || set_timeouts(fd, left) < 0) {
            snprintf(err, errlen, "no complete answer in time");
            return -1;
        }
        ssize_t r = recv(fd, buf + n, SCRAPE_MAX_BYTES + 1 - n, 0);
        if (r == 0)
            return (long)n;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            bool slow = errno == EAGAIN || errno == EWOULDBLOCK;
            snprintf(err, errlen, "%s", slow ? "no complete answer in time" : strerror(errno));
            return -1;
        }
        n += (size_t)r;
        if (n > SCRAPE_MAX_BYTES) {
            snprintf(err, errlen, "answer longer than %d bytes", SCRAPE_MAX_BYTES);
            return -1;
        }
    }
}

/* Finds "\r\n\r\n" in `s`; returns the offset just past it or 0. */
static size_t header_end(const char *s, size_t len)
{
    for (size_t i = 0; i + 4 <= len; i++)
        if (memcmp(s + i, "\r\n\r\n", 4) == 0)
            return i + 4;
    return 0;
}

/* The Content-Length of the header block `h` (`len` bytes): its value, -1 when there is none,
 * -2 when it is not a number. */
static long long content_length(const char *h, size_t len)
{
    static const char name[] = "\r\ncontent-length:";
    size_t nl = sizeof(name) - 1;
    for (size_t i = 0; i + nl <= len; i++) {
        if (strncasecmp(h + i, name, nl) != 0)
            continue;
        size_t j = i + nl;
        while (j < len && (h[j] == ' ' || h[j] == '\t'))
            j++;
        long long v = 0;
        size_t d0 = j;
        for (; j < len && h[j] >= '0' && h[j] <= '9' && v <= SCRAPE_MAX_BYTES; j++)
            v = v * 10 + (h[j] - '0');
        if (j == d0 || j >= len || (h[j] != '\r' && h[j] != ' '))
            return -2;
        return v;
    }
    return -1;
}

int scrape_response(const char *resp, size_t len, const char **body, size_t *body_len)
{
    /* "HTTP/1.x 200" then a blank or the end of the status line */
    if (len < 13 || memcmp(resp, "HTTP/1.", 7) != 0 || memcmp(resp + 8, " 200", 4) != 0 ||
        (resp[12] != ' ' && resp[12] != '\r'))
        return -1;
    size_t start = header_end(resp, len);
    if (!start)
        return -1;
    long long cl = content_length(resp, start - 2);
    if (cl == -2 || (cl >= 0 && (size_t)cl != len - start))
        return -1;
    *body = resp + start;
    *body_len = len - start;
    return 0;
}

int scrape_get(int port, int timeout_ms, char **body, size_t *len, char *err, size_t errlen)
{
    if (port <= 0 || port > 65535) {
        snprintf(err, errlen, "bad port %d", port);
        return -1;
    }
    double deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 1);
    char *buf = malloc(SCRAPE_MAX_BYTES + 1);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int fd = open_request(port, deadline - mono_ms(), err, errlen);
    long n = fd < 0 ? -1 : read_answer(fd, buf, deadline, err, errlen);
    if (fd >= 0)
        close(fd);
    const char *b = NULL;
    size_t bl = 0;
    if (n >= 0 && scrape_response(buf, (size_t)n, &b, &bl) < 0) {
        snprintf(err, errlen, "not an HTTP 200 answer with a whole body");
        n = -1;
    }
    if (n < 0) {
        free(buf);
        return -1;
    }
    memmove(buf, b, bl);
    buf[bl] = '\0';
    *body = buf;
    *len = bl;
    return 0;
}

/* ---- the text format --------------------------------------------------------------------- */

/* One sample line: name, the text between the braces (may be empty), the value. */
struct sample {
    const char *name;
    size_t name_len;
    const char *labels;
    size_t labels_len;
    double value;
};

static bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

static const char *skip_blanks(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/* Reads a name at *p (label names: no ':'); returns its length, 0 when there is none. */
static size_t read_name(const char **p, const char *end, bool label)
{
    const char *s = *p;
    while (*p < end && name_char(**p, *p == s) && !(label && **p == ':'))
        (*p)++;
    return (size_t)(*p - s);
}

/* Reads a quoted label value at *p (escapes \\, \" and \n); its raw text goes to *v, *vl. */
static bool read_quoted(const char **p, const char *end, const char **v, size_t *vl)
{
    if (*p >= end || **p != '"')
        return false;
    const char *s = ++*p;
    while (*p < end && **p != '"') {
        if (**p == '\\') {
            if (*p + 1 >= end || ((*p)[1] != '\\' && (*p)[1] != '"' && (*p)[1] != 'n'))
                return false;
            (*p)++;
        }
        (*p)++;
    }
    if (*p >= end)
        return false;
    *v = s;
    *vl = (size_t)(*p - s);
    (*p)++;
    return true;
}

/* Reads the next `name="value"` of a label list (the text between braces) at *p, and the comma
 * after it. Returns 1 with a label, 0 at the end of the list, -1 when it is malformed. */
static int label_next(const char **p, const char *end, const char **n, size_t *nl, const char **v,
                      size_t *vl)
{
    *p = skip_blanks(*p, end);
    if (*p >= end)
        return 0;
    *n = *p;
    *nl = read_name(p, end, true);
    if (*nl == 0)
        return -1;
    *p = skip_blanks(*p, end);
    if (*p >= end || **p != '=')
        return -1;
    *p = skip_blanks(*p + 1, end);
    if (!read_quoted(p, end, v, vl))
        return -1;
    *p = skip_blanks(*p, end);
    if (*p < end && **p != ',')
        return -1;
    if (*p < end)
        (*p)++;
    return 1;
}

/* Parses a number of `len` bytes (Prometheus: a float, "+Inf", "-Inf", "NaN"): true unless it
 * is malformed or out of the range of a double. */
static bool parse_number(const char *s, size_t len, double *out)
{
    char buf[SCRAPE_MAX_NUMBER + 1];
    if (len == 0 || len > SCRAPE_MAX_NUMBER)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *e;
    errno = 0;
    double v = strtod(buf, &e);
    if (*e != '\0' || isspace((unsigned char)buf[0]) || (errno == ERANGE && fabs(v) > 1.0))
        return false;
    *out = v;
    return true;
}

/* Checks a label list: every label well formed. */
static bool labels_ok(const char *p, const char *end)
{
    const char *n, *v;
    size_t nl, vl;
    int r;
    while ((r = label_next(&p, end, &n, &nl, &v, &vl)) == 1)
        ;
    return r == 0;
}

/* Reads the braces at *p; sets the span between them. */
static bool read_labels(const char **p, const char *end, struct sample *s)
{
    const char *open = *p + 1, *q = open;
    bool quoted = false;
    for (; q < end && (quoted || *q != '}'); q++) {
        if (quoted && *q == '\\' && q + 1 < end)
            q++;
        else if (*q == '"')
            quoted = !quoted;
    }
    if (q >= end || !labels_ok(open, q))
        return false;
    s->labels = open;
    s->labels_len = (size_t)(q - open);
    *p = q + 1;
    return true;
}

/* Reads a token up to the next blank or the end. */
static size_t token(const char **p, const char *end)
{
    const char *s = *p;
    while (*p < end && **p != ' ' && **p != '\t')
        (*p)++;
    return (size_t)(*p - s);
}

/* Parses one line without its '\n': SCRAPE_OK with a sample in `s`, SCRAPE_MISSING for a
 * comment or a blank line, SCRAPE_BAD. */
static enum scrape_status parse_line(const char *p, const char *end, struct sample *s)
{
    p = skip_blanks(p, end);
    if (p == end || *p == '#')
        return SCRAPE_MISSING;
    memset(s, 0, sizeof(*s));
    s->name = p;
    s->name_len = read_name(&p, end, false);
    if (s->name_len == 0 || (p < end && *p == '{' && !read_labels(&p, end, s)))
        return SCRAPE_BAD;
    const char *v = skip_blanks(p, end);
    if (v == p)
        return SCRAPE_BAD;
    size_t vl = token(&v, end);
    if (!parse_number(v - vl, vl, &s->value))
        return SCRAPE_BAD;
    const char *ts = skip_blanks(v, end);
    size_t tl = token(&ts, end);
    double t;
    if (tl && !parse_number(ts - tl, tl, &t)) /* an optional timestamp */
        return SCRAPE_BAD;
    return skip_blanks(ts, end) == end ? SCRAPE_OK : SCRAPE_BAD;
}

typedef enum scrape_status (*sample_fn)(const struct sample *s, void *ctx);

/* Calls `fn` on every sample of `text`; every line must be well formed and end with '\n'. */
static enum scrape_status walk(const char *text, size_t len, sample_fn fn, void *ctx)
{
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return SCRAPE_BAD; /* truncated */
        struct sample s;
        enum scrape_status r = parse_line(p, nl, &s);
        if (r == SCRAPE_BAD || (r == SCRAPE_OK && fn(&s, ctx) != SCRAPE_OK))
            return SCRAPE_BAD;
        p = nl + 1;
    }
    return SCRAPE_OK;
}

static bool name_is(const struct sample *s, const char *name, const char *suffix)
{
    size_t a = strlen(name), b = strlen(suffix);
    return s->name_len == a + b && memcmp(s->name, name, a) == 0 &&
           memcmp(s->name + a, suffix, b) == 0;
}

struct sum_ctx {
    const char *family;
    double sum;
    size_t found;
};

static enum scrape_status sum_one(const struct sample *s, void *ctx)
{
    struct sum_ctx *c = ctx;
    if (!name_is(s, c->family, ""))
        return SCRAPE_OK;
    if (!isfinite(s->value))
        return SCRAPE_BAD;
    c->sum += s->value;
    c->found++;
    return SCRAPE_OK;
}

enum scrape_status scrape_sum(const char *text, size_t len, const char *family, double *out)
{
    struct sum_ctx c = {family, 0, 0};
    if (walk(text, len, sum_one, &c) != SCRAPE_OK || !isfinite(c.sum))
        return SCRAPE_BAD;
    if (!c.found)
        return SCRAPE_MISSING;
    *out = c.sum;
    return SCRAPE_OK;
}

/* The `le` bound of a bucket sample. */
static bool bucket_bound(const struct sample *s, double *le)
{
    const char *p = s->labels, *end = s->labels + s->labels_len, *n, *v;
    size_t nl, vl;
    while (label_next(&p, end, &n, &nl, &v, &vl) == 1)
        if (nl == 2 && memcmp(n, "le", 2) == 0)
            return parse_number(v, vl, le) && !isnan(*le);
    return false;
}

struct hist_ctx {
    const char *family;
    struct scrape_hist *h;
};

/* Adds `count` to the bucket of bound `le`, inserted in order when new. */
static bool hist_add_bucket(struct scrape_hist *h, double le, double count)
{
    size_t i = 0;
    while (i < h->n && h->le[i] < le)
        i++;
    if (i < h->n && h->le[i] == le) {
        h->cum[i] += count;
        return true;
    }
    if (h->n >= SCRAPE_MAX_BUCKETS)
        return false;
    memmove(&h->le[i + 1], &h->le[i], (h->n - i) * sizeof(double));
    memmove(&h->cum[i + 1], &h->cum[i], (h->n - i) * sizeof(double));
    h->le[i] = le;
    h->cum[i] = count;
    h->n++;
    return true;
}

static enum scrape_status bucket_one(const struct sample *s, void *ctx)
{
    struct hist_ctx *c = ctx;
    if (!name_is(s, c->family, "_bucket"))
        return SCRAPE_OK;
    double le;
    if (!bucket_bound(s, &le) || !isfinite(s->value) || s->value < 0 ||
        !hist_add_bucket(c->h, le, s->value))
        return SCRAPE_BAD;
    return SCRAPE_OK;
}

/* Cumulative counts never go down, and the last bound is +Inf. */
static bool hist_ok(const struct scrape_hist *h)
{
    if (h->n == 0 || !isinf(h->le[h->n - 1]) || h->le[h->n - 1] < 0)
        return false;
    for (size_t i = 1; i < h->n; i++)
        if (h->cum[i] < h->cum[i - 1])
            return false;
    return true;
}

enum scrape_status scrape_histogram(const char *text, size_t len, const char *family,
                                    struct scrape_hist *h)
{
    memset(h, 0, sizeof(*h));
    struct hist_ctx c = {family, h};
    enum scrape_status r = walk(text, len, bucket_one, &c);
    if (r == SCRAPE_OK && h->n == 0)
        return SCRAPE_MISSING;
    if (r != SCRAPE_OK || !hist_ok(h)) {
        memset(h, 0, sizeof(*h));
        return SCRAPE_BAD;
    }
    return SCRAPE_OK;
}

/* ---- histogram arithmetic ---------------------------------------------------------------- */

static bool same_bounds(const struct scrape_hist *a, const struct scrape_hist *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (a->le[i] != b->le[i])
            return false;
    return true;
}

int scrape_hist_delta(const struct scrape_hist *before, const struct scrape_hist *after,
                      struct scrape_hist *out)
{
    if (!same_bounds(before, after) || after->n == 0)
        return -1;
    struct scrape_hist d = *after;
    for (size_t i = 0; i < d.n; i++) {
        d.cum[i] -= before->cum[i];
        if (d.cum[i] < 0 || (i > 0 && d.cum[i] < d.cum[i - 1]))
            return -1;
    }
    *out = d;
    return 0;
}

int scrape_hist_merge(struct scrape_hist *into, const struct scrape_hist *h)
{
    if (into->n == 0) {
        *into = *h;
        return 0;
    }
    if (!same_bounds(into, h))
        return -1;
    for (size_t i = 0; i < h->n; i++)
        into->cum[i] += h->cum[i];
    return 0;
}

double scrape_hist_count(const struct scrape_hist *h)
{
    return h->n ? h->cum[h->n - 1] : 0;
}

double scrape_hist_quantile(const struct scrape_hist *h, double q)
{
    double total = scrape_hist_count(h);
    if (total <= 0)
        return 0;
    double rank = q * total;
    size_t i = 0;
    while (i + 1 < h->n && h->cum[i] < rank)
        i++;
    if (isinf(h->le[i]))
        return i > 0 ? h->le[i - 1] : 0;
    double lo = i > 0 ? h->le[i - 1] : 0, below = i > 0 ? h->cum[i - 1] : 0;
    if (i == 0 && h->le[0] <= 0)
        return h->le[0];
    return lo + (h->le[i] - lo) * (rank - below) / (h->cum[i] - below);
}

double scrape_hist_max_bound(const struct scrape_hist *h)
{
    for (size_t i = h->n; i-- > 0;)
        if (h->cum[i] > (i > 0 ? h->cum[i - 1] : 0))
            return h->le[i];
    return 0;
}

double scrape_hist_above(const struct scrape_hist *h, double bound)
{
    double total = scrape_hist_count(h), below = 0;
    for (size_t i = 0; i < h->n && h->le[i] <= bound; i++)
        below = h->cum[i];
    return total - below;
}
