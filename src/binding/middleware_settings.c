/* middleware_settings.c - the settings table of the binding middleware. */
#include "binding/middleware.h"

#include <stddef.h>

#define OPT(field) offsetof(struct middleware_options, field)

const struct settings_entry middleware_settings[] = {
    {"log_level", SETTINGS_ENUM, "", 0, 0, 0, "|debug|info|error", OPT(log_level), NULL,
     "per-request log lines: info (one line per request, failures at error level), error "
     "(failures only), debug (as info, plus metadata, sizes and an excerpt of the data), "
     "empty: none"},
    {"retry_attempts", SETTINGS_INT, "1", 0, 1, 1000, NULL, OPT(retry_attempts), NULL,
     "target calls per request, the first included; only retryable failures (throttling, "
     "5xx, transport errors) are retried, and the error says `(after N attempts)`"},
    {"retry_delay_milliseconds", SETTINGS_INT, "100", 0, 0, 3600000, NULL, OPT(retry_delay_ms),
     NULL,
     "delay before a retry: back-off: this, doubling per retry (up to 60 s); fixed: this; "
     "random: uniform from 0 to this"},
    {"retry_max_jitter_milliseconds", SETTINGS_INT, "100", 0, 0, 3600000, NULL,
     OPT(retry_max_jitter_ms), NULL,
     "a random extra delay from 0 up to (not including) this, added to every retry delay"},
    {"retry_delay_type", SETTINGS_ENUM, "back-off", 0, 0, 0, "back-off|fixed|random",
     OPT(retry_delay_type), NULL,
     "back-off: doubling delays; fixed: the same delay; random: up to the delay (see "
     "retry_delay_milliseconds)"},
    {"rate_per_second", SETTINGS_INT, "0", 0, 0, 1000000, NULL, OPT(rate_per_second), NULL,
     "attempts per second into the target (retries count), served in arrival order; bursts "
     "of 1 (10 ms worth above 100/s); 0 = unlimited"},
    {"rate_per_seconds", SETTINGS_INT, NULL, 0, 0, 0, NULL, 0, "rate_per_second", NULL},
    {"metadata", SETTINGS_JSON, "", 0, 0, 0, NULL, OPT(metadata), NULL,
     "JSON object of default metadata for every request, e.g. "
     "`{\"method\":\"put_record\",\"stream_name\":\"s1\"}`; a key the request sets "
     "(non-empty) keeps the request's value"},
    {NULL, 0, NULL, 0, 0, 0, NULL, 0, NULL, NULL},
};

int middleware_options_load(const json_t *props, struct middleware_options *o, const char *where,
                            struct errs *errs)
{
    return settings_apply(middleware_settings, props, o, where, errs);
}

void middleware_options_free(struct middleware_options *o)
{
    settings_free(middleware_settings, o);
}
