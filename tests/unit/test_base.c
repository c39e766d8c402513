/* test_base.c - buf, errs, hex, pool, random, settings tables and the event loop. */
#include "base/buf.h"
#include "base/errs.h"
#include "base/hex.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/pool.h"
#include "base/random.h"
#include "base/settings.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static void test_hex(void **state)
{
    static const unsigned char bytes[] = {0x00, 0x0f, 0xa5, 0xff};
    const char *esc = "%41%zz%4a%";
    char out[9];
    int c;

    (void)state;
    hex_encode(bytes, sizeof(bytes), out);
    assert_string_equal(out, "000fa5ff");
    hex_encode(bytes, 0, out);
    assert_string_equal(out, "");
    for (c = 0; c < 256; c++) {
        int want = c >= '0' && c <= '9'   ? c - '0'
                   : c >= 'a' && c <= 'f' ? c - 'a' + 10
                   : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                          : -1;
        assert_int_equal(hex_value(c), want);
    }
    assert_int_equal(hex_percent_byte(esc, strlen(esc), 0), 'A');
    assert_int_equal(hex_percent_byte(esc, strlen(esc), 1), -1); /* not at a '%' */
    assert_int_equal(hex_percent_byte(esc, strlen(esc), 3), -1); /* %zz */
    assert_int_equal(hex_percent_byte(esc, strlen(esc), 6), 'J');
    assert_int_equal(hex_percent_byte(esc, strlen(esc), 9), -1); /* a '%' at the end */
    assert_int_equal(hex_percent_byte(esc, 8, 6), -1);           /* cut after one digit */
}

/* Ids never repeat (the pool is refilled many times over) and have their
 * forms; generators seeded alike agree, seeded apart differ. */
static void test_random(void **state)
{
    enum { N = 4096 };
    static char ids[N][33];
    struct random_prng a, b;
    char uuid[37], big[2 * 300 + 1];
    size_t i, j;

    (void)state;
    for (i = 0; i < N; i++) {
        random_hex(ids[i], 16);
        assert_int_equal(strlen(ids[i]), 32);
        assert_int_equal(strspn(ids[i], "0123456789abcdef"), 32);
    }
    for (i = 0; i < N; i++) {
        for (j = i + 1; j < N; j++) {
            assert_string_not_equal(ids[i], ids[j]);
        }
    }
    random_hex(big, 300); /* more than one round of the helper's buffer */
    assert_int_equal(strlen(big), 600);
    random_uuid(uuid);
    assert_int_equal(strlen(uuid), 36);
    assert_true(uuid[8] == '-' && uuid[13] == '-' && uuid[18] == '-' && uuid[23] == '-');
    assert_int_equal(uuid[14], '4');
    assert_non_null(strchr("89ab", uuid[19]));

    random_prng_seed_with(&a, 7);
    random_prng_seed_with(&b, 7);
    for (i = 0; i < 100; i++) {
        assert_int_equal(random_prng_next(&a), random_prng_next(&b));
    }
    random_prng_seed_with(&b, 0); /* a zero state would stick at zero */
    assert_int_not_equal(random_prng_next(&b), 0);
    random_prng_seed(&a);
    random_prng_seed(&b);
    assert_int_not_equal(random_prng_next(&a), random_prng_next(&b));
    for (i = 0; i < 10000; i++) {
        assert_true(random_prng_below(&a, 10) < 10);
    }
    assert_int_equal(random_prng_below(&a, 0), 0);
}

/* The pool links through the member it is told of, leaves the rest of
 * an object alone and holds no more than its bound. */
static void test_pool(void **state)
{
    struct item {
        int value;
        void *link;
        char tail[8];
    } items[3];
    struct pool p;
    int i;

    (void)state;
    pool_init(&p, 2, offsetof(struct item, link));
    assert_null(pool_get(&p));
    for (i = 0; i < 3; i++) {
        items[i].value = i;
        memcpy(items[i].tail, "intact!", 8);
    }
    assert_int_equal(pool_put(&p, &items[0]), 0);
    assert_int_equal(pool_put(&p, &items[1]), 0);
    assert_int_equal(pool_put(&p, &items[2]), -1); /* full: the caller frees it */
    assert_int_equal(p.len, 2);
    assert_ptr_equal(pool_get(&p), &items[1]); /* the last kept first */
    assert_ptr_equal(pool_get(&p), &items[0]);
    assert_null(pool_get(&p));
    assert_int_equal(p.len, 0);
    for (i = 0; i < 3; i++) {
        assert_int_equal(items[i].value, i);
        assert_string_equal(items[i].tail, "intact!");
    }
    pool_init(&p, 0, offsetof(struct item, link)); /* keeps nothing */
    assert_int_equal(pool_put(&p, &items[0]), -1);
    assert_null(pool_get(&p));
}

static void test_buf_cap(void **state)
{
    struct buf b = BUF_INIT(8);

    (void)state;
    assert_int_equal(buf_append_str(&b, "12345678"), 0);
    assert_int_equal(buf_append_char(&b, '9'), -1);
    assert_int_equal(b.len, 8);
    assert_string_equal(buf_str(&b), "12345678");
    buf_reset(&b);
    assert_int_equal(buf_appendf(&b, "%d-%s", 42, "x"), 0);
    assert_string_equal(buf_str(&b), "42-x");
    assert_int_equal(buf_appendf(&b, "%s", "too long now"), -1);
    assert_string_equal(buf_str(&b), "42-x");
    buf_free(&b);
}

/* An owner may lift the cap entirely: sizes near SIZE_MAX fail cleanly
 * instead of wrapping into a tiny allocation or an endless doubling. */
static void test_buf_no_wrap(void **state)
{
    struct buf b = BUF_INIT(SIZE_MAX);

    (void)state;
    assert_int_equal(buf_reserve(&b, SIZE_MAX), -1);
    assert_int_equal(buf_reserve(&b, SIZE_MAX - 1), -1);
    assert_int_equal(buf_append(&b, "abc", 3), 0);
    assert_int_equal(buf_reserve(&b, SIZE_MAX - 3), -1);
    assert_int_equal(buf_reserve(&b, SIZE_MAX - 4), -1);
    assert_string_equal(buf_str(&b), "abc");
    buf_free(&b);
}

static void test_buf_append_file(void **state)
{
    char dir[] = "/tmp/kk-buf-XXXXXX", path[64], err[256];
    struct buf b = BUF_INIT(16);
    FILE *f;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/f", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("0123456789", f);
    fclose(f);

    assert_int_equal(buf_append_str(&b, "<"), 0);
    assert_int_equal(buf_append_file(&b, path, err, sizeof(err)), 0);
    assert_string_equal(buf_str(&b), "<0123456789");
    /* Past the cap: the buffer is left as it was. */
    assert_int_equal(buf_append_file(&b, path, err, sizeof(err)), -1);
    assert_int_equal(errno, EFBIG);
    assert_non_null(strstr(err, "is larger than 16 bytes"));
    assert_string_equal(buf_str(&b), "<0123456789");
    assert_int_equal(b.len, 11);
    assert_int_equal(buf_append_file(&b, dir, err, sizeof(err)), -1);
    assert_int_equal(errno, EISDIR);
    assert_non_null(strstr(err, "is a directory"));
    unlink(path);
    assert_int_equal(buf_append_file(&b, path, err, sizeof(err)), -1);
    assert_int_equal(errno, ENOENT);
    assert_non_null(strstr(err, "cannot read /tmp/kk-buf-"));
    assert_non_null(strstr(err, "No such file or directory"));
    assert_string_equal(buf_str(&b), "<0123456789");
    rmdir(dir);
    buf_free(&b);
}

static void test_buf_json_str(void **state)
{
    struct buf b = BUF_INIT(0);
    const char in[] = "a\"b\\c\n\x01\x7f";

    (void)state;
    assert_int_equal(buf_append_json_str(&b, in, sizeof(in) - 1), 0);
    assert_string_equal(buf_str(&b), "\"a\\\"b\\\\c\\n\\u0001\\u007f\"");
    buf_free(&b);
}

struct opts {
    char *name;
    long long count;
    int flag;
    int mode;
    char *secret;
    char *meta;
};

static const struct settings_entry table[] = {
    {"name", SETTINGS_STRING, NULL, SETTINGS_REQUIRED, 0, 0, NULL, offsetof(struct opts, name),
     NULL, "a name"},
    {"count", SETTINGS_INT, "1", 0, 1, 10, NULL, offsetof(struct opts, count), NULL, "how many"},
    {"flag", SETTINGS_BOOL, "false", 0, 0, 0, NULL, offsetof(struct opts, flag), NULL, "a flag"},
    {"mode", SETTINGS_ENUM, "fixed", 0, 0, 0, "back-off|fixed|random", offsetof(struct opts, mode),
     NULL, "a mode"},
    {"secret", SETTINGS_STRING, "", SETTINGS_SECRET, 0, 0, NULL, offsetof(struct opts, secret),
     NULL, "a secret"},
    {"meta", SETTINGS_JSON, "", 0, 0, 0, NULL, offsetof(struct opts, meta), NULL, "defaults"},
    {"counts", SETTINGS_INT, NULL, 0, 0, 0, NULL, 0, "count", NULL},
    {NULL, 0, NULL, 0, 0, 0, NULL, 0, NULL, NULL},
};

static void test_settings_ok(void **state)
{
    struct opts o;
    struct errs e;
    json_t *props = json_pack("{s:s, s:s, s:s, s:s}", "name", "n", "counts", "7", "flag", "TRUE",
                              "secret", "hunter2");
    json_t *red;

    (void)state;
    memset(&o, 0, sizeof(o));
    errs_init(&e);
    assert_int_equal(settings_apply(table, props, &o, "binding \"b\"", &e), 0);
    assert_string_equal(o.name, "n");
    assert_int_equal(o.count, 7);
    assert_int_equal(o.flag, 1);
    assert_int_equal(o.mode, 1);
    red = settings_redact(table, props);
    assert_string_equal(json_string_value(json_object_get(red, "secret")), "***");
    assert_string_equal(json_string_value(json_object_get(red, "name")), "n");
    json_decref(red);
    json_decref(props);
    settings_free(table, &o);
    errs_free(&e);
}

static void test_settings_errors(void **state)
{
    struct opts o;
    struct errs e;
    json_t *props = json_pack("{s:s, s:s, s:s, s:[], s:s}", "count", "abc", "mode", "sideways",
                              "colour", "red", "flag", "meta", "{bad");
    const char *t;

    (void)state;
    memset(&o, 0, sizeof(o));
    errs_init(&e);
    assert_int_equal(settings_apply(table, props, &o, "binding \"b\"", &e), -1);
    t = buf_str(&e.text);
    assert_int_equal(e.count, 6);
    assert_non_null(
        strstr(t, "binding \"b\": count: must be an integer from 1 to 10, got \"abc\""));
    assert_non_null(strstr(t, "mode: must be one of: back-off, fixed, random"));
    assert_non_null(strstr(t, "colour: unknown property"));
    assert_non_null(strstr(t, "flag: must be a single value, not a list"));
    assert_non_null(strstr(t, "meta: not valid JSON"));
    assert_non_null(strstr(t, "name: is required"));
    json_decref(props);
    settings_free(table, &o);
    errs_free(&e);
}

static void test_parse_int_strict(void **state)
{
    long long v;

    (void)state;
    assert_int_equal(settings_parse_int("12", 0, 100, &v), 0);
    assert_int_equal(v, 12);
    assert_int_equal(settings_parse_int("12x", 0, 100, &v), -1);
    assert_int_equal(settings_parse_int("", 0, 100, &v), -1);
    assert_int_equal(settings_parse_int(" 1", 0, 100, &v), -1);
    assert_int_equal(settings_parse_int("101", 0, 100, &v), -1);
    assert_int_equal(settings_parse_int("99999999999999999999", 0, 100, &v), -1);
}

struct tick {
    struct loop *loop;
    struct loop_timer t1, t2;
    int order[4];
    int n;
};

static void fire1(void *arg)
{
    struct tick *k = arg;
    k->order[k->n++] = 1;
}

static void fire2(void *arg)
{
    struct tick *k = arg;
    k->order[k->n++] = 2;
    loop_stop(k->loop);
}

static void posted(void *arg)
{
    struct tick *k = arg;
    k->order[k->n++] = 3;
}

static void test_loop_timers_and_posts(void **state)
{
    char err[128];
    struct tick k;

    (void)state;
    memset(&k, 0, sizeof(k));
    k.loop = loop_create(err, sizeof(err));
    assert_non_null(k.loop);
    loop_timer_init(&k.t1);
    loop_timer_init(&k.t2);
    loop_timer_start(k.loop, &k.t2, 30, fire2, &k);
    loop_timer_start(k.loop, &k.t1, 10, fire1, &k);
    assert_int_equal(loop_post(k.loop, posted, &k), 0);
    assert_int_equal(loop_run(k.loop), 0);
    assert_int_equal(k.n, 3);
    assert_int_equal(k.order[0], 3);
    assert_int_equal(k.order[1], 1);
    assert_int_equal(k.order[2], 2);
    loop_destroy(k.loop);
}

static void on_readable(void *arg, int fd, unsigned events)
{
    int *hits = arg;
    char c;

    (void)events;
    if (read(fd, &c, 1) == 1) {
        (*hits)++;
    }
}

/* A watched fd closed without loop_io_set(fd, 0) and its number reused
 * must still be watchable (the kernel dropped the old registration). */
static void test_loop_fd_reuse(void **state)
{
    char err[128];
    struct loop *l = loop_create(err, sizeof(err));
    int p1[2], p2[2], hits = 0;

    (void)state;
    assert_non_null(l);
    assert_int_equal(pipe(p1), 0);
    assert_int_equal(loop_io_set(l, p1[0], LOOP_READ, on_readable, &hits), 0);
    close(p1[0]);
    close(p1[1]);
    assert_int_equal(pipe(p2), 0);
    assert_int_equal(p2[0], p1[0]); /* lowest free number comes back */
    assert_int_equal(loop_io_set(l, p2[0], LOOP_READ, on_readable, &hits), 0);
    assert_int_equal(write(p2[1], "x", 1), 1);
    assert_int_equal(loop_run_once(l, 1000), 0);
    assert_int_equal(hits, 1);
    loop_io_set(l, p2[0], 0, NULL, NULL);
    close(p2[0]);
    close(p2[1]);
    loop_destroy(l);
}

struct swap {
    struct loop *l;
    int a[2], b[2], c[2];
    int first_fd; /* the fd whose callback ran first */
    int calls, c_calls;
};

static void on_c(void *arg, int fd, unsigned events)
{
    struct swap *w = arg;
    char ch;

    (void)events;
    assert_int_equal(read(fd, &ch, 1), 1);
    w->c_calls++;
}

/* The first of a and b to run drops the other's watch and watches c. */
static void on_a_or_b(void *arg, int fd, unsigned events)
{
    struct swap *w = arg;
    char ch;

    (void)events;
    assert_int_equal(read(fd, &ch, 1), 1);
    if (w->calls++ == 0) {
        w->first_fd = fd;
        loop_io_set(w->l, fd == w->a[0] ? w->b[0] : w->a[0], 0, NULL, NULL);
        assert_int_equal(loop_io_set(w->l, w->c[0], LOOP_READ, on_c, w), 0);
    }
}

/* A watch removed by a callback gets none of the round's later events,
 * not even through a new watch that took its place (and its memory). */
static void test_loop_io_removed_in_round(void **state)
{
    char err[128];
    struct swap w;

    (void)state;
    memset(&w, 0, sizeof(w));
    w.l = loop_create(err, sizeof(err));
    assert_non_null(w.l);
    assert_int_equal(pipe(w.a), 0);
    assert_int_equal(pipe(w.b), 0);
    assert_int_equal(pipe(w.c), 0);
    assert_int_equal(write(w.a[1], "x", 1), 1);
    assert_int_equal(write(w.b[1], "x", 1), 1);
    assert_int_equal(write(w.c[1], "x", 1), 1);
    assert_int_equal(loop_io_set(w.l, w.a[0], LOOP_READ, on_a_or_b, &w), 0);
    assert_int_equal(loop_io_set(w.l, w.b[0], LOOP_READ, on_a_or_b, &w), 0);
    assert_int_equal(loop_run_once(w.l, 1000), 0);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.c_calls, 0); /* c's own event comes next round */
    assert_int_equal(loop_run_once(w.l, 1000), 0);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.c_calls, 1);
    loop_io_set(w.l, w.first_fd, 0, NULL, NULL);
    loop_io_set(w.l, w.c[0], 0, NULL, NULL);
    loop_destroy(w.l);
    close(w.a[0]);
    close(w.a[1]);
    close(w.b[0]);
    close(w.b[1]);
    close(w.c[0]);
    close(w.c[1]);
}

/* One event, one line: text lines blank control characters, JSON lines
 * escape them. */
/* Deferred calls run once per round, however often armed, in arming
 * order; one armed from a deferred call joins the same pass; a cancelled
 * one does not run. */
struct defer_state {
    struct loop *l;
    struct loop_defer a, b, c, d;
    char order[16];
    size_t n;
};

static void defer_mark(struct defer_state *s, char ch)
{
    if (s->n < sizeof(s->order) - 1) {
        s->order[s->n++] = ch;
    }
}

static void defer_c(void *arg)
{
    defer_mark(arg, 'c');
}

static void defer_a(void *arg)
{
    struct defer_state *s = arg;

    defer_mark(s, 'a');
    loop_defer(s->l, &s->c, defer_c, s);
}

static void defer_b(void *arg)
{
    defer_mark(arg, 'b');
}

static void defer_d(void *arg)
{
    defer_mark(arg, 'd');
}

static void test_loop_defer(void **state)
{
    struct defer_state s;
    char err[256];

    (void)state;
    memset(&s, 0, sizeof(s));
    s.l = loop_create(err, sizeof(err));
    assert_non_null(s.l);
    loop_defer_init(&s.a);
    loop_defer_init(&s.b);
    loop_defer_init(&s.c);
    loop_defer_init(&s.d);
    loop_defer(s.l, &s.a, defer_a, &s);
    loop_defer(s.l, &s.b, defer_b, &s);
    loop_defer(s.l, &s.a, defer_a, &s); /* armed already: still once */
    loop_defer(s.l, &s.d, defer_d, &s);
    loop_defer_cancel(s.l, &s.d);
    /* Armed work makes the round not wait, whatever the timeout. */
    assert_int_equal(loop_run_once(s.l, 5000), 0);
    assert_string_equal(s.order, "abc");
    assert_int_equal(loop_run_once(s.l, 0), 0);
    assert_string_equal(s.order, "abc");
    loop_destroy(s.l);
}

static void test_log_one_line(void **state)
{
    char out[512];
    ssize_t n;
    int p[2];

    (void)state;
    assert_int_equal(pipe(p), 0);
    log_set_fd(p[1]);
    log_setup(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    log_error("b1", "Forged\n2026-01-01T00:00:00.000Z error [b1] fake\r\tend");
    n = read(p[0], out, sizeof(out) - 1);
    assert_true(n > 0);
    out[n] = '\0';
    assert_non_null(
        strstr(out, " error [b1] Forged 2026-01-01T00:00:00.000Z error [b1] fake  end\n"));
    assert_ptr_equal(strchr(out, '\n'), out + n - 1);
    log_setup(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
    log_error("b1", "a\nb");
    n = read(p[0], out, sizeof(out) - 1);
    assert_true(n > 0);
    out[n] = '\0';
    assert_non_null(strstr(out, "\"msg\":\"a\\nb\"}\n"));
    log_setup(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    log_set_fd(-1);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loop_defer),
        cmocka_unit_test(test_buf_cap),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_buf_no_wrap),
        cmocka_unit_test(test_buf_json_str),
        cmocka_unit_test(test_buf_append_file),
        cmocka_unit_test(test_settings_ok),
        cmocka_unit_test(test_settings_errors),
        cmocka_unit_test(test_parse_int_strict),
        cmocka_unit_test(test_loop_timers_and_posts),
        cmocka_unit_test(test_loop_fd_reuse),
        cmocka_unit_test(test_log_one_line),
        cmocka_unit_test(test_loop_io_removed_in_round),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
