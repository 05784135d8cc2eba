/* Cluster events applied to this node; see relay.h. */
#include "server/relay.h"

#include <string.h>

#include "server/broker.h"
#include "server/log.h"
#include "server/presence.h"
#include "server/server.h"

/* The user an event names, added to the directory when new (it exists on another node). */
static struct user *named(struct server *srv, const char *name)
{
    return directory_add(&srv->dir, name);
}

static void relay_message(struct server *srv, const struct cluster_event *ev)
{
    struct store_msg m = {ev->n1, ev->b, ev->a, ev->n2, ev->text, ev->text_len};
    broker_deliver(srv, &m);
}

static void relay_login(struct server *srv, const struct cluster_event *ev)
{
    struct user *u = named(srv, ev->a);
    if (!u)
        return;
    struct session *here = u->online;
    if (here) { /* this node lost its claim while cut off: the other node has the user now */
        log_info("%s logged in on node %s; the session here ends", u->name, ev->node);
        session_bye(here, "taken");
    }
    presence_elsewhere(srv, u, true, false);
}

static void relay_logout(struct server *srv, const struct cluster_event *ev)
{
    struct user *u = directory_find(&srv->dir, ev->a, strlen(ev->a));
    if (u)
        presence_elsewhere(srv, u, false, false);
}

static void relay_block(struct server *srv, const struct cluster_event *ev, bool on)
{
    struct user *a = named(srv, ev->a), *b = named(srv, ev->b);
    if (!a || !b)
        return;
    if (on && directory_block(a, b) < 0)
        log_error("out of memory recording that %s blocks %s", a->name, b->name);
    else if (!on)
        directory_unblock(a, b);
}

static void relay_lock(struct server *srv, const struct cluster_event *ev)
{
    struct user *u = named(srv, ev->a);
    if (u)
        u->lock = (struct lockout){(int)ev->n1, ev->n2};
}

static void relay_account(struct server *srv, const struct cluster_event *ev)
{
    struct user *u = named(srv, ev->a);
    if (u && !u->has_account && directory_set_account(u, AUTH_ARGON2ID, ev->text) < 0)
        log_error("out of memory adding the account %s", u->name);
}

static void on_event(void *ctx, const struct cluster_event *ev)
{
    struct server *srv = ctx;
    if (ev->kind == CLUSTER_MSG) {
        relay_message(srv, ev); /* the stream is the one way messages reach their recipients */
        return;
    }
    if (ev->own)
        return; /* applied when it was made */
    switch (ev->kind) {
    case CLUSTER_BCAST: {
        struct user *from = named(srv, ev->a);
        if (from)
            broker_broadcast_here(srv, from, ev->text, ev->text_len);
        return;
    }
    case CLUSTER_LOGIN:
        relay_login(srv, ev);
        return;
    case CLUSTER_LOGOUT:
        relay_logout(srv, ev);
        return;
    case CLUSTER_BLOCK:
    case CLUSTER_UNBLOCK:
        relay_block(srv, ev, ev->kind == CLUSTER_BLOCK);
        return;
    case CLUSTER_LOCK:
        relay_lock(srv, ev);
        return;
    case CLUSTER_ACCOUNT:
        relay_account(srv, ev);
        return;
    case CLUSTER_P2P:
        p2p_relay(srv, ev->a, ev->b, ev->text);
        return;
    case CLUSTER_MSG:
        return;
    }
}

static void on_lost(void *ctx, const char *name)
{
    struct server *srv = ctx;
    struct user *u = directory_find(&srv->dir, name, strlen(name));
    if (u && u->online) {
        log_info("%s is held by another node now; the session here ends", name);
        session_bye(u->online, "taken");
    }
}

static void reload_backlog(void *ctx, struct session *s)
{
    (void)ctx;
    s->draining = true;
    msg_deliver_backlog(s);
}

static void on_resync(void *ctx)
{
    struct server *srv = ctx;
    presence_forget_elsewhere(srv);
    presence_each_session(srv, reload_backlog, NULL);
}

/* Names for a re-validation. */
struct local_names {
    void (*fn)(void *arg, const char *name);
    void *arg;
};

static void name_of(void *ctx, struct session *s)
{
    struct local_names *l = ctx;
    l->fn(l->arg, s->user->name);
}

static void each_local(void *ctx, void (*fn)(void *arg, const char *name), void *arg)
{
    struct local_names l = {fn, arg};
    presence_each_session(ctx, name_of, &l);
}

static void on_online(void *ctx, const char *name, const char *node, bool online)
{
    (void)node;
    struct server *srv = ctx;
    struct user *u = named(srv, name);
    if (u && !u->online)
        presence_elsewhere(srv, u, online, true);
}

static bool may_read(void *ctx)
{
    return fanout_takes_events(ctx);
}

const struct cluster_handlers relay_handlers = {
    .on_event = on_event,
    .on_lost = on_lost,
    .on_resync = on_resync,
    .each_local = each_local,
    .on_online = on_online,
    .may_read = may_read,
};
