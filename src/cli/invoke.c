/* invoke.c - `kubemq-kinesis invoke`: one request envelope from stdin
 * through one binding's middleware and target, the reply envelope on
 * stdout. No broker. */
#include "cli/cli.h"

#include "base/buf.h"
#include "base/errs.h"
#include "base/log.h"
#include "base/loop.h"
#include "binding/config.h"
#include "binding/middleware.h"
#include "kinesis/target.h"
#include "message/envelope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct invoke {
    struct loop *loop;
    int finished;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kubemq-kinesis invoke --config FILE --binding NAME [--log-level LEVEL]\n"
            "  reads one request envelope ({\"metadata\":{...},\"data\":...}) on stdin,\n"
            "  runs it through the binding's middleware and target, prints the reply envelope.\n");
}

static void on_done(void *ctx)
{
    struct invoke *iv = ctx;

    iv->finished = 1;
    loop_stop(iv->loop);
}

static int print_reply(const struct envelope_reply *reply)
{
    struct buf out = BUF_INIT((size_t)256 << 20);
    int rc = 0;

    if (envelope_reply_serialize(reply, &out) < 0 || buf_append_char(&out, '\n') < 0 ||
        fwrite(out.data, 1, out.len, stdout) != out.len || fflush(stdout) != 0) {
        fprintf(stderr, "kubemq-kinesis invoke: cannot write the reply\n");
        rc = -1;
    }
    buf_free(&out);
    return rc;
}

struct invoke_args {
    const char *config_path;
    const char *binding;
    enum log_level level;
};

/* -1 to go on, else the exit status to return at once. */
static int parse_args(int argc, char **argv, struct invoke_args *a)
{
    int i;

    memset(a, 0, sizeof(*a));
    a->level = LOG_LEVEL_ERROR;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            a->config_path = argv[++i];
        } else if (strcmp(argv[i], "--binding") == 0 && i + 1 < argc) {
            a->binding = argv[++i];
        } else if (strcmp(argv[i], "--log-level") == 0 && i + 1 < argc) {
            if (log_level_parse(argv[++i], &a->level) < 0) {
                fprintf(stderr, "kubemq-kinesis invoke: --log-level: must be error, warn, info "
                                "or debug\n");
                return CLI_EXIT_CONFIG;
            }
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return CLI_EXIT_OK;
        } else {
            fprintf(stderr, "kubemq-kinesis invoke: unknown or incomplete argument \"%s\"\n",
                    argv[i]);
            usage(stderr);
            return CLI_EXIT_CONFIG;
        }
    }
    if (!a->binding) {
        fprintf(stderr, "kubemq-kinesis invoke: --binding NAME is required\n");
        usage(stderr);
        return CLI_EXIT_CONFIG;
    }
    return -1;
}

static void no_such_binding(const struct config *cfg, const char *name)
{
    size_t j;

    fprintf(stderr, "kubemq-kinesis invoke: --binding: no binding named \"%s\" in %s (have:", name,
            cfg->source_path ? cfg->source_path : "the config");
    for (j = 0; j < cfg->n_bindings; j++) {
        fprintf(stderr, "%s %s", j ? "," : "", cfg->bindings[j].name);
    }
    fprintf(stderr, ")\n");
}

/* Read the request on stdin and run it through the chain; every failure
 * ends up in reply, as the daemon would answer it. */
static void run_one(struct loop *loop, struct middleware *mw, int raw, struct envelope_request *req,
                    struct envelope_reply *reply)
{
    struct buf in = BUF_INIT(ENVELOPE_MAX_BODY);
    struct invoke iv = {loop, 0};
    char err[512];

    if (cli_read_stdin(&in, err, sizeof(err)) < 0) {
        envelope_reply_set_error(reply, "request: %s", err);
    } else if (envelope_request_parse(req, buf_str(&in), in.len, raw, err, sizeof(err)) < 0) {
        envelope_reply_set_error(reply, "invalid request format, %s", err);
    } else {
        buf_free(&in);
        middleware_execute(mw, req, reply, on_done, &iv);
        /* done may already have run (a request refused before any I/O). */
        if (!iv.finished && loop_run(loop) < 0) {
            envelope_reply_set_error(reply, "invoke: event loop failed");
        }
    }
    buf_free(&in);
}

int cli_invoke(int argc, char **argv)
{
    struct invoke_args a;
    struct config cfg;
    struct errs errs;
    struct loop *loop = NULL;
    void *instance = NULL;
    struct middleware *mw = NULL;
    const struct config_binding *b = NULL;
    struct envelope_request req;
    struct envelope_reply reply;
    char err[512], where[300];
    int rc, loaded = 0;

    rc = parse_args(argc, argv, &a);
    if (rc >= 0) {
        return rc;
    }
    rc = CLI_EXIT_CONFIG;
    log_setup(a.level, LOG_FORMAT_TEXT);
    envelope_request_init(&req);
    envelope_reply_init(&reply);
    errs_init(&errs);
    memset(&cfg, 0, sizeof(cfg));

    if (config_load(&cfg, a.config_path, &errs) < 0) {
        fprintf(stderr, "%s", buf_str(&errs.text));
        goto out;
    }
    loaded = 1;
    b = config_find_binding(&cfg, a.binding);
    if (!b) {
        no_such_binding(&cfg, a.binding);
        goto out;
    }
    loop = loop_create(err, sizeof(err));
    if (!loop) {
        fprintf(stderr, "kubemq-kinesis invoke: %s\n", err);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    snprintf(where, sizeof(where), "binding %s: target", b->name);
    instance = b->target_kind->create(loop, b->target.props, b->name, where, &errs);
    if (!instance) {
        fprintf(stderr, "%s", errs.count ? buf_str(&errs.text) : "target: could not start\n");
        goto out;
    }
    /* The binding's own chain: metadata defaults, log, retry, rate limit. */
    mw = middleware_create(loop, &b->middleware, b->name, b->target_kind, instance, NULL, err,
                           sizeof(err));
    if (!mw) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    run_one(loop, mw, b->source_opts.do_not_parse_payload, &req, &reply);
    rc = print_reply(&reply) < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;

out:
    middleware_destroy(mw); /* before the target it calls */
    if (instance) {
        b->target_kind->destroy(instance);
    }
    loop_destroy(loop);
    if (loaded) {
        config_free(&cfg);
    }
    errs_free(&errs);
    envelope_request_free(&req);
    envelope_reply_free(&reply);
    return rc;
}
