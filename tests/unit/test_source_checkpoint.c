/* test_source_checkpoint.c - the events-store checkpoint without a broker:
 * the watermark (out-of-order answers, gaps, copies, messages never
 * answered, against a plain model over many random orders), its text, and
 * the file (atomic replacement, what is refused and how it is said). */
#include "base/buf.h"
#include "source/source_checkpoint.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- the watermark ---- */

static void test_in_order_and_out_of_order(void **state)
{
    struct source_watermark *w = source_watermark_create("a:1/orders");
    uint64_t i;

    (void)state;
    assert_non_null(w);
    assert_string_equal(source_watermark_stream(w), "a:1/orders");
    assert_int_equal(source_watermark_positioned(w), 0);
    source_watermark_position(w, 0, 1);
    assert_int_equal(source_watermark_positioned(w), 1);
    assert_int_equal(source_watermark_base_known(w), 1);
    assert_int_equal(source_watermark_mark(w), 0);
    for (i = 1; i <= 5; i++) {
        assert_int_equal(source_watermark_take(w, i), 1);
    }
    assert_int_equal(source_watermark_outstanding(w), 5);
    assert_int_equal(source_watermark_mark(w), 0);
    source_watermark_done(w, 1);
    source_watermark_done(w, 2);
    assert_int_equal(source_watermark_mark(w), 2);
    /* 4 and 5 finish before 3: the mark waits for 3. */
    source_watermark_done(w, 5);
    source_watermark_done(w, 4);
    assert_int_equal(source_watermark_mark(w), 2);
    assert_int_equal(source_watermark_outstanding(w), 1);
    source_watermark_done(w, 3);
    assert_int_equal(source_watermark_mark(w), 5);
    assert_int_equal(source_watermark_outstanding(w), 0);
    assert_int_equal(source_watermark_highest(w), 5);
    /* An answer for something not taken changes nothing. */
    source_watermark_done(w, 42);
    assert_int_equal(source_watermark_mark(w), 5);
    source_watermark_ref(w);
    source_watermark_unref(w);
    source_watermark_unref(w);
    source_watermark_unref(NULL);
}

static void test_base_gaps_and_copies(void **state)
{
    struct source_watermark *w = source_watermark_create("s");

    (void)state;
    /* Resumed after a checkpoint of 100. */
    source_watermark_position(w, 100, 1);
    assert_int_equal(source_watermark_mark(w), 100);
    assert_int_equal(source_watermark_highest(w), 100);
    /* At or below the mark: a copy of something answered, not tracked. */
    assert_int_equal(source_watermark_take(w, 100), 0);
    assert_int_equal(source_watermark_take(w, 7), 0);
    source_watermark_done(w, 7);
    assert_int_equal(source_watermark_mark(w), 100);
    /* Two sources of a reload interleave: 103 before 102, both above the
     * mark, so both are tracked (102 goes in between). */
    assert_int_equal(source_watermark_take(w, 101), 1);
    assert_int_equal(source_watermark_take(w, 103), 1);
    assert_int_equal(source_watermark_take(w, 102), 1);
    assert_int_equal(source_watermark_mark(w), 100);
    source_watermark_done(w, 101);
    assert_int_equal(source_watermark_mark(w), 101);
    source_watermark_done(w, 103);
    assert_int_equal(source_watermark_mark(w), 101);
    source_watermark_done(w, 102);
    assert_int_equal(source_watermark_mark(w), 103);
    /* One that would come in below the mark (a copy) is not tracked: the
     * mark never goes back. */
    assert_int_equal(source_watermark_take(w, 102), 0);
    assert_int_equal(source_watermark_mark(w), 103);
    /* A gap (105 went to the other source and was answered there). */
    source_watermark_take(w, 104);
    source_watermark_take(w, 106);
    source_watermark_done(w, 106);
    assert_int_equal(source_watermark_mark(w), 103);
    source_watermark_done(w, 104);
    assert_int_equal(source_watermark_mark(w), 106);
    /* The same message twice in flight: both answers are needed. */
    source_watermark_take(w, 107);
    source_watermark_take(w, 107);
    assert_int_equal(source_watermark_outstanding(w), 2);
    source_watermark_done(w, 107);
    assert_int_equal(source_watermark_mark(w), 106);
    source_watermark_done(w, 107);
    assert_int_equal(source_watermark_mark(w), 107);
    source_watermark_unref(w);

    /* A start by time: nothing known before the first message. */
    w = source_watermark_create("s");
    source_watermark_position(w, 0, 0);
    assert_int_equal(source_watermark_base_known(w), 0);
    source_watermark_take(w, 500);
    assert_int_equal(source_watermark_mark(w), 499);
    source_watermark_done(w, 500);
    assert_int_equal(source_watermark_mark(w), 500);
    source_watermark_unref(w);
}

static void test_lost_stays_below(void **state)
{
    struct source_watermark *w = source_watermark_create("s");
    uint64_t i;

    (void)state;
    source_watermark_position(w, 0, 1);
    for (i = 1; i <= 4; i++) {
        source_watermark_take(w, i);
    }
    source_watermark_done(w, 1);
    /* 2 was never run (the binding was abandoned): lost for this run. */
    source_watermark_lose(w, 2);
    source_watermark_done(w, 3);
    source_watermark_done(w, 4);
    assert_int_equal(source_watermark_mark(w), 1);
    assert_int_equal(source_watermark_outstanding(w), 0);
    /* Whatever comes after, answered or not. */
    for (i = 5; i <= 1000; i++) {
        source_watermark_take(w, i);
        source_watermark_done(w, i);
    }
    assert_int_equal(source_watermark_mark(w), 1);
    assert_int_equal(source_watermark_highest(w), 1000);
    /* Losing something not taken changes nothing. */
    source_watermark_lose(w, 2000);
    assert_int_equal(source_watermark_mark(w), 1);
    source_watermark_unref(w);
}

/* Against a model: each of n sequences taken in order (some by "the other
 * source", i.e. skipped), answered in a random order, sometimes lost; after
 * every step the mark is the plain definition's. */
static void test_random_orders_against_a_model(void **state)
{
    enum { N = 3000 };
    static unsigned char taken[N + 1], answered[N + 1], lost[N + 1];
    static uint64_t order[N];
    unsigned seed;

    (void)state;
    for (seed = 1; seed <= 40; seed++) {
        struct source_watermark *w = source_watermark_create("m");
        size_t n = 0, next = 1;

        srand(seed);
        memset(taken, 0, sizeof(taken));
        memset(answered, 0, sizeof(answered));
        memset(lost, 0, sizeof(lost));
        source_watermark_position(w, 0, 1);
        while (next <= N || n > 0) {
            /* Take a few (in order; a gap now and then), then answer one of
             * those in flight at random. */
            int takes = rand() % 4;

            while (takes-- > 0 && next <= N) {
                if (rand() % 10 != 0) {
                    taken[next] = 1;
                    source_watermark_take(w, next);
                    order[n++] = next;
                }
                next++;
            }
            if (n > 0 && (rand() % 3 != 0 || next > N)) {
                size_t k = (size_t)rand() % n;
                uint64_t seq = order[k];

                order[k] = order[--n];
                if (seed % 4 == 0 && rand() % 200 == 0) {
                    lost[seq] = 1;
                    source_watermark_lose(w, seq);
                } else {
                    answered[seq] = 1;
                    source_watermark_done(w, seq);
                }
            }
            {
                /* The model: the highest m such that every taken s <= m is
                 * answered, capped by the highest taken. */
                uint64_t m = 0, highest = 0, s;

                for (s = 1; s < next; s++) {
                    if (taken[s]) {
                        highest = s;
                    }
                }
                for (s = 1; s <= highest; s++) {
                    if (taken[s] && !answered[s]) {
                        break;
                    }
                    m = s;
                }
                if (source_watermark_mark(w) != m) {
                    fail_msg("seed %u, next %zu: mark %llu, the model says %llu", seed, next,
                             (unsigned long long)source_watermark_mark(w), (unsigned long long)m);
                }
            }
        }
        assert_int_equal(source_watermark_outstanding(w), 0);
        source_watermark_unref(w);
    }
}

static void test_long_run_stays_small(void **state)
{
    struct source_watermark *w = source_watermark_create("s");
    uint64_t i;

    (void)state;
    source_watermark_position(w, 0, 1);
    /* A million in order with 64 in flight: the memory follows what is in
     * flight (ASan would see the rest). */
    for (i = 1; i <= 1000000; i++) {
        assert_int_equal(source_watermark_take(w, i), 1);
        if (i > 64) {
            source_watermark_done(w, i - 64);
        }
    }
    assert_int_equal(source_watermark_outstanding(w), 64);
    assert_int_equal(source_watermark_mark(w), 1000000 - 64);
    for (i = 1000000 - 63; i <= 1000000; i++) {
        source_watermark_done(w, i);
    }
    assert_int_equal(source_watermark_mark(w), 1000000);
    source_watermark_unref(w);
}

/* ---- the text ---- */

static void test_format_and_parse(void **state)
{
    struct buf b = BUF_INIT(4096);
    char err[600];
    uint64_t seq = 0;

    (void)state;
    assert_int_equal(source_checkpoint_format("b\"1\\", "ord\u00e9rs", 18446744073709551ULL, &b),
                     0);
    assert_non_null(strstr(buf_str(&b), "\"sequence\":18446744073709551,\"time\":\""));
    assert_int_equal(
        source_checkpoint_parse(b.data, b.len, "b\"1\\", "ord\u00e9rs", &seq, err, sizeof(err)), 0);
    assert_int_equal(seq, 18446744073709551ULL);
    /* Another binding's, another channel's. */
    assert_int_equal(
        source_checkpoint_parse(b.data, b.len, "b2", "ord\u00e9rs", &seq, err, sizeof(err)), 1);
    assert_non_null(strstr(err, "the checkpoint of binding \"b\"1\\\" on channel \"ord\u00e9rs\", "
                                "not of binding \"b2\" on channel \"ord\u00e9rs\""));
    assert_int_equal(
        source_checkpoint_parse(b.data, b.len, "b\"1\\", "other", &seq, err, sizeof(err)), 1);
    buf_free(&b);

    /* Not checkpoints. */
#define BAD(text, needle)                                                                          \
    do {                                                                                           \
        assert_int_equal(                                                                          \
            source_checkpoint_parse(text, strlen(text), "b", "c", &seq, err, sizeof(err)), -1);    \
        if (!strstr(err, needle)) {                                                                \
            fail_msg("%s: \"%s\" not in \"%s\"", text, needle, err);                               \
        }                                                                                          \
    } while (0)
    BAD("", "not JSON");
    BAD("{\"binding\":\"b\",", "not JSON");
    BAD("[1,2]", "not a JSON object");
    BAD("{\"channel\":\"c\",\"sequence\":1}", "\"binding\" and \"channel\" must be strings");
    BAD("{\"binding\":1,\"channel\":\"c\",\"sequence\":1}", "must be strings");
    BAD("{\"binding\":\"b\",\"channel\":\"c\"}", "\"sequence\" must be an integer >= 0");
    BAD("{\"binding\":\"b\",\"channel\":\"c\",\"sequence\":\"5\"}", "\"sequence\" must be");
    BAD("{\"binding\":\"b\",\"channel\":\"c\",\"sequence\":-1}", "\"sequence\" must be");
    BAD("{\"binding\":\"b\",\"channel\":\"c\",\"sequence\":1.5}", "\"sequence\" must be");
#undef BAD
    /* Zero: nothing answered yet; unknown keys are let be. */
    {
        const char *zero = "{\"binding\":\"b\",\"channel\":\"c\",\"sequence\":0,\"x\":[]}\n";

        seq = 9;
        assert_int_equal(
            source_checkpoint_parse(zero, strlen(zero), "b", "c", &seq, err, sizeof(err)), 0);
    }
    assert_int_equal(seq, 0);
}

/* ---- the file ---- */

static char dir[256];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/kk-test-ckpt-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    char cmd[300];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_file_round_trip(void **state)
{
    char path[400], tmp[420], err[1024];
    struct buf b = BUF_INIT(4096);
    uint64_t seq = 0;
    struct stat st;

    (void)state;
    snprintf(path, sizeof(path), "%s/ck.json", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    /* None yet. */
    assert_int_equal(source_checkpoint_file_read(path, "b", "c", &seq, err, sizeof(err)), 0);
    assert_int_equal(source_checkpoint_format("b", "c", 41, &b), 0);
    assert_int_equal(source_checkpoint_file_write(path, b.data, b.len, err, sizeof(err)), 0);
    assert_int_equal(source_checkpoint_file_read(path, "b", "c", &seq, err, sizeof(err)), 1);
    assert_int_equal(seq, 41);
    /* Replaced, never appended to; no temporary file left. */
    buf_reset(&b);
    assert_int_equal(source_checkpoint_format("b", "c", 42, &b), 0);
    assert_int_equal(source_checkpoint_file_write(path, b.data, b.len, err, sizeof(err)), 0);
    assert_int_equal(source_checkpoint_file_read(path, "b", "c", &seq, err, sizeof(err)), 1);
    assert_int_equal(seq, 42);
    assert_int_equal(stat(tmp, &st), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((size_t)st.st_size, b.len);
    /* A relative path: the directory is ".". */
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(source_checkpoint_file_write("rel.json", b.data, b.len, err, sizeof(err)), 0);
    assert_int_equal(source_checkpoint_file_read("rel.json", "b", "c", &seq, err, sizeof(err)), 1);
    assert_int_equal(chdir("/"), 0);
    /* A directory that is not there. */
    snprintf(path, sizeof(path), "%s/no/such/ck.json", dir);
    assert_int_equal(source_checkpoint_file_write(path, b.data, b.len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot create"));
    assert_non_null(strstr(err, "No such file or directory"));
    buf_free(&b);
}

static void test_file_refused(void **state)
{
    char path[400], err[1024];
    uint64_t seq = 0;
    char *big;

    (void)state;
    snprintf(path, sizeof(path), "%s/broken.json", dir);
    write_text(path, "{\"binding\":\"b\",\"channel\":\"c\",\"seq");
    assert_int_equal(source_checkpoint_file_read(path, "b", "c", &seq, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "broken.json\" is not a checkpoint (not JSON"));
    assert_non_null(strstr(err, "fix or remove it"));

    write_text(path, "");
    assert_int_equal(source_checkpoint_file_read(path, "b", "c", &seq, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "is not a checkpoint (empty)"));

    write_text(path, "{\"binding\":\"orders\",\"channel\":\"in\",\"sequence\":3}");
    assert_int_equal(source_checkpoint_file_read(path, "b", "c", &seq, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "broken.json\" is the checkpoint of binding \"orders\" on channel "
                                "\"in\", not of binding \"b\" on channel \"c\"; give each binding "
                                "a file of its own"));

    big = malloc(70000);
    assert_non_null(big);
    memset(big, ' ', 69999);
    big[69999] = '\0';
    write_text(path, big);
    free(big);
    assert_int_equal(source_checkpoint_file_read(path, "b", "c", &seq, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "is not a checkpoint (larger than 64 KiB)"));

    /* A directory, and a path that cannot be opened. */
    assert_int_equal(source_checkpoint_file_read(dir, "b", "c", &seq, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "it is a directory"));
    snprintf(path, sizeof(path), "%s/loop", dir);
    assert_int_equal(symlink(path, path), 0);
    assert_int_equal(source_checkpoint_file_read(path, "b", "c", &seq, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot read"));
    assert_non_null(strstr(err, "Too many levels of symbolic links"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order_and_out_of_order),
        cmocka_unit_test(test_base_gaps_and_copies),
        cmocka_unit_test(test_lost_stays_below),
        cmocka_unit_test(test_random_orders_against_a_model),
        cmocka_unit_test(test_long_run_stays_small),
        cmocka_unit_test(test_format_and_parse),
        cmocka_unit_test(test_file_round_trip),
        cmocka_unit_test(test_file_refused),
    };

    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
