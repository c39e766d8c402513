/* kubemq_queue.c - StreamQueueMessage transactions: receive one message, then ack, reject or
 * resend. */
#include "kubemq/kubemq_internal.h"

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define M_STREAM_QUEUE "/kubemq.kubemq/StreamQueueMessage"

struct kubemq_queue_txn {
    struct kubemq_client *client;
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata_array init_md, trail_md;
    grpc_status_code status;
    grpc_slice details;
    int md_sent;
    int md_received;
    int ended;   /* a send or receive failed: the stream is over */
    int settled; /* acked, rejected or resent */
    int status_received;
    Kubemq__StreamQueueMessagesResponse *got;
    struct kubemq_queue_message msg;
};

/* One batch, waited for on the transaction's own queue. */
static int run(struct kubemq_queue_txn *t, grpc_op *ops, size_t n)
{
    grpc_event ev;

    if (grpc_call_start_batch(t->call, ops, n, t, NULL) != GRPC_CALL_OK) {
        t->ended = 1;
        return -1;
    }
    ev = grpc_completion_queue_pluck(t->cq, t, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type != GRPC_OP_COMPLETE || !ev.success) {
        t->ended = 1;
        return -1;
    }
    return 0;
}

/* The stream's status, once it ended, as the error text. */
static void ended_text(struct kubemq_queue_txn *t, const char *what, char *err, size_t errlen)
{
    grpc_op op;

    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &t->trail_md;
    op.data.recv_status_on_client.status = &t->status;
    op.data.recv_status_on_client.status_details = &t->details;
    if (!t->status_received) {
        grpc_call_cancel(t->call, NULL);
        t->status_received = run(t, &op, 1) == 0;
    }
    if (t->status_received && t->status != GRPC_STATUS_OK) {
        kk_status_text(t->client, t->status, t->details, err, errlen);
    } else {
        snprintf(err, errlen, "queue stream ended during %s", what);
    }
}

/* Write req and read its response into *out. */
static int exchange(struct kubemq_queue_txn *t, Kubemq__StreamQueueMessagesRequest *req,
                    Kubemq__StreamQueueMessagesResponse **out, const char *what, char *err,
                    size_t errlen)
{
    grpc_op ops[3];
    grpc_byte_buffer *bb, *rb = NULL;
    size_t n = 0;
    int rc;

    *out = NULL;
    if (t->ended) {
        snprintf(err, errlen, "queue stream is closed (%s)", what);
        return -1;
    }
    bb = kk_pack(&req->base);
    memset(ops, 0, sizeof(ops));
    if (!t->md_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[n].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
        ops[n].data.send_initial_metadata.count = t->client->has_auth ? 1 : 0;
        ops[n].data.send_initial_metadata.metadata =
            t->client->has_auth ? &t->client->auth_md : NULL;
        n++;
        t->md_sent = 1;
    }
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = bb;
    n++;
    rc = run(t, ops, n);
    grpc_byte_buffer_destroy(bb);
    if (rc < 0) {
        ended_text(t, what, err, errlen);
        return -1;
    }
    n = 0;
    memset(ops, 0, sizeof(ops));
    if (!t->md_received) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n].data.recv_initial_metadata.recv_initial_metadata = &t->init_md;
        n++;
        t->md_received = 1;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n].data.recv_message.recv_message = &rb;
    n++;
    if (run(t, ops, n) < 0 || !rb) {
        if (rb) {
            grpc_byte_buffer_destroy(rb);
        }
        t->ended = 1;
        ended_text(t, what, err, errlen);
        return -1;
    }
    *out = kk_unpack(&kubemq__stream_queue_messages_response__descriptor, rb);
    grpc_byte_buffer_destroy(rb);
    if (!*out) {
        snprintf(err, errlen, "malformed queue stream response (%s)", what);
        return -1;
    }
    return 0;
}

struct kubemq_queue_txn *kubemq_queue_txn_open(struct kubemq_client *c, char *err, size_t errlen)
{
    struct kubemq_queue_txn *t;

    if (kk_call_enter(c) < 0) {
        snprintf(err, errlen, "kubemq client is shutting down");
        return NULL;
    }
    t = calloc(1, sizeof(*t));
    if (!t) {
        kk_call_leave(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->client = c;
    grpc_metadata_array_init(&t->init_md);
    grpc_metadata_array_init(&t->trail_md);
    t->details = grpc_empty_slice();
    t->cq = grpc_completion_queue_create_for_pluck(NULL);
    t->call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, t->cq,
                                       grpc_slice_from_static_string(M_STREAM_QUEUE), NULL,
                                       gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (!t->call) {
        snprintf(err, errlen, "cannot create the queue stream call");
        kubemq_queue_txn_free(t);
        return NULL;
    }
    return t;
}

int kubemq_queue_receive(struct kubemq_queue_txn *t, const char *channel, int visibility_seconds,
                         int wait_seconds, const struct kubemq_queue_message **msg, char *err,
                         size_t errlen)
{
    Kubemq__StreamQueueMessagesRequest req = KUBEMQ__STREAM_QUEUE_MESSAGES_REQUEST__INIT;
    Kubemq__StreamQueueMessagesResponse *res;
    Kubemq__QueueMessage *m;
    char id[33];

    *msg = NULL;
    kk_new_id(id);
    req.requestid = id;
    req.clientid = t->client->client_id;
    req.streamrequesttypedata = KUBEMQ__STREAM_REQUEST_TYPE__ReceiveMessage;
    req.channel = (char *)channel;
    req.visibilityseconds = visibility_seconds;
    req.waittimeseconds = wait_seconds;
    if (exchange(t, &req, &res, "receive", err, errlen) < 0) {
        return t->status == GRPC_STATUS_CANCELLED ? 0 : -1;
    }
    if (res->iserror || !res->message) {
        /* Error 138: no message came within the wait time. */
        int none = !res->message &&
                   (!res->error || strstr(res->error, "138") || strstr(res->error, "wait time"));
        snprintf(err, errlen, "%s", res->error && *res->error ? res->error : "no message");
        kubemq__stream_queue_messages_response__free_unpacked(res, NULL);
        return none ? 0 : -1;
    }
    t->got = res;
    m = res->message;
    t->msg.id = m->messageid;
    t->msg.channel = m->channel;
    t->msg.metadata = m->metadata;
    t->msg.body = m->body.data ? m->body.data : (const unsigned char *)"";
    t->msg.body_len = m->body.len;
    t->msg.sequence = m->attributes ? m->attributes->sequence : 0;
    t->msg.receive_count = m->attributes ? m->attributes->receivecount : 1;
    *msg = &t->msg;
    return 1;
}

static int settle(struct kubemq_queue_txn *t, Kubemq__StreamRequestType type, const char *channel,
                  const char *what, char *err, size_t errlen)
{
    Kubemq__StreamQueueMessagesRequest req = KUBEMQ__STREAM_QUEUE_MESSAGES_REQUEST__INIT;
    Kubemq__StreamQueueMessagesResponse *res;
    char id[33];
    int rc = 0;

    if (!t->got) {
        snprintf(err, errlen, "no message to %s", what);
        return -1;
    }
    kk_new_id(id);
    req.requestid = id;
    req.clientid = t->client->client_id;
    req.streamrequesttypedata = type;
    req.channel = (char *)(channel ? channel : "");
    req.refsequence = t->msg.sequence;
    if (exchange(t, &req, &res, what, err, errlen) < 0) {
        return -1;
    }
    if (res->iserror) {
        snprintf(err, errlen, "%s", res->error && *res->error ? res->error : "refused");
        rc = -1;
    } else {
        t->settled = 1;
    }
    kubemq__stream_queue_messages_response__free_unpacked(res, NULL);
    return rc;
}

int kubemq_queue_ack(struct kubemq_queue_txn *t, char *err, size_t errlen)
{
    return settle(t, KUBEMQ__STREAM_REQUEST_TYPE__AckMessage, NULL, "ack", err, errlen);
}

int kubemq_queue_reject(struct kubemq_queue_txn *t, char *err, size_t errlen)
{
    return settle(t, KUBEMQ__STREAM_REQUEST_TYPE__RejectMessage, NULL, "reject", err, errlen);
}

int kubemq_queue_resend(struct kubemq_queue_txn *t, const char *channel, char *err, size_t errlen)
{
    return settle(t, KUBEMQ__STREAM_REQUEST_TYPE__ResendMessage, channel, "resend", err, errlen);
}

void kubemq_queue_cancel(struct kubemq_queue_txn *t)
{
    /* The owner frees t only after the caller stopped using it (their lock). */
    if (t->call) {
        grpc_call_cancel(t->call, NULL);
    }
}

void kubemq_queue_txn_free(struct kubemq_queue_txn *t)
{
    grpc_op ops[2];
    grpc_event ev;

    if (!t) {
        return;
    }
    if (t->call && !t->status_received) {
        size_t n = 0;

        if (!t->settled) {
            grpc_call_cancel(t->call, NULL); /* the broker returns the message */
        }
        memset(ops, 0, sizeof(ops));
        if (t->md_sent && !t->ended) {
            ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        }
        ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[n].data.recv_status_on_client.trailing_metadata = &t->trail_md;
        ops[n].data.recv_status_on_client.status = &t->status;
        ops[n].data.recv_status_on_client.status_details = &t->details;
        n++;
        if (grpc_call_start_batch(t->call, ops, n, t, NULL) != GRPC_CALL_OK) {
            grpc_call_cancel(t->call, NULL);
            /* a status batch may already be done; nothing more to wait for */
        } else {
            /* The server ends the stream after a settlement; a cancel ends it too. */
            ev = grpc_completion_queue_pluck(t->cq, t, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
            (void)ev;
        }
    }
    if (t->call) {
        grpc_call_unref(t->call);
        t->call = NULL;
    }
    if (t->cq) {
        grpc_completion_queue_shutdown(t->cq);
        grpc_completion_queue_destroy(t->cq);
    }
    if (t->got) {
        kubemq__stream_queue_messages_response__free_unpacked(t->got, NULL);
    }
    grpc_slice_unref(t->details);
    grpc_metadata_array_destroy(&t->init_md);
    grpc_metadata_array_destroy(&t->trail_md);
    kk_call_leave(t->client);
    free(t);
}
