/* Token bucket; see ratelimit.h. */
#include "server/ratelimit.h"

/* Refills the bucket up to `now_ms` (never above the burst). */
static void refill(struct ratelimit *rl, int64_t now_ms, unsigned rate, unsigned burst)
{
    int64_t cap = (int64_t)(burst ? burst : 1) * 1000;
    if (!rl->started) {
        rl->started = true;
        rl->tokens_milli = cap;
        rl->last_ms = now_ms;
    }
    if (now_ms > rl->last_ms) {
        uint64_t add = (uint64_t)(now_ms - rl->last_ms) * rate;
        uint64_t room = (uint64_t)(cap - rl->tokens_milli);
        rl->tokens_milli = add >= room ? cap : rl->tokens_milli + (int64_t)add;
        rl->last_ms = now_ms;
    }
}

bool ratelimit_take(struct ratelimit *rl, int64_t now_ms, unsigned rate, unsigned burst)
{
    if (rate == 0)
        return true;
    refill(rl, now_ms, rate, burst);
    if (rl->tokens_milli < 1000)
        return false;
    rl->tokens_milli -= 1000;
    return true;
}

void ratelimit_charge(struct ratelimit *rl, int64_t now_ms, unsigned rate, unsigned burst,
                      uint32_t tokens)
{
    if (rate == 0)
        return;
    refill(rl, now_ms, rate, burst);
    int64_t floor = -(int64_t)UINT32_MAX * 1000; /* the deepest debt: one maximal charge */
    int64_t cost = (int64_t)tokens * 1000;
    rl->tokens_milli = rl->tokens_milli - floor < cost ? floor : rl->tokens_milli - cost;
}
