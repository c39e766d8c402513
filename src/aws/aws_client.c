/* aws_client.c - AWS JSON-protocol calls: sign, send, retry, answer. */
#include "aws/aws_client.h"

#include "aws/aws_creds.h"
#include "aws/aws_endpoint.h"
#include "aws/aws_error.h"
#include "aws/aws_h1.h"
#include "aws/aws_http.h"
#include "aws/sigv4.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/pool.h"
#include "base/random.h"

#include <openssl/crypto.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CALL_MAX_HEADERS 8
#define MAX_ATTEMPTS_CAP 20
#define CALL_MAX_TARGET  256 /* "<prefix>.<Operation>" */
/* Finished calls kept for reuse (with their buffers), so a steady stream
 * of requests allocates nothing; bodies past CALL_POOL_MAX_BODY are not
 * kept, so a burst of large records does not pin memory. */
#define CALL_POOL_MAX      256
#define CALL_POOL_MAX_BODY ((size_t)256 << 10)

enum call_state {
    CALL_WAITING, /* timer armed: first attempt or a retry's backoff */
    CALL_SENDING, /* handed to the transport */
    CALL_CREDS,   /* waiting for the credential chain (no timer armed) */
};

struct aws_call {
    struct aws_client *c;         /* NULL once orphaned by destroy (transport still has it) */
    struct aws_call *prev, *next; /* the client's live calls */
    void *pool_next;              /* in the client's pool */
    const char *operation;        /* points into target */
    char target[CALL_MAX_TARGET]; /* "<prefix>.<Operation>" */
    struct buf body;              /* the copy, when the body was copied */
    const char *body_p;           /* the body sent: body.data or the caller's */
    size_t body_len;
    aws_done_fn done;
    void *ctx;
    int attempts;
    unsigned creds_gen; /* the credentials this attempt was signed with */
    int auth_retried;   /* sent again once after a refused credential */
    uint64_t start_ms;
    enum call_state state;
    struct loop_timer timer;
    /* the request of the current attempt */
    struct buf hdrs; /* header lines, NUL-separated */
    const char *hdr_ptrs[CALL_MAX_HEADERS];
    char etype_hdr[128];
    /* an answer that came while still inside transport->send */
    int in_send;
    int sync_done;
    long sync_status;
    struct buf sync_body;
    int sync_has_terr;
    char sync_terr[512];
    /* the outcome */
    char err_type[128];
    char err_msg[1024];
};

struct aws_client {
    struct loop *loop;
    char *service;
    char *target_prefix;
    char *region;
    char *log_name;
    struct aws_endpoint ep;
    struct aws_creds_chain *creds;
    struct sigv4_key_cache key_cache;
    struct sigv4_result sig; /* reused: the loop signs one request at a time */
    int max_attempts;
    long base_ms;
    long cap_ms;
    struct aws_http *http; /* ours when no transport was given: libcurl, */
    struct aws_h1 *h1;     /* or our own HTTP/1.1 client */
    const struct aws_transport *transport;
    size_t max_response;
    struct aws_call *calls;
    struct pool pool; /* finished calls for reuse */
    int destroying;
    int delivering;         /* depth of done callbacks running */
    int free_pending;       /* destroyed from a done callback: free when it returns */
    struct random_prng rng; /* backoff jitter */
};

/* ---- backoff ---- */

long aws_backoff_ms(int retry, long base_ms, long cap_ms, unsigned long long rnd)
{
    unsigned long long ceiling;

    if (base_ms <= 0 || cap_ms <= 0) {
        return 0;
    }
    if (retry < 0) {
        retry = 0;
    }
    if (retry >= 40 || (unsigned long long)base_ms > ((unsigned long long)cap_ms >> retry)) {
        ceiling = (unsigned long long)cap_ms;
    } else {
        ceiling = (unsigned long long)base_ms << retry;
    }
    return (long)(rnd % (ceiling + 1));
}

/* ---- calls ---- */

static void call_free(struct aws_call *call)
{
    buf_free(&call->body);
    buf_free(&call->hdrs);
    buf_free(&call->sync_body);
    free(call);
}

/* Back to the pool, or freed when the pool is full or the call big. */
static void call_release(struct aws_client *c, struct aws_call *call)
{
    if (!c || c->destroying || call->body.cap > CALL_POOL_MAX_BODY ||
        call->sync_body.cap > CALL_POOL_MAX_BODY || pool_put(&c->pool, call) < 0) {
        call_free(call);
    }
}

static void client_free(struct aws_client *c);

static void call_unlink(struct aws_client *c, struct aws_call *call)
{
    if (call->prev) {
        call->prev->next = call->next;
    } else {
        c->calls = call->next;
    }
    if (call->next) {
        call->next->prev = call->prev;
    }
    call->prev = call->next = NULL;
}

/* The answer: unlink, log, call back. Touches nothing of the client after
 * done, which may destroy it. free_call=0 keeps an orphan for its
 * transport. */
static void deliver(struct aws_call *call, long status, const char *body, size_t len, int ok,
                    int free_call)
{
    struct aws_client *c = call->c;
    struct aws_response r;

    call_unlink(c, call);
    if (log_enabled(LOG_LEVEL_DEBUG)) {
        log_debug(c->log_name, "aws %s: status=%ld attempts=%d duration_ms=%llu%s%s",
                  call->operation, status, call->attempts,
                  (unsigned long long)(loop_now_ms(c->loop) - call->start_ms),
                  ok ? "" : " error=", ok ? "" : call->err_type);
    }
    memset(&r, 0, sizeof(r));
    r.status = status;
    r.body = body ? body : "";
    r.body_len = body ? len : 0;
    r.error_type = ok ? NULL : call->err_type;
    r.error_message = ok ? NULL : call->err_msg;
    r.attempts = call->attempts;
    if (!free_call) {
        call->c = NULL;
    }
    c->delivering++;
    call->done(call->ctx, &r);
    c->delivering--;
    if (free_call) {
        call_release(c, call);
    }
    if (c->free_pending && !c->delivering) {
        client_free(c);
    }
}

static void attempt(void *arg);

static void handle_result(struct aws_call *call, long status, const char *body, size_t len,
                          const char *terr)
{
    struct aws_client *c = call->c;
    int ok = 0;

    if (!terr && len > c->max_response) {
        snprintf(call->sync_terr, sizeof(call->sync_terr), AWS_HTTP_TOO_LARGE " %zu bytes",
                 c->max_response);
        terr = call->sync_terr;
    }
    if (terr) {
        status = 0;
        snprintf(call->err_type, sizeof(call->err_type), "%s",
                 strncmp(terr, AWS_HTTP_TOO_LARGE, strlen(AWS_HTTP_TOO_LARGE))
                     ? AWS_ERROR_TRANSPORT
                     : AWS_ERROR_TOO_LARGE);
        snprintf(call->err_msg, sizeof(call->err_msg), "%s", terr);
        body = NULL;
        len = 0;
    } else if (status >= 200 && status < 300) {
        ok = 1;
    } else {
        aws_error_parse(status, body, len, call->etype_hdr, call->err_type, sizeof(call->err_type),
                        call->err_msg, sizeof(call->err_msg));
    }
    if (!ok && !c->destroying && !call->auth_retried && aws_creds_is_auth_error(call->err_type) &&
        aws_creds_chain_rejected(c->creds, call->creds_gen)) {
        /* Refused credentials: once more with fresh ones (they may be
         * fetched first; attempt() waits for them). */
        log_debug(c->log_name, "aws %s: %s, sending again with new credentials", call->operation,
                  call->err_type);
        call->auth_retried = 1;
        call->state = CALL_WAITING;
        loop_timer_start(c->loop, &call->timer, 0, attempt, call);
        return;
    }
    if (!ok && !c->destroying && call->attempts < c->max_attempts &&
        aws_error_is_retryable(status, call->err_type)) {
        long delay =
            aws_backoff_ms(call->attempts - 1, c->base_ms, c->cap_ms, random_prng_next(&c->rng));

        log_debug(c->log_name, "aws %s: attempt %d failed (%s), retrying in %ld ms",
                  call->operation, call->attempts, call->err_type, delay);
        call->state = CALL_WAITING;
        loop_timer_start(c->loop, &call->timer, (uint64_t)delay, attempt, call);
        return;
    }
    deliver(call, status, body, len, ok, 1);
}

static void on_transport_done(void *cctx, long status, const char *body, size_t len,
                              const char *terr)
{
    struct aws_call *call = cctx;

    if (!call->c) {
        call_free(call); /* orphaned by destroy; already answered */
        return;
    }
    if (call->in_send) {
        /* Answered inside send: finish once send has returned, so the
         * caller's stack is never re-entered. */
        call->sync_done = 1;
        call->sync_status = status;
        call->sync_has_terr = terr != NULL;
        if (terr) {
            snprintf(call->sync_terr, sizeof(call->sync_terr), "%s", terr);
        } else if (buf_set(&call->sync_body, body ? body : "", body ? len : 0) < 0) {
            call->sync_has_terr = 1;
            snprintf(call->sync_terr, sizeof(call->sync_terr), AWS_HTTP_TOO_LARGE " %zu bytes",
                     call->c->max_response);
        }
        return;
    }
    handle_result(call, status, body, len, terr);
}

/* Header lines for this attempt, freshly signed. */
static int build_request(struct aws_call *call, const struct aws_creds *cr, char *err,
                         size_t errlen)
{
    struct aws_client *c = call->c;
    struct sigv4_header sh[3];
    struct sigv4_params p;
    struct sigv4_request req;
    struct buf *h = &call->hdrs;
    size_t offs[CALL_MAX_HEADERS], n = 0, i;

    sh[0] = (struct sigv4_header){"Host", c->ep.host};
    sh[1] = (struct sigv4_header){"Content-Type", "application/x-amz-json-1.1"};
    sh[2] = (struct sigv4_header){"X-Amz-Target", call->target};
    memset(&p, 0, sizeof(p));
    p.access_key = cr->access_key;
    p.secret_key = cr->secret_key;
    p.session_token = cr->session_token;
    p.region = c->region;
    p.service = c->service;
    p.when = time(NULL);
    p.cache = &c->key_cache;
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.path = c->ep.path;
    req.headers = sh;
    req.nheaders = 3;
    req.body = call->body_p;
    req.body_len = call->body_len;
    if (sigv4_sign(&p, &req, &c->sig, err, errlen) < 0) {
        return -1;
    }
    buf_reset(h);
#define LINE(name, value, vlen)                                                                    \
    do {                                                                                           \
        offs[n++] = h->len;                                                                        \
        if (buf_append_str(h, name) < 0 || buf_append(h, ": ", 2) < 0 ||                           \
            buf_append(h, value, vlen) < 0 || buf_append(h, "", 1) < 0) {                          \
            goto toolong;                                                                          \
        }                                                                                          \
    } while (0)
    for (i = 0; i < 3; i++) {
        LINE(sh[i].name, sh[i].value, strlen(sh[i].value));
    }
    if (c->sig.add_date) {
        LINE("X-Amz-Date", c->sig.amz_date, strlen(c->sig.amz_date));
    }
    if (c->sig.add_token) {
        LINE("X-Amz-Security-Token", cr->session_token, strlen(cr->session_token));
    }
    LINE("Authorization", c->sig.authorization.data, c->sig.authorization.len);
#undef LINE
    for (i = 0; i < n; i++) {
        call->hdr_ptrs[i] = h->data + offs[i];
    }
    call->hdr_ptrs[n] = NULL;
    return 0;
toolong:
    snprintf(err, errlen, "request headers too large");
    return -1;
}

static void attempt(void *arg)
{
    struct aws_call *call = arg;
    struct aws_client *c = call->c;
    struct aws_http_request req;
    const struct aws_creds *cr;
    const char *why;
    char err[256];
    int rc;

    switch (aws_creds_chain_get(c->creds, &cr, &why)) {
    case AWS_CREDS_PENDING:
        call->state = CALL_CREDS; /* on_creds_ready sends it on */
        return;
    case AWS_CREDS_FAILED:
        snprintf(call->err_type, sizeof(call->err_type), "%s", AWS_ERROR_CREDENTIALS);
        snprintf(call->err_msg, sizeof(call->err_msg), "%s", why);
        deliver(call, 0, NULL, 0, 0, 1);
        return;
    case AWS_CREDS_READY:
        break;
    }
    call->attempts++;
    call->state = CALL_SENDING;
    call->creds_gen = aws_creds_chain_generation(c->creds);
    if (build_request(call, cr, err, sizeof(err)) < 0) {
        snprintf(call->err_type, sizeof(call->err_type), "%s", AWS_ERROR_SIGNING);
        snprintf(call->err_msg, sizeof(call->err_msg), "%s", err);
        deliver(call, 0, NULL, 0, 0, 1);
        return;
    }
    memset(&req, 0, sizeof(req));
    req.url = c->ep.url;
    req.headers = call->hdr_ptrs;
    req.body = call->body_p;
    req.body_len = call->body_len;
    req.error_type_hdr = call->etype_hdr;
    req.error_type_hdr_len = sizeof(call->etype_hdr);
    call->etype_hdr[0] = '\0';
    call->sync_done = 0;
    call->in_send = 1;
    rc = c->transport->send(c->transport->tctx, &req, on_transport_done, call);
    call->in_send = 0;
    if (rc < 0) {
        handle_result(call, 0, NULL, 0, "could not start the HTTP request");
    } else if (call->sync_done) {
        handle_result(call, call->sync_status, call->sync_body.data, call->sync_body.len,
                      call->sync_has_terr ? call->sync_terr : NULL);
    }
}

static int call_start(struct aws_client *c, const char *operation, const char *body, size_t len,
                      int copy, aws_done_fn done, void *ctx);

int aws_client_call(struct aws_client *c, const char *operation, const char *body, size_t len,
                    aws_done_fn done, void *ctx)
{
    return call_start(c, operation, body, len, 1, done, ctx);
}

int aws_client_call_ref(struct aws_client *c, const char *operation, const char *body, size_t len,
                        aws_done_fn done, void *ctx)
{
    return call_start(c, operation, body, len, 0, done, ctx);
}

static int call_start(struct aws_client *c, const char *operation, const char *body, size_t len,
                      int copy, aws_done_fn done, void *ctx)
{
    struct aws_call *call;
    size_t plen, olen;

    if (!c || c->destroying || !operation || !*operation || !done ||
        strlen(c->target_prefix) + strlen(operation) + 2 > CALL_MAX_TARGET) {
        return -1;
    }
    call = pool_get(&c->pool);
    if (call) {
        buf_reset(&call->body);
        buf_reset(&call->hdrs);
        buf_reset(&call->sync_body);
        call->prev = call->next = NULL;
        call->attempts = 0;
        call->auth_retried = 0;
        call->in_send = call->sync_done = 0;
        call->err_type[0] = call->err_msg[0] = '\0';
    } else {
        call = calloc(1, sizeof(*call));
        if (!call) {
            return -1;
        }
        buf_init(&call->body, (size_t)1 << 31);
        buf_init(&call->hdrs, 1 << 16);
        buf_init(&call->sync_body, c->max_response);
    }
    plen = strlen(c->target_prefix);
    olen = strlen(operation);
    memcpy(call->target, c->target_prefix, plen);
    call->target[plen] = '.';
    memcpy(call->target + plen + 1, operation, olen + 1);
    call->operation = call->target + plen + 1;
    if (!copy) {
        call->body_p = body ? body : "";
        call->body_len = body ? len : 0;
    } else if (buf_set(&call->body, body ? body : "", body ? len : 0) < 0) {
        call_free(call);
        return -1;
    } else {
        call->body_p = call->body.data;
        call->body_len = call->body.len;
    }
    call->c = c;
    call->done = done;
    call->ctx = ctx;
    call->start_ms = loop_now_ms(c->loop);
    loop_timer_init(&call->timer);
    call->state = CALL_WAITING;
    call->next = c->calls;
    if (c->calls) {
        c->calls->prev = call;
    }
    c->calls = call;
    /* Sent from the loop, never from inside the caller. */
    loop_timer_start(c->loop, &call->timer, 0, attempt, call);
    return 0;
}

/* ---- lifecycle ---- */

/* The chain finished a resolution: calls that waited go on (each from
 * its own loop turn, so none is answered from inside this callback). */
static void on_creds_ready(void *ctx)
{
    struct aws_client *c = ctx;
    struct aws_call *call;

    for (call = c->calls; call; call = call->next) {
        if (call->state == CALL_CREDS) {
            call->state = CALL_WAITING;
            loop_timer_start(c->loop, &call->timer, 0, attempt, call);
        }
    }
}

struct aws_client *aws_client_create(struct loop *loop, const struct aws_client_options *o,
                                     char *err, size_t errlen)
{
    struct aws_client *c;
    struct aws_creds_chain_options co;
    char url[AWS_ENDPOINT_URL_MAX];
    const char *service = o->service && *o->service ? o->service : NULL;

    if (!service || !o->target_prefix || !*o->target_prefix) {
        snprintf(err, errlen, "aws client: service and target prefix are required");
        return NULL;
    }
    if (!o->region || !*o->region) {
        snprintf(err, errlen, "aws client: region is required");
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "aws client: out of memory");
        return NULL;
    }
    c->loop = loop;
    sigv4_result_init(&c->sig);
    random_prng_seed(&c->rng);
    pool_init(&c->pool, CALL_POOL_MAX, offsetof(struct aws_call, pool_next));
    c->service = strdup(service);
    c->target_prefix = strdup(o->target_prefix);
    c->region = strdup(o->region);
    c->log_name = o->log_name ? strdup(o->log_name) : NULL;
    if (!c->service || !c->target_prefix || !c->region || (o->log_name && !c->log_name)) {
        snprintf(err, errlen, "aws client: out of memory");
        goto fail;
    }
    c->max_attempts = o->max_attempts > 0 ? o->max_attempts : 3;
    if (c->max_attempts > MAX_ATTEMPTS_CAP) {
        c->max_attempts = MAX_ATTEMPTS_CAP;
    }
    c->base_ms = o->retry_base_ms > 0 ? o->retry_base_ms : 50;
    c->cap_ms = o->retry_cap_ms > 0 ? o->retry_cap_ms : 5000;
    c->max_response = o->max_response_bytes ? o->max_response_bytes : AWS_HTTP_MAX_RESPONSE;
    if (aws_endpoint_resolve(o->endpoint, service, o->region, url, sizeof(url), err, errlen) < 0 ||
        aws_endpoint_parse(url, &c->ep, err, errlen) < 0) {
        goto fail;
    }
    if (o->transport) {
        c->transport = o->transport;
    } else {
        struct aws_http_options ho;

        memset(&ho, 0, sizeof(ho));
        ho.ca_file = o->ca_file;
        ho.connect_timeout_ms = o->connect_timeout_ms;
        ho.request_timeout_ms = o->request_timeout_ms;
        ho.http2 = o->http2;
        ho.max_response_bytes = o->max_response_bytes;
        ho.max_connections = o->max_connections;
        /* Our own client unless HTTP/2 or a proxy needs libcurl. */
        if (!o->http2 && !aws_h1_proxy_in_env()) {
            c->h1 = aws_h1_create(loop, &ho, err, errlen);
            if (!c->h1) {
                goto fail;
            }
            c->transport = aws_h1_transport(c->h1);
        } else {
            c->http = aws_http_create(loop, &ho, err, errlen);
            if (!c->http) {
                goto fail;
            }
            c->transport = aws_http_transport(c->http);
        }
    }
    memset(&co, 0, sizeof(co));
    co.access_key = o->access_key;
    co.secret_key = o->secret_key;
    co.session_token = o->session_token;
    co.region = c->region;
    co.transport = c->transport;
    co.log_name = c->log_name;
    co.ready = on_creds_ready;
    co.ctx = c;
    c->creds = aws_creds_chain_create(loop, &co, err, errlen);
    if (!c->creds) {
        goto fail;
    }
    log_debug(c->log_name, "aws client: %s at %s, region %s", c->service, c->ep.url, c->region);
    return c;
fail:
    aws_client_destroy(c);
    return NULL;
}

void aws_client_destroy(struct aws_client *c)
{
    struct aws_call *kept;

    if (!c || c->destroying) {
        return;
    }
    c->destroying = 1;
    /* First the chain: its fetches in flight are abandoned, so the
     * transport's answers below reach nobody. */
    aws_creds_chain_destroy(c->creds);
    c->creds = NULL;
    /* Our own transport answers its requests (no retries now). */
    aws_http_destroy(c->http);
    c->http = NULL;
    aws_h1_destroy(c->h1);
    c->h1 = NULL;
    while (c->calls) {
        struct aws_call *call = c->calls;
        int sending = call->state == CALL_SENDING;

        snprintf(call->err_type, sizeof(call->err_type), "%s", AWS_ERROR_TRANSPORT);
        snprintf(call->err_msg, sizeof(call->err_msg), "aws client shut down %s",
                 sending ? "with the request in flight" : "before the request was sent");
        if (!sending) {
            loop_timer_stop(c->loop, &call->timer);
        }
        /* An outside transport still holds a sending call: keep it (and
         * its body) until the transport answers. */
        deliver(call, 0, NULL, 0, 0, !sending);
    }
    while ((kept = pool_get(&c->pool)) != NULL) {
        call_free(kept);
    }
    if (c->delivering) {
        c->free_pending = 1; /* the done callback that destroys us is still running */
        return;
    }
    client_free(c);
}

static void client_free(struct aws_client *c)
{
    OPENSSL_cleanse(&c->key_cache, sizeof(c->key_cache));
    sigv4_result_free(&c->sig);
    free(c->service);
    free(c->target_prefix);
    free(c->region);
    free(c->log_name);
    free(c);
}
