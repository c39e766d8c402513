/* kubemq_internal.h - what the kubemq_*.c files share; not for other layers.
 *
 * The pieces, lowest first:
 *   kubemq_grpc.c          gRPC's rules on top of HTTP/2: the 5-byte message
 *                          prefix and reassembly, grpc-timeout, grpc-message
 *                          decoding, status texts (no I/O, unit-tested alone)
 *   kubemq_wire.c          protobuf-c messages framed for a stream, ids,
 *                          delivered requests
 *   kubemq_address.c       the configured "host:port" split (names are resolved
 *                          by base/resolve.c, TLS is base/tls.c)
 *   kubemq_stream.c        one gRPC call = one HTTP/2 stream
 *   kubemq_h2.c            a connection's HTTP/2 session: nghttp2 callbacks,
 *                          requests, flow control, held PING ACKs
 *   kubemq_conn.c          one connection: socket, TLS, reading, one write per
 *                          loop round, its end
 *   kubemq_client.c        the client: (re)connecting, the liveness Ping,
 *                          where a new stream goes
 *   kubemq_call.c, kubemq_subscription.c, kubemq_queue.c: what kubemq_client.h offers
 *
 * Lifetimes, one rule for all: an object that a callback, a timer or a
 * deferred call may still reach after its owner let go is reference counted
 * (..._acquire / ..._release; the last release frees it). Code that calls
 * out to an owner's callback holds a reference across the call and looks
 * at the object's state afterwards: the callback may have ended it. Timers
 * and deferred calls hold no reference; the last release stops them.
 *
 * Nothing here calls out to an owner from inside nghttp2 (its callbacks
 * only record what arrived) nor from inside the call that started an
 * operation: a stream reports from its own deferred call, run at the end
 * of the loop round. */
#ifndef KK_KUBEMQ_INTERNAL_H
#define KK_KUBEMQ_INTERNAL_H

#include "kubemq/kubemq_client.h"

#include "base/buf.h"
#include "base/loop.h"
#include "base/resolve.h"
#include "base/tls.h"

#include "kubemq.pb-c.h"

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define KK_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define KUBEMQ_PREFIX_LEN    5
#define KUBEMQ_STREAM_WINDOW (1 << 20)  /* SETTINGS_INITIAL_WINDOW_SIZE we advertise */
#define KUBEMQ_CONN_WINDOW   (16 << 20) /* our connection receive window */
#define KUBEMQ_EAGER_CONSUME                                                                       \
    (256 * 1024)                   /* a message this large opens the window as it arrives          \
                                    */
#define KUBEMQ_PING_DEADLINE 5000  /* ms, the liveness Ping */
#define KUBEMQ_CONNECT_MS    10000 /* resolve aside: TCP + TLS */
#define KUBEMQ_STABLE_MS     10000 /* a stream (or connection) this old resets the backoff */
#define KUBEMQ_BACKOFF_MS    250   /* first retry after a failure */

/* ---- intrusive doubly-linked lists (a head is a member that links to itself) ---- */

struct kubemq_list {
    struct kubemq_list *prev, *next;
};

static inline void kubemq_list_init(struct kubemq_list *l)
{
    l->prev = l->next = l;
}

static inline int kubemq_list_empty(const struct kubemq_list *l)
{
    return l->next == l;
}

/* Unlinked members point to themselves, so deleting twice is harmless. */
static inline int kubemq_list_linked(const struct kubemq_list *e)
{
    return e->next != e;
}

static inline void kubemq_list_add(struct kubemq_list *head, struct kubemq_list *e)
{
    e->prev = head->prev;
    e->next = head;
    head->prev->next = e;
    head->prev = e;
}

static inline void kubemq_list_del(struct kubemq_list *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->prev = e->next = e;
}

/* ---- kubemq_grpc.c ---- */

/* Reassembly of length-prefixed messages from DATA chunks of any size. */
struct kubemq_grpc_rx {
    unsigned char hdr[KUBEMQ_PREFIX_LEN];
    size_t hdr_len;     /* prefix bytes of the current message seen */
    unsigned char *msg; /* its body once the prefix is complete */
    size_t len;         /* the length the prefix declares */
    size_t got;
    size_t eager;       /* bytes of the current message (prefix included) already given back */
    int big;            /* the current message is given back as it arrives */
    size_t consume_now; /* out: bytes the caller gives back to the stream window now */
    int failed;
};

/* A complete message: msg (malloc'd, len bytes, taken by the callee) and
 * the bytes of the stream window it still holds (to give back when it is
 * handed to the application). */
typedef void (*kubemq_grpc_msg_fn)(void *ctx, unsigned char *msg, size_t len, size_t owed);

/* Feed one chunk. 0, or a gRPC status (RESOURCE_EXHAUSTED for a message
 * over max, INTERNAL for a compressed one) with the reason in err; after
 * an error the rx takes nothing more until reset. */
int kubemq_grpc_rx_feed(struct kubemq_grpc_rx *rx, const unsigned char *p, size_t n, size_t max,
                        kubemq_grpc_msg_fn fn, void *ctx, char *err, size_t errlen);
/* Drop a partial message. */
void kubemq_grpc_rx_reset(struct kubemq_grpc_rx *rx);
/* 1 when a message is half-received. */
int kubemq_grpc_rx_partial(const struct kubemq_grpc_rx *rx);
void kubemq_grpc_prefix(unsigned char p[KUBEMQ_PREFIX_LEN], size_t len);
/* grpc-timeout for ms (> 0): at most 8 digits and a unit ("300m", "5S"). */
void kubemq_grpc_timeout(int64_t ms, char *dst, size_t n);
/* grpc-message: %XX decoded; control bytes become spaces so the text stays
 * one line. Always NUL-terminates dst (n > 0). */
void kubemq_grpc_percent_decode(const char *in, size_t len, char *dst, size_t n);
/* "UNAVAILABLE", ...; NULL for a number gRPC does not define. */
const char *kubemq_grpc_status_name(int status);
/* The gRPC status for an HTTP answer that carries none (gRPC's mapping). */
int kubemq_grpc_http_status(int http_status);
/* One line for a failed call: KubeMQ's "Error NNN: ..." as written,
 * "<NAME> (n): message", or "unknown gRPC status n: message". */
void kubemq_grpc_status_text(int status, const char *message, const char *address, char *dst,
                             size_t n);

/* ---- kubemq_wire.c ---- */

/* One framed message waiting to be sent: prefix + protobuf bytes. */
struct kubemq_out {
    struct kubemq_out *next;
    size_t len;
    unsigned char data[];
};

/* Pack m behind its prefix. NULL with a status (RESOURCE_EXHAUSTED) and
 * the reason when it is over KUBEMQ_MAX_MESSAGE or memory ran out. */
struct kubemq_out *kubemq_wire_frame(const ProtobufCMessage *m, int *status, char *err,
                                     size_t errlen);
void *kubemq_wire_unpack(const ProtobufCMessageDescriptor *d, const unsigned char *p, size_t n);
/* A malloc'd copy of s ("" for NULL); NULL only when out of memory. */
char *kubemq_wire_strdup(const char *s);
/* A delivered request or event (it takes m); NULL when out of memory. */
struct kubemq_request *kubemq_wire_request(enum kubemq_kind sub_type, ProtobufCMessage *m);

/* ---- kubemq_address.c ---- */

/* "host:port" or "[v6]:port" -> host (brackets off) and port. */
int kubemq_address_split(const char *address, char *host, size_t hostlen, char *port,
                         size_t portlen, char *err, size_t errlen);

/* ---- kubemq_stream.c ---- */

struct kubemq_stream;

/* What a stream reports to its owner, from its deferred call. */
struct kubemq_stream_ops {
    /* the messages queued so far went to the connection (may be NULL) */
    void (*written)(void *owner, struct kubemq_stream *st);
    /* one message, valid during the call */
    void (*message)(void *owner, struct kubemq_stream *st, const unsigned char *p, size_t n);
    /* the call ended: KUBEMQ_STATUS_OK (text NULL) or a failure and its one-line text */
    void (*closed)(void *owner, struct kubemq_stream *st, int status, const char *text);
};

struct kubemq_in {
    struct kubemq_in *next;
    unsigned char *data;
    size_t len;
    size_t owed; /* stream window bytes to give back when it is handed over */
};

struct kubemq_stream {
    int refs;
    struct loop *loop;
    const char *method; /* "/kubemq.kubemq/<M>", static */
    const struct kubemq_stream_ops *ops;
    void *owner;             /* NULL once the owner let go */
    struct kubemq_list link; /* on its connection, or waiting in its client */
    struct kubemq_conn *conn;
    struct kubemq_client *waiting; /* the client whose connection it waits for */
    int32_t id;                    /* 0 until submitted */
    int linger;                    /* keeps a let-go client's connection open until it ends */
    uint64_t deadline_at;          /* loop ms for grpc-timeout; 0: none */
    int deadline_ms;               /* the local timer's */
    struct loop_timer timer;
    struct loop_defer defer;

    /* sending */
    struct kubemq_out *out_head, *out_tail;
    size_t out_off;
    int send_closed; /* END_STREAM after the queue */
    int deferred;    /* the data source answered NGHTTP2_ERR_DEFERRED */
    int written;     /* messages handed to nghttp2 since the last report */

    /* receiving */
    struct kubemq_grpc_rx rx;
    struct kubemq_in *in_head, *in_tail;
    int http_status;
    int grpc_status; /* -1 until seen */
    char *grpc_message;

    /* the end */
    int ended;
    int end_status;
    char *end_text;
    int reported;
};

struct kubemq_stream *kubemq_stream_new(struct loop *loop, const char *method,
                                        const struct kubemq_stream_ops *ops, void *owner);
void kubemq_stream_acquire(struct kubemq_stream *st);
void kubemq_stream_release(struct kubemq_stream *st);
/* Queue one message (copied). -1 with a status and err when too large or
 * the stream ended. */
int kubemq_stream_send(struct kubemq_stream *st, const ProtobufCMessage *m, int *status, char *err,
                       size_t errlen);
/* END_STREAM after what is queued. */
void kubemq_stream_close_send(struct kubemq_stream *st);
/* A local timer (replacing the one before; ms <= 0: none): when it fires
 * the stream ends with DEADLINE_EXCEEDED and RST_STREAM CANCEL goes to the
 * server. tell_server: also sent as grpc-timeout (when the stream is not
 * submitted yet). */
void kubemq_stream_set_deadline(struct kubemq_stream *st, int ms, int tell_server);
/* End it here (RST_STREAM CANCEL when it is on a connection); the owner
 * hears status and text from the deferred call. */
void kubemq_stream_fail(struct kubemq_stream *st, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The owner lets go: nothing is reported any more. cancel ends the call
 * (RST_STREAM CANCEL); detach lets it run to its end (what was written
 * still goes out). Both drop the owner's reference. */
void kubemq_stream_cancel(struct kubemq_stream *st);
void kubemq_stream_detach(struct kubemq_stream *st);
int kubemq_stream_open(const struct kubemq_stream *st);

/* From the connection (kubemq_conn.c). */
void kubemq_stream_on_header(struct kubemq_stream *st, const uint8_t *name, size_t namelen,
                             const uint8_t *value, size_t valuelen);
void kubemq_stream_on_data(struct kubemq_stream *st, const uint8_t *p, size_t n);
void kubemq_stream_on_peer_end(struct kubemq_stream *st);
void kubemq_stream_on_reset(struct kubemq_stream *st, uint32_t error_code);
/* The connection is gone: ends with UNAVAILABLE and text. */
void kubemq_stream_on_lost(struct kubemq_stream *st, const char *text);
ssize_t kubemq_stream_read_data(struct kubemq_stream *st, uint8_t *buf, size_t len,
                                uint32_t *flags);

/* ---- kubemq_conn.c ---- */

enum kubemq_conn_state {
    KUBEMQ_CONN_CONNECTING = 1, /* TCP */
    KUBEMQ_CONN_HANDSHAKE = 2,  /* TLS */
    KUBEMQ_CONN_UP = 3,
    KUBEMQ_CONN_DEAD = 4,
};

#define KUBEMQ_MAX_HELD_ACKS 4

struct kubemq_conn {
    int refs;
    struct loop *loop;
    struct kubemq_client *client; /* NULL once the client let go (lingering) */
    char *address;                /* as configured: logs and :authority */
    char *log_name;
    char *token; /* authorization metadata; NULL: none */
    char *host;  /* for TLS: SNI and verification */
    int tls_on;
    SSL_CTX *ssl_ctx;
    enum kubemq_conn_state state;

    struct resolve_addrs addrs;
    int addr_i;
    char peer[64]; /* the address connected to */
    char why[256]; /* the last connect error */
    int fd;
    unsigned io_events; /* what the loop watches for now */
    struct tls *tls;
    nghttp2_session *h2;
    struct kubemq_list streams; /* submitted, until nghttp2 closes them */
    unsigned char *rbuf;

    struct buf out; /* bytes for the socket (ciphertext with TLS) */
    size_t out_off;
    struct loop_defer flush;
    struct loop_timer timer; /* connect timeout, then the lingering bound */
    struct loop_timer ack_timer;
    uint8_t acks[KUBEMQ_MAX_HELD_ACKS][8];
    int nacks;

    uint64_t up_at;
    uint64_t last_rx_ms;
    uint64_t rx_bytes;
    int heard; /* the server's SETTINGS came: it accepted us */
    int goaway;
    uint32_t goaway_code;
    char goaway_debug[128];
    int lingering;
};

/* Start connecting to addrs (in order) for c. The outcome reaches c
 * through kubemq_client_conn_up / _down from later loop callbacks. */
struct kubemq_conn *kubemq_conn_open(struct kubemq_client *c, const struct resolve_addrs *addrs,
                                     char *err, size_t errlen);
void kubemq_conn_acquire(struct kubemq_conn *conn);
void kubemq_conn_release(struct kubemq_conn *conn);
/* Frames were queued: write them at the end of this loop round. */
void kubemq_conn_kick(struct kubemq_conn *conn);
/* The connection is lost: every stream on it ends with UNAVAILABLE, the
 * client (if any) hears of it, the socket closes. */
void kubemq_conn_fail(struct kubemq_conn *conn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The client lets go: the connection stays until its lingering streams
 * ended (at most KUBEMQ_RESPONSE_DEADLINE), then closes and frees itself. */
void kubemq_conn_linger(struct kubemq_conn *conn);
/* A stream on conn ended (a lingering connection may be done). */
void kubemq_conn_stream_ended(struct kubemq_conn *conn);

/* ---- kubemq_h2.c ---- */

/* The session, SETTINGS first. -1 with err. */
int kubemq_h2_start(struct kubemq_conn *conn, char *err, size_t errlen);
/* Put st on the connection (which must be up). -1 with err when nghttp2
 * refuses it. */
int kubemq_h2_submit(struct kubemq_conn *conn, struct kubemq_stream *st, char *err, size_t errlen);
void kubemq_h2_rst(struct kubemq_conn *conn, int32_t id, uint32_t code);
/* Give n bytes of stream id's window back. */
void kubemq_h2_consume(struct kubemq_conn *conn, int32_t id, size_t n);
/* A stream's data source has more. */
void kubemq_h2_resume(struct kubemq_conn *conn, int32_t id);
/* The PING ACKs held so far, into the session's next write. */
void kubemq_h2_send_acks(struct kubemq_conn *conn);

/* ---- kubemq_client.c ---- */

enum kubemq_client_state {
    KUBEMQ_CLIENT_WAITING = 1,    /* between attempts (backoff) */
    KUBEMQ_CLIENT_RESOLVING = 2,  /* an attempt: names */
    KUBEMQ_CLIENT_CONNECTING = 3, /* an attempt: TCP, TLS */
    KUBEMQ_CLIENT_UP = 4,
    KUBEMQ_CLIENT_GONE = 5, /* destroyed */
};

struct kubemq_client {
    int refs;
    struct loop *loop;
    char *address;
    char *host;
    char *port;
    char *client_id;
    char *log_name;
    char *token;
    SSL_CTX *ssl_ctx; /* NULL: plaintext */
    int auto_reconnect;
    uint64_t backoff_cap_ms;
    int max_reconnects;
    int ping_interval_ms; /* < 0: no idle Ping */

    enum kubemq_client_state state;
    struct resolver *resolver;
    struct kubemq_conn *conn; /* being opened, or up */
    unsigned conn_gen;        /* bumped per connection that came up */
    uint64_t backoff_ms;
    struct loop_timer retry_timer;
    int outage_logged; /* "cannot connect" said since the last success */
    int ever_up;
    int announced; /* this connection's server spoke: "connected" said */
    char last_error[256];

    int ready;
    struct kubemq_call *ping; /* the liveness Ping in flight */
    unsigned ping_gen;
    struct loop_timer ping_timer;

    struct kubemq_list waiting; /* streams for the connection being opened */
    struct kubemq_list calls;
    struct kubemq_list subs;
    struct kubemq_list txns;
};

void kubemq_client_acquire(struct kubemq_client *c);
void kubemq_client_release(struct kubemq_client *c);
/* st goes out on the connection: at once when it is up, when it comes up
 * while an attempt runs; otherwise st fails (UNAVAILABLE, reported later). */
void kubemq_client_start(struct kubemq_client *c, struct kubemq_stream *st);
int kubemq_client_up(const struct kubemq_client *c);
void kubemq_client_conn_up(struct kubemq_client *c, struct kubemq_conn *conn);
/* The server's first SETTINGS: it accepted the connection (a server that
 * refuses a client certificate after the TLS handshake never sends one). */
void kubemq_client_conn_heard(struct kubemq_client *c, struct kubemq_conn *conn);
void kubemq_client_conn_down(struct kubemq_client *c, struct kubemq_conn *conn, const char *why);
/* "UNAVAILABLE (14): not connected to host:port (reason)" for a call that
 * cannot start now. */
void kubemq_client_down_text(const struct kubemq_client *c, char *dst, size_t n);

/* ---- the owners, for the client (each given by its link in the client's list) ---- */

/* kubemq_call.c: the client is destroyed: no callback any more; responses,
 * events and queue messages run to their end, the rest is cancelled. */
void kubemq_call_shutdown(struct kubemq_list *link);
/* kubemq_subscription.c: the connection is up (open a stream if one is due). */
void kubemq_subscription_conn_up(struct kubemq_list *link);
/* The server spoke on the connection: a subscription whose Subscribe went
 * out before says "subscribed" now. 1 when it did (its owner heard). */
int kubemq_subscription_conn_heard(struct kubemq_list *link);
void kubemq_subscription_shutdown(struct kubemq_list *link);
/* kubemq_queue.c */
void kubemq_queue_shutdown(struct kubemq_list *link);

#endif
