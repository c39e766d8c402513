/* middleware_ratelimit.c - the rate limit middleware's token bucket. */
#include "binding/middleware_internal.h"

void middleware_bucket_init(struct middleware_bucket *b, long long rate, uint64_t now_us)
{
    b->rate = rate > 0 ? (double)rate : 0;
    b->burst = b->rate / 100.0;
    if (b->burst < 1) {
        b->burst = 1;
    }
    b->tokens = b->burst;
    b->last_us = now_us;
}

uint64_t middleware_bucket_take(struct middleware_bucket *b, uint64_t now_us)
{
    double wait_us;

    if (b->rate <= 0) {
        return 0;
    }
    if (now_us > b->last_us) {
        b->tokens += (double)(now_us - b->last_us) * b->rate / 1e6;
        if (b->tokens > b->burst) {
            b->tokens = b->burst;
        }
        b->last_us = now_us;
    }
    if (b->tokens >= 1) {
        b->tokens -= 1;
        return 0;
    }
    wait_us = (1 - b->tokens) * 1e6 / b->rate;
    return wait_us < 1 ? 1 : (uint64_t)wait_us + 1;
}
