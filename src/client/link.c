/* The connection to the server; see link.h. */
#include "client/link.h"

#include "client/sock.h"
#include "common/linebuf.h"

#include <assert.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <inttypes.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Server frames can be long (a WHO reply lists every user online). */
#define LINK_MAX_LINE (4 * 1024 * 1024)

/* LINK_VERIFYING: TLS is up and the owner has not decided on the server's key yet. */
enum link_state { LINK_IDLE, LINK_CONNECTING, LINK_VERIFYING, LINK_UP, LINK_DOWN };

/* A request waiting for its reply. */
struct pending {
    struct pending *next;
    uint64_t tag;
    link_reply_fn fn;
    void *arg;
    double sent;    /* when it was written (monotonic seconds) */
    unsigned grace; /* seconds its reply may take beyond the reply timeout */
};

struct link {
    struct event_base *base;
    struct link_handlers h;
    void *ctx;
    enum link_state state;
    struct bufferevent *bev;
    struct evutil_addrinfo *ai_all, *ai_next;
    struct linebuf lb;
    struct pending *head, *tail;
    uint64_t next_tag;
    uint64_t ack_max, ack_sent;
    unsigned reply_secs;    /* the reply timeout, also the limit of one connect attempt */
    struct event *deadline; /* fires when a reply or a connect may be overdue */
    double deadline_at;     /* when `deadline` fires, if pending */
    double last_rx;         /* when the server last sent something */
    SSL_CTX *tls;           /* NULL: plain TCP */
    char *tls_host;         /* the name for SNI, or NULL for an address */
    char tls_error[256];    /* why the last handshake failed; empty: it did not */
    char host_text[256];    /* the host as given (an address is checked as such) */
};

static void try_next_address(struct link *l, int err);

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Makes the deadline timer fire at `at` at the latest. */
static void arm_deadline(struct link *l, double at)
{
    if (evtimer_pending(l->deadline, NULL) && l->deadline_at <= at)
        return;
    double in = at - now();
    if (in < 0)
        in = 0;
    struct timeval tv = {(time_t)in, (suseconds_t)((in - (double)(time_t)in) * 1e6)};
    l->deadline_at = at;
    evtimer_add(l->deadline, &tv);
}

/* When the reply to `p` is overdue: the reply timeout (plus its grace) after it was sent or
 * after the server last sent anything, whichever is later (a server still sending is alive,
 * only busy). */
static double reply_due(const struct link *l, const struct pending *p)
{
    double since = p->sent > l->last_rx ? p->sent : l->last_rx;
    return since + l->reply_secs + p->grace;
}

static void free_addresses(struct link *l)
{
    if (l->ai_all)
        evutil_freeaddrinfo(l->ai_all);
    l->ai_all = l->ai_next = NULL;
}

static void call_gone(link_reply_fn fn, void *ctx, void *arg)
{
    if (!fn)
        return;
    struct link_reply r = {LINK_GONE, 0, {"", 0}};
    fn(ctx, &r, arg);
}

/* Hands LINK_GONE to every waiting request (new ones get it at once: the link is down). */
static void fail_pending(struct link *l)
{
    struct pending *p = l->head;
    l->head = l->tail = NULL;
    while (p) {
        struct pending *next = p->next;
        call_gone(p->fn, l->ctx, p->arg);
        free(p);
        p = next;
    }
}

static void drop_socket(struct link *l)
{
    if (l->bev)
        bufferevent_free(l->bev);
    l->bev = NULL;
    l->state = LINK_DOWN;
    evtimer_del(l->deadline);
}

/* The connection ended by itself: tell the owner, then the waiting requests. */
static void link_lost(struct link *l, int err)
{
    if (l->state == LINK_DOWN)
        return;
    drop_socket(l);
    l->h.closed(l->ctx, err);
    fail_pending(l);
}

static struct pending *take_pending(struct link *l, uint64_t tag)
{
    struct pending *prev = NULL;
    for (struct pending *p = l->head; p; prev = p, p = p->next) {
        if (p->tag != tag)
            continue;
        if (prev)
            prev->next = p->next;
        else
            l->head = p->next;
        if (l->tail == p)
            l->tail = prev;
        return p;
    }
    return NULL;
}

static void finish(struct link *l, struct proto_slice tag, const struct link_reply *r)
{
    uint64_t n;
    if (!proto_parse_u64(tag, &n))
        return;
    struct pending *p = take_pending(l, n);
    if (!p)
        return;
    if (p->fn)
        p->fn(l->ctx, r, p->arg);
    free(p);
}

static void handle_reply(struct link *l, struct proto_slice tag, struct proto_slice rest)
{
    struct proto_slice status, code;
    struct link_reply r = {LINK_ERR, 0, {"", 0}};
    if (!proto_next_field(&rest, &status))
        return;
    if (proto_slice_eq(status, "OK")) {
        r.status = LINK_OK;
        r.rest = rest;
    } else if (proto_slice_eq(status, "ERR") && proto_next_field(&rest, &code)) {
        uint64_t c;
        r.code = proto_parse_u64(code, &c) && c < 1000 ? (int)c : 0;
        r.rest = rest;
    }
    finish(l, tag, &r);
}

static int on_frame(void *arg, enum linebuf_kind kind, const char *line, size_t len)
{
    struct link *l = arg;
    struct proto_slice rest = {line, len}, first, verb;
    if (l->state != LINK_UP)
        return 1;
    if (kind == LINEBUF_TOO_LONG) {
        struct link_reply r = {LINK_ERR, PROTO_E_TOO_LONG, {"reply too long", 14}};
        if (proto_next_field(&rest, &first))
            finish(l, first, &r);
    } else if (len > 0 && proto_validate(line, len) == PROTO_OK &&
               proto_next_field(&rest, &first)) {
        if (!proto_slice_eq(first, "*"))
            handle_reply(l, first, rest);
        else if (proto_next_field(&rest, &verb))
            l->h.event(l->ctx, verb, rest);
    }
    return l->state == LINK_UP ? 0 : 1;
}

static void send_ack(struct link *l)
{
    if (l->state != LINK_UP || l->ack_max <= l->ack_sent)
        return;
    evbuffer_add_printf(bufferevent_get_output(l->bev), "* ACK %" PRIu64 "\n", l->ack_max);
    l->ack_sent = l->ack_max;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct link *l = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char buf[16384];
    int n;
    l->last_rx = now();
    while (l->state == LINK_UP && (n = evbuffer_remove(in, buf, sizeof(buf))) > 0) {
        if (linebuf_feed(&l->lb, buf, (size_t)n, on_frame, l) < 0 && l->state == LINK_UP)
            link_lost(l, ENOMEM);
    }
    send_ack(l);
}

/* Notes why a TLS handshake failed, if it did; returns true then. */
static bool note_tls_error(struct link *l, struct bufferevent *bev, bool eof)
{
    unsigned long e, last = 0;
    while ((e = bufferevent_get_openssl_error(bev)) != 0)
        last = e;
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    const char *why = last ? ERR_reason_error_string(last) : NULL;
    if (vr != X509_V_OK)
        why = X509_verify_cert_error_string(vr);
    else if (!why && (last || eof))
        why = "the handshake failed (is it a TLS port?)";
    if (why)
        snprintf(l->tls_error, sizeof(l->tls_error), "TLS: %s", why);
    return why != NULL;
}

/* A new bufferevent for one connect attempt: plain, or TLS with the host's name and, when
 * the context verifies, the name or address checked against the certificate. */
static struct bufferevent *new_stream(struct link *l)
{
    if (!l->tls)
        return bufferevent_socket_new(l->base, -1, BEV_OPT_CLOSE_ON_FREE);
    SSL *ssl = SSL_new(l->tls);
    if (!ssl)
        return NULL;
    if (l->tls_host) {
        SSL_set_tlsext_host_name(ssl, l->tls_host);
        SSL_set1_host(ssl, l->tls_host);
    } else {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), l->host_text);
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        l->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        SSL_free(ssl);
    return bev;
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct link *l = arg;
    int err = EVUTIL_SOCKET_ERROR();
    if (what & BEV_EVENT_CONNECTED) {
        evtimer_del(l->deadline);
        sock_nodelay(bev);
        sock_keepalive(bev, l->reply_secs);
        free_addresses(l);
        l->state = LINK_VERIFYING;
        enum link_verdict v =
            l->tls ? l->h.verify(l->ctx, bufferevent_openssl_get_ssl(bev)) : LINK_TRUSTED;
        if (v != LINK_UNDECIDED && l->state == LINK_VERIFYING)
            link_decide(l, v == LINK_TRUSTED);
        return;
    }
    if (l->state == LINK_CONNECTING && l->tls && note_tls_error(l, bev, what & BEV_EVENT_EOF)) {
        try_next_address(l, EPROTO);
        return;
    }
    if (l->state == LINK_CONNECTING) {
        int so_err = 0;
        ev_socklen_t n = sizeof(so_err);
        if (getsockopt(bufferevent_getfd(bev), SOL_SOCKET, SO_ERROR, &so_err, &n) == 0 && so_err)
            err = so_err;
        else if (err != ETIMEDOUT && err != EHOSTUNREACH && err != ENETUNREACH)
            err = ECONNREFUSED;
        try_next_address(l, err);
        return;
    }
    if (what & BEV_EVENT_EOF)
        err = 0;
    else if (err == 0)
        err = EIO;
    link_lost(l, err);
}

/* Starts connecting to the next resolved address; reports `err` when none is left. */
static void try_next_address(struct link *l, int err)
{
    if (l->bev)
        bufferevent_free(l->bev);
    l->bev = NULL;
    while (l->ai_next) {
        struct evutil_addrinfo *ai = l->ai_next;
        l->ai_next = ai->ai_next;
        l->bev = new_stream(l);
        if (!l->bev)
            break;
        bufferevent_setcb(l->bev, read_cb, NULL, event_cb, l);
        if (bufferevent_socket_connect(l->bev, ai->ai_addr, (int)ai->ai_addrlen) == 0) {
            arm_deadline(l, now() + l->reply_secs);
            return;
        }
        err = EVUTIL_SOCKET_ERROR();
        bufferevent_free(l->bev);
        l->bev = NULL;
    }
    free_addresses(l);
    l->state = LINK_DOWN;
    evtimer_del(l->deadline);
    l->h.closed(l->ctx, err ? err : ECONNREFUSED);
}

/* A connect attempt took the whole reply timeout: try the next address. A request is
 * overdue: the server is not answering, and the connection counts as lost (ETIMEDOUT). */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct link *l = arg;
    if (l->state == LINK_CONNECTING) {
        try_next_address(l, ETIMEDOUT);
        return;
    }
    if (l->state != LINK_UP || !l->head)
        return;
    double t = now(), next = reply_due(l, l->head);
    for (const struct pending *p = l->head; p; p = p->next) {
        double due = reply_due(l, p);
        if (due <= t) {
            link_lost(l, ETIMEDOUT);
            return;
        }
        next = due < next ? due : next;
    }
    arm_deadline(l, next);
}

struct link *link_new(struct event_base *base, const struct link_handlers *h, void *ctx,
                      unsigned reply_secs)
{
    assert(reply_secs > 0);
    struct link *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->deadline = evtimer_new(base, deadline_cb, l);
    if (!l->deadline) {
        free(l);
        return NULL;
    }
    l->base = base;
    l->h = *h;
    l->ctx = ctx;
    l->state = LINK_IDLE;
    l->reply_secs = reply_secs;
    linebuf_init(&l->lb, LINK_MAX_LINE);
    return l;
}

int link_connect(struct link *l, const char *host, const char *port)
{
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
    int rc = evutil_getaddrinfo(host, port, &hints, &l->ai_all);
    if (rc != 0)
        return rc;
    l->ai_next = l->ai_all;
    l->state = LINK_CONNECTING;
    try_next_address(l, 0);
    return 0;
}

bool link_is_up(const struct link *l)
{
    return l && l->state == LINK_UP;
}

int link_local_addr(const struct link *l, struct sockaddr_storage *ss, socklen_t *len)
{
    if (!link_is_up(l))
        return -1;
    *len = sizeof(*ss);
    return getsockname(bufferevent_getfd(l->bev), (struct sockaddr *)ss, len);
}

static void vrequest(struct link *l, unsigned grace, link_reply_fn fn, void *arg, const char *fmt,
                     va_list ap)
{
    struct pending *p = l->state == LINK_UP ? calloc(1, sizeof(*p)) : NULL;
    if (!p) {
        call_gone(fn, l->ctx, arg);
        return;
    }
    p->tag = ++l->next_tag;
    p->fn = fn;
    p->arg = arg;
    p->sent = now();
    p->grace = grace;
    if (l->tail)
        l->tail->next = p;
    else
        l->head = p;
    l->tail = p;
    struct evbuffer *out = bufferevent_get_output(l->bev);
    evbuffer_add_printf(out, "%" PRIu64 " ", p->tag);
    evbuffer_add_vprintf(out, fmt, ap);
    evbuffer_add(out, "\n", 1);
    arm_deadline(l, reply_due(l, p));
}

void link_request(struct link *l, link_reply_fn fn, void *arg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vrequest(l, 0, fn, arg, fmt, ap);
    va_end(ap);
}

void link_request_patient(struct link *l, unsigned grace, link_reply_fn fn, void *arg,
                          const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vrequest(l, grace, fn, arg, fmt, ap);
    va_end(ap);
}

void link_ack(struct link *l, uint64_t id)
{
    if (id > l->ack_max)
        l->ack_max = id;
}

void link_close(struct link *l)
{
    if (l->state == LINK_DOWN)
        return;
    if (l->state == LINK_UP)
        send_ack(l);
    if (l->bev) /* what is queued (a LOGOUT, an ACK) goes out before the connection closes */
        sock_close_flushed(l->bev);
    l->bev = NULL;
    drop_socket(l);
    free_addresses(l);
    fail_pending(l);
}

void link_use_tls(struct link *l, SSL_CTX *ctx, const char *host)
{
    struct in6_addr a6;
    struct in_addr a4;
    bool address = inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
    l->tls = ctx;
    free(l->tls_host);
    l->tls_host = address ? NULL : strdup(host);
    snprintf(l->host_text, sizeof(l->host_text), "%s", host);
}

void link_decide(struct link *l, bool trusted)
{
    assert(l->state == LINK_VERIFYING);
    if (!trusted) {
        drop_socket(l);
        return;
    }
    l->state = LINK_UP;
    l->last_rx = now();
    bufferevent_enable(l->bev, EV_READ);
    l->h.connected(l->ctx);
}

const char *link_tls_error(const struct link *l)
{
    return l->tls_error[0] ? l->tls_error : NULL;
}

void link_free(struct link *l)
{
    if (!l)
        return;
    link_close(l);
    free(l->tls_host);
    linebuf_free(&l->lb);
    event_free(l->deadline);
    free(l);
}
