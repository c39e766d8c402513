/* binding.c - one binding: source -> envelope -> middleware chain -> target -> reply. */
#include "binding/binding.h"

#include "base/log.h"
#include "base/pool.h"
#include "base/settings.h"
#include "binding/middleware.h"
#include "kinesis/target.h"
#include "message/envelope.h"
#include "source/source.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A reply travels in one KubeMQ message. */
#define REPLY_MAX ((size_t)100 << 20)

struct binding {
    char *name;
    struct loop *loop;
    const struct target_kind *tk;
    void *target;
    struct middleware *mw;
    const struct binding_metrics *mb;
    struct source *src;
    int raw; /* do_not_parse_payload */
    long long drain_ms;
    json_t *config; /* what binding_same_config compares */
    const char *source_kind;
    json_t *source_config; /* redacted, for /bindings */
    json_t *target_config;
    char started_line[800];

    int stopping;            /* no new API requests */
    int stopped;             /* target gone: answer at once */
    int api_jobs;            /* API requests inside */
    struct job *api_waiting; /* API requests not started yet */
    struct loop_defer api_defer;
    /* Finished jobs kept with their envelopes and buffers, so a steady
     * stream of requests allocates little here. */
    struct pool job_pool;
};

#define JOB_POOL     64
#define JOB_POOL_BUF ((size_t)64 << 10) /* bigger buffers are not kept */

/* A request on its way through the chain. */
struct job {
    struct binding *b;
    struct source_request *sr; /* KubeMQ request, or NULL */
    binding_reply_fn api_done; /* API request: its answer */
    void *api_ctx;
    char *api_payload; /* until it starts */
    size_t api_len;
    struct envelope_request req;
    struct envelope_reply reply;
    struct buf out;   /* the serialised reply */
    int ready;        /* req, reply and out are initialised */
    struct job *next; /* API requests waiting to start */
    void *pool_next;  /* in b->job_pool */
};

/* ---- the chain: middleware, then the target --------------------------- */

/* ---- requests ---------------------------------------------------------- */

static void job_free(struct job *j)
{
    struct binding *b = j->b;

    free(j->api_payload);
    j->api_payload = NULL;
    if (j->ready && !b->stopped && j->req.data.cap <= JOB_POOL_BUF &&
        j->req.data_b64.cap <= JOB_POOL_BUF && j->reply.data.cap <= JOB_POOL_BUF &&
        j->out.cap <= JOB_POOL_BUF && pool_put(&b->job_pool, j) == 0) {
        j->sr = NULL;
        j->api_done = NULL;
        j->api_ctx = NULL;
        return;
    }
    if (j->ready) {
        envelope_request_free(&j->req);
        envelope_reply_free(&j->reply);
        buf_free(&j->out);
    }
    free(j);
}

static struct job *job_get(struct binding *b)
{
    struct job *j = pool_get(&b->job_pool);

    if (j) {
        j->next = NULL;
        return j;
    }
    return calloc(1, sizeof(*j));
}

/* The reply goes back the way the request came. */
static void job_finish(struct job *j)
{
    struct binding *b = j->b;
    struct buf *outp = &j->out, out;

    buf_reset(outp);
    if (envelope_reply_serialize(&j->reply, outp) < 0) {
        log_error(b->name, "reply larger than %zu MiB; answered with an error", REPLY_MAX >> 20);
        buf_reset(outp);
        envelope_reply_reset(&j->reply);
        envelope_reply_set_error(&j->reply, "reply larger than %zu MiB", REPLY_MAX >> 20);
        envelope_reply_serialize(&j->reply, outp);
    }
    out = *outp;
    if (j->sr) {
        source_reply(j->sr, j->reply.is_error, buf_str(&j->reply.error), out.data, out.len);
    } else {
        b->api_jobs--;
        j->api_done(j->api_ctx, out.data ? out.data : "", out.len);
    }
    job_free(j);
}

static void job_done(void *ctx)
{
    job_finish(ctx);
}

static void job_start(struct job *j, const void *body, size_t len)
{
    struct binding *b = j->b;
    char err[512];

    if (!j->ready) {
        envelope_request_init(&j->req);
        envelope_reply_init(&j->reply);
        buf_init(&j->out, REPLY_MAX);
        j->ready = 1;
    } else {
        envelope_reply_reset(&j->reply);
    }
    if (b->stopped) {
        envelope_reply_set_error(&j->reply, "binding %s is stopping", b->name);
        job_finish(j);
        return;
    }
    if (envelope_request_parse(&j->req, body, len, b->raw, err, sizeof(err)) < 0) {
        /* Answered here, never dropped; counted like any failed request. */
        envelope_reply_set_error(&j->reply, "invalid request format, %s", err);
        binding_metrics_report(b->mb, len, 0, 0, 1);
        log_debug(b->name, "invalid request format, %s", err);
        job_finish(j);
        return;
    }
    middleware_execute(b->mw, &j->req, &j->reply, job_done, j);
}

/* A request the source took. */
static void on_source_request(void *ctx, struct source_request *sr)
{
    struct binding *b = ctx;
    struct job *j = job_get(b);

    if (!j) {
        log_error(b->name, "out of memory; request answered with an error");
        source_reply(sr, 1, "kubemq-kinesis: out of memory", NULL, 0);
        return;
    }
    j->b = b;
    j->sr = sr;
    job_start(j, sr->body, sr->len);
}

/* API requests start from a deferred call, so an answer never comes
 * inside binding_request(). */
static void api_start_all(void *arg)
{
    struct binding *b = arg;

    while (b->api_waiting) {
        struct job *j = b->api_waiting;

        b->api_waiting = j->next;
        j->next = NULL;
        job_start(j, j->api_payload, j->api_len);
        /* job_start copied what it needs (the envelope is parsed). */
    }
}

int binding_request(struct binding *b, const char *payload, size_t len, binding_reply_fn done,
                    void *ctx, char *err, size_t errlen)
{
    struct job *j, **tail;

    if (b->stopping) {
        snprintf(err, errlen, "binding %s is stopping", b->name);
        return -1;
    }
    j = calloc(1, sizeof(*j));
    if (!j || !(j->api_payload = malloc(len + 1))) {
        free(j);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(j->api_payload, payload, len);
    j->api_payload[len] = '\0';
    j->api_len = len;
    j->b = b;
    j->api_done = done;
    j->api_ctx = ctx;
    b->api_jobs++;
    for (tail = &b->api_waiting; *tail; tail = &(*tail)->next) {
    }
    *tail = j;
    loop_defer(b->loop, &b->api_defer, api_start_all, b);
    return 0;
}

/* ---- life ------------------------------------------------------------- */

static void create_chain(struct binding *b, const struct config_binding *cb,
                         struct metrics_registry *reg, struct errs *errs)
{
    char where[300], err[512];

    snprintf(where, sizeof(where), "binding %s: target", b->name);
    b->target = b->tk->create(b->loop, cb->target.props, b->name, where, errs);
    if (!b->target) {
        if (errs->count == 0) {
            errs_add(errs, "%s: could not start", where);
        }
        return;
    }
    if (b->tk->metrics && reg) {
        b->tk->metrics(b->target, reg);
    }
    b->mw = middleware_create(b->loop, &cb->middleware, b->name, b->tk, b->target, b->mb, err,
                              sizeof(err));
    if (!b->mw) {
        errs_add(errs, "binding %s: middleware: %s", b->name, err);
    }
}

/* What is still inside the chain is answered now, with an error. */
static void stop_chain(struct binding *b)
{
    b->stopped = 1;
    /* The chain first: what waits for a retry or a token is answered. */
    middleware_destroy(b->mw);
    b->mw = NULL;
    if (b->target) {
        /* Completes what is still inside: those replies go out now. */
        b->tk->destroy(b->target);
        b->target = NULL;
    }
}

static json_t *redacted(const struct settings_entry *table, const json_t *props)
{
    json_t *r = settings_redact(table, props);

    return r ? r : json_object();
}

static int build_descriptions(struct binding *b, const struct config_binding *cb)
{
    b->config =
        json_pack("{s:s, s:s, s:O, s:s, s:O, s:O}", "name", cb->name, "source_kind",
                  cb->source_kind->kind, "source", cb->source.props, "target_kind",
                  cb->target_kind->kind, "target", cb->target.props, "properties", cb->props);
    b->source_config = redacted(cb->source_kind->settings, cb->source.props);
    b->target_config = redacted(cb->target_kind->settings, cb->target.props);
    b->source_kind = cb->source_kind->kind;
    return b->config && b->source_config && b->target_config ? 0 : -1;
}

struct binding *binding_create(const struct config_binding *cb, struct loop *loop,
                               struct binding_metrics_set *metrics, struct source_seen *seen,
                               char *err, size_t errlen)
{
    struct binding *b = calloc(1, sizeof(*b));
    struct source_metrics sm;
    struct errs errs;
    char serr[512];
    const char *group;

    errs_init(&errs);
    if (!b || !(b->name = strdup(cb->name))) {
        snprintf(err, errlen, "binding %s: out of memory", cb->name);
        goto fail;
    }
    b->loop = loop;
    b->tk = cb->target_kind;
    b->raw = cb->source_opts.do_not_parse_payload;
    b->drain_ms = cb->source_opts.drain_timeout_seconds * 1000;
    b->mb =
        binding_metrics_register(metrics, cb->name, cb->source_kind->kind, cb->target_kind->kind);
    loop_defer_init(&b->api_defer);
    pool_init(&b->job_pool, JOB_POOL, offsetof(struct job, pool_next));

    create_chain(b, cb, binding_metrics_registry(metrics), &errs);
    if (!b->target || !b->mw) {
        errs_first(&errs, err, errlen);
        goto fail;
    }
    memset(&sm, 0, sizeof(sm));
    if (b->mb) {
        sm.pending = b->mb->source_pending;
        sm.dropped = b->mb->source_dropped;
        sm.rejected = b->mb->source_rejected;
        sm.expired = b->mb->source_expired;
        sm.received_sequence = b->mb->received_sequence;
        sm.checkpoint_sequence = b->mb->checkpoint_sequence;
    }
    b->src = source_create(cb->source_kind, &cb->source_opts, b->name, loop, on_source_request, b,
                           &sm, seen, serr, sizeof(serr));
    if (!b->src) {
        snprintf(err, errlen, "binding %s: source: %s", cb->name, serr);
        goto fail;
    }
    if (build_descriptions(b, cb) < 0) {
        snprintf(err, errlen, "binding %s: out of memory", cb->name);
        goto fail;
    }
    group = source_group(b->src);
    snprintf(b->started_line, sizeof(b->started_line), "source %s %s%s%s%s, target %s",
             cb->source_kind->kind, source_connection(b->src), *group ? " group '" : "", group,
             *group ? "'" : "", cb->target_kind->kind);
    log_info(b->name, "binding %s: started (%s)", b->name, b->started_line);
    errs_free(&errs);
    return b;
fail:
    errs_free(&errs);
    binding_destroy(b);
    return NULL;
}

void binding_destroy(struct binding *b)
{
    struct job *j;
    size_t left;

    if (!b) {
        return;
    }
    b->stopping = 1;
    if (b->src) {
        char why[300];

        snprintf(why, sizeof(why), "binding %s stopped before the request ran", b->name);
        source_abandon(b->src, why);
    }
    if (b->loop) {
        loop_defer_cancel(b->loop, &b->api_defer);
    }
    stop_chain(b);
    /* API requests not started yet: answered now (the chain is gone). */
    api_start_all(b);
    /* Everything taken was answered above, on this thread. */
    left = binding_pending(b);
    if (left > 0) {
        log_error(b->name, "binding %s: %zu requests unanswered at stop", b->name, left);
    }
    source_destroy(b->src);
    while ((j = pool_get(&b->job_pool)) != NULL) {
        envelope_request_free(&j->req);
        envelope_reply_free(&j->reply);
        buf_free(&j->out);
        free(j);
    }
    if (b->config) {
        log_info(b->name, "binding %s: stopped", b->name);
    }
    json_decref(b->config);
    json_decref(b->source_config);
    json_decref(b->target_config);
    free(b->name);
    free(b);
}

const char *binding_name(const struct binding *b)
{
    return b->name;
}

int binding_same_config(const struct binding *b, const struct config_binding *cb)
{
    json_t *other =
        json_pack("{s:s, s:s, s:O, s:s, s:O, s:O}", "name", cb->name, "source_kind",
                  cb->source_kind->kind, "source", cb->source.props, "target_kind",
                  cb->target_kind->kind, "target", cb->target.props, "properties", cb->props);
    int same = other && json_equal(b->config, other);

    json_decref(other);
    return same;
}

int binding_same_source(const struct binding *b, const struct config_binding *cb)
{
    const char *addr = cb->source_opts.address ? cb->source_opts.address : "";
    const char *chan = cb->source_opts.channel ? cb->source_opts.channel : "";
    const char *conn;
    size_t alen = strlen(addr);

    if (!b->src || strcmp(b->source_kind, cb->source_kind->kind) != 0) {
        return 0;
    }
    conn = source_connection(b->src); /* "address/channel" */
    return strncmp(conn, addr, alen) == 0 && conn[alen] == '/' &&
           strcmp(conn + alen + 1, chan) == 0;
}

int binding_ready(struct binding *b, struct buf *why)
{
    struct buf r = BUF_INIT(1024);
    int ok = 1;

    if (b->stopping) {
        buf_append_str(&r, "stopping");
        ok = 0;
    } else if (!b->src || !source_ready(b->src, &r)) {
        ok = 0;
    }
    if (!ok && why) {
        buf_appendf(why, "binding %s: %s", b->name, buf_str(&r));
    }
    buf_free(&r);
    return ok;
}

int binding_status_json(struct binding *b, struct buf *out)
{
    /* kubemq-targets' fields (source_type is its name for the kind). */
    json_t *o =
        json_pack("{s:s, s:b, s:s, s:s, s:s, s:O, s:s, s:O}", "binding", b->name, "ready",
                  binding_ready(b, NULL), "source_kind", b->source_kind, "source_type",
                  b->source_kind, "source_connection", source_connection(b->src), "source_config",
                  b->source_config, "target_kind", b->tk->kind, "target_config", b->target_config);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    int rc = text ? buf_append_str(out, text) : -1;

    free(text);
    json_decref(o);
    return rc;
}

void binding_share_seen(struct binding *b, struct source_seen *seen)
{
    if (b->src) {
        source_share_seen(b->src, seen);
    }
}

void binding_stop_intake(struct binding *b)
{
    b->stopping = 1;
    if (b->src) {
        source_close(b->src);
    }
}

size_t binding_pending(struct binding *b)
{
    return (b->src ? source_pending(b->src) : 0) + (size_t)b->api_jobs;
}

int binding_flushing(struct binding *b)
{
    return b->src ? source_flushing(b->src) : 0;
}

long long binding_drain_timeout_ms(const struct binding *b)
{
    return b->drain_ms;
}
