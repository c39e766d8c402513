/* aws_creds_http.c - the container credentials endpoint (ECS, EKS Pod
 * Identity).
 *
 * AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is a path on 169.254.170.2;
 * AWS_CONTAINER_CREDENTIALS_FULL_URI a whole URL, allowed (like Fluent Bit
 * and the SDKs) only over https or to a loopback address, 169.254.170.2,
 * 169.254.170.23 or fd00:ec2::23, so an injected variable cannot send the
 * authorization token anywhere. The token comes from
 * AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (read on every fetch: Pod Identity
 * rotates it) or AWS_CONTAINER_AUTHORIZATION_TOKEN. The answer is JSON. */
#include "aws/aws_creds_internal.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ECS_HOST "169.254.170.2"

int aws_creds_http_applies(char *why, size_t whylen)
{
    const char *rel = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");

    if ((!rel || !*rel) && (!full || !*full)) {
        snprintf(why, whylen, "not set");
        return 0;
    }
    return 1;
}

static int allowed_host(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6, lo6 = IN6ADDR_LOOPBACK_INIT;
    char h[128];
    size_t n = strlen(host);

    if (!strcasecmp(host, "localhost") || !strcmp(host, ECS_HOST) ||
        !strcmp(host, "169.254.170.23")) {
        return 1;
    }
    if (inet_pton(AF_INET, host, &a4) == 1) {
        return (ntohl(a4.s_addr) >> 24) == 127;
    }
    if (n > 2 && n < sizeof(h) && host[0] == '[' && host[n - 1] == ']') {
        memcpy(h, host + 1, n - 2);
        h[n - 2] = '\0';
        if (inet_pton(AF_INET6, h, &a6) == 1) {
            struct in6_addr eks;

            inet_pton(AF_INET6, "fd00:ec2::23", &eks);
            return !memcmp(&a6, &lo6, sizeof(a6)) || !memcmp(&a6, &eks, sizeof(a6));
        }
    }
    return 0;
}

/* The full URI's scheme and host pass the rule. 0, or -1 with why. */
static int check_full_uri(const char *uri, char *why, size_t whylen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = -1;

    if (!u || curl_url_set(u, CURLUPART_URL, uri, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        snprintf(why, whylen, "AWS_CONTAINER_CREDENTIALS_FULL_URI is not a URL");
    } else if (strcasecmp(scheme, "https") && strcasecmp(scheme, "http")) {
        snprintf(why, whylen, "AWS_CONTAINER_CREDENTIALS_FULL_URI must be http or https");
    } else if (!strcasecmp(scheme, "https") || allowed_host(host)) {
        rc = 0;
    } else {
        snprintf(why, whylen,
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI host %.100s is not allowed: use https, a "
                 "loopback address, " ECS_HOST " or 169.254.170.23",
                 host);
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

static void on_answer(struct aws_creds_fetch *f, long status, const char *body, size_t len,
                      const char *terr)
{
    struct aws_creds got;
    char why[512];

    if (terr || status != 200) {
        aws_creds_describe_failure(status, body, len, terr, why, sizeof(why));
        aws_creds_fetch_finish(f, NULL, "%s: %s", f->url, why);
        return;
    }
    if (aws_creds_from_json(body, len, "Token", &got, why, sizeof(why)) < 0) {
        aws_creds_fetch_finish(f, NULL, "%s: %s", f->url, why);
        return;
    }
    aws_creds_fetch_finish(f, &got, "%s", "");
    aws_creds_free(&got);
}

int aws_creds_http_start(const struct aws_creds_net *net, aws_creds_got_fn got, void *ctx,
                         struct aws_creds_fetch **out, char *why, size_t whylen)
{
    const char *rel = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    const char *token_file = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    const char *token_env = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    struct aws_creds_fetch *f = NULL;
    char *token = NULL, err[512];
    int n;

    *out = NULL;
    if (!aws_creds_http_applies(why, whylen)) {
        return -1;
    }
    if (rel && *rel) {
        if (rel[0] != '/') {
            snprintf(why, whylen, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must start with /");
            return -1;
        }
    } else if (check_full_uri(full, why, whylen) < 0) {
        return -1;
    }
    if (token_file && *token_file) {
        if (aws_creds_read_file(token_file, &token, err, sizeof(err)) < 0) {
            snprintf(why, whylen, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: %s", err);
            return -1;
        }
    } else if (token_env && *token_env && !(token = strdup(token_env))) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    f = aws_creds_fetch_new(net, got, ctx);
    if (!f) {
        snprintf(why, whylen, "out of memory");
        goto fail;
    }
    n = rel && *rel ? snprintf(f->url, sizeof(f->url), "http://" ECS_HOST "%s", rel)
                    : snprintf(f->url, sizeof(f->url), "%s", full);
    if (n < 0 || (size_t)n >= sizeof(f->url)) {
        snprintf(why, whylen, "the credentials URI is too long");
        goto fail;
    }
    if (token && aws_creds_fetch_header(f, "Authorization", token) < 0) {
        snprintf(why, whylen, "the authorization token is unusable (line breaks, or too long)");
        goto fail;
    }
    if (aws_creds_fetch_header(f, "Accept", "application/json") < 0 ||
        aws_creds_fetch_send(f, "GET", AWS_CREDS_HTTP_TIMEOUT_MS, 1, on_answer) < 0) {
        snprintf(why, whylen, "could not start the request to %s", f->url);
        goto fail;
    }
    if (token) {
        OPENSSL_cleanse(token, strlen(token));
        free(token);
    }
    *out = f;
    return 0;
fail:
    if (token) {
        OPENSSL_cleanse(token, strlen(token));
        free(token);
    }
    aws_creds_fetch_free(f);
    return -1;
}
