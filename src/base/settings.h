/* settings.h - settings as tables: name, type, default, rule, description.
 *
 * One table per source kind, target kind and the binding middleware. The
 * same table parses and validates a `properties` map into the owner's
 * struct (by offset), redacts secrets for /bindings, and writes the
 * settings reference in the documentation, so the three never disagree.
 *
 * Values in the file are strings (as in kubemq-targets); numbers and
 * booleans are parsed strictly and never silently defaulted. */
#ifndef KK_BASE_SETTINGS_H
#define KK_BASE_SETTINGS_H

#include "base/buf.h"
#include "base/errs.h"

#include <jansson.h>
#include <stddef.h>

enum settings_type {
    SETTINGS_STRING, /* char *, malloc'd; "" when absent without default */
    SETTINGS_INT,    /* long long, within [min, max] */
    SETTINGS_BOOL,   /* int 0/1: true/false/1/0/yes/no (any case) */
    SETTINGS_ENUM,   /* int: index into choices ("a|b|c") */
    SETTINGS_JSON,   /* char *: text of a JSON object whose values are strings */
};

#define SETTINGS_REQUIRED 1u
#define SETTINGS_SECRET   2u /* never logged or served */

struct settings_entry {
    const char *name;
    enum settings_type type;
    const char *def; /* default as text; NULL = none */
    unsigned flags;
    long long min, max;
    const char *choices;  /* SETTINGS_ENUM */
    size_t offset;        /* of the field in the owner's struct */
    const char *alias_of; /* non-NULL: another spelling of that entry */
    const char *description;
};

/* Fill obj from props (a JSON object; NULL = empty). Every problem is one
 * line "<where>: <key>: <what is wrong>" in errs. Returns 0 when this
 * table added no problem. Fields of absent keys get their defaults. */
int settings_apply(const struct settings_entry *table, const json_t *props, void *obj,
                   const char *where, struct errs *errs);
/* Free the strings settings_apply stored in obj. */
void settings_free(const struct settings_entry *table, void *obj);

const struct settings_entry *settings_find(const struct settings_entry *table, const char *name);
/* The entry name closest to a misspelt key (at most 2 edits), or NULL. */
const char *settings_nearest(const struct settings_entry *table, const char *key);
size_t settings_edit_distance(const char *a, const char *b);
int settings_is_secret(const struct settings_entry *table, const char *key);
/* New reference: props with every secret value replaced by "***". */
json_t *settings_redact(const struct settings_entry *table, const json_t *props);
/* The rule in words, e.g. "an integer from 1 to 1024". */
void settings_rule(const struct settings_entry *e, char *dst, size_t n);
/* A Markdown table of the entries (the settings reference). */
int settings_markdown(const struct settings_entry *table, struct buf *out);

/* A scalar's text: strings as they are, numbers and booleans in JSON
 * form, null as "" (in tmp, >= 64 bytes, when not a string). -1 for lists
 * and maps. */
int settings_scalar_text(const json_t *v, char *tmp, size_t tmplen, const char **out);

/* Strict scalar parsers, shared with request metadata validation. */
int settings_parse_int(const char *s, long long min, long long max, long long *out);
int settings_parse_bool(const char *s, int *out);

#endif
