/* A fixed pool of threads for slow work. Jobs wait on a mutex/condvar queue; finished jobs go on
 * a done-list and a byte on a pipe wakes the event loop, which runs the `done` callbacks. */
#define _GNU_SOURCE /* SCHED_IDLE */
#include "server/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>

#define WORKER_MAX_THREADS 256

/* Where a job is; changed under the pool's mutex. */
enum job_state {
    JOB_QUEUED = 0,   /* waiting for a thread; may be cancelled */
    JOB_RUNNING = 1,  /* a thread runs it */
    JOB_FINISHED = 2, /* on the done-list */
};

struct worker_job {
    worker_job_fn job;
    worker_done_fn done;
    void *arg;
    enum job_state state;
    struct worker_job *prev, *next;
};

/* A FIFO of jobs, doubly linked so a cancelled job leaves it at once. */
struct job_list {
    struct worker_job *head;
    struct worker_job *tail;
};

struct worker_pool {
    struct event_base *base;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool mu_ok, cv_ok;
    struct job_list queue; /* waiting to run; under mu */
    struct job_list done;  /* ran, `done` not called yet; under mu */
    size_t queued;         /* jobs in `queue`; under mu */
    size_t max_queued;
    bool stopping; /* under mu */
    atomic_int pending;
    int wake_rd, wake_wr;
    struct event *wake_ev;
    pthread_t *threads;
    int nthreads; /* started */
};

static void list_push(struct job_list *l, struct worker_job *j)
{
    j->next = NULL;
    j->prev = l->tail;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
}

static void list_unlink(struct job_list *l, struct worker_job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        l->head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        l->tail = j->prev;
    j->prev = j->next = NULL;
}

static struct worker_job *list_pop(struct job_list *l)
{
    struct worker_job *j = l->head;
    if (j)
        list_unlink(l, j);
    return j;
}

/* Wakes the loop. Called under mu when the done-list goes from empty to non-empty; a full pipe
 * (EAGAIN) already holds a wake-up. */
static void wake_loop(struct worker_pool *p)
{
    static const char b = 1;
    ssize_t w;
    do {
        w = write(p->wake_wr, &b, 1);
    } while (w < 0 && errno == EINTR);
}

/* Slow work gets a core only when nothing else wants it: the event loop, and the users whose
 * messages it carries, never wait behind a password hash. */
static void lower_priority(void)
{
#ifdef SCHED_IDLE
    struct sched_param sp = {0};
    pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
#endif
}

static void *worker_main(void *arg)
{
    struct worker_pool *p = arg;
    lower_priority();
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->queue.head && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        struct worker_job *j = list_pop(&p->queue);
        if (!j)
            break; /* stopping and nothing left */
        p->queued--;
        j->state = JOB_RUNNING;
        pthread_mutex_unlock(&p->mu);
        j->job(j->arg);
        pthread_mutex_lock(&p->mu);
        j->state = JOB_FINISHED;
        bool was_empty = p->done.head == NULL;
        list_push(&p->done, j);
        if (was_empty)
            wake_loop(p);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Runs the `done` callbacks of every finished job, in completion order. */
static void run_done(struct worker_pool *p)
{
    pthread_mutex_lock(&p->mu);
    struct job_list l = p->done;
    p->done.head = p->done.tail = NULL;
    pthread_mutex_unlock(&p->mu);
    struct worker_job *j;
    while ((j = list_pop(&l))) {
        if (j->done)
            j->done(j->arg);
        atomic_fetch_sub(&p->pending, 1);
        free(j);
    }
}

static void drain_pipe(int fd)
{
    char buf[64];
    ssize_t r;
    do {
        r = read(fd, buf, sizeof buf);
    } while (r > 0 || (r < 0 && errno == EINTR));
}

/* The wake-up event: drain first, so a wake-up written after the list was taken stays. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    drain_pipe((int)fd);
    run_done(arg);
}

static int set_flags(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        return -1;
    return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* Starts the threads with every signal blocked (signals belong to the loop thread). */
static int start_threads(struct worker_pool *p, int n)
{
    sigset_t all, old;
    sigfillset(&all);
    if (pthread_sigmask(SIG_SETMASK, &all, &old) != 0)
        return -1;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        rc = pthread_create(&p->threads[i], NULL, worker_main, p);
        if (rc == 0)
            p->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc == 0 ? 0 : -1;
}

/* Stops and joins the started threads; they finish the queue first. */
static void stop_threads(struct worker_pool *p)
{
    if (p->mu_ok && p->cv_ok) {
        pthread_mutex_lock(&p->mu);
        p->stopping = true;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    p->nthreads = 0;
}

/* Frees a pool in any state of construction; every finished job gets its `done` call. */
static void pool_teardown(struct worker_pool *p)
{
    stop_threads(p);
    if (p->mu_ok)
        run_done(p);
    if (p->wake_ev)
        event_free(p->wake_ev);
    if (p->wake_rd >= 0)
        close(p->wake_rd);
    if (p->wake_wr >= 0)
        close(p->wake_wr);
    if (p->cv_ok)
        pthread_cond_destroy(&p->cv);
    if (p->mu_ok)
        pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}

struct worker_pool *worker_pool_new(struct event_base *base, int threads, size_t max_queued)
{
    if (!base || threads < 1 || max_queued < 1)
        return NULL;
    if (threads > WORKER_MAX_THREADS)
        threads = WORKER_MAX_THREADS;
    struct worker_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->base = base;
    p->max_queued = max_queued;
    p->wake_rd = p->wake_wr = -1;
    atomic_init(&p->pending, 0);
    p->mu_ok = pthread_mutex_init(&p->mu, NULL) == 0;
    p->cv_ok = p->mu_ok && pthread_cond_init(&p->cv, NULL) == 0;
    if (!p->cv_ok)
        goto fail;
    int fds[2];
    if (pipe(fds) != 0)
        goto fail;
    p->wake_rd = fds[0];
    p->wake_wr = fds[1];
    if (set_flags(p->wake_rd) != 0 || set_flags(p->wake_wr) != 0)
        goto fail;
    p->wake_ev = event_new(base, p->wake_rd, EV_READ | EV_PERSIST, on_wake, p);
    if (!p->wake_ev || event_add(p->wake_ev, NULL) != 0)
        goto fail;
    p->threads = calloc((size_t)threads, sizeof *p->threads);
    if (!p->threads || start_threads(p, threads) != 0)
        goto fail;
    return p;
fail:
    pool_teardown(p);
    return NULL;
}

struct worker_job *worker_submit(struct worker_pool *pool, worker_job_fn job, worker_done_fn done,
                                 void *arg)
{
    if (!pool || !job)
        return NULL;
    struct worker_job *j = malloc(sizeof *j);
    if (!j)
        return NULL;
    *j = (struct worker_job){job, done, arg, JOB_QUEUED, NULL, NULL};
    pthread_mutex_lock(&pool->mu);
    if (pool->stopping || pool->queued >= pool->max_queued) {
        bool full = !pool->stopping;
        pthread_mutex_unlock(&pool->mu);
        free(j);
        errno = full ? EAGAIN : ECANCELED;
        return NULL;
    }
    list_push(&pool->queue, j);
    pool->queued++;
    atomic_fetch_add(&pool->pending, 1);
    pthread_cond_signal(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    return j;
}

bool worker_cancel(struct worker_pool *pool, struct worker_job *job)
{
    if (!pool || !job)
        return false;
    pthread_mutex_lock(&pool->mu);
    bool queued = job->state == JOB_QUEUED;
    if (queued) {
        list_unlink(&pool->queue, job);
        pool->queued--;
        atomic_fetch_sub(&pool->pending, 1);
    }
    pthread_mutex_unlock(&pool->mu);
    if (queued)
        free(job);
    return queued;
}

int worker_pending(const struct worker_pool *pool)
{
    return pool ? atomic_load(&pool->pending) : 0;
}

/* Must not be called from a `done` callback of the same pool. Jobs submitted from a `done`
 * callback while the pool is being freed are refused. */
void worker_pool_free(struct worker_pool *pool)
{
    if (pool)
        pool_teardown(pool);
}
