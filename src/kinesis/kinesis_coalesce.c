/* kinesis_coalesce.c - put_record coalescing: concurrent records for one
 * stream travel as one PutRecords call.
 *
 * With `coalesce: true`, a validated put_record joins the batch of its
 * stream instead of being sent. A batch is sent when it holds
 * coalesce_max_records records or would pass coalesce_max_bytes; when no
 * PutRecords call of its stream is in flight (on the next loop round, so
 * what arrived together goes together: a lone request waits for nothing);
 * when the stream's call in flight is answered; and at the latest
 * coalesce_linger_ms after its first record arrived. Under load records
 * gather while a call is out, so batches grow with the load by
 * themselves, like TCP corking. Every caller is
 * answered from its own entry of the PutRecords reply (shard id and
 * sequence number); an entry that failed is sent again alone, as the
 * PutRecord it would have been (with the AWS client's own retries), so a
 * caller sees the same outcome as without coalescing. A failure of the
 * whole call is every caller's error.
 *
 * A record sits in c->body as the complete PutRecord body; the batch takes
 * its members after StreamName, so nothing is encoded twice and the
 * resend needs no rebuilding. */
#include "base/log.h"
#include "kinesis/kinesis_answer.h"
#include "kinesis/kinesis_internal.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPARE_BATCHES  4
#define BATCH_SCAN_MAX 500 /* entry results on the stack: 36 KiB */

struct batch_entry {
    struct kinesis_call *c;
    size_t rec_off;
};

struct kinesis_batch {
    struct kinesis *k;
    struct kinesis_batch *next;
    void *pool_next; /* in k->batch_pool */
    char stream[129];
    struct batch_entry *e; /* k->coalesce_max_records of them */
    size_t n;
    size_t bytes;
    struct loop_timer linger;
    struct buf body;
};

static void batch_free(struct kinesis_batch *b)
{
    if (!b) {
        return;
    }
    buf_free(&b->body);
    free(b->e);
    free(b);
}

/* An answered batch: kept for the next one, or freed. */
static void batch_recycle(struct kinesis *k, struct kinesis_batch *b)
{
    if (k->stopping || b->body.cap > ((size_t)1 << 20) || pool_put(&k->batch_pool, b) < 0) {
        batch_free(b);
        return;
    }
    b->n = 0;
    b->bytes = 0;
    buf_reset(&b->body);
}

static struct kinesis_batch *batch_new(struct kinesis *k, const char *stream)
{
    struct kinesis_batch *b = pool_get(&k->batch_pool);

    if (!b) {
        b = calloc(1, sizeof(*b));
        if (!b || !(b->e = calloc(k->coalesce_max_records, sizeof(*b->e)))) {
            free(b);
            return NULL;
        }
        b->k = k;
        buf_init(&b->body, BUF_DEFAULT_MAX);
        loop_timer_init(&b->linger);
    }
    snprintf(b->stream, sizeof(b->stream), "%s", stream);
    b->next = k->batches;
    k->batches = b;
    return b;
}

static struct kinesis_batch *find(struct kinesis_batch *list, const char *stream)
{
    for (; list; list = list->next) {
        if (strcmp(list->stream, stream) == 0) {
            return list;
        }
    }
    return NULL;
}

static void remove_from(struct kinesis_batch **list, struct kinesis_batch *b)
{
    for (; *list; list = &(*list)->next) {
        if (*list == b) {
            *list = b->next;
            break;
        }
    }
    b->next = NULL;
}

static void batch_send(struct kinesis_batch *b);

/* Copy of a span as a C string, in dst (cap bytes); NULL when too long. */
static const char *span(char *dst, size_t cap, const char *p, size_t n)
{
    if (n >= cap) {
        return NULL;
    }
    memcpy(dst, p, n);
    dst[n] = '\0';
    return dst;
}

/* Answer each caller from its entry: its own reply when it was written,
 * sent again alone when it failed with an error code, an error when the
 * entry says neither. */
static void batch_answer(struct kinesis_batch *b, const struct kinesis_entry *res,
                         const struct kinesis_answer *a)
{
    char shard[256], seq[256], enc_buf[64];
    const char *enc =
        a->encryption ? span(enc_buf, sizeof(enc_buf), a->encryption, a->encryption_n) : NULL;
    size_t i, failed = 0;

    for (i = 0; i < b->n; i++) {
        struct kinesis_call *c = b->e[i].c;
        const char *sh, *sq;

        if (!res[i].ok) {
            failed++;
        }
        if (!res[i].ok && res[i].code) {
            /* Alone, as the PutRecord it was: its own retries and error. */
            kinesis_call_send(c, "PutRecord", kinesis_put_record_done);
            continue;
        }
        if (!res[i].ok || !(sh = span(shard, sizeof(shard), res[i].shard, res[i].shard_n)) ||
            !(sq = span(seq, sizeof(seq), res[i].seq, res[i].seq_n))) {
            /* Written or not, no one can say: not sent again. */
            kinesis_reply_error_type(c, 200, "InvalidResponse");
            kinesis_call_fail(c, "InvalidResponse: Kinesis answered this record's PutRecords "
                                 "entry with neither an ErrorCode nor a SequenceNumber and "
                                 "ShardId");
            continue;
        }
        kinesis_count_written(c->k, 1, 1, c->rec_size);
        if (kinesis_entry_reply(c, sh, sq, -1, enc) < 0) {
            kinesis_call_error(c, "aws.kinesis: out of memory building the reply");
        }
        kinesis_call_finish(c);
    }
    if (a->failed_count >= 0 && (size_t)a->failed_count != failed) {
        log_debug(b->k->binding,
                  "PutRecords answered FailedRecordCount %lld but %zu of its %zu entries "
                  "failed; the entries count",
                  a->failed_count, failed, b->n);
    }
}

static void batch_done(void *ctx, const struct aws_response *r)
{
    struct kinesis_batch *b = ctx;
    struct kinesis *k = b->k;
    struct kinesis_batch *next;
    struct kinesis_entry res[BATCH_SCAN_MAX];
    struct kinesis_answer a;
    json_t *root = NULL;
    size_t i;

    remove_from(&k->sending, b);
    /* What gathered while this call was out goes now. */
    next = k->stopping ? NULL : find(k->batches, b->stream);
    if (next && !find(k->sending, b->stream)) {
        batch_send(next);
    }

    if (!r->error_type && r->status >= 200 && r->status < 300 && b->n <= BATCH_SCAN_MAX) {
        /* The usual answer is read in place; anything else by jansson. */
        if (kinesis_entries_fast(r->body, r->body_len, res, b->n, &a) == 0 ||
            ((root = json_loadb(r->body ? r->body : "", r->body_len, 0, NULL)) != NULL &&
             kinesis_entries_json(root, res, b->n, &a) == 0)) {
            batch_answer(b, res, &a);
            json_decref(root);
            b->n = 0;
            batch_recycle(k, b);
            return;
        }
    }
    for (i = 0; i < b->n; i++) {
        struct kinesis_call *c = b->e[i].c;

        if (kinesis_reply_aws_error(c, r)) {
            kinesis_call_finish(c);
        } else {
            kinesis_reply_error_type(c, r->status, "InvalidResponse");
            kinesis_call_fail(c, "InvalidResponse: Kinesis answered PutRecords with a body that "
                                 "does not hold one result per record");
        }
    }
    json_decref(root);
    b->n = 0;
    batch_recycle(k, b);
}

/* {"StreamName":"s","Records":[{<record members>},...]} from the calls'
 * PutRecord bodies. */
static int batch_body(struct kinesis_batch *b)
{
    struct buf *o = &b->body;
    size_t i;

    buf_reset(o);
    if (buf_append_str(o, "{\"StreamName\":") < 0 ||
        buf_append_json_str(o, b->stream, strlen(b->stream)) < 0 ||
        buf_append_str(o, ",\"Records\":[") < 0) {
        return -1;
    }
    for (i = 0; i < b->n; i++) {
        const struct buf *cb = &b->e[i].c->body;
        size_t off = b->e[i].rec_off + 1; /* past the ',' */

        if ((i && buf_append_char(o, ',') < 0) || buf_append_char(o, '{') < 0 ||
            buf_append(o, cb->data + off, cb->len - off) < 0) {
            return -1;
        }
    }
    return buf_append_str(o, "]}");
}

static void batch_send(struct kinesis_batch *b)
{
    struct kinesis *k = b->k;
    size_t i;

    remove_from(&k->batches, b);
    if (loop_timer_armed(&b->linger)) {
        loop_timer_stop(k->loop, &b->linger);
    }
    if (b->n == 0) {
        batch_recycle(k, b);
        return;
    }
    if (k->stopping || !k->aws || batch_body(b) < 0 ||
        aws_client_call_ref(k->aws, "PutRecords", b->body.data, b->body.len, batch_done, b) < 0) {
        /* Not sent: answered here, never in k->sending. */
        for (i = 0; i < b->n; i++) {
            kinesis_call_fail(b->e[i].c, k->stopping ? "aws.kinesis: target stopped before the "
                                                       "request finished"
                                                     : "aws.kinesis: out of memory starting "
                                                       "PutRecords");
        }
        b->n = 0;
        batch_recycle(k, b);
        return;
    }
    b->next = k->sending;
    k->sending = b;
}

static void on_linger(void *arg)
{
    batch_send(arg);
}

int kinesis_coalesce_add(struct kinesis_call *c, const char *stream, size_t rec_off, size_t size)
{
    struct kinesis *k = c->k;
    struct kinesis_batch *b;

    if (strlen(stream) >= sizeof(b->stream) || k->stopping) {
        return -1;
    }
    b = find(k->batches, stream);
    if (b && b->bytes + size > k->coalesce_max_bytes) {
        batch_send(b);
        b = NULL;
    }
    if (!b) {
        b = batch_new(k, stream);
        if (!b) {
            return -1;
        }
    }
    b->e[b->n].c = c;
    b->e[b->n].rec_off = rec_off;
    b->n++;
    b->bytes += size;
    if (b->n >= k->coalesce_max_records || b->bytes >= k->coalesce_max_bytes) {
        batch_send(b);
    } else if (b->n == 1) {
        loop_timer_start(k->loop, &b->linger, find(k->sending, stream) ? k->coalesce_linger_ms : 0,
                         on_linger, b);
    }
    return 0;
}

void kinesis_coalesce_stop(struct kinesis *k)
{
    while (k->batches) {
        struct kinesis_batch *b = k->batches;

        k->batches = b->next;
        if (loop_timer_armed(&b->linger)) {
            loop_timer_stop(k->loop, &b->linger);
        }
        batch_free(b);
    }
}

void kinesis_coalesce_init(struct kinesis *k)
{
    pool_init(&k->batch_pool, SPARE_BATCHES, offsetof(struct kinesis_batch, pool_next));
}

void kinesis_coalesce_free(struct kinesis *k)
{
    struct kinesis_batch *b;

    kinesis_coalesce_stop(k);
    while ((b = pool_get(&k->batch_pool)) != NULL) {
        batch_free(b);
    }
}
