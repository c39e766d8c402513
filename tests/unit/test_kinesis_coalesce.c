/* test_kinesis_coalesce.c - put_record coalescing against a fake AWS
 * transport: concurrent records become one PutRecords call per stream,
 * every caller gets its own record's reply or error, failed entries are
 * sent again alone, limits split batches, a stop answers everyone. */
#include "aws/aws_client.h"
#include "base/b64.h"
#include "base/errs.h"
#include "base/loop.h"
#include "kinesis/kinesis.h"
#include "message/envelope.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#define MAX_REQ  64
#define MAX_SEEN 64

/* ------------------------------------------------------------ the fake */

struct seen {
    char op[64];
    json_t *body;
};

struct fake {
    int calls;
    struct seen seen[MAX_SEEN];
    /* PutRecords: entries whose PartitionKey is in fail_keys fail with
     * fail_code; whole_error answers every call with that error. */
    const char *fail_keys[8];
    const char *fail_code;
    long whole_status;
    const char *whole_error;
    int short_reply; /* PutRecords answers one result too few */
    int fail_single; /* PutRecord of a fail key fails too (HTTP 500) */
    int escaped;     /* PutRecords answers with escapes (the full parser reads it) */
    int nulls;       /* kinesis-mock's style: every member, absent ones null */
    int no_code;     /* a fail key's entry has neither ErrorCode nor SequenceNumber */
    int said_failed; /* added to the FailedRecordCount the answer states */
    unsigned long long seq;
    /* hold: answers wait for release(), like a slow network. */
    int hold;
    int nheld;
    struct {
        aws_http_done_fn done;
        void *cctx;
        long status;
        char *body;
    } held[MAX_SEEN];
};

static struct fake F;

static int is_fail_key(const char *k)
{
    for (int i = 0; i < 8 && F.fail_keys[i]; i++) {
        if (strcmp(F.fail_keys[i], k) == 0) {
            return 1;
        }
    }
    return 0;
}

static void answer(const char *op, json_t *body, long *status, struct buf *resp)
{
    if (F.whole_error) {
        *status = F.whole_status;
        buf_appendf(resp, "{\"__type\":\"%s\",\"message\":\"whole call refused\"}", F.whole_error);
        return;
    }
    if (strcmp(op, "PutRecord") == 0) {
        const char *k = json_string_value(json_object_get(body, "PartitionKey"));

        if (F.fail_single && k && is_fail_key(k)) {
            *status = 500;
            buf_appendf(resp, "{\"__type\":\"%s\",\"message\":\"still failing\"}", F.fail_code);
            return;
        }
        buf_appendf(resp, "{\"ShardId\":\"shardId-000000000001\",\"SequenceNumber\":\"%llu\"}",
                    ++F.seq);
        return;
    }
    if (strcmp(op, "PutRecords") == 0) {
        json_t *recs = json_object_get(body, "Records");
        size_t i, n = json_array_size(recs), failed = 0;

        if (F.short_reply && n) {
            n--;
        }
        buf_append_str(resp, F.nulls ? "{\"EncryptionType\":null,\"Records\":["
                                     : "{\"EncryptionType\":\"NONE\",\"Records\":[");
        for (i = 0; i < n; i++) {
            const char *k =
                json_string_value(json_object_get(json_array_get(recs, i), "PartitionKey"));
            if (i) {
                buf_append_char(resp, ',');
            }
            if (k && is_fail_key(k) && F.no_code) {
                failed++;
                buf_append_str(resp, "{\"ErrorCode\":null,\"ErrorMessage\":null,"
                                     "\"SequenceNumber\":null,\"ShardId\":\"shardId-1\"}");
            } else if (k && is_fail_key(k)) {
                failed++;
                buf_appendf(resp,
                            F.nulls ? "{\"ErrorCode\":\"%s\",\"ErrorMessage\":\"slow down\","
                                      "\"SequenceNumber\":null,\"ShardId\":null}"
                                    : "{\"ErrorCode\":\"%s\",\"ErrorMessage\":\"slow down\"}",
                            F.fail_code);
            } else if (F.nulls) {
                buf_appendf(resp,
                            F.escaped ? "{\"ErrorCode\":null,\"ErrorMessage\":null,\"ShardId\":"
                                        "\"shardId-00000000000\\u0032\",\"SequenceNumber\":"
                                        "\"%llu\"}"
                                      : "{\"ErrorCode\":null,\"ErrorMessage\":null,\"Sequence"
                                        "Number\":\"%llu\",\"ShardId\":\"shardId-000000000002\"}",
                            ++F.seq);
            } else {
                buf_appendf(
                    resp,
                    F.escaped
                        ? "{\"ShardId\":\"shardId-00000000000\\u0032\",\"SequenceNumber\":"
                          "\"%llu\"}"
                        : "{\"ShardId\":\"shardId-000000000002\",\"SequenceNumber\":\"%llu\"}",
                    ++F.seq);
            }
        }
        buf_appendf(resp, "],\"FailedRecordCount\":%zu}", failed + (size_t)F.said_failed);
        return;
    }
    buf_append_str(resp, "{}");
}

static int fake_send(void *tctx, const struct aws_http_request *req, aws_http_done_fn done,
                     void *cctx)
{
    struct buf resp = BUF_INIT(64 << 20);
    const char *op = "";
    long status = 200;
    json_t *body;
    size_t i;
    int n = F.calls++;

    (void)tctx;
    for (i = 0; req->headers[i]; i++) {
        if (strncasecmp(req->headers[i], "X-Amz-Target:", 13) == 0) {
            op = strchr(req->headers[i], '.') + 1;
        }
    }
    body = json_loadb(req->body, req->body_len, 0, NULL);
    assert_non_null(body);
    answer(op, body, &status, &resp);
    if (n < MAX_SEEN) {
        snprintf(F.seen[n].op, sizeof(F.seen[n].op), "%s", op);
        F.seen[n].body = body;
    } else {
        json_decref(body);
    }
    if (F.hold) {
        assert_true(F.nheld < MAX_SEEN);
        F.held[F.nheld].done = done;
        F.held[F.nheld].cctx = cctx;
        F.held[F.nheld].status = status;
        F.held[F.nheld].body = buf_detach(&resp, NULL);
        F.nheld++;
        return 0;
    }
    done(cctx, status, buf_str(&resp), resp.len, NULL);
    buf_free(&resp);
    return 0;
}

/* Answer what the transport holds, oldest first. */
static void release(void)
{
    int i, n = F.nheld;

    F.nheld = 0;
    for (i = 0; i < n; i++) {
        F.held[i].done(F.held[i].cctx, F.held[i].status, F.held[i].body, strlen(F.held[i].body),
                       NULL);
        free(F.held[i].body);
    }
}

static const struct aws_transport fake_transport = {fake_send, NULL};

static void fake_reset(void)
{
    for (int i = 0; i < MAX_SEEN; i++) {
        json_decref(F.seen[i].body);
    }
    memset(&F, 0, sizeof(F));
}

/* ------------------------------------------------------------ harness */

struct req {
    struct envelope_request req;
    struct envelope_reply reply;
    int done;
};

static struct {
    struct loop *loop;
    void *k;
    struct req r[MAX_REQ];
    int pending;
} H;

static void *make(const char *extra_props)
{
    struct errs errs;
    json_t *props;
    char text[512];
    void *k;

    snprintf(text, sizeof(text),
             "{\"aws_key\":\"AKIDEXAMPLE\",\"aws_secret_key\":\"s3cret\",\"region\":\"us-east-1\","
             "\"endpoint\":\"http://127.0.0.1:9\",\"coalesce\":\"true\"%s%s}",
             extra_props ? "," : "", extra_props ? extra_props : "");
    props = json_loads(text, 0, NULL);
    assert_non_null(props);
    errs_init(&errs);
    k = kinesis_instance_create(H.loop, props, "b1", "binding b1: target", &fake_transport, &errs);
    if (!k) {
        fail_msg("create: %s", buf_str(&errs.text));
    }
    errs_free(&errs);
    json_decref(props);
    return k;
}

static int setup(void **state)
{
    char err[256];

    (void)state;
    fake_reset();
    memset(&H, 0, sizeof(H));
    H.loop = loop_create(err, sizeof(err));
    assert_non_null(H.loop);
    for (int i = 0; i < MAX_REQ; i++) {
        envelope_request_init(&H.r[i].req);
        envelope_reply_init(&H.r[i].reply);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kinesis_target_kind.destroy(H.k);
    loop_destroy(H.loop);
    for (int i = 0; i < MAX_REQ; i++) {
        envelope_request_free(&H.r[i].req);
        envelope_reply_free(&H.r[i].reply);
    }
    fake_reset();
    return 0;
}

static void on_done(void *ctx)
{
    struct req *r = ctx;

    r->done++;
    if (--H.pending == 0) {
        loop_stop(H.loop);
    }
}

/* Start request i: put_record of "record-<i>" with partition key
 * "key-<i>" to stream (extra: more metadata members). */
static void start(int i, const char *stream, const char *extra)
{
    char body[1024], data[64], b64[128], err[256];
    struct buf enc = BUF_INIT(256);

    snprintf(data, sizeof(data), "record-%d", i);
    assert_int_equal(b64_encode(data, strlen(data), &enc), 0);
    snprintf(b64, sizeof(b64), "%s", buf_str(&enc));
    buf_free(&enc);
    snprintf(body, sizeof(body),
             "{\"metadata\":{\"method\":\"put_record\",\"stream_name\":\"%s\","
             "\"partition_key\":\"key-%d\"%s},\"data\":\"%s\"}",
             stream, i, extra ? extra : "", b64);
    assert_int_equal(envelope_request_parse(&H.r[i].req, body, strlen(body), 0, err, sizeof(err)),
                     0);
    envelope_reply_reset(&H.r[i].reply);
    H.r[i].done = 0;
    H.pending++;
    kinesis_target_kind.execute(H.k, &H.r[i].req, &H.r[i].reply, on_done, &H.r[i]);
}

static void run_all(void)
{
    if (H.pending) {
        assert_int_equal(loop_run(H.loop), 0);
    }
    assert_int_equal(H.pending, 0);
}

static const char *meta(int i, const char *key)
{
    return json_string_value(json_object_get(H.r[i].reply.metadata, key));
}

static void expect_ok(int i)
{
    if (H.r[i].reply.is_error) {
        fail_msg("request %d: unexpected error: %s", i, buf_str(&H.r[i].reply.error));
    }
    assert_int_equal(H.r[i].done, 1);
    assert_string_equal(meta(i, "result"), "ok");
    assert_non_null(meta(i, "shard_id"));
    assert_non_null(meta(i, "sequence_number"));
}

/* Records of PutRecords call n, as "key=data" strings, in order. */
static void expect_records(int n, const char *stream, int first, int count)
{
    json_t *recs = json_object_get(F.seen[n].body, "Records");
    char want[64];
    struct buf dec = BUF_INIT(256);

    assert_string_equal(F.seen[n].op, "PutRecords");
    assert_string_equal(json_string_value(json_object_get(F.seen[n].body, "StreamName")), stream);
    assert_int_equal(json_array_size(recs), count);
    for (int i = 0; i < count; i++) {
        json_t *e = json_array_get(recs, i);
        const char *d = json_string_value(json_object_get(e, "Data"));

        snprintf(want, sizeof(want), "key-%d", first + i);
        assert_string_equal(json_string_value(json_object_get(e, "PartitionKey")), want);
        assert_non_null(d);
        buf_reset(&dec);
        assert_int_equal(b64_decode(d, strlen(d), &dec), 0);
        snprintf(want, sizeof(want), "record-%d", first + i);
        assert_string_equal(buf_str(&dec), want);
        assert_null(json_object_get(e, "StreamName"));
    }
    buf_free(&dec);
}

/* ------------------------------------------------------------ tests */

static void test_one_call_for_concurrent_records(void **state)
{
    char seqs[20][64];

    (void)state;
    H.k = make(NULL);
    for (int i = 0; i < 20; i++) {
        start(i, "s1", NULL);
    }
    assert_int_equal(F.calls, 0); /* lingering, not sent from execute */
    run_all();
    assert_int_equal(F.calls, 1);
    expect_records(0, "s1", 0, 20);
    for (int i = 0; i < 20; i++) {
        json_t *data;

        expect_ok(i);
        assert_string_equal(meta(i, "shard_id"), "shardId-000000000002");
        snprintf(seqs[i], sizeof(seqs[i]), "%s", meta(i, "sequence_number"));
        for (int j = 0; j < i; j++) {
            assert_string_not_equal(seqs[i], seqs[j]);
        }
        /* The data is PutRecord's answer for this record. */
        data = json_loadb(H.r[i].reply.data.data, H.r[i].reply.data.len, 0, NULL);
        assert_non_null(data);
        assert_string_equal(json_string_value(json_object_get(data, "SequenceNumber")), seqs[i]);
        assert_string_equal(json_string_value(json_object_get(data, "EncryptionType")), "NONE");
        json_decref(data);
    }
}

/* An answer the in-place reader leaves to jansson gives the same replies. */
static void test_answer_with_escapes(void **state)
{
    (void)state;
    H.k = make(NULL);
    F.escaped = 1;
    for (int i = 0; i < 4; i++) {
        start(i, "s1", NULL);
    }
    run_all();
    assert_int_equal(F.calls, 1);
    for (int i = 0; i < 4; i++) {
        expect_ok(i);
        assert_string_equal(meta(i, "shard_id"), "shardId-000000000002");
    }
}

/* kinesis-mock and LocalStack write every member, `"ErrorCode":null` on
 * success: read in place and by jansson, each record is written once. */
static void test_null_members_are_absent(void **state)
{
    (void)state;
    for (int escaped = 0; escaped <= 1; escaped++) {
        fake_reset();
        if (H.k) {
            kinesis_target_kind.destroy(H.k);
        }
        H.k = make(NULL);
        F.nulls = 1;
        F.escaped = escaped;
        F.said_failed = 3; /* the stated count is wrong: the entries win */
        F.fail_keys[0] = "key-2";
        F.fail_code = "ProvisionedThroughputExceededException";
        for (int i = 0; i < 5; i++) {
            start(i, "s1", NULL);
        }
        run_all();
        /* One PutRecords; only the one real failure is sent again. */
        assert_int_equal(F.calls, 2);
        expect_records(0, "s1", 0, 5);
        assert_string_equal(F.seen[1].op, "PutRecord");
        assert_string_equal(json_string_value(json_object_get(F.seen[1].body, "PartitionKey")),
                            "key-2");
        for (int i = 0; i < 5; i++) {
            expect_ok(i);
            /* EncryptionType null is absent: not in the reply's data. */
            assert_null(strstr(buf_str(&H.r[i].reply.data), "EncryptionType"));
        }
        assert_string_equal(meta(0, "shard_id"), "shardId-000000000002");
    }
}

/* An entry with neither an error code nor a sequence number: written or
 * not, no one knows; its caller gets an error and it is not sent again. */
static void test_entry_without_result(void **state)
{
    (void)state;
    H.k = make(NULL);
    F.nulls = 1;
    F.no_code = 1;
    F.fail_keys[0] = "key-1";
    for (int i = 0; i < 3; i++) {
        start(i, "s1", NULL);
    }
    run_all();
    assert_int_equal(F.calls, 1);
    expect_ok(0);
    expect_ok(2);
    assert_int_equal(H.r[1].reply.is_error, 1);
    assert_string_equal(buf_str(&H.r[1].reply.error),
                        "InvalidResponse: Kinesis answered this record's PutRecords entry with "
                        "neither an ErrorCode nor a SequenceNumber and ShardId");
    assert_string_equal(H.r[1].reply.error_type, "InvalidResponse");
}

static void test_one_call_per_stream(void **state)
{
    (void)state;
    H.k = make(NULL);
    for (int i = 0; i < 6; i++) {
        start(i, i % 2 ? "odd" : "even", NULL);
    }
    run_all();
    assert_int_equal(F.calls, 2);
    for (int n = 0; n < 2; n++) {
        const char *s = json_string_value(json_object_get(F.seen[n].body, "StreamName"));
        json_t *recs = json_object_get(F.seen[n].body, "Records");

        assert_int_equal(json_array_size(recs), 3);
        for (size_t i = 0; i < 3; i++) {
            const char *k =
                json_string_value(json_object_get(json_array_get(recs, i), "PartitionKey"));
            int num = (int)strtol(k + 4, NULL, 10);

            assert_string_equal(s, num % 2 ? "odd" : "even");
        }
    }
    for (int i = 0; i < 6; i++) {
        expect_ok(i);
    }
}

static void test_max_records_splits(void **state)
{
    (void)state;
    H.k = make("\"coalesce_max_records\":\"3\",\"coalesce_linger_ms\":\"200\"");
    for (int i = 0; i < 7; i++) {
        start(i, "s1", NULL);
    }
    /* Two full batches went out; the seventh waits for them. */
    F.hold = 1;
    assert_int_equal(F.calls, 0);
    assert_int_equal(loop_run_once(H.loop, 0), 0);
    assert_int_equal(F.calls, 2);
    assert_int_equal(H.pending, 7);
    /* Both answered: the seventh goes at once, not after its linger. */
    F.hold = 0;
    release();
    assert_int_equal(H.pending, 1);
    assert_int_equal(loop_run_once(H.loop, 0), 0);
    assert_int_equal(F.calls, 3);
    run_all();
    assert_int_equal(F.calls, 3);
    expect_records(0, "s1", 0, 3);
    expect_records(1, "s1", 3, 3);
    expect_records(2, "s1", 6, 1);
    for (int i = 0; i < 7; i++) {
        expect_ok(i);
    }
}

static void test_max_bytes_splits(void **state)
{
    (void)state;
    /* Each record is "record-N" (8 bytes) + "key-N" (5 bytes) = 13. */
    H.k = make("\"coalesce_max_bytes\":\"30\"");
    for (int i = 0; i < 5; i++) {
        start(i, "s1", NULL);
    }
    run_all();
    assert_int_equal(F.calls, 3);
    expect_records(0, "s1", 0, 2);
    expect_records(1, "s1", 2, 2);
    expect_records(2, "s1", 4, 1);
    for (int i = 0; i < 5; i++) {
        expect_ok(i);
    }
}

static void test_failed_entries_retried_alone(void **state)
{
    (void)state;
    H.k = make(NULL);
    F.fail_keys[0] = "key-1";
    F.fail_keys[1] = "key-3";
    F.fail_code = "ProvisionedThroughputExceededException";
    for (int i = 0; i < 5; i++) {
        start(i, "s1", NULL);
    }
    run_all();
    /* One PutRecords, then one PutRecord for each failed entry. */
    assert_int_equal(F.calls, 3);
    expect_records(0, "s1", 0, 5);
    assert_string_equal(F.seen[1].op, "PutRecord");
    assert_string_equal(F.seen[2].op, "PutRecord");
    assert_string_equal(json_string_value(json_object_get(F.seen[1].body, "PartitionKey")),
                        "key-1");
    assert_string_equal(json_string_value(json_object_get(F.seen[2].body, "PartitionKey")),
                        "key-3");
    assert_string_equal(json_string_value(json_object_get(F.seen[1].body, "StreamName")), "s1");
    for (int i = 0; i < 5; i++) {
        expect_ok(i);
    }
    assert_string_equal(meta(1, "shard_id"), "shardId-000000000001");
    assert_string_equal(meta(0, "shard_id"), "shardId-000000000002");
}

static void test_failed_entry_own_error(void **state)
{
    (void)state;
    H.k = make("\"max_attempts\":\"1\"");
    F.fail_keys[0] = "key-2";
    F.fail_code = "InternalFailure";
    F.fail_single = 1;
    start(0, "s1", NULL);
    start(1, "s1", NULL);
    start(2, "s1", NULL);
    /* The resend alone fails too: only that caller sees the error. */
    run_all();
    assert_int_equal(F.calls, 2);
    assert_string_equal(F.seen[1].op, "PutRecord");
    expect_ok(0);
    expect_ok(1);
    assert_int_equal(H.r[2].done, 1);
    assert_int_equal(H.r[2].reply.is_error, 1);
    assert_string_equal(buf_str(&H.r[2].reply.error), "InternalFailure: still failing");
    assert_int_equal(H.r[2].reply.retryable, 1);
}

static void test_whole_call_error_for_everyone(void **state)
{
    (void)state;
    H.k = make("\"max_attempts\":\"1\"");
    F.whole_status = 400;
    F.whole_error = "AccessDeniedException";
    for (int i = 0; i < 4; i++) {
        start(i, "s1", NULL);
    }
    run_all();
    assert_int_equal(F.calls, 1);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(H.r[i].done, 1);
        assert_int_equal(H.r[i].reply.is_error, 1);
        assert_string_equal(buf_str(&H.r[i].reply.error),
                            "AccessDeniedException: whole call refused");
    }
}

static void test_short_reply_is_invalid(void **state)
{
    (void)state;
    H.k = make(NULL);
    F.short_reply = 1;
    for (int i = 0; i < 3; i++) {
        start(i, "s1", NULL);
    }
    run_all();
    for (int i = 0; i < 3; i++) {
        assert_int_equal(H.r[i].reply.is_error, 1);
        assert_non_null(strstr(buf_str(&H.r[i].reply.error), "InvalidResponse"));
    }
}

static void test_ordering_key_goes_alone(void **state)
{
    (void)state;
    H.k = make(NULL);
    start(0, "s1", NULL);
    start(1, "s1", ",\"sequence_number_for_ordering\":\"1\"");
    start(2, "s1", NULL);
    run_all();
    assert_int_equal(F.calls, 2);
    /* One PutRecord with the ordering key, one PutRecords of the others. */
    int single = strcmp(F.seen[0].op, "PutRecord") == 0 ? 0 : 1;
    assert_string_equal(F.seen[single].op, "PutRecord");
    assert_string_equal(
        json_string_value(json_object_get(F.seen[single].body, "SequenceNumberForOrdering")), "1");
    assert_string_equal(F.seen[1 - single].op, "PutRecords");
    assert_int_equal(json_array_size(json_object_get(F.seen[1 - single].body, "Records")), 2);
    for (int i = 0; i < 3; i++) {
        expect_ok(i);
    }
}

static void test_invalid_record_not_coalesced(void **state)
{
    (void)state;
    H.k = make(NULL);
    start(0, "s1", NULL);
    start(1, "bad stream name!", NULL);
    assert_int_equal(H.r[1].done, 1); /* answered at once, no call */
    assert_int_equal(H.r[1].reply.is_error, 1);
    run_all();
    assert_int_equal(F.calls, 1);
    expect_records(0, "s1", 0, 1);
    expect_ok(0);
}

/* A lone request leaves at once; what arrives while a call is out gathers
 * and leaves when that call is answered (no linger wait). */
static void test_gathers_while_a_call_is_out(void **state)
{
    (void)state;
    H.k = make("\"coalesce_linger_ms\":\"10000\"");
    F.hold = 1;
    start(0, "s1", NULL);
    assert_int_equal(loop_run_once(H.loop, 0), 0);
    assert_int_equal(F.calls, 1);
    expect_records(0, "s1", 0, 1);
    for (int i = 1; i < 6; i++) {
        start(i, "s1", NULL);
    }
    assert_int_equal(loop_run_once(H.loop, 0), 0);
    assert_int_equal(F.calls, 1); /* gathering */
    release();
    assert_int_equal(H.r[0].done, 1);
    assert_int_equal(loop_run_once(H.loop, 0), 0);
    assert_int_equal(F.calls, 2);
    expect_records(1, "s1", 1, 5);
    F.hold = 0;
    release();
    assert_int_equal(H.pending, 0);
    for (int i = 0; i < 6; i++) {
        expect_ok(i);
    }
}

static void test_stop_answers_lingering(void **state)
{
    (void)state;
    H.k = make("\"coalesce_linger_ms\":\"10000\"");
    F.hold = 1;
    start(0, "s1", NULL);
    assert_int_equal(loop_run_once(H.loop, 0), 0);
    assert_int_equal(F.calls, 1);
    for (int i = 1; i < 4; i++) {
        start(i, "s1", NULL);
    }
    assert_int_equal(loop_run_once(H.loop, 0), 0);
    assert_int_equal(F.calls, 1);
    kinesis_target_kind.destroy(H.k);
    H.k = NULL;
    assert_int_equal(F.calls, 1);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(H.r[i].done, 1);
        assert_int_equal(H.r[i].reply.is_error, 1);
    }
    assert_non_null(strstr(buf_str(&H.r[0].reply.error), "TransportError"));
    for (int i = 1; i < 4; i++) {
        assert_non_null(strstr(buf_str(&H.r[i].reply.error), "target stopped"));
    }
    /* The transport's late answer finds nobody waiting. */
    release();
}

static void test_settings_rules(void **state)
{
    static const char *const bad[] = {
        "\"coalesce_max_records\":\"501\"",
        "\"coalesce_max_records\":\"0\"",
        "\"coalesce_max_bytes\":\"5242881\"",
        "\"coalesce_linger_ms\":\"-1\"",
        "\"coalesce\":\"maybe\"",
    };
    char text[512];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct errs errs;
        json_t *props;

        snprintf(text, sizeof(text),
                 "{\"aws_key\":\"AKIDEXAMPLE\",\"aws_secret_key\":\"s3cret\",\"region\":"
                 "\"us-east-1\",%s}",
                 bad[i]);
        props = json_loads(text, 0, NULL);
        assert_non_null(props);
        errs_init(&errs);
        assert_null(kinesis_instance_create(NULL, props, "b1", "t", &fake_transport, &errs));
        assert_int_equal(errs.count, 1);
        assert_non_null(strstr(buf_str(&errs.text), "coalesce"));
        errs_free(&errs);
        json_decref(props);
    }
    H.k = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_call_for_concurrent_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_call_per_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_with_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_members_are_absent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entry_without_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_records_splits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_bytes_splits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_entries_retried_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_entry_own_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_whole_call_error_for_everyone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_reply_is_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ordering_key_goes_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_record_not_coalesced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gathers_while_a_call_is_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_answers_lingering, setup, teardown),
        cmocka_unit_test(test_settings_rules),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
