/* send.c - the send subcommand: one KubeMQ query or command, body on stdin, reply on stdout. */
#include "cli/cli.h"

#include "base/buf.h"
#include "base/log.h"
#include "kubemq/kubemq_client.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEND_DEFAULT_TIMEOUT_MS 10000

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kubemq-kinesis send --address HOST:PORT --channel CHANNEL [options] < body\n"
            "\n"
            "Sends stdin as a KubeMQ query (default) or command and prints the reply:\n"
            "a query's reply body, or {\"executed\":...,\"error\":...} for a command.\n"
            "\n"
            "  --address HOST:PORT   KubeMQ gRPC address (required)\n"
            "  --channel NAME        channel (required)\n"
            "  --command             send a command instead of a query\n"
            "  --timeout-ms N        KubeMQ request timeout (default %d)\n"
            "  --metadata TEXT       request metadata\n"
            "  --client-id ID        client id (default kubemq-kinesis-send)\n"
            "  --auth-token TOKEN    sent as the authorization metadata\n"
            "  --auth-token-file F   the same, read from file F (kept out of the process list)\n"
            "  --tls                 use TLS (--ca-file, --cert-file, --key-file)\n"
            "\n"
            "Exit status: 0 on a reply, 1 on a KubeMQ or gRPC error, 2 on a usage error.\n",
            SEND_DEFAULT_TIMEOUT_MS);
}

static int parse_timeout(const char *s, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v <= 0 || v > 24L * 3600 * 1000) {
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int write_all(const void *p, size_t n)
{
    return fwrite(p, 1, n, stdout) == n && fflush(stdout) == 0 ? 0 : -1;
}

struct send_args {
    struct kubemq_client_opts o;
    const char *channel;
    const char *metadata;
    enum kubemq_kind kind;
    int timeout_ms;
    struct buf token; /* --auth-token-file's contents */
};

/* The token of --auth-token-file, surrounding white space dropped. */
static int read_token(struct send_args *a, const char *path)
{
    char err[512];
    size_t start = 0, end;

    buf_init(&a->token, 64 * 1024);
    if (buf_append_file(&a->token, path, err, sizeof(err)) < 0) {
        fprintf(stderr, "kubemq-kinesis send: --auth-token-file: %s\n", err);
        return -1;
    }
    end = a->token.len;
    while (start < end && isspace((unsigned char)a->token.data[start])) {
        start++;
    }
    while (end > start && isspace((unsigned char)a->token.data[end - 1])) {
        end--;
    }
    if (start == end) {
        fprintf(stderr, "kubemq-kinesis send: --auth-token-file: %s is empty\n", path);
        return -1;
    }
    a->token.data[end] = '\0';
    a->o.auth_token = a->token.data + start;
    return 0;
}

static void free_args(struct send_args *a)
{
    if (a->token.data) {
        explicit_bzero(a->token.data, a->token.cap);
    }
    buf_free(&a->token);
}

/* -1 to go on, else the exit status to return at once. */
static int parse_args(int argc, char **argv, struct send_args *a)
{
    static const struct option longopts[] = {
        {"address", required_argument, NULL, 'a'},
        {"channel", required_argument, NULL, 'c'},
        {"command", no_argument, NULL, 'C'},
        {"timeout-ms", required_argument, NULL, 't'},
        {"metadata", required_argument, NULL, 'm'},
        {"client-id", required_argument, NULL, 'i'},
        {"auth-token", required_argument, NULL, 'T'},
        {"auth-token-file", required_argument, NULL, 'F'},
        {"tls", no_argument, NULL, 'S'},
        {"ca-file", required_argument, NULL, 'A'},
        {"cert-file", required_argument, NULL, 'E'},
        {"key-file", required_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;

    memset(a, 0, sizeof(*a));
    kubemq_client_opts_init(&a->o);
    a->o.client_id = "kubemq-kinesis-send";
    a->o.ping_interval_ms = -1;
    a->kind = KUBEMQ_QUERY;
    a->timeout_ms = SEND_DEFAULT_TIMEOUT_MS;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'a':
            a->o.address = optarg;
            break;
        case 'c':
            a->channel = optarg;
            break;
        case 'C':
            a->kind = KUBEMQ_COMMAND;
            break;
        case 't':
            if (parse_timeout(optarg, &a->timeout_ms) < 0) {
                fprintf(stderr,
                        "kubemq-kinesis send: --timeout-ms: not a positive number of "
                        "milliseconds (max one day): %s\n",
                        optarg);
                return CLI_EXIT_CONFIG;
            }
            break;
        case 'm':
            a->metadata = optarg;
            break;
        case 'i':
            a->o.client_id = optarg;
            break;
        case 'T':
            a->o.auth_token = optarg;
            break;
        case 'F':
            if (a->token.data) {
                fprintf(stderr, "kubemq-kinesis send: --auth-token-file given twice\n");
                return CLI_EXIT_CONFIG;
            }
            if (read_token(a, optarg) < 0) {
                return CLI_EXIT_CONFIG;
            }
            break;
        case 'S':
            a->o.tls = 1;
            break;
        case 'A':
            a->o.ca_file = optarg;
            break;
        case 'E':
            a->o.cert_file = optarg;
            break;
        case 'K':
            a->o.key_file = optarg;
            break;
        case 'h':
            usage(stdout);
            return CLI_EXIT_OK;
        default:
            usage(stderr);
            return CLI_EXIT_CONFIG;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kubemq-kinesis send: unexpected argument: %s\n", argv[optind]);
        usage(stderr);
        return CLI_EXIT_CONFIG;
    }
    if (!a->o.address || !a->o.address[0] || !a->channel || !a->channel[0] || !a->o.client_id[0]) {
        fprintf(stderr, "kubemq-kinesis send: --address and --channel are required "
                        "(and --client-id must not be empty)\n");
        usage(stderr);
        return CLI_EXIT_CONFIG;
    }
    return -1;
}

/* A query's reply body as it is; a command's outcome as one JSON line. */
static int print_response(enum kubemq_kind kind, const struct kubemq_response *r)
{
    struct buf out = BUF_INIT(4096);
    int rc;

    if (kind != KUBEMQ_COMMAND) {
        rc = write_all(r->body, r->body_len);
        if (r->error[0]) {
            fprintf(stderr, "kubemq-kinesis send: reply error: %s\n", r->error);
        }
        return rc;
    }
    buf_appendf(&out, "{\"executed\":%s,\"error\":", r->executed ? "true" : "false");
    if (buf_append_json_str(&out, r->error, strlen(r->error)) < 0 ||
        buf_append_str(&out, "}\n") < 0) {
        /* an error text over 4 KiB: cut it rather than fail the reply */
        buf_reset(&out);
        buf_appendf(&out, "{\"executed\":%s,\"error\":\"(error text too long)\"}\n",
                    r->executed ? "true" : "false");
    }
    rc = write_all(out.data, out.len);
    buf_free(&out);
    return rc;
}

/* One request on a loop of our own. */
struct send_run {
    struct loop *loop;
    enum kubemq_kind kind;
    int done;
    int rc;
};

static void on_reply(void *ctx, const struct kubemq_response *r, int status, const char *err)
{
    struct send_run *sr = ctx;

    sr->done = 1;
    if (!r) {
        fprintf(stderr, "kubemq-kinesis send: %s\n", err ? err : "the call failed");
        sr->rc = CLI_EXIT_FAIL;
        return;
    }
    sr->rc = print_response(sr->kind, r) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

/* Run the loop until *flag, or the deadline: 0, or -1. */
static int run_until(struct loop *l, const int *flag, uint64_t deadline)
{
    while (!*flag) {
        uint64_t now = loop_now_ms(l);

        if (now >= deadline || loop_run_once(l, (int)(deadline - now)) < 0) {
            return -1;
        }
    }
    return 0;
}

int cli_send(int argc, char **argv)
{
    struct send_args a;
    struct kubemq_client *c = NULL;
    struct send_run sr = {0};
    struct buf body = BUF_INIT(KUBEMQ_MAX_MESSAGE);
    int rc;
    char err[1024];

    rc = parse_args(argc, argv, &a);
    if (rc >= 0) {
        free_args(&a);
        return rc;
    }
    rc = CLI_EXIT_FAIL;
    log_setup(LOG_LEVEL_ERROR, LOG_FORMAT_TEXT);
    if (cli_read_stdin(&body, err, sizeof(err)) < 0) {
        fprintf(stderr, "kubemq-kinesis send: %s\n", err);
        goto done;
    }
    sr.loop = loop_create(err, sizeof(err));
    if (!sr.loop) {
        fprintf(stderr, "kubemq-kinesis send: %s\n", err);
        goto done;
    }
    c = kubemq_client_create(sr.loop, &a.o, err, sizeof(err));
    if (!c) {
        fprintf(stderr, "kubemq-kinesis send: %s\n", err);
        goto done;
    }
    /* A call made while the first connection attempt runs waits for it. */
    sr.kind = a.kind;
    if (!kubemq_send_request(c, a.kind, a.channel, body.data, body.len, a.metadata, a.timeout_ms,
                             on_reply, &sr)) {
        fprintf(stderr, "kubemq-kinesis send: out of memory\n");
        goto done;
    }
    /* The call has its own deadline; this one only guards the loop. */
    if (run_until(sr.loop, &sr.done, loop_now_ms(sr.loop) + (uint64_t)a.timeout_ms + 5000) < 0) {
        fprintf(stderr, "kubemq-kinesis send: no reply within %d ms\n", a.timeout_ms);
        goto done;
    }
    rc = sr.rc;
done:
    kubemq_client_destroy(c);
    if (sr.loop) {
        loop_run_until_idle(sr.loop, 2000);
    }
    loop_destroy(sr.loop);
    buf_free(&body);
    free_args(&a);
    return rc;
}
