/* Direct messages, broadcasts, acknowledgements and backlog delivery: what may be sent and
 * what the store keeps; the broker (broker.h) gets it to the recipients.
 * A direct message is stored before its sender or its recipient can read about it (the store
 * commits once per loop iteration, before output is written), and leaves the store only when
 * the recipient acknowledges it. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/metrics.h"
#include "server/broker.h"
#include "server/log.h"
#include "server/server.h"
#include "server/store.h"

/* Messages sent from the store per batch; the next batch goes when the client acknowledged
 * the first half of it, so the client never waits for the server between batches. A batch also
 * stops once a quarter of --max-output is queued, so a backlog of long messages never reaches
 * the output limit. */
#define MSG_BACKLOG_PAGE 2048

/* A batch of the backlog being sent. */
struct backlog_page {
    struct session *s;
    size_t count;
    bool stuck; /* a message could not be sent: stop here */
    bool full;  /* enough output queued for now */
};

static int send_queued(void *ctx, const struct store_msg *m)
{
    struct backlog_page *page = ctx;
    struct session *s = page->s;
    if (!session_live(s) || m->id <= s->sent_id)
        return 1; /* gone meanwhile, or a live delivery overtook the read (a cluster node) */
    size_t n = broker_msg_frame(s->srv, m);
    if (n == 0) {
        log_error("out of memory for message %lld to %s; left queued", (long long)m->id,
                  s->user->name);
        page->stuck = true;
        return 1;
    }
    if (!net_output_fits(s->conn, n) && s->sent_id > s->acked_id) {
        /* A long message behind unread ones: it goes once they are acknowledged (read). */
        page->full = true;
        return 1;
    }
    session_send(s, s->srv->fmt, n);
    metrics_count(METRICS_MSG_DELIVERED);
    s->sent_id = m->id;
    if (++page->count == MSG_BACKLOG_PAGE / 2)
        s->refill_id = m->id;
    if (net_pending_output(s->conn) >= s->srv->cfg.max_output / 4) {
        page->full = true;
        return 1;
    }
    return 0;
}

/* The page was read (rc 0) or not: what is left decides whether the session stays draining. */
static void backlog_read(void *ctx, int rc)
{
    struct backlog_page *page = ctx;
    struct session *s = page->s;
    s->loading = false;
    if (session_live(s)) {
        struct server *srv = s->srv;
        if (rc < 0) {
            /* Stay draining: live messages must not overtake (and their ACK delete) the unsent. */
            log_error("store: cannot load messages for %s: %s", s->user->name,
                      store_error(srv->store));
            s->draining = true;
            s->refill_id = s->sent_id;
        } else {
            s->draining = page->count == MSG_BACKLOG_PAGE || page->stuck || page->full;
            if (s->refill_id > s->sent_id)
                s->refill_id = s->sent_id; /* a short page: the next once all of it is read */
        }
        if (s->load_missed && !s->draining) {
            s->load_missed = false; /* a live message came during the read: read again */
            msg_deliver_backlog(s);
        }
    }
    free(page);
    session_unref(s);
}

void msg_deliver_backlog(struct session *s)
{
    struct server *srv = s->srv;
    if (s->loading)
        return; /* the page under way decides what comes next */
    struct backlog_page *page = calloc(1, sizeof(*page));
    if (!page) {
        log_error("out of memory loading messages for %s", s->user->name);
        s->draining = true;
        s->refill_id = s->sent_id;
        return;
    }
    page->s = s;
    s->refill_id = INT64_MAX;
    s->loading = true;
    s->draining = true; /* until the page says otherwise */
    session_ref(s);
    store_queue_load(srv->store, s->user->name, s->sent_id, MSG_BACKLOG_PAGE, send_queued,
                     backlog_read, page);
}

void msg_ack(struct session *s, struct proto_slice id_field)
{
    uint64_t id;
    if (s->state != SESSION_ONLINE || !proto_parse_u64(id_field, &id))
        return;
    int64_t upto = (int64_t)id > s->sent_id ? s->sent_id : (int64_t)id;
    if (upto <= s->acked_id)
        return;
    struct server *srv = s->srv;
    /* On failure the messages stay queued and come again at the next login: paging goes on. */
    if (store_queue_ack(srv->store, s->user->name, upto) < 0)
        log_error("store: cannot remove delivered messages: %s", store_error(srv->store));
    else
        metrics_count(METRICS_MSG_ACKNOWLEDGED);
    s->acked_id = upto;
    if (s->draining && s->acked_id >= s->refill_id)
        msg_deliver_backlog(s);
}

/* Checks a message text against the limit; answers and returns false when over it. */
static bool text_fits(struct session *s, const char *tag, const struct request *r)
{
    if (r->text.len <= s->srv->cfg.max_message)
        return true;
    session_err(s, tag, PROTO_E_TOO_LONG);
    return false;
}

static bool rate_ok(struct session *s, const char *tag)
{
    const struct config *cfg = &s->srv->cfg;
    if (cfg->msg_rate == 0 ||
        ratelimit_take(&s->rate, server_now_ms(), cfg->msg_rate, cfg->msg_burst))
        return true;
    session_err(s, tag, PROTO_E_RATE_LIMITED);
    return false;
}

/* Returns the error code that stops `from` messaging `to`, or PROTO_OK. On a cluster Redis
 * judges the blocks when it queues the message (batch.lua): this node's view of them may lag
 * behind a BLOCK or an UNBLOCK made through another node. */
static int direct_refusal(const struct server *srv, const struct user *from, const struct user *to)
{
    if (!to || !to->has_account)
        return PROTO_E_NO_SUCH_USER;
    if (to == from)
        return PROTO_E_SELF;
    if (srv->cluster)
        return PROTO_OK;
    if (directory_blocks(to, from))
        return PROTO_E_BLOCKED_BY_PEER;
    if (directory_blocks(from, to))
        return PROTO_E_BLOCKING_PEER;
    return PROTO_OK;
}

/* Answers an accepted direct message and hands it to the broker. */
static void msg_accepted(struct session_answer *a, const struct store_msg *m)
{
    struct session *s = a->s;
    struct server *srv = s->srv;
    metrics_count(METRICS_MSG_ACCEPTED);
    bool online = broker_direct(srv, a->peer, m);
    fanout_catch_up(s); /* before the position a failed commit cuts back to */
    size_t pos = net_pending_output(s->conn);
    session_ok_numbers(s, a->tag, m->id, online); /* 0: kept for later */
    if (store_answers_early(srv->store))
        server_undo_on_failure(srv, s, a->tag, pos, net_pending_output(s->conn) - pos, 0);
}

/* The store's answer to a MSG. */
static void msg_stored(void *arg, int rc, const struct store_msg *m)
{
    struct session_answer *a = arg;
    struct session *s = a->s;
    if (session_live(s)) {
        if (rc == 0) {
            msg_accepted(a, m);
        } else if (rc == STORE_FULL) {
            session_err(s, a->tag, PROTO_E_QUEUE_FULL);
        } else if (rc == STORE_BLOCKED_BY_PEER || rc == STORE_BLOCKING_PEER) {
            session_err(s, a->tag,
                        rc == STORE_BLOCKED_BY_PEER ? PROTO_E_BLOCKED_BY_PEER
                                                    : PROTO_E_BLOCKING_PEER);
        } else if (rc == STORE_FENCED) {
            session_err(s, a->tag, PROTO_E_STORE_UNAVAILABLE);
            session_bye(s, "taken");
        } else {
            log_error("store: cannot queue a message: %s", store_error(s->srv->store));
            session_err(s, a->tag, PROTO_E_STORE_UNAVAILABLE);
        }
    }
    session_answer_end(a);
}

void msg_direct(struct session *s, const struct request *r)
{
    struct server *srv = s->srv;
    const char *tag = r->tag;
    if (!text_fits(s, tag, r))
        return;
    struct user *to = directory_find(&srv->dir, r->arg[0].ptr, r->arg[0].len);
    int refusal = direct_refusal(srv, s->user, to);
    if (refusal != PROTO_OK) {
        session_err(s, tag, refusal);
        return;
    }
    if (!rate_ok(s, tag))
        return;
    struct session_answer *a = session_answer_begin(s, tag, to, true);
    /* --max-queued: every message stored for `to` counts, shown or not, until acknowledged (a
     * recipient online who never acknowledges is bounded too); the store checks it. */
    store_queue_push(srv->store, s->user->name, to->name, (int64_t)time(NULL), r->text.ptr,
                     r->text.len, (int64_t)srv->cfg.max_queued, msg_stored, a);
}

/* The broadcast went out: the answer says how many blocked it. */
static void broadcast_counted(void *arg, long skipped)
{
    struct session_answer *a = arg;
    struct session *s = a->s;
    if (session_live(s)) {
        if (skipped < 0)
            session_err(s, a->tag, PROTO_E_STORE_UNAVAILABLE);
        else
            session_ok_number(s, a->tag, skipped);
    }
    session_answer_end(a);
}

void msg_broadcast(struct session *s, const struct request *r)
{
    struct server *srv = s->srv;
    const char *tag = r->tag;
    if (!text_fits(s, tag, r) || !rate_ok(s, tag))
        return;
    if (!broker_available(srv)) {
        session_err(s, tag, PROTO_E_STORE_UNAVAILABLE); /* it would reach this node only */
        return;
    }
    metrics_count(METRICS_BROADCASTS);
    struct session_answer *a = session_answer_begin(s, tag, NULL, true);
    broker_broadcast(srv, s->user, r->text.ptr, r->text.len, broadcast_counted, a);
}
