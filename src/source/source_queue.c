/* source_queue.c - kubemq.queue: pullers that acknowledge a message only after the target
 * succeeded.
 *
 * Each connection runs batch_size puller threads. A puller takes a slot
 * of the binding's concurrency, opens a StreamQueueMessage transaction,
 * waits up to wait_timeout for one message, hands it to the engine and
 * waits for the reply. Success: ack. Failure: reject (the broker returns
 * it to the queue) until it was received max_requeue + 1 times, then move
 * it to dead_letter_queue (without one it keeps returning, logged as an
 * error). A stop or a crash before the ack leaves the message to the
 * broker, which returns it to the queue: nothing is lost. */
#include "base/log.h"
#include "source/source_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RETRY_PAUSE_MS 1000 /* after a failed pull */

struct source_qworker {
    struct source_conn *conn;
    pthread_t thread;
    int started;
    struct kubemq_queue_txn *txn; /* while receiving, for close (src->mu) */
    /* The engine's reply (src->mu). */
    int done;
    int is_error;
    char *error;
    void *body;
    size_t len;
};

static void deadline_after(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* mu held: wait up to ms unless closing. */
static void pause_ms(struct source *s, int ms)
{
    struct timespec ts;

    deadline_after(&ts, ms);
    while (!s->closing) {
        if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
}

static void set_ok(struct source_conn *c, int ok)
{
    pthread_mutex_lock(&c->src->mu);
    c->queue_ok = ok;
    pthread_mutex_unlock(&c->src->mu);
}

/* The reply envelope to response_channel, as a queue message. */
static void send_reply(struct source_conn *c, const void *body, size_t len)
{
    struct source *s = c->src;
    char err[512];

    if (!*s->response_channel || !body) {
        return;
    }
    if (kubemq_send_queue_message(c->client, s->response_channel, body, len, NULL, err,
                                  sizeof(err)) < 0) {
        log_error(s->binding, "error sending response to a queue, %s", err);
    }
}

/* Ack, requeue or dead-letter m by the engine's reply in w. */
static void settle(struct source_qworker *w, struct kubemq_queue_txn *t,
                   const struct kubemq_queue_message *m)
{
    struct source_conn *c = w->conn;
    struct source *s = c->src;
    char err[512];

    send_reply(c, w->body, w->len);
    if (!w->is_error) {
        if (kubemq_queue_ack(t, err, sizeof(err)) < 0) {
            /* The broker returns it to the queue: delivered again. */
            log_error(s->binding, "queue %s: cannot acknowledge message %s (sequence %llu): %s",
                      s->channel, m->id, (unsigned long long)m->sequence, err);
        }
        return;
    }
    if (m->receive_count > s->max_requeue && *s->dead_letter_queue) {
        if (kubemq_queue_resend(t, s->dead_letter_queue, err, sizeof(err)) == 0) {
            log_error(s->binding,
                      "queue %s: message %s failed %d times (%s); moved to dead-letter queue %s",
                      s->channel, m->id, m->receive_count, w->error ? w->error : "",
                      s->dead_letter_queue);
            return;
        }
        log_error(s->binding, "queue %s: cannot move message %s to dead-letter queue %s: %s",
                  s->channel, m->id, s->dead_letter_queue, err);
        return; /* unsettled: the broker returns it */
    }
    if (m->receive_count > s->max_requeue) {
        log_error(s->binding,
                  "queue %s: message %s failed %d times (%s); no dead_letter_queue, returned to "
                  "the queue",
                  s->channel, m->id, m->receive_count, w->error ? w->error : "");
    } else {
        log_warn(s->binding, "queue %s: message %s failed (attempt %d of %d): %s; requeued",
                 s->channel, m->id, m->receive_count, s->max_requeue + 1, w->error ? w->error : "");
    }
    if (kubemq_queue_reject(t, err, sizeof(err)) < 0) {
        log_error(s->binding, "queue %s: cannot requeue message %s: %s", s->channel, m->id, err);
    }
}

static void reset_result(struct source_qworker *w)
{
    free(w->error);
    free(w->body);
    w->error = NULL;
    w->body = NULL;
    w->len = 0;
    w->done = 0;
    w->is_error = 0;
}

/* One message: to the engine, wait for the reply, settle. Returns with the
 * slot still taken. */
static void process(struct source_qworker *w, struct kubemq_queue_txn *t,
                    const struct kubemq_queue_message *m)
{
    struct source_conn *c = w->conn;
    struct source *s = c->src;
    struct source_request *r = calloc(1, sizeof(*r));
    int abandoned;

    if (!r) {
        log_error(s->binding, "queue %s: out of memory; message %s returned to the queue",
                  s->channel, m->id);
        return;
    }
    r->body = m->body;
    r->len = m->body_len;
    r->conn = c;
    r->qw = w;
    pthread_mutex_lock(&s->mu);
    reset_result(w);
    pthread_mutex_unlock(&s->mu);
    if (loop_post(s->loop, source_run_handler, r) < 0) {
        free(r);
        log_error(s->binding, "queue %s: engine unavailable; message %s returned to the queue",
                  s->channel, m->id);
        return;
    }
    pthread_mutex_lock(&s->mu);
    /* The binding answers every request it took, also when stopping. */
    while (!w->done && !s->destroying) {
        pthread_cond_wait(&s->cv, &s->mu);
    }
    abandoned = s->abandoned || !w->done;
    pthread_mutex_unlock(&s->mu);
    if (abandoned) {
        log_warn(s->binding, "queue %s: message %s not settled at stop; returned to the queue",
                 s->channel, m->id);
        return;
    }
    settle(w, t, m);
}

static void *puller(void *arg)
{
    struct source_qworker *w = arg;
    struct source_conn *c = w->conn;
    struct source *s = c->src;
    const struct kubemq_queue_message *m;
    struct kubemq_queue_txn *t;
    char err[512];
    int rc, failing = 0;

    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->closing && s->in_flight >= s->bound) {
            pthread_cond_wait(&s->cv, &s->mu);
        }
        if (s->closing) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        s->in_flight++;
        pthread_mutex_unlock(&s->mu);

        t = kubemq_queue_txn_open(c->client, err, sizeof(err));
        rc = -1;
        if (t) {
            pthread_mutex_lock(&s->mu);
            w->txn = s->closing ? NULL : t;
            pthread_mutex_unlock(&s->mu);
            rc = w->txn ? kubemq_queue_receive(t, s->channel, s->visibility_seconds,
                                               s->wait_timeout, &m, err, sizeof(err))
                        : 0;
            pthread_mutex_lock(&s->mu);
            w->txn = NULL;
            pthread_mutex_unlock(&s->mu);
        }
        if (rc == 1) {
            set_ok(c, 1);
            failing = 0;
            process(w, t, m);
        } else if (rc == 0) {
            set_ok(c, 1);
            failing = 0;
        } else {
            set_ok(c, 0);
            if (!failing) {
                log_warn(s->binding, "queue %s: pull failed: %s; retrying", s->connection, err);
            }
            failing = 1;
        }
        kubemq_queue_txn_free(t);
        source_release_slot(s);
        if (rc < 0) {
            pthread_mutex_lock(&s->mu);
            pause_ms(s, RETRY_PAUSE_MS);
            pthread_mutex_unlock(&s->mu);
        }
    }
    return NULL;
}

void source_queue_reply(struct source_request *r, int is_error, const char *error_text,
                        const void *body, size_t len)
{
    struct source_qworker *w = r->qw;
    struct source *s = r->conn->src;
    void *copy = NULL;
    char *etext = error_text ? strdup(error_text) : NULL;

    if (body && len) {
        copy = malloc(len);
        if (copy) {
            memcpy(copy, body, len);
        }
    }
    pthread_mutex_lock(&s->mu);
    w->is_error = is_error || (error_text && !etext);
    w->error = etext;
    w->body = copy;
    w->len = copy ? len : 0;
    w->done = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    free(r);
}

/* A first ping tells whether the broker answers (readiness). */
static void *starter(void *arg)
{
    struct source_qworker *w = arg;
    struct source_conn *c = w->conn;
    struct source *s = c->src;
    char err[512];

    for (;;) {
        pthread_mutex_lock(&s->mu);
        if (s->closing || c->queue_ok) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        pthread_mutex_unlock(&s->mu);
        if (kubemq_client_ping(c->client, 5000, NULL, err, sizeof(err)) == 0) {
            set_ok(c, 1);
            break;
        }
        pthread_mutex_lock(&s->mu);
        pause_ms(s, RETRY_PAUSE_MS);
        pthread_mutex_unlock(&s->mu);
    }
    return puller(arg);
}

int source_queue_start(struct source_conn *c, char *err, size_t errlen)
{
    struct source *s = c->src;
    sigset_t all, old;
    size_t i;

    c->workers = calloc((size_t)s->batch_size, sizeof(*c->workers));
    if (!c->workers) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->nworkers = (size_t)s->batch_size;
    /* Signals stay with the main thread's sigwait. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (i = 0; i < c->nworkers; i++) {
        struct source_qworker *w = &c->workers[i];
        int rc;

        w->conn = c;
        rc = pthread_create(&w->thread, NULL, i == 0 ? starter : puller, w);
        if (rc != 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            snprintf(err, errlen, "cannot start a puller thread: %s", strerror(rc));
            return -1;
        }
        w->started = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return 0;
}

void source_queue_close(struct source_conn *c)
{
    size_t i;

    for (i = 0; i < c->nworkers; i++) {
        if (c->workers[i].txn) {
            kubemq_queue_cancel(c->workers[i].txn); /* a waiting pull returns at once */
        }
    }
}

void source_queue_stop(struct source_conn *c)
{
    size_t i;

    for (i = 0; i < c->nworkers; i++) {
        if (c->workers[i].started) {
            pthread_join(c->workers[i].thread, NULL);
        }
        reset_result(&c->workers[i]);
    }
    free(c->workers);
    c->workers = NULL;
    c->nworkers = 0;
}
