/* send.c - placeholder until the send subcommand lands. */
#include "cli/cli.h"

#include <stdio.h>

int cli_send(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "kubemq-kinesis: 'send' is not built yet\n");
    return CLI_EXIT_FAIL;
}
