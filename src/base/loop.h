/* loop.h - the daemon's single-threaded event loop (epoll).
 *
 * Everything runs on one loop thread: KubeMQ connections, sources,
 * targets, middleware, AWS calls, the HTTP API and signals, so that code
 * needs no locks. loop_post() and loop_stop() are the only thread-safe
 * entries (for the rare helper thread). Timers and deferred calls are
 * embedded in their owner's struct, so arming one never allocates. */
#ifndef KK_BASE_LOOP_H
#define KK_BASE_LOOP_H

#include <stddef.h>
#include <stdint.h>

struct loop;

typedef void (*loop_fn)(void *arg);
typedef void (*loop_io_fn)(void *arg, int fd, unsigned events);

#define LOOP_READ  1u
#define LOOP_WRITE 2u
#define LOOP_ERROR 4u /* reported only, never requested */

struct loop_timer {
    uint64_t due_ms;
    size_t heap_index; /* SIZE_MAX when not armed */
    loop_fn fn;
    void *arg;
};

/* A call made once at the end of the current loop round, before the loop
 * waits again: work gathered during a round (writes to a socket, a queue to
 * pump) is done once for all of it. */
struct loop_defer {
    loop_fn fn;
    void *arg;
    struct loop_defer *next;
    int armed;
};

struct loop *loop_create(char *err, size_t errlen);
/* Runs nothing further; pending posts are dropped (their owners must
 * have drained before). Accepts NULL. */
void loop_destroy(struct loop *l);

/* Run callbacks until loop_stop(). Returns 0, or -1 on an epoll error. */
int loop_run(struct loop *l);
/* Run one round: due timers, then wait at most timeout_ms (-1 = until
 * something happens) for I/O and posts (no wait when a timer ran), then
 * the timers and deferred calls that I/O made due (a few passes). */
int loop_run_once(struct loop *l, int timeout_ms);
/* Run rounds until nothing is watched, armed or deferred any more - the
 * objects that outlive their owners (a connection sending its last
 * replies) are done - or max_ms passed. Returns 0 when idle, 1 at the
 * deadline, -1 on an epoll error. */
int loop_run_until_idle(struct loop *l, uint64_t max_ms);
/* Thread-safe: makes loop_run() return after the current callback. */
void loop_stop(struct loop *l);

/* Thread-safe: fn(arg) runs on the loop thread soon, in post order.
 * Returns -1 only when out of memory. */
int loop_post(struct loop *l, loop_fn fn, void *arg);

/* Monotonic time (base/clock.h), read once per loop round: what code on
 * the loop uses, so a round's callbacks agree and pay no system call. */
uint64_t loop_now_ms(struct loop *l);
uint64_t loop_now_us(struct loop *l);

void loop_timer_init(struct loop_timer *t);
/* (Re)arm: fn(arg) runs once after delay_ms. */
void loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t delay_ms, loop_fn fn,
                      void *arg);
void loop_timer_stop(struct loop *l, struct loop_timer *t);
int loop_timer_armed(const struct loop_timer *t);

void loop_defer_init(struct loop_defer *d);
/* fn(arg) runs once at the end of this round (arming it again before then
 * changes nothing; a call armed while deferred calls run runs in the same
 * pass). */
void loop_defer(struct loop *l, struct loop_defer *d, loop_fn fn, void *arg);
void loop_defer_cancel(struct loop *l, struct loop_defer *d);

/* Watch fd for LOOP_READ/LOOP_WRITE; events 0 stops watching. */
int loop_io_set(struct loop *l, int fd, unsigned events, loop_io_fn fn, void *arg);

#endif
