/* A stand-in for src/server/net.c so a fuzzer can drive sessions without sockets: output is
 * counted and dropped, closes are recorded for the harness to finish. */
#include <stdlib.h>
#include <string.h>

#include "fuzz/net_stub.h"

void net_send(struct net_conn *c, const char *data, size_t len)
{
    if (c->closed)
        return;
    (void)data;
    c->bytes_out += len;
    if (len == 0 || data[len - 1] != '\n')
        abort(); /* every frame the server writes ends with LF */
    if (memchr(data, '\0', len))
        abort(); /* and never carries a NUL */
}

void net_close(struct net_conn *c)
{
    c->closed = true;
}

const char *net_peer_addr(const struct net_conn *c)
{
    (void)c;
    return "127.0.0.1";
}

void net_abort(struct net_conn *c)
{
    c->closed = true;
}

void net_pause_read(struct net_conn *c)
{
    (void)c;
}

void net_resume_read(struct net_conn *c)
{
    (void)c;
}

int net_splice(struct net_conn *c, size_t pos, size_t len, const char *with, size_t with_len)
{
    (void)c;
    (void)pos;
    (void)len;
    (void)with;
    (void)with_len;
    return 0;
}

size_t net_pending_output(const struct net_conn *c)
{
    (void)c;
    return 0;
}

bool net_output_fits(const struct net_conn *c, size_t len)
{
    (void)c;
    (void)len;
    return true;
}
