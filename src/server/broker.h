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

/* Hands the direct message `m`, queued in the store this iteration, to its recipient `to`: at
 * once when `to` is logged in and nothing older waits for them (else their backlog brings it).
 * What is sent is withdrawn if the group commit fails. Returns true when `to` is logged in
 * (the reply's "delivered now" flag). */
bool broker_direct(struct server *srv, struct user *to, const struct store_msg *m);

/* Sends `* BCAST <from> <text>` to every user logged in except `from` and those in a block
 * relation with it. Returns how many were skipped because they block `from`. */
unsigned broker_broadcast(struct server *srv, struct user *from, const char *text, size_t len);

/* Tells every user logged in, except `u` and those in a block relation with it, that `u`
 * logged in or out. */
void broker_presence(struct server *srv, struct user *u, enum broker_event ev);

#endif
