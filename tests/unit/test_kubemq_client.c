/* test_kubemq_client.c - the KubeMQ client against the stand-in broker (tests/rig/broker.js).
 *
 * The stand-in runs on @grpc/grpc-js, an HTTP/2 gRPC stack we did not
 * write. Each test starts its own broker child and stops it by PID; the
 * test drives a loop of its own (loop_run_once until a condition or a
 * generous deadline, never a speed assertion). What the broker cannot show
 * (a server that never answers, GOAWAY, the exact frames sent) comes from
 * a bare nghttp2 server on the same loop (h2stub.h). Every callback checks
 * that it does not run inside the call that started its operation. */
#include "kubemq/kubemq_client.h"
#include "kubemq/kubemq_internal.h" /* one white-box test: stream ids running out */

#include "base/clock.h"
#include "base/log.h"
#include "base/loop.h"

#include "h2stub.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

extern char **environ;

#define WAIT_MS 20000

static uint64_t now_ms(void)
{
    return clock_mono_ms();
}

/* ---- the callbacks' own checks ---- */

static int g_inside;     /* 1 while a test is inside a call that starts an operation */
static int g_violations; /* callbacks that ran inside one */

#define CHECK_OUTSIDE()                                                                            \
    do {                                                                                           \
        if (g_inside) {                                                                            \
            g_violations++;                                                                        \
        }                                                                                          \
    } while (0)

/* Runs expr as "the starting call". */
#define STARTING(expr)                                                                             \
    do {                                                                                           \
        g_inside = 1;                                                                              \
        expr;                                                                                      \
        g_inside = 0;                                                                              \
    } while (0)

/* ---- the log, captured ---- */

static char g_logpath[] = "/tmp/kk-test-kubemq-log-XXXXXX";

static int log_has(const char *needle)
{
    char line[2048];
    int found = 0;
    FILE *f = fopen(g_logpath, "r");

    if (!f) {
        return 0;
    }
    while (!found && fgets(line, sizeof(line), f)) {
        found = strstr(line, needle) != NULL;
    }
    fclose(f);
    return found;
}

/* ---- the broker child ---- */

struct broker {
    pid_t pid;
    int port;
    int control;
    int out_fd;
    char address[96];
};

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
            *port = (int)strtol(k + 7, NULL, 10);
            k = strstr(line, "\"control\":");
            *control = k ? (int)strtol(k + 10, NULL, 10) : 0;
            return *port > 0 ? 0 : -1;
        }
    }
    return -1;
}

/* argv[0] is "node"; returns 0 once the child printed its ready line. */
static int spawn_ready(struct broker *b, char **argv)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none;
    int fds[2], rc;

    memset(b, 0, sizeof(*b));
    if (pipe2(fds, O_CLOEXEC) < 0) {
        return -1;
    }
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
    return read_ready(b->out_fd, &b->port, &b->control);
}

static void broker_signal(struct broker *b, int sig)
{
    uint64_t deadline;
    int status;

    if (b->pid > 0) {
        kill(b->pid, sig);
        deadline = now_ms() + 5000;
        while (waitpid(b->pid, &status, WNOHANG) == 0) {
            if (now_ms() > deadline) {
                kill(b->pid, SIGKILL);
                waitpid(b->pid, &status, 0);
                break;
            }
            usleep(20000);
        }
        b->pid = 0;
    }
    if (b->out_fd > 0) {
        close(b->out_fd);
        b->out_fd = 0;
    }
}

static void broker_stop(struct broker *b)
{
    broker_signal(b, SIGTERM);
}

struct broker_opts {
    int port;
    const char *token;
    const char *cert, *key;
    const char *host; /* "::1": an IPv6 listener */
};

static int broker_start(struct broker *b, const struct broker_opts *o)
{
    char portbuf[16];
    char *argv[16];
    int tries, i;

    for (tries = 0; tries < 20; tries++) {
        i = 0;
        snprintf(portbuf, sizeof(portbuf), "%d", o->port);
        argv[i++] = (char *)"node";
        argv[i++] = (char *)KK_RIG_DIR "/broker.js";
        argv[i++] = (char *)"--port";
        argv[i++] = portbuf;
        if (o->token) {
            argv[i++] = (char *)"--auth-token";
            argv[i++] = (char *)o->token;
        }
        if (o->cert) {
            argv[i++] = (char *)"--tls-cert";
            argv[i++] = (char *)o->cert;
            argv[i++] = (char *)"--tls-key";
            argv[i++] = (char *)o->key;
        }
        if (o->host) {
            argv[i++] = (char *)"--host";
            argv[i++] = (char *)o->host;
        }
        argv[i] = NULL;
        if (spawn_ready(b, argv) == 0) {
            if (o->host && strchr(o->host, ':')) {
                snprintf(b->address, sizeof(b->address), "[%s]:%d", o->host, b->port);
            } else {
                snprintf(b->address, sizeof(b->address), "127.0.0.1:%d", b->port);
            }
            return 0;
        }
        broker_stop(b);
        usleep(250000); /* a just-freed port may take a moment */
    }
    return -1;
}

/* One HTTP request to the control port; the answer in dst. */
static int broker_http(const struct broker *b, const char *method, const char *path, char *dst,
                       size_t n)
{
    char req[256];
    struct sockaddr_in a;
    size_t len = 0;
    ssize_t r;
    int fd, rl;

    rl = snprintf(req, sizeof(req),
                  "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", method, path);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)b->control);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || write(fd, req, (size_t)rl) != rl) {
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

/* A counter from /stats: the number after "key": (0 when absent, -1 on error). */
static int broker_stat(const struct broker *b, const char *key)
{
    char stats[32768], k[128];
    const char *p;

    if (broker_http(b, "GET", "/stats", stats, sizeof(stats)) < 0) {
        return -1;
    }
    snprintf(k, sizeof(k), "\"%s\":", key);
    p = strstr(stats, k);
    return p ? (int)strtol(p + strlen(k), NULL, 10) : 0;
}

/* Live subscribers on channel (any kind, any group). */
static int broker_subscribers(const struct broker *b, const char *channel)
{
    char stats[32768], key[128];
    const char *p, *q;
    char *end;
    int total = 0;

    if (broker_http(b, "GET", "/stats", stats, sizeof(stats)) < 0) {
        return -1;
    }
    snprintf(key, sizeof(key), "\"%s\":{", channel);
    p = strstr(stats, "\"subscribers\":");
    end = p ? strstr(p, "\"stores\":") : NULL; /* the next section, also keyed by channel */
    if (end) {
        *end = '\0';
    }
    while (p && (q = strstr(p, key)) != NULL) {
        for (q += strlen(key); *q && *q != '}'; q++) {
            if (*q == ':') {
                total += (int)strtol(q + 1, NULL, 10);
            }
        }
        p = q;
    }
    return total;
}

/* ---- the fixture: a loop, a broker, clients ---- */

#define NCLIENTS 5

struct fx {
    struct loop *loop;
    struct broker b;
    struct kubemq_client *c[NCLIENTS];
    struct h2stub stub; /* when stub_on */
    int stub_on;
    char dir[64]; /* TLS material, when made */
};

/* Run the loop until cond holds or the deadline passes; the value of cond. */
#define RUN_UNTIL(f, cond, ms)                                                                     \
    ({                                                                                             \
        uint64_t d_ = now_ms() + (uint64_t)(ms);                                                   \
        while (!(cond) && now_ms() < d_) {                                                         \
            loop_run_once((f)->loop, 20);                                                          \
        }                                                                                          \
        (cond) ? 1 : 0;                                                                            \
    })

static void run_for(struct fx *f, int ms)
{
    uint64_t d = now_ms() + (uint64_t)ms;

    while (now_ms() < d) {
        loop_run_once(f->loop, 20);
    }
}

/* Broker waits that keep the client's loop going. */
static int wait_subscribers(struct fx *f, const char *channel, int n)
{
    return RUN_UNTIL(f, broker_subscribers(&f->b, channel) >= n, WAIT_MS);
}

static struct kubemq_client *client_opts(struct fx *f, int i, struct kubemq_client_opts *o)
{
    char err[512] = "";

    f->c[i] = kubemq_client_create(f->loop, o, err, sizeof(err));
    if (!f->c[i]) {
        fail_msg("kubemq_client_create: %s", err);
    }
    return f->c[i];
}

static struct kubemq_client *client(struct fx *f, int i, const char *id, const char *token)
{
    struct kubemq_client_opts o;

    kubemq_client_opts_init(&o);
    o.address = f->b.address;
    o.client_id = id;
    o.auth_token = token;
    o.reconnect_interval_seconds = 1;
    o.log_name = "test";
    return client_opts(f, i, &o);
}

static struct fx *fx_new(void)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[256];

    assert_non_null(f);
    f->loop = loop_create(err, sizeof(err));
    assert_non_null(f->loop);
    g_violations = 0;
    return f;
}

static int setup_plain(void **state)
{
    struct broker_opts o = {0};
    struct fx *f = fx_new();

    *state = f;
    return broker_start(&f->b, &o);
}

static int setup_token(void **state)
{
    struct broker_opts o = {0};
    struct fx *f = fx_new();

    *state = f;
    o.token = "s3cret-token";
    return broker_start(&f->b, &o);
}

static int setup_none(void **state)
{
    *state = fx_new();
    return 0;
}

static void rm_dir(const char *dir)
{
    char path[512];
    DIR *d = opendir(dir);
    struct dirent *e;

    if (!d) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
    rmdir(dir);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    int i, violations = g_violations;

    for (i = 0; i < NCLIENTS; i++) {
        kubemq_client_destroy(f->c[i]);
        f->c[i] = NULL;
    }
    /* Lingering connections need the loop to finish and free themselves. */
    RUN_UNTIL(f, kubemq_client_lingering() == 0, WAIT_MS);
    i = kubemq_client_lingering();
    if (f->stub_on) {
        h2stub_stop(&f->stub);
    }
    broker_stop(&f->b);
    loop_destroy(f->loop);
    if (f->dir[0]) {
        rm_dir(f->dir);
    }
    free(f);
    if (i != 0 || violations != 0) {
        fprintf(stderr, "teardown: %d connections still lingering, %d callbacks inside a call\n", i,
                violations);
        return -1;
    }
    return 0;
}

/* ---- call results ---- */

struct res {
    int done;
    int status;
    char err[768];
    int executed;
    char error[128];
    char meta[64];
    char client_id[64];
    char host[256];
    char version[64];
    unsigned char *body;
    size_t body_len;
};

static void res_free(struct res *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static void on_ping(void *ctx, const struct kubemq_ping_result *p, int status, const char *err)
{
    struct res *r = ctx;

    CHECK_OUTSIDE();
    r->done = 1;
    r->status = status;
    if (p) {
        snprintf(r->host, sizeof(r->host), "%s", p->host);
        snprintf(r->version, sizeof(r->version), "%s", p->version);
    } else {
        snprintf(r->err, sizeof(r->err), "%s", err ? err : "(null)");
    }
}

static void on_response(void *ctx, const struct kubemq_response *resp, int status, const char *err)
{
    struct res *r = ctx;

    CHECK_OUTSIDE();
    r->done = 1;
    r->status = status;
    if (!resp) {
        snprintf(r->err, sizeof(r->err), "%s", err ? err : "(null)");
        return;
    }
    r->executed = resp->executed;
    snprintf(r->error, sizeof(r->error), "%s", resp->error);
    snprintf(r->meta, sizeof(r->meta), "%s", resp->metadata);
    snprintf(r->client_id, sizeof(r->client_id), "%s", resp->client_id);
    r->body = malloc(resp->body_len + 1);
    assert_non_null(r->body);
    memcpy(r->body, resp->body, resp->body_len);
    r->body[resp->body_len] = '\0';
    r->body_len = resp->body_len;
}

static void on_sent(void *ctx, int status, const char *err)
{
    struct res *r = ctx;

    CHECK_OUTSIDE();
    r->done = 1;
    r->status = status;
    snprintf(r->err, sizeof(r->err), "%s", err ? err : "");
}

static int ping(struct fx *f, struct kubemq_client *c, struct res *r)
{
    memset(r, 0, sizeof(*r));
    STARTING(kubemq_ping(c, 5000, on_ping, r));
    if (r->done) {
        fail_msg("the ping callback ran inside kubemq_ping");
    }
    return RUN_UNTIL(f, r->done, WAIT_MS) ? 0 : -1;
}

static int request(struct fx *f, struct kubemq_client *c, enum kubemq_kind k, const char *ch,
                   const void *body, size_t len, const char *meta, int timeout_ms, struct res *r)
{
    res_free(r);
    STARTING(kubemq_send_request(c, k, ch, body, len, meta, timeout_ms, on_response, r));
    if (r->done) {
        fail_msg("the response callback ran inside kubemq_send_request");
    }
    return RUN_UNTIL(f, r->done, WAIT_MS + timeout_ms) ? 0 : -1;
}

/* Until a query goes through (the requester may be reconnecting). */
static int request_retry(struct fx *f, struct kubemq_client *c, const char *ch, const char *body,
                         struct res *r)
{
    uint64_t deadline = now_ms() + WAIT_MS;

    for (;;) {
        if (request(f, c, KUBEMQ_QUERY, ch, body, strlen(body), NULL, 5000, r) == 0 &&
            r->status == KUBEMQ_STATUS_OK) {
            return 0;
        }
        if (now_ms() > deadline) {
            return -1;
        }
        run_for(f, 100);
    }
}

static int send_event(struct fx *f, struct kubemq_client *c, int store, const char *ch,
                      const char *body, struct res *r)
{
    memset(r, 0, sizeof(*r));
    STARTING(kubemq_send_event(c, store, ch, body, strlen(body), NULL, on_sent, r));
    if (r->done) {
        fail_msg("the event callback ran inside kubemq_send_event");
    }
    return RUN_UNTIL(f, r->done, WAIT_MS) && r->status == 0 && !r->err[0] ? 0 : -1;
}

/* ---- a recording subscriber ---- */

enum rec_mode {
    REC_ANSWER = 0,  /* answer at once through rec.responder */
    REC_HOLD = 1,    /* keep the requests */
    REC_COUNT = 2,   /* take and drop, no answer */
    REC_REFUSE = 3,  /* events_store: refuse refuse_at (once), take the rest */
    REC_DESTROY = 4, /* answer, then destroy the responder from inside the callback */
    REC_CLOSE = 5,   /* close the subscription from inside its callback */
};

#define MAX_HELD 16
#define MAX_SEQ  256

struct rec {
    struct fx *f;
    int responder_i; /* f->c[responder_i] answers */
    enum rec_mode mode;
    uint64_t refuse_at;
    int refused;
    struct kubemq_subscription *sub; /* for REC_CLOSE */
    struct kubemq_request *held[MAX_HELD];
    int nheld;
    int delivered;
    uint64_t seqs[MAX_SEQ];
    char bodies[MAX_SEQ][16];
    int nseq;
    char last_channel[64], last_client[64], last_meta[64];
    int last_timeout;
    enum kubemq_kind last_type;
    int subscribed, lost, gave_up;
    char last_state[768];
};

static void rec_init(struct rec *r, struct fx *f, int responder_i, enum rec_mode mode)
{
    memset(r, 0, sizeof(*r));
    r->f = f;
    r->responder_i = responder_i;
    r->mode = mode;
}

static void rec_free(struct rec *r)
{
    int i;

    for (i = 0; i < r->nheld; i++) {
        kubemq_request_free(r->held[i]);
    }
    r->nheld = 0;
}

static void answer(struct rec *r, const struct kubemq_request *req)
{
    struct kubemq_client *c = r->f->c[r->responder_i];
    char reply[256];
    int n;

    n = snprintf(reply, sizeof(reply), "pong:%.*s", (int)req->body_len, (const char *)req->body);
    if (strcmp(req->metadata, "fail") == 0) {
        kubemq_send_response(c, req, 0, "boom", NULL, 0, NULL);
    } else if (strcmp(req->metadata, "echo") == 0) {
        kubemq_send_response(c, req, 1, NULL, req->body, req->body_len, NULL);
    } else {
        kubemq_send_response(c, req, 1, NULL, reply, (size_t)n, "meta-back");
    }
}

static int on_request(void *ctx, struct kubemq_request *req)
{
    struct rec *r = ctx;

    CHECK_OUTSIDE();
    if (r->mode == REC_REFUSE && !r->refused && req->sequence == r->refuse_at) {
        r->refused = 1;
        return KUBEMQ_REFUSED;
    }
    r->delivered++;
    snprintf(r->last_channel, sizeof(r->last_channel), "%s", req->channel);
    snprintf(r->last_client, sizeof(r->last_client), "%s", req->client_id);
    snprintf(r->last_meta, sizeof(r->last_meta), "%s", req->metadata);
    r->last_timeout = req->timeout_ms;
    r->last_type = req->type;
    if (r->nseq < MAX_SEQ) {
        r->seqs[r->nseq] = req->sequence;
        snprintf(r->bodies[r->nseq], sizeof(r->bodies[0]), "%.*s", (int)req->body_len,
                 (const char *)req->body);
        r->nseq++;
    }
    switch (r->mode) {
    case REC_HOLD:
        if (r->nheld < MAX_HELD) {
            r->held[r->nheld++] = req;
            return KUBEMQ_TAKEN;
        }
        break;
    case REC_ANSWER:
        answer(r, req);
        break;
    case REC_DESTROY:
        answer(r, req);
        kubemq_client_destroy(r->f->c[r->responder_i]);
        r->f->c[r->responder_i] = NULL;
        break;
    case REC_CLOSE:
        kubemq_subscription_close(r->sub);
        r->sub = NULL;
        break;
    default:
        break;
    }
    kubemq_request_free(req);
    return KUBEMQ_TAKEN;
}

static void on_state(void *ctx, enum kubemq_sub_state st, const char *text)
{
    struct rec *r = ctx;

    CHECK_OUTSIDE();
    if (!text || !text[0]) {
        g_violations++;
    }
    snprintf(r->last_state, sizeof(r->last_state), "%s", text ? text : "");
    r->subscribed += st == KUBEMQ_SUB_SUBSCRIBED;
    r->lost += st == KUBEMQ_SUB_LOST;
    r->gave_up += st == KUBEMQ_SUB_GAVE_UP;
}

static struct kubemq_subscription *subscribe(struct fx *f, int ci, enum kubemq_kind type,
                                             const char *ch, const char *group, struct rec *r)
{
    struct kubemq_sub_opts o;
    struct kubemq_subscription *s;
    char err[256] = "";

    memset(&o, 0, sizeof(o));
    o.type = type;
    o.channel = ch;
    o.group = group;
    STARTING(s = kubemq_subscribe(f->c[ci], &o, on_request, on_state, r, err, sizeof(err)));
    if (!s) {
        fail_msg("kubemq_subscribe: %s", err);
    }
    return s;
}

static struct kubemq_subscription *subscribe_store(struct fx *f, int ci, const char *ch,
                                                   enum kubemq_store_start start, int64_t value,
                                                   struct rec *r)
{
    struct kubemq_sub_opts o;
    struct kubemq_subscription *s;
    char err[256] = "";

    memset(&o, 0, sizeof(o));
    o.type = KUBEMQ_EVENTS_STORE;
    o.channel = ch;
    o.start = start;
    o.start_value = value;
    STARTING(s = kubemq_subscribe(f->c[ci], &o, on_request, on_state, r, err, sizeof(err)));
    if (!s) {
        fail_msg("kubemq_subscribe: %s", err);
    }
    return s;
}

/* ---- tests: basics ---- */

static void test_bad_options(void **state)
{
    struct fx *f = *state;
    struct kubemq_client_opts o;
    char err[512], path[96];
    int fd;

    kubemq_client_opts_init(&o);
    assert_int_equal(o.auto_reconnect, 1);
    o.client_id = "x";
    assert_null(kubemq_client_create(f->loop, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "address"));
    o.address = "::1:50000";
    assert_null(kubemq_client_create(f->loop, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "brackets"));
    o.address = "127.0.0.1:1";
    o.client_id = "";
    assert_null(kubemq_client_create(f->loop, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "client_id"));
    o.client_id = "x";
    o.tls = 1;
    o.ca_file = "/nonexistent/ca.pem";
    assert_null(kubemq_client_create(f->loop, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
    snprintf(path, sizeof(path), "/tmp/kk-empty-ca-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    o.ca_file = path;
    assert_null(kubemq_client_create(f->loop, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "is empty"));
    unlink(path);
    o.ca_file = NULL;
    o.cert_file = "/nonexistent/cert.pem";
    assert_null(kubemq_client_create(f->loop, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "go together"));
    kubemq_client_destroy(NULL);
}

static void test_broker_down(void **state)
{
    struct fx *f = *state;
    struct kubemq_client_opts o;
    struct kubemq_subscription *s;
    struct rec rec;
    struct res r;

    rec_init(&rec, f, 0, REC_COUNT);
    kubemq_client_opts_init(&o);
    o.address = "127.0.0.1:1";
    o.client_id = "nowhere";
    o.log_name = "test";
    client_opts(f, 0, &o);
    /* Started during the first attempt: it waits for it, then fails. */
    assert_int_equal(ping(f, f->c[0], &r), 0);
    assert_int_equal(r.status, KUBEMQ_STATUS_UNAVAILABLE);
    assert_non_null(
        strstr(r.err, "kubemq at 127.0.0.1:1 unavailable: cannot connect to 127.0.0.1:1"));
    assert_non_null(strstr(r.err, "refused"));
    assert_true(log_has("kubemq: cannot connect to 127.0.0.1:1; retrying"));
    /* Between attempts: fails at once, still from a later callback. */
    assert_int_equal(ping(f, f->c[0], &r), 0);
    assert_int_equal(r.status, KUBEMQ_STATUS_UNAVAILABLE);
    assert_int_equal(kubemq_client_ready(f->c[0]), 0);
    s = subscribe(f, 0, KUBEMQ_QUERY, "q", NULL, &rec);
    run_for(f, 300);
    assert_int_equal(kubemq_subscription_subscribed(s), 0);
    assert_int_equal(rec.subscribed + rec.lost, 0); /* it waits for a connection */
}

static void test_ping(void **state)
{
    struct fx *f = *state;
    struct res r;

    client(f, 0, "pinger", NULL);
    assert_int_equal(ping(f, f->c[0], &r), 0);
    assert_int_equal(r.status, KUBEMQ_STATUS_OK);
    assert_true(r.host[0] != '\0');
    assert_string_equal(r.version, "stand-in");
    assert_true(RUN_UNTIL(f, kubemq_client_ready(f->c[0]), WAIT_MS));
    assert_string_equal(kubemq_client_address(f->c[0]), f->b.address);
    assert_true(log_has("kubemq: connected to "));
}

static void test_query_round_trip_groups(void **state)
{
    struct fx *f = *state;
    struct rec ra, rb, rall;
    struct res r, many[10];
    char body[64], want[64];
    int i;

    client(f, 0, "resp-a", NULL);
    client(f, 1, "resp-b", NULL);
    client(f, 2, "resp-all", NULL);
    client(f, 3, "requester", NULL);
    rec_init(&ra, f, 0, REC_ANSWER);
    rec_init(&rb, f, 1, REC_ANSWER);
    rec_init(&rall, f, 2, REC_COUNT);
    subscribe(f, 0, KUBEMQ_QUERY, "q.round", "g1", &ra);
    subscribe(f, 1, KUBEMQ_QUERY, "q.round", "g1", &rb);
    subscribe(f, 2, KUBEMQ_QUERY, "q.round", NULL, &rall);
    assert_true(RUN_UNTIL(f, ra.subscribed && rb.subscribed && rall.subscribed, WAIT_MS));
    assert_true(wait_subscribers(f, "q.round", 3));
    assert_true(log_has("kubemq: subscribed to queries on channel 'q.round' group 'g1' at "));

    memset(&r, 0, sizeof(r));
    for (i = 0; i < 20; i++) {
        snprintf(body, sizeof(body), "ping-%d", i);
        snprintf(want, sizeof(want), "pong:ping-%d", i);
        assert_int_equal(
            request(f, f->c[3], KUBEMQ_QUERY, "q.round", body, strlen(body), "m1", 5000, &r), 0);
        if (r.status != 0) {
            fail_msg("query %d: %s", i, r.err);
        }
        assert_int_equal(r.executed, 1);
        assert_string_equal(r.error, "");
        assert_string_equal((char *)r.body, want);
        assert_string_equal(r.meta, "meta-back");
        assert_true(strcmp(r.client_id, "resp-a") == 0 || strcmp(r.client_id, "resp-b") == 0);
    }
    /* The group shares the queries; the ungrouped subscriber sees every one. */
    assert_int_equal(ra.delivered + rb.delivered, 20);
    assert_true(ra.delivered > 0 && rb.delivered > 0);
    assert_int_equal(rall.delivered, 20);
    assert_string_equal(ra.last_channel, "q.round");
    assert_string_equal(ra.last_client, "requester");
    assert_string_equal(ra.last_meta, "m1");
    assert_int_equal(ra.last_timeout, 5000);
    assert_int_equal(ra.last_type, KUBEMQ_QUERY);

    /* Ten at once on one connection (ten streams, answers in any order). */
    memset(many, 0, sizeof(many));
    for (i = 0; i < 10; i++) {
        snprintf(body, sizeof(body), "many-%d", i);
        STARTING(kubemq_send_request(f->c[3], KUBEMQ_QUERY, "q.round", body, strlen(body), NULL,
                                     5000, on_response, &many[i]));
    }
    assert_true(RUN_UNTIL(f, ({
                              int all = 1;
                              for (i = 0; i < 10; i++) {
                                  all &= many[i].done;
                              }
                              all;
                          }),
                          WAIT_MS));
    for (i = 0; i < 10; i++) {
        snprintf(want, sizeof(want), "pong:many-%d", i);
        assert_int_equal(many[i].status, 0);
        assert_string_equal((char *)many[i].body, want);
        res_free(&many[i]);
    }

    /* In-band failure: executed false with the error text, the call itself OK. */
    assert_int_equal(request(f, f->c[3], KUBEMQ_QUERY, "q.round", "x", 1, "fail", 5000, &r), 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.executed, 0);
    assert_string_equal(r.error, "boom");
    res_free(&r);
}

static void test_command_and_timeout(void **state)
{
    struct fx *f = *state;
    struct rec rc;
    struct res r;
    uint64_t t0;

    memset(&r, 0, sizeof(r));
    client(f, 0, "both", NULL);
    rec_init(&rc, f, 0, REC_ANSWER);
    /* One client subscribes, answers and sends. */
    subscribe(f, 0, KUBEMQ_COMMAND, "c.same", NULL, &rc);
    assert_true(wait_subscribers(f, "c.same", 1));
    assert_int_equal(request(f, f->c[0], KUBEMQ_COMMAND, "c.same", "do", 2, NULL, 5000, &r), 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.executed, 1);
    assert_int_equal(r.body_len, 0); /* commands carry no body back */
    assert_int_equal(rc.last_type, KUBEMQ_COMMAND);
    assert_string_equal(r.client_id, "both");

    /* Nobody subscribes: the broker's own timeout, as it wrote it. */
    t0 = now_ms();
    assert_int_equal(request(f, f->c[0], KUBEMQ_QUERY, "q.nobody", "x", 1, NULL, 300, &r), 0);
    assert_int_equal(r.status, KUBEMQ_STATUS_INTERNAL);
    assert_string_equal(r.err, "Error 301: timeout for request message");
    assert_true(now_ms() - t0 >= 250);

    /* Invalid arguments fail from a later callback too. */
    assert_int_equal(request(f, f->c[0], KUBEMQ_QUERY, "q.x", "x", 1, NULL, 0, &r), 0);
    assert_int_equal(r.status, 3);
    assert_non_null(strstr(r.err, "timeout"));
    res_free(&r);
}

/* ---- events ---- */

static void test_events(void **state)
{
    struct fx *f = *state;
    struct rec re;
    struct res r;
    char body[32];
    int i;

    client(f, 0, "ev-sub", NULL);
    client(f, 1, "ev-pub", NULL);
    rec_init(&re, f, 0, REC_COUNT);
    subscribe(f, 0, KUBEMQ_EVENTS, "e.ch", NULL, &re);
    assert_true(wait_subscribers(f, "e.ch", 1));
    for (i = 0; i < 10; i++) {
        snprintf(body, sizeof(body), "ev-%d", i);
        assert_int_equal(send_event(f, f->c[1], 0, "e.ch", body, &r), 0);
    }
    assert_true(RUN_UNTIL(f, re.delivered == 10, WAIT_MS));
    for (i = 0; i < 10; i++) {
        snprintf(body, sizeof(body), "ev-%d", i);
        assert_string_equal(re.bodies[i], body);
        assert_int_equal(re.seqs[i], 0);
    }
    assert_int_equal(re.last_type, KUBEMQ_EVENTS);
    /* A broker validation error comes back through the callback. */
    memset(&r, 0, sizeof(r));
    STARTING(kubemq_send_event(f->c[1], 0, "bad channel", "x", 1, NULL, on_sent, &r));
    assert_true(RUN_UNTIL(f, r.done, WAIT_MS));
    assert_string_equal(r.err, "Error 108: invalid channel value, no white spaces are allowed");
}

static int seqs_are(const struct rec *r, uint64_t first, uint64_t last)
{
    int i;

    if (r->nseq != (int)(last - first + 1)) {
        return 0;
    }
    for (i = 0; i < r->nseq; i++) {
        if (r->seqs[i] != first + (uint64_t)i) {
            return 0;
        }
    }
    return 1;
}

static void test_events_store_starts(void **state)
{
    struct fx *f = *state;
    struct rec first, at3, last, fresh;
    struct kubemq_subscription *sf;
    struct res r;
    char body[32];
    int i;

    client(f, 0, "store-sub", NULL);
    client(f, 1, "store-pub", NULL);
    for (i = 1; i <= 5; i++) {
        snprintf(body, sizeof(body), "s%d", i);
        assert_int_equal(send_event(f, f->c[1], 1, "es.ch", body, &r), 0);
    }
    rec_init(&first, f, 0, REC_COUNT);
    rec_init(&at3, f, 0, REC_COUNT);
    rec_init(&last, f, 0, REC_COUNT);
    rec_init(&fresh, f, 0, REC_COUNT);
    sf = subscribe_store(f, 0, "es.ch", KUBEMQ_START_FIRST, 0, &first);
    subscribe_store(f, 0, "es.ch", KUBEMQ_START_SEQUENCE, 3, &at3);
    subscribe_store(f, 0, "es.ch", KUBEMQ_START_LAST, 0, &last);
    subscribe_store(f, 0, "es.ch", KUBEMQ_START_NEW_ONLY, 0, &fresh);
    assert_true(wait_subscribers(f, "es.ch", 4));
    assert_true(RUN_UNTIL(f, first.nseq == 5 && at3.nseq == 3 && last.nseq == 1, WAIT_MS));
    assert_true(seqs_are(&first, 1, 5));
    assert_string_equal(first.bodies[0], "s1");
    assert_true(seqs_are(&at3, 3, 5));
    assert_true(seqs_are(&last, 5, 5));
    assert_int_equal(fresh.nseq, 0);
    assert_int_equal(send_event(f, f->c[1], 1, "es.ch", "s6", &r), 0);
    assert_true(RUN_UNTIL(f, first.nseq == 6 && at3.nseq == 4 && last.nseq == 2 && fresh.nseq == 1,
                          WAIT_MS));
    assert_true(seqs_are(&fresh, 6, 6));
    assert_int_equal(kubemq_subscription_last_sequence(sf), 6);
    assert_int_equal(first.last_type, KUBEMQ_EVENTS_STORE);
    /* A bad start is refused at once. */
    {
        struct kubemq_sub_opts o;
        char err[128];

        memset(&o, 0, sizeof(o));
        o.type = KUBEMQ_EVENTS_STORE;
        o.channel = "es.ch";
        o.start = KUBEMQ_START_SEQUENCE;
        assert_null(kubemq_subscribe(f->c[0], &o, on_request, NULL, &first, err, sizeof(err)));
        assert_non_null(strstr(err, "> 0"));
    }
}

static void test_events_store_refuse_resume(void **state)
{
    struct fx *f = *state;
    struct kubemq_subscription *s;
    struct rec rr;
    struct res r;
    char body[32];
    int i;

    client(f, 0, "refuser", NULL);
    client(f, 1, "refuse-pub", NULL);
    for (i = 1; i <= 5; i++) {
        snprintf(body, sizeof(body), "r%d", i);
        assert_int_equal(send_event(f, f->c[1], 1, "es.refuse", body, &r), 0);
    }
    rec_init(&rr, f, 0, REC_REFUSE);
    rr.refuse_at = 3;
    s = subscribe_store(f, 0, "es.refuse", KUBEMQ_START_FIRST, 0, &rr);
    assert_true(RUN_UNTIL(f, rr.refused, WAIT_MS));
    /* Paused: the stream is gone and nothing more is delivered. */
    assert_true(RUN_UNTIL(f, broker_subscribers(&f->b, "es.refuse") == 0, WAIT_MS));
    assert_int_equal(kubemq_subscription_subscribed(s), 0);
    assert_int_equal(send_event(f, f->c[1], 1, "es.refuse", "r6", &r), 0);
    run_for(f, 300);
    assert_true(seqs_are(&rr, 1, 2));
    assert_int_equal(kubemq_subscription_last_sequence(s), 2);
    /* Resumed at the refused sequence: no gap, no repeat. */
    kubemq_subscription_resume(s);
    assert_true(RUN_UNTIL(f, rr.nseq == 6, WAIT_MS));
    assert_true(seqs_are(&rr, 1, 6));
    assert_string_equal(rr.bodies[2], "r3");
    assert_int_equal(rr.lost, 0);
    run_for(f, 200);
    assert_int_equal(rr.nseq, 6);
}

static void test_events_store_broker_restart(void **state)
{
    struct fx *f = *state;
    struct kubemq_subscription *s;
    struct rec rr;
    struct res r;
    char out[512], body[32];
    int i, subscribed;

    client(f, 0, "durable", NULL);
    client(f, 1, "durable-pub", NULL);
    rec_init(&rr, f, 0, REC_COUNT);
    s = subscribe_store(f, 0, "es.restart", KUBEMQ_START_FIRST, 0, &rr);
    assert_true(wait_subscribers(f, "es.restart", 1));
    for (i = 1; i <= 3; i++) {
        snprintf(body, sizeof(body), "d%d", i);
        assert_int_equal(send_event(f, f->c[1], 1, "es.restart", body, &r), 0);
    }
    assert_true(RUN_UNTIL(f, rr.nseq == 3, WAIT_MS));
    subscribed = rr.subscribed;
    /* The broker restarts with its store kept. */
    assert_int_equal(broker_http(&f->b, "POST", "/listener/stop", out, sizeof(out)), 0);
    assert_true(RUN_UNTIL(f, rr.lost >= 1, WAIT_MS));
    assert_int_equal(kubemq_subscription_subscribed(s), 0);
    assert_int_equal(broker_http(&f->b, "POST", "/listener/start", out, sizeof(out)), 0);
    for (i = 4; i <= 6; i++) {
        uint64_t deadline = now_ms() + WAIT_MS;

        snprintf(body, sizeof(body), "d%d", i);
        while (send_event(f, f->c[1], 1, "es.restart", body, &r) < 0 && now_ms() < deadline) {
            run_for(f, 100);
        }
    }
    assert_true(RUN_UNTIL(f, rr.nseq >= 6 && rr.subscribed > subscribed, WAIT_MS));
    run_for(f, 300);
    assert_true(seqs_are(&rr, 1, 6));
    assert_string_equal(rr.bodies[5], "d6");
}

/* ---- queues ---- */

struct qres {
    int done;
    int rc;
    char body[64];
    int receive_count;
    char err[512];
    struct kubemq_queue_txn *t;
    int settled;
    int settle_rc;
    char settle_err[512];
};

static void on_queue(void *ctx, struct kubemq_queue_txn *t, int rc,
                     const struct kubemq_queue_message *m, const char *err)
{
    struct qres *q = ctx;

    CHECK_OUTSIDE();
    q->done = 1;
    q->rc = rc;
    q->t = t;
    if (m) {
        snprintf(q->body, sizeof(q->body), "%.*s", (int)m->body_len, (const char *)m->body);
        q->receive_count = m->receive_count;
    }
    snprintf(q->err, sizeof(q->err), "%s", err ? err : "");
}

static void on_settle(void *ctx, struct kubemq_queue_txn *t, int rc, const char *err)
{
    struct qres *q = ctx;

    CHECK_OUTSIDE();
    assert_ptr_equal(t, q->t);
    q->settled = 1;
    q->settle_rc = rc;
    snprintf(q->settle_err, sizeof(q->settle_err), "%s", err ? err : "");
}

static struct kubemq_queue_txn *receive(struct fx *f, const char *ch, int wait, struct qres *q)
{
    struct kubemq_queue_txn *t;

    memset(q, 0, sizeof(*q));
    STARTING(t = kubemq_queue_receive(f->c[0], ch, 30, wait, on_queue, q));
    assert_non_null(t);
    assert_false(q->done);
    assert_true(RUN_UNTIL(f, q->done, WAIT_MS + wait * 1000));
    assert_ptr_equal(q->t, t);
    return t;
}

enum settle_kind { ACK, REJECT, RESEND };

static void settle(struct fx *f, struct kubemq_queue_txn *t, enum settle_kind k, const char *ch,
                   struct qres *q)
{
    q->settled = 0;
    switch (k) {
    case ACK:
        STARTING(kubemq_queue_ack(t, on_settle, q));
        break;
    case REJECT:
        STARTING(kubemq_queue_reject(t, on_settle, q));
        break;
    case RESEND:
        STARTING(kubemq_queue_resend(t, ch, on_settle, q));
        break;
    }
    assert_false(q->settled);
    assert_true(RUN_UNTIL(f, q->settled, WAIT_MS));
}

static void test_queue(void **state)
{
    struct fx *f = *state;
    struct kubemq_queue_txn *t;
    struct qres q;
    struct res r;
    const char *bodies[] = {"m1", "m2", "m3"};
    int i;

    client(f, 0, "queue-client", NULL);
    for (i = 0; i < 3; i++) {
        memset(&r, 0, sizeof(r));
        STARTING(kubemq_send_queue_message(f->c[0], "q1", bodies[i], 2, "meta", on_sent, &r));
        assert_true(RUN_UNTIL(f, r.done, WAIT_MS));
        assert_int_equal(r.status, 0);
        assert_string_equal(r.err, "");
    }
    /* ack */
    t = receive(f, "q1", 2, &q);
    assert_int_equal(q.rc, 1);
    assert_string_equal(q.body, "m1");
    assert_int_equal(q.receive_count, 1);
    settle(f, t, ACK, NULL, &q);
    assert_int_equal(q.settle_rc, 0);
    /* A second settlement fails, later. */
    settle(f, t, ACK, NULL, &q);
    assert_int_equal(q.settle_rc, -1);
    assert_non_null(strstr(q.settle_err, "no message held"));
    kubemq_queue_txn_free(t);
    /* reject: back to the queue (behind m3), its receive count kept */
    t = receive(f, "q1", 2, &q);
    assert_string_equal(q.body, "m2");
    settle(f, t, REJECT, NULL, &q);
    assert_int_equal(q.settle_rc, 0);
    kubemq_queue_txn_free(t);
    t = receive(f, "q1", 2, &q);
    assert_string_equal(q.body, "m3");
    /* freed unsettled: the broker returns it */
    kubemq_queue_txn_free(t);
    t = receive(f, "q1", 2, &q);
    assert_string_equal(q.body, "m2");
    assert_int_equal(q.receive_count, 2);
    /* resend to another queue */
    settle(f, t, RESEND, "q2", &q);
    assert_int_equal(q.settle_rc, 0);
    kubemq_queue_txn_free(t);
    t = receive(f, "q2", 2, &q);
    assert_int_equal(q.rc, 1);
    assert_string_equal(q.body, "m2");
    settle(f, t, ACK, NULL, &q);
    kubemq_queue_txn_free(t);
    t = receive(f, "q1", 2, &q);
    assert_string_equal(q.body, "m3");
    settle(f, t, ACK, NULL, &q);
    kubemq_queue_txn_free(t);
    /* empty: Error 138 is "nothing", rc 0 */
    t = receive(f, "q1", 1, &q);
    assert_int_equal(q.rc, 0);
    kubemq_queue_txn_free(t);
    /* an in-band error */
    t = receive(f, "bad queue", 1, &q);
    assert_int_equal(q.rc, -1);
    assert_non_null(strstr(q.err, "Error 120"));
    kubemq_queue_txn_free(t);
    /* a queue message the broker refuses */
    memset(&r, 0, sizeof(r));
    STARTING(kubemq_send_queue_message(f->c[0], "bad queue", "x", 1, NULL, on_sent, &r));
    assert_true(RUN_UNTIL(f, r.done, WAIT_MS));
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.err, "Error 120"));
}

/* ---- auth, TLS, addresses ---- */

static void test_auth_token(void **state)
{
    struct fx *f = *state;
    struct rec rr;
    struct res r;

    memset(&r, 0, sizeof(r));
    client(f, 0, "no-token", NULL);
    assert_int_equal(ping(f, f->c[0], &r), 0);
    assert_int_equal(r.status, 16);
    assert_non_null(strstr(r.err, "Error 421"));
    assert_int_equal(request(f, f->c[0], KUBEMQ_QUERY, "q.auth", "x", 1, NULL, 2000, &r), 0);
    assert_int_equal(r.status, 16);
    assert_null(strstr(r.err, "s3cret-token"));

    client(f, 1, "with-token", "s3cret-token");
    client(f, 2, "requester-token", "s3cret-token");
    assert_int_equal(ping(f, f->c[1], &r), 0);
    assert_int_equal(r.status, 0);
    rec_init(&rr, f, 1, REC_ANSWER);
    subscribe(f, 1, KUBEMQ_QUERY, "q.auth", NULL, &rr);
    assert_true(wait_subscribers(f, "q.auth", 1));
    assert_int_equal(request(f, f->c[2], KUBEMQ_QUERY, "q.auth", "tok", 3, NULL, 5000, &r), 0);
    assert_int_equal(r.status, 0);
    assert_string_equal((char *)r.body, "pong:tok");
    res_free(&r);
    assert_false(log_has("s3cret-token"));
}

static void test_gives_up(void **state)
{
    struct fx *f = *state;
    struct kubemq_client_opts o;
    struct kubemq_subscription *s;
    struct rec rr;

    /* A wrong token ends every stream: the policy stops after 2 retries. */
    kubemq_client_opts_init(&o);
    o.address = f->b.address;
    o.client_id = "wrong-token";
    o.auth_token = "not-the-token";
    o.reconnect_interval_seconds = 1;
    o.max_reconnects = 2;
    o.log_name = "test";
    client_opts(f, 0, &o);
    rec_init(&rr, f, 0, REC_COUNT);
    s = subscribe(f, 0, KUBEMQ_QUERY, "q.denied", NULL, &rr);
    assert_true(RUN_UNTIL(f, rr.gave_up == 1, WAIT_MS));
    assert_int_equal(rr.lost, 2);
    assert_int_equal(kubemq_subscription_subscribed(s), 0);
    assert_int_equal(rr.delivered, 0);
    assert_non_null(strstr(rr.last_state, "gave up after 2 reconnects"));
    assert_true(log_has("kubemq: subscription to queries on channel 'q.denied' at "));
}

/* TLS material from the rig (certs.js): cert.pem (its own CA, for 127.0.0.1 and localhost) and
 * key.pem. */
static void make_certs(struct fx *f)
{
    char script[512];
    char *argv[4];
    struct broker child;
    int st;

    snprintf(f->dir, sizeof(f->dir), "/tmp/kk-kubemq-tls-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(script, sizeof(script),
             "require('%s/certs.js').makeTestCert({dir:'%s'});"
             "console.log(JSON.stringify({ready:true,port:1}))",
             KK_RIG_DIR, f->dir);
    argv[0] = (char *)"node";
    argv[1] = (char *)"-e";
    argv[2] = script;
    argv[3] = NULL;
    assert_int_equal(spawn_ready(&child, argv), 0);
    waitpid(child.pid, &st, 0);
    close(child.out_fd);
}

static void tls_opts(struct fx *f, struct kubemq_client_opts *o, const char *address,
                     const char *id, char *ca, size_t n)
{
    kubemq_client_opts_init(o);
    o->address = address;
    o->client_id = id;
    o->tls = 1;
    o->reconnect_interval_seconds = 1;
    o->log_name = "test";
    snprintf(ca, n, "%s/cert.pem", f->dir);
    o->ca_file = ca;
}

static void test_tls(void **state)
{
    struct fx *f = *state;
    struct broker_opts bo = {0};
    struct kubemq_client_opts o;
    struct rec rr;
    struct res r;
    char ca[128], cert[128], key[128], local[96], err[512];

    make_certs(f);
    snprintf(cert, sizeof(cert), "%s/cert.pem", f->dir);
    snprintf(key, sizeof(key), "%s/key.pem", f->dir);
    bo.cert = cert;
    bo.key = key;
    assert_int_equal(broker_start(&f->b, &bo), 0);

    /* Verified against ca_file; ALPN h2. */
    tls_opts(f, &o, f->b.address, "tls-resp", ca, sizeof(ca));
    client_opts(f, 0, &o);
    tls_opts(f, &o, f->b.address, "tls-req", ca, sizeof(ca));
    /* With a client certificate (mutual TLS offered). */
    o.cert_file = cert;
    o.key_file = key;
    client_opts(f, 1, &o);
    assert_int_equal(ping(f, f->c[0], &r), 0);
    assert_int_equal(r.status, 0);
    rec_init(&rr, f, 0, REC_ANSWER);
    subscribe(f, 0, KUBEMQ_QUERY, "q.tls", NULL, &rr);
    assert_true(wait_subscribers(f, "q.tls", 1));
    memset(&r, 0, sizeof(r));
    assert_int_equal(request(f, f->c[1], KUBEMQ_QUERY, "q.tls", "sec", 3, NULL, 5000, &r), 0);
    assert_int_equal(r.status, 0);
    assert_string_equal((char *)r.body, "pong:sec");
    res_free(&r);

    /* By name: SNI and the certificate's DNS name. */
    snprintf(local, sizeof(local), "localhost:%d", f->b.port);
    tls_opts(f, &o, local, "tls-name", ca, sizeof(ca));
    client_opts(f, 2, &o);
    assert_int_equal(ping(f, f->c[2], &r), 0);
    assert_int_equal(r.status, 0);

    /* The system roots do not know a self-signed certificate. */
    tls_opts(f, &o, f->b.address, "tls-untrusted", ca, sizeof(ca));
    o.ca_file = NULL;
    client_opts(f, 3, &o);
    assert_int_equal(ping(f, f->c[3], &r), 0);
    assert_int_equal(r.status, KUBEMQ_STATUS_UNAVAILABLE);
    assert_non_null(strstr(r.err, "not trusted"));

    /* Plain HTTP/2 to a TLS port fails clearly, no hang. */
    kubemq_client_opts_init(&o);
    o.address = f->b.address;
    o.client_id = "plain-to-tls";
    client_opts(f, 4, &o);
    assert_int_equal(ping(f, f->c[4], &r), 0);
    assert_int_equal(r.status, KUBEMQ_STATUS_UNAVAILABLE);
    if (!strstr(r.err, "TLS")) {
        fail_msg("plain to TLS: %s", r.err);
    }

    /* A key that is not the certificate's. */
    tls_opts(f, &o, f->b.address, "x", ca, sizeof(ca));
    o.cert_file = cert;
    o.key_file = cert;
    assert_null(kubemq_client_create(f->loop, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "key_file"));
}

static void test_tls_without_h2(void **state)
{
    struct fx *f = *state;
    struct kubemq_client_opts o;
    struct res r;
    char script[1024], ca[128], address[64];
    char *argv[4];

    make_certs(f);
    /* A TLS server that offers no ALPN at all: not a gRPC server. */
    snprintf(script, sizeof(script),
             "const tls=require('tls'),fs=require('fs');"
             "const s=tls.createServer({key:fs.readFileSync('%s/key.pem'),"
             "cert:fs.readFileSync('%s/cert.pem')},(c)=>c.on('error',()=>{}));"
             "s.listen(0,'127.0.0.1',()=>console.log(JSON.stringify({ready:true,port:"
             "s.address().port})));process.stdin.on('end',()=>process.exit(0));",
             f->dir, f->dir);
    argv[0] = (char *)"node";
    argv[1] = (char *)"-e";
    argv[2] = script;
    argv[3] = NULL;
    assert_int_equal(spawn_ready(&f->b, argv), 0);
    snprintf(address, sizeof(address), "127.0.0.1:%d", f->b.port);
    tls_opts(f, &o, address, "no-alpn", ca, sizeof(ca));
    client_opts(f, 0, &o);
    assert_int_equal(ping(f, f->c[0], &r), 0);
    assert_int_equal(r.status, KUBEMQ_STATUS_UNAVAILABLE);
    assert_non_null(strstr(r.err, "ALPN h2"));
}

static void test_names_and_ipv6(void **state)
{
    struct fx *f = *state;
    struct broker b6;
    struct broker_opts bo = {0};
    struct kubemq_client_opts o;
    struct res r;
    char address[64];

    /* A host name, resolved by c-ares (the hosts file). */
    snprintf(address, sizeof(address), "localhost:%d", f->b.port);
    kubemq_client_opts_init(&o);
    o.address = address;
    o.client_id = "by-name";
    client_opts(f, 0, &o);
    assert_int_equal(ping(f, f->c[0], &r), 0);
    if (r.status != 0) {
        fail_msg("localhost: %s", r.err);
    }
    /* An IPv6 literal. */
    bo.host = "::1";
    assert_int_equal(broker_start(&b6, &bo), 0);
    o.address = b6.address;
    o.client_id = "by-v6";
    client_opts(f, 1, &o);
    assert_int_equal(ping(f, f->c[1], &r), 0);
    broker_stop(&b6);
    if (r.status != 0) {
        fail_msg("%s: %s", o.address, r.err);
    }
    /* A name nobody knows fails the attempt (and the waiting call) with its reason. */
    o.address = "no-such-host.invalid:50000";
    o.client_id = "nowhere";
    client_opts(f, 2, &o);
    assert_int_equal(ping(f, f->c[2], &r), 0);
    assert_int_equal(r.status, KUBEMQ_STATUS_UNAVAILABLE);
    assert_non_null(strstr(r.err, "no-such-host.invalid"));
}

/* ---- failures ---- */

static void test_broker_killed_mid_call(void **state)
{
    struct fx *f = *state;
    struct broker_opts bo = {0};
    struct kubemq_subscription *s;
    struct rec rr;
    struct res r, pending;
    int port = f->b.port;

    client(f, 0, "survivor", NULL);
    client(f, 1, "kill-requester", NULL);
    rec_init(&rr, f, 0, REC_HOLD);
    s = subscribe(f, 0, KUBEMQ_QUERY, "q.kill", NULL, &rr);
    assert_true(wait_subscribers(f, "q.kill", 1));
    memset(&pending, 0, sizeof(pending));
    STARTING(kubemq_send_request(f->c[1], KUBEMQ_QUERY, "q.kill", "held", 4, NULL, 15000,
                                 on_response, &pending));
    assert_true(RUN_UNTIL(f, rr.nheld == 1, WAIT_MS));

    /* SIGKILL: the kernel closes the sockets (FIN), no GOAWAY, no trailers. */
    broker_signal(&f->b, SIGKILL);
    assert_true(RUN_UNTIL(f, pending.done && rr.lost >= 1, WAIT_MS));
    assert_int_equal(pending.status, KUBEMQ_STATUS_UNAVAILABLE);
    assert_non_null(strstr(pending.err, "lost"));
    assert_int_equal(kubemq_subscription_subscribed(s), 0);
    assert_true(log_has("kubemq: subscription to queries on channel 'q.kill' at "));
    assert_true(log_has("kubemq: connection to 127.0.0.1:"));
    /* A reply to the held request while down fails at once (logged), never waits. */
    kubemq_send_response(f->c[0], rr.held[0], 1, NULL, "late", 4, NULL);
    run_for(f, 100);
    assert_true(log_has("error sending response: kubemq at 127.0.0.1:"));

    /* Back on the same port: reconnect and resubscribe by themselves. */
    bo.port = port;
    assert_int_equal(broker_start(&f->b, &bo), 0);
    assert_true(RUN_UNTIL(f, kubemq_subscription_subscribed(s) && rr.subscribed >= 2, WAIT_MS));
    assert_true(wait_subscribers(f, "q.kill", 1));
    assert_true(log_has("kubemq: resubscribed to queries on channel 'q.kill' at "));
    rr.mode = REC_ANSWER;
    memset(&r, 0, sizeof(r));
    assert_int_equal(request_retry(f, f->c[1], "q.kill", "again", &r), 0);
    assert_string_equal((char *)r.body, "pong:again");
    res_free(&r);
    assert_int_equal(rr.gave_up, 0);
    assert_true(
        RUN_UNTIL(f, kubemq_client_ready(f->c[0]) && kubemq_client_ready(f->c[1]), WAIT_MS));
    rec_free(&rr);
}

/* A stream that ends inside its callback, a client destroyed from inside
 * one: what was written still goes out, nothing runs afterwards. */
static void test_destroy_with_writes_pending(void **state)
{
    struct fx *f = *state;
    struct rec rd, rclose, rev;
    struct res r;
    char big[4096];

    client(f, 0, "doomed-responder", NULL);
    client(f, 1, "requester", NULL);
    client(f, 2, "closer", NULL);
    client(f, 3, "event-sub", NULL);
    rec_init(&rd, f, 0, REC_DESTROY);
    subscribe(f, 0, KUBEMQ_QUERY, "q.doomed", NULL, &rd);
    rec_init(&rclose, f, 2, REC_CLOSE);
    rclose.sub = subscribe(f, 2, KUBEMQ_EVENTS, "e.close", NULL, &rclose);
    rec_init(&rev, f, 3, REC_COUNT);
    subscribe(f, 3, KUBEMQ_EVENTS, "e.last", NULL, &rev);
    assert_true(wait_subscribers(f, "q.doomed", 1) && wait_subscribers(f, "e.close", 1) &&
                wait_subscribers(f, "e.last", 1));

    /* The responder answers, then is destroyed inside the same callback. */
    memset(&r, 0, sizeof(r));
    assert_int_equal(request(f, f->c[1], KUBEMQ_QUERY, "q.doomed", "bye", 3, NULL, 5000, &r), 0);
    if (r.status != 0) {
        fail_msg("the answer of a destroyed client: %s", r.err);
    }
    assert_string_equal((char *)r.body, "pong:bye");
    assert_null(f->c[0]);
    res_free(&r);

    /* A subscription closed from inside its own callback hears nothing more. */
    assert_int_equal(send_event(f, f->c[1], 0, "e.close", "one", &r), 0);
    assert_true(RUN_UNTIL(f, rclose.delivered == 1, WAIT_MS));
    assert_true(RUN_UNTIL(f, broker_subscribers(&f->b, "e.close") == 0, WAIT_MS));
    assert_int_equal(send_event(f, f->c[1], 0, "e.close", "two", &r), 0);
    run_for(f, 200);
    assert_int_equal(rclose.delivered, 1);

    /* Events written just before destroy still arrive. */
    memset(big, 'e', sizeof(big));
    kubemq_send_event(f->c[1], 0, "e.last", "last-1", 6, NULL, NULL, NULL);
    kubemq_send_event(f->c[1], 0, "e.last", big, sizeof(big), NULL, NULL, NULL);
    kubemq_client_destroy(f->c[1]);
    f->c[1] = NULL;
    assert_true(RUN_UNTIL(f, rev.delivered == 2, WAIT_MS));
    assert_string_equal(rev.bodies[0], "last-1");
    assert_true(RUN_UNTIL(f, kubemq_client_lingering() == 0, WAIT_MS));
}

static void test_large_bodies(void **state)
{
    struct fx *f = *state;
    size_t n = (size_t)64 << 20, i;
    unsigned char *big = malloc(n);
    unsigned char *huge;
    struct rec rr;
    struct res r;

    /* 64 MiB both ways: the query to the responder and the echo back. */
    assert_non_null(big);
    for (i = 0; i < n; i++) {
        big[i] = (unsigned char)(i * 31 + 7);
    }
    client(f, 0, "echo", NULL);
    client(f, 1, "big-requester", NULL);
    rec_init(&rr, f, 0, REC_ANSWER);
    subscribe(f, 0, KUBEMQ_QUERY, "q.big", NULL, &rr);
    assert_true(wait_subscribers(f, "q.big", 1));
    memset(&r, 0, sizeof(r));
    assert_int_equal(request(f, f->c[1], KUBEMQ_QUERY, "q.big", big, n, "echo", 60000, &r), 0);
    if (r.status != 0) {
        free(big);
        fail_msg("64 MiB query: %s", r.err);
    }
    assert_int_equal(r.body_len, n);
    assert_memory_equal(r.body, big, n);
    res_free(&r);
    free(big);

    /* Past the 100 MiB limit: a clear error through the callback, nothing sent. */
    huge = malloc(KUBEMQ_MAX_MESSAGE); /* never touched: refused before packing */
    assert_non_null(huge);
    assert_int_equal(
        request(f, f->c[1], KUBEMQ_QUERY, "q.big", huge, KUBEMQ_MAX_MESSAGE, NULL, 5000, &r), 0);
    free(huge);
    assert_int_equal(r.status, KUBEMQ_STATUS_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(r.err, "larger than the 104857600-byte limit"));
    /* The connection is fine after it. */
    assert_int_equal(request(f, f->c[1], KUBEMQ_QUERY, "q.big", "s", 1, NULL, 5000, &r), 0);
    assert_int_equal(r.status, 0);
    res_free(&r);
}

/* ---- the wire, against a bare HTTP/2 server ---- */

static void stub_client(struct fx *f, struct h2stub *s, int i, const char *token)
{
    struct kubemq_client_opts o;
    char address[64];

    snprintf(address, sizeof(address), "127.0.0.1:%d", s->port);
    kubemq_client_opts_init(&o);
    o.address = address;
    o.client_id = "stub-client";
    o.auth_token = token;
    o.reconnect_interval_seconds = 1;
    o.ping_interval_ms = -1;
    o.log_name = "test";
    client_opts(f, i, &o);
}

static void test_wire_deadline_cancel(void **state)
{
    struct fx *f = *state;
    struct h2stub *sp = &f->stub;
    struct res r;
    uint64_t t0;

    f->stub_on = 1;
    assert_int_equal(h2stub_start(sp, f->loop, H2STUB_SILENT), 0);
    stub_client(f, sp, 0, "tok-1");
    /* The client's own Ping after connecting never gets an answer either. */
    memset(&r, 0, sizeof(r));
    t0 = now_ms();
    STARTING(kubemq_ping(f->c[0], 400, on_ping, &r));
    assert_true(RUN_UNTIL(f, r.done, WAIT_MS));
    assert_true(now_ms() - t0 >= 350);
    assert_int_equal(r.status, KUBEMQ_STATUS_DEADLINE_EXCEEDED);
    assert_non_null(strstr(r.err, "DEADLINE_EXCEEDED (4): deadline exceeded after 400 ms"));
    /* RST_STREAM CANCEL went to the server. */
    assert_true(RUN_UNTIL(f, sp->rst_count >= 1, WAIT_MS));
    assert_int_equal(sp->rst_code, NGHTTP2_CANCEL);
    /* The wire: SETTINGS first, gRPC's headers, an empty message with its prefix. */
    assert_int_equal(sp->first_frame, NGHTTP2_SETTINGS);
    assert_string_equal(sp->path, "/kubemq.kubemq/Ping");
    assert_string_equal(sp->scheme, "http");
    assert_string_equal(sp->authority, kubemq_client_address(f->c[0]));
    assert_string_equal(sp->ctype, "application/grpc");
    assert_string_equal(sp->te, "trailers");
    assert_string_equal(sp->auth, "tok-1");
    assert_true(strlen(sp->timeout) >= 2 && strlen(sp->timeout) <= 9);
    /* Two Pings (the client's own on connecting, and ours): each an empty message
     * with its 5-byte prefix. */
    assert_int_equal(sp->data_len, 10);
    assert_memory_equal(sp->data, "\0\0\0\0\0\0\0\0\0\0", 10);
    assert_true(sp->data_end_stream);
    assert_int_equal(sp->client_pings, 0);
    assert_int_equal(kubemq_client_ready(f->c[0]), 0);
    kubemq_client_destroy(f->c[0]);
    f->c[0] = NULL;
    assert_true(RUN_UNTIL(f, kubemq_client_lingering() == 0, WAIT_MS));
}

static void test_wire_goaway_eof_ping(void **state)
{
    struct fx *f = *state;
    struct kubemq_call *call;
    struct h2stub *sp = &f->stub;
    struct res r;
    int accepted, rst;

    f->stub_on = 1;
    assert_int_equal(h2stub_start(sp, f->loop, H2STUB_GOAWAY), 0);
    stub_client(f, sp, 0, NULL);
    assert_true(RUN_UNTIL(f, kubemq_client_ready(f->c[0]), WAIT_MS));

    /* GOAWAY then FIN: the call fails with UNAVAILABLE, the client reconnects. */
    memset(&r, 0, sizeof(r));
    accepted = sp->accepted;
    STARTING(kubemq_send_request(f->c[0], KUBEMQ_QUERY, "q", "x", 1, NULL, 10000, on_response, &r));
    assert_true(RUN_UNTIL(f, r.done, WAIT_MS));
    assert_int_equal(r.status, KUBEMQ_STATUS_UNAVAILABLE);
    assert_non_null(strstr(r.err, "GOAWAY from the server (ENHANCE_YOUR_CALM: too_many_pings)"));
    assert_true(RUN_UNTIL(f, sp->accepted > accepted && kubemq_client_ready(f->c[0]), WAIT_MS));
    assert_true(log_has("kubemq: reconnected to 127.0.0.1:"));

    /* FIN without a GOAWAY (what a server's SIGTERM looks like). */
    sp->mode = H2STUB_EOF;
    memset(&r, 0, sizeof(r));
    accepted = sp->accepted;
    STARTING(kubemq_send_request(f->c[0], KUBEMQ_QUERY, "q", "x", 1, NULL, 10000, on_response, &r));
    assert_true(RUN_UNTIL(f, r.done, WAIT_MS));
    assert_int_equal(r.status, KUBEMQ_STATUS_UNAVAILABLE);
    assert_non_null(strstr(r.err, "the server closed the connection (no GOAWAY)"));
    assert_true(RUN_UNTIL(f, sp->accepted > accepted && kubemq_client_ready(f->c[0]), WAIT_MS));

    /* The server's PING is ACKed with its data although the client has nothing to write;
     * the client never PINGs by itself. */
    sp->mode = H2STUB_PING;
    memset(&r, 0, sizeof(r));
    STARTING(call = kubemq_send_request(f->c[0], KUBEMQ_QUERY, "q", "x", 1, NULL, 10000,
                                        on_response, &r));
    assert_true(RUN_UNTIL(f, sp->ping_acks == 1, WAIT_MS));
    assert_true(sp->ack_opaque_ok);
    assert_int_equal(sp->client_pings, 0);
    /* Cancelled: RST_STREAM CANCEL, and its callback never runs. */
    rst = sp->rst_count;
    kubemq_call_cancel(call);
    assert_true(RUN_UNTIL(f, sp->rst_count > rst, WAIT_MS));
    assert_int_equal(sp->rst_code, NGHTTP2_CANCEL);
    run_for(f, 100);
    assert_false(r.done);
    kubemq_client_destroy(f->c[0]);
    f->c[0] = NULL;
    assert_true(RUN_UNTIL(f, kubemq_client_lingering() == 0, WAIT_MS));
}

/* After about a billion calls a connection has no stream id left: a new one takes over. */
static void test_stream_ids_used_up(void **state)
{
    struct fx *f = *state;
    struct rec rr;
    struct res a, b;

    client(f, 0, "ids-resp", NULL);
    client(f, 1, "ids-req", NULL);
    rec_init(&rr, f, 0, REC_ANSWER);
    subscribe(f, 0, KUBEMQ_QUERY, "q.ids", NULL, &rr);
    assert_true(wait_subscribers(f, "q.ids", 1));
    assert_true(RUN_UNTIL(f, kubemq_client_ready(f->c[1]), WAIT_MS));
    assert_int_equal(nghttp2_session_set_next_stream_id(f->c[1]->conn->h2, 0x7fffffff), 0);
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    assert_int_equal(request(f, f->c[1], KUBEMQ_QUERY, "q.ids", "last", 4, NULL, 5000, &a), 0);
    assert_int_equal(a.status, 0); /* the last id there is */
    assert_int_equal(request(f, f->c[1], KUBEMQ_QUERY, "q.ids", "none", 4, NULL, 5000, &b), 0);
    assert_int_equal(b.status, KUBEMQ_STATUS_UNAVAILABLE);
    if (!strstr(b.err, "cannot start a call: No more Stream ID available")) {
        fail_msg("status %d err [%s] done %d", b.status, b.err, b.done);
    }
    assert_int_equal(request_retry(f, f->c[1], "q.ids", "again", &b), 0);
    assert_string_equal((char *)b.body, "pong:again");
    assert_true(log_has("stream ids are used up"));
    res_free(&a);
    res_free(&b);
}

/* ---- liveness, connections ---- */

static void test_idle_ping(void **state)
{
    struct fx *f = *state;
    struct kubemq_client_opts o;

    kubemq_client_opts_init(&o);
    o.address = f->b.address;
    o.client_id = "idle";
    o.ping_interval_ms = 200;
    client_opts(f, 0, &o);
    assert_true(RUN_UNTIL(f, broker_stat(&f->b, "Ping") >= 4, WAIT_MS));
    assert_true(kubemq_client_ready(f->c[0]));
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

/* Connections the broker holds on its port. */
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
    struct rec rr;
    struct res r;

    client(f, 0, "conn-a", NULL);
    client(f, 1, "conn-b", NULL);
    rec_init(&rr, f, 0, REC_COUNT);
    subscribe(f, 0, KUBEMQ_EVENTS, "e.one", NULL, &rr);
    subscribe(f, 0, KUBEMQ_QUERY, "q.one", NULL, &rr);
    assert_int_equal(ping(f, f->c[0], &r), 0);
    assert_int_equal(ping(f, f->c[1], &r), 0);
    assert_true(wait_subscribers(f, "q.one", 1));
    assert_int_equal(connections_to(&f->b), 2);
    kubemq_client_destroy(f->c[1]);
    f->c[1] = NULL;
    assert_true(RUN_UNTIL(f, connections_to(&f->b) == 1, WAIT_MS));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_options, setup_none, teardown),
        cmocka_unit_test_setup_teardown(test_broker_down, setup_none, teardown),
        cmocka_unit_test_setup_teardown(test_ping, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_query_round_trip_groups, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_command_and_timeout, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_events, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_events_store_starts, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_events_store_refuse_resume, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_events_store_broker_restart, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_queue, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_auth_token, setup_token, teardown),
        cmocka_unit_test_setup_teardown(test_gives_up, setup_token, teardown),
        cmocka_unit_test_setup_teardown(test_tls, setup_none, teardown),
        cmocka_unit_test_setup_teardown(test_tls_without_h2, setup_none, teardown),
        cmocka_unit_test_setup_teardown(test_names_and_ipv6, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_broker_killed_mid_call, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_with_writes_pending, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_large_bodies, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_wire_deadline_cancel, setup_none, teardown),
        cmocka_unit_test_setup_teardown(test_wire_goaway_eof_ping, setup_none, teardown),
        cmocka_unit_test_setup_teardown(test_stream_ids_used_up, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_idle_ping, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_one_connection_per_client, setup_plain, teardown),
    };
    int fd, rc;

    if (getenv("KK_TEST_FILTER")) {
        cmocka_set_test_filter(getenv("KK_TEST_FILTER"));
    }
    fd = mkstemp(g_logpath);
    if (fd < 0) {
        return 1;
    }
    log_set_fd(fd);
    if (getenv("KK_TEST_DEBUG")) {
        log_setup(LOG_LEVEL_DEBUG, LOG_FORMAT_TEXT); /* and on stderr, not captured */
        log_set_fd(-1);
    }
    signal(SIGPIPE, SIG_IGN);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    log_set_fd(-1);
    close(fd);
    unlink(g_logpath);
    return rc;
}
