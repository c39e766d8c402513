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
    void *priv; /* the unpacked message the fields point into */
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

const char *kubemq_kind_name(enum kubemq_kind k); /* "query" | "command" */

#endif
