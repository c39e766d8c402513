/* kinesis_put.c - put_record, and the older connector style's put (random
 * partition key). */
#include "kinesis/kinesis_answer.h"

#include "base/random.h"
#include "kinesis/kinesis_internal.h"
#include "kinesis/kinesis_validate.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* shard_id and sequence_number (when the answer has them) into the
 * metadata, data = the answer. */
static void put_record_reply(struct kinesis_call *c, const struct aws_response *r,
                             const struct kinesis_entry *e)
{
    char sh[256], sq[256];

    kinesis_reply_ok(c, r->body, r->body_len);
    if (e->ok) {
        kinesis_count_written(c->k, 1, 1, c->rec_size);
    }
    if (e->shard && e->shard_n < sizeof(sh)) {
        memcpy(sh, e->shard, e->shard_n);
        sh[e->shard_n] = '\0';
        if (envelope_reply_meta_set(c->reply, "shard_id", sh) < 0) {
            kinesis_call_error(c, "aws.kinesis: out of memory building the reply");
        }
    }
    if (e->seq && e->seq_n < sizeof(sq)) {
        memcpy(sq, e->seq, e->seq_n);
        sq[e->seq_n] = '\0';
        if (envelope_reply_meta_set(c->reply, "sequence_number", sq) < 0) {
            kinesis_call_error(c, "aws.kinesis: out of memory building the reply");
        }
    }
}

void kinesis_put_record_done(struct kinesis_call *c, const struct aws_response *r)
{
    struct kinesis_entry e;
    json_t *root;

    if (kinesis_reply_aws_error(c, r)) {
        kinesis_call_finish(c);
        return;
    }
    /* The usual answer, plain strings, is read in place. */
    if (kinesis_entry_fast(r->body, r->body_len, &e) == 0) {
        put_record_reply(c, r, &e);
        kinesis_call_finish(c);
        return;
    }
    root = kinesis_parse_response(c, r);
    if (root) {
        kinesis_entry_from_json(root, &e);
        put_record_reply(c, r, &e);
        json_decref(root);
    }
    kinesis_call_finish(c);
}

int kinesis_put_body(struct kinesis_call *c, const char *stream, const char *key, const char *hash,
                     const char *seq, size_t *rec_off)
{
    kinesis_body_begin(c);
    kinesis_body_str(c, "StreamName", stream);
    *rec_off = c->body.len;
    kinesis_body_str(c, "PartitionKey", key);
    kinesis_body_data(c, "Data");
    if (hash) {
        kinesis_body_str(c, "ExplicitHashKey", hash);
    }
    if (seq) {
        kinesis_body_str(c, "SequenceNumberForOrdering", seq);
    }
    kinesis_body_end(c);
    return c->body_err ? -1 : 0;
}

static void put_common(struct kinesis_call *c, int key_optional)
{
    const struct envelope_request *req = c->req;
    const char *stream, *key, *hash, *seq;
    char generated[40];
    size_t size, rec_off;

    if (kinesis_arg_stream(c, 1, &stream) < 0 ||
        kinesis_arg(c, "partition_key", !key_optional, kinesis_check_partition_key, &key) < 0 ||
        kinesis_arg(c, "explicit_hash_key", 0, kinesis_check_hash_key, &hash) < 0 ||
        kinesis_arg(c, "sequence_number_for_ordering", 0, kinesis_check_sequence_number, &seq) <
            0) {
        kinesis_call_finish(c);
        return;
    }
    if (!req->has_data) {
        kinesis_call_fail(c,
                          "data: is required for %s (the record bytes, base64 in the "
                          "envelope's \"data\")",
                          c->m->name);
        return;
    }
    if (!key) {
        random_hex(generated, 16);
        key = generated;
    }
    size = req->data.len + strlen(key);
    if (size > KINESIS_MAX_RECORD) {
        kinesis_call_fail(c,
                          "data: a record must be at most 1048576 bytes (data plus partition "
                          "key), got %zu",
                          size);
        return;
    }
    c->rec_size = size;
    /* SequenceNumberForOrdering exists only in PutRecord. An aggregated
     * record needs no body of its own (it is built if it goes plain). */
    if (c->k->coalesce && c->k->aggregate && !seq &&
        kinesis_aggregate_add(c, stream, size, key, hash) == 0) {
        return;
    }
    kinesis_put_body(c, stream, key, hash, seq, &rec_off);
    if (c->k->coalesce && !seq && !c->body_err &&
        kinesis_coalesce_add(c, stream, rec_off, size) == 0) {
        return;
    }
    kinesis_call_send(c, "PutRecord", kinesis_put_record_done);
}

void kinesis_put_record(struct kinesis_call *c)
{
    put_common(c, 0);
}

void kinesis_put(struct kinesis_call *c)
{
    put_common(c, 1);
}
