/* test_binding_metrics.c - the per-binding series: names, labels, help
 * texts, /bindings/stats, Prometheus's own lint (promtool), threads. */
#include "binding/binding_metrics.h"

#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

static void test_empty_stats(void **state)
{
    struct metrics_registry *reg = metrics_registry_new();
    struct binding_metrics_set *set = binding_metrics_set_new(reg);
    struct buf out = BUF_INIT(0);

    (void)state;
    assert_non_null(set);
    assert_ptr_equal(binding_metrics_registry(set), reg);
    assert_int_equal(binding_metrics_stats_json(set, &out), 0);
    assert_string_equal(buf_str(&out), "[]");
    buf_reset(&out);
    assert_int_equal(binding_metrics_stats_json(NULL, &out), 0);
    assert_string_equal(buf_str(&out), "[]");
    assert_null(binding_metrics_register(NULL, "b1", "kubemq.query", "aws.kinesis"));
    binding_metrics_report(NULL, 1, 1, 1, 1);
    binding_metrics_aws_error(NULL, "X");
    buf_free(&out);
    binding_metrics_set_free(set);
    binding_metrics_set_free(NULL);
    metrics_registry_free(reg);
}

static void test_binding_series(void **state)
{
    struct metrics_registry *reg = metrics_registry_new();
    struct binding_metrics_set *set = binding_metrics_set_new(reg);
    const struct binding_metrics *b1, *b2;
    struct buf out = BUF_INIT(0);
    json_t *stats;

    (void)state;
    b1 = binding_metrics_register(set, "b1", "kubemq.query", "aws.kinesis");
    b2 = binding_metrics_register(set, "b2", "kubemq.queue", "aws.kinesis");
    assert_non_null(b1);
    assert_non_null(b2);
    assert_ptr_equal(binding_metrics_register(set, "b1", "kubemq.query", "aws.kinesis"), b1);

    binding_metrics_report(b1, 100, 1, 40, 0);
    binding_metrics_report(b1, 10, 0, 0, 1);
    binding_metrics_report(b2, 7, 1, 0, 1);
    binding_metrics_aws_error(b1, "ThrottlingException");
    binding_metrics_aws_error(b1, "ThrottlingException");
    binding_metrics_aws_error(b2, NULL);
    metrics_counter_add(b1->retries, 2);
    metrics_gauge_add(b1->in_flight, 1);
    metrics_histogram_observe(b1->duration, 0.003);

    assert_int_equal(binding_metrics_stats_json(set, &out), 0);
    assert_string_equal(buf_str(&out),
                        "[{\"binding\":\"b1\",\"source_kind\":\"kubemq.query\","
                        "\"target_kind\":\"aws.kinesis\",\"request_count\":2,"
                        "\"request_volume\":110,\"response_count\":1,\"response_volume\":40,"
                        "\"errors_count\":1},"
                        "{\"binding\":\"b2\",\"source_kind\":\"kubemq.queue\","
                        "\"target_kind\":\"aws.kinesis\",\"request_count\":1,"
                        "\"request_volume\":7,\"response_count\":1,\"response_volume\":0,"
                        "\"errors_count\":1}]");
    stats = json_loadb(out.data, out.len, 0, NULL);
    assert_true(json_is_array(stats));
    json_decref(stats);

    buf_reset(&out);
    assert_int_equal(metrics_render_prometheus(reg, &out), 0);
    /* kubemq-targets' names, labels and help texts. */
    assert_non_null(strstr(buf_str(&out),
                           "# HELP kubemq_targets_requests_count counts requests per "
                           "binding,source and target types\n"
                           "# TYPE kubemq_targets_requests_count counter\n"
                           "kubemq_targets_requests_count{binding=\"b1\",source_kind=\"kubemq."
                           "query\",target_kind=\"aws.kinesis\"} 2\n"
                           "kubemq_targets_requests_count{binding=\"b2\",source_kind=\"kubemq."
                           "queue\",target_kind=\"aws.kinesis\"} 1\n"));
    assert_non_null(strstr(buf_str(&out), "kubemq_targets_requests_volume{binding=\"b1\","
                                          "source_kind=\"kubemq.query\",target_kind=\"aws."
                                          "kinesis\"} 110\n"));
    assert_non_null(strstr(buf_str(&out), "kubemq_targets_responses_volume{binding=\"b1\","
                                          "source_kind=\"kubemq.query\",target_kind=\"aws."
                                          "kinesis\"} 40\n"));
    assert_non_null(strstr(buf_str(&out), "kubemq_targets_errors_count{binding=\"b2\","
                                          "source_kind=\"kubemq.queue\",target_kind=\"aws."
                                          "kinesis\"} 1\n"));
    assert_non_null(strstr(buf_str(&out), "# TYPE kubemq_kinesis_request_duration_seconds "
                                          "histogram\n"
                                          "kubemq_kinesis_request_duration_seconds_bucket{"
                                          "binding=\"b1\",source_kind=\"kubemq.query\","
                                          "target_kind=\"aws.kinesis\",le=\"0.005\"} 1\n"));
    assert_non_null(strstr(buf_str(&out), "kubemq_kinesis_request_duration_seconds_count{"
                                          "binding=\"b2\",source_kind=\"kubemq.queue\","
                                          "target_kind=\"aws.kinesis\"} 0\n"));
    assert_non_null(strstr(buf_str(&out), "# TYPE kubemq_kinesis_in_flight gauge\n"
                                          "kubemq_kinesis_in_flight{binding=\"b1\","
                                          "source_kind=\"kubemq.query\",target_kind=\"aws."
                                          "kinesis\"} 1\n"));
    assert_non_null(strstr(buf_str(&out), "kubemq_kinesis_retries_total{binding=\"b1\","
                                          "source_kind=\"kubemq.query\",target_kind=\"aws."
                                          "kinesis\"} 2\n"));
    assert_non_null(strstr(buf_str(&out), "# TYPE kubemq_kinesis_aws_errors_total counter\n"
                                          "kubemq_kinesis_aws_errors_total{binding=\"b1\","
                                          "error_type=\"ThrottlingException\"} 2\n"
                                          "kubemq_kinesis_aws_errors_total{binding=\"b2\","
                                          "error_type=\"unknown\"} 1\n"));
    buf_free(&out);
    binding_metrics_set_free(set);
    metrics_registry_free(reg);
}

/* Run promtool on the text; returns its exit status, output in out. */
static int promtool_check(const char *text, char *out, size_t cap)
{
    char path[] = "/tmp/kk-binding-metrics-XXXXXX", cmd[256];
    int fd = mkstemp(path), st;
    size_t n = 0, len = strlen(text);
    FILE *p;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    snprintf(cmd, sizeof(cmd), "%s check metrics < %s 2>&1", KK_PROMTOOL, path);
    p = popen(cmd, "r");
    assert_non_null(p);
    n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    st = pclose(p);
    unlink(path);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

/* kubemq-targets' counter names break promtool's naming lint (no _total,
 * a _count suffix); they are kept for compatibility with that connector's
 * dashboards. Every other family must be lint-clean. */
static void test_prometheus_lint(void **state)
{
    static const char *const allowed[] = {
        "kubemq_targets_requests_count ",  "kubemq_targets_requests_volume ",
        "kubemq_targets_responses_count ", "kubemq_targets_responses_volume ",
        "kubemq_targets_errors_count ",
    };
    struct metrics_registry *reg = metrics_registry_new();
    struct binding_metrics_set *set = binding_metrics_set_new(reg);
    const struct binding_metrics *mb, *odd;
    struct buf out = BUF_INIT(0);
    char lint[8192];
    const char *line;
    int rc;

    (void)state;
    mb = binding_metrics_register(set, "b1", "kubemq.query", "aws.kinesis");
    odd = binding_metrics_register(set, "we\"ird\\b\nname", "kubemq.command", "aws.kinesis");
    assert_non_null(mb);
    assert_non_null(odd);
    binding_metrics_report(mb, 120, 1, 300, 0);
    binding_metrics_report(mb, 80, 1, 50, 1);
    binding_metrics_report(odd, 10, 0, 0, 1);
    binding_metrics_aws_error(mb, "ProvisionedThroughputExceededException");
    metrics_histogram_observe(mb->duration, 0.012);
    metrics_histogram_observe(mb->duration, 3.5);
    metrics_gauge_add(mb->in_flight, 2);
    metrics_counter_add(mb->retries, 1);
    assert_int_equal(metrics_render_prometheus(reg, &out), 0);
    assert_non_null(strstr(buf_str(&out), "binding=\"we\\\"ird\\\\b\\nname\""));

    /* Exit 3: parsed, with lint findings (1 would be a parse error). */
    rc = promtool_check(buf_str(&out), lint, sizeof(lint));
    if (rc != 3) {
        fail_msg("promtool exit %d: %s", rc, lint);
    }
    assert_non_null(strstr(lint, "kubemq_targets_requests_count counter metrics should have"));
    for (line = lint; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line), i;
        int ok = 0;

        for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
            ok |= strncmp(line, allowed[i], strlen(allowed[i])) == 0;
        }
        if (len > 0 && !ok) {
            fail_msg("promtool: %.*s", (int)len, line);
        }
        line += len + (nl ? 1 : 0);
    }
    buf_free(&out);
    binding_metrics_set_free(set);
    metrics_registry_free(reg);
}

#define THREAD_ROUNDS 200000

struct worker {
    const struct binding_metrics *mb;
    struct metrics_registry *reg;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    int i;

    for (i = 0; i < THREAD_ROUNDS; i++) {
        metrics_gauge_add(w->mb->in_flight, 1);
        binding_metrics_report(w->mb, 3, 1, 2, i % 2);
        metrics_histogram_observe(w->mb->duration, 0.5);
        metrics_gauge_add(w->mb->in_flight, -1);
        if (i % 1000 == 0) {
            /* registration and rendering race the increments */
            struct buf out = BUF_INIT(0);

            binding_metrics_aws_error(w->mb, i % 2000 ? "A" : "B");
            metrics_render_prometheus(w->reg, &out);
            buf_free(&out);
        }
    }
    return NULL;
}

static void test_two_threads(void **state)
{
    struct metrics_registry *reg = metrics_registry_new();
    struct binding_metrics_set *set = binding_metrics_set_new(reg);
    struct worker w;
    pthread_t t1, t2;

    (void)state;
    w.reg = reg;
    w.mb = binding_metrics_register(set, "b", "kubemq.events", "aws.kinesis");
    assert_non_null(w.mb);
    assert_int_equal(pthread_create(&t1, NULL, worker_run, &w), 0);
    assert_int_equal(pthread_create(&t2, NULL, worker_run, &w), 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    assert_int_equal(metrics_counter_get(w.mb->requests_count), 2 * THREAD_ROUNDS);
    assert_int_equal(metrics_counter_get(w.mb->requests_volume), 6 * THREAD_ROUNDS);
    assert_int_equal(metrics_counter_get(w.mb->responses_count), 2 * THREAD_ROUNDS);
    assert_int_equal(metrics_counter_get(w.mb->responses_volume), 4 * THREAD_ROUNDS);
    assert_int_equal(metrics_counter_get(w.mb->errors_count), THREAD_ROUNDS);
    assert_int_equal(metrics_gauge_get(w.mb->in_flight), 0);
    assert_int_equal(metrics_histogram_count(w.mb->duration), 2 * THREAD_ROUNDS);
    /* 0.5 sums exactly in binary. */
    assert_true(metrics_histogram_sum(w.mb->duration) == 0.5 * 2 * THREAD_ROUNDS);
    binding_metrics_set_free(set);
    metrics_registry_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_stats),
        cmocka_unit_test(test_binding_series),
        cmocka_unit_test(test_prometheus_lint),
        cmocka_unit_test(test_two_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
