/* buf.h - length-carrying byte buffer with a hard size cap.
 *
 * The data is always NUL-terminated (one byte past len) so text can be
 * handed to C APIs, but it may hold any bytes. Appends that would pass
 * `max` fail with -1 and leave the buffer unchanged: a request can never
 * grow a buffer past the limit its owner chose. */
#ifndef KK_BASE_BUF_H
#define KK_BASE_BUF_H

#include <stdarg.h>
#include <stddef.h>

/* Default cap: a Kinesis PutRecords body (5 MiB of records) base64 grows
 * by 4/3 plus JSON framing; 16 MiB leaves room for all of it. */
#define BUF_DEFAULT_MAX ((size_t)16 << 20)

struct buf {
    char *data; /* NULL until the first append */
    size_t len;
    size_t cap;
    size_t max;
};

/* Kept on one line: clang-format would spread it over four. */
/* clang-format off */
#define BUF_INIT(maxbytes) {NULL, 0, 0, (maxbytes)}
/* clang-format on */

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
/* Forget the contents but keep the memory. */
void buf_reset(struct buf *b);
/* Make room for `extra` more bytes (plus the NUL). */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_str(struct buf *b, const char *s);
int buf_append_char(struct buf *b, char c);
int buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vappendf(struct buf *b, const char *fmt, va_list ap);
/* Append `s` as a JSON string literal, quotes included. */
int buf_append_json_str(struct buf *b, const char *s, size_t n);
/* Replace the contents with a copy of p[0..n). */
int buf_set(struct buf *b, const void *p, size_t n);
/* Append the whole file at path. -1 with "cannot read PATH: reason",
 * "PATH is a directory" or "PATH is larger than N bytes" in err, errno
 * kept (ENOENT, EISDIR, EFBIG, ...) and the buffer as it was (what was
 * appended is wiped: files may hold secrets). */
int buf_append_file(struct buf *b, const char *path, char *err, size_t errlen);
/* Text view: never NULL, "" for an empty buffer. */
const char *buf_str(const struct buf *b);
/* Hand the memory to the caller (free() it); the buffer becomes empty. */
char *buf_detach(struct buf *b, size_t *len);

#endif
