/* kinesis_put_records.c - put_records: parse the two data formats, split
 * into PutRecords calls of at most 500 records / 5 MiB, resend only the
 * entries that failed with a retryable code, report the rest per record.
 *
 * Batches go out one after the other (never in parallel) so records of
 * one partition key keep their order across batches. */
#include "base/b64.h"
#include "base/jflat.h"
#include "base/log.h"
#include "kinesis/kinesis_answer.h"
#include "kinesis/kinesis_internal.h"
#include "kinesis/kinesis_validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pr_entry {
    const char *key; /* partition key (points into root) */
    size_t key_len;
    const char *b64; /* the record, base64 as given */
    size_t b64_len;
    const char *hash; /* explicit hash key or NULL */
    size_t size;      /* partition key + decoded data bytes */
    json_t *result;   /* this entry's PutRecords result, NULL until sent */
    int ok;           /* result is a success (kinesis_answer.h's rule) */
};

struct pr_state {
    json_t *root; /* the parsed request data */
    const char *stream;
    struct pr_entry *e;
    size_t n;
    size_t batch_start, batch_end; /* current batch [start, end) */
    size_t *pending;               /* entries of the current attempt */
    size_t npending;
    struct kinesis_entry *read; /* the current answer's entries */
    int attempt;
    size_t written;
    json_t *encryption; /* EncryptionType of the first answer */
};

static void pr_free(void *p)
{
    struct pr_state *s = p;
    size_t i;

    for (i = 0; i < s->n; i++) {
        json_decref(s->e[i].result);
    }
    free(s->e);
    free(s->pending);
    free(s->read);
    json_decref(s->encryption);
    json_decref(s->root);
    free(s);
}

static size_t b64_decoded_len(const char *s, size_t n)
{
    size_t len = n / 4 * 3;

    if (n >= 1 && s[n - 1] == '=') {
        len--;
    }
    if (n >= 2 && s[n - 2] == '=') {
        len--;
    }
    return len;
}

/* Name of entry i in messages: data[3] (array) or data["key"] (object). */
static void entry_name(const struct pr_state *s, int is_array, size_t i, char *dst, size_t n)
{
    if (is_array) {
        snprintf(dst, n, "data[%zu]", i);
    } else {
        snprintf(dst, n, "data[\"%.*s\"]", s->e[i].key_len > 64 ? 64 : (int)s->e[i].key_len,
                 s->e[i].key);
    }
}

static int check_entry(struct kinesis_call *c, struct pr_state *s, int is_array, size_t i)
{
    struct pr_entry *e = &s->e[i];
    char name[96], key[128], err[512];

    entry_name(s, is_array, i, name, sizeof(name));
    snprintf(key, sizeof(key), "%s%s", name, is_array ? ".partition_key" : " partition key");
    if (kinesis_check_partition_keyn(key, e->key, e->key_len, err, sizeof(err)) < 0) {
        kinesis_call_error(c, "%s", err);
        return -1;
    }
    if (!b64_is_valid(e->b64, e->b64_len)) {
        kinesis_call_error(c, "%s%s: record data is not valid base64 (standard alphabet, padded)",
                           name, is_array ? ".data" : "");
        return -1;
    }
    e->size = e->key_len + b64_decoded_len(e->b64, e->b64_len);
    if (e->size > KINESIS_MAX_RECORD) {
        kinesis_call_error(c,
                           "%s: a record must be at most 1048576 bytes (data plus partition key), "
                           "got %zu",
                           name, e->size);
        return -1;
    }
    if (e->hash) {
        snprintf(key, sizeof(key), "%s.explicit_hash_key", name);
        if (kinesis_check_hash_key(key, e->hash, err, sizeof(err)) < 0) {
            kinesis_call_error(c, "%s", err);
            return -1;
        }
    }
    return 0;
}

static int parse_array_entry(struct kinesis_call *c, struct pr_state *s, size_t i, json_t *v)
{
    struct pr_entry *e = &s->e[i];
    const char *k;
    json_t *m;

    if (!json_is_object(v)) {
        kinesis_call_error(c,
                           "data[%zu]: must be an object {\"partition_key\":\"...\",\"data\":\""
                           "<base64>\"}",
                           i);
        return -1;
    }
    json_object_foreach(v, k, m)
    {
        if (strcmp(k, "partition_key") == 0 && json_is_string(m)) {
            e->key = json_string_value(m);
            e->key_len = json_string_length(m);
        } else if (strcmp(k, "data") == 0 && json_is_string(m)) {
            e->b64 = json_string_value(m);
            e->b64_len = json_string_length(m);
        } else if (strcmp(k, "explicit_hash_key") == 0 && json_is_string(m)) {
            e->hash = json_string_value(m);
        } else if (strcmp(k, "partition_key") == 0 || strcmp(k, "data") == 0 ||
                   strcmp(k, "explicit_hash_key") == 0) {
            kinesis_call_error(c, "data[%zu].%s: must be a string", i, k);
            return -1;
        } else {
            kinesis_call_error(c,
                               "data[%zu]: unknown field \"%.64s\" (fields: partition_key, data, "
                               "explicit_hash_key)",
                               i, k);
            return -1;
        }
    }
    if (!e->key) {
        kinesis_call_error(c, "data[%zu].partition_key: is required", i);
        return -1;
    }
    if (!e->b64) {
        kinesis_call_error(c, "data[%zu].data: is required (the record, base64)", i);
        return -1;
    }
    return 0;
}

static int key_span_cmp(const void *a, const void *b)
{
    const struct pr_entry *x = *(const struct pr_entry *const *)a;
    const struct pr_entry *y = *(const struct pr_entry *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int r = memcmp(x->key, y->key, n);

    return r ? r : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* Entries read in place from the usual data: an array of
 * {"partition_key":"..","data":".."} or an object {"key":"<b64>",...},
 * plain strings only (jflat.h). Returns 1 with s->e and s->n set, 0 when
 * the full parser must read it (s untouched; it also words every error),
 * -1 out of memory (reply error set). The entries point into req->data,
 * which outlives the call. */
static int parse_records_fast(struct kinesis_call *c, struct pr_state *s, int *is_array)
{
    const struct envelope_request *req = c->req;
    const char *p = req->data.data, *end = p + req->data.len, *after;
    struct jflat_member m[4], *mm = NULL;
    struct pr_entry *e = NULL, **sorted = NULL;
    size_t n = 0, cap = 0, i, quotes = 0;
    const char *q;
    int cnt, more, rc = 0;

    if (!p) {
        return 0;
    }
    p = jflat_skip_ws(p, end);
    if (p < end && *p == '[') {
        *is_array = 1;
        for (p++;;) {
            const struct jflat_member *k, *d;

            cnt = jflat_scan_at(p, end, m, 4, &after);
            k = cnt > 0 ? jflat_get(m, cnt, "partition_key") : NULL;
            d = cnt > 0 ? jflat_get(m, cnt, "data") : NULL;
            if (!k || !d || k->null || d->null || cnt != 2) {
                goto out; /* hash keys, unknown fields, errors: the full parser */
            }
            if (n == cap) {
                struct pr_entry *ne = realloc(e, (cap = cap ? cap * 2 : 64) * sizeof(*e));

                if (!ne) {
                    rc = -1;
                    goto out;
                }
                e = ne;
            }
            memset(&e[n], 0, sizeof(e[n]));
            e[n].key = k->v;
            e[n].key_len = k->vn;
            e[n].b64 = d->v;
            e[n].b64_len = d->vn;
            n++;
            p = after;
            if ((more = jflat_array_next(&p, end)) == 0) {
                break;
            }
            if (more < 0) {
                goto out;
            }
        }
        if (jflat_skip_ws(p, end) != end) {
            goto out;
        }
    } else if (p < end && *p == '{') {
        *is_array = 0;
        for (q = p; (q = memchr(q, '"', (size_t)(end - q))) != NULL; q++) {
            quotes++;
        }
        cap = quotes / 4 + 1;
        mm = malloc(cap * sizeof(*mm));
        e = calloc(cap, sizeof(*e));
        if (!mm || !e) {
            rc = -1;
            goto out;
        }
        cnt = jflat_scan(p, (size_t)(end - p), mm, cap);
        if (cnt <= 0) {
            goto out;
        }
        for (i = 0; i < (size_t)cnt; i++) {
            if (mm[i].null) {
                goto out;
            }
            e[i].key = mm[i].k;
            e[i].key_len = mm[i].kn;
            e[i].b64 = mm[i].v;
            e[i].b64_len = mm[i].vn;
        }
        n = (size_t)cnt;
        /* A repeated key is one member to a JSON object: the full parser
         * decides which value and place it keeps. */
        sorted = malloc(n * sizeof(*sorted));
        if (!sorted) {
            rc = -1;
            goto out;
        }
        for (i = 0; i < n; i++) {
            sorted[i] = &e[i];
        }
        qsort(sorted, n, sizeof(*sorted), key_span_cmp);
        for (i = 1; i < n; i++) {
            if (key_span_cmp(&sorted[i - 1], &sorted[i]) == 0) {
                goto out;
            }
        }
    } else {
        goto out;
    }
    if (n == 0) {
        goto out;
    }
    s->e = e;
    s->n = n;
    e = NULL;
    rc = 1;
out:
    if (rc < 0) {
        kinesis_call_error(c, "aws.kinesis: out of memory");
    }
    free(e);
    free(mm);
    free(sorted);
    return rc;
}

static int parse_records(struct kinesis_call *c, struct pr_state *s)
{
    const struct envelope_request *req = c->req;
    json_error_t jerr;
    size_t i = 0;
    int is_array, fast;

    fast = parse_records_fast(c, s, &is_array);
    if (fast < 0) {
        return -1;
    }
    if (fast > 0) {
        s->pending = calloc(s->n < KINESIS_MAX_BATCH_RECORDS ? s->n : KINESIS_MAX_BATCH_RECORDS,
                            sizeof(*s->pending));
        s->read = calloc(s->n < KINESIS_MAX_BATCH_RECORDS ? s->n : KINESIS_MAX_BATCH_RECORDS,
                         sizeof(*s->read));
        if (!s->pending || !s->read) {
            kinesis_call_error(c, "aws.kinesis: out of memory");
            return -1;
        }
        for (i = 0; i < s->n; i++) {
            if (check_entry(c, s, is_array, i) < 0) {
                return -1;
            }
        }
        return 0;
    }

    s->root = json_loadb(req->data.data ? req->data.data : "", req->data.len, 0, &jerr);
    if (!json_is_object(s->root) && !json_is_array(s->root)) {
        kinesis_call_error(c,
                           "data: put_records needs a JSON object {\"<partition key>\": "
                           "\"<base64 record>\", ...} or an array [{\"partition_key\": \"...\", "
                           "\"data\": \"<base64>\"}, ...]%s%s",
                           s->root ? "" : "; not JSON: ", s->root ? "" : jerr.text);
        return -1;
    }
    is_array = json_is_array(s->root);
    s->n = is_array ? json_array_size(s->root) : json_object_size(s->root);
    if (s->n == 0) {
        kinesis_call_error(c, "data: put_records needs at least one record");
        return -1;
    }
    s->e = calloc(s->n, sizeof(*s->e));
    s->pending = calloc(s->n < KINESIS_MAX_BATCH_RECORDS ? s->n : KINESIS_MAX_BATCH_RECORDS,
                        sizeof(*s->pending));
    s->read = calloc(s->n < KINESIS_MAX_BATCH_RECORDS ? s->n : KINESIS_MAX_BATCH_RECORDS,
                     sizeof(*s->read));
    if (!s->e || !s->pending || !s->read) {
        kinesis_call_error(c, "aws.kinesis: out of memory");
        return -1;
    }
    if (is_array) {
        json_t *v;
        json_array_foreach(s->root, i, v)
        {
            if (parse_array_entry(c, s, i, v) < 0 || check_entry(c, s, 1, i) < 0) {
                return -1;
            }
        }
    } else {
        const char *k;
        json_t *v;
        json_object_foreach(s->root, k, v)
        {
            s->e[i].key = k;
            s->e[i].key_len = strlen(k);
            if (!json_is_string(v)) {
                char name[96];
                entry_name(s, 0, i, name, sizeof(name));
                kinesis_call_error(c, "%s: must be a base64 string (the record)", name);
                return -1;
            }
            s->e[i].b64 = json_string_value(v);
            s->e[i].b64_len = json_string_length(v);
            if (check_entry(c, s, 0, i) < 0) {
                return -1;
            }
            i++;
        }
    }
    return 0;
}

static void pr_send(void *arg);
static void pr_done(struct kinesis_call *c, const struct aws_response *r);

static void pr_next_batch(struct kinesis_call *c)
{
    struct pr_state *s = c->state;
    size_t bytes = 0, i = s->batch_start;

    s->npending = 0;
    while (i < s->n && s->npending < KINESIS_MAX_BATCH_RECORDS &&
           bytes + s->e[i].size <= KINESIS_MAX_BATCH_BYTES) {
        bytes += s->e[i].size;
        s->pending[s->npending++] = i++;
    }
    s->batch_end = i;
    s->attempt = 1;
    pr_send(c);
}

static void pr_send(void *arg)
{
    struct kinesis_call *c = arg;
    struct pr_state *s = c->state;
    struct buf *b = &c->body;
    size_t i;

    kinesis_body_begin(c);
    kinesis_body_str(c, "StreamName", s->stream);
    kinesis_body_raw(c, "Records", "[");
    for (i = 0; i < s->npending; i++) {
        const struct pr_entry *e = &s->e[s->pending[i]];
        c->body_err |= buf_append_str(b, i ? ",{\"Data\":\"" : "{\"Data\":\"") < 0;
        c->body_err |= buf_append(b, e->b64, e->b64_len) < 0;
        c->body_err |= buf_append_str(b, "\",\"PartitionKey\":") < 0;
        c->body_err |= buf_append_json_str(b, e->key, e->key_len) < 0;
        if (e->hash) {
            c->body_err |= buf_append_str(b, ",\"ExplicitHashKey\":") < 0;
            c->body_err |= buf_append_json_str(b, e->hash, strlen(e->hash)) < 0;
        }
        c->body_err |= buf_append_char(b, '}') < 0;
    }
    c->body_err |= buf_append_char(b, ']') < 0;
    kinesis_body_end(c);
    kinesis_call_send(c, "PutRecords", pr_done);
}

static void pr_finish(struct kinesis_call *c)
{
    struct pr_state *s = c->state;
    json_t *data = json_object(), *records = json_array();
    char codes[512] = "", count[32];
    size_t i, failed = 0, clen = 0;
    char *text;

    if (!data || !records) {
        json_decref(data);
        json_decref(records);
        kinesis_call_fail(c, "aws.kinesis: out of memory building the reply");
        return;
    }
    for (i = 0; i < s->n; i++) {
        json_t *r = s->e[i].result;
        if (!s->e[i].ok) {
            const char *code = json_string_value(json_object_get(r, "ErrorCode"));
            failed++;
            code = code && *code ? code : "NotSent";
            if (!strstr(codes, code) && clen + strlen(code) + 3 < sizeof(codes)) {
                clen += (size_t)snprintf(codes + clen, sizeof(codes) - clen, "%s%s",
                                         clen ? ", " : "", code);
            }
        }
        json_array_append(records, r ? r : json_null());
    }
    json_object_set_new(data, "FailedRecordCount", json_integer((json_int_t)failed));
    json_object_set_new(data, "Records", records);
    if (s->encryption) {
        json_object_set(data, "EncryptionType", s->encryption);
    }
    text = json_dumps(data, JSON_COMPACT);
    json_decref(data);
    snprintf(count, sizeof(count), "%zu", failed);
    if (!text || envelope_reply_set_data(c->reply, text, strlen(text)) < 0 ||
        envelope_reply_meta_set(c->reply, "failed_record_count", count) < 0 ||
        (!failed && envelope_reply_meta_set(c->reply, "result", "ok") < 0)) {
        kinesis_call_error(c, "aws.kinesis: out of memory building the reply");
    } else if (failed) {
        kinesis_call_error(c, "put_records: %zu of %zu records failed (%s)", failed, s->n, codes);
    }
    free(text);
    kinesis_call_finish(c);
}

/* The whole PutRecords call failed: what is not written yet fails with it. */
static void pr_abort(struct kinesis_call *c, long status, const char *type, const char *msg)
{
    struct pr_state *s = c->state;
    size_t i;

    if (s->written == 0) {
        /* Nothing written yet, so a retry of the whole request is safe. */
        kinesis_reply_error_type(c, status, type);
        if (msg && *msg) {
            kinesis_call_fail(c, "%s: %s", type, msg);
        } else {
            kinesis_call_fail(c, "%s", type);
        }
        return;
    }
    for (i = s->batch_start; i < s->n; i++) {
        json_t *r;
        if (s->e[i].ok) {
            continue;
        }
        r = json_pack("{s:s,s:s}", "ErrorCode", type, "ErrorMessage", msg ? msg : "");
        json_decref(s->e[i].result);
        s->e[i].result = r;
    }
    pr_finish(c);
}

static int retryable(const char *code)
{
    return strcmp(code, "ProvisionedThroughputExceededException") == 0 ||
           strcmp(code, "InternalFailure") == 0;
}

static void pr_done(struct kinesis_call *c, const struct aws_response *r)
{
    struct pr_state *s = c->state;
    struct kinesis_answer a;
    json_t *root, *records;
    size_t i, again = 0, failed = 0;
    int can_retry = s->attempt < c->k->max_attempts && !c->k->stopping;

    if (r->error_type || r->status < 200 || r->status >= 300) {
        char status[64];
        snprintf(status, sizeof(status), "Kinesis answered with HTTP status %ld", r->status);
        pr_abort(c, r->status, r->error_type ? r->error_type : "HTTPError",
                 r->error_type ? r->error_message : status);
        return;
    }
    root = kinesis_parse_response(c, r);
    if (!root || kinesis_entries_json(root, s->read, s->npending, &a) < 0) {
        json_decref(root);
        pr_abort(c, r->status, "InvalidResponse",
                 "PutRecords answer does not hold one result per record sent");
        return;
    }
    records = json_object_get(root, "Records");
    if (a.encryption && !s->encryption) {
        s->encryption = json_incref(json_object_get(root, "EncryptionType"));
    }
    for (i = 0; i < s->npending; i++) {
        size_t idx = s->pending[i];
        const struct kinesis_entry *e = &s->read[i];
        json_t *res = json_array_get(records, i);

        json_decref(s->e[idx].result);
        s->e[idx].ok = e->ok;
        if (e->ok) {
            s->e[idx].result = json_incref(res);
            s->written++;
            kinesis_count_written(c->k, 1, 1, s->e[idx].size);
            continue;
        }
        failed++;
        if (!e->code) {
            /* Neither an error nor a sequence number: written or not, no
             * one can say, so it is not sent again. */
            s->e[idx].result =
                json_pack("{s:s,s:s}", "ErrorCode", "InvalidResponse", "ErrorMessage",
                          "the entry has neither an ErrorCode nor a SequenceNumber "
                          "and ShardId");
            continue;
        }
        s->e[idx].result = json_incref(res);
        if (can_retry && retryable(json_string_value(json_object_get(res, "ErrorCode")))) {
            s->pending[again++] = idx; /* again <= i: the list shrinks in place */
        }
    }
    if (a.failed_count >= 0 && (size_t)a.failed_count != failed) {
        log_debug(c->k->binding,
                  "PutRecords answered FailedRecordCount %lld but %zu of its %zu entries "
                  "failed; the entries count",
                  a.failed_count, failed, s->npending);
    }
    json_decref(root);
    if (again) {
        s->npending = again;
        loop_timer_start(c->k->loop, &c->timer, kinesis_backoff_ms(c->k, s->attempt), pr_send, c);
        s->attempt++;
        return;
    }
    s->batch_start = s->batch_end;
    if (s->batch_start < s->n) {
        pr_next_batch(c);
        return;
    }
    pr_finish(c);
}

void kinesis_put_records(struct kinesis_call *c)
{
    struct pr_state *s;

    s = calloc(1, sizeof(*s));
    if (!s) {
        kinesis_call_fail(c, "aws.kinesis: out of memory");
        return;
    }
    c->state = s;
    c->state_free = pr_free;
    if (kinesis_arg_stream(c, 1, &s->stream) < 0) {
        kinesis_call_finish(c);
        return;
    }
    if (!c->req->has_data) {
        kinesis_call_fail(c, "data: is required for put_records (a JSON object or array of "
                             "records)");
        return;
    }
    if (parse_records(c, s) < 0) {
        kinesis_call_finish(c);
        return;
    }
    pr_next_batch(c);
}
