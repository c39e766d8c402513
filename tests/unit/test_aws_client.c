/* test_aws_client.c - the AWS client: endpoint and credential resolution,
 * error parsing, retries and signing through a fake transport, then real
 * HTTP(S) against a local node server that verifies every signature with
 * AWS's JS signer and counts connections. */
#include "aws/aws_client.h"
#include "aws/aws_creds.h"
#include "aws/aws_endpoint.h"
#include "aws/aws_error.h"
#include "aws/sigv4.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/loop.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "spawn.h"

#define SERVER KK_RIG_DIR "/aws-test-server.js"
#define AK     "AKIATESTCLIENT"
#define SK     "test-secret"

/* ---- helpers ---- */

struct result {
    int done;
    int returned; /* set once aws_client_call has returned */
    int early;    /* done ran before aws_client_call returned */
    long status;
    char *body;
    size_t body_len;
    char type[128];
    char message[1024];
    int has_error;
    int attempts;
};

static void on_done(void *ctx, const struct aws_response *r)
{
    struct result *res = ctx;

    res->done++;
    res->early = !res->returned;
    res->status = r->status;
    free(res->body);
    res->body = malloc(r->body_len + 1);
    memcpy(res->body, r->body, r->body_len);
    res->body[r->body_len] = '\0';
    res->body_len = r->body_len;
    res->has_error = r->error_type != NULL;
    snprintf(res->type, sizeof(res->type), "%s", r->error_type ? r->error_type : "");
    snprintf(res->message, sizeof(res->message), "%s", r->error_message ? r->error_message : "");
    res->attempts = r->attempts;
}

static void result_free(struct result *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static int run_until(struct loop *l, const int *flag, int want, int timeout_s)
{
    time_t end = time(NULL) + timeout_s;

    while (*flag < want && time(NULL) <= end) {
        loop_run_once(l, 50);
    }
    return *flag >= want;
}

static void call_and_wait(struct loop *l, struct aws_client *c, const char *op, const char *body,
                          struct result *res)
{
    memset(res, 0, sizeof(*res));
    assert_int_equal(aws_client_call(c, op, body, strlen(body), on_done, res), 0);
    res->returned = 1;
    assert_true(run_until(l, &res->done, 1, 60));
    assert_int_equal(res->done, 1);
    assert_int_equal(res->early, 0);
}

static void base_options(struct aws_client_options *o)
{
    memset(o, 0, sizeof(*o));
    o->service = "kinesis";
    o->target_prefix = "Kinesis_20131202";
    o->region = "eu-west-1";
    o->access_key = AK;
    o->secret_key = SK;
    o->retry_base_ms = 1;
    o->retry_cap_ms = 5;
}

/* ---- fake transport ---- */

struct fake_reply {
    long status;
    const char *body;
    const char *terr;
    const char *etype;
};

struct held {
    aws_http_done_fn done;
    void *cctx;
};

struct fake {
    struct loop *loop;
    const struct fake_reply *replies;
    int nreplies; /* the last one repeats */
    int sends;
    int async;
    int hold; /* keep requests unanswered (destroy tests) */
    struct held held[8];
    int nheld;
    /* the last request */
    char url[256];
    char headers[8][4096];
    int nheaders;
    char body[256];
    /* async answer */
    struct loop_timer timer;
    aws_http_done_fn pdone;
    void *pcctx;
    const struct fake_reply *preply;
    char *etype_out;
    size_t etype_len;
};

static void fake_answer(struct fake *f, const struct fake_reply *r, aws_http_done_fn done,
                        void *cctx)
{
    if (r->etype && f->etype_out) {
        snprintf(f->etype_out, f->etype_len, "%s", r->etype);
    }
    if (r->terr) {
        done(cctx, 0, NULL, 0, r->terr);
    } else {
        done(cctx, r->status, r->body, r->body ? strlen(r->body) : 0, NULL);
    }
}

static void fake_timer(void *arg)
{
    struct fake *f = arg;

    fake_answer(f, f->preply, f->pdone, f->pcctx);
}

static int fake_send(void *tctx, const struct aws_http_request *req, aws_http_done_fn done,
                     void *cctx)
{
    struct fake *f = tctx;
    const struct fake_reply *r;
    int i;

    snprintf(f->url, sizeof(f->url), "%s", req->url);
    for (i = 0; req->headers[i] && i < 8; i++) {
        snprintf(f->headers[i], sizeof(f->headers[i]), "%s", req->headers[i]);
    }
    f->nheaders = i;
    snprintf(f->body, sizeof(f->body), "%.*s", (int)req->body_len, req->body);
    f->etype_out = req->error_type_hdr;
    f->etype_len = req->error_type_hdr_len;
    r = &f->replies[f->sends < f->nreplies ? f->sends : f->nreplies - 1];
    f->sends++;
    if (f->hold) {
        f->held[f->nheld].done = done;
        f->held[f->nheld].cctx = cctx;
        f->nheld++;
        return 0;
    }
    if (f->async) {
        f->pdone = done;
        f->pcctx = cctx;
        f->preply = r;
        loop_timer_start(f->loop, &f->timer, 0, fake_timer, f);
        return 0;
    }
    fake_answer(f, r, done, cctx);
    return 0;
}

struct fixture {
    struct loop *loop;
    struct fake fake;
    struct aws_transport transport;
    struct aws_client *client;
};

static struct aws_client *fake_client(struct fixture *fx, const struct fake_reply *replies, int n,
                                      int max_attempts, const char *token)
{
    struct aws_client_options o;
    char err[256];

    memset(fx, 0, sizeof(*fx));
    fx->loop = loop_create(err, sizeof(err));
    assert_non_null(fx->loop);
    fx->fake.loop = fx->loop;
    fx->fake.replies = replies;
    fx->fake.nreplies = n;
    loop_timer_init(&fx->fake.timer);
    fx->transport.send = fake_send;
    fx->transport.tctx = &fx->fake;
    base_options(&o);
    o.endpoint = "https://kinesis.example.test:8443";
    o.session_token = token;
    o.max_attempts = max_attempts;
    o.transport = &fx->transport;
    fx->client = aws_client_create(fx->loop, &o, err, sizeof(err));
    if (!fx->client) {
        fail_msg("aws_client_create: %s", err);
    }
    return fx->client;
}

static void fixture_free(struct fixture *fx)
{
    aws_client_destroy(fx->client);
    loop_timer_stop(fx->loop, &fx->fake.timer);
    loop_destroy(fx->loop);
}

static const char *header_value(const struct fake *f, const char *name)
{
    size_t n = strlen(name);
    int i;

    for (i = 0; i < f->nheaders; i++) {
        if (!strncasecmp(f->headers[i], name, n) && f->headers[i][n] == ':') {
            return f->headers[i] + n + 2;
        }
    }
    return NULL;
}

/* Recompute the signature of the request the transport saw. */
static void check_signature(const struct fake *f, const char *token)
{
    struct sigv4_header h[5];
    size_t n = 0;
    struct sigv4_params p = {AK, SK, NULL, "eu-west-1", "kinesis", 0, NULL};
    struct sigv4_request req = {"POST", "/", NULL, h, 0, f->body, strlen(f->body), NULL};
    struct sigv4_result r;
    char err[256];

    h[n++] = (struct sigv4_header){"Host", header_value(f, "Host")};
    h[n++] = (struct sigv4_header){"Content-Type", header_value(f, "Content-Type")};
    h[n++] = (struct sigv4_header){"X-Amz-Target", header_value(f, "X-Amz-Target")};
    h[n++] = (struct sigv4_header){"X-Amz-Date", header_value(f, "X-Amz-Date")};
    if (token) {
        h[n++] =
            (struct sigv4_header){"X-Amz-Security-Token", header_value(f, "X-Amz-Security-Token")};
    }
    for (size_t i = 0; i < n; i++) {
        assert_non_null(h[i].value);
    }
    req.nheaders = n;
    sigv4_result_init(&r);
    assert_int_equal(sigv4_sign(&p, &req, &r, err, sizeof(err)), 0);
    assert_string_equal(buf_str(&r.authorization), header_value(f, "Authorization"));
    sigv4_result_free(&r);
}

/* ---- endpoint, credentials, errors, backoff ---- */

static void test_endpoint_resolve(void **state)
{
    char url[AWS_ENDPOINT_URL_MAX], err[256];
    struct aws_endpoint ep;

    (void)state;
    unsetenv("AWS_ENDPOINT_URL_KINESIS");
    unsetenv("AWS_ENDPOINT_URL");
    assert_int_equal(
        aws_endpoint_resolve(NULL, "kinesis", "us-east-2", url, sizeof(url), err, sizeof(err)), 0);
    assert_string_equal(url, "https://kinesis.us-east-2.amazonaws.com");
    assert_int_equal(
        aws_endpoint_resolve("", "kinesis", "cn-north-1", url, sizeof(url), err, sizeof(err)), 0);
    assert_string_equal(url, "https://kinesis.cn-north-1.amazonaws.com.cn");
    assert_int_equal(
        aws_endpoint_resolve(NULL, "kinesis", "us-east-1/x", url, sizeof(url), err, sizeof(err)),
        -1);
    assert_non_null(strstr(err, "bad region"));
    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1111", 1);
    assert_int_equal(
        aws_endpoint_resolve(NULL, "kinesis", "us-east-1", url, sizeof(url), err, sizeof(err)), 0);
    assert_string_equal(url, "http://127.0.0.1:1111");
    setenv("AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:2222", 1);
    assert_int_equal(
        aws_endpoint_resolve(NULL, "kinesis", "us-east-1", url, sizeof(url), err, sizeof(err)), 0);
    assert_string_equal(url, "http://127.0.0.1:2222");
    setenv("AWS_ENDPOINT_URL_KINESIS_VIDEO", "http://127.0.0.1:3333", 1);
    assert_int_equal(aws_endpoint_resolve(NULL, "kinesis-video", "us-east-1", url, sizeof(url), err,
                                          sizeof(err)),
                     0);
    assert_string_equal(url, "http://127.0.0.1:3333");
    assert_int_equal(aws_endpoint_resolve("https://x.test", "kinesis", "us-east-1", url,
                                          sizeof(url), err, sizeof(err)),
                     0);
    assert_string_equal(url, "https://x.test");
    unsetenv("AWS_ENDPOINT_URL_KINESIS");
    unsetenv("AWS_ENDPOINT_URL_KINESIS_VIDEO");
    unsetenv("AWS_ENDPOINT_URL");

    assert_int_equal(aws_endpoint_parse("http://127.0.0.1:4567", &ep, err, sizeof(err)), 0);
    assert_string_equal(ep.host, "127.0.0.1:4567");
    assert_string_equal(ep.path, "/");
    assert_int_equal(ep.tls, 0);
    assert_int_equal(aws_endpoint_parse("https://Kinesis.Example.com:443/", &ep, err, sizeof(err)),
                     0);
    assert_string_equal(ep.host, "kinesis.example.com");
    assert_int_equal(ep.tls, 1);
    assert_int_equal(aws_endpoint_parse("http://h:80/base/", &ep, err, sizeof(err)), 0);
    assert_string_equal(ep.host, "h");
    assert_string_equal(ep.path, "/base/");
    assert_int_equal(aws_endpoint_parse("https://[::1]:8443", &ep, err, sizeof(err)), 0);
    assert_string_equal(ep.host, "[::1]:8443");
    assert_int_equal(aws_endpoint_parse("ftp://h", &ep, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "http or https"));
    assert_int_equal(aws_endpoint_parse("kinesis.local:4567", &ep, err, sizeof(err)), -1);
    assert_int_equal(aws_endpoint_parse("http://h/?a=b", &ep, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "query"));
    assert_int_equal(aws_endpoint_parse("http://u:p@h/", &ep, err, sizeof(err)), -1);
    /* The password never shows in the message. */
    assert_string_equal(err, "aws endpoint 'http://***@h/': user info (user:password@) is not "
                             "allowed");
    assert_int_equal(aws_endpoint_parse("u:s3cret@h:443", &ep, err, sizeof(err)), -1);
    assert_string_equal(err, "aws endpoint '***@h:443': expected http:// or https://");
    assert_int_equal(aws_endpoint_parse("ftp://u:s3cret@x@h/p@q", &ep, err, sizeof(err)), -1);
    assert_null(strstr(err, "s3cret"));
    assert_int_equal(aws_endpoint_parse("http://h/?a=b", &ep, err, sizeof(err)), -1);
    assert_string_equal(err, "aws endpoint 'http://h/?a=b': a query (?...) is not allowed");
}

static void test_create_errors(void **state)
{
    struct aws_client_options o;
    struct loop *l;
    char err[256];

    (void)state;
    l = loop_create(err, sizeof(err));
    base_options(&o);
    o.access_key = NULL;
    o.secret_key = NULL;
    /* nothing anywhere (the chain itself: test_aws_creds.c) */
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_ROLE_ARN");
    unsetenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
    setenv("AWS_CONFIG_FILE", "/nonexistent/config", 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    assert_null(aws_client_create(l, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "no AWS credentials: tried config, environment"));
    o.access_key = "AK";
    assert_null(aws_client_create(l, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "secret key is empty"));
    base_options(&o);
    o.region = "";
    assert_null(aws_client_create(l, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "region"));
    base_options(&o);
    o.endpoint = "gopher://x";
    assert_null(aws_client_create(l, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "http or https"));
    base_options(&o);
    o.ca_file = "/nonexistent/ca.pem";
    assert_null(aws_client_create(l, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
    aws_client_destroy(NULL);
    loop_destroy(l);
}

static void test_error_parse(void **state)
{
    char t[128], m[256];
    static const char big[] = "<html><body>Bad Gateway</body></html>\n";

    (void)state;
#define PARSE(st, body, hdr)                                                                       \
    aws_error_parse(st, body, strlen(body), hdr, t, sizeof(t), m, sizeof(m))
    PARSE(400, "{\"__type\":\"ResourceNotFoundException\",\"message\":\"Stream x not found.\"}",
          NULL);
    assert_string_equal(t, "ResourceNotFoundException");
    assert_string_equal(m, "Stream x not found.");
    PARSE(400, "{\"__type\":\"com.amazon.coral.service#SerializationException\",\"Message\":\"M\"}",
          NULL);
    assert_string_equal(t, "SerializationException");
    assert_string_equal(m, "M");
    PARSE(400, "{\"__type\":\"UnknownOperationException\"}", NULL);
    assert_string_equal(t, "UnknownOperationException");
    assert_string_equal(m, "");
    PARSE(400, "{\"message\":\"from body\"}",
          "ValidationException:http://internal.amazon.com/coral/com.amazon.coral.validate/");
    assert_string_equal(t, "ValidationException");
    assert_string_equal(m, "from body");
    PARSE(400, "{\"__type\":\"Other\"}", "aws.proto#ThrottlingException");
    assert_string_equal(t, "ThrottlingException");
    PARSE(502, big, NULL);
    assert_string_equal(t, "HTTP502");
    assert_string_equal(m, "<html><body>Bad Gateway</body></html>");
    PARSE(404, "", NULL);
    assert_string_equal(t, "HTTP404");
    assert_string_equal(m, "HTTP status 404 with an empty body");
    PARSE(500, "[1,2]", "");
    assert_string_equal(t, "HTTP500");
    /* A type from the network goes into log lines and metric labels. */
    PARSE(400, "{}", "Bad\rType\x01\xff\"x\"");
    assert_string_equal(t, "Bad_Type__\"x\"");
    PARSE(400, "{\"__type\":\"ns#Na me\\u0007x\"}", NULL);
    assert_string_equal(t, "Na_me_x");
#undef PARSE
    assert_true(aws_error_is_retryable(400, "ProvisionedThroughputExceededException"));
    assert_true(aws_error_is_retryable(400, "KMSThrottlingException"));
    assert_true(aws_error_is_retryable(400, "LimitExceededException"));
    assert_true(aws_error_is_retryable(400, "ThrottlingException"));
    assert_true(aws_error_is_retryable(503, "HTTP503"));
    assert_true(aws_error_is_retryable(0, "TransportError"));
    assert_false(aws_error_is_retryable(400, "ValidationException"));
    assert_false(aws_error_is_retryable(400, "ResourceNotFoundException"));
    assert_false(aws_error_is_retryable(403, "HTTP403"));
    assert_false(aws_error_is_retryable(200, "ResponseTooLarge"));
}

static void test_backoff(void **state)
{
    (void)state;
    assert_int_equal(aws_backoff_ms(0, 50, 5000, 0), 0);
    assert_int_equal(aws_backoff_ms(0, 50, 5000, 50), 50);
    assert_int_equal(aws_backoff_ms(0, 50, 5000, 51), 0); /* 51 % 51 */
    assert_int_equal(aws_backoff_ms(3, 50, 5000, 400), 400);
    assert_int_equal(aws_backoff_ms(3, 50, 5000, 401), 0);
    for (unsigned long long r = 0; r < 100000; r += 997) {
        assert_true(aws_backoff_ms(10, 50, 5000, r * 7919) <= 5000);
        assert_true(aws_backoff_ms(63, 50, 5000, r * 7919) <= 5000);
        assert_true(aws_backoff_ms(2, 50, 5000, r) <= 200);
    }
    assert_int_equal(aws_backoff_ms(100, 50, 5000, ~0ULL), (long)(~0ULL % 5001));
    assert_int_equal(aws_backoff_ms(1, 0, 5000, 12345), 0);
}

/* ---- the client over a fake transport ---- */

static void test_success_and_headers(void **state)
{
    static const struct fake_reply ok[] = {{200, "{\"SequenceNumber\":\"1\"}", NULL, NULL}};
    struct fixture fx;
    struct result r;

    (void)state;
    fake_client(&fx, ok, 1, 3, "SESSION/TOKEN+=");
    call_and_wait(fx.loop, fx.client, "PutRecord", "{\"StreamName\":\"s\"}", &r);
    assert_int_equal(r.status, 200);
    assert_false(r.has_error);
    assert_string_equal(r.body, "{\"SequenceNumber\":\"1\"}");
    assert_int_equal(r.attempts, 1);
    assert_string_equal(fx.fake.url, "https://kinesis.example.test:8443/");
    assert_string_equal(header_value(&fx.fake, "Host"), "kinesis.example.test:8443");
    assert_string_equal(header_value(&fx.fake, "Content-Type"), "application/x-amz-json-1.1");
    assert_string_equal(header_value(&fx.fake, "X-Amz-Target"), "Kinesis_20131202.PutRecord");
    assert_string_equal(header_value(&fx.fake, "X-Amz-Security-Token"), "SESSION/TOKEN+=");
    assert_int_equal(strlen(header_value(&fx.fake, "X-Amz-Date")), 16);
    assert_non_null(strstr(header_value(&fx.fake, "Authorization"),
                           "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;"
                           "x-amz-target, Signature="));
    assert_string_equal(fx.fake.body, "{\"StreamName\":\"s\"}");
    check_signature(&fx.fake, "SESSION/TOKEN+=");
    result_free(&r);
    fixture_free(&fx);
}

static void test_sync_transport_never_early(void **state)
{
    static const struct fake_reply ok[] = {{200, "{}", NULL, NULL}};
    struct fixture fx;
    struct result r;

    (void)state;
    fake_client(&fx, ok, 1, 3, NULL);
    call_and_wait(fx.loop, fx.client, "ListStreams", "{}", &r); /* checks r.early */
    assert_null(header_value(&fx.fake, "X-Amz-Security-Token"));
    check_signature(&fx.fake, NULL);
    result_free(&r);
    fixture_free(&fx);
}

static void test_error_variants(void **state)
{
    static const struct fake_reply rnf[] = {
        {400, "{\"__type\":\"ResourceNotFoundException\",\"message\":\"Stream s not found.\"}",
         NULL, NULL}};
    static const struct fake_reply hdr[] = {
        {400, "{\"message\":\"1 validation error\"}", NULL, "ValidationException:http://x/"}};
    static const struct fake_reply html[] = {{403, "<html>Forbidden</html>", NULL, NULL}};
    struct fixture fx;
    struct result r;

    (void)state;
    fake_client(&fx, rnf, 1, 3, NULL);
    fx.fake.async = 1;
    call_and_wait(fx.loop, fx.client, "DescribeStream", "{}", &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.type, "ResourceNotFoundException");
    assert_string_equal(r.message, "Stream s not found.");
    assert_int_equal(r.attempts, 1); /* not-found is not retried */
    assert_non_null(strstr(r.body, "not found"));
    result_free(&r);
    fixture_free(&fx);

    fake_client(&fx, hdr, 1, 3, NULL);
    call_and_wait(fx.loop, fx.client, "PutRecord", "{}", &r);
    assert_string_equal(r.type, "ValidationException");
    assert_string_equal(r.message, "1 validation error");
    assert_int_equal(r.attempts, 1);
    result_free(&r);
    fixture_free(&fx);

    fake_client(&fx, html, 1, 3, NULL);
    call_and_wait(fx.loop, fx.client, "PutRecord", "{}", &r);
    assert_string_equal(r.type, "HTTP403");
    assert_string_equal(r.message, "<html>Forbidden</html>");
    assert_int_equal(r.attempts, 1);
    result_free(&r);
    fixture_free(&fx);
}

static void test_retries(void **state)
{
    static const struct fake_reply throttle_then_ok[] = {
        {400, "{\"__type\":\"ProvisionedThroughputExceededException\",\"message\":\"slow\"}", NULL,
         NULL},
        {200, "{\"ok\":1}", NULL, NULL}};
    static const struct fake_reply five_xx[] = {
        {500, "", NULL, NULL}, {503, "<html>busy</html>", NULL, NULL}, {200, "{}", NULL, NULL}};
    static const struct fake_reply transport[] = {
        {0, NULL, "Couldn't connect to server: Connection refused", NULL}, {200, "{}", NULL, NULL}};
    static const struct fake_reply always[] = {
        {400, "{\"__type\":\"KMSThrottlingException\",\"message\":\"kms\"}", NULL, NULL}};
    static const struct fake_reply validation[] = {
        {400, "{\"__type\":\"ValidationException\",\"message\":\"bad\"}", NULL, NULL},
        {200, "{}", NULL, NULL}};
    struct fixture fx;
    struct result r;

    (void)state;
    fake_client(&fx, throttle_then_ok, 2, 3, NULL);
    call_and_wait(fx.loop, fx.client, "PutRecord", "{}", &r);
    assert_int_equal(r.status, 200);
    assert_false(r.has_error);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(fx.fake.sends, 2);
    check_signature(&fx.fake, NULL); /* the retry was signed again */
    result_free(&r);
    fixture_free(&fx);

    fake_client(&fx, five_xx, 3, 3, NULL);
    fx.fake.async = 1;
    call_and_wait(fx.loop, fx.client, "PutRecord", "{}", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 3);
    result_free(&r);
    fixture_free(&fx);

    fake_client(&fx, transport, 2, 3, NULL);
    call_and_wait(fx.loop, fx.client, "PutRecord", "{}", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 2);
    result_free(&r);
    fixture_free(&fx);

    fake_client(&fx, always, 1, 4, NULL);
    call_and_wait(fx.loop, fx.client, "PutRecord", "{}", &r);
    assert_string_equal(r.type, "KMSThrottlingException");
    assert_string_equal(r.message, "kms");
    assert_int_equal(r.attempts, 4);
    assert_int_equal(fx.fake.sends, 4);
    result_free(&r);
    fixture_free(&fx);

    fake_client(&fx, validation, 2, 5, NULL);
    call_and_wait(fx.loop, fx.client, "PutRecord", "{}", &r);
    assert_string_equal(r.type, "ValidationException");
    assert_int_equal(r.attempts, 1);
    assert_int_equal(fx.fake.sends, 1);
    result_free(&r);
    fixture_free(&fx);

    /* max_attempts 1: no AWS-level retry at all */
    fake_client(&fx, transport, 2, 1, NULL);
    call_and_wait(fx.loop, fx.client, "PutRecord", "{}", &r);
    assert_string_equal(r.type, "TransportError");
    assert_string_equal(r.message, "Couldn't connect to server: Connection refused");
    assert_int_equal(r.status, 0);
    assert_int_equal(r.attempts, 1);
    result_free(&r);
    fixture_free(&fx);
}

/* A huge base with a small cap: without the cap the retries would sleep
 * for hours and run_until would give up. */
static void test_backoff_capped_in_client(void **state)
{
    static const struct fake_reply always[] = {
        {400, "{\"__type\":\"ThrottlingException\",\"message\":\"t\"}", NULL, NULL}};
    struct aws_client_options o;
    struct fixture fx;
    struct result r;
    char err[256];

    (void)state;
    fake_client(&fx, always, 1, 3, NULL);
    aws_client_destroy(fx.client);
    base_options(&o);
    o.endpoint = "http://127.0.0.1:9";
    o.max_attempts = 5;
    o.retry_base_ms = 10L * 1000 * 1000;
    o.retry_cap_ms = 20;
    o.transport = &fx.transport;
    fx.client = aws_client_create(fx.loop, &o, err, sizeof(err));
    assert_non_null(fx.client);
    call_and_wait(fx.loop, fx.client, "PutRecord", "{}", &r);
    assert_int_equal(r.attempts, 5);
    assert_string_equal(r.type, "ThrottlingException");
    result_free(&r);
    fixture_free(&fx);
}

static void test_response_cap_fake(void **state)
{
    static const struct fake_reply big[] = {{200, "0123456789abcdefghij", NULL, NULL}};
    struct aws_client_options o;
    struct fixture fx;
    struct result r;
    char err[256];

    (void)state;
    fake_client(&fx, big, 1, 3, NULL);
    aws_client_destroy(fx.client);
    base_options(&o);
    o.endpoint = "http://127.0.0.1:9";
    o.max_response_bytes = 10;
    o.transport = &fx.transport;
    fx.client = aws_client_create(fx.loop, &o, err, sizeof(err));
    assert_non_null(fx.client);
    call_and_wait(fx.loop, fx.client, "GetRecords", "{}", &r);
    assert_string_equal(r.type, "ResponseTooLarge");
    assert_int_equal(r.attempts, 1);
    result_free(&r);
    fixture_free(&fx);
}

/* destroy answers what is in flight and what waits for a retry; the
 * transport may answer later without harm. */
static void test_destroy_in_flight(void **state)
{
    static const struct fake_reply ok[] = {{200, "{}", NULL, NULL}};
    struct fixture fx;
    struct result a, b;
    int i;

    (void)state;
    fake_client(&fx, ok, 1, 3, NULL);
    fx.fake.hold = 1;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    assert_int_equal(aws_client_call(fx.client, "PutRecord", "{}", 2, on_done, &a), 0);
    a.returned = 1;
    assert_true(run_until(fx.loop, &fx.fake.sends, 1, 10));
    assert_int_equal(aws_client_call(fx.client, "PutRecord", "{}", 2, on_done, &b), 0);
    b.returned = 1;
    /* b not sent yet (its first attempt waits for the loop) */
    aws_client_destroy(fx.client);
    fx.client = NULL;
    assert_int_equal(a.done, 1);
    assert_string_equal(a.type, "TransportError");
    assert_non_null(strstr(a.message, "in flight"));
    assert_int_equal(b.done, 1);
    assert_string_equal(b.type, "TransportError");
    assert_non_null(strstr(b.message, "before the request was sent"));
    /* the transport answers late: nobody is called again */
    for (i = 0; i < fx.fake.nheld; i++) {
        fx.fake.held[i].done(fx.fake.held[i].cctx, 200, "{}", 2, NULL);
    }
    assert_int_equal(a.done, 1);
    result_free(&a);
    result_free(&b);
    fixture_free(&fx);
}

struct destroy_ctx {
    struct aws_client **client;
    struct result r;
};

static void on_done_destroy(void *ctx, const struct aws_response *resp)
{
    struct destroy_ctx *d = ctx;

    on_done(&d->r, resp);
    aws_client_destroy(*d->client);
    *d->client = NULL;
}

static void test_destroy_from_callback(void **state)
{
    static const struct fake_reply ok[] = {{200, "{}", NULL, NULL}};
    struct fixture fx;
    struct destroy_ctx d;

    (void)state;
    fake_client(&fx, ok, 1, 3, NULL);
    memset(&d, 0, sizeof(d));
    d.client = &fx.client;
    d.r.returned = 1;
    assert_int_equal(aws_client_call(fx.client, "PutRecord", "{}", 2, on_done_destroy, &d), 0);
    assert_true(run_until(fx.loop, &d.r.done, 1, 10));
    assert_null(fx.client);
    assert_int_equal(d.r.status, 200);
    result_free(&d.r);
    fixture_free(&fx);
}

/* ---- real HTTP against the node server ---- */

struct server {
    struct spawned sp;
    int port;
};

static void server_start(struct server *s, const char *key, const char *cert)
{
    char *argv_plain[] = {"node", SERVER, "--secret", SK, "--parent-watch", NULL};
    char *argv_tls[] = {"node",       SERVER,       "--secret",       SK,  "--tls-key", (char *)key,
                        "--tls-cert", (char *)cert, "--parent-watch", NULL};
    char line[256];
    json_t *j;

    assert_int_equal(spawn_start(&s->sp, key ? argv_tls : argv_plain), 0);
    if (spawn_read_line(&s->sp, line, sizeof(line), 30) < 0) {
        spawn_stop(&s->sp);
        fail_msg("aws-test-server did not start");
    }
    j = json_loads(line, 0, NULL);
    assert_true(json_is_true(json_object_get(j, "ready")));
    s->port = (int)json_integer_value(json_object_get(j, "port"));
    json_decref(j);
    assert_true(s->port > 0);
}

static struct aws_client *http_client(struct loop *l, const char *scheme, int port,
                                      const char *ca_file, int http2, int max_attempts,
                                      const char *token)
{
    struct aws_client_options o;
    char endpoint[128], err[512];
    struct aws_client *c;

    base_options(&o);
    snprintf(endpoint, sizeof(endpoint), "%s://127.0.0.1:%d", scheme, port);
    o.endpoint = endpoint;
    o.ca_file = ca_file;
    o.http2 = http2;
    o.max_attempts = max_attempts;
    o.session_token = token;
    o.request_timeout_ms = 20000;
    c = aws_client_create(l, &o, err, sizeof(err));
    if (!c) {
        fail_msg("aws_client_create: %s", err);
    }
    return c;
}

static json_t *json_of(const struct result *r)
{
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);

    if (!j) {
        fail_msg("not JSON (status %ld, %s %s): %.200s", r->status, r->type, r->message, r->body);
    }
    return j;
}

static int free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void test_http_keepalive_and_signing(void **state)
{
    struct server s;
    struct loop *l;
    struct aws_client *c;
    struct result r, many[16];
    char err[256], body[256];
    json_t *j;
    int i, done = 0;
    struct buf big = BUF_INIT(0);

    (void)state;
    server_start(&s, NULL, NULL);
    l = loop_create(err, sizeof(err));
    c = http_client(l, "http", s.port, NULL, 0, 3, "SESSION-TOKEN/+=");
    /* one after another: one TCP connection, every signature verified */
    for (i = 0; i < 5; i++) {
        snprintf(body, sizeof(body), "{\"n\":%d}", i);
        call_and_wait(l, c, "Echo", body, &r);
        assert_int_equal(r.status, 200);
        j = json_of(&r);
        assert_true(json_is_true(json_object_get(j, "verified")));
        assert_int_equal(json_integer_value(json_object_get(j, "connections")), 1);
        assert_string_equal(json_string_value(json_object_get(j, "target")),
                            "Kinesis_20131202.Echo");
        assert_int_equal(json_integer_value(json_object_get(j, "bodyLength")), strlen(body));
        assert_string_equal(json_string_value(json_object_get(j, "httpVersion")), "1.1");
        json_decref(j);
        result_free(&r);
    }
    /* many in flight at once */
    memset(many, 0, sizeof(many));
    for (i = 0; i < 16; i++) {
        many[i].returned = 1;
        assert_int_equal(aws_client_call(c, "Echo", "{}", 2, on_done, &many[i]), 0);
    }
    for (i = 0; i < 16; i++) {
        assert_true(run_until(l, &many[i].done, 1, 60));
        assert_int_equal(many[i].status, 200);
        j = json_of(&many[i]);
        assert_true(json_is_true(json_object_get(j, "verified")));
        json_decref(j);
        done++;
        result_free(&many[i]);
    }
    assert_int_equal(done, 16);
    call_and_wait(l, c, "Stats", "{}", &r);
    j = json_of(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "requests")), 5 + 16 + 1);
    /* more connections only for the concurrent burst, and never one per request */
    assert_true(json_integer_value(json_object_get(j, "connections")) <= 16);
    json_decref(j);
    result_free(&r);
    /* a 2 MiB body (curl would wait for 100-continue; the signature still holds) */
    buf_append_str(&big, "{\"Data\":\"");
    while (big.len < (2u << 20)) {
        buf_append_str(&big, "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=");
    }
    buf_append_str(&big, "\"}");
    memset(&r, 0, sizeof(r));
    r.returned = 1;
    assert_int_equal(aws_client_call(c, "Echo", big.data, big.len, on_done, &r), 0);
    assert_true(run_until(l, &r.done, 1, 60));
    j = json_of(&r);
    assert_true(json_is_true(json_object_get(j, "verified")));
    assert_int_equal(json_integer_value(json_object_get(j, "bodyLength")), big.len);
    json_decref(j);
    result_free(&r);
    buf_free(&big);
    aws_client_destroy(c);
    loop_destroy(l);
    spawn_stop(&s.sp);
}

static void test_http_errors_and_retries(void **state)
{
    struct server s;
    struct loop *l;
    struct aws_client *c;
    struct aws_client_options o;
    struct result r;
    char err[256], endpoint[64];

    (void)state;
    server_start(&s, NULL, NULL);
    l = loop_create(err, sizeof(err));
    c = http_client(l, "http", s.port, NULL, 0, 3, NULL);
    call_and_wait(l, c, "FailTimes",
                  "{\"key\":\"a\",\"times\":1,\"type\":\"ProvisionedThroughputExceededException\","
                  "\"message\":\"Rate exceeded for shard shardId-000000000000\"}",
                  &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 2);
    assert_string_equal(r.body, "{\"attempt\":2}");
    result_free(&r);
    call_and_wait(l, c, "FailTimes", "{\"key\":\"b\",\"times\":2,\"status\":503,\"body\":\"oops\"}",
                  &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 3);
    result_free(&r);
    call_and_wait(l, c, "FailTimes",
                  "{\"key\":\"c\",\"times\":9,\"status\":400,\"type\":\"ValidationException\","
                  "\"message\":\"1 validation error detected\"}",
                  &r);
    assert_int_equal(r.status, 400);
    assert_int_equal(r.attempts, 1);
    assert_string_equal(r.type, "ValidationException");
    assert_string_equal(r.message, "1 validation error detected");
    result_free(&r);
    call_and_wait(l, c, "Raw",
                  "{\"status\":400,\"header\":\"ResourceNotFoundException:http://x/\","
                  "\"body\":\"{\\\"message\\\":\\\"gone\\\"}\"}",
                  &r);
    assert_string_equal(r.type, "ResourceNotFoundException");
    assert_string_equal(r.message, "gone");
    result_free(&r);
    call_and_wait(l, c, "NoSuchOp", "{}", &r);
    assert_string_equal(r.type, "UnknownOperationException");
    result_free(&r);
    aws_client_destroy(c);

    /* response over the cap */
    base_options(&o);
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", s.port);
    o.endpoint = endpoint;
    o.max_response_bytes = 1000;
    c = aws_client_create(l, &o, err, sizeof(err));
    assert_non_null(c);
    call_and_wait(l, c, "Big", "{\"size\":5000}", &r);
    assert_string_equal(r.type, "ResponseTooLarge");
    assert_int_equal(r.attempts, 1);
    result_free(&r);
    call_and_wait(l, c, "Big", "{\"size\":900}", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 900);
    result_free(&r);
    aws_client_destroy(c);

    /* request timeout: a transport error, retried, then reported */
    base_options(&o);
    o.endpoint = endpoint;
    o.request_timeout_ms = 300;
    o.max_attempts = 2;
    c = aws_client_create(l, &o, err, sizeof(err));
    assert_non_null(c);
    call_and_wait(l, c, "Hang", "{}", &r);
    assert_string_equal(r.type, "TransportError");
    printf("timeout: %s\n", r.message);
    assert_non_null(strstr(r.message, "Timeout"));
    assert_int_equal(r.attempts, 2);
    result_free(&r);
    aws_client_destroy(c);
    loop_destroy(l);
    spawn_stop(&s.sp);
}

static void test_http_connection_refused(void **state)
{
    struct loop *l;
    struct aws_client *c;
    struct result r;
    char err[256], hostport[64];
    int port = free_port();

    (void)state;
    l = loop_create(err, sizeof(err));
    c = http_client(l, "http", port, NULL, 0, 2, NULL);
    call_and_wait(l, c, "PutRecord", "{}", &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.type, "TransportError");
    printf("connection refused: %s\n", r.message);
    assert_non_null(strstr(r.message, "Couldn't connect to server"));
    assert_non_null(strstr(r.message, "Connection refused"));
    snprintf(hostport, sizeof(hostport), "127.0.0.1:%d", port);
    assert_non_null(strstr(r.message, hostport));
    assert_int_equal(r.attempts, 2);
    result_free(&r);
    /* destroy with a call in flight in libcurl: answered at once */
    memset(&r, 0, sizeof(r));
    r.returned = 1;
    assert_int_equal(aws_client_call(c, "PutRecord", "{}", 2, on_done, &r), 0);
    loop_run_once(l, 0);
    aws_client_destroy(c);
    assert_int_equal(r.done, 1);
    assert_string_equal(r.type, "TransportError");
    result_free(&r);
    loop_destroy(l);
}

/* A throwaway CA-less self-signed cert for 127.0.0.1, made with libcrypto. */
static void make_cert(const char *key_path, const char *cert_path)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name;
    X509_EXTENSION *ext;
    X509V3_CTX ctx;
    FILE *f;

    assert_non_null(pk);
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pk);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"127.0.0.1", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, "IP:127.0.0.1");
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
    f = fopen(key_path, "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    f = fopen(cert_path, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
}

static void test_https_verify_ca_and_http2(void **state)
{
    char dir[] = "/tmp/kk-aws-tls-XXXXXX", key[128], cert[128], err[256];
    struct server s;
    struct loop *l;
    struct aws_client *c;
    struct result r;
    json_t *j;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    make_cert(key, cert);
    server_start(&s, key, cert);
    l = loop_create(err, sizeof(err));

    /* verified by default: the self-signed cert is refused */
    c = http_client(l, "https", s.port, NULL, 0, 1, NULL);
    call_and_wait(l, c, "Echo", "{}", &r);
    assert_string_equal(r.type, "TransportError");
    printf("untrusted: %s\n", r.message);
    assert_non_null(strstr(r.message, "certificate"));
    result_free(&r);
    aws_client_destroy(c);

    /* with its CA file: HTTP/1.1 unless asked for HTTP/2 */
    c = http_client(l, "https", s.port, cert, 0, 1, NULL);
    call_and_wait(l, c, "Echo", "{}", &r);
    j = json_of(&r);
    assert_true(json_is_true(json_object_get(j, "verified")));
    assert_string_equal(json_string_value(json_object_get(j, "httpVersion")), "1.1");
    json_decref(j);
    result_free(&r);
    aws_client_destroy(c);

    c = http_client(l, "https", s.port, cert, 1, 1, "TOKEN");
    call_and_wait(l, c, "Echo", "{}", &r);
    j = json_of(&r);
    assert_true(json_is_true(json_object_get(j, "verified")));
    assert_string_equal(json_string_value(json_object_get(j, "httpVersion")), "2.0");
    json_decref(j);
    result_free(&r);
    aws_client_destroy(c);

    loop_destroy(l);
    spawn_stop(&s.sp);
    unlink(key);
    unlink(cert);
    rmdir(dir);
}

static void test_http_connection_limit(void **state)
{
    struct server s;
    struct loop *l;
    struct aws_client *c;
    struct aws_client_options o;
    struct result many[10], r;
    char err[256], endpoint[64];
    json_t *j;
    int i;

    (void)state;
    server_start(&s, NULL, NULL);
    l = loop_create(err, sizeof(err));
    base_options(&o);
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", s.port);
    o.endpoint = endpoint;
    o.max_connections = 2;
    c = aws_client_create(l, &o, err, sizeof(err));
    assert_non_null(c);
    memset(many, 0, sizeof(many));
    for (i = 0; i < 10; i++) {
        many[i].returned = 1;
        assert_int_equal(aws_client_call(c, "Echo", "{}", 2, on_done, &many[i]), 0);
    }
    for (i = 0; i < 10; i++) {
        assert_true(run_until(l, &many[i].done, 1, 60));
        assert_int_equal(many[i].status, 200);
        result_free(&many[i]);
    }
    call_and_wait(l, c, "Stats", "{}", &r);
    j = json_of(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "requests")), 11);
    assert_true(json_integer_value(json_object_get(j, "connections")) <= 2);
    json_decref(j);
    result_free(&r);
    /* Past the two connections, requests wait in the client (not in curl);
     * a destroy answers the waiting ones as well as those on the wire. */
    memset(many, 0, sizeof(many));
    for (i = 0; i < 6; i++) {
        many[i].returned = 1;
        assert_int_equal(aws_client_call(c, "Hang", "{}", 2, on_done, &many[i]), 0);
    }
    for (i = 0; i < 20; i++) {
        loop_run_once(l, 20);
    }
    for (i = 0; i < 6; i++) {
        assert_int_equal(many[i].done, 0);
    }
    aws_client_destroy(c);
    for (i = 0; i < 6; i++) {
        assert_int_equal(many[i].done, 1);
        assert_int_equal(many[i].status, 0);
        assert_string_equal(many[i].type, "TransportError");
        result_free(&many[i]);
    }
    c = aws_client_create(l, &o, err, sizeof(err));
    assert_non_null(c);
    /* Only two of the six reached the server. */
    call_and_wait(l, c, "Stats", "{}", &r);
    j = json_of(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "requests")), 11 + 2 + 1);
    json_decref(j);
    result_free(&r);
    /* unusable operation names are refused up front */
    assert_int_equal(aws_client_call(c, "", "{}", 2, on_done, &r), -1);
    memset(err, 'x', sizeof(err));
    err[sizeof(err) - 1] = '\0';
    assert_int_equal(aws_client_call(c, err, "{}", 2, on_done, &r), -1);
    aws_client_destroy(c);
    loop_destroy(l);
    spawn_stop(&s.sp);
}

/* The HTTP/1.1 client's framings: chunked answers, 100 Continue, a close
 * after the answer, an answer ended by the close, a short answer, no
 * answer, and a kept-alive connection the server closed while idle (the
 * next request goes on a new one, unseen by the caller). */
static void test_http1_framings(void **state)
{
    struct server s;
    struct loop *l;
    struct aws_client *c;
    struct result r;
    char err[256];
    json_t *j;
    int i;

    (void)state;
    server_start(&s, NULL, NULL);
    l = loop_create(err, sizeof(err));
    c = http_client(l, "http", s.port, NULL, 0, 1, NULL);

    call_and_wait(l, c, "Chunked", "{\"pieces\":[\"{\\\"a\\\":\",\"\\\"xyz\\\"\",\"}\"]}", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 11);
    assert_memory_equal(r.body, "{\"a\":\"xyz\"}", 11);
    result_free(&r);
    /* a large chunked answer arrives in many reads */
    {
        struct buf b = BUF_INIT(0);

        buf_append_str(&b, "{\"pieces\":[");
        for (i = 0; i < 40; i++) {
            buf_appendf(&b, "%s\"%0*d\"", i ? "," : "", 4000, i);
        }
        buf_append_str(&b, "]}");
        call_and_wait(l, c, "Chunked", b.data, &r);
        buf_free(&b);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_len, 40 * 4000);
        assert_memory_equal(r.body + 39 * 4000, "00", 2);
        result_free(&r);
    }
    call_and_wait(l, c, "Continue", "{}", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"continued\":true}");
    result_free(&r);
    call_and_wait(l, c, "Close", "{}", &r);
    assert_string_equal(r.body, "{\"closed\":true}");
    result_free(&r);
    call_and_wait(l, c, "ToClose", "{\"body\":\"{\\\"until\\\":\\\"close\\\"}\"}", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"until\":\"close\"}");
    result_free(&r);
    call_and_wait(l, c, "Partial", "{\"length\":100,\"body\":\"{}\"}", &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.type, "TransportError");
    printf("partial: %s\n", r.message);
    assert_non_null(strstr(r.message, "98 bytes remaining"));
    result_free(&r);
    /* An answer while the request is still going out (12 MB): the
     * connection is not reused, whatever the server does with the rest. */
    {
        struct buf b = BUF_INIT(0);

        buf_append_str(&b, "{\"pad\":\"");
        while (b.len < (12u << 20)) {
            buf_append_str(&b, "0123456789abcdef0123456789abcdef");
        }
        buf_append_str(&b, "\"}");
        memset(&r, 0, sizeof(r));
        r.returned = 1;
        assert_int_equal(aws_client_call(c, "Early", b.data, b.len, on_done, &r), 0);
        assert_true(run_until(l, &r.done, 1, 60));
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "{\"early\":true}");
        result_free(&r);
        buf_free(&b);
        call_and_wait(l, c, "Echo", "{\"after\":\"early\"}", &r);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.attempts, 1);
        result_free(&r);
    }
    call_and_wait(l, c, "Abort", "{}", &r);
    assert_int_equal(r.status, 0);
    printf("abort: %s\n", r.message);
    assert_non_null(strstr(r.message, "Empty reply from server"));
    result_free(&r);
    /* The server closes the idle connection 20 ms after each answer. Seen
     * by the loop (even rounds), the connection is gone before the next
     * request; unseen (odd rounds: the close came while the loop slept),
     * the next request goes out on it, finds it closed and is sent again
     * on a new connection - one attempt as the caller sees it. */
    for (i = 0; i < 6; i++) {
        call_and_wait(l, c, "DropIdle", "{}", &r);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.attempts, 1);
        result_free(&r);
        if (i % 2) {
            usleep(150 * 1000);
        } else {
            int k;

            for (k = 0; k < 15; k++) {
                loop_run_once(l, 10);
            }
        }
    }
    call_and_wait(l, c, "Echo", "{}", &r);
    j = json_of(&r);
    assert_true(json_is_true(json_object_get(j, "verified")));
    /* our own client adds no Accept header (libcurl would) */
    assert_null(strstr(r.body, "\"Accept\""));
    json_decref(j);
    result_free(&r);
    aws_client_destroy(c);

    /* By name: "localhost" from the hosts file, looked up on the loop
     * (c-ares); an address that refuses (::1 when the server listens on
     * 127.0.0.1 only) gives way to the next. */
    {
        struct aws_client_options o;
        char endpoint[64];

        base_options(&o);
        snprintf(endpoint, sizeof(endpoint), "http://localhost:%d", s.port);
        o.endpoint = endpoint;
        o.max_attempts = 1;
        c = aws_client_create(l, &o, err, sizeof(err));
        assert_non_null(c);
        call_and_wait(l, c, "Echo", "{}", &r);
        assert_int_equal(r.status, 200);
        j = json_of(&r);
        assert_true(json_is_true(json_object_get(j, "verified")));
        assert_non_null(strstr(r.body, "localhost:"));
        json_decref(j);
        result_free(&r);
        aws_client_destroy(c);
    }

    /* A proxy in the environment: libcurl carries the calls (no_proxy
     * keeps them on loopback), and adds its Accept header. */
    setenv("https_proxy", "http://127.0.0.1:9", 1);
    c = http_client(l, "http", s.port, NULL, 0, 1, NULL);
    call_and_wait(l, c, "Echo", "{}", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"Accept\""));
    result_free(&r);
    aws_client_destroy(c);
    unsetenv("https_proxy");

    loop_destroy(l);
    spawn_stop(&s.sp);
}

/* Debug lines name the operation, status, attempts and duration, and
 * never a key, token or signature. */
static void test_debug_log_has_no_secrets(void **state)
{
    static const struct fake_reply ok[] = {{200, "{}", NULL, NULL}};
    char path[] = "/tmp/kk-aws-log-XXXXXX", text[8192], sig[80];
    struct fixture fx;
    struct result r;
    const char *auth;
    int fd;
    ssize_t n;

    (void)state;
    fd = mkstemp(path);
    assert_true(fd >= 0);
    log_setup(LOG_LEVEL_DEBUG, LOG_FORMAT_TEXT);
    log_set_fd(fd);
    fake_client(&fx, ok, 1, 3, "SECRET-SESSION-TOKEN");
    call_and_wait(fx.loop, fx.client, "PutRecord", "{}", &r);
    auth = strstr(header_value(&fx.fake, "Authorization"), "Signature=");
    assert_non_null(auth);
    snprintf(sig, sizeof(sig), "%s", auth + strlen("Signature="));
    result_free(&r);
    fixture_free(&fx);
    log_set_fd(-1);
    log_setup(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    n = pread(fd, text, sizeof(text) - 1, 0);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    text[n] = '\0';
    printf("%s", text);
    assert_non_null(strstr(text, "PutRecord"));
    assert_non_null(strstr(text, "attempts=1"));
    assert_non_null(strstr(text, "duration_ms="));
    assert_null(strstr(text, SK));
    assert_null(strstr(text, "SECRET-SESSION-TOKEN"));
    assert_null(strstr(text, sig));
}

int main(void)
{
    /* loopback only, whatever proxy the environment names */
    setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    setenv("no_proxy", "127.0.0.1,localhost", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint_resolve),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_error_parse),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_success_and_headers),
        cmocka_unit_test(test_sync_transport_never_early),
        cmocka_unit_test(test_error_variants),
        cmocka_unit_test(test_retries),
        cmocka_unit_test(test_backoff_capped_in_client),
        cmocka_unit_test(test_response_cap_fake),
        cmocka_unit_test(test_destroy_in_flight),
        cmocka_unit_test(test_destroy_from_callback),
        cmocka_unit_test(test_http_keepalive_and_signing),
        cmocka_unit_test(test_http_errors_and_retries),
        cmocka_unit_test(test_http_connection_refused),
        cmocka_unit_test(test_https_verify_ca_and_http2),
        cmocka_unit_test(test_http_connection_limit),
        cmocka_unit_test(test_http1_framings),
        cmocka_unit_test(test_debug_log_has_no_secrets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
