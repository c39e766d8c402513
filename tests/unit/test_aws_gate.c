/* test_aws_gate.c - the AWS client against real peers: kinesalite behind
 * the rig's gate, which verifies every SigV4 signature (session token
 * included) with AWS's JS signer and injects throttling, dropped
 * connections and 5xx on demand. */
#include "aws/aws_client.h"
#include "base/loop.h"

#include <curl/curl.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "spawn.h"

#define AK     "AKIAGATETEST"
#define SK     "gate/secret+key"
#define TOKEN  "IQoJb3JpZ2luX2VjEJr//////////session+token/=="
#define STREAM "aws-client-gate"

struct peers {
    struct spawned kinesalite;
    struct spawned gate;
    char gate_url[128];
};

static struct peers P;

static int ready_url(struct spawned *sp, char *url, size_t cap)
{
    char line[512];
    json_t *j;
    int ok;

    if (spawn_read_line(sp, line, sizeof(line), 60) < 0) {
        return -1;
    }
    j = json_loads(line, 0, NULL);
    ok = json_is_true(json_object_get(j, "ready")) && json_is_string(json_object_get(j, "url"));
    if (ok) {
        snprintf(url, cap, "%s", json_string_value(json_object_get(j, "url")));
    }
    json_decref(j);
    return ok ? 0 : -1;
}

static int setup(void **state)
{
    char *kargv[] = {"node", KK_RIG_DIR "/kinesalite-server.js", "--port", "0", "--parent-watch",
                     NULL};
    char kurl[128];
    char *gargv[] = {"node",
                     KK_RIG_DIR "/gate.js",
                     "--upstream",
                     kurl,
                     "--access-key",
                     AK,
                     "--secret-key",
                     SK,
                     "--session-token",
                     TOKEN,
                     "--parent-watch",
                     NULL};

    (void)state;
    setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    setenv("no_proxy", "127.0.0.1,localhost", 1);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (spawn_start(&P.kinesalite, kargv) < 0 || ready_url(&P.kinesalite, kurl, sizeof(kurl)) < 0) {
        spawn_stop(&P.kinesalite);
        return -1;
    }
    if (spawn_start(&P.gate, gargv) < 0 || ready_url(&P.gate, P.gate_url, sizeof(P.gate_url)) < 0) {
        spawn_stop(&P.gate);
        spawn_stop(&P.kinesalite);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    spawn_stop(&P.gate);
    spawn_stop(&P.kinesalite);
    curl_global_cleanup();
    return 0;
}

/* ---- the gate's control API, blocking (test side only) ---- */

static size_t collect(char *p, size_t size, size_t n, void *userp)
{
    char *out = userp;
    size_t have = strlen(out), len = size * n;

    if (have + len < 8192) {
        memcpy(out + have, p, len);
        out[have + len] = '\0';
    }
    return len;
}

static json_t *control(const char *method, const char *path, const char *body)
{
    CURL *e = curl_easy_init();
    char url[256];
    static char out[8192];
    long status = 0;

    out[0] = '\0';
    snprintf(url, sizeof(url), "%s%s", P.gate_url, path);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, out);
    if (!strcmp(method, "POST")) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
    }
    assert_int_equal(curl_easy_perform(e), CURLE_OK);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    assert_int_equal(status, 200);
    return json_loads(out, 0, NULL);
}

static void fault(const char *spec)
{
    json_decref(control("POST", "/_gate/fault", spec));
}

/* ---- calls through our client ---- */

struct result {
    int done;
    long status;
    char body[65536];
    char type[128];
    char message[512];
    int attempts;
};

static void on_done(void *ctx, const struct aws_response *r)
{
    struct result *res = ctx;

    res->done = 1;
    res->status = r->status;
    snprintf(res->body, sizeof(res->body), "%.*s", (int)r->body_len, r->body);
    snprintf(res->type, sizeof(res->type), "%s", r->error_type ? r->error_type : "");
    snprintf(res->message, sizeof(res->message), "%s", r->error_message ? r->error_message : "");
    res->attempts = r->attempts;
}

static struct aws_client *client(struct loop *l, const char *secret)
{
    struct aws_client_options o;
    char err[256];
    struct aws_client *c;

    memset(&o, 0, sizeof(o));
    o.service = "kinesis";
    o.target_prefix = "Kinesis_20131202";
    o.region = "us-east-1";
    o.endpoint = P.gate_url;
    o.access_key = AK;
    o.secret_key = secret;
    o.session_token = TOKEN;
    o.retry_base_ms = 5;
    o.retry_cap_ms = 50;
    c = aws_client_create(l, &o, err, sizeof(err));
    if (!c) {
        fail_msg("%s", err);
    }
    return c;
}

static json_t *call(struct loop *l, struct aws_client *c, const char *op, const char *body,
                    struct result *r)
{
    time_t end = time(NULL) + 60;

    memset(r, 0, sizeof(*r));
    assert_int_equal(aws_client_call(c, op, body, strlen(body), on_done, r), 0);
    while (!r->done && time(NULL) <= end) {
        loop_run_once(l, 50);
    }
    assert_true(r->done);
    return r->status == 200 ? json_loads(r->body, 0, NULL) : NULL;
}

static void test_kinesis_through_gate(void **state)
{
    struct loop *l;
    struct aws_client *c;
    struct result r;
    json_t *j, *recs;
    char body[512], iter[1024];
    int i;

    (void)state;
    l = loop_create(body, sizeof(body));
    c = client(l, SK);

    j = call(l, c, "CreateStream", "{\"StreamName\":\"" STREAM "\",\"ShardCount\":1}", &r);
    if (r.status != 200) {
        fail_msg("CreateStream: %ld %s %s", r.status, r.type, r.message);
    }
    json_decref(j);
    for (i = 0; i < 100; i++) {
        j = call(l, c, "DescribeStreamSummary", "{\"StreamName\":\"" STREAM "\"}", &r);
        assert_int_equal(r.status, 200);
        if (!strcmp(json_string_value(json_object_get(
                        json_object_get(j, "StreamDescriptionSummary"), "StreamStatus")),
                    "ACTIVE")) {
            json_decref(j);
            break;
        }
        json_decref(j);
        loop_run_once(l, 100);
    }
    assert_true(i < 100);

#define PUT "{\"StreamName\":\"" STREAM "\",\"PartitionKey\":\"pk\",\"Data\":\"aGVsbG8=\"}"
    j = call(l, c, "PutRecord", PUT, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 1);
    assert_non_null(json_string_value(json_object_get(j, "SequenceNumber")));
    json_decref(j);

    /* throttled once, then written */
    fault("{\"kind\":\"throttle\",\"op\":\"PutRecord\"}");
    json_decref(call(l, c, "PutRecord", PUT, &r));
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 2);

    /* connections dropped without an answer. libcurl itself resends once
     * when a reused connection dies before any answer; the drop on the
     * fresh connection is a transport error that we retry. */
    fault("{\"kind\":\"drop\",\"op\":\"PutRecord\",\"count\":2}");
    json_decref(call(l, c, "PutRecord", PUT, &r));
    assert_int_equal(r.status, 200);
    assert_true(r.attempts >= 2 && r.attempts <= 3);

    /* 503 twice, then written */
    fault("{\"kind\":\"status\",\"status\":503,\"op\":\"PutRecord\",\"count\":2}");
    json_decref(call(l, c, "PutRecord", PUT, &r));
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 3);

    /* throttled past max_attempts: the last error comes back */
    fault("{\"kind\":\"kms_throttle\",\"op\":\"PutRecord\",\"count\":3}");
    call(l, c, "PutRecord", PUT, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.type, "KMSThrottlingException");
    assert_int_equal(r.attempts, 3);
#undef PUT

    /* each record written exactly once: faulted requests never reached kinesalite */
    j = call(l, c, "GetShardIterator",
             "{\"StreamName\":\"" STREAM "\",\"ShardId\":\"shardId-000000000000\","
             "\"ShardIteratorType\":\"TRIM_HORIZON\"}",
             &r);
    assert_int_equal(r.status, 200);
    snprintf(body, sizeof(body), "{\"ShardIterator\":\"%s\",\"Limit\":100}",
             json_string_value(json_object_get(j, "ShardIterator")));
    json_decref(j);
    snprintf(iter, sizeof(iter), "%s", body);
    j = call(l, c, "GetRecords", iter, &r);
    assert_int_equal(r.status, 200);
    recs = json_object_get(j, "Records");
    assert_int_equal(json_array_size(recs), 4);
    for (i = 0; i < 4; i++) {
        assert_string_equal(
            json_string_value(json_object_get(json_array_get(recs, (size_t)i), "Data")),
            "aGVsbG8=");
    }
    json_decref(j);

    /* AWS-shaped errors from the real mock, not retried */
    call(l, c, "DescribeStreamSummary", "{\"StreamName\":\"no-such-stream\"}", &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.type, "ResourceNotFoundException");
    assert_non_null(strstr(r.message, "no-such-stream"));
    assert_int_equal(r.attempts, 1);
    call(l, c, "CreateStream", "{\"StreamName\":\"bad name!\",\"ShardCount\":1}", &r);
    assert_string_equal(r.type, "ValidationException");
    assert_int_equal(r.attempts, 1);

    /* every signature so far was accepted by the gate */
    j = control("GET", "/_gate/stats", NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "sigFailures")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "faultsApplied")), 1 + 2 + 2 + 3);
    json_decref(j);
    aws_client_destroy(c);

    /* a wrong secret is caught by the gate, and not retried */
    c = client(l, "not-the-secret");
    call(l, c, "ListStreams", "{}", &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.type, "InvalidSignatureException");
    assert_int_equal(r.attempts, 1);
    j = control("GET", "/_gate/stats", NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "sigFailures")), 1);
    json_decref(j);
    aws_client_destroy(c);
    loop_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinesis_through_gate),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
