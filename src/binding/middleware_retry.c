/* middleware_retry.c - delays between the retry middleware's attempts. */
#include "binding/middleware.h"
#include "binding/middleware_internal.h"

uint64_t middleware_retry_delay_ms(int type, long long delay_ms, long long jitter_ms, int retry,
                                   struct random_prng *rng)
{
    uint64_t base = delay_ms > 0 ? (uint64_t)delay_ms : 0;
    uint64_t d;
    int i;

    switch (type) {
    case MIDDLEWARE_RETRY_FIXED:
        d = base;
        break;
    case MIDDLEWARE_RETRY_RANDOM:
        d = random_prng_below(rng, base + 1);
        break;
    default: /* back-off */
        d = base;
        for (i = 1; i < retry && d < MIDDLEWARE_BACKOFF_CAP_MS; i++) {
            d *= 2;
        }
        if (d > MIDDLEWARE_BACKOFF_CAP_MS && d > base) {
            d = base > MIDDLEWARE_BACKOFF_CAP_MS ? base : MIDDLEWARE_BACKOFF_CAP_MS;
        }
        break;
    }
    if (jitter_ms > 0) {
        d += random_prng_below(rng, (uint64_t)jitter_ms);
    }
    return d;
}
