/* Small socket helpers shared by the server link and the P2P connections. */
#ifndef PARLEY_CLIENT_SOCK_H
#define PARLEY_CLIENT_SOCK_H

struct bufferevent;
struct event_base;

/* Turns off Nagle's algorithm on the bufferevent's socket (chat lines go out at once). */
void sock_nodelay(struct bufferevent *bev);

/* Turns on TCP keep-alive on the bufferevent's socket: the first probe after `idle_secs`
 * (at least 1) without traffic, then 3 probes `idle_secs / 3` (at least 1 s) apart, so a
 * server host that vanished is noticed within about twice `idle_secs`. */
void sock_keepalive(struct bufferevent *bev, unsigned idle_secs);

/* Closes `bev` once what is queued on it has gone out through the bufferevent itself (so a TLS
 * link stays encrypted), or after SOCK_LINGER_SECS, or at once on an error; then frees it.
 * The caller gives `bev` up: its callbacks are replaced and nothing is read any more. Each
 * queued byte is sent at most once. */
void sock_close_flushed(struct bufferevent *bev);

/* Runs the event loop of `base` until every bufferevent given to sock_close_flushed is closed
 * (each within SOCK_LINGER_SECS). Called once, when the program leaves its own loop. */
void sock_finish(struct event_base *base);

#endif
