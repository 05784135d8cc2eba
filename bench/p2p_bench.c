/* parley-p2p-bench: the cost of end-to-end encryption on a P2P session, on loopback TCP.
 *
 *   parley-p2p-bench [messages [text-bytes [handshakes]]]   (defaults 200000, 100, 200)
 *
 * Runs the two ends of a session in two threads over a real TCP connection on 127.0.0.1: the
 * sender writes `messages` frames `MSG <text>` (text of `text-bytes` bytes), the receiver
 * takes them apart and checks each as the client does (docs/PROTOCOL.md §7), first in the
 * plain-text framing of P2P version 1 (LF-terminated lines through linebuf), then sealed in
 * version-2 records (src/client/p2p_channel.c). Then `handshakes` full Noise XXpsk3
 * handshakes, each on a fresh connection with fresh keys. Prints one line per measure:
 * messages/s, MB/s of text, and the ratio encrypted/plain; the handshake median and p99. */
#include "client/p2p_channel.h"
#include "common/linebuf.h"
#include "common/proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BENCH_BATCH 65536 /* bytes the sender writes at once */
#define BENCH_MAX_TEXT 4000

struct run {
    int fd;
    bool sealed;
    long messages;
    size_t text;
    struct pch ch;
    long received;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            die("write");
        p += w;
        n -= (size_t)w;
    }
}

static bool read_all(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

/* A connected pair of TCP sockets on loopback. */
static void tcp_pair(int fds[2])
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, len) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &len) != 0)
        die("listen");
    fds[0] = socket(AF_INET, SOCK_STREAM, 0);
    if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&a, len) != 0)
        die("connect");
    fds[1] = accept(ls, NULL, NULL);
    if (fds[1] < 0)
        die("accept");
    setsockopt(fds[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fds[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    close(ls);
}

/* ---- the sender ---- */

static size_t put_frame(struct run *r, const char *frame, size_t n, uint8_t *out)
{
    if (!r->sealed) {
        memcpy(out, frame, n);
        out[n] = '\n';
        return n + 1;
    }
    size_t c;
    if (pch_seal(&r->ch, (const uint8_t *)frame, n, out + PCH_HDR_LEN, BENCH_MAX_TEXT + 64, &c) !=
        PCH_OK)
        die("seal");
    pch_record_header(out, c);
    return PCH_HDR_LEN + c;
}

static void *sender(void *arg)
{
    struct run *r = arg;
    static uint8_t batch[BENCH_BATCH + BENCH_MAX_TEXT + 64];
    char frame[BENCH_MAX_TEXT + 8];
    memcpy(frame, "MSG ", 4);
    memset(frame + 4, 'x', r->text);
    size_t at = 0, n = 4 + r->text;
    for (long i = 0; i < r->messages; i++) {
        at += put_frame(r, frame, n, batch + at);
        if (at >= BENCH_BATCH) {
            write_all(r->fd, batch, at);
            at = 0;
        }
    }
    write_all(r->fd, batch, at);
    shutdown(r->fd, SHUT_WR);
    return NULL;
}

/* ---- the receiver ---- */

static int on_line(void *arg, enum linebuf_kind kind, const char *line, size_t len)
{
    struct run *r = arg;
    if (kind != LINEBUF_LINE || proto_validate(line, len) != PROTO_OK || len < 4 ||
        memcmp(line, "MSG ", 4) != 0)
        return -1;
    r->received++;
    return 0;
}

static void receive_plain(struct run *r)
{
    struct linebuf lb;
    uint8_t buf[4096];
    ssize_t n;
    linebuf_init(&lb, 4096);
    while ((n = read(r->fd, buf, sizeof(buf))) > 0)
        if (linebuf_feed(&lb, (const char *)buf, (size_t)n, on_line, r) < 0)
            die("plain frame");
    linebuf_free(&lb);
}

/* Reads as the client's bufferevent does, in large chunks, and takes whole records out. */
static void receive_sealed(struct run *r)
{
    static uint8_t buf[2 * BENCH_BATCH];
    uint8_t pt[BENCH_MAX_TEXT + 64];
    size_t have = 0, body, n;
    ssize_t got;
    while ((got = read(r->fd, buf + have, sizeof(buf) - have)) > 0) {
        have += (size_t)got;
        size_t at = 0;
        int ok;
        while ((ok = pch_record_len(buf + at, have - at, BENCH_MAX_TEXT + 64, &body)) == 1 &&
               have - at >= PCH_HDR_LEN + body) {
            if (pch_open(&r->ch, buf + at + PCH_HDR_LEN, body, pt, sizeof(pt), &n) != PCH_OK ||
                proto_validate((const char *)pt, n) != PROTO_OK || memcmp(pt, "MSG ", 4) != 0)
                die("sealed record");
            r->received++;
            at += PCH_HDR_LEN + body;
        }
        if (ok < 0)
            die("record length");
        memmove(buf, buf + at, have - at);
        have -= at;
    }
}

/* ---- handshakes ---- */

static void keys_for(struct pch *i, struct pch *r)
{
    uint8_t si[PCH_KEY_LEN], sr[PCH_KEY_LEN], psk[PCH_KEY_LEN];
    static const uint8_t prologue[] = "parley-p2p-2\nhans\nyoda";
    randombytes_buf(si, sizeof(si));
    randombytes_buf(sr, sizeof(sr));
    randombytes_buf(psk, sizeof(psk));
    pch_init(i, PCH_INITIATOR, si, psk, prologue, sizeof(prologue) - 1, NULL);
    pch_init(r, PCH_RESPONDER, sr, psk, prologue, sizeof(prologue) - 1, NULL);
}

static void *responder(void *arg)
{
    struct run *r = arg;
    uint8_t msg[256], out[64], hdr[PCH_HDR_LEN];
    size_t n, m;
    for (int k = 0; k < 3; k++) {
        if (pch_my_turn(&r->ch)) {
            if (pch_write_handshake(&r->ch, NULL, 0, msg + PCH_HDR_LEN, 200, &n) != PCH_OK)
                die("responder write");
            pch_record_header(msg, n);
            write_all(r->fd, msg, PCH_HDR_LEN + n);
        } else if (!read_all(r->fd, hdr, sizeof(hdr)) ||
                   pch_record_len(hdr, sizeof(hdr), sizeof(msg), &n) != 1 ||
                   !read_all(r->fd, msg, n) ||
                   pch_read_handshake(&r->ch, msg, n, out, sizeof(out), &m) != PCH_OK) {
            die("responder read");
        }
    }
    return NULL;
}

/* One handshake on a new loopback connection, connect included; returns its seconds. */
static double one_handshake(void)
{
    struct pch i;
    struct run r = {0};
    uint8_t msg[256], out[64], hdr[PCH_HDR_LEN];
    size_t n, m;
    pthread_t t;
    double t0 = now_s();
    int fds[2];
    tcp_pair(fds);
    keys_for(&i, &r.ch);
    r.fd = fds[1];
    pthread_create(&t, NULL, responder, &r);
    for (int k = 0; k < 3; k++) {
        if (pch_my_turn(&i)) {
            if (pch_write_handshake(&i, NULL, 0, msg + PCH_HDR_LEN, 200, &n) != PCH_OK)
                die("initiator write");
            pch_record_header(msg, n);
            write_all(fds[0], msg, PCH_HDR_LEN + n);
        } else if (!read_all(fds[0], hdr, sizeof(hdr)) ||
                   pch_record_len(hdr, sizeof(hdr), sizeof(msg), &n) != 1 ||
                   !read_all(fds[0], msg, n) ||
                   pch_read_handshake(&i, msg, n, out, sizeof(out), &m) != PCH_OK) {
            die("initiator read");
        }
    }
    pthread_join(t, NULL);
    double dt = now_s() - t0;
    if (i.state != PCH_OPEN || r.ch.state != PCH_OPEN)
        die("handshake");
    close(fds[0]);
    close(fds[1]);
    return dt;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- main ---- */

/* Streams the messages one way; returns the seconds from the first write to the last read. */
static double stream(bool sealed, long messages, size_t text)
{
    struct run tx = {.sealed = sealed, .messages = messages, .text = text};
    struct run rx = tx;
    int fds[2];
    pthread_t t;
    tcp_pair(fds);
    tx.fd = fds[0];
    rx.fd = fds[1];
    if (sealed) {
        keys_for(&tx.ch, &rx.ch);
        uint8_t msg[256], out[64];
        size_t n, m;
        for (int k = 0; k < 3; k++) { /* in memory: only the records are measured here */
            struct pch *a = pch_my_turn(&tx.ch) ? &tx.ch : &rx.ch,
                       *b = a == &tx.ch ? &rx.ch : &tx.ch;
            if (pch_write_handshake(a, NULL, 0, msg, sizeof(msg), &n) != PCH_OK ||
                pch_read_handshake(b, msg, n, out, sizeof(out), &m) != PCH_OK)
                die("handshake");
        }
    }
    double t0 = now_s();
    pthread_create(&t, NULL, sender, &tx);
    if (sealed)
        receive_sealed(&rx);
    else
        receive_plain(&rx);
    pthread_join(t, NULL);
    double dt = now_s() - t0;
    if (rx.received != messages)
        die("lost messages");
    close(fds[0]);
    close(fds[1]);
    return dt;
}

int main(int argc, char **argv)
{
    long messages = argc > 1 ? atol(argv[1]) : 200000;
    long text = argc > 2 ? atol(argv[2]) : 100;
    int handshakes = argc > 3 ? atoi(argv[3]) : 200;
    if (messages <= 0 || text <= 0 || text > BENCH_MAX_TEXT - 8 || handshakes <= 0 ||
        sodium_init() < 0) {
        fprintf(stderr, "usage: parley-p2p-bench [messages [text-bytes (1..%d) [handshakes]]]\n",
                BENCH_MAX_TEXT - 8);
        return 2;
    }
    double plain = 1e9, sealed = 1e9;
    for (int k = 0; k < 3; k++) { /* best of three, each mode */
        double p = stream(false, messages, (size_t)text), s = stream(true, messages, (size_t)text);
        plain = p < plain ? p : plain;
        sealed = s < sealed ? s : sealed;
    }
    double mb = (double)messages * (double)text / 1e6;
    printf("messages %ld, text %ld bytes\n", messages, text);
    printf("plain:     %10.0f msg/s %8.1f MB/s\n", messages / plain, mb / plain);
    printf("encrypted: %10.0f msg/s %8.1f MB/s  (%.2fx plain)\n", messages / sealed, mb / sealed,
           plain / sealed);
    double *hs = calloc((size_t)handshakes, sizeof(double));
    if (!hs)
        die("calloc");
    for (int k = 0; k < handshakes; k++)
        hs[k] = one_handshake();
    qsort(hs, (size_t)handshakes, sizeof(double), cmp_double);
    printf("handshake (connect + XXpsk3, %d): median %.3f ms, p99 %.3f ms\n", handshakes,
           hs[handshakes / 2] * 1e3, hs[(handshakes * 99) / 100] * 1e3);
    free(hs);
    return 0;
}
