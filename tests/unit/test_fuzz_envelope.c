/* test_fuzz_envelope.c - mutated request bodies and configs: every input is
 * accepted or refused with a message; nothing crashes, leaks or hangs (the
 * suite runs under ASan, UBSan and LSan). */
#include "base/errs.h"
#include "base/log.h"
#include "binding/config.h"
#include "message/envelope.h"
#include "fuzz.h"

#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define ROUNDS 10000

static const char *const bodies[] = {
    "{\"metadata\":{\"method\":\"put_record\",\"stream_name\":\"s\",\"partition_key\":\"k\"},"
    "\"data\":\"eyJhIjoxfQ==\"}",
    "{\"metadata\":{\"method\":\"list_streams\"},\"data\":null}",
    "{\"metadata\":{\"method\":\"put_records\",\"stream_name\":\"s\"},\"data\":{\"k1\":\"QQ==\","
    "\"k2\":\"Qg==\"}}",
    "{\"metadata\":{\"method\":\"put_records\",\"stream_name\":\"s\"},\"data\":[{\"partition_key\":"
    "\"k\",\"data\":\"QQ==\"}]}",
    "{\"metadata\":{\"a\":\"\\u00e9\\n\",\"b\":\"\"},\"data\":\"test-string\"}",
    "{\"metadata\":{\"method\":\"put\",\"stream\":\"s\"},\"data\":{\"json\":[1,2,{\"x\":null}]}}",
    "{\"metadata\":{},\"data\":\"AAECAwQFBgcICQoLDA0ODw==\"}",
    "{\"data\":\"\\\"quoted\\\"\"}",
    "not json at all",
    "",
};

static void check_reply_json(const struct buf *out)
{
    json_error_t jerr;
    json_t *j = json_loadb(out->data, out->len, 0, &jerr);

    if (!j) {
        fail_msg("reply is not JSON (%s): %.*s", jerr.text, (int)out->len, out->data);
    }
    assert_non_null(json_object_get(j, "metadata"));
    assert_non_null(json_object_get(j, "is_error"));
    json_decref(j);
}

static void test_envelope(void **state)
{
    struct fuzz f;
    struct envelope_request req;
    struct envelope_reply rep;
    struct buf out = BUF_INIT(1 << 20);
    char err[512];
    size_t i;
    int r, ok = 0, refused = 0;

    (void)state;
    fuzz_seed(&f, 0xe4e1);
    for (i = 0; i < sizeof(bodies) / sizeof(*bodies); i++) {
        for (r = 0; r < ROUNDS; r++) {
            int raw = r % 5 == 0;

            fuzz_mutate(&f, bodies[i], strlen(bodies[i]));
            envelope_request_init(&req);
            err[0] = '\0';
            if (envelope_request_parse(&req, f.out, f.len, raw, err, sizeof(err)) < 0) {
                if (!err[0]) {
                    fail_msg("body %zu round %d: refused without a message", i, r);
                }
                refused++;
                envelope_request_free(&req);
                continue;
            }
            ok++;
            (void)envelope_meta(&req, "method");
            buf_reset(&out);
            assert_int_equal(envelope_request_serialize(&req, &out), 0);
            envelope_reply_init(&rep);
            assert_int_equal(envelope_reply_meta_set(&rep, "result", "ok"), 0);
            if (req.has_data) {
                assert_int_equal(envelope_reply_set_data(&rep, req.data.data, req.data.len), 0);
            }
            if (r % 3 == 0) {
                envelope_reply_set_error(&rep, "failed: %.*s", (int)req.data.len,
                                         req.data.data ? req.data.data : "");
            }
            buf_reset(&out);
            assert_int_equal(envelope_reply_serialize(&rep, &out), 0);
            check_reply_json(&out);
            envelope_reply_free(&rep);
            envelope_request_free(&req);
        }
    }
    /* Both outcomes were exercised, or the mutator is broken. */
    assert_true(ok > 1000);
    assert_true(refused > 1000);
    buf_free(&out);
}

static char *read_example(const char *name, size_t *len)
{
    char path[1024];
    struct buf b = BUF_INIT(1 << 20);
    char err[256];

    snprintf(path, sizeof(path), "%s/examples/%s", KK_SOURCE_DIR, name);
    if (buf_append_file(&b, path, err, sizeof(err)) < 0) {
        fail_msg("%s", err);
    }
    return buf_detach(&b, len);
}

/* The config files in examples/ (whatever they are named), in order. */
static int is_yaml(const struct dirent *d)
{
    size_t n = strlen(d->d_name);

    return n > 5 && strcmp(d->d_name + n - 5, ".yaml") == 0;
}

static void test_config(void **state)
{
    static const char json_config[] =
        "{\"apiPort\":\"8080\",\"bindings\":[{\"name\":\"b\",\"source\":{\"kind\":\"kubemq.query\","
        "\"properties\":{\"address\":\"127.0.0.1:50000\",\"channel\":\"c\"}},\"target\":{\"kind\":"
        "\"aws.kinesis\",\"properties\":{\"region\":\"us-east-1\",\"coalesce\":\"true\"}},"
        "\"properties\":{\"metadata\":\"{\\\"method\\\":\\\"put_record\\\"}\","
        "\"retry_attempts\":\"3\"}}]}";
    struct dirent **files;
    struct fuzz f;
    struct config c;
    struct errs errs;
    size_t len;
    int i, n, r, ok = 0, refused = 0, devnull = open("/dev/null", O_WRONLY);

    (void)state;
    n = scandir(KK_SOURCE_DIR "/examples", &files, is_yaml, alphasort);
    assert_true(n >= 2);
    log_set_fd(devnull); /* warnings of mutated configs */
    fuzz_seed(&f, 0xc0f1);
    for (i = 0; i <= n; i++) {
        const char *name = i < n ? files[i]->d_name : "json";
        char *text = i < n ? read_example(name, &len) : strdup(json_config);

        assert_non_null(text);
        if (i == n) {
            len = strlen(text);
        }
        /* The unmutated text loads. */
        errs_init(&errs);
        if (config_load_text(&c, text, len, "fuzz", &errs) < 0) {
            fail_msg("%s: %s", name, buf_str(&errs.text));
        }
        config_free(&c);
        errs_free(&errs);
        for (r = 0; r < ROUNDS / 3; r++) {
            fuzz_mutate(&f, text, len);
            errs_init(&errs);
            if (config_load_text(&c, f.out, f.len, "fuzz", &errs) < 0) {
                if (errs.count < 1 || !errs.text.len) {
                    fail_msg("config %s round %d: refused without a message", name, r);
                }
                refused++;
            } else {
                ok++;
            }
            config_free(&c);
            errs_free(&errs);
        }
        free(text);
    }
    for (i = 0; i < n; i++) {
        free(files[i]);
    }
    free(files);
    log_set_fd(-1);
    close(devnull);
    assert_true(ok > 50);
    assert_true(refused > 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_config),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
