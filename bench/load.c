/* load.c - end-to-end load generator: queries through a KubeMQ broker to the daemon.
 *
 * One connection (our own KubeMQ client, on a loop of its own) keeps C
 * queries in flight until N have been answered; every reply envelope is
 * checked. Measures
 * throughput and latency percentiles, and - from /proc - the daemon's CPU
 * seconds (user+sys) per 1,000 requests and its peak RSS (VmHWM, reset
 * through clear_refs before the run so the peak is this run's); per thread
 * of the daemon (/proc/PID/task/TID) its CPU and context switches over the
 * measured requests, and which threads lived through the whole run.
 * --count-syscalls counts the daemon's system calls over exactly the
 * measured requests (a perf counter on the raw_syscalls:sys_enter
 * tracepoint of each of its threads, inherited by threads it starts;
 * "null" where the kernel refuses it). --rss-at N,M,... reads the daemon's
 * RSS when N, M, ... of the measured requests have been answered (a soak).
 *
 *   bench-load --address H:P --channel CH [--requests N] [--concurrency C]
 *              [--size BYTES] [--method put_record|put_records] [--records R]
 *              [--stream NAME] [--pid DAEMON_PID] [--broker-pid PID]
 *              [--warmup N] [--timeout-ms T] [--label TEXT]
 *              [--count-syscalls] [--rss-at N[,N...]]
 * Prints one JSON line with the figures. Exit 1 when any request failed. */
#include "base/b64.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "kubemq/kubemq_client.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONCURRENCY 4096
#define OK_MARK         "\"is_error\":false"
#define MAX_TASKS       256
#define MAX_RSS_MARKS   16

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
    int count_syscalls;
    unsigned long rss_at[MAX_RSS_MARKS];
    int nrss_at;
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
    int measuring; /* the measured phase (not the warm-up) */
    int rss_next;  /* next --rss-at mark to read */
    long rss_at_kb[MAX_RSS_MARKS];
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

/* One thread of the daemon. */
struct task_sample {
    int tid;
    char comm[32];
    double cpu_s;
    long vol, invol; /* context switches */
};

struct tasks {
    int n;
    struct task_sample t[MAX_TASKS];
};

static void task_read(int pid, int tid, struct task_sample *ts)
{
    char path[96], line[4096];
    unsigned long long ut = 0, st = 0;
    FILE *f;
    char *p, *q;

    memset(ts, 0, sizeof(*ts));
    ts->tid = tid;
    snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
    f = fopen(path, "r");
    if (!f) {
        return;
    }
    if (fgets(line, sizeof(line), f) && (p = strchr(line, '(')) != NULL &&
        (q = strrchr(line, ')')) != NULL && q > p) {
        size_t n = (size_t)(q - p - 1);

        if (n >= sizeof(ts->comm)) {
            n = sizeof(ts->comm) - 1;
        }
        memcpy(ts->comm, p + 1, n);
        ts->comm[n] = '\0';
        if (sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2) {
            ts->cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
        }
    }
    fclose(f);
    snprintf(path, sizeof(path), "/proc/%d/task/%d/status", pid, tid);
    f = fopen(path, "r");
    if (!f) {
        return;
    }
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "voluntary_ctxt_switches:", 24) == 0) {
            ts->vol = strtol(line + 24, NULL, 10);
        } else if (strncmp(line, "nonvoluntary_ctxt_switches:", 27) == 0) {
            ts->invol = strtol(line + 27, NULL, 10);
        }
    }
    fclose(f);
}

static void tasks_read(int pid, struct tasks *ts)
{
    char path[64];
    struct dirent *de;
    DIR *d;

    ts->n = 0;
    if (pid <= 0) {
        return;
    }
    snprintf(path, sizeof(path), "/proc/%d/task", pid);
    d = opendir(path);
    if (!d) {
        return;
    }
    while ((de = readdir(d)) != NULL && ts->n < MAX_TASKS) {
        int tid = (int)strtol(de->d_name, NULL, 10);

        if (tid > 0) {
            task_read(pid, tid, &ts->t[ts->n++]);
        }
    }
    closedir(d);
}

static const struct task_sample *task_find(const struct tasks *ts, int tid)
{
    for (int i = 0; i < ts->n; i++) {
        if (ts->t[i].tid == tid) {
            return &ts->t[i];
        }
    }
    return NULL;
}

/* System calls of the daemon: one counter per thread, inherited by the
 * threads each starts later. */
struct sys_counter {
    int fds[MAX_TASKS];
    int n;
};

static long tracepoint_id(const char *event)
{
    static const char *const roots[] = {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"};
    char path[160], line[64];
    long id = -1;

    for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]) && id < 0; i++) {
        FILE *f;

        snprintf(path, sizeof(path), "%s/events/%s/id", roots[i], event);
        f = fopen(path, "r");
        if (f) {
            if (fgets(line, sizeof(line), f)) {
                id = strtol(line, NULL, 10);
            }
            fclose(f);
        }
    }
    return id;
}

static int sys_counter_open(struct sys_counter *sc, int pid)
{
    struct perf_event_attr a;
    struct tasks *ts = calloc(1, sizeof(*ts));
    long id = tracepoint_id("raw_syscalls/sys_enter");

    sc->n = 0;
    if (!ts || id < 0 || pid <= 0) {
        free(ts);
        return -1;
    }
    tasks_read(pid, ts);
    memset(&a, 0, sizeof(a));
    a.type = PERF_TYPE_TRACEPOINT;
    a.size = sizeof(a);
    a.config = (unsigned long long)id;
    a.disabled = 1;
    a.inherit = 1;
    for (int i = 0; i < ts->n; i++) {
        int fd = (int)syscall(SYS_perf_event_open, &a, ts->t[i].tid, -1, -1, PERF_FLAG_FD_CLOEXEC);

        if (fd < 0) {
            continue; /* a thread that just ended */
        }
        sc->fds[sc->n++] = fd;
    }
    free(ts);
    return sc->n ? 0 : -1;
}

static void sys_counter_enable(struct sys_counter *sc, int on)
{
    for (int i = 0; i < sc->n; i++) {
        ioctl(sc->fds[i], on ? PERF_EVENT_IOC_ENABLE : PERF_EVENT_IOC_DISABLE, 0);
    }
}

static unsigned long long sys_counter_read(struct sys_counter *sc)
{
    unsigned long long total = 0, v;

    for (int i = 0; i < sc->n; i++) {
        if (read(sc->fds[i], &v, sizeof(v)) == (ssize_t)sizeof(v)) {
            total += v;
        }
    }
    return total;
}

static void sys_counter_close(struct sys_counter *sc)
{
    for (int i = 0; i < sc->n; i++) {
        close(sc->fds[i]);
    }
    sc->n = 0;
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
    if (r->measuring && r->rss_next < r->o->nrss_at && r->done == r->o->rss_at[r->rss_next]) {
        struct proc_sample s;

        proc_read(r->o->pid, &s);
        r->rss_at_kb[r->rss_next++] = s.rss_kb;
    }
    if (!res) {
        note_error(r, "send: %s", err ? err : "failed");
        r->failed++;
    } else if (res->error[0] || !res->body ||
               !memmem(res->body, res->body_len, OK_MARK, sizeof(OK_MARK) - 1)) {
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
                    "[--timeout-ms T] [--label TEXT] [--count-syscalls] [--rss-at N[,N...]]\n");
}

/* "100000,1000000" -> o->rss_at, ascending. */
static int parse_marks(struct opts *o, const char *v)
{
    char *end;

    o->nrss_at = 0;
    while (*v) {
        unsigned long n = strtoul(v, &end, 10);

        if (end == v || n < 1 || o->nrss_at == MAX_RSS_MARKS ||
            (o->nrss_at && n <= o->rss_at[o->nrss_at - 1])) {
            return -1;
        }
        o->rss_at[o->nrss_at++] = n;
        v = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') {
            return -1;
        }
    }
    return o->nrss_at ? 0 : -1;
}

/* Per thread of the daemon over the measured requests: CPU ms per
 * request and context switches per request; a thread is long-lived when
 * it was there at both ends. */
static void print_tasks(const struct tasks *t0, const struct tasks *t1, unsigned long n)
{
    long vol = 0, invol = 0;
    int lived = 0;

    printf(",\"daemon_threads\":[");
    for (int i = 0; i < t1->n; i++) {
        const struct task_sample *b = &t1->t[i], *a = task_find(t0, b->tid);
        struct task_sample zero = {0};

        if (!a) {
            a = &zero;
        } else {
            lived++;
        }
        vol += b->vol - a->vol;
        invol += b->invol - a->invol;
        printf("%s{\"tid\":%d,\"name\":\"%s\",\"whole_run\":%s,\"cpu_ms_per_req\":%.4f,"
               "\"ctxsw_per_req\":%.3f}",
               i ? "," : "", b->tid, b->comm, a == &zero ? "false" : "true",
               (b->cpu_s - a->cpu_s) * 1e3 / (double)n,
               (double)(b->vol - a->vol + b->invol - a->invol) / (double)n);
    }
    printf("],\"daemon_threads_whole_run\":%d,\"daemon_ctxsw_per_req\":%.3f,"
           "\"daemon_vol_ctxsw_per_req\":%.3f,\"daemon_invol_ctxsw_per_req\":%.3f",
           lived, (double)(vol + invol) / (double)n, (double)vol / (double)n,
           (double)invol / (double)n);
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
    struct opts o = {0};

    struct kubemq_client_opts co;
    static struct run r;
    uint64_t deadline;
    struct proc_sample d0, d1, b0, b1;
    static struct tasks dt0, dt1;
    struct sys_counter sc = {{0}, 0};
    unsigned long long nsys = 0;
    int counting = 0;
    struct buf rec = BUF_INIT(BUF_DEFAULT_MAX), b64 = BUF_INIT(BUF_DEFAULT_MAX);
    double t0, t, self0, self1, units;
    char err[512], id[64];
    unsigned long i;
    int rc = 1;

    o.method = "put_record";
    o.stream = "bench-stream";
    o.label = "";
    o.requests = 1000;
    o.warmup = (unsigned long)-1;
    o.concurrency = 16;
    o.size = 1024;
    o.records = 500;
    o.timeout_ms = 30000;
    for (int a = 1; a < argc; a++) {
        const char *k = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;

        if (strcmp(k, "--count-syscalls") == 0) {
            o.count_syscalls = 1;
            continue;
        }
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
        } else if (strcmp(k, "--rss-at") == 0) {
            if (parse_marks(&o, v) < 0) {
                usage();
                return 2;
            }
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
    log_set_level(LOG_LEVEL_WARN); /* the client's "connected" is noise in a report run */
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
    if (o.count_syscalls && sys_counter_open(&sc, o.pid) == 0) {
        counting = 1;
    }
    proc_reset_hwm(o.pid);
    tasks_read(o.pid, &dt0);
    proc_read(o.pid, &d0);
    proc_read(o.broker_pid, &b0);
    self0 = cpu_self_s();
    t0 = now_s();
    r.measuring = 1;
    if (counting) {
        sys_counter_enable(&sc, 1);
    }
    if (run_phase(&r, o.requests) < 0) {
        goto out;
    }
    if (counting) {
        sys_counter_enable(&sc, 0);
        nsys = sys_counter_read(&sc);
    }
    t = now_s() - t0;
    self1 = cpu_self_s();
    proc_read(o.pid, &d1);
    tasks_read(o.pid, &dt1);
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
    if (d0.ok && d1.ok && dt1.n) {
        print_tasks(&dt0, &dt1, o.requests);
    }
    if (o.count_syscalls) {
        if (counting) {
            printf(",\"daemon_syscalls_per_req\":%.3f", (double)nsys / (double)o.requests);
        } else {
            printf(",\"daemon_syscalls_per_req\":null");
        }
    }
    if (o.nrss_at) {
        printf(",\"daemon_rss_at\":[");
        for (int m = 0; m < r.rss_next; m++) {
            printf("%s[%lu,%ld]", m ? "," : "", o.rss_at[m], r.rss_at_kb[m]);
        }
        printf("]");
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
    sys_counter_close(&sc);
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
