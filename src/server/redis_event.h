/* Runs a hiredis 0.14 asynchronous context on a libevent loop. Parley's own adapter rather
 * than the one hiredis 0.14 ships (adapters/libevent.h): that one relies on one-shot events
 * re-armed by hiredis and has no guard for the context being freed from inside its own
 * callback (the guard hiredis added in 1.0, commit 24e6166). Here the events persist, one
 * callback serves reading and writing, and a cleanup asked for while that callback runs (a
 * context freed from a reply or disconnect callback) is finished when it returns. */
#ifndef PARLEY_REDIS_EVENT_H
#define PARLEY_REDIS_EVENT_H

#include <hiredis/async.h>

struct event_base;

/* Lets `ac` (just made by redisAsyncConnect or redisAsyncConnectUnix) read and write from
 * `base`'s loop until hiredis frees it; the adapter's state goes with it, through the context's
 * cleanup hook. Freeing the context from inside any of its callbacks is safe. Returns 0, or -1
 * when `ac` already has an event loop or memory ran out (then `ac` is left as it was). */
int redis_event_attach(redisAsyncContext *ac, struct event_base *base);

#endif
