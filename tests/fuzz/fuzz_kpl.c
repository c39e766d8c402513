/* fuzz_kpl.c - libFuzzer: the KPL deaggregator (get_records' deaggregate).
 * Input: a Kinesis record's data. It is unpacked as it is (magic, MD5 and
 * all: mostly refused), and again with a valid magic and MD5 around it, so
 * that the protobuf reader and the index checks are reached. Whatever
 * unpacks is packed again by our packer and must unpack to the same user
 * records. Seeds (corpus/kpl) were written by aws-kinesis-agg's encoder.
 * See run.sh. */
#define _GNU_SOURCE
#include "base/b64.h"
#include "base/buf.h"
#include "kinesis/kinesis_kpl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t key_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    }
    return h;
}

static void check(const void *p, size_t n)
{
    struct kinesis_kpl_unpacked *u = kinesis_kpl_unpack(p, n), *again;
    struct kinesis_kpl a;
    struct buf raw = BUF_INIT(8 << 20), b64 = BUF_INIT(16 << 20), dec = BUF_INIT(8 << 20);
    size_t i;

    if (!u) {
        return;
    }
    kinesis_kpl_init(&a);
    for (i = 0; i < kinesis_kpl_count(u); i++) {
        struct kinesis_kpl_record r;

        kinesis_kpl_get(u, i, &r);
        if (!r.pk || (r.data_len && !r.data)) {
            abort();
        }
        if (kinesis_kpl_add(&a, r.pk, strlen(r.pk), key_hash(r.pk), r.ehk,
                            r.ehk ? strlen(r.ehk) : 0, r.data, r.data_len) < 0) {
            abort();
        }
    }
    if (kinesis_kpl_pack_b64(&a, &raw, &b64) < 0 || b64_decode(b64.data, b64.len, &dec) < 0 ||
        !(again = kinesis_kpl_unpack(dec.data, dec.len)) ||
        kinesis_kpl_count(again) != kinesis_kpl_count(u)) {
        abort();
    }
    for (i = 0; i < kinesis_kpl_count(u); i++) {
        struct kinesis_kpl_record x, y;

        kinesis_kpl_get(u, i, &x);
        kinesis_kpl_get(again, i, &y);
        if (strcmp(x.pk, y.pk) != 0 || (!x.ehk != !y.ehk) || (x.ehk && strcmp(x.ehk, y.ehk)) ||
            x.data_len != y.data_len || (x.data_len && memcmp(x.data, y.data, x.data_len) != 0)) {
            abort();
        }
    }
    kinesis_kpl_unpacked_free(again);
    kinesis_kpl_unpacked_free(u);
    kinesis_kpl_free(&a);
    buf_free(&raw);
    buf_free(&b64);
    buf_free(&dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned char magic[4] = {0xF3, 0x89, 0x9A, 0xC2};
    unsigned char *framed;
    const uint8_t *pb = data;
    size_t pbn = size;

    check(data, size);
    /* The protobuf part of the input (all of it when it has no magic), with
     * a valid frame around it. */
    if (size >= KINESIS_KPL_OVERHEAD && memcmp(data, magic, 4) == 0) {
        pb = data + 4;
        pbn = size - KINESIS_KPL_OVERHEAD;
    }
    framed = malloc(pbn + KINESIS_KPL_OVERHEAD);
    if (!framed) {
        return 0;
    }
    memcpy(framed, magic, 4);
    memcpy(framed + 4, pb, pbn);
    kinesis_md5(pb, pbn, framed + 4 + pbn);
    check(framed, pbn + KINESIS_KPL_OVERHEAD);
    free(framed);
    return 0;
}
