/* Unit tests of the chat layer with an injected clock and a fake network: login and idle
 * deadlines, what counts as activity, lock-out timing, and the output each session gets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <event2/event.h>

#include "server/net.h"
#include "server/server.h"
#include "server/store.h"
#include "server/worker.h"

/* ---- a fake net.c: output is kept per connection ---- */

struct net_conn {
    char out[65536];
    size_t len;
    bool closed;
    bool paused;
};

void net_send(struct net_conn *c, const char *data, size_t len)
{
    if (c->closed || c->len + len >= sizeof(c->out))
        return;
    memcpy(c->out + c->len, data, len);
    c->len += len;
    c->out[c->len] = '\0';
}

void net_close(struct net_conn *c)
{
    c->closed = true;
}

void net_abort(struct net_conn *c)
{
    c->closed = true;
}

void net_pause_read(struct net_conn *c)
{
    c->paused = true;
}

void net_resume_read(struct net_conn *c)
{
    c->paused = false;
}

const char *net_peer_addr(const struct net_conn *c)
{
    (void)c;
    return "127.0.0.1";
}

int net_splice(struct net_conn *c, size_t pos, size_t len, const char *with, size_t with_len)
{
    if (pos + len > c->len)
        return -1;
    memmove(c->out + pos + with_len, c->out + pos + len, c->len - pos - len + 1);
    memcpy(c->out + pos, with, with_len);
    c->len = c->len - len + with_len;
    return 0;
}

size_t net_pending_output(const struct net_conn *c)
{
    return c->len;
}

bool net_output_fits(const struct net_conn *c, size_t len)
{
    return c->len + len < sizeof(c->out);
}

/* ---- fixture ---- */

static int64_t fake_now;

static int64_t fake_clock(void)
{
    return fake_now;
}

struct fx {
    struct server srv;
    char dir[64];
    struct net_conn conn[3];
    struct session *s[3];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char *args[] = {"parleyd", "--login-timeout", "30", "0", "60", "10", NULL};
    assert_int_equal(config_parse(&f->srv.cfg, 6, args), CONFIG_RUN);
    assert_int_equal(auth_init(), 0);
    directory_init(&f->srv.dir);
    const char *users[][2] = {{"hans", "falcon"}, {"yoda", "wise"}};
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(
            directory_set_account(directory_add(&f->srv.dir, users[i][0]), AUTH_PLAIN, users[i][1]),
            0);
    snprintf(f->dir, sizeof(f->dir), "/tmp/parley-test-session-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char err[256];
    assert_int_equal(store_open(&f->srv.store, &store_local_ops, f->dir, err, sizeof(err)), 0);
    f->srv.fmt_cap = f->srv.cfg.max_line + 256;
    f->srv.fmt = malloc(f->srv.fmt_cap);
    f->srv.base = event_base_new();
    f->srv.workers = worker_pool_new(f->srv.base, 1, 256);
    fake_now = 1000000;
    server_set_clock(fake_clock);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 3; i++)
        if (f->s[i])
            session_closed(f->s[i], NET_CLOSE_EOF);
    fanout_free(&f->srv); /* the logouts' notices nobody was left to get */
    worker_pool_free(f->srv.workers);
    event_base_free(f->srv.base);
    p2p_free(&f->srv);
    directory_free(&f->srv.dir);
    store_close(f->srv.store);
    free(f->srv.fmt);
    free(f->srv.undo);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    server_set_clock(NULL);
    free(f);
    return 0;
}

/* Feeds one frame (without LF) to connection i, then deals the presence notices as the end of a
 * loop iteration does (server_run). */
static void feed(struct fx *f, int i, const char *line)
{
    session_frame(f->s[i], LINEBUF_LINE, line, strlen(line));
    while (fanout_pending(&f->srv))
        fanout_run(&f->srv);
}

/* Returns connection i's output so far and forgets it. */
static const char *take(struct fx *f, int i)
{
    static char copy[65536];
    memcpy(copy, f->conn[i].out, f->conn[i].len + 1);
    f->conn[i].len = 0;
    f->conn[i].out[0] = '\0';
    return copy;
}

static void open_conn(struct fx *f, int i)
{
    f->s[i] = session_open(&f->srv, &f->conn[i]);
    assert_non_null(f->s[i]);
}

static void login(struct fx *f, int i, const char *user, const char *password)
{
    char line[128];
    open_conn(f, i);
    feed(f, i, "1 HELLO 1");
    snprintf(line, sizeof(line), "2 USER %s", user);
    feed(f, i, line);
    snprintf(line, sizeof(line), "3 PASS %s", password);
    feed(f, i, line);
    assert_non_null(strstr(take(f, i), "3 OK\n"));
}

/* ---- tests ---- */

static void test_login_deadline(void **state)
{
    struct fx *f = *state;
    open_conn(f, 0);
    feed(f, 0, "1 HELLO 1");
    take(f, 0);
    session_expire(&f->srv, fake_now + 30 * 1000 - 1);
    assert_false(f->conn[0].closed);
    session_expire(&f->srv, fake_now + 30 * 1000);
    assert_true(f->conn[0].closed);
    assert_string_equal(take(f, 0), "* BYE login-timeout\n");
}

/* A connection that says nothing has --hello-timeout (default 10 s), not the whole login
 * timeout (30 s here); once HELLO is in, the login timeout from the connection applies. */
static void test_hello_deadline(void **state)
{
    struct fx *f = *state;
    open_conn(f, 0);
    open_conn(f, 1);
    feed(f, 1, "1 HELLO 1");
    open_conn(f, 2);
    feed(f, 2, "1 BOGUS"); /* a frame, but not HELLO */
    take(f, 1);
    take(f, 2);
    session_expire(&f->srv, fake_now + 10 * 1000 - 1);
    assert_false(f->conn[0].closed);
    session_expire(&f->srv, fake_now + 10 * 1000);
    assert_true(f->conn[0].closed);
    assert_string_equal(take(f, 0), "* BYE login-timeout\n");
    assert_true(f->conn[2].closed);
    assert_false(f->conn[1].closed);
    session_expire(&f->srv, fake_now + 30 * 1000 - 1);
    assert_false(f->conn[1].closed);
    session_expire(&f->srv, fake_now + 30 * 1000);
    assert_true(f->conn[1].closed);
}

static void test_idle_deadline_and_activity(void **state)
{
    struct fx *f = *state;
    login(f, 0, "hans", "falcon");
    login(f, 1, "yoda", "wise");
    take(f, 0);
    fake_now += 9000;
    feed(f, 0, "4 WHO"); /* activity: the deadline moves to now + 10 s */
    assert_string_equal(take(f, 0), "4 OK yoda\n");
    feed(f, 0, "5 NOSUCH"); /* not activity */
    feed(f, 0, "* ACK 0");  /* not activity */
    session_expire(&f->srv, fake_now + 10000 - 1);
    assert_false(f->conn[0].closed);
    assert_true(f->conn[1].closed); /* yoda did nothing since logging in 19 s ago */
    assert_string_equal(take(f, 1), "* BYE idle\n");
    session_expire(&f->srv, fake_now + 10000);
    assert_true(f->conn[0].closed);
    assert_non_null(strstr(take(f, 0), "* BYE idle\n"));
}

static void test_failed_request_is_activity(void **state)
{
    struct fx *f = *state;
    login(f, 0, "hans", "falcon");
    fake_now += 9000;
    feed(f, 0, "4 MSG nobody hi"); /* understood, fails: still activity */
    assert_string_equal(take(f, 0), "4 ERR 404 no such user\n");
    session_expire(&f->srv, fake_now + 9999);
    assert_false(f->conn[0].closed);
}

static void test_receiving_is_not_activity(void **state)
{
    struct fx *f = *state;
    login(f, 0, "hans", "falcon");
    login(f, 1, "yoda", "wise");
    fake_now += 5000;
    feed(f, 1, "4 MSG hans hello");
    assert_non_null(strstr(take(f, 0), "* MSG 1 yoda "));
    session_expire(&f->srv, fake_now + 5000);
    assert_true(f->conn[0].closed);  /* hans only received */
    assert_false(f->conn[1].closed); /* yoda sent */
}

static void test_lockout_with_clock(void **state)
{
    struct fx *f = *state;
    open_conn(f, 0);
    feed(f, 0, "1 HELLO 1");
    feed(f, 0, "2 USER hans");
    feed(f, 0, "3 PASS a");
    feed(f, 0, "4 PASS b");
    feed(f, 0, "5 PASS c");
    assert_non_null(strstr(take(f, 0), "3 ERR 401 invalid password\n4 ERR 401 invalid password\n"
                                       "5 ERR 424 account now locked\n"));
    assert_true(f->conn[0].closed);
    struct user *u = directory_find(&f->srv.dir, "hans", 4);
    assert_int_equal(u->lock.failures, 3);
    assert_true(u->lock.locked_until >= (int64_t)time(NULL) + 59);
    struct store_lock kept;
    assert_int_equal(store_lock_get(f->srv.store, "hans", &kept), 0);
    assert_int_equal(kept.locked_until, u->lock.locked_until); /* persisted */
}

/* P2P bookkeeping: a request expires after 60 s, an accepted one becomes a session that blocks
 * a second one both ways, and a session that ends takes its requests and sessions along. */
static void test_p2p_requests_and_sessions(void **state)
{
    struct fx *f = *state;
    login(f, 0, "hans", "falcon");
    login(f, 1, "yoda", "wise");
    feed(f, 1, "4 LISTEN 4000");
    feed(f, 0, "5 P2P yoda");
    assert_non_null(strstr(take(f, 1), "* P2PREQ hans "));
    p2p_expire(&f->srv, fake_now + 60000 - 1);
    assert_string_equal(take(f, 0), "* LOGIN yoda\n");
    p2p_expire(&f->srv, fake_now + 60000);
    assert_string_equal(take(f, 0), "5 ERR 455 private session declined\n");
    feed(f, 1, "6 P2PACCEPT hans"); /* too late */
    assert_string_equal(take(f, 1), "6 ERR 403 not allowed now\n");

    feed(f, 0, "7 P2P yoda");
    take(f, 1);
    feed(f, 1, "8 P2P hans"); /* a request the other way is pending */
    assert_string_equal(take(f, 1), "8 ERR 454 private session exists\n");
    feed(f, 1, "9 P2PACCEPT hans");
    assert_string_equal(take(f, 1), "9 OK\n");
    assert_non_null(strstr(take(f, 0), "7 OK 127.0.0.1 4000 "));
    feed(f, 0, "10 P2P yoda");
    feed(f, 1, "11 P2P hans");
    assert_string_equal(take(f, 0), "10 ERR 454 private session exists\n");
    assert_string_equal(take(f, 1), "11 ERR 454 private session exists\n");
    p2p_expire(&f->srv, fake_now + 120000); /* nothing left to expire */
    assert_string_equal(take(f, 0), "");

    feed(f, 0, "12 P2P yoda");
    assert_string_equal(take(f, 0), "12 ERR 454 private session exists\n");
    session_closed(f->s[1], NET_CLOSE_EOF); /* yoda goes: the session with hans ends */
    f->s[1] = NULL;
    take(f, 0);
    login(f, 2, "yoda", "wise");
    feed(f, 2, "4 LISTEN 4001");
    feed(f, 0, "13 P2P yoda");
    assert_non_null(strstr(take(f, 2), "* P2PREQ hans "));
    session_closed(f->s[2], NET_CLOSE_EOF); /* the target goes: the initiator hears 410 */
    f->s[2] = NULL;
    assert_non_null(strstr(take(f, 0), "13 ERR 410 "));
}

/* --max-errors above 65535 trips (the counter was 16 bits wide and wrapped to 0 first). */
static void test_max_errors_above_16_bits(void **state)
{
    struct fx *f = *state;
    f->srv.cfg.max_errors = 70000;
    open_conn(f, 0);
    feed(f, 0, "1 HELLO 1");
    for (unsigned i = 1; i < 70000; i++) {
        feed(f, 0, "2 NOSUCH");
        if (i % 1000 == 0)
            take(f, 0);
    }
    assert_false(f->conn[0].closed);
    take(f, 0);
    feed(f, 0, "2 NOSUCH");
    assert_true(f->conn[0].closed);
    assert_string_equal(take(f, 0), "2 ERR 501 unknown request\n* BYE flood\n");
}

/* --fanout-backlog 1: while a notice waits, a PASS waits before its check (no reply, still in
 * SESSION_PASSWORD); the loop's fan-out deals the notice, then lets the session go on. */
static void test_login_waits_for_presence_notices(void **state)
{
    struct fx *f = *state;
    f->srv.cfg.fanout_backlog = 1;
    login(f, 0, "hans", "falcon");
    open_conn(f, 1);
    feed(f, 1, "1 HELLO 1");
    feed(f, 1, "2 USER yoda");
    take(f, 1);
    struct user *vader = directory_add(&f->srv.dir, "vader");
    assert_non_null(vader);
    fanout_presence(&f->srv, vader, "* LOGIN vader\n", 14);
    assert_false(fanout_admits(&f->srv));
    session_frame(f->s[1], LINEBUF_LINE, "3 PASS wise", 11);
    assert_string_equal(take(f, 1), "");
    assert_int_equal(f->s[1]->state, SESSION_PASSWORD);
    assert_true(f->s[1]->fan_held);
    assert_true(fanout_pending(&f->srv));
    fanout_run(&f->srv); /* deals the notice, then lets yoda's PASS run */
    assert_false(f->s[1]->fan_held);
    assert_string_equal(take(f, 1), "3 OK\n");
    assert_int_equal(f->s[1]->state, SESSION_ONLINE);
    while (fanout_pending(&f->srv))
        fanout_run(&f->srv);
    assert_string_equal(take(f, 0), "* LOGIN vader\n* LOGIN yoda\n");
}

/* A session that logs out is not given the notices still waiting for it; the others are. */
static void test_logout_skips_waiting_notices(void **state)
{
    struct fx *f = *state;
    login(f, 0, "hans", "falcon");
    login(f, 1, "yoda", "wise");
    take(f, 0);
    struct user *vader = directory_add(&f->srv.dir, "vader");
    assert_non_null(vader);
    fanout_presence(&f->srv, vader, "* LOGIN vader\n", 14);
    session_frame(f->s[0], LINEBUF_LINE, "4 LOGOUT", 8);
    assert_string_equal(take(f, 0), "4 OK\n");
    while (fanout_pending(&f->srv))
        fanout_run(&f->srv);
    assert_string_equal(take(f, 1), "* LOGIN vader\n* LOGOUT hans\n");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_login_deadline),
        T(test_hello_deadline),
        T(test_idle_deadline_and_activity),
        T(test_failed_request_is_activity),
        T(test_receiving_is_not_activity),
        T(test_lockout_with_clock),
        T(test_max_errors_above_16_bits),
        T(test_p2p_requests_and_sessions),
        T(test_login_waits_for_presence_notices),
        T(test_logout_skips_waiting_notices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
