/* resolve.h - host names to addresses with c-ares, on the loop.
 *
 * A lookup never blocks the loop: c-ares's sockets are watched by the loop
 * and its timeouts run on a loop timer. The answer always comes from a
 * later loop callback, even when it is known at once (an IP literal, the
 * hosts file), so a caller never hears back from inside resolve_start.
 * Nothing is cached: every lookup asks again (a service address may move). */
#ifndef KK_BASE_RESOLVE_H
#define KK_BASE_RESOLVE_H

#include "base/loop.h"

#include <stddef.h>
#include <sys/socket.h>

#define RESOLVE_MAX_ADDRS 8

struct resolve_addrs {
    int n;
    struct sockaddr_storage addr[RESOLVE_MAX_ADDRS];
    socklen_t len[RESOLVE_MAX_ADDRS];
};

/* 1 when host is an IPv4 or IPv6 literal. */
int resolve_is_ip(const char *host);
/* "127.0.0.1:50000" / "[::1]:50000". */
void resolve_format(const struct sockaddr *sa, char *dst, size_t n);

struct resolver;
/* a NULL: the lookup failed, err says why ("cannot resolve 'host': ..."). */
typedef void (*resolve_fn)(void *ctx, const struct resolve_addrs *a, const char *err);

/* NULL with the reason in err. */
struct resolver *resolve_create(struct loop *loop, char *err, size_t errlen);
/* host (a name or an IP literal) and a numeric port. One lookup at a time
 * per resolver: starting one cancels the one running. fn runs from a later
 * loop callback, never inside this call. 0, or -1 when it cannot start. */
int resolve_start(struct resolver *r, const char *host, const char *port, resolve_fn fn, void *ctx);
/* The running lookup's fn never runs. Accepts NULL. */
void resolve_cancel(struct resolver *r);
/* Accepts NULL. */
void resolve_destroy(struct resolver *r);

#endif
