/* source_events.c - kubemq.events and kubemq.events-store: subscriptions
 * to events, whose reply envelope (if `response_channel` is set) is
 * published as an event, or as an events-store message.
 *
 * Events have no sender waiting: one that finds the FIFO full is dropped,
 * counted and logged (never silently). An events-store subscription never
 * drops: it refuses the message, which pauses its stream, and resumes -
 * from that message's sequence - once the FIFO has room again.
 *
 * An events-store binding with a `checkpoint` (source_checkpoint.h) reads
 * it before it subscribes, and tells it of every message taken and
 * answered; a message answered after the binding was abandoned (never
 * run, or cut short) does not count as answered. */
#include "base/log.h"
#include "kubemq/kubemq_client.h"
#include "message/envelope.h"
#include "source/source.h"
#include "source/source_checkpoint.h"
#include "source/source_internal.h"

#include <string.h>

static int is_store(const struct source *s)
{
    return s->ops == &source_events_store_ops;
}

static void publish(struct source_conn *c, const void *body, size_t len)
{
    struct source *s = c->src;

    if (*s->response_channel && body) {
        kubemq_send_event(c->client, is_store(s), s->response_channel, body, len, NULL, NULL, NULL);
    }
}

/* An event that the binding will not run (stopped, out of memory). */
static void answer_error(struct source_conn *c, const struct kubemq_request *msg, const char *text)
{
    struct buf b = BUF_INIT(2048);

    log_warn(c->src->binding, "source: event on channel '%s' not processed: %s", msg->channel,
             text);
    if (envelope_error_serialize(text, &b) == 0) {
        publish(c, b.data, b.len);
    }
    buf_free(&b);
}

static int on_event(void *ctx, struct kubemq_request *msg)
{
    struct source_conn *c = ctx;
    struct source *s = c->src;
    struct source_request *r;

    if (is_store(s) && !s->abandoned && !source_can_admit(s, msg->body_len)) {
        /* Before the id is remembered below: it comes again. */
        c->paused = 1;
        return KUBEMQ_REFUSED;
    }
    if (source_intake_refused(c, msg, answer_error)) {
        return KUBEMQ_TAKEN;
    }
    r = source_request_new(c);
    if (r) {
        uint64_t seq = msg->sequence;

        r->msg = msg;
        r->body = msg->body;
        r->len = msg->body_len;
        if (source_admit(c, r) == 0) {
            if (is_store(s)) {
                metrics_gauge_set(s->metrics.received_sequence, (int64_t)seq);
                if (s->checkpoint) {
                    source_checkpoint_take(s->checkpoint, seq);
                }
            }
            return KUBEMQ_TAKEN;
        }
        r->msg = NULL; /* not ours to free below */
        source_finish(r);
    }
    if (is_store(s)) {
        /* Taken again later, from this sequence, on a new stream. */
        c->paused = 1;
        return KUBEMQ_REFUSED;
    }
    source_note_overflow(s, s->metrics.dropped,
                         r ? "events dropped" : "events dropped (out of memory)");
    kubemq_request_free(msg);
    return KUBEMQ_TAKEN;
}

static int subscribe_at(struct source_conn *c, int start_pos, int64_t value, char *err,
                        size_t errlen)
{
    struct source *s = c->src;
    struct kubemq_sub_opts so;

    memset(&so, 0, sizeof(so));
    so.type = is_store(s) ? KUBEMQ_EVENTS_STORE : KUBEMQ_EVENTS;
    so.channel = s->channel;
    so.group = s->group;
    so.start = (enum kubemq_store_start)start_pos;
    so.start_value = value;
    c->sub = kubemq_subscribe(c->client, &so, on_event, NULL, c, err, errlen);
    return c->sub ? 0 : -1;
}

static int start(struct source_conn *c, char *err, size_t errlen)
{
    struct source *s = c->src;

    if (s->checkpoint) {
        /* Subscribes once the checkpoint is read. */
        return source_checkpoint_start(s->checkpoint, c, subscribe_at, err, errlen);
    }
    return subscribe_at(c, s->store_start, s->store_value, err, errlen);
}

static void close_conn(struct source_conn *c)
{
    struct source *s = c->src;

    kubemq_subscription_close(c->sub);
    c->sub = NULL;
    c->paused = 0;
    if (s->checkpoint) {
        source_checkpoint_close(s->checkpoint);
        if (source_pending(s) == 0) {
            source_checkpoint_drained(s->checkpoint);
        }
    }
}

static int ready(const struct source_conn *c)
{
    /* A paused events-store stream is busy, not broken. */
    return c->sub && kubemq_client_ready(c->client) &&
           (c->paused || kubemq_subscription_subscribed(c->sub));
}

static void reply(struct source_request *r, int is_error, const char *error_text, const void *body,
                  size_t len)
{
    struct source *s = r->conn->src;
    uint64_t seq = r->msg ? r->msg->sequence : 0;

    publish(r->conn, body, len);
    source_finish(r);
    if (s->checkpoint) {
        /* An error answer counts; one after the abandon does not (the
         * request never ran, or not to its end). */
        source_checkpoint_done(s->checkpoint, seq, s->abandoned);
        if (s->closing && source_pending(s) == 0) {
            source_checkpoint_drained(s->checkpoint);
        }
    }
}

static void room(struct source_conn *c)
{
    if (c->paused && c->sub && source_has_room(c->src)) {
        c->paused = 0;
        kubemq_subscription_resume(c->sub);
    }
}

const struct source_ops source_events_ops = {
    .subscribes = 1,
    .start = start,
    .close = close_conn,
    .ready = ready,
    .reply = reply,
};

static int init(struct source *s, const struct source_options *o, char *err, size_t errlen)
{
    if (o->checkpoint == SOURCE_CHECKPOINT_OFF) {
        return 0;
    }
    s->checkpoint = source_checkpoint_create(s, o, err, errlen);
    return s->checkpoint ? 0 : -1;
}

static void fini(struct source *s)
{
    source_checkpoint_destroy(s->checkpoint);
    s->checkpoint = NULL;
}

static void share(struct source *s, struct source_seen *seen)
{
    if (s->checkpoint) {
        source_checkpoint_share(s->checkpoint, seen);
    }
}

static int flushing(const struct source *s)
{
    return s->checkpoint ? source_checkpoint_flushing(s->checkpoint) : 0;
}

const struct source_ops source_events_store_ops = {
    .subscribes = 1,
    .start = start,
    .close = close_conn,
    .ready = ready,
    .reply = reply,
    .room = room,
    .init = init,
    .fini = fini,
    .share = share,
    .flushing = flushing,
};
