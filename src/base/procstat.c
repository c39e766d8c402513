/* procstat.c - the process's own resource use from /proc/self. */
#include "base/procstat.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* System boot time (seconds since the epoch), the `btime` line of /proc/stat. */
static int boot_time(double *out)
{
    FILE *f = fopen("/proc/stat", "re");
    char line[256];
    int rc = -1;

    if (!f) {
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "btime ", 6) == 0) {
            *out = strtod(line + 6, NULL);
            rc = 0;
            break;
        }
    }
    fclose(f);
    return rc;
}

static long count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    long n = 0;

    if (!d) {
        return -1;
    }
    while ((e = readdir(d))) {
        if (e->d_name[0] != '.') {
            n++;
        }
    }
    closedir(d);
    /* opendir's own descriptor is listed too. */
    return n - 1;
}

int procstat_read(struct procstat *ps)
{
    char text[2048];
    unsigned long long v[25] = {0};
    double ticks = (double)sysconf(_SC_CLK_TCK), btime;
    size_t n;
    char *p, *end;
    FILE *f;
    struct rlimit rl;
    int field;

    memset(ps, 0, sizeof(*ps));
    f = fopen("/proc/self/stat", "re");
    if (!f) {
        return -1;
    }
    n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    /* Field 2 is the command name in parentheses and may hold spaces or
     * parentheses itself: the fields that follow start after the last ')'. */
    p = strrchr(text, ')');
    if (!p || p[1] != ' ' || p[2] == '\0' || p[3] != ' ' || ticks <= 0 || boot_time(&btime) < 0) {
        return -1;
    }
    p += 4; /* ") S " : field 3 (state) is a letter, numbers start at 4 */
    for (field = 4; field <= 24; field++) {
        v[field] = strtoull(p, &end, 10);
        if (end == p) {
            return -1;
        }
        p = end;
    }
    ps->cpu_seconds = (double)(v[14] + v[15]) / ticks;
    ps->start_time = btime + (double)v[22] / ticks;
    ps->virtual_bytes = v[23];
    ps->resident_bytes = v[24] * (uint64_t)sysconf(_SC_PAGESIZE);
    ps->open_fds = count_fds();
    if (ps->open_fds < 0) {
        return -1;
    }
    ps->max_fds = -1;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        ps->max_fds = (long)rl.rlim_cur;
    }
    return 0;
}

int procstat_render_prometheus(struct buf *out)
{
    struct procstat ps;
    int rc;

    if (procstat_read(&ps) < 0) {
        return -1;
    }
    rc = buf_appendf(out,
                     "# HELP process_cpu_seconds_total Total user and system CPU time spent in "
                     "seconds.\n"
                     "# TYPE process_cpu_seconds_total counter\n"
                     "process_cpu_seconds_total %.15g\n"
                     "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                     "# TYPE process_resident_memory_bytes gauge\n"
                     "process_resident_memory_bytes %llu\n"
                     "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
                     "# TYPE process_virtual_memory_bytes gauge\n"
                     "process_virtual_memory_bytes %llu\n"
                     "# HELP process_start_time_seconds Start time of the process since unix epoch "
                     "in seconds.\n"
                     "# TYPE process_start_time_seconds gauge\n"
                     "process_start_time_seconds %.15g\n"
                     "# HELP process_open_fds Number of open file descriptors.\n"
                     "# TYPE process_open_fds gauge\n"
                     "process_open_fds %ld\n",
                     ps.cpu_seconds, (unsigned long long)ps.resident_bytes,
                     (unsigned long long)ps.virtual_bytes, ps.start_time, ps.open_fds);
    if (rc == 0 && ps.max_fds >= 0) {
        rc = buf_appendf(out,
                         "# HELP process_max_fds Maximum number of open file descriptors.\n"
                         "# TYPE process_max_fds gauge\n"
                         "process_max_fds %ld\n",
                         ps.max_fds);
    }
    return rc;
}
