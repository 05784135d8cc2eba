/* The login dialogue; see login.h. */
#include "client/login.h"

#include "client/client.h"
#include "client/link.h"
#include "client/ui.h"

#include <stdio.h>
#include <string.h>

#define PROMPT_USER "Username: "
#define PROMPT_PASS "Password: "
#define PROMPT_NEW_PASS "This is a new user. Enter a password: "

#define SAY_WELCOME "Welcome to the greatest messaging application ever!"
#define SAY_BAD_USER "Invalid Username. Please try again"
#define SAY_ONLINE "This user is already logged in"
#define SAY_BAD_PASS "Invalid Password. Please try again"
#define SAY_LOCKED_NOW "Invalid Password. Your account has been blocked. Please try again later"
#define SAY_LOCKED "Your account is blocked due to multiple login failures. Please try again later"
#define SAY_BAD_NEW_PASS "Error. A password is 1 to 128 printable characters without spaces"
#define SAY_BUSY "Error. The server is busy; please try again"
#define SAY_REGISTER_LIMIT "Error. Too many new accounts from this address; please try again later"

static void ask_username(struct client *c)
{
    c->state = CLIENT_USERNAME;
    c->new_user = false;
    ui_ask(UI_INPUT_LINE, PROMPT_USER);
}

static void ask_password(struct client *c)
{
    c->state = CLIENT_PASSWORD;
    ui_ask(UI_INPUT_SECRET, c->new_user ? PROMPT_NEW_PASS : PROMPT_PASS);
}

static void refused(struct client *c, const char *why)
{
    ui_print(why);
    client_exit(c, CLIENT_EXIT_FAIL);
}

/* What a refusal the user may retry asks next. */
enum login_retry {
    RETRY_USERNAME,
    RETRY_PASSWORD,
};

/* Says `why` (if any) and asks again. From a pipe the lines that follow were written as the
 * answers to this attempt (they would count as passwords or user names), so the run ends. */
static void retry(struct client *c, const char *why, enum login_retry next)
{
    if (why)
        ui_print(why);
    if (!ui_input_is_tty()) {
        fputs("parley: login refused; stopping, as the input is not a terminal\n", stderr);
        client_exit(c, CLIENT_EXIT_FAIL);
        return;
    }
    if (next == RETRY_USERNAME)
        ask_username(c);
    else
        ask_password(c);
}

static void on_pass(void *ctx, const struct link_reply *r, void *arg)
{
    (void)arg;
    struct client *c = ctx;
    if (r->status == LINK_GONE || c->state != CLIENT_PASSWORD)
        return;
    if (r->status == LINK_OK) {
        ui_print(SAY_WELCOME);
        client_logged_in(c);
        return;
    }
    switch (r->code) {
    case PROTO_E_LOCKED_NOW:
        refused(c, SAY_LOCKED_NOW);
        break;
    case PROTO_E_LOCKED:
        refused(c, SAY_LOCKED);
        break;
    case PROTO_E_ALREADY_ONLINE: /* the right password of a user online elsewhere */
        retry(c, SAY_ONLINE, RETRY_USERNAME);
        break;
    case PROTO_E_NOT_NOW: /* the server forgot the user name: start again */
        retry(c, NULL, RETRY_USERNAME);
        break;
    case PROTO_E_BAD_REQUEST:
        retry(c, c->new_user ? SAY_BAD_NEW_PASS : SAY_BAD_PASS, RETRY_PASSWORD);
        break;
    case PROTO_E_BUSY: /* nothing was checked: the same password may be sent again */
        ui_print(SAY_BUSY);
        ask_password(c);
        break;
    case PROTO_E_RATE_LIMITED: /* registration refused for now */
        ui_print(SAY_REGISTER_LIMIT);
        ask_username(c);
        break;
    default:
        retry(c, SAY_BAD_PASS, RETRY_PASSWORD);
        break;
    }
}

static void on_user(void *ctx, const struct link_reply *r, void *arg)
{
    (void)arg;
    struct client *c = ctx;
    if (r->status == LINK_GONE || c->state != CLIENT_USERNAME)
        return;
    if (r->status == LINK_OK) {
        struct proto_slice rest = r->rest, f;
        c->new_user = proto_next_field(&rest, &f) && proto_slice_eq(f, "new");
        ask_password(c);
        return;
    }
    switch (r->code) {
    case PROTO_E_ALREADY_ONLINE: /* a name being registered or in use without an account */
        retry(c, SAY_ONLINE, RETRY_USERNAME);
        break;
    default: /* 404, or a name the server will not take */
        retry(c, SAY_BAD_USER, RETRY_USERNAME);
        break;
    }
}

static void on_hello(void *ctx, const struct link_reply *r, void *arg)
{
    (void)arg;
    struct client *c = ctx;
    if (r->status == LINK_GONE)
        return;
    if (r->status == LINK_OK) {
        ask_username(c);
        return;
    }
    if (r->code == PROTO_E_BAD_VERSION)
        refused(c, "Error. The server does not speak this version of the protocol");
    else
        refused(c, "Error. The server refused the connection");
}

void login_start(struct client *c)
{
    c->state = CLIENT_HELLO;
    link_request(c->link, on_hello, NULL, "HELLO %d parley/%s", PROTO_VERSION, PARLEY_VERSION);
}

static void take_username(struct client *c, const char *line)
{
    struct proto_slice name = {line, strlen(line)};
    if (!proto_is_name(name)) {
        retry(c, SAY_BAD_USER, RETRY_USERNAME);
        return;
    }
    snprintf(c->me, sizeof(c->me), "%s", line);
    link_request(c->link, on_user, NULL, "USER %s", c->me);
}

static void take_password(struct client *c, const char *line)
{
    struct proto_slice pass = {line, strlen(line)};
    if (!proto_is_password(pass)) {
        retry(c, c->new_user ? SAY_BAD_NEW_PASS : SAY_BAD_PASS, RETRY_PASSWORD);
        return;
    }
    client_keep_password(c, line);
    link_request(c->link, on_pass, NULL, "PASS %s", line);
}

void login_input(struct client *c, const char *line)
{
    if (!line) {
        client_exit(c, CLIENT_EXIT_FAIL);
        return;
    }
    if (c->state == CLIENT_USERNAME)
        take_username(c, line);
    else if (c->state == CLIENT_PASSWORD)
        take_password(c, line);
}
