/* cli.h - the subcommands of the kubemq-kinesis binary.
 *
 *   kubemq-kinesis [--config FILE] [--check] ...   run the daemon (cli_run)
 *   kubemq-kinesis invoke --config FILE --binding NAME   one request, stdin -> stdout
 *   kubemq-kinesis send --address A --channel C ...      a KubeMQ query/command
 *
 * Each returns the process exit status. */
#ifndef KK_CLI_CLI_H
#define KK_CLI_CLI_H

/* Exit statuses shared by every subcommand. */
#define CLI_EXIT_OK     0
#define CLI_EXIT_FAIL   1
#define CLI_EXIT_CONFIG 2 /* bad config or usage */

#include "base/buf.h"

#include <stddef.h>

int cli_run(int argc, char **argv);
int cli_invoke(int argc, char **argv);
int cli_send(int argc, char **argv);

/* Append all of stdin to b (at most b->max bytes). Returns 0, or -1 with
 * "reading stdin: ..." or "body on stdin is larger than N bytes" in err. */
int cli_read_stdin(struct buf *b, char *err, size_t errlen);

#endif
