/* The server's side of private (P2P) sessions: it checks a request, hands both clients a
 * one-time secret, tells the initiator where to connect and remembers open sessions. The
 * private messages themselves never pass through the server.
 *
 * Every look-up is O(1) and every clean-up O(what the session itself holds): requests and
 * open sessions are indexed by the pair of user ids (pairmap.h), each session keeps lists of
 * the requests it made, the requests made to it and its open sessions, and requests wait in one
 * list by age (they all have the same time-out, so it is ordered by deadline).
 *
 * In a cluster one end may be on another node: its `end` is NULL, its `user` says who it is,
 * and the two nodes keep the request or the session in step through the event stream (a
 * private-chat notice: `P <node> <from> <to> <verb> ...`, cluster.h), each holding the record
 * of its own end. */
#include <assert.h>
#include <hiredis/hiredis.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/cluster.h"
#include "server/metrics.h"
#include "server/log.h"
#include "server/presence.h"
#include "server/server.h"

/* How long the target may take to answer a request. */
#define P2P_ANSWER_MS 60000

/* The two ends of a request, also the indexes of its links in their sessions' lists. */
enum p2p_end {
    P2P_FROM = 0, /* the initiator: in its p2p_req[P2P_FROM] list */
    P2P_TO = 1,   /* the target: in its p2p_req[P2P_TO] list */
};

/* A request waiting for the target's answer. */
struct p2p_request {
    struct p2p_request *prev[2], *next[2]; /* in end[i]'s p2p_req[i] list */
    struct p2p_request *older, *newer;     /* in the server's list by age */
    struct session *end[2];                /* NULL: on another node */
    struct user *user[2];
    int64_t deadline_ms;
    char tag[PROTO_MAX_TAG + 1];
    char secret[PROTO_SECRET_HEX + 1];
};

/* An open private session between two users (through their online sessions). */
struct p2p_pair {
    struct p2p_pair *prev[2], *next[2]; /* in end[i]'s p2p_pairs list */
    struct session *end[2];             /* NULL: on another node */
    struct user *user[2];
};

/* ---- requests ---- */

static struct p2p_request *request_find(struct server *srv, const struct user *from,
                                        const struct user *to)
{
    return pairmap_get(&srv->p2p_requests, from->id, to->id);
}

static void request_link(struct server *srv, struct p2p_request *req)
{
    for (int i = 0; i < 2; i++) {
        struct session *s = req->end[i];
        req->prev[i] = req->next[i] = NULL;
        if (!s)
            continue;
        req->next[i] = s->p2p_req[i];
        if (s->p2p_req[i])
            s->p2p_req[i]->prev[i] = req;
        s->p2p_req[i] = req;
    }
    req->older = srv->p2p_newest;
    req->newer = NULL;
    if (srv->p2p_newest)
        srv->p2p_newest->newer = req;
    else
        srv->p2p_oldest = req;
    srv->p2p_newest = req;
}

static void request_unlink(struct server *srv, struct p2p_request *req)
{
    for (int i = 0; i < 2; i++) {
        if (!req->end[i])
            continue;
        if (req->prev[i])
            req->prev[i]->next[i] = req->next[i];
        else
            req->end[i]->p2p_req[i] = req->next[i];
        if (req->next[i])
            req->next[i]->prev[i] = req->prev[i];
    }
    if (req->older)
        req->older->newer = req->newer;
    else
        srv->p2p_oldest = req->newer;
    if (req->newer)
        req->newer->older = req->older;
    else
        srv->p2p_newest = req->older;
}

/* Frees a request, wiping its secret (the private session's pre-shared key). */
static void request_free(void *req)
{
    struct p2p_request *r = req;
    sodium_memzero(r->secret, sizeof(r->secret));
    free(r);
}

/* Forgets a request everywhere and frees it. */
static void request_drop(struct server *srv, struct p2p_request *req)
{
    void *was = pairmap_remove(&srv->p2p_requests, req->user[P2P_FROM]->id, req->user[P2P_TO]->id);
    assert(was == req);
    (void)was;
    request_unlink(srv, req);
    request_free(req);
}

/* Makes and indexes a request from `from` to `to`, through sessions `s` and `peer` (either
 * NULL when on another node), with a new secret (`secret` NULL) or the one given; NULL when
 * memory ran out. */
static struct p2p_request *request_new(struct server *srv, struct user *from, struct user *to,
                                       struct session *s, struct session *peer, const char *tag,
                                       const char *secret)
{
    struct p2p_request *req = calloc(1, sizeof(*req));
    if (!req || pairmap_put(&srv->p2p_requests, from->id, to->id, req) < 0) {
        free(req);
        return NULL;
    }
    if (secret) {
        snprintf(req->secret, sizeof(req->secret), "%s", secret);
    } else {
        unsigned char raw[PROTO_SECRET_HEX / 2];
        randombytes_buf(raw, sizeof(raw));
        sodium_bin2hex(req->secret, sizeof(req->secret), raw, sizeof(raw));
    }
    req->end[P2P_FROM] = s;
    req->end[P2P_TO] = peer;
    req->user[P2P_FROM] = from;
    req->user[P2P_TO] = to;
    req->deadline_ms = server_now_ms() + P2P_ANSWER_MS;
    snprintf(req->tag, sizeof(req->tag), "%s", tag);
    request_link(srv, req);
    return req;
}

/* ---- open sessions ---- */

/* The key of a pair: the lower id first, so both directions find it. */
static void pair_key(const struct user *a, const struct user *b, uint32_t *lo, uint32_t *hi)
{
    *lo = a->id < b->id ? a->id : b->id;
    *hi = a->id < b->id ? b->id : a->id;
}

static struct p2p_pair *pair_find(struct server *srv, const struct user *a, const struct user *b)
{
    uint32_t lo, hi;
    pair_key(a, b, &lo, &hi);
    return pairmap_get(&srv->p2p_pairs, lo, hi);
}

/* Which end of `pair` session `s` is. */
static int pair_side(const struct p2p_pair *pair, const struct session *s)
{
    assert(pair->end[0] == s || pair->end[1] == s);
    return pair->end[0] == s ? 0 : 1;
}

static void pair_link(struct p2p_pair *pair)
{
    for (int i = 0; i < 2; i++) {
        struct session *s = pair->end[i];
        if (!s)
            continue;
        struct p2p_pair *head = s->p2p_pairs;
        pair->prev[i] = NULL;
        pair->next[i] = head;
        if (head)
            head->prev[pair_side(head, s)] = pair;
        s->p2p_pairs = pair;
    }
}

static void pair_unlink(struct p2p_pair *pair)
{
    for (int i = 0; i < 2; i++) {
        struct session *s = pair->end[i];
        if (!s)
            continue;
        struct p2p_pair *prev = pair->prev[i], *next = pair->next[i];
        if (prev)
            prev->next[pair_side(prev, s)] = next;
        else
            s->p2p_pairs = next;
        if (next)
            next->prev[pair_side(next, s)] = prev;
    }
}

/* Forgets an open session everywhere and frees it. */
static void pair_drop(struct server *srv, struct p2p_pair *pair)
{
    uint32_t lo, hi;
    pair_key(pair->user[0], pair->user[1], &lo, &hi);
    void *was = pairmap_remove(&srv->p2p_pairs, lo, hi);
    assert(was == pair);
    (void)was;
    pair_unlink(pair);
    free(pair);
}

/* Records an open session between the ends of `req` (one may be on another node). Returns 0,
 * or -1 when memory ran out. */
static int pair_new(struct server *srv, const struct p2p_request *req)
{
    struct p2p_pair *pair = calloc(1, sizeof(*pair));
    uint32_t lo, hi;
    pair_key(req->user[0], req->user[1], &lo, &hi);
    if (!pair || pairmap_put(&srv->p2p_pairs, lo, hi, pair) < 0) {
        free(pair);
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        pair->end[i] = req->end[i];
        pair->user[i] = req->user[i];
    }
    pair_link(pair);
    metrics_count(METRICS_P2P_BROKERED);
    return 0;
}

/* ---- requests from clients ---- */

void p2p_listen(struct session *s, const struct request *r)
{
    const char *tag = r->tag;
    uint64_t port;
    if (!proto_parse_u64(r->arg[0], &port) || port == 0 || port > 65535) {
        session_err(s, tag, PROTO_E_BAD_REQUEST);
        return;
    }
    s->p2p_port = (uint16_t)port;
    session_ok(s, tag, NULL);
}

/* ---- the other node's end ---- */

static void told(void *arg, const struct redisReply *r)
{
    (void)arg;
    if (!r)
        log_error("redis: a private-chat notice could not reach the other node");
}

/* Tells the node of the other end: `<from> <to> <verb> ...` (a private-chat notice). */
static void tell(struct server *srv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tell(struct server *srv, const char *fmt, ...)
{
    char text[PROTO_MAX_NAME * 2 + PROTO_SECRET_HEX + 96];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(text))
        return;
    const char *args[] = {text};
    cluster_op(srv->cluster, 'V', 1, args, NULL, told, NULL);
    sodium_memzero(text, sizeof(text)); /* it may hold a secret */
}

/* Answers the initiator of `req` with `code` (here, or on its node) and forgets the request. */
static void refuse(struct server *srv, struct p2p_request *req, int code)
{
    if (req->end[P2P_FROM])
        session_err(req->end[P2P_FROM], req->tag, code);
    else
        tell(srv, "%s %s D %d", req->user[P2P_FROM]->name, req->user[P2P_TO]->name, code);
    request_drop(srv, req);
}

/* ---- requests from clients ---- */

/* Returns why `me` cannot start a session with `to`, or PROTO_OK. */
static int start_refusal(struct server *srv, const struct user *me, const struct user *to)
{
    if (!to || !to->has_account)
        return PROTO_E_NO_SUCH_USER;
    if (to == me)
        return PROTO_E_SELF;
    struct session *peer = presence_session(to);
    if (!peer && !(srv->cluster && to->elsewhere))
        return PROTO_E_OFFLINE;
    /* A target elsewhere: its node judges its blocks (this node's view of them may lag). */
    if (peer && directory_blocks(to, me))
        return PROTO_E_BLOCKED_BY_PEER;
    if (directory_blocks(me, to))
        return PROTO_E_BLOCKING_PEER;
    if (pair_find(srv, me, to) || request_find(srv, me, to) || request_find(srv, to, me))
        return PROTO_E_P2P_EXISTS;
    if (peer && peer->p2p_port == 0)
        return PROTO_E_P2P_UNAVAILABLE; /* on another node, that node answers it */
    return PROTO_OK;
}

/* Hands a request to its target's session here. */
static void ask_target(struct server *srv, struct p2p_request *req)
{
    session_event(req->end[P2P_TO], "P2PREQ %s %s %d", req->user[P2P_FROM]->name, req->secret,
                  srv->cfg.p2p_consent ? 1 : 0);
}

void p2p_start(struct session *s, const struct request *r)
{
    struct server *srv = s->srv;
    const char *tag = r->tag;
    struct user *to = directory_find(&srv->dir, r->arg[0].ptr, r->arg[0].len);
    int refusal = start_refusal(srv, s->user, to);
    if (refusal != PROTO_OK) {
        session_err(s, tag, refusal);
        return;
    }
    struct session *peer = presence_session(to);
    struct p2p_request *req = request_new(srv, s->user, to, s, peer, tag, NULL);
    if (!req) {
        session_err(s, tag, PROTO_E_STORE_UNAVAILABLE);
        return;
    }
    if (peer)
        ask_target(srv, req);
    else
        tell(srv, "%s %s Q %s", s->user->name, to->name, req->secret);
    if (srv->cfg.p2p_consent)
        session_event(s, "P2PWAIT %s", to->name); /* the reply waits for a person */
    log_info("%s asks %s for a private session", s->user->name, to->name);
}

/* Finds the request from the user named in r->arg[0] to `s`; answers 403 when there is none. */
static struct p2p_request *answered_request(struct session *s, const struct request *r,
                                            const char *tag)
{
    struct user *from = directory_find(&s->srv->dir, r->arg[0].ptr, r->arg[0].len);
    struct p2p_request *req = from ? request_find(s->srv, from, s->user) : NULL;
    if (!req)
        session_err(s, tag, PROTO_E_NOT_NOW);
    return req;
}

/* Tells the initiator of an accepted request where to connect. */
static void tell_initiator(struct server *srv, struct p2p_request *req, const char *addr,
                           unsigned port)
{
    int consent = srv->cfg.p2p_consent ? 1 : 0;
    if (req->end[P2P_FROM])
        session_ok(req->end[P2P_FROM], req->tag, "%s %u %s %d", addr, port, req->secret, consent);
    else
        tell(srv, "%s %s Y %s %u", req->user[P2P_FROM]->name, req->user[P2P_TO]->name, addr, port);
}

void p2p_accept(struct session *s, const struct request *r)
{
    struct server *srv = s->srv;
    const char *tag = r->tag;
    struct p2p_request *req = answered_request(s, r, tag);
    if (!req)
        return;
    if (pair_new(srv, req) < 0) {
        session_err(s, tag, PROTO_E_STORE_UNAVAILABLE);
        return;
    }
    session_ok(s, tag, NULL);
    tell_initiator(srv, req, net_peer_addr(s->conn), (unsigned)s->p2p_port);
    request_drop(srv, req);
}

void p2p_decline(struct session *s, const struct request *r)
{
    const char *tag = r->tag;
    struct p2p_request *req = answered_request(s, r, tag);
    if (!req)
        return;
    session_ok(s, tag, NULL);
    refuse(s->srv, req, PROTO_E_P2P_DECLINED);
}

/* Forgets an open session; its other end's node is told when it is elsewhere. */
static void pair_end(struct server *srv, struct p2p_pair *pair)
{
    if (!pair->end[0] || !pair->end[1])
        tell(srv, "%s %s Z", pair->user[0]->name, pair->user[1]->name);
    pair_drop(srv, pair);
}

void p2p_end(struct session *s, const struct request *r)
{
    const char *tag = r->tag;
    struct user *peer = directory_find(&s->srv->dir, r->arg[0].ptr, r->arg[0].len);
    struct p2p_pair *pair = peer ? pair_find(s->srv, s->user, peer) : NULL;
    if (pair)
        pair_end(s->srv, pair);
    session_ok(s, tag, NULL);
}

/* ---- what the other node's end did ---- */

/* Why `to`, online here, cannot be asked by `from` (elsewhere), or PROTO_OK. This node judges
 * the blocks of `to` (the initiator's node, whose view of them may lag, left them to it), the
 * initiator's node those of `from`. */
static int relay_refusal(struct server *srv, const struct user *from, const struct user *to,
                         const struct session *peer)
{
    if (directory_blocks(to, from))
        return PROTO_E_BLOCKED_BY_PEER;
    if (pair_find(srv, from, to) || request_find(srv, from, to) || request_find(srv, to, from))
        return PROTO_E_P2P_EXISTS;
    return peer->p2p_port == 0 ? PROTO_E_P2P_UNAVAILABLE : PROTO_OK;
}

/* A request from `from` (elsewhere) to `to` (maybe here): asks `to`, or says why not. */
static void relay_request(struct server *srv, struct user *from, struct user *to,
                          const char *secret)
{
    struct session *peer = presence_session(to);
    if (!peer)
        return; /* its node answers (a session here ended: that told it) or it is not ours */
    int code = relay_refusal(srv, from, to, peer);
    struct p2p_request *req =
        code == PROTO_OK ? request_new(srv, from, to, NULL, peer, "-", secret) : NULL;
    if (!req) {
        tell(srv, "%s %s D %d", from->name, to->name,
             code == PROTO_OK ? PROTO_E_STORE_UNAVAILABLE : code);
        return;
    }
    ask_target(srv, req);
}

/* The codes a refusal from the other node may carry. */
static bool refusal_code(long code)
{
    return code == PROTO_E_OFFLINE || code == PROTO_E_P2P_EXISTS || code == PROTO_E_P2P_DECLINED ||
           code == PROTO_E_P2P_UNAVAILABLE || code == PROTO_E_STORE_UNAVAILABLE ||
           code == PROTO_E_BLOCKED_BY_PEER;
}

/* An answer to a request made here (the initiator's node). */
static void relay_answer(struct server *srv, struct p2p_request *req, char verb, char *rest)
{
    if (!req || !req->end[P2P_FROM] || req->end[P2P_TO])
        return;
    if (verb == 'D') {
        long code = strtol(rest, NULL, 10);
        session_err(req->end[P2P_FROM], req->tag,
                    refusal_code(code) ? (int)code : PROTO_E_P2P_DECLINED);
        request_drop(srv, req);
        return;
    }
    char *sp = strchr(rest, ' ');
    if (!sp || pair_new(srv, req) < 0)
        return;
    *sp = '\0';
    tell_initiator(srv, req, rest, (unsigned)strtoul(sp + 1, NULL, 10));
    request_drop(srv, req);
}

void p2p_relay(struct server *srv, const char *from_name, const char *to_name, const char *text)
{
    struct user *from = directory_add(&srv->dir, from_name);
    struct user *to = directory_add(&srv->dir, to_name);
    char buf[PROTO_SECRET_HEX + 96];
    snprintf(buf, sizeof(buf), "%s", text);
    if (!from || !to || !buf[0] || (buf[1] != ' ' && buf[1] != '\0'))
        return;
    char verb = buf[0], *rest = buf[1] ? buf + 2 : buf + 1;
    struct p2p_request *req = request_find(srv, from, to);
    struct p2p_pair *pair;
    switch (verb) {
    case 'Q':
        relay_request(srv, from, to, rest);
        break;
    case 'Y':
    case 'D':
        relay_answer(srv, req, verb, rest);
        break;
    case 'W': /* the initiator went, or its wait ended */
        if (req && !req->end[P2P_FROM])
            request_drop(srv, req);
        break;
    case 'Z':
        pair = pair_find(srv, from, to);
        if (pair && (!pair->end[0] || !pair->end[1]))
            pair_drop(srv, pair);
        break;
    default:
        break;
    }
    sodium_memzero(buf, sizeof(buf));
}

/* ---- clean-up ---- */

void p2p_session_gone(struct session *s)
{
    struct server *srv = s->srv;
    while (s->p2p_req[P2P_TO])
        refuse(srv, s->p2p_req[P2P_TO], PROTO_E_OFFLINE);
    while (s->p2p_req[P2P_FROM]) {
        struct p2p_request *req = s->p2p_req[P2P_FROM];
        if (!req->end[P2P_TO])
            tell(srv, "%s %s W", req->user[P2P_FROM]->name, req->user[P2P_TO]->name);
        request_drop(srv, req);
    }
    while (s->p2p_pairs)
        pair_end(srv, s->p2p_pairs);
}

void p2p_expire(struct server *srv, int64_t now_ms)
{
    while (srv->p2p_oldest && srv->p2p_oldest->deadline_ms <= now_ms) {
        struct p2p_request *req = srv->p2p_oldest;
        if (!req->end[P2P_FROM]) { /* the initiator's node answers at its own deadline */
            request_drop(srv, req);
            continue;
        }
        session_err(req->end[P2P_FROM], req->tag, PROTO_E_P2P_DECLINED);
        if (!req->end[P2P_TO])
            tell(srv, "%s %s W", req->user[P2P_FROM]->name, req->user[P2P_TO]->name);
        request_drop(srv, req);
    }
}

void p2p_free(struct server *srv)
{
    pairmap_free(&srv->p2p_requests, request_free);
    pairmap_free(&srv->p2p_pairs, free);
    srv->p2p_oldest = srv->p2p_newest = NULL;
}
