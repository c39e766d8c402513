/* binding_metrics.c - the per-binding series and /bindings/stats. */
#include "binding/binding_metrics.h"

#include <stdlib.h>
#include <string.h>

struct binding_metrics_set {
    struct metrics_registry *reg;
    struct binding_metrics *list, **tail;
};

/* A registered binding and the copies of its three names. */
struct entry {
    struct binding_metrics bm;
    char text[];
};

static const char *const binding_labels[] = {"binding", "source_kind", "target_kind", NULL};
static const char *const aws_error_labels[] = {"binding", "error_type", NULL};
static const double duration_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

/* The families of struct binding_metrics, in render order. The first
 * five keep kubemq-targets' names and help texts. */
static const struct {
    enum metrics_type type;
    const char *name;
    const char *help;
    size_t offset;
} binding_families[] = {
    {METRICS_COUNTER, "kubemq_targets_requests_count",
     "counts requests per binding,source and target types",
     offsetof(struct binding_metrics, requests_count)},
    {METRICS_COUNTER, "kubemq_targets_requests_volume",
     "sum requests volume per binding,source and target types",
     offsetof(struct binding_metrics, requests_volume)},
    {METRICS_COUNTER, "kubemq_targets_responses_count",
     "counts responses per binding,source and target types",
     offsetof(struct binding_metrics, responses_count)},
    {METRICS_COUNTER, "kubemq_targets_responses_volume",
     "sum responses volume per binding,source and target types",
     offsetof(struct binding_metrics, responses_volume)},
    {METRICS_COUNTER, "kubemq_targets_errors_count",
     "counts error requests per binding,source and target types",
     offsetof(struct binding_metrics, errors_count)},
    {METRICS_HISTOGRAM, BINDING_METRICS_DURATION,
     "time from taking a request to its reply, per binding,source and target types",
     offsetof(struct binding_metrics, duration)},
    {METRICS_GAUGE, "kubemq_kinesis_in_flight",
     "requests being processed per binding,source and target types",
     offsetof(struct binding_metrics, in_flight)},
    {METRICS_COUNTER, "kubemq_kinesis_retries_total",
     "retry attempts made after a failed call, per binding,source and target types",
     offsetof(struct binding_metrics, retries)},
    {METRICS_GAUGE, "kubemq_kinesis_source_pending",
     "requests taken from the broker waiting for a free slot, per binding,source and target types",
     offsetof(struct binding_metrics, source_pending)},
    {METRICS_COUNTER, "kubemq_kinesis_source_dropped_total",
     "events dropped because max_pending requests were waiting already, per binding,source and "
     "target types",
     offsetof(struct binding_metrics, source_dropped)},
    {METRICS_COUNTER, "kubemq_kinesis_source_rejected_total",
     "queries and commands answered over capacity because max_pending requests were waiting "
     "already, per binding,source and target types",
     offsetof(struct binding_metrics, source_rejected)},
    {METRICS_COUNTER, "kubemq_kinesis_source_expired_total",
     "queries and commands dropped unrun because their timeout passed while they waited, per "
     "binding,source and target types",
     offsetof(struct binding_metrics, source_expired)},
    {METRICS_GAUGE, "kubemq_kinesis_received_sequence",
     "events-store: the channel sequence of the last message taken, per binding,source and "
     "target types (0 for other sources)",
     offsetof(struct binding_metrics, received_sequence)},
    {METRICS_GAUGE, "kubemq_kinesis_checkpoint_sequence",
     "events-store with a checkpoint: the sequence last written as the checkpoint (every message "
     "up to it was answered), per binding,source and target types (0 without one)",
     offsetof(struct binding_metrics, checkpoint_sequence)},
};

struct binding_metrics_set *binding_metrics_set_new(struct metrics_registry *reg)
{
    struct binding_metrics_set *set = calloc(1, sizeof(*set));

    if (set) {
        set->reg = reg;
        set->tail = &set->list;
    }
    return set;
}

void binding_metrics_set_free(struct binding_metrics_set *set)
{
    struct binding_metrics *b, *next;

    if (!set) {
        return;
    }
    for (b = set->list; b; b = next) {
        next = b->next;
        free(b); /* the entry starts with it */
    }
    free(set);
}

struct metrics_registry *binding_metrics_registry(const struct binding_metrics_set *set)
{
    return set ? set->reg : NULL;
}

const struct binding_metrics *binding_metrics_register(struct binding_metrics_set *set,
                                                       const char *binding, const char *source_kind,
                                                       const char *target_kind)
{
    const char *values[3] = {binding, source_kind, target_kind};
    struct binding_metrics *b;
    struct entry *e;
    size_t l1, l2, l3, i;

    if (!set || !binding || !source_kind || !target_kind) {
        return NULL;
    }
    for (b = set->list; b; b = b->next) {
        if (strcmp(b->binding, binding) == 0 && strcmp(b->source_kind, source_kind) == 0 &&
            strcmp(b->target_kind, target_kind) == 0) {
            return b;
        }
    }
    l1 = strlen(binding) + 1;
    l2 = strlen(source_kind) + 1;
    l3 = strlen(target_kind) + 1;
    e = calloc(1, sizeof(*e) + l1 + l2 + l3);
    if (!e) {
        return NULL;
    }
    b = &e->bm;
    memcpy(e->text, binding, l1);
    memcpy(e->text + l1, source_kind, l2);
    memcpy(e->text + l1 + l2, target_kind, l3);
    b->binding = e->text;
    b->source_kind = e->text + l1;
    b->target_kind = e->text + l1 + l2;
    for (i = 0; i < sizeof(binding_families) / sizeof(binding_families[0]); i++) {
        struct metrics_family *f =
            metrics_family_add(set->reg, binding_families[i].type, binding_families[i].name,
                               binding_families[i].help, binding_labels, duration_buckets,
                               sizeof(duration_buckets) / sizeof(duration_buckets[0]));
        struct metrics_series *s = metrics_series_get(f, values);

        if (!s) {
            goto fail;
        }
        memcpy((char *)b + binding_families[i].offset, &s, sizeof(s));
    }
    b->aws_errors = metrics_family_add(set->reg, METRICS_COUNTER, "kubemq_kinesis_aws_errors_total",
                                       "error responses from AWS by error type, per binding",
                                       aws_error_labels, NULL, 0);
    if (!b->aws_errors) {
        goto fail;
    }
    *set->tail = b;
    set->tail = &b->next;
    return b;

fail:
    free(e);
    return NULL;
}

void binding_metrics_report(const struct binding_metrics *bm, size_t request_bytes,
                            int has_response, size_t response_bytes, int is_error)
{
    if (!bm) {
        return;
    }
    metrics_counter_add(bm->requests_count, 1);
    metrics_counter_add(bm->requests_volume, request_bytes);
    if (has_response) {
        metrics_counter_add(bm->responses_count, 1);
        metrics_counter_add(bm->responses_volume, response_bytes);
    }
    if (is_error) {
        metrics_counter_add(bm->errors_count, 1);
    }
}

void binding_metrics_aws_error(const struct binding_metrics *bm, const char *error_type)
{
    const char *values[2];

    if (!bm) {
        return;
    }
    values[0] = bm->binding;
    values[1] = error_type && *error_type ? error_type : "unknown";
    metrics_counter_add(metrics_series_get(bm->aws_errors, values), 1);
}

int binding_metrics_stats_json(const struct binding_metrics_set *set, struct buf *out)
{
    const struct binding_metrics *b;
    int rc = buf_append_char(out, '[');

    for (b = set ? set->list : NULL; b && rc == 0; b = b->next) {
        if ((b != set->list && buf_append_char(out, ',') < 0) ||
            buf_append_str(out, "{\"binding\":") < 0 ||
            buf_append_json_str(out, b->binding, strlen(b->binding)) < 0 ||
            buf_append_str(out, ",\"source_kind\":") < 0 ||
            buf_append_json_str(out, b->source_kind, strlen(b->source_kind)) < 0 ||
            buf_append_str(out, ",\"target_kind\":") < 0 ||
            buf_append_json_str(out, b->target_kind, strlen(b->target_kind)) < 0) {
            return -1;
        }
        rc = buf_appendf(out,
                         ",\"request_count\":%llu,\"request_volume\":%llu,"
                         "\"response_count\":%llu,\"response_volume\":%llu,"
                         "\"errors_count\":%llu}",
                         (unsigned long long)metrics_counter_get(b->requests_count),
                         (unsigned long long)metrics_counter_get(b->requests_volume),
                         (unsigned long long)metrics_counter_get(b->responses_count),
                         (unsigned long long)metrics_counter_get(b->responses_volume),
                         (unsigned long long)metrics_counter_get(b->errors_count));
    }
    return rc == 0 ? buf_append_char(out, ']') : -1;
}
