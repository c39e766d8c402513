/* filewatch.c - notice when a file's content changes (inotify, on the loop). */
#include "base/filewatch.h"

#include "base/buf.h"

#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

/* Config files are small; a bigger one counts as unreadable here (the
 * config loader reports its size when it is read). */
#define FILEWATCH_MAX_BYTES ((size_t)8 << 20)
#define DIR_EVENTS                                                                                 \
    (IN_CLOSE_WRITE | IN_MODIFY | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |            \
     IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF)

struct filewatch {
    struct loop *loop;
    char *path;
    uint64_t debounce_ms;
    filewatch_fn fn;
    void *ctx;
    int fd;
    int wd_dir;     /* the directory of path */
    int wd_real;    /* the directory path resolves to, when another one */
    char *real_dir; /* its name */
    int present;    /* the file was there at the last look */
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned digest_len;
    struct loop_timer debounce;
};

/* The directory part of p ("." when none), malloc'd. */
static char *dir_of(const char *p)
{
    const char *slash = strrchr(p, '/');

    if (!slash) {
        return strdup(".");
    }
    if (slash == p) {
        return strdup("/");
    }
    return strndup(p, (size_t)(slash - p));
}

/* Hash the file's content: 1, or 0 when it cannot be read. */
static int read_digest(const char *path, unsigned char *md, unsigned *mdlen)
{
    struct buf b = BUF_INIT(FILEWATCH_MAX_BYTES);
    char err[256];
    int ok;

    ok = buf_append_file(&b, path, err, sizeof(err)) == 0;
    ok = ok && EVP_Digest(b.data ? b.data : "", b.len, md, mdlen, EVP_sha256(), NULL) == 1;
    buf_free(&b);
    return ok;
}

/* Watch the directory path now resolves to, if it is not the one of path. */
static void follow_link(struct filewatch *w)
{
    char real[PATH_MAX];
    char *rd, *pd;

    if (!realpath(w->path, real)) {
        return; /* gone for now: the directory watch sees it come back */
    }
    rd = dir_of(real);
    pd = dir_of(w->path);
    if (rd && pd) {
        char pdreal[PATH_MAX];

        if (realpath(pd, pdreal) && strcmp(pdreal, rd) == 0) {
            free(rd);
            rd = NULL; /* the same directory */
        }
    }
    free(pd);
    if (w->real_dir && rd && strcmp(w->real_dir, rd) == 0) {
        free(rd);
        return;
    }
    if (w->wd_real >= 0) {
        inotify_rm_watch(w->fd, w->wd_real); /* fails once the directory is gone: fine */
        w->wd_real = -1;
    }
    free(w->real_dir);
    w->real_dir = rd;
    if (rd) {
        w->wd_real = inotify_add_watch(w->fd, rd, DIR_EVENTS);
    }
}

static void look(void *arg)
{
    struct filewatch *w = arg;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int present = read_digest(w->path, md, &mdlen);

    follow_link(w);
    if (!present) {
        if (w->present) {
            w->present = 0;
            w->digest_len = 0; /* whatever comes back is a change */
            w->fn(w->ctx, FILEWATCH_GONE);
        }
        return;
    }
    if (w->present && mdlen == w->digest_len && memcmp(md, w->digest, mdlen) == 0) {
        return; /* touched, renamed or copied over: the same content */
    }
    w->present = 1;
    memcpy(w->digest, md, mdlen);
    w->digest_len = mdlen;
    w->fn(w->ctx, FILEWATCH_CHANGED);
}

static void on_events(void *arg, int fd, unsigned events)
{
    struct filewatch *w = arg;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    int any = 0;

    /* Which file an event names does not matter: look at ours. */
    while (read(fd, buf, sizeof(buf)) > 0) {
        any = 1;
    }
    if (any) {
        loop_timer_start(w->loop, &w->debounce, w->debounce_ms, look, w);
    }
}

void filewatch_rebase(struct filewatch *w)
{
    w->present = read_digest(w->path, w->digest, &w->digest_len);
    if (!w->present) {
        w->digest_len = 0;
    }
    follow_link(w);
}

struct filewatch *filewatch_create(struct loop *loop, const char *path, uint64_t debounce_ms,
                                   filewatch_fn fn, void *ctx, char *err, size_t errlen)
{
    struct filewatch *w = calloc(1, sizeof(*w));
    char *dir = NULL;

    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->loop = loop;
    w->fd = -1;
    w->wd_dir = -1;
    w->wd_real = -1;
    w->debounce_ms = debounce_ms;
    w->fn = fn;
    w->ctx = ctx;
    loop_timer_init(&w->debounce);
    w->path = strdup(path);
    dir = w->path ? dir_of(w->path) : NULL;
    if (!dir) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0) {
        snprintf(err, errlen, "inotify: %s", strerror(errno));
        goto fail;
    }
    w->wd_dir = inotify_add_watch(w->fd, dir, DIR_EVENTS);
    if (w->wd_dir < 0) {
        snprintf(err, errlen, "cannot watch %s: %s", dir, strerror(errno));
        goto fail;
    }
    if (loop_io_set(loop, w->fd, LOOP_READ, on_events, w) < 0) {
        snprintf(err, errlen, "cannot watch %s: %s", dir, strerror(errno));
        goto fail;
    }
    filewatch_rebase(w);
    free(dir);
    return w;
fail:
    free(dir);
    filewatch_destroy(w);
    return NULL;
}

void filewatch_destroy(struct filewatch *w)
{
    if (!w) {
        return;
    }
    if (w->loop) {
        loop_timer_stop(w->loop, &w->debounce);
        if (w->fd >= 0) {
            loop_io_set(w->loop, w->fd, 0, NULL, NULL);
        }
    }
    if (w->fd >= 0) {
        close(w->fd); /* drops every watch */
    }
    free(w->real_dir);
    free(w->path);
    free(w);
}
