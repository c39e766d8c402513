/* kubemq_wire.c - protobuf-c messages framed for a stream, ids, delivered requests.
 *
 * A message to send is packed once, straight behind its gRPC prefix, into
 * the buffer the stream sends from; a received one is unpacked by
 * protobuf-c, which copies what it keeps, and a delivered request or event
 * points into that unpacked message until kubemq_request_free(). */
#include "kubemq/kubemq_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct kubemq_out *kubemq_wire_frame(const ProtobufCMessage *m, int *status, char *err,
                                     size_t errlen)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    struct kubemq_out *o;

    if (n > KUBEMQ_MAX_MESSAGE) {
        *status = KUBEMQ_STATUS_RESOURCE_EXHAUSTED;
        snprintf(err, errlen, "message of %zu bytes is larger than the %d-byte limit", n,
                 KUBEMQ_MAX_MESSAGE);
        return NULL;
    }
    o = malloc(sizeof(*o) + KUBEMQ_PREFIX_LEN + n);
    if (!o) {
        *status = KUBEMQ_STATUS_RESOURCE_EXHAUSTED;
        snprintf(err, errlen, "out of memory for a %zu-byte message", n);
        return NULL;
    }
    o->next = NULL;
    o->len = KUBEMQ_PREFIX_LEN + n;
    kubemq_grpc_prefix(o->data, n);
    protobuf_c_message_pack(m, o->data + KUBEMQ_PREFIX_LEN);
    return o;
}

void *kubemq_wire_unpack(const ProtobufCMessageDescriptor *d, const unsigned char *p, size_t n)
{
    return protobuf_c_message_unpack(d, NULL, n, p);
}

char *kubemq_wire_strdup(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    char *p = malloc(n + 1);

    if (p) {
        if (n) {
            memcpy(p, s, n);
        }
        p[n] = '\0';
    }
    return p;
}

static int is_event_kind(enum kubemq_kind k)
{
    return k == KUBEMQ_EVENTS || k == KUBEMQ_EVENTS_STORE;
}

struct kubemq_request *kubemq_wire_request(enum kubemq_kind sub_type, ProtobufCMessage *m)
{
    struct kubemq_request *r = calloc(1, sizeof(*r));

    if (!r) {
        return NULL;
    }
    r->priv = m;
    r->reply_channel = "";
    r->client_id = "";
    if (is_event_kind(sub_type)) {
        Kubemq__EventReceive *e = (Kubemq__EventReceive *)m;

        r->type = sub_type;
        r->id = e->eventid;
        r->channel = e->channel;
        r->metadata = e->metadata;
        r->body = e->body.data ? e->body.data : (const unsigned char *)"";
        r->body_len = e->body.len;
        if (sub_type == KUBEMQ_EVENTS_STORE) {
            r->sequence = e->sequence;
            r->timestamp = e->timestamp;
        }
    } else {
        Kubemq__Request *q = (Kubemq__Request *)m;

        if (q->requesttypedata == KUBEMQ__REQUEST__REQUEST_TYPE__Command) {
            r->type = KUBEMQ_COMMAND;
        } else if (q->requesttypedata == KUBEMQ__REQUEST__REQUEST_TYPE__Query) {
            r->type = KUBEMQ_QUERY;
        } else {
            r->type = sub_type;
        }
        r->id = q->requestid;
        r->channel = q->channel;
        r->reply_channel = q->replychannel;
        r->client_id = q->clientid;
        r->metadata = q->metadata;
        r->body = q->body.data ? q->body.data : (const unsigned char *)"";
        r->body_len = q->body.len;
        r->timeout_ms = q->timeout;
    }
    return r;
}

void kubemq_request_free(struct kubemq_request *req)
{
    if (!req) {
        return;
    }
    if (req->priv) {
        protobuf_c_message_free_unpacked(req->priv, NULL);
    }
    free(req);
}

const char *kubemq_kind_name(enum kubemq_kind k)
{
    switch (k) {
    case KUBEMQ_COMMAND:
        return "command";
    case KUBEMQ_EVENTS:
        return "events";
    case KUBEMQ_EVENTS_STORE:
        return "events_store";
    default:
        return "query";
    }
}
