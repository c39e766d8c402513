/* main.c - kubemq-kinesis: KubeMQ sources to AWS Kinesis Data Streams.
 *
 * Dispatches to a subcommand; everything else lives in src/cli/. */
#include "cli/cli.h"

#include <signal.h>
#include <string.h>

int main(int argc, char **argv)
{
    /* A peer closing its socket is an error to handle, not a reason to die. */
    signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && strcmp(argv[1], "invoke") == 0) {
        return cli_invoke(argc - 1, argv + 1);
    }
    if (argc > 1 && strcmp(argv[1], "send") == 0) {
        return cli_send(argc - 1, argv + 1);
    }
    return cli_run(argc, argv);
}
