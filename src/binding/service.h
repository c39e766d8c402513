/* service.h - the daemon: every binding of a config, running.
 *
 * binding_service_run() runs the one event loop on the calling thread:
 * the bindings (sources, middleware, targets), the HTTP API and the
 * signals (a signalfd: SIGINT, SIGTERM and SIGHUP are blocked first, so
 * no thread of a library takes them). Signals:
 *   SIGTERM/SIGINT  stop taking requests, answer the ones taken (bounded by
 *                   the largest drain_timeout_seconds), stop, exit 0; a
 *                   second one during the drain exits at once with 1.
 *   SIGHUP          load the config again: invalid -> every problem logged,
 *                   the running config stays; valid -> unchanged bindings
 *                   keep running, new/changed ones start, then the old
 *                   ones drain and stop; the API restarts when its
 *                   settings changed.
 *
 * The HTTP API lives above this layer: the caller hands in how to start
 * and stop it, and the API reads the service through the functions below
 * (on the loop thread). */
#ifndef KK_BINDING_SERVICE_H
#define KK_BINDING_SERVICE_H

#include "base/buf.h"
#include "base/loop.h"
#include "base/metrics.h"
#include "binding/binding.h"
#include "binding/config.h"

#include <stddef.h>

struct binding_service;

struct binding_service_http_options {
    const char *address;
    long long port; /* > 0 */
    int enable_request;
};

struct binding_service_http {
    /* Start serving svc on loop; NULL with the reason in err. */
    void *(*start)(struct binding_service *svc, struct loop *loop,
                   const struct binding_service_http_options *o, char *err, size_t errlen);
    /* Stop and free what start returned. */
    void (*stop)(void *server);
};

/* Run until SIGTERM/SIGINT; returns the process exit status. config_path
 * is what c was loaded from (NULL: the CONFIG variable or the default
 * file), loaded again on SIGHUP. cli_log_level: the --log-level given on
 * the command line, or -1; without it a reload applies the new logLevel.
 * http NULL: no API whatever apiPort says. */
int binding_service_run(const struct config *c, const char *config_path, int cli_log_level,
                        const struct binding_service_http *http);

/* For the API. 1 when every binding is ready, else 0 with the reason. */
int binding_service_ready(struct binding_service *svc, struct buf *why);
/* The JSON array of binding status objects (secrets redacted). */
int binding_service_bindings_json(struct binding_service *svc, struct buf *out);
#define BINDING_SERVICE_NO_BINDING (-2)
/* Run payload through the named binding: 0 and done(ctx, reply) runs once
 * later (see binding_request), BINDING_SERVICE_NO_BINDING, or -1 with the
 * reason in err (stopping). */
int binding_service_request(struct binding_service *svc, const char *binding, const char *payload,
                            size_t len, binding_reply_fn done, void *ctx, char *err, size_t errlen);
/* The registry behind /metrics. */
struct metrics_registry *binding_service_metrics(struct binding_service *svc);
/* The /bindings/stats array (binding_metrics_stats_json). */
int binding_service_stats_json(struct binding_service *svc, struct buf *out);

#endif
