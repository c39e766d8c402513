/* aws_creds_sts.c - web identity (EKS IRSA): STS AssumeRoleWithWebIdentity.
 *
 * AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE (+ AWS_ROLE_SESSION_NAME).
 * The token file is read on every fetch (the kubelet rotates it). The
 * call is unsigned (the token is the proof), a Query API POST to
 * AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL or https://sts.<region>.amazonaws.com;
 * the answer is XML. */
#include "aws/aws_creds_internal.h"

#include "aws/sigv4.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int aws_creds_sts_applies(char *why, size_t whylen)
{
    const char *role = getenv("AWS_ROLE_ARN"), *file = getenv("AWS_WEB_IDENTITY_TOKEN_FILE");

    if (!role || !*role) {
        snprintf(why, whylen, "AWS_ROLE_ARN not set");
        return 0;
    }
    if (!file || !*file) {
        snprintf(why, whylen, "AWS_WEB_IDENTITY_TOKEN_FILE not set");
        return 0;
    }
    return 1;
}

/* The text of the first <tag>...</tag> inside [doc, end), entities
 * decoded, malloc'd; NULL when absent. */
static char *xml_text(const char *doc, const char *end, const char *tag)
{
    char open[64], close[64];
    const char *a, *b, *p;
    size_t ol;
    char *out, *o;

    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    ol = strlen(open);
    a = memmem(doc, (size_t)(end - doc), open, ol);
    if (!a) {
        return NULL;
    }
    a += ol;
    b = memmem(a, (size_t)(end - a), close, strlen(close));
    if (!b) {
        return NULL;
    }
    out = o = malloc((size_t)(b - a) + 1);
    if (!out) {
        return NULL;
    }
    for (p = a; p < b;) {
        static const struct {
            const char *ent;
            char ch;
        } ents[] = {
            {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
        size_t i, done = 0;

        if (*p == '&') {
            for (i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
                size_t el = strlen(ents[i].ent);
                if ((size_t)(b - p) >= el && !memcmp(p, ents[i].ent, el)) {
                    *o++ = ents[i].ch;
                    p += el;
                    done = 1;
                    break;
                }
            }
        }
        if (!done) {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

static void free_secret(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static void on_answer(struct aws_creds_fetch *f, long status, const char *body, size_t len,
                      const char *terr)
{
    const char *end = body + len, *cs, *ce;
    char *ak = NULL, *sk = NULL, *tok = NULL, *exp = NULL, *code, *msg;
    struct aws_creds got;
    char why[512];

    memset(&got, 0, sizeof(got));
    if (terr || status != 200) {
        code = terr ? NULL : xml_text(body, end, "Code");
        msg = terr ? NULL : xml_text(body, end, "Message");
        if (code) {
            aws_creds_fetch_finish(f, NULL, "STS %s: HTTP %ld %s%s%.300s", f->url, status, code,
                                   msg ? ": " : "", msg ? msg : "");
        } else {
            aws_creds_describe_failure(status, body, len, terr, why, sizeof(why));
            aws_creds_fetch_finish(f, NULL, "STS %s: %s", f->url, why);
        }
        free(code);
        free(msg);
        return;
    }
    cs = memmem(body, len, "<Credentials>", 13);
    ce = cs ? memmem(cs, (size_t)(end - cs), "</Credentials>", 14) : NULL;
    if (ce) {
        ak = xml_text(cs, ce, "AccessKeyId");
        sk = xml_text(cs, ce, "SecretAccessKey");
        tok = xml_text(cs, ce, "SessionToken");
        exp = xml_text(cs, ce, "Expiration");
    }
    if (!ak || !sk || !*ak || !*sk) {
        aws_creds_fetch_finish(f, NULL, "STS %s: the answer has no Credentials", f->url);
    } else if (exp && aws_creds_parse_time(exp, &got.expiration) < 0) {
        aws_creds_fetch_finish(f, NULL, "STS %s: Expiration \"%.64s\" is not an ISO 8601 time",
                               f->url, exp);
    } else if (aws_creds_set(&got, ak, sk, tok) < 0) {
        aws_creds_fetch_finish(f, NULL, "out of memory");
    } else {
        aws_creds_fetch_finish(f, &got, "%s", "");
    }
    aws_creds_free(&got);
    free_secret(ak);
    free_secret(sk);
    free_secret(tok);
    free(exp);
}

static int form_field(struct buf *b, const char *name, const char *value)
{
    if (buf_appendf(b, "%s%s=", b->len ? "&" : "", name) < 0) {
        return -1;
    }
    return sigv4_uri_encode(b, value, strlen(value), 0);
}

int aws_creds_sts_start(const struct aws_creds_net *net, aws_creds_got_fn got, void *ctx,
                        struct aws_creds_fetch **out, char *why, size_t whylen)
{
    const char *role = getenv("AWS_ROLE_ARN"), *session = getenv("AWS_ROLE_SESSION_NAME");
    struct aws_creds_fetch *f = NULL;
    struct aws_endpoint ep;
    char *token = NULL, gen_session[64], err[512];

    *out = NULL;
    if (!aws_creds_sts_applies(why, whylen)) {
        return -1;
    }
    if (aws_creds_read_file(getenv("AWS_WEB_IDENTITY_TOKEN_FILE"), &token, err, sizeof(err)) < 0) {
        snprintf(why, whylen, "%s", err);
        return -1;
    }
    if (!session || !*session) {
        snprintf(gen_session, sizeof(gen_session), "kubemq-kinesis-%lld", (long long)time(NULL));
        session = gen_session;
    }
    f = aws_creds_fetch_new(net, got, ctx);
    if (!f) {
        snprintf(why, whylen, "out of memory");
        goto fail;
    }
    if (aws_endpoint_resolve(NULL, "sts", net->region, f->url, sizeof(f->url), err, sizeof(err)) <
            0 ||
        aws_endpoint_parse(f->url, &ep, err, sizeof(err)) < 0) {
        snprintf(why, whylen, "STS endpoint: %s", err);
        goto fail;
    }
    snprintf(f->url, sizeof(f->url), "%s", ep.url);
    if (buf_reserve(&f->body, strlen(token) * 3 + 2048) < 0 ||
        form_field(&f->body, "Action", "AssumeRoleWithWebIdentity") < 0 ||
        form_field(&f->body, "Version", "2011-06-15") < 0 ||
        form_field(&f->body, "RoleArn", role) < 0 ||
        form_field(&f->body, "RoleSessionName", session) < 0 ||
        form_field(&f->body, "WebIdentityToken", token) < 0 ||
        aws_creds_fetch_header(f, "Content-Type",
                               "application/x-www-form-urlencoded; charset=utf-8") < 0 ||
        aws_creds_fetch_header(f, "Accept", "text/xml") < 0) {
        snprintf(why, whylen, "the STS request is too large");
        goto fail;
    }
    if (aws_creds_fetch_send(f, "POST", AWS_CREDS_STS_TIMEOUT_MS, 0, on_answer) < 0) {
        snprintf(why, whylen, "could not start the STS request");
        goto fail;
    }
    free_secret(token);
    *out = f;
    return 0;
fail:
    free_secret(token);
    aws_creds_fetch_free(f);
    return -1;
}
