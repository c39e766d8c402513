/* hex.h - hexadecimal digits, both ways, and percent escapes. */
#ifndef KK_BASE_HEX_H
#define KK_BASE_HEX_H

#include <stddef.h>

/* The value of one hex digit (either case), or -1. */
int hex_value(int c);
/* n bytes as 2n lower-case digits and a NUL: out holds 2n + 1. */
void hex_encode(const void *in, size_t n, char *out);
/* The byte a percent escape "%XY" at s[i] stands for, or -1 when s[i]
 * does not start one (not '%', or fewer than two hex digits before len). */
int hex_percent_byte(const char *s, size_t len, size_t i);

#endif
