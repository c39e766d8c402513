/* h2stub.h - a bare HTTP/2 server (nghttp2) on a test's loop, for what the stand-in broker cannot
 * show.
 *
 * It records the frames and headers a client sends and misbehaves on
 * demand: it never answers (deadlines), sends GOAWAY then closes (what a
 * KubeMQ server does on too_many_pings), closes without a GOAWAY (what its
 * SIGTERM looks like), or sends a PING (grpc-go's BDP probe) and waits for
 * the ACK. Header-only, for tests; one connection at a time. */
#ifndef KK_TESTS_H2STUB_H
#define KK_TESTS_H2STUB_H

#include "base/loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Past SILENT, Ping calls are answered (an empty PingResult) and any
 * other call gets the misbehaviour. */
enum h2stub_mode {
    H2STUB_SILENT = 0, /* take every call, never answer */
    H2STUB_GOAWAY = 1, /* GOAWAY ENHANCE_YOUR_CALM "too_many_pings", then close */
    H2STUB_EOF = 2,    /* close the socket, no GOAWAY */
    H2STUB_PING = 3,   /* send a PING (the BDP probe's data), never answer */
};

static const uint8_t h2stub_bdp[8] = {0x02, 0x04, 0x10, 0x10, 0x09, 0x0e, 0x07, 0x07};

struct h2stub {
    struct loop *loop;
    enum h2stub_mode mode;
    int lfd;
    int fd;
    int port;
    nghttp2_session *h2;

    int accepted;
    int close_now; /* after this read: GOAWAY/EOF */
    int pings_answered;
    int first_frame; /* type of the client's first frame after the preface; -1: none yet */
    int requests;
    char path[128], scheme[16], authority[96], ctype[64], te[32], timeout[32], auth[64];
    unsigned char data[64];
    size_t data_len;
    int data_end_stream;
    int rst_count;
    uint32_t rst_code;
    int client_pings; /* PINGs the client started (must stay 0) */
    int ping_acks;
    int ack_opaque_ok;
};

static void h2stub_drop(struct h2stub *s)
{
    if (s->fd >= 0) {
        loop_io_set(s->loop, s->fd, 0, NULL, NULL);
        close(s->fd);
        s->fd = -1;
    }
    nghttp2_session_del(s->h2);
    s->h2 = NULL;
}

static void h2stub_flush(struct h2stub *s)
{
    const uint8_t *p;
    ssize_t n;

    while (s->h2 && s->fd >= 0 && (n = nghttp2_session_mem_send(s->h2, &p)) > 0) {
        ssize_t off = 0;

        while (off < n) {
            ssize_t w = send(s->fd, p + off, (size_t)(n - off), MSG_NOSIGNAL);

            if (w < 0 && errno == EAGAIN) {
                continue; /* a few bytes on loopback: spin */
            }
            if (w <= 0) {
                return;
            }
            off += w;
        }
    }
}

static int h2stub_on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
                            size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                            void *ud)
{
    struct h2stub *s = ud;
    char *dst = NULL;
    size_t cap = 0;

    (void)flags;
#define H2STUB_IS(k) (namelen == strlen(k) && memcmp(name, k, namelen) == 0)
    if (H2STUB_IS(":path")) {
        dst = s->path, cap = sizeof(s->path);
        /* Marks the stream: a Ping call, answered when its request ends. */
        if (valuelen == 19 && memcmp(value, "/kubemq.kubemq/Ping", 19) == 0) {
            nghttp2_session_set_stream_user_data(h2, f->hd.stream_id, s);
        }
    } else if (H2STUB_IS(":scheme")) {
        dst = s->scheme, cap = sizeof(s->scheme);
    } else if (H2STUB_IS(":authority")) {
        dst = s->authority, cap = sizeof(s->authority);
    } else if (H2STUB_IS("content-type")) {
        dst = s->ctype, cap = sizeof(s->ctype);
    } else if (H2STUB_IS("te")) {
        dst = s->te, cap = sizeof(s->te);
    } else if (H2STUB_IS("grpc-timeout")) {
        dst = s->timeout, cap = sizeof(s->timeout);
    } else if (H2STUB_IS("authorization")) {
        dst = s->auth, cap = sizeof(s->auth);
    }
#undef H2STUB_IS
    if (dst) {
        snprintf(dst, cap, "%.*s", (int)valuelen, (const char *)value);
    }
    return 0;
}

static int h2stub_on_data(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
                          size_t len, void *ud)
{
    struct h2stub *s = ud;
    size_t take = sizeof(s->data) - s->data_len;

    (void)h2;
    (void)flags;
    (void)id;
    if (take > len) {
        take = len;
    }
    memcpy(s->data + s->data_len, data, take);
    s->data_len += take;
    return 0;
}

/* An empty PingResult, then trailers with grpc-status 0. */
static ssize_t h2stub_ping_body(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
                                uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    static const nghttp2_nv trailers[] = {
        {(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"grpc-message", (uint8_t *)"", 12, 0, NGHTTP2_NV_FLAG_NONE},
    };

    (void)src;
    (void)ud;
    (void)len;
    memset(buf, 0, 5);
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    nghttp2_submit_trailer(h2, id, trailers, 2);
    return 5;
}

static void h2stub_answer_ping(struct h2stub *s, int32_t id)
{
    static const nghttp2_nv hdrs[] = {
        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider prd;

    prd.source.ptr = NULL;
    prd.read_callback = h2stub_ping_body;
    nghttp2_submit_response(s->h2, id, hdrs, 2, &prd);
    s->pings_answered++;
}

static void h2stub_misbehave(struct h2stub *s, int32_t id)
{
    switch (s->mode) {
    case H2STUB_GOAWAY:
        nghttp2_submit_goaway(s->h2, NGHTTP2_FLAG_NONE, id, NGHTTP2_ENHANCE_YOUR_CALM,
                              (const uint8_t *)"too_many_pings", 14);
        s->close_now = 1;
        break;
    case H2STUB_EOF:
        s->close_now = 1;
        break;
    case H2STUB_PING:
        nghttp2_submit_ping(s->h2, NGHTTP2_FLAG_NONE, h2stub_bdp);
        break;
    default:
        break;
    }
}

static int h2stub_on_frame(nghttp2_session *h2, const nghttp2_frame *f, void *ud)
{
    struct h2stub *s = ud;

    if (s->first_frame < 0) {
        s->first_frame = f->hd.type;
    }
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
            s->requests++;
        }
        if (!(f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            break;
        }
        s->data_end_stream = 1;
        if (s->mode == H2STUB_SILENT) {
            break;
        }
        if (nghttp2_session_get_stream_user_data(h2, f->hd.stream_id)) {
            h2stub_answer_ping(s, f->hd.stream_id);
        } else {
            h2stub_misbehave(s, f->hd.stream_id);
        }
        break;
    case NGHTTP2_RST_STREAM:
        s->rst_count++;
        s->rst_code = f->rst_stream.error_code;
        break;
    case NGHTTP2_PING:
        if (f->hd.flags & NGHTTP2_FLAG_ACK) {
            s->ping_acks++;
            s->ack_opaque_ok = memcmp(f->ping.opaque_data, h2stub_bdp, 8) == 0;
        } else {
            s->client_pings++;
        }
        break;
    default:
        break;
    }
    return 0;
}

static void h2stub_io(void *arg, int fd, unsigned events)
{
    struct h2stub *s = arg;
    uint8_t buf[16384];
    ssize_t n;

    (void)fd;
    (void)events;
    n = recv(s->fd, buf, sizeof(buf), 0);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            h2stub_drop(s);
        }
        return;
    }
    if (nghttp2_session_mem_recv(s->h2, buf, (size_t)n) < 0) {
        h2stub_drop(s);
        return;
    }
    h2stub_flush(s);
    if (s->close_now) {
        s->close_now = 0;
        h2stub_drop(s); /* GOAWAY (written above) then FIN, or FIN alone */
    }
}

static void h2stub_accept(void *arg, int fd, unsigned events)
{
    struct h2stub *s = arg;
    nghttp2_session_callbacks *cbs;
    int c;

    (void)events;
    c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) {
        return;
    }
    h2stub_drop(s); /* one connection at a time: the newest */
    s->fd = c;
    s->accepted++;
    s->first_frame = -1;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, h2stub_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2stub_on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, h2stub_on_frame);
    nghttp2_session_server_new(&s->h2, cbs, s);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(s->h2, NGHTTP2_FLAG_NONE, NULL, 0);
    h2stub_flush(s);
    loop_io_set(s->loop, c, LOOP_READ, h2stub_io, s);
}

static int h2stub_start(struct h2stub *s, struct loop *loop, enum h2stub_mode mode)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);

    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->mode = mode;
    s->fd = -1;
    s->first_frame = -1;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s->lfd, 8) < 0 ||
        getsockname(s->lfd, (struct sockaddr *)&a, &len) < 0) {
        return -1;
    }
    s->port = ntohs(a.sin_port);
    return loop_io_set(loop, s->lfd, LOOP_READ, h2stub_accept, s);
}

static void h2stub_stop(struct h2stub *s)
{
    h2stub_drop(s);
    if (s->lfd >= 0) {
        loop_io_set(s->loop, s->lfd, 0, NULL, NULL);
        close(s->lfd);
        s->lfd = -1;
    }
}

#endif
