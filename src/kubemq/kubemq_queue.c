/* kubemq_queue.c - StreamQueueMessage transactions: one message per stream, then ack, reject or
 * resend.
 *
 * The stream stays open in both directions: ReceiveMessage goes out
 * without END_STREAM (after END_STREAM no settlement could follow, and the
 * broker would only end the stream when the visibility time runs out);
 * the broker answers with the message, or after wait_seconds with an
 * in-band "Error 138: no new message" (rc 0 here). The settlement is sent
 * on the same stream later (nghttp2's deferred data source is resumed);
 * its answer confirms it and the broker ends the stream. A transaction
 * that ends unsettled - freed (RST_STREAM CANCEL), connection lost,
 * visibility expired - leaves the message to the broker, which returns it
 * to the queue. */
#include "kubemq/kubemq_internal.h"

#include "base/log.h"
#include "base/random.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define M_STREAM_QUEUE "/kubemq.kubemq/StreamQueueMessage"

enum txn_state {
    TXN_RECEIVING,
    TXN_HOLDING, /* a message is ours to settle */
    TXN_SETTLING,
    TXN_DONE,
};

struct kubemq_queue_txn {
    int refs;
    struct kubemq_client *client;
    struct kubemq_list link; /* in client->txns */
    struct kubemq_stream *st;
    enum txn_state state;
    kubemq_queue_fn on_message;
    void *ctx;
    kubemq_settle_fn settle_fn;
    void *settle_ctx;
    const char *settling; /* "ack" | "reject" | "resend" */
    Kubemq__StreamQueueMessagesResponse *got;
    struct kubemq_queue_message msg;
    char *ended; /* why the stream ended while the message was held */
    int freed;

    /* A settlement refused at once, reported from a deferred call. */
    struct loop_defer defer;
    kubemq_settle_fn late_fn;
    void *late_ctx;
    char late_err[512];
};

static void txn_release(struct kubemq_queue_txn *t)
{
    if (--t->refs > 0) {
        return;
    }
    loop_defer_cancel(t->client->loop, &t->defer);
    if (t->got) {
        kubemq__stream_queue_messages_response__free_unpacked(t->got, NULL);
    }
    free(t->ended);
    kubemq_client_release(t->client);
    free(t);
}

static int no_message(const char *err)
{
    return err && (strstr(err, "Error 138") || strstr(err, "no new message"));
}

static void settled(struct kubemq_queue_txn *t, int rc, const char *err)
{
    kubemq_settle_fn fn = t->settle_fn;

    t->state = TXN_DONE;
    t->settle_fn = NULL;
    if (fn) {
        fn(t->settle_ctx, t, rc, err);
    } else if (rc < 0) {
        log_warn(t->client->log_name, "kubemq: queue %s failed: %s", t->settling, err);
    }
}

static void on_answer(void *owner, struct kubemq_stream *st, const unsigned char *p, size_t n)
{
    struct kubemq_queue_txn *t = owner;
    Kubemq__StreamQueueMessagesResponse *r;
    const char *err;
    char text[512];

    (void)st;
    r = kubemq_wire_unpack(&kubemq__stream_queue_messages_response__descriptor, p, n);
    err = !r ? "malformed queue stream answer" : r->error && r->error[0] ? r->error : "refused";
    snprintf(text, sizeof(text), "%s", err);
    t->refs++;
    switch (t->state) {
    case TXN_RECEIVING:
        if (r && !r->iserror && r->message) {
            Kubemq__QueueMessage *m = r->message;

            t->got = r;
            r = NULL;
            t->msg.id = m->messageid ? m->messageid : "";
            t->msg.channel = m->channel ? m->channel : "";
            t->msg.metadata = m->metadata ? m->metadata : "";
            t->msg.body = m->body.data ? m->body.data : (const unsigned char *)"";
            t->msg.body_len = m->body.len;
            t->msg.sequence = m->attributes ? m->attributes->sequence : 0;
            t->msg.receive_count = m->attributes ? m->attributes->receivecount : 1;
            t->state = TXN_HOLDING;
            kubemq_stream_set_deadline(st, 0, 0); /* the broker's visibility timer rules now */
            t->on_message(t->ctx, t, 1, &t->msg, NULL);
        } else {
            int none = r && !r->message && no_message(r->error);

            t->state = TXN_DONE;
            t->on_message(t->ctx, t, none ? 0 : -1, NULL, text);
        }
        break;
    case TXN_SETTLING:
        if (r && !r->iserror) {
            settled(t, 0, NULL);
        } else {
            settled(t, -1, text);
        }
        break;
    case TXN_HOLDING:
        /* The broker gave up on us (Error 129: visibility expired). */
        if (!t->ended) {
            t->ended = kubemq_wire_strdup(text);
        }
        break;
    default:
        break;
    }
    if (r) {
        kubemq__stream_queue_messages_response__free_unpacked(r, NULL);
    }
    txn_release(t);
}

static void on_closed(void *owner, struct kubemq_stream *st, int status, const char *text)
{
    struct kubemq_queue_txn *t = owner;
    char why[600];

    t->st = NULL;
    kubemq_stream_detach(st);
    if (status == KUBEMQ_STATUS_OK) {
        snprintf(why, sizeof(why), "the broker ended the queue stream");
    } else {
        kubemq_grpc_status_text(status, text, t->client->address, why, sizeof(why));
    }
    t->refs++;
    switch (t->state) {
    case TXN_RECEIVING:
        t->state = TXN_DONE;
        t->on_message(t->ctx, t, -1, NULL, why);
        break;
    case TXN_SETTLING: {
        char err[700];

        snprintf(err, sizeof(err), "the queue stream ended before the %s was confirmed: %s",
                 t->settling, why);
        settled(t, -1, err);
        break;
    }
    case TXN_HOLDING:
        if (!t->ended) {
            t->ended = kubemq_wire_strdup(why);
        }
        break;
    default:
        break;
    }
    txn_release(t);
}

static const struct kubemq_stream_ops txn_ops = {
    .written = NULL,
    .message = on_answer,
    .closed = on_closed,
};

struct kubemq_queue_txn *kubemq_queue_receive(struct kubemq_client *c, const char *channel,
                                              int visibility_seconds, int wait_seconds,
                                              kubemq_queue_fn on_message, void *ctx)
{
    Kubemq__StreamQueueMessagesRequest req = KUBEMQ__STREAM_QUEUE_MESSAGES_REQUEST__INIT;
    struct kubemq_queue_txn *t = calloc(1, sizeof(*t));
    char id[33], err[256];
    int status;

    if (!t) {
        return NULL;
    }
    t->st = kubemq_stream_new(c->loop, M_STREAM_QUEUE, &txn_ops, t);
    if (!t->st) {
        free(t);
        return NULL;
    }
    t->refs = 1; /* the owner's */
    t->client = c;
    kubemq_client_acquire(c);
    t->on_message = on_message;
    t->ctx = ctx;
    t->state = TXN_RECEIVING;
    loop_defer_init(&t->defer);
    kubemq_list_add(&c->txns, &t->link);
    random_hex(id, 16);
    req.requestid = id;
    req.clientid = c->client_id;
    req.streamrequesttypedata = KUBEMQ__STREAM_REQUEST_TYPE__ReceiveMessage;
    req.channel = (char *)(channel ? channel : "");
    req.visibilityseconds = visibility_seconds;
    req.waittimeseconds = wait_seconds;
    /* Only here: no grpc-timeout, the stream outlives the wait while the message is held. */
    kubemq_stream_set_deadline(
        t->st, (wait_seconds > 0 ? wait_seconds : 1) * 1000 + KUBEMQ_RESPONSE_DEADLINE, 0);
    if (kubemq_stream_send(t->st, &req.base, &status, err, sizeof(err)) < 0) {
        kubemq_stream_fail(t->st, status, "%s", err);
    } else {
        kubemq_client_start(c, t->st);
    }
    return t;
}

static void late_report(void *arg)
{
    struct kubemq_queue_txn *t = arg;
    kubemq_settle_fn fn = t->late_fn;

    t->late_fn = NULL;
    if (fn) {
        t->refs++;
        fn(t->late_ctx, t, -1, t->late_err);
        txn_release(t);
    }
}

static void settle(struct kubemq_queue_txn *t, Kubemq__StreamRequestType type, const char *channel,
                   const char *what, kubemq_settle_fn done, void *ctx)
{
    Kubemq__StreamQueueMessagesRequest req = KUBEMQ__STREAM_QUEUE_MESSAGES_REQUEST__INIT;
    char id[33], err[256];
    int status;

    if (!t || t->freed) {
        return;
    }
    if (t->state != TXN_HOLDING || !t->st) {
        if (t->state == TXN_HOLDING) {
            snprintf(t->late_err, sizeof(t->late_err), "cannot %s: %s", what,
                     t->ended ? t->ended : "the queue stream ended");
        } else {
            snprintf(t->late_err, sizeof(t->late_err), "cannot %s: no message held", what);
        }
        goto late;
    }
    random_hex(id, 16);
    req.requestid = id;
    req.clientid = t->client->client_id;
    req.streamrequesttypedata = type;
    req.channel = (char *)(channel ? channel : "");
    req.refsequence = t->msg.sequence;
    if (kubemq_stream_send(t->st, &req.base, &status, err, sizeof(err)) < 0) {
        snprintf(t->late_err, sizeof(t->late_err), "cannot %s: %s", what, err);
        goto late;
    }
    t->state = TXN_SETTLING;
    t->settling = what;
    t->settle_fn = done;
    t->settle_ctx = ctx;
    t->st->linger = 1; /* a settlement written goes through even if the client goes */
    kubemq_stream_set_deadline(t->st, KUBEMQ_RESPONSE_DEADLINE, 0);
    return;
late:
    if (!done) {
        log_warn(t->client->log_name, "kubemq: queue %s", t->late_err);
        return;
    }
    t->late_fn = done;
    t->late_ctx = ctx;
    loop_defer(t->client->loop, &t->defer, late_report, t);
}

void kubemq_queue_ack(struct kubemq_queue_txn *t, kubemq_settle_fn done, void *ctx)
{
    settle(t, KUBEMQ__STREAM_REQUEST_TYPE__AckMessage, NULL, "ack", done, ctx);
}

void kubemq_queue_reject(struct kubemq_queue_txn *t, kubemq_settle_fn done, void *ctx)
{
    settle(t, KUBEMQ__STREAM_REQUEST_TYPE__RejectMessage, NULL, "reject", done, ctx);
}

void kubemq_queue_resend(struct kubemq_queue_txn *t, const char *channel, kubemq_settle_fn done,
                         void *ctx)
{
    settle(t, KUBEMQ__STREAM_REQUEST_TYPE__ResendMessage, channel, "resend", done, ctx);
}

void kubemq_queue_txn_free(struct kubemq_queue_txn *t)
{
    if (!t || t->freed) {
        return;
    }
    t->freed = 1;
    t->late_fn = NULL;
    t->settle_fn = NULL;
    t->on_message = NULL;
    loop_defer_cancel(t->client->loop, &t->defer);
    kubemq_list_del(&t->link);
    if (t->st) {
        if (t->state == TXN_SETTLING) {
            kubemq_stream_detach(t->st); /* runs to the broker's answer */
        } else {
            kubemq_stream_cancel(t->st); /* unsettled: the broker returns the message */
        }
        t->st = NULL;
    }
    txn_release(t);
}

void kubemq_queue_shutdown(struct kubemq_list *link)
{
    kubemq_queue_txn_free(KK_CONTAINER_OF(link, struct kubemq_queue_txn, link));
}
