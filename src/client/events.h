/* Server events (`* <EVENT> ...`, docs/PROTOCOL.md §6) turned into what the user sees. */
#ifndef PARLEY_CLIENT_EVENTS_H
#define PARLEY_CLIENT_EVENTS_H

#include "common/proto.h"

struct client;

/* Handles one event: prints messages, broadcasts and presence lines exactly as the spec says,
 * acknowledges direct messages, passes private-messaging requests on to the P2P module and
 * `BYE` to the client. Ignores events it does not know or cannot parse. */
void events_dispatch(struct client *c, struct proto_slice verb, struct proto_slice rest);

#endif
