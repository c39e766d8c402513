/* test_b64.c - base64 encoding and strict decoding. */
#include "base/b64.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* RFC 4648 section 10 vectors. */
static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
static const char *const coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};

static void test_rfc_vectors(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        struct buf b = BUF_INIT(0);

        assert_int_equal(b64_encoded_len(strlen(plain[i])), strlen(coded[i]));
        assert_int_equal(b64_encode(plain[i], strlen(plain[i]), &b), 0);
        assert_string_equal(buf_str(&b), coded[i]);
        buf_reset(&b);
        assert_true(b64_is_valid(coded[i], strlen(coded[i])));
        assert_int_equal(b64_decode(coded[i], strlen(coded[i]), &b), 0);
        assert_int_equal(b.len, strlen(plain[i]));
        assert_memory_equal(buf_str(&b), plain[i], b.len);
        buf_free(&b);
    }
}

static void test_all_bytes_round_trip(void **state)
{
    unsigned char bytes[256 * 3 + 2];
    struct buf enc = BUF_INIT(0), dec = BUF_INIT(0);
    size_t i, n;

    (void)state;
    for (i = 0; i < sizeof(bytes); i++) {
        bytes[i] = (unsigned char)(i * 7 + (i >> 8));
    }
    /* Every length mod 3 and every byte value. */
    for (n = sizeof(bytes) - 3; n <= sizeof(bytes); n++) {
        buf_reset(&enc);
        buf_reset(&dec);
        assert_int_equal(b64_encode(bytes, n, &enc), 0);
        assert_int_equal(enc.len, b64_encoded_len(n));
        assert_true(b64_is_valid(enc.data, enc.len));
        assert_int_equal(b64_decode(enc.data, enc.len, &dec), 0);
        assert_int_equal(dec.len, n);
        assert_memory_equal(dec.data, bytes, n);
    }
    buf_free(&enc);
    buf_free(&dec);
}

static void test_appends(void **state)
{
    struct buf b = BUF_INIT(0);

    (void)state;
    assert_int_equal(buf_append_str(&b, "x:"), 0);
    assert_int_equal(b64_encode("hi", 2, &b), 0);
    assert_string_equal(buf_str(&b), "x:aGk=");
    assert_int_equal(b64_decode("aGk=", 4, &b), 0);
    assert_string_equal(buf_str(&b), "x:aGk=hi");
    buf_free(&b);
}

static void test_invalid(void **state)
{
    static const char *const bad[] = {
        "Zg",        /* length not a multiple of 4 */
        "Zg=",       /* length */
        "Zm9vY",     /* length */
        "Zm9v\n",    /* whitespace */
        "Zm9 v",     /* space */
        "Zm9\nYmFy", /* newline inside (Go skips it, we do not) */
        "Zm9-",      /* URL alphabet */
        "Zm9_",      /* URL alphabet */
        "Zm9*",      /* bad char */
        "====",      /* only padding */
        "Z===",      /* three pads */
        "Z=g=",      /* pad in the middle of a quartet */
        "Zg==Zg==",  /* pad before the end */
        "Zm=v",      /* pad before a data char */
        "test-string", "\xc3\xa9\xc3\xa9",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct buf b = BUF_INIT(0);

        assert_int_equal(buf_append_str(&b, "keep"), 0);
        assert_false(b64_is_valid(bad[i], strlen(bad[i])));
        assert_int_equal(b64_decode(bad[i], strlen(bad[i]), &b), -1);
        /* out unchanged, still terminated */
        assert_int_equal(b.len, 4);
        assert_string_equal(buf_str(&b), "keep");
        buf_free(&b);
    }
    /* A NUL byte is not in the alphabet either. */
    assert_false(b64_is_valid("Zm\0v", 4));
}

static void test_lenient_trailing_bits(void **state)
{
    struct buf b = BUF_INIT(0);

    (void)state;
    /* Like Go's StdEncoding: unused low bits are ignored. */
    assert_true(b64_is_valid("QR==", 4));
    assert_int_equal(b64_decode("QR==", 4, &b), 0);
    assert_int_equal(b.len, 1);
    assert_int_equal(b.data[0], 'A');
    buf_free(&b);
}

/* Canonical = what the encoder writes; the trailing-bit variants are not. */
static void test_canonical(void **state)
{
    struct buf enc = BUF_INIT(0);
    unsigned char bytes[3];
    int i;

    (void)state;
    assert_true(b64_is_canonical("", 0));
    assert_true(b64_is_canonical("QQ==", 4));
    assert_false(b64_is_canonical("QR==", 4));
    assert_true(b64_is_canonical("QUI=", 4));
    assert_false(b64_is_canonical("QUJ=", 4));
    assert_true(b64_is_canonical("QUJD", 4));
    assert_false(b64_is_canonical("QUJ", 3));
    /* Every 1- and 2-byte value: the encoder's output is canonical. */
    for (i = 0; i < 65536; i++) {
        bytes[0] = (unsigned char)(i >> 8);
        bytes[1] = (unsigned char)i;
        buf_reset(&enc);
        assert_int_equal(b64_encode(bytes, i < 256 ? 1 : 2, &enc), 0);
        assert_true(b64_is_canonical(enc.data, enc.len));
    }
    buf_free(&enc);
}

static void test_cap(void **state)
{
    struct buf b = BUF_INIT(4);

    (void)state;
    assert_int_equal(b64_encode("abcd", 4, &b), -1); /* needs 8 */
    assert_int_equal(b.len, 0);
    assert_int_equal(b64_decode("Zm9vYmFy", 8, &b), -1); /* needs 6 */
    assert_int_equal(b.len, 0);
    assert_int_equal(b64_decode("Zm9v", 4, &b), 0);
    assert_string_equal(buf_str(&b), "foo");
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_vectors),
        cmocka_unit_test(test_all_bytes_round_trip),
        cmocka_unit_test(test_appends),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_lenient_trailing_bits),
        cmocka_unit_test(test_canonical),
        cmocka_unit_test(test_cap),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
