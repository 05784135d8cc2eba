/* The "redis" store: the cluster's durable state in Redis (docs/CLUSTER.md has every key).
 * Writes are operations of the node's batch (cluster_op: one script per loop iteration, which
 * also tells the other nodes through the event stream); reads are commands sent after the
 * batch so far. Everything answers from the loop, once Redis has: nothing here blocks, except
 * the reads of start-up (block_each, lock_each, account_each) on the blocking connection. */
#include "server/store.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/proto.h"
#include "server/cluster.h"
#include "server/log.h"

/* How long store_close waits for the answers of what was sent (the link gives up on a command
 * after its own timeout before that). */
#define REDIS_CLOSE_WAIT_MS 10000

struct store_redis {
    struct cluster *cl;
    struct store *owner;
    int64_t waiting; /* messages waiting, all recipients, as last read (for /metrics) */
    size_t pending;  /* operations and reads whose answer has not come */
    bool closed;     /* store_close came first: freed with the last answer */
    char err[256];
};

/* Counts an answer to come (every operation and read whose callback holds `st`). */
static void expect(struct store_redis *st)
{
    st->pending++;
}

/* An answer came. Returns true while the store is open; false once it is closed (the owner is
 * gone: the answer only goes to its caller), freeing it with the last answer. */
static bool answer_came(struct store_redis *st)
{
    st->pending--;
    if (!st->closed)
        return true;
    if (st->pending == 0)
        free(st);
    return false;
}

/* Records why the last operation failed; returns -1. */
static int redis_fail(struct store_redis *st, const char *what)
{
    snprintf(st->err, sizeof(st->err), "%s: %s", what,
             cluster_up(st->cl) ? "Redis refused it" : "Redis cannot be reached");
    return -1;
}

static int redis_open(void **out, const struct store_params *p, char *err, size_t errlen)
{
    *out = NULL;
    if (!p->cluster) {
        snprintf(err, errlen, "the redis store needs --redis");
        return -1;
    }
    struct store_redis *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    st->cl = p->cluster;
    st->owner = p->owner;
    *out = st;
    return 0;
}

/* Sends the batch and waits for what is pending (every accepted write is durable once Redis
 * answered); what the wait leaves is answered to its callers by cluster_free. */
static void redis_close(void *be)
{
    struct store_redis *st = be;
    cluster_drain(st->cl, REDIS_CLOSE_WAIT_MS);
    if (st->pending)
        st->closed = true;
    else
        free(st);
}

static int redis_set_fsync(void *be, bool on)
{
    (void)be;
    return on ? -1 : 0; /* Redis's own appendfsync decides (docs/CLUSTER.md) */
}

static int redis_set_reserve(void *be, size_t bytes)
{
    (void)be;
    (void)bytes;
    return 0;
}

static const char *redis_error(const void *be)
{
    const struct store_redis *st = be;
    return st->err[0] ? st->err : "no error";
}

static void redis_commit(void *be, store_commit_fn done, void *arg)
{
    struct store_redis *st = be;
    cluster_commit(st->cl, done, arg);
}

/* ---- the queue ---- */

/* A message being queued: what its answer must show. */
struct push {
    struct store_redis *st;
    store_push_fn done;
    void *arg;
    int64_t sent_at;
    size_t head_len, body_len; /* text: "<time> <sender> " (head_len bytes), then the body */
    char sender[80], recipient[80];
    char text[]; /* the message as queued and published (batch.lua), and a NUL */
};

static void pushed(void *arg, const struct redisReply *r)
{
    struct push *p = arg;
    struct store_redis *st = p->st;
    bool open = answer_came(st);
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        if (open)
            store_note(st->owner, redis_fail(st, "queueing a message"));
        p->done(p->arg, -1, NULL);
    } else if (r->integer == -1) {
        p->done(p->arg, STORE_FULL, NULL);
    } else if (r->integer == -2) {
        p->done(p->arg, STORE_FENCED, NULL);
    } else if (r->integer == -3 || r->integer == -4) {
        p->done(p->arg, r->integer == -3 ? STORE_BLOCKED_BY_PEER : STORE_BLOCKING_PEER, NULL);
    } else {
        if (open)
            store_note(st->owner, 0);
        struct store_msg m = {
            r->integer, p->sender, p->recipient, p->sent_at, p->text + p->head_len, p->body_len};
        p->done(p->arg, 0, &m);
    }
    free(p);
}

static void redis_queue_push(void *be, const char *sender, const char *recipient, int64_t sent_at,
                             const char *body, size_t body_len, int64_t max_queued,
                             store_push_fn done, void *arg)
{
    struct store_redis *st = be;
    size_t slen = strlen(sender), rlen = strlen(recipient);
    /* a NUL would end the message early in the stream's runs (batch.lua); no line has one */
    struct push *p =
        slen < sizeof(p->sender) && rlen < sizeof(p->recipient) && !memchr(body, '\0', body_len)
            ? malloc(sizeof(*p) + 20 + 1 + slen + 1 + body_len + 1)
            : NULL;
    if (!p) {
        done(arg, -1, NULL);
        return;
    }
    *p = (struct push){st, done, arg, sent_at, 0, body_len, "", ""};
    memcpy(p->sender, sender, slen + 1);
    memcpy(p->recipient, recipient, rlen + 1);
    /* the text as queued: "<time> <sender> <body>", a NUL (the time at most 20 bytes) */
    char *t = proto_put_i64(p->text, sent_at);
    *t++ = ' ';
    memcpy(t, sender, slen);
    t += slen;
    *t++ = ' ';
    p->head_len = (size_t)(t - p->text);
    memcpy(t, body, body_len);
    t[body_len] = '\0';
    char max[24];
    size_t max_len = (size_t)(proto_put_i64(max, max_queued) - max);
    const char *args[] = {sender, recipient, max, p->text};
    size_t lens[] = {slen, rlen, max_len, p->head_len + body_len};
    expect(st);
    cluster_op_item(st->cl, 'Q', 4, args, lens, pushed, p);
}

/* A read of a recipient's queue. */
struct load {
    struct store_redis *st;
    store_msg_fn fn;
    store_done_fn done;
    void *ctx;
    char recipient[80];
};

/* Parses a message as queued ("<time> <sender> <body>", its id `id`) and hands it on. Returns
 * the callback's answer, or 0 for one that cannot be read (skipped). */
static int hand_member(struct load *l, int64_t id, const redisReply *e)
{
    struct cluster_queued q;
    if (e->type != REDIS_REPLY_STRING || !cluster_parse_queued(e->str, e->len, &q))
        return 0;
    struct store_msg m = {id, q.sender, l->recipient, q.at, q.body, q.body_len};
    return l->fn(l->ctx, &m);
}

/* The answer of load.lua: {the first message's id, [messages]}. */
static void loaded(void *arg, const struct redisReply *r)
{
    struct load *l = arg;
    int rc = 0;
    bool open = answer_came(l->st);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_ARRAY) {
        rc = open ? redis_fail(l->st, "loading messages") : -1;
    } else {
        const redisReply *list = r->element[1];
        int64_t id = r->element[0]->integer;
        for (size_t i = 0;
             i < list->elements && hand_member(l, id + (int64_t)i, list->element[i]) == 0; i++)
            ;
    }
    l->done(l->ctx, rc);
    free(l);
}

static void redis_queue_load(void *be, const char *recipient, int64_t after_id, size_t limit,
                             store_msg_fn fn, store_done_fn done, void *ctx)
{
    struct store_redis *st = be;
    struct load *l = malloc(sizeof(*l));
    if (!l || strlen(recipient) >= sizeof(l->recipient)) {
        free(l);
        done(ctx, -1);
        return;
    }
    *l = (struct load){st, fn, done, ctx, ""};
    snprintf(l->recipient, sizeof(l->recipient), "%s", recipient);
    expect(st);
    cluster_read_queue(st->cl, recipient, after_id, limit, loaded, l);
}

/* An answer nobody waits for: only its failure counts (store_writable) and is logged. */
struct noted {
    struct store_redis *st;
    const char *what;
};

static void noted(void *arg, const struct redisReply *r)
{
    struct noted *n = arg;
    bool failed = !r || r->type == REDIS_REPLY_ERROR;
    if (!answer_came(n->st)) {
        if (failed)
            log_error("store: %s: not answered before the store closed", n->what);
    } else if (failed) {
        store_note(n->st->owner, redis_fail(n->st, n->what));
        log_error("store: %s", n->st->err);
    } else {
        store_note(n->st->owner, 0);
    }
    free(n);
}

/* Adds an operation whose answer is only noted. Returns 0 (its failure comes later). */
static int op_noted(struct store_redis *st, char op, int nargs, const char *const *args,
                    const char *what)
{
    struct noted *n = malloc(sizeof(*n));
    if (!n)
        return redis_fail(st, what);
    *n = (struct noted){st, what};
    expect(st);
    cluster_op(st->cl, op, nargs, args, NULL, noted, n);
    return 0;
}

static int redis_queue_ack(void *be, const char *recipient, int64_t up_to_id)
{
    char upto[24];
    snprintf(upto, sizeof(upto), "%lld", (long long)up_to_id);
    const char *args[] = {recipient, upto};
    return op_noted(be, 'A', 2, args, "removing delivered messages");
}

/* An answer carrying one number. */
struct counted {
    struct store_redis *st;
    store_count_fn done;
    void *arg;
};

static void counted(void *arg, const struct redisReply *r)
{
    struct counted *c = arg;
    answer_came(c->st);
    c->done(c->arg, r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1);
    free(c);
}

static void redis_queue_count(void *be, const char *recipient, store_count_fn done, void *arg)
{
    struct store_redis *st = be;
    struct counted *c = malloc(sizeof(*c));
    if (!c) {
        done(arg, -1);
        return;
    }
    *c = (struct counted){st, done, arg};
    /* the queue holds the ids from its acknowledged mark up to its last (batch.lua) */
    static const char count_lua[] =
        "local v = redis.call('HMGET', 'parley:qpos', ARGV[1], ARGV[1] .. ' acked') "
        "return (tonumber(v[1]) or 0) - (tonumber(v[2]) or 0)";
    const char *argv[] = {"EVAL", count_lua, "0", recipient};
    expect(st);
    cluster_command(st->cl, 4, argv, NULL, counted, c);
}

static void totals_read(void *arg, const struct redisReply *r)
{
    struct store_redis *st = arg;
    if (answer_came(st) && r && r->type == REDIS_REPLY_STRING)
        st->waiting = strtoll(r->str, NULL, 10);
}

/* The count read at the previous call (a scrape) and a new read for the next: /metrics must
 * not wait for Redis. Bytes are not counted in Redis. */
static int redis_queue_totals(void *be, struct store_totals *out)
{
    struct store_redis *st = be;
    out->messages = st->waiting;
    out->bytes = 0;
    const char *argv[] = {"HGET", "parley:stats", "messages"};
    expect(st);
    cluster_command(st->cl, 3, argv, NULL, totals_read, st);
    return 0;
}

/* ---- blocks ---- */

/* An answer carrying a result code. */
struct answer {
    struct store_redis *st;
    store_done_fn done;
    void *arg;
    const char *what;
};

static void answered(void *arg, const struct redisReply *r)
{
    struct answer *a = arg;
    bool ok = r && r->type == REDIS_REPLY_INTEGER;
    int rc = ok ? (int)r->integer : -1;
    if (answer_came(a->st))
        store_note(a->st->owner, ok ? rc : redis_fail(a->st, a->what));
    a->done(a->arg, rc);
    free(a);
}

/* Adds an operation whose integer answer goes to `done`. */
static void op_answered(struct store_redis *st, char op, int nargs, const char *const *args,
                        const char *what, store_done_fn done, void *arg)
{
    struct answer *a = malloc(sizeof(*a));
    if (!a) {
        done(arg, redis_fail(st, what));
        return;
    }
    *a = (struct answer){st, done, arg, what};
    expect(st);
    cluster_op(st->cl, op, nargs, args, NULL, answered, a);
}

static void redis_block_add(void *be, const char *blocker, const char *blocked, store_done_fn done,
                            void *arg)
{
    const char *args[] = {blocker, blocked};
    op_answered(be, 'B', 2, args, "adding block", done, arg);
}

static void redis_block_remove(void *be, const char *blocker, const char *blocked,
                               store_done_fn done, void *arg)
{
    const char *args[] = {blocker, blocked};
    op_answered(be, 'U', 2, args, "removing block", done, arg);
}

static int redis_block_each(void *be, store_pair_fn fn, void *ctx)
{
    struct store_redis *st = be;
    const char *argv[] = {"SMEMBERS", "parley:blocks"};
    redisReply *r = cluster_boot_query(st->cl, 2, argv);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return redis_fail(st, "reading blocks");
    }
    int rc = 0;
    for (size_t i = 0; i < r->elements && rc == 0; i++) {
        char pair[160];
        snprintf(pair, sizeof(pair), "%s", r->element[i]->str ? r->element[i]->str : "");
        char *sp = strchr(pair, ' ');
        if (!sp)
            continue;
        *sp = '\0';
        rc = fn(ctx, pair, sp + 1);
    }
    freeReplyObject(r);
    return rc < 0 ? -1 : 0;
}

/* ---- login history ---- */

/* A login is recorded by its claim (presence.c): nothing more here. */
static int redis_presence_login(void *be, const char *name, int64_t now)
{
    (void)be;
    (void)name;
    (void)now;
    return 0;
}

static int redis_presence_logout(void *be, const char *name, int64_t now)
{
    char at[24];
    snprintf(at, sizeof(at), "%lld", (long long)now);
    const char *args[] = {name, at};
    return op_noted(be, 'O', 2, args, "recording a logout");
}

/* The lease is the cluster's heartbeat (cluster.c). */
static int redis_heartbeat(void *be, int64_t now)
{
    (void)be;
    (void)now;
    return 0;
}

/* A crashed node's claims end at its restart or when its lease runs out (cluster.c). */
static int redis_presence_recover(void *be, int64_t now)
{
    (void)be;
    (void)now;
    return 0;
}

/* A read of the login history. */
struct since {
    struct store_redis *st;
    store_name_fn fn;
    store_done_fn done;
    void *ctx;
};

static void since_read(void *arg, const struct redisReply *r)
{
    struct since *s = arg;
    int rc = 0;
    bool open = answer_came(s->st);
    if (!r || r->type != REDIS_REPLY_ARRAY)
        rc = open ? redis_fail(s->st, "listing logouts") : -1;
    else
        for (size_t i = 0; i < r->elements; i++)
            if (r->element[i]->type == REDIS_REPLY_STRING && s->fn(s->ctx, r->element[i]->str))
                break;
    s->done(s->ctx, rc);
    free(s);
}

static void redis_presence_since(void *be, int64_t since, store_name_fn fn, store_done_fn done,
                                 void *ctx)
{
    struct store_redis *st = be;
    struct since *s = malloc(sizeof(*s));
    if (!s) {
        done(ctx, -1);
        return;
    }
    *s = (struct since){st, fn, done, ctx};
    expect(st);
    char from[24];
    snprintf(from, sizeof(from), "%lld", (long long)since);
    const char *argv[] = {"ZREVRANGEBYSCORE", "parley:lastout", "+inf", from};
    cluster_command(st->cl, 4, argv, NULL, since_read, s);
}

static int redis_presence_forget(void *be, const char *name)
{
    const char *args[] = {name};
    return op_noted(be, 'F', 1, args, "pruning login history");
}

/* ---- lock-outs ---- */

/* Single records are not read or written one by one: store_lock_attempt decides in Redis. */
static int redis_lock_get(void *be, const char *name, struct store_lock *lock)
{
    (void)name;
    (void)lock;
    snprintf(((struct store_redis *)be)->err, sizeof(((struct store_redis *)be)->err),
             "the redis store decides lock-outs with store_lock_attempt");
    return -1;
}

static int redis_lock_put(void *be, const char *name, const struct store_lock *lock)
{
    return redis_lock_get(be, name, (struct store_lock *)lock);
}

/* Calls `fn` for every record of a hash of "failures until" values (start-up). */
static int redis_lock_each(void *be, store_lock_fn fn, void *ctx)
{
    struct store_redis *st = be;
    const char *argv[] = {"HGETALL", "parley:locks"};
    redisReply *r = cluster_boot_query(st->cl, 2, argv);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return redis_fail(st, "reading lock-outs");
    }
    int rc = 0;
    for (size_t i = 0; i + 1 < r->elements && rc == 0; i += 2) {
        long long f = 0, u = 0;
        if (sscanf(r->element[i + 1]->str ? r->element[i + 1]->str : "", "%lld %lld", &f, &u) != 2)
            continue;
        struct store_lock l = {(int)f, u};
        rc = fn(ctx, r->element[i]->str, &l);
    }
    freeReplyObject(r);
    return rc < 0 ? -1 : 0;
}

/* A login attempt being counted. */
struct attempt {
    struct store_redis *st;
    store_lock_done_fn done;
    void *arg;
};

static void attempted(void *arg, const struct redisReply *r)
{
    struct attempt *a = arg;
    bool open = answer_came(a->st);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
        if (open)
            store_note(a->st->owner, redis_fail(a->st, "counting a login"));
        a->done(a->arg, -1, STORE_LOCK_LOCKED, NULL);
    } else {
        if (open)
            store_note(a->st->owner, 0);
        struct store_lock l = {(int)r->element[1]->integer, r->element[2]->integer};
        long long v = r->element[0]->integer;
        a->done(a->arg, 0,
                v >= 0 && v <= STORE_LOCK_LOCKED ? (enum store_lock_verdict)v : STORE_LOCK_LOCKED,
                &l);
    }
    free(a);
}

static void redis_lock_attempt(void *be, const char *name, bool password_ok, int64_t now_ms,
                               const struct store_lock_policy *policy, store_lock_done_fn done,
                               void *arg)
{
    struct store_redis *st = be;
    struct attempt *a = malloc(sizeof(*a));
    if (!a) {
        done(arg, -1, STORE_LOCK_LOCKED, NULL);
        return;
    }
    *a = (struct attempt){st, done, arg};
    char now[24], maxf[16], dur[24];
    snprintf(now, sizeof(now), "%lld", (long long)now_ms);
    snprintf(maxf, sizeof(maxf), "%d", policy->max_failures);
    snprintf(dur, sizeof(dur), "%lld", (long long)policy->block_duration);
    const char *args[] = {name, password_ok ? "1" : "0", now, maxf, dur};
    expect(st);
    cluster_op(st->cl, 'L', 5, args, NULL, attempted, a);
}

/* ---- accounts ---- */

static void redis_account_add(void *be, const char *name, const char *hash, store_done_fn done,
                              void *arg)
{
    const char *args[] = {name, hash};
    op_answered(be, 'R', 2, args, "recording an account", done, arg);
}

static int redis_account_each(void *be, store_account_fn fn, void *ctx)
{
    struct store_redis *st = be;
    const char *argv[] = {"HGETALL", "parley:accounts"};
    redisReply *r = cluster_boot_query(st->cl, 2, argv);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return redis_fail(st, "reading accounts");
    }
    int rc = 0;
    for (size_t i = 0; i + 1 < r->elements && rc == 0; i += 2)
        rc = fn(ctx, r->element[i]->str, r->element[i + 1]->str);
    freeReplyObject(r);
    return rc < 0 ? -1 : 0;
}

const struct store_ops store_redis_ops = {
    .name = "redis",
    .answers_early = false,
    .open = redis_open,
    .close = redis_close,
    .set_fsync = redis_set_fsync,
    .set_reserve = redis_set_reserve,
    .error = redis_error,
    .commit = redis_commit,
    .queue_push = redis_queue_push,
    .queue_load = redis_queue_load,
    .queue_ack = redis_queue_ack,
    .queue_count = redis_queue_count,
    .queue_totals = redis_queue_totals,
    .block_add = redis_block_add,
    .block_remove = redis_block_remove,
    .block_each = redis_block_each,
    .presence_login = redis_presence_login,
    .presence_logout = redis_presence_logout,
    .heartbeat = redis_heartbeat,
    .presence_recover = redis_presence_recover,
    .presence_since = redis_presence_since,
    .presence_forget = redis_presence_forget,
    .lock_get = redis_lock_get,
    .lock_put = redis_lock_put,
    .lock_each = redis_lock_each,
    .lock_attempt = redis_lock_attempt,
    .account_add = redis_account_add,
    .account_each = redis_account_each,
};
