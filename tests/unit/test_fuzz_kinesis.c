/* test_fuzz_kinesis.c - the aws.kinesis target fed mutated requests and
 * mutated AWS answers (the in-place readers of PutRecord, PutRecords and
 * coalesced answers included): every request is answered exactly once,
 * refusals carry a message, and nothing crashes or leaks (ASan, UBSan,
 * LSan). The AWS side is a fake transport, as in test_kinesis.c.
 * Differential: whatever the in-place answer readers accept, jansson reads
 * the same (null members included), and the timestamp rewrite changes
 * nothing but *Timestamp numbers, each into the Go time of its value.
 * The KPL deaggregator is fed truncated and mutated aggregates, wrong
 * MD5s and huge declared lengths: what it accepts packs and unpacks back
 * to the same records; aggregation is run against mutated shard maps and
 * PutRecords answers. */
#include "aws/aws_client.h"
#include "base/b64.h"
#include "base/errs.h"
#include "base/loop.h"
#include "message/envelope.h"
#include "fuzz.h"
#include "kinesis/kinesis.h"
#include "kinesis/kinesis_answer.h"
#include "kinesis/kinesis_kpl.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <math.h>

#include <cmocka.h>

#define ROUNDS   4000
#define MAX_HELD 64
#define N_COAL   12

/* ------------------------------------------------------------ the fake */

/* A valid answer per operation: the mutator's starting points. */
static const struct {
    const char *op;
    const char *answer;
} answers[] = {
    {"PutRecord", "{\"ShardId\":\"shardId-000000000000\",\"SequenceNumber\":\"4959\"}"},
    {"PutRecords", "{\"FailedRecordCount\":1,\"Records\":[{\"ShardId\":\"shardId-000000000000\","
                   "\"SequenceNumber\":\"1\"},{\"ErrorCode\":\"ProvisionedThroughputExceeded"
                   "Exception\",\"ErrorMessage\":\"Rate exceeded\"}]}"},
    {"PutRecords", "{\"EncryptionType\":null,\"FailedRecordCount\":0,\"Records\":[{\"ErrorCode\":"
                   "null,\"ErrorMessage\":null,\"SequenceNumber\":\"1\",\"ShardId\":\"shardId-1\"},"
                   "{\"ErrorCode\":null,\"ErrorMessage\":null,\"SequenceNumber\":\"2\",\"ShardId\":"
                   "\"shardId-1\"}]}"},
    {"ListStreams", "{\"StreamNames\":[\"a\",\"b\"],\"HasMoreStreams\":false}"},
    {"ListShards", "{\"Shards\":[{\"ShardId\":\"shardId-000000000000\",\"HashKeyRange\":{"
                   "\"StartingHashKey\":\"0\",\"EndingHashKey\":\"1\"}}]}"},
    {"ListShards",
     "{\"NextToken\":null,\"Shards\":[{\"ShardId\":\"shardId-000000000000\","
     "\"HashKeyRange\":{\"StartingHashKey\":\"0\",\"EndingHashKey\":"
     "\"170141183460469231731687303715884105727\"},\"SequenceNumberRange\":{"
     "\"EndingSequenceNumber\":null}},{\"ShardId\":\"shardId-000000000001\","
     "\"HashKeyRange\":{\"StartingHashKey\":\"170141183460469231731687303715884105728\","
     "\"EndingHashKey\":\"340282366920938463463374607431768211455\"}}]}"},
    {"GetShardIterator", "{\"ShardIterator\":\"AAAA\"}"},
    {"GetRecords", "{\"Records\":[{\"Data\":\"QQ==\",\"PartitionKey\":\"k\",\"SequenceNumber\":"
                   "\"1\",\"ApproximateArrivalTimestamp\":1.7E9}],\"NextShardIterator\":null,"
                   "\"MillisBehindLatest\":0}"},
    /* An aggregate written by aws-kinesis-agg: k1 one, k2 (hash key 77) two, k1 three. */
    {"GetRecords",
     "{\"Records\":[{\"Data\":\"84mawgoCazEKAmsyEgI3NxoHCAAaA29uZRoJCAEQABoDdHdvGgkIABoF"
     "dGhyZWWrO49/SKJzQq5X5Dt3BLZ8\",\"PartitionKey\":\"k1\",\"SequenceNumber\":\"5\","
     "\"ApproximateArrivalTimestamp\":1796609595.51},{\"Data\":\"QQ==\",\"PartitionKey\":"
     "\"p\",\"SequenceNumber\":\"6\"}],\"NextShardIterator\":\"BBBB\","
     "\"MillisBehindLatest\":0}"},
    {"DescribeStreamSummary", "{\"StreamDescriptionSummary\":{\"StreamName\":\"s\","
                              "\"StreamStatus\":\"ACTIVE\",\"OpenShardCount\":1}}"},
    {"", "{\"__type\":\"ResourceNotFoundException\",\"message\":\"Stream s not found\"}"},
};

static struct {
    struct fuzz fz;
    int mutate; /* mutate the answers */
    int hold;   /* keep answers until release() */
    int calls;
    int nheld;
    struct {
        aws_http_done_fn done;
        void *cctx;
        long status;
        char *body;
        size_t len;
    } held[MAX_HELD];
} F;

/* One of the answers for op (at random when there are several). */
static const char *answer_for(const char *op)
{
    const char *found[4];
    size_t i, n = 0;

    for (i = 0; i < sizeof(answers) / sizeof(*answers) && n < 4; i++) {
        if (strcmp(answers[i].op, op) == 0) {
            found[n++] = answers[i].answer;
        }
    }
    return n ? found[fuzz_below(&F.fz, n)] : "{}";
}

static int fake_send(void *tctx, const struct aws_http_request *req, aws_http_done_fn done,
                     void *cctx)
{
    static const long statuses[] = {200, 200, 200, 200, 400, 500};
    const char *op = "", *a;
    long status = 200;
    size_t i;

    (void)tctx;
    F.calls++;
    for (i = 0; req->headers[i]; i++) {
        if (strncasecmp(req->headers[i], "X-Amz-Target:", 13) == 0) {
            op = strchr(req->headers[i], '.') + 1;
        }
    }
    a = answer_for(op);
    if (F.mutate) {
        status = statuses[fuzz_below(&F.fz, 6)];
        if (fuzz_below(&F.fz, 8) == 0) {
            a = answer_for("");
        }
        fuzz_mutate(&F.fz, a, strlen(a));
    } else {
        F.fz.len = strlen(a);
        memcpy(F.fz.out, a, F.fz.len + 1);
    }
    if (F.hold) {
        assert_true(F.nheld < MAX_HELD);
        F.held[F.nheld].done = done;
        F.held[F.nheld].cctx = cctx;
        F.held[F.nheld].status = status;
        F.held[F.nheld].len = F.fz.len;
        F.held[F.nheld].body = malloc(F.fz.len + 1);
        assert_non_null(F.held[F.nheld].body);
        memcpy(F.held[F.nheld].body, F.fz.out, F.fz.len + 1);
        F.nheld++;
        return 0;
    }
    done(cctx, status, F.fz.out, F.fz.len, NULL);
    return 0;
}

static void release(void)
{
    int i, n = F.nheld;

    F.nheld = 0;
    for (i = 0; i < n; i++) {
        F.held[i].done(F.held[i].cctx, F.held[i].status, F.held[i].body, F.held[i].len, NULL);
        free(F.held[i].body);
    }
}

static const struct aws_transport fake_transport = {fake_send, NULL};

/* ------------------------------------------------------------ harness */

struct req {
    struct envelope_request req;
    struct envelope_reply reply;
    int done;
};

static struct loop *L;
static int pending;
/* What is running, for the message when a request is never answered. */
static const char *current;
static size_t current_len;

static void *make(const char *extra)
{
    struct errs errs;
    json_t *props;
    char text[512];
    void *k;

    snprintf(text, sizeof(text),
             "{\"aws_key\":\"AKIDEXAMPLE\",\"aws_secret_key\":\"s3cret\",\"region\":\"us-east-1\","
             "\"endpoint\":\"http://127.0.0.1:9\",\"max_attempts\":\"1\"%s}",
             extra);
    props = json_loads(text, 0, NULL);
    assert_non_null(props);
    errs_init(&errs);
    k = kinesis_instance_create(L, props, "fz", "binding fz: target", &fake_transport, &errs);
    if (!k) {
        fail_msg("create: %s", buf_str(&errs.text));
    }
    errs_free(&errs);
    json_decref(props);
    return k;
}

static void on_done(void *ctx)
{
    struct req *r = ctx;

    /* No loop_stop: run_pending() polls with loop_run_once(), which a
     * stop flag would keep from waiting at all. */
    r->done++;
    pending--;
}

static void check_answered(struct req *r, const char *what, int round)
{
    if (r->done != 1) {
        fail_msg("%s round %d: answered %d times", what, round, r->done);
    }
    if (r->reply.is_error && !r->reply.error.len) {
        fail_msg("%s round %d: an error without a message", what, round);
    }
}

/* Start r with body; 0 when the envelope parsed (the binding answers the
 * rest itself, as the fuzz of the envelope covers). */
static int start(void *k, struct req *r, const char *body, size_t len)
{
    char err[256];

    envelope_request_free(&r->req);
    envelope_request_init(&r->req);
    envelope_reply_reset(&r->reply);
    r->done = 0;
    current = body;
    current_len = len;
    if (envelope_request_parse(&r->req, body, len, 0, err, sizeof(err)) < 0) {
        return -1;
    }
    pending++;
    kinesis_target_kind.execute(k, &r->req, &r->reply, on_done, r);
    return 0;
}

static void run_pending(void)
{
    int idle = 0;

    while (pending) {
        if (F.nheld) {
            release();
            idle = 0;
            continue;
        }
        assert_int_equal(loop_run_once(L, 50), 0);
        /* Nothing in this test waits longer than the linger or a retry. */
        if (++idle > 1000) {
            fail_msg("%d request(s) never answered; last body (%zu bytes): %.*s", pending,
                     current_len, (int)current_len, current);
        }
    }
}

/* A mutation that keeps the envelope JSON: one metadata value (or the
 * data) mutated or dropped, so that the target's checks are what is hit. */
static size_t mutate_value(struct fuzz *f, const char *body, char *out, size_t cap)
{
    json_t *root = json_loads(body, 0, NULL), *md, *v;
    const char *key = NULL;
    size_t n, pick, len = 0;
    void *it;
    char *text;

    assert_non_null(root);
    md = json_object_get(root, "metadata");
    n = json_object_size(md) + 1;
    pick = fuzz_below(f, n);
    for (it = json_object_iter(md); it && pick; it = json_object_iter_next(md, it)) {
        pick--;
    }
    if (it) {
        key = json_object_iter_key(it);
        v = json_object_iter_value(it);
    } else {
        md = root; /* the data */
        key = "data";
        v = json_object_get(root, "data");
    }
    if (fuzz_below(f, 8) == 0) {
        json_object_del(md, key);
    } else if (json_is_string(v)) {
        fuzz_mutate(f, json_string_value(v), json_string_length(v));
        json_object_set_new_nocheck(md, key, json_stringn_nocheck(f->out, f->len));
    } else if (v) {
        text = json_dumps(v, JSON_COMPACT);
        assert_non_null(text);
        fuzz_mutate(f, text, strlen(text));
        free(text);
        json_object_set_new_nocheck(md, key, json_stringn_nocheck(f->out, f->len));
    }
    text = json_dumps(root, JSON_COMPACT);
    if (text) {
        len = strlen(text);
        if (len >= cap) {
            len = cap - 1;
        }
        memcpy(out, text, len);
        out[len] = '\0';
        free(text);
    }
    json_decref(root);
    return len;
}

static const char *const requests[] = {
    "{\"metadata\":{\"method\":\"put_record\",\"stream_name\":\"s\",\"partition_key\":\"k\","
    "\"explicit_hash_key\":\"12\",\"sequence_number_for_ordering\":\"1\"},\"data\":\"QUJD\"}",
    "{\"metadata\":{\"method\":\"put_records\",\"stream_name\":\"s\"},\"data\":{\"k1\":\"QQ==\","
    "\"k2\":\"Qg==\"}}",
    /* The list form travels base64-encoded: [{"partition_key":"k","data":"QQ=="},...] */
    "{\"metadata\":{\"method\":\"put_records\",\"stream_name\":\"s\"},\"data\":"
    "\"W3sicGFydGl0aW9uX2tleSI6ImsiLCJkYXRhIjoiUVE9PSJ9LHsicGFydGl0aW9uX2tleSI6ImoiLCJkYXRhIjoiUWc9"
    "PSJ9XQ==\"}",
    "{\"metadata\":{\"method\":\"get_records\",\"stream_name\":\"s\",\"limit\":\"5\"}}",
    "{\"metadata\":{\"method\":\"get_records\",\"shard_iterator_id\":\"AAAA\",\"limit\":\"5\"}}",
    "{\"metadata\":{\"method\":\"get_records\",\"shard_iterator_id\":\"AAAA\",\"deaggregate\":"
    "\"true\"}}",
    "{\"metadata\":{\"method\":\"get_records\",\"stream_name\":\"s\",\"shard_id\":"
    "\"shardId-000000000000\"}}",
    "{\"metadata\":{\"method\":\"get_shard_iterator\",\"stream_name\":\"s\",\"shard_id\":\"x\","
    "\"shard_iterator_type\":\"AT_TIMESTAMP\",\"timestamp\":\"2024-01-31T12:00:00.5Z\"}}",
    "{\"metadata\":{\"method\":\"list_streams\",\"limit\":\"10\",\"exclusive_start_stream_name\":"
    "\"a\"}}",
    "{\"metadata\":{\"method\":\"list_shards\",\"stream_name\":\"s\"}}",
    "{\"metadata\":{\"method\":\"create_stream\",\"stream_name\":\"s\",\"shard_count\":\"2\"}}",
    "{\"metadata\":{\"method\":\"describe_stream\",\"stream_name\":\"s\"}}",
    "{\"metadata\":{\"method\":\"create_stream_consumer\",\"stream_arn\":\"arn:aws:kinesis:x\","
    "\"consumer_name\":\"c\"}}",
    "{\"metadata\":{\"method\":\"put\",\"stream\":\"s\"},\"data\":{\"a\":1}}",
};

/* Mutated requests, valid answers; then valid requests, mutated answers. */
static void test_requests_and_answers(void **state)
{
    struct fuzz mf;
    struct req r;
    void *k;
    size_t i;
    static char valued[FUZZ_MAX + 1];
    int round, started = 0, failed = 0, answered = 0, calls = 0;

    (void)state;
    memset(&F, 0, sizeof(F));
    fuzz_seed(&F.fz, 0xa115);
    fuzz_seed(&mf, 0x4e9);
    L = loop_create(NULL, 0);
    assert_non_null(L);
    k = make("");
    envelope_request_init(&r.req);
    envelope_reply_init(&r.reply);
    /* The starting points are all valid: each succeeds as written (the
     * canned PutRecords answer fails one entry on purpose). */
    for (i = 0; i < sizeof(requests) / sizeof(*requests); i++) {
        if (start(k, &r, requests[i], strlen(requests[i])) < 0) {
            fail_msg("%s: does not parse", requests[i]);
        }
        run_pending();
        check_answered(&r, requests[i], 0);
        if (r.reply.is_error && !strstr(buf_str(&r.reply.error), "records failed")) {
            fail_msg("%s: %.*s", requests[i], (int)r.reply.error.len, r.reply.error.data);
        }
    }
    calls = F.calls;
    for (F.mutate = 0; F.mutate <= 1; F.mutate++) {
        if (F.mutate) {
            calls = F.calls - calls; /* mutated requests that reached AWS */
        }
        for (i = 0; i < sizeof(requests) / sizeof(*requests); i++) {
            for (round = 0; round < ROUNDS; round++) {
                const char *body = requests[i];
                size_t len = strlen(body);

                if (!F.mutate && round % 2) {
                    fuzz_mutate(&mf, body, len);
                    body = mf.out;
                    len = mf.len;
                } else if (!F.mutate) {
                    len = mutate_value(&mf, body, valued, sizeof(valued));
                    body = valued;
                }
                if (start(k, &r, body, len) < 0) {
                    continue;
                }
                started++;
                run_pending();
                check_answered(&r, requests[i], round);
                answered += F.mutate;
                failed += F.mutate && r.reply.is_error;
            }
        }
    }
    assert_true(started > 10000);
    /* Most mutated requests break the JSON; enough stay valid to reach
     * AWS, and mutated answers give both outcomes, or the test tests
     * nothing. */
    assert_true(calls > 5000);
    assert_true(failed > answered / 20);
    assert_true(failed < answered - answered / 20);
    kinesis_target_kind.destroy(k);
    envelope_request_free(&r.req);
    envelope_reply_free(&r.reply);
    loop_destroy(L);
}

/* Coalescing: concurrent put_record requests, PutRecords answers mutated
 * (the in-place scan of coalesced answers); each caller answered once. */
static void test_coalesced_answers(void **state)
{
    static struct req r[N_COAL];
    char body[256];
    void *k;
    int round, i;

    (void)state;
    memset(&F, 0, sizeof(F));
    fuzz_seed(&F.fz, 0xc0a1);
    F.mutate = 1;
    F.hold = 1;
    L = loop_create(NULL, 0);
    assert_non_null(L);
    k = make(",\"coalesce\":\"true\",\"coalesce_linger_ms\":\"1\"");
    for (i = 0; i < N_COAL; i++) {
        envelope_request_init(&r[i].req);
        envelope_reply_init(&r[i].reply);
    }
    for (round = 0; round < ROUNDS / 3; round++) {
        for (i = 0; i < N_COAL; i++) {
            int n = snprintf(body, sizeof(body),
                             "{\"metadata\":{\"method\":\"put_record\",\"stream_name\":\"s%d\","
                             "\"partition_key\":\"key-%d\"},\"data\":\"cmVjb3JkLQ==\"}",
                             i % 2, i);
            assert_int_equal(start(k, &r[i], body, (size_t)n), 0);
        }
        run_pending();
        for (i = 0; i < N_COAL; i++) {
            check_answered(&r[i], "coalesced put_record", round);
        }
    }
    assert_true(F.calls > ROUNDS / 3);
    kinesis_target_kind.destroy(k);
    for (i = 0; i < N_COAL; i++) {
        envelope_request_free(&r[i].req);
        envelope_reply_free(&r[i].reply);
    }
    loop_destroy(L);
}

/* ------------------------------------------------------ differential */

static const char *const put_records_answers[] = {
    "{\"FailedRecordCount\":1,\"Records\":[{\"ShardId\":\"shardId-000000000000\","
    "\"SequenceNumber\":"
    "\"1\"},{\"ErrorCode\":\"ProvisionedThroughputExceededException\",\"ErrorMessage\":\"Rate "
    "exceeded\"},{\"SequenceNumber\":\"3\",\"ShardId\":\"shardId-000000000001\"}]}",
    "{\"EncryptionType\":null,\"FailedRecordCount\":0,\"Records\":[{\"ErrorCode\":null,"
    "\"ErrorMessage\":null,\"SequenceNumber\":\"1\",\"ShardId\":\"shardId-1\"},{\"ErrorCode\":"
    "\"InternalFailure\",\"ErrorMessage\":\"x\",\"SequenceNumber\":null,\"ShardId\":null},{"
    "\"ErrorCode\":\"\",\"ErrorMessage\":\"\",\"SequenceNumber\":\"3\",\"ShardId\":\"\"}]}",
    " { \"Records\" : [ { } , {\"ShardId\":\"a\",\"SequenceNumber\":\"b\",\"ShardId\":null} , "
    "{\"SequenceNumber\":\"9\",\"ShardId\":\"s\"} ] , \"EncryptionType\" : \"KMS\" , "
    "\"FailedRecordCount\":-0 } ",
};

static void span_equal(const char *what, const char *a, size_t an, const char *b, size_t bn,
                       const char *body, size_t len)
{
    if ((a == NULL) != (b == NULL) || an != bn || (a && memcmp(a, b, an) != 0)) {
        fail_msg("%s: in place \"%.*s\", jansson \"%.*s\": %.*s", what, a ? (int)an : 6,
                 a ? a : "(none)", b ? (int)bn : 6, b ? b : "(none)", (int)len, body);
    }
}

static void entry_equal(const struct kinesis_entry *x, const struct kinesis_entry *y,
                        const char *body, size_t len)
{
    span_equal("ShardId", x->shard, x->shard_n, y->shard, y->shard_n, body, len);
    span_equal("SequenceNumber", x->seq, x->seq_n, y->seq, y->seq_n, body, len);
    span_equal("ErrorCode", x->code, x->code_n, y->code, y->code_n, body, len);
    span_equal("ErrorMessage", x->message, x->message_n, y->message, y->message_n, body, len);
    assert_int_equal(x->ok, y->ok);
}

/* Whatever kinesis_entries_fast and kinesis_entry_fast accept, jansson
 * reads the same: the coalesced and single put_record replies cannot
 * depend on which reader ran. */
static void test_answer_readers_agree(void **state)
{
    struct kinesis_entry fast[8], full[8];
    struct kinesis_answer fa, ja;
    struct fuzz f;
    size_t i, n, e;
    int accepted = 0, single = 0, round;

    (void)state;
    fuzz_seed(&f, 0xd1ff);
    for (round = 0; round < ROUNDS * 5; round++) {
        const char *src = put_records_answers[round % 3];
        json_t *root;

        fuzz_mutate(&f, src, strlen(src));
        root = json_loadb(f.out, f.len, 0, NULL);
        /* The count the fast reader is asked for: the source's, or the
         * mutation's own. */
        n = 3;
        if (round % 2 && json_is_array(json_object_get(root, "Records"))) {
            n = json_array_size(json_object_get(root, "Records"));
        }
        if (n <= 8 && kinesis_entries_fast(f.out, f.len, fast, n, &fa) == 0) {
            accepted++;
            if (!json_is_object(root)) {
                fail_msg("in place accepted what jansson refuses: %.*s", (int)f.len, f.out);
            }
            if (kinesis_entries_json(root, full, n, &ja) < 0) {
                fail_msg("in place read %zu entries, jansson not: %.*s", n, (int)f.len, f.out);
            }
            for (e = 0; e < n; e++) {
                entry_equal(&fast[e], &full[e], f.out, f.len);
            }
            span_equal("EncryptionType", fa.encryption, fa.encryption_n, ja.encryption,
                       ja.encryption_n, f.out, f.len);
            if (fa.failed_count != ja.failed_count) {
                fail_msg("FailedRecordCount: in place %lld, jansson %lld: %.*s", fa.failed_count,
                         ja.failed_count, (int)f.len, f.out);
            }
        }
        json_decref(root);

        /* One entry alone: a PutRecord answer. */
        src = strchr(put_records_answers[round % 3], '[') + 1;
        for (i = 0; src[i] && src[i] != '}'; i++) {
        }
        fuzz_mutate(&f, src, i + 1);
        if (kinesis_entry_fast(f.out, f.len, &fast[0]) == 0) {
            single++;
            root = json_loadb(f.out, f.len, 0, NULL);
            if (!json_is_object(root)) {
                fail_msg("in place accepted what jansson refuses: %.*s", (int)f.len, f.out);
            }
            kinesis_entry_from_json(root, &full[0]);
            entry_equal(&fast[0], &full[0], f.out, f.len);
            json_decref(root);
        }
    }
    /* Enough mutations stay readable in place to compare something. */
    assert_true(accepted > ROUNDS / 4);
    assert_true(single > ROUNDS / 4);
}

static const char *const timed_answers[] = {
    "{\"MillisBehindLatest\":0,\"NextShardIterator\":\"AAAA\",\"Records\":[{\"Data\":\"QQ==\","
    "\"PartitionKey\":\"k\",\"SequenceNumber\":\"1\",\"ApproximateArrivalTimestamp\":"
    "1796609595.51},{\"ApproximateArrivalTimestamp\":1.7E9,\"Data\":\"Qg==\"}]}",
    "{\"StreamDescriptionSummary\":{\"StreamName\":\"s\",\"StreamCreationTimestamp\":1795322037,"
    "\"OpenShardCount\":1,\"Timestamp\":\"x\"},\"StreamSummaries\":[{\"StreamCreation"
    "Timestamp\":-12.0005e2}]}",
    "{\"Consumers\":[{\"ConsumerCreationTimestamp\" : 1795322043.495 ,\"ConsumerName\":\"c\\\"\","
    "\"Time\\u0073tamp\":0.0004999,\"x\":[\"Timestamp\",1,{\"Timestamp\":253402300799.9995}]}]}",
};

/* A Go time text: yyyy-mm-ddThh:mm:ss[.f{1,3}, no trailing zero]Z. */
static int is_go_time(const char *s)
{
    size_t n = strlen(s), i;
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";

    if (n < 20 || s[n - 1] != 'Z') {
        return 0;
    }
    for (i = 0; i < 19; i++) {
        if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != shape[i]) {
            return 0;
        }
    }
    if (n == 20) {
        return 1;
    }
    if (s[19] != '.' || n < 22 || n > 24 || s[n - 2] == '0') {
        return 0;
    }
    for (i = 20; i < n - 1; i++) {
        if (!(s[i] >= '0' && s[i] <= '9')) {
            return 0;
        }
    }
    return 1;
}

/* Milliseconds since the epoch of a Go time text (is_go_time). */
static double go_time_ms(const char *s)
{
    struct tm tm;
    double frac = 0;
    time_t secs;

    memset(&tm, 0, sizeof(tm));
    assert_int_equal(sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                            &tm.tm_hour, &tm.tm_min, &tm.tm_sec),
                     6);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    secs = timegm(&tm);
    if (s[19] == '.') {
        frac = strtod(s + 19, NULL);
    }
    return (double)secs * 1000 + round(frac * 1000);
}

static int ends_in_timestamp(const char *k)
{
    size_t n = strlen(k);

    return n >= 9 && strcmp(k + n - 9, "Timestamp") == 0;
}

/* out is in with *Timestamp numbers turned into their Go time. */
static void same_but_times(const json_t *in, const json_t *out, const char *key, const char *text,
                           size_t len)
{
    if (key && ends_in_timestamp(key) && json_is_number(in) && json_is_string(out)) {
        double v = json_number_value(in);
        const char *t = json_string_value(out);
        double ms;

        if (!is_go_time(t)) {
            fail_msg("%s: \"%s\" is no Go time: %.*s", key, t, (int)len, text);
        }
        ms = go_time_ms(t);
        /* The value to the millisecond (the double may be a hair off the
         * decimal text the rewrite read). */
        if (fabs(ms - v * 1000) > 1.0 + fabs(v) * 1e-12) {
            fail_msg("%s: %.17g became %s: %.*s", key, v, t, (int)len, text);
        }
        return;
    }
    if (json_typeof(in) != json_typeof(out)) {
        fail_msg("%s: type changed: %.*s", key ? key : "(root)", (int)len, text);
    }
    if (json_is_object(in)) {
        const char *k;
        json_t *v;

        assert_int_equal(json_object_size(in), json_object_size(out));
        json_object_foreach((json_t *)in, k, v)
        {
            const json_t *o = json_object_get(out, k);
            assert_non_null(o);
            same_but_times(v, o, k, text, len);
        }
    } else if (json_is_array(in)) {
        size_t i;

        assert_int_equal(json_array_size(in), json_array_size(out));
        for (i = 0; i < json_array_size(in); i++) {
            same_but_times(json_array_get(in, i), json_array_get(out, i), NULL, text, len);
        }
    } else if (!json_equal((json_t *)in, (json_t *)out)) {
        fail_msg("%s: value changed: %.*s", key ? key : "(root)", (int)len, text);
    } else if (key && ends_in_timestamp(key) && json_is_number(in)) {
        /* Left a number: only when no Go time holds it. */
        double v = json_number_value(in);
        if (v > -62135596800.0 && v < 253402300799.0) {
            fail_msg("%s: %.17g left as a number: %.*s", key, v, (int)len, text);
        }
    }
}

static void test_times_rewrite_vs_jansson(void **state)
{
    struct buf out = BUF_INIT(1 << 20);
    struct fuzz f;
    int round, checked = 0, converted = 0;

    (void)state;
    fuzz_seed(&f, 0x7157);
    for (round = 0; round < ROUNDS * 5; round++) {
        const char *src = timed_answers[round % 3];
        json_t *in, *o;
        int n;

        fuzz_mutate(&f, src, strlen(src));
        buf_reset(&out);
        n = kinesis_times_rewrite(f.out, f.len, &out);
        /* jansson 2.14 reads a NUL byte right after a number as nothing
         * ({"a":1\0} loads): no Kinesis answer holds one, so no text
         * with a NUL is compared. */
        in = memchr(f.out, '\0', f.len) ? NULL : json_loadb(f.out, f.len, 0, NULL);
        if (!in) {
            continue;
        }
        if (n < 0) {
            fail_msg("rewrite refused what jansson reads: %.*s", (int)f.len, f.out);
        }
        o = json_loadb(out.data, out.len, 0, NULL);
        if (!o) {
            fail_msg("rewrite made invalid JSON of %.*s: %.*s", (int)f.len, f.out, (int)out.len,
                     out.data);
        }
        same_but_times(in, o, NULL, f.out, f.len);
        if (n == 0 && (out.len != f.len || memcmp(out.data, f.out, f.len) != 0)) {
            fail_msg("nothing rewritten but the text changed: %.*s", (int)f.len, f.out);
        }
        checked++;
        converted += n > 0;
        json_decref(in);
        json_decref(o);
    }
    assert_true(checked > ROUNDS / 4);
    assert_true(converted > ROUNDS / 4);
    buf_free(&out);
}

/* -------------------------------------------------------- deaggregation */

/* The aggregate aws-kinesis-agg wrote (see answers[]), raw. */
static const char agg_b64[] =
    "84mawgoCazEKAmsyEgI3NxoHCAAaA29uZRoJCAEQABoDdHdvGgkIABoFdGhyZWWrO49/SKJzQq5X5Dt3BLZ8";

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    }
    return h;
}

/* What unpacks packs again (our packer) and unpacks to the same records.
 * Returns 1 when p[0..n) unpacked. */
static int round_trip(const void *p, size_t n)
{
    struct kinesis_kpl_unpacked *u = kinesis_kpl_unpack(p, n), *v;
    struct buf raw = BUF_INIT(1 << 20), b64 = BUF_INIT(2 << 20), dec = BUF_INIT(1 << 20);
    struct kinesis_kpl a;
    size_t i;

    if (!u) {
        return 0;
    }
    kinesis_kpl_init(&a);
    for (i = 0; i < kinesis_kpl_count(u); i++) {
        struct kinesis_kpl_record r;

        kinesis_kpl_get(u, i, &r);
        assert_non_null(r.pk);
        assert_int_equal(kinesis_kpl_add(&a, r.pk, strlen(r.pk), fnv(r.pk), r.ehk,
                                         r.ehk ? strlen(r.ehk) : 0, r.data, r.data_len),
                         0);
    }
    assert_int_equal(kinesis_kpl_pack_b64(&a, &raw, &b64), 0);
    assert_int_equal(b64_decode(b64.data, b64.len, &dec), 0);
    v = kinesis_kpl_unpack(dec.data, dec.len);
    assert_non_null(v);
    assert_int_equal(kinesis_kpl_count(v), kinesis_kpl_count(u));
    for (i = 0; i < kinesis_kpl_count(u); i++) {
        struct kinesis_kpl_record x, y;

        kinesis_kpl_get(u, i, &x);
        kinesis_kpl_get(v, i, &y);
        assert_string_equal(x.pk, y.pk);
        assert_int_equal(!x.ehk, !y.ehk);
        if (x.ehk) {
            assert_string_equal(x.ehk, y.ehk);
        }
        assert_int_equal(x.data_len, y.data_len);
        if (x.data_len) {
            assert_memory_equal(x.data, y.data, x.data_len);
        }
    }
    kinesis_kpl_unpacked_free(v);
    kinesis_kpl_unpacked_free(u);
    kinesis_kpl_free(&a);
    buf_free(&raw);
    buf_free(&b64);
    buf_free(&dec);
    return 1;
}

/* Truncated and mutated aggregates (as they are: the MD5 refuses nearly
 * all), the same with the MD5 made right (the protobuf reader and index
 * checks decide), and huge declared lengths. */
static void test_deaggregator(void **state)
{
    static const char *const huge[] = {
        "\xff\xff\xff\xff\x0f", "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
        "\x1a\xff\xff\xff\xff\x07", "\x0a\xfe\xff\xff\x7f", "\x12\x80\x80\x80\x80\x10"};
    static const unsigned char magic[4] = {0xF3, 0x89, 0x9A, 0xC2};
    struct kinesis_kpl a;
    struct buf seed = BUF_INIT(1 << 20), b64 = BUF_INIT(2 << 20), raw = BUF_INIT(1 << 20);
    static char framed[FUZZ_MAX + 64];
    struct kinesis_kpl_unpacked *u;
    struct kinesis_kpl_record r;
    struct fuzz f;
    int round, framed_ok = 0, plain_ok = 0;

    (void)state;
    fuzz_seed(&f, 0xa66);
    /* Another implementation's aggregate reads as it was written. */
    assert_int_equal(b64_decode(agg_b64, strlen(agg_b64), &seed), 0);
    u = kinesis_kpl_unpack(seed.data, seed.len);
    assert_non_null(u);
    assert_int_equal(kinesis_kpl_count(u), 3);
    kinesis_kpl_get(u, 1, &r);
    assert_string_equal(r.pk, "k2");
    assert_string_equal(r.ehk, "77");
    assert_int_equal(r.data_len, 3);
    assert_memory_equal(r.data, "two", 3);
    kinesis_kpl_get(u, 2, &r);
    assert_string_equal(r.pk, "k1");
    assert_null(r.ehk);
    assert_memory_equal(r.data, "three", 5);
    kinesis_kpl_unpacked_free(u);
    kinesis_kpl_init(&a);
    for (round = 0; round < ROUNDS * 3; round++) {
        size_t n, pbn;

        if (round % 2) {
            /* One of ours: random keys, hash keys and data. */
            static char keys[8][16], data[8][64];
            int k = 1 + (int)fuzz_below(&f, 8);

            kinesis_kpl_reset(&a);
            for (int i = 0; i < k; i++) {
                size_t dl = fuzz_below(&f, sizeof(data[i]));

                snprintf(keys[i], sizeof(keys[i]), "key%zu", fuzz_below(&f, 4));
                for (size_t j = 0; j < dl; j++) {
                    data[i][j] = (char)fuzz_next(&f);
                }
                assert_int_equal(kinesis_kpl_add(&a, keys[i], strlen(keys[i]), fnv(keys[i]),
                                                 i % 2 ? "123" : NULL, 3, data[i], dl),
                                 0);
            }
            buf_reset(&b64);
            assert_int_equal(kinesis_kpl_pack_b64(&a, &raw, &b64), 0);
            buf_reset(&seed);
            assert_int_equal(b64_decode(b64.data, b64.len, &seed), 0);
            assert_int_equal(round_trip(seed.data, seed.len), 1);
        } else if (round % 6 == 0) {
            buf_reset(&seed);
            assert_int_equal(b64_decode(agg_b64, strlen(agg_b64), &seed), 0);
        }
        /* As it is, mutated or cut short. */
        fuzz_mutate(&f, seed.data, fuzz_below(&f, 4) ? seed.len : fuzz_below(&f, seed.len + 1));
        plain_ok += round_trip(f.out, f.len);
        /* The protobuf mutated (or given a huge length), then framed right. */
        pbn = seed.len - KINESIS_KPL_OVERHEAD;
        fuzz_mutate(&f, seed.data + 4, pbn);
        if (fuzz_below(&f, 3) == 0) {
            const char *h = huge[fuzz_below(&f, sizeof(huge) / sizeof(*huge))];

            fuzz_insert(&f, fuzz_below(&f, f.len + 1), h, strlen(h));
        }
        n = f.len;
        memcpy(framed, magic, 4);
        memcpy(framed + 4, f.out, n);
        kinesis_md5(f.out, n, (unsigned char *)framed + 4 + n);
        framed_ok += round_trip(framed, n + KINESIS_KPL_OVERHEAD);
    }
    /* Some mutations stay valid protobuf (the reader was reached and
     * accepted them), few survive a wrong MD5. */
    assert_true(framed_ok > ROUNDS / 10);
    assert_true(plain_ok < framed_ok);
    kinesis_kpl_free(&a);
    buf_free(&seed);
    buf_free(&b64);
    buf_free(&raw);
}

/* Aggregation: concurrent put_record requests against mutated shard maps
 * and PutRecords answers; each caller answered once. */
static void test_aggregated_answers(void **state)
{
    static struct req r[N_COAL];
    char body[256];
    void *k;
    int round, i;

    (void)state;
    memset(&F, 0, sizeof(F));
    fuzz_seed(&F.fz, 0xa99);
    F.mutate = 1;
    F.hold = 1;
    L = loop_create(NULL, 0);
    assert_non_null(L);
    k = make(",\"coalesce\":\"true\",\"aggregate\":\"true\",\"aggregate_max_records\":\"5\"");
    for (i = 0; i < N_COAL; i++) {
        envelope_request_init(&r[i].req);
        envelope_reply_init(&r[i].reply);
    }
    for (round = 0; round < ROUNDS / 4; round++) {
        for (i = 0; i < N_COAL; i++) {
            int n = snprintf(body, sizeof(body),
                             "{\"metadata\":{\"method\":\"put_record\",\"stream_name\":\"s%d\","
                             "\"partition_key\":\"key-%d\"%s},\"data\":\"cmVjb3JkLQ==\"}",
                             round % 3, i, i % 4 ? "" : ",\"explicit_hash_key\":\"99\"");
            assert_int_equal(start(k, &r[i], body, (size_t)n), 0);
        }
        run_pending();
        for (i = 0; i < N_COAL; i++) {
            check_answered(&r[i], "aggregated put_record", round);
        }
    }
    assert_true(F.calls > ROUNDS / 4);
    kinesis_target_kind.destroy(k);
    for (i = 0; i < N_COAL; i++) {
        envelope_request_free(&r[i].req);
        envelope_reply_free(&r[i].reply);
    }
    loop_destroy(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests_and_answers),
        cmocka_unit_test(test_coalesced_answers),
        cmocka_unit_test(test_answer_readers_agree),
        cmocka_unit_test(test_times_rewrite_vs_jansson),
        cmocka_unit_test(test_deaggregator),
        cmocka_unit_test(test_aggregated_answers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
