/* cli_stdin.c - read a request body from stdin, bounded by the buffer's cap. */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int cli_read_stdin(struct buf *b, char *err, size_t errlen)
{
    char chunk[65536];
    ssize_t n;

    for (;;) {
        n = read(STDIN_FILENO, chunk, sizeof(chunk));
        if (n == 0) {
            return 0;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            snprintf(err, errlen, "reading stdin: %s", strerror(errno));
            return -1;
        }
        if (buf_append(b, chunk, (size_t)n) < 0) {
            snprintf(err, errlen, "body on stdin is larger than %zu bytes", b->max);
            return -1;
        }
    }
}
