/* Unit tests of src/server/net_uring.c: a batch of sends reaches every socket in full and in
 * order, a full socket answers -EAGAIN at once (never waits), a closed peer answers -EPIPE, a
 * socket with little room takes part of a send, a batch at the ring's capacity. Skipped only
 * where the kernel refuses io_uring itself; a kernel that has it must give a ring. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/io_uring.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "server/net_uring.h"

#define PAIRS 8

/* Whether the kernel lets this process make an io_uring at all (not: an old kernel,
 * kernel.io_uring_disabled, a seccomp filter). */
static bool kernel_has_io_uring(void)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    int fd = (int)syscall(__NR_io_uring_setup, 4, &p);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

static struct net_uring *ring_or_skip(unsigned entries)
{
    if (!kernel_has_io_uring())
        skip();
    struct net_uring *u = net_uring_new(entries);
    assert_non_null(u); /* the kernel has io_uring: the ring, its maps and its probe must work */
    return u;
}

static void make_pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static void fill(int fd)
{
    static const char junk[4096];
    while (send(fd, junk, sizeof(junk), MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
        ;
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

static void test_batch_reaches_every_socket(void **state)
{
    (void)state;
    struct net_uring *u = ring_or_skip(16);
    int sv[PAIRS][2], fds[PAIRS];
    char text[PAIRS][32];
    const void *bufs[PAIRS];
    size_t lens[PAIRS];
    ssize_t res[PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        make_pair(sv[i]);
        fds[i] = sv[i][0];
        lens[i] = (size_t)snprintf(text[i], sizeof(text[i]), "message %d for socket %d\n", i, i);
        bufs[i] = text[i];
    }
    for (int round = 0; round < 3; round++) {
        assert_int_equal(net_uring_send(u, PAIRS, fds, bufs, lens, res), 0);
        for (int i = 0; i < PAIRS; i++)
            assert_int_equal(res[i], (ssize_t)lens[i]);
    }
    for (int i = 0; i < PAIRS; i++) {
        char got[256];
        ssize_t r = recv(sv[i][1], got, sizeof(got), 0);
        assert_int_equal(r, (ssize_t)(3 * lens[i]));
        for (int round = 0; round < 3; round++)
            assert_memory_equal(got + (size_t)round * lens[i], text[i], lens[i]);
        close(sv[i][0]);
        close(sv[i][1]);
    }
    net_uring_free(u);
}

static void test_full_socket_and_closed_peer_do_not_wait(void **state)
{
    (void)state;
    struct net_uring *u = ring_or_skip(16);
    int full[2], gone[2], fine[2];
    make_pair(full);
    make_pair(gone);
    make_pair(fine);
    fill(full[0]);
    close(gone[1]);
    int fds[3] = {full[0], gone[0], fine[0]};
    const void *bufs[3] = {"a\n", "b\n", "c\n"};
    size_t lens[3] = {2, 2, 2};
    ssize_t res[3];
    /* a send that waited would leave the batch unanswered: -1 after the ring's 1 s */
    assert_int_equal(net_uring_send(u, 3, fds, bufs, lens, res), 0);
    assert_int_equal(res[0], -EAGAIN);
    assert_int_equal(res[1], -EPIPE);
    assert_int_equal(res[2], 2);
    char got[4];
    assert_int_equal(recv(fine[1], got, sizeof(got), 0), 2);
    assert_memory_equal(got, "c\n", 2);
    close(full[0]);
    close(full[1]);
    close(gone[0]);
    close(fine[0]);
    close(fine[1]);
    assert_int_equal(net_uring_capacity(u) >= 16, 1);
    net_uring_free(u);
}

static void test_socket_with_little_room_takes_part(void **state)
{
    (void)state;
    struct net_uring *u = ring_or_skip(4);
    int small[2], other[2];
    make_pair(small);
    make_pair(other);
    int snd = 4096;
    assert_int_equal(setsockopt(small[0], SOL_SOCKET, SO_SNDBUF, &snd, sizeof(snd)), 0);
    enum { BIG = 1 << 20 };
    char *big = malloc(BIG);
    assert_non_null(big);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (char)('a' + i % 26);
    int fds[2] = {small[0], other[0]};
    const void *bufs[2] = {big, "y\n"};
    size_t lens[2] = {BIG, 2};
    ssize_t res[2];
    assert_int_equal(net_uring_send(u, 2, fds, bufs, lens, res), 0);
    assert_true(res[0] > 0 && res[0] < BIG); /* part of it, at once */
    assert_int_equal(res[1], 2);
    char *got = malloc(BIG);
    assert_non_null(got);
    size_t have = 0;
    for (;;) {
        ssize_t r = recv(small[1], got + have, BIG - have, MSG_DONTWAIT);
        if (r <= 0)
            break;
        have += (size_t)r;
    }
    assert_int_equal(have, (size_t)res[0]); /* what it said went, and only that */
    assert_memory_equal(got, big, have);
    free(got);
    free(big);
    close(small[0]);
    close(small[1]);
    close(other[0]);
    close(other[1]);
    net_uring_free(u);
}

static void test_batch_at_capacity_and_beyond(void **state)
{
    (void)state;
    struct net_uring *u = ring_or_skip(4);
    unsigned cap = net_uring_capacity(u);
    assert_true(cap >= 4 && cap <= 64);
    int(*sv)[2] = calloc(cap + 1, sizeof(*sv));
    int *fds = calloc(cap + 1, sizeof(*fds));
    const void **bufs = calloc(cap + 1, sizeof(*bufs));
    size_t *lens = calloc(cap + 1, sizeof(*lens));
    ssize_t *res = calloc(cap + 1, sizeof(*res));
    assert_non_null(sv);
    assert_non_null(fds);
    assert_non_null(bufs);
    assert_non_null(lens);
    assert_non_null(res);
    for (unsigned i = 0; i <= cap; i++) {
        make_pair(sv[i]);
        fds[i] = sv[i][0];
        bufs[i] = "x\n";
        lens[i] = 2;
    }
    res[0] = 7;
    assert_int_equal(net_uring_send(u, cap + 1, fds, bufs, lens, res), -1); /* too many */
    assert_int_equal(res[0], 0);                                            /* nothing sent */
    assert_int_equal(net_uring_capacity(u), cap);                           /* still usable */
    for (int round = 0; round < 100; round++) { /* the rings wrap around */
        assert_int_equal(net_uring_send(u, cap, fds, bufs, lens, res), 0);
        for (unsigned i = 0; i < cap; i++)
            assert_int_equal(res[i], 2);
    }
    for (unsigned i = 0; i <= cap; i++) {
        char got[512];
        ssize_t want = i < cap ? 200 : -1;
        ssize_t r = recv(sv[i][1], got, sizeof(got), 0);
        assert_int_equal(r, want);
        close(sv[i][0]);
        close(sv[i][1]);
    }
    free(sv);
    free(fds);
    free(bufs);
    free(lens);
    free(res);
    net_uring_free(u);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_reaches_every_socket),
        cmocka_unit_test(test_full_socket_and_closed_peer_do_not_wait),
        cmocka_unit_test(test_socket_with_little_room_takes_part),
        cmocka_unit_test(test_batch_at_capacity_and_beyond),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
