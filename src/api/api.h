/* api.h - the HTTP API: health, readiness, metrics, binding status and
 * (when enabled by config) running one request through a binding.
 *
 *   GET  /health            200 "ok"
 *   GET  /ready             200 "ready", or 503 with the reason
 *   GET  /metrics           Prometheus text 0.0.4: the registry + process_*
 *   GET  /bindings          JSON array of binding status objects
 *   GET  /bindings/stats    JSON array of per-binding counters
 *   POST /bindings/request  {"binding":"<name>","payload":<request envelope>}
 *                           -> the reply envelope (only with enable_request)
 *
 * Errors are JSON {"error":"..."}: 400 unparsable body, 404 unknown route
 * or binding (and the request route when disabled), 405 wrong method,
 * 413 body past the cap, 500/503 when the provider fails. HEAD works
 * wherever GET does.
 *
 * The server runs on the daemon's loop (libmicrohttpd with its epoll fd
 * watched by the loop, no threads of its own). A POST /bindings/request
 * suspends its connection until the binding answers, so it never holds
 * up /health or /ready. It reads everything through a provider, so it
 * knows nothing of bindings. */
#ifndef KK_API_API_H
#define KK_API_API_H

#include "base/buf.h"
#include "base/loop.h"
#include "base/metrics.h"

#include <stddef.h>

#define API_DEFAULT_ADDRESS  "0.0.0.0"
#define API_DEFAULT_MAX_BODY ((size_t)100 << 20)
#define API_MAX_CONNECTIONS  64

/* provider->request results besides 0 and -1. */
#define API_REQUEST_NO_BINDING (-2)

/* The answer to provider->request: reply_json is the reply envelope JSON
 * (valid during the call). */
typedef void (*api_reply_fn)(void *done_ctx, const char *reply_json, size_t len);

/* What the server shows. Every callback runs on the loop thread. */
struct api_provider {
    void *ctx;
    /* 1 when every binding is ready; 0 with the reason in why ("binding
     * b1: source not subscribed"), shown as the 503 body. */
    int (*ready)(void *ctx, struct buf *why);
    /* Append a JSON array of status objects, secrets already redacted;
     * "[]" (or nothing) when there is no binding. Served verbatim: the
     * API adds nothing. Returns 0, or -1 (500). */
    int (*bindings_json)(void *ctx, struct buf *out);
    /* Append the JSON array of per-binding counters, served verbatim like
     * bindings_json ("[]" when it appends nothing). May be NULL: "[]". */
    int (*stats_json)(void *ctx, struct buf *out);
    /* Start running payload (a request envelope, as a KubeMQ message
     * body; len 0 when the caller sent none) through the binding's whole
     * middleware chain and target. Returns 0 when started: done(done_ctx,
     * ...) then runs exactly once, later, on the loop (never inside this
     * call); API_REQUEST_NO_BINDING (404 "no such binding, <name>"); or -1
     * with the reason in err when it cannot run now (503), e.g. while
     * stopping. A failed Kinesis call is a reply with is_error set.
     * binding and payload are valid during the call only. done_ctx stays
     * valid until done runs, even when the client left or the server was
     * stopped meanwhile (the reply is then dropped), so done must run
     * even then. NULL when enable_request is off. */
    int (*request)(void *ctx, const char *binding, const char *payload, size_t len,
                   api_reply_fn done, void *done_ctx, char *err, size_t errlen);
};

struct api_options {
    const char *address;              /* numeric IPv4/IPv6; NULL: API_DEFAULT_ADDRESS */
    long port;                        /* 0: a free port (tests), see api_port() */
    int enable_request;               /* POST /bindings/request (config apiEnableRequest) */
    struct metrics_registry *metrics; /* NULL: /metrics has process_* only */
    size_t max_body;                  /* 0: API_DEFAULT_MAX_BODY */
    unsigned idle_timeout_s;          /* an idle connection is closed after it; 0: 60 */
};

struct api_server;

/* Listen and serve on loop (call it, and api_stop, on the loop's thread).
 * The provider is copied; its ctx and the registry must outlive the
 * server. Returns NULL with the reason in err, e.g. "cannot listen on
 * 127.0.0.1:8080: Address already in use". */
struct api_server *api_start(struct loop *loop, const struct api_options *o,
                             const struct api_provider *p, char *err, size_t errlen);
/* Close the listener and every connection, without waiting for the
 * provider. A provider->request still running keeps its done callback
 * valid: it runs later and is dropped. Not from inside a provider
 * callback (it runs inside libmicrohttpd). Accepts NULL. */
void api_stop(struct api_server *s);
/* The port actually listened on. */
long api_port(const struct api_server *s);

#endif
