/* settings.c - settings as tables: parse, validate, redact, document. */
#include "base/settings.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int settings_parse_int(const char *s, long long min, long long max, long long *out)
{
    char *end;
    long long v;

    if (!s || !*s) {
        return -1;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || end == s || s[0] == ' ' || s[0] == '+') {
        return -1;
    }
    if (v < min || v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

int settings_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    size_t i;

    if (!s) {
        return -1;
    }
    for (i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

const struct settings_entry *settings_find(const struct settings_entry *table, const char *name)
{
    for (; table && table->name; table++) {
        if (strcmp(table->name, name) == 0) {
            return table;
        }
    }
    return NULL;
}

size_t settings_edit_distance(const char *a, const char *b)
{
    /* Levenshtein on one row; keys are short, longer input is "far". */
    size_t row[65], i, j, n = strlen(a), m = strlen(b);

    if (n > 64 || m > 64) {
        return (size_t)-1;
    }
    for (j = 0; j <= m; j++) {
        row[j] = j;
    }
    for (i = 1; i <= n; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (j = 1; j <= m; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) {
                best = up + 1;
            }
            if (row[j - 1] + 1 < best) {
                best = row[j - 1] + 1;
            }
            diag = up;
            row[j] = best;
        }
    }
    return row[m];
}

const char *settings_nearest(const struct settings_entry *table, const char *key)
{
    const char *best = NULL;
    size_t best_d = 3; /* suggest only close misspellings: at most 2 edits */

    for (; table && table->name; table++) {
        size_t d = settings_edit_distance(key, table->name);
        if (d < best_d) {
            best_d = d;
            best = table->alias_of ? table->alias_of : table->name;
        }
    }
    return best;
}

/* The canonical entry for a name or alias. */
static const struct settings_entry *canonical(const struct settings_entry *table,
                                              const struct settings_entry *e)
{
    if (e && e->alias_of) {
        return settings_find(table, e->alias_of);
    }
    return e;
}

int settings_is_secret(const struct settings_entry *table, const char *key)
{
    const struct settings_entry *e = canonical(table, settings_find(table, key));

    return e && (e->flags & SETTINGS_SECRET);
}

static int choice_index(const char *choices, const char *v, size_t vlen)
{
    const char *p = choices;
    int i = 0;

    while (p && *p) {
        size_t n = strcspn(p, "|");
        if (n == vlen && strncmp(p, v, n) == 0) {
            return i;
        }
        p += n;
        if (*p == '|') {
            p++;
        }
        i++;
    }
    return -1;
}

void settings_rule(const struct settings_entry *e, char *dst, size_t n)
{
    switch (e->type) {
    case SETTINGS_INT:
        snprintf(dst, n, "an integer from %lld to %lld", e->min, e->max);
        break;
    case SETTINGS_BOOL:
        snprintf(dst, n, "true or false");
        break;
    case SETTINGS_ENUM: {
        /* "|a|b" lists the empty choice as "" */
        const char *p = e->choices;
        size_t len = (size_t)snprintf(dst, n, "one of: ");
        int first = 1;
        while (len < n) {
            size_t w = strcspn(p, "|");
            len += (size_t)snprintf(dst + len, n - len, "%s%s%.*s%s", first ? "" : ", ",
                                    w ? "" : "\"", (int)w, p, w ? "" : "\"");
            first = 0;
            if (p[w] != '|') {
                break;
            }
            p += w + 1;
        }
        break;
    }
    case SETTINGS_JSON:
        snprintf(dst, n, "a JSON object of string values");
        break;
    default:
        snprintf(dst, n, "%s", (e->flags & SETTINGS_REQUIRED) ? "a non-empty string" : "a string");
        break;
    }
}

int settings_scalar_text(const json_t *v, char *tmp, size_t tmplen, const char **out)
{
    if (json_is_string(v)) {
        *out = json_string_value(v);
        return 0;
    }
    if (json_is_integer(v)) {
        snprintf(tmp, tmplen, "%lld", (long long)json_integer_value(v));
    } else if (json_is_real(v)) {
        snprintf(tmp, tmplen, "%.17g", json_real_value(v));
    } else if (json_is_true(v)) {
        snprintf(tmp, tmplen, "true");
    } else if (json_is_false(v)) {
        snprintf(tmp, tmplen, "false");
    } else if (json_is_null(v)) {
        tmp[0] = '\0';
    } else {
        return -1;
    }
    *out = tmp;
    return 0;
}

static int json_object_of_strings(const char *text, char *why, size_t whylen)
{
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    const char *k;
    json_t *v;
    int rc = 0;

    if (!root) {
        snprintf(why, whylen, "not valid JSON (%s at column %d)", jerr.text, jerr.column);
        return -1;
    }
    if (!json_is_object(root)) {
        snprintf(why, whylen, "must be a JSON object");
        rc = -1;
    } else {
        json_object_foreach(root, k, v)
        {
            if (!json_is_string(v)) {
                snprintf(why, whylen, "value of \"%s\" must be a string", k);
                rc = -1;
                break;
            }
        }
    }
    json_decref(root);
    return rc;
}

static int store(const struct settings_entry *e, void *obj, const char *text, const char *where,
                 const char *key, struct errs *errs)
{
    char rule[256];
    /* A bad secret is reported without its value. */
    const char *shown = (e->flags & SETTINGS_SECRET) ? "(secret, not shown)" : text;
    const char *q = (e->flags & SETTINGS_SECRET) ? "" : "\"";
    char *field = (char *)obj + e->offset;

    switch (e->type) {
    case SETTINGS_STRING: {
        char *copy = strdup(text);
        if (!copy) {
            errs_add(errs, "%s: %s: out of memory", where, key);
            return -1;
        }
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    case SETTINGS_JSON: {
        char why[200];
        char *copy;
        if (*text && json_object_of_strings(text, why, sizeof(why)) < 0) {
            errs_add(errs, "%s: %s: %s", where, key,
                     (e->flags & SETTINGS_SECRET) ? "must be a JSON object of string values" : why);
            return -1;
        }
        copy = strdup(text);
        if (!copy) {
            errs_add(errs, "%s: %s: out of memory", where, key);
            return -1;
        }
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    case SETTINGS_INT: {
        long long v;
        if (settings_parse_int(text, e->min, e->max, &v) < 0) {
            settings_rule(e, rule, sizeof(rule));
            errs_add(errs, "%s: %s: must be %s, got %s%s%s", where, key, rule, q, shown, q);
            return -1;
        }
        *(long long *)field = v;
        return 0;
    }
    case SETTINGS_BOOL: {
        int v;
        if (settings_parse_bool(text, &v) < 0) {
            errs_add(errs, "%s: %s: must be true or false, got %s%s%s", where, key, q, shown, q);
            return -1;
        }
        *(int *)field = v;
        return 0;
    }
    case SETTINGS_ENUM: {
        int idx = choice_index(e->choices, text, strlen(text));
        if (idx < 0) {
            settings_rule(e, rule, sizeof(rule));
            errs_add(errs, "%s: %s: must be %s, got %s%s%s", where, key, rule, q, shown, q);
            return -1;
        }
        *(int *)field = idx;
        return 0;
    }
    }
    return -1;
}

int settings_apply(const struct settings_entry *table, const json_t *props, void *obj,
                   const char *where, struct errs *errs)
{
    const struct settings_entry *e;
    int before = errs->count;
    const char *key;
    json_t *val;
    unsigned char seen[256];
    size_t n = 0;

    for (e = table; e->name; e++) {
        n++;
    }
    if (n > sizeof(seen)) {
        errs_add(errs, "%s: settings table too large", where);
        return -1;
    }
    memset(seen, 0, sizeof(seen));

    if (props && !json_is_object(props)) {
        errs_add(errs, "%s: properties: must be a map of key: \"value\"", where);
        props = NULL;
    }
    if (props) {
        json_object_foreach((json_t *)props, key, val)
        {
            const struct settings_entry *found = settings_find(table, key);
            const struct settings_entry *c = canonical(table, found);
            char tmp[64];
            const char *text;

            if (!found || !c) {
                const char *near = settings_nearest(table, key);
                if (near) {
                    errs_add(errs, "%s: %s: unknown property (did you mean %s?)", where, key, near);
                } else {
                    errs_add(errs, "%s: %s: unknown property", where, key);
                }
                continue;
            }
            if (settings_scalar_text(val, tmp, sizeof(tmp), &text) < 0) {
                errs_add(errs, "%s: %s: must be a single value, not a %s", where, key,
                         json_is_array(val) ? "list" : "map");
                continue;
            }
            if (seen[c - table]) {
                errs_add(errs, "%s: %s: given twice (also as %s)", where, key, c->name);
                continue;
            }
            seen[c - table] = 1;
            if (*text == '\0' && c->type != SETTINGS_STRING && c->type != SETTINGS_JSON) {
                /* An empty number or flag means "use the default", as in
                 * kubemq-targets' example configs (group: "", log_level: ""). */
                seen[c - table] = 0;
                continue;
            }
            if (*text == '\0' && (c->flags & SETTINGS_REQUIRED)) {
                errs_add(errs, "%s: %s: is required and must not be empty", where, key);
                continue;
            }
            store(c, obj, text, where, key, errs);
        }
    }
    for (e = table; e->name; e++) {
        if (e->alias_of || seen[e - table]) {
            continue;
        }
        if (e->flags & SETTINGS_REQUIRED) {
            errs_add(errs, "%s: %s: is required", where, e->name);
            continue;
        }
        if (e->def || e->type == SETTINGS_STRING || e->type == SETTINGS_JSON) {
            store(e, obj, e->def ? e->def : "", where, e->name, errs);
        }
    }
    return errs->count == before ? 0 : -1;
}

void settings_free(const struct settings_entry *table, void *obj)
{
    const struct settings_entry *e;

    if (!obj) {
        return;
    }
    for (e = table; e->name; e++) {
        if (!e->alias_of && (e->type == SETTINGS_STRING || e->type == SETTINGS_JSON)) {
            char **field = (char **)((char *)obj + e->offset);
            free(*field);
            *field = NULL;
        }
    }
}

json_t *settings_redact(const struct settings_entry *table, const json_t *props)
{
    json_t *out = json_object();
    const char *key;
    json_t *val;

    if (!out || !json_is_object(props)) {
        return out;
    }
    json_object_foreach((json_t *)props, key, val)
    {
        if (settings_is_secret(table, key)) {
            json_object_set_new(out, key, json_string("***"));
        } else {
            json_object_set(out, key, val);
        }
    }
    return out;
}

int settings_markdown(const struct settings_entry *table, struct buf *out)
{
    const struct settings_entry *e;
    char rule[256];
    int rc = 0;

    rc |= buf_append_str(out, "| key | required | default | rule | description |\n"
                              "|---|---|---|---|---|\n");
    for (e = table; e->name; e++) {
        if (e->alias_of) {
            rc |= buf_appendf(out, "| `%s` | | | | another spelling of `%s` |\n", e->name,
                              e->alias_of);
            continue;
        }
        settings_rule(e, rule, sizeof(rule));
        rc |= buf_appendf(out, "| `%s` | %s | %s%s%s | %s | %s%s |\n", e->name,
                          (e->flags & SETTINGS_REQUIRED) ? "yes" : "no", e->def ? "`" : "",
                          e->def ? (*e->def ? e->def : "\"\"") : "", e->def ? "`" : "", rule,
                          e->description,
                          (e->flags & SETTINGS_SECRET) ? " (secret: never logged or served)" : "");
    }
    return rc ? -1 : 0;
}
