/* test_jflat.c - flat JSON objects of plain strings, and what is refused. */
#include "base/jflat.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static int scan(const char *text, struct jflat_member *m, size_t max)
{
    return jflat_scan(text, strlen(text), m, max);
}

static void test_members(void **state)
{
    struct jflat_member m[8];
    const struct jflat_member *v;

    (void)state;
    assert_int_equal(scan("{}", m, 8), 0);
    assert_int_equal(scan(" { } ", m, 8), 0);
    assert_int_equal(scan(" {\n\"ShardId\" : \"shardId-1\",\t\"a\":null , \"a\":\"2\"} ", m, 8), 3);
    v = jflat_get(m, 3, "ShardId");
    assert_non_null(v);
    assert_int_equal(v->vn, 9);
    assert_memory_equal(v->v, "shardId-1", 9);
    assert_true(m[1].null);
    assert_int_equal(m[1].vn, 0);
    v = jflat_get(m, 3, "a"); /* the last one wins */
    assert_false(v->null);
    assert_memory_equal(v->v, "2", 1);
    assert_null(jflat_get(m, 3, "b"));
    assert_int_equal(scan("{\"\":\"\"}", m, 8), 1);
    assert_int_equal(m[0].kn, 0);
}

static void test_refused(void **state)
{
    static const char *const bad[] = {
        "",
        "[]",
        "\"x\"",
        "{",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1}",
        "{\"a\":true}",
        "{\"a\":{}}",
        "{\"a\":\"x\",}",
        "{\"a\":\"x\"} x",
        "{\"a\":\"x\\\"y\"}",
        "{\"a\":\"\\u0041\"}",
        "{\"a\":\"caf\xc3\xa9\"}",
        "{\"a\":\"tab\there\"}",
        "{\"a\":nul}",
        "{\"a\":nullx}",
        "{\"a\" \"b\"}",
        "{\"a\":\"1\" \"b\":\"2\"}",
    };
    struct jflat_member m[8];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (scan(bad[i], m, 8) != -1) {
            fail_msg("accepted: %s", bad[i]);
        }
    }
    /* more members than room */
    assert_int_equal(scan("{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\"}", m, 2), -1);
    assert_int_equal(jflat_scan(NULL, 0, m, 8), -1);
}

static void test_is_plain(void **state)
{
    (void)state;
    assert_true(jflat_is_plain("abc XYZ 09 /~{}[]:,", 19));
    assert_true(jflat_is_plain("", 0));
    assert_false(jflat_is_plain("a\"b", 3));
    assert_false(jflat_is_plain("a\\b", 3));
    assert_false(jflat_is_plain("a\nb", 3));
    assert_false(jflat_is_plain("a\x7f", 2));
    assert_false(jflat_is_plain("\xc3\xa9", 2));
}

/* Between array elements: a comma leads to the next, ']' ends it. */
static void test_array_next(void **state)
{
    const char *text = " , {\"a\":\"1\"} ] x", *end = text + strlen(text), *p = text;

    (void)state;
    assert_int_equal(jflat_array_next(&p, end), 1);
    assert_int_equal(*p, '{'); /* past the comma and the space after it */
    p = strchr(text, '}') + 1;
    assert_int_equal(jflat_array_next(&p, end), 0);
    assert_string_equal(p, " x");
    assert_int_equal(jflat_array_next(&p, end), -1);
    assert_string_equal(p, " x"); /* untouched */
    p = end;
    assert_int_equal(jflat_array_next(&p, end), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_members),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_is_plain),
        cmocka_unit_test(test_array_next),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
