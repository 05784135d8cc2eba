/* The server's side of private (P2P) sessions: it checks a request, hands both clients a
 * one-time secret, tells the initiator where to connect and remembers open sessions. The
 * private messages themselves never pass through the server. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "server/log.h"
#include "server/server.h"

/* How long the target may take to answer a request. */
#define P2P_ANSWER_MS 60000

/* A request waiting for the target's answer. */
struct p2p_request {
    struct p2p_request *next;
    struct session *from, *to;
    int64_t deadline_ms;
    char tag[PROTO_MAX_TAG + 1];
    char secret[PROTO_SECRET_HEX + 1];
};

/* An open private session between two users. */
struct p2p_pair {
    struct p2p_pair *next;
    struct user *a, *b;
};

static struct p2p_pair **pair_slot(struct server *srv, const struct user *a, const struct user *b)
{
    for (struct p2p_pair **p = &srv->p2p_pairs; *p; p = &(*p)->next)
        if (((*p)->a == a && (*p)->b == b) || ((*p)->a == b && (*p)->b == a))
            return p;
    return NULL;
}

static struct p2p_request **request_slot(struct server *srv, const struct user *from,
                                         const struct user *to)
{
    for (struct p2p_request **p = &srv->p2p_requests; *p; p = &(*p)->next)
        if ((*p)->from->user == from && (*p)->to->user == to)
            return p;
    return NULL;
}

static void unlink_request(struct p2p_request **slot)
{
    struct p2p_request *req = *slot;
    *slot = req->next;
    free(req);
}

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
    if (!to->online || to->online->state != SESSION_ONLINE)
        return PROTO_E_OFFLINE;
    if (directory_blocks(to, me))
        return PROTO_E_BLOCKED_BY_PEER;
    if (directory_blocks(me, to))
        return PROTO_E_BLOCKING_PEER;
    if (pair_slot(srv, me, to) || request_slot(srv, me, to) || request_slot(srv, to, me))
        return PROTO_E_P2P_EXISTS;
    if (to->online->p2p_port == 0)
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
    struct p2p_request *req = calloc(1, sizeof(*req));
    if (!req) {
        session_err(s, tag, PROTO_E_STORE_UNAVAILABLE);
        return;
    }
    unsigned char raw[PROTO_SECRET_HEX / 2];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(req->secret, sizeof(req->secret), raw, sizeof(raw));
    req->from = s;
    req->to = to->online;
    req->deadline_ms = server_now_ms() + P2P_ANSWER_MS;
    memcpy(req->tag, tag, sizeof(req->tag));
    req->next = srv->p2p_requests;
    srv->p2p_requests = req;
    session_event(to->online, "P2PREQ %s %s %d", s->user->name, req->secret,
                  srv->cfg.p2p_consent ? 1 : 0);
    if (srv->cfg.p2p_consent)
        session_event(s, "P2PWAIT %s", to->name); /* the reply waits for a person */
    log_info("%s asks %s for a private session", s->user->name, to->name);
}

/* Finds the request from the user named in r->arg[0] to `s`; answers 403 when there is none. */
static struct p2p_request **answered_request(struct session *s, const struct request *r,
                                             const char *tag)
{
    struct user *from = directory_find(&s->srv->dir, r->arg[0].ptr, r->arg[0].len);
    struct p2p_request **slot = from ? request_slot(s->srv, from, s->user) : NULL;
    if (!slot)
        session_err(s, tag, PROTO_E_NOT_NOW);
    return slot;
}

void p2p_accept(struct session *s, const struct request *r)
{
    struct server *srv = s->srv;
    const char *tag = r->tag;
    struct p2p_request **slot = answered_request(s, r, tag);
    if (!slot)
        return;
    struct p2p_request *req = *slot;
    struct p2p_pair *pair = calloc(1, sizeof(*pair));
    if (!pair) {
        session_err(s, tag, PROTO_E_STORE_UNAVAILABLE);
        return;
    }
    pair->a = req->from->user;
    pair->b = s->user;
    pair->next = srv->p2p_pairs;
    srv->p2p_pairs = pair;
    session_ok(s, tag, NULL);
    session_ok(req->from, req->tag, "%s %u %s %d", net_peer_addr(s->conn), (unsigned)s->p2p_port,
               req->secret, srv->cfg.p2p_consent ? 1 : 0);
    unlink_request(slot);
}

void p2p_decline(struct session *s, const struct request *r)
{
    const char *tag = r->tag;
    struct p2p_request **slot = answered_request(s, r, tag);
    if (!slot)
        return;
    session_ok(s, tag, NULL);
    session_err((*slot)->from, (*slot)->tag, PROTO_E_P2P_DECLINED);
    unlink_request(slot);
}

void p2p_end(struct session *s, const struct request *r)
{
    const char *tag = r->tag;
    struct user *peer = directory_find(&s->srv->dir, r->arg[0].ptr, r->arg[0].len);
    struct p2p_pair **slot = peer ? pair_slot(s->srv, s->user, peer) : NULL;
    if (slot) {
        struct p2p_pair *pair = *slot;
        *slot = pair->next;
        free(pair);
    }
    session_ok(s, tag, NULL);
}

void p2p_session_gone(struct session *s)
{
    struct server *srv = s->srv;
    for (struct p2p_request **p = &srv->p2p_requests; *p;) {
        if ((*p)->to == s)
            session_err((*p)->from, (*p)->tag, PROTO_E_OFFLINE);
        if ((*p)->to == s || (*p)->from == s)
            unlink_request(p);
        else
            p = &(*p)->next;
    }
    if (!s->user || s->user->online != s)
        return;
    for (struct p2p_pair **p = &srv->p2p_pairs; *p;) {
        if ((*p)->a == s->user || (*p)->b == s->user) {
            struct p2p_pair *pair = *p;
            *p = pair->next;
            free(pair);
        } else {
            p = &(*p)->next;
        }
    }
}

void p2p_expire(struct server *srv, int64_t now_ms)
{
    for (struct p2p_request **p = &srv->p2p_requests; *p;) {
        if ((*p)->deadline_ms <= now_ms) {
            session_err((*p)->from, (*p)->tag, PROTO_E_P2P_DECLINED);
            unlink_request(p);
        } else {
            p = &(*p)->next;
        }
    }
}

void p2p_free(struct server *srv)
{
    while (srv->p2p_requests)
        unlink_request(&srv->p2p_requests);
    while (srv->p2p_pairs) {
        struct p2p_pair *pair = srv->p2p_pairs;
        srv->p2p_pairs = pair->next;
        free(pair);
    }
}
