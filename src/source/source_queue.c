/* source_queue.c - kubemq.queue: messages pulled in transactions and
 * acknowledged only after the target succeeded.
 *
 * Each connection keeps up to batch_size transactions going (one
 * StreamQueueMessage stream each), as far as the binding's concurrency has
 * free slots: a transaction holds its slot from the pull to the
 * settlement, so `concurrency` bounds queue messages in flight too.
 * Success: ack. Failure: reject (the broker returns it to the queue) until
 * it was received max_requeue + 1 times, then move it to
 * dead_letter_queue (without one it keeps returning, logged as an error).
 * A stop or a crash before the ack leaves the message to the broker, which
 * returns it to the queue: nothing is lost. */
#include "base/log.h"
#include "kubemq/kubemq_client.h"
#include "source/source.h"
#include "source/source_internal.h"

#include <string.h>

#define RETRY_PAUSE_MS 1000 /* after a failed pull */

static void refill(void *arg);

/* A transaction is over (settled, empty, failed or cut short): its slot and
 * its place in the connection's batch are free again. */
static void txn_end(struct source_request *r)
{
    r->conn->ntxns--;
    source_finish(r);
}

static void schedule_refill(struct source_conn *c)
{
    loop_defer(c->src->loop, &c->refill, refill, c);
}

static void unlink_pull(struct source_conn *c, struct source_request *r)
{
    struct source_request **pp;

    for (pp = &c->pulls; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            r->next = NULL;
            c->npulls--;
            return;
        }
    }
}

static void on_message(void *ctx, struct kubemq_queue_txn *t, int rc,
                       const struct kubemq_queue_message *m, const char *err)
{
    struct source_request *r = ctx;
    struct source_conn *c = r->conn;
    struct source *s = c->src;

    unlink_pull(c, r);
    if (rc < 0) {
        c->broker_ok = 0;
        if (!c->pull_failing) {
            log_warn(s->binding, "queue %s: pull failed: %s; retrying", s->connection,
                     err ? err : "unknown error");
        }
        c->pull_failing = 1;
        loop_timer_start(s->loop, &c->retry, RETRY_PAUSE_MS, refill, c);
        txn_end(r);
        return;
    }
    c->broker_ok = 1;
    c->pull_failing = 0;
    if (rc == 0 || s->closing) {
        txn_end(r); /* an unsettled message goes back to the queue */
        schedule_refill(c);
        return;
    }
    r->qmsg = m;
    r->body = m->body;
    r->len = m->body_len;
    source_run(r);
}

/* Deferred (or after a pause): open transactions up to batch_size (waiting,
 * running and settling ones together) and the free slots. */
static void refill(void *arg)
{
    struct source_conn *c = arg;
    struct source *s = c->src;

    while (!s->closing && !s->abandoned && !loop_timer_armed(&c->retry) &&
           c->ntxns < (size_t)s->batch_size && source_take_slot(s) == 0) {
        struct source_request *r = source_request_new(c);

        if (r) {
            c->ntxns++;
            r->running = 1;
            r->txn = kubemq_queue_receive(c->client, s->channel, s->visibility_seconds,
                                          s->wait_timeout, on_message, r);
        }
        if (!r || !r->txn) {
            log_error(s->binding, "queue %s: out of memory opening a pull; retrying",
                      s->connection);
            if (r) {
                txn_end(r);
            } else {
                s->in_flight--;
            }
            loop_timer_start(s->loop, &c->retry, RETRY_PAUSE_MS, refill, c);
            return;
        }
        r->next = c->pulls;
        c->pulls = r;
        c->npulls++;
    }
}

static int start(struct source_conn *c, char *err, size_t errlen)
{
    schedule_refill(c);
    return 0;
}

static void close_conn(struct source_conn *c)
{
    struct source *s = c->src;

    loop_timer_stop(s->loop, &c->retry);
    loop_defer_cancel(s->loop, &c->refill);
    /* A waiting pull ends at once; its stream is cancelled. */
    while (c->pulls) {
        struct source_request *r = c->pulls;

        c->pulls = r->next;
        c->npulls--;
        txn_end(r);
    }
}

static int ready(const struct source_conn *c)
{
    return c->broker_ok || kubemq_client_ready(c->client);
}

static void on_settled(void *ctx, struct kubemq_queue_txn *t, int rc, const char *err)
{
    struct source_request *r = ctx;
    struct source *s = r->conn->src;

    if (rc < 0) {
        log_error(s->binding, "queue %s: cannot settle message %s (sequence %llu): %s", s->channel,
                  r->qmsg->id, (unsigned long long)r->qmsg->sequence, err ? err : "unknown error");
    }
    txn_end(r);
}

static void reply(struct source_request *r, int is_error, const char *error_text, const void *body,
                  size_t len)
{
    struct source_conn *c = r->conn;
    struct source *s = c->src;
    const struct kubemq_queue_message *m = r->qmsg;
    const char *why = error_text ? error_text : "";

    if (*s->response_channel && body) {
        kubemq_send_queue_message(c->client, s->response_channel, body, len, NULL, NULL, NULL);
    }
    if (s->abandoned) {
        log_warn(s->binding, "queue %s: message %s not settled at stop; returned to the queue",
                 s->channel, m->id);
        txn_end(r);
        return;
    }
    if (!is_error) {
        kubemq_queue_ack(r->txn, on_settled, r);
        return;
    }
    if (m->receive_count > s->max_requeue && *s->dead_letter_queue) {
        log_error(s->binding,
                  "queue %s: message %s failed %d times (%s); moved to dead-letter queue %s",
                  s->channel, m->id, m->receive_count, why, s->dead_letter_queue);
        kubemq_queue_resend(r->txn, s->dead_letter_queue, on_settled, r);
        return;
    }
    if (m->receive_count > s->max_requeue) {
        log_error(s->binding,
                  "queue %s: message %s failed %d times (%s); no dead_letter_queue, returned to "
                  "the queue",
                  s->channel, m->id, m->receive_count, why);
    } else {
        log_warn(s->binding, "queue %s: message %s failed (attempt %d of %d): %s; requeued",
                 s->channel, m->id, m->receive_count, s->max_requeue + 1, why);
    }
    kubemq_queue_reject(r->txn, on_settled, r);
}

static void room(struct source_conn *c)
{
    schedule_refill(c);
}

const struct source_ops source_queue_ops = {
    .subscribes = 0,
    .start = start,
    .close = close_conn,
    .ready = ready,
    .reply = reply,
    .room = room,
};
