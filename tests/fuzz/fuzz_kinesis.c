/* fuzz_kinesis.c - libFuzzer: one aws.kinesis request and the AWS answers
 * to its calls. Input: the request body, then per AWS call "\n\x01", a
 * status byte (0: 200, 1: 400, 2: 500, 3: 503, mod 4) and the answer body;
 * calls past the last answer get 200 "{}". Bodies of length 1 mod 4 go to
 * a coalescing instance, 3 mod 4 to an aggregating one (KPL aggregates,
 * its shard map from the answers). The request must be answered exactly
 * once, an error with a message, in at most 50 AWS calls. See run.sh. */
#define _GNU_SOURCE
#include "aws/aws_client.h"
#include "base/errs.h"
#include "base/log.h"
#include "base/loop.h"
#include "kinesis/kinesis.h"
#include "message/envelope.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ANSWERS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct {
    const char *answer[MAX_ANSWERS];
    size_t len[MAX_ANSWERS];
    int n, next, calls, answered;
} F;

static int fake_send(void *tctx, const struct aws_http_request *req, aws_http_done_fn done,
                     void *cctx)
{
    static const long statuses[] = {200, 400, 500, 503};

    (void)tctx;
    (void)req;
    if (++F.calls > 50) {
        abort(); /* retries must end */
    }
    if (F.next < F.n && F.len[F.next] > 0) {
        const char *a = F.answer[F.next];
        size_t n = F.len[F.next++];

        done(cctx, statuses[(unsigned char)a[0] % 4], a + 1, n - 1, NULL);
    } else {
        F.next++;
        done(cctx, 200, "{}", 2, NULL);
    }
    return 0;
}

static const struct aws_transport fake = {fake_send, NULL};

static void *make(struct loop *loop, const char *extra)
{
    char text[512];
    struct errs errs;
    json_t *props;
    void *k;

    snprintf(text, sizeof(text),
             "{\"aws_key\":\"AK\",\"aws_secret_key\":\"s\",\"region\":\"us-east-1\","
             "\"endpoint\":\"http://127.0.0.1:9\",\"max_attempts\":\"2\"%s}",
             extra);
    props = json_loads(text, 0, NULL);
    errs_init(&errs);
    k = kinesis_instance_create(loop, props, "fz", "fz", &fake, &errs);
    errs_free(&errs);
    json_decref(props);
    if (!k) {
        abort();
    }
    return k;
}

static void on_done(void *ctx)
{
    (void)ctx;
    F.answered++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct loop *loop;
    static void *plain, *coalescing, *aggregating;
    const char *p = (const char *)data, *end = p + size, *sep;
    struct envelope_request req;
    struct envelope_reply reply;
    char err[256];
    size_t blen;
    int i;

    if (!loop) {
        log_setup(LOG_LEVEL_ERROR, LOG_FORMAT_TEXT);
        loop = loop_create(NULL, 0);
        plain = make(loop, "");
        coalescing = make(loop, ",\"coalesce\":\"true\",\"coalesce_linger_ms\":\"0\"");
        aggregating = make(loop, ",\"coalesce\":\"true\",\"aggregate\":\"true\"");
    }
    memset(&F, 0, sizeof(F));
    sep = memmem(p, size, "\n\x01", 2);
    blen = sep ? (size_t)(sep - p) : size;
    while (sep && F.n < MAX_ANSWERS) {
        const char *a = sep + 2;

        sep = memmem(a, (size_t)(end - a), "\n\x01", 2);
        F.answer[F.n] = a;
        F.len[F.n++] = (size_t)((sep ? sep : end) - a);
    }
    envelope_request_init(&req);
    envelope_reply_init(&reply);
    if (envelope_request_parse(&req, p, blen, 0, err, sizeof(err)) == 0) {
        kinesis_target_kind.execute((blen & 3) == 1   ? coalescing
                                    : (blen & 3) == 3 ? aggregating
                                                      : plain,
                                    &req, &reply, on_done, NULL);
        for (i = 0; i < 2000 && !F.answered; i++) {
            loop_run_once(loop, 5);
        }
        if (F.answered != 1 || (reply.is_error && !reply.error.len)) {
            abort();
        }
    }
    envelope_request_free(&req);
    envelope_reply_free(&reply);
    return 0;
}
