/* middleware.c - a binding's middleware chain on the engine loop.
 *
 * One struct middleware_call per request walks the chain: metadata
 * defaults are merged on entry, then attempts run through the rate
 * limiter into the target until one succeeds, fails for good, or the
 * attempts run out; the finish step feeds metrics and the log and answers
 * the caller. Retry delays and rate-limit waits are loop timers, so
 * nothing ever sleeps. */
#include "binding/middleware.h"
#include "binding/middleware_internal.h"

#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct middleware_call {
    struct middleware *m;
    struct envelope_request *req;
    struct envelope_reply *reply;
    target_done_fn done;
    void *ctx;
    uint64_t start_us;
    int attempts;                        /* target calls made */
    int in_target;                       /* the target has it now */
    struct loop_timer timer;             /* retry delay */
    struct middleware_call *prev, *next; /* m->calls */
    struct middleware_call *qnext;       /* m->queue, FIFO */
};

struct middleware {
    struct loop *loop;
    char *binding;
    const struct target_kind *tk;
    void *target;
    const struct binding_metrics *mb;
    int log_level;
    int attempts; /* retry_attempts */
    int delay_type;
    long long delay_ms;
    long long jitter_ms;
    json_t *defaults;       /* metadata defaults; NULL = none */
    struct random_prng rng; /* retry jitter */

    int limited; /* rate_per_second > 0 */
    struct middleware_bucket bucket;
    struct middleware_call *queue_head, *queue_tail;
    struct loop_timer rate_timer;

    struct middleware_call *calls;
    size_t in_flight;
    int closing; /* destroyed while requests were still inside */
    int busy;    /* inside the rate timer's dispatch loop */
};

static void attempt(struct middleware_call *c);

static void middleware_free(struct middleware *m)
{
    loop_timer_stop(m->loop, &m->rate_timer);
    json_decref(m->defaults);
    free(m->binding);
    free(m);
}

static void maybe_free(struct middleware *m)
{
    if (m->closing && m->in_flight == 0 && !m->busy) {
        middleware_free(m);
    }
}

struct middleware *middleware_create(struct loop *loop, const struct middleware_options *o,
                                     const char *binding, const struct target_kind *tk,
                                     void *target_instance, const struct binding_metrics *mb,
                                     char *err, size_t errlen)
{
    struct middleware *m = NULL;
    json_error_t jerr;
    const char *k;
    json_t *v;

    if (!loop || !o || !binding || !tk || !tk->execute) {
        snprintf(err, errlen, "middleware: missing loop, options, binding or target");
        return NULL;
    }
    if (o->retry_attempts < 1 || o->retry_attempts > 1000000 || o->retry_delay_ms < 0 ||
        o->retry_max_jitter_ms < 0 || o->rate_per_second < 0) {
        snprintf(err, errlen, "binding %s: middleware: retry or rate option out of range", binding);
        return NULL;
    }
    m = calloc(1, sizeof(*m));
    if (!m || !(m->binding = strdup(binding))) {
        snprintf(err, errlen, "binding %s: middleware: out of memory", binding);
        goto fail;
    }
    m->loop = loop;
    m->tk = tk;
    m->target = target_instance;
    m->mb = mb;
    m->log_level = o->log_level;
    m->attempts = (int)o->retry_attempts;
    m->delay_type = o->retry_delay_type;
    m->delay_ms = o->retry_delay_ms;
    m->jitter_ms = o->retry_max_jitter_ms;
    random_prng_seed(&m->rng);
    m->limited = o->rate_per_second > 0;
    middleware_bucket_init(&m->bucket, o->rate_per_second, loop_now_us(loop));
    loop_timer_init(&m->rate_timer);
    if (o->metadata && *o->metadata) {
        m->defaults = json_loads(o->metadata, JSON_REJECT_DUPLICATES, &jerr);
        if (!m->defaults || !json_is_object(m->defaults)) {
            snprintf(err, errlen, "binding %s: metadata: must be a JSON object of string values",
                     binding);
            goto fail;
        }
        json_object_foreach(m->defaults, k, v)
        {
            if (!json_is_string(v)) {
                snprintf(err, errlen, "binding %s: metadata: value of \"%s\" must be a string",
                         binding, k);
                goto fail;
            }
        }
        if (json_object_size(m->defaults) == 0) {
            json_decref(m->defaults);
            m->defaults = NULL;
        }
    }
    return m;
fail:
    if (m) {
        middleware_free(m);
    }
    return NULL;
}

size_t middleware_in_flight(const struct middleware *m)
{
    return m ? m->in_flight : 0;
}

/* ---- finish: metrics, log, answer ------------------------------------ */

static void finish(struct middleware_call *c)
{
    struct middleware *m = c->m;
    struct envelope_reply *reply = c->reply;
    const struct binding_metrics *mb = m->mb;
    uint64_t elapsed = loop_now_us(m->loop) - c->start_us;
    target_done_fn done = c->done;
    void *ctx = c->ctx;

    loop_timer_stop(m->loop, &c->timer);
    if (reply->is_error && c->attempts > 1) {
        buf_appendf(&reply->error, " (after %d attempts)", c->attempts);
    }
    binding_metrics_report(mb, c->req->has_data ? c->req->data.len : 0, !reply->is_error,
                           reply->has_data ? reply->data.len : 0, reply->is_error);
    if (mb) {
        metrics_histogram_observe(mb->duration, (double)elapsed / 1e6);
        metrics_gauge_add(mb->in_flight, -1);
    }
    middleware_log_result(m->binding, m->log_level, c->req, reply, c->attempts, elapsed);

    if (c->prev) {
        c->prev->next = c->next;
    } else {
        m->calls = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    m->in_flight--;
    free(c);
    maybe_free(m);
    done(ctx);
}

/* ---- retry ----------------------------------------------------------- */

static void on_retry_timer(void *arg)
{
    attempt(arg);
}

static void on_target_done(void *arg)
{
    struct middleware_call *c = arg;
    struct middleware *m = c->m;
    uint64_t delay;

    c->in_target = 0;
    /* Per attempt: a retried attempt's AWS error counts too. */
    if (c->reply->is_error && c->reply->error_type[0]) {
        binding_metrics_aws_error(m->mb, c->reply->error_type);
    }
    if (!c->reply->is_error || !c->reply->retryable || c->attempts >= m->attempts || m->closing) {
        finish(c);
        return;
    }
    delay =
        middleware_retry_delay_ms(m->delay_type, m->delay_ms, m->jitter_ms, c->attempts, &m->rng);
    if (m->mb) {
        metrics_counter_add(m->mb->retries, 1);
    }
    middleware_log_retry(m->binding, m->log_level, c->req, c->reply, c->attempts, m->attempts,
                         delay);
    /* Even a zero delay goes through the loop: a target that completes
     * synchronously must not recurse once per attempt. */
    loop_timer_start(m->loop, &c->timer, delay, on_retry_timer, c);
}

static void call_target(struct middleware_call *c)
{
    struct middleware *m = c->m;

    if (c->attempts > 0) {
        envelope_reply_reset(c->reply);
    }
    c->attempts++;
    c->in_target = 1;
    m->tk->execute(m->target, c->req, c->reply, on_target_done, c);
}

/* ---- rate limit ------------------------------------------------------ */

static void on_rate_timer(void *arg);

static void arm_rate_timer(struct middleware *m, uint64_t wait_us)
{
    loop_timer_start(m->loop, &m->rate_timer, (wait_us + 999) / 1000, on_rate_timer, m);
}

static void on_rate_timer(void *arg)
{
    struct middleware *m = arg;
    struct middleware_call *c;
    uint64_t wait = 0;

    m->busy++;
    while (m->queue_head && !m->closing) {
        wait = middleware_bucket_take(&m->bucket, loop_now_us(m->loop));
        if (wait) {
            break;
        }
        c = m->queue_head;
        m->queue_head = c->qnext;
        if (!m->queue_head) {
            m->queue_tail = NULL;
        }
        c->qnext = NULL;
        call_target(c);
    }
    m->busy--;
    if (m->queue_head && !m->closing) {
        arm_rate_timer(m, wait);
    }
    maybe_free(m);
}

static void attempt(struct middleware_call *c)
{
    struct middleware *m = c->m;
    uint64_t wait;

    if (!m->limited) {
        call_target(c);
        return;
    }
    if (!m->queue_head) {
        wait = middleware_bucket_take(&m->bucket, loop_now_us(m->loop));
        if (!wait) {
            call_target(c);
            return;
        }
        arm_rate_timer(m, wait);
    }
    /* FIFO: behind everyone already waiting, even when a token is due. */
    if (m->queue_tail) {
        m->queue_tail->qnext = c;
    } else {
        m->queue_head = c;
    }
    m->queue_tail = c;
}

/* ---- entry ----------------------------------------------------------- */

/* The binding's metadata pairs fill what the request leaves absent or
 * empty; the caller's own values win. */
static int apply_defaults(const struct middleware *m, struct envelope_request *req)
{
    const char *k;
    json_t *v;

    if (!m->defaults) {
        return 0;
    }
    json_object_foreach(m->defaults, k, v)
    {
        if (!envelope_meta(req, k) && envelope_meta_set(req, k, json_string_value(v)) < 0) {
            return -1;
        }
    }
    return 0;
}

void middleware_execute(struct middleware *m, struct envelope_request *req,
                        struct envelope_reply *reply, target_done_fn done, void *ctx)
{
    struct middleware_call *c;

    if (m->closing) {
        envelope_reply_set_error(reply, "binding %s is stopping", m->binding);
        done(ctx);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c || apply_defaults(m, req) < 0) {
        free(c);
        envelope_reply_set_error(reply, "binding %s: out of memory", m->binding);
        binding_metrics_report(m->mb, req->has_data ? req->data.len : 0, 0, 0, 1);
        done(ctx);
        return;
    }
    c->m = m;
    c->req = req;
    c->reply = reply;
    c->done = done;
    c->ctx = ctx;
    c->start_us = loop_now_us(m->loop);
    loop_timer_init(&c->timer);
    c->next = m->calls;
    if (m->calls) {
        m->calls->prev = c;
    }
    m->calls = c;
    m->in_flight++;
    if (m->mb) {
        metrics_gauge_add(m->mb->in_flight, 1);
    }
    attempt(c);
}

/* ---- stop ------------------------------------------------------------ */

void middleware_destroy(struct middleware *m)
{
    struct middleware_call *c, *next;

    if (!m) {
        return;
    }
    m->closing = 1;
    loop_timer_stop(m->loop, &m->rate_timer);
    m->queue_head = m->queue_tail = NULL;
    if (m->in_flight) {
        log_error(m->binding, "middleware stopped with %zu request(s) in flight", m->in_flight);
    }
    m->busy++;
    for (c = m->calls; c; c = next) {
        next = c->next;
        if (c->in_target) {
            continue; /* answered when the target completes it */
        }
        /* A retry keeps the last attempt's error; a first attempt has none. */
        if (!c->reply->is_error) {
            envelope_reply_set_error(c->reply, "binding %s stopped before the request was sent",
                                     m->binding);
        }
        finish(c);
    }
    m->busy--;
    maybe_free(m);
}
