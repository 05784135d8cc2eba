/* How bytes reach a socket: the transports behind the net layer (plain TCP, TLS). Private to
 * the net layer (net.c and net_tls.c): the chat layer never sees it. A transport works on a
 * connection's net_io; net.c calls only these functions, never recv/send or OpenSSL. */
#ifndef PARLEY_NET_IO_H
#define PARLEY_NET_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* What a transport needs to go on after it answered "again". */
enum net_io_want {
    NET_WANT_NONE = 0,
    NET_WANT_READ = 1,  /* the socket must become readable */
    NET_WANT_WRITE = 2, /* the socket must become writable */
};

/* The result of a handshake step. */
enum net_io_step {
    NET_IO_FAIL = -1, /* the handshake failed: close */
    NET_IO_AGAIN = 0, /* call again when `want` is met */
    NET_IO_DONE = 1,  /* the connection carries data now */
};

/* One connection's byte path. */
struct net_io {
    int fd;
    void *tls;             /* the transport's own state (an SSL object), or NULL */
    enum net_io_want want; /* set by a step, a read or a write that answered "again" */
};

/* A transport. read and write work like recv and send: > 0 bytes, 0 end of stream (read
 * only), -1 with errno (EAGAIN: `want` tells what to wait for). */
struct net_transport {
    const char *name;
    /* Prepares `io` for a newly accepted socket with the listener's `ctx`. Returns 0 or -1. */
    int (*start)(struct net_io *io, void *ctx);
    enum net_io_step (*handshake)(struct net_io *io);
    ssize_t (*read)(struct net_io *io, void *buf, size_t n);
    ssize_t (*write)(struct net_io *io, const void *buf, size_t n);
    /* Returns true when bytes already read from the socket wait inside the transport. */
    bool (*pending)(const struct net_io *io);
    /* Ends the stream cleanly when it can (a TLS close_notify), then frees the transport's
     * state. The socket itself is closed by net.c. */
    void (*release)(struct net_io *io);
};

/* Plain TCP (net.c). */
extern const struct net_transport net_io_plain;

/* TLS (net_tls.c); its listener's context is a struct net_tls. */
extern const struct net_transport net_io_tls;

#endif
