/* log.c - one line per event on stderr, as text or JSON lines. */
#include "base/log.h"

#include "base/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* A line longer than this is cut; the cut is marked. */
#define LOG_LINE_MAX 8192

/* Read by every thread, changed by a reload: atomic. */
static int g_level = LOG_LEVEL_INFO;
static enum log_format g_format = LOG_FORMAT_TEXT;
static int g_fd = STDERR_FILENO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_setup(enum log_level level, enum log_format format)
{
    __atomic_store_n(&g_level, (int)level, __ATOMIC_RELAXED);
    g_format = format;
}

void log_set_level(enum log_level level)
{
    __atomic_store_n(&g_level, (int)level, __ATOMIC_RELAXED);
}

void log_set_fd(int fd)
{
    g_fd = fd < 0 ? STDERR_FILENO : fd;
}

enum log_level log_get_level(void)
{
    return (enum log_level)__atomic_load_n(&g_level, __ATOMIC_RELAXED);
}

int log_enabled(enum log_level level)
{
    return (int)level <= __atomic_load_n(&g_level, __ATOMIC_RELAXED);
}

int log_level_parse(const char *s, enum log_level *out)
{
    size_t i;

    for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = LOG_LEVEL_WARN;
        return 0;
    }
    return -1;
}

int log_format_parse(const char *s, enum log_format *out)
{
    if (strcasecmp(s, "text") == 0) {
        *out = LOG_FORMAT_TEXT;
        return 0;
    }
    if (strcasecmp(s, "json") == 0) {
        *out = LOG_FORMAT_JSON;
        return 0;
    }
    return -1;
}

const char *log_level_name(enum log_level level)
{
    return level_names[level];
}

static void log_timestamp(char *dst, size_t n)
{
    struct timespec ts;
    struct tm tm;
    size_t len;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    len = strftime(dst, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(dst + len, n - len, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Messages quote the network (AWS and broker error texts): a newline in
 * one would forge a second log line. JSON lines escape them instead. */
static void one_line(char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            s[i] = ' ';
        }
    }
}

void log_write(enum log_level level, const char *binding, const char *fmt, ...)
{
    char msg[LOG_LINE_MAX];
    char stamp[40];
    struct buf line = BUF_INIT(LOG_LINE_MAX * 2);
    va_list ap;
    int n;

    if (!log_enabled(level)) {
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n >= sizeof(msg)) {
        memcpy(msg + sizeof(msg) - 6, "[...]", 6);
        n = (int)sizeof(msg) - 1;
    }
    log_timestamp(stamp, sizeof(stamp));
    if (g_format == LOG_FORMAT_TEXT) {
        one_line(msg, (size_t)n);
    }
    if (g_format == LOG_FORMAT_JSON) {
        buf_appendf(&line, "{\"time\":\"%s\",\"level\":\"%s\"", stamp, level_names[level]);
        if (binding) {
            buf_append_str(&line, ",\"binding\":");
            buf_append_json_str(&line, binding, strlen(binding));
        }
        buf_append_str(&line, ",\"msg\":");
        buf_append_json_str(&line, msg, (size_t)n);
        buf_append_str(&line, "}\n");
    } else {
        buf_appendf(&line, "%s %-5s ", stamp, level_names[level]);
        if (binding) {
            buf_appendf(&line, "[%s] ", binding);
        }
        buf_append(&line, msg, (size_t)n);
        buf_append_char(&line, '\n');
    }
    /* One write per line keeps lines whole across threads. */
    if (line.len && write(g_fd, line.data, line.len) < 0) {
        /* nowhere left to report it */
    }
    buf_free(&line);
}
