/* aws_creds.c - the credential chain: order, cache, refresh before expiry. */
#include "aws/aws_creds.h"

#include "aws/aws_creds_internal.h"
#include "base/log.h"
#include "base/timeparse.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum provider { P_CONFIG, P_ENV, P_PROFILE, P_STS, P_HTTP, P_IMDS, P_COUNT };

static const char *const provider_names[P_COUNT] = {
    "config", "environment", "profile", "web identity", "container endpoint", "IMDS",
};

#define STARTED 3 /* a provider step is waiting on the network or a process */

typedef int (*net_start_fn)(const struct aws_creds_net *net, aws_creds_got_fn got, void *ctx,
                            struct aws_creds_fetch **out, char *why, size_t whylen);

static const net_start_fn net_start[P_COUNT] = {
    [P_STS] = aws_creds_sts_start,
    [P_HTTP] = aws_creds_http_start,
    [P_IMDS] = aws_creds_imds_start,
};

struct aws_creds_chain {
    struct loop *loop;
    struct aws_creds_net net;
    char *region;
    char *log_name;
    void (*ready)(void *ctx);
    void *ctx;
    int creating; /* inside create: failures are the caller's to report */

    /* the cache */
    struct aws_creds cur; /* cur.access_key NULL: none */
    unsigned gen;
    int winner;
    time_t refresh_at, stale_at; /* 0: no expiry */
    struct loop_timer refresh_timer;

    /* the resolution under way */
    int running;
    int only; /* a refresh of `winner` alone */
    int index;
    int current;
    struct aws_creds_fetch *fetch;
    struct buf tried;

    int failed;
    time_t failed_until;
    char failure[2048];
    time_t last_reject;

    struct loop_timer notify_timer;
};

/* ---- struct aws_creds ---- */

static int nonempty(const char *s)
{
    return s && *s;
}

int aws_creds_set(struct aws_creds *c, const char *access_key, const char *secret_key,
                  const char *session_token)
{
    c->access_key = strdup(access_key);
    c->secret_key = strdup(secret_key);
    c->session_token = nonempty(session_token) ? strdup(session_token) : NULL;
    if (!c->access_key || !c->secret_key || (nonempty(session_token) && !c->session_token)) {
        aws_creds_free(c);
        return -1;
    }
    return 0;
}

static void wipe(char **s)
{
    if (*s) {
        OPENSSL_cleanse(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

void aws_creds_free(struct aws_creds *c)
{
    if (!c) {
        return;
    }
    wipe(&c->access_key);
    wipe(&c->secret_key);
    wipe(&c->session_token);
    c->expiration = 0;
}

void aws_creds_move(struct aws_creds *dst, struct aws_creds *src)
{
    aws_creds_free(dst);
    *dst = *src;
    memset(src, 0, sizeof(*src));
}

int aws_creds_parse_time(const char *s, time_t *out)
{
    double t;

    if (!s || timeparse_rfc3339(s, &t) < 0) {
        return -1;
    }
    *out = (time_t)t;
    return 0;
}

/* ---- the environment ---- */

int aws_creds_env_load(struct aws_creds *out, char *why, size_t whylen)
{
    const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");

    memset(out, 0, sizeof(*out));
    why[0] = '\0';
    if (!nonempty(ak) && !nonempty(sk)) {
        return 0;
    }
    if (!nonempty(ak) || !nonempty(sk)) {
        snprintf(why, whylen, "aws credentials: %s is set but %s is empty",
                 nonempty(ak) ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                 nonempty(ak) ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
        return -1;
    }
    if (aws_creds_set(out, ak, sk, getenv("AWS_SESSION_TOKEN")) < 0) {
        snprintf(why, whylen, "aws credentials: out of memory");
        return -1;
    }
    return 1;
}

/* ---- the chain ---- */

static void notify_fire(void *arg)
{
    struct aws_creds_chain *ch = arg;

    if (ch->ready) {
        ch->ready(ch->ctx);
    }
}

static void notify(struct aws_creds_chain *ch)
{
    loop_timer_start(ch->loop, &ch->notify_timer, 0, notify_fire, ch);
}

static void label(int i, char *out, size_t len)
{
    if (i == P_PROFILE) {
        aws_creds_profile_label(out, len);
    } else {
        snprintf(out, len, "%s", provider_names[i]);
    }
}

static void add_tried(struct aws_creds_chain *ch, int i, const char *why)
{
    char l[192];

    label(i, l, sizeof(l));
    /* the message is capped: a long list just ends early */
    (void)buf_appendf(&ch->tried, "%s%s%s%s%s", ch->tried.len ? ", " : "", l, *why ? " (" : "", why,
                      *why ? ")" : "");
}

static void fmt_time(time_t t, char *out, size_t len)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void on_refresh_timer(void *arg);

/* Refresh at expiry - min(5 min, lifetime/2); unusable from a few seconds
 * before expiry (a request signed then may arrive after it). */
static void schedule(struct aws_creds_chain *ch, time_t now)
{
    time_t exp = ch->cur.expiration, life, window, margin;

    loop_timer_stop(ch->loop, &ch->refresh_timer);
    if (!exp) {
        ch->refresh_at = ch->stale_at = 0;
        return;
    }
    life = exp - now;
    window = life / 2 < AWS_CREDS_REFRESH_WINDOW ? life / 2 : AWS_CREDS_REFRESH_WINDOW;
    margin = life / 4 < 10 ? life / 4 : 10;
    ch->refresh_at = exp - window;
    ch->stale_at = exp - margin;
    loop_timer_start(ch->loop, &ch->refresh_timer,
                     (uint64_t)(ch->refresh_at > now ? ch->refresh_at - now : 0) * 1000,
                     on_refresh_timer, ch);
}

static int usable(const struct aws_creds_chain *ch, time_t now)
{
    return ch->cur.access_key && (!ch->stale_at || now < ch->stale_at);
}

/* 0: installed; -1: refused, why says why. */
static int install(struct aws_creds_chain *ch, struct aws_creds *got, int i, char *why,
                   size_t whylen)
{
    time_t now = time(NULL);
    char l[192], when[32];

    if (got->expiration && got->expiration <= now) {
        fmt_time(got->expiration, when, sizeof(when));
        snprintf(why, whylen, "the credentials expired at %s already", when);
        aws_creds_free(got);
        return -1;
    }
    aws_creds_move(&ch->cur, got);
    ch->cur.source = provider_names[i];
    ch->gen++;
    ch->winner = i;
    ch->running = 0;
    ch->failed = 0;
    schedule(ch, now);
    label(i, l, sizeof(l));
    if (ch->cur.expiration) {
        fmt_time(ch->cur.expiration, when, sizeof(when));
        log_info(ch->log_name, "aws credentials: from %s, expire at %s", l, when);
    } else {
        log_info(ch->log_name, "aws credentials: from %s, no expiry", l);
    }
    notify(ch);
    return 0;
}

static void run_step(struct aws_creds_chain *ch);
static void run_start(struct aws_creds_chain *ch, int only);

static void fail(struct aws_creds_chain *ch, const char *msg)
{
    ch->running = 0;
    ch->failed = 1;
    ch->failed_until = time(NULL) + AWS_CREDS_FAIL_HOLD;
    snprintf(ch->failure, sizeof(ch->failure), "%s", msg);
    if (!usable(ch, time(NULL))) {
        aws_creds_free(&ch->cur);
        ch->refresh_at = ch->stale_at = 0;
    }
    if (!ch->creating) {
        log_error(ch->log_name, "%s", ch->failure);
    }
    notify(ch);
}

static void run_failed(struct aws_creds_chain *ch)
{
    time_t now = time(NULL), wait;
    char msg[sizeof(ch->failure)], l[192], until[32];

    if (ch->only && usable(ch, now)) {
        /* Keep what still works and try again, well before it ends. */
        wait = (ch->stale_at - now) / 2;
        wait = wait < 1 ? 1 : wait > 60 ? 60 : wait;
        label(ch->winner, l, sizeof(l));
        fmt_time(ch->stale_at, until, sizeof(until));
        log_warn(ch->log_name,
                 "aws credentials: refresh failed: %s; the current ones are used until %s, "
                 "next try in %lld s",
                 buf_str(&ch->tried), until, (long long)wait);
        ch->running = 0;
        loop_timer_start(ch->loop, &ch->refresh_timer, (uint64_t)wait * 1000, on_refresh_timer, ch);
        notify(ch);
        return;
    }
    if (ch->only) {
        run_start(ch, 0); /* expired meanwhile: the whole chain again */
        return;
    }
    snprintf(msg, sizeof(msg), "no AWS credentials: tried %s", buf_str(&ch->tried));
    fail(ch, msg);
}

static void on_got(void *ctx, struct aws_creds *got, const char *why)
{
    struct aws_creds_chain *ch = ctx;
    char reason[1024];

    ch->fetch = NULL;
    if (got) {
        if (install(ch, got, ch->current, reason, sizeof(reason)) == 0) {
            return;
        }
        why = reason;
    }
    add_tried(ch, ch->current, why);
    if (ch->only) {
        run_failed(ch);
        return;
    }
    run_step(ch);
}

static int profile_step(struct aws_creds_chain *ch, struct aws_creds *got, char *why, size_t len)
{
    char *process = NULL;
    int rc = aws_creds_profile_load(got, &process, why, len);

    if (rc == 2) {
        rc = aws_creds_process_start(&ch->net, process, on_got, ch, &ch->fetch, why, len) == 0
                 ? STARTED
                 : 0;
        OPENSSL_cleanse(process, strlen(process));
        free(process);
    }
    return rc;
}

static void run_step(struct aws_creds_chain *ch)
{
    struct aws_creds got;
    char why[1024];
    int i, rc = 0;

    while (ch->index < P_COUNT) {
        i = ch->current = ch->index++;
        memset(&got, 0, sizeof(got));
        why[0] = '\0';
        switch (i) {
        case P_CONFIG:
            rc = 0; /* keys from the config never get this far */
            break;
        case P_ENV:
            rc = aws_creds_env_load(&got, why, sizeof(why));
            break;
        case P_PROFILE:
            rc = profile_step(ch, &got, why, sizeof(why));
            break;
        default:
            rc =
                net_start[i](&ch->net, on_got, ch, &ch->fetch, why, sizeof(why)) == 0 ? STARTED : 0;
            break;
        }
        if (rc == STARTED) {
            return;
        }
        if (rc < 0) {
            fail(ch, why); /* set but broken: no guessing further down */
            return;
        }
        if (rc == 1 && install(ch, &got, i, why, sizeof(why)) == 0) {
            return;
        }
        add_tried(ch, i, why);
        if (ch->only) {
            break;
        }
    }
    run_failed(ch);
}

static void run_start(struct aws_creds_chain *ch, int only)
{
    ch->running = 1;
    ch->only = only;
    ch->index = only ? ch->winner : P_CONFIG;
    buf_reset(&ch->tried);
    run_step(ch);
}

static void on_refresh_timer(void *arg)
{
    struct aws_creds_chain *ch = arg;

    if (!ch->running && ch->cur.access_key) {
        run_start(ch, 1);
    }
}

struct aws_creds_chain *aws_creds_chain_create(struct loop *loop,
                                               const struct aws_creds_chain_options *o, char *err,
                                               size_t errlen)
{
    struct aws_creds_chain *ch = calloc(1, sizeof(*ch));
    const char *ak = o->access_key, *sk = o->secret_key;

    if (!ch) {
        snprintf(err, errlen, "aws credentials: out of memory");
        return NULL;
    }
    ch->loop = loop;
    ch->ready = o->ready;
    ch->ctx = o->ctx;
    loop_timer_init(&ch->refresh_timer);
    loop_timer_init(&ch->notify_timer);
    buf_init(&ch->tried, 1500);
    ch->region = strdup(o->region ? o->region : "");
    ch->log_name = o->log_name ? strdup(o->log_name) : NULL;
    if (!ch->region || (o->log_name && !ch->log_name)) {
        snprintf(err, errlen, "aws credentials: out of memory");
        goto fail;
    }
    ch->net.loop = loop;
    ch->net.transport = o->transport;
    ch->net.region = ch->region;
    if (nonempty(ak) || nonempty(sk)) {
        if (!nonempty(ak) || !nonempty(sk)) {
            snprintf(err, errlen, "aws credentials: %s is set but %s is empty",
                     nonempty(ak) ? "the access key" : "the secret key",
                     nonempty(ak) ? "the secret key" : "the access key");
            goto fail;
        }
        if (aws_creds_set(&ch->cur, ak, sk, o->session_token) < 0) {
            snprintf(err, errlen, "aws credentials: out of memory");
            goto fail;
        }
        ch->cur.source = provider_names[P_CONFIG];
        ch->winner = P_CONFIG;
        ch->gen = 1;
        return ch;
    }
    /* Local providers answer now; a network one starts its fetch. */
    ch->creating = 1;
    run_start(ch, 0);
    ch->creating = 0;
    if (ch->failed) {
        snprintf(err, errlen, "%s", ch->failure);
        goto fail;
    }
    return ch;
fail:
    aws_creds_chain_destroy(ch);
    return NULL;
}

void aws_creds_chain_destroy(struct aws_creds_chain *ch)
{
    if (!ch) {
        return;
    }
    aws_creds_fetch_cancel(ch->fetch);
    ch->fetch = NULL;
    loop_timer_stop(ch->loop, &ch->refresh_timer);
    loop_timer_stop(ch->loop, &ch->notify_timer);
    aws_creds_free(&ch->cur);
    buf_free(&ch->tried);
    free(ch->region);
    free(ch->log_name);
    free(ch);
}

enum aws_creds_state aws_creds_chain_get(struct aws_creds_chain *ch, const struct aws_creds **out,
                                         const char **why)
{
    time_t now = time(NULL);

    *out = NULL;
    *why = NULL;
    if (usable(ch, now)) {
        if (ch->refresh_at && now >= ch->refresh_at && !ch->running) {
            run_start(ch, 1);
        }
        if (usable(ch, now)) {
            *out = &ch->cur;
            return AWS_CREDS_READY;
        }
    }
    if (ch->running) {
        return AWS_CREDS_PENDING;
    }
    if (!ch->failed || now >= ch->failed_until) {
        run_start(ch, 0);
        if (usable(ch, now)) {
            *out = &ch->cur;
            return AWS_CREDS_READY;
        }
        if (ch->running) {
            return AWS_CREDS_PENDING;
        }
    }
    *why = ch->failure;
    return AWS_CREDS_FAILED;
}

unsigned aws_creds_chain_generation(const struct aws_creds_chain *ch)
{
    return ch->gen;
}

int aws_creds_chain_rejected(struct aws_creds_chain *ch, unsigned gen)
{
    time_t now = time(NULL);
    char l[192];

    if (ch->winner == P_CONFIG && ch->cur.access_key) {
        return 0; /* static keys: asking again changes nothing */
    }
    if (ch->running || (usable(ch, now) && gen != ch->gen)) {
        return 1;
    }
    if (ch->last_reject && now - ch->last_reject < AWS_CREDS_REJECT_INTERVAL) {
        return 0;
    }
    ch->last_reject = now;
    label(ch->winner, l, sizeof(l));
    log_warn(ch->log_name, "aws credentials: AWS refused the ones from %s; resolving again", l);
    aws_creds_free(&ch->cur);
    ch->refresh_at = ch->stale_at = 0;
    loop_timer_stop(ch->loop, &ch->refresh_timer);
    run_start(ch, 0);
    return 1;
}

int aws_creds_is_auth_error(const char *t)
{
    static const char *const auth[] = {
        "ExpiredTokenException",       "ExpiredToken",
        "UnrecognizedClientException", "InvalidClientTokenId",
        "InvalidSignatureException",   "SignatureDoesNotMatch",
        "InvalidAccessKeyId",          "AuthFailure",
        "TokenRefreshRequired",
    };
    size_t i;

    for (i = 0; t && i < sizeof(auth) / sizeof(auth[0]); i++) {
        if (!strcmp(t, auth[i])) {
            return 1;
        }
    }
    return 0;
}
