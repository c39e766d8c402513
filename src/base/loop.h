/* loop.h - the engine's single-threaded event loop (epoll).
 *
 * All target, middleware and AWS work runs on one loop thread, so that
 * code needs no locks. Other threads (the gRPC completion-queue thread,
 * the HTTP API) hand work in with loop_post(), the only thread-safe entry
 * besides loop_stop(). Timers are embedded in their owner's struct, so
 * arming one never allocates. */
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

struct loop *loop_create(char *err, size_t errlen);
/* Runs nothing further; pending posts are dropped (their owners must
 * have drained before). Accepts NULL. */
void loop_destroy(struct loop *l);

/* Run callbacks until loop_stop(). Returns 0, or -1 on an epoll error. */
int loop_run(struct loop *l);
/* Run one round: due timers, then wait at most timeout_ms (-1 = until
 * something happens) for I/O and posts; no wait when a timer ran. */
int loop_run_once(struct loop *l, int timeout_ms);
/* Thread-safe: makes loop_run() return after the current callback. */
void loop_stop(struct loop *l);

/* Thread-safe: fn(arg) runs on the loop thread soon, in post order.
 * Returns -1 only when out of memory. */
int loop_post(struct loop *l, loop_fn fn, void *arg);

/* Monotonic milliseconds, cached per loop round. */
uint64_t loop_now_ms(struct loop *l);

void loop_timer_init(struct loop_timer *t);
/* (Re)arm: fn(arg) runs once after delay_ms. */
void loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t delay_ms, loop_fn fn,
                      void *arg);
void loop_timer_stop(struct loop *l, struct loop_timer *t);
int loop_timer_armed(const struct loop_timer *t);

/* Watch fd for LOOP_READ/LOOP_WRITE; events 0 stops watching. */
int loop_io_set(struct loop *l, int fd, unsigned events, loop_io_fn fn, void *arg);

#endif
