/* parley-bench: a load generator for Parley and, through small adapters, for Redis pub/sub and
 * MQTT 3.1.1 brokers, so that every server is measured by the same client code.
 *
 * One process, one libevent loop, many non-blocking connections. Each read takes up to 256 KiB
 * and parses every complete frame in it; output is appended to per-connection buffers and
 * written once per loop iteration. Every message carries the time it was meant to be sent, so
 * latency is measured from that time (open loop) and slow answers are not hidden. */
#ifndef PARLEY_BENCH_H
#define PARLEY_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/scrape.h"

struct event;
struct event_base;

/* Servers one run may spread its connections over (--port P1,P2,...). */
#define MAX_NODES 16

/* Which server the connections speak to. */
enum target {
    TGT_PARLEY,
    TGT_REDIS,
    TGT_MQTT,
};

/* Where a connection is. */
enum conn_state {
    CS_UNUSED,     /* not started */
    CS_CONNECTING, /* TCP connect under way */
    CS_TLS,        /* --tls: the TLS handshake under way */
    CS_HANDSHAKE,  /* login / subscribe sent, waiting for the answer */
    CS_READY,      /* logged in (or subscribed) */
    CS_CLOSED,     /* gone */
};

/* What a connection does in a workload. */
enum conn_role {
    ROLE_SENDER = 1,    /* sends messages */
    ROLE_RECIPIENT = 2, /* receives messages (Redis/MQTT: subscribes to its own channel) */
    ROLE_BCAST_SUB = 4, /* Redis/MQTT: subscribes to the broadcast channel */
    ROLE_STORM = 8,     /* login storm: logs in, logs out, again */
    ROLE_DRAIN = 16,    /* offline drain: collects its backlog at login */
};

/* Streaming RESP (2 and 3) parser state: aggregates may span reads. */
struct resp_state {
    uint8_t depth;   /* 0: between top-level values */
    char top;        /* type byte of the top-level aggregate being read */
    uint8_t kind;    /* push kind (RK_*) */
    uint32_t idx;    /* index of the current element at depth 1 */
    int64_t left[8]; /* elements left at each depth (1-based) */
};

/* One client connection. */
struct bconn {
    int fd;
    uint32_t id;   /* index in the connection array */
    uint32_t user; /* user number: Parley user u<N>, Redis channel u<N>, MQTT topic u<N> */
    uint32_t peer; /* dm: connection id of the partner */
    uint16_t node; /* index in o.ports[] of the server it connects to */
    enum conn_state state;
    unsigned role;
    struct event *rev, *wev;
    bool writing, dirty, hello_done, sub_done, logout_sent, was_ready;
    struct bconn *next_dirty;
    char *in; /* partial frame left from the previous read */
    size_t in_len;
    char *out;
    size_t out_off, out_len, out_cap;
    uint64_t sent;    /* messages sent in the workload */
    uint64_t done;    /* of those: delivered (dm window) */
    uint64_t replies; /* replies to message requests */
    uint64_t errors;  /* error replies */
    uint64_t received;
    uint64_t tag;
    uint64_t max_id, acked_id; /* Parley: highest `* MSG` id seen and acknowledged */
    uint64_t *pend;            /* send times of requests awaiting a reply (a ring) */
    uint32_t pend_head, pend_tail, pend_cap;
    uint64_t connect_ns;
    struct resp_state resp;
    struct ssl_st *ssl; /* --tls */
};

/* Options of one run. */
struct opts {
    enum target target;
    const char *host;
    int port;       /* the first of ports[] */
    int server_pid; /* the first of server_pids[] */
    /* --port P1,P2,...: connection i connects to ports[i % nports] (several cluster nodes) */
    int ports[MAX_NODES];
    int nports;
    /* --server-pid A,B,...: /proc figures summed over these processes */
    int server_pids[MAX_NODES];
    int npids;
    /* --metrics P1,P2,...: 127.0.0.1:P/metrics of each server, in the order of ports[] */
    int metrics_ports[MAX_NODES];
    int nmetrics;
    double hold;            /* idle: keep the sessions this long after measuring (or SIGUSR1) */
    const char *ready_file; /* idle: written once the sessions are logged in and quiet */
    const char *workload;
    const char *label;
    const char *password;
    long n;          /* recipients (broadcast) or sessions (idle) */
    long pairs;      /* dm pairs */
    long size;       /* message text bytes */
    double rate;     /* open loop: messages per second offered; 0: saturation */
    long window;     /* saturation: messages in flight per sender (broadcast: in total) */
    double duration; /* seconds of measured load */
    double warmup;   /* seconds of load before measuring */
    long user_base;  /* first user number used */
    long senders;    /* offline: sending sessions */
    long msgs;       /* offline: messages to store at most */
    long storm;      /* login: concurrent storm connections */
    long storm_users;
    long src_addrs;   /* spread connections over 127.0.0.1 .. 127.0.0.<src_addrs> */
    long concurrency; /* connections being set up at once */
    double timeout;   /* hard limit on the whole run, seconds */
    bool quiet;
    bool tls; /* speak TLS (the server's key is not checked: loopback only) */
};

/* The one benchmark context. */
struct bench {
    struct opts o;
    struct event_base *base;
    struct bconn *conns;
    uint32_t nconns;
    struct bconn *dirty;
    uint64_t now;      /* monotonic ns, refreshed per callback */
    uint64_t epoch;    /* start of this process: older timestamps are stale */
    uint64_t deadline; /* hard deadline (ns) */
    uint64_t next_due; /* open loop: when the next message is due (ns), 0: none */
    bool measuring;
    uint64_t delivered; /* measured deliveries */
    uint64_t delivered_all;
    uint64_t stale, foreign, presence, byes, lost, conn_errors, setup_fail;
    uint64_t bytes_in, bytes_out;
    uint32_t ready, pending_setup, open;
    /* broadcast: per-message receive counts, to retire a message once all recipients have it */
    uint32_t *ring;
    uint64_t ring_mask;
    uint64_t bc_sent, bc_done, bc_fanout;
    struct hist *hist;
    char *payload;              /* template text of o.size bytes */
    struct ssl_ctx_st *tls_ctx; /* --tls */
};

extern struct bench B;

/* Returns CLOCK_MONOTONIC in nanoseconds. */
uint64_t now_ns(void);

/* loop.c: connections and the event loop */
int loop_init(void);
void loop_free(void);
int conn_start(struct bconn *c);
void conn_close(struct bconn *c);
char *conn_reserve(struct bconn *c, size_t n);
void conn_commit(struct bconn *c, size_t n);
void conn_flush_all(void);
/* Runs the loop until `done()` returns true, `until` (ns) passes or the hard deadline passes;
 * calls `tick()` (may be NULL) after every iteration. Returns true when `done()` held. */
bool loop_run(bool (*done)(void), void (*tick)(void), uint64_t until);

/* adapters.c: the three protocols */
void ad_handshake(struct bconn *c);
void ad_send_direct(struct bconn *c, uint32_t to_user, uint64_t t, uint32_t seq);
void ad_send_bcast(struct bconn *c, uint64_t t, uint32_t seq);
void ad_send_store(struct bconn *c, uint32_t to_user, uint64_t t, uint32_t seq);
void ad_drain(struct bconn *c);
void ad_logout(struct bconn *c);
/* Parses `len` bytes; returns how many were consumed (the rest is a partial frame). */
size_t ad_parse(struct bconn *c, const char *buf, size_t len);
/* Called after each read's frames were parsed (Parley: the cumulative ACK). */
void ad_batch_end(struct bconn *c);

/* Hooks the adapters call (main.c). */
void hook_ready(struct bconn *c);
void hook_reply(struct bconn *c, bool ok);
void hook_delivery(struct bconn *c, const char *text, size_t len);
void hook_closed(struct bconn *c, bool expected);

/* stats.c: latency histogram, the server's /proc figures, its system calls, its /metrics,
 * credentials */
struct hist;
struct hist *hist_new(void);
void hist_reset(struct hist *h);
void hist_add(struct hist *h, uint64_t ns);
uint64_t hist_count(const struct hist *h);
/* Returns the value (ns) at quantile q (0..1); q = 1 gives the maximum. */
uint64_t hist_quantile(const struct hist *h, double q);

/* What /proc says of the server at one moment. */
struct srv_sample {
    bool ok;
    double cpu_s;      /* utime + stime of every thread */
    long rss_kb;       /* VmRSS */
    long hwm_kb;       /* VmHWM */
    uint64_t syscalls; /* system calls entered since the counters were opened (0 if none) */
    bool have_syscalls;
};

/* Opens system-call counters (the raw_syscalls:sys_enter tracepoint) on every thread of `pid`.
 * Returns the number of threads counted, 0 when tracepoints are unavailable. */
int sys_open(int pid);
void sys_close(void);
void srv_sample(int pid, struct srv_sample *s);
/* The same over every process of o.server_pids (summed; ok only when every one answered):
 * system-call counters on all of their threads. */
int sys_open_all(void);
void srv_sample_all(struct srv_sample *s);
double self_cpu_s(void);

/* What the servers' /metrics say at one moment (--metrics), summed over the servers. */
struct srv_metrics {
    bool ok;                    /* every server answered with every figure */
    double reads, writes;       /* parley_socket_reads_total, parley_socket_writes_total */
    double accepted, delivered; /* parley_messages_accepted_total, ..._delivered_total */
    struct scrape_hist loop;    /* parley_loop_iteration_duration_seconds, merged */
};

/* Scrapes every server of o.metrics_ports; not ok (and a line on stderr) when one of them does
 * not answer in time or lacks a figure, or when there is no --metrics. */
void srv_metrics_all(struct srv_metrics *m);

/* Writes a credentials file: u<base>..u<base+users-1> with `password` in plain text, then
 * s0..s<hashed-1> with an argon2id hash of it. Returns 0 or -1. */
int make_credentials(const char *path, long users, long hashed, const char *password,
                     unsigned long long ops, size_t mem);

#endif
