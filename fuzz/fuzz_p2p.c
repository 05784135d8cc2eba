/* libFuzzer harness: the P2P handshake and session frames as the accepting side sees them.
 * src/client/p2p.c is included whole (so peer_new() and the expect list are reachable) and the
 * client modules it calls are replaced by recording fakes. Each input is an arbitrary byte
 * stream arriving on an incoming P2P connection (one end of a socketpair, wrapped the way
 * accept_cb() wraps an accepted socket).
 *
 * Input: byte 0 picks the setup, the rest is the stream.
 *   bits 0-1  what the client expects: 0 `hans` with SECRET (and `yoda` with SECRET2),
 *             1 the same but expired, 2 the same but already spent by an earlier session,
 *             3 SECRET announced for `yoda` only
 *   bit 2     the sender closes its side after the stream (EOF)
 *   bit 3     the same stream arrives again on a second connection afterwards
 *   bits 4-7  chunk size of the writes (0: all at once), the loop runs between chunks
 * Invariants: a session opens only when the first non-empty frame is exactly `HELLO 1 <name>
 * <secret>` for a live announced pair (no trailing space); a secret opens at most one session;
 * the listener answers `OK <me>` or one `ERR ...` frame, once; the handshake table stays within
 * its limits; every opened session ends exactly once; nothing leaks. */
#include "client/p2p.c"
#include "client/sock.c"
#include "client/text.c"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/socket.h>

#define SECRET "0123456789abcdef0123456789abcdef"
#define SECRET2 "fedcba9876543210fedcba9876543210"
#define ME "bob"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- fakes ---- */

static struct event_base *base;
static int opened;   /* "<name> started private messaging with you" printed */
static int ended;    /* client_p2p_ended() calls */
static int releases; /* client_release() calls: an incoming peer never holds input */
static char opened_name[PROTO_MAX_NAME + 1];

void ui_printf(const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    static const char started[] = " started private messaging with you";
    size_t n = strlen(buf), s = sizeof(started) - 1;
    /* Only the notice itself: a private message that ends with those words is printed as
     * "<name>(private): <text>", whose first part is not a name. */
    struct proto_slice who = {buf, n > s ? n - s : 0};
    if (n > s && strcmp(buf + n - s, started) == 0 && proto_is_name(who)) {
        opened++;
        snprintf(opened_name, sizeof(opened_name), "%.*s", (int)(n - s), buf);
    }
}

void ui_remember_name(const char *name)
{
    (void)name;
}

/* A private message is never the "started" notice, whatever its text. */
void display_private(const char *from, const char *text, size_t len)
{
    (void)from;
    (void)text;
    (void)len;
}

void client_release(struct client *c)
{
    (void)c;
    releases++;
}

void client_p2p_ended(struct client *c, const char *name)
{
    (void)c;
    (void)name;
    ended++;
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
    (void)fmt;
}

/* ---- the harness ---- */

struct pair {
    const char *name;
    const char *secret;
    bool live; /* announced, not expired, not spent */
};

static struct pair pairs[2];
static size_t n_pairs;

static int sender = -1; /* our end of the current connection */

static void run_loop(int times)
{
    for (int i = 0; i < times; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
}

/* Reads what the listener answered on the current connection. */
static size_t drain(char *out, size_t cap, size_t have)
{
    for (;;) {
        char tmp[4096];
        ssize_t n = recv(sender, tmp, sizeof(tmp), MSG_DONTWAIT);
        if (n <= 0)
            return have;
        size_t k = (size_t)n < cap - have ? (size_t)n : cap - have;
        memcpy(out + have, tmp, k);
        have += k;
    }
}

static void hangup(void)
{
    if (sender >= 0)
        close(sender);
    sender = -1;
}

/* A new incoming connection from 127.0.0.1, set up exactly as accept_cb() does. */
static struct peer *incoming(struct p2p *p)
{
    int fds[2];
    hangup();
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
        abort();
    evutil_make_socket_nonblocking(fds[0]);
    evutil_make_socket_nonblocking(fds[1]);
    sender = fds[1];
    struct bufferevent *bev = bufferevent_socket_new(base, fds[0], BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        abort();
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons(40000)};
    src.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct peer *pe = incoming_peer(p, bev, (struct sockaddr *)&src, sizeof(src));
    if (!pe)
        abort();
    if (p->handshakes.n > p->max_handshakes || p->handshakes.n > p->max_per_source)
        abort(); /* the table made room first */
    return pe;
}

/* The pair the first non-empty frame of `s` names when it is exactly `HELLO 1 <name>
 * <secret>` for a live pair, else NULL. */
static struct pair *hello_pair(const char *s, size_t len)
{
    size_t off = 0;
    while (off < len && s[off] == '\n')
        off++;
    const char *lf = memchr(s + off, '\n', len - off);
    if (!lf)
        return NULL;
    size_t n = (size_t)(lf - (s + off));
    for (size_t i = 0; i < n_pairs; i++) {
        char want[128];
        int w = snprintf(want, sizeof(want), "HELLO 1 %s %s", pairs[i].name, pairs[i].secret);
        if (pairs[i].live && (size_t)w == n && memcmp(s + off, want, n) == 0)
            return &pairs[i];
    }
    return NULL;
}

static bool expect_left(const struct p2p *p, const char *name, const char *secret)
{
    const struct expect *e = find_expect(p, name);
    return e && strcmp(e->secret, secret) == 0;
}

/* True when the `n` bytes at `s` are exactly one `ERR ...` frame. */
static bool one_err_frame(const char *s, size_t n)
{
    const char *lf = memchr(s, '\n', n);
    return n >= 4 && memcmp(s, "ERR ", 4) == 0 && lf == s + n - 1;
}

/* Feeds `s` on a new connection and checks what happened. */
static void connection(struct p2p *p, const char *s, size_t len, size_t chunk, bool eof)
{
    int opened_before = opened;
    struct pair *want = hello_pair(s, len);
    struct peer *pe = incoming(p);
    (void)pe; /* may be freed by the loop */
    char answer[256];
    size_t have = 0;
    if (chunk == 0)
        chunk = len ? len : 1;
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        ssize_t w = send(sender, s + off, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
            break; /* the listener closed the connection */
        if (w != (ssize_t)n)
            abort(); /* a socketpair takes a few KiB at once */
        run_loop(2);
        have = drain(answer, sizeof(answer), have);
    }
    if (eof)
        shutdown(sender, SHUT_WR);
    run_loop(4);
    have = drain(answer, sizeof(answer), have);

    if (opened > opened_before + 1)
        abort(); /* one connection, one session at most */
    if (opened == opened_before + 1) {
        if (!want || strcmp(opened_name, want->name) != 0)
            abort(); /* opened without the announced name and secret */
        if (expect_left(p, want->name, want->secret))
            abort(); /* the secret was not spent */
        static const char ok[] = "OK " ME "\n";
        /* When frames in the same read end the session again (STOP, junk, flood) the peer is
         * freed with OK still queued, so OK is only certain while the session is open. */
        bool still_open = find_peer(p, want->name) != NULL;
        if ((have > 0 || still_open) &&
            (have < sizeof(ok) - 1 || memcmp(answer, ok, sizeof(ok) - 1) != 0))
            abort();
        want->live = false;
    } else {
        if (have > 0 && !one_err_frame(answer, have))
            abort(); /* a refusal is one ERR frame (sent once), or silence */
        if (p2p_open_count(p) != 0)
            abort();
    }
    if (releases != 0)
        abort(); /* an incoming peer never holds the client's input */
    if (p2p_open_count(p) > 1)
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    if (!base)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned flags = data[0];
    const char *s = (const char *)data + 1;
    size_t len = size - 1;
    size_t chunk = (flags >> 4) == 0 ? 0 : (size_t)(flags >> 4) * 37 - 36;
    opened = ended = releases = 0;

    struct client c;
    memset(&c, 0, sizeof(c));
    c.base = base;
    snprintf(c.me, sizeof(c.me), "%s", ME);
    struct p2p *p = p2p_new(&c, P2P_DEFAULT_MAX_HANDSHAKES, P2P_DEFAULT_MAX_PER_SOURCE);
    if (!p)
        abort();
    c.p2p = p;

    n_pairs = 0;
    switch (flags & 3) {
    case 3:
        p2p_offer(p, "yoda", SECRET, false);
        pairs[n_pairs++] = (struct pair){"yoda", SECRET, true};
        break;
    default:
        p2p_offer(p, "hans", SECRET, false);
        p2p_offer(p, "yoda", SECRET2, false);
        pairs[n_pairs++] = (struct pair){"hans", SECRET, true};
        pairs[n_pairs++] = (struct pair){"yoda", SECRET2, true};
        break;
    }
    if ((flags & 3) == 1) {
        for (struct dnode *d = p->expects.head; d; d = d->next)
            DL_ENTRY(d, struct expect, node)->deadline = now() - 1; /* as if 60 s had passed */
        for (size_t i = 0; i < n_pairs; i++)
            pairs[i].live = false;
    } else if ((flags & 3) == 2) {
        /* Spend both secrets with real sessions first, then stop them. */
        static const char h1[] = "HELLO 1 hans " SECRET "\n";
        static const char h2[] = "HELLO 1 yoda " SECRET2 "\n";
        connection(p, h1, sizeof(h1) - 1, 0, false);
        if (opened != 1 || p2p_open_count(p) != 1)
            abort();
        p2p_stop(p, "hans");
        connection(p, h2, sizeof(h2) - 1, 0, false);
        if (opened != 2 || p2p_open_count(p) != 1)
            abort();
        p2p_stop(p, "yoda");
        if (p2p_open_count(p) != 0 || ended != 2 || pairs[0].live || pairs[1].live)
            abort();
    }

    connection(p, s, len, chunk, flags & 4);
    if ((flags & 8) && p2p_open_count(p) == 0) {
        /* The same bytes again: whatever secret they carried is spent now. */
        int before = opened;
        connection(p, s, len, chunk, flags & 4);
        if (opened != before && hello_pair(s, len) == NULL)
            abort();
    }

    p2p_stop_all(p);
    if (ended != opened)
        abort(); /* every opened session ends exactly once */
    p2p_free(p);
    hangup();
    /* The previous connections' senders are closed by now; drop any still-open ones. */
    run_loop(1);
    if (event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED) != 0)
        abort(); /* a timer or bufferevent outlived the p2p object */
    return 0;
}
