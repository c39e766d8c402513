/* kinesis_admin.c - stream, shard and consumer methods: one AWS call each,
 * the reply is the AWS response as it is. */
#include "kinesis/kinesis_internal.h"
#include "kinesis/kinesis_validate.h"

/* Shared optional paging keys: limit -> the operation's limit member. */
static int paging(struct kinesis_call *c, const char *limit_member, const char **token)
{
    long long limit = 0;
    int has_limit = 0;

    if (kinesis_arg_int(c, "limit", 1, KINESIS_MAX_LIMIT, &limit, &has_limit) < 0 ||
        kinesis_arg(c, "next_token", 0, kinesis_check_token, token) < 0) {
        return -1;
    }
    if (has_limit) {
        kinesis_body_int(c, limit_member, limit);
    }
    return 0;
}

void kinesis_list_streams(struct kinesis_call *c)
{
    const char *token, *start;

    kinesis_body_begin(c);
    if (paging(c, "Limit", &token) < 0 ||
        kinesis_arg(c, "exclusive_start_stream_name", 0, kinesis_check_name, &start) < 0) {
        kinesis_call_finish(c);
        return;
    }
    if (token) {
        kinesis_body_str(c, "NextToken", token);
    }
    if (start) {
        kinesis_body_str(c, "ExclusiveStartStreamName", start);
    }
    kinesis_body_end(c);
    kinesis_call_send(c, "ListStreams", kinesis_step_plain);
}

void kinesis_create_stream(struct kinesis_call *c)
{
    const char *stream;
    long long shards = 1;

    if (kinesis_arg_stream(c, 1, &stream) < 0 ||
        kinesis_arg_int(c, "shard_count", 1, KINESIS_MAX_SHARD_COUNT, &shards, NULL) < 0) {
        kinesis_call_finish(c);
        return;
    }
    kinesis_body_begin(c);
    kinesis_body_str(c, "StreamName", stream);
    kinesis_body_int(c, "ShardCount", shards);
    kinesis_body_end(c);
    kinesis_call_send(c, "CreateStream", kinesis_step_plain);
}

void kinesis_delete_stream(struct kinesis_call *c)
{
    const char *stream;
    int enforce = 0, has_enforce = 0;

    if (kinesis_arg_stream(c, 1, &stream) < 0 ||
        kinesis_arg_bool(c, "enforce_consumer_deletion", &enforce, &has_enforce) < 0) {
        kinesis_call_finish(c);
        return;
    }
    kinesis_body_begin(c);
    kinesis_body_str(c, "StreamName", stream);
    if (has_enforce) {
        kinesis_body_raw(c, "EnforceConsumerDeletion", enforce ? "true" : "false");
    }
    kinesis_body_end(c);
    kinesis_call_send(c, "DeleteStream", kinesis_step_plain);
}

void kinesis_describe_stream(struct kinesis_call *c)
{
    const char *stream;

    if (kinesis_arg_stream(c, 1, &stream) < 0) {
        kinesis_call_finish(c);
        return;
    }
    kinesis_body_begin(c);
    kinesis_body_str(c, "StreamName", stream);
    kinesis_body_end(c);
    kinesis_call_send(c, "DescribeStreamSummary", kinesis_step_plain);
}

void kinesis_list_shards(struct kinesis_call *c)
{
    const char *stream, *arn, *token;

    kinesis_body_begin(c);
    if (kinesis_arg_stream(c, 0, &stream) < 0 ||
        kinesis_arg(c, "stream_arn", 0, kinesis_check_arn, &arn) < 0 ||
        paging(c, "MaxResults", &token) < 0) {
        kinesis_call_finish(c);
        return;
    }
    if (token) {
        /* AWS refuses StreamName together with NextToken: the token
         * already names the stream. */
        kinesis_body_str(c, "NextToken", token);
    } else if (!stream && !arn) {
        kinesis_call_fail(c, "stream_name: is required for list_shards (or stream_arn, or "
                             "next_token from an earlier page)");
        return;
    } else {
        if (stream) {
            kinesis_body_str(c, "StreamName", stream);
        }
        if (arn) {
            kinesis_body_str(c, "StreamARN", arn);
        }
    }
    kinesis_body_end(c);
    kinesis_call_send(c, "ListShards", kinesis_step_plain);
}

void kinesis_list_stream_consumers(struct kinesis_call *c)
{
    const char *arn, *token;

    kinesis_body_begin(c);
    if (kinesis_arg(c, "stream_arn", 1, kinesis_check_arn, &arn) < 0) {
        kinesis_call_finish(c);
        return;
    }
    kinesis_body_str(c, "StreamARN", arn);
    if (paging(c, "MaxResults", &token) < 0) {
        kinesis_call_finish(c);
        return;
    }
    if (token) {
        kinesis_body_str(c, "NextToken", token);
    }
    kinesis_body_end(c);
    kinesis_call_send(c, "ListStreamConsumers", kinesis_step_plain);
}

void kinesis_create_stream_consumer(struct kinesis_call *c)
{
    const char *arn, *name;

    if (kinesis_arg(c, "stream_arn", 1, kinesis_check_arn, &arn) < 0 ||
        kinesis_arg(c, "consumer_name", 1, kinesis_check_name, &name) < 0) {
        kinesis_call_finish(c);
        return;
    }
    kinesis_body_begin(c);
    kinesis_body_str(c, "StreamARN", arn);
    kinesis_body_str(c, "ConsumerName", name);
    kinesis_body_end(c);
    kinesis_call_send(c, "RegisterStreamConsumer", kinesis_step_plain);
}
