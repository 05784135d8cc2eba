/*
 * Many sends in one system call, through an io_uring (Linux): the fan-out of a broadcast is one
 * io_uring_enter instead of one send per recipient, so the loop is not stopped in the middle of
 * it by the readers its sends wake. Every send is MSG_DONTWAIT: one that would block completes
 * at once with -EAGAIN (checked when the ring is made), so a batch never waits for a client.
 */
#define _GNU_SOURCE
#include "server/net_uring.h"

#include <errno.h>
#include <linux/io_uring.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* How long one batch may take before the ring is given up (never, if the kernel keeps its
 * promise: the sends do not wait). */
#define NET_URING_WAIT_MS 1000

struct net_uring {
    int fd;
    unsigned entries;
    void *sq_map, *cq_map;
    size_t sq_map_len, cq_map_len;
    struct io_uring_sqe *sqes;
    size_t sqes_len;
    _Atomic unsigned *sq_tail;
    unsigned sq_mask;
    unsigned *sq_array;
    _Atomic unsigned *cq_head, *cq_tail;
    unsigned cq_mask;
    struct io_uring_cqe *cqes;
    bool broken;
};

static int uring_setup(unsigned entries, struct io_uring_params *p)
{
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int uring_enter(int fd, unsigned submit, unsigned wait, unsigned flags, void *arg,
                       size_t argsz)
{
    return (int)syscall(__NR_io_uring_enter, fd, submit, wait, flags, arg, argsz);
}

static int map_rings(struct net_uring *u, const struct io_uring_params *p)
{
    u->sq_map_len = p->sq_off.array + p->sq_entries * sizeof(unsigned);
    u->cq_map_len = p->cq_off.cqes + p->cq_entries * sizeof(struct io_uring_cqe);
    u->sq_map = mmap(NULL, u->sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
                     IORING_OFF_SQ_RING);
    if (u->sq_map == MAP_FAILED)
        return -1;
    u->cq_map = mmap(NULL, u->cq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
                     IORING_OFF_CQ_RING);
    if (u->cq_map == MAP_FAILED)
        return -1;
    u->sqes_len = p->sq_entries * sizeof(struct io_uring_sqe);
    u->sqes = mmap(NULL, u->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
                   IORING_OFF_SQES);
    if (u->sqes == MAP_FAILED)
        return -1;
    char *sq = u->sq_map, *cq = u->cq_map;
    u->sq_tail = (_Atomic unsigned *)(sq + p->sq_off.tail);
    u->sq_mask = *(unsigned *)(sq + p->sq_off.ring_mask);
    u->sq_array = (unsigned *)(sq + p->sq_off.array);
    u->cq_head = (_Atomic unsigned *)(cq + p->cq_off.head);
    u->cq_tail = (_Atomic unsigned *)(cq + p->cq_off.tail);
    u->cq_mask = *(unsigned *)(cq + p->cq_off.ring_mask);
    u->cqes = (struct io_uring_cqe *)(cq + p->cq_off.cqes);
    return 0;
}

static long long mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static unsigned completions(const struct net_uring *u)
{
    return atomic_load_explicit(u->cq_tail, memory_order_acquire) -
           atomic_load_explicit(u->cq_head, memory_order_relaxed);
}

/* Waits for `want` completions, NET_URING_WAIT_MS at most in all (signals included); returns
 * how many there are. Sends on sockets complete inside the submission: no wait, normally. */
static unsigned wait_completions(struct net_uring *u, unsigned want)
{
    long long deadline = mono_ns() + NET_URING_WAIT_MS * 1000000LL;
    for (;;) {
        unsigned have = completions(u);
        long long left = deadline - mono_ns();
        if (have >= want || left <= 0)
            return have;
        struct __kernel_timespec ts = {left / 1000000000LL, left % 1000000000LL};
        struct io_uring_getevents_arg arg;
        memset(&arg, 0, sizeof(arg));
        arg.ts = (unsigned long long)(uintptr_t)&ts;
        int r = uring_enter(u->fd, 0, want, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg,
                            sizeof(arg));
        if (r < 0 && errno != EINTR)
            return completions(u);
    }
}

int net_uring_send(struct net_uring *u, unsigned n, const int *fds, const void *const *bufs,
                   const size_t *lens, ssize_t *res)
{
    if (u->broken || n == 0 || n > u->entries) {
        for (unsigned i = 0; i < n; i++)
            res[i] = 0;
        return -1;
    }
    unsigned tail = atomic_load_explicit(u->sq_tail, memory_order_relaxed);
    for (unsigned i = 0; i < n; i++) {
        unsigned idx = (tail + i) & u->sq_mask;
        struct io_uring_sqe *sqe = &u->sqes[idx];
        memset(sqe, 0, sizeof(*sqe));
        sqe->opcode = IORING_OP_SEND;
        sqe->fd = fds[i];
        sqe->addr = (unsigned long long)(uintptr_t)bufs[i];
        sqe->len = (unsigned)lens[i];
        sqe->msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL;
        sqe->user_data = i;
        u->sq_array[idx] = idx;
        res[i] = -EINPROGRESS;
    }
    atomic_store_explicit(u->sq_tail, tail + n, memory_order_release);
    int r;
    do
        r = uring_enter(u->fd, n, 0, 0, NULL, 0);
    while (r < 0 && errno == EINTR);
    unsigned submitted = r > 0 ? (unsigned)r : 0;
    unsigned done = wait_completions(u, submitted);
    unsigned head = atomic_load_explicit(u->cq_head, memory_order_relaxed);
    for (unsigned k = 0; k < done; k++) {
        const struct io_uring_cqe *cqe = &u->cqes[(head + k) & u->cq_mask];
        if (cqe->user_data < n)
            res[cqe->user_data] = cqe->res;
    }
    atomic_store_explicit(u->cq_head, head + done, memory_order_release);
    if (submitted == n && done == n)
        return 0;
    /* Never used again: what it did not take stays in its queue (res 0, nothing sent), what it
     * took and did not finish stays in the kernel's hands (res -EINPROGRESS). */
    u->broken = true;
    for (unsigned i = submitted; i < n; i++)
        res[i] = 0;
    return -1;
}

/* A send on a full socket must come back with -EAGAIN at once, not wait: else no ring. */
static bool dontwait_honoured(struct net_uring *u)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return false;
    static const char fill[4096];
    while (send(sv[0], fill, sizeof(fill), MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
        ;
    const void *buf = fill;
    size_t len = sizeof(fill);
    ssize_t res = 0;
    int fd = sv[0];
    bool ok = net_uring_send(u, 1, &fd, &buf, &len, &res) == 0 && res == -EAGAIN;
    close(sv[0]);
    close(sv[1]);
    return ok;
}

struct net_uring *net_uring_new(unsigned entries)
{
    struct net_uring *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->fd = -1;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SUBMIT_ALL; /* 5.18: a send refused at submission stops no other */
    u->fd = uring_setup(entries, &p);
    if (u->fd < 0 && errno == EINVAL) {
        memset(&p, 0, sizeof(p));
        u->fd = uring_setup(entries, &p);
    }
    if (u->fd < 0)
        goto fail;
    u->entries = p.sq_entries < p.cq_entries ? p.sq_entries : p.cq_entries;
    if (u->entries > entries)
        u->entries = entries; /* the kernel rounds up to a power of 2 */
    if (map_rings(u, &p) < 0 || !dontwait_honoured(u))
        goto fail;
    return u;
fail:
    net_uring_free(u);
    return NULL;
}

unsigned net_uring_capacity(const struct net_uring *u)
{
    return u->broken ? 0 : u->entries;
}

void net_uring_free(struct net_uring *u)
{
    if (!u)
        return;
    if (u->sqes && u->sqes != MAP_FAILED)
        munmap(u->sqes, u->sqes_len);
    if (u->cq_map && u->cq_map != MAP_FAILED)
        munmap(u->cq_map, u->cq_map_len);
    if (u->sq_map && u->sq_map != MAP_FAILED)
        munmap(u->sq_map, u->sq_map_len);
    if (u->fd >= 0 && !u->broken)
        close(u->fd);
    free(u);
}
