/* test_fuzz_aws.c - the AWS side's readers fed mutated input: endpoint
 * URLs, and the credential readers: the
 * credentials JSON (container endpoint, IMDS, credential_process), the
 * shared credentials and config files, and the network providers' answers
 * (STS XML, IMDS token and role) through a fake transport. Every call ends
 * in credentials or a reason, each fetch answers exactly once, and nothing
 * crashes or leaks (ASan, UBSan, LSan). */
#include "aws/aws_client.h"
#include "aws/aws_creds.h"
#include "aws/aws_creds_internal.h"
#include "aws/aws_endpoint.h"
#include "base/loop.h"
#include "fuzz.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define ROUNDS 3000

static const char creds_json[] =
    "{\"Code\":\"Success\",\"Type\":\"AWS-HMAC\",\"AccessKeyId\":\"ASIAEXAMPLE\","
    "\"SecretAccessKey\":\"wJalrXUtnFEMI/K7MDENG\",\"Token\":\"IQoJb3JpZ2luX2VjEA==\","
    "\"Expiration\":\"2030-01-02T03:04:05Z\",\"LastUpdated\":\"2026-01-01T00:00:00Z\"}";

static const char sts_xml[] =
    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
    "<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIAEXAMPLE</AccessKeyId>"
    "<SecretAccessKey>wJalr&amp;XUtn</SecretAccessKey><SessionToken>FwoGZXIvYXdz&lt;</SessionToken>"
    "<Expiration>2030-01-02T03:04:05Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult>"
    "</AssumeRoleWithWebIdentityResponse>";

static const char sts_error_xml[] =
    "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>"
    "<Message>Incorrect token audience</Message></Error></ErrorResponse>";

static const char credentials_file[] = "[default]\n"
                                       "aws_access_key_id = AKIDDEFAULT\n"
                                       "aws_secret_access_key = skdefault\n"
                                       "\n"
                                       "[prod] ; a comment\n"
                                       "aws_access_key_id=AKIDPROD\n"
                                       "aws_secret_access_key=skprod\n"
                                       "aws_session_token = tok\n";

static const char config_file[] = "[default]\n"
                                  "region = us-east-1\n"
                                  "[profile prod]\n"
                                  "region = eu-west-1\n"
                                  "[profile tool]\n"
                                  "credential_process = /bin/echo '{\"Version\": 1}'\n"
                                  "s3 =\n"
                                  "  max_concurrent_requests = 20\n";

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/kk-fuzz-creds-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        return -1;
    }
    setenv("AWS_EC2_METADATA_DISABLED", "false", 1);
    unsetenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    unsetenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
    return 0;
}

static int teardown(void **state)
{
    char path[128];

    (void)state;
    snprintf(path, sizeof(path), "%s/credentials", tmpdir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/config", tmpdir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/token", tmpdir);
    unlink(path);
    rmdir(tmpdir);
    return 0;
}

static const char *write_file(const char *name, const char *data, size_t len)
{
    static char path[128];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
    return path;
}

static void check_creds(const struct aws_creds *c)
{
    assert_non_null(c->access_key);
    assert_non_null(c->secret_key);
    assert_true(c->access_key[0] && c->secret_key[0]);
}

/* ------------------------------------------------------------ local */

static void test_endpoint_urls(void **state)
{
    static const char *const urls[] = {
        "https://kinesis.us-east-1.amazonaws.com",
        "http://127.0.0.1:4567",
        "https://[::1]:8443/base/path",
        "http://localhost:80/",
        "https://kinesis-fips.us-gov-west-1.amazonaws.com:443",
    };
    static struct aws_endpoint ep;
    struct fuzz f;
    size_t i;
    int ok = 0;

    (void)state;
    fuzz_seed(&f, 0xe9d);
    for (i = 0; i < (size_t)ROUNDS * 4; i++) {
        const char *u = urls[i % (sizeof(urls) / sizeof(*urls))];
        char err[512] = "";

        fuzz_mutate(&f, u, strlen(u));
        if (aws_endpoint_parse(f.out, &ep, err, sizeof(err)) < 0) {
            if (!err[0]) {
                fail_msg("refused without a reason: %s", f.out);
            }
            continue;
        }
        /* What is accepted is a plain http(s) URL with a host. */
        ok++;
        assert_true(strncmp(ep.url, ep.tls ? "https://" : "http://", ep.tls ? 8 : 7) == 0);
        assert_true(ep.host[0] != '\0');
        assert_null(strpbrk(ep.host, "/@?# \t\r\n"));
        assert_true(ep.path[0] == '/');
        assert_null(strpbrk(ep.url, "?# \t\r\n"));
    }
    assert_true(ok > 100);
}

static void test_json(void **state)
{
    struct fuzz f;
    int i, ok = 0;

    (void)state;
    fuzz_seed(&f, 0x15);
    for (i = 0; i < ROUNDS * 4; i++) {
        struct aws_creds c;
        char why[256] = "";

        memset(&c, 0, sizeof(c));
        fuzz_mutate(&f, creds_json, strlen(creds_json));
        if (aws_creds_from_json(f.out, f.len, "Token", &c, why, sizeof(why)) == 0) {
            check_creds(&c);
            ok++;
        } else if (!why[0]) {
            fail_msg("refused without a reason: %s", f.out);
        }
        aws_creds_free(&c);
    }
    /* Some mutations leave the document usable, most do not. */
    assert_true(ok > 100 && ok < ROUNDS * 4 - 100);
}

static void test_profile_files(void **state)
{
    static const char *const profiles[] = {"default", "prod", "tool", "missing"};
    struct fuzz f;
    int i, outcomes[4] = {0, 0, 0, 0};

    (void)state;
    fuzz_seed(&f, 0x9f);
    for (i = 0; i < ROUNDS; i++) {
        struct aws_creds c;
        char why[256] = "", *process = NULL;
        int rc;

        memset(&c, 0, sizeof(c));
        fuzz_mutate(&f, credentials_file, strlen(credentials_file));
        setenv("AWS_SHARED_CREDENTIALS_FILE", write_file("credentials", f.out, f.len), 1);
        fuzz_mutate(&f, config_file, strlen(config_file));
        setenv("AWS_CONFIG_FILE", write_file("config", f.out, f.len), 1);
        setenv("AWS_PROFILE", profiles[fuzz_below(&f, 4)], 1);
        rc = aws_creds_profile_load(&c, &process, why, sizeof(why));
        assert_true(rc >= -1 && rc <= 2);
        if (rc == 1) {
            check_creds(&c);
        } else if (rc == 2) {
            assert_non_null(process);
            assert_true(process[0]);
        } else if (!why[0]) {
            fail_msg("profile %s: no keys and no reason", getenv("AWS_PROFILE"));
        }
        outcomes[rc + 1]++;
        free(process);
        aws_creds_free(&c);
    }
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
    unsetenv("AWS_CONFIG_FILE");
    unsetenv("AWS_PROFILE");
    /* Keys found, none found and a credential_process all happen. */
    assert_true(outcomes[0] + outcomes[1] > 0);
    assert_true(outcomes[2] > 0);
    assert_true(outcomes[3] > 0);
}

/* ------------------------------------------------------------ network */

static struct {
    struct fuzz fz;
    int calls;
} N;

static int fake_send(void *tctx, const struct aws_http_request *req, aws_http_done_fn done,
                     void *cctx)
{
    static const long statuses[] = {200, 200, 200, 200, 401, 404, 500};
    const char *a;
    long status = statuses[fuzz_below(&N.fz, 7)];

    (void)tctx;
    N.calls++;
    if (strstr(req->url, "/api/token")) {
        a = "AQAEAFe1P7T6Zm4FZZ_token==";
    } else if (strstr(req->url, "security-credentials/") &&
               strstr(req->url, "security-credentials/")[21] == '\0') {
        a = "kk-instance-role";
    } else if (strstr(req->url, "security-credentials/")) {
        a = creds_json;
    } else {
        a = status == 200 ? sts_xml : sts_error_xml;
    }
    fuzz_mutate(&N.fz, a, strlen(a));
    if (fuzz_below(&N.fz, 16) == 0) {
        done(cctx, 0, NULL, 0, "connection refused");
    } else {
        done(cctx, status, N.fz.out, N.fz.len, NULL);
    }
    return 0;
}

static const struct aws_transport fake_transport = {fake_send, NULL};

struct outcome {
    int answers, ok;
};

static void on_got(void *ctx, struct aws_creds *got, const char *why)
{
    struct outcome *o = ctx;

    o->answers++;
    if (got) {
        check_creds(got);
        o->ok++;
    } else {
        assert_non_null(why);
        assert_true(why[0]);
    }
}

typedef int (*start_fn)(const struct aws_creds_net *net, aws_creds_got_fn got, void *ctx,
                        struct aws_creds_fetch **out, char *why, size_t whylen);

static void fetch_many(start_fn start, const char *what)
{
    struct aws_creds_net net;
    struct outcome o;
    struct loop *loop;
    int i, ok = 0;

    loop = loop_create(NULL, 0);
    assert_non_null(loop);
    memset(&net, 0, sizeof(net));
    net.loop = loop;
    net.transport = &fake_transport;
    net.region = "us-east-1";
    for (i = 0; i < ROUNDS; i++) {
        struct aws_creds_fetch *f = NULL;
        char why[256];
        int spins = 0;

        memset(&o, 0, sizeof(o));
        if (start(&net, on_got, &o, &f, why, sizeof(why)) < 0) {
            fail_msg("%s: did not start: %s", what, why);
        }
        while (!o.answers) {
            assert_int_equal(loop_run_once(loop, 10), 0);
            if (++spins > 1000) {
                fail_msg("%s round %d: never answered", what, i);
            }
        }
        /* A late second answer would show up here. */
        assert_int_equal(loop_run_once(loop, 0), 0);
        assert_int_equal(o.answers, 1);
        ok += o.ok;
    }
    assert_true(ok > 0 && ok < ROUNDS);
    loop_destroy(loop);
}

static void test_sts_answers(void **state)
{
    static const char token[] = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJrayJ9.c2ln";

    (void)state;
    fuzz_seed(&N.fz, 0x575);
    setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/kk", 1);
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", write_file("token", token, strlen(token)), 1);
    setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9/sts", 1);
    fetch_many(aws_creds_sts_start, "sts");
    unsetenv("AWS_ROLE_ARN");
    unsetenv("AWS_WEB_IDENTITY_TOKEN_FILE");
    unsetenv("AWS_ENDPOINT_URL_STS");
}

static void test_imds_answers(void **state)
{
    (void)state;
    fuzz_seed(&N.fz, 0x1d5);
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9", 1);
    fetch_many(aws_creds_imds_start, "imds");
    unsetenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint_urls), cmocka_unit_test(test_json),
        cmocka_unit_test(test_profile_files), cmocka_unit_test(test_sts_answers),
        cmocka_unit_test(test_imds_answers),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
