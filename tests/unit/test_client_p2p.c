/* Unit tests of src/client/p2p.c: the cost of pending offers under churn, and the table of
 * incoming connections still waiting for their HELLO (per-source limit, oldest first). The
 * module is included whole and the client modules it calls are replaced by fakes, so this
 * test links only the common objects. Connections are socketpairs handed to incoming_peer()
 * with a made-up source address, as accept_cb() hands it an accepted socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "client/p2p.c"
#include "client/sock.c"
#include "client/text.c"

/* ---- fakes ---- */

static int accepts_sent; /* P2PACCEPT requests */

void ui_printf(const char *fmt, ...)
{
    (void)fmt;
}

void ui_print(const char *line)
{
    (void)line;
}

void ui_remember_name(const char *name)
{
    (void)name;
}

void display_private(const char *from, const char *text, size_t len)
{
    (void)from;
    (void)text;
    (void)len;
}

void client_release(struct client *c)
{
    (void)c;
}

void client_p2p_ended(struct client *c, const char *name)
{
    (void)c;
    (void)name;
}

void client_refresh_prompt(struct client *c)
{
    (void)c;
}

void link_request(struct link *l, link_reply_fn fn, void *arg, const char *fmt, ...)
{
    (void)l;
    (void)fn;
    (void)arg;
    accepts_sent += strncmp(fmt, "P2PACCEPT", 9) == 0;
}

/* ---- helpers ---- */

struct fixture {
    struct event_base *base;
    struct client c;
    struct p2p *p;
};

static char config_home[64];

static int setup(void **state)
{
    static struct fixture f;
    snprintf(config_home, sizeof(config_home), "/tmp/parley-p2p-test-XXXXXX");
    if (!mkdtemp(config_home) || setenv("XDG_CONFIG_HOME", config_home, 1) != 0)
        return -1;
    memset(&f, 0, sizeof(f));
    signal(SIGPIPE, SIG_IGN);
    f.base = event_base_new();
    assert_non_null(f.base);
    f.c.base = f.base;
    snprintf(f.c.me, sizeof(f.c.me), "bob");
    f.p = p2p_new(&f.c, P2P_DEFAULT_MAX_HANDSHAKES, P2P_DEFAULT_MAX_PER_SOURCE);
    assert_non_null(f.p);
    f.c.p2p = f.p;
    accepts_sent = 0;
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    p2p_free(f->p);
    sock_finish(f->base); /* as main() does: closing connections write what they queued */
    event_base_free(f->base);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", config_home);
    return system(cmd) == 0 ? 0 : -1;
}

static double seconds_for_offers(struct p2p *p, int n)
{
    char name[PROTO_MAX_NAME + 1], secret[PROTO_SECRET_HEX + 1];
    double t0 = now();
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "u%d", i);
        snprintf(secret, sizeof(secret), "%032x", i);
        p2p_offer(p, name, secret, false);
    }
    for (int i = 0; i < n; i += 2) { /* half of them are presented */
        snprintf(name, sizeof(name), "u%d", i);
        snprintf(secret, sizeof(secret), "%032x", i);
        assert_true(take_expect(p, name, secret));
    }
    double t = now() - t0;
    p2p_stop_all(p);
    return t;
}

/* The fastest of three runs, to keep a busy machine's noise out of the ratio. */
static double best_of_three(struct p2p *p, int n)
{
    double best = 1e9;
    for (int r = 0; r < 3; r++) {
        double t = seconds_for_offers(p, n);
        best = t < best ? t : best;
    }
    return best;
}

/* Issue 9, point 16: every offer scanned every pending offer (and every presented secret
 * did again), so the cost of n offers grew as n squared. Eight times the offers must cost
 * about eight times as much, not 64 times. */
static void offer_churn_is_linear(void **state)
{
    struct fixture *f = *state;
    double small = best_of_three(f->p, 4000);
    double large = best_of_three(f->p, 32000);
    assert_int_equal(accepts_sent, 3 * (4000 + 32000));
    if (large > 24 * small + 0.05)
        fail_msg("32000 offers took %.3f s, 4000 took %.3f s: not linear", large, small);
}

/* A newer secret for the same name replaces the older one, and a wrong one spends nothing. */
static void newest_secret_wins(void **state)
{
    struct fixture *f = *state;
    p2p_offer(f->p, "hans", "0123456789abcdef0123456789abcdef", false);
    p2p_offer(f->p, "hans", "fedcba9876543210fedcba9876543210", false);
    assert_false(take_expect(f->p, "hans", "0123456789abcdef0123456789abcdef"));
    assert_false(take_expect(f->p, "yoda", "fedcba9876543210fedcba9876543210"));
    assert_true(take_expect(f->p, "hans", "fedcba9876543210fedcba9876543210"));
    assert_false(take_expect(f->p, "hans", "fedcba9876543210fedcba9876543210"));
    assert_int_equal(f->p->expects.n, 0);
}

/* An incoming connection from `ip` (host byte order); returns our end of it. */
static int connect_from(struct fixture *f, uint32_t ip)
{
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    evutil_make_socket_nonblocking(fds[0]);
    evutil_make_socket_nonblocking(fds[1]);
    struct bufferevent *bev = bufferevent_socket_new(f->base, fds[0], BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(bev);
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons(50000)};
    src.sin_addr.s_addr = htonl(ip);
    assert_non_null(incoming_peer(f->p, bev, (struct sockaddr *)&src, sizeof(src)));
    return fds[1];
}

/* Runs the loop once (a freed bufferevent closes its socket there), then looks at `fd`. */
static bool is_closed(struct fixture *f, int fd)
{
    char c;
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

#define SOURCE(n) (0x7f000000u + (n)) /* 127.0.0.n */

/* Reads `n` bytes from `fd` into `buf`, running the loop while they are not there. */
static void read_exactly(struct fixture *f, int fd, uint8_t *buf, size_t n)
{
    size_t got = 0;
    for (int i = 0; i < 1000 && got < n; i++) {
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        ssize_t r = recv(fd, buf + got, n - got, MSG_DONTWAIT);
        if (r > 0)
            got += (size_t)r;
    }
    assert_int_equal(got, n);
}

static void send_record(int fd, const uint8_t *body, size_t n)
{
    uint8_t hdr[PCH_HDR_LEN];
    pch_record_header(hdr, n);
    assert_int_equal(send(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
    assert_int_equal(send(fd, body, n, 0), (ssize_t)n);
}

/* Plays the initiator `me` with `secret` on `fd` (the PSK and prologue worked out here again,
 * as docs/PROTOCOL.md §7 gives them) up to message 3. */
static void handshake_as(struct fixture *f, int fd, const char *me, const char *secret)
{
    char info[128], prologue[128], hello[128];
    uint8_t psk[PCH_KEY_LEN], s[PCH_KEY_LEN], msg[256], out[64];
    size_t n, m;
    int ni = snprintf(info, sizeof(info), "parley-p2p-psk-2\n%s\n%s", me, f->c.me);
    int np = snprintf(prologue, sizeof(prologue), "parley-p2p-2\n%s\n%s", me, f->c.me);
    crypto_generichash(psk, sizeof(psk), (const uint8_t *)info, (size_t)ni, (const uint8_t *)secret,
                       strlen(secret));
    randombytes_buf(s, sizeof(s));
    struct pch ch;
    pch_init(&ch, PCH_INITIATOR, s, psk, (const uint8_t *)prologue, (size_t)np, NULL);
    int nh = snprintf(hello, sizeof(hello), "HELLO 2 %s " PCH_PROTOCOL_NAME "\n", me);
    assert_int_equal(send(fd, hello, (size_t)nh, 0), nh);
    assert_int_equal(pch_write_handshake(&ch, NULL, 0, msg, sizeof(msg), &n), PCH_OK);
    send_record(fd, msg, n);
    read_exactly(f, fd, msg, PCH_HDR_LEN + PCH_HANDSHAKE_MAX);
    assert_int_equal(
        pch_read_handshake(&ch, msg + PCH_HDR_LEN, PCH_HANDSHAKE_MAX, out, sizeof(out), &m),
        PCH_OK);
    assert_int_equal(pch_write_handshake(&ch, NULL, 0, msg, sizeof(msg), &n), PCH_OK);
    send_record(fd, msg, n);
}

/* Issue 9, point 15: sixteen idle connections locked the listener. One source keeps at most
 * four (its oldest goes for its newest); a full table drops its oldest for any newcomer. */
static void handshakes_oldest_first(void **state)
{
    struct fixture *f = *state;
    int a[6];
    for (int i = 0; i < 6; i++)
        a[i] = connect_from(f, SOURCE(1));
    assert_int_equal(f->p->handshakes.n, 4);
    assert_true(is_closed(f, a[0]) && is_closed(f, a[1]));
    for (int i = 2; i < 6; i++)
        assert_false(is_closed(f, a[i]));
    /* Three more sources fill the table (4 + 3 * 4 = 16); a fifth one takes the oldest's
     * place, which is source 1's oldest survivor. */
    int others[12];
    for (int i = 0; i < 12; i++)
        others[i] = connect_from(f, SOURCE(2 + i / 4));
    assert_int_equal(f->p->handshakes.n, 16);
    int e = connect_from(f, SOURCE(9));
    assert_int_equal(f->p->handshakes.n, 16);
    assert_true(is_closed(f, a[2]));
    assert_false(is_closed(f, a[3]) || is_closed(f, others[0]) || is_closed(f, e));
    /* A connection that completes its handshake leaves the table. */
    p2p_offer(f->p, "hans", "0123456789abcdef0123456789abcdef", false);
    handshake_as(f, e, "hans", "0123456789abcdef0123456789abcdef");
    for (int i = 0; i < 100 && p2p_open_count(f->p) == 0; i++)
        event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(p2p_open_count(f->p), 1);
    assert_int_equal(f->p->handshakes.n, 15);
    p2p_stop_all(f->p);
    assert_int_equal(f->p->handshakes.n, 0);
    assert_int_equal(p2p_open_count(f->p), 0);
    for (int i = 0; i < 6; i++)
        close(a[i]);
    for (int i = 0; i < 12; i++)
        close(others[i]);
    close(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(offer_churn_is_linear, setup, teardown),
        cmocka_unit_test_setup_teardown(newest_secret_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(handshakes_oldest_first, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
