/* random.h - the daemon's one source of randomness, for two purposes.
 *
 * Ids (client ids, request and message ids, UUIDs, generated partition
 * keys) must not repeat across processes and restarts: random_bytes gives
 * kernel random bytes (getrandom), drawn a pool at a time per thread so an
 * id costs no system call. Should the kernel have none yet (early boot,
 * when getrandom would block), the pool is filled from the wall clock,
 * the pid and a counter: unique, not unpredictable. Nothing here makes
 * keys or tokens.
 *
 * Jitter (retry and backoff delays) needs spread and speed, not secrecy:
 * struct random_prng is a xorshift64* generator seeded from random_bytes,
 * one per owner (no locks: an owner lives on one thread). */
#ifndef KK_BASE_RANDOM_H
#define KK_BASE_RANDOM_H

#include <stddef.h>
#include <stdint.h>

/* n random bytes into out. Never fails, never blocks. */
void random_bytes(void *out, size_t n);
/* n random bytes as 2n lower-case hex digits and a NUL (out: 2n + 1). */
void random_hex(char *out, size_t n);
/* A random (version 4) UUID, "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx". */
void random_uuid(char out[37]);

struct random_prng {
    uint64_t s; /* never 0 */
};

/* Seed from random_bytes: every generator draws its own sequence. */
void random_prng_seed(struct random_prng *r);
/* Seed with a fixed value (tests: a reproducible sequence). */
void random_prng_seed_with(struct random_prng *r, uint64_t seed);
uint64_t random_prng_next(struct random_prng *r);
/* Uniform in [0, n) for n > 0 (the modulo bias is negligible at delay
 * sizes); 0 when n is 0. */
uint64_t random_prng_below(struct random_prng *r, uint64_t n);

#endif
