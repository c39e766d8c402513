/* middleware_internal.h - the binding middleware's internals, shared by its files.
 *
 * middleware.c runs the chain; middleware_retry.c computes retry delays;
 * middleware_ratelimit.c is the token bucket; middleware_log.c writes the
 * per-request lines. Tests include this header to check the pure parts
 * (delays, bucket) without waiting on clocks. */
#ifndef KK_BINDING_MIDDLEWARE_INTERNAL_H
#define KK_BINDING_MIDDLEWARE_INTERNAL_H

#include "base/random.h"
#include "message/envelope.h"

#include <stdint.h>

/* Back-off delays stop doubling here (unless the base delay is larger). */
#define MIDDLEWARE_BACKOFF_CAP_MS 60000u

/* ---- retry delays (middleware_retry.c) ---- */

/* Milliseconds to wait before retry number `retry` (1 = the first retry):
 * back-off delay_ms * 2^(retry-1) (capped), fixed delay_ms, random uniform
 * in [0, delay_ms]; plus a uniform jitter in [0, jitter_ms). */
uint64_t middleware_retry_delay_ms(int type, long long delay_ms, long long jitter_ms, int retry,
                                   struct random_prng *rng);

/* ---- rate limit (middleware_ratelimit.c) ---- */

/* Token bucket: `rate` tokens per second, at most `burst` stored; starts
 * full. Times are the loop's monotonic microseconds (loop_now_us). */
struct middleware_bucket {
    double rate;
    double burst;
    double tokens;
    uint64_t last_us;
};

/* Burst: one request, or 10 ms worth at high rates so a millisecond timer
 * can keep up. */
void middleware_bucket_init(struct middleware_bucket *b, long long rate, uint64_t now_us);
/* Take one token: 0 when taken, else the microseconds until one is there
 * (nothing taken). */
uint64_t middleware_bucket_take(struct middleware_bucket *b, uint64_t now_us);

/* ---- per-request log lines (middleware_log.c) ---- */

/* The binding's line for a finished request at log_level (enum
 * middleware_log_level): info and debug log successes, every level but
 * none logs failures. */
void middleware_log_result(const char *binding, int log_level, const struct envelope_request *req,
                           const struct envelope_reply *reply, int attempts, uint64_t elapsed_us);
/* A failed attempt that will be retried (info and debug only). */
void middleware_log_retry(const char *binding, int log_level, const struct envelope_request *req,
                          const struct envelope_reply *reply, int attempt, int attempts,
                          uint64_t delay_ms);

#endif
