/* aws_creds_profile.c - credentials from the shared files' profile.
 *
 * ~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE) has sections [name];
 * ~/.aws/config (AWS_CONFIG_FILE) has [profile name] and [default]. The
 * profile is AWS_PROFILE, else AWS_DEFAULT_PROFILE, else "default". As in
 * the SDKs, a key in the credentials file wins over the same key in the
 * config file. Comments start a line with '#' or ';', or follow a value
 * after whitespace; indented lines under an empty key are sub-properties. */
#include "aws/aws_creds_internal.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PROFILE_MAX_FILE ((size_t)1 << 20)

enum { K_AK, K_SK, K_TOKEN, K_PROCESS, K_ROLE, K_SSO, K_COUNT };

static const char *const keys[K_COUNT] = {
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "credential_process",
    "role_arn",          "sso_session",
};

struct profile {
    char *v[K_COUNT];
    int found; /* the section exists */
};

static void profile_free(struct profile *p)
{
    int i;

    for (i = 0; i < K_COUNT; i++) {
        if (p->v[i]) {
            OPENSSL_cleanse(p->v[i], strlen(p->v[i]));
            free(p->v[i]);
            p->v[i] = NULL;
        }
    }
}

static const char *profile_name(void)
{
    const char *p = getenv("AWS_PROFILE");

    if (!p || !*p) {
        p = getenv("AWS_DEFAULT_PROFILE");
    }
    return p && *p ? p : "default";
}

void aws_creds_profile_label(char *out, size_t len)
{
    snprintf(out, len, "profile \"%s\"", profile_name());
}

/* The file's path: the variable's value ("~/" expanded), else
 * $HOME/.aws/<name>. 0, or -1 when there is no HOME to look in. */
static int file_path(const char *var, const char *name, char *out, size_t len)
{
    const char *v = getenv(var), *home = getenv("HOME");
    int n;

    if (v && *v) {
        if (v[0] == '~' && v[1] == '/' && home && *home) {
            n = snprintf(out, len, "%s%s", home, v + 1);
        } else {
            n = snprintf(out, len, "%s", v);
        }
    } else if (home && *home) {
        n = snprintf(out, len, "%s/.aws/%s", home, name);
    } else {
        return -1;
    }
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

static char *trim(char *s, char *end)
{
    while (s < end && isspace((unsigned char)*s)) {
        s++;
    }
    while (end > s && isspace((unsigned char)end[-1])) {
        end--;
    }
    *end = '\0';
    return s;
}

/* Whether the section header's text names our profile. */
static int section_matches(const char *sec, const char *name, int config_file)
{
    if (!config_file) {
        return !strcmp(sec, name);
    }
    if (!strcmp(name, "default") && !strcmp(sec, "default")) {
        return 1;
    }
    if (strncmp(sec, "profile", 7) || !isspace((unsigned char)sec[7])) {
        return 0;
    }
    sec += 7;
    while (isspace((unsigned char)*sec)) {
        sec++;
    }
    return !strcmp(sec, name);
}

static int set_key(struct profile *p, const char *k, const char *v)
{
    int i;

    for (i = 0; i < K_COUNT; i++) {
        if (!strcasecmp(k, keys[i])) {
            if (p->v[i]) {
                OPENSSL_cleanse(p->v[i], strlen(p->v[i]));
                free(p->v[i]);
            }
            p->v[i] = strdup(v);
            return p->v[i] ? 0 : -1;
        }
    }
    return 0;
}

/* Parse text (NUL-terminated, modified in place) for the profile. */
static int parse(char *text, const char *name, int config_file, struct profile *p)
{
    char *line = text, *next, *eq, *k, *v, *c;
    int in = 0, prev_empty = 0;

    for (; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) {
            *next++ = '\0';
        }
        c = line;
        while (*c == ' ' || *c == '\t') {
            c++;
        }
        if (!*c || *c == '#' || *c == ';' || *c == '\r') {
            continue;
        }
        if (*c == '[') {
            char *close = strchr(c, ']');

            prev_empty = 0;
            in = close && section_matches(trim(c + 1, close), name, config_file);
            p->found |= in;
            continue;
        }
        if (c != line && prev_empty) {
            continue; /* a sub-property ("s3 =" then indented lines) */
        }
        eq = strchr(c, '=');
        if (!eq) {
            continue;
        }
        k = trim(c, eq);
        v = eq + 1;
        /* an inline comment needs whitespace before it */
        for (c = v; *c; c++) {
            if ((*c == '#' || *c == ';') && c > v && isspace((unsigned char)c[-1])) {
                *c = '\0';
                break;
            }
        }
        v = trim(v, v + strlen(v));
        prev_empty = !*v;
        if (in && *v && set_key(p, k, v) < 0) {
            return -1;
        }
    }
    return 0;
}

/* 1 read, 0 no such file, -1 unreadable (why). */
static int read_profile(const char *path, const char *name, int config_file, struct profile *p,
                        char *why, size_t whylen)
{
    struct buf b = BUF_INIT(PROFILE_MAX_FILE);
    int rc = 1;

    if (buf_append_file(&b, path, why, whylen) < 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            why[0] = '\0';
            rc = 0;
        } else {
            rc = -1;
        }
    }
    if (rc > 0 && b.data && parse(b.data, name, config_file, p) < 0) {
        snprintf(why, whylen, "out of memory");
        rc = -1;
    }
    if (b.data) {
        OPENSSL_cleanse(b.data, b.cap);
    }
    buf_free(&b);
    return rc;
}

int aws_creds_profile_load(struct aws_creds *out, char **process, char *why, size_t whylen)
{
    const char *name = profile_name();
    const char *explicit_name = getenv("AWS_PROFILE");
    char cred_path[1024], conf_path[1024];
    struct profile cred, conf, *from;
    int have_cred = 0, have_conf = 0, rc = 0, i;

    memset(out, 0, sizeof(*out));
    memset(&cred, 0, sizeof(cred));
    memset(&conf, 0, sizeof(conf));
    *process = NULL;
    why[0] = '\0';
    if (!explicit_name || !*explicit_name) {
        explicit_name = getenv("AWS_DEFAULT_PROFILE");
    }
    if (file_path("AWS_SHARED_CREDENTIALS_FILE", "credentials", cred_path, sizeof(cred_path)) ==
        0) {
        have_cred = read_profile(cred_path, name, 0, &cred, why, whylen);
    }
    if (have_cred >= 0 &&
        file_path("AWS_CONFIG_FILE", "config", conf_path, sizeof(conf_path)) == 0) {
        have_conf = read_profile(conf_path, name, 1, &conf, why, whylen);
    }
    if (have_cred < 0 || have_conf < 0) {
        char msg[1200];

        snprintf(msg, sizeof(msg), "aws credentials: profile \"%s\": %s", name, why);
        snprintf(why, whylen, "%s", msg);
        rc = -1;
        goto out;
    }
    if (!have_cred && !have_conf) {
        snprintf(why, whylen, "no file");
        goto out;
    }
    if (!cred.found && !conf.found) {
        if (explicit_name && *explicit_name) {
            /* A profile asked for by name must exist: falling through to
             * another identity (an instance role) would hide the mistake. */
            snprintf(why, whylen,
                     "aws credentials: profile \"%s\" (AWS_PROFILE) is in neither %s nor %s", name,
                     have_cred ? cred_path : "the credentials file (none)",
                     have_conf ? conf_path : "the config file (none)");
            rc = -1;
        } else {
            snprintf(why, whylen, "not in %s%s%s", have_cred ? cred_path : "",
                     have_cred && have_conf ? " or " : "", have_conf ? conf_path : "");
        }
        goto out;
    }
    /* the credentials file's keys win, key by key */
    for (i = 0; i < K_COUNT; i++) {
        if (cred.v[i]) {
            if (conf.v[i]) {
                OPENSSL_cleanse(conf.v[i], strlen(conf.v[i]));
                free(conf.v[i]);
            }
            conf.v[i] = cred.v[i];
            cred.v[i] = NULL;
        }
    }
    from = &conf;
    if (from->v[K_AK] && from->v[K_SK]) {
        if (aws_creds_set(out, from->v[K_AK], from->v[K_SK], from->v[K_TOKEN]) < 0) {
            snprintf(why, whylen, "aws credentials: out of memory");
            rc = -1;
            goto out;
        }
        rc = 1;
    } else if (from->v[K_AK] || from->v[K_SK]) {
        snprintf(why, whylen, "aws credentials: profile \"%s\": %s is set but %s is missing", name,
                 from->v[K_AK] ? "aws_access_key_id" : "aws_secret_access_key",
                 from->v[K_AK] ? "aws_secret_access_key" : "aws_access_key_id");
        rc = -1;
    } else if (from->v[K_PROCESS]) {
        *process = from->v[K_PROCESS];
        from->v[K_PROCESS] = NULL;
        rc = 2;
    } else if (from->v[K_ROLE]) {
        snprintf(why, whylen, "role_arn profiles are not supported");
    } else if (from->v[K_SSO]) {
        snprintf(why, whylen, "SSO profiles are not supported");
    } else {
        snprintf(why, whylen, "no keys");
    }
out:
    profile_free(&cred);
    profile_free(&conf);
    return rc;
}
