/* aws_http.c - the libcurl multi-socket transport on the engine loop. */
#include "aws/aws_http.h"

#include "base/buf.h"
#include "base/version.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HTTP_IDLE_HANDLES  64          /* easy handles kept for reuse */
#define HTTP_KEEP_RESPONSE (64u << 10) /* response memory kept with them */

/* What the loop watches for a socket of curl's (struct aws_http.fds,
 * indexed by fd): curl's own sockets (opened and closed through our
 * callbacks) stay watched for reading between transfers. */
#define FD_READ   0x1 /* watched for reading */
#define FD_WRITE  0x2 /* watched for writing */
#define FD_OURS   0x4 /* opened by curl through opensocket_cb: we see its close */
#define FD_PARKED 0x8 /* curl does not want it now (an idle keep-alive connection) */
#define FD_MAX    (1 << 20)

/* Counters; in_flight also bounds the connections in use. */
struct aws_http_stats {
    unsigned long requests;    /* started */
    unsigned long connections; /* new connections opened */
    unsigned long in_flight;
};

struct xfer {
    struct aws_http *h;
    CURL *easy;
    /* Header list nodes pointing at the request's own lines (valid until
     * done): curl only reads the list, so nothing is copied per request. */
    struct curl_slist nodes[AWS_HTTP_MAX_HEADERS];
    struct curl_slist *headers;
    struct buf resp;
    char errbuf[CURL_ERROR_SIZE];
    aws_http_done_fn done;
    void *cctx;
    char *etype_out;
    size_t etype_len;
    int too_large;
    struct xfer *prev, *next;
};

/* A request waiting for a free connection: its pointers stay valid until
 * done runs (the client's promise), so nothing is copied. */
struct waiting {
    struct aws_http_request req;
    aws_http_done_fn done;
    void *cctx;
    struct waiting *next;
};

struct aws_http {
    struct loop *loop;
    CURLM *multi;
    struct loop_timer timer;
    struct aws_transport transport;
    struct aws_http_settings set;
    int http2;
    struct xfer *active; /* in flight, doubly linked */
    struct xfer *idle;   /* free list (singly linked through next) */
    size_t nidle;
    /* HTTP/1.1: requests past max_connections wait here rather than in
     * curl, so only as many easy handles (16 KiB buffers each) exist as
     * can be on the wire. */
    struct waiting *wait_head, *wait_tail;
    int busy; /* > 0 while dispatching into curl or callbacks */
    int dead; /* destroy was asked for while busy */
    struct aws_http_stats stats;
    unsigned char *fds; /* FD_* per socket number */
    size_t nfds;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void http_free(struct aws_http *h);

/* ---- loop <-> curl ---- */

static void check_done(struct aws_http *h);

static void on_timer(void *arg)
{
    struct aws_http *h = arg;
    int running;

    h->busy++;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(h);
    if (--h->busy == 0 && h->dead) {
        http_free(h);
    }
}

static unsigned char *fd_state(struct aws_http *h, int fd, int grow)
{
    if (fd < 0 || fd >= FD_MAX) {
        return NULL;
    }
    if ((size_t)fd >= h->nfds) {
        size_t n = h->nfds ? h->nfds : 64;
        unsigned char *p;

        if (!grow) {
            return NULL;
        }
        while (n <= (size_t)fd) {
            n *= 2;
        }
        p = realloc(h->fds, n);
        if (!p) {
            return NULL;
        }
        memset(p + h->nfds, 0, n - h->nfds);
        h->fds = p;
        h->nfds = n;
    }
    return &h->fds[fd];
}

/* Watch fd for ev (LOOP_READ/LOOP_WRITE, 0: not at all), with one epoll
 * change only when that differs from what is watched now. */
static int fd_watch(struct aws_http *h, int fd, unsigned ev);

static void on_io(void *arg, int fd, unsigned events)
{
    struct aws_http *h = arg;
    unsigned char *st = fd_state(h, fd, 0);
    int running, flags = 0;

    if (st && (*st & FD_PARKED)) {
        /* An idle keep-alive connection became readable: the server closed
         * it (or broke the protocol). Stop watching; curl finds it dead
         * when it next looks for a connection to reuse. */
        fd_watch(h, fd, 0);
        return;
    }

    if (events & LOOP_READ) {
        flags |= CURL_CSELECT_IN;
    }
    if (events & LOOP_WRITE) {
        flags |= CURL_CSELECT_OUT;
    }
    if (events & LOOP_ERROR) {
        flags |= CURL_CSELECT_ERR;
    }
    h->busy++;
    curl_multi_socket_action(h->multi, fd, flags, &running);
    check_done(h);
    if (--h->busy == 0 && h->dead) {
        http_free(h);
    }
}

static int fd_watch(struct aws_http *h, int fd, unsigned ev)
{
    /* Without a state byte (out of memory) the fd is watched untracked,
     * one epoll change per call as before. */
    unsigned char *st = fd_state(h, fd, ev != 0);
    unsigned want = ((ev & LOOP_READ) ? FD_READ : 0) | ((ev & LOOP_WRITE) ? FD_WRITE : 0);

    if (st && want && (unsigned)(*st & (FD_READ | FD_WRITE)) == want) {
        return 0;
    }
    if (st) {
        *st &= (unsigned char)~(FD_READ | FD_WRITE);
    }
    if (loop_io_set(h->loop, fd, ev, on_io, h) < 0) {
        /* A stale watch for a reused fd number: drop it and add anew. */
        loop_io_set(h->loop, fd, 0, NULL, NULL);
        if (loop_io_set(h->loop, fd, ev, on_io, h) < 0) {
            return -1;
        }
    }
    if (st) {
        *st |= (unsigned char)want;
    }
    return 0;
}

/* Between transfers curl drops a keep-alive connection's socket (REMOVE)
 * and asks for it again (IN) when the next transfer reuses it: two epoll
 * changes per request. A connection's socket stays watched for reading
 * instead ("parked"), so reuse costs nothing. Only sockets curl opened
 * through opensocket_cb and was reading qualify: curl closes those through
 * closesocket_cb, so we always know when the number is free again. Its
 * connect attempts (watched for writing), which curl may close without
 * telling us, and its resolver's wake-up pair are dropped as before. */
static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct aws_http *h = userp;
    unsigned char *st = fd_state(h, s, 0);
    unsigned ev = 0;

    (void)easy;
    (void)socketp;
    if (what == CURL_POLL_REMOVE) {
        if (st && (*st & (FD_OURS | FD_READ | FD_WRITE)) == (FD_OURS | FD_READ) && !h->dead) {
            *st |= FD_PARKED;
            return 0;
        }
        return fd_watch(h, s, 0);
    }
    if (st) {
        *st &= (unsigned char)~FD_PARKED;
    }
    if (what & CURL_POLL_IN) {
        ev |= LOOP_READ;
    }
    if (what & CURL_POLL_OUT) {
        ev |= LOOP_WRITE;
    }
    return fd_watch(h, s, ev) < 0 ? -1 : 0;
}

static curl_socket_t opensocket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct aws_http *h = clientp;
    curl_socket_t s;
    unsigned char *st;

    (void)purpose;
    s = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (s == CURL_SOCKET_BAD) {
        return s;
    }
    st = fd_state(h, s, 1);
    if (st) {
        *st = FD_OURS; /* a new socket: nothing of an older one with its number is left */
    }
    return s;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct aws_http *h = userp;

    (void)multi;
    if (timeout_ms < 0) {
        loop_timer_stop(h->loop, &h->timer);
    } else {
        loop_timer_start(h->loop, &h->timer, (uint64_t)timeout_ms, on_timer, h);
    }
    return 0;
}

/* Unwatch before close, so the loop never holds a closed fd's number. */
static int closesocket_cb(void *clientp, curl_socket_t s)
{
    struct aws_http *h = clientp;
    unsigned char *st = fd_state(h, s, 0);

    fd_watch(h, s, 0);
    if (st) {
        *st = 0;
    }
    return close(s);
}

static size_t write_cb(char *p, size_t size, size_t n, void *userp)
{
    struct xfer *x = userp;
    size_t len = size * n;

    if (buf_append(&x->resp, p, len) < 0) {
        x->too_large = 1;
        return 0; /* curl aborts with CURLE_WRITE_ERROR */
    }
    return len;
}

/* ---- transfers ---- */

static struct xfer *xfer_get(struct aws_http *h)
{
    struct xfer *x = h->idle;

    if (x) {
        h->idle = x->next;
        h->nidle--;
    } else {
        x = calloc(1, sizeof(*x));
        if (!x) {
            return NULL;
        }
        x->easy = curl_easy_init();
        if (!x->easy) {
            free(x);
            return NULL;
        }
        buf_init(&x->resp, h->set.max_response);
    }
    x->h = h;
    x->prev = x->next = NULL;
    x->errbuf[0] = '\0';
    x->too_large = 0;
    return x;
}

static void xfer_release(struct aws_http *h, struct xfer *x)
{
    x->headers = NULL;
    if (x->resp.cap > HTTP_KEEP_RESPONSE) {
        buf_free(&x->resp);
    } else {
        buf_reset(&x->resp);
    }
    x->done = NULL;
    x->cctx = NULL;
    x->etype_out = NULL;
    if (h->nidle < HTTP_IDLE_HANDLES && !h->dead) {
        x->next = h->idle;
        h->idle = x;
        h->nidle++;
        return;
    }
    buf_free(&x->resp);
    curl_easy_cleanup(x->easy);
    free(x);
}

static void active_unlink(struct aws_http *h, struct xfer *x)
{
    if (x->prev) {
        x->prev->next = x->next;
    } else {
        h->active = x->next;
    }
    if (x->next) {
        x->next->prev = x->prev;
    }
    x->prev = x->next = NULL;
    h->stats.in_flight--;
}

static void set_error_type_header(struct xfer *x)
{
    struct curl_header *hd = NULL;

    if (!x->etype_out || !x->etype_len) {
        return;
    }
    x->etype_out[0] = '\0';
    if (curl_easy_header(x->easy, "x-amzn-ErrorType", 0, CURLH_HEADER, -1, &hd) == CURLHE_OK &&
        hd && hd->value) {
        snprintf(x->etype_out, x->etype_len, "%s", hd->value);
    }
}

/* "Couldn't connect to server: Failed to connect to 127.0.0.1 port 1
 * after 0 ms: Connection refused (http://127.0.0.1:1/)" */
static void describe_error(struct xfer *x, CURLcode res, char *msg, size_t cap)
{
    const char *what = curl_easy_strerror(res), *os = NULL;
    char detail[CURL_ERROR_SIZE];
    size_t wl = strlen(what), dl;
    char *url = NULL;
    long oserr = 0;

    snprintf(detail, sizeof(detail), "%s", x->errbuf);
    dl = strlen(detail);
    while (dl && (detail[dl - 1] == '\n' || detail[dl - 1] == ' ')) {
        detail[--dl] = '\0';
    }
    /* curl 7.88 ends some details with the generic text again */
    if (dl > wl + 2 && !strcmp(detail + dl - wl, what) && detail[dl - wl - 2] == ':') {
        detail[dl - wl - 2] = '\0';
    }
    if ((res == CURLE_COULDNT_CONNECT || res == CURLE_SEND_ERROR || res == CURLE_RECV_ERROR) &&
        curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &oserr) == CURLE_OK && oserr > 0) {
        os = strerror((int)oserr);
        if (strstr(detail, os)) {
            os = NULL;
        }
    }
    curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &url);
    snprintf(msg, cap, "%s: %s%s%s (%s)", what, detail[0] ? detail : "no details", os ? ": " : "",
             os ? os : "", url ? url : "?");
}

static void finish(struct aws_http *h, struct xfer *x, CURLcode res)
{
    aws_http_done_fn done = x->done;
    void *cctx = x->cctx;
    long status = 0, connects = 0;
    char msg[CURL_ERROR_SIZE + 256];
    const char *terr = NULL;

    curl_multi_remove_handle(h->multi, x->easy);
    active_unlink(h, x);
    curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &connects);
    h->stats.connections += (unsigned long)connects;
    if (res == CURLE_OK) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        set_error_type_header(x);
    } else if (x->too_large) {
        snprintf(msg, sizeof(msg), AWS_HTTP_TOO_LARGE " %zu bytes", h->set.max_response);
        terr = msg;
    } else {
        describe_error(x, res, msg, sizeof(msg));
        terr = msg;
    }
    if (terr) {
        done(cctx, 0, NULL, 0, terr);
    } else {
        done(cctx, status, x->resp.data ? x->resp.data : "", x->resp.len, NULL);
    }
    xfer_release(h, x);
}

static int start_xfer(struct aws_http *h, const struct aws_http_request *req, aws_http_done_fn done,
                      void *cctx);

/* Hand waiting requests to curl as connections free up. */
static void start_waiting(struct aws_http *h)
{
    while (!h->dead && h->wait_head && h->stats.in_flight < h->set.max_conns) {
        struct waiting *w = h->wait_head;

        h->wait_head = w->next;
        if (!h->wait_head) {
            h->wait_tail = NULL;
        }
        if (start_xfer(h, &w->req, w->done, w->cctx) < 0) {
            w->done(w->cctx, 0, NULL, 0, "could not start the HTTP request");
        }
        free(w);
    }
}

static void check_done(struct aws_http *h)
{
    CURLMsg *m;
    int left;

    while (!h->dead && (m = curl_multi_info_read(h->multi, &left))) {
        struct xfer *x = NULL;

        if (m->msg != CURLMSG_DONE) {
            continue;
        }
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x) {
            finish(h, x, m->data.result);
        }
    }
    start_waiting(h);
}

/* POST (the AWS calls), or GET / PUT for the credential endpoints. A
 * recycled handle must lose the previous request's method. */
static int set_method(CURL *e, const struct aws_http_request *req)
{
    const char *m = req->method && *req->method ? req->method : "POST";

    if (!strcmp(m, "GET")) {
        return curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL) == CURLE_OK &&
                       curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) == CURLE_OK
                   ? 0
                   : -1;
    }
    if (curl_easy_setopt(e, CURLOPT_POST, 1L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body ? req->body : "") != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len) != CURLE_OK) {
        return -1;
    }
    return curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, strcmp(m, "POST") ? m : NULL) == CURLE_OK
               ? 0
               : -1;
}

static int http_send(void *tctx, const struct aws_http_request *req, aws_http_done_fn done,
                     void *cctx)
{
    struct aws_http *h = tctx;
    struct waiting *w;

    if (h->dead) {
        return -1;
    }
    /* Credential endpoints (direct) are other hosts: never behind Kinesis. */
    if (h->http2 || req->direct || h->stats.in_flight < h->set.max_conns) {
        return start_xfer(h, req, done, cctx);
    }
    w = calloc(1, sizeof(*w));
    if (!w) {
        return -1;
    }
    w->req = *req;
    w->done = done;
    w->cctx = cctx;
    if (h->wait_tail) {
        h->wait_tail->next = w;
    } else {
        h->wait_head = w;
    }
    h->wait_tail = w;
    return 0;
}

static int start_xfer(struct aws_http *h, const struct aws_http_request *req, aws_http_done_fn done,
                      void *cctx)
{
    struct xfer *x;
    CURL *e;
    size_t i;
    long connect_ms = h->set.connect_timeout_ms, total_ms = h->set.request_timeout_ms;

    x = xfer_get(h);
    if (!x) {
        return -1;
    }
    if (req->timeout_ms > 0) {
        total_ms = req->timeout_ms;
        connect_ms = req->timeout_ms < connect_ms ? req->timeout_ms : connect_ms;
    }
    e = x->easy;
    for (i = 0; req->headers && req->headers[i]; i++) {
        if (i == AWS_HTTP_MAX_HEADERS) {
            goto fail;
        }
        x->nodes[i].data = (char *)req->headers[i];
        x->nodes[i].next = NULL;
        if (i) {
            x->nodes[i - 1].next = &x->nodes[i];
        }
    }
    x->headers = i ? &x->nodes[0] : NULL;
    x->done = done;
    x->cctx = cctx;
    x->etype_out = req->error_type_hdr;
    x->etype_len = req->error_type_hdr_len;
    if (x->etype_out && x->etype_len) {
        x->etype_out[0] = '\0';
    }
    /* Every option is set on every use, so a recycled handle carries
     * nothing over except its DNS and TLS session caches. */
    if (curl_easy_setopt(e, CURLOPT_URL, req->url) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_PRIVATE, x) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_USERAGENT, KK_USER_AGENT) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_WRITEDATA, x) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, opensocket_cb) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, h) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, closesocket_cb) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, h) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, total_ms) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_NOPROXY, req->direct ? "*" : NULL) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
        /* No wait for "100 Continue" on big bodies (curl adds the header
         * itself, unsigned; a removal entry is avoided on purpose). */
        curl_easy_setopt(e, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                         h->http2 ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1) !=
            CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, h->http2 ? 1L : 0L) != CURLE_OK) {
        goto fail;
    }
    if (h->set.ca_file && curl_easy_setopt(e, CURLOPT_CAINFO, h->set.ca_file) != CURLE_OK) {
        goto fail;
    }
    if (set_method(e, req) < 0) {
        goto fail;
    }
    x->next = h->active;
    if (h->active) {
        h->active->prev = x;
    }
    h->active = x;
    h->stats.in_flight++;
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        active_unlink(h, x);
        goto fail;
    }
    h->stats.requests++;
    return 0;
fail:
    xfer_release(h, x);
    return -1;
}

/* ---- lifecycle ---- */

int aws_http_settings_init(struct aws_http_settings *s, const struct aws_http_options *o, char *err,
                           size_t errlen)
{
    const char *ca = o->ca_file && *o->ca_file ? o->ca_file : getenv("AWS_CA_BUNDLE");

    memset(s, 0, sizeof(*s));
    if (ca && *ca && access(ca, R_OK) != 0) {
        snprintf(err, errlen, "aws http: CA file '%s' is not readable", ca);
        return -1;
    }
    if (ca && *ca && !(s->ca_file = strdup(ca))) {
        snprintf(err, errlen, "aws http: out of memory");
        return -1;
    }
    s->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 5000;
    s->request_timeout_ms = o->request_timeout_ms > 0 ? o->request_timeout_ms : 30000;
    s->max_response = o->max_response_bytes ? o->max_response_bytes : AWS_HTTP_MAX_RESPONSE;
    s->max_conns = o->max_connections > 0 ? (unsigned long)o->max_connections : 64;
    return 0;
}

void aws_http_settings_free(struct aws_http_settings *s)
{
    free(s->ca_file);
    s->ca_file = NULL;
}

struct aws_http *aws_http_create(struct loop *loop, const struct aws_http_options *o, char *err,
                                 size_t errlen)
{
    struct aws_http *h;

    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        snprintf(err, errlen, "aws http: curl_global_init: %s", curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "aws http: out of memory");
        return NULL;
    }
    h->loop = loop;
    loop_timer_init(&h->timer);
    h->http2 = o->http2;
    if (aws_http_settings_init(&h->set, o, err, errlen) != 0) {
        goto fail;
    }
    h->multi = curl_multi_init();
    if (!h->multi) {
        snprintf(err, errlen, "aws http: curl_multi_init failed");
        goto fail;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)h->set.max_conns);
    /* curl's connection cache otherwise follows the number of transfers
     * attached (4 each): between bursts it shrinks and closes connections
     * that the next burst must open again. */
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)h->set.max_conns);
    h->transport.send = http_send;
    h->transport.tctx = h;
    return h;
fail:
    http_free(h);
    return NULL;
}

static void http_free(struct aws_http *h)
{
    struct xfer *x, *n;

    loop_timer_stop(h->loop, &h->timer);
    for (x = h->idle; x; x = n) {
        n = x->next;
        buf_free(&x->resp);
        curl_easy_cleanup(x->easy);
        free(x);
    }
    h->idle = NULL;
    if (h->multi) {
        curl_multi_cleanup(h->multi); /* closes the cached connections */
    }
    aws_http_settings_free(&h->set);
    free(h->fds);
    free(h);
}

void aws_http_destroy(struct aws_http *h)
{
    if (!h || h->dead) {
        return;
    }
    h->dead = 1;
    h->busy++;
    while (h->active) {
        struct xfer *x = h->active;
        aws_http_done_fn done = x->done;
        void *cctx = x->cctx;

        curl_multi_remove_handle(h->multi, x->easy);
        active_unlink(h, x);
        x->done = NULL;
        xfer_release(h, x);
        done(cctx, 0, NULL, 0, "request aborted: client shutting down");
    }
    while (h->wait_head) {
        struct waiting *w = h->wait_head;

        h->wait_head = w->next;
        if (!h->wait_head) {
            h->wait_tail = NULL;
        }
        w->done(w->cctx, 0, NULL, 0, "request aborted: client shutting down");
        free(w);
    }
    if (--h->busy == 0) {
        http_free(h);
    }
}

const struct aws_transport *aws_http_transport(struct aws_http *h)
{
    return &h->transport;
}
