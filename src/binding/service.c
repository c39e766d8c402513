/* service.c - the daemon on its loop: bindings, API, signals, drain, reload.
 *
 * One thread runs the loop; signals arrive through a signalfd on it.
 * Draining and reloading take time (requests finish, new subscriptions
 * open), so they are phases driven by a ticking timer, never waits: the
 * loop keeps serving everything else meanwhile. */
#include "binding/service.h"

#include "base/errs.h"
#include "base/filewatch.h"
#include "base/log.h"
#include "base/version.h"
#include "binding/binding.h"
#include "source/source_seen.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

/* New bindings get this long to subscribe before the old ones stop. */
#define RELOAD_READY_WAIT_MS 10000
/* Our side sees a subscription open when the Subscribe is written; the
 * broker routes to it a moment later. Until then requests still go only to
 * the old binding, which must not close under them. */
#define RELOAD_SETTLE_MS 300
/* How often a drain or a reload looks again. */
#define TICK_MS 20
/* At exit, replies still being written get this long to go out. */
#define EXIT_FLUSH_MS 5000

enum phase {
    PHASE_RUNNING,
    PHASE_RELOAD_WAIT,  /* fresh bindings subscribing */
    PHASE_RELOAD_DRAIN, /* retired bindings finishing */
    PHASE_STOP_DRAIN,   /* shutdown: every binding finishing */
    PHASE_STOPPED,
};

/* A reload between its start and its end. */
struct reload {
    struct config nc;
    int have_nc;
    struct binding **next, **old, **retired, **fresh;
    char *paired;
    size_t n_old, n_retired, n_fresh, kept, replaced;
    const char *why; /* what started it: "SIGHUP", "config file changed" */
    uint64_t deadline, settled;
};

struct binding_service {
    struct loop *loop;
    struct metrics_registry *metrics;
    struct binding_metrics_set *binding_metrics;
    const char *config_path;
    int cli_log_level; /* -1: logLevel of the config (re-read on reload) */
    const struct binding_service_http *http;
    sigset_t sigs;
    int sigfd;

    struct binding **bindings;
    size_t n;
    int stopping;

    void *api;
    char *api_address;
    long long api_port;
    int api_enable_request;

    enum phase phase;
    struct loop_timer tick;
    struct reload rl;
    /* The drain under way (shutdown: every binding; reload: the retired). */
    struct binding **draining;
    size_t n_draining;
    long long drain_max_ms;
    uint64_t drain_deadline;

    int term_pending;  /* SIGTERM/SIGINT seen during a reload */
    int hup_pending;   /* SIGHUP seen during a reload: read the config again */
    int watch_pending; /* the file changed during a reload: the same */

    /* The config file's watch (watchConfig). */
    struct filewatch *watch;
    long long watch_debounce_ms;
};

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

    if (svc->stopping) {
        buf_append_str(why, "stopping");
        return 0;
    }
    for (i = 0; i < svc->n; i++) {
        if (!binding_ready(svc->bindings[i], why)) {
            return 0;
        }
    }
    return 1;
}

int binding_service_bindings_json(struct binding_service *svc, struct buf *out)
{
    size_t i;
    int rc = buf_append_char(out, '[');

    for (i = 0; rc == 0 && i < svc->n; i++) {
        if (i > 0) {
            rc = buf_append_char(out, ',');
        }
        if (rc == 0) {
            rc = binding_status_json(svc->bindings[i], out);
        }
    }
    return rc == 0 ? buf_append_char(out, ']') : -1;
}

int binding_service_request(struct binding_service *svc, const char *name, const char *payload,
                            size_t len, binding_reply_fn done, void *ctx, char *err, size_t errlen)
{
    size_t i;

    for (i = 0; i < svc->n; i++) {
        if (strcmp(binding_name(svc->bindings[i]), name) == 0) {
            return binding_request(svc->bindings[i], payload, len, done, ctx, err, errlen);
        }
    }
    return BINDING_SERVICE_NO_BINDING;
}

struct metrics_registry *binding_service_metrics(struct binding_service *svc)
{
    return svc->metrics;
}

int binding_service_stats_json(struct binding_service *svc, struct buf *out)
{
    return binding_metrics_stats_json(svc->binding_metrics, out);
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
    svc->api = svc->http->start(svc, svc->loop, &o, err, sizeof(err));
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

static void tick(void *arg);

/* Stop intake on bs; the tick then waits until every taken request is
 * answered or the largest drain timeout passed. */
static void drain_begin(struct binding_service *svc, struct binding **bs, size_t n,
                        enum phase phase)
{
    size_t i, pending;

    svc->draining = bs;
    svc->n_draining = n;
    svc->drain_max_ms = 0;
    for (i = 0; i < n; i++) {
        binding_stop_intake(bs[i]);
        if (binding_drain_timeout_ms(bs[i]) > svc->drain_max_ms) {
            svc->drain_max_ms = binding_drain_timeout_ms(bs[i]);
        }
    }
    pending = pending_of(bs, n);
    if (pending > 0) {
        log_info(NULL, "draining: %zu request%s in flight (waiting up to %lld s)", pending,
                 pending == 1 ? "" : "s", svc->drain_max_ms / 1000);
    }
    svc->drain_deadline = loop_now_ms(svc->loop) + (uint64_t)svc->drain_max_ms;
    svc->phase = phase;
    loop_timer_start(svc->loop, &svc->tick, 0, tick, svc);
}

/* The first binding of bs still writing its last checkpoint, or NULL. */
static struct binding *flushing_of(struct binding **bs, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (binding_flushing(bs[i])) {
            return bs[i];
        }
    }
    return NULL;
}

/* 1 when the drain under way is over: every taken request answered, and
 * then the checkpoints that records it written. */
static int drain_done(struct binding_service *svc)
{
    size_t pending = pending_of(svc->draining, svc->n_draining);
    struct binding *flushing = pending ? NULL : flushing_of(svc->draining, svc->n_draining);

    if (pending == 0 && !flushing) {
        return 1;
    }
    if (loop_now_ms(svc->loop) >= svc->drain_deadline) {
        if (pending) {
            log_warn(NULL,
                     "drain timeout after %lld s: %zu request%s still in flight are answered "
                     "with an error",
                     svc->drain_max_ms / 1000, pending, pending == 1 ? "" : "s");
        } else {
            log_warn(NULL, "drain timeout after %lld s: binding %s is still writing its checkpoint",
                     svc->drain_max_ms / 1000, binding_name(flushing));
        }
        return 1;
    }
    return 0;
}

/* ---- bindings ----------------------------------------------------------- */

static void destroy_all(struct binding **bs, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        binding_destroy(bs[i]);
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

/* ---- shutdown ------------------------------------------------------------ */

static void teardown(struct binding_service *svc)
{
    filewatch_destroy(svc->watch);
    svc->watch = NULL;
    if (svc->loop) {
        loop_timer_stop(svc->loop, &svc->tick);
    }
    api_stop_now(svc);
    destroy_all(svc->bindings, svc->n);
    free(svc->bindings);
    svc->bindings = NULL;
    svc->n = 0;
}

static void shutdown_begin(struct binding_service *svc, int sig)
{
    size_t pending = pending_of(svc->bindings, svc->n);

    svc->stopping = 1;
    log_info(NULL, "%s received: stopping (%zu request%s in flight)", signame(sig), pending,
             pending == 1 ? "" : "s");
    drain_begin(svc, svc->bindings, svc->n, PHASE_STOP_DRAIN);
}

static void shutdown_end(struct binding_service *svc)
{
    teardown(svc);
    svc->phase = PHASE_STOPPED;
    log_info(NULL, "stopped");
    loop_stop(svc->loop);
}

/* ---- the config file's watch --------------------------------------------- */

static void reload_begin(struct binding_service *svc, const char *why);

static void on_config_file(void *ctx, enum filewatch_event ev)
{
    struct binding_service *svc = ctx;

    if (ev == FILEWATCH_GONE) {
        log_warn(NULL, "config file %s is gone; the running config stays (its return is a change)",
                 svc->config_path ? svc->config_path : "config.yaml");
        return;
    }
    switch (svc->phase) {
    case PHASE_RUNNING:
        reload_begin(svc, "config file changed");
        break;
    case PHASE_RELOAD_WAIT:
    case PHASE_RELOAD_DRAIN:
        svc->watch_pending = 1;
        log_info(NULL, "config file changed during the reload: reading it again after it");
        break;
    default:
        break; /* stopping */
    }
}

/* Start, keep or stop the watch as c says. The content just read counts as seen. */
static void watch_setup(struct binding_service *svc, const struct config *c)
{
    char err[512];

    if (!c->from_file || !c->watch_config) {
        if (svc->watch) {
            log_info(NULL, "config file: no longer watched (watchConfig is false)");
        } else if (!c->from_file) {
            log_debug(NULL, "config from the CONFIG variable: no file to watch");
        } else {
            log_debug(NULL, "config file: not watched (watchConfig is false)");
        }
        filewatch_destroy(svc->watch);
        svc->watch = NULL;
        return;
    }
    if (svc->watch && svc->watch_debounce_ms == c->config_watch_debounce_ms) {
        filewatch_rebase(svc->watch);
        return;
    }
    filewatch_destroy(svc->watch);
    svc->watch_debounce_ms = c->config_watch_debounce_ms;
    svc->watch = filewatch_create(svc->loop, c->source_path, (uint64_t)c->config_watch_debounce_ms,
                                  on_config_file, svc, err, sizeof(err));
    if (!svc->watch) {
        log_warn(NULL, "config file %s: not watched: %s; reload with SIGHUP", c->source_path, err);
        return;
    }
    log_info(NULL, "config file %s: watched for changes (reloads by itself)", c->source_path);
}

/* ---- reload ------------------------------------------------------------- */

static void reload_free(struct reload *rl)
{
    free(rl->old);
    free(rl->next);
    free(rl->fresh);
    free(rl->retired);
    free(rl->paired);
    if (rl->have_nc) {
        config_free(&rl->nc);
    }
    memset(rl, 0, sizeof(*rl));
}

/* After a reload: the signals and changes that came meanwhile. */
static void after_reload(struct binding_service *svc)
{
    svc->phase = PHASE_RUNNING;
    if (svc->term_pending) {
        shutdown_begin(svc, svc->term_pending);
    } else if (svc->hup_pending) {
        svc->hup_pending = 0;
        svc->watch_pending = 0; /* that reload reads the file too */
        reload_begin(svc, "SIGHUP");
    } else if (svc->watch_pending) {
        svc->watch_pending = 0;
        reload_begin(svc, "config file changed");
    }
}

static void reload_begin(struct binding_service *svc, const char *why)
{
    struct reload *rl = &svc->rl;
    struct errs errs;
    struct source_seen *seen;
    size_t i, p;
    char err[1024];

    log_info(NULL, "%s%s: reloading the config from %s", why,
             strcmp(why, "SIGHUP") == 0 ? " received" : "",
             svc->config_path ? svc->config_path : "the CONFIG variable or config.yaml");
    memset(rl, 0, sizeof(*rl));
    rl->why = why;
    errs_init(&errs);
    if (config_load(&rl->nc, svc->config_path, &errs) < 0) {
        if (svc->watch) {
            filewatch_rebase(svc->watch); /* this content was tried: only a new one retries */
        }
        log_errs(&errs, "reload: ");
        log_error(NULL, "reload failed (%d problem%s): the running config stays", errs.count,
                  errs.count == 1 ? "" : "s");
        errs_free(&errs);
        after_reload(svc);
        return;
    }
    errs_free(&errs);
    rl->have_nc = 1;
    if (svc->watch) {
        filewatch_rebase(svc->watch); /* what was just read is no change to reload for */
    }

    rl->n_old = svc->n;
    rl->old = calloc(rl->n_old + 1, sizeof(*rl->old));
    rl->next = calloc(rl->nc.n_bindings + 1, sizeof(*rl->next));
    rl->fresh = calloc(rl->nc.n_bindings + 1, sizeof(*rl->fresh));
    rl->retired = calloc(rl->n_old + 1, sizeof(*rl->retired));
    rl->paired = calloc(rl->n_old + 1, 1);
    if (!rl->old || !rl->next || !rl->fresh || !rl->retired || !rl->paired) {
        log_error(NULL, "reload failed: out of memory; the running config stays");
        goto fail;
    }
    memcpy(rl->old, svc->bindings, rl->n_old * sizeof(*rl->old));
    /* Kept first, so that only bindings on their way out are paired below. */
    for (i = 0; i < rl->nc.n_bindings; i++) {
        struct binding *b = find_same(rl->old, rl->n_old, &rl->nc.bindings[i]);

        if (b) {
            size_t j;
            for (j = 0; j < rl->n_old; j++) {
                if (rl->old[j] == b) {
                    rl->old[j] = NULL; /* kept: not retired */
                }
            }
            rl->next[i] = b;
            rl->kept++;
        }
    }
    for (i = 0; i < rl->nc.n_bindings; i++) {
        const struct config_binding *cb = &rl->nc.bindings[i];

        if (rl->next[i]) {
            continue;
        }
        p = predecessor(rl->old, rl->n_old, rl->paired, &rl->nc, cb);
        if (p < rl->n_old && strcmp(binding_name(rl->old[p]), cb->name) == 0) {
            log_info(cb->name, "reload: binding %s is changed: starting it anew", cb->name);
            rl->replaced++;
        } else {
            log_info(cb->name, "reload: binding %s is new: starting it", cb->name);
        }
        /* Old and new both subscribed for a moment: on a channel without a
         * group each gets every request, and only one may run it. Out of
         * memory: no sharing (the old way). */
        seen = p < rl->n_old ? source_seen_create() : NULL;
        if (seen) {
            binding_share_seen(rl->old[p], seen);
            rl->paired[p] = 1;
        }
        rl->next[i] = binding_create(cb, svc->loop, svc->binding_metrics, seen, err, sizeof(err));
        source_seen_unref(seen);
        if (!rl->next[i]) {
            log_error(NULL, "reload: %s", err);
            log_error(NULL, "reload failed: the running config stays");
            destroy_all(rl->fresh, rl->n_fresh);
            unshare_seen(rl->old, rl->n_old);
            goto fail;
        }
        rl->fresh[rl->n_fresh++] = rl->next[i];
    }
    for (i = 0; i < rl->n_old; i++) {
        if (rl->old[i]) {
            rl->retired[rl->n_retired++] = rl->old[i];
            log_info(binding_name(rl->old[i]), "reload: binding %s is %s: draining the old one",
                     binding_name(rl->old[i]),
                     config_find_binding(&rl->nc, binding_name(rl->old[i])) ? "replaced"
                                                                            : "removed");
        }
    }
    /* Wait (bounded) for the fresh bindings to subscribe, so a channel
     * taken over from an old binding is never left without a subscriber. */
    rl->deadline = loop_now_ms(svc->loop) + RELOAD_READY_WAIT_MS;
    rl->settled = 0;
    svc->phase = PHASE_RELOAD_WAIT;
    loop_timer_start(svc->loop, &svc->tick, 0, tick, svc);
    return;
fail:
    reload_free(rl);
    after_reload(svc);
}

/* 1 when the fresh bindings are subscribed (and settled) or waited for
 * long enough. */
static int reload_ready(struct binding_service *svc)
{
    struct reload *rl = &svc->rl;
    uint64_t now = loop_now_ms(svc->loop);
    size_t i;

    for (i = 0; i < rl->n_fresh && binding_ready(rl->fresh[i], NULL); i++) {
    }
    if (i == rl->n_fresh) {
        if (!rl->settled) {
            rl->settled = now + (rl->n_fresh ? RELOAD_SETTLE_MS : 0);
        }
        return now >= rl->settled;
    }
    if (now >= rl->deadline) {
        log_warn(NULL, "reload: binding %s is not subscribed yet; continuing",
                 binding_name(rl->fresh[i]));
        return 1;
    }
    return 0;
}

static void reload_switch(struct binding_service *svc)
{
    struct reload *rl = &svc->rl;

    free(svc->bindings);
    svc->bindings = rl->next;
    svc->n = rl->nc.n_bindings;
    rl->next = NULL;
    drain_begin(svc, rl->retired, rl->n_retired, PHASE_RELOAD_DRAIN);
}

static void reload_end(struct binding_service *svc)
{
    struct reload *rl = &svc->rl;
    struct config *nc = &rl->nc;
    int api_changed;

    destroy_all(rl->retired, rl->n_retired);
    unshare_seen(rl->fresh, rl->n_fresh);
    svc->draining = NULL;
    svc->n_draining = 0;

    api_changed = nc->api_port != svc->api_port ||
                  nc->api_enable_request != svc->api_enable_request ||
                  strcmp(nc->api_address ? nc->api_address : "0.0.0.0",
                         svc->api_address ? svc->api_address : "") != 0;
    if (api_changed) {
        api_stop_now(svc);
        if (svc->api_port > 0 && nc->api_port <= 0) {
            log_info(NULL, "api: stopped (apiPort is 0)");
        }
        api_start_for(svc, nc);
    }
    if (svc->cli_log_level < 0) {
        /* As a fresh start would: the config's level, else the default. */
        enum log_level level = nc->log_level >= 0 ? (enum log_level)nc->log_level : LOG_LEVEL_INFO;
        if (level != log_get_level()) {
            log_info(NULL, "reload: log level %s", log_level_name(level));
            log_set_level(level);
        }
    }
    watch_setup(svc, nc);
    log_info(NULL,
             "reloaded: %zu binding%s (%zu kept, %zu started, %zu replaced, %zu stopped) after %s",
             nc->n_bindings, nc->n_bindings == 1 ? "" : "s", rl->kept, rl->n_fresh - rl->replaced,
             rl->replaced, rl->n_retired - rl->replaced, rl->why);
    reload_free(rl);
    after_reload(svc);
}

/* ---- the phases' tick and the signals ------------------------------------ */

static void tick(void *arg)
{
    struct binding_service *svc = arg;

    switch (svc->phase) {
    case PHASE_RELOAD_WAIT:
        if (reload_ready(svc)) {
            reload_switch(svc);
            return;
        }
        break;
    case PHASE_RELOAD_DRAIN:
        if (drain_done(svc)) {
            reload_end(svc);
            return;
        }
        break;
    case PHASE_STOP_DRAIN:
        if (drain_done(svc)) {
            shutdown_end(svc);
            return;
        }
        break;
    default:
        return;
    }
    loop_timer_start(svc->loop, &svc->tick, TICK_MS, tick, svc);
}

static void on_signal(struct binding_service *svc, int sig)
{
    int reloading = svc->phase == PHASE_RELOAD_WAIT || svc->phase == PHASE_RELOAD_DRAIN;

    if (sig == SIGTERM || sig == SIGINT) {
        if (svc->phase == PHASE_STOP_DRAIN) {
            size_t pending = pending_of(svc->bindings, svc->n);

            log_error(NULL, "second %s while draining: exiting now with %zu request%s in flight",
                      signame(sig), pending, pending == 1 ? "" : "s");
            _exit(1);
        }
        if (reloading) {
            svc->term_pending = sig;
            log_info(NULL, "%s received during the reload: stopping after it", signame(sig));
            return;
        }
        if (svc->phase == PHASE_RUNNING) {
            shutdown_begin(svc, sig);
        }
        return;
    }
    if (sig == SIGHUP) {
        if (svc->phase == PHASE_STOP_DRAIN) {
            log_warn(NULL, "SIGHUP ignored while draining");
        } else if (reloading) {
            svc->hup_pending = 1;
            log_info(NULL, "SIGHUP received during the reload: reading the config again after it");
        } else if (svc->phase == PHASE_RUNNING) {
            reload_begin(svc, "SIGHUP");
        }
    }
}

static void on_sigfd(void *arg, int fd, unsigned events)
{
    struct binding_service *svc = arg;
    struct signalfd_siginfo si;

    while (svc->phase != PHASE_STOPPED && read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        on_signal(svc, (int)si.ssi_signo);
    }
}

/* ---- start and run -------------------------------------------------------- */

static int start(struct binding_service *svc, const struct config *c)
{
    char err[1024];
    size_t i;

    svc->metrics = metrics_registry_new();
    svc->binding_metrics = svc->metrics ? binding_metrics_set_new(svc->metrics) : NULL;
    svc->loop = loop_create(err, sizeof(err));
    if (!svc->binding_metrics || !svc->loop) {
        log_error(NULL, "cannot start: %s", svc->loop ? "out of memory" : err);
        return -1;
    }
    loop_timer_init(&svc->tick);
    svc->sigfd = signalfd(-1, &svc->sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (svc->sigfd < 0 || loop_io_set(svc->loop, svc->sigfd, LOOP_READ, on_sigfd, svc) < 0) {
        log_error(NULL, "cannot start: signalfd: %s", strerror(errno));
        return -1;
    }
    svc->bindings = calloc(c->n_bindings + 1, sizeof(*svc->bindings));
    if (!svc->bindings) {
        log_error(NULL, "cannot start: out of memory");
        return -1;
    }
    for (i = 0; i < c->n_bindings; i++) {
        /* Fail fast: the config was valid, so this is the environment. */
        struct binding *b = binding_create(&c->bindings[i], svc->loop, svc->binding_metrics, NULL,
                                           err, sizeof(err));
        if (!b) {
            log_error(NULL, "cannot start: %s", err);
            return -1;
        }
        svc->bindings[svc->n++] = b;
    }
    watch_setup(svc, c);
    return api_start_for(svc, c);
}

int binding_service_run(const struct config *c, const char *config_path, int cli_log_level,
                        const struct binding_service_http *http)
{
    struct binding_service svc;
    int rc = 0;

    memset(&svc, 0, sizeof(svc));
    svc.sigfd = -1;
    svc.config_path = config_path;
    svc.cli_log_level = cli_log_level;
    svc.http = http;
    /* Before any library starts a thread: they all inherit the mask, so
     * the signals reach only the signalfd. */
    sigemptyset(&svc.sigs);
    sigaddset(&svc.sigs, SIGINT);
    sigaddset(&svc.sigs, SIGTERM);
    sigaddset(&svc.sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &svc.sigs, NULL);

    log_info(NULL, "kubemq-kinesis %s starting: %zu binding%s", KK_VERSION, c->n_bindings,
             c->n_bindings == 1 ? "" : "s");
    if (start(&svc, c) < 0) {
        teardown(&svc);
        rc = 1;
        goto out;
    }
    log_info(NULL, "running: %zu binding%s", svc.n, svc.n == 1 ? "" : "s");
    svc.phase = PHASE_RUNNING;
    if (loop_run(svc.loop) < 0) {
        log_error(NULL, "event loop failed: %s", strerror(errno));
        teardown(&svc);
        rc = 1;
    }
out:
    reload_free(&svc.rl);
    if (svc.sigfd >= 0) {
        if (svc.loop) {
            loop_io_set(svc.loop, svc.sigfd, 0, NULL, NULL);
        }
        close(svc.sigfd);
    }
    /* What clients still had to write (replies of the drain) goes out. */
    if (svc.loop) {
        loop_run_until_idle(svc.loop, EXIT_FLUSH_MS);
    }
    loop_destroy(svc.loop);
    binding_metrics_set_free(svc.binding_metrics);
    metrics_registry_free(svc.metrics);
    free(svc.api_address);
    return rc;
}
