/* test_aws_h1_answer.c - the HTTP/1.1 answer reader on its own: every
 * framing fed whole and split at every byte, interim answers, caps, the
 * malformed, and seeded mutations that must never crash or overrun. */
#include "aws/aws_h1_answer.h"
#include "aws/aws_http.h"
#include "fuzz.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

struct outcome {
    int rc; /* 1 complete, 0 incomplete, < 0 error; 2 complete at the close */
    long status;
    char body[8192];
    size_t body_len;
    int keep_alive;
    char etype[64];
    char err[256];
};

/* Feed text in pieces of `step` bytes (0: whole), then a close. */
static void feed(const char *text, size_t len, size_t step, size_t max_body, struct outcome *out)
{
    struct aws_h1_answer a;
    size_t at = 0;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    aws_h1_answer_init(&a, max_body);
    aws_h1_answer_reset(&a, out->etype, sizeof(out->etype), 1 << 20);
    while (at < len) {
        size_t n = step && len - at > step ? step : len - at;

        assert_int_equal(buf_append(&a.in, text + at, n), 0);
        at += n;
        rc = aws_h1_answer_parse(&a, out->err, sizeof(out->err));
        if (rc != 0) {
            break;
        }
    }
    if (rc == 0 && aws_h1_answer_at_close(&a)) {
        rc = 2;
    }
    out->rc = rc;
    if (rc > 0) {
        assert_true(a.body_len < sizeof(out->body));
        assert_true(a.head_len + a.body_len <= a.in.len);
        memcpy(out->body, a.in.data + a.head_len, a.body_len);
        out->body_len = a.body_len;
        out->status = a.status;
        out->keep_alive = a.keep_alive;
    }
    aws_h1_answer_free(&a);
}

/* The same outcome whole and at every split. */
static void expect(const char *text, int rc, long status, const char *body, int keep_alive)
{
    size_t len = strlen(text), step;
    struct outcome o;

    for (step = 0; step <= len; step++) {
        feed(text, len, step, 1000, &o);
        if (o.rc != rc) {
            fail_msg("step %zu: rc %d, expected %d (%s) for:\n%s", step, o.rc, rc, o.err, text);
        }
        if (rc > 0) {
            assert_int_equal(o.status, status);
            assert_int_equal(o.body_len, strlen(body));
            assert_memory_equal(o.body, body, o.body_len);
            assert_int_equal(o.keep_alive, keep_alive);
        }
    }
}

static void test_framings(void **state)
{
    struct outcome o;
    const char *t;

    (void)state;
    expect("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 1, 200, "hello", 1);
    expect("HTTP/1.1 400 Bad Request\r\ncontent-length:2\r\nConnection: close\r\n\r\n{}", 1, 400,
           "{}", 0);
    expect("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n",
           1, 200, "hello, world", 1);
    /* chunked wins over a Content-Length */
    expect("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
           "A\r\n0123456789\r\n0\r\n\r\n",
           1, 200, "0123456789", 1);
    expect("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 1, 200,
           "ok", 1);
    expect("HTTP/1.1 204 No Content\r\n\r\n", 1, 204, "", 1);
    expect("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", 1, 200, "x", 0);
    expect("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", 1, 200, "x",
           1);
    /* no length: the body runs to the close */
    expect("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end", 2, 200, "to the end",
           0);
    /* bytes past the answer in the same read: complete, but the
     * connection is not trusted (read later, they close an idle one) */
    t = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA";
    feed(t, strlen(t), 0, 1000, &o);
    assert_int_equal(o.rc, 1);
    assert_string_equal(o.body, "ok");
    assert_int_equal(o.keep_alive, 0);
    /* incomplete at the close */
    expect("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 0, 0, "", 0);
    expect("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", 0, 0, "", 0);

    /* the error type header lands where asked */
    t = "HTTP/1.1 400 x\r\nx-amzn-ErrorType: ThrottlingException:http://x/\r\nContent-Length: "
        "0\r\n\r\n";
    feed(t, strlen(t), 0, 1000, &o);
    assert_int_equal(o.rc, 1);
    assert_string_equal(o.etype, "ThrottlingException:http://x/");
}

static void test_malformed_and_caps(void **state)
{
    static const char *const bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "SSH-2.0-OpenSSH\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n",
    };
    struct outcome o;
    size_t i;
    const char *t;
    char big[AWS_H1_HEAD_MAX + 64];

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        feed(bad[i], strlen(bad[i]), 0, 1000, &o);
        if (o.rc != -1) {
            fail_msg("accepted: %s (rc %d)", bad[i], o.rc);
        }
        printf("%s", o.err[0] ? "" : "no error text\n");
        assert_true(o.err[0] != '\0');
    }
    /* over the cap: announced, chunked, to the close */
    t = "HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n";
    feed(t, strlen(t), 0, 1000, &o);
    assert_int_equal(o.rc, -2);
    assert_memory_equal(o.err, AWS_HTTP_TOO_LARGE, strlen(AWS_HTTP_TOO_LARGE));
    {
        struct buf b = BUF_INIT(0);

        buf_append_str(&b, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        for (i = 0; i < 30; i++) {
            buf_append_str(&b, "40\r\n");
            buf_appendf(&b, "%064d\r\n", (int)i);
        }
        feed(b.data, b.len, 100, 1000, &o);
        assert_int_equal(o.rc, -2);
        buf_reset(&b);
        buf_append_str(&b, "HTTP/1.1 200 OK\r\n\r\n");
        for (i = 0; i < 30; i++) {
            buf_appendf(&b, "%064d", (int)i);
        }
        feed(b.data, b.len, 100, 1000, &o);
        assert_int_equal(o.rc, -2);
        buf_free(&b);
    }
    /* a head that never ends */
    memcpy(big, "HTTP/1.1 200 OK\r\n", 17);
    memset(big + 17, 'a', sizeof(big) - 17);
    feed(big, sizeof(big), 4096, 1000, &o);
    assert_int_equal(o.rc, -1);
}

/* Mutations of good answers: any outcome, but never a crash, an overrun
 * (the sanitizers watch) or a body outside the buffer (feed checks). */
static void test_mutations(void **state)
{
    static const char *const seeds[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 x\r\nx-amzn-ErrorType: "
        "A:b\r\nContent-Length: 2\r\n\r\n{}",
        "HTTP/1.0 200 OK\r\n\r\nbody",
    };
    struct fuzz f;
    struct outcome o;
    int i;

    (void)state;
    fuzz_seed(&f, 0x68317431);
    for (i = 0; i < 20000; i++) {
        const char *s = seeds[i % 4];

        fuzz_mutate(&f, s, strlen(s));
        feed(f.out, f.len, 1 + fuzz_below(&f, 40), 4096, &o);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framings),
        cmocka_unit_test(test_malformed_and_caps),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
