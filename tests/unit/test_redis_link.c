/* Unit tests of the managed Redis link against a real redis-server that each test starts on a
 * Unix socket in a temporary directory (and, for the TCP form, on a free loopback port), kills,
 * stops and restarts by its process id. Every wait runs the loop until the expected callback
 * or a deadline, and fails on the deadline. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "server/redis_link.h"

/* How long redis-server may take to answer its first PING; how long any wait may take. */
#define REDIS_START_MS 5000
#define WAIT_MS 5000
/* The link's command timeout in these tests. */
#define TIMEOUT_MS 300

struct fx {
    char dir[PATH_MAX];
    char sock[PATH_MAX + 16];
    char addr[PATH_MAX + 32];
    int port;                /* 0: Unix socket only */
    const char *requirepass; /* NULL: none */
    pid_t pid;
    struct event_base *base;
    struct redis_link *link;
    struct redis_link_settings set;
    int ups, downs, replies, nulls;
    char last[64];
    size_t last_len;
    bool free_in_reply; /* the next reply callback frees the link */
    bool free_on_down;  /* the state callback frees the link when it goes down */
};

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A synchronous connection to the test's Redis, authenticated when it needs a password. */
static redisContext *direct(struct fx *f)
{
    redisContext *c = redisConnectUnix(f->sock);
    if (c && !c->err && f->requirepass)
        freeReplyObject(redisCommand(c, "AUTH %s", f->requirepass));
    return c;
}

/* True once redis-server answers PING on the socket. */
static bool answers(struct fx *f)
{
    redisContext *c = direct(f);
    bool ok = false;
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
        freeReplyObject(r);
    }
    redisFree(c);
    return ok;
}

/* A field of INFO stats, e.g. total_connections_received. */
static long redis_stat(struct fx *f, const char *field)
{
    redisContext *c = direct(f);
    assert_true(c && !c->err);
    redisReply *r = redisCommand(c, "INFO stats");
    assert_non_null(r);
    const char *at = strstr(r->str, field);
    assert_non_null(at);
    long v = strtol(at + strlen(field) + 1, NULL, 10);
    freeReplyObject(r);
    redisFree(c);
    return v;
}

static void start_redis(struct fx *f)
{
    char port[16];
    snprintf(port, sizeof port, "%d", f->port);
    f->pid = fork();
    assert_true(f->pid >= 0);
    if (f->pid == 0) {
        /* It dies with this test, even a crashed one, and keeps off its output. */
        int null = open("/dev/null", O_WRONLY);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        const char *argv[] = {"redis-server",
                              "--port",
                              port,
                              "--bind",
                              "127.0.0.1",
                              "--unixsocket",
                              f->sock,
                              "--dir",
                              f->dir,
                              "--save",
                              "",
                              "--appendonly",
                              "no",
                              "--logfile",
                              "/dev/null",
                              "--requirepass",
                              f->requirepass,
                              NULL};
        if (!f->requirepass)
            argv[15] = NULL;
        execvp("redis-server", (char **)argv);
        _exit(127);
    }
    for (long waited = 0; !answers(f); waited += 10) {
        assert_true(waited < REDIS_START_MS);
        sleep_ms(10);
    }
}

static void stop_redis(struct fx *f, int sig)
{
    if (f->pid <= 0)
        return;
    kill(f->pid, SIGCONT); /* a stopped Redis must run to handle SIGTERM */
    kill(f->pid, sig);
    assert_int_equal(waitpid(f->pid, NULL, 0), f->pid);
    f->pid = 0;
}

/* A port nothing listens on now, from the kernel (bind to port 0, then close). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "%s/parley-redis-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->sock, sizeof f->sock, "%s/redis.sock", f->dir);
    snprintf(f->addr, sizeof f->addr, "unix:%s", f->sock);
    f->base = event_base_new();
    assert_non_null(f->base);
    f->set = (struct redis_link_settings){.addr = f->addr,
                                          .timeout_ms = TIMEOUT_MS,
                                          .max_inflight = 16,
                                          .backoff_min_ms = 20,
                                          .backoff_max_ms = 160,
                                          .name = "test"};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    redis_link_free(f->link);
    event_base_free(f->base);
    stop_redis(f, SIGTERM);
    unlink(f->sock);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void on_state(void *arg, bool up)
{
    struct fx *f = arg;
    if (up)
        f->ups++;
    else
        f->downs++;
    if (!up && f->free_on_down) {
        redis_link_free(f->link);
        f->link = NULL;
    }
}

static void on_reply(void *arg, redisReply *r)
{
    struct fx *f = arg;
    if (!r) {
        f->nulls++;
        return;
    }
    f->replies++;
    f->last_len = r->str ? r->len : 0;
    memcpy(f->last, r->str ? r->str : "", f->last_len < sizeof f->last ? f->last_len : 0);
    f->last[f->last_len < sizeof f->last ? f->last_len : 0] = '\0';
    if (f->free_in_reply) {
        f->free_in_reply = false;
        redis_link_free(f->link);
        f->link = NULL;
    }
}

static void start_link(struct fx *f)
{
    char err[128];
    assert_int_equal(redis_link_new(&f->link, f->base, &f->set, on_state, f, err, sizeof err), 0);
}

static int cmd(struct fx *f, const char *cmd, const char *arg)
{
    const char *argv[2] = {cmd, arg};
    return redis_link_command(f->link, on_reply, f, arg ? 2 : 1, argv, NULL);
}

/* Sends a command that Redis does not answer (it blocks forever). */
static void send_blocking(struct fx *f)
{
    const char *argv[3] = {"BLPOP", "nothing", "0"};
    assert_int_equal(redis_link_command(f->link, on_reply, f, 3, argv, NULL), 0);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

/* Runs the loop until *counter reaches `target`, for at most `ms`; returns whether it did. */
static bool run_until(struct fx *f, const int *counter, int target, long ms)
{
    bool expired = false;
    struct timeval limit = {ms / 1000, (ms % 1000) * 1000};
    struct event *timer = evtimer_new(f->base, on_deadline, &expired);
    assert_non_null(timer);
    evtimer_add(timer, &limit);
    while (*counter < target && !expired)
        event_base_loop(f->base, EVLOOP_ONCE);
    event_free(timer);
    return *counter >= target;
}

#define WAIT_FOR(f, counter, target) assert_true(run_until(f, &(f)->counter, target, WAIT_MS))

static void test_up_then_commands_answered(void **state)
{
    struct fx *f = *state;
    start_redis(f);
    start_link(f);
    assert_false(redis_link_up(f->link)); /* up only after the first answer */
    assert_int_equal(cmd(f, "PING", NULL), -1);
    WAIT_FOR(f, ups, 1);
    assert_true(redis_link_up(f->link));
    const char *argv[3] = {"SET", "k", "v\0w"};
    const size_t len[3] = {3, 1, 3};
    assert_int_equal(redis_link_command(f->link, on_reply, f, 3, argv, len), 0);
    assert_int_equal(cmd(f, "GET", "k"), 0);
    assert_int_equal(redis_link_inflight(f->link), 2);
    assert_int_equal(f->replies, 0); /* never from inside the call */
    WAIT_FOR(f, replies, 2);
    assert_int_equal(f->last_len, 3);
    assert_memory_equal(f->last, "v\0w", 3);
    assert_int_equal(redis_link_inflight(f->link), 0);
    assert_int_equal(f->downs, 0);
}

static void test_tcp_address(void **state)
{
    struct fx *f = *state;
    f->port = free_port();
    start_redis(f);
    snprintf(f->addr, sizeof f->addr, "127.0.0.1:%d", f->port);
    start_link(f);
    WAIT_FOR(f, ups, 1);
    assert_int_equal(cmd(f, "ECHO", "over tcp"), 0);
    WAIT_FOR(f, replies, 1);
    assert_string_equal(f->last, "over tcp");
}

static void test_right_password(void **state)
{
    struct fx *f = *state;
    f->requirepass = "s3cret";
    start_redis(f);
    f->set.password = "s3cret";
    start_link(f);
    WAIT_FOR(f, ups, 1);
    assert_int_equal(cmd(f, "PING", NULL), 0);
    WAIT_FOR(f, replies, 1);
    assert_string_equal(f->last, "PONG");
}

/* Runs the loop for `ms` whatever happens. */
static void run_for(struct fx *f, long ms)
{
    int never = 0;
    assert_false(run_until(f, &never, 1, ms));
}

/* Reads what the link logged to stderr while `fn` ran. */
static void capture_stderr(struct fx *f, void (*fn)(struct fx *), char *out, size_t outlen)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/stderr", f->dir);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, STDERR_FILENO);
    fn(f);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t n = pread(fd, out, outlen - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
}

static void stay_down_a_while(struct fx *f)
{
    start_link(f);
    run_for(f, 600);
}

/* A wrong password: a clear line (without the password), never up, attempts again. */
static void test_wrong_password(void **state)
{
    struct fx *f = *state;
    f->requirepass = "s3cret";
    start_redis(f);
    f->set.password = "wrong-guess";
    long before = redis_stat(f, "total_connections_received");
    char logged[1024];
    capture_stderr(f, stay_down_a_while, logged, sizeof logged);
    assert_int_equal(f->ups, 0);
    assert_false(redis_link_up(f->link));
    assert_non_null(strstr(logged, "redis: authentication failed: "));
    assert_null(strstr(logged, "wrong-guess"));
    /* 20, 40, 80, 160 ms ceilings: at least 3 attempts in 600 ms */
    assert_true(redis_stat(f, "total_connections_received") - before >= 3);
    assert_int_equal(cmd(f, "PING", NULL), -1);
}

/* Redis killed under a pending command: it is answered with NULL, the link goes down, and it
 * comes back by itself once Redis runs again on the same socket. */
static void test_killed_then_back(void **state)
{
    struct fx *f = *state;
    start_redis(f);
    start_link(f);
    WAIT_FOR(f, ups, 1);
    send_blocking(f);
    run_for(f, 50); /* sent */
    stop_redis(f, SIGKILL);
    WAIT_FOR(f, downs, 1);
    assert_int_equal(f->nulls, 1);
    assert_false(redis_link_up(f->link));
    assert_int_equal(redis_link_inflight(f->link), 0);
    run_for(f, 200); /* a few refused attempts */
    assert_int_equal(f->ups, 1);
    start_redis(f);
    WAIT_FOR(f, ups, 2);
    assert_int_equal(cmd(f, "PING", NULL), 0);
    WAIT_FOR(f, replies, 1);
    assert_int_equal(f->downs, 1);
}

/* A stopped Redis keeps the connection but answers nothing: the timeout drops it, the
 * attempts while it stays stopped connect but time out on their first PING, and the link is up
 * again once Redis runs. */
static void test_stopped_redis_times_out(void **state)
{
    struct fx *f = *state;
    start_redis(f);
    start_link(f);
    WAIT_FOR(f, ups, 1);
    kill(f->pid, SIGSTOP);
    assert_int_equal(cmd(f, "PING", NULL), 0);
    WAIT_FOR(f, nulls, 1);
    assert_int_equal(f->downs, 1);
    assert_false(redis_link_up(f->link));
    run_for(f, 3 * TIMEOUT_MS);
    assert_int_equal(f->ups, 1);
    kill(f->pid, SIGCONT);
    WAIT_FOR(f, ups, 2);
    assert_int_equal(f->replies, 0);
}

/* The first PING of a new connection is timed too: a stopped Redis never brings the link up. */
static void test_first_ping_times_out(void **state)
{
    struct fx *f = *state;
    start_redis(f);
    kill(f->pid, SIGSTOP);
    start_link(f);
    run_for(f, 3 * TIMEOUT_MS);
    assert_int_equal(f->ups, 0);
    kill(f->pid, SIGCONT);
    WAIT_FOR(f, ups, 1);
    assert_int_equal(f->downs, 0); /* it never was up */
}

static void test_max_inflight_refused(void **state)
{
    struct fx *f = *state;
    f->set.max_inflight = 2;
    start_redis(f);
    start_link(f);
    WAIT_FOR(f, ups, 1);
    assert_int_equal(cmd(f, "PING", NULL), 0);
    assert_int_equal(cmd(f, "PING", NULL), 0);
    assert_int_equal(cmd(f, "PING", NULL), -1);
    assert_int_equal(redis_link_inflight(f->link), 2);
    assert_int_equal(f->replies + f->nulls, 0); /* the refused one is never answered */
    WAIT_FOR(f, replies, 2);
    assert_int_equal(cmd(f, "PING", NULL), 0);
    WAIT_FOR(f, replies, 3);
    assert_int_equal(f->nulls, 0);
}

/* The commands that break one reply per command are refused. */
static void test_subscribe_refused(void **state)
{
    struct fx *f = *state;
    start_redis(f);
    start_link(f);
    WAIT_FOR(f, ups, 1);
    assert_int_equal(cmd(f, "SUBSCRIBE", "ch"), -1);
    assert_int_equal(cmd(f, "monitor", NULL), -1);
    assert_int_equal(redis_link_inflight(f->link), 0);
}

/* Freed from inside a reply callback: the commands behind it get NULL before the free returns
 * (ASan checks that nothing touches the link afterwards). */
static void test_free_inside_reply(void **state)
{
    struct fx *f = *state;
    start_redis(f);
    start_link(f);
    WAIT_FOR(f, ups, 1);
    assert_int_equal(cmd(f, "PING", NULL), 0);
    send_blocking(f);
    send_blocking(f);
    f->free_in_reply = true;
    WAIT_FOR(f, replies, 1);
    assert_null(f->link);
    assert_int_equal(f->nulls, 2);
    assert_int_equal(f->downs, 0); /* freeing does not report a state */
    run_for(f, 100);               /* hiredis's own clean-up of the context */
}

/* Freed from the state callback, inside hiredis's handling of a lost connection. */
static void test_free_inside_state_callback(void **state)
{
    struct fx *f = *state;
    start_redis(f);
    start_link(f);
    WAIT_FOR(f, ups, 1);
    send_blocking(f);
    run_for(f, 50); /* sent */
    f->free_on_down = true;
    stop_redis(f, SIGKILL);
    WAIT_FOR(f, downs, 1);
    assert_null(f->link);
    assert_int_equal(f->nulls, 1);
    run_for(f, 100); /* no attempt follows: nothing may fire */
}

static void test_free_answers_pending(void **state)
{
    struct fx *f = *state;
    start_redis(f);
    start_link(f);
    WAIT_FOR(f, ups, 1);
    send_blocking(f);
    assert_int_equal(cmd(f, "PING", NULL), 0);
    redis_link_free(f->link);
    f->link = NULL;
    assert_int_equal(f->nulls, 2);
}

/* reset answers the pending commands at once and reconnects by itself. */
static void test_reset(void **state)
{
    struct fx *f = *state;
    start_redis(f);
    start_link(f);
    WAIT_FOR(f, ups, 1);
    send_blocking(f);
    send_blocking(f);
    redis_link_reset(f->link);
    assert_int_equal(f->nulls, 2);
    assert_int_equal(f->downs, 1);
    assert_false(redis_link_up(f->link));
    WAIT_FOR(f, ups, 2);
}

static void test_parse_addr(void **state)
{
    (void)state;
    char host[256], err[128];
    int port;
    bool is_unix;
    assert_int_equal(redis_link_parse_addr("127.0.0.1:6379", host, sizeof host, &port, &is_unix,
                                           err, sizeof err),
                     0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6379);
    assert_false(is_unix);
    assert_int_equal(
        redis_link_parse_addr("[::1]:7000", host, sizeof host, &port, &is_unix, err, sizeof err),
        0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 7000);
    assert_int_equal(redis_link_parse_addr("unix:/run/redis.sock", host, sizeof host, &port,
                                           &is_unix, err, sizeof err),
                     0);
    assert_string_equal(host, "/run/redis.sock");
    assert_true(is_unix);
    assert_int_equal(port, 0);
    char long_path[5 + 108 + 1] = "unix:/", long_host[300 + 3] = "";
    memset(long_path + 6, 'p', 107);
    long_path[113] = '\0';
    memset(long_host, 'h', 300);
    memcpy(long_host + 300, ":1", 3);
    const char *bad[] = {"",         "localhost", ":6379",   "host:",    "host:0",    "host:65536",
                         "host:12x", "host:-1",   "host: 1", "::1:6379", "[::1]6379", "[::1:6379",
                         "[]:1",     "unix:",     long_path, long_host};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(
            redis_link_parse_addr(bad[i], host, sizeof host, &port, &is_unix, err, sizeof err), -1);
        assert_true(err[0] != '\0');
    }
}

static void test_new_refuses_bad_settings(void **state)
{
    struct fx *f = *state;
    char err[128];
    struct redis_link *l = NULL;
    f->set.addr = "nowhere";
    assert_int_equal(redis_link_new(&l, f->base, &f->set, on_state, f, err, sizeof err), -1);
    f->set.addr = f->addr;
    f->set.max_inflight = 0;
    assert_int_equal(redis_link_new(&l, f->base, &f->set, on_state, f, err, sizeof err), -1);
    f->set.max_inflight = 1;
    f->set.backoff_max_ms = 1;
    assert_int_equal(redis_link_new(&l, f->base, &f->set, on_state, f, err, sizeof err), -1);
    assert_null(l);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        T(test_up_then_commands_answered),
        T(test_tcp_address),
        T(test_right_password),
        T(test_wrong_password),
        T(test_killed_then_back),
        T(test_stopped_redis_times_out),
        T(test_first_ping_times_out),
        T(test_max_inflight_refused),
        T(test_subscribe_refused),
        T(test_free_inside_reply),
        T(test_free_inside_state_callback),
        T(test_free_answers_pending),
        T(test_reset),
        T(test_parse_addr),
        T(test_new_refuses_bad_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
