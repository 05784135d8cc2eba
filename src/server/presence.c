/* Who is online, locally: the directory's online list plus the store's login history; see
 * presence.h. */
#include "server/presence.h"

#include <assert.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <time.h>

#include "server/broker.h"
#include "server/cluster.h"
#include "server/log.h"
#include "server/server.h"

/* A claim on its way to Redis. */
struct claim {
    struct session *s;
    presence_claim_fn done;
};

/* Gives up a claim Redis granted for a session that went meanwhile. */
static void release(struct server *srv, const char *name)
{
    if (store_presence_logout(srv->store, name, (int64_t)time(NULL)) < 0)
        log_error("store: cannot release the claim on %s: %s", name, store_error(srv->store));
}

static void claim_answered(void *arg, const struct redisReply *r)
{
    struct claim c = *(struct claim *)arg;
    free(arg);
    struct session *s = c.s;
    int rc = PRESENCE_UNAVAILABLE;
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer >= 0)
        rc = r->integer == 1 ? PRESENCE_CLAIMED : PRESENCE_TAKEN;
    if (rc == PRESENCE_CLAIMED && (!session_live(s) || s->user->online)) {
        if (!s->user->online)
            release(s->srv, s->user->name);
        rc = PRESENCE_TAKEN; /* gone, or logged in here meanwhile through another session */
    }
    c.done(s, rc);
}

void presence_claim(struct session *s, presence_claim_fn done)
{
    struct server *srv = s->srv;
    struct user *u = s->user;
    if (!srv->cluster || u->online) {
        done(s, presence_is_online(u) ? PRESENCE_TAKEN : PRESENCE_CLAIMED);
        return;
    }
    struct claim *c = malloc(sizeof(*c));
    if (!c) {
        done(s, PRESENCE_UNAVAILABLE);
        return;
    }
    *c = (struct claim){s, done};
    const char *args[] = {u->name};
    cluster_op(srv->cluster, 'C', 1, args, NULL, claim_answered, c);
}

void presence_online(struct session *s)
{
    struct server *srv = s->srv;
    struct user *u = s->user;
    assert(s->state == SESSION_ONLINE && !u->online);
    directory_set_elsewhere(&srv->dir, u, false); /* this node holds the claim now */
    directory_set_online(&srv->dir, u, s);
    fanout_joined(s);
    if (store_presence_login(srv->store, u->name, (int64_t)time(NULL)) < 0)
        log_error("store: cannot record login: %s", store_error(srv->store));
    broker_presence(srv, u, BROKER_LOGIN);
}

void presence_offline(struct session *s)
{
    struct server *srv = s->srv;
    struct user *u = s->user;
    assert(u->online == s);
    fanout_leaving(srv, u);
    directory_set_online(&srv->dir, u, NULL);
    if (store_presence_logout(srv->store, u->name, (int64_t)time(NULL)) < 0)
        log_error("store: cannot record logout: %s", store_error(srv->store));
    if (!srv->stopping) /* at shutdown everyone gets BYE, not each other's logout */
        broker_presence(srv, u, BROKER_LOGOUT);
}

bool presence_is_online(const struct user *u)
{
    return u->online != NULL || u->elsewhere;
}

void presence_elsewhere(struct server *srv, struct user *u, bool on, bool quiet)
{
    if (u->elsewhere == on)
        return;
    directory_set_elsewhere(&srv->dir, u, on);
    if (!quiet)
        broker_presence(srv, u, on ? BROKER_LOGIN : BROKER_LOGOUT);
}

void presence_forget_elsewhere(struct server *srv)
{
    while (srv->dir.elsewhere_head)
        directory_set_elsewhere(&srv->dir, srv->dir.elsewhere_head, false);
}

struct session *presence_session(const struct user *u)
{
    struct session *s = u->online;
    return s && s->state == SESSION_ONLINE ? s : NULL;
}

void presence_each_user(struct server *srv, presence_user_fn fn, void *ctx)
{
    for (struct user *u = srv->dir.online_head; u; u = u->online_next)
        fn(ctx, u);
    for (struct user *u = srv->dir.elsewhere_head; u; u = u->elsewhere_next)
        fn(ctx, u);
}

/* A listing read from Redis. */
struct listing {
    struct server *srv;
    presence_user_fn fn;
    store_done_fn done;
    void *ctx;
};

static void listed(void *arg, const struct redisReply *r)
{
    struct listing l = *(struct listing *)arg;
    free(arg);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        presence_each_user(l.srv, l.fn, l.ctx); /* Redis went out of reach: this node's view */
        l.done(l.ctx, 0);
        return;
    }
    for (size_t i = 0; i < r->elements; i++) {
        struct user *u = r->element[i]->type == REDIS_REPLY_STRING
                             ? directory_add(&l.srv->dir, r->element[i]->str)
                             : NULL;
        if (u)
            l.fn(l.ctx, u);
    }
    l.done(l.ctx, 0);
}

void presence_list(struct server *srv, presence_user_fn fn, store_done_fn done, void *ctx)
{
    if (!srv->cluster || !cluster_up(srv->cluster)) {
        /* One node, or Redis out of reach: this node's own view (what it heard last) */
        presence_each_user(srv, fn, ctx);
        done(ctx, 0);
        return;
    }
    struct listing *l = malloc(sizeof(*l));
    if (!l) {
        done(ctx, -1);
        return;
    }
    *l = (struct listing){srv, fn, done, ctx};
    const char *argv[] = {"HKEYS", "parley:online"};
    cluster_command(srv->cluster, 2, argv, NULL, listed, l);
}

void presence_each_session(struct server *srv, presence_session_fn fn, void *ctx)
{
    for (struct user *u = srv->dir.online_head; u; u = u->online_next)
        if (u->online->state == SESSION_ONLINE)
            fn(ctx, u->online);
}

void presence_seen_since(struct server *srv, int64_t since, store_name_fn fn, store_done_fn done,
                         void *ctx)
{
    store_presence_since(srv->store, since, fn, done, ctx);
}

int presence_forget(struct server *srv, const char *name)
{
    if (store_presence_forget(srv->store, name) == 0)
        return 0;
    log_error("store: cannot prune login history: %s", store_error(srv->store));
    return -1;
}
