/* What the other nodes of a cluster tell this one, applied here: the events of the stream
 * (cluster.h) become deliveries, broadcasts and presence notices for this node's sessions, and
 * updates of its copies of the shared state (who is online elsewhere, blocks, lock-outs,
 * accounts). The one place where cluster events meet the chat layer. */
#ifndef PARLEY_RELAY_H
#define PARLEY_RELAY_H

#include "server/cluster.h"

/* The handlers cluster_start is given, with the server as their context. */
extern const struct cluster_handlers relay_handlers;

#endif
