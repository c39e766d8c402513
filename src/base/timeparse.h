/* timeparse.h - RFC 3339 timestamps, as AWS writes them. */
#ifndef KK_BASE_TIMEPARSE_H
#define KK_BASE_TIMEPARSE_H

/* "2024-05-01T12:00:00Z", with optional fraction (".5") and zone
 * ("+02:00" instead of "Z"; 't' or ' ' for 'T'). *out: Unix seconds.
 * 0, or -1 when the text is not such a time or falls outside the years
 * 1678 to 2261 (the reach of 64-bit nanoseconds). */
int timeparse_rfc3339(const char *v, double *out);

/* The same, *out in Unix nanoseconds (digits past nanoseconds dropped). */
int timeparse_rfc3339_ns(const char *v, long long *out);

#endif
