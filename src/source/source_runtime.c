/* source_runtime.c - what every source kind shares: its clients, the
 * concurrency bound, the FIFO of requests waiting for a slot, the way an
 * answer goes back, closing, abandoning and freeing.
 *
 * Requests run from a deferred call (loop_defer) at the end of the loop
 * round that took them, never inside the KubeMQ client's callback, so a
 * target that answers at once cannot recurse into the next request. */
#include "message/envelope.h"
#include "source/source.h"
#include "source/source_internal.h"

#include "base/log.h"
#include "base/random.h"
#include "kubemq/kubemq_client.h"
#include "source/source_seen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OVERFLOW_LOG_MS 1000

/* ---- requests ---------------------------------------------------------- */

struct source_request *source_request_new(struct source_conn *c)
{
    struct source *s = c->src;
    struct source_request *r = calloc(1, sizeof(*r));

    if (!r) {
        return NULL;
    }
    r->conn = c;
    r->taken_ms = loop_now_ms(s->loop);
    r->live_next = s->live;
    if (s->live) {
        s->live->live_prev = r;
    }
    s->live = r;
    return r;
}

static void request_free(struct source_request *r)
{
    struct source *s = r->conn->src;

    if (r->live_prev) {
        r->live_prev->live_next = r->live_next;
    } else {
        s->live = r->live_next;
    }
    if (r->live_next) {
        r->live_next->live_prev = r->live_prev;
    }
    kubemq_queue_txn_free(r->txn);
    kubemq_request_free(r->msg);
    free(r);
}

static void pump(void *arg);

void source_finish(struct source_request *r)
{
    struct source *s = r->conn->src;
    int running = r->running;

    request_free(r);
    if (running) {
        s->in_flight--;
        /* Waiting requests run, and the kinds may take more. */
        loop_defer(s->loop, &s->pump, pump, s);
    }
}

void source_run(struct source_request *r)
{
    struct source *s = r->conn->src;

    s->handler(s->ctx, r);
}

int source_take_slot(struct source *s)
{
    if (s->in_flight >= s->bound) {
        return -1;
    }
    s->in_flight++;
    return 0;
}

int source_has_room(const struct source *s)
{
    return s->fifo_len <= s->max_pending / 2 && s->fifo_bytes <= s->max_pending_bytes / 2;
}

static void fifo_push(struct source *s, struct source_request *r)
{
    r->next = NULL;
    if (s->fifo_tail) {
        s->fifo_tail->next = r;
    } else {
        s->fifo_head = r;
    }
    s->fifo_tail = r;
    s->fifo_len++;
    s->fifo_bytes += r->len;
    metrics_gauge_set(s->metrics.pending, (int64_t)s->fifo_len);
}

static struct source_request *fifo_pop(struct source *s)
{
    struct source_request *r = s->fifo_head;

    if (r) {
        s->fifo_head = r->next;
        if (!s->fifo_head) {
            s->fifo_tail = NULL;
        }
        r->next = NULL;
        s->fifo_len--;
        s->fifo_bytes -= r->len;
        metrics_gauge_set(s->metrics.pending, (int64_t)s->fifo_len);
    }
    return r;
}

int source_can_admit(const struct source *s, size_t len)
{
    /* A request that finds a free slot and nobody waiting always goes in,
     * whatever its size. */
    if (s->fifo_len == 0 && s->in_flight < s->bound) {
        return 1;
    }
    return s->fifo_len < s->max_pending && s->fifo_bytes + len <= s->max_pending_bytes;
}

int source_admit(struct source_conn *c, struct source_request *r)
{
    struct source *s = c->src;

    if (!source_can_admit(s, r->len)) {
        return -1;
    }
    fifo_push(s, r);
    loop_defer(s->loop, &s->pump, pump, s);
    return 0;
}

/* The sender of a query or command stops waiting after its timeout: one
 * that passed while it waited here is dropped unrun. */
static int expired(const struct source *s, const struct source_request *r)
{
    return r->msg && r->msg->timeout_ms > 0 &&
           loop_now_ms(s->loop) - r->taken_ms >= (uint64_t)r->msg->timeout_ms;
}

/* Deferred: run waiting requests in the free slots, then let the kinds
 * take more (queue pulls, a paused events-store stream). */
static void pump(void *arg)
{
    struct source *s = arg;
    struct source_request *r;
    size_t i;

    while (!s->abandoned && s->in_flight < s->bound && (r = fifo_pop(s))) {
        if (expired(s, r)) {
            metrics_counter_add(s->metrics.expired, 1);
            log_debug(s->binding,
                      "source: request %s dropped unrun: its timeout (%d ms) passed while it "
                      "waited for a slot",
                      r->msg->id, r->msg->timeout_ms);
            request_free(r);
            continue;
        }
        r->running = 1;
        s->in_flight++;
        source_run(r);
    }
    if (s->ops->room && !s->closing) {
        for (i = 0; i < s->n; i++) {
            s->ops->room(&s->conns[i]);
        }
    }
}

void source_note_overflow(struct source *s, struct metrics_series *counter, const char *what)
{
    uint64_t now = loop_now_ms(s->loop);

    metrics_counter_add(counter, 1);
    s->overflow_unlogged++;
    if (s->last_overflow_log_ms && now - s->last_overflow_log_ms < OVERFLOW_LOG_MS) {
        return;
    }
    log_warn(s->binding,
             "source: %llu %s: %zu requests wait for a slot already (max_pending %zu, "
             "max_pending_bytes %zu; concurrency %zu)",
             (unsigned long long)s->overflow_unlogged, what, s->fifo_len, s->max_pending,
             s->max_pending_bytes, s->bound);
    s->overflow_unlogged = 0;
    s->last_overflow_log_ms = now;
}

/* ---- answering --------------------------------------------------------- */

void source_reply(struct source_request *r, int is_error, const char *error_text, const void *body,
                  size_t len)
{
    struct source *s = r->conn->src;
    const char *err = is_error ? (error_text && *error_text ? error_text : "request failed") : NULL;

    s->ops->reply(r, is_error, err, body, len);
}

/* ---- life ---------------------------------------------------------------- */

static int make_client_id(const struct source_options *o, size_t i, size_t n, char *dst, size_t len)
{
    int w = n > 1 ? snprintf(dst, len, "%s-%zu", o->client_id, i)
                  : snprintf(dst, len, "%s", o->client_id);

    return w < 0 || (size_t)w >= len ? -1 : 0;
}

static char *dup_or_empty(const char *v)
{
    return strdup(v ? v : "");
}

static int open_conn(struct source *s, const struct source_options *o, struct source_conn *c,
                     char *err, size_t errlen)
{
    struct kubemq_client_opts co;
    char cid[600], cerr[512];

    if (make_client_id(o, c->index, s->n, cid, sizeof(cid)) < 0) {
        snprintf(err, errlen, "client_id too long");
        return -1;
    }
    kubemq_client_opts_init(&co);
    co.address = o->address;
    co.client_id = cid;
    co.auth_token = o->auth_token;
    co.tls = o->tls;
    co.ca_file = o->ca_file;
    co.cert_file = o->cert_file;
    co.key_file = o->key_file;
    co.auto_reconnect = o->auto_reconnect;
    co.reconnect_interval_seconds = (int)o->reconnect_interval_seconds;
    co.max_reconnects = (int)o->max_reconnects;
    co.log_name = s->binding;
    c->client = kubemq_client_create(s->loop, &co, cerr, sizeof(cerr));
    if (!c->client) {
        snprintf(err, errlen, "kubemq client %s: %s", cid, cerr);
        return -1;
    }
    if (s->ops->start(c, cerr, sizeof(cerr)) < 0) {
        snprintf(err, errlen, "subscribing to %s: %s", s->connection, cerr);
        return -1;
    }
    return 0;
}

struct source *source_create(const struct source_kind *k, const struct source_options *o,
                             const char *binding, struct loop *loop, source_handler_fn handler,
                             void *ctx, const struct source_metrics *metrics,
                             struct source_seen *seen, char *err, size_t errlen)
{
    struct source *s;
    char gen[64];
    size_t i;

    s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->kind = k;
    s->ops = k->ops;
    s->loop = loop;
    s->handler = handler;
    s->ctx = ctx;
    if (metrics) {
        s->metrics = *metrics;
    }
    loop_defer_init(&s->pump);
    s->batch_size = o->batch_size > 0 ? (int)o->batch_size : 1;
    s->wait_timeout = o->wait_timeout > 0 ? (int)o->wait_timeout : 5;
    s->visibility_seconds = o->visibility_seconds > 0 ? (int)o->visibility_seconds : 30;
    s->max_requeue = (int)o->max_requeue;
    s->store_start = o->start_position + 1; /* the table's order is KubeMQ's */
    s->store_value = o->start_value;
    s->bound = o->concurrency > 0 ? (size_t)o->concurrency : 1;
    s->max_pending = o->max_pending > 0 ? (size_t)o->max_pending : 0;
    s->max_pending_bytes = o->max_pending_bytes > 0 ? (size_t)o->max_pending_bytes : 0;
    s->n = o->sources > 0 ? (size_t)o->sources : 1;
    snprintf(s->connection, sizeof(s->connection), "%s/%s", o->address, o->channel);
    s->binding = strdup(binding);
    s->channel = strdup(o->channel);
    s->response_channel = dup_or_empty(o->response_channel);
    s->dead_letter_queue = dup_or_empty(o->dead_letter_queue);
    if (!s->binding || !s->channel || !s->response_channel || !s->dead_letter_queue) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    /* Queues have no groups; several connections without a group share
     * the load among themselves, as kubemq-targets does. */
    if (!s->ops->subscribes || !o->group) {
        s->group = strdup("");
    } else if (o->group[0] == '\0' && s->n > 1) {
        random_uuid(gen);
        s->group = strdup(gen);
    } else {
        s->group = strdup(o->group);
    }
    s->broadcast = s->ops->subscribes && (!o->group || !o->group[0]);
    s->conns = calloc(s->n, sizeof(*s->conns));
    if (!s->group || !s->conns) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (i = 0; i < s->n; i++) {
        struct source_conn *c = &s->conns[i];

        c->src = s;
        c->index = i;
        loop_timer_init(&c->retry);
        loop_defer_init(&c->refill);
    }
    if (s->ops->init && s->ops->init(s, o, err, errlen) < 0) {
        goto fail;
    }
    if (seen) {
        source_share_seen(s, seen); /* before any subscription delivers */
    }
    for (i = 0; i < s->n; i++) {
        if (open_conn(s, o, &s->conns[i], err, errlen) < 0) {
            goto fail;
        }
    }
    return s;
fail:
    source_destroy(s);
    return NULL;
}

int source_ready(struct source *s, struct buf *why)
{
    size_t i;

    for (i = 0; i < s->n; i++) {
        if (s->ops->ready(&s->conns[i])) {
            continue;
        }
        if (why) {
            if (s->n > 1) {
                buf_appendf(why, "source %s not subscribed (connection %zu of %zu)", s->connection,
                            i + 1, s->n);
            } else {
                buf_appendf(why, "source %s not subscribed", s->connection);
            }
        }
        return 0;
    }
    return 1;
}

void source_share_seen(struct source *s, struct source_seen *seen)
{
    if (!s->ops->subscribes) {
        return; /* a queue message goes to one receiver anyway */
    }
    if (seen) {
        source_seen_ref(seen);
    }
    source_seen_unref(s->seen);
    s->seen = seen;
    if (s->ops->share) {
        s->ops->share(s, seen);
    }
}

void source_close(struct source *s)
{
    size_t i;

    if (s->closing) {
        return;
    }
    s->closing = 1;
    for (i = 0; i < s->n; i++) {
        s->ops->close(&s->conns[i]);
    }
}

size_t source_pending(const struct source *s)
{
    return s->in_flight + s->fifo_len;
}

int source_flushing(const struct source *s)
{
    return s->ops->flushing ? s->ops->flushing(s) : 0;
}

void source_abandon(struct source *s, const char *why)
{
    struct buf env = BUF_INIT(2048);
    struct source_request *r;

    source_close(s);
    s->abandoned = 1;
    if (!s->abandon_why) {
        s->abandon_why = strdup(why);
    }
    envelope_error_serialize(why, &env);
    /* Taken but never run: answered, never dropped silently. */
    while ((r = fifo_pop(s))) {
        s->ops->reply(r, 1, why, env.data, env.len);
    }
    buf_free(&env);
}

int source_intake_refused(struct source_conn *c, struct kubemq_request *msg,
                          source_answer_fn answer)
{
    struct source *s = c->src;

    /* A late copy: the source was abandoned by a reload, on a channel
     * without a group, and its successor got its own. A duplicate: the
     * binding's other source took this id first and answers it. Checked
     * before the abandon, so an abandoned source never answers what its
     * successor runs (a sender takes the first answer). */
    if ((s->seen && s->abandoned && s->broadcast) ||
        (s->seen && !source_seen_first(s->seen, msg->id))) {
        kubemq_request_free(msg);
        return 1;
    }
    if (s->abandoned) {
        answer(c, msg, s->abandon_why ? s->abandon_why : "binding stopped");
        kubemq_request_free(msg);
        return 1;
    }
    return 0;
}

void source_destroy(struct source *s)
{
    size_t i;

    if (!s) {
        return;
    }
    if (s->conns) {
        for (i = 0; i < s->n; i++) {
            if (s->conns[i].client && !s->closing) {
                s->ops->close(&s->conns[i]);
            }
        }
        s->closing = 1;
        if (s->ops->fini) {
            s->ops->fini(s); /* before the clients and requests go */
        }
        /* Whatever is left (queue messages unsettled, requests never run)
         * goes back to the broker with its client. */
        while (s->live) {
            request_free(s->live);
        }
        for (i = 0; i < s->n; i++) {
            struct source_conn *c = &s->conns[i];

            loop_timer_stop(s->loop, &c->retry);
            loop_defer_cancel(s->loop, &c->refill);
            kubemq_subscription_close(c->sub);
            c->sub = NULL;
            kubemq_client_destroy(c->client); /* lingers until its writes are out */
            c->client = NULL;
        }
    }
    if (s->loop) {
        loop_defer_cancel(s->loop, &s->pump);
    }
    free(s->conns);
    free(s->binding);
    free(s->group);
    free(s->channel);
    free(s->response_channel);
    free(s->dead_letter_queue);
    free(s->abandon_why);
    source_seen_unref(s->seen);
    free(s);
}

const char *source_connection(const struct source *s)
{
    return s->connection;
}

const char *source_group(const struct source *s)
{
    return s->group;
}
