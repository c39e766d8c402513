/* kubemq_call.c - unary calls: blocking Ping and SendRequest, async SendResponse and idle Ping. */
#include "kubemq/kubemq_internal.h"

#include "base/log.h"

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define M_PING          "/kubemq.kubemq/Ping"
#define M_SEND_REQUEST  "/kubemq.kubemq/SendRequest"
#define M_SEND_RESPONSE "/kubemq.kubemq/SendResponse"
#define M_SEND_EVENT    "/kubemq.kubemq/SendEvent"
#define M_SEND_QUEUE    "/kubemq.kubemq/SendQueueMessage"

/* The server's Request.Timeout answers first (Error 301); the gRPC
 * deadline only catches a server that never answers. */
#define REQUEST_DEADLINE_SLACK_MS 5000

void kk_unary_init(struct kk_unary *u)
{
    memset(u, 0, sizeof(*u));
    grpc_metadata_array_init(&u->init_md);
    grpc_metadata_array_init(&u->trail_md);
    u->status = GRPC_STATUS_UNKNOWN;
    u->details = grpc_empty_slice();
}

void kk_unary_cleanup(struct kk_unary *u)
{
    if (u->send_bb) {
        grpc_byte_buffer_destroy(u->send_bb);
        u->send_bb = NULL;
    }
    if (u->recv_bb) {
        grpc_byte_buffer_destroy(u->recv_bb);
        u->recv_bb = NULL;
    }
    grpc_slice_unref(u->details);
    u->details = grpc_empty_slice();
    grpc_metadata_array_destroy(&u->init_md);
    grpc_metadata_array_destroy(&u->trail_md);
    if (u->call) {
        grpc_call_unref(u->call);
        u->call = NULL;
    }
}

void kk_send_ops(struct kubemq_client *c, grpc_op ops[3], grpc_byte_buffer *bb, uint32_t md_flags)
{
    memset(ops, 0, 3 * sizeof(*ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].flags = md_flags;
    ops[0].data.send_initial_metadata.count = c->has_auth ? 1 : 0;
    ops[0].data.send_initial_metadata.metadata = c->has_auth ? &c->auth_md : NULL;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
}

int kk_unary_start(struct kubemq_client *c, struct kk_unary *u, grpc_completion_queue *cq,
                   const char *method, const ProtobufCMessage *req, int deadline_ms,
                   uint32_t md_flags, void *tag, char *err, size_t errlen)
{
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(deadline_ms, GPR_TIMESPAN));
    grpc_op ops[6];
    grpc_call_error rc;

    u->call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                       grpc_slice_from_static_string(method), NULL, deadline, NULL);
    if (!u->call) {
        snprintf(err, errlen, "cannot create the %s call", method);
        return -1;
    }
    u->send_bb = kk_pack(req);
    memset(ops, 0, sizeof(ops));
    kk_send_ops(c, ops, u->send_bb, md_flags);
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &u->init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &u->recv_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &u->trail_md;
    ops[5].data.recv_status_on_client.status = &u->status;
    ops[5].data.recv_status_on_client.status_details = &u->details;
    rc = grpc_call_start_batch(u->call, ops, 6, tag, NULL);
    if (rc != GRPC_CALL_OK) {
        snprintf(err, errlen, "cannot start the %s call (grpc_call_error %d)", method, (int)rc);
        return -1;
    }
    return 0;
}

int kk_call_enter(struct kubemq_client *c)
{
    int rc = 0;

    pthread_mutex_lock(&c->mu);
    if (c->stopping) {
        rc = -1;
    } else {
        c->calls_inflight++;
        c->last_activity_ms = kk_now_ms();
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void kk_call_leave(struct kubemq_client *c)
{
    pthread_mutex_lock(&c->mu);
    c->calls_inflight--;
    pthread_mutex_unlock(&c->mu);
}

/* A blocking call on its own pluck queue; *out is the unpacked reply. */
static int unary_blocking(struct kubemq_client *c, const char *method, const ProtobufCMessage *req,
                          const ProtobufCMessageDescriptor *reply_desc, int deadline_ms,
                          uint32_t md_flags, void **out, char *err, size_t errlen)
{
    grpc_completion_queue *cq;
    struct kk_unary u;
    grpc_event ev;
    int rc = -1;

    *out = NULL;
    if (kk_call_enter(c) < 0) {
        snprintf(err, errlen, "kubemq client is shutting down");
        return -1;
    }
    cq = grpc_completion_queue_create_for_pluck(NULL);
    kk_unary_init(&u);
    if (kk_unary_start(c, &u, cq, method, req, deadline_ms, md_flags, &u, err, errlen) < 0) {
        goto done;
    }
    /* The call's deadline guarantees the completion. */
    ev = grpc_completion_queue_pluck(cq, &u, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type != GRPC_OP_COMPLETE || !ev.success) {
        snprintf(err, errlen, "%s: the call failed", method);
    } else if (u.status != GRPC_STATUS_OK) {
        kk_status_text(c, u.status, u.details, err, errlen);
    } else if (!u.recv_bb) {
        snprintf(err, errlen, "%s: no reply message", method);
    } else if (!(*out = kk_unpack(reply_desc, u.recv_bb))) {
        snprintf(err, errlen, "%s: malformed reply message", method);
    } else {
        rc = 0;
    }
done:
    kk_unary_cleanup(&u);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    kk_call_leave(c);
    return rc;
}

static void copy_text(char *dst, size_t n, const char *s)
{
    snprintf(dst, n, "%s", s ? s : "");
}

int kubemq_client_ping(struct kubemq_client *c, int timeout_ms, struct kubemq_ping_result *out,
                       char *err, size_t errlen)
{
    Kubemq__Empty req = KUBEMQ__EMPTY__INIT;
    Kubemq__PingResult *res;

    if (unary_blocking(c, M_PING, &req.base, &kubemq__ping_result__descriptor,
                       timeout_ms > 0 ? timeout_ms : KUBEMQ_RESPONSE_DEADLINE, 0, (void **)&res,
                       err, errlen) < 0) {
        return -1;
    }
    if (out) {
        copy_text(out->host, sizeof(out->host), res->host);
        copy_text(out->version, sizeof(out->version), res->version);
        out->server_start_time = res->serverstarttime;
        out->server_uptime_seconds = res->serveruptimeseconds;
    }
    kubemq__ping_result__free_unpacked(res, NULL);
    return 0;
}

void kubemq_response_free(struct kubemq_response *r)
{
    if (!r) {
        return;
    }
    free(r->error);
    free(r->metadata);
    free(r->body);
    free(r->request_id);
    free(r->client_id);
    memset(r, 0, sizeof(*r));
}

int kubemq_send_request(struct kubemq_client *c, enum kubemq_kind type, const char *channel,
                        const void *body, size_t len, const char *metadata, int timeout_ms,
                        struct kubemq_response *out, char *err, size_t errlen)
{
    Kubemq__Request req = KUBEMQ__REQUEST__INIT;
    Kubemq__Response *res;
    char id[33];

    memset(out, 0, sizeof(*out));
    if (timeout_ms <= 0 || timeout_ms > INT32_MAX - REQUEST_DEADLINE_SLACK_MS) {
        snprintf(err, errlen, "timeout must be between 1 and %d ms",
                 INT32_MAX - REQUEST_DEADLINE_SLACK_MS);
        return -1;
    }
    if (len > KUBEMQ_MAX_MESSAGE) {
        snprintf(err, errlen, "body of %zu bytes is larger than the %d-byte message limit", len,
                 KUBEMQ_MAX_MESSAGE);
        return -1;
    }
    kk_new_id(id);
    req.requestid = id;
    req.requesttypedata = type == KUBEMQ_COMMAND ? KUBEMQ__REQUEST__REQUEST_TYPE__Command
                                                 : KUBEMQ__REQUEST__REQUEST_TYPE__Query;
    req.clientid = c->client_id;
    req.channel = (char *)(channel ? channel : "");
    req.metadata = (char *)(metadata ? metadata : "");
    req.body.data = (uint8_t *)body;
    req.body.len = body ? len : 0;
    req.timeout = timeout_ms;
    if (unary_blocking(c, M_SEND_REQUEST, &req.base, &kubemq__response__descriptor,
                       timeout_ms + REQUEST_DEADLINE_SLACK_MS, 0, (void **)&res, err, errlen) < 0) {
        return -1;
    }
    out->executed = res->executed ? 1 : 0;
    out->error = kk_strdup(res->error);
    out->metadata = kk_strdup(res->metadata);
    out->request_id = kk_strdup(res->requestid);
    out->client_id = kk_strdup(res->clientid);
    out->body = malloc(res->body.len + 1);
    if (out->body) {
        if (res->body.len) {
            memcpy(out->body, res->body.data, res->body.len);
        }
        out->body[res->body.len] = '\0';
        out->body_len = res->body.len;
    }
    kubemq__response__free_unpacked(res, NULL);
    if (!out->error || !out->metadata || !out->request_id || !out->client_id || !out->body) {
        kubemq_response_free(out);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int kubemq_send_queue_message(struct kubemq_client *c, const char *channel, const void *body,
                              size_t len, const char *metadata, char *err, size_t errlen)
{
    Kubemq__QueueMessage m = KUBEMQ__QUEUE_MESSAGE__INIT;
    Kubemq__SendQueueMessageResult *res;
    char id[33];
    int rc = 0;

    if (len > KUBEMQ_MAX_MESSAGE) {
        snprintf(err, errlen, "body of %zu bytes is larger than the %d-byte message limit", len,
                 KUBEMQ_MAX_MESSAGE);
        return -1;
    }
    kk_new_id(id);
    m.messageid = id;
    m.clientid = c->client_id;
    m.channel = (char *)(channel ? channel : "");
    m.metadata = (char *)(metadata ? metadata : "");
    m.body.data = (uint8_t *)body;
    m.body.len = body ? len : 0;
    if (unary_blocking(c, M_SEND_QUEUE, &m.base, &kubemq__send_queue_message_result__descriptor,
                       KUBEMQ_RESPONSE_DEADLINE, GRPC_INITIAL_METADATA_WAIT_FOR_READY,
                       (void **)&res, err, errlen) < 0) {
        return -1;
    }
    if (res->iserror) {
        snprintf(err, errlen, "%s", res->error && *res->error ? res->error : "not sent");
        rc = -1;
    }
    kubemq__send_queue_message_result__free_unpacked(res, NULL);
    return rc;
}

struct response_call {
    struct kk_tag tag;
    struct kubemq_client *client;
    const char *what; /* "response" | "event response", for the log */
    struct kk_unary u;
};

/* Client's thread. */
static void response_done(struct kk_tag *t, int ok)
{
    struct response_call *rc = KK_CONTAINER_OF(t, struct response_call, tag);
    struct kubemq_client *c = rc->client;
    char text[512];

    if (!ok) {
        log_error(c->log_name, "error sending %s: the call failed", rc->what);
    } else if (rc->u.status != GRPC_STATUS_OK) {
        kk_status_text(c, rc->u.status, rc->u.details, text, sizeof(text));
        log_error(c->log_name, "error sending %s: %s", rc->what, text);
    }
    kk_unary_cleanup(&rc->u);
    free(rc);
    kk_call_leave(c);
}

int kubemq_send_response(struct kubemq_client *c, const struct kubemq_request *req, int executed,
                         const char *error_text, const void *body, size_t len, const char *metadata)
{
    Kubemq__Response res = KUBEMQ__RESPONSE__INIT;
    struct response_call *rc;
    char err[256];

    if (len > KUBEMQ_MAX_MESSAGE) {
        log_error(c->log_name,
                  "error sending response: body of %zu bytes is larger than the %d-byte limit", len,
                  KUBEMQ_MAX_MESSAGE);
        return -1;
    }
    if (kk_call_enter(c) < 0) {
        log_error(c->log_name, "error sending response: kubemq client is shutting down");
        return -1;
    }
    rc = calloc(1, sizeof(*rc));
    if (!rc) {
        log_error(c->log_name, "error sending response: out of memory");
        kk_call_leave(c);
        return -1;
    }
    rc->tag.done = response_done;
    rc->client = c;
    rc->what = "response";
    kk_unary_init(&rc->u);
    res.clientid = c->client_id;
    res.requestid = (char *)req->id;
    res.replychannel = (char *)req->reply_channel;
    res.metadata = (char *)(metadata ? metadata : "");
    res.body.data = (uint8_t *)body;
    res.body.len = body ? len : 0;
    res.executed = executed ? 1 : 0;
    res.error = (char *)(error_text ? error_text : "");
    /* Unix seconds, as kubemq-go v1 (the reference's SDK) writes and reads it. */
    res.timestamp = (int64_t)time(NULL);
    /* Packing copies everything out of req and body. */
    if (kk_unary_start(c, &rc->u, c->cq, M_SEND_RESPONSE, &res.base, KUBEMQ_RESPONSE_DEADLINE,
                       GRPC_INITIAL_METADATA_WAIT_FOR_READY, &rc->tag, err, sizeof(err)) < 0) {
        log_error(c->log_name, "error sending response: %s", err);
        kk_unary_cleanup(&rc->u);
        free(rc);
        kk_call_leave(c);
        return -1;
    }
    return 0;
}

int kubemq_send_event(struct kubemq_client *c, int store, const char *channel, const void *body,
                      size_t len, const char *metadata)
{
    Kubemq__Event ev = KUBEMQ__EVENT__INIT;
    struct response_call *rc;
    char id[33], err[256];

    if (len > KUBEMQ_MAX_MESSAGE) {
        log_error(c->log_name,
                  "error sending event response: body of %zu bytes is larger than the %d-byte "
                  "limit",
                  len, KUBEMQ_MAX_MESSAGE);
        return -1;
    }
    if (kk_call_enter(c) < 0) {
        log_error(c->log_name, "error sending event response: kubemq client is shutting down");
        return -1;
    }
    rc = calloc(1, sizeof(*rc));
    if (!rc) {
        log_error(c->log_name, "error sending event response: out of memory");
        kk_call_leave(c);
        return -1;
    }
    rc->tag.done = response_done;
    rc->client = c;
    rc->what = "event response";
    kk_unary_init(&rc->u);
    kk_new_id(id);
    ev.eventid = id;
    ev.clientid = c->client_id;
    ev.channel = (char *)(channel ? channel : "");
    ev.metadata = (char *)(metadata ? metadata : "");
    ev.body.data = (uint8_t *)body;
    ev.body.len = body ? len : 0;
    ev.store = store ? 1 : 0;
    if (kk_unary_start(c, &rc->u, c->cq, M_SEND_EVENT, &ev.base, KUBEMQ_RESPONSE_DEADLINE,
                       GRPC_INITIAL_METADATA_WAIT_FOR_READY, &rc->tag, err, sizeof(err)) < 0) {
        log_error(c->log_name, "error sending event response: %s", err);
        kk_unary_cleanup(&rc->u);
        free(rc);
        kk_call_leave(c);
        return -1;
    }
    return 0;
}

/* Client's thread. */
static void ping_done(struct kk_tag *t, int ok)
{
    struct kubemq_client *c = KK_CONTAINER_OF(t, struct kubemq_client, tag_ping);
    char text[512];

    if (!ok || c->ping.status != GRPC_STATUS_OK) {
        kk_status_text(c, c->ping.status, c->ping.details, text, sizeof(text));
        log_debug(c->log_name, "kubemq: idle ping failed: %s", text);
    }
    pthread_mutex_lock(&c->mu); /* destroy may be cancelling the call */
    kk_unary_cleanup(&c->ping);
    c->ping_inflight = 0;
    pthread_mutex_unlock(&c->mu);
}

/* Client's thread, mu held. The server's reply resets grpc-go's ping
 * strike counter, which keepalive alone trips on an idle connection. */
void kk_ping_start(struct kubemq_client *c)
{
    Kubemq__Empty req = KUBEMQ__EMPTY__INIT;
    char err[256];

    c->tag_ping.done = ping_done;
    kk_unary_init(&c->ping);
    if (kk_unary_start(c, &c->ping, c->cq, M_PING, &req.base, KUBEMQ_RESPONSE_DEADLINE, 0,
                       &c->tag_ping, err, sizeof(err)) < 0) {
        log_debug(c->log_name, "kubemq: idle ping: %s", err);
        kk_unary_cleanup(&c->ping);
        return;
    }
    c->ping_inflight = 1;
    c->last_activity_ms = kk_now_ms();
}
