/* kubemq_client.h - a KubeMQ client: gRPC over HTTP/2 (nghttp2) on the engine loop.
 *
 * One client = one TCP (or TLS) connection to one broker address, driven
 * by the caller's loop: non-blocking sockets, names resolved with c-ares,
 * no threads. Every function here is called on the loop thread and every
 * callback runs on it. A callback never runs inside the call that started
 * the operation (not even for an error found at once): it comes from a
 * later loop callback, so callers may start operations while holding
 * their own state half-updated.
 *
 * The connection is opened by kubemq_client_create() and reopened after it
 * is lost (names resolved again each time), with capped exponential backoff.
 * Calls started while it is down fail at once (through their callback)
 * with an UNAVAILABLE error; a call started while a connection attempt is
 * running waits for that attempt (bounded by its own deadline), so a call
 * made right after kubemq_client_create() goes out once connected.
 * Subscriptions are reopened when it is back.
 * Liveness: a KubeMQ Ping call when nothing arrived for ping_interval_ms
 * (never timed HTTP/2 PINGs: the broker sends a client away after a few).
 *
 * Writes made in one loop turn (responses, events, acks) go out together
 * in one write at the end of the turn.
 *
 * The auth token is sent as `authorization` metadata on every call and is
 * never logged. */
#ifndef KK_KUBEMQ_CLIENT_H
#define KK_KUBEMQ_CLIENT_H

#include "base/loop.h"

#include <stddef.h>
#include <stdint.h>

struct kubemq_client;
struct kubemq_subscription;
struct kubemq_call;

/* Values as in KubeMQ's Request.RequestType. */
enum kubemq_kind {
    KUBEMQ_COMMAND = 1,
    KUBEMQ_QUERY = 2,
    KUBEMQ_EVENTS = 3,       /* not a Request type: events subscriptions */
    KUBEMQ_EVENTS_STORE = 4, /* events_store subscriptions */
};

/* Where an events_store subscription starts; values as in KubeMQ's
 * Subscribe.EventsStoreType. */
enum kubemq_store_start {
    KUBEMQ_START_NEW_ONLY = 1,
    KUBEMQ_START_FIRST = 2,
    KUBEMQ_START_LAST = 3,
    KUBEMQ_START_SEQUENCE = 4,   /* value: the sequence (> 0) */
    KUBEMQ_START_TIME = 5,       /* value: Unix time in ns (> 0) */
    KUBEMQ_START_TIME_DELTA = 6, /* value: seconds back from now (> 0) */
};

#define KUBEMQ_MAX_MESSAGE       (100 * 1024 * 1024) /* gRPC send/receive limit */
#define KUBEMQ_PING_INTERVAL_MS  20000
#define KUBEMQ_RESPONSE_DEADLINE 10000 /* ms, SendResponse, SendEvent, Ping */

/* gRPC status codes we name (the numbers are gRPC's). */
#define KUBEMQ_STATUS_OK                 0
#define KUBEMQ_STATUS_CANCELLED          1
#define KUBEMQ_STATUS_DEADLINE_EXCEEDED  4
#define KUBEMQ_STATUS_RESOURCE_EXHAUSTED 8
#define KUBEMQ_STATUS_INTERNAL           13
#define KUBEMQ_STATUS_UNAVAILABLE        14

struct kubemq_client_opts {
    const char *address;    /* "host:port" or "[v6]:port", required */
    const char *client_id;  /* required: the server rejects an empty one */
    const char *auth_token; /* NULL or "": none */
    int tls;                /* 0: plaintext (h2c, prior knowledge) */
    const char *ca_file;    /* PEM roots; NULL: system roots */
    const char *cert_file;  /* client certificate (with key_file) */
    const char *key_file;
    int auto_reconnect;             /* reopen subscriptions that end (default 1) */
    int reconnect_interval_seconds; /* backoff cap; 0: 5 s */
    int max_reconnects;             /* resubscriptions without success; 0: forever */
    int ping_interval_ms;           /* idle Ping; 0: KUBEMQ_PING_INTERVAL_MS, <0: off */
    const char *log_name;           /* binding name on log lines; NULL: none */
};

/* Defaults: everything 0/NULL except auto_reconnect = 1. */
void kubemq_client_opts_init(struct kubemq_client_opts *o);

/* Checks the options and reads the TLS files (their errors come back
 * here, in err), then starts connecting. NULL with the reason in err. */
struct kubemq_client *kubemq_client_create(struct loop *loop, const struct kubemq_client_opts *o,
                                           char *err, size_t errlen);
/* The owner lets go. From now on no callback of c, its calls or its
 * subscriptions runs; subscriptions and queue transactions are cancelled
 * (an unsettled queue message returns to the queue). Responses, events
 * and acks already written still go out: the connection lingers until
 * they are sent (bounded by KUBEMQ_RESPONSE_DEADLINE), then closes and
 * frees itself. The handles of c's calls, subscriptions and queue
 * transactions die with it: do not cancel, close or free them afterwards.
 * Accepts NULL and half-built clients. */
void kubemq_client_destroy(struct kubemq_client *c);
/* How many destroyed clients' connections still linger (see above). They
 * need the loop: run it until this is 0 (at most KUBEMQ_RESPONSE_DEADLINE)
 * before loop_destroy(), or their memory is lost. */
int kubemq_client_lingering(void);
const char *kubemq_client_address(const struct kubemq_client *c);
/* 1 when the connection is up and the broker answered a Ping on it. */
int kubemq_client_ready(const struct kubemq_client *c);

/* Cancel a call: its callback never runs (a stream in flight gets
 * RST_STREAM CANCEL). Accepts NULL. Not after its callback ran. */
void kubemq_call_cancel(struct kubemq_call *call);

/* ---- unary calls -------------------------------------------------------
 * Each returns a handle valid until its callback runs or the call is
 * cancelled, or NULL when out of memory (then nothing runs). err is a
 * one-line text: KubeMQ's own ("Error 301: timeout for request message")
 * as the broker wrote it, otherwise "<STATUS> (n): message". */

struct kubemq_ping_result {
    char host[256];
    char version[64];
    int64_t server_start_time;
    int64_t server_uptime_seconds;
};

/* r is NULL on failure, then status and err say why. */
typedef void (*kubemq_ping_fn)(void *ctx, const struct kubemq_ping_result *r, int status,
                               const char *err);
struct kubemq_call *kubemq_ping(struct kubemq_client *c, int timeout_ms, kubemq_ping_fn done,
                                void *ctx);

/* A reply to kubemq_send_request(). Commands carry executed/error only. */
struct kubemq_response {
    int executed;
    const char *error;    /* "" when none */
    const char *metadata; /* "" when none */
    const unsigned char *body;
    size_t body_len;
    const char *request_id;
    const char *client_id; /* the responder's */
};

/* r (valid during the callback only) is NULL on failure. */
typedef void (*kubemq_response_fn)(void *ctx, const struct kubemq_response *r, int status,
                                   const char *err);
/* SendRequest: a query or command; timeout_ms is Request.Timeout (> 0) and
 * bounds the call. metadata may be NULL. */
struct kubemq_call *kubemq_send_request(struct kubemq_client *c, enum kubemq_kind type,
                                        const char *channel, const void *body, size_t len,
                                        const char *metadata, int timeout_ms,
                                        kubemq_response_fn done, void *ctx);

/* status KUBEMQ_STATUS_OK with err NULL, or the failure. For queue
 * messages an in-band error (IsError) is a failure with status OK. */
typedef void (*kubemq_sent_fn)(void *ctx, int status, const char *err);
/* SendQueueMessage. done NULL: a failure is logged. */
struct kubemq_call *kubemq_send_queue_message(struct kubemq_client *c, const char *channel,
                                              const void *body, size_t len, const char *metadata,
                                              kubemq_sent_fn done, void *ctx);
/* SendEvent (store = 0) or an events_store message (store = 1). done
 * NULL: a failure is logged as "error sending event response: ...". */
struct kubemq_call *kubemq_send_event(struct kubemq_client *c, int store, const char *channel,
                                      const void *body, size_t len, const char *metadata,
                                      kubemq_sent_fn done, void *ctx);

/* ---- subscriptions ----------------------------------------------------- */

/* A request delivered by a subscription. The strings are never NULL. */
struct kubemq_request {
    enum kubemq_kind type;
    const char *id;
    const char *channel;
    const char *reply_channel;
    const char *client_id; /* the requester's */
    const char *metadata;
    const unsigned char *body;
    size_t body_len;
    int32_t timeout_ms;
    uint64_t sequence; /* events_store: the channel's store sequence; else 0 */
    int64_t timestamp; /* events_store: store time, Unix ns; else 0 */
    void *priv;        /* the unpacked message the fields point into */
};

/* Accepts NULL. */
void kubemq_request_free(struct kubemq_request *req);

/* Answer req: SendResponse with the responder's client id, req's id and
 * reply channel. Queries carry body and metadata (NULL: none), commands
 * executed and error_text only. Copies what it needs, so req may be freed
 * at once. A failure is logged as "error sending response: ..."; when the
 * connection is down it fails at once (logged), never waits. */
void kubemq_send_response(struct kubemq_client *c, const struct kubemq_request *req, int executed,
                          const char *error_text, const void *body, size_t len,
                          const char *metadata);

enum kubemq_sub_state {
    KUBEMQ_SUB_SUBSCRIBED = 1, /* the Subscribe is written (again) */
    KUBEMQ_SUB_LOST = 2,       /* the stream ended; a resubscription may follow */
    KUBEMQ_SUB_GAVE_UP = 3,    /* no more resubscriptions */
};

#define KUBEMQ_TAKEN   0
#define KUBEMQ_REFUSED 1

/* on_request takes req: return KUBEMQ_TAKEN (req is the callee's, to free
 * with kubemq_request_free). Only an events_store subscription may return
 * KUBEMQ_REFUSED: req is not taken (the subscription frees it) and the
 * subscription pauses - its stream is cancelled, and
 * kubemq_subscription_resume() opens a new one at req's sequence. */
typedef int (*kubemq_request_fn)(void *ctx, struct kubemq_request *req);
/* text is a one-line description (for the log). */
typedef void (*kubemq_state_fn)(void *ctx, enum kubemq_sub_state state, const char *text);

struct kubemq_sub_opts {
    enum kubemq_kind type; /* which stream: requests (query/command) or events (events/store) */
    const char *channel;
    const char *group; /* NULL or "": every subscriber gets a copy */
    /* events_store only: where the first stream starts. */
    enum kubemq_store_start start;
    int64_t start_value;
    int quiet; /* a short read: "subscribed" is logged at debug, not info */
};

/* Subscribe on channel/group. The stream opens as soon as the connection
 * is up and is reopened when it ends (see the reconnect options). Each
 * events_store stream subscribes with a client id of its own, never used
 * before ("<client_id>-<sequence>-<random>"): the broker keeps a durable
 * position per client id and would ignore the start of a known one. A
 * reopened events_store stream starts at the sequence after the last one
 * taken, so a lost connection neither skips nor repeats messages.
 * on_state may be NULL. NULL with the reason in err. */
struct kubemq_subscription *kubemq_subscribe(struct kubemq_client *c,
                                             const struct kubemq_sub_opts *o,
                                             kubemq_request_fn on_request, kubemq_state_fn on_state,
                                             void *ctx, char *err, size_t errlen);
/* 1 while the stream is open (its Subscribe written) and has not ended. */
int kubemq_subscription_subscribed(const struct kubemq_subscription *s);
/* events_store: the sequence of the last message taken (0: none yet). */
uint64_t kubemq_subscription_last_sequence(const struct kubemq_subscription *s);
/* events_store, after a KUBEMQ_REFUSED: open a new stream at the refused
 * message's sequence. No-op when not paused. */
void kubemq_subscription_resume(struct kubemq_subscription *s);
/* End for good and free: the stream is cancelled (the broker hands the
 * channel's messages to other subscribers), no callback runs any more.
 * Responses to requests taken earlier still go out. Accepts NULL. */
void kubemq_subscription_close(struct kubemq_subscription *s);

/* ---- queues: one StreamQueueMessage transaction per message ------------
 *
 * A transaction is one stream: it takes one message, invisible to other
 * receivers for the visibility time, and settles it: ack (done), reject
 * (back to the queue, its receive count kept) or resend (moved to another
 * queue). A transaction that ends unsettled (freed, connection lost,
 * visibility expired) returns the message to the queue: at-least-once. */
struct kubemq_queue_txn;

struct kubemq_queue_message {
    const char *id;
    const char *channel;
    const char *metadata;
    const unsigned char *body;
    size_t body_len;
    uint64_t sequence;
    int receive_count; /* deliveries so far, this one included */
};

/* rc 1: m is the message (valid until the transaction is freed); 0: none
 * came within wait_seconds; -1: failed, err says why. */
typedef void (*kubemq_queue_fn)(void *ctx, struct kubemq_queue_txn *t, int rc,
                                const struct kubemq_queue_message *m, const char *err);
/* rc 0: settled; -1: not (err says why; the broker returns the message
 * when the transaction ends). */
typedef void (*kubemq_settle_fn)(void *ctx, struct kubemq_queue_txn *t, int rc, const char *err);

/* Open a transaction and wait up to wait_seconds for a message of channel.
 * NULL when out of memory. */
struct kubemq_queue_txn *kubemq_queue_receive(struct kubemq_client *c, const char *channel,
                                              int visibility_seconds, int wait_seconds,
                                              kubemq_queue_fn on_message, void *ctx);
/* After rc 1, once: ack, reject, or resend to channel. done may be NULL. */
void kubemq_queue_ack(struct kubemq_queue_txn *t, kubemq_settle_fn done, void *ctx);
void kubemq_queue_reject(struct kubemq_queue_txn *t, kubemq_settle_fn done, void *ctx);
void kubemq_queue_resend(struct kubemq_queue_txn *t, const char *channel, kubemq_settle_fn done,
                         void *ctx);
/* End the transaction (unsettled: the message returns to the queue); no
 * callback of t runs any more. Accepts NULL. */
void kubemq_queue_txn_free(struct kubemq_queue_txn *t);

/* "query" | "command" | "events" | "events_store" */
const char *kubemq_kind_name(enum kubemq_kind k);

#endif
