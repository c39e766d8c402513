/* test_middleware.c - the binding middleware chain against a fake target:
 * metadata defaults, retry, delays, rate limit, in-flight, metrics, log. */
#include "base/b64.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/metrics.h"
#include "binding/binding_metrics.h"
#include "binding/middleware.h"
#include "binding/middleware_internal.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- fake target ------------------------------------------------------ */

#define FAKE_MAX_CALLS 2000

struct fake {
    struct loop *loop;
    int calls;
    int fail_n;           /* the first fail_n calls fail */
    int retryable;        /* ... with reply->retryable set to this */
    int async_ms;         /* -1: complete inside execute; else on a timer */
    const char *err;      /* error text, default "FakeThrottle: call N failed" */
    const char *err_type; /* the reply's error_type on failures (an AWS error) */
    uint64_t call_us[FAKE_MAX_CALLS];
    char seen_method[64], seen_stream[64], seen_key[64];
    char seen_seq[FAKE_MAX_CALLS][8];
    int pending;
};

struct fake_call {
    struct fake *f;
    struct loop_timer timer;
    target_done_fn done;
    void *ctx;
};

static void copy_meta(char *dst, size_t n, const struct envelope_request *req, const char *k)
{
    const char *v = envelope_meta(req, k);

    snprintf(dst, n, "%s", v ? v : "");
}

static void fake_fire(void *arg)
{
    struct fake_call *fc = arg;

    fc->f->pending--;
    fc->done(fc->ctx);
    free(fc);
}

static void fake_execute(void *instance, const struct envelope_request *req,
                         struct envelope_reply *reply, target_done_fn done, void *ctx)
{
    struct fake *f = instance;
    int n = ++f->calls;
    struct fake_call *fc;

    assert_false(reply->is_error); /* the chain hands each attempt a fresh reply */
    assert_int_equal(reply->error.len, 0);
    assert_string_equal(reply->error_type, "");
    if (n <= FAKE_MAX_CALLS) {
        f->call_us[n - 1] = clock_mono_us();
        copy_meta(f->seen_seq[n - 1], sizeof(f->seen_seq[0]), req, "seq");
    }
    copy_meta(f->seen_method, sizeof(f->seen_method), req, "method");
    copy_meta(f->seen_stream, sizeof(f->seen_stream), req, "stream_name");
    copy_meta(f->seen_key, sizeof(f->seen_key), req, "partition_key");
    if (n <= f->fail_n) {
        if (f->err) {
            envelope_reply_set_error(reply, "%s", f->err);
        } else {
            envelope_reply_set_error(reply, "FakeThrottle: call %d failed", n);
        }
        reply->retryable = f->retryable;
        if (f->err_type) {
            snprintf(reply->error_type, sizeof(reply->error_type), "%s", f->err_type);
        }
    } else {
        envelope_reply_meta_set(reply, "result", "ok");
        envelope_reply_set_data(reply, "{\"SequenceNumber\":\"42\"}", 23);
    }
    if (f->async_ms < 0) {
        done(ctx);
        return;
    }
    fc = calloc(1, sizeof(*fc));
    assert_non_null(fc);
    fc->f = f;
    fc->done = done;
    fc->ctx = ctx;
    loop_timer_init(&fc->timer);
    f->pending++;
    loop_timer_start(f->loop, &fc->timer, (uint64_t)f->async_ms, fake_fire, fc);
}

static const struct target_kind fake_kind = {
    "fake", NULL, NULL, NULL, NULL, NULL, fake_execute, NULL,
};

/* ---- fixture ---------------------------------------------------------- */

struct req {
    struct envelope_request req;
    struct envelope_reply reply;
    int done;
    int order;
    int *counter;
};

struct fix {
    struct loop *loop;
    struct fake fake;
    struct metrics_registry *reg;
    struct binding_metrics_set *set;
    const struct binding_metrics *mb;
    struct middleware_options o;
    struct middleware *m;
    struct req r; /* retry_run's request */
    int r_used;
    int counter;
};

static void opts_default(struct middleware_options *o)
{
    memset(o, 0, sizeof(*o));
    o->log_level = MIDDLEWARE_LOG_NONE;
    o->retry_attempts = 1;
    o->retry_delay_ms = 0;
    o->retry_max_jitter_ms = 0;
    o->retry_delay_type = MIDDLEWARE_RETRY_FIXED;
    o->rate_per_second = 0;
    o->metadata = (char *)"";
}

static int setup(void **state)
{
    struct fix *x = calloc(1, sizeof(*x));
    char err[256];

    assert_non_null(x);
    x->loop = loop_create(err, sizeof(err));
    assert_non_null(x->loop);
    x->fake.loop = x->loop;
    x->fake.async_ms = -1;
    x->reg = metrics_registry_new();
    x->set = binding_metrics_set_new(x->reg);
    x->mb = binding_metrics_register(x->set, "b1", "kubemq.query", "fake");
    assert_non_null(x->mb);
    opts_default(&x->o);
    *state = x;
    return 0;
}

static void req_free(struct req *r);

static int teardown(void **state)
{
    struct fix *x = *state;

    middleware_destroy(x->m);
    if (x->r_used) {
        req_free(&x->r);
    }
    loop_destroy(x->loop);
    binding_metrics_set_free(x->set);
    metrics_registry_free(x->reg);
    log_set_fd(-1);
    free(x);
    return 0;
}

static void build(struct fix *x)
{
    char err[256] = "";

    x->m = middleware_create(x->loop, &x->o, "b1", &fake_kind, &x->fake, x->mb, err, sizeof(err));
    if (!x->m) {
        fail_msg("middleware_create: %s", err);
    }
}

static void on_done(void *ctx)
{
    struct req *r = ctx;

    assert_int_equal(r->done, 0); /* exactly once */
    r->done = 1;
    r->order = ++*r->counter;
}

static void req_init(struct req *r, int *counter, const char *method, const char *data)
{
    memset(r, 0, sizeof(*r));
    envelope_request_init(&r->req);
    envelope_reply_init(&r->reply);
    r->counter = counter;
    if (method) {
        assert_int_equal(envelope_meta_set(&r->req, "method", method), 0);
    }
    if (data) {
        assert_int_equal(buf_set(&r->req.data, data, strlen(data)), 0);
        r->req.has_data = 1;
    }
}

static void req_free(struct req *r)
{
    envelope_request_free(&r->req);
    envelope_reply_free(&r->reply);
}

static void run_until(struct fix *x, struct req *rs, size_t n)
{
    uint64_t deadline = clock_mono_us() + 20 * 1000000ull;
    size_t i;

    for (;;) {
        for (i = 0; i < n && rs[i].done; i++) {
        }
        if (i == n) {
            return;
        }
        if (clock_mono_us() > deadline) {
            fail_msg("requests did not finish within 20 s");
        }
        assert_int_equal(loop_run_once(x->loop, 50), 0);
    }
}

static void run_one(struct fix *x, struct req *r)
{
    middleware_execute(x->m, &r->req, &r->reply, on_done, r);
    run_until(x, r, 1);
}

/* ---- metadata defaults ----------------------------------------------- */

static void test_metadata_defaults(void **state)
{
    struct fix *x = *state;
    struct req r;
    int counter = 0;

    x->o.metadata = (char *)"{\"method\":\"put_record\",\"stream_name\":\"s1\","
                            "\"partition_key\":\"pk\"}";
    build(x);
    /* Caller's method wins; an empty stream_name is filled; absent key filled. */
    req_init(&r, &counter, "get_records", "x");
    assert_int_equal(envelope_meta_set(&r.req, "stream_name", ""), 0);
    run_one(x, &r);
    assert_string_equal(x->fake.seen_method, "get_records");
    assert_string_equal(x->fake.seen_stream, "s1");
    assert_string_equal(x->fake.seen_key, "pk");
    req_free(&r);

    /* Nothing given: all defaults. */
    req_init(&r, &counter, NULL, "x");
    assert_int_equal(envelope_meta_set(&r.req, "partition_key", "mine"), 0);
    run_one(x, &r);
    assert_string_equal(x->fake.seen_method, "put_record");
    assert_string_equal(x->fake.seen_stream, "s1");
    assert_string_equal(x->fake.seen_key, "mine");
    assert_false(r.reply.is_error);
    req_free(&r);
}

static void test_create_rejects_bad_options(void **state)
{
    struct fix *x = *state;
    char err[256] = "";

    x->o.metadata = (char *)"{\"a\":1}";
    assert_null(
        middleware_create(x->loop, &x->o, "b1", &fake_kind, &x->fake, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "metadata: value of \"a\" must be a string"));
    x->o.metadata = (char *)"[1]";
    assert_null(
        middleware_create(x->loop, &x->o, "b1", &fake_kind, &x->fake, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "binding b1: metadata"));
    x->o.metadata = (char *)"";
    x->o.retry_attempts = 0;
    assert_null(
        middleware_create(x->loop, &x->o, "b1", &fake_kind, &x->fake, NULL, err, sizeof(err)));
    middleware_destroy(NULL);
    assert_int_equal(middleware_in_flight(NULL), 0);
}

/* ---- retry ------------------------------------------------------------ */

/* Build the chain on x->o and run one put_record through a fake that fails
 * its first fail_n calls; the fixture owns the request (x->r). */
static const struct envelope_reply *retry_run(struct fix *x, long long attempts, int fail_n,
                                              int retryable)
{
    x->o.retry_attempts = attempts;
    x->fake.fail_n = fail_n;
    x->fake.retryable = retryable;
    if (!x->m) {
        build(x);
    }
    req_init(&x->r, &x->counter, "put_record", "abc");
    x->r_used = 1;
    run_one(x, &x->r);
    return &x->r.reply;
}

static const char *error_of(const struct envelope_reply *reply)
{
    assert_true(reply->is_error);
    return buf_str(&reply->error);
}

static void test_retry_until_success(void **state)
{
    struct fix *x = *state;
    const struct envelope_reply *reply;

    x->fake.async_ms = 1; /* the asynchronous path */
    reply = retry_run(x, 3, 2, 1);
    assert_int_equal(x->fake.calls, 3);
    assert_false(reply->is_error);
    assert_string_equal(json_string_value(json_object_get(reply->metadata, "result")), "ok");
    assert_int_equal(metrics_counter_get(x->mb->retries), 2);
    assert_int_equal(metrics_counter_get(x->mb->requests_count), 1);
    assert_int_equal(metrics_counter_get(x->mb->errors_count), 0);
    assert_int_equal(middleware_in_flight(x->m), 0);
}

static void test_retry_exhausted(void **state)
{
    struct fix *x = *state;

    /* the last attempt's error, not an accumulation */
    assert_string_equal(error_of(retry_run(x, 2, 100, 1)),
                        "FakeThrottle: call 2 failed (after 2 attempts)");
    assert_int_equal(x->fake.calls, 2);
    assert_int_equal(metrics_counter_get(x->mb->retries), 1);
    assert_int_equal(metrics_counter_get(x->mb->errors_count), 1);
}

static void test_not_retryable(void **state)
{
    struct fix *x = *state;

    x->fake.err = "stream_name: is required for put_record";
    assert_string_equal(error_of(retry_run(x, 5, 100, 0)),
                        "stream_name: is required for put_record");
    assert_int_equal(x->fake.calls, 1);
    assert_int_equal(metrics_counter_get(x->mb->retries), 0);
}

static void test_single_attempt_error_plain(void **state)
{
    struct fix *x = *state;

    /* no "All attempts fail" wrapping and no attempt count */
    assert_string_equal(error_of(retry_run(x, 1, 1, 1)), "FakeThrottle: call 1 failed");
    assert_int_equal(x->fake.calls, 1);
}

/* Many synchronous retries with no delay: loop timers, no recursion. */
static void test_many_sync_retries(void **state)
{
    struct fix *x = *state;

    assert_false(retry_run(x, 1000, 999, 1)->is_error);
    assert_int_equal(x->fake.calls, 1000);
    assert_int_equal(metrics_counter_get(x->mb->retries), 999);
}

static uint64_t aws_errors(struct fix *x, const char *type)
{
    const char *values[] = {"b1", type};

    return metrics_counter_get(metrics_series_get(x->mb->aws_errors, values));
}

/* Every attempt that failed with an AWS error counts under its type;
 * failures without one (validation) count as none. */
static void test_aws_error_metrics(void **state)
{
    struct fix *x = *state;
    struct buf text = BUF_INIT(0);

    x->fake.err_type = "ProvisionedThroughputExceededException";
    assert_false(retry_run(x, 3, 2, 1)->is_error);
    assert_int_equal(aws_errors(x, "ProvisionedThroughputExceededException"), 2);
    req_free(&x->r);
    x->fake.calls = 0;
    x->fake.err_type = "ResourceNotFoundException";
    assert_true(retry_run(x, 3, 1, 0)->is_error);
    assert_int_equal(aws_errors(x, "ResourceNotFoundException"), 1);
    assert_int_equal(aws_errors(x, "ProvisionedThroughputExceededException"), 2);
    req_free(&x->r);
    x->fake.calls = 0;
    x->fake.err_type = NULL;
    assert_true(retry_run(x, 3, 1, 0)->is_error);
    assert_int_equal(aws_errors(x, "unknown"), 0);
    assert_int_equal(metrics_render_prometheus(x->reg, &text), 0);
    assert_non_null(strstr(buf_str(&text), "kubemq_kinesis_aws_errors_total{binding=\"b1\","
                                           "error_type=\"ResourceNotFoundException\"} 1\n"));
    buf_free(&text);
}

static void test_no_metrics_binding(void **state)
{
    struct fix *x = *state;
    char err[256];

    x->o.retry_attempts = 2;
    x->m = middleware_create(x->loop, &x->o, "b1", &fake_kind, &x->fake, NULL, err, sizeof(err));
    assert_non_null(x->m);
    assert_false(retry_run(x, 2, 1, 1)->is_error); /* retried without metrics */
    assert_int_equal(x->fake.calls, 2);
}

/* ---- delays ------------------------------------------------------------ */

static void test_delay_values(void **state)
{
    struct random_prng rng;
    uint64_t d, lo = UINT64_MAX, hi = 0;
    int i;

    (void)state;
    random_prng_seed_with(&rng, 12345);
    /* back-off: the delay, doubling per retry, capped */
    assert_int_equal(middleware_retry_delay_ms(MIDDLEWARE_RETRY_BACKOFF, 100, 0, 1, &rng), 100);
    assert_int_equal(middleware_retry_delay_ms(MIDDLEWARE_RETRY_BACKOFF, 100, 0, 2, &rng), 200);
    assert_int_equal(middleware_retry_delay_ms(MIDDLEWARE_RETRY_BACKOFF, 100, 0, 4, &rng), 800);
    assert_int_equal(middleware_retry_delay_ms(MIDDLEWARE_RETRY_BACKOFF, 1000, 0, 30, &rng),
                     MIDDLEWARE_BACKOFF_CAP_MS);
    assert_int_equal(middleware_retry_delay_ms(MIDDLEWARE_RETRY_BACKOFF, 100000, 0, 5, &rng),
                     100000);
    assert_int_equal(middleware_retry_delay_ms(MIDDLEWARE_RETRY_BACKOFF, 0, 0, 5, &rng), 0);
    /* fixed: the delay itself, every time (kubemq-targets slept 100 ms) */
    assert_int_equal(middleware_retry_delay_ms(MIDDLEWARE_RETRY_FIXED, 1000, 0, 1, &rng), 1000);
    assert_int_equal(middleware_retry_delay_ms(MIDDLEWARE_RETRY_FIXED, 1000, 0, 7, &rng), 1000);
    /* random: uniform in [0, delay], both ends reached over many draws */
    for (i = 0; i < 5000; i++) {
        d = middleware_retry_delay_ms(MIDDLEWARE_RETRY_RANDOM, 100, 0, 1, &rng);
        assert_true(d <= 100);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(lo <= 5);
    assert_true(hi >= 95);
    /* jitter: [0, jitter) on top of each type */
    lo = UINT64_MAX;
    hi = 0;
    for (i = 0; i < 5000; i++) {
        d = middleware_retry_delay_ms(MIDDLEWARE_RETRY_BACKOFF, 100, 50, 2, &rng);
        assert_true(d >= 200 && d < 250);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
        d = middleware_retry_delay_ms(MIDDLEWARE_RETRY_FIXED, 10, 1, 3, &rng);
        assert_int_equal(d, 10); /* jitter 1: [0, 1) is 0 */
    }
    assert_true(lo <= 203);
    assert_true(hi >= 246);
}

/* Lower bounds only (a busy machine is slower, never faster); 1 ms of
 * timer rounding allowed. */
static void assert_gap(const struct fix *x, int call, uint64_t min_ms)
{
    uint64_t gap = x->fake.call_us[call] - x->fake.call_us[call - 1];

    if (gap + 1000 < min_ms * 1000) {
        fail_msg("call %d came %llu us after the one before, expected >= %llu ms", call + 1,
                 (unsigned long long)gap, (unsigned long long)min_ms);
    }
}

static void test_delays_on_the_loop(void **state)
{
    struct fix *x = *state;

    /* back-off 40 ms: gaps of at least 40 and 80 ms between the calls */
    x->o.retry_delay_type = MIDDLEWARE_RETRY_BACKOFF;
    x->o.retry_delay_ms = 40;
    x->o.retry_max_jitter_ms = 10;
    assert_false(retry_run(x, 3, 2, 1)->is_error);
    assert_int_equal(x->fake.calls, 3);
    assert_gap(x, 1, 40);
    assert_gap(x, 2, 80);
}

static void test_fixed_delay_on_the_loop(void **state)
{
    struct fix *x = *state;

    x->o.retry_delay_type = MIDDLEWARE_RETRY_FIXED;
    x->o.retry_delay_ms = 60;
    assert_non_null(strstr(error_of(retry_run(x, 3, 5, 1)), "(after 3 attempts)"));
    assert_int_equal(x->fake.calls, 3);
    assert_gap(x, 1, 60);
    assert_gap(x, 2, 60);
}

/* ---- rate limit ---------------------------------------------------------- */

static void test_bucket(void **state)
{
    struct middleware_bucket b;
    uint64_t t = 1000000;

    (void)state;
    middleware_bucket_init(&b, 50, t);
    assert_int_equal(middleware_bucket_take(&b, t), 0); /* starts with one token */
    assert_true(middleware_bucket_take(&b, t) >= 19000);
    assert_true(middleware_bucket_take(&b, t + 10000) >= 9000);
    assert_int_equal(middleware_bucket_take(&b, t + 20000), 0);
    /* idle time does not bank more than the burst (1 at this rate) */
    assert_int_equal(middleware_bucket_take(&b, t + 5000000), 0);
    assert_true(middleware_bucket_take(&b, t + 5000000) > 0);
    /* high rates: a burst of 10 ms worth */
    middleware_bucket_init(&b, 100000, t);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(middleware_bucket_take(&b, t), 0);
    }
    assert_true(middleware_bucket_take(&b, t) > 0);
}

static void test_rate_limit_spacing_fifo(void **state)
{
    struct fix *x = *state;
    struct req rs[10];
    char seq[8];
    int counter = 0, i;

    x->o.rate_per_second = 50;
    build(x);
    for (i = 0; i < 10; i++) {
        req_init(&rs[i], &counter, "put_record", "abc");
        snprintf(seq, sizeof(seq), "%d", i);
        envelope_meta_set(&rs[i].req, "seq", seq);
        middleware_execute(x->m, &rs[i].req, &rs[i].reply, on_done, &rs[i]);
    }
    /* the first passes at once, the rest wait their turn */
    assert_int_equal(x->fake.calls, 1);
    assert_int_equal(middleware_in_flight(x->m), 9);
    run_until(x, rs, 10);
    assert_int_equal(x->fake.calls, 10);
    for (i = 0; i < 10; i++) {
        snprintf(seq, sizeof(seq), "%d", i);
        assert_string_equal(x->fake.seen_seq[i], seq); /* FIFO */
        assert_int_equal(rs[i].order, i + 1);
        assert_false(rs[i].reply.is_error);
        req_free(&rs[i]);
    }
    /* 50/s: 9 gaps of 20 ms (1 ms of timer rounding allowed per gap) */
    assert_true(x->fake.call_us[9] - x->fake.call_us[0] >= 171000);
    for (i = 1; i < 10; i++) {
        assert_gap(x, i, 20);
    }
}

/* The limiter is consulted once per attempt: retries wait for tokens too. */
static void test_rate_limit_counts_retries(void **state)
{
    struct fix *x = *state;

    x->o.rate_per_second = 20;
    assert_false(retry_run(x, 3, 2, 1)->is_error);
    assert_int_equal(x->fake.calls, 3);
    assert_gap(x, 1, 50);
    assert_gap(x, 2, 50);
}

/* ---- in flight and metrics -------------------------------------------------- */

static void test_in_flight_and_metrics(void **state)
{
    struct fix *x = *state;
    struct req rs[4];
    int counter = 0, i;

    x->fake.async_ms = 30;
    x->fake.fail_n = 1; /* the first request fails (not retryable) */
    build(x);
    for (i = 0; i < 4; i++) {
        req_init(&rs[i], &counter, "put_record", i == 3 ? NULL : "12345");
        middleware_execute(x->m, &rs[i].req, &rs[i].reply, on_done, &rs[i]);
    }
    assert_int_equal(middleware_in_flight(x->m), 4);
    assert_int_equal(metrics_gauge_get(x->mb->in_flight), 4);
    run_until(x, rs, 4);
    assert_int_equal(middleware_in_flight(x->m), 0);
    assert_int_equal(metrics_gauge_get(x->mb->in_flight), 0);
    assert_int_equal(metrics_counter_get(x->mb->requests_count), 4);
    assert_int_equal(metrics_counter_get(x->mb->requests_volume), 15);
    assert_int_equal(metrics_counter_get(x->mb->responses_count), 3);
    assert_int_equal(metrics_counter_get(x->mb->responses_volume), 3 * 23);
    assert_int_equal(metrics_counter_get(x->mb->errors_count), 1);
    assert_int_equal(metrics_histogram_count(x->mb->duration), 4);
    /* each took the fake's 30 ms at least */
    assert_true(metrics_histogram_sum(x->mb->duration) >= 4 * 0.029);
    assert_true(rs[0].reply.is_error);
    for (i = 0; i < 4; i++) {
        req_free(&rs[i]);
    }
}

/* ---- destroy with requests still inside ------------------------------------ */

static void test_destroy_while_waiting(void **state)
{
    struct fix *x = *state;
    struct req rs[3];
    int counter = 0, i;

    x->o.rate_per_second = 1;
    x->fake.async_ms = 20;
    build(x);
    for (i = 0; i < 3; i++) {
        req_init(&rs[i], &counter, "put_record", "abc");
        middleware_execute(x->m, &rs[i].req, &rs[i].reply, on_done, &rs[i]);
    }
    assert_int_equal(x->fake.calls, 1);
    middleware_destroy(x->m); /* two queued: answered now; one in the target */
    x->m = NULL;
    assert_false(rs[0].done);
    assert_true(rs[1].done && rs[2].done);
    assert_string_equal(buf_str(&rs[1].reply.error),
                        "binding b1 stopped before the request was sent");
    run_until(x, rs, 1); /* the target completes the first; the chain is freed */
    assert_false(rs[0].reply.is_error);
    assert_int_equal(x->fake.calls, 1);
    for (i = 0; i < 3; i++) {
        req_free(&rs[i]);
    }
}

/* ---- log ------------------------------------------------------------------------ */

static char *read_all(int fd)
{
    struct buf b = BUF_INIT(1 << 20);
    char chunk[4096];
    ssize_t n;

    lseek(fd, 0, SEEK_SET);
    while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
        buf_append(&b, chunk, (size_t)n);
    }
    buf_append_char(&b, '\0');
    return buf_detach(&b, NULL);
}

static int count_lines(const char *s)
{
    int n = 0;

    for (; *s; s++) {
        n += *s == '\n';
    }
    return n;
}

/* Runs one success and one failure at log_level; returns the log text. */
static char *log_run(struct fix *x, int level)
{
    char path[] = "/tmp/kk-test-mw-XXXXXX";
    int fd = mkstemp(path);
    struct req ok, bad;
    int counter = 0;
    char *text;

    assert_true(fd >= 0);
    unlink(path);
    log_setup(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    log_set_fd(fd);
    x->o.log_level = level;
    x->o.retry_attempts = 2;
    x->o.metadata = (char *)"{\"stream_name\":\"s1\"}";
    x->fake.calls = 0;
    x->fake.fail_n = 0;
    x->fake.retryable = 1;
    x->fake.err = "FakeThrottle: slow\ndown";
    build(x);
    req_init(&ok, &counter, "put_record", "TOPSECRETDATA");
    run_one(x, &ok);
    x->fake.fail_n = x->fake.calls + 2;
    req_init(&bad, &counter, "put_record", "TOPSECRETDATA");
    run_one(x, &bad);
    assert_true(bad.reply.is_error);
    log_set_fd(-1);
    text = read_all(fd);
    close(fd);
    req_free(&ok);
    req_free(&bad);
    middleware_destroy(x->m);
    x->m = NULL;
    return text;
}

static void assert_no_data(const char *text)
{
    struct buf b64 = BUF_INIT(0);

    assert_null(strstr(text, "TOPSECRETDATA"));
    b64_encode("TOPSECRETDATA", 13, &b64);
    assert_null(strstr(text, buf_str(&b64)));
    buf_free(&b64);
}

static void test_log_levels(void **state)
{
    struct fix *x = *state;
    char *t;

    t = log_run(x, MIDDLEWARE_LOG_NONE);
    assert_string_equal(t, "");
    free(t);

    t = log_run(x, MIDDLEWARE_LOG_INFO);
    /* success, one retry warning, the failure: three whole lines */
    assert_int_equal(count_lines(t), 3);
    assert_non_null(strstr(t, "info  [b1] request ok: method=put_record stream=s1 ("));
    assert_non_null(strstr(t, "warn  [b1] attempt 1 of 2 failed, retrying in 0 ms: "
                              "method=put_record stream=s1: FakeThrottle: slow down"));
    assert_non_null(strstr(t, "error [b1] request failed: method=put_record stream=s1 ("));
    assert_non_null(strstr(t, "ms): FakeThrottle: slow down (after 2 attempts)"));
    assert_null(strstr(t, "metadata"));
    assert_no_data(t);
    free(t);

    t = log_run(x, MIDDLEWARE_LOG_ERROR);
    assert_int_equal(count_lines(t), 1);
    assert_null(strstr(t, "request ok"));
    assert_non_null(strstr(t, "error [b1] request failed: method=put_record stream=s1 ("));
    assert_no_data(t);
    free(t);

    t = log_run(x, MIDDLEWARE_LOG_DEBUG);
    assert_int_equal(count_lines(t), 3);
    assert_non_null(strstr(t, "request ok: method=put_record stream=s1 ("));
    assert_non_null(strstr(t,
                           "request metadata {\"method\":\"put_record\",\"stream_name\":\"s1\"}, "
                           "13 bytes of data (base64) VE9QU0VDUkVUREFUQQ==; reply metadata "
                           "{\"result\":\"ok\"}, 23 bytes of data \"{\\\"SequenceNumber"));
    free(t);
}

/* Hostile metadata cannot split a log line. */
static void test_log_quotes_values(void **state)
{
    struct fix *x = *state;
    char path[] = "/tmp/kk-test-mw-XXXXXX";
    int fd = mkstemp(path);
    struct req r;
    int counter = 0;
    char *t;

    assert_true(fd >= 0);
    unlink(path);
    log_setup(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    log_set_fd(fd);
    x->o.log_level = MIDDLEWARE_LOG_INFO;
    build(x);
    req_init(&r, &counter, "put\nrecord", NULL);
    run_one(x, &r);
    log_set_fd(-1);
    t = read_all(fd);
    close(fd);
    assert_int_equal(count_lines(t), 1);
    assert_non_null(strstr(t, "request ok: method=\"put\\nrecord\" ("));
    free(t);
    req_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metadata_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_rejects_bad_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_until_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_exhausted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_retryable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_single_attempt_error_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_sync_retries, setup, teardown),
        cmocka_unit_test(test_delay_values),
        cmocka_unit_test_setup_teardown(test_delays_on_the_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fixed_delay_on_the_loop, setup, teardown),
        cmocka_unit_test(test_bucket),
        cmocka_unit_test_setup_teardown(test_rate_limit_spacing_fifo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_counts_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_flight_and_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_metrics_binding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aws_error_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_while_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_quotes_values, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
