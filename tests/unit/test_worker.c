/* Unit tests of src/server/worker.c: jobs run off the loop thread, `done` runs exactly once on
 * the loop thread in completion order, and freeing the pool finishes queued jobs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "server/worker.h"

#define NJOBS 64

struct task {
    int id;
    int sleep_us;
    atomic_int job_runs;
    int done_runs;
    bool job_on_main;
    bool done_on_main;
    int done_order;
};

static pthread_t main_thread;
static int done_counter;
static int order_log[NJOBS];

static void sleep_us(int us)
{
    struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void job_fn(void *arg)
{
    struct task *t = arg;
    t->job_on_main = pthread_equal(pthread_self(), main_thread);
    if (t->sleep_us)
        sleep_us(t->sleep_us);
    atomic_fetch_add(&t->job_runs, 1);
}

static void done_fn(void *arg)
{
    struct task *t = arg;
    t->done_on_main = pthread_equal(pthread_self(), main_thread);
    t->done_runs++;
    /* the job finished before its done callback */
    assert_int_equal(atomic_load(&t->job_runs), 1);
    if (done_counter < NJOBS)
        order_log[done_counter] = t->id;
    t->done_order = done_counter++;
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* A base with a 20 ms ticker, so EVLOOP_ONCE never blocks for long. */
struct loop {
    struct event_base *base;
    struct event *ticker;
};

static int setup(void **state)
{
    static struct loop l;
    l.base = event_base_new();
    if (!l.base)
        return -1;
    l.ticker = event_new(l.base, -1, EV_PERSIST, tick, NULL);
    struct timeval tv = {0, 20000};
    if (!l.ticker || event_add(l.ticker, &tv) != 0)
        return -1;
    main_thread = pthread_self();
    done_counter = 0;
    memset(order_log, -1, sizeof order_log);
    *state = &l;
    return 0;
}

static int teardown(void **state)
{
    struct loop *l = *state;
    event_free(l->ticker);
    event_base_free(l->base);
    return 0;
}

static void init_tasks(struct task *t, int n, int sleep)
{
    for (int i = 0; i < n; i++) {
        memset(&t[i], 0, sizeof t[i]);
        t[i].id = i;
        t[i].sleep_us = sleep;
        atomic_init(&t[i].job_runs, 0);
    }
}

/* Runs the loop until `target` done callbacks ran or 10 s passed. */
static void run_until(struct event_base *base, int target)
{
    double deadline = now_s() + 10.0;
    while (done_counter < target && now_s() < deadline)
        event_base_loop(base, EVLOOP_ONCE);
}

static void test_jobs_complete_on_loop(void **state)
{
    struct loop *l = *state;
    static struct task tasks[NJOBS];
    init_tasks(tasks, NJOBS, 0);
    struct worker_pool *p = worker_pool_new(l->base, 4, NJOBS);
    assert_non_null(p);
    assert_int_equal(worker_pending(p), 0);
    for (int i = 0; i < NJOBS; i++) {
        tasks[i].sleep_us = 500 + (i % 7) * 300;
        assert_non_null(worker_submit(p, job_fn, done_fn, &tasks[i]));
    }
    assert_true(worker_pending(p) > 0);
    assert_true(worker_pending(p) <= NJOBS);
    run_until(l->base, NJOBS);
    assert_int_equal(done_counter, NJOBS);
    assert_int_equal(worker_pending(p), 0);
    for (int i = 0; i < NJOBS; i++) {
        assert_int_equal(atomic_load(&tasks[i].job_runs), 1);
        assert_int_equal(tasks[i].done_runs, 1);
        assert_false(tasks[i].job_on_main);
        assert_true(tasks[i].done_on_main);
    }
    /* more loop turns call nothing again */
    event_base_loop(l->base, EVLOOP_ONCE);
    worker_pool_free(p);
    for (int i = 0; i < NJOBS; i++)
        assert_int_equal(tasks[i].done_runs, 1);
    assert_int_equal(done_counter, NJOBS);
}

static void test_single_thread_order(void **state)
{
    /* one thread: completion order is submission order */
    struct loop *l = *state;
    static struct task tasks[16];
    init_tasks(tasks, 16, 200);
    struct worker_pool *p = worker_pool_new(l->base, 1, NJOBS);
    assert_non_null(p);
    for (int i = 0; i < 16; i++)
        assert_non_null(worker_submit(p, job_fn, done_fn, &tasks[i]));
    assert_int_equal(worker_pending(p), 16);
    run_until(l->base, 16);
    assert_int_equal(worker_pending(p), 0);
    for (int i = 0; i < 16; i++) {
        assert_int_equal(order_log[i], i);
        assert_int_equal(tasks[i].done_runs, 1);
    }
    worker_pool_free(p);
}

static void test_free_runs_queued(void **state)
{
    struct loop *l = *state;
    static struct task tasks[12];
    init_tasks(tasks, 12, 3000);
    struct worker_pool *p = worker_pool_new(l->base, 2, NJOBS);
    assert_non_null(p);
    for (int i = 0; i < 12; i++)
        assert_non_null(worker_submit(p, job_fn, done_fn, &tasks[i]));
    /* most are still queued: free must run them and their done callbacks, here */
    worker_pool_free(p);
    assert_int_equal(done_counter, 12);
    for (int i = 0; i < 12; i++) {
        assert_int_equal(atomic_load(&tasks[i].job_runs), 1);
        assert_int_equal(tasks[i].done_runs, 1);
        assert_true(tasks[i].done_on_main);
    }
    /* the loop has nothing left to deliver */
    event_base_loop(l->base, EVLOOP_ONCE);
    assert_int_equal(done_counter, 12);
}

struct chain {
    struct worker_pool *pool;
    int left;
    int done_runs;
    int refused;
};

static void chain_job(void *arg)
{
    (void)arg;
}

static void chain_done(void *arg)
{
    struct chain *c = arg;
    c->done_runs++;
    done_counter++;
    if (c->left > 0) {
        c->left--;
        if (!worker_submit(c->pool, chain_job, chain_done, c))
            c->refused++;
    }
}

static void test_submit_from_done(void **state)
{
    struct loop *l = *state;
    struct chain c = {worker_pool_new(l->base, 2, NJOBS), 5, 0, 0};
    assert_non_null(c.pool);
    assert_non_null(worker_submit(c.pool, chain_job, chain_done, &c));
    run_until(l->base, 6);
    assert_int_equal(c.done_runs, 6);
    assert_int_equal(c.refused, 0);
    assert_int_equal(worker_pending(c.pool), 0);

    /* during free, a done callback's new submission is refused (and never called) */
    c.left = 3;
    assert_non_null(worker_submit(c.pool, chain_job, chain_done, &c));
    worker_pool_free(c.pool);
    assert_int_equal(c.done_runs, 7);
    assert_int_equal(c.refused, 1);
}

static void test_bad_args(void **state)
{
    struct loop *l = *state;
    assert_null(worker_pool_new(NULL, 2, NJOBS));
    assert_null(worker_pool_new(l->base, 0, NJOBS));
    assert_null(worker_pool_new(l->base, 1, 0));
    worker_pool_free(NULL);
    assert_int_equal(worker_pending(NULL), 0);
    struct worker_pool *p = worker_pool_new(l->base, 1, NJOBS);
    assert_non_null(p);
    assert_null(worker_submit(p, NULL, done_fn, NULL));
    assert_null(worker_submit(NULL, job_fn, done_fn, NULL));
    assert_int_equal(worker_pending(p), 0);
    worker_pool_free(p);
    assert_int_equal(done_counter, 0);
}

/* A job without a done callback still counts until it finished. */
static void test_null_done(void **state)
{
    struct loop *l = *state;
    static struct task t;
    init_tasks(&t, 1, 1000);
    struct worker_pool *p = worker_pool_new(l->base, 1, NJOBS);
    assert_non_null(p);
    assert_non_null(worker_submit(p, job_fn, NULL, &t));
    assert_int_equal(worker_pending(p), 1);
    double deadline = now_s() + 10.0;
    while (worker_pending(p) > 0 && now_s() < deadline)
        event_base_loop(l->base, EVLOOP_ONCE);
    assert_int_equal(worker_pending(p), 0);
    assert_int_equal(atomic_load(&t.job_runs), 1);
    worker_pool_free(p);
}

/* A job that holds its thread until released, so the jobs behind it stay queued. */
struct gate {
    atomic_bool started;
    atomic_bool open;
    int done_runs;
};

static void gate_job(void *arg)
{
    struct gate *g = arg;
    atomic_store(&g->started, true);
    while (!atomic_load(&g->open))
        sleep_us(200);
}

static void gate_done(void *arg)
{
    struct gate *g = arg;
    g->done_runs++;
    done_counter++;
}

/* Submits a gate on a one-thread pool and waits until the thread holds it. */
static struct worker_job *hold_thread(struct worker_pool *p, struct gate *g)
{
    atomic_init(&g->started, false);
    atomic_init(&g->open, false);
    g->done_runs = 0;
    struct worker_job *j = worker_submit(p, gate_job, gate_done, g);
    assert_non_null(j);
    double deadline = now_s() + 10.0;
    while (!atomic_load(&g->started) && now_s() < deadline)
        sleep_us(200);
    assert_true(atomic_load(&g->started));
    return j;
}

/* Issue 9 point 10: a job whose connection is gone is dropped before it runs. A cancelled
 * queued job never runs and gets no done call; a running one cannot be cancelled. */
static void test_cancel_queued_job(void **state)
{
    struct loop *l = *state;
    static struct task tasks[5];
    struct gate g;
    init_tasks(tasks, 5, 0);
    struct worker_pool *p = worker_pool_new(l->base, 1, NJOBS);
    assert_non_null(p);
    struct worker_job *running = hold_thread(p, &g);
    struct worker_job *jobs[5];
    for (int i = 0; i < 5; i++) {
        jobs[i] = worker_submit(p, job_fn, done_fn, &tasks[i]);
        assert_non_null(jobs[i]);
    }
    assert_int_equal(worker_pending(p), 6);
    assert_false(worker_cancel(p, running));
    assert_true(worker_cancel(p, jobs[1]));
    assert_true(worker_cancel(p, jobs[4])); /* the tail */
    assert_true(worker_cancel(p, jobs[0])); /* the head */
    assert_int_equal(worker_pending(p), 3);
    assert_false(worker_cancel(NULL, jobs[2]));
    assert_false(worker_cancel(p, NULL));
    atomic_store(&g.open, true);
    run_until(l->base, 3);
    assert_int_equal(done_counter, 3);
    assert_int_equal(g.done_runs, 1);
    for (int i = 0; i < 5; i++) {
        bool kept = i == 2 || i == 3;
        assert_int_equal(atomic_load(&tasks[i].job_runs), kept ? 1 : 0);
        assert_int_equal(tasks[i].done_runs, kept ? 1 : 0);
    }
    assert_int_equal(order_log[1], 2);
    assert_int_equal(order_log[2], 3);
    assert_int_equal(worker_pending(p), 0);
    worker_pool_free(p);
    assert_int_equal(done_counter, 3);
}

/* Issue 9 point 10: the queue is bounded. Past `max_queued` waiting jobs a submission is
 * refused with EAGAIN; the running job does not count, and a cancelled one frees its place. */
static void test_queue_bound(void **state)
{
    struct loop *l = *state;
    static struct task tasks[5];
    struct gate g;
    init_tasks(tasks, 5, 0);
    struct worker_pool *p = worker_pool_new(l->base, 1, 3);
    assert_non_null(p);
    hold_thread(p, &g);
    struct worker_job *jobs[3];
    for (int i = 0; i < 3; i++) {
        jobs[i] = worker_submit(p, job_fn, done_fn, &tasks[i]);
        assert_non_null(jobs[i]);
    }
    errno = 0;
    assert_null(worker_submit(p, job_fn, done_fn, &tasks[3]));
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(worker_pending(p), 4);
    assert_true(worker_cancel(p, jobs[1]));
    assert_non_null(worker_submit(p, job_fn, done_fn, &tasks[4]));
    assert_null(worker_submit(p, job_fn, done_fn, &tasks[3]));
    atomic_store(&g.open, true);
    run_until(l->base, 4);
    assert_int_equal(done_counter, 4);
    assert_int_equal(tasks[1].done_runs, 0);
    assert_int_equal(tasks[3].done_runs, 0);
    assert_int_equal(tasks[4].done_runs, 1);
    /* once drained the queue takes jobs again */
    assert_non_null(worker_submit(p, job_fn, done_fn, &tasks[3]));
    run_until(l->base, 5);
    assert_int_equal(tasks[3].done_runs, 1);
    worker_pool_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_jobs_complete_on_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_single_thread_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_runs_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_submit_from_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_queued_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_bound, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
