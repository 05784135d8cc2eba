/* A token bucket: `rate` tokens a second, at most `burst` saved up. */
#ifndef PARLEY_RATELIMIT_H
#define PARLEY_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

/* One bucket; zero-initialised buckets start full on first use. */
struct ratelimit {
    int64_t tokens_milli; /* thousandths of a token; below 0 after a charge: a debt */
    bool started;
    int64_t last_ms;
};

/* Takes one token at time `now_ms` (monotonic milliseconds). Returns false when the bucket has
 * less than one (the action is refused and costs nothing). A rate of 0 means no limit. */
bool ratelimit_take(struct ratelimit *rl, int64_t now_ms, unsigned rate, unsigned burst);

/* Takes `tokens` more for work already done (the cost of a big reply), even when fewer are
 * left: the bucket goes into debt and refuses until the refill has paid it back. A rate of 0
 * means no limit (nothing is taken). */
void ratelimit_charge(struct ratelimit *rl, int64_t now_ms, unsigned rate, unsigned burst,
                      uint32_t tokens);

#endif
