/* kubemq_client.c - channel, completion-queue thread, timers and shutdown of a KubeMQ client. */
#include "kubemq/kubemq_internal.h"

#include "base/buf.h"
#include "base/log.h"

#include <errno.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define M_MAX_PEM          (1024 * 1024)
#define CQ_POLL_MS         100 /* timer granularity of the client's thread */
#define WATCH_DEADLINE_MS  60000
#define KEEPALIVE_TIME_MS  10000
#define KEEPALIVE_WAIT_MS  5000
#define RECONNECT_FIRST_MS 500
#define DEFAULT_CAP_MS     5000

static const char *const conn_names[] = {"IDLE", "CONNECTING", "READY", "TRANSIENT_FAILURE",
                                         "SHUTDOWN"};

static const char *conn_name(grpc_connectivity_state st)
{
    return (int)st >= 0 && (int)st <= 4 ? conn_names[st] : "?";
}

void kubemq_client_opts_init(struct kubemq_client_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->auto_reconnect = 1;
}

const char *kubemq_client_address(const struct kubemq_client *c)
{
    return c->address;
}

/* gRPC's own error lines, in our log format. */
static void grpc_log_hook(gpr_log_func_args *args)
{
    if (args->severity == GPR_LOG_SEVERITY_ERROR) {
        log_warn(NULL, "grpc: %s", args->message);
    } else {
        log_debug(NULL, "grpc: %s", args->message);
    }
}

static pthread_once_t grpc_log_once = PTHREAD_ONCE_INIT;

static void grpc_log_setup(void)
{
    gpr_set_log_function(grpc_log_hook);
    gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR);
}

static int read_pem(const char *what, const char *path, char **out, char *err, size_t errlen)
{
    struct buf b = BUF_INIT(M_MAX_PEM);
    char why[512];
    size_t n;

    *out = NULL;
    if (!path || !path[0]) {
        return 0;
    }
    if (buf_append_file(&b, path, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: %s", what, why);
        buf_free(&b);
        return -1;
    }
    if (b.len == 0) {
        snprintf(err, errlen, "%s: %s is empty", what, path);
        buf_free(&b);
        return -1;
    }
    *out = buf_detach(&b, &n);
    return 0;
}

static grpc_channel_credentials *make_creds(const struct kubemq_client_opts *o, char *err,
                                            size_t errlen)
{
    char *ca = NULL, *cert = NULL, *key = NULL;
    grpc_ssl_pem_key_cert_pair pair;
    grpc_channel_credentials *creds = NULL;

    if (!o->tls) {
        return grpc_insecure_credentials_create();
    }
    if ((o->cert_file && o->cert_file[0]) != (o->key_file && o->key_file[0])) {
        snprintf(err, errlen, "tls: cert_file and key_file go together");
        return NULL;
    }
    if (read_pem("tls: ca_file", o->ca_file, &ca, err, errlen) < 0 ||
        read_pem("tls: cert_file", o->cert_file, &cert, err, errlen) < 0 ||
        read_pem("tls: key_file", o->key_file, &key, err, errlen) < 0) {
        goto done;
    }
    pair.private_key = key;
    pair.cert_chain = cert;
    creds = grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL);
    if (!creds) {
        snprintf(err, errlen, "tls: cannot create the credentials");
    }
done:
    free(ca);
    free(cert);
    if (key) {
        explicit_bzero(key, strlen(key)); /* a plain memset before free may be optimised away */
    }
    free(key);
    return creds;
}

static void arg_int(grpc_arg *a, const char *key, int v)
{
    a->type = GRPC_ARG_INTEGER;
    a->key = (char *)key;
    a->value.integer = v;
}

static void arm_watch(struct kubemq_client *c)
{
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_millis(WATCH_DEADLINE_MS, GPR_TIMESPAN));

    grpc_channel_watch_connectivity_state(c->channel, c->conn_state, deadline, c->cq,
                                          &c->tag_watch);
    c->watch_armed = 1;
}

/* Client's thread. */
static void watch_done(struct kk_tag *t, int ok)
{
    struct kubemq_client *c = KK_CONTAINER_OF(t, struct kubemq_client, tag_watch);
    grpc_connectivity_state st;

    pthread_mutex_lock(&c->mu);
    c->watch_armed = 0;
    if (!c->channel_destroyed) {
        st = ok ? grpc_channel_check_connectivity_state(c->channel, 0) : c->conn_state;
        if (st != c->conn_state) {
            log_debug(c->log_name, "kubemq: channel to %s: %s -> %s", c->address,
                      conn_name(c->conn_state), conn_name(st));
            if (st == GRPC_CHANNEL_TRANSIENT_FAILURE && !c->conn_failed && !c->stopping) {
                log_warn(c->log_name, "kubemq: cannot connect to %s; retrying", c->address);
                c->conn_failed = 1;
            } else if (st == GRPC_CHANNEL_READY) {
                c->conn_failed = 0;
            }
            c->conn_state = st;
        }
        if (!c->stopping) {
            arm_watch(c);
        }
    }
    pthread_mutex_unlock(&c->mu);
}

static int all_idle(const struct kubemq_client *c)
{
    const struct kubemq_subscription *s;

    for (s = c->subs; s; s = s->next) {
        if (!kk_sub_idle(s)) {
            return 0;
        }
    }
    return c->calls_inflight == 0 && !c->ping_inflight;
}

/* mu held, stopping: once nothing uses the channel, take it for destruction
 * (outside mu), which completes the connectivity watch (state SHUTDOWN). */
static grpc_channel *channel_to_destroy(struct kubemq_client *c)
{
    if (c->channel_destroyed || !all_idle(c)) {
        return NULL;
    }
    c->channel_destroyed = 1;
    return c->channel;
}

/* Client's thread, after every event and every poll. */
static void tick(struct kubemq_client *c)
{
    struct kubemq_subscription *s;
    grpc_channel *ch = NULL;
    uint64_t now;

    pthread_mutex_lock(&c->mu);
    now = kk_now_ms(); /* after the lock: last_activity_ms is never ahead of it */
    if (!c->stopping) {
        for (s = c->subs; s; s = s->next) {
            if (s->resubscribe_scheduled && now >= s->resubscribe_at && !s->st.call) {
                kk_sub_start_stream(s);
            }
        }
        if (c->ping_interval_ms > 0 && !c->ping_inflight &&
            now - c->last_activity_ms >= (uint64_t)c->ping_interval_ms) {
            kk_ping_start(c);
        }
    } else {
        ch = channel_to_destroy(c);
        if (c->channel_destroyed && !ch && !c->watch_armed && !c->cq_shutdown) {
            c->cq_shutdown = 1;
            grpc_completion_queue_shutdown(c->cq);
        }
    }
    pthread_mutex_unlock(&c->mu);
    if (ch) {
        grpc_channel_destroy(ch);
    }
}

static void *cq_main(void *arg)
{
    struct kubemq_client *c = arg;
    grpc_event ev;

    for (;;) {
        ev =
            grpc_completion_queue_next(c->cq,
                                       gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                    gpr_time_from_millis(CQ_POLL_MS, GPR_TIMESPAN)),
                                       NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            break;
        }
        if (ev.type == GRPC_OP_COMPLETE) {
            struct kk_tag *t = ev.tag;

            t->done(t, ev.success);
        }
        tick(c);
    }
    return NULL;
}

struct kubemq_client *kubemq_client_create(const struct kubemq_client_opts *o, char *err,
                                           size_t errlen)
{
    struct kubemq_client *c;
    grpc_channel_credentials *creds;
    grpc_arg args[12];
    grpc_channel_args cargs;
    sigset_t block, old;
    size_t n = 0;
    int cap_ms;

    if (!o->address || !o->address[0]) {
        snprintf(err, errlen, "kubemq address is empty");
        return NULL;
    }
    if (!o->client_id || !o->client_id[0]) {
        snprintf(err, errlen, "kubemq client_id is empty");
        return NULL;
    }
    if (o->reconnect_interval_seconds < 0 || o->reconnect_interval_seconds > 86400) {
        snprintf(err, errlen, "reconnect interval must be between 0 and 86400 seconds");
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    c->address = kk_strdup(o->address);
    c->client_id = kk_strdup(o->client_id);
    c->log_name = o->log_name ? kk_strdup(o->log_name) : NULL;
    if (!c->address || !c->client_id || (o->log_name && !c->log_name)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    c->auto_reconnect = o->auto_reconnect ? 1 : 0;
    c->max_reconnects = o->max_reconnects > 0 ? o->max_reconnects : 0;
    cap_ms =
        o->reconnect_interval_seconds > 0 ? o->reconnect_interval_seconds * 1000 : DEFAULT_CAP_MS;
    c->backoff_cap_ms = (uint64_t)cap_ms;
    c->ping_interval_ms = o->ping_interval_ms == 0 ? KUBEMQ_PING_INTERVAL_MS : o->ping_interval_ms;
    c->last_activity_ms = kk_now_ms();
    c->tag_watch.done = watch_done;

    /* gRPC's threads (and ours) inherit this mask: signals go to the
     * thread that waits for them. */
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);

    pthread_once(&grpc_log_once, grpc_log_setup);
    grpc_init();
    c->grpc_inited = 1;
    if (o->auth_token && o->auth_token[0]) {
        c->auth_md.key = grpc_slice_from_static_string("authorization");
        c->auth_md.value = grpc_slice_from_copied_string(o->auth_token);
        c->has_auth = 1;
    }
    creds = make_creds(o, err, errlen);
    if (!creds) {
        goto fail_mask;
    }
    arg_int(&args[n++], GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, KUBEMQ_MAX_MESSAGE);
    arg_int(&args[n++], GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, KUBEMQ_MAX_MESSAGE);
    arg_int(&args[n++], GRPC_ARG_KEEPALIVE_TIME_MS, KEEPALIVE_TIME_MS);
    arg_int(&args[n++], GRPC_ARG_KEEPALIVE_TIMEOUT_MS, KEEPALIVE_WAIT_MS);
    arg_int(&args[n++], GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    /* The default (2) silently stops keepalive on an idle connection. */
    arg_int(&args[n++], GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    arg_int(&args[n++], GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, RECONNECT_FIRST_MS);
    arg_int(&args[n++], GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, RECONNECT_FIRST_MS);
    arg_int(&args[n++], GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, cap_ms);
    /* One client = one connection: no sharing of subchannels between clients. */
    arg_int(&args[n++], GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args[n].type = GRPC_ARG_STRING;
    args[n].key = (char *)GRPC_ARG_PRIMARY_USER_AGENT_STRING;
    args[n++].value.string = (char *)"kubemq-kinesis/" KK_VERSION;
    cargs.num_args = n;
    cargs.args = args;
    c->channel = grpc_channel_create(c->address, creds, &cargs);
    grpc_channel_credentials_release(creds);
    if (!c->channel) {
        snprintf(err, errlen, "cannot create a gRPC channel to %s", c->address);
        goto fail_mask;
    }
    c->cq = grpc_completion_queue_create_for_next(NULL);
    c->conn_state = grpc_channel_check_connectivity_state(c->channel, 1);
    arm_watch(c);
    if (pthread_create(&c->thread, NULL, cq_main, c) != 0) {
        snprintf(err, errlen, "cannot start the kubemq client thread");
        goto fail_mask;
    }
    c->thread_started = 1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return c;

fail_mask:
    pthread_sigmask(SIG_SETMASK, &old, NULL);
fail:
    kubemq_client_destroy(c);
    return NULL;
}

/* Without the thread: run the shutdown here. */
static void drain_without_thread(struct kubemq_client *c)
{
    grpc_event ev;

    if (c->channel) {
        grpc_channel_destroy(c->channel);
        c->channel_destroyed = 1;
    }
    grpc_completion_queue_shutdown(c->cq);
    do {
        ev = grpc_completion_queue_next(c->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    } while (ev.type != GRPC_QUEUE_SHUTDOWN);
}

void kubemq_client_destroy(struct kubemq_client *c)
{
    struct kubemq_subscription *s, *next;
    grpc_channel *ch;

    if (!c) {
        return;
    }
    if (c->thread_started) {
        pthread_mutex_lock(&c->mu);
        c->stopping = 1;
        for (s = c->subs; s; s = s->next) {
            kk_sub_cancel(s);
        }
        if (c->ping_inflight) {
            grpc_call_cancel(c->ping.call, NULL);
        }
        /* Idle already: the watch's completion wakes the thread at once. */
        ch = channel_to_destroy(c);
        pthread_mutex_unlock(&c->mu);
        if (ch) {
            grpc_channel_destroy(ch);
        }
        pthread_join(c->thread, NULL);
    } else if (c->cq) {
        drain_without_thread(c);
    } else if (c->channel) {
        grpc_channel_destroy(c->channel);
    }
    if (c->cq) {
        grpc_completion_queue_destroy(c->cq);
    }
    for (s = c->subs; s; s = next) {
        next = s->next;
        kk_sub_free(s);
    }
    if (c->has_auth) {
        grpc_slice_unref(c->auth_md.value);
    }
    if (c->grpc_inited) {
        grpc_shutdown();
    }
    pthread_mutex_destroy(&c->mu);
    free(c->address);
    free(c->client_id);
    free(c->log_name);
    free(c);
}
