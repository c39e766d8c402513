/* service.c - placeholder until the binding service lands. */
#include "binding/service.h"

#include "base/log.h"

int binding_service_run(const struct config *c)
{
    (void)c;
    log_error(NULL, "daemon mode is not built yet");
    return 1;
}
