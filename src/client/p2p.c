/* Peer-to-peer private sessions; see p2p.h and docs/PROTOCOL.md §7. */
#include "client/p2p.h"

#include "client/client.h"
#include "client/display.h"
#include "client/identity.h"
#include "client/link.h"
#include "client/p2p_channel.h"
#include "client/sock.h"
#include "client/text.h"
#include "client/ui.h"
#include "common/proto.h"
#include "common/strmap.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <assert.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define P2P_MAX_LINE 4096 /* the HELLO line, LF included, and a frame inside a record */
#define P2P_MAX_RECORD (P2P_MAX_LINE + PCH_TAG_LEN) /* a record body on the wire, at most */
#define P2P_VERSION "2"                             /* of HELLO: 1 was plain text */
#define P2P_PROLOGUE "parley-p2p-2"                 /* then "\n<initiator>\n<responder>" */
#define P2P_PSK_CONTEXT "parley-p2p-psk-2"
#define P2P_HANDSHAKE_SECS 10        /* to connect and finish HELLO, the handshake and OK */
#define P2P_SECRET_SECS 60           /* a secret is good this long after the server's offer */
#define P2P_MAX_OUTPUT (1024 * 1024) /* queued output before a peer counts as not reading */
#define P2P_RATE 50.0                /* frames per second a peer may send, sustained */
#define P2P_BURST 200.0              /* and in one burst */

enum peer_state {
    PEER_CONNECTING,  /* outgoing: TCP connect in progress */
    PEER_AWAIT_HELLO, /* incoming: waiting for the HELLO line */
    PEER_HANDSHAKE,   /* the Noise handshake (the channel knows whose turn it is) */
    PEER_AWAIT_OK,    /* outgoing: handshake done, waiting for the sealed `OK <name>` */
    PEER_OPEN,        /* session open */
};

/* Why a peer connection ends. */
enum peer_end {
    END_LOCAL_STOP,  /* stopprivate */
    END_QUIT,        /* the client is quitting */
    END_PEER_STOP,   /* the peer sent STOP */
    END_VANISHED,    /* the connection dropped */
    END_JUNK,        /* invalid frames */
    END_FLOOD,       /* too many frames */
    END_SLOW,        /* not reading what we send */
    END_FAILED,      /* outgoing handshake failed */
    END_REFUSED,     /* incoming handshake refused */
    END_EVICTED,     /* incoming handshake dropped to make room for a newer one */
    END_OLD_PEER,    /* outgoing: the peer speaks only the plain-text version 1 */
    END_KEY_CHANGED, /* the peer proved another identity key than the pinned one */
};

/* A node of an intrusive doubly-linked list. */
struct dnode {
    struct dnode *prev, *next;
};

/* A list of nodes in the order they were added (oldest first), with O(1) add and remove. */
struct dlist {
    struct dnode *head, *tail;
    size_t n;
};

/* The structure of `type` whose member `member` is the node `node`. */
#define DL_ENTRY(node, type, member) ((type *)(void *)((char *)(node)-offsetof(type, member)))

struct peer {
    struct dnode all; /* in p2p.peers */
    struct dnode hs;  /* in p2p.handshakes: incoming, waiting for HELLO */
    struct p2p *p2p;
    enum peer_state state;
    bool outgoing;
    bool holds_input;  /* owes the client one client_release() */
    bool say_accepted; /* print `<name> accepts private messaging` on open */
    bool in_cb;        /* inside one of its callbacks: free on the way out */
    bool dead;
    bool named;         /* in p2p.by_name under `name` */
    bool in_handshakes; /* in p2p.handshakes */
    char name[PROTO_MAX_NAME + 1];
    char secret[PROTO_SECRET_HEX + 1]; /* until the PSK is made (incoming: until spent) */
    struct sockaddr_storage source;    /* incoming: the address it comes from */
    struct bufferevent *bev;
    struct pch ch;
    struct event *timer;
    double tokens;
    double last;
};

/* A secret the server announced for a user we accepted, good until `deadline`. */
struct expect {
    struct dnode node; /* in p2p.expects */
    char name[PROTO_MAX_NAME + 1];
    char secret[PROTO_SECRET_HEX + 1];
    double deadline;
};

/* A request waiting for the user's y/n. */
struct question {
    struct dnode node; /* in p2p.questions */
    struct p2p *p2p;
    char name[PROTO_MAX_NAME + 1];
    char secret[PROTO_SECRET_HEX + 1];
    struct event *timer;
};

/* A session whose peer vanished, reported at the next `private`. */
struct gone {
    struct gone *next;
    char name[PROTO_MAX_NAME + 1];
};

/* Every table is indexed or ordered so that offers, handshakes and answers cost O(1) however
 * many are pending (a linear scan per offer made offer churn quadratic). */
struct p2p {
    struct client *c;
    struct evconnlistener *listener;
    size_t max_handshakes;        /* incoming connections waiting for HELLO, at most */
    size_t max_per_source;        /* of which from one source address */
    struct dlist peers;           /* every connection */
    struct dlist handshakes;      /* incoming connections waiting for HELLO, oldest first */
    struct strmap by_name;        /* outgoing connections and open sessions, by peer name */
    size_t n_open;                /* open sessions */
    struct dlist expects;         /* announced secrets, soonest to expire first */
    struct strmap expect_by_name; /* the same, by name (one live secret per name) */
    struct dlist questions;       /* y/n questions, oldest first */
    struct gone *gone;
    struct ident id; /* ours, once loaded */
    bool have_id;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void copy_name(char *dst, const char *src)
{
    snprintf(dst, PROTO_MAX_NAME + 1, "%s", src);
}

/* ---- lists ---- */

static void dl_push(struct dlist *l, struct dnode *n)
{
    n->prev = l->tail;
    n->next = NULL;
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
    l->n++;
}

static void dl_remove(struct dlist *l, struct dnode *n)
{
    assert(l->n > 0);
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->prev = n->next = NULL;
    l->n--;
}

static struct peer *find_peer(const struct p2p *p, const char *name)
{
    return strmap_get(&p->by_name, name, strlen(name));
}

/* Gives `pe` its peer's name and indexes it; false when out of memory. */
static bool name_peer(struct peer *pe, const char *name)
{
    if (name != pe->name)
        copy_name(pe->name, name);
    if (strmap_put(&pe->p2p->by_name, pe->name, pe) != 0)
        return false;
    pe->named = true;
    return true;
}

static void leave_handshakes(struct peer *pe)
{
    if (!pe->in_handshakes)
        return;
    dl_remove(&pe->p2p->handshakes, &pe->hs);
    pe->in_handshakes = false;
}

static void unlink_peer(struct p2p *p, struct peer *pe)
{
    dl_remove(&p->peers, &pe->all);
    leave_handshakes(pe);
    if (pe->named)
        strmap_remove(&p->by_name, pe->name, strlen(pe->name));
    pe->named = false;
}

static void add_gone(struct p2p *p, const char *name)
{
    for (struct gone *g = p->gone; g; g = g->next)
        if (strcmp(g->name, name) == 0)
            return;
    struct gone *g = calloc(1, sizeof(*g));
    if (!g)
        return;
    copy_name(g->name, name);
    g->next = p->gone;
    p->gone = g;
}

void p2p_forget(struct p2p *p, const char *name)
{
    for (struct gone **gg = &p->gone; *gg; gg = &(*gg)->next) {
        if (strcmp((*gg)->name, name) == 0) {
            struct gone *g = *gg;
            *gg = g->next;
            free(g);
            return;
        }
    }
}

static struct expect *find_expect(const struct p2p *p, const char *name)
{
    return strmap_get(&p->expect_by_name, name, strlen(name));
}

static void expect_free(struct p2p *p, struct expect *e)
{
    strmap_remove(&p->expect_by_name, e->name, strlen(e->name));
    dl_remove(&p->expects, &e->node);
    explicit_bzero(e, sizeof(*e));
    free(e);
}

/* Every secret lives P2P_SECRET_SECS, so the oldest expire first. */
static void drop_expired(struct p2p *p)
{
    double t = now();
    while (p->expects.head) {
        struct expect *e = DL_ENTRY(p->expects.head, struct expect, node);
        if (e->deadline > t)
            return;
        expect_free(p, e);
    }
}

/* Remembers the secret announced for `name`, replacing an older one: the server brokers one
 * request per pair at a time, so only the newest secret can be presented honestly. */
static void add_expect(struct p2p *p, const char *name, const char *secret)
{
    drop_expired(p);
    struct expect *old = find_expect(p, name);
    if (old)
        expect_free(p, old);
    struct expect *e = calloc(1, sizeof(*e));
    if (!e)
        return;
    copy_name(e->name, name);
    snprintf(e->secret, sizeof(e->secret), "%s", secret);
    e->deadline = now() + P2P_SECRET_SECS;
    if (strmap_put(&p->expect_by_name, e->name, e) != 0) {
        explicit_bzero(e, sizeof(*e));
        free(e);
        return;
    }
    dl_push(&p->expects, &e->node);
}

/* Spends the secret announced for `name` when `secret` matches it. */
static bool take_expect(struct p2p *p, const char *name, const char *secret)
{
    drop_expired(p);
    struct expect *e = find_expect(p, name);
    if (!e || !text_secret_eq(e->secret, secret, PROTO_SECRET_HEX))
        return false;
    expect_free(p, e);
    return true;
}

/* ---- one peer connection ---- */

static void peer_free(struct peer *pe)
{
    if (pe->timer)
        event_free(pe->timer);
    if (pe->bev)
        bufferevent_free(pe->bev);
    pch_wipe(&pe->ch);
    explicit_bzero(pe->secret, sizeof(pe->secret));
    free(pe);
}

static void peer_write(struct peer *pe, const char *frame)
{
    bufferevent_write(pe->bev, frame, strlen(frame));
}

/* Queues one record: its 16-bit length, then `body`. */
static void peer_write_record(struct peer *pe, const uint8_t *body, size_t len)
{
    uint8_t hdr[PCH_HDR_LEN];
    pch_record_header(hdr, len);
    bufferevent_write(pe->bev, hdr, sizeof(hdr));
    bufferevent_write(pe->bev, body, len);
}

/* Queues our next handshake message; false when the channel refuses. */
static bool peer_send_handshake(struct peer *pe)
{
    uint8_t msg[PCH_HANDSHAKE_MAX];
    size_t n;
    if (pch_write_handshake(&pe->ch, NULL, 0, msg, sizeof(msg), &n) != PCH_OK)
        return false;
    peer_write_record(pe, msg, n);
    return true;
}

/* Seals the frame `text` (`len` bytes, no LF) into one record and queues it. */
static bool peer_send_frame(struct peer *pe, const char *text, size_t len)
{
    uint8_t rec[P2P_MAX_RECORD];
    size_t n;
    if (len > P2P_MAX_LINE ||
        pch_seal(&pe->ch, (const uint8_t *)text, len, rec, sizeof(rec), &n) != PCH_OK)
        return false;
    peer_write_record(pe, rec, n);
    return true;
}

/* Gives the connection up: what is queued for the peer leaves once, then it closes. */
static void peer_flush(struct peer *pe)
{
    sock_close_flushed(pe->bev);
    pe->bev = NULL;
}

static void say_end(const struct peer *pe, enum peer_end why)
{
    switch (why) {
    case END_PEER_STOP:
        ui_printf("%s stopped private messaging", pe->name);
        break;
    case END_JUNK:
        ui_printf("Error. %s sent invalid data; private messaging stopped", pe->name);
        break;
    case END_FLOOD:
        ui_printf("Error. %s sent too much too fast; private messaging stopped", pe->name);
        break;
    case END_SLOW:
        ui_printf("Error. %s is not receiving; private messaging stopped", pe->name);
        break;
    default:
        break;
    }
}

/* The one way a peer connection ends: says what the user must know, tells the server and the
 * client, and frees the peer (later, when inside its own callback). */
static void peer_end(struct peer *pe, enum peer_end why)
{
    if (pe->dead)
        return;
    struct p2p *p = pe->p2p;
    bool was_open = pe->state == PEER_OPEN;
    pe->dead = true;
    unlink_peer(p, pe);
    if (was_open)
        p->n_open--;
    if (was_open && (why == END_LOCAL_STOP || why == END_QUIT))
        peer_send_frame(pe, "STOP", 4);
    peer_flush(pe); /* what is queued (an OK, a STOP) leaves before the connection closes */
    if (was_open)
        say_end(pe, why);
    if (was_open && why == END_VANISHED)
        add_gone(p, pe->name);
    if (why == END_OLD_PEER)
        ui_printf("Error. %s's client is too old for encrypted private messaging", pe->name);
    if (pe->outgoing && !was_open && why != END_QUIT)
        ui_printf("Error. Could not connect to %s for private messaging", pe->name);
    if (pe->holds_input) {
        pe->holds_input = false;
        client_release(p->c);
    }
    if (was_open || pe->outgoing)
        client_p2p_ended(p->c, pe->name);
    if (!pe->in_cb)
        peer_free(pe);
}

/* How a connection that has not opened fails. */
static enum peer_end failed(const struct peer *pe)
{
    return pe->outgoing ? END_FAILED : END_REFUSED;
}

/* Answers `frame` (an ERR) and ends the connection; peer_end() flushes it, once. */
static void peer_refuse(struct peer *pe, const char *frame)
{
    peer_write(pe, frame);
    peer_end(pe, END_REFUSED);
}

static void peer_opened(struct peer *pe)
{
    leave_handshakes(pe);
    pe->p2p->n_open++;
    pe->state = PEER_OPEN;
    evtimer_del(pe->timer);
    p2p_forget(pe->p2p, pe->name);
    ui_remember_name(pe->name);
    pe->tokens = P2P_BURST;
    pe->last = now();
}

/* ---- keys ---- */

const struct ident *p2p_identity(struct p2p *p)
{
    char base[IDENT_PATH_MAX], err[IDENT_PATH_MAX + 128];
    if (p->have_id)
        return &p->id;
    if (!ident_base_dir(base, sizeof(base))) {
        ui_print("Error. No configuration directory (set HOME or XDG_CONFIG_HOME); "
                 "private messaging is not available");
        return NULL;
    }
    if (ident_load(&p->id, base, p->c->me, err, sizeof(err)) != 0) {
        ui_printf("Error. %s; private messaging is not available", err);
        return NULL;
    }
    p->have_id = true;
    return &p->id;
}

/* Starts the channel of `pe` as `role` for the session `initiator` -> `responder` brokered
 * with `secret`: the PSK is keyed BLAKE2b of both names under the secret, the prologue names
 * both sides, so neither a secret nor a handshake fits another pair. */
static bool peer_start_channel(struct peer *pe, enum pch_role role, const char *initiator,
                               const char *responder)
{
    const struct ident *id = p2p_identity(pe->p2p);
    if (!id)
        return false;
    uint8_t psk[PCH_KEY_LEN];
    char info[sizeof(P2P_PSK_CONTEXT) + 2 * PROTO_MAX_NAME + 2];
    char prologue[sizeof(P2P_PROLOGUE) + 2 * PROTO_MAX_NAME + 2];
    int ni = snprintf(info, sizeof(info), P2P_PSK_CONTEXT "\n%s\n%s", initiator, responder);
    int np = snprintf(prologue, sizeof(prologue), P2P_PROLOGUE "\n%s\n%s", initiator, responder);
    assert(ni > 0 && (size_t)ni < sizeof(info) && np > 0 && (size_t)np < sizeof(prologue));
    crypto_generichash(psk, sizeof(psk), (const uint8_t *)info, (size_t)ni,
                       (const uint8_t *)pe->secret, PROTO_SECRET_HEX);
    pch_init(&pe->ch, role, id->priv, psk, (const uint8_t *)prologue, (size_t)np, NULL);
    sodium_memzero(psk, sizeof(psk));
    return true;
}

/* Checks the identity key the peer proved against its pin: true to go on. A changed key ends
 * the connection with the warning. */
static bool pin_ok(struct peer *pe)
{
    uint8_t pinned[PCH_KEY_LEN];
    int rc = ident_peer_key(&pe->p2p->id, pe->name, pinned);
    if (rc > 0 && sodium_memcmp(pinned, pch_remote_static(&pe->ch), PCH_KEY_LEN) != 0) {
        ui_printf("Warning: %s proved another identity key than the one pinned for them; "
                  "private messaging refused. The server may be lying, or %s changed devices: "
                  "check with them, then `forget %s` to accept the new key",
                  pe->name, pe->name, pe->name);
        peer_end(pe, END_KEY_CHANGED);
        return false;
    }
    if (rc < 0) {
        ui_print("Error. The known_peers file cannot be read; private messaging refused");
        peer_end(pe, failed(pe));
    }
    return rc >= 0;
}

/* Pins the peer's key on first contact, once the session is confirmed: true to go on. */
static bool pin_commit(struct peer *pe)
{
    enum ident_pin r = ident_check_peer(&pe->p2p->id, pe->name, pch_remote_static(&pe->ch));
    if (r == IDENT_PIN_NEW || r == IDENT_PIN_SAME)
        return true;
    if (r == IDENT_PIN_ERROR)
        ui_print("Error. The known_peers file cannot be written; private messaging refused");
    if (r == IDENT_PIN_FULL)
        ui_printf("Error. known_peers holds %d peers already: `forget` some before private "
                  "messaging with someone new",
                  IDENT_MAX_PEERS);
    peer_end(pe, failed(pe));
    return false;
}

/* ---- the HELLO line ---- */

/* Incoming `HELLO 2 <name> Noise_XXpsk3_25519_ChaChaPoly_SHA256`, exactly (no trailing
 * space): starts the handshake when the server announced a secret for that name. */
static void on_hello(struct peer *pe, struct proto_slice rest)
{
    struct proto_slice f[4];
    const char *end = rest.ptr + rest.len;
    for (int i = 0; i < 4; i++)
        if (!proto_next_field(&rest, &f[i]))
            goto refuse;
    if (f[3].ptr + f[3].len != end || !proto_slice_eq(f[0], "HELLO") || !proto_is_name(f[2]))
        goto refuse;
    proto_slice_copy(f[2], pe->name, sizeof(pe->name));
    struct p2p *p = pe->p2p;
    drop_expired(p);
    struct expect *e = find_expect(p, pe->name);
    if (!proto_slice_eq(f[1], P2P_VERSION) || !proto_slice_eq(f[3], PCH_PROTOCOL_NAME)) {
        if (e && proto_slice_eq(f[1], "1"))
            ui_printf("Error. %s's client is too old for encrypted private messaging", pe->name);
        peer_refuse(pe, "ERR 505 unsupported version\n");
        return;
    }
    if (!e || find_peer(p, pe->name))
        goto refuse;
    snprintf(pe->secret, sizeof(pe->secret), "%s", e->secret);
    if (!peer_start_channel(pe, PCH_RESPONDER, pe->name, p->c->me))
        goto refuse;
    pe->state = PEER_HANDSHAKE;
    return;
refuse:
    peer_refuse(pe, "ERR 403 refused\n");
}

/* A line where one is expected: the HELLO, or (outgoing) a refusal in plain text. */
static void on_line(struct peer *pe, const char *line, size_t len, bool too_long)
{
    bool bad = too_long || proto_validate(line, len) != PROTO_OK;
    if (!bad && len == 0)
        return;
    if (pe->state != PEER_AWAIT_HELLO)
        peer_end(pe, len >= 7 && memcmp(line, "ERR 505", 7) == 0 ? END_OLD_PEER : END_FAILED);
    else if (bad)
        peer_refuse(pe, "ERR 400 bad request\n");
    else
        on_hello(pe, (struct proto_slice){line, len});
}

/* ---- records ---- */

/* The responder after message 3: the PSK is proven; opens when the key fits its pin and the
 * secret is still the one announced (then spent; a refused attempt spends nothing). */
static void responder_done(struct peer *pe)
{
    struct p2p *p = pe->p2p;
    if (!pin_ok(pe))
        return;
    if (find_peer(p, pe->name) || !take_expect(p, pe->name, pe->secret)) {
        peer_end(pe, END_REFUSED);
        return;
    }
    explicit_bzero(pe->secret, sizeof(pe->secret));
    if (!pin_commit(pe))
        return;
    if (!name_peer(pe, pe->name)) {
        peer_end(pe, END_REFUSED);
        return;
    }
    peer_opened(pe);
    char ok[PROTO_MAX_NAME + 8];
    int n = snprintf(ok, sizeof(ok), "OK %s", p->c->me);
    peer_send_frame(pe, ok, (size_t)n);
    ui_printf("%s started private messaging with you", pe->name);
}

static void on_handshake(struct peer *pe, const uint8_t *rec, size_t len)
{
    uint8_t payload[PCH_TAG_LEN];
    size_t n;
    if (pch_read_handshake(&pe->ch, rec, len, payload, sizeof(payload), &n) != PCH_OK || n) {
        peer_end(pe, failed(pe));
        return;
    }
    if (pe->ch.state == PCH_OPEN) {
        responder_done(pe);
        return;
    }
    if (pe->outgoing && !pin_ok(pe)) /* message 2 named the responder's key */
        return;
    if (!peer_send_handshake(pe)) {
        peer_end(pe, failed(pe));
        return;
    }
    if (pe->ch.state == PCH_OPEN)
        pe->state = PEER_AWAIT_OK;
}

/* Decrypts the record `rec` into `out` (P2P_MAX_LINE bytes); false when it is refused. */
static bool peer_unseal(struct peer *pe, const uint8_t *rec, size_t len, char *out, size_t *n)
{
    return pch_open(&pe->ch, rec, len, (uint8_t *)out, P2P_MAX_LINE, n) == PCH_OK &&
           proto_validate(out, *n) == PROTO_OK;
}

/* Outgoing: the sealed `OK <name>` that confirms the session. */
static void on_ok(struct peer *pe, const uint8_t *rec, size_t len)
{
    char text[P2P_MAX_LINE];
    char want[PROTO_MAX_NAME + 8];
    size_t n;
    int w = snprintf(want, sizeof(want), "OK %s", pe->name);
    if (!peer_unseal(pe, rec, len, text, &n) || n != (size_t)w || memcmp(text, want, n) != 0) {
        peer_end(pe, END_FAILED);
        return;
    }
    if (!pin_commit(pe))
        return;
    peer_opened(pe);
    if (pe->say_accepted)
        ui_printf("%s accepts private messaging", pe->name);
    ui_printf("Start private messaging with %s", pe->name);
    if (pe->holds_input) {
        pe->holds_input = false;
        client_release(pe->p2p->c);
    }
}

static bool within_rate(struct peer *pe)
{
    double t = now();
    pe->tokens += (t - pe->last) * P2P_RATE;
    if (pe->tokens > P2P_BURST)
        pe->tokens = P2P_BURST;
    pe->last = t;
    if (pe->tokens < 1.0)
        return false;
    pe->tokens -= 1.0;
    return true;
}

/* A record of an open session: `MSG <text>` or `STOP`. */
static void on_session(struct peer *pe, const uint8_t *rec, size_t len)
{
    char line[P2P_MAX_LINE];
    size_t n;
    if (!within_rate(pe)) {
        peer_end(pe, END_FLOOD);
    } else if (!peer_unseal(pe, rec, len, line, &n)) {
        peer_end(pe, END_JUNK);
    } else if (n > 4 && memcmp(line, "MSG ", 4) == 0) {
        display_private(pe->name, line + 4, n - 4);
    } else if (n == 4 && memcmp(line, "STOP", 4) == 0) {
        peer_end(pe, END_PEER_STOP);
    } else {
        peer_end(pe, END_JUNK);
    }
    sodium_memzero(line, sizeof(line));
}

static void on_record(struct peer *pe, const uint8_t *rec, size_t len)
{
    switch (pe->state) {
    case PEER_HANDSHAKE:
        on_handshake(pe, rec, len);
        break;
    case PEER_AWAIT_OK:
        on_ok(pe, rec, len);
        break;
    case PEER_OPEN:
        on_session(pe, rec, len);
        break;
    default:
        peer_end(pe, failed(pe));
        break;
    }
}

/* ---- input ---- */

/* Takes one line from `in`; false when none is complete yet (or the peer ended). */
static bool take_line(struct peer *pe, struct evbuffer *in)
{
    size_t eol = 0;
    struct evbuffer_ptr at = evbuffer_search_eol(in, NULL, &eol, EVBUFFER_EOL_LF);
    if (at.pos < 0 || (size_t)at.pos >= P2P_MAX_LINE) {
        if (at.pos >= 0 || evbuffer_get_length(in) >= P2P_MAX_LINE)
            on_line(pe, "", 0, true);
        return false;
    }
    char line[P2P_MAX_LINE];
    evbuffer_remove(in, line, (size_t)at.pos);
    evbuffer_drain(in, eol);
    on_line(pe, line, (size_t)at.pos, false);
    return !pe->dead;
}

/* Takes one record from `in`; false when none is complete yet (or the peer ended). */
static bool take_record(struct peer *pe, struct evbuffer *in)
{
    uint8_t hdr[PCH_HDR_LEN], rec[P2P_MAX_RECORD];
    size_t body;
    if (evbuffer_copyout(in, hdr, sizeof(hdr)) < (ev_ssize_t)sizeof(hdr))
        return false;
    if (pch_record_len(hdr, sizeof(hdr), P2P_MAX_RECORD, &body) < 0) {
        peer_end(pe, pe->state == PEER_OPEN ? END_JUNK : failed(pe));
        return false;
    }
    if (evbuffer_get_length(in) < sizeof(hdr) + body)
        return false;
    evbuffer_drain(in, sizeof(hdr));
    evbuffer_remove(in, rec, body);
    on_record(pe, rec, body);
    return !pe->dead;
}

/* Lines come before the handshake: the HELLO, or a refusal (which starts with a letter, where
 * a record starts with the high byte of a length under 256). */
static bool take_input(struct peer *pe, struct evbuffer *in)
{
    uint8_t first;
    if (evbuffer_copyout(in, &first, 1) < 1)
        return false;
    bool line = pe->state == PEER_AWAIT_HELLO ||
                (pe->outgoing && pe->state == PEER_HANDSHAKE && first != 0);
    return line ? take_line(pe, in) : take_record(pe, in);
}

static void peer_read_cb(struct bufferevent *bev, void *arg)
{
    struct peer *pe = arg;
    pe->in_cb = true;
    while (!pe->dead && take_input(pe, bufferevent_get_input(bev)))
        ;
    pe->in_cb = false;
    if (pe->dead)
        peer_free(pe);
}

/* Outgoing, connected: the HELLO line and handshake message 1 go at once. */
static void peer_connected(struct peer *pe)
{
    struct p2p *p = pe->p2p;
    char hello[PROTO_MAX_NAME + sizeof(PCH_PROTOCOL_NAME) + 16];
    sock_nodelay(pe->bev);
    bufferevent_enable(pe->bev, EV_READ);
    bool started = peer_start_channel(pe, PCH_INITIATOR, p->c->me, pe->name);
    explicit_bzero(pe->secret, sizeof(pe->secret));
    if (!started) {
        peer_end(pe, END_FAILED);
        return;
    }
    pe->state = PEER_HANDSHAKE;
    snprintf(hello, sizeof(hello), "HELLO " P2P_VERSION " %s " PCH_PROTOCOL_NAME "\n", p->c->me);
    peer_write(pe, hello);
    if (!peer_send_handshake(pe))
        peer_end(pe, END_FAILED);
}

static void peer_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct peer *pe = arg;
    pe->in_cb = true;
    if ((what & BEV_EVENT_CONNECTED) && pe->state == PEER_CONNECTING) {
        peer_connected(pe);
    } else if (!(what & BEV_EVENT_CONNECTED)) {
        if (pe->state == PEER_OPEN)
            peer_end(pe, END_VANISHED);
        else
            peer_end(pe, failed(pe));
    }
    pe->in_cb = false;
    if (pe->dead)
        peer_free(pe);
}

static void peer_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct peer *pe = arg;
    peer_end(pe, pe->outgoing ? END_FAILED : END_REFUSED);
}

static struct peer *peer_new(struct p2p *p, struct bufferevent *bev)
{
    struct peer *pe = calloc(1, sizeof(*pe));
    if (!pe)
        goto fail;
    pe->p2p = p;
    pe->bev = bev;
    pe->timer = evtimer_new(bufferevent_get_base(bev), peer_timeout_cb, pe);
    if (!pe->timer)
        goto fail;
    struct timeval tv = {P2P_HANDSHAKE_SECS, 0};
    evtimer_add(pe->timer, &tv);
    bufferevent_setcb(bev, peer_read_cb, NULL, peer_event_cb, pe);
    dl_push(&p->peers, &pe->all);
    return pe;
fail:
    if (pe)
        peer_free(pe);
    else
        bufferevent_free(bev);
    return NULL;
}

/* ---- incoming connections ---- */

/* Returns true when `a` and `b` are the same source address (the port does not count). */
static bool same_source(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
                      &((const struct sockaddr_in *)b)->sin_addr, sizeof(struct in_addr)) == 0;
    if (a->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
    return true; /* other families (a socketpair): all one source */
}

/* Returns the oldest handshake from `src` (or NULL) and counts them in `*n`. */
static struct peer *oldest_from(const struct p2p *p, const struct sockaddr_storage *src, size_t *n)
{
    struct peer *oldest = NULL;
    *n = 0;
    for (struct dnode *d = p->handshakes.head; d; d = d->next) {
        struct peer *pe = DL_ENTRY(d, struct peer, hs);
        if (!same_source(&pe->source, src))
            continue;
        if (!oldest)
            oldest = pe;
        (*n)++;
    }
    return oldest;
}

/* Makes room for one more handshake from `src`: a source at its limit loses its own oldest
 * one, else a full table loses its oldest one. Idle connections thus never lock anyone out
 * (a genuine peer sends HELLO at once), and one source cannot push out the others. */
static void make_room(struct p2p *p, const struct sockaddr_storage *src)
{
    size_t from_src;
    struct peer *own = oldest_from(p, src, &from_src);
    if (from_src >= p->max_per_source) {
        assert(own);
        peer_end(own, END_EVICTED);
    } else if (p->handshakes.n >= p->max_handshakes) {
        peer_end(DL_ENTRY(p->handshakes.head, struct peer, hs), END_EVICTED);
    }
}

/* Takes the connection `bev` from `src` (`len` bytes) as a handshake waiting for HELLO. */
static struct peer *incoming_peer(struct p2p *p, struct bufferevent *bev,
                                  const struct sockaddr *src, size_t len)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    memcpy(&ss, src, len < sizeof(ss) ? len : sizeof(ss));
    make_room(p, &ss);
    struct peer *pe = peer_new(p, bev);
    if (!pe)
        return NULL;
    pe->state = PEER_AWAIT_HELLO;
    pe->source = ss;
    dl_push(&p->handshakes, &pe->hs);
    pe->in_handshakes = true;
    sock_nodelay(bev);
    bufferevent_enable(bev, EV_READ);
    return pe;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr,
                      int addrlen, void *arg)
{
    struct p2p *p = arg;
    struct bufferevent *bev =
        bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    incoming_peer(p, bev, addr, addrlen > 0 ? (size_t)addrlen : 0);
}

int p2p_listen(struct p2p *p, const struct sockaddr *local, socklen_t len)
{
    struct sockaddr_storage ss;
    if (len > sizeof(ss))
        return -1;
    memcpy(&ss, local, len);
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = 0;
    else if (ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&ss)->sin6_port = 0;
    else
        return -1;
    p->listener = evconnlistener_new_bind(p->c->base, accept_cb, p, LEV_OPT_CLOSE_ON_FREE, 16,
                                          (struct sockaddr *)&ss, (int)len);
    if (!p->listener)
        return -1;
    socklen_t n = sizeof(ss);
    if (getsockname(evconnlistener_get_fd(p->listener), (struct sockaddr *)&ss, &n) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* ---- requests from other users ---- */

static void accept_offer(struct p2p *p, const char *from, const char *secret)
{
    add_expect(p, from, secret);
    link_request(p->c->link, NULL, NULL, "P2PACCEPT %s", from);
}

static void question_free(struct question *q)
{
    if (q->timer)
        event_free(q->timer);
    explicit_bzero(q->secret, sizeof(q->secret));
    free(q);
}

static struct question *oldest_question(const struct p2p *p)
{
    return p->questions.head ? DL_ENTRY(p->questions.head, struct question, node) : NULL;
}

static void question_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct question *q = arg;
    struct p2p *p = q->p2p;
    dl_remove(&p->questions, &q->node);
    ui_printf("Private messaging request from %s expired", q->name);
    question_free(q);
    client_refresh_prompt(p->c);
}

void p2p_offer(struct p2p *p, const char *from, const char *secret, bool ask)
{
    if (find_peer(p, from)) {
        link_request(p->c->link, NULL, NULL, "P2PDECLINE %s", from);
        return;
    }
    if (!ask) {
        accept_offer(p, from, secret);
        return;
    }
    struct question *q = calloc(1, sizeof(*q));
    if (!q)
        return;
    q->p2p = p;
    copy_name(q->name, from);
    snprintf(q->secret, sizeof(q->secret), "%s", secret);
    q->timer = evtimer_new(p->c->base, question_timeout_cb, q);
    struct timeval tv = {P2P_ANSWER_SECS, 0};
    if (!q->timer || evtimer_add(q->timer, &tv) != 0) {
        question_free(q);
        return;
    }
    dl_push(&p->questions, &q->node);
    ui_remember_name(from);
    if (oldest_question(p) == q)
        client_refresh_prompt(p->c);
}

const char *p2p_question(const struct p2p *p)
{
    const struct question *q = oldest_question(p);
    return q ? q->name : NULL;
}

void p2p_answer(struct p2p *p, bool yes)
{
    struct question *q = oldest_question(p);
    if (!q)
        return;
    dl_remove(&p->questions, &q->node);
    if (yes)
        accept_offer(p, q->name, q->secret);
    else
        link_request(p->c->link, NULL, NULL, "P2PDECLINE %s", q->name);
    question_free(q);
    client_refresh_prompt(p->c);
}

/* ---- our own sessions ---- */

static struct bufferevent *connect_to(struct p2p *p, const char *host, const char *port)
{
    struct evutil_addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
    if (evutil_getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
        return NULL;
    struct bufferevent *bev = bufferevent_socket_new(p->c->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev && bufferevent_socket_connect(bev, ai->ai_addr, (int)ai->ai_addrlen) != 0) {
        bufferevent_free(bev);
        bev = NULL;
    }
    evutil_freeaddrinfo(ai);
    return bev;
}

void p2p_connect(struct p2p *p, const char *name, const char *host, const char *port,
                 const char *secret, bool say_accepted)
{
    struct bufferevent *bev = find_peer(p, name) ? NULL : connect_to(p, host, port);
    struct peer *pe = bev ? peer_new(p, bev) : NULL;
    if (pe && !name_peer(pe, name)) {
        unlink_peer(p, pe);
        peer_free(pe);
        pe = NULL;
    }
    if (!pe) {
        ui_printf("Error. Could not connect to %s for private messaging", name);
        client_p2p_ended(p->c, name);
        client_release(p->c);
        return;
    }
    pe->state = PEER_CONNECTING;
    pe->outgoing = true;
    pe->holds_input = true;
    pe->say_accepted = say_accepted;
    snprintf(pe->secret, sizeof(pe->secret), "%s", secret);
}

enum p2p_session p2p_session(const struct p2p *p, const char *name)
{
    const struct peer *pe = find_peer(p, name);
    if (pe)
        return pe->state == PEER_OPEN ? P2P_OPEN : P2P_PENDING;
    for (const struct gone *g = p->gone; g; g = g->next)
        if (strcmp(g->name, name) == 0)
            return P2P_GONE;
    return P2P_NONE;
}

int p2p_send(struct p2p *p, const char *name, const char *text)
{
    struct peer *pe = find_peer(p, name);
    if (!pe || pe->state != PEER_OPEN)
        return -1;
    if (evbuffer_get_length(bufferevent_get_output(pe->bev)) > P2P_MAX_OUTPUT) {
        peer_end(pe, END_SLOW);
        return -1;
    }
    char frame[P2P_MAX_LINE];
    int n = snprintf(frame, sizeof(frame), "MSG %s", text);
    bool sent = n > 0 && (size_t)n < sizeof(frame) && peer_send_frame(pe, frame, (size_t)n);
    sodium_memzero(frame, sizeof(frame));
    return sent ? 0 : -1;
}

void p2p_stop(struct p2p *p, const char *name)
{
    struct peer *pe = find_peer(p, name);
    if (pe && pe->state == PEER_OPEN)
        peer_end(pe, END_LOCAL_STOP);
    p2p_forget(p, name);
}

void p2p_stop_all(struct p2p *p)
{
    while (p->peers.head)
        peer_end(DL_ENTRY(p->peers.head, struct peer, all), END_QUIT);
    struct question *q;
    while ((q = oldest_question(p)) != NULL) {
        dl_remove(&p->questions, &q->node);
        question_free(q);
    }
    while (p->expects.head)
        expect_free(p, DL_ENTRY(p->expects.head, struct expect, node));
}

size_t p2p_open_count(const struct p2p *p)
{
    return p->n_open;
}

struct p2p *p2p_new(struct client *c, size_t max_handshakes, size_t max_per_source)
{
    assert(max_handshakes > 0 && max_per_source > 0);
    struct p2p *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->c = c;
    p->max_handshakes = max_handshakes;
    p->max_per_source = max_per_source;
    strmap_init(&p->by_name);
    strmap_init(&p->expect_by_name);
    return p;
}

void p2p_free(struct p2p *p)
{
    if (!p)
        return;
    while (p->peers.head) {
        struct peer *pe = DL_ENTRY(p->peers.head, struct peer, all);
        unlink_peer(p, pe);
        peer_free(pe);
    }
    p2p_stop_all(p);
    struct gone *g;
    while ((g = p->gone) != NULL) {
        p->gone = g->next;
        free(g);
    }
    if (p->listener)
        evconnlistener_free(p->listener);
    ident_wipe(&p->id);
    strmap_free(&p->by_name);
    strmap_free(&p->expect_by_name);
    free(p);
}
