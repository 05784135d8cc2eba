/* The client's command line and its config file (`$XDG_CONFIG_HOME/parley/parley.conf`, by
 * default `~/.config/parley/parley.conf`): the server's address and the opt-in comforts. None
 * of the comforts changes a line the spec fixes; each adds to it. */
#ifndef PARLEY_CLIENT_OPTIONS_H
#define PARLEY_CLIENT_OPTIONS_H

#include <stdbool.h>

struct options {
    const char *host;
    const char *port;
    bool timestamps;      /* `[HH:MM] ` before messages; waited ones show their date too */
    bool mark_broadcasts; /* `[all] ` before broadcasts */
    bool name_in_prompt;  /* `hans> ` instead of `> ` */
    bool bell;            /* a bell on direct and private messages, at a terminal */
    bool color;           /* colours at a terminal, unless NO_COLOR is set */
    bool reconnect;       /* when the server goes away, log in again by itself */
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
