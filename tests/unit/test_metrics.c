/* test_metrics.c - metric registry, Prometheus text, threads. */
#include "base/metrics.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_exposition_text(void **state)
{
    static const char *const labels[] = {"binding", "kind", NULL};
    static const double bounds[] = {0.1, 1, 2.5};
    struct metrics_registry *reg = metrics_registry_new();
    struct metrics_family *c, *g, *h, *empty, *plain;
    struct metrics_series *s1, *s2, *gs, *hs, *ps;
    struct buf out = BUF_INIT(0);

    (void)state;
    assert_non_null(reg);
    c = metrics_family_add(reg, METRICS_COUNTER, "demo_requests_total", "counts \\ requests\nper x",
                           labels, NULL, 0);
    empty = metrics_family_add(reg, METRICS_COUNTER, "demo_unused_total", "never used", labels,
                               NULL, 0);
    g = metrics_family_add(reg, METRICS_GAUGE, "demo_in_flight", "in flight", labels, NULL, 0);
    h = metrics_family_add(reg, METRICS_HISTOGRAM, "demo_seconds", "latency", labels, bounds, 3);
    plain = metrics_family_add(reg, METRICS_COUNTER, "demo_plain", "no labels", NULL, NULL, 0);
    assert_non_null(c);
    assert_non_null(empty);
    assert_non_null(g);
    assert_non_null(h);
    assert_non_null(plain);

    s1 = metrics_series_get(c, (const char *[]){"b1", "aws.kinesis"});
    s2 = metrics_series_get(c, (const char *[]){"we\"ird\\na\nme", "x"});
    gs = metrics_series_get(g, (const char *[]){"b1", "aws.kinesis"});
    hs = metrics_series_get(h, (const char *[]){"b1", "aws.kinesis"});
    ps = metrics_series_get(plain, NULL);
    assert_ptr_equal(metrics_series_get(c, (const char *[]){"b1", "aws.kinesis"}), s1);
    assert_null(metrics_series_get(c, (const char *[]){"b1", NULL}));

    metrics_counter_add(s1, 3);
    metrics_counter_add(s1, 4);
    metrics_counter_add(s2, 1);
    metrics_gauge_add(gs, 5);
    metrics_gauge_add(gs, -7);
    metrics_histogram_observe(hs, 0.05);
    metrics_histogram_observe(hs, 0.1); /* le is inclusive */
    metrics_histogram_observe(hs, 2);
    metrics_histogram_observe(hs, 30);
    metrics_counter_add(ps, 12345678901234ULL);
    metrics_counter_add(NULL, 1); /* no-op */

    assert_int_equal(metrics_counter_get(s1), 7);
    assert_int_equal(metrics_gauge_get(gs), -2);
    assert_int_equal(metrics_histogram_count(hs), 4);
    assert_true(metrics_histogram_sum(hs) > 32.149 && metrics_histogram_sum(hs) < 32.151);

    assert_int_equal(metrics_render_prometheus(reg, &out), 0);
    assert_string_equal(buf_str(&out),
                        "# HELP demo_requests_total counts \\\\ requests\\nper x\n"
                        "# TYPE demo_requests_total counter\n"
                        "demo_requests_total{binding=\"b1\",kind=\"aws.kinesis\"} 7\n"
                        "demo_requests_total{binding=\"we\\\"ird\\\\na\\nme\",kind=\"x\"} 1\n"
                        "# HELP demo_in_flight in flight\n"
                        "# TYPE demo_in_flight gauge\n"
                        "demo_in_flight{binding=\"b1\",kind=\"aws.kinesis\"} -2\n"
                        "# HELP demo_seconds latency\n"
                        "# TYPE demo_seconds histogram\n"
                        "demo_seconds_bucket{binding=\"b1\",kind=\"aws.kinesis\",le=\"0.1\"} 2\n"
                        "demo_seconds_bucket{binding=\"b1\",kind=\"aws.kinesis\",le=\"1\"} 2\n"
                        "demo_seconds_bucket{binding=\"b1\",kind=\"aws.kinesis\",le=\"2.5\"} 3\n"
                        "demo_seconds_bucket{binding=\"b1\",kind=\"aws.kinesis\",le=\"+Inf\"} 4\n"
                        "demo_seconds_sum{binding=\"b1\",kind=\"aws.kinesis\"} 32.15\n"
                        "demo_seconds_count{binding=\"b1\",kind=\"aws.kinesis\"} 4\n"
                        "# HELP demo_plain no labels\n"
                        "# TYPE demo_plain counter\n"
                        "demo_plain 12345678901234\n");
    buf_free(&out);
    metrics_registry_free(reg);
}

static void test_family_rules(void **state)
{
    static const char *const labels[] = {"binding", NULL};
    static const char *const other[] = {"other", NULL};
    static const char *const le[] = {"le", NULL};
    static const char *const reserved[] = {"__name", NULL};
    static const double bad_bounds[] = {1, 1};
    struct metrics_registry *reg = metrics_registry_new();
    struct metrics_family *f;

    (void)state;
    f = metrics_family_add(reg, METRICS_COUNTER, "a_total", "h", labels, NULL, 0);
    assert_non_null(f);
    assert_ptr_equal(metrics_family_add(reg, METRICS_COUNTER, "a_total", "h", labels, NULL, 0), f);
    assert_null(metrics_family_add(reg, METRICS_GAUGE, "a_total", "h", labels, NULL, 0));
    assert_null(metrics_family_add(reg, METRICS_COUNTER, "a_total", "h", other, NULL, 0));
    assert_null(metrics_family_add(reg, METRICS_COUNTER, "1abc", "h", NULL, NULL, 0));
    assert_null(metrics_family_add(reg, METRICS_COUNTER, "a-b", "h", NULL, NULL, 0));
    assert_null(metrics_family_add(reg, METRICS_COUNTER, "b", "h", reserved, NULL, 0));
    assert_null(metrics_family_add(reg, METRICS_HISTOGRAM, "c", "h", le, NULL, 0));
    assert_null(metrics_family_add(reg, METRICS_HISTOGRAM, "d", "h", NULL, bad_bounds, 2));
    metrics_registry_free(reg);
    metrics_registry_free(NULL);
}

static void test_empty(void **state)
{
    struct metrics_registry *reg = metrics_registry_new();
    struct buf out = BUF_INIT(0);

    (void)state;
    assert_int_equal(metrics_render_prometheus(reg, &out), 0);
    assert_string_equal(buf_str(&out), "");
    /* A family without series is left out. */
    assert_non_null(metrics_family_add(reg, METRICS_COUNTER, "quiet_total", "h", NULL, NULL, 0));
    assert_int_equal(metrics_render_prometheus(reg, &out), 0);
    assert_string_equal(buf_str(&out), "");
    buf_free(&out);
    metrics_registry_free(reg);
}

#define THREAD_ROUNDS 200000

struct worker {
    struct metrics_registry *reg;
    struct metrics_series *count, *gauge, *seconds;
    struct metrics_family *errors;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    int i;

    for (i = 0; i < THREAD_ROUNDS; i++) {
        metrics_gauge_add(w->gauge, 1);
        metrics_counter_add(w->count, 3);
        metrics_histogram_observe(w->seconds, 0.5);
        metrics_gauge_add(w->gauge, -1);
        if (i % 1000 == 0) {
            /* new series and rendering race the increments */
            const char *v[] = {i % 2000 ? "A" : "B"};
            struct buf out = BUF_INIT(0);

            metrics_counter_add(metrics_series_get(w->errors, v), 1);
            metrics_render_prometheus(w->reg, &out);
            buf_free(&out);
        }
    }
    return NULL;
}

static void test_two_threads(void **state)
{
    static const char *const labels[] = {"kind", NULL};
    static const double buckets[] = {0.1, 1};
    const char *v[] = {"x"}, *a[] = {"A"}, *b[] = {"B"};
    struct metrics_registry *reg = metrics_registry_new();
    struct worker w;
    pthread_t t1, t2;

    (void)state;
    w.reg = reg;
    w.count = metrics_series_get(
        metrics_family_add(reg, METRICS_COUNTER, "t_total", "h", labels, NULL, 0), v);
    w.gauge = metrics_series_get(
        metrics_family_add(reg, METRICS_GAUGE, "t_now", "h", labels, NULL, 0), v);
    w.seconds = metrics_series_get(
        metrics_family_add(reg, METRICS_HISTOGRAM, "t_seconds", "h", labels, buckets, 2), v);
    w.errors = metrics_family_add(reg, METRICS_COUNTER, "t_errors_total", "h", labels, NULL, 0);
    assert_non_null(w.count);
    assert_non_null(w.gauge);
    assert_non_null(w.seconds);
    assert_int_equal(pthread_create(&t1, NULL, worker_run, &w), 0);
    assert_int_equal(pthread_create(&t2, NULL, worker_run, &w), 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    assert_int_equal(metrics_counter_get(w.count), 6 * THREAD_ROUNDS);
    assert_int_equal(metrics_gauge_get(w.gauge), 0);
    assert_int_equal(metrics_histogram_count(w.seconds), 2 * THREAD_ROUNDS);
    /* 0.5 sums exactly in binary. */
    assert_true(metrics_histogram_sum(w.seconds) == 0.5 * 2 * THREAD_ROUNDS);
    assert_int_equal(metrics_counter_get(metrics_series_get(w.errors, a)) +
                         metrics_counter_get(metrics_series_get(w.errors, b)),
                     2 * THREAD_ROUNDS / 1000);
    metrics_registry_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exposition_text),
        cmocka_unit_test(test_family_rules),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_two_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
