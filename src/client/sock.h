/* Small socket helpers shared by the server link and the P2P connections. */
#ifndef PARLEY_CLIENT_SOCK_H
#define PARLEY_CLIENT_SOCK_H

struct bufferevent;

/* Turns off Nagle's algorithm on the bufferevent's socket (chat lines go out at once). */
void sock_nodelay(struct bufferevent *bev);

/* Turns on TCP keep-alive on the bufferevent's socket: the first probe after `idle_secs`
 * (at least 1) without traffic, then 3 probes `idle_secs / 3` (at least 1 s) apart, so a
 * server host that vanished is noticed within about twice `idle_secs`. */
void sock_keepalive(struct bufferevent *bev, unsigned idle_secs);

/* Writes what is queued on `bev` (a socket bufferevent) to its socket now, as far as the socket
 * takes it without blocking, and removes what was written from the queue, so that calling it
 * twice never sends anything twice (used just before closing, when the event loop will not
 * write any more). */
void sock_flush_now(struct bufferevent *bev);

#endif
