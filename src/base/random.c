/* random.c - kernel random bytes through a per-thread pool; xorshift64*. */
#include "base/random.h"

#include "base/hex.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define POOL 512

static _Thread_local unsigned char pool[POOL];
static _Thread_local size_t left;

/* splitmix64's finaliser: spreads nearby inputs apart. */
static uint64_t mix(uint64_t s)
{
    s += 0x9E3779B97F4A7C15ULL;
    s = (s ^ (s >> 30)) * 0xBF58476D1CE4E5B9ULL;
    s = (s ^ (s >> 27)) * 0x94D049BB133111EBULL;
    return s ^ (s >> 31);
}

static void refill(void)
{
    static _Thread_local uint64_t counter;
    struct timespec ts;
    uint64_t s;
    size_t i;

    if (getrandom(pool, sizeof(pool), GRND_NONBLOCK) == (ssize_t)sizeof(pool)) {
        left = sizeof(pool);
        return;
    }
    /* No entropy yet: unique per process, thread and call, not secret. */
    clock_gettime(CLOCK_REALTIME, &ts);
    s = (uint64_t)ts.tv_sec << 30 ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 40 ^
        (uint64_t)(uintptr_t)&counter;
    for (i = 0; i < sizeof(pool); i += 8) {
        uint64_t v = mix(s ^ ++counter);

        memcpy(pool + i, &v, 8);
    }
    left = sizeof(pool);
}

void random_bytes(void *out, size_t n)
{
    unsigned char *p = out;

    while (n > 0) {
        size_t take;

        if (left == 0) {
            refill();
        }
        take = n < left ? n : left;
        memcpy(p, pool + sizeof(pool) - left, take);
        left -= take;
        p += take;
        n -= take;
    }
}

void random_hex(char *out, size_t n)
{
    unsigned char r[64];

    out[0] = '\0';
    while (n > 0) {
        size_t take = n < sizeof(r) ? n : sizeof(r);

        random_bytes(r, take);
        hex_encode(r, take, out);
        out += 2 * take;
        n -= take;
    }
}

void random_uuid(char out[37])
{
    unsigned char r[16];
    char h[33];

    random_bytes(r, sizeof(r));
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* version 4 */
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    hex_encode(r, sizeof(r), h);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
}

void random_prng_seed_with(struct random_prng *r, uint64_t seed)
{
    r->s = mix(seed);
    if (r->s == 0) {
        r->s = 0x2545F4914F6CDD1DULL;
    }
}

void random_prng_seed(struct random_prng *r)
{
    uint64_t s;

    random_bytes(&s, sizeof(s));
    random_prng_seed_with(r, s);
}

uint64_t random_prng_next(struct random_prng *r)
{
    uint64_t x = r->s;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

uint64_t random_prng_below(struct random_prng *r, uint64_t n)
{
    return n ? random_prng_next(r) % n : 0;
}
