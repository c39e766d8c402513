/* source_internal.h - the source layer's internals, shared by its files.
 *
 * source_runtime.c holds what every kind shares (clients, the concurrency
 * bound, the FIFO, answering, closing, abandoning); source_request.c,
 * source_events.c and source_queue.c are the kinds, each a struct
 * source_ops; source_checkpoint.c is the events-store checkpoint behind
 * that kind's init/fini/share/flushing. The binding layer sees only
 * source.h. */
#ifndef KK_SOURCE_INTERNAL_H
#define KK_SOURCE_INTERNAL_H

#include "base/loop.h"
#include "base/metrics.h"
#include "source/source.h"

#include <stddef.h>
#include <stdint.h>

/* What differs by kind. */
struct source_ops {
    /* 1: messages come by subscription (groups apply; without a group
     * every subscriber gets its own copy); 0: pulled from a queue. */
    int subscribes;
    /* Open c's intake: subscribe, or start pulling. */
    int (*start)(struct source_conn *c, char *err, size_t errlen);
    /* Stop taking: the subscription or the waiting pulls end. */
    void (*close)(struct source_conn *c);
    /* 1 when c takes requests (subscribed; queues: the broker answers). */
    int (*ready)(const struct source_conn *c);
    /* Answer r, then source_finish(r) (at once, or once a queue message
     * is settled). is_error with error_text; body is the reply envelope. */
    void (*reply)(struct source_request *r, int is_error, const char *error_text, const void *body,
                  size_t len);
    /* A slot or FIFO room came free: take more (queues pull, a paused
     * events-store stream resumes). May be NULL. */
    void (*room)(struct source_conn *c);
    /* State of the kind beyond the connections (events-store: its
     * checkpoint): set up before they open (-1 with err fails the
     * source), let go before they close. May be NULL. */
    int (*init)(struct source *s, const struct source_options *o, char *err, size_t errlen);
    void (*fini)(struct source *s);
    /* source_share_seen() was called (seen NULL: the sharing ends). May be NULL. */
    void (*share)(struct source *s, struct source_seen *seen);
    /* 1 while the source still writes what a stop must not lose (the
     * last checkpoint). May be NULL. */
    int (*flushing)(const struct source *s);
};

struct source_conn {
    struct source *src;
    size_t index;
    struct kubemq_client *client;
    struct kubemq_subscription *sub; /* subscription kinds */
    int paused;                      /* events-store: refused a message for lack of room */
    /* queues */
    struct source_request *pulls; /* receive transactions waiting for a message */
    size_t npulls;
    size_t ntxns;             /* transactions from the pull to the settlement (<= batch_size) */
    int pull_failing;         /* the last pull failed (logged once) */
    int broker_ok;            /* a pull or a ping was answered */
    struct loop_timer retry;  /* after a failed pull */
    struct loop_defer refill; /* open pulls up to the free slots */
};

struct source {
    const struct source_kind *kind;
    const struct source_ops *ops;
    char *binding;
    char *channel;
    char *group;
    char *response_channel; /* "" when none */
    char *dead_letter_queue;
    int batch_size, wait_timeout, visibility_seconds, max_requeue;
    int broadcast; /* no group configured: every binding gets its own copy */
    char connection[600];
    struct loop *loop;
    source_handler_fn handler;
    void *ctx;
    struct source_metrics metrics;

    size_t bound;     /* concurrency */
    size_t in_flight; /* running (holding a slot), queue pulls included */
    /* Requests taken and waiting for a slot (subscription kinds). */
    struct source_request *fifo_head, *fifo_tail;
    size_t fifo_len, fifo_bytes;
    size_t max_pending, max_pending_bytes;
    struct loop_defer pump;
    uint64_t last_overflow_log_ms;
    uint64_t overflow_unlogged;

    struct source_request *live; /* every request not yet finished */
    int store_start;             /* events-store: enum kubemq_store_start */
    int64_t store_value;

    int closing;
    int abandoned;
    char *abandon_why;
    /* During a reload: ids shared with the binding's other source (see
     * source_seen.h); NULL otherwise. */
    struct source_seen *seen;
    struct source_checkpoint *checkpoint; /* events-store with a checkpoint */

    size_t n;
    struct source_conn *conns;
};

/* A new request of c, on the source's list (freed with it at the latest).
 * NULL when out of memory. */
struct source_request *source_request_new(struct source_conn *c);
/* Take r off the list and free it with its message and transaction (an
 * unsettled queue message returns to the queue); gives back its slot if
 * it held one. */
void source_finish(struct source_request *r);
/* 1 when a request of len bytes would be admitted now. */
int source_can_admit(const struct source *s, size_t len);
/* A request taken from c (body, len and msg set by the caller): run it in
 * a free slot, else queue it. Returns 0, or -1 when the FIFO is full (the
 * caller decides by kind what that means; r stays the caller's). */
int source_admit(struct source_conn *c, struct source_request *r);
/* Run r now in a slot it holds already (queue pulls: r->running). */
void source_run(struct source_request *r);
/* Take a slot (queue pulls): 0, or -1 when none is free. */
int source_take_slot(struct source *s);
/* 1 while the FIFO is at most half full (a paused kind may take more). */
int source_has_room(const struct source *s);
/* How a kind answers a message it will not run (msg stays the caller's). */
typedef void (*source_answer_fn)(struct source_conn *c, const struct kubemq_request *msg,
                                 const char *text);
/* The checks every subscription kind makes before it takes msg: 1 when it
 * is not taken (a late copy after a reload, or a duplicate the binding's
 * other source runs: freed; reaching an abandoned source: answered with
 * answer, then freed), 0 to take it (its id now counts as taken here). */
int source_intake_refused(struct source_conn *c, struct kubemq_request *msg,
                          source_answer_fn answer);
/* Count an overflow and log it, at most once a second per source. */
void source_note_overflow(struct source *s, struct metrics_series *counter, const char *what);

extern const struct source_ops source_query_ops;        /* source_request.c */
extern const struct source_ops source_command_ops;      /* source_request.c */
extern const struct source_ops source_events_ops;       /* source_events.c */
extern const struct source_ops source_events_store_ops; /* source_events.c */
extern const struct source_ops source_queue_ops;        /* source_queue.c */

#endif
