/* test_filewatch.c - filewatch on a real directory: edits in place, renames
 * over the file, a ConfigMap-style `..data` symlink swap, the file going
 * and coming back, and debouncing. */
#include "base/clock.h"
#include "base/filewatch.h"

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define DEBOUNCE_MS 100

struct fw_test {
    char dir[PATH_MAX];
    char path[PATH_MAX + 32];
    struct loop *loop;
    struct filewatch *w;
    int changed, gone;
};

static void on_change(void *ctx, enum filewatch_event ev)
{
    struct fw_test *t = ctx;

    if (ev == FILEWATCH_CHANGED) {
        t->changed++;
    } else {
        t->gone++;
    }
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* Run the loop for ms: long enough for the debounce to fire. */
static void run_for(struct fw_test *t, int ms)
{
    uint64_t start = clock_mono_ms();

    for (;;) {
        long el = (long)(clock_mono_ms() - start);

        if (el >= ms) {
            return;
        }
        assert_int_equal(loop_run_once(t->loop, (int)(ms - el)), 0);
    }
}

static int setup(void **state)
{
    struct fw_test *t = calloc(1, sizeof(*t));
    char err[256];

    snprintf(t->dir, sizeof(t->dir), "/tmp/kk-filewatch-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof(t->path), "%s/config.yaml", t->dir);
    t->loop = loop_create(err, sizeof(err));
    assert_non_null(t->loop);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct fw_test *t = *state;
    char cmd[PATH_MAX + 32];

    filewatch_destroy(t->w);
    loop_destroy(t->loop);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
    assert_int_equal(system(cmd), 0);
    free(t);
    return 0;
}

static void start_watch(struct fw_test *t)
{
    char err[256];

    t->w = filewatch_create(t->loop, t->path, DEBOUNCE_MS, on_change, t, err, sizeof(err));
    if (!t->w) {
        fail_msg("filewatch_create: %s", err);
    }
}

static void test_edit_in_place_and_same_content(void **state)
{
    struct fw_test *t = *state;

    write_file(t->path, "a: 1\n");
    start_watch(t);
    run_for(t, 50);
    assert_int_equal(t->changed, 0); /* what is there at the start counts as seen */
    write_file(t->path, "a: 2\n");
    run_for(t, DEBOUNCE_MS * 3);
    assert_int_equal(t->changed, 1);
    write_file(t->path, "a: 2\n"); /* rewritten, not changed */
    run_for(t, DEBOUNCE_MS * 3);
    assert_int_equal(t->changed, 1);
    assert_int_equal(t->gone, 0);
}

static void test_rename_over(void **state)
{
    struct fw_test *t = *state;
    char tmp[PATH_MAX + 32];

    write_file(t->path, "a: 1\n");
    start_watch(t);
    snprintf(tmp, sizeof(tmp), "%s/.config.yaml.swp", t->dir);
    write_file(tmp, "a: 3\n");
    assert_int_equal(rename(tmp, t->path), 0);
    run_for(t, DEBOUNCE_MS * 3);
    assert_int_equal(t->changed, 1);
}

/* A ConfigMap volume: config.yaml -> ..data/config.yaml, ..data -> ..v1;
 * an update writes ..v2 and swaps ..data by renaming a new link over it. */
static void test_configmap_swap(void **state)
{
    struct fw_test *t = *state;
    char p[PATH_MAX + 64], q[PATH_MAX + 64];

    snprintf(p, sizeof(p), "%s/..v1", t->dir);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/..v1/config.yaml", t->dir);
    write_file(p, "v: 1\n");
    snprintf(p, sizeof(p), "%s/..data", t->dir);
    assert_int_equal(symlink("..v1", p), 0);
    assert_int_equal(symlink("..data/config.yaml", t->path), 0);
    start_watch(t);

    snprintf(p, sizeof(p), "%s/..v2", t->dir);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/..v2/config.yaml", t->dir);
    write_file(p, "v: 2\n");
    snprintf(p, sizeof(p), "%s/..data_tmp", t->dir);
    assert_int_equal(symlink("..v2", p), 0);
    snprintf(q, sizeof(q), "%s/..data", t->dir);
    assert_int_equal(rename(p, q), 0);
    run_for(t, DEBOUNCE_MS * 3);
    assert_int_equal(t->changed, 1);

    /* The old version's directory goes, as the kubelet removes it: no change. */
    snprintf(p, sizeof(p), "rm -rf '%s/..v1'", t->dir);
    assert_int_equal(system(p), 0);
    run_for(t, DEBOUNCE_MS * 3);
    assert_int_equal(t->changed, 1);
    assert_int_equal(t->gone, 0);

    /* And the next update is seen too (the watch followed ..v2). */
    snprintf(p, sizeof(p), "%s/..v2/config.yaml", t->dir);
    write_file(p, "v: 3\n");
    run_for(t, DEBOUNCE_MS * 3);
    assert_int_equal(t->changed, 2);
}

static void test_gone_and_back(void **state)
{
    struct fw_test *t = *state;

    write_file(t->path, "a: 1\n");
    start_watch(t);
    assert_int_equal(unlink(t->path), 0);
    run_for(t, DEBOUNCE_MS * 3);
    assert_int_equal(t->gone, 1);
    assert_int_equal(t->changed, 0);
    write_file(t->path, "a: 1\n"); /* back, even with the same content: a change */
    run_for(t, DEBOUNCE_MS * 3);
    assert_int_equal(t->changed, 1);
    assert_int_equal(t->gone, 1);
}

static void test_debounce(void **state)
{
    struct fw_test *t = *state;
    char text[32];
    int i;

    write_file(t->path, "n: 0\n");
    start_watch(t);
    for (i = 1; i <= 10; i++) {
        snprintf(text, sizeof(text), "n: %d\n", i);
        write_file(t->path, text);
        run_for(t, 10);
    }
    run_for(t, DEBOUNCE_MS * 4);
    assert_int_equal(t->changed, 1);
}

static void test_rebase(void **state)
{
    struct fw_test *t = *state;

    write_file(t->path, "a: 1\n");
    start_watch(t);
    write_file(t->path, "a: 2\n");
    filewatch_rebase(t->w); /* read by someone else already */
    run_for(t, DEBOUNCE_MS * 3);
    assert_int_equal(t->changed, 0);
}

static void test_bad_directory(void **state)
{
    struct fw_test *t = *state;
    char err[256];

    assert_null(filewatch_create(t->loop, "/nonexistent-dir-kk/config.yaml", 100, on_change, t, err,
                                 sizeof(err)));
    assert_non_null(strstr(err, "cannot watch /nonexistent-dir-kk"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_edit_in_place_and_same_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rename_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_configmap_swap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gone_and_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_debounce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_directory, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
