/* aws_endpoint.c - endpoint URL resolution and its Host header. */
#include "aws/aws_endpoint.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int valid_label(const char *s)
{
    if (!s || !*s) {
        return 0;
    }
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-')) {
            return 0;
        }
    }
    return 1;
}

int aws_endpoint_resolve(const char *configured, const char *service, const char *region, char *url,
                         size_t urllen, char *err, size_t errlen)
{
    char name[128];
    const char *v;
    size_t i, n;
    int w;

    if (configured && *configured) {
        v = configured;
        goto have;
    }
    n = (size_t)snprintf(name, sizeof(name), "AWS_ENDPOINT_URL_");
    for (i = 0; service && service[i] && n + 1 < sizeof(name); i++) {
        char c = service[i];
        name[n++] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : (c == '-' || c == ' ') ? '_' : c;
    }
    name[n] = '\0';
    v = getenv(name);
    if (v && *v) {
        goto have;
    }
    v = getenv("AWS_ENDPOINT_URL");
    if (v && *v) {
        goto have;
    }
    if (!valid_label(service)) {
        snprintf(err, errlen, "aws endpoint: bad service name '%s'", service ? service : "");
        return -1;
    }
    if (!valid_label(region)) {
        snprintf(err, errlen, "aws endpoint: bad region '%s' (expected e.g. us-east-1)",
                 region ? region : "");
        return -1;
    }
    w = snprintf(url, urllen, "https://%s.%s.amazonaws.com%s", service, region,
                 strncmp(region, "cn-", 3) ? "" : ".cn");
    if (w < 0 || (size_t)w >= urllen) {
        snprintf(err, errlen, "aws endpoint: URL too long");
        return -1;
    }
    return 0;
have:
    w = snprintf(url, urllen, "%s", v);
    if (w < 0 || (size_t)w >= urllen) {
        snprintf(err, errlen, "aws endpoint: URL too long");
        return -1;
    }
    return 0;
}

/* The URL for messages: user info ("user:password@") is a secret that
 * does not belong in a log line, so it shows as "***@". */
static void shown_url(const char *url, char *dst, size_t n)
{
    const char *auth = strstr(url, "://");
    const char *end, *at;

    auth = auth ? auth + 3 : url;
    end = auth + strcspn(auth, "/?#");
    at = memchr(auth, '@', (size_t)(end - auth));
    while (at && memchr(at + 1, '@', (size_t)(end - at - 1))) {
        at = memchr(at + 1, '@', (size_t)(end - at - 1));
    }
    if (!at) {
        snprintf(dst, n, "%s", url);
        return;
    }
    snprintf(dst, n, "%.*s***%s", (int)(auth - url), url, at);
}

static int get_part(CURLU *u, CURLUPart what, char **out)
{
    CURLUcode rc = curl_url_get(u, what, out, 0);

    if (rc == CURLUE_OK) {
        return 1;
    }
    *out = NULL;
    return 0;
}

int aws_endpoint_parse(const char *url, struct aws_endpoint *out, char *err, size_t errlen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL, *frag = NULL,
         *user = NULL, *full = NULL;
    CURLUcode uc;
    char shown[AWS_ENDPOINT_URL_MAX];
    int rc = -1, w;

    memset(out, 0, sizeof(*out));
    shown_url(url ? url : "", shown, sizeof(shown));
    if (!u) {
        snprintf(err, errlen, "aws endpoint: out of memory");
        return -1;
    }
    if (!url || !*url) {
        snprintf(err, errlen, "aws endpoint: empty URL");
        goto done;
    }
    if (!strstr(url, "://")) {
        snprintf(err, errlen, "aws endpoint '%s': expected http:// or https://", shown);
        goto done;
    }
    uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        snprintf(err, errlen, "aws endpoint '%s': %s", shown, curl_url_strerror(uc));
        goto done;
    }
    get_part(u, CURLUPART_SCHEME, &scheme);
    if (!scheme || (strcmp(scheme, "http") && strcmp(scheme, "https"))) {
        snprintf(err, errlen, "aws endpoint '%s': scheme must be http or https", shown);
        goto done;
    }
    out->tls = !strcmp(scheme, "https");
    if (!get_part(u, CURLUPART_HOST, &host) || !*host) {
        snprintf(err, errlen, "aws endpoint '%s': no host", shown);
        goto done;
    }
    if (get_part(u, CURLUPART_USER, &user) || get_part(u, CURLUPART_QUERY, &query) ||
        get_part(u, CURLUPART_FRAGMENT, &frag)) {
        snprintf(err, errlen, "aws endpoint '%s': %s is not allowed", shown,
                 user    ? "user info (user:password@)"
                 : query ? "a query (?...)"
                         : "a fragment (#...)");
        goto done;
    }
    for (char *q = host; *q; q++) {
        if (*q >= 'A' && *q <= 'Z') {
            *q = (char)(*q + 32); /* host names are case-insensitive */
        }
    }
    get_part(u, CURLUPART_PORT, &port);
    get_part(u, CURLUPART_PATH, &path);
    if (port && !strcmp(port, out->tls ? "443" : "80")) {
        curl_free(port);
        port = NULL;
    }
    w = snprintf(out->host, sizeof(out->host), "%s%s%s", host, port ? ":" : "", port ? port : "");
    if (w < 0 || (size_t)w >= sizeof(out->host)) {
        snprintf(err, errlen, "aws endpoint '%s': host too long", shown);
        goto done;
    }
    w = snprintf(out->path, sizeof(out->path), "%s", path && *path ? path : "/");
    if (w < 0 || (size_t)w >= sizeof(out->path)) {
        snprintf(err, errlen, "aws endpoint '%s': path too long", shown);
        goto done;
    }
    if (!get_part(u, CURLUPART_URL, &full)) {
        snprintf(err, errlen, "aws endpoint '%s': cannot be normalised", shown);
        goto done;
    }
    w = snprintf(out->url, sizeof(out->url), "%s", full);
    if (w < 0 || (size_t)w >= sizeof(out->url)) {
        snprintf(err, errlen, "aws endpoint '%s': URL too long", shown);
        goto done;
    }
    rc = 0;
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_free(frag);
    curl_free(user);
    curl_free(full);
    curl_url_cleanup(u);
    return rc;
}
