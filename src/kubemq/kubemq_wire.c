/* kubemq_wire.c - protobuf-c messages in gRPC byte buffers, status texts, ids. */
#include "kubemq/kubemq_internal.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

uint64_t kk_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

grpc_byte_buffer *kk_pack(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(n);
    grpc_byte_buffer *bb;

    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

void *kk_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader r;
    grpc_slice s;
    ProtobufCMessage *m;

    if (!grpc_byte_buffer_reader_init(&r, bb)) {
        return NULL;
    }
    s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    m = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    return m;
}

static const char *const status_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *kk_status_name(grpc_status_code status)
{
    if ((int)status >= 0 && (size_t)status < sizeof(status_names) / sizeof(status_names[0])) {
        return status_names[status];
    }
    return "STATUS";
}

void kk_status_text(const struct kubemq_client *c, grpc_status_code status, grpc_slice details,
                    char *dst, size_t dstlen)
{
    int n = (int)GRPC_SLICE_LENGTH(details);
    const char *d = (const char *)GRPC_SLICE_START_PTR(details);

    if (!dst || !dstlen) {
        return;
    }
    /* KubeMQ's own errors ("Error 301: ...") read best as they are. */
    if (status == GRPC_STATUS_INTERNAL && n > 6 && memcmp(d, "Error ", 6) == 0) {
        snprintf(dst, dstlen, "%.*s", n, d);
    } else if (status == GRPC_STATUS_UNAVAILABLE) {
        snprintf(dst, dstlen, "kubemq at %s unavailable: %.*s", c->address, n, d);
    } else {
        snprintf(dst, dstlen, "%s (%d): %.*s", kk_status_name(status), (int)status, n, d);
    }
}

void kk_new_id(char out[33])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[16];
    size_t i;

    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        /* Unique enough for a request id when the pool is unavailable. */
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        memset(r, 0, sizeof(r));
        memcpy(r, &ts, sizeof(ts) < sizeof(r) ? sizeof(ts) : sizeof(r));
    }
    for (i = 0; i < sizeof(r); i++) {
        out[2 * i] = hex[r[i] >> 4];
        out[2 * i + 1] = hex[r[i] & 15];
    }
    out[32] = '\0';
}

char *kk_strdup(const char *s)
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
