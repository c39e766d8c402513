/* kubemq_stream.c - one gRPC call = one HTTP/2 stream: what goes out, what came in, how it ended.
 *
 * The connection feeds a stream what nghttp2 parsed (headers, DATA
 * chunks, END_STREAM, RST_STREAM, a lost connection) and pulls the
 * stream's queued messages through nghttp2's data source. A stream never
 * calls its owner from there: it records, and reports from its own
 * deferred call at the end of the loop round - messages first, then how
 * the call ended. That also keeps every report out of the call that
 * started the operation.
 *
 * Flow control: the connection window is given back as DATA arrives (the
 * connection), the stream window as each message is handed to the owner,
 * or as it arrives for a message too large to wait for (kubemq_grpc.c). */
#include "kubemq/kubemq_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GRPC_MESSAGE 1024 /* decoded grpc-message kept */

static void dispatch(void *arg);

static void schedule(struct kubemq_stream *st)
{
    loop_defer(st->loop, &st->defer, dispatch, st);
}

struct kubemq_stream *kubemq_stream_new(struct loop *loop, const char *method,
                                        const struct kubemq_stream_ops *ops, void *owner)
{
    struct kubemq_stream *st = calloc(1, sizeof(*st));

    if (!st) {
        return NULL;
    }
    st->refs = 1; /* the owner's */
    st->loop = loop;
    st->method = method;
    st->ops = ops;
    st->owner = owner;
    st->grpc_status = -1;
    kubemq_list_init(&st->link);
    loop_timer_init(&st->timer);
    loop_defer_init(&st->defer);
    return st;
}

void kubemq_stream_acquire(struct kubemq_stream *st)
{
    st->refs++;
}

void kubemq_stream_release(struct kubemq_stream *st)
{
    struct kubemq_out *o;
    struct kubemq_in *in;

    if (!st || --st->refs > 0) {
        return;
    }
    loop_timer_stop(st->loop, &st->timer);
    loop_defer_cancel(st->loop, &st->defer);
    while ((o = st->out_head) != NULL) {
        st->out_head = o->next;
        free(o);
    }
    while ((in = st->in_head) != NULL) {
        st->in_head = in->next;
        free(in->data);
        free(in);
    }
    kubemq_grpc_rx_reset(&st->rx);
    free(st->grpc_message);
    free(st->end_text);
    free(st);
}

int kubemq_stream_open(const struct kubemq_stream *st)
{
    return st->conn && st->id > 0 && !st->ended;
}

/* The call is over; the owner hears it from the deferred call. */
static void end(struct kubemq_stream *st, int status, const char *text)
{
    if (st->ended) {
        return;
    }
    st->ended = 1;
    st->end_status = status;
    st->end_text = status == KUBEMQ_STATUS_OK ? NULL : kubemq_wire_strdup(text ? text : "");
    loop_timer_stop(st->loop, &st->timer);
    schedule(st);
    if (st->conn) {
        kubemq_conn_stream_ended(st->conn);
    }
}

/* Out of the client's waiting list, if it is there. */
static void unwait(struct kubemq_stream *st)
{
    if (st->waiting) {
        st->waiting = NULL;
        kubemq_list_del(&st->link);
        kubemq_stream_release(st);
    }
}

static void wake_data(struct kubemq_stream *st)
{
    if (!st->conn) {
        return; /* not submitted yet: the data source reads it all then */
    }
    if (st->deferred && st->id > 0) {
        st->deferred = 0;
        kubemq_h2_resume(st->conn, st->id);
    }
    kubemq_conn_kick(st->conn);
}

int kubemq_stream_send(struct kubemq_stream *st, const ProtobufCMessage *m, int *status, char *err,
                       size_t errlen)
{
    struct kubemq_out *o;

    if (st->ended || st->send_closed) {
        *status = KUBEMQ_STATUS_UNAVAILABLE;
        snprintf(err, errlen, "the call has ended");
        return -1;
    }
    o = kubemq_wire_frame(m, status, err, errlen);
    if (!o) {
        return -1;
    }
    if (st->out_tail) {
        st->out_tail->next = o;
    } else {
        st->out_head = o;
    }
    st->out_tail = o;
    wake_data(st);
    return 0;
}

void kubemq_stream_close_send(struct kubemq_stream *st)
{
    if (st->send_closed) {
        return;
    }
    st->send_closed = 1;
    wake_data(st);
}

static void on_deadline(void *arg)
{
    struct kubemq_stream *st = arg;

    kubemq_stream_fail(st, KUBEMQ_STATUS_DEADLINE_EXCEEDED, "deadline exceeded after %d ms",
                       st->deadline_ms);
}

void kubemq_stream_set_deadline(struct kubemq_stream *st, int ms, int tell_server)
{
    loop_timer_stop(st->loop, &st->timer);
    st->deadline_at = 0;
    st->deadline_ms = ms;
    if (ms <= 0 || st->ended) {
        return;
    }
    if (tell_server) {
        st->deadline_at = loop_now_ms(st->loop) + (uint64_t)ms;
    }
    loop_timer_start(st->loop, &st->timer, (uint64_t)ms, on_deadline, st);
}

void kubemq_stream_fail(struct kubemq_stream *st, int status, const char *fmt, ...)
{
    char text[512];
    va_list ap;

    if (st->ended) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    kubemq_stream_acquire(st); /* unwait may drop the last other reference */
    if (st->conn && st->id > 0) {
        kubemq_h2_rst(st->conn, st->id, NGHTTP2_CANCEL);
    }
    unwait(st);
    end(st, status, text);
    kubemq_stream_release(st);
}

void kubemq_stream_cancel(struct kubemq_stream *st)
{
    if (!st) {
        return;
    }
    st->owner = NULL;
    st->reported = 1;
    if (!st->ended) {
        kubemq_stream_fail(st, KUBEMQ_STATUS_CANCELLED, "cancelled");
    }
    kubemq_stream_release(st);
}

void kubemq_stream_detach(struct kubemq_stream *st)
{
    if (!st) {
        return;
    }
    st->owner = NULL;
    st->reported = 1;
    kubemq_stream_release(st);
}

/* ---- from the connection ---- */

static int header_is(const uint8_t *name, size_t namelen, const char *want)
{
    size_t n = strlen(want);

    return namelen == n && memcmp(name, want, n) == 0;
}

/* A small non-negative decimal, or -1. */
static int header_int(const uint8_t *v, size_t n)
{
    int x = 0;
    size_t i;

    if (n == 0 || n > 9) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') {
            return -1;
        }
        x = x * 10 + (v[i] - '0');
    }
    return x;
}

void kubemq_stream_on_header(struct kubemq_stream *st, const uint8_t *name, size_t namelen,
                             const uint8_t *value, size_t valuelen)
{
    if (header_is(name, namelen, ":status")) {
        st->http_status = header_int(value, valuelen);
    } else if (header_is(name, namelen, "grpc-status")) {
        st->grpc_status = header_int(value, valuelen);
        if (st->grpc_status < 0) {
            st->grpc_status = 2; /* UNKNOWN: gRPC's answer to an unreadable status */
        }
    } else if (header_is(name, namelen, "grpc-message")) {
        size_t n = valuelen < MAX_GRPC_MESSAGE ? valuelen + 1 : MAX_GRPC_MESSAGE;
        char *m = malloc(n);

        if (m) {
            kubemq_grpc_percent_decode((const char *)value, valuelen, m, n);
            free(st->grpc_message);
            st->grpc_message = m;
        }
    }
}

static void on_message(void *ctx, unsigned char *msg, size_t len, size_t owed)
{
    struct kubemq_stream *st = ctx;
    struct kubemq_in *in = malloc(sizeof(*in));

    if (!in) {
        free(msg);
        kubemq_stream_fail(st, KUBEMQ_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    in->next = NULL;
    in->data = msg;
    in->len = len;
    in->owed = owed;
    if (st->in_tail) {
        st->in_tail->next = in;
    } else {
        st->in_head = in;
    }
    st->in_tail = in;
    schedule(st);
}

void kubemq_stream_on_data(struct kubemq_stream *st, const uint8_t *p, size_t n)
{
    char err[256];
    int status;

    if (st->ended) {
        return;
    }
    status =
        kubemq_grpc_rx_feed(&st->rx, p, n, KUBEMQ_MAX_MESSAGE, on_message, st, err, sizeof(err));
    if (st->rx.consume_now && st->conn) {
        kubemq_h2_consume(st->conn, st->id, st->rx.consume_now);
    }
    st->rx.consume_now = 0;
    if (status != 0) {
        kubemq_stream_fail(st, status, "%s", err);
    }
}

/* How a call that ended without (readable) trailers ended. */
static void end_from_headers(struct kubemq_stream *st, const char *missing)
{
    char text[256];

    if (st->grpc_status >= 0) {
        end(st, st->grpc_status, st->grpc_message ? st->grpc_message : "");
    } else if (st->http_status > 0 && st->http_status != 200) {
        snprintf(text, sizeof(text), "HTTP status %d without a grpc-status", st->http_status);
        end(st, kubemq_grpc_http_status(st->http_status), text);
    } else {
        end(st, KUBEMQ_STATUS_INTERNAL, missing);
    }
}

void kubemq_stream_on_peer_end(struct kubemq_stream *st)
{
    if (st->ended) {
        return;
    }
    if (kubemq_grpc_rx_partial(&st->rx) && st->grpc_status == KUBEMQ_STATUS_OK) {
        end(st, KUBEMQ_STATUS_INTERNAL, "the server ended the call inside a message");
        return;
    }
    end_from_headers(st, "the server ended the call without a grpc-status");
}

void kubemq_stream_on_reset(struct kubemq_stream *st, uint32_t error_code)
{
    char text[256];

    if (st->ended) {
        return;
    }
    if (error_code == NGHTTP2_NO_ERROR) {
        end_from_headers(st, "the stream closed without a grpc-status");
        return;
    }
    /* REFUSED_STREAM also stands for a stream past a GOAWAY's last id. */
    snprintf(text, sizeof(text), "the server reset the stream (RST_STREAM %s)",
             nghttp2_http2_strerror(error_code));
    end(st, KUBEMQ_STATUS_UNAVAILABLE, text);
}

void kubemq_stream_on_lost(struct kubemq_stream *st, const char *text)
{
    end(st, KUBEMQ_STATUS_UNAVAILABLE, text);
}

ssize_t kubemq_stream_read_data(struct kubemq_stream *st, uint8_t *buf, size_t len, uint32_t *flags)
{
    size_t done = 0;

    while (done < len && st->out_head) {
        struct kubemq_out *o = st->out_head;
        size_t take = o->len - st->out_off;

        if (take > len - done) {
            take = len - done;
        }
        memcpy(buf + done, o->data + st->out_off, take);
        done += take;
        st->out_off += take;
        if (st->out_off == o->len) {
            st->out_head = o->next;
            if (!st->out_head) {
                st->out_tail = NULL;
            }
            free(o);
            st->out_off = 0;
            st->written++;
            schedule(st);
        }
    }
    if (!st->out_head && st->send_closed) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    } else if (done == 0) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)done;
}

/* ---- reports ---- */

static void dispatch(void *arg)
{
    struct kubemq_stream *st = arg;
    struct kubemq_in *in;

    kubemq_stream_acquire(st);
    if (st->written) {
        st->written = 0;
        if (st->owner && st->ops->written) {
            st->ops->written(st->owner, st);
        }
    }
    while ((in = st->in_head) != NULL) {
        st->in_head = in->next;
        if (!st->in_head) {
            st->in_tail = NULL;
        }
        if (st->conn && in->owed) {
            kubemq_h2_consume(st->conn, st->id, in->owed);
        }
        if (st->owner && !st->reported) {
            st->ops->message(st->owner, st, in->data, in->len);
        }
        free(in->data);
        free(in);
    }
    if (st->ended && !st->reported) {
        st->reported = 1;
        if (st->owner) {
            st->ops->closed(st->owner, st, st->end_status, st->end_text);
        }
    }
    kubemq_stream_release(st);
}
