/* The parts of net.h that only server.c's set-up and housekeeping call. Tests and fuzzers that
 * build a server by hand, with their own stand-in connections, link these instead of net.c. */
#include <string.h>

#include "server/net.h"

struct net *net_new(struct event_base *base, const struct net_limits *limits,
                    const struct net_handlers *handlers, void *ctx)
{
    (void)base;
    (void)limits;
    (void)handlers;
    (void)ctx;
    return NULL;
}

int net_listen(struct net *n, const char *addr, int port, struct net_tls *tls, int *bound,
               char *err, size_t errlen)
{
    (void)n;
    (void)tls;
    (void)addr;
    (void)port;
    (void)bound;
    (void)err;
    (void)errlen;
    return -1;
}

void net_flush(struct net *n)
{
    (void)n;
}

void net_get_stats(const struct net *n, struct net_stats *st)
{
    (void)n;
    memset(st, 0, sizeof(*st));
}

void net_free(struct net *n)
{
    (void)n;
}
