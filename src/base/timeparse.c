/* timeparse.c - RFC 3339 timestamps, as AWS writes them. */
#include "base/timeparse.h"

#include <limits.h>
#include <string.h>
#include <time.h>

/* Read exactly n digits. */
static int digits(const char **p, int n, int *out)
{
    int v = 0;

    while (n-- > 0) {
        if (**p < '0' || **p > '9') {
            return -1;
        }
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    *out = v;
    return 0;
}

int timeparse_rfc3339_ns(const char *v, long long *out)
{
    const char *p = v;
    struct tm tm;
    int year, mon, day, hh, mm, ss, oh = 0, om = 0, sign = 0;
    long long frac = 0, scale = 1000000000LL, secs;
    time_t t;

    memset(&tm, 0, sizeof(tm));
    if (digits(&p, 4, &year) || *p++ != '-' || digits(&p, 2, &mon) || *p++ != '-' ||
        digits(&p, 2, &day) || (*p != 'T' && *p != 't' && *p != ' ')) {
        return -1;
    }
    p++;
    if (digits(&p, 2, &hh) || *p++ != ':' || digits(&p, 2, &mm) || *p++ != ':' ||
        digits(&p, 2, &ss)) {
        return -1;
    }
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9') {
            return -1;
        }
        /* Digits past nanoseconds are read and dropped. */
        while (*p >= '0' && *p <= '9') {
            if (scale > 1) {
                scale /= 10;
                frac += (*p - '0') * scale;
            }
            p++;
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '+' ? 1 : -1;
        p++;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59) {
            return -1;
        }
    } else {
        return -1;
    }
    if (*p || mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) {
        return -1;
    }
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    t = timegm(&tm);
    secs = (long long)t - sign * (oh * 3600 + om * 60);
    /* Nanoseconds in 64 bits reach 1677-09-21 to 2262-04-11 only. */
    if (secs >= LLONG_MAX / 1000000000LL || secs <= LLONG_MIN / 1000000000LL) {
        return -1;
    }
    *out = secs * 1000000000LL + frac;
    return 0;
}

int timeparse_rfc3339(const char *v, double *out)
{
    long long ns;

    if (timeparse_rfc3339_ns(v, &ns) < 0) {
        return -1;
    }
    *out = (double)(ns / 1000000000LL) + (double)(ns % 1000000000LL) / 1e9;
    return 0;
}
