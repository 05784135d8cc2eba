/* Many sends in one system call (io_uring, Linux); see net_uring.c. */
#ifndef PARLEY_NET_URING_H
#define PARLEY_NET_URING_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct net_uring;

/* A ring for batches of up to `entries` sends, or NULL when the kernel has none (or one whose
 * sends on a full socket would wait). */
struct net_uring *net_uring_new(unsigned entries);

/* Sends bufs[i] (lens[i] bytes) on fds[i] for i < n, MSG_DONTWAIT, in one system call, and
 * returns 0 with res[i] the byte count or -errno of each (never waiting for a client). -1
 * with nothing sent (res[i] 0) when n is 0 or over the capacity. -1 when the ring failed, which is
 * then not used again: res[i] is 0 for a send it did not take, and -EINPROGRESS for one it took and
 * did not finish, whose buffer must never be reused. */
int net_uring_send(struct net_uring *u, unsigned n, const int *fds, const void *const *bufs,
                   const size_t *lens, ssize_t *res);

/* How many sends one batch may hold (0 once the ring failed). */
unsigned net_uring_capacity(const struct net_uring *u);

/* Closes the ring; NULL is ignored. */
void net_uring_free(struct net_uring *u);

#endif
