/* aws_endpoint.h - which URL an AWS client talks to, and its Host. */
#ifndef KK_AWS_ENDPOINT_H
#define KK_AWS_ENDPOINT_H

#include <stddef.h>

#define AWS_ENDPOINT_URL_MAX  2048
#define AWS_ENDPOINT_HOST_MAX 512

/* The endpoint URL: `configured` when non-empty; else the environment's
 * AWS_ENDPOINT_URL_<SERVICE> (uppercased, '-' and ' ' as '_'), then
 * AWS_ENDPOINT_URL; else https://<service>.<region>.amazonaws.com
 * (.amazonaws.com.cn for cn- regions). Returns 0, or -1 with a message
 * (bad region, URL too long). The result is not yet validated: see
 * aws_endpoint_parse. */
int aws_endpoint_resolve(const char *configured, const char *service, const char *region, char *url,
                         size_t urllen, char *err, size_t errlen);

struct aws_endpoint {
    char url[AWS_ENDPOINT_URL_MAX];   /* normalised, as requested */
    char host[AWS_ENDPOINT_HOST_MAX]; /* Host header: name[:port], port only if not default */
    char path[AWS_ENDPOINT_URL_MAX];  /* "/" or the URL's path */
    int tls;
};

/* Check an http(s) URL (no query, no fragment, no user info) and split it.
 * Returns 0, or -1 with a message naming the URL's problem. */
int aws_endpoint_parse(const char *url, struct aws_endpoint *out, char *err, size_t errlen);

#endif
