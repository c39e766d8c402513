/* yamltree.h - YAML text to a jansson tree (for the config loader).
 *
 * Mappings become objects, sequences arrays, scalars strings; a plain
 * (unquoted) scalar that is an integer, true/false or null/~/empty becomes
 * the JSON integer, boolean or null. Duplicate keys, non-text keys and
 * more than one document are errors. Anchors and aliases work; merge
 * keys (<<) are not special. */
#ifndef KK_BASE_YAMLTREE_H
#define KK_BASE_YAMLTREE_H

#include <jansson.h>
#include <stddef.h>

/* The tree of text[0..len), or NULL with "line L, column C: problem" in
 * err. An empty document gives JSON null. */
json_t *yamltree_parse(const char *text, size_t len, char *err, size_t errlen);

#endif
