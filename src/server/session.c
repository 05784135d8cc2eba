/* Session lifecycle: creation, output, deadlines and the one cleanup path; see server.h. */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/fanout.h"
#include "server/metrics.h"
#include "server/log.h"
#include "server/presence.h"
#include "server/server.h"
#include "server/store.h"

static void list_remove(struct session *s, enum session_due which)
{
    struct session_link *k = &s->due[which];
    struct session_list *l = k->list;
    if (!l)
        return;
    if (k->prev)
        k->prev->due[which].next = k->next;
    else
        l->head = k->next;
    if (k->next)
        k->next->due[which].prev = k->prev;
    else
        l->tail = k->prev;
    k->prev = k->next = NULL;
    k->list = NULL;
    assert(l->count > 0);
    l->count--;
}

/* Appends to a list; lists stay ordered because every member has the same time-out. */
static void list_append(struct session_list *l, struct session *s, enum session_due which,
                        int64_t deadline_ms)
{
    list_remove(s, which);
    struct session_link *k = &s->due[which];
    k->deadline_ms = deadline_ms;
    k->list = l;
    k->prev = l->tail;
    k->next = NULL;
    if (l->tail)
        l->tail->due[which].next = s;
    else
        l->head = s;
    l->tail = s;
    l->count++;
}

/* Seconds as milliseconds, in 64 bits whatever the width of `long` (options go to 10^8 s). */
static int64_t seconds_ms(long seconds)
{
    return (int64_t)seconds * 1000;
}

void *session_open(void *arg, struct net_conn *conn)
{
    struct server *srv = arg;
    if (srv->stopping)
        return NULL;
    struct session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->srv = srv;
    s->conn = conn;
    s->state = SESSION_HELLO;
    int64_t now = server_now_ms();
    list_append(&srv->hello_list, s, SESSION_DUE_HELLO, now + seconds_ms(srv->cfg.hello_timeout));
    list_append(&srv->login_list, s, SESSION_DUE_MAIN, now + seconds_ms(srv->cfg.login_timeout));
    log_info("connection from %s", net_peer_addr(conn));
    return s;
}

void session_touch(struct session *s)
{
    if (s->state == SESSION_ONLINE)
        list_append(&s->srv->online_list, s, SESSION_DUE_MAIN,
                    server_now_ms() + seconds_ms(s->srv->cfg.timeout));
}

/* Every frame to a session leaves through here: presence notices it has not had yet go first. */
void session_send(struct session *s, const char *data, size_t len)
{
    fanout_catch_up(s);
    net_send(s->conn, data, len);
}

/* Formats into the server's scratch buffer and queues the result with a final LF. */
static void send_formatted(struct session *s, const char *prefix, const char *fmt, va_list ap)
{
    struct server *srv = s->srv;
    int n = snprintf(srv->fmt, srv->fmt_cap, "%s", prefix);
    if (fmt && n >= 0 && (size_t)n < srv->fmt_cap)
        n += vsnprintf(srv->fmt + n, srv->fmt_cap - (size_t)n, fmt, ap);
    if (n < 0 || (size_t)n + 1 >= srv->fmt_cap) {
        log_error("frame too long to format; dropped");
        return;
    }
    srv->fmt[n++] = '\n';
    session_send(s, srv->fmt, (size_t)n);
}

void session_ok(struct session *s, const char *tag, const char *fmt, ...)
{
    char prefix[PROTO_MAX_TAG + 8];
    snprintf(prefix, sizeof(prefix), fmt ? "%s OK " : "%s OK", tag);
    va_list ap;
    va_start(ap, fmt);
    send_formatted(s, prefix, fmt, ap);
    va_end(ap);
}

void session_ok_number(struct session *s, const char *tag, int64_t n)
{
    char line[PROTO_MAX_TAG + 32];
    size_t len = strlen(tag);
    memcpy(line, tag, len);
    memcpy(line + len, " OK ", 4);
    char *end = proto_put_i64(line + len + 4, n);
    *end++ = '\n';
    session_send(s, line, (size_t)(end - line));
}

void session_ok_numbers(struct session *s, const char *tag, int64_t a, int64_t b)
{
    char line[PROTO_MAX_TAG + 56];
    size_t len = strlen(tag);
    memcpy(line, tag, len);
    memcpy(line + len, " OK ", 4);
    char *end = proto_put_i64(line + len + 4, a);
    *end++ = ' ';
    end = proto_put_i64(end, b);
    *end++ = '\n';
    session_send(s, line, (size_t)(end - line));
}

void session_err(struct session *s, const char *tag, int code)
{
    char line[PROTO_MAX_TAG + 80];
    int n = snprintf(line, sizeof(line), "%s ERR %d %s\n", tag, code, proto_error_text(code));
    metrics_refused(code);
    session_send(s, line, (size_t)n);
}

void session_event(struct session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    send_formatted(s, "* ", fmt, ap);
    va_end(ap);
}

/* The one way out of a session: from here on it is not logged in, has no P2P business and no
 * deadline, and ignores requests. Idempotent. */
static void session_leave(struct session *s)
{
    if (s->state == SESSION_CLOSING)
        return;
    bool was_online = s->state == SESSION_ONLINE;
    s->state = SESSION_CLOSING;
    login_abandon(s);
    p2p_session_gone(s);
    list_remove(s, SESSION_DUE_HELLO);
    list_remove(s, SESSION_DUE_MAIN);
    if (was_online) {
        presence_offline(s);
        log_info("%s logged out", s->user->name);
    }
}

void session_close(struct session *s)
{
    session_leave(s);
    if (s->srv->cluster && !s->gone)
        server_close_after_commit(s->srv, s);
    else if (!s->gone)
        net_close(s->conn);
}

void session_bye(struct session *s, const char *reason)
{
    if (s->state == SESSION_CLOSING)
        return;
    fanout_skip(s);
    session_event(s, "BYE %s", reason);
    session_close(s);
}

/* A kept frame in the stash: its header, then its bytes. */
struct stash_head {
    uint32_t len;
    uint8_t kind;
};

/* Keeps a frame that arrived while the session waits for the store. Returns false when memory
 * ran out (the connection is then closed: a request cannot be dropped silently). */
static bool stash_frame(struct session *s, enum linebuf_kind kind, const char *line, size_t len)
{
    size_t need = s->stash_len + sizeof(struct stash_head) + len;
    if (need > s->stash_cap) {
        size_t cap = s->stash_cap ? s->stash_cap : 256;
        while (cap < need)
            cap *= 2;
        char *p = realloc(s->stash, cap);
        if (!p)
            return false;
        s->stash = p;
        s->stash_cap = cap;
    }
    struct stash_head h = {(uint32_t)len, (uint8_t)kind};
    memcpy(s->stash + s->stash_len, &h, sizeof(h));
    memcpy(s->stash + s->stash_len + sizeof(h), line, len);
    s->stash_len = need;
    return true;
}

static int run_frame(struct session *s, enum linebuf_kind kind, const char *line, size_t len);

/* Runs the kept frames in order until one waits for the store again or none is left. A frame
 * run from here that waits and is answered at once (the local store) comes back here rather
 * than replaying from inside itself. */
static void replay_stash(struct session *s)
{
    if (s->replaying || s->stash_len == 0)
        return;
    s->replaying = true;
    size_t off = 0;
    while (off < s->stash_len && !s->held && s->state != SESSION_CLOSING) {
        struct stash_head h;
        memcpy(&h, s->stash + off, sizeof(h));
        const char *line = s->stash + off + sizeof(h);
        if (s->pending && !(h.kind == LINEBUF_LINE && cmd_pipelines(line, h.len)))
            break; /* it must wait for the pipelined answers before it */
        off += sizeof(h) + h.len;
        run_frame(s, (enum linebuf_kind)h.kind, line, h.len);
    }
    if (s->state == SESSION_CLOSING)
        off = s->stash_len;
    memmove(s->stash, s->stash + off, s->stash_len - off);
    s->stash_len -= off;
    if (s->stash_len == 0) {
        free(s->stash);
        s->stash = NULL;
        s->stash_cap = 0;
    }
    s->replaying = false;
}

bool session_live(const struct session *s)
{
    return s->state != SESSION_CLOSING && !s->gone;
}

void session_ref(struct session *s)
{
    s->refs++;
}

bool session_unref(struct session *s)
{
    assert(s->refs > 0);
    if (--s->refs > 0 || !s->gone)
        return true;
    free(s->stash);
    free(s);
    return false;
}

void session_wait(struct session *s)
{
    s->held++;
    session_ref(s);
}

/* Runs what was kept once nothing holds it back any more. */
static void go_on(struct session *s)
{
    if (s->held || s->gone)
        return;
    replay_stash(s);
    if (!s->held && s->stash_len == 0 && s->state != SESSION_CLOSING)
        net_resume_read(s->conn);
}

bool session_resume(struct session *s)
{
    assert(s->held > 0);
    s->held--;
    go_on(s);
    return session_unref(s);
}

struct session_answer *session_answer_begin(struct session *s, const char *tag, struct user *peer,
                                            bool pipelined)
{
    struct session_answer *a = NULL;
    if (pipelined && !store_answers_early(s->srv->store))
        a = malloc(sizeof(*a));
    if (a) {
        s->pending++;
        session_ref(s);
    } else {
        a = &s->answer;
        session_wait(s);
    }
    a->s = s;
    a->peer = peer;
    a->allocated = a != &s->answer;
    snprintf(a->tag, sizeof(a->tag), "%s", tag);
    return a;
}

bool session_answer_end(struct session_answer *a)
{
    struct session *s = a->s;
    if (!a->allocated)
        return session_resume(s);
    free(a);
    assert(s->pending > 0);
    s->pending--;
    if (!s->pending)
        go_on(s);
    return session_unref(s);
}

int session_frame(void *arg, enum linebuf_kind kind, const char *line, size_t len)
{
    struct session *s = arg;
    if (s->state == SESSION_CLOSING)
        return 1;
    if (s->state == SESSION_PASSWORD && !s->fan_held && !fanout_admits(s->srv))
        fanout_hold(s); /* presence notices are behind: no new login adds to them for now */
    if (s->held || s->stash_len ||
        (s->pending && !(kind == LINEBUF_LINE && cmd_pipelines(line, len)))) {
        net_pause_read(s->conn); /* at the first frame kept: an answer at once costs nothing */
        if (stash_frame(s, kind, line, len))
            return 0;
        log_error("out of memory keeping a request of %s", net_peer_addr(s->conn));
        session_close(s);
        return 1;
    }
    return run_frame(s, kind, line, len);
}

/* Runs one frame of a session that takes requests now. */
static int run_frame(struct session *s, enum linebuf_kind kind, const char *line, size_t len)
{
    if (kind == LINEBUF_TOO_LONG)
        cmd_too_long(s, line, len);
    else if (len > 0)
        cmd_dispatch(s, line, len);
    if (s->state != SESSION_HELLO)
        list_remove(s, SESSION_DUE_HELLO); /* HELLO said (or closing): that deadline is met */
    return s->state == SESSION_CLOSING;
}

static const char *reason_text(enum net_close_reason why)
{
    switch (why) {
    case NET_CLOSE_EOF:
        return "closed by peer";
    case NET_CLOSE_ERROR:
        return "socket error";
    case NET_CLOSE_OVERFLOW:
        return "output limit reached";
    case NET_CLOSE_LOCAL:
        return "closed by server";
    case NET_CLOSE_SHUTDOWN:
        return "shutdown";
    }
    return "?";
}

void session_closed(void *arg, enum net_close_reason why)
{
    struct session *s = arg;
    log_info("connection from %s ended: %s", net_peer_addr(s->conn), reason_text(why));
    if (why == NET_CLOSE_OVERFLOW && s->user)
        log_info("%s was disconnected: output limit reached (client not reading)", s->user->name);
    session_leave(s);
    s->gone = true;
    s->conn = NULL;
    if (s->refs == 0) {
        free(s->stash);
        free(s);
    }
}

/* Closes the sessions at the head of a list whose deadline passed. */
static void expire_list(struct session_list *l, enum session_due which, int64_t now_ms,
                        const char *reason)
{
    while (l->head && l->head->due[which].deadline_ms <= now_ms) {
        struct session *s = l->head;
        if (s->state == SESSION_ONLINE)
            log_info("%s timed out", s->user->name);
        session_bye(s, reason); /* takes it off the list */
    }
}

void session_expire(struct server *srv, int64_t now_ms)
{
    expire_list(&srv->hello_list, SESSION_DUE_HELLO, now_ms, "login-timeout");
    expire_list(&srv->login_list, SESSION_DUE_MAIN, now_ms, "login-timeout");
    expire_list(&srv->online_list, SESSION_DUE_MAIN, now_ms, "idle");
}
