/* pool.c - a bounded free list, linked through the objects themselves. */
#include "base/pool.h"

#include <string.h>

void pool_init(struct pool *p, size_t max, size_t link)
{
    p->head = NULL;
    p->len = 0;
    p->max = max;
    p->link = link;
}

int pool_put(struct pool *p, void *obj)
{
    if (p->len >= p->max) {
        return -1;
    }
    memcpy((char *)obj + p->link, &p->head, sizeof(void *));
    p->head = obj;
    p->len++;
    return 0;
}

void *pool_get(struct pool *p)
{
    void *obj = p->head;

    if (obj) {
        memcpy(&p->head, (char *)obj + p->link, sizeof(void *));
        p->len--;
    }
    return obj;
}
