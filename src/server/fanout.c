/* Presence notices in bounded slices; see fanout.h.
 *
 * Every notice has a number (seq), and every online session the number of the newest notice
 * it has been dealt (s->fan_seq: given, or not meant for it). A pass walks the online list
 * from its head and deals each session every notice above its number; users who come online
 * during a pass join at the head (directory.c), behind the pass, and start at the newest
 * number (fanout_joined), so the pass never needs to reach them. When a pass ends, every
 * session online holds at least the number the pass began with, and those notices are freed.
 *
 * Nothing here ever finishes the notices at once: what makes them waits instead (fanout.h). */
#include "server/fanout.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "server/directory.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/server.h"

struct fanout_job {
    struct fanout_job *next;
    uint64_t seq;
    struct user *about; /* users live as long as the directory */
    size_t len;
    char line[];
};

/* True when the notice `j` is for `me`. Most users block no one: the block lists are looked
 * up only when either side has one. */
static bool meant_for(const struct fanout_job *j, const struct user *me)
{
    if (me == j->about)
        return false;
    return (me->n_blocked == 0 && j->about->n_blocked == 0) || !directory_related(j->about, me);
}

void fanout_catch_up(struct session *s)
{
    struct fanout *f = &s->srv->fan;
    if (s->state != SESSION_ONLINE || s->fan_seq >= f->last_seq)
        return;
    for (struct fanout_job *j = f->head; j; j = j->next)
        if (j->seq > s->fan_seq && meant_for(j, s->user))
            net_send(s->conn, j->line, j->len);
    s->fan_seq = f->last_seq;
}

/* Frees the notices every online session has been dealt (those up to pass_seq). */
static void end_pass(struct fanout *f)
{
    while (f->head && f->head->seq <= f->pass_seq) {
        struct fanout_job *j = f->head;
        f->head = j->next;
        free(j);
        f->jobs--;
    }
    if (!f->head)
        f->tail = NULL;
    f->in_pass = false;
    f->cursor = NULL;
}

/* Visits at most `budget` sessions of the current pass (starting one if none runs); returns
 * the budget left. */
static size_t run_pass(struct server *srv, size_t budget)
{
    struct fanout *f = &srv->fan;
    if (!f->in_pass) {
        f->in_pass = true;
        f->pass_seq = f->last_seq;
        f->cursor = srv->dir.online_head;
    }
    while (f->cursor && budget > 0) {
        struct user *u = f->cursor;
        f->cursor = u->online_next;
        struct session *s = u->online;
        if (s->state == SESSION_ONLINE && s->fan_seq < f->last_seq) {
            fanout_catch_up(s);
            budget--;
        }
    }
    if (!f->cursor)
        end_pass(f);
    return budget;
}

bool fanout_admits(const struct server *srv)
{
    return srv->fan.jobs + srv->hash_jobs < srv->cfg.fanout_backlog;
}

bool fanout_takes_events(const struct server *srv)
{
    return srv->fan.jobs < srv->cfg.fanout_backlog * FANOUT_STREAM_FACTOR;
}

void fanout_hold(struct session *s)
{
    struct fanout *f = &s->srv->fan;
    assert(s->state == SESSION_PASSWORD && !s->fan_held);
    session_wait(s);
    s->fan_held = true;
    s->fan_next = NULL;
    if (f->held_tail)
        f->held_tail->fan_next = s;
    else
        f->held_head = s;
    f->held_tail = s;
    metrics_count(METRICS_LOGIN_HELD);
}

/* Takes the oldest held session off the queue and lets it go on (its kept frames run now,
 * unless its connection is gone meanwhile). */
static void release_one(struct fanout *f)
{
    struct session *s = f->held_head;
    f->held_head = s->fan_next;
    if (!f->held_head)
        f->held_tail = NULL;
    s->fan_next = NULL;
    s->fan_held = false;
    session_resume(s);
}

/* True when a held session may go on now: the notices let it, and its check would find room
 * among the hashes (--max-hash-jobs; else it would be refused 508 after waiting). */
static bool may_release(const struct server *srv)
{
    return srv->fan.held_head && fanout_admits(srv) && srv->hash_jobs < srv->cfg.max_hash_jobs;
}

void fanout_run(struct server *srv)
{
    size_t budget = srv->cfg.fanout_slice;
    while (srv->fan.head && budget > 0)
        budget = run_pass(srv, budget);
    while (may_release(srv))
        release_one(&srv->fan);
}

bool fanout_pending(const struct server *srv)
{
    return srv->fan.head != NULL || may_release(srv);
}

void fanout_presence(struct server *srv, struct user *about, const char *line, size_t len)
{
    struct fanout *f = &srv->fan;
    struct fanout_job *j = malloc(sizeof(*j) + len);
    if (!j) {
        log_error("out of memory: a presence notice is lost");
        return;
    }
    j->next = NULL;
    j->seq = ++f->last_seq;
    j->about = about;
    j->len = len;
    memcpy(j->line, line, len);
    if (f->tail)
        f->tail->next = j;
    else
        f->head = j;
    f->tail = j;
    f->jobs++;
}

void fanout_joined(struct session *s)
{
    s->fan_seq = s->srv->fan.last_seq;
}

void fanout_skip(struct session *s)
{
    s->fan_seq = s->srv->fan.last_seq;
}

void fanout_leaving(struct server *srv, struct user *u)
{
    if (srv->fan.cursor == u)
        srv->fan.cursor = u->online_next;
}

void fanout_free(struct server *srv)
{
    struct fanout *f = &srv->fan;
    while (f->held_head) /* their connections are gone by now: this frees them */
        release_one(f);
    while (f->head) {
        struct fanout_job *j = f->head;
        f->head = j->next;
        free(j);
    }
    *f = (struct fanout){0};
}
