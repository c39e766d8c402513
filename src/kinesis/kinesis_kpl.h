/* kinesis_kpl.h - the KPL aggregation format (proto/kpl_aggregation.proto):
 * many user records in one Kinesis record, and back.
 *
 *   data = F3 89 9A C2 | AggregatedRecord (protobuf) | MD5(protobuf)
 *
 * Packing keeps the exact size as records are added, so an aggregate is
 * closed before it would pass its limit; unpacking checks the magic, the
 * MD5, the protobuf and every table index, and refuses anything else (the
 * caller then passes the record through as it is, as the KCL does). */
#ifndef KK_KINESIS_KPL_H
#define KK_KINESIS_KPL_H

#include "base/buf.h"

#include <stddef.h>
#include <stdint.h>

#define KINESIS_KPL_OVERHEAD 20 /* magic (4) and MD5 (16) around the protobuf */

typedef unsigned __int128 kinesis_u128;

/* MD5 of p[0..n): Kinesis' partition key hash and the format's checksum. */
void kinesis_md5(const void *p, size_t n, unsigned char out[16]);

/* Kinesis' hash of a partition key: MD5 as a 128-bit big-endian number. */
kinesis_u128 kinesis_u128_from_md5(const unsigned char md5[16]);
/* A decimal 0..2^128-1 (no sign, no leading '+'): 0, or -1. */
int kinesis_u128_parse(const char *s, size_t n, kinesis_u128 *out);
/* Decimal text of v into out (40 bytes); returns its length. */
int kinesis_u128_format(kinesis_u128 v, char *out, size_t outlen);

/* An aggregate being filled. Keys are copied in by reference: the caller
 * keeps every pk, ehk and data alive until kinesis_kpl_pack is done. */
struct kinesis_kpl {
    size_t n;       /* records */
    size_t pb_size; /* bytes of the protobuf so far */
    /* tables, deduplicated */
    const char **pk;
    size_t *pk_len;
    size_t npk;
    const char **ehk;
    size_t *ehk_len;
    size_t nehk;
    /* records: table indexes, data */
    size_t *rec_pk, *rec_ehk; /* rec_ehk: SIZE_MAX for none */
    const void **data;
    size_t *data_len;
    size_t cap;
    /* pk lookup: open addressing on the caller's key hash */
    uint64_t *slot_hash;
    size_t *slot_idx; /* index + 1; 0 = empty */
    size_t nslots;
    /* the protobuf-c messages packing builds, kept for the next one */
    void *pb_recs, *pb_ptrs;
    size_t pb_cap;
};

void kinesis_kpl_init(struct kinesis_kpl *a);
void kinesis_kpl_free(struct kinesis_kpl *a);
/* Empty, memory kept. */
void kinesis_kpl_reset(struct kinesis_kpl *a);
/* The record's data bytes (magic, protobuf, MD5) once a record with these
 * sizes is added; ehk NULL for none. key_hash is any hash of pk (equal
 * keys, equal hashes) used to find it in the table. */
size_t kinesis_kpl_size_with(const struct kinesis_kpl *a, const char *pk, size_t pk_len,
                             uint64_t key_hash, const char *ehk, size_t ehk_len, size_t data_len);
/* Add one record: 0, or -1 out of memory (the aggregate unchanged). */
int kinesis_kpl_add(struct kinesis_kpl *a, const char *pk, size_t pk_len, uint64_t key_hash,
                    const char *ehk, size_t ehk_len, const void *data, size_t data_len);
/* The aggregate's data bytes now (KINESIS_KPL_OVERHEAD + protobuf). */
size_t kinesis_kpl_size(const struct kinesis_kpl *a);
/* Append the record's data as base64 to out (raw: scratch space, reused).
 * 0, or -1 (out of memory, out full). */
int kinesis_kpl_pack_b64(struct kinesis_kpl *a, struct buf *raw, struct buf *out);

/* One user record read back out of an aggregate. Strings point into the
 * unpacked message (NUL-terminated); ehk NULL when it has none. */
struct kinesis_kpl_record {
    const char *pk;
    const char *ehk;
    const unsigned char *data;
    size_t data_len;
};

/* Unpack a Kinesis record's data. Returns the user records (count in *n,
 * possibly 0) and the message to free with kinesis_kpl_unpacked_free, or
 * NULL when p is not a valid aggregate: no magic, too short, wrong MD5, a
 * broken protobuf or a table index out of range. */
struct kinesis_kpl_unpacked;
struct kinesis_kpl_unpacked *kinesis_kpl_unpack(const void *p, size_t n);
size_t kinesis_kpl_count(const struct kinesis_kpl_unpacked *u);
void kinesis_kpl_get(const struct kinesis_kpl_unpacked *u, size_t i, struct kinesis_kpl_record *r);
void kinesis_kpl_unpacked_free(struct kinesis_kpl_unpacked *u);

#endif
