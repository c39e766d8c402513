/* spawn.h - run a child (node scripts of the rig) from a unit test and stop
 * it by its PID. Header-only, for tests. The child's stdin is a pipe that
 * closes when the test process dies, so rig scripts started with
 * --parent-watch never outlive a crashed test. */
#ifndef KK_TESTS_SPAWN_H
#define KK_TESTS_SPAWN_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct spawned {
    pid_t pid;
    int out_fd; /* the child's stdout */
    int in_fd;  /* the child's stdin (kept open until stop) */
};

/* Start argv (searched in PATH) with stdout on a pipe. Returns 0 or -1. */
static inline int spawn_start(struct spawned *s, char *const argv[])
{
    int fds[2], in[2];
    pid_t pid;

    s->pid = -1;
    s->out_fd = -1;
    s->in_fd = -1;
    if (pipe2(fds, O_CLOEXEC) < 0) {
        return -1;
    }
    if (pipe2(in, O_CLOEXEC) < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        close(in[0]);
        close(in[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], 1); /* dup2 clears close-on-exec on the copy */
        dup2(in[0], 0);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    close(in[0]);
    s->pid = pid;
    s->out_fd = fds[0];
    s->in_fd = in[1];
    return 0;
}

/* Read one line (without '\n') from the child's stdout, waiting at most
 * timeout_s. Returns its length or -1. */
static inline int spawn_read_line(struct spawned *s, char *line, size_t cap, int timeout_s)
{
    size_t n = 0;
    time_t end = time(NULL) + timeout_s;

    while (n + 1 < cap && time(NULL) <= end) {
        fd_set rd;
        struct timeval tv = {1, 0};
        char c;
        ssize_t r;

        FD_ZERO(&rd);
        FD_SET(s->out_fd, &rd);
        if (select(s->out_fd + 1, &rd, NULL, NULL, &tv) <= 0) {
            continue;
        }
        r = read(s->out_fd, &c, 1);
        if (r <= 0) {
            return -1;
        }
        if (c == '\n') {
            line[n] = '\0';
            return (int)n;
        }
        line[n++] = c;
    }
    return -1;
}

/* Read everything until EOF into out (truncated to cap-1). */
static inline void spawn_read_all(struct spawned *s, char *out, size_t cap)
{
    size_t n = 0;
    ssize_t r;
    char tmp[4096];

    while ((r = read(s->out_fd, tmp, sizeof(tmp))) > 0) {
        size_t k = (size_t)r;
        if (n + k >= cap) {
            k = cap - 1 - n;
        }
        memcpy(out + n, tmp, k);
        n += k;
    }
    out[n] = '\0';
}

/* Wait for the child to exit; returns its exit status or -1. */
static inline int spawn_wait(struct spawned *s)
{
    int st = 0;

    if (s->pid <= 0) {
        return -1;
    }
    while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR) {
    }
    s->pid = -1;
    if (s->out_fd >= 0) {
        close(s->out_fd);
        s->out_fd = -1;
    }
    if (s->in_fd >= 0) {
        close(s->in_fd);
        s->in_fd = -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* SIGTERM, then SIGKILL after 3 s; always reaps. */
static inline void spawn_stop(struct spawned *s)
{
    int i, st;

    if (s->pid <= 0) {
        return;
    }
    kill(s->pid, SIGTERM);
    for (i = 0; i < 30; i++) {
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            goto reaped;
        }
        usleep(100 * 1000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &st, 0);
reaped:
    s->pid = -1;
    if (s->out_fd >= 0) {
        close(s->out_fd);
        s->out_fd = -1;
    }
    if (s->in_fd >= 0) {
        close(s->in_fd);
        s->in_fd = -1;
    }
}

#endif
