/* test_kubemq_client.c - the KubeMQ client against the stand-in broker (tests/rig/broker.js).
 *
 * Each test starts its own broker child on a free port and kills it by PID
 * in teardown. Waits are generous deadlines, never speed assertions. */
#include "kubemq/kubemq_client.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

extern char **environ;

#define WAIT_MS 20000

/* ---- the broker child ---- */

struct broker {
    pid_t pid;
    int port;
    int control; /* HTTP JSON control port: GET /stats */
    int out_fd;  /* kept open: the broker may still write to stdout */
    char address[64];
};

static const char *broker_js(void)
{
    const char *p = getenv("KK_BROKER_JS");

    return p && p[0] ? p : KK_RIG_DIR "/broker.js";
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Reads the broker's {"ready":true,"port":N,"control":M} line. */
static int read_ready(int fd, int *port, int *control)
{
    char line[512];
    size_t len = 0;
    uint64_t deadline = now_ms() + WAIT_MS;
    struct pollfd p = {fd, POLLIN, 0};
    const char *k;
    ssize_t n;

    while (now_ms() < deadline && len < sizeof(line) - 1) {
        if (poll(&p, 1, 200) <= 0) {
            continue;
        }
        n = read(fd, line + len, sizeof(line) - 1 - len);
        if (n <= 0) {
            return -1;
        }
        len += (size_t)n;
        line[len] = '\0';
        if (strchr(line, '\n')) {
            k = strstr(line, "\"port\":");
            if (!k || !strstr(line, "\"ready\":true")) {
                return -1;
            }
            *port = atoi(k + 7);
            k = strstr(line, "\"control\":");
            *control = k ? atoi(k + 10) : 0;
            return *port > 0 && *control > 0 ? 0 : -1;
        }
    }
    return -1;
}

static int broker_spawn(struct broker *b, int port, const char *token)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none;
    char portbuf[16];
    char *argv[8];
    int fds[2];
    int i = 0, rc;

    if (pipe2(fds, O_CLOEXEC) < 0) {
        return -1;
    }
    snprintf(portbuf, sizeof(portbuf), "%d", port);
    argv[i++] = (char *)"node";
    argv[i++] = (char *)broker_js();
    argv[i++] = (char *)"--port";
    argv[i++] = portbuf;
    if (token) {
        argv[i++] = (char *)"--auth-token";
        argv[i++] = (char *)token;
    }
    argv[i] = NULL;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    rc = posix_spawnp(&b->pid, "node", &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        b->pid = 0;
        return -1;
    }
    b->out_fd = fds[0];
    if (read_ready(b->out_fd, &b->port, &b->control) < 0) {
        return -1;
    }
    snprintf(b->address, sizeof(b->address), "127.0.0.1:%d", b->port);
    return 0;
}

static void broker_stop(struct broker *b)
{
    uint64_t deadline;
    int status;

    if (b->pid > 0) {
        kill(b->pid, SIGTERM);
        deadline = now_ms() + 5000;
        while (waitpid(b->pid, &status, WNOHANG) == 0) {
            if (now_ms() > deadline) {
                kill(b->pid, SIGKILL);
                waitpid(b->pid, &status, 0);
                break;
            }
            sleep_ms(20);
        }
        b->pid = 0;
    }
    if (b->out_fd > 0) {
        close(b->out_fd);
        b->out_fd = 0;
    }
}

/* GET /stats from the control port into dst; 0 on a complete answer. */
static int broker_stats(const struct broker *b, char *dst, size_t n)
{
    static const char req[] = "GET /stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    struct sockaddr_in a;
    size_t len = 0;
    ssize_t r;
    int fd;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)b->control);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
        close(fd);
        return -1;
    }
    while (len < n - 1 && (r = read(fd, dst + len, n - 1 - len)) > 0) {
        len += (size_t)r;
    }
    close(fd);
    dst[len] = '\0';
    return strstr(dst, " 200 ") ? 0 : -1;
}

/* Live subscribers the broker counts on channel (all groups). */
static int broker_subscribers(const struct broker *b, const char *channel)
{
    char stats[16384], key[128];
    const char *p;
    int total = 0;

    if (broker_stats(b, stats, sizeof(stats)) < 0) {
        return -1;
    }
    snprintf(key, sizeof(key), "\"%s\":{", channel);
    p = strstr(stats, "\"subscribers\":");
    p = p ? strstr(p, key) : NULL;
    if (!p) {
        return 0;
    }
    for (p += strlen(key); *p && *p != '}'; p++) {
        if (*p == ':') {
            total += atoi(p + 1);
        }
    }
    return total;
}

/* Until the broker has `count` subscribers on channel (no settle sleeps). */
static int broker_wait_subscribers(const struct broker *b, const char *channel, int count)
{
    uint64_t deadline = now_ms() + WAIT_MS;

    while (broker_subscribers(b, channel) < count) {
        if (now_ms() > deadline) {
            return -1;
        }
        sleep_ms(20);
    }
    return 0;
}

/* Start on `port` (0: any); a just-freed port may take a moment. */
static int broker_start(struct broker *b, int port, const char *token)
{
    int tries;

    for (tries = 0; tries < 20; tries++) {
        if (broker_spawn(b, port, token) == 0) {
            return 0;
        }
        broker_stop(b);
        sleep_ms(250);
    }
    return -1;
}

/* ---- a recording subscriber ---- */

#define MAX_HELD  16
#define MAX_NOTES 64

struct rec {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct kubemq_client *responder; /* answer at once through this client */
    int hold;                        /* keep requests and pause instead */
    struct kubemq_request *held[MAX_HELD];
    int nheld;
    int delivered;
    char last_channel[64];
    char last_client[64];
    char last_meta[64];
    int last_timeout;
    enum kubemq_kind last_type;
    enum kubemq_sub_state states[MAX_NOTES];
    int nstates;
};

static void rec_init(struct rec *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
}

static void rec_free(struct rec *r)
{
    int i;

    for (i = 0; i < r->nheld; i++) {
        kubemq_request_free(r->held[i]);
    }
    r->nheld = 0;
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
}

static int on_request(void *ctx, struct kubemq_request *req)
{
    struct rec *r = ctx;
    char reply[256];
    int n, rc = 0;

    pthread_mutex_lock(&r->mu);
    r->delivered++;
    snprintf(r->last_channel, sizeof(r->last_channel), "%s", req->channel);
    snprintf(r->last_client, sizeof(r->last_client), "%s", req->client_id);
    snprintf(r->last_meta, sizeof(r->last_meta), "%s", req->metadata);
    r->last_timeout = req->timeout_ms;
    r->last_type = req->type;
    if (r->hold && r->nheld < MAX_HELD) {
        r->held[r->nheld++] = req;
        req = NULL;
        rc = 1;
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (req) {
        n = snprintf(reply, sizeof(reply), "pong:%.*s", (int)req->body_len,
                     (const char *)req->body);
        if (strcmp(req->metadata, "fail") == 0) {
            kubemq_send_response(r->responder, req, 0, "boom", NULL, 0, NULL);
        } else if (strcmp(req->metadata, "echo") == 0) {
            kubemq_send_response(r->responder, req, 1, NULL, req->body, req->body_len, NULL);
        } else {
            kubemq_send_response(r->responder, req, 1, NULL, reply, (size_t)n, "meta-back");
        }
        kubemq_request_free(req);
    }
    return rc;
}

static void on_state(void *ctx, enum kubemq_sub_state st, const char *text)
{
    struct rec *r = ctx;

    if (!text || !text[0]) {
        abort(); /* the client's thread: cmocka cannot fail from here */
    }
    pthread_mutex_lock(&r->mu);
    if (r->nstates < MAX_NOTES) {
        r->states[r->nstates++] = st;
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static int rec_wait_delivered(struct rec *r, int n, int ms)
{
    uint64_t deadline = now_ms() + (uint64_t)ms;
    int ok;

    pthread_mutex_lock(&r->mu);
    while (r->delivered < n && now_ms() < deadline) {
        pthread_mutex_unlock(&r->mu);
        sleep_ms(20);
        pthread_mutex_lock(&r->mu);
    }
    ok = r->delivered >= n;
    pthread_mutex_unlock(&r->mu);
    return ok ? 0 : -1;
}

static int count_state(struct rec *r, enum kubemq_sub_state st)
{
    int i, n = 0;

    pthread_mutex_lock(&r->mu);
    for (i = 0; i < r->nstates; i++) {
        n += r->states[i] == st;
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

static int wait_state_count(struct rec *r, enum kubemq_sub_state st, int n, int ms)
{
    uint64_t deadline = now_ms() + (uint64_t)ms;

    while (count_state(r, st) < n) {
        if (now_ms() > deadline) {
            return -1;
        }
        sleep_ms(20);
    }
    return 0;
}

static int wait_subscribed(struct kubemq_subscription *s, int want, int ms)
{
    uint64_t deadline = now_ms() + (uint64_t)ms;

    while (kubemq_subscription_subscribed(s) != want) {
        if (now_ms() > deadline) {
            return -1;
        }
        sleep_ms(20);
    }
    return 0;
}

/* ---- fixture ---- */

struct fx {
    struct broker b;
    struct kubemq_client *c[3];
    struct rec rec;
};

static struct kubemq_client *client(struct fx *f, int i, const char *id, const char *token)
{
    struct kubemq_client_opts o;
    char err[256] = "";

    kubemq_client_opts_init(&o);
    o.address = f->b.address;
    o.client_id = id;
    o.auth_token = token;
    o.reconnect_interval_seconds = 1;
    o.log_name = "test";
    f->c[i] = kubemq_client_create(&o, err, sizeof(err));
    if (!f->c[i]) {
        fail_msg("kubemq_client_create: %s", err);
    }
    return f->c[i];
}

static int setup_plain(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    rec_init(&f->rec);
    *state = f;
    return broker_start(&f->b, 0, NULL);
}

static int setup_token(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    rec_init(&f->rec);
    *state = f;
    return broker_start(&f->b, 0, "s3cret-token");
}

static int teardown(void **state)
{
    struct fx *f = *state;
    int i;

    for (i = 0; i < 3; i++) {
        kubemq_client_destroy(f->c[i]);
    }
    broker_stop(&f->b);
    rec_free(&f->rec);
    free(f);
    return 0;
}

/* Retry while the channel reconnects (sends fail fast meanwhile). */
static int send_retry(struct kubemq_client *c, enum kubemq_kind k, const char *ch, const char *body,
                      const char *meta, struct kubemq_response *out, char *err, size_t errlen)
{
    uint64_t deadline = now_ms() + WAIT_MS;

    for (;;) {
        if (kubemq_send_request(c, k, ch, body, strlen(body), meta, 5000, out, err, errlen) == 0) {
            return 0;
        }
        if (now_ms() > deadline) {
            return -1;
        }
        sleep_ms(200);
    }
}

/* ---- tests ---- */

static void test_ping(void **state)
{
    struct fx *f = *state;
    struct kubemq_ping_result p;
    char err[256];

    client(f, 0, "pinger", NULL);
    assert_int_equal(kubemq_client_ping(f->c[0], 5000, &p, err, sizeof(err)), 0);
    assert_true(p.host[0] != '\0');
    assert_true(p.version[0] != '\0');
}

static void test_query_round_trip(void **state)
{
    struct fx *f = *state;
    struct kubemq_subscription *s;
    struct kubemq_response r;
    char err[512], body[64], want[64];
    int i;

    client(f, 0, "responder-1", NULL);
    client(f, 1, "requester-1", NULL);
    f->rec.responder = f->c[0];
    s = kubemq_subscribe_requests(f->c[0], KUBEMQ_QUERY, "q.round", "g1", on_request, on_state,
                                  &f->rec, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(wait_subscribed(s, 1, WAIT_MS), 0);
    assert_int_equal(broker_wait_subscribers(&f->b, "q.round", 1), 0);
    assert_int_equal(count_state(&f->rec, KUBEMQ_SUB_SUBSCRIBED), 1);

    for (i = 0; i < 20; i++) {
        snprintf(body, sizeof(body), "ping-%d", i);
        snprintf(want, sizeof(want), "pong:ping-%d", i);
        if (kubemq_send_request(f->c[1], KUBEMQ_QUERY, "q.round", body, strlen(body), "m1", 5000,
                                &r, err, sizeof(err)) < 0) {
            fail_msg("send_request %d: %s", i, err);
        }
        assert_int_equal(r.executed, 1);
        assert_string_equal(r.error, "");
        assert_int_equal(r.body_len, strlen(want));
        assert_memory_equal(r.body, want, strlen(want));
        assert_string_equal(r.metadata, "meta-back");
        assert_string_equal(r.client_id, "responder-1");
        kubemq_response_free(&r);
    }
    assert_int_equal(f->rec.delivered, 20);
    assert_string_equal(f->rec.last_channel, "q.round");
    assert_string_equal(f->rec.last_client, "requester-1");
    assert_string_equal(f->rec.last_meta, "m1");
    assert_int_equal(f->rec.last_timeout, 5000);
    assert_int_equal(f->rec.last_type, KUBEMQ_QUERY);

    /* In-band failure: executed false with the error text, call still OK. */
    assert_int_equal(kubemq_send_request(f->c[1], KUBEMQ_QUERY, "q.round", "x", 1, "fail", 5000, &r,
                                         err, sizeof(err)),
                     0);
    assert_int_equal(r.executed, 0);
    assert_string_equal(r.error, "boom");
    kubemq_response_free(&r);
}

static void test_command_same_client(void **state)
{
    struct fx *f = *state;
    struct kubemq_subscription *s;
    struct kubemq_response r;
    char err[512];

    /* One client subscribes, answers and sends: its thread and the caller's. */
    client(f, 0, "both", NULL);
    f->rec.responder = f->c[0];
    s = kubemq_subscribe_requests(f->c[0], KUBEMQ_COMMAND, "c.same", NULL, on_request, NULL,
                                  &f->rec, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(wait_subscribed(s, 1, WAIT_MS), 0);
    assert_int_equal(broker_wait_subscribers(&f->b, "c.same", 1), 0);
    if (kubemq_send_request(f->c[0], KUBEMQ_COMMAND, "c.same", "do", 2, NULL, 5000, &r, err,
                            sizeof(err)) < 0) {
        fail_msg("send_request: %s", err);
    }
    assert_int_equal(r.executed, 1);
    assert_int_equal(f->rec.last_type, KUBEMQ_COMMAND);
    kubemq_response_free(&r);
}

static void test_timeout_301(void **state)
{
    struct fx *f = *state;
    struct kubemq_response r;
    char err[512];

    client(f, 0, "lonely", NULL);
    assert_int_equal(kubemq_send_request(f->c[0], KUBEMQ_QUERY, "q.nobody", "x", 1, NULL, 500, &r,
                                         err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "Error 301"));
    /* Invalid input never reaches the wire. */
    assert_int_equal(kubemq_send_request(f->c[0], KUBEMQ_QUERY, "q.nobody", "x", 1, NULL, 0, &r,
                                         err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "timeout"));
}

struct sender {
    struct kubemq_client *c;
    char body[32];
    int rc;
    struct kubemq_response r;
    char err[512];
};

static void *sender_main(void *arg)
{
    struct sender *s = arg;

    s->rc = kubemq_send_request(s->c, KUBEMQ_QUERY, "q.bp", s->body, strlen(s->body), NULL, 15000,
                                &s->r, s->err, sizeof(s->err));
    return NULL;
}

static void test_pause_resume(void **state)
{
    struct fx *f = *state;
    struct kubemq_subscription *s;
    struct sender snd[3];
    pthread_t th[3];
    char err[512], want[64];
    int i, j;

    client(f, 0, "slow-responder", NULL);
    client(f, 1, "bp-requester", NULL);
    f->rec.hold = 1;
    s = kubemq_subscribe_requests(f->c[0], KUBEMQ_QUERY, "q.bp", NULL, on_request, NULL, &f->rec,
                                  err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(wait_subscribed(s, 1, WAIT_MS), 0);
    assert_int_equal(broker_wait_subscribers(&f->b, "q.bp", 1), 0);
    for (i = 0; i < 3; i++) {
        memset(&snd[i], 0, sizeof(snd[i]));
        snd[i].c = f->c[1];
        snprintf(snd[i].body, sizeof(snd[i].body), "bp-%d", i);
        assert_int_equal(pthread_create(&th[i], NULL, sender_main, &snd[i]), 0);
    }
    for (i = 0; i < 3; i++) {
        struct kubemq_request *req;

        assert_int_equal(rec_wait_delivered(&f->rec, i + 1, WAIT_MS), 0);
        /* Paused: nothing more arrives while the daemon holds this one. */
        sleep_ms(700);
        pthread_mutex_lock(&f->rec.mu);
        assert_int_equal(f->rec.delivered, i + 1);
        req = f->rec.held[--f->rec.nheld];
        pthread_mutex_unlock(&f->rec.mu);
        snprintf(want, sizeof(want), "done:%.*s", (int)req->body_len, (const char *)req->body);
        assert_int_equal(kubemq_send_response(f->c[0], req, 1, NULL, want, strlen(want), NULL), 0);
        kubemq_request_free(req);
        kubemq_subscription_resume(s);
    }
    for (i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
    }
    for (i = 0; i < 3; i++) {
        if (snd[i].rc != 0) {
            fail_msg("sender %d: %s", i, snd[i].err);
        }
        snprintf(want, sizeof(want), "done:%s", snd[i].body);
        assert_int_equal(snd[i].r.body_len, strlen(want));
        assert_memory_equal(snd[i].r.body, want, strlen(want));
        kubemq_response_free(&snd[i].r);
    }
    /* An explicit pause lets the one receive already posted through, then holds. */
    f->rec.hold = 0;
    f->rec.responder = f->c[0];
    kubemq_subscription_pause(s);
    pthread_mutex_lock(&f->rec.mu);
    j = f->rec.delivered;
    pthread_mutex_unlock(&f->rec.mu);
    for (i = 0; i < 2; i++) {
        memset(&snd[i], 0, sizeof(snd[i]));
        snd[i].c = f->c[1];
        snprintf(snd[i].body, sizeof(snd[i].body), "after-pause-%d", i);
        assert_int_equal(pthread_create(&th[i], NULL, sender_main, &snd[i]), 0);
    }
    assert_int_equal(rec_wait_delivered(&f->rec, j + 1, WAIT_MS), 0);
    sleep_ms(700);
    pthread_mutex_lock(&f->rec.mu);
    assert_int_equal(f->rec.delivered, j + 1);
    pthread_mutex_unlock(&f->rec.mu);
    kubemq_subscription_resume(s);
    for (i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
    }
    for (i = 0; i < 2; i++) {
        if (snd[i].rc != 0) {
            fail_msg("sender %d after pause: %s", i, snd[i].err);
        }
        snprintf(want, sizeof(want), "pong:%s", snd[i].body);
        assert_int_equal(snd[i].r.body_len, strlen(want));
        assert_memory_equal(snd[i].r.body, want, strlen(want));
        kubemq_response_free(&snd[i].r);
    }
    assert_int_equal(f->rec.delivered, j + 2);
}

static void test_broker_restart(void **state)
{
    struct fx *f = *state;
    struct kubemq_subscription *s;
    struct kubemq_response r;
    char err[512];
    int port = f->b.port;

    client(f, 0, "survivor", NULL);
    client(f, 1, "restart-requester", NULL);
    f->rec.responder = f->c[0];
    s = kubemq_subscribe_requests(f->c[0], KUBEMQ_QUERY, "q.restart", NULL, on_request, on_state,
                                  &f->rec, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(wait_subscribed(s, 1, WAIT_MS), 0);
    assert_int_equal(broker_wait_subscribers(&f->b, "q.restart", 1), 0);
    assert_int_equal(
        send_retry(f->c[1], KUBEMQ_QUERY, "q.restart", "a", NULL, &r, err, sizeof(err)), 0);
    kubemq_response_free(&r);

    broker_stop(&f->b);
    assert_int_equal(wait_subscribed(s, 0, WAIT_MS), 0);
    assert_int_equal(wait_state_count(&f->rec, KUBEMQ_SUB_LOST, 1, WAIT_MS), 0);
    assert_int_equal(broker_start(&f->b, port, NULL), 0);
    assert_int_equal(f->b.port, port);
    assert_int_equal(wait_subscribed(s, 1, WAIT_MS), 0);
    assert_int_equal(broker_wait_subscribers(&f->b, "q.restart", 1), 0);
    assert_true(count_state(&f->rec, KUBEMQ_SUB_SUBSCRIBED) >= 2);
    if (send_retry(f->c[1], KUBEMQ_QUERY, "q.restart", "b", NULL, &r, err, sizeof(err)) < 0) {
        fail_msg("after restart: %s", err);
    }
    assert_memory_equal(r.body, "pong:b", 6);
    kubemq_response_free(&r);
    assert_int_equal(count_state(&f->rec, KUBEMQ_SUB_GAVE_UP), 0);
}

static void test_auth_token(void **state)
{
    struct fx *f = *state;
    struct kubemq_subscription *s;
    struct kubemq_response r;
    struct kubemq_ping_result p;
    char err[512];

    client(f, 0, "no-token", NULL);
    assert_int_equal(kubemq_client_ping(f->c[0], 5000, &p, err, sizeof(err)), -1);
    assert_int_equal(kubemq_send_request(f->c[0], KUBEMQ_QUERY, "q.auth", "x", 1, NULL, 2000, &r,
                                         err, sizeof(err)),
                     -1);
    /* The broker's verdict, never the token itself. */
    assert_null(strstr(err, "s3cret-token"));

    client(f, 1, "with-token", "s3cret-token");
    client(f, 2, "requester-token", "s3cret-token");
    assert_int_equal(kubemq_client_ping(f->c[1], 5000, &p, err, sizeof(err)), 0);
    f->rec.responder = f->c[1];
    s = kubemq_subscribe_requests(f->c[1], KUBEMQ_QUERY, "q.auth", NULL, on_request, NULL, &f->rec,
                                  err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(wait_subscribed(s, 1, WAIT_MS), 0);
    assert_int_equal(broker_wait_subscribers(&f->b, "q.auth", 1), 0);
    if (kubemq_send_request(f->c[2], KUBEMQ_QUERY, "q.auth", "tok", 3, NULL, 5000, &r, err,
                            sizeof(err)) < 0) {
        fail_msg("with token: %s", err);
    }
    assert_memory_equal(r.body, "pong:tok", 8);
    kubemq_response_free(&r);
}

static void test_gives_up(void **state)
{
    struct fx *f = *state;
    struct kubemq_client_opts o;
    struct kubemq_subscription *s;
    char err[512];

    /* A wrong token ends every stream: the policy must stop after 2 retries. */
    kubemq_client_opts_init(&o);
    o.address = f->b.address;
    o.client_id = "wrong-token";
    o.auth_token = "not-the-token";
    o.reconnect_interval_seconds = 1;
    o.max_reconnects = 2;
    f->c[0] = kubemq_client_create(&o, err, sizeof(err));
    assert_non_null(f->c[0]);
    s = kubemq_subscribe_requests(f->c[0], KUBEMQ_QUERY, "q.denied", NULL, on_request, on_state,
                                  &f->rec, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(wait_state_count(&f->rec, KUBEMQ_SUB_GAVE_UP, 1, WAIT_MS), 0);
    assert_int_equal(count_state(&f->rec, KUBEMQ_SUB_LOST), 2);
    assert_int_equal(kubemq_subscription_subscribed(s), 0);
    assert_int_equal(f->rec.delivered, 0);
}

static void test_large_and_many_subscriptions(void **state)
{
    struct fx *f = *state;
    struct kubemq_subscription *sq, *sc;
    struct kubemq_response r;
    size_t n = 5 * 1000 * 1000 + 7, i;
    unsigned char *big = malloc(n);
    char err[512];

    /* Past gRPC's 4 MiB default in both directions; two streams on one client. */
    assert_non_null(big);
    for (i = 0; i < n; i++) {
        big[i] = (unsigned char)(i * 31 + 7);
    }
    client(f, 0, "multi", NULL);
    client(f, 1, "big-requester", NULL);
    f->rec.responder = f->c[0];
    sq = kubemq_subscribe_requests(f->c[0], KUBEMQ_QUERY, "q.big", NULL, on_request, NULL, &f->rec,
                                   err, sizeof(err));
    sc = kubemq_subscribe_requests(f->c[0], KUBEMQ_COMMAND, "c.big", NULL, on_request, NULL,
                                   &f->rec, err, sizeof(err));
    assert_non_null(sq);
    assert_non_null(sc);
    assert_int_equal(wait_subscribed(sq, 1, WAIT_MS), 0);
    assert_int_equal(wait_subscribed(sc, 1, WAIT_MS), 0);
    assert_int_equal(broker_wait_subscribers(&f->b, "q.big", 1), 0);
    assert_int_equal(broker_wait_subscribers(&f->b, "c.big", 1), 0);
    if (kubemq_send_request(f->c[1], KUBEMQ_QUERY, "q.big", big, n, "echo", 20000, &r, err,
                            sizeof(err)) < 0) {
        free(big);
        fail_msg("large query: %s", err);
    }
    assert_int_equal(r.body_len, n);
    assert_memory_equal(r.body, big, n);
    kubemq_response_free(&r);
    free(big);
    assert_int_equal(kubemq_send_request(f->c[1], KUBEMQ_COMMAND, "c.big", "c", 1, NULL, 5000, &r,
                                         err, sizeof(err)),
                     0);
    assert_int_equal(r.executed, 1);
    assert_int_equal(f->rec.last_type, KUBEMQ_COMMAND);
    kubemq_response_free(&r);
}

/* Whether the socket inode belongs to process pid. */
static int owns_socket(pid_t pid, unsigned long inode)
{
    char dir[64], path[320], link[64], want[64];
    struct dirent *e;
    DIR *d;
    int found = 0;

    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    snprintf(want, sizeof(want), "socket:[%lu]", inode);
    d = opendir(dir);
    if (!d) {
        return 0;
    }
    while (!found && (e = readdir(d)) != NULL) {
        ssize_t n;

        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        n = readlink(path, link, sizeof(link) - 1);
        if (n > 0) {
            link[n] = '\0';
            found = strcmp(link, want) == 0;
        }
    }
    closedir(d);
    return found;
}

/* Connections the broker (IPv4, 127.0.0.1) accepted on its port and still
 * holds. Only the broker's own sockets count: another test's connection
 * may use the same number as its local (ephemeral) port. */
static int connections_to(const struct broker *b)
{
    char line[512];
    unsigned lport, rport, st;
    unsigned long inode;
    int n = 0;
    FILE *f = fopen("/proc/net/tcp", "r");

    if (!f) {
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, " %*d: %*8x:%x %*8x:%x %x %*x:%*x %*x:%*x %*x %*u %*u %lu", &lport, &rport,
                   &st, &inode) == 4 &&
            lport == (unsigned)b->port && rport != 0 && st == 1 && owns_socket(b->pid, inode)) {
            n++;
        }
    }
    fclose(f);
    return n;
}

static void test_one_connection_per_client(void **state)
{
    struct fx *f = *state;
    struct kubemq_ping_result p;
    char err[256];
    uint64_t deadline;

    /* gRPC would share one subchannel between identical channels. */
    assert_int_equal(connections_to(&f->b), 0);
    client(f, 0, "conn-a", NULL);
    client(f, 1, "conn-b", NULL);
    assert_int_equal(kubemq_client_ping(f->c[0], 5000, &p, err, sizeof(err)), 0);
    assert_int_equal(kubemq_client_ping(f->c[1], 5000, &p, err, sizeof(err)), 0);
    assert_int_equal(connections_to(&f->b), 2);
    kubemq_client_destroy(f->c[1]);
    f->c[1] = NULL;
    deadline = now_ms() + WAIT_MS;
    while (connections_to(&f->b) != 1 && now_ms() < deadline) {
        sleep_ms(20);
    }
    assert_int_equal(connections_to(&f->b), 1);
}

/* Count of Ping calls the broker has seen. */
static int broker_pings(const struct broker *b)
{
    char stats[16384];
    const char *p;

    if (broker_stats(b, stats, sizeof(stats)) < 0) {
        return -1;
    }
    p = strstr(stats, "\"Ping\":");
    return p ? atoi(p + 7) : 0;
}

static void test_idle_ping_and_signal_mask(void **state)
{
    struct fx *f = *state;
    struct kubemq_client_opts o;
    char err[256], path[300], line[256];
    uint64_t deadline;
    unsigned long long blk;
    FILE *st;
    DIR *d;
    struct dirent *e;
    int threads = 0;

    kubemq_client_opts_init(&o);
    o.address = f->b.address;
    o.client_id = "idle";
    o.ping_interval_ms = 200;
    f->c[0] = kubemq_client_create(&o, err, sizeof(err));
    assert_non_null(f->c[0]);
    deadline = now_ms() + WAIT_MS;
    while (broker_pings(&f->b) < 3 && now_ms() < deadline) {
        sleep_ms(50);
    }
    assert_true(broker_pings(&f->b) >= 3);

    /* Every thread but this one (gRPC's and the client's) blocks the
     * signals the daemon's main thread waits for. */
    d = opendir("/proc/self/task");
    assert_non_null(d);
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == (int)getpid()) {
            continue;
        }
        snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
        st = fopen(path, "r");
        if (!st) {
            continue;
        }
        blk = 0;
        while (fgets(line, sizeof(line), st)) {
            if (sscanf(line, "SigBlk: %llx", &blk) == 1) {
                break;
            }
        }
        fclose(st);
        threads++;
        if ((blk & (1ull << (SIGINT - 1))) == 0 || (blk & (1ull << (SIGTERM - 1))) == 0 ||
            (blk & (1ull << (SIGHUP - 1))) == 0) {
            closedir(d);
            fail_msg("thread %s does not block SIGINT/SIGTERM/SIGHUP (SigBlk %llx)", e->d_name,
                     blk);
        }
    }
    closedir(d);
    assert_true(threads >= 1);
}

static void test_bad_options(void **state)
{
    struct kubemq_client_opts o;
    char err[512];

    (void)state;
    kubemq_client_opts_init(&o);
    o.client_id = "x";
    assert_null(kubemq_client_create(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "address"));
    o.address = "127.0.0.1:1";
    o.client_id = "";
    assert_null(kubemq_client_create(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "client_id"));
    o.client_id = "x";
    o.tls = 1;
    o.ca_file = "/nonexistent/ca.pem";
    assert_null(kubemq_client_create(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
    kubemq_client_destroy(NULL);
}

static void test_broker_down(void **state)
{
    struct kubemq_client_opts o;
    struct kubemq_client *c;
    struct kubemq_response r;
    struct kubemq_subscription *s;
    struct rec rec;
    char err[512];

    (void)state;
    rec_init(&rec);
    kubemq_client_opts_init(&o);
    o.address = "127.0.0.1:1";
    o.client_id = "nowhere";
    c = kubemq_client_create(&o, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(
        kubemq_send_request(c, KUBEMQ_QUERY, "q", "x", 1, NULL, 1000, &r, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unavailable"));
    /* A subscription waits for the broker; destroy still returns promptly. */
    s = kubemq_subscribe_requests(c, KUBEMQ_QUERY, "q", NULL, on_request, on_state, &rec, err,
                                  sizeof(err));
    assert_non_null(s);
    sleep_ms(300);
    assert_int_equal(kubemq_subscription_subscribed(s), 0);
    kubemq_client_destroy(c);
    rec_free(&rec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_broker_down),
        cmocka_unit_test_setup_teardown(test_ping, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_query_round_trip, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_command_same_client, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_301, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_pause_resume, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_broker_restart, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_large_and_many_subscriptions, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_one_connection_per_client, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_idle_ping_and_signal_mask, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_auth_token, setup_token, teardown),
        cmocka_unit_test_setup_teardown(test_gives_up, setup_token, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
