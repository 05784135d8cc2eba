/* The client as a whole; see client.h. */
#include "client/client.h"

#include "client/commands.h"
#include "client/display.h"
#include "client/events.h"
#include "client/link.h"
#include "client/login.h"
#include "client/options.h"
#include "client/p2p.h"
#include "client/seen.h"
#include "client/ui.h"

#include <errno.h>
#include <event2/event.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define PROMPT_PRIVATE_ONLY "(private only) > " /* logged out, private sessions open */
#define PROMPT_RECONNECTING "(reconnecting) > " /* --reconnect, server lost */
#define QUIT_WAIT_SECS 2   /* how long to wait for the server to confirm LOGOUT */
#define RETRY_FIRST_SECS 1 /* --reconnect: the first wait, doubled after each failure */
#define RETRY_MAX_SECS 30

#define SAY_LOST "Connection to server lost"
#define SAY_NOT_ANSWERING "Error. The server is not answering"
#define SAY_IDLE "You have been logged out due to inactivity"

/* ---- input ---- */

static void answer_question(struct client *c, const char *line)
{
    while (*line == ' ')
        line++;
    if (strcmp(line, "y") == 0 || strcmp(line, "Y") == 0 || strcmp(line, "yes") == 0) {
        p2p_answer(c->p2p, true);
    } else if (strcmp(line, "n") == 0 || strcmp(line, "N") == 0 || strcmp(line, "no") == 0) {
        p2p_answer(c->p2p, false);
    } else {
        ui_print("Error. Please enter y or n");
        client_refresh_prompt(c);
    }
}

/* Drops the link and connects again on a fresh one (a new connection's state must not mix
 * with the old one's). False when no link could be made; else `*gai_rc` is link_connect's. */
static bool relink(struct client *c, int *gai_rc);

/* The user's answer to TRUST_QUESTION: yes pins the key and goes on; anything else quits. */
static void answer_trust(struct client *c, const char *line)
{
    bool yes = line && (strcmp(line, "yes") == 0 || strcmp(line, "y") == 0);
    if (!yes) {
        fputs("parley: the server's key was not trusted; nothing was sent\n", stderr);
        client_exit(c, CLIENT_EXIT_FAIL);
        return;
    }
    trust_accept(&c->trust);
    /* The server may have given up on the connection while the person read the fingerprint
     * (--hello-timeout): connect again; the key just accepted is trusted at once. */
    c->state = CLIENT_CONNECTING;
    int rc = 0;
    if (!relink(c, &rc) || rc != 0) {
        if (rc != 0)
            fprintf(stderr, "parley: cannot find %s: %s\n", c->host, evutil_gai_strerror(rc));
        client_exit(c, CLIENT_EXIT_FAIL);
    }
}

static void on_line(void *ctx, const char *line)
{
    struct client *c = ctx;
    switch (c->state) {
    case CLIENT_TRUSTING:
        answer_trust(c, line);
        break;
    case CLIENT_USERNAME:
    case CLIENT_PASSWORD:
        login_input(c, line);
        break;
    case CLIENT_ONLINE:
    case CLIENT_LOGGED_OUT:
    case CLIENT_RECONNECTING:
        if (!line)
            client_quit(c);
        else if (p2p_question(c->p2p))
            answer_question(c, line);
        else
            cmd_execute(c, line);
        break;
    default:
        break;
    }
}

/* ---- the server link ---- */

static void relogin_start(struct client *c);

static void on_connected(void *ctx)
{
    struct client *c = ctx;
    struct sockaddr_storage ss;
    socklen_t len;
    if (c->state == CLIENT_RECONNECTING) {
        relogin_start(c); /* the P2P listener is still open */
        return;
    }
    if (link_local_addr(c->link, &ss, &len) == 0)
        c->listen_port = p2p_listen(c->p2p, (struct sockaddr *)&ss, len);
    login_start(c);
}

static void on_event(void *ctx, struct proto_slice verb, struct proto_slice rest)
{
    events_dispatch(ctx, verb, rest);
}

/* The server session is over while logged in: live on for open P2P sessions (spec §7). */
static void server_gone(struct client *c, int status)
{
    if (p2p_open_count(c->p2p) > 0) {
        c->state = CLIENT_LOGGED_OUT;
        c->logged_out_status = status;
        link_close(c->link);
        ui_print("Only private messaging still works (private, stopprivate); "
                 "type logout to quit");
        client_refresh_prompt(c);
    } else {
        client_exit(c, status);
    }
}

/* ---- --reconnect ---- */

static void reconnect_later(struct client *c)
{
    struct timeval tv = {c->retry_secs, 0};
    c->state = CLIENT_RECONNECTING;
    link_close(c->link);
    ui_printf("Reconnecting in %d s (type logout to quit)", c->retry_secs);
    evtimer_add(c->retry_timer, &tv);
    client_refresh_prompt(c);
}

/* A try failed (no connection, or the server could not take the login yet): wait longer. */
static void reconnect_failed(struct client *c)
{
    c->retry_secs = c->retry_secs * 2 > RETRY_MAX_SECS ? RETRY_MAX_SECS : c->retry_secs * 2;
    reconnect_later(c);
}

/* The login was refused for good (wrong password now, locked, no such user). */
static void relogin_refused(struct client *c, const struct link_reply *r)
{
    ui_printf("Error. Could not log in again (%.*s)", (int)r->rest.len, r->rest.ptr);
    server_gone(c, CLIENT_EXIT_FAIL);
}

static void on_relogin(void *ctx, const struct link_reply *r, void *arg)
{
    (void)arg;
    struct client *c = ctx;
    if (r->status == LINK_GONE || c->state != CLIENT_RECONNECTING)
        return; /* on_closed handles a drop */
    if (r->status == LINK_OK) {
        c->retry_secs = RETRY_FIRST_SECS;
        ui_printf("Reconnected: logged in again as %s", c->me);
        client_logged_in(c);
        return;
    }
    if (r->code == PROTO_E_ALREADY_ONLINE || r->code == PROTO_E_STORE_UNAVAILABLE ||
        r->code == PROTO_E_NOT_NOW || r->code == PROTO_E_BUSY)
        reconnect_failed(c); /* the old session is not gone yet, or the server is busy */
    else
        relogin_refused(c, r);
}

/* True when a step of the re-login (HELLO, USER) succeeded and the next may follow. */
static bool relogin_step_ok(struct client *c, const struct link_reply *r)
{
    if (r->status == LINK_GONE || c->state != CLIENT_RECONNECTING)
        return false;
    if (r->status != LINK_OK) {
        relogin_refused(c, r);
        return false;
    }
    return true;
}

static void on_reuser(void *ctx, const struct link_reply *r, void *arg)
{
    (void)arg;
    struct client *c = ctx;
    if (relogin_step_ok(c, r))
        link_request(c->link, on_relogin, NULL, "PASS %s", c->password);
}

static void on_rehello(void *ctx, const struct link_reply *r, void *arg)
{
    (void)arg;
    struct client *c = ctx;
    if (relogin_step_ok(c, r))
        link_request(c->link, on_reuser, NULL, "USER %s", c->me);
}

static void relogin_start(struct client *c)
{
    link_request(c->link, on_rehello, NULL, "HELLO %d parley/%s", PROTO_VERSION, PARLEY_VERSION);
}

static const struct link_handlers link_handlers;

/* A new link to the server, speaking TLS with --tls. */
static struct link *new_link(struct client *c)
{
    struct link *l = link_new(c->base, &link_handlers, c, c->opts->reply_timeout);
    if (l && c->opts->tls)
        link_use_tls(l, c->trust.ctx, c->host);
    return l;
}

static bool relink(struct client *c, int *gai_rc)
{
    link_free(c->link);
    c->link = new_link(c);
    if (!c->link)
        return false;
    *gai_rc = link_connect(c->link, c->host, c->port);
    return true;
}

/* The wait is over: a fresh link (the old one's state belonged to the old connection). */
static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct client *c = arg;
    int rc = 0;
    if (!relink(c, &rc)) {
        client_exit(c, CLIENT_EXIT_FAIL);
        return;
    }
    if (rc != 0) {
        ui_printf("Error. Cannot find %s: %s", c->host, evutil_gai_strerror(rc));
        reconnect_failed(c);
    }
}

/* The server was lost while logged in: with --reconnect try again, else as spec §9 says. */
static void server_lost(struct client *c)
{
    if (c->opts->reconnect && c->password_locked)
        reconnect_later(c);
    else
        server_gone(c, CLIENT_EXIT_FAIL);
}

void client_keep_password(struct client *c, const char *password)
{
    if (c->password_locked)
        snprintf(c->password, sizeof(c->password), "%s", password);
}

/* The line after `Connection to server lost` that says why the server said goodbye. */
static void say_bye_reason(const char *reason)
{
    if (strcmp(reason, "shutdown") == 0)
        ui_print("The server is shutting down");
    else if (strcmp(reason, "login-timeout") == 0)
        ui_print("The server ended the login: it was not finished in time");
    else if (strcmp(reason, "flood") == 0)
        ui_print("The server ended the session: too many invalid requests");
    else if (strcmp(reason, "overflow") == 0)
        ui_print("The server ended the session: this client did not read its messages in time");
    else if (strcmp(reason, "taken") == 0)
        ui_print("The server ended the session: this user is logged in through another server "
                 "of the cluster now");
    else
        ui_printf("The server ended the session (%s)", reason);
}

/* The line after `Connection to server lost` when the connection ended without a goodbye. */
static void say_close_reason(int err)
{
    if (err == ETIMEDOUT)
        ui_print(SAY_NOT_ANSWERING);
    else if (err)
        ui_printf("The connection to the server failed: %s", strerror(err));
    else
        ui_print("The server closed the connection without notice (it may have crashed)");
}

static bool logging_in(const struct client *c)
{
    return c->state == CLIENT_HELLO || c->state == CLIENT_USERNAME || c->state == CLIENT_PASSWORD;
}

static void on_closed(void *ctx, int err)
{
    struct client *c = ctx;
    switch (c->state) {
    case CLIENT_CONNECTING:
    case CLIENT_TRUSTING:
        fprintf(stderr, "parley: cannot connect to %s port %s: %s\n", c->host, c->port,
                link_tls_error(c->link) ? link_tls_error(c->link) : strerror(err));
        client_exit(c, CLIENT_EXIT_FAIL);
        break;
    case CLIENT_QUITTING:
        client_exit(c, CLIENT_EXIT_OK);
        break;
    case CLIENT_ONLINE:
        ui_print(SAY_LOST);
        say_close_reason(err);
        server_lost(c);
        break;
    case CLIENT_RECONNECTING:
        if (err)
            ui_printf("Cannot reach the server: %s", strerror(err));
        reconnect_failed(c);
        break;
    default:
        if (logging_in(c)) {
            ui_print(SAY_LOST);
            say_close_reason(err);
            if (c->state == CLIENT_HELLO && !c->opts->tls && err != ETIMEDOUT) /* hung up */
                ui_print("The server did not answer HELLO: if it speaks TLS, connect with --tls");
            client_exit(c, CLIENT_EXIT_FAIL);
        }
        break;
    }
}

void client_bye(struct client *c, const char *reason)
{
    bool idle = strcmp(reason, "idle") == 0;
    switch (c->state) {
    case CLIENT_ONLINE:
        ui_print(idle ? SAY_IDLE : SAY_LOST);
        if (idle) {
            server_gone(c, CLIENT_EXIT_OK);
            break;
        }
        say_bye_reason(reason);
        server_lost(c);
        break;
    case CLIENT_QUITTING:
        client_exit(c, CLIENT_EXIT_OK);
        break;
    default:
        if (logging_in(c)) {
            ui_print(SAY_LOST);
            say_bye_reason(reason);
            client_exit(c, CLIENT_EXIT_FAIL);
        }
        break;
    }
}

/* ---- life cycle ---- */

static void on_logout(void *ctx, const struct link_reply *r, void *arg)
{
    (void)r;
    (void)arg;
    client_exit(ctx, CLIENT_EXIT_OK);
}

static void quit_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    client_exit(arg, CLIENT_EXIT_OK);
}

void client_quit(struct client *c)
{
    switch (c->state) {
    case CLIENT_QUITTING:
    case CLIENT_EXITING:
        return;
    case CLIENT_ONLINE: {
        struct timeval tv = {QUIT_WAIT_SECS, 0};
        ui_stop();
        p2p_stop_all(c->p2p); /* STOP to each peer, P2PEND to the server */
        c->state = CLIENT_QUITTING;
        evtimer_add(c->quit_timer, &tv);
        link_request(c->link, on_logout, NULL, "LOGOUT");
        return;
    }
    case CLIENT_LOGGED_OUT:
    case CLIENT_RECONNECTING:
        c->state = CLIENT_QUITTING;
        evtimer_del(c->retry_timer);
        p2p_stop_all(c->p2p);
        client_exit(c, CLIENT_EXIT_OK);
        return;
    default:
        client_exit(c, CLIENT_EXIT_FAIL);
        return;
    }
}

void client_exit(struct client *c, int status)
{
    if (c->state == CLIENT_EXITING)
        return;
    c->state = CLIENT_EXITING;
    c->exit_status = status;
    ui_shutdown();
    if (c->link)
        link_close(c->link);
    event_base_loopbreak(c->base);
}

void client_logged_in(struct client *c)
{
    char prompt[PROTO_MAX_NAME + 8];
    c->state = CLIENT_ONLINE;
    if (!c->seen)
        c->seen = seen_open(c->base, c->host, c->port, c->me);
    display_logged_in();
    if (c->listen_port > 0)
        link_request(c->link, NULL, NULL, "LISTEN %d", c->listen_port);
    display_prompt(prompt, sizeof(prompt), c->me);
    ui_commands(prompt);
}

bool client_online(const struct client *c)
{
    return c->state == CLIENT_ONLINE && link_is_up(c->link);
}

void client_hold(struct client *c)
{
    (void)c;
    ui_hold();
}

void client_release(struct client *c)
{
    (void)c;
    ui_release();
}

void client_p2p_ended(struct client *c, const char *name)
{
    if (client_online(c))
        link_request(c->link, NULL, NULL, "P2PEND %s", name);
    if (c->state == CLIENT_LOGGED_OUT && p2p_open_count(c->p2p) == 0) {
        ui_print("No private messaging session is left; exiting");
        client_exit(c, c->logged_out_status);
    }
}

void client_refresh_prompt(struct client *c)
{
    if (c->state != CLIENT_ONLINE && c->state != CLIENT_LOGGED_OUT &&
        c->state != CLIENT_RECONNECTING)
        return;
    if (c->state == CLIENT_RECONNECTING) {
        ui_set_prompt(PROMPT_RECONNECTING, false);
        return;
    }
    const char *from = p2p_question(c->p2p);
    if (!from) {
        char prompt[PROTO_MAX_NAME + 8];
        display_prompt(prompt, sizeof(prompt), c->me);
        ui_set_prompt(c->state == CLIENT_ONLINE ? prompt : PROMPT_PRIVATE_ONLY, false);
        return;
    }
    char q[PROTO_MAX_NAME + 64];
    snprintf(q, sizeof(q), "%s would like to private message, enter y or n: ", from);
    ui_set_prompt(q, true);
}

/* TLS: decides on the server's key before anything is sent. */
static enum link_verdict on_verify(void *ctx, struct ssl_st *ssl)
{
    struct client *c = ctx;
    enum link_verdict v = trust_check(&c->trust, ssl, ui_input_is_tty());
    if (v == LINK_DISTRUSTED) {
        client_exit(c, CLIENT_EXIT_FAIL);
    } else if (v == LINK_UNDECIDED) {
        c->state = CLIENT_TRUSTING;
        ui_ask(UI_INPUT_LINE, TRUST_QUESTION);
    }
    return v;
}

static const struct link_handlers link_handlers = {on_connected, on_event, on_closed, on_verify};

/* --reconnect keeps the password in memory that is never swapped out. */
static int lock_password(struct client *c)
{
    if (!c->opts->reconnect)
        return 0;
    if (sodium_init() < 0 || sodium_mlock(c->password, sizeof(c->password)) != 0) {
        fputs("parley: --reconnect: cannot lock memory for the password\n", stderr);
        return -1;
    }
    c->password_locked = true;
    return 0;
}

int client_init(struct client *c, struct event_base *base, const struct options *opts)
{
    const char *host = opts->host, *port = opts->port;
    memset(c, 0, sizeof(*c));
    c->base = base;
    c->opts = opts;
    c->host = host;
    c->port = port;
    c->state = CLIENT_CONNECTING;
    c->listen_port = -1;
    c->exit_status = CLIENT_EXIT_FAIL;
    if (ui_init(base, on_line, c) < 0)
        goto fail;
    display_init(opts);
    ui_set_completion(cmd_names(), cmd_takes_user);
    if (opts->tls && trust_init(&c->trust, opts, host, port) < 0)
        goto fail;
    c->p2p = p2p_new(c, opts->p2p_handshakes, opts->p2p_per_source);
    c->link = new_link(c);
    c->quit_timer = evtimer_new(base, quit_timeout_cb, c);
    c->retry_timer = evtimer_new(base, retry_cb, c);
    c->retry_secs = RETRY_FIRST_SECS;
    if (!c->p2p || !c->link || !c->quit_timer || !c->retry_timer || lock_password(c) < 0)
        goto fail;
    int rc = link_connect(c->link, host, port);
    if (rc != 0) {
        fprintf(stderr, "parley: cannot find %s port %s: %s\n", host, port,
                evutil_gai_strerror(rc));
        goto fail;
    }
    return 0;
fail:
    client_free(c);
    return -1;
}

void client_free(struct client *c)
{
    ui_shutdown();
    if (c->quit_timer)
        event_free(c->quit_timer);
    c->quit_timer = NULL;
    if (c->retry_timer)
        event_free(c->retry_timer);
    c->retry_timer = NULL;
    if (c->password_locked)
        sodium_munlock(c->password, sizeof(c->password)); /* zeroes it too */
    c->password_locked = false;
    p2p_free(c->p2p);
    c->p2p = NULL;
    seen_close(c->seen);
    c->seen = NULL;
    link_free(c->link);
    c->link = NULL;
    trust_free(&c->trust);
    ui_free();
}
