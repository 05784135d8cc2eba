/* Measurement helpers of parley-bench: a log-linear latency histogram, the server's CPU time,
 * memory and system calls read from /proc and perf tracepoints, its counters read from
 * /metrics, and credentials files. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <linux/perf_event.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench/bench.h"

/* ---- histogram: 64 linear sub-buckets per power of two (error < 1.6 %) -------------------- */

#define SUB_BITS 6
#define SUB (1u << SUB_BITS)
#define NBUCKETS ((64 - SUB_BITS + 1) * SUB)

struct hist {
    uint64_t n, max;
    uint64_t b[NBUCKETS];
};

struct hist *hist_new(void)
{
    return calloc(1, sizeof(struct hist));
}

void hist_reset(struct hist *h)
{
    memset(h, 0, sizeof(*h));
}

static unsigned bucket_of(uint64_t v)
{
    if (v < SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = e - SUB_BITS;
    return (shift + 1) * SUB + (unsigned)((v >> shift) & (SUB - 1));
}

static uint64_t bucket_mid(unsigned i)
{
    if (i < SUB)
        return i;
    unsigned shift = i / SUB - 1;
    uint64_t low = (uint64_t)(SUB + i % SUB) << shift;
    return low + ((1ull << shift) >> 1);
}

void hist_add(struct hist *h, uint64_t ns)
{
    h->b[bucket_of(ns)]++;
    h->n++;
    if (ns > h->max)
        h->max = ns;
}

uint64_t hist_count(const struct hist *h)
{
    return h->n;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
    if (!h->n)
        return 0;
    if (q >= 1.0)
        return h->max;
    uint64_t rank = (uint64_t)(q * (double)h->n);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t v = bucket_mid(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

/* ---- the server's process figures ------------------------------------------------------- */

#define MAX_THREADS 512

static int sys_fds[MAX_THREADS];
static int sys_nfds;

/* Reads the id of the raw_syscalls:sys_enter tracepoint, or -1. */
static long tracepoint_id(void)
{
    static const char *const paths[] = {
        "/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
        "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id",
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        FILE *f = fopen(paths[i], "r");
        if (!f)
            continue;
        long id = -1;
        if (fscanf(f, "%ld", &id) != 1)
            id = -1;
        fclose(f);
        if (id >= 0)
            return id;
    }
    return -1;
}

static int sys_add(int pid)
{
    if (pid <= 0)
        return 0;
    long id = tracepoint_id();
    if (id < 0)
        return 0;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) && sys_nfds < MAX_THREADS) {
        int tid = atoi(e->d_name);
        if (tid <= 0)
            continue;
        struct perf_event_attr a;
        memset(&a, 0, sizeof(a));
        a.type = PERF_TYPE_TRACEPOINT;
        a.size = sizeof(a);
        a.config = (uint64_t)id;
        a.inherit = 1;
        int fd = (int)syscall(SYS_perf_event_open, &a, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
        if (fd >= 0)
            sys_fds[sys_nfds++] = fd;
    }
    closedir(d);
    return sys_nfds;
}

int sys_open(int pid)
{
    sys_close();
    return sys_add(pid);
}

int sys_open_all(void)
{
    sys_close();
    for (int i = 0; i < B.o.npids; i++)
        sys_add(B.o.server_pids[i]);
    return sys_nfds;
}

void sys_close(void)
{
    for (int i = 0; i < sys_nfds; i++)
        close(sys_fds[i]);
    sys_nfds = 0;
}

void srv_sample(int pid, struct srv_sample *s)
{
    memset(s, 0, sizeof(*s));
    if (pid <= 0)
        return;
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return;
    /* Fields after the command: state(3) ... utime(14) stime(15). */
    unsigned long long ut = 0, st = 0;
    p += 2;
    for (int field = 3; field <= 15 && p && *p; field++) {
        if (field == 14)
            ut = strtoull(p, NULL, 10);
        if (field == 15)
            st = strtoull(p, NULL, 10);
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    long hz = sysconf(_SC_CLK_TCK);
    s->cpu_s = (double)(ut + st) / (double)(hz > 0 ? hz : 100);
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(buf, sizeof(buf), f)) {
        if (strncmp(buf, "VmRSS:", 6) == 0)
            s->rss_kb = strtol(buf + 6, NULL, 10);
        else if (strncmp(buf, "VmHWM:", 6) == 0)
            s->hwm_kb = strtol(buf + 6, NULL, 10);
    }
    fclose(f);
    s->ok = true;
    if (sys_nfds) {
        s->have_syscalls = true;
        for (int i = 0; i < sys_nfds; i++) {
            uint64_t v = 0;
            if (read(sys_fds[i], &v, sizeof(v)) == (ssize_t)sizeof(v))
                s->syscalls += v;
        }
    }
}

void srv_sample_all(struct srv_sample *s)
{
    memset(s, 0, sizeof(*s));
    if (B.o.npids <= 0)
        return;
    s->ok = true;
    for (int i = 0; i < B.o.npids; i++) {
        struct srv_sample one;
        srv_sample(B.o.server_pids[i], &one);
        if (!one.ok)
            s->ok = false;
        s->cpu_s += one.cpu_s;
        s->rss_kb += one.rss_kb;
        s->hwm_kb += one.hwm_kb;
        if (i == 0) { /* the counters of every process are read together */
            s->syscalls = one.syscalls;
            s->have_syscalls = one.have_syscalls;
        }
    }
}

/* ---- the server's /metrics (--metrics) ------------------------------------------------- */

/* A scrape waits this long for each server: parleyd answers on its own loop, between two
 * iterations, so even a busy one answers within milliseconds. */
#define METRICS_TIMEOUT_MS 2000

static const char *const metrics_counters[] = {
    "parley_socket_reads_total",
    "parley_socket_writes_total",
    "parley_messages_accepted_total",
    "parley_messages_delivered_total",
};
#define METRICS_NCOUNTERS (sizeof(metrics_counters) / sizeof(metrics_counters[0]))
#define METRICS_LOOP "parley_loop_iteration_duration_seconds"

/* Adds the figures of one server's text to `m`. Returns 0, or -1 naming what is wrong. */
static int metrics_add(struct srv_metrics *m, const char *text, size_t len, const char **what)
{
    double v[METRICS_NCOUNTERS];
    for (size_t i = 0; i < METRICS_NCOUNTERS; i++)
        if (scrape_sum(text, len, metrics_counters[i], &v[i]) != SCRAPE_OK) {
            *what = metrics_counters[i];
            return -1;
        }
    struct scrape_hist h;
    if (scrape_histogram(text, len, METRICS_LOOP, &h) != SCRAPE_OK ||
        scrape_hist_merge(&m->loop, &h) < 0) {
        *what = METRICS_LOOP;
        return -1;
    }
    m->reads += v[0];
    m->writes += v[1];
    m->accepted += v[2];
    m->delivered += v[3];
    return 0;
}

/* Scrapes one server into `m`. Returns 0 or -1 (said on stderr). */
static int metrics_one(int port, struct srv_metrics *m)
{
    char *text, err[256];
    size_t len;
    if (scrape_get(port, METRICS_TIMEOUT_MS, &text, &len, err, sizeof(err)) < 0) {
        fprintf(stderr, "parley-bench: --metrics: 127.0.0.1:%d/metrics: %s\n", port, err);
        return -1;
    }
    const char *what = "";
    int rc = metrics_add(m, text, len, &what);
    if (rc < 0)
        fprintf(stderr, "parley-bench: --metrics: 127.0.0.1:%d/metrics: no usable %s\n", port,
                what);
    free(text);
    return rc;
}

void srv_metrics_all(struct srv_metrics *m)
{
    memset(m, 0, sizeof(*m));
    if (B.o.nmetrics <= 0)
        return;
    for (int i = 0; i < B.o.nmetrics; i++)
        if (metrics_one(B.o.metrics_ports[i], m) < 0)
            return;
    m->ok = true;
}

double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- credentials ------------------------------------------------------------------------- */

int make_credentials(const char *path, long users, long hashed, const char *password,
                     unsigned long long ops, size_t mem)
{
    char hash[crypto_pwhash_STRBYTES];
    if (hashed > 0) {
        if (sodium_init() < 0)
            return -1;
        /* One hash serves every storm user: checking it costs the same as checking its own. */
        if (crypto_pwhash_str(hash, password, strlen(password), ops, mem) != 0) {
            fprintf(stderr, "parley-bench: argon2id hashing failed (out of memory?)\n");
            return -1;
        }
    }
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "parley-bench: %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    for (long i = 0; i < users; i++)
        fprintf(f, "u%ld %s\n", i, password);
    for (long i = 0; i < hashed; i++)
        fprintf(f, "s%ld %s\n", i, hash);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "parley-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}
