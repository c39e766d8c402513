/* fuzz_creds.c - libFuzzer: the credential readers. Input: up to four
 * parts split on "\n\x01": the shared credentials file, the config file,
 * an STS AssumeRoleWithWebIdentity answer, and a credentials JSON document
 * (container endpoint, IMDS, credential_process). Each reader ends with
 * keys or a reason; the STS fetch answers exactly once. See run.sh. */
#define _GNU_SOURCE
#include "aws/aws_client.h"
#include "aws/aws_creds.h"
#include "aws/aws_creds_internal.h"
#include "base/log.h"
#include "base/loop.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static const char *sts_answer;
static size_t sts_len;
static int answers;

static void put_file(const char *name, const char *p, size_t n)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        abort();
    }
}

static int fake_send(void *tctx, const struct aws_http_request *req, aws_http_done_fn done,
                     void *cctx)
{
    (void)tctx;
    (void)req;
    done(cctx, sts_len && sts_answer[0] == 'E' ? 400 : 200, sts_answer, sts_len, NULL);
    return 0;
}

static const struct aws_transport fake = {fake_send, NULL};

static void on_got(void *ctx, struct aws_creds *got, const char *why)
{
    (void)ctx;
    answers++;
    if (got ? !got->access_key || !got->access_key[0] : !why || !why[0]) {
        abort();
    }
}

static void check(int rc, const struct aws_creds *c, const char *why)
{
    if (rc == 1 ? !c->access_key || !c->secret_key : rc <= 0 && !why[0]) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct loop *loop;
    const char *part[4] = {"", "", "", ""}, *p = (const char *)data, *end = p + size, *sep;
    size_t len[4] = {0, 0, 0, 0};
    struct aws_creds_net net;
    struct aws_creds_fetch *f = NULL;
    struct aws_creds c;
    char why[512] = "", *process = NULL;
    int i, rc;

    if (!loop) {
        log_setup(LOG_LEVEL_ERROR, LOG_FORMAT_TEXT);
        loop = loop_create(NULL, 0);
        snprintf(dir, sizeof(dir), "/tmp/kk-fuzz-creds-%d", (int)getpid());
        if (mkdir(dir, 0700) != 0 && access(dir, W_OK) != 0) {
            abort();
        }
        setenv("AWS_SHARED_CREDENTIALS_FILE", "", 1);
        setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/kk", 1);
        setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9/sts", 1);
        setenv("AWS_PROFILE", "prod", 1);
    }
    for (i = 0; i < 4; i++) {
        sep = memmem(p, (size_t)(end - p), "\n\x01", 2);
        part[i] = p;
        len[i] = (size_t)((sep ? sep : end) - p);
        if (!sep) {
            break;
        }
        p = sep + 2;
    }
    {
        char path[128];

        put_file("credentials", part[0], len[0]);
        put_file("config", part[1], len[1]);
        put_file("token", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", 28);
        snprintf(path, sizeof(path), "%s/credentials", dir);
        setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
        snprintf(path, sizeof(path), "%s/config", dir);
        setenv("AWS_CONFIG_FILE", path, 1);
        snprintf(path, sizeof(path), "%s/token", dir);
        setenv("AWS_WEB_IDENTITY_TOKEN_FILE", path, 1);
    }
    memset(&c, 0, sizeof(c));
    rc = aws_creds_profile_load(&c, &process, why, sizeof(why));
    check(rc, &c, why);
    free(process);
    aws_creds_free(&c);

    memset(&c, 0, sizeof(c));
    why[0] = '\0';
    rc = aws_creds_from_json(part[3], len[3], "Token", &c, why, sizeof(why)) == 0 ? 1 : -1;
    check(rc, &c, why);
    aws_creds_free(&c);

    memset(&net, 0, sizeof(net));
    net.loop = loop;
    net.transport = &fake;
    net.region = "us-east-1";
    sts_answer = part[2];
    sts_len = len[2];
    answers = 0;
    if (aws_creds_sts_start(&net, on_got, NULL, &f, why, sizeof(why)) == 0) {
        for (i = 0; i < 100 && !answers; i++) {
            loop_run_once(loop, 1);
        }
        if (answers != 1) {
            abort();
        }
    }
    return 0;
}
