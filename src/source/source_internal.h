/* source_internal.h - state shared by source_runtime.c and source_queue.c; not for other layers. */
#ifndef KK_SOURCE_SOURCE_INTERNAL_H
#define KK_SOURCE_SOURCE_INTERNAL_H

#include "kubemq/kubemq_client.h"
#include "source/source_runtime.h"
#include "source/source_seen.h"

#include <pthread.h>

struct source_qworker; /* source_queue.c */

struct source_conn {
    struct source *src;
    struct kubemq_client *client;
    struct kubemq_subscription *sub; /* NULL for queues */
    int paused;                      /* our callback returned 1 (src->mu) */
    struct kubemq_request *parked;   /* arrived at the bound (src->mu) */
    int queue_ok;                    /* queues: the broker answers (src->mu) */
    struct source_qworker *workers;  /* queues: batch_size pullers */
    size_t nworkers;
};

struct source {
    enum kubemq_kind type; /* KUBEMQ_QUERY, _COMMAND, _EVENTS, _EVENTS_STORE; queues: 0 */
    int queue;
    char *binding;
    char *group;
    char *channel;
    char *response_channel; /* "" when none */
    char *dead_letter_queue;
    int batch_size, wait_timeout, visibility_seconds, max_requeue;
    char connection[600];
    struct loop *loop;
    source_handler_fn handler;
    void *ctx;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* a slot freed, a queue result came, closing */
    size_t bound;
    size_t in_flight; /* posted to the engine, not yet answered */
    size_t parked;
    size_t rr; /* where the next parked request is looked for */
    int closing;
    int abandoned;
    int destroying;
    char *abandon_why;

    size_t n;
    struct source_conn *conns;
    /* During a reload: ids shared with the binding's other source (see
     * source_seen.h); NULL otherwise. Under mu. */
    struct source_seen *seen;
    int broadcast; /* no group configured: every binding gets its own copy */
};

/* source_runtime.c */
void source_release_slot(struct source *s);
void source_run_handler(void *arg);
/* The error reply envelope {"metadata":{},"data":null,"is_error":true,"error":text}. */
int source_error_envelope(const char *text, struct buf *out);

/* source_queue.c */
int source_queue_start(struct source_conn *c, char *err, size_t errlen);
void source_queue_close(struct source_conn *c); /* src->mu held */
void source_queue_stop(struct source_conn *c);  /* joins the pullers */
void source_queue_reply(struct source_request *r, int is_error, const char *error_text,
                        const void *body, size_t len);

#endif
