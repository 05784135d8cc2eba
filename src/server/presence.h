/* Who is online: the one owner of that fact, its history (WHOSINCE) and the moment a user
 * goes online or offline. Handlers ask here instead of reading the directory's `online`
 * pointer. This is the local implementation (the directory's online list and the store's
 * login history, one process); a cluster one answers the same questions for every node
 * (docs/ARCHITECTURE.md, "Seams"). */
#ifndef PARLEY_PRESENCE_H
#define PARLEY_PRESENCE_H

#include <stdbool.h>
#include <stdint.h>

#include "server/store.h"

struct server;
struct session;
struct user;

typedef void (*presence_user_fn)(void *ctx, struct user *u);
/* The answer of presence_claim: PRESENCE_CLAIMED (the user is claimed by `s` now),
 * PRESENCE_TAKEN (logged in already) or PRESENCE_UNAVAILABLE (the cluster cannot be asked). */
typedef void (*presence_claim_fn)(struct session *s, int rc);

#define PRESENCE_CLAIMED 1
#define PRESENCE_TAKEN 0
#define PRESENCE_UNAVAILABLE (-1)
typedef void (*presence_session_fn)(void *ctx, struct session *s);

/* Claims the user of `s` (its password checked) for `s`, unless the user is logged in already
 * (anywhere), and answers through `done` (before returning, or later from the loop: the caller
 * waits, session_wait). The claim is made good by presence_online, which must follow a true
 * answer at once. */
void presence_claim(struct session *s, presence_claim_fn done);

/* Logs the user of `s` (just ONLINE) in: online from now on, recorded in the login history,
 * and the others told (broker_presence). */
void presence_online(struct session *s);

/* Logs the user of `s` (leaving) out: offline from now on, recorded in the login history, and
 * the others told, except while the server stops (everyone gets BYE instead). */
void presence_offline(struct session *s);

/* Returns true when `u` is logged in, here (its session possibly on its way out) or, as far
 * as this node has heard, on another node. */
bool presence_is_online(const struct user *u);

/* What another node said of `u` (relay.c): logged in there (`on`) or not any more. Tells this
 * node's sessions, except while `quiet` (a reload of the whole list). */
void presence_elsewhere(struct server *srv, struct user *u, bool on, bool quiet);

/* Forgets who is online elsewhere (before the list is read again). */
void presence_forget_elsewhere(struct server *srv);

/* Returns the session through which `u` is logged in on this node and which still takes
 * requests (ONLINE), or NULL. */
struct session *presence_session(const struct user *u);

/* Calls `fn` for every user logged in, on this node and (as far as it heard) on the others.
 * `fn` must not log anyone in or out; a user may come twice. */
void presence_each_user(struct server *srv, presence_user_fn fn, void *ctx);

/* Calls `fn` for every user logged in, then `done(ctx, rc)`: on one node at once; in a
 * cluster from Redis's list (so a login or logout another node answered is seen), or from this
 * node's own view while Redis is out of reach; rc -1 when the read failed. `fn` must not log
 * anyone in or out. */
void presence_list(struct server *srv, presence_user_fn fn, store_done_fn done, void *ctx);

/* Calls `fn` for every session logged in on this node that still takes requests (ONLINE): the
 * local fan-out of the broker. `fn` must not log anyone in or out. */
void presence_each_session(struct server *srv, presence_session_fn fn, void *ctx);

/* Calls `fn` with the name of every user whose last logout was at or after `since` (from the
 * login history; those online now are not included: see presence_each_user), then `done(ctx,
 * rc)`: 0, or -1 when the history cannot be read (logged). */
void presence_seen_since(struct server *srv, int64_t since, store_name_fn fn, store_done_fn done,
                         void *ctx);

/* Forgets the login history of a user whose account is gone. Returns 0 or -1 (logged). */
int presence_forget(struct server *srv, const char *name);

#endif
