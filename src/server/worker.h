/* A small pool of threads for slow work (password hashing) so the event loop never waits.
 * The threads run at idle priority (SCHED_IDLE on Linux): they use only CPU time nothing else
 * wants. Results come back on the event-loop thread. */
#ifndef PARLEY_WORKER_H
#define PARLEY_WORKER_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct worker_pool;
struct worker_job; /* a submitted job, until its `done` ran or it was cancelled */

/* Runs on a worker thread. Must not touch anything the event loop owns. */
typedef void (*worker_job_fn)(void *arg);
/* Runs on the event-loop thread after the job finished; it owns `arg` again. */
typedef void (*worker_done_fn)(void *arg);

/* Starts `threads` workers (at least 1) reporting to `base`; at most `max_queued` jobs (at
 * least 1) wait for a thread at once. Returns NULL on failure. */
struct worker_pool *worker_pool_new(struct event_base *base, int threads, size_t max_queued);

/* Queues a job. `done` is called exactly once on the loop thread, after `job` ran, unless the
 * job is cancelled first. Returns the job's handle, valid until `done` was called or
 * worker_cancel succeeded; or NULL when the job could not be queued (errno EAGAIN: the queue
 * is full), and then neither callback is called. */
struct worker_job *worker_submit(struct worker_pool *pool, worker_job_fn job, worker_done_fn done,
                                 void *arg);

/* Takes a job that has not started off the queue: returns true, neither of its callbacks
 * will run and the caller owns its `arg` again. Returns false when the job is running or has
 * run (its `done` still comes). */
bool worker_cancel(struct worker_pool *pool, struct worker_job *job);

/* Returns the number of jobs submitted whose `done` has not run yet. */
int worker_pending(const struct worker_pool *pool);

/* Finishes every queued job, calls their `done` callbacks, stops the threads and frees the
 * pool. NULL is allowed. */
void worker_pool_free(struct worker_pool *pool);

#endif
