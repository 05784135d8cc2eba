/* libFuzzer harness: the P2P HELLO line, the Noise handshake and the encrypted record layer as
 * the accepting side sees them. src/client/p2p.c is included whole (so peer_new() and the
 * expect list are reachable) and the client modules it calls are replaced by recording fakes;
 * the key modules are real (linked; their files go to a temporary XDG_CONFIG_HOME). Each input is a
 * byte stream arriving on an incoming P2P connection (one end of a socketpair, wrapped the way
 * accept_cb() wraps an accepted socket).
 *
 * Input: byte 0 picks the setup, the rest is the stream.
 *   bits 0-1  what the client expects: 0 `hans` with SECRET (and `yoda` with SECRET2),
 *             1 the same but expired, 2 the same but already spent by an earlier session,
 *             3 SECRET announced for `yoda` only
 *   bit 2     the sender closes its side after the stream (EOF)
 *   bit 3     the harness first runs a genuine handshake as `hans` with SECRET; the stream
 *             then goes into the open session
 *   bit 4     with bit 3: the stream is cut at each LF into frames, each sealed into a record
 *             (the frame checks behind the cipher); without it, the raw bytes go (the record
 *             layer itself: lengths, tags, nonces)
 *   bits 5-7  chunk size of the writes (0: all at once), the loop runs between chunks
 * Invariants: a raw stream never opens a session (it cannot know the listener's ephemeral
 * key), and is answered with one ERR frame, one handshake message, or silence; a genuine
 * handshake opens a session exactly when its secret is live, spends it, and gets the sealed
 * `OK <me>`; the handshake table stays within its limits; every opened session ends exactly
 * once; nothing leaks. */
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

void ui_print(const char *line)
{
    (void)line;
}

/* A private message is never the "started" notice, whatever its text. */
void display_private(const char *from, const char *text, size_t len)
{
    (void)from;
    (void)text;
    (void)len;
}

void ui_remember_name(const char *name)
{
    (void)name;
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
static uint8_t hans_key[PCH_KEY_LEN];

static void run_loop(int times)
{
    for (int i = 0; i < times; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
}

/* Reads what the listener answered on the current connection, after `have` bytes. */
static size_t drain(uint8_t *out, size_t cap, size_t have)
{
    for (;;) {
        uint8_t tmp[4096];
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
static void incoming(struct p2p *p)
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
    if (!incoming_peer(p, bev, (struct sockaddr *)&src, sizeof(src)))
        abort();
    if (p->handshakes.n > p->max_handshakes || p->handshakes.n > p->max_per_source)
        abort(); /* the table made room first */
}

static bool expect_left(const struct p2p *p, const char *name, const char *secret)
{
    const struct expect *e = find_expect(p, name);
    return e && strcmp(e->secret, secret) == 0;
}

/* True when the `n` bytes at `s` are exactly one `ERR ...` frame. */
static bool one_err_frame(const uint8_t *s, size_t n)
{
    const uint8_t *lf = memchr(s, '\n', n);
    return n >= 4 && memcmp(s, "ERR ", 4) == 0 && lf == s + n - 1;
}

/* True when the `n` bytes at `s` are exactly one handshake message 2. */
static bool one_message2(const uint8_t *s, size_t n)
{
    size_t body;
    return n == PCH_HDR_LEN + PCH_HANDSHAKE_MAX &&
           pch_record_len(s, n, PCH_HANDSHAKE_MAX, &body) == 1 && body == PCH_HANDSHAKE_MAX;
}

static void send_all(const uint8_t *s, size_t len, size_t chunk)
{
    if (chunk == 0)
        chunk = len ? len : 1;
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        ssize_t w = send(sender, s + off, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
            return; /* the listener closed the connection */
        if (w != (ssize_t)n)
            abort(); /* a socketpair takes a few KiB at once */
        run_loop(2);
    }
}

static void send_record(const uint8_t *body, size_t n)
{
    uint8_t rec[PCH_HDR_LEN + P2P_MAX_RECORD];
    pch_record_header(rec, n);
    memcpy(rec + PCH_HDR_LEN, body, n);
    send_all(rec, PCH_HDR_LEN + n, 0);
}

/* Runs a genuine handshake as `hans` with `secret` on a new connection; returns true when the
 * session opened (the sealed `OK bob` came back), with the channel in `ch`. */
static bool genuine(struct p2p *p, const char *secret, struct pch *ch)
{
    char info[128], prologue[128];
    uint8_t psk[PCH_KEY_LEN], msg[256], answer[512], out[64];
    size_t n, m, have = 0;
    int ni = snprintf(info, sizeof(info), P2P_PSK_CONTEXT "\nhans\n" ME);
    int np = snprintf(prologue, sizeof(prologue), P2P_PROLOGUE "\nhans\n" ME);
    crypto_generichash(psk, sizeof(psk), (const uint8_t *)info, (size_t)ni, (const uint8_t *)secret,
                       PROTO_SECRET_HEX);
    pch_init(ch, PCH_INITIATOR, hans_key, psk, (const uint8_t *)prologue, (size_t)np, NULL);
    incoming(p);
    static const char hello[] = "HELLO 2 hans " PCH_PROTOCOL_NAME "\n";
    send_all((const uint8_t *)hello, sizeof(hello) - 1, 0);
    if (pch_write_handshake(ch, NULL, 0, msg, sizeof(msg), &n) != PCH_OK)
        abort();
    send_record(msg, n);
    run_loop(2);
    have = drain(answer, sizeof(answer), have);
    if (!one_message2(answer, have))
        return false; /* refused before the handshake (ERR 403) */
    if (pch_read_handshake(ch, answer + PCH_HDR_LEN, PCH_HANDSHAKE_MAX, out, sizeof(out), &m) !=
            PCH_OK ||
        pch_write_handshake(ch, NULL, 0, msg, sizeof(msg), &n) != PCH_OK)
        abort(); /* the listener's message 2 is always genuine */
    send_record(msg, n);
    run_loop(4);
    have = drain(answer, sizeof(answer), 0);
    static const char ok[] = "OK " ME;
    size_t body;
    if (have == 0)
        return false; /* refused after message 3: closed without a word */
    if (pch_record_len(answer, have, P2P_MAX_RECORD, &body) != 1 || have != PCH_HDR_LEN + body ||
        pch_open(ch, answer + PCH_HDR_LEN, body, out, sizeof(out), &m) != PCH_OK ||
        m != sizeof(ok) - 1 || memcmp(out, ok, m) != 0)
        abort(); /* an open session says exactly OK <me>, sealed */
    return true;
}

/* Sends `s` into the open session: raw, or cut at each LF into sealed frames. */
static void into_session(struct pch *ch, const uint8_t *s, size_t len, size_t chunk, bool seal)
{
    if (!seal) {
        send_all(s, len, chunk);
        return;
    }
    while (len > 0) {
        const uint8_t *lf = memchr(s, '\n', len);
        size_t n = lf ? (size_t)(lf - s) : len;
        uint8_t rec[P2P_MAX_RECORD];
        size_t r;
        if (n <= P2P_MAX_LINE && pch_seal(ch, s, n, rec, sizeof(rec), &r) == PCH_OK)
            send_record(rec, r);
        s += n + (lf != NULL);
        len -= n + (lf != NULL);
    }
}

/* Feeds `s` raw on a new connection and checks that nothing opened. */
static void raw_connection(struct p2p *p, const uint8_t *s, size_t len, size_t chunk, bool eof)
{
    int opened_before = opened;
    uint8_t answer[512];
    incoming(p);
    send_all(s, len, chunk);
    if (eof)
        shutdown(sender, SHUT_WR);
    run_loop(4);
    size_t have = drain(answer, sizeof(answer), 0);
    if (opened != opened_before || p2p_open_count(p) != 0)
        abort(); /* bytes that do not know the listener's ephemeral key opened a session */
    if (have > 0 && !one_err_frame(answer, have) && !one_message2(answer, have))
        abort(); /* a refusal is one ERR frame (sent once), a handshake answer one message */
}

/* Runs a genuine handshake, then feeds `s` into the session it opened (if its secret was
 * live), and checks what happened. */
static void session_connection(struct p2p *p, const uint8_t *s, size_t len, size_t chunk, bool eof,
                               bool seal)
{
    int opened_before = opened;
    struct pch ch;
    bool open = genuine(p, SECRET, &ch);
    struct pair *want = pairs[0].live && strcmp(pairs[0].name, "hans") == 0 ? &pairs[0] : NULL;
    if (open != (want != NULL) || opened != opened_before + open)
        abort(); /* a genuine handshake opens exactly when its secret is live */
    if (open && (strcmp(opened_name, "hans") != 0 || expect_left(p, "hans", SECRET)))
        abort(); /* opened for another name, or the secret was not spent */
    if (want)
        want->live = false;
    if (open)
        into_session(&ch, s, len, chunk, seal);
    if (eof)
        shutdown(sender, SHUT_WR);
    run_loop(4);
    pch_wipe(&ch);
}

static char config_home[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    snprintf(config_home, sizeof(config_home), "/tmp/parley-fuzz-p2p-XXXXXX");
    if (sodium_init() < 0 || !mkdtemp(config_home) || setenv("XDG_CONFIG_HOME", config_home, 1))
        abort();
    randombytes_buf(hans_key, sizeof(hans_key)); /* one key for the whole run: the pin holds */
    base = event_base_new();
    if (!base)
        abort();
    return 0;
}

/* Spends both secrets with real sessions first, then stops them. */
static void spend_both(struct p2p *p)
{
    struct pch ch;
    if (!genuine(p, SECRET, &ch) || opened != 1 || p2p_open_count(p) != 1)
        abort();
    p2p_stop(p, "hans");
    pairs[0].live = false;
    pairs[1].live = false; /* yoda's is not spent, but `hans` is the only genuine name used */
    if (p2p_open_count(p) != 0 || ended != 1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned flags = data[0];
    const uint8_t *s = data + 1;
    size_t len = size - 1;
    size_t chunk = (flags >> 5) == 0 ? 0 : (size_t)(flags >> 5) * 37 - 36;
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
        spend_both(p);
    }

    if (flags & 8)
        session_connection(p, s, len, chunk, flags & 4, flags & 16);
    else
        raw_connection(p, s, len, chunk, flags & 4);
    if (releases != 0)
        abort(); /* an incoming peer never holds the client's input */

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
