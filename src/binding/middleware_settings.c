/* middleware_settings.c - the settings table of the binding middleware. */
#include "binding/middleware.h"

#include <stddef.h>

#define OPT(field) offsetof(struct middleware_options, field)

const struct settings_entry middleware_settings[] = {
    {"log_level", SETTINGS_ENUM, "", 0, 0, 0, "|debug|info|error", OPT(log_level), NULL,
     "per-request log line: debug (request and response in full), info (metadata; failures "
     "at error), error (failures only), empty: none"},
    {"retry_attempts", SETTINGS_INT, "1", 0, 1, 1000, NULL, OPT(retry_attempts), NULL,
     "attempts per request, the first included"},
    {"retry_delay_milliseconds", SETTINGS_INT, "100", 0, 0, 3600000, NULL, OPT(retry_delay_ms),
     NULL, "delay before a retry (back-off: the first, doubling)"},
    {"retry_max_jitter_milliseconds", SETTINGS_INT, "100", 0, 0, 3600000, NULL,
     OPT(retry_max_jitter_ms), NULL, "random extra delay up to this, added to each retry delay"},
    {"retry_delay_type", SETTINGS_ENUM, "back-off", 0, 0, 0, "back-off|fixed|random",
     OPT(retry_delay_type), NULL,
     "back-off: doubling delays; fixed: the same delay; random: up to the delay"},
    {"rate_per_second", SETTINGS_INT, "0", 0, 0, 1000000, NULL, OPT(rate_per_second), NULL,
     "requests per second into the target (retries count); 0 = unlimited"},
    {"rate_per_seconds", SETTINGS_INT, NULL, 0, 0, 0, NULL, 0, "rate_per_second", NULL},
    {"metadata", SETTINGS_JSON, "", 0, 0, 0, NULL, OPT(metadata), NULL,
     "JSON object of metadata merged into every request, e.g. "
     "`{\"method\":\"put_record\",\"stream_name\":\"s1\"}`"},
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
