/* source_seen.h - request ids shared by a source and its replacement.
 *
 * On a reload a changed binding's new subscriptions go live before the
 * old ones close, so that no request finds nobody. On a channel without a
 * group KubeMQ gives every subscriber its own copy: for that moment the
 * old and the new binding would both run the same request (and write the
 * record twice). The two sources share one of these; the second to see an
 * id drops its copy, and the first answers. Bounded: it remembers the last
 * SOURCE_SEEN_MAX ids or more. Thread-safe.
 *
 * An events-store source with a checkpoint also hands its watermark to
 * its replacement here, so that the checkpoint accounts for both. */
#ifndef KK_SOURCE_SOURCE_SEEN_H
#define KK_SOURCE_SOURCE_SEEN_H

#define SOURCE_SEEN_MAX 8192

struct source_seen;
struct source_watermark;

/* One reference, for the caller. NULL when out of memory. */
struct source_seen *source_seen_create(void);
void source_seen_ref(struct source_seen *s);
/* Accepts NULL; frees with the last reference. */
void source_seen_unref(struct source_seen *s);
/* 1 the first time id is seen (it is remembered), 0 after that. An empty
 * id cannot be matched: always 1. */
int source_seen_first(struct source_seen *s, const char *id);

/* events-store: the checkpoint watermark one of the two sources put here
 * for the other (source_checkpoint.h); a reference is held. NULL clears. */
void source_seen_set_watermark(struct source_seen *s, struct source_watermark *w);
/* The watermark put here, or NULL (no reference taken). */
struct source_watermark *source_seen_watermark(struct source_seen *s);

#endif
