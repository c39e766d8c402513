/* target.h - what the binding layer sees of a target kind.
 *
 * A target executes one request envelope asynchronously on the engine
 * loop and fills a reply. Only aws.kinesis exists today; the table form
 * keeps the binding layer ignorant of it. */
#ifndef KK_KINESIS_TARGET_H
#define KK_KINESIS_TARGET_H

#include "base/errs.h"
#include "base/loop.h"
#include "base/settings.h"
#include "message/envelope.h"

#include <jansson.h>

typedef void (*target_done_fn)(void *ctx);

struct metrics_registry;

struct target_kind {
    const char *kind;              /* canonical: "aws.kinesis" */
    const char *const *aliases;    /* NULL-terminated */
    const char *const *deprecated; /* accepted with a warning naming `kind` */
    const struct settings_entry *settings;
    /* Validate props (all problems into errs, prefixed by where) and build
     * the instance. With loop NULL only validate (--check): no network,
     * no instance; returns NULL and the caller looks at errs. */
    void *(*create)(struct loop *loop, const json_t *props, const char *binding, const char *where,
                    struct errs *errs);
    void (*destroy)(void *instance);
    /* Run req, fill reply (already initialised by the caller), then call
     * done(ctx) exactly once on the loop thread - possibly before execute
     * returns. req and reply stay valid until done. */
    void (*execute)(void *instance, const struct envelope_request *req,
                    struct envelope_reply *reply, target_done_fn done, void *ctx);
    /* Optional: register the kind's own series in reg (on the engine loop,
     * after create; not called without a registry, e.g. by invoke). */
    void (*metrics)(void *instance, struct metrics_registry *reg);
};

/* Find a target kind by name or alias; *deprecated set when the name is a
 * deprecated spelling. NULL when unknown. */
const struct target_kind *target_kind_find(const char *name, int *deprecated);
/* All kinds, NULL-terminated. */
const struct target_kind *const *target_kinds(void);

#endif
