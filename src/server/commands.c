/* Request parsing and the command table: every request is checked here (state, field count,
 * field shape) before its handler runs. Small handlers live here too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/log.h"
#include "server/presence.h"
#include "server/server.h"
#include "server/store.h"

/* Which states a command is allowed in. */
#define IN_HELLO (1u << SESSION_HELLO)
#define IN_LOGIN ((1u << SESSION_USERNAME) | (1u << SESSION_PASSWORD))
#define IN_PASSWORD (1u << SESSION_PASSWORD)
#define IN_ONLINE (1u << SESSION_ONLINE)

/* How a request's fields after the verb look. */
enum shape {
    SHAPE_NONE,      /* no field */
    SHAPE_ONE,       /* exactly one field */
    SHAPE_ONE_TEXT,  /* one field, then text (not only spaces) */
    SHAPE_TEXT,      /* text only (not only spaces) */
    SHAPE_ONE_MAYBE, /* one field, then optional text */
};

/* What the first field after the verb must be. */
enum arg_kind {
    ARG_ANY,    /* checked by the handler */
    ARG_NAME,   /* a user name */
    ARG_NUMBER, /* a decimal number */
};

/* Which budget a command draws on. */
enum budget {
    BUDGET_REQUEST, /* one token of --req-rate (listings pay more, see list_send) */
    BUDGET_OWN,     /* MSG and BCAST: --msg-rate, taken by their handlers */
    BUDGET_NONE,    /* answers and endings (P2PACCEPT, P2PDECLINE, P2PEND, LOGOUT): refusing
                       them would leave state behind; their number is bounded by what they end */
};

/* One row of the command table. */
struct command {
    const char *verb;
    unsigned states;
    enum shape shape;
    enum arg_kind arg;
    bool activity; /* resets the idle timer */
    enum budget budget;
    void (*run)(struct session *s, const struct request *r);
};

/* A reply listing names costs one more token of the request budget per this many names: a
 * listing of every user is as much work as that many small requests. */
#define LIST_NAMES_PER_TOKEN 100

/* Names of departed accounts WHOSINCE forgets from the login history per request. */
#define WHOSINCE_FORGET_MAX 1024

static void cmd_who(struct session *s, const struct request *r);
static void cmd_whosince(struct session *s, const struct request *r);
static void cmd_block(struct session *s, const struct request *r);
static void cmd_unblock(struct session *s, const struct request *r);
static void cmd_blocked(struct session *s, const struct request *r);
static void cmd_touch(struct session *s, const struct request *r);
static void cmd_logout(struct session *s, const struct request *r);

static const struct command commands[] = {
    {"HELLO", IN_HELLO, SHAPE_ONE_MAYBE, ARG_ANY, false, BUDGET_REQUEST, login_hello},
    {"USER", IN_LOGIN, SHAPE_ONE, ARG_NAME, false, BUDGET_REQUEST, login_user},
    {"PASS", IN_PASSWORD, SHAPE_ONE, ARG_ANY, false, BUDGET_REQUEST, login_pass},
    {"MSG", IN_ONLINE, SHAPE_ONE_TEXT, ARG_NAME, true, BUDGET_OWN, msg_direct},
    {"BCAST", IN_ONLINE, SHAPE_TEXT, ARG_ANY, true, BUDGET_OWN, msg_broadcast},
    {"WHO", IN_ONLINE, SHAPE_NONE, ARG_ANY, true, BUDGET_REQUEST, cmd_who},
    {"WHOSINCE", IN_ONLINE, SHAPE_ONE, ARG_NUMBER, true, BUDGET_REQUEST, cmd_whosince},
    {"BLOCK", IN_ONLINE, SHAPE_ONE, ARG_NAME, true, BUDGET_REQUEST, cmd_block},
    {"UNBLOCK", IN_ONLINE, SHAPE_ONE, ARG_NAME, true, BUDGET_REQUEST, cmd_unblock},
    {"BLOCKED", IN_ONLINE, SHAPE_NONE, ARG_ANY, true, BUDGET_REQUEST, cmd_blocked},
    {"LISTEN", IN_ONLINE, SHAPE_ONE, ARG_NUMBER, true, BUDGET_REQUEST, p2p_listen},
    {"P2P", IN_ONLINE, SHAPE_ONE, ARG_NAME, true, BUDGET_REQUEST, p2p_start},
    {"P2PACCEPT", IN_ONLINE, SHAPE_ONE, ARG_NAME, false, BUDGET_NONE, p2p_accept},
    {"P2PDECLINE", IN_ONLINE, SHAPE_ONE, ARG_NAME, false, BUDGET_NONE, p2p_decline},
    {"P2PEND", IN_ONLINE, SHAPE_ONE, ARG_NAME, true, BUDGET_NONE, p2p_end},
    {"TOUCH", IN_ONLINE, SHAPE_NONE, ARG_ANY, true, BUDGET_REQUEST, cmd_touch},
    {"LOGOUT", IN_ONLINE, SHAPE_NONE, ARG_ANY, false, BUDGET_NONE, cmd_logout},
};

static const struct command *find_command(struct proto_slice verb)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (proto_slice_eq(verb, commands[i].verb))
            return &commands[i];
    return NULL;
}

/* True when a message text has something to show: not empty, not only spaces. */
static bool text_visible(struct proto_slice text)
{
    for (size_t i = 0; i < text.len; i++)
        if (text.ptr[i] != ' ')
            return true;
    return false;
}

/* Splits the fields after the verb by the command's shape. Returns false when they do not fit. */
static bool split_fields(enum shape shape, struct proto_slice rest, struct request *r)
{
    switch (shape) {
    case SHAPE_NONE:
        return rest.len == 0;
    case SHAPE_ONE:
        r->nargs = 1;
        return proto_next_field(&rest, &r->arg[0]) && rest.len == 0;
    case SHAPE_ONE_TEXT:
        r->nargs = 1;
        if (!proto_next_field(&rest, &r->arg[0]))
            return false;
        r->text = rest;
        return text_visible(rest);
    case SHAPE_ONE_MAYBE:
        r->nargs = 1;
        if (!proto_next_field(&rest, &r->arg[0]))
            return false;
        r->text = rest;
        return true;
    case SHAPE_TEXT:
        r->text = rest;
        return text_visible(rest);
    }
    return false;
}

static bool arg_ok(enum arg_kind kind, struct proto_slice arg)
{
    uint64_t n;
    switch (kind) {
    case ARG_NAME:
        return proto_is_name(arg);
    case ARG_NUMBER:
        return proto_parse_u64(arg, &n);
    case ARG_ANY:
        return true;
    }
    return false;
}

/* Counts a malformed frame; too many in a row close the connection. */
static void count_error(struct session *s)
{
    if (++s->errors >= s->srv->cfg.max_errors) {
        log_info("closing connection from %s: too many malformed frames", net_peer_addr(s->conn));
        session_bye(s, "flood");
    }
}

static void reject(struct session *s, const char *tag, int code)
{
    session_err(s, tag, code);
    if (code == PROTO_E_BAD_REQUEST || code == PROTO_E_TOO_LONG || code == PROTO_E_UNKNOWN_REQUEST)
        count_error(s);
}

/* Copies the frame's tag when its first field is one, else "-". */
static void read_tag(const char *line, size_t len, char *tag)
{
    struct proto_slice rest = {line, len}, first;
    if (!proto_next_field(&rest, &first) || !proto_is_tag(first) ||
        !proto_slice_copy(first, tag, PROTO_MAX_TAG + 1))
        strcpy(tag, "-");
}

void cmd_too_long(struct session *s, const char *head, size_t len)
{
    char tag[PROTO_MAX_TAG + 1];
    /* The head is cut: a tag is only trusted when a space follows it inside the head. */
    if (memchr(head, ' ', len))
        read_tag(head, len, tag);
    else
        strcpy(tag, "-");
    reject(s, tag, PROTO_E_TOO_LONG);
}

static void handle_notice(struct session *s, struct proto_slice rest)
{
    struct proto_slice verb, id;
    if (proto_next_field(&rest, &verb) && proto_slice_eq(verb, "ACK") &&
        proto_next_field(&rest, &id) && rest.len == 0)
        msg_ack(s, id);
    else
        reject(s, "-", PROTO_E_BAD_REQUEST);
}

/* The request budget a session draws on: its user's once logged in (so that logging in again
 * does not refill it), its own before. */
static struct ratelimit *budget_of(struct session *s)
{
    return s->state == SESSION_ONLINE ? &s->user->request_budget : &s->request_budget;
}

/* Takes one token of the request budget; answers 429 and returns false when it is spent. */
static bool within_budget(struct session *s, const char *tag)
{
    const struct config *cfg = &s->srv->cfg;
    if (ratelimit_take(budget_of(s), server_now_ms(), cfg->req_rate, cfg->req_burst))
        return true;
    session_err(s, tag, PROTO_E_RATE_LIMITED);
    return false;
}

bool cmd_pipelines(const char *line, size_t len)
{
    struct proto_slice rest = {line, len}, tag, verb;
    return proto_next_field(&rest, &tag) && proto_next_field(&rest, &verb) &&
           (proto_slice_eq(verb, "MSG") || proto_slice_eq(verb, "BCAST"));
}

void cmd_dispatch(struct session *s, const char *line, size_t len)
{
    char tag[PROTO_MAX_TAG + 1];
    read_tag(line, len, tag);
    if (proto_validate(line, len) != PROTO_OK) {
        reject(s, tag, PROTO_E_BAD_REQUEST);
        return;
    }
    struct request r = {0};
    struct proto_slice rest = {line, len}, first = {NULL, 0};
    if (!proto_next_field(&rest, &first)) {
        reject(s, tag, PROTO_E_BAD_REQUEST);
        return;
    }
    if (proto_slice_eq(first, "*")) {
        handle_notice(s, rest);
        return;
    }
    if (strcmp(tag, "-") == 0 || !proto_next_field(&rest, &r.verb)) {
        reject(s, tag, PROTO_E_BAD_REQUEST);
        return;
    }
    const struct command *c = find_command(r.verb);
    if (!c) {
        reject(s, tag, PROTO_E_UNKNOWN_REQUEST);
        return;
    }
    if (!(c->states & (1u << s->state))) {
        session_err(s, tag, PROTO_E_NOT_NOW);
        return;
    }
    bool trailing_space = line[len - 1] == ' ';
    bool has_text = c->shape == SHAPE_TEXT || c->shape == SHAPE_ONE_TEXT;
    if ((trailing_space && !has_text) || !split_fields(c->shape, rest, &r) ||
        !arg_ok(c->arg, r.arg[0])) {
        reject(s, tag, PROTO_E_BAD_REQUEST);
        return;
    }
    memcpy(r.tag, tag, sizeof(r.tag));
    s->errors = 0;
    if (c->activity)
        session_touch(s);
    if (c->budget == BUDGET_REQUEST && !within_budget(s, tag))
        return;
    c->run(s, &r);
}

/* A reply listing names, built in a buffer that grows as needed (a list of every user online
 * can be far longer than one ordinary frame). */
struct name_list {
    struct session *s;
    char *buf;
    size_t len, cap;
    size_t names;
    bool failed;
};

static void list_append(struct name_list *l, const char *text, size_t n)
{
    if (l->failed)
        return;
    if (l->len + n + 1 > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        while (cap < l->len + n + 1)
            cap *= 2;
        char *p = realloc(l->buf, cap);
        if (!p) {
            l->failed = true;
            return;
        }
        l->buf = p;
        l->cap = cap;
    }
    memcpy(l->buf + l->len, text, n);
    l->len += n;
}

static void list_start(struct name_list *l, struct session *s, const char *tag)
{
    *l = (struct name_list){.s = s};
    list_append(l, tag, strlen(tag));
    list_append(l, " OK", 3);
    directory_mark_reset(&s->srv->dir);
    directory_mark(&s->srv->dir, s->user);
}

static void list_add(struct name_list *l, struct user *u)
{
    if (directory_mark(&l->s->srv->dir, u))
        return;
    list_append(l, " ", 1);
    list_append(l, u->name, strlen(u->name));
    l->names++;
}

/* Sends the list (or, when memory ran out, an error), charges its length to the request
 * budget and frees it. */
static void list_send(struct name_list *l, const char *tag)
{
    const struct config *cfg = &l->s->srv->cfg;
    list_append(l, "\n", 1);
    if (l->failed)
        session_err(l->s, tag, PROTO_E_STORE_UNAVAILABLE);
    else
        session_send(l->s, l->buf, l->len);
    free(l->buf);
    ratelimit_charge(budget_of(l->s), server_now_ms(), cfg->req_rate, cfg->req_burst,
                     (uint32_t)(l->names / LIST_NAMES_PER_TOKEN));
}

static void list_add_user(void *ctx, struct user *u)
{
    list_add(ctx, u);
}

/* The list of who is online was read: it goes out (or the error). */
static void who_listed(void *ctx, int rc)
{
    struct name_list *l = ctx;
    struct session *s = l->s;
    if (rc < 0)
        l->failed = true;
    if (session_live(s))
        list_send(l, s->tag);
    else
        free(l->buf);
    free(l);
    session_resume(s);
}

static void cmd_who(struct session *s, const struct request *r)
{
    const char *tag = r->tag;
    struct name_list *l = malloc(sizeof(*l));
    if (!l) {
        session_err(s, tag, PROTO_E_STORE_UNAVAILABLE);
        return;
    }
    list_start(l, s, tag);
    memcpy(s->tag, tag, sizeof(s->tag));
    session_wait(s);
    presence_list(s->srv, list_add_user, who_listed, l);
}

/* `BLOCKED`: the users this one blocks. */
static void cmd_blocked(struct session *s, const struct request *r)
{
    const char *tag = r->tag;
    struct name_list l;
    list_start(&l, s, tag);
    for (uint32_t i = 0; i < s->user->n_blocked; i++) {
        struct user *u = directory_by_id(&s->srv->dir, s->user->blocked[i]);
        if (u)
            list_add(&l, u);
    }
    list_send(&l, tag);
}

/* A WHOSINCE listing and the departed accounts it met in the history. */
struct seen_list {
    struct name_list list;
    char gone[WHOSINCE_FORGET_MAX][PROTO_MAX_NAME + 1];
    size_t n_gone;
    int64_t since;
};

static int add_seen(void *ctx, const char *name)
{
    struct seen_list *seen = ctx;
    struct user *u = directory_find(&seen->list.s->srv->dir, name, strlen(name));
    if (u && u->has_account)
        list_add(&seen->list, u);
    else if (seen->n_gone < WHOSINCE_FORGET_MAX && strlen(name) <= PROTO_MAX_NAME)
        strcpy(seen->gone[seen->n_gone++], name);
    return 0;
}

/* Forgets the history of accounts that no longer exist: no window can list them again. */
static void forget_gone(struct server *srv, const struct seen_list *seen)
{
    for (size_t i = 0; i < seen->n_gone; i++)
        if (presence_forget(srv, seen->gone[i]) < 0)
            return;
}

/* The history was read: the listing goes out (or the error), the departed are forgotten. */
static void whosince_read(void *ctx, int rc)
{
    struct seen_list *seen = ctx;
    struct session *s = seen->list.s;
    if (rc < 0) {
        log_error("store: cannot read login history: %s", store_error(s->srv->store));
        seen->list.failed = true;
    }
    if (session_live(s)) {
        list_send(&seen->list, s->tag);
        forget_gone(s->srv, seen);
    } else {
        free(seen->list.buf);
    }
    free(seen);
    session_resume(s);
}

/* Who is online was read: then the history. */
static void whosince_online_read(void *ctx, int rc)
{
    struct seen_list *seen = ctx;
    if (rc < 0) {
        whosince_read(seen, -1);
        return;
    }
    presence_seen_since(seen->list.s->srv, seen->since, add_seen, whosince_read, seen);
}

static void cmd_whosince(struct session *s, const struct request *r)
{
    const char *tag = r->tag;
    uint64_t secs;
    if (!proto_parse_u64(r->arg[0], &secs)) {
        session_err(s, tag, PROTO_E_BAD_REQUEST);
        return;
    }
    int64_t now = (int64_t)time(NULL);
    int64_t since = secs > (uint64_t)now ? 0 : now - (int64_t)secs;
    struct seen_list *seen = malloc(sizeof(*seen));
    if (!seen) {
        session_err(s, tag, PROTO_E_STORE_UNAVAILABLE);
        return;
    }
    seen->n_gone = 0;
    seen->since = since;
    list_start(&seen->list, s, tag);
    memcpy(s->tag, tag, sizeof(s->tag));
    session_wait(s);
    presence_list(s->srv, list_add_user, whosince_online_read, seen);
}

/* Finds the user a BLOCK or UNBLOCK names; answers and returns NULL when it is not valid. */
static struct user *block_target(struct session *s, const struct request *r, const char *tag)
{
    struct user *u = directory_find(&s->srv->dir, r->arg[0].ptr, r->arg[0].len);
    int code = !u || !u->has_account ? PROTO_E_NO_SUCH_USER
               : u == s->user        ? PROTO_E_SELF
                                     : PROTO_OK;
    if (code == PROTO_OK)
        return u;
    session_err(s, tag, code);
    return NULL;
}

/* Answers a BLOCK or UNBLOCK the store took (rc >= 0) or not, and lets the session go on. */
static void answer_stored(struct session *s, int rc)
{
    if (session_live(s)) {
        if (rc < 0)
            session_err(s, s->tag, PROTO_E_STORE_UNAVAILABLE);
        else
            session_ok(s, s->tag, NULL);
    }
    session_resume(s);
}

/* The store recorded the block (rc 0) or not: the directory follows it, then the answer. */
static void block_stored(void *arg, int rc)
{
    struct session *s = arg;
    if (rc < 0)
        log_error("store: cannot record a block: %s", store_error(s->srv->store));
    else if (directory_block(s->user, s->peer) < 0)
        rc = -1;
    answer_stored(s, rc);
}

/* Holds the session's requests until the store answers the one naming `u`. */
static void wait_for_store(struct session *s, const char *tag, struct user *u)
{
    memcpy(s->tag, tag, sizeof(s->tag));
    s->peer = u;
    session_wait(s);
}

static void cmd_block(struct session *s, const struct request *r)
{
    const char *tag = r->tag;
    struct user *u = block_target(s, r, tag);
    if (!u)
        return;
    wait_for_store(s, tag, u);
    store_block_add(s->srv->store, s->user->name, u->name, block_stored, s);
}

/* The store lifted the block (rc 0 or 1) or not. */
static void unblock_stored(void *arg, int rc)
{
    struct session *s = arg;
    if (rc < 0)
        log_error("store: cannot lift a block: %s", store_error(s->srv->store));
    else
        directory_unblock(s->user, s->peer);
    answer_stored(s, rc);
}

static void cmd_unblock(struct session *s, const struct request *r)
{
    const char *tag = r->tag;
    struct user *u = block_target(s, r, tag);
    if (!u)
        return;
    if (!directory_blocks(s->user, u)) {
        session_err(s, tag, PROTO_E_NOT_BLOCKED);
        return;
    }
    wait_for_store(s, tag, u);
    store_block_remove(s->srv->store, s->user->name, u->name, unblock_stored, s);
}

static void cmd_touch(struct session *s, const struct request *r)
{
    const char *tag = r->tag;
    session_ok(s, tag, NULL);
}

/* On a cluster the OK goes out with the close, once the commit that records the logout is
 * answered, so that another node may log the user in at once (when that commit failed, the OK
 * still comes: the session did end, and this node re-validates its claims with Redis). */
static void cmd_logout(struct session *s, const struct request *r)
{
    const char *tag = r->tag;
    fanout_skip(s);
    if (s->srv->cluster) {
        memcpy(s->tag, tag, sizeof(s->tag));
        s->logout_ok = true;
    } else {
        session_ok(s, tag, NULL);
    }
    session_close(s);
}
