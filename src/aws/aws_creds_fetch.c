/* aws_creds_fetch.c - what the network credential providers share: one
 * fetch (HTTP requests through the client's transport), answers parsed. */
#include "aws/aws_creds_internal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static void wipe_buf(struct buf *b)
{
    if (b->data) {
        OPENSSL_cleanse(b->data, b->cap);
    }
    buf_free(b);
}

struct aws_creds_fetch *aws_creds_fetch_new(const struct aws_creds_net *net, aws_creds_got_fn got,
                                            void *ctx)
{
    struct aws_creds_fetch *f = calloc(1, sizeof(*f));

    if (!f) {
        return NULL;
    }
    f->net = *net;
    f->got = got;
    f->ctx = ctx;
    f->pid = -1;
    f->fd = -1;
    buf_init(&f->hdrs, 1 << 16);
    buf_init(&f->body, AWS_CREDS_MAX_DOC * 2);
    buf_init(&f->secret, AWS_CREDS_MAX_DOC);
    buf_init(&f->sync_body, AWS_CREDS_MAX_DOC);
    buf_init(&f->out, AWS_CREDS_MAX_DOC);
    loop_timer_init(&f->timer);
    return f;
}

void aws_creds_fetch_free(struct aws_creds_fetch *f)
{
    if (!f) {
        return;
    }
    if (loop_timer_armed(&f->timer)) {
        loop_timer_stop(f->net.loop, &f->timer);
    }
    wipe_buf(&f->hdrs);
    wipe_buf(&f->body);
    wipe_buf(&f->secret);
    wipe_buf(&f->sync_body);
    wipe_buf(&f->out);
    free(f);
}

void aws_creds_fetch_cancel(struct aws_creds_fetch *f)
{
    if (!f) {
        return;
    }
    if (f->abandon) {
        f->abandon(f);
        return;
    }
    if (f->in_flight) {
        f->cancelled = 1; /* the transport still answers: freed then */
        return;
    }
    aws_creds_fetch_free(f);
}

void aws_creds_fetch_reset_headers(struct aws_creds_fetch *f)
{
    if (f->hdrs.data) {
        OPENSSL_cleanse(f->hdrs.data, f->hdrs.len);
    }
    buf_reset(&f->hdrs);
    f->nhdrs = 0;
}

int aws_creds_fetch_header(struct aws_creds_fetch *f, const char *name, const char *value)
{
    if (f->nhdrs + 1 >= sizeof(f->hdr_ptrs) / sizeof(f->hdr_ptrs[0]) || strpbrk(value, "\r\n") ||
        buf_append_str(&f->hdrs, name) < 0 || buf_append(&f->hdrs, ": ", 2) < 0 ||
        buf_append_str(&f->hdrs, value) < 0 || buf_append(&f->hdrs, "", 1) < 0) {
        return -1;
    }
    f->nhdrs++;
    return 0;
}

static void deliver_sync(void *arg)
{
    struct aws_creds_fetch *f = arg;

    f->on_response(f, f->sync_status, f->sync_body.data, f->sync_body.len,
                   f->sync_has_terr ? f->sync_terr : NULL);
}

static void on_transport_done(void *cctx, long status, const char *body, size_t len,
                              const char *terr)
{
    struct aws_creds_fetch *f = cctx;
    int in_send = f->in_flight == 2;

    f->in_flight = 0;
    if (f->cancelled) {
        aws_creds_fetch_free(f);
        return;
    }
    if (!in_send) {
        f->on_response(f, status, body, len, terr);
        return;
    }
    /* Answered inside send: hand it over from the loop instead. */
    f->sync_status = status;
    f->sync_has_terr = terr != NULL;
    snprintf(f->sync_terr, sizeof(f->sync_terr), "%s", terr ? terr : "");
    if (!terr && buf_set(&f->sync_body, body ? body : "", body ? len : 0) < 0) {
        f->sync_has_terr = 1;
        snprintf(f->sync_terr, sizeof(f->sync_terr), "answer larger than %zu bytes",
                 AWS_CREDS_MAX_DOC);
    }
    loop_timer_start(f->net.loop, &f->timer, 0, deliver_sync, f);
}

int aws_creds_fetch_send(struct aws_creds_fetch *f, const char *method, long timeout_ms, int direct,
                         aws_creds_response_fn on_response)
{
    struct aws_http_request req;
    const char *p;
    size_t i;
    int rc;

    for (i = 0, p = f->hdrs.data; i < f->nhdrs; i++, p += strlen(p) + 1) {
        f->hdr_ptrs[i] = p;
    }
    f->hdr_ptrs[f->nhdrs] = NULL;
    memset(&req, 0, sizeof(req));
    req.method = method;
    req.url = f->url;
    req.headers = f->hdr_ptrs;
    req.body = f->body.data ? f->body.data : "";
    req.body_len = f->body.len;
    req.timeout_ms = timeout_ms;
    req.direct = direct;
    f->on_response = on_response;
    f->in_flight = 2; /* 2: inside send */
    rc = f->net.transport->send(f->net.transport->tctx, &req, on_transport_done, f);
    if (rc < 0) {
        f->in_flight = 0;
        return -1;
    }
    if (f->in_flight == 2) {
        f->in_flight = 1;
    }
    return 0;
}

void aws_creds_fetch_finish(struct aws_creds_fetch *f, struct aws_creds *got, const char *fmt, ...)
{
    char why[1024] = "";
    va_list ap;

    if (!got) {
        va_start(ap, fmt);
        vsnprintf(why, sizeof(why), fmt, ap);
        va_end(ap);
    }
    f->got(f->ctx, got, why);
    aws_creds_fetch_free(f);
}

void aws_creds_describe_failure(long status, const char *body, size_t len, const char *terr,
                                char *out, size_t outlen)
{
    char excerpt[160];
    size_t i, n = 0;

    if (terr) {
        if (strstr(terr, "Timeout") || strstr(terr, "timed out")) {
            snprintf(out, outlen, "timeout");
        } else {
            snprintf(out, outlen, "%s", terr);
        }
        return;
    }
    for (i = 0; body && i < len && n + 1 < sizeof(excerpt); i++) {
        unsigned char ch = (unsigned char)body[i];
        excerpt[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : ' ';
    }
    excerpt[n] = '\0';
    snprintf(out, outlen, "HTTP %ld%s%s", status, n ? ": " : "", excerpt);
}

static const char *json_str(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));

    return v && *v ? v : NULL;
}

int aws_creds_from_json(const char *body, size_t len, const char *token_field,
                        struct aws_creds *out, char *why, size_t whylen)
{
    json_t *root = json_loadb(body ? body : "", len, 0, NULL);
    const char *ak, *sk, *tok, *exp, *code;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (!json_is_object(root)) {
        snprintf(why, whylen, "the answer is not a JSON object");
        goto out;
    }
    code = json_str(root, "Code");
    if (code && strcmp(code, "Success") != 0) {
        snprintf(why, whylen, "the answer says Code \"%.64s\"%s%.200s", code,
                 json_str(root, "Message") ? ": " : "",
                 json_str(root, "Message") ? json_str(root, "Message") : "");
        goto out;
    }
    ak = json_str(root, "AccessKeyId");
    sk = json_str(root, "SecretAccessKey");
    tok = json_str(root, token_field);
    exp = json_str(root, "Expiration");
    if (!ak || !sk) {
        snprintf(why, whylen, "the answer has no %s", ak ? "SecretAccessKey" : "AccessKeyId");
        goto out;
    }
    if (exp && aws_creds_parse_time(exp, &out->expiration) < 0) {
        snprintf(why, whylen, "the answer's Expiration \"%.64s\" is not an ISO 8601 time", exp);
        goto out;
    }
    if (aws_creds_set(out, ak, sk, tok) < 0) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    rc = 0;
out:
    if (rc < 0) {
        aws_creds_free(out);
    }
    json_decref(root);
    return rc;
}

int aws_creds_read_file(const char *path, char **out, char *why, size_t whylen)
{
    struct buf b = BUF_INIT(AWS_CREDS_MAX_DOC);
    size_t start = 0, end;

    *out = NULL;
    if (buf_append_file(&b, path, why, whylen) < 0) {
        wipe_buf(&b);
        return -1;
    }
    end = b.len;
    while (start < end && isspace((unsigned char)b.data[start])) {
        start++;
    }
    while (end > start && isspace((unsigned char)b.data[end - 1])) {
        end--;
    }
    if (start == end) {
        snprintf(why, whylen, "%s is empty", path);
        wipe_buf(&b);
        return -1;
    }
    *out = strndup(b.data + start, end - start);
    wipe_buf(&b);
    if (!*out) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    return 0;
}

int aws_creds_env_true(const char *name)
{
    const char *v = getenv(name);

    return v && !strcasecmp(v, "true");
}
