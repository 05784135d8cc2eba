/* The direct messages a user has been shown from a server, remembered across runs so that a
 * message the server delivers again (it lost the acknowledgement in a crash: the store
 * guarantees at least once) is not shown twice. Per server (host and port as given on the
 * command line) and user, the newest message id shown and its time are kept in a small file
 * under $XDG_STATE_HOME/parley/ (default ~/.local/state/parley/; directory 0700, file 0600,
 * replaced atomically). A missing, unreadable or damaged file counts as "nothing shown yet",
 * silently: the worst it can cause is a message shown twice, never one hidden. Touches no
 * socket and no terminal. */
#ifndef PARLEY_CLIENT_SEEN_H
#define PARLEY_CLIENT_SEEN_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct seen;

/* Returns the record of `user` on `host`:`port` (port: 1-65535, leading zeros ignored), read
 * from its file when there is a valid one. Saving happens on `base`, once per turn of the
 * event loop in which something was noted. Returns NULL only when out of memory. */
struct seen *seen_open(struct event_base *base, const char *host, const char *port,
                       const char *user);

/* Returns true when the message `id`, sent at unix time `when`, was shown already: its id is
 * at most the newest shown and it is not newer than that one. (A server whose ids restarted,
 * such as a new server at the same address, sends messages newer than anything shown: they
 * are shown.) False for NULL. */
bool seen_already(const struct seen *s, uint64_t id, uint64_t when);

/* Records that the message `id` sent at `when` has been shown (no-op for NULL). An id above the
 * newest becomes the newest (the time kept is the newest time shown); a lower id with a newer
 * time means the server's ids started again, and it replaces the record. The file is
 * rewritten at the end of this turn of the event loop. */
void seen_note(struct seen *s, uint64_t id, uint64_t when);

/* Writes what is not saved yet and frees `s` (NULL is fine). */
void seen_close(struct seen *s);

#endif
