/* source_seen.c - request ids shared by a source and its replacement. */
#include "source/source_seen.h"

#include "source/source_checkpoint.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Two generations of open-addressing sets of 64-bit id hashes, each at
 * most half full; when the current one is full it becomes the previous
 * one. A hash of 0 marks an empty slot. */
#define SLOTS (2 * SOURCE_SEEN_MAX)

struct source_seen {
    pthread_mutex_t mu;
    int refs;
    size_t used; /* in gen[cur] */
    int cur;     /* 0 or 1 */
    struct source_watermark *watermark;
    uint64_t gen[2][SLOTS];
};

static uint64_t id_hash(const char *id)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

    for (; *id; id++) {
        h ^= (unsigned char)*id;
        h *= 0x100000001b3ULL;
    }
    return h ? h : 1;
}

/* The slot holding h, or the empty slot where it would go. */
static uint64_t *slot_of(uint64_t *set, uint64_t h)
{
    size_t i = (size_t)(h % SLOTS);

    while (set[i] && set[i] != h) {
        i = (i + 1) % SLOTS;
    }
    return &set[i];
}

struct source_seen *source_seen_create(void)
{
    struct source_seen *s = calloc(1, sizeof(*s));

    if (!s) {
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    s->refs = 1;
    return s;
}

void source_seen_ref(struct source_seen *s)
{
    pthread_mutex_lock(&s->mu);
    s->refs++;
    pthread_mutex_unlock(&s->mu);
}

void source_seen_unref(struct source_seen *s)
{
    int last;

    if (!s) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    last = --s->refs == 0;
    pthread_mutex_unlock(&s->mu);
    if (last) {
        source_watermark_unref(s->watermark);
        pthread_mutex_destroy(&s->mu);
        free(s);
    }
}

int source_seen_first(struct source_seen *s, const char *id)
{
    uint64_t h, *slot;
    int first = 1;

    if (!id || !*id) {
        return 1;
    }
    h = id_hash(id);
    pthread_mutex_lock(&s->mu);
    if (*slot_of(s->gen[!s->cur], h) == h) {
        first = 0;
    } else {
        slot = slot_of(s->gen[s->cur], h);
        if (*slot == h) {
            first = 0;
        } else {
            if (s->used == SOURCE_SEEN_MAX) {
                s->cur = !s->cur;
                memset(s->gen[s->cur], 0, sizeof(s->gen[s->cur]));
                s->used = 0;
                slot = slot_of(s->gen[s->cur], h);
            }
            *slot = h;
            s->used++;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return first;
}

void source_seen_set_watermark(struct source_seen *s, struct source_watermark *w)
{
    struct source_watermark *old;

    if (w) {
        source_watermark_ref(w);
    }
    pthread_mutex_lock(&s->mu);
    old = s->watermark;
    s->watermark = w;
    pthread_mutex_unlock(&s->mu);
    source_watermark_unref(old);
}

struct source_watermark *source_seen_watermark(struct source_seen *s)
{
    struct source_watermark *w;

    pthread_mutex_lock(&s->mu);
    w = s->watermark;
    pthread_mutex_unlock(&s->mu);
    return w;
}
