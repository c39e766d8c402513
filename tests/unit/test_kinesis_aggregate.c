/* test_kinesis_aggregate.c - KPL aggregation against a fake AWS transport
 * that keeps a shard map and routes as Kinesis does: concurrent put_record
 * requests become aggregated records, one per shard, each user record on
 * the shard its key maps to, in order; replies carry the aggregate's
 * sequence number and each record's sub-sequence number; failed
 * aggregates are sent again whole; a reshard refreshes the map; records
 * too large to share go plain; get_records deaggregates. Also the format
 * itself: exact sizes, round trips. */
#include "aws/aws_client.h"
#include "base/b64.h"
#include "base/errs.h"
#include "base/loop.h"
#include "base/metrics.h"
#include "kinesis/kinesis.h"
#include "kinesis/kinesis_kpl.h"
#include "message/envelope.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#define MAX_REQ    200
#define MAX_SEEN   64
#define MAX_SHARDS 8
#define MAX_STORED 4096

static const kinesis_u128 U128_MAX = ~(kinesis_u128)0;

/* ------------------------------------------------------------ the fake */

struct fshard {
    char id[32];
    kinesis_u128 start, end;
    int closed;
};

/* One user record as the stream holds it (deaggregated by the fake). */
struct stored {
    char shard[32];
    char pk[300];
    char data[64];
    unsigned long long seq;
    long sub; /* -1: a plain record */
};

static struct {
    int calls;
    char ops[MAX_SEEN][32];
    json_t *bodies[MAX_SEEN];
    struct fshard shards[MAX_SHARDS];
    int nshards;
    int list_calls;
    const char *list_error; /* ListShards answers this error type */
    int fail_first;         /* PutRecords: fail entry 0 with PTEE this many times */
    unsigned long long seq;
    struct stored st[MAX_STORED];
    int nst;
    const char *records_answer; /* GetRecords */
} F;

static kinesis_u128 hash_of(const char *pk, const char *ehk)
{
    unsigned char d[16];
    kinesis_u128 h;

    if (ehk) {
        assert_int_equal(kinesis_u128_parse(ehk, strlen(ehk), &h), 0);
        return h;
    }
    kinesis_md5(pk, strlen(pk), d);
    return kinesis_u128_from_md5(d);
}

static const char *fake_shard_of(kinesis_u128 h)
{
    for (int i = 0; i < F.nshards; i++) {
        if (!F.shards[i].closed && F.shards[i].start <= h && h <= F.shards[i].end) {
            return F.shards[i].id;
        }
    }
    fail_msg("no open shard for a hash");
    return NULL;
}

/* n equal shards over the whole range. */
static void set_shards(int n, int first_id)
{
    kinesis_u128 step = U128_MAX / (kinesis_u128)n;

    F.nshards = n;
    for (int i = 0; i < n; i++) {
        snprintf(F.shards[i].id, sizeof(F.shards[i].id), "shardId-%012d", first_id + i);
        F.shards[i].start = step * (kinesis_u128)i + (i ? 1 : 0);
        F.shards[i].end = i == n - 1 ? U128_MAX : step * (kinesis_u128)(i + 1);
        F.shards[i].closed = 0;
    }
}

static void answer_list_shards(struct buf *resp)
{
    char a[48], b[48];

    buf_append_str(resp, "{\"NextToken\":null,\"Shards\":[");
    for (int i = 0; i < F.nshards; i++) {
        kinesis_u128_format(F.shards[i].start, a, sizeof(a));
        kinesis_u128_format(F.shards[i].end, b, sizeof(b));
        buf_appendf(resp,
                    "%s{\"ShardId\":\"%s\",\"HashKeyRange\":{\"StartingHashKey\":\"%s\","
                    "\"EndingHashKey\":\"%s\"},\"SequenceNumberRange\":{\"StartingSequenceNumber\":"
                    "\"1\",\"EndingSequenceNumber\":%s}}",
                    i ? "," : "", F.shards[i].id, a, b, F.shards[i].closed ? "\"9\"" : "null");
    }
    buf_append_str(resp, "]}");
}

static void store(const char *shard, const char *pk, const unsigned char *data, size_t n,
                  unsigned long long seq, long sub)
{
    struct stored *s;

    assert_true(F.nst < MAX_STORED);
    s = &F.st[F.nst++];
    snprintf(s->shard, sizeof(s->shard), "%s", shard);
    snprintf(s->pk, sizeof(s->pk), "%s", pk);
    snprintf(s->data, sizeof(s->data), "%.*s", (int)n, (const char *)data);
    s->seq = seq;
    s->sub = sub;
}

static void answer_put_records(json_t *body, struct buf *resp)
{
    json_t *recs = json_object_get(body, "Records"), *r;
    struct buf raw = BUF_INIT(4 << 20);
    size_t i;

    buf_append_str(resp, "{\"FailedRecordCount\":0,\"Records\":[");
    json_array_foreach(recs, i, r)
    {
        const char *pk = json_string_value(json_object_get(r, "PartitionKey"));
        const char *ehk = json_string_value(json_object_get(r, "ExplicitHashKey"));
        const char *d = json_string_value(json_object_get(r, "Data"));
        const char *shard = fake_shard_of(hash_of(pk, ehk));
        struct kinesis_kpl_unpacked *u;
        unsigned long long seq;

        if (i) {
            buf_append_char(resp, ',');
        }
        if (i == 0 && F.fail_first > 0) {
            F.fail_first--;
            buf_append_str(resp, "{\"ErrorCode\":\"ProvisionedThroughputExceededException\","
                                 "\"ErrorMessage\":\"Rate exceeded for shard\"}");
            continue;
        }
        seq = ++F.seq;
        buf_reset(&raw);
        assert_int_equal(b64_decode(d, strlen(d), &raw), 0);
        u = kinesis_kpl_unpack(raw.data, raw.len);
        if (u) {
            for (size_t j = 0; j < kinesis_kpl_count(u); j++) {
                struct kinesis_kpl_record ur;

                kinesis_kpl_get(u, j, &ur);
                store(shard, ur.pk, ur.data, ur.data_len, seq, (long)j);
            }
            kinesis_kpl_unpacked_free(u);
        } else {
            store(shard, pk, (const unsigned char *)raw.data, raw.len, seq, -1);
        }
        buf_appendf(resp, "{\"ErrorCode\":null,\"SequenceNumber\":\"%llu\",\"ShardId\":\"%s\"}",
                    seq, shard);
    }
    buf_append_str(resp, "]}");
    buf_free(&raw);
}

static int fake_send(void *tctx, const struct aws_http_request *req, aws_http_done_fn done,
                     void *cctx)
{
    struct buf resp = BUF_INIT(64 << 20);
    const char *op = "";
    long status = 200;
    json_t *body;
    int n = F.calls++;

    (void)tctx;
    for (size_t i = 0; req->headers[i]; i++) {
        if (strncasecmp(req->headers[i], "X-Amz-Target:", 13) == 0) {
            op = strchr(req->headers[i], '.') + 1;
        }
    }
    body = json_loadb(req->body, req->body_len, 0, NULL);
    assert_non_null(body);
    if (strcmp(op, "ListShards") == 0) {
        F.list_calls++;
        if (F.list_error) {
            status = 400;
            buf_appendf(&resp, "{\"__type\":\"%s\",\"message\":\"not allowed\"}", F.list_error);
        } else {
            answer_list_shards(&resp);
        }
    } else if (strcmp(op, "PutRecords") == 0) {
        answer_put_records(body, &resp);
    } else if (strcmp(op, "GetRecords") == 0) {
        buf_append_str(&resp, F.records_answer);
    } else {
        buf_append_str(&resp, "{}");
    }
    if (n < MAX_SEEN) {
        snprintf(F.ops[n], sizeof(F.ops[n]), "%s", op);
        F.bodies[n] = body;
    } else {
        json_decref(body);
    }
    done(cctx, status, buf_str(&resp), resp.len, NULL);
    buf_free(&resp);
    return 0;
}

static const struct aws_transport fake_transport = {fake_send, NULL};

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

static void *make(const char *extra)
{
    struct errs errs;
    json_t *props;
    char text[512];
    void *k;

    snprintf(
        text, sizeof(text),
        "{\"aws_key\":\"AKIDEXAMPLE\",\"aws_secret_key\":\"s3cret\",\"region\":\"us-east-1\","
        "\"endpoint\":\"http://127.0.0.1:9\",\"coalesce\":\"true\",\"aggregate\":\"true\"%s%s}",
        extra ? "," : "", extra ? extra : "");
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
    memset(&F, 0, sizeof(F));
    set_shards(4, 0);
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
    if (H.k) {
        kinesis_target_kind.destroy(H.k);
    }
    loop_destroy(H.loop);
    for (int i = 0; i < MAX_REQ; i++) {
        envelope_request_free(&H.r[i].req);
        envelope_reply_free(&H.r[i].reply);
    }
    for (int i = 0; i < MAX_SEEN; i++) {
        json_decref(F.bodies[i]);
    }
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

/* put_record of data with key (extra: more metadata members). */
static void start(int i, const char *key, const char *data, const char *extra)
{
    char body[4096], err[256];
    struct buf enc = BUF_INIT(4096);

    assert_int_equal(b64_encode(data, strlen(data), &enc), 0);
    snprintf(body, sizeof(body),
             "{\"metadata\":{\"method\":\"put_record\",\"stream_name\":\"s1\","
             "\"partition_key\":\"%s\"%s},\"data\":\"%s\"}",
             key, extra ? extra : "", buf_str(&enc));
    buf_free(&enc);
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
}

/* The stored record with this data, or NULL. */
static const struct stored *stored(const char *data)
{
    const struct stored *hit = NULL;

    for (int i = 0; i < F.nst; i++) {
        if (strcmp(F.st[i].data, data) == 0) {
            if (hit) {
                fail_msg("%s stored twice", data);
            }
            hit = &F.st[i];
        }
    }
    return hit;
}

/* Records in the PutRecords body of call n. */
static size_t body_records(int n)
{
    assert_string_equal(F.ops[n], "PutRecords");
    return json_array_size(json_object_get(F.bodies[n], "Records"));
}

/* ------------------------------------------------------------ tests */

/* 80 concurrent records on 4 shards: one ListShards, one PutRecords of 4
 * aggregates; every record on the shard its key maps to, replied with
 * its aggregate's sequence number and its own index. */
static void test_one_aggregate_per_shard(void **state)
{
    char key[32], data[32];
    const struct stored *s;
    int i;

    (void)state;
    H.k = make(NULL);
    for (i = 0; i < 80; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        snprintf(data, sizeof(data), "record-%d", i);
        start(i, key, data, NULL);
    }
    run_all();
    assert_int_equal(F.list_calls, 1);
    assert_int_equal(F.calls, 2);
    assert_string_equal(F.ops[0], "ListShards");
    assert_int_equal(body_records(1), 4);
    assert_int_equal(F.nst, 80);
    for (i = 0; i < 80; i++) {
        json_t *data_json;

        expect_ok(i);
        snprintf(key, sizeof(key), "key-%d", i);
        snprintf(data, sizeof(data), "record-%d", i);
        s = stored(data);
        assert_non_null(s);
        assert_string_equal(s->pk, key);
        assert_string_equal(s->shard, fake_shard_of(hash_of(key, NULL)));
        assert_string_equal(meta(i, "shard_id"), s->shard);
        assert_int_equal(strtoull(meta(i, "sequence_number"), NULL, 10), s->seq);
        assert_int_equal(strtol(meta(i, "sub_sequence_number"), NULL, 10), s->sub);
        data_json = json_loadb(H.r[i].reply.data.data, H.r[i].reply.data.len, 0, NULL);
        assert_int_equal(json_integer_value(json_object_get(data_json, "SubSequenceNumber")),
                         s->sub);
        json_decref(data_json);
    }
    /* Each aggregate's hash key lies in its shard: its first record's. */
    for (i = 0; i < 4; i++) {
        json_t *r = json_array_get(json_object_get(F.bodies[1], "Records"), (size_t)i);
        const char *ehk = json_string_value(json_object_get(r, "ExplicitHashKey"));
        const char *pk = json_string_value(json_object_get(r, "PartitionKey"));

        assert_non_null(ehk);
        assert_true(hash_of(pk, NULL) == hash_of(pk, ehk));
    }
}

/* Partition keys up to Kinesis's 256 characters: records with long keys
 * are not kept for reuse like short ones, and are freed once answered. */
static void test_long_keys(void **state)
{
    char key[257], data[32];
    int i;

    (void)state;
    H.k = make(NULL);
    for (i = 0; i < 6; i++) {
        memset(key, 'a' + i, 256);
        key[i % 2 ? 256 : 8] = '\0';
        snprintf(data, sizeof(data), "long-%d", i);
        start(i, key, data, NULL);
    }
    run_all();
    assert_int_equal(F.nst, 6);
    for (i = 0; i < 6; i++) {
        expect_ok(i);
        snprintf(data, sizeof(data), "long-%d", i);
        assert_int_equal(strlen(stored(data)->pk), i % 2 ? 256 : 8);
    }
}

/* Records of one key keep their order across aggregates and calls. */
static void test_order_and_max_records(void **state)
{
    char data[32];
    int i;

    (void)state;
    H.k = make("\"aggregate_max_records\":\"3\"");
    for (i = 0; i < 8; i++) {
        snprintf(data, sizeof(data), "r%d", i);
        start(i, "same-key", data, NULL);
    }
    run_all();
    /* One shard: a Kinesis record per call, 3 + 3 + 2 user records. */
    assert_int_equal(F.calls, 4);
    for (i = 1; i < 4; i++) {
        assert_int_equal(body_records(i), 1);
    }
    assert_int_equal(F.nst, 8);
    for (i = 0; i < 8; i++) {
        snprintf(data, sizeof(data), "r%d", i);
        assert_string_equal(F.st[i].data, data);
        assert_int_equal(F.st[i].sub, i % 3);
        expect_ok(i);
    }
}

/* A record alone goes plain (as the KPL sends it); so does one too large
 * to share, while the others around it are aggregated in order. */
static void test_plain_records(void **state)
{
    char big[400];

    (void)state;
    H.k = make("\"aggregate_max_bytes\":\"300\"");
    start(0, "k", "alone", NULL);
    run_all();
    assert_int_equal(F.calls, 2);
    assert_int_equal(stored("alone")->sub, -1);
    expect_ok(0);
    assert_null(meta(0, "sub_sequence_number"));

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    start(1, "k", "before", NULL);
    start(2, "k", big, NULL);
    start(3, "k", "after-1", NULL);
    start(4, "k", "after-2", NULL);
    run_all();
    /* before (alone: the big one may not join it), big (plain), the two after. */
    assert_int_equal(F.calls, 5);
    assert_int_equal(stored("before")->sub, -1);
    assert_int_equal(F.st[F.nst - 3].sub, -1); /* big */
    assert_int_equal(stored("after-1")->sub, 0);
    assert_int_equal(stored("after-2")->sub, 1);
    for (int i = 1; i < 5; i++) {
        expect_ok(i);
    }
}

/* A failed aggregate is sent again whole, ahead of newer records of its
 * shard; when it keeps failing, each of its callers gets the error. */
static void test_failed_aggregate(void **state)
{
    (void)state;
    H.k = make("\"max_attempts\":\"3\"");
    F.fail_first = 1;
    start(0, "k", "a", NULL);
    start(1, "k", "b", NULL);
    run_all();
    assert_int_equal(F.calls, 3);
    assert_int_equal(body_records(1), 1);
    assert_int_equal(body_records(2), 1);
    assert_string_equal(F.st[0].data, "a");
    assert_string_equal(F.st[1].data, "b");
    expect_ok(0);
    expect_ok(1);

    F.fail_first = 10;
    start(2, "k", "c", NULL);
    start(3, "k", "d", NULL);
    run_all();
    assert_int_equal(F.calls, 6); /* max_attempts PutRecords */
    for (int i = 2; i < 4; i++) {
        assert_int_equal(H.r[i].reply.is_error, 1);
        assert_string_equal(buf_str(&H.r[i].reply.error),
                            "ProvisionedThroughputExceededException: Rate exceeded for shard");
        assert_string_equal(H.r[i].reply.error_type, "ProvisionedThroughputExceededException");
    }
}

static struct loop_timer poll_timer;
static int poll_want, polls;

static void poll_lists(void *arg)
{
    (void)arg;
    if (F.list_calls >= poll_want || ++polls > 1000) {
        loop_stop(H.loop);
        return;
    }
    loop_timer_start(H.loop, &poll_timer, 10, poll_lists, NULL);
}

/* Run the loop until the fake saw n ListShards calls (10 s at most). */
static void wait_for_lists(int n)
{
    poll_want = n;
    polls = 0;
    loop_timer_init(&poll_timer);
    loop_timer_start(H.loop, &poll_timer, 10, poll_lists, NULL);
    assert_int_equal(loop_run(H.loop), 0);
    assert_int_equal(F.list_calls, n);
}

/* A split the daemon has not seen: the answer names a child shard, the
 * map is read again and later records go by the new map. */
static void test_reshard(void **state)
{
    char key[32], data[32];
    int i;

    (void)state;
    H.k = make(NULL);
    set_shards(1, 0);
    for (i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(data, sizeof(data), "before-%d", i);
        start(i, key, data, NULL);
    }
    run_all();
    assert_int_equal(F.list_calls, 1);
    /* Split: shard 0 closes, shards 1 and 2 take its range. */
    set_shards(2, 1);
    F.shards[F.nshards].closed = 1;
    snprintf(F.shards[F.nshards].id, sizeof(F.shards[0].id), "shardId-000000000000");
    F.shards[F.nshards].start = 0;
    F.shards[F.nshards].end = U128_MAX;
    F.nshards++;
    for (i = 20; i < 40; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(data, sizeof(data), "during-%d", i);
        start(i, key, data, NULL);
    }
    run_all();
    /* The answers named a child shard: the map is read again (at most once
     * a second); what is sent meanwhile goes by the old one. */
    wait_for_lists(2);
    for (i = 40; i < 80; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(data, sizeof(data), "after-%d", i);
        start(i, key, data, NULL);
    }
    run_all();
    assert_int_equal(F.list_calls, 2);
    for (i = 0; i < 80; i++) {
        expect_ok(i);
    }
    /* Every record after the refresh is on the shard its key maps to. */
    for (i = 0; i < F.nst; i++) {
        if (strncmp(F.st[i].data, "after-", 6) == 0) {
            assert_string_equal(F.st[i].shard, fake_shard_of(hash_of(F.st[i].pk, NULL)));
        }
    }
    assert_int_equal(F.nst, 80);
}

/* No shard map (ListShards refused): records go unaggregated, coalesced. */
static void test_no_map_falls_back(void **state)
{
    (void)state;
    H.k = make(NULL);
    F.list_error = "AccessDeniedException";
    for (int i = 0; i < 5; i++) {
        char data[16];

        snprintf(data, sizeof(data), "p%d", i);
        start(i, "k", data, NULL);
    }
    run_all();
    assert_int_equal(F.list_calls, 1);
    assert_int_equal(F.nst, 5);
    for (int i = 0; i < 5; i++) {
        expect_ok(i);
        assert_int_equal(F.st[i].sub, -1);
    }
}

/* Explicit hash keys route their records and travel in the table. */
static void test_explicit_hash_keys(void **state)
{
    (void)state;
    H.k = make(NULL);
    start(0, "a", "to-first", ",\"explicit_hash_key\":\"0\"");
    start(1, "b", "to-first-too", ",\"explicit_hash_key\":\"5\"");
    start(2, "c", "to-last", ",\"explicit_hash_key\":\"340282366920938463463374607431768211455\"");
    start(3, "d", "to-last-too",
          ",\"explicit_hash_key\":\"340282366920938463463374607431768211454\"");
    run_all();
    assert_string_equal(stored("to-first")->shard, "shardId-000000000000");
    assert_string_equal(stored("to-first-too")->shard, "shardId-000000000000");
    assert_string_equal(stored("to-last")->shard, "shardId-000000000003");
    assert_string_equal(stored("to-last-too")->shard, "shardId-000000000003");
    assert_int_equal(stored("to-first-too")->sub, 1);
}

static void test_settings(void **state)
{
    static const char *const bad[][2] = {
        {"\"aggregate\":\"true\"", "aggregate: needs coalesce: true"},
        {"\"coalesce\":\"true\",\"aggregate\":\"true\",\"aggregate_max_bytes\":\"1048577\"",
         "aggregate_max_bytes: must be an integer from 64 to 1048576"},
        {"\"coalesce\":\"true\",\"aggregate\":\"true\",\"aggregate_max_records\":\"0\"",
         "aggregate_max_records: must be an integer from 1 to 100000"},
    };
    char text[512];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct errs errs;
        json_t *props;

        snprintf(text, sizeof(text), "{\"region\":\"us-east-1\",%s}", bad[i][0]);
        props = json_loads(text, 0, NULL);
        assert_non_null(props);
        errs_init(&errs);
        assert_null(kinesis_target_kind.create(NULL, props, "b1", "binding b1: target", &errs));
        if (!strstr(buf_str(&errs.text), bad[i][1])) {
            fail_msg("%s: %s", bad[i][0], buf_str(&errs.text));
        }
        errs_free(&errs);
        json_decref(props);
    }
}

/* The target's own series count user records, Kinesis records, bytes. */
static void test_metrics(void **state)
{
    struct metrics_registry *reg = metrics_registry_new();
    struct buf out = BUF_INIT(1 << 20);

    (void)state;
    H.k = make(NULL);
    kinesis_target_kind.metrics(H.k, reg);
    for (int i = 0; i < 10; i++) {
        start(i, "one-key", "0123456789", NULL);
    }
    run_all();
    assert_int_equal(metrics_render_prometheus(reg, &out), 0);
    assert_non_null(strstr(buf_str(&out), "kubemq_kinesis_user_records_total{binding=\"b1\"} 10"));
    assert_non_null(strstr(buf_str(&out), "kubemq_kinesis_stream_records_total{binding=\"b1\"} 1"));
    assert_non_null(strstr(buf_str(&out), "kubemq_kinesis_bytes_out_total{binding=\"b1\"} "));
    buf_free(&out);
    kinesis_target_kind.destroy(H.k);
    H.k = NULL;
    metrics_registry_free(reg);
}

/* The format: the size kept while adding is the packed size, and what is
 * packed unpacks to the same records. */
static void test_pack_unpack(void **state)
{
    struct kinesis_kpl a;
    struct buf raw = BUF_INIT(8 << 20), b64 = BUF_INIT(16 << 20), dec = BUF_INIT(8 << 20);
    static char keys[300][64], data[300][400];
    uint64_t x = 42;

    (void)state;
    kinesis_kpl_init(&a);
    for (int round = 0; round < 20; round++) {
        int n = 1 + round * 15;

        kinesis_kpl_reset(&a);
        for (int i = 0; i < n; i++) {
            size_t dl = (size_t)((x = x * 6364136223846793005ULL + 1) >> 55);
            int k = (int)((x >> 20) % 40);
            size_t before;

            snprintf(keys[i], sizeof(keys[i]), "key-%d", k);
            memset(data[i], 'a' + i % 26, dl);
            before = kinesis_kpl_size_with(&a, keys[i], strlen(keys[i]), (uint64_t)k,
                                           i % 3 ? NULL : "12345", 5, dl);
            assert_int_equal(kinesis_kpl_add(&a, keys[i], strlen(keys[i]), (uint64_t)k,
                                             i % 3 ? NULL : "12345", 5, data[i], dl),
                             0);
            assert_int_equal(kinesis_kpl_size(&a), before);
        }
        buf_reset(&b64);
        assert_int_equal(kinesis_kpl_pack_b64(&a, &raw, &b64), 0);
        assert_int_equal(raw.len, kinesis_kpl_size(&a));
        buf_reset(&dec);
        assert_int_equal(b64_decode(b64.data, b64.len, &dec), 0);
        struct kinesis_kpl_unpacked *u = kinesis_kpl_unpack(dec.data, dec.len);
        assert_non_null(u);
        assert_int_equal(kinesis_kpl_count(u), n);
        for (int i = 0; i < n; i++) {
            struct kinesis_kpl_record r;

            kinesis_kpl_get(u, (size_t)i, &r);
            assert_string_equal(r.pk, keys[i]);
            if (i % 3) {
                assert_null(r.ehk);
            } else {
                assert_string_equal(r.ehk, "12345");
            }
            assert_int_equal(r.data_len, a.data_len[i]);
            assert_memory_equal(r.data, data[i], r.data_len);
        }
        kinesis_kpl_unpacked_free(u);
        /* A wrong sum or a cut record is no aggregate. */
        dec.data[dec.len - 1] ^= 1;
        assert_null(kinesis_kpl_unpack(dec.data, dec.len));
        assert_null(kinesis_kpl_unpack(dec.data, dec.len / 2));
    }
    kinesis_kpl_free(&a);
    buf_free(&raw);
    buf_free(&b64);
    buf_free(&dec);
}

/* An aggregate of the given records, base64, into out. */
static void make_aggregate(struct buf *out, const char *const *keys, const char *const *data, int n,
                           const char *ehk)
{
    struct kinesis_kpl a;
    struct buf raw = BUF_INIT(1 << 20);

    kinesis_kpl_init(&a);
    for (int i = 0; i < n; i++) {
        assert_int_equal(kinesis_kpl_add(&a, keys[i], strlen(keys[i]), (uint64_t)keys[i][0],
                                         i == 1 ? ehk : NULL, ehk ? strlen(ehk) : 0, data[i],
                                         strlen(data[i])),
                         0);
    }
    assert_int_equal(kinesis_kpl_pack_b64(&a, &raw, out), 0);
    kinesis_kpl_free(&a);
    buf_free(&raw);
}

/* get_records with deaggregate: aggregated records become their user
 * records in order (sequence number, sub-sequence number, partition key,
 * explicit hash key, data); plain records, and records with the magic but
 * a wrong MD5 or a cut protobuf, pass as they are. */
static void test_get_records_deaggregate(void **state)
{
    static const char *const keys[] = {"k1", "k2", "k1"}, *const data[] = {"one", "two", "three"};
    struct buf agg = BUF_INIT(1 << 20), bad = BUF_INIT(1 << 20), cut = BUF_INIT(1 << 20);
    struct buf raw = BUF_INIT(1 << 20), answer = BUF_INIT(1 << 20);
    char err[256];
    json_t *d, *recs, *r;

    (void)state;
    H.k = make(NULL);
    make_aggregate(&agg, keys, data, 3, "77");
    /* The same with one bit of its sum flipped, and one cut short. */
    assert_int_equal(b64_decode(agg.data, agg.len, &raw), 0);
    raw.data[raw.len - 1] ^= 1;
    assert_int_equal(b64_encode(raw.data, raw.len, &bad), 0);
    raw.data[raw.len - 1] ^= 1;
    assert_int_equal(b64_encode(raw.data, raw.len - 20, &cut), 0);
    buf_appendf(&answer,
                "{\"MillisBehindLatest\":0,\"NextShardIterator\":\"IT2\",\"Records\":["
                "{\"SequenceNumber\":\"10\",\"ApproximateArrivalTimestamp\":1796609595.51,"
                "\"Data\":\"%s\",\"PartitionKey\":\"k1\",\"EncryptionType\":null},"
                "{\"SequenceNumber\":\"11\",\"Data\":\"cGxhaW4=\",\"PartitionKey\":\"p\"},"
                "{\"SequenceNumber\":\"12\",\"Data\":\"%s\",\"PartitionKey\":\"q\"},"
                "{\"SequenceNumber\":\"13\",\"Data\":\"%s\",\"PartitionKey\":\"r\"}]}",
                buf_str(&agg), buf_str(&bad), buf_str(&cut));
    F.records_answer = buf_str(&answer);
    {
        const char *body = "{\"metadata\":{\"method\":\"get_records\",\"shard_iterator_id\":"
                           "\"IT\",\"limit\":\"10\",\"deaggregate\":\"true\"}}";

        assert_int_equal(
            envelope_request_parse(&H.r[0].req, body, strlen(body), 0, err, sizeof(err)), 0);
        H.pending = 1;
        kinesis_target_kind.execute(H.k, &H.r[0].req, &H.r[0].reply, on_done, &H.r[0]);
        run_all();
    }
    expect_ok(0);
    assert_string_equal(meta(0, "next_shard_iterator"), "IT2");
    d = json_loadb(H.r[0].reply.data.data, H.r[0].reply.data.len, 0, NULL);
    assert_non_null(d);
    recs = json_object_get(d, "Records");
    assert_int_equal(json_array_size(recs), 6);
    for (int i = 0; i < 3; i++) {
        struct buf want = BUF_INIT(256);

        r = json_array_get(recs, (size_t)i);
        assert_string_equal(json_string_value(json_object_get(r, "SequenceNumber")), "10");
        assert_int_equal(json_integer_value(json_object_get(r, "SubSequenceNumber")), i);
        assert_string_equal(json_string_value(json_object_get(r, "PartitionKey")), keys[i]);
        b64_encode(data[i], strlen(data[i]), &want);
        assert_string_equal(json_string_value(json_object_get(r, "Data")), buf_str(&want));
        buf_free(&want);
        /* The aggregate's other members, its timestamp in the reply's form. */
        assert_string_equal(json_string_value(json_object_get(r, "ApproximateArrivalTimestamp")),
                            "2026-12-07T02:13:15.51Z");
        assert_true(json_is_null(json_object_get(r, "EncryptionType")));
        if (i == 1) {
            assert_string_equal(json_string_value(json_object_get(r, "ExplicitHashKey")), "77");
        } else {
            assert_null(json_object_get(r, "ExplicitHashKey"));
        }
    }
    for (int i = 3; i < 6; i++) {
        r = json_array_get(recs, (size_t)i);
        assert_null(json_object_get(r, "SubSequenceNumber"));
    }
    assert_string_equal(json_string_value(json_object_get(json_array_get(recs, 3), "Data")),
                        "cGxhaW4=");
    assert_string_equal(json_string_value(json_object_get(json_array_get(recs, 4), "Data")),
                        buf_str(&bad));
    assert_string_equal(json_string_value(json_object_get(json_array_get(recs, 5), "Data")),
                        buf_str(&cut));
    json_decref(d);

    /* Without deaggregate the answer is as Kinesis gave it. */
    {
        const char *body = "{\"metadata\":{\"method\":\"get_records\",\"shard_iterator_id\":"
                           "\"IT\",\"limit\":\"10\"}}";

        envelope_reply_reset(&H.r[1].reply);
        assert_int_equal(
            envelope_request_parse(&H.r[1].req, body, strlen(body), 0, err, sizeof(err)), 0);
        H.pending = 1;
        kinesis_target_kind.execute(H.k, &H.r[1].req, &H.r[1].reply, on_done, &H.r[1]);
        run_all();
    }
    d = json_loadb(H.r[1].reply.data.data, H.r[1].reply.data.len, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(d, "Records")), 4);
    json_decref(d);
    buf_free(&agg);
    buf_free(&bad);
    buf_free(&cut);
    buf_free(&raw);
    buf_free(&answer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_aggregate_per_shard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order_and_max_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_aggregate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reshard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_map_falls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_explicit_hash_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_records_deaggregate, setup, teardown),
        cmocka_unit_test(test_settings),
        cmocka_unit_test(test_pack_unpack),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
