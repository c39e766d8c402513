/* aws_client.h - an AWS JSON-protocol client on the engine loop.
 *
 * POST / with Content-Type application/x-amz-json-1.1, X-Amz-Target and a
 * SigV4 signature (our own signer, sigv4.h), sent through our own HTTP/1.1
 * client on the loop (aws_h1.h; libcurl's multi interface, aws_http.h,
 * when HTTP/2 is asked for or the environment names a proxy):
 * connections are kept alive and reused and many calls are in flight at
 * once. Throttling, 5xx and transport errors
 * are retried with capped exponential backoff and full jitter (as the AWS
 * SDKs do); everything else is handed back at once. */
#ifndef KK_AWS_CLIENT_H
#define KK_AWS_CLIENT_H

#include "base/loop.h"

#include <stddef.h>

struct aws_client;

/* The HTTP exchange, as a seam: unit tests and bench/pipeline replace
 * the HTTP client with a function that answers in memory. */
struct aws_http_request {
    const char *method; /* NULL: "POST"; also "GET", "PUT" */
    const char *url;
    const char *const *headers; /* "Name: value", NULL-terminated */
    const char *body;           /* stays valid until done has run, or until
                                   aws_client_destroy() returns if sooner */
    size_t body_len;
    /* Optional (NULL: ignore): where the transport stores the response's
     * x-amzn-ErrorType header, NUL-terminated ("" when absent), before
     * calling done. */
    char *error_type_hdr;
    size_t error_type_hdr_len;
    long timeout_ms; /* 0: the transport's own; else connect and total time */
    int direct;      /* 1: never through a proxy (link-local credential endpoints) */
};
typedef void (*aws_http_done_fn)(void *cctx, long status, const char *body, size_t len,
                                 const char *transport_error /* NULL unless status 0 */);
struct aws_transport {
    /* Must call done exactly once, on the loop thread (maybe before
     * returning). Returns 0, or -1 if the request could not be started. */
    int (*send)(void *tctx, const struct aws_http_request *req, aws_http_done_fn done, void *cctx);
    void *tctx;
};

struct aws_client_options {
    const char *service;       /* "kinesis": signing name and default host */
    const char *target_prefix; /* "Kinesis_20131202" */
    const char *region;        /* required */
    const char *endpoint;      /* NULL/"": see aws_endpoint_resolve() */
    const char *access_key;    /* NULL/"": the credential chain (aws_creds.h) */
    const char *secret_key;
    const char *session_token; /* NULL/"": none */
    const char *ca_file;       /* NULL/"": AWS_CA_BUNDLE, else system roots */
    long connect_timeout_ms;   /* 0: 5000 */
    long request_timeout_ms;   /* 0: 30000 */
    int max_attempts;          /* 0: 3; 1 = no AWS-level retry */
    long retry_base_ms;        /* 0: 50 */
    long retry_cap_ms;         /* 0: 5000 */
    int http2;
    const struct aws_transport *transport; /* NULL: aws_h1, or libcurl (http2, proxy) */
    const char *log_name;                  /* binding name for log lines; NULL: none */
    size_t max_response_bytes;             /* 0: 20 MiB; larger: ResponseTooLarge */
    long max_connections;                  /* 0: 64 to the endpoint; more calls queue */
};

struct aws_response {
    long status;      /* HTTP status; 0 when no response came */
    const char *body; /* valid only during the callback */
    size_t body_len;
    const char *error_type;    /* NULL on 2xx; "ResourceNotFoundException",
                                  "TransportError", ... otherwise */
    const char *error_message; /* NULL on 2xx; may be "" */
    int attempts;
};

typedef void (*aws_done_fn)(void *ctx, const struct aws_response *resp);

struct aws_client *aws_client_create(struct loop *loop, const struct aws_client_options *o,
                                     char *err, size_t errlen);
/* Calls still in flight (or waiting to retry) are completed with a
 * TransportError first; new calls from those callbacks fail with -1. May
 * be called from a done callback. Accepts NULL and half-built clients. */
void aws_client_destroy(struct aws_client *c);
/* operation: "PutRecord" (sent as <target_prefix>.PutRecord). The body is
 * copied. done runs exactly once on the loop thread, never before this
 * returns. Returns 0, or -1 (done will not run) when out of memory, the
 * operation name is empty or too long, or the client is being destroyed. */
int aws_client_call(struct aws_client *c, const char *operation, const char *body, size_t len,
                    aws_done_fn done, void *ctx);
/* The same without the copy: body must stay unchanged until done has run
 * (large PutRecords bodies are not copied twice). */
int aws_client_call_ref(struct aws_client *c, const char *operation, const char *body, size_t len,
                        aws_done_fn done, void *ctx);
/* Whether an AWS error type is worth retrying (throttling and friends). */
int aws_error_is_retryable(long status, const char *error_type);
/* Full-jitter backoff before retry number `retry` (0 = the first retry):
 * random in [0, min(cap_ms, base_ms * 2^retry)], drawn from `rnd`. */
long aws_backoff_ms(int retry, long base_ms, long cap_ms, unsigned long long rnd);

#endif
