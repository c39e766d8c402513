/* kubemq_subscription.c - SubscribeToRequests / SubscribeToEvents streams, kept open.
 *
 * A subscription is a server stream: one Subscribe message and END_STREAM,
 * then the server's requests or events until it ends. KubeMQ sends no
 * headers and no ack until the first message, so "subscribed" means the
 * Subscribe was written, the server has spoken on the connection (its
 * SETTINGS: it did not refuse us after the TLS handshake) and the stream
 * has not ended. When it ends (the
 * connection lost, the server's error, a GOAWAY) the subscription reports
 * LOST and opens a new stream after a capped exponential backoff, once
 * the connection is up; max_reconnects counts attempts in a row that did
 * not last (a message, or 10 s of life, resets it).
 *
 * events_store: the broker keeps a durable position per client id and
 * ignores the start of a known one, so every stream subscribes with a
 * client id never used before (<client_id>-<start>-<random>). A reopened
 * stream starts at the sequence after the last one taken, and a message at
 * or below it is dropped, so nothing is delivered twice and nothing is
 * skipped. KUBEMQ_REFUSED cancels the stream (the broker must not hold
 * messages for a consumer that stopped taking them: it drops them after a
 * while); kubemq_subscription_resume() reopens at the refused sequence. */
#include "kubemq/kubemq_internal.h"

#include "base/log.h"
#include "base/random.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define M_SUBSCRIBE_REQUESTS "/kubemq.kubemq/SubscribeToRequests"
#define M_SUBSCRIBE_EVENTS   "/kubemq.kubemq/SubscribeToEvents"

struct kubemq_subscription {
    int refs;
    struct kubemq_client *client;
    struct kubemq_list link; /* in client->subs */
    enum kubemq_kind type;
    char *channel;
    char *group;
    enum kubemq_store_start start;
    int64_t start_value;
    kubemq_request_fn on_request;
    kubemq_state_fn on_state;
    void *ctx;

    struct kubemq_stream *st; /* the current stream */
    int closed;               /* the owner let go */
    int want_stream;          /* open one when the connection is up */
    int subscribed;
    int written; /* the Subscribe went out before the server spoke */
    int ever_subscribed;
    int got_message;
    uint64_t started_ms;
    int attempts;
    int quiet; /* "subscribed" at debug */
    uint64_t backoff_ms;
    int gave_up;
    struct loop_timer timer; /* resubscription */

    uint64_t last_seq; /* events_store: the last sequence taken */
    int paused;        /* events_store: a message was refused */
    uint64_t refused_seq;
};

static int is_events(const struct kubemq_subscription *s)
{
    return s->type == KUBEMQ_EVENTS || s->type == KUBEMQ_EVENTS_STORE;
}

static void describe(const struct kubemq_subscription *s, char *dst, size_t n)
{
    static const char *const what[] = {"", "commands", "queries", "events", "events_store"};

    snprintf(dst, n, "%s on channel '%s'%s%s%s at %s", what[s->type], s->channel,
             s->group[0] ? " group '" : "", s->group, s->group[0] ? "'" : "", s->client->address);
}

/* Log the change, then tell the owner. */
static void report(struct kubemq_subscription *s, enum kubemq_sub_state state, enum log_level level,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void report(struct kubemq_subscription *s, enum kubemq_sub_state state, enum log_level level,
                   const char *fmt, ...)
{
    char text[768];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    log_write(level, s->client->log_name, "kubemq: %s", text);
    if (s->on_state && !s->closed) {
        s->on_state(s->ctx, state, text);
    }
}

static void sub_release(struct kubemq_subscription *s)
{
    if (--s->refs > 0) {
        return;
    }
    loop_timer_stop(s->client->loop, &s->timer);
    kubemq_client_release(s->client);
    free(s->channel);
    free(s->group);
    free(s);
}

static const struct kubemq_stream_ops sub_ops;

/* The sequence a new events_store stream starts at; 0: the configured start. */
static uint64_t resume_seq(const struct kubemq_subscription *s)
{
    uint64_t next = s->last_seq ? s->last_seq + 1 : 0;

    return s->refused_seq > next ? s->refused_seq : next;
}

static void on_timer(void *arg);

static void open_stream(struct kubemq_subscription *s)
{
    struct kubemq_client *c = s->client;
    Kubemq__Subscribe sub = KUBEMQ__SUBSCRIBE__INIT;
    char client_id[512], hex[9], err[256];
    uint64_t seq = 0;
    int status;

    if (s->closed || s->gave_up || s->paused || s->st) {
        return;
    }
    if (!kubemq_client_up(c)) {
        s->want_stream = 1; /* kubemq_subscription_conn_up opens it */
        return;
    }
    s->want_stream = 0;
    s->st = kubemq_stream_new(c->loop, is_events(s) ? M_SUBSCRIBE_EVENTS : M_SUBSCRIBE_REQUESTS,
                              &sub_ops, s);
    if (!s->st) {
        log_error(c->log_name, "kubemq: cannot subscribe: out of memory");
        loop_timer_start(c->loop, &s->timer, c->backoff_cap_ms, on_timer, s);
        return;
    }
    switch (s->type) {
    case KUBEMQ_COMMAND:
        sub.subscribetypedata = KUBEMQ__SUBSCRIBE__SUBSCRIBE_TYPE__Commands;
        break;
    case KUBEMQ_QUERY:
        sub.subscribetypedata = KUBEMQ__SUBSCRIBE__SUBSCRIBE_TYPE__Queries;
        break;
    case KUBEMQ_EVENTS:
        sub.subscribetypedata = KUBEMQ__SUBSCRIBE__SUBSCRIBE_TYPE__Events;
        break;
    case KUBEMQ_EVENTS_STORE:
        sub.subscribetypedata = KUBEMQ__SUBSCRIBE__SUBSCRIBE_TYPE__EventsStore;
        seq = resume_seq(s);
        if (seq) {
            sub.eventsstoretypedata = KUBEMQ__SUBSCRIBE__EVENTS_STORE_TYPE__StartAtSequence;
            sub.eventsstoretypevalue = (int64_t)seq;
        } else {
            sub.eventsstoretypedata = (Kubemq__Subscribe__EventsStoreType)s->start;
            sub.eventsstoretypevalue = s->start_value;
            if (s->start == KUBEMQ_START_SEQUENCE) {
                seq = (uint64_t)s->start_value;
            }
        }
        break;
    }
    sub.clientid = c->client_id;
    if (s->type == KUBEMQ_EVENTS_STORE) {
        /* A client id the broker has never seen: it honours the start. */
        random_hex(hex, 4);
        snprintf(client_id, sizeof(client_id), "%s-%llu-%s", c->client_id, (unsigned long long)seq,
                 hex);
        sub.clientid = client_id;
    }
    sub.channel = s->channel;
    sub.group = s->group;
    s->started_ms = loop_now_ms(c->loop);
    s->got_message = 0;
    if (kubemq_stream_send(s->st, &sub.base, &status, err, sizeof(err)) < 0) {
        kubemq_stream_fail(s->st, status, "%s", err);
        return;
    }
    kubemq_stream_close_send(s->st);
    kubemq_client_start(c, s->st);
}

static void on_timer(void *arg)
{
    open_stream(arg);
}

void kubemq_subscription_conn_up(struct kubemq_list *link)
{
    struct kubemq_subscription *s = KK_CONTAINER_OF(link, struct kubemq_subscription, link);

    if (s->want_stream && !loop_timer_armed(&s->timer)) {
        open_stream(s);
    }
}

static void announce(struct kubemq_subscription *s)
{
    char desc[400];

    s->written = 0;
    s->subscribed = 1;
    describe(s, desc, sizeof(desc));
    s->refs++;
    report(s, KUBEMQ_SUB_SUBSCRIBED, s->quiet ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO, "%s to %s",
           s->ever_subscribed ? "resubscribed" : "subscribed", desc);
    s->ever_subscribed = 1;
    sub_release(s);
}

static void on_written(void *owner, struct kubemq_stream *st)
{
    struct kubemq_subscription *s = owner;

    if (st != s->st || s->subscribed || st->ended) {
        return;
    }
    if (!s->client->announced) {
        s->written = 1; /* kubemq_subscription_conn_heard says it */
        return;
    }
    announce(s);
}

int kubemq_subscription_conn_heard(struct kubemq_list *link)
{
    struct kubemq_subscription *s = KK_CONTAINER_OF(link, struct kubemq_subscription, link);

    if (!s->written || s->subscribed || !s->st || s->st->ended || s->closed) {
        s->written = 0;
        return 0;
    }
    announce(s);
    return 1;
}

static void on_message(void *owner, struct kubemq_stream *st, const unsigned char *p, size_t n)
{
    struct kubemq_subscription *s = owner;
    struct kubemq_client *c = s->client;
    ProtobufCMessage *m;
    struct kubemq_request *req;
    uint64_t seq;
    int rc;

    if (st != s->st || s->closed || s->paused) {
        return;
    }
    m = kubemq_wire_unpack(
        is_events(s) ? &kubemq__event_receive__descriptor : &kubemq__request__descriptor, p, n);
    req = m ? kubemq_wire_request(s->type, m) : NULL;
    if (!req) {
        log_error(c->log_name, "kubemq: dropped a message on channel '%s': %s", s->channel,
                  m ? "out of memory" : "malformed message");
        if (m) {
            protobuf_c_message_free_unpacked(m, NULL);
        }
        return;
    }
    seq = req->sequence;
    if (s->type == KUBEMQ_EVENTS_STORE && s->last_seq && seq <= s->last_seq) {
        log_debug(c->log_name, "kubemq: events_store '%s': sequence %llu taken before, dropped",
                  s->channel, (unsigned long long)seq);
        kubemq_request_free(req);
        return;
    }
    s->got_message = 1;
    s->attempts = 0;
    s->backoff_ms = 0;
    s->refs++;
    rc = s->on_request(s->ctx, req);
    if (rc == KUBEMQ_TAKEN) {
        if (seq > s->last_seq) {
            s->last_seq = seq;
        }
    } else if (s->type == KUBEMQ_EVENTS_STORE) {
        kubemq_request_free(req);
        if (!s->closed && s->st == st) {
            /* Paused: the rest of this stream is dropped; resume reads it again. */
            s->paused = 1;
            s->refused_seq = seq;
            s->subscribed = 0;
            s->written = 0;
            s->st = NULL;
            kubemq_stream_cancel(st);
            log_debug(c->log_name, "kubemq: events_store '%s' paused at sequence %llu", s->channel,
                      (unsigned long long)seq);
        }
    } else {
        log_error(c->log_name,
                  "kubemq: a %s message on '%s' was refused; only events_store can wait, dropped",
                  kubemq_kind_name(s->type), s->channel);
        kubemq_request_free(req);
    }
    sub_release(s);
}

static void on_closed(void *owner, struct kubemq_stream *st, int status, const char *text)
{
    struct kubemq_subscription *s = owner;
    struct kubemq_client *c = s->client;
    uint64_t now = loop_now_ms(c->loop);
    const char *name = kubemq_grpc_status_name(status);
    char why[600], desc[400];
    int was_subscribed = s->subscribed;

    if (st != s->st) {
        return;
    }
    s->st = NULL;
    s->subscribed = 0;
    s->written = 0;
    kubemq_stream_detach(st);
    if (s->closed) {
        return;
    }
    /* The status code too: operators match on it (14 = connection, 13 = server error). */
    snprintf(why, sizeof(why), "%s (%d): %s", name ? name : "STATUS", status,
             status == KUBEMQ_STATUS_OK ? "the server ended the subscription" : text);
    if (s->got_message || now - s->started_ms >= KUBEMQ_STABLE_MS) {
        s->backoff_ms = 0;
        s->attempts = 0;
    }
    describe(s, desc, sizeof(desc));
    s->refs++;
    if (!c->auto_reconnect) {
        s->gave_up = 1;
        report(s, KUBEMQ_SUB_GAVE_UP, LOG_LEVEL_ERROR,
               "subscription to %s ended: %s; not resubscribing (auto_reconnect is off)", desc,
               why);
    } else if (c->max_reconnects > 0 && s->attempts >= c->max_reconnects) {
        s->gave_up = 1;
        report(s, KUBEMQ_SUB_GAVE_UP, LOG_LEVEL_ERROR,
               "subscription to %s ended: %s; gave up after %d reconnects", desc, why,
               c->max_reconnects);
    } else {
        uint64_t delay = s->backoff_ms;

        s->attempts++;
        s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : KUBEMQ_BACKOFF_MS;
        if (s->backoff_ms > c->backoff_cap_ms) {
            s->backoff_ms = c->backoff_cap_ms;
        }
        loop_timer_start(c->loop, &s->timer, delay, on_timer, s);
        /* Repeated failures of a stream that never opened are logged at debug. */
        report(s, KUBEMQ_SUB_LOST,
               was_subscribed || s->attempts == 1 ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG,
               "subscription to %s lost: %s; resubscribing in %llu ms (attempt %d)", desc, why,
               (unsigned long long)delay, s->attempts);
    }
    sub_release(s);
}

static const struct kubemq_stream_ops sub_ops = {
    .written = on_written,
    .message = on_message,
    .closed = on_closed,
};

int kubemq_subscription_subscribed(const struct kubemq_subscription *s)
{
    return s ? s->subscribed : 0;
}

uint64_t kubemq_subscription_last_sequence(const struct kubemq_subscription *s)
{
    return s ? s->last_seq : 0;
}

void kubemq_subscription_resume(struct kubemq_subscription *s)
{
    if (!s || !s->paused || s->closed) {
        return;
    }
    s->paused = 0;
    log_debug(s->client->log_name, "kubemq: events_store '%s' resumes at sequence %llu", s->channel,
              (unsigned long long)resume_seq(s));
    open_stream(s);
}

void kubemq_subscription_close(struct kubemq_subscription *s)
{
    if (!s || s->closed) {
        return;
    }
    s->closed = 1;
    s->subscribed = 0;
    s->written = 0;
    loop_timer_stop(s->client->loop, &s->timer);
    if (s->st) {
        kubemq_stream_cancel(s->st); /* the broker hands the channel to other subscribers */
        s->st = NULL;
    }
    kubemq_list_del(&s->link);
    sub_release(s);
}

void kubemq_subscription_shutdown(struct kubemq_list *link)
{
    kubemq_subscription_close(KK_CONTAINER_OF(link, struct kubemq_subscription, link));
}

struct kubemq_subscription *kubemq_subscribe(struct kubemq_client *c,
                                             const struct kubemq_sub_opts *o,
                                             kubemq_request_fn on_request, kubemq_state_fn on_state,
                                             void *ctx, char *err, size_t errlen)
{
    struct kubemq_subscription *s;

    if (c->state == KUBEMQ_CLIENT_GONE) {
        snprintf(err, errlen, "kubemq client is shutting down");
        return NULL;
    }
    if (!o->channel || !o->channel[0]) {
        snprintf(err, errlen, "subscription channel is empty");
        return NULL;
    }
    if (!on_request) {
        snprintf(err, errlen, "subscription needs a request callback");
        return NULL;
    }
    if (o->type < KUBEMQ_COMMAND || o->type > KUBEMQ_EVENTS_STORE) {
        snprintf(err, errlen, "unknown subscription type %d", (int)o->type);
        return NULL;
    }
    if (o->type == KUBEMQ_EVENTS_STORE) {
        if (o->start < KUBEMQ_START_NEW_ONLY || o->start > KUBEMQ_START_TIME_DELTA) {
            snprintf(err, errlen, "unknown events_store start position %d", (int)o->start);
            return NULL;
        }
        if (o->start >= KUBEMQ_START_SEQUENCE && o->start_value <= 0) {
            snprintf(err, errlen, "the events_store start value must be > 0");
            return NULL;
        }
    }
    s = calloc(1, sizeof(*s));
    if (!s || !(s->channel = kubemq_wire_strdup(o->channel)) ||
        !(s->group = kubemq_wire_strdup(o->group))) {
        snprintf(err, errlen, "out of memory");
        if (s) {
            free(s->channel);
        }
        free(s);
        return NULL;
    }
    s->refs = 1; /* the owner's */
    s->client = c;
    kubemq_client_acquire(c);
    s->type = o->type;
    if (o->type == KUBEMQ_EVENTS_STORE) {
        s->start = o->start;
        s->start_value = o->start >= KUBEMQ_START_SEQUENCE ? o->start_value : 0;
    }
    s->quiet = o->quiet;
    s->on_request = on_request;
    s->on_state = on_state;
    s->ctx = ctx;
    loop_timer_init(&s->timer);
    kubemq_list_add(&c->subs, &s->link);
    open_stream(s);
    return s;
}
