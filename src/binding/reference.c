/* reference.c - the Markdown settings reference, generated from the tables. */
#include "binding/config.h"

#include "binding/middleware.h"
#include "kinesis/target.h"
#include "source/source.h"

#include <stddef.h>

static int list_names(struct buf *out, const char *const *names, const char *sep)
{
    int rc = 0;
    size_t i;

    for (i = 0; names && names[i]; i++) {
        rc |= buf_appendf(out, "%s`%s`", i ? sep : "", names[i]);
    }
    return rc;
}

static int sources(struct buf *out)
{
    const struct source_kind *const *k = source_kinds();
    int rc = 0;
    size_t i, j;

    rc |= buf_append_str(out, "### Source kinds\n\n| kind | also accepted | what it does |\n"
                              "|---|---|---|\n");
    for (i = 0; k[i]; i++) {
        rc |= buf_appendf(out, "| `%s` | ", k[i]->kind);
        rc |= list_names(out, k[i]->aliases, ", ");
        rc |= buf_appendf(out, " | %s |\n", k[i]->description);
    }
    /* One table per distinct settings table, headed by the kinds using it. */
    for (i = 0; k[i]; i++) {
        int seen = 0, first = 1;
        for (j = 0; j < i; j++) {
            seen |= k[j]->settings == k[i]->settings;
        }
        if (seen) {
            continue;
        }
        rc |= buf_append_str(out, "\n### Source properties (");
        for (j = i; k[j]; j++) {
            if (k[j]->settings == k[i]->settings) {
                rc |= buf_appendf(out, "%s`%s`", first ? "" : ", ", k[j]->kind);
                first = 0;
            }
        }
        rc |= buf_append_str(out, ")\n\nGive `address`, or `host` and `port`.\n\n");
        rc |= settings_markdown(k[i]->settings, out);
    }
    return rc;
}

static int targets(struct buf *out)
{
    const struct target_kind *const *k = target_kinds();
    int rc = 0;
    size_t i;

    for (i = 0; k[i]; i++) {
        const struct target_kind *t = k[i];

        rc |= buf_appendf(out, "\n### Target `%s`", t->kind);
        if (t->aliases && t->aliases[0]) {
            rc |= buf_append_str(out, " (also ");
            rc |= list_names(out, t->aliases, ", ");
            rc |= buf_append_str(out, ")");
        }
        rc |= buf_append_str(out, "\n\n");
        if (t->deprecated && t->deprecated[0]) {
            rc |= buf_append_str(out, "The misspelling ");
            rc |= list_names(out, t->deprecated, ", ");
            rc |= buf_appendf(out, " is accepted with a warning.\n\n");
        }
        rc |= settings_markdown(t->settings, out);
    }
    return rc;
}

int config_reference_markdown(struct buf *out)
{
    int rc = 0;

    rc |= buf_append_str(out, "### Top level\n\n");
    rc |= settings_markdown(config_settings, out);
    rc |= buf_append_str(out, "| `bindings` | no | | a list | the bindings, each with `name` "
                              "(unique), `source`, `target` and `properties` |\n\n");
    rc |= sources(out);
    rc |= targets(out);
    rc |= buf_append_str(out, "\n### Binding properties (middleware)\n\n");
    rc |= settings_markdown(middleware_settings, out);
    return rc ? -1 : 0;
}
