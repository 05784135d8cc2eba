/* Socket helpers; see sock.h. */
#include "client/sock.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

void sock_flush_now(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    evutil_socket_t fd = bufferevent_getfd(bev);
    struct evbuffer_iovec vec[16];
    size_t sent = 0;
    if (fd < 0)
        return;
    int n = evbuffer_peek(out, -1, NULL, vec, 16);
    for (int i = 0; i < n && i < 16; i++) {
        ssize_t w = send(fd, vec[i].iov_base, vec[i].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0)
            sent += (size_t)w;
        if (w < 0 || (size_t)w < vec[i].iov_len)
            break;
    }
    /* The socket bufferevent keeps its output's front frozen (only it drains it): thaw it to
     * drop what went out, so that a second flush or the bufferevent does not send it again. */
    evbuffer_unfreeze(out, 1);
    evbuffer_drain(out, sent);
    evbuffer_freeze(out, 1);
}
