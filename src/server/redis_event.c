/* hiredis on libevent; see redis_event.h. */
#include "server/redis_event.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>

#include <event2/event.h>

/* The adapter's state for one context. */
struct redis_event {
    redisAsyncContext *ac;
    struct event *rev, *wev; /* persistent: added while hiredis wants to read or write */
    unsigned entered;        /* adapter callbacks running now (read and write can nest) */
    bool deleted;            /* hiredis freed the context meanwhile: free once they return */
};

static void redis_event_free(struct redis_event *re)
{
    event_free(re->rev);
    event_free(re->wev);
    free(re);
}

/* One readiness callback: hands it to hiredis, which may free the context (and through
 * on_cleanup ask for this state to go) before it returns. */
static void on_ready(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct redis_event *re = arg;
    re->entered++;
    if (what & EV_READ)
        redisAsyncHandleRead(re->ac);
    if ((what & EV_WRITE) && !re->deleted)
        redisAsyncHandleWrite(re->ac);
    assert(re->entered > 0);
    re->entered--;
    if (re->deleted && re->entered == 0)
        redis_event_free(re);
}

static void add_read(void *privdata)
{
    struct redis_event *re = privdata;
    event_add(re->rev, NULL);
}

static void del_read(void *privdata)
{
    struct redis_event *re = privdata;
    event_del(re->rev);
}

static void add_write(void *privdata)
{
    struct redis_event *re = privdata;
    event_add(re->wev, NULL);
}

static void del_write(void *privdata)
{
    struct redis_event *re = privdata;
    event_del(re->wev);
}

/* hiredis frees the context: no more events; the state goes now, or when the adapter
 * callback under way returns. */
static void on_cleanup(void *privdata)
{
    struct redis_event *re = privdata;
    event_del(re->rev);
    event_del(re->wev);
    re->ac = NULL;
    if (re->entered)
        re->deleted = true;
    else
        redis_event_free(re);
}

int redis_event_attach(redisAsyncContext *ac, struct event_base *base)
{
    if (ac->ev.data)
        return -1;
    struct redis_event *re = calloc(1, sizeof *re);
    if (!re)
        return -1;
    re->ac = ac;
    re->rev = event_new(base, ac->c.fd, EV_READ | EV_PERSIST, on_ready, re);
    re->wev = event_new(base, ac->c.fd, EV_WRITE | EV_PERSIST, on_ready, re);
    if (!re->rev || !re->wev)
        goto fail;
    ac->ev.data = re;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = on_cleanup;
    /* Reading from the start; writing until the connection is made (hiredis learns that from
     * the first write readiness and stops it once nothing waits to be written). */
    add_read(re);
    add_write(re);
    return 0;

fail:
    if (re->rev)
        event_free(re->rev);
    if (re->wev)
        event_free(re->wev);
    free(re);
    return -1;
}
