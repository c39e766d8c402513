/* aws_creds_process.c - a profile's credential_process, off the loop's back.
 *
 * The command runs under /bin/sh with stdin from /dev/null and default
 * signals; its stdout is read through the loop (never a blocking read),
 * capped at AWS_CREDS_MAX_DOC, and the child is killed after
 * AWS_CREDS_PROCESS_TIMEOUT_MS. It must print the SDKs' JSON: {"Version":
 * 1, "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}. */
#include "aws/aws_creds_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROCESS_POLL_MS 20

extern char **environ;

static void stop_child(struct aws_creds_fetch *f)
{
    if (f->fd >= 0) {
        loop_io_set(f->net.loop, f->fd, 0, NULL, NULL);
        close(f->fd);
        f->fd = -1;
    }
    if (f->pid > 0) {
        kill(f->pid, SIGKILL);
        while (waitpid(f->pid, NULL, 0) < 0 && errno == EINTR) {
        }
        f->pid = -1;
    }
    loop_timer_stop(f->net.loop, &f->timer);
}

static void abandon(struct aws_creds_fetch *f)
{
    stop_child(f);
    aws_creds_fetch_free(f);
}

static void complete(struct aws_creds_fetch *f, int status)
{
    struct aws_creds got;
    json_t *root, *version;
    char why[512];

    if (WIFSIGNALED(status)) {
        aws_creds_fetch_finish(f, NULL, "credential_process killed by signal %d", WTERMSIG(status));
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        aws_creds_fetch_finish(f, NULL, "credential_process exited with status %d",
                               WEXITSTATUS(status));
        return;
    }
    root = json_loadb(f->out.data ? f->out.data : "", f->out.len, 0, NULL);
    version = json_object_get(root, "Version");
    if (root && (!json_is_integer(version) || json_integer_value(version) != 1)) {
        json_decref(root);
        aws_creds_fetch_finish(f, NULL, "credential_process: the output's Version is not 1");
        return;
    }
    json_decref(root);
    if (aws_creds_from_json(f->out.data, f->out.len, "SessionToken", &got, why, sizeof(why)) < 0) {
        aws_creds_fetch_finish(f, NULL, "credential_process: %s", why);
        return;
    }
    aws_creds_fetch_finish(f, &got, "%s", "");
    aws_creds_free(&got);
}

/* Output done: collect the exit status, polling briefly if need be. */
static void reap(void *arg)
{
    struct aws_creds_fetch *f = arg;
    int status = 0;
    pid_t r;

    do {
        r = waitpid(f->pid, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
        if (loop_now_ms(f->net.loop) >= f->deadline_ms) {
            stop_child(f);
            aws_creds_fetch_finish(f, NULL, "credential_process timed out after %d s",
                                   AWS_CREDS_PROCESS_TIMEOUT_MS / 1000);
            return;
        }
        loop_timer_start(f->net.loop, &f->timer, PROCESS_POLL_MS, reap, f);
        return;
    }
    f->pid = -1;
    loop_timer_stop(f->net.loop, &f->timer);
    complete(f, r < 0 ? 0 : status); /* ECHILD: SIGCHLD ignored, judge by the output */
}

static void on_timeout(void *arg)
{
    struct aws_creds_fetch *f = arg;

    stop_child(f);
    aws_creds_fetch_finish(f, NULL, "credential_process timed out after %d s",
                           AWS_CREDS_PROCESS_TIMEOUT_MS / 1000);
}

static void on_read(void *arg, int fd, unsigned events)
{
    struct aws_creds_fetch *f = arg;
    char chunk[4096];
    ssize_t n;

    (void)events;
    for (;;) {
        n = read(fd, chunk, sizeof(chunk));
        if (n > 0) {
            if (buf_append(&f->out, chunk, (size_t)n) < 0) {
                stop_child(f);
                aws_creds_fetch_finish(f, NULL, "credential_process printed more than %zu bytes",
                                       AWS_CREDS_MAX_DOC);
                return;
            }
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        break; /* end of output, or a read error: the exit status decides */
    }
    loop_io_set(f->net.loop, f->fd, 0, NULL, NULL);
    close(f->fd);
    f->fd = -1;
    reap(f);
}

int aws_creds_process_start(const struct aws_creds_net *net, const char *command,
                            aws_creds_got_fn got, void *ctx, struct aws_creds_fetch **out,
                            char *why, size_t whylen)
{
    struct aws_creds_fetch *f;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, defaults;
    char *argv[] = {"/bin/sh", "-c", (char *)command, NULL};
    int p[2] = {-1, -1}, rc;
    pid_t pid;

    *out = NULL;
    f = aws_creds_fetch_new(net, got, ctx);
    if (!f || pipe2(p, O_CLOEXEC) < 0) {
        snprintf(why, whylen, "credential_process: %s", f ? strerror(errno) : "out of memory");
        aws_creds_fetch_free(f);
        return -1;
    }
    /* The daemon blocks its signals in every thread: the child must not
     * inherit that. */
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGHUP);
    sigaddset(&defaults, SIGCHLD);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    rc = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        snprintf(why, whylen, "credential_process: cannot run /bin/sh: %s", strerror(rc));
        aws_creds_fetch_free(f);
        return -1;
    }
    f->pid = pid;
    f->fd = p[0];
    f->abandon = abandon;
    if (fcntl(f->fd, F_SETFL, O_NONBLOCK) < 0 ||
        loop_io_set(net->loop, f->fd, LOOP_READ, on_read, f) < 0) {
        snprintf(why, whylen, "credential_process: cannot watch its output");
        abandon(f);
        return -1;
    }
    f->deadline_ms = loop_now_ms(net->loop) + AWS_CREDS_PROCESS_TIMEOUT_MS;
    loop_timer_start(net->loop, &f->timer, AWS_CREDS_PROCESS_TIMEOUT_MS, on_timeout, f);
    *out = f;
    return 0;
}
