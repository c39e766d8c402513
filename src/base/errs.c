/* errs.c - a list of problems, one line each. */
#include "base/errs.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ERRS_MAX_TEXT (256u << 10)

void errs_init(struct errs *e)
{
    buf_init(&e->text, ERRS_MAX_TEXT);
    e->count = 0;
}

void errs_free(struct errs *e)
{
    buf_free(&e->text);
    e->count = 0;
}

void errs_add(struct errs *e, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    /* Past the cap the line is dropped but still counted. */
    if (buf_vappendf(&e->text, fmt, ap) == 0) {
        buf_append_char(&e->text, '\n');
    }
    va_end(ap);
    e->count++;
}

void errs_first(const struct errs *e, char *dst, size_t dstlen)
{
    const char *s = buf_str(&e->text);
    size_t n = strcspn(s, "\n");

    if (dstlen == 0) {
        return;
    }
    if (n >= dstlen) {
        n = dstlen - 1;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}
