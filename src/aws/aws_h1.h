/* aws_h1.h - an HTTP/1.1 client of our own behind struct aws_transport.
 *
 * What the Kinesis endpoint needs and no more: keep-alive connections per
 * origin (scheme, host, port), opened without blocking and registered with
 * the loop once for their whole life; a request's head and body go out in
 * one write and its answer (Content-Length, chunked or up to the close) is
 * read in as few reads as it arrives in. TLS through OpenSSL (base/tls.h),
 * verified against ca_file, else AWS_CA_BUNDLE, else the system roots;
 * names resolved on the loop (base/resolve.h) and again after a minute.
 * A request that finds its reused connection closed by the server before
 * any answer is sent once more on a new one, as browsers and libcurl do.
 *
 * No proxies and no HTTP/2: the AWS client keeps libcurl (aws_http.h) for
 * those. Errors read like libcurl's ("Couldn't connect to server: ...",
 * "Timeout was reached: ...") so logs and tests see one vocabulary.
 * Single-threaded: use on the loop thread only. */
#ifndef KK_AWS_H1_H
#define KK_AWS_H1_H

#include "aws/aws_client.h"
#include "aws/aws_http.h"
#include "base/loop.h"

#include <stddef.h>

struct aws_h1;

/* Takes the same options as the libcurl transport; http2 must be 0. */
struct aws_h1 *aws_h1_create(struct loop *loop, const struct aws_http_options *o, char *err,
                             size_t errlen);
/* Requests in flight or waiting complete first with a transport error.
 * May be called from inside a done callback. Accepts NULL. */
void aws_h1_destroy(struct aws_h1 *h);
/* The transport to hand to the client; lives as long as h. */
const struct aws_transport *aws_h1_transport(struct aws_h1 *h);

/* 1 when the environment names a proxy libcurl would use for an AWS
 * endpoint (https_proxy, HTTPS_PROXY, http_proxy, ALL_PROXY, all_proxy):
 * then the client keeps libcurl. */
int aws_h1_proxy_in_env(void);

#endif
