/* kubemq_conn.c - one broker connection: socket, TLS, nghttp2 session, on the engine loop.
 *
 * A connection tries the resolved addresses in turn (non-blocking
 * connect), does the TLS handshake when asked (kubemq_tls.c), then speaks
 * HTTP/2 through nghttp2's memory interface: bytes read from the socket go
 * to nghttp2_session_mem_recv (through OpenSSL first with TLS), and
 * nghttp2_session_mem_send output is gathered into one buffer that a
 * deferred call writes once at the end of the loop round - never from
 * inside nghttp2's callbacks, which only record what arrived.
 *
 * The KubeMQ server's HTTP/2 habits shape it: SETTINGS is the first frame
 * (the server drops a connection that starts with HEADERS); windows are
 * opened by hand (1 MiB per stream, 16 MiB for the connection) so 100 MiB
 * messages can arrive, and the socket is always read (a receive window
 * held at 0 gets the connection reset); the server's BDP PINGs are ACKed
 * with the next write that happens anyway, or after 100 ms; we never send
 * PINGs of our own (the server counts them as strikes). The socket is
 * watched for reading all the time and for writing only while a write is
 * blocked. A GOAWAY, an end of file (what a server's SIGTERM looks like:
 * no GOAWAY, no trailers) or any error ends every stream with UNAVAILABLE
 * and tells the client, which reconnects. */
#include "kubemq/kubemq_internal.h"

#include "base/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_SIZE      (64 * 1024)
#define READS_PER_TURN 16           /* then the loop serves others */
#define FLUSH_CHUNK    (256 * 1024) /* frames gathered before a write */
#define OUT_MAX        ((size_t)64 << 20)
#define ACK_HOLD_MS    100

static int lingering_count;

int kubemq_client_lingering(void)
{
    return lingering_count;
}

static void flush_now(void *arg);
static void on_io(void *arg, int fd, unsigned events);

void kubemq_conn_acquire(struct kubemq_conn *conn)
{
    conn->refs++;
}

static void close_socket(struct kubemq_conn *conn)
{
    if (conn->fd >= 0) {
        loop_io_set(conn->loop, conn->fd, 0, NULL, NULL);
        close(conn->fd);
        conn->fd = -1;
    }
    conn->io_events = 0;
}

void kubemq_conn_release(struct kubemq_conn *conn)
{
    if (!conn || --conn->refs > 0) {
        return;
    }
    close_socket(conn);
    loop_timer_stop(conn->loop, &conn->timer);
    loop_timer_stop(conn->loop, &conn->ack_timer);
    loop_defer_cancel(conn->loop, &conn->flush);
    nghttp2_session_del(conn->h2);
    kubemq_tls_free(conn->tls);
    if (conn->ssl_ctx) {
        SSL_CTX_free(conn->ssl_ctx);
    }
    if (conn->token) {
        explicit_bzero(conn->token, strlen(conn->token));
    }
    free(conn->token);
    free(conn->address);
    free(conn->log_name);
    free(conn->host);
    free(conn->rbuf);
    buf_free(&conn->out);
    free(conn);
}

static void set_io(struct kubemq_conn *conn, unsigned events)
{
    if (conn->fd < 0 || events == conn->io_events) {
        return;
    }
    if (loop_io_set(conn->loop, conn->fd, events, on_io, conn) < 0) {
        /* Cannot happen for a socket we hold; the connection is useless without it. */
        log_error(conn->log_name, "kubemq: cannot watch the socket to %s", conn->address);
    }
    conn->io_events = events;
}

void kubemq_conn_kick(struct kubemq_conn *conn)
{
    if (conn->state != KUBEMQ_CONN_DEAD) {
        loop_defer(conn->loop, &conn->flush, flush_now, conn);
    }
}

/* ---- the end ---- */

void kubemq_conn_fail(struct kubemq_conn *conn, const char *fmt, ...)
{
    struct kubemq_client *client = conn->client;
    char why[300], text[400];
    int was_up = conn->state == KUBEMQ_CONN_UP;
    va_list ap;

    if (conn->state == KUBEMQ_CONN_DEAD) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    kubemq_conn_acquire(conn);
    conn->state = KUBEMQ_CONN_DEAD;
    close_socket(conn);
    loop_timer_stop(conn->loop, &conn->timer);
    loop_timer_stop(conn->loop, &conn->ack_timer);
    loop_defer_cancel(conn->loop, &conn->flush);
    conn->client = NULL;
    if (client) {
        kubemq_client_conn_down(client, conn, why); /* drops the client's reference */
    }
    if (was_up) {
        snprintf(text, sizeof(text), "connection to %s lost: %s", conn->address, why);
    } else {
        snprintf(text, sizeof(text), "cannot connect to %s: %s", conn->address, why);
    }
    while (!kubemq_list_empty(&conn->streams)) {
        struct kubemq_stream *st = KK_CONTAINER_OF(conn->streams.next, struct kubemq_stream, link);

        kubemq_list_del(&st->link);
        st->conn = NULL;
        kubemq_stream_on_lost(st, text);
        kubemq_stream_release(st);
    }
    /* No stream points here any more, so nghttp2 may go (it calls nothing back). */
    nghttp2_session_del(conn->h2);
    conn->h2 = NULL;
    kubemq_tls_free(conn->tls);
    conn->tls = NULL;
    if (conn->lingering) {
        conn->lingering = 0;
        lingering_count--;
        kubemq_conn_release(conn); /* the reference the client left behind */
    }
    kubemq_conn_release(conn);
}

static int lingering_done(struct kubemq_conn *conn)
{
    struct kubemq_list *e;

    if (conn->out.len > conn->out_off || (conn->h2 && nghttp2_session_want_write(conn->h2))) {
        return 0;
    }
    for (e = conn->streams.next; e != &conn->streams; e = e->next) {
        struct kubemq_stream *st = KK_CONTAINER_OF(e, struct kubemq_stream, link);

        if (st->linger && !st->ended) {
            return 0;
        }
    }
    return 1;
}

static void on_linger_timeout(void *arg)
{
    kubemq_conn_fail(arg, "closed: the client is gone and its last calls took too long");
}

void kubemq_conn_linger(struct kubemq_conn *conn)
{
    conn->client = NULL;
    if (conn->state != KUBEMQ_CONN_UP) {
        /* Nothing was sent on it yet: nothing to wait for. */
        conn->lingering = 1;
        lingering_count++;
        kubemq_conn_fail(conn, "closed: the client is gone");
        return;
    }
    conn->lingering = 1;
    lingering_count++;
    loop_timer_start(conn->loop, &conn->timer, KUBEMQ_RESPONSE_DEADLINE, on_linger_timeout, conn);
    kubemq_conn_kick(conn); /* writes what is queued, then closes when nothing is left */
}

void kubemq_conn_stream_ended(struct kubemq_conn *conn)
{
    if (conn->lingering) {
        kubemq_conn_kick(conn);
    }
}

/* ---- nghttp2's callbacks: record only ---- */

static struct kubemq_stream *find_stream(struct kubemq_conn *conn, int32_t id)
{
    struct kubemq_list *e;

    for (e = conn->streams.next; e != &conn->streams; e = e->next) {
        struct kubemq_stream *st = KK_CONTAINER_OF(e, struct kubemq_stream, link);

        if (st->id == id) {
            return st;
        }
    }
    return NULL;
}

/* nghttp2 is done with st: off the connection. */
static void stream_gone(struct kubemq_conn *conn, struct kubemq_stream *st, uint32_t code)
{
    if (!st || st->conn != conn || !kubemq_list_linked(&st->link)) {
        return;
    }
    kubemq_stream_on_reset(st, code);
    /* nghttp2 may still name the stream in a later callback: never this pointer. */
    if (conn->h2 && st->id > 0) {
        nghttp2_session_set_stream_user_data(conn->h2, st->id, NULL);
    }
    kubemq_list_del(&st->link);
    st->conn = NULL;
    kubemq_conn_stream_ended(conn);
    kubemq_stream_release(st);
}

static ssize_t data_read_cb(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)h2;
    (void)id;
    (void)ud;
    return kubemq_stream_read_data(src->ptr, buf, len, flags);
}

static int on_header_cb(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *ud)
{
    struct kubemq_stream *st;

    (void)flags;
    (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }
    st = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
    if (st) {
        kubemq_stream_on_header(st, name, namelen, value, valuelen);
    }
    return 0;
}

static int on_data_cb(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
                      size_t len, void *ud)
{
    struct kubemq_stream *st;

    (void)flags;
    (void)ud;
    /* The connection window never closes: given back at once. */
    nghttp2_session_consume_connection(h2, len);
    st = nghttp2_session_get_stream_user_data(h2, id);
    if (st) {
        kubemq_stream_on_data(st, data, len);
    }
    return 0;
}

static void send_acks(struct kubemq_conn *conn)
{
    int i;

    for (i = 0; i < conn->nacks; i++) {
        nghttp2_submit_ping(conn->h2, NGHTTP2_FLAG_ACK, conn->acks[i]);
    }
    conn->nacks = 0;
    loop_timer_stop(conn->loop, &conn->ack_timer);
}

static void on_ack_timer(void *arg)
{
    struct kubemq_conn *conn = arg;

    if (conn->state == KUBEMQ_CONN_UP) {
        send_acks(conn);
        kubemq_conn_kick(conn);
    }
}

/* A PING from the server (grpc-go's BDP probe): its ACK rides on the next
 * write, at the latest after ACK_HOLD_MS. */
static void hold_ack(struct kubemq_conn *conn, const uint8_t opaque[8])
{
    if (conn->nacks == KUBEMQ_MAX_HELD_ACKS) {
        send_acks(conn);
        kubemq_conn_kick(conn);
    }
    memcpy(conn->acks[conn->nacks++], opaque, 8);
    if (!loop_timer_armed(&conn->ack_timer)) {
        loop_timer_start(conn->loop, &conn->ack_timer, ACK_HOLD_MS, on_ack_timer, conn);
    }
}

static int on_frame_recv_cb(nghttp2_session *h2, const nghttp2_frame *f, void *ud)
{
    struct kubemq_conn *conn = ud;
    struct kubemq_stream *st;
    size_t n;

    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        if (!(f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            break;
        }
        st = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
        if (st) {
            kubemq_stream_on_peer_end(st);
            /* The server finished first (a bidi stream): close our side too. */
            if (!nghttp2_session_get_stream_local_close(h2, f->hd.stream_id)) {
                nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
            }
        }
        break;
    case NGHTTP2_PING:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK)) {
            hold_ack(conn, f->ping.opaque_data);
        }
        break;
    case NGHTTP2_GOAWAY:
        conn->goaway = 1;
        conn->goaway_code = f->goaway.error_code;
        n = f->goaway.opaque_data_len < sizeof(conn->goaway_debug) - 1
                ? f->goaway.opaque_data_len
                : sizeof(conn->goaway_debug) - 1;
        kubemq_grpc_percent_decode((const char *)f->goaway.opaque_data, n, conn->goaway_debug,
                                   sizeof(conn->goaway_debug));
        break;
    default:
        break;
    }
    return 0;
}

static int on_stream_close_cb(nghttp2_session *h2, int32_t id, uint32_t code, void *ud)
{
    stream_gone(ud, nghttp2_session_get_stream_user_data(h2, id), code);
    return 0;
}

static int on_frame_not_send_cb(nghttp2_session *h2, const nghttp2_frame *f, int lib_error,
                                void *ud)
{
    struct kubemq_conn *conn = ud;
    struct kubemq_stream *st;
    char text[200];

    (void)h2;
    if (f->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }
    st = find_stream(conn, f->hd.stream_id);
    if (st && !st->ended) {
        snprintf(text, sizeof(text), "the request was not sent: %s", nghttp2_strerror(lib_error));
        kubemq_stream_on_lost(st, text);
    }
    stream_gone(conn, st, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_error_cb(nghttp2_session *h2, int lib_error, const char *msg, size_t len, void *ud)
{
    struct kubemq_conn *conn = ud;

    (void)h2;
    log_debug(conn->log_name, "kubemq: HTTP/2 with %s: %.*s (%d)", conn->address, (int)len, msg,
              lib_error);
    return 0;
}

/* ---- writing ---- */

/* Plaintext frames from nghttp2 into the socket buffer. */
static int emit(struct kubemq_conn *conn, const uint8_t *p, size_t n)
{
    char err[256];

    if (!conn->tls) {
        return buf_append(&conn->out, p, n);
    }
    if (kubemq_tls_write(conn->tls, p, n, err, sizeof(err)) < 0) {
        kubemq_conn_fail(conn, "%s", err);
        return -1;
    }
    return kubemq_tls_output(conn->tls, &conn->out);
}

/* Gather what nghttp2 has to send, a chunk at a time. */
static int produce(struct kubemq_conn *conn)
{
    while (conn->out.len - conn->out_off < FLUSH_CHUNK) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(conn->h2, &p);

        if (n < 0) {
            kubemq_conn_fail(conn, "HTTP/2: %s", nghttp2_strerror((int)n));
            return -1;
        }
        if (n == 0) {
            break;
        }
        if (emit(conn, p, (size_t)n) < 0) {
            if (conn->state != KUBEMQ_CONN_DEAD) {
                kubemq_conn_fail(conn, "out of memory for the socket buffer");
            }
            return -1;
        }
    }
    return 0;
}

/* The deferred call: everything queued this round, in as few writes as
 * the socket takes (one, unless more than FLUSH_CHUNK is due). */
static void flush_now(void *arg)
{
    struct kubemq_conn *conn = arg;
    int blocked = 0;

    if (conn->state == KUBEMQ_CONN_DEAD || conn->fd < 0) {
        return;
    }
    kubemq_conn_acquire(conn);
    if (conn->state == KUBEMQ_CONN_UP && conn->nacks &&
        (nghttp2_session_want_write(conn->h2) || conn->out.len > conn->out_off)) {
        send_acks(conn);
    }
    for (;;) {
        ssize_t w;

        if (conn->state == KUBEMQ_CONN_UP && produce(conn) < 0) {
            goto out;
        }
        if (conn->out_off == conn->out.len) {
            break;
        }
        w = send(conn->fd, conn->out.data + conn->out_off, conn->out.len - conn->out_off,
                 MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                blocked = 1;
                break;
            }
            kubemq_conn_fail(conn, "write: %s", strerror(errno));
            goto out;
        }
        conn->out_off += (size_t)w;
        if (conn->out_off < conn->out.len) {
            blocked = 1; /* the socket buffer is full */
            break;
        }
        buf_reset(&conn->out);
        conn->out_off = 0;
    }
    set_io(conn, LOOP_READ | (blocked ? LOOP_WRITE : 0));
    if (conn->state == KUBEMQ_CONN_UP && !nghttp2_session_want_read(conn->h2) &&
        !nghttp2_session_want_write(conn->h2)) {
        kubemq_conn_fail(conn, "the HTTP/2 session ended");
    } else if (conn->lingering && lingering_done(conn)) {
        kubemq_conn_fail(conn, "closed: the client is gone, its last calls done");
    }
out:
    kubemq_conn_release(conn);
}

static void on_ids_used_up(void *arg)
{
    kubemq_conn_fail(arg, "its stream ids are used up (a new connection takes over)");
}

int kubemq_conn_submit(struct kubemq_conn *conn, struct kubemq_stream *st, char *err, size_t errlen)
{
    nghttp2_nv nva[10];
    nghttp2_data_provider prd;
    char timeout[16];
    size_t n = 0;
    int32_t id;

#define NV(k, v, fl)                                                                               \
    do {                                                                                           \
        nva[n].name = (uint8_t *)(k);                                                              \
        nva[n].namelen = strlen(k);                                                                \
        nva[n].value = (uint8_t *)(v);                                                             \
        nva[n].valuelen = strlen(v);                                                               \
        nva[n].flags = (fl);                                                                       \
        n++;                                                                                       \
    } while (0)

    if (conn->state != KUBEMQ_CONN_UP) {
        snprintf(err, errlen, "the connection to %s is not up", conn->address);
        return -1;
    }
    NV(":method", "POST", NGHTTP2_NV_FLAG_NONE);
    NV(":scheme", conn->tls_on ? "https" : "http", NGHTTP2_NV_FLAG_NONE);
    NV(":path", st->method, NGHTTP2_NV_FLAG_NONE);
    NV(":authority", conn->address, NGHTTP2_NV_FLAG_NONE);
    NV("content-type", "application/grpc", NGHTTP2_NV_FLAG_NONE);
    NV("te", "trailers", NGHTTP2_NV_FLAG_NONE);
    NV("user-agent", "kubemq-kinesis/" KK_VERSION, NGHTTP2_NV_FLAG_NONE);
    if (st->deadline_at) {
        uint64_t now = loop_now_ms(conn->loop);

        kubemq_grpc_timeout(st->deadline_at > now ? (int64_t)(st->deadline_at - now) : 1, timeout,
                            sizeof(timeout));
        NV("grpc-timeout", timeout, NGHTTP2_NV_FLAG_NONE);
    }
    if (conn->token) {
        /* Never in the HPACK table: a secret stays out of compression state. */
        NV("authorization", conn->token, NGHTTP2_NV_FLAG_NO_INDEX);
    }
#undef NV
    prd.source.ptr = st;
    prd.read_callback = data_read_cb;
    id = nghttp2_submit_request(conn->h2, NULL, nva, n, &prd, st);
    if (id < 0) {
        snprintf(err, errlen, "cannot start a call: %s", nghttp2_strerror(id));
        if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE && !loop_timer_armed(&conn->timer)) {
            /* After about a billion calls: start over on a new connection (not from here:
             * the caller may be the client itself). */
            loop_timer_start(conn->loop, &conn->timer, 0, on_ids_used_up, conn);
        }
        return -1;
    }
    st->id = id;
    st->conn = conn;
    kubemq_stream_acquire(st);
    kubemq_list_add(&conn->streams, &st->link);
    kubemq_conn_kick(conn);
    return 0;
}

void kubemq_conn_rst(struct kubemq_conn *conn, int32_t id, uint32_t code)
{
    if (conn->state == KUBEMQ_CONN_UP && id > 0) {
        nghttp2_submit_rst_stream(conn->h2, NGHTTP2_FLAG_NONE, id, code);
        kubemq_conn_kick(conn);
    }
}

void kubemq_conn_consume(struct kubemq_conn *conn, int32_t id, size_t n)
{
    if (conn->state == KUBEMQ_CONN_UP && id > 0 && n > 0) {
        nghttp2_session_consume_stream(conn->h2, id, n);
        if (nghttp2_session_want_write(conn->h2)) {
            kubemq_conn_kick(conn);
        }
    }
}

void kubemq_conn_resume(struct kubemq_conn *conn, int32_t id)
{
    if (conn->state == KUBEMQ_CONN_UP) {
        nghttp2_session_resume_data(conn->h2, id);
        kubemq_conn_kick(conn);
    }
}

/* ---- reading ---- */

static int feed_h2(struct kubemq_conn *conn, const uint8_t *p, size_t n)
{
    ssize_t rv = nghttp2_session_mem_recv(conn->h2, p, n);

    if (rv < 0) {
        kubemq_conn_fail(conn, "HTTP/2: %s", nghttp2_strerror((int)rv));
        return -1;
    }
    return 0;
}

static int start_h2(struct kubemq_conn *conn);

static int feed(struct kubemq_conn *conn, const uint8_t *p, size_t n)
{
    unsigned char plain[16384];
    char err[300];
    ssize_t m;
    int rc;

    if (!conn->tls) {
        return feed_h2(conn, p, n);
    }
    if (kubemq_tls_input(conn->tls, p, n) < 0) {
        kubemq_conn_fail(conn, "tls: out of memory");
        return -1;
    }
    if (conn->state == KUBEMQ_CONN_HANDSHAKE) {
        rc = kubemq_tls_handshake(conn->tls, err, sizeof(err));
        if (kubemq_tls_output(conn->tls, &conn->out) < 0 || rc < 0) {
            kubemq_conn_fail(conn, "%s", rc < 0 ? err : "tls: out of memory");
            return -1;
        }
        kubemq_conn_kick(conn);
        if (rc == 0 || start_h2(conn) < 0) {
            return rc == 0 ? 0 : -1;
        }
    }
    while ((m = kubemq_tls_read(conn->tls, plain, sizeof(plain), err, sizeof(err))) > 0) {
        if (feed_h2(conn, plain, (size_t)m) < 0) {
            return -1;
        }
    }
    if (m < 0) {
        kubemq_conn_fail(conn, "%s", err);
        return -1;
    }
    if (kubemq_tls_output(conn->tls, &conn->out) < 0) {
        kubemq_conn_fail(conn, "tls: out of memory");
        return -1;
    }
    if (conn->out.len > conn->out_off) {
        kubemq_conn_kick(conn);
    }
    return 0;
}

static void read_some(struct kubemq_conn *conn)
{
    int i;

    for (i = 0; i < READS_PER_TURN && conn->state != KUBEMQ_CONN_DEAD; i++) {
        ssize_t n = recv(conn->fd, conn->rbuf, READ_SIZE, 0);

        if (n > 0) {
            conn->last_rx_ms = loop_now_ms(conn->loop);
            if (feed(conn, conn->rbuf, (size_t)n) < 0) {
                return;
            }
            if (n < READ_SIZE) {
                break; /* drained for now; the loop says when more comes */
            }
            continue;
        }
        if (n == 0) {
            if (conn->goaway) {
                break; /* reported below */
            }
            kubemq_conn_fail(conn, "the server closed the connection (no GOAWAY)");
            return;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        }
        kubemq_conn_fail(conn, "read: %s", strerror(errno));
        return;
    }
    if (conn->state != KUBEMQ_CONN_UP) {
        return;
    }
    if (conn->goaway) {
        kubemq_conn_fail(conn, "GOAWAY from the server (%s%s%s)",
                         nghttp2_http2_strerror(conn->goaway_code),
                         conn->goaway_debug[0] ? ": " : "", conn->goaway_debug);
        return;
    }
    if (nghttp2_session_want_write(conn->h2)) {
        kubemq_conn_kick(conn);
    }
}

/* ---- connecting ---- */

static int start_h2(struct kubemq_conn *conn)
{
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, KUBEMQ_STREAM_WINDOW},
    };
    int rv;

    if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cbs);
        kubemq_conn_fail(conn, "out of memory");
        return -1;
    }
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close_cb);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send_cb);
    nghttp2_session_callbacks_set_error_callback2(cbs, on_error_cb);
    /* Windows by hand (per message), PING ACKs by hand (with the next write). */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_no_auto_ping_ack(opt, 1);
    rv = nghttp2_session_client_new2(&conn->h2, cbs, conn, opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    if (rv != 0) {
        kubemq_conn_fail(conn, "HTTP/2: %s", nghttp2_strerror(rv));
        return -1;
    }
    /* SETTINGS first, or the server closes the connection without a word. */
    rv = nghttp2_submit_settings(conn->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    if (rv == 0) {
        rv = nghttp2_session_set_local_window_size(conn->h2, NGHTTP2_FLAG_NONE, 0,
                                                   KUBEMQ_CONN_WINDOW);
    }
    if (rv != 0) {
        kubemq_conn_fail(conn, "HTTP/2: %s", nghttp2_strerror(rv));
        return -1;
    }
    conn->state = KUBEMQ_CONN_UP;
    conn->up_at = loop_now_ms(conn->loop);
    conn->last_rx_ms = conn->up_at;
    loop_timer_stop(conn->loop, &conn->timer);
    set_io(conn, LOOP_READ);
    kubemq_conn_kick(conn);
    if (conn->client) {
        kubemq_client_conn_up(conn->client, conn);
    }
    return 0;
}

/* The next address; -1 when none is left (conn->why says why the last failed). */
static int try_next(struct kubemq_conn *conn)
{
    while (conn->addr_i < conn->addrs.n) {
        const struct sockaddr *sa = (const struct sockaddr *)&conn->addrs.addr[conn->addr_i];
        socklen_t len = conn->addrs.len[conn->addr_i];
        int one = 1;
        int fd;

        conn->addr_i++;
        kubemq_resolve_format(sa, conn->peer, sizeof(conn->peer));
        fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            snprintf(conn->why, sizeof(conn->why), "socket: %s", strerror(errno));
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, sa, len) == 0 || errno == EINPROGRESS) {
            conn->fd = fd;
            conn->io_events = 0;
            /* Even an at-once success is reported by the loop, never inside kubemq_conn_open. */
            if (loop_io_set(conn->loop, fd, LOOP_WRITE, on_io, conn) < 0) {
                snprintf(conn->why, sizeof(conn->why), "cannot watch a socket");
                close(fd);
                conn->fd = -1;
                continue;
            }
            conn->io_events = LOOP_WRITE;
            return 0;
        }
        snprintf(conn->why, sizeof(conn->why), "connect to %s: %s", conn->peer, strerror(errno));
        close(fd);
    }
    return -1;
}

static void connected(struct kubemq_conn *conn)
{
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    char err[300];

    if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) {
        soerr = errno;
    }
    if (soerr != 0) {
        snprintf(conn->why, sizeof(conn->why), "connect to %s: %s", conn->peer, strerror(soerr));
        close_socket(conn);
        if (try_next(conn) < 0) {
            kubemq_conn_fail(conn, "%s", conn->why);
        }
        return;
    }
    if (!conn->tls_on) {
        start_h2(conn);
        return;
    }
    conn->tls = kubemq_tls_new(conn->ssl_ctx, conn->host, err, sizeof(err));
    if (!conn->tls) {
        kubemq_conn_fail(conn, "%s", err);
        return;
    }
    conn->state = KUBEMQ_CONN_HANDSHAKE;
    if (kubemq_tls_handshake(conn->tls, err, sizeof(err)) < 0 ||
        kubemq_tls_output(conn->tls, &conn->out) < 0) {
        kubemq_conn_fail(conn, "%s", err);
        return;
    }
    set_io(conn, LOOP_READ);
    kubemq_conn_kick(conn); /* the ClientHello */
}

static void on_io(void *arg, int fd, unsigned events)
{
    struct kubemq_conn *conn = arg;

    (void)fd;
    kubemq_conn_acquire(conn);
    if (conn->state == KUBEMQ_CONN_CONNECTING) {
        if (events & (LOOP_WRITE | LOOP_ERROR)) {
            connected(conn);
        }
    } else {
        if (events & (LOOP_READ | LOOP_ERROR)) {
            read_some(conn);
        }
        if ((events & LOOP_WRITE) && conn->state != KUBEMQ_CONN_DEAD) {
            flush_now(conn);
        }
    }
    kubemq_conn_release(conn);
}

static void on_connect_timeout(void *arg)
{
    struct kubemq_conn *conn = arg;

    kubemq_conn_fail(conn, "%s to %s timed out after %d ms",
                     conn->state == KUBEMQ_CONN_HANDSHAKE ? "the TLS handshake" : "connecting",
                     conn->peer, KUBEMQ_CONNECT_MS);
}

static void on_no_address(void *arg)
{
    struct kubemq_conn *conn = arg;

    kubemq_conn_fail(conn, "%s", conn->why);
}

struct kubemq_conn *kubemq_conn_open(struct kubemq_client *c, const struct kubemq_addrs *addrs,
                                     char *err, size_t errlen)
{
    struct kubemq_conn *conn = calloc(1, sizeof(*conn));

    if (!conn) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    conn->refs = 1; /* the client's */
    conn->loop = c->loop;
    conn->client = c;
    conn->fd = -1;
    conn->state = KUBEMQ_CONN_CONNECTING;
    conn->addrs = *addrs;
    kubemq_list_init(&conn->streams);
    buf_init(&conn->out, OUT_MAX);
    loop_defer_init(&conn->flush);
    loop_timer_init(&conn->timer);
    loop_timer_init(&conn->ack_timer);
    snprintf(conn->why, sizeof(conn->why), "no address");
    conn->address = kubemq_wire_strdup(c->address);
    conn->log_name = c->log_name ? kubemq_wire_strdup(c->log_name) : NULL;
    conn->host = kubemq_wire_strdup(c->host);
    conn->token = c->token ? kubemq_wire_strdup(c->token) : NULL;
    conn->rbuf = malloc(READ_SIZE);
    if (!conn->address || (c->log_name && !conn->log_name) || !conn->host ||
        (c->token && !conn->token) || !conn->rbuf) {
        snprintf(err, errlen, "out of memory");
        conn->state = KUBEMQ_CONN_DEAD;
        kubemq_conn_release(conn);
        return NULL;
    }
    if (c->ssl_ctx) {
        conn->tls_on = 1;
        SSL_CTX_up_ref(c->ssl_ctx);
        conn->ssl_ctx = c->ssl_ctx;
    }
    if (try_next(conn) < 0) {
        loop_timer_start(conn->loop, &conn->timer, 0, on_no_address, conn);
    } else {
        loop_timer_start(conn->loop, &conn->timer, KUBEMQ_CONNECT_MS, on_connect_timeout, conn);
    }
    return conn;
}
