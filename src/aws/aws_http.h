/* aws_http.h - the libcurl transport behind struct aws_transport, for
 * what our own HTTP/1.1 client (aws_h1.h) leaves out: HTTP/2 (`http2`)
 * and proxies from the environment.
 *
 * One curl multi handle driven by the engine loop through curl's socket
 * interface (loop_io_set for sockets, a loop timer for curl's timeouts).
 * Connections stay open and are reused; many requests are in flight at
 * once; easy handles are recycled from a small free list. TLS is verified
 * (optionally against ca_file, else AWS_CA_BUNDLE, else the system roots);
 * proxies come from the usual environment variables (libcurl's default,
 * left on). Single-threaded: use on the loop thread only. */
#ifndef KK_AWS_HTTP_H
#define KK_AWS_HTTP_H

#include "aws/aws_client.h"
#include "base/loop.h"

#include <stddef.h>

/* Default response cap: a 10 MB GetRecords answer, base64-grown, plus its
 * JSON framing stays below this. */
#define AWS_HTTP_MAX_RESPONSE ((size_t)20 << 20)

/* Most header lines in one request (the client sends at most 8). */
#define AWS_HTTP_MAX_HEADERS 16

/* Start of the transport error for a response over the cap. */
#define AWS_HTTP_TOO_LARGE "response larger than"

struct aws_http_options {
    const char *ca_file;       /* NULL/"": AWS_CA_BUNDLE, else system roots */
    long connect_timeout_ms;   /* 0: 5000 */
    long request_timeout_ms;   /* 0: 30000 */
    int http2;                 /* 1: HTTP/2 over TLS when offered, else HTTP/1.1 */
    size_t max_response_bytes; /* 0: AWS_HTTP_MAX_RESPONSE */
    long max_connections;      /* per host; 0: 64. Further requests queue */
};

struct aws_http;

/* What both transports keep of their options, defaults applied. */
struct aws_http_settings {
    char *ca_file; /* ca_file, else AWS_CA_BUNDLE; NULL: system roots */
    long connect_timeout_ms;
    long request_timeout_ms;
    size_t max_response;
    unsigned long max_conns;
};

/* -1 with a message when the CA file is not readable or memory ran out.
 * Free with aws_http_settings_free (accepts a zeroed or failed one). */
int aws_http_settings_init(struct aws_http_settings *s, const struct aws_http_options *o, char *err,
                           size_t errlen);
void aws_http_settings_free(struct aws_http_settings *s);

struct aws_http *aws_http_create(struct loop *loop, const struct aws_http_options *o, char *err,
                                 size_t errlen);
/* Requests still in flight complete first with a transport error. May be
 * called from inside a done callback. Accepts NULL. */
void aws_http_destroy(struct aws_http *h);
/* The transport to hand to the client; lives as long as h. */
const struct aws_transport *aws_http_transport(struct aws_http *h);

#endif
