/* test_api.c - the HTTP API over real HTTP (libcurl) on 127.0.0.1, with a
 * fake provider; /metrics checked by Prometheus's own parser (promtool). */
#include "api/api.h"
#include "base/procstat.h"

#include <arpa/inet.h>
#include <curl/curl.h>
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* Lives only in the fake provider's private state: no route may show it. */
#define SECRET "SECRET-wJalrXUtnFEMI-K7MDENG"

/* ---- fake provider ---------------------------------------------------- */

struct fake {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready;
    const char *why;
    const char *bindings; /* NULL: append nothing */
    int bindings_fail;
    const char *secret; /* what a real provider would have to redact */
    int calls;
    char last_binding[128];
    struct buf last_payload;
    int slow_entered;
    int slow_release;
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

static int fake_request(void *ctx, const char *binding, const char *payload, size_t len,
                        struct buf *reply, char *err, size_t errlen)
{
    struct fake *f = ctx;

    pthread_mutex_lock(&f->mu);
    f->calls++;
    snprintf(f->last_binding, sizeof(f->last_binding), "%s", binding);
    buf_set(&f->last_payload, payload, len);
    if (strcmp(binding, "slow") == 0) {
        f->slow_entered = 1;
        pthread_cond_broadcast(&f->cv);
        while (!f->slow_release) {
            pthread_cond_wait(&f->cv, &f->mu);
        }
    }
    pthread_mutex_unlock(&f->mu);
    if (strcmp(binding, "b1") == 0 || strcmp(binding, "slow") == 0) {
        buf_append_str(reply, "{\"metadata\":{\"result\":\"ok\"},\"data\":null,\"is_error\":false,"
                              "\"error\":\"\",\"echo\":");
        buf_append_json_str(reply, payload, len);
        buf_append_char(reply, '}');
        return 0;
    }
    if (strcmp(binding, "down") == 0) {
        snprintf(err, errlen, "binding down is stopping");
        return -1;
    }
    if (strcmp(binding, "mute") == 0) {
        return 0;
    }
    return API_REQUEST_NO_BINDING;
}

static struct fake fake = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .cv = PTHREAD_COND_INITIALIZER,
    .why = "binding b1: source not subscribed",
    .secret = SECRET,
};

static const struct api_provider provider = {&fake, fake_ready, fake_bindings, fake_request};

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

static struct api_server *start(int enable_request, struct metrics_registry *m, size_t max_body)
{
    struct api_options o = {"127.0.0.1", 0, enable_request, m, max_body};
    char err[256] = "";
    struct api_server *s = api_start(&o, &provider, err, sizeof(err));

    if (!s) {
        fail_msg("api_start: %s", err);
    }
    assert_true(api_port(s) > 0 && api_port(s) < 65536);
    return s;
}

static int setup(void **state)
{
    (void)state;
    reg = metrics_registry_new();
    srv = start(1, reg, 0);
    pthread_mutex_lock(&fake.mu);
    fake.ready = 0;
    fake.bindings = NULL;
    fake.bindings_fail = 0;
    fake.calls = 0;
    fake.slow_entered = 0;
    fake.slow_release = 0;
    buf_init(&fake.last_payload, 0);
    pthread_mutex_unlock(&fake.mu);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    api_stop(srv);
    srv = NULL;
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

/* The reference's counter names break promtool's naming lint (no _total,
 * a _count suffix); they are kept for compatibility. Every other family
 * must be lint-clean. */
static void assert_only_reference_lint(const char *lint)
{
    static const char *const allowed[] = {
        "kubemq_targets_requests_count ",  "kubemq_targets_requests_volume ",
        "kubemq_targets_responses_count ", "kubemq_targets_responses_volume ",
        "kubemq_targets_errors_count ",
    };
    const char *line = lint;

    while (*line) {
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
}

static void test_metrics(void **state)
{
    const struct metrics_binding *mb, *odd;
    char lint[8192];
    struct resp r;
    int rc;

    (void)state;
    /* Only process_* before any binding registers. */
    http("GET", "/metrics", NULL, &r);
    expect(&r, 200, "text/plain; version=0.0.4; charset=utf-8", NULL);
    assert_non_null(strstr(buf_str(&r.body), "\nprocess_open_fds "));
    assert_null(strstr(buf_str(&r.body), "kubemq_"));
    assert_int_equal(promtool_check(buf_str(&r.body), lint, sizeof(lint)), 0);
    buf_free(&r.body);

    mb = metrics_binding_register(reg, "b1", "kubemq.query", "aws.kinesis");
    odd = metrics_binding_register(reg, "we\"ird\\b\nname", "kubemq.command", "aws.kinesis");
    assert_non_null(mb);
    assert_non_null(odd);
    metrics_binding_report(mb, 120, 1, 300, 0);
    metrics_binding_report(mb, 80, 1, 50, 1);
    metrics_binding_report(odd, 10, 0, 0, 1);
    metrics_binding_aws_error(mb, "ProvisionedThroughputExceededException");
    metrics_histogram_observe(mb->duration, 0.012);
    metrics_histogram_observe(mb->duration, 3.5);
    metrics_gauge_add(mb->in_flight, 2);
    metrics_counter_add(mb->retries, 1);

    http("GET", "/metrics", NULL, &r);
    expect(&r, 200, "text/plain; version=0.0.4; charset=utf-8", NULL);
    assert_non_null(strstr(buf_str(&r.body),
                           "kubemq_targets_requests_count{binding=\"b1\",source_kind=\"kubemq."
                           "query\",target_kind=\"aws.kinesis\"} 2\n"));
    assert_non_null(strstr(buf_str(&r.body), "binding=\"we\\\"ird\\\\b\\nname\""));
    assert_non_null(strstr(buf_str(&r.body), "# TYPE process_cpu_seconds_total counter\n"));
    assert_non_null(strstr(buf_str(&r.body), "\nprocess_resident_memory_bytes "));
    assert_non_null(strstr(buf_str(&r.body), "\nprocess_start_time_seconds "));
    /* Exit 3: parsed, with lint findings (1 would be a parse error). */
    rc = promtool_check(buf_str(&r.body), lint, sizeof(lint));
    if (rc != 3) {
        fail_msg("promtool exit %d: %s", rc, lint);
    }
    assert_non_null(strstr(lint, "kubemq_targets_requests_count counter metrics should have"));
    assert_only_reference_lint(lint);
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
    api_stop(s);
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
    const struct metrics_binding *mb;
    json_t *v, *o;
    struct resp r;

    (void)state;
    http("GET", "/bindings/stats", NULL, &r);
    expect(&r, 200, "application/json", "[]");
    buf_free(&r.body);

    mb = metrics_binding_register(reg, "b1", "kubemq.query", "aws.kinesis");
    metrics_binding_report(mb, 120, 1, 300, 0);
    metrics_binding_report(mb, 80, 0, 0, 1);
    http("GET", "/bindings/stats", NULL, &r);
    expect(&r, 200, "application/json", NULL);
    v = json_loads(buf_str(&r.body), 0, NULL);
    assert_true(json_is_array(v));
    assert_int_equal(json_array_size(v), 1);
    o = json_array_get(v, 0);
    assert_string_equal(json_string_value(json_object_get(o, "binding")), "b1");
    assert_string_equal(json_string_value(json_object_get(o, "source_kind")), "kubemq.query");
    assert_string_equal(json_string_value(json_object_get(o, "target_kind")), "aws.kinesis");
    assert_int_equal(json_integer_value(json_object_get(o, "request_count")), 2);
    assert_int_equal(json_integer_value(json_object_get(o, "request_volume")), 200);
    assert_int_equal(json_integer_value(json_object_get(o, "response_count")), 1);
    assert_int_equal(json_integer_value(json_object_get(o, "response_volume")), 300);
    assert_int_equal(json_integer_value(json_object_get(o, "errors_count")), 1);
    json_decref(v);
    buf_free(&r.body);
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
    api_stop(s);
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
    api_stop(s);
}

struct slow_call {
    long port;
    CURLcode rc;
    struct resp r;
};

static void *slow_thread(void *arg)
{
    struct slow_call *sc = arg;

    sc->rc = http_do("127.0.0.1", sc->port, "POST", "/bindings/request",
                     "{\"binding\":\"slow\",\"payload\":\"p\"}", 32, SEND_PLAIN, &sc->r);
    return NULL;
}

/* A request waiting on the engine holds up nothing else. */
static void test_slow_request_does_not_block(void **state)
{
    struct slow_call sc = {0};
    pthread_t t;
    struct resp r;

    (void)state;
    sc.port = api_port(srv);
    set_ready(1);
    assert_int_equal(pthread_create(&t, NULL, slow_thread, &sc), 0);
    pthread_mutex_lock(&fake.mu);
    while (!fake.slow_entered) {
        pthread_cond_wait(&fake.cv, &fake.mu);
    }
    pthread_mutex_unlock(&fake.mu);

    http("GET", "/health", NULL, &r);
    expect(&r, 200, "text/plain; charset=utf-8", "ok");
    buf_free(&r.body);
    http("GET", "/ready", NULL, &r);
    expect(&r, 200, "text/plain; charset=utf-8", "ready");
    buf_free(&r.body);
    http("GET", "/metrics", NULL, &r);
    assert_int_equal(r.status, 200);
    buf_free(&r.body);

    pthread_mutex_lock(&fake.mu);
    fake.slow_release = 1;
    pthread_cond_broadcast(&fake.cv);
    pthread_mutex_unlock(&fake.mu);
    pthread_join(t, NULL);
    assert_int_equal(sc.rc, CURLE_OK);
    expect(&sc.r, 200, "application/json", NULL);
    assert_non_null(strstr(buf_str(&sc.r.body), "\"echo\":\"p\""));
    buf_free(&sc.r.body);
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
    struct api_options o = {"127.0.0.1", api_port(srv), 0, NULL, 0};
    struct api_provider partial = provider;
    char err[256], want[128];

    (void)state;
    snprintf(want, sizeof(want), "cannot listen on 127.0.0.1:%ld: Address already in use",
             api_port(srv));
    assert_null(api_start(&o, &provider, err, sizeof(err)));
    assert_string_equal(err, want);

    o.address = "localhost";
    o.port = 8080;
    assert_null(api_start(&o, &provider, err, sizeof(err)));
    assert_string_equal(err, "cannot listen on localhost:8080: not a numeric IPv4 or IPv6 address");

    o.address = "fe80::1:2";
    o.port = 70000;
    assert_null(api_start(&o, &provider, err, sizeof(err)));
    assert_string_equal(err, "cannot listen on [fe80::1:2]:70000: port out of range 0..65535");

    partial.request = NULL;
    o.address = "127.0.0.1";
    o.port = 0;
    o.enable_request = 1;
    assert_null(api_start(&o, &partial, err, sizeof(err)));
    assert_string_equal(err, "api: the provider lacks a callback");

    api_stop(NULL);
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
    api_stop(s);
    assert_int_equal(procstat_read(&after), 0);
    assert_int_equal(after.open_fds, before.open_fds);

    {
        struct api_options o = {"127.0.0.1", port, 0, NULL, 0};
        char err[256] = "";

        s = api_start(&o, &provider, err, sizeof(err));
        if (!s) {
            fail_msg("restart on port %ld: %s", port, err);
        }
        assert_int_equal(api_port(s), port);
        api_stop(s);
    }
}

static void test_ipv6(void **state)
{
    struct api_options o = {"::1", 0, 0, NULL, 0};
    struct api_server *s;
    char err[256] = "";
    struct resp r;

    (void)state;
    s = api_start(&o, &provider, err, sizeof(err));
    if (!s) {
        fail_msg("api_start on ::1: %s", err);
    }
    http_to("[::1]", api_port(s), "GET", "/health", NULL, 0, SEND_PLAIN, &r);
    expect(&r, 200, "text/plain; charset=utf-8", "ok");
    buf_free(&r.body);
    api_stop(s);
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
        cmocka_unit_test_setup_teardown(test_bindings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_bad_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_disabled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_request_does_not_block, setup, teardown),
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
