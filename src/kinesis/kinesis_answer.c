/* kinesis_answer.c - Kinesis answers read one way on every path: result
 * entries in place or from jansson, and Go's timestamps. */
#include "kinesis/kinesis_answer.h"

#include "base/hex.h"
#include "base/jflat.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define ENTRY_MEMBERS 8 /* ShardId, SequenceNumber, ErrorCode, ErrorMessage, ... */

/* ------------------------------------------------------------- entries */

/* The one rule: present means a non-empty string. */
static void entry_finish(struct kinesis_entry *e)
{
    e->ok = e->shard && e->seq && !e->code;
}

static void span_member(const struct jflat_member *m, const char **p, size_t *n)
{
    if (m && !m->null && m->vn) {
        *p = m->v;
        *n = m->vn;
    } else {
        *p = NULL;
        *n = 0;
    }
}

static void entry_from_members(const struct jflat_member *m, int cnt, struct kinesis_entry *e)
{
    span_member(jflat_get(m, cnt, "ShardId"), &e->shard, &e->shard_n);
    span_member(jflat_get(m, cnt, "SequenceNumber"), &e->seq, &e->seq_n);
    span_member(jflat_get(m, cnt, "ErrorCode"), &e->code, &e->code_n);
    span_member(jflat_get(m, cnt, "ErrorMessage"), &e->message, &e->message_n);
    entry_finish(e);
}

static void span_json(const json_t *o, const char *key, const char **p, size_t *n)
{
    const json_t *v = json_object_get(o, key);

    if (json_is_string(v) && json_string_length(v)) {
        *p = json_string_value(v);
        *n = json_string_length(v);
    } else {
        *p = NULL;
        *n = 0;
    }
}

void kinesis_entry_from_json(const json_t *o, struct kinesis_entry *e)
{
    span_json(o, "ShardId", &e->shard, &e->shard_n);
    span_json(o, "SequenceNumber", &e->seq, &e->seq_n);
    span_json(o, "ErrorCode", &e->code, &e->code_n);
    span_json(o, "ErrorMessage", &e->message, &e->message_n);
    entry_finish(e);
}

int kinesis_entry_fast(const char *body, size_t len, struct kinesis_entry *e)
{
    struct jflat_member m[ENTRY_MEMBERS];
    int cnt = jflat_scan(body, len, m, ENTRY_MEMBERS);

    if (cnt < 0) {
        return -1;
    }
    entry_from_members(m, cnt, e);
    return 0;
}

int kinesis_entries_json(const json_t *root, struct kinesis_entry *e, size_t n,
                         struct kinesis_answer *a)
{
    const json_t *records = json_object_get(root, "Records");
    const json_t *enc = json_object_get(root, "EncryptionType");
    const json_t *failed = json_object_get(root, "FailedRecordCount");
    size_t i;

    a->encryption = json_is_string(enc) ? json_string_value(enc) : NULL;
    a->encryption_n = json_is_string(enc) ? json_string_length(enc) : 0;
    if (a->encryption && !a->encryption_n) {
        a->encryption = NULL;
    }
    a->failed_count = json_is_integer(failed) ? (long long)json_integer_value(failed) : -1;
    if (!json_is_array(records) || json_array_size(records) != n) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        kinesis_entry_from_json(json_array_get(records, i), &e[i]);
    }
    return 0;
}

/* A JSON integer as jansson reads one: -?(0|[1-9][0-9]*), at most 18
 * digits; p is past it. -1 when it is something else (a fraction, an
 * exponent: jansson decides). */
static int scan_int(const char **pp, const char *end, long long *out)
{
    const char *p = *pp, *d;
    long long v = 0;
    int neg = 0;

    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    for (d = p; p < end && *p >= '0' && *p <= '9'; p++) {
        if (p - d < 18) {
            v = v * 10 + (*p - '0');
        }
    }
    if (p == d || p - d > 18 || (*d == '0' && p - d > 1) ||
        (p < end && (*p == '.' || *p == 'e' || *p == 'E'))) {
        return -1;
    }
    *out = neg ? -v : v;
    *pp = p;
    return 0;
}

int kinesis_entries_fast(const char *body, size_t len, struct kinesis_entry *e, size_t n,
                         struct kinesis_answer *a)
{
    const char *p = body, *end = body + len, *k, *after;
    struct jflat_member m[ENTRY_MEMBERS];
    size_t kn, got = 0;
    int cnt, more, records = 0;

    a->encryption = NULL;
    a->encryption_n = 0;
    a->failed_count = -1;
    if (!body) {
        return -1;
    }
    p = jflat_skip_ws(p, end);
    if (p == end || *p != '{') {
        return -1;
    }
    p = jflat_skip_ws(p + 1, end);
    if (p < end && *p == '}') {
        return -1; /* no Records */
    }
    for (;;) {
        if (!(p = jflat_string_at(p, end, &k, &kn)) || (p = jflat_skip_ws(p, end)) == end ||
            *p != ':') {
            return -1;
        }
        p = jflat_skip_ws(p + 1, end);
        if (p == end) {
            return -1;
        }
        if (kn == 7 && memcmp(k, "Records", 7) == 0) {
            if (*p != '[' || records) {
                return -1;
            }
            records = 1;
            p = jflat_skip_ws(p + 1, end);
            if (p < end && *p == ']') {
                p++;
            } else {
                do {
                    if (got == n || (cnt = jflat_scan_at(p, end, m, ENTRY_MEMBERS, &after)) < 0) {
                        return -1;
                    }
                    entry_from_members(m, cnt, &e[got++]);
                    p = after;
                } while ((more = jflat_array_next(&p, end)) == 1);
                if (more < 0) {
                    return -1;
                }
            }
        } else if (*p == '"') {
            const char *v;
            size_t vn;

            if (!(p = jflat_string_at(p, end, &v, &vn))) {
                return -1;
            }
            if (kn == 14 && memcmp(k, "EncryptionType", 14) == 0) {
                a->encryption = vn ? v : NULL;
                a->encryption_n = vn;
            }
        } else if (end - p >= 4 && memcmp(p, "null", 4) == 0) {
            p += 4;
            if (kn == 14 && memcmp(k, "EncryptionType", 14) == 0) {
                a->encryption = NULL;
                a->encryption_n = 0;
            } else if (kn == 17 && memcmp(k, "FailedRecordCount", 17) == 0) {
                a->failed_count = -1;
            }
        } else {
            long long v;

            if (scan_int(&p, end, &v) < 0) {
                return -1;
            }
            if (kn == 17 && memcmp(k, "FailedRecordCount", 17) == 0) {
                a->failed_count = v;
            }
        }
        p = jflat_skip_ws(p, end);
        if (p < end && *p == ',') {
            p = jflat_skip_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}') {
            break;
        }
        return -1;
    }
    return records && got == n && jflat_skip_ws(p + 1, end) == end ? 0 : -1;
}

/* ---------------------------------------------------------- timestamps */

/* A JSON number of seconds as milliseconds, rounded half away from zero
 * (only the first digit past the millisecond decides, so 40 significant
 * digits are plenty); -1 when it is not a number or too large for any
 * year we write. */
static int number_ms(const char *p, size_t n, long long *out)
{
    const char *end = p + n, *digits, *f;
    char d[40];
    size_t nd = 0, i;
    long long exp = 0, ms = 0, scale, nfrac = 0, dropped_int = 0, keep;
    int neg = 0, eneg = 0, nonzero = 0;

    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    for (digits = p; p < end && *p >= '0' && *p <= '9'; p++) {
        if (*p != '0' || nonzero) {
            nonzero = 1;
            if (nd < sizeof(d)) {
                d[nd++] = *p;
            } else {
                dropped_int++;
            }
        }
    }
    if (p == digits || (*digits == '0' && p - digits > 1)) {
        return -1;
    }
    if (p < end && *p == '.') {
        for (f = ++p; p < end && *p >= '0' && *p <= '9'; p++) {
            if (*p != '0' || nonzero) {
                nonzero = 1;
                if (nd < sizeof(d)) {
                    d[nd++] = *p;
                    nfrac = p - f + 1;
                }
            } else {
                nfrac = p - f + 1; /* a leading zero of the fraction */
            }
        }
        if (p == f) {
            return -1;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        const char *x;

        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            eneg = *p == '-';
            p++;
        }
        for (x = p; p < end && *p >= '0' && *p <= '9'; p++) {
            if (exp < 100000) {
                exp = exp * 10 + (*p - '0');
            }
        }
        if (p == x) {
            return -1;
        }
    }
    if (p != end) {
        return -1;
    }
    if (!nd) {
        *out = 0;
        return 0;
    }
    /* value = d[0..nd) x 10^(exp + dropped_int - nfrac) seconds */
    scale = (eneg ? -exp : exp) + dropped_int - nfrac + 3;
    keep = (long long)nd + scale; /* digits of d left of the millisecond point */
    if (keep > 15) {
        return -1;
    }
    for (i = 0; (long long)i < keep; i++) {
        ms = ms * 10 + (i < nd ? d[i] - '0' : 0);
    }
    if (keep >= 0 && keep < (long long)nd && d[keep] >= '5') {
        ms++;
    }
    *out = neg ? -ms : ms;
    return 0;
}

int kinesis_time_go(const char *num, size_t n, char *out, size_t outlen)
{
    long long ms, secs, frac;
    time_t t;
    struct tm tm;
    int len;

    if (number_ms(num, n, &ms) < 0) {
        return -1;
    }
    secs = ms / 1000;
    frac = ms % 1000;
    if (frac < 0) {
        frac += 1000;
        secs--;
    }
    t = (time_t)secs;
    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) {
        return -1;
    }
    len = snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                   tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (frac) {
        char f[5];
        int fl = 3;

        snprintf(f, sizeof(f), ".%03lld", frac);
        while (f[fl] == '0') {
            fl--;
        }
        len +=
            snprintf(out + len, outlen > (size_t)len ? outlen - (size_t)len : 0, "%.*s", fl + 1, f);
    }
    len += snprintf(out + len, outlen > (size_t)len ? outlen - (size_t)len : 0, "Z");
    return len < (int)outlen ? len : -1;
}

/* p at an opening quote: the closing quote, or NULL. */
static const char *string_end(const char *p, const char *end)
{
    const char *q = p + 1, *b;

    while ((q = memchr(q, '"', (size_t)(end - q))) != NULL) {
        for (b = q; b > p + 1 && b[-1] == '\\'; b--) {
        }
        if ((q - b) % 2 == 0) {
            return q;
        }
        q++;
    }
    return NULL;
}

/* Does the key k[0..n) (JSON string content) decode to "...Timestamp"? */
static int key_is_timestamp(const char *k, size_t n)
{
    static const char want[] = "Timestamp";
    char tail[9];
    size_t i, got = 0;

    if (!memchr(k, '\\', n)) {
        return n >= 9 && memcmp(k + n - 9, want, 9) == 0;
    }
    /* Escaped: decode, keeping the last nine bytes (anything not ASCII
     * stands as 0x80, which matches nothing). */
    for (i = 0; i < n; i++) {
        char c = k[i];

        if (c == '\\') {
            if (++i == n) {
                return 0;
            }
            switch (k[i]) {
            case '"':
            case '\\':
            case '/':
                c = k[i];
                break;
            case 'b':
                c = '\b';
                break;
            case 'f':
                c = '\f';
                break;
            case 'n':
                c = '\n';
                break;
            case 'r':
                c = '\r';
                break;
            case 't':
                c = '\t';
                break;
            case 'u': {
                int v = 0, j;

                if (n - i < 5) {
                    return 0;
                }
                for (j = 1; j <= 4; j++) {
                    int h = hex_value((unsigned char)k[i + (size_t)j]);
                    if (h < 0) {
                        return 0;
                    }
                    v = v * 16 + h;
                }
                i += 4;
                c = v < 0x80 ? (char)v : (char)0x80;
                break;
            }
            default:
                return 0;
            }
        }
        if (got == sizeof(tail)) {
            memmove(tail, tail + 1, sizeof(tail) - 1);
            got--;
        }
        tail[got++] = c;
    }
    return got == 9 && memcmp(tail, want, 9) == 0;
}

static int is_number_char(char c)
{
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

int kinesis_times_maybe(const char *p, size_t n)
{
    return p && (memmem(p, n, "Timestamp", 9) || memchr(p, '\\', n));
}

int kinesis_times_rewrite(const char *p, size_t n, struct buf *out)
{
    const char *end = p + n, *q = p, *copied = p, *s, *close, *v, *ve;
    char t[40];
    int count = 0, tl;

    if (!p) {
        return 0;
    }
    while ((s = memchr(q, '"', (size_t)(end - q))) != NULL) {
        if (!(close = string_end(s, end))) {
            return -1;
        }
        q = close + 1;
        v = jflat_skip_ws(q, end);
        if (v == end || *v != ':' || !key_is_timestamp(s + 1, (size_t)(close - s - 1))) {
            continue;
        }
        v = jflat_skip_ws(v + 1, end);
        for (ve = v; ve < end && is_number_char(*ve); ve++) {
        }
        q = v;
        if (ve == v || !((*v >= '0' && *v <= '9') || *v == '-') ||
            (tl = kinesis_time_go(v, (size_t)(ve - v), t, sizeof(t))) < 0) {
            continue;
        }
        if (buf_append(out, copied, (size_t)(v - copied)) < 0 || buf_append_char(out, '"') < 0 ||
            buf_append(out, t, (size_t)tl) < 0 || buf_append_char(out, '"') < 0) {
            return -1;
        }
        copied = q = ve;
        count++;
    }
    if (buf_append(out, copied, (size_t)(end - copied)) < 0) {
        return -1;
    }
    return count;
}
