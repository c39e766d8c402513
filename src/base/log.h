/* log.h - one line per event on stderr, as text or JSON lines.
 *
 * Every line carries a level and, where there is one, the binding name.
 * Callers never pass secrets or record data here: secrets are redacted
 * before they reach a format string (see settings_redact), and record
 * data is only logged at debug by the log middleware. */
#ifndef KK_BASE_LOG_H
#define KK_BASE_LOG_H

enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
};

enum log_format {
    LOG_FORMAT_TEXT = 0,
    LOG_FORMAT_JSON = 1,
};

void log_setup(enum log_level level, enum log_format format);
/* The level alone, from any thread (a reload changes it while others log). */
void log_set_level(enum log_level level);
/* Redirect output (tests); fd -1 restores stderr. */
void log_set_fd(int fd);
enum log_level log_get_level(void);
int log_enabled(enum log_level level);
/* "error" | "warn" | "info" | "debug" -> 0, else -1. */
int log_level_parse(const char *s, enum log_level *out);
int log_format_parse(const char *s, enum log_format *out);
const char *log_level_name(enum log_level level);

/* binding may be NULL for process-wide lines. */
void log_write(enum log_level level, const char *binding, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(binding, ...) log_write(LOG_LEVEL_ERROR, (binding), __VA_ARGS__)
#define log_warn(binding, ...)  log_write(LOG_LEVEL_WARN, (binding), __VA_ARGS__)
#define log_info(binding, ...)  log_write(LOG_LEVEL_INFO, (binding), __VA_ARGS__)
#define log_debug(binding, ...)                                                                    \
    do {                                                                                           \
        if (log_enabled(LOG_LEVEL_DEBUG))                                                          \
            log_write(LOG_LEVEL_DEBUG, (binding), __VA_ARGS__);                                    \
    } while (0)

#endif
