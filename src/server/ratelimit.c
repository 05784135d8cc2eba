/* Token buckets and a table of them by address; see ratelimit.h. */
#include "server/ratelimit.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An address as a key: text, IPv6 cut to its /64 ("2001:db8::/64"). */
#define KEY_LEN (INET6_ADDRSTRLEN + 4)

struct ratelimit_slot {
    char key[KEY_LEN]; /* empty: a free slot */
    struct ratelimit rl;
};

/* Refills the bucket, in units of 1/period of a token (`rate` units come in every
 * millisecond), up to `now_ms`; at most `burst` tokens are saved. */
static void refill(struct ratelimit *rl, int64_t now_ms, unsigned rate, uint64_t period,
                   unsigned burst)
{
    int64_t cap = (int64_t)((uint64_t)(burst ? burst : 1) * period);
    if (!rl->started) {
        rl->started = true;
        rl->tokens_milli = cap;
        rl->last_ms = now_ms;
    }
    if (now_ms > rl->last_ms) {
        uint64_t elapsed = (uint64_t)now_ms - (uint64_t)rl->last_ms;
        uint64_t room = rl->tokens_milli < cap ? (uint64_t)(cap - rl->tokens_milli) : 0;
        uint64_t add = elapsed > room / rate ? room : elapsed * rate;
        rl->tokens_milli += (int64_t)add;
        rl->last_ms = now_ms;
    }
}

/* Takes one token (`period` units) after a refill; false, costing nothing, when there is
 * less than one. */
static bool take_units(struct ratelimit *rl, int64_t now_ms, unsigned rate, uint64_t period,
                       unsigned burst)
{
    refill(rl, now_ms, rate, period, burst);
    if (rl->tokens_milli < (int64_t)period)
        return false;
    rl->tokens_milli -= (int64_t)period;
    return true;
}

bool ratelimit_take(struct ratelimit *rl, int64_t now_ms, unsigned rate, unsigned burst)
{
    return rate == 0 || take_units(rl, now_ms, rate, 1000, burst);
}

bool ratelimit_take_per(struct ratelimit *rl, int64_t now_ms, unsigned rate, int64_t period_ms,
                        unsigned burst)
{
    return rate == 0 ||
           take_units(rl, now_ms, rate, period_ms < 1 ? 1 : (uint64_t)period_ms, burst);
}

void ratelimit_charge(struct ratelimit *rl, int64_t now_ms, unsigned rate, unsigned burst,
                      uint32_t tokens)
{
    if (rate == 0)
        return;
    refill(rl, now_ms, rate, 1000, burst);
    int64_t floor = -(int64_t)UINT32_MAX * 1000; /* the deepest debt: one maximal charge */
    int64_t cost = (int64_t)tokens * 1000;
    rl->tokens_milli = rl->tokens_milli - floor < cost ? floor : rl->tokens_milli - cost;
}

/* Returns true when the bucket would be full at `now_ms`: it is the same as a fresh one. */
static bool bucket_full(const struct ratelimit *rl, int64_t now_ms, unsigned rate, uint64_t period,
                        unsigned burst)
{
    int64_t cap = (int64_t)((uint64_t)(burst ? burst : 1) * period);
    if (rl->tokens_milli >= cap)
        return true;
    if (now_ms <= rl->last_ms)
        return false;
    uint64_t elapsed = (uint64_t)now_ms - (uint64_t)rl->last_ms;
    uint64_t room = (uint64_t)(cap - rl->tokens_milli);
    return elapsed > room / rate || elapsed * rate >= room;
}

/* Writes the key of `addr`: IPv6 addresses become their /64. */
static void make_key(const char *addr, char *key)
{
    unsigned char a6[16];
    char text[INET6_ADDRSTRLEN];
    if (inet_pton(AF_INET6, addr, a6) == 1) {
        memset(a6 + 8, 0, 8);
        if (inet_ntop(AF_INET6, a6, text, sizeof text)) {
            snprintf(key, KEY_LEN, "%s/64", text);
            return;
        }
    }
    snprintf(key, KEY_LEN, "%s", addr);
}

static size_t key_hash(const char *key)
{
    size_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

/* Returns the slot holding `key`, or the free one where it belongs (cap must be non-zero). */
static struct ratelimit_slot *find_slot(const struct ratelimit_table *t, const char *key)
{
    size_t i = key_hash(key) & (t->cap - 1);
    while (t->slots[i].key[0] && strcmp(t->slots[i].key, key) != 0)
        i = (i + 1) & (t->cap - 1);
    return &t->slots[i];
}

/* Rebuilds the table with `cap` slots, keeping only the buckets not full at `now_ms`.
 * Returns 0, or -1 when memory ran out (the table is unchanged). */
static int rebuild(struct ratelimit_table *t, size_t cap, int64_t now_ms, unsigned rate,
                   uint64_t period, unsigned burst)
{
    struct ratelimit_table n = {calloc(cap, sizeof(struct ratelimit_slot)), cap, 0};
    if (!n.slots)
        return -1;
    for (size_t i = 0; i < t->cap; i++) {
        const struct ratelimit_slot *s = &t->slots[i];
        if (s->key[0] && !bucket_full(&s->rl, now_ms, rate, period, burst)) {
            *find_slot(&n, s->key) = *s;
            n.used++;
        }
    }
    free(t->slots);
    *t = n;
    return 0;
}

/* Makes room for one more address: forgets full buckets when the table is crowded or at its
 * maximum, then grows it. Returns 0, or -1 when no address can be added now. */
static int make_room(struct ratelimit_table *t, int64_t now_ms, unsigned rate, uint64_t period,
                     unsigned burst)
{
    bool crowded = !t->cap || (t->used + 1) * 4 > t->cap * 3;
    if (!crowded && t->used < RATELIMIT_TABLE_MAX)
        return 0;
    size_t cap = t->cap ? t->cap : 64;
    if (rebuild(t, cap, now_ms, rate, period, burst) != 0 || t->used >= RATELIMIT_TABLE_MAX)
        return -1;
    while ((t->used + 1) * 4 > cap * 3)
        cap *= 2;
    return cap == t->cap ? 0 : rebuild(t, cap, now_ms, rate, period, burst);
}

bool ratelimit_table_take(struct ratelimit_table *t, const char *addr, int64_t now_ms,
                          unsigned rate, int64_t period_ms, unsigned burst)
{
    if (rate == 0)
        return true;
    uint64_t period = period_ms < 1 ? 1 : (uint64_t)period_ms;
    char key[KEY_LEN];
    make_key(addr, key);
    struct ratelimit_slot *s = t->cap ? find_slot(t, key) : NULL;
    if (!s || !s->key[0]) {
        if (make_room(t, now_ms, rate, period, burst) != 0)
            return false;
        s = find_slot(t, key);
        memcpy(s->key, key, sizeof s->key);
        memset(&s->rl, 0, sizeof s->rl);
        t->used++;
    }
    return take_units(&s->rl, now_ms, rate, period, burst);
}

void ratelimit_table_free(struct ratelimit_table *t)
{
    free(t->slots);
    memset(t, 0, sizeof *t);
}
