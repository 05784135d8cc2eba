/* Delivery: getting a frame to a user, or to everyone, wherever they are logged in (after
 * Centrifuge's Broker). Handlers decide what may be sent (blocks, limits, the store); the
 * broker gets it to the recipients' connections. This is the local implementation: the
 * recipients are this node's sessions (presence_each_session). A cluster one also publishes to
 * the other nodes and hands what they publish to this node's sessions, behind these same
 * functions (docs/ARCHITECTURE.md, "Seams"). */
#ifndef PARLEY_BROKER_H
#define PARLEY_BROKER_H

#include <stdbool.h>
#include <stddef.h>

#include "server/store.h"

struct server;
struct user;

/* The presence notices (the event words of docs/PROTOCOL.md). */
enum broker_event {
    BROKER_LOGIN = 0,
    BROKER_LOGOUT = 1,
    BROKER_EVENT_COUNT = 2,
};

/* Formats the event `* MSG <id> <from> <time> <text>` of `m` into the server's scratch buffer
 * and returns its length, or 0 when memory ran out (a stored message may be longer than this
 * run's limits allow). */
size_t broker_msg_frame(struct server *srv, const struct store_msg *m);

/* Hands the direct message `m`, just queued in the store, to its recipient `to`: on one node,
 * at once when `to` is logged in and nothing older waits for them (else their backlog brings
 * it), withdrawn if the group commit fails; in a cluster, the node holding `to` sends it when
 * the event stream brings it (broker_deliver). Returns true when `to` is logged in (the
 * reply's "delivered now" flag). */
bool broker_direct(struct server *srv, struct user *to, const struct store_msg *m);

/* A direct message the event stream brought (committed): sent to its recipient when logged
 * in here with nothing older waiting, else left to the backlog. */
void broker_deliver(struct server *srv, const struct store_msg *m);

/* True when a broadcast can reach everyone now (in a cluster: Redis can be reached). */
bool broker_available(const struct server *srv);

/* Sends `* BCAST <from> <text>` to this node's sessions (a broadcast another node made). */
void broker_broadcast_here(struct server *srv, struct user *from, const char *text, size_t len);

/* The answer of broker_broadcast: how many users were skipped because they block the sender,
 * or -1 when the other nodes could not be told. */
typedef void (*broker_count_fn)(void *arg, long skipped);

/* Sends `* BCAST <from> <text>` to every user logged in (on every node) except `from` and
 * those in a block relation with it, and answers how many were skipped because they block
 * `from` (before returning on one node; in a cluster once Redis counted them). */
void broker_broadcast(struct server *srv, struct user *from, const char *text, size_t len,
                      broker_count_fn done, void *arg);

/* Tells every user logged in, except `u` and those in a block relation with it, that `u`
 * logged in or out. */
void broker_presence(struct server *srv, struct user *u, enum broker_event ev);

#endif
