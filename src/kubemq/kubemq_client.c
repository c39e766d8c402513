/* kubemq_client.c - a KubeMQ client: one connection kept up, the liveness Ping, where calls go.
 *
 * The client owns at most one connection at a time. An attempt resolves
 * the address (again each time), then connects (kubemq_conn.c); when the
 * connection is lost or an attempt fails, the next attempt follows after a
 * capped exponential backoff (at once after losing a connection that had
 * been fine). A new call goes out at once when the connection is up,
 * waits for the outcome of an attempt that is running, and otherwise
 * fails at once with UNAVAILABLE (reported later, from its stream).
 * Subscriptions are told when the connection comes up.
 *
 * Liveness is the KubeMQ Ping call, never timed HTTP/2 PINGs (grpc-go
 * sends a client away after a few): one right after connecting - the
 * client is ready once it is answered - and another whenever nothing
 * arrived for ping_interval_ms; one that gets no answer within 5 s closes
 * the connection. The state changes are logged once each. */
#include "kubemq/kubemq_internal.h"

#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CAP_MS 5000

void kubemq_client_opts_init(struct kubemq_client_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->auto_reconnect = 1;
}

const char *kubemq_client_address(const struct kubemq_client *c)
{
    return c->address;
}

int kubemq_client_ready(const struct kubemq_client *c)
{
    return c && c->state == KUBEMQ_CLIENT_UP && c->ready;
}

int kubemq_client_up(const struct kubemq_client *c)
{
    return c->state == KUBEMQ_CLIENT_UP;
}

void kubemq_client_acquire(struct kubemq_client *c)
{
    c->refs++;
}

void kubemq_client_release(struct kubemq_client *c)
{
    if (!c || --c->refs > 0) {
        return;
    }
    loop_timer_stop(c->loop, &c->retry_timer);
    loop_timer_stop(c->loop, &c->ping_timer);
    resolve_destroy(c->resolver);
    if (c->ssl_ctx) {
        SSL_CTX_free(c->ssl_ctx);
    }
    if (c->token) {
        explicit_bzero(c->token, strlen(c->token));
    }
    free(c->token);
    free(c->address);
    free(c->host);
    free(c->port);
    free(c->client_id);
    free(c->log_name);
    free(c);
}

void kubemq_client_down_text(const struct kubemq_client *c, char *dst, size_t n)
{
    snprintf(dst, n, "not connected to %s (%s)", c->address,
             c->last_error[0] ? c->last_error : "connecting");
}

/* ---- attempts ---- */

static void start_attempt(void *arg);

static void schedule_attempt(struct kubemq_client *c, uint64_t delay_ms)
{
    c->state = KUBEMQ_CLIENT_WAITING;
    loop_timer_start(c->loop, &c->retry_timer, delay_ms, start_attempt, c);
}

static uint64_t next_backoff(struct kubemq_client *c)
{
    uint64_t d = c->backoff_ms;

    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : KUBEMQ_BACKOFF_MS;
    if (c->backoff_ms > c->backoff_cap_ms) {
        c->backoff_ms = c->backoff_cap_ms;
    }
    return d;
}

/* Streams that waited for this attempt fail with its reason. */
static void fail_waiting(struct kubemq_client *c, const char *why)
{
    while (!kubemq_list_empty(&c->waiting)) {
        struct kubemq_stream *st = KK_CONTAINER_OF(c->waiting.next, struct kubemq_stream, link);

        kubemq_stream_fail(st, KUBEMQ_STATUS_UNAVAILABLE, "cannot connect to %s: %s", c->address,
                           why);
    }
}

static void attempt_failed(struct kubemq_client *c, const char *why)
{
    uint64_t delay;

    snprintf(c->last_error, sizeof(c->last_error), "%s", why);
    fail_waiting(c, why);
    delay = next_backoff(c);
    if (delay == 0) {
        delay = next_backoff(c); /* never two attempts back to back */
    }
    if (!c->outage_logged) {
        log_warn(c->log_name, "kubemq: cannot connect to %s; retrying (%s)", c->address, why);
        c->outage_logged = 1;
    } else {
        log_debug(c->log_name, "kubemq: cannot connect to %s; retrying in %llu ms (%s)", c->address,
                  (unsigned long long)delay, why);
    }
    schedule_attempt(c, delay);
}

static void on_resolved(void *ctx, const struct resolve_addrs *a, const char *err)
{
    struct kubemq_client *c = ctx;
    char why[300];

    if (c->state != KUBEMQ_CLIENT_RESOLVING) {
        return;
    }
    if (!a) {
        attempt_failed(c, err); /* "cannot resolve 'host': ..." */
        return;
    }
    c->conn = kubemq_conn_open(c, a, why, sizeof(why));
    if (!c->conn) {
        attempt_failed(c, why);
        return;
    }
    c->state = KUBEMQ_CLIENT_CONNECTING;
}

static void start_attempt(void *arg)
{
    struct kubemq_client *c = arg;

    c->state = KUBEMQ_CLIENT_RESOLVING;
    if (resolve_start(c->resolver, c->host, c->port, on_resolved, c) < 0) {
        attempt_failed(c, "out of memory");
    }
}

/* ---- liveness ---- */

static void ping_timer(void *arg);

static void on_ping(void *ctx, const struct kubemq_ping_result *r, int status, const char *err)
{
    struct kubemq_client *c = ctx;

    c->ping = NULL;
    if (c->state != KUBEMQ_CLIENT_UP || c->ping_gen != c->conn_gen) {
        return; /* about a connection that is gone */
    }
    if (r) {
        if (!c->ready) {
            log_debug(c->log_name, "kubemq: %s answered a Ping (%s %s)", c->address, r->host,
                      r->version);
        }
        c->ready = 1;
        return;
    }
    c->ready = 0;
    if (status == KUBEMQ_STATUS_DEADLINE_EXCEEDED && c->conn) {
        kubemq_conn_fail(c->conn, "no answer to a Ping within %d ms", KUBEMQ_PING_DEADLINE);
        return;
    }
    /* The server answered (with an error): alive, but not serving us. */
    log_warn(c->log_name, "kubemq: Ping to %s failed: %s", c->address, err);
}

static void ping_now(struct kubemq_client *c)
{
    if (c->ping) {
        return;
    }
    c->ping_gen = c->conn_gen;
    c->ping = kubemq_ping(c, KUBEMQ_PING_DEADLINE, on_ping, c);
}

static void arm_ping_timer(struct kubemq_client *c, uint64_t delay)
{
    if (c->ping_interval_ms > 0) {
        loop_timer_start(c->loop, &c->ping_timer, delay, ping_timer, c);
    }
}

static void ping_timer(void *arg)
{
    struct kubemq_client *c = arg;
    uint64_t idle, now = loop_now_ms(c->loop);

    if (c->state != KUBEMQ_CLIENT_UP || !c->conn) {
        return;
    }
    idle = now > c->conn->last_rx_ms ? now - c->conn->last_rx_ms : 0;
    if (idle >= (uint64_t)c->ping_interval_ms) {
        ping_now(c);
        arm_ping_timer(c, (uint64_t)c->ping_interval_ms);
    } else {
        arm_ping_timer(c, (uint64_t)c->ping_interval_ms - idle);
    }
}

/* ---- the connection's news ---- */

void kubemq_client_conn_up(struct kubemq_client *c, struct kubemq_conn *conn)
{
    struct kubemq_list *e;
    char err[256];

    if (c->conn != conn) {
        return;
    }
    c->state = KUBEMQ_CLIENT_UP;
    c->conn_gen++;
    c->ready = 0;
    c->announced = 0;
    while (!kubemq_list_empty(&c->waiting)) {
        struct kubemq_stream *st = KK_CONTAINER_OF(c->waiting.next, struct kubemq_stream, link);

        kubemq_list_del(&st->link);
        st->waiting = NULL;
        if (kubemq_h2_submit(conn, st, err, sizeof(err)) < 0) {
            kubemq_stream_fail(st, KUBEMQ_STATUS_UNAVAILABLE, "%s", err);
        }
        kubemq_stream_release(st);
    }
    for (e = c->subs.next; e != &c->subs; e = e->next) {
        kubemq_subscription_conn_up(e);
    }
    ping_now(c);
    arm_ping_timer(c, (uint64_t)c->ping_interval_ms);
}

void kubemq_client_conn_heard(struct kubemq_client *c, struct kubemq_conn *conn)
{
    struct kubemq_list *e;
    char peer[80];

    if (c->conn != conn || c->announced) {
        return;
    }
    c->announced = 1;
    c->last_error[0] = '\0';
    /* The address connected to, when the configured one is a name. */
    snprintf(peer, sizeof(peer), " (%s)", conn->peer);
    log_info(c->log_name, "kubemq: %s to %s%s", c->ever_up ? "reconnected" : "connected",
             c->address, strcmp(c->address, conn->peer) ? peer : "");
    c->ever_up = 1;
    c->outage_logged = 0;
    /* Subscriptions written before the server spoke are subscribed now; the
     * walk starts over after each, as its owner's callback may change the
     * list (and must not free the client under it). */
    kubemq_client_acquire(c);
    for (e = c->subs.next; e != &c->subs;) {
        e = kubemq_subscription_conn_heard(e) ? c->subs.next : e->next;
    }
    kubemq_client_release(c);
}

void kubemq_client_conn_down(struct kubemq_client *c, struct kubemq_conn *conn, const char *why)
{
    int was_up = c->state == KUBEMQ_CLIENT_UP;
    int stable = loop_now_ms(c->loop) - conn->up_at >= KUBEMQ_STABLE_MS;

    if (c->conn != conn) {
        return;
    }
    c->conn = NULL;
    kubemq_conn_release(conn);
    c->ready = 0;
    loop_timer_stop(c->loop, &c->ping_timer);
    if (c->ping) {
        kubemq_call_cancel(c->ping); /* the next connection has its own */
        c->ping = NULL;
    }
    if (c->state == KUBEMQ_CLIENT_GONE) {
        return;
    }
    /* Refused before the server said a word (a client certificate it
     * rejects after the handshake): a failed attempt, logged once per
     * outage, with a growing backoff. */
    if (!was_up || !c->announced) {
        attempt_failed(c, why);
        return;
    }
    snprintf(c->last_error, sizeof(c->last_error), "%s", why);
    log_warn(c->log_name, "kubemq: connection to %s lost: %s; reconnecting", c->address, why);
    c->outage_logged = 1;
    if (stable) {
        c->backoff_ms = 0;
    }
    schedule_attempt(c, next_backoff(c));
}

void kubemq_client_start(struct kubemq_client *c, struct kubemq_stream *st)
{
    char err[300];

    switch (c->state) {
    case KUBEMQ_CLIENT_UP:
        if (kubemq_h2_submit(c->conn, st, err, sizeof(err)) < 0) {
            kubemq_stream_fail(st, KUBEMQ_STATUS_UNAVAILABLE, "%s", err);
        }
        break;
    case KUBEMQ_CLIENT_RESOLVING:
    case KUBEMQ_CLIENT_CONNECTING:
        kubemq_stream_acquire(st);
        st->waiting = c;
        kubemq_list_add(&c->waiting, &st->link);
        break;
    default:
        kubemq_client_down_text(c, err, sizeof(err));
        kubemq_stream_fail(st, KUBEMQ_STATUS_UNAVAILABLE, "%s", err);
        break;
    }
}

/* ---- create, destroy ---- */

struct kubemq_client *kubemq_client_create(struct loop *loop, const struct kubemq_client_opts *o,
                                           char *err, size_t errlen)
{
    struct kubemq_client *c;
    char host[256], port[8];

    if (!loop) {
        snprintf(err, errlen, "kubemq client needs a loop");
        return NULL;
    }
    if (kubemq_address_split(o->address, host, sizeof(host), port, sizeof(port), err, errlen) < 0) {
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
    c->refs = 1; /* the owner's */
    c->loop = loop;
    c->state = KUBEMQ_CLIENT_WAITING;
    kubemq_list_init(&c->waiting);
    kubemq_list_init(&c->calls);
    kubemq_list_init(&c->subs);
    kubemq_list_init(&c->txns);
    loop_timer_init(&c->retry_timer);
    loop_timer_init(&c->ping_timer);
    c->address = kubemq_wire_strdup(o->address);
    c->host = kubemq_wire_strdup(host);
    c->port = kubemq_wire_strdup(port);
    c->client_id = kubemq_wire_strdup(o->client_id);
    c->log_name = o->log_name ? kubemq_wire_strdup(o->log_name) : NULL;
    c->token = o->auth_token && o->auth_token[0] ? kubemq_wire_strdup(o->auth_token) : NULL;
    if (!c->address || !c->host || !c->port || !c->client_id || (o->log_name && !c->log_name) ||
        (o->auth_token && o->auth_token[0] && !c->token)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    c->auto_reconnect = o->auto_reconnect ? 1 : 0;
    c->max_reconnects = o->max_reconnects > 0 ? o->max_reconnects : 0;
    c->backoff_cap_ms = o->reconnect_interval_seconds > 0
                            ? (uint64_t)o->reconnect_interval_seconds * 1000u
                            : DEFAULT_CAP_MS;
    c->ping_interval_ms = o->ping_interval_ms == 0 ? KUBEMQ_PING_INTERVAL_MS : o->ping_interval_ms;
    if (o->tls) {
        c->ssl_ctx = tls_ctx_new(o->ca_file, o->cert_file, o->key_file, "h2", err, errlen);
        if (!c->ssl_ctx) {
            goto fail;
        }
    }
    c->resolver = resolve_create(loop, err, errlen);
    if (!c->resolver) {
        goto fail;
    }
    start_attempt(c);
    return c;
fail:
    kubemq_client_destroy(c);
    return NULL;
}

void kubemq_client_destroy(struct kubemq_client *c)
{
    struct kubemq_conn *conn;

    if (!c || c->state == KUBEMQ_CLIENT_GONE) {
        return;
    }
    c->state = KUBEMQ_CLIENT_GONE;
    loop_timer_stop(c->loop, &c->retry_timer);
    loop_timer_stop(c->loop, &c->ping_timer);
    resolve_cancel(c->resolver);
    while (!kubemq_list_empty(&c->subs)) {
        kubemq_subscription_shutdown(c->subs.next);
    }
    while (!kubemq_list_empty(&c->txns)) {
        kubemq_queue_shutdown(c->txns.next);
    }
    while (!kubemq_list_empty(&c->calls)) {
        kubemq_call_shutdown(c->calls.next);
    }
    /* Still waiting for a connection: never sent, nothing to linger for. */
    fail_waiting(c, "the client is gone");
    conn = c->conn;
    c->conn = NULL;
    if (conn) {
        kubemq_conn_linger(conn); /* takes over the client's reference */
    }
    kubemq_client_release(c);
}
