/* binding.h - one binding running: source + middleware chain + target.
 *
 * A request taken by the source is parsed into an envelope on the engine
 * loop, run through the middleware chain to the target, and the reply
 * envelope goes back through the source. A body that is not a valid
 * envelope is answered at once with an error reply, never dropped.
 *
 * Everything runs on the loop thread. */
#ifndef KK_BINDING_BINDING_H
#define KK_BINDING_BINDING_H

#include "base/buf.h"
#include "base/loop.h"
#include "binding/binding_metrics.h"
#include "binding/config.h"

#include <stddef.h>

struct binding;
struct source_seen;

/* Build and start cb (copied: the config may be freed afterwards) on
 * loop. metrics: the set its series register in (and its target's, in the
 * set's registry); NULL: none. seen: NULL, or shared with the binding this
 * one replaces (binding_share_seen). NULL with the reason in err. */
struct binding *binding_create(const struct config_binding *cb, struct loop *loop,
                               struct binding_metrics_set *metrics, struct source_seen *seen,
                               char *err, size_t errlen);
/* A reload replaces b: b and its successor (created with the same seen)
 * take each request id once between them; NULL ends that. */
void binding_share_seen(struct binding *b, struct source_seen *seen);
/* Stop, after the caller drained it as far as it would wait, and free.
 * Requests still running are answered with an error, now. Accepts NULL. */
void binding_destroy(struct binding *b);

const char *binding_name(const struct binding *b);
/* Same name and the same configuration (kinds and every property). */
int binding_same_config(const struct binding *b, const struct config_binding *cb);
/* Whether b subscribes where cb would: the same source kind, address and
 * channel. */
int binding_same_source(const struct binding *b, const struct config_binding *cb);

/* 1 when the subscriptions are open and the target is initialised; 0 with
 * the reason ("binding b1: source 127.0.0.1:50000/q not subscribed"). */
int binding_ready(struct binding *b, struct buf *why);
/* Append the /bindings status object, secrets redacted. */
int binding_status_json(struct binding *b, struct buf *out);

/* Stop taking requests (the subscriptions end); the ones taken run on. */
void binding_stop_intake(struct binding *b);
/* Requests taken and not answered yet (KubeMQ and API). */
size_t binding_pending(struct binding *b);
/* 1 while, with nothing pending, the binding still writes what a stop must
 * not lose (an events-store checkpoint); a drain waits for it too. */
int binding_flushing(struct binding *b);
/* The drain bound chosen for this binding (source drain_timeout_seconds). */
long long binding_drain_timeout_ms(const struct binding *b);

/* The reply envelope JSON of binding_request (valid during the call). */
typedef void (*binding_reply_fn)(void *ctx, const char *reply_json, size_t len);
/* Run payload (a request envelope, as a KubeMQ body; copied) through the
 * chain: 0, and done(ctx, ...) runs once later on the loop (never inside
 * this call; at the latest when b is destroyed), or -1 with the reason in
 * err when the binding is stopping or out of memory. */
int binding_request(struct binding *b, const char *payload, size_t len, binding_reply_fn done,
                    void *ctx, char *err, size_t errlen);

#endif
