/* kubemq_call.c - unary calls: Ping, SendRequest, SendResponse, SendEvent, SendQueueMessage.
 *
 * A call is one stream: its one message and END_STREAM go out together,
 * the reply is decoded as it arrives, and the callback runs when the
 * stream has ended (from the stream's deferred call, never inside the
 * function that started it). A call's handle dies when its callback has
 * run or it is cancelled. Responses, events and queue messages "linger":
 * when their client is destroyed they still run to their end (no
 * callback), so what was written is not cut off. */
#include "kubemq/kubemq_internal.h"

#include "base/log.h"
#include "base/random.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define M_PING          "/kubemq.kubemq/Ping"
#define M_SEND_REQUEST  "/kubemq.kubemq/SendRequest"
#define M_SEND_RESPONSE "/kubemq.kubemq/SendResponse"
#define M_SEND_EVENT    "/kubemq.kubemq/SendEvent"
#define M_SEND_QUEUE    "/kubemq.kubemq/SendQueueMessage"

/* The server's Request.Timeout answers first (Error 301); our deadline
 * only catches a server that never answers. */
#define REQUEST_DEADLINE_SLACK_MS 5000

enum call_kind {
    CALL_PING,
    CALL_REQUEST,
    CALL_RESPONSE,
    CALL_EVENT,
    CALL_QUEUE,
};

struct kubemq_call {
    struct kubemq_client *client;
    struct kubemq_list link; /* in client->calls */
    enum call_kind kind;
    struct kubemq_stream *st;
    kubemq_ping_fn ping_fn;
    kubemq_response_fn response_fn;
    kubemq_sent_fn sent_fn;
    void *ctx;
    ProtobufCMessage *reply; /* the first message, decoded */
    int bad_reply;
};

static const ProtobufCMessageDescriptor *reply_desc(enum call_kind k)
{
    switch (k) {
    case CALL_PING:
        return &kubemq__ping_result__descriptor;
    case CALL_REQUEST:
        return &kubemq__response__descriptor;
    case CALL_EVENT:
        return &kubemq__result__descriptor;
    case CALL_QUEUE:
        return &kubemq__send_queue_message_result__descriptor;
    default:
        return &kubemq__empty__descriptor;
    }
}

static const char *what(enum call_kind k)
{
    switch (k) {
    case CALL_RESPONSE:
        return "response";
    case CALL_EVENT:
        return "event response";
    case CALL_QUEUE:
        return "queue message";
    case CALL_PING:
        return "ping";
    default:
        return "request";
    }
}

static void call_free(struct kubemq_call *call)
{
    struct kubemq_client *c = call->client;

    kubemq_list_del(&call->link);
    if (call->reply) {
        protobuf_c_message_free_unpacked(call->reply, NULL);
    }
    free(call);
    kubemq_client_release(c);
}

static void on_message(void *owner, struct kubemq_stream *st, const unsigned char *p, size_t n)
{
    struct kubemq_call *call = owner;

    (void)st;
    if (call->reply || call->bad_reply) {
        return; /* a unary call has one */
    }
    call->reply = kubemq_wire_unpack(reply_desc(call->kind), p, n);
    call->bad_reply = call->reply == NULL;
}

static void copy_text(char *dst, size_t n, const char *s)
{
    snprintf(dst, n, "%s", s ? s : "");
}

static void on_closed(void *owner, struct kubemq_stream *st, int status, const char *text)
{
    struct kubemq_call *call = owner;
    char err[768];
    const char *e = NULL;

    kubemq_list_del(&call->link); /* from here the client's destroy cannot reach it */
    call->st = NULL;
    kubemq_stream_detach(st);
    if (status == KUBEMQ_STATUS_OK && !call->reply) {
        status = KUBEMQ_STATUS_INTERNAL;
        text = call->bad_reply ? "malformed reply message" : "no reply message";
    }
    if (status != KUBEMQ_STATUS_OK) {
        kubemq_grpc_status_text(status, text, call->client->address, err, sizeof(err));
        e = err;
    } else if (call->kind == CALL_EVENT) {
        Kubemq__Result *r = (Kubemq__Result *)call->reply;

        if (r->error && r->error[0]) {
            copy_text(err, sizeof(err), r->error);
            e = err;
        } else if (!r->sent) {
            e = "the event was not sent";
        }
    } else if (call->kind == CALL_QUEUE) {
        Kubemq__SendQueueMessageResult *r = (Kubemq__SendQueueMessageResult *)call->reply;

        if (r->iserror) {
            copy_text(err, sizeof(err), r->error && r->error[0] ? r->error : "not sent");
            e = err;
        }
    }
    switch (call->kind) {
    case CALL_PING:
        if (call->ping_fn) {
            struct kubemq_ping_result pr;
            Kubemq__PingResult *r = (Kubemq__PingResult *)call->reply;

            if (!e) {
                copy_text(pr.host, sizeof(pr.host), r->host);
                copy_text(pr.version, sizeof(pr.version), r->version);
                pr.server_start_time = r->serverstarttime;
                pr.server_uptime_seconds = r->serveruptimeseconds;
            }
            call->ping_fn(call->ctx, e ? NULL : &pr, status, e);
        }
        break;
    case CALL_REQUEST:
        if (call->response_fn) {
            struct kubemq_response rr;
            Kubemq__Response *r = (Kubemq__Response *)call->reply;

            if (!e) {
                rr.executed = r->executed ? 1 : 0;
                rr.error = r->error ? r->error : "";
                rr.metadata = r->metadata ? r->metadata : "";
                rr.body = r->body.data ? r->body.data : (const unsigned char *)"";
                rr.body_len = r->body.len;
                rr.request_id = r->requestid ? r->requestid : "";
                rr.client_id = r->clientid ? r->clientid : "";
            }
            call->response_fn(call->ctx, e ? NULL : &rr, status, e);
        }
        break;
    default:
        if (call->sent_fn) {
            call->sent_fn(call->ctx, status, e);
        } else if (e) {
            log_error(call->client->log_name, "error sending %s: %s", what(call->kind), e);
        }
        break;
    }
    call_free(call);
}

static const struct kubemq_stream_ops call_ops = {
    .written = NULL,
    .message = on_message,
    .closed = on_closed,
};

/* Start a call of m; errors found now come from the stream's deferred
 * report like any other. NULL when out of memory. */
static struct kubemq_call *start(struct kubemq_client *c, enum call_kind kind, const char *method,
                                 const ProtobufCMessage *m, int deadline_ms, const char *bad)
{
    struct kubemq_call *call = calloc(1, sizeof(*call));
    char err[256];
    int status;

    if (!call) {
        return NULL;
    }
    call->st = kubemq_stream_new(c->loop, method, &call_ops, call);
    if (!call->st) {
        free(call);
        return NULL;
    }
    call->client = c;
    call->kind = kind;
    kubemq_client_acquire(c);
    kubemq_list_add(&c->calls, &call->link);
    call->st->linger = kind == CALL_RESPONSE || kind == CALL_EVENT || kind == CALL_QUEUE;
    kubemq_stream_set_deadline(call->st, deadline_ms, 1);
    if (bad) {
        kubemq_stream_fail(call->st, 3 /* INVALID_ARGUMENT */, "%s", bad);
    } else if (kubemq_stream_send(call->st, m, &status, err, sizeof(err)) < 0) {
        kubemq_stream_fail(call->st, status, "%s", err);
    } else if (kind == CALL_RESPONSE && !kubemq_client_up(c)) {
        /* A reply never waits for a reconnection: its requester would not wait either. */
        kubemq_client_down_text(c, err, sizeof(err));
        kubemq_stream_fail(call->st, KUBEMQ_STATUS_UNAVAILABLE, "%s", err);
    } else {
        kubemq_stream_close_send(call->st);
        kubemq_client_start(c, call->st);
    }
    return call;
}

void kubemq_call_cancel(struct kubemq_call *call)
{
    if (!call) {
        return;
    }
    kubemq_stream_cancel(call->st);
    call_free(call);
}

void kubemq_call_shutdown(struct kubemq_list *link)
{
    struct kubemq_call *call = KK_CONTAINER_OF(link, struct kubemq_call, link);

    if (call->st->linger) {
        kubemq_stream_detach(call->st);
    } else {
        kubemq_stream_cancel(call->st);
    }
    call_free(call);
}

struct kubemq_call *kubemq_ping(struct kubemq_client *c, int timeout_ms, kubemq_ping_fn done,
                                void *ctx)
{
    Kubemq__Empty req = KUBEMQ__EMPTY__INIT;
    struct kubemq_call *call;

    call = start(c, CALL_PING, M_PING, &req.base,
                 timeout_ms > 0 ? timeout_ms : KUBEMQ_RESPONSE_DEADLINE, NULL);
    if (call) {
        call->ping_fn = done;
        call->ctx = ctx;
    }
    return call;
}

struct kubemq_call *kubemq_send_request(struct kubemq_client *c, enum kubemq_kind type,
                                        const char *channel, const void *body, size_t len,
                                        const char *metadata, int timeout_ms,
                                        kubemq_response_fn done, void *ctx)
{
    Kubemq__Request req = KUBEMQ__REQUEST__INIT;
    const char *bad = NULL;
    struct kubemq_call *call;
    char id[33];

    if (timeout_ms <= 0 || timeout_ms > INT32_MAX - REQUEST_DEADLINE_SLACK_MS) {
        bad = "the request timeout must be between 1 ms and 24 days";
    } else if (type != KUBEMQ_COMMAND && type != KUBEMQ_QUERY) {
        bad = "a request is a query or a command";
    }
    random_hex(id, 16);
    req.requestid = id;
    req.requesttypedata = type == KUBEMQ_COMMAND ? KUBEMQ__REQUEST__REQUEST_TYPE__Command
                                                 : KUBEMQ__REQUEST__REQUEST_TYPE__Query;
    req.clientid = c->client_id;
    req.channel = (char *)(channel ? channel : "");
    req.metadata = (char *)(metadata ? metadata : "");
    req.body.data = (uint8_t *)body;
    req.body.len = body ? len : 0;
    req.timeout = timeout_ms;
    call = start(c, CALL_REQUEST, M_SEND_REQUEST, &req.base,
                 bad ? 0 : timeout_ms + REQUEST_DEADLINE_SLACK_MS, bad);
    if (call) {
        call->response_fn = done;
        call->ctx = ctx;
    }
    return call;
}

struct kubemq_call *kubemq_send_queue_message(struct kubemq_client *c, const char *channel,
                                              const void *body, size_t len, const char *metadata,
                                              kubemq_sent_fn done, void *ctx)
{
    Kubemq__QueueMessage m = KUBEMQ__QUEUE_MESSAGE__INIT;
    struct kubemq_call *call;
    char id[33];

    random_hex(id, 16);
    m.messageid = id;
    m.clientid = c->client_id;
    m.channel = (char *)(channel ? channel : "");
    m.metadata = (char *)(metadata ? metadata : "");
    m.body.data = (uint8_t *)body;
    m.body.len = body ? len : 0;
    call = start(c, CALL_QUEUE, M_SEND_QUEUE, &m.base, KUBEMQ_RESPONSE_DEADLINE, NULL);
    if (call) {
        call->sent_fn = done;
        call->ctx = ctx;
    }
    return call;
}

struct kubemq_call *kubemq_send_event(struct kubemq_client *c, int store, const char *channel,
                                      const void *body, size_t len, const char *metadata,
                                      kubemq_sent_fn done, void *ctx)
{
    Kubemq__Event ev = KUBEMQ__EVENT__INIT;
    struct kubemq_call *call;
    char id[33];

    random_hex(id, 16);
    ev.eventid = id;
    ev.clientid = c->client_id;
    ev.channel = (char *)(channel ? channel : "");
    ev.metadata = (char *)(metadata ? metadata : "");
    ev.body.data = (uint8_t *)body;
    ev.body.len = body ? len : 0;
    ev.store = store ? 1 : 0;
    call = start(c, CALL_EVENT, M_SEND_EVENT, &ev.base, KUBEMQ_RESPONSE_DEADLINE, NULL);
    if (call) {
        call->sent_fn = done;
        call->ctx = ctx;
    }
    return call;
}

void kubemq_send_response(struct kubemq_client *c, const struct kubemq_request *req, int executed,
                          const char *error_text, const void *body, size_t len,
                          const char *metadata)
{
    Kubemq__Response res = KUBEMQ__RESPONSE__INIT;

    res.clientid = c->client_id;
    res.requestid = (char *)req->id;
    res.replychannel = (char *)req->reply_channel;
    res.executed = executed ? 1 : 0;
    res.error = (char *)(error_text ? error_text : "");
    if (req->type != KUBEMQ_COMMAND) {
        res.metadata = (char *)(metadata ? metadata : "");
        res.body.data = (uint8_t *)body;
        res.body.len = body ? len : 0;
    }
    /* Unix seconds, as kubemq-go v1 writes and reads it. */
    res.timestamp = (int64_t)time(NULL);
    if (!start(c, CALL_RESPONSE, M_SEND_RESPONSE, &res.base, KUBEMQ_RESPONSE_DEADLINE, NULL)) {
        log_error(c->log_name, "error sending response: out of memory");
    }
}
