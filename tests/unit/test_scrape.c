/* Unit tests of src/bench/scrape.c: parleyd's /metrics text is read (sums over labels, the
 * histograms), the histogram arithmetic the bench reports (delta, merge, p99 by interpolation,
 * the highest bucket, iterations over 1 ms), and bad input of every kind is an error and never
 * a crash: junk, truncated text, numbers out of range, a missing family, HTTP answers that are
 * not a whole 200, a server that does not answer in time or answers too much. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/scrape.h"

/* A part of what parleyd serves (src/server/metrics.c), with its comments. */
static const char parley_text[] =
    "# HELP parley_logins Logins by outcome.\n"
    "# TYPE parley_logins counter\n"
    "parley_logins_total{outcome=\"ok\"} 12\n"
    "parley_logins_total{outcome=\"wrong_password\"} 3\n"
    "parley_logins_total{outcome=\"locked\"} 0\n"
    "# HELP parley_messages_accepted Direct messages accepted (stored).\n"
    "# TYPE parley_messages_accepted counter\n"
    "parley_messages_accepted_total 350316\n"
    "# HELP parley_errors Error replies by protocol error code.\n"
    "# TYPE parley_errors counter\n"
    "# HELP parley_loop_iteration_duration_seconds CPU time of one event-loop iteration.\n"
    "# TYPE parley_loop_iteration_duration_seconds histogram\n"
    "parley_loop_iteration_duration_seconds_bucket{le=\"0.0001\"} 15138\n"
    "parley_loop_iteration_duration_seconds_bucket{le=\"0.00025\"} 16339\n"
    "parley_loop_iteration_duration_seconds_bucket{le=\"0.0005\"} 17500\n"
    "parley_loop_iteration_duration_seconds_bucket{le=\"0.001\"} 18617\n"
    "parley_loop_iteration_duration_seconds_bucket{le=\"0.0025\"} 19692\n"
    "parley_loop_iteration_duration_seconds_bucket{le=\"0.005\"} 19721\n"
    "parley_loop_iteration_duration_seconds_bucket{le=\"0.01\"} 19723\n"
    "parley_loop_iteration_duration_seconds_bucket{le=\"0.025\"} 19724\n"
    "parley_loop_iteration_duration_seconds_bucket{le=\"0.1\"} 19724\n"
    "parley_loop_iteration_duration_seconds_bucket{le=\"1\"} 19724\n"
    "parley_loop_iteration_duration_seconds_bucket{le=\"+Inf\"} 19724\n"
    "parley_loop_iteration_duration_seconds_sum 6.123456789\n"
    "parley_loop_iteration_duration_seconds_count 19724\n"
    "# HELP parley_socket_reads Reads from client sockets that returned bytes.\n"
    "# TYPE parley_socket_reads counter\n"
    "parley_socket_reads_total 4242\n"
    "parley_socket_writes_total 5151\n"
    "parley_build_info{version=\"0.1.0\"} 1\n";

#define LOOP "parley_loop_iteration_duration_seconds"

static enum scrape_status sum(const char *text, const char *family, double *out)
{
    return scrape_sum(text, strlen(text), family, out);
}

static enum scrape_status hist(const char *text, const char *family, struct scrape_hist *h)
{
    return scrape_histogram(text, strlen(text), family, h);
}

static void test_good_text(void **state)
{
    (void)state;
    double v = -1;
    assert_int_equal(sum(parley_text, "parley_socket_reads_total", &v), SCRAPE_OK);
    assert_true(v == 4242);
    assert_int_equal(sum(parley_text, "parley_socket_writes_total", &v), SCRAPE_OK);
    assert_true(v == 5151);
    assert_int_equal(sum(parley_text, "parley_messages_accepted_total", &v), SCRAPE_OK);
    assert_true(v == 350316);
    /* The histogram's own series are samples too. */
    assert_int_equal(sum(parley_text, LOOP "_count", &v), SCRAPE_OK);
    assert_true(v == 19724);
    assert_int_equal(sum(parley_text, LOOP "_sum", &v), SCRAPE_OK);
    assert_true(fabs(v - 6.123456789) < 1e-12);
    /* Blank lines, blanks and tabs between tokens, a timestamp, a comment of any kind. */
    static const char loose[] = "\n  a_total   7\t1700000000000\n# just a comment\n\n"
                                "a_total{x=\"1\"}\t3\n#\n";
    assert_int_equal(sum(loose, "a_total", &v), SCRAPE_OK);
    assert_true(v == 10);
    /* Exponents and signs. */
    assert_int_equal(sum("g 1.5e3\ng -0.5\n", "g", &v), SCRAPE_OK);
    assert_true(v == 1499.5);
}

static void test_labels(void **state)
{
    (void)state;
    double v = -1;
    /* A family is summed over its labels. */
    assert_int_equal(sum(parley_text, "parley_logins_total", &v), SCRAPE_OK);
    assert_true(v == 15);
    /* Escapes, several labels, a trailing comma, blanks around the labels; a `}` or `,` inside
     * a quoted value is text. */
    static const char t[] = "m{a=\"x\\\"y\",b=\"\\\\\"} 1\n"
                            "m{ a = \"}\" , b=\"p,q\\n\", } 2\n"
                            "m{} 4\n"
                            "m_total{a=\"1\"} 100\n"
                            "mm{a=\"1\"} 1000\n";
    assert_int_equal(sum(t, "m", &v), SCRAPE_OK);
    assert_true(v == 7);
    /* Names match whole: neither a prefix nor a longer name. */
    assert_int_equal(sum(t, "m_total", &v), SCRAPE_OK);
    assert_true(v == 100);
    assert_int_equal(sum(t, "mm", &v), SCRAPE_OK);
    assert_true(v == 1000);
    assert_int_equal(sum(t, "m_tota", &v), SCRAPE_MISSING);
    /* A histogram with another label besides `le`: buckets of the same bound are added. */
    static const char h2[] = "h_bucket{node=\"a\",le=\"1\"} 1\n"
                             "h_bucket{node=\"a\",le=\"+Inf\"} 2\n"
                             "h_bucket{le=\"1\",node=\"b\"} 3\n"
                             "h_bucket{le=\"+Inf\",node=\"b\"} 3\n";
    struct scrape_hist h;
    assert_int_equal(hist(h2, "h", &h), SCRAPE_OK);
    assert_int_equal(h.n, 2);
    assert_true(h.le[0] == 1 && isinf(h.le[1]));
    assert_true(h.cum[0] == 4 && h.cum[1] == 5);
}

static void test_histogram(void **state)
{
    (void)state;
    struct scrape_hist h;
    assert_int_equal(hist(parley_text, LOOP, &h), SCRAPE_OK);
    assert_int_equal(h.n, 11);
    assert_true(h.le[0] == 0.0001 && h.le[3] == 0.001 && h.le[9] == 1 && isinf(h.le[10]));
    assert_true(h.cum[0] == 15138 && h.cum[3] == 18617 && h.cum[10] == 19724);
    assert_true(scrape_hist_count(&h) == 19724);
    /* p99: rank 19526.76 falls in (0.001, 0.0025] holding 18617..19692: interpolated. */
    double p99 = scrape_hist_quantile(&h, 0.99);
    double want = 0.001 + 0.0015 * (0.99 * 19724 - 18617) / (19692 - 18617);
    assert_true(fabs(p99 - want) < 1e-12);
    /* p50 in the first bucket, from 0. */
    assert_true(fabs(scrape_hist_quantile(&h, 0.5) - 0.0001 * (0.5 * 19724) / 15138) < 1e-12);
    assert_true(scrape_hist_quantile(&h, 1.0) == 0.025);
    assert_true(scrape_hist_max_bound(&h) == 0.025);
    assert_true(scrape_hist_above(&h, 0.001) == 19724 - 18617);
    assert_true(scrape_hist_above(&h, 0.0011) == 19724 - 18617); /* the bound below it */
    assert_true(scrape_hist_above(&h, 0.00001) == 19724);
    /* The window: after - before, bucket by bucket. */
    static const char before[] =
        LOOP "_bucket{le=\"0.0001\"} 100\n" LOOP "_bucket{le=\"0.001\"} 150\n" LOOP
             "_bucket{le=\"+Inf\"} 151\n";
    static const char after[] =
        LOOP "_bucket{le=\"0.0001\"} 190\n" LOOP "_bucket{le=\"0.001\"} 250\n" LOOP
             "_bucket{le=\"+Inf\"} 261\n";
    struct scrape_hist b, a, d;
    assert_int_equal(hist(before, LOOP, &b), SCRAPE_OK);
    assert_int_equal(hist(after, LOOP, &a), SCRAPE_OK);
    assert_int_equal(scrape_hist_delta(&b, &a, &d), 0);
    assert_true(d.cum[0] == 90 && d.cum[1] == 100 && d.cum[2] == 110);
    assert_true(scrape_hist_above(&d, 0.001) == 10);
    assert_true(isinf(scrape_hist_max_bound(&d)));
    /* p99 in the +Inf bucket: the highest finite bound. */
    assert_true(scrape_hist_quantile(&d, 0.99) == 0.001);
    /* A restarted server (counts went back) or other bounds do not make a delta. */
    assert_int_equal(scrape_hist_delta(&a, &b, &d), -1);
    assert_int_equal(scrape_hist_delta(&h, &a, &d), -1);
    /* Merging two servers' windows. */
    struct scrape_hist m = {0};
    assert_int_equal(scrape_hist_merge(&m, &a), 0);
    assert_int_equal(scrape_hist_merge(&m, &b), 0);
    assert_true(m.cum[0] == 290 && m.cum[2] == 412);
    assert_int_equal(scrape_hist_merge(&m, &h), -1);
    /* Empty: zero everywhere. */
    struct scrape_hist e;
    assert_int_equal(scrape_hist_delta(&a, &a, &e), 0);
    assert_true(scrape_hist_count(&e) == 0 && scrape_hist_quantile(&e, 0.99) == 0);
    assert_true(scrape_hist_max_bound(&e) == 0 && scrape_hist_above(&e, 0.001) == 0);
    /* Buckets out of order in the text are put in order. */
    static const char shuffled[] =
        "x_bucket{le=\"+Inf\"} 5\nx_bucket{le=\"2\"} 4\nx_bucket{le=\"1\"} 1\n";
    assert_int_equal(hist(shuffled, "x", &e), SCRAPE_OK);
    assert_true(e.n == 3 && e.le[0] == 1 && e.le[1] == 2 && e.cum[1] == 4);
}

static void test_junk(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "garbage\n",
        "name\n",
        "name \n",
        "name{\n",
        "name{a=\"b\" 1\n",
        "name{a=b} 1\n",
        "name{a=\"b} 1\n",
        "name{a=\"b\"}1\n",
        "name{a=\"b\" c=\"d\"} 1\n",
        "name{=\"b\"} 1\n",
        "name{a:b=\"c\"} 1\n",
        "name{a=\"\\x\"} 1\n",
        "name 1 2 3\n",
        "name 1x\n",
        "name 0x\n",
        "name 1 ts\n",
        "{a=\"b\"} 1\n",
        "1name 1\n",
        "na-me 1\n",
        "name \r1\n",
        "name 1\r\n",
        "good 1\nname\001 1\n",
        "name\0 1\n",
    };
    double v;
    struct scrape_hist h;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = strlen(bad[i]);
        if (i == sizeof bad / sizeof bad[0] - 1)
            len = 8; /* past the NUL inside */
        assert_int_equal(scrape_sum(bad[i], len, "name", &v), SCRAPE_BAD);
        assert_int_equal(scrape_histogram(bad[i], len, "name", &h), SCRAPE_BAD);
    }
    /* A bad line anywhere spoils the text, whichever family is asked for. */
    char t[sizeof parley_text + 16];
    snprintf(t, sizeof t, "%s%s", parley_text, "oops\n");
    assert_int_equal(sum(t, "parley_socket_reads_total", &v), SCRAPE_BAD);
    /* Bad histograms: no +Inf, counts going down, a bucket without `le` or with a bad one,
     * a negative count, too many buckets. */
    static const char *const bad_h[] = {
        "x_bucket{le=\"1\"} 1\n",
        "x_bucket{le=\"1\"} 5\nx_bucket{le=\"+Inf\"} 4\n",
        "x_bucket 1\nx_bucket{le=\"+Inf\"} 1\n",
        "x_bucket{l=\"1\"} 1\nx_bucket{le=\"+Inf\"} 1\n",
        "x_bucket{le=\"one\"} 1\nx_bucket{le=\"+Inf\"} 1\n",
        "x_bucket{le=\"NaN\"} 1\nx_bucket{le=\"+Inf\"} 1\n",
        "x_bucket{le=\"1\"} -1\nx_bucket{le=\"+Inf\"} 1\n",
        "x_bucket{le=\"1\"} NaN\nx_bucket{le=\"+Inf\"} 1\n",
    };
    for (size_t i = 0; i < sizeof bad_h / sizeof bad_h[0]; i++)
        assert_int_equal(hist(bad_h[i], "x", &h), SCRAPE_BAD);
    char many[4096];
    size_t n = 0;
    for (int i = 0; i < SCRAPE_MAX_BUCKETS + 1; i++)
        n += (size_t)snprintf(many + n, sizeof many - n, "x_bucket{le=\"%d\"} %d\n", i, i);
    snprintf(many + n, sizeof many - n, "x_bucket{le=\"+Inf\"} 100\n");
    assert_int_equal(hist(many, "x", &h), SCRAPE_BAD);
    /* Random bytes, and random mutations of good text: an answer, never a crash. */
    srand(14);
    char buf[sizeof parley_text];
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)rand() % sizeof buf;
        if (round % 2) {
            for (size_t i = 0; i < len; i++)
                buf[i] = (char)(rand() % 256);
        } else {
            memcpy(buf, parley_text, len);
            for (int k = 0; k < 3 && len; k++)
                buf[(size_t)rand() % len] = "{}\"\\=, \n#e+-.9x\0"[rand() % 16];
        }
        enum scrape_status r = scrape_sum(buf, len, "parley_logins_total", &v);
        assert_true(r == SCRAPE_OK || r == SCRAPE_BAD || r == SCRAPE_MISSING);
        r = scrape_histogram(buf, len, LOOP, &h);
        assert_true(r == SCRAPE_OK || r == SCRAPE_BAD || r == SCRAPE_MISSING);
        if (r == SCRAPE_OK)
            assert_true(h.n >= 1 && h.n <= SCRAPE_MAX_BUCKETS && isinf(h.le[h.n - 1]));
    }
}

static void test_truncated(void **state)
{
    (void)state;
    size_t len = strlen(parley_text);
    double v;
    struct scrape_hist h;
    /* Every cut: inside a line it is an error; at a line's end, what is there is read. */
    for (size_t cut = 1; cut < len; cut++) {
        bool at_eol = parley_text[cut - 1] == '\n';
        enum scrape_status r = scrape_sum(parley_text, cut, "parley_socket_writes_total", &v);
        enum scrape_status rh = scrape_histogram(parley_text, cut, LOOP, &h);
        if (!at_eol) {
            assert_int_equal(r, SCRAPE_BAD);
            assert_int_equal(rh, SCRAPE_BAD);
        } else {
            assert_true(r == SCRAPE_OK || r == SCRAPE_MISSING);
            /* A histogram cut before its +Inf bucket is not a histogram. */
            assert_true(rh == SCRAPE_BAD || rh == SCRAPE_MISSING || isinf(h.le[h.n - 1]));
        }
    }
    /* The last line without its newline. */
    assert_int_equal(scrape_sum("a 1\nb 2", 7, "a", &v), SCRAPE_BAD);
    /* An HTTP body shorter (or longer) than its Content-Length. */
    static const char resp[] = "HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\na 1\n";
    const char *body;
    size_t bl;
    assert_int_equal(scrape_response(resp, strlen(resp), &body, &bl), -1);
    static const char longer[] = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\na 1\n";
    assert_int_equal(scrape_response(longer, strlen(longer), &body, &bl), -1);
    /* Headers cut before their end. */
    assert_int_equal(scrape_response(resp, 20, &body, &bl), -1);
}

static void test_huge_numbers(void **state)
{
    (void)state;
    double v;
    /* Big counters are read (as doubles), the largest double too. */
    assert_int_equal(sum("c 18446744073709551615\n", "c", &v), SCRAPE_OK);
    assert_true(v == 18446744073709551615.0);
    assert_int_equal(sum("c 1.7976931348623157e308\n", "c", &v), SCRAPE_OK);
    assert_true(v == 1.7976931348623157e308);
    /* Tiny is zero, not an error. */
    assert_int_equal(sum("c 1e-400\n", "c", &v), SCRAPE_OK);
    assert_true(fabs(v) < 1e-300);
    /* Out of the range of a double, longer than any number, or a sum that overflows. */
    assert_int_equal(sum("c 1e400\n", "c", &v), SCRAPE_BAD);
    assert_int_equal(sum("c -1e400\n", "c", &v), SCRAPE_BAD);
    char digits[200];
    memset(digits, '9', sizeof digits);
    memcpy(digits, "c ", 2);
    digits[sizeof digits - 2] = '\n';
    digits[sizeof digits - 1] = '\0';
    assert_int_equal(sum(digits, "c", &v), SCRAPE_BAD);
    assert_int_equal(sum("c 1.7e308\nc 1.7e308\n", "c", &v), SCRAPE_BAD);
    /* Inf and NaN are values of the format, but no counter to sum. */
    assert_int_equal(sum("c +Inf\n", "c", &v), SCRAPE_BAD);
    assert_int_equal(sum("c NaN\n", "c", &v), SCRAPE_BAD);
    assert_int_equal(sum("g NaN\nc 2\n", "c", &v), SCRAPE_OK);
    assert_true(v == 2);
    /* Huge bucket counts. */
    struct scrape_hist h;
    assert_int_equal(hist("x_bucket{le=\"1e300\"} 1e18\nx_bucket{le=\"+Inf\"} 1e19\n", "x", &h),
                     SCRAPE_OK);
    assert_true(h.le[0] == 1e300 && h.cum[1] == 1e19);
    assert_true(scrape_hist_quantile(&h, 0.99) == 1e300);
    assert_int_equal(hist("x_bucket{le=\"1e999\"} 1\nx_bucket{le=\"+Inf\"} 1\n", "x", &h),
                     SCRAPE_BAD);
}

static void test_missing_family(void **state)
{
    (void)state;
    double v = 42;
    struct scrape_hist h;
    assert_int_equal(sum(parley_text, "parley_nothing_total", &v), SCRAPE_MISSING);
    assert_true(v == 42);
    /* Declared by HELP and TYPE but without a sample: missing. */
    assert_int_equal(sum(parley_text, "parley_errors_total", &v), SCRAPE_MISSING);
    assert_int_equal(sum(parley_text, "parley_errors", &v), SCRAPE_MISSING);
    assert_int_equal(hist(parley_text, "parley_store_commit_duration_seconds", &h), SCRAPE_MISSING);
    /* A counter is no histogram. */
    assert_int_equal(hist(parley_text, "parley_socket_reads_total", &h), SCRAPE_MISSING);
    assert_int_equal(sum("", "a", &v), SCRAPE_MISSING);
    assert_int_equal(sum("# only\n# comments\n", "a", &v), SCRAPE_MISSING);
    assert_int_equal(hist("", "a", &h), SCRAPE_MISSING);
}

static void test_http_response(void **state)
{
    (void)state;
    const char *body;
    size_t bl;
    static const char ok10[] = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\na 1\n";
    assert_int_equal(scrape_response(ok10, strlen(ok10), &body, &bl), 0);
    assert_int_equal(bl, 4);
    assert_memory_equal(body, "a 1\n", 4);
    static const char ok11[] = "HTTP/1.1 200 OK\r\ncontent-length:  4\r\n\r\na 1\n";
    assert_int_equal(scrape_response(ok11, strlen(ok11), &body, &bl), 0);
    assert_int_equal(bl, 4);
    static const char *const bad[] = {
        "HTTP/1.0 404 Not Found\r\n\r\n",
        "HTTP/1.0 2000 OK\r\n\r\n",
        "HTTP/2.0 200 OK\r\n\r\na 1\n",
        "200 OK\r\n\r\n",
        "HTTP/1.0 200 OK\r\nContent-Length: x\r\n\r\n",
        "HTTP/1.0 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.0 200 OK\n\na 1\n",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(scrape_response(bad[i], strlen(bad[i]), &body, &bl), -1);
}

/* ---- a live server: a child process answering one request -------------------------------- */

enum answer { ANSWER_GOOD, ANSWER_SILENT, ANSWER_HUGE, ANSWER_404 };

static void serve_one(int lfd, enum answer what)
{
    int c = accept(lfd, NULL, NULL);
    if (c < 0)
        _exit(1);
    char req[512];
    if (recv(c, req, sizeof req, 0) <= 0)
        _exit(1);
    static const char head[] = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n";
    if (what == ANSWER_SILENT) {
        sleep(5);
    } else if (what == ANSWER_404) {
        static const char nf[] = "HTTP/1.0 404 Not Found\r\n\r\n";
        (void)!write(c, nf, sizeof nf - 1);
    } else {
        (void)!write(c, head, sizeof head - 1);
        if (what == ANSWER_GOOD) {
            (void)!write(c, parley_text, sizeof parley_text - 1);
        } else {
            char line[64];
            memset(line, 'x', sizeof line);
            line[sizeof line - 1] = '\n';
            for (size_t sent = 0; sent < SCRAPE_MAX_BYTES + 4096; sent += sizeof line)
                if (write(c, line, sizeof line) < 0)
                    break;
        }
    }
    close(c);
    _exit(0);
}

/* Starts a child answering one request on a free loopback port; returns the port. */
static int start_server(enum answer what, pid_t *child)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 4), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &al), 0);
    *child = fork();
    assert_true(*child >= 0);
    if (*child == 0)
        serve_one(lfd, what);
    close(lfd);
    return ntohs(a.sin_port);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void stop_server(pid_t child)
{
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
}

static void test_http_live(void **state)
{
    (void)state;
    pid_t child;
    char *body = NULL, err[256];
    size_t len = 0;
    int port = start_server(ANSWER_GOOD, &child);
    assert_int_equal(scrape_get(port, 2000, &body, &len, err, sizeof err), 0);
    assert_int_equal(len, sizeof parley_text - 1);
    assert_string_equal(body, parley_text);
    double v;
    assert_int_equal(scrape_sum(body, len, "parley_socket_reads_total", &v), SCRAPE_OK);
    free(body);
    stop_server(child);
    /* A server that never answers: the timeout, not a hang. */
    port = start_server(ANSWER_SILENT, &child);
    double t0 = now_s();
    assert_int_equal(scrape_get(port, 200, &body, &len, err, sizeof err), -1);
    assert_true(now_s() - t0 < 2.0);
    assert_non_null(strstr(err, "in time"));
    stop_server(child);
    /* Too long an answer. */
    port = start_server(ANSWER_HUGE, &child);
    assert_int_equal(scrape_get(port, 5000, &body, &len, err, sizeof err), -1);
    assert_non_null(strstr(err, "longer than"));
    stop_server(child);
    port = start_server(ANSWER_404, &child);
    assert_int_equal(scrape_get(port, 2000, &body, &len, err, sizeof err), -1);
    stop_server(child);
    /* Nothing listening there any more; a port out of range. */
    assert_int_equal(scrape_get(port, 500, &body, &len, err, sizeof err), -1);
    assert_int_equal(scrape_get(0, 500, &body, &len, err, sizeof err), -1);
    assert_int_equal(scrape_get(70000, 500, &body, &len, err, sizeof err), -1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_text),      cmocka_unit_test(test_labels),
        cmocka_unit_test(test_histogram),      cmocka_unit_test(test_junk),
        cmocka_unit_test(test_truncated),      cmocka_unit_test(test_huge_numbers),
        cmocka_unit_test(test_missing_family), cmocka_unit_test(test_http_response),
        cmocka_unit_test(test_http_live),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
