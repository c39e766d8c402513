/* resolve.c - host names to addresses with c-ares, on the loop.
 *
 * c-ares's sockets are watched by our loop (its socket-state callback) and
 * its timeouts run on one of our timers. The answer always comes from a
 * later loop callback (a deferred call), even when it was known at once
 * (an IP literal, /etc/hosts). */
#include "base/resolve.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESOLVE_TIMEOUT_MS 2000
#define RESOLVE_TRIES      2

struct resolver {
    struct loop *loop;
    ares_channel ch;
    int ch_ok;
    struct loop_timer timer;
    struct loop_defer defer;
    resolve_fn fn;
    void *ctx;
    int busy;   /* a lookup is running */
    int answer; /* its answer waits for the deferred call */
    int quiet;  /* c-ares answers now only because we cancel or destroy */
    struct resolve_addrs result;
    char host[256]; /* for the error text */
    char err[384];
};

int resolve_is_ip(const char *host)
{
    unsigned char a[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

void resolve_format(const struct sockaddr *sa, char *dst, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";

    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;

        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        snprintf(dst, n, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;

        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        snprintf(dst, n, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
    }
}

static void deliver(void *arg)
{
    struct resolver *r = arg;
    resolve_fn fn = r->fn;

    if (!r->answer) {
        return;
    }
    r->answer = 0;
    r->busy = 0;
    r->fn = NULL;
    fn(r->ctx, r->result.n > 0 ? &r->result : NULL, r->err);
}

static void answer(struct resolver *r)
{
    r->answer = 1;
    loop_timer_stop(r->loop, &r->timer);
    loop_defer(r->loop, &r->defer, deliver, r);
}

static void add_addr(struct resolve_addrs *a, const struct sockaddr *sa, socklen_t len)
{
    if (a->n >= RESOLVE_MAX_ADDRS || len > (socklen_t)sizeof(a->addr[0]) ||
        (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)) {
        return;
    }
    memcpy(&a->addr[a->n], sa, len);
    a->len[a->n] = len;
    a->n++;
}

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct resolver *r = arg;
    struct ares_addrinfo_node *n;

    (void)timeouts;
    if (r->quiet) {
        if (res) {
            ares_freeaddrinfo(res);
        }
        return;
    }
    r->result.n = 0;
    if (status == ARES_SUCCESS && res) {
        for (n = res->nodes; n; n = n->ai_next) {
            add_addr(&r->result, n->ai_addr, (socklen_t)n->ai_addrlen);
        }
    }
    if (r->result.n == 0) {
        snprintf(r->err, sizeof(r->err), "cannot resolve '%s': %s", r->host,
                 status == ARES_SUCCESS ? "no IPv4 or IPv6 address" : ares_strerror(status));
    }
    if (res) {
        ares_freeaddrinfo(res);
    }
    answer(r);
}

static void arm_timer(struct resolver *r);

static void on_timer(void *arg)
{
    struct resolver *r = arg;

    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    arm_timer(r);
}

static void arm_timer(struct resolver *r)
{
    struct timeval tv, *tvp;

    if (!r->busy || r->answer) {
        loop_timer_stop(r->loop, &r->timer);
        return;
    }
    tvp = ares_timeout(r->ch, NULL, &tv);
    if (!tvp) {
        loop_timer_stop(r->loop, &r->timer);
        return;
    }
    loop_timer_start(r->loop, &r->timer,
                     (uint64_t)tvp->tv_sec * 1000u + (uint64_t)tvp->tv_usec / 1000u + 1, on_timer,
                     r);
}

static void on_io(void *arg, int fd, unsigned events)
{
    struct resolver *r = arg;

    ares_process_fd(r->ch, events & (LOOP_READ | LOOP_ERROR) ? fd : ARES_SOCKET_BAD,
                    events & LOOP_WRITE ? fd : ARES_SOCKET_BAD);
    arm_timer(r);
}

static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct resolver *r = data;

    loop_io_set(r->loop, fd, (readable ? LOOP_READ : 0) | (writable ? LOOP_WRITE : 0), on_io, r);
}

struct resolver *resolve_create(struct loop *loop, char *err, size_t errlen)
{
    static int lib_ready;
    struct resolver *r;
    struct ares_options o;
    int rc;

    if (!lib_ready) {
        rc = ares_library_init(ARES_LIB_INIT_ALL);
        if (rc != ARES_SUCCESS) {
            snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
            return NULL;
        }
        lib_ready = 1;
    }
    r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->loop = loop;
    loop_timer_init(&r->timer);
    loop_defer_init(&r->defer);
    memset(&o, 0, sizeof(o));
    o.sock_state_cb = on_sock_state;
    o.sock_state_cb_data = r;
    o.timeout = RESOLVE_TIMEOUT_MS;
    o.tries = RESOLVE_TRIES;
    rc =
        ares_init_options(&r->ch, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
        free(r);
        return NULL;
    }
    r->ch_ok = 1;
    return r;
}

static int numeric(struct resolver *r, const char *host, const char *port)
{
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    uint16_t p = (uint16_t)strtoul(port, NULL, 10);

    memset(&a4, 0, sizeof(a4));
    memset(&a6, 0, sizeof(a6));
    if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons(p);
        add_addr(&r->result, (struct sockaddr *)&a4, sizeof(a4));
        return 1;
    }
    if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons(p);
        add_addr(&r->result, (struct sockaddr *)&a6, sizeof(a6));
        return 1;
    }
    return 0;
}

int resolve_start(struct resolver *r, const char *host, const char *port, resolve_fn fn, void *ctx)
{
    struct ares_addrinfo_hints hints;

    resolve_cancel(r);
    r->fn = fn;
    r->ctx = ctx;
    r->busy = 1;
    r->result.n = 0;
    r->err[0] = '\0';
    snprintf(r->host, sizeof(r->host), "%s", host);
    if (numeric(r, host, port)) {
        answer(r);
        return 0;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = ARES_AI_NUMERICSERV;
    /* May answer at once (hosts file): on_addrinfo only records it. */
    ares_getaddrinfo(r->ch, host, port, &hints, on_addrinfo, r);
    arm_timer(r);
    return 0;
}

void resolve_cancel(struct resolver *r)
{
    if (!r || !r->busy) {
        return;
    }
    r->quiet = 1;
    ares_cancel(r->ch); /* runs on_addrinfo (ARES_ECANCELLED) now */
    r->quiet = 0;
    r->busy = 0;
    r->answer = 0;
    r->fn = NULL;
    loop_defer_cancel(r->loop, &r->defer);
    loop_timer_stop(r->loop, &r->timer);
}

void resolve_destroy(struct resolver *r)
{
    if (!r) {
        return;
    }
    resolve_cancel(r);
    if (r->ch_ok) {
        r->quiet = 1;
        ares_destroy(r->ch); /* closes its sockets: on_sock_state unwatches them */
    }
    free(r);
}
