/* middleware.h - a binding's middleware: log, retry, rate limit, metadata.
 *
 * The binding `properties` (reference §4.2) parse into struct
 * middleware_options through middleware_settings; the chain itself
 * (Metadata -> Log -> Metrics -> Retry -> RateLimit -> target) is built on
 * these options by the binding layer. */
#ifndef KK_BINDING_MIDDLEWARE_H
#define KK_BINDING_MIDDLEWARE_H

#include "base/errs.h"
#include "base/settings.h"

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

#endif
