/* target.c - the registry of target kinds. */
#include "kinesis/target.h"

#include "kinesis/kinesis.h"

#include <string.h>

static const struct target_kind *const kinds[] = {
    &kinesis_target_kind,
    NULL,
};

const struct target_kind *target_kind_find(const char *name, int *deprecated)
{
    size_t i, j;

    if (deprecated) {
        *deprecated = 0;
    }
    for (i = 0; kinds[i]; i++) {
        const struct target_kind *k = kinds[i];
        if (strcmp(k->kind, name) == 0) {
            return k;
        }
        for (j = 0; k->aliases && k->aliases[j]; j++) {
            if (strcmp(k->aliases[j], name) == 0) {
                return k;
            }
        }
        for (j = 0; k->deprecated && k->deprecated[j]; j++) {
            if (strcmp(k->deprecated[j], name) == 0) {
                if (deprecated) {
                    *deprecated = 1;
                }
                return k;
            }
        }
    }
    return NULL;
}

const struct target_kind *const *target_kinds(void)
{
    return kinds;
}
