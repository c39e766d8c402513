/* source.c - the registry of KubeMQ source kinds and their settings. */
#include "source/source.h"
#include "source/source_internal.h"

#include "base/random.h"
#include "base/timeparse.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OPT(field) offsetof(struct source_options, field)

/* Every kind's settings: kubemq-targets' common source properties, plus
 * host/port of the older connector style, TLS and the bounds that
 * connector lacked. One entry a line or two (name, type, default, flags,
 * min, max, choices, field, alias of, description); clang-format would
 * spread a macro's entries over one value a line. */
/* clang-format off */
#define CONN_SETTINGS \
    {"address", SETTINGS_STRING, "", 0, 0, 0, NULL, OPT(address), NULL, \
     "KubeMQ gRPC address `host:port` (IPv6: `[::1]:50000`); give this or `host` + `port`"}, \
    {"host", SETTINGS_STRING, "", 0, 0, 0, NULL, OPT(host), NULL, \
     "KubeMQ host, with `port` (older connector style), instead of `address`"}, \
    {"port", SETTINGS_INT, NULL, 0, 1, 65535, NULL, OPT(port), NULL, \
     "KubeMQ gRPC port, with `host`"}, \
    {"channel", SETTINGS_STRING, NULL, SETTINGS_REQUIRED, 0, 0, NULL, OPT(channel), NULL, \
     "channel to subscribe to"},

#define GROUP_SETTING \
    {"group", SETTINGS_STRING, "", 0, 0, 0, NULL, OPT(group), NULL, \
     "subscription group: the members of a group share the messages (scale-out)"},

#define COMMON_SETTINGS \
    {"client_id", SETTINGS_STRING, "", 0, 0, 0, NULL, OPT(client_id), NULL, \
     "client id; empty: `kubemq-kinesis-<random hex>`; with `sources` > 1 each connection " \
     "gets `-<i>` appended"}, \
    {"auth_token", SETTINGS_STRING, "", SETTINGS_SECRET, 0, 0, NULL, OPT(auth_token), NULL, \
     "KubeMQ JWT, sent as the gRPC `authorization` metadata"}, \
    {"auto_reconnect", SETTINGS_BOOL, "true", 0, 0, 0, NULL, OPT(auto_reconnect), NULL, \
     "reconnect and resubscribe when the broker goes away"}, \
    {"reconnect_interval_seconds", SETTINGS_INT, "1", 0, 0, 86400, NULL, \
     OPT(reconnect_interval_seconds), NULL, "seconds between reconnect attempts"}, \
    {"max_reconnects", SETTINGS_INT, "0", 0, 0, 2147483647, NULL, OPT(max_reconnects), NULL, \
     "reconnect attempts before giving up; 0 = unlimited"}, \
    {"sources", SETTINGS_INT, "1", 0, 1, 1024, NULL, OPT(sources), NULL, \
     "parallel KubeMQ connections (subscriptions) for this binding"}, \
    {"concurrency", SETTINGS_INT, "64", 0, 1, 100000, NULL, OPT(concurrency), NULL, \
     "requests in flight per binding; more wait in the broker"}, \
    {"do_not_parse_payload", SETTINGS_BOOL, "false", 0, 0, 0, NULL, OPT(do_not_parse_payload), \
     NULL, "the whole message body is the data; metadata comes from the binding's `metadata`"}, \
    {"tls", SETTINGS_BOOL, "false", 0, 0, 0, NULL, OPT(tls), NULL, "connect to KubeMQ with TLS"}, \
    {"ca_file", SETTINGS_STRING, "", 0, 0, 0, NULL, OPT(ca_file), NULL, \
     "PEM CA bundle to verify the broker (with `tls`); empty: the system's"}, \
    {"cert_file", SETTINGS_STRING, "", 0, 0, 0, NULL, OPT(cert_file), NULL, \
     "PEM client certificate for mutual TLS (with `key_file`)"}, \
    {"key_file", SETTINGS_STRING, "", 0, 0, 0, NULL, OPT(key_file), NULL, \
     "PEM private key of `cert_file`"}, \
    {"drain_timeout_seconds", SETTINGS_INT, "30", 0, 0, 3600, NULL, \
     OPT(drain_timeout_seconds), NULL, \
     "on shutdown, how long in-flight requests may still finish"},

#define RESPONSE_CHANNEL_SETTING(what) \
    {"response_channel", SETTINGS_STRING, "", 0, 0, 0, NULL, OPT(response_channel), NULL, \
     "when set, the reply envelope is published to this channel as " what}

#define END_SETTINGS {NULL, 0, NULL, 0, 0, 0, NULL, 0, NULL, NULL}

/* Subscription kinds: what waits for a slot when `concurrency` are running. */
#define PENDING_SETTINGS(full) \
    {"max_pending", SETTINGS_INT, "10000", 0, 1, 10000000, NULL, OPT(max_pending), NULL, \
     "requests taken from the broker that may wait for a free slot (beyond `concurrency`); " \
     "when full, " full}, \
    {"max_pending_bytes", SETTINGS_INT, "67108864", 0, 1, 4294967296LL, NULL, \
     OPT(max_pending_bytes), NULL, \
     "bytes of message bodies that may wait for a slot; whichever of the two limits comes " \
     "first applies"},

static const struct settings_entry subscribe_settings[] = {
    CONN_SETTINGS
    GROUP_SETTING
    COMMON_SETTINGS
    PENDING_SETTINGS("a request is answered at once with an over-capacity error; one whose own "
                     "timeout passed while it waited is dropped unrun")
    END_SETTINGS,
};

static const struct settings_entry events_settings[] = {
    CONN_SETTINGS
    GROUP_SETTING
    COMMON_SETTINGS
    RESPONSE_CHANNEL_SETTING("an event"),
    PENDING_SETTINGS("further events are dropped, counted in "
                     "`kubemq_kinesis_source_dropped_total` and logged")
    END_SETTINGS,
};

static const struct settings_entry events_store_settings[] = {
    CONN_SETTINGS
    GROUP_SETTING
    COMMON_SETTINGS
    RESPONSE_CHANNEL_SETTING("an events-store message"),
    PENDING_SETTINGS("the subscription pauses and resumes where it stopped once there is room, "
                     "so nothing is lost or repeated")
    {"start_position", SETTINGS_ENUM, "new_only", 0, 0, 0,
     "new_only|first|last|sequence|time|time_delta", OPT(start_position), NULL,
     "where the subscription starts: `new_only` (kubemq-targets' only choice), `first` (the "
     "whole history), `last` (the last stored message), `sequence` (`start_sequence`), `time` "
     "(`start_time`), `time_delta` (`start_time_delta_seconds` ago). After a reconnect the "
     "subscription goes on after the last message it received"},
    {"start_sequence", SETTINGS_INT, "0", 0, 0, 9223372036854775807LL, NULL, OPT(start_sequence),
     NULL, "with `start_position: sequence`: the first sequence to receive (>= 1)"},
    {"start_time", SETTINGS_STRING, "", 0, 0, 0, NULL, OPT(start_time), NULL,
     "with `start_position: time`: RFC 3339 time, e.g. `2026-01-02T15:04:05Z`"},
    {"start_time_delta_seconds", SETTINGS_INT, "0", 0, 0, 315360000, NULL,
     OPT(start_time_delta_seconds), NULL,
     "with `start_position: time_delta`: how many seconds back to start (>= 1)"},
    {"checkpoint", SETTINGS_ENUM, "off", 0, 0, 0, "off|kubemq|file", OPT(checkpoint), NULL,
     "keep the position across restarts: `kubemq` (events-store messages on "
     "`checkpoint_channel`), `file` (`checkpoint_file`) or `off` (empty: each start begins at "
     "`start_position`). A start resumes after the checkpoint; `start_position` applies only "
     "without one. At-least-once across crashes, exactly once across clean stops. Needs "
     "`sources: 1` and no `group`"},
    {"checkpoint_channel", SETTINGS_STRING, "", 0, 0, 0, NULL, OPT(checkpoint_channel), NULL,
     "with `checkpoint: kubemq`: the events-store channel of the checkpoints (one message per "
     "write, naming the binding and its channel, so bindings may share one); empty: "
     "`<channel>.checkpoint`"},
    {"checkpoint_file", SETTINGS_STRING, "", 0, 0, 0, NULL, OPT(checkpoint_file), NULL,
     "with `checkpoint: file`: the checkpoint's file, one per binding, replaced atomically "
     "(its directory must exist and be writable)"},
    {"checkpoint_interval_ms", SETTINGS_INT, "1000", 0, 10, 3600000, NULL,
     OPT(checkpoint_interval_ms), NULL,
     "with `checkpoint`: how often it is written when it moved (and once more at a stop); a "
     "crash repeats at most what was answered since"},
    END_SETTINGS,
};

static const struct settings_entry queue_settings[] = {
    CONN_SETTINGS
    COMMON_SETTINGS
    RESPONSE_CHANNEL_SETTING("a queue message"),
    {"batch_size", SETTINGS_INT, "1", 0, 1, 1024, NULL, OPT(batch_size), NULL,
     "messages taken per pull and connection (each is acknowledged on its own)"},
    {"wait_timeout", SETTINGS_INT, "5", 0, 1, 3600, NULL, OPT(wait_timeout), NULL,
     "seconds a pull waits for a message"},
    {"visibility_seconds", SETTINGS_INT, "30", 0, 1, 43200, NULL, OPT(visibility_seconds), NULL,
     "seconds a taken message stays invisible to others; a message not settled by then goes "
     "back to the queue"},
    {"max_requeue", SETTINGS_INT, "3", 0, 0, 1000000, NULL, OPT(max_requeue), NULL,
     "failed attempts that return a message to the queue; the next failure moves it to "
     "`dead_letter_queue` (without one it keeps returning to the queue, logged as an error)"},
    {"dead_letter_queue", SETTINGS_STRING, "", 0, 0, 0, NULL, OPT(dead_letter_queue), NULL,
     "queue that receives messages that failed `max_requeue` + 1 times"},
    END_SETTINGS,
};
/* clang-format on */

static const struct source_kind table[] = {
    {"kubemq.query", (const char *const[]){"source.kubemq.query", "source.query", NULL},
     subscribe_settings, "subscribes to queries; the reply carries the response envelope",
     &source_query_ops},
    {"kubemq.command", (const char *const[]){"source.kubemq.command", "source.command", NULL},
     subscribe_settings, "subscribes to commands; the reply says executed or not, with the error",
     &source_command_ops},
    {"kubemq.events", (const char *const[]){"source.kubemq.events", "source.events", NULL},
     events_settings, "subscribes to events; the reply envelope goes to `response_channel` if set",
     &source_events_ops},
    {"kubemq.events-store",
     (const char *const[]){"source.kubemq.events-store", "source.events-store", NULL},
     events_store_settings, "subscribes to stored events from `start_position`; replies as events",
     &source_events_store_ops},
    {"kubemq.queue", (const char *const[]){"source.kubemq.queue", "source.queue", NULL},
     queue_settings,
     "pulls queue messages; acknowledged only after the target succeeded, failures requeued, "
     "then dead-lettered",
     &source_queue_ops},
};

static const struct source_kind *const kinds[] = {&table[0], &table[1], &table[2],
                                                  &table[3], &table[4], NULL};

const struct source_kind *const *source_kinds(void)
{
    return kinds;
}

const struct source_kind *source_kind_find(const char *name)
{
    size_t i, j;

    for (i = 0; kinds[i]; i++) {
        if (strcmp(kinds[i]->kind, name) == 0) {
            return kinds[i];
        }
        for (j = 0; kinds[i]->aliases[j]; j++) {
            if (strcmp(kinds[i]->aliases[j], name) == 0) {
                return kinds[i];
            }
        }
    }
    return NULL;
}

/* key has a value in props (an empty one means "not given"). */
static int given(const json_t *props, const char *key)
{
    const json_t *v = json_is_object(props) ? json_object_get(props, key) : NULL;

    return v && !json_is_null(v) && !(json_is_string(v) && !*json_string_value(v));
}

/* "h:p" or "[v6]:p" into o->host and o->port. */
static int split_address(struct source_options *o, const char *where, struct errs *errs)
{
    const char *a = o->address, *colon;
    size_t hostlen;
    long long port;
    char *host;

    if (a[0] == '[') {
        const char *close = strchr(a, ']');
        if (!close || close[1] != ':') {
            errs_add(errs, "%s: address: must be [ipv6]:port, e.g. [::1]:50000, got \"%s\"", where,
                     a);
            return -1;
        }
        a++;
        hostlen = (size_t)(close - a);
        colon = close + 1;
    } else {
        colon = strrchr(a, ':');
        if (!colon) {
            errs_add(errs, "%s: address: must be host:port, e.g. kubemq-cluster:50000, got \"%s\"",
                     where, a);
            return -1;
        }
        if (strchr(a, ':') != colon) {
            errs_add(errs,
                     "%s: address: an IPv6 address goes in brackets, e.g. [::1]:50000, got \"%s\"",
                     where, a);
            return -1;
        }
        hostlen = (size_t)(colon - a);
    }
    if (hostlen == 0 || strcspn(a, " \t\r\n") < hostlen) {
        errs_add(errs, "%s: address: no valid host in \"%s\"", where, o->address);
        return -1;
    }
    if (settings_parse_int(colon + 1, 1, 65535, &port) < 0) {
        errs_add(errs, "%s: address: the port must be an integer from 1 to 65535, got \"%s\"",
                 where, o->address);
        return -1;
    }
    host = strndup(a, hostlen);
    if (!host) {
        errs_add(errs, "%s: address: out of memory", where);
        return -1;
    }
    free(o->host);
    o->host = host;
    o->port = port;
    return 0;
}

/* host + port (the older connector style) into o->address. */
static int join_address(struct source_options *o, const char *where, struct errs *errs)
{
    char buf[300];
    const char *h = o->host;
    size_t n = strlen(h);
    int v6 = strchr(h, ':') != NULL;
    char *addr;

    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++;
        n -= 2;
        v6 = 1;
    }
    if (n == 0 || strcspn(h, " \t\r\n[]") < n) {
        errs_add(errs, "%s: host: must be a host name or address, got \"%s\"", where, o->host);
        return -1;
    }
    if (v6 && memchr(h, ':', n) == memrchr(h, ':', n)) {
        errs_add(errs, "%s: host: must not carry a port; give the port in port", where);
        return -1;
    }
    if (snprintf(buf, sizeof(buf), v6 ? "[%.*s]:%lld" : "%.*s:%lld", (int)n, h, o->port) >=
        (int)sizeof(buf)) {
        errs_add(errs, "%s: host: longer than 255 characters", where);
        return -1;
    }
    addr = strdup(buf);
    if (!addr) {
        errs_add(errs, "%s: host: out of memory", where);
        return -1;
    }
    free(o->address);
    o->address = addr;
    if (h != o->host) { /* drop the brackets */
        memmove(o->host, h, n);
        o->host[n] = '\0';
    }
    return 0;
}

static int check_address(struct source_options *o, const json_t *props, const char *where,
                         struct errs *errs)
{
    int has_addr = *o->address != '\0', has_host = *o->host != '\0';
    int has_port = given(props, "port");

    if (has_addr && (has_host || has_port)) {
        errs_add(errs, "%s: address: give either address or host + port, not both", where);
        return -1;
    }
    if (has_addr) {
        return split_address(o, where, errs);
    }
    if (!has_host && !has_port) {
        errs_add(errs, "%s: address: is required (host:port, e.g. kubemq-cluster:50000)", where);
        return -1;
    }
    if (!has_host) {
        errs_add(errs, "%s: host: is required with port (or give address instead)", where);
        return -1;
    }
    if (!has_port) {
        errs_add(errs, "%s: port: is required with host (or give address instead)", where);
        return -1;
    }
    if (o->port == 0) {
        return -1; /* a bad port was reported by the table */
    }
    return join_address(o, where, errs);
}

static void check_file(const char *key, const char *path, const char *where, struct errs *errs)
{
    if (*path && access(path, R_OK) < 0) {
        errs_add(errs, "%s: %s: cannot read \"%s\": %s", where, key, path, strerror(errno));
    }
}

static int check_tls(const struct source_options *o, const char *where, struct errs *errs)
{
    int before = errs->count;

    if (!o->tls && (*o->ca_file || *o->cert_file || *o->key_file)) {
        errs_add(errs, "%s: tls: ca_file, cert_file and key_file need tls: \"true\"", where);
    }
    if (!*o->cert_file != !*o->key_file) {
        errs_add(errs, "%s: %s: is required with %s (mutual TLS needs both)", where,
                 *o->cert_file ? "key_file" : "cert_file",
                 *o->cert_file ? "cert_file" : "key_file");
    }
    check_file("ca_file", o->ca_file, where, errs);
    check_file("cert_file", o->cert_file, where, errs);
    check_file("key_file", o->key_file, where, errs);
    return errs->count == before ? 0 : -1;
}

static int default_client_id(struct source_options *o, const char *where, struct errs *errs)
{
    char id[64] = "kubemq-kinesis-";

    random_hex(id + strlen(id), 8);
    free(o->client_id);
    o->client_id = strdup(id);
    if (!o->client_id) {
        errs_add(errs, "%s: client_id: out of memory", where);
        return -1;
    }
    return 0;
}

/* The events-store start position and its one value. */
static void check_start(struct source_options *o, const json_t *props, const char *where,
                        struct errs *errs)
{
    static const char *const value_key[] = {
        NULL, NULL, NULL, "start_sequence", "start_time", "start_time_delta_seconds"};
    static const char *const keys[] = {"start_sequence", "start_time", "start_time_delta_seconds"};
    int pos = o->start_position;
    size_t i;

    if (pos < 0 || pos > SOURCE_START_TIME_DELTA || !o->start_time) {
        return; /* reported by the table */
    }
    for (i = 0; i < 3; i++) {
        if (given(props, keys[i]) && (!value_key[pos] || strcmp(value_key[pos], keys[i]) != 0)) {
            errs_add(errs, "%s: %s: only applies with start_position: %s", where, keys[i],
                     i == 0   ? "sequence"
                     : i == 1 ? "time"
                              : "time_delta");
        }
    }
    switch (pos) {
    case SOURCE_START_SEQUENCE:
        if (o->start_sequence < 1) {
            errs_add(errs, "%s: start_sequence: is required (>= 1) with start_position: sequence",
                     where);
        }
        o->start_value = o->start_sequence;
        break;
    case SOURCE_START_TIME:
        if (!*o->start_time) {
            errs_add(errs, "%s: start_time: is required (RFC 3339) with start_position: time",
                     where);
        } else if (timeparse_rfc3339_ns(o->start_time, &o->start_value) < 0 ||
                   o->start_value <= 0) {
            errs_add(errs,
                     "%s: start_time: must be an RFC 3339 time after 1970, e.g. "
                     "2026-01-02T15:04:05Z, got \"%s\"",
                     where, o->start_time);
        }
        break;
    case SOURCE_START_TIME_DELTA:
        if (o->start_time_delta_seconds < 1) {
            errs_add(errs,
                     "%s: start_time_delta_seconds: is required (>= 1) with start_position: "
                     "time_delta",
                     where);
        }
        o->start_value = o->start_time_delta_seconds;
        break;
    default:
        o->start_value = 0;
        break;
    }
}

static const char *const checkpoint_keys[] = {"checkpoint", "checkpoint_channel", "checkpoint_file",
                                              "checkpoint_interval_ms", NULL};

/* The checkpoint on another kind: said once, in its own words, and the
 * keys taken out of what the table sees (no "unknown property" too).
 * Returns the properties to apply (a new reference). */
static json_t *without_checkpoint(const struct source_kind *k, const json_t *props,
                                  const char *where, struct errs *errs)
{
    json_t *copy;
    size_t i;
    int found = 0;

    if (!json_is_object(props)) {
        return json_incref((json_t *)props);
    }
    for (i = 0; checkpoint_keys[i]; i++) {
        found |= json_object_get(props, checkpoint_keys[i]) != NULL;
    }
    if (!found) {
        return json_incref((json_t *)props);
    }
    copy = json_copy((json_t *)props);
    if (!copy) {
        errs_add(errs, "%s: checkpoint: out of memory", where);
        return json_incref((json_t *)props);
    }
    for (i = 0; checkpoint_keys[i]; i++) {
        if (given(props, checkpoint_keys[i])) {
            errs_add(errs,
                     "%s: %s: only applies to kubemq.events-store (this source is %s, whose "
                     "position is not kept by a checkpoint)",
                     where, checkpoint_keys[i], k->kind);
        }
        json_object_del(copy, checkpoint_keys[i]);
    }
    return copy;
}

/* The checkpoint of an events-store source. */
static void check_checkpoint(struct source_options *o, const json_t *props, const char *where,
                             struct errs *errs)
{
    size_t n;

    if (!o->channel || !o->checkpoint_channel || !o->checkpoint_file) {
        return; /* reported by the table */
    }
    if (o->checkpoint == SOURCE_CHECKPOINT_OFF) {
        if (given(props, "checkpoint_channel") || given(props, "checkpoint_file") ||
            given(props, "checkpoint_interval_ms")) {
            errs_add(errs, "%s: %s: only applies with checkpoint: kubemq or file", where,
                     given(props, "checkpoint_channel") ? "checkpoint_channel"
                     : given(props, "checkpoint_file")  ? "checkpoint_file"
                                                        : "checkpoint_interval_ms");
        }
        return;
    }
    if (o->group && *o->group) {
        errs_add(errs,
                 "%s: checkpoint: cannot be used with a group (its members take different "
                 "messages; one checkpoint cannot describe them)",
                 where);
    }
    if (o->sources > 1) {
        errs_add(errs,
                 "%s: checkpoint: needs sources: 1, got %lld (several connections share the "
                 "messages in a generated group; one checkpoint cannot describe them)",
                 where, o->sources);
    }
    if (o->checkpoint == SOURCE_CHECKPOINT_FILE && given(props, "checkpoint_channel")) {
        errs_add(errs, "%s: checkpoint_channel: only applies with checkpoint: kubemq", where);
    }
    if (o->checkpoint == SOURCE_CHECKPOINT_KUBEMQ && given(props, "checkpoint_file")) {
        errs_add(errs, "%s: checkpoint_file: only applies with checkpoint: file", where);
    }
    if (o->checkpoint == SOURCE_CHECKPOINT_FILE) {
        struct stat st;
        char dir[4096];
        const char *slash = strrchr(o->checkpoint_file, '/');

        if (!*o->checkpoint_file) {
            errs_add(errs, "%s: checkpoint_file: is required with checkpoint: file", where);
            return;
        }
        if (stat(o->checkpoint_file, &st) == 0 && S_ISDIR(st.st_mode)) {
            errs_add(errs, "%s: checkpoint_file: \"%s\" is a directory; name a file in it", where,
                     o->checkpoint_file);
            return;
        }
        if (!slash) {
            snprintf(dir, sizeof(dir), ".");
        } else {
            snprintf(dir, sizeof(dir), "%.*s",
                     slash == o->checkpoint_file ? 1 : (int)(slash - o->checkpoint_file),
                     o->checkpoint_file);
        }
        if (access(dir, W_OK | X_OK) < 0) {
            errs_add(errs, "%s: checkpoint_file: its directory \"%s\" is not writable: %s", where,
                     dir, strerror(errno));
        }
        return;
    }
    if (!*o->checkpoint_channel) {
        char *def;

        n = strlen(o->channel) + sizeof(".checkpoint");
        def = malloc(n);
        if (!def) {
            errs_add(errs, "%s: checkpoint_channel: out of memory", where);
            return;
        }
        snprintf(def, n, "%s.checkpoint", o->channel);
        free(o->checkpoint_channel);
        o->checkpoint_channel = def;
    }
    if (strcspn(o->checkpoint_channel, " \t\r\n*>") != strlen(o->checkpoint_channel)) {
        errs_add(errs,
                 "%s: checkpoint_channel: must be one channel, without whitespace or "
                 "wildcards (* >), got \"%s\"",
                 where, o->checkpoint_channel);
    } else if (strcmp(o->checkpoint_channel, o->channel) == 0) {
        errs_add(errs,
                 "%s: checkpoint_channel: must differ from channel (the checkpoints would be "
                 "taken as requests)",
                 where);
    } else if (o->response_channel && strcmp(o->checkpoint_channel, o->response_channel) == 0) {
        errs_add(errs,
                 "%s: checkpoint_channel: must differ from response_channel (the replies would "
                 "bury the checkpoints)",
                 where);
    }
}

int source_options_load(const struct source_kind *k, const json_t *props, struct source_options *o,
                        const char *where, struct errs *errs)
{
    int before = errs->count;
    json_t *own = NULL;
    int rc;

    if (k->settings != events_store_settings) {
        own = without_checkpoint(k, props, where, errs);
        props = own;
    }
    rc = settings_apply(k->settings, props, o, where, errs);
    if (rc < 0 && !o->address) {
        json_decref(own);
        return -1; /* the table did not get far enough to check more */
    }
    if (o->address && o->host) {
        check_address(o, props, where, errs);
    }
    if (o->channel && strcspn(o->channel, " \t\r\n") != strlen(o->channel)) {
        errs_add(errs, "%s: channel: must not contain whitespace", where);
    }
    if (o->ca_file && o->cert_file && o->key_file) {
        check_tls(o, where, errs);
    }
    if (o->client_id && !*o->client_id) {
        default_client_id(o, where, errs);
    }
    if (k->settings == events_store_settings) {
        check_start(o, props, where, errs);
        check_checkpoint(o, props, where, errs);
    }
    if (k->settings == queue_settings && o->sources * o->batch_size > 1024) {
        /* One stream per message in flight. */
        errs_add(errs, "%s: batch_size: sources x batch_size must be at most 1024, got %lld x %lld",
                 where, o->sources, o->batch_size);
    }
    json_decref(own);
    return errs->count == before ? 0 : -1;
}

void source_options_free(const struct source_kind *k, struct source_options *o)
{
    if (k && o) {
        settings_free(k->settings, o);
    }
}
