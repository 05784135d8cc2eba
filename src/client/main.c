/* parley: the Parley terminal client. Parses the command line, sets up signals and the event
 * loop, and runs the client until it logs out. See man/parley.1. */
#include "client/client.h"
#include "client/options.h"
#include "client/sock.h"
#include "client/ui.h"

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

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

static void on_cont(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    ui_resume();
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
    struct event *sig_ev[5] = {NULL, NULL, NULL, NULL, NULL};
    struct client c;
    struct options opts;
    int status = CLIENT_EXIT_FAIL;

    switch (options_parse(&opts, argc, argv)) {
    case OPTIONS_HELP:
        fputs(options_usage(), stdout);
        return CLIENT_EXIT_OK;
    case OPTIONS_VERSION:
        puts("parley " PARLEY_VERSION);
        return CLIENT_EXIT_OK;
    case OPTIONS_USAGE:
        return CLIENT_EXIT_USAGE;
    case OPTIONS_RUN:
        break;
    }
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = new_base();
    if (!base) {
        fputs("parley: cannot start the event loop\n", stderr);
        return CLIENT_EXIT_FAIL;
    }
    if (client_init(&c, base, &opts) < 0)
        goto out;
    for (size_t i = 0; i < 3; i++) {
        sig_ev[i] = evsignal_new(base, quit_signals[i], on_quit_signal, &c);
        if (sig_ev[i])
            evsignal_add(sig_ev[i], NULL);
    }
    sig_ev[3] = evsignal_new(base, SIGWINCH, on_winch, NULL);
    sig_ev[4] = evsignal_new(base, SIGCONT, on_cont, NULL);
    for (size_t i = 3; i < 5; i++)
        if (sig_ev[i])
            evsignal_add(sig_ev[i], NULL);
    if (c.state != CLIENT_EXITING)
        event_base_dispatch(base);
    status = c.exit_status;
    client_free(&c);
    sock_finish(base);
out:
    for (size_t i = 0; i < 5; i++)
        if (sig_ev[i])
            event_free(sig_ev[i]);
    event_base_free(base);
    return status;
}
