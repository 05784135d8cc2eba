/* A token bucket: `rate` tokens a period, at most `burst` saved up; and a table of buckets
 * keyed by client address, for limits per source. */
#ifndef PARLEY_RATELIMIT_H
#define PARLEY_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Addresses a ratelimit_table tracks at most: past it (once buckets that filled up again are
 * forgotten) every take is refused until some fill up. About 5 MiB. */
#define RATELIMIT_TABLE_MAX 65536

/* One bucket; zero-initialised buckets start full on first use. */
struct ratelimit {
    int64_t tokens_milli; /* thousandths of a token (ratelimit_take_per: 1/period_ms); below 0
                           * after a charge: a debt */
    bool started;
    int64_t last_ms;
};

/* Takes one token at time `now_ms` (monotonic milliseconds), `rate` tokens a second. Returns
 * false when the bucket has less than one (the action is refused and costs nothing). A rate of 0
 * means no limit. */
bool ratelimit_take(struct ratelimit *rl, int64_t now_ms, unsigned rate, unsigned burst);

/* As ratelimit_take with `rate` tokens every `period_ms` milliseconds (at least 1). A bucket
 * must always be used with the same period. */
bool ratelimit_take_per(struct ratelimit *rl, int64_t now_ms, unsigned rate, int64_t period_ms,
                        unsigned burst);

/* Takes `tokens` more for work already done (the cost of a big reply), even when fewer are
 * left: the bucket goes into debt and refuses until the refill has paid it back. A rate of 0
 * means no limit (nothing is taken). */
void ratelimit_charge(struct ratelimit *rl, int64_t now_ms, unsigned rate, unsigned burst,
                      uint32_t tokens);

struct ratelimit_slot;

/* Buckets by address text; IPv6 addresses share the bucket of their /64. Zero-initialise. */
struct ratelimit_table {
    struct ratelimit_slot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t used;
};

/* Takes one token from the bucket of `addr` (as net_peer_addr writes it) at `now_ms`, `rate`
 * tokens every `period_ms`, at most `burst` saved. Returns false when that bucket is empty or
 * the table cannot track another address (refused, costs nothing). A rate of 0 means no
 * limit and tracks nothing. */
bool ratelimit_table_take(struct ratelimit_table *t, const char *addr, int64_t now_ms,
                          unsigned rate, int64_t period_ms, unsigned burst);

/* Frees the table's memory; it is empty and usable afterwards. */
void ratelimit_table_free(struct ratelimit_table *t);

#endif
