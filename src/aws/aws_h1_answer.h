/* aws_h1_answer.h - one HTTP/1.1 answer, read in place as it arrives.
 *
 * The connection appends what it reads to `in`; aws_h1_answer_parse says
 * when the answer is complete. The body ends up contiguous in `in` right
 * after the head: a Content-Length body as it came, a chunked one decoded
 * in place (the data moves down over the chunk lines), a body without
 * either up to the close. Interim answers (100 Continue) are dropped. No
 * copy is made and nothing is allocated but `in` itself. */
#ifndef KK_AWS_H1_ANSWER_H
#define KK_AWS_H1_ANSWER_H

#include "base/buf.h"

#include <stddef.h>

/* The status line and header lines of an answer, at most. */
#define AWS_H1_HEAD_MAX ((size_t)64 << 10)

enum aws_h1_body {
    AWS_H1_BODY_NONE,
    AWS_H1_BODY_LENGTH,
    AWS_H1_BODY_CHUNKED,
    AWS_H1_BODY_TO_CLOSE
};

struct aws_h1_answer {
    struct buf in; /* the bytes read so far (the caller appends) */
    size_t max_body;
    char *etype; /* where the x-amzn-ErrorType header goes; NULL: nowhere */
    size_t etype_len;
    /* known once head_done */
    int head_done;
    long status;
    size_t head_len; /* the body starts at in.data + head_len */
    enum aws_h1_body kind;
    unsigned long long clen;
    int keep_alive;  /* the connection may carry the next request */
    size_t body_len; /* once complete */
    /* the parse's own */
    size_t scanned;
    int chunk_state;
    unsigned long long chunk_left;
    size_t raw_pos, dec_pos;
};

/* An empty answer whose body may hold max_body bytes. */
void aws_h1_answer_init(struct aws_h1_answer *a, size_t max_body);
/* Ready for the next answer (etype: where its error type goes); keeps
 * the buffer unless it grew past keep bytes. */
void aws_h1_answer_reset(struct aws_h1_answer *a, char *etype, size_t etype_len, size_t keep);
void aws_h1_answer_free(struct aws_h1_answer *a);
/* After bytes were appended to in: 1 complete (body_len set), 0 more
 * needed, -1 malformed (err says how), -2 the body is over max_body (err
 * starts with AWS_HTTP_TOO_LARGE). */
int aws_h1_answer_parse(struct aws_h1_answer *a, char *err, size_t errlen);
/* The connection closed: 1 when that completes the answer (a body that
 * runs to the close; body_len set), else 0. */
int aws_h1_answer_at_close(struct aws_h1_answer *a);

#endif
