/* aws_creds.h - where the AWS credentials come from.
 *
 * Static keys from the config first (the seeds' way), then the
 * environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
 * AWS_SESSION_TOKEN). The rest of the standard chain (shared files, web
 * identity, container endpoint, IMDSv2) grows here. */
#ifndef KK_AWS_CREDS_H
#define KK_AWS_CREDS_H

#include <stddef.h>

struct aws_creds {
    char *access_key;
    char *secret_key;
    char *session_token; /* NULL when none */
    const char *source;  /* "config" | "environment": for logs */
};

/* Resolve into *out (zeroed first). access_key/secret_key/session_token
 * are the config's (NULL or "" when unset). Returns 0, or -1 with a
 * message naming what is missing. */
int aws_creds_resolve(struct aws_creds *out, const char *access_key, const char *secret_key,
                      const char *session_token, char *err, size_t errlen);
/* Wipes and frees; accepts a zeroed or half-filled struct. */
void aws_creds_free(struct aws_creds *c);

#endif
