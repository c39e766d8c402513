/* aws_creds_internal.h - the credential providers behind the chain.
 *
 * For aws_creds.c (the chain) and the tests; nothing else includes this.
 * Local providers answer at once: 1 with credentials, 0 with a short
 * reason when they have none ("no file"), -1 when they are set but broken
 * (a message naming what). Network providers start a fetch on the loop and
 * answer through a callback, never from inside their start function. */
#ifndef KK_AWS_CREDS_INTERNAL_H
#define KK_AWS_CREDS_INTERNAL_H

#include "aws/aws_creds.h"
#include "aws/aws_endpoint.h"
#include "base/buf.h"
#include "base/loop.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Per-request timeouts of the network providers (ms), and how long a
 * credential_process may run (Fluent Bit's 60 s). */
#define AWS_CREDS_IMDS_TIMEOUT_MS    1000
#define AWS_CREDS_HTTP_TIMEOUT_MS    5000
#define AWS_CREDS_STS_TIMEOUT_MS     10000
#define AWS_CREDS_PROCESS_TIMEOUT_MS 60000
/* Largest credentials answer or token file we accept. */
#define AWS_CREDS_MAX_DOC ((size_t)64 << 10)

/* got: the credentials (the callee may take them with aws_creds_move), or
 * NULL and why: the reason, without the provider's name. */
typedef void (*aws_creds_got_fn)(void *ctx, struct aws_creds *got, const char *why);

struct aws_creds_net {
    struct loop *loop;
    const struct aws_transport *transport;
    const char *region;
};

/* ---- local providers ---- */

/* AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN. */
int aws_creds_env_load(struct aws_creds *out, char *why, size_t whylen);

/* `profile "name"`: the profile in use, for messages. */
void aws_creds_profile_label(char *out, size_t len);
/* The profile's static keys (credentials file first, then config file).
 * 2: the profile has no keys but a credential_process, handed back in
 * *process (malloc'd) for aws_creds_process_start. */
int aws_creds_profile_load(struct aws_creds *out, char **process, char *why, size_t whylen);

/* ---- network providers ---- */

struct aws_creds_fetch;
typedef void (*aws_creds_response_fn)(struct aws_creds_fetch *f, long status, const char *body,
                                      size_t len, const char *terr);

/* One fetch: a few HTTP requests in a row (or a child process). */
struct aws_creds_fetch {
    struct aws_creds_net net;
    aws_creds_got_fn got;
    void *ctx;
    int in_flight; /* the transport holds a request */
    int cancelled; /* abandoned while in flight: freed when it answers */
    int step;      /* the provider's own */
    aws_creds_response_fn on_response;
    char url[AWS_ENDPOINT_URL_MAX];
    struct buf hdrs; /* header lines, NUL-separated (may hold tokens: wiped) */
    const char *hdr_ptrs[8];
    size_t nhdrs;
    struct buf body; /* request body (may hold a token: wiped) */
    char base[AWS_ENDPOINT_URL_MAX];
    struct buf secret; /* e.g. the IMDS session token (wiped) */
    char role[256];
    /* an answer that came inside transport->send, delivered from a timer */
    struct loop_timer timer;
    long sync_status;
    struct buf sync_body;
    char sync_terr[512];
    int sync_has_terr;
    /* credential_process */
    void (*abandon)(struct aws_creds_fetch *f);
    pid_t pid;
    int fd;
    struct buf out;
    uint64_t deadline_ms;
};

/* Whether the provider is configured at all (environment only, no I/O):
 * 1, or 0 with the reason ("AWS_ROLE_ARN not set"). */
int aws_creds_sts_applies(char *why, size_t whylen);
int aws_creds_http_applies(char *why, size_t whylen);
int aws_creds_imds_applies(char *why, size_t whylen);

/* Start a fetch. 0: *out is the fetch in flight and got() will run later,
 * exactly once (unless cancelled). -1: nothing started, why says why. */
int aws_creds_sts_start(const struct aws_creds_net *net, aws_creds_got_fn got, void *ctx,
                        struct aws_creds_fetch **out, char *why, size_t whylen);
int aws_creds_http_start(const struct aws_creds_net *net, aws_creds_got_fn got, void *ctx,
                         struct aws_creds_fetch **out, char *why, size_t whylen);
int aws_creds_imds_start(const struct aws_creds_net *net, aws_creds_got_fn got, void *ctx,
                         struct aws_creds_fetch **out, char *why, size_t whylen);
/* Runs `command` with /bin/sh, reads its JSON (Version 1) from stdout. */
int aws_creds_process_start(const struct aws_creds_net *net, const char *command,
                            aws_creds_got_fn got, void *ctx, struct aws_creds_fetch **out,
                            char *why, size_t whylen);

/* Abandon a fetch: got() will not run. Accepts NULL. */
void aws_creds_fetch_cancel(struct aws_creds_fetch *f);

/* ---- for the providers (aws_creds_fetch.c) ---- */

struct aws_creds_fetch *aws_creds_fetch_new(const struct aws_creds_net *net, aws_creds_got_fn got,
                                            void *ctx);
void aws_creds_fetch_free(struct aws_creds_fetch *f);
/* Drop the previous request's headers / add one "Name: value" line. */
void aws_creds_fetch_reset_headers(struct aws_creds_fetch *f);
int aws_creds_fetch_header(struct aws_creds_fetch *f, const char *name, const char *value);
/* Send f->url with the headers and f->body. on_response runs later on
 * the loop, never inside this call. 0, or -1 when it could not start. */
int aws_creds_fetch_send(struct aws_creds_fetch *f, const char *method, long timeout_ms, int direct,
                         aws_creds_response_fn on_response);
/* Answer the chain and free f: got = NULL means failure with the
 * printf-style reason. */
void aws_creds_fetch_finish(struct aws_creds_fetch *f, struct aws_creds *got, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A short reason for a failed exchange: "timeout", "HTTP 403: <excerpt>",
 * the transport's error. */
void aws_creds_describe_failure(long status, const char *body, size_t len, const char *terr,
                                char *out, size_t outlen);
/* {"AccessKeyId","SecretAccessKey",<token_field>,"Expiration"} (container
 * endpoint, IMDS, credential_process). 0, or -1 with a reason. */
int aws_creds_from_json(const char *body, size_t len, const char *token_field,
                        struct aws_creds *out, char *why, size_t whylen);
/* Read a small file (token files): trimmed, at most AWS_CREDS_MAX_DOC.
 * 0, or -1 with a reason. The caller wipes and frees *out. */
int aws_creds_read_file(const char *path, char **out, char *why, size_t whylen);
/* Whether v is "true" (any case). */
int aws_creds_env_true(const char *name);

#endif
