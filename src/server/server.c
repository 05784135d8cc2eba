/* The server's set-up, event loop, signals, housekeeping and shutdown; see server.h. */
#include <assert.h>
#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "server/cluster.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/nodeid.h"
#include "server/net_tls.h"
#include "server/relay.h"
#include "server/server.h"
#include "server/store.h"
#include "server/tlscert.h"
#include "server/worker.h"

#define TICK_MS 250
/* Places in the worker queue beyond --max-hash-jobs, for the server's own jobs (the heap trim,
 * the queue log's flushes), so they never take a login's place. */
#define SERVER_POOL_SPARE 4
#define HEARTBEAT_SEC 5

static int64_t (*test_clock)(void);

void server_set_clock(int64_t (*now_ms)(void))
{
    test_clock = now_ms;
}

int64_t server_now_ms(void)
{
    if (test_clock)
        return test_clock();
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads `clock` in seconds for the histograms; 0 when nothing serves them (--metrics off), as
 * reading a thread's CPU time is a system call. */
static double server_clock_seconds(const struct server *srv, clockid_t clock)
{
    if (!srv->cfg.metrics)
        return 0;
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            log_error("cannot raise the file limit: %s", strerror(errno));
    }
}

/* Applies a freshly read credentials table to the directory. */
static int apply_accounts(struct server *srv, const struct auth_table *t)
{
    directory_mark_reset(&srv->dir);
    for (size_t i = 0; i < t->count; i++) {
        const struct auth_entry *e = &t->entries[i];
        struct user *u = directory_add(&srv->dir, e->name);
        if (!u || directory_set_account(u, e->kind, e->secret) < 0)
            return -1;
        directory_mark(&srv->dir, u);
    }
    for (uint32_t id = 0; id < srv->dir.count; id++) {
        struct user *u = directory_by_id(&srv->dir, id);
        if (u->has_account && !directory_mark(&srv->dir, u))
            u->has_account = false;
    }
    return 0;
}

/* Counts the accounts in use (into `*running`) and returns how many of them `t` lacks. */
static size_t accounts_lost(struct server *srv, const struct auth_table *t, size_t *running)
{
    size_t lost = 0;
    *running = 0;
    directory_mark_reset(&srv->dir);
    for (size_t i = 0; i < t->count; i++) {
        struct user *u = directory_find(&srv->dir, t->entries[i].name, strlen(t->entries[i].name));
        if (u)
            directory_mark(&srv->dir, u);
    }
    for (uint32_t id = 0; id < srv->dir.count; id++) {
        struct user *u = directory_by_id(&srv->dir, id);
        if (!u->has_account)
            continue;
        (*running)++;
        if (!directory_mark(&srv->dir, u))
            lost++;
    }
    return lost;
}

/* Returns true when a freshly read file may replace the accounts in use; logs why not. */
static bool reload_allowed(struct server *srv, const struct auth_table *t, const char *err)
{
    const char *path = srv->cfg.credentials;
    size_t running = 0, lost = accounts_lost(srv, t, &running);
    switch (auth_reload_verdict(t, running, lost, srv->cfg.max_reload_loss)) {
    case AUTH_RELOAD_OK:
        return true;
    case AUTH_RELOAD_BAD_LINES:
        log_error("credentials %s: reload refused, %zu line(s) cannot be used (%s); the %zu "
                  "accounts in use are kept",
                  path, t->bad_lines, err, running);
        return false;
    case AUTH_RELOAD_LOSES_MANY:
        log_error("credentials %s: reload refused, it would remove %zu of the %zu accounts in use "
                  "(more than %u%%, --max-reload-loss); they are kept",
                  path, lost, running, srv->cfg.max_reload_loss);
        return false;
    }
    return false;
}

/* Reads the credentials file and applies it; a reload (SIGHUP) must pass reload_allowed. */
static int load_credentials(struct server *srv, bool reload)
{
    struct auth_table t = {0};
    char err[256] = "";
    struct auth_cost cap = {srv->cfg.max_hash_ops, srv->cfg.max_hash_mem};
    int rc = auth_load(srv->cfg.credentials, &cap, &t, err, sizeof(err));
    if (rc < 0) {
        log_error("cannot read credentials %s: %s", srv->cfg.credentials, err);
    } else if (reload && !reload_allowed(srv, &t, err)) {
        rc = -1;
    } else {
        if (t.bad_lines)
            log_error("credentials %s: %zu line(s) cannot be used; the first: %s",
                      srv->cfg.credentials, t.bad_lines, err);
        else if (err[0])
            log_error("credentials %s: %s", srv->cfg.credentials, err);
        rc = apply_accounts(srv, &t);
        log_info("credentials: %zu accounts", t.count);
    }
    auth_table_free(&t);
    return rc;
}

int server_reload_credentials(struct server *srv)
{
    return load_credentials(srv, true);
}

static int load_block(void *ctx, const char *a, const char *b)
{
    struct server *srv = ctx;
    struct user *ua = directory_add(&srv->dir, a);
    struct user *ub = directory_add(&srv->dir, b);
    return ua && ub && directory_block(ua, ub) >= 0 ? 0 : -1;
}

static int load_lock(void *ctx, const char *name, const struct store_lock *l)
{
    struct server *srv = ctx;
    struct user *u = directory_add(&srv->dir, name);
    if (!u)
        return -1;
    u->lock.failures = l->failures;
    u->lock.locked_until = l->locked_until;
    return 0;
}

static int load_account(void *ctx, const char *name, const char *hash)
{
    struct server *srv = ctx;
    struct user *u = directory_add(&srv->dir, name);
    if (!u)
        return -1;
    return u->has_account ? 0 : directory_set_account(u, AUTH_ARGON2ID, hash);
}

/* With --redis: joins the cluster (its data directory keeps the node id and TLS files). */
static int join_cluster(struct server *srv)
{
    char id[NODEID_MAX + 1], err[512];
    if (!srv->cfg.redis)
        return 0;
    if (mkdir(srv->cfg.data_dir, 0700) < 0 && errno != EEXIST) {
        log_error("cannot make %s: %s", srv->cfg.data_dir, strerror(errno));
        return -1;
    }
    if (nodeid_resolve(srv->cfg.node_id, srv->cfg.data_dir, id, sizeof(id), err, sizeof(err)) < 0) {
        log_error("%s", err);
        return -1;
    }
    struct cluster_settings cs = {srv->cfg.redis,
                                  srv->cfg.redis_password,
                                  id,
                                  srv->cfg.redis_timeout_ms,
                                  srv->cfg.redis_max_inflight,
                                  srv->cfg.lease_secs * 1000,
                                  srv->cfg.redis_stream_max};
    srv->cluster = cluster_new(srv->base, &cs, err, sizeof(err));
    if (!srv->cluster) {
        log_error("%s", err);
        return -1;
    }
    log_info("node %s of the cluster on %s", id, srv->cfg.redis);
    return 0;
}

/* Hands the store's slow file work (the flushes and the close of a queue log rewrite) to the
 * workers. */
static int submit_to_workers(void *pool, void (*job)(void *arg), void (*done)(void *arg), void *arg)
{
    return worker_submit(pool, job, done, arg) ? 0 : -1;
}

static int open_store(struct server *srv)
{
    char err[512];
    struct store_params p = {.dir = srv->cfg.data_dir,
                             .accept_loss = srv->cfg.accept_store_loss,
                             .base = srv->base,
                             .cluster = srv->cluster,
                             .submit = submit_to_workers,
                             .submit_ctx = srv->workers};
    int rc = store_open_with(&srv->store, srv->cfg.store, &p, err, sizeof(err));
    if (rc < 0) {
        log_error("cannot open the store in %s: %s", srv->cfg.data_dir, err);
        return -1;
    }
    if ((srv->cfg.fsync && store_set_fsync(srv->store, true) < 0) ||
        store_set_reserve(srv->store, srv->cfg.store_reserve) < 0) {
        log_error("cannot set up the store: %s", store_error(srv->store));
        return -1;
    }
    if (store_block_each(srv->store, load_block, srv) < 0 ||
        store_lock_each(srv->store, load_lock, srv) < 0 ||
        store_account_each(srv->store, load_account, srv) < 0) {
        log_error("cannot load the store: %s", store_error(srv->store));
        return -1;
    }
    /* Login history is best effort: a full disk must not keep the server from starting. */
    int64_t now = (int64_t)time(NULL);
    if (store_presence_recover(srv->store, now) < 0 || store_heartbeat(srv->store, now) < 0)
        log_error("store: cannot record the start in the login history: %s",
                  store_error(srv->store));
    srv->last_heartbeat = now;
    return 0;
}

/* Writes ports[0], and ports[1] on a second line when it is not -1. */
static int write_port_file(const char *path, const int ports[2])
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%d\n", ports[0]);
    if (ports[1] >= 0)
        fprintf(f, "%d\n", ports[1]);
    if (fclose(f) != 0 || rename(tmp, path) < 0)
        return -1;
    return 0;
}

void server_undo_on_failure(struct server *srv, struct session *s, const char *tag, size_t pos,
                            size_t len, int64_t prev_sent_id)
{
    if (srv->n_undo == srv->cap_undo) {
        size_t cap = srv->cap_undo ? srv->cap_undo * 2 : 64;
        struct server_undo *p = realloc(srv->undo, cap * sizeof(*p));
        if (!p) {
            net_abort(s->conn); /* cannot be corrected later: never let it out */
            return;
        }
        srv->undo = p;
        srv->cap_undo = cap;
    }
    struct server_undo *u = &srv->undo[srv->n_undo++];
    *u = (struct server_undo){.s = s, .pos = pos, .len = len, .prev_sent_id = prev_sent_id};
    if (tag) {
        size_t n = strnlen(tag, PROTO_MAX_TAG);
        memcpy(u->tag, tag, n);
        u->tag[n] = '\0';
    }
}

/* The commit failed: every reply that said "accepted" becomes an error and every message shown
 * to a recipient disappears, before any of it is written. Undone last to first, so the
 * positions of earlier entries stay right. */
static void undo_output(struct server *srv)
{
    for (size_t i = srv->n_undo; i-- > 0;) {
        struct server_undo *u = &srv->undo[i];
        char line[PROTO_MAX_TAG + 64];
        size_t n = 0;
        if (u->tag[0])
            n = (size_t)snprintf(line, sizeof(line), "%s ERR %d %s\n", u->tag,
                                 PROTO_E_STORE_UNAVAILABLE,
                                 proto_error_text(PROTO_E_STORE_UNAVAILABLE));
        else
            u->s->sent_id = u->prev_sent_id;
        net_splice(u->s->conn, u->pos, u->len, line, n);
    }
}

void server_close_after_commit(struct server *srv, struct session *s)
{
    if (s->close_queued)
        return;
    session_ref(s);
    s->close_queued = true;
    s->close_next = NULL;
    if (srv->closing_last)
        srv->closing_last->close_next = s;
    else
        srv->closing = s;
    srv->closing_last = s;
}

/* Closes the connections whose close waited for a commit, with the OK of a LOGOUT: the
 * logout is recorded, or Redis failed and this node re-validates its claims when it is back. */
static void close_waiting(struct session *s)
{
    while (s) {
        struct session *next = s->close_next;
        s->close_queued = false;
        s->close_next = NULL;
        if (!s->gone && s->logout_ok)
            session_ok(s, s->tag, NULL);
        if (!s->gone)
            net_close(s->conn);
        session_unref(s);
        s = next;
    }
}

/* The group commit's answer: on failure, the output that counted on it is withdrawn. */
static void on_committed(void *arg, int rc)
{
    struct commit_wait *w = arg;
    struct server *srv = w->srv;
    close_waiting(w->closing);
    if (w != &srv->commit_plain)
        free(w);
    if (rc < 0 || srv->n_undo)
        srv->commit_failed = rc < 0; /* a batch that held writes tells whether they were lost */
    if (rc < 0) {
        log_error("store: commit failed (%s); %zu replies and deliveries withdrawn",
                  store_error(srv->store), srv->n_undo);
        undo_output(srv);
    }
    srv->n_undo = 0;
}

/* Group commit: makes this iteration's queue writes durable before any output is written. The
 * local backend answers before store_commit returns, so net_flush follows the answer. The
 * sessions waiting to close go with the commit; without memory for its context they wait for
 * the next one. */
static void commit_store(struct server *srv)
{
    double t0 = server_clock_seconds(srv, CLOCK_MONOTONIC);
    struct commit_wait *w = srv->closing ? malloc(sizeof(*w)) : NULL;
    if (w) {
        *w = (struct commit_wait){srv, srv->closing};
        srv->closing = srv->closing_last = NULL;
    } else {
        w = &srv->commit_plain;
        *w = (struct commit_wait){srv, NULL};
    }
    store_commit(srv->store, on_committed, w);
    metrics_observe(METRICS_STORE_COMMIT, server_clock_seconds(srv, CLOCK_MONOTONIC) - t0);
    assert(srv->n_undo == 0);
}

/* Runs on a worker thread: malloc_trim walks every free chunk of the heap (16-27 ms after a
 * burst left 170 MB free, measured here), which the loop must not wait for. It takes each
 * arena's lock in turn, so a malloc of the loop meanwhile may wait for one arena, never for
 * the whole walk. */
static void trim_job(void *arg)
{
    (void)arg;
    malloc_trim(0);
}

static void trim_done(void *arg)
{
    struct server *srv = arg;
    srv->trimming = false;
}

/* Once traffic pauses for a tick after a burst, gives the memory the burst freed back to the
 * system (buffers of many sizes leave holes that free() alone keeps), so idle sessions cost
 * only what they hold; the trim runs off the loop, one at a time. */
static void trim_after_burst(struct server *srv)
{
    struct net_stats st;
    net_get_stats(srv->net, &st);
    if (st.bytes_in != srv->last_bytes_in) {
        srv->last_bytes_in = st.bytes_in;
        srv->heap_dirty = true;
    } else if (srv->heap_dirty && !srv->trimming) {
        srv->trimming = worker_submit(srv->workers, trim_job, trim_done, srv) != NULL;
        srv->heap_dirty = !srv->trimming; /* the pool is full: try at the next tick */
    }
}

/* free() keeps up to this much at the top of the heap instead of shrinking it at once (and a
 * growing heap asks the kernel for this much more each time): bursts of output buffers do not
 * turn into a brk() per buffer. trim_after_burst gives it all back once traffic pauses. */
#define SERVER_HEAP_SLACK (16 << 20)

static void tune_heap(void)
{
    mallopt(M_TRIM_THRESHOLD, SERVER_HEAP_SLACK);
    mallopt(M_TOP_PAD, SERVER_HEAP_SLACK / 16);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *srv = arg;
    int64_t now_ms = server_now_ms();
    session_expire(srv, now_ms);
    p2p_expire(srv, now_ms);
    int64_t now = (int64_t)time(NULL);
    if (now - srv->last_heartbeat >= HEARTBEAT_SEC) {
        srv->last_heartbeat = now;
        if (store_heartbeat(srv->store, now) < 0)
            log_error("store: cannot record heartbeat: %s", store_error(srv->store));
        else
            srv->commit_failed = false; /* the store takes writes again */
    }
    trim_after_burst(srv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct server *srv = arg;
    if (sig == SIGHUP) {
        log_info("SIGHUP: re-reading %s", srv->cfg.credentials);
        server_reload_credentials(srv);
        return;
    }
    log_info("signal %d: shutting down", (int)sig);
    srv->stopping = true;
}

static int add_signal(struct server *srv, struct event **ev, int sig)
{
    *ev = evsignal_new(srv->base, sig, on_signal, srv);
    return *ev && event_add(*ev, NULL) == 0 ? 0 : -1;
}

static int start_events(struct server *srv)
{
    struct timeval tick = {0, TICK_MS * 1000};
    srv->tick = event_new(srv->base, -1, EV_PERSIST, on_tick, srv);
    if (!srv->tick || event_add(srv->tick, &tick) < 0)
        return -1;
    if (add_signal(srv, &srv->sig_term, SIGTERM) < 0 ||
        add_signal(srv, &srv->sig_int, SIGINT) < 0 || add_signal(srv, &srv->sig_hup, SIGHUP) < 0)
        return -1;
    return 0;
}

int server_tls_files(const struct config *cfg, char *cert, char *key, size_t len, char *err,
                     size_t errlen)
{
    if (!cfg->tls_cert)
        return tlscert_ensure(cfg->data_dir, cert, key, len, err, errlen);
    snprintf(cert, len, "%s", cfg->tls_cert);
    snprintf(key, len, "%s", cfg->tls_key);
    return 0;
}

/* Loads the TLS context when a port speaks TLS. Returns 0, or -1 (logged). */
static int load_tls(struct server *srv)
{
    char cert[PATH_MAX], key[PATH_MAX], err[512];
    if (!srv->cfg.tls && srv->cfg.tls_port < 0)
        return 0;
    if (server_tls_files(&srv->cfg, cert, key, sizeof(cert), err, sizeof(err)) == 0)
        srv->tls = net_tls_new(cert, key, err, sizeof(err));
    if (!srv->tls) {
        log_error("%s", err);
        return -1;
    }
    return 0;
}

/* Opens the main port (TLS with --tls) and the --tls-port beside it; the port file gets the
 * main port on its first line and the TLS port on a second. */
static int start_listening(struct server *srv)
{
    char err[256];
    int ports[2] = {0, -1};
    if (net_listen(srv->net, srv->cfg.bind_addr, srv->cfg.port, srv->cfg.tls ? srv->tls : NULL,
                   &ports[0], err, sizeof(err)) < 0 ||
        (srv->cfg.tls_port >= 0 && net_listen(srv->net, srv->cfg.bind_addr, srv->cfg.tls_port,
                                              srv->tls, &ports[1], err, sizeof(err)) < 0)) {
        log_error("%s", err);
        return -1;
    }
    if (srv->cfg.port_file && write_port_file(srv->cfg.port_file, ports) < 0) {
        log_error("cannot write port file %s: %s", srv->cfg.port_file, strerror(errno));
        return -1;
    }
    log_info("listening on port %d%s", ports[0], srv->cfg.tls ? " (TLS)" : "");
    if (ports[1] >= 0)
        log_info("listening on port %d (TLS)", ports[1]);
    return 0;
}

static int start_network(struct server *srv)
{
    struct net_limits limits = {srv->cfg.max_line,          srv->cfg.max_output,
                                srv->cfg.max_connections,   srv->cfg.max_per_address,
                                srv->cfg.handshake_timeout, srv->cfg.send_batch};
    struct net_handlers handlers = {session_open, session_frame, session_closed};
    if (load_tls(srv) < 0)
        return -1;
    srv->net = net_new(srv->base, &limits, &handlers, srv);
    if (!srv->net)
        return -1;
    return start_listening(srv);
}

/* Signals that must not kill the server: a peer gone (SIGPIPE; the write fails with EPIPE) and
 * the file-size limit (SIGXFSZ; the write fails with EFBIG and counts as a full disk: 503). */
static void ignore_signals(void)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
}

/* What /metrics reads of the server when scraped (metrics.h). */
static void read_gauges(void *ctx, struct metrics_gauges *g)
{
    struct server *srv = ctx;
    struct net_stats st;
    net_get_stats(srv->net, &st);
    g->connections = st.open;
    g->sessions_hello = srv->hello_list.count;
    g->sessions_login = srv->login_list.count;
    g->sessions_online = srv->online_list.count;
    g->accepted = st.accepted;
    g->refused = st.refused;
    g->cut_off = st.overflows;
    g->bytes_in = st.bytes_in;
    g->bytes_out = st.bytes_out;
    g->output_queued = st.queued;
    g->reads = st.reads;
    g->writes = st.writes;
    g->hash_jobs = srv->hash_jobs;
    g->store_writable = store_writable(srv->store) && !srv->commit_failed &&
                        (!srv->cluster || cluster_up(srv->cluster));
    struct store_totals t = {0, 0};
    if (store_queue_totals(srv->store, &t) == 0) {
        g->waiting_messages = t.messages;
        g->waiting_bytes = t.bytes;
    }
}

/* Serves /metrics and /healthz with --metrics. Returns 0, or -1 (logged). */
static int start_metrics(struct server *srv)
{
    char err[256];
    if (!srv->cfg.metrics)
        return 0;
    if (metrics_start(srv->base, srv->cfg.metrics, read_gauges, srv, err, sizeof(err)) == 0)
        return 0;
    log_error("%s", err);
    return -1;
}

int server_init(struct server *srv, const struct config *cfg)
{
    memset(srv, 0, sizeof(*srv));
    ignore_signals();
    srv->cfg = *cfg;
    directory_init(&srv->dir);
    log_set_verbose(cfg->verbose);
    raise_fd_limit();
    tune_heap();
    srv->fmt_cap = cfg->max_line + 256;
    srv->fmt = malloc(srv->fmt_cap);
    if (!srv->fmt || auth_init() < 0)
        goto fail;
    srv->base = event_base_new();
    /* Before the store, which hands the workers the slow part of its log's rewrite. */
    srv->workers =
        worker_pool_new(srv->base, cfg->hash_threads, cfg->max_hash_jobs + SERVER_POOL_SPARE);
    if (!srv->workers || load_credentials(srv, false) < 0 || join_cluster(srv) < 0 ||
        open_store(srv) < 0)
        goto fail;
    if (srv->cluster && cluster_start(srv->cluster, &relay_handlers, srv) < 0)
        goto fail;
    if (start_events(srv) < 0 || start_metrics(srv) < 0 || start_network(srv) < 0)
        goto fail;
    return 0;
fail:
    log_error("parleyd could not start");
    return -1;
}

/* Says goodbye to every connection; they close once their output is written. */
static void say_goodbye(struct server *srv)
{
    struct session_list *lists[] = {&srv->login_list, &srv->online_list};
    for (size_t i = 0; i < 2; i++)
        while (lists[i]->head) /* a session leaves its list as it closes */
            session_bye(lists[i]->head, "shutdown");
    commit_store(srv);
    net_flush(srv->net);
    if (srv->cluster) /* the logouts must reach Redis before the process ends */
        cluster_drain(srv->cluster, srv->cfg.redis_timeout_ms);
}

int server_run(struct server *srv)
{
    while (!srv->stopping) {
        double cpu = server_clock_seconds(srv, CLOCK_THREAD_CPUTIME_ID);
        /* notices still to deal: look at the sockets, but do not wait for them */
        int flags = EVLOOP_ONCE | (fanout_pending(srv) ? EVLOOP_NONBLOCK : 0);
        if (event_base_loop(srv->base, flags) < 0) {
            log_error("event loop failed");
            break;
        }
        fanout_run(srv);
        if (srv->cluster)
            cluster_read_events(srv->cluster);
        commit_store(srv);
        net_flush(srv->net);
        metrics_observe(METRICS_LOOP_ITERATION,
                        server_clock_seconds(srv, CLOCK_THREAD_CPUTIME_ID) - cpu);
    }
    say_goodbye(srv);
    net_free(srv->net);
    srv->net = NULL;
    return 0;
}

void server_free(struct server *srv)
{
    metrics_stop();
    net_free(srv->net);
    net_tls_free(srv->tls);
    worker_pool_free(srv->workers);
    p2p_free(srv);
    fanout_free(srv);
    struct event *evs[] = {srv->tick, srv->sig_term, srv->sig_int, srv->sig_hup};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        if (evs[i])
            event_free(evs[i]);
    store_close(srv->store);
    cluster_free(srv->cluster); /* its connections are events of the base */
    if (srv->base)
        event_base_free(srv->base);
    directory_free(&srv->dir);
    ratelimit_table_free(&srv->register_limits);
    free(srv->undo);
    free(srv->fmt);
    memset(srv, 0, sizeof(*srv));
}
