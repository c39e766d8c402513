/* aws_error.h - AWS JSON-protocol error responses: type and message. */
#ifndef KK_AWS_ERROR_H
#define KK_AWS_ERROR_H

#include <stddef.h>

/* Error types of our own, next to AWS's. */
#define AWS_ERROR_TRANSPORT "TransportError"   /* no HTTP response */
#define AWS_ERROR_TOO_LARGE "ResponseTooLarge" /* over the response cap */
#define AWS_ERROR_SIGNING   "SigningError"     /* could not sign */

/* Type and message of a non-2xx response. Sources, in order: the
 * x-amzn-ErrorType header (header_type, may be NULL; "Name:uri" and
 * "prefix#Name" forms), the JSON body's "__type" ("prefix#Name" ->
 * "Name") and "message"/"Message". Without a type: "HTTP<status>" and a
 * short printable excerpt of the body. Never fails: both outputs are
 * always NUL-terminated (message may be ""). */
void aws_error_parse(long status, const char *body, size_t len, const char *header_type, char *type,
                     size_t typelen, char *msg, size_t msglen);

#endif
