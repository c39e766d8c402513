/* middleware.h - a binding's middleware: log, retry, rate limit, metadata.
 *
 * The binding `properties` (kubemq-targets' middleware properties) parse
 * into struct middleware_options through middleware_settings;
 * middleware_create builds the chain on them, outermost first as in
 * kubemq-targets:
 * metadata defaults -> log -> metrics -> retry -> rate limit -> target.
 *
 * - metadata: the `metadata` pairs are defaults; a request's own non-empty
 *   value wins.
 * - log: one line per request at the binding's log_level (the process log
 *   level still filters them); record data only at debug.
 * - metrics: kubemq-targets' request/response/error counters, latency,
 *   in-flight and retries; every attempt that failed with an AWS error
 *   counts under its type (the reply's error_type).
 * - retry: up to retry_attempts target calls, only while the reply says
 *   retryable; delays on loop timers. The final error is the last
 *   attempt's, with " (after N attempts)" when N > 1.
 * - rate limit: a token bucket per binding consulted once per attempt;
 *   waiting attempts queue in FIFO order on a loop timer. */
#ifndef KK_BINDING_MIDDLEWARE_H
#define KK_BINDING_MIDDLEWARE_H

#include "base/errs.h"
#include "base/loop.h"
#include "base/settings.h"
#include "binding/binding_metrics.h"
#include "kinesis/target.h"
#include "message/envelope.h"

#include <stddef.h>

#include <jansson.h>

/* Index of log_level's choices: "" (no per-request line), debug, info, error. */
enum middleware_log_level {
    MIDDLEWARE_LOG_NONE = 0,
    MIDDLEWARE_LOG_DEBUG = 1,
    MIDDLEWARE_LOG_INFO = 2,
    MIDDLEWARE_LOG_ERROR = 3,
};

enum middleware_retry_type {
    MIDDLEWARE_RETRY_BACKOFF = 0,
    MIDDLEWARE_RETRY_FIXED = 1,
    MIDDLEWARE_RETRY_RANDOM = 2,
};

struct middleware_options {
    int log_level; /* enum middleware_log_level */
    long long retry_attempts;
    long long retry_delay_ms;
    long long retry_max_jitter_ms;
    int retry_delay_type;      /* enum middleware_retry_type */
    long long rate_per_second; /* 0 = unlimited */
    char *metadata;            /* JSON object text of defaults, "" = none */
};

extern const struct settings_entry middleware_settings[];

/* Parse props (NULL = none) into o (zeroed by the caller); problems go to
 * errs as "<where>: <key>: <rule>". Free o with middleware_options_free. */
int middleware_options_load(const json_t *props, struct middleware_options *o, const char *where,
                            struct errs *errs);
void middleware_options_free(struct middleware_options *o);

struct middleware;

/* One chain per binding, on the engine loop. target_instance belongs to the
 * caller; binding and o are copied. mb may be NULL (no metrics). Returns
 * NULL with the reason in err (bad options). */
struct middleware *middleware_create(struct loop *loop, const struct middleware_options *o,
                                     const char *binding, const struct target_kind *tk,
                                     void *target_instance, const struct binding_metrics *mb,
                                     char *err, size_t errlen);
/* Accepts NULL; no request may be in flight. Destroy the chain before its
 * target instance. Defensive when requests remain: those waiting for a
 * retry or a rate-limit token are answered at once with their last error
 * ("binding stopped" when none); those inside the target finish without
 * retry when the target completes them, and the chain is freed after the
 * last. */
void middleware_destroy(struct middleware *m);
/* Run req through metadata defaults -> log -> metrics -> retry -> rate
 * limit -> target. reply must be initialised by the caller; done(ctx) runs
 * exactly once on the loop thread (possibly before this returns). req (its
 * metadata gets the defaults) and reply stay valid until done. */
void middleware_execute(struct middleware *m, struct envelope_request *req,
                        struct envelope_reply *reply, target_done_fn done, void *ctx);
/* Requests inside the chain right now (for drain). */
size_t middleware_in_flight(const struct middleware *m);

#endif
