/* metrics.h - counters, gauges and histograms with labels, rendered as
 * Prometheus text (exposition format 0.0.4) and as per-binding stats JSON.
 *
 * Registering a family or a new label combination takes the registry
 * mutex and allocates; after that a series pointer is stable until the
 * registry is freed and updating it is a lock-free atomic operation, safe
 * from any thread. Families render in registration order, series in
 * creation order; families with no series are left out. */
#ifndef KK_BASE_METRICS_H
#define KK_BASE_METRICS_H

#include "base/buf.h"

#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_LABELS 4
/* A family stops growing here (metrics_series_get returns NULL): label
 * values such as AWS error types come from the network. */
#define METRICS_MAX_SERIES 1000

enum metrics_type {
    METRICS_COUNTER = 0,
    METRICS_GAUGE = 1,
    METRICS_HISTOGRAM = 2,
};

struct metrics_registry;
struct metrics_family;
struct metrics_series;

struct metrics_registry *metrics_registry_new(void);
/* Frees every family, series and binding; accepts NULL. */
void metrics_registry_free(struct metrics_registry *reg);

/* Define a family. labels is NULL-terminated (at most METRICS_MAX_LABELS);
 * buckets (strictly increasing upper bounds, +Inf implied) only for
 * histograms. Adding a name that exists returns the existing family when
 * type and label names match, else NULL; NULL also for invalid names. */
struct metrics_family *metrics_family_add(struct metrics_registry *reg, enum metrics_type type,
                                          const char *name, const char *help,
                                          const char *const *labels, const double *buckets,
                                          size_t nbuckets);
/* The series for these label values (one per label name), created on
 * first use. NULL on allocation failure or past METRICS_MAX_SERIES. */
struct metrics_series *metrics_series_get(struct metrics_family *f, const char *const *values);

/* Updates; all accept a NULL series and then do nothing. */
void metrics_counter_add(struct metrics_series *s, uint64_t n);
void metrics_gauge_add(struct metrics_series *s, int64_t delta);
void metrics_gauge_set(struct metrics_series *s, int64_t v);
void metrics_histogram_observe(struct metrics_series *s, double v);

uint64_t metrics_counter_get(const struct metrics_series *s);
int64_t metrics_gauge_get(const struct metrics_series *s);
uint64_t metrics_histogram_count(const struct metrics_series *s);
double metrics_histogram_sum(const struct metrics_series *s);

/* Append the Prometheus text of every family to out. */
int metrics_render_prometheus(struct metrics_registry *reg, struct buf *out);
/* Append the per-binding stats array, `[]` when there is none:
 * [{"binding","source_kind","target_kind","request_count","request_volume",
 *   "response_count","response_volume","errors_count"}, ...] */
int metrics_render_stats_json(struct metrics_registry *reg, struct buf *out);

/* ---- the series the daemon exposes, per binding ---------------------- */

#define METRICS_DURATION_NAME "kubemq_kinesis_request_duration_seconds"

struct metrics_binding {
    const char *binding;
    const char *source_kind;
    const char *target_kind;
    /* kubemq_targets_* counters, named and labelled as the reference. */
    struct metrics_series *requests_count;
    struct metrics_series *requests_volume; /* bytes of request data */
    struct metrics_series *responses_count;
    struct metrics_series *responses_volume; /* bytes of response data */
    struct metrics_series *errors_count;
    struct metrics_series *duration;  /* histogram, seconds */
    struct metrics_series *in_flight; /* gauge */
    struct metrics_series *retries;   /* counter */
    /* The source's wait queue (see source.h). */
    struct metrics_series *source_pending;  /* gauge */
    struct metrics_series *source_dropped;  /* counter: events */
    struct metrics_series *source_rejected; /* counter: over capacity */
    struct metrics_series *source_expired;  /* counter: timed out waiting */
    /* events-store: the sequence last taken and the checkpoint written */
    struct metrics_series *received_sequence;   /* gauge */
    struct metrics_series *checkpoint_sequence; /* gauge */
    struct metrics_family *aws_errors;          /* labels binding, error_type */
    struct metrics_binding *next;               /* registry's list */
};

/* The series of one binding, created on first registration and returned
 * again (values kept, counters stay monotonic) when the same binding,
 * source kind and target kind register again, e.g. after a reload. Owned
 * by the registry. NULL on allocation failure. */
const struct metrics_binding *metrics_binding_register(struct metrics_registry *reg,
                                                       const char *binding, const char *source_kind,
                                                       const char *target_kind);
/* The reference's metric middleware report for one finished call:
 * request count/volume, response count/volume when there is a response,
 * errors count on error. */
void metrics_binding_report(const struct metrics_binding *mb, size_t request_bytes,
                            int has_response, size_t response_bytes, int is_error);
/* Count one AWS error response by its type ("ThrottlingException"...). */
void metrics_binding_aws_error(const struct metrics_binding *mb, const char *error_type);

#endif
