/* test_timeparse.c - RFC 3339 timestamps in seconds and in nanoseconds. */
#include "base/timeparse.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

static void test_nanoseconds(void **state)
{
    long long ns = 0;

    (void)state;
    assert_int_equal(timeparse_rfc3339_ns("1970-01-01T00:00:00Z", &ns), 0);
    assert_true(ns == 0);
    assert_int_equal(timeparse_rfc3339_ns("2026-01-02T15:04:05Z", &ns), 0);
    assert_true(ns == 1767366245LL * 1000000000LL);
    assert_int_equal(timeparse_rfc3339_ns("2026-01-02T15:04:05.123456789Z", &ns), 0);
    assert_true(ns == 1767366245123456789LL);
    /* Past nanoseconds the digits are dropped, not rounded. */
    assert_int_equal(timeparse_rfc3339_ns("2026-01-02T15:04:05.1234567899z", &ns), 0);
    assert_true(ns == 1767366245123456789LL);
    assert_int_equal(timeparse_rfc3339_ns("2026-01-02t17:04:05.5+02:00", &ns), 0);
    assert_true(ns == 1767366245500000000LL);
    assert_int_equal(timeparse_rfc3339_ns("2026-01-02 12:04:05-03:00", &ns), 0);
    assert_true(ns == 1767366245LL * 1000000000LL);
    /* The edges of 64-bit nanoseconds. */
    assert_int_equal(timeparse_rfc3339_ns("2262-04-11T00:00:00Z", &ns), 0);
    assert_true(ns == 9223286400LL * 1000000000LL);
    assert_int_equal(timeparse_rfc3339_ns("1677-09-22T00:00:00Z", &ns), 0);
    assert_true(ns == -9223286400LL * 1000000000LL);
}

static void test_seconds(void **state)
{
    double s = 0;

    (void)state;
    assert_int_equal(timeparse_rfc3339("2024-05-01T12:00:00Z", &s), 0);
    assert_true(s == 1714564800.0);
    assert_int_equal(timeparse_rfc3339("2024-05-01T12:00:00.25Z", &s), 0);
    assert_true(s == 1714564800.25);
    assert_int_equal(timeparse_rfc3339("2024-05-01T14:00:00+02:00", &s), 0);
    assert_true(s == 1714564800.0);
}

static void test_invalid(void **state)
{
    static const char *const bad[] = {
        "",
        "2026-01-02",
        "2026-01-02T15:04:05",       /* no zone */
        "2026-01-02T15:04:05.Z",     /* empty fraction */
        "2026-13-02T15:04:05Z",      /* month */
        "2026-01-32T15:04:05Z",      /* day */
        "2026-01-02T24:04:05Z",      /* hour */
        "2026-01-02T15:04:05+2:00",  /* zone digits */
        "2026-01-02T15:04:05+02:60", /* zone minutes */
        "2026-01-02T15:04:05Zjunk",  /* trailing text */
        "2026/01/02T15:04:05Z",
        "2262-04-12T00:00:00Z", /* past 64-bit nanoseconds (found by fuzzing) */
        "9999-12-31T23:59:59Z",
        "1677-09-21T00:00:00Z",
        "0000-01-01T00:00:00Z",
    };
    long long ns;
    double s;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(timeparse_rfc3339_ns(bad[i], &ns), -1);
        assert_int_equal(timeparse_rfc3339(bad[i], &s), -1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nanoseconds),
        cmocka_unit_test(test_seconds),
        cmocka_unit_test(test_invalid),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
