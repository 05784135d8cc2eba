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

/* At most this many notices wait at once; one more finishes the waiting ones first (a stall,
 * but only when logins outrun the fan-out by this much). */
#define FANOUT_MAX_JOBS 4096

struct fanout_job;

/* The notices waiting, oldest first, and the pass that delivers them. */
struct fanout {
    struct fanout_job *head, *tail;
    size_t jobs;
    uint64_t last_seq;   /* the number of the newest notice (0: none yet) */
    uint64_t pass_seq;   /* the newest notice when the current pass began */
    struct user *cursor; /* the next user of the online list the pass visits */
    bool in_pass;
};

/* Queues `line` (a whole frame) for every session online now except those of `about` and of
 * users in a block relation with it; delivered by fanout_run or fanout_catch_up. */
void fanout_presence(struct server *srv, struct user *about, const char *line, size_t len);

/* Delivers waiting notices to at most cfg.fanout_slice sessions; a pass that reaches the end
 * of the online list frees the notices it delivered. */
void fanout_run(struct server *srv);

/* True when notices wait (the loop must not sleep before fanout_run). */
bool fanout_pending(const struct server *srv);

/* Gives `s`, if online, every notice it has not had yet; called before any other output to it
 * (and before taking a position in its output that a failed commit may cut back to). */
void fanout_catch_up(struct session *s);

/* `s` just went online: it gets only the notices made from now on. */
void fanout_joined(struct session *s);

/* The user `u` is about to leave the online list: the pass must not stop at it. */
void fanout_leaving(struct server *srv, struct user *u);

/* Frees every waiting notice (shutdown). */
void fanout_free(struct server *srv);

#endif
