/* source_seen.h - request ids shared by a source and its replacement.
 *
 * On a reload a changed binding's new subscriptions go live before the
 * old ones close, so that no request finds nobody. On a channel without a
 * group KubeMQ gives every subscriber its own copy: for that moment the
 * old and the new binding would both run the same request (and write the
 * record twice). The two sources share one of these; the second to see an
 * id drops its copy, and the first answers. Bounded: it remembers the last
 * SOURCE_SEEN_MAX ids or more. Thread-safe. */
#ifndef KK_SOURCE_SOURCE_SEEN_H
#define KK_SOURCE_SOURCE_SEEN_H

#define SOURCE_SEEN_MAX 8192

struct source_seen;

/* One reference, for the caller. NULL when out of memory. */
struct source_seen *source_seen_create(void);
void source_seen_ref(struct source_seen *s);
/* Accepts NULL; frees with the last reference. */
void source_seen_unref(struct source_seen *s);
/* 1 the first time id is seen (it is remembered), 0 after that. An empty
 * id cannot be matched: always 1. */
int source_seen_first(struct source_seen *s, const char *id);

#endif
