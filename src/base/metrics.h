/* metrics.h - counters, gauges and histograms with labels, rendered as
 * Prometheus text (exposition format 0.0.4).
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
 * values may come from the network. */
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
/* Frees every family and series; accepts NULL. */
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

#endif
