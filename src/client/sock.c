/* Socket helpers; see sock.h. */
#include "client/sock.h"

#include <assert.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

void sock_nodelay(struct bufferevent *bev)
{
    int one = 1;
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

#define SOCK_KEEPALIVE_PROBES 3

void sock_keepalive(struct bufferevent *bev, unsigned idle_secs)
{
    evutil_socket_t fd = bufferevent_getfd(bev);
    int one = 1, idle = idle_secs > 0 ? (int)idle_secs : 1;
    int interval = idle / SOCK_KEEPALIVE_PROBES > 0 ? idle / SOCK_KEEPALIVE_PROBES : 1;
    int probes = SOCK_KEEPALIVE_PROBES;
    if (fd < 0)
        return;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof(probes));
}

/* How long a closing connection may take to write what is queued. */
#define SOCK_LINGER_SECS 2

static unsigned sock_lingering; /* bufferevents given to sock_close_flushed, not yet freed */

static void linger_done(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    assert(sock_lingering > 0);
    sock_lingering--;
    if (ssl && SSL_is_init_finished(ssl)) /* a TLS close_notify: the stream ends cleanly */
        SSL_shutdown(ssl);
    bufferevent_free(bev);
}

static void linger_write_cb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        linger_done(bev);
}

static void linger_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)arg;
    if (what & BEV_EVENT_CONNECTED)
        return; /* closed while connecting: what is queued goes out now */
    linger_done(bev);
}

void sock_close_flushed(struct bufferevent *bev)
{
    struct timeval tv = {SOCK_LINGER_SECS, 0};
    sock_lingering++;
    bufferevent_disable(bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        linger_done(bev);
        return;
    }
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    bufferevent_setcb(bev, NULL, linger_write_cb, linger_event_cb, NULL);
    bufferevent_set_timeouts(bev, NULL, &tv);
    bufferevent_enable(bev, EV_WRITE);
}

void sock_finish(struct event_base *base)
{
    while (sock_lingering > 0)
        if (event_base_loop(base, EVLOOP_ONCE) < 0)
            break;
}
