/* Token bucket; see ratelimit.h. */
#include "server/ratelimit.h"

bool ratelimit_take(struct ratelimit *rl, int64_t now_ms, unsigned rate, unsigned burst)
{
    if (rate == 0)
        return true;
    uint64_t cap = (uint64_t)(burst ? burst : 1) * 1000;
    if (!rl->started) {
        rl->started = true;
        rl->tokens_milli = cap;
        rl->last_ms = now_ms;
    }
    if (now_ms > rl->last_ms) {
        uint64_t add = (uint64_t)(now_ms - rl->last_ms) * rate;
        uint64_t t = rl->tokens_milli + add;
        rl->tokens_milli = t > cap ? cap : t;
        rl->last_ms = now_ms;
    }
    if (rl->tokens_milli < 1000)
        return false;
    rl->tokens_milli -= 1000;
    return true;
}
