/* service.c - the daemon's main thread: bindings, engine thread, API, signals, drain, reload. */
#include "binding/service.h"

#include "base/errs.h"
#include "base/log.h"
#include "base/loop.h"
#include "binding/binding.h"
#include "source/source_seen.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef KK_VERSION
#define KK_VERSION "0.0.0"
#endif

/* New bindings get this long to subscribe before the old ones stop. */
#define RELOAD_READY_WAIT_MS 10000
/* Our side sees a subscription open when the Subscribe is written; the
 * broker routes to it a moment later. Until then requests still go only to
 * the old binding, which must not close under them. */
#define RELOAD_SETTLE_MS 300
#define SIGNAL_POLL_MS   20

struct binding_service {
    struct loop *loop;
    pthread_t engine;
    int engine_started;
    struct metrics_registry *metrics;
    const char *config_path;
    int cli_log_level; /* -1: logLevel of the config (re-read on reload) */
    const struct binding_service_http *http;
    sigset_t sigs;

    pthread_mutex_t mu; /* the list and stopping, read by API threads */
    struct binding **bindings;
    size_t n;
    int stopping;

    void *api;
    char *api_address;
    long long api_port;
    int api_enable_request;

    int term_pending; /* SIGTERM/SIGINT seen during a reload */
    int hup_pending;  /* SIGHUP seen during a reload: read the config again */
};

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *signame(int sig)
{
    switch (sig) {
    case SIGTERM:
        return "SIGTERM";
    case SIGINT:
        return "SIGINT";
    case SIGHUP:
        return "SIGHUP";
    default:
        return "signal";
    }
}

/* Every line of errs as its own log line. */
static void log_errs(const struct errs *errs, const char *prefix)
{
    const char *p = buf_str(&errs->text);

    while (*p) {
        size_t n = strcspn(p, "\n");
        log_error(NULL, "%s%.*s", prefix, (int)n, p);
        p += n + (p[n] == '\n');
    }
}

/* ---- the API's view --------------------------------------------------- */

int binding_service_ready(struct binding_service *svc, struct buf *why)
{
    size_t i;
    int ok = 1;

    pthread_mutex_lock(&svc->mu);
    if (svc->stopping) {
        buf_append_str(why, "stopping");
        ok = 0;
    }
    for (i = 0; ok && i < svc->n; i++) {
        ok = binding_ready(svc->bindings[i], why);
    }
    pthread_mutex_unlock(&svc->mu);
    return ok;
}

int binding_service_bindings_json(struct binding_service *svc, struct buf *out)
{
    size_t i;
    int rc = buf_append_char(out, '[');

    pthread_mutex_lock(&svc->mu);
    for (i = 0; rc == 0 && i < svc->n; i++) {
        if (i > 0) {
            rc = buf_append_char(out, ',');
        }
        if (rc == 0) {
            rc = binding_status_json(svc->bindings[i], out);
        }
    }
    pthread_mutex_unlock(&svc->mu);
    return rc == 0 ? buf_append_char(out, ']') : -1;
}

int binding_service_request(struct binding_service *svc, const char *name, const char *payload,
                            size_t len, struct buf *reply_json, char *err, size_t errlen)
{
    struct binding *b = NULL;
    size_t i;
    int rc;

    pthread_mutex_lock(&svc->mu);
    for (i = 0; i < svc->n; i++) {
        if (strcmp(binding_name(svc->bindings[i]), name) == 0) {
            b = svc->bindings[i];
            binding_ref(b);
            break;
        }
    }
    pthread_mutex_unlock(&svc->mu);
    if (!b) {
        return BINDING_SERVICE_NO_BINDING;
    }
    rc = binding_request(b, payload, len, reply_json, err, errlen);
    binding_unref(b);
    return rc;
}

struct metrics_registry *binding_service_metrics(struct binding_service *svc)
{
    return svc->metrics;
}

/* ---- API start/stop ---------------------------------------------------- */

static int api_start_for(struct binding_service *svc, const struct config *c)
{
    struct binding_service_http_options o;
    char err[512];

    svc->api_port = c->api_port;
    svc->api_enable_request = c->api_enable_request;
    free(svc->api_address);
    svc->api_address = strdup(c->api_address ? c->api_address : "0.0.0.0");
    if (!svc->api_address) {
        log_error(NULL, "api: out of memory");
        return -1;
    }
    if (c->api_port <= 0 || !svc->http) {
        return 0;
    }
    o.address = svc->api_address;
    o.port = c->api_port;
    o.enable_request = c->api_enable_request;
    svc->api = svc->http->start(svc, &o, err, sizeof(err));
    if (!svc->api) {
        log_error(NULL, "api: %s", err);
        return -1;
    }
    return 0;
}

static void api_stop_now(struct binding_service *svc)
{
    if (svc->api) {
        svc->http->stop(svc->api);
        svc->api = NULL;
    }
}

/* ---- drain ------------------------------------------------------------- */

static size_t pending_of(struct binding **bs, size_t n)
{
    size_t i, sum = 0;

    for (i = 0; i < n; i++) {
        sum += binding_pending(bs[i]);
    }
    return sum;
}

/* Stop intake on bs and wait until every taken request is answered or the
 * largest drain timeout passed. Shutdown: a second SIGTERM/SIGINT exits at
 * once. Reload: it is remembered and the shutdown follows the reload. */
static void drain(struct binding_service *svc, struct binding **bs, size_t n, int shutdown)
{
    long long max_ms = 0;
    uint64_t deadline;
    struct timespec poll = {0, SIGNAL_POLL_MS * 1000000L};
    size_t i, pending;
    int sig;

    for (i = 0; i < n; i++) {
        binding_stop_intake(bs[i]);
        if (binding_drain_timeout_ms(bs[i]) > max_ms) {
            max_ms = binding_drain_timeout_ms(bs[i]);
        }
    }
    pending = pending_of(bs, n);
    if (pending > 0) {
        log_info(NULL, "draining: %zu request%s in flight (waiting up to %lld s)", pending,
                 pending == 1 ? "" : "s", max_ms / 1000);
    }
    deadline = now_ms() + (uint64_t)max_ms;
    for (;;) {
        pending = pending_of(bs, n);
        if (pending == 0) {
            return;
        }
        if (now_ms() >= deadline) {
            log_warn(NULL,
                     "drain timeout after %lld s: %zu request%s still in flight are answered "
                     "with an error",
                     max_ms / 1000, pending, pending == 1 ? "" : "s");
            return;
        }
        sig = sigtimedwait(&svc->sigs, NULL, &poll);
        if (sig == SIGTERM || sig == SIGINT) {
            if (shutdown) {
                log_error(NULL,
                          "second %s while draining: exiting now with %zu request%s in flight",
                          signame(sig), pending, pending == 1 ? "" : "s");
                _exit(1);
            }
            svc->term_pending = sig;
            log_info(NULL, "%s received during the reload: stopping after it", signame(sig));
        } else if (sig == SIGHUP && shutdown) {
            log_warn(NULL, "SIGHUP ignored while draining");
        } else if (sig == SIGHUP) {
            svc->hup_pending = 1;
            log_info(NULL, "SIGHUP received during the reload: reading the config again after it");
        }
    }
}

/* ---- bindings ----------------------------------------------------------- */

static void destroy_all(struct binding **bs, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        binding_destroy(bs[i]);
    }
}

/* Wait (bounded) for fresh bindings to subscribe, so a channel taken over
 * from an old binding is never left without a subscriber. */
static void wait_ready(struct binding_service *svc, struct binding **bs, size_t n)
{
    uint64_t deadline = now_ms() + RELOAD_READY_WAIT_MS, settled = 0;
    struct timespec poll = {0, SIGNAL_POLL_MS * 1000000L};
    size_t i;
    int sig;

    if (n == 0) {
        return;
    }
    for (;;) {
        for (i = 0; i < n && binding_ready(bs[i], NULL); i++) {
        }
        if (i == n && !settled) {
            settled = now_ms() + RELOAD_SETTLE_MS;
        }
        if (i == n && now_ms() >= settled) {
            return;
        }
        if (i < n && now_ms() >= deadline) {
            log_warn(NULL, "reload: binding %s is not subscribed yet; continuing",
                     binding_name(bs[i]));
            return;
        }
        sig = sigtimedwait(&svc->sigs, NULL, &poll);
        if (sig == SIGTERM || sig == SIGINT) {
            svc->term_pending = sig;
            log_info(NULL, "%s received during the reload: stopping after it", signame(sig));
        } else if (sig == SIGHUP) {
            svc->hup_pending = 1;
            log_info(NULL, "SIGHUP received during the reload: reading the config again after it");
        }
    }
}

static struct binding *find_same(struct binding **bs, size_t n, const struct config_binding *cb)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (bs[i] && binding_same_config(bs[i], cb)) {
            return bs[i];
        }
    }
    return NULL;
}

/* The binding of old that cb replaces, as an index (n: none): the one of
 * the same name, else one on its way out (its name gone from the new
 * config, not paired yet) subscribed where cb will - a renamed binding. */
static size_t predecessor(struct binding **old, size_t n, const char *paired,
                          const struct config *nc, const struct config_binding *cb)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (old[i] && strcmp(binding_name(old[i]), cb->name) == 0) {
            return i;
        }
    }
    for (i = 0; i < n; i++) {
        if (old[i] && !paired[i] && !config_find_binding(nc, binding_name(old[i])) &&
            binding_same_source(old[i], cb)) {
            return i;
        }
    }
    return n;
}

/* The old and the new source of each replaced binding stop sharing ids. */
static void unshare_seen(struct binding **bs, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (bs[i]) {
            binding_share_seen(bs[i], NULL);
        }
    }
}

static void reload(struct binding_service *svc)
{
    struct config nc;
    struct errs errs;
    struct binding **next = NULL, **old, **retired = NULL, **fresh = NULL;
    struct source_seen *seen;
    char *paired = NULL;
    size_t i, p, n_old, n_retired = 0, n_fresh = 0, kept = 0;
    char err[1024];
    int api_changed;

    log_info(NULL, "SIGHUP received: reloading the config from %s",
             svc->config_path ? svc->config_path : "the CONFIG variable or config.yaml");
    errs_init(&errs);
    if (config_load(&nc, svc->config_path, &errs) < 0) {
        log_errs(&errs, "reload: ");
        log_error(NULL, "reload failed (%d problem%s): the running config stays", errs.count,
                  errs.count == 1 ? "" : "s");
        errs_free(&errs);
        return;
    }
    errs_free(&errs);

    n_old = svc->n;
    old = calloc(n_old + 1, sizeof(*old));
    next = calloc(nc.n_bindings + 1, sizeof(*next));
    fresh = calloc(nc.n_bindings + 1, sizeof(*fresh));
    retired = calloc(n_old + 1, sizeof(*retired));
    paired = calloc(n_old + 1, 1);
    if (!old || !next || !fresh || !retired || !paired) {
        log_error(NULL, "reload failed: out of memory; the running config stays");
        goto out;
    }
    memcpy(old, svc->bindings, n_old * sizeof(*old));
    /* Kept first, so that only bindings on their way out are paired below. */
    for (i = 0; i < nc.n_bindings; i++) {
        struct binding *b = find_same(old, n_old, &nc.bindings[i]);

        if (b) {
            size_t j;
            for (j = 0; j < n_old; j++) {
                if (old[j] == b) {
                    old[j] = NULL; /* kept: not retired */
                }
            }
            next[i] = b;
            kept++;
        }
    }
    for (i = 0; i < nc.n_bindings; i++) {
        if (next[i]) {
            continue;
        }
        p = predecessor(old, n_old, paired, &nc, &nc.bindings[i]);
        log_info(nc.bindings[i].name, "reload: binding %s is %s", nc.bindings[i].name,
                 p < n_old && strcmp(binding_name(old[p]), nc.bindings[i].name) == 0
                     ? "changed: starting it anew"
                     : "new: starting it");
        /* Old and new both subscribed for a moment: on a channel without a
         * group each gets every request, and only one may run it. Out of
         * memory: no sharing (the old way). */
        seen = p < n_old ? source_seen_create() : NULL;
        if (seen) {
            binding_share_seen(old[p], seen);
            paired[p] = 1;
        }
        next[i] = binding_create(&nc.bindings[i], svc->loop, svc->metrics, seen, err, sizeof(err));
        source_seen_unref(seen);
        if (!next[i]) {
            log_error(NULL, "reload: %s", err);
            log_error(NULL, "reload failed: the running config stays");
            destroy_all(fresh, n_fresh);
            unshare_seen(old, n_old);
            goto out;
        }
        fresh[n_fresh++] = next[i];
    }
    for (i = 0; i < n_old; i++) {
        if (old[i]) {
            retired[n_retired++] = old[i];
            log_info(binding_name(old[i]), "reload: binding %s is %s: draining the old one",
                     binding_name(old[i]),
                     config_find_binding(&nc, binding_name(old[i])) ? "replaced" : "removed");
        }
    }
    wait_ready(svc, fresh, n_fresh);

    pthread_mutex_lock(&svc->mu);
    free(svc->bindings);
    svc->bindings = next;
    svc->n = nc.n_bindings;
    next = NULL;
    pthread_mutex_unlock(&svc->mu);

    drain(svc, retired, n_retired, 0);
    destroy_all(retired, n_retired);
    unshare_seen(fresh, n_fresh);

    api_changed = nc.api_port != svc->api_port ||
                  nc.api_enable_request != svc->api_enable_request ||
                  strcmp(nc.api_address ? nc.api_address : "0.0.0.0",
                         svc->api_address ? svc->api_address : "") != 0;
    if (api_changed) {
        api_stop_now(svc);
        if (svc->api_port > 0 && nc.api_port <= 0) {
            log_info(NULL, "api: stopped (apiPort is 0)");
        }
        api_start_for(svc, &nc);
    }
    if (svc->cli_log_level < 0) {
        /* As a fresh start would: the config's level, else the default. */
        enum log_level level = nc.log_level >= 0 ? (enum log_level)nc.log_level : LOG_LEVEL_INFO;
        if (level != log_get_level()) {
            log_info(NULL, "reload: log level %s", log_level_name(level));
            log_set_level(level);
        }
    }
    log_info(NULL, "reloaded: %zu binding%s (%zu kept, %zu started, %zu stopped)", nc.n_bindings,
             nc.n_bindings == 1 ? "" : "s", kept, n_fresh, n_retired);
out:
    free(old);
    free(next);
    free(fresh);
    free(retired);
    free(paired);
    config_free(&nc);
}

/* ---- the engine thread and the main loop ------------------------------- */

static void *engine_main(void *arg)
{
    struct binding_service *svc = arg;

    if (loop_run(svc->loop) < 0) {
        log_error(NULL, "engine loop failed: %s", strerror(errno));
    }
    return NULL;
}

static void teardown(struct binding_service *svc)
{
    api_stop_now(svc);
    destroy_all(svc->bindings, svc->n);
    free(svc->bindings);
    svc->bindings = NULL;
    svc->n = 0;
    if (svc->engine_started) {
        loop_stop(svc->loop);
        pthread_join(svc->engine, NULL);
    }
    loop_destroy(svc->loop);
    metrics_registry_free(svc->metrics);
    free(svc->api_address);
    pthread_mutex_destroy(&svc->mu);
}

static int start(struct binding_service *svc, const struct config *c)
{
    char err[1024];
    size_t i;

    svc->metrics = metrics_registry_new();
    svc->loop = loop_create(err, sizeof(err));
    if (!svc->metrics || !svc->loop) {
        log_error(NULL, "cannot start: %s", svc->loop ? "out of memory" : err);
        return -1;
    }
    if (pthread_create(&svc->engine, NULL, engine_main, svc) != 0) {
        log_error(NULL, "cannot start the engine thread");
        return -1;
    }
    svc->engine_started = 1;
    svc->bindings = calloc(c->n_bindings + 1, sizeof(*svc->bindings));
    if (!svc->bindings) {
        log_error(NULL, "cannot start: out of memory");
        return -1;
    }
    for (i = 0; i < c->n_bindings; i++) {
        /* Fail fast: the config was valid, so this is the environment. */
        struct binding *b =
            binding_create(&c->bindings[i], svc->loop, svc->metrics, NULL, err, sizeof(err));
        if (!b) {
            log_error(NULL, "cannot start: %s", err);
            return -1;
        }
        pthread_mutex_lock(&svc->mu);
        svc->bindings[svc->n++] = b;
        pthread_mutex_unlock(&svc->mu);
    }
    return api_start_for(svc, c);
}

int binding_service_run(const struct config *c, const char *config_path, int cli_log_level,
                        const struct binding_service_http *http)
{
    struct binding_service svc;
    size_t pending;
    int sig;

    memset(&svc, 0, sizeof(svc));
    pthread_mutex_init(&svc.mu, NULL);
    svc.config_path = config_path;
    svc.cli_log_level = cli_log_level;
    svc.http = http;
    /* Before any thread exists (gRPC, libcurl, libmicrohttpd): they all
     * inherit the mask, so only this thread receives these. */
    sigemptyset(&svc.sigs);
    sigaddset(&svc.sigs, SIGINT);
    sigaddset(&svc.sigs, SIGTERM);
    sigaddset(&svc.sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &svc.sigs, NULL);

    log_info(NULL, "kubemq-kinesis %s starting: %zu binding%s", KK_VERSION, c->n_bindings,
             c->n_bindings == 1 ? "" : "s");
    if (start(&svc, c) < 0) {
        teardown(&svc);
        return 1;
    }
    log_info(NULL, "running: %zu binding%s", svc.n, svc.n == 1 ? "" : "s");

    for (;;) {
        if (svc.term_pending) {
            sig = svc.term_pending;
        } else if (svc.hup_pending) {
            svc.hup_pending = 0; /* the file changed again while reloading */
            sig = SIGHUP;
        } else if (sigwait(&svc.sigs, &sig) != 0) {
            continue;
        }
        if (sig == SIGHUP) {
            reload(&svc);
            continue;
        }
        break;
    }
    pthread_mutex_lock(&svc.mu);
    svc.stopping = 1;
    pthread_mutex_unlock(&svc.mu);
    pending = pending_of(svc.bindings, svc.n);
    log_info(NULL, "%s received: stopping (%zu request%s in flight)", signame(sig), pending,
             pending == 1 ? "" : "s");
    drain(&svc, svc.bindings, svc.n, 1);
    teardown(&svc);
    log_info(NULL, "stopped");
    return 0;
}
