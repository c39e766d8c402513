/* aws_creds.h - where the AWS credentials come from: the provider chain.
 *
 * Static keys from the config first (aws_key and aws_secret_key, as in
 * kubemq-targets' aws.kinesis connector). Without them, the
 * standard chain, as Fluent Bit and the AWS SDKs do it: environment
 * (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN), shared
 * credentials/config file and profile (aws_creds_profile.c), web identity
 * through STS (aws_creds_sts.c), the container credentials endpoint
 * (aws_creds_http.c), EC2 IMDSv2 (aws_creds_imds.c). The first that yields
 * credentials wins and is cached; credentials with an expiry are fetched
 * again before it, and after an authentication error (at most once per
 * minute). The network providers run on the loop through the client's
 * transport: nothing here blocks. */
#ifndef KK_AWS_CREDS_H
#define KK_AWS_CREDS_H

#include "aws/aws_client.h"
#include "base/loop.h"

#include <stddef.h>
#include <time.h>

/* Our error type for calls that found no credentials. */
#define AWS_ERROR_CREDENTIALS "CredentialsError"

/* Seconds before expiry at which credentials are fetched again (the SDKs'
 * 5 minutes; at most half the lifetime, for short-lived ones). */
#define AWS_CREDS_REFRESH_WINDOW 300
/* Authentication errors trigger a new resolution at most this often. */
#define AWS_CREDS_REJECT_INTERVAL 60
/* After the whole chain failed, calls fail at once for this long. */
#define AWS_CREDS_FAIL_HOLD 5

struct aws_creds {
    char *access_key;
    char *secret_key;
    char *session_token; /* NULL when none */
    const char *source;  /* the provider's name, for logs */
    time_t expiration;   /* 0: does not expire */
};

/* Copies the three strings (token NULL or "": none). 0 or -1 (memory). */
int aws_creds_set(struct aws_creds *c, const char *access_key, const char *secret_key,
                  const char *session_token);
/* Wipes and frees; accepts a zeroed or half-filled struct. */
void aws_creds_free(struct aws_creds *c);
/* Moves src into dst (dst freed first); src is left zeroed. */
void aws_creds_move(struct aws_creds *dst, struct aws_creds *src);
/* An Expiration ("2024-05-01T12:00:00Z"; see timeparse_rfc3339), whole
 * seconds. 0 or -1. */
int aws_creds_parse_time(const char *s, time_t *out);

struct aws_creds_chain;

struct aws_creds_chain_options {
    const char *access_key; /* the config's; NULL or "": use the chain */
    const char *secret_key;
    const char *session_token;
    const char *region;                    /* for the regional STS endpoint */
    const struct aws_transport *transport; /* for the network providers */
    const char *log_name;                  /* binding name for log lines; NULL: none */
    /* Runs on the loop (never inside a chain call) when a resolution
     * ended, with credentials or without: waiting calls ask again. */
    void (*ready)(void *ctx);
    void *ctx;
};

/* Creates the chain and resolves what needs no network (config, env,
 * profile) at once. A network resolution, if needed, starts on the loop
 * right after. Fails (-1 with the reason) when the config's keys are
 * half set, the environment's or the profile's are broken, or no provider
 * can possibly supply credentials. Call on the loop thread (or before the
 * loop runs). */
struct aws_creds_chain *aws_creds_chain_create(struct loop *loop,
                                               const struct aws_creds_chain_options *o, char *err,
                                               size_t errlen);
/* Fetches in flight are abandoned. Accepts NULL. */
void aws_creds_chain_destroy(struct aws_creds_chain *ch);

enum aws_creds_state {
    AWS_CREDS_READY,   /* *out is usable now (until the next chain call) */
    AWS_CREDS_PENDING, /* a resolution runs: wait for ready() */
    AWS_CREDS_FAILED,  /* *why says what was tried */
};

/* The current credentials. Starts a refresh or resolution when due. */
enum aws_creds_state aws_creds_chain_get(struct aws_creds_chain *ch, const struct aws_creds **out,
                                         const char **why);
/* Bumped each time new credentials are installed. */
unsigned aws_creds_chain_generation(const struct aws_creds_chain *ch);
/* An AWS answer refused credentials of generation `gen` (expired token,
 * unknown key, bad signature). Returns 1 when newer credentials exist or
 * a new resolution runs, so the call may be sent again (get() says when);
 * 0 when nothing can change (static config keys, or the last resolution
 * for this reason was less than AWS_CREDS_REJECT_INTERVAL ago). */
int aws_creds_chain_rejected(struct aws_creds_chain *ch, unsigned gen);
/* Whether an AWS error type means the credentials were refused. */
int aws_creds_is_auth_error(const char *error_type);

#endif
