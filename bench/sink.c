/* sink.c - a minimal, fast Kinesis stand-in for load tests.
 *
 * Answers PutRecord and PutRecords with valid replies (every record
 * accepted), ListShards with one shard (for aggregation's shard map),
 * anything else with {}, counts requests and records (Kinesis records: an
 * aggregated record counts once), and can
 * hold each reply for a fixed latency. It does not check signatures or
 * keep data: it exists so that benchmarks measure the daemon, not
 * kinesalite (~3.6k req/s on two cores).
 *
 *   bench-sink [--port N] [--latency-ms N]
 * prints {"ready":true,"port":N} when listening on 127.0.0.1;
 * GET /_sink/stats answers {"requests":..,"records":..,"put_record":..,"put_records":..}.
 * Stops on SIGTERM/SIGINT. */
#include "base/buf.h"
#include "base/loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define SINK_MAX_REQUEST ((size_t)16 << 20)

struct sink {
    struct loop *loop;
    int listen_fd;
    int sig_fd;
    long latency_ms;
    unsigned long long requests, records, put_record, put_records;
    unsigned long long seq;
};

struct conn {
    struct sink *sink;
    int fd;
    struct buf in;
    struct buf out;
    size_t out_off;
    struct loop_timer delay;
    int held; /* a reply is waiting for its latency */
};

static void conn_io(void *arg, int fd, unsigned events);

static void conn_close(struct conn *c)
{
    loop_timer_stop(c->sink->loop, &c->delay);
    loop_io_set(c->sink->loop, c->fd, 0, NULL, NULL);
    close(c->fd);
    buf_free(&c->in);
    buf_free(&c->out);
    free(c);
}

static int conn_flush(struct conn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = write(c->fd, c->out.data + c->out_off, c->out.len - c->out_off);
        if (n < 0) {
            if (errno == EAGAIN) {
                return loop_io_set(c->sink->loop, c->fd, LOOP_READ | LOOP_WRITE, conn_io, c);
            }
            return -1;
        }
        c->out_off += (size_t)n;
    }
    buf_reset(&c->out);
    c->out_off = 0;
    return loop_io_set(c->sink->loop, c->fd, LOOP_READ, conn_io, c);
}

/* Count the records of a PutRecords body: each entry has one "Data" key. */
static unsigned long count_records(const char *body, size_t len)
{
    unsigned long n = 0;
    const char *p = body, *end = body + len;

    while (p < end && (p = memmem(p, (size_t)(end - p), "\"Data\"", 6)) != NULL) {
        n++;
        p += 6;
    }
    return n;
}

static void reply(struct conn *c, const char *body, size_t len)
{
    buf_appendf(&c->out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
                "x-amzn-RequestId: sink\r\nContent-Length: %zu\r\n\r\n",
                len);
    buf_append(&c->out, body, len);
}

static void answer(struct conn *c, const char *head, size_t headlen, const char *body, size_t blen)
{
    struct sink *s = c->sink;
    const char *t = memmem(head, headlen, "X-Amz-Target:", 13);
    struct buf b = BUF_INIT(SINK_MAX_REQUEST);
    char line[160];

    if (!t) {
        t = memmem(head, headlen, "x-amz-target:", 13);
    }
    if (headlen > 15 && strncmp(head, "GET /_sink/stats", 16) == 0) {
        int n = snprintf(line, sizeof(line),
                         "{\"requests\":%llu,\"records\":%llu,\"put_record\":%llu,"
                         "\"put_records\":%llu}",
                         s->requests, s->records, s->put_record, s->put_records);
        reply(c, line, (size_t)n);
        return;
    }
    s->requests++;
    if (t && memmem(t, (size_t)(head + headlen - t), ".PutRecords", 11)) {
        unsigned long i, n = count_records(body, blen);
        s->put_records++;
        s->records += n;
        buf_append_str(&b, "{\"FailedRecordCount\":0,\"Records\":[");
        for (i = 0; i < n; i++) {
            buf_appendf(&b,
                        "%s{\"SequenceNumber\":\"4959000000000000000000000000000000000000%llu\","
                        "\"ShardId\":\"shardId-000000000000\"}",
                        i ? "," : "", ++s->seq);
        }
        buf_append_str(&b, "]}");
    } else if (t && memmem(t, (size_t)(head + headlen - t), ".PutRecord", 10)) {
        s->put_record++;
        s->records++;
        buf_appendf(&b,
                    "{\"SequenceNumber\":\"4959000000000000000000000000000000000000%llu\","
                    "\"ShardId\":\"shardId-000000000000\"}",
                    ++s->seq);
    } else if (t && memmem(t, (size_t)(head + headlen - t), ".ListShards", 11)) {
        buf_append_str(&b, "{\"Shards\":[{\"ShardId\":\"shardId-000000000000\",\"HashKeyRange\":{"
                           "\"StartingHashKey\":\"0\",\"EndingHashKey\":"
                           "\"340282366920938463463374607431768211455\"},\"SequenceNumberRange\":{"
                           "\"StartingSequenceNumber\":\"1\"}}]}");
    } else {
        buf_append_str(&b, "{}");
    }
    reply(c, buf_str(&b), b.len);
    buf_free(&b);
}

static void release(void *arg)
{
    struct conn *c = arg;

    c->held = 0;
    if (conn_flush(c) < 0) {
        conn_close(c);
    }
}

/* Parse as many complete requests as the input holds. */
static int conn_parse(struct conn *c)
{
    for (;;) {
        char *hend = c->in.len ? memmem(c->in.data, c->in.len, "\r\n\r\n", 4) : NULL;
        size_t headlen, clen = 0, total;
        char *cl;

        if (!hend) {
            return c->in.len > 65536 ? -1 : 0;
        }
        headlen = (size_t)(hend - c->in.data) + 4;
        cl = memmem(c->in.data, headlen, "\r\nContent-Length:", 17);
        if (!cl) {
            cl = memmem(c->in.data, headlen, "\r\ncontent-length:", 17);
        }
        if (cl) {
            clen = strtoul(cl + 17, NULL, 10);
        }
        if (clen > SINK_MAX_REQUEST) {
            return -1;
        }
        total = headlen + clen;
        if (c->in.len < total) {
            return 0;
        }
        answer(c, c->in.data, headlen, c->in.data + headlen, clen);
        memmove(c->in.data, c->in.data + total, c->in.len - total);
        c->in.len -= total;
    }
}

static void conn_io(void *arg, int fd, unsigned events)
{
    struct conn *c = arg;
    char tmp[65536];

    if (events & LOOP_READ) {
        for (;;) {
            ssize_t n = read(fd, tmp, sizeof(tmp));
            if (n == 0) {
                conn_close(c);
                return;
            }
            if (n < 0) {
                if (errno == EAGAIN) {
                    break;
                }
                conn_close(c);
                return;
            }
            if (buf_append(&c->in, tmp, (size_t)n) < 0) {
                conn_close(c);
                return;
            }
        }
        if (conn_parse(c) < 0) {
            conn_close(c);
            return;
        }
    }
    if (c->held) {
        return;
    }
    if (c->out.len && c->sink->latency_ms > 0 && !(events & LOOP_WRITE)) {
        c->held = 1;
        loop_timer_start(c->sink->loop, &c->delay, (uint64_t)c->sink->latency_ms, release, c);
        return;
    }
    if (conn_flush(c) < 0) {
        conn_close(c);
    }
}

static void on_accept(void *arg, int fd, unsigned events)
{
    struct sink *s = arg;

    (void)events;
    for (;;) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct conn *c;
        int one = 1;

        if (cfd < 0) {
            return;
        }
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c = calloc(1, sizeof(*c));
        if (!c) {
            close(cfd);
            return;
        }
        c->sink = s;
        c->fd = cfd;
        buf_init(&c->in, SINK_MAX_REQUEST + 65536);
        buf_init(&c->out, SINK_MAX_REQUEST);
        loop_timer_init(&c->delay);
        if (loop_io_set(s->loop, cfd, LOOP_READ, conn_io, c) < 0) {
            close(cfd);
            free(c);
        }
    }
}

static void on_signal(void *arg, int fd, unsigned events)
{
    struct sink *s = arg;
    struct signalfd_siginfo si;

    (void)events;
    if (read(fd, &si, sizeof(si)) > 0) {
        loop_stop(s->loop);
    }
}

int main(int argc, char **argv)
{
    struct sink s;
    struct sockaddr_in sa;
    socklen_t salen = sizeof(sa);
    sigset_t mask;
    char err[128];
    long port = 0;
    int i, one = 1;

    memset(&s, 0, sizeof(s));
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--latency-ms") == 0 && i + 1 < argc) {
            s.latency_ms = strtol(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: bench-sink [--port N] [--latency-ms N]\n");
            return 2;
        }
    }
    s.loop = loop_create(err, sizeof(err));
    if (!s.loop) {
        fprintf(stderr, "bench-sink: %s\n", err);
        return 1;
    }
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    s.sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    s.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(s.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    if (bind(s.listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(s.listen_fd, 1024) < 0 ||
        getsockname(s.listen_fd, (struct sockaddr *)&sa, &salen) < 0) {
        fprintf(stderr, "bench-sink: listen: %s\n", strerror(errno));
        return 1;
    }
    loop_io_set(s.loop, s.listen_fd, LOOP_READ, on_accept, &s);
    loop_io_set(s.loop, s.sig_fd, LOOP_READ, on_signal, &s);
    printf("{\"ready\":true,\"port\":%d}\n", ntohs(sa.sin_port));
    fflush(stdout);
    loop_run(s.loop);
    fprintf(stderr, "bench-sink: %llu requests, %llu records\n", s.requests, s.records);
    close(s.listen_fd);
    close(s.sig_fd);
    loop_destroy(s.loop);
    return 0;
}
