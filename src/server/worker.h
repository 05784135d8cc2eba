/* A small pool of threads for slow work (password hashing) so the event loop never waits.
 * The threads run at idle priority (SCHED_IDLE on Linux): they use only CPU time nothing else
 * wants. Results come back on the event-loop thread. */
#ifndef PARLEY_WORKER_H
#define PARLEY_WORKER_H

struct event_base;
struct worker_pool;

/* Runs on a worker thread. Must not touch anything the event loop owns. */
typedef void (*worker_job_fn)(void *arg);
/* Runs on the event-loop thread after the job finished; it owns `arg` again. */
typedef void (*worker_done_fn)(void *arg);

/* Starts `threads` workers (at least 1) reporting to `base`. Returns NULL on failure. */
struct worker_pool *worker_pool_new(struct event_base *base, int threads);

/* Queues a job. `done` is called exactly once on the loop thread, after `job` ran.
 * Returns 0, or -1 when the job could not be queued (then neither callback is called). */
int worker_submit(struct worker_pool *pool, worker_job_fn job, worker_done_fn done, void *arg);

/* Returns the number of jobs submitted whose `done` has not run yet. */
int worker_pending(const struct worker_pool *pool);

/* Finishes every queued job, calls their `done` callbacks, stops the threads and frees the
 * pool. NULL is allowed. */
void worker_pool_free(struct worker_pool *pool);

#endif
