/* procstat.h - the process's own resource use from /proc/self, for the
 * standard Prometheus process_* metrics. */
#ifndef KK_BASE_PROCSTAT_H
#define KK_BASE_PROCSTAT_H

#include "base/buf.h"

#include <stdint.h>

struct procstat {
    double cpu_seconds;      /* user + system */
    uint64_t resident_bytes; /* RSS */
    uint64_t virtual_bytes;
    double start_time; /* seconds since the Unix epoch */
    long open_fds;     /* entries in /proc/self/fd */
    long max_fds;      /* soft RLIMIT_NOFILE, -1 when unlimited */
};

/* Fill ps. Returns 0, or -1 when /proc cannot be read. */
int procstat_read(struct procstat *ps);
/* Append process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_start_time_seconds,
 * process_open_fds and process_max_fds as Prometheus text. Returns 0, or
 * -1 when /proc cannot be read or out is full. */
int procstat_render_prometheus(struct buf *out);

#endif
