/* middleware_retry.c - delays between the retry middleware's attempts. */
#include "binding/middleware.h"
#include "binding/middleware_internal.h"

#include <time.h>
#include <unistd.h>

uint64_t middleware_rng_next(uint64_t *state)
{
    uint64_t x = *state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

uint64_t middleware_rng_seed(const void *salt)
{
    struct timespec ts;
    uint64_t s;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)salt ^
        ((uint64_t)getpid() << 16);
    /* splitmix64 finaliser: spreads nearby seeds apart */
    s += 0x9E3779B97F4A7C15ULL;
    s = (s ^ (s >> 30)) * 0xBF58476D1CE4E5B9ULL;
    s = (s ^ (s >> 27)) * 0x94D049BB133111EBULL;
    s ^= s >> 31;
    return s ? s : 0x2545F4914F6CDD1DULL;
}

/* Uniform in [0, n) (n > 0); the modulo bias is irrelevant at these sizes. */
static uint64_t below(uint64_t *rng, uint64_t n)
{
    return middleware_rng_next(rng) % n;
}

uint64_t middleware_retry_delay_ms(int type, long long delay_ms, long long jitter_ms, int retry,
                                   uint64_t *rng)
{
    uint64_t base = delay_ms > 0 ? (uint64_t)delay_ms : 0;
    uint64_t d;
    int i;

    switch (type) {
    case MIDDLEWARE_RETRY_FIXED:
        d = base;
        break;
    case MIDDLEWARE_RETRY_RANDOM:
        d = below(rng, base + 1);
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
        d += below(rng, (uint64_t)jitter_ms);
    }
    return d;
}
