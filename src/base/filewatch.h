/* filewatch.h - notice when a file's content changes (inotify, on the loop).
 *
 * The file itself is not what changes in practice: editors write a temp
 * file and rename it over the old one, `cp` truncates and writes, and
 * Kubernetes mounts a ConfigMap as symlinks (`f -> ..data/f`, `..data ->
 * ..<timestamp>`) and updates it by swapping the `..data` link. So the
 * directory holding the path is watched, and the one its symlinks resolve
 * to; any event there starts a debounce timer, and when it fires the file
 * is read and hashed: the callback runs only when the content differs from
 * the content last seen. */
#ifndef KK_BASE_FILEWATCH_H
#define KK_BASE_FILEWATCH_H

#include "base/loop.h"

#include <stddef.h>
#include <stdint.h>

enum filewatch_event {
    FILEWATCH_CHANGED = 1, /* new content (also: the file is back after it was gone) */
    FILEWATCH_GONE = 2,    /* the path does not resolve to a readable file any more */
};

/* Runs on the loop, debounced: several events within debounce_ms give one call. */
typedef void (*filewatch_fn)(void *ctx, enum filewatch_event ev);

struct filewatch;

/* Watch path; its content now counts as seen. NULL with the reason in err. */
struct filewatch *filewatch_create(struct loop *loop, const char *path, uint64_t debounce_ms,
                                   filewatch_fn fn, void *ctx, char *err, size_t errlen);
/* The content as it is now counts as seen (after it was read by other means). */
void filewatch_rebase(struct filewatch *w);
/* Accepts NULL. */
void filewatch_destroy(struct filewatch *w);

#endif
