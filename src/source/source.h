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
    const char *description; /* one line for the README */
    const struct source_ops *ops;
};

/* The kind for a canonical name or alias; NULL when unknown. */
const struct source_kind *source_kind_find(const char *name);
/* Kinds named for the future but not built yet (none now). */
int source_kind_is_planned(const char *name);
/* "kubemq.query (also source.kubemq.query, source.query), ..." */
const char *source_kind_names(void);
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

/* What differs by kind. */
struct source_ops {
    /* 1: messages come by subscription (groups apply; without a group
     * every subscriber gets its own copy); 0: pulled from a queue. */
    int subscribes;
    /* Open c's intake: subscribe, or start pulling. */
    int (*start)(struct source_conn *c, char *err, size_t errlen);
    /* Stop taking: the subscription or the waiting pulls end. */
    void (*close)(struct source_conn *c);
    /* 1 when c takes requests (subscribed; queues: the broker answers). */
    int (*ready)(const struct source_conn *c);
    /* Answer r, then source_finish(r) (at once, or once a queue message
     * is settled). is_error with error_text; body is the reply envelope. */
    void (*reply)(struct source_request *r, int is_error, const char *error_text, const void *body,
                  size_t len);
    /* A slot or FIFO room came free: take more (queues pull, a paused
     * events-store stream resumes). May be NULL. */
    void (*room)(struct source_conn *c);
    /* State of the kind beyond the connections (events-store: its
     * checkpoint): set up before they open (-1 with err fails the
     * source), let go before they close. May be NULL. */
    int (*init)(struct source *s, const struct source_options *o, char *err, size_t errlen);
    void (*fini)(struct source *s);
    /* source_share_seen() was called (seen NULL: the sharing ends). May be NULL. */
    void (*share)(struct source *s, struct source_seen *seen);
    /* 1 while the source still writes what a stop must not lose (the
     * last checkpoint). May be NULL. */
    int (*flushing)(const struct source *s);
};

struct source_conn {
    struct source *src;
    size_t index;
    struct kubemq_client *client;
    struct kubemq_subscription *sub; /* subscription kinds */
    int paused;                      /* events-store: refused a message for lack of room */
    /* queues */
    struct source_request *pulls; /* receive transactions waiting for a message */
    size_t npulls;
    size_t ntxns;             /* transactions from the pull to the settlement (<= batch_size) */
    int pull_failing;         /* the last pull failed (logged once) */
    int broker_ok;            /* a pull or a ping was answered */
    struct loop_timer retry;  /* after a failed pull */
    struct loop_defer refill; /* open pulls up to the free slots */
};

struct source {
    const struct source_kind *kind;
    const struct source_ops *ops;
    char *binding;
    char *channel;
    char *group;
    char *response_channel; /* "" when none */
    char *dead_letter_queue;
    int batch_size, wait_timeout, visibility_seconds, max_requeue;
    int broadcast; /* no group configured: every binding gets its own copy */
    char connection[600];
    struct loop *loop;
    source_handler_fn handler;
    void *ctx;
    struct source_metrics metrics;

    size_t bound;     /* concurrency */
    size_t in_flight; /* running (holding a slot), queue pulls included */
    /* Requests taken and waiting for a slot (subscription kinds). */
    struct source_request *fifo_head, *fifo_tail;
    size_t fifo_len, fifo_bytes;
    size_t max_pending, max_pending_bytes;
    struct loop_defer pump;
    uint64_t last_overflow_log_ms;
    uint64_t overflow_unlogged;

    struct source_request *live; /* every request not yet finished */
    int store_start;             /* events-store: enum kubemq_store_start */
    int64_t store_value;

    int closing;
    int abandoned;
    char *abandon_why;
    /* During a reload: ids shared with the binding's other source (see
     * source_seen.h); NULL otherwise. */
    struct source_seen *seen;
    struct source_checkpoint *checkpoint; /* events-store with a checkpoint */

    size_t n;
    struct source_conn *conns;
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

/* ---- for the kinds (source_*.c) ----------------------------------------- */

/* A new request of c, on the source's list (freed with it at the latest).
 * NULL when out of memory. */
struct source_request *source_request_new(struct source_conn *c);
/* Take r off the list and free it with its message and transaction (an
 * unsettled queue message returns to the queue); gives back its slot if
 * it held one. */
void source_finish(struct source_request *r);
/* 1 when a request of len bytes would be admitted now. */
int source_can_admit(const struct source *s, size_t len);
/* A request taken from c (body, len and msg set by the caller): run it in
 * a free slot, else queue it. Returns 0, or -1 when the FIFO is full (the
 * caller decides by kind what that means; r stays the caller's). */
int source_admit(struct source_conn *c, struct source_request *r);
/* Run r now in a slot it holds already (queue pulls: r->running). */
void source_run(struct source_request *r);
/* Take a slot (queue pulls): 0, or -1 when none is free. */
int source_take_slot(struct source *s);
/* 1 while the FIFO is at most half full (a paused kind may take more). */
int source_has_room(const struct source *s);
/* The error reply envelope {"metadata":{},"data":null,"is_error":true,"error":text}. */
int source_error_envelope(const char *text, struct buf *out);
/* Count an overflow and log it, at most once a second per source. */
void source_note_overflow(struct source *s, struct metrics_series *counter, const char *what);

extern const struct source_ops source_query_ops;        /* source_request.c */
extern const struct source_ops source_command_ops;      /* source_request.c */
extern const struct source_ops source_events_ops;       /* source_events.c */
extern const struct source_ops source_events_store_ops; /* source_events.c */
extern const struct source_ops source_queue_ops;        /* source_queue.c */

#endif
