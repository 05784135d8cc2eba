/* Connection counts per source; see peerlimit.h. */
#include "server/peerlimit.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Reads 4 bytes in network order. */
static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* IPv4 sources are (0, address): an IPv6 /64 can only look the same if it lies in ::/32,
 * which is reserved and never routed. */
struct peerlimit_key peerlimit_key_of(const struct sockaddr *sa)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    struct peerlimit_key key = {0, 0};
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in v4;
        memcpy(&v4, sa, sizeof(v4));
        key.lo = ntohl(v4.sin_addr.s_addr);
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 v6;
        memcpy(&v6, sa, sizeof(v6));
        const unsigned char *b = v6.sin6_addr.s6_addr;
        if (memcmp(b, mapped, sizeof(mapped)) == 0) {
            key.lo = be32(b + 12);
        } else {
            key.hi = be32(b);
            key.lo = be32(b + 4);
        }
    }
    return key;
}

size_t peerlimit_count(const struct peerlimit *pl, struct peerlimit_key key)
{
    const size_t *n = pairmap_get(&pl->counts, key.hi, key.lo);
    return n ? *n : 0;
}

bool peerlimit_take(struct peerlimit *pl, struct peerlimit_key key, size_t max)
{
    size_t *n = pairmap_get(&pl->counts, key.hi, key.lo);
    if (n) {
        if (max && *n >= max)
            return false;
        ++*n;
        return true;
    }
    n = malloc(sizeof(*n));
    if (!n || pairmap_put(&pl->counts, key.hi, key.lo, n) < 0) {
        free(n);
        return false;
    }
    *n = 1;
    return true;
}

void peerlimit_release(struct peerlimit *pl, struct peerlimit_key key)
{
    size_t *n = pairmap_get(&pl->counts, key.hi, key.lo);
    assert(n && *n > 0);
    if (--*n == 0)
        free(pairmap_remove(&pl->counts, key.hi, key.lo));
}

void peerlimit_free(struct peerlimit *pl)
{
    pairmap_free(&pl->counts, free);
}
