/* Connections and the event loop of parley-bench; see bench.h. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"

#define READ_CHUNK (256 * 1024)
#define MAX_PARTIAL (64 * 1024)
#define MAX_OUTPUT ((size_t)64 << 20)

/* A partial frame of the previous read, then the new bytes. */
static char rbuf[MAX_PARTIAL + READ_CHUNK];
static struct event *wake, *pace;

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

int loop_init(void)
{
    struct event_config *cfg = event_config_new();
    if (!cfg)
        return -1;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    B.base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!B.base)
        return -1;
    /* Wakes the loop every millisecond, so pacing and deadlines run without traffic. */
    struct timeval tv = {0, 1000};
    wake = event_new(B.base, -1, EV_PERSIST, on_wake, NULL);
    if (!wake || event_add(wake, &tv) < 0)
        return -1;
    /* Open loop: a one-shot timer at the next message's intended send time. */
    pace = evtimer_new(B.base, on_wake, NULL);
    if (!pace)
        return -1;
    if (B.o.tls) {
        B.tls_ctx = SSL_CTX_new(TLS_client_method());
        if (!B.tls_ctx)
            return -1;
        SSL_CTX_set_mode(B.tls_ctx,
                         SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_read_ahead(B.tls_ctx, 1); /* as parleyd: fewer, larger socket reads */
        SSL_CTX_set_default_read_buffer_len(B.tls_ctx, READ_CHUNK);
    }
    return 0;
}

void loop_free(void)
{
    for (uint32_t i = 0; i < B.nconns; i++)
        if (B.conns[i].state != CS_UNUSED && B.conns[i].state != CS_CLOSED)
            conn_close(&B.conns[i]);
    if (wake)
        event_free(wake);
    if (pace)
        event_free(pace);
    pace = NULL;
    if (B.base)
        event_base_free(B.base);
    wake = NULL;
    B.base = NULL;
    SSL_CTX_free(B.tls_ctx);
    B.tls_ctx = NULL;
}

static void mark_dirty(struct bconn *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->next_dirty = B.dirty;
    B.dirty = c;
}

void conn_close(struct bconn *c)
{
    if (c->state == CS_CLOSED || c->state == CS_UNUSED)
        return;
    if (c->rev)
        event_free(c->rev);
    if (c->wev)
        event_free(c->wev);
    c->rev = c->wev = NULL;
    SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->in);
    free(c->out);
    c->in = c->out = NULL;
    c->in_len = c->out_off = c->out_len = c->out_cap = 0;
    c->writing = false;
    c->state = CS_CLOSED;
    B.open--;
}

/* The connection ended without being asked to. */
static void conn_lost(struct bconn *c, bool eof)
{
    conn_close(c);
    hook_closed(c, eof);
}

static void arm_write(struct bconn *c, bool on)
{
    if (on == c->writing)
        return;
    if (on)
        event_add(c->wev, NULL);
    else
        event_del(c->wev);
    c->writing = on;
}

/* Like recv/send, over TLS when the connection has it: -1 with EAGAIN when it must wait. */
static ssize_t io_result(struct bconn *c, int rc)
{
    if (rc > 0)
        return rc;
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    ERR_clear_error();
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    errno = EPIPE;
    return -1;
}

static ssize_t io_send(struct bconn *c, const char *p, size_t n)
{
    if (!c->ssl)
        return send(c->fd, p, n, MSG_NOSIGNAL);
    return io_result(c, SSL_write(c->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n)));
}

static ssize_t io_recv(struct bconn *c, char *p, size_t n)
{
    if (!c->ssl)
        return recv(c->fd, p, n, 0);
    return io_result(c, SSL_read(c->ssl, p, (int)n));
}

static void conn_write(struct bconn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = io_send(c, c->out + c->out_off, c->out_len - c->out_off);
        if (w > 0) {
            c->out_off += (size_t)w;
            B.bytes_out += (uint64_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            arm_write(c, true);
            return;
        }
        B.conn_errors++;
        conn_lost(c, false);
        return;
    }
    c->out_off = c->out_len = 0;
    arm_write(c, false);
}

char *conn_reserve(struct bconn *c, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        if (c->out_off > 0) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        size_t cap = c->out_cap ? c->out_cap : 256;
        while (cap < c->out_len + n)
            cap *= 2;
        if (cap > MAX_OUTPUT) {
            fprintf(stderr,
                    "parley-bench: connection %u: client output over %zu MiB (server not "
                    "reading); closing it\n",
                    c->id, MAX_OUTPUT >> 20);
            return NULL;
        }
        char *p = realloc(c->out, cap);
        if (!p)
            return NULL;
        c->out = p;
        c->out_cap = cap;
    }
    return c->out + c->out_len;
}

void conn_commit(struct bconn *c, size_t n)
{
    c->out_len += n;
    mark_dirty(c);
}

void conn_flush_all(void)
{
    while (B.dirty) {
        struct bconn *c = B.dirty;
        B.dirty = c->next_dirty;
        c->dirty = false;
        if ((c->state == CS_HANDSHAKE || c->state == CS_READY) && !c->writing)
            conn_write(c);
    }
}

static void tls_step(struct bconn *c);

/* Reads once and parses every complete frame. Returns false when nothing more can be read. */
static bool read_once(struct bconn *c)
{
    size_t have = c->in_len;
    if (have)
        memcpy(rbuf, c->in, have);
    ssize_t r = io_recv(c, rbuf + have, READ_CHUNK);
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return false;
        if (r < 0)
            B.conn_errors++;
        conn_lost(c, r == 0);
        return false;
    }
    B.now = now_ns();
    B.bytes_in += (uint64_t)r;
    size_t total = have + (size_t)r;
    size_t used = ad_parse(c, rbuf, total);
    if (c->state == CS_CLOSED)
        return false;
    size_t rest = total - used;
    if (rest > MAX_PARTIAL) {
        fprintf(stderr, "parley-bench: connection %u: frame over %d bytes; closing\n", c->id,
                MAX_PARTIAL);
        B.conn_errors++;
        conn_lost(c, false);
        return false;
    }
    if (rest) {
        if (rest > c->in_len || !c->in) {
            char *p = realloc(c->in, rest);
            if (!p) {
                conn_lost(c, false);
                return false;
            }
            c->in = p;
        }
        memcpy(c->in, rbuf + used, rest);
    } else if (c->in) {
        free(c->in);
        c->in = NULL;
    }
    c->in_len = rest;
    ad_batch_end(c);
    return true;
}

/* Reads; over TLS, again while decrypted bytes wait inside OpenSSL (the socket will not say). */
static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bconn *c = arg;
    if (c->state == CS_TLS) {
        tls_step(c);
        return;
    }
    while (read_once(c) && c->ssl && SSL_has_pending(c->ssl) == 1)
        ;
}

/* Runs the TLS handshake one step; once done, the protocol's own handshake starts. */
static void tls_step(struct bconn *c)
{
    int rc = SSL_do_handshake(c->ssl);
    if (rc == 1) {
        arm_write(c, false);
        c->state = CS_HANDSHAKE;
        B.now = now_ns();
        ad_handshake(c);
        if (c->state != CS_CLOSED && SSL_has_pending(c->ssl) == 1)
            on_read(c->fd, EV_READ, c);
        return;
    }
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        arm_write(c, e == SSL_ERROR_WANT_WRITE);
        return;
    }
    if (B.conn_errors < 3)
        fprintf(stderr, "parley-bench: TLS handshake: %s\n",
                ERR_reason_error_string(ERR_get_error()));
    ERR_clear_error();
    B.conn_errors++;
    conn_lost(c, false);
}

/* The TCP connection is up: over TLS, the TLS handshake first. */
static void connected(struct bconn *c)
{
    if (!B.o.tls) {
        arm_write(c, false);
        c->state = CS_HANDSHAKE;
        B.now = now_ns();
        ad_handshake(c);
        return;
    }
    c->ssl = SSL_new(B.tls_ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) {
        conn_lost(c, false);
        return;
    }
    SSL_set_connect_state(c->ssl);
    c->state = CS_TLS;
    tls_step(c);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct bconn *c = arg;
    if (c->state == CS_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            if (B.conn_errors < 3)
                fprintf(stderr, "parley-bench: connect: %s\n", strerror(err));
            B.conn_errors++;
            conn_lost(c, false);
            return;
        }
        if (event_add(c->rev, NULL) < 0) {
            conn_lost(c, false);
            return;
        }
        connected(c);
        return;
    }
    if (c->state == CS_TLS) {
        tls_step(c);
        return;
    }
    conn_write(c);
}

int conn_start(struct bconn *c)
{
    int port = B.o.nports > 0 ? B.o.ports[c->node % B.o.nports] : B.o.port;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, B.o.host, &sa.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "parley-bench: socket: %s\n", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (B.o.src_addrs > 1) {
        /* Several loopback source addresses: each has its own ~28k ephemeral ports. */
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(c->id % (uint32_t)B.o.src_addrs));
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
            fprintf(stderr, "parley-bench: bind: %s\n", strerror(errno));
            close(fd);
            return -1;
        }
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
        fprintf(stderr, "parley-bench: connect: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    c->fd = fd;
    c->state = CS_CONNECTING;
    B.open++;
    c->rev = event_new(B.base, fd, EV_READ | EV_PERSIST, on_read, c);
    c->wev = event_new(B.base, fd, EV_WRITE | EV_PERSIST, on_writable, c);
    c->connect_ns = now_ns();
    c->hello_done = c->sub_done = c->logout_sent = false;
    c->max_id = c->acked_id = 0;
    memset(&c->resp, 0, sizeof(c->resp));
    if (!c->rev || !c->wev) {
        conn_close(c);
        return -1;
    }
    arm_write(c, true);
    return 0;
}

bool loop_run(bool (*done)(void), void (*tick)(void), uint64_t until)
{
    for (;;) {
        B.now = now_ns();
        /* Before waiting: a tick may start connections that nothing else would wake us for. */
        if (tick) {
            tick();
            conn_flush_all();
        }
        if (done && done())
            return true;
        if (B.now >= until || B.now >= B.deadline)
            return false;
        if (B.next_due > B.now && B.next_due - B.now < 1000000) {
            uint64_t d = B.next_due - B.now;
            struct timeval tv = {0, (suseconds_t)(d / 1000)};
            evtimer_add(pace, &tv);
        } else if (B.next_due) {
            /* Due now: do not sleep. */
            struct timeval tv = {0, 0};
            evtimer_add(pace, &tv);
        }
        if (event_base_loop(B.base, EVLOOP_ONCE) < 0)
            return false;
        B.now = now_ns();
        conn_flush_all();
    }
}
