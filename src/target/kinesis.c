/* kinesis.c - the aws.kinesis target: settings and instance lifecycle.
 * (Methods land with the Kinesis target issue.) */
#include "target/kinesis.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct kinesis_options {
    char *aws_key;
    char *aws_secret_key;
    char *region;
    char *token;
    char *endpoint;
};

static const struct settings_entry kinesis_settings[] = {
    {"aws_key", SETTINGS_STRING, "", 0, 0, 0, NULL, offsetof(struct kinesis_options, aws_key),
     NULL, "AWS access key id; when empty, the standard AWS credential chain is used"},
    {"aws_secret_key", SETTINGS_STRING, "", SETTINGS_SECRET, 0, 0, NULL,
     offsetof(struct kinesis_options, aws_secret_key), NULL, "AWS secret access key"},
    {"region", SETTINGS_STRING, "", 0, 0, 0, NULL, offsetof(struct kinesis_options, region), NULL,
     "AWS region; default AWS_REGION, else us-east-1"},
    {"token", SETTINGS_STRING, "", SETTINGS_SECRET, 0, 0, NULL,
     offsetof(struct kinesis_options, token), NULL, "AWS session token"},
    {"endpoint", SETTINGS_STRING, "", 0, 0, 0, NULL, offsetof(struct kinesis_options, endpoint),
     NULL, "endpoint URL override (else AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL)"},
    {NULL, 0, NULL, 0, 0, 0, NULL, 0, NULL, NULL},
};

static const char *const kinesis_aliases[] = {"target.aws.kinesis", NULL};
static const char *const kinesis_deprecated[] = {"target.aws.kenisis", NULL};

static void *kinesis_create(struct loop *loop, const json_t *props, const char *binding,
                            const char *where, struct errs *errs)
{
    struct kinesis_options o;

    (void)loop;
    (void)binding;
    memset(&o, 0, sizeof(o));
    settings_apply(kinesis_settings, props, &o, where, errs);
    settings_free(kinesis_settings, &o);
    return NULL;
}

static void kinesis_destroy(void *instance)
{
    (void)instance;
}

static void kinesis_execute(void *instance, const struct envelope_request *req,
                            struct envelope_reply *reply, target_done_fn done, void *ctx)
{
    (void)instance;
    (void)req;
    envelope_reply_set_error(reply, "aws.kinesis: not built yet");
    done(ctx);
}

const struct target_kind kinesis_target_kind = {
    .kind = "aws.kinesis",
    .aliases = kinesis_aliases,
    .deprecated = kinesis_deprecated,
    .settings = kinesis_settings,
    .create = kinesis_create,
    .destroy = kinesis_destroy,
    .execute = kinesis_execute,
};
