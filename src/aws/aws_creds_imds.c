/* aws_creds_imds.c - EC2 instance metadata (IMDSv2): the instance role.
 *
 * PUT /latest/api/token (X-aws-ec2-metadata-token-ttl-seconds), then with
 * that token GET /latest/meta-data/iam/security-credentials/ (the role's
 * name) and .../<role> (JSON). Endpoint AWS_EC2_METADATA_SERVICE_ENDPOINT,
 * else http://169.254.169.254 ([fd00:ec2::254] with
 * AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6); AWS_EC2_METADATA_DISABLED=true
 * skips it. 1 s per request: off EC2 nothing answers, and the chain's
 * failure should come quickly. IMDSv1 (no token) is never used. */
#include "aws/aws_creds_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IMDS_TOKEN_TTL "21600"
#define IMDS_CREDS     "/latest/meta-data/iam/security-credentials/"

enum { STEP_TOKEN, STEP_ROLE, STEP_CREDS };

int aws_creds_imds_applies(char *why, size_t whylen)
{
    if (aws_creds_env_true("AWS_EC2_METADATA_DISABLED")) {
        snprintf(why, whylen, "disabled by AWS_EC2_METADATA_DISABLED");
        return 0;
    }
    return 1;
}

static int next_request(struct aws_creds_fetch *f, int step, const char *path);

static void on_answer(struct aws_creds_fetch *f, long status, const char *body, size_t len,
                      const char *terr)
{
    static const char *const what[] = {"token", "role name", "role credentials"};
    struct aws_creds got;
    char why[512];
    size_t n;

    if (terr || status != 200) {
        aws_creds_describe_failure(status, body, len, terr, why, sizeof(why));
        if (f->step == STEP_ROLE && status == 404) {
            aws_creds_fetch_finish(f, NULL, "no IAM role attached to the instance");
        } else if (f->step == STEP_TOKEN && terr) {
            aws_creds_fetch_finish(f, NULL, "%s", why); /* "timeout": not on EC2 */
        } else {
            aws_creds_fetch_finish(f, NULL, "%s: %s", what[f->step], why);
        }
        return;
    }
    switch (f->step) {
    case STEP_TOKEN:
        if (!len || len > 4096 || memchr(body, '\n', len) || memchr(body, '\r', len) ||
            buf_set(&f->secret, body, len) < 0) {
            aws_creds_fetch_finish(f, NULL, "unusable token answer");
            return;
        }
        if (next_request(f, STEP_ROLE, "") < 0) {
            aws_creds_fetch_finish(f, NULL, "could not start the role name request");
        }
        return;
    case STEP_ROLE:
        for (n = 0; n < len && body[n] != '\n' && body[n] != '\r'; n++) {
        }
        if (!n || n >= sizeof(f->role) || memchr(body, '/', n) || memchr(body, ' ', n)) {
            aws_creds_fetch_finish(f, NULL, "unusable role name answer");
            return;
        }
        memcpy(f->role, body, n);
        f->role[n] = '\0';
        if (next_request(f, STEP_CREDS, f->role) < 0) {
            aws_creds_fetch_finish(f, NULL, "could not start the credentials request");
        }
        return;
    default:
        if (aws_creds_from_json(body, len, "Token", &got, why, sizeof(why)) < 0) {
            aws_creds_fetch_finish(f, NULL, "role %s: %s", f->role, why);
            return;
        }
        aws_creds_fetch_finish(f, &got, "%s", "");
        aws_creds_free(&got);
    }
}

static int next_request(struct aws_creds_fetch *f, int step, const char *path)
{
    int n;

    f->step = step;
    aws_creds_fetch_reset_headers(f);
    buf_reset(&f->body);
    if (step == STEP_TOKEN) {
        n = snprintf(f->url, sizeof(f->url), "%s/latest/api/token", f->base);
        if (n < 0 || (size_t)n >= sizeof(f->url) ||
            aws_creds_fetch_header(f, "X-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL) < 0) {
            return -1;
        }
        return aws_creds_fetch_send(f, "PUT", AWS_CREDS_IMDS_TIMEOUT_MS, 1, on_answer);
    }
    n = snprintf(f->url, sizeof(f->url), "%s" IMDS_CREDS "%s", f->base, path);
    if (n < 0 || (size_t)n >= sizeof(f->url) ||
        aws_creds_fetch_header(f, "X-aws-ec2-metadata-token", buf_str(&f->secret)) < 0) {
        return -1;
    }
    return aws_creds_fetch_send(f, "GET", AWS_CREDS_IMDS_TIMEOUT_MS, 1, on_answer);
}

int aws_creds_imds_start(const struct aws_creds_net *net, aws_creds_got_fn got, void *ctx,
                         struct aws_creds_fetch **out, char *why, size_t whylen)
{
    const char *ep = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    const char *mode = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
    struct aws_endpoint parsed;
    struct aws_creds_fetch *f;
    char err[512];
    size_t n;

    *out = NULL;
    if (!aws_creds_imds_applies(why, whylen)) {
        return -1;
    }
    if (!ep || !*ep) {
        ep =
            mode && !strcasecmp(mode, "IPv6") ? "http://[fd00:ec2::254]" : "http://169.254.169.254";
    }
    if (aws_endpoint_parse(ep, &parsed, err, sizeof(err)) < 0) {
        snprintf(why, whylen, "AWS_EC2_METADATA_SERVICE_ENDPOINT: %s", err);
        return -1;
    }
    f = aws_creds_fetch_new(net, got, ctx);
    if (!f) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    snprintf(f->base, sizeof(f->base), "%s", ep);
    n = strlen(f->base);
    while (n && f->base[n - 1] == '/') {
        f->base[--n] = '\0';
    }
    if (next_request(f, STEP_TOKEN, "") < 0) {
        snprintf(why, whylen, "could not start the token request");
        aws_creds_fetch_free(f);
        return -1;
    }
    *out = f;
    return 0;
}
