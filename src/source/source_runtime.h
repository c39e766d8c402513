/* source_runtime.h - a running KubeMQ source: query, command, events, events-store, queue.
 *
 * One source instance = `sources` KubeMQ clients (one connection each),
 * each subscribed to the binding's channel and group. Requests are counted
 * against the binding's `concurrency`: at the bound a subscription stops
 * receiving (the broker holds the rest) and a request that was already on
 * its way is parked, one per connection at most, so nothing is queued
 * without bound. Every taken request is handed to the engine loop; the
 * binding answers it with source_reply(), which frees the slot and lets a
 * parked request run or a paused subscription receive again.
 *
 * Threads: the handler runs on the engine loop thread. source_reply() may
 * be called from any thread. The rest is for the service (main thread). */
#ifndef KK_SOURCE_SOURCE_RUNTIME_H
#define KK_SOURCE_SOURCE_RUNTIME_H

#include "base/buf.h"
#include "base/loop.h"
#include "source/source.h"

#include <stddef.h>

struct source;
struct source_conn;
struct source_seen;
struct kubemq_request;

/* A request taken from KubeMQ, owned by the binding until source_reply(). */
struct source_request {
    const unsigned char *body;
    size_t len;
    struct kubemq_request *msg; /* private */
    struct source_conn *conn;   /* private */
    struct source_qworker *qw;  /* private: queues */
};

/* Runs on the loop thread; must lead to exactly one source_reply(r). */
typedef void (*source_handler_fn)(void *ctx, struct source_request *r);

/* Create the clients and subscriptions (the streams open in the
 * background: a broker that is down now only delays readiness). o and
 * binding are copied. seen: NULL, or the ids shared with the source this
 * one replaces (a reference is taken; queues ignore it). NULL with the
 * reason in err. */
struct source *source_create(const struct source_kind *k, const struct source_options *o,
                             const char *binding, struct loop *loop, source_handler_fn handler,
                             void *ctx, struct source_seen *seen, char *err, size_t errlen);
/* From now on, share the ids of the requests taken with the source that
 * will replace this one (create it with the same seen); NULL: stop (once
 * the other one is closed). */
void source_share_seen(struct source *s, struct source_seen *seen);

/* Answer r and free it. Queries carry body (the reply envelope) with
 * Executed = !is_error and, on error, the KubeMQ-level Error; commands
 * carry Executed and Error only (body ignored). Events publish body to
 * the response channel, if any. Queue messages are acknowledged on
 * success, otherwise returned to the queue or dead-lettered (by the
 * source's puller thread, after this returns). */
void source_reply(struct source_request *r, int is_error, const char *error_text, const void *body,
                  size_t len);

/* 1 when every subscription is open (queues: the broker answers); 0 with
 * the first reason in why. */
int source_ready(struct source *s, struct buf *why);
/* Stop taking requests: the subscriptions end (the broker routes to the
 * group's other members); requests already taken still run. */
void source_close(struct source *s);
/* Requests taken and not yet answered (in flight or parked). */
size_t source_pending(struct source *s);
/* After close and drain: requests still parked are answered with an error
 * and later deliveries too; nothing more reaches the handler. */
void source_abandon(struct source *s, const char *why);
/* Destroy the clients (waits for replies being sent). Accepts NULL. */
void source_destroy(struct source *s);

/* "127.0.0.1:50000/query.aws.kinesis" */
const char *source_connection(const struct source *s);
/* The group subscribed with: the configured one, generated when sources
 * > 1 and none was given, or "". */
const char *source_group(const struct source *s);

#endif
