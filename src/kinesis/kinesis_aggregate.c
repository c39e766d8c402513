/* kinesis_aggregate.c - KPL record aggregation of coalesced put_record
 * requests (`aggregate: true`).
 *
 * Each stream keeps a shard map (ListShards, all pages, open shards only)
 * and one queue of user records per shard: a record's hash - MD5 of its
 * partition key as a 128-bit big-endian number, or its explicit hash key -
 * picks the shard whose range holds it. A PutRecords call takes from each
 * shard's queue, in order, as many records as fit one aggregate
 * (aggregate_max_bytes, aggregate_max_records) and sends them as one
 * Kinesis record whose explicit hash key is its first record's hash, so
 * the aggregate lands on that shard and so does every record in it. A
 * record too large to share, or alone, goes as the plain record it was.
 *
 * Order: a stream has one PutRecords call in flight and a call holds at
 * most one Kinesis record per shard, so the records of one partition key
 * (one shard) leave in the order they came, and an aggregate that fails
 * with a retryable code goes back to the head of its queue before anything
 * newer of its shard is sent. Its records are packed again from there:
 * after a map refresh they may belong to other shards.
 *
 * The map is read when a stream is first used, again when an answer puts
 * a record on a shard other than the predicted one (a reshard: closed
 * parents, new children), after ResourceNotFound or InvalidArgument, and
 * otherwise when it is 60 s old; records queued then are routed again by
 * the new map. Without a map (ListShards refused, say for want of the IAM
 * permission), records go unaggregated through plain coalescing and the
 * map is tried again after 5 s.
 *
 * Each caller is answered from its aggregate's PutRecords entry: shard id,
 * the aggregate's sequence number and its own sub-sequence number (its
 * index inside the aggregate), as the KPL reports them. */
#include "base/log.h"
#include "kinesis/kinesis_answer.h"
#include "kinesis/kinesis_internal.h"
#include "kinesis/kinesis_kpl.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAP_MAX_AGE_MS  60000 /* periodic refresh */
#define MAP_RETRY_MS    5000  /* after a failed ListShards */
#define MAP_MIN_GAP_MS  1000  /* refreshes on demand, at most this often */
#define LIST_PAGES_MAX  10000 /* ListShards pages per map, a guard */
#define ANSWER_SCAN_MAX 500   /* entry results on the stack */
#define REC_TEXT_SMALL  112   /* records with keys this short are kept for reuse */
#define REC_POOL_MAX    1024

struct agg_rec {
    struct agg_rec *next;
    void *pool_next; /* in k->rec_pool */
    struct kinesis_call *c;
    kinesis_u128 hash;
    uint64_t key_hash; /* of the partition key: its table slot */
    size_t rec_off;    /* PutRecord members in c->body (0: not built yet) */
    size_t size;       /* data plus partition key, as a plain record */
    size_t pk_len, ehk_len;
    const char *pk;  /* in text */
    const char *ehk; /* in text; NULL: the hash is MD5(pk) */
    int attempts;    /* failed sends */
    size_t cap;      /* of text */
    char text[];
};

struct agg_shard {
    char id[129];
    kinesis_u128 start, end;
    struct agg_rec *head, *tail;
};

/* One Kinesis record of the call in flight. */
struct agg_item {
    struct agg_rec *recs;
    size_t n;
    int plain;
    size_t size; /* as Kinesis counts it: data plus partition key */
    char shard[129];
};

enum agg_map { MAP_NONE = 0, MAP_READY, MAP_FAILED };

struct kinesis_agg_stream {
    struct kinesis_agg_stream *next;
    struct kinesis *k;
    char name[129];
    /* the map: open shards by starting hash */
    struct agg_shard *shards;
    size_t nshards;
    enum agg_map map;
    uint64_t map_ms; /* read (or failed) at */
    int fetching;
    int refresh; /* another read wanted */
    struct loop_timer map_timer;
    uint64_t fetch_ms;
    struct agg_shard *fetched; /* pages read so far */
    size_t nfetched, capfetched;
    int pages;
    struct buf list_body;
    struct agg_rec *waiting, *waiting_tail; /* for the first map */
    /* PutRecords */
    int sending;
    struct agg_item *items;
    size_t nitems, capitems;
    size_t next_shard; /* where the next call starts taking */
    struct buf body, raw;
    struct loop_timer timer;
    uint64_t not_before; /* backoff after retryable failures */
    int backoff_attempt;
};

/* ---------------------------------------------------------- records */

/* Back to the pool (small ones), or freed. */
static void rec_free(struct kinesis *k, struct agg_rec *r)
{
    if (r->cap != REC_TEXT_SMALL || k->stopping || pool_put(&k->rec_pool, r) < 0) {
        free(r);
    }
}

static struct agg_rec *rec_new(struct kinesis *k, struct kinesis_call *c, const char *pk,
                               const char *ehk, size_t size)
{
    size_t pk_len = strlen(pk), ehk_len = ehk ? strlen(ehk) : 0, need = pk_len + ehk_len + 2;
    size_t cap = need <= REC_TEXT_SMALL ? REC_TEXT_SMALL : need;
    struct agg_rec *r;
    unsigned char md5[16];
    int i;

    r = cap == REC_TEXT_SMALL ? pool_get(&k->rec_pool) : NULL;
    if (!r && !(r = malloc(sizeof(*r) + cap))) {
        return NULL;
    }
    memset(r, 0, sizeof(*r));
    r->cap = cap;
    r->c = c;
    r->size = size;
    r->pk_len = pk_len;
    memcpy(r->text, pk, pk_len + 1);
    r->pk = r->text;
    kinesis_md5(pk, pk_len, md5);
    r->hash = kinesis_u128_from_md5(md5);
    for (i = 0; i < 8; i++) {
        r->key_hash = (r->key_hash << 8) | md5[i];
    }
    if (ehk) {
        r->ehk_len = ehk_len;
        memcpy(r->text + pk_len + 1, ehk, ehk_len + 1);
        r->ehk = r->text + pk_len + 1;
        if (kinesis_u128_parse(ehk, ehk_len, &r->hash) < 0) {
            rec_free(k, r); /* validated before: cannot happen */
            return NULL;
        }
    }
    return r;
}

/* The record's PutRecord body, for sending it plain: 0, or -1. */
static int rec_body(struct kinesis_agg_stream *s, struct agg_rec *r)
{
    if (r->rec_off) {
        return 0;
    }
    return kinesis_put_body(r->c, s->name, r->pk, r->ehk, NULL, &r->rec_off);
}

/* Hand a record to plain coalescing (no map to route it by). */
static void rec_unaggregated(struct kinesis_agg_stream *s, struct agg_rec *r)
{
    struct kinesis_call *c = r->c;
    size_t size = r->size;
    int built = rec_body(s, r) == 0;
    size_t off = r->rec_off;

    rec_free(s->k, r);
    if (!built) {
        kinesis_call_fail(c, "request: too large for one PutRecord call");
    } else if (kinesis_coalesce_add(c, s->name, off, size) < 0) {
        kinesis_call_send(c, "PutRecord", kinesis_put_record_done);
    }
}

/* ------------------------------------------------------------- the map */

static struct agg_shard *shard_of(struct kinesis_agg_stream *s, kinesis_u128 h)
{
    size_t lo = 0, hi = s->nshards;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (s->shards[mid].end < h) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < s->nshards && s->shards[lo].start <= h ? &s->shards[lo] : NULL;
}

static void queue_append(struct agg_shard *sh, struct agg_rec *r)
{
    r->next = NULL;
    if (sh->tail) {
        sh->tail->next = r;
    } else {
        sh->head = r;
    }
    sh->tail = r;
}

static void route(struct kinesis_agg_stream *s, struct agg_rec *r)
{
    struct agg_shard *sh = shard_of(s, r->hash);

    if (sh) {
        queue_append(sh, r);
    } else {
        /* The map has a gap (a reshard half seen): Kinesis routes it. */
        s->refresh = 1;
        rec_unaggregated(s, r);
    }
}

static void schedule(struct kinesis_agg_stream *s);
static void fetch(struct kinesis_agg_stream *s);

static int shard_cmp(const void *a, const void *b)
{
    const struct agg_shard *x = a, *y = b;

    return (x->start > y->start) - (x->start < y->start);
}

/* The new map replaces the old: every queued record is routed again, the
 * queues one after the other (a key's records are all in one of them). */
static void map_install(struct kinesis_agg_stream *s)
{
    struct agg_shard *old = s->shards;
    size_t nold = s->nshards, i;
    struct agg_rec *r, *next;

    qsort(s->fetched, s->nfetched, sizeof(*s->fetched), shard_cmp);
    s->shards = s->fetched;
    s->nshards = s->nfetched;
    s->fetched = NULL;
    s->nfetched = s->capfetched = 0;
    s->map = MAP_READY;
    s->map_ms = loop_now_ms(s->k->loop);
    s->next_shard = 0;
    log_debug(s->k->binding, "aggregate: stream %s: shard map read, %zu open shards", s->name,
              s->nshards);
    for (i = 0; i < nold; i++) {
        for (r = old[i].head; r; r = next) {
            next = r->next;
            route(s, r);
        }
    }
    free(old);
    for (r = s->waiting; r; r = next) {
        next = r->next;
        route(s, r);
    }
    s->waiting = s->waiting_tail = NULL;
    schedule(s);
}

static void map_failed(struct kinesis_agg_stream *s, const char *why)
{
    struct agg_rec *r, *next;
    uint64_t now = loop_now_ms(s->k->loop);

    free(s->fetched);
    s->fetched = NULL;
    s->nfetched = s->capfetched = 0;
    if (s->map == MAP_READY) {
        /* Keep routing by the old map; try again in a moment. */
        log_warn(s->k->binding, "aggregate: stream %s: the shard map could not be read again (%s)",
                 s->name, why);
        s->map_ms = now > MAP_MAX_AGE_MS ? now - MAP_MAX_AGE_MS + MAP_RETRY_MS : 0;
        return;
    }
    log_warn(s->k->binding,
             "aggregate: stream %s: the shard map could not be read (%s); records go "
             "unaggregated, the map is tried again in %d s",
             s->name, why, MAP_RETRY_MS / 1000);
    s->map = MAP_FAILED;
    s->map_ms = now;
    for (r = s->waiting; r; r = next) {
        next = r->next;
        rec_unaggregated(s, r);
    }
    s->waiting = s->waiting_tail = NULL;
}

/* One shard of a ListShards answer; closed shards (an ending sequence
 * number) take no records and are left out. */
static int add_shard(struct kinesis_agg_stream *s, const json_t *sh)
{
    const char *id = json_string_value(json_object_get(sh, "ShardId"));
    const json_t *range = json_object_get(sh, "HashKeyRange");
    const char *lo = json_string_value(json_object_get(range, "StartingHashKey"));
    const char *hi = json_string_value(json_object_get(range, "EndingHashKey"));
    const char *end = json_string_value(
        json_object_get(json_object_get(sh, "SequenceNumberRange"), "EndingSequenceNumber"));
    struct agg_shard *d;

    if (end && *end) {
        return 0;
    }
    if (!id || !*id || strlen(id) >= sizeof(d->id) || !lo || !hi) {
        return -1;
    }
    if (s->nfetched == s->capfetched) {
        size_t cap = s->capfetched ? s->capfetched * 2 : 16;
        struct agg_shard *n = realloc(s->fetched, cap * sizeof(*n));

        if (!n) {
            return -1;
        }
        s->fetched = n;
        s->capfetched = cap;
    }
    d = &s->fetched[s->nfetched];
    memset(d, 0, sizeof(*d));
    snprintf(d->id, sizeof(d->id), "%s", id);
    if (kinesis_u128_parse(lo, strlen(lo), &d->start) < 0 ||
        kinesis_u128_parse(hi, strlen(hi), &d->end) < 0 || d->end < d->start) {
        return -1;
    }
    s->nfetched++;
    return 0;
}

static void on_shards(void *ctx, const struct aws_response *r)
{
    struct kinesis_agg_stream *s = ctx;
    struct kinesis *k = s->k;
    json_t *root = NULL, *shards, *sh;
    const char *token;
    char why[512];
    size_t i;

    if (k->stopping) {
        s->fetching = 0;
        return;
    }
    if (r->error_type || r->status < 200 || r->status >= 300) {
        snprintf(why, sizeof(why), "%s%s%s", r->error_type ? r->error_type : "HTTPError",
                 r->error_message && *r->error_message ? ": " : "",
                 r->error_message ? r->error_message : "");
        goto fail;
    }
    root = json_loadb(r->body ? r->body : "", r->body_len, 0, NULL);
    shards = json_object_get(root, "Shards");
    if (!json_is_array(shards)) {
        snprintf(why, sizeof(why), "InvalidResponse: ListShards answered without Shards");
        goto fail;
    }
    json_array_foreach(shards, i, sh)
    {
        if (add_shard(s, sh) < 0) {
            snprintf(why, sizeof(why),
                     "InvalidResponse: a shard without a valid id or hash "
                     "key range");
            goto fail;
        }
    }
    token = json_string_value(json_object_get(root, "NextToken"));
    if (token && *token && json_array_size(shards) > 0) {
        if (++s->pages >= LIST_PAGES_MAX) {
            snprintf(why, sizeof(why), "ListShards: more than %d pages", LIST_PAGES_MAX);
            goto fail;
        }
        buf_reset(&s->list_body);
        if (buf_append_str(&s->list_body, "{\"NextToken\":") < 0 ||
            buf_append_json_str(&s->list_body, token, strlen(token)) < 0 ||
            buf_append_char(&s->list_body, '}') < 0 ||
            aws_client_call_ref(k->aws, "ListShards", s->list_body.data, s->list_body.len,
                                on_shards, s) < 0) {
            snprintf(why, sizeof(why), "out of memory");
            goto fail;
        }
        json_decref(root);
        return;
    }
    json_decref(root);
    s->fetching = 0;
    if (s->nfetched == 0) {
        snprintf(why, sizeof(why), "no open shard");
        map_failed(s, why);
        return;
    }
    map_install(s);
    if (s->refresh) {
        fetch(s);
    }
    return;
fail:
    json_decref(root);
    s->fetching = 0;
    map_failed(s, why);
    schedule(s);
}

static void fetch_later(void *arg)
{
    fetch(arg);
}

/* Read the map (all pages) unless a read is under way; one made less
 * than MAP_MIN_GAP_MS ago puts the next off until then. */
static void fetch(struct kinesis_agg_stream *s)
{
    struct kinesis *k = s->k;
    uint64_t now = loop_now_ms(k->loop);

    if (s->fetching || k->stopping || !k->aws) {
        return;
    }
    if (s->map == MAP_READY && s->fetch_ms && now - s->fetch_ms < MAP_MIN_GAP_MS) {
        s->refresh = 1;
        if (!loop_timer_armed(&s->map_timer)) {
            loop_timer_start(k->loop, &s->map_timer, s->fetch_ms + MAP_MIN_GAP_MS - now,
                             fetch_later, s);
        }
        return;
    }
    s->refresh = 0;
    s->fetching = 1;
    s->fetch_ms = now;
    s->pages = 0;
    s->nfetched = 0;
    buf_reset(&s->list_body);
    if (buf_append_str(&s->list_body, "{\"StreamName\":") < 0 ||
        buf_append_json_str(&s->list_body, s->name, strlen(s->name)) < 0 ||
        buf_append_char(&s->list_body, '}') < 0 ||
        aws_client_call_ref(k->aws, "ListShards", s->list_body.data, s->list_body.len, on_shards,
                            s) < 0) {
        s->fetching = 0;
        map_failed(s, "out of memory");
    }
}

/* ------------------------------------------------------------- sending */

static void flush(void *arg);

static void schedule(struct kinesis_agg_stream *s)
{
    struct kinesis *k = s->k;
    uint64_t now;
    size_t i;
    int queued = 0;

    if (s->sending || k->stopping || s->map != MAP_READY || loop_timer_armed(&s->timer)) {
        return;
    }
    for (i = 0; i < s->nshards && !queued; i++) {
        queued = s->shards[i].head != NULL;
    }
    if (!queued) {
        return;
    }
    now = loop_now_ms(k->loop);
    loop_timer_start(k->loop, &s->timer, s->not_before > now ? s->not_before - now : 0, flush, s);
}

/* The next Kinesis record of shard sh into the body: an aggregate of its
 * first records, or its first record alone (too large to share, or no
 * other record waiting). Returns 1 when an item was added, 0 when the
 * call has no room for it, -1 out of memory. */
static int take(struct kinesis_agg_stream *s, struct agg_shard *sh, size_t room)
{
    struct kinesis *k = s->k;
    struct kinesis_kpl *a = &k->kpl;
    struct agg_rec *first = sh->head, *r, **tail;
    struct agg_item *it;
    struct buf *b = &s->body;
    char hash[48];
    size_t size;

    if (s->nitems == s->capitems) {
        size_t cap = s->capitems ? s->capitems * 2 : 16;
        struct agg_item *n = realloc(s->items, cap * sizeof(*n));

        if (!n) {
            return -1;
        }
        s->items = n;
        s->capitems = cap;
    }
    it = &s->items[s->nitems];
    memset(it, 0, sizeof(*it));
    snprintf(it->shard, sizeof(it->shard), "%s", sh->id);

    kinesis_kpl_reset(a);
    size = kinesis_kpl_size_with(a, first->pk, first->pk_len, first->key_hash, first->ehk,
                                 first->ehk_len, first->c->req->data.len) +
           first->pk_len;
    if (size > k->aggregate_max_bytes || !first->next) {
        /* Alone: the PutRecord it was. */
        if (first->size > room) {
            return 0;
        }
        it->plain = 1;
        it->size = first->size;
    } else {
        if (size > room) {
            return 0;
        }
        for (r = first; r && a->n < k->aggregate_max_records; r = r->next) {
            size = kinesis_kpl_size_with(a, r->pk, r->pk_len, r->key_hash, r->ehk, r->ehk_len,
                                         r->c->req->data.len) +
                   first->pk_len;
            if (size > k->aggregate_max_bytes || size > room) {
                break;
            }
            if (kinesis_kpl_add(a, r->pk, r->pk_len, r->key_hash, r->ehk, r->ehk_len,
                                r->c->req->data.data, r->c->req->data.len) < 0) {
                return -1;
            }
        }
        if (a->n < 2) {
            it->plain = 1;
            it->size = first->size;
        } else {
            it->size = kinesis_kpl_size(a) + first->pk_len;
        }
    }
    it->n = it->plain ? 1 : a->n;
    /* The records leave their queue with the item (and are answered with
     * it, even when the body cannot be built). */
    it->recs = first;
    for (tail = &first, size = 0; size < it->n; size++) {
        tail = &(*tail)->next;
    }
    sh->head = *tail;
    *tail = NULL;
    if (!sh->head) {
        sh->tail = NULL;
    }
    s->nitems++;
    /* The body: the plain record's own members, or the aggregate. */
    if (s->nitems > 1 && buf_append_char(b, ',') < 0) {
        return -1;
    }
    if (it->plain) {
        const struct buf *cb = &it->recs->c->body;
        size_t off;

        if (rec_body(s, it->recs) < 0) {
            return -1;
        }
        off = it->recs->rec_off + 1;
        if (buf_append_char(b, '{') < 0 || buf_append(b, cb->data + off, cb->len - off) < 0) {
            return -1;
        }
        return 1;
    }
    kinesis_u128_format(it->recs->hash, hash, sizeof(hash));
    if (buf_append_str(b, "{\"Data\":\"") < 0 || kinesis_kpl_pack_b64(a, &s->raw, b) < 0 ||
        buf_append_str(b, "\",\"PartitionKey\":") < 0 ||
        buf_append_json_str(b, it->recs->pk, it->recs->pk_len) < 0 ||
        buf_append_str(b, ",\"ExplicitHashKey\":\"") < 0 || buf_append_str(b, hash) < 0 ||
        buf_append_str(b, "\"}") < 0) {
        return -1;
    }
    return 1;
}

static void agg_done(void *ctx, const struct aws_response *r);

/* Fail every caller of the items taken so far (never sent). */
static void fail_items(struct kinesis_agg_stream *s, const char *msg)
{
    size_t i;

    for (i = 0; i < s->nitems; i++) {
        struct agg_rec *r = s->items[i].recs, *next;

        for (; r; r = next) {
            struct kinesis_call *c = r->c;

            next = r->next;
            rec_free(s->k, r);
            kinesis_call_fail(c, "%s", msg);
        }
    }
    s->nitems = 0;
}

static void flush(void *arg)
{
    struct kinesis_agg_stream *s = arg;
    struct kinesis *k = s->k;
    struct buf *b = &s->body;
    size_t j, start = s->next_shard, bytes = 0;
    uint64_t now = loop_now_ms(k->loop);
    int rc = 0;

    if (s->sending || k->stopping || s->map != MAP_READY) {
        return;
    }
    if ((now - s->map_ms >= MAP_MAX_AGE_MS || s->refresh) && !s->fetching) {
        fetch(s); /* in the background: the old map routes meanwhile */
    }
    buf_reset(b);
    s->nitems = 0;
    if (buf_append_str(b, "{\"StreamName\":") < 0 ||
        buf_append_json_str(b, s->name, strlen(s->name)) < 0 ||
        buf_append_str(b, ",\"Records\":[") < 0) {
        return;
    }
    for (j = 0; j < s->nshards && s->nitems < k->coalesce_max_records; j++) {
        struct agg_shard *sh = &s->shards[(start + j) % s->nshards];
        size_t before = s->nitems;

        if (!sh->head) {
            continue;
        }
        rc = take(s, sh, k->coalesce_max_bytes - bytes);
        if (rc < 0) {
            break;
        }
        if (rc == 0 && s->nitems) {
            break; /* full: the rest goes next */
        }
        if (rc == 0) {
            /* Not even one fits the call's byte limit: alone it must. */
            rc = take(s, sh, (size_t)-1);
            if (rc <= 0) {
                break;
            }
        }
        if (s->nitems > before) {
            bytes += s->items[s->nitems - 1].size;
        }
    }
    s->next_shard = s->nshards ? (start + j) % s->nshards : 0;
    if (rc < 0 || buf_append_str(b, "]}") < 0) {
        fail_items(s, "aws.kinesis: out of memory building an aggregated PutRecords call");
        schedule(s);
        return;
    }
    if (!s->nitems) {
        return;
    }
    if (aws_client_call_ref(k->aws, "PutRecords", b->data, b->len, agg_done, s) < 0) {
        fail_items(s, "aws.kinesis: out of memory starting PutRecords");
        schedule(s);
        return;
    }
    s->sending = 1;
}

/* Back to the head of their shards' queues, in order, by the current map. */
static void requeue(struct kinesis_agg_stream *s, struct agg_rec *recs)
{
    struct agg_rec *r, *next, *rev = NULL;

    for (r = recs; r; r = next) {
        next = r->next;
        r->next = rev;
        rev = r;
    }
    for (r = rev; r; r = next) {
        struct agg_shard *sh = shard_of(s, r->hash);

        next = r->next;
        if (!sh) {
            s->refresh = 1;
            rec_unaggregated(s, r);
            continue;
        }
        r->next = sh->head;
        sh->head = r;
        if (!sh->tail) {
            sh->tail = r;
        }
    }
}

static int entry_retryable(const struct kinesis_entry *e)
{
    return (e->code_n == 38 &&
            memcmp(e->code, "ProvisionedThroughputExceededException", 38) == 0) ||
           (e->code_n == 15 && memcmp(e->code, "InternalFailure", 15) == 0) ||
           (e->code_n == 22 && memcmp(e->code, "KMSThrottlingException", 22) == 0);
}

static const char *span(char *dst, size_t cap, const char *p, size_t n)
{
    if (!p || n >= cap) {
        return NULL;
    }
    memcpy(dst, p, n);
    dst[n] = '\0';
    return dst;
}

/* Answer, retry or fail the records of item it from entry e. Returns 1
 * when the item was retried. */
static int item_answer(struct kinesis_agg_stream *s, struct agg_item *it,
                       const struct kinesis_entry *e, const char *enc)
{
    struct kinesis *k = s->k;
    struct agg_rec *r = it->recs, *next, *again = NULL, **again_tail = &again;
    char shard[256], seq[256];
    size_t i;

    it->recs = NULL;
    if (e->ok && span(shard, sizeof(shard), e->shard, e->shard_n) &&
        span(seq, sizeof(seq), e->seq, e->seq_n)) {
        if (strcmp(shard, it->shard) != 0) {
            /* Not the shard the map predicted: it changed. */
            log_debug(k->binding,
                      "aggregate: stream %s: a record for %s landed on %s; reading the shard map "
                      "again",
                      s->name, it->shard, shard);
            s->refresh = 1;
        }
        kinesis_count_written(k, it->n, 1, it->size);
        for (i = 0; r; r = next, i++) {
            struct kinesis_call *c = r->c;

            next = r->next;
            rec_free(k, r);
            if (kinesis_entry_reply(c, shard, seq, it->plain ? -1 : (long long)i, enc) < 0) {
                kinesis_call_error(c, "aws.kinesis: out of memory building the reply");
            }
            kinesis_call_finish(c);
        }
        return 0;
    }
    for (; r; r = next) {
        struct kinesis_call *c = r->c;

        next = r->next;
        if (!e->code) {
            rec_free(k, r);
            kinesis_reply_error_type(c, 200, "InvalidResponse");
            kinesis_call_fail(c, "InvalidResponse: Kinesis answered this record's PutRecords "
                                 "entry with neither an ErrorCode nor a SequenceNumber and "
                                 "ShardId");
        } else if (entry_retryable(e) && ++r->attempts < k->max_attempts && !k->stopping) {
            r->next = NULL;
            *again_tail = r;
            again_tail = &r->next;
        } else {
            char code[128];

            rec_free(k, r);
            snprintf(code, sizeof(code), "%.*s", (int)e->code_n, e->code);
            kinesis_reply_error_type(c, 0, code);
            kinesis_call_fail(c, "%.*s%s%.*s", (int)e->code_n, e->code, e->message_n ? ": " : "",
                              (int)e->message_n, e->message ? e->message : "");
        }
    }
    if (again) {
        requeue(s, again);
        return 1;
    }
    return 0;
}

static void agg_done(void *ctx, const struct aws_response *r)
{
    struct kinesis_agg_stream *s = ctx;
    struct kinesis *k = s->k;
    struct kinesis_entry res[ANSWER_SCAN_MAX];
    struct kinesis_answer a;
    json_t *root = NULL;
    char enc_buf[64];
    const char *enc = NULL;
    size_t i, failed = 0;
    int retried = 0, read = 0;

    s->sending = 0;
    if (!r->error_type && r->status >= 200 && r->status < 300 && s->nitems <= ANSWER_SCAN_MAX) {
        read = kinesis_entries_fast(r->body, r->body_len, res, s->nitems, &a) == 0 ||
               ((root = json_loadb(r->body ? r->body : "", r->body_len, 0, NULL)) != NULL &&
                kinesis_entries_json(root, res, s->nitems, &a) == 0);
    }
    if (!read) {
        int rnf = r->error_type && (strcmp(r->error_type, "ResourceNotFoundException") == 0 ||
                                    strcmp(r->error_type, "InvalidArgumentException") == 0);
        for (i = 0; i < s->nitems; i++) {
            struct agg_rec *rec = s->items[i].recs, *next;

            for (; rec; rec = next) {
                struct kinesis_call *c = rec->c;

                next = rec->next;
                rec_free(k, rec);
                if (kinesis_reply_aws_error(c, r)) {
                    kinesis_call_finish(c);
                } else {
                    kinesis_reply_error_type(c, r->status, "InvalidResponse");
                    kinesis_call_fail(c, "InvalidResponse: Kinesis answered PutRecords with a "
                                         "body that does not hold one result per record");
                }
            }
        }
        s->nitems = 0;
        json_decref(root);
        if (rnf) {
            s->refresh = 1; /* the stream or its shards changed */
        }
    } else {
        if (a.encryption) {
            enc = span(enc_buf, sizeof(enc_buf), a.encryption, a.encryption_n);
        }
        for (i = 0; i < s->nitems; i++) {
            failed += !res[i].ok;
            retried |= item_answer(s, &s->items[i], &res[i], enc);
        }
        if (a.failed_count >= 0 && (size_t)a.failed_count != failed) {
            log_debug(k->binding,
                      "PutRecords answered FailedRecordCount %lld but %zu of its %zu entries "
                      "failed; the entries count",
                      a.failed_count, failed, s->nitems);
        }
        s->nitems = 0;
        json_decref(root);
    }
    if (k->stopping) {
        return;
    }
    if (retried) {
        s->backoff_attempt++;
        s->not_before = loop_now_ms(k->loop) + kinesis_backoff_ms(k, s->backoff_attempt);
    } else {
        s->backoff_attempt = 0;
        s->not_before = 0;
    }
    if (s->refresh) {
        fetch(s);
    }
    schedule(s);
}

/* ------------------------------------------------------------- entries */

static struct kinesis_agg_stream *stream_get(struct kinesis *k, const char *name)
{
    struct kinesis_agg_stream *s;

    for (s = k->agg; s; s = s->next) {
        if (strcmp(s->name, name) == 0) {
            return s;
        }
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        return NULL;
    }
    s->k = k;
    snprintf(s->name, sizeof(s->name), "%s", name);
    buf_init(&s->list_body, 1 << 20);
    buf_init(&s->body, BUF_DEFAULT_MAX);
    buf_init(&s->raw, (size_t)2 << 20);
    loop_timer_init(&s->timer);
    loop_timer_init(&s->map_timer);
    s->next = k->agg;
    k->agg = s;
    return s;
}

int kinesis_aggregate_add(struct kinesis_call *c, const char *stream, size_t size, const char *pk,
                          const char *ehk)
{
    struct kinesis *k = c->k;
    struct kinesis_agg_stream *s;
    struct agg_rec *r;

    if (strlen(stream) >= sizeof(s->name) || k->stopping || !(s = stream_get(k, stream)) ||
        !(r = rec_new(k, c, pk, ehk, size))) {
        return -1;
    }
    if (s->map == MAP_FAILED) {
        if (loop_now_ms(k->loop) - s->map_ms < MAP_RETRY_MS) {
            rec_unaggregated(s, r);
            return 0;
        }
        s->map = MAP_NONE;
    }
    if (s->map == MAP_NONE) {
        r->next = NULL;
        if (s->waiting_tail) {
            s->waiting_tail->next = r;
        } else {
            s->waiting = r;
        }
        s->waiting_tail = r;
        fetch(s);
        return 0;
    }
    route(s, r);
    schedule(s);
    return 0;
}

static void free_list(struct agg_rec *r)
{
    struct agg_rec *next;

    for (; r; r = next) {
        next = r->next;
        free(r);
    }
}

void kinesis_aggregate_stop(struct kinesis *k)
{
    struct kinesis_agg_stream *s;
    size_t i;

    for (s = k->agg; s; s = s->next) {
        if (loop_timer_armed(&s->timer)) {
            loop_timer_stop(k->loop, &s->timer);
        }
        if (loop_timer_armed(&s->map_timer)) {
            loop_timer_stop(k->loop, &s->map_timer);
        }
        /* Their calls stay in k->calls: the destroy answers them. */
        for (i = 0; i < s->nshards; i++) {
            free_list(s->shards[i].head);
            s->shards[i].head = s->shards[i].tail = NULL;
        }
        free_list(s->waiting);
        s->waiting = s->waiting_tail = NULL;
    }
}

void kinesis_aggregate_init(struct kinesis *k)
{
    pool_init(&k->rec_pool, REC_POOL_MAX, offsetof(struct agg_rec, pool_next));
}

void kinesis_aggregate_free(struct kinesis *k)
{
    struct agg_rec *r;

    kinesis_aggregate_stop(k);
    while ((r = pool_get(&k->rec_pool)) != NULL) {
        free(r);
    }
    while (k->agg) {
        struct kinesis_agg_stream *s = k->agg;
        size_t i;

        k->agg = s->next;
        for (i = 0; i < s->nitems; i++) {
            free_list(s->items[i].recs);
        }
        free(s->items);
        free(s->shards);
        free(s->fetched);
        buf_free(&s->list_body);
        buf_free(&s->body);
        buf_free(&s->raw);
        free(s);
    }
}
