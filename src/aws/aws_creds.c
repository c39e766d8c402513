/* aws_creds.c - AWS credentials: config keys, then the environment. */
#include "aws/aws_creds.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int set(char **dst, const char *s)
{
    *dst = strdup(s);
    return *dst ? 0 : -1;
}

static int nonempty(const char *s)
{
    return s && *s;
}

int aws_creds_resolve(struct aws_creds *out, const char *access_key, const char *secret_key,
                      const char *session_token, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (nonempty(access_key) || nonempty(secret_key)) {
        if (!nonempty(access_key) || !nonempty(secret_key)) {
            snprintf(err, errlen, "aws credentials: %s is set but %s is empty",
                     nonempty(access_key) ? "the access key" : "the secret key",
                     nonempty(access_key) ? "the secret key" : "the access key");
            return -1;
        }
        out->source = "config";
    } else {
        access_key = getenv("AWS_ACCESS_KEY_ID");
        secret_key = getenv("AWS_SECRET_ACCESS_KEY");
        session_token = getenv("AWS_SESSION_TOKEN");
        if (!nonempty(access_key) && !nonempty(secret_key)) {
            snprintf(err, errlen,
                     "aws credentials: none found: set the access and secret key in the "
                     "binding, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment");
            return -1;
        }
        if (!nonempty(access_key) || !nonempty(secret_key)) {
            snprintf(err, errlen, "aws credentials: %s is set but %s is empty",
                     nonempty(access_key) ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                     nonempty(access_key) ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
            return -1;
        }
        out->source = "environment";
    }
    if (set(&out->access_key, access_key) < 0 || set(&out->secret_key, secret_key) < 0 ||
        (nonempty(session_token) && set(&out->session_token, session_token) < 0)) {
        aws_creds_free(out);
        snprintf(err, errlen, "aws credentials: out of memory");
        return -1;
    }
    return 0;
}

static void wipe(char **s)
{
    if (*s) {
        OPENSSL_cleanse(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

void aws_creds_free(struct aws_creds *c)
{
    if (!c) {
        return;
    }
    wipe(&c->access_key);
    wipe(&c->secret_key);
    wipe(&c->session_token);
}
