/* source.h - the KubeMQ source kinds and their settings (SPEC §6).
 *
 * A source kind is a table entry: canonical name, accepted spellings and
 * the settings table that parses a binding's `source.properties` into
 * struct source_options. The subscription hooks (start/stop) are added
 * by the source implementation; the config loader only needs the table. */
#ifndef KK_SOURCE_SOURCE_H
#define KK_SOURCE_SOURCE_H

#include "base/errs.h"
#include "base/settings.h"

#include <jansson.h>

struct source_options {
    char *address;   /* "host:port" or "[v6]:port"; built from host+port when given so */
    char *host;      /* the host part of address */
    long long port;  /* the port part of address */
    char *client_id; /* generated "kubemq-kinesis-<hex>" when not given */
    char *auth_token;
    char *channel;
    char *group;
    int auto_reconnect;
    long long reconnect_interval_seconds;
    long long max_reconnects; /* 0 = unlimited */
    long long sources;        /* parallel KubeMQ connections */
    long long concurrency;    /* in-flight requests per binding */
    int do_not_parse_payload;
    int tls;
    char *ca_file;
    char *cert_file;
    char *key_file;
    long long drain_timeout_seconds;
    /* events, events-store, queue */
    char *response_channel; /* "": replies are not published */
    /* events-store */
    int start_position; /* index into "new_only|first|last|sequence|time|time_delta" */
    long long start_sequence;
    char *start_time; /* RFC 3339 */
    long long start_time_delta_seconds;
    long long start_value; /* derived: what KubeMQ takes for the position */
    /* queue */
    long long batch_size;
    long long wait_timeout;
    long long visibility_seconds;
    long long max_requeue;
    char *dead_letter_queue;
};

/* start_position indexes. */
enum source_start_position {
    SOURCE_START_NEW_ONLY,
    SOURCE_START_FIRST,
    SOURCE_START_LAST,
    SOURCE_START_SEQUENCE,
    SOURCE_START_TIME,
    SOURCE_START_TIME_DELTA,
};

struct source_kind {
    const char *kind;           /* canonical: "kubemq.query" */
    const char *const *aliases; /* NULL-terminated */
    const struct settings_entry *settings;
    const char *description; /* one line for the README */
};

/* The kind for a canonical name or alias; NULL when unknown. */
const struct source_kind *source_kind_find(const char *name);
/* Kinds SPEC §6 names but this build does not have yet (none now). */
int source_kind_is_planned(const char *name);
/* "kubemq.query (also source.kubemq.query, source.query), ..." */
const char *source_kind_names(void);
/* All kinds, NULL-terminated. */
const struct source_kind *const *source_kinds(void);

/* Parse and check props (NULL = none) into o: every problem is one line
 * "<where>: <key>: <rule>" in errs. Returns 0 when none was added. o must
 * be zeroed; free it with source_options_free either way. */
int source_options_load(const struct source_kind *k, const json_t *props, struct source_options *o,
                        const char *where, struct errs *errs);
void source_options_free(const struct source_kind *k, struct source_options *o);

#endif
