/* envelope.c - the request and reply bodies that travel through KubeMQ.
 *
 * Parsing walks the top-level object itself and hands each member's text
 * to jansson. Two reasons: a `data` object is passed on as its own text
 * with the whitespace removed (key order, number spelling and big
 * integers survive exactly, where a jansson round trip would reorder
 * nothing but would print 0.1 as 0.10000000000000001 and reject integers
 * past 64 bits), and a base64 `data` string - the hot path - is decoded
 * straight from the body without an intermediate copy. */
#include "message/envelope.h"

#include "base/b64.h"
#include "base/jflat.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- shared ---------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static json_t *meta_object(json_t **slot)
{
    if (!*slot) {
        *slot = json_object();
    }
    return *slot;
}

static int meta_set(json_t **slot, const char *key, const char *value)
{
    json_t *obj = meta_object(slot), *v;

    if (!obj || !key || !value || !(v = json_string(value))) {
        return -1;
    }
    return json_object_set_new(obj, key, v);
}

static int dump_to_buf(const char *p, size_t n, void *data)
{
    return buf_append(data, p, n);
}

#define FAST_META_MAX 32

struct meta_pair {
    const char *k, *v;
    size_t kn, vn;
};

/* The usual metadata (a few plain strings) written without jansson, keys
 * sorted as JSON_SORT_KEYS sorts them. 1 done, 0 use jansson, -1 full. */
static int append_meta_fast(struct buf *out, json_t *meta)
{
    struct meta_pair m[FAST_META_MAX];
    const char *key;
    json_t *val;
    size_t n = 0, i, j;

    json_object_foreach(meta, key, val)
    {
        if (n == FAST_META_MAX || !json_is_string(val)) {
            return 0;
        }
        m[n].k = key;
        m[n].kn = strlen(key);
        m[n].v = json_string_value(val);
        m[n].vn = json_string_length(val);
        if (!jflat_is_plain(m[n].k, m[n].kn) || !jflat_is_plain(m[n].v, m[n].vn)) {
            return 0;
        }
        n++;
    }
    for (i = 1; i < n; i++) {
        struct meta_pair t = m[i];

        for (j = i; j > 0 && strcmp(m[j - 1].k, t.k) > 0; j--) {
            m[j] = m[j - 1];
        }
        m[j] = t;
    }
    if (buf_append_char(out, '{') < 0) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        if ((i && buf_append_char(out, ',') < 0) || buf_append_char(out, '"') < 0 ||
            buf_append(out, m[i].k, m[i].kn) < 0 || buf_append(out, "\":\"", 3) < 0 ||
            buf_append(out, m[i].v, m[i].vn) < 0 || buf_append_char(out, '"') < 0) {
            return -1;
        }
    }
    return buf_append_char(out, '}') < 0 ? -1 : 1;
}

/* Metadata as a compact JSON object with sorted keys ({} when empty). */
static int append_meta(struct buf *out, const json_t *meta)
{
    size_t mark = out->len;
    int rc;

    if (!meta || json_object_size(meta) == 0) {
        return buf_append(out, "{}", 2);
    }
    rc = append_meta_fast(out, (json_t *)meta);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    out->len = mark; /* nothing was written, but be sure */
    return json_dump_callback(meta, dump_to_buf, out, JSON_COMPACT | JSON_SORT_KEYS);
}

/* ---- scanning the top-level object ----------------------------------- */

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && is_ws(*p)) {
        p++;
    }
    return p;
}

/* p at an opening quote: the position after the closing quote, or NULL. */
static const char *skip_string(const char *p, const char *end)
{
    p++;
    for (;;) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        const char *b;

        if (!q) {
            return NULL;
        }
        /* An odd run of backslashes before the quote escapes it. */
        b = q;
        while (b > p && b[-1] == '\\') {
            b--;
        }
        if ((q - b) % 2 == 0) {
            return q + 1;
        }
        p = q + 1;
    }
}

/* The end of the value starting at p. Only finds the extent: jansson
 * validates the text afterwards. */
static const char *skip_value(const char *p, const char *end)
{
    int depth = 0;

    if (p >= end) {
        return NULL;
    }
    if (*p == '"') {
        return skip_string(p, end);
    }
    if (*p != '{' && *p != '[') {
        while (p < end && !is_ws(*p) && *p != ',' && *p != '}' && *p != ']') {
            p++;
        }
        return p;
    }
    while (p < end) {
        if (*p == '"') {
            p = skip_string(p, end);
            if (!p) {
                return NULL;
            }
            continue;
        }
        if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            if (--depth == 0) {
                return p + 1;
            }
        }
        p++;
    }
    return NULL;
}

static json_t *load_span(const char *p, size_t n)
{
    json_t *v = json_loadb(p, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

    /* Integers past 64 bits are valid JSON (Go reads them as float64). */
    if (!v) {
        v = json_loadb(p, n, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, NULL);
    }
    return v;
}

/* Is the member name (raw text, quotes included) `want`, ignoring case as
 * Go's encoding/json does? */
static int key_is(const char *p, size_t n, const char *want)
{
    size_t wlen = strlen(want);
    json_t *k;
    int eq;

    if (!memchr(p, '\\', n)) {
        return n == wlen + 2 && strncasecmp(p + 1, want, wlen) == 0;
    }
    k = json_loadb(p, n, JSON_DECODE_ANY, NULL);
    eq = json_is_string(k) && json_string_length(k) == wlen &&
         strncasecmp(json_string_value(k), want, wlen) == 0;
    json_decref(k);
    return eq;
}

/* The usual metadata member: a flat object of plain strings (or null) -
 * merged without jansson's parser. Returns 1 when merged, 0 when the text
 * needs the full parser (then nothing was changed), -1 out of memory. */
static int merge_meta_fast(json_t **meta, const char *p, size_t n)
{
    struct jflat_member m[FAST_META_MAX];
    int cnt = jflat_scan(p, n, m, FAST_META_MAX), i;
    json_t *obj, *v;

    if (cnt < 0 || !(obj = meta_object(meta))) {
        return 0;
    }
    for (i = 0; i < cnt; i++) {
        /* null is the empty string, as in Go */
        v = json_stringn_nocheck(m[i].v, m[i].vn);
        if (!v || json_object_setn_new_nocheck(obj, m[i].k, m[i].kn, v) < 0) {
            return -1;
        }
    }
    return 1;
}

/* Merge one `metadata` member into meta. Returns -1 when the text is not
 * JSON, 1 with a message in bad (the first one wins) when it is JSON of
 * the wrong shape, else 0. */
static int merge_meta(json_t **meta, const char *p, size_t n, char *bad, size_t badlen)
{
    json_t *v = load_span(p, n), *val;
    const char *key;

    if (!v) {
        return -1;
    }
    if (json_is_null(v)) {
        /* Go resets the map on null. */
        json_object_clear(meta_object(meta));
        json_decref(v);
        return 0;
    }
    if (!json_is_object(v)) {
        if (!bad[0]) {
            snprintf(bad, badlen, "metadata: must be an object of string values");
        }
        json_decref(v);
        return 1;
    }
    json_object_foreach(v, key, val)
    {
        const char *s = "";

        /* kubemq-targets silently treats a body whose metadata holds a
         * non-string (e.g. "shard_count": 1) as raw data, which then fails
         * with a puzzling "invalid method type". We name the key instead.
         * null stays the empty string, as in Go. */
        if (json_is_string(val)) {
            s = json_string_value(val);
            if (strlen(s) != json_string_length(val)) {
                if (!bad[0]) {
                    snprintf(bad, badlen, "metadata: value of \"%s\" must not contain NUL", key);
                }
                continue;
            }
        } else if (!json_is_null(val)) {
            if (!bad[0]) {
                snprintf(bad, badlen, "metadata: value of \"%s\" must be a string", key);
            }
            continue;
        }
        if (!bad[0] && meta_set(meta, key, s) < 0) {
            snprintf(bad, badlen, "metadata: out of memory");
        }
    }
    json_decref(v);
    return bad[0] ? 1 : 0;
}

/* Copy the JSON text p[0..n) without insignificant whitespace. */
static int append_compact(struct buf *out, const char *p, size_t n)
{
    const char *end = p + n, *run = p;

    if (buf_reserve(out, n) < 0) {
        return -1;
    }
    while (p < end) {
        if (*p == '"') {
            p = skip_string(p, end);
            if (!p) {
                return -1;
            }
            continue;
        }
        if (is_ws(*p)) {
            if (buf_append(out, run, (size_t)(p - run)) < 0) {
                return -1;
            }
            p = skip_ws(p, end);
            run = p;
            continue;
        }
        p++;
    }
    return buf_append(out, run, (size_t)(end - run));
}

/* Turn the `data` member text into bytes. Returns 0, -1 (not JSON: the
 * body becomes raw data), or 1 with the reason in err. */
static int take_data(struct envelope_request *r, const char *p, size_t n, char *err, size_t errlen)
{
    json_t *v;
    int rc = 0;

    /* Hot path: a base64 string without escapes is valid JSON as it is;
     * decoding checks it (one pass), the rare failure says why. */
    if (*p == '"' && !memchr(p + 1, '\\', n - 2)) {
        if (b64_decode(p + 1, n - 2, &r->data) == 0) {
            r->has_data = 1;
            if (buf_set(&r->data_b64, p + 1, n - 2) < 0) {
                buf_reset(&r->data_b64); /* only an optimisation */
            }
            return 0;
        }
        if (b64_is_valid(p + 1, n - 2)) {
            set_err(err, errlen, "data too large (limit %zu bytes)", r->data.max);
            return 1;
        }
    }
    v = load_span(p, n);
    if (!v) {
        return -1;
    }
    switch (json_typeof(v)) {
    case JSON_NULL:
        break;
    case JSON_STRING: {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);

        if (!b64_is_valid(s, len) || b64_decode(s, len, &r->data) < 0) {
            rc = buf_set(&r->data, s, len) < 0 ? 2 : 0;
        }
        r->has_data = 1;
        break;
    }
    case JSON_OBJECT:
        rc = append_compact(&r->data, p, n) < 0 ? 2 : 0;
        r->has_data = 1;
        break;
    case JSON_ARRAY:
        set_err(err, errlen, "invalid data format, array");
        rc = 1;
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        set_err(err, errlen, "invalid data format, bool");
        rc = 1;
        break;
    default:
        set_err(err, errlen, "invalid data format, number");
        rc = 1;
        break;
    }
    if (rc == 2) {
        set_err(err, errlen, "data too large (limit %zu bytes)", r->data.max);
        rc = 1;
    }
    json_decref(v);
    return rc;
}

/* ---- request --------------------------------------------------------- */

void envelope_request_init(struct envelope_request *r)
{
    r->metadata = json_object();
    buf_init(&r->data, ENVELOPE_MAX_BODY);
    buf_init(&r->data_b64, ENVELOPE_MAX_BODY);
    r->has_data = 0;
    r->not_json = 0;
}

void envelope_request_free(struct envelope_request *r)
{
    if (!r) {
        return;
    }
    json_decref(r->metadata);
    r->metadata = NULL;
    buf_free(&r->data);
    buf_free(&r->data_b64);
    r->has_data = 0;
    r->not_json = 0;
}

static void request_clear(struct envelope_request *r)
{
    if (r->metadata) {
        json_object_clear(r->metadata);
    }
    buf_reset(&r->data);
    if (r->data.max < ENVELOPE_MAX_BODY) {
        r->data.max = ENVELOPE_MAX_BODY;
    }
    buf_reset(&r->data_b64);
    if (r->data_b64.max < ENVELOPE_MAX_BODY) {
        r->data_b64.max = ENVELOPE_MAX_BODY;
    }
    r->has_data = 0;
    r->not_json = 0;
}

/* kubemq-targets' fallback: the body itself is the data. */
static int take_raw(struct envelope_request *r, const void *body, size_t len, int not_json,
                    char *err, size_t errlen)
{
    request_clear(r);
    if (buf_set(&r->data, body, len) < 0) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    r->has_data = len > 0;
    r->not_json = not_json;
    return 0;
}

int envelope_request_parse(struct envelope_request *r, const void *body, size_t len, int raw,
                           char *err, size_t errlen)
{
    const char *p = body, *end = p + len, *data_p = NULL, *data_end = NULL;
    char bad[256] = "";
    json_t *meta = NULL;
    int rc;

    if (len > ENVELOPE_MAX_BODY) {
        set_err(err, errlen, "request too large: %zu bytes (limit %zu)", len, ENVELOPE_MAX_BODY);
        return -1;
    }
    if (raw) {
        return take_raw(r, body, len, 0, err, errlen);
    }
    if (!body || len == 0) {
        set_err(err, errlen, "empty request");
        return -1;
    }
    request_clear(r);
    /* Merge into the request's own (cleared) object: no new one per request. */
    meta = r->metadata ? json_incref(r->metadata) : NULL;

    /* Walk {"name": value, ...}; the last `data` wins, `metadata`
     * members merge, other members only have to be valid JSON. */
    p = skip_ws(p, end);
    if (p == end || *p != '{') {
        goto not_json;
    }
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') {
        p++;
    } else {
        for (;;) {
            const char *k = p, *kend, *v, *vend;

            if (p == end || *p != '"' || !(kend = skip_string(p, end))) {
                goto not_json;
            }
            p = skip_ws(kend, end);
            if (p == end || *p != ':') {
                goto not_json;
            }
            v = skip_ws(p + 1, end);
            if (!(vend = skip_value(v, end)) || vend == v) {
                goto not_json;
            }
            if (key_is(k, (size_t)(kend - k), "metadata")) {
                rc = merge_meta_fast(&meta, v, (size_t)(vend - v));
                if (rc < 0 && !bad[0]) {
                    snprintf(bad, sizeof(bad), "metadata: out of memory");
                } else if (rc == 0 &&
                           merge_meta(&meta, v, (size_t)(vend - v), bad, sizeof(bad)) < 0) {
                    goto not_json;
                }
            } else if (key_is(k, (size_t)(kend - k), "data")) {
                if (data_p) {
                    json_t *prev = load_span(data_p, (size_t)(data_end - data_p));

                    if (!prev) {
                        goto not_json;
                    }
                    json_decref(prev);
                }
                data_p = v;
                data_end = vend;
            } else {
                json_t *other = load_span(v, (size_t)(vend - v));

                if (!other) {
                    goto not_json;
                }
                json_decref(other);
            }
            p = skip_ws(vend, end);
            if (p < end && *p == ',') {
                p = skip_ws(p + 1, end);
                continue;
            }
            if (p < end && *p == '}') {
                p++;
                break;
            }
            goto not_json;
        }
    }
    if (skip_ws(p, end) != end) {
        goto not_json;
    }
    if (data_p) {
        rc = take_data(r, data_p, (size_t)(data_end - data_p), err, errlen);
        if (rc < 0) {
            goto not_json;
        }
        if (rc > 0 && !bad[0]) {
            goto fail;
        }
    }
    if (bad[0]) {
        set_err(err, errlen, "%s", bad);
        goto fail;
    }
    if (meta) {
        json_decref(r->metadata);
        r->metadata = meta;
    }
    return 0;

not_json:
    json_decref(meta);
    return take_raw(r, body, len, 1, err, errlen);

fail:
    json_decref(meta);
    request_clear(r);
    return -1;
}

const char *envelope_meta(const struct envelope_request *r, const char *key)
{
    const char *s;

    if (!r->metadata) {
        return NULL;
    }
    s = json_string_value(json_object_get(r->metadata, key));
    return s && s[0] ? s : NULL;
}

int envelope_meta_set(struct envelope_request *r, const char *key, const char *value)
{
    return meta_set(&r->metadata, key, value);
}

int envelope_request_serialize(const struct envelope_request *r, struct buf *out)
{
    if (buf_append_str(out, "{\"metadata\":") < 0 || append_meta(out, r->metadata) < 0) {
        return -1;
    }
    if (r->has_data &&
        (buf_append_str(out, ",\"data\":\"") < 0 ||
         b64_encode(r->data.data, r->data.len, out) < 0 || buf_append_char(out, '"') < 0)) {
        return -1;
    }
    return buf_append_char(out, '}');
}

/* ---- reply ----------------------------------------------------------- */

void envelope_reply_init(struct envelope_reply *r)
{
    r->metadata = json_object();
    buf_init(&r->data, ENVELOPE_MAX_BODY);
    r->has_data = 0;
    r->is_error = 0;
    buf_init(&r->error, 0);
    r->retryable = 0;
    r->error_type[0] = '\0';
}

void envelope_reply_free(struct envelope_reply *r)
{
    if (!r) {
        return;
    }
    json_decref(r->metadata);
    r->metadata = NULL;
    buf_free(&r->data);
    buf_free(&r->error);
    r->has_data = 0;
    r->is_error = 0;
    r->retryable = 0;
    r->error_type[0] = '\0';
}

void envelope_reply_reset(struct envelope_reply *r)
{
    if (r->metadata) {
        json_object_clear(r->metadata);
    }
    buf_reset(&r->data);
    buf_reset(&r->error);
    r->has_data = 0;
    r->is_error = 0;
    r->retryable = 0;
    r->error_type[0] = '\0';
}

int envelope_reply_meta_set(struct envelope_reply *r, const char *key, const char *value)
{
    return meta_set(&r->metadata, key, value);
}

int envelope_reply_set_data(struct envelope_reply *r, const void *p, size_t n)
{
    if (buf_set(&r->data, p, n) < 0) {
        return -1;
    }
    r->has_data = 1;
    return 0;
}

void envelope_reply_set_error(struct envelope_reply *r, const char *fmt, ...)
{
    va_list ap;

    r->is_error = 1;
    buf_reset(&r->error);
    va_start(ap, fmt);
    if (buf_vappendf(&r->error, fmt, ap) < 0) {
        /* Keep a reply that still says what kind of thing went wrong. */
        buf_set(&r->error, "error message too long", 22);
    }
    va_end(ap);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len, i;
    unsigned int cp;

    if (s[0] < 0x80) {
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
        return 0;
    }
    return len;
}

/* A JSON string of text that may hold invalid UTF-8 (an error message can
 * quote anything): bad bytes become U+FFFD, as Go's encoder does. */
static int append_json_text(struct buf *out, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    struct buf clean = BUF_INIT(0);
    size_t i = 0, k;
    int rc;

    while (i < n && (k = utf8_seq(u + i, n - i)) != 0) {
        i += k;
    }
    if (i == n) {
        return buf_append_json_str(out, s, n);
    }
    clean.max = out->max;
    rc = buf_append(&clean, s, i);
    while (rc == 0 && i < n) {
        k = utf8_seq(u + i, n - i);
        if (k) {
            rc = buf_append(&clean, s + i, k);
            i += k;
        } else {
            rc = buf_append(&clean, "\xef\xbf\xbd", 3);
            i++;
        }
    }
    if (rc == 0) {
        rc = buf_append_json_str(out, clean.data, clean.len);
    }
    buf_free(&clean);
    return rc;
}

int envelope_reply_serialize(const struct envelope_reply *r, struct buf *out)
{
    if (buf_append_str(out, "{\"metadata\":") < 0 || append_meta(out, r->metadata) < 0) {
        return -1;
    }
    if (r->has_data) {
        if (buf_append_str(out, ",\"data\":\"") < 0 ||
            b64_encode(r->data.data, r->data.len, out) < 0 || buf_append_char(out, '"') < 0) {
            return -1;
        }
    } else if (buf_append_str(out, ",\"data\":null") < 0) {
        return -1;
    }
    if (buf_append_str(out, r->is_error ? ",\"is_error\":true,\"error\":"
                                        : ",\"is_error\":false,\"error\":") < 0 ||
        append_json_text(out, buf_str(&r->error), r->error.len) < 0) {
        return -1;
    }
    return buf_append_char(out, '}');
}

int envelope_error_serialize(const char *text, struct buf *out)
{
    if (buf_append_str(out, "{\"metadata\":{},\"data\":null,\"is_error\":true,\"error\":") < 0 ||
        append_json_text(out, text, strlen(text)) < 0) {
        return -1;
    }
    return buf_append_char(out, '}');
}
