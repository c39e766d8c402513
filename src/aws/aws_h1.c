/* aws_h1.c - the HTTP/1.1 transport of our own (see aws_h1.h).
 *
 * Objects: an origin per scheme://host:port (its addresses, its idle
 * connections, the requests waiting for one), a connection per socket, a
 * request per send. A request is answered exactly once, never inside
 * send: send only reuses an idle connection or queues, and the origin's
 * deferred pump opens connections at the end of the loop round. */
#include "aws/aws_h1.h"

#include "base/buf.h"
#include "base/pool.h"
#include "base/resolve.h"
#include "base/tls.h"
#include "base/version.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define H1_READ_MIN    ((size_t)16 << 10) /* free room before a read; more as the buffer grows */
#define H1_HEAD_MAX    ((size_t)64 << 10) /* status line and header lines of an answer */
#define H1_IDLE_MS     50000 /* older idle connections are closed, not reused (servers drop them) */
#define H1_ADDRS_MS    60000 /* resolved addresses are used this long */
#define H1_KEEP_BUF    ((size_t)64 << 10) /* buffer memory kept with an idle connection */
#define H1_REQ_POOL    256
#define H1_MAX_ORIGINS 64
#define H1_ERR         512

enum conn_state { CONN_CONNECTING, CONN_HANDSHAKE, CONN_BUSY, CONN_IDLE };

/* Where an answer's parse stands. */
enum body_kind { BODY_LENGTH, BODY_CHUNKED, BODY_TO_CLOSE, BODY_NONE };
enum chunk_state { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER, CH_DONE };

struct h1_req {
    struct aws_h1 *h;
    struct h1_origin *o;
    struct aws_http_request req; /* its pointers stay valid until done (the client's promise) */
    aws_http_done_fn done;
    void *cctx;
    struct h1_conn *conn; /* NULL while waiting */
    struct h1_req *next;  /* the origin's waiting list */
    struct loop_timer timer;
    long total_ms, connect_ms;
    int retried;
    void *pool_next;
};

struct h1_conn {
    struct aws_h1 *h;
    struct h1_origin *o;
    int fd;
    enum conn_state st;
    struct tls *tls;
    struct h1_req *req;
    struct h1_conn *next_idle;
    struct h1_conn *prev, *next; /* all of the origin's connections */
    struct loop_timer timer;     /* connect and handshake */
    uint64_t idle_since;
    unsigned watched;
    int addr_i;
    int reused;    /* answered a request before: a close before any answer is retried */
    int got_bytes; /* bytes of the current answer came */
    /* out: the head (plain) or all ciphertext due (TLS); the body of a
     * plain request is written from the caller's memory. */
    struct buf out;
    size_t out_pos;
    const char *body;
    size_t body_len, body_pos;
    /* the answer, parsed in place */
    struct buf in;
    size_t scanned;
    int head_done;
    long status;
    size_t head_len;
    enum body_kind kind;
    unsigned long long clen;
    int keep_alive;
    enum chunk_state ch;
    unsigned long long ch_left;
    size_t raw_pos, dec_pos;
};

struct h1_origin {
    struct aws_h1 *h;
    struct h1_origin *next;
    char *key; /* "scheme://authority" */
    int tls;
    char host[256];
    char port[8];
    char authority[300]; /* Host header */
    struct resolve_addrs addrs;
    int have_addrs;
    uint64_t addrs_at;
    struct resolver *res;
    int resolving;
    struct h1_conn *conns;
    struct h1_conn *idle; /* most recently used first */
    unsigned long nconns;
    struct h1_req *wait_head, *wait_tail;
    struct loop_defer pump;
};

struct aws_h1 {
    struct loop *loop;
    struct aws_transport transport;
    SSL_CTX *ssl_ctx; /* made at the first https origin */
    char *ca_file;
    long connect_timeout_ms;
    long request_timeout_ms;
    size_t max_response;
    unsigned long max_conns;
    struct h1_origin *origins;
    int norigins;
    struct pool reqs;
    int busy;
    int dead;
};

static void conn_close(struct h1_conn *c);
static void origin_pump(void *arg);
static void conn_on_io(void *arg, int fd, unsigned events);

/* ---- small helpers ---- */

static void h_enter(struct aws_h1 *h)
{
    h->busy++;
}

static void h_free(struct aws_h1 *h);

static void h_leave(struct aws_h1 *h)
{
    if (--h->busy == 0 && h->dead) {
        h_free(h);
    }
}

static void req_release(struct aws_h1 *h, struct h1_req *r)
{
    loop_timer_stop(h->loop, &r->timer);
    if (h->dead || pool_put(&h->reqs, r) < 0) {
        free(r);
    }
}

/* Answer r (detached from any connection and list) and let it go. */
static void req_finish(struct h1_req *r, long status, const char *body, size_t len,
                       const char *terr)
{
    struct aws_h1 *h = r->h;
    aws_http_done_fn done = r->done;
    void *cctx = r->cctx;

    req_release(h, r);
    done(cctx, status, body, len, terr);
}

static void req_fail(struct h1_req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void req_fail(struct h1_req *r, const char *fmt, ...)
{
    char msg[H1_ERR];
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    n = strlen(msg);
    snprintf(msg + n, sizeof(msg) - n, " (%s)", r->req.url);
    req_finish(r, 0, NULL, 0, msg);
}

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

/* "https://host:port/path?q" -> the origin's key length, scheme, host,
 * port, authority; the path is what follows the key ("" means "/"). */
static int split_url(const char *url, size_t *keylen, int *tls, char *host, size_t hostlen,
                     char *port, size_t portlen, char *authority, size_t authlen)
{
    const char *p, *a, *end, *h0, *h1, *colon = NULL;
    size_t hl;

    if (!strncasecmp(url, "https://", 8)) {
        *tls = 1;
        a = url + 8;
    } else if (!strncasecmp(url, "http://", 7)) {
        *tls = 0;
        a = url + 7;
    } else {
        return -1;
    }
    end = a + strcspn(a, "/?#");
    if (end == a || (size_t)(end - a) >= authlen) {
        return -1;
    }
    if (*a == '[') {
        h0 = a + 1;
        h1 = memchr(a, ']', (size_t)(end - a));
        if (!h1) {
            return -1;
        }
        if (h1 + 1 < end) {
            if (h1[1] != ':') {
                return -1;
            }
            colon = h1 + 1;
        }
    } else {
        h0 = a;
        colon = memchr(a, ':', (size_t)(end - a));
        h1 = colon ? colon : end;
    }
    hl = (size_t)(h1 - h0);
    if (!hl || hl >= hostlen) {
        return -1;
    }
    memcpy(host, h0, hl);
    host[hl] = '\0';
    if (colon) {
        size_t pl = (size_t)(end - colon - 1);

        if (!pl || pl >= portlen) {
            return -1;
        }
        for (p = colon + 1; p < end; p++) {
            if (*p < '0' || *p > '9') {
                return -1;
            }
        }
        memcpy(port, colon + 1, pl);
        port[pl] = '\0';
    } else {
        snprintf(port, portlen, "%s", *tls ? "443" : "80");
    }
    memcpy(authority, a, (size_t)(end - a));
    authority[end - a] = '\0';
    *keylen = (size_t)(end - url);
    return 0;
}

/* ---- origins ---- */

static struct h1_origin *origin_get(struct aws_h1 *h, const char *url, char *err, size_t errlen)
{
    struct h1_origin *o;
    char host[256], port[8], authority[300];
    size_t keylen;
    int tls;

    for (o = h->origins; o; o = o->next) {
        size_t n = strlen(o->key);

        if (!strncmp(url, o->key, n) && (url[n] == '\0' || url[n] == '/' || url[n] == '?')) {
            return o;
        }
    }
    if (split_url(url, &keylen, &tls, host, sizeof(host), port, sizeof(port), authority,
                  sizeof(authority)) < 0) {
        snprintf(err, errlen, "URL using bad/illegal format or missing URL (%s)", url);
        return NULL;
    }
    if (h->norigins >= H1_MAX_ORIGINS) {
        snprintf(err, errlen, "too many different servers (%d) for one client (%s)", H1_MAX_ORIGINS,
                 url);
        return NULL;
    }
    if (tls && !h->ssl_ctx) {
        h->ssl_ctx = tls_ctx_new(h->ca_file, NULL, NULL, "http/1.1", err, errlen);
        if (!h->ssl_ctx) {
            return NULL;
        }
    }
    o = calloc(1, sizeof(*o));
    if (!o || !(o->key = strndup(url, keylen))) {
        free(o);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    o->h = h;
    o->tls = tls;
    memcpy(o->host, host, sizeof(host));
    memcpy(o->port, port, sizeof(port));
    memcpy(o->authority, authority, sizeof(authority));
    loop_defer_init(&o->pump);
    o->next = h->origins;
    h->origins = o;
    h->norigins++;
    return o;
}

static void origin_free(struct h1_origin *o)
{
    resolve_destroy(o->res);
    loop_defer_cancel(o->h->loop, &o->pump);
    free(o->key);
    free(o);
}

static void wait_push_front(struct h1_origin *o, struct h1_req *r)
{
    r->next = o->wait_head;
    o->wait_head = r;
    if (!o->wait_tail) {
        o->wait_tail = r;
    }
}

static void wait_push(struct h1_origin *o, struct h1_req *r)
{
    r->next = NULL;
    if (o->wait_tail) {
        o->wait_tail->next = r;
    } else {
        o->wait_head = r;
    }
    o->wait_tail = r;
}

static struct h1_req *wait_pop(struct h1_origin *o)
{
    struct h1_req *r = o->wait_head;

    if (r) {
        o->wait_head = r->next;
        if (!o->wait_head) {
            o->wait_tail = NULL;
        }
        r->next = NULL;
    }
    return r;
}

static void wait_remove(struct h1_origin *o, struct h1_req *r)
{
    struct h1_req **pp, *prev = NULL;

    for (pp = &o->wait_head; *pp; prev = *pp, pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            if (o->wait_tail == r) {
                o->wait_tail = prev;
            }
            r->next = NULL;
            return;
        }
    }
}

static void origin_kick(struct h1_origin *o)
{
    if (!o->h->dead) {
        loop_defer(o->h->loop, &o->pump, origin_pump, o);
    }
}

/* Fail every request waiting on o (its server cannot be reached). */
static void origin_fail_waiting(struct h1_origin *o, const char *fmt, const char *detail)
{
    struct h1_req *r;

    while (!o->h->dead && (r = wait_pop(o)) != NULL) {
        req_fail(r, fmt, detail);
    }
}

static void on_resolved(void *ctx, const struct resolve_addrs *a, const char *err)
{
    struct h1_origin *o = ctx;
    struct aws_h1 *h = o->h;

    o->resolving = 0;
    h_enter(h);
    if (!a || a->n == 0) {
        o->have_addrs = 0;
        origin_fail_waiting(o, "Couldn't resolve host name: %s", err ? err : "no address");
    } else {
        o->addrs = *a;
        o->have_addrs = 1;
        o->addrs_at = loop_now_ms(h->loop);
        origin_pump(o);
    }
    h_leave(h);
}

/* 1 when addresses are ready, 0 when a lookup runs (pump again after
 * it), -1 when it could not be started (waiting requests failed). */
static int origin_addrs(struct h1_origin *o)
{
    struct aws_h1 *h = o->h;
    char err[256];

    if (o->have_addrs &&
        (resolve_is_ip(o->host) || loop_now_ms(h->loop) - o->addrs_at < H1_ADDRS_MS)) {
        return 1;
    }
    if (resolve_is_ip(o->host)) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&o->addrs.addr[0];
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&o->addrs.addr[0];
        unsigned port = (unsigned)strtoul(o->port, NULL, 10);

        memset(&o->addrs, 0, sizeof(o->addrs));
        if (inet_pton(AF_INET, o->host, &s4->sin_addr) == 1) {
            s4->sin_family = AF_INET;
            s4->sin_port = htons((uint16_t)port);
            o->addrs.len[0] = sizeof(*s4);
        } else if (inet_pton(AF_INET6, o->host, &s6->sin6_addr) == 1) {
            s6->sin6_family = AF_INET6;
            s6->sin6_port = htons((uint16_t)port);
            o->addrs.len[0] = sizeof(*s6);
        } else {
            origin_fail_waiting(o, "Couldn't resolve host name: bad address %s", o->host);
            return -1;
        }
        o->addrs.n = 1;
        o->have_addrs = 1;
        return 1;
    }
    if (o->resolving) {
        return 0;
    }
    if (!o->res && !(o->res = resolve_create(h->loop, err, sizeof(err)))) {
        origin_fail_waiting(o, "Couldn't resolve host name: %s", err);
        return -1;
    }
    o->resolving = 1;
    if (resolve_start(o->res, o->host, o->port, on_resolved, o) < 0) {
        o->resolving = 0;
        origin_fail_waiting(o, "Couldn't resolve host name: %s", "out of memory");
        return -1;
    }
    return 0;
}

/* ---- connections ---- */

static void conn_reset_answer(struct h1_conn *c)
{
    if (c->in.cap > H1_KEEP_BUF) {
        buf_free(&c->in);
    }
    if (c->out.cap > H1_KEEP_BUF) {
        buf_free(&c->out);
    }
    buf_reset(&c->in);
    c->scanned = 0;
    c->head_done = 0;
    c->status = 0;
    c->head_len = 0;
    c->kind = BODY_NONE;
    c->clen = 0;
    c->keep_alive = 1;
    c->ch = CH_SIZE;
    c->ch_left = 0;
    c->raw_pos = c->dec_pos = 0;
    c->got_bytes = 0;
}

/* Take r off c (c is closing); r goes on: retried, or failed with msg. */
static void conn_lost_req(struct h1_conn *c, const char *fmt, const char *detail)
{
    struct h1_req *r = c->req;

    if (!r) {
        return;
    }
    c->req = NULL;
    r->conn = NULL;
    if (c->reused && !c->got_bytes && !r->retried) {
        /* The server closed a kept-alive connection as we reused it: the
         * request never reached it, so it goes again on a new one. */
        r->retried = 1;
        wait_push_front(c->o, r);
        origin_kick(c->o);
        return;
    }
    req_fail(r, fmt, detail);
}

static void conn_free(struct h1_conn *c)
{
    struct h1_origin *o = c->o;
    struct h1_conn **pp;

    if (c->st == CONN_IDLE) {
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
    buf_free(&c->in);
    o->nconns--;
    free(c);
}

/* Close c; its request (if any) must have been dealt with. */
static void conn_close(struct h1_conn *c)
{
    struct h1_origin *o = c->o;

    conn_free(c);
    origin_kick(o);
}

/* Close c and fail or retry its request. */
static void conn_abort(struct h1_conn *c, const char *fmt, const char *detail)
{
    struct h1_origin *o = c->o;
    struct h1_req *r = c->req;
    int retry = r && c->reused && !c->got_bytes && !r->retried;

    if (retry) {
        conn_lost_req(c, fmt, detail);
        conn_free(c);
        origin_kick(o);
        return;
    }
    c->req = NULL;
    if (r) {
        r->conn = NULL;
    }
    conn_free(c);
    origin_kick(o);
    if (r) {
        req_fail(r, fmt, detail);
    }
}

/* Write what is due; 0 (maybe more to write later), -1 failed (errno). */
static int conn_flush(struct h1_conn *c)
{
    for (;;) {
        struct iovec iov[2];
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
        w = writev(c->fd, iov, n);
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
static int conn_send(struct h1_conn *c, struct h1_req *r)
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
    c->st = CONN_BUSY;
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
    conn_send(c, r);
}

static void on_conn_timer(void *arg)
{
    struct h1_conn *c = arg;
    struct aws_h1 *h = c->h;
    char what[64];

    snprintf(what, sizeof(what), "%s timed out after %ld milliseconds",
             c->st == CONN_CONNECTING ? "Connection" : "SSL handshake",
             c->req ? c->req->connect_ms : 0L);
    h_enter(h);
    c->reused = 0;
    conn_abort(c, "Timeout was reached: %s", what);
    h_leave(h);
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
static void conn_open(struct h1_origin *o, struct h1_req *r)
{
    struct aws_h1 *h = o->h;
    struct h1_conn *c = calloc(1, sizeof(*c));
    int e = 0;

    if (!c) {
        req_fail(r, "Out of memory: %s", "connection");
        return;
    }
    c->h = h;
    c->o = o;
    c->fd = -1;
    c->st = CONN_CONNECTING;
    loop_timer_init(&c->timer);
    buf_init(&c->out, (size_t)1 << 30);
    buf_init(&c->in, h->max_response + H1_HEAD_MAX + H1_READ_MIN);
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

static void on_req_timer(void *arg)
{
    struct h1_req *r = arg;
    struct aws_h1 *h = r->h;
    struct h1_conn *c = r->conn;
    char what[128];

    h_enter(h);
    if (c) {
        snprintf(what, sizeof(what),
                 "Operation timed out after %ld milliseconds with %zu bytes "
                 "received",
                 r->total_ms, c->in.len > c->head_len ? c->in.len - c->head_len : 0);
        c->req = NULL;
        r->conn = NULL;
        conn_close(c);
    } else {
        snprintf(what, sizeof(what), "Operation timed out after %ld milliseconds", r->total_ms);
        wait_remove(r->o, r);
    }
    req_fail(r, "Timeout was reached: %s", what);
    h_leave(h);
}

/* Give waiting requests idle connections, or new ones up to the limit. */
static void origin_pump(void *arg)
{
    struct h1_origin *o = arg;
    struct aws_h1 *h = o->h;

    h_enter(h);
    while (!h->dead && o->wait_head) {
        struct h1_conn *c = o->idle;
        struct h1_req *r;

        if (c) {
            o->idle = c->next_idle;
            c->next_idle = NULL;
            c->st = CONN_BUSY;
            if (loop_now_ms(h->loop) - c->idle_since > H1_IDLE_MS) {
                conn_free(c);
                continue;
            }
            r = wait_pop(o);
            if (!loop_timer_armed(&r->timer)) {
                loop_timer_start(h->loop, &r->timer, (uint64_t)r->total_ms, on_req_timer, r);
            }
            conn_send(c, r);
            continue;
        }
        if (o->nconns >= h->max_conns) {
            break;
        }
        if (origin_addrs(o) <= 0) {
            break;
        }
        r = wait_pop(o);
        if (!loop_timer_armed(&r->timer)) {
            loop_timer_start(h->loop, &r->timer, (uint64_t)r->total_ms, on_req_timer, r);
        }
        conn_open(o, r);
    }
    h_leave(h);
}

/* ---- reading an answer ---- */

/* The status line and headers. 0: more bytes needed, or the head is done
 * (head_done); 1: an interim (1xx) answer was dropped, parse again; -1
 * malformed; -2 the announced body is over the cap. */
static int parse_head(struct h1_conn *c, char *err, size_t errlen)
{
    char *p = c->in.data, *end, *line, *eol;
    size_t from = c->scanned > 3 ? c->scanned - 3 : 0;
    char *hit = NULL;

    for (line = p + from; line + 3 < p + c->in.len; line++) {
        if (line[0] == '\r' && line[1] == '\n' && line[2] == '\r' && line[3] == '\n') {
            hit = line;
            break;
        }
    }
    c->scanned = c->in.len;
    if (!hit) {
        if (c->in.len > H1_HEAD_MAX) {
            snprintf(err, errlen, "answer head larger than %zu bytes", H1_HEAD_MAX);
            return -1;
        }
        return 0;
    }
    end = hit + 2; /* the head's last line break */
    if (c->in.len < 12 || strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ' || p[9] < '1' ||
        p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9') {
        snprintf(err, errlen, "not an HTTP/1.x status line");
        return -1;
    }
    c->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    c->keep_alive = p[7] == '1';
    c->kind = BODY_TO_CLOSE;
    line = memchr(p, '\n', (size_t)(end - p)) + 1;
    for (; line < end; line = eol + 1) {
        char *colon, *v, *ve;

        eol = memchr(line, '\n', (size_t)(end - line));
        ve = eol > line && eol[-1] == '\r' ? eol - 1 : eol;
        colon = memchr(line, ':', (size_t)(ve - line));
        if (!colon) {
            continue;
        }
        for (v = colon + 1; v < ve && (*v == ' ' || *v == '\t'); v++) {
        }
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) {
            ve--;
        }
#define IS(name)                                                                                   \
    ((size_t)(colon - line) == sizeof(name) - 1 && !strncasecmp(line, name, sizeof(name) - 1))
        if (IS("Content-Length")) {
            char *q;
            unsigned long long n = 0;

            if (v == ve) {
                snprintf(err, errlen, "empty Content-Length");
                return -1;
            }
            for (q = v; q < ve; q++) {
                if (*q < '0' || *q > '9' || n > (1ull << 40)) {
                    snprintf(err, errlen, "bad Content-Length");
                    return -1;
                }
                n = n * 10 + (unsigned)(*q - '0');
            }
            if (c->kind != BODY_CHUNKED) {
                c->kind = BODY_LENGTH;
                c->clen = n;
            }
        } else if (IS("Transfer-Encoding")) {
            if ((size_t)(ve - v) >= 7 && !strncasecmp(ve - 7, "chunked", 7)) {
                c->kind = BODY_CHUNKED;
            }
        } else if (IS("Connection")) {
            if ((size_t)(ve - v) == 5 && !strncasecmp(v, "close", 5)) {
                c->keep_alive = 0;
            } else if ((size_t)(ve - v) == 10 && !strncasecmp(v, "keep-alive", 10)) {
                c->keep_alive = 1;
            }
        } else if (IS("x-amzn-ErrorType")) {
            struct h1_req *r = c->req;

            if (r->req.error_type_hdr && r->req.error_type_hdr_len) {
                snprintf(r->req.error_type_hdr, r->req.error_type_hdr_len, "%.*s", (int)(ve - v),
                         v);
            }
        }
#undef IS
    }
    c->head_len = (size_t)(end + 2 - p);
    if (c->status < 200) {
        /* 100 Continue and friends: the real answer follows. */
        memmove(p, p + c->head_len, c->in.len - c->head_len);
        c->in.len -= c->head_len;
        c->scanned = 0;
        c->head_len = 0;
        return 1; /* parse what is left */
    }
    if (c->status == 204 || c->status == 304) {
        c->kind = BODY_NONE;
    }
    if (c->kind == BODY_LENGTH && c->clen > c->h->max_response) {
        snprintf(err, errlen, AWS_HTTP_TOO_LARGE " %zu bytes", c->h->max_response);
        return -2;
    }
    if (c->kind == BODY_TO_CLOSE) {
        c->keep_alive = 0;
    }
    c->head_done = 1;
    c->raw_pos = c->dec_pos = c->head_len;
    return 0;
}

/* Decode chunks in place: the data moves down over the chunk lines.
 * 1 complete, 0 more needed, -1 malformed. */
static int parse_chunks(struct h1_conn *c, char *err, size_t errlen)
{
    char *p = c->in.data;
    size_t end = c->in.len;

    while (c->raw_pos < end && c->ch != CH_DONE) {
        if (c->ch == CH_DATA) {
            size_t n = end - c->raw_pos;

            if (n > c->ch_left) {
                n = (size_t)c->ch_left;
            }
            if (c->dec_pos != c->raw_pos) {
                memmove(p + c->dec_pos, p + c->raw_pos, n);
            }
            c->dec_pos += n;
            c->raw_pos += n;
            c->ch_left -= n;
            if (c->ch_left == 0) {
                c->ch = CH_DATA_END;
            }
            continue;
        }
        {
            char *nl = memchr(p + c->raw_pos, '\n', end - c->raw_pos);
            char *line = p + c->raw_pos, *q;
            size_t ll;

            if (!nl) {
                if (end - c->raw_pos > 4096) {
                    snprintf(err, errlen, "chunk line too long");
                    return -1;
                }
                break;
            }
            ll = (size_t)(nl - line);
            if (ll && line[ll - 1] == '\r') {
                ll--;
            }
            c->raw_pos = (size_t)(nl - p) + 1;
            if (c->ch == CH_DATA_END) {
                if (ll != 0) {
                    snprintf(err, errlen, "chunk not followed by a line break");
                    return -1;
                }
                c->ch = CH_SIZE;
            } else if (c->ch == CH_TRAILER) {
                if (ll == 0) {
                    c->ch = CH_DONE;
                }
            } else {
                unsigned long long n = 0;
                int digits = 0;

                for (q = line; q < line + ll && *q != ';' && *q != ' '; q++, digits++) {
                    int d = (*q >= '0' && *q <= '9')   ? *q - '0'
                            : (*q >= 'a' && *q <= 'f') ? *q - 'a' + 10
                            : (*q >= 'A' && *q <= 'F') ? *q - 'A' + 10
                                                       : -1;

                    if (d < 0 || n > (1ull << 40)) {
                        snprintf(err, errlen, "bad chunk size");
                        return -1;
                    }
                    n = n * 16 + (unsigned)d;
                }
                if (!digits) {
                    snprintf(err, errlen, "bad chunk size");
                    return -1;
                }
                if (n == 0) {
                    c->ch = CH_TRAILER;
                } else {
                    c->ch_left = n;
                    c->ch = CH_DATA;
                }
            }
        }
    }
    /* What is left undecoded (a partial line) moves down too. */
    if (c->raw_pos > c->dec_pos) {
        memmove(p + c->dec_pos, p + c->raw_pos, end - c->raw_pos);
        c->in.len = c->dec_pos + (end - c->raw_pos);
        c->raw_pos = c->dec_pos;
        c->in.data[c->in.len] = '\0';
    }
    if (c->ch == CH_DONE) {
        if (c->raw_pos != c->in.len) {
            c->keep_alive = 0; /* bytes after the answer: do not trust the connection */
        }
        return 1;
    }
    return 0;
}

/* The answer is complete: hand it over, then the connection waits for
 * the next request (or closes). A send from the done callback waits for
 * the round's end, when c is idle again: nothing can free c meanwhile
 * but a destroy, which frees every connection. */
static void conn_deliver(struct h1_conn *c, size_t body_len)
{
    struct aws_h1 *h = c->h;
    struct h1_origin *o = c->o;
    struct h1_req *r = c->req;

    c->req = NULL;
    r->conn = NULL;
    req_finish(r, c->status, c->in.data ? c->in.data + c->head_len : "", body_len, NULL);
    if (h->dead) {
        return;
    }
    if (!c->keep_alive) {
        conn_close(c);
        return;
    }
    conn_reset_answer(c);
    c->st = CONN_IDLE;
    c->reused = 1;
    c->idle_since = loop_now_ms(h->loop);
    c->next_idle = o->idle;
    o->idle = c;
    if (o->wait_head) {
        origin_kick(o);
    }
}

/* New bytes of the answer are in c->in: deliver when complete. */
static void conn_parse(struct h1_conn *c)
{
    char err[256];
    int rc;

    while (!c->head_done) {
        rc = parse_head(c, err, sizeof(err));
        if (rc < 0) {
            c->reused = 0;
            if (rc == -2) {
                conn_abort(c, "%s", err);
            } else {
                conn_abort(c, "Weird server reply: %s", err);
            }
            return;
        }
        if (rc == 0 && !c->head_done) {
            return;
        }
    }
    switch (c->kind) {
    case BODY_NONE:
        if (c->in.len > c->head_len) {
            c->keep_alive = 0;
        }
        conn_deliver(c, 0);
        return;
    case BODY_LENGTH:
        if (c->in.len - c->head_len >= c->clen) {
            if (c->in.len - c->head_len > c->clen) {
                c->keep_alive = 0;
            }
            conn_deliver(c, (size_t)c->clen);
        }
        return;
    case BODY_CHUNKED:
        rc = parse_chunks(c, err, sizeof(err));
        if (rc < 0) {
            conn_abort(c, "Weird server reply: %s", err);
        } else if (c->dec_pos - c->head_len > c->h->max_response) {
            snprintf(err, sizeof(err), AWS_HTTP_TOO_LARGE " %zu bytes", c->h->max_response);
            conn_abort(c, "%s", err);
        } else if (rc == 1) {
            conn_deliver(c, c->dec_pos - c->head_len);
        }
        return;
    case BODY_TO_CLOSE:
        if (c->in.len - c->head_len > c->h->max_response) {
            snprintf(err, sizeof(err), AWS_HTTP_TOO_LARGE " %zu bytes", c->h->max_response);
            conn_abort(c, "%s", err);
        }
        return; /* complete at the close */
    }
}

/* The server closed (or broke) the connection while c was busy. */
static void conn_eof(struct h1_conn *c, int e)
{
    char detail[128];

    if (c->head_done && c->kind == BODY_TO_CLOSE && !e) {
        conn_deliver(c, c->in.len - c->head_len);
        return;
    }
    if (e) {
        conn_abort(c, "Failure when receiving data from the peer: Recv failure: %s", strerror(e));
    } else if (!c->got_bytes) {
        conn_abort(c, "Server returned nothing (no headers, no data): %s",
                   "Empty reply from server");
    } else if (c->head_done && c->kind == BODY_LENGTH) {
        snprintf(detail, sizeof(detail), "transfer closed with %llu bytes remaining to read",
                 c->clen - (unsigned long long)(c->in.len - c->head_len));
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
    size_t left = c->in.max - c->in.len, room;

    if (left == 0) {
        return 0;
    }
    if (c->in.cap < c->in.len + H1_READ_MIN + 1 &&
        buf_reserve(&c->in, left < H1_READ_MIN ? left : H1_READ_MIN) < 0) {
        return 0;
    }
    room = c->in.cap - c->in.len - 1;
    return room < left ? room : left;
}

static void conn_too_large(struct h1_conn *c)
{
    char err[128];

    snprintf(err, sizeof(err), AWS_HTTP_TOO_LARGE " %zu bytes", c->h->max_response);
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
    n = recv(c->fd, c->in.data + c->in.len, room, 0);
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
    c->in.len += (size_t)n;
    c->in.data[c->in.len] = '\0';
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
        if (c->st == CONN_HANDSHAKE) {
            conn_abort(c, "SSL connect error: %s", strerror(errno));
        } else {
            conn_eof(c, errno);
        }
        return;
    }
    if (n == 0) {
        if (c->st == CONN_HANDSHAKE) {
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
    if (c->st == CONN_HANDSHAKE) {
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
    if (c->st == CONN_IDLE) {
        /* An idle connection spoke: a close_notify or the end. */
        conn_close(c);
        return;
    }
    for (;;) {
        size_t room = in_room(c);
        ssize_t m;

        if (!room) {
            conn_too_large(c);
            return;
        }
        m = tls_read(c->tls, (unsigned char *)c->in.data + c->in.len, room, err, sizeof(err));
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
        c->in.len += (size_t)m;
        c->in.data[c->in.len] = '\0';
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
    c->st = CONN_HANDSHAKE;
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
    h_enter(h);
    if (c->st == CONN_CONNECTING) {
        conn_connected(c);
    } else if (c->st == CONN_IDLE && !c->tls) {
        /* An idle connection is readable: the server closed it. */
        conn_close(c);
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
    h_leave(h);
}

/* ---- the transport ---- */

static int h1_send(void *tctx, const struct aws_http_request *req, aws_http_done_fn done,
                   void *cctx)
{
    struct aws_h1 *h = tctx;
    struct h1_origin *o;
    struct h1_req *r;
    char err[H1_ERR];

    if (h->dead || !req->url) {
        return -1;
    }
    o = origin_get(h, req->url, err, sizeof(err));
    if (!o) {
        return -1;
    }
    r = pool_get(&h->reqs);
    if (!r) {
        r = malloc(sizeof(*r));
        if (!r) {
            return -1;
        }
    }
    memset(r, 0, sizeof(*r));
    r->h = h;
    r->o = o;
    r->req = *req;
    r->done = done;
    r->cctx = cctx;
    loop_timer_init(&r->timer);
    r->total_ms = h->request_timeout_ms;
    r->connect_ms = h->connect_timeout_ms;
    if (req->timeout_ms > 0) {
        r->total_ms = req->timeout_ms;
        if (req->timeout_ms < r->connect_ms) {
            r->connect_ms = req->timeout_ms;
        }
    }
    if (r->req.error_type_hdr && r->req.error_type_hdr_len) {
        r->req.error_type_hdr[0] = '\0';
    }
    /* Reuse an idle connection at once (one write, no wait for the
     * round's end); anything else waits for the pump. */
    while (o->idle && !o->wait_head) {
        struct h1_conn *c = o->idle;

        o->idle = c->next_idle;
        c->next_idle = NULL;
        c->st = CONN_BUSY;
        if (loop_now_ms(h->loop) - c->idle_since > H1_IDLE_MS) {
            conn_free(c);
            continue;
        }
        loop_timer_start(h->loop, &r->timer, (uint64_t)r->total_ms, on_req_timer, r);
        h_enter(h);
        /* A failed write retries through the pump, never answers here:
         * the connection was reused and nothing came back yet. */
        conn_send(c, r);
        h_leave(h);
        return 0;
    }
    wait_push(o, r);
    origin_kick(o);
    return 0;
}

int aws_h1_proxy_in_env(void)
{
    static const char *const names[] = {"https_proxy", "HTTPS_PROXY", "http_proxy", "ALL_PROXY",
                                        "all_proxy"};
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = getenv(names[i]);

        if (v && *v) {
            return 1;
        }
    }
    return 0;
}

struct aws_h1 *aws_h1_create(struct loop *loop, const struct aws_http_options *o, char *err,
                             size_t errlen)
{
    struct aws_h1 *h;
    const char *ca = o->ca_file && *o->ca_file ? o->ca_file : getenv("AWS_CA_BUNDLE");

    if (o->http2) {
        snprintf(err, errlen, "aws http: HTTP/2 needs the libcurl transport");
        return NULL;
    }
    if (ca && *ca && access(ca, R_OK) != 0) {
        snprintf(err, errlen, "aws http: CA file '%s' is not readable", ca);
        return NULL;
    }
    h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "aws http: out of memory");
        return NULL;
    }
    h->loop = loop;
    h->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 5000;
    h->request_timeout_ms = o->request_timeout_ms > 0 ? o->request_timeout_ms : 30000;
    h->max_response = o->max_response_bytes ? o->max_response_bytes : AWS_HTTP_MAX_RESPONSE;
    h->max_conns = o->max_connections > 0 ? (unsigned long)o->max_connections : 64;
    pool_init(&h->reqs, H1_REQ_POOL, offsetof(struct h1_req, pool_next));
    if (ca && *ca && !(h->ca_file = strdup(ca))) {
        snprintf(err, errlen, "aws http: out of memory");
        free(h);
        return NULL;
    }
    h->transport.send = h1_send;
    h->transport.tctx = h;
    return h;
}

static void h_free(struct aws_h1 *h)
{
    struct h1_req *r;

    while (h->origins) {
        struct h1_origin *o = h->origins;

        h->origins = o->next;
        origin_free(o);
    }
    while ((r = pool_get(&h->reqs)) != NULL) {
        free(r);
    }
    if (h->ssl_ctx) {
        SSL_CTX_free(h->ssl_ctx);
    }
    free(h->ca_file);
    free(h);
}

void aws_h1_destroy(struct aws_h1 *h)
{
    struct h1_origin *o;

    if (!h || h->dead) {
        return;
    }
    h->dead = 1;
    h->busy++;
    for (o = h->origins; o; o = o->next) {
        struct h1_req *r;

        loop_defer_cancel(h->loop, &o->pump);
        if (o->resolving) {
            resolve_cancel(o->res);
            o->resolving = 0;
        }
        while (o->conns) {
            struct h1_conn *c = o->conns;

            r = c->req;
            c->req = NULL;
            conn_free(c);
            if (r) {
                r->conn = NULL;
                req_finish(r, 0, NULL, 0, "request aborted: client shutting down");
            }
        }
        while ((r = wait_pop(o)) != NULL) {
            req_finish(r, 0, NULL, 0, "request aborted: client shutting down");
        }
    }
    if (--h->busy == 0) {
        h_free(h);
    }
}

const struct aws_transport *aws_h1_transport(struct aws_h1 *h)
{
    return &h->transport;
}
