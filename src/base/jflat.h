/* jflat.h - a flat JSON object of plain strings, scanned without allocating.
 *
 * The hot JSON of a request - envelope metadata, a PutRecord answer - is
 * almost always {"key":"value",...} with printable ASCII and no escapes.
 * Such text is read here in place; anything else (escapes, non-ASCII,
 * numbers, nesting) is left to a real parser, so the two never disagree. */
#ifndef KK_BASE_JFLAT_H
#define KK_BASE_JFLAT_H

#include <stddef.h>

struct jflat_member {
    const char *k, *v; /* point into the text; v is "" for null */
    size_t kn, vn;
    int null;
};

/* Printable ASCII without '"' or '\': JSON string content as it is. */
int jflat_is_plain(const char *p, size_t n);
/* The members of p[0..n) (whitespace allowed around tokens) into m, in
 * order, duplicates included. Returns their count, or -1 when the text is
 * not such an object or has more than max members. */
int jflat_scan(const char *p, size_t n, struct jflat_member *m, size_t max);
/* The same for an object starting at p (after optional whitespace) that
 * may be followed by more text: *after is set past its '}'. */
int jflat_scan_at(const char *p, const char *end, struct jflat_member *m, size_t max,
                  const char **after);
/* A plain string at p (after optional whitespace): its content into *s,
 * *sn; returns the position after the closing quote, or NULL. */
const char *jflat_string_at(const char *p, const char *end, const char **s, size_t *sn);
/* Past optional JSON whitespace. */
const char *jflat_skip_ws(const char *p, const char *end);
/* After an array element, at *p: past the ',' and the whitespace around
 * it (1: another element follows), or past the closing ']' (0); -1 when
 * neither comes next. */
int jflat_array_next(const char **p, const char *end);
/* The value of the last member named key, or NULL. */
const struct jflat_member *jflat_get(const struct jflat_member *m, int count, const char *key);

#endif
