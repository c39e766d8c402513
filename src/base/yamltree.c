/* yamltree.c - YAML text to a jansson tree, on libyaml's event parser. */
#include "base/yamltree.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Deeper nesting than any config needs; bounds the recursion. */
#define YAMLTREE_MAX_DEPTH 64
/* Aliases share nodes, so a few are cheap; many nested ones would blow up
 * whoever prints the tree ("billion laughs"). */
#define YAMLTREE_MAX_ALIASES 64

struct anchor {
    char *name;
    json_t *node;
};

struct yamltree {
    yaml_parser_t parser;
    const char *text;
    size_t len;
    char *err;
    size_t errlen;
    int failed;
    struct anchor *anchors;
    size_t n_anchors;
    unsigned aliases;
};

static void fail_at(struct yamltree *t, const yaml_mark_t *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail_at(struct yamltree *t, const yaml_mark_t *m, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (t->failed) {
        return;
    }
    t->failed = 1;
    n = snprintf(t->err, t->errlen, "line %zu, column %zu: ", m->line + 1, m->column + 1);
    if (n < 0 || (size_t)n >= t->errlen) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(t->err + n, t->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

/* Does line (0-based) of the text start with whitespace holding a tab? */
static int line_indented_with_tab(const struct yamltree *t, size_t line)
{
    const char *p = t->text, *end = t->text + t->len;
    size_t i;

    for (i = 0; i < line && p < end; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            return 0;
        }
        p = nl + 1;
    }
    for (; p < end && (*p == ' ' || *p == '\t'); p++) {
        if (*p == '\t') {
            return 1;
        }
    }
    return 0;
}

static void fail_syntax(struct yamltree *t)
{
    const yaml_parser_t *p = &t->parser;
    const char *hint = "";

    if (line_indented_with_tab(t, p->problem_mark.line) ||
        (p->context && line_indented_with_tab(t, p->context_mark.line))) {
        hint = " (a tab in the indentation: YAML indents with spaces only)";
    }
    if (p->context) {
        fail_at(t, &p->problem_mark, "%s, %s at line %zu%s",
                p->problem ? p->problem : "syntax error", p->context, p->context_mark.line + 1,
                hint);
    } else {
        fail_at(t, &p->problem_mark, "%s%s", p->problem ? p->problem : "syntax error", hint);
    }
}

static int next(struct yamltree *t, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&t->parser, ev)) {
        fail_syntax(t);
        return -1;
    }
    return 0;
}

static int remember(struct yamltree *t, const yaml_char_t *name, json_t *node)
{
    struct anchor *a;
    char *copy;

    if (!name) {
        return 0;
    }
    copy = strdup((const char *)name);
    a = realloc(t->anchors, (t->n_anchors + 1) * sizeof(*a));
    if (!copy || !a) {
        free(copy);
        if (a) {
            t->anchors = a;
        }
        return -1;
    }
    t->anchors = a;
    /* A later anchor of the same name wins: search runs backwards. */
    a[t->n_anchors].name = copy;
    a[t->n_anchors].node = json_incref(node);
    t->n_anchors++;
    return 0;
}

static json_t *recall(struct yamltree *t, const yaml_event_t *ev)
{
    const char *name = (const char *)ev->data.alias.anchor;
    size_t i;

    if (++t->aliases > YAMLTREE_MAX_ALIASES) {
        fail_at(t, &ev->start_mark, "more than %d aliases", YAMLTREE_MAX_ALIASES);
        return NULL;
    }
    for (i = t->n_anchors; i > 0; i--) {
        if (strcmp(t->anchors[i - 1].name, name) == 0) {
            return json_incref(t->anchors[i - 1].node);
        }
    }
    fail_at(t, &ev->start_mark, "alias *%s names no anchor defined before it", name);
    return NULL;
}

static int is_plain_int(const char *s, size_t n)
{
    size_t i = 0;

    if (n > 0 && s[0] == '-') {
        i = 1;
    }
    if (i == n || n - i > 18) { /* 18 digits always fit in a long long */
        return 0;
    }
    if (s[i] == '0' && n - i > 1) { /* 0755 stays text, as YAML 1.2 core would not agree */
        return 0;
    }
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    return 1;
}

static int word_is(const char *s, size_t n, const char *const *words)
{
    for (; *words; words++) {
        if (strlen(*words) == n && memcmp(s, *words, n) == 0) {
            return 1;
        }
    }
    return 0;
}

static json_t *scalar(struct yamltree *t, const yaml_event_t *ev)
{
    static const char *const nulls[] = {"~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    json_t *v;

    if (memchr(s, '\0', n)) {
        fail_at(t, &ev->start_mark, "a value must not contain a NUL character");
        return NULL;
    }
    if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !ev->data.scalar.tag) {
        if (n == 0 || word_is(s, n, nulls)) {
            return json_null();
        }
        if (word_is(s, n, trues)) {
            return json_true();
        }
        if (word_is(s, n, falses)) {
            return json_false();
        }
        if (is_plain_int(s, n)) {
            return json_integer(strtoll(s, NULL, 10));
        }
    }
    v = json_stringn(s, n);
    if (!v) {
        fail_at(t, &ev->start_mark, "a value is not valid UTF-8");
    }
    return v;
}

static json_t *node(struct yamltree *t, yaml_event_t *ev, int depth);

static json_t *mapping(struct yamltree *t, int depth)
{
    json_t *obj = json_object();
    yaml_event_t ev;

    if (!obj) {
        return NULL;
    }
    for (;;) {
        json_t *val;
        char *key;

        if (next(t, &ev) < 0) {
            goto fail;
        }
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return obj;
        }
        if (ev.type != YAML_SCALAR_EVENT) {
            fail_at(t, &ev.start_mark, "a key must be plain text, not a %s",
                    ev.type == YAML_MAPPING_START_EVENT    ? "map"
                    : ev.type == YAML_SEQUENCE_START_EVENT ? "list"
                                                           : "alias");
            yaml_event_delete(&ev);
            goto fail;
        }
        if (memchr(ev.data.scalar.value, '\0', ev.data.scalar.length)) {
            fail_at(t, &ev.start_mark, "a key must not contain a NUL character");
            yaml_event_delete(&ev);
            goto fail;
        }
        key = strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
        if (!key) {
            yaml_event_delete(&ev);
            goto fail;
        }
        if (json_object_get(obj, key)) {
            fail_at(t, &ev.start_mark, "duplicate key \"%s\"", key);
            free(key);
            yaml_event_delete(&ev);
            goto fail;
        }
        yaml_event_delete(&ev);
        if (next(t, &ev) < 0) {
            free(key);
            goto fail;
        }
        val = node(t, &ev, depth + 1);
        yaml_event_delete(&ev);
        if (!val || json_object_set_new(obj, key, val) < 0) {
            if (!t->failed) {
                fail_at(t, &t->parser.mark, "key \"%s\" is not valid UTF-8", key);
            }
            free(key);
            goto fail;
        }
        free(key);
    }
fail:
    json_decref(obj);
    return NULL;
}

static json_t *sequence(struct yamltree *t, int depth)
{
    json_t *arr = json_array();
    yaml_event_t ev;

    if (!arr) {
        return NULL;
    }
    for (;;) {
        json_t *val;

        if (next(t, &ev) < 0) {
            goto fail;
        }
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return arr;
        }
        val = node(t, &ev, depth + 1);
        yaml_event_delete(&ev);
        if (!val || json_array_append_new(arr, val) < 0) {
            goto fail;
        }
    }
fail:
    json_decref(arr);
    return NULL;
}

/* The node that starts with ev (which the caller deletes). */
static json_t *node(struct yamltree *t, yaml_event_t *ev, int depth)
{
    const yaml_char_t *anchor = NULL;
    json_t *v = NULL;

    if (depth > YAMLTREE_MAX_DEPTH) {
        fail_at(t, &ev->start_mark, "nested deeper than %d levels", YAMLTREE_MAX_DEPTH);
        return NULL;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        anchor = ev->data.scalar.anchor;
        v = scalar(t, ev);
        break;
    case YAML_MAPPING_START_EVENT:
        anchor = ev->data.mapping_start.anchor;
        v = mapping(t, depth);
        break;
    case YAML_SEQUENCE_START_EVENT:
        anchor = ev->data.sequence_start.anchor;
        v = sequence(t, depth);
        break;
    case YAML_ALIAS_EVENT:
        return recall(t, ev);
    default:
        fail_at(t, &ev->start_mark, "unexpected YAML event");
        return NULL;
    }
    if (v && remember(t, anchor, v) < 0) {
        json_decref(v);
        v = NULL;
    }
    if (!v && !t->failed) {
        fail_at(t, &ev->start_mark, "out of memory");
    }
    return v;
}

json_t *yamltree_parse(const char *text, size_t len, char *err, size_t errlen)
{
    struct yamltree t;
    yaml_event_t ev;
    json_t *root = NULL;
    size_t i;

    memset(&t, 0, sizeof(t));
    t.text = text;
    t.len = len;
    t.err = err;
    t.errlen = errlen;
    if (errlen) {
        err[0] = '\0';
    }
    if (!yaml_parser_initialize(&t.parser)) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&t.parser, (const unsigned char *)text, len);

    if (next(&t, &ev) < 0) { /* STREAM-START */
        goto done;
    }
    yaml_event_delete(&ev);
    if (next(&t, &ev) < 0) {
        goto done;
    }
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        root = json_null();
        goto done;
    }
    yaml_event_delete(&ev); /* DOCUMENT-START */
    if (next(&t, &ev) < 0) {
        goto done;
    }
    root = node(&t, &ev, 0);
    yaml_event_delete(&ev);
    if (!root) {
        goto done;
    }
    if (next(&t, &ev) < 0) { /* DOCUMENT-END */
        goto fail;
    }
    yaml_event_delete(&ev);
    if (next(&t, &ev) < 0) {
        goto fail;
    }
    if (ev.type != YAML_STREAM_END_EVENT) {
        fail_at(&t, &ev.start_mark, "only one YAML document is allowed (found a second '---')");
        yaml_event_delete(&ev);
        goto fail;
    }
    yaml_event_delete(&ev);
    goto done;
fail:
    json_decref(root);
    root = NULL;
done:
    if (!root && !t.failed) {
        snprintf(err, errlen, "out of memory");
    }
    for (i = 0; i < t.n_anchors; i++) {
        free(t.anchors[i].name);
        json_decref(t.anchors[i].node);
    }
    free(t.anchors);
    yaml_parser_delete(&t.parser);
    return root;
}
