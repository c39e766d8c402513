/* kubemq_internal.h - state shared by the kubemq_*.c files; not for other layers.
 *
 * Locking: one mutex per client (mu) guards every field written by more
 * than one thread: subscription state, in-flight counters, the stop flag.
 * Callbacks into the daemon run with mu released. */
#ifndef KK_KUBEMQ_INTERNAL_H
#define KK_KUBEMQ_INTERNAL_H

#include "kubemq/kubemq_client.h"

#include "kubemq.pb-c.h"

#include <grpc/grpc.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define KK_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Every completion-queue tag starts with its handler. */
struct kk_tag {
    void (*done)(struct kk_tag *t, int ok);
};

/* One call's buffers: a unary call's six-op batch, or a stream's four batches. */
struct kk_unary {
    grpc_call *call;
    grpc_byte_buffer *send_bb;
    grpc_byte_buffer *recv_bb;
    grpc_metadata_array init_md;
    grpc_metadata_array trail_md;
    grpc_status_code status;
    grpc_slice details;
};

struct kubemq_subscription {
    struct kubemq_client *client;
    enum kubemq_kind type;
    char *channel;
    char *group;
    int store_start;     /* events_store: enum kubemq_store_start */
    int64_t store_value; /* its value */
    uint64_t last_seq;   /* events_store: last sequence delivered (mu) */
    kubemq_request_fn on_request;
    kubemq_state_fn on_state;
    void *ctx;
    struct kubemq_subscription *next;

    /* The current stream; st.call is NULL between streams. */
    struct kk_tag tag_send, tag_meta, tag_status, tag_recv;
    struct kk_unary st; /* the same buffers as a unary call, in four batches */
    int outstanding;    /* accepted batches not yet completed */
    int recv_armed;     /* a RECV_MESSAGE is posted */
    int recv_closed;    /* the stream delivered its last message */
    int status_received;
    int got_message;
    int opened; /* the Subscribe was written */
    uint64_t started_ms;

    /* Back-pressure. */
    int paused;
    int delivering; /* on_request is running */
    int resume_pending;

    /* Reconnect policy. */
    int subscribed; /* read without mu by kubemq_subscription_subscribed */
    int ever_subscribed;
    int attempts;
    uint64_t backoff_ms;
    int resubscribe_scheduled;
    uint64_t resubscribe_at;
    int gave_up;
    int closed; /* kubemq_subscription_close(): no stream, ever again */
};

struct kubemq_client {
    char *address;
    char *client_id;
    char *log_name;
    int has_auth;
    grpc_metadata auth_md;
    int auto_reconnect;
    uint64_t backoff_cap_ms;
    int max_reconnects;
    int ping_interval_ms;

    int grpc_inited;
    grpc_channel *channel;
    grpc_completion_queue *cq;
    pthread_t thread;
    int thread_started;

    pthread_mutex_t mu;
    int stopping;
    int channel_destroyed;
    int cq_shutdown;
    int calls_inflight; /* unary calls (async and blocking) not yet finished */
    struct kubemq_subscription *subs;
    uint64_t last_activity_ms;

    /* Connectivity watch and idle Ping, driven by the client's thread. */
    struct kk_tag tag_watch;
    int watch_armed;
    grpc_connectivity_state conn_state;
    int conn_failed; /* "cannot connect" logged since the last READY */
    struct kk_tag tag_ping;
    int ping_inflight;
    struct kk_unary ping;
};

/* kubemq_wire.c */
uint64_t kk_now_ms(void);
grpc_byte_buffer *kk_pack(const ProtobufCMessage *m);
/* Unpacks (and keeps) bb; NULL on a malformed message. */
void *kk_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb);
/* "Error 301: ..." as the server wrote it, or "<STATUS> (n): details". */
void kk_status_text(const struct kubemq_client *c, grpc_status_code status, grpc_slice details,
                    char *dst, size_t dstlen);
const char *kk_status_name(grpc_status_code status);
void kk_new_id(char out[33]);
/* A malloc'd copy of s ("" for NULL); NULL only when out of memory. */
char *kk_strdup(const char *s);

/* kubemq_call.c */
void kk_unary_init(struct kk_unary *u);
/* SEND_INITIAL_METADATA (auth) + SEND_MESSAGE(bb) + SEND_CLOSE_FROM_CLIENT. */
void kk_send_ops(struct kubemq_client *c, grpc_op ops[3], grpc_byte_buffer *bb, uint32_t md_flags);
/* Create the call on cq and start the one six-op batch with tag. */
int kk_unary_start(struct kubemq_client *c, struct kk_unary *u, grpc_completion_queue *cq,
                   const char *method, const ProtobufCMessage *req, int deadline_ms,
                   uint32_t md_flags, void *tag, char *err, size_t errlen);
void kk_unary_cleanup(struct kk_unary *u);
/* Reserve / release a slot in calls_inflight; -1 when stopping. */
int kk_call_enter(struct kubemq_client *c);
void kk_call_leave(struct kubemq_client *c);
void kk_ping_start(struct kubemq_client *c);

/* kubemq_subscription.c (client's thread, mu held) */
void kk_sub_start_stream(struct kubemq_subscription *s);
void kk_sub_cancel(struct kubemq_subscription *s);
int kk_sub_idle(const struct kubemq_subscription *s);
void kk_sub_free(struct kubemq_subscription *s);

#endif
