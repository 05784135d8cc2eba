/* TCP listener and connections on libevent; see net.h.
 *
 * Output follows Redis: net_send only appends to the connection's buffer and puts the
 * connection on a flush list; net_flush, run once per loop iteration, writes each buffer with
 * one system call and arms a write event only when the socket would block. Connections are
 * freed only inside net_flush, never in the middle of a callback or a fan-out. */
#define _GNU_SOURCE /* accept4 */
#include "server/net.h"
#include "server/net_uring.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/log.h"
#include "server/net_io.h"
#include "server/peerlimit.h"

#define NET_READ_CHUNK 65536
#define NET_ACCEPT_BATCH 64
#define NET_CLOSE_GRACE_SEC 5
#define NET_MAX_LISTENERS 2 /* the plain port and the TLS port */

enum conn_state {
    CONN_HANDSHAKE, /* the transport's handshake runs; no owner yet */
    CONN_OPEN,      /* reading and writing */
    CONN_CLOSING,   /* writing what is queued, then closed */
    CONN_DEAD,      /* to be freed at the next flush */
};

/* A listening socket and the transport its connections speak. */
struct net_listener {
    struct net *net;
    struct event *ev;
    int fd;
    const struct net_transport *tp;
    void *tp_ctx;
};

struct net_conn {
    struct net *net;
    struct net_conn *prev, *next; /* every connection */
    struct net_conn *flush_next;  /* the flush list */
    void *owner;
    struct event *rev;
    struct event *wev;   /* created when a write would block */
    struct event *timer; /* the handshake deadline, then the grace period of a close */
    char *out;
    size_t out_off, out_len, out_cap;
    struct linebuf in;
    struct net_io io;
    const struct net_transport *tp;
    enum conn_state state;
    enum net_close_reason reason;
    bool in_flush_list;
    bool writing;
    bool paused;                 /* its owner asked for no more frames for now */
    bool read_wants_write;       /* the last read needs the socket writable first (TLS) */
    bool write_wants_read;       /* the last write needs the socket readable first (TLS) */
    struct peerlimit_key source; /* counted in net's per_source */
    union {
        struct sockaddr sa;
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } peer;
};

struct net {
    struct event_base *base;
    struct net_limits limits;
    struct net_handlers handlers;
    void *ctx;
    struct net_listener listeners[NET_MAX_LISTENERS];
    size_t n_listeners;
    int spare_fd; /* kept open to shed connections when out of descriptors */
    struct net_conn *conns;
    struct net_conn *flush_head;
    struct net_uring *uring; /* sends of one flush in one system call, if the kernel can */
    struct net_stats stats;
    struct peerlimit per_source;                          /* connections open per source address */
    struct log_throttle full_log, per_source_log, fd_log; /* refusals, at most one line a minute */
};

static char read_chunk[NET_READ_CHUNK];

/* ---- the plain TCP transport ---- */

static int plain_start(struct net_io *io, void *ctx)
{
    (void)io;
    (void)ctx;
    return 0;
}

static enum net_io_step plain_handshake(struct net_io *io)
{
    (void)io;
    return NET_IO_DONE;
}

static ssize_t plain_read(struct net_io *io, void *buf, size_t n)
{
    io->want = NET_WANT_READ;
    return recv(io->fd, buf, n, 0);
}

static ssize_t plain_write(struct net_io *io, const void *buf, size_t n)
{
    io->want = NET_WANT_WRITE;
    return send(io->fd, buf, n, MSG_NOSIGNAL);
}

static bool plain_pending(const struct net_io *io)
{
    (void)io;
    return false;
}

static void plain_release(struct net_io *io)
{
    (void)io;
}

const struct net_transport net_io_plain = {
    "tcp", plain_start, plain_handshake, plain_read, plain_write, plain_pending, plain_release,
};

static void schedule(struct net_conn *c)
{
    if (c->in_flush_list)
        return;
    c->in_flush_list = true;
    c->flush_next = c->net->flush_head;
    c->net->flush_head = c;
}

static void drop_output(struct net_conn *c)
{
    assert(c->net->stats.queued >= c->out_len - c->out_off);
    c->net->stats.queued -= c->out_len - c->out_off;
    free(c->out);
    c->out = NULL;
    c->out_off = c->out_len = c->out_cap = 0;
}

static void mark_dead(struct net_conn *c, enum net_close_reason why)
{
    if (c->state == CONN_DEAD)
        return;
    if (c->state == CONN_OPEN)
        c->reason = why;
    c->state = CONN_DEAD;
    drop_output(c);
    schedule(c);
}

static int frame_cb(void *arg, enum linebuf_kind kind, const char *line, size_t len)
{
    struct net_conn *c = arg;
    if (c->state != CONN_OPEN)
        return 1;
    return c->net->handlers.on_frame(c->owner, kind, line, len);
}

static void open_conn(struct net_conn *c);
static void arm_write(struct net_conn *c);

/* Runs the transport's handshake one step; opens the connection once it is done. */
static void step_handshake(struct net_conn *c)
{
    enum net_io_step st = c->tp->handshake(&c->io);
    if (st == NET_IO_DONE) {
        open_conn(c);
    } else if (st == NET_IO_FAIL) {
        mark_dead(c, NET_CLOSE_ERROR);
    } else if (c->io.want == NET_WANT_WRITE) {
        arm_write(c);
    }
}

/* A read returned `r` (0 or -1): the end, an error, or wait (for a write first, over TLS). */
static void read_failed(struct net_conn *c, ssize_t r)
{
    if (r == 0)
        mark_dead(c, NET_CLOSE_EOF);
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        mark_dead(c, NET_CLOSE_ERROR);
    else if (c->io.want == NET_WANT_WRITE) {
        c->read_wants_write = true;
        arm_write(c);
    }
}

/* Reads and feeds the frames to the owner: once, or over TLS on while the transport holds
 * more bytes, up to NET_READ_CHUNK in all. Bytes still held then wake the connection again in
 * the next loop iteration (the socket will not). */
static void read_some(struct net_conn *c)
{
    size_t budget = NET_READ_CHUNK;
    if (c->paused)
        return;
    for (;;) {
        ssize_t r = c->tp->read(&c->io, read_chunk, sizeof(read_chunk));
        if (r <= 0) {
            read_failed(c, r);
            return;
        }
        c->net->stats.reads++;
        c->net->stats.bytes_in += (unsigned long long)r;
        if (linebuf_feed(&c->in, read_chunk, (size_t)r, frame_cb, c) < 0) {
            mark_dead(c, NET_CLOSE_ERROR);
            return;
        }
        if (c->state != CONN_OPEN || c->paused || !c->tp->pending(&c->io))
            return;
        budget = (size_t)r < budget ? budget - (size_t)r : 0;
        if (budget == 0) {
            event_active(c->rev, EV_READ, 1);
            return;
        }
    }
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct net_conn *c = arg;
    if (c->state == CONN_HANDSHAKE) {
        step_handshake(c);
        return;
    }
    if (c->state != CONN_OPEN)
        return;
    if (c->write_wants_read) {
        c->write_wants_read = false;
        schedule(c);
    }
    read_some(c);
}

static void on_writable(evutil_socket_t fd, short what, void *arg);

static void arm_write(struct net_conn *c)
{
    if (c->writing)
        return;
    if (!c->wev)
        c->wev = event_new(c->net->base, c->io.fd, EV_WRITE | EV_PERSIST, on_writable, c);
    if (!c->wev || event_add(c->wev, NULL) < 0) {
        mark_dead(c, NET_CLOSE_ERROR);
        return;
    }
    c->writing = true;
}

static void disarm_write(struct net_conn *c)
{
    if (c->writing)
        event_del(c->wev);
    c->writing = false;
}

/* Counts `w` bytes of c's output as written (by a send or by the ring). */
static void count_written(struct net_conn *c, size_t w)
{
    c->net->stats.writes++;
    c->net->stats.bytes_out += (unsigned long long)w;
    c->net->stats.queued -= w;
    c->out_off += w;
}

/* Writes queued output. Returns true when everything was written. */
static bool write_out(struct net_conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = c->tp->write(&c->io, c->out + c->out_off, c->out_len - c->out_off);
        if (w > 0) {
            count_written(c, (size_t)w);
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (c->io.want == NET_WANT_READ)
                c->write_wants_read = true;
            else
                arm_write(c);
            return false;
        }
        mark_dead(c, NET_CLOSE_ERROR);
        return false;
    }
    drop_output(c);
    disarm_write(c);
    return true;
}

/* The socket can take more: the next net_flush writes (output never leaves from a callback,
 * so that what the loop iteration queued can still be corrected before it is written). A
 * handshake or a read that waited for it goes on now. */
static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct net_conn *c = arg;
    disarm_write(c);
    if (c->state == CONN_HANDSHAKE) {
        step_handshake(c);
        return;
    }
    schedule(c);
    if (c->read_wants_write && c->state == CONN_OPEN) {
        c->read_wants_write = false;
        read_some(c);
    }
}

/* The handshake took too long, or a closing connection's grace period is over. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct net_conn *c = arg;
    mark_dead(c, c->state == CONN_HANDSHAKE ? NET_CLOSE_ERROR : NET_CLOSE_LOCAL);
}

/* Starts the connection's timer: `secs` from now, on_timer ends it. */
static void start_timer(struct net_conn *c, long secs)
{
    struct timeval tv = {secs, 0};
    if (!c->timer)
        c->timer = evtimer_new(c->net->base, on_timer, c);
    if (!c->timer || evtimer_add(c->timer, &tv) < 0)
        mark_dead(c, NET_CLOSE_LOCAL);
}

static void unlink_conn(struct net_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        c->net->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

/* Frees a connection after telling its owner. Only called from net_flush and net_free. */
static void destroy(struct net_conn *c)
{
    unlink_conn(c);
    c->net->stats.open--;
    peerlimit_release(&c->net->per_source, c->source);
    if (c->owner)
        c->net->handlers.on_close(c->owner, c->reason);
    if (c->rev)
        event_free(c->rev);
    if (c->wev)
        event_free(c->wev);
    if (c->timer)
        event_free(c->timer);
    c->tp->release(&c->io);
    close(c->io.fd);
    linebuf_free(&c->in);
    drop_output(c);
    free(c);
}

/* While less than this share of max_output is queued, a frame longer than the rest is taken. */
#define NET_LONG_FRAME_SHARE 4

bool net_output_fits(const struct net_conn *c, size_t len)
{
    size_t queued = c->out_len - c->out_off, max = c->net->limits.max_output;
    return queued + len <= max || queued < max / NET_LONG_FRAME_SHARE;
}

void net_send(struct net_conn *c, const char *data, size_t len)
{
    if (c->state != CONN_OPEN)
        return;
    size_t queued = c->out_len - c->out_off;
    if (!net_output_fits(c, len)) {
        c->net->stats.overflows++;
        log_info("closing connection from %s: output limit of %zu bytes reached (not reading)",
                 net_peer_addr(c), c->net->limits.max_output);
        mark_dead(c, NET_CLOSE_OVERFLOW);
        return;
    }
    if (c->out_len + len > c->out_cap) {
        if (c->out_off > 0) {
            memmove(c->out, c->out + c->out_off, queued);
            c->out_len = queued;
            c->out_off = 0;
        }
        size_t cap = c->out_cap ? c->out_cap : 512;
        while (cap < c->out_len + len)
            cap *= 2;
        char *p = realloc(c->out, cap);
        if (!p) {
            mark_dead(c, NET_CLOSE_ERROR);
            return;
        }
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    c->net->stats.queued += len;
    schedule(c);
}

void net_close(struct net_conn *c)
{
    if (c->state != CONN_OPEN)
        return;
    c->state = CONN_CLOSING;
    c->reason = NET_CLOSE_LOCAL;
    event_del(c->rev);
    schedule(c);
}

void net_pause_read(struct net_conn *c)
{
    if (c->state != CONN_OPEN || c->paused)
        return;
    c->paused = true;
    event_del(c->rev);
}

void net_resume_read(struct net_conn *c)
{
    if (!c->paused)
        return;
    c->paused = false;
    if (c->state != CONN_OPEN)
        return;
    if (event_add(c->rev, NULL) < 0) {
        mark_dead(c, NET_CLOSE_ERROR);
        return;
    }
    event_active(c->rev, EV_READ, 1); /* bytes may have arrived (or the transport holds some) */
}

void net_abort(struct net_conn *c)
{
    mark_dead(c, NET_CLOSE_LOCAL);
}

/* Writes the IP address of `sa` (IPv4 or IPv6) as text into `text`. */
static void addr_text(const struct sockaddr *sa, char text[INET6_ADDRSTRLEN])
{
    struct sockaddr_in6 v6;
    struct sockaddr_in v4;
    const void *a;
    if (sa->sa_family == AF_INET6) {
        memcpy(&v6, sa, sizeof(v6));
        a = &v6.sin6_addr;
    } else {
        memcpy(&v4, sa, sizeof(v4));
        a = &v4.sin_addr;
    }
    if (!inet_ntop(sa->sa_family, a, text, INET6_ADDRSTRLEN))
        snprintf(text, INET6_ADDRSTRLEN, "0.0.0.0");
}

const char *net_peer_addr(const struct net_conn *c)
{
    static char text[INET6_ADDRSTRLEN];
    addr_text(&c->peer.sa, text);
    return text;
}

int net_splice(struct net_conn *c, size_t pos, size_t len, const char *with, size_t with_len)
{
    size_t queued = c->out_len - c->out_off;
    if (c->state == CONN_DEAD || pos + len > queued)
        return -1;
    size_t need = c->out_len - len + with_len;
    if (need > c->out_cap) {
        char *p = realloc(c->out, need);
        if (!p)
            return -1;
        c->out = p;
        c->out_cap = need;
    }
    char *at = c->out + c->out_off + pos;
    memmove(at + with_len, at + len, queued - pos - len);
    memcpy(at, with, with_len);
    c->out_len = need;
    c->net->stats.queued = c->net->stats.queued - len + with_len;
    return 0;
}

size_t net_pending_output(const struct net_conn *c)
{
    return c->out_len - c->out_off;
}

void net_get_stats(const struct net *n, struct net_stats *st)
{
    *st = n->stats;
}

/* Starts the grace period of a closing connection that still has output queued. */
static void start_grace(struct net_conn *c)
{
    if (c->timer && evtimer_pending(c->timer, NULL))
        return;
    start_timer(c, NET_CLOSE_GRACE_SEC);
}

static void flush_one(struct net_conn *c)
{
    if (c->state == CONN_DEAD) {
        destroy(c);
        return;
    }
    bool done = c->writing ? false : write_out(c); /* else the write event carries on */
    if (c->state == CONN_DEAD)
        return; /* mark_dead put it back on the flush list: the next round frees it */
    if (c->state == CONN_CLOSING) {
        if (done)
            destroy(c);
        else
            start_grace(c);
    }
}

/* The most sends one system call makes (the range of --send-batch), and the most bytes one
 * of them takes. */
#define NET_URING_BATCH 1024
#define NET_URING_MAX_SEND ((size_t)1 << 30)

/* Whether the ring may send c's output: plain TCP, output queued, no write event under way. */
static bool uring_may_send(const struct net_conn *c)
{
    return c->tp == &net_io_plain && !c->writing && c->state != CONN_DEAD &&
           c->out_off < c->out_len;
}

/* Counts what the ring sent of c's output. A send the kernel kept (the ring failed) holds
 * the buffer: it is left to the kernel, and the connection, whose output is now unknown, is
 * shut down (which ends that send, and tells the peer even while the kernel holds the socket)
 * and closed. */
static void uring_sent(struct net_conn *c, ssize_t res)
{
    if (res > 0) {
        count_written(c, (size_t)res);
    } else if (res == -EINPROGRESS) {
        shutdown(c->io.fd, SHUT_RDWR);
        c->out = NULL; /* the kernel's now: mark_dead's drop_output counts it gone, frees nothing */
        mark_dead(c, NET_CLOSE_ERROR);
    }
}

/* Sends the output of up to NET_URING_BATCH connections of `list` in one system call and
 * counts what went; returns the connection after the last one taken. flush_one then goes on
 * with each as usual (what is left, EAGAIN, errors, closing). */
static struct net_conn *uring_send_some(struct net *n, struct net_conn *list,
                                        struct net_conn **taken, size_t *ntaken)
{
    int fds[NET_URING_BATCH];
    const void *bufs[NET_URING_BATCH];
    size_t lens[NET_URING_BATCH];
    ssize_t res[NET_URING_BATCH];
    struct net_conn *sent[NET_URING_BATCH];
    unsigned cap = net_uring_capacity(n->uring), k = 0;
    assert(cap <= NET_URING_BATCH); /* the ring holds at most --send-batch, at most this */
    *ntaken = 0;
    while (list && *ntaken < NET_URING_BATCH && k < cap) {
        struct net_conn *c = list;
        list = c->flush_next; /* still in_flush_list: scheduled again, it is not listed twice */
        taken[(*ntaken)++] = c;
        if (!uring_may_send(c))
            continue;
        fds[k] = c->io.fd;
        bufs[k] = c->out + c->out_off;
        lens[k] = c->out_len - c->out_off;
        if (lens[k] > NET_URING_MAX_SEND)
            lens[k] = NET_URING_MAX_SEND; /* a send's length is 32 bits; the rest goes next */
        sent[k++] = c;
    }
    if (k < 2)
        return list; /* one send is one system call either way */
    bool ok = net_uring_send(n->uring, k, fds, bufs, lens, res) == 0;
    for (unsigned i = 0; i < k; i++)
        uring_sent(sent[i], res[i]);
    if (!ok)
        log_error("io_uring failed: sending with send() from now on");
    return list;
}

void net_flush(struct net *n)
{
    struct net_conn *taken[NET_URING_BATCH];
    while (n->flush_head) {
        struct net_conn *list = n->flush_head;
        n->flush_head = NULL;
        while (list) {
            if (n->uring && net_uring_capacity(n->uring) > 0) {
                size_t nt;
                list = uring_send_some(n, list, taken, &nt);
                for (size_t i = 0; i < nt; i++) {
                    taken[i]->in_flush_list = false;
                    flush_one(taken[i]);
                }
                continue;
            }
            struct net_conn *c = list;
            list = c->flush_next;
            c->in_flush_list = false;
            flush_one(c);
        }
    }
}

/* TCP_NODELAY and keep-alive. Linux copies them from the listening socket to every accepted
 * one, so there they are set once on the listener (5 system calls fewer per connection). */
#ifdef __linux__
#define NET_OPTIONS_INHERITED 1
#else
#define NET_OPTIONS_INHERITED 0
#endif

static void tune_socket(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    int idle = 60, intvl = 10, cnt = 3;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* The handshake is done: the owner takes the connection. */
static void open_conn(struct net_conn *c)
{
    assert(c->state == CONN_HANDSHAKE);
    c->state = CONN_OPEN;
    if (c->timer)
        evtimer_del(c->timer);
    c->owner = c->net->handlers.on_open(c->net->ctx, c);
    if (!c->owner)
        mark_dead(c, NET_CLOSE_LOCAL);
    else if (c->tp->pending(&c->io)) /* bytes that came with the handshake's last flight */
        event_active(c->rev, EV_READ, 1);
}

static void link_conn(struct net *n, struct net_conn *c)
{
    c->next = n->conns;
    if (n->conns)
        n->conns->prev = c;
    n->conns = c;
    n->stats.open++;
    n->stats.accepted++;
}

/* Takes on a connection accepted on `l` whose source was counted. It counts against every
 * limit from now on, its handshake included, which must end within the handshake deadline. */
static void adopt(struct net_listener *l, int fd, const struct sockaddr *sa, socklen_t salen,
                  struct peerlimit_key source)
{
    struct net *n = l->net;
    struct net_conn *c = calloc(1, sizeof(*c));
    if (!c)
        goto fail;
    c->net = n;
    c->io.fd = fd;
    c->tp = l->tp;
    c->source = source;
    c->state = CONN_HANDSHAKE;
    memcpy(&c->peer, sa, salen < sizeof(c->peer) ? salen : sizeof(c->peer));
    c->rev = event_new(n->base, fd, EV_READ | EV_PERSIST, on_readable, c);
    if (!c->rev || event_add(c->rev, NULL) < 0 || c->tp->start(&c->io, l->tp_ctx) < 0)
        goto fail;
    linebuf_init(&c->in, n->limits.max_line);
    if (!NET_OPTIONS_INHERITED)
        tune_socket(fd);
    link_conn(n, c);
    step_handshake(c);
    if (c->state == CONN_HANDSHAKE)
        start_timer(c, n->limits.handshake_secs);
    return;
fail:
    if (c && c->rev)
        event_free(c->rev);
    free(c);
    close(fd);
    peerlimit_release(&n->per_source, source);
    n->stats.refused++;
}

/* Out of descriptors: accept one connection on the spare descriptor and drop it at once, so
 * the listener does not spin on a connection it cannot take. */
static void shed_one(struct net_listener *l)
{
    struct net *n = l->net;
    if (n->spare_fd < 0)
        return;
    close(n->spare_fd);
    int fd = accept(l->fd, NULL, NULL);
    if (fd >= 0)
        close(fd);
    n->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    n->stats.refused++;
    log_error_throttled(&n->fd_log, "out of file descriptors: refused a connection");
}

/* Decides whether an accepted connection may stay, and if so counts its source. A refusal is
 * logged at most once a minute: a peer can cause one at will. */
static bool admit(struct net *n, const struct sockaddr *sa, struct peerlimit_key *source)
{
    char text[INET6_ADDRSTRLEN];
    if (n->stats.open >= n->limits.max_connections) {
        log_error_throttled(&n->full_log,
                            "refused a connection: %zu connections open "
                            "(--max-connections)",
                            n->stats.open);
        return false;
    }
    *source = peerlimit_key_of(sa);
    if (peerlimit_take(&n->per_source, *source, n->limits.max_per_address))
        return true;
    addr_text(sa, text);
    log_error_throttled(&n->per_source_log,
                        "refused a connection from %s: %zu connections from there already "
                        "(--max-per-address)",
                        text, peerlimit_count(&n->per_source, *source));
    return false;
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    struct net_listener *l = arg;
    struct net *n = l->net;
    for (int i = 0; i < NET_ACCEPT_BATCH; i++) {
        struct sockaddr_in6 sa;
        socklen_t salen = sizeof(sa);
        int fd = accept4(lfd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                shed_one(l);
            return;
        }
        struct peerlimit_key source;
        if (admit(n, (struct sockaddr *)&sa, &source)) {
            adopt(l, fd, (struct sockaddr *)&sa, salen, source);
        } else {
            close(fd);
            n->stats.refused++;
        }
    }
}

struct net *net_new(struct event_base *base, const struct net_limits *limits,
                    const struct net_handlers *handlers, void *ctx)
{
    struct net *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->base = base;
    n->limits = *limits;
    n->handlers = *handlers;
    n->ctx = ctx;
    n->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (limits->send_batch > 1) {
        n->uring = net_uring_new((unsigned)limits->send_batch);
        if (!n->uring)
            log_info("io_uring unavailable: one send() per connection");
    }
    return n;
}

static int bind_listener(const char *addr, int port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    int rc = getaddrinfo(addr ? addr : "0.0.0.0", service, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "bad listen address %s: %s", addr ? addr : "", gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
        snprintf(err, errlen, "cannot listen on port %d: %s", port, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd >= 0)
        tune_socket(fd);
    return fd;
}

/* Adds a listener on `fd` whose connections speak `tp` with `tp_ctx`. */
static int add_listener(struct net *n, int fd, const struct net_transport *tp, void *tp_ctx)
{
    if (n->n_listeners == NET_MAX_LISTENERS)
        return -1;
    struct net_listener *l = &n->listeners[n->n_listeners];
    l->ev = event_new(n->base, fd, EV_READ | EV_PERSIST, on_accept, l);
    if (!l->ev || event_add(l->ev, NULL) < 0) {
        if (l->ev)
            event_free(l->ev);
        l->ev = NULL;
        return -1;
    }
    l->net = n;
    l->fd = fd;
    l->tp = tp;
    l->tp_ctx = tp_ctx;
    n->n_listeners++;
    return 0;
}

int net_listen(struct net *n, const char *addr, int port, struct net_tls *tls, int *bound,
               char *err, size_t errlen)
{
    int fd = bind_listener(addr, port, err, errlen);
    if (fd < 0)
        return -1;
    struct sockaddr_in6 sa;
    socklen_t salen = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &salen);
    *bound = ntohs(sa.sin6_port); /* sin_port and sin6_port share their offset */
    if (add_listener(n, fd, tls ? &net_io_tls : &net_io_plain, tls) < 0) {
        snprintf(err, errlen, "cannot watch the listener");
        close(fd);
        return -1;
    }
    return 0;
}

void net_free(struct net *n)
{
    if (!n)
        return;
    net_flush(n);
    while (n->conns) {
        struct net_conn *c = n->conns;
        if (c->state == CONN_OPEN)
            c->reason = NET_CLOSE_SHUTDOWN;
        c->in_flush_list = false;
        destroy(c);
    }
    n->flush_head = NULL;
    for (size_t i = 0; i < n->n_listeners; i++) {
        event_free(n->listeners[i].ev);
        close(n->listeners[i].fd);
    }
    if (n->spare_fd >= 0)
        close(n->spare_fd);
    peerlimit_free(&n->per_source);
    net_uring_free(n->uring);
    free(n);
}
