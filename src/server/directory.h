/* The users the server knows: accounts, who is online, who blocks whom and lock-outs.
 * Pure in-memory bookkeeping; persistence is the caller's job (store.h). */
#ifndef PARLEY_DIRECTORY_H
#define PARLEY_DIRECTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/proto.h"
#include "common/strmap.h"
#include "server/auth.h"
#include "server/ratelimit.h"

struct session;
struct login_job;

/* One user name the server has heard of. Users are never freed while the server runs, so
 * pointers to them stay valid; an account removed from the credentials file keeps its entry
 * with `has_account` false. */
struct user {
    char name[PROTO_MAX_NAME + 1];
    bool has_account;
    bool registering;              /* a new account is being created for this name */
    bool checking;                 /* one of its password checks runs on a worker */
    struct login_job *check_queue; /* its password checks waiting their turn (login.c) */
    enum auth_kind kind;           /* how `secret` is kept */
    char *secret;                  /* the password or its hash; owned */
    struct lockout lock;           /* consecutive failures and lock expiry */
    struct session *online;        /* the logged-in session, or NULL */
    struct user *online_prev, *online_next;
    bool elsewhere; /* logged in on another node of the cluster (presence.h) */
    struct user *elsewhere_prev, *elsewhere_next;
    uint32_t *blocked; /* ids of users this one blocks, sorted */
    uint32_t n_blocked, cap_blocked;
    uint32_t id;
    uint32_t mark; /* scratch for de-duplicating listings */
    /* its requests other than messages while logged in, kept across logins (--req-rate) */
    struct ratelimit request_budget;
};

/* All users, by name and by id, plus the list of those online. */
struct directory {
    struct strmap by_name;
    struct user **by_id;
    uint32_t count, cap;
    struct user *online_head;
    size_t online_count;
    struct user *elsewhere_head; /* logged in on other nodes */
    size_t elsewhere_count;
    uint32_t mark_epoch;
};

/* Makes an empty directory. */
void directory_init(struct directory *d);

/* Frees every user. */
void directory_free(struct directory *d);

/* Returns the user called by the `len` bytes at `name`, or NULL. */
struct user *directory_find(const struct directory *d, const char *name, size_t len);

/* Returns the user called `name`, adding one (without an account) when missing; NULL when
 * memory ran out. */
struct user *directory_add(struct directory *d, const char *name);

/* Returns the user with this id, or NULL. */
struct user *directory_by_id(const struct directory *d, uint32_t id);

/* Sets the account data of a user (copies `secret`). Returns 0 or -1. */
int directory_set_account(struct user *u, enum auth_kind kind, const char *secret);

/* Marks a user online with `s` (non-NULL) or offline (NULL), keeping the online list. */
void directory_set_online(struct directory *d, struct user *u, struct session *s);

/* Marks a user as logged in on another node (`on`) or not, keeping the list of those. */
void directory_set_elsewhere(struct directory *d, struct user *u, bool on);

/* Returns true when `a` blocks `b`. */
bool directory_blocks(const struct user *a, const struct user *b);

/* Returns true when either user blocks the other. */
bool directory_related(const struct user *a, const struct user *b);

/* Makes `a` block `b`. Returns 1 when added, 0 when it already was, -1 on memory failure. */
int directory_block(struct user *a, const struct user *b);

/* Lifts `a`'s block of `b`. Returns 1 when removed, 0 when there was none. */
int directory_unblock(struct user *a, const struct user *b);

/* Starts a new de-duplication round: after it, no user counts as marked. */
void directory_mark_reset(struct directory *d);

/* Marks a user in this round; returns true when it was marked already. */
bool directory_mark(struct directory *d, struct user *u);

#endif
