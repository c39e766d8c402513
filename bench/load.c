/* load.c - end-to-end load generator: queries through a KubeMQ broker to the daemon.
 *
 * One connection (our own KubeMQ client, on a loop of its own) keeps C
 * queries in flight until N have been answered; every reply envelope is
 * checked. Measures
 * throughput and latency percentiles, and - from /proc - the daemon's CPU
 * seconds (user+sys) per 1,000 requests and its peak RSS (VmHWM, reset
 * through clear_refs before the run so the peak is this run's).
 *
 *   bench-load --address H:P --channel CH [--requests N] [--concurrency C]
 *              [--size BYTES] [--method put_record|put_records] [--records R]
 *              [--stream NAME] [--pid DAEMON_PID] [--broker-pid PID]
 *              [--warmup N] [--timeout-ms T] [--label TEXT]
 * Prints one JSON line with the figures. Exit 1 when any request failed. */
#include "base/b64.h"
#include "base/buf.h"
#include "base/clock.h"
#include "kubemq/kubemq_client.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONCURRENCY 4096

struct opts {
    const char *address;
    const char *channel;
    const char *method;
    const char *stream;
    const char *label;
    unsigned long requests;
    unsigned long warmup;
    int concurrency;
    size_t size;
    int records;
    int pid;
    int broker_pid;
    int timeout_ms;
};

struct run;

/* One query in flight. */
struct slot {
    struct run *r;
    unsigned long i;
    double t0;
};

struct run {
    const struct opts *o;
    struct loop *loop;
    struct kubemq_client *client;
    const char *b64; /* the record, base64 */
    struct buf body;
    struct slot *slots;
    unsigned long next, total, done;
    unsigned long ok, failed;
    double *lat_ms; /* per request, indexed by its number */
    char first_error[512];
};

struct proc_sample {
    double cpu_s; /* utime + stime */
    long rss_kb;
    long hwm_kb;
    int ok;
};

static double now_s(void)
{
    return (double)clock_mono_us() / 1e6;
}

static void proc_read(int pid, struct proc_sample *s)
{
    char path[64], line[4096];
    FILE *f;
    unsigned long long ut = 0, st = 0;
    char *p;

    memset(s, 0, sizeof(*s));
    if (pid <= 0) {
        return;
    }
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (!f) {
        return;
    }
    if (fgets(line, sizeof(line), f) && (p = strrchr(line, ')')) != NULL &&
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2) {
        s->cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
        s->ok = 1;
    }
    fclose(f);
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    f = fopen(path, "r");
    if (!f) {
        return;
    }
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            s->rss_kb = strtol(line + 6, NULL, 10);
        } else if (strncmp(line, "VmHWM:", 6) == 0) {
            s->hwm_kb = strtol(line + 6, NULL, 10);
        }
    }
    fclose(f);
}

/* Start a new peak-RSS window (works for our own processes). */
static void proc_reset_hwm(int pid)
{
    char path[64];
    int fd;

    if (pid <= 0) {
        return;
    }
    snprintf(path, sizeof(path), "/proc/%d/clear_refs", pid);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (write(fd, "5", 1) != 1) {
            /* The peak then covers the process's whole life: still an upper bound. */
        }
        close(fd);
    }
}

static void note_error(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note_error(struct run *r, const char *fmt, ...)
{
    va_list ap;

    if (!r->first_error[0]) {
        va_start(ap, fmt);
        vsnprintf(r->first_error, sizeof(r->first_error), fmt, ap);
        va_end(ap);
    }
}

static int build_body(const struct run *r, unsigned long i, struct buf *body)
{
    const struct opts *o = r->o;
    int k;

    buf_reset(body);
    if (strcmp(o->method, "put_records") == 0) {
        struct buf data = BUF_INIT(BUF_DEFAULT_MAX);
        int rc;

        rc = buf_append_char(&data, '[');
        for (k = 0; k < o->records && rc == 0; k++) {
            rc = buf_appendf(&data, "%s{\"partition_key\":\"k-%lu-%d\",\"data\":\"%s\"}",
                             k ? "," : "", i, k, r->b64);
        }
        rc = rc < 0 ? rc : buf_append_char(&data, ']');
        rc = rc < 0 ? rc
                    : buf_appendf(body,
                                  "{\"metadata\":{\"method\":\"put_records\",\"stream_name\":"
                                  "\"%s\"},\"data\":\"",
                                  o->stream);
        rc = rc < 0 ? rc : b64_encode(data.data, data.len, body);
        rc = rc < 0 ? rc : buf_append_str(body, "\"}");
        buf_free(&data);
        return rc;
    }
    return buf_appendf(body,
                       "{\"metadata\":{\"method\":\"%s\",\"stream_name\":\"%s\","
                       "\"partition_key\":\"k-%lu\"},\"data\":\"%s\"}",
                       o->method, o->stream, i, r->b64);
}

static void start_next(struct slot *sl);

static void on_reply(void *ctx, const struct kubemq_response *res, int status, const char *err)
{
    struct slot *sl = ctx;
    struct run *r = sl->r;

    r->lat_ms[sl->i] = (now_s() - sl->t0) * 1e3;
    r->done++;
    if (!res) {
        note_error(r, "send: %s", err ? err : "failed");
        r->failed++;
    } else if (res->error[0] || !res->body ||
               !memmem(res->body, res->body_len, "\"is_error\":false", 17)) {
        note_error(r, "reply: %s %.*s", res->error,
                   (int)(res->body_len < 300 ? res->body_len : 300),
                   res->body ? (const char *)res->body : "");
        r->failed++;
    } else {
        r->ok++;
    }
    start_next(sl);
}

static void start_next(struct slot *sl)
{
    struct run *r = sl->r;

    while (r->next < r->total) {
        sl->i = r->next++;
        if (build_body(r, sl->i, &r->body) < 0) {
            note_error(r, "cannot build the request body");
            r->failed++;
            r->done++;
            continue;
        }
        sl->t0 = now_s();
        if (!kubemq_send_request(r->client, KUBEMQ_QUERY, r->o->channel, r->body.data, r->body.len,
                                 NULL, r->o->timeout_ms, on_reply, sl)) {
            note_error(r, "send: out of memory");
            r->failed++;
            r->done++;
            continue;
        }
        return;
    }
}

static int run_phase(struct run *r, unsigned long n)
{
    int i;

    r->total = n;
    r->next = r->done = r->ok = r->failed = 0;
    for (i = 0; i < r->o->concurrency; i++) {
        r->slots[i].r = r;
        start_next(&r->slots[i]);
    }
    while (r->done < r->total) {
        if (loop_run_once(r->loop, 1000) < 0) {
            fprintf(stderr, "bench-load: loop: %s\n", strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double pct(const double *sorted, unsigned long n, double p)
{
    unsigned long i;

    if (!n) {
        return 0;
    }
    i = (unsigned long)(p / 100.0 * (double)n);
    return sorted[i >= n ? n - 1 : i];
}

static void usage(void)
{
    fprintf(stderr, "usage: bench-load --address H:P --channel CH [--requests N] [--concurrency C] "
                    "[--size BYTES] [--method put_record|put_records] [--records R] "
                    "[--stream NAME] [--pid PID] [--broker-pid PID] [--warmup N] "
                    "[--timeout-ms T] [--label TEXT]\n");
}

static double cpu_self_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    struct opts o = {
        NULL, NULL, "put_record", "bench-stream", "", 1000, (unsigned long)-1, 16, 1024, 500,
        0,    0,    30000};
    struct kubemq_client_opts co;
    static struct run r;
    uint64_t deadline;
    struct proc_sample d0, d1, b0, b1;
    struct buf rec = BUF_INIT(BUF_DEFAULT_MAX), b64 = BUF_INIT(BUF_DEFAULT_MAX);
    double t0, t, self0, self1, units;
    char err[512], id[64];
    unsigned long i;
    int rc = 1;

    for (int a = 1; a < argc; a++) {
        const char *k = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;

        if (!v) {
            usage();
            return 2;
        }
        a++;
        if (strcmp(k, "--address") == 0) {
            o.address = v;
        } else if (strcmp(k, "--channel") == 0) {
            o.channel = v;
        } else if (strcmp(k, "--requests") == 0) {
            o.requests = strtoul(v, NULL, 10);
        } else if (strcmp(k, "--concurrency") == 0) {
            o.concurrency = (int)strtol(v, NULL, 10);
        } else if (strcmp(k, "--size") == 0) {
            o.size = strtoul(v, NULL, 10);
        } else if (strcmp(k, "--method") == 0) {
            o.method = v;
        } else if (strcmp(k, "--records") == 0) {
            o.records = (int)strtol(v, NULL, 10);
        } else if (strcmp(k, "--stream") == 0) {
            o.stream = v;
        } else if (strcmp(k, "--pid") == 0) {
            o.pid = (int)strtol(v, NULL, 10);
        } else if (strcmp(k, "--broker-pid") == 0) {
            o.broker_pid = (int)strtol(v, NULL, 10);
        } else if (strcmp(k, "--warmup") == 0) {
            o.warmup = strtoul(v, NULL, 10);
        } else if (strcmp(k, "--timeout-ms") == 0) {
            o.timeout_ms = (int)strtol(v, NULL, 10);
        } else if (strcmp(k, "--label") == 0) {
            o.label = v;
        } else {
            usage();
            return 2;
        }
    }
    if (!o.address || !o.channel || o.requests < 1 || o.concurrency < 1 ||
        o.concurrency > MAX_CONCURRENCY || o.records < 1 || o.records > 100000 ||
        o.size > ((size_t)1 << 20)) {
        usage();
        return 2;
    }
    if (o.warmup == (unsigned long)-1) {
        o.warmup = o.requests / 10 < 200 ? o.requests / 10 : 200;
    }
    r.o = &o;
    signal(SIGPIPE, SIG_IGN);
    buf_init(&r.body, BUF_DEFAULT_MAX);
    r.slots = calloc((size_t)o.concurrency, sizeof(*r.slots));
    r.loop = loop_create(err, sizeof(err));
    if (!r.slots || !r.loop) {
        fprintf(stderr, "bench-load: %s\n", r.loop ? "out of memory" : err);
        goto out;
    }
    if (buf_reserve(&rec, o.size) < 0) {
        goto out;
    }
    for (i = 0; i < o.size; i++) {
        rec.data[i] = (char)('a' + (i * 7) % 26);
    }
    rec.len = o.size;
    if (b64_encode(rec.data ? rec.data : "", rec.len, &b64) < 0) {
        goto out;
    }
    r.b64 = buf_str(&b64);
    r.lat_ms = calloc(o.requests + o.warmup + 1, sizeof(double));
    if (!r.lat_ms) {
        goto out;
    }
    kubemq_client_opts_init(&co);
    snprintf(id, sizeof(id), "bench-load-%d", (int)getpid());
    co.address = o.address;
    co.client_id = id;
    co.ping_interval_ms = -1;
    r.client = kubemq_client_create(r.loop, &co, err, sizeof(err));
    if (!r.client) {
        fprintf(stderr, "bench-load: %s\n", err);
        goto out;
    }
    deadline = loop_now_ms(r.loop) + 10000;
    while (!kubemq_client_ready(r.client) && loop_now_ms(r.loop) < deadline) {
        loop_run_once(r.loop, 50);
    }
    if (!kubemq_client_ready(r.client)) {
        fprintf(stderr, "bench-load: no connection to %s within 10 s\n", o.address);
        goto out;
    }
    if (o.warmup && run_phase(&r, o.warmup) < 0) {
        goto out;
    }
    if (r.failed) {
        fprintf(stderr, "bench-load: warm-up failed: %s\n", r.first_error);
        goto out;
    }
    proc_reset_hwm(o.pid);
    proc_read(o.pid, &d0);
    proc_read(o.broker_pid, &b0);
    self0 = cpu_self_s();
    t0 = now_s();
    if (run_phase(&r, o.requests) < 0) {
        goto out;
    }
    t = now_s() - t0;
    self1 = cpu_self_s();
    proc_read(o.pid, &d1);
    proc_read(o.broker_pid, &b1);
    qsort(r.lat_ms, o.requests, sizeof(double), cmp_double);
    units = (double)o.requests / 1000.0;
    printf("{\"label\":\"%s\",\"method\":\"%s\",\"requests\":%lu,\"records_per_request\":%d,"
           "\"concurrency\":%d,\"size\":%zu,\"ok\":%lu,\"failed\":%lu,\"seconds\":%.3f,"
           "\"per_second\":%.1f,\"records_per_second\":%.1f,"
           "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f",
           o.label, o.method, o.requests, strcmp(o.method, "put_records") == 0 ? o.records : 1,
           o.concurrency, o.size, r.ok, r.failed, t, (double)o.requests / t,
           (double)o.requests * (strcmp(o.method, "put_records") == 0 ? o.records : 1) / t,
           pct(r.lat_ms, o.requests, 50), pct(r.lat_ms, o.requests, 90),
           pct(r.lat_ms, o.requests, 99), r.lat_ms[o.requests - 1]);
    if (d0.ok && d1.ok) {
        printf(",\"daemon_cpu_s_per_1000\":%.4f,\"daemon_cpu_share\":%.3f,\"daemon_rss_kb\":%ld,"
               "\"daemon_peak_rss_kb\":%ld",
               (d1.cpu_s - d0.cpu_s) / units, (d1.cpu_s - d0.cpu_s) / t, d1.rss_kb, d1.hwm_kb);
    }
    if (b0.ok && b1.ok) {
        printf(",\"broker_cpu_s_per_1000\":%.4f,\"broker_cpu_share\":%.3f",
               (b1.cpu_s - b0.cpu_s) / units, (b1.cpu_s - b0.cpu_s) / t);
    }
    printf(",\"loadgen_cpu_share\":%.3f}\n", (self1 - self0) / t);
    fflush(stdout);
    if (r.failed) {
        fprintf(stderr, "bench-load: %lu requests failed, first: %s\n", r.failed, r.first_error);
        goto out;
    }
    rc = 0;
out:
    kubemq_client_destroy(r.client);
    if (r.loop) {
        loop_run_until_idle(r.loop, 2000);
    }
    loop_destroy(r.loop);
    free(r.slots);
    free(r.lat_ms);
    buf_free(&r.body);
    buf_free(&rec);
    buf_free(&b64);
    return rc;
}
