/* sigv4.h - AWS Signature Version 4 (header signing) on libcrypto.
 *
 * Our own signer, because libcurl 7.88's CURLOPT_AWS_SIGV4 signs removed
 * headers, unsorted queries and streamed bodies wrongly. It follows the
 * non-S3 rules: the path is normalised (dot segments and empty segments
 * removed) and percent-encoded again, the query is decoded, re-encoded and
 * sorted, header names are lowercased and values trimmed with inner
 * whitespace runs collapsed, repeated headers joined by commas.
 *
 * Only the headers the caller passes are signed (plus X-Amz-Date and
 * X-Amz-Security-Token when the signer adds them), so headers the HTTP
 * library adds on its own (Accept, User-Agent, Expect) never matter. */
#ifndef KK_AWS_SIGV4_H
#define KK_AWS_SIGV4_H

#include "base/buf.h"

#include <stddef.h>
#include <time.h>

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"

struct sigv4_header {
    const char *name;
    const char *value;
};

struct sigv4_request {
    const char *method;                 /* "POST" */
    const char *path;                   /* as sent on the wire (may hold %XX); NULL or "" = "/" */
    const char *query;                  /* after the '?', as sent; NULL or "" = none */
    const struct sigv4_header *headers; /* all signed; Host must be among them */
    size_t nheaders;
    const void *body;
    size_t body_len;
    const char *payload_hash; /* lowercase hex SHA-256; NULL = hash body */
};

/* The last derived signing key, so a day's requests cost one HMAC instead
 * of five. Not locked: one cache per owner, used on one thread (the engine
 * loop). The secret itself is never stored, only its SHA-256. */
struct sigv4_key_cache {
    int valid;
    unsigned char secret_digest[32];
    char date[9];
    char region[64];
    char service[64];
    unsigned char key[32];
};

struct sigv4_params {
    const char *access_key;
    const char *secret_key;
    const char *session_token; /* NULL or "": none */
    const char *region;
    const char *service;
    time_t when;                   /* signing time; ignored when the headers carry X-Amz-Date */
    struct sigv4_key_cache *cache; /* NULL: derive the key every time */
};

struct sigv4_result {
    char amz_date[17];  /* "20150830T123600Z" */
    char signature[65]; /* lowercase hex */
    int add_date;       /* caller must send X-Amz-Date: amz_date */
    int add_token;      /* caller must send X-Amz-Security-Token */
    struct buf canonical_request;
    struct buf string_to_sign;
    struct buf signed_headers; /* "content-type;host;x-amz-date" */
    struct buf authorization;  /* the Authorization header value */
};

void sigv4_result_init(struct sigv4_result *r);
/* Accepts a result that was only initialised. */
void sigv4_result_free(struct sigv4_result *r);

/* Sign req. Returns 0 with *out filled (previous contents replaced), or -1
 * with a message in err (bad X-Amz-Date, missing Host, empty key, ...). */
int sigv4_sign(const struct sigv4_params *p, const struct sigv4_request *req,
               struct sigv4_result *out, char *err, size_t errlen);

/* Helpers, exported for the client and the tests. */
/* Lowercase hex SHA-256 of data into out[65]. Returns 0 or -1. */
int sigv4_sha256_hex(const void *data, size_t len, char out[65]);
/* HMAC-SHA256. Returns 0 or -1. */
int sigv4_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                      unsigned char out[32]);
/* Percent-encode every byte except A-Z a-z 0-9 - _ . ~ (and '/' when
 * keep_slash). Returns 0, or -1 when out's cap is hit. */
int sigv4_uri_encode(struct buf *out, const char *s, size_t len, int keep_slash);

#endif
