/* source_checkpoint.c - the checkpoint of a kubemq.events-store binding:
 * the watermark, its text, its file, reading it at start and writing it.
 *
 * Reading at start, before the data subscription opens (the source is
 * not ready until then). Every read is a short events-store subscription
 * on the binding's client, closed as soon as it has what it needs. An
 * empty channel sends nothing, so "nothing there" can only be told by a
 * quiet time, and a slow broker would pass for an empty channel: a quiet
 * time alone never makes a start skip messages (in doubt it sends some
 * again), and it never decides whether there is a checkpoint.
 *   1. The checkpoint: the file (read when the source is created, so a
 *      broken one fails the binding's start); or, on the checkpoint
 *      channel, a marker message is stored first (not a checkpoint), then
 *      read back with StartFromLast, which therefore always finds at least
 *      the marker: when the newest message is not this binding's
 *      checkpoint, the channel is read backwards in windows of SCAN_WINDOW
 *      messages (at most SCAN_MAX) and the newest of this binding's wins.
 *   2. With a checkpoint C >= 1, a subscription at C checks that the
 *      channel still has it: a message at or after C comes at once. When
 *      it does not, the channel's last sequence L decides (StartFromLast,
 *      CONFIRM_QUIET_MS to answer): L >= C resumes after C; L < C, or no
 *      message at all, means the channel's store was cleaned: a warning,
 *      then `start_position`.
 *   3. Without one, `new_only` and `last` are made concrete by the
 *      channel's last sequence L (L + 1 and L; no message within
 *      PROBE_QUIET_MS: an empty channel, sequence 1), so that the first
 *      checkpoint written covers messages stored while the daemon is down
 *      later on, even when this run sees none.
 * While the broker cannot be reached the reads wait for it (the client
 * reconnects; the marker is tried again every READ_RETRY_MS) and a warning
 * says so every READ_WARN_EVERY_MS: the subscription never starts from
 * `start_position` in place of a checkpoint it could not read.
 *
 * Writing: every interval, when the watermark moved and no write is under
 * way; once more when the source closed and nothing is pending (the drain
 * waits for that write, source_checkpoint_flushing). A checkpoint message
 * is confirmed by the broker's answer; a file by its rename. Only one of
 * the sources sharing a watermark (the newest) writes it.
 *
 * The file writer thread: a file is replaced with write, fsync and rename
 * (then the directory's fsync). An fsync can take tens of milliseconds or
 * more on a busy or networked disk, and the loop serves every binding, so
 * each write runs in a short-lived thread of its own (one at a time per
 * binding; it inherits the loop thread's blocked signals and touches
 * nothing but its job), and the loop looks for its end with a short
 * timer. Only a last write when a binding is destroyed without its drain
 * having written it runs on the loop, after waiting for a write under way:
 * it happens once, and what comes next (exit, or a reload going on) must
 * not come before it is on disk. */
#include "source/source_checkpoint.h"
#include "source/source_internal.h"

#include "base/log.h"
#include "kubemq/kubemq_client.h"
#include "source/source_seen.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROBE_QUIET_MS      2000
#define CONFIRM_QUIET_MS    10000
#define GUARD_QUIET_MS      5000
#define READ_RETRY_MS       1000
#define READ_WARN_FIRST_MS  5000
#define READ_WARN_EVERY_MS  30000
#define SCAN_WINDOW         200
#define SCAN_MAX            20000
#define FILE_POLL_MS        10
#define FILE_MAX            (64 * 1024)
#define CHECKPOINT_METADATA "kubemq-kinesis checkpoint"

/* ---- the watermark ------------------------------------------------------ */

struct wm_entry {
    uint64_t seq;
    int done;
};

struct source_watermark {
    int refs;
    char *stream;
    int positioned, base_known;
    uint64_t highest;
    uint64_t lost_min; /* the lowest sequence never to be answered; 0: none */
    /* Taken messages from the oldest unanswered on, ascending: e[head..len).
     * e[head] is never done (done ones are let go from the front). */
    struct wm_entry *e;
    size_t head, len, cap;
    size_t outstanding;
    /* The checkpoint that writes it (the newest source sharing it) and
     * the one before, which writes again should the newest go first. */
    struct source_checkpoint *owner, *prev_owner;
};

struct source_watermark *source_watermark_create(const char *stream)
{
    struct source_watermark *w = calloc(1, sizeof(*w));

    if (!w || !(w->stream = strdup(stream))) {
        free(w);
        return NULL;
    }
    w->refs = 1;
    return w;
}

void source_watermark_ref(struct source_watermark *w)
{
    w->refs++;
}

void source_watermark_unref(struct source_watermark *w)
{
    if (!w || --w->refs > 0) {
        return;
    }
    free(w->e);
    free(w->stream);
    free(w);
}

const char *source_watermark_stream(const struct source_watermark *w)
{
    return w->stream;
}

void source_watermark_position(struct source_watermark *w, uint64_t base, int base_known)
{
    w->positioned = 1;
    w->base_known = base_known;
    if (base > w->highest) {
        w->highest = base;
    }
}

int source_watermark_positioned(const struct source_watermark *w)
{
    return w->positioned;
}

int source_watermark_base_known(const struct source_watermark *w)
{
    return w->base_known;
}

uint64_t source_watermark_mark(const struct source_watermark *w)
{
    uint64_t m = w->head < w->len ? w->e[w->head].seq - 1 : w->highest;

    if (w->lost_min && w->lost_min - 1 < m) {
        m = w->lost_min - 1;
    }
    return m;
}

uint64_t source_watermark_highest(const struct source_watermark *w)
{
    return w->highest;
}

size_t source_watermark_outstanding(const struct source_watermark *w)
{
    return w->outstanding;
}

/* The first index of [head, len) whose sequence is >= seq (or > seq). */
static size_t wm_bound(const struct source_watermark *w, uint64_t seq, int after)
{
    size_t lo = w->head, hi = w->len;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (w->e[mid].seq < seq || (after && w->e[mid].seq == seq)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static void wm_lose_seq(struct source_watermark *w, uint64_t seq)
{
    if (!w->lost_min || seq < w->lost_min) {
        w->lost_min = seq;
    }
}

int source_watermark_take(struct source_watermark *w, uint64_t seq)
{
    size_t at;

    if (seq == 0 || seq <= source_watermark_mark(w)) {
        return 0;
    }
    if (seq > w->highest) {
        w->highest = seq;
    }
    if (w->len == w->cap && w->head > 0) {
        memmove(w->e, w->e + w->head, (w->len - w->head) * sizeof(*w->e));
        w->len -= w->head;
        w->head = 0;
    }
    if (w->len == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        struct wm_entry *e = realloc(w->e, cap * sizeof(*e));

        if (!e) {
            wm_lose_seq(w, seq); /* never past what could not be tracked */
            return -1;
        }
        w->e = e;
        w->cap = cap;
    }
    /* In order as a rule; two sources during a reload may interleave. */
    at = w->len == w->head || w->e[w->len - 1].seq <= seq ? w->len : wm_bound(w, seq, 1);
    memmove(w->e + at + 1, w->e + at, (w->len - at) * sizeof(*w->e));
    w->e[at].seq = seq;
    w->e[at].done = 0;
    w->len++;
    w->outstanding++;
    return 1;
}

/* One unanswered entry of seq, answered; 0 when there is none. */
static int wm_finish(struct source_watermark *w, uint64_t seq)
{
    size_t i = wm_bound(w, seq, 0);

    while (i < w->len && w->e[i].seq == seq && w->e[i].done) {
        i++;
    }
    if (i >= w->len || w->e[i].seq != seq) {
        return 0;
    }
    w->e[i].done = 1;
    w->outstanding--;
    while (w->head < w->len && w->e[w->head].done) {
        w->head++;
    }
    if (w->head == w->len) {
        w->head = w->len = 0;
    }
    return 1;
}

void source_watermark_done(struct source_watermark *w, uint64_t seq)
{
    wm_finish(w, seq);
}

void source_watermark_lose(struct source_watermark *w, uint64_t seq)
{
    if (wm_finish(w, seq)) {
        wm_lose_seq(w, seq);
    }
}

/* ---- the text ----------------------------------------------------------- */

int source_checkpoint_format(const char *binding, const char *channel, uint64_t seq,
                             struct buf *out)
{
    char when[32];
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (buf_append_str(out, "{\"binding\":") < 0 ||
        buf_append_json_str(out, binding, strlen(binding)) < 0 ||
        buf_append_str(out, ",\"channel\":") < 0 ||
        buf_append_json_str(out, channel, strlen(channel)) < 0 ||
        buf_appendf(out, ",\"sequence\":%llu,\"time\":\"%s\"}", (unsigned long long)seq, when) <
            0) {
        return -1;
    }
    return 0;
}

int source_checkpoint_parse(const void *text, size_t len, const char *binding, const char *channel,
                            uint64_t *seq, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    const json_t *b, *c, *s;
    int rc = -1;

    if (!root) {
        snprintf(err, errlen, "not JSON (%s, line %d)", jerr.text, jerr.line);
        return -1;
    }
    b = json_object_get(root, "binding");
    c = json_object_get(root, "channel");
    s = json_object_get(root, "sequence");
    if (!json_is_object(root)) {
        snprintf(err, errlen, "not a JSON object");
    } else if (!json_is_string(b) || !json_is_string(c)) {
        snprintf(err, errlen, "\"binding\" and \"channel\" must be strings");
    } else if (!json_is_integer(s) || json_integer_value(s) < 0) {
        snprintf(err, errlen, "\"sequence\" must be an integer >= 0");
    } else if (strcmp(json_string_value(b), binding) != 0 ||
               strcmp(json_string_value(c), channel) != 0) {
        snprintf(err, errlen,
                 "the checkpoint of binding \"%.200s\" on channel \"%.200s\", not of binding "
                 "\"%.200s\" on channel \"%.200s\"",
                 json_string_value(b), json_string_value(c), binding, channel);
        rc = 1;
    } else {
        *seq = (uint64_t)json_integer_value(s);
        rc = 0;
    }
    json_decref(root);
    return rc;
}

/* ---- the file ----------------------------------------------------------- */

int source_checkpoint_file_read(const char *path, const char *binding, const char *channel,
                                uint64_t *seq, char *err, size_t errlen)
{
    char *text = NULL, why[1024];
    struct stat st;
    size_t len = 0;
    ssize_t n;
    int fd, rc = -1;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            return 0;
        }
        snprintf(err, errlen, "cannot read \"%s\": %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "cannot read \"%s\": %s", path,
                 S_ISDIR(st.st_mode) ? "it is a directory" : "not a regular file");
        goto out;
    }
    text = malloc(FILE_MAX + 1);
    if (!text) {
        snprintf(err, errlen, "cannot read \"%s\": out of memory", path);
        goto out;
    }
    while (len <= FILE_MAX && (n = read(fd, text + len, FILE_MAX + 1 - len)) != 0) {
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            snprintf(err, errlen, "cannot read \"%s\": %s", path, strerror(errno));
            goto out;
        }
        len += (size_t)n;
    }
    if (len > FILE_MAX) {
        snprintf(err, errlen, "\"%s\" is not a checkpoint (larger than %d KiB); fix or remove it",
                 path, FILE_MAX / 1024);
        goto out;
    }
    rc = source_checkpoint_parse(text, len, binding, channel, seq, why, sizeof(why));
    if (rc < 0) {
        snprintf(err, errlen, "\"%s\" is not a checkpoint (%s); fix or remove it", path,
                 len ? why : "empty");
    } else if (rc > 0) {
        snprintf(err, errlen, "\"%s\" is %s; give each binding a file of its own", path, why);
        rc = -1;
    } else {
        rc = 1;
    }
out:
    free(text);
    close(fd);
    return rc;
}

int source_checkpoint_file_write(const char *path, const void *body, size_t len, char *err,
                                 size_t errlen)
{
    char tmp[4200], dir[4200];
    const char *slash = strrchr(path, '/');
    size_t off = 0;
    int fd, dfd;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        snprintf(err, errlen, "the path is too long");
        return -1;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create \"%s\": %s", tmp, strerror(errno));
        return -1;
    }
    while (off < len) {
        ssize_t n = write(fd, (const char *)body + off, len - off);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            snprintf(err, errlen, "cannot write \"%s\": %s", tmp,
                     n < 0 ? strerror(errno) : "no progress");
            goto fail;
        }
        off += (size_t)n;
    }
    if (fsync(fd) < 0) {
        snprintf(err, errlen, "cannot fsync \"%s\": %s", tmp, strerror(errno));
        goto fail;
    }
    if (close(fd) < 0) {
        fd = -1;
        snprintf(err, errlen, "cannot write \"%s\": %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        snprintf(err, errlen, "cannot rename \"%s\" to \"%s\": %s", tmp, path, strerror(errno));
        goto fail;
    }
    /* The rename itself is durable once the directory is. */
    if (!slash) {
        snprintf(dir, sizeof(dir), ".");
    } else {
        snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd); /* some file systems refuse it (EINVAL): the rename stands */
        close(dfd);
    }
    return 0;
fail:
    if (fd >= 0) {
        close(fd);
    }
    unlink(tmp);
    return -1;
}

/* A write in its own thread (see the top of the file). */
struct file_job {
    pthread_t thread;
    char *path;
    struct buf body;
    uint64_t seq;
    atomic_int finished;
    int rc;
    char err[512];
};

static void *file_job_run(void *arg)
{
    struct file_job *j = arg;

    j->rc =
        source_checkpoint_file_write(j->path, j->body.data, j->body.len, j->err, sizeof(j->err));
    atomic_store(&j->finished, 1);
    return NULL;
}

static void file_job_free(struct file_job *j)
{
    if (j) {
        free(j->path);
        buf_free(&j->body);
        free(j);
    }
}

/* ---- a running checkpoint ------------------------------------------------ */

/* One read of a channel: an events-store subscription closed as soon as it
 * has what it needs, or after quiet_ms without a message once subscribed. */
struct probe {
    struct source_checkpoint *ck;
    struct kubemq_subscription *sub;
    uint64_t until; /* done once a sequence >= until came; 0: after the first */
    uint64_t quiet_ms;
    uint64_t first, last; /* sequences of the first and last message; 0: none */
    int ended;
    struct loop_timer quiet;
    struct loop_defer end;
    void (*on_message)(struct source_checkpoint *ck, const struct kubemq_request *m);
    void (*on_end)(struct source_checkpoint *ck);
};

enum step {
    STEP_IDLE,
    STEP_STORE_MARK,   /* kubemq: the marker written to the checkpoint channel */
    STEP_STORE_LAST,   /* the checkpoint channel's last message */
    STEP_STORE_WINDOW, /* a window further back */
    STEP_DATA_AT,      /* does the channel still have the checkpoint's message? */
    STEP_DATA_LAST,    /* the channel's last sequence */
    STEP_RUNNING,      /* the data subscription started */
};

struct source_checkpoint {
    struct source *s;
    struct loop *loop;
    int kind;
    char *channel; /* kubemq: the checkpoint channel */
    char *file;
    char where[600]; /* "file \"/x\"" or "channel 'x.checkpoint'" */
    uint64_t interval_ms;
    struct source_watermark *w;
    struct metrics_series *gauge;

    /* Reading the start. */
    struct source_conn *conn;
    source_checkpoint_go_fn go;
    enum step step;
    struct probe probe;
    int have;     /* a checkpoint was found */
    uint64_t seq; /* its sequence */
    uint64_t lo, hi, scanned, newest_ours;
    int have_ours;
    struct kubemq_call *mark_call;
    struct loop_timer retry;
    char why[512]; /* why reading waits, from the last failure */
    struct loop_timer read_warn;

    /* Writing. */
    struct loop_timer tick;
    int have_written;
    uint64_t written;
    int writing;
    uint64_t writing_seq;
    struct kubemq_call *call;
    struct file_job *job;
    struct loop_timer poll;
    int drained, final_failed, failing;
    size_t lost; /* taken and never answered (abandoned) */
};

static const char *binding_of(const struct source_checkpoint *ck)
{
    return ck->s->binding;
}

static const char *start_name(int pos)
{
    static const char *const names[] = {"new_only", "first", "last",
                                        "sequence", "time",  "time_delta"};

    return pos >= 0 && pos <= SOURCE_START_TIME_DELTA ? names[pos] : "?";
}

static int is_owner(const struct source_checkpoint *ck)
{
    return ck->w->owner == ck;
}

/* ---- writing ---- */

static int due(const struct source_checkpoint *ck, uint64_t mark)
{
    if (!source_watermark_positioned(ck->w)) {
        return 0;
    }
    if (ck->have_written) {
        return mark != ck->written;
    }
    return mark > 0 || source_watermark_base_known(ck->w);
}

static void wrote(struct source_checkpoint *ck, uint64_t seq, int ok, const char *err)
{
    ck->writing = 0;
    if (ok) {
        ck->have_written = 1;
        ck->written = seq;
        metrics_gauge_set(ck->gauge, (int64_t)seq);
        if (ck->failing) {
            log_info(binding_of(ck), "binding %s: checkpoint: written again (sequence %llu)",
                     binding_of(ck), (unsigned long long)seq);
        }
        ck->failing = 0;
        log_debug(binding_of(ck), "checkpoint: sequence %llu written to %s",
                  (unsigned long long)seq, ck->where);
    } else if (ck->drained) {
        ck->final_failed = 1;
        log_error(binding_of(ck),
                  "binding %s: checkpoint: could not write sequence %llu to %s: %s; the next "
                  "start repeats the messages after sequence %llu",
                  binding_of(ck), (unsigned long long)seq, ck->where, err,
                  (unsigned long long)(ck->have_written ? ck->written : 0));
    } else if (!ck->failing) {
        ck->failing = 1;
        log_warn(binding_of(ck),
                 "binding %s: checkpoint: could not write sequence %llu to %s: %s; trying again "
                 "every %llu ms",
                 binding_of(ck), (unsigned long long)seq, ck->where, err,
                 (unsigned long long)ck->interval_ms);
    }
}

static void kick(struct source_checkpoint *ck);

static void on_sent(void *ctx, int status, const char *err)
{
    struct source_checkpoint *ck = ctx;

    ck->call = NULL;
    wrote(ck, ck->writing_seq, status == KUBEMQ_STATUS_OK && !err, err ? err : "failed");
    if (ck->drained) {
        kick(ck); /* the last one, if it moved meanwhile */
    }
}

static void poll_job(void *arg)
{
    struct source_checkpoint *ck = arg;
    struct file_job *j = ck->job;

    if (!atomic_load(&j->finished)) {
        loop_timer_start(ck->loop, &ck->poll, FILE_POLL_MS, poll_job, ck);
        return;
    }
    pthread_join(j->thread, NULL);
    ck->job = NULL;
    wrote(ck, j->seq, j->rc == 0, j->err);
    file_job_free(j);
    if (ck->drained) {
        kick(ck);
    }
}

/* The text of the checkpoint seq (with a newline in a file). */
static int body_of(const struct source_checkpoint *ck, uint64_t seq, struct buf *out)
{
    if (source_checkpoint_format(binding_of(ck), ck->s->channel, seq, out) < 0) {
        return -1;
    }
    return ck->kind == SOURCE_CHECKPOINT_FILE ? buf_append_char(out, '\n') : 0;
}

static void write_now(struct source_checkpoint *ck, uint64_t seq)
{
    struct buf body = BUF_INIT(4096);

    if (body_of(ck, seq, &body) < 0) {
        buf_free(&body);
        wrote(ck, seq, 0, "out of memory");
        return;
    }
    ck->writing = 1;
    ck->writing_seq = seq;
    if (ck->kind == SOURCE_CHECKPOINT_KUBEMQ) {
        ck->call = kubemq_send_event(ck->conn->client, 1, ck->channel, body.data, body.len,
                                     CHECKPOINT_METADATA, on_sent, ck);
        buf_free(&body);
        if (!ck->call) {
            wrote(ck, seq, 0, "out of memory");
        }
        return;
    }
    ck->job = calloc(1, sizeof(*ck->job));
    if (!ck->job || !(ck->job->path = strdup(ck->file))) {
        file_job_free(ck->job);
        ck->job = NULL;
        buf_free(&body);
        wrote(ck, seq, 0, "out of memory");
        return;
    }
    ck->job->body = body;
    ck->job->seq = seq;
    atomic_init(&ck->job->finished, 0);
    if (pthread_create(&ck->job->thread, NULL, file_job_run, ck->job) != 0) {
        file_job_free(ck->job);
        ck->job = NULL;
        wrote(ck, seq, 0, "cannot start the writer thread");
        return;
    }
    loop_timer_start(ck->loop, &ck->poll, FILE_POLL_MS, poll_job, ck);
}

static void kick(struct source_checkpoint *ck)
{
    uint64_t mark;

    if (!is_owner(ck) || ck->writing || !ck->conn || (ck->drained && ck->final_failed)) {
        return;
    }
    mark = source_watermark_mark(ck->w);
    if (due(ck, mark)) {
        write_now(ck, mark);
    }
}

static void on_tick(void *arg)
{
    struct source_checkpoint *ck = arg;

    kick(ck);
    loop_timer_start(ck->loop, &ck->tick, ck->interval_ms, on_tick, ck);
}

/* ---- reading ---- */

static void probe_finish(struct probe *p);

static void probe_end_cb(void *arg)
{
    struct probe *p = arg;

    kubemq_subscription_close(p->sub);
    p->sub = NULL;
    p->on_end(p->ck); /* may open the next read in p */
}

static void probe_finish(struct probe *p)
{
    if (p->ended) {
        return;
    }
    p->ended = 1;
    loop_timer_stop(p->ck->loop, &p->quiet);
    /* Not inside the subscription's callback. */
    loop_defer(p->ck->loop, &p->end, probe_end_cb, p);
}

static void probe_quiet_cb(void *arg)
{
    probe_finish(arg);
}

static int probe_on_request(void *ctx, struct kubemq_request *m)
{
    struct probe *p = ctx;
    uint64_t seq = m->sequence;

    if (!p->ended) {
        if (!p->first) {
            p->first = seq;
        }
        p->last = seq;
        if (p->on_message) {
            p->on_message(p->ck, m);
        }
        if (!p->until || seq >= p->until) {
            probe_finish(p);
        } else {
            loop_timer_start(p->ck->loop, &p->quiet, p->quiet_ms, probe_quiet_cb, p);
        }
    }
    kubemq_request_free(m);
    return KUBEMQ_TAKEN;
}

static void probe_on_state(void *ctx, enum kubemq_sub_state state, const char *text)
{
    struct probe *p = ctx;
    struct source_checkpoint *ck = p->ck;

    if (state == KUBEMQ_SUB_SUBSCRIBED) {
        if (!p->ended) {
            loop_timer_start(ck->loop, &p->quiet, p->quiet_ms, probe_quiet_cb, p);
        }
        return;
    }
    /* Lost: it subscribes again by itself; the quiet time starts anew then. */
    loop_timer_stop(ck->loop, &p->quiet);
    snprintf(ck->why, sizeof(ck->why), "%s", text);
    if (state == KUBEMQ_SUB_GAVE_UP) {
        log_error(binding_of(ck),
                  "binding %s: checkpoint: gave up reading where to start (%s); the binding does "
                  "not subscribe",
                  binding_of(ck), text);
    }
}

static void probe_cancel(struct probe *p)
{
    if (!p->ck) {
        return;
    }
    loop_timer_stop(p->ck->loop, &p->quiet);
    loop_defer_cancel(p->ck->loop, &p->end);
    kubemq_subscription_close(p->sub);
    p->sub = NULL;
    p->ended = 1;
}

static void probe_open(struct source_checkpoint *ck, const char *channel, int start, int64_t value,
                       uint64_t until, uint64_t quiet_ms,
                       void (*on_message)(struct source_checkpoint *,
                                          const struct kubemq_request *),
                       void (*on_end)(struct source_checkpoint *))
{
    struct probe *p = &ck->probe;
    struct kubemq_sub_opts so;
    char err[512];

    memset(p, 0, sizeof(*p));
    p->ck = ck;
    p->until = until;
    p->quiet_ms = quiet_ms;
    p->on_message = on_message;
    p->on_end = on_end;
    loop_timer_init(&p->quiet);
    loop_defer_init(&p->end);
    memset(&so, 0, sizeof(so));
    so.type = KUBEMQ_EVENTS_STORE;
    so.channel = channel;
    so.group = "";
    so.start = (enum kubemq_store_start)start;
    so.start_value = value;
    so.quiet = 1;
    p->sub = kubemq_subscribe(ck->conn->client, &so, probe_on_request, probe_on_state, p, err,
                              sizeof(err));
    if (!p->sub) {
        log_error(binding_of(ck), "binding %s: checkpoint: cannot read channel '%s': %s",
                  binding_of(ck), channel, err);
        snprintf(ck->why, sizeof(ck->why), "%s", err);
        p->ended = 1;
    }
}

static void read_warn_cb(void *arg)
{
    struct source_checkpoint *ck = arg;
    const char *addr = kubemq_client_address(ck->conn->client);
    char what[800], reason[700];

    if (ck->step == STEP_STORE_MARK || ck->step == STEP_STORE_LAST ||
        ck->step == STEP_STORE_WINDOW) {
        snprintf(what, sizeof(what), "the checkpoint on %s", ck->where);
    } else {
        snprintf(what, sizeof(what), "the last sequence of channel '%s'", ck->s->channel);
    }
    if (!kubemq_client_ready(ck->conn->client)) {
        snprintf(reason, sizeof(reason), "the broker at %s is not reachable", addr);
    } else {
        snprintf(reason, sizeof(reason), "%s", ck->why[0] ? ck->why : "no answer yet");
    }
    log_warn(binding_of(ck),
             "binding %s: checkpoint: cannot read %s yet: %s; still trying (the subscription "
             "starts once it is read, never from start_position in its place)",
             binding_of(ck), what, reason);
    loop_timer_start(ck->loop, &ck->read_warn, READ_WARN_EVERY_MS, read_warn_cb, ck);
}

/* The start is known: position the watermark and subscribe. */
static void go(struct source_checkpoint *ck, int start, int64_t value, uint64_t base,
               int base_known)
{
    struct source *s = ck->s;
    char err[512];

    loop_timer_stop(ck->loop, &ck->read_warn);
    if (source_watermark_positioned(ck->w)) {
        /* The source this one replaces got there first (a reload): go on
         * after what it took. */
        start = KUBEMQ_START_SEQUENCE;
        value = (int64_t)source_watermark_highest(ck->w) + 1;
    } else {
        source_watermark_position(ck->w, base, base_known);
    }
    ck->step = STEP_RUNNING;
    if (ck->go(ck->conn, start, value, err, sizeof(err)) < 0) {
        log_error(binding_of(ck), "binding %s: cannot subscribe to %s: %s", binding_of(ck),
                  s->connection, err);
    }
    loop_timer_start(ck->loop, &ck->tick, ck->interval_ms, on_tick, ck);
}

/* Without a usable checkpoint: start_position, with new_only and last made
 * concrete by the channel's last sequence (last: 0 for an empty channel). */
static void go_start_position(struct source_checkpoint *ck, uint64_t last)
{
    struct source *s = ck->s;
    int pos = s->store_start - 1;

    switch (pos) {
    case SOURCE_START_NEW_ONLY:
        go(ck, KUBEMQ_START_SEQUENCE, (int64_t)last + 1, last, 1);
        break;
    case SOURCE_START_LAST:
        go(ck, KUBEMQ_START_SEQUENCE, last ? (int64_t)last : 1, last ? last - 1 : 0, 1);
        break;
    case SOURCE_START_SEQUENCE:
        go(ck, s->store_start, s->store_value, (uint64_t)s->store_value - 1, 1);
        break;
    default: /* first, time, time_delta: nothing before the first message matters */
        go(ck, s->store_start, s->store_value, 0, 0);
        break;
    }
}

static void resume(struct source_checkpoint *ck)
{
    ck->have_written = 1;
    ck->written = ck->seq;
    metrics_gauge_set(ck->gauge, (int64_t)ck->seq);
    log_info(binding_of(ck),
             "binding %s: checkpoint: resuming channel '%s' after sequence %llu (from %s)",
             binding_of(ck), ck->s->channel, (unsigned long long)ck->seq, ck->where);
    go(ck, KUBEMQ_START_SEQUENCE, (int64_t)ck->seq + 1, ck->seq, 1);
}

static void data_last_end(struct source_checkpoint *ck)
{
    uint64_t last = ck->probe.first;
    int pos = ck->s->store_start - 1;

    if (ck->have && ck->seq >= 1) {
        /* Checking the checkpoint: the channel's last sequence decides. */
        if (last >= ck->seq) {
            resume(ck); /* it is there (or, gone by age, what followed it is) */
            return;
        }
        log_warn(binding_of(ck),
                 "binding %s: checkpoint: sequence %llu (from %s) is beyond the last message of "
                 "channel '%s' (%s%llu): its store was cleaned or it is another one; starting "
                 "from start_position %s",
                 binding_of(ck), (unsigned long long)ck->seq, ck->where, ck->s->channel,
                 last ? "sequence " : "none within 10 s; ", (unsigned long long)last,
                 start_name(pos));
        go_start_position(ck, last);
        return;
    }
    if (!last) {
        /* Nothing came: an empty channel (or a broker too slow to answer:
         * then this sends its history again, never skips it). Sequence 1 is
         * concrete, so checkpoint 0 is written and a message stored while
         * the daemon is down after this run is sent by the next start. */
        log_info(binding_of(ck),
                 "binding %s: checkpoint: none yet on %s; starting from start_position %s (no "
                 "message on channel '%s' yet)",
                 binding_of(ck), ck->where, start_name(pos), ck->s->channel);
        go_start_position(ck, 0);
        return;
    }
    log_info(binding_of(ck),
             "binding %s: checkpoint: none yet on %s; starting from start_position %s (the "
             "channel's last sequence is %llu)",
             binding_of(ck), ck->where, start_name(pos), (unsigned long long)last);
    go_start_position(ck, last);
}

static void read_data_last(struct source_checkpoint *ck, uint64_t quiet_ms)
{
    ck->step = STEP_DATA_LAST;
    probe_open(ck, ck->s->channel, KUBEMQ_START_LAST, 0, 0, quiet_ms, NULL, data_last_end);
}

static void data_at_end(struct source_checkpoint *ck)
{
    if (ck->probe.first >= ck->seq) {
        resume(ck); /* the channel has it (or, cleaned by age, what came after it) */
        return;
    }
    /* Not at once: beyond the channel's last message, or a slow broker. Its
     * last sequence decides, with time to answer. */
    read_data_last(ck, CONFIRM_QUIET_MS);
}

/* The checkpoint (or none) is known: check it against the channel. */
static void store_read(struct source_checkpoint *ck)
{
    int pos = ck->s->store_start - 1;

    if (ck->have && ck->seq >= 1) {
        ck->step = STEP_DATA_AT;
        probe_open(ck, ck->s->channel, KUBEMQ_START_SEQUENCE, (int64_t)ck->seq, 0, PROBE_QUIET_MS,
                   NULL, data_at_end);
    } else if (ck->have) {
        ck->have_written = 1; /* 0: nothing answered yet */
        log_info(binding_of(ck), "binding %s: checkpoint: resuming channel '%s' from the start",
                 binding_of(ck), ck->s->channel);
        go(ck, KUBEMQ_START_SEQUENCE, 1, 0, 1);
    } else if (pos == SOURCE_START_NEW_ONLY || pos == SOURCE_START_LAST) {
        read_data_last(ck, PROBE_QUIET_MS);
    } else {
        log_info(binding_of(ck),
                 "binding %s: checkpoint: none yet on %s; starting from start_position %s",
                 binding_of(ck), ck->where, start_name(pos));
        go_start_position(ck, 0);
    }
}

/* A message of the checkpoint channel: this binding's? */
static void store_message(struct source_checkpoint *ck, const struct kubemq_request *m)
{
    char err[1024];
    uint64_t seq;
    int rc = source_checkpoint_parse(m->body, m->body_len, binding_of(ck), ck->s->channel, &seq,
                                     err, sizeof(err));

    if (rc == 0) {
        if (!ck->have_ours || m->sequence > ck->newest_ours) {
            ck->have_ours = 1;
            ck->newest_ours = m->sequence;
            ck->seq = seq;
        }
    } else if (rc < 0) {
        log_debug(binding_of(ck), "checkpoint: message %llu of %s is not a checkpoint (%s)",
                  (unsigned long long)m->sequence, ck->where, err);
    }
}

static void store_window(struct source_checkpoint *ck);

static void store_window_end(struct source_checkpoint *ck)
{
    ck->scanned += ck->hi - ck->lo + 1;
    if (ck->have_ours) {
        ck->have = 1;
        store_read(ck);
        return;
    }
    if (ck->lo <= 1 || ck->scanned >= SCAN_MAX) {
        if (ck->lo > 1) {
            log_warn(binding_of(ck),
                     "binding %s: checkpoint: none of this binding among the last %llu messages "
                     "of %s (other bindings' checkpoints)",
                     binding_of(ck), (unsigned long long)ck->scanned, ck->where);
        }
        store_read(ck);
        return;
    }
    ck->hi = ck->lo - 1;
    ck->lo = ck->hi > SCAN_WINDOW ? ck->hi - SCAN_WINDOW + 1 : 1;
    store_window(ck);
}

static void store_window(struct source_checkpoint *ck)
{
    ck->step = STEP_STORE_WINDOW;
    log_debug(binding_of(ck), "checkpoint: reading sequences %llu to %llu of %s",
              (unsigned long long)ck->lo, (unsigned long long)ck->hi, ck->where);
    /* Those messages exist (a later one was seen): the quiet time only
     * guards against a broker that lost them. */
    probe_open(ck, ck->channel, KUBEMQ_START_SEQUENCE, (int64_t)ck->lo, ck->hi, GUARD_QUIET_MS,
               store_message, store_window_end);
}

static void store_mark(struct source_checkpoint *ck);

static void store_retry_cb(void *arg)
{
    store_mark(arg);
}

static void store_last_end(struct source_checkpoint *ck)
{
    uint64_t last = ck->probe.first;

    if (!last) {
        /* The marker was stored: the broker owes us at least that one. */
        snprintf(ck->why, sizeof(ck->why), "no message came back from %.400s", ck->where);
        loop_timer_start(ck->loop, &ck->retry, READ_RETRY_MS, store_retry_cb, ck);
        ck->step = STEP_STORE_MARK;
    } else if (ck->have_ours) {
        ck->have = 1; /* the newest message is this binding's checkpoint */
        store_read(ck);
    } else if (last > 1) {
        /* The marker, or another binding's: look further back. */
        ck->hi = last - 1;
        ck->lo = ck->hi > SCAN_WINDOW ? ck->hi - SCAN_WINDOW + 1 : 1;
        ck->scanned = 1;
        store_window(ck);
    } else {
        store_read(ck); /* only the marker: no checkpoint yet */
    }
}

static void on_marked(void *ctx, int status, const char *err)
{
    struct source_checkpoint *ck = ctx;

    ck->mark_call = NULL;
    if (status != KUBEMQ_STATUS_OK || err) {
        snprintf(ck->why, sizeof(ck->why), "%s", err ? err : "failed");
        loop_timer_start(ck->loop, &ck->retry, READ_RETRY_MS, store_retry_cb, ck);
        return;
    }
    ck->step = STEP_STORE_LAST;
    probe_open(ck, ck->channel, KUBEMQ_START_LAST, 0, 0, GUARD_QUIET_MS, store_message,
               store_last_end);
}

/* An empty channel sends nothing, so "nothing came" could only be told by
 * waiting, and a slow broker would pass for an empty channel. A marker
 * message (not a checkpoint) is stored first; reading back from the last
 * message then always finds one, and the read never depends on a wait. */
static void store_mark(struct source_checkpoint *ck)
{
    struct buf body = BUF_INIT(4096);

    ck->step = STEP_STORE_MARK;
    if (buf_append_str(&body, "{\"binding\":") < 0 ||
        buf_append_json_str(&body, binding_of(ck), strlen(binding_of(ck))) < 0 ||
        buf_append_str(&body, ",\"channel\":") < 0 ||
        buf_append_json_str(&body, ck->s->channel, strlen(ck->s->channel)) < 0 ||
        buf_append_str(&body, ",\"reading\":true}") < 0 ||
        !(ck->mark_call = kubemq_send_event(ck->conn->client, 1, ck->channel, body.data, body.len,
                                            CHECKPOINT_METADATA, on_marked, ck))) {
        snprintf(ck->why, sizeof(ck->why), "out of memory");
        loop_timer_start(ck->loop, &ck->retry, READ_RETRY_MS, store_retry_cb, ck);
    }
    buf_free(&body);
}

/* ---- life ---- */

struct source_checkpoint *source_checkpoint_create(struct source *s, const struct source_options *o,
                                                   char *err, size_t errlen)
{
    struct source_checkpoint *ck = calloc(1, sizeof(*ck));
    char why[1024];
    int rc;

    if (!ck) {
        snprintf(err, errlen, "checkpoint: out of memory");
        return NULL;
    }
    ck->s = s;
    ck->loop = s->loop;
    ck->kind = o->checkpoint;
    ck->interval_ms = o->checkpoint_interval_ms > 0 ? (uint64_t)o->checkpoint_interval_ms : 1000;
    ck->gauge = s->metrics.checkpoint_sequence;
    loop_timer_init(&ck->read_warn);
    loop_timer_init(&ck->retry);
    loop_timer_init(&ck->tick);
    loop_timer_init(&ck->poll);
    ck->w = source_watermark_create(s->connection);
    if (!ck->w) {
        snprintf(err, errlen, "checkpoint: out of memory");
        goto fail;
    }
    ck->w->owner = ck;
    if (ck->kind == SOURCE_CHECKPOINT_FILE) {
        ck->file = strdup(o->checkpoint_file ? o->checkpoint_file : "");
        if (!ck->file) {
            snprintf(err, errlen, "checkpoint: out of memory");
            goto fail;
        }
        snprintf(ck->where, sizeof(ck->where), "file \"%s\"", ck->file);
        rc = source_checkpoint_file_read(ck->file, s->binding, s->channel, &ck->seq, why,
                                         sizeof(why));
        if (rc < 0) {
            snprintf(err, errlen, "checkpoint_file: %s", why);
            goto fail;
        }
        ck->have = rc == 1;
    } else {
        ck->channel = strdup(o->checkpoint_channel ? o->checkpoint_channel : "");
        if (!ck->channel) {
            snprintf(err, errlen, "checkpoint: out of memory");
            goto fail;
        }
        snprintf(ck->where, sizeof(ck->where), "channel '%s'", ck->channel);
    }
    return ck;
fail:
    source_checkpoint_destroy(ck);
    return NULL;
}

int source_checkpoint_start(struct source_checkpoint *ck, struct source_conn *c,
                            source_checkpoint_go_fn gofn, char *err, size_t errlen)
{
    ck->conn = c;
    ck->go = gofn;
    if (source_watermark_positioned(ck->w)) {
        log_info(binding_of(ck),
                 "binding %s: checkpoint: going on after sequence %llu, where the binding it "
                 "replaces is",
                 binding_of(ck), (unsigned long long)source_watermark_highest(ck->w));
        go(ck, KUBEMQ_START_SEQUENCE, (int64_t)source_watermark_highest(ck->w) + 1, 0, 0);
        return 0;
    }
    loop_timer_start(ck->loop, &ck->read_warn, READ_WARN_FIRST_MS, read_warn_cb, ck);
    if (ck->kind == SOURCE_CHECKPOINT_KUBEMQ) {
        store_mark(ck);
    } else {
        store_read(ck);
    }
    return 0;
}

/* A read under way stops. */
static void read_cancel(struct source_checkpoint *ck)
{
    probe_cancel(&ck->probe);
    kubemq_call_cancel(ck->mark_call);
    ck->mark_call = NULL;
    loop_timer_stop(ck->loop, &ck->retry);
    loop_timer_stop(ck->loop, &ck->read_warn);
}

void source_checkpoint_close(struct source_checkpoint *ck)
{
    if (ck->step != STEP_RUNNING && ck->step != STEP_IDLE) {
        read_cancel(ck);
        ck->step = STEP_IDLE;
    }
}

void source_checkpoint_take(struct source_checkpoint *ck, uint64_t seq)
{
    if (source_watermark_take(ck->w, seq) < 0) {
        log_error(binding_of(ck),
                  "binding %s: checkpoint: out of memory; it stays below sequence %llu until "
                  "the next start",
                  binding_of(ck), (unsigned long long)seq);
    }
}

void source_checkpoint_done(struct source_checkpoint *ck, uint64_t seq, int abandoned)
{
    if (abandoned) {
        source_watermark_lose(ck->w, seq);
        ck->lost++;
    } else {
        source_watermark_done(ck->w, seq);
    }
}

void source_checkpoint_drained(struct source_checkpoint *ck)
{
    ck->drained = 1;
    kick(ck);
}

int source_checkpoint_flushing(const struct source_checkpoint *ck)
{
    if (!is_owner(ck)) {
        return 0;
    }
    return ck->writing ||
           (ck->drained && !ck->final_failed && ck->conn && due(ck, source_watermark_mark(ck->w)));
}

void source_checkpoint_share(struct source_checkpoint *ck, struct source_seen *seen)
{
    struct source_watermark *other = seen ? source_seen_watermark(seen) : NULL;

    if (!seen || other == ck->w) {
        return;
    }
    if (!other) {
        source_seen_set_watermark(seen, ck->w); /* for the source replacing this one */
        return;
    }
    if (strcmp(source_watermark_stream(other), source_watermark_stream(ck->w)) != 0 ||
        source_watermark_positioned(ck->w)) {
        return; /* another channel: its sequences are not ours */
    }
    /* The replaced source's: both count in it, and this one writes it. */
    source_watermark_ref(other);
    if (ck->w->owner == ck) {
        ck->w->owner = NULL;
    }
    source_watermark_unref(ck->w);
    ck->w = other;
    other->prev_owner = other->owner;
    other->owner = ck;
}

void source_checkpoint_destroy(struct source_checkpoint *ck)
{
    struct source_request *r;
    struct source_watermark *w;

    if (!ck) {
        return;
    }
    w = ck->w;
    if (ck->loop) {
        read_cancel(ck);
    }
    loop_timer_stop(ck->loop, &ck->tick);
    loop_timer_stop(ck->loop, &ck->poll);
    if (ck->job) {
        pthread_join(ck->job->thread, NULL);
        wrote(ck, ck->job->seq, ck->job->rc == 0, ck->job->err);
        file_job_free(ck->job);
        ck->job = NULL;
    }
    if (w) {
        /* What is still taken was not answered: never counted as done. */
        for (r = ck->s->live; r; r = r->live_next) {
            if (r->msg) {
                source_watermark_lose(w, r->msg->sequence);
                ck->lost++;
            }
        }
        if (is_owner(ck) && ck->conn && !ck->final_failed) {
            uint64_t mark = source_watermark_mark(w);

            if (due(ck, mark) && !(ck->writing && ck->writing_seq == mark)) {
                struct buf body = BUF_INIT(4096);
                char err[512];

                if (body_of(ck, mark, &body) < 0) {
                    log_error(binding_of(ck), "binding %s: checkpoint: out of memory at stop",
                              binding_of(ck));
                } else if (ck->kind == SOURCE_CHECKPOINT_FILE) {
                    if (source_checkpoint_file_write(ck->file, body.data, body.len, err,
                                                     sizeof(err)) < 0) {
                        log_error(binding_of(ck),
                                  "binding %s: checkpoint: could not write sequence %llu to %s: "
                                  "%s; the next start repeats the messages after sequence %llu",
                                  binding_of(ck), (unsigned long long)mark, ck->where, err,
                                  (unsigned long long)(ck->have_written ? ck->written : 0));
                    } else {
                        metrics_gauge_set(ck->gauge, (int64_t)mark);
                    }
                } else {
                    /* The client sends it as it lets go; no answer is waited for. */
                    kubemq_send_event(ck->conn->client, 1, ck->channel, body.data, body.len,
                                      CHECKPOINT_METADATA, NULL, NULL);
                    metrics_gauge_set(ck->gauge, (int64_t)mark);
                }
                log_info(binding_of(ck),
                         "binding %s: checkpoint: sequence %llu written as the binding stops "
                         "(%zu message%s taken and never answered: the next start sends them "
                         "again)",
                         binding_of(ck), (unsigned long long)mark, ck->lost,
                         ck->lost == 1 ? "" : "s");
                buf_free(&body);
            }
        }
        if (!is_owner(ck) && ck->lost > 0) {
            log_warn(binding_of(ck),
                     "binding %s: checkpoint: %zu message%s taken by the replaced binding never "
                     "answered; the checkpoint stays below sequence %llu until the next start, "
                     "which sends %s again",
                     binding_of(ck), ck->lost, ck->lost == 1 ? "" : "s",
                     (unsigned long long)source_watermark_mark(w) + 1,
                     ck->lost == 1 ? "it" : "them");
        }
        if (w->owner == ck) {
            w->owner = w->prev_owner;
            w->prev_owner = NULL;
        } else if (w->prev_owner == ck) {
            w->prev_owner = NULL;
        }
        source_watermark_unref(w);
    }
    free(ck->channel);
    free(ck->file);
    free(ck);
}
