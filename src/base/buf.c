/* buf.c - length-carrying byte buffer with a hard size cap. */
#include "base/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void buf_init(struct buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : BUF_DEFAULT_MAX;
}

void buf_free(struct buf *b)
{
    if (!b) {
        return;
    }
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data) {
        b->data[0] = '\0';
    }
}

int buf_reserve(struct buf *b, size_t extra)
{
    size_t need, ncap;
    char *p;

    if (b->max == 0) {
        b->max = BUF_DEFAULT_MAX;
    }
    /* The last test keeps len + extra + 1 (the NUL) and the doubling from
     * wrapping even when the owner chose max = SIZE_MAX. */
    if (extra > b->max || b->len > b->max - extra || b->len + extra >= SIZE_MAX / 2) {
        return -1;
    }
    need = b->len + extra + 1;
    if (need <= b->cap) {
        return 0;
    }
    ncap = b->cap ? b->cap : 64;
    while (ncap < need) {
        ncap *= 2; /* need < SIZE_MAX / 2: cannot wrap */
    }
    if (ncap - 1 > b->max) { /* not ncap > max + 1: max may be SIZE_MAX */
        ncap = b->max + 1;
    }
    p = realloc(b->data, ncap);
    if (!p) {
        return -1;
    }
    b->data = p;
    b->cap = ncap;
    return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    if (buf_reserve(b, n) < 0) {
        return -1;
    }
    if (n) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int buf_append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_append_char(struct buf *b, char c)
{
    return buf_append(b, &c, 1);
}

int buf_vappendf(struct buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0 || buf_reserve(b, (size_t)n) < 0) {
        return -1;
    }
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int buf_appendf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = buf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}

int buf_append_json_str(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, run = 0;

    if (buf_reserve(b, n + 2) < 0 || buf_append_char(b, '"') < 0) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t elen = 0;

        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            elen = 2;
        } else if (c == '\n') {
            memcpy(esc, "\\n", 2);
            elen = 2;
        } else if (c == '\r') {
            memcpy(esc, "\\r", 2);
            elen = 2;
        } else if (c == '\t') {
            memcpy(esc, "\\t", 2);
            elen = 2;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        if (elen) {
            if (buf_append(b, s + i - run, run) < 0 || buf_append(b, esc, elen) < 0) {
                return -1;
            }
            run = 0;
        } else {
            run++;
        }
    }
    if (buf_append(b, s + n - run, run) < 0) {
        return -1;
    }
    return buf_append_char(b, '"');
}

int buf_set(struct buf *b, const void *p, size_t n)
{
    buf_reset(b);
    return buf_append(b, p, n);
}

const char *buf_str(const struct buf *b)
{
    return b->data ? b->data : "";
}

char *buf_detach(struct buf *b, size_t *len)
{
    char *p = b->data;

    if (!p) {
        p = calloc(1, 1);
    }
    if (len) {
        *len = b->len;
    }
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

int buf_append_file(struct buf *b, const char *path, char *err, size_t errlen)
{
    struct stat st;
    char chunk[4096];
    size_t start = b->len;
    ssize_t n;
    int fd, e = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        e = errno;
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        snprintf(err, errlen, "%s is a directory", path);
        errno = EISDIR;
        return -1;
    }
    /* One allocation for a regular file: no moved copies of a secret left
     * behind in freed memory (a size over the cap fails below anyway). */
    if (S_ISREG(st.st_mode) && st.st_size > 0) {
        (void)buf_reserve(b, (size_t)st.st_size);
    }
    for (;;) {
        n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            e = errno;
            snprintf(err, errlen, "cannot read %s: %s", path, strerror(e));
            break;
        }
        if (n == 0) {
            break;
        }
        if (buf_append(b, chunk, (size_t)n) < 0) {
            e = b->len + (size_t)n > b->max ? EFBIG : ENOMEM;
            if (e == EFBIG) {
                snprintf(err, errlen, "%s is larger than %zu bytes", path, b->max);
            } else {
                snprintf(err, errlen, "cannot read %s: out of memory", path);
            }
            break;
        }
    }
    explicit_bzero(chunk, sizeof(chunk));
    close(fd);
    if (e) {
        if (b->data) {
            explicit_bzero(b->data + start, b->len - start);
        }
        b->len = start;
        if (b->data) {
            b->data[start] = '\0';
        }
        errno = e;
        return -1;
    }
    return 0;
}
