/* A node of the cluster: the two Redis connections, the batch, the event stream, the lease
 * and the reaper; see cluster.h. The scripts are the files of src/server/lua/ (cluster_lua.h). */
#include "server/cluster.h"

#include <assert.h>
#include <errno.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "server/cluster_lua.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/redis_link.h"

/* Operations one batch takes at most; more go in the next (one script runs at a time in
 * Redis: a bound on how long one node's batch holds everyone else's). */
#define CLUSTER_BATCH_MAX_OPS 4096
/* The width of a list's count of items (cluster_op_item): written again as items join. */
#define CLUSTER_LIST_DIGITS 5
/* How long one XREAD waits for new events before it is sent again. */
#define CLUSTER_XREAD_BLOCK_MS 1000
/* Stream entries one XREAD returns at most: each holds up to 64 events (batch.lua), so a reply
 * carries about a thousand events at most. */
#define CLUSTER_XREAD_COUNT "16"
/* Entries of its stream a node reads before it trims them (else at its next lease renewal):
 * each XTRIM is a write that Redis at `appendfsync always` flushes, and one after every read
 * put a second fsync behind most batches. */
#define CLUSTER_TRIM_ENTRIES 64
/* How long a batch of acknowledgements only waits for other operations to go with it: each
 * batch with a write costs Redis at `appendfsync always` an fsync, and an acknowledgement
 * promises nothing to anyone (lost, its messages come again and the client skips their ids). */
#define CLUSTER_ACK_DELAY_MS 10
/* Reconnection delays (redis_link.h). */
#define CLUSTER_BACKOFF_MIN_MS 50
#define CLUSTER_BACKOFF_MAX_MS 2000
/* The arguments every batch starts with: EVALSHA, sha, 0 keys, node, token, now, length. */
#define CLUSTER_BATCH_HEAD 7

enum cluster_script {
    SCRIPT_BATCH,
    SCRIPT_RENEW,
    SCRIPT_REVALIDATE,
    SCRIPT_REAP,
    SCRIPT_BOOT,
    SCRIPT_LOAD,
    SCRIPT_COUNT,
};

static const char *const script_text[SCRIPT_COUNT] = {
    [SCRIPT_BATCH] = cluster_lua_batch,
    [SCRIPT_RENEW] = cluster_lua_renew,
    [SCRIPT_REVALIDATE] = cluster_lua_revalidate,
    [SCRIPT_REAP] = cluster_lua_reap,
    [SCRIPT_BOOT] = cluster_lua_boot,
    [SCRIPT_LOAD] = cluster_lua_load,
};

/* One operation's answer to give: element `answer` of the batch's reply; for an item of a list
 * (`item` >= 0) its part of the list's answer (cluster_op_item). */
struct cluster_pending {
    cluster_reply_fn fn;
    void *arg;
    size_t answer;
    long item;
};

/* A commit with nothing of its own to send, told when the batch sent before it is answered. */
struct cluster_waiter {
    void (*done)(void *arg, int rc);
    void *arg;
    struct cluster_waiter *next;
};

/* A batch sent and not answered yet: n operations, nanswers elements in the reply. */
struct cluster_batch {
    struct cluster *c;
    struct cluster_pending *ops;
    size_t n, nanswers;
    void (*done)(void *arg, int rc);
    void *done_arg;
    struct cluster_waiter *waiters, *last_waiter; /* in the order they came */
};

struct cluster {
    struct event_base *base;
    char *addr, *password;
    char node[65];
    char stream[96]; /* parley:events:<node>, the events told to this node */
    char token[33];
    long timeout_ms, lease_ms;
    size_t max_inflight;
    char smax[24];
    char sha[SCRIPT_COUNT][41];
    redisContext *boot;      /* the blocking connection of start-up */
    redisReply *boot_online; /* the online hash read at start-up */
    struct redis_link *cmd, *events;
    const struct cluster_handlers *h;
    void *ctx;
    /* the batch being built: its arguments in one buffer */
    char *buf;
    size_t buf_len, buf_cap;
    size_t *offs, *lens;
    size_t argc, argcap;
    struct cluster_pending *ops;
    size_t nops, opscap;
    size_t nanswers; /* the batch's operations, a list counting once */
    /* the batch's last operation when it is a list (cluster_op_item), else list_op 0: the
     * argument index of its first fixed argument and of its count, how many fixed ones */
    char list_op;
    size_t list_first, list_count, list_nfixed, list_items;
    char last_id[64]; /* the stream position read up to */
    size_t untrimmed; /* entries read since the stream was last trimmed */
    struct event *lease_timer;
    struct event *ack_timer;         /* sends a batch of acknowledgements that waited long enough */
    struct cluster_batch *last_sent; /* the newest batch sent and not answered yet, or NULL */
    bool urgent;           /* the batch holds an operation other than an acknowledgement */
    int64_t renewed_ms;    /* when the lease was last confirmed (monotonic) */
    int64_t clock_skew_ms; /* Redis's clock minus this host's (TIME, at start and each renewal) */
    bool started, lease_held, reading, renewing, events_were_up, fatal;
    bool resync_due; /* the events link came back: resync once commands can run too */
    bool paused;     /* the stream is left unread: the handlers could not take more */
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Redis's TIME reply in unix milliseconds, or -1. */
static int64_t time_reply_ms(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING)
        return -1;
    return strtoll(r->element[0]->str, NULL, 10) * 1000 +
           strtoll(r->element[1]->str, NULL, 10) / 1000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool cluster_up(const struct cluster *c)
{
    return c->cmd && redis_link_up(c->cmd) && c->lease_held && !c->fatal &&
           mono_ms() - c->renewed_ms < c->lease_ms;
}

/* ---- the batch ---- */

/* Makes room for `n` more bytes of arguments and one more argument. */
static bool batch_room(struct cluster *c, size_t n)
{
    if (c->buf_len + n > c->buf_cap) {
        size_t cap = c->buf_cap ? c->buf_cap : 4096;
        while (cap < c->buf_len + n)
            cap *= 2;
        char *p = realloc(c->buf, cap);
        if (!p)
            return false;
        c->buf = p;
        c->buf_cap = cap;
    }
    if (c->argc == c->argcap) {
        size_t cap = c->argcap ? c->argcap * 2 : 256;
        size_t *o = realloc(c->offs, cap * sizeof(*o));
        if (o)
            c->offs = o;
        size_t *l = o ? realloc(c->lens, cap * sizeof(*l)) : NULL;
        if (!l)
            return false;
        c->lens = l;
        c->argcap = cap;
    }
    return true;
}

static bool batch_arg(struct cluster *c, const char *s, size_t n)
{
    if (!batch_room(c, n))
        return false;
    memcpy(c->buf + c->buf_len, s, n);
    c->offs[c->argc] = c->buf_len;
    c->lens[c->argc++] = n;
    c->buf_len += n;
    return true;
}

/* Appends a NUL byte and `n` bytes to the batch's last argument. */
static bool batch_join(struct cluster *c, const char *s, size_t n)
{
    assert(c->argc > 0 && c->offs[c->argc - 1] + c->lens[c->argc - 1] == c->buf_len);
    if (!batch_room(c, n + 1))
        return false;
    c->buf[c->buf_len] = '\0';
    memcpy(c->buf + c->buf_len + 1, s, n);
    c->buf_len += n + 1;
    c->lens[c->argc - 1] += n + 1;
    return true;
}

/* Adds an answer to give: the next element of the reply, or (`item` > 0) an item of the list
 * that is the batch's last operation (its first item, 0, takes the next element). */
static bool batch_pending(struct cluster *c, cluster_reply_fn fn, void *arg, long item)
{
    if (c->nops == c->opscap) {
        size_t cap = c->opscap ? c->opscap * 2 : 64;
        struct cluster_pending *p = realloc(c->ops, cap * sizeof(*p));
        if (!p)
            return false;
        c->ops = p;
        c->opscap = cap;
    }
    if (item <= 0)
        c->nanswers++;
    c->ops[c->nops++] = (struct cluster_pending){fn, arg, c->nanswers - 1, item};
    return true;
}

/* Starts an empty batch: its head is filled in when it is sent. */
static void batch_reset(struct cluster *c)
{
    c->buf_len = 0;
    c->argc = 0;
    c->nops = 0;
    c->nanswers = 0;
    c->list_op = 0;
    c->urgent = false;
}

/* Gives item `item` of a list its answer from the list's: {base, n, rest}, base + item for the
 * first n items, rest for the others (cluster.h). */
static void answer_item(const struct cluster_pending *p, const redisReply *list)
{
    struct redisReply *const *e = list->element;
    if (list->type != REDIS_REPLY_ARRAY || list->elements != 3 ||
        e[0]->type != REDIS_REPLY_INTEGER || e[1]->type != REDIS_REPLY_INTEGER ||
        e[2]->type != REDIS_REPLY_INTEGER) {
        p->fn(p->arg, list);
        return;
    }
    redisReply one = {.type = REDIS_REPLY_INTEGER};
    one.integer = p->item < e[1]->integer ? e[0]->integer + p->item : e[2]->integer;
    p->fn(p->arg, &one);
}

static void batch_answered(void *arg, struct redisReply *r)
{
    struct cluster_batch *b = arg;
    struct redisReply **answers =
        r && r->type == REDIS_REPLY_ARRAY && r->elements == b->nanswers ? r->element : NULL;
    bool whole = answers != NULL;
    if (r && r->type == REDIS_REPLY_ERROR)
        log_error("redis: a batch was refused: %s", r->str);
    for (size_t i = 0; i < b->n; i++) {
        const struct cluster_pending *p = &b->ops[i];
        if (answers && p->item >= 0)
            answer_item(p, answers[p->answer]);
        else
            p->fn(p->arg, answers ? answers[p->answer] : NULL);
    }
    if (b->c->last_sent == b)
        b->c->last_sent = NULL;
    if (b->done)
        b->done(b->done_arg, whole ? 0 : -1);
    while (b->waiters) {
        struct cluster_waiter *w = b->waiters;
        b->waiters = w->next;
        w->done(w->arg, whole ? 0 : -1);
        free(w);
    }
    free(b->ops);
    free(b);
}

static void noop_done(void *arg, int rc)
{
    (void)arg;
    (void)rc;
}

/* Adds the letter `op` and its `n` arguments to the batch. */
static bool batch_head(struct cluster *c, char op, size_t n, const char *const *args,
                       const size_t *lens)
{
    bool ok = batch_arg(c, &op, 1);
    for (size_t i = 0; ok && i < n; i++)
        ok = batch_arg(c, args[i], lens ? lens[i] : strlen(args[i]));
    return ok;
}

void cluster_op(struct cluster *c, char op, int nargs, const char *const *args, const size_t *lens,
                cluster_reply_fn fn, void *arg)
{
    if (!cluster_up(c)) {
        fn(arg, NULL);
        return;
    }
    size_t mark_argc = c->argc, mark_len = c->buf_len;
    if (!batch_head(c, op, (size_t)nargs, args, lens) || !batch_pending(c, fn, arg, -1)) {
        c->argc = mark_argc;
        c->buf_len = mark_len;
        fn(arg, NULL);
        return;
    }
    c->list_op = 0;
    c->urgent = c->urgent || op != 'A';
    if (c->nops >= CLUSTER_BATCH_MAX_OPS)
        cluster_flush(c, noop_done, NULL);
}

/* Whether the batch's last operation is a list `op` whose fixed arguments are these. */
static bool joins_list(const struct cluster *c, char op, size_t nfixed, const char *const *args,
                       const size_t *lens)
{
    if (c->list_op != op || c->list_nfixed != nfixed)
        return false;
    for (size_t i = 0; i < nfixed; i++) {
        size_t n = lens ? lens[i] : strlen(args[i]);
        size_t k = c->list_first + i;
        if (c->lens[k] != n || memcmp(c->buf + c->offs[k], args[i], n) != 0)
            return false;
    }
    return true;
}

/* Writes the list's count of items over its fixed-width argument. */
static void set_list_count(struct cluster *c)
{
    assert(c->list_items < CLUSTER_BATCH_MAX_OPS);
    char *d = c->buf + c->offs[c->list_count];
    size_t v = c->list_items;
    for (int i = CLUSTER_LIST_DIGITS - 1; i >= 0; i--, v /= 10)
        d[i] = (char)('0' + v % 10);
}

void cluster_op_item(struct cluster *c, char op, int nargs, const char *const *args,
                     const size_t *lens, cluster_reply_fn fn, void *arg)
{
    assert(nargs >= 1);
    size_t nfixed = (size_t)nargs - 1, mark_argc = c->argc, mark_len = c->buf_len;
    /* A list joined was begun in this loop iteration (the batch goes at its end), when the
     * cluster was up: its items need not ask again (a clock read each). */
    bool joins = joins_list(c, op, nfixed, args, lens);
    if (!joins && !cluster_up(c)) {
        fn(arg, NULL);
        return;
    }
    const char *item = args[nfixed];
    size_t item_len = lens ? lens[nfixed] : strlen(item);
    size_t mark_last = joins ? c->lens[c->argc - 1] : 0;
    char zeros[CLUSTER_LIST_DIGITS];
    memset(zeros, '0', sizeof(zeros));
    bool ok = joins ? batch_join(c, item, item_len)
                    : batch_head(c, op, nfixed, args, lens) && batch_arg(c, zeros, sizeof(zeros)) &&
                          batch_arg(c, item, item_len);
    long index = joins ? (long)c->list_items : 0;
    if (!ok || !batch_pending(c, fn, arg, index)) {
        c->argc = mark_argc;
        c->buf_len = mark_len;
        if (joins)
            c->lens[c->argc - 1] = mark_last;
        fn(arg, NULL);
        return;
    }
    if (!joins) {
        c->list_op = op;
        c->list_first = mark_argc + 1;
        c->list_nfixed = nfixed;
        c->list_count = mark_argc + 1 + nfixed;
        c->list_items = 0;
    }
    c->list_items++;
    set_list_count(c);
    c->urgent = true;
    if (c->nops >= CLUSTER_BATCH_MAX_OPS)
        cluster_flush(c, noop_done, NULL);
}

/* Answers every operation of the batch being built as lost. */
static void fail_pending(struct cluster *c)
{
    struct cluster_pending *ops = c->ops;
    size_t n = c->nops;
    c->ops = NULL;
    c->opscap = 0;
    batch_reset(c);
    for (size_t i = 0; i < n; i++)
        ops[i].fn(ops[i].arg, NULL);
    free(ops);
}

/* Sends the batch being built, its operations now those of `b`. Returns 0 or -1. */
static int send_batch(struct cluster *c, struct cluster_batch *b)
{
    size_t argc = CLUSTER_BATCH_HEAD + c->argc;
    const char **argv = malloc(argc * sizeof(*argv));
    size_t *lens = malloc(argc * sizeof(*lens));
    /* Redis must start it before this node gives up on it (the link's timeout), with a
     * quarter of the timeout to spare for the answer's way back. */
    char deadline[24];
    snprintf(deadline, sizeof(deadline), "%lld",
             (long long)(wall_ms() + c->clock_skew_ms + c->timeout_ms - c->timeout_ms / 4));
    const char *head[CLUSTER_BATCH_HEAD] = {
        "EVALSHA", c->sha[SCRIPT_BATCH], "0", c->node, c->token, deadline, c->smax};
    int rc = -1;
    if (argv && lens && argc <= INT_MAX) {
        for (size_t i = 0; i < CLUSTER_BATCH_HEAD; i++) {
            argv[i] = head[i];
            lens[i] = strlen(head[i]);
        }
        for (size_t i = 0; i < c->argc; i++) {
            argv[CLUSTER_BATCH_HEAD + i] = c->buf + c->offs[i];
            lens[CLUSTER_BATCH_HEAD + i] = c->lens[i];
        }
        rc = redis_link_command(c->cmd, batch_answered, b, (int)argc, argv, lens);
    }
    free(argv);
    free(lens);
    return rc;
}

void cluster_flush(struct cluster *c, void (*done)(void *arg, int rc), void *arg)
{
    if (c->nops == 0) {
        done(arg, 0);
        return;
    }
    struct cluster_batch *b = malloc(sizeof(*b));
    if (!b) {
        fail_pending(c);
        done(arg, -1);
        return;
    }
    *b = (struct cluster_batch){c, c->ops, c->nops, c->nanswers, done, arg, NULL, NULL};
    c->ops = NULL;
    c->opscap = 0;
    if (c->ack_timer)
        evtimer_del(c->ack_timer);
    int rc = send_batch(c, b);
    batch_reset(c);
    if (rc < 0)
        batch_answered(b, NULL);
    else
        c->last_sent = b;
}

/* Sends a batch of acknowledgements that waited; one that took other operations meanwhile
 * (this loop iteration's) goes with the iteration's commit, which the server waits for. */
static void on_ack_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct cluster *c = arg;
    if (!c->urgent)
        cluster_flush(c, noop_done, NULL);
}

/* Calls `done` once the batches sent so far are answered (Redis answers them in order, so the
 * newest is enough): what the commit's caller waits for may be in one of them (sent before a
 * read, or by the timer). At once when none is in flight, or without memory. The same wait
 * asked again in a row is kept once (the iterations of a loop waiting for a slow Redis). */
static void after_sent(struct cluster *c, void (*done)(void *arg, int rc), void *arg)
{
    struct cluster_batch *b = c->last_sent;
    if (b && b->last_waiter && b->last_waiter->done == done && b->last_waiter->arg == arg)
        return;
    struct cluster_waiter *w = b ? malloc(sizeof(*w)) : NULL;
    if (!w) {
        done(arg, 0);
        return;
    }
    *w = (struct cluster_waiter){done, arg, NULL};
    if (b->last_waiter)
        b->last_waiter->next = w;
    else
        b->waiters = w;
    b->last_waiter = w;
}

/* Whether the batch, nothing but acknowledgements, may wait for the ack timer (set now). */
static bool acks_may_wait(struct cluster *c)
{
    struct timeval tv = {0, CLUSTER_ACK_DELAY_MS * 1000};
    return !c->urgent && c->ack_timer &&
           (evtimer_pending(c->ack_timer, NULL) || evtimer_add(c->ack_timer, &tv) == 0);
}

void cluster_commit(struct cluster *c, void (*done)(void *arg, int rc), void *arg)
{
    if (c->nops > 0 && !acks_may_wait(c))
        cluster_flush(c, done, arg);
    else
        after_sent(c, done, arg);
}

/* A read: the whole reply to its caller. */
struct cluster_read {
    cluster_reply_fn fn;
    void *arg;
};

static void read_answered(void *arg, struct redisReply *r)
{
    struct cluster_read rd = *(struct cluster_read *)arg;
    free(arg);
    rd.fn(rd.arg, r);
}

void cluster_read_queue(struct cluster *c, const char *name, int64_t after_id, size_t limit,
                        cluster_reply_fn fn, void *arg)
{
    char after[24], count[24];
    snprintf(after, sizeof(after), "%lld", (long long)after_id);
    snprintf(count, sizeof(count), "%zu", limit);
    const char *argv[] = {"EVALSHA", c->sha[SCRIPT_LOAD], "0", name, after, count};
    cluster_command(c, 6, argv, NULL, fn, arg);
}

void cluster_command(struct cluster *c, int argc, const char *const *argv, const size_t *lens,
                     cluster_reply_fn fn, void *arg)
{
    cluster_flush(c, noop_done, NULL);
    struct cluster_read *rd = malloc(sizeof(*rd));
    if (!rd || !cluster_up(c) ||
        redis_link_command(c->cmd, read_answered, rd, argc, (const char **)argv, lens) < 0) {
        free(rd);
        fn(arg, NULL);
        return;
    }
    *rd = (struct cluster_read){fn, arg};
}

/* ---- the event stream ---- */

/* Splits the next space-separated field off `*p` (NUL-terminating it in place). */
static const char *next_field(char **p)
{
    char *s = *p;
    if (!s)
        return "";
    char *sp = strchr(s, ' ');
    if (sp) {
        *sp = '\0';
        *p = sp + 1;
    } else {
        *p = NULL;
    }
    return s;
}

static int64_t field_i64(char **p)
{
    return strtoll(next_field(p), NULL, 10);
}

/* Parses one event's text (changed in place) into `ev`. Returns false when it is not one. */
static bool parse_event(struct cluster *c, char *text, struct cluster_event *ev)
{
    char *p = text;
    const char *kind = next_field(&p);
    *ev = (struct cluster_event){.b = "", .text = ""};
    ev->kind = (enum cluster_event_kind)kind[0];
    ev->node = next_field(&p);
    ev->own = strcmp(ev->node, c->node) == 0;
    switch (ev->kind) {
    case CLUSTER_BCAST:
    case CLUSTER_ACCOUNT:
    case CLUSTER_LOGIN:
    case CLUSTER_LOGOUT:
        ev->a = next_field(&p);
        break;
    case CLUSTER_BLOCK:
    case CLUSTER_UNBLOCK:
    case CLUSTER_P2P:
        ev->a = next_field(&p);
        ev->b = next_field(&p);
        break;
    case CLUSTER_LOCK:
        ev->a = next_field(&p);
        ev->n1 = field_i64(&p);
        ev->n2 = field_i64(&p);
        break;
    default:
        return false;
    }
    if (p &&
        (ev->kind == CLUSTER_BCAST || ev->kind == CLUSTER_ACCOUNT || ev->kind == CLUSTER_P2P)) {
        ev->text = p;
        ev->text_len = strlen(p);
    }
    return ev->a && ev->a[0];
}

/* Hands one event (a field's value) to the handlers. */
static void take_event(struct cluster *c, const redisReply *v)
{
    if (v->type != REDIS_REPLY_STRING)
        return;
    char *text = malloc(v->len + 1);
    if (!text) {
        log_error("redis: out of memory reading an event; skipped");
        return;
    }
    memcpy(text, v->str, v->len);
    text[v->len] = '\0';
    struct cluster_event ev;
    if (parse_event(c, text, &ev))
        c->h->on_event(c->ctx, &ev);
    else
        log_error("redis: an event in %s cannot be read; skipped", c->stream);
    free(text);
}

/* A run of direct messages: to one recipient, from one node. */
struct cluster_run {
    char node[65];
    char to[80];
    int64_t next_id; /* the id of its next message */
    bool own;
};

/* Reads a run's header ("<node> <recipient> <id of its first message>", `len` bytes). Returns
 * false when it cannot be read. */
static bool take_header(struct cluster *c, struct cluster_run *run, const char *s, size_t len)
{
    char copy[160];
    if (len >= sizeof(copy))
        return false;
    memcpy(copy, s, len);
    copy[len] = '\0';
    char *p = copy;
    const char *node = next_field(&p), *to = p ? next_field(&p) : NULL;
    if (!to || !p || strlen(node) >= sizeof(run->node) || strlen(to) >= sizeof(run->to) || !to[0])
        return false;
    snprintf(run->node, sizeof(run->node), "%s", node);
    snprintf(run->to, sizeof(run->to), "%s", to);
    run->next_id = field_i64(&p);
    run->own = strcmp(run->node, c->node) == 0;
    return run->next_id > 0;
}

bool cluster_parse_queued(const char *s, size_t len, struct cluster_queued *m)
{
    char *end;
    m->at = strtoll(s, &end, 10);
    if (end == s || (size_t)(end - s) >= len || *end != ' ')
        return false;
    const char *sender = end + 1;
    const char *sp = memchr(sender, ' ', len - (size_t)(sender - s));
    size_t n = sp ? (size_t)(sp - sender) : 0;
    if (n == 0 || n >= sizeof(m->sender))
        return false;
    memcpy(m->sender, sender, n);
    m->sender[n] = '\0';
    m->body = sp + 1;
    m->body_len = len - (size_t)(m->body - s);
    return true;
}

/* Hands the run's next message (`len` bytes of `s`) to the handlers as a CLUSTER_MSG event.
 * Returns false when it cannot be read. */
static bool take_message(struct cluster *c, struct cluster_run *run, const char *s, size_t len)
{
    int64_t id = run->next_id++;
    struct cluster_queued m;
    if (!cluster_parse_queued(s, len, &m))
        return false;
    struct cluster_event ev = {.kind = CLUSTER_MSG,
                               .own = run->own,
                               .node = run->node,
                               .a = run->to,
                               .b = m.sender,
                               .n1 = id,
                               .n2 = m.at,
                               .text = m.body,
                               .text_len = m.body_len};
    c->h->on_event(c->ctx, &ev);
    return true;
}

/* Hands a run of direct messages (its header "r <node> <to> <first id>" the field's name, its
 * messages the value, NUL between them: batch.lua) to the handlers, in order. Returns false
 * when a part of it cannot be read (the rest is skipped: the ids that follow would be wrong). */
static bool take_run(struct cluster *c, const redisReply *f, const redisReply *v)
{
    struct cluster_run run;
    if (v->type != REDIS_REPLY_STRING || !take_header(c, &run, f->str + 2, f->len - 2))
        return false;
    const char *p, *sep, *end = v->str + v->len;
    for (p = v->str; p <= end; p = sep + 1) {
        sep = memchr(p, '\0', (size_t)(end - p));
        if (!sep)
            sep = end;
        if (!take_message(c, &run, p, (size_t)(sep - p)))
            return false;
    }
    return true;
}

/* Hands the events of one stream entry ([id, [field, value, field, value...]]: one batch of one
 * node, or a part of it, in order) to the handlers: 'e' fields are events, 'r' fields runs of
 * direct messages (batch.lua). */
static void take_entry(struct cluster *c, const redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING)
        return;
    snprintf(c->last_id, sizeof(c->last_id), "%s", e->element[0]->str);
    const redisReply *kv = e->element[1];
    if (kv->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
        const redisReply *f = kv->element[i], *v = kv->element[i + 1];
        bool named = f->type == REDIS_REPLY_STRING && f->len >= 1;
        bool ok = true;
        if (named && f->len == 1 && f->str[0] == 'e')
            take_event(c, v);
        else if (named && f->len > 2 && f->str[0] == 'r' && f->str[1] == ' ')
            ok = take_run(c, f, v);
        else
            ok = false;
        if (!ok)
            log_error("redis: a field of %s cannot be read; skipped", c->stream);
    }
}

static void read_events(struct cluster *c);

static void trimmed(void *arg, struct redisReply *r)
{
    struct cluster *c = arg;
    if (r && r->type == REDIS_REPLY_ERROR)
        log_error("redis: trimming %s: %s", c->stream, r->str);
}

/* Drops the entries of this node's stream that it has read (it is their only reader; what it
 * has not read stays, up to --redis-stream-max, for a time it is cut off): the stream's runs
 * would otherwise keep megabytes of delivered messages in Redis's memory, which each rewrite
 * of its append-only file writes out again. */
static void trim_read(struct cluster *c)
{
    const char *argv[] = {"XTRIM", c->stream, "MINID", c->last_id};
    if (c->untrimmed && redis_link_command(c->events, trimmed, c, 4, argv, NULL) == 0)
        c->untrimmed = 0;
}

static void events_read(void *arg, struct redisReply *r)
{
    struct cluster *c = arg;
    c->reading = false;
    if (!r)
        return; /* the link was lost: reading goes on when it is up again */
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
        const redisReply *stream = r->element[0];
        if (stream->type == REDIS_REPLY_ARRAY && stream->elements == 2 &&
            stream->element[1]->type == REDIS_REPLY_ARRAY) {
            for (size_t i = 0; i < stream->element[1]->elements; i++)
                take_entry(c, stream->element[1]->element[i]);
            c->untrimmed += stream->element[1]->elements;
            if (c->untrimmed >= CLUSTER_TRIM_ENTRIES)
                trim_read(c);
        }
    } else if (r->type == REDIS_REPLY_ERROR) {
        log_error("redis: reading events: %s", r->str);
    }
    read_events(c);
}

static void read_events(struct cluster *c)
{
    if (c->reading || !c->started || !redis_link_up(c->events))
        return;
    if (!c->h->may_read(c->ctx)) {
        if (!c->paused)
            metrics_count(METRICS_EVENTS_PAUSED);
        c->paused = true;
        return;
    }
    c->paused = false;
    char block[24];
    snprintf(block, sizeof(block), "%d", CLUSTER_XREAD_BLOCK_MS);
    const char *argv[] = {"XREAD", "COUNT",   CLUSTER_XREAD_COUNT, "BLOCK",
                          block,   "STREAMS", c->stream,           c->last_id};
    if (redis_link_command(c->events, events_read, c, 8, argv, NULL) == 0)
        c->reading = true;
}

/* Tells the handlers who is online elsewhere, from an HGETALL of parley:online. */
static void tell_online(struct cluster *c, const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (r->element[i]->type == REDIS_REPLY_STRING &&
            r->element[i + 1]->type == REDIS_REPLY_STRING &&
            strcmp(r->element[i + 1]->str, c->node) != 0)
            c->h->on_online(c->ctx, r->element[i]->str, r->element[i + 1]->str, true);
}

static void online_reloaded(void *arg, const struct redisReply *r)
{
    struct cluster *c = arg;
    tell_online(c, r);
}

/* The events connection came back: what it missed may be gone from the stream. */
static void resync(struct cluster *c)
{
    c->h->on_resync(c->ctx);
    const char *argv[] = {"HGETALL", "parley:online"};
    cluster_command(c, 2, argv, NULL, online_reloaded, c);
}

/* The resync reads Redis (the backlogs, the online hash): it waits until the command link is
 * up and the lease held, or its reads fail and the sessions stay draining for good. */
static void resync_if_due(struct cluster *c)
{
    if (!c->resync_due || !cluster_up(c))
        return;
    c->resync_due = false;
    resync(c);
}

static void events_state(void *arg, bool up)
{
    struct cluster *c = arg;
    if (!up || !c->started)
        return;
    if (c->events_were_up) {
        c->resync_due = true;
        resync_if_due(c);
    }
    c->events_were_up = true;
    read_events(c);
}

/* ---- the lease ---- */

static void lease_lost_for_good(struct cluster *c)
{
    if (c->fatal)
        return;
    c->fatal = true;
    log_error("redis: another process holds node id %s; this node stops serving its users "
              "(give each node its own --node-id)",
              c->node);
}

/* One name of the argument list of a re-validation. */
struct name_args {
    const char **argv;
    size_t n, cap;
    bool failed;
};

static void add_name(void *arg, const char *name)
{
    struct name_args *a = arg;
    if (a->n == a->cap) {
        size_t cap = a->cap * 2;
        const char **p = realloc(a->argv, cap * sizeof(*p));
        if (!p) {
            a->failed = true;
            return;
        }
        a->argv = p;
        a->cap = cap;
    }
    a->argv[a->n++] = name;
}

static void revalidated(void *arg, struct redisReply *r)
{
    struct cluster *c = arg;
    c->renewing = false;
    if (!r)
        return;
    if (r->type == REDIS_REPLY_INTEGER && r->integer == -1) {
        lease_lost_for_good(c);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        log_error("redis: re-validating this node's users failed%s%s", r->str ? ": " : "",
                  r->str ? r->str : "");
        return;
    }
    c->lease_held = true;
    c->renewed_ms = mono_ms();
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            c->h->on_lost(c->ctx, r->element[i]->str);
    log_info("redis: lease of node %s taken again; %zu user(s) lost to other nodes", c->node,
             r->elements);
    resync_if_due(c);
}

/* Takes the lease again (it may have run out) and puts the claims right: keeps those nobody
 * took meanwhile, ends those of sessions gone while Redis could not be told. */
static void revalidate(struct cluster *c)
{
    char lease[24], now[24];
    snprintf(lease, sizeof(lease), "%ld", c->lease_ms);
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
    struct name_args a = {malloc(64 * sizeof(char *)), 0, 64, false};
    if (!a.argv)
        return;
    const char *head[] = {
        "EVALSHA", c->sha[SCRIPT_REVALIDATE], "0", c->node, c->token, lease, c->smax, now};
    for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++)
        add_name(&a, head[i]);
    c->h->each_local(c->ctx, add_name, &a);
    if (!a.failed && a.n <= INT_MAX &&
        redis_link_command(c->cmd, revalidated, c, (int)a.n, a.argv, NULL) == 0)
        c->renewing = true;
    free(a.argv);
}

static void renewed(void *arg, struct redisReply *r)
{
    struct cluster *c = arg;
    c->renewing = false;
    if (!r || r->type != REDIS_REPLY_INTEGER)
        return;
    if (r->integer == 1) {
        c->lease_held = true;
        c->renewed_ms = mono_ms();
        resync_if_due(c);
    } else if (r->integer == 0) {
        c->lease_held = false;
        c->resync_due = true; /* what was read meanwhile failed (cluster_up) */
        log_error("redis: the lease of node %s ran out; taking it again", c->node);
        revalidate(c);
    } else {
        c->lease_held = false;
        lease_lost_for_good(c);
    }
}

static void timed(void *arg, struct redisReply *r)
{
    struct cluster *c = arg;
    int64_t redis_ms = time_reply_ms(r);
    if (redis_ms >= 0)
        c->clock_skew_ms = redis_ms - wall_ms();
}

static void reaped(void *arg, struct redisReply *r)
{
    (void)arg;
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer > 0)
        log_info("redis: %lld claim(s) of dead nodes ended", r->integer);
}

/* Renews the lease and ends the claims of nodes whose lease ran out. */
static void renew(struct cluster *c)
{
    if (c->renewing || c->fatal || !redis_link_up(c->cmd))
        return;
    char lease[24], now[24];
    snprintf(lease, sizeof(lease), "%ld", c->lease_ms);
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
    const char *rn[] = {"EVALSHA", c->sha[SCRIPT_RENEW], "0", c->node, c->token, lease};
    if (redis_link_command(c->cmd, renewed, c, 6, rn, NULL) == 0)
        c->renewing = true;
    const char *rp[] = {"EVALSHA", c->sha[SCRIPT_REAP], "0", c->node, now, c->smax};
    redis_link_command(c->cmd, reaped, c, 6, rp, NULL);
    const char *tm[] = {"TIME"};
    redis_link_command(c->cmd, timed, c, 1, tm, NULL);
}

static void on_lease_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    renew(arg);
    trim_read(arg);
}

static void script_loaded(void *arg, struct redisReply *r)
{
    (void)arg;
    if (r && r->type == REDIS_REPLY_ERROR)
        log_error("redis: cannot load a script: %s", r->str);
}

/* The command connection came (back): the scripts may be gone (Redis restarted), the lease
 * may have run out meanwhile. */
static void cmd_state(void *arg, bool up)
{
    struct cluster *c = arg;
    if (!up) {
        /* reads under way failed (a backlog page: its session stays draining): read again */
        c->resync_due = c->started;
        return;
    }
    for (int i = 0; i < SCRIPT_COUNT; i++) {
        const char *argv[] = {"SCRIPT", "LOAD", script_text[i]};
        redis_link_command(c->cmd, script_loaded, c, 3, argv, NULL);
    }
    if (c->started) {
        if (!c->renewing && !c->fatal)
            revalidate(c); /* Redis may have missed logouts, or let the lease run out */
        resync_if_due(c);
    }
}

/* ---- start-up ---- */

/* Runs a command on the blocking connection; NULL (logged in `err`) on failure. */
static redisReply *boot_command(struct cluster *c, int argc, const char **argv, char *err,
                                size_t errlen)
{
    redisReply *r = redisCommandArgv(c->boot, argc, argv, NULL);
    if (!r) {
        snprintf(err, errlen, "redis %s: %s", c->addr, c->boot->errstr);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "redis %s: %s: %s", c->addr, argv[0], r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

redisReply *cluster_boot_query(struct cluster *c, int argc, const char **argv)
{
    char err[256];
    if (!c->boot)
        return NULL;
    redisReply *r = boot_command(c, argc, argv, err, sizeof(err));
    if (!r)
        log_error("%s", err);
    return r;
}

static int boot_connect(struct cluster *c, char *err, size_t errlen)
{
    char host[256];
    int port;
    bool is_unix;
    if (redis_link_parse_addr(c->addr, host, sizeof(host), &port, &is_unix, err, errlen) < 0)
        return -1;
    struct timeval tv = {c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000};
    c->boot =
        is_unix ? redisConnectUnixWithTimeout(host, tv) : redisConnectWithTimeout(host, port, tv);
    if (!c->boot || c->boot->err) {
        snprintf(err, errlen, "cannot reach redis at %s: %s", c->addr,
                 c->boot ? c->boot->errstr : "out of memory");
        return -1;
    }
    redisSetTimeout(c->boot, tv);
    if (c->password) {
        const char *argv[] = {"AUTH", c->password};
        redisReply *r = boot_command(c, 2, argv, err, errlen);
        if (!r)
            return -1;
        freeReplyObject(r);
    }
    return 0;
}

/* Measures how far Redis's clock is from this host's (batch deadlines are in Redis's). */
static int boot_clock(struct cluster *c, char *err, size_t errlen)
{
    const char *argv[] = {"TIME"};
    redisReply *r = boot_command(c, 1, argv, err, errlen);
    int64_t redis_ms = time_reply_ms(r);
    freeReplyObject(r);
    if (redis_ms < 0) {
        snprintf(err, errlen, "redis %s: TIME gave no time", c->addr);
        return -1;
    }
    c->clock_skew_ms = redis_ms - wall_ms();
    return 0;
}

static int boot_scripts(struct cluster *c, char *err, size_t errlen)
{
    for (int i = 0; i < SCRIPT_COUNT; i++) {
        const char *argv[] = {"SCRIPT", "LOAD", script_text[i]};
        redisReply *r = boot_command(c, 3, argv, err, errlen);
        if (!r)
            return -1;
        if (r->type != REDIS_REPLY_STRING || r->len != 40) {
            snprintf(err, errlen, "redis %s: SCRIPT LOAD gave no digest", c->addr);
            freeReplyObject(r);
            return -1;
        }
        memcpy(c->sha[i], r->str, 41);
        freeReplyObject(r);
    }
    return 0;
}

/* Runs the boot script in `mode` ("start" or "leave") on the blocking connection. */
static redisReply *boot_script(struct cluster *c, const char *mode, char *err, size_t errlen)
{
    char lease[24], now[24];
    snprintf(lease, sizeof(lease), "%ld", c->lease_ms);
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
    const char *argv[] = {
        "EVALSHA", c->sha[SCRIPT_BOOT], "0", c->node, c->token, lease, c->smax, mode, now};
    return boot_command(c, 9, argv, err, errlen);
}

/* Refuses a Redis that holds queues of an earlier layout (parley:nextid: sorted sets with one
 * global id; parley:qnext: a list element per message; parley:qids: elements with a header):
 * this version would misread them. */
static int boot_layout(struct cluster *c, char *err, size_t errlen)
{
    const char *argv[] = {"EXISTS", "parley:nextid", "parley:qnext", "parley:qids"};
    redisReply *r = boot_command(c, 4, argv, err, errlen);
    if (!r)
        return -1;
    bool old = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
    freeReplyObject(r);
    if (old)
        snprintf(err, errlen,
                 "redis %s holds message queues of an earlier parleyd (parley:nextid, "
                 "parley:qnext or parley:qids, and parley:q:*): deliver them with that "
                 "version, or delete those keys (docs/CLUSTER.md)",
                 c->addr);
    return old ? -1 : 0;
}

static int boot_start(struct cluster *c, char *err, size_t errlen)
{
    redisReply *r = boot_script(c, "start", err, errlen);
    if (!r)
        return -1;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[1]->type != REDIS_REPLY_STRING) {
        snprintf(err, errlen, "redis %s: the start-up script gave an odd answer", c->addr);
        freeReplyObject(r);
        return -1;
    }
    if (r->element[0]->integer == 1)
        log_error("redis: node id %s was held by a live lease (a previous run that crashed, or "
                  "another process with the same --node-id); taken over",
                  c->node);
    snprintf(c->last_id, sizeof(c->last_id), "%s", r->element[1]->str);
    c->boot_online = r;
    return 0;
}

static void make_token(char token[33])
{
    unsigned char raw[16];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        uint64_t t = (uint64_t)mono_ms() ^ ((uint64_t)time(NULL) << 20);
        memcpy(raw, &t, sizeof(t));
        memcpy(raw + 8, &t, sizeof(t));
    }
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(token + 2 * i, 3, "%02x", raw[i]);
}

static int make_links(struct cluster *c, char *err, size_t errlen)
{
    struct redis_link_settings cmd = {c->addr,
                                      c->password,
                                      c->timeout_ms,
                                      c->max_inflight,
                                      CLUSTER_BACKOFF_MIN_MS,
                                      CLUSTER_BACKOFF_MAX_MS,
                                      "commands"};
    struct redis_link_settings ev = cmd;
    ev.timeout_ms = c->timeout_ms + CLUSTER_XREAD_BLOCK_MS;
    ev.max_inflight = 4;
    ev.name = "events";
    if (redis_link_new(&c->cmd, c->base, &cmd, cmd_state, c, err, errlen) < 0 ||
        redis_link_new(&c->events, c->base, &ev, events_state, c, err, errlen) < 0)
        return -1;
    return 0;
}

struct cluster *cluster_new(struct event_base *base, const struct cluster_settings *s, char *err,
                            size_t errlen)
{
    struct cluster *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->base = base;
    c->addr = strdup(s->addr);
    c->password = s->password ? strdup(s->password) : NULL;
    snprintf(c->node, sizeof(c->node), "%s", s->node_id);
    snprintf(c->stream, sizeof(c->stream), "parley:events:%s", c->node);
    c->timeout_ms = s->timeout_ms;
    c->lease_ms = s->lease_ms;
    c->max_inflight = s->max_inflight;
    snprintf(c->smax, sizeof(c->smax), "%zu", s->stream_max);
    make_token(c->token);
    if (!c->addr || (s->password && !c->password)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (boot_connect(c, err, errlen) < 0 || boot_clock(c, err, errlen) < 0 ||
        boot_layout(c, err, errlen) < 0 || boot_scripts(c, err, errlen) < 0 ||
        boot_start(c, err, errlen) < 0 || make_links(c, err, errlen) < 0)
        goto fail;
    c->lease_held = true;
    c->renewed_ms = mono_ms();
    return c;
fail:
    cluster_free(c);
    return NULL;
}

int cluster_start(struct cluster *c, const struct cluster_handlers *h, void *ctx)
{
    c->h = h;
    c->ctx = ctx;
    if (c->boot_online && c->boot_online->elements == 3)
        tell_online(c, c->boot_online->element[2]);
    freeReplyObject(c->boot_online);
    c->boot_online = NULL;
    redisFree(c->boot); /* start-up is over: nothing blocks from here on */
    c->boot = NULL;
    long every = c->lease_ms / 3;
    struct timeval tv = {every / 1000, (every % 1000) * 1000};
    c->lease_timer = event_new(c->base, -1, EV_PERSIST, on_lease_timer, c);
    if (!c->lease_timer || event_add(c->lease_timer, &tv) < 0)
        return -1;
    c->ack_timer = evtimer_new(c->base, on_ack_timer, c);
    if (!c->ack_timer)
        return -1;
    c->started = true;
    if (redis_link_up(c->events)) {
        c->events_were_up = true;
        read_events(c);
    }
    return 0;
}

static void on_drain_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

void cluster_read_events(struct cluster *c)
{
    if (c->paused)
        read_events(c);
}

void cluster_drain(struct cluster *c, long timeout_ms)
{
    cluster_flush(c, noop_done, NULL);
    int64_t deadline = mono_ms() + timeout_ms;
    struct event *wake = event_new(c->base, -1, 0, on_drain_timer, NULL);
    while (wake && redis_link_inflight(c->cmd) > 0) {
        int64_t left = deadline - mono_ms();
        if (left <= 0)
            break;
        struct timeval tv = {left / 1000, (left % 1000) * 1000};
        event_add(wake, &tv);
        event_base_loop(c->base, EVLOOP_ONCE);
    }
    if (wake)
        event_free(wake);
}

void cluster_free(struct cluster *c)
{
    if (!c)
        return;
    if (c->started && !c->fatal) {
        char err[256];
        if (!c->boot)
            boot_connect(c, err, sizeof(err));
        redisReply *r = c->boot && !c->boot->err ? boot_script(c, "leave", err, sizeof(err)) : NULL;
        if (r)
            freeReplyObject(r);
    }
    if (c->lease_timer)
        event_free(c->lease_timer);
    if (c->ack_timer)
        event_free(c->ack_timer);
    redis_link_free(c->events);
    redis_link_free(c->cmd);
    freeReplyObject(c->boot_online);
    if (c->boot)
        redisFree(c->boot);
    for (size_t i = 0; i < c->nops; i++)
        c->ops[i].fn(c->ops[i].arg, NULL);
    free(c->ops);
    free(c->buf);
    free(c->offs);
    free(c->lens);
    free(c->addr);
    free(c->password);
    free(c);
}
