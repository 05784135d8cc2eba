/* The client's command line and its config file (`$XDG_CONFIG_HOME/parley/parley.conf`, by
 * default `~/.config/parley/parley.conf`): the server's address and the opt-in comforts. None
 * of the comforts changes a line the spec fixes; each adds to it. */
#ifndef PARLEY_CLIENT_OPTIONS_H
#define PARLEY_CLIENT_OPTIONS_H

#include <stdbool.h>

/* Upper bound of --p2p-handshakes: the listener scans its handshakes on each accept. */
#define OPTIONS_MAX_P2P_HANDSHAKES 4096
/* Upper bound of --reply-timeout (it is also the keep-alive idle time, at most 32767 s). */
#define OPTIONS_MAX_REPLY_TIMEOUT 3600

struct options {
    const char *host;
    const char *port;
    bool timestamps;         /* `[HH:MM] ` before messages; waited ones show their date too */
    bool mark_broadcasts;    /* `[all] ` before broadcasts */
    bool name_in_prompt;     /* `hans> ` instead of `> ` */
    bool bell;               /* a bell on direct and private messages, at a terminal */
    bool color;              /* colours at a terminal, unless NO_COLOR is set */
    bool reconnect;          /* when the server goes away, log in again by itself */
    unsigned reply_timeout;  /* seconds a request may wait for its reply (and a connect) */
    unsigned p2p_handshakes; /* incoming P2P connections waiting for their HELLO, at most */
    unsigned p2p_per_source; /* of which from one source address */
    bool tls;                /* --tls (also implied by --ca, --pin, --accept-new) */
    const char *ca;          /* --ca FILE|system: verify the chain and the name */
    const char *pin;         /* --pin sha256:...: the server's key must be this one */
    bool accept_new;         /* --accept-new: pin an unknown key without asking */
};

/* What the command line asks for. */
enum options_result {
    OPTIONS_RUN,     /* connect to host:port */
    OPTIONS_HELP,    /* print the usage on stdout, exit 0 */
    OPTIONS_VERSION, /* print the version, exit 0 */
    OPTIONS_USAGE,   /* a bad command line or config file: the reason is printed; exit 2 */
};

/* Reads the config file (unless `--no-config`; `--config FILE` names another), then the
 * command line, whose switches turn comforts on over the file. Prints the reason on stderr
 * for OPTIONS_USAGE. */
enum options_result options_parse(struct options *o, int argc, char **argv);

/* The usage text. */
const char *options_usage(void);

#endif
