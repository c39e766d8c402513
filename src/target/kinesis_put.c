/* kinesis_put.c - put_record, and seed 001's put (random partition key). */
#include "base/jflat.h"
#include "target/kinesis_call.h"
#include "target/kinesis_validate.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Copy the string members `shard_id` and `sequence_number` to metadata. */
/* The usual answer, {"ShardId":"..","SequenceNumber":"..",...} of plain
 * strings, read in place. 0 when done, -1 to use the full parser. */
static int put_record_done_fast(struct kinesis_call *c, const struct aws_response *r)
{
    struct jflat_member m[8];
    const struct jflat_member *shard, *seq;
    char sh[256], sq[256];
    int n = jflat_scan(r->body, r->body_len, m, 8);

    if (n < 0 || !(shard = jflat_get(m, n, "ShardId")) ||
        !(seq = jflat_get(m, n, "SequenceNumber")) || shard->null || seq->null ||
        shard->vn >= sizeof(sh) || seq->vn >= sizeof(sq)) {
        return -1;
    }
    memcpy(sh, shard->v, shard->vn);
    sh[shard->vn] = '\0';
    memcpy(sq, seq->v, seq->vn);
    sq[seq->vn] = '\0';
    kinesis_reply_ok(c, r->body, r->body_len);
    if (envelope_reply_meta_set(c->reply, "shard_id", sh) < 0 ||
        envelope_reply_meta_set(c->reply, "sequence_number", sq) < 0) {
        kinesis_call_error(c, "aws.kinesis: out of memory building the reply");
    }
    return 0;
}

void kinesis_put_record_done(struct kinesis_call *c, const struct aws_response *r)
{
    json_t *root;
    const char *shard, *seq;

    if (kinesis_reply_aws_error(c, r)) {
        kinesis_call_finish(c);
        return;
    }
    if (put_record_done_fast(c, r) == 0) {
        kinesis_call_finish(c);
        return;
    }
    root = kinesis_parse_response(c, r);
    if (root) {
        shard = json_string_value(json_object_get(root, "ShardId"));
        seq = json_string_value(json_object_get(root, "SequenceNumber"));
        kinesis_reply_ok(c, r->body, r->body_len);
        if ((shard && envelope_reply_meta_set(c->reply, "shard_id", shard) < 0) ||
            (seq && envelope_reply_meta_set(c->reply, "sequence_number", seq) < 0)) {
            kinesis_call_error(c, "aws.kinesis: out of memory building the reply");
        }
        json_decref(root);
    }
    kinesis_call_finish(c);
}

static void random_key(char *out, size_t outlen)
{
    unsigned char raw[16];
    static const char hex[] = "0123456789abcdef";
    size_t i;

    if (getrandom(raw, sizeof(raw), GRND_NONBLOCK) != (ssize_t)sizeof(raw)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        memcpy(raw, &ts, sizeof(raw) < sizeof(ts) ? sizeof(raw) : sizeof(ts));
    }
    for (i = 0; i < sizeof(raw) && 2 * i + 2 < outlen; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * i] = '\0';
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
        random_key(generated, sizeof(generated));
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
    kinesis_body_begin(c);
    kinesis_body_str(c, "StreamName", stream);
    rec_off = c->body.len;
    kinesis_body_str(c, "PartitionKey", key);
    kinesis_body_data(c, "Data");
    if (hash) {
        kinesis_body_str(c, "ExplicitHashKey", hash);
    }
    if (seq) {
        kinesis_body_str(c, "SequenceNumberForOrdering", seq);
    }
    kinesis_body_end(c);
    /* SequenceNumberForOrdering exists only in PutRecord. */
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
