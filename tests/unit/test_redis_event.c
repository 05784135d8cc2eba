/* Unit tests of the hiredis libevent adapter against a real redis-server that each test
 * starts on a Unix socket in a temporary directory and stops by its process id. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "server/redis_event.h"

/* How long redis-server may take to answer its first PING. */
#define REDIS_START_MS 5000

struct fx {
    char dir[PATH_MAX];
    char sock[PATH_MAX + 16];
    pid_t pid;
    struct event_base *base;
    redisAsyncContext *ac;
    int replies, null_replies, disconnects, disconnect_status;
    char last[64];
};

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* True once redis-server answers PING on the socket. */
static int answers(const char *sock)
{
    redisContext *c = redisConnectUnix(sock);
    int ok = 0;
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
        freeReplyObject(r);
    }
    redisFree(c);
    return ok;
}

static void start_redis(struct fx *f)
{
    f->pid = fork();
    assert_true(f->pid >= 0);
    if (f->pid == 0) {
        /* It dies with this test, even a crashed one, and keeps off its output. */
        int null = open("/dev/null", O_WRONLY);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", f->sock, "--dir",
               f->dir, "--save", "", "--appendonly", "no", "--logfile", "/dev/null", (char *)NULL);
        _exit(127);
    }
    for (long waited = 0; !answers(f->sock); waited += 10) {
        assert_true(waited < REDIS_START_MS);
        sleep_ms(10);
    }
}

static void stop_redis(struct fx *f, int sig)
{
    if (f->pid <= 0)
        return;
    kill(f->pid, sig);
    assert_int_equal(waitpid(f->pid, NULL, 0), f->pid);
    f->pid = 0;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "%s/parley-redis-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->sock, sizeof f->sock, "%s/redis.sock", f->dir);
    start_redis(f);
    f->base = event_base_new();
    assert_non_null(f->base);
    f->ac = redisAsyncConnectUnix(f->sock);
    assert_non_null(f->ac);
    assert_int_equal(f->ac->err, 0);
    f->ac->data = f;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->ac)
        redisAsyncFree(f->ac);
    event_base_free(f->base);
    stop_redis(f, SIGTERM);
    unlink(f->sock);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct fx *f = ac->data;
    f->disconnects++;
    f->disconnect_status = status;
    f->ac = NULL; /* hiredis frees it after this callback */
}

/* Records a reply; with `privdata` non-NULL, also frees the context from inside the callback. */
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct fx *f = ac->data;
    redisReply *r = reply;
    if (!r) {
        f->null_replies++;
        return;
    }
    f->replies++;
    snprintf(f->last, sizeof f->last, "%s", r->str ? r->str : "");
    if (privdata) {
        redisAsyncFree(ac);
        f->ac = NULL;
    }
}

static void on_limit(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

/* Runs the loop until the context is gone; fails after RUN_LIMIT_SEC. */
#define RUN_LIMIT_SEC 5

static void run_until_gone(struct fx *f)
{
    int expired = 0;
    struct timeval limit = {RUN_LIMIT_SEC, 0};
    struct event *timer = evtimer_new(f->base, on_limit, &expired);
    assert_non_null(timer);
    evtimer_add(timer, &limit);
    while (f->ac && !expired)
        event_base_loop(f->base, EVLOOP_ONCE);
    event_free(timer);
    assert_false(expired);
}

static void test_commands_are_pipelined_and_answered(void **state)
{
    struct fx *f = *state;
    assert_int_equal(redis_event_attach(f->ac, f->base), 0);
    assert_int_equal(redisAsyncSetDisconnectCallback(f->ac, on_disconnect), REDIS_OK);
    for (int i = 0; i < 100; i++)
        assert_int_equal(redisAsyncCommand(f->ac, on_reply, NULL, "ECHO m%d", i), REDIS_OK);
    assert_int_equal(redisAsyncCommand(f->ac, on_reply, f, "PING"), REDIS_OK);
    run_until_gone(f);
    assert_int_equal(f->replies, 101);
    assert_string_equal(f->last, "PONG");
    assert_int_equal(f->disconnects, 1); /* redisAsyncFree in the callback */
    assert_int_equal(f->disconnect_status, REDIS_OK);
}

static void test_attach_twice_refused(void **state)
{
    struct fx *f = *state;
    assert_int_equal(redis_event_attach(f->ac, f->base), 0);
    assert_int_equal(redis_event_attach(f->ac, f->base), -1);
}

/* Redis dies under pending commands: each is answered with NULL, then the disconnect
 * callback runs, from inside the adapter's read callback, and the context goes. */
static void test_server_death_reported(void **state)
{
    struct fx *f = *state;
    assert_int_equal(redis_event_attach(f->ac, f->base), 0);
    assert_int_equal(redisAsyncSetDisconnectCallback(f->ac, on_disconnect), REDIS_OK);
    assert_int_equal(redisAsyncCommand(f->ac, on_reply, NULL, "PING"), REDIS_OK);
    event_base_loop(f->base, EVLOOP_ONCE); /* connected and sent */
    assert_int_equal(redisAsyncCommand(f->ac, on_reply, NULL, "BLPOP nothing 0"), REDIS_OK);
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    stop_redis(f, SIGKILL);
    run_until_gone(f);
    assert_int_equal(f->disconnects, 1);
    assert_int_equal(f->disconnect_status, REDIS_ERR);
    assert_true(f->null_replies >= 1);
    assert_null(f->ac);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        T(test_commands_are_pipelined_and_answered),
        T(test_attach_twice_refused),
        T(test_server_death_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
