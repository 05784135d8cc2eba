/* parley-bench: options, the five workloads and the report. See bench.h and docs/PERFORMANCE.md.
 *
 *   parley-bench --make-credentials FILE --users N [--hashed K] [--password PW]
 *   parley-bench --target parley|redis|mqtt --port P --workload broadcast|dm|idle|login|offline
 *                [--server-pid PID] [--metrics PORT] [options]
 *
 * Every run prints a human summary and one `RESULT key=value ...` line for bench/compare. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench/bench.h"

struct bench B;

#define NS 1000000000.0
#define RING_SIZE (1u << 16)

/* What the current workload does on each event. */
static struct {
    void (*delivery)(struct bconn *c, uint32_t src, uint32_t seq);
    void (*reply)(struct bconn *c, bool ok);
    void (*ready)(struct bconn *c);
} W;

static bool sending;        /* load is being offered */
static uint64_t t_pace;     /* open loop: time of message 0 */
static uint64_t issued;     /* open loop: messages issued */
static uint64_t sent_all;   /* messages sent (all connections) */
static uint64_t done_all;   /* of those, delivered (dm) or answered (offline) */
static uint32_t next_start; /* connections [next_start, start_end) wait to be started */
static uint32_t start_end;
static uint32_t load_lo, load_hi; /* connections that carry load */

/* ---- result line ------------------------------------------------------------------------- */

static char result[4096];
static size_t result_len;

static void res(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void res(const char *fmt, ...)
{
    if (result_len >= sizeof(result) - 2)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(result + result_len, sizeof(result) - result_len, fmt, ap);
    va_end(ap);
    if (n > 0)
        result_len += (size_t)n;
    if (result_len >= sizeof(result))
        result_len = sizeof(result) - 1;
}

static const char *target_name(enum target t)
{
    return t == TGT_PARLEY ? "parley" : t == TGT_REDIS ? "redis" : "mqtt";
}

static void result_start(void)
{
    result_len = 0;
    res("RESULT label=%s target=%s workload=%s size=%ld nodes=%d", B.o.label ? B.o.label : "-",
        target_name(B.o.target), B.o.workload, B.o.size, B.o.nports > 0 ? B.o.nports : 1);
}

static void result_print(void)
{
    printf("%s\n", result);
    fflush(stdout);
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    if (B.o.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

static bool finishing;          /* every session is logging out */
static struct hist *login_hist; /* login storm: connect to logged in */
static uint64_t storm_logins, storm_failed;
static bool storming;

/* ---- hooks ------------------------------------------------------------------------------- */

static uint64_t hex_val(const char *p, int n, bool *ok)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        char ch = p[i];
        unsigned d;
        if (ch >= '0' && ch <= '9')
            d = (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            d = (unsigned)(ch - 'a' + 10);
        else {
            *ok = false;
            return 0;
        }
        v = v << 4 | d;
    }
    return v;
}

void hook_delivery(struct bconn *c, const char *text, size_t len)
{
    (void)c;
    bool ok = len >= 34 && text[16] == ' ' && text[25] == ' ';
    uint64_t t = ok ? hex_val(text, 16, &ok) : 0;
    uint32_t src = ok ? (uint32_t)hex_val(text + 17, 8, &ok) : 0;
    uint32_t seq = ok ? (uint32_t)hex_val(text + 26, 8, &ok) : 0;
    if (!ok) {
        B.foreign++;
        return;
    }
    if (t < B.epoch || src >= B.nconns) {
        B.stale++; /* left over from an earlier run */
        return;
    }
    B.delivered_all++;
    if (B.measuring) {
        B.delivered++;
        hist_add(B.hist, B.now > t ? B.now - t : 0);
    }
    if (W.delivery)
        W.delivery(c, src, seq);
}

void hook_reply(struct bconn *c, bool ok)
{
    c->replies++;
    if (W.reply)
        W.reply(c, ok);
}

void hook_ready(struct bconn *c)
{
    if (!(c->role & ROLE_STORM) && !c->was_ready) {
        c->was_ready = true;
        B.pending_setup--;
        B.ready++;
    }
    if (finishing && !c->logout_sent) {
        ad_logout(c);
        return;
    }
    if (W.ready)
        W.ready(c);
}

void hook_closed(struct bconn *c, bool expected)
{
    if (c->role & ROLE_STORM) {
        if (c->logout_sent && expected) {
            if (storming && conn_start(c) < 0)
                storm_failed++;
        } else {
            storm_failed++;
            if (storming && conn_start(c) < 0)
                storm_failed++;
        }
        return;
    }
    if (!c->was_ready) {
        /* never got ready */
        B.setup_fail++;
        if (B.pending_setup)
            B.pending_setup--;
        return;
    }
    if (!c->logout_sent) {
        B.lost++;
        if (B.lost < 5)
            fprintf(stderr, "parley-bench: connection %u (user %u) closed by the server%s\n", c->id,
                    c->user, expected ? "" : " (error)");
    }
}

/* ---- set-up of connections --------------------------------------------------------------- */

static void start_tick(void)
{
    while (next_start < start_end && B.pending_setup < (uint32_t)B.o.concurrency) {
        struct bconn *c = &B.conns[next_start++];
        if (conn_start(c) == 0)
            B.pending_setup++;
        else
            B.setup_fail++;
    }
}

static bool start_done(void)
{
    return next_start >= start_end && B.pending_setup == 0;
}

static int alloc_conns(uint32_t n)
{
    B.conns = calloc(n, sizeof(struct bconn));
    if (!B.conns)
        return -1;
    B.nconns = n;
    for (uint32_t i = 0; i < n; i++) {
        B.conns[i].id = i;
        B.conns[i].fd = -1;
        /* Spread over the servers; in dm, i and its partner i ^ 1 are consecutive, so on two
         * different servers whenever there are several: every pair is cross-node. */
        B.conns[i].node = (uint16_t)(B.o.nports > 1 ? i % (uint32_t)B.o.nports : 0);
    }
    return 0;
}

/* Connects and logs in connections [lo, hi); returns the seconds it took, or -1. */
static double connect_range(uint32_t lo, uint32_t hi)
{
    uint64_t t0 = now_ns();
    uint32_t ready0 = B.ready;
    next_start = lo;
    start_end = hi;
    uint64_t limit = t0 + (uint64_t)((10.0 + (double)(hi - lo) / 200.0) * NS);
    loop_run(start_done, start_tick, limit);
    double secs = (double)(now_ns() - t0) / NS;
    if (B.ready - ready0 != hi - lo) {
        fprintf(stderr, "parley-bench: only %u of %u connections logged in (%llu failed)\n",
                B.ready - ready0, hi - lo, (unsigned long long)B.setup_fail);
        return -1;
    }
    return secs;
}

/* ---- measurement window ------------------------------------------------------------------ */

struct window {
    uint64_t t0, t1;
    struct srv_sample s0, s1;
    struct srv_metrics m0, m1; /* --metrics, scraped with s0 and s1 */
    double self0, self1;
    int threads;
};

static void window_begin(struct window *w)
{
    w->threads = sys_open_all();
    srv_sample_all(&w->s0);
    srv_metrics_all(&w->m0);
    w->self0 = self_cpu_s();
    hist_reset(B.hist);
    B.delivered = 0;
    storm_logins = 0;
    if (login_hist)
        hist_reset(login_hist);
    B.measuring = true;
    w->t0 = now_ns();
}

static void window_end(struct window *w)
{
    B.measuring = false;
    w->t1 = now_ns();
    srv_sample_all(&w->s1);
    srv_metrics_all(&w->m1);
    w->self1 = self_cpu_s();
    sys_close();
}

static double window_secs(const struct window *w)
{
    return (double)(w->t1 - w->t0) / NS;
}

/* The loop-iteration histogram of a window (after - before): its iterations, p99, the upper
 * bound of its highest non-empty bucket and the iterations over 1 ms. */
static void report_loop(const struct window *w)
{
    struct scrape_hist d;
    if (scrape_hist_delta(&w->m0.loop, &w->m1.loop, &d) < 0) {
        fprintf(stderr, "parley-bench: --metrics: the loop histogram went back (a restart?)\n");
        return;
    }
    double iters = scrape_hist_count(&d), p99 = scrape_hist_quantile(&d, 0.99) * 1e6;
    double top = scrape_hist_max_bound(&d) * 1e6, over = scrape_hist_above(&d, 0.001);
    char top_s[32];
    if (isinf(top))
        snprintf(top_s, sizeof(top_s), "inf");
    else
        snprintf(top_s, sizeof(top_s), "%.0f", top);
    res(" loop_iters=%.0f loop_p99_us=%.1f loop_max_bucket_us=%s loop_over_1ms=%.0f", iters, p99,
        top_s, over);
    say("  server loop: %.0f iterations, p99 %.1f us, %.0f over 1 ms, the longest <= %s us\n",
        iters, p99, over, top_s);
}

/* The /metrics figures of a window (--metrics): socket reads and writes per message (the
 * denominator of sys_per_msg), messages accepted and delivered, the loop iterations. */
static void report_metrics(const struct window *w, uint64_t msgs)
{
    if (!w->m0.ok || !w->m1.ok)
        return;
    double io = (w->m1.reads - w->m0.reads) + (w->m1.writes - w->m0.writes);
    double acc = w->m1.accepted - w->m0.accepted, dlv = w->m1.delivered - w->m0.delivered;
    if (io < 0 || acc < 0 || dlv < 0) {
        fprintf(stderr, "parley-bench: --metrics: counters went back (a restart?)\n");
        return;
    }
    double per = msgs ? io / (double)msgs : 0.0;
    res(" srv_io=%.0f io_per_msg=%.3f srv_accepted=%.0f srv_delivered=%.0f", io, per, acc, dlv);
    say("  server /metrics: %.0f socket reads and writes = %.3f per message; %.0f messages "
        "accepted, %.0f delivered\n",
        io, per, acc, dlv);
    report_loop(w);
}

/* Appends the rate, latency and server figures of a window to the result and the summary. */
static void report_window(const struct window *w, uint64_t msgs, const char *what)
{
    double secs = window_secs(w);
    double rate = secs > 0 ? (double)msgs / secs : 0;
    struct hist *h = B.hist;
    double p50 = (double)hist_quantile(h, 0.50) / 1e3, p90 = (double)hist_quantile(h, 0.90) / 1e3,
           p99 = (double)hist_quantile(h, 0.99) / 1e3, p999 = (double)hist_quantile(h, 0.999) / 1e3,
           mx = (double)hist_quantile(h, 1.0) / 1e3;
    res(" secs=%.3f %s=%llu rate=%.0f p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f "
        "max_us=%.1f",
        secs, what, (unsigned long long)msgs, rate, p50, p90, p99, p999, mx);
    say("  %-10s %llu in %.2f s = %.0f/s; latency us p50 %.1f p90 %.1f p99 %.1f p99.9 %.1f max "
        "%.1f (%llu samples)\n",
        what, (unsigned long long)msgs, secs, rate, p50, p90, p99, p999, mx,
        (unsigned long long)hist_count(h));
    double self = w->self1 - w->self0;
    res(" bench_cpu_s=%.2f", self);
    if (w->s0.ok && w->s1.ok) {
        double cpu = w->s1.cpu_s - w->s0.cpu_s;
        res(" srv_cpu_s=%.2f srv_cpu_us_per_msg=%.3f srv_rss_kb=%ld", cpu,
            msgs ? cpu * 1e6 / (double)msgs : 0.0, w->s1.rss_kb);
        say("  server: %.2f CPU s (%.2f us/msg), RSS %ld KB; bench %.2f CPU s\n", cpu,
            msgs ? cpu * 1e6 / (double)msgs : 0.0, w->s1.rss_kb, self);
        if (w->s1.have_syscalls) {
            uint64_t sc = w->s1.syscalls - w->s0.syscalls;
            res(" syscalls=%llu sys_per_msg=%.3f", (unsigned long long)sc,
                msgs ? (double)sc / (double)msgs : 0.0);
            say("  server: %llu system calls (%d threads) = %.3f per message\n",
                (unsigned long long)sc, w->threads, msgs ? (double)sc / (double)msgs : 0.0);
        }
    }
    report_metrics(w, msgs);
}

static void report_health(void)
{
    res(" lost_conns=%llu conn_errors=%llu stale=%llu foreign=%llu presence=%llu",
        (unsigned long long)B.lost, (unsigned long long)B.conn_errors, (unsigned long long)B.stale,
        (unsigned long long)B.foreign, (unsigned long long)B.presence);
}

/* Open loop: the time message `k` is meant to be sent. */
static uint64_t pace_time(uint64_t k)
{
    return t_pace + (uint64_t)((double)k * NS / B.o.rate);
}

/* Returns how many messages are due now (open loop), at most `cap`. */
static uint64_t pace_due(uint64_t cap)
{
    if (B.now < t_pace)
        return 0;
    uint64_t due = (uint64_t)((double)(B.now - t_pace) * B.o.rate / NS) + 1;
    uint64_t n = due > issued ? due - issued : 0;
    return n > cap ? cap : n;
}

static void settle(void);

/* ---- dm ---------------------------------------------------------------------------------- */

static void dm_top_up(struct bconn *c)
{
    while (sending && c->state == CS_READY && c->sent - c->done < (uint64_t)B.o.window) {
        ad_send_direct(c, B.conns[c->peer].user, B.now, (uint32_t)c->sent);
        sent_all++;
    }
}

static void dm_delivery(struct bconn *c, uint32_t src, uint32_t seq)
{
    (void)c;
    (void)seq;
    struct bconn *s = &B.conns[src];
    s->done++;
    done_all++;
    if (B.o.rate <= 0)
        dm_top_up(s);
}

static void dm_tick(void)
{
    if (!sending || B.o.rate <= 0) {
        B.next_due = 0;
        return;
    }
    uint32_t n = load_hi - load_lo;
    for (uint64_t k = pace_due(1000000); k > 0; k--) {
        struct bconn *c = &B.conns[load_lo + issued % n];
        if (c->state == CS_READY) {
            ad_send_direct(c, B.conns[c->peer].user, pace_time(issued), (uint32_t)c->sent);
            sent_all++;
        }
        issued++;
    }
    B.next_due = pace_time(issued);
}

static bool all_done(void)
{
    return done_all >= sent_all;
}

/* Offers load on [load_lo, load_hi) for warm-up then the measured duration, then waits for
 * what is in flight. */
static void dm_run(struct window *w)
{
    sending = true;
    issued = 0;
    t_pace = now_ns();
    B.now = t_pace;
    if (B.o.rate <= 0)
        for (uint32_t i = load_lo; i < load_hi; i++)
            dm_top_up(&B.conns[i]);
    conn_flush_all();
    loop_run(NULL, dm_tick, now_ns() + (uint64_t)(B.o.warmup * NS));
    window_begin(w);
    loop_run(NULL, dm_tick, now_ns() + (uint64_t)(B.o.duration * NS));
    sending = false;
    B.next_due = 0;
    loop_run(all_done, NULL, now_ns() + 5 * (uint64_t)NS);
    window_end(w);
}

static int workload_dm(void)
{
    uint32_t n = (uint32_t)(2 * B.o.pairs);
    if (alloc_conns(n) < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        B.conns[i].user = (uint32_t)B.o.user_base + i;
        B.conns[i].peer = i ^ 1u;
        B.conns[i].role = ROLE_SENDER | ROLE_RECIPIENT;
    }
    double setup = connect_range(0, n);
    if (setup < 0)
        return -1;
    if (B.o.nports > 1)
        settle();
    say("%s dm: %ld pairs logged in in %.2f s; %s\n", target_name(B.o.target), B.o.pairs, setup,
        B.o.rate > 0 ? "open loop" : "saturation");
    W.delivery = dm_delivery;
    load_lo = 0;
    load_hi = n;
    struct window w;
    dm_run(&w);
    result_start();
    res(" pairs=%ld sessions=%u mode=%s offered=%.0f window=%ld sent=%llu", B.o.pairs, n,
        B.o.rate > 0 ? "open" : "sat", B.o.rate, B.o.window, (unsigned long long)sent_all);
    report_window(&w, B.delivered, "delivered");
    res(" undelivered=%llu", (unsigned long long)(sent_all - done_all));
    report_health();
    result_print();
    return B.delivered > 0 ? 0 : 1;
}

/* ---- broadcast --------------------------------------------------------------------------- */

static uint64_t bc_last_progress;

static void bc_top_up(void)
{
    struct bconn *s = &B.conns[0];
    while (sending && s->state == CS_READY && B.bc_sent - B.bc_done < (uint64_t)B.o.window) {
        ad_send_bcast(s, B.now, (uint32_t)B.bc_sent);
        B.bc_sent++;
    }
}

static void bc_retire(void)
{
    while (B.bc_done < B.bc_sent && B.ring[B.bc_done & B.ring_mask] >= B.bc_fanout) {
        B.ring[B.bc_done & B.ring_mask] = 0;
        B.bc_done++;
        bc_last_progress = B.now;
    }
}

static void bc_delivery(struct bconn *c, uint32_t src, uint32_t seq)
{
    (void)c;
    (void)src;
    B.ring[seq & B.ring_mask]++;
    bc_retire();
    if (B.o.rate <= 0)
        bc_top_up();
}

static void bc_tick(void)
{
    if (B.o.rate > 0) {
        if (!sending) {
            B.next_due = 0;
            return;
        }
        struct bconn *s = &B.conns[0];
        for (uint64_t k = pace_due(100000); k > 0; k--) {
            if (s->state == CS_READY)
                ad_send_bcast(s, pace_time(issued), (uint32_t)B.bc_sent++);
            issued++;
        }
        B.next_due = pace_time(issued);
        return;
    }
    /* A message some recipient never got would stop the window: give up on it after 1 s. */
    if (B.bc_done < B.bc_sent && B.now - bc_last_progress > 1000000000ull) {
        B.ring[B.bc_done & B.ring_mask] = 0;
        B.bc_done++;
        bc_last_progress = B.now;
        bc_top_up();
    }
}

static bool bc_all_done(void)
{
    bc_retire();
    return B.bc_done >= B.bc_sent;
}

/* True once nothing has been read for 200 ms. */
static bool quiet_200ms(void)
{
    static uint64_t last_bytes, last_change;
    if (B.bytes_in != last_bytes || !last_change) {
        last_bytes = B.bytes_in;
        last_change = B.now;
    }
    return B.now - last_change > 200000000ull;
}

/* Waits (30 s at most) for the traffic the log-ins caused to stop. */
static void settle(void)
{
    uint64_t t0 = now_ns();
    loop_run(quiet_200ms, NULL, t0 + 30 * (uint64_t)NS);
    say("  presence notices of the log-ins passed in %.2f s\n", (double)(now_ns() - t0) / NS);
}

static int workload_broadcast(void)
{
    uint32_t n = (uint32_t)B.o.n + 1;
    if (alloc_conns(n) < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        B.conns[i].user = (uint32_t)B.o.user_base + i;
        B.conns[i].role = i == 0 ? ROLE_SENDER : ROLE_BCAST_SUB;
    }
    B.ring = calloc(RING_SIZE, sizeof(uint32_t));
    B.ring_mask = RING_SIZE - 1;
    B.bc_fanout = (uint64_t)B.o.n;
    if (!B.ring || B.o.window * 2 > (long)RING_SIZE)
        return -1;
    double setup = connect_range(1, n);
    if (setup < 0 || connect_range(0, 1) < 0)
        return -1;
    say("%s broadcast: 1 sender, %ld recipients logged in in %.2f s; %s\n", target_name(B.o.target),
        B.o.n, setup, B.o.rate > 0 ? "open loop" : "saturation");
    /* Let presence notices of the log-ins pass before measuring: 200 ms, and on cluster nodes
     * (where they come through Redis, late) until nothing has come for 200 ms. */
    loop_run(NULL, NULL, now_ns() + 200000000ull);
    if (B.o.nports > 1)
        settle();
    W.delivery = bc_delivery;
    struct window w;
    sending = true;
    issued = 0;
    t_pace = B.now = bc_last_progress = now_ns();
    if (B.o.rate <= 0)
        bc_top_up();
    conn_flush_all();
    loop_run(NULL, bc_tick, now_ns() + (uint64_t)(B.o.warmup * NS));
    window_begin(&w);
    uint64_t sent0 = B.bc_sent;
    loop_run(NULL, bc_tick, now_ns() + (uint64_t)(B.o.duration * NS));
    sending = false;
    B.next_due = 0;
    loop_run(bc_all_done, bc_tick, now_ns() + 5 * (uint64_t)NS);
    window_end(&w);
    result_start();
    res(" n=%ld mode=%s offered=%.0f window=%ld sent=%llu", B.o.n, B.o.rate > 0 ? "open" : "sat",
        B.o.rate, B.o.window, (unsigned long long)(B.bc_sent - sent0));
    report_window(&w, B.delivered, "delivered");
    report_health();
    result_print();
    return B.delivered > 0 ? 0 : 1;
}

/* ---- idle -------------------------------------------------------------------------------- */

static bool quiet_since(void)
{
    static uint64_t last_bytes, last_change;
    if (B.bytes_in != last_bytes) {
        last_bytes = B.bytes_in;
        last_change = B.now;
    }
    return B.now - last_change > 500000000ull;
}

/* Each server's RSS (KB), in the order of --server-pid. */
static void node_rss(long *kb)
{
    for (int k = 0; k < B.o.npids && k < MAX_NODES; k++) {
        struct srv_sample one;
        srv_sample(B.o.server_pids[k], &one);
        kb[k] = one.rss_kb;
    }
}

static volatile sig_atomic_t released;

static void on_release(int sig)
{
    (void)sig;
    released = 1;
}

/* --ready-file: tells whoever started several bench processes that these sessions are in;
 * --hold: keeps them logged in until then (or SIGUSR1), so that the servers can be measured
 * while every process holds its sessions. */
static void hold_sessions(void)
{
    if (B.o.ready_file) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp", B.o.ready_file);
        FILE *f = fopen(tmp, "w");
        if (f) {
            fprintf(f, "%u\n", B.ready);
            fclose(f);
            rename(tmp, B.o.ready_file);
        }
    }
    uint64_t until = now_ns() + (uint64_t)(B.o.hold * NS);
    while (!released && now_ns() < until && now_ns() < B.deadline)
        loop_run(NULL, NULL, now_ns() + 100000000ull);
}

static int workload_idle(void)
{
    uint32_t n = (uint32_t)B.o.n;
    if (alloc_conns(n) < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        B.conns[i].user = (uint32_t)B.o.user_base + i;
        B.conns[i].role = ROLE_RECIPIENT;
    }
    struct srv_sample s0, s1, s2;
    srv_sample_all(&s0);
    long node0[MAX_NODES];
    node_rss(node0);
    double self0 = self_cpu_s();
    double setup = connect_range(0, n);
    if (setup < 0)
        return -1;
    struct srv_sample sl;
    srv_sample_all(&sl);
    /* Wait for the presence notices to stop, then let the server settle. */
    uint64_t t_q = now_ns();
    loop_run(quiet_since, NULL, now_ns() + 60 * (uint64_t)NS);
    double quiet = (double)(now_ns() - t_q) / NS;
    loop_run(NULL, NULL, now_ns() + 300000000ull);
    srv_sample_all(&s1);
    /* The same sessions again a second later: memory that stays. */
    loop_run(NULL, NULL, now_ns() + 700000000ull);
    srv_sample_all(&s2);
    long node2[MAX_NODES];
    node_rss(node2);
    double self = self_cpu_s() - self0;
    result_start();
    res(" sessions=%u setup_s=%.2f sessions_per_s=%.0f quiet_s=%.2f bench_cpu_s=%.2f", n, setup,
        setup > 0 ? n / setup : 0, quiet, self);
    say("%s idle: %u sessions logged in in %.2f s (%.0f/s); traffic stopped %.2f s later\n",
        target_name(B.o.target), n, setup, setup > 0 ? n / setup : 0, quiet);
    if (s0.ok && s2.ok) {
        double per = (double)(s2.rss_kb - s0.rss_kb) * 1024.0 / n;
        res(" rss0_kb=%ld rss_kb=%ld hwm_kb=%ld bytes_per_session=%.0f srv_cpu_s=%.2f "
            "login_cpu_us=%.1f",
            s0.rss_kb, s2.rss_kb, s2.hwm_kb, per, s2.cpu_s - s0.cpu_s,
            (sl.cpu_s - s0.cpu_s) * 1e6 / n);
        say("  server RSS %ld -> %ld KB (peak %ld KB): %.0f bytes per session; CPU %.2f s "
            "(%.1f us per login, presence included)\n",
            s0.rss_kb, s2.rss_kb, s2.hwm_kb, per, s2.cpu_s - s0.cpu_s,
            (sl.cpu_s - s0.cpu_s) * 1e6 / n);
        (void)s1;
    }
    if (B.o.npids > 1) {
        /* Each node's own growth over the sessions it holds (pids and ports in the same order). */
        uint32_t on[MAX_NODES] = {0};
        for (uint32_t i = 0; i < n; i++)
            on[B.conns[i].node % B.o.nports]++;
        res(" node_sessions=");
        for (int k = 0; k < B.o.npids; k++)
            res("%s%u", k ? "," : "", k < B.o.nports ? on[k] : 0);
        res(" node_rss_kb=");
        for (int k = 0; k < B.o.npids; k++)
            res("%s%ld", k ? "," : "", node2[k]);
        res(" node_bytes_per_session=");
        for (int k = 0; k < B.o.npids; k++) {
            uint32_t m = k < B.o.nports ? on[k] : 0;
            res("%s%.0f", k ? "," : "",
                m ? (double)(node2[k] - node0[k]) * 1024.0 / (double)m : 0.0);
        }
        say("  per node:");
        for (int k = 0; k < B.o.npids; k++)
            say(" %u sessions, RSS %ld -> %ld KB;", k < B.o.nports ? on[k] : 0, node0[k], node2[k]);
        say("\n");
    }
    report_health();
    result_print();
    hold_sessions();
    return B.ready == n ? 0 : 1;
}

/* ---- login storm ------------------------------------------------------------------------- */

static void storm_ready(struct bconn *c)
{
    if (!(c->role & ROLE_STORM))
        return;
    if (B.measuring) {
        storm_logins++;
        hist_add(login_hist, B.now - c->connect_ns);
    }
    ad_logout(c);
}

static int workload_login(void)
{
    if (B.o.target != TGT_PARLEY) {
        fprintf(stderr, "parley-bench: the login workload is Parley's only\n");
        return 2;
    }
    uint32_t np = (uint32_t)(2 * B.o.pairs), ns = (uint32_t)B.o.storm;
    if (alloc_conns(np + ns) < 0 || !(login_hist = hist_new()))
        return -1;
    for (uint32_t i = 0; i < np; i++) {
        B.conns[i].user = (uint32_t)B.o.user_base + i;
        B.conns[i].peer = i ^ 1u;
        B.conns[i].role = ROLE_SENDER | ROLE_RECIPIENT;
    }
    for (uint32_t i = 0; i < ns; i++) {
        B.conns[np + i].user = i % (uint32_t)B.o.storm_users;
        B.conns[np + i].role = ROLE_STORM;
    }
    if (connect_range(0, np) < 0)
        return -1;
    if (B.o.rate <= 0)
        B.o.rate = 1000;
    say("parley login: %ld pairs at %.0f msg/s open loop; storm of %u connections (argon2id)\n",
        B.o.pairs, B.o.rate, ns);
    W.delivery = dm_delivery;
    W.ready = storm_ready;
    load_lo = 0;
    load_hi = np;
    /* Phase 1: the same load without the storm. */
    struct window w1, w2;
    dm_run(&w1);
    struct hist *base = B.hist;
    uint64_t base_n = B.delivered;
    B.hist = hist_new();
    if (!B.hist)
        return -1;
    /* Phase 2: the storm, then the same load again. */
    storming = true;
    for (uint32_t i = np; i < np + ns; i++)
        if (conn_start(&B.conns[i]) < 0)
            storm_failed++;
    loop_run(NULL, NULL, now_ns() + (uint64_t)(B.o.warmup * NS));
    dm_run(&w2);
    storming = false;
    double secs2 = window_secs(&w2);
    result_start();
    res(" pairs=%ld offered=%.0f storm=%u", B.o.pairs, B.o.rate, ns);
    double bp99 = (double)hist_quantile(base, 0.99) / 1e3;
    double sp99 = (double)hist_quantile(B.hist, 0.99) / 1e3;
    res(" base_p50_us=%.1f base_p99_us=%.1f base_n=%llu", (double)hist_quantile(base, 0.5) / 1e3,
        bp99, (unsigned long long)base_n);
    report_window(&w2, B.delivered, "delivered");
    res(" p99_ratio=%.2f logins=%llu logins_per_s=%.1f login_p50_ms=%.1f login_p99_ms=%.1f "
        "storm_failed=%llu",
        bp99 > 0 ? sp99 / bp99 : 0, (unsigned long long)storm_logins,
        secs2 > 0 ? storm_logins / secs2 : 0, (double)hist_quantile(login_hist, 0.5) / 1e6,
        (double)hist_quantile(login_hist, 0.99) / 1e6, (unsigned long long)storm_failed);
    say("  without storm: p50 %.1f us p99 %.1f us; with storm: p99 %.1f us (x%.2f); %llu "
        "logins = %.1f/s, login p50 %.1f ms p99 %.1f ms\n",
        (double)hist_quantile(base, 0.5) / 1e3, bp99, sp99, bp99 > 0 ? sp99 / bp99 : 0,
        (unsigned long long)storm_logins, secs2 > 0 ? storm_logins / secs2 : 0,
        (double)hist_quantile(login_hist, 0.5) / 1e6,
        (double)hist_quantile(login_hist, 0.99) / 1e6);
    report_health();
    result_print();
    free(base);
    return B.delivered > 0 && storm_logins > 0 ? 0 : 1;
}

/* ---- offline ----------------------------------------------------------------------------- */

static uint64_t store_next; /* round-robin over the offline recipients */

static void pend_push(struct bconn *c, uint64_t t)
{
    c->pend[c->pend_tail++ & (c->pend_cap - 1)] = t;
}

static void off_top_up(struct bconn *c)
{
    while (sending && c->state == CS_READY && c->sent - c->replies < (uint64_t)B.o.window &&
           sent_all < (uint64_t)B.o.msgs) {
        uint32_t to =
            (uint32_t)(B.o.user_base + B.o.senders + (long)(store_next++ % (uint64_t)B.o.n));
        pend_push(c, B.now);
        ad_send_store(c, to, B.now, (uint32_t)c->sent);
        sent_all++;
    }
}

static uint64_t stored_ok, store_errors;

static void off_reply(struct bconn *c, bool ok)
{
    if (!(c->role & ROLE_SENDER))
        return;
    uint64_t t = c->pend[c->pend_head++ & (c->pend_cap - 1)];
    done_all++;
    if (ok)
        stored_ok++;
    else
        store_errors++;
    if (B.measuring)
        hist_add(B.hist, B.now - t);
    off_top_up(c);
}

static void off_ready(struct bconn *c)
{
    if (c->role & ROLE_DRAIN)
        ad_drain(c);
}

static bool off_all_stored(void)
{
    return sent_all >= (uint64_t)B.o.msgs && done_all >= sent_all;
}

static uint64_t drain_target;

static bool drained(void)
{
    return B.delivered_all >= drain_target && start_done();
}

static int workload_offline(void)
{
    if (B.o.target == TGT_MQTT) {
        fprintf(stderr, "parley-bench: the offline workload needs Parley or Redis\n");
        return 2;
    }
    uint32_t ns = (uint32_t)B.o.senders, nr = (uint32_t)B.o.n;
    if (alloc_conns(ns + nr) < 0)
        return -1;
    uint32_t cap = 1;
    while (cap < (uint32_t)B.o.window)
        cap <<= 1;
    for (uint32_t i = 0; i < ns; i++) {
        struct bconn *c = &B.conns[i];
        c->user = (uint32_t)B.o.user_base + i;
        c->role = ROLE_SENDER;
        c->pend_cap = cap;
        c->pend = calloc(cap, sizeof(uint64_t));
        if (!c->pend)
            return -1;
    }
    for (uint32_t i = 0; i < nr; i++) {
        B.conns[ns + i].user = (uint32_t)(B.o.user_base + B.o.senders) + i;
        B.conns[ns + i].role = ROLE_DRAIN;
    }
    if (connect_range(0, ns) < 0)
        return -1;
    say("%s offline: %u senders storing up to %ld messages for %u offline users\n",
        target_name(B.o.target), ns, B.o.msgs, nr);
    W.reply = off_reply;
    W.ready = off_ready;
    struct window w;
    window_begin(&w);
    sending = true;
    B.now = now_ns();
    for (uint32_t i = 0; i < ns; i++)
        off_top_up(&B.conns[i]);
    conn_flush_all();
    loop_run(off_all_stored, NULL, now_ns() + (uint64_t)(B.o.duration * NS));
    sending = false;
    B.next_due = 0;
    loop_run(all_done, NULL, now_ns() + 10 * (uint64_t)NS);
    window_end(&w);
    result_start();
    res(" senders=%u recipients=%u window=%ld", ns, nr, B.o.window);
    report_window(&w, stored_ok, "stored");
    res(" store_errors=%llu", (unsigned long long)store_errors);
    /* The drain: every recipient logs in and collects its backlog. */
    drain_target = B.delivered_all + stored_ok;
    uint64_t base_delivered = B.delivered_all;
    struct window wd;
    window_begin(&wd);
    next_start = ns;
    start_end = ns + nr;
    loop_run(drained, start_tick, now_ns() + 60 * (uint64_t)NS);
    window_end(&wd);
    uint64_t got = B.delivered_all - base_delivered;
    double dsecs = window_secs(&wd);
    res(" drained=%llu drain_s=%.3f drain_per_s=%.0f", (unsigned long long)got, dsecs,
        dsecs > 0 ? got / dsecs : 0);
    say("  drain: %u users logged in and got %llu messages in %.3f s = %.0f/s\n", nr,
        (unsigned long long)got, dsecs, dsecs > 0 ? got / dsecs : 0);
    if (wd.s0.ok && wd.s1.ok) {
        res(" drain_srv_cpu_s=%.2f", wd.s1.cpu_s - wd.s0.cpu_s);
        if (wd.s1.have_syscalls)
            res(" drain_syscalls=%llu", (unsigned long long)(wd.s1.syscalls - wd.s0.syscalls));
    }
    report_health();
    result_print();
    return stored_ok > 0 && got > 0 ? 0 : 1;
}

/* ---- the end --------------------------------------------------------------------------- */

static bool all_closed(void)
{
    return B.open == 0;
}

/* Parley: every session logs out and waits for the server to close it, so no connection is
 * reset with data in flight. Returns the seconds it took. */
static double finish(void)
{
    sending = storming = false;
    B.next_due = 0;
    if (B.o.target != TGT_PARLEY || !B.base)
        return 0;
    uint64_t t0 = now_ns();
    finishing = true;
    for (uint32_t i = 0; i < B.nconns; i++) {
        struct bconn *c = &B.conns[i];
        if (c->state == CS_READY && !c->logout_sent)
            ad_logout(c);
        else if (c->state == CS_CONNECTING || c->state == CS_TLS)
            conn_close(c); /* the server has no session for it yet */
        /* A session still logging in logs out once it is in (hook_ready). */
    }
    conn_flush_all();
    B.deadline = t0 + (uint64_t)((20.0 + B.nconns / 500.0) * NS);
    if (!loop_run(all_closed, NULL, B.deadline))
        fprintf(stderr, "parley-bench: %u connections still open after logging out\n", B.open);
    return (double)(now_ns() - t0) / NS;
}

/* ---- options ----------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: parley-bench --make-credentials FILE --users N [--hashed K] [--password PW]\n"
            "                    [--hash-ops N --hash-mem BYTES]\n"
            "       parley-bench --target parley|redis|mqtt [--host 127.0.0.1] --port P\n"
            "                    --workload broadcast|dm|idle|login|offline [options]\n"
            "options:\n"
            "  --port P1,P2,...    several servers (cluster nodes): connection i connects to\n"
            "                      the (i mod n)th; dm pairs are always on two different ones\n"
            "  --server-pid PID    read the server's CPU, RSS and system calls from /proc; a\n"
            "                      comma list (in --port's order): summed, idle also per node\n"
            "  --metrics P         parley: read http://127.0.0.1:P/metrics (parleyd --metrics)\n"
            "                      at the start and end of the measured window; a comma list,\n"
            "                      one per --port in its order (summed): io_per_msg (socket\n"
            "                      reads+writes per message), loop_iters, loop_p99_us,\n"
            "                      loop_max_bucket_us, loop_over_1ms, srv_accepted, srv_delivered\n"
            "  --n N               broadcast recipients, idle sessions, offline recipients "
            "(100)\n"
            "  --pairs P           dm and login: pairs of sessions (50)\n"
            "  --size B            message text bytes, at least 34 (64)\n"
            "  --rate R            open loop: messages offered per second; 0 = saturation (0)\n"
            "  --window W          saturation: messages in flight per sender (dm 32, broadcast "
            "16 in all, offline 64)\n"
            "  --duration S        measured seconds (3); offline: longest store phase\n"
            "  --warmup S          seconds of load before measuring (0.5)\n"
            "  --user-base N       first user number: users u<N>.. (0)\n"
            "  --senders N         offline: sending sessions (10)\n"
            "  --msgs M            offline: messages to store (20000)\n"
            "  --storm K           login: storm connections (8), users s0..s<K-1>\n"
            "  --password PW       password of every user (bench)\n"
            "  --src-addrs K       spread connections over 127.0.0.1..127.0.0.K (1)\n"
            "  --concurrency C     connections logging in at once (256)\n"
            "  --timeout S         hard limit for the whole run (120)\n"
            "  --label TEXT        copied to the RESULT line\n"
            "  --quiet             only the RESULT line\n"
            "  --tls               speak TLS to the server (its key is not checked)\n"
            "  --ready-file F      idle: write F once the sessions are logged in and measured\n"
            "  --hold S            idle: then keep them logged in S seconds, or until SIGUSR1\n");
}

enum {
    O_MAKE = 256,
    O_USERS,
    O_HASHED,
    O_HASH_OPS,
    O_HASH_MEM,
    O_TARGET,
    O_HOST,
    O_PORT,
    O_PID,
    O_WORKLOAD,
    O_N,
    O_PAIRS,
    O_SIZE,
    O_RATE,
    O_WINDOW,
    O_DURATION,
    O_WARMUP,
    O_BASE,
    O_SENDERS,
    O_MSGS,
    O_STORM,
    O_PASSWORD,
    O_SRC,
    O_CONC,
    O_TIMEOUT,
    O_LABEL,
    O_QUIET,
    O_TLS,
    O_HOLD,
    O_READY,
    O_METRICS,
    O_HELP,
};

static const struct option longopts[] = {
    {"make-credentials", required_argument, NULL, O_MAKE},
    {"users", required_argument, NULL, O_USERS},
    {"hashed", required_argument, NULL, O_HASHED},
    {"hash-ops", required_argument, NULL, O_HASH_OPS},
    {"hash-mem", required_argument, NULL, O_HASH_MEM},
    {"target", required_argument, NULL, O_TARGET},
    {"host", required_argument, NULL, O_HOST},
    {"port", required_argument, NULL, O_PORT},
    {"server-pid", required_argument, NULL, O_PID},
    {"workload", required_argument, NULL, O_WORKLOAD},
    {"n", required_argument, NULL, O_N},
    {"pairs", required_argument, NULL, O_PAIRS},
    {"size", required_argument, NULL, O_SIZE},
    {"rate", required_argument, NULL, O_RATE},
    {"window", required_argument, NULL, O_WINDOW},
    {"duration", required_argument, NULL, O_DURATION},
    {"warmup", required_argument, NULL, O_WARMUP},
    {"user-base", required_argument, NULL, O_BASE},
    {"senders", required_argument, NULL, O_SENDERS},
    {"msgs", required_argument, NULL, O_MSGS},
    {"storm", required_argument, NULL, O_STORM},
    {"password", required_argument, NULL, O_PASSWORD},
    {"src-addrs", required_argument, NULL, O_SRC},
    {"concurrency", required_argument, NULL, O_CONC},
    {"timeout", required_argument, NULL, O_TIMEOUT},
    {"label", required_argument, NULL, O_LABEL},
    {"quiet", no_argument, NULL, O_QUIET},
    {"tls", no_argument, NULL, O_TLS},
    {"hold", required_argument, NULL, O_HOLD},
    {"ready-file", required_argument, NULL, O_READY},
    {"metrics", required_argument, NULL, O_METRICS},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

static bool num_arg(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* A comma list of 1..MAX_NODES numbers in [lo, hi]. */
static bool int_list(const char *s, double lo, double hi, int *out, int *n)
{
    char buf[256];
    if (strlen(s) >= sizeof(buf))
        return false;
    strcpy(buf, s);
    *n = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        double v;
        if (*n >= MAX_NODES || !num_arg(t, lo, hi, &v))
            return false;
        out[(*n)++] = (int)v;
    }
    return *n > 0 && s[strlen(s) - 1] != ',';
}

/* Raises the descriptor limit to what `want` connections need (as root, past the hard limit). */
static void raise_nofile(long want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t need = (rlim_t)want + 64;
    if (rl.rlim_max < need) {
        struct rlimit r2 = {need, need};
        if (setrlimit(RLIMIT_NOFILE, &r2) == 0)
            return;
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < need)
        fprintf(stderr, "parley-bench: descriptor limit %llu < %llu needed (ulimit -n)\n",
                (unsigned long long)rl.rlim_cur, (unsigned long long)need);
}

int main(int argc, char **argv)
{
    struct opts *o = &B.o;
    o->host = "127.0.0.1";
    o->password = "bench";
    o->n = 100;
    o->pairs = 50;
    o->size = 64;
    o->window = -1;
    o->duration = 3;
    o->warmup = 0.5;
    o->senders = 10;
    o->msgs = 20000;
    o->storm = 8;
    o->src_addrs = 1;
    o->concurrency = 256;
    o->timeout = 120;
    const char *make = NULL, *target = NULL;
    long users = 0, hashed = 0;
    double hash_ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    double hash_mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    int opt;
    double v;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        bool ok = true;
        switch (opt) {
        case O_MAKE:
            make = optarg;
            break;
        case O_USERS:
            ok = num_arg(optarg, 0, 1e7, &v);
            users = (long)v;
            break;
        case O_HASHED:
            ok = num_arg(optarg, 0, 1e5, &v);
            hashed = (long)v;
            break;
        case O_HASH_OPS:
            ok = num_arg(optarg, 1, 1e6, &hash_ops);
            break;
        case O_HASH_MEM:
            ok = num_arg(optarg, 8192, 1e10, &hash_mem);
            break;
        case O_TARGET:
            target = optarg;
            break;
        case O_HOST:
            o->host = optarg;
            break;
        case O_PORT:
            ok = int_list(optarg, 1, 65535, o->ports, &o->nports);
            o->port = o->ports[0];
            break;
        case O_PID:
            ok = int_list(optarg, 1, 1e9, o->server_pids, &o->npids);
            o->server_pid = o->server_pids[0];
            break;
        case O_HOLD:
            ok = num_arg(optarg, 0, 86400, &o->hold);
            break;
        case O_READY:
            o->ready_file = optarg;
            break;
        case O_METRICS:
            ok = int_list(optarg, 1, 65535, o->metrics_ports, &o->nmetrics);
            break;
        case O_WORKLOAD:
            o->workload = optarg;
            break;
        case O_N:
            ok = num_arg(optarg, 1, 1e6, &v);
            o->n = (long)v;
            break;
        case O_PAIRS:
            ok = num_arg(optarg, 1, 1e5, &v);
            o->pairs = (long)v;
            break;
        case O_SIZE:
            ok = num_arg(optarg, 34, 65536, &v);
            o->size = (long)v;
            break;
        case O_RATE:
            ok = num_arg(optarg, 0, 1e9, &o->rate);
            break;
        case O_WINDOW:
            ok = num_arg(optarg, 1, 32768, &v);
            o->window = (long)v;
            break;
        case O_DURATION:
            ok = num_arg(optarg, 0.01, 3600, &o->duration);
            break;
        case O_WARMUP:
            ok = num_arg(optarg, 0, 600, &o->warmup);
            break;
        case O_BASE:
            ok = num_arg(optarg, 0, 1e7, &v);
            o->user_base = (long)v;
            break;
        case O_SENDERS:
            ok = num_arg(optarg, 1, 1e5, &v);
            o->senders = (long)v;
            break;
        case O_MSGS:
            ok = num_arg(optarg, 1, 1e9, &v);
            o->msgs = (long)v;
            break;
        case O_STORM:
            ok = num_arg(optarg, 1, 1e4, &v);
            o->storm = (long)v;
            break;
        case O_PASSWORD:
            o->password = optarg;
            break;
        case O_SRC:
            ok = num_arg(optarg, 1, 254, &v);
            o->src_addrs = (long)v;
            break;
        case O_CONC:
            ok = num_arg(optarg, 1, 1e5, &v);
            o->concurrency = (long)v;
            break;
        case O_TIMEOUT:
            ok = num_arg(optarg, 1, 86400, &o->timeout);
            break;
        case O_LABEL:
            o->label = optarg;
            break;
        case O_QUIET:
            o->quiet = true;
            break;
        case O_TLS:
            o->tls = true;
            break;
        case O_HELP:
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "parley-bench: bad value for --%s: %s\n", longopts[opt - O_MAKE].name,
                    optarg);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    for (const char *p = o->password; *p; p++)
        if (*p <= ' ' || *p > '~') {
            fprintf(stderr, "parley-bench: the password must be printable ASCII without space\n");
            return 2;
        }
    if (make) {
        if (make_credentials(make, users, hashed, o->password, (unsigned long long)hash_ops,
                             (size_t)hash_mem) < 0)
            return 1;
        printf("wrote %s: %ld users u0..u%ld, %ld argon2id users s0..s%ld\n", make, users,
               users - 1, hashed, hashed - 1);
        return 0;
    }
    if (!target || !o->workload || !o->port) {
        usage(stderr);
        return 2;
    }
    if (strcmp(target, "parley") == 0)
        o->target = TGT_PARLEY;
    else if (strcmp(target, "redis") == 0)
        o->target = TGT_REDIS;
    else if (strcmp(target, "mqtt") == 0)
        o->target = TGT_MQTT;
    else {
        fprintf(stderr, "parley-bench: unknown target %s\n", target);
        return 2;
    }
    if (o->nmetrics && (o->target != TGT_PARLEY || o->nmetrics != o->nports)) {
        fprintf(stderr, "parley-bench: --metrics is for --target parley, one port per --port\n");
        return 2;
    }
    struct in_addr a;
    if (inet_pton(AF_INET, o->host, &a) != 1 || (ntohl(a.s_addr) >> 24) != 127) {
        fprintf(stderr, "parley-bench: --host must be a loopback address (127.0.0.0/8)\n");
        return 2;
    }
    if (o->src_addrs > 1 && strcmp(o->host, "127.0.0.1") != 0)
        fprintf(stderr, "parley-bench: note: --src-addrs binds 127.0.0.x sources\n");
    int (*run)(void) = NULL;
    long conns = 0;
    if (strcmp(o->workload, "dm") == 0) {
        run = workload_dm;
        conns = 2 * o->pairs;
        if (o->window < 0)
            o->window = 32;
    } else if (strcmp(o->workload, "broadcast") == 0) {
        run = workload_broadcast;
        conns = o->n + 1;
        if (o->window < 0)
            o->window = 16;
    } else if (strcmp(o->workload, "idle") == 0) {
        run = workload_idle;
        conns = o->n;
    } else if (strcmp(o->workload, "login") == 0) {
        run = workload_login;
        conns = 2 * o->pairs + o->storm;
        o->storm_users = o->storm;
    } else if (strcmp(o->workload, "offline") == 0) {
        run = workload_offline;
        conns = o->senders + o->n;
        if (o->window < 0)
            o->window = 64;
    } else {
        fprintf(stderr, "parley-bench: unknown workload %s\n", o->workload);
        return 2;
    }
    if (o->window < 0)
        o->window = 32;
    raise_nofile(conns);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGUSR1, on_release);
    /* A last resort should the loop itself hang. */
    alarm((unsigned)o->timeout + 30);
    B.hist = hist_new();
    B.payload = malloc((size_t)o->size);
    if (!B.hist || !B.payload || loop_init() < 0) {
        fprintf(stderr, "parley-bench: out of memory\n");
        return 1;
    }
    memset(B.payload, '.', (size_t)o->size);
    B.epoch = now_ns();
    B.deadline = B.epoch + (uint64_t)(o->timeout * NS);
    int rc = run();
    if (rc < 0) {
        fprintf(stderr, "parley-bench: %s %s failed\n", target, o->workload);
        rc = 1;
    }
    if (B.now >= B.deadline)
        fprintf(stderr, "parley-bench: hard time limit of %.0f s reached\n", o->timeout);
    double fin = finish();
    if (fin > 0.5)
        say("  %u sessions logged out in %.2f s\n", B.nconns, fin);
    loop_free();
    return rc;
}
