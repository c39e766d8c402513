/* kinesis_get.c - get_shard_iterator and get_records.
 *
 * get_records has three forms:
 *   shard_iterator_id            GetRecords
 *   stream_name + shard_id       GetShardIterator, GetRecords
 *   stream_name alone            ListShards (all pages), then per shard in
 *                                order GetShardIterator + GetRecords until
 *                                `limit` records in all (kubemq-targets'
 *                                aws.kinesis connector's form)
 * With `deaggregate: "true"` every KPL aggregated record in the answer is
 * replaced by its user records. */
#include "base/b64.h"
#include "kinesis/kinesis_answer.h"
#include "kinesis/kinesis_internal.h"
#include "kinesis/kinesis_kpl.h"
#include "kinesis/kinesis_validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GetRecords may answer short while the shard still holds more (MillisBehind
 * > 0): follow NextShardIterator this many times per shard at most. */
#define GR_CALLS_PER_SHARD 5

struct iter_args {
    const char *type;
    const char *seq;
    double ts;
    int has_ts;
};

static int iterator_args(struct kinesis_call *c, int type_required, struct iter_args *a)
{
    memset(a, 0, sizeof(*a));
    if (kinesis_arg(c, "shard_iterator_type", type_required, kinesis_check_iterator_type,
                    &a->type) < 0) {
        return -1;
    }
    if (!a->type) {
        a->type = "TRIM_HORIZON";
    }
    if (kinesis_iterator_needs_sequence(a->type)) {
        if (kinesis_arg(c, "starting_sequence_number", 0, kinesis_check_sequence_number, &a->seq) <
            0) {
            return -1;
        }
        if (!a->seq) {
            kinesis_call_error(c,
                               "starting_sequence_number: is required for %s with "
                               "shard_iterator_type %s",
                               c->m->name, a->type);
            return -1;
        }
    }
    if (kinesis_iterator_needs_timestamp(a->type)) {
        const char *ts = envelope_meta(c->req, "timestamp");
        char err[512];
        if (!ts) {
            kinesis_call_error(c, "timestamp: is required for %s with shard_iterator_type %s",
                               c->m->name, a->type);
            return -1;
        }
        if (kinesis_parse_timestamp("timestamp", ts, &a->ts, err, sizeof(err)) < 0) {
            kinesis_call_error(c, "%s", err);
            return -1;
        }
        a->has_ts = 1;
    }
    return 0;
}

static void iterator_body(struct kinesis_call *c, const char *stream, const char *shard,
                          const struct iter_args *a)
{
    char ts[64];

    kinesis_body_begin(c);
    kinesis_body_str(c, "StreamName", stream);
    kinesis_body_str(c, "ShardId", shard);
    kinesis_body_str(c, "ShardIteratorType", a->type);
    if (a->seq) {
        kinesis_body_str(c, "StartingSequenceNumber", a->seq);
    }
    if (a->has_ts) {
        snprintf(ts, sizeof(ts), "%.3f", a->ts);
        kinesis_body_raw(c, "Timestamp", ts);
    }
    kinesis_body_end(c);
}

/* --------------------------------------------------- get_shard_iterator */

static void shard_iterator_done(struct kinesis_call *c, const struct aws_response *r)
{
    json_t *root;
    const char *it;

    if (kinesis_reply_aws_error(c, r)) {
        kinesis_call_finish(c);
        return;
    }
    root = kinesis_parse_response(c, r);
    if (root) {
        it = json_string_value(json_object_get(root, "ShardIterator"));
        kinesis_reply_ok(c, r->body, r->body_len);
        if (it && envelope_reply_meta_set(c->reply, "shard_iterator", it) < 0) {
            kinesis_call_error(c, "aws.kinesis: out of memory building the reply");
        }
        json_decref(root);
    }
    kinesis_call_finish(c);
}

void kinesis_get_shard_iterator(struct kinesis_call *c)
{
    const char *stream, *shard;
    struct iter_args a;

    if (kinesis_arg_stream(c, 1, &stream) < 0 ||
        kinesis_arg(c, "shard_id", 1, kinesis_check_name, &shard) < 0 ||
        iterator_args(c, 1, &a) < 0) {
        kinesis_call_finish(c);
        return;
    }
    iterator_body(c, stream, shard, &a);
    kinesis_call_send(c, "GetShardIterator", shard_iterator_done);
}

/* ---------------------------------------------------------- get_records */

struct gr_state {
    long long limit;
    const char *stream;
    struct iter_args it;
    json_t *shards; /* shard ids, ListShards order */
    size_t shard_idx;
    int calls_on_shard;
    json_t *records;   /* every record so far, each with its ShardId */
    json_t *per_shard; /* [{ShardId, NextShardIterator, MillisBehindLatest}] */
    json_int_t max_behind;
    int deaggregate;
};

static void gr_free(void *p)
{
    struct gr_state *s = p;

    json_decref(s->shards);
    json_decref(s->records);
    json_decref(s->per_shard);
    free(s);
}

static void records_body(struct kinesis_call *c, const char *iterator, long long limit)
{
    kinesis_body_begin(c);
    kinesis_body_str(c, "ShardIterator", iterator);
    kinesis_body_int(c, "Limit", limit);
    kinesis_body_end(c);
}

/* ------------------------------------------------------- deaggregation */

/* The user records of one aggregated record r (a GetRecords entry): r's
 * members, with each user record's PartitionKey, ExplicitHashKey (when it
 * has one) and Data, and SubSequenceNumber (its index) after the
 * aggregate's SequenceNumber. NULL when r is no valid aggregate (then it
 * stays as it is). */
static json_t *unpack_one(struct kinesis *k, const json_t *r, struct buf *raw, struct buf *b64)
{
    const json_t *data = json_object_get(r, "Data");
    struct kinesis_kpl_unpacked *u;
    json_t *out;
    size_t i;

    buf_reset(raw);
    if (!json_is_string(data) ||
        b64_decode(json_string_value(data), json_string_length(data), raw) < 0 ||
        !(u = kinesis_kpl_unpack(raw->data, raw->len))) {
        return NULL;
    }
    out = json_array();
    for (i = 0; out && i < kinesis_kpl_count(u); i++) {
        struct kinesis_kpl_record ur;
        json_t *o = json_object(), *v;
        const char *key;
        int bad = !o;

        kinesis_kpl_get(u, i, &ur);
        buf_reset(b64);
        bad |= b64_encode(ur.data, ur.data_len, b64) < 0;
        json_object_foreach((json_t *)r, key, v)
        {
            if (bad) {
                break;
            }
            if (strcmp(key, "Data") == 0) {
                bad |= json_object_set_new(o, key, json_stringn(buf_str(b64), b64->len)) < 0;
            } else if (strcmp(key, "PartitionKey") == 0) {
                /* json_string refuses text that is not UTF-8: a broken aggregate */
                bad |= json_object_set_new(o, key, json_string(ur.pk)) < 0;
                if (ur.ehk) {
                    bad |= json_object_set_new(o, "ExplicitHashKey", json_string(ur.ehk)) < 0;
                }
            } else if (strcmp(key, "SequenceNumber") == 0) {
                bad |= json_object_set(o, key, v) < 0;
                bad |= json_object_set_new(o, "SubSequenceNumber", json_integer((json_int_t)i)) < 0;
            } else if (strcmp(key, "ExplicitHashKey") != 0 &&
                       strcmp(key, "SubSequenceNumber") != 0) {
                bad |= json_object_set(o, key, v) < 0;
            }
        }
        if (bad) {
            json_decref(o);
            json_decref(out);
            out = NULL;
        } else if (json_array_append_new(out, o) < 0) {
            json_decref(out);
            out = NULL;
        }
    }
    kinesis_kpl_unpacked_free(u);
    return out;
}

/* records with every aggregated record replaced by its user records, in
 * order; plain records, and records with the magic but a wrong MD5 or a
 * broken protobuf, pass as they are (as the KCL does). NULL: out of
 * memory. */
static json_t *deaggregate(struct kinesis *k, const json_t *records)
{
    struct buf raw = BUF_INIT(BUF_DEFAULT_MAX), b64 = BUF_INIT(BUF_DEFAULT_MAX);
    json_t *out = json_array(), *r, *users;
    size_t i;

    json_array_foreach((json_t *)records, i, r)
    {
        if (!out) {
            break;
        }
        users = json_is_object(r) ? unpack_one(k, r, &raw, &b64) : NULL;
        if (users ? json_array_extend(out, users) < 0 : json_array_append(out, r) < 0) {
            json_decref(out);
            out = NULL;
        }
        json_decref(users);
    }
    buf_free(&raw);
    buf_free(&b64);
    return out;
}

/* The answer parsed, its timestamps in the reply's form first (jansson
 * would keep epoch seconds only as doubles). NULL: the reply's error set. */
static json_t *parse_timed(struct kinesis_call *c, const struct aws_response *r)
{
    struct aws_response rr = *r;
    struct buf text = BUF_INIT(BUF_DEFAULT_MAX);
    json_t *root;

    if (c->k->time_format == KINESIS_TIME_RFC3339 && kinesis_times_maybe(r->body, r->body_len) &&
        kinesis_times_rewrite(r->body, r->body_len, &text) >= 0) {
        rr.body = buf_str(&text);
        rr.body_len = text.len;
    }
    root = kinesis_parse_response(c, &rr);
    buf_free(&text);
    return root;
}

/* result ok, data = root as JSON text (with timestamp_format epoch its
 * ApproximateArrivalTimestamps are seconds with milliseconds). */
static void reply_json(struct kinesis_call *c, json_t *root)
{
    char *text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(15));

    if (!text || envelope_reply_meta_set(c->reply, "result", "ok") < 0 ||
        envelope_reply_set_data(c->reply, text, strlen(text)) < 0) {
        kinesis_call_error(c, "aws.kinesis: out of memory building the reply");
    }
    free(text);
}

/* Single-shard forms: the reply is GetRecords' answer as it is. */
static void single_records_done(struct kinesis_call *c, const struct aws_response *r)
{
    struct gr_state *s = c->state;
    json_t *root, *behind;
    const char *next;
    char num[32];

    if (kinesis_reply_aws_error(c, r)) {
        kinesis_call_finish(c);
        return;
    }
    root = s->deaggregate ? parse_timed(c, r) : kinesis_parse_response(c, r);
    if (root) {
        next = json_string_value(json_object_get(root, "NextShardIterator"));
        behind = json_object_get(root, "MillisBehindLatest");
        if (s->deaggregate) {
            json_t *users = deaggregate(c->k, json_object_get(root, "Records"));

            if (!users || json_object_set_new(root, "Records", users) < 0) {
                kinesis_call_error(c, "aws.kinesis: out of memory building the reply");
            } else {
                reply_json(c, root);
            }
        } else {
            kinesis_reply_ok(c, r->body, r->body_len);
        }
        if (next && envelope_reply_meta_set(c->reply, "next_shard_iterator", next) < 0) {
            kinesis_call_error(c, "aws.kinesis: out of memory building the reply");
        }
        if (json_is_integer(behind)) {
            snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(behind));
            if (envelope_reply_meta_set(c->reply, "millis_behind_latest", num) < 0) {
                kinesis_call_error(c, "aws.kinesis: out of memory building the reply");
            }
        }
        json_decref(root);
    }
    kinesis_call_finish(c);
}

/* The ShardIterator member of a GetShardIterator answer, or NULL (error set). */
static json_t *iterator_of(struct kinesis_call *c, const struct aws_response *r, const char **it)
{
    json_t *root;

    if (kinesis_reply_aws_error(c, r)) {
        return NULL;
    }
    root = kinesis_parse_response(c, r);
    *it = json_string_value(json_object_get(root, "ShardIterator"));
    if (root && !*it) {
        json_decref(root);
        kinesis_call_error(c, "InvalidResponse: GetShardIterator answered without ShardIterator");
        return NULL;
    }
    return root;
}

/* Stream-only form. */
static void multi_next_shard(struct kinesis_call *c);

static void multi_finish(struct kinesis_call *c)
{
    struct gr_state *s = c->state;
    json_t *data = json_object();
    char num[32];
    char *text;

    json_object_set(data, "Records", s->records);
    json_object_set_new(data, "MillisBehindLatest", json_integer(s->max_behind));
    json_object_set(data, "Shards", s->per_shard);
    /* With timestamp_format epoch, ApproximateArrivalTimestamp is epoch
     * seconds with milliseconds. */
    text = json_dumps(data, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(data);
    snprintf(num, sizeof(num), "%lld", (long long)s->max_behind);
    if (!text || envelope_reply_meta_set(c->reply, "result", "ok") < 0 ||
        envelope_reply_meta_set(c->reply, "millis_behind_latest", num) < 0 ||
        envelope_reply_set_data(c->reply, text, strlen(text)) < 0) {
        kinesis_call_error(c, "aws.kinesis: out of memory building the reply");
    }
    free(text);
    kinesis_call_finish(c);
}

static void multi_records_done(struct kinesis_call *c, const struct aws_response *r)
{
    struct gr_state *s = c->state;
    const char *shard = json_string_value(json_array_get(s->shards, s->shard_idx));
    json_t *root = NULL, *recs, *rec, *behind, *next, *entry;
    json_int_t b = 0;
    size_t i;

    if (kinesis_reply_aws_error(c, r)) {
        kinesis_call_finish(c);
        return;
    }
    if (!(root = parse_timed(c, r))) {
        kinesis_call_finish(c);
        return;
    }
    recs = json_object_get(root, "Records");
    if (s->deaggregate) {
        json_t *users = deaggregate(c->k, recs);

        if (!users || json_object_set_new(root, "Records", users) < 0) {
            json_decref(root);
            kinesis_call_fail(c, "aws.kinesis: out of memory building the reply");
            return;
        }
        recs = json_object_get(root, "Records");
    }
    behind = json_object_get(root, "MillisBehindLatest");
    next = json_object_get(root, "NextShardIterator");
    json_array_foreach(recs, i, rec)
    {
        if (json_is_object(rec)) {
            json_object_set_new(rec, "ShardId", json_string(shard));
            json_array_append(s->records, rec);
        }
    }
    if (json_is_integer(behind)) {
        b = json_integer_value(behind);
        if (b > s->max_behind) {
            s->max_behind = b;
        }
    }
    /* One entry per shard visited; a follow-up call replaces it. */
    entry = json_pack("{s:s,s:O,s:I}", "ShardId", shard, "NextShardIterator",
                      next ? next : json_null(), "MillisBehindLatest", b);
    if (s->calls_on_shard > 1) {
        json_array_set_new(s->per_shard, json_array_size(s->per_shard) - 1, entry);
    } else {
        json_array_append_new(s->per_shard, entry);
    }
    s->limit -= (long long)json_array_size(recs);
    if (s->limit > 0 && json_is_string(next) && b > 0 && s->calls_on_shard < GR_CALLS_PER_SHARD) {
        s->calls_on_shard++;
        records_body(c, json_string_value(next), s->limit);
        json_decref(root);
        kinesis_call_send(c, "GetRecords", multi_records_done);
        return;
    }
    json_decref(root);
    s->shard_idx++;
    multi_next_shard(c);
}

/* GetShardIterator answered (both stream forms): GetRecords from there. */
static void iterator_done(struct kinesis_call *c, const struct aws_response *r)
{
    struct gr_state *s = c->state;
    const char *it;
    json_t *root = iterator_of(c, r, &it);

    if (!root) {
        kinesis_call_finish(c);
        return;
    }
    s->calls_on_shard = 1;
    records_body(c, it, s->limit);
    json_decref(root);
    kinesis_call_send(c, "GetRecords", s->shards ? multi_records_done : single_records_done);
}

static void multi_next_shard(struct kinesis_call *c)
{
    struct gr_state *s = c->state;

    if (s->limit <= 0 || s->shard_idx >= json_array_size(s->shards)) {
        multi_finish(c);
        return;
    }
    iterator_body(c, s->stream, json_string_value(json_array_get(s->shards, s->shard_idx)), &s->it);
    kinesis_call_send(c, "GetShardIterator", iterator_done);
}

static void multi_shards_done(struct kinesis_call *c, const struct aws_response *r)
{
    struct gr_state *s = c->state;
    json_t *root = NULL, *shards, *sh;
    const char *token;
    size_t i;

    if (kinesis_reply_aws_error(c, r) || !(root = kinesis_parse_response(c, r))) {
        kinesis_call_finish(c);
        return;
    }
    shards = json_object_get(root, "Shards");
    json_array_foreach(shards, i, sh)
    {
        json_t *id = json_object_get(sh, "ShardId");
        if (json_is_string(id)) {
            json_array_append(s->shards, id);
        }
    }
    token = json_string_value(json_object_get(root, "NextToken"));
    if (token && json_array_size(shards) > 0) {
        kinesis_body_begin(c);
        kinesis_body_str(c, "NextToken", token);
        kinesis_body_end(c);
        json_decref(root);
        kinesis_call_send(c, "ListShards", multi_shards_done);
        return;
    }
    json_decref(root);
    multi_next_shard(c);
}

static int check_iterator(const char *key, const char *v, char *err, size_t errlen)
{
    size_t n = strlen(v);

    if (n < 1 || n > 512) {
        snprintf(err, errlen, "%s: must be 1 to 512 characters (a shard iterator), got %zu", key,
                 n);
        return -1;
    }
    return 0;
}

void kinesis_get_records(struct kinesis_call *c)
{
    const char *a = envelope_meta(c->req, "shard_iterator_id");
    const char *b = envelope_meta(c->req, "shard_iterator");
    const char *iterator, *shard;
    struct gr_state *s;

    s = calloc(1, sizeof(*s));
    if (!s) {
        kinesis_call_fail(c, "aws.kinesis: out of memory");
        return;
    }
    c->state = s;
    c->state_free = gr_free;
    s->limit = 1;
    if (a && b && strcmp(a, b) != 0) {
        kinesis_call_fail(c, "shard_iterator_id: conflicts with shard_iterator; they are two "
                             "spellings of one key");
        return;
    }
    if (kinesis_arg(c, a || !b ? "shard_iterator_id" : "shard_iterator", 0, check_iterator,
                    &iterator) < 0 ||
        kinesis_arg_int(c, "limit", 1, KINESIS_MAX_LIMIT, &s->limit, NULL) < 0 ||
        kinesis_arg_bool(c, "deaggregate", &s->deaggregate, NULL) < 0) {
        kinesis_call_finish(c);
        return;
    }
    if (iterator) {
        records_body(c, iterator, s->limit);
        kinesis_call_send(c, "GetRecords", single_records_done);
        return;
    }
    if (kinesis_arg_stream(c, 0, &s->stream) < 0 ||
        kinesis_arg(c, "shard_id", 0, kinesis_check_name, &shard) < 0 ||
        iterator_args(c, 0, &s->it) < 0) {
        kinesis_call_finish(c);
        return;
    }
    if (!s->stream) {
        kinesis_call_fail(c, "shard_iterator_id: is required for get_records (or stream_name, "
                             "with or without shard_id)");
        return;
    }
    if (shard) {
        iterator_body(c, s->stream, shard, &s->it);
        kinesis_call_send(c, "GetShardIterator", iterator_done);
        return;
    }
    if (s->it.seq) {
        kinesis_call_fail(c,
                          "shard_id: is required for get_records with shard_iterator_type %s "
                          "(a sequence number belongs to one shard)",
                          s->it.type);
        return;
    }
    s->shards = json_array();
    s->records = json_array();
    s->per_shard = json_array();
    if (!s->shards || !s->records || !s->per_shard) {
        kinesis_call_fail(c, "aws.kinesis: out of memory");
        return;
    }
    kinesis_body_begin(c);
    kinesis_body_str(c, "StreamName", s->stream);
    kinesis_body_end(c);
    kinesis_call_send(c, "ListShards", multi_shards_done);
}
