/* Counters, histograms and their HTTP endpoint; see metrics.h. */
#include "server/metrics.h"

#include <assert.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Error codes are three digits (PROTOCOL.md §6): one counter each. */
#define METRICS_CODE_LIMIT 1000
/* A scraper has this long to send its request and read the answer. */
#define METRICS_HTTP_TIMEOUT_SEC 10
/* Requests are a line and a few headers; a larger one is refused. */
#define METRICS_MAX_HEADERS 8192

/* How a counter is shown: its family, its labels, and the family's help text. */
struct metrics_series {
    const char *family;
    const char *labels;
    const char *help;
};

static const struct metrics_series metrics_counter_series[METRICS_COUNTER_COUNT] = {
    [METRICS_LOGIN_OK] = {"parley_logins_total", "{outcome=\"ok\"}", "Logins by outcome."},
    [METRICS_LOGIN_WRONG_PASSWORD] = {"parley_logins_total", "{outcome=\"wrong_password\"}", ""},
    [METRICS_LOGIN_LOCKED] = {"parley_logins_total", "{outcome=\"locked\"}", ""},
    [METRICS_LOGIN_UNKNOWN] = {"parley_logins_total", "{outcome=\"unknown\"}", ""},
    [METRICS_MSG_ACCEPTED] = {"parley_messages_accepted_total", "",
                              "Direct messages accepted (stored)."},
    [METRICS_MSG_DELIVERED] = {"parley_messages_delivered_total", "",
                               "Direct messages written to their recipient."},
    [METRICS_MSG_ACKNOWLEDGED] = {"parley_acknowledgements_total", "",
                                  "Acknowledgements that removed delivered messages."},
    [METRICS_BROADCASTS] = {"parley_broadcasts_total", "", "Broadcasts sent."},
    [METRICS_BROADCAST_DELIVERY] = {"parley_broadcast_deliveries_total", "",
                                    "Copies of broadcasts written to users."},
    [METRICS_P2P_BROKERED] = {"parley_p2p_sessions_brokered_total", "",
                              "Private sessions brokered."},
    [METRICS_LOGIN_HELD] = {"parley_logins_held_total", "",
                            "Password checks that waited while presence notices were behind."},
    [METRICS_EVENTS_PAUSED] = {"parley_event_reads_paused_total", "",
                               "Times the event stream was left unread while presence notices "
                               "were behind (cluster)."},
};

static const struct metrics_series metrics_histogram_series[METRICS_HISTOGRAM_COUNT] = {
    [METRICS_STORE_COMMIT] = {"parley_store_commit_duration_seconds", "",
                              "Time of one group commit of the store."},
    [METRICS_LOOP_ITERATION] = {"parley_loop_iteration_duration_seconds", "",
                                "CPU time of one event-loop iteration (waiting excluded)."},
};

/* Upper bounds of the histogram buckets, in seconds (+Inf is implied). */
static const double metrics_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                        0.005,  0.01,    0.025,  0.1,   1.0};
#define METRICS_BUCKETS (sizeof metrics_bounds / sizeof metrics_bounds[0])

struct metrics_hist {
    unsigned long long bucket[METRICS_BUCKETS]; /* observations <= the bound (not cumulative) */
    unsigned long long count;
    double sum;
};

/* The one set of metrics of the process. */
static struct {
    unsigned long long counter[METRICS_COUNTER_COUNT];
    unsigned long long refused[METRICS_CODE_LIMIT];
    struct metrics_hist hist[METRICS_HISTOGRAM_COUNT];
    double start_time;
    struct evhttp *http;
    metrics_gauges_fn gauges;
    void *ctx;
} metrics;

void metrics_count(enum metrics_counter c)
{
    metrics_add(c, 1);
}

void metrics_add(enum metrics_counter c, unsigned long long n)
{
    assert(c >= 0 && c < METRICS_COUNTER_COUNT);
    metrics.counter[c] += n;
}

void metrics_refused(int code)
{
    assert(code >= 0 && code < METRICS_CODE_LIMIT);
    metrics.refused[code]++;
}

void metrics_observe(enum metrics_histogram h, double seconds)
{
    assert(h >= 0 && h < METRICS_HISTOGRAM_COUNT);
    struct metrics_hist *m = &metrics.hist[h];
    size_t i = 0;
    while (i < METRICS_BUCKETS && seconds > metrics_bounds[i])
        i++;
    if (i < METRICS_BUCKETS)
        m->bucket[i]++;
    m->count++;
    m->sum += seconds;
}

/* Writes the HELP and TYPE lines of a family; a counter's family is named without `_total`. */
static void render_family(struct evbuffer *b, const char *family, const char *type,
                          const char *help)
{
    size_t len = strlen(family), suffix = strlen("_total");
    if (strcmp(type, "counter") == 0 && len > suffix &&
        strcmp(family + len - suffix, "_total") == 0)
        len -= suffix;
    evbuffer_add_printf(b, "# HELP %.*s %s\n# TYPE %.*s %s\n", (int)len, family, help, (int)len,
                        family, type);
}

static void render_counters(struct evbuffer *b)
{
    for (size_t i = 0; i < METRICS_COUNTER_COUNT; i++) {
        const struct metrics_series *s = &metrics_counter_series[i];
        if (i == 0 || strcmp(s->family, metrics_counter_series[i - 1].family) != 0)
            render_family(b, s->family, "counter", s->help);
        evbuffer_add_printf(b, "%s%s %llu\n", s->family, s->labels, metrics.counter[i]);
    }
    render_family(b, "parley_errors_total", "counter", "Error replies by protocol error code.");
    for (int code = 0; code < METRICS_CODE_LIMIT; code++)
        if (metrics.refused[code])
            evbuffer_add_printf(b, "parley_errors_total{code=\"%d\"} %llu\n", code,
                                metrics.refused[code]);
}

static void render_histograms(struct evbuffer *b)
{
    for (size_t h = 0; h < METRICS_HISTOGRAM_COUNT; h++) {
        const struct metrics_series *s = &metrics_histogram_series[h];
        const struct metrics_hist *m = &metrics.hist[h];
        render_family(b, s->family, "histogram", s->help);
        unsigned long long cumulative = 0;
        for (size_t i = 0; i < METRICS_BUCKETS; i++) {
            cumulative += m->bucket[i];
            evbuffer_add_printf(b, "%s_bucket{le=\"%g\"} %llu\n", s->family, metrics_bounds[i],
                                cumulative);
        }
        evbuffer_add_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9f\n%s_count %llu\n",
                            s->family, m->count, s->family, m->sum, s->family, m->count);
    }
}

static void render_gauge(struct evbuffer *b, const char *family, const char *type, const char *help,
                         unsigned long long v)
{
    render_family(b, family, type, help);
    evbuffer_add_printf(b, "%s %llu\n", family, v);
}

static void render_gauges(struct evbuffer *b, const struct metrics_gauges *g)
{
    render_gauge(b, "parley_connections", "gauge", "Connections open.", g->connections);
    render_family(b, "parley_sessions", "gauge", "Sessions by state.");
    evbuffer_add_printf(b,
                        "parley_sessions{state=\"hello\"} %zu\n"
                        "parley_sessions{state=\"login\"} %zu\n"
                        "parley_sessions{state=\"online\"} %zu\n",
                        g->sessions_hello, g->sessions_login, g->sessions_online);
    render_gauge(b, "parley_connections_accepted_total", "counter", "Connections accepted.",
                 g->accepted);
    render_gauge(b, "parley_connections_refused_total", "counter", "Connections refused (limits).",
                 g->refused);
    render_gauge(b, "parley_clients_cut_off_total", "counter",
                 "Clients closed for more output queued than --max-output.", g->cut_off);
    render_gauge(b, "parley_received_bytes_total", "counter", "Bytes read from clients.",
                 g->bytes_in);
    render_gauge(b, "parley_sent_bytes_total", "counter", "Bytes written to clients.",
                 g->bytes_out);
    render_gauge(b, "parley_socket_reads_total", "counter",
                 "Reads from client sockets that returned bytes.", g->reads);
    render_gauge(b, "parley_socket_writes_total", "counter",
                 "Writes to client sockets that took bytes.", g->writes);
    render_gauge(b, "parley_output_queued_bytes", "gauge",
                 "Bytes waiting to be written to clients.", g->output_queued);
    render_gauge(b, "parley_hash_jobs", "gauge", "Password hashes queued or running.",
                 g->hash_jobs);
    render_gauge(b, "parley_messages_waiting", "gauge",
                 "Direct messages in the store waiting for their recipient.",
                 (unsigned long long)(g->waiting_messages > 0 ? g->waiting_messages : 0));
    render_gauge(b, "parley_messages_waiting_bytes", "gauge",
                 "Sender and body bytes of the messages waiting.", g->waiting_bytes);
    render_gauge(b, "parley_store_writable", "gauge", "1 while the store accepts writes.",
                 g->store_writable);
}

static void render_process(struct evbuffer *b)
{
    render_family(b, "parley_start_time_seconds", "gauge", "Start time, unix seconds.");
    evbuffer_add_printf(b, "parley_start_time_seconds %.3f\n", metrics.start_time);
    render_family(b, "parley_build_info", "gauge", "The version of this parleyd.");
    evbuffer_add_printf(b, "parley_build_info{version=\"%s\"} 1\n", PARLEY_VERSION);
}

static void read_gauges(struct metrics_gauges *g)
{
    memset(g, 0, sizeof(*g));
    metrics.gauges(metrics.ctx, g);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct metrics_gauges g;
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    read_gauges(&g);
    render_counters(b);
    render_histograms(b);
    render_gauges(b, &g);
    render_process(b);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, HTTP_OK, "OK", b);
    evbuffer_free(b);
}

static void on_healthz(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct metrics_gauges g;
    read_gauges(&g);
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    evbuffer_add_printf(b, "%s\n", g.store_writable ? "ok" : "store unwritable");
    if (g.store_writable)
        evhttp_send_reply(req, HTTP_OK, "OK", b);
    else
        evhttp_send_reply(req, HTTP_SERVUNAVAIL, "Service Unavailable", b);
    evbuffer_free(b);
}

int metrics_parse_addr(const char *s, char host[METRICS_ADDR_MAX], int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return -1;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end || p < 0 || p > 65535)
        return -1;
    size_t len = (size_t)(colon - s);
    if (s[0] == '[' && len >= 2 && s[len - 1] == ']') {
        s++;
        len -= 2;
    }
    if (len == 0 || len >= METRICS_ADDR_MAX)
        return -1;
    memcpy(host, s, len);
    host[len] = '\0';
    *port = (int)p;
    return 0;
}

static int metrics_listen(const char *addr_port, char *err, size_t errlen)
{
    char host[METRICS_ADDR_MAX];
    int port;
    if (metrics_parse_addr(addr_port, host, &port) < 0) {
        snprintf(err, errlen, "--metrics %s: expected ADDR:PORT", addr_port);
        return -1;
    }
    evhttp_set_allowed_methods(metrics.http, EVHTTP_REQ_GET);
    evhttp_set_timeout(metrics.http, METRICS_HTTP_TIMEOUT_SEC);
    evhttp_set_max_headers_size(metrics.http, METRICS_MAX_HEADERS);
    evhttp_set_max_body_size(metrics.http, 0);
    if (evhttp_set_cb(metrics.http, "/metrics", on_metrics, NULL) < 0 ||
        evhttp_set_cb(metrics.http, "/healthz", on_healthz, NULL) < 0 ||
        !evhttp_bind_socket_with_handle(metrics.http, host, (uint16_t)port)) {
        snprintf(err, errlen, "--metrics %s: cannot listen", addr_port);
        return -1;
    }
    return 0;
}

int metrics_start(struct event_base *base, const char *addr_port, metrics_gauges_fn fn, void *ctx,
                  char *err, size_t errlen)
{
    assert(!metrics.http && fn);
    metrics.start_time = (double)time(NULL);
    metrics.gauges = fn;
    metrics.ctx = ctx;
    metrics.http = evhttp_new(base);
    if (!metrics.http) {
        snprintf(err, errlen, "--metrics: out of memory");
        return -1;
    }
    if (metrics_listen(addr_port, err, errlen) < 0)
        goto fail;
    return 0;
fail:
    metrics_stop();
    return -1;
}

void metrics_stop(void)
{
    if (metrics.http)
        evhttp_free(metrics.http);
    metrics.http = NULL;
}
