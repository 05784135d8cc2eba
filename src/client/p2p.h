/* Peer-to-peer private sessions: the listening socket announced to the server, the one-time
 * secrets the server hands out (the PSK of the Noise handshake, p2p_channel.h), the identity
 * keys and their pins (identity.h), `MSG`/`STOP` frames sealed in records, the consent
 * question, and cutting off peers that send junk, flood, or stop reading. See
 * docs/PROTOCOL.md §7. */
#ifndef PARLEY_CLIENT_P2P_H
#define PARLEY_CLIENT_P2P_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct client;
struct ident;
struct p2p;

/* The server waits this long for the peer's answer to a P2P request, then counts it as
 * declined (docs/PROTOCOL.md §6); an unanswered y/n question expires after it too. */
#define P2P_ANSWER_SECS 60

/* Default limits on incoming connections that have not finished their handshake. */
#define P2P_DEFAULT_MAX_HANDSHAKES 16 /* at once */
#define P2P_DEFAULT_MAX_PER_SOURCE 4  /* at once from one source address */

/* What the client knows of a session with one user. */
enum p2p_session {
    P2P_NONE,    /* no session */
    P2P_PENDING, /* being set up */
    P2P_OPEN,    /* open: private messages can go */
    P2P_GONE,    /* it was open and the peer vanished; not yet reported to the user */
};

/* Returns the P2P state of client `c`, or NULL when out of memory. The listener keeps at most
 * `max_handshakes` incoming connections waiting for their HELLO, of which `max_per_source`
 * (both at least 1) from one source address; past either limit the oldest such connection
 * (of that source, or of all) is closed to make room for the new one. */
struct p2p *p2p_new(struct client *c, size_t max_handshakes, size_t max_per_source);

/* Listens on an OS-chosen port of the local address `local` (port ignored). Returns the port,
 * or -1 when no listener could be made (the client then cannot receive sessions). */
int p2p_listen(struct p2p *p, const struct sockaddr *local, socklen_t len);

/* Handles `* P2PREQ <from> <secret> <ask>`: without `ask`, accepts at once; with it, queues the
 * question for the user (see p2p_question()). Declines when a session with `from` is open. */
void p2p_offer(struct p2p *p, const char *from, const char *secret, bool ask);

/* Returns the user whose private-messaging request waits for a y/n answer, or NULL. */
const char *p2p_question(const struct p2p *p);

/* Answers the oldest waiting question: accept (`yes`) or decline. */
void p2p_answer(struct p2p *p, bool yes);

/* Connects to `name` at `host`:`port` with `secret` after the server's P2P reply. Takes over
 * one client_hold(), released when the session opens or fails; prints the outcome. Says
 * `<name> accepts private messaging` first when `say_accepted`. */
void p2p_connect(struct p2p *p, const char *name, const char *host, const char *port,
                 const char *secret, bool say_accepted);

/* Returns the state of the session with `name`. */
enum p2p_session p2p_session(const struct p2p *p, const char *name);

/* Sends the private message `text` (already checked) to the open session with `name`. Returns
 * 0, or -1 when there is no open session or the peer was cut off for not reading. */
int p2p_send(struct p2p *p, const char *name, const char *text);

/* Ends the session with `name` (sending `STOP`), or forgets that it vanished. */
void p2p_stop(struct p2p *p, const char *name);

/* Forgets that the session with `name` vanished (it has been reported). */
void p2p_forget(struct p2p *p, const char *name);

/* Ends every session (sending `STOP`), and drops pending questions and secrets. */
void p2p_stop_all(struct p2p *p);

/* Returns our identity (loaded, or made, on first use), or NULL after printing why it cannot
 * be loaded. */
const struct ident *p2p_identity(struct p2p *p);

/* Returns the number of open sessions. */
size_t p2p_open_count(const struct p2p *p);

/* Closes everything and frees `p` (NULL is fine). Not from inside a P2P callback. */
void p2p_free(struct p2p *p);

#endif
