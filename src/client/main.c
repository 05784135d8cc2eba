/* parley: the Parley terminal client. Parses the command line, sets up signals and the event
 * loop, and runs the client until it logs out. See man/parley.1. */
#include "client/client.h"
#include "client/link.h"
#include "client/p2p.h"
#include "client/ui.h"

#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Upper bound of --p2p-handshakes: the listener scans its handshakes on each accept. */
#define MAX_P2P_HANDSHAKES 4096
/* Upper bound of --reply-timeout (it is also the keep-alive idle time, at most 32767 s). */
#define MAX_REPLY_TIMEOUT 3600

static void usage(FILE *out)
{
    fputs("usage: parley <server_ip> <server_port>\n"
          "       parley [options] <server_ip> <server_port>\n"
          "       parley --help | --version\n"
          "\n"
          "Logs in to a Parley server and chats: type `help` after logging in.\n"
          "From a pipe, runs the lines of its input as the user's answers and commands.\n"
          "\n"
          "options:\n"
          "  --reply-timeout SECONDS  how long a request may wait for the server's reply\n"
          "                       before the connection counts as lost (default 30)\n"
          "  --p2p-handshakes N   incoming private-session connections waiting for their\n"
          "                       handshake, at most (default 16; the oldest goes first)\n"
          "  --p2p-per-source N   of which from one address (default 4)\n",
          out);
}

static bool valid_port(const char *s)
{
    unsigned long v = 0;
    if (!*s || strlen(s) > 5)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    return v > 0 && v < 65536;
}

/* Parses the decimal `s` into `*out` when it lies in [lo, hi]. */
static bool parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    unsigned long v = 0;
    if (!*s || strlen(s) > 9)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v < lo || v > hi)
        return false;
    *out = (unsigned)v;
    return true;
}

/* What the command line asks for. */
enum cmdline {
    CMDLINE_RUN,     /* connect: options and both arguments are valid */
    CMDLINE_HELP,    /* --help */
    CMDLINE_VERSION, /* --version */
    CMDLINE_BAD,     /* print the usage, exit 2 */
};

/* Reads the options into `lim` and leaves `optind` at the first argument. */
static enum cmdline parse_options(int argc, char **argv, struct client_limits *lim)
{
    enum { OPT_HANDSHAKES = 256, OPT_PER_SOURCE, OPT_REPLY_TIMEOUT };
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"p2p-handshakes", required_argument, NULL, OPT_HANDSHAKES},
        {"p2p-per-source", required_argument, NULL, OPT_PER_SOURCE},
        {"reply-timeout", required_argument, NULL, OPT_REPLY_TIMEOUT},
        {NULL, 0, NULL, 0},
    };
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            return CMDLINE_HELP;
        case 'V':
            return CMDLINE_VERSION;
        case OPT_HANDSHAKES:
            if (!parse_uint(optarg, 1, MAX_P2P_HANDSHAKES, &lim->p2p_handshakes))
                return CMDLINE_BAD;
            break;
        case OPT_PER_SOURCE:
            if (!parse_uint(optarg, 1, MAX_P2P_HANDSHAKES, &lim->p2p_per_source))
                return CMDLINE_BAD;
            break;
        case OPT_REPLY_TIMEOUT:
            if (!parse_uint(optarg, 1, MAX_REPLY_TIMEOUT, &lim->reply_timeout))
                return CMDLINE_BAD;
            break;
        default:
            return CMDLINE_BAD;
        }
    }
    if (argc - optind != 2 || !valid_port(argv[optind + 1]))
        return CMDLINE_BAD;
    return CMDLINE_RUN;
}

/* SIGINT, SIGTERM, SIGHUP: log out cleanly; a second one does not wait for the server. */
static void on_quit_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    struct client *c = arg;
    if (c->state == CLIENT_QUITTING)
        client_exit(c, CLIENT_EXIT_OK);
    else
        client_quit(c);
}

static void on_winch(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    ui_resize();
}

/* epoll cannot watch regular files or /dev/null: use poll when stdin is one of them. */
static struct event_base *new_base(void)
{
    struct stat st;
    struct event_config *cfg = event_config_new();
    if (!cfg)
        return NULL;
    if (!isatty(STDIN_FILENO) && fstat(STDIN_FILENO, &st) == 0 && !S_ISFIFO(st.st_mode) &&
        !S_ISSOCK(st.st_mode))
        event_config_avoid_method(cfg, "epoll");
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

int main(int argc, char **argv)
{
    static const int quit_signals[] = {SIGINT, SIGTERM, SIGHUP};
    struct event *sig_ev[4] = {NULL, NULL, NULL, NULL};
    struct client c;
    struct client_limits lim = {LINK_DEFAULT_REPLY_SECS, P2P_DEFAULT_MAX_HANDSHAKES,
                                P2P_DEFAULT_MAX_PER_SOURCE};
    int status = CLIENT_EXIT_FAIL;

    switch (parse_options(argc, argv, &lim)) {
    case CMDLINE_HELP:
        usage(stdout);
        return CLIENT_EXIT_OK;
    case CMDLINE_VERSION:
        puts("parley " PARLEY_VERSION);
        return CLIENT_EXIT_OK;
    case CMDLINE_BAD:
        usage(stderr);
        return CLIENT_EXIT_USAGE;
    case CMDLINE_RUN:
        break;
    }
    const char *host = argv[optind], *port = argv[optind + 1];
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = new_base();
    if (!base) {
        fputs("parley: cannot start the event loop\n", stderr);
        return CLIENT_EXIT_FAIL;
    }
    if (client_init(&c, base, host, port, &lim) < 0)
        goto out;
    for (size_t i = 0; i < 3; i++) {
        sig_ev[i] = evsignal_new(base, quit_signals[i], on_quit_signal, &c);
        if (sig_ev[i])
            evsignal_add(sig_ev[i], NULL);
    }
    sig_ev[3] = evsignal_new(base, SIGWINCH, on_winch, NULL);
    if (sig_ev[3])
        evsignal_add(sig_ev[3], NULL);
    if (c.state != CLIENT_EXITING)
        event_base_dispatch(base);
    status = c.exit_status;
    client_free(&c);
out:
    for (size_t i = 0; i < 4; i++)
        if (sig_ev[i])
            event_free(sig_ev[i]);
    event_base_free(base);
    return status;
}
