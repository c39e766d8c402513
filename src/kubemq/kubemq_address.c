/* kubemq_address.c - the broker address as configured: "host:port" or "[v6]:port". */
#include "kubemq/kubemq_internal.h"

#include <stdio.h>
#include <string.h>

int kubemq_address_split(const char *address, char *host, size_t hostlen, char *port,
                         size_t portlen, char *err, size_t errlen)
{
    const char *h, *colon, *p;
    size_t hn;
    long v = 0;

    if (!address || !address[0]) {
        snprintf(err, errlen, "kubemq address is empty");
        return -1;
    }
    if (address[0] == '[') {
        const char *end = strchr(address, ']');

        if (!end || end[1] != ':') {
            snprintf(err, errlen, "kubemq address '%s' is not [ipv6]:port", address);
            return -1;
        }
        h = address + 1;
        hn = (size_t)(end - h);
        p = end + 2;
    } else {
        colon = strrchr(address, ':');
        if (!colon) {
            snprintf(err, errlen, "kubemq address '%s' is not host:port", address);
            return -1;
        }
        h = address;
        hn = (size_t)(colon - address);
        p = colon + 1;
        if (memchr(h, ':', hn)) {
            snprintf(err, errlen,
                     "kubemq address '%s': write an IPv6 address in brackets, [::1]:50000",
                     address);
            return -1;
        }
    }
    if (hn == 0 || hn >= hostlen) {
        snprintf(err, errlen, "kubemq address '%s' has no usable host", address);
        return -1;
    }
    if (!p[0] || strlen(p) > 5 || strlen(p) >= portlen) {
        snprintf(err, errlen, "kubemq address '%s' has no valid port", address);
        return -1;
    }
    for (colon = p; *colon; colon++) {
        if (*colon < '0' || *colon > '9') {
            snprintf(err, errlen, "kubemq address '%s' has no valid port", address);
            return -1;
        }
        v = v * 10 + (*colon - '0');
    }
    if (v < 1 || v > 65535) {
        snprintf(err, errlen, "kubemq address '%s': port must be between 1 and 65535", address);
        return -1;
    }
    memcpy(host, h, hn);
    host[hn] = '\0';
    snprintf(port, portlen, "%s", p);
    return 0;
}
