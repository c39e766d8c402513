/* api.c - the HTTP API on libmicrohttpd (routes and contract in api.h). */
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

struct api_server {
    struct MHD_Daemon *daemon;
    struct api_provider provider;
    struct metrics_registry *metrics;
    int enable_request;
    size_t max_body;
    long port;
};

/* A POST /bindings/request while its body arrives. */
struct upload {
    struct buf body;
    int too_big;
};

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

    if (s->metrics && metrics_render_stats_json(s->metrics, &out) < 0) {
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

/* Body {"binding":"<name>","payload":<envelope>}; member names match
 * without regard to case, as the reference's Go decoder does. */
static enum MHD_Result run_request(struct api_server *s, struct MHD_Connection *c,
                                   const struct buf *body)
{
    json_t *root, *val, *binding = NULL, *payload = NULL;
    json_error_t je;
    const char *key, *name, *ptext = "";
    char *dumped = NULL;
    size_t plen = 0;
    struct buf reply = BUF_INIT(API_MAX_REPLY);
    char err[512] = "";
    enum MHD_Result ret;
    int rc;

    if (body->len == 0) {
        return respond_error(c, MHD_HTTP_BAD_REQUEST, NULL, "invalid request, empty body");
    }
    root = load_body(body, &je);
    if (!root) {
        return respond_error(c, MHD_HTTP_BAD_REQUEST, NULL,
                             "invalid request, body is not JSON: %s (line %d, column %d)", je.text,
                             je.line, je.column);
    }
    if (!json_is_object(root)) {
        ret = respond_error(c, MHD_HTTP_BAD_REQUEST, NULL,
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
        ret = respond_error(c, MHD_HTTP_BAD_REQUEST, NULL, "invalid request, binding is missing");
        goto out;
    }
    if (!json_is_string(binding) ||
        strlen(json_string_value(binding)) != json_string_length(binding)) {
        ret = respond_error(c, MHD_HTTP_BAD_REQUEST, NULL,
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
    rc = s->provider.request(s->provider.ctx, name, ptext, plen, &reply, err, sizeof(err));
    if (rc == 0 && reply.len > 0) {
        ret = respond(c, MHD_HTTP_OK, CT_JSON, &reply, NULL);
    } else if (rc == 0) {
        ret = respond_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "binding %s gave no reply",
                            name);
    } else if (rc == API_REQUEST_NO_BINDING) {
        ret = respond_error(c, MHD_HTTP_NOT_FOUND, NULL, "no such binding, %s", name);
    } else {
        log_warn(name, "api: request not run: %s", err[0] ? err : "unknown reason");
        ret = respond_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, NULL, "%s",
                            err[0] ? err : "the request could not run");
    }
out:
    buf_free(&reply);
    free(dumped);
    json_decref(root);
    return ret;
}

/* POST /bindings/request: gather the body (capped), then run it. */
static enum MHD_Result serve_request(struct api_server *s, struct MHD_Connection *c,
                                     const char *data, size_t *size, void **con_cls)
{
    struct upload *up = *con_cls;

    if (!up) {
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);

        /* Refuse before the body is sent when its size is announced. */
        if (cl && strtoull(cl, NULL, 10) > s->max_body) {
            return respond_error(c, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
                                 "invalid request, body larger than %zu bytes", s->max_body);
        }
        up = calloc(1, sizeof(*up));
        if (!up) {
            return MHD_NO;
        }
        buf_init(&up->body, s->max_body);
        *con_cls = up;
        return MHD_YES;
    }
    if (*size > 0) {
        /* Past the cap (a chunked body): read and drop the rest, then
         * answer 413 at the end. */
        if (!up->too_big && buf_append(&up->body, data, *size) < 0) {
            if (up->body.len + *size <= s->max_body) {
                return MHD_NO; /* out of memory */
            }
            up->too_big = 1;
            buf_free(&up->body);
        }
        *size = 0;
        return MHD_YES;
    }
    if (up->too_big) {
        return respond_error(c, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
                             "invalid request, body larger than %zu bytes", s->max_body);
    }
    return run_request(s, c, &up->body);
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

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    struct upload *up = *con_cls;

    if (up) {
        buf_free(&up->body);
        free(up);
        *con_cls = NULL;
    }
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

struct api_server *api_start(const struct api_options *o, const struct api_provider *p, char *err,
                             size_t errlen)
{
    const char *address = o->address && o->address[0] ? o->address : API_DEFAULT_ADDRESS;
    struct api_server *s;
    unsigned flags;
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
    s->provider = *p;
    s->metrics = o->metrics;
    s->enable_request = o->enable_request;
    s->max_body = o->max_body ? o->max_body : API_DEFAULT_MAX_BODY;
    fd = open_listener(address, o->port, &v6, &s->port, err, errlen);
    if (fd < 0) {
        free(s);
        return NULL;
    }
    /* A thread per connection: a POST /bindings/request that waits on
     * the engine never holds up /health or /ready. */
    flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO |
            MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle, s, MHD_OPTION_EXTERNAL_LOGGER,
                                 mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)API_MAX_CONNECTIONS,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)API_CONNECTION_TIMEOUT_S,
                                 MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
    format_where(where, sizeof(where), address, s->port);
    if (!s->daemon) {
        snprintf(err, errlen, "cannot serve on %s: libmicrohttpd did not start", where);
        close(fd);
        free(s);
        return NULL;
    }
    log_info(NULL, "api: listening on %s%s", where,
             s->enable_request ? " (POST /bindings/request enabled)" : "");
    return s;
}

void api_stop(struct api_server *s)
{
    if (!s) {
        return;
    }
    /* Closes the listening socket too (MHD owns it once started). */
    if (s->daemon) {
        MHD_stop_daemon(s->daemon);
    }
    free(s);
}

long api_port(const struct api_server *s)
{
    return s ? s->port : -1;
}
