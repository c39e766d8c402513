/* kubemq_subscription.c - SubscribeToRequests / SubscribeToEvents streams: four batches,
 * back-pressure, resubscription.
 *
 * A stream is one call with four batches posted at once (sends; initial
 * metadata; status; one message). KubeMQ sends no headers and no ack until
 * the first request, so "subscribed" means the Subscribe was written and no
 * status has arrived. Only one RECV_MESSAGE is ever posted, and none while
 * the daemon has paused the subscription: the server's buffer and HTTP/2
 * flow control hold the rest, never an unbounded queue here. */
#include "kubemq/kubemq_internal.h"

#include "base/log.h"

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define M_SUBSCRIBE        "/kubemq.kubemq/SubscribeToRequests"
#define M_SUBSCRIBE_EVENTS "/kubemq.kubemq/SubscribeToEvents"

#define BACKOFF_FIRST_MS 250
#define STABLE_AFTER_MS  10000 /* a stream this old resets the backoff */

/* A state change to report once mu is released. */
struct note {
    int set;
    enum kubemq_sub_state state;
    char text[640];
};

static void describe(const struct kubemq_subscription *s, char *dst, size_t n)
{
    static const char *const what[] = {"", "commands", "queries", "events", "events_store"};

    snprintf(dst, n, "%s on channel '%s'%s%s%s at %s", what[s->type], s->channel,
             s->group[0] ? " group '" : "", s->group, s->group[0] ? "'" : "", s->client->address);
}

/* Log now (mu held is fine: logging takes no lock of ours); call back later. */
static void note_set(struct kubemq_subscription *s, struct note *n, enum kubemq_sub_state st,
                     enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void note_set(struct kubemq_subscription *s, struct note *n, enum kubemq_sub_state st,
                     enum log_level level, const char *fmt, ...)
{
    va_list ap;

    n->set = 1;
    n->state = st;
    va_start(ap, fmt);
    vsnprintf(n->text, sizeof(n->text), fmt, ap);
    va_end(ap);
    log_write(level, s->client->log_name, "kubemq: %s", n->text);
}

static void note_fire(struct kubemq_subscription *s, struct note *n)
{
    if (n->set && s->on_state) {
        s->on_state(s->ctx, n->state, n->text);
    }
}

static void set_subscribed(struct kubemq_subscription *s, int v)
{
    __atomic_store_n(&s->subscribed, v, __ATOMIC_RELEASE);
}

int kubemq_subscription_subscribed(const struct kubemq_subscription *s)
{
    return s ? __atomic_load_n(&s->subscribed, __ATOMIC_ACQUIRE) : 0;
}

/* mu held. Posts the one RECV_MESSAGE when the stream and the daemon allow. */
static void arm_recv(struct kubemq_subscription *s)
{
    grpc_op op;

    if (!s->st.call || s->recv_armed || s->recv_closed || s->status_received || s->paused ||
        s->closed) {
        return;
    }
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &s->st.recv_bb;
    if (grpc_call_start_batch(s->st.call, &op, 1, &s->tag_recv, NULL) != GRPC_CALL_OK) {
        s->recv_closed = 1;
        grpc_call_cancel(s->st.call, NULL);
        return;
    }
    s->recv_armed = 1;
    s->outstanding++;
}

static void schedule(struct kubemq_subscription *s, uint64_t delay_ms)
{
    s->resubscribe_at = kk_now_ms() + delay_ms;
    s->resubscribe_scheduled = 1;
}

/* mu held: the last batch of the stream completed. */
static void finish_stream(struct kubemq_subscription *s, struct note *n)
{
    struct kubemq_client *c = s->client;
    uint64_t now = kk_now_ms();
    char status[512];
    char desc[400];

    /* The status code too: operators match on it (14 = connection, 13 = server error). */
    snprintf(status, sizeof(status), "%s (%d): %.*s", kk_status_name(s->st.status),
             (int)s->st.status, (int)GRPC_SLICE_LENGTH(s->st.details),
             (const char *)GRPC_SLICE_START_PTR(s->st.details));
    kk_unary_cleanup(&s->st);
    set_subscribed(s, 0);
    if (c->stopping || s->closed) {
        log_debug(c->log_name, "kubemq: subscription closed: %s", status);
        return;
    }
    if (s->got_message || now - s->started_ms >= STABLE_AFTER_MS) {
        s->backoff_ms = 0;
        s->attempts = 0;
    }
    describe(s, desc, sizeof(desc));
    if (!c->auto_reconnect) {
        s->gave_up = 1;
        note_set(s, n, KUBEMQ_SUB_GAVE_UP, LOG_LEVEL_ERROR,
                 "subscription to %s ended: %s; not resubscribing (auto_reconnect is off)", desc,
                 status);
        return;
    }
    if (c->max_reconnects > 0 && s->attempts >= c->max_reconnects) {
        s->gave_up = 1;
        note_set(s, n, KUBEMQ_SUB_GAVE_UP, LOG_LEVEL_ERROR,
                 "subscription to %s ended: %s; gave up after %d reconnects", desc, status,
                 c->max_reconnects);
        return;
    }
    schedule(s, s->backoff_ms);
    /* Repeated failures of a stream that never opened are logged at debug. */
    note_set(s, n, KUBEMQ_SUB_LOST,
             s->opened || s->attempts == 0 ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG,
             "subscription to %s lost: %s; resubscribing in %llu ms (attempt %d)", desc, status,
             (unsigned long long)s->backoff_ms, s->attempts + 1);
    s->attempts++;
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_FIRST_MS;
    if (s->backoff_ms > c->backoff_cap_ms) {
        s->backoff_ms = c->backoff_cap_ms;
    }
}

static void batch_done(struct kubemq_subscription *s, struct note *n)
{
    s->outstanding--;
    if (s->outstanding == 0 && s->st.call) {
        finish_stream(s, n);
    }
}

static void on_send(struct kk_tag *t, int ok)
{
    struct kubemq_subscription *s = KK_CONTAINER_OF(t, struct kubemq_subscription, tag_send);
    struct note n1 = {0}, n2 = {0};

    pthread_mutex_lock(&s->client->mu);
    if (s->st.send_bb) {
        grpc_byte_buffer_destroy(s->st.send_bb);
        s->st.send_bb = NULL;
    }
    if (ok && !s->status_received && !s->client->stopping && !s->closed) {
        char desc[400];

        describe(s, desc, sizeof(desc));
        s->opened = 1;
        set_subscribed(s, 1);
        note_set(s, &n1, KUBEMQ_SUB_SUBSCRIBED, LOG_LEVEL_INFO, "%s to %s",
                 s->ever_subscribed ? "resubscribed" : "subscribed", desc);
        s->ever_subscribed = 1;
    }
    batch_done(s, &n2);
    pthread_mutex_unlock(&s->client->mu);
    note_fire(s, &n1);
    note_fire(s, &n2);
}

static void on_meta(struct kk_tag *t, int ok)
{
    struct kubemq_subscription *s = KK_CONTAINER_OF(t, struct kubemq_subscription, tag_meta);
    struct note n = {0};

    (void)ok;
    pthread_mutex_lock(&s->client->mu);
    batch_done(s, &n);
    pthread_mutex_unlock(&s->client->mu);
    note_fire(s, &n);
}

static void on_status(struct kk_tag *t, int ok)
{
    struct kubemq_subscription *s = KK_CONTAINER_OF(t, struct kubemq_subscription, tag_status);
    struct note n = {0};

    (void)ok;
    pthread_mutex_lock(&s->client->mu);
    s->status_received = 1;
    set_subscribed(s, 0);
    batch_done(s, &n);
    pthread_mutex_unlock(&s->client->mu);
    note_fire(s, &n);
}

static int is_events(const struct kubemq_subscription *s)
{
    return s->type == KUBEMQ_EVENTS || s->type == KUBEMQ_EVENTS_STORE;
}

static struct kubemq_request *event_from(struct kubemq_subscription *s, Kubemq__EventReceive *m)
{
    struct kubemq_request *r = calloc(1, sizeof(*r));

    if (!r) {
        return NULL;
    }
    r->type = s->type;
    r->id = m->eventid;
    r->channel = m->channel;
    r->reply_channel = "";
    r->client_id = "";
    r->metadata = m->metadata;
    r->body = m->body.data ? m->body.data : (const unsigned char *)"";
    r->body_len = m->body.len;
    r->sequence = m->sequence;
    r->priv = m;
    return r;
}

static struct kubemq_request *request_from(struct kubemq_subscription *s, Kubemq__Request *m)
{
    struct kubemq_request *r = calloc(1, sizeof(*r));

    if (!r) {
        return NULL;
    }
    if (m->requesttypedata == KUBEMQ__REQUEST__REQUEST_TYPE__Command) {
        r->type = KUBEMQ_COMMAND;
    } else if (m->requesttypedata == KUBEMQ__REQUEST__REQUEST_TYPE__Query) {
        r->type = KUBEMQ_QUERY;
    } else {
        r->type = s->type;
    }
    r->id = m->requestid;
    r->channel = m->channel;
    r->reply_channel = m->replychannel;
    r->client_id = m->clientid;
    r->metadata = m->metadata;
    r->body = m->body.data ? m->body.data : (const unsigned char *)"";
    r->body_len = m->body.len;
    r->timeout_ms = m->timeout;
    r->priv = m;
    return r;
}

void kubemq_request_free(struct kubemq_request *req)
{
    if (!req) {
        return;
    }
    if (req->priv && (req->type == KUBEMQ_EVENTS || req->type == KUBEMQ_EVENTS_STORE)) {
        kubemq__event_receive__free_unpacked(req->priv, NULL);
    } else if (req->priv) {
        kubemq__request__free_unpacked(req->priv, NULL);
    }
    free(req);
}

static void on_recv(struct kk_tag *t, int ok)
{
    struct kubemq_subscription *s = KK_CONTAINER_OF(t, struct kubemq_subscription, tag_recv);
    struct kubemq_client *c = s->client;
    struct note n = {0};
    grpc_byte_buffer *bb;
    void *m;
    struct kubemq_request *req;
    int rc;

    pthread_mutex_lock(&c->mu);
    s->recv_armed = 0;
    bb = s->st.recv_bb;
    s->st.recv_bb = NULL;
    if (!ok || !bb) {
        s->recv_closed = 1; /* the status batch says why */
        goto out;
    }
    m = kk_unpack(is_events(s) ? &kubemq__event_receive__descriptor : &kubemq__request__descriptor,
                  bb);
    grpc_byte_buffer_destroy(bb);
    req = !m ? NULL : is_events(s) ? event_from(s, m) : request_from(s, m);
    if (!req) {
        log_error(c->log_name, "kubemq: dropped a message on channel '%s': %s", s->channel,
                  m ? "out of memory" : "malformed message");
        if (m) {
            protobuf_c_message_free_unpacked(m, NULL);
        }
        arm_recv(s);
        goto out;
    }
    if (req->sequence > s->last_seq) {
        s->last_seq = req->sequence;
    }
    s->got_message = 1;
    s->backoff_ms = 0;
    s->attempts = 0;
    c->last_activity_ms = kk_now_ms();
    s->delivering = 1;
    pthread_mutex_unlock(&c->mu);
    rc = s->on_request(s->ctx, req);
    pthread_mutex_lock(&c->mu);
    s->delivering = 0;
    if (rc != 0 && !s->resume_pending) {
        s->paused = 1;
    }
    s->resume_pending = 0;
    if (!c->stopping) {
        arm_recv(s);
    }
out:
    batch_done(s, &n);
    pthread_mutex_unlock(&c->mu);
    note_fire(s, &n);
}

void kubemq_subscription_pause(struct kubemq_subscription *s)
{
    pthread_mutex_lock(&s->client->mu);
    s->paused = 1;
    s->resume_pending = 0;
    pthread_mutex_unlock(&s->client->mu);
}

void kubemq_subscription_close(struct kubemq_subscription *s)
{
    pthread_mutex_lock(&s->client->mu);
    if (!s->closed) {
        s->closed = 1;
        s->paused = 1;
        set_subscribed(s, 0);
        kk_sub_cancel(s); /* also drops a scheduled resubscription */
    }
    pthread_mutex_unlock(&s->client->mu);
}

void kubemq_subscription_resume(struct kubemq_subscription *s)
{
    pthread_mutex_lock(&s->client->mu);
    if (s->delivering) {
        s->resume_pending = 1; /* wins over the callback's "pause" */
    }
    s->paused = 0;
    if (!s->client->stopping) {
        arm_recv(s);
    }
    pthread_mutex_unlock(&s->client->mu);
}

/* Client's thread, mu held. */
void kk_sub_start_stream(struct kubemq_subscription *s)
{
    struct kubemq_client *c = s->client;
    Kubemq__Subscribe sub = KUBEMQ__SUBSCRIBE__INIT;
    struct note n = {0};
    grpc_op ops[3];
    grpc_op op;

    s->resubscribe_scheduled = 0;
    kk_unary_init(&s->st);
    s->st.call = grpc_channel_create_call(
        c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq,
        grpc_slice_from_static_string(is_events(s) ? M_SUBSCRIBE_EVENTS : M_SUBSCRIBE), NULL,
        gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (!s->st.call) {
        log_error(c->log_name, "kubemq: cannot create the subscription call");
        kk_unary_cleanup(&s->st);
        schedule(s, c->backoff_cap_ms);
        return;
    }
    s->recv_armed = 0;
    s->recv_closed = 0;
    s->status_received = 0;
    s->got_message = 0;
    s->opened = 0;
    s->outstanding = 0;
    s->started_ms = kk_now_ms();

    switch (s->type) {
    case KUBEMQ_COMMAND:
        sub.subscribetypedata = KUBEMQ__SUBSCRIBE__SUBSCRIBE_TYPE__Commands;
        break;
    case KUBEMQ_EVENTS:
        sub.subscribetypedata = KUBEMQ__SUBSCRIBE__SUBSCRIBE_TYPE__Events;
        break;
    case KUBEMQ_EVENTS_STORE:
        sub.subscribetypedata = KUBEMQ__SUBSCRIBE__SUBSCRIBE_TYPE__EventsStore;
        if (s->last_seq > 0) {
            /* Reopened after deliveries: go on where the last stream stopped. */
            sub.eventsstoretypedata = KUBEMQ__SUBSCRIBE__EVENTS_STORE_TYPE__StartAtSequence;
            sub.eventsstoretypevalue = (int64_t)(s->last_seq + 1);
        } else {
            sub.eventsstoretypedata = (Kubemq__Subscribe__EventsStoreType)s->store_start;
            sub.eventsstoretypevalue = s->store_value;
        }
        break;
    default:
        sub.subscribetypedata = KUBEMQ__SUBSCRIBE__SUBSCRIBE_TYPE__Queries;
        break;
    }
    sub.clientid = c->client_id;
    sub.channel = s->channel;
    sub.group = s->group;
    s->st.send_bb = kk_pack(&sub.base);

    /* A: the Subscribe; WAIT_FOR_READY lets the channel's backoff pace us. */
    kk_send_ops(c, ops, s->st.send_bb, GRPC_INITIAL_METADATA_WAIT_FOR_READY);
    if (grpc_call_start_batch(s->st.call, ops, 3, &s->tag_send, NULL) != GRPC_CALL_OK) {
        goto fail;
    }
    s->outstanding++;

    /* B: headers, which KubeMQ sends only with the first request. */
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_INITIAL_METADATA;
    op.data.recv_initial_metadata.recv_initial_metadata = &s->st.init_md;
    if (grpc_call_start_batch(s->st.call, &op, 1, &s->tag_meta, NULL) != GRPC_CALL_OK) {
        goto fail;
    }
    s->outstanding++;

    /* C: the status, the only sign that the stream ended. */
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &s->st.trail_md;
    op.data.recv_status_on_client.status = &s->st.status;
    op.data.recv_status_on_client.status_details = &s->st.details;
    if (grpc_call_start_batch(s->st.call, &op, 1, &s->tag_status, NULL) != GRPC_CALL_OK) {
        goto fail;
    }
    s->outstanding++;

    /* D: one message (unless the daemon is full). */
    arm_recv(s);
    return;
fail:
    /* Cannot happen with a fresh call; the accepted batches still complete. */
    log_error(c->log_name, "kubemq: cannot start the subscription batches");
    grpc_call_cancel(s->st.call, NULL);
    if (s->outstanding == 0) {
        finish_stream(s, &n); /* logged; on_state hears of the next change */
    }
}

/* mu held; any thread. */
void kk_sub_cancel(struct kubemq_subscription *s)
{
    s->resubscribe_scheduled = 0;
    if (s->st.call) {
        grpc_call_cancel(s->st.call, NULL);
    }
}

int kk_sub_idle(const struct kubemq_subscription *s)
{
    return s->st.call == NULL && s->outstanding == 0;
}

void kk_sub_free(struct kubemq_subscription *s)
{
    if (!s) {
        return;
    }
    free(s->channel);
    free(s->group);
    free(s);
}

static struct kubemq_subscription *subscribe(struct kubemq_client *c, enum kubemq_kind type,
                                             const char *channel, const char *group,
                                             kubemq_request_fn on_request, kubemq_state_fn on_state,
                                             void *ctx, char *err, size_t errlen, int store_start,
                                             int64_t store_value)
{
    struct kubemq_subscription *s, **tail;

    if (!channel || !channel[0]) {
        snprintf(err, errlen, "subscription channel is empty");
        return NULL;
    }
    if (!on_request) {
        snprintf(err, errlen, "subscription needs a request callback");
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (!s || !(s->channel = kk_strdup(channel)) || !(s->group = kk_strdup(group))) {
        snprintf(err, errlen, "out of memory");
        kk_sub_free(s);
        return NULL;
    }
    s->client = c;
    s->type = type;
    s->store_start = store_start;
    s->store_value = store_value;
    s->on_request = on_request;
    s->on_state = on_state;
    s->ctx = ctx;
    s->tag_send.done = on_send;
    s->tag_meta.done = on_meta;
    s->tag_status.done = on_status;
    s->tag_recv.done = on_recv;

    pthread_mutex_lock(&c->mu);
    if (c->stopping) {
        pthread_mutex_unlock(&c->mu);
        snprintf(err, errlen, "kubemq client is shutting down");
        kk_sub_free(s);
        return NULL;
    }
    for (tail = &c->subs; *tail; tail = &(*tail)->next) {
    }
    *tail = s;
    schedule(s, 0); /* the client's thread opens the stream */
    pthread_mutex_unlock(&c->mu);
    return s;
}

struct kubemq_subscription *
kubemq_subscribe_requests(struct kubemq_client *c, enum kubemq_kind type, const char *channel,
                          const char *group, kubemq_request_fn on_request, kubemq_state_fn on_state,
                          void *ctx, char *err, size_t errlen)
{
    if (type != KUBEMQ_COMMAND && type != KUBEMQ_QUERY) {
        snprintf(err, errlen, "subscription type must be queries or commands");
        return NULL;
    }
    return subscribe(c, type, channel, group, on_request, on_state, ctx, err, errlen, 0, 0);
}

struct kubemq_subscription *
kubemq_subscribe_events(struct kubemq_client *c, int store, const char *channel, const char *group,
                        enum kubemq_store_start start, int64_t value, kubemq_request_fn on_request,
                        kubemq_state_fn on_state, void *ctx, char *err, size_t errlen)
{
    if (!store) {
        return subscribe(c, KUBEMQ_EVENTS, channel, group, on_request, on_state, ctx, err, errlen,
                         0, 0);
    }
    if (start < KUBEMQ_START_NEW_ONLY || start > KUBEMQ_START_TIME_DELTA) {
        snprintf(err, errlen, "unknown events_store start position %d", (int)start);
        return NULL;
    }
    if (start >= KUBEMQ_START_SEQUENCE && value <= 0) {
        snprintf(err, errlen, "the events_store start value must be > 0");
        return NULL;
    }
    return subscribe(c, KUBEMQ_EVENTS_STORE, channel, group, on_request, on_state, ctx, err, errlen,
                     (int)start, start >= KUBEMQ_START_SEQUENCE ? value : 0);
}
