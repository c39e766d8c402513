/* test_resolve.c - base/resolve: IP literals and the hosts file, answered from a later loop
 * callback; cancel means no answer. No query leaves the machine. */
#include "base/loop.h"
#include "base/resolve.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

struct answer {
    int calls;
    int n;
    char first[64];
    char err[400];
};

static void on_answer(void *ctx, const struct resolve_addrs *a, const char *err)
{
    struct answer *w = ctx;

    w->calls++;
    w->n = a ? a->n : 0;
    if (a && a->n > 0) {
        resolve_format((const struct sockaddr *)&a->addr[0], w->first, sizeof(w->first));
    }
    snprintf(w->err, sizeof(w->err), "%s", err ? err : "");
}

/* Runs the loop until nothing is left. A deferred call armed outside a loop callback (as here)
 * waits for the round's I/O wait, so the first round does not wait. */
static void settle(struct loop *loop)
{
    assert_true(loop_run_once(loop, 0) >= 0);
    assert_int_equal(loop_run_until_idle(loop, 10000), 0);
}

static void test_literals(void **state)
{
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    char s[64];

    (void)state;
    assert_true(resolve_is_ip("127.0.0.1"));
    assert_true(resolve_is_ip("::1"));
    assert_false(resolve_is_ip("localhost"));
    assert_false(resolve_is_ip("[::1]"));
    memset(&a4, 0, sizeof(a4));
    a4.sin_family = AF_INET;
    a4.sin_port = htons(50000);
    inet_pton(AF_INET, "127.0.0.1", &a4.sin_addr);
    resolve_format((struct sockaddr *)&a4, s, sizeof(s));
    assert_string_equal(s, "127.0.0.1:50000");
    memset(&a6, 0, sizeof(a6));
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons(443);
    inet_pton(AF_INET6, "::1", &a6.sin6_addr);
    resolve_format((struct sockaddr *)&a6, s, sizeof(s));
    assert_string_equal(s, "[::1]:443");
}

static void test_lookups(void **state)
{
    char err[256];
    struct loop *loop = loop_create(err, sizeof(err));
    struct resolver *r;
    struct answer w;

    (void)state;
    assert_non_null(loop);
    r = resolve_create(loop, err, sizeof(err));
    assert_non_null(r);

    /* An IP literal: known at once, still answered from the loop. */
    memset(&w, 0, sizeof(w));
    assert_int_equal(resolve_start(r, "127.0.0.1", "5000", on_answer, &w), 0);
    assert_int_equal(w.calls, 0);
    settle(loop);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.n, 1);
    assert_string_equal(w.first, "127.0.0.1:5000");

    memset(&w, 0, sizeof(w));
    assert_int_equal(resolve_start(r, "::1", "7", on_answer, &w), 0);
    settle(loop);
    assert_int_equal(w.calls, 1);
    assert_string_equal(w.first, "[::1]:7");

    /* A name from the hosts file. */
    memset(&w, 0, sizeof(w));
    assert_int_equal(resolve_start(r, "localhost", "5001", on_answer, &w), 0);
    assert_int_equal(w.calls, 0);
    settle(loop);
    assert_int_equal(w.calls, 1);
    assert_true(w.n >= 1);
    if (strcmp(w.first, "127.0.0.1:5001") != 0 && strcmp(w.first, "[::1]:5001") != 0) {
        fail_msg("localhost resolved to %s", w.first);
    }

    /* Cancelled: no answer. A new lookup replaces the running one. */
    memset(&w, 0, sizeof(w));
    assert_int_equal(resolve_start(r, "127.0.0.1", "5000", on_answer, &w), 0);
    resolve_cancel(r);
    settle(loop);
    assert_int_equal(w.calls, 0);
    assert_int_equal(resolve_start(r, "localhost", "1", on_answer, &w), 0);
    assert_int_equal(resolve_start(r, "127.0.0.2", "2", on_answer, &w), 0);
    settle(loop);
    assert_int_equal(w.calls, 1);
    assert_string_equal(w.first, "127.0.0.2:2");

    /* Destroyed with a lookup running: no answer either. */
    memset(&w, 0, sizeof(w));
    assert_int_equal(resolve_start(r, "localhost", "5000", on_answer, &w), 0);
    resolve_destroy(r);
    resolve_destroy(NULL);
    resolve_cancel(NULL);
    settle(loop);
    assert_int_equal(w.calls, 0);
    loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_lookups),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
