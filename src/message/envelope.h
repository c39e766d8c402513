/* envelope.h - the request and reply bodies that travel through KubeMQ,
 * as kubemq-targets defines them.
 *
 * Request: {"metadata": {"k": "v", ...}, "data": <base64 | raw string |
 * JSON object | null>}. Reply: {"metadata": {...}, "data": <base64|null>,
 * "is_error": bool, "error": "..."} with metadata keys sorted, as
 * kubemq-targets' aws.kinesis connector writes it. */
#ifndef KK_MESSAGE_ENVELOPE_H
#define KK_MESSAGE_ENVELOPE_H

#include "base/buf.h"

#include <jansson.h>
#include <stddef.h>

/* Largest body we accept: the KubeMQ message limit. */
#define ENVELOPE_MAX_BODY ((size_t)100 << 20)

struct envelope_request {
    json_t *metadata; /* object of string values; never NULL after init */
    struct buf data;  /* the record bytes (decoded) */
    /* data's base64 text as it came, when it came as a base64 string:
     * a target that sends base64 on passes it as it is rather than
     * encoding the bytes again. Empty otherwise. */
    struct buf data_b64;
    int has_data; /* 0 when data was absent or null */
    int not_json; /* the body was not a JSON envelope: data = body */
};

void envelope_request_init(struct envelope_request *r);
void envelope_request_free(struct envelope_request *r);
/* Parse a message body. raw != 0 (do_not_parse_payload): the whole body is
 * the data and metadata stays empty. A body that is not a JSON envelope
 * becomes raw data with empty metadata and not_json set (as kubemq-targets
 * does); the target then reports the missing method with a hint.
 * Returns 0, or -1 with the reason in err ("empty request", "invalid data
 * format, number", "metadata: value of \"k\" must be a string", ...). */
int envelope_request_parse(struct envelope_request *r, const void *body, size_t len, int raw,
                           char *err, size_t errlen);
/* The value of key, or NULL when absent or empty. */
const char *envelope_meta(const struct envelope_request *r, const char *key);
int envelope_meta_set(struct envelope_request *r, const char *key, const char *value);
/* Serialise back as a request envelope (data as base64), for logs/tests. */
int envelope_request_serialize(const struct envelope_request *r, struct buf *out);

struct envelope_reply {
    json_t *metadata; /* object of string values; never NULL after init */
    struct buf data;  /* result bytes (usually the AWS response JSON) */
    int has_data;
    int is_error;
    struct buf error;
    /* Not serialised: the target sets it when the failure is worth
     * retrying (throttling, 5xx, transport); validation errors leave it 0.
     * The binding's retry middleware reads it. */
    int retryable;
    /* Not serialised: the AWS error type ("ThrottlingException",
     * "TransportError", ...) when an AWS error became this reply, else "".
     * The binding's metrics middleware counts it. */
    char error_type[64];
};

void envelope_reply_init(struct envelope_reply *r);
void envelope_reply_free(struct envelope_reply *r);
/* Back to the state of a fresh reply, keeping memory. */
void envelope_reply_reset(struct envelope_reply *r);
int envelope_reply_meta_set(struct envelope_reply *r, const char *key, const char *value);
int envelope_reply_set_data(struct envelope_reply *r, const void *p, size_t n);
/* Sets is_error and the message; metadata and data are kept. */
void envelope_reply_set_error(struct envelope_reply *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int envelope_reply_serialize(const struct envelope_reply *r, struct buf *out);
/* The reply of an error alone, {"metadata":{},"data":null,"is_error":true,
 * "error":text}: what a source answers for a request no target ran. */
int envelope_error_serialize(const char *text, struct buf *out);

#endif
