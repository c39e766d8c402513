/* test_fuzz_base.c - the hand-written readers of the base layer checked
 * against a reference on mutated input: jflat (in-place flat JSON) must
 * never accept what jansson reads differently, and base64 decoding,
 * validity and canonical form must agree with each other and round-trip
 * random bytes. Under ASan and UBSan, like every unit test. */
#include "base/b64.h"
#include "base/buf.h"
#include "base/jflat.h"
#include "fuzz.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ROUNDS 20000
#define MAXM   16

static const char *const objects[] = {
    "{\"method\":\"put_record\",\"stream_name\":\"s\",\"partition_key\":\"k\"}",
    "{\"ShardId\":\"shardId-000000000000\",\"SequenceNumber\":\"4959\"}",
    " { \"a\" : \"1\" , \"b\" : null , \"a\" : \"2\" } ",
    "{\"k1\":\"QQ==\",\"k2\":\"Qg==\",\"k3\":\"\"}",
    "{}",
    "{\"x\":\"y\"}trailing",
};

/* jflat accepted p[0..n): jansson reads the same object. */
static void check_same_as_jansson(const char *p, size_t n, const struct jflat_member *m, int count)
{
    json_error_t e;
    json_t *o = json_loadb(p, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    size_t distinct = 0;
    int i;

    if (!o || !json_is_object(o)) {
        fail_msg("jflat accepted what jansson refuses (%s): %.*s", e.text, (int)n, p);
    }
    for (i = 0; i < count; i++) {
        static char key[FUZZ_MAX + 1];
        const struct jflat_member *last;
        json_t *v;

        assert_true(m[i].kn < sizeof(key));
        memcpy(key, m[i].k, m[i].kn);
        key[m[i].kn] = '\0';
        /* jansson keeps the last of duplicate keys; so does jflat_get. */
        last = jflat_get(m, count, key);
        assert_non_null(last);
        distinct += last == &m[i];
        v = json_object_get(o, key);
        if (!v) {
            fail_msg("key %s: jflat has it, jansson not: %.*s", key, (int)n, p);
        }
        if (last->null) {
            assert_true(json_is_null(v));
        } else {
            assert_true(json_is_string(v));
            assert_int_equal(json_string_length(v), last->vn);
            assert_memory_equal(json_string_value(v), last->v, last->vn);
        }
    }
    /* Nothing jansson read that jflat did not. */
    assert_int_equal(json_object_size(o), distinct);
    json_decref(o);
}

static void test_jflat_vs_jansson(void **state)
{
    struct jflat_member m[MAXM];
    struct fuzz f;
    size_t i;
    int r, accepted = 0;

    (void)state;
    fuzz_seed(&f, 0x3f1a);
    for (i = 0; i < ROUNDS; i++) {
        const char *src = objects[i % (sizeof(objects) / sizeof(*objects))];

        fuzz_mutate(&f, src, strlen(src));
        r = jflat_scan(f.out, f.len, m, MAXM);
        if (r >= 0) {
            accepted++;
            check_same_as_jansson(f.out, f.len, m, r);
        }
    }
    /* Enough mutations stay flat objects to check something. */
    assert_true(accepted > ROUNDS / 20);
}

static void test_jflat_scan_at(void **state)
{
    struct jflat_member m[MAXM];
    struct fuzz f;
    const char *after;
    size_t i;
    int r;

    (void)state;
    fuzz_seed(&f, 0x5ca7);
    for (i = 0; i < ROUNDS; i++) {
        const char *src = objects[i % (sizeof(objects) / sizeof(*objects))];

        fuzz_mutate(&f, src, strlen(src));
        after = NULL;
        r = jflat_scan_at(f.out, f.out + f.len, m, MAXM, &after);
        if (r >= 0) {
            /* The object ends inside the text, and read alone it is the same. */
            assert_non_null(after);
            assert_true(after > f.out && after <= f.out + f.len);
            assert_int_equal(after[-1], '}');
            check_same_as_jansson(f.out, (size_t)(after - f.out), m, r);
        }
    }
}

static void test_b64(void **state)
{
    static const char *const texts[] = {
        "QUJD", "QQ==", "Qg==", "eyJhIjoxfQ==", "", "AAECAwQFBgc=", "////", "+/+/"};
    struct buf dec = BUF_INIT(1 << 20), enc = BUF_INIT(1 << 20);
    struct fuzz f;
    size_t i, canonical = 0;

    (void)state;
    fuzz_seed(&f, 0xb64);
    for (i = 0; i < ROUNDS; i++) {
        const char *src = texts[i % (sizeof(texts) / sizeof(*texts))];
        int valid, ok;

        fuzz_mutate(&f, src, strlen(src));
        buf_reset(&dec);
        valid = b64_is_valid(f.out, f.len);
        ok = b64_decode(f.out, f.len, &dec) == 0;
        if (valid != ok) {
            fail_msg("is_valid %d but decode %s: \"%s\"", valid, ok ? "ok" : "fails", f.out);
        }
        /* (b64_is_canonical is defined for valid text only.) */
        if (ok && b64_is_canonical(f.out, f.len)) {
            canonical++;
            buf_reset(&enc);
            assert_int_equal(b64_encode(dec.data, dec.len, &enc), 0);
            if (enc.len != f.len || memcmp(enc.data, f.out, f.len) != 0) {
                fail_msg("canonical \"%s\" encodes back as \"%.*s\"", f.out, (int)enc.len,
                         enc.data);
            }
        }
    }
    assert_true(canonical > 100);
    /* Random bytes round-trip, and their encoding is canonical. */
    for (i = 0; i < ROUNDS / 4; i++) {
        unsigned char raw[300];
        size_t n = fuzz_below(&f, sizeof(raw) + 1), j;

        for (j = 0; j < n; j++) {
            raw[j] = (unsigned char)fuzz_next(&f);
        }
        buf_reset(&enc);
        buf_reset(&dec);
        assert_int_equal(b64_encode(raw, n, &enc), 0);
        assert_int_equal(enc.len, b64_encoded_len(n));
        assert_true(b64_is_canonical(enc.data, enc.len));
        assert_int_equal(b64_decode(enc.data, enc.len, &dec), 0);
        assert_int_equal(dec.len, n);
        if (n) {
            assert_memory_equal(dec.data, raw, n);
        }
    }
    buf_free(&dec);
    buf_free(&enc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jflat_vs_jansson),
        cmocka_unit_test(test_jflat_scan_at),
        cmocka_unit_test(test_b64),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
