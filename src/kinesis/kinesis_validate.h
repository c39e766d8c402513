/* kinesis_validate.h - client-side checks with the Kinesis limits.
 *
 * Every check takes the metadata key it is checking so that the message
 * names it: "<key>: <rule>" (e.g. "partition_key: must be 1 to 256
 * characters"). They never touch the network. */
#ifndef KK_KINESIS_VALIDATE_H
#define KK_KINESIS_VALIDATE_H

#include <stddef.h>

#define KINESIS_MAX_RECORD        ((size_t)1 << 20) /* data + partition key */
#define KINESIS_MAX_BATCH_RECORDS 500
#define KINESIS_MAX_BATCH_BYTES   ((size_t)5 << 20)
#define KINESIS_MAX_LIMIT         10000
#define KINESIS_MAX_SHARD_COUNT   100000
#define KINESIS_MAX_PARTITION_KEY 256

/* Stream, consumer and shard names: [a-zA-Z0-9_.-]{1,128}. */
int kinesis_check_name(const char *key, const char *v, char *err, size_t errlen);
/* 1 to 256 characters (UTF-8 code points). */
int kinesis_check_partition_key(const char *key, const char *v, char *err, size_t errlen);
int kinesis_check_partition_keyn(const char *key, const char *v, size_t n, char *err,
                                 size_t errlen);
/* A decimal 0 .. 2^128-1 without leading zeros. */
int kinesis_check_hash_key(const char *key, const char *v, char *err, size_t errlen);
/* A sequence number: 0|[1-9][0-9]{0,128}. */
int kinesis_check_sequence_number(const char *key, const char *v, char *err, size_t errlen);
/* One of the five GetShardIterator types. */
int kinesis_check_iterator_type(const char *key, const char *v, char *err, size_t errlen);
/* An ARN: starts with "arn:", at most 2048 characters. */
int kinesis_check_arn(const char *key, const char *v, char *err, size_t errlen);
/* A paging token: 1 to 1048576 characters. */
int kinesis_check_token(const char *key, const char *v, char *err, size_t errlen);
/* RFC 3339 date-time or epoch seconds (may have a fraction): *out is
 * epoch seconds. */
int kinesis_parse_timestamp(const char *key, const char *v, double *out, char *err, size_t errlen);

/* Number of UTF-8 code points in s[0..n). */
size_t kinesis_utf8_chars(const char *s, size_t n);
/* Does the type need StartingSequenceNumber / Timestamp? */
int kinesis_iterator_needs_sequence(const char *type);
int kinesis_iterator_needs_timestamp(const char *type);

#endif
