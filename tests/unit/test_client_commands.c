/* Unit tests of src/client/commands.c: parsing command lines, checking arguments before
 * anything is sent, and turning the server's replies into the spec's exact lines. The module
 * is included whole and the modules it talks to are replaced by fakes that record what it
 * prints and sends, so this test links only the common objects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/commands.c"
#include "client/text.c"

/* ---- fakes ---- */

#define MAX_SEEN 16

static char printed[MAX_SEEN][2048]; /* lines printed, in order */
static int n_printed;
static char sent[MAX_SEEN][4096]; /* requests sent, without tag */
static int n_sent;
static link_reply_fn last_fn; /* the last request's reply callback and argument */
static void *last_arg;
static unsigned last_grace; /* and the seconds its reply may take beyond the reply timeout */
static int holds;
static bool online = true;
static bool quit_called;
static enum p2p_session session = P2P_NONE;
static char p2p_sent[256];
static char connected[256];

void ui_print(const char *line)
{
    if (n_printed < MAX_SEEN)
        snprintf(printed[n_printed++], sizeof(printed[0]), "%s", line);
}

void ui_printf(const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    ui_print(buf);
}

void ui_remember_name(const char *name)
{
    (void)name;
}

static bool tty; /* what ui_is_tty() says */

bool ui_is_tty(void)
{
    return tty;
}

void client_hold(struct client *c)
{
    (void)c;
    holds++;
}

void client_release(struct client *c)
{
    (void)c;
    holds--;
}

bool client_online(const struct client *c)
{
    (void)c;
    return online;
}

void client_quit(struct client *c)
{
    (void)c;
    quit_called = true;
}

static void record(unsigned grace, link_reply_fn fn, void *arg, const char *fmt, va_list ap)
{
    if (n_sent < MAX_SEEN)
        vsnprintf(sent[n_sent++], sizeof(sent[0]), fmt, ap);
    last_fn = fn;
    last_arg = arg;
    last_grace = grace;
}

void link_request(struct link *l, link_reply_fn fn, void *arg, const char *fmt, ...)
{
    (void)l;
    va_list ap;
    va_start(ap, fmt);
    record(0, fn, arg, fmt, ap);
    va_end(ap);
}

void link_request_patient(struct link *l, unsigned grace, link_reply_fn fn, void *arg,
                          const char *fmt, ...)
{
    (void)l;
    va_list ap;
    va_start(ap, fmt);
    record(grace, fn, arg, fmt, ap);
    va_end(ap);
}

enum p2p_session p2p_session(const struct p2p *p, const char *name)
{
    (void)p;
    (void)name;
    return session;
}

int p2p_send(struct p2p *p, const char *name, const char *text)
{
    (void)p;
    snprintf(p2p_sent, sizeof(p2p_sent), "%s:%s", name, text);
    return 0;
}

void p2p_stop(struct p2p *p, const char *name)
{
    (void)p;
    snprintf(p2p_sent, sizeof(p2p_sent), "stop:%s", name);
}

static struct ident fake_id; /* loaded under a temporary directory by key_commands */

const struct ident *p2p_identity(struct p2p *p)
{
    (void)p;
    return fake_id.me[0] ? &fake_id : NULL;
}

void p2p_forget(struct p2p *p, const char *name)
{
    (void)p;
    (void)name;
}

void p2p_connect(struct p2p *p, const char *name, const char *host, const char *port,
                 const char *secret, bool say_accepted)
{
    (void)p;
    snprintf(connected, sizeof(connected), "%s %s %s %s %d", name, host, port, secret,
             say_accepted);
    holds--; /* the P2P module releases the hold when the session opens or fails */
}

/* ---- helpers ---- */

static struct client me;

static int setup(void **state)
{
    (void)state;
    n_printed = n_sent = holds = 0;
    last_fn = NULL;
    last_arg = NULL;
    online = true;
    tty = false;
    quit_called = false;
    session = P2P_NONE;
    p2p_sent[0] = connected[0] = '\0';
    memset(&me, 0, sizeof(me));
    snprintf(me.me, sizeof(me.me), "hans");
    me.state = CLIENT_ONLINE;
    return 0;
}

/* Runs `line`; expects exactly one request `frame` (NULL: none) and no output yet. */
static void run(const char *line, const char *frame)
{
    cmd_execute(&me, line);
    if (!frame) {
        assert_int_equal(n_sent, 0);
        return;
    }
    assert_int_equal(n_sent, 1);
    assert_string_equal(sent[0], frame);
    assert_int_equal(n_printed, 0);
}

/* Delivers a reply to the last request: `rest` after OK, or code and text for an error. */
static void reply(enum link_status status, int code, const char *rest)
{
    struct link_reply r = {status, code, {rest, strlen(rest)}};
    assert_non_null(last_fn);
    last_fn(&me, &r, last_arg);
    assert_int_equal(holds, 0);
}

/* Runs `line`, answers `status code rest`, and expects `want` as the only line (NULL: none). */
static void exchange(const char *line, const char *frame, enum link_status status, int code,
                     const char *rest, const char *want)
{
    setup(NULL);
    run(line, frame);
    assert_int_equal(holds, 1);
    reply(status, code, rest);
    if (!want) {
        assert_int_equal(n_printed, 0);
        return;
    }
    assert_int_equal(n_printed, 1);
    assert_string_equal(printed[0], want);
}

/* Runs `line` and expects it to be refused locally with `want`. */
static void refused(const char *line, const char *want)
{
    setup(NULL);
    cmd_execute(&me, line);
    assert_int_equal(n_sent, 0);
    assert_int_equal(holds, 0);
    assert_int_equal(n_printed, 1);
    assert_string_equal(printed[0], want);
}

/* ---- keys ---- */

/* `fingerprint` alone, with a pinned user, with an unknown one; `forget` once and twice. */
static void key_commands(void **state)
{
    (void)state;
    char base[64], err[256], cmd[128];
    snprintf(base, sizeof(base), "/tmp/parley-cmd-test-XXXXXX");
    assert_non_null(mkdtemp(base));
    assert_int_equal(ident_load(&fake_id, base, "hans", err, sizeof(err)), 0);
    uint8_t yoda[PCH_KEY_LEN];
    randombytes_buf(yoda, sizeof(yoda));
    assert_int_equal(ident_check_peer(&fake_id, "yoda", yoda), IDENT_PIN_NEW);
    refused("fingerprint luke", "Error. No key known for luke (start private messaging first)");
    refused("fingerprint a b", "Error. Usage: fingerprint [<user>]");
    refused("forget", "Error. Usage: forget <user>");
    setup(NULL);
    cmd_execute(&me, "fingerprint");
    assert_int_equal(n_printed, 1);
    assert_int_equal(strncmp(printed[0], "Your fingerprint: ", 18), 0);
    assert_int_equal(strlen(printed[0]), 18 + IDENT_OWN_LEN);
    setup(NULL);
    cmd_execute(&me, "fingerprint yoda");
    char want[128], number[IDENT_SAFETY_LEN + 1];
    ident_safety_number("yoda", yoda, "hans", fake_id.pub, number);
    snprintf(want, sizeof(want), "Safety number with yoda: %s", number);
    assert_int_equal(n_printed, 1);
    assert_string_equal(printed[0], want);
    refused("forget yoda", "Forgot the key of yoda");
    refused("forget yoda", "Error. No key known for yoda");
    refused("fingerprint yoda", "Error. No key known for yoda (start private messaging first)");
    memset(&fake_id, 0, sizeof(fake_id));
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    assert_int_equal(system(cmd), 0);
}

/* ---- parsing ---- */

static void parse_shapes(void **state)
{
    (void)state;
    struct cmd_call k;
    char err[256];
    assert_int_equal(cmd_parse("", &k, err, sizeof(err)), 1);
    assert_int_equal(cmd_parse("   ", &k, err, sizeof(err)), 1);
    assert_int_equal(cmd_parse("message yoda  two  spaces ", &k, err, sizeof(err)), 0);
    assert_string_equal(cmd_name(k.cmd), "message");
    assert_string_equal(k.user, "yoda");
    assert_string_equal(k.text, " two  spaces ");
    assert_int_equal(cmd_parse("  whoelse  ", &k, err, sizeof(err)), 0);
    assert_string_equal(cmd_name(k.cmd), "whoelse");
    assert_int_equal(cmd_parse("whoelsesince 999999999999999999", &k, err, sizeof(err)), 0);
    assert_true(k.seconds == 999999999999999999ULL);
    assert_int_equal(cmd_parse("broadcast a", &k, err, sizeof(err)), 0);
    assert_string_equal(k.text, "a");
}

static void parse_errors(void **state)
{
    (void)state;
    refused("whoelse2", "Error. Invalid command");
    refused("WHOELSE", "Error. Invalid command");
    refused("message", "Error. Usage: message <user> <message>");
    refused("message yoda", "Error. Usage: message <user> <message>");
    refused("message yoda ", "Error. Usage: message <user> <message>");
    refused("message yoda    ", "Error. Usage: message <user> <message>");
    refused("broadcast", "Error. Usage: broadcast <message>");
    refused("whoelse x", "Error. Usage: whoelse");
    refused("logout now", "Error. Usage: logout");
    refused("block", "Error. Usage: block <user>");
    refused("block a b", "Error. Usage: block <user>");
    refused("whoelsesince", "Error. Usage: whoelsesince <seconds>");
    refused("whoelsesince 1h", "Error. Time must be a whole number of seconds");
    refused("whoelsesince 1234567890123456789", "Error. Time must be a whole number of seconds");
    refused("message abcdefghijabcdefghijabcdefghijabc hi", "Error. Invalid user");
    refused("message yoda bell\a", "Error. Message contains characters that cannot be sent");
    refused("message yoda \xff", "Error. Message contains characters that cannot be sent");
    char big[1100];
    snprintf(big, sizeof(big), "broadcast %01001d", 0);
    refused(big, "Error. Message too long (at most 1000 bytes)");
    snprintf(big, sizeof(big), "broadcast %01000d", 0);
    setup(NULL);
    cmd_execute(&me, big);
    assert_int_equal(n_sent, 1);
    free(last_arg); /* no reply comes in this test: the request's context is ours to free */
    last_arg = NULL;
}

/* ---- replies ---- */

static void message_outcomes_exact(void **state)
{
    (void)state;
    exchange("message yoda hi there", "MSG yoda hi there", LINK_OK, 0, "17", NULL);
    exchange("message yoda hi", "MSG yoda hi", LINK_ERR, 404, "no such user",
             "Error. Invalid user");
    exchange("message yoda hi", "MSG yoda hi", LINK_ERR, 422, "self", "Error. Cannot message self");
    exchange("message yoda hi", "MSG yoda hi", LINK_ERR, 451, "blocked",
             "Your message could not be delivered as the recipient has blocked you");
    exchange("message yoda hi", "MSG yoda hi", LINK_ERR, 452, "blocking",
             "Error. You have blocked yoda");
    exchange("message yoda hi", "MSG yoda hi", LINK_ERR, 413, "too long",
             "Error. Message too long (at most 1000 bytes)");
    exchange("message yoda hi", "MSG yoda hi", LINK_ERR, 429, "slow down",
             "Error. You are sending too many messages; please slow down");
    exchange("message yoda hi", "MSG yoda hi", LINK_ERR, 599, "odd thing", "Error. odd thing");
    exchange("message yoda hi", "MSG yoda hi", LINK_GONE, 0, "", NULL);
    refused("message hans hi", "Error. Cannot message self");
}

static void broadcast_outcomes_exact(void **state)
{
    (void)state;
    exchange("broadcast hello all", "BCAST hello all", LINK_OK, 0, "0", NULL);
    exchange("broadcast hello all", "BCAST hello all", LINK_OK, 0, "2",
             "Your message could not be delivered to some recipients");
}

static void who_lists(void **state)
{
    (void)state;
    exchange("whoelse", "WHO", LINK_OK, 0, "", "No other users");
    exchange("whoelsesince 60", "WHOSINCE 60", LINK_OK, 0, "", "No other users");
    setup(NULL);
    run("whoelsesince 60", "WHOSINCE 60");
    reply(LINK_OK, 0, "yoda vader");
    assert_int_equal(n_printed, 2);
    assert_string_equal(printed[0], "yoda");
    assert_string_equal(printed[1], "vader");
}

static void block_outcomes_exact(void **state)
{
    (void)state;
    exchange("block yoda", "BLOCK yoda", LINK_OK, 0, "", "yoda is blocked");
    exchange("block nobody", "BLOCK nobody", LINK_ERR, 404, "x", "Error. Invalid user");
    exchange("unblock yoda", "UNBLOCK yoda", LINK_OK, 0, "", "yoda is unblocked");
    exchange("unblock yoda", "UNBLOCK yoda", LINK_ERR, 453, "x", "Error. yoda was not blocked");
    exchange("unblock nobody", "UNBLOCK nobody", LINK_ERR, 404, "x", "Error. Invalid user");
    refused("block hans", "Error. Cannot block self");
    refused("unblock hans", "Error. Cannot unblock self");
}

static void startprivate_outcomes_exact(void **state)
{
    (void)state;
    exchange("startprivate yoda", "P2P yoda", LINK_ERR, 404, "x", "Error. Invalid user");
    exchange("startprivate yoda", "P2P yoda", LINK_ERR, 410, "x", "Error. yoda is offline");
    exchange("startprivate yoda", "P2P yoda", LINK_ERR, 451, "x",
             "Error. Cannot start private messaging with yoda");
    exchange("startprivate yoda", "P2P yoda", LINK_ERR, 452, "x",
             "Error. Cannot start private messaging with yoda");
    exchange("startprivate yoda", "P2P yoda", LINK_ERR, 454, "x",
             "Error. Private messaging with yoda already enabled");
    exchange("startprivate yoda", "P2P yoda", LINK_ERR, 455, "x",
             "yoda declines private messaging");
    refused("startprivate hans", "Error. Cannot start private messaging with self");
    exchange("startprivate yoda", "P2P yoda", LINK_OK, 0, "127.0.0.1 4000 x",
             "Error. Could not connect to yoda for private messaging");

    const char *secret = "0123456789abcdef0123456789abcdef";
    char ok[128];
    snprintf(ok, sizeof(ok), "127.0.0.1 40123 %s", secret);
    exchange("startprivate yoda", "P2P yoda", LINK_OK, 0, ok, NULL);
    assert_string_equal(connected, "yoda 127.0.0.1 40123 0123456789abcdef0123456789abcdef 1");
    snprintf(ok, sizeof(ok), "127.0.0.1 40123 %s 0", secret);
    exchange("startprivate yoda", "P2P yoda", LINK_OK, 0, ok, NULL);
    assert_string_equal(connected, "yoda 127.0.0.1 40123 0123456789abcdef0123456789abcdef 0");

    /* Issue 9, point 16: the reply waits for the peer's answer (up to a minute), so it gets
     * that much more time than the reply timeout; other requests get none. */
    setup(NULL);
    run("startprivate yoda", "P2P yoda");
    assert_int_equal(last_grace, P2P_ANSWER_SECS);
    reply(LINK_GONE, 0, "");
    setup(NULL);
    run("message yoda hi", "MSG yoda hi");
    assert_int_equal(last_grace, 0);
    reply(LINK_GONE, 0, "");

    setup(NULL);
    session = P2P_OPEN;
    cmd_execute(&me, "startprivate yoda");
    assert_int_equal(n_sent, 0);
    assert_string_equal(printed[0], "Error. Private messaging with yoda already enabled");
}

static void private_commands(void **state)
{
    (void)state;
    refused("private yoda hi", "Error. Private messaging to yoda not enabled");
    refused("stopprivate yoda", "Error. No private messaging session with yoda");
    setup(NULL);
    session = P2P_GONE;
    cmd_execute(&me, "private yoda hi");
    assert_string_equal(printed[0], "Error. yoda is no longer online");
    setup(NULL);
    session = P2P_OPEN;
    run("private yoda psst  there", "TOUCH");
    assert_string_equal(p2p_sent, "yoda:psst  there");
    reply(LINK_OK, 0, "");
    assert_int_equal(n_printed, 0);
    setup(NULL);
    session = P2P_OPEN;
    online = false; /* after an inactivity logout: no TOUCH */
    run("private yoda still here", NULL);
    assert_string_equal(p2p_sent, "yoda:still here");
    setup(NULL);
    session = P2P_OPEN;
    run("stopprivate yoda", NULL);
    assert_string_equal(p2p_sent, "stop:yoda");
    assert_int_equal(n_printed, 0);
}

static void logged_out_refuses_server_commands(void **state)
{
    (void)state;
    const char *lines[] = {"message yoda hi", "broadcast hi", "whoelse",          "whoelsesince 5",
                           "block yoda",      "unblock yoda", "startprivate yoda"};
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        setup(NULL);
        online = false;
        cmd_execute(&me, lines[i]);
        assert_int_equal(n_sent, 0);
        assert_int_equal(n_printed, 1);
        assert_string_equal(printed[0], "Error. You are logged out");
    }
    setup(NULL);
    online = false;
    cmd_execute(&me, "logout");
    assert_true(quit_called);
}

static void help_and_completion_words(void **state)
{
    (void)state;
    setup(NULL);
    cmd_execute(&me, "help");
    assert_true(n_printed > 10);
    const char *const *names = cmd_names();
    size_t n = 0;
    while (names[n])
        n++;
    assert_int_equal(n, 18);
    assert_true(cmd_takes_user("message", 7));
    assert_true(cmd_takes_user("/msg", 4));
    assert_true(cmd_takes_user("stopprivate", 11));
    assert_true(cmd_takes_user("fingerprint", 11) && cmd_takes_user("forget", 6));
    assert_false(cmd_takes_user("broadcast", 9));
    assert_false(cmd_takes_user("mess", 4));
}

static void message_kept_for_later(void **state)
{
    (void)state;
    exchange("message yoda hi", "MSG yoda hi", LINK_OK, 0, "17 1", NULL);
    exchange("message yoda hi", "MSG yoda hi", LINK_OK, 0, "17 0", NULL); /* a pipe: no line */
    setup(NULL);
    tty = true;
    run("message yoda hi", "MSG yoda hi");
    reply(LINK_OK, 0, "17 0");
    assert_int_equal(n_printed, 1);
    assert_string_equal(printed[0],
                        "yoda is offline: the message will be delivered at their next login");
}

static void blocked_list(void **state)
{
    (void)state;
    exchange("blocked", "BLOCKED", LINK_OK, 0, "", "Nobody is blocked");
    setup(NULL);
    run("blocked", "BLOCKED");
    reply(LINK_OK, 0, "vader luke");
    assert_int_equal(n_printed, 2);
    assert_string_equal(printed[0], "vader");
    assert_string_equal(printed[1], "luke");
    refused("blocked x", "Error. Usage: blocked");
}

static void aliases_and_hint(void **state)
{
    (void)state;
    exchange("/msg yoda hi", "MSG yoda hi", LINK_OK, 0, "17", NULL);
    exchange("/who", "WHO", LINK_OK, 0, "", "No other users");
    setup(NULL);
    cmd_execute(&me, "/quit");
    assert_true(quit_called);
    refused("/msg", "Error. Usage: message <user> <message>");
    refused("/nick", "Error. Invalid command"); /* from a pipe: the exact line alone */
    setup(NULL);
    tty = true;
    cmd_execute(&me, "bogus");
    assert_int_equal(n_printed, 2);
    assert_string_equal(printed[0], "Error. Invalid command");
    assert_string_equal(printed[1], "Type help for the list of commands");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(parse_shapes, setup),
        cmocka_unit_test_setup(parse_errors, setup),
        cmocka_unit_test_setup(message_outcomes_exact, setup),
        cmocka_unit_test_setup(broadcast_outcomes_exact, setup),
        cmocka_unit_test_setup(who_lists, setup),
        cmocka_unit_test_setup(block_outcomes_exact, setup),
        cmocka_unit_test_setup(startprivate_outcomes_exact, setup),
        cmocka_unit_test_setup(private_commands, setup),
        cmocka_unit_test_setup(logged_out_refuses_server_commands, setup),
        cmocka_unit_test_setup(help_and_completion_words, setup),
        cmocka_unit_test_setup(aliases_and_hint, setup),
        cmocka_unit_test_setup(blocked_list, setup),
        cmocka_unit_test_setup(message_kept_for_later, setup),
        cmocka_unit_test(key_commands),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
