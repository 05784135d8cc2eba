/* Delivery, locally: every recipient is a session of this process; see broker.h. */
#include "server/metrics.h"
#include "server/broker.h"

#include <assert.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/cluster.h"
#include "server/fanout.h"
#include "server/log.h"
#include "server/presence.h"
#include "server/server.h"

/* The event word of each presence notice. */
static const char *const broker_event_words[BROKER_EVENT_COUNT] = {
    [BROKER_LOGIN] = "LOGIN",
    [BROKER_LOGOUT] = "LOGOUT",
};

/* Makes the scratch buffer hold at least `need` bytes. Returns false when memory ran out. */
static bool fmt_reserve(struct server *srv, size_t need)
{
    if (need <= srv->fmt_cap)
        return true;
    char *p = realloc(srv->fmt, need);
    if (!p)
        return false;
    srv->fmt = p;
    srv->fmt_cap = need;
    return true;
}

size_t broker_msg_frame(struct server *srv, const struct store_msg *m)
{
    size_t from_len = strlen(m->sender);
    /* "* MSG " + two numbers of at most 20 characters + three separators + LF */
    if (!fmt_reserve(srv, 6 + 20 + 1 + from_len + 1 + 20 + 1 + m->body_len + 1))
        return 0;
    char *p = srv->fmt;
    memcpy(p, "* MSG ", 6);
    p = proto_put_i64(p + 6, m->id);
    *p++ = ' ';
    memcpy(p, m->sender, from_len);
    p += from_len;
    *p++ = ' ';
    p = proto_put_i64(p, m->sent_at);
    *p++ = ' ';
    memcpy(p, m->body, m->body_len);
    p += m->body_len;
    *p++ = '\n';
    return (size_t)(p - srv->fmt);
}

bool broker_direct(struct server *srv, struct user *to, const struct store_msg *m)
{
    if (srv->cluster)
        return presence_is_online(to); /* the stream brings it to whichever node holds `to` */
    struct session *peer = presence_session(to);
    if (!peer)
        return false;
    if (peer->draining)
        return true;
    size_t n = broker_msg_frame(srv, m);
    assert(n > 0); /* the scratch buffer holds --max-line and more: a new text always fits */
    fanout_catch_up(peer); /* before the position a failed commit cuts back to */
    size_t pos = net_pending_output(peer->conn);
    session_send(peer, srv->fmt, n);
    metrics_count(METRICS_MSG_DELIVERED);
    server_undo_on_failure(srv, peer, NULL, pos, n, peer->sent_id);
    peer->sent_id = m->id;
    return true;
}

void broker_deliver(struct server *srv, const struct store_msg *m)
{
    struct user *to = directory_find(&srv->dir, m->recipient, strlen(m->recipient));
    struct session *peer = to ? presence_session(to) : NULL;
    if (!peer || m->id <= peer->sent_id)
        return;
    if (peer->loading)
        peer->load_missed = true; /* the page being read may end before it: read again */
    if (peer->draining || peer->loading)
        return;
    size_t n = broker_msg_frame(srv, m);
    if (n == 0)
        return; /* out of memory: it stays queued for the next login */
    session_send(peer, srv->fmt, n);
    metrics_count(METRICS_MSG_DELIVERED);
    peer->sent_id = m->id;
}

bool broker_available(const struct server *srv)
{
    return !srv->cluster || cluster_up(srv->cluster);
}

/* A broadcast being fanned out. */
struct broadcast {
    struct user *from;
    const char *frame;
    size_t len;
    unsigned skipped;
};

static void broadcast_to(void *ctx, struct session *s)
{
    struct broadcast *b = ctx;
    struct user *u = s->user;
    if (u == b->from)
        return;
    if (directory_blocks(u, b->from))
        b->skipped++;
    else if (!directory_blocks(b->from, u)) {
        session_send(s, b->frame, b->len);
        metrics_count(METRICS_BROADCAST_DELIVERY);
    }
}

/* Fans a broadcast out to this node's sessions; returns how many of them block `from`. */
static unsigned fan_out(struct server *srv, struct user *from, const char *text, size_t len)
{
    int n = snprintf(srv->fmt, srv->fmt_cap, "* BCAST %s ", from->name);
    assert(n > 0 && (size_t)n + len + 1 <= srv->fmt_cap); /* --max-line bounds the text */
    memcpy(srv->fmt + n, text, len);
    struct broadcast b = {from, srv->fmt, (size_t)n + len, 0};
    srv->fmt[b.len++] = '\n';
    presence_each_session(srv, broadcast_to, &b);
    return b.skipped;
}

/* A broadcast published to the other nodes: Redis counts who blocks the sender, everywhere.
 * This node's sessions get it only once Redis has it: a broadcast refused (503) reaches
 * no one. */
struct publication {
    struct server *srv;
    struct user *from;
    broker_count_fn done;
    void *arg;
    size_t len;
    char text[];
};

static void published(void *arg, const struct redisReply *r)
{
    struct publication *p = arg;
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        log_error("redis: a broadcast could not reach the other nodes");
        p->done(p->arg, -1);
    } else {
        fan_out(p->srv, p->from, p->text, p->len);
        p->done(p->arg, (long)r->integer);
    }
    free(p);
}

void broker_broadcast(struct server *srv, struct user *from, const char *text, size_t len,
                      broker_count_fn done, void *arg)
{
    if (!srv->cluster) {
        done(arg, (long)fan_out(srv, from, text, len));
        return;
    }
    struct publication *p = malloc(sizeof(*p) + len);
    if (!p) {
        done(arg, -1);
        return;
    }
    *p = (struct publication){srv, from, done, arg, len};
    memcpy(p->text, text, len);
    const char *args[] = {from->name, text};
    size_t lens[] = {strlen(from->name), len};
    cluster_op(srv->cluster, 'X', 2, args, lens, published, p);
}

void broker_broadcast_here(struct server *srv, struct user *from, const char *text, size_t len)
{
    fan_out(srv, from, text, len);
}

void broker_presence(struct server *srv, struct user *u, enum broker_event ev)
{
    assert(ev >= 0 && ev < BROKER_EVENT_COUNT);
    char line[PROTO_MAX_NAME + 32];
    int n = snprintf(line, sizeof(line), "* %s %s\n", broker_event_words[ev], u->name);
    fanout_presence(srv, u, line, (size_t)n);
}
