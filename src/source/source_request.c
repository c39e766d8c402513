/* source_request.c - kubemq.query and kubemq.command: a subscription to
 * requests, each answered with SendResponse.
 *
 * A query's reply carries the reply envelope as its body; a command's
 * carries only executed and the error text (KubeMQ drops a command
 * response's body). A request that finds the FIFO full is answered at
 * once with an over-capacity error, so its sender never waits for a
 * timeout. */
#include "base/log.h"
#include "kubemq/kubemq_client.h"
#include "message/envelope.h"
#include "source/source.h"
#include "source/source_internal.h"

#include <stdio.h>
#include <string.h>

static int is_query(const struct source *s)
{
    return s->ops == &source_query_ops;
}

/* An answer that does not come from the binding: over capacity, stopped. */
static void answer_error(struct source_conn *c, const struct kubemq_request *msg, const char *text)
{
    struct buf b = BUF_INIT(2048);

    if (is_query(c->src) && envelope_error_serialize(text, &b) == 0) {
        kubemq_send_response(c->client, msg, 0, text, b.data, b.len, NULL);
    } else {
        kubemq_send_response(c->client, msg, 0, text, NULL, 0, NULL);
    }
    buf_free(&b);
}

static int on_request(void *ctx, struct kubemq_request *msg)
{
    struct source_conn *c = ctx;
    struct source *s = c->src;
    struct source_request *r;
    char text[400];

    if (source_intake_refused(c, msg, answer_error)) {
        return KUBEMQ_TAKEN;
    }
    r = source_request_new(c);
    if (!r) {
        log_error(s->binding, "source: out of memory taking a request; answered with an error");
        answer_error(c, msg, "kubemq-kinesis: out of memory");
        kubemq_request_free(msg);
        return KUBEMQ_TAKEN;
    }
    r->msg = msg;
    r->body = msg->body;
    r->len = msg->body_len;
    if (source_admit(c, r) < 0) {
        snprintf(text, sizeof(text),
                 "kubemq-kinesis: over capacity: %zu requests are waiting already "
                 "(binding %s, max_pending %zu); try again later",
                 s->fifo_len, s->binding, s->max_pending);
        source_note_overflow(s, s->metrics.rejected,
                             is_query(s) ? "queries answered over capacity"
                                         : "commands answered over capacity");
        answer_error(c, msg, text);
        source_finish(r); /* frees msg */
    }
    return KUBEMQ_TAKEN;
}

static int start(struct source_conn *c, char *err, size_t errlen)
{
    struct source *s = c->src;
    struct kubemq_sub_opts so;

    memset(&so, 0, sizeof(so));
    so.type = is_query(s) ? KUBEMQ_QUERY : KUBEMQ_COMMAND;
    so.channel = s->channel;
    so.group = s->group;
    c->sub = kubemq_subscribe(c->client, &so, on_request, NULL, c, err, errlen);
    return c->sub ? 0 : -1;
}

static void close_conn(struct source_conn *c)
{
    kubemq_subscription_close(c->sub);
    c->sub = NULL;
}

static int ready(const struct source_conn *c)
{
    /* Written is not enough: the broker must have answered on this connection
     * (a TLS peer may refuse our certificate only after the handshake). */
    return c->sub && kubemq_subscription_subscribed(c->sub) && kubemq_client_ready(c->client);
}

static void reply(struct source_request *r, int is_error, const char *error_text, const void *body,
                  size_t len)
{
    struct source_conn *c = r->conn;

    if (is_query(c->src)) {
        kubemq_send_response(c->client, r->msg, !is_error, error_text, body, len, NULL);
    } else {
        kubemq_send_response(c->client, r->msg, !is_error, error_text, NULL, 0, NULL);
    }
    source_finish(r);
}

const struct source_ops source_query_ops = {
    .subscribes = 1,
    .start = start,
    .close = close_conn,
    .ready = ready,
    .reply = reply,
};

const struct source_ops source_command_ops = {
    .subscribes = 1,
    .start = start,
    .close = close_conn,
    .ready = ready,
    .reply = reply,
};
