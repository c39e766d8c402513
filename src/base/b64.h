/* b64.h - standard base64 (RFC 4648, padded), strict decoding. */
#ifndef KK_BASE_B64_H
#define KK_BASE_B64_H

#include "base/buf.h"

#include <stddef.h>

size_t b64_encoded_len(size_t n);
/* Append the encoding of src[0..n) to out. */
int b64_encode(const void *src, size_t n, struct buf *out);
/* Append the decoded bytes to out. -1 (out unchanged) unless src is valid
 * padded standard base64 (length a multiple of 4, no whitespace). */
int b64_decode(const char *src, size_t n, struct buf *out);
int b64_is_valid(const char *src, size_t n);
/* For valid src: 1 when it is what b64_encode writes for its bytes (the
 * unused bits of the last quantum are zero: "QQ==", not "QR=="). */
int b64_is_canonical(const char *src, size_t n);

#endif
