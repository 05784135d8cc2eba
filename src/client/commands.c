/* The command table and handlers; see commands.h. */
#include "client/commands.h"

#include "client/client.h"
#include "client/identity.h"
#include "client/link.h"
#include "client/p2p.h"
#include "client/text.h"
#include "client/ui.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SAY_INVALID_COMMAND "Error. Invalid command"
#define SAY_INVALID_USER "Error. Invalid user"
#define SAY_LOGGED_OUT "Error. You are logged out"

/* What a command takes after its name. */
enum cmd_args {
    ARGS_NONE,      /* nothing */
    ARGS_USER,      /* <user> */
    ARGS_OPT_USER,  /* [<user>] */
    ARGS_SECONDS,   /* <seconds> */
    ARGS_TEXT,      /* <message>: the rest of the line */
    ARGS_USER_TEXT, /* <user> <message> */
};

typedef void (*cmd_fn)(struct client *c, const struct cmd_call *k);

struct cmd {
    const char *name;
    enum cmd_args args;
    bool server; /* needs the server session */
    cmd_fn fn;
    const char *usage;
    const char *help;
};

/* One outcome of a request: the reply code (0 for OK) and the line to print, where `%s` is
 * the user named in the command (NULL: print nothing). */
struct outcome {
    int code;
    const char *say;
};

/* A request waiting for its reply. */
struct req {
    const struct outcome *outcomes;
    char user[PROTO_MAX_NAME + 1];
};

/* ---- sending ---- */

static struct req *req_new(const struct outcome *outcomes, const char *user)
{
    struct req *q = calloc(1, sizeof(*q));
    if (q) {
        q->outcomes = outcomes;
        snprintf(q->user, sizeof(q->user), "%s", user ? user : "");
    }
    return q;
}

/* Sends a request whose reply `fn` handles with `q`, and which may take `grace` seconds more
 * than the reply timeout; holds pipe input until then. */
static void send_req(struct client *c, unsigned grace, link_reply_fn fn, struct req *q,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void send_req(struct client *c, unsigned grace, link_reply_fn fn, struct req *q,
                     const char *fmt, ...)
{
    char frame[PROTO_DEFAULT_MAX_LINE];
    va_list ap;
    if (!q) {
        ui_print("Error. Out of memory");
        return;
    }
    va_start(ap, fmt);
    vsnprintf(frame, sizeof(frame), fmt, ap);
    va_end(ap);
    client_hold(c);
    link_request_patient(c->link, grace, fn, q, "%s", frame);
}

/* Prints the line for an error code that no command-specific outcome covers. */
static void say_error(const struct link_reply *r)
{
    switch (r->code) {
    case PROTO_E_TOO_LONG:
        ui_printf("Error. Message too long (at most %d bytes)", CMD_MAX_TEXT);
        break;
    case PROTO_E_RATE_LIMITED:
        ui_print("Error. You are sending too many messages; please slow down");
        break;
    case PROTO_E_STORE_UNAVAILABLE:
        ui_print("Error. The server could not store the message; please try again");
        break;
    case PROTO_E_NOT_NOW:
        ui_print(SAY_LOGGED_OUT);
        break;
    case PROTO_E_QUEUE_FULL:
        ui_print("Error. The recipient has too many messages waiting; try again later");
        break;
    default:
        ui_printf("Error. %.*s", (int)r->rest.len, r->rest.ptr);
        break;
    }
}

/* Prints the outcome of a reply from the request's table. */
static void on_reply(void *ctx, const struct link_reply *r, void *arg)
{
    struct client *c = ctx;
    struct req *q = arg;
    if (r->status != LINK_GONE) {
        int code = r->status == LINK_OK ? 0 : r->code;
        const struct outcome *o = q->outcomes;
        while (o->code >= 0 && o->code != code)
            o++;
        if (o->code < 0 && code != 0)
            say_error(r);
        else if (o->code >= 0 && o->say)
            ui_printf(o->say, q->user);
        if (code == 0 && q->user[0])
            ui_remember_name(q->user); /* a name the server took: offered by completion */
    }
    free(q);
    client_release(c);
}

/* ---- server commands ---- */

static const struct outcome message_outcomes[] = {
    {0, NULL},
    {PROTO_E_NO_SUCH_USER, SAY_INVALID_USER},
    {PROTO_E_SELF, "Error. Cannot message self"},
    {PROTO_E_BLOCKED_BY_PEER,
     "Your message could not be delivered as the recipient has blocked you"},
    {PROTO_E_BLOCKING_PEER, "Error. You have blocked %s"},
    {-1, NULL},
};

/* MSG's reply: as on_reply, and at a terminal a line when the message was kept for an
 * offline recipient (`OK <id> 0`). */
static void on_message(void *ctx, const struct link_reply *r, void *arg)
{
    struct req *q = arg;
    struct proto_slice rest = r->rest, id, online;
    if (r->status == LINK_OK && ui_is_tty() && proto_next_field(&rest, &id) &&
        proto_next_field(&rest, &online) && proto_slice_eq(online, "0"))
        ui_printf("%s is offline: the message will be delivered at their next login", q->user);
    on_reply(ctx, r, arg);
}

static void do_message(struct client *c, const struct cmd_call *k)
{
    if (strcmp(k->user, c->me) == 0) {
        ui_print("Error. Cannot message self");
        return;
    }
    send_req(c, 0, on_message, req_new(message_outcomes, k->user), "MSG %s %s", k->user, k->text);
}

static void on_bcast(void *ctx, const struct link_reply *r, void *arg)
{
    struct client *c = ctx;
    struct proto_slice rest = r->rest, f;
    uint64_t skipped = 0;
    if (r->status == LINK_OK && proto_next_field(&rest, &f) && proto_parse_u64(f, &skipped) &&
        skipped > 0)
        ui_print("Your message could not be delivered to some recipients");
    else if (r->status == LINK_ERR)
        say_error(r);
    free(arg);
    client_release(c);
}

static void do_broadcast(struct client *c, const struct cmd_call *k)
{
    send_req(c, 0, on_bcast, req_new(NULL, NULL), "BCAST %s", k->text);
}

/* Prints the names of a listing reply one per line (never one's own), or `empty` when there
 * are none; remembers them for completion. */
static void print_names(struct client *c, const struct link_reply *r, const char *empty)
{
    struct proto_slice rest = r->rest, f;
    char name[PROTO_MAX_NAME + 1];
    size_t n = 0;
    if (r->status == LINK_ERR) {
        say_error(r);
        return;
    }
    if (r->status != LINK_OK)
        return;
    while (proto_next_field(&rest, &f)) {
        if (!proto_is_name(f) || !proto_slice_copy(f, name, sizeof(name)) ||
            strcmp(name, c->me) == 0)
            continue;
        ui_print(name);
        ui_remember_name(name);
        n++;
    }
    if (n == 0)
        ui_print(empty);
}

/* A WHO or WHOSINCE reply. */
static void on_who(void *ctx, const struct link_reply *r, void *arg)
{
    struct client *c = ctx;
    print_names(c, r, "No other users");
    free(arg);
    client_release(c);
}

static void do_whoelse(struct client *c, const struct cmd_call *k)
{
    (void)k;
    send_req(c, 0, on_who, req_new(NULL, NULL), "WHO");
}

/* A BLOCKED reply. */
static void on_blocked(void *ctx, const struct link_reply *r, void *arg)
{
    struct client *c = ctx;
    print_names(c, r, "Nobody is blocked");
    free(arg);
    client_release(c);
}

static void do_blocked(struct client *c, const struct cmd_call *k)
{
    (void)k;
    send_req(c, 0, on_blocked, req_new(NULL, NULL), "BLOCKED");
}

static void do_whoelsesince(struct client *c, const struct cmd_call *k)
{
    send_req(c, 0, on_who, req_new(NULL, NULL), "WHOSINCE %llu", (unsigned long long)k->seconds);
}

static const struct outcome block_outcomes[] = {
    {0, "%s is blocked"},
    {PROTO_E_NO_SUCH_USER, SAY_INVALID_USER},
    {PROTO_E_SELF, "Error. Cannot block self"},
    {-1, NULL},
};

static void do_block(struct client *c, const struct cmd_call *k)
{
    if (strcmp(k->user, c->me) == 0) {
        ui_print("Error. Cannot block self");
        return;
    }
    send_req(c, 0, on_reply, req_new(block_outcomes, k->user), "BLOCK %s", k->user);
}

static const struct outcome unblock_outcomes[] = {
    {0, "%s is unblocked"},
    {PROTO_E_NO_SUCH_USER, SAY_INVALID_USER},
    {PROTO_E_SELF, "Error. Cannot unblock self"},
    {PROTO_E_NOT_BLOCKED, "Error. %s was not blocked"},
    {-1, NULL},
};

static void do_unblock(struct client *c, const struct cmd_call *k)
{
    if (strcmp(k->user, c->me) == 0) {
        ui_print("Error. Cannot unblock self");
        return;
    }
    send_req(c, 0, on_reply, req_new(unblock_outcomes, k->user), "UNBLOCK %s", k->user);
}

static void do_logout(struct client *c, const struct cmd_call *k)
{
    (void)k;
    client_quit(c);
}

/* ---- private messaging ---- */

static const struct outcome p2p_outcomes[] = {
    {PROTO_E_NO_SUCH_USER, SAY_INVALID_USER},
    {PROTO_E_SELF, "Error. Cannot start private messaging with self"},
    {PROTO_E_OFFLINE, "Error. %s is offline"},
    {PROTO_E_BLOCKED_BY_PEER, "Error. Cannot start private messaging with %s"},
    {PROTO_E_BLOCKING_PEER, "Error. Cannot start private messaging with %s"},
    {PROTO_E_P2P_EXISTS, "Error. Private messaging with %s already enabled"},
    {PROTO_E_P2P_DECLINED, "%s declines private messaging"},
    {PROTO_E_P2P_UNAVAILABLE, "Error. %s cannot receive private messages"},
    {-1, NULL},
};

/* `OK <host> <port> <secret>`: connect to the peer, which takes over the input hold. */
static void on_p2p(void *ctx, const struct link_reply *r, void *arg)
{
    struct client *c = ctx;
    struct req *q = arg;
    struct proto_slice rest = r->rest, host, port, secret, asked;
    char h[64], p[8], s[PROTO_SECRET_HEX + 1];
    uint64_t port_n;
    if (r->status != LINK_OK || c->state != CLIENT_ONLINE) {
        on_reply(ctx, r, arg);
        return;
    }
    if (proto_next_field(&rest, &host) && proto_slice_copy(host, h, sizeof(h)) &&
        proto_next_field(&rest, &port) && proto_parse_u64(port, &port_n) && port_n > 0 &&
        port_n < 65536 && proto_slice_copy(port, p, sizeof(p)) &&
        proto_next_field(&rest, &secret) && text_is_secret(secret.ptr, secret.len) &&
        proto_slice_copy(secret, s, sizeof(s))) {
        /* The reply does not say whether the peer was asked; an optional last field `0` says
         * it was not (then only `Start private messaging with` is shown). */
        bool asked_known = proto_next_field(&rest, &asked);
        p2p_connect(c->p2p, q->user, h, p, s, !(asked_known && proto_slice_eq(asked, "0")));
        explicit_bzero(s, sizeof(s));
        free(q);
        return;
    }
    ui_printf("Error. Could not connect to %s for private messaging", q->user);
    free(q);
    client_release(c);
}

static void do_startprivate(struct client *c, const struct cmd_call *k)
{
    if (strcmp(k->user, c->me) == 0) {
        ui_print("Error. Cannot start private messaging with self");
        return;
    }
    enum p2p_session s = p2p_session(c->p2p, k->user);
    if (s == P2P_OPEN || s == P2P_PENDING) {
        ui_printf("Error. Private messaging with %s already enabled", k->user);
        return;
    }
    p2p_forget(c->p2p, k->user);
    /* The server answers once the peer has (it may ask its user first). */
    send_req(c, P2P_ANSWER_SECS, on_p2p, req_new(p2p_outcomes, k->user), "P2P %s", k->user);
}

static void on_touch(void *ctx, const struct link_reply *r, void *arg)
{
    (void)r;
    (void)arg;
    client_release(ctx);
}

static void do_private(struct client *c, const struct cmd_call *k)
{
    switch (p2p_session(c->p2p, k->user)) {
    case P2P_OPEN:
        if (p2p_send(c->p2p, k->user, k->text) == 0 && client_online(c)) {
            client_hold(c);
            link_request(c->link, on_touch, NULL, "TOUCH");
        }
        break;
    case P2P_GONE:
        ui_printf("Error. %s is no longer online", k->user);
        p2p_forget(c->p2p, k->user);
        break;
    default:
        ui_printf("Error. Private messaging to %s not enabled", k->user);
        break;
    }
}

static void do_stopprivate(struct client *c, const struct cmd_call *k)
{
    switch (p2p_session(c->p2p, k->user)) {
    case P2P_OPEN:
    case P2P_GONE:
        p2p_stop(c->p2p, k->user);
        break;
    default:
        ui_printf("Error. No private messaging session with %s", k->user);
        break;
    }
}

/* ---- keys (local) ---- */

static void do_fingerprint(struct client *c, const struct cmd_call *k)
{
    const struct ident *id = p2p_identity(c->p2p);
    if (!id)
        return;
    if (k->user[0] == '\0' || strcmp(k->user, id->me) == 0) {
        char own[IDENT_OWN_LEN + 1];
        ident_own_number(id->me, id->pub, own);
        ui_printf("Your fingerprint: %s", own);
        return;
    }
    uint8_t pub[PCH_KEY_LEN];
    int rc = ident_peer_key(id, k->user, pub);
    if (rc <= 0) {
        ui_printf(rc < 0 ? "Error. The known_peers file cannot be read"
                         : "Error. No key known for %s (start private messaging first)",
                  k->user);
        return;
    }
    char number[IDENT_SAFETY_LEN + 1];
    ident_safety_number(id->me, id->pub, k->user, pub, number);
    ui_printf("Safety number with %s: %s", k->user, number);
}

static void do_forget(struct client *c, const struct cmd_call *k)
{
    const struct ident *id = p2p_identity(c->p2p);
    if (!id)
        return;
    switch (ident_forget(id, k->user)) {
    case 1:
        ui_printf("Forgot the key of %s", k->user);
        break;
    case 0:
        ui_printf("Error. No key known for %s", k->user);
        break;
    default:
        ui_print("Error. The known_peers file cannot be rewritten");
        break;
    }
}

/* ---- local ---- */

static void do_help(struct client *c, const struct cmd_call *k);

static const struct cmd commands[] = {
    {"message", ARGS_USER_TEXT, true, do_message, "message <user> <message>",
     "send a message (kept for <user> if offline)"},
    {"broadcast", ARGS_TEXT, true, do_broadcast, "broadcast <message>",
     "send a message to everyone online"},
    {"whoelse", ARGS_NONE, true, do_whoelse, "whoelse", "list the other users online"},
    {"whoelsesince", ARGS_SECONDS, true, do_whoelsesince, "whoelsesince <seconds>",
     "list the users online in the last <seconds>"},
    {"block", ARGS_USER, true, do_block, "block <user>", "refuse all messages to and from <user>"},
    {"unblock", ARGS_USER, true, do_unblock, "unblock <user>", "lift a block"},
    {"blocked", ARGS_NONE, true, do_blocked, "blocked", "list the users you have blocked"},
    {"logout", ARGS_NONE, false, do_logout, "logout", "log out and exit"},
    {"startprivate", ARGS_USER, true, do_startprivate, "startprivate <user>",
     "open a private (peer-to-peer) chat with <user>"},
    {"private", ARGS_USER_TEXT, false, do_private, "private <user> <message>",
     "send a private message"},
    {"stopprivate", ARGS_USER, false, do_stopprivate, "stopprivate <user>",
     "close the private chat with <user>"},
    {"fingerprint", ARGS_OPT_USER, false, do_fingerprint, "fingerprint [<user>]",
     "the safety number to compare with <user> (yours alone without)"},
    {"forget", ARGS_USER, false, do_forget, "forget <user>",
     "forget the identity key pinned for <user>"},
    {"help", ARGS_NONE, false, do_help, "help", "show this list"},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* Other names for commands, as irssi and weechat users type them. */
static const struct cmd_alias {
    const char *alias;
    const char *name;
} aliases[] = {
    {"/msg", "message"},
    {"/who", "whoelse"},
    {"/quit", "logout"},
    {"/help", "help"},
};

#define N_ALIASES (sizeof(aliases) / sizeof(aliases[0]))

static void do_help(struct client *c, const struct cmd_call *k)
{
    (void)c;
    (void)k;
    ui_print("Commands:");
    for (size_t i = 0; i < N_COMMANDS; i++)
        ui_printf("  %-26s %s", commands[i].usage, commands[i].help);
    for (size_t i = 0; i < N_ALIASES; i++)
        ui_printf("  %-26s the same as %s", aliases[i].alias, aliases[i].name);
}

/* ---- parsing ---- */

static bool word_is(const char *name, const char *word, size_t len)
{
    return strlen(name) == len && memcmp(name, word, len) == 0;
}

static const struct cmd *find_cmd(const char *word, size_t len)
{
    for (size_t i = 0; i < N_ALIASES; i++)
        if (word_is(aliases[i].alias, word, len))
            return find_cmd(aliases[i].name, strlen(aliases[i].name));
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (word_is(commands[i].name, word, len))
            return &commands[i];
    return NULL;
}

static const char *skip_spaces(const char *s)
{
    while (*s == ' ')
        s++;
    return s;
}

static size_t word_len(const char *s)
{
    size_t n = 0;
    while (s[n] && s[n] != ' ')
        n++;
    return n;
}

static int parse_fail(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int parse_fail(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return -1;
}

/* Takes the user-name argument at `*s`, leaving `*s` just after it. */
static int parse_user(const char **s, struct cmd_call *out, char *err, size_t cap)
{
    const char *w = skip_spaces(*s);
    size_t n = word_len(w);
    if (n == 0)
        return parse_fail(err, cap, "Error. Usage: %s", out->cmd->usage);
    struct proto_slice name = {w, n};
    if (!proto_is_name(name) || !proto_slice_copy(name, out->user, sizeof(out->user)))
        return parse_fail(err, cap, SAY_INVALID_USER);
    *s = w + n;
    return 0;
}

/* Takes the message text: everything after the one space that follows `s`. */
static int parse_text(const char *s, struct cmd_call *out, char *err, size_t cap)
{
    if (*s != ' ' || *skip_spaces(s) == '\0')
        return parse_fail(err, cap, "Error. Usage: %s", out->cmd->usage);
    out->text = s + 1;
    size_t len = strlen(out->text);
    if (len > CMD_MAX_TEXT)
        return parse_fail(err, cap, "Error. Message too long (at most %d bytes)", CMD_MAX_TEXT);
    if (!proto_text_ok(out->text, len))
        return parse_fail(err, cap, "Error. Message contains characters that cannot be sent");
    return 0;
}

/* Checks that nothing but spaces follows `s`. */
static int parse_end(const char *s, struct cmd_call *out, char *err, size_t cap)
{
    if (*skip_spaces(s) != '\0')
        return parse_fail(err, cap, "Error. Usage: %s", out->cmd->usage);
    return 0;
}

static int parse_seconds(const char *s, struct cmd_call *out, char *err, size_t cap)
{
    const char *w = skip_spaces(s);
    size_t n = word_len(w);
    if (n == 0)
        return parse_fail(err, cap, "Error. Usage: %s", out->cmd->usage);
    struct proto_slice num = {w, n};
    if (!proto_parse_u64(num, &out->seconds))
        return parse_fail(err, cap, "Error. Time must be a whole number of seconds");
    return parse_end(w + n, out, err, cap);
}

int cmd_parse(const char *line, struct cmd_call *out, char *err, size_t cap)
{
    memset(out, 0, sizeof(*out));
    const char *s = skip_spaces(line);
    if (*s == '\0')
        return 1;
    size_t n = word_len(s);
    out->cmd = find_cmd(s, n);
    if (!out->cmd)
        return parse_fail(err, cap, SAY_INVALID_COMMAND);
    s += n;
    switch (out->cmd->args) {
    case ARGS_NONE:
        return parse_end(s, out, err, cap);
    case ARGS_SECONDS:
        return parse_seconds(s, out, err, cap);
    case ARGS_TEXT:
        return parse_text(s, out, err, cap);
    case ARGS_USER:
        if (parse_user(&s, out, err, cap) < 0)
            return -1;
        return parse_end(s, out, err, cap);
    case ARGS_USER_TEXT:
        if (parse_user(&s, out, err, cap) < 0)
            return -1;
        return parse_text(s, out, err, cap);
    case ARGS_OPT_USER:
        if (*skip_spaces(s) == '\0')
            return 0;
        if (parse_user(&s, out, err, cap) < 0)
            return -1;
        return parse_end(s, out, err, cap);
    }
    return parse_fail(err, cap, SAY_INVALID_COMMAND);
}

const char *cmd_name(const struct cmd *cmd)
{
    return cmd->name;
}

void cmd_execute(struct client *c, const char *line)
{
    struct cmd_call k;
    char err[256];
    int rc = cmd_parse(line, &k, err, sizeof(err));
    if (rc > 0)
        return;
    if (rc < 0) {
        ui_print(err);
        if (strcmp(err, SAY_INVALID_COMMAND) == 0 && ui_is_tty())
            ui_print("Type help for the list of commands");
        return;
    }
    if (k.cmd->server && !client_online(c)) {
        ui_print(SAY_LOGGED_OUT);
        return;
    }
    k.cmd->fn(c, &k);
}

const char *const *cmd_names(void)
{
    static const char *names[N_COMMANDS + N_ALIASES + 1];
    if (!names[0]) {
        for (size_t i = 0; i < N_COMMANDS; i++)
            names[i] = commands[i].name;
        for (size_t i = 0; i < N_ALIASES; i++)
            names[N_COMMANDS + i] = aliases[i].alias;
    }
    return names;
}

bool cmd_takes_user(const char *word, size_t len)
{
    const struct cmd *cmd = find_cmd(word, len);
    return cmd &&
           (cmd->args == ARGS_USER || cmd->args == ARGS_OPT_USER || cmd->args == ARGS_USER_TEXT);
}
