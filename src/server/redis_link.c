/* A managed hiredis connection; see redis_link.h.
 *
 * The link keeps its own queue of pending commands (callback, argument, send time), in the
 * order they were sent: Redis answers in that order, so each hiredis reply belongs to the
 * oldest entry. hiredis's own callbacks only find the link through ac->data, which is cleared
 * when the link lets go of a context: whatever hiredis still calls on it afterwards (NULL
 * replies while it frees it, the disconnect callback) finds no link and does nothing. So the
 * link answers its pending commands itself, at once, whenever it drops a connection, and never
 * depends on when hiredis gets round to freeing a context. */
#include "server/redis_link.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <time.h>

#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <sodium.h>

#include "server/log.h"
#include "server/redis_event.h"

/* The timeout check runs every timeout_ms / 4, but not more often than this. */
#define CHECK_MIN_MS 50

/* A host name, an IPv6 address or a Unix socket path. */
#define HOST_MAX 256

/* The longest Unix socket path, with its terminating NUL. */
#define SUN_PATH_SIZE sizeof(((struct sockaddr_un *)0)->sun_path)

/* A command sent and not answered yet. */
struct pending {
    redis_link_reply_fn fn;
    void *arg;
    int64_t sent_ms; /* monotonic */
};

struct redis_link {
    struct event_base *base;
    char host[HOST_MAX]; /* or the socket path */
    int port;
    bool is_unix;
    char *addr, *password, *name;
    long timeout_ms, backoff_min_ms, backoff_max_ms;
    long backoff_ms; /* the longest delay before the next attempt */
    redis_link_state_fn on_state;
    void *arg;
    redisAsyncContext *ac; /* NULL while waiting for the next attempt */
    bool up;
    bool freeing;         /* redis_link_free was called; the memory goes when depth is 0 */
    unsigned depth;       /* callbacks of the owner running now (they may nest) */
    struct pending *ring; /* cap entries; count from head on */
    size_t cap, head, count;
    struct event *retry, *check;
    struct log_throttle log;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timeval ms_tv(long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* --- addresses ------------------------------------------------------------------------- */

static int parse_port(const char *s, int *port, char *err, size_t errlen)
{
    char *end;
    long p = strtol(s, &end, 10);
    if (*s < '0' || *s > '9' || *end || p < 1 || p > 65535) {
        snprintf(err, errlen, "the port must be a number from 1 to 65535");
        return -1;
    }
    *port = (int)p;
    return 0;
}

static int parse_unix(const char *path, char *host, size_t hostlen, char *err, size_t errlen)
{
    size_t len = strlen(path);
    if (len == 0 || len >= SUN_PATH_SIZE || len >= hostlen) {
        snprintf(err, errlen, "unix:PATH needs a path of 1 to %zu bytes", SUN_PATH_SIZE - 1);
        return -1;
    }
    memcpy(host, path, len + 1);
    return 0;
}

/* "HOST:PORT" or "[IPv6]:PORT". */
static int parse_tcp(const char *addr, char *host, size_t hostlen, int *port, char *err,
                     size_t errlen)
{
    const char *start = addr, *end, *colon;
    if (*addr == '[') {
        start = addr + 1;
        end = strchr(start, ']');
        colon = end && end[1] == ':' ? end + 1 : NULL;
    } else {
        colon = strrchr(addr, ':');
        end = colon;
        if (colon && memchr(addr, ':', (size_t)(colon - addr))) {
            snprintf(err, errlen, "write an IPv6 address as [ADDRESS]:PORT");
            return -1;
        }
    }
    if (!colon || end == start) {
        snprintf(err, errlen, "expected HOST:PORT or unix:PATH");
        return -1;
    }
    size_t len = (size_t)(end - start);
    if (len >= hostlen) {
        snprintf(err, errlen, "the host name is too long");
        return -1;
    }
    memcpy(host, start, len);
    host[len] = '\0';
    return parse_port(colon + 1, port, err, errlen);
}

int redis_link_parse_addr(const char *addr, char *host, size_t hostlen, int *port, bool *is_unix,
                          char *err, size_t errlen)
{
    *is_unix = strncmp(addr, "unix:", 5) == 0;
    *port = 0;
    if (*is_unix)
        return parse_unix(addr + 5, host, hostlen, err, errlen);
    return parse_tcp(addr, host, hostlen, port, err, errlen);
}

/* --- pending commands and the owner's callbacks ----------------------------------------- */

static void destroy(struct redis_link *l)
{
    if (l->retry)
        event_free(l->retry);
    if (l->check)
        event_free(l->check);
    free(l->ring);
    if (l->password)
        sodium_memzero(l->password, strlen(l->password));
    free(l->password);
    free(l->addr);
    free(l->name);
    free(l);
}

/* Ends a stretch in which the owner's callbacks ran (after depth++): frees the link when it
 * was freed meanwhile and nothing else runs. Returns false when the link is being freed. */
static bool leave(struct redis_link *l)
{
    if (--l->depth == 0 && l->freeing) {
        destroy(l);
        return false;
    }
    return !l->freeing;
}

static void push(struct redis_link *l, redis_link_reply_fn fn, void *arg)
{
    if (l->count == 0) {
        struct timeval every =
            ms_tv(l->timeout_ms / 4 > CHECK_MIN_MS ? l->timeout_ms / 4 : CHECK_MIN_MS);
        event_add(l->check, &every);
    }
    l->ring[(l->head + l->count) % l->cap] = (struct pending){fn, arg, now_ms()};
    l->count++;
}

/* Takes the oldest entry (count > 0); the check stops with the last one. */
static struct pending pop(struct redis_link *l)
{
    struct pending p = l->ring[l->head];
    l->head = (l->head + 1) % l->cap;
    if (--l->count == 0)
        event_del(l->check);
    return p;
}

/* Answers every pending command with NULL, oldest first; those callbacks may use the link,
 * even free it. Returns false when the link is being freed (then it may be gone). */
static bool flush_pending(struct redis_link *l)
{
    l->depth++;
    while (l->count) {
        struct pending p = pop(l);
        p.fn(p.arg, NULL);
    }
    return leave(l);
}

static void notify(struct redis_link *l, bool up)
{
    l->depth++;
    l->on_state(l->arg, up);
    leave(l);
}

/* --- connecting and dropping ----------------------------------------------------------- */

static uint32_t random_below(uint32_t n)
{
    uint32_t r;
    evutil_secure_rng_get_bytes(&r, sizeof r);
    return r % n;
}

/* Logs what happened and why (throttled) and arms the next attempt: a delay drawn from
 * [d/2, d], d doubling up to backoff_max_ms. */
static void retry_later(struct redis_link *l, const char *what, const char *why)
{
    long d = l->backoff_ms;
    long delay = d / 2 + (long)random_below((uint32_t)(d - d / 2 + 1));
    l->backoff_ms = d > l->backoff_max_ms / 2 ? l->backoff_max_ms : d * 2;
    log_error_throttled(&l->log, "redis: %s: %s (%s link, %s; trying again in %ld ms)", what, why,
                        l->name, l->addr, delay);
    struct timeval tv = ms_tv(delay);
    evtimer_add(l->retry, &tv);
}

/* Lets go of the connection: hiredis's later calls on it find no link. */
static void detach(struct redis_link *l)
{
    redisAsyncContext *ac = l->ac;
    if (!ac)
        return;
    l->ac = NULL;
    ac->data = NULL;
    redisAsyncFree(ac); /* from inside one of its callbacks: once that returns */
}

/* What a failure means in the link's state, for the log. */
static const char *loss(const struct redis_link *l)
{
    return l->up ? "connection lost" : "cannot connect";
}

/* The connection failed or is given up: log, arm the next attempt, answer the pending
 * commands with NULL, then tell the owner if it was up. `why` may live in the context. The
 * link may be gone when this returns. */
static void drop(struct redis_link *l, const char *what, const char *why)
{
    bool was_up = l->up;
    l->up = false;
    retry_later(l, what, why);
    detach(l);
    if (flush_pending(l) && was_up)
        notify(l, false);
}

static const char *context_error(const redisAsyncContext *ac)
{
    return ac->err ? ac->errstr : "connection closed";
}

/* hiredis's reply callback for every command: the answer of the oldest pending one. NULL
 * means the connection is going. */
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    struct redis_link *l = ac->data;
    if (!l)
        return;
    if (!reply) {
        drop(l, loss(l), context_error(ac));
        return;
    }
    struct pending p = pop(l);
    l->depth++;
    p.fn(p.arg, reply);
    leave(l);
}

/* hiredis lost a connection with nothing pending; it frees the context after this returns. */
static void on_disconnect(const redisAsyncContext *cac, int status)
{
    (void)status;
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct redis_link *l = ac->data;
    if (!l)
        return;
    ac->data = NULL;
    l->ac = NULL; /* not ours to free */
    drop(l, loss(l), context_error(ac));
}

/* The answer to the first command on a connection (never NULL from on_reply; NULL from
 * flush_pending, when the connection went first: nothing to do). */
static void on_hello(void *arg, redisReply *reply)
{
    struct redis_link *l = arg;
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        drop(l, l->password ? "authentication failed" : "the first PING was refused", reply->str);
        return;
    }
    l->up = true;
    l->backoff_ms = l->backoff_min_ms;
    log_info("redis: up (%s link, %s)", l->name, l->addr);
    l->on_state(l->arg, true);
}

/* AUTH or PING, as the connection's first pending command: it is sent as soon as the
 * connection is made and its send time starts the timeout at the connect. */
static int send_hello(struct redis_link *l)
{
    const char *argv[2] = {"AUTH", l->password};
    if (!l->password)
        argv[0] = "PING";
    if (redisAsyncCommandArgv(l->ac, on_reply, NULL, l->password ? 2 : 1, argv, NULL) != REDIS_OK)
        return -1;
    push(l, on_hello, l);
    return 0;
}

static void connect_now(struct redis_link *l)
{
    const char *why = "out of memory";
    redisAsyncContext *ac =
        l->is_unix ? redisAsyncConnectUnix(l->host) : redisAsyncConnect(l->host, l->port);
    if (!ac)
        goto fail;
    if (ac->err) {
        why = ac->errstr;
        goto fail;
    }
    if (redis_event_attach(ac, l->base) != 0)
        goto fail;
    ac->data = l;
    l->ac = ac;
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (send_hello(l) != 0)
        drop(l, loss(l), "out of memory");
    return;

fail:
    retry_later(l, loss(l), why);
    if (ac)
        redisAsyncFree(ac);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    connect_now(arg);
}

/* Every timeout_ms / 4 while something is pending: the oldest is the one waited for longest. */
static void on_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct redis_link *l = arg;
    if (l->count && now_ms() - l->ring[l->head].sent_ms >= l->timeout_ms) {
        char why[64];
        snprintf(why, sizeof why, "no answer in %ld ms", l->timeout_ms);
        drop(l, loss(l), why);
    }
}

/* --- the interface ------------------------------------------------------------------------ */

static int check_settings(const struct redis_link_settings *s, char *err, size_t errlen)
{
    if (s->timeout_ms <= 0 || s->max_inflight < 1 || s->backoff_min_ms <= 0 ||
        s->backoff_max_ms < s->backoff_min_ms || s->backoff_max_ms > UINT32_MAX / 2) {
        snprintf(err, errlen,
                 "redis link: timeout, max_inflight and backoff must be positive "
                 "(backoff_min <= backoff_max)");
        return -1;
    }
    return 0;
}

static char *dup_or_null(const char *s, bool *failed)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d)
        *failed = true;
    return d;
}

/* Everything but the address: the strings, the queue and the timers. */
static int copy_settings(struct redis_link *l, struct event_base *base,
                         const struct redis_link_settings *s)
{
    bool failed = false;
    l->addr = dup_or_null(s->addr, &failed);
    l->password = dup_or_null(s->password, &failed);
    l->name = dup_or_null(s->name ? s->name : "redis", &failed);
    l->ring = calloc(s->max_inflight, sizeof *l->ring);
    l->retry = evtimer_new(base, on_retry, l);
    l->check = event_new(base, -1, EV_PERSIST, on_check, l);
    if (failed || !l->ring || !l->retry || !l->check)
        return -1;
    l->base = base;
    l->cap = s->max_inflight;
    l->timeout_ms = s->timeout_ms;
    l->backoff_min_ms = l->backoff_ms = s->backoff_min_ms;
    l->backoff_max_ms = s->backoff_max_ms;
    return 0;
}

int redis_link_new(struct redis_link **out, struct event_base *base,
                   const struct redis_link_settings *s, redis_link_state_fn on_state, void *arg,
                   char *err, size_t errlen)
{
    if (check_settings(s, err, errlen) != 0)
        return -1;
    struct redis_link *l = calloc(1, sizeof *l);
    if (!l)
        goto nomem;
    if (redis_link_parse_addr(s->addr, l->host, sizeof l->host, &l->port, &l->is_unix, err,
                              errlen) != 0)
        goto fail;
    if (copy_settings(l, base, s) != 0)
        goto nomem;
    l->on_state = on_state;
    l->arg = arg;
    connect_now(l);
    *out = l;
    return 0;

nomem:
    snprintf(err, errlen, "redis link: out of memory");
fail:
    if (l)
        destroy(l);
    return -1;
}

bool redis_link_up(const struct redis_link *l)
{
    return l->up;
}

size_t redis_link_inflight(const struct redis_link *l)
{
    return l->up ? l->count : 0; /* while down, only the first command can be pending */
}

/* Commands after which replies no longer come one per command. */
static bool refused_command(const char *name, size_t len)
{
    static const char *const refused[] = {"subscribe",   "psubscribe",   "ssubscribe",
                                          "unsubscribe", "punsubscribe", "sunsubscribe",
                                          "monitor"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (strlen(refused[i]) == len && strncasecmp(name, refused[i], len) == 0)
            return true;
    return false;
}

int redis_link_command(struct redis_link *l, redis_link_reply_fn fn, void *arg, int argc,
                       const char **argv, const size_t *argvlen)
{
    if (!l->up || l->count == l->cap || argc < 1 ||
        refused_command(argv[0], argvlen ? argvlen[0] : strlen(argv[0])))
        return -1;
    if (redisAsyncCommandArgv(l->ac, on_reply, NULL, argc, argv, argvlen) != REDIS_OK)
        return -1;
    push(l, fn, arg);
    return 0;
}

void redis_link_reset(struct redis_link *l)
{
    if (l->ac)
        drop(l, "connection dropped", "reset by its owner");
}

void redis_link_free(struct redis_link *l)
{
    if (!l || l->freeing)
        return;
    l->freeing = true;
    l->up = false;
    event_del(l->retry);
    detach(l);
    flush_pending(l); /* and the memory goes, unless one of the owner's callbacks runs now */
}
