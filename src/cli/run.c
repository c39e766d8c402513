/* run.c - placeholder until the run subcommand lands. */
#include "cli/cli.h"

#include <stdio.h>

int cli_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "kubemq-kinesis: 'run' is not built yet\n");
    return CLI_EXIT_FAIL;
}
