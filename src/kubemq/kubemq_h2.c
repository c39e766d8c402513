/* kubemq_h2.c - a connection's HTTP/2 session (nghttp2): setup, callbacks, requests, flow control.
 *
 * nghttp2's callbacks only record what arrived - headers, DATA chunks, the
 * end of a stream, a PING, a GOAWAY - into the streams and the connection;
 * the streams report to their owners later, from their deferred calls, and
 * the connection writes at the end of the loop round (kubemq_conn.c).
 *
 * The session is set up for the KubeMQ server's habits: SETTINGS is the
 * first frame (ENABLE_PUSH 0, a 1 MiB stream window) and the connection
 * window is 16 MiB; windows are given back by hand (the connection's at
 * once for every chunk, a stream's per message), so memory stays bounded
 * without ever closing the connection window. The server's PINGs (grpc-go's
 * BDP probes, one per burst of DATA for the connection's life) are ACKed
 * with the next write that happens anyway, at the latest after 100 ms,
 * which saves a write per query when traffic is one at a time. */
#include "kubemq/kubemq_internal.h"

#include "base/log.h"
#include "base/version.h"

#include <stdio.h>
#include <string.h>

#define ACK_HOLD_MS 100

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

void kubemq_h2_send_acks(struct kubemq_conn *conn)
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
        kubemq_h2_send_acks(conn);
        kubemq_conn_kick(conn);
    }
}

/* A PING from the server (grpc-go's BDP probe): its ACK rides on the next
 * write, at the latest after ACK_HOLD_MS. */
static void hold_ack(struct kubemq_conn *conn, const uint8_t opaque[8])
{
    if (conn->nacks == KUBEMQ_MAX_HELD_ACKS) {
        kubemq_h2_send_acks(conn);
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
    case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK) && !conn->heard && conn->client) {
            conn->heard = 1;
            kubemq_client_conn_heard(conn->client, conn);
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

/* ---- the session ---- */

int kubemq_h2_start(struct kubemq_conn *conn, char *err, size_t errlen)
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
        snprintf(err, errlen, "out of memory");
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
    if (rv == 0) {
        /* SETTINGS first, or the server closes the connection without a word. */
        rv = nghttp2_submit_settings(conn->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    }
    if (rv == 0) {
        rv = nghttp2_session_set_local_window_size(conn->h2, NGHTTP2_FLAG_NONE, 0,
                                                   KUBEMQ_CONN_WINDOW);
    }
    if (rv != 0) {
        snprintf(err, errlen, "HTTP/2: %s", nghttp2_strerror(rv));
        return -1;
    }
    return 0;
}

/* ---- requests ---- */

static void on_ids_used_up(void *arg)
{
    kubemq_conn_fail(arg, "its stream ids are used up (a new connection takes over)");
}

int kubemq_h2_submit(struct kubemq_conn *conn, struct kubemq_stream *st, char *err, size_t errlen)
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
    NV("user-agent", KK_USER_AGENT, NGHTTP2_NV_FLAG_NONE);
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

void kubemq_h2_rst(struct kubemq_conn *conn, int32_t id, uint32_t code)
{
    if (conn->state == KUBEMQ_CONN_UP && id > 0) {
        nghttp2_submit_rst_stream(conn->h2, NGHTTP2_FLAG_NONE, id, code);
        kubemq_conn_kick(conn);
    }
}

void kubemq_h2_consume(struct kubemq_conn *conn, int32_t id, size_t n)
{
    if (conn->state == KUBEMQ_CONN_UP && id > 0 && n > 0) {
        nghttp2_session_consume_stream(conn->h2, id, n);
        if (nghttp2_session_want_write(conn->h2)) {
            kubemq_conn_kick(conn);
        }
    }
}

void kubemq_h2_resume(struct kubemq_conn *conn, int32_t id)
{
    if (conn->state == KUBEMQ_CONN_UP) {
        nghttp2_session_resume_data(conn->h2, id);
        kubemq_conn_kick(conn);
    }
}
