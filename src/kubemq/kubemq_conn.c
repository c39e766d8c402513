/* kubemq_conn.c - one broker connection: socket, TLS, reading and writing on the engine loop.
 *
 * A connection tries the resolved addresses in turn (non-blocking
 * connect), does the TLS handshake when asked (base/tls.c), then speaks
 * HTTP/2 through nghttp2's memory interface (kubemq_h2.c): bytes read from
 * the socket go to nghttp2_session_mem_recv (through OpenSSL first with
 * TLS), and nghttp2_session_mem_send output is gathered into one buffer
 * that a deferred call writes once at the end of the loop round - never
 * from inside nghttp2's callbacks.
 *
 * The socket is watched for reading all the time (the KubeMQ server resets
 * a connection whose receive window stays 0 for 20 s, so back-pressure is
 * never "stop reading") and for writing only while a write is blocked; a
 * turn reads at most READS_PER_TURN times so one busy connection cannot
 * starve the loop. A GOAWAY, an end of file (what a server's SIGTERM looks
 * like: no GOAWAY, no trailers) or any error ends every stream with
 * UNAVAILABLE and tells the client, which reconnects. A connection whose
 * client is gone lingers until its last responses are through. */
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
    tls_free(conn->tls);
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
    tls_free(conn->tls);
    conn->tls = NULL;
    if (conn->lingering) {
        conn->lingering = 0;
        lingering_count--;
        kubemq_conn_release(conn); /* the one the client left behind */
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

/* ---- writing ---- */

/* Plaintext frames from nghttp2 into the socket buffer. */
static int emit(struct kubemq_conn *conn, const uint8_t *p, size_t n)
{
    char err[256];

    if (!conn->tls) {
        return buf_append(&conn->out, p, n);
    }
    if (tls_write(conn->tls, p, n, err, sizeof(err)) < 0) {
        kubemq_conn_fail(conn, "%s", err);
        return -1;
    }
    return tls_output(conn->tls, &conn->out);
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
        kubemq_h2_send_acks(conn);
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

/* ---- reading ---- */

static int feed_h2(struct kubemq_conn *conn, const uint8_t *p, size_t n)
{
    ssize_t rv = nghttp2_session_mem_recv(conn->h2, p, n);

    if (rv < 0) {
        /* A TLS record (alert or handshake) where HTTP/2 frames were due. */
        if (!conn->tls && n >= 2 && (p[0] == 0x15 || p[0] == 0x16) && p[1] == 0x03) {
            kubemq_conn_fail(conn, "the server answered with TLS (turn tls on)");
        } else {
            kubemq_conn_fail(conn, "HTTP/2: %s", nghttp2_strerror((int)rv));
        }
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
    if (tls_input(conn->tls, p, n) < 0) {
        kubemq_conn_fail(conn, "tls: out of memory");
        return -1;
    }
    if (conn->state == KUBEMQ_CONN_HANDSHAKE) {
        rc = tls_handshake(conn->tls, err, sizeof(err));
        if (tls_output(conn->tls, &conn->out) < 0 || rc < 0) {
            kubemq_conn_fail(conn, "%s", rc < 0 ? err : "tls: out of memory");
            return -1;
        }
        kubemq_conn_kick(conn);
        if (rc == 0) {
            return 0;
        }
        if (!tls_alpn_is(conn->tls, "h2")) {
            kubemq_conn_fail(conn, "tls: the server did not select HTTP/2 (ALPN h2), which gRPC "
                                   "needs; is it a gRPC server?");
            return -1;
        }
        if (start_h2(conn) < 0) {
            return -1;
        }
    }
    while ((m = tls_read(conn->tls, plain, sizeof(plain), err, sizeof(err))) > 0) {
        if (feed_h2(conn, plain, (size_t)m) < 0) {
            return -1;
        }
    }
    if (m < 0) {
        kubemq_conn_fail(conn, "%s", err);
        return -1;
    }
    if (tls_output(conn->tls, &conn->out) < 0) {
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
            conn->rx_bytes += (uint64_t)n;
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
            if (conn->state == KUBEMQ_CONN_HANDSHAKE) {
                kubemq_conn_fail(conn, "the server closed the connection in the TLS handshake "
                                       "(is it a TLS port?)");
            } else if (conn->rx_bytes == 0) {
                /* Not even SETTINGS came: not an h2c gRPC port. */
                kubemq_conn_fail(conn, "the server closed the connection without a word "
                                       "(a TLS port? then turn tls on)");
            } else {
                kubemq_conn_fail(conn, "the server closed the connection (no GOAWAY)");
            }
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
    char err[256];

    if (kubemq_h2_start(conn, err, sizeof(err)) < 0) {
        kubemq_conn_fail(conn, "%s", err);
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
        resolve_format(sa, conn->peer, sizeof(conn->peer));
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
    conn->tls = tls_new(conn->ssl_ctx, conn->host, err, sizeof(err));
    if (!conn->tls) {
        kubemq_conn_fail(conn, "%s", err);
        return;
    }
    conn->state = KUBEMQ_CONN_HANDSHAKE;
    if (tls_handshake(conn->tls, err, sizeof(err)) < 0 || tls_output(conn->tls, &conn->out) < 0) {
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

struct kubemq_conn *kubemq_conn_open(struct kubemq_client *c, const struct resolve_addrs *addrs,
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
