/* test_config.c - the config loader: YAML/JSON, CONFIG env, kubemq-targets'
 * config and the older connector style's, every kind of problem, and the
 * YAML tree beneath it. */
#include "base/b64.h"
#include "base/buf.h"
#include "base/errs.h"
#include "base/log.h"
#include "base/settings.h"
#include "base/yamltree.h"
#include "binding/config.h"
#include "binding/middleware.h"
#include "source/source.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* kubemq-targets' example config for its aws.kinesis connector. */
static const char targets_yaml[] = "bindings:\n"
                                   "  - name: kubemq-query-aws-kinesis\n"
                                   "    source:\n"
                                   "      kind: kubemq.query\n"
                                   "      name: kubemq-query\n"
                                   "      properties:\n"
                                   "        address: \"kubemq-cluster:50000\"\n"
                                   "        client_id: \"kubemq-query-aws-kinesis\"\n"
                                   "        auth_token: \"\"\n"
                                   "        channel: \"query.aws.kinesis\"\n"
                                   "        group:   \"\"\n"
                                   "        auto_reconnect: \"true\"\n"
                                   "        reconnect_interval_seconds: \"1\"\n"
                                   "        max_reconnects: \"0\"\n"
                                   "    target:\n"
                                   "      kind: aws.kinesis\n"
                                   "      name: aws-kinesis\n"
                                   "      properties:\n"
                                   "        aws_key: \"id\"\n"
                                   "        aws_secret_key: 'json'\n"
                                   "        region:  \"region\"\n"
                                   "        token: \"\"\n";

/* A binding in YAML with the given source and target kinds, source
 * properties and extra binding-level lines. */
static char *binding_yaml(const char *name, const char *skind, const char *sprops,
                          const char *tkind, const char *extra)
{
    struct buf b = BUF_INIT(0);

    buf_appendf(&b,
                "  - name: %s\n"
                "    source:\n"
                "      kind: %s\n"
                "      properties:\n%s"
                "    target:\n"
                "      kind: %s\n"
                "      properties:\n"
                "        aws_key: k\n"
                "        aws_secret_key: s\n"
                "%s",
                name, skind, sprops, tkind, extra);
    return buf_detach(&b, NULL);
}

static int load(struct config *c, struct errs *e, const char *text, const char *origin)
{
    errs_init(e);
    return config_load_text(c, text, strlen(text), origin, e);
}

/* Loading text fails, each needle appears in the problems, and there are
 * exactly n of them. */
static void expect_problems(const char *text, int n, ...)
{
    struct config c;
    struct errs e;
    const char *needle;
    va_list ap;

    assert_int_equal(load(&c, &e, text, "t.yaml"), -1);
    va_start(ap, n);
    while ((needle = va_arg(ap, const char *)) != NULL) {
        if (!strstr(buf_str(&e.text), needle)) {
            fail_msg("missing \"%s\" in:\n%s", needle, buf_str(&e.text));
        }
    }
    va_end(ap);
    if (e.count != n) {
        fail_msg("expected %d problems, got %d:\n%s", n, e.count, buf_str(&e.text));
    }
    assert_int_equal(c.n_bindings, 0);
    config_free(&c);
    errs_free(&e);
}

/* Log lines written while fn runs. */
static char *captured_log(int (*fn)(void *), void *arg, int *rc)
{
    FILE *f = tmpfile();
    struct buf out = BUF_INIT(0);
    char chunk[4096];
    size_t n;

    assert_non_null(f);
    log_set_fd(fileno(f));
    *rc = fn(arg);
    log_set_fd(-1);
    rewind(f);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        buf_append(&out, chunk, n);
    }
    fclose(f);
    buf_append_char(&out, '\0');
    return buf_detach(&out, NULL);
}

static void test_kubemq_targets_config(void **state)
{
    struct config c;
    struct errs e;
    const struct config_binding *b;

    (void)state;
    assert_int_equal(load(&c, &e, targets_yaml, "kubemq-targets.yaml"), 0);
    assert_int_equal(e.count, 0);
    assert_int_equal(c.api_port, 8080);
    assert_string_equal(c.api_address, "0.0.0.0");
    assert_int_equal(c.api_enable_request, 0);
    assert_int_equal(c.log_level, -1);
    assert_string_equal(c.source_path, "kubemq-targets.yaml");
    assert_int_equal(c.n_bindings, 1);
    b = config_find_binding(&c, "kubemq-query-aws-kinesis");
    assert_non_null(b);
    assert_null(config_find_binding(&c, "nope"));
    assert_string_equal(b->source.kind, "kubemq.query");
    assert_string_equal(b->source.canonical_kind, "kubemq.query");
    assert_string_equal(b->source.name, "kubemq-query");
    assert_string_equal(b->source_opts.address, "kubemq-cluster:50000");
    assert_string_equal(b->source_opts.host, "kubemq-cluster");
    assert_int_equal(b->source_opts.port, 50000);
    assert_string_equal(b->source_opts.channel, "query.aws.kinesis");
    assert_string_equal(b->source_opts.client_id, "kubemq-query-aws-kinesis");
    assert_string_equal(b->source_opts.group, "");
    assert_int_equal(b->source_opts.auto_reconnect, 1);
    assert_int_equal(b->source_opts.reconnect_interval_seconds, 1);
    assert_int_equal(b->source_opts.max_reconnects, 0);
    assert_int_equal(b->source_opts.sources, 1);
    assert_int_equal(b->source_opts.concurrency, 64);
    assert_int_equal(b->source_opts.drain_timeout_seconds, 30);
    assert_int_equal(b->source_opts.tls, 0);
    assert_string_equal(b->target.canonical_kind, "aws.kinesis");
    assert_ptr_equal(b->target_kind, target_kind_find("aws.kinesis", NULL));
    assert_string_equal(json_string_value(json_object_get(b->target.props, "aws_secret_key")),
                        "json");
    /* middleware defaults */
    assert_int_equal(b->middleware.log_level, MIDDLEWARE_LOG_NONE);
    assert_int_equal(b->middleware.retry_attempts, 1);
    assert_int_equal(b->middleware.retry_delay_ms, 100);
    assert_int_equal(b->middleware.retry_max_jitter_ms, 100);
    assert_int_equal(b->middleware.retry_delay_type, MIDDLEWARE_RETRY_BACKOFF);
    assert_int_equal(b->middleware.rate_per_second, 0);
    assert_string_equal(b->middleware.metadata, "");
    assert_int_equal(json_object_size(b->props), 0);
    config_free(&c);
    config_free(&c); /* twice is harmless */
    errs_free(&e);
}

static void test_json_text(void **state)
{
    static const char text[] =
        "{\"apiPort\": 0, \"apiAddress\": \"127.0.0.1\", \"apiEnableRequest\": true,"
        " \"logLevel\": \"debug\", \"bindings\": [{\"name\": \"j\","
        " \"source\": {\"kind\": \"kubemq.command\", \"properties\": {\"address\": \"h:1\","
        " \"channel\": \"c\", \"sources\": 4, \"concurrency\": \"8\"}},"
        " \"target\": {\"kind\": \"target.aws.kinesis\", \"properties\": {\"region\": "
        "\"eu-west-1\"}},"
        " \"properties\": {\"retry_attempts\": \"3\", \"retry_delay_type\": \"fixed\","
        " \"rate_per_seconds\": \"50\", \"log_level\": \"info\","
        " \"metadata\": \"{\\\"method\\\":\\\"put_record\\\"}\"}}]}";
    struct config c;
    struct errs e;
    const struct config_binding *b;

    (void)state;
    assert_int_equal(load(&c, &e, text, "c.json"), 0);
    assert_int_equal(c.api_port, 0);
    assert_string_equal(c.api_address, "127.0.0.1");
    assert_int_equal(c.api_enable_request, 1);
    assert_int_equal(c.log_level, LOG_LEVEL_DEBUG);
    b = &c.bindings[0];
    assert_string_equal(b->source.canonical_kind, "kubemq.command");
    assert_int_equal(b->source_opts.sources, 4);
    assert_int_equal(b->source_opts.concurrency, 8);
    /* stored properties are strings, as kubemq-targets has them */
    assert_string_equal(json_string_value(json_object_get(b->source.props, "sources")), "4");
    assert_string_equal(b->target.canonical_kind, "aws.kinesis");
    assert_int_equal(b->middleware.retry_attempts, 3);
    assert_int_equal(b->middleware.retry_delay_type, MIDDLEWARE_RETRY_FIXED);
    assert_int_equal(b->middleware.rate_per_second, 50);
    assert_int_equal(b->middleware.log_level, MIDDLEWARE_LOG_INFO);
    assert_string_equal(b->middleware.metadata, "{\"method\":\"put_record\"}");
    config_free(&c);
    errs_free(&e);
}

/* The older connector style: source./target. kinds, host and port, the
 * misspelt target kind. */
static const char older_style_yaml[] = "bindings:\n"
                                       "  - name: kubemq-query-kafka\n"
                                       "    source:\n"
                                       "      kind: source.kubemq.query\n"
                                       "      name: kubemq-query\n"
                                       "      properties:\n"
                                       "        host: \"localhost\"\n"
                                       "        port: \"50000\"\n"
                                       "        channel: \"query.gcp.functions\"\n"
                                       "        concurrency: \"1\"\n"
                                       "    target:\n"
                                       "      kind: target.aws.kenisis\n"
                                       "      name: target.aws.kenisis\n"
                                       "      properties:\n"
                                       "        aws_key: \"j\"\n"
                                       "        aws_secret_key: \"osuLJf+sdf\"\n"
                                       "        region: \"us-east-2\"\n";

static int load_older_style(void *arg)
{
    struct config *c = arg;
    struct errs e;
    int rc = load(c, &e, older_style_yaml, "older-style.yaml");

    errs_free(&e);
    return rc;
}

static void test_older_connector_style(void **state)
{
    struct config c;
    char *log;
    int rc;

    (void)state;
    log = captured_log(load_older_style, &c, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(c.bindings[0].source.canonical_kind, "kubemq.query");
    assert_string_equal(c.bindings[0].source_opts.address, "localhost:50000");
    assert_int_equal(c.bindings[0].source_opts.concurrency, 1);
    assert_string_equal(c.bindings[0].target.kind, "target.aws.kenisis");
    assert_string_equal(c.bindings[0].target.canonical_kind, "aws.kinesis");
    /* the warning names the binding, the misspelling and the right spelling */
    assert_non_null(strstr(log, "warn"));
    assert_non_null(strstr(log, "[kubemq-query-kafka]"));
    assert_non_null(strstr(log, "\"target.aws.kenisis\""));
    assert_non_null(strstr(log, "use \"aws.kinesis\""));
    free(log);
    config_free(&c);
}

static void test_kind_aliases_and_addresses(void **state)
{
    static const char *const skinds[] = {"kubemq.query",          "source.kubemq.query",
                                         "source.query",          "kubemq.command",
                                         "source.kubemq.command", "source.command"};
    static const char *const canon[] = {"kubemq.query",   "kubemq.query",   "kubemq.query",
                                        "kubemq.command", "kubemq.command", "kubemq.command"};
    struct buf text = BUF_INIT(0);
    struct config c;
    struct errs e;
    size_t i;
    char name[32];

    (void)state;
    buf_append_str(&text, "apiPort: 9000\nbindings:\n");
    for (i = 0; i < 6; i++) {
        char *b;
        snprintf(name, sizeof(name), "b%zu", i);
        b = binding_yaml(name, skinds[i],
                         i == 0 ? "        address: \"[::1]:50000\"\n        channel: c\n"
                         : i == 1
                             ? "        host: \"::1\"\n        port: 6000\n        channel: c\n"
                         : i == 2 ? "        host: \"[fe80::1]\"\n        port: \"7\"\n"
                                    "        channel: c\n"
                                  : "        address: 10.0.0.1:5\n        channel: c\n",
                         i % 2 ? "aws.kinesis" : "target.aws.kinesis", "");
        buf_append_str(&text, b);
        free(b);
    }
    assert_int_equal(load(&c, &e, buf_str(&text), "aliases.yaml"), 0);
    assert_int_equal(c.api_port, 9000);
    assert_int_equal(c.n_bindings, 6);
    for (i = 0; i < 6; i++) {
        assert_string_equal(c.bindings[i].source.canonical_kind, canon[i]);
        assert_string_equal(c.bindings[i].target.canonical_kind, "aws.kinesis");
    }
    assert_string_equal(c.bindings[0].source_opts.host, "::1");
    assert_int_equal(c.bindings[0].source_opts.port, 50000);
    assert_string_equal(c.bindings[1].source_opts.address, "[::1]:6000");
    assert_string_equal(c.bindings[2].source_opts.address, "[fe80::1]:7");
    assert_string_equal(c.bindings[2].source_opts.host, "fe80::1");
    assert_string_equal(c.bindings[3].source_opts.host, "10.0.0.1");
    assert_int_equal(c.bindings[3].source_opts.port, 5);
    /* the generated client id */
    assert_int_equal(strncmp(c.bindings[0].source_opts.client_id, "kubemq-kinesis-", 15), 0);
    assert_int_equal(strlen(c.bindings[0].source_opts.client_id), 15 + 16);
    assert_int_equal(strspn(c.bindings[0].source_opts.client_id + 15, "0123456789abcdef"), 16);
    assert_string_not_equal(c.bindings[0].source_opts.client_id,
                            c.bindings[1].source_opts.client_id);
    config_free(&c);
    errs_free(&e);
    buf_free(&text);
}

static void test_empty_values_mean_default(void **state)
{
    char *b = binding_yaml("e", "kubemq.query",
                           "        address: a:1\n        host: \"\"\n        port: \"\"\n"
                           "        channel: c\n        sources: \"\"\n        auto_reconnect:\n",
                           "aws.kinesis", "    properties:\n      log_level: \"\"\n");
    struct buf text = BUF_INIT(0);
    struct config c;
    struct errs e;

    (void)state;
    buf_appendf(&text, "bindings:\n%s", b);
    assert_int_equal(load(&c, &e, buf_str(&text), "e.yaml"), 0);
    assert_string_equal(c.bindings[0].source_opts.address, "a:1");
    assert_int_equal(c.bindings[0].source_opts.sources, 1);
    assert_int_equal(c.bindings[0].source_opts.auto_reconnect, 1);
    assert_int_equal(c.bindings[0].middleware.log_level, MIDDLEWARE_LOG_NONE);
    config_free(&c);
    errs_free(&e);
    buf_free(&text);
    free(b);
}

static void test_config_env(void **state)
{
    struct buf b64 = BUF_INIT(0), wrapped = BUF_INIT(0);
    char path[] = "/tmp/kk-config-XXXXXX";
    struct config c;
    struct errs e;
    size_t i;
    int fd;

    (void)state;
    /* plain text */
    setenv("CONFIG", targets_yaml, 1);
    errs_init(&e);
    assert_int_equal(config_load(&c, NULL, &e), 0);
    assert_string_equal(c.source_path, "CONFIG");
    assert_int_equal(c.n_bindings, 1);
    config_free(&c);

    /* base64, wrapped at 76 columns as base64(1) writes it */
    assert_int_equal(b64_encode(targets_yaml, strlen(targets_yaml), &b64), 0);
    for (i = 0; i < b64.len; i += 76) {
        buf_append(&wrapped, b64.data + i, b64.len - i < 76 ? b64.len - i : 76);
        buf_append_char(&wrapped, '\n');
    }
    setenv("CONFIG", buf_str(&wrapped), 1);
    assert_int_equal(config_load(&c, NULL, &e), 0);
    assert_string_equal(c.bindings[0].name, "kubemq-query-aws-kinesis");
    config_free(&c);

    /* a file given wins over CONFIG */
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, older_style_yaml, strlen(older_style_yaml)),
                     (ssize_t)strlen(older_style_yaml));
    close(fd);
    assert_int_equal(config_load(&c, path, &e), 0);
    assert_string_equal(c.bindings[0].name, "kubemq-query-kafka");
    config_free(&c);
    unlink(path);

    /* broken CONFIG: the problem is named after it */
    setenv("CONFIG", "bindings: [\n", 1);
    assert_int_equal(config_load(&c, NULL, &e), -1);
    assert_non_null(strstr(buf_str(&e.text), "CONFIG: line "));
    config_free(&c);

    unsetenv("CONFIG");
    assert_int_equal(config_load(&c, "/nonexistent/config.yaml", &e), -1);
    assert_non_null(
        strstr(buf_str(&e.text), "/nonexistent/config.yaml: cannot read the config: No such"));
    assert_int_equal(config_load(&c, KK_SOURCE_DIR, &e), -1);
    assert_non_null(strstr(buf_str(&e.text), "it is a directory"));
    errs_free(&e);
    buf_free(&b64);
    buf_free(&wrapped);
}

/* The acceptance config: a misspelt property, a missing channel,
 * sources: "abc" and a duplicate name: four lines naming each. */
static void test_four_problems(void **state)
{
    (void)state;
    expect_problems(
        "bindings:\n"
        "  - name: b1\n"
        "    source:\n"
        "      kind: kubemq.query\n"
        "      properties:\n"
        "        address: \"localhost:50000\"\n"
        "        chanel: \"q\"\n"
        "        sources: \"abc\"\n"
        "    target:\n"
        "      kind: aws.kinesis\n"
        "  - name: b1\n"
        "    source:\n"
        "      kind: kubemq.query\n"
        "      properties:\n"
        "        address: \"localhost:50000\"\n"
        "        channel: \"q\"\n"
        "    target:\n"
        "      kind: aws.kinesis\n",
        4, "binding \"b1\": source: chanel: unknown property (did you mean channel?)",
        "binding \"b1\": source: channel: is required",
        "binding \"b1\": source: sources: must be an integer from 1 to 1024, got \"abc\"",
        "binding \"b1\": name: duplicate binding name (bindings #1 and #2)", NULL);
}

static void test_structure_errors(void **state)
{
    (void)state;
    /* top level */
    expect_problems("sources: \"abc\"\nbindings: \"abc\"\n", 2,
                    "config: sources: unknown key; valid: apiPort, apiAddress, apiEnableRequest, "
                    "logLevel, watchConfig, config_watch_debounce_ms, bindings",
                    "config: bindings: must be a list of bindings, not text", NULL);
    expect_problems("apiPrt: 1\nbindings: []\n", 1,
                    "config: apiPrt: unknown key (did you mean apiPort?)", NULL);
    expect_problems("apiPort: 70000\napiEnableRequest: maybe\nlogLevel: loud\n", 3,
                    "config: apiPort: must be an integer from 0 to 65535, got \"70000\"",
                    "config: apiEnableRequest: must be true or false, got \"maybe\"",
                    "config: logLevel: must be one of: error, warn, info, debug, got \"loud\"",
                    NULL);
    expect_problems("apiPort: 1\napiport: 2\n", 1, "config: apiport: given twice (also as apiPort)",
                    NULL);
    expect_problems("", 1, "t.yaml: is empty", NULL);
    expect_problems("- a\n- b\n", 1, "t.yaml: must be a map with apiPort and bindings, not a list",
                    NULL);
    expect_problems("just text\n", 1, "not text", NULL);
    /* binding level */
    expect_problems("bindings:\n  - abc\n", 1,
                    "binding #1: must be a map with name, source, target and properties, not text",
                    NULL);
    expect_problems("bindings:\n  - source: {kind: kubemq.query, properties: {address: \"a:1\", "
                    "channel: c}}\n    target: {kind: aws.kinesis}\n    sink: x\n",
                    2, "binding #1: name: is required",
                    "binding #1: sink: unknown key; valid: name, source, target, properties", NULL);
    expect_problems("bindings:\n  - name: [a]\n", 3, "binding #1: name: must be text, not a list",
                    "binding #1: source: is required", "binding #1: target: is required", NULL);
    expect_problems("bindings:\n  - name: b\n    source: x\n    target:\n      name: t\n"
                    "    properties: [1]\n",
                    3,
                    "binding \"b\": source: must be a map with kind, name and properties, not text",
                    "binding \"b\": target: kind: is required",
                    "binding \"b\": properties: must be a map of key: \"value\", not a list", NULL);
    expect_problems("bindings:\n  - name: b\n    source:\n      kind: kubemq.query\n"
                    "      propertes: {}\n      properties: x\n    target:\n      kind: 5\n",
                    3, "binding \"b\": source: propertes: unknown key (did you mean properties?)",
                    "binding \"b\": source: properties: must be a map of key: \"value\", not text",
                    "binding \"b\": target: kind: must be text, not a number", NULL);
    expect_problems("bindings:\n  - name: \"a\\nb\"\n    source: {kind: kubemq.query, properties: "
                    "{address: \"a:1\", channel: c}}\n    target: {kind: aws.kinesis}\n",
                    1, "name: must not contain control characters", NULL);
}

static void test_kind_errors(void **state)
{
    char *b1 = binding_yaml("k1", "kubemq.queues", "        channel: c\n", "aws.kinesis", "");
    char *b2 = binding_yaml("k2", "kubemq.querry", "        channel: c\n", "aws.kenesis", "");
    struct buf text = BUF_INIT(0);

    (void)state;
    buf_appendf(&text, "bindings:\n%s%s", b1, b2);
    expect_problems(
        buf_str(&text), 3,
        "binding \"k1\": source: kind: unknown source kind \"kubemq.queues\"; supported: "
        "kubemq.query (also source.kubemq.query, source.query), kubemq.command (also "
        "source.kubemq.command, source.command), kubemq.events",
        "binding \"k2\": source: kind: unknown source kind \"kubemq.querry\"; supported:",
        "binding \"k2\": target: kind: unknown target kind \"aws.kenesis\"; supported: "
        "aws.kinesis",
        NULL);
    free(b1);
    free(b2);
    buf_free(&text);
}

/* One binding whose source properties are props; n problems expected. */
static void expect_source_problem(const char *props, int n, const char *needle)
{
    char *b = binding_yaml("s", "kubemq.query", props, "aws.kinesis", "");
    struct buf text = BUF_INIT(0);

    buf_appendf(&text, "bindings:\n%s", b);
    expect_problems(buf_str(&text), n, needle, NULL);
    free(b);
    buf_free(&text);
}

static void test_source_property_errors(void **state)
{
    (void)state;
    expect_source_problem("        channel: c\n", 1,
                          "binding \"s\": source: address: is required (host:port");
    expect_source_problem("        address: a:1\n        host: h\n        channel: c\n", 1,
                          "address: give either address or host + port, not both");
    expect_source_problem("        host: h\n        channel: c\n", 1,
                          "binding \"s\": source: port: is required with host");
    expect_source_problem("        port: 5\n        channel: c\n", 1,
                          "binding \"s\": source: host: is required with port");
    expect_source_problem("        host: h\n        port: 0\n        channel: c\n", 1,
                          "port: must be an integer from 1 to 65535, got \"0\"");
    expect_source_problem("        address: nohost\n        channel: c\n", 1,
                          "address: must be host:port");
    expect_source_problem("        address: \"::1:50000\"\n        channel: c\n", 1,
                          "address: an IPv6 address goes in brackets");
    expect_source_problem("        address: \"h:99999\"\n        channel: c\n", 1,
                          "address: the port must be an integer from 1 to 65535");
    expect_source_problem("        address: \":80\"\n        channel: c\n", 1,
                          "address: no valid host");
    expect_source_problem("        address: a:1\n        channel: \"\"\n", 1,
                          "channel: is required and must not be empty");
    expect_source_problem("        address: a:1\n        channel: \"a b\"\n", 1,
                          "channel: must not contain whitespace");
    expect_source_problem("        address: a:1\n        channel: c\n        sources: 0\n", 1,
                          "sources: must be an integer from 1 to 1024, got \"0\"");
    expect_source_problem("        address: a:1\n        channel: c\n        concurrency: 100001\n",
                          1, "concurrency: must be an integer from 1 to 100000");
    expect_source_problem("        address: a:1\n        channel: c\n        auto_reconnect: 2\n",
                          1, "auto_reconnect: must be true or false, got \"2\"");
    expect_source_problem("        address: a:1\n        channel: c\n"
                          "        reconnect_interval_seconds: \"1s\"\n",
                          1, "reconnect_interval_seconds: must be an integer from 0 to 86400");
    expect_source_problem("        address: a:1\n        channel: c\n        group: [a]\n", 1,
                          "group: must be a single value, not a list");
    expect_source_problem("        address: a:1\n        channel: c\n        ca_file: /etc/hosts\n",
                          1, "tls: ca_file, cert_file and key_file need tls");
    expect_source_problem("        address: a:1\n        channel: c\n        tls: true\n"
                          "        cert_file: /etc/hosts\n",
                          1, "key_file: is required with cert_file");
    expect_source_problem("        address: a:1\n        channel: c\n        tls: true\n"
                          "        ca_file: /nonexistent/ca.pem\n",
                          1, "ca_file: cannot read \"/nonexistent/ca.pem\"");
}

/* One binding of kind with props; n problems, each needle among them. */
static void expect_kind_problems(const char *kind, const char *props, int n, ...)
{
    char *b = binding_yaml("s", kind, props, "aws.kinesis", "");
    struct buf text = BUF_INIT(0);
    struct config c;
    struct errs e;
    const char *needle;
    va_list ap;

    buf_appendf(&text, "bindings:\n%s", b);
    assert_int_equal(load(&c, &e, buf_str(&text), "t.yaml"), -1);
    va_start(ap, n);
    while ((needle = va_arg(ap, const char *)) != NULL) {
        if (!strstr(buf_str(&e.text), needle)) {
            fail_msg("missing \"%s\" in:\n%s", needle, buf_str(&e.text));
        }
    }
    va_end(ap);
    if (e.count != n) {
        fail_msg("expected %d problems, got %d:\n%s", n, e.count, buf_str(&e.text));
    }
    config_free(&c);
    errs_free(&e);
    free(b);
    buf_free(&text);
}

#define ES      "kubemq.events-store"
#define ES_BASE "        address: a:1\n        channel: orders\n"

static void test_checkpoint_settings(void **state)
{
    struct config c;
    struct errs e;
    char *b1, *b2;
    struct buf text = BUF_INIT(0);

    (void)state;
    /* The default channel, and a file in a writable directory. */
    b1 = binding_yaml("k", ES, ES_BASE "        checkpoint: kubemq\n", "aws.kinesis", "");
    b2 = binding_yaml("f", ES,
                      ES_BASE "        checkpoint: file\n        checkpoint_file: /tmp/f.json\n"
                              "        checkpoint_interval_ms: \"250\"\n",
                      "aws.kinesis", "");
    buf_appendf(&text, "bindings:\n%s%s", b1, b2);
    if (load(&c, &e, buf_str(&text), "t.yaml") != 0) {
        fail_msg("%s", buf_str(&e.text));
    }
    assert_int_equal(c.bindings[0].source_opts.checkpoint, SOURCE_CHECKPOINT_KUBEMQ);
    assert_string_equal(c.bindings[0].source_opts.checkpoint_channel, "orders.checkpoint");
    assert_int_equal(c.bindings[0].source_opts.checkpoint_interval_ms, 1000);
    assert_int_equal(c.bindings[1].source_opts.checkpoint, SOURCE_CHECKPOINT_FILE);
    assert_string_equal(c.bindings[1].source_opts.checkpoint_file, "/tmp/f.json");
    assert_int_equal(c.bindings[1].source_opts.checkpoint_interval_ms, 250);
    config_free(&c);
    errs_free(&e);
    free(b1);
    free(b2);
    buf_free(&text);

    /* Off, spelled or empty: today's behaviour. */
    b1 = binding_yaml("o", ES, ES_BASE "        checkpoint: \"\"\n", "aws.kinesis", "");
    buf_reset(&text);
    buf_appendf(&text, "bindings:\n%s", b1);
    assert_int_equal(load(&c, &e, buf_str(&text), "t.yaml"), 0);
    assert_int_equal(c.bindings[0].source_opts.checkpoint, SOURCE_CHECKPOINT_OFF);
    config_free(&c);
    errs_free(&e);
    free(b1);
    buf_free(&text);
}

static void test_checkpoint_errors(void **state)
{
    (void)state;
    expect_kind_problems(ES, ES_BASE "        checkpoint: kubemq\n        group: g\n", 1,
                         "binding \"s\": source: checkpoint: cannot be used with a group", NULL);
    expect_kind_problems(ES,
                         ES_BASE "        checkpoint: file\n        checkpoint_file: /tmp/x\n"
                                 "        sources: \"3\"\n",
                         1, "binding \"s\": source: checkpoint: needs sources: 1, got 3", NULL);
    expect_kind_problems("kubemq.query",
                         "        address: a:1\n        channel: q\n"
                         "        checkpoint: kubemq\n",
                         1,
                         "binding \"s\": source: checkpoint: only applies to kubemq.events-store "
                         "(this source is kubemq.query",
                         NULL);
    expect_kind_problems("kubemq.events",
                         "        address: a:1\n        channel: q\n"
                         "        checkpoint_file: /tmp/x\n"
                         "        checkpoint_interval_ms: \"5\"\n",
                         2,
                         "checkpoint_file: only applies to kubemq.events-store (this source is "
                         "kubemq.events",
                         "checkpoint_interval_ms: only applies to kubemq.events-store", NULL);
    expect_kind_problems(
        ES, ES_BASE "        checkpoint: file\n", 1,
        "binding \"s\": source: checkpoint_file: is required with checkpoint: file", NULL);
    expect_kind_problems(ES, ES_BASE "        checkpoint: disk\n", 1,
                         "checkpoint: must be one of: off, kubemq, file, got \"disk\"", NULL);
    expect_kind_problems(ES, ES_BASE "        checkpoint_file: /tmp/x\n", 1,
                         "checkpoint_file: only applies with checkpoint: kubemq or file", NULL);
    expect_kind_problems(ES, ES_BASE "        checkpoint_interval_ms: \"100\"\n", 1,
                         "checkpoint_interval_ms: only applies with checkpoint: kubemq or file",
                         NULL);
    expect_kind_problems(ES,
                         ES_BASE "        checkpoint: kubemq\n        checkpoint_file: /tmp/x\n", 1,
                         "checkpoint_file: only applies with checkpoint: file", NULL);
    expect_kind_problems(ES,
                         ES_BASE "        checkpoint: file\n        checkpoint_file: /tmp/x\n"
                                 "        checkpoint_channel: c\n",
                         1, "checkpoint_channel: only applies with checkpoint: kubemq", NULL);
    expect_kind_problems(ES,
                         ES_BASE "        checkpoint: kubemq\n        checkpoint_channel: orders\n",
                         1, "checkpoint_channel: must differ from channel", NULL);
    expect_kind_problems(
        ES, ES_BASE "        checkpoint: kubemq\n        checkpoint_channel: c.>\n", 1,
        "checkpoint_channel: must be one channel, without whitespace or wildcards", NULL);
    expect_kind_problems(ES,
                         ES_BASE "        checkpoint: kubemq\n        response_channel: r\n"
                                 "        checkpoint_channel: r\n",
                         1, "checkpoint_channel: must differ from response_channel", NULL);
    expect_kind_problems(
        ES, ES_BASE "        checkpoint: kubemq\n        checkpoint_interval_ms: \"5\"\n", 1,
        "checkpoint_interval_ms: must be an integer from 10 to 3600000", NULL);
    expect_kind_problems(ES, ES_BASE "        checkpoint: file\n        checkpoint_file: /tmp\n", 1,
                         "checkpoint_file: \"/tmp\" is a directory; name a file in it", NULL);
    expect_kind_problems(ES,
                         ES_BASE "        checkpoint: file\n"
                                 "        checkpoint_file: /no-such-dir-kk/x.json\n",
                         1,
                         "checkpoint_file: its directory \"/no-such-dir-kk\" is not writable: No "
                         "such file or directory",
                         NULL);
}

/* Between bindings: one file each; a checkpoint channel is no binding's channel. */
static void test_checkpoint_between_bindings(void **state)
{
    char *b1, *b2, *b3;
    struct buf text = BUF_INIT(0);

    (void)state;
    b1 = binding_yaml("a", ES,
                      ES_BASE "        checkpoint: file\n        checkpoint_file: /tmp/same.json\n",
                      "aws.kinesis", "");
    b2 = binding_yaml("b", ES,
                      "        address: a:1\n        channel: other\n        checkpoint: file\n"
                      "        checkpoint_file: /tmp/same.json\n",
                      "aws.kinesis", "");
    b3 = binding_yaml("c", ES,
                      "        address: a:1\n        channel: third\n        checkpoint: kubemq\n"
                      "        checkpoint_channel: orders\n",
                      "aws.kinesis", "");
    buf_appendf(&text, "bindings:\n%s%s%s", b1, b2, b3);
    expect_problems(buf_str(&text), 2,
                    "binding \"b\": source: checkpoint_file: also the checkpoint file of binding "
                    "\"a\"; give each binding a file of its own",
                    "binding \"c\": source: checkpoint_channel: \"orders\" is the channel of "
                    "binding \"a\" (its checkpoints would be taken as requests)",
                    NULL);
    free(b1);
    free(b2);
    free(b3);
    buf_free(&text);
    /* Several bindings may share a checkpoint channel, and one on another broker is no clash. */
    b1 = binding_yaml("a", ES,
                      ES_BASE "        checkpoint: kubemq\n        checkpoint_channel: cp\n",
                      "aws.kinesis", "");
    b2 = binding_yaml("b", ES,
                      "        address: a:1\n        channel: o2\n        checkpoint: kubemq\n"
                      "        checkpoint_channel: cp\n",
                      "aws.kinesis", "");
    b3 = binding_yaml("c", ES, "        address: b:1\n        channel: cp\n", "aws.kinesis", "");
    text = (struct buf)BUF_INIT(0);
    buf_appendf(&text, "bindings:\n%s%s%s", b1, b2, b3);
    {
        struct config c;
        struct errs e;

        if (load(&c, &e, buf_str(&text), "t.yaml") != 0) {
            fail_msg("%s", buf_str(&e.text));
        }
        config_free(&c);
        errs_free(&e);
    }
    free(b1);
    free(b2);
    free(b3);
    buf_free(&text);
}

static void test_middleware_errors(void **state)
{
    char *b = binding_yaml("m", "kubemq.query", "        address: a:1\n        channel: c\n",
                           "aws.kinesis",
                           "    properties:\n"
                           "      log_level: verbose\n"
                           "      retry_attempts: 0\n"
                           "      retry_delay_type: linear\n"
                           "      rate_per_second: 5\n"
                           "      rate_per_seconds: 6\n"
                           "      metadata: '{\"a\": 1}'\n"
                           "      max_retries: 3\n");
    struct buf text = BUF_INIT(0);

    (void)state;
    buf_appendf(&text, "bindings:\n%s", b);
    expect_problems(
        buf_str(&text), 6,
        "binding \"m\": properties: log_level: must be one of: \"\", debug, info, error, got "
        "\"verbose\"",
        "binding \"m\": properties: retry_attempts: must be an integer from 1 to 1000, got \"0\"",
        "retry_delay_type: must be one of: back-off, fixed, random, got \"linear\"",
        "rate_per_seconds: given twice (also as rate_per_second)",
        "metadata: value of \"a\" must be a string", "max_retries: unknown property", NULL);
    free(b);
    buf_free(&text);
}

static void test_target_property_errors(void **state)
{
    static const char text[] = "bindings:\n"
                               "  - name: t\n"
                               "    source: {kind: kubemq.query, properties: {address: \"a:1\", "
                               "channel: c}}\n"
                               "    target:\n"
                               "      kind: aws.kinesis\n"
                               "      properties:\n"
                               "        regoin: us-east-1\n"
                               "        aws_secret_key: [\"SECRET-IN-A-LIST\"]\n";

    (void)state;
    expect_problems(
        text, 2, "binding \"t\": target: regoin: unknown property (did you mean region?)",
        "binding \"t\": target: aws_secret_key: must be a single value, not a list", NULL);
}

static void test_yaml_syntax_errors(void **state)
{
    (void)state;
    expect_problems("bindings:\n  - name: x\n\tsource: y\n", 1,
                    "t.yaml: line 3, column 1: ", "(a tab in the indentation", NULL);
    expect_problems("bindings:\n  - name: x\n    name: y\n", 1,
                    "t.yaml: line 3, column 5: duplicate key \"name\"", NULL);
    expect_problems("a: [1, 2\n", 1, "t.yaml: line 2, column 1: ", NULL);
    expect_problems("bindings: []\n---\nbindings: []\n", 1, "only one YAML document", NULL);
    expect_problems("apiPort: *nope\n", 1, "alias *nope names no anchor", NULL);
}

static void test_json_errors_hide_values(void **state)
{
    struct config c;
    struct errs e;
    static const char text[] = "{\"bindings\": [{\"target\": {\"properties\": "
                               "{\"aws_secret_key\": SECRET-TOKEN-123}}}]}";

    (void)state;
    assert_int_equal(load(&c, &e, text, "c.json"), -1);
    assert_int_equal(e.count, 1);
    assert_non_null(strstr(buf_str(&e.text), "c.json: line 1, column "));
    assert_null(strstr(buf_str(&e.text), "SECRET"));
    errs_free(&e);
    /* duplicate keys are refused in JSON too */
    assert_int_equal(load(&c, &e, "{\"apiPort\": 1, \"apiPort\": 2}", "d.json"), -1);
    assert_non_null(strstr(buf_str(&e.text), "duplicate object key"));
    errs_free(&e);
    /* a YAML flow map that is not JSON still loads */
    assert_int_equal(load(&c, &e, "{apiPort: 81, bindings: []}", "f.yaml"), 0);
    assert_int_equal(c.api_port, 81);
    config_free(&c);
    errs_free(&e);
}

struct secret_opts {
    long long pin;
    int on;
    int mode;
};

static void test_secret_values_never_echoed(void **state)
{
    static const struct settings_entry table[] = {
        {"pin", SETTINGS_INT, "1", SETTINGS_SECRET, 0, 9, NULL, offsetof(struct secret_opts, pin),
         NULL, "a secret number"},
        {"on", SETTINGS_BOOL, "false", SETTINGS_SECRET, 0, 0, NULL,
         offsetof(struct secret_opts, on), NULL, "a secret flag"},
        {"mode", SETTINGS_ENUM, "a", SETTINGS_SECRET, 0, 0, "a|b",
         offsetof(struct secret_opts, mode), NULL, "a secret choice"},
        {NULL, 0, NULL, 0, 0, 0, NULL, 0, NULL, NULL},
    };
    struct secret_opts o;
    struct errs e;
    json_t *props = json_pack("{s:s, s:s, s:s}", "pin", "SECRET-PIN-77", "on", "SECRET-ON", "mode",
                              "SECRET-MODE");

    (void)state;
    memset(&o, 0, sizeof(o));
    errs_init(&e);
    assert_int_equal(settings_apply(table, props, &o, "w", &e), -1);
    assert_int_equal(e.count, 3);
    assert_null(strstr(buf_str(&e.text), "SECRET"));
    assert_non_null(
        strstr(buf_str(&e.text), "w: pin: must be an integer from 0 to 9, got (secret"));
    json_decref(props);
    errs_free(&e);
}

static int load_debug(void *arg)
{
    static const char text[] = "bindings:\n"
                               "  - name: d\n"
                               "    source:\n"
                               "      kind: kubemq.query\n"
                               "      properties:\n"
                               "        address: a:1\n"
                               "        channel: c\n"
                               "        auth_token: SECRET-AUTH-1\n"
                               "    target:\n"
                               "      kind: aws.kinesis\n"
                               "      properties:\n"
                               "        aws_key: AKIDEXAMPLE\n"
                               "        aws_secret_key: SECRET-AWS-2\n"
                               "        token: SECRET-SESSION-3\n";
    struct config *c = arg;
    struct errs e;
    int rc = load(c, &e, text, "d.yaml");

    config_log(c);
    errs_free(&e);
    config_free(c);
    return rc;
}

static void test_debug_log_redacts(void **state)
{
    struct config c;
    enum log_level old = log_get_level();
    char *log;
    int rc;

    (void)state;
    log_setup(LOG_LEVEL_DEBUG, LOG_FORMAT_JSON);
    log = captured_log(load_debug, &c, &rc);
    log_setup(old, LOG_FORMAT_TEXT);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(log, "\"binding\":\"d\""));
    assert_non_null(strstr(log, "aws_secret_key"));
    assert_null(strstr(log, "SECRET"));
    free(log);
}

static void test_yamltree_scalars(void **state)
{
    static const char text[] = "i: 42\n"
                               "n: -7\n"
                               "z: 0\n"
                               "octal: 0755\n"
                               "q: \"42\"\n"
                               "t: true\n"
                               "f: False\n"
                               "yes: yes\n"
                               "nul: ~\n"
                               "empty:\n"
                               "tagged: !!str 5\n"
                               "big: 123456789012345678901\n"
                               "base: &b {k: v}\n"
                               "copy: *b\n"
                               "list: [a, 1, {x: y}]\n"
                               "block: |\n  two\n  lines\n";
    char err[256];
    json_t *t = yamltree_parse(text, strlen(text), err, sizeof(err));

    (void)state;
    assert_non_null(t);
    assert_int_equal(json_integer_value(json_object_get(t, "i")), 42);
    assert_int_equal(json_integer_value(json_object_get(t, "n")), -7);
    assert_true(json_is_integer(json_object_get(t, "z")));
    assert_string_equal(json_string_value(json_object_get(t, "octal")), "0755");
    assert_string_equal(json_string_value(json_object_get(t, "q")), "42");
    assert_true(json_is_true(json_object_get(t, "t")));
    assert_true(json_is_false(json_object_get(t, "f")));
    assert_string_equal(json_string_value(json_object_get(t, "yes")), "yes");
    assert_true(json_is_null(json_object_get(t, "nul")));
    assert_true(json_is_null(json_object_get(t, "empty")));
    assert_string_equal(json_string_value(json_object_get(t, "tagged")), "5");
    assert_string_equal(json_string_value(json_object_get(t, "big")), "123456789012345678901");
    assert_string_equal(json_string_value(json_object_get(json_object_get(t, "copy"), "k")), "v");
    assert_int_equal(json_array_size(json_object_get(t, "list")), 3);
    assert_string_equal(json_string_value(json_object_get(t, "block")), "two\nlines\n");
    json_decref(t);

    t = yamltree_parse("", 0, err, sizeof(err));
    assert_true(json_is_null(t));
    json_decref(t);
}

static void test_yamltree_limits(void **state)
{
    struct buf deep = BUF_INIT(0);
    char err[256];
    int i;

    (void)state;
    for (i = 0; i < 100; i++) {
        buf_append_char(&deep, '[');
    }
    for (i = 0; i < 100; i++) {
        buf_append_char(&deep, ']');
    }
    assert_null(yamltree_parse(deep.data, deep.len, err, sizeof(err)));
    assert_non_null(strstr(err, "nested deeper than"));
    buf_free(&deep);

    assert_null(yamltree_parse("{a: 1}: 2\n", 10, err, sizeof(err)));
    assert_non_null(strstr(err, "a key must be plain text, not a map"));
    assert_null(yamltree_parse("a: \"x\\0y\"\n", 10, err, sizeof(err)));
    assert_non_null(strstr(err, "NUL"));
}

static void test_reference(void **state)
{
    struct buf out = BUF_INIT(0);
    const char *t;

    (void)state;
    assert_int_equal(config_reference_markdown(&out), 0);
    t = buf_str(&out);
    assert_non_null(strstr(t, "| `apiPort` | no | `8080` | an integer from 0 to 65535 |"));
    assert_non_null(strstr(t, "### Source properties (`kubemq.query`, `kubemq.command`)"));
    assert_non_null(strstr(t, "| `channel` | yes |"));
    assert_non_null(strstr(t, "### Target `aws.kinesis` (also `target.aws.kinesis`)"));
    assert_non_null(strstr(t, "`target.aws.kenisis` is accepted with a warning"));
    assert_non_null(
        strstr(t, "| `rate_per_seconds` | | | | another spelling of `rate_per_second`"));
    assert_non_null(strstr(t, "(secret: never logged or served)"));
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kubemq_targets_config),
        cmocka_unit_test(test_json_text),
        cmocka_unit_test(test_older_connector_style),
        cmocka_unit_test(test_kind_aliases_and_addresses),
        cmocka_unit_test(test_empty_values_mean_default),
        cmocka_unit_test(test_config_env),
        cmocka_unit_test(test_four_problems),
        cmocka_unit_test(test_structure_errors),
        cmocka_unit_test(test_kind_errors),
        cmocka_unit_test(test_source_property_errors),
        cmocka_unit_test(test_checkpoint_settings),
        cmocka_unit_test(test_checkpoint_errors),
        cmocka_unit_test(test_checkpoint_between_bindings),
        cmocka_unit_test(test_middleware_errors),
        cmocka_unit_test(test_target_property_errors),
        cmocka_unit_test(test_yaml_syntax_errors),
        cmocka_unit_test(test_json_errors_hide_values),
        cmocka_unit_test(test_secret_values_never_echoed),
        cmocka_unit_test(test_debug_log_redacts),
        cmocka_unit_test(test_yamltree_scalars),
        cmocka_unit_test(test_yamltree_limits),
        cmocka_unit_test(test_reference),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
