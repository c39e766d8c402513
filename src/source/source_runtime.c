/* source_runtime.c - KubeMQ subscriptions (queries, commands, events) with a concurrency bound. */
#include "source/source_runtime.h"

#include "base/log.h"
#include "kubemq/kubemq_client.h"
#include "source/source_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static int uuid4(char *dst, size_t n)
{
    unsigned char r[16];

    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        return -1;
    }
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(dst, n, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
             r[14], r[15]);
    return 0;
}

int source_error_envelope(const char *text, struct buf *out)
{
    /* The reply envelope, as the target's errors look. */
    if (buf_append_str(out, "{\"metadata\":{},\"data\":null,\"is_error\":true,\"error\":") < 0 ||
        buf_append_json_str(out, text, strlen(text)) < 0 || buf_append_char(out, '}') < 0) {
        return -1;
    }
    return 0;
}

static int is_events(const struct source *s)
{
    return s->type == KUBEMQ_EVENTS || s->type == KUBEMQ_EVENTS_STORE;
}

/* Events have no requester: the reply goes to the response channel, if any. */
static void publish(struct source_conn *c, const void *body, size_t len)
{
    struct source *s = c->src;

    if (*s->response_channel) {
        kubemq_send_event(c->client, s->type == KUBEMQ_EVENTS_STORE, s->response_channel, body, len,
                          NULL);
    }
}

/* An answer that does not come from the target: stopping, out of memory. */
static void answer_error(struct source *s, struct source_conn *c, struct kubemq_request *msg,
                         const char *text)
{
    struct buf b = BUF_INIT(2048);
    int ok = source_error_envelope(text, &b) == 0;

    if (is_events(s)) {
        log_warn(s->binding, "source: event on channel '%s' not processed: %s", msg->channel, text);
        if (ok) {
            publish(c, b.data, b.len);
        }
    } else if (s->type == KUBEMQ_QUERY && ok) {
        kubemq_send_response(c->client, msg, 0, text, b.data, b.len, NULL);
    } else {
        kubemq_send_response(c->client, msg, 0, text, NULL, 0, NULL);
    }
    buf_free(&b);
    kubemq_request_free(msg);
}

void source_run_handler(void *arg)
{
    struct source_request *r = arg;
    struct source *s = r->conn->src;

    s->handler(s->ctx, r);
}

/* A taken request (its slot already counted) to the engine. */
static void dispatch(struct source_conn *c, struct kubemq_request *msg)
{
    struct source *s = c->src;
    struct source_request *r = calloc(1, sizeof(*r));

    if (r) {
        r->body = msg->body;
        r->len = msg->body_len;
        r->msg = msg;
        r->conn = c;
        if (loop_post(s->loop, source_run_handler, r) == 0) {
            return;
        }
        free(r);
    }
    log_error(s->binding, "source: out of memory taking a request; answered with an error");
    answer_error(s, c, msg, "kubemq-kinesis: out of memory");
    source_release_slot(s);
}

/* The client's thread. */
static int on_request(void *ctx, struct kubemq_request *msg)
{
    struct source_conn *c = ctx;
    struct source *s = c->src;
    int full;

    pthread_mutex_lock(&s->mu);
    if (s->seen && s->abandoned && s->broadcast) {
        /* A late copy for the replaced source of a reload: on a channel
         * without a group its successor got its own, and runs it. */
        c->paused = 1;
        pthread_mutex_unlock(&s->mu);
        kubemq_request_free(msg);
        return 1;
    }
    if (s->seen && !source_seen_first(s->seen, msg->id)) {
        /* The binding's other source (a reload) has this one: it answers. */
        pthread_mutex_unlock(&s->mu);
        kubemq_request_free(msg);
        return 0;
    }
    if (s->abandoned) {
        char why[300];

        snprintf(why, sizeof(why), "%s", s->abandon_why ? s->abandon_why : "binding stopped");
        c->paused = 1;
        pthread_mutex_unlock(&s->mu);
        answer_error(s, c, msg, why);
        return 1;
    }
    if (s->in_flight >= s->bound) {
        /* Was on its way when the bound was reached: held here, one per
         * connection, as this subscription now pauses. */
        if (c->parked) { /* cannot happen: a paused subscription delivers nothing more */
            pthread_mutex_unlock(&s->mu);
            log_error(s->binding, "source: request over the concurrency bound refused");
            answer_error(s, c, msg, "kubemq-kinesis: too many requests in flight");
            return 1;
        }
        c->parked = msg;
        c->paused = 1;
        s->parked++;
        pthread_mutex_unlock(&s->mu);
        return 1;
    }
    s->in_flight++;
    full = s->in_flight >= s->bound;
    if (full) {
        c->paused = 1;
    }
    pthread_mutex_unlock(&s->mu);
    dispatch(c, msg);
    return full;
}

/* A slot is free: run a parked request in it, or let the paused
 * subscriptions receive again. */
void source_release_slot(struct source *s)
{
    struct source_conn *next = NULL;
    struct kubemq_request *msg = NULL;
    size_t i;

    pthread_mutex_lock(&s->mu);
    if (s->parked > 0 && !s->abandoned) {
        for (i = 0; i < s->n; i++) {
            struct source_conn *c = &s->conns[(s->rr + i) % s->n];
            if (c->parked) {
                next = c;
                msg = c->parked;
                c->parked = NULL;
                s->parked--;
                s->rr = (s->rr + i + 1) % s->n;
                break;
            }
        }
    }
    if (!next) {
        s->in_flight--;
        pthread_cond_broadcast(&s->cv);
        if (!s->closing && !s->abandoned && s->in_flight < s->bound) {
            /* Under mu: the client never calls us holding its own lock. */
            for (i = 0; i < s->n; i++) {
                struct source_conn *c = &s->conns[i];
                if (c->paused && !c->parked) {
                    c->paused = 0;
                    kubemq_subscription_resume(c->sub);
                }
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (next) {
        dispatch(next, msg);
    }
}

void source_reply(struct source_request *r, int is_error, const char *error_text, const void *body,
                  size_t len)
{
    struct source_conn *c = r->conn;
    struct source *s = c->src;
    const char *err = is_error ? (error_text && *error_text ? error_text : "request failed") : NULL;

    if (r->qw) {
        source_queue_reply(r, is_error, err, body, len);
        return;
    }
    if (is_events(s)) {
        publish(c, body, len);
    } else if (s->type == KUBEMQ_QUERY) {
        kubemq_send_response(c->client, r->msg, !is_error, err, body, len, NULL);
    } else {
        kubemq_send_response(c->client, r->msg, !is_error, err, NULL, 0, NULL);
    }
    kubemq_request_free(r->msg);
    free(r);
    source_release_slot(s);
}

static int make_client_id(const struct source_options *o, size_t i, size_t n, char *dst, size_t len)
{
    int w = n > 1 ? snprintf(dst, len, "%s-%zu", o->client_id, i)
                  : snprintf(dst, len, "%s", o->client_id);

    return w < 0 || (size_t)w >= len ? -1 : 0;
}

struct source *source_create(const struct source_kind *k, const struct source_options *o,
                             const char *binding, struct loop *loop, source_handler_fn handler,
                             void *ctx, struct source_seen *seen, char *err, size_t errlen)
{
    struct source *s;
    struct kubemq_client_opts co;
    char cid[600], gen[64], cerr[512];
    size_t i;

    s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (strcmp(k->kind, "kubemq.command") == 0) {
        s->type = KUBEMQ_COMMAND;
    } else if (strcmp(k->kind, "kubemq.events") == 0) {
        s->type = KUBEMQ_EVENTS;
    } else if (strcmp(k->kind, "kubemq.events-store") == 0) {
        s->type = KUBEMQ_EVENTS_STORE;
    } else if (strcmp(k->kind, "kubemq.queue") == 0) {
        s->queue = 1;
    } else {
        s->type = KUBEMQ_QUERY;
    }
    s->batch_size = o->batch_size > 0 ? (int)o->batch_size : 1;
    s->wait_timeout = o->wait_timeout > 0 ? (int)o->wait_timeout : 5;
    s->visibility_seconds = o->visibility_seconds > 0 ? (int)o->visibility_seconds : 30;
    s->max_requeue = (int)o->max_requeue;
    s->loop = loop;
    s->handler = handler;
    s->ctx = ctx;
    if (seen) {
        source_share_seen(s, seen); /* before any subscription delivers */
    }
    s->bound = o->concurrency > 0 ? (size_t)o->concurrency : 1;
    s->n = o->sources > 0 ? (size_t)o->sources : 1;
    snprintf(s->connection, sizeof(s->connection), "%s/%s", o->address, o->channel);
    s->binding = strdup(binding);
    s->channel = strdup(o->channel);
    s->response_channel = strdup(o->response_channel ? o->response_channel : "");
    s->dead_letter_queue = strdup(o->dead_letter_queue ? o->dead_letter_queue : "");
    if (!s->channel || !s->response_channel || !s->dead_letter_queue) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->broadcast = !s->queue && (!o->group || !o->group[0]);
    if (s->queue || !o->group) {
        s->group = strdup(""); /* queues have no groups */
    } else if (o->group[0] == '\0' && s->n > 1) {
        /* As the reference: the connections share the load among themselves. */
        if (uuid4(gen, sizeof(gen)) < 0) {
            snprintf(err, errlen, "no random bytes for a subscription group");
            goto fail;
        }
        s->group = strdup(gen);
    } else {
        s->group = strdup(o->group);
    }
    s->conns = calloc(s->n, sizeof(*s->conns));
    if (!s->binding || !s->group || !s->conns) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (i = 0; i < s->n; i++) {
        struct source_conn *c = &s->conns[i];

        c->src = s;
        if (make_client_id(o, i, s->n, cid, sizeof(cid)) < 0) {
            snprintf(err, errlen, "client_id too long");
            goto fail;
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
        c->client = kubemq_client_create(&co, cerr, sizeof(cerr));
        if (!c->client) {
            snprintf(err, errlen, "kubemq client %s: %s", cid, cerr);
            goto fail;
        }
        if (s->queue) {
            if (source_queue_start(c, cerr, sizeof(cerr)) < 0) {
                snprintf(err, errlen, "queue %s: %s", s->connection, cerr);
                goto fail;
            }
            continue;
        }
        if (is_events(s)) {
            c->sub =
                kubemq_subscribe_events(c->client, s->type == KUBEMQ_EVENTS_STORE, o->channel,
                                        s->group, (enum kubemq_store_start)(o->start_position + 1),
                                        o->start_value, on_request, NULL, c, cerr, sizeof(cerr));
        } else {
            c->sub = kubemq_subscribe_requests(c->client, s->type, o->channel, s->group, on_request,
                                               NULL, c, cerr, sizeof(cerr));
        }
        if (!c->sub) {
            snprintf(err, errlen, "subscribing to %s: %s", s->connection, cerr);
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
        int up;

        if (s->queue) {
            pthread_mutex_lock(&s->mu);
            up = s->conns[i].queue_ok;
            pthread_mutex_unlock(&s->mu);
        } else {
            up = kubemq_subscription_subscribed(s->conns[i].sub);
        }
        if (!up) {
            if (why) {
                if (s->n > 1) {
                    buf_appendf(why, "source %s not subscribed (connection %zu of %zu)",
                                s->connection, i + 1, s->n);
                } else {
                    buf_appendf(why, "source %s not subscribed", s->connection);
                }
            }
            return 0;
        }
    }
    return 1;
}

void source_share_seen(struct source *s, struct source_seen *seen)
{
    struct source_seen *old;

    if (s->queue) {
        return; /* a queue message goes to one puller anyway */
    }
    if (seen) {
        source_seen_ref(seen);
    }
    pthread_mutex_lock(&s->mu);
    old = s->seen;
    s->seen = seen;
    pthread_mutex_unlock(&s->mu);
    source_seen_unref(old);
}

void source_close(struct source *s)
{
    size_t i;

    pthread_mutex_lock(&s->mu);
    s->closing = 1;
    pthread_cond_broadcast(&s->cv);
    for (i = 0; s->queue && i < s->n; i++) {
        source_queue_close(&s->conns[i]);
    }
    pthread_mutex_unlock(&s->mu);
    for (i = 0; !s->queue && i < s->n; i++) {
        kubemq_subscription_close(s->conns[i].sub);
    }
}

size_t source_pending(struct source *s)
{
    size_t n;

    pthread_mutex_lock(&s->mu);
    n = s->in_flight + s->parked;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void source_abandon(struct source *s, const char *why)
{
    size_t i;

    pthread_mutex_lock(&s->mu);
    s->abandoned = 1;
    s->closing = 1;
    pthread_cond_broadcast(&s->cv);
    if (!s->abandon_why) {
        s->abandon_why = strdup(why);
    }
    pthread_mutex_unlock(&s->mu);
    for (i = 0; i < s->n; i++) {
        struct source_conn *c = &s->conns[i];
        struct kubemq_request *msg;

        pthread_mutex_lock(&s->mu);
        msg = c->parked;
        c->parked = NULL;
        if (msg) {
            s->parked--;
        }
        pthread_mutex_unlock(&s->mu);
        if (msg) {
            answer_error(s, c, msg, why);
        }
    }
}

void source_destroy(struct source *s)
{
    size_t i;

    if (!s) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->closing = 1;
    s->destroying = 1;
    pthread_cond_broadcast(&s->cv);
    for (i = 0; s->queue && s->conns && i < s->n; i++) {
        source_queue_close(&s->conns[i]);
    }
    pthread_mutex_unlock(&s->mu);
    for (i = 0; s->queue && s->conns && i < s->n; i++) {
        source_queue_stop(&s->conns[i]);
    }
    for (i = 0; s->conns && i < s->n; i++) {
        kubemq_client_destroy(s->conns[i].client); /* frees the subscription */
        s->conns[i].client = NULL;
        if (s->conns[i].parked) { /* only when never abandoned */
            kubemq_request_free(s->conns[i].parked);
        }
    }
    free(s->conns);
    free(s->binding);
    free(s->group);
    free(s->channel);
    free(s->response_channel);
    free(s->dead_letter_queue);
    free(s->abandon_why);
    source_seen_unref(s->seen);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
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
