/* config.h - the daemon's configuration: YAML or JSON, file or CONFIG env.
 *
 * Loading is strict: every problem is one line in errs naming the
 * binding, the key and the rule, and the caller exits 2. Both config
 * styles of kubemq-targets load: kinds with and without the source./target.
 * prefixes, `address` or (the older connector style) `host`+`port`. */
#ifndef KK_BINDING_CONFIG_H
#define KK_BINDING_CONFIG_H

#include "base/buf.h"
#include "base/errs.h"
#include "binding/middleware.h"
#include "kinesis/target.h"
#include "source/source.h"

#include <jansson.h>
#include <stddef.h>

struct config_part {
    char *kind;                 /* as written in the file */
    const char *canonical_kind; /* "kubemq.query", "aws.kinesis" */
    char *name;                 /* free text from the file ("" when absent) */
    json_t *props;              /* object of strings (never NULL); secrets included */
};

struct config_binding {
    char *name;
    struct config_part source;
    struct config_part target;
    const struct source_kind *source_kind;
    const struct target_kind *target_kind;
    struct source_options source_opts;    /* source.props parsed and checked */
    json_t *props;                        /* binding middleware properties (never NULL) */
    struct middleware_options middleware; /* props parsed and checked */
};

struct config {
    long long api_port;     /* 0 disables the HTTP API; default 8080 */
    char *api_address;      /* default "0.0.0.0" */
    int api_enable_request; /* POST /bindings/request */
    int log_level;          /* top-level logLevel as enum log_level; -1 when not given */
    int watch_config;       /* watchConfig: reload when the file changes */
    long long config_watch_debounce_ms;
    char *source_path; /* file it came from, or "CONFIG" */
    int from_file;     /* 0: from the CONFIG variable (or text) */
    struct config_binding *bindings;
    size_t n_bindings;
};

/* Load from path; path NULL: the CONFIG environment variable (text or
 * base64 text) if set and not empty, else ./config.yaml. A path ending in
 * .json, or text starting with '{', is JSON; anything else YAML. Returns
 * 0, or -1 with every problem in errs (c is then empty, config_free-safe).
 * Warnings (deprecated spellings) are logged. */
int config_load(struct config *c, const char *path, struct errs *errs);
/* Parse from text (YAML or JSON); origin names it in messages. */
int config_load_text(struct config *c, const char *text, size_t len, const char *origin,
                     struct errs *errs);
void config_free(struct config *c);
const struct config_binding *config_find_binding(const struct config *c, const char *name);
/* One debug line per binding: kinds and properties, secrets redacted. */
void config_log(const struct config *c);

/* The top-level keys' settings table (apiPort, ...), for the settings
 * reference. */
extern const struct settings_entry config_settings[];
/* The Markdown settings reference of every table (--print-reference; the
 * documentation carries it). */
int config_reference_markdown(struct buf *out);

#endif
