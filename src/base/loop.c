/* loop.c - the engine's single-threaded event loop (epoll + eventfd). */
#include "base/loop.h"

#include "base/clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS 64
#define LOOP_END_PASSES 4 /* timer and deferred passes at the end of a round */

struct loop_post_item {
    loop_fn fn;
    void *arg;
    struct loop_post_item *next;
};

struct loop_io {
    int fd;
    loop_io_fn fn;
    void *arg;
    struct loop_io *next;
};

struct loop {
    int epfd;
    int wakefd;
    int stop;
    uint64_t now_us; /* cached once per round */

    pthread_mutex_t post_lock;
    struct loop_post_item *post_head;
    struct loop_post_item *post_tail;

    struct loop_timer **heap;
    size_t heap_len;
    size_t heap_cap;

    struct loop_defer *defer_head; /* armed deferred calls, in arming order */
    struct loop_defer *defer_tail;

    struct loop_io *ios; /* few fds (curl's sockets): a list is enough */
    /* Watches removed while a round's events are dispatched: freed after
     * the round, so a later event of that round cannot find their memory
     * reused by a new watch. */
    struct loop_io *dead;
    int dispatching;
};

struct loop *loop_create(char *err, size_t errlen)
{
    struct loop *l = calloc(1, sizeof(*l));
    struct epoll_event ev;

    if (!l) {
        snprintf(err, errlen, "loop: out of memory");
        return NULL;
    }
    l->epfd = -1;
    l->wakefd = -1;
    pthread_mutex_init(&l->post_lock, NULL);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        snprintf(err, errlen, "loop: epoll_create1: %s", strerror(errno));
        goto fail;
    }
    l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->wakefd < 0) {
        snprintf(err, errlen, "loop: eventfd: %s", strerror(errno));
        goto fail;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = NULL; /* NULL marks the wake fd */
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev) < 0) {
        snprintf(err, errlen, "loop: epoll_ctl: %s", strerror(errno));
        goto fail;
    }
    l->now_us = clock_mono_us();
    return l;
fail:
    loop_destroy(l);
    return NULL;
}

void loop_destroy(struct loop *l)
{
    struct loop_post_item *p, *pn;
    struct loop_io *io, *ion;

    if (!l) {
        return;
    }
    for (p = l->post_head; p; p = pn) {
        pn = p->next;
        free(p);
    }
    for (io = l->ios; io; io = ion) {
        ion = io->next;
        free(io);
    }
    for (io = l->dead; io; io = ion) {
        ion = io->next;
        free(io);
    }
    if (l->wakefd >= 0) {
        close(l->wakefd);
    }
    if (l->epfd >= 0) {
        close(l->epfd);
    }
    free(l->heap);
    pthread_mutex_destroy(&l->post_lock);
    free(l);
}

uint64_t loop_now_ms(struct loop *l)
{
    return l->now_us / 1000u;
}

uint64_t loop_now_us(struct loop *l)
{
    return l->now_us;
}

/* ---- timers: a binary min-heap of pointers ---- */

static void heap_swap(struct loop *l, size_t a, size_t b)
{
    struct loop_timer *t = l->heap[a];

    l->heap[a] = l->heap[b];
    l->heap[b] = t;
    l->heap[a]->heap_index = a;
    l->heap[b]->heap_index = b;
}

static void heap_up(struct loop *l, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (l->heap[parent]->due_ms <= l->heap[i]->due_ms) {
            break;
        }
        heap_swap(l, parent, i);
        i = parent;
    }
}

static void heap_down(struct loop *l, size_t i)
{
    for (;;) {
        size_t left = 2 * i + 1, right = left + 1, min = i;
        if (left < l->heap_len && l->heap[left]->due_ms < l->heap[min]->due_ms) {
            min = left;
        }
        if (right < l->heap_len && l->heap[right]->due_ms < l->heap[min]->due_ms) {
            min = right;
        }
        if (min == i) {
            return;
        }
        heap_swap(l, i, min);
        i = min;
    }
}

void loop_timer_init(struct loop_timer *t)
{
    memset(t, 0, sizeof(*t));
    t->heap_index = SIZE_MAX;
}

int loop_timer_armed(const struct loop_timer *t)
{
    return t->heap_index != SIZE_MAX;
}

void loop_timer_stop(struct loop *l, struct loop_timer *t)
{
    size_t i = t->heap_index;

    if (i == SIZE_MAX) {
        return;
    }
    l->heap_len--;
    if (i != l->heap_len) {
        l->heap[i] = l->heap[l->heap_len];
        l->heap[i]->heap_index = i;
        heap_down(l, i);
        heap_up(l, i);
    }
    t->heap_index = SIZE_MAX;
}

void loop_timer_start(struct loop *l, struct loop_timer *t, uint64_t delay_ms, loop_fn fn,
                      void *arg)
{
    loop_timer_stop(l, t);
    if (l->heap_len == l->heap_cap) {
        size_t ncap = l->heap_cap ? l->heap_cap * 2 : 64;
        struct loop_timer **nh = realloc(l->heap, ncap * sizeof(*nh));
        if (!nh) {
            abort(); /* a timer that cannot fire would hang a request */
        }
        l->heap = nh;
        l->heap_cap = ncap;
    }
    t->due_ms = clock_mono_ms() + delay_ms;
    t->fn = fn;
    t->arg = arg;
    t->heap_index = l->heap_len;
    l->heap[l->heap_len++] = t;
    heap_up(l, t->heap_index);
}

static int run_timers(struct loop *l)
{
    int n = 0;

    l->now_us = clock_mono_us();
    while (l->heap_len && l->heap[0]->due_ms <= l->now_us / 1000u &&
           !__atomic_load_n(&l->stop, __ATOMIC_SEQ_CST)) {
        struct loop_timer *t = l->heap[0];
        loop_timer_stop(l, t);
        t->fn(t->arg);
        n++;
    }
    return n;
}

static int next_timeout(struct loop *l, int cap_ms)
{
    uint64_t now = clock_mono_ms();
    uint64_t wait;

    if (!l->heap_len) {
        return cap_ms;
    }
    wait = l->heap[0]->due_ms > now ? l->heap[0]->due_ms - now : 0;
    if (cap_ms >= 0 && wait > (uint64_t)cap_ms) {
        return cap_ms;
    }
    return wait > 60000 ? 60000 : (int)wait;
}

/* ---- cross-thread posts ---- */

int loop_post(struct loop *l, loop_fn fn, void *arg)
{
    struct loop_post_item *p = malloc(sizeof(*p));
    uint64_t one = 1;
    int wake;

    if (!p) {
        return -1;
    }
    p->fn = fn;
    p->arg = arg;
    p->next = NULL;
    pthread_mutex_lock(&l->post_lock);
    if (l->post_tail) {
        l->post_tail->next = p;
        wake = 0;
    } else {
        l->post_head = p;
        wake = 1;
    }
    l->post_tail = p;
    pthread_mutex_unlock(&l->post_lock);
    /* Queued means it will run, so no error past this point (the caller
     * would free arg under it). The write fails only when the counter is
     * full, and then the loop is woken already. Only the post that finds
     * the queue empty wakes the loop: the loop reads the eventfd before it
     * takes the queue, so a post that finds it non-empty is always drained
     * by a take that is still to come. */
    if (wake && write(l->wakefd, &one, sizeof(one)) < 0) {
        /* the loop is awake already */
    }
    return 0;
}

static void run_posts(struct loop *l)
{
    struct loop_post_item *p, *next;
    uint64_t v;

    if (read(l->wakefd, &v, sizeof(v)) < 0) {
        /* EAGAIN: nothing pending on the counter */
    }
    pthread_mutex_lock(&l->post_lock);
    p = l->post_head;
    l->post_head = l->post_tail = NULL;
    pthread_mutex_unlock(&l->post_lock);
    for (; p; p = next) {
        next = p->next;
        p->fn(p->arg);
        free(p);
    }
}

void loop_stop(struct loop *l)
{
    uint64_t one = 1;

    __atomic_store_n(&l->stop, 1, __ATOMIC_SEQ_CST);
    if (write(l->wakefd, &one, sizeof(one)) < 0) {
        /* the loop wakes on its next timeout anyway */
    }
}

/* ---- fd watches ---- */

static struct loop_io *io_find(struct loop *l, int fd, struct loop_io ***prevp)
{
    struct loop_io **pp = &l->ios;

    for (; *pp; pp = &(*pp)->next) {
        if ((*pp)->fd == fd) {
            if (prevp) {
                *prevp = pp;
            }
            return *pp;
        }
    }
    return NULL;
}

int loop_io_set(struct loop *l, int fd, unsigned events, loop_io_fn fn, void *arg)
{
    struct loop_io **pp = NULL;
    struct loop_io *io = io_find(l, fd, &pp);
    struct epoll_event ev;

    if (events == 0) {
        if (io) {
            epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
            *pp = io->next;
            if (l->dispatching) {
                io->fn = NULL;
                io->next = l->dead;
                l->dead = io;
            } else {
                free(io);
            }
        }
        return 0;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = ((events & LOOP_READ) ? EPOLLIN : 0) | ((events & LOOP_WRITE) ? EPOLLOUT : 0);
    if (!io) {
        io = calloc(1, sizeof(*io));
        if (!io) {
            return -1;
        }
        io->fd = fd;
        ev.data.ptr = io;
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            free(io);
            return -1;
        }
        io->next = l->ios;
        l->ios = io;
    } else {
        ev.data.ptr = io;
        /* The kernel drops a closed fd from epoll by itself; when its number
         * comes back, our stale entry must be added again, not modified. */
        if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 &&
            (errno != ENOENT || epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)) {
            return -1;
        }
    }
    io->fn = fn;
    io->arg = arg;
    return 0;
}

/* ---- deferred calls ---- */

void loop_defer_init(struct loop_defer *d)
{
    memset(d, 0, sizeof(*d));
}

void loop_defer(struct loop *l, struct loop_defer *d, loop_fn fn, void *arg)
{
    d->fn = fn;
    d->arg = arg;
    if (d->armed) {
        return;
    }
    d->armed = 1;
    d->next = NULL;
    if (l->defer_tail) {
        l->defer_tail->next = d;
    } else {
        l->defer_head = d;
    }
    l->defer_tail = d;
}

void loop_defer_cancel(struct loop *l, struct loop_defer *d)
{
    struct loop_defer **pp, *prev = NULL;

    if (!d->armed) {
        return;
    }
    for (pp = &l->defer_head; *pp; prev = *pp, pp = &(*pp)->next) {
        if (*pp == d) {
            *pp = d->next;
            if (l->defer_tail == d) {
                l->defer_tail = prev;
            }
            break;
        }
    }
    d->armed = 0;
    d->next = NULL;
}

static void run_deferred(struct loop *l)
{
    /* Calls armed by a deferred call join the same pass. */
    while (l->defer_head && !__atomic_load_n(&l->stop, __ATOMIC_SEQ_CST)) {
        struct loop_defer *d = l->defer_head;

        l->defer_head = d->next;
        if (!l->defer_head) {
            l->defer_tail = NULL;
        }
        d->armed = 0;
        d->next = NULL;
        d->fn(d->arg);
    }
}

/* ---- running ---- */

int loop_run_once(struct loop *l, int timeout_ms)
{
    struct epoll_event evs[LOOP_MAX_EVENTS];
    int n, i, ran;

    /* When timers ran, the caller may be done already: only poll. */
    ran = run_timers(l);
    run_deferred(l);
    if (__atomic_load_n(&l->stop, __ATOMIC_SEQ_CST)) {
        return 0;
    }
    n = epoll_wait(l->epfd, evs, LOOP_MAX_EVENTS,
                   ran || l->defer_head ? 0 : next_timeout(l, timeout_ms));
    if (n < 0) {
        return errno == EINTR ? 0 : -1;
    }
    l->now_us = clock_mono_us();
    l->dispatching = 1;
    for (i = 0; i < n; i++) {
        struct loop_io *io = evs[i].data.ptr;
        unsigned what = 0;

        if (!io) {
            run_posts(l);
            continue;
        }
        if (!io->fn) {
            continue; /* removed by a callback earlier in this round */
        }
        if (evs[i].events & EPOLLIN) {
            what |= LOOP_READ;
        }
        if (evs[i].events & EPOLLOUT) {
            what |= LOOP_WRITE;
        }
        if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
            what |= LOOP_ERROR;
        }
        io->fn(io->arg, io->fd, what);
    }
    l->dispatching = 0;
    while (l->dead) {
        struct loop_io *io = l->dead;

        l->dead = io->next;
        free(io);
    }
    /* Deferred calls often arm timers due at once (a request's first
     * attempt, curl's 0 ms timeout): run those now too, a few passes at
     * most, so the next round can wait for I/O instead of first polling
     * it without waiting - that poll found nothing about half the time,
     * one system call for nothing. */
    for (i = 0; i < LOOP_END_PASSES; i++) {
        run_timers(l);
        run_deferred(l);
        if (!l->heap_len || l->heap[0]->due_ms > clock_mono_ms() ||
            __atomic_load_n(&l->stop, __ATOMIC_SEQ_CST)) {
            break;
        }
    }
    return 0;
}

int loop_run_until_idle(struct loop *l, uint64_t max_ms)
{
    uint64_t deadline = clock_mono_ms() + max_ms;

    __atomic_store_n(&l->stop, 0, __ATOMIC_SEQ_CST);
    while (l->ios || l->heap_len || l->defer_head || l->post_head) {
        uint64_t now = clock_mono_ms();

        if (now >= deadline) {
            return 1;
        }
        if (loop_run_once(l, (int)(deadline - now)) < 0) {
            return -1;
        }
    }
    return 0;
}

int loop_run(struct loop *l)
{
    __atomic_store_n(&l->stop, 0, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&l->stop, __ATOMIC_SEQ_CST)) {
        if (loop_run_once(l, -1) < 0) {
            return -1;
        }
    }
    return 0;
}
