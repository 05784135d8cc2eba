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
/* The answer of presence_claim: true when the user of `s` is now claimed by it. */
typedef void (*presence_claim_fn)(struct session *s, bool claimed);
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

/* Returns true when `u` is logged in, its session possibly on its way out. */
bool presence_is_online(const struct user *u);

/* Returns the session through which `u` is logged in on this node and which still takes
 * requests (ONLINE), or NULL. */
struct session *presence_session(const struct user *u);

/* Calls `fn` for every user logged in. `fn` must not log anyone in or out. */
void presence_each_user(struct server *srv, presence_user_fn fn, void *ctx);

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
