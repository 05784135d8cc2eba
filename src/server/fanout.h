/* Presence notices to everyone, in bounded slices. A login or logout tells every other
 * session; with thousands online, writing them all in one loop iteration would stall every
 * other client for milliseconds. Notices wait here as jobs; each loop iteration visits at most
 * --fanout-slice sessions (fanout_run), and a session that gets any other output first is
 * caught up at once (fanout_catch_up), so every session still sees its notices in the order
 * they were made and before anything that follows them. */
#ifndef PARLEY_FANOUT_H
#define PARLEY_FANOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct server;
struct session;
struct user;

/* Logins and logouts can come faster than their notices can be written (each is one write to
 * every session online), and finishing them at once would stall the loop for seconds. So
 * the notices push back on what makes them: while cfg.fanout_backlog notices wait (password
 * checks under way counted in), a password check waits to start (fanout_hold); while
 * FANOUT_STREAM_FACTOR times as many wait, a cluster node reads no more of the event stream
 * (fanout_takes_events). Beyond that come only the notices already on their way (one stream
 * read's worth, the checks under way) and those of local logouts, one per session at most. */
#define FANOUT_STREAM_FACTOR 4

struct fanout_job;

/* The notices waiting, oldest first, the pass that delivers them, and the sessions whose
 * password check waits for them. */
struct fanout {
    struct fanout_job *head, *tail;
    struct session *held_head, *held_tail;
    size_t jobs;
    uint64_t last_seq;   /* the number of the newest notice (0: none yet) */
    uint64_t pass_seq;   /* the newest notice when the current pass began */
    struct user *cursor; /* the next user of the online list the pass visits */
    bool in_pass;
};

/* Queues `line` (a whole frame) for every session online now except those of `about` and of
 * users in a block relation with it; delivered by fanout_run or fanout_catch_up. */
void fanout_presence(struct server *srv, struct user *about, const char *line, size_t len);

/* Delivers waiting notices to at most cfg.fanout_slice sessions (a pass that reaches the end
 * of the online list frees the notices it delivered), then lets held sessions go, in order,
 * while fanout_admits and a password hash has room (--max-hash-jobs). */
void fanout_run(struct server *srv);

/* True when notices wait, or held sessions may go (the loop must not sleep before
 * fanout_run). */
bool fanout_pending(const struct server *srv);

/* Gives `s`, if online, every notice it has not had yet; called before any other output to it
 * (and before taking a position in its output that a failed commit may cut back to). */
void fanout_catch_up(struct session *s);

/* `s` is leaving (LOGOUT, BYE): the notices it has not had are not sent. Otherwise each of
 * many sessions leaving at once would first be given the notices of all that left before it,
 * all in one loop iteration. */
void fanout_skip(struct session *s);

/* `s` just went online: it gets only the notices made from now on. */
void fanout_joined(struct session *s);

/* The user `u` is about to leave the online list: the pass must not stop at it. */
void fanout_leaving(struct server *srv, struct user *u);

/* True when a password check may start now; false while too many notices wait. */
bool fanout_admits(const struct server *srv);

/* Holds the session `s` (about to run a frame in SESSION_PASSWORD) until fanout_admits: its
 * frames are kept (session.c) and run when fanout_run lets it go, in the order held. */
void fanout_hold(struct session *s);

/* True when a cluster node may read more of the event stream (each event may be a notice). */
bool fanout_takes_events(const struct server *srv);

/* Frees every waiting notice (shutdown). */
void fanout_free(struct server *srv);

#endif
