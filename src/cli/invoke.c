/* invoke.c - placeholder until the invoke subcommand lands. */
#include "cli/cli.h"

#include <stdio.h>

int cli_invoke(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "kubemq-kinesis: 'invoke' is not built yet\n");
    return CLI_EXIT_FAIL;
}
