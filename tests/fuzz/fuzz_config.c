/* fuzz_config.c - libFuzzer: the config loader (YAML or JSON text, every
 * source kind, target kind and middleware table). A refusal must say why.
 * See run.sh. */
#include "base/errs.h"
#include "base/log.h"
#include "binding/config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    struct config c;
    struct errs errs;

    if (!quiet) {
        log_setup(LOG_LEVEL_ERROR, LOG_FORMAT_TEXT);
        quiet = 1;
    }
    memset(&c, 0, sizeof(c));
    errs_init(&errs);
    if (config_load_text(&c, (const char *)data, size, "fuzz", &errs) < 0 && !errs.text.len) {
        abort();
    }
    config_free(&c);
    errs_free(&errs);
    return 0;
}
