/* Small socket helpers shared by the server link and the P2P connections. */
#ifndef PARLEY_CLIENT_SOCK_H
#define PARLEY_CLIENT_SOCK_H

struct bufferevent;

/* Turns off Nagle's algorithm on the bufferevent's socket (chat lines go out at once). */
void sock_nodelay(struct bufferevent *bev);

/* Writes what is queued on `bev` (a socket bufferevent) to its socket now, as far as the socket
 * takes it without blocking, and removes what was written from the queue, so that calling it
 * twice never sends anything twice (used just before closing, when the event loop will not
 * write any more). */
void sock_flush_now(struct bufferevent *bev);

#endif
