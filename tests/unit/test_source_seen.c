/* test_source_seen.c - the request ids a source and its replacement share
 * during a reload: each id is first exactly once, across threads too, and
 * the memory is bounded but keeps at least the last SOURCE_SEEN_MAX. */
#include "source/source_seen.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

static void id_of(char *out, size_t n, int i)
{
    snprintf(out, n, "9b2c7e1a-%08x-4c1d-8e2f-request", (unsigned)i);
}

static void test_first_then_seen(void **state)
{
    struct source_seen *s = source_seen_create();

    (void)state;
    assert_non_null(s);
    assert_int_equal(source_seen_first(s, "req-1"), 1);
    assert_int_equal(source_seen_first(s, "req-1"), 0);
    assert_int_equal(source_seen_first(s, "req-2"), 1);
    /* No id: nothing to match it by, so it always runs. */
    assert_int_equal(source_seen_first(s, ""), 1);
    assert_int_equal(source_seen_first(s, ""), 1);
    assert_int_equal(source_seen_first(s, NULL), 1);
    source_seen_ref(s);
    source_seen_unref(s);
    assert_int_equal(source_seen_first(s, "req-2"), 0);
    source_seen_unref(s);
    source_seen_unref(NULL);
}

static void test_bounded(void **state)
{
    struct source_seen *s = source_seen_create();
    char id[64];
    int i, n = 3 * SOURCE_SEEN_MAX;

    (void)state;
    for (i = 0; i < n; i++) {
        id_of(id, sizeof(id), i);
        assert_int_equal(source_seen_first(s, id), 1);
    }
    /* The last SOURCE_SEEN_MAX are all remembered... */
    for (i = n - SOURCE_SEEN_MAX; i < n; i++) {
        id_of(id, sizeof(id), i);
        assert_int_equal(source_seen_first(s, id), 0);
    }
    /* ...the oldest are let go. */
    id_of(id, sizeof(id), 0);
    assert_int_equal(source_seen_first(s, id), 1);
    source_seen_unref(s);
}

struct racer {
    struct source_seen *s;
    int firsts;
};

#define RACE_IDS 5000

static void *race(void *arg)
{
    struct racer *r = arg;
    char id[64];
    int i;

    for (i = 0; i < RACE_IDS; i++) {
        id_of(id, sizeof(id), i);
        r->firsts += source_seen_first(r->s, id);
    }
    return NULL;
}

/* Two subscriptions' threads see the same requests: each runs once. */
static void test_two_threads(void **state)
{
    struct racer a = {0}, b = {0};
    pthread_t ta, tb;

    (void)state;
    a.s = b.s = source_seen_create();
    assert_non_null(a.s);
    assert_int_equal(pthread_create(&ta, NULL, race, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, race, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.firsts + b.firsts, RACE_IDS);
    source_seen_unref(a.s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_then_seen),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_two_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
