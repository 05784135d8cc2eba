/* What an operator sees inside parleyd (issue 14): counters and histograms that the chat layer
 * feeds through the small functions below, and, with --metrics ADDR:PORT, libevent's HTTP
 * server on the server's own loop serving them at /metrics (Prometheus text format) and a
 * health check at /healthz. The chat layer never sees the HTTP server; values it does not
 * count (connections open, sessions by state, hash jobs) are read when scraped, through the
 * callback given to metrics_start. */
#ifndef PARLEY_METRICS_H
#define PARLEY_METRICS_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;

/* The counters; each is a `parley_..._total` series (metrics.c names them). */
enum metrics_counter {
    METRICS_LOGIN_OK = 0,
    METRICS_LOGIN_WRONG_PASSWORD = 1,
    METRICS_LOGIN_LOCKED = 2,
    METRICS_LOGIN_UNKNOWN = 3,
    METRICS_MSG_ACCEPTED = 4,       /* direct messages stored */
    METRICS_MSG_DELIVERED = 5,      /* direct messages written to a recipient */
    METRICS_MSG_ACKNOWLEDGED = 6,   /* acknowledgements that removed messages */
    METRICS_BROADCASTS = 7,         /* broadcasts sent */
    METRICS_BROADCAST_DELIVERY = 8, /* copies of them written to users */
    METRICS_P2P_BROKERED = 9,       /* private sessions the server brokered */
    METRICS_LOGIN_HELD = 10,        /* password checks that waited for presence notices */
    METRICS_EVENTS_PAUSED = 11,     /* times a cluster node stopped reading its event stream */
    METRICS_COUNTER_COUNT = 12,
};

/* The histograms, in seconds. */
enum metrics_histogram {
    METRICS_STORE_COMMIT = 0,   /* one group commit */
    METRICS_LOOP_ITERATION = 1, /* the loop thread's CPU time for one iteration */
    METRICS_HISTOGRAM_COUNT = 2,
};

/* What the server reports when scraped: values it keeps itself. */
struct metrics_gauges {
    size_t connections;                                     /* open */
    size_t sessions_hello, sessions_login, sessions_online; /* by state */
    unsigned long long accepted, refused;                   /* connections so far */
    unsigned long long cut_off; /* clients closed for output over --max-output */
    unsigned long long bytes_in, bytes_out;
    unsigned long long reads, writes; /* socket reads and writes that moved bytes */
    size_t output_queued;             /* bytes waiting to be written to clients */
    size_t hash_jobs;                 /* password hashes queued or running */
    long long waiting_messages;       /* in the store, for every recipient */
    unsigned long long waiting_bytes; /* their senders and bodies */
    bool store_writable;
};

/* Fills the gauges at scrape time. */
typedef void (*metrics_gauges_fn)(void *ctx, struct metrics_gauges *out);

/* Adds one to a counter. */
void metrics_count(enum metrics_counter c);

/* Adds `n` to a counter. */
void metrics_add(enum metrics_counter c, unsigned long long n);

/* Counts an error reply (`ERR code`) by its code. */
void metrics_refused(int code);

/* Records one observation of `seconds` in a histogram. */
void metrics_observe(enum metrics_histogram h, double seconds);

/* The longest host part of a --metrics address, its terminating NUL included. */
#define METRICS_ADDR_MAX 256

/* Splits "host:port" or "[v6]:port" into `host` and `*port` (0 to 65535). Returns 0, or -1
 * when `s` is not of that form. */
int metrics_parse_addr(const char *s, char host[METRICS_ADDR_MAX], int *port);

/* Serves /metrics and /healthz on `addr_port` ("127.0.0.1:9464", "[::1]:9464") on `base`,
 * reading the gauges through `fn`. Returns 0, or -1 with a message in `err`. Without a call,
 * the counters still count and nothing listens. */
int metrics_start(struct event_base *base, const char *addr_port, metrics_gauges_fn fn, void *ctx,
                  char *err, size_t errlen);

/* Stops serving (nothing when metrics_start was not called). */
void metrics_stop(void);

#endif
