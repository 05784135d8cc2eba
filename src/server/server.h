/* The chat layer of parleyd: the server context, sessions (one per connection) and the
 * request handlers. Handlers never touch a socket: they append output to sessions. */
#ifndef PARLEY_SERVER_H
#define PARLEY_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/linebuf.h"
#include "common/proto.h"
#include "server/config.h"
#include "server/directory.h"
#include "server/fanout.h"
#include "server/net.h"
#include "server/pairmap.h"
#include "server/ratelimit.h"

struct cluster;
struct event;
struct event_base;
struct store;
struct worker_pool;
struct p2p_request;
struct p2p_pair;

/* Where a connection is in its life. */
enum session_state {
    SESSION_HELLO,    /* waiting for HELLO */
    SESSION_USERNAME, /* waiting for USER */
    SESSION_PASSWORD, /* user named; waiting for PASS */
    SESSION_CHECKING, /* a password check or account creation runs on a worker */
    SESSION_ONLINE,   /* logged in */
    SESSION_CLOSING,  /* on its way out; ignores requests */
};

/* A doubly linked list of sessions ordered by a deadline. */
struct session_list {
    struct session *head, *tail;
    size_t count;
};

/* The deadlines a session can wait for, one list each (session.c). */
enum session_due {
    SESSION_DUE_MAIN = 0,  /* the login deadline, then the idle deadline once online */
    SESSION_DUE_HELLO = 1, /* the first-frame deadline: until HELLO (--hello-timeout) */
    SESSION_DUE_COUNT = 2,
};

/* A session's place in one deadline list. */
struct session_link {
    struct session *prev, *next;
    struct session_list *list; /* NULL: in none */
    int64_t deadline_ms;
};

/* A request whose answer comes later (session_answer_begin). */
struct session_answer {
    struct session *s;
    struct user *peer; /* the user the request names, if any */
    bool allocated;    /* one of several in flight (else the session's own, s->answer) */
    char tag[PROTO_MAX_TAG + 1];
};

/* One client connection. */
struct session {
    struct server *srv;
    struct net_conn *conn;
    enum session_state state;
    struct user *user;     /* named (PASSWORD, CHECKING) or logged in (ONLINE) */
    struct login_job *job; /* the worker job under way, if any */
    /* its places in the login or online list, and in the hello list (by deadline) */
    struct session_link due[SESSION_DUE_COUNT];
    struct ratelimit rate;
    /* requests other than messages before login (--req-rate; once online, the user's) */
    struct ratelimit request_budget;
    uint64_t fan_seq;         /* the newest presence notice it has been dealt (fanout.h) */
    bool fan_held;            /* its password check waits for the notices (fanout_hold) */
    struct session *fan_next; /* the next session held after it */
    int64_t sent_id;          /* highest message id sent */
    int64_t acked_id;         /* highest message id acknowledged */
    bool draining;            /* queued messages remain in the store to be sent */
    int64_t refill_id;        /* while draining: the next page goes once this id is acknowledged */
    bool new_account;         /* PASS creates the account (registration) */
    uint16_t p2p_port;
    struct p2p_request *p2p_req[2]; /* the P2P requests it made [0] and that were made to it [1] */
    struct p2p_pair *p2p_pairs;     /* its open private sessions */
    unsigned errors;                /* malformed frames in a row (the type of cfg.max_errors) */
    char tag[PROTO_MAX_TAG + 1];    /* the request a worker job or the store will answer */
    struct user *peer;              /* the user the request waiting for the store names */
    /* Answers the session waits for (session_wait) keep its requests from running: frames
     * read meanwhile wait in `stash` (one read's worth at most: net_pause_read). */
    unsigned held;
    unsigned refs;    /* answers still to come, held or not: the session is freed after the last */
    unsigned pending; /* pipelined requests in flight (MSG, BCAST on a cluster): answered in
                         order, they let the next pipelined request run but hold the others */
    struct session_answer answer; /* the one request a held session waits for */
    bool gone;                    /* its connection is gone; freed when refs reaches 0 */
    bool logout_ok;               /* LOGOUT's OK (to s->tag) waits for the commit (cluster) */
    bool close_queued;            /* its close waits for a commit (server_close_after_commit) */
    struct session *close_next;   /* the next session in that wait */
    bool replaying;
    char *stash;
    size_t stash_len, stash_cap;
    bool loading;     /* a page of the backlog is being read from the store */
    bool load_missed; /* a live message arrived while it was read: read again after it */
    char new_name[PROTO_MAX_NAME + 1]; /* the name a registration will create */
};

/* The whole server. */
struct server {
    struct config cfg;
    struct event_base *base;
    struct net *net;
    struct net_tls *tls; /* the TLS context of the TLS port, if any */
    struct store *store;
    struct cluster *cluster; /* --redis: this node's cluster (cluster.h); NULL: one node */
    struct directory dir;
    struct fanout fan; /* presence notices on their way to everyone (fanout.h) */
    struct worker_pool *workers;
    size_t hash_jobs;                       /* password hashes queued or running (login.c) */
    struct ratelimit_table register_limits; /* registrations per address (login.c) */
    struct event *tick;
    struct event *sig_term, *sig_int, *sig_hup;
    struct session_list hello_list;  /* not yet said HELLO, by first-frame deadline */
    struct session_list login_list;  /* not yet logged in, by login deadline */
    struct session_list online_list; /* logged in, by idle deadline */
    struct pairmap p2p_requests;     /* by (initiator id, target id) */
    struct pairmap p2p_pairs;        /* open private sessions, by (lower id, higher id) */
    struct p2p_request *p2p_oldest, *p2p_newest; /* requests waiting, by age = by deadline */
    struct server_undo *undo; /* output that depends on the pending group commit */
    size_t n_undo, cap_undo;
    /* sessions whose close waits for the next commit (cluster), oldest first, by close_next */
    struct session *closing, *closing_last;
    struct commit_wait {
        struct server *srv;
        struct session *closing;
    } commit_plain; /* the answer's context of a commit that closes nobody */
    int64_t last_heartbeat;
    unsigned long long last_bytes_in; /* input seen by the previous tick */
    bool heap_dirty;                  /* traffic since the heap was last trimmed */
    bool trimming;                    /* a malloc_trim runs on a worker */
    bool commit_failed; /* the last group commit holding writes was lost, and no write has
                           succeeded since (for /healthz) */
    bool stopping;
    char *fmt; /* scratch for formatting one frame: max_line + 128 bytes */
    size_t fmt_cap;
};

/* Output to correct if the pending group commit fails (see server_undo_on_failure). */
struct server_undo {
    struct session *s;
    size_t pos, len;
    int64_t prev_sent_id;
    char tag[PROTO_MAX_TAG + 1]; /* empty for an event */
};

/* One parsed request frame; slices point into the frame. */
struct request {
    char tag[PROTO_MAX_TAG + 1];
    struct proto_slice verb;
    struct proto_slice arg[2];
    struct proto_slice text; /* len 0 when absent */
    int nargs;
};

/* server.c */

/* Finds the TLS certificate and key files of `cfg` (`len` bytes each): the given ones, or
 * those made in the data directory on first use (tlscert.h). Returns 0, or -1 with `err`. */
int server_tls_files(const struct config *cfg, char *cert, char *key, size_t len, char *err,
                     size_t errlen);

/* Sets the server up from `cfg`: store, credentials, listener, signals. Returns 0 or -1 (the
 * reason is logged). */
int server_init(struct server *srv, const struct config *cfg);

/* Runs the event loop until a shutdown signal; returns the exit status. */
int server_run(struct server *srv);

/* Frees everything server_init made; safe on a half-initialised server. */
void server_free(struct server *srv);

/* Re-reads the credentials file, keeping everyone online. A file with a line that cannot be
 * used, or one that would remove more than --max-reload-loss percent of the accounts in use,
 * is refused (logged) and the accounts in use stay. Returns 0, or -1 when not applied. */
int server_reload_credentials(struct server *srv);

/* Notes that the `len` bytes queued for `s` at `pos` (see net_pending_output) depend on the
 * pending group commit. If it fails they are replaced before anything is written: a reply
 * (`tag` given) by `<tag> ERR 503`, an event (`tag` NULL) by nothing, and the session's
 * sent_id goes back to `prev_sent_id`. */
void server_undo_on_failure(struct server *srv, struct session *s, const char *tag, size_t pos,
                            size_t len, int64_t prev_sent_id);

/* Closes `s`'s connection once the writes of this loop iteration (its logout) are committed:
 * in a cluster, the end of a session is seen only after the others can see the logout. Never
 * before, even when memory runs out (the close then waits for a later commit). */
void server_close_after_commit(struct server *srv, struct session *s);

/* Replaces the monotonic clock behind server_now_ms (for tests); NULL restores it. */
void server_set_clock(int64_t (*now_ms)(void));

/* Returns monotonic milliseconds. */
int64_t server_now_ms(void);

/* session.c */

/* Creates a session for a new connection (net's on_open). */
void *session_open(void *srv, struct net_conn *conn);

/* Handles one frame (net's on_frame). */
int session_frame(void *session, enum linebuf_kind kind, const char *line, size_t len);

/* Ends a session whose connection is gone (net's on_close). */
void session_closed(void *session, enum net_close_reason why);

/* Logs the session out now and closes its connection once its output is written. */
void session_close(struct session *s);

/* Queues `* BYE <reason>` and closes the connection after it is written. */
void session_bye(struct session *s, const char *reason);

/* Queues raw frame bytes (LF included), after the presence notices the session has not had
 * yet (fanout_catch_up). */
void session_send(struct session *s, const char *data, size_t len);

/* Queues `<tag> OK <n>`. */
void session_ok_number(struct session *s, const char *tag, int64_t n);

/* Queues `<tag> OK <a> <b>` (written by hand, like session_ok_number). */
void session_ok_numbers(struct session *s, const char *tag, int64_t a, int64_t b);

/* Queues `<tag> OK` followed by the printf-formatted fields (fmt may be NULL). */
void session_ok(struct session *s, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Queues `<tag> ERR <code> <text>`. */
void session_err(struct session *s, const char *tag, int code);

/* Queues an event `* ...` formatted by printf. */
void session_event(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Stops running the session's requests until session_resume: the store will answer the one
 * under way (its frames read meanwhile are kept, in order). Keeps the session allocated until
 * then, even if its connection goes. */
void session_wait(struct session *s);

/* The answer session_wait waited for came (and was written, unless the session is closing):
 * runs the requests kept meanwhile. May free a session whose connection went (then returns
 * false and `s` must not be used). */
bool session_resume(struct session *s);

/* Starts a request answered later: returns where its continuation finds the session, the tag
 * and `peer`. A `pipelined` one (MSG, BCAST) on a store that answers only once the engine
 * confirmed (a cluster) lets the session's next pipelined requests run meanwhile (its answers
 * come in order: one batch after another); otherwise the session waits (session_wait). */
struct session_answer *session_answer_begin(struct session *s, const char *tag, struct user *peer,
                                            bool pipelined);

/* The continuation of `a` wrote its answer: frees `a` and lets the session go on. Returns
 * false when the session was freed (see session_resume). */
bool session_answer_end(struct session_answer *a);

/* True when the frame is a request that may run while pipelined ones are in flight. */
bool cmd_pipelines(const char *line, size_t len);

/* Keeps the session allocated until a matching session_unref (an answer that does not hold
 * its requests back: a backlog page). */
void session_ref(struct session *s);

/* Drops a reference; frees a session whose connection went with the last one. Returns false
 * when it was freed. */
bool session_unref(struct session *s);

/* True while the session may still be answered: not closing, its connection there. */
bool session_live(const struct session *s);

/* Records activity now: pushes the idle deadline back. */
void session_touch(struct session *s);

/* Closes sessions whose login or idle deadline passed. */
void session_expire(struct server *srv, int64_t now_ms);

/* login.c */

/* HELLO, USER and PASS. */
void login_hello(struct session *s, const struct request *r);
void login_user(struct session *s, const struct request *r);
void login_pass(struct session *s, const struct request *r);

/* Forgets the worker job of a session that is closing. */
void login_abandon(struct session *s);

/* messaging.c */

/* MSG, BCAST and the `* ACK` notice. */
void msg_direct(struct session *s, const struct request *r);
void msg_broadcast(struct session *s, const struct request *r);
void msg_ack(struct session *s, struct proto_slice id);

/* Sends queued messages to a session that just logged in. */
void msg_deliver_backlog(struct session *s);

/* p2p.c */

/* LISTEN, P2P, P2PACCEPT, P2PDECLINE, P2PEND. */
void p2p_listen(struct session *s, const struct request *r);
void p2p_start(struct session *s, const struct request *r);
void p2p_accept(struct session *s, const struct request *r);
void p2p_decline(struct session *s, const struct request *r);
void p2p_end(struct session *s, const struct request *r);

/* Forgets the requests and sessions of a session that is going away. */
void p2p_session_gone(struct session *s);

/* A private-chat notice from another node of the cluster (`from to verb ...`, relay.c). */
void p2p_relay(struct server *srv, const char *from, const char *to, const char *text);

/* Answers requests that waited too long for the peer. */
void p2p_expire(struct server *srv, int64_t now_ms);

/* Frees all P2P bookkeeping. */
void p2p_free(struct server *srv);

/* commands.c */

/* Parses and runs one request frame of a session. */
void cmd_dispatch(struct session *s, const char *line, size_t len);

/* Answers a frame that was too long, using its first bytes to find its tag. */
void cmd_too_long(struct session *s, const char *head, size_t len);

#endif
