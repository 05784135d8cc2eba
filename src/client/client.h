/* The client as a whole: its login state, the server link, the P2P sessions, and the ways the
 * program ends. Every module gets the one `struct client` and asks it for the others. */
#ifndef PARLEY_CLIENT_CLIENT_H
#define PARLEY_CLIENT_CLIENT_H

#include "client/trust.h"
#include "common/proto.h"

#include <stdbool.h>

struct event;
struct event_base;
struct link;
struct options;
struct p2p;
struct seen;

/* Where the client is in its life. */
enum client_state {
    CLIENT_CONNECTING,   /* TCP connect (and TLS handshake) to the server in progress */
    CLIENT_TRUSTING,     /* TLS: asking the user whether to trust an unknown server key */
    CLIENT_HELLO,        /* HELLO sent, waiting for its reply */
    CLIENT_USERNAME,     /* asking for, or checking, the user name */
    CLIENT_PASSWORD,     /* asking for, or checking, the password */
    CLIENT_ONLINE,       /* logged in: commands go to the server */
    CLIENT_LOGGED_OUT,   /* the server session ended; open P2P sessions keep the client alive */
    CLIENT_RECONNECTING, /* --reconnect: the server was lost; connecting and logging in again */
    CLIENT_QUITTING,     /* LOGOUT sent; waiting for the server to confirm */
    CLIENT_EXITING,      /* the event loop is stopping */
};

/* Exit statuses of `parley`. */
enum client_exit {
    CLIENT_EXIT_OK = 0,    /* logged out: logout, end of input, signal, inactivity */
    CLIENT_EXIT_FAIL = 1,  /* not logged in, or the server connection was lost */
    CLIENT_EXIT_USAGE = 2, /* bad command line */
};

struct client {
    struct event_base *base;
    enum client_state state;
    char me[PROTO_MAX_NAME + 1]; /* the user name being tried, then the logged-in user */
    bool new_user;               /* the server offered to register `me` */
    int exit_status;
    int logged_out_status;      /* status to exit with once the last P2P session ends */
    int listen_port;            /* our P2P listener, or -1 */
    const struct options *opts; /* the command line and config file */
    const char *host;
    const char *port;
    struct link *link;
    struct trust trust; /* --tls: the settings and the key seen */
    struct p2p *p2p;
    struct seen *seen; /* the messages shown in earlier runs; NULL until logged in */
    struct event *quit_timer;
    /* --reconnect */
    char password[PROTO_MAX_PASSWORD + 1]; /* the one that logged in, in locked memory */
    bool password_locked;                  /* `password` is sodium_mlock()ed */
    int retry_secs;                        /* the next wait before reconnecting */
    struct event *retry_timer;
};

/* Sets the client up with `opts` (kept, not copied) and starts connecting to its host and
 * port. Prints the reason and returns -1 when that cannot start. */
int client_init(struct client *c, struct event_base *base, const struct options *opts);

/* Frees everything; the event loop must have stopped. */
void client_free(struct client *c);

/* Returns true when commands can go to the server (logged in and connected). */
bool client_online(const struct client *c);

/* Ends the program politely: stops every P2P session, logs out if logged in (waiting a moment
 * for the server to confirm), then stops the event loop. Used by `logout`, end of input and
 * SIGINT/SIGTERM/SIGHUP. */
void client_quit(struct client *c);

/* Stops the event loop now, restoring the terminal; `status` becomes the exit status. */
void client_exit(struct client *c, int status);

/* The server ends the session (`* BYE <reason>`): after `idle` the user is told of the
 * inactivity logout, otherwise the connection counts as lost. Keeps running while P2P sessions
 * are open (spec §7), else exits. */
void client_bye(struct client *c, const char *reason);

/* The password typed at the login prompt is about to be sent: with --reconnect it is kept
 * (in locked memory) to log in again by itself. */
void client_keep_password(struct client *c, const char *password);

/* Login finished: the user is online. Announces the P2P listener and starts reading commands. */
void client_logged_in(struct client *c);

/* Holds the next input line back until client_release() (pipe mode waits for replies). */
void client_hold(struct client *c);

/* Ends one client_hold(). */
void client_release(struct client *c);

/* A P2P session with `name` ended: tells the server and exits if the client only lived on for
 * its P2P sessions and this was the last. */
void client_p2p_ended(struct client *c, const char *name);

/* Shows the right prompt: a pending private-messaging question, or `> `. */
void client_refresh_prompt(struct client *c);

#endif
