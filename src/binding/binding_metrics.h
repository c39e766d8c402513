/* binding_metrics.h - the series the daemon exposes per binding.
 *
 * First kubemq-targets' five counters, with that connector's names, labels
 * and help texts so its dashboards keep working (kubemq_targets_requests_count,
 * _requests_volume, _responses_count, _responses_volume, _errors_count),
 * then this daemon's own: request duration, in flight, retries, AWS errors
 * by type, the source's wait queue and the events-store sequences
 * (kubemq_kinesis_*). Every series is labelled binding, source_kind,
 * target_kind (the AWS errors: binding, error_type) and lives in a
 * base/metrics registry. The source and the target never see this header:
 * the binding hands them the series they update (struct source_metrics,
 * target_kind.metrics).
 *
 * A set lists the bindings registered over one registry, for
 * /bindings/stats. Registering and rendering run on the loop thread;
 * updating a series is atomic, from any thread. */
#ifndef KK_BINDING_BINDING_METRICS_H
#define KK_BINDING_BINDING_METRICS_H

#include "base/buf.h"
#include "base/metrics.h"

#include <stddef.h>

#define BINDING_METRICS_DURATION "kubemq_kinesis_request_duration_seconds"

struct binding_metrics {
    const char *binding;
    const char *source_kind;
    const char *target_kind;
    /* kubemq-targets' counters */
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
    struct binding_metrics *next;               /* the set's list */
};

struct binding_metrics_set;

/* An empty set over reg (the caller's; it must outlive the set). NULL
 * when out of memory. */
struct binding_metrics_set *binding_metrics_set_new(struct metrics_registry *reg);
/* Frees the set's entries, not the registry; accepts NULL. */
void binding_metrics_set_free(struct binding_metrics_set *set);
struct metrics_registry *binding_metrics_registry(const struct binding_metrics_set *set);

/* The series of one binding, created on first registration and returned
 * again (values kept, counters stay monotonic) when the same binding,
 * source kind and target kind register again, e.g. after a reload. Owned
 * by the set. NULL on allocation failure or with a NULL set. */
const struct binding_metrics *binding_metrics_register(struct binding_metrics_set *set,
                                                       const char *binding, const char *source_kind,
                                                       const char *target_kind);
/* kubemq-targets' metric middleware report for one finished call:
 * request count/volume, response count/volume when there is a response,
 * errors count on error. Accepts NULL. */
void binding_metrics_report(const struct binding_metrics *bm, size_t request_bytes,
                            int has_response, size_t response_bytes, int is_error);
/* Count one AWS error response by its type ("ThrottlingException"...). */
void binding_metrics_aws_error(const struct binding_metrics *bm, const char *error_type);

/* Append the /bindings/stats array, `[]` when no binding registered:
 * [{"binding","source_kind","target_kind","request_count","request_volume",
 *   "response_count","response_volume","errors_count"}, ...] */
int binding_metrics_stats_json(const struct binding_metrics_set *set, struct buf *out);

#endif
