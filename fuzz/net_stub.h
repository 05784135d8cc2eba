/* The fuzzers' stand-in connection; see net_stub.c. */
#ifndef PARLEY_FUZZ_NET_STUB_H
#define PARLEY_FUZZ_NET_STUB_H

#include <stdbool.h>
#include <stddef.h>

#include "server/net.h"

/* A fake connection: what the server wrote and whether it closed it. */
struct net_conn {
    size_t bytes_out;
    bool closed;
};

#endif
