/* test_kubemq_grpc.c - the KubeMQ client's pieces that need no network: gRPC framing and
 * reassembly, grpc-timeout, grpc-message decoding, status texts, address parsing. */
#include "kubemq/kubemq_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- reassembly ---- */

#define MAX_GOT 16

struct got {
    int n;
    unsigned char *msg[MAX_GOT];
    size_t len[MAX_GOT];
    size_t owed; /* summed */
};

static void on_msg(void *ctx, unsigned char *msg, size_t len, size_t owed)
{
    struct got *g = ctx;

    assert_true(g->n < MAX_GOT);
    g->msg[g->n] = msg;
    g->len[g->n] = len;
    g->n++;
    g->owed += owed;
}

static void got_free(struct got *g)
{
    int i;

    for (i = 0; i < g->n; i++) {
        free(g->msg[i]);
    }
    memset(g, 0, sizeof(*g));
}

/* Appends prefix + body to a wire buffer. */
static size_t put(unsigned char *wire, size_t at, const unsigned char *body, size_t len)
{
    kubemq_grpc_prefix(wire + at, len);
    if (len) {
        memcpy(wire + at + KUBEMQ_PREFIX_LEN, body, len);
    }
    return at + KUBEMQ_PREFIX_LEN + len;
}

static void test_prefix(void **state)
{
    unsigned char p[5];

    (void)state;
    kubemq_grpc_prefix(p, 0x01020304);
    assert_memory_equal(p, "\x00\x01\x02\x03\x04", 5);
    kubemq_grpc_prefix(p, 0);
    assert_memory_equal(p, "\x00\x00\x00\x00\x00", 5);
}

static void test_reassembly_any_split(void **state)
{
    size_t big = KUBEMQ_EAGER_CONSUME + 12345, small = 300, total, chunk, off, i;
    unsigned char *wire, *body = malloc(big);
    static const size_t chunks[] = {1, 2, 5, 7, 4096, 16384, 1 << 20};
    size_t c;

    (void)state;
    assert_non_null(body);
    for (i = 0; i < big; i++) {
        body[i] = (unsigned char)(i * 13 + 1);
    }
    wire = malloc(4 * KUBEMQ_PREFIX_LEN + big + small + 1);
    assert_non_null(wire);
    total = put(wire, 0, NULL, 0);             /* an empty message: just its prefix */
    total = put(wire, total, body, 1);         /* one byte */
    total = put(wire, total, body + 7, small); /* small: held until handed over */
    total = put(wire, total, body, big);       /* big: given back as it arrives */
    for (c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
        struct kubemq_grpc_rx rx;
        struct got g;
        size_t eager = 0;
        char err[128];

        memset(&rx, 0, sizeof(rx));
        memset(&g, 0, sizeof(g));
        for (off = 0; off < total; off += chunk) {
            chunk = total - off < chunks[c] ? total - off : chunks[c];
            assert_int_equal(kubemq_grpc_rx_feed(&rx, wire + off, chunk, KUBEMQ_MAX_MESSAGE, on_msg,
                                                 &g, err, sizeof(err)),
                             0);
            eager += rx.consume_now;
            rx.consume_now = 0;
        }
        assert_int_equal(g.n, 4);
        assert_int_equal(g.len[0], 0);
        assert_int_equal(g.len[1], 1);
        assert_int_equal(g.msg[1][0], body[0]);
        assert_int_equal(g.len[2], small);
        assert_memory_equal(g.msg[2], body + 7, small);
        assert_int_equal(g.len[3], big);
        assert_memory_equal(g.msg[3], body, big);
        /* Every byte is given back exactly once: as it came (big) or on hand-over. */
        assert_int_equal(eager + g.owed, total);
        assert_true(eager >= big);
        assert_false(kubemq_grpc_rx_partial(&rx));
        got_free(&g);
        kubemq_grpc_rx_reset(&rx);
    }
    free(wire);
    free(body);
}

static void test_reassembly_partial_and_limits(void **state)
{
    struct kubemq_grpc_rx rx;
    struct got g;
    unsigned char p[5];
    char err[128];

    (void)state;
    memset(&rx, 0, sizeof(rx));
    memset(&g, 0, sizeof(g));
    kubemq_grpc_prefix(p, 10);
    assert_int_equal(kubemq_grpc_rx_feed(&rx, p, 3, 100, on_msg, &g, err, sizeof(err)), 0);
    assert_true(kubemq_grpc_rx_partial(&rx));
    assert_int_equal(kubemq_grpc_rx_feed(&rx, p + 3, 2, 100, on_msg, &g, err, sizeof(err)), 0);
    assert_int_equal(kubemq_grpc_rx_feed(&rx, (const unsigned char *)"abc", 3, 100, on_msg, &g, err,
                                         sizeof(err)),
                     0);
    assert_true(kubemq_grpc_rx_partial(&rx));
    assert_int_equal(g.n, 0);
    kubemq_grpc_rx_reset(&rx);
    assert_false(kubemq_grpc_rx_partial(&rx));

    /* One byte over the limit: a clear error, and nothing is allocated for it. */
    kubemq_grpc_prefix(p, (size_t)KUBEMQ_MAX_MESSAGE + 1);
    assert_int_equal(
        kubemq_grpc_rx_feed(&rx, p, 5, KUBEMQ_MAX_MESSAGE, on_msg, &g, err, sizeof(err)),
        KUBEMQ_STATUS_RESOURCE_EXHAUSTED);
    assert_string_equal(err, "received message larger than max (104857601 vs. 104857600)");
    /* What still arrives for that stream is dropped. */
    assert_int_equal(
        kubemq_grpc_rx_feed(&rx, p, 5, KUBEMQ_MAX_MESSAGE, on_msg, &g, err, sizeof(err)), 0);
    assert_int_equal(g.n, 0);
    kubemq_grpc_rx_reset(&rx);

    /* Compressed: we never asked for it. */
    kubemq_grpc_prefix(p, 1);
    p[0] = 1;
    assert_int_equal(kubemq_grpc_rx_feed(&rx, p, 5, 100, on_msg, &g, err, sizeof(err)),
                     KUBEMQ_STATUS_INTERNAL);
    assert_non_null(strstr(err, "compressed"));
    kubemq_grpc_rx_reset(&rx);
}

/* ---- headers ---- */

static void test_timeout(void **state)
{
    char t[16];

    (void)state;
    kubemq_grpc_timeout(1, t, sizeof(t));
    assert_string_equal(t, "1m");
    kubemq_grpc_timeout(0, t, sizeof(t));
    assert_string_equal(t, "1m");
    kubemq_grpc_timeout(15000, t, sizeof(t));
    assert_string_equal(t, "15000m");
    kubemq_grpc_timeout(99999999, t, sizeof(t));
    assert_string_equal(t, "99999999m");
    kubemq_grpc_timeout(100000000, t, sizeof(t));
    assert_string_equal(t, "100000S");
    kubemq_grpc_timeout(100000001, t, sizeof(t)); /* rounded up, never early */
    assert_string_equal(t, "100001S");
    kubemq_grpc_timeout(INT64_MAX / 2, t, sizeof(t));
    assert_true(strlen(t) <= 9);
    assert_true(t[strlen(t) - 1] == 'H');
}

static void test_percent_decode(void **state)
{
    char out[64];
    static const char probe[] = "unknown method N%C3%B6pe%2520 x for service kubemq.kubemq";

    (void)state;
    kubemq_grpc_percent_decode(probe, strlen(probe), out, sizeof(out));
    assert_string_equal(out, "unknown method N\xC3\xB6pe%20 x for service kubemq.kubemq");
    kubemq_grpc_percent_decode("a%0Ab%0d%", 9, out, sizeof(out));
    assert_string_equal(out, "a b %"); /* one line; a lone % stays */
    kubemq_grpc_percent_decode("%zz%4", 5, out, sizeof(out));
    assert_string_equal(out, "%zz%4");
    kubemq_grpc_percent_decode("abcdef", 6, out, 4);
    assert_string_equal(out, "abc");
}

static void test_status_text(void **state)
{
    char t[128];

    (void)state;
    kubemq_grpc_status_text(13, "Error 301: timeout for request message", "h:1", t, sizeof(t));
    assert_string_equal(t, "Error 301: timeout for request message");
    kubemq_grpc_status_text(14, "connection to x lost", "h:1", t, sizeof(t));
    assert_string_equal(t, "kubemq at h:1 unavailable: connection to x lost");
    kubemq_grpc_status_text(14, "connection to x lost", NULL, t, sizeof(t));
    assert_string_equal(t, "UNAVAILABLE (14): connection to x lost");
    kubemq_grpc_status_text(42, "odd", NULL, t, sizeof(t));
    assert_string_equal(t, "unknown gRPC status 42: odd");
    kubemq_grpc_status_text(16, NULL, NULL, t, sizeof(t));
    assert_string_equal(t, "UNAUTHENTICATED (16): ");
    kubemq_grpc_status_text(16, "Error 421: authentication failed", NULL, t, sizeof(t));
    assert_string_equal(t, "UNAUTHENTICATED (16): Error 421: authentication failed");
    assert_int_equal(kubemq_grpc_http_status(503), KUBEMQ_STATUS_UNAVAILABLE);
    assert_int_equal(kubemq_grpc_http_status(404), 12);
    assert_int_equal(kubemq_grpc_http_status(415), 2);
}

/* ---- addresses, framing ---- */

static void test_split(void **state)
{
    char host[64], port[8], err[160];

    (void)state;
    assert_int_equal(kubemq_address_split("kubemq:50000", host, sizeof(host), port, sizeof(port),
                                          err, sizeof(err)),
                     0);
    assert_string_equal(host, "kubemq");
    assert_string_equal(port, "50000");
    assert_int_equal(
        kubemq_address_split("[::1]:5", host, sizeof(host), port, sizeof(port), err, sizeof(err)),
        0);
    assert_string_equal(host, "::1");
    assert_string_equal(port, "5");
    assert_true(resolve_is_ip("::1") && resolve_is_ip("10.0.0.1"));
    assert_false(resolve_is_ip("localhost"));
    assert_int_equal(
        kubemq_address_split("::1:50000", host, sizeof(host), port, sizeof(port), err, sizeof(err)),
        -1);
    assert_non_null(strstr(err, "brackets"));
    assert_int_equal(
        kubemq_address_split("kubemq", host, sizeof(host), port, sizeof(port), err, sizeof(err)),
        -1);
    assert_int_equal(
        kubemq_address_split(":50000", host, sizeof(host), port, sizeof(port), err, sizeof(err)),
        -1);
    assert_int_equal(
        kubemq_address_split("h:0", host, sizeof(host), port, sizeof(port), err, sizeof(err)), -1);
    assert_int_equal(
        kubemq_address_split("h:65536", host, sizeof(host), port, sizeof(port), err, sizeof(err)),
        -1);
    assert_int_equal(
        kubemq_address_split("h:5x", host, sizeof(host), port, sizeof(port), err, sizeof(err)), -1);
    assert_int_equal(
        kubemq_address_split("[::1:5", host, sizeof(host), port, sizeof(port), err, sizeof(err)),
        -1);
}

static void test_frame(void **state)
{
    Kubemq__Event ev = KUBEMQ__EVENT__INIT;
    Kubemq__Empty empty = KUBEMQ__EMPTY__INIT;
    struct kubemq_out *o;
    Kubemq__Event *back;
    char err[128];
    int status = 0;

    (void)state;
    /* Even an empty message has its prefix. */
    o = kubemq_wire_frame(&empty.base, &status, err, sizeof(err));
    assert_non_null(o);
    assert_int_equal(o->len, 5);
    assert_memory_equal(o->data, "\0\0\0\0\0", 5);
    free(o);

    ev.channel = (char *)"ch";
    ev.body.data = (uint8_t *)"xyz";
    ev.body.len = 3;
    o = kubemq_wire_frame(&ev.base, &status, err, sizeof(err));
    assert_non_null(o);
    assert_int_equal(o->len, 5 + protobuf_c_message_get_packed_size(&ev.base));
    back = kubemq_wire_unpack(&kubemq__event__descriptor, o->data + 5, o->len - 5);
    assert_non_null(back);
    assert_string_equal(back->channel, "ch");
    assert_memory_equal(back->body.data, "xyz", 3);
    kubemq__event__free_unpacked(back, NULL);
    free(o);

    /* Over the limit: refused before anything is packed (the size alone is read). */
    ev.body.data = NULL;
    ev.body.len = KUBEMQ_MAX_MESSAGE;
    assert_null(kubemq_wire_frame(&ev.base, &status, err, sizeof(err)));
    assert_int_equal(status, KUBEMQ_STATUS_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(err, "larger than the 104857600-byte limit"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_reassembly_any_split),
        cmocka_unit_test(test_reassembly_partial_and_limits),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_percent_decode),
        cmocka_unit_test(test_status_text),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_frame),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
