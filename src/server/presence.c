/* Who is online, locally: the directory's online list plus the store's login history; see
 * presence.h. */
#include "server/presence.h"

#include <assert.h>
#include <time.h>

#include "server/broker.h"
#include "server/log.h"
#include "server/server.h"

void presence_claim(struct session *s, presence_claim_fn done)
{
    done(s, !presence_is_online(s->user));
}

void presence_online(struct session *s)
{
    struct server *srv = s->srv;
    struct user *u = s->user;
    assert(s->state == SESSION_ONLINE && !u->online);
    directory_set_online(&srv->dir, u, s);
    if (store_presence_login(srv->store, u->name, (int64_t)time(NULL)) < 0)
        log_error("store: cannot record login: %s", store_error(srv->store));
    broker_presence(srv, u, BROKER_LOGIN);
}

void presence_offline(struct session *s)
{
    struct server *srv = s->srv;
    struct user *u = s->user;
    assert(u->online == s);
    directory_set_online(&srv->dir, u, NULL);
    if (store_presence_logout(srv->store, u->name, (int64_t)time(NULL)) < 0)
        log_error("store: cannot record logout: %s", store_error(srv->store));
    if (!srv->stopping) /* at shutdown everyone gets BYE, not each other's logout */
        broker_presence(srv, u, BROKER_LOGOUT);
}

bool presence_is_online(const struct user *u)
{
    return u->online != NULL;
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
