/* kinesis_answer.h - reading Kinesis answers the same way on every path.
 *
 * A PutRecord answer and each entry of a PutRecords answer are read into
 * one struct kinesis_entry, either in place (jflat: the usual answer of
 * plain strings, no allocation) or from jansson (anything else); both
 * apply one rule, so they never disagree. A JSON null means absent, as
 * kinesis-mock and LocalStack write `"ErrorCode":null` on success.
 *
 * Timestamps: the wire has epoch seconds (1796609927.182); kubemq-targets'
 * Go connector answered Go's JSON of a time.Time. kinesis_times_rewrite
 * turns every number member named *Timestamp into that form. */
#ifndef KK_KINESIS_ANSWER_H
#define KK_KINESIS_ANSWER_H

#include "base/buf.h"

#include <jansson.h>
#include <stddef.h>

/* One record's result. The strings point into the answer (or its jansson
 * tree); NULL when absent, null or empty. */
struct kinesis_entry {
    const char *shard, *seq, *code, *message;
    size_t shard_n, seq_n, code_n, message_n;
    int ok; /* a sequence number and a shard id, and no error code */
};

/* The top-level members of a PutRecords answer besides Records. */
struct kinesis_answer {
    const char *encryption; /* EncryptionType; NULL when absent or null */
    size_t encryption_n;
    long long failed_count; /* FailedRecordCount; -1 when absent or null */
};

/* PutRecords answer with exactly n entries into e[0..n), read in place.
 * Returns 0, or -1 when jansson must read it (escapes, nesting, numbers
 * in entries, a different count: kinesis_entries_json decides). */
int kinesis_entries_fast(const char *body, size_t len, struct kinesis_entry *e, size_t n,
                         struct kinesis_answer *a);
/* The same from a parsed answer. Returns 0, or -1 when Records is not an
 * array of n values (an entry that is not an object is a failed entry). */
int kinesis_entries_json(const json_t *root, struct kinesis_entry *e, size_t n,
                         struct kinesis_answer *a);
/* One result object (a PutRecords entry or a PutRecord answer). */
void kinesis_entry_from_json(const json_t *o, struct kinesis_entry *e);
/* A PutRecord answer, read in place: 0, or -1 for kinesis_entry_from_json. */
int kinesis_entry_fast(const char *body, size_t len, struct kinesis_entry *e);

enum kinesis_time_format {
    KINESIS_TIME_RFC3339 = 0, /* as Go writes a time.Time */
    KINESIS_TIME_EPOCH = 1,   /* the wire's seconds, as they came */
};

/* Epoch seconds as JSON number text (num[0..n)) -> Go's time.Time text:
 * UTC, RFC 3339 with the fraction to the millisecond (rounded, as the
 * AWS SDK for Go reads the wire), trailing zeros trimmed:
 * "2026-12-07T01:53:15.51Z", "2026-12-07T01:53:15Z". Returns the length,
 * or -1 when it is not a number or the year falls outside 0..9999 (Go
 * refuses to write those). out needs 32 bytes. */
int kinesis_time_go(const char *num, size_t n, char *out, size_t outlen);

/* Append p[0..n) to out with the number value of every member whose name
 * ends in "Timestamp" replaced by Go's time text in quotes (other values
 * and everything else byte for byte). Returns the number replaced, or -1
 * (an unterminated string, or out full; out then holds part of it). */
int kinesis_times_rewrite(const char *p, size_t n, struct buf *out);
/* Whether p[0..n) may hold such a member (cheap; false means none). */
int kinesis_times_maybe(const char *p, size_t n);

#endif
