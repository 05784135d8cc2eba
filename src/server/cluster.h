/* This node's membership in a cluster of parleyd nodes sharing one Redis (issue 11;
 * docs/CLUSTER.md). Nodes never talk to each other: everything they share is in Redis, written
 * by one Lua script per loop iteration (the batch: cluster_op, cluster_flush) that also appends
 * what the other nodes must hear to each node's own event stream (parley:events:<node>: every
 * event to every other node, a direct message only to its recipient's node), which the node
 * reads from its own position (XREAD on a second connection), so a node cut off for a while
 * misses nothing its stream still holds. A node holds its users through claims (parley:online) that
 * last as long as its lease (parley:node:<id>, renewed every lease/3); a node that finds its
 * lease gone re-validates its claims, and the others reap the claims of a node whose lease
 * ran out. Knows Redis and the event format, nothing of sessions: the server gets the events
 * through struct cluster_handlers. */
#ifndef PARLEY_CLUSTER_H
#define PARLEY_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct redisReply;
struct cluster;

/* What a node is told to use. */
struct cluster_settings {
    const char *addr;     /* HOST:PORT or unix:PATH */
    const char *password; /* NULL: none */
    const char *node_id;
    long timeout_ms;     /* a command unanswered this long: the connection is lost */
    size_t max_inflight; /* commands (batches and reads) unanswered at once */
    long lease_ms;
    size_t stream_max; /* events the stream keeps (MAXLEN ~) */
};

/* The kinds of event in the stream (their first letter there). */
enum cluster_event_kind {
    CLUSTER_MSG = 'M',     /* a direct message was queued: id, recipient, time, sender, body (in the
                              stream, one of a run: docs/CLUSTER.md) */
    CLUSTER_BCAST = 'B',   /* a broadcast: sender, text */
    CLUSTER_LOGIN = 'I',   /* a user was claimed by a node */
    CLUSTER_LOGOUT = 'O',  /* a claim ended (logout, or the node's lease ran out) */
    CLUSTER_BLOCK = 'K',   /* a blocks b */
    CLUSTER_UNBLOCK = 'U', /* a no longer blocks b */
    CLUSTER_LOCK = 'L',    /* the lock-out record of a user: failures, locked until */
    CLUSTER_ACCOUNT = 'R', /* an account made by registration: name, hash */
    CLUSTER_P2P = 'P',     /* a private-chat notice: from, to, then the verb and its fields */
};

/* One event, valid during the handler's call. */
struct cluster_event {
    enum cluster_event_kind kind;
    bool own;         /* written by this node (its effect is applied here already) */
    const char *node; /* the node that wrote it */
    const char *a;    /* MSG: recipient; BCAST: sender; P2P: from; else: the (first) user */
    const char *b;    /* MSG: sender; BLOCK, UNBLOCK: the blocked user; P2P: to; else "" */
    int64_t n1, n2;   /* MSG: id, time; LOCK: failures, locked until */
    const char *text; /* MSG: body; BCAST: text; ACCOUNT: hash; P2P: verb...; else "" */
    size_t text_len;
};

/* What the node does with what the cluster tells it. */
struct cluster_handlers {
    /* An event of the stream, in stream order. */
    void (*on_event)(void *ctx, const struct cluster_event *ev);
    /* This node's claim on `name` is gone (taken by another node while this one was cut off):
     * its session here must end. */
    void (*on_lost)(void *ctx, const char *name);
    /* The event stream may have been cut (the events connection was lost): presence has been
     * reloaded (on_event LOGIN/LOGOUT for every change), and what else depends on the stream
     * (the backlogs of this node's sessions) must be read again. */
    void (*on_resync)(void *ctx);
    /* Calls `fn(arg, name)` for every user this node holds a session of (to re-validate). */
    void (*each_local)(void *ctx, void (*fn)(void *arg, const char *name), void *arg);
    /* `name` is logged in on another node (`node`): from the list read at start-up or again
     * after the stream was cut (on_resync). */
    void (*on_online)(void *ctx, const char *name, const char *node, bool online);
    /* False while the node cannot take more events now (its presence notices are behind):
     * the stream is left unread until cluster_read_events finds this true again. */
    bool (*may_read)(void *ctx);
};

/* The answer of one operation: its element of the batch's reply, or NULL when the batch was
 * lost (Redis down, timed out, refused). Valid during the call. */
typedef void (*cluster_reply_fn)(void *arg, const struct redisReply *r);

/* Connects (blocking, bounded by timeout_ms: start-up only), takes the node's lease, ends the
 * claims a previous run of this node left (a crash), and notes the stream's position. Returns
 * NULL with `err` when Redis cannot be reached or another live process holds this node id. */
struct cluster *cluster_new(struct event_base *base, const struct cluster_settings *s, char *err,
                            size_t errlen);

/* At start-up only: runs one command on the blocking connection and returns its reply (the
 * caller frees it with freeReplyObject), or NULL. */
struct redisReply *cluster_boot_query(struct cluster *c, int argc, const char **argv);

/* Starts serving: tells `h` of every user online on other nodes (on_online), then reads the
 * stream from the position noted by cluster_new, renews the lease and reaps dead nodes. */
int cluster_start(struct cluster *c, const struct cluster_handlers *h, void *ctx);

/* Reads the event stream again if it was left unread (may_read) and may be read now; called
 * once per loop iteration. */
void cluster_read_events(struct cluster *c);

/* True while the command connection is up and the lease is held (what needs Redis can be
 * done). */
bool cluster_up(const struct cluster *c);

/* Adds operation `op` (a letter of the batch script: docs/CLUSTER.md) with its `nargs`
 * arguments (binary-safe; `lens` NULL: strlen) to this iteration's batch; `fn` gets its answer
 * once the batch ran (or NULL). When the node cannot reach Redis, `fn` is called at once with
 * NULL. */
void cluster_op(struct cluster *c, char op, int nargs, const char *const *args, const size_t *lens,
                cluster_reply_fn fn, void *arg);

/* Adds operation `op` as cluster_op does, its last argument one item of a list: when the
 * batch's last operation is the same `op` with the same other arguments, the item joins it.
 * The script sees `op`, the other arguments, the count of items (5 digits), then the items in
 * one argument, joined by NUL bytes (an item must have none), and answers the whole list with three
 * integers {base, n, rest}; each item's `fn` gets its own answer, an integer: base + j for the j-th
 * item (from 0) when j < n, else rest (a list of ids given in a row, and the refusal of the items
 * past them). */
void cluster_op_item(struct cluster *c, char op, int nargs, const char *const *args,
                     const size_t *lens, cluster_reply_fn fn, void *arg);

/* Sends the batch (one EVALSHA); `done(arg, rc)` is called once it ran (0) or was lost (-1),
 * after every operation's answer; at once (0) when the batch is empty. */
void cluster_flush(struct cluster *c, void (*done)(void *arg, int rc), void *arg);

/* Ends a loop iteration's batch: sends it as cluster_flush does, unless it holds nothing but
 * acknowledgements, which wait up to CLUSTER_ACK_DELAY_MS (cluster.c) for other operations to
 * share Redis's fsync with. `done(arg, rc)` is called once this batch, or when none is sent the
 * batches sent before it, were answered (0) or lost (-1). */
void cluster_commit(struct cluster *c, void (*done)(void *arg, int rc), void *arg);

/* Sends one read command after the batch so far (which is flushed first, keeping the order
 * of requests); `fn` gets the whole reply, or NULL (at once when Redis cannot be reached). */
void cluster_command(struct cluster *c, int argc, const char *const *argv, const size_t *lens,
                     cluster_reply_fn fn, void *arg);

/* A direct message as queued and published ("<time> <sender> <body>", batch.lua). */
struct cluster_queued {
    int64_t at;
    char sender[80];
    const char *body; /* into the parsed text */
    size_t body_len;
};

/* Parses `len` bytes of `s` into `*m`. Returns false when they are not such a message. */
bool cluster_parse_queued(const char *s, size_t len, struct cluster_queued *m);

/* Reads the messages queued for `name` with ids above `after_id`, at most `limit` (0: all), as
 * cluster_command does (after the batch so far); `fn` gets {the first one's id, [messages as
 * queued: "<time> <sender> <body>"]}, or NULL. */
void cluster_read_queue(struct cluster *c, const char *name, int64_t after_id, size_t limit,
                        cluster_reply_fn fn, void *arg);

/* Runs the loop until every command sent is answered or `timeout_ms` passed (at shutdown, so
 * the last logouts reach Redis). */
void cluster_drain(struct cluster *c, long timeout_ms);

/* Gives the lease up (the node's claims end now, not at the lease's end) and frees everything.
 * NULL is allowed. */
void cluster_free(struct cluster *c);

#endif
