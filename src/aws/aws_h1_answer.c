/* aws_h1_answer.c - reading an HTTP/1.1 answer in place (aws_h1_answer.h). */
#include "aws/aws_h1_answer.h"

#include "aws/aws_http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

enum chunk_state { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER, CH_DONE };

/* Longest chunk-size or trailer line we wait for. */
#define CHUNK_LINE_MAX 4096

void aws_h1_answer_init(struct aws_h1_answer *a, size_t max_body)
{
    memset(a, 0, sizeof(*a));
    a->max_body = max_body;
    /* head + body + room for one more read past the end */
    buf_init(&a->in, max_body + AWS_H1_HEAD_MAX + ((size_t)16 << 10));
    a->keep_alive = 1;
}

void aws_h1_answer_reset(struct aws_h1_answer *a, char *etype, size_t etype_len, size_t keep)
{
    struct buf in = a->in;
    size_t max_body = a->max_body;

    if (in.cap > keep) {
        buf_free(&in);
    }
    buf_reset(&in);
    memset(a, 0, sizeof(*a));
    a->in = in;
    a->max_body = max_body;
    a->etype = etype;
    a->etype_len = etype_len;
    a->keep_alive = 1;
    if (etype && etype_len) {
        etype[0] = '\0';
    }
}

void aws_h1_answer_free(struct aws_h1_answer *a)
{
    buf_free(&a->in);
}

/* The status line and headers. 0: more bytes needed, or the head is done
 * (head_done); 1: an interim (1xx) answer was dropped, parse again; -1
 * malformed; -2 the announced body is over the cap. */
static int parse_head(struct aws_h1_answer *a, char *err, size_t errlen)
{
    char *p = a->in.data, *end, *line, *eol;
    size_t from = a->scanned > 3 ? a->scanned - 3 : 0;
    char *hit = NULL;

    for (line = p + from; line + 3 < p + a->in.len; line++) {
        if (line[0] == '\r' && line[1] == '\n' && line[2] == '\r' && line[3] == '\n') {
            hit = line;
            break;
        }
    }
    a->scanned = a->in.len;
    if (!hit) {
        if (a->in.len > AWS_H1_HEAD_MAX) {
            snprintf(err, errlen, "answer head larger than %zu bytes", AWS_H1_HEAD_MAX);
            return -1;
        }
        return 0;
    }
    end = hit + 2; /* the head's last line break */
    if (strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ' || p[9] < '1' || p[9] > '5' || p[10] < '0' ||
        p[10] > '9' || p[11] < '0' || p[11] > '9' || (p[12] != ' ' && p[12] != '\r')) {
        snprintf(err, errlen, "not an HTTP/1.x status line");
        return -1;
    }
    a->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    a->keep_alive = p[7] == '1';
    a->kind = AWS_H1_BODY_TO_CLOSE;
    line = (char *)memchr(p, '\n', (size_t)(end - p)) + 1;
    for (; line < end; line = eol + 1) {
        char *colon, *v, *ve;
        size_t nl;

        eol = memchr(line, '\n', (size_t)(end - line));
        ve = eol > line && eol[-1] == '\r' ? eol - 1 : eol;
        colon = memchr(line, ':', (size_t)(ve - line));
        if (!colon) {
            continue;
        }
        nl = (size_t)(colon - line);
        for (v = colon + 1; v < ve && (*v == ' ' || *v == '\t'); v++) {
        }
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) {
            ve--;
        }
        if (nl == 14 && !strncasecmp(line, "Content-Length", 14)) {
            unsigned long long n = 0;
            char *q;

            if (v == ve) {
                snprintf(err, errlen, "empty Content-Length");
                return -1;
            }
            for (q = v; q < ve; q++) {
                if (*q < '0' || *q > '9' || n > (1ull << 40)) {
                    snprintf(err, errlen, "bad Content-Length");
                    return -1;
                }
                n = n * 10 + (unsigned)(*q - '0');
            }
            if (a->kind != AWS_H1_BODY_CHUNKED) {
                a->kind = AWS_H1_BODY_LENGTH;
                a->clen = n;
            }
        } else if (nl == 17 && !strncasecmp(line, "Transfer-Encoding", 17)) {
            if ((size_t)(ve - v) >= 7 && !strncasecmp(ve - 7, "chunked", 7)) {
                a->kind = AWS_H1_BODY_CHUNKED; /* wins over a Content-Length */
            }
        } else if (nl == 10 && !strncasecmp(line, "Connection", 10)) {
            if ((size_t)(ve - v) == 5 && !strncasecmp(v, "close", 5)) {
                a->keep_alive = 0;
            } else if ((size_t)(ve - v) == 10 && !strncasecmp(v, "keep-alive", 10)) {
                a->keep_alive = 1;
            }
        } else if (nl == 16 && !strncasecmp(line, "x-amzn-ErrorType", 16)) {
            if (a->etype && a->etype_len) {
                snprintf(a->etype, a->etype_len, "%.*s", (int)(ve - v), v);
            }
        }
    }
    a->head_len = (size_t)(end + 2 - p);
    if (a->status < 200) {
        /* 100 Continue and friends: the real answer follows. */
        memmove(p, p + a->head_len, a->in.len - a->head_len);
        a->in.len -= a->head_len;
        a->in.data[a->in.len] = '\0';
        a->scanned = 0;
        a->head_len = 0;
        return 1;
    }
    if (a->status == 204 || a->status == 304) {
        a->kind = AWS_H1_BODY_NONE;
    }
    if (a->kind == AWS_H1_BODY_LENGTH && a->clen > a->max_body) {
        snprintf(err, errlen, AWS_HTTP_TOO_LARGE " %zu bytes", a->max_body);
        return -2;
    }
    if (a->kind == AWS_H1_BODY_TO_CLOSE) {
        a->keep_alive = 0;
    }
    a->head_done = 1;
    a->raw_pos = a->dec_pos = a->head_len;
    return 0;
}

static int hexval(char c)
{
    return (c >= '0' && c <= '9')   ? c - '0'
           : (c >= 'a' && c <= 'f') ? c - 'a' + 10
           : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                    : -1;
}

/* One chunk-size, data-end or trailer line (without its line break). */
static int chunk_line(struct aws_h1_answer *a, const char *line, size_t ll, char *err,
                      size_t errlen)
{
    unsigned long long n = 0;
    size_t i;

    if (a->chunk_state == CH_DATA_END) {
        if (ll != 0) {
            snprintf(err, errlen, "chunk not followed by a line break");
            return -1;
        }
        a->chunk_state = CH_SIZE;
        return 0;
    }
    if (a->chunk_state == CH_TRAILER) {
        if (ll == 0) {
            a->chunk_state = CH_DONE;
        }
        return 0;
    }
    for (i = 0; i < ll && line[i] != ';' && line[i] != ' ' && line[i] != '\t'; i++) {
        int d = hexval(line[i]);

        if (d < 0 || n > (1ull << 40)) {
            snprintf(err, errlen, "bad chunk size");
            return -1;
        }
        n = n * 16 + (unsigned)d;
    }
    if (i == 0) {
        snprintf(err, errlen, "bad chunk size");
        return -1;
    }
    a->chunk_left = n;
    a->chunk_state = n ? CH_DATA : CH_TRAILER;
    return 0;
}

/* Decode chunks in place. 1 complete, 0 more needed, -1 malformed. */
static int parse_chunks(struct aws_h1_answer *a, char *err, size_t errlen)
{
    char *p = a->in.data;
    size_t end = a->in.len;

    while (a->raw_pos < end && a->chunk_state != CH_DONE) {
        if (a->chunk_state == CH_DATA) {
            size_t n = end - a->raw_pos;

            if (n > a->chunk_left) {
                n = (size_t)a->chunk_left;
            }
            if (a->dec_pos != a->raw_pos) {
                memmove(p + a->dec_pos, p + a->raw_pos, n);
            }
            a->dec_pos += n;
            a->raw_pos += n;
            a->chunk_left -= n;
            if (a->chunk_left == 0) {
                a->chunk_state = CH_DATA_END;
            }
        } else {
            char *line = p + a->raw_pos;
            char *nl = memchr(line, '\n', end - a->raw_pos);
            size_t ll;

            if (!nl) {
                if (end - a->raw_pos > CHUNK_LINE_MAX) {
                    snprintf(err, errlen, "chunk line too long");
                    return -1;
                }
                break;
            }
            ll = (size_t)(nl - line);
            if (ll && line[ll - 1] == '\r') {
                ll--;
            }
            a->raw_pos = (size_t)(nl - p) + 1;
            if (chunk_line(a, line, ll, err, errlen) < 0) {
                return -1;
            }
        }
    }
    /* What is left undecoded (a partial line, or bytes past the end)
     * moves down too, so the buffer holds only the body and a tail. */
    if (a->raw_pos > a->dec_pos) {
        memmove(p + a->dec_pos, p + a->raw_pos, end - a->raw_pos);
        a->in.len = a->dec_pos + (end - a->raw_pos);
        a->raw_pos = a->dec_pos;
        a->in.data[a->in.len] = '\0';
    }
    if (a->chunk_state != CH_DONE) {
        return 0;
    }
    if (a->raw_pos != a->in.len) {
        a->keep_alive = 0; /* bytes after the answer: do not trust the connection */
    }
    return 1;
}

int aws_h1_answer_parse(struct aws_h1_answer *a, char *err, size_t errlen)
{
    int rc;

    while (!a->head_done) {
        rc = parse_head(a, err, errlen);
        if (rc < 0) {
            return rc;
        }
        if (rc == 0 && !a->head_done) {
            return 0;
        }
    }
    switch (a->kind) {
    case AWS_H1_BODY_NONE:
        if (a->in.len > a->head_len) {
            a->keep_alive = 0;
        }
        a->body_len = 0;
        return 1;
    case AWS_H1_BODY_LENGTH:
        if (a->in.len - a->head_len < a->clen) {
            return 0;
        }
        if (a->in.len - a->head_len > a->clen) {
            a->keep_alive = 0;
        }
        a->body_len = (size_t)a->clen;
        return 1;
    case AWS_H1_BODY_CHUNKED:
        rc = parse_chunks(a, err, errlen);
        if (rc < 0) {
            return -1;
        }
        if (a->dec_pos - a->head_len > a->max_body) {
            snprintf(err, errlen, AWS_HTTP_TOO_LARGE " %zu bytes", a->max_body);
            return -2;
        }
        if (rc == 1) {
            a->body_len = a->dec_pos - a->head_len;
        }
        return rc;
    case AWS_H1_BODY_TO_CLOSE:
        if (a->in.len - a->head_len > a->max_body) {
            snprintf(err, errlen, AWS_HTTP_TOO_LARGE " %zu bytes", a->max_body);
            return -2;
        }
        return 0;
    }
    return -1;
}

int aws_h1_answer_at_close(struct aws_h1_answer *a)
{
    if (!a->head_done || a->kind != AWS_H1_BODY_TO_CLOSE) {
        return 0;
    }
    a->body_len = a->in.len - a->head_len;
    return 1;
}
