/* kubemq_client.h - a KubeMQ client on the gRPC C core: one client = one connection.
 *
 * Threading:
 *   - Each client owns one gRPC channel (its own TCP connection, even to the
 *     same address) and one completion-queue thread. That thread drives every
 *     asynchronous operation: subscription streams, SendResponse calls, the
 *     connectivity watch and the idle Ping. The on_request and on_state
 *     callbacks run on it; they must not block (hand work to the engine with
 *     loop_post) and must not call kubemq_client_destroy().
 *   - kubemq_send_response(), kubemq_subscription_pause()/resume() and
 *     kubemq_subscription_subscribed() may be called from any thread.
 *   - kubemq_send_request() and kubemq_client_ping() block the calling
 *     thread (their own completion queue per call); any thread but the
 *     client's completion-queue thread may call them, concurrently.
 *   - kubemq_client_destroy() must not race with other calls on the same
 *     client; it cancels the streams, waits for in-flight completions
 *     (bounded by their deadlines) and joins the thread.
 *   - Threads created by the client start with SIGINT, SIGTERM and SIGHUP
 *     blocked, so the process's main thread can sigwait() for them.
 *
 * The auth token is sent as `authorization` metadata on every call and is
 * never logged. */
#ifndef KK_KUBEMQ_CLIENT_H
#define KK_KUBEMQ_CLIENT_H

#include <stddef.h>
#include <stdint.h>

struct kubemq_client;
struct kubemq_subscription;

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
#define KUBEMQ_RESPONSE_DEADLINE 10000 /* ms, SendResponse and Ping */

struct kubemq_client_opts {
    const char *address;    /* "host:port", required */
    const char *client_id;  /* required: the server rejects an empty one */
    const char *auth_token; /* NULL or "": none */
    int tls;                /* 0: plaintext */
    const char *ca_file;    /* PEM roots; NULL: system roots */
    const char *cert_file;  /* client certificate (with key_file) */
    const char *key_file;
    int auto_reconnect;             /* resubscribe when a stream ends (default 1) */
    int reconnect_interval_seconds; /* backoff cap; 0: 5 s */
    int max_reconnects;             /* resubscriptions without success; 0: forever */
    int ping_interval_ms;           /* idle Ping; 0: KUBEMQ_PING_INTERVAL_MS, <0: off */
    const char *log_name;           /* binding name on log lines; NULL: none */
};

/* Defaults: everything 0/NULL except auto_reconnect = 1. */
void kubemq_client_opts_init(struct kubemq_client_opts *o);

struct kubemq_client *kubemq_client_create(const struct kubemq_client_opts *o, char *err,
                                           size_t errlen);
/* Accepts NULL and half-built clients. Subscriptions are freed with it. */
void kubemq_client_destroy(struct kubemq_client *c);
const char *kubemq_client_address(const struct kubemq_client *c);

struct kubemq_ping_result {
    char host[256];
    char version[64];
    int64_t server_start_time;
    int64_t server_uptime_seconds;
};

/* Blocking Ping; 0, or -1 with the gRPC error text in err. */
int kubemq_client_ping(struct kubemq_client *c, int timeout_ms, struct kubemq_ping_result *out,
                       char *err, size_t errlen);

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
    void *priv;        /* the unpacked message the fields point into */
};

/* Accepts NULL. */
void kubemq_request_free(struct kubemq_request *req);

enum kubemq_sub_state {
    KUBEMQ_SUB_SUBSCRIBED = 1, /* stream open (again) */
    KUBEMQ_SUB_LOST = 2,       /* stream ended; a resubscription may follow */
    KUBEMQ_SUB_GAVE_UP = 3,    /* no more resubscriptions */
};

/* Runs on the client's thread and takes ownership of req. Return 0 to
 * receive the next request, 1 to pause until kubemq_subscription_resume(). */
typedef int (*kubemq_request_fn)(void *ctx, struct kubemq_request *req);
/* Runs on the client's thread; text is a one-line description. */
typedef void (*kubemq_state_fn)(void *ctx, enum kubemq_sub_state state, const char *text);

/* Subscribe to queries (KUBEMQ_QUERY) or commands (KUBEMQ_COMMAND) on
 * channel/group (group NULL or "": every subscriber gets a copy). The
 * stream opens shortly after on the client's thread and is reopened when
 * it ends (see the reconnect options). on_state may be NULL. The handle
 * lives until kubemq_client_destroy(). */
struct kubemq_subscription *
kubemq_subscribe_requests(struct kubemq_client *c, enum kubemq_kind type, const char *channel,
                          const char *group, kubemq_request_fn on_request, kubemq_state_fn on_state,
                          void *ctx, char *err, size_t errlen);
/* Subscribe to events (store = 0) or events_store (store = 1) on
 * channel/group; deliveries come as requests of type KUBEMQ_EVENTS /
 * KUBEMQ_EVENTS_STORE (reply_channel "", nothing to answer). An
 * events_store stream starts at start/value and, when it is reopened after
 * a delivery, at the sequence after the last one delivered, so a broker
 * restart or a lost connection neither skips nor repeats messages. */
struct kubemq_subscription *
kubemq_subscribe_events(struct kubemq_client *c, int store, const char *channel, const char *group,
                        enum kubemq_store_start start, int64_t value, kubemq_request_fn on_request,
                        kubemq_state_fn on_state, void *ctx, char *err, size_t errlen);

/* 1 while the stream is open and has not ended. Thread-safe. */
int kubemq_subscription_subscribed(const struct kubemq_subscription *s);
/* Stop posting receives: at most the one already posted is delivered.
 * Thread-safe. */
void kubemq_subscription_pause(struct kubemq_subscription *s);
/* Receive again after a pause (by the callback's return or by pause()).
 * Thread-safe. */
void kubemq_subscription_resume(struct kubemq_subscription *s);
/* End the subscription for good: the stream is cancelled (the broker hands
 * the channel's requests to other subscribers) and never reopened; a
 * request already received may still be delivered. Replies to requests
 * taken earlier still go out. Thread-safe; the handle lives until
 * kubemq_client_destroy(). */
void kubemq_subscription_close(struct kubemq_subscription *s);

/* Answer req asynchronously; copies what it needs, so req may be freed at
 * once. error_text/metadata may be NULL. Thread-safe. 0 when the call was
 * started; a failure (now or on completion) is logged as
 * "error sending response: ...". */
int kubemq_send_response(struct kubemq_client *c, const struct kubemq_request *req, int executed,
                         const char *error_text, const void *body, size_t len,
                         const char *metadata);

/* Publish an event (store = 0) or an events_store message (store = 1)
 * asynchronously; copies what it needs. Thread-safe. 0 when the call was
 * started; a failure (now or on completion) is logged as
 * "error sending event response: ...". metadata may be NULL. */
int kubemq_send_event(struct kubemq_client *c, int store, const char *channel, const void *body,
                      size_t len, const char *metadata);

/* ---- queues: one StreamQueueMessage transaction per message ------------
 *
 * A transaction takes one message, invisible to other receivers for the
 * visibility time, and settles it: ack (done), reject (back to the queue,
 * its receive count kept) or resend (moved to another queue). A
 * transaction that ends unsettled (cancelled, connection lost, visibility
 * expired) returns the message to the queue: at-least-once delivery.
 * Every call blocks the calling thread (its own completion queue), which
 * must not be the client's thread; kubemq_queue_cancel() is thread-safe. */
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

/* NULL with the reason in err (e.g. the client is shutting down). */
struct kubemq_queue_txn *kubemq_queue_txn_open(struct kubemq_client *c, char *err, size_t errlen);
/* Wait up to wait_seconds for a message of channel: 1 with *msg set (valid
 * until the transaction is freed), 0 when none came (or cancelled), -1 with
 * the error in err. At most once per transaction. */
int kubemq_queue_receive(struct kubemq_queue_txn *t, const char *channel, int visibility_seconds,
                         int wait_seconds, const struct kubemq_queue_message **msg, char *err,
                         size_t errlen);
int kubemq_queue_ack(struct kubemq_queue_txn *t, char *err, size_t errlen);
int kubemq_queue_reject(struct kubemq_queue_txn *t, char *err, size_t errlen);
int kubemq_queue_resend(struct kubemq_queue_txn *t, const char *channel, char *err, size_t errlen);
/* Make a blocked or later call return at once; an unsettled message goes
 * back to the queue. Thread-safe, also while another thread is inside a call. */
void kubemq_queue_cancel(struct kubemq_queue_txn *t);
/* Ends the transaction (unsettled: the message returns to the queue). NULL ok. */
void kubemq_queue_txn_free(struct kubemq_queue_txn *t);

/* Blocking SendQueueMessage: 0, or -1 with the error in err. */
int kubemq_send_queue_message(struct kubemq_client *c, const char *channel, const void *body,
                              size_t len, const char *metadata, char *err, size_t errlen);

/* A reply to kubemq_send_request(). Commands carry executed/error only. */
struct kubemq_response {
    int executed;
    char *error;    /* "" when none */
    char *metadata; /* "" when none */
    unsigned char *body;
    size_t body_len;
    char *request_id;
    char *client_id; /* the responder's */
};

/* Frees the members; accepts NULL and zeroed structs. */
void kubemq_response_free(struct kubemq_response *r);

/* Blocking SendRequest: 0 with *out filled, or -1 with the gRPC error text
 * in err (e.g. "Error 301: timeout for request message"). timeout_ms is
 * the KubeMQ Request.Timeout (> 0). metadata may be NULL. */
int kubemq_send_request(struct kubemq_client *c, enum kubemq_kind type, const char *channel,
                        const void *body, size_t len, const char *metadata, int timeout_ms,
                        struct kubemq_response *out, char *err, size_t errlen);

/* "query" | "command" | "events" | "events_store" */
const char *kubemq_kind_name(enum kubemq_kind k);

#endif
