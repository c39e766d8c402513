/* test_api.c - the HTTP API over real HTTP (libcurl) on 127.0.0.1, with a
 * fake provider; /metrics checked by Prometheus's own parser (promtool). */
#include "api/api.h"
#include "base/clock.h"
#include "base/procstat.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* Lives only in the fake provider's private state: no route may show it. */
#define SECRET "SECRET-wJalrXUtnFEMI-K7MDENG"

/* ---- fake provider ---------------------------------------------------- */

/* Every callback runs on the loop thread; the test's main thread reads
 * and sets the fields under mu. request answers through a loop timer
 * (never inside the call, except for "sync"), so the API really suspends
 * and resumes: "b1" and "mute" at once, "slow" after 300 ms, "hold" when
 * the test releases it. */
struct fake_call {
    struct loop_timer timer;
    api_reply_fn done;
    void *done_ctx;
    struct buf reply;
    struct fake_call *next; /* on fake.held */
};

struct fake {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready;
    const char *why;
    const char *bindings; /* NULL: append nothing */
    int bindings_fail;
    const char *stats; /* NULL: append nothing */
    int stats_fail;
    const char *secret; /* what a real provider would have to redact */
    int calls;
    char last_binding[128];
    struct buf last_payload;
    struct fake_call *held;
    int held_count;
    int answered; /* done calls made */
};

static struct loop *lp;

static struct fake fake = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .cv = PTHREAD_COND_INITIALIZER,
    .why = "binding b1: source not subscribed",
    .secret = SECRET,
};

static int fake_ready(void *ctx, struct buf *why)
{
    struct fake *f = ctx;
    int r;

    pthread_mutex_lock(&f->mu);
    r = f->ready;
    if (!r) {
        buf_append_str(why, f->why);
    }
    pthread_mutex_unlock(&f->mu);
    return r;
}

static int fake_bindings(void *ctx, struct buf *out)
{
    struct fake *f = ctx;

    if (f->bindings_fail) {
        return -1;
    }
    return f->bindings ? buf_append_str(out, f->bindings) : 0;
}

static int fake_stats(void *ctx, struct buf *out)
{
    struct fake *f = ctx;

    if (f->stats_fail) {
        return -1;
    }
    return f->stats ? buf_append_str(out, f->stats) : 0;
}

static void fake_answer(void *arg)
{
    struct fake_call *fc = arg;

    fc->done(fc->done_ctx, fc->reply.data, fc->reply.len);
    buf_free(&fc->reply);
    free(fc);
    pthread_mutex_lock(&fake.mu);
    fake.answered++;
    pthread_cond_broadcast(&fake.cv);
    pthread_mutex_unlock(&fake.mu);
}

static int fake_request(void *ctx, const char *binding, const char *payload, size_t len,
                        api_reply_fn done, void *done_ctx, char *err, size_t errlen)
{
    struct fake *f = ctx;
    struct fake_call *fc;
    int echo = strcmp(binding, "b1") == 0 || strcmp(binding, "slow") == 0 ||
               strcmp(binding, "hold") == 0 || strcmp(binding, "sync") == 0;

    pthread_mutex_lock(&f->mu);
    f->calls++;
    snprintf(f->last_binding, sizeof(f->last_binding), "%s", binding);
    buf_set(&f->last_payload, payload, len);
    pthread_mutex_unlock(&f->mu);
    if (strcmp(binding, "down") == 0) {
        snprintf(err, errlen, "binding down is stopping");
        return -1;
    }
    if (!echo && strcmp(binding, "mute") != 0) {
        return API_REQUEST_NO_BINDING;
    }
    fc = calloc(1, sizeof(*fc));
    if (!fc) {
        abort(); /* no cmocka assert off the main thread */
    }
    loop_timer_init(&fc->timer);
    fc->done = done;
    fc->done_ctx = done_ctx;
    buf_init(&fc->reply, 0);
    if (echo) {
        buf_append_str(&fc->reply, "{\"metadata\":{\"result\":\"ok\"},\"data\":null,"
                                   "\"is_error\":false,\"error\":\"\",\"echo\":");
        buf_append_json_str(&fc->reply, payload, len);
        buf_append_char(&fc->reply, '}');
    }
    if (strcmp(binding, "sync") == 0) {
        fake_answer(fc); /* against the contract: the API copes */
    } else if (strcmp(binding, "hold") == 0) {
        pthread_mutex_lock(&f->mu);
        fc->next = f->held;
        f->held = fc;
        f->held_count++;
        pthread_cond_broadcast(&f->cv);
        pthread_mutex_unlock(&f->mu);
    } else {
        loop_timer_start(lp, &fc->timer, strcmp(binding, "slow") == 0 ? 300 : 0, fake_answer, fc);
    }
    return 0;
}

static const struct api_provider provider = {&fake, fake_ready, fake_bindings, fake_stats,
                                             fake_request};

/* ---- the loop, on a thread of its own ------------------------------------ */

static pthread_t loop_thread;

static void *loop_main(void *arg)
{
    (void)arg;
    loop_run(lp);
    return NULL;
}

struct on_loop_call {
    void (*fn)(void *arg);
    void *arg;
    int done;
};

static pthread_mutex_t on_loop_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t on_loop_cv = PTHREAD_COND_INITIALIZER;

static void on_loop_run(void *arg)
{
    struct on_loop_call *c = arg;

    c->fn(c->arg);
    pthread_mutex_lock(&on_loop_mu);
    c->done = 1;
    pthread_cond_broadcast(&on_loop_cv);
    pthread_mutex_unlock(&on_loop_mu);
}

/* Run fn(arg) on the loop thread (the API's only thread) and wait. */
static void on_loop(void (*fn)(void *arg), void *arg)
{
    struct on_loop_call c = {fn, arg, 0};

    assert_int_equal(loop_post(lp, on_loop_run, &c), 0);
    pthread_mutex_lock(&on_loop_mu);
    while (!c.done) {
        pthread_cond_wait(&on_loop_cv, &on_loop_mu);
    }
    pthread_mutex_unlock(&on_loop_mu);
}

/* Answer every held call, on the loop. */
static void release_held_on_loop(void *arg)
{
    struct fake_call *fc, *next;

    (void)arg;
    pthread_mutex_lock(&fake.mu);
    fc = fake.held;
    fake.held = NULL;
    pthread_mutex_unlock(&fake.mu);
    for (; fc; fc = next) {
        next = fc->next;
        fake_answer(fc);
    }
}

static void release_held(void)
{
    on_loop(release_held_on_loop, NULL);
}

/* Generous deadlines: the machine is shared. */
#define WAIT_S 30

static void deadline_in(struct timespec *ts, int seconds)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += seconds;
}

/* Wait until *counter (a fake field) reaches n. */
static void wait_count(const int *counter, int n, const char *what)
{
    struct timespec dl;
    int rc = 0;

    deadline_in(&dl, WAIT_S);
    pthread_mutex_lock(&fake.mu);
    while (*counter < n && rc == 0) {
        rc = pthread_cond_timedwait(&fake.cv, &fake.mu, &dl);
    }
    pthread_mutex_unlock(&fake.mu);
    if (*counter < n) {
        fail_msg("%s: %d after %d s, want %d", what, *counter, WAIT_S, n);
    }
}

static int fake_count(const int *counter)
{
    int n;

    pthread_mutex_lock(&fake.mu);
    n = *counter;
    pthread_mutex_unlock(&fake.mu);
    return n;
}

/* ---- HTTP client ------------------------------------------------------- */

struct resp {
    long status;
    char ctype[128];
    char allow[64];
    struct buf body;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct resp *r = arg;

    return buf_append(&r->body, p, size * n) == 0 ? size * n : 0;
}

struct chunks {
    const char *data;
    size_t len, off;
};

static size_t on_read(char *dst, size_t size, size_t n, void *arg)
{
    struct chunks *c = arg;
    size_t k = size * n;

    if (k > 100) {
        k = 100; /* several chunks */
    }
    if (k > c->len - c->off) {
        k = c->len - c->off;
    }
    memcpy(dst, c->data + c->off, k);
    c->off += k;
    return k;
}

enum { SEND_PLAIN, SEND_CHUNKED, SEND_EXPECT };

/* One request to host:port; body NULL for none. No cmocka asserts: it
 * also runs on a helper thread. */
static CURLcode http_do(const char *host, long port, const char *method, const char *path,
                        const char *body, size_t body_len, int mode, struct resp *r)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    struct curl_header *hdr = NULL;
    struct chunks ch = {body, body_len, 0};
    char url[256];
    const char *ct = NULL;
    CURLcode rc;

    memset(r, 0, sizeof(*r));
    buf_init(&r->body, 0);
    if (!h) {
        return CURLE_OUT_OF_MEMORY;
    }
    snprintf(url, sizeof(url), "http://%s:%ld%s", host, port, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    if (body && mode == SEND_PLAIN) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    } else if (body) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &ch);
        if (mode == SEND_CHUNKED) {
            hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
        } else {
            /* Announce the size and wait for the server's word first. */
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
            curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 30000L);
            hdrs = curl_slist_append(hdrs, "Expect: 100-continue");
        }
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    }
    rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(r->ctype, sizeof(r->ctype), "%s", ct ? ct : "");
    if (curl_easy_header(h, "Allow", 0, CURLH_HEADER, -1, &hdr) == CURLHE_OK) {
        snprintf(r->allow, sizeof(r->allow), "%s", hdr->value);
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return rc;
}

static void http_to(const char *host, long port, const char *method, const char *path,
                    const char *body, size_t body_len, int mode, struct resp *r)
{
    CURLcode rc = http_do(host, port, method, path, body, body_len, mode, r);

    if (rc != CURLE_OK) {
        buf_free(&r->body);
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
    }
}

static struct api_server *srv;

static void http(const char *method, const char *path, const char *body, struct resp *r)
{
    http_to("127.0.0.1", api_port(srv), method, path, body, body ? strlen(body) : 0, SEND_PLAIN, r);
}

/* No response the API builds may show what only the provider holds. */
static void assert_no_secret(const struct resp *r)
{
    assert_null(strstr(buf_str(&r->body), SECRET));
}

static void expect(const struct resp *r, long status, const char *ctype, const char *body)
{
    assert_int_equal(r->status, status);
    assert_string_equal(r->ctype, ctype);
    if (body) {
        assert_string_equal(buf_str(&r->body), body);
    }
    assert_no_secret(r);
}

static void expect_error(struct resp *r, long status, const char *message)
{
    expect(r, status, "application/json", NULL);
    {
        json_t *v = json_loads(buf_str(&r->body), 0, NULL);
        assert_non_null(v);
        assert_true(json_is_object(v));
        assert_int_equal(json_object_size(v), 1);
        assert_string_equal(json_string_value(json_object_get(v, "error")), message);
        json_decref(v);
    }
    buf_free(&r->body);
}

/* ---- fixtures ---------------------------------------------------------- */

static struct metrics_registry *reg;

struct start_args {
    const struct api_options *o;
    const struct api_provider *p;
    struct api_server *s;
    char err[256];
};

static void start_on_loop(void *arg)
{
    struct start_args *a = arg;

    a->s = api_start(lp, a->o, a->p, a->err, sizeof(a->err));
}

/* api_start on the loop thread; NULL with the reason in err. */
static struct api_server *try_start(const struct api_options *o, const struct api_provider *p,
                                    char *err, size_t errlen)
{
    struct start_args a = {o, p, NULL, ""};

    on_loop(start_on_loop, &a);
    snprintf(err, errlen, "%s", a.err);
    return a.s;
}

static void stop_on_loop(void *arg)
{
    api_stop(arg);
}

static void stop(struct api_server *s)
{
    on_loop(stop_on_loop, s);
}

static struct api_server *start(int enable_request, struct metrics_registry *m, size_t max_body)
{
    struct api_options o = {"127.0.0.1", 0, enable_request, m, max_body, 0};
    char err[256] = "";
    struct api_server *s = try_start(&o, &provider, err, sizeof(err));

    if (!s) {
        fail_msg("api_start: %s", err);
    }
    assert_true(api_port(s) > 0 && api_port(s) < 65536);
    return s;
}

static int setup(void **state)
{
    char err[256] = "";

    (void)state;
    lp = loop_create(err, sizeof(err));
    if (!lp) {
        fail_msg("%s", err);
    }
    assert_int_equal(pthread_create(&loop_thread, NULL, loop_main, NULL), 0);
    reg = metrics_registry_new();
    pthread_mutex_lock(&fake.mu);
    fake.ready = 0;
    fake.bindings = NULL;
    fake.bindings_fail = 0;
    fake.stats = NULL;
    fake.stats_fail = 0;
    fake.calls = 0;
    fake.held = NULL;
    fake.held_count = 0;
    fake.answered = 0;
    buf_init(&fake.last_payload, 0);
    pthread_mutex_unlock(&fake.mu);
    srv = start(1, reg, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    stop(srv); /* NULL when a test stopped it */
    srv = NULL;
    release_held(); /* none is left unless a test failed half-way */
    loop_stop(lp);
    pthread_join(loop_thread, NULL);
    loop_destroy(lp);
    lp = NULL;
    metrics_registry_free(reg);
    reg = NULL;
    buf_free(&fake.last_payload);
    return 0;
}

/* ---- tests ------------------------------------------------------------- */

static void test_health_and_methods(void **state)
{
    struct resp r;

    (void)state;
    http("GET", "/health", NULL, &r);
    expect(&r, 200, "text/plain; charset=utf-8", "ok");
    buf_free(&r.body);

    http("GET", "/health?probe=1", NULL, &r);
    expect(&r, 200, "text/plain; charset=utf-8", "ok");
    buf_free(&r.body);

    http("HEAD", "/health", NULL, &r);
    expect(&r, 200, "text/plain; charset=utf-8", "");
    buf_free(&r.body);

    http("POST", "/health", "{}", &r);
    assert_string_equal(r.allow, "GET, HEAD");
    expect_error(&r, 405, "method POST not allowed on /health, use GET");

    http("DELETE", "/bindings", NULL, &r);
    assert_string_equal(r.allow, "GET, HEAD");
    expect_error(&r, 405, "method DELETE not allowed on /bindings, use GET");

    http("GET", "/nope", NULL, &r);
    expect_error(&r, 404, "not found, /nope");
    http("GET", "/health/", NULL, &r);
    expect_error(&r, 404, "not found, /health/");
    http("GET", "/", NULL, &r);
    expect_error(&r, 404, "not found, /");
}

static void set_ready(int ready)
{
    pthread_mutex_lock(&fake.mu);
    fake.ready = ready;
    pthread_mutex_unlock(&fake.mu);
}

static void test_ready_flips(void **state)
{
    struct resp r;

    (void)state;
    http("GET", "/ready", NULL, &r);
    expect(&r, 503, "text/plain; charset=utf-8", "binding b1: source not subscribed");
    buf_free(&r.body);

    set_ready(1);
    http("GET", "/ready", NULL, &r);
    expect(&r, 200, "text/plain; charset=utf-8", "ready");
    buf_free(&r.body);

    set_ready(0);
    http("GET", "/ready", NULL, &r);
    expect(&r, 503, "text/plain; charset=utf-8", "binding b1: source not subscribed");
    buf_free(&r.body);

    http("POST", "/ready", "", &r);
    expect_error(&r, 405, "method POST not allowed on /ready, use GET");
}

/* Run promtool on the text; returns its exit status, output in out. */
static int promtool_check(const char *text, char *out, size_t cap)
{
    char path[] = "/tmp/kk-api-metrics-XXXXXX", cmd[256];
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

static void test_metrics(void **state)
{
    static const char *const labels[] = {"binding", NULL};
    static const double buckets[] = {0.1, 1};
    const char *b1[] = {"b1"}, *odd[] = {"we\"ird\\b\nname"};
    struct metrics_family *requests, *seconds;
    char lint[8192];
    struct resp r;
    int rc;

    (void)state;
    /* Only process_* before anything registers. */
    http("GET", "/metrics", NULL, &r);
    expect(&r, 200, "text/plain; version=0.0.4; charset=utf-8", NULL);
    assert_non_null(strstr(buf_str(&r.body), "\nprocess_open_fds "));
    assert_null(strstr(buf_str(&r.body), "demo_"));
    assert_int_equal(promtool_check(buf_str(&r.body), lint, sizeof(lint)), 0);
    buf_free(&r.body);

    requests = metrics_family_add(reg, METRICS_COUNTER, "demo_requests_total", "requests", labels,
                                  NULL, 0);
    seconds = metrics_family_add(reg, METRICS_HISTOGRAM, "demo_request_duration_seconds",
                                 "time per request", labels, buckets, 2);
    metrics_counter_add(metrics_series_get(requests, b1), 2);
    metrics_counter_add(metrics_series_get(requests, odd), 1);
    metrics_histogram_observe(metrics_series_get(seconds, b1), 0.012);
    metrics_histogram_observe(metrics_series_get(seconds, b1), 3.5);

    http("GET", "/metrics", NULL, &r);
    expect(&r, 200, "text/plain; version=0.0.4; charset=utf-8", NULL);
    assert_non_null(strstr(buf_str(&r.body), "demo_requests_total{binding=\"b1\"} 2\n"));
    assert_non_null(strstr(buf_str(&r.body), "binding=\"we\\\"ird\\\\b\\nname\""));
    assert_non_null(
        strstr(buf_str(&r.body), "demo_request_duration_seconds_count{binding=\"b1\"} 2\n"));
    assert_non_null(strstr(buf_str(&r.body), "# TYPE process_cpu_seconds_total counter\n"));
    assert_non_null(strstr(buf_str(&r.body), "\nprocess_resident_memory_bytes "));
    assert_non_null(strstr(buf_str(&r.body), "\nprocess_start_time_seconds "));
    /* The registry's text and the process_* lines parse and lint clean
     * together (the binding layer's own families: test_binding_metrics). */
    rc = promtool_check(buf_str(&r.body), lint, sizeof(lint));
    if (rc != 0) {
        fail_msg("promtool exit %d: %s", rc, lint);
    }
    buf_free(&r.body);

    /* Our checker does catch a broken exposition. */
    assert_int_equal(promtool_check("foo{a=\"b} 3\n", lint, sizeof(lint)), 1);
}

static void test_metrics_without_registry(void **state)
{
    struct api_server *s;
    struct resp r;

    (void)state;
    s = start(0, NULL, 0);
    http_to("127.0.0.1", api_port(s), "GET", "/metrics", NULL, 0, SEND_PLAIN, &r);
    expect(&r, 200, "text/plain; version=0.0.4; charset=utf-8", NULL);
    assert_non_null(strstr(buf_str(&r.body), "process_cpu_seconds_total"));
    buf_free(&r.body);
    http_to("127.0.0.1", api_port(s), "GET", "/bindings/stats", NULL, 0, SEND_PLAIN, &r);
    expect(&r, 200, "application/json", "[]");
    buf_free(&r.body);
    stop(s);
}

/* A provider without stats_json: the route still answers. */
static void test_stats_without_provider(void **state)
{
    struct api_options o = {"127.0.0.1", 0, 0, NULL, 0, 0};
    struct api_provider p = provider;
    struct api_server *s;
    char err[256] = "";
    struct resp r;

    (void)state;
    p.stats_json = NULL;
    s = try_start(&o, &p, err, sizeof(err));
    if (!s) {
        fail_msg("api_start: %s", err);
    }
    http_to("127.0.0.1", api_port(s), "GET", "/bindings/stats", NULL, 0, SEND_PLAIN, &r);
    expect(&r, 200, "application/json", "[]");
    buf_free(&r.body);
    stop(s);
}

static void test_bindings(void **state)
{
    /* What a provider that redacts shows; the API serves it verbatim. */
    static const char shown[] =
        "[\n\t{\"binding\":\"b1\",\"ready\":true,\"source_type\":\"kubemq.query\","
        "\"source_connection\":\"localhost:50000/q1\",\"source_config\":{\"auth_token\":"
        "\"<redacted>\"},\"target_config\":{\"aws_key\":\"AKIA\",\"aws_secret_key\":"
        "\"<redacted>\"}}\n]";
    struct resp r;

    (void)state;
    http("GET", "/bindings", NULL, &r);
    expect(&r, 200, "application/json", "[]"); /* never null */
    buf_free(&r.body);

    fake.bindings = "";
    http("GET", "/bindings", NULL, &r);
    expect(&r, 200, "application/json", "[]");
    buf_free(&r.body);

    fake.bindings = shown;
    http("GET", "/bindings", NULL, &r);
    expect(&r, 200, "application/json", shown); /* byte for byte: nothing added */
    buf_free(&r.body);

    http("HEAD", "/bindings", NULL, &r);
    expect(&r, 200, "application/json", "");
    buf_free(&r.body);

    fake.bindings_fail = 1;
    http("GET", "/bindings", NULL, &r);
    expect_error(&r, 500, "cannot list the bindings");
}

static void test_stats(void **state)
{
    static const char shown[] = "[{\"binding\":\"b1\",\"request_count\":2}]";
    struct resp r;

    (void)state;
    http("GET", "/bindings/stats", NULL, &r);
    expect(&r, 200, "application/json", "[]"); /* never empty */
    buf_free(&r.body);

    fake.stats = shown;
    http("GET", "/bindings/stats", NULL, &r);
    expect(&r, 200, "application/json", shown); /* byte for byte: nothing added */
    buf_free(&r.body);

    fake.stats_fail = 1;
    http("GET", "/bindings/stats", NULL, &r);
    expect_error(&r, 500, "cannot render the stats");
}

static void post(const char *body, struct resp *r)
{
    http("POST", "/bindings/request", body, r);
}

static void test_request(void **state)
{
    static const char envelope[] =
        "{\"metadata\":{\"method\":\"list_streams\"},\"data\":{\"n\":123456789012345678}}";
    char body[512];
    json_t *v;
    struct resp r;

    (void)state;
    snprintf(body, sizeof(body), "{\"binding\":\"b1\",\"payload\":%s}", envelope);
    post(body, &r);
    expect(&r, 200, "application/json", NULL);
    v = json_loads(buf_str(&r.body), 0, NULL);
    assert_non_null(v);
    assert_string_equal(json_string_value(json_object_get(v, "echo")), envelope);
    assert_true(json_is_false(json_object_get(v, "is_error")));
    json_decref(v);
    assert_string_equal(fake.last_binding, "b1");
    assert_string_equal(buf_str(&fake.last_payload), envelope); /* compact, exact integers */
    buf_free(&r.body);

    /* Member names match without regard to case; a string payload is the
     * body itself; no payload is an empty body (the envelope's "empty
     * request"). */
    post("{\"Binding\":\"b1\",\"PAYLOAD\":\"raw \\u0000 bytes\"}", &r);
    expect(&r, 200, "application/json", NULL);
    assert_int_equal(fake.last_payload.len, 11);
    assert_memory_equal(fake.last_payload.data, "raw \0 bytes", 11);
    buf_free(&r.body);
    post("{\"binding\":\"b1\"}", &r);
    expect(&r, 200, "application/json", NULL);
    assert_int_equal(fake.last_payload.len, 0);
    buf_free(&r.body);
    post("{\"binding\":\"b1\",\"payload\":null}", &r);
    expect(&r, 200, "application/json", NULL);
    assert_int_equal(fake.last_payload.len, 0);
    buf_free(&r.body);

    post("{\"binding\":\"nope\",\"payload\":{}}", &r);
    expect_error(&r, 404, "no such binding, nope");
    post("{\"binding\":\"down\",\"payload\":{}}", &r);
    expect_error(&r, 503, "binding down is stopping");
    post("{\"binding\":\"mute\",\"payload\":{}}", &r);
    expect_error(&r, 500, "binding mute gave no reply");
    assert_int_equal(fake.calls, 7);

    http("GET", "/bindings/request", NULL, &r);
    assert_string_equal(r.allow, "POST");
    expect_error(&r, 405, "method GET not allowed on /bindings/request, use POST");
    assert_int_equal(fake.calls, 7);
}

static void test_request_bad_bodies(void **state)
{
    struct resp r;

    (void)state;
    post("", &r);
    expect_error(&r, 400, "invalid request, empty body");
    post("{\"binding\":", &r);
    expect_error(&r, 400,
                 "invalid request, body is not JSON: unexpected token near end of file "
                 "(line 1, column 11)");
    post("not json", &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(buf_str(&r.body), "invalid request, body is not JSON: "));
    buf_free(&r.body);
    post("[\"b1\"]", &r);
    expect_error(&r, 400, "invalid request, body must be a JSON object");
    post("{\"payload\":{}}", &r);
    expect_error(&r, 400, "invalid request, binding is missing");
    post("{\"binding\":\"\"}", &r);
    expect_error(&r, 400, "invalid request, binding is missing");
    post("{\"binding\":7}", &r);
    expect_error(&r, 400, "invalid request, binding must be a string (a binding name)");
    post("{\"binding\":\"b\\u00001\"}", &r);
    expect_error(&r, 400, "invalid request, binding must be a string (a binding name)");
    assert_int_equal(fake.calls, 0); /* none reached the provider */

    /* Still serving. */
    http("GET", "/health", NULL, &r);
    expect(&r, 200, "text/plain; charset=utf-8", "ok");
    buf_free(&r.body);
}

static void test_request_disabled(void **state)
{
    static const char msg[] =
        "POST /bindings/request is disabled by config, set apiEnableRequest: true to enable it";
    struct api_server *s;
    struct resp r;

    (void)state;
    s = start(0, reg, 0);
    http_to("127.0.0.1", api_port(s), "POST", "/bindings/request",
            "{\"binding\":\"b1\",\"payload\":{}}", 29, SEND_PLAIN, &r);
    expect_error(&r, 404, msg);
    http_to("127.0.0.1", api_port(s), "GET", "/bindings/request", NULL, 0, SEND_PLAIN, &r);
    expect_error(&r, 404, msg);
    assert_int_equal(fake.calls, 0);
    /* The other routes are there. */
    http_to("127.0.0.1", api_port(s), "GET", "/bindings", NULL, 0, SEND_PLAIN, &r);
    expect(&r, 200, "application/json", "[]");
    buf_free(&r.body);
    stop(s);
}

static void test_body_cap(void **state)
{
    char big[2048];
    struct api_server *s;
    struct resp r;

    (void)state;
    memset(big, ' ', sizeof(big));
    memcpy(big, "{\"binding\":\"b1\",\"payload\":\"x\"}", 30);
    s = start(1, reg, 1024);

    /* Announced size: refused before the body is sent. */
    http_to("127.0.0.1", api_port(s), "POST", "/bindings/request", big, sizeof(big), SEND_EXPECT,
            &r);
    expect_error(&r, 413, "invalid request, body larger than 1024 bytes");
    /* Chunked: read, dropped, refused at the end. */
    http_to("127.0.0.1", api_port(s), "POST", "/bindings/request", big, sizeof(big), SEND_CHUNKED,
            &r);
    expect_error(&r, 413, "invalid request, body larger than 1024 bytes");
    assert_int_equal(fake.calls, 0);

    /* At the cap it runs; chunked bodies are put together. */
    http_to("127.0.0.1", api_port(s), "POST", "/bindings/request", big, 1024, SEND_CHUNKED, &r);
    expect(&r, 200, "application/json", NULL);
    assert_string_equal(buf_str(&fake.last_payload), "x");
    buf_free(&r.body);
    http_to("127.0.0.1", api_port(s), "POST", "/bindings/request", big, 1024, SEND_EXPECT, &r);
    expect(&r, 200, "application/json", NULL);
    buf_free(&r.body);
    assert_int_equal(fake.calls, 2);
    stop(s);
}

struct client_call {
    long port;
    const char *binding;
    char body[128];
    CURLcode rc;
    struct resp r;
};

static void *client_thread(void *arg)
{
    struct client_call *cc = arg;

    cc->rc = http_do("127.0.0.1", cc->port, "POST", "/bindings/request", cc->body, strlen(cc->body),
                     SEND_PLAIN, &cc->r);
    return NULL;
}

static void client_start(struct client_call *cc, pthread_t *t, const char *binding,
                         const char *payload)
{
    cc->port = api_port(srv);
    snprintf(cc->body, sizeof(cc->body), "{\"binding\":\"%s\",\"payload\":\"%s\"}", binding,
             payload);
    assert_int_equal(pthread_create(t, NULL, client_thread, cc), 0);
}

/* The reply to a POST echoing payload. */
static void expect_echo(struct resp *r, const char *payload)
{
    json_t *v;

    expect(r, 200, "application/json", NULL);
    v = json_loads(buf_str(&r->body), 0, NULL);
    assert_non_null(v);
    assert_string_equal(json_string_value(json_object_get(v, "echo")), payload);
    json_decref(v);
    buf_free(&r->body);
}

#define IN_FLIGHT 5

/* Requests waiting on their binding are suspended: several at once, each
 * answered with its own reply, and none holds up anything else. */
static void test_requests_in_flight(void **state)
{
    struct client_call cc[IN_FLIGHT];
    pthread_t t[IN_FLIGHT];
    char payload[16];
    struct resp r;
    int i;

    (void)state;
    memset(cc, 0, sizeof(cc));
    set_ready(1);
    for (i = 0; i < IN_FLIGHT; i++) {
        snprintf(payload, sizeof(payload), "p%d", i);
        client_start(&cc[i], &t[i], "hold", payload);
    }
    wait_count(&fake.held_count, IN_FLIGHT, "requests held by the provider");

    http("GET", "/health", NULL, &r);
    expect(&r, 200, "text/plain; charset=utf-8", "ok");
    buf_free(&r.body);
    http("GET", "/ready", NULL, &r);
    expect(&r, 200, "text/plain; charset=utf-8", "ready");
    buf_free(&r.body);
    http("GET", "/metrics", NULL, &r);
    assert_int_equal(r.status, 200);
    buf_free(&r.body);
    /* And another request through the provider, while those wait. */
    post("{\"binding\":\"b1\",\"payload\":\"quick\"}", &r);
    expect_echo(&r, "quick");
    assert_int_equal(fake_count(&fake.answered), 1); /* only that one */

    release_held();
    for (i = 0; i < IN_FLIGHT; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(cc[i].rc, CURLE_OK);
        snprintf(payload, sizeof(payload), "p%d", i);
        expect_echo(&cc[i].r, payload);
    }
    assert_int_equal(fake_count(&fake.answered), IN_FLIGHT + 1);
}

static double mono_s(void)
{
    return (double)clock_mono_us() / 1e6;
}

/* Answered 300 ms later, from a loop timer. */
static void test_slow_provider(void **state)
{
    struct resp r;
    double t0;

    (void)state;
    t0 = mono_s();
    post("{\"binding\":\"slow\",\"payload\":\"late\"}", &r);
    assert_true(mono_s() - t0 >= 0.29); /* the timer's delay: it cannot come sooner */
    expect_echo(&r, "late");
    assert_int_equal(fake_count(&fake.answered), 1);
}

/* A provider that answers inside request (against the contract) is served. */
static void test_provider_answers_inside_request(void **state)
{
    struct resp r;

    (void)state;
    post("{\"binding\":\"sync\",\"payload\":\"now\"}", &r);
    expect_echo(&r, "now");
}

static int connect_to(long port)
{
    struct sockaddr_in sa;
    struct timeval tv = {WAIT_S, 0};
    int fd;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    return fd;
}

/* A whole POST /bindings/request on a raw socket. */
static int send_raw_post(long port, const char *binding)
{
    char req[256], body[96];
    int fd = connect_to(port), n, m;

    m = snprintf(body, sizeof(body), "{\"binding\":\"%s\",\"payload\":\"raw\"}", binding);
    n = snprintf(req, sizeof(req),
                 "POST /bindings/request HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                 m, body);
    assert_int_equal(write(fd, req, (size_t)n), n);
    return fd;
}

/* Wait for the peer to close fd: 1 on EOF or reset, 0 after WAIT_S. */
static int closed_by_peer(int fd)
{
    char b[4096];

    for (;;) {
        ssize_t n = read(fd, b, sizeof(b));

        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            return 1;
        }
        if (n < 0) {
            return 0; /* EAGAIN: the receive timeout */
        }
    }
}

static int open_fds(void)
{
    struct procstat ps;

    assert_int_equal(procstat_read(&ps), 0);
    return (int)ps.open_fds;
}

/* Wait until the process has want descriptors open (the server closed
 * its side of a connection). */
static void wait_fds(int want)
{
    double until = mono_s() + WAIT_S;

    while (open_fds() != want && mono_s() < until) {
        usleep(10000);
    }
    assert_int_equal(open_fds(), want);
}

/* The client leaves while its request is suspended; the provider answers
 * later: the connection is closed, nothing used after free, nothing kept. */
static void test_client_gone_while_suspended(void **state)
{
    struct resp r;
    int before, fd;

    (void)state;
    before = open_fds();
    fd = send_raw_post(api_port(srv), "hold");
    wait_count(&fake.held_count, 1, "request held by the provider");
    close(fd);
    release_held();
    assert_int_equal(fake_count(&fake.answered), 1);
    wait_fds(before); /* the server's side is closed too */

    http("GET", "/health", NULL, &r);
    expect(&r, 200, "text/plain; charset=utf-8", "ok");
    buf_free(&r.body);
}

/* api_stop with a request suspended: the client's connection is closed at
 * once, and the provider's later answer is dropped. */
static void test_stop_while_suspended(void **state)
{
    int before, fd, fd2;

    (void)state;
    stop(srv);
    srv = NULL;
    before = open_fds();
    srv = start(1, reg, 0);
    fd = send_raw_post(api_port(srv), "hold");
    fd2 = send_raw_post(api_port(srv), "hold");
    wait_count(&fake.held_count, 2, "requests held by the provider");
    stop(srv);
    srv = NULL;
    assert_true(closed_by_peer(fd));
    assert_true(closed_by_peer(fd2));
    close(fd);
    close(fd2);
    assert_int_equal(fake_count(&fake.answered), 0);
    release_held(); /* done on dropped calls */
    assert_int_equal(fake_count(&fake.answered), 2);
    assert_int_equal(open_fds(), before);
}

/* An idle connection is closed after the idle timeout: MHD gets no socket
 * event for it, so this needs the loop timer armed from MHD's timeout. */
static void test_idle_timeout(void **state)
{
    struct api_options o = {"127.0.0.1", 0, 1, reg, 0, 1};
    struct api_server *s;
    char err[256] = "";
    int fd;

    (void)state;
    s = try_start(&o, &provider, err, sizeof(err));
    if (!s) {
        fail_msg("api_start: %s", err);
    }
    fd = connect_to(api_port(s));
    assert_true(closed_by_peer(fd));
    close(fd);
    /* Also half-way through a request. */
    fd = connect_to(api_port(s));
    assert_int_equal(write(fd, "GET /health HTTP/1.1\r\n", 22), 22);
    assert_true(closed_by_peer(fd));
    close(fd);
    stop(s);
}

static double thread_cpu_s(pthread_t t)
{
    struct timespec ts;
    clockid_t cid;

    assert_int_equal(pthread_getcpuclockid(t, &cid), 0);
    assert_int_equal(clock_gettime(cid, &ts), 0);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* With a request suspended and an idle keep-alive connection open, the
 * loop sleeps: no busy polling of MHD. (A spinning loop burns the whole
 * second; the bound is far from both.) */
static void test_no_busy_loop(void **state)
{
    struct client_call cc;
    pthread_t t;
    double cpu;
    int fd;

    (void)state;
    memset(&cc, 0, sizeof(cc));
    client_start(&cc, &t, "hold", "idle");
    wait_count(&fake.held_count, 1, "request held by the provider");
    fd = connect_to(api_port(srv));
    usleep(100000);
    cpu = thread_cpu_s(loop_thread);
    usleep(1000000);
    cpu = thread_cpu_s(loop_thread) - cpu;
    close(fd);
    release_held();
    pthread_join(t, NULL);
    assert_int_equal(cc.rc, CURLE_OK);
    expect_echo(&cc.r, "idle");
    if (cpu > 0.3) {
        fail_msg("the loop thread used %.3f s of CPU in 1 s while idle", cpu);
    }
}

/* Not HTTP at all: MHD answers 400 and the server keeps serving. */
static void test_garbage(void **state)
{
    struct sockaddr_in sa;
    char reply[256];
    ssize_t n;
    int fd;
    struct resp r;

    (void)state;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)api_port(srv));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(write(fd, "\x01\x02 garbage\r\n\r\n", 14), 14);
    n = read(fd, reply, sizeof(reply) - 1);
    close(fd);
    assert_true(n > 12);
    reply[n] = '\0';
    assert_memory_equal(reply, "HTTP/1.1 400", 12);

    http("GET", "/health", NULL, &r);
    expect(&r, 200, "text/plain; charset=utf-8", "ok");
    buf_free(&r.body);
}

static void test_start_errors(void **state)
{
    struct api_options o = {"127.0.0.1", api_port(srv), 0, NULL, 0, 0};
    struct api_provider partial = provider;
    char err[256], want[128];

    (void)state;
    snprintf(want, sizeof(want), "cannot listen on 127.0.0.1:%ld: Address already in use",
             api_port(srv));
    assert_null(try_start(&o, &provider, err, sizeof(err)));
    assert_string_equal(err, want);

    o.address = "localhost";
    o.port = 8080;
    assert_null(try_start(&o, &provider, err, sizeof(err)));
    assert_string_equal(err, "cannot listen on localhost:8080: not a numeric IPv4 or IPv6 address");

    o.address = "fe80::1:2";
    o.port = 70000;
    assert_null(try_start(&o, &provider, err, sizeof(err)));
    assert_string_equal(err, "cannot listen on [fe80::1:2]:70000: port out of range 0..65535");

    partial.request = NULL;
    o.address = "127.0.0.1";
    o.port = 0;
    o.enable_request = 1;
    assert_null(try_start(&o, &partial, err, sizeof(err)));
    assert_string_equal(err, "api: the provider lacks a callback");

    stop(NULL);
}

/* Stop closes every descriptor and frees the port. */
static void test_stop_releases(void **state)
{
    struct procstat before, after;
    struct api_server *s;
    struct resp r;
    long port;

    (void)state;
    assert_int_equal(procstat_read(&before), 0);
    s = start(1, reg, 0);
    port = api_port(s);
    http_to("127.0.0.1", port, "GET", "/health", NULL, 0, SEND_PLAIN, &r);
    buf_free(&r.body);
    stop(s);
    assert_int_equal(procstat_read(&after), 0);
    assert_int_equal(after.open_fds, before.open_fds);

    {
        struct api_options o = {"127.0.0.1", port, 0, NULL, 0, 0};
        char err[256] = "";

        s = try_start(&o, &provider, err, sizeof(err));
        if (!s) {
            fail_msg("restart on port %ld: %s", port, err);
        }
        assert_int_equal(api_port(s), port);
        stop(s);
    }
}

static void test_ipv6(void **state)
{
    struct api_options o = {"::1", 0, 0, NULL, 0, 0};
    struct api_server *s;
    char err[256] = "";
    struct resp r;

    (void)state;
    s = try_start(&o, &provider, err, sizeof(err));
    if (!s) {
        fail_msg("api_start on ::1: %s", err);
    }
    http_to("[::1]", api_port(s), "GET", "/health", NULL, 0, SEND_PLAIN, &r);
    expect(&r, 200, "text/plain; charset=utf-8", "ok");
    buf_free(&r.body);
    stop(s);
}

static void test_procstat(void **state)
{
    struct procstat ps;
    struct buf out = BUF_INIT(0);
    double now = (double)time(NULL);

    (void)state;
    assert_int_equal(procstat_read(&ps), 0);
    assert_true(ps.cpu_seconds >= 0);
    assert_true(ps.resident_bytes > 1024 * 1024);
    assert_true(ps.virtual_bytes >= ps.resident_bytes);
    /* Started a moment ago (clock-tick and boot-time rounding aside). */
    assert_true(ps.start_time > now - 3600 && ps.start_time < now + 2);
    assert_true(ps.open_fds >= 3);
    assert_true(ps.max_fds == -1 || ps.max_fds >= ps.open_fds);
    {
        int fd = dup(0);
        struct procstat more;

        assert_int_equal(procstat_read(&more), 0);
        assert_int_equal(more.open_fds, ps.open_fds + 1);
        close(fd);
    }
    assert_int_equal(procstat_render_prometheus(&out), 0);
    assert_non_null(strstr(buf_str(&out), "# TYPE process_start_time_seconds gauge\n"));
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health_and_methods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ready_flips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_without_registry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_without_provider, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bindings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_bad_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_disabled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_requests_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_provider, setup, teardown),
        cmocka_unit_test_setup_teardown(test_provider_answers_inside_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_gone_while_suspended, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_while_suspended, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_busy_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_releases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv6, setup, teardown),
        cmocka_unit_test(test_procstat),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
