/* jflat.c - a flat JSON object of plain strings, scanned without allocating. */
#include "base/jflat.h"

#include <string.h>

int jflat_is_plain(const char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
            return 0;
        }
    }
    return 1;
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
    }
    return p;
}

/* p at an opening quote: the plain string's content into s and sn, and the
 * position after the closing quote, or NULL. */
static const char *plain_string(const char *p, const char *end, const char **s, size_t *sn)
{
    const char *q;

    if (p == end || *p != '"' || !(q = memchr(p + 1, '"', (size_t)(end - p - 1)))) {
        return NULL;
    }
    *s = p + 1;
    *sn = (size_t)(q - p - 1);
    return jflat_is_plain(*s, *sn) ? q + 1 : NULL;
}

const char *jflat_string_at(const char *p, const char *end, const char **s, size_t *sn)
{
    return plain_string(skip_ws(p, end), end, s, sn);
}

const char *jflat_skip_ws(const char *p, const char *end)
{
    return skip_ws(p, end);
}

int jflat_array_next(const char **p, const char *end)
{
    const char *q = skip_ws(*p, end);

    if (q < end && (*q == ',' || *q == ']')) {
        *p = *q == ',' ? skip_ws(q + 1, end) : q + 1;
        return *q == ',';
    }
    return -1;
}

int jflat_scan_at(const char *p, const char *end, struct jflat_member *m, size_t max,
                  const char **after)
{
    size_t cnt = 0;

    if (!p) {
        return -1;
    }
    p = skip_ws(p, end);
    if (p == end || *p != '{') {
        return -1;
    }
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') {
        *after = p + 1;
        return 0;
    }
    for (;;) {
        if (cnt == max || !(p = plain_string(p, end, &m[cnt].k, &m[cnt].kn))) {
            return -1;
        }
        p = skip_ws(p, end);
        if (p == end || *p != ':') {
            return -1;
        }
        p = skip_ws(p + 1, end);
        m[cnt].null = 0;
        if (end - p >= 4 && memcmp(p, "null", 4) == 0) {
            m[cnt].v = "";
            m[cnt].vn = 0;
            m[cnt].null = 1;
            p += 4;
        } else if (!(p = plain_string(p, end, &m[cnt].v, &m[cnt].vn))) {
            return -1;
        }
        cnt++;
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}') {
            *after = p + 1;
            return (int)cnt;
        }
        return -1;
    }
}

int jflat_scan(const char *p, size_t n, struct jflat_member *m, size_t max)
{
    const char *end = p + n, *after;
    int cnt;

    if (!p) {
        return -1;
    }
    cnt = jflat_scan_at(p, end, m, max, &after);
    return cnt >= 0 && skip_ws(after, end) == end ? cnt : -1;
}

const struct jflat_member *jflat_get(const struct jflat_member *m, int count, const char *key)
{
    size_t kn = strlen(key);
    int i;

    for (i = count - 1; i >= 0; i--) {
        if (m[i].kn == kn && memcmp(m[i].k, key, kn) == 0) {
            return &m[i];
        }
    }
    return NULL;
}
