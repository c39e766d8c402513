/* middleware_log.c - the log middleware's per-request lines.
 *
 * info:  "request ok: method=put_record stream=s1 (12 ms)", failures at
 *        error level with the error text;
 * error: failures only;
 * debug: as info, plus both metadata objects, the data sizes and an
 *        excerpt of the data (the only level that shows record data).
 * Lines are written at info/error whatever the binding's level, so a
 * binding at debug needs no process-wide debug logging. Request metadata
 * holds no secrets (credentials live in the target's properties). */
#include "binding/middleware.h"
#include "binding/middleware_internal.h"

#include "base/b64.h"
#include "base/buf.h"
#include "base/log.h"

#include <stdlib.h>
#include <string.h>

#define LOG_DATA_EXCERPT 512

/* Bare when harmless, else a JSON string: values come from the network
 * and must not break the line. */
static void append_value(struct buf *b, const char *v)
{
    const char *p;

    for (p = v; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("._:/-", *p))) {
            buf_append_json_str(b, v, strlen(v));
            return;
        }
    }
    buf_append_str(b, v);
}

/* Error texts may quote the network: one line, control bytes blanked. */
static void append_clean(struct buf *b, const struct buf *text)
{
    size_t i, start = b->len;

    if (buf_append(b, buf_str(text), text->len) < 0) {
        return;
    }
    for (i = start; i < b->len; i++) {
        if ((unsigned char)b->data[i] < 0x20 || b->data[i] == 0x7f) {
            b->data[i] = ' ';
        }
    }
}

static void append_request(struct buf *b, const struct envelope_request *req)
{
    const char *method = envelope_meta(req, "method");
    const char *stream = envelope_meta(req, "stream_name");

    if (!stream) {
        stream = envelope_meta(req, "stream");
    }
    buf_append_str(b, "method=");
    append_value(b, method ? method : "(none)");
    if (stream) {
        buf_append_str(b, " stream=");
        append_value(b, stream);
    }
}

static void append_meta(struct buf *b, const json_t *meta)
{
    char *s = meta ? json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

    buf_append_str(b, s ? s : "{}");
    free(s);
}

/* "; <what> metadata {...}, N bytes of data <excerpt>": request data as
 * base64 (records are bytes), reply data as text (AWS JSON). */
static void append_part(struct buf *b, const char *what, const json_t *meta, const struct buf *data,
                        int has_data, int as_b64)
{
    size_t len = has_data ? data->len : 0;
    size_t n = len < LOG_DATA_EXCERPT ? len : LOG_DATA_EXCERPT;

    buf_appendf(b, "; %s metadata ", what);
    append_meta(b, meta);
    buf_appendf(b, ", %zu bytes of data", len);
    if (!n) {
        return;
    }
    if (as_b64) {
        buf_append_str(b, " (base64) ");
        b64_encode(data->data, n, b);
    } else {
        buf_append_char(b, ' ');
        buf_append_json_str(b, data->data, n);
    }
    if (n < len) {
        buf_append_str(b, "[...]");
    }
}

void middleware_log_result(const char *binding, int log_level, const struct envelope_request *req,
                           const struct envelope_reply *reply, int attempts, uint64_t elapsed_us)
{
    struct buf line = BUF_INIT(16384);

    if (log_level == MIDDLEWARE_LOG_NONE ||
        (log_level == MIDDLEWARE_LOG_ERROR && !reply->is_error)) {
        return;
    }
    buf_append_str(&line, reply->is_error ? "request failed: " : "request ok: ");
    append_request(&line, req);
    if (attempts > 1 && !reply->is_error) {
        buf_appendf(&line, " after %d attempts", attempts);
    }
    buf_appendf(&line, " (%llu ms)", (unsigned long long)(elapsed_us / 1000));
    if (reply->is_error) {
        buf_append_str(&line, ": ");
        append_clean(&line, &reply->error);
    }
    if (log_level == MIDDLEWARE_LOG_DEBUG) {
        append_part(&line, "request", req->metadata, &req->data, req->has_data, 1);
        append_part(&line, "reply", reply->metadata, &reply->data, reply->has_data, 0);
    }
    log_write(reply->is_error ? LOG_LEVEL_ERROR : LOG_LEVEL_INFO, binding, "%s", buf_str(&line));
    buf_free(&line);
}

void middleware_log_retry(const char *binding, int log_level, const struct envelope_request *req,
                          const struct envelope_reply *reply, int attempt, int attempts,
                          uint64_t delay_ms)
{
    struct buf line = BUF_INIT(8192);

    if (log_level != MIDDLEWARE_LOG_INFO && log_level != MIDDLEWARE_LOG_DEBUG) {
        return;
    }
    buf_appendf(&line, "attempt %d of %d failed, retrying in %llu ms: ", attempt, attempts,
                (unsigned long long)delay_ms);
    append_request(&line, req);
    buf_append_str(&line, ": ");
    append_clean(&line, &reply->error);
    log_write(LOG_LEVEL_WARN, binding, "%s", buf_str(&line));
    buf_free(&line);
}
