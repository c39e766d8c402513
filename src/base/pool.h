/* pool.h - a bounded list of finished objects kept for reuse.
 *
 * An object that carries buffers (a call with its request body, a job with
 * its envelopes) costs a malloc and a few buffer growths when it is new;
 * kept, the next request reuses them. The owner decides what is worth
 * keeping (small buffers, nothing while stopping) and how a reused object
 * is reset; the pool only links them and bounds how many it holds. Each
 * pooled type has a `void *` member the pool links through, named to
 * pool_init by its offset. One owner, one thread: no locks. */
#ifndef KK_BASE_POOL_H
#define KK_BASE_POOL_H

#include <stddef.h>

struct pool {
    void *head;
    size_t len, max;
    size_t link; /* offset of the objects' `void *` link member */
};

/* An empty pool holding at most max objects; link = offsetof(type, member). */
void pool_init(struct pool *p, size_t max, size_t link);
/* Keep obj: 0, or -1 when the pool is full (obj stays the caller's). */
int pool_put(struct pool *p, void *obj);
/* An object kept, or NULL when there is none. */
void *pool_get(struct pool *p);

#endif
