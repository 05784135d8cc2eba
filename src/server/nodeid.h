/* A cluster node's name: given with --node-id, or made once and kept in the data directory
 * (the file node-id), so that a node keeps its name across restarts (docs/CLUSTER.md). */
#ifndef PARLEY_NODEID_H
#define PARLEY_NODEID_H

#include <stdbool.h>
#include <stddef.h>

/* The longest node id, in characters (a buffer needs one more). */
#define NODEID_MAX 64

/* Fills `out` with the node id: `given` when non-NULL (already validated), else the id kept in
 * `<dir>/node-id`, made on first use as "<hostname>-<8 random hex digits>" (hostname cut to
 * the id charset and 40 chars) and written atomically (temp file + rename). A file that is
 * unreadable, empty or holds a bad id is an error (-1 with err), never replaced silently. */
int nodeid_resolve(const char *given, const char *dir, char *out, size_t len, char *err,
                   size_t errlen);

/* True when `id` is 1..64 characters of [A-Za-z0-9._-]. */
bool nodeid_valid(const char *id);

#endif
