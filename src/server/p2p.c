/* The server's side of private (P2P) sessions: it checks a request, hands both clients a
 * one-time secret, tells the initiator where to connect and remembers open sessions. The
 * private messages themselves never pass through the server.
 *
 * Every look-up is O(1) and every clean-up O(what the session itself holds): requests and
 * open sessions are indexed by the pair of user ids (pairmap.h), each session keeps lists of
 * the requests it made, the requests made to it and its open sessions, and requests wait in one
 * list by age (they all have the same time-out, so it is ordered by deadline). */
#include <assert.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

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
    struct session *end[2];
    int64_t deadline_ms;
    char tag[PROTO_MAX_TAG + 1];
    char secret[PROTO_SECRET_HEX + 1];
};

/* An open private session between two users (through their online sessions). */
struct p2p_pair {
    struct p2p_pair *prev[2], *next[2]; /* in end[i]'s p2p_pairs list */
    struct session *end[2];
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
        req->prev[i] = NULL;
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
    void *was = pairmap_remove(&srv->p2p_requests, req->end[P2P_FROM]->user->id,
                               req->end[P2P_TO]->user->id);
    assert(was == req);
    (void)was;
    request_unlink(srv, req);
    request_free(req);
}

/* Makes and indexes a request from `s` to `to`; NULL when memory ran out. */
static struct p2p_request *request_new(struct session *s, struct session *to, const char *tag)
{
    struct server *srv = s->srv;
    struct p2p_request *req = calloc(1, sizeof(*req));
    if (!req || pairmap_put(&srv->p2p_requests, s->user->id, to->user->id, req) < 0) {
        free(req);
        return NULL;
    }
    unsigned char raw[PROTO_SECRET_HEX / 2];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(req->secret, sizeof(req->secret), raw, sizeof(raw));
    req->end[P2P_FROM] = s;
    req->end[P2P_TO] = to;
    req->deadline_ms = server_now_ms() + P2P_ANSWER_MS;
    memcpy(req->tag, tag, sizeof(req->tag));
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
    pair_key(pair->end[0]->user, pair->end[1]->user, &lo, &hi);
    void *was = pairmap_remove(&srv->p2p_pairs, lo, hi);
    assert(was == pair);
    (void)was;
    pair_unlink(pair);
    free(pair);
}

/* Records an open session between `a` and `b`. Returns 0, or -1 when memory ran out. */
static int pair_new(struct server *srv, struct session *a, struct session *b)
{
    struct p2p_pair *pair = calloc(1, sizeof(*pair));
    uint32_t lo, hi;
    pair_key(a->user, b->user, &lo, &hi);
    if (!pair || pairmap_put(&srv->p2p_pairs, lo, hi, pair) < 0) {
        free(pair);
        return -1;
    }
    pair->end[0] = a;
    pair->end[1] = b;
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

/* Returns why `me` cannot start a session with `to`, or PROTO_OK. */
static int start_refusal(struct server *srv, const struct user *me, const struct user *to)
{
    if (!to || !to->has_account)
        return PROTO_E_NO_SUCH_USER;
    if (to == me)
        return PROTO_E_SELF;
    struct session *peer = presence_session(to);
    if (!peer)
        return PROTO_E_OFFLINE;
    if (directory_blocks(to, me))
        return PROTO_E_BLOCKED_BY_PEER;
    if (directory_blocks(me, to))
        return PROTO_E_BLOCKING_PEER;
    if (pair_find(srv, me, to) || request_find(srv, me, to) || request_find(srv, to, me))
        return PROTO_E_P2P_EXISTS;
    if (peer->p2p_port == 0)
        return PROTO_E_P2P_UNAVAILABLE;
    return PROTO_OK;
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
    struct p2p_request *req = request_new(s, peer, tag);
    if (!req) {
        session_err(s, tag, PROTO_E_STORE_UNAVAILABLE);
        return;
    }
    session_event(peer, "P2PREQ %s %s %d", s->user->name, req->secret,
                  srv->cfg.p2p_consent ? 1 : 0);
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

void p2p_accept(struct session *s, const struct request *r)
{
    struct server *srv = s->srv;
    const char *tag = r->tag;
    struct p2p_request *req = answered_request(s, r, tag);
    if (!req)
        return;
    struct session *from = req->end[P2P_FROM];
    if (pair_new(srv, from, s) < 0) {
        session_err(s, tag, PROTO_E_STORE_UNAVAILABLE);
        return;
    }
    session_ok(s, tag, NULL);
    session_ok(from, req->tag, "%s %u %s %d", net_peer_addr(s->conn), (unsigned)s->p2p_port,
               req->secret, srv->cfg.p2p_consent ? 1 : 0);
    request_drop(srv, req);
}

void p2p_decline(struct session *s, const struct request *r)
{
    const char *tag = r->tag;
    struct p2p_request *req = answered_request(s, r, tag);
    if (!req)
        return;
    session_ok(s, tag, NULL);
    session_err(req->end[P2P_FROM], req->tag, PROTO_E_P2P_DECLINED);
    request_drop(s->srv, req);
}

void p2p_end(struct session *s, const struct request *r)
{
    const char *tag = r->tag;
    struct user *peer = directory_find(&s->srv->dir, r->arg[0].ptr, r->arg[0].len);
    struct p2p_pair *pair = peer ? pair_find(s->srv, s->user, peer) : NULL;
    if (pair)
        pair_drop(s->srv, pair);
    session_ok(s, tag, NULL);
}

/* ---- clean-up ---- */

void p2p_session_gone(struct session *s)
{
    struct server *srv = s->srv;
    while (s->p2p_req[P2P_TO]) {
        struct p2p_request *req = s->p2p_req[P2P_TO];
        session_err(req->end[P2P_FROM], req->tag, PROTO_E_OFFLINE);
        request_drop(srv, req);
    }
    while (s->p2p_req[P2P_FROM])
        request_drop(srv, s->p2p_req[P2P_FROM]);
    while (s->p2p_pairs)
        pair_drop(srv, s->p2p_pairs);
}

void p2p_expire(struct server *srv, int64_t now_ms)
{
    while (srv->p2p_oldest && srv->p2p_oldest->deadline_ms <= now_ms) {
        struct p2p_request *req = srv->p2p_oldest;
        session_err(req->end[P2P_FROM], req->tag, PROTO_E_P2P_DECLINED);
        request_drop(srv, req);
    }
}

void p2p_free(struct server *srv)
{
    pairmap_free(&srv->p2p_requests, request_free);
    pairmap_free(&srv->p2p_pairs, free);
    srv->p2p_oldest = srv->p2p_newest = NULL;
}
