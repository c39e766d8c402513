/* config.c - load and check the daemon's configuration. */
#include "binding/config.h"

#include "base/b64.h"
#include "base/log.h"
#include "base/yamltree.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A config is a few kilobytes; this only stops a wrong path (a log, a
 * device) from being read into memory. */
#define CONFIG_MAX_BYTES    ((size_t)4 << 20)
#define CONFIG_DEFAULT_PATH "config.yaml"
#define WHERE_MAX           300

const struct settings_entry config_settings[] = {
    {"apiPort", SETTINGS_INT, "8080", 0, 0, 65535, NULL, offsetof(struct config, api_port), NULL,
     "port of the HTTP API (health, readiness, metrics, bindings); 0 disables it"},
    {"apiAddress", SETTINGS_STRING, "0.0.0.0", 0, 0, 0, NULL, offsetof(struct config, api_address),
     NULL, "address the HTTP API listens on"},
    {"apiEnableRequest", SETTINGS_BOOL, "false", 0, 0, 0, NULL,
     offsetof(struct config, api_enable_request), NULL,
     "serve `POST /bindings/request`, which runs any Kinesis operation for its caller"},
    {"logLevel", SETTINGS_ENUM, NULL, 0, 0, 0, "error|warn|info|debug",
     offsetof(struct config, log_level), NULL, "process log level when `--log-level` is not given"},
    {"watchConfig", SETTINGS_BOOL, "true", 0, 0, 0, NULL, offsetof(struct config, watch_config),
     NULL,
     "reload by itself when the config file changes, as on SIGHUP (edits, renames over it, "
     "Kubernetes ConfigMap updates); no effect with the `CONFIG` variable"},
    {"config_watch_debounce_ms", SETTINGS_INT, "500", 0, 0, 600000, NULL,
     offsetof(struct config, config_watch_debounce_ms), NULL,
     "changes of the config file within this many milliseconds give one reload"},
    {NULL, 0, NULL, 0, 0, 0, NULL, 0, NULL, NULL},
};

static const char *const binding_keys[] = {"name", "source", "target", "properties", NULL};
static const char *const part_keys[] = {"kind", "name", "properties", NULL};

/* What a JSON node is, in the words of the file (never its value: it may
 * be a secret). */
static const char *kind_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "a map";
    case JSON_ARRAY:
        return "a list";
    case JSON_STRING:
        return "text";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "true/false";
    default:
        return "empty";
    }
}

/* The canonical spelling of key in words (case-insensitive, as
 * kubemq-targets' viper matched), or NULL. */
static const char *match_key(const char *const *words, const char *key)
{
    for (; *words; words++) {
        if (strcasecmp(*words, key) == 0) {
            return *words;
        }
    }
    return NULL;
}

/* The word closest to a misspelt key (at most 2 edits), or NULL. */
static const char *nearest_word(const char *const *words, const char *key)
{
    const char *best = NULL;
    size_t best_d = 3;

    for (; *words; words++) {
        size_t d = settings_edit_distance(key, *words);
        if (d < best_d) {
            best_d = d;
            best = *words;
        }
    }
    return best;
}

/* obj's members under their canonical names; unknown keys reported. */
static json_t *known_members(const json_t *obj, const char *const *words, const char *where,
                             const char *valid, struct errs *errs)
{
    json_t *out = json_object();
    const char *key;
    json_t *val;

    if (!out) {
        errs_add(errs, "%s: out of memory", where);
        return NULL;
    }
    json_object_foreach((json_t *)obj, key, val)
    {
        const char *name = match_key(words, key);
        if (!name) {
            const char *near = nearest_word(words, key);
            if (near) {
                errs_add(errs, "%s: %s: unknown key (did you mean %s?)", where, key, near);
            } else {
                errs_add(errs, "%s: %s: unknown key; valid: %s", where, key, valid);
            }
        } else if (json_object_get(out, name)) {
            errs_add(errs, "%s: %s: given twice (also as %s)", where, key, name);
        } else {
            json_object_set(out, name, val);
        }
    }
    return out;
}

/* A scalar as text ("" for null); NULL for lists and maps. */
static char *scalar_dup(const json_t *v)
{
    char tmp[64];
    const char *text;

    return settings_scalar_text(v, tmp, sizeof(tmp), &text) < 0 ? NULL : strdup(text);
}

/* props with every scalar as a string, the form kubemq-targets' configs
 * have (lists and maps are left out: no setting takes one). */
static json_t *strings_of(const json_t *props)
{
    json_t *out = json_object(), *val;
    const char *key, *text;
    char tmp[64];

    /* No members when props is not an object. */
    json_object_foreach((json_t *)props, key, val)
    {
        if (out && settings_scalar_text(val, tmp, sizeof(tmp), &text) == 0) {
            json_object_set_new(out, key, json_string(text));
        }
    }
    return out;
}

static int has_control_chars(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f) {
            return 1;
        }
    }
    return 0;
}

/* properties: a map or absent/null. NULL when absent or wrong; *broken
 * set when wrong (then its keys cannot be checked). */
static const json_t *properties_of(const json_t *members, const char *where, int *broken,
                                   struct errs *errs)
{
    const json_t *p = json_object_get(members, "properties");

    *broken = 0;
    if (!p || json_is_null(p)) {
        return NULL;
    }
    if (!json_is_object(p)) {
        errs_add(errs, "%s: properties: must be a map of key: \"value\", not %s", where,
                 kind_of(p));
        *broken = 1;
        return NULL;
    }
    return p;
}

/* source: / target: of a binding: kind, name, properties. Returns the
 * properties (borrowed from members), NULL when absent. *ok is 0 when the
 * part is too broken to check its properties. */
static const json_t *load_part(struct config_part *part, const json_t *node, const char *where,
                               json_t **members_out, int *ok, struct errs *errs)
{
    json_t *members;
    const json_t *kind, *name, *props;
    int broken;

    *ok = 0;
    *members_out = NULL;
    if (!node || json_is_null(node)) {
        errs_add(errs, "%s: is required (a map with kind and properties)", where);
        return NULL;
    }
    if (!json_is_object(node)) {
        errs_add(errs, "%s: must be a map with kind, name and properties, not %s", where,
                 kind_of(node));
        return NULL;
    }
    members = known_members(node, part_keys, where, "kind, name, properties", errs);
    if (!members) {
        return NULL;
    }
    *members_out = members;
    kind = json_object_get(members, "kind");
    name = json_object_get(members, "name");
    if (!kind || json_is_null(kind) || (json_is_string(kind) && !*json_string_value(kind))) {
        errs_add(errs, "%s: kind: is required", where);
    } else if (!json_is_string(kind)) {
        errs_add(errs, "%s: kind: must be text, not %s", where, kind_of(kind));
    } else {
        part->kind = strdup(json_string_value(kind));
        *ok = part->kind != NULL;
    }
    if (name && !(part->name = scalar_dup(name))) {
        errs_add(errs, "%s: name: must be text, not %s", where, kind_of(name));
    }
    if (!part->name) {
        part->name = strdup("");
    }
    props = properties_of(members, where, &broken, errs);
    if (broken) {
        *ok = 0;
    }
    return props;
}

/* Append "kind (also a, b)" to out[0..n) at *len, after ", " unless it
 * is the first: how an unknown kind's error names the kinds there are. */
static void name_kind(char *out, size_t n, size_t *len, const char *kind,
                      const char *const *aliases)
{
    size_t j;

    if (*len < n) {
        *len += (size_t)snprintf(out + *len, n - *len, "%s%s", *len ? ", " : "", kind);
    }
    for (j = 0; aliases && aliases[j] && *len < n; j++) {
        *len += (size_t)snprintf(out + *len, n - *len, "%s%s", j ? ", " : " (also ", aliases[j]);
    }
    if (j > 0 && *len < n) {
        *len += (size_t)snprintf(out + *len, n - *len, ")");
    }
}

static void load_source(struct config_binding *b, const json_t *node, const char *wb,
                        struct errs *errs)
{
    char where[WHERE_MAX];
    json_t *members;
    const json_t *props;
    int ok;

    snprintf(where, sizeof(where), "%s: source", wb);
    props = load_part(&b->source, node, where, &members, &ok, errs);
    b->source.props = strings_of(props);
    if (ok) {
        b->source_kind = source_kind_find(b->source.kind);
        if (b->source_kind) {
            b->source.canonical_kind = b->source_kind->kind;
            source_options_load(b->source_kind, props, &b->source_opts, where, errs);
        } else {
            char names[1024] = "";
            size_t i, len = 0;

            for (i = 0; source_kinds()[i]; i++) {
                name_kind(names, sizeof(names), &len, source_kinds()[i]->kind,
                          source_kinds()[i]->aliases);
            }
            errs_add(errs, "%s: kind: unknown source kind \"%s\"; supported: %s", where,
                     b->source.kind, names);
        }
    }
    json_decref(members);
}

static void load_target(struct config_binding *b, const json_t *node, const char *wb,
                        struct errs *errs)
{
    char where[WHERE_MAX];
    json_t *members;
    const json_t *props;
    int ok, deprecated = 0;

    snprintf(where, sizeof(where), "%s: target", wb);
    props = load_part(&b->target, node, where, &members, &ok, errs);
    b->target.props = strings_of(props);
    if (ok) {
        b->target_kind = target_kind_find(b->target.kind, &deprecated);
        if (!b->target_kind) {
            char names[1024] = "";
            size_t i, len = 0;

            for (i = 0; target_kinds()[i]; i++) {
                name_kind(names, sizeof(names), &len, target_kinds()[i]->kind,
                          target_kinds()[i]->aliases);
            }
            errs_add(errs, "%s: kind: unknown target kind \"%s\"; supported: %s", where,
                     b->target.kind, names);
        } else {
            void *inst;
            b->target.canonical_kind = b->target_kind->kind;
            if (deprecated) {
                log_warn(b->name, "target kind \"%s\" is a misspelling; use \"%s\"", b->target.kind,
                         b->target_kind->kind);
            }
            /* loop NULL: validate only, no network. */
            inst = b->target_kind->create(NULL, props, b->name, where, errs);
            if (inst) {
                b->target_kind->destroy(inst);
            }
        }
    }
    json_decref(members);
}

static void load_binding(struct config_binding *b, size_t idx, const json_t *node,
                         struct errs *errs)
{
    char wb[WHERE_MAX - 40], where[WHERE_MAX];
    json_t *members;
    const json_t *name, *props;
    int broken;

    snprintf(wb, sizeof(wb), "binding #%zu", idx + 1);
    if (!json_is_object(node)) {
        errs_add(errs, "%s: must be a map with name, source, target and properties, not %s", wb,
                 kind_of(node));
        b->source.props = json_object();
        b->target.props = json_object();
        b->props = json_object();
        return;
    }
    /* Name first, so every other line can carry it. */
    name = json_object_get(node, "name");
    if (!name) {
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)node, key, v)
        {
            if (strcasecmp(key, "name") == 0) {
                name = v;
            }
        }
    }
    if (!name || json_is_null(name) || (json_is_string(name) && !*json_string_value(name))) {
        errs_add(errs, "%s: name: is required", wb);
    } else if (!(b->name = scalar_dup(name)) || json_is_boolean(name)) {
        errs_add(errs, "%s: name: must be text, not %s", wb, kind_of(name));
        free(b->name);
        b->name = NULL;
    } else if (has_control_chars(b->name)) {
        errs_add(errs, "%s: name: must not contain control characters", wb);
    } else {
        snprintf(wb, sizeof(wb), "binding \"%.200s\"", b->name);
    }

    members = known_members(node, binding_keys, wb, "name, source, target, properties", errs);
    load_source(b, json_object_get(members, "source"), wb, errs);
    load_target(b, json_object_get(members, "target"), wb, errs);
    props = properties_of(members, wb, &broken, errs);
    b->props = strings_of(props);
    if (!broken) {
        snprintf(where, sizeof(where), "%s: properties", wb);
        middleware_options_load(props, &b->middleware, where, errs);
    }
    json_decref(members);
}

static void check_duplicates(const struct config *c, struct errs *errs)
{
    size_t i, j;

    for (i = 1; i < c->n_bindings; i++) {
        if (!c->bindings[i].name) {
            continue;
        }
        for (j = 0; j < i; j++) {
            if (c->bindings[j].name && strcmp(c->bindings[i].name, c->bindings[j].name) == 0) {
                errs_add(errs,
                         "binding \"%.200s\": name: duplicate binding name (bindings #%zu and "
                         "#%zu); names must be unique",
                         c->bindings[i].name, j + 1, i + 1);
                break;
            }
        }
    }
}

static int has_checkpoint(const struct config_binding *b, int kind)
{
    const struct source_options *o = &b->source_opts;

    return b->name && b->source_kind && o->checkpoint == kind && o->address && o->channel &&
           (kind == SOURCE_CHECKPOINT_FILE ? o->checkpoint_file : o->checkpoint_channel);
}

/* Between bindings: a checkpoint file is one binding's, and a checkpoint
 * channel is no binding's events-store channel on the same broker (its
 * checkpoints would be taken as requests). */
static void check_checkpoints(const struct config *c, struct errs *errs)
{
    size_t i, j;

    for (i = 0; i < c->n_bindings; i++) {
        const struct config_binding *b = &c->bindings[i];

        for (j = 0; j < i && has_checkpoint(b, SOURCE_CHECKPOINT_FILE); j++) {
            const struct config_binding *o = &c->bindings[j];

            if (has_checkpoint(o, SOURCE_CHECKPOINT_FILE) &&
                strcmp(o->source_opts.checkpoint_file, b->source_opts.checkpoint_file) == 0) {
                errs_add(errs,
                         "binding \"%.200s\": source: checkpoint_file: also the checkpoint file of "
                         "binding \"%.200s\"; give each binding a file of its own",
                         b->name, o->name);
                break;
            }
        }
        for (j = 0; j < c->n_bindings && has_checkpoint(b, SOURCE_CHECKPOINT_KUBEMQ); j++) {
            const struct config_binding *o = &c->bindings[j];

            if (j != i && o->name && o->source_kind && o->source_kind == b->source_kind &&
                o->source_opts.address && o->source_opts.channel &&
                strcmp(o->source_opts.address, b->source_opts.address) == 0 &&
                strcmp(o->source_opts.channel, b->source_opts.checkpoint_channel) == 0) {
                errs_add(errs,
                         "binding \"%.200s\": source: checkpoint_channel: \"%.200s\" is the "
                         "channel of binding \"%.200s\" (its checkpoints would be taken as "
                         "requests)",
                         b->name, b->source_opts.checkpoint_channel, o->name);
                break;
            }
        }
    }
}

void config_log(const struct config *c)
{
    size_t i;

    for (i = 0; i < c->n_bindings && log_enabled(LOG_LEVEL_DEBUG); i++) {
        const struct config_binding *b = &c->bindings[i];
        json_t *s = settings_redact(b->source_kind->settings, b->source.props);
        json_t *t = settings_redact(b->target_kind->settings, b->target.props);
        char *st = json_dumps(s, JSON_COMPACT | JSON_SORT_KEYS);
        char *tt = json_dumps(t, JSON_COMPACT | JSON_SORT_KEYS);
        char *mt = json_dumps(b->props, JSON_COMPACT | JSON_SORT_KEYS);

        log_debug(b->name, "source %s %s, target %s %s, properties %s", b->source.canonical_kind,
                  st ? st : "?", b->target.canonical_kind, tt ? tt : "?", mt ? mt : "?");
        free(st);
        free(tt);
        free(mt);
        json_decref(s);
        json_decref(t);
    }
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* jansson's message without its "near '<text>'": the text may be a secret. */
static void json_problem(const json_error_t *jerr, const char *origin, struct errs *errs)
{
    const char *near = strstr(jerr->text, " near '");
    int n = (int)strlen(jerr->text);

    if (near && strncmp(jerr->text, "duplicate object key", 20) != 0) {
        n = (int)(near - jerr->text);
    }
    errs_add(errs, "%s: line %d, column %d: %.*s", origin, jerr->line, jerr->column, n, jerr->text);
}

static json_t *parse_tree(const char *text, size_t len, const char *origin, struct errs *errs)
{
    char yerr[512];
    json_error_t jerr;
    json_t *root;
    size_t i = 0;

    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) { /* UTF-8 byte order mark */
        text += 3;
        len -= 3;
    }
    while (i < len && strchr(" \t\r\n", text[i])) {
        i++;
    }
    if (ends_with(origin, ".json") || (i < len && text[i] == '{')) {
        root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (root) {
            return root;
        }
        if (!ends_with(origin, ".json")) { /* maybe a YAML flow map */
            root = yamltree_parse(text, len, yerr, sizeof(yerr));
            if (root) {
                return root;
            }
        }
        json_problem(&jerr, origin, errs);
        return NULL;
    }
    root = yamltree_parse(text, len, yerr, sizeof(yerr));
    if (!root) {
        errs_add(errs, "%s: %s", origin, yerr);
    }
    return root;
}

int config_load_text(struct config *c, const char *text, size_t len, const char *origin,
                     struct errs *errs)
{
    static const char *const top_keys[] = {"apiPort",  "apiAddress",  "apiEnableRequest",
                                           "logLevel", "watchConfig", "config_watch_debounce_ms",
                                           "bindings", NULL};
    int before = errs->count;
    json_t *root, *members = NULL, *bindings;
    size_t i;

    memset(c, 0, sizeof(*c));
    c->log_level = -1;
    c->source_path = strdup(origin);
    root = parse_tree(text, len, origin, errs);
    if (!root) {
        goto fail;
    }
    if (json_is_null(root)) {
        errs_add(errs, "%s: is empty; expected a map with apiPort and bindings", origin);
        goto fail;
    }
    if (!json_is_object(root)) {
        errs_add(errs, "%s: must be a map with apiPort and bindings, not %s", origin,
                 kind_of(root));
        goto fail;
    }
    members = known_members(root, top_keys, "config",
                            "apiPort, apiAddress, apiEnableRequest, logLevel, watchConfig, "
                            "config_watch_debounce_ms, bindings",
                            errs);
    if (!members) {
        goto fail;
    }
    bindings = json_incref(json_object_get(members, "bindings"));
    json_object_del(members, "bindings");
    settings_apply(config_settings, members, c, "config", errs);

    if (bindings && !json_is_null(bindings) && !json_is_array(bindings)) {
        errs_add(errs, "config: bindings: must be a list of bindings, not %s", kind_of(bindings));
    } else if (json_array_size(bindings) > 0) {
        c->n_bindings = json_array_size(bindings);
        c->bindings = calloc(c->n_bindings, sizeof(*c->bindings));
        if (!c->bindings) {
            c->n_bindings = 0;
            errs_add(errs, "config: bindings: out of memory");
        }
        for (i = 0; i < c->n_bindings; i++) {
            load_binding(&c->bindings[i], i, json_array_get(bindings, i), errs);
        }
        check_duplicates(c, errs);
        check_checkpoints(c, errs);
    }
    json_decref(bindings);
    json_decref(members);
    json_decref(root);
    if (errs->count != before || !c->source_path) {
        if (!c->source_path) {
            errs_add(errs, "%s: out of memory", origin);
        }
        config_free(c);
        return -1;
    }
    return 0;
fail:
    json_decref(root);
    config_free(c);
    return -1;
}

static int read_file(const char *path, struct buf *out, struct errs *errs)
{
    char err[512];

    if (buf_append_file(out, path, err, sizeof(err)) == 0) {
        return 0;
    }
    if (errno == EFBIG) {
        errs_add(errs, "%s: larger than %zu MiB; is this the config?", path,
                 CONFIG_MAX_BYTES >> 20);
    } else if (errno == EISDIR) {
        errs_add(errs, "%s: cannot read the config: it is a directory", path);
    } else {
        errs_add(errs, "%s: cannot read the config: %s", path, strerror(errno));
    }
    return -1;
}

/* CONFIG: the text itself, or its base64 (line breaks allowed, as the
 * base64 tool writes them). */
static int config_from_env(const char *env, struct buf *out)
{
    struct buf packed = BUF_INIT(CONFIG_MAX_BYTES * 2);
    size_t i, n = strlen(env);
    int rc = 0;

    for (i = 0; i < n && rc == 0; i++) {
        if (!strchr(" \t\r\n", env[i])) {
            rc = buf_append_char(&packed, env[i]);
        }
    }
    if (rc == 0 && packed.len > 0 && b64_decode(packed.data, packed.len, out) == 0 &&
        !memchr(out->data, '\0', out->len)) {
        buf_free(&packed);
        return 0;
    }
    buf_free(&packed);
    buf_reset(out);
    return buf_set(out, env, n);
}

int config_load(struct config *c, const char *path, struct errs *errs)
{
    struct buf text = BUF_INIT(CONFIG_MAX_BYTES);
    const char *env = getenv("CONFIG");
    const char *origin;
    int rc = -1;

    memset(c, 0, sizeof(*c));
    c->log_level = -1;
    if (!path && env && *env) {
        origin = "CONFIG";
        if (config_from_env(env, &text) < 0) {
            errs_add(errs, "CONFIG: larger than %zu MiB", CONFIG_MAX_BYTES >> 20);
            goto done;
        }
    } else {
        origin = path ? path : CONFIG_DEFAULT_PATH;
        if (read_file(origin, &text, errs) < 0) {
            goto done;
        }
    }
    rc = config_load_text(c, buf_str(&text), text.len, origin, errs);
    if (rc == 0) {
        c->from_file = strcmp(origin, "CONFIG") != 0 || path != NULL;
    }
done:
    buf_free(&text);
    return rc;
}

void config_free(struct config *c)
{
    size_t i;

    if (!c) {
        return;
    }
    for (i = 0; i < c->n_bindings; i++) {
        struct config_binding *b = &c->bindings[i];
        free(b->name);
        free(b->source.kind);
        free(b->source.name);
        json_decref(b->source.props);
        free(b->target.kind);
        free(b->target.name);
        json_decref(b->target.props);
        json_decref(b->props);
        source_options_free(b->source_kind, &b->source_opts);
        middleware_options_free(&b->middleware);
    }
    free(c->bindings);
    settings_free(config_settings, c);
    free(c->source_path);
    memset(c, 0, sizeof(*c));
    c->log_level = -1;
}

const struct config_binding *config_find_binding(const struct config *c, const char *name)
{
    size_t i;

    for (i = 0; c && name && i < c->n_bindings; i++) {
        if (c->bindings[i].name && strcmp(c->bindings[i].name, name) == 0) {
            return &c->bindings[i];
        }
    }
    return NULL;
}
