/* api.c - the HTTP API on libmicrohttpd (routes and contract in api.h).
 *
 * MHD has no thread of its own here (MHD_USE_EPOLL without its internal
 * polling thread): the loop watches MHD's epoll fd and calls MHD_run when
 * it is readable, when MHD's next connection timeout is due, and at the
 * end of a round in which a suspended connection was resumed. */
#include "api/api.h"

#include "base/log.h"
#include "base/procstat.h"

#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define API_CONNECTION_TIMEOUT_S 60
/* A reply envelope carries up to 10 MiB of get_records data, base64. */
#define API_MAX_REPLY ((size_t)128 << 20)

#define CT_TEXT "text/plain; charset=utf-8"
#define CT_JSON "application/json"
#define CT_PROM "text/plain; version=0.0.4; charset=utf-8"

#define ALLOW_GET  "GET, HEAD"
#define ALLOW_POST "POST"

struct api_call;

struct api_server {
    struct loop *loop;
    struct MHD_Daemon *daemon;
    int epoll_fd;             /* MHD's, watched by the loop */
    struct loop_timer timer;  /* MHD's next connection timeout */
    struct loop_defer run;    /* MHD_run at the end of a round with a resume */
    struct api_call *running; /* suspended on their provider->request */
    struct api_provider provider;
    struct metrics_registry *metrics;
    int enable_request;
    size_t max_body;
    long port;
};

enum call_state {
    CALL_UPLOAD,   /* the body arrives */
    CALL_RUNNING,  /* provider->request started; the connection is suspended */
    CALL_ANSWERED, /* the reply is in, or the request was refused */
    CALL_DROPPED,  /* the connection went while running: done only releases */
};

/* One POST /bindings/request (MHD's per-request context).
 *
 * Lifetime: reference counted. MHD's side holds a reference from the
 * handler's first call until MHD reports the request complete (completed,
 * also run for every connection by MHD_stop_daemon); a started
 * provider->request holds one until its done callback has run. The last
 * release frees the call, so done_ctx stays valid however late done comes.
 * Only a CALL_RUNNING call is on its server's running list and has a
 * suspended connection; leaving that state (done, completed, api_stop)
 * takes it off the list, and once it is CALL_DROPPED nothing touches the
 * server or the connection through it again. */
struct api_call {
    int refs;
    enum call_state state;
    int provider_holds; /* the provider's reference is still out */
    int in_request;     /* inside provider->request */
    enum { REPLY_KEPT, REPLY_TOO_BIG, REPLY_NO_MEMORY } reply_lost;
    struct api_server *server;
    struct MHD_Connection *conn;
    struct buf body;
    int too_big;
    struct buf binding; /* its name, for the answer */
    struct buf reply;
    struct api_call *prev, *next; /* on server->running */
};

static struct api_call *call_new(struct api_server *s, struct MHD_Connection *conn)
{
    struct api_call *c = calloc(1, sizeof(*c));

    if (!c) {
        return NULL;
    }
    c->refs = 1; /* the connection's */
    c->state = CALL_UPLOAD;
    c->server = s;
    c->conn = conn;
    buf_init(&c->body, s->max_body);
    buf_init(&c->binding, 0);
    buf_init(&c->reply, API_MAX_REPLY);
    return c;
}

static void call_acquire(struct api_call *c)
{
    c->refs++;
}

static void call_release(struct api_call *c)
{
    if (--c->refs > 0) {
        return;
    }
    buf_free(&c->body);
    buf_free(&c->binding);
    buf_free(&c->reply);
    free(c);
}

static void running_add(struct api_server *s, struct api_call *c)
{
    c->prev = NULL;
    c->next = s->running;
    if (s->running) {
        s->running->prev = c;
    }
    s->running = c;
}

static void running_remove(struct api_server *s, struct api_call *c)
{
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        s->running = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
}

/* Queue body (taken over, left empty) with the status and content type. */
static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *type,
                               struct buf *body, const char *allow)
{
    struct MHD_Response *r;
    enum MHD_Result ret;
    size_t len = 0;
    char *data = buf_detach(body, &len);

    if (!data) {
        return MHD_NO;
    }
    r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type) != MHD_YES ||
        (allow && MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES)) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result respond_text(struct MHD_Connection *c, unsigned status, const char *text,
                                    size_t len)
{
    struct buf b = BUF_INIT(0);

    if (buf_set(&b, text, len) < 0) {
        return MHD_NO;
    }
    return respond(c, status, CT_TEXT, &b, NULL);
}

/* {"error":"<message>"} */
static enum MHD_Result respond_error(struct MHD_Connection *c, unsigned status, const char *allow,
                                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static enum MHD_Result respond_error(struct MHD_Connection *c, unsigned status, const char *allow,
                                     const char *fmt, ...)
{
    struct buf b = BUF_INIT(0);
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (buf_append_str(&b, "{\"error\":") < 0 || buf_append_json_str(&b, msg, strlen(msg)) < 0 ||
        buf_append_char(&b, '}') < 0) {
        buf_free(&b);
        return MHD_NO;
    }
    return respond(c, status, CT_JSON, &b, allow);
}

static enum MHD_Result serve_health(struct api_server *s, struct MHD_Connection *c)
{
    return respond_text(c, MHD_HTTP_OK, "ok", 2);
}

static enum MHD_Result serve_ready(struct api_server *s, struct MHD_Connection *c)
{
    struct buf why = BUF_INIT((size_t)64 << 10);
    enum MHD_Result ret;

    if (s->provider.ready(s->provider.ctx, &why) == 1) {
        buf_free(&why);
        return respond_text(c, MHD_HTTP_OK, "ready", 5);
    }
    if (why.len == 0) {
        buf_set(&why, "not ready", 9);
    }
    ret = respond(c, MHD_HTTP_SERVICE_UNAVAILABLE, CT_TEXT, &why, NULL);
    buf_free(&why);
    return ret;
}

static enum MHD_Result serve_metrics(struct api_server *s, struct MHD_Connection *c)
{
    struct buf out = BUF_INIT(0);

    if (s->metrics && metrics_render_prometheus(s->metrics, &out) < 0) {
        buf_free(&out);
        return respond_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL,
                             "cannot render metrics, too many series");
    }
    /* Without /proc (or past the cap) the process_* lines are left out;
     * the daemon's own series still serve. */
    procstat_render_prometheus(&out);
    return respond(c, MHD_HTTP_OK, CT_PROM, &out, NULL);
}

static enum MHD_Result serve_bindings(struct api_server *s, struct MHD_Connection *c)
{
    struct buf out = BUF_INIT(0);

    if (s->provider.bindings_json(s->provider.ctx, &out) < 0) {
        buf_free(&out);
        return respond_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "cannot list the bindings");
    }
    if (out.len == 0 && buf_set(&out, "[]", 2) < 0) {
        return MHD_NO;
    }
    return respond(c, MHD_HTTP_OK, CT_JSON, &out, NULL);
}

static enum MHD_Result serve_stats(struct api_server *s, struct MHD_Connection *c)
{
    struct buf out = BUF_INIT(0);

    if (s->provider.stats_json && s->provider.stats_json(s->provider.ctx, &out) < 0) {
        buf_free(&out);
        return respond_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "cannot render the stats");
    }
    if (out.len == 0 && buf_set(&out, "[]", 2) < 0) {
        return MHD_NO;
    }
    return respond(c, MHD_HTTP_OK, CT_JSON, &out, NULL);
}

/* Integers past 64 bits are valid JSON: read them as reals rather than
 * refuse the body (Go reads them as float64). */
static json_t *load_body(const struct buf *body, json_error_t *je)
{
    json_t *v = json_loadb(body->data, body->len, JSON_ALLOW_NUL, je);

    if (!v) {
        v = json_loadb(body->data, body->len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, je);
    }
    return v;
}

/* ---- MHD on the loop ---- */

/* Let MHD do what is ready (accept, read, call handlers, write, time out,
 * take resumed connections back), then arm the timer for its next
 * connection timeout: MHD gets no socket event for an idle connection.
 * No timer when MHD has no open connection. */
static void mhd_run(void *arg)
{
    struct api_server *s = arg;
    uint64_t ms;
    int armed;

    MHD_run(s->daemon);
#if MHD_VERSION >= 0x00097701
    armed = MHD_get_timeout64(s->daemon, &ms) == MHD_YES;
#else
    {
        MHD_UNSIGNED_LONG_LONG t = 0;

        armed = MHD_get_timeout(s->daemon, &t) == MHD_YES;
        ms = (uint64_t)t;
    }
#endif
    if (armed) {
        loop_timer_start(s->loop, &s->timer, ms, mhd_run, s);
    } else {
        loop_timer_stop(s->loop, &s->timer);
    }
}

static void mhd_on_io(void *arg, int fd, unsigned events)
{
    (void)fd;
    (void)events;
    mhd_run(arg);
}

/* The answer of a call whose provider->request has replied. */
static enum MHD_Result answer(struct MHD_Connection *conn, struct api_call *c)
{
    if (c->reply_lost == REPLY_NO_MEMORY) {
        return MHD_NO;
    }
    if (c->reply_lost == REPLY_TOO_BIG) {
        return respond_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL,
                             "binding %s gave a reply larger than %zu bytes", buf_str(&c->binding),
                             (size_t)API_MAX_REPLY);
    }
    if (c->reply.len == 0) {
        return respond_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "binding %s gave no reply",
                             buf_str(&c->binding));
    }
    return respond(conn, MHD_HTTP_OK, CT_JSON, &c->reply, NULL);
}

/* provider->request's done: keep the reply and wake the connection, which
 * answers on the handler's next call. */
static void call_done(void *ctx, const char *reply_json, size_t len)
{
    struct api_call *c = ctx;
    struct api_server *s = c->server;

    if (!c->provider_holds) {
        return; /* a second answer, or one to a refused start */
    }
    if (c->state == CALL_RUNNING) {
        if (len > 0 && buf_set(&c->reply, reply_json, len) < 0) {
            c->reply_lost = len > API_MAX_REPLY ? REPLY_TOO_BIG : REPLY_NO_MEMORY;
        }
        c->state = CALL_ANSWERED;
        /* An answer given inside provider->request (against its contract)
         * is served when it returns: the connection is not suspended yet. */
        if (!c->in_request) {
            running_remove(s, c);
            MHD_resume_connection(c->conn);
            /* Resuming only marks the connection; MHD takes it back on its
             * next run, and without a thread of its own MHD has no wake-up
             * for that (it drops its eventfd): nothing would run it before
             * the next socket event. So run it at the end of this round. */
            loop_defer(s->loop, &s->run, mhd_run, s);
        }
    }
    c->provider_holds = 0;
    call_release(c);
}

/* Body {"binding":"<name>","payload":<envelope>}; member names match
 * without regard to case, as kubemq-targets' Go JSON decoder does. Starts
 * provider->request and suspends the connection until it answers. */
static enum MHD_Result run_request(struct api_server *s, struct MHD_Connection *conn,
                                   struct api_call *c)
{
    json_t *root, *val, *binding = NULL, *payload = NULL;
    json_error_t je;
    const char *key, *name, *ptext = "";
    char *dumped = NULL;
    size_t plen = 0;
    char err[512] = "";
    enum MHD_Result ret;
    int rc;

    if (c->body.len == 0) {
        return respond_error(conn, MHD_HTTP_BAD_REQUEST, NULL, "invalid request, empty body");
    }
    root = load_body(&c->body, &je);
    if (!root) {
        return respond_error(conn, MHD_HTTP_BAD_REQUEST, NULL,
                             "invalid request, body is not JSON: %s (line %d, column %d)", je.text,
                             je.line, je.column);
    }
    if (!json_is_object(root)) {
        ret = respond_error(conn, MHD_HTTP_BAD_REQUEST, NULL,
                            "invalid request, body must be a JSON object");
        goto out;
    }
    json_object_foreach(root, key, val)
    {
        if (strcasecmp(key, "binding") == 0) {
            binding = val;
        } else if (strcasecmp(key, "payload") == 0) {
            payload = val;
        }
    }
    if (!binding || json_is_null(binding) ||
        (json_is_string(binding) && json_string_length(binding) == 0)) {
        ret =
            respond_error(conn, MHD_HTTP_BAD_REQUEST, NULL, "invalid request, binding is missing");
        goto out;
    }
    if (!json_is_string(binding) ||
        strlen(json_string_value(binding)) != json_string_length(binding)) {
        ret = respond_error(conn, MHD_HTTP_BAD_REQUEST, NULL,
                            "invalid request, binding must be a string (a binding name)");
        goto out;
    }
    name = json_string_value(binding);
    /* A string payload is the message body itself (raw data, or envelope
     * text); any other JSON value goes on as its compact text. */
    if (json_is_string(payload)) {
        ptext = json_string_value(payload);
        plen = json_string_length(payload);
    } else if (payload && !json_is_null(payload)) {
        dumped = json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!dumped) {
            ret = MHD_NO;
            goto out;
        }
        ptext = dumped;
        plen = strlen(dumped);
    }
    if (buf_set(&c->binding, name, strlen(name)) < 0) {
        ret = MHD_NO;
        goto out;
    }
    c->state = CALL_RUNNING;
    call_acquire(c); /* the provider's, until done */
    c->provider_holds = 1;
    c->in_request = 1;
    rc = s->provider.request(s->provider.ctx, name, ptext, plen, call_done, c, err, sizeof(err));
    c->in_request = 0;
    /* The body may be large and the provider took what it needs. */
    buf_free(&c->body);
    if (rc == 0 && c->state == CALL_ANSWERED) {
        ret = answer(conn, c);
    } else if (rc == 0) {
        running_add(s, c);
        MHD_suspend_connection(conn);
        ret = MHD_YES;
    } else {
        c->state = CALL_ANSWERED;
        if (c->provider_holds) {
            c->provider_holds = 0;
            call_release(c); /* the connection's reference remains */
        }
        if (rc == API_REQUEST_NO_BINDING) {
            ret = respond_error(conn, MHD_HTTP_NOT_FOUND, NULL, "no such binding, %s", name);
        } else {
            log_warn(name, "api: request not run: %s", err[0] ? err : "unknown reason");
            ret = respond_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, NULL, "%s",
                                err[0] ? err : "the request could not run");
        }
    }
out:
    free(dumped);
    json_decref(root);
    return ret;
}

/* POST /bindings/request: gather the body (capped), run it, and answer
 * when the handler is called again after done resumed the connection. */
static enum MHD_Result serve_request(struct api_server *s, struct MHD_Connection *conn,
                                     const char *data, size_t *size, void **con_cls)
{
    struct api_call *c = *con_cls;

    if (!c) {
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);

        /* Refuse before the body is sent when its size is announced. */
        if (cl && strtoull(cl, NULL, 10) > s->max_body) {
            return respond_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
                                 "invalid request, body larger than %zu bytes", s->max_body);
        }
        c = call_new(s, conn);
        if (!c) {
            return MHD_NO;
        }
        *con_cls = c;
        return MHD_YES;
    }
    if (c->state == CALL_ANSWERED) {
        return answer(conn, c);
    }
    if (c->state != CALL_UPLOAD) {
        return MHD_NO; /* only done and api_stop resume a running call */
    }
    if (*size > 0) {
        /* Past the cap (a chunked body): read and drop the rest, then
         * answer 413 at the end. */
        if (!c->too_big && buf_append(&c->body, data, *size) < 0) {
            if (c->body.len + *size <= s->max_body) {
                return MHD_NO; /* out of memory */
            }
            c->too_big = 1;
            buf_free(&c->body);
        }
        *size = 0;
        return MHD_YES;
    }
    if (c->too_big) {
        return respond_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
                             "invalid request, body larger than %zu bytes", s->max_body);
    }
    return run_request(s, conn, c);
}

static const struct {
    const char *path;
    enum MHD_Result (*serve)(struct api_server *s, struct MHD_Connection *c);
} get_routes[] = {
    {"/health", serve_health},     {"/ready", serve_ready},          {"/metrics", serve_metrics},
    {"/bindings", serve_bindings}, {"/bindings/stats", serve_stats},
};

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    struct api_server *s = cls;
    int get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    size_t i;

    if (strcmp(url, "/bindings/request") == 0) {
        if (!s->enable_request) {
            return respond_error(c, MHD_HTTP_NOT_FOUND, NULL,
                                 "POST /bindings/request is disabled by config, set "
                                 "apiEnableRequest: true to enable it");
        }
        if (strcmp(method, MHD_HTTP_METHOD_POST) != 0) {
            return respond_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, ALLOW_POST,
                                 "method %s not allowed on /bindings/request, use POST", method);
        }
        return serve_request(s, c, upload_data, upload_data_size, con_cls);
    }
    for (i = 0; i < sizeof(get_routes) / sizeof(get_routes[0]); i++) {
        if (strcmp(url, get_routes[i].path) != 0) {
            continue;
        }
        if (!get) {
            return respond_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, ALLOW_GET,
                                 "method %s not allowed on %s, use GET", method, url);
        }
        return get_routes[i].serve(s, c);
    }
    return respond_error(c, MHD_HTTP_NOT_FOUND, NULL, "not found, %s", url);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    struct api_server *s = cls;
    struct api_call *c = *con_cls;

    if (!c) {
        return;
    }
    *con_cls = NULL;
    if (c->state == CALL_RUNNING) {
        running_remove(s, c);
        c->state = CALL_DROPPED;
    }
    c->conn = NULL;
    call_release(c);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) {
        msg[--n] = '\0';
    }
    log_warn(NULL, "api: %s", msg);
}

/* "127.0.0.1:8080" or "[::1]:8080", for messages. */
static void format_where(char *dst, size_t len, const char *address, long port)
{
    snprintf(dst, len, strchr(address, ':') ? "[%s]:%ld" : "%s:%ld", address, port);
}

/* Our own listening socket, so a bind failure can say why. */
static int open_listener(const char *address, long port, int *v6, long *bound, char *err,
                         size_t errlen)
{
    struct addrinfo hints, *ai = NULL;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    char where[128], service[24];
    int fd = -1, one = 1, zero = 0;

    format_where(where, sizeof(where), address, port);
    if (port < 0 || port > 65535) {
        snprintf(err, errlen, "cannot listen on %s: port out of range 0..65535", where);
        return -1;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%ld", port);
    if (getaddrinfo(address, service, &hints, &ai) != 0 || !ai) {
        snprintf(err, errlen, "cannot listen on %s: not a numeric IPv4 or IPv6 address", where);
        return -1;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        goto fail;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    *v6 = ai->ai_family == AF_INET6;
    if (*v6) {
        /* "::" takes IPv4 clients too. */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) {
        goto fail;
    }
    *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                            : ((struct sockaddr_in *)&ss)->sin_port);
    freeaddrinfo(ai);
    return fd;
fail:
    snprintf(err, errlen, "cannot listen on %s: %s", where, strerror(errno));
    if (fd >= 0) {
        close(fd);
    }
    freeaddrinfo(ai);
    return -1;
}

struct api_server *api_start(struct loop *loop, const struct api_options *o,
                             const struct api_provider *p, char *err, size_t errlen)
{
    const char *address = o->address && o->address[0] ? o->address : API_DEFAULT_ADDRESS;
    const union MHD_DaemonInfo *info;
    struct api_server *s;
    unsigned flags, timeout_s = o->idle_timeout_s ? o->idle_timeout_s : API_CONNECTION_TIMEOUT_S;
    char where[128];
    int fd, v6 = 0;

    if (!p || !p->ready || !p->bindings_json || (o->enable_request && !p->request)) {
        snprintf(err, errlen, "api: the provider lacks a callback");
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "api: out of memory");
        return NULL;
    }
    s->loop = loop;
    s->epoll_fd = -1;
    loop_timer_init(&s->timer);
    loop_defer_init(&s->run);
    s->provider = *p;
    s->metrics = o->metrics;
    s->enable_request = o->enable_request;
    s->max_body = o->max_body ? o->max_body : API_DEFAULT_MAX_BODY;
    fd = open_listener(address, o->port, &v6, &s->port, err, errlen);
    if (fd < 0) {
        free(s);
        return NULL;
    }
    format_where(where, sizeof(where), address, s->port);
    /* No thread of MHD's own: its epoll fd goes on our loop, and a POST
     * /bindings/request waiting on its binding is suspended, so it never
     * holds up /health or /ready. */
    flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    s->daemon =
        MHD_start_daemon(flags, 0, NULL, NULL, handle, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                         MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_CONNECTION_LIMIT,
                         (unsigned)API_MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
                         MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(err, errlen, "cannot serve on %s: libmicrohttpd did not start", where);
        close(fd);
        free(s);
        return NULL;
    }
    info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info || info->epoll_fd < 0 ||
        loop_io_set(loop, info->epoll_fd, LOOP_READ, mhd_on_io, s) < 0) {
        snprintf(err, errlen, "cannot serve on %s: cannot watch libmicrohttpd's epoll fd: %s",
                 where, info ? strerror(errno) : "not available");
        MHD_stop_daemon(s->daemon); /* closes fd */
        free(s);
        return NULL;
    }
    s->epoll_fd = info->epoll_fd;
    log_info(NULL, "api: listening on %s%s", where,
             s->enable_request ? " (POST /bindings/request enabled)" : "");
    return s;
}

void api_stop(struct api_server *s)
{
    if (!s) {
        return;
    }
    loop_io_set(s->loop, s->epoll_fd, 0, NULL, NULL);
    loop_timer_stop(s->loop, &s->timer);
    loop_defer_cancel(s->loop, &s->run);
    /* MHD must not be stopped with a suspended connection: resumed, each
     * is closed with the others, and MHD_stop_daemon runs completed for
     * it. Its provider->request still holds the call: done, when it
     * comes, finds it dropped. */
    while (s->running) {
        struct api_call *c = s->running;

        running_remove(s, c);
        c->state = CALL_DROPPED;
        MHD_resume_connection(c->conn);
    }
    /* Closes the listening socket too (MHD owns it once started). */
    MHD_stop_daemon(s->daemon);
    free(s);
}

long api_port(const struct api_server *s)
{
    return s ? s->port : -1;
}
