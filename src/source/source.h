/* source.h - KubeMQ sources: what a binding takes its requests from.
 *
 * A source kind is a table entry: canonical name, accepted spellings, the
 * settings table that parses a binding's `source.properties` into struct
 * source_options, and a small table of functions (struct source_ops) for
 * what differs by kind: how messages come in (subscription or queue
 * transaction) and how they are answered (SendResponse, an event on the
 * response channel, ack / requeue / dead letter).
 *
 * A running source = `sources` KubeMQ clients (one connection each) on the
 * engine loop. Requests are counted against the binding's `concurrency`:
 * up to that many run at once; subscription kinds hold the rest in a
 * bounded FIFO (`max_pending` messages, `max_pending_bytes`), so a burst is
 * absorbed and the broker's stream never stalls (the broker drops messages
 * from a subscription that stops reading). When the FIFO is full, queries
 * and commands are answered at once with an over-capacity error, events
 * are dropped (counted and logged), and an events-store subscription
 * pauses and resumes later from the first message it did not take. Queue
 * sources pull only as many messages as there are free slots. An
 * events-store source with a `checkpoint` resumes after a restart where the
 * last run stopped (source_checkpoint.h).
 *
 * Everything runs on the loop thread. */
#ifndef KK_SOURCE_SOURCE_H
#define KK_SOURCE_SOURCE_H

#include "base/buf.h"
#include "base/errs.h"
#include "base/loop.h"
#include "base/metrics.h"
#include "base/settings.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct kubemq_client;
struct kubemq_subscription;
struct kubemq_request;
struct kubemq_queue_txn;
struct kubemq_queue_message;
struct source_seen;

struct source_options {
    char *address;   /* "host:port" or "[v6]:port"; built from host+port when given so */
    char *host;      /* the host part of address */
    long long port;  /* the port part of address */
    char *client_id; /* generated "kubemq-kinesis-<hex>" when not given */
    char *auth_token;
    char *channel;
    char *group;
    int auto_reconnect;
    long long reconnect_interval_seconds;
    long long max_reconnects; /* 0 = unlimited */
    long long sources;        /* parallel KubeMQ connections */
    long long concurrency;    /* in-flight requests per binding */
    long long max_pending;    /* subscription kinds: requests waiting for a slot */
    long long max_pending_bytes;
    int do_not_parse_payload;
    int tls;
    char *ca_file;
    char *cert_file;
    char *key_file;
    long long drain_timeout_seconds;
    /* events, events-store, queue */
    char *response_channel; /* "": replies are not published */
    /* events-store */
    int start_position; /* index into "new_only|first|last|sequence|time|time_delta" */
    long long start_sequence;
    char *start_time; /* RFC 3339 */
    long long start_time_delta_seconds;
    long long start_value; /* derived: what KubeMQ takes for the position */
    int checkpoint;        /* enum source_checkpoint_kind */
    char
        *checkpoint_channel; /* checkpoint: kubemq; derived "<channel>.checkpoint" when not given */
    char *checkpoint_file;   /* checkpoint: file */
    long long checkpoint_interval_ms;
    /* queue */
    long long batch_size;
    long long wait_timeout;
    long long visibility_seconds;
    long long max_requeue;
    char *dead_letter_queue;
};

/* start_position indexes. */
enum source_start_position {
    SOURCE_START_NEW_ONLY,
    SOURCE_START_FIRST,
    SOURCE_START_LAST,
    SOURCE_START_SEQUENCE,
    SOURCE_START_TIME,
    SOURCE_START_TIME_DELTA,
};

/* checkpoint indexes: where an events-store binding keeps its position
 * across restarts (source_checkpoint.h). */
enum source_checkpoint_kind {
    SOURCE_CHECKPOINT_OFF,
    SOURCE_CHECKPOINT_KUBEMQ,
    SOURCE_CHECKPOINT_FILE,
};

struct source;
struct source_conn;
struct source_request;
struct source_ops;
struct source_checkpoint;

struct source_kind {
    const char *kind;           /* canonical: "kubemq.query" */
    const char *const *aliases; /* NULL-terminated */
    const struct settings_entry *settings;
    const char *description; /* one line for the settings reference */
    const struct source_ops *ops;
};

/* The kind for a canonical name or alias; NULL when unknown. */
const struct source_kind *source_kind_find(const char *name);
/* All kinds, NULL-terminated. */
const struct source_kind *const *source_kinds(void);

/* Parse and check props (NULL = none) into o: every problem is one line
 * "<where>: <key>: <rule>" in errs. Returns 0 when none was added. o must
 * be zeroed; free it with source_options_free either way. */
int source_options_load(const struct source_kind *k, const json_t *props, struct source_options *o,
                        const char *where, struct errs *errs);
void source_options_free(const struct source_kind *k, struct source_options *o);

/* ---- running sources ---------------------------------------------------- */

/* A request taken from KubeMQ, owned by the binding until source_reply(). */
struct source_request {
    const unsigned char *body;
    size_t len;
    /* The rest is the source layer's. */
    struct source_conn *conn;
    struct kubemq_request *msg;                   /* subscription kinds */
    struct kubemq_queue_txn *txn;                 /* queue: the transaction */
    const struct kubemq_queue_message *qmsg;      /* queue: its message */
    uint64_t taken_ms;                            /* when it came (loop time) */
    int running;                                  /* holds a concurrency slot */
    struct source_request *next;                  /* FIFO, or the connection's open pulls */
    struct source_request *live_prev, *live_next; /* every request of the source */
};

/* Runs on the loop; must lead to exactly one source_reply(r), now or later. */
typedef void (*source_handler_fn)(void *ctx, struct source_request *r);

/* Counters a binding shows in /metrics; any may be NULL. */
struct source_metrics {
    struct metrics_series *dropped;  /* events dropped at a full FIFO */
    struct metrics_series *rejected; /* queries/commands answered "over capacity" */
    struct metrics_series *expired;  /* queries/commands whose timeout passed in the FIFO */
    struct metrics_series *pending;  /* gauge: requests in the FIFO */
    /* events-store: gauges of the sequence last taken and the checkpoint
     * last written (their difference is the work a crash would repeat) */
    struct metrics_series *received_sequence;
    struct metrics_series *checkpoint_sequence;
};

/* Create the clients and start the intake (connections open in the
 * background: a broker that is down now only delays readiness). o and
 * binding are copied; metrics (may be NULL) too. seen: NULL, or the ids
 * shared with the source this one replaces (a reference is taken; queues
 * ignore it). NULL with the reason in err. */
struct source *source_create(const struct source_kind *k, const struct source_options *o,
                             const char *binding, struct loop *loop, source_handler_fn handler,
                             void *ctx, const struct source_metrics *metrics,
                             struct source_seen *seen, char *err, size_t errlen);
/* From now on, share the ids of the requests taken with the source that
 * will replace this one (create it with the same seen); NULL: stop. */
void source_share_seen(struct source *s, struct source_seen *seen);

/* Answer r and free it. Queries carry body (the reply envelope) with
 * Executed = !is_error and, on error, the KubeMQ-level Error; commands
 * carry Executed and Error only (body ignored). Events publish body to
 * the response channel, if any. Queue messages are acknowledged on
 * success, otherwise returned to the queue or dead-lettered. */
void source_reply(struct source_request *r, int is_error, const char *error_text, const void *body,
                  size_t len);

/* 1 when every connection takes requests; 0 with the first reason in why. */
int source_ready(struct source *s, struct buf *why);
/* Stop taking requests: the subscriptions end (the broker routes to the
 * group's other members); requests already taken still run. */
void source_close(struct source *s);
/* Requests taken and not yet answered (running or waiting). */
size_t source_pending(const struct source *s);
/* 1 while, with nothing pending, the source still writes what a stop must
 * wait for (an events-store checkpoint); a drain waits for it too. */
int source_flushing(const struct source *s);
/* After close and drain: requests still waiting are answered with an
 * error and later deliveries too; nothing more reaches the handler. */
void source_abandon(struct source *s, const char *why);
/* Let go of the clients (what they still have to write goes out) and
 * free. Requests the binding holds must have been answered. Accepts NULL. */
void source_destroy(struct source *s);

/* "127.0.0.1:50000/query.aws.kinesis" */
const char *source_connection(const struct source *s);
/* The group subscribed with: the configured one, generated when sources
 * > 1 and none was given, or "". */
const char *source_group(const struct source *s);

#endif
