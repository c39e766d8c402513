/* test_aws_creds.c - the credential chain: profile files, precedence, the
 * "nothing found" message, then every network provider against the local
 * stand-in (tests/rig/aws-creds-server.js) through the real libcurl
 * transport: STS web identity, container endpoint, IMDSv2, refresh before
 * expiry and after a refused key, credential_process. Nothing here talks to
 * anything but 127.0.0.1: IMDS is disabled or pointed at the stand-in in
 * every test. */
#include "aws/aws_client.h"
#include "aws/aws_creds.h"
#include "aws/aws_creds_internal.h"
#include "aws/aws_http.h"
#include "base/loop.h"

#include <curl/curl.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "spawn.h"

#define SERVER     KK_RIG_DIR "/aws-creds-server.js"
#define ROLE_ARN   "arn:aws:iam::123456789012:role/kk-irsa"
#define WEB_TOKEN  "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJrayJ9.c2lnbmF0dXJl"
#define AUTH_TOKEN "container-auth-token-0123"

static char tmpdir[256];
static struct spawned server;
static int server_port;

/* ---- environment and files ---- */

static const char *const aws_vars[] = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_KINESIS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
    "AWS_EC2_METADATA_DISABLED",
};

/* Nothing set; HOME is an empty directory; IMDS off. */
static void reset_env(void)
{
    char home[300];
    size_t i;

    for (i = 0; i < sizeof(aws_vars) / sizeof(aws_vars[0]); i++) {
        unsetenv(aws_vars[i]);
    }
    snprintf(home, sizeof(home), "%s/home", tmpdir);
    mkdir(home, 0700);
    setenv("HOME", home, 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
}

static const char *write_file(const char *name, const char *text)
{
    static char paths[8][300];
    static int next;
    char *p = paths[next++ % 8];
    FILE *f;

    snprintf(p, 300, "%s/%s", tmpdir, name);
    f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

static void setenvf(const char *name, const char *fmt, ...)
{
    char v[600];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(v, sizeof(v), fmt, ap);
    va_end(ap);
    setenv(name, v, 1);
}

/* ---- the stand-in server and its control API ---- */

struct body {
    char data[65536];
    size_t len;
};

static size_t collect(char *p, size_t size, size_t n, void *userp)
{
    struct body *b = userp;
    size_t len = size * n;

    if (b->len + len < sizeof(b->data)) {
        memcpy(b->data + b->len, p, len);
        b->len += len;
        b->data[b->len] = '\0';
    }
    return len;
}

/* A blocking request to the stand-in (control calls and raw IMDS checks).
 * Returns the status; the body lands in *out when given. */
static long raw_request(const char *method, const char *path, const char *body, const char *header,
                        struct body *out)
{
    struct body scratch;
    struct curl_slist *h = NULL;
    char url[256];
    long status = 0;
    CURL *e = curl_easy_init();

    if (!out) {
        out = &scratch;
    }
    out->len = 0;
    out->data[0] = '\0';
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", server_port, path);
    if (header) {
        h = curl_slist_append(h, header);
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    if (body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    }
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    assert_int_equal(curl_easy_perform(e), CURLE_OK);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    return status;
}

static json_t *stats(void)
{
    struct body b;
    json_t *j;

    assert_int_equal(raw_request("GET", "/_stats", NULL, NULL, &b), 200);
    j = json_loads(b.data, 0, NULL);
    assert_non_null(j);
    return j;
}

static long stat_n(const char *key)
{
    json_t *j = stats();
    long v = (long)json_integer_value(json_object_get(j, key));

    json_decref(j);
    return v;
}

static void server_set(const char *json)
{
    assert_int_equal(raw_request("POST", "/_set", json, NULL, NULL), 200);
}

static int group_setup(void **state)
{
    char *argv[] = {
        "node",    SERVER,         "--role-arn", ROLE_ARN,         "--web-identity-token",
        WEB_TOKEN, "--auth-token", AUTH_TOKEN,   "--parent-watch", NULL};
    char line[256];
    json_t *j;

    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/kk-creds-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        return -1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (spawn_start(&server, argv) < 0 || spawn_read_line(&server, line, sizeof(line), 30) < 0) {
        spawn_stop(&server);
        return -1;
    }
    j = json_loads(line, 0, NULL);
    server_port = (int)json_integer_value(json_object_get(j, "port"));
    json_decref(j);
    return server_port > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    char cmd[400];

    (void)state;
    spawn_stop(&server);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Before each network test: the server's defaults back. */
static void server_defaults(void)
{
    server_set("{\"lifetime\":3600,\"hang\":{\"sts\":false,\"container\":false,\"imds\":false},"
               "\"fail\":{\"sts\":0,\"container\":0,\"imds\":0}}");
}

/* ---- clients ---- */

struct result {
    int done;
    long status;
    char body[4096];
    char type[128];
    char message[1024];
};

static void on_done(void *ctx, const struct aws_response *r)
{
    struct result *res = ctx;

    res->done++;
    res->status = r->status;
    snprintf(res->body, sizeof(res->body), "%.*s", (int)r->body_len, r->body);
    snprintf(res->type, sizeof(res->type), "%s", r->error_type ? r->error_type : "");
    snprintf(res->message, sizeof(res->message), "%s", r->error_message ? r->error_message : "");
}

static int run_until(struct loop *l, const int *flag, int want, int timeout_s)
{
    time_t end = time(NULL) + timeout_s;

    while (*flag < want && time(NULL) <= end) {
        loop_run_once(l, 50);
    }
    return *flag >= want;
}

/* A client with no keys whose Kinesis endpoint is the stand-in's
 * /kinesis: it checks each signature against the keys it handed out. */
static struct aws_client *chain_client(struct loop *l, char *err, size_t errlen)
{
    struct aws_client_options o;
    char endpoint[128];

    memset(&o, 0, sizeof(o));
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d/kinesis", server_port);
    o.service = "kinesis";
    o.target_prefix = "Kinesis_20131202";
    o.region = "us-east-1";
    o.endpoint = endpoint;
    o.max_attempts = 1;
    return aws_client_create(l, &o, err, errlen);
}

/* One call; returns the access key that signed it ("" on an error). */
static const char *call(struct loop *l, struct aws_client *c, struct result *r)
{
    static char key[128];
    json_t *j;

    memset(r, 0, sizeof(*r));
    assert_int_equal(aws_client_call(c, "Echo", "{}", 2, on_done, r), 0);
    assert_true(run_until(l, &r->done, 1, 60));
    key[0] = '\0';
    if (r->status == 200) {
        j = json_loads(r->body, 0, NULL);
        snprintf(key, sizeof(key), "%s", json_string_value(json_object_get(j, "accessKeyId")));
        json_decref(j);
    }
    return key;
}

static const char *call_ok(struct loop *l, struct aws_client *c)
{
    struct result r;
    const char *key = call(l, c, &r);

    if (r.status != 200) {
        fail_msg("call failed: status %ld %s: %s %s", r.status, r.type, r.message, r.body);
    }
    return key;
}

/* ---- time ---- */

static void test_parse_time(void **state)
{
    time_t t;

    (void)state;
    assert_int_equal(aws_creds_parse_time("2024-05-01T12:00:00Z", &t), 0);
    assert_int_equal((long long)t, 1714564800LL);
    assert_int_equal(aws_creds_parse_time("2024-05-01T12:00:00.123Z", &t), 0);
    assert_int_equal((long long)t, 1714564800LL);
    assert_int_equal(aws_creds_parse_time("2024-05-01T14:00:00+02:00", &t), 0);
    assert_int_equal((long long)t, 1714564800LL);
    assert_int_equal(aws_creds_parse_time("2024-05-01T07:30:00-04:30", &t), 0);
    assert_int_equal((long long)t, 1714564800LL);
    assert_int_equal(aws_creds_parse_time("2024-05-01 12:00:00", &t), -1); /* no zone */
    assert_int_equal(aws_creds_parse_time("2024-13-01T12:00:00Z", &t), -1);
    assert_int_equal(aws_creds_parse_time("2024-05-01T12:00Z", &t), -1);
    assert_int_equal(aws_creds_parse_time("soon", &t), -1);
    assert_int_equal(aws_creds_parse_time("2024-05-01T12:00:00Zjunk", &t), -1);
}

/* ---- profile files ---- */

static const char CREDENTIALS[] = "# the credentials file\n"
                                  "[default]\n"
                                  "aws_access_key_id = AKDEFAULT\n"
                                  "aws_secret_access_key=SKDEFAULT   ; a trailing comment\n"
                                  "\n"
                                  "   ; an indented comment\n"
                                  "[ prod ]   # spaces around the name\n"
                                  "aws_access_key_id   =   AKPROD\n"
                                  "AWS_Secret_Access_Key = SK/PROD+x=\r\n"
                                  "aws_session_token = TOKPROD\n"
                                  "[half]\n"
                                  "aws_access_key_id = AKHALF\n"
                                  "[nested]\n"
                                  "s3 =\n"
                                  "  aws_access_key_id = NOTME\n"
                                  "aws_access_key_id = AKNESTED\n"
                                  "aws_secret_access_key = SKNESTED\n"
                                  "[mixed]\n"
                                  "aws_session_token = TOKMIXED\n";

static const char CONFIG[] = "[default]\n"
                             "region = us-east-1\n"
                             "aws_access_key_id = AKCONFIGDEFAULT\n"
                             "aws_secret_access_key = SKCONFIGDEFAULT\n"
                             "[profile onlyconfig]\n"
                             "aws_access_key_id = AKONLYCONFIG\n"
                             "aws_secret_access_key = SKONLYCONFIG\n"
                             "[noprefix]\n"
                             "aws_access_key_id = AKWRONG\n"
                             "aws_secret_access_key = SKWRONG\n"
                             "[profile   prod]\n"
                             "aws_access_key_id = AKCONFIGPROD\n"
                             "aws_secret_access_key = SKCONFIGPROD\n"
                             "[profile mixed]\n"
                             "aws_access_key_id = AKMIXED\n"
                             "aws_secret_access_key = SKMIXED\n"
                             "[profile role]\n"
                             "role_arn = arn:aws:iam::123456789012:role/x\n"
                             "source_profile = default\n"
                             "[profile proc]\n"
                             "credential_process = /bin/echo hello\n";

/* Load the profile; returns the rc, fills key/token/why. */
static int load(const char *profile, char *key, char *token, char *why, size_t whylen)
{
    struct aws_creds c;
    char *process = NULL;
    int rc;

    if (profile) {
        setenv("AWS_PROFILE", profile, 1);
    } else {
        unsetenv("AWS_PROFILE");
    }
    rc = aws_creds_profile_load(&c, &process, why, whylen);
    key[0] = token[0] = '\0';
    if (rc == 1) {
        snprintf(key, 64, "%s", c.access_key);
        snprintf(token, 64, "%s", c.session_token ? c.session_token : "");
        aws_creds_free(&c);
    }
    if (rc == 2) {
        snprintf(key, 64, "%s", process);
        free(process);
    }
    return rc;
}

static void test_profile_files(void **state)
{
    char key[64], token[64], why[512], label[128];

    (void)state;
    reset_env();
    assert_int_equal(load(NULL, key, token, why, sizeof(why)), 0);
    assert_string_equal(why, "no file");
    aws_creds_profile_label(label, sizeof(label));
    assert_string_equal(label, "profile \"default\"");

    setenv("AWS_SHARED_CREDENTIALS_FILE", write_file("credentials", CREDENTIALS), 1);
    setenv("AWS_CONFIG_FILE", write_file("config", CONFIG), 1);
    /* the credentials file wins over the config file */
    assert_int_equal(load(NULL, key, token, why, sizeof(why)), 1);
    assert_string_equal(key, "AKDEFAULT");
    assert_string_equal(token, "");
    assert_int_equal(load("prod", key, token, why, sizeof(why)), 1);
    assert_string_equal(key, "AKPROD");
    assert_string_equal(token, "TOKPROD");
    /* only in the config file, as [profile x] */
    assert_int_equal(load("onlyconfig", key, token, why, sizeof(why)), 1);
    assert_string_equal(key, "AKONLYCONFIG");
    /* [x] without "profile" in the config file is not profile x; asked
     * for by name, a missing profile is an error, not a fall-through */
    assert_int_equal(load("noprefix", key, token, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "profile \"noprefix\" (AWS_PROFILE) is in neither"));
    /* key by key: the token from credentials, the keys from config */
    assert_int_equal(load("mixed", key, token, why, sizeof(why)), 1);
    assert_string_equal(key, "AKMIXED");
    assert_string_equal(token, "TOKMIXED");
    assert_int_equal(load("half", key, token, why, sizeof(why)), -1);
    assert_non_null(
        strstr(why, "profile \"half\": aws_access_key_id is set but aws_secret_access_key is "
                    "missing"));
    /* an indented line under an empty key is a sub-property */
    assert_int_equal(load("nested", key, token, why, sizeof(why)), 1);
    assert_string_equal(key, "AKNESTED");
    assert_int_equal(load("role", key, token, why, sizeof(why)), 0);
    assert_string_equal(why, "role_arn profiles are not supported");
    assert_int_equal(load("proc", key, token, why, sizeof(why)), 2);
    assert_string_equal(key, "/bin/echo hello");
    /* AWS_DEFAULT_PROFILE, overridden by AWS_PROFILE */
    unsetenv("AWS_PROFILE");
    setenv("AWS_DEFAULT_PROFILE", "prod", 1);
    {
        struct aws_creds c;
        char *process = NULL;

        assert_int_equal(aws_creds_profile_load(&c, &process, why, sizeof(why)), 1);
        assert_string_equal(c.access_key, "AKPROD");
        aws_creds_free(&c);
    }
    assert_int_equal(load("onlyconfig", key, token, why, sizeof(why)), 1);
    assert_string_equal(key, "AKONLYCONFIG");
    /* a default profile that is nowhere is just "not there" */
    unsetenv("AWS_DEFAULT_PROFILE");
    setenv("AWS_SHARED_CREDENTIALS_FILE", write_file("credentials2", "[other]\n"), 1);
    setenv("AWS_CONFIG_FILE", write_file("config2", "[profile other]\n"), 1);
    assert_int_equal(load(NULL, key, token, why, sizeof(why)), 0);
    assert_non_null(strstr(why, "not in "));
    /* ~/.aws/credentials under HOME when no variable says otherwise */
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
    unsetenv("AWS_CONFIG_FILE");
    {
        char dir[300];

        snprintf(dir, sizeof(dir), "%s/home/.aws", tmpdir);
        mkdir(dir, 0700);
        write_file("home/.aws/credentials", "[default]\naws_access_key_id=AKHOME\n"
                                            "aws_secret_access_key=SKHOME\n");
    }
    assert_int_equal(load(NULL, key, token, why, sizeof(why)), 1);
    assert_string_equal(key, "AKHOME");
    unlink(write_file("home/.aws/credentials", ""));
}

/* ---- the chain's order, without the network ---- */

static struct aws_creds_chain *chain(struct loop *l, const char *ak, const char *sk, char *err,
                                     size_t errlen)
{
    struct aws_creds_chain_options o;

    memset(&o, 0, sizeof(o));
    o.access_key = ak;
    o.secret_key = sk;
    o.region = "us-east-1";
    return aws_creds_chain_create(l, &o, err, errlen);
}

static const char *current_key(struct aws_creds_chain *ch)
{
    const struct aws_creds *c;
    const char *why;

    assert_int_equal(aws_creds_chain_get(ch, &c, &why), AWS_CREDS_READY);
    return c->access_key;
}

static void test_precedence(void **state)
{
    struct loop *l;
    struct aws_creds_chain *ch;
    char err[1024];

    (void)state;
    reset_env();
    l = loop_create(err, sizeof(err));
    setenv("AWS_SHARED_CREDENTIALS_FILE", write_file("credentials", CREDENTIALS), 1);
    setenv("AWS_ACCESS_KEY_ID", "AKENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "SKENV", 1);
    /* config keys first */
    ch = chain(l, "AKCONFIG", "SKCONFIG", err, sizeof(err));
    assert_non_null(ch);
    assert_string_equal(current_key(ch), "AKCONFIG");
    /* static keys are never fetched again, even when refused */
    assert_int_equal(aws_creds_chain_rejected(ch, aws_creds_chain_generation(ch)), 0);
    aws_creds_chain_destroy(ch);
    /* then the environment, over the profile */
    ch = chain(l, NULL, "", err, sizeof(err));
    assert_non_null(ch);
    assert_string_equal(current_key(ch), "AKENV");
    aws_creds_chain_destroy(ch);
    /* then the profile */
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    ch = chain(l, NULL, NULL, err, sizeof(err));
    assert_non_null(ch);
    assert_string_equal(current_key(ch), "AKDEFAULT");
    aws_creds_chain_destroy(ch);
    /* half-set keys are errors, not skipped */
    assert_null(chain(l, "AKONLY", NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "the secret key is empty"));
    setenv("AWS_SECRET_ACCESS_KEY", "SKENV", 1);
    assert_null(chain(l, NULL, NULL, err, sizeof(err)));
    assert_string_equal(err, "aws credentials: AWS_SECRET_ACCESS_KEY is set but "
                             "AWS_ACCESS_KEY_ID is empty");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    setenv("AWS_PROFILE", "half", 1);
    assert_null(chain(l, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "aws_secret_access_key is missing"));
    loop_destroy(l);
}

static void test_nothing_found(void **state)
{
    struct aws_client_options o;
    struct loop *l;
    char err[1024];

    (void)state;
    reset_env();
    l = loop_create(err, sizeof(err));
    assert_null(chain(l, NULL, NULL, err, sizeof(err)));
    assert_string_equal(err, "no AWS credentials: tried config, environment, profile \"default\" "
                             "(no file), web identity (AWS_ROLE_ARN not set), container endpoint "
                             "(not set), IMDS (disabled by AWS_EC2_METADATA_DISABLED)");
    setenv("AWS_PROFILE", "x", 1);
    setenv("AWS_ROLE_ARN", ROLE_ARN, 1);
    assert_null(chain(l, NULL, NULL, err, sizeof(err)));
    /* AWS_PROFILE without any file: nothing to check it against */
    assert_non_null(strstr(err, "profile \"x\" (no file), web identity "
                                "(AWS_WEB_IDENTITY_TOKEN_FILE not set)"));
    /* the client says the same at create */
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_ROLE_ARN");
    memset(&o, 0, sizeof(o));
    o.service = "kinesis";
    o.target_prefix = "Kinesis_20131202";
    o.region = "us-east-1";
    o.endpoint = "http://127.0.0.1:9/";
    assert_null(aws_client_create(l, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "no AWS credentials: tried config, environment"));
    loop_destroy(l);
}

/* ---- container endpoint: URL rules, no network ---- */

struct counting {
    int sends;
    char url[512];
    char auth[256];
};

static int counting_send(void *tctx, const struct aws_http_request *req, aws_http_done_fn done,
                         void *cctx)
{
    struct counting *c = tctx;
    size_t i;

    (void)done;
    (void)cctx;
    c->sends++;
    snprintf(c->url, sizeof(c->url), "%s", req->url);
    for (i = 0; req->headers[i]; i++) {
        if (!strncmp(req->headers[i], "Authorization: ", 15)) {
            snprintf(c->auth, sizeof(c->auth), "%s", req->headers[i] + 15);
        }
    }
    return 0; /* never answers: the fetch is cancelled */
}

static int full_uri(const char *uri, struct counting *cnt, char *why, size_t whylen)
{
    struct aws_transport t = {counting_send, cnt};
    struct aws_creds_net net = {NULL, &t, "us-east-1"};
    struct aws_creds_fetch *f = NULL;
    int rc;

    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri, 1);
    memset(cnt, 0, sizeof(*cnt));
    why[0] = '\0';
    rc = aws_creds_http_start(&net, NULL, NULL, &f, why, whylen);
    if (rc == 0) {
        assert_non_null(f);
        aws_creds_fetch_free(f); /* our transport never answers */
    }
    return rc;
}

static void test_container_uri_rules(void **state)
{
    static const char *const refused[] = {
        "http://192.0.2.10/creds",       "http://169.254.169.254/latest",
        "http://localhost.example.com/", "http://10.0.0.1:8080/creds",
        "ftp://127.0.0.1/creds",         "http://[fd00:ec2::254]/creds",
    };
    static const char *const allowed[] = {
        "http://127.0.0.1:1/creds",       "http://127.9.8.7/creds",
        "http://localhost:1/creds",       "http://[::1]:1/creds",
        "http://169.254.170.2/v2/creds",  "http://169.254.170.23/v1/credentials",
        "http://[fd00:ec2::23]/v1/creds", "https://creds.example.com/any",
    };
    struct counting cnt;
    char why[512];
    size_t i;

    (void)state;
    reset_env();
    for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        assert_int_equal(full_uri(refused[i], &cnt, why, sizeof(why)), -1);
        assert_int_equal(cnt.sends, 0); /* rejected before any request */
        assert_non_null(strstr(why, "AWS_CONTAINER_CREDENTIALS_FULL_URI"));
    }
    assert_int_equal(full_uri("http://192.0.2.10/creds", &cnt, why, sizeof(why)), -1);
    assert_string_equal(why, "AWS_CONTAINER_CREDENTIALS_FULL_URI host 192.0.2.10 is not allowed: "
                             "use https, a loopback address, 169.254.170.2 or 169.254.170.23");
    for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        assert_int_equal(full_uri(allowed[i], &cnt, why, sizeof(why)), 0);
        assert_int_equal(cnt.sends, 1);
        assert_string_equal(cnt.url, allowed[i]);
    }
    /* the relative URI is a path on 169.254.170.2; token file over variable */
    unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc", 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "from-variable", 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", write_file("pod-token", "from-file\n"), 1);
    {
        struct aws_transport t = {counting_send, &cnt};
        struct aws_creds_net net = {NULL, &t, "us-east-1"};
        struct aws_creds_fetch *f = NULL;

        memset(&cnt, 0, sizeof(cnt));
        assert_int_equal(aws_creds_http_start(&net, NULL, NULL, &f, why, sizeof(why)), 0);
        assert_string_equal(cnt.url, "http://169.254.170.2/v2/credentials/abc");
        assert_string_equal(cnt.auth, "from-file");
        aws_creds_fetch_free(f);
        /* a token with a line break never becomes a header */
        setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
               write_file("bad-token", "abc\r\nX-Injected: 1\n"), 1);
        assert_int_equal(aws_creds_http_start(&net, NULL, NULL, &f, why, sizeof(why)), -1);
        assert_non_null(strstr(why, "authorization token is unusable"));
        setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "v2/creds", 1);
        assert_int_equal(aws_creds_http_start(&net, NULL, NULL, &f, why, sizeof(why)), -1);
        assert_non_null(strstr(why, "must start with /"));
        assert_int_equal(cnt.sends, 1);
    }
}

/* ---- the providers against the stand-in ---- */

struct net_fixture {
    struct loop *loop;
    struct aws_client *client;
};

static void nf_start(struct net_fixture *nf)
{
    char err[1024];

    nf->loop = loop_create(err, sizeof(err));
    assert_non_null(nf->loop);
    nf->client = chain_client(nf->loop, err, sizeof(err));
    if (!nf->client) {
        fail_msg("aws_client_create: %s", err);
    }
}

static void nf_stop(struct net_fixture *nf)
{
    aws_client_destroy(nf->client);
    loop_destroy(nf->loop);
}

/* Nothing but the container endpoint: the stand-in's, with its token. */
static void container_env(void)
{
    reset_env();
    server_defaults();
    setenvf("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:%d/creds", server_port);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH_TOKEN, 1);
}

static void test_container(void **state)
{
    struct net_fixture nf;
    struct result r;
    long before;

    (void)state;
    container_env();
    before = stat_n("container");
    nf_start(&nf);
    assert_true(strncmp(call_ok(nf.loop, nf.client), "ASIACONTAINER", 13) == 0);
    /* cached: more calls, no more fetches */
    call_ok(nf.loop, nf.client);
    call_ok(nf.loop, nf.client);
    assert_int_equal(stat_n("container"), before + 1);
    nf_stop(&nf);

    /* the token from a file */
    unsetenv("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", write_file("token", AUTH_TOKEN "\n"), 1);
    nf_start(&nf);
    assert_true(strncmp(call_ok(nf.loop, nf.client), "ASIACONTAINER", 13) == 0);
    nf_stop(&nf);

    /* a wrong token: the endpoint refuses, the call says why */
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", write_file("token", "wrong\n"), 1);
    nf_start(&nf);
    call(nf.loop, nf.client, &r);
    assert_string_equal(r.type, AWS_ERROR_CREDENTIALS);
    assert_non_null(strstr(r.message, "no AWS credentials: tried config, environment, profile "
                                      "\"default\" (no file), web identity (AWS_ROLE_ARN not "
                                      "set), container endpoint (http://127.0.0.1:"));
    assert_non_null(strstr(r.message, "/creds: HTTP 403: "));
    assert_non_null(strstr(r.message, "IMDS (disabled by AWS_EC2_METADATA_DISABLED)"));
    /* the failure is held a few seconds: the next call fails at once */
    before = stat_n("container");
    call(nf.loop, nf.client, &r);
    assert_string_equal(r.type, AWS_ERROR_CREDENTIALS);
    assert_int_equal(stat_n("container"), before);
    nf_stop(&nf);
}

static void test_web_identity(void **state)
{
    struct net_fixture nf;
    struct result r;
    json_t *j, *last;
    char err[1024];

    (void)state;
    reset_env();
    server_defaults();
    setenv("AWS_ROLE_ARN", ROLE_ARN, 1);
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", write_file("web-token", WEB_TOKEN "\n"), 1);
    setenv("AWS_ROLE_SESSION_NAME", "kk-session@test", 1);
    setenvf("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:%d/sts", server_port);
    /* container set too: web identity comes first */
    setenvf("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:%d/creds", server_port);
    nf_start(&nf);
    assert_true(strncmp(call_ok(nf.loop, nf.client), "ASIASTS", 7) == 0);
    j = stats();
    last = json_object_get(json_object_get(j, "lastSts"), "params");
    assert_string_equal(json_string_value(json_object_get(last, "RoleSessionName")),
                        "kk-session@test");
    assert_string_equal(json_string_value(json_object_get(last, "RoleArn")), ROLE_ARN);
    json_decref(j);
    nf_stop(&nf);

    /* a token STS does not accept: its error code and message */
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", write_file("web-token", "not-the-token"), 1);
    unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    nf_start(&nf);
    call(nf.loop, nf.client, &r);
    assert_string_equal(r.type, AWS_ERROR_CREDENTIALS);
    assert_non_null(strstr(r.message, "web identity (STS http://127.0.0.1:"));
    assert_non_null(strstr(r.message, "HTTP 400 InvalidIdentityToken: Couldn't retrieve"));
    nf_stop(&nf);

    /* a missing token file is named (at create: nothing else is left) */
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token", 1);
    nf.loop = loop_create(err, sizeof(err));
    assert_null(chain_client(nf.loop, err, sizeof(err)));
    assert_non_null(strstr(err, "web identity (cannot read /nonexistent/token: No such file"));
    loop_destroy(nf.loop);
}

static void test_imds(void **state)
{
    struct net_fixture nf;
    struct result r;
    struct body b;
    char hdr[256];
    long t0, r0, c0, refused0;
    json_t *j;

    (void)state;
    reset_env();
    server_defaults();
    unsetenv("AWS_EC2_METADATA_DISABLED");
    setenvf("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:%d/", server_port);
    t0 = stat_n("imdsToken");
    r0 = stat_n("imdsRole");
    c0 = stat_n("imdsCreds");
    j = stats();
    refused0 = (long)json_integer_value(json_object_get(json_object_get(j, "refused"), "imds"));
    json_decref(j);
    nf_start(&nf);
    assert_true(strncmp(call_ok(nf.loop, nf.client), "ASIAIMDS", 8) == 0);
    assert_int_equal(stat_n("imdsToken"), t0 + 1);
    assert_int_equal(stat_n("imdsRole"), r0 + 1);
    assert_int_equal(stat_n("imdsCreds"), c0 + 1);
    j = stats();
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "refused"), "imds")),
                     refused0); /* every request of ours carried a token */
    json_decref(j);
    nf_stop(&nf);

    /* the stand-in is IMDSv2 only: no token (v1) or a wrong one is refused */
    assert_int_equal(
        raw_request("GET", "/latest/meta-data/iam/security-credentials/", NULL, NULL, NULL), 401);
    assert_int_equal(raw_request("GET", "/latest/meta-data/iam/security-credentials/", NULL,
                                 "X-aws-ec2-metadata-token: made-up", NULL),
                     401);
    assert_int_equal(raw_request("PUT", "/latest/api/token", "", NULL, NULL), 400);
    assert_int_equal(
        raw_request("PUT", "/latest/api/token", "", "X-aws-ec2-metadata-token-ttl-seconds: 60", &b),
        200);
    snprintf(hdr, sizeof(hdr), "X-aws-ec2-metadata-token: %.200s", b.data);
    assert_int_equal(
        raw_request("GET", "/latest/meta-data/iam/security-credentials/", NULL, hdr, &b), 200);
    assert_string_equal(b.data, "kk-test-role");

    /* nothing answers (off EC2): a timeout after 1 s, the chain's message */
    server_set("{\"hang\":{\"imds\":true}}");
    nf_start(&nf);
    call(nf.loop, nf.client, &r);
    assert_string_equal(r.type, AWS_ERROR_CREDENTIALS);
    assert_string_equal(r.message,
                        "no AWS credentials: tried config, environment, profile \"default\" (no "
                        "file), web identity (AWS_ROLE_ARN not set), container endpoint (not "
                        "set), IMDS (timeout)");
    nf_stop(&nf);
    server_defaults();
}

/* Short-lived credentials are fetched again before they expire, and the
 * next call is signed with the new key. */
static void test_refresh_before_expiry(void **state)
{
    struct net_fixture nf;
    char first[128], second[128];
    long before;
    time_t end;

    (void)state;
    container_env();
    server_set("{\"lifetime\":6}"); /* refresh after ~3 s */
    before = stat_n("container");
    nf_start(&nf);
    snprintf(first, sizeof(first), "%s", call_ok(nf.loop, nf.client));
    assert_int_equal(stat_n("container"), before + 1);
    /* the loop runs; the refresh timer fetches in the background */
    end = time(NULL) + 30;
    while (stat_n("container") < before + 2 && time(NULL) < end) {
        loop_run_once(nf.loop, 100);
    }
    assert_int_equal(stat_n("container"), before + 2);
    loop_run_once(nf.loop, 100); /* let the answer land */
    loop_run_once(nf.loop, 100);
    snprintf(second, sizeof(second), "%s", call_ok(nf.loop, nf.client));
    assert_string_not_equal(first, second);
    assert_true(strncmp(second, "ASIACONTAINER", 13) == 0);
    nf_stop(&nf);
    server_defaults();
}

static long refused_container(void)
{
    json_t *j = stats();
    long v = (long)json_integer_value(json_object_get(json_object_get(j, "refused"), "container"));

    json_decref(j);
    return v;
}

/* The refresh fails: the current credentials stay in use while they are
 * valid, and the refresh is tried again until it works. */
static void test_refresh_fails_then_recovers(void **state)
{
    struct net_fixture nf;
    char first[128], second[128];
    long refused, fetched;
    time_t end;

    (void)state;
    container_env();
    server_set("{\"lifetime\":20}"); /* refresh after ~10 s, usable until ~15 s */
    nf_start(&nf);
    snprintf(first, sizeof(first), "%s", call_ok(nf.loop, nf.client));
    server_set("{\"fail\":{\"container\":500}}");
    refused = refused_container();
    end = time(NULL) + 60;
    while (refused_container() == refused && time(NULL) < end) {
        loop_run_once(nf.loop, 100);
    }
    assert_true(refused_container() > refused);
    /* still signed with the first key, and the stand-in accepts it */
    assert_string_equal(call_ok(nf.loop, nf.client), first);
    server_set("{\"fail\":{\"container\":0}}");
    fetched = stat_n("container");
    end = time(NULL) + 60;
    while (stat_n("container") == fetched && time(NULL) < end) {
        loop_run_once(nf.loop, 100);
    }
    loop_run_once(nf.loop, 100);
    loop_run_once(nf.loop, 100);
    snprintf(second, sizeof(second), "%s", call_ok(nf.loop, nf.client));
    assert_string_not_equal(first, second);
    nf_stop(&nf);
    server_defaults();
}

/* Destroyed while calls wait for credentials: each is answered, the
 * fetch in flight is dropped, nothing leaks. */
static void test_destroy_while_pending(void **state)
{
    struct net_fixture nf;
    struct result r1, r2;

    (void)state;
    container_env();
    server_set("{\"hang\":{\"container\":true}}");
    nf_start(&nf);
    memset(&r1, 0, sizeof(r1));
    memset(&r2, 0, sizeof(r2));
    assert_int_equal(aws_client_call(nf.client, "Echo", "{}", 2, on_done, &r1), 0);
    assert_int_equal(aws_client_call(nf.client, "Echo", "{}", 2, on_done, &r2), 0);
    loop_run_once(nf.loop, 100);
    loop_run_once(nf.loop, 100);
    assert_int_equal(r1.done + r2.done, 0);
    aws_client_destroy(nf.client);
    assert_int_equal(r1.done, 1);
    assert_int_equal(r2.done, 1);
    assert_string_equal(r1.type, "TransportError");
    assert_string_equal(r1.message, "aws client shut down before the request was sent");
    loop_destroy(nf.loop);
    server_defaults();
}

/* A refused key (ExpiredTokenException) makes the chain fetch again and
 * the call is sent once more; at most once a minute. */
static void test_refresh_on_auth_error(void **state)
{
    struct net_fixture nf;
    struct result r;
    char first[128], second[128];
    long before;

    (void)state;
    container_env();
    before = stat_n("container");
    nf_start(&nf);
    snprintf(first, sizeof(first), "%s", call_ok(nf.loop, nf.client));
    assert_int_equal(raw_request("POST", "/_revoke", "", NULL, NULL), 200);
    snprintf(second, sizeof(second), "%s", call_ok(nf.loop, nf.client));
    assert_string_not_equal(first, second);
    assert_int_equal(stat_n("container"), before + 2);
    /* refused again within the minute: the error goes to the caller */
    assert_int_equal(raw_request("POST", "/_revoke", "", NULL, NULL), 200);
    call(nf.loop, nf.client, &r);
    assert_string_equal(r.type, "ExpiredTokenException");
    assert_int_equal(stat_n("container"), before + 2);
    nf_stop(&nf);
}

/* ---- credential_process ---- */

static enum aws_creds_state wait_chain(struct loop *l, struct aws_creds_chain *ch,
                                       const struct aws_creds **c, const char **why)
{
    enum aws_creds_state st;
    time_t end = time(NULL) + 30;

    while ((st = aws_creds_chain_get(ch, c, why)) == AWS_CREDS_PENDING && time(NULL) < end) {
        loop_run_once(l, 50);
    }
    return st;
}

/* A profile whose credential_process fails: the chain's message says how. */
static void process_fails(struct loop *l, const char *command, const char *expect)
{
    struct aws_creds_chain *ch;
    const struct aws_creds *c;
    const char *why;
    char err[1024], conf[512];

    snprintf(conf, sizeof(conf), "[default]\ncredential_process = %s\n", command);
    setenv("AWS_CONFIG_FILE", write_file("config-proc", conf), 1);
    ch = chain(l, NULL, NULL, err, sizeof(err));
    assert_non_null(ch);
    assert_int_equal(wait_chain(l, ch, &c, &why), AWS_CREDS_FAILED);
    if (!strstr(why, expect)) {
        fail_msg("\"%s\" not in \"%s\"", expect, why);
    }
    aws_creds_chain_destroy(ch);
}

static void test_credential_process(void **state)
{
    struct loop *l;
    struct aws_creds_chain *ch;
    const struct aws_creds *c;
    const char *why;
    char err[1024], conf[1024], exp[32];
    time_t later = time(NULL) + 7200;
    struct tm tm;

    (void)state;
    reset_env();
    l = loop_create(err, sizeof(err));
    gmtime_r(&later, &tm);
    strftime(exp, sizeof(exp), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(conf, sizeof(conf),
             "[default]\ncredential_process = printf '%%s' '{\"Version\": 1, \"AccessKeyId\": "
             "\"AKPROC\", \"SecretAccessKey\": \"SKPROC\", \"SessionToken\": \"TOKPROC\", "
             "\"Expiration\": \"%s\"}'\n",
             exp);
    setenv("AWS_CONFIG_FILE", write_file("config-proc", conf), 1);
    ch = chain(l, NULL, NULL, err, sizeof(err));
    assert_non_null(ch);
    assert_int_equal(wait_chain(l, ch, &c, &why), AWS_CREDS_READY);
    assert_string_equal(c->access_key, "AKPROC");
    assert_string_equal(c->session_token, "TOKPROC");
    assert_int_equal((long long)c->expiration, (long long)later);
    aws_creds_chain_destroy(ch);

    /* a failing command, one that prints too much, a version not ours:
     * the chain moves on to the next providers and says what happened */
    process_fails(l, "exit 3", "profile \"default\" (credential_process exited with status 3)");
    process_fails(l, "yes", "credential_process printed more than 65536 bytes");
    process_fails(l,
                  "echo '{\"Version\": 2, \"AccessKeyId\": \"A\", \"SecretAccessKey\": "
                  "\"S\"}'",
                  "the output's Version is not 1");
    /* destroyed while the command runs: killed, nothing leaks */
    setenv("AWS_CONFIG_FILE",
           write_file("config-proc", "[default]\ncredential_process = sleep 30\n"), 1);
    ch = chain(l, NULL, NULL, err, sizeof(err));
    assert_non_null(ch);
    assert_int_equal(aws_creds_chain_get(ch, &c, &why), AWS_CREDS_PENDING);
    aws_creds_chain_destroy(ch);
    loop_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_time),
        cmocka_unit_test(test_profile_files),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_nothing_found),
        cmocka_unit_test(test_container_uri_rules),
        cmocka_unit_test(test_container),
        cmocka_unit_test(test_web_identity),
        cmocka_unit_test(test_imds),
        cmocka_unit_test(test_refresh_before_expiry),
        cmocka_unit_test(test_refresh_fails_then_recovers),
        cmocka_unit_test(test_refresh_on_auth_error),
        cmocka_unit_test(test_destroy_while_pending),
        cmocka_unit_test(test_credential_process),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
