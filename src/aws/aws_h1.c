/* aws_h1.c - the HTTP/1.1 transport of our own (see aws_h1.h): requests
 * and origins.
 *
 * An origin per scheme://host:port holds its addresses, its connections
 * (aws_h1_conn.c), the idle ones among them and the requests waiting for
 * one. A request is answered exactly once, never inside send: send only
 * reuses an idle connection or queues, and the origin's deferred pump
 * opens connections at the end of the loop round. */
#include "aws/aws_h1_internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define H1_ADDRS_MS    60000 /* resolved addresses are used this long */
#define H1_REQ_POOL    256
#define H1_MAX_ORIGINS 64

static void origin_pump(void *arg);
static void h_free(struct aws_h1 *h);

void aws_h1_enter(struct aws_h1 *h)
{
    h->busy++;
}

void aws_h1_leave(struct aws_h1 *h)
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
void aws_h1_req_finish(struct h1_req *r, long status, const char *body, size_t len,
                       const char *terr)
{
    struct aws_h1 *h = r->h;
    aws_http_done_fn done = r->done;
    void *cctx = r->cctx;

    req_release(h, r);
    done(cctx, status, body, len, terr);
}

void aws_h1_req_fail(struct h1_req *r, const char *fmt, ...)
{
    char msg[AWS_H1_ERR];
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    n = strlen(msg);
    snprintf(msg + n, sizeof(msg) - n, " (%s)", r->req.url);
    aws_h1_req_finish(r, 0, NULL, 0, msg);
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
        h->ssl_ctx = tls_ctx_new(h->set.ca_file, NULL, NULL, "http/1.1", err, errlen);
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

void aws_h1_wait_push_front(struct h1_origin *o, struct h1_req *r)
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

void aws_h1_origin_kick(struct h1_origin *o)
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
        aws_h1_req_fail(r, fmt, detail);
    }
}

static void on_resolved(void *ctx, const struct resolve_addrs *a, const char *err)
{
    struct h1_origin *o = ctx;
    struct aws_h1 *h = o->h;

    o->resolving = 0;
    aws_h1_enter(h);
    if (!a || a->n == 0) {
        o->have_addrs = 0;
        origin_fail_waiting(o, "Couldn't resolve host name: %s", err ? err : "no address");
    } else {
        o->addrs = *a;
        o->have_addrs = 1;
        o->addrs_at = loop_now_ms(h->loop);
        origin_pump(o);
    }
    aws_h1_leave(h);
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

static void on_req_timer(void *arg)
{
    struct h1_req *r = arg;
    struct aws_h1 *h = r->h;
    struct h1_conn *c = r->conn;
    char what[128];

    aws_h1_enter(h);
    if (c) {
        snprintf(what, sizeof(what),
                 "Operation timed out after %ld milliseconds with %zu bytes "
                 "received",
                 r->total_ms,
                 c->ans.in.len > c->ans.head_len ? c->ans.in.len - c->ans.head_len : 0);
        c->req = NULL;
        r->conn = NULL;
        aws_h1_conn_close(c);
    } else {
        snprintf(what, sizeof(what), "Operation timed out after %ld milliseconds", r->total_ms);
        wait_remove(r->o, r);
    }
    aws_h1_req_fail(r, "Timeout was reached: %s", what);
    aws_h1_leave(h);
}

/* An idle connection of o marked busy, or NULL; ones idle too long are
 * closed on the way (the server may have dropped them). */
static struct h1_conn *origin_take_idle(struct h1_origin *o)
{
    struct h1_conn *c;

    while ((c = o->idle)) {
        o->idle = c->next_idle;
        c->next_idle = NULL;
        c->st = AWS_H1_BUSY;
        if (loop_now_ms(o->h->loop) - c->idle_since <= AWS_H1_IDLE_MS) {
            return c;
        }
        aws_h1_conn_free(c);
    }
    return NULL;
}

/* Give waiting requests idle connections, or new ones up to the limit. */
static void origin_pump(void *arg)
{
    struct h1_origin *o = arg;
    struct aws_h1 *h = o->h;

    aws_h1_enter(h);
    while (!h->dead && o->wait_head) {
        struct h1_conn *c = origin_take_idle(o);
        struct h1_req *r;

        if (c) {
            r = wait_pop(o);
            if (!loop_timer_armed(&r->timer)) {
                loop_timer_start(h->loop, &r->timer, (uint64_t)r->total_ms, on_req_timer, r);
            }
            aws_h1_conn_send(c, r);
            continue;
        }
        if (o->nconns >= h->set.max_conns) {
            break;
        }
        if (origin_addrs(o) <= 0) {
            break;
        }
        r = wait_pop(o);
        if (!loop_timer_armed(&r->timer)) {
            loop_timer_start(h->loop, &r->timer, (uint64_t)r->total_ms, on_req_timer, r);
        }
        aws_h1_conn_open(o, r);
    }
    aws_h1_leave(h);
}

static int h1_send(void *tctx, const struct aws_http_request *req, aws_http_done_fn done,
                   void *cctx)
{
    struct aws_h1 *h = tctx;
    struct h1_origin *o;
    struct h1_req *r;
    struct h1_conn *c;
    char err[AWS_H1_ERR];

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
    r->total_ms = h->set.request_timeout_ms;
    r->connect_ms = h->set.connect_timeout_ms;
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
    if (!o->wait_head && (c = origin_take_idle(o))) {
        loop_timer_start(h->loop, &r->timer, (uint64_t)r->total_ms, on_req_timer, r);
        aws_h1_enter(h);
        /* A failed write retries through the pump, never answers here:
         * the connection was reused and nothing came back yet. */
        aws_h1_conn_send(c, r);
        aws_h1_leave(h);
        return 0;
    }
    wait_push(o, r);
    aws_h1_origin_kick(o);
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

    if (o->http2) {
        snprintf(err, errlen, "aws http: HTTP/2 needs the libcurl transport");
        return NULL;
    }
    h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "aws http: out of memory");
        return NULL;
    }
    if (aws_http_settings_init(&h->set, o, err, errlen) != 0) {
        free(h);
        return NULL;
    }
    h->loop = loop;
    pool_init(&h->reqs, H1_REQ_POOL, offsetof(struct h1_req, pool_next));
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
    aws_http_settings_free(&h->set);
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
            aws_h1_conn_free(c);
            if (r) {
                r->conn = NULL;
                aws_h1_req_finish(r, 0, NULL, 0, "request aborted: client shutting down");
            }
        }
        while ((r = wait_pop(o)) != NULL) {
            aws_h1_req_finish(r, 0, NULL, 0, "request aborted: client shutting down");
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
