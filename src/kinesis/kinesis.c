/* kinesis.c - the aws.kinesis target: settings, lifecycle, method dispatch
 * and the helpers every method shares (metadata, request body, reply). */
#include "kinesis/kinesis.h"

#include "aws/aws_endpoint.h"
#include "base/b64.h"
#include "base/random.h"
#include "kinesis/kinesis_answer.h"
#include "kinesis/kinesis_internal.h"
#include "kinesis/kinesis_validate.h"

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Finished calls kept for reuse with their request buffers, so a steady
 * stream of put_record requests allocates nothing here. */
#define KINESIS_CALL_POOL      64 /* finished calls kept with their bodies */
#define KINESIS_CALL_POOL_BODY ((size_t)64 << 10)

struct kinesis_options {
    char *aws_key;
    char *aws_secret_key;
    char *region;
    char *token;
    char *endpoint;
    char *ca_file;
    long long connect_timeout_ms;
    long long request_timeout_ms;
    long long max_attempts;
    int http2;
    int coalesce;
    long long coalesce_max_records;
    long long coalesce_max_bytes;
    long long coalesce_linger_ms;
    int timestamp_format;
    int aggregate;
    long long aggregate_max_bytes;
    long long aggregate_max_records;
};

static const struct settings_entry kinesis_settings[] = {
    {"aws_key", SETTINGS_STRING, "", 0, 0, 0, NULL, offsetof(struct kinesis_options, aws_key), NULL,
     "AWS access key id; when empty, the standard AWS credential chain is used"},
    {"aws_secret_key", SETTINGS_STRING, "", SETTINGS_SECRET, 0, 0, NULL,
     offsetof(struct kinesis_options, aws_secret_key), NULL, "AWS secret access key"},
    {"region", SETTINGS_STRING, "", 0, 0, 0, NULL, offsetof(struct kinesis_options, region), NULL,
     "AWS region; default AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1"},
    {"token", SETTINGS_STRING, "", SETTINGS_SECRET, 0, 0, NULL,
     offsetof(struct kinesis_options, token), NULL, "AWS session token"},
    {"endpoint", SETTINGS_STRING, "", 0, 0, 0, NULL, offsetof(struct kinesis_options, endpoint),
     NULL, "endpoint URL override (else AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL)"},
    {"ca_file", SETTINGS_STRING, "", 0, 0, 0, NULL, offsetof(struct kinesis_options, ca_file), NULL,
     "PEM file of CA certificates to verify the endpoint with (default: AWS_CA_BUNDLE, else the "
     "system roots)"},
    {"connect_timeout_ms", SETTINGS_INT, "5000", 0, 1, 600000, NULL,
     offsetof(struct kinesis_options, connect_timeout_ms), NULL,
     "TCP+TLS connect timeout per attempt"},
    {"request_timeout_ms", SETTINGS_INT, "30000", 0, 1, 3600000, NULL,
     offsetof(struct kinesis_options, request_timeout_ms), NULL,
     "whole HTTP exchange timeout per attempt"},
    {"max_attempts", SETTINGS_INT, "3", 0, 1, 20, NULL,
     offsetof(struct kinesis_options, max_attempts), NULL,
     "attempts per AWS call (throttling, 5xx, transport errors) and per put_records entry"},
    {"http2", SETTINGS_BOOL, "false", 0, 0, 0, NULL, offsetof(struct kinesis_options, http2), NULL,
     "use HTTP/2 to the endpoint when it offers it (through libcurl; otherwise the daemon's own "
     "HTTP/1.1 client carries the calls)"},
    {"coalesce", SETTINGS_BOOL, "false", 0, 0, 0, NULL, offsetof(struct kinesis_options, coalesce),
     NULL,
     "send concurrent put_record requests for the same stream as one PutRecords call; each "
     "caller still gets its own record's reply"},
    {"coalesce_max_records", SETTINGS_INT, "500", 0, 1, 500, NULL,
     offsetof(struct kinesis_options, coalesce_max_records), NULL,
     "most records in one coalesced PutRecords call"},
    {"coalesce_max_bytes", SETTINGS_INT, "5242880", 0, 1, 5242880, NULL,
     offsetof(struct kinesis_options, coalesce_max_bytes), NULL,
     "most bytes (data plus partition keys) in one coalesced PutRecords call"},
    {"coalesce_linger_ms", SETTINGS_INT, "5", 0, 0, 10000, NULL,
     offsetof(struct kinesis_options, coalesce_linger_ms), NULL,
     "longest a record waits for others while a PutRecords call of its stream is in flight"},
    {"timestamp_format", SETTINGS_ENUM, "rfc3339", 0, 0, 0, "rfc3339|epoch",
     offsetof(struct kinesis_options, timestamp_format), NULL,
     "timestamps in reply data (ApproximateArrivalTimestamp, StreamCreationTimestamp, ...): "
     "rfc3339 as kubemq-targets' Go connector wrote them (`2026-12-07T02:13:15.51Z`, UTC), or "
     "epoch: the seconds Kinesis answered (`1796609595.51`)"},
    {"aggregate", SETTINGS_BOOL, "false", 0, 0, 0, NULL,
     offsetof(struct kinesis_options, aggregate), NULL,
     "pack coalesced put_record requests into KPL aggregated records, many user records per "
     "Kinesis record, each on the shard its partition key maps to (needs `coalesce: true`; "
     "consumers must deaggregate: the KCL does, and get_records with `deaggregate`)"},
    {"aggregate_max_bytes", SETTINGS_INT, "51200", 0, 64, 1048576, NULL,
     offsetof(struct kinesis_options, aggregate_max_bytes), NULL,
     "most bytes of one aggregated record as Kinesis counts them (its data, 20 bytes of format "
     "overhead included, plus its partition key); a user record too large to share goes alone"},
    {"aggregate_max_records", SETTINGS_INT, "1000", 0, 1, 100000, NULL,
     offsetof(struct kinesis_options, aggregate_max_records), NULL,
     "most user records in one aggregated record"},
    {NULL, 0, NULL, 0, 0, 0, NULL, 0, NULL, NULL},
};

static const char *const kinesis_aliases[] = {"target.aws.kinesis", NULL};
static const char *const kinesis_deprecated[] = {"target.aws.kenisis", NULL};

/* The order error messages and the documentation list them in. */
static const struct kinesis_method methods[] = {
    {"list_streams", kinesis_list_streams, 0},
    {"create_stream", kinesis_create_stream, 0},
    {"delete_stream", kinesis_delete_stream, 0},
    {"describe_stream", kinesis_describe_stream, 0},
    {"list_shards", kinesis_list_shards, 0},
    {"list_stream_consumers", kinesis_list_stream_consumers, 0},
    {"create_stream_consumer", kinesis_create_stream_consumer, 0},
    {"get_shard_iterator", kinesis_get_shard_iterator, 0},
    {"put_record", kinesis_put_record, 0},
    {"put_records", kinesis_put_records, 0},
    {"get_records", kinesis_get_records, 0},
    {"put", kinesis_put, 1},
    {"create", kinesis_create_stream, 1},
    {NULL, NULL, 0},
};

static char method_names[512];
static pthread_once_t method_names_once = PTHREAD_ONCE_INIT;

static void method_names_build(void)
{
    size_t i, len = 0;

    for (i = 0; methods[i].name && len < sizeof(method_names); i++) {
        len += (size_t)snprintf(method_names + len, sizeof(method_names) - len, "%s%s",
                                i ? ", " : "", methods[i].name);
    }
}

/* Built once: config checks (main thread) and requests (engine) ask. */
const char *kinesis_method_names(void)
{
    pthread_once(&method_names_once, method_names_build);
    return method_names;
}

/* ---------------------------------------------------------------- setup */

static int check_region(const char *r)
{
    size_t i, n = strlen(r);

    if (n < 1 || n > 64) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9') || r[i] == '-')) {
            return -1;
        }
    }
    return 0;
}

static const char *env_first(const char *a, const char *b)
{
    const char *v = getenv(a);

    if (v && *v) {
        return v;
    }
    v = b ? getenv(b) : NULL;
    return v && *v ? v : NULL;
}

void *kinesis_instance_create(struct loop *loop, const json_t *props, const char *binding,
                              const char *where, const struct aws_transport *transport,
                              struct errs *errs)
{
    struct kinesis_options o;
    struct aws_client_options ao;
    struct kinesis *k = NULL;
    const char *region, *endpoint;
    struct aws_endpoint ep;
    char err[512];
    int before = errs->count;

    memset(&o, 0, sizeof(o));
    settings_apply(kinesis_settings, props, &o, where, errs);
    if (errs->count != before) {
        goto fail;
    }
    region = *o.region ? o.region : env_first("AWS_REGION", "AWS_DEFAULT_REGION");
    if (!region) {
        region = "us-east-1";
    }
    if (check_region(region) < 0) {
        errs_add(errs, "%s: region: must be an AWS region name like us-east-1, got \"%s\"", where,
                 region);
    }
    /* Empty: the AWS client resolves AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL,
     * else the region's public endpoint. */
    endpoint = *o.endpoint ? o.endpoint : NULL;
    if (endpoint && aws_endpoint_parse(endpoint, &ep, err, sizeof(err)) < 0) {
        /* err names the URL without its user info, which may hold a secret. */
        errs_add(errs, "%s: endpoint: must be an http:// or https:// URL (%s)", where, err);
    }
    if (*o.aws_key && !*o.aws_secret_key) {
        errs_add(errs, "%s: aws_secret_key: is required when aws_key is set", where);
    }
    if (!*o.aws_key && *o.aws_secret_key) {
        errs_add(errs, "%s: aws_key: is required when aws_secret_key is set", where);
    }
    if (*o.ca_file && access(o.ca_file, R_OK) != 0) {
        errs_add(errs, "%s: ca_file: cannot read \"%s\"", where, o.ca_file);
    }
    if (o.aggregate && !o.coalesce) {
        errs_add(errs,
                 "%s: aggregate: needs coalesce: true (the records it packs are the concurrent "
                 "put_record requests coalescing gathers)",
                 where);
    }
    if (errs->count != before || !loop) {
        goto fail;
    }

    k = calloc(1, sizeof(*k));
    if (!k || !(k->binding = strdup(binding ? binding : ""))) {
        errs_add(errs, "%s: out of memory", where);
        goto fail;
    }
    k->loop = loop;
    k->max_attempts = (int)o.max_attempts;
    k->retry_base_ms = 100;
    k->retry_cap_ms = 5000;
    k->coalesce = o.coalesce;
    k->coalesce_max_records = (size_t)o.coalesce_max_records;
    k->coalesce_max_bytes = (size_t)o.coalesce_max_bytes;
    k->coalesce_linger_ms = (uint64_t)o.coalesce_linger_ms;
    k->time_format = o.timestamp_format;
    k->aggregate = o.aggregate;
    k->aggregate_max_bytes = (size_t)o.aggregate_max_bytes;
    k->aggregate_max_records = (size_t)o.aggregate_max_records;
    kinesis_kpl_init(&k->kpl);
    buf_init(&k->scratch, (size_t)64 << 10);
    random_prng_seed(&k->rng);
    pool_init(&k->call_pool, KINESIS_CALL_POOL, offsetof(struct kinesis_call, pool_next));
    kinesis_coalesce_init(k);
    kinesis_aggregate_init(k);

    memset(&ao, 0, sizeof(ao));
    ao.service = "kinesis";
    ao.target_prefix = "Kinesis_20131202";
    ao.region = region;
    ao.endpoint = endpoint;
    ao.access_key = *o.aws_key ? o.aws_key : NULL;
    ao.secret_key = *o.aws_secret_key ? o.aws_secret_key : NULL;
    ao.session_token = *o.token ? o.token : NULL;
    ao.ca_file = *o.ca_file ? o.ca_file : NULL;
    ao.connect_timeout_ms = (long)o.connect_timeout_ms;
    ao.request_timeout_ms = (long)o.request_timeout_ms;
    ao.max_attempts = (int)o.max_attempts;
    ao.http2 = o.http2;
    ao.transport = transport;
    ao.log_name = k->binding;
    k->aws = aws_client_create(loop, &ao, err, sizeof(err));
    if (!k->aws) {
        errs_add(errs, "%s: %s", where, err);
        goto fail;
    }
    settings_free(kinesis_settings, &o);
    return k;

fail:
    if (k) {
        free(k->binding);
        free(k);
    }
    settings_free(kinesis_settings, &o);
    return NULL;
}

static void *kinesis_create(struct loop *loop, const json_t *props, const char *binding,
                            const char *where, struct errs *errs)
{
    return kinesis_instance_create(loop, props, binding, where, NULL, errs);
}

static void kinesis_destroy(void *instance)
{
    struct kinesis *k = instance;
    struct kinesis_call *c;

    if (!k) {
        return;
    }
    k->stopping = 1;
    /* Batches and queues not yet sent let go of their calls (failed below). */
    kinesis_coalesce_stop(k);
    kinesis_aggregate_stop(k);
    /* Completes in-flight calls (TransportError); their steps cannot send
     * again while stopping. What is left waits on a backoff timer. */
    aws_client_destroy(k->aws);
    k->aws = NULL;
    while (k->calls) {
        kinesis_call_fail(k->calls, "aws.kinesis: target stopped before the request finished");
    }
    kinesis_coalesce_free(k);
    kinesis_aggregate_free(k);
    kinesis_kpl_free(&k->kpl);
    buf_free(&k->scratch);
    while ((c = pool_get(&k->call_pool)) != NULL) {
        buf_free(&c->body);
        free(c);
    }
    free(k->binding);
    free(k);
}

/* ------------------------------------------------------------ the calls */

static void call_free(struct kinesis_call *c)
{
    if (loop_timer_armed(&c->timer)) {
        loop_timer_stop(c->k->loop, &c->timer);
    }
    if (c->state_free && c->state) {
        c->state_free(c->state);
    }
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        c->k->calls = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    /* Kept with its body buffer for the next request, unless big. */
    if (!c->k->stopping && c->body.cap <= KINESIS_CALL_POOL_BODY &&
        pool_put(&c->k->call_pool, c) == 0) {
        return;
    }
    buf_free(&c->body);
    free(c);
}

void kinesis_call_finish(struct kinesis_call *c)
{
    target_done_fn done = c->done;
    void *ctx = c->ctx;

    call_free(c);
    done(ctx);
}

static void call_verror(struct kinesis_call *c, const char *fmt, va_list ap)
{
    char msg[1024];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    envelope_reply_set_error(c->reply, "%s", msg);
}

void kinesis_call_error(struct kinesis_call *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    call_verror(c, fmt, ap);
    va_end(ap);
}

void kinesis_call_fail(struct kinesis_call *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    call_verror(c, fmt, ap);
    va_end(ap);
    kinesis_call_finish(c);
}

static void on_aws_done(void *ctx, const struct aws_response *r)
{
    struct kinesis_call *c = ctx;

    c->step(c, r);
}

int kinesis_call_send(struct kinesis_call *c, const char *operation, kinesis_step_fn step)
{
    if (c->body_err) {
        kinesis_call_fail(c, "request: too large for one %s call", operation);
        return -1;
    }
    if (c->k->stopping || !c->k->aws) {
        kinesis_call_fail(c, "aws.kinesis: target stopped before the request finished");
        return -1;
    }
    c->step = step;
    /* c->body stays as it is until the step runs. */
    if (aws_client_call_ref(c->k->aws, operation, buf_str(&c->body), c->body.len, on_aws_done, c) <
        0) {
        kinesis_call_fail(c, "aws.kinesis: out of memory starting %s", operation);
        return -1;
    }
    return 0;
}

void kinesis_reply_error_type(struct kinesis_call *c, long status, const char *type)
{
    snprintf(c->reply->error_type, sizeof(c->reply->error_type), "%s", type);
    c->reply->retryable = aws_error_is_retryable(status, type);
}

int kinesis_reply_aws_error(struct kinesis_call *c, const struct aws_response *r)
{
    if (!r->error_type && r->status >= 200 && r->status < 300) {
        return 0;
    }
    if (!r->error_type) {
        kinesis_call_error(c, "HTTPError: Kinesis answered with HTTP status %ld", r->status);
    } else if (r->error_message && *r->error_message) {
        kinesis_call_error(c, "%s: %s", r->error_type, r->error_message);
    } else {
        kinesis_call_error(c, "%s", r->error_type);
    }
    kinesis_reply_error_type(c, r->status, r->error_type ? r->error_type : "HTTPError");
    return 1;
}

static int body_is_empty(const char *p, size_t n)
{
    size_t i, braces = 0, other = 0;

    for (i = 0; i < n; i++) {
        if (p[i] == '{' || p[i] == '}') {
            braces++;
        } else if (p[i] != ' ' && p[i] != '\n' && p[i] != '\r' && p[i] != '\t') {
            other++;
        }
    }
    return other == 0 && braces <= 2;
}

/* data = body, its timestamps in the configured form. */
static int reply_data(struct kinesis_call *c, const char *body, size_t len)
{
    struct envelope_reply *r = c->reply;

    if (c->k->time_format == KINESIS_TIME_RFC3339 && kinesis_times_maybe(body, len)) {
        buf_reset(&r->data);
        if (kinesis_times_rewrite(body, len, &r->data) >= 0) {
            r->has_data = 1;
            return 0;
        }
    }
    return envelope_reply_set_data(r, body, len);
}

void kinesis_reply_ok(struct kinesis_call *c, const char *body, size_t len)
{
    if (envelope_reply_meta_set(c->reply, "result", "ok") < 0 ||
        (!body_is_empty(body, len) && reply_data(c, body, len) < 0)) {
        kinesis_call_error(c, "aws.kinesis: out of memory building the reply");
    }
}

json_t *kinesis_parse_response(struct kinesis_call *c, const struct aws_response *r)
{
    json_error_t jerr;
    json_t *root = json_loadb(r->body ? r->body : "", r->body_len, 0, &jerr);

    if (!json_is_object(root)) {
        json_decref(root);
        kinesis_call_error(c, "InvalidResponse: Kinesis answered with a body that is not a JSON "
                              "object");
        kinesis_reply_error_type(c, r->status, "InvalidResponse");
        return NULL;
    }
    return root;
}

void kinesis_step_plain(struct kinesis_call *c, const struct aws_response *r)
{
    if (!kinesis_reply_aws_error(c, r)) {
        kinesis_reply_ok(c, r->body, r->body_len);
    }
    kinesis_call_finish(c);
}

/* Decimal text of v (>= 0) in out (24 bytes); the number the entry reply
 * writes for every aggregated record, without printf's cost. */
static const char *decimal(long long v, char *out)
{
    char *p = out + 23;

    *p = '\0';
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    return p;
}

int kinesis_entry_reply(struct kinesis_call *c, const char *shard, const char *seq, long long sub,
                        const char *encryption)
{
    struct buf *data = &c->k->scratch;
    char tmp[24];
    const char *num = sub >= 0 ? decimal(sub, tmp) : NULL;

    buf_reset(data);
    if (buf_append_str(data, "{\"ShardId\":") < 0 ||
        buf_append_json_str(data, shard, strlen(shard)) < 0 ||
        buf_append_str(data, ",\"SequenceNumber\":") < 0 ||
        buf_append_json_str(data, seq, strlen(seq)) < 0 ||
        (num &&
         (buf_append_str(data, ",\"SubSequenceNumber\":") < 0 || buf_append_str(data, num) < 0)) ||
        (encryption && (buf_append_str(data, ",\"EncryptionType\":") < 0 ||
                        buf_append_json_str(data, encryption, strlen(encryption)) < 0)) ||
        buf_append_char(data, '}') < 0) {
        return -1;
    }
    kinesis_reply_ok(c, data->data, data->len);
    if (envelope_reply_meta_set(c->reply, "shard_id", shard) < 0 ||
        envelope_reply_meta_set(c->reply, "sequence_number", seq) < 0 ||
        (num && envelope_reply_meta_set(c->reply, "sub_sequence_number", num) < 0)) {
        return -1;
    }
    return 0;
}

void kinesis_count_written(struct kinesis *k, size_t user, size_t records, size_t bytes)
{
    metrics_counter_add(k->m_user_records, user);
    metrics_counter_add(k->m_records, records);
    metrics_counter_add(k->m_bytes, bytes);
}

uint64_t kinesis_backoff_ms(struct kinesis *k, int attempt)
{
    return (uint64_t)aws_backoff_ms(attempt - 1, k->retry_base_ms, k->retry_cap_ms,
                                    random_prng_next(&k->rng));
}

/* ------------------------------------------------------------- metadata */

int kinesis_arg(struct kinesis_call *c, const char *key, int required, kinesis_check_fn check,
                const char **out)
{
    const char *v = envelope_meta(c->req, key);
    char err[512];

    *out = v;
    if (!v) {
        if (!required) {
            return 0;
        }
        if (c->method_defaulted) {
            kinesis_call_error(c,
                               "%s: is required for %s (the default method when \"method\" is "
                               "absent; valid methods: %s)",
                               key, c->m->name, kinesis_method_names());
        } else {
            kinesis_call_error(c, "%s: is required for %s", key, c->m->name);
        }
        return -1;
    }
    if (check && check(key, v, err, sizeof(err)) < 0) {
        kinesis_call_error(c, "%s", err);
        return -1;
    }
    return 0;
}

int kinesis_arg_stream(struct kinesis_call *c, int required, const char **out)
{
    const char *a = envelope_meta(c->req, "stream_name");
    const char *b = envelope_meta(c->req, "stream");
    const char *key = c->m->legacy ? "stream" : "stream_name";

    if (a && b && strcmp(a, b) != 0) {
        kinesis_call_error(c,
                           "stream_name: conflicts with stream (\"%.128s\" vs \"%.128s\"); they "
                           "are two spellings of one key",
                           a, b);
        return -1;
    }
    if (a || b) {
        key = a ? "stream_name" : "stream";
    }
    return kinesis_arg(c, key, required, kinesis_check_name, out);
}

int kinesis_arg_int(struct kinesis_call *c, const char *key, long long min, long long max,
                    long long *out, int *present)
{
    const char *v = envelope_meta(c->req, key);

    if (present) {
        *present = v != NULL;
    }
    if (!v) {
        return 0;
    }
    if (settings_parse_int(v, min, max, out) < 0) {
        kinesis_call_error(c, "%s: must be an integer from %lld to %lld, got \"%.64s\"", key, min,
                           max, v);
        return -1;
    }
    return 0;
}

int kinesis_arg_bool(struct kinesis_call *c, const char *key, int *out, int *present)
{
    const char *v = envelope_meta(c->req, key);

    if (present) {
        *present = v != NULL;
    }
    if (!v) {
        return 0;
    }
    if (settings_parse_bool(v, out) < 0) {
        kinesis_call_error(c, "%s: must be true or false, got \"%.64s\"", key, v);
        return -1;
    }
    return 0;
}

/* ----------------------------------------------------------------- body */

void kinesis_body_begin(struct kinesis_call *c)
{
    buf_reset(&c->body);
    c->body_err = buf_append_char(&c->body, '{') < 0;
}

static void body_key(struct kinesis_call *c, const char *name)
{
    if (c->body.len > 1) {
        c->body_err |= buf_append_char(&c->body, ',') < 0;
    }
    c->body_err |= buf_append_json_str(&c->body, name, strlen(name)) < 0;
    c->body_err |= buf_append_char(&c->body, ':') < 0;
}

void kinesis_body_strn(struct kinesis_call *c, const char *name, const char *v, size_t n)
{
    body_key(c, name);
    c->body_err |= buf_append_json_str(&c->body, v, n) < 0;
}

void kinesis_body_str(struct kinesis_call *c, const char *name, const char *v)
{
    kinesis_body_strn(c, name, v, strlen(v));
}

void kinesis_body_b64(struct kinesis_call *c, const char *name, const void *p, size_t n)
{
    body_key(c, name);
    c->body_err |= buf_append_char(&c->body, '"') < 0;
    c->body_err |= b64_encode(p, n, &c->body) < 0;
    c->body_err |= buf_append_char(&c->body, '"') < 0;
}

void kinesis_body_data(struct kinesis_call *c, const char *name)
{
    const struct envelope_request *req = c->req;

    /* Only the canonical spelling goes as it is: "QR==" is valid base64
     * for "A" but AWS need not accept it. */
    if (!req->data_b64.len || req->data_b64.len != b64_encoded_len(req->data.len) ||
        !b64_is_canonical(req->data_b64.data, req->data_b64.len)) {
        kinesis_body_b64(c, name, req->data.data ? req->data.data : "", req->data.len);
        return;
    }
    body_key(c, name);
    c->body_err |= buf_append_char(&c->body, '"') < 0;
    c->body_err |= buf_append(&c->body, req->data_b64.data, req->data_b64.len) < 0;
    c->body_err |= buf_append_char(&c->body, '"') < 0;
}

void kinesis_body_int(struct kinesis_call *c, const char *name, long long v)
{
    body_key(c, name);
    c->body_err |= buf_appendf(&c->body, "%lld", v) < 0;
}

void kinesis_body_raw(struct kinesis_call *c, const char *name, const char *v)
{
    body_key(c, name);
    c->body_err |= buf_append_str(&c->body, v) < 0;
}

void kinesis_body_end(struct kinesis_call *c)
{
    c->body_err |= buf_append_char(&c->body, '}') < 0;
}

/* ------------------------------------------------------------- dispatch */

static void kinesis_execute(void *instance, const struct envelope_request *req,
                            struct envelope_reply *reply, target_done_fn done, void *ctx)
{
    struct kinesis *k = instance;
    struct kinesis_call *c = pool_get(&k->call_pool);
    struct buf body;
    const char *name;
    size_t i;

    if (c) {
        body = c->body;
        memset(c, 0, sizeof(*c));
        c->body = body;
        buf_reset(&c->body);
    } else if ((c = calloc(1, sizeof(*c))) != NULL) {
        buf_init(&c->body, BUF_DEFAULT_MAX);
    } else {
        envelope_reply_set_error(reply, "aws.kinesis: out of memory");
        done(ctx);
        return;
    }
    c->k = k;
    c->req = req;
    c->reply = reply;
    c->done = done;
    c->ctx = ctx;
    loop_timer_init(&c->timer);
    c->next = k->calls;
    if (k->calls) {
        k->calls->prev = c;
    }
    k->calls = c;

    if (req->not_json) {
        kinesis_call_fail(c, "request: the body is not a JSON request envelope; send "
                             "{\"metadata\":{\"method\":\"...\",...},\"data\":...}");
        return;
    }
    name = envelope_meta(req, "method");
    if (!name) {
        name = "put";
        c->method_defaulted = 1;
    }
    for (i = 0; methods[i].name; i++) {
        if (strcmp(methods[i].name, name) == 0) {
            c->m = &methods[i];
            break;
        }
    }
    if (!c->m) {
        kinesis_call_fail(c, "method: unknown method \"%.64s\"; valid methods: %s", name,
                          kinesis_method_names());
        return;
    }
    if (k->stopping) {
        kinesis_call_fail(c, "aws.kinesis: target is stopping");
        return;
    }
    c->m->start(c);
}

/* The target's own series: what it wrote, so that the aggregation ratio
 * (user records per Kinesis record) can be graphed. */
/* One counter family of the target's, and this binding's series in it. */
static struct metrics_series *counter(struct metrics_registry *reg, const char *name,
                                      const char *help, const char *binding)
{
    static const char *const labels[] = {"binding", NULL};
    const char *values[] = {binding};

    return metrics_series_get(metrics_family_add(reg, METRICS_COUNTER, name, help, labels, NULL, 0),
                              values);
}

static void kinesis_metrics(void *instance, struct metrics_registry *reg)
{
    struct kinesis *k = instance;

    k->m_user_records =
        counter(reg, "kubemq_kinesis_user_records_total",
                "user records written to Kinesis (a put_record request, a put_records entry), "
                "per binding",
                k->binding);
    k->m_records = counter(
        reg, "kubemq_kinesis_stream_records_total",
        "Kinesis records written (an aggregated record counts once), per binding", k->binding);
    k->m_bytes = counter(reg, "kubemq_kinesis_bytes_out_total",
                         "bytes of the Kinesis records written, data plus partition keys as "
                         "Kinesis counts them, per binding",
                         k->binding);
}

const struct target_kind kinesis_target_kind = {
    .kind = "aws.kinesis",
    .aliases = kinesis_aliases,
    .deprecated = kinesis_deprecated,
    .settings = kinesis_settings,
    .create = kinesis_create,
    .destroy = kinesis_destroy,
    .execute = kinesis_execute,
    .metrics = kinesis_metrics,
};
