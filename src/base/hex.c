/* hex.c - hexadecimal digits and percent escapes. */
#include "base/hex.h"

int hex_value(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

void hex_encode(const void *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = in;
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

int hex_percent_byte(const char *s, size_t len, size_t i)
{
    int hi, lo;

    if (s[i] != '%' || i + 2 >= len || (hi = hex_value((unsigned char)s[i + 1])) < 0 ||
        (lo = hex_value((unsigned char)s[i + 2])) < 0) {
        return -1;
    }
    return hi << 4 | lo;
}
