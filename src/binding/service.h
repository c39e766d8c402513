/* service.h - the daemon: every binding of a config, running. */
#ifndef KK_BINDING_SERVICE_H
#define KK_BINDING_SERVICE_H

#include "binding/config.h"

/* Run until SIGTERM/SIGINT; returns the process exit status. */
int binding_service_run(const struct config *c);

#endif
