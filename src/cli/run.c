/* run.c - the default subcommand: load the config, then check it or run. */
#include "cli/cli.h"

#include "api/api.h"
#include "base/buf.h"
#include "base/errs.h"
#include "base/log.h"
#include "base/version.h"
#include "binding/config.h"
#include "binding/service.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char usage_text[] =
    "usage: kubemq-kinesis [options]\n"
    "       kubemq-kinesis invoke --config FILE --binding NAME < request.json\n"
    "       kubemq-kinesis send ...\n"
    "\n"
    "Connects KubeMQ channels to AWS Kinesis Data Streams.\n"
    "\n"
    "options:\n"
    "  --config FILE       YAML or JSON config (default: the CONFIG environment\n"
    "                      variable, YAML/JSON text or its base64, else config.yaml)\n"
    "  --check             validate the config, print the problems, exit 0 or 2\n"
    "  --log-level LEVEL   error, warn, info (default) or debug\n"
    "  --log-format FMT    text (default) or json\n"
    "  --version           print the version\n"
    "  --help              this text\n"
    "\n"
    "exit status: 0 ok, 1 failure, 2 bad config or usage\n";

enum {
    OPT_CONFIG = 256,
    OPT_CHECK,
    OPT_VERSION,
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    OPT_HELP,
    OPT_PRINT_REFERENCE,
};

static const struct option long_options[] = {
    {"config", required_argument, NULL, OPT_CONFIG},
    {"check", no_argument, NULL, OPT_CHECK},
    {"version", no_argument, NULL, OPT_VERSION},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"help", no_argument, NULL, OPT_HELP},
    {"print-reference", no_argument, NULL, OPT_PRINT_REFERENCE}, /* hidden: the docs' tables */
    {NULL, 0, NULL, 0},
};

struct run_args {
    const char *config;
    int check, version, help, print_reference;
    int level_given;
    enum log_level level;
    enum log_format format;
};

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "kubemq-kinesis: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'kubemq-kinesis --help'.\n");
    return CLI_EXIT_CONFIG;
}

static int parse_args(int argc, char **argv, struct run_args *a)
{
    int opt;

    memset(a, 0, sizeof(*a));
    a->level = LOG_LEVEL_INFO;
    a->format = LOG_FORMAT_TEXT;
    optind = 0; /* full reset: the parser may have run before */
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
        switch (opt) {
        case OPT_CONFIG:
            if (!*optarg) {
                return usage_error("--config needs a file name%s", "");
            }
            a->config = optarg;
            break;
        case OPT_CHECK:
            a->check = 1;
            break;
        case OPT_VERSION:
            a->version = 1;
            break;
        case OPT_HELP:
        case 'h':
            a->help = 1;
            break;
        case OPT_PRINT_REFERENCE:
            a->print_reference = 1;
            break;
        case OPT_LOG_LEVEL:
            if (log_level_parse(optarg, &a->level) < 0) {
                return usage_error("--log-level must be error, warn, info or debug, not '%s'",
                                   optarg);
            }
            a->level_given = 1;
            break;
        case OPT_LOG_FORMAT:
            if (log_format_parse(optarg, &a->format) < 0) {
                return usage_error("--log-format must be text or json, not '%s'", optarg);
            }
            break;
        case ':':
            return usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) {
        return usage_error("unexpected argument '%s'", argv[optind]);
    }
    return 0;
}

static int print_reference(void)
{
    struct buf out = BUF_INIT(1 << 20);
    int rc = CLI_EXIT_OK;

    if (config_reference_markdown(&out) < 0) {
        fprintf(stderr, "kubemq-kinesis: reference too large\n");
        rc = CLI_EXIT_FAIL;
    } else {
        fwrite(out.data, 1, out.len, stdout);
    }
    buf_free(&out);
    return rc;
}

/* Every problem, one line each: plain lines for --check (a person reads
 * them), log lines otherwise (a log collector does). */
static void report(const struct errs *errs, int check)
{
    const char *p = buf_str(&errs->text);

    while (*p) {
        size_t n = strcspn(p, "\n");
        if (check) {
            fprintf(stderr, "%.*s\n", (int)n, p);
        } else {
            log_error(NULL, "%.*s", (int)n, p);
        }
        p += n + (p[n] == '\n');
    }
    if (check) {
        fprintf(stderr, "config invalid: %d problem%s\n", errs->count, errs->count == 1 ? "" : "s");
    }
}

/* The HTTP API reads the service through these (the service sits below
 * the API and does not know it). */
static int api_ready(void *ctx, struct buf *why)
{
    return binding_service_ready(ctx, why);
}

static int api_bindings(void *ctx, struct buf *out)
{
    return binding_service_bindings_json(ctx, out);
}

static int api_stats(void *ctx, struct buf *out)
{
    return binding_service_stats_json(ctx, out);
}

static int api_request(void *ctx, const char *binding, const char *payload, size_t len,
                       api_reply_fn done, void *done_ctx, char *err, size_t errlen)
{
    int rc = binding_service_request(ctx, binding, payload, len, done, done_ctx, err, errlen);

    return rc == BINDING_SERVICE_NO_BINDING ? API_REQUEST_NO_BINDING : rc;
}

static void *http_start(struct binding_service *svc, struct loop *loop,
                        const struct binding_service_http_options *o, char *err, size_t errlen)
{
    struct api_options ao;
    struct api_provider p = {svc, api_ready, api_bindings, api_stats, api_request};

    memset(&ao, 0, sizeof(ao));
    ao.address = o->address;
    ao.port = (long)o->port;
    ao.enable_request = o->enable_request;
    ao.metrics = binding_service_metrics(svc);
    return api_start(loop, &ao, &p, err, errlen);
}

static void http_stop(void *server)
{
    api_stop(server);
}

static const struct binding_service_http http = {http_start, http_stop};

int cli_run(int argc, char **argv)
{
    struct run_args a;
    struct config c;
    struct errs errs;
    int rc;

    rc = parse_args(argc, argv, &a);
    if (rc != 0) {
        return rc;
    }
    if (a.help) {
        fputs(usage_text, stdout);
        return CLI_EXIT_OK;
    }
    if (a.version) {
        printf("kubemq-kinesis %s\n", KK_VERSION);
        return CLI_EXIT_OK;
    }
    if (a.print_reference) {
        return print_reference();
    }
    log_setup(a.level, a.format);

    errs_init(&errs);
    if (config_load(&c, a.config, &errs) < 0) {
        report(&errs, a.check);
        errs_free(&errs);
        return CLI_EXIT_CONFIG;
    }
    errs_free(&errs);
    if (!a.level_given && c.log_level >= 0) {
        log_setup((enum log_level)c.log_level, a.format);
    }
    config_log(&c);
    if (a.check) {
        printf("config OK: %zu bindings\n", c.n_bindings);
        config_free(&c);
        return CLI_EXIT_OK;
    }
    log_info(NULL, "config %s: %zu bindings loaded", c.source_path, c.n_bindings);
    rc = binding_service_run(&c, a.config, a.level_given ? (int)a.level : -1, &http);
    config_free(&c);
    return rc;
}
