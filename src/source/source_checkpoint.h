/* source_checkpoint.h - where a kubemq.events-store binding resumes after
 * a restart: the checkpoint.
 *
 * The checkpoint is a sequence of the binding's channel below which every
 * message the binding took has been answered (the watermark). Requests
 * finish out of order under `concurrency`, so the watermark stops below
 * the oldest one still unanswered, whatever finished after it. A message
 * answered with an error (a failed Kinesis call) counts as answered: the
 * promise is about crashes, not failures. A message taken but never run
 * (still waiting when the binding was abandoned at the drain timeout) or
 * still running then does not count, ever: the checkpoint stays below it
 * and the next start sends it again.
 *
 * It is kept in a file (`checkpoint: file`, replaced atomically) or as
 * events-store messages on a KubeMQ channel (`checkpoint: kubemq`, one
 * message per write naming the binding and its channel, so one channel can
 * serve several bindings). Written every `checkpoint_interval_ms` when it
 * moved, once more when the binding stops after its drain. At start the
 * checkpoint is read and the subscription starts at sequence + 1;
 * without one, `start_position` applies.
 *
 * The server's own durable position per client id is not used: it counts
 * messages in flight as done and ignores the start of a known client id;
 * every events-store stream subscribes with a client id of its own.
 *
 * A reload that replaces the binding hands the watermark over: the old
 * and the new source share it (and the request ids, source_seen.h) while
 * both run, so the watermark never passes a message the old one is still
 * running, and only the newest source writes it. The new source does not
 * read the stored checkpoint (up to an interval old, while the old source
 * goes on taking messages): it subscribes after the highest sequence the
 * old one took, and the copies both get until the old one closes are
 * dropped by the shared ids. When there is nothing to hand over (the old
 * source has no checkpoint, reads another channel, or had not read its own
 * yet), the new one reads the stored checkpoint as a start does; without a
 * hand-over the old one writes its own last checkpoint after its drain.
 *
 * Everything runs on the loop thread except the file writer (see
 * source_checkpoint.c). */
#ifndef KK_SOURCE_SOURCE_CHECKPOINT_H
#define KK_SOURCE_SOURCE_CHECKPOINT_H

#include "base/buf.h"
#include "source/source.h"

#include <stddef.h>
#include <stdint.h>

/* ---- the watermark (no I/O) -------------------------------------------- */

struct source_watermark;

/* stream names the sequences ("address/channel"): a watermark is handed
 * over only to a source of the same stream. NULL when out of memory. */
struct source_watermark *source_watermark_create(const char *stream);
void source_watermark_ref(struct source_watermark *w);
/* Accepts NULL. */
void source_watermark_unref(struct source_watermark *w);
const char *source_watermark_stream(const struct source_watermark *w);

/* The start is known: every sequence up to base is done (base_known: a
 * concrete position, e.g. a checkpoint or the channel's last sequence; 0:
 * only "nothing before the first message taken matters", as for a start
 * by time). */
void source_watermark_position(struct source_watermark *w, uint64_t base, int base_known);
int source_watermark_positioned(const struct source_watermark *w);
/* The mark is worth writing even when 0 (see source_watermark_position). */
int source_watermark_base_known(const struct source_watermark *w);
/* A message was taken. Sequences come in order from one stream; the two
 * sources of a reload take each message once between them (source_seen.h)
 * but may interleave, and a copy may come twice: both are tracked. One at
 * or below the mark is a copy of one answered already, not tracked (the
 * mark never goes back). -1 when out of memory: then the mark stays below
 * seq for good (never past a message it cannot track). */
int source_watermark_take(struct source_watermark *w, uint64_t seq);
/* The message seq was answered (one taken copy of it). */
void source_watermark_done(struct source_watermark *w, uint64_t seq);
/* The message seq will never be answered in this run: the mark stays
 * below it from now on. */
void source_watermark_lose(struct source_watermark *w, uint64_t seq);
/* The highest sequence below which every tracked message was answered: the
 * oldest unanswered - 1, or the highest taken when none is unanswered. */
uint64_t source_watermark_mark(const struct source_watermark *w);
/* The highest sequence taken (or the base). */
uint64_t source_watermark_highest(const struct source_watermark *w);
/* Messages taken and not answered yet. */
size_t source_watermark_outstanding(const struct source_watermark *w);

/* ---- the checkpoint's text ----------------------------------------------
 * One JSON object, in a file (with a newline) and as a KubeMQ message body:
 * {"binding":"b1","channel":"orders","sequence":1234,"time":"2026-...Z"} */

int source_checkpoint_format(const char *binding, const char *channel, uint64_t seq,
                             struct buf *out);
/* 0: the checkpoint of binding/channel, its sequence in *seq; 1: another
 * binding's or channel's (err names both); -1: not a checkpoint (err says
 * why). */
int source_checkpoint_parse(const void *text, size_t len, const char *binding, const char *channel,
                            uint64_t *seq, char *err, size_t errlen);

/* 1: read (*seq set); 0: the file does not exist; -1: unreadable, broken
 * or another binding's (err says so, naming the file). Blocking: a small
 * file, read once per start. */
int source_checkpoint_file_read(const char *path, const char *binding, const char *channel,
                                uint64_t *seq, char *err, size_t errlen);
/* Replace path atomically with body: a temporary file next to it,
 * written and fsync'ed, renamed over it, and the directory fsync'ed.
 * Blocking (see source_checkpoint.c for where it runs). */
int source_checkpoint_file_write(const char *path, const void *body, size_t len, char *err,
                                 size_t errlen);

/* ---- a running checkpoint (source_events.c) ---------------------------- */

struct source_checkpoint;

/* Start the data subscription of c at start/value (enum kubemq_store_start). */
typedef int (*source_checkpoint_go_fn)(struct source_conn *c, int start, int64_t value, char *err,
                                       size_t errlen);

/* For s (with o->checkpoint set): a file checkpoint is read now, so a
 * broken one fails the binding's start with err ("checkpoint_file: ...").
 * NULL with the reason in err. */
struct source_checkpoint *source_checkpoint_create(struct source *s, const struct source_options *o,
                                                   char *err, size_t errlen);
/* Find the start (the checkpoint, the channel's last sequence), then
 * go(c, ...). Asynchronous: c is not subscribed, so not ready, until
 * then; while the broker is unreachable it keeps trying and warns. */
int source_checkpoint_start(struct source_checkpoint *ck, struct source_conn *c,
                            source_checkpoint_go_fn go, char *err, size_t errlen);
/* Intake stops: a read under way is abandoned. */
void source_checkpoint_close(struct source_checkpoint *ck);
/* A message was taken / answered (abandoned: lost, see above). */
void source_checkpoint_take(struct source_checkpoint *ck, uint64_t seq);
void source_checkpoint_done(struct source_checkpoint *ck, uint64_t seq, int abandoned);
/* The source is closing and nothing is pending any more: the last write. */
void source_checkpoint_drained(struct source_checkpoint *ck);
/* 1 while that last write is under way. */
int source_checkpoint_flushing(const struct source_checkpoint *ck);
/* During a reload: hand the watermark to the source replacing this one
 * through seen, or take it over from the one this replaces. */
void source_checkpoint_share(struct source_checkpoint *ck, struct source_seen *seen);
/* Before the clients go: the remaining live requests are lost, the last
 * write goes out if it is still due (not waited for), everything stops.
 * Accepts NULL. */
void source_checkpoint_destroy(struct source_checkpoint *ck);

#endif
