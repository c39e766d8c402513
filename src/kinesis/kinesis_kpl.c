/* kinesis_kpl.c - the KPL aggregation format: pack with exact sizes,
 * unpack with every check (kinesis_kpl.h). */
#include "kinesis/kinesis_kpl.h"

#include "base/b64.h"
#include "kpl_aggregation.pb-c.h"

/* MD5_Init and friends: a fraction of EVP's cost for short partition keys
 * (OpenSSL 3 marks them deprecated, not gone), and no provider to fetch. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/md5.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char magic[4] = {0xF3, 0x89, 0x9A, 0xC2};

/* ------------------------------------------------------------------ MD5 */

void kinesis_md5(const void *p, size_t n, unsigned char out[16])
{
    MD5_CTX c;

    MD5_Init(&c);
    MD5_Update(&c, p, n);
    MD5_Final(out, &c);
}

/* ------------------------------------------------------------- 128 bits */

kinesis_u128 kinesis_u128_from_md5(const unsigned char md5[16])
{
    kinesis_u128 v = 0;
    int i;

    for (i = 0; i < 16; i++) {
        v = (v << 8) | md5[i];
    }
    return v;
}

int kinesis_u128_parse(const char *s, size_t n, kinesis_u128 *out)
{
    const kinesis_u128 max = ~(kinesis_u128)0;
    kinesis_u128 v = 0;
    size_t i;

    if (n == 0 || n > 39) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');

        if (d > 9 || v > (max - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int kinesis_u128_format(kinesis_u128 v, char *out, size_t outlen)
{
    char tmp[40];
    size_t n = 0, i;

    do {
        tmp[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v);
    if (n + 1 > outlen) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        out[i] = tmp[n - 1 - i];
    }
    out[n] = '\0';
    return (int)n;
}

/* ------------------------------------------------------------- packing */

static size_t varint_len(uint64_t v)
{
    size_t n = 1;

    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* A length-delimited field (tag below 16: one byte). */
static size_t field_len(size_t len)
{
    return 1 + varint_len(len) + len;
}

static size_t record_len(size_t pk_idx, size_t ehk_idx, size_t data_len)
{
    return 1 + varint_len(pk_idx) + (ehk_idx == SIZE_MAX ? 0 : 1 + varint_len(ehk_idx)) +
           field_len(data_len);
}

void kinesis_kpl_init(struct kinesis_kpl *a)
{
    memset(a, 0, sizeof(*a));
}

void kinesis_kpl_free(struct kinesis_kpl *a)
{
    free(a->pk);
    free(a->pk_len);
    free(a->ehk);
    free(a->ehk_len);
    free(a->rec_pk);
    free(a->rec_ehk);
    free(a->data);
    free(a->data_len);
    free(a->slot_hash);
    free(a->slot_idx);
    free(a->pb_recs);
    free(a->pb_ptrs);
    kinesis_kpl_init(a);
}

void kinesis_kpl_reset(struct kinesis_kpl *a)
{
    a->n = 0;
    a->pb_size = 0;
    a->npk = 0;
    a->nehk = 0;
    if (a->slot_idx) {
        memset(a->slot_idx, 0, a->nslots * sizeof(*a->slot_idx));
    }
}

size_t kinesis_kpl_size(const struct kinesis_kpl *a)
{
    return KINESIS_KPL_OVERHEAD + a->pb_size;
}

/* The table index of pk, or SIZE_MAX; *slot: where it is or would go. */
static size_t pk_find(const struct kinesis_kpl *a, const char *pk, size_t pk_len, uint64_t h,
                      size_t *slot)
{
    size_t i;

    if (!a->nslots) {
        return SIZE_MAX;
    }
    for (i = (size_t)h & (a->nslots - 1);; i = (i + 1) & (a->nslots - 1)) {
        size_t idx = a->slot_idx[i];

        if (!idx) {
            *slot = i;
            return SIZE_MAX;
        }
        if (a->slot_hash[i] == h && a->pk_len[idx - 1] == pk_len &&
            memcmp(a->pk[idx - 1], pk, pk_len) == 0) {
            *slot = i;
            return idx - 1;
        }
    }
}

static size_t ehk_find(const struct kinesis_kpl *a, const char *ehk, size_t ehk_len)
{
    size_t i;

    for (i = 0; i < a->nehk; i++) {
        if (a->ehk_len[i] == ehk_len && memcmp(a->ehk[i], ehk, ehk_len) == 0) {
            return i;
        }
    }
    return SIZE_MAX;
}

size_t kinesis_kpl_size_with(const struct kinesis_kpl *a, const char *pk, size_t pk_len,
                             uint64_t key_hash, const char *ehk, size_t ehk_len, size_t data_len)
{
    size_t slot, pk_idx = pk_find(a, pk, pk_len, key_hash, &slot), ehk_idx = SIZE_MAX;
    size_t size = a->pb_size;

    if (pk_idx == SIZE_MAX) {
        pk_idx = a->npk;
        size += field_len(pk_len);
    }
    if (ehk) {
        ehk_idx = ehk_find(a, ehk, ehk_len);
        if (ehk_idx == SIZE_MAX) {
            ehk_idx = a->nehk;
            size += field_len(ehk_len);
        }
    }
    return KINESIS_KPL_OVERHEAD + size + field_len(record_len(pk_idx, ehk_idx, data_len));
}

static int grow(void **p, size_t elem, size_t cap)
{
    void *n = realloc(*p, elem * cap);

    if (!n) {
        return -1;
    }
    *p = n;
    return 0;
}

/* Room for one more record (and key) in every array; the pk table's slots
 * stay at most half full. */
static int reserve(struct kinesis_kpl *a)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;

        if (grow((void **)&a->pk, sizeof(*a->pk), cap) < 0 ||
            grow((void **)&a->pk_len, sizeof(*a->pk_len), cap) < 0 ||
            grow((void **)&a->ehk, sizeof(*a->ehk), cap) < 0 ||
            grow((void **)&a->ehk_len, sizeof(*a->ehk_len), cap) < 0 ||
            grow((void **)&a->rec_pk, sizeof(*a->rec_pk), cap) < 0 ||
            grow((void **)&a->rec_ehk, sizeof(*a->rec_ehk), cap) < 0 ||
            grow((void **)&a->data, sizeof(*a->data), cap) < 0 ||
            grow((void **)&a->data_len, sizeof(*a->data_len), cap) < 0) {
            return -1;
        }
        a->cap = cap;
    }
    if ((a->npk + 1) * 2 > a->nslots) {
        size_t nslots = a->nslots ? a->nslots * 2 : 128, i;
        uint64_t *hash = calloc(nslots, sizeof(*hash));
        size_t *idx = calloc(nslots, sizeof(*idx));

        if (!hash || !idx) {
            free(hash);
            free(idx);
            return -1;
        }
        for (i = 0; i < a->nslots; i++) {
            size_t j;

            if (!a->slot_idx[i]) {
                continue;
            }
            for (j = (size_t)a->slot_hash[i] & (nslots - 1); idx[j]; j = (j + 1) & (nslots - 1)) {
            }
            hash[j] = a->slot_hash[i];
            idx[j] = a->slot_idx[i];
        }
        free(a->slot_hash);
        free(a->slot_idx);
        a->slot_hash = hash;
        a->slot_idx = idx;
        a->nslots = nslots;
    }
    return 0;
}

int kinesis_kpl_add(struct kinesis_kpl *a, const char *pk, size_t pk_len, uint64_t key_hash,
                    const char *ehk, size_t ehk_len, const void *data, size_t data_len)
{
    size_t slot = 0, pk_idx, ehk_idx = SIZE_MAX;

    if (reserve(a) < 0) {
        return -1;
    }
    pk_idx = pk_find(a, pk, pk_len, key_hash, &slot);
    if (pk_idx == SIZE_MAX) {
        pk_idx = a->npk++;
        a->pk[pk_idx] = pk;
        a->pk_len[pk_idx] = pk_len;
        a->slot_hash[slot] = key_hash;
        a->slot_idx[slot] = pk_idx + 1;
        a->pb_size += field_len(pk_len);
    }
    if (ehk) {
        ehk_idx = ehk_find(a, ehk, ehk_len);
        if (ehk_idx == SIZE_MAX) {
            ehk_idx = a->nehk++;
            a->ehk[ehk_idx] = ehk;
            a->ehk_len[ehk_idx] = ehk_len;
            a->pb_size += field_len(ehk_len);
        }
    }
    a->rec_pk[a->n] = pk_idx;
    a->rec_ehk[a->n] = ehk_idx;
    a->data[a->n] = data;
    a->data_len[a->n] = data_len;
    a->pb_size += field_len(record_len(pk_idx, ehk_idx, data_len));
    a->n++;
    return 0;
}

int kinesis_kpl_pack_b64(struct kinesis_kpl *a, struct buf *raw, struct buf *out)
{
    Kpl__AggregatedRecord msg = KPL__AGGREGATED_RECORD__INIT;
    Kpl__Record *recs = NULL, **ptrs = NULL;
    size_t i, size, total;
    int rc = -1;

    if (a->pb_cap < a->n) {
        if (grow(&a->pb_recs, sizeof(*recs), a->n) < 0 ||
            grow(&a->pb_ptrs, sizeof(*ptrs), a->n) < 0) {
            goto out;
        }
        a->pb_cap = a->n;
    }
    recs = a->pb_recs;
    ptrs = a->pb_ptrs;
    /* protobuf-c writes strings up to their NUL: the tables are C strings. */
    msg.n_partition_key_table = a->npk;
    msg.partition_key_table = (char **)a->pk;
    msg.n_explicit_hash_key_table = a->nehk;
    msg.explicit_hash_key_table = (char **)a->ehk;
    for (i = 0; i < a->n; i++) {
        kpl__record__init(&recs[i]);
        recs[i].partition_key_index = a->rec_pk[i];
        if (a->rec_ehk[i] != SIZE_MAX) {
            recs[i].has_explicit_hash_key_index = 1;
            recs[i].explicit_hash_key_index = a->rec_ehk[i];
        }
        recs[i].data.data = (uint8_t *)a->data[i];
        recs[i].data.len = a->data_len[i];
        ptrs[i] = &recs[i];
    }
    msg.n_records = a->n;
    msg.records = ptrs;
    size = kpl__aggregated_record__get_packed_size(&msg);
    if (size != a->pb_size) {
        goto out; /* the sizes kept and the packer disagree: a bug, never sent */
    }
    total = KINESIS_KPL_OVERHEAD + size;
    buf_reset(raw);
    if (buf_reserve(raw, total) < 0) {
        goto out;
    }
    memcpy(raw->data, magic, sizeof(magic));
    if (kpl__aggregated_record__pack(&msg, (uint8_t *)raw->data + 4) != size) {
        goto out;
    }
    kinesis_md5(raw->data + 4, size, (unsigned char *)raw->data + 4 + size);
    raw->len = total;
    rc = b64_encode(raw->data, raw->len, out) < 0 ? -1 : 0;
out:
    return rc;
}

/* ----------------------------------------------------------- unpacking */

struct kinesis_kpl_unpacked {
    Kpl__AggregatedRecord *msg;
};

struct kinesis_kpl_unpacked *kinesis_kpl_unpack(const void *p, size_t n)
{
    const unsigned char *b = p;
    unsigned char sum[16];
    struct kinesis_kpl_unpacked *u;
    Kpl__AggregatedRecord *msg;
    size_t i;

    if (!p || n < KINESIS_KPL_OVERHEAD || memcmp(b, magic, sizeof(magic)) != 0) {
        return NULL;
    }
    kinesis_md5(b + 4, n - KINESIS_KPL_OVERHEAD, sum);
    if (memcmp(sum, b + n - 16, 16) != 0) {
        return NULL;
    }
    msg = kpl__aggregated_record__unpack(NULL, n - KINESIS_KPL_OVERHEAD, b + 4);
    if (!msg) {
        return NULL;
    }
    for (i = 0; i < msg->n_records; i++) {
        const Kpl__Record *r = msg->records[i];

        if (r->partition_key_index >= msg->n_partition_key_table ||
            (r->has_explicit_hash_key_index &&
             r->explicit_hash_key_index >= msg->n_explicit_hash_key_table)) {
            kpl__aggregated_record__free_unpacked(msg, NULL);
            return NULL;
        }
    }
    u = malloc(sizeof(*u));
    if (!u) {
        kpl__aggregated_record__free_unpacked(msg, NULL);
        return NULL;
    }
    u->msg = msg;
    return u;
}

size_t kinesis_kpl_count(const struct kinesis_kpl_unpacked *u)
{
    return u->msg->n_records;
}

void kinesis_kpl_get(const struct kinesis_kpl_unpacked *u, size_t i, struct kinesis_kpl_record *r)
{
    const Kpl__Record *rec = u->msg->records[i];

    r->pk = u->msg->partition_key_table[rec->partition_key_index];
    r->ehk = rec->has_explicit_hash_key_index
                 ? u->msg->explicit_hash_key_table[rec->explicit_hash_key_index]
                 : NULL;
    r->data = rec->data.data;
    r->data_len = rec->data.len;
}

void kinesis_kpl_unpacked_free(struct kinesis_kpl_unpacked *u)
{
    if (u) {
        kpl__aggregated_record__free_unpacked(u->msg, NULL);
        free(u);
    }
}
