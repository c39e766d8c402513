/* b64.c - standard base64 (RFC 4648, padded), strict decoding.
 *
 * Strict means: length a multiple of 4, only the standard alphabet, '='
 * only as one or two trailing pad characters, no whitespace. Go's
 * StdEncoding (which kubemq-targets decodes with) also skips '\r' and
 * '\n'; we do not, so a
 * wrapped base64 string in an envelope stays raw text. Like Go's
 * non-strict StdEncoding we ignore the unused low bits of the last
 * quantum ("QR==" decodes to "A"), so the two agree on which envelope
 * strings count as base64. */
#include "base/b64.h"

#include <stdint.h>
#include <string.h>

static const char b64_alphabet[65] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63 for alphabet characters, 0x80 for everything else (incl. '='). */
#define X 0x80
static const uint8_t b64_value[256] = {
    /* clang-format off */
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, 62, X, X, X, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, X, X, X, X, X, X,
    X, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, X, X, X, X, X,
    X, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    /* clang-format on */
};
#undef X

size_t b64_encoded_len(size_t n)
{
    if (n > (SIZE_MAX / 4) * 3 - 2) {
        return SIZE_MAX;
    }
    return (n + 2) / 3 * 4;
}

int b64_encode(const void *src, size_t n, struct buf *out)
{
    const unsigned char *s = src;
    size_t olen = b64_encoded_len(n), i = 0;
    char *o;

    if (olen == SIZE_MAX || buf_reserve(out, olen) < 0) {
        return -1;
    }
    o = out->data + out->len;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];

        o[0] = b64_alphabet[v >> 18];
        o[1] = b64_alphabet[(v >> 12) & 63];
        o[2] = b64_alphabet[(v >> 6) & 63];
        o[3] = b64_alphabet[v & 63];
        o += 4;
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;

        o[0] = b64_alphabet[v >> 18];
        o[1] = b64_alphabet[(v >> 12) & 63];
        o[2] = '=';
        o[3] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;

        o[0] = b64_alphabet[v >> 18];
        o[1] = b64_alphabet[(v >> 12) & 63];
        o[2] = b64_alphabet[(v >> 6) & 63];
        o[3] = '=';
    }
    out->len += olen;
    out->data[out->len] = '\0';
    return 0;
}

/* Number of pad characters (0..2) of a candidate, or -1 when the length
 * or the padding shape is wrong. Checks only the last quartet's tail. */
static int b64_padding(const unsigned char *s, size_t n)
{
    if (n % 4 != 0) {
        return -1;
    }
    if (n == 0) {
        return 0;
    }
    if (s[n - 1] != '=') {
        return 0;
    }
    if (s[n - 2] != '=') {
        return 1;
    }
    return 2;
}

int b64_is_valid(const char *src, size_t n)
{
    const unsigned char *s = (const unsigned char *)src;
    int pad = b64_padding(s, n);
    uint8_t bad = 0;
    size_t i, body;

    if (pad < 0) {
        return 0;
    }
    /* Two pads leave two data characters, one leaves three: "====" and
     * "x===" fail below because '=' is not in the value table. */
    body = n - (size_t)pad;
    for (i = 0; i < body; i++) {
        bad |= b64_value[s[i]];
    }
    return !(bad & 0x80);
}

int b64_is_canonical(const char *src, size_t n)
{
    const unsigned char *s = (const unsigned char *)src;
    int pad = b64_padding(s, n);

    if (pad < 0) {
        return 0;
    }
    if (pad == 2) {
        return (b64_value[s[n - 3]] & 0x0f) == 0;
    }
    if (pad == 1) {
        return (b64_value[s[n - 2]] & 0x03) == 0;
    }
    return 1;
}

int b64_decode(const char *src, size_t n, struct buf *out)
{
    const unsigned char *s = (const unsigned char *)src;
    int pad = b64_padding(s, n);
    size_t full, dlen, i;
    uint8_t bad = 0;
    unsigned char *o;

    if (pad < 0) {
        return -1;
    }
    if (n == 0) {
        return buf_reserve(out, 0);
    }
    dlen = n / 4 * 3 - (size_t)pad;
    if (buf_reserve(out, dlen) < 0) {
        return -1;
    }
    o = (unsigned char *)out->data + out->len;
    /* All quartets but the last have no padding. */
    full = n - 4;
    for (i = 0; i < full; i += 4) {
        uint8_t a = b64_value[s[i]], b = b64_value[s[i + 1]], c = b64_value[s[i + 2]],
                d = b64_value[s[i + 3]];
        uint32_t v;

        bad |= a | b | c | d;
        v = (uint32_t)(a & 63) << 18 | (uint32_t)(b & 63) << 12 | (uint32_t)(c & 63) << 6 |
            (uint32_t)(d & 63);
        o[0] = (unsigned char)(v >> 16);
        o[1] = (unsigned char)(v >> 8);
        o[2] = (unsigned char)v;
        o += 3;
    }
    {
        uint8_t a = b64_value[s[full]], b = b64_value[s[full + 1]];
        uint8_t c = pad < 2 ? b64_value[s[full + 2]] : 0;
        uint8_t d = pad < 1 ? b64_value[s[full + 3]] : 0;
        uint32_t v;

        bad |= a | b | c | d;
        v = (uint32_t)(a & 63) << 18 | (uint32_t)(b & 63) << 12 | (uint32_t)(c & 63) << 6 |
            (uint32_t)(d & 63);
        o[0] = (unsigned char)(v >> 16);
        if (pad < 2) {
            o[1] = (unsigned char)(v >> 8);
        }
        if (pad < 1) {
            o[2] = (unsigned char)v;
        }
    }
    if (bad & 0x80) {
        /* The writes went past len only: restore the terminator. */
        out->data[out->len] = '\0';
        return -1;
    }
    out->len += dlen;
    out->data[out->len] = '\0';
    return 0;
}
