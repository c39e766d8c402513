/* metrics.c - labelled counters, gauges and histograms; Prometheus text. */
#include "base/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metrics_series {
    struct metrics_series *next;
    const struct metrics_family *family;
    char *values[METRICS_MAX_LABELS];
    _Atomic uint64_t counter;
    _Atomic int64_t gauge;
    _Atomic uint64_t sum_bits;  /* histogram sum: the bits of a double */
    _Atomic uint64_t buckets[]; /* histogram: nbuckets + 1 (+Inf), not cumulative */
};

struct metrics_family {
    struct metrics_family *next;
    struct metrics_registry *reg;
    enum metrics_type type;
    char *name;
    char *help;
    char *labels[METRICS_MAX_LABELS];
    size_t nlabels;
    double *bounds;
    size_t nbounds;
    struct metrics_series *series, **series_tail;
    size_t nseries;
};

struct metrics_registry {
    pthread_mutex_t lock;
    struct metrics_family *families, **families_tail;
};

static const char *const type_names[] = {"counter", "gauge", "histogram"};

/* ---- registry -------------------------------------------------------- */

struct metrics_registry *metrics_registry_new(void)
{
    struct metrics_registry *reg = calloc(1, sizeof(*reg));

    if (!reg) {
        return NULL;
    }
    if (pthread_mutex_init(&reg->lock, NULL) != 0) {
        free(reg);
        return NULL;
    }
    reg->families_tail = &reg->families;
    return reg;
}

static void series_free(struct metrics_series *s)
{
    size_t i;

    for (i = 0; i < METRICS_MAX_LABELS; i++) {
        free(s->values[i]);
    }
    free(s);
}

static void family_free(struct metrics_family *f)
{
    struct metrics_series *s, *next;
    size_t i;

    if (!f) {
        return;
    }
    for (s = f->series; s; s = next) {
        next = s->next;
        series_free(s);
    }
    for (i = 0; i < METRICS_MAX_LABELS; i++) {
        free(f->labels[i]);
    }
    free(f->name);
    free(f->help);
    free(f->bounds);
    free(f);
}

void metrics_registry_free(struct metrics_registry *reg)
{
    struct metrics_family *f, *fnext;

    if (!reg) {
        return;
    }
    for (f = reg->families; f; f = fnext) {
        fnext = f->next;
        family_free(f);
    }
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

/* ---- families and series ---------------------------------------------- */

static int valid_name(const char *s, int colon_ok)
{
    const char *p;

    if (!s || !*s || (*s >= '0' && *s <= '9')) {
        return 0;
    }
    for (p = s; *p; p++) {
        char c = *p;

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || (colon_ok && c == ':'))) {
            return 0;
        }
    }
    return 1;
}

static int same_labels(const struct metrics_family *f, const char *const *labels, size_t n)
{
    size_t i;

    if (f->nlabels != n) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (strcmp(f->labels[i], labels[i]) != 0) {
            return 0;
        }
    }
    return 1;
}

static struct metrics_family *family_add_locked(struct metrics_registry *reg,
                                                enum metrics_type type, const char *name,
                                                const char *help, const char *const *labels,
                                                const double *buckets, size_t nbuckets)
{
    struct metrics_family *f;
    size_t n = 0, i;

    if (!valid_name(name, 1) || type > METRICS_HISTOGRAM) {
        return NULL;
    }
    while (labels && labels[n]) {
        if (n == METRICS_MAX_LABELS || !valid_name(labels[n], 0) ||
            strncmp(labels[n], "__", 2) == 0 ||
            (type == METRICS_HISTOGRAM && strcmp(labels[n], "le") == 0)) {
            return NULL;
        }
        n++;
    }
    for (f = reg->families; f; f = f->next) {
        if (strcmp(f->name, name) == 0) {
            return f->type == type && same_labels(f, labels, n) ? f : NULL;
        }
    }
    if (type == METRICS_HISTOGRAM) {
        for (i = 0; i < nbuckets; i++) {
            if (isnan(buckets[i]) || isinf(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1])) {
                return NULL;
            }
        }
    } else {
        nbuckets = 0;
    }
    f = calloc(1, sizeof(*f));
    if (!f) {
        return NULL;
    }
    f->reg = reg;
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    if (!f->name || !f->help) {
        goto fail;
    }
    for (i = 0; i < n; i++) {
        if (!(f->labels[i] = strdup(labels[i]))) {
            goto fail;
        }
    }
    f->nlabels = n;
    if (nbuckets) {
        if (!(f->bounds = malloc(nbuckets * sizeof(double)))) {
            goto fail;
        }
        memcpy(f->bounds, buckets, nbuckets * sizeof(double));
    }
    f->nbounds = nbuckets;
    f->series_tail = &f->series;
    *reg->families_tail = f;
    reg->families_tail = &f->next;
    return f;

fail:
    family_free(f);
    return NULL;
}

struct metrics_family *metrics_family_add(struct metrics_registry *reg, enum metrics_type type,
                                          const char *name, const char *help,
                                          const char *const *labels, const double *buckets,
                                          size_t nbuckets)
{
    struct metrics_family *f;

    if (!reg) {
        return NULL;
    }
    pthread_mutex_lock(&reg->lock);
    f = family_add_locked(reg, type, name, help, labels, buckets, nbuckets);
    pthread_mutex_unlock(&reg->lock);
    return f;
}

static struct metrics_series *series_get_locked(struct metrics_family *f, const char *const *values)
{
    struct metrics_series *s;
    size_t i, nb = f->type == METRICS_HISTOGRAM ? f->nbounds + 1 : 0;

    for (i = 0; i < f->nlabels; i++) {
        if (!values || !values[i]) {
            return NULL;
        }
    }
    for (s = f->series; s; s = s->next) {
        for (i = 0; i < f->nlabels && strcmp(s->values[i], values[i]) == 0; i++) {
        }
        if (i == f->nlabels) {
            return s;
        }
    }
    if (f->nseries >= METRICS_MAX_SERIES) {
        return NULL;
    }
    s = calloc(1, sizeof(*s) + nb * sizeof(s->buckets[0]));
    if (!s) {
        return NULL;
    }
    s->family = f;
    for (i = 0; i < f->nlabels; i++) {
        if (!(s->values[i] = strdup(values[i]))) {
            series_free(s);
            return NULL;
        }
    }
    /* calloc's zero bytes are 0 and 0.0 for every field. */
    *f->series_tail = s;
    f->series_tail = &s->next;
    f->nseries++;
    return s;
}

struct metrics_series *metrics_series_get(struct metrics_family *f, const char *const *values)
{
    struct metrics_series *s;

    if (!f) {
        return NULL;
    }
    pthread_mutex_lock(&f->reg->lock);
    s = series_get_locked(f, values);
    pthread_mutex_unlock(&f->reg->lock);
    return s;
}

/* ---- updates --------------------------------------------------------- */

void metrics_counter_add(struct metrics_series *s, uint64_t n)
{
    if (s) {
        atomic_fetch_add_explicit(&s->counter, n, memory_order_relaxed);
    }
}

void metrics_gauge_add(struct metrics_series *s, int64_t delta)
{
    if (s) {
        atomic_fetch_add_explicit(&s->gauge, delta, memory_order_relaxed);
    }
}

void metrics_gauge_set(struct metrics_series *s, int64_t v)
{
    if (s) {
        atomic_store_explicit(&s->gauge, v, memory_order_relaxed);
    }
}

static double bits_to_double(uint64_t u)
{
    double d;

    memcpy(&d, &u, sizeof(d));
    return d;
}

static uint64_t double_to_bits(double d)
{
    uint64_t u;

    memcpy(&u, &d, sizeof(u));
    return u;
}

void metrics_histogram_observe(struct metrics_series *s, double v)
{
    const struct metrics_family *f;
    uint64_t old;
    size_t i = 0;

    if (!s || s->family->type != METRICS_HISTOGRAM) {
        return;
    }
    f = s->family;
    /* NaN lands in +Inf, as every comparison with it fails. */
    while (i < f->nbounds && !(v <= f->bounds[i])) {
        i++;
    }
    atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
    old = atomic_load_explicit(&s->sum_bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&s->sum_bits, &old,
                                                  double_to_bits(bits_to_double(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

uint64_t metrics_counter_get(const struct metrics_series *s)
{
    return s ? atomic_load_explicit(&((struct metrics_series *)s)->counter, memory_order_relaxed)
             : 0;
}

int64_t metrics_gauge_get(const struct metrics_series *s)
{
    return s ? atomic_load_explicit(&((struct metrics_series *)s)->gauge, memory_order_relaxed) : 0;
}

uint64_t metrics_histogram_count(const struct metrics_series *s)
{
    uint64_t n = 0;
    size_t i;

    if (!s || s->family->type != METRICS_HISTOGRAM) {
        return 0;
    }
    for (i = 0; i <= s->family->nbounds; i++) {
        n += atomic_load_explicit(&((struct metrics_series *)s)->buckets[i], memory_order_relaxed);
    }
    return n;
}

double metrics_histogram_sum(const struct metrics_series *s)
{
    if (!s) {
        return 0;
    }
    return bits_to_double(
        atomic_load_explicit(&((struct metrics_series *)s)->sum_bits, memory_order_relaxed));
}

/* ---- Prometheus text ------------------------------------------------- */

/* Shortest text that reads back as the same double; Go spells the
 * infinities +Inf and -Inf. */
static int append_double(struct buf *out, double d)
{
    char tmp[40];
    int prec;

    if (isnan(d)) {
        return buf_append_str(out, "NaN");
    }
    if (isinf(d)) {
        return buf_append_str(out, d > 0 ? "+Inf" : "-Inf");
    }
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
        if (strtod(tmp, NULL) == d) {
            break;
        }
    }
    return buf_append_str(out, tmp);
}

/* HELP text escapes \ and newline; label values also escape ". */
static int append_escaped(struct buf *out, const char *s, int quote)
{
    const char *run = s;

    for (; *s; s++) {
        const char *esc = NULL;

        if (*s == '\\') {
            esc = "\\\\";
        } else if (*s == '\n') {
            esc = "\\n";
        } else if (quote && *s == '"') {
            esc = "\\\"";
        }
        if (esc) {
            if (buf_append(out, run, (size_t)(s - run)) < 0 || buf_append_str(out, esc) < 0) {
                return -1;
            }
            run = s + 1;
        }
    }
    return buf_append(out, run, (size_t)(s - run));
}

/* name{l1="v1",...,le="x"} with `le` only for buckets. */
static int append_sample_name(struct buf *out, const struct metrics_family *f,
                              const struct metrics_series *s, const char *suffix, const double *le)
{
    size_t i;

    if (buf_append_str(out, f->name) < 0 || buf_append_str(out, suffix) < 0) {
        return -1;
    }
    if (f->nlabels == 0 && !le) {
        return buf_append_char(out, ' ');
    }
    if (buf_append_char(out, '{') < 0) {
        return -1;
    }
    for (i = 0; i < f->nlabels; i++) {
        if ((i && buf_append_char(out, ',') < 0) || buf_append_str(out, f->labels[i]) < 0 ||
            buf_append_str(out, "=\"") < 0 || append_escaped(out, s->values[i], 1) < 0 ||
            buf_append_char(out, '"') < 0) {
            return -1;
        }
    }
    if (le && ((f->nlabels && buf_append_char(out, ',') < 0) || buf_append_str(out, "le=\"") < 0 ||
               append_double(out, *le) < 0 || buf_append_char(out, '"') < 0)) {
        return -1;
    }
    return buf_append_str(out, "} ");
}

static int render_series(struct buf *out, const struct metrics_family *f, struct metrics_series *s)
{
    uint64_t cum = 0;
    size_t i;

    switch (f->type) {
    case METRICS_COUNTER:
        return append_sample_name(out, f, s, "", NULL) < 0
                   ? -1
                   : buf_appendf(out, "%llu\n", (unsigned long long)metrics_counter_get(s));
    case METRICS_GAUGE:
        return append_sample_name(out, f, s, "", NULL) < 0
                   ? -1
                   : buf_appendf(out, "%lld\n", (long long)metrics_gauge_get(s));
    case METRICS_HISTOGRAM:
        break;
    }
    for (i = 0; i <= f->nbounds; i++) {
        double le = i < f->nbounds ? f->bounds[i] : INFINITY;

        cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        if (append_sample_name(out, f, s, "_bucket", &le) < 0 ||
            buf_appendf(out, "%llu\n", (unsigned long long)cum) < 0) {
            return -1;
        }
    }
    /* _count is the +Inf bucket, so the two always agree. */
    if (append_sample_name(out, f, s, "_sum", NULL) < 0 ||
        append_double(out, metrics_histogram_sum(s)) < 0 || buf_append_char(out, '\n') < 0 ||
        append_sample_name(out, f, s, "_count", NULL) < 0 ||
        buf_appendf(out, "%llu\n", (unsigned long long)cum) < 0) {
        return -1;
    }
    return 0;
}

int metrics_render_prometheus(struct metrics_registry *reg, struct buf *out)
{
    const struct metrics_family *f;
    struct metrics_series *s;
    int rc = 0;

    pthread_mutex_lock(&reg->lock);
    for (f = reg->families; f && rc == 0; f = f->next) {
        if (!f->series) {
            continue;
        }
        rc = buf_appendf(out, "# HELP %s ", f->name);
        if (rc == 0) {
            rc = append_escaped(out, f->help, 0);
        }
        if (rc == 0) {
            rc = buf_appendf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
        }
        for (s = f->series; s && rc == 0; s = s->next) {
            rc = render_series(out, f, s);
        }
    }
    pthread_mutex_unlock(&reg->lock);
    return rc;
}
