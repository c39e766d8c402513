/* test_kinesis.c - the aws.kinesis target against a fake AWS transport:
 * request bodies per method, validation (no call made), reply parsing,
 * put_records splitting and partial resends, get_records walking shards. */
#include "aws/aws_client.h"
#include "base/b64.h"
#include "base/errs.h"
#include "base/log.h"
#include "base/loop.h"
#include "kinesis/kinesis.h"
#include "kinesis/kinesis_answer.h"
#include "message/envelope.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>

#define MAX_SEEN 64

/* ------------------------------------------------------------ the fake */

struct fake;
/* Fill *status and resp for one request; op is "PutRecord" etc. */
typedef void (*fake_answer_fn)(struct fake *f, const char *op, json_t *body, long *status,
                               struct buf *resp);

struct fake {
    int calls;
    char ops[MAX_SEEN][64];
    char *bodies[MAX_SEEN];
    fake_answer_fn answer;
    int counter; /* free for the answer function */
    const char *canned;
    int hold_from; /* > 0: call number hold_from (1-based) on is not answered */
    aws_http_done_fn held_done;
    void *held_cctx;
};

static struct fake F;

static int fake_send(void *tctx, const struct aws_http_request *req, aws_http_done_fn done,
                     void *cctx)
{
    struct fake *f = tctx;
    const char *op = "";
    struct buf resp = BUF_INIT(64 << 20);
    long status = 200;
    json_t *body;
    size_t i;
    int n = f->calls++;

    for (i = 0; req->headers[i]; i++) {
        const char *h = req->headers[i];
        if (strncasecmp(h, "X-Amz-Target:", 13) == 0) {
            op = strchr(h, '.') + 1;
        }
    }
    if (n < MAX_SEEN) {
        snprintf(f->ops[n], sizeof(f->ops[n]), "%s", op);
        f->bodies[n] = strndup(req->body, req->body_len);
    }
    if (f->hold_from > 0 && n + 1 >= f->hold_from) {
        f->held_done = done;
        f->held_cctx = cctx;
        return 0;
    }
    body = json_loadb(req->body, req->body_len, 0, NULL);
    assert_non_null(body);
    if (f->answer) {
        f->answer(f, op, body, &status, &resp);
    } else {
        buf_append_str(&resp, f->canned ? f->canned : "{}");
    }
    json_decref(body);
    done(cctx, status, buf_str(&resp), resp.len, NULL);
    buf_free(&resp);
    return 0;
}

static const struct aws_transport fake_transport = {fake_send, &F};

static void fake_reset(void)
{
    int i;

    for (i = 0; i < MAX_SEEN; i++) {
        free(F.bodies[i]);
    }
    memset(&F, 0, sizeof(F));
}

/* ------------------------------------------------------------ harness */

struct h {
    struct loop *loop;
    void *k;
    struct envelope_request req;
    struct envelope_reply reply;
    int finished;
    json_t *data; /* reply data parsed, when JSON */
};

static struct h H;

static void *make(const char *extra_props)
{
    struct errs errs;
    json_t *props;
    char text[512];
    void *k;

    snprintf(text, sizeof(text),
             "{\"aws_key\":\"AKIDEXAMPLE\",\"aws_secret_key\":\"s3cret\",\"region\":\"us-east-1\","
             "\"endpoint\":\"http://127.0.0.1:9\"%s%s}",
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
    H.k = make("\"max_attempts\":\"3\"");
    envelope_request_init(&H.req);
    envelope_reply_init(&H.reply);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kinesis_target_kind.destroy(H.k);
    loop_destroy(H.loop);
    envelope_request_free(&H.req);
    envelope_reply_free(&H.reply);
    json_decref(H.data);
    fake_reset();
    return 0;
}

static void on_done(void *ctx)
{
    (*(int *)ctx)++;
    loop_stop(H.loop);
}

/* Run one request body through the target; returns the reply. */
static struct envelope_reply *run(const char *body)
{
    char err[256];

    envelope_reply_reset(&H.reply);
    json_decref(H.data);
    H.data = NULL;
    H.finished = 0;
    assert_int_equal(envelope_request_parse(&H.req, body, strlen(body), 0, err, sizeof(err)), 0);
    kinesis_target_kind.execute(H.k, &H.req, &H.reply, on_done, &H.finished);
    if (!H.finished) {
        assert_int_equal(loop_run(H.loop), 0);
    }
    assert_int_equal(H.finished, 1);
    if (H.reply.has_data) {
        H.data = json_loadb(H.reply.data.data, H.reply.data.len, 0, NULL);
    }
    return &H.reply;
}

static const char *meta(const char *key)
{
    return json_string_value(json_object_get(H.reply.metadata, key));
}

static void expect_ok(void)
{
    if (H.reply.is_error) {
        fail_msg("unexpected error: %s", buf_str(&H.reply.error));
    }
    assert_string_equal(meta("result"), "ok");
}

/* ------------------------------------------------------ validation */

struct bad_case {
    const char *body;
    const char *error;
};

static void test_validation_makes_no_call(void **state)
{
    static char long_key[300], big[1600000];
    static const struct bad_case cases[] = {
        {"{\"metadata\":{\"method\":\"nope\"}}",
         "method: unknown method \"nope\"; valid methods: list_streams, create_stream, "
         "delete_stream, describe_stream, list_shards, list_stream_consumers, "
         "create_stream_consumer, get_shard_iterator, put_record, put_records, get_records, put, "
         "create"},
        {"this is not json", "request: the body is not a JSON request envelope; send "
                             "{\"metadata\":{\"method\":\"...\",...},\"data\":...}"},
        {"{\"metadata\":{}}",
         "stream: is required for put (the default method when \"method\" is absent; valid "
         "methods: list_streams, create_stream, delete_stream, describe_stream, list_shards, "
         "list_stream_consumers, create_stream_consumer, get_shard_iterator, put_record, "
         "put_records, get_records, put, create)"},
        {"{\"metadata\":{\"method\":\"create_stream\"}}",
         "stream_name: is required for create_stream"},
        {"{\"metadata\":{\"method\":\"create\"}}", "stream: is required for create"},
        {"{\"metadata\":{\"method\":\"create_stream\",\"stream_name\":\"bad name!\"}}",
         "stream_name: may contain only letters, digits, '_', '.' and '-' "
         "([a-zA-Z0-9_.-]{1,128}), got \"bad name!\""},
        {"{\"metadata\":{\"method\":\"create_stream\",\"stream_name\":\"s\",\"shard_count\":"
         "\"0\"}}",
         "shard_count: must be an integer from 1 to 100000, got \"0\""},
        {"{\"metadata\":{\"method\":\"create_stream\",\"stream_name\":\"s\",\"stream\":\"t\"}}",
         "stream_name: conflicts with stream (\"s\" vs \"t\"); they are two spellings of one "
         "key"},
        {"{\"metadata\":{\"method\":\"delete_stream\",\"stream_name\":\"s\","
         "\"enforce_consumer_deletion\":\"maybe\"}}",
         "enforce_consumer_deletion: must be true or false, got \"maybe\""},
        {"{\"metadata\":{\"method\":\"describe_stream\"}}",
         "stream_name: is required for describe_stream"},
        {"{\"metadata\":{\"method\":\"list_shards\"}}",
         "stream_name: is required for list_shards (or stream_arn, or next_token from an "
         "earlier page)"},
        {"{\"metadata\":{\"method\":\"list_streams\",\"limit\":\"0\"}}",
         "limit: must be an integer from 1 to 10000, got \"0\""},
        {"{\"metadata\":{\"method\":\"list_streams\",\"limit\":\"10001\"}}",
         "limit: must be an integer from 1 to 10000, got \"10001\""},
        {"{\"metadata\":{\"method\":\"list_stream_consumers\"}}",
         "stream_arn: is required for list_stream_consumers"},
        {"{\"metadata\":{\"method\":\"list_stream_consumers\",\"stream_arn\":\"nope\"}}",
         "stream_arn: must be an ARN (\"arn:...\", at most 2048 characters), got \"nope\""},
        {"{\"metadata\":{\"method\":\"create_stream_consumer\",\"stream_arn\":\"arn:aws:x\"}}",
         "consumer_name: is required for create_stream_consumer"},
        {"{\"metadata\":{\"method\":\"get_shard_iterator\",\"stream_name\":\"s\","
         "\"shard_iterator_type\":\"LATEST\"}}",
         "shard_id: is required for get_shard_iterator"},
        {"{\"metadata\":{\"method\":\"get_shard_iterator\",\"stream_name\":\"s\",\"shard_id\":"
         "\"x\"}}",
         "shard_iterator_type: is required for get_shard_iterator"},
        {"{\"metadata\":{\"method\":\"get_shard_iterator\",\"stream_name\":\"s\",\"shard_id\":"
         "\"x\",\"shard_iterator_type\":\"OLDEST\"}}",
         "shard_iterator_type: must be one of AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, "
         "TRIM_HORIZON, LATEST, AT_TIMESTAMP, got \"OLDEST\""},
        {"{\"metadata\":{\"method\":\"get_shard_iterator\",\"stream_name\":\"s\",\"shard_id\":"
         "\"x\",\"shard_iterator_type\":\"AT_SEQUENCE_NUMBER\"}}",
         "starting_sequence_number: is required for get_shard_iterator with "
         "shard_iterator_type AT_SEQUENCE_NUMBER"},
        {"{\"metadata\":{\"method\":\"get_shard_iterator\",\"stream_name\":\"s\",\"shard_id\":"
         "\"x\",\"shard_iterator_type\":\"AT_TIMESTAMP\",\"timestamp\":\"yesterday\"}}",
         "timestamp: must be an RFC 3339 date-time (2024-01-31T12:00:00Z) or epoch seconds, got "
         "\"yesterday\""},
        {"{\"metadata\":{\"method\":\"put_record\",\"stream_name\":\"s\"},\"data\":\"QQ==\"}",
         "partition_key: is required for put_record"},
        {"{\"metadata\":{\"method\":\"put_record\",\"stream_name\":\"s\",\"partition_key\":"
         "\"k\"}}",
         "data: is required for put_record (the record bytes, base64 in the envelope's "
         "\"data\")"},
        {"{\"metadata\":{\"method\":\"put_record\",\"stream_name\":\"s\",\"partition_key\":\"k\","
         "\"explicit_hash_key\":\"340282366920938463463374607431768211456\"},\"data\":\"QQ==\"}",
         "explicit_hash_key: must be a decimal integer from 0 to 2^128-1 "
         "(340282366920938463463374607431768211455), got "
         "\"340282366920938463463374607431768211456\""},
        {"{\"metadata\":{\"method\":\"put_records\",\"stream_name\":\"s\"}}",
         "data: is required for put_records (a JSON object or array of records)"},
        {"{\"metadata\":{\"method\":\"put_records\",\"stream_name\":\"s\"},\"data\":{\"k\":"
         "\"!!notb64\"}}",
         "data[\"k\"]: record data is not valid base64 (standard alphabet, padded)"},
        {"{\"metadata\":{\"method\":\"put_records\",\"stream_name\":\"s\"},\"data\":{}}",
         "data: put_records needs at least one record"},
        {"{\"metadata\":{\"method\":\"get_records\"}}",
         "shard_iterator_id: is required for get_records (or stream_name, with or without "
         "shard_id)"},
        {"{\"metadata\":{\"method\":\"get_records\",\"stream_name\":\"s\",\"limit\":\"10001\"}}",
         "limit: must be an integer from 1 to 10000, got \"10001\""},
    };
    char body[2048];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        run(cases[i].body);
        assert_true(H.reply.is_error);
        if (strcmp(buf_str(&H.reply.error), cases[i].error) != 0) {
            fail_msg("case %zu: got\n  %s\nwant\n  %s", i, buf_str(&H.reply.error), cases[i].error);
        }
        assert_null(meta("result"));
    }

    /* 257-character partition key (multi-byte characters count once). */
    memset(long_key, 'k', 257);
    snprintf(body, sizeof(body),
             "{\"metadata\":{\"method\":\"put_record\",\"stream_name\":\"s\",\"partition_key\":"
             "\"%s\"},\"data\":\"QQ==\"}",
             long_key);
    run(body);
    assert_string_equal(buf_str(&H.reply.error), "partition_key: must be 1 to 256 characters, "
                                                 "got 257");
    /* 256 two-byte characters are fine (512 bytes). */
    {
        size_t j;
        char key[600] = "";
        for (j = 0; j < 256; j++) {
            strcat(key, "\xc3\xa9");
        }
        snprintf(body, sizeof(body),
                 "{\"metadata\":{\"method\":\"put_record\",\"stream_name\":\"s\","
                 "\"partition_key\":\"%s\"},\"data\":\"QQ==\"}",
                 key);
        assert_int_equal(F.calls, 0);
        F.canned = "{\"ShardId\":\"shardId-000000000000\",\"SequenceNumber\":\"1\"}";
        run(body);
        expect_ok();
        assert_int_equal(F.calls, 1);
        F.calls = 0;
    }

    /* A record of 1 MiB + 1 byte (data plus the one-byte key). */
    {
        struct buf b = BUF_INIT(0);
        struct buf raw = BUF_INIT(0);
        memset(big, 'x', 1048576);
        buf_append(&raw, big, 1048576);
        buf_append_str(&b, "{\"metadata\":{\"method\":\"put_record\",\"stream_name\":\"s\","
                           "\"partition_key\":\"k\"},\"data\":\"");
        b64_encode(raw.data, raw.len, &b);
        buf_append_str(&b, "\"}");
        run(buf_str(&b));
        assert_string_equal(buf_str(&H.reply.error),
                            "data: a record must be at most 1048576 bytes (data plus partition "
                            "key), got 1048577");
        buf_free(&b);
        buf_free(&raw);
    }
    assert_int_equal(F.calls, 0);
}

/* ------------------------------------------------------ request bodies */

struct body_case {
    const char *request;
    const char *op;
    const char *body;
};

static void test_request_bodies(void **state)
{
    static const struct body_case cases[] = {
        {"{\"metadata\":{\"method\":\"list_streams\"}}", "ListStreams", "{}"},
        {"{\"metadata\":{\"method\":\"list_streams\",\"limit\":\"5\",\"next_token\":\"t1\","
         "\"exclusive_start_stream_name\":\"a\"}}",
         "ListStreams", "{\"Limit\":5,\"NextToken\":\"t1\",\"ExclusiveStartStreamName\":\"a\"}"},
        {"{\"metadata\":{\"method\":\"create_stream\",\"stream_name\":\"s1\",\"shard_count\":"
         "\"2\"}}",
         "CreateStream", "{\"StreamName\":\"s1\",\"ShardCount\":2}"},
        {"{\"metadata\":{\"method\":\"create\",\"stream\":\"s1\",\"partition_key\":\"1\"}}",
         "CreateStream", "{\"StreamName\":\"s1\",\"ShardCount\":1}"},
        {"{\"metadata\":{\"method\":\"delete_stream\",\"stream_name\":\"s1\","
         "\"enforce_consumer_deletion\":\"true\"}}",
         "DeleteStream", "{\"StreamName\":\"s1\",\"EnforceConsumerDeletion\":true}"},
        {"{\"metadata\":{\"method\":\"describe_stream\",\"stream\":\"s1\"}}",
         "DescribeStreamSummary", "{\"StreamName\":\"s1\"}"},
        {"{\"metadata\":{\"method\":\"list_shards\",\"stream_name\":\"s1\",\"limit\":\"3\"}}",
         "ListShards", "{\"MaxResults\":3,\"StreamName\":\"s1\"}"},
        {"{\"metadata\":{\"method\":\"list_shards\",\"stream_name\":\"s1\",\"next_token\":"
         "\"tok\"}}",
         "ListShards", "{\"NextToken\":\"tok\"}"},
        {"{\"metadata\":{\"method\":\"list_shards\",\"stream_arn\":\"arn:aws:kinesis:us-east-1:"
         "000000000000:stream/s1\"}}",
         "ListShards", "{\"StreamARN\":\"arn:aws:kinesis:us-east-1:000000000000:stream/s1\"}"},
        {"{\"metadata\":{\"method\":\"list_stream_consumers\",\"stream_arn\":\"arn::mystream\","
         "\"limit\":\"7\"}}",
         "ListStreamConsumers", "{\"StreamARN\":\"arn::mystream\",\"MaxResults\":7}"},
        {"{\"metadata\":{\"method\":\"create_stream_consumer\",\"stream_arn\":\"arn:x:s\","
         "\"consumer_name\":\"c1\"}}",
         "RegisterStreamConsumer", "{\"StreamARN\":\"arn:x:s\",\"ConsumerName\":\"c1\"}"},
        {"{\"metadata\":{\"method\":\"get_shard_iterator\",\"stream_name\":\"s1\",\"shard_id\":"
         "\"shardId-000000000001\",\"shard_iterator_type\":\"AFTER_SEQUENCE_NUMBER\","
         "\"starting_sequence_number\":\"4955\"}}",
         "GetShardIterator",
         "{\"StreamName\":\"s1\",\"ShardId\":\"shardId-000000000001\",\"ShardIteratorType\":"
         "\"AFTER_SEQUENCE_NUMBER\",\"StartingSequenceNumber\":\"4955\"}"},
        {"{\"metadata\":{\"method\":\"get_shard_iterator\",\"stream_name\":\"s1\",\"shard_id\":"
         "\"x\",\"shard_iterator_type\":\"AT_TIMESTAMP\",\"timestamp\":"
         "\"2024-01-31T12:00:00.5+01:00\"}}",
         "GetShardIterator",
         "{\"StreamName\":\"s1\",\"ShardId\":\"x\",\"ShardIteratorType\":\"AT_TIMESTAMP\","
         "\"Timestamp\":1706698800.500}"},
        {"{\"metadata\":{\"method\":\"get_shard_iterator\",\"stream_name\":\"s1\",\"shard_id\":"
         "\"x\",\"shard_iterator_type\":\"AT_TIMESTAMP\",\"timestamp\":\"1706698800\"}}",
         "GetShardIterator",
         "{\"StreamName\":\"s1\",\"ShardId\":\"x\",\"ShardIteratorType\":\"AT_TIMESTAMP\","
         "\"Timestamp\":1706698800.000}"},
        {"{\"metadata\":{\"method\":\"put_record\",\"stream_name\":\"s1\",\"partition_key\":"
         "\"k\\\"1\",\"explicit_hash_key\":\"0\",\"sequence_number_for_ordering\":\"12\"},"
         "\"data\":\"eyJteV9yZXN1bHQiOiJvayJ9\"}",
         "PutRecord",
         "{\"StreamName\":\"s1\",\"PartitionKey\":\"k\\\"1\",\"Data\":"
         "\"eyJteV9yZXN1bHQiOiJvayJ9\",\"ExplicitHashKey\":\"0\",\"SequenceNumberForOrdering\":"
         "\"12\"}"},
        {"{\"metadata\":{\"method\":\"put_records\",\"stream_name\":\"s1\"},\"data\":"
         "\"eyIxIjoiZXlKdGVWOXlaWE4xYkhRaU9pSnZheUo5IiwiMiI6ImV5SnRlVjl5WlhOMWJIUXlJam9pYjJzaE"
         "luMD0ifQ==\"}",
         "PutRecords",
         "{\"StreamName\":\"s1\",\"Records\":[{\"Data\":\"eyJteV9yZXN1bHQiOiJvayJ9\","
         "\"PartitionKey\":\"1\"},{\"Data\":\"eyJteV9yZXN1bHQyIjoib2shIn0=\",\"PartitionKey\":"
         "\"2\"}]}"},
        {"{\"metadata\":{\"method\":\"get_records\",\"shard_iterator\":\"AAAA\",\"limit\":"
         "\"25\",\"stream_name\":\"ignored\"}}",
         "GetRecords", "{\"ShardIterator\":\"AAAA\",\"Limit\":25}"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fake_reset();
        F.canned = strcmp(cases[i].op, "PutRecords") == 0
                       ? "{\"FailedRecordCount\":0,\"Records\":[{\"SequenceNumber\":\"1\","
                         "\"ShardId\":\"a\"},{\"SequenceNumber\":\"2\",\"ShardId\":\"a\"}]}"
                       : "{}";
        run(cases[i].request);
        assert_int_equal(F.calls, 1);
        assert_string_equal(F.ops[0], cases[i].op);
        if (strcmp(F.bodies[0], cases[i].body) != 0) {
            fail_msg("case %zu (%s): body\n  %s\nwant\n  %s", i, cases[i].op, F.bodies[0],
                     cases[i].body);
        }
        expect_ok();
    }

    /* put: the older connector style, a random 32-hex-digit partition key. */
    fake_reset();
    F.canned = "{\"ShardId\":\"shardId-000000000000\",\"SequenceNumber\":\"7\"}";
    run("{\"metadata\":{\"stream\":\"test\",\"method\":\"put\",\"shard_count\":\"1\"},\"data\":"
        "\"eyJtZXNzYWdlIjoidGVzdCJ9\"}");
    expect_ok();
    {
        json_t *b = json_loads(F.bodies[0], 0, NULL);
        const char *pk = json_string_value(json_object_get(b, "PartitionKey"));
        assert_string_equal(F.ops[0], "PutRecord");
        assert_non_null(pk);
        assert_int_equal(strlen(pk), 32);
        assert_int_equal(strspn(pk, "0123456789abcdef"), 32);
        assert_string_equal(json_string_value(json_object_get(b, "Data")),
                            "eyJtZXNzYWdlIjoidGVzdCJ9");
        json_decref(b);
    }
    /* No method at all: the older connector style's default put. */
    fake_reset();
    F.canned = "{\"ShardId\":\"shardId-000000000000\",\"SequenceNumber\":\"8\"}";
    run("{\"metadata\":{\"stream\":\"test\",\"partition_key\":\"p\"},\"data\":\"QUJD\"}");
    expect_ok();
    assert_string_equal(F.ops[0], "PutRecord");
    assert_string_equal(F.bodies[0],
                        "{\"StreamName\":\"test\",\"PartitionKey\":\"p\",\"Data\":\"QUJD\"}");
    /* The data's base64 goes as it came only in its canonical spelling;
     * text data is encoded. */
    fake_reset();
    F.canned = "{\"ShardId\":\"shardId-000000000000\",\"SequenceNumber\":\"9\"}";
    run("{\"metadata\":{\"method\":\"put_record\",\"stream_name\":\"s\",\"partition_key\":"
        "\"p\"},\"data\":\"QR==\"}");
    expect_ok();
    assert_string_equal(F.bodies[0],
                        "{\"StreamName\":\"s\",\"PartitionKey\":\"p\",\"Data\":\"QQ==\"}");
    fake_reset();
    F.canned = "{\"ShardId\":\"shardId-000000000000\",\"SequenceNumber\":\"10\"}";
    run("{\"metadata\":{\"method\":\"put_record\",\"stream_name\":\"s\",\"partition_key\":"
        "\"p\"},\"data\":\"plain text\"}");
    expect_ok();
    assert_string_equal(F.bodies[0], "{\"StreamName\":\"s\",\"PartitionKey\":\"p\",\"Data\":"
                                     "\"cGxhaW4gdGV4dA==\"}");
    assert_string_equal(meta("sequence_number"), "10");
}

/* ------------------------------------------------------ reply parsing */

static void answer_error(struct fake *f, const char *op, json_t *body, long *status,
                         struct buf *resp)
{
    (void)f;
    (void)op;
    (void)body;
    *status = 400;
    buf_append_str(resp, "{\"__type\":\"ResourceNotFoundException\",\"message\":\"Stream s1 "
                         "under account 000000000000 not found.\"}");
}

static void test_replies(void **state)
{
    (void)state;

    F.canned = "{\"ShardId\":\"shardId-000000000001\",\"SequenceNumber\":\"4960\"}";
    run("{\"metadata\":{\"method\":\"put_record\",\"stream_name\":\"s1\",\"partition_key\":\"k\"},"
        "\"data\":\"QQ==\"}");
    expect_ok();
    assert_string_equal(meta("shard_id"), "shardId-000000000001");
    assert_string_equal(meta("sequence_number"), "4960");
    assert_string_equal(H.reply.data.data, F.canned);

    F.canned = "{\"ShardIterator\":\"ITER-1\"}";
    run("{\"metadata\":{\"method\":\"get_shard_iterator\",\"stream_name\":\"s1\",\"shard_id\":"
        "\"shardId-000000000001\",\"shard_iterator_type\":\"LATEST\"}}");
    expect_ok();
    assert_string_equal(meta("shard_iterator"), "ITER-1");

    F.canned = "{\"MillisBehindLatest\":12,\"NextShardIterator\":\"ITER-2\",\"Records\":[]}";
    run("{\"metadata\":{\"method\":\"get_records\",\"shard_iterator_id\":\"ITER-1\"}}");
    expect_ok();
    assert_string_equal(meta("next_shard_iterator"), "ITER-2");
    assert_string_equal(meta("millis_behind_latest"), "12");
    assert_string_equal(F.bodies[F.calls - 1], "{\"ShardIterator\":\"ITER-1\",\"Limit\":1}");

    /* create_stream answers nothing: data null. */
    F.canned = "";
    run("{\"metadata\":{\"method\":\"create_stream\",\"stream_name\":\"s1\"}}");
    expect_ok();
    assert_int_equal(H.reply.has_data, 0);
    F.canned = "{}";
    run("{\"metadata\":{\"method\":\"delete_stream\",\"stream_name\":\"s1\"}}");
    expect_ok();
    assert_int_equal(H.reply.has_data, 0);

    /* An AWS error: "<Type>: <message>", nothing else. */
    F.answer = answer_error;
    run("{\"metadata\":{\"method\":\"describe_stream\",\"stream_name\":\"s1\"}}");
    assert_true(H.reply.is_error);
    assert_string_equal(buf_str(&H.reply.error), "ResourceNotFoundException: Stream s1 under "
                                                 "account 000000000000 not found.");
    assert_null(meta("result"));
    assert_int_equal(H.reply.has_data, 0);
    /* ... with its type for the metrics, and not worth a retry. */
    assert_string_equal(H.reply.error_type, "ResourceNotFoundException");
    assert_false(H.reply.retryable);
    envelope_reply_reset(&H.reply);
    assert_string_equal(H.reply.error_type, "");

    /* Validation errors are no AWS errors. */
    run("{\"metadata\":{\"method\":\"describe_stream\"}}");
    assert_true(H.reply.is_error);
    assert_string_equal(H.reply.error_type, "");
}

static void answer_bad_gateway(struct fake *f, const char *op, json_t *body, long *status,
                               struct buf *resp)
{
    (void)f;
    (void)op;
    (void)body;
    *status = 502;
    buf_append_str(resp, "<html>Bad Gateway</html>");
}

/* A whole put_records call that failed before anything was written is as
 * retryable as any other call with that status: a bare 502 is. */
static void test_put_records_http_error(void **state)
{
    (void)state;
    F.answer = answer_bad_gateway;
    run("{\"metadata\":{\"method\":\"put_records\",\"stream_name\":\"s1\"},\"data\":{\"k\":"
        "\"QQ==\"}}");
    assert_true(H.reply.is_error);
    assert_int_equal(F.calls, 3); /* the AWS client's own attempts */
    assert_string_equal(buf_str(&H.reply.error), "HTTP502: <html>Bad Gateway</html>");
    assert_string_equal(H.reply.error_type, "HTTP502");
    assert_true(H.reply.retryable);
}

/* ------------------------------------------------------ put_records */

/* Every entry succeeds; SequenceNumber = its partition key. Entries
 * whose key is in f->canned ("|k1|k3|") fail with PTEE while
 * f->counter > 0 (decremented per call). */
static void answer_put_records(struct fake *f, const char *op, json_t *body, long *status,
                               struct buf *resp)
{
    json_t *records = json_object_get(body, "Records"), *r;
    size_t i, failed = 0;
    struct buf out = BUF_INIT(0);

    (void)status;
    assert_string_equal(op, "PutRecords");
    json_array_foreach(records, i, r)
    {
        const char *pk = json_string_value(json_object_get(r, "PartitionKey"));
        char needle[300];
        snprintf(needle, sizeof(needle), "|%s|", pk);
        if (i) {
            buf_append_char(&out, ',');
        }
        if (f->canned && f->counter > 0 && strstr(f->canned, needle)) {
            failed++;
            buf_append_str(&out, "{\"ErrorCode\":\"ProvisionedThroughputExceededException\","
                                 "\"ErrorMessage\":\"Rate exceeded for shard\"}");
        } else {
            buf_appendf(&out, "{\"SequenceNumber\":\"%s\",\"ShardId\":\"shardId-0\"}", pk);
        }
    }
    if (f->counter > 0) {
        f->counter--;
    }
    buf_appendf(resp, "{\"FailedRecordCount\":%zu,\"Records\":[%s]}", failed, buf_str(&out));
    buf_free(&out);
}

static int body_records(int call)
{
    json_t *b = json_loads(F.bodies[call], 0, NULL);
    int n = (int)json_array_size(json_object_get(b, "Records"));

    json_decref(b);
    return n;
}

/* Data read in place (plain strings) and data the full parser reads
 * (escapes, repeated keys, hash keys) give the same PutRecords bodies. */
static void put_records_body(const char *data_json, char *out, size_t outlen)
{
    struct buf b = BUF_INIT(0);

    fake_reset();
    F.answer = answer_put_records;
    buf_append_str(&b, "{\"metadata\":{\"method\":\"put_records\",\"stream_name\":\"s1\"},"
                       "\"data\":\"");
    b64_encode(data_json, strlen(data_json), &b);
    buf_append_str(&b, "\"}");
    run(buf_str(&b));
    expect_ok();
    assert_int_equal(F.calls, 1);
    snprintf(out, outlen, "%s", F.bodies[0]);
    buf_free(&b);
}

static void test_put_records_fast_and_full_agree(void **state)
{
    static const char *const pairs[][2] = {
        {"{\"a\":\"QQ==\",\"b\":\"Qg==\"}", "{\"\\u0061\":\"QQ==\",\"b\":\"Qg==\"}"},
        {" [ {\"partition_key\":\"a\",\"data\":\"QQ==\"} , "
         "{\"data\":\"Qg==\",\"partition_key\":\"a\"} ] ",
         "[{\"partition_key\":\"\\u0061\",\"data\":\"QQ==\"},{\"partition_key\":\"a\",\"data\":"
         "\"Qg==\"}]"},
    };
    char fast[4096], full[4096];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        put_records_body(pairs[i][0], fast, sizeof(fast));
        put_records_body(pairs[i][1], full, sizeof(full));
        assert_string_equal(fast, full);
    }
    /* A repeated key is one member: the last value, the first place. */
    put_records_body("{\"a\":\"QQ==\",\"b\":\"Qg==\",\"a\":\"Qw==\"}", full, sizeof(full));
    assert_string_equal(full,
                        "{\"StreamName\":\"s1\",\"Records\":[{\"Data\":\"Qw==\","
                        "\"PartitionKey\":\"a\"},{\"Data\":\"Qg==\",\"PartitionKey\":\"b\"}]}");
    /* Hash keys go through the full parser and arrive. */
    put_records_body("[{\"partition_key\":\"a\",\"data\":\"QQ==\",\"explicit_hash_key\":\"7\"}]",
                     full, sizeof(full));
    assert_non_null(strstr(full, "\"ExplicitHashKey\":\"7\""));
}

static void test_put_records_split_500(void **state)
{
    struct buf b = BUF_INIT(0);
    size_t i;

    (void)state;
    F.answer = answer_put_records;
    buf_append_str(&b, "{\"metadata\":{\"method\":\"put_records\",\"stream_name\":\"s1\"},"
                       "\"data\":\"");
    {
        struct buf arr = BUF_INIT(0);
        buf_append_char(&arr, '[');
        for (i = 0; i < 1201; i++) {
            buf_appendf(&arr, "%s{\"partition_key\":\"k%zu\",\"data\":\"QQ==\"}", i ? "," : "", i);
        }
        buf_append_char(&arr, ']');
        b64_encode(arr.data, arr.len, &b);
        buf_free(&arr);
    }
    buf_append_str(&b, "\"}");
    run(buf_str(&b));
    expect_ok();
    assert_int_equal(F.calls, 3);
    assert_int_equal(body_records(0), 500);
    assert_int_equal(body_records(1), 500);
    assert_int_equal(body_records(2), 201);
    assert_string_equal(meta("failed_record_count"), "0");
    assert_int_equal(json_array_size(json_object_get(H.data, "Records")), 1201);
    for (i = 0; i < 1201; i++) {
        char want[32];
        json_t *r = json_array_get(json_object_get(H.data, "Records"), i);
        snprintf(want, sizeof(want), "k%zu", i);
        assert_string_equal(json_string_value(json_object_get(r, "SequenceNumber")), want);
    }
    buf_free(&b);
}

static void test_put_records_split_5mib(void **state)
{
    struct buf b = BUF_INIT(64 << 20), raw = BUF_INIT(0);
    char *blob = malloc(1000000);
    size_t i;

    (void)state;
    memset(blob, 0xAB, 1000000);
    F.answer = answer_put_records;
    /* Six records of 1000001 bytes with their keys: five fit in 5 MiB. */
    buf_append_char(&raw, '{');
    for (i = 0; i < 6; i++) {
        buf_appendf(&raw, "%s\"%zu\":\"", i ? "," : "", i);
        b64_encode(blob, 1000000, &raw);
        buf_append_char(&raw, '"');
    }
    buf_append_char(&raw, '}');
    buf_append_str(&b, "{\"metadata\":{\"method\":\"put_records\",\"stream_name\":\"s1\"},"
                       "\"data\":");
    buf_append(&b, raw.data, raw.len); /* a JSON object as data: its text is the data */
    buf_append_char(&b, '}');
    run(buf_str(&b));
    expect_ok();
    assert_int_equal(F.calls, 2);
    assert_int_equal(body_records(0), 5);
    assert_int_equal(body_records(1), 1);
    assert_int_equal(json_array_size(json_object_get(H.data, "Records")), 6);
    buf_free(&b);
    buf_free(&raw);
    free(blob);
}

static const char *const ten_records =
    "{\"metadata\":{\"method\":\"put_records\",\"stream_name\":\"s1\"},\"data\":\"%s\"}";

static void put_ten(void)
{
    struct buf arr = BUF_INIT(0), b64 = BUF_INIT(0);
    char body[4096];
    int i;

    buf_append_char(&arr, '[');
    for (i = 0; i < 10; i++) {
        buf_appendf(&arr, "%s{\"partition_key\":\"k%d\",\"data\":\"QQ==\"}", i ? "," : "", i);
    }
    buf_append_char(&arr, ']');
    b64_encode(arr.data, arr.len, &b64);
    snprintf(body, sizeof(body), ten_records, buf_str(&b64));
    run(body);
    buf_free(&arr);
    buf_free(&b64);
}

static void test_put_records_partial_resend(void **state)
{
    json_t *b;

    (void)state;
    F.answer = answer_put_records;
    F.canned = "|k1|k7|";
    F.counter = 1; /* only the first call fails them */
    put_ten();
    expect_ok();
    assert_int_equal(F.calls, 2);
    assert_int_equal(body_records(0), 10);
    /* The resend holds exactly the two failed entries, in order. */
    b = json_loads(F.bodies[1], 0, NULL);
    assert_int_equal(json_array_size(json_object_get(b, "Records")), 2);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(b, "Records"), 0), "PartitionKey")),
                        "k1");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(b, "Records"), 1), "PartitionKey")),
                        "k7");
    json_decref(b);
    assert_string_equal(meta("failed_record_count"), "0");
    assert_int_equal(json_integer_value(json_object_get(H.data, "FailedRecordCount")), 0);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(H.data, "Records"), 7),
                                          "SequenceNumber")),
        "k7");
}

static void test_put_records_partial_exhausted(void **state)
{
    json_t *r;

    (void)state;
    F.answer = answer_put_records;
    F.canned = "|k2|k5|";
    F.counter = 100; /* always */
    put_ten();
    assert_true(H.reply.is_error);
    assert_string_equal(buf_str(&H.reply.error), "put_records: 2 of 10 records failed "
                                                 "(ProvisionedThroughputExceededException)");
    assert_int_equal(F.calls, 3); /* max_attempts */
    assert_int_equal(body_records(1), 2);
    assert_int_equal(body_records(2), 2);
    assert_null(meta("result"));
    assert_string_equal(meta("failed_record_count"), "2");
    assert_non_null(H.data);
    assert_int_equal(json_integer_value(json_object_get(H.data, "FailedRecordCount")), 2);
    r = json_array_get(json_object_get(H.data, "Records"), 5);
    assert_string_equal(json_string_value(json_object_get(r, "ErrorCode")),
                        "ProvisionedThroughputExceededException");
    r = json_array_get(json_object_get(H.data, "Records"), 4);
    assert_string_equal(json_string_value(json_object_get(r, "SequenceNumber")), "k4");
}

static void test_put_records_array_errors(void **state)
{
    char body[1024], b64[512];
    struct buf enc = BUF_INIT(0);
    static const char *const arrays[][2] = {
        {"[{\"partition_key\":\"a\",\"data\":\"QQ==\"},{\"partition_key\":\"b\",\"data\":\"@@\"}]",
         "data[1].data: record data is not valid base64 (standard alphabet, padded)"},
        {"[{\"partition_key\":\"\",\"data\":\"QQ==\"}]",
         "data[0].partition_key: must be 1 to 256 characters, got 0"},
        {"[{\"data\":\"QQ==\"}]", "data[0].partition_key: is required"},
        {"[{\"partition_key\":\"a\",\"data\":\"QQ==\",\"x\":1}]",
         "data[0]: unknown field \"x\" (fields: partition_key, data, explicit_hash_key)"},
        {"[{\"partition_key\":\"a\",\"data\":\"QQ==\",\"explicit_hash_key\":\"-1\"}]",
         "data[0].explicit_hash_key: must be a decimal integer from 0 to 2^128-1 "
         "(340282366920938463463374607431768211455), got \"-1\""},
        {"[1]", "data[0]: must be an object {\"partition_key\":\"...\",\"data\":\"<base64>\"}"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++) {
        buf_reset(&enc);
        b64_encode(arrays[i][0], strlen(arrays[i][0]), &enc);
        snprintf(b64, sizeof(b64), "%s", buf_str(&enc));
        snprintf(body, sizeof(body), ten_records, b64);
        run(body);
        assert_true(H.reply.is_error);
        assert_string_equal(buf_str(&H.reply.error), arrays[i][1]);
    }
    assert_int_equal(F.calls, 0);
    buf_free(&enc);
}

/* ------------------------------------------------- answers with nulls */

/* kinesis-mock / LocalStack style: every member written, absent ones null;
 * the stated FailedRecordCount is off (the entries win, a debug line says
 * so); an empty ErrorCode is no error; an entry with neither an error nor
 * a sequence number fails and is not sent again. */
static void answer_nulls(struct fake *f, const char *op, json_t *body, long *status,
                         struct buf *resp)
{
    json_t *records = json_object_get(body, "Records"), *r;
    size_t i;

    (void)f;
    (void)status;
    assert_string_equal(op, "PutRecords");
    buf_append_str(resp, "{\"EncryptionType\":null,\"FailedRecordCount\":2,\"Records\":[");
    json_array_foreach(records, i, r)
    {
        const char *pk = json_string_value(json_object_get(r, "PartitionKey"));

        if (i) {
            buf_append_char(resp, ',');
        }
        if (strcmp(pk, "lost") == 0) {
            buf_append_str(resp, "{\"ErrorCode\":null,\"ErrorMessage\":null,\"SequenceNumber\":"
                                 "null,\"ShardId\":null}");
        } else if (strcmp(pk, "empty") == 0) {
            buf_append_str(resp, "{\"ErrorCode\":\"\",\"SequenceNumber\":\"7\",\"ShardId\":"
                                 "\"shardId-000000000000\"}");
        } else {
            buf_appendf(resp,
                        "{\"ErrorCode\":null,\"ErrorMessage\":null,\"SequenceNumber\":\"%s\","
                        "\"ShardId\":\"shardId-000000000000\"}",
                        pk);
        }
    }
    buf_append_str(resp, "]}");
}

static void test_put_records_null_members(void **state)
{
    char path[] = "/tmp/kk-kinesis-log-XXXXXX", text[4096];
    json_t *r;
    ssize_t n;
    int fd;

    (void)state;
    fd = mkstemp(path);
    assert_true(fd >= 0);
    log_setup(LOG_LEVEL_DEBUG, LOG_FORMAT_TEXT);
    log_set_fd(fd);
    F.answer = answer_nulls;
    run("{\"metadata\":{\"method\":\"put_records\",\"stream_name\":\"s1\"},\"data\":{\"pkA\":"
        "\"aGVsbG8=\",\"pkB\":\"d29ybGQ=\",\"empty\":\"QQ==\"}}");
    log_set_fd(-1);
    log_setup(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    n = pread(fd, text, sizeof(text) - 1, 0);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    text[n] = '\0';
    expect_ok();
    assert_int_equal(F.calls, 1);
    assert_string_equal(meta("failed_record_count"), "0");
    assert_int_equal(json_integer_value(json_object_get(H.data, "FailedRecordCount")), 0);
    assert_null(json_object_get(H.data, "EncryptionType"));
    r = json_array_get(json_object_get(H.data, "Records"), 0);
    assert_string_equal(json_string_value(json_object_get(r, "SequenceNumber")), "pkA");
    assert_non_null(strstr(text, "PutRecords answered FailedRecordCount 2 but 0 of its 3 entries "
                                 "failed; the entries count"));

    /* An entry with neither an error nor a sequence number. The data:
     * [{"partition_key":"a","data":"QQ=="},{"partition_key":"lost",
     * "data":"QQ=="},{"partition_key":"b\\u0062","data":"QQ=="}] */
    fake_reset();
    F.answer = answer_nulls;
    run("{\"metadata\":{\"method\":\"put_records\",\"stream_name\":\"s1\"},\"data\":"
        "\"W3sicGFydGl0aW9uX2tleSI6ImEiLCJkYXRhIjoiUVE9PSJ9LHsicGFydGl0aW9uX2tleSI6Imxvc3QiLCJkYXRh"
        "IjoiUVE9PSJ9LHsicGFydGl0aW9uX2tleSI6ImJcdTAwNjIiLCJkYXRhIjoiUVE9PSJ9XQ==\"}");
    assert_true(H.reply.is_error);
    assert_int_equal(F.calls, 1); /* the lost entry is not sent again */
    assert_string_equal(buf_str(&H.reply.error), "put_records: 1 of 3 records failed "
                                                 "(InvalidResponse)");
    assert_string_equal(meta("failed_record_count"), "1");
    r = json_array_get(json_object_get(H.data, "Records"), 1);
    assert_string_equal(json_string_value(json_object_get(r, "ErrorCode")), "InvalidResponse");
    r = json_array_get(json_object_get(H.data, "Records"), 2);
    assert_string_equal(json_string_value(json_object_get(r, "SequenceNumber")), "bb");
}

/* PutRecord answered with null members (kinesis-mock writes
 * "EncryptionType":null): read in place and by jansson alike. */
static void test_put_record_null_members(void **state)
{
    static const char *const answers[] = {
        "{\"EncryptionType\":null,\"SequenceNumber\":\"4960\",\"ShardId\":\"shardId-1\"}",
        "{\"EncryptionType\":null,\"SequenceNumber\":\"4960\",\"ShardId\":\"shardId-\\u0031\"}",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(answers) / sizeof(*answers); i++) {
        F.canned = answers[i];
        run("{\"metadata\":{\"method\":\"put_record\",\"stream_name\":\"s1\",\"partition_key\":"
            "\"k\"},\"data\":\"QQ==\"}");
        expect_ok();
        assert_string_equal(meta("shard_id"), "shardId-1");
        assert_string_equal(meta("sequence_number"), "4960");
    }
    /* A null where a value belongs is no value. */
    F.canned = "{\"SequenceNumber\":null,\"ShardId\":null}";
    run("{\"metadata\":{\"method\":\"put_record\",\"stream_name\":\"s1\",\"partition_key\":"
        "\"k\"},\"data\":\"QQ==\"}");
    assert_null(meta("shard_id"));
    assert_null(meta("sequence_number"));
}

/* ------------------------------------------------------ timestamps */

static void test_time_go(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"1796609595.51", "2026-12-07T02:13:15.51Z"},
        {"1796609595.510", "2026-12-07T02:13:15.51Z"},
        {"1796609595", "2026-12-07T02:13:15Z"},
        {"1796609595.0", "2026-12-07T02:13:15Z"},
        {"1795322043.495", "2026-11-22T04:34:03.495Z"},
        {"1706698800.123", "2024-01-31T11:00:00.123Z"},
        {"1706698800.1234", "2024-01-31T11:00:00.123Z"},
        {"1706698800.1235", "2024-01-31T11:00:00.124Z"}, /* rounded to the millisecond */
        {"1706698799.9996", "2024-01-31T11:00:00Z"},
        {"1.706698800123E9", "2024-01-31T11:00:00.123Z"},
        {"17066988001.23e-1", "2024-01-31T11:00:00.123Z"},
        {"0", "1970-01-01T00:00:00Z"},
        {"0.0005", "1970-01-01T00:00:00.001Z"},
        {"-1.5", "1969-12-31T23:59:58.5Z"},
        {"-0", "1970-01-01T00:00:00Z"},
        {"253402300799.999", "9999-12-31T23:59:59.999Z"},
        {"-62135596800", "0001-01-01T00:00:00Z"},
        {"1706698800000000000000000000000000000000000000000000e-42", "2024-01-31T11:00:00Z"},
    };
    static const char *const bad[] = {
        "253402300800", "-62167219201", "1e20", "abc", "01", "1.",
        ".5",           "1e",           "--1",  "",    "1 ", "99999999999999999999",
    };
    char out[64];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        int n = kinesis_time_go(cases[i].in, strlen(cases[i].in), out, sizeof(out));
        if (n < 0 || strcmp(out, cases[i].out) != 0) {
            fail_msg("%s: got %d \"%s\", want \"%s\"", cases[i].in, n, n < 0 ? "" : out,
                     cases[i].out);
        }
        assert_int_equal(n, (int)strlen(cases[i].out));
    }
    for (i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        if (kinesis_time_go(bad[i], strlen(bad[i]), out, sizeof(out)) >= 0) {
            fail_msg("%s: accepted as \"%s\"", bad[i], out);
        }
    }
}

static void test_times_rewrite(void **state)
{
    static const struct {
        const char *in, *out;
        int count;
    } cases[] = {
        {"{\"StreamDescriptionSummary\":{\"StreamCreationTimestamp\":1795322037,\"N\":1}}",
         "{\"StreamDescriptionSummary\":{\"StreamCreationTimestamp\":\"2026-11-22T04:33:57Z\","
         "\"N\":1}}",
         1},
        /* Only numbers of *Timestamp members; strings, nulls and other
         * members stay as they are, spacing included. */
        {"{\"a\" : [ {\"ApproximateArrivalTimestamp\" :\t1706698800.123 } ],\"Timestamp\":null,"
         "\"XTimestamp\":\"1\",\"Timestamps\":5,\"b\":\"ApproximateArrivalTimestamp\"}",
         "{\"a\" : [ {\"ApproximateArrivalTimestamp\" :\t\"2024-01-31T11:00:00.123Z\" } ],"
         "\"Timestamp\":null,\"XTimestamp\":\"1\",\"Timestamps\":5,\"b\":"
         "\"ApproximateArrivalTimestamp\"}",
         1},
        /* An escaped key is read as what it says; escaped quotes inside
         * strings do not end them. */
        {"{\"k\\\"\":\"\\\"Timestamp\\\":1\",\"Time\\u0073tamp\":1.5,\"\\\\\":0}",
         "{\"k\\\"\":\"\\\"Timestamp\\\":1\",\"Time\\u0073tamp\":\"1970-01-01T00:00:01.5Z\","
         "\"\\\\\":0}",
         1},
        /* A number no Go time holds stays a number. */
        {"{\"Timestamp\":1e300}", "{\"Timestamp\":1e300}", 0},
    };
    struct buf out = BUF_INIT(4096);
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        buf_reset(&out);
        assert_int_equal(kinesis_times_rewrite(cases[i].in, strlen(cases[i].in), &out),
                         cases[i].count);
        assert_string_equal(buf_str(&out), cases[i].out);
    }
    buf_reset(&out);
    assert_int_equal(kinesis_times_rewrite("{\"a\":\"open", 10, &out), -1);
    buf_free(&out);
}

/* Every method's reply: timestamps as Go wrote them, or as they came. */
static void test_reply_timestamps(void **state)
{
    static const struct {
        const char *request, *answer, *want;
    } cases[] = {
        {"{\"metadata\":{\"method\":\"describe_stream\",\"stream_name\":\"s1\"}}",
         "{\"StreamDescriptionSummary\":{\"StreamName\":\"s1\",\"StreamCreationTimestamp\":"
         "1795322037}}",
         "\"StreamCreationTimestamp\":\"2026-11-22T04:33:57Z\""},
        {"{\"metadata\":{\"method\":\"list_streams\"}}",
         "{\"HasMoreStreams\":false,\"StreamNames\":[\"s1\"],\"StreamSummaries\":[{"
         "\"StreamCreationTimestamp\":1.795322037E9,\"StreamName\":\"s1\"}]}",
         "\"StreamCreationTimestamp\":\"2026-11-22T04:33:57Z\""},
        {"{\"metadata\":{\"method\":\"list_stream_consumers\",\"stream_arn\":\"arn:aws:k\"}}",
         "{\"Consumers\":[{\"ConsumerARN\":\"arn:c\",\"ConsumerCreationTimestamp\":"
         "1795322043.495,\"ConsumerName\":\"c\",\"ConsumerStatus\":\"ACTIVE\"}]}",
         "\"ConsumerCreationTimestamp\":\"2026-11-22T04:34:03.495Z\""},
        {"{\"metadata\":{\"method\":\"create_stream_consumer\",\"stream_arn\":\"arn:aws:k\","
         "\"consumer_name\":\"c\"}}",
         "{\"Consumer\":{\"ConsumerARN\":\"arn:c\",\"ConsumerCreationTimestamp\":1795322043.495,"
         "\"ConsumerName\":\"c\",\"ConsumerStatus\":\"CREATING\"}}",
         "\"ConsumerCreationTimestamp\":\"2026-11-22T04:34:03.495Z\""},
        {"{\"metadata\":{\"method\":\"get_records\",\"shard_iterator_id\":\"IT\"}}",
         "{\"MillisBehindLatest\":0,\"NextShardIterator\":\"IT2\",\"Records\":[{\"Data\":"
         "\"QQ==\",\"PartitionKey\":\"p\",\"SequenceNumber\":\"1\","
         "\"ApproximateArrivalTimestamp\":1796609595.51}]}",
         "\"ApproximateArrivalTimestamp\":\"2026-12-07T02:13:15.51Z\""},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        F.canned = cases[i].answer;
        run(cases[i].request);
        expect_ok();
        if (!strstr(buf_str(&H.reply.data), cases[i].want)) {
            fail_msg("%s: data %s", cases[i].request, buf_str(&H.reply.data));
        }
        assert_non_null(H.data); /* still JSON */
    }
    kinesis_target_kind.destroy(H.k);
    H.k = make("\"timestamp_format\":\"epoch\"");
    for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        F.canned = cases[i].answer;
        run(cases[i].request);
        expect_ok();
        assert_string_equal(buf_str(&H.reply.data), cases[i].answer);
    }
}

/* ------------------------------------------------------ get_records walk */

/* Two ListShards pages (2 + 1 shards); shard i holds i+2 records; records
 * are "s<shard>-<n>". */
static void answer_walk(struct fake *f, const char *op, json_t *body, long *status,
                        struct buf *resp)
{
    (void)f;
    (void)status;
    if (strcmp(op, "ListShards") == 0) {
        if (json_object_get(body, "NextToken")) {
            assert_null(json_object_get(body, "StreamName"));
            buf_append_str(resp, "{\"Shards\":[{\"ShardId\":\"shardId-2\"}]}");
        } else {
            assert_string_equal(json_string_value(json_object_get(body, "StreamName")), "s1");
            buf_append_str(resp, "{\"NextToken\":\"page2\",\"Shards\":[{\"ShardId\":"
                                 "\"shardId-0\"},{\"ShardId\":\"shardId-1\"}]}");
        }
    } else if (strcmp(op, "GetShardIterator") == 0) {
        assert_string_equal(json_string_value(json_object_get(body, "ShardIteratorType")),
                            "TRIM_HORIZON");
        buf_appendf(resp, "{\"ShardIterator\":\"it-%s\"}",
                    json_string_value(json_object_get(body, "ShardId")));
    } else {
        const char *it = json_string_value(json_object_get(body, "ShardIterator"));
        int shard = it[strlen(it) - 1] - '0';
        int have = shard + 2, limit = (int)json_integer_value(json_object_get(body, "Limit"));
        int n = have < limit ? have : limit, i;

        assert_string_equal(op, "GetRecords");
        buf_append_str(resp, "{\"Records\":[");
        for (i = 0; i < n; i++) {
            buf_appendf(resp,
                        "%s{\"Data\":\"QQ==\",\"PartitionKey\":\"p\",\"SequenceNumber\":"
                        "\"s%d-%d\",\"ApproximateArrivalTimestamp\":1706698800.123}",
                        i ? "," : "", shard, i);
        }
        buf_appendf(resp, "],\"NextShardIterator\":\"next-%d\",\"MillisBehindLatest\":0}", shard);
    }
}

static void test_get_records_stream_walk(void **state)
{
    json_t *recs, *shards;
    static const char *const want[] = {"s0-0", "s0-1", "s1-0", "s1-1", "s1-2", "s2-0"};
    size_t i;

    (void)state;
    F.answer = answer_walk;
    run("{\"metadata\":{\"method\":\"get_records\",\"stream_name\":\"s1\",\"limit\":\"6\"}}");
    expect_ok();
    /* ListShards x2, then (GetShardIterator, GetRecords) x3 */
    assert_int_equal(F.calls, 8);
    assert_string_equal(F.ops[0], "ListShards");
    assert_string_equal(F.ops[1], "ListShards");
    assert_string_equal(F.ops[2], "GetShardIterator");
    assert_string_equal(F.bodies[3], "{\"ShardIterator\":\"it-shardId-0\",\"Limit\":6}");
    assert_string_equal(F.bodies[5], "{\"ShardIterator\":\"it-shardId-1\",\"Limit\":4}");
    assert_string_equal(F.bodies[7], "{\"ShardIterator\":\"it-shardId-2\",\"Limit\":1}");
    recs = json_object_get(H.data, "Records");
    assert_int_equal(json_array_size(recs), 6);
    for (i = 0; i < 6; i++) {
        json_t *r = json_array_get(recs, i);
        assert_string_equal(json_string_value(json_object_get(r, "SequenceNumber")), want[i]);
    }
    assert_string_equal(json_string_value(json_object_get(json_array_get(recs, 2), "ShardId")),
                        "shardId-1");
    /* The arrival timestamp as Go writes a time.Time. */
    assert_non_null(
        strstr(H.reply.data.data, "\"ApproximateArrivalTimestamp\":\"2024-01-31T11:00:00.123Z\""));
    assert_null(strstr(H.reply.data.data, "1706698800"));
    shards = json_object_get(H.data, "Shards");
    assert_int_equal(json_array_size(shards), 3);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(shards, 1), "NextShardIterator")),
        "next-1");
    assert_string_equal(meta("millis_behind_latest"), "0");
    assert_null(meta("next_shard_iterator"));

    /* The limit is reached inside the first shard: one shard visited. */
    fake_reset();
    F.answer = answer_walk;
    run("{\"metadata\":{\"method\":\"get_records\",\"stream_name\":\"s1\"}}");
    expect_ok();
    assert_int_equal(F.calls, 4);
    assert_int_equal(json_array_size(json_object_get(H.data, "Records")), 1);

    /* stream + shard: one iterator, one GetRecords, the reply as is. */
    fake_reset();
    F.answer = answer_walk;
    run("{\"metadata\":{\"method\":\"get_records\",\"stream_name\":\"s1\",\"shard_id\":"
        "\"shardId-1\",\"limit\":\"10\"}}");
    expect_ok();
    assert_int_equal(F.calls, 2);
    assert_string_equal(meta("next_shard_iterator"), "next-1");
    assert_int_equal(json_array_size(json_object_get(H.data, "Records")), 3);
    assert_non_null(strstr(H.reply.data.data, "\"2024-01-31T11:00:00.123Z\""));

    /* timestamp_format epoch: the wire's seconds, in both forms. */
    kinesis_target_kind.destroy(H.k);
    H.k = make("\"timestamp_format\":\"epoch\"");
    fake_reset();
    F.answer = answer_walk;
    run("{\"metadata\":{\"method\":\"get_records\",\"stream_name\":\"s1\",\"limit\":\"6\"}}");
    expect_ok();
    assert_non_null(strstr(H.reply.data.data, "\"ApproximateArrivalTimestamp\":1706698800.123"));
    fake_reset();
    F.answer = answer_walk;
    run("{\"metadata\":{\"method\":\"get_records\",\"stream_name\":\"s1\",\"shard_id\":"
        "\"shardId-1\",\"limit\":\"10\"}}");
    expect_ok();
    assert_non_null(strstr(H.reply.data.data, "\"ApproximateArrivalTimestamp\":1706698800.123"));
}

/* ------------------------------------------------------ stopping */

/* Start a request and run loop rounds until the fake saw `calls` calls. */
static void start_until(const char *body, int calls)
{
    char err[256];
    int i;

    envelope_reply_reset(&H.reply);
    H.finished = 0;
    assert_int_equal(envelope_request_parse(&H.req, body, strlen(body), 0, err, sizeof(err)), 0);
    kinesis_target_kind.execute(H.k, &H.req, &H.reply, on_done, &H.finished);
    for (i = 0; i < 1000 && F.calls < calls; i++) {
        assert_int_equal(loop_run_once(H.loop, 10), 0);
    }
    /* A 0 ms resend backoff may add a call in the same round. */
    assert_true(F.calls >= calls);
}

static void test_destroy_with_call_in_flight(void **state)
{
    (void)state;
    F.hold_from = 1;
    start_until("{\"metadata\":{\"method\":\"list_streams\"}}", 1);
    assert_int_equal(H.finished, 0);
    kinesis_target_kind.destroy(H.k);
    H.k = NULL;
    assert_int_equal(H.finished, 1);
    assert_true(H.reply.is_error);
    assert_string_equal(buf_str(&H.reply.error),
                        "TransportError: aws client shut down with the request in flight");
    /* The transport answers late: nothing reaches the finished request. */
    F.held_done(F.held_cctx, 200, "{}", 2, NULL);
    assert_int_equal(H.finished, 1);
    H.k = make(NULL);
}

static void test_destroy_during_resend_backoff(void **state)
{
    struct buf arr = BUF_INIT(0), b64 = BUF_INIT(0);
    char body[4096];
    int i;

    (void)state;
    F.answer = answer_put_records;
    F.canned = "|k1|k7|";
    F.counter = 100;
    F.hold_from = 2; /* a resend, if its timer fires first, stays in flight */
    buf_append_char(&arr, '[');
    for (i = 0; i < 10; i++) {
        buf_appendf(&arr, "%s{\"partition_key\":\"k%d\",\"data\":\"QQ==\"}", i ? "," : "", i);
    }
    buf_append_char(&arr, ']');
    b64_encode(arr.data, arr.len, &b64);
    snprintf(body, sizeof(body), ten_records, buf_str(&b64));
    start_until(body, 1);
    assert_int_equal(H.finished, 0);
    kinesis_target_kind.destroy(H.k);
    H.k = NULL;
    assert_int_equal(H.finished, 1);
    assert_true(H.reply.is_error);
    if (F.calls == 1) {
        /* Stopped while waiting to resend k1 and k7. */
        assert_string_equal(buf_str(&H.reply.error),
                            "aws.kinesis: target stopped before the request finished");
    } else {
        /* The backoff drew 0 ms: the resend was in flight. */
        assert_string_equal(buf_str(&H.reply.error),
                            "put_records: 2 of 10 records failed (TransportError)");
        F.held_done(F.held_cctx, 200, "{}", 2, NULL);
    }
    buf_free(&arr);
    buf_free(&b64);
    H.k = make(NULL);
}

/* ------------------------------------------------------ settings */

static void test_settings(void **state)
{
    struct errs errs;
    json_t *props;

    (void)state;
    errs_init(&errs);
    props = json_loads("{\"aws_key\":\"a\",\"region\":\"Not A Region\",\"endpoint\":\"ftp://x\","
                       "\"max_attempts\":\"0\",\"bogus\":\"1\"}",
                       0, NULL);
    assert_null(kinesis_target_kind.create(NULL, props, "b", "binding b: target", &errs));
    assert_non_null(strstr(buf_str(&errs.text), "binding b: target: bogus: unknown property"));
    assert_non_null(strstr(buf_str(&errs.text), "max_attempts: must be an integer from 1 to 20"));
    json_decref(props);
    errs_free(&errs);

    errs_init(&errs);
    props = json_loads("{\"aws_key\":\"a\",\"region\":\"Not A Region\",\"endpoint\":\"ftp://x\"}",
                       0, NULL);
    assert_null(kinesis_target_kind.create(NULL, props, "b", "binding b: target", &errs));
    assert_non_null(strstr(buf_str(&errs.text), "region: must be an AWS region name"));
    assert_non_null(strstr(buf_str(&errs.text), "endpoint: must be an http:// or https:// URL"));
    assert_non_null(strstr(buf_str(&errs.text), "aws_secret_key: is required when aws_key is "
                                                "set"));
    assert_int_equal(errs.count, 3);
    json_decref(props);
    errs_free(&errs);

    /* An endpoint with a password: named, the password not shown. */
    errs_init(&errs);
    props = json_loads("{\"endpoint\":\"https://me:pw-S3cret@kinesis.local\"}", 0, NULL);
    assert_null(kinesis_target_kind.create(NULL, props, "b", "binding b: target", &errs));
    assert_string_equal(buf_str(&errs.text),
                        "binding b: target: endpoint: must be an http:// or https:// URL (aws "
                        "endpoint 'https://***@kinesis.local': user info (user:password@) is not "
                        "allowed)\n");
    json_decref(props);
    errs_free(&errs);

    errs_init(&errs);
    props = json_loads("{\"timestamp_format\":\"iso\"}", 0, NULL);
    assert_null(kinesis_target_kind.create(NULL, props, "b", "binding b: target", &errs));
    assert_non_null(strstr(buf_str(&errs.text), "binding b: target: timestamp_format: must be one "
                                                "of: rfc3339, epoch"));
    json_decref(props);
    errs_free(&errs);

    /* Valid settings with loop NULL: validation only, no instance, no error. */
    errs_init(&errs);
    props = json_loads("{\"aws_key\":\"a\",\"aws_secret_key\":\"b\",\"region\":\"eu-west-1\"}", 0,
                       NULL);
    assert_null(kinesis_target_kind.create(NULL, props, "b", "binding b: target", &errs));
    assert_int_equal(errs.count, 0);
    json_decref(props);
    errs_free(&errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_validation_makes_no_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_records_http_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_records_fast_and_full_agree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_records_split_500, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_records_split_5mib, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_records_partial_resend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_records_partial_exhausted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_records_array_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_records_null_members, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_record_null_members, setup, teardown),
        cmocka_unit_test(test_time_go),
        cmocka_unit_test(test_times_rewrite),
        cmocka_unit_test_setup_teardown(test_reply_timestamps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_records_stream_walk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_with_call_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_during_resend_backoff, setup, teardown),
        cmocka_unit_test(test_settings),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
