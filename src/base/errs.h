/* errs.h - a list of problems, one line each.
 *
 * Validation does not stop at the first problem: config loading collects
 * every line ("binding X: key: rule") so the operator fixes them all in
 * one go. */
#ifndef KK_BASE_ERRS_H
#define KK_BASE_ERRS_H

#include "base/buf.h"

struct errs {
    struct buf text; /* lines, each ending in '\n' */
    int count;
};

void errs_init(struct errs *e);
void errs_free(struct errs *e);
void errs_add(struct errs *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The first line without its newline, into dst (for single-error callers). */
void errs_first(const struct errs *e, char *dst, size_t dstlen);

#endif
