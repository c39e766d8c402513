/* aws_error.c - AWS JSON-protocol error responses: type, message, retry. */
#include "aws/aws_error.h"

#include "aws/aws_client.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* Error bodies are small; a huge one is not worth parsing as JSON. */
#define AWS_ERROR_JSON_MAX ((size_t)1 << 20)
#define AWS_ERROR_EXCERPT  200

/* "aws.protocoltests#Name:http://internal..." -> "Name". The type comes
 * from the network and ends up in log lines and metric labels: bytes
 * outside printable ASCII become '_'. */
static void copy_type(char *dst, size_t cap, const char *s, size_t n)
{
    const char *hash, *colon;
    size_t k, i;

    while (n && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    colon = memchr(s, ':', n);
    if (colon) {
        n = (size_t)(colon - s);
    }
    while ((hash = memchr(s, '#', n))) {
        n -= (size_t)(hash + 1 - s);
        s = hash + 1;
    }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) {
        n--;
    }
    k = n < cap - 1 ? n : cap - 1;
    for (i = 0; i < k; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[i] = c > 0x20 && c < 0x7f ? (char)c : '_';
    }
    dst[k] = '\0';
}

/* Printable excerpt: control bytes become spaces, long bodies are cut. */
static void copy_excerpt(char *dst, size_t cap, const char *s, size_t n)
{
    size_t i, k = 0, lim = n < AWS_ERROR_EXCERPT ? n : AWS_ERROR_EXCERPT;

    for (i = 0; i < lim && k + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[k++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    while (k && dst[k - 1] == ' ') {
        k--;
    }
    dst[k] = '\0';
    if (n > lim && k + 4 < cap) {
        memcpy(dst + k, "...", 4);
    }
}

void aws_error_parse(long status, const char *body, size_t len, const char *header_type, char *type,
                     size_t typelen, char *msg, size_t msglen)
{
    json_t *root = NULL;

    type[0] = '\0';
    msg[0] = '\0';
    if (header_type && *header_type) {
        copy_type(type, typelen, header_type, strlen(header_type));
    }
    if (body && len && len <= AWS_ERROR_JSON_MAX) {
        root = json_loadb(body, len, 0, NULL);
    }
    if (json_is_object(root)) {
        json_t *t = json_object_get(root, "__type");
        json_t *m = json_object_get(root, "message");

        if (!json_is_string(m)) {
            m = json_object_get(root, "Message");
        }
        if (!type[0] && json_is_string(t)) {
            copy_type(type, typelen, json_string_value(t), json_string_length(t));
        }
        if (json_is_string(m)) {
            snprintf(msg, msglen, "%s", json_string_value(m));
        }
    }
    json_decref(root);
    if (!type[0]) {
        snprintf(type, typelen, "HTTP%ld", status);
        if (!msg[0]) {
            if (body && len) {
                copy_excerpt(msg, msglen, body, len);
            } else {
                snprintf(msg, msglen, "HTTP status %ld with an empty body", status);
            }
        }
    }
}

int aws_error_is_retryable(long status, const char *error_type)
{
    static const char *const retryable[] = {
        "ProvisionedThroughputExceededException",
        "KMSThrottlingException",
        "LimitExceededException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "InternalFailure",
        "ServiceUnavailable",
        AWS_ERROR_TRANSPORT,
        NULL,
    };
    size_t i;

    if (status >= 500 || status == 429) {
        return 1;
    }
    if (!error_type) {
        return 0;
    }
    for (i = 0; retryable[i]; i++) {
        if (!strcmp(error_type, retryable[i])) {
            return 1;
        }
    }
    return 0;
}
