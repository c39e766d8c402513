/* kinesis_internal.h - the aws.kinesis target's internals, shared by its files.
 *
 * One request = one struct kinesis_call: a small step machine on the
 * engine loop. A method's start function reads and validates metadata
 * (no network on any error), builds the AWS request body in c->body and
 * sends it; each AWS answer runs the next step, and the last step fills
 * the reply and finishes the call (done(ctx), then the call is freed). */
#ifndef KK_KINESIS_INTERNAL_H
#define KK_KINESIS_INTERNAL_H

#include "aws/aws_client.h"
#include "base/buf.h"
#include "base/loop.h"
#include "base/metrics.h"
#include "base/pool.h"
#include "base/random.h"
#include "kinesis/kinesis_kpl.h"
#include "kinesis/target.h"
#include "message/envelope.h"

#include <jansson.h>
#include <stdint.h>

struct kinesis_call;

struct kinesis {
    struct loop *loop;
    struct aws_client *aws;
    char *binding;
    int max_attempts;   /* also bounds put_records entry resends */
    long retry_base_ms; /* put_records resend backoff */
    long retry_cap_ms;
    struct random_prng rng;     /* jitter */
    int stopping;               /* destroy in progress: no new AWS calls */
    int time_format;            /* enum kinesis_time_format: timestamps in replies */
    struct kinesis_call *calls; /* live calls */
    /* put_record coalescing (kinesis_coalesce.c) */
    int coalesce;
    size_t coalesce_max_records;
    size_t coalesce_max_bytes;
    uint64_t coalesce_linger_ms;
    struct kinesis_batch *batches; /* filling, one per stream */
    struct kinesis_batch *sending; /* PutRecords calls in flight */
    struct pool call_pool;         /* finished calls kept for reuse */
    struct pool batch_pool;        /* batches sent and answered, for reuse */
    /* KPL aggregation of coalesced records (kinesis_aggregate.c) */
    int aggregate;
    size_t aggregate_max_bytes;
    size_t aggregate_max_records;
    struct kinesis_agg_stream *agg;
    struct pool rec_pool;   /* finished records kept for reuse */
    struct kinesis_kpl kpl; /* the aggregate being packed */
    struct buf scratch;     /* a reply's data being built */
    /* what was written: user records, Kinesis records, their bytes (NULL
     * without a metrics registry) */
    struct metrics_series *m_user_records, *m_records, *m_bytes;
};

struct kinesis_method {
    const char *name;
    void (*start)(struct kinesis_call *c);
    int legacy; /* the older connector style: the stream key is spelled "stream" */
};

typedef void (*kinesis_step_fn)(struct kinesis_call *c, const struct aws_response *r);

struct kinesis_call {
    struct kinesis *k;
    const struct kinesis_method *m;
    const struct envelope_request *req;
    struct envelope_reply *reply;
    target_done_fn done;
    void *ctx;
    int method_defaulted; /* no "method": the older connector style's default put */
    struct kinesis_call *prev, *next;
    void *pool_next;         /* in k->call_pool */
    struct buf body;         /* the AWS request being sent */
    int body_err;            /* an append to body failed (too large) */
    kinesis_step_fn step;    /* runs when the AWS call completes */
    struct loop_timer timer; /* backoff between put_records resends */
    size_t rec_size;         /* put_record: data plus partition key */
    void *state;             /* the method's own state */
    void (*state_free)(void *state);
};

/* ---- lifecycle (kinesis.c) ---- */

/* Set the reply's error (is_error true). The call goes on until finished. */
void kinesis_call_error(struct kinesis_call *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Hand the reply back (done) and free the call. c is gone afterwards. */
void kinesis_call_finish(struct kinesis_call *c);
/* kinesis_call_error + kinesis_call_finish. */
void kinesis_call_fail(struct kinesis_call *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Send c->body as <operation>; step runs with the answer. Returns 0, or
 * -1 when the call was failed and finished (c is gone). */
int kinesis_call_send(struct kinesis_call *c, const char *operation, kinesis_step_fn step);
/* A step for methods whose reply is the AWS response as it is. */
void kinesis_step_plain(struct kinesis_call *c, const struct aws_response *r);
/* If r is an error: put "<Type>: <message>" in the reply, mark it with
 * kinesis_reply_error_type and return 1. */
int kinesis_reply_aws_error(struct kinesis_call *c, const struct aws_response *r);
/* The reply failed with an AWS error of this type (and HTTP status, 0 for
 * none): records the type for the metrics and whether a retry may help. */
void kinesis_reply_error_type(struct kinesis_call *c, long status, const char *type);
/* result=ok and data = body (null when body is empty or "{}"), its
 * timestamps as the target's timestamp_format says. */
void kinesis_reply_ok(struct kinesis_call *c, const char *body, size_t len);
/* Parse an AWS 2xx body as a JSON object; on failure the reply gets an
 * InvalidResponse error and NULL comes back. */
json_t *kinesis_parse_response(struct kinesis_call *c, const struct aws_response *r);
/* A written record's reply: result ok, shard_id, sequence_number (and
 * sub_sequence_number when sub >= 0: its index inside an aggregate), data
 * in PutRecord's shape. -1 out of memory. */
int kinesis_entry_reply(struct kinesis_call *c, const char *shard, const char *seq, long long sub,
                        const char *encryption);
/* Count records written: user records, Kinesis records, their bytes. */
void kinesis_count_written(struct kinesis *k, size_t user, size_t records, size_t bytes);
/* Milliseconds of full-jitter backoff before resend number `attempt` (1..). */
uint64_t kinesis_backoff_ms(struct kinesis *k, int attempt);

/* ---- request metadata (kinesis.c) ---- */

typedef int (*kinesis_check_fn)(const char *key, const char *v, char *err, size_t errlen);

/* The value of key in *out (NULL when absent or empty). Absent and
 * required: "<key>: is required for <method>". Present: check(v) must
 * pass. Returns 0, or -1 with the reply's error set. */
int kinesis_arg(struct kinesis_call *c, const char *key, int required, kinesis_check_fn check,
                const char **out);
/* stream_name, or its alias stream (the older connector style). */
int kinesis_arg_stream(struct kinesis_call *c, int required, const char **out);
/* An integer in [min, max]; *out keeps its value when the key is absent. */
int kinesis_arg_int(struct kinesis_call *c, const char *key, long long min, long long max,
                    long long *out, int *present);
int kinesis_arg_bool(struct kinesis_call *c, const char *key, int *out, int *present);

/* ---- request body, a JSON object built in c->body ---- */

void kinesis_body_begin(struct kinesis_call *c);
void kinesis_body_str(struct kinesis_call *c, const char *name, const char *v);
void kinesis_body_strn(struct kinesis_call *c, const char *name, const char *v, size_t n);
/* p[0..n) as a base64 string (a Kinesis blob). */
void kinesis_body_b64(struct kinesis_call *c, const char *name, const void *p, size_t n);
/* The request's data as a Kinesis blob: its base64 text as it came when
 * there is one, else the bytes encoded. */
void kinesis_body_data(struct kinesis_call *c, const char *name);
void kinesis_body_int(struct kinesis_call *c, const char *name, long long v);
/* v is JSON text already (a number, true/false, base64 in quotes, ...). */
void kinesis_body_raw(struct kinesis_call *c, const char *name, const char *v);
void kinesis_body_end(struct kinesis_call *c);

/* ---- methods ---- */

/* kinesis_admin.c */
void kinesis_list_streams(struct kinesis_call *c);
void kinesis_create_stream(struct kinesis_call *c);
void kinesis_delete_stream(struct kinesis_call *c);
void kinesis_describe_stream(struct kinesis_call *c);
void kinesis_list_shards(struct kinesis_call *c);
void kinesis_list_stream_consumers(struct kinesis_call *c);
void kinesis_create_stream_consumer(struct kinesis_call *c);
/* kinesis_put.c */
void kinesis_put_record(struct kinesis_call *c);
/* put_record's step: shard_id and sequence_number into the reply. */
void kinesis_put_record_done(struct kinesis_call *c, const struct aws_response *r);
void kinesis_put(struct kinesis_call *c); /* the older style: random key when absent */
/* c->body = the PutRecord body of c's data; its record members (after
 * StreamName) start at *rec_off. 0, or -1 when it does not fit. */
int kinesis_put_body(struct kinesis_call *c, const char *stream, const char *key, const char *hash,
                     const char *seq, size_t *rec_off);
/* kinesis_put_records.c */
void kinesis_put_records(struct kinesis_call *c);
/* kinesis_coalesce.c: c->body holds the PutRecord body, whose record
 * members start at c->body[rec_off] (the ',' after StreamName); size is
 * data plus partition key bytes. The call joins the stream's batch and is
 * answered from its entry of the PutRecords reply. Returns 0, or -1 when
 * the record cannot be coalesced (c untouched: send it alone). */
int kinesis_coalesce_add(struct kinesis_call *c, const char *stream, size_t rec_off, size_t size);
/* Create: the pool of answered batches. */
void kinesis_coalesce_init(struct kinesis *k);
/* Destroy: forget batches not yet sent (their calls stay in k->calls). */
void kinesis_coalesce_stop(struct kinesis *k);
void kinesis_coalesce_free(struct kinesis *k);
/* kinesis_aggregate.c: for a target with aggregate, a validated
 * put_record (size: data plus partition key) joins its shard's queue and is
 * packed into a KPL aggregate; pk and ehk (NULL: none) are copied, and its
 * PutRecord body is built only if it goes plain. Returns 0, or -1 when it
 * cannot (c untouched). */
int kinesis_aggregate_add(struct kinesis_call *c, const char *stream, size_t size, const char *pk,
                          const char *ehk);
/* Create: the pool of finished records. */
void kinesis_aggregate_init(struct kinesis *k);
/* Destroy: forget records not yet sent (their calls stay in k->calls);
 * then, once the AWS client is gone, free the rest. */
void kinesis_aggregate_stop(struct kinesis *k);
void kinesis_aggregate_free(struct kinesis *k);

/* kinesis_get.c */
void kinesis_get_shard_iterator(struct kinesis_call *c);
void kinesis_get_records(struct kinesis_call *c);

#endif
