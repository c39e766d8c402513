/* kinesis_validate.c - client-side checks with the Kinesis limits. */
#include "kinesis/kinesis_validate.h"

#include "base/timeparse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const iterator_types[] = {
    "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", NULL,
};

size_t kinesis_utf8_chars(const char *s, size_t n)
{
    size_t i, count = 0;

    for (i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            count++;
        }
    }
    return count;
}

int kinesis_check_name(const char *key, const char *v, char *err, size_t errlen)
{
    size_t i, n = strlen(v);

    if (n < 1 || n > 128) {
        snprintf(err, errlen, "%s: must be 1 to 128 characters, got %zu", key, n);
        return -1;
    }
    for (i = 0; i < n; i++) {
        char ch = v[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-')) {
            snprintf(err, errlen,
                     "%s: may contain only letters, digits, '_', '.' and '-' "
                     "([a-zA-Z0-9_.-]{1,128}), got \"%s\"",
                     key, v);
            return -1;
        }
    }
    return 0;
}

int kinesis_check_partition_keyn(const char *key, const char *v, size_t n, char *err, size_t errlen)
{
    size_t chars = kinesis_utf8_chars(v, n);

    if (chars < 1 || chars > KINESIS_MAX_PARTITION_KEY) {
        snprintf(err, errlen, "%s: must be 1 to 256 characters, got %zu", key, chars);
        return -1;
    }
    return 0;
}

int kinesis_check_partition_key(const char *key, const char *v, char *err, size_t errlen)
{
    return kinesis_check_partition_keyn(key, v, strlen(v), err, errlen);
}

static int all_digits(const char *v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') {
            return 0;
        }
    }
    return n > 0;
}

int kinesis_check_hash_key(const char *key, const char *v, char *err, size_t errlen)
{
    static const char max[] = "340282366920938463463374607431768211455"; /* 2^128-1 */
    size_t n = strlen(v);

    if (!all_digits(v, n) || (n > 1 && v[0] == '0') || n > sizeof(max) - 1 ||
        (n == sizeof(max) - 1 && strcmp(v, max) > 0)) {
        snprintf(err, errlen,
                 "%s: must be a decimal integer from 0 to 2^128-1 "
                 "(340282366920938463463374607431768211455), got \"%.64s\"",
                 key, v);
        return -1;
    }
    return 0;
}

int kinesis_check_sequence_number(const char *key, const char *v, char *err, size_t errlen)
{
    size_t n = strlen(v);

    if (!all_digits(v, n) || (n > 1 && v[0] == '0') || n > 129) {
        snprintf(err, errlen,
                 "%s: must be a sequence number (digits, 0|[1-9][0-9]{0,128}), got \"%.64s\"", key,
                 v);
        return -1;
    }
    return 0;
}

int kinesis_check_iterator_type(const char *key, const char *v, char *err, size_t errlen)
{
    size_t i;

    for (i = 0; iterator_types[i]; i++) {
        if (strcmp(v, iterator_types[i]) == 0) {
            return 0;
        }
    }
    snprintf(err, errlen,
             "%s: must be one of AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, "
             "LATEST, AT_TIMESTAMP, got \"%.64s\"",
             key, v);
    return -1;
}

int kinesis_iterator_needs_sequence(const char *type)
{
    return strcmp(type, "AT_SEQUENCE_NUMBER") == 0 || strcmp(type, "AFTER_SEQUENCE_NUMBER") == 0;
}

int kinesis_iterator_needs_timestamp(const char *type)
{
    return strcmp(type, "AT_TIMESTAMP") == 0;
}

int kinesis_check_arn(const char *key, const char *v, char *err, size_t errlen)
{
    size_t n = strlen(v);

    if (n < 5 || strncmp(v, "arn:", 4) != 0 || n > 2048) {
        snprintf(err, errlen,
                 "%s: must be an ARN (\"arn:...\", at most 2048 characters), got \"%.64s\"", key,
                 v);
        return -1;
    }
    return 0;
}

int kinesis_check_token(const char *key, const char *v, char *err, size_t errlen)
{
    size_t n = strlen(v);

    if (n < 1 || n > 1048576) {
        snprintf(err, errlen, "%s: must be 1 to 1048576 characters", key);
        return -1;
    }
    return 0;
}

int kinesis_parse_timestamp(const char *key, const char *v, double *out, char *err, size_t errlen)
{
    const char *p = v;
    char *end;
    double d;

    /* Epoch seconds: digits with an optional fraction, nothing else. */
    while (*p >= '0' && *p <= '9') {
        p++;
    }
    if (p != v && (*p == '\0' || (*p == '.' && p[1] >= '0' && p[1] <= '9'))) {
        d = strtod(v, &end);
        if (*end == '\0' && d >= 0 && d < 1e11) {
            *out = d;
            return 0;
        }
    }
    if (timeparse_rfc3339(v, out) == 0 && *out >= 0) {
        return 0;
    }
    snprintf(err, errlen,
             "%s: must be an RFC 3339 date-time (2024-01-31T12:00:00Z) or epoch seconds, "
             "got \"%.64s\"",
             key, v);
    return -1;
}
