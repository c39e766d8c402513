/* test_envelope.c - request parsing and reply/request serialisation. */
#include "base/b64.h"
#include "message/envelope.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Parse body (a C string) and expect success. */
static void parse_ok(struct envelope_request *r, const char *body, int raw)
{
    char err[256] = "";

    assert_int_equal(envelope_request_parse(r, body, strlen(body), raw, err, sizeof(err)), 0);
    assert_string_equal(err, "");
}

static void parse_fails(const char *body, const char *want)
{
    struct envelope_request r;
    char err[256] = "";

    envelope_request_init(&r);
    assert_int_equal(envelope_request_parse(&r, body, strlen(body), 0, err, sizeof(err)), -1);
    assert_string_equal(err, want);
    envelope_request_free(&r);
}

/* A round trip: payload in an envelope with metadata
 * {"key":"value"}, data given as `data_json`; must come back as `want`. */
static void round_trip(const char *data_json, const void *want, size_t wantlen)
{
    struct envelope_request r;
    struct buf body = BUF_INIT(0);

    assert_int_equal(
        buf_appendf(&body, "{\"metadata\":{\"key\":\"value\"},\"data\":%s}", data_json), 0);
    envelope_request_init(&r);
    parse_ok(&r, body.data, 0);
    assert_false(r.not_json);
    assert_true(r.has_data);
    assert_string_equal(envelope_meta(&r, "key"), "value");
    assert_int_equal(r.data.len, wantlen);
    assert_memory_equal(r.data.data, want, wantlen);
    envelope_request_free(&r);
    buf_free(&body);
}

static void test_round_trip_json_b64(void **state)
{
    const char json[] = "{\"my_result\":\"ok\",\"n\":[1,2,3]}";
    struct buf d = BUF_INIT(0);

    (void)state;
    assert_int_equal(buf_append_char(&d, '"'), 0);
    assert_int_equal(b64_encode(json, strlen(json), &d), 0);
    assert_int_equal(buf_append_char(&d, '"'), 0);
    round_trip(d.data, json, strlen(json));
    buf_free(&d);
}

static void test_round_trip_json_string(void **state)
{
    const char json[] = "{\"my_result\":\"ok\"}";
    json_t *s = json_string(json);
    char *enc = json_dumps(s, JSON_ENCODE_ANY);

    (void)state;
    round_trip(enc, json, strlen(json));
    free(enc);
    json_decref(s);
}

static void test_round_trip_plain_string(void **state)
{
    (void)state;
    round_trip("\"test-string\"", "test-string", 11);
    /* Escapes decoded, not valid base64: raw UTF-8 bytes. */
    round_trip("\"a\\u00e9\\n\\u0000b\"", "a\xc3\xa9\n\0b", 6);
    /* An escaped backslash right before the closing quote. */
    round_trip("\"x\\\\\"", "x\\", 2);
    /* Valid base64 once the escape is decoded. */
    round_trip("\"AAEC\\/w==\"", "\x00\x01\x02\xff", 4);
}

static void test_round_trip_binary(void **state)
{
    unsigned char bytes[256];
    struct buf d = BUF_INIT(0);
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bytes); i++) {
        bytes[i] = (unsigned char)i;
    }
    assert_int_equal(buf_append_char(&d, '"'), 0);
    assert_int_equal(b64_encode(bytes, sizeof(bytes), &d), 0);
    assert_int_equal(buf_append_char(&d, '"'), 0);
    round_trip(d.data, bytes, sizeof(bytes));
    buf_free(&d);
}

static void test_round_trip_serialize(void **state)
{
    struct envelope_request r, r2;
    struct buf out = BUF_INIT(0);

    (void)state;
    envelope_request_init(&r);
    envelope_request_init(&r2);
    parse_ok(&r, "{\"metadata\":{\"z\":\"1\",\"a\":\"2\"},\"data\":\"AAEC/w==\"}", 0);
    assert_int_equal(envelope_request_serialize(&r, &out), 0);
    assert_string_equal(buf_str(&out),
                        "{\"metadata\":{\"a\":\"2\",\"z\":\"1\"},\"data\":\"AAEC/w==\"}");
    parse_ok(&r2, out.data, 0);
    assert_int_equal(r2.data.len, 4);
    assert_memory_equal(r2.data.data, "\x00\x01\x02\xff", 4);

    /* No data: the member is left out. */
    parse_ok(&r, "{\"metadata\":{\"method\":\"list_streams\"}}", 0);
    buf_reset(&out);
    assert_int_equal(envelope_request_serialize(&r, &out), 0);
    assert_string_equal(buf_str(&out), "{\"metadata\":{\"method\":\"list_streams\"}}");
    envelope_request_free(&r);
    envelope_request_free(&r2);
    buf_free(&out);
}

static void test_no_data(void **state)
{
    struct envelope_request r;

    (void)state;
    envelope_request_init(&r);
    parse_ok(&r, "{\"metadata\":{\"method\":\"list_streams\"},\"data\":null}", 0);
    assert_false(r.has_data);
    assert_false(r.not_json);
    assert_int_equal(r.data.len, 0);
    assert_string_equal(envelope_meta(&r, "method"), "list_streams");

    parse_ok(&r, "{\"metadata\":{\"method\":\"list_streams\",\"empty\":\"\"}}", 0);
    assert_false(r.has_data);
    assert_null(envelope_meta(&r, "empty"));
    assert_null(envelope_meta(&r, "absent"));

    parse_ok(&r, " { } ", 0);
    assert_false(r.has_data);
    assert_false(r.not_json);
    assert_int_equal(json_object_size(r.metadata), 0);
    envelope_request_free(&r);
}

static void test_object_data(void **state)
{
    struct envelope_request r;

    (void)state;
    envelope_request_init(&r);
    /* Key order, number spelling and big integers survive; whitespace
     * outside strings goes. */
    parse_ok(&r,
             "{\"data\": { \"z\" : 1,\n \"a\": {\"b\": [1, 2], \"c\": \"x y\\\"\"},"
             "\"big\": 123456789012345678901234, \"f\": 0.1, \"i\": 9007199254740993 },"
             "\"metadata\":{\"method\":\"put_records\"}}",
             0);
    assert_true(r.has_data);
    assert_string_equal(buf_str(&r.data),
                        "{\"z\":1,\"a\":{\"b\":[1,2],\"c\":\"x y\\\"\"},"
                        "\"big\":123456789012345678901234,\"f\":0.1,\"i\":9007199254740993}");
    assert_string_equal(envelope_meta(&r, "method"), "put_records");
    parse_ok(&r, "{\"data\":{}}", 0);
    assert_string_equal(buf_str(&r.data), "{}");
    envelope_request_free(&r);
}

static void test_bad_data_types(void **state)
{
    (void)state;
    parse_fails("{\"data\":1}", "invalid data format, number");
    parse_fails("{\"data\":-1.5e3}", "invalid data format, number");
    parse_fails("{\"data\":true}", "invalid data format, bool");
    parse_fails("{\"data\":false}", "invalid data format, bool");
    parse_fails("{\"data\":[1,2]}", "invalid data format, array");
    parse_fails("{\"metadata\":{\"a\":\"b\"},\"data\":[]}", "invalid data format, array");
}

static void test_empty_body(void **state)
{
    struct envelope_request r;
    char err[64] = "";

    (void)state;
    envelope_request_init(&r);
    assert_int_equal(envelope_request_parse(&r, "", 0, 0, err, sizeof(err)), -1);
    assert_string_equal(err, "empty request");
    assert_int_equal(envelope_request_parse(&r, NULL, 0, 0, err, sizeof(err)), -1);
    assert_string_equal(err, "empty request");
    /* raw: an empty body is simply no data */
    assert_int_equal(envelope_request_parse(&r, "", 0, 1, err, sizeof(err)), 0);
    assert_false(r.has_data);
    envelope_request_free(&r);
}

static void test_not_json(void **state)
{
    static const char *const bodies[] = {
        "hello world",
        "{\"metadata\":",
        "{\"data\":\"abc\"} trailing",
        "{\"data\":\"abc\",}",
        "{\"data\" \"abc\"}",
        "{\"data\":tru}",
        "{\"data\":\"bad\\escape\"}",
        "{\"data\":{\"a\":}}",
        "{\"x\":[1,}",
        "{\"data\":\"AAAA\",\"data\":nul}",
        "[1,2]",
        "\"str\"",
        "42",
        "null",
        "\x89PNG\r\n\x1a\n",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct envelope_request r;

        envelope_request_init(&r);
        parse_ok(&r, bodies[i], 0);
        assert_true(r.not_json);
        assert_true(r.has_data);
        assert_string_equal(buf_str(&r.data), bodies[i]);
        assert_int_equal(json_object_size(r.metadata), 0);
        envelope_request_free(&r);
    }
}

static void test_raw(void **state)
{
    struct envelope_request r;
    const char *body = "{\"metadata\":{\"a\":\"b\"},\"data\":\"AAAA\"}";

    (void)state;
    envelope_request_init(&r);
    parse_ok(&r, body, 1);
    assert_false(r.not_json);
    assert_true(r.has_data);
    assert_string_equal(buf_str(&r.data), body);
    assert_int_equal(json_object_size(r.metadata), 0);
    envelope_request_free(&r);
}

static void test_metadata_errors(void **state)
{
    (void)state;
    parse_fails("{\"metadata\":{\"method\":\"create_stream\",\"shard_count\":1}}",
                "metadata: value of \"shard_count\" must be a string");
    parse_fails("{\"metadata\":{\"flag\":true},\"data\":\"AAAA\"}",
                "metadata: value of \"flag\" must be a string");
    parse_fails("{\"metadata\":{\"o\":{}}}", "metadata: value of \"o\" must be a string");
    parse_fails("{\"metadata\":\"method=x\"}", "metadata: must be an object of string values");
    parse_fails("{\"metadata\":[]}", "metadata: must be an object of string values");
    /* The metadata problem is named even when data is also wrong. */
    parse_fails("{\"metadata\":{\"n\":2},\"data\":5}", "metadata: value of \"n\" must be a string");
}

static void test_case_insensitive_names(void **state)
{
    struct envelope_request r;

    (void)state;
    envelope_request_init(&r);
    parse_ok(&r,
             "{\"Metadata\":{\"Method\":\"put_record\"},\"DATA\":\"aGk=\",\"extra\":[1,{\"x\":2}]}",
             0);
    assert_false(r.not_json);
    assert_string_equal(envelope_meta(&r, "Method"), "put_record");
    assert_null(envelope_meta(&r, "method")); /* keys themselves are exact */
    assert_string_equal(buf_str(&r.data), "hi");

    /* Escaped member names are compared after decoding. */
    parse_ok(&r, "{\"d\\u0061ta\":\"aGk=\"}", 0);
    assert_string_equal(buf_str(&r.data), "hi");

    /* Repeated members: the last data wins, metadata merges (Go). */
    parse_ok(&r,
             "{\"data\":\"AAAA\",\"metadata\":{\"a\":\"1\"},\"data\":\"aGk=\","
             "\"metadata\":{\"b\":\"2\",\"n\":null}}",
             0);
    assert_string_equal(buf_str(&r.data), "hi");
    assert_string_equal(envelope_meta(&r, "a"), "1");
    assert_string_equal(envelope_meta(&r, "b"), "2");
    assert_null(envelope_meta(&r, "n"));
    envelope_request_free(&r);
}

static void test_meta_set(void **state)
{
    struct envelope_request r;

    (void)state;
    envelope_request_init(&r);
    parse_ok(&r, "{\"metadata\":{\"a\":\"1\"}}", 0);
    assert_int_equal(envelope_meta_set(&r, "a", "2"), 0);
    assert_int_equal(envelope_meta_set(&r, "b", "3"), 0);
    assert_string_equal(envelope_meta(&r, "a"), "2");
    assert_string_equal(envelope_meta(&r, "b"), "3");
    /* a fresh parse starts from nothing */
    parse_ok(&r, "{}", 0);
    assert_null(envelope_meta(&r, "a"));
    envelope_request_free(&r);
    envelope_request_free(NULL);
}

static void test_reply_success(void **state)
{
    struct envelope_reply rep;
    struct buf out = BUF_INIT(0);
    const char result[] = "{\"HasMoreStreams\":false,\"StreamNames\":[\"my_stream\"]}";

    (void)state;
    envelope_reply_init(&rep);
    assert_int_equal(envelope_reply_serialize(&rep, &out), 0);
    assert_string_equal(buf_str(&out),
                        "{\"metadata\":{},\"data\":null,\"is_error\":false,\"error\":\"\"}");

    assert_int_equal(envelope_reply_meta_set(&rep, "result", "ok"), 0);
    assert_int_equal(envelope_reply_set_data(&rep, result, strlen(result)), 0);
    buf_reset(&out);
    assert_int_equal(envelope_reply_serialize(&rep, &out), 0);
    assert_string_equal(
        buf_str(&out),
        "{\"metadata\":{\"result\":\"ok\"},\"data\":"
        "\"eyJIYXNNb3JlU3RyZWFtcyI6ZmFsc2UsIlN0cmVhbU5hbWVzIjpbIm15X3N0cmVhbSJdfQ==\","
        "\"is_error\":false,\"error\":\"\"}");

    /* Sorted keys. */
    assert_int_equal(envelope_reply_meta_set(&rep, "shard_iterator", "AAA/+="), 0);
    assert_int_equal(envelope_reply_meta_set(&rep, "a", "x\"y"), 0);
    envelope_reply_reset(&rep);
    assert_int_equal(envelope_reply_meta_set(&rep, "result", "ok"), 0);
    assert_int_equal(envelope_reply_meta_set(&rep, "shard_iterator", "AAA/+="), 0);
    assert_int_equal(envelope_reply_meta_set(&rep, "a", "x\"y"), 0);
    buf_reset(&out);
    assert_int_equal(envelope_reply_serialize(&rep, &out), 0);
    assert_string_equal(buf_str(&out), "{\"metadata\":{\"a\":\"x\\\"y\",\"result\":\"ok\","
                                       "\"shard_iterator\":\"AAA/+=\"},\"data\":null,"
                                       "\"is_error\":false,\"error\":\"\"}");
    envelope_reply_free(&rep);
    envelope_reply_free(NULL);
    buf_free(&out);
}

/* A source's answer for a request no target ran reads as a reply built
 * field by field would. */
static void test_error_alone(void **state)
{
    struct envelope_reply rep;
    struct buf a = BUF_INIT(0), b = BUF_INIT(0);
    const char *texts[] = {"binding b1 stopped", "quote \" and \\ and \n", "bad \xff byte", ""};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        envelope_reply_init(&rep);
        envelope_reply_set_error(&rep, "%s", texts[i]);
        buf_reset(&a);
        buf_reset(&b);
        assert_int_equal(envelope_reply_serialize(&rep, &a), 0);
        assert_int_equal(envelope_error_serialize(texts[i], &b), 0);
        assert_string_equal(buf_str(&b), buf_str(&a));
        envelope_reply_free(&rep);
    }
    buf_reset(&b);
    assert_int_equal(envelope_error_serialize("bad \xff byte", &b), 0);
    assert_string_equal(buf_str(&b), "{\"metadata\":{},\"data\":null,\"is_error\":true,"
                                     "\"error\":\"bad \xef\xbf\xbd byte\"}");
    buf_free(&a);
    buf_free(&b);
}

static void test_reply_error(void **state)
{
    struct envelope_reply rep;
    struct buf out = BUF_INIT(0);

    (void)state;
    envelope_reply_init(&rep);
    envelope_reply_set_error(&rep, "All attempts fail:\n#%d: %s", 1, "boom \"x\"");
    assert_int_equal(envelope_reply_serialize(&rep, &out), 0);
    assert_string_equal(buf_str(&out), "{\"metadata\":{},\"data\":null,\"is_error\":true,"
                                       "\"error\":\"All attempts fail:\\n#1: boom \\\"x\\\"\"}");

    /* Metadata and data are kept; invalid UTF-8 becomes U+FFFD. */
    envelope_reply_reset(&rep);
    assert_int_equal(envelope_reply_meta_set(&rep, "result", "ok"), 0);
    assert_int_equal(envelope_reply_set_data(&rep, "hi", 2), 0);
    envelope_reply_set_error(&rep, "bad \xff byte \xc3\xa9");
    buf_reset(&out);
    assert_int_equal(envelope_reply_serialize(&rep, &out), 0);
    assert_string_equal(buf_str(&out), "{\"metadata\":{\"result\":\"ok\"},\"data\":\"aGk=\","
                                       "\"is_error\":true,\"error\":\"bad \xef\xbf\xbd byte "
                                       "\xc3\xa9\"}");
    /* The serialised reply is valid JSON. */
    {
        json_t *v = json_loadb(out.data, out.len, 0, NULL);

        assert_non_null(v);
        assert_true(json_is_true(json_object_get(v, "is_error")));
        json_decref(v);
    }
    envelope_reply_free(&rep);
    buf_free(&out);
}

/* The fast metadata paths (plain strings, no jansson parser or dump) and
 * the full ones agree: same members parsed, byte-identical output. */
static void test_metadata_fast_and_full_agree(void **state)
{
    static const char *const metas[] = {
        "{}",
        "{\"method\":\"put_record\",\"stream_name\":\"s1\",\"partition_key\":\"k\"}",
        " { \"b\" : \"2\" , \"a\" : \"1\" , \"a\" : \"3\" } ",
        "{\"z\":null,\"y\":\"\",\"x\":\"/slash/ and spaces ~\"}",
        "{\"esc\":\"tab\\there\",\"q\":\"say \\\"hi\\\"\"}",
        "{\"utf\":\"h\u00e9llo\",\"raw\":\"\xc3\xa9\"}",
        "{\"ctl\":\"a\\u0001b\",\"AB\":\"1\",\"Ab\":\"2\",\"ab\":\"3\"}",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(metas) / sizeof(metas[0]); i++) {
        struct envelope_request r;
        struct envelope_reply rep;
        struct buf body = BUF_INIT(0), out = BUF_INIT(0), want = BUF_INIT(0);
        json_t *expect = json_loads(metas[i], 0, NULL), *v;
        const char *key;
        char *dump;

        assert_non_null(expect);
        assert_int_equal(buf_appendf(&body, "{\"metadata\":%s,\"data\":\"QQ==\"}", metas[i]), 0);
        envelope_request_init(&r);
        parse_ok(&r, buf_str(&body), 0);
        /* null members are the empty string */
        json_object_foreach(expect, key, v)
        {
            if (json_is_null(v)) {
                json_object_set_new(expect, key, json_string(""));
            }
        }
        assert_true(json_equal(r.metadata, expect));
        envelope_reply_init(&rep);
        json_object_foreach(r.metadata, key, v)
        {
            assert_int_equal(envelope_reply_meta_set(&rep, key, json_string_value(v)), 0);
        }
        assert_int_equal(envelope_reply_serialize(&rep, &out), 0);
        dump = json_dumps(expect, JSON_COMPACT | JSON_SORT_KEYS);
        assert_int_equal(buf_appendf(&want,
                                     "{\"metadata\":%s,\"data\":null,\"is_error\":false,"
                                     "\"error\":\"\"}",
                                     dump),
                         0);
        assert_string_equal(buf_str(&out), buf_str(&want));
        free(dump);
        json_decref(expect);
        envelope_reply_free(&rep);
        envelope_request_free(&r);
        buf_free(&body);
        buf_free(&out);
        buf_free(&want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_json_b64),
        cmocka_unit_test(test_round_trip_json_string),
        cmocka_unit_test(test_round_trip_plain_string),
        cmocka_unit_test(test_round_trip_binary),
        cmocka_unit_test(test_round_trip_serialize),
        cmocka_unit_test(test_no_data),
        cmocka_unit_test(test_object_data),
        cmocka_unit_test(test_bad_data_types),
        cmocka_unit_test(test_empty_body),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_raw),
        cmocka_unit_test(test_metadata_errors),
        cmocka_unit_test(test_case_insensitive_names),
        cmocka_unit_test(test_meta_set),
        cmocka_unit_test(test_reply_success),
        cmocka_unit_test(test_reply_error),
        cmocka_unit_test(test_error_alone),
        cmocka_unit_test(test_metadata_fast_and_full_agree),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
