/* Sockets and the event loop: a TCP listener, non-blocking connections split into frames,
 * bounded output written once per loop iteration. Knows nothing of chat: the owner of each
 * connection gets its frames through callbacks and queues output with net_send. */
#ifndef PARLEY_NET_H
#define PARLEY_NET_H

#include <stdbool.h>
#include <stddef.h>

#include "common/linebuf.h"

struct event_base;
struct net;
struct net_conn;
struct net_tls;

/* Why a connection ended. */
enum net_close_reason {
    NET_CLOSE_EOF,      /* the peer closed */
    NET_CLOSE_ERROR,    /* a socket error (reset, ...) */
    NET_CLOSE_OVERFLOW, /* the peer did not read its output and hit max_output */
    NET_CLOSE_LOCAL,    /* the owner called net_close */
    NET_CLOSE_SHUTDOWN, /* net_free closed it */
};

/* What the owner of the connections provides. */
struct net_handlers {
    /* A connection was accepted. Returns the owner's object for it, or NULL to refuse it. */
    void *(*on_open)(void *ctx, struct net_conn *conn);
    /* A frame arrived. Returns non-zero to stop reading this batch (the owner closed it). */
    int (*on_frame)(void *owner, enum linebuf_kind kind, const char *line, size_t len);
    /* The connection is gone; called once, at a safe point; the owner frees its object. */
    void (*on_close)(void *owner, enum net_close_reason why);
};

/* The limits net enforces. */
struct net_limits {
    size_t max_line;        /* frame length, LF included */
    size_t max_output;      /* bytes queued for one connection before it is cut off */
    size_t max_connections; /* accepted connections at once */
    size_t max_per_address; /* of those, from one source address (peerlimit.h); 0: no limit */
    long handshake_secs;    /* a transport handshake (TLS) must end within this */
    size_t send_batch;      /* sends made in one system call (net_uring.h); 0: one send() each */
};

/* Counters for diagnostics and the benchmark. */
struct net_stats {
    unsigned long long accepted, refused, reads, writes, bytes_in, bytes_out, overflows;
    size_t open;
    size_t queued; /* output bytes waiting to be written, all connections together */
};

/* Creates the network layer on `base`. Returns NULL on failure. */
struct net *net_new(struct event_base *base, const struct net_limits *limits,
                    const struct net_handlers *handlers, void *ctx);

/* Listens on `addr` (NULL: any IPv4 address) and `port` (0: any free one); the bound port is
 * stored in `*bound`. With `tls` (net_tls.h) the port speaks TLS only, else plain TCP. At most
 * two ports. Returns 0, or -1 with a message in `err`. */
int net_listen(struct net *n, const char *addr, int port, struct net_tls *tls, int *bound,
               char *err, size_t errlen);

/* Queues `len` bytes for the connection. Output is written only by net_flush, at the end of
 * the loop iteration (never from inside a callback, so it can still be corrected).
 * Past max_output the connection is closed with NET_CLOSE_OVERFLOW and the bytes dropped,
 * except that while less than a quarter of max_output is queued any frame is taken, however
 * long (a stored message accepted under larger limits must still go out). */
void net_send(struct net_conn *c, const char *data, size_t len);

/* Returns true when net_send would queue `len` more bytes now rather than close the
 * connection for overflow. */
bool net_output_fits(const struct net_conn *c, size_t len);

/* Closes the connection at the next safe point, after writing what is queued (bounded by a
 * short grace period). Frames still arriving are ignored. Safe to call more than once. */
void net_close(struct net_conn *c);

/* Stops handing the connection's frames to its owner: frames of the read under way still
 * arrive (at most one read's worth, NET_READ_CHUNK bytes plus a frame begun before), then the
 * socket is not read until net_resume_read. */
void net_pause_read(struct net_conn *c);

/* Reads the connection again after net_pause_read (in the next loop iteration). */
void net_resume_read(struct net_conn *c);

/* Closes the connection at the next safe point dropping everything queued for it: the peer
 * sees the connection end and none of that output. */
void net_abort(struct net_conn *c);

/* Writes every connection's queued output and finishes pending closes. Call once per loop
 * iteration, after the callbacks ran. */
void net_flush(struct net *n);

/* Returns the connection's peer address as text (an IP address). */
const char *net_peer_addr(const struct net_conn *c);

/* Replaces the `len` bytes queued at `pos` (counted from the first byte not yet written) with
 * `with_len` bytes of `with`: output can be corrected until net_flush writes it. Returns 0, or
 * -1 when those bytes are not queued any more (the connection died). */
int net_splice(struct net_conn *c, size_t pos, size_t len, const char *with, size_t with_len);

/* Returns the bytes queued for the connection and not yet written. */
size_t net_pending_output(const struct net_conn *c);

/* Fills `*st` with the counters. */
void net_get_stats(const struct net *n, struct net_stats *st);

/* Closes the listener and every connection (on_close with NET_CLOSE_SHUTDOWN), frees all. */
void net_free(struct net *n);

#endif
