/* aws_h1_conn.c - one connection of the HTTP/1.1 transport: connect
 * without blocking, TLS, a request's head and body in one write, the
 * answer read as it comes (aws_h1_answer.h), then idle until the next
 * request or the server's close. Registered with the loop once for its
 * whole life: reuse costs no epoll change. */
#include "aws/aws_h1_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/version.h"

#define H1_READ_MIN ((size_t)16 << 10) /* free room before a read; more as the buffer grows */

static void conn_on_io(void *arg, int fd, unsigned events);

static int watch(struct h1_conn *c, unsigned ev)
{
    if (c->watched == ev) {
        return 0;
    }
    if (loop_io_set(c->h->loop, c->fd, ev, conn_on_io, c) < 0) {
        return -1;
    }
    c->watched = ev;
    return 0;
}

static void conn_reset_answer(struct h1_conn *c)
{
    struct h1_req *r = c->req;

    aws_h1_answer_reset(&c->ans, r ? r->req.error_type_hdr : NULL,
                        r ? r->req.error_type_hdr_len : 0, AWS_H1_KEEP_BUF);
    if (c->out.cap > AWS_H1_KEEP_BUF) {
        buf_free(&c->out);
    }
    c->got_bytes = 0;
}

void aws_h1_conn_free(struct h1_conn *c)
{
    struct h1_origin *o = c->o;
    struct h1_conn **pp;

    if (c->st == AWS_H1_IDLE) {
        for (pp = &o->idle; *pp; pp = &(*pp)->next_idle) {
            if (*pp == c) {
                *pp = c->next_idle;
                break;
            }
        }
    }
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        o->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    loop_timer_stop(c->h->loop, &c->timer);
    if (c->fd >= 0) {
        if (c->watched) {
            loop_io_set(c->h->loop, c->fd, 0, NULL, NULL);
        }
        close(c->fd);
    }
    tls_free(c->tls);
    buf_free(&c->out);
    aws_h1_answer_free(&c->ans);
    o->nconns--;
    free(c);
}

/* Close c; its request (if any) must have been dealt with. */
void aws_h1_conn_close(struct h1_conn *c)
{
    struct h1_origin *o = c->o;

    aws_h1_conn_free(c);
    aws_h1_origin_kick(o);
}

/* Close c and fail or retry its request. */
static void conn_abort(struct h1_conn *c, const char *fmt, const char *detail)
{
    struct h1_origin *o = c->o;
    struct h1_req *r = c->req;
    int retry = r && c->reused && !c->got_bytes && !r->retried;

    c->req = NULL;
    if (r) {
        r->conn = NULL;
    }
    aws_h1_conn_free(c);
    if (retry) {
        /* The server closed a kept-alive connection as we reused it: the
         * request never reached it, so it goes again on a new one. */
        r->retried = 1;
        aws_h1_wait_push_front(o, r);
    }
    aws_h1_origin_kick(o);
    if (r && !retry) {
        aws_h1_req_fail(r, fmt, detail);
    }
}

/* Write what is due; 0 (maybe more to write later), -1 failed (errno). */
static int conn_flush(struct h1_conn *c)
{
    for (;;) {
        struct iovec iov[2];
        struct msghdr mh;
        int n = 0;
        ssize_t w;
        size_t left;

        if (c->out_pos < c->out.len) {
            iov[n].iov_base = c->out.data + c->out_pos;
            iov[n++].iov_len = c->out.len - c->out_pos;
        }
        if (c->body_pos < c->body_len) {
            iov[n].iov_base = (void *)(c->body + c->body_pos);
            iov[n++].iov_len = c->body_len - c->body_pos;
        }
        if (n == 0) {
            buf_reset(&c->out);
            c->out_pos = 0;
            return watch(c, LOOP_READ) < 0 ? (errno = ENOMEM, -1) : 0;
        }
        /* sendmsg: writev's gather without a SIGPIPE from a closed peer */
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)n;
        w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return watch(c, LOOP_READ | LOOP_WRITE) < 0 ? (errno = ENOMEM, -1) : 0;
            }
            return -1;
        }
        left = c->out.len - c->out_pos;
        if ((size_t)w <= left) {
            c->out_pos += (size_t)w;
        } else {
            c->out_pos = c->out.len;
            c->body_pos += (size_t)w - left;
        }
    }
}

static int append_dec(struct buf *b, unsigned long long v)
{
    char tmp[24];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return buf_append(b, tmp + i, sizeof(tmp) - i);
}

static int has_header(const char *const *hdrs, const char *name, size_t n)
{
    for (; hdrs && *hdrs; hdrs++) {
        if (!strncasecmp(*hdrs, name, n) && (*hdrs)[n] == ':') {
            return 1;
        }
    }
    return 0;
}

/* Send r on c (connected, idle or new). 0, or -1 with c closed and r
 * retried or failed. */
int aws_h1_conn_send(struct h1_conn *c, struct h1_req *r)
{
    const struct aws_http_request *q = &r->req;
    const char *method = q->method && *q->method ? q->method : "POST";
    const char *path = q->url + strlen(c->o->key);
    struct buf *b = &c->out;
    const char *const *hp;
    char err[256];
    int ok;

    c->req = r;
    r->conn = c;
    c->st = AWS_H1_BUSY;
    conn_reset_answer(c);
    buf_reset(b);
    c->out_pos = 0;
    ok = buf_append_str(b, method) == 0 && buf_append_char(b, ' ') == 0 &&
         (*path == '/' ? buf_append_str(b, path)
                       : (buf_append_char(b, '/') == 0 && buf_append_str(b, path) == 0)) == 0 &&
         buf_append(b, " HTTP/1.1\r\n", 11) == 0;
    if (ok && !has_header(q->headers, "Host", 4)) {
        ok = buf_append(b, "Host: ", 6) == 0 && buf_append_str(b, c->o->authority) == 0 &&
             buf_append(b, "\r\n", 2) == 0;
    }
    if (ok && !has_header(q->headers, "User-Agent", 10)) {
        ok = buf_append(b, "User-Agent: " KK_USER_AGENT "\r\n",
                        sizeof("User-Agent: " KK_USER_AGENT "\r\n") - 1) == 0;
    }
    for (hp = q->headers; ok && hp && *hp; hp++) {
        ok = buf_append_str(b, *hp) == 0 && buf_append(b, "\r\n", 2) == 0;
    }
    if (ok && strcmp(method, "GET") != 0) {
        ok = buf_append(b, "Content-Length: ", 16) == 0 && append_dec(b, q->body_len) == 0 &&
             buf_append(b, "\r\n", 2) == 0;
    }
    ok = ok && buf_append(b, "\r\n", 2) == 0;
    if (!ok) {
        conn_abort(c, "Out of memory: %s", "request head");
        return -1;
    }
    c->body = q->body ? q->body : "";
    c->body_len = strcmp(method, "GET") ? q->body_len : 0;
    c->body_pos = 0;
    if (c->tls) {
        /* TLS: the plaintext goes through OpenSSL into out as ciphertext. */
        int bad =
            tls_write(c->tls, (const unsigned char *)b->data, b->len, err, sizeof(err)) < 0 ||
            tls_write(c->tls, (const unsigned char *)c->body, c->body_len, err, sizeof(err)) < 0;

        buf_reset(b);
        if (bad || tls_output(c->tls, b) < 0) {
            conn_abort(c, "SSL write: %s", bad ? err : "out of memory");
            return -1;
        }
        c->body_len = 0;
    }
    if (conn_flush(c) < 0) {
        conn_abort(c, "Failed sending data to the peer: Send failure: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void conn_ready(struct h1_conn *c)
{
    struct h1_req *r = c->req;

    loop_timer_stop(c->h->loop, &c->timer);
    c->req = NULL;
    aws_h1_conn_send(c, r);
}

static void on_conn_timer(void *arg)
{
    struct h1_conn *c = arg;
    struct aws_h1 *h = c->h;
    char what[64];

    snprintf(what, sizeof(what), "%s timed out after %ld milliseconds",
             c->st == AWS_H1_CONNECTING ? "Connection" : "SSL handshake",
             c->req ? c->req->connect_ms : 0L);
    aws_h1_enter(h);
    c->reused = 0;
    conn_abort(c, "Timeout was reached: %s", what);
    aws_h1_leave(h);
}

/* Connect c to its next address. 0 started (or done), -1 none left. */
static int conn_connect(struct h1_conn *c, int *last_errno)
{
    struct h1_origin *o = c->o;

    while (c->addr_i < o->addrs.n) {
        const struct sockaddr *sa = (const struct sockaddr *)&o->addrs.addr[c->addr_i];
        socklen_t len = o->addrs.len[c->addr_i];
        int one = 1;

        c->addr_i++;
        if (c->fd >= 0) {
            if (c->watched) {
                loop_io_set(c->h->loop, c->fd, 0, NULL, NULL);
                c->watched = 0;
            }
            close(c->fd);
        }
        c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
            *last_errno = errno;
            continue;
        }
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        if (connect(c->fd, sa, len) < 0 && errno != EINPROGRESS) {
            *last_errno = errno;
            continue;
        }
        if (watch(c, LOOP_WRITE) < 0) {
            *last_errno = ENOMEM;
            continue;
        }
        return 0;
    }
    return -1;
}

static void conn_connect_failed(struct h1_conn *c, int e)
{
    char detail[400];
    int last = e;

    if (conn_connect(c, &last) == 0) {
        return;
    }
    /* Every address refused: look the name up again next time. */
    c->o->have_addrs = resolve_is_ip(c->o->host);
    snprintf(detail, sizeof(detail), "Failed to connect to %s port %s: %s", c->o->host, c->o->port,
             strerror(last));
    conn_abort(c, "Couldn't connect to server: %s", detail);
}

/* Open a connection for r (taken off the waiting list). */
void aws_h1_conn_open(struct h1_origin *o, struct h1_req *r)
{
    struct aws_h1 *h = o->h;
    struct h1_conn *c = calloc(1, sizeof(*c));
    int e = 0;

    if (!c) {
        aws_h1_req_fail(r, "Out of memory: %s", "connection");
        return;
    }
    c->h = h;
    c->o = o;
    c->fd = -1;
    c->st = AWS_H1_CONNECTING;
    loop_timer_init(&c->timer);
    buf_init(&c->out, (size_t)1 << 30);
    aws_h1_answer_init(&c->ans, h->set.max_response);
    o->nconns++;
    c->next = o->conns;
    if (o->conns) {
        o->conns->prev = c;
    }
    o->conns = c;
    c->req = r;
    r->conn = c;
    loop_timer_start(h->loop, &c->timer, (uint64_t)r->connect_ms, on_conn_timer, c);
    if (conn_connect(c, &e) < 0) {
        conn_connect_failed(c, e);
    }
}

/* The answer is complete: hand it over, then the connection waits for
 * the next request (or closes). A send from the done callback waits for
 * the round's end, when c is idle again: nothing can free c meanwhile
 * but a destroy, which frees every connection. */
static void conn_deliver(struct h1_conn *c)
{
    struct aws_h1 *h = c->h;
    struct h1_origin *o = c->o;
    struct h1_req *r = c->req;

    c->req = NULL;
    r->conn = NULL;
    aws_h1_req_finish(r, c->ans.status, c->ans.in.data + c->ans.head_len, c->ans.body_len, NULL);
    if (h->dead) {
        return;
    }
    /* An answer before the whole request went out (a 413, say): the
     * rest of it would be read as the next request. */
    if (!c->ans.keep_alive || c->out_pos < c->out.len || c->body_pos < c->body_len) {
        aws_h1_conn_close(c);
        return;
    }
    conn_reset_answer(c);
    c->st = AWS_H1_IDLE;
    c->reused = 1;
    c->idle_since = loop_now_ms(h->loop);
    c->next_idle = o->idle;
    o->idle = c;
    if (o->wait_head) {
        aws_h1_origin_kick(o);
    }
}

/* New bytes of the answer are in: deliver it when complete. */
static void conn_parse(struct h1_conn *c)
{
    char err[256];
    int rc = aws_h1_answer_parse(&c->ans, err, sizeof(err));

    if (rc == 1) {
        conn_deliver(c);
    } else if (rc < 0) {
        c->reused = 0; /* the server answered: never sent again */
        if (rc == -2) {
            conn_abort(c, "%s", err);
        } else {
            conn_abort(c, "Weird server reply: %s", err);
        }
    }
}

/* The server closed (or broke) the connection while c was busy. */
static void conn_eof(struct h1_conn *c, int e)
{
    char detail[128];

    if (!e && aws_h1_answer_at_close(&c->ans)) {
        conn_deliver(c);
        return;
    }
    if (e) {
        conn_abort(c, "Failure when receiving data from the peer: Recv failure: %s", strerror(e));
    } else if (!c->got_bytes) {
        conn_abort(c, "Server returned nothing (no headers, no data): %s",
                   "Empty reply from server");
    } else if (c->ans.head_done && c->ans.kind == AWS_H1_BODY_LENGTH) {
        snprintf(detail, sizeof(detail), "transfer closed with %llu bytes remaining to read",
                 c->ans.clen - (unsigned long long)(c->ans.in.len - c->ans.head_len));
        conn_abort(c, "Transferred a partial file: %s", detail);
    } else {
        conn_abort(c, "Transferred a partial file: %s",
                   "transfer closed before the answer was complete");
    }
}

/* Room for the next read: what the buffer has free, at least
 * H1_READ_MIN (a large answer is read in ever larger pieces); 0 when the
 * answer is over its cap. */
static size_t in_room(struct h1_conn *c)
{
    size_t left = c->ans.in.max - c->ans.in.len, room;

    if (left == 0) {
        return 0;
    }
    if (c->ans.in.cap < c->ans.in.len + H1_READ_MIN + 1 &&
        buf_reserve(&c->ans.in, left < H1_READ_MIN ? left : H1_READ_MIN) < 0) {
        return 0;
    }
    room = c->ans.in.cap - c->ans.in.len - 1;
    return room < left ? room : left;
}

static void conn_too_large(struct h1_conn *c)
{
    char err[128];

    snprintf(err, sizeof(err), AWS_HTTP_TOO_LARGE " %zu bytes", c->h->set.max_response);
    conn_abort(c, "%s", err);
}

static void conn_read_plain(struct h1_conn *c)
{
    size_t room = in_room(c);
    ssize_t n;

    if (!room) {
        conn_too_large(c);
        return;
    }
    n = recv(c->fd, c->ans.in.data + c->ans.in.len, room, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            return;
        }
        conn_eof(c, errno);
        return;
    }
    if (n == 0) {
        conn_eof(c, 0);
        return;
    }
    c->got_bytes = 1;
    c->ans.in.len += (size_t)n;
    c->ans.in.data[c->ans.in.len] = '\0';
    conn_parse(c);
}

/* TLS: ciphertext in, handshake or plaintext out. */
static void conn_read_tls(struct h1_conn *c)
{
    unsigned char raw[16384];
    char err[256];
    ssize_t n = recv(c->fd, raw, sizeof(raw), 0);

    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            return;
        }
        if (c->st == AWS_H1_HANDSHAKE) {
            conn_abort(c, "SSL connect error: %s", strerror(errno));
        } else {
            conn_eof(c, errno);
        }
        return;
    }
    if (n == 0) {
        if (c->st == AWS_H1_HANDSHAKE) {
            conn_abort(c, "SSL connect error: %s", "the server closed the connection");
        } else {
            conn_eof(c, 0);
        }
        return;
    }
    if (tls_input(c->tls, raw, (size_t)n) < 0) {
        conn_abort(c, "Out of memory: %s", "tls");
        return;
    }
    if (c->st == AWS_H1_HANDSHAKE) {
        int rc = tls_handshake(c->tls, err, sizeof(err));

        if (tls_output(c->tls, &c->out) < 0) {
            conn_abort(c, "Out of memory: %s", "tls");
            return;
        }
        if (rc < 0) {
            conn_abort(c,
                       strstr(err, "certificate")
                           ? "SSL peer certificate or SSH remote key was not OK: %s"
                           : "SSL connect error: %s",
                       err);
            return;
        }
        if (conn_flush(c) < 0) {
            conn_abort(c, "SSL connect error: %s", strerror(errno));
            return;
        }
        if (rc == 1) {
            conn_ready(c);
        }
        return;
    }
    if (c->st == AWS_H1_IDLE) {
        /* An idle connection spoke: a close_notify or the end. */
        aws_h1_conn_close(c);
        return;
    }
    for (;;) {
        size_t room = in_room(c);
        ssize_t m;

        if (!room) {
            conn_too_large(c);
            return;
        }
        m = tls_read(c->tls, (unsigned char *)c->ans.in.data + c->ans.in.len, room, err,
                     sizeof(err));
        if (m == 0) {
            break;
        }
        if (m < 0) {
            if (tls_peer_closed(c->tls)) {
                conn_eof(c, 0);
            } else {
                conn_abort(c, "Failure when receiving data from the peer: %s", err);
            }
            return;
        }
        c->got_bytes = 1;
        c->ans.in.len += (size_t)m;
        c->ans.in.data[c->ans.in.len] = '\0';
    }
    if (tls_output(c->tls, &c->out) < 0 || (c->out.len > c->out_pos && conn_flush(c) < 0)) {
        conn_abort(c, "Failed sending data to the peer: %s", "tls");
        return;
    }
    conn_parse(c);
}

static void conn_connected(struct h1_conn *c)
{
    char err[256];
    int e = 0;
    socklen_t el = sizeof(e);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0) {
        e = errno;
    }
    if (e) {
        conn_connect_failed(c, e);
        return;
    }
    if (!c->o->tls) {
        if (watch(c, LOOP_READ) < 0) {
            conn_abort(c, "Out of memory: %s", "watch");
            return;
        }
        conn_ready(c);
        return;
    }
    c->st = AWS_H1_HANDSHAKE;
    c->tls = tls_new(c->h->ssl_ctx, c->o->host, err, sizeof(err));
    if (!c->tls) {
        conn_abort(c, "SSL connect error: %s", err);
        return;
    }
    if (tls_handshake(c->tls, err, sizeof(err)) < 0 || tls_output(c->tls, &c->out) < 0) {
        conn_abort(c, "SSL connect error: %s", err);
        return;
    }
    if (conn_flush(c) < 0) {
        conn_abort(c, "SSL connect error: %s", strerror(errno));
    }
}

static void conn_on_io(void *arg, int fd, unsigned events)
{
    struct h1_conn *c = arg;
    struct aws_h1 *h = c->h;

    (void)fd;
    aws_h1_enter(h);
    if (c->st == AWS_H1_CONNECTING) {
        conn_connected(c);
    } else if (c->st == AWS_H1_IDLE && !c->tls) {
        /* An idle connection is readable: the server closed it. */
        aws_h1_conn_close(c);
    } else if (events & (LOOP_READ | LOOP_ERROR)) {
        if (c->tls) {
            conn_read_tls(c);
        } else {
            conn_read_plain(c);
        }
    } else if (events & LOOP_WRITE) {
        if (conn_flush(c) < 0) {
            conn_abort(c, "Failed sending data to the peer: Send failure: %s", strerror(errno));
        }
    }
    aws_h1_leave(h);
}
