/* kubemq_grpc.c - gRPC's rules on top of HTTP/2, without any I/O.
 *
 * Every gRPC message travels behind a 5-byte prefix (a flag byte, 0 for
 * uncompressed, and a big-endian length), even an empty one; a message may
 * span DATA frames and a frame may hold several messages, so they are
 * reassembled here. Also: the grpc-timeout header's format, the
 * percent-encoding of grpc-message, and the texts a failed call reports.
 * Kept apart from the connection code so it can be unit-tested alone. */
#include "kubemq/kubemq_internal.h"

#include "base/hex.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void rx_next(struct kubemq_grpc_rx *rx)
{
    rx->hdr_len = 0;
    rx->msg = NULL;
    rx->len = 0;
    rx->got = 0;
    rx->eager = 0;
    rx->big = 0;
}

void kubemq_grpc_rx_reset(struct kubemq_grpc_rx *rx)
{
    free(rx->msg);
    rx_next(rx);
    rx->consume_now = 0;
    rx->failed = 0;
}

int kubemq_grpc_rx_partial(const struct kubemq_grpc_rx *rx)
{
    return rx->hdr_len > 0;
}

static void rx_emit(struct kubemq_grpc_rx *rx, kubemq_grpc_msg_fn fn, void *ctx)
{
    unsigned char *msg = rx->msg;
    size_t len = rx->len;
    size_t owed = KUBEMQ_PREFIX_LEN + len - rx->eager;

    rx_next(rx);
    fn(ctx, msg, len, owed);
}

/* After snprintf'ing the reason into err. */
static int rx_fail(struct kubemq_grpc_rx *rx, int status)
{
    free(rx->msg);
    rx_next(rx);
    rx->failed = 1;
    return status;
}

int kubemq_grpc_rx_feed(struct kubemq_grpc_rx *rx, const unsigned char *p, size_t n, size_t max,
                        kubemq_grpc_msg_fn fn, void *ctx, char *err, size_t errlen)
{
    size_t take;

    if (rx->failed) {
        return 0; /* the stream is being reset; what still arrives is dropped */
    }
    while (n > 0) {
        if (rx->hdr_len < KUBEMQ_PREFIX_LEN) {
            take = KUBEMQ_PREFIX_LEN - rx->hdr_len;
            take = take < n ? take : n;
            memcpy(rx->hdr + rx->hdr_len, p, take);
            rx->hdr_len += take;
            p += take;
            n -= take;
            if (rx->hdr_len < KUBEMQ_PREFIX_LEN) {
                break;
            }
            if (rx->hdr[0] != 0) {
                snprintf(err, errlen, "received a compressed message (flag %u) but asked for none",
                         (unsigned)rx->hdr[0]);
                return rx_fail(rx, KUBEMQ_STATUS_INTERNAL);
            }
            rx->len = (size_t)rx->hdr[1] << 24 | (size_t)rx->hdr[2] << 16 |
                      (size_t)rx->hdr[3] << 8 | (size_t)rx->hdr[4];
            if (rx->len > max) {
                snprintf(err, errlen, "received message larger than max (%zu vs. %zu)", rx->len,
                         max);
                return rx_fail(rx, KUBEMQ_STATUS_RESOURCE_EXHAUSTED);
            }
            rx->msg = malloc(rx->len ? rx->len : 1);
            if (!rx->msg) {
                snprintf(err, errlen, "out of memory for a %zu-byte message", rx->len);
                return rx_fail(rx, KUBEMQ_STATUS_RESOURCE_EXHAUSTED);
            }
            if (rx->len >= KUBEMQ_EAGER_CONSUME) {
                /* Too large to wait for: the stream window opens as it arrives. */
                rx->big = 1;
                rx->eager = KUBEMQ_PREFIX_LEN;
                rx->consume_now += KUBEMQ_PREFIX_LEN;
            }
            if (rx->len == 0) {
                rx_emit(rx, fn, ctx);
            }
            continue;
        }
        take = rx->len - rx->got;
        take = take < n ? take : n;
        memcpy(rx->msg + rx->got, p, take);
        rx->got += take;
        p += take;
        n -= take;
        if (rx->big) {
            rx->eager += take;
            rx->consume_now += take;
        }
        if (rx->got == rx->len) {
            rx_emit(rx, fn, ctx);
        }
    }
    return 0;
}

void kubemq_grpc_prefix(unsigned char p[KUBEMQ_PREFIX_LEN], size_t len)
{
    p[0] = 0;
    p[1] = (unsigned char)(len >> 24);
    p[2] = (unsigned char)(len >> 16);
    p[3] = (unsigned char)(len >> 8);
    p[4] = (unsigned char)len;
}

void kubemq_grpc_timeout(int64_t ms, char *dst, size_t n)
{
    static const struct {
        int64_t per; /* ms per unit */
        char unit;
    } units[] = {{1, 'm'}, {1000, 'S'}, {60000, 'M'}, {3600000, 'H'}};
    size_t i;
    int64_t v = 1;

    if (ms < 1) {
        ms = 1;
    }
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        /* Rounded up: a server must never give up before we do. */
        v = (ms + units[i].per - 1) / units[i].per;
        if (v <= 99999999) {
            snprintf(dst, n, "%" PRId64 "%c", v, units[i].unit);
            return;
        }
    }
    snprintf(dst, n, "99999999H");
}

void kubemq_grpc_percent_decode(const char *in, size_t len, char *dst, size_t n)
{
    size_t i = 0, o = 0;

    if (n == 0) {
        return;
    }
    while (i < len && o + 1 < n) {
        unsigned char c = (unsigned char)in[i];
        int b = hex_percent_byte(in, len, i);

        if (b >= 0) {
            c = (unsigned char)b;
            i += 3;
        } else {
            i++;
        }
        dst[o++] = (char)(c < 0x20 || c == 0x7f ? ' ' : c);
    }
    dst[o] = '\0';
}

static const char *const status_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *kubemq_grpc_status_name(int status)
{
    if (status >= 0 && (size_t)status < sizeof(status_names) / sizeof(status_names[0])) {
        return status_names[status];
    }
    return NULL;
}

int kubemq_grpc_http_status(int http_status)
{
    switch (http_status) {
    case 400:
        return KUBEMQ_STATUS_INTERNAL;
    case 401:
        return 16; /* UNAUTHENTICATED */
    case 403:
        return 7; /* PERMISSION_DENIED */
    case 404:
        return 12; /* UNIMPLEMENTED */
    case 429:
    case 502:
    case 503:
    case 504:
        return KUBEMQ_STATUS_UNAVAILABLE;
    default:
        return 2; /* UNKNOWN */
    }
}

void kubemq_grpc_status_text(int status, const char *message, const char *address, char *dst,
                             size_t n)
{
    const char *name = kubemq_grpc_status_name(status);

    if (!message) {
        message = "";
    }
    /* KubeMQ's own errors ("Error 301: ...") read best as they are; with
     * another status than INTERNAL the code says more (UNAUTHENTICATED). */
    if (status == KUBEMQ_STATUS_INTERNAL && strncmp(message, "Error ", 6) == 0) {
        snprintf(dst, n, "%s", message);
    } else if (status == KUBEMQ_STATUS_UNAVAILABLE && address) {
        snprintf(dst, n, "kubemq at %s unavailable: %s", address, message);
    } else if (name) {
        snprintf(dst, n, "%s (%d): %s", name, status, message);
    } else {
        snprintf(dst, n, "unknown gRPC status %d: %s", status, message);
    }
}
