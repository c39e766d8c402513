/* pipeline.c - in-process benchmark of the whole per-request path.
 *
 * envelope parse -> validation -> Kinesis request JSON -> SigV4 signing ->
 * (null transport: a canned Kinesis reply) -> reply parse -> reply
 * envelope serialised, all on one thread and one engine loop, exactly the
 * code the daemon runs between the KubeMQ source and the HTTP transport.
 *
 *   bench-pipeline [--case NAME] [--requests N] [--batch B] [--seconds S]
 *                  [--sink URL [--coalesce | --aggregate]]
 * cases: put_record_100, put_record_1k, put_record_64k, put_records_500x1k,
 * aggregate_500x100 (default: all). Prints one JSON line per case:
 *   {"case":"put_record_1k","requests":N,"seconds":S,"per_second":R}
 * B requests are started together and the loop runs until all are
 * answered, as the engine does with B queries in flight (default 16).
 *
 * With --sink URL the requests go over HTTP (the daemon's own HTTP/1.1
 * client) to that endpoint (bench-sink), B in flight at all times, and
 * --coalesce turns on put_record coalescing: the records/s of the two
 * show what coalescing buys against the same sink. --aggregate turns on
 * KPL aggregation too (coalesce + aggregate); the line then also gives
 * user_records_per_kinesis_record, from the target's own counters.
 *
 * aggregate_500x100: 500 put_record requests of 100 bytes started
 * together into an aggregating target (null transport), packed into one
 * aggregated record: the in-process cost of aggregation.
 *
 * Instructions per request: run under
 *   valgrind --tool=callgrind --collect-atstart=no --toggle-collect=pipeline_run
 * and divide the total Ir by the requests of that case (bench/run.sh does). */
#include "base/b64.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/errs.h"
#include "base/loop.h"
#include "base/metrics.h"
#include "kinesis/kinesis.h"
#include "message/envelope.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define MAX_BATCH 1024

struct bcase {
    const char *name;
    size_t record_bytes;
    size_t records;   /* 0: put_record, else put_records of this many */
    size_t aggregate; /* put_record requests started together into an aggregating target */
};

static const struct bcase cases[] = {
    {"put_record_100", 100, 0, 0},      {"put_record_1k", 1024, 0, 0},
    {"put_record_64k", 65536, 0, 0},    {"put_records_500x1k", 1024, 500, 0},
    {"aggregate_500x100", 100, 0, 500}, {NULL, 0, 0, 0},
};

static const char put_record_reply[] =
    "{\"ShardId\":\"shardId-000000000003\",\"SequenceNumber\":"
    "\"49654194640963434468016234098126325098775614473245868082\"}";

struct sink {
    struct buf put_records_reply;
    size_t entry_end[501]; /* where the reply's entry i ends (entry_end[0]: its head) */
    struct buf reply;      /* a reply with as many entries as records sent */
    unsigned long long calls;
};

static const char list_shards_reply[] =
    "{\"Shards\":[{\"ShardId\":\"shardId-000000000003\",\"HashKeyRange\":{\"StartingHashKey\":"
    "\"0\",\"EndingHashKey\":\"340282366920938463463374607431768211455\"},\"SequenceNumberRange\":{"
    "\"StartingSequenceNumber\":\"1\"}}]}";

/* Records in a PutRecords body: each entry has one "Data" key. */
static size_t count_records(const char *body, size_t len)
{
    const char *p = body, *end = body + len;
    size_t n = 0;

    while (p < end && (p = memmem(p, (size_t)(end - p), "\"Data\"", 6)) != NULL) {
        n++;
        p += 6;
    }
    return n;
}

/* The null transport: answers at once with a canned 200. */
static int null_send(void *tctx, const struct aws_http_request *req, aws_http_done_fn done,
                     void *cctx)
{
    struct sink *s = tctx;
    size_t i;
    int put_records = 0;

    s->calls++;
    for (i = 0; req->headers[i]; i++) {
        if (strncmp(req->headers[i], "X-Amz-Target: ", 14) == 0) {
            put_records = strstr(req->headers[i], ".PutRecords") != NULL;
            if (strstr(req->headers[i], ".ListShards")) {
                done(cctx, 200, list_shards_reply, sizeof(list_shards_reply) - 1, NULL);
                return 0;
            }
        }
    }
    if (put_records) {
        size_t n = count_records(req->body, req->body_len);

        if (n < 500) {
            /* The first n entries of the canned reply. */
            buf_reset(&s->reply);
            if (buf_append(&s->reply, s->put_records_reply.data, s->entry_end[n]) < 0 ||
                buf_append_str(&s->reply, "]}") < 0) {
                return -1;
            }
            done(cctx, 200, s->reply.data, s->reply.len, NULL);
            return 0;
        }
        done(cctx, 200, s->put_records_reply.data, s->put_records_reply.len, NULL);
    } else {
        done(cctx, 200, put_record_reply, sizeof(put_record_reply) - 1, NULL);
    }
    return 0;
}

struct slot {
    struct envelope_request req;
    struct envelope_reply reply;
    struct buf out; /* the serialised reply, as the source would send it */
    int done;
    int idle; /* --sink: answered and not restarted */
};

struct bench {
    struct loop *loop;
    void *kinesis;
    void *aggregating; /* coalesce + aggregate, null transport (aggregate_500x100) */
    struct metrics_registry *metrics, *agg_metrics;
    struct slot slots[MAX_BATCH];
    size_t outstanding;
    unsigned long long errors;
    char first_error[512];
};

static void on_done(void *ctx)
{
    struct slot *s = ctx;

    s->done = 1;
}

/* One request through the pipeline, started. */
static int start_one(struct bench *b, struct slot *s, const struct buf *body)
{
    char err[256];

    if (envelope_request_parse(&s->req, body->data, body->len, 0, err, sizeof(err)) < 0) {
        fprintf(stderr, "bench-pipeline: envelope: %s\n", err);
        return -1;
    }
    envelope_reply_reset(&s->reply);
    s->done = 0;
    b->outstanding++;
    kinesis_target_kind.execute(b->kinesis, &s->req, &s->reply, on_done, s);
    return 0;
}

static void finish_one(struct bench *b, struct slot *s)
{
    buf_reset(&s->out);
    if (envelope_reply_serialize(&s->reply, &s->out) < 0 || s->reply.is_error) {
        if (!b->errors++) {
            snprintf(b->first_error, sizeof(b->first_error), "%s",
                     s->reply.is_error ? buf_str(&s->reply.error) : "serialise failed");
        }
    }
}

static int pipeline_loop(struct bench *b, const struct buf *body, unsigned long long n,
                         size_t batch)
{
    unsigned long long started = 0;
    size_t i, k;

    while (started < n) {
        k = batch;
        if (n - started < k) {
            k = (size_t)(n - started);
        }
        for (i = 0; i < k; i++) {
            if (start_one(b, &b->slots[i], body) < 0) {
                return -1;
            }
        }
        started += k;
        for (;;) {
            size_t left = 0;

            for (i = 0; i < k; i++) {
                left += !b->slots[i].done;
            }
            if (!left) {
                break;
            }
            if (loop_run_once(b->loop, 0) < 0) {
                return -1;
            }
        }
        for (i = 0; i < k; i++) {
            finish_one(b, &b->slots[i]);
        }
        b->outstanding -= k;
    }
    return 0;
}

/* The envelope a client sends: {"metadata":{...},"data":"<base64>"}. */
/* The measured part (callgrind's --toggle-collect names this function;
 * noipa keeps it from being cloned or inlined under another name). */
__attribute__((noipa)) int pipeline_run(struct bench *b, const struct buf *body,
                                        unsigned long long n, size_t batch);

__attribute__((noipa)) int pipeline_run(struct bench *b, const struct buf *body,
                                        unsigned long long n, size_t batch)
{
    return pipeline_loop(b, body, n, batch);
}

static int build_body(const struct bcase *c, struct buf *body)
{
    struct buf rec = BUF_INIT(BUF_DEFAULT_MAX), data = BUF_INIT(BUF_DEFAULT_MAX);
    size_t i;
    int rc = -1;

    if (buf_reserve(&rec, c->record_bytes) < 0) {
        goto out;
    }
    for (i = 0; i < c->record_bytes; i++) {
        rec.data[i] = (char)('a' + (i * 7) % 26);
    }
    rec.len = c->record_bytes;
    if (c->records) {
        /* put_records, ordered form: [{"partition_key":"k<i>","data":"<b64>"},...] */
        if (buf_append_char(&data, '[') < 0) {
            goto out;
        }
        for (i = 0; i < c->records; i++) {
            if (buf_appendf(&data, "%s{\"partition_key\":\"key-%zu\",\"data\":\"", i ? "," : "",
                            i) < 0 ||
                b64_encode(rec.data, rec.len, &data) < 0 || buf_append_str(&data, "\"}") < 0) {
                goto out;
            }
        }
        if (buf_append_char(&data, ']') < 0) {
            goto out;
        }
    } else if (buf_set(&data, rec.data, rec.len) < 0) {
        goto out;
    }
    buf_reset(body);
    if (buf_appendf(body,
                    "{\"metadata\":{\"method\":\"%s\",\"stream_name\":\"bench-stream\"%s},"
                    "\"data\":\"",
                    c->records ? "put_records" : "put_record",
                    c->records ? "" : ",\"partition_key\":\"partition-key-0001\"") < 0 ||
        b64_encode(data.data, data.len, body) < 0 || buf_append_str(body, "\"}") < 0) {
        goto out;
    }
    rc = 0;
out:
    buf_free(&rec);
    buf_free(&data);
    return rc;
}

static int build_put_records_reply(struct sink *s, size_t n)
{
    struct buf *out = &s->put_records_reply;
    size_t i;

    if (buf_append_str(out, "{\"FailedRecordCount\":0,\"Records\":[") < 0) {
        return -1;
    }
    s->entry_end[0] = out->len;
    for (i = 0; i < n; i++) {
        if (buf_appendf(out,
                        "%s{\"SequenceNumber\":\"4965419464096343446801623409812632509877561447"
                        "%010zu\",\"ShardId\":\"shardId-000000000003\"}",
                        i ? "," : "", i) < 0) {
            return -1;
        }
        s->entry_end[i + 1] = out->len;
    }
    return buf_append_str(out, "]}");
}

/* A counter of the target's own series, by name (0 when absent). */
static unsigned long long counter(struct metrics_registry *reg, const char *name)
{
    struct buf text = BUF_INIT(1 << 20);
    unsigned long long v = 0;
    const char *p;

    if (metrics_render_prometheus(reg, &text) == 0 && (p = strstr(buf_str(&text), name)) &&
        (p = strchr(p, '}'))) {
        v = strtoull(p + 1, NULL, 10);
    }
    buf_free(&text);
    return v;
}

/* User records per Kinesis record written so far, "" without counters. */
static void ratio_text(struct metrics_registry *reg, char *out, size_t n)
{
    unsigned long long user = counter(reg, "kubemq_kinesis_user_records_total{");
    unsigned long long kin = counter(reg, "kubemq_kinesis_stream_records_total{");

    out[0] = '\0';
    if (kin) {
        snprintf(out, n, ",\"user_records_per_kinesis_record\":%.1f", (double)user / (double)kin);
    }
}

static double now_s(void)
{
    return (double)clock_mono_us() / 1e6;
}

static int run_case(struct bench *b, const struct bcase *c, unsigned long long requests,
                    double seconds, size_t batch)
{
    struct buf body = BUF_INIT(BUF_DEFAULT_MAX);
    unsigned long long done = 0, step;
    void *plain = b->kinesis;
    char ratio[96] = "";
    double t0, t;
    int rc = -1;

    if (c->aggregate) {
        b->kinesis = b->aggregating;
        batch = c->aggregate;
        if (requests && requests < batch) {
            requests = batch;
        }
    }

    if (build_body(c, &body) < 0) {
        fprintf(stderr, "bench-pipeline: cannot build the %s request\n", c->name);
        goto out;
    }
    b->errors = 0;
    /* Warm up: buffers reach their size, the signing key is cached. */
    if (pipeline_loop(b, &body, batch, batch) < 0) {
        goto out;
    }
    t0 = now_s();
    if (requests) {
        if (pipeline_run(b, &body, requests, batch) < 0) {
            goto out;
        }
        done = requests;
    } else {
        step = c->records ? 20 : c->aggregate ? c->aggregate * 4 : 2000;
        do {
            if (pipeline_run(b, &body, step, batch) < 0) {
                goto out;
            }
            done += step;
        } while (now_s() - t0 < seconds);
    }
    t = now_s() - t0;
    if (b->errors) {
        fprintf(stderr, "bench-pipeline: %s: %llu error replies, first: %s\n", c->name, b->errors,
                b->first_error);
        goto out;
    }
    if (c->aggregate) {
        ratio_text(b->agg_metrics, ratio, sizeof(ratio));
    }
    printf("{\"case\":\"%s\",\"requests\":%llu,\"records\":%llu,\"batch\":%zu,\"seconds\":%.3f,"
           "\"per_second\":%.0f,\"records_per_second\":%.0f,\"us_per_request\":%.3f%s}\n",
           c->name, done, done * (c->records ? c->records : 1), batch, t, (double)done / t,
           (double)done * (double)(c->records ? c->records : 1) / t, t * 1e6 / (double)done, ratio);
    fflush(stdout);
    rc = 0;
out:
    b->kinesis = plain;
    buf_free(&body);
    return rc;
}

/* Keep `batch` requests in flight against a real endpoint until n are done. */
static int run_sink(struct bench *b, const struct bcase *c, unsigned long long n, size_t batch,
                    int coalesce, int aggregate)
{
    char ratio[96];
    struct buf body = BUF_INIT(BUF_DEFAULT_MAX);
    unsigned long long started = 0, finished = 0;
    struct rusage r0, r1;
    double t0, t, cpu;
    size_t i;
    int rc = -1;

    if (build_body(c, &body) < 0) {
        goto out;
    }
    b->errors = 0;
    getrusage(RUSAGE_SELF, &r0);
    t0 = now_s();
    for (i = 0; i < batch && started < n; i++, started++) {
        if (start_one(b, &b->slots[i], &body) < 0) {
            goto out;
        }
    }
    while (finished < n) {
        if (loop_run_once(b->loop, 100) < 0) {
            goto out;
        }
        for (i = 0; i < batch; i++) {
            struct slot *s = &b->slots[i];

            if (!s->done || s->idle) {
                continue;
            }
            finish_one(b, s);
            finished++;
            s->idle = 1;
            if (started < n) {
                started++;
                s->idle = 0;
                if (start_one(b, s, &body) < 0) {
                    goto out;
                }
            }
        }
    }
    t = now_s() - t0;
    getrusage(RUSAGE_SELF, &r1);
    cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) +
          (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6 +
          (double)(r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
          (double)(r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
    if (b->errors) {
        fprintf(stderr, "bench-pipeline: %s: %llu error replies, first: %s\n", c->name, b->errors,
                b->first_error);
        goto out;
    }
    ratio_text(b->metrics, ratio, sizeof(ratio));
    printf("{\"case\":\"%s\",\"sink\":true,\"coalesce\":%s,%s\"requests\":%llu,"
           "\"concurrency\":%zu,\"seconds\":%.3f,\"records_per_second\":%.0f,"
           "\"cpu_us_per_record\":%.2f%s}\n",
           c->name, coalesce ? "true" : "false", aggregate ? "\"aggregate\":true," : "", n, batch,
           t, (double)n / t, cpu * 1e6 / (double)n, ratio);
    fflush(stdout);
    rc = 0;
out:
    buf_free(&body);
    return rc;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench-pipeline [--case NAME] [--requests N] [--batch B] "
                    "[--seconds S] [--sink URL [--coalesce | --aggregate]]\ncases:");
    for (size_t i = 0; cases[i].name; i++) {
        fprintf(stderr, " %s", cases[i].name);
    }
    fprintf(stderr, "\n");
}

int main(int argc, char **argv)
{
    static struct bench b;
    struct sink sink = {BUF_INIT(BUF_DEFAULT_MAX), {0}, BUF_INIT(BUF_DEFAULT_MAX), 0};
    struct aws_transport transport = {null_send, &sink};
    const char *only = NULL, *sink_url = NULL;
    int coalesce = 0, aggregate = 0;
    unsigned long long requests = 0;
    double seconds = 2.0;
    size_t batch = 16, i;
    json_t *props = NULL;
    struct errs errs;
    char err[256];
    int rc = 1, ran = 0;

    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--case") == 0 && a + 1 < argc) {
            only = argv[++a];
        } else if (strcmp(argv[a], "--requests") == 0 && a + 1 < argc) {
            requests = strtoull(argv[++a], NULL, 10);
        } else if (strcmp(argv[a], "--batch") == 0 && a + 1 < argc) {
            batch = strtoul(argv[++a], NULL, 10);
        } else if (strcmp(argv[a], "--seconds") == 0 && a + 1 < argc) {
            seconds = strtod(argv[++a], NULL);
        } else if (strcmp(argv[a], "--sink") == 0 && a + 1 < argc) {
            sink_url = argv[++a];
        } else if (strcmp(argv[a], "--coalesce") == 0) {
            coalesce = 1;
        } else if (strcmp(argv[a], "--aggregate") == 0) {
            coalesce = aggregate = 1;
        } else {
            usage();
            return 2;
        }
    }
    if (batch < 1 || batch > MAX_BATCH) {
        fprintf(stderr, "bench-pipeline: --batch must be 1..%d\n", MAX_BATCH);
        return 2;
    }
    errs_init(&errs);
    if (build_put_records_reply(&sink, 500) < 0) {
        goto out;
    }
    b.loop = loop_create(err, sizeof(err));
    if (!b.loop) {
        fprintf(stderr, "bench-pipeline: %s\n", err);
        goto out;
    }
    props =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "aws_key", "AKIDBENCHMARK000000",
                  "aws_secret_key", "bench/secret/key/0000000000000000000000", "region",
                  "us-east-1", "endpoint", sink_url ? sink_url : "http://127.0.0.1:1", "coalesce",
                  coalesce ? "true" : "false", "aggregate", aggregate ? "true" : "false");
    b.kinesis = kinesis_instance_create(b.loop, props, "bench", "bench",
                                        sink_url ? NULL : &transport, &errs);
    /* One aggregate holds all 500 records of aggregate_500x100. */
    json_object_set_new(props, "coalesce", json_string("true"));
    json_object_set_new(props, "aggregate", json_string("true"));
    json_object_set_new(props, "aggregate_max_bytes", json_string("1048576"));
    json_object_set_new(props, "endpoint", json_string("http://127.0.0.1:1"));
    b.aggregating = kinesis_instance_create(b.loop, props, "bench", "bench", &transport, &errs);
    if (!b.kinesis || !b.aggregating) {
        fprintf(stderr, "bench-pipeline: %s", buf_str(&errs.text));
        goto out;
    }
    b.metrics = metrics_registry_new();
    b.agg_metrics = metrics_registry_new();
    if (!b.metrics || !b.agg_metrics) {
        goto out;
    }
    kinesis_target_kind.metrics(b.kinesis, b.metrics);
    kinesis_target_kind.metrics(b.aggregating, b.agg_metrics);
    for (i = 0; i < MAX_BATCH; i++) {
        envelope_request_init(&b.slots[i].req);
        envelope_reply_init(&b.slots[i].reply);
        buf_init(&b.slots[i].out, BUF_DEFAULT_MAX);
    }
    for (i = 0; cases[i].name; i++) {
        if (only && strcmp(only, cases[i].name) != 0) {
            continue;
        }
        ran++;
        if (sink_url) {
            if (cases[i].records || cases[i].aggregate ||
                run_sink(&b, &cases[i], requests ? requests : 20000, batch, coalesce, aggregate) <
                    0) {
                goto out;
            }
            continue;
        }
        if (run_case(&b, &cases[i], requests, seconds, batch) < 0) {
            goto out;
        }
    }
    if (!ran) {
        usage();
        goto out;
    }
    rc = 0;
out:
    if (b.kinesis) {
        kinesis_target_kind.destroy(b.kinesis);
    }
    if (b.aggregating) {
        kinesis_target_kind.destroy(b.aggregating);
    }
    metrics_registry_free(b.metrics);
    metrics_registry_free(b.agg_metrics);
    for (i = 0; i < MAX_BATCH; i++) {
        if (b.slots[i].req.metadata) {
            envelope_request_free(&b.slots[i].req);
            envelope_reply_free(&b.slots[i].reply);
            buf_free(&b.slots[i].out);
        }
    }
    loop_destroy(b.loop);
    json_decref(props);
    errs_free(&errs);
    buf_free(&sink.put_records_reply);
    buf_free(&sink.reply);
    return rc;
}
