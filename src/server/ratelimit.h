/* A token bucket: `rate` tokens a second, at most `burst` saved up. */
#ifndef PARLEY_RATELIMIT_H
#define PARLEY_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

/* One bucket; zero-initialised buckets start full on first use. */
struct ratelimit {
    uint64_t tokens_milli; /* thousandths of a token */
    bool started;
    int64_t last_ms;
};

/* Takes one token at time `now_ms` (monotonic milliseconds). Returns false when the bucket is
 * empty (the action is refused and costs nothing). A rate of 0 means no limit. */
bool ratelimit_take(struct ratelimit *rl, int64_t now_ms, unsigned rate, unsigned burst);

#endif
