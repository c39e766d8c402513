/* sigv4.c - AWS Signature Version 4 (header signing) on libcrypto. */
#include "aws/sigv4.h"

#include "base/hex.h"

/* SHA256_Init and friends: no context to allocate and no provider to go
 * through per hash (EVP cost two allocations and a dispatch for each of
 * the three hashes of a request). OpenSSL 3 marks them deprecated, not
 * gone; they run the same assembly (SHA extensions where the CPU has
 * them). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Canonical requests carry hashes, not bodies: this only bounds headers. */
#define SIGV4_TEXT_MAX ((size_t)1 << 20)

/* ---- hashing ---- */

static void sha256_raw(const void *data, size_t len, unsigned char out[32], int *ok)
{
    SHA256_CTX c;

    *ok = SHA256_Init(&c) == 1 && SHA256_Update(&c, data, len) == 1 && SHA256_Final(out, &c) == 1;
    OPENSSL_cleanse(&c, sizeof(c));
}

int sigv4_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    SHA256_CTX c;
    int ok;

    /* A body or canonical request: nothing secret in the context. */
    ok = SHA256_Init(&c) == 1 && SHA256_Update(&c, data, len) == 1 && SHA256_Final(md, &c) == 1;
    if (!ok) {
        return -1;
    }
    hex_encode(md, 32, out);
    return 0;
}

/* HMAC by hand (RFC 2104): EVP_MAC_init looks the digest up by name on
 * every call, which cost more than the hashing itself. */
int sigv4_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                      unsigned char out[32])
{
    unsigned char k[64], pad[64], inner[32];
    SHA256_CTX c;
    int i, ok, rc = -1;

    memset(k, 0, sizeof(k));
    if (keylen > sizeof(k)) {
        sha256_raw(key, keylen, k, &ok);
        if (!ok) {
            goto done;
        }
    } else if (keylen) {
        memcpy(k, key, keylen);
    }
    for (i = 0; i < 64; i++) {
        pad[i] = k[i] ^ 0x36;
    }
    if (SHA256_Init(&c) != 1 || SHA256_Update(&c, pad, 64) != 1 ||
        SHA256_Update(&c, data, len) != 1 || SHA256_Final(inner, &c) != 1) {
        goto done;
    }
    for (i = 0; i < 64; i++) {
        pad[i] = k[i] ^ 0x5c;
    }
    if (SHA256_Init(&c) != 1 || SHA256_Update(&c, pad, 64) != 1 ||
        SHA256_Update(&c, inner, 32) != 1 || SHA256_Final(out, &c) != 1) {
        goto done;
    }
    rc = 0;
done:
    OPENSSL_cleanse(&c, sizeof(c));
    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(pad, sizeof(pad));
    OPENSSL_cleanse(inner, sizeof(inner));
    return rc;
}

/* ---- encoding ---- */

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

int sigv4_uri_encode(struct buf *out, const char *s, size_t len, int keep_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            if (buf_append_char(out, (char)c) < 0) {
                return -1;
            }
        } else {
            char esc[3] = {'%', digits[c >> 4], digits[c & 15]};
            if (buf_append(out, esc, 3) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* Percent-decode s[0..len) into out; a '%' not followed by two hex digits
 * stays as it is. */
static int uri_decode(struct buf *out, const char *s, size_t len)
{
    size_t i;

    buf_reset(out);
    for (i = 0; i < len; i++) {
        int b = hex_percent_byte(s, len, i);

        if (b >= 0) {
            if (buf_append_char(out, (char)b) < 0) {
                return -1;
            }
            i += 2;
        } else if (buf_append_char(out, s[i]) < 0) {
            return -1;
        }
    }
    return buf_append(out, "", 0);
}

/* ---- canonical URI: RFC 3986 dot-segment removal, empty segments
 * dropped, then encoded once more (the wire form gets double-encoded) ---- */

static int canonical_uri(struct buf *out, const char *path)
{
    const char **segs = NULL;
    size_t *lens = NULL;
    size_t nseg = 0, cap, i, plen;
    const char *p, *end;
    int trailing = 0, rc = -1;

    if (!path || !*path || (path[0] == '/' && !path[1])) {
        return buf_append_char(out, '/'); /* every JSON-protocol call */
    }
    plen = strlen(path);
    cap = plen / 2 + 2;
    segs = malloc(cap * sizeof(*segs));
    lens = malloc(cap * sizeof(*lens));
    if (!segs || !lens) {
        goto done;
    }
    p = path;
    end = path + plen;
    while (p < end) {
        const char *q;
        size_t n;
        while (p < end && *p == '/') {
            p++;
        }
        if (p >= end) {
            trailing = 1;
            break;
        }
        q = memchr(p, '/', (size_t)(end - p));
        if (!q) {
            q = end;
        }
        n = (size_t)(q - p);
        trailing = 0;
        if (n == 1 && p[0] == '.') {
            trailing = 1;
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            if (nseg) {
                nseg--;
            }
            trailing = 1;
        } else {
            segs[nseg] = p;
            lens[nseg] = n;
            nseg++;
        }
        p = q;
    }
    if (buf_append_char(out, '/') < 0) {
        goto done;
    }
    for (i = 0; i < nseg; i++) {
        if (i && buf_append_char(out, '/') < 0) {
            goto done;
        }
        if (sigv4_uri_encode(out, segs[i], lens[i], 0) < 0) {
            goto done;
        }
    }
    if (nseg && trailing && buf_append_char(out, '/') < 0) {
        goto done;
    }
    rc = 0;
done:
    free(segs);
    free(lens);
    return rc;
}

/* ---- canonical query: decoded, re-encoded, sorted by name then value ---- */

struct qparam {
    char *text; /* "name=value", encoded */
    size_t name_len;
};

static int qparam_cmp(const void *a, const void *b)
{
    const struct qparam *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->text, y->text, n);

    if (c) {
        return c;
    }
    if (x->name_len != y->name_len) {
        return x->name_len < y->name_len ? -1 : 1;
    }
    return strcmp(x->text + x->name_len, y->text + y->name_len);
}

static int canonical_query(struct buf *out, const char *query)
{
    struct qparam *ps = NULL;
    struct buf tmp = BUF_INIT(SIGV4_TEXT_MAX), enc = BUF_INIT(SIGV4_TEXT_MAX);
    size_t n = 0, cap = 1, i;
    const char *p;
    int rc = -1;

    if (!query || !*query) {
        return 0;
    }
    for (p = query; *p; p++) {
        cap += *p == '&';
    }
    ps = calloc(cap, sizeof(*ps));
    if (!ps) {
        goto done;
    }
    p = query;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;

        if (len) {
            buf_reset(&enc);
            if (uri_decode(&tmp, p, klen) < 0 || sigv4_uri_encode(&enc, tmp.data, tmp.len, 0) < 0) {
                goto done;
            }
            ps[n].name_len = enc.len;
            if (buf_append_char(&enc, '=') < 0) {
                goto done;
            }
            if (eq && (uri_decode(&tmp, eq + 1, len - klen - 1) < 0 ||
                       sigv4_uri_encode(&enc, tmp.data, tmp.len, 0) < 0)) {
                goto done;
            }
            ps[n].text = buf_detach(&enc, NULL);
            if (!ps[n].text) {
                goto done;
            }
            n++;
        }
        p += len;
        if (*p == '&') {
            p++;
        }
    }
    qsort(ps, n, sizeof(*ps), qparam_cmp);
    for (i = 0; i < n; i++) {
        if ((i && buf_append_char(out, '&') < 0) || buf_append_str(out, ps[i].text) < 0) {
            goto done;
        }
    }
    rc = 0;
done:
    for (i = 0; ps && i < n; i++) {
        free(ps[i].text);
    }
    free(ps);
    buf_free(&tmp);
    buf_free(&enc);
    return rc;
}

/* ---- canonical headers ---- */

struct chdr {
    const char *lname;
    size_t lname_len;
    const char *value;
    size_t order; /* keeps repeated headers in request order */
};

static int chdr_cmp(const struct chdr *x, const struct chdr *y)
{
    int c = strcmp(x->lname, y->lname);

    if (c) {
        return c;
    }
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Insertion sort: a request signs a handful of headers. */
static void chdr_sort(struct chdr *hs, size_t n)
{
    size_t i, j;

    for (i = 1; i < n; i++) {
        struct chdr t = hs[i];

        for (j = i; j > 0 && chdr_cmp(&hs[j - 1], &t) > 0; j--) {
            hs[j] = hs[j - 1];
        }
        hs[j] = t;
    }
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Trimmed, inner whitespace runs collapsed to one space. */
static int append_header_value(struct buf *out, const char *v)
{
    const char *run;
    int any = 0;

    while (*v) {
        while (is_ws(*v)) {
            v++;
        }
        if (!*v) {
            break;
        }
        run = v;
        while (*v && !is_ws(*v)) {
            v++;
        }
        if ((any && buf_append_char(out, ' ') < 0) || buf_append(out, run, (size_t)(v - run)) < 0) {
            return -1;
        }
        any = 1;
    }
    return 0;
}

static int valid_amz_date(const char *s)
{
    int i;

    if (strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z') {
        return 0;
    }
    for (i = 0; i < 15; i++) {
        if (i != 8 && (s[i] < '0' || s[i] > '9')) {
            return 0;
        }
    }
    return 1;
}

/* "YYYYMMDDTHHMMSSZ" for when; the last answer is kept per thread, since
 * a busy loop signs many requests in the same second. */
static int format_amz_date(time_t when, char out[17])
{
    static __thread time_t last_when = (time_t)-1;
    static __thread char last[17];
    struct tm tm;

    if (when != last_when) {
        if (!gmtime_r(&when, &tm) || strftime(last, sizeof(last), "%Y%m%dT%H%M%SZ", &tm) != 16) {
            return -1;
        }
        last_when = when;
    }
    memcpy(out, last, 17);
    return 0;
}

#define SIGV4_LOCAL_HEADERS 16
#define SIGV4_LOCAL_NAMES   1024

static int build_headers(const struct sigv4_params *p, const struct sigv4_request *req,
                         struct sigv4_result *out, struct buf *creq, char *err, size_t errlen)
{
    struct chdr local[SIGV4_LOCAL_HEADERS], *hs = local;
    char local_names[SIGV4_LOCAL_NAMES], *names = local_names;
    size_t n = 0, i, j, names_len = 0, names_need = 0;
    int have_host = 0, have_date = 0, have_token = 0, rc = -1;
    const char *date_value = NULL;

    /* Lowercased names go into one block: on the stack unless the request
     * has unusually many or long headers. */
    for (i = 0; i < req->nheaders; i++) {
        names_need += strlen(req->headers[i].name) + 1;
    }
    if (req->nheaders + 2 > SIGV4_LOCAL_HEADERS) {
        hs = calloc(req->nheaders + 2, sizeof(*hs));
    }
    if (names_need > SIGV4_LOCAL_NAMES) {
        names = malloc(names_need);
    }
    if (!hs || !names) {
        snprintf(err, errlen, "sigv4: out of memory");
        goto done;
    }
    for (i = 0; i < req->nheaders; i++) {
        const char *src = req->headers[i].name;
        char *d = names + names_len;

        for (j = 0; src[j]; j++) {
            d[j] = (src[j] >= 'A' && src[j] <= 'Z') ? (char)(src[j] + 32) : src[j];
        }
        d[j] = '\0';
        names_len += j + 1;
        hs[n].lname = d;
        hs[n].lname_len = j;
        hs[n].value = req->headers[i].value ? req->headers[i].value : "";
        hs[n].order = n;
        if (!strcmp(d, "host")) {
            have_host = 1;
        } else if (!strcmp(d, "x-amz-date")) {
            have_date = 1;
            date_value = hs[n].value;
        } else if (!strcmp(d, "x-amz-security-token")) {
            have_token = 1;
        }
        n++;
    }
    if (!have_host) {
        snprintf(err, errlen, "sigv4: the Host header must be signed");
        goto done;
    }
    if (have_date) {
        while (is_ws(*date_value)) {
            date_value++;
        }
        if (!valid_amz_date(date_value)) {
            snprintf(err, errlen, "sigv4: X-Amz-Date is not of the form YYYYMMDDTHHMMSSZ");
            goto done;
        }
        memcpy(out->amz_date, date_value, 16);
        out->amz_date[16] = '\0';
    } else {
        if (format_amz_date(p->when, out->amz_date) < 0) {
            snprintf(err, errlen, "sigv4: signing time out of range");
            goto done;
        }
        hs[n].lname = "x-amz-date";
        hs[n].lname_len = 10;
        hs[n].value = out->amz_date;
        hs[n].order = n;
        n++;
        out->add_date = 1;
    }
    if (p->session_token && *p->session_token && !have_token) {
        hs[n].lname = "x-amz-security-token";
        hs[n].lname_len = 20;
        hs[n].value = p->session_token;
        hs[n].order = n;
        n++;
        out->add_token = 1;
    }
    chdr_sort(hs, n);
    for (i = 0; i < n; i++) {
        int same = i && !strcmp(hs[i].lname, hs[i - 1].lname);
        if (same) {
            if (buf_append_char(creq, ',') < 0) {
                goto toolong;
            }
        } else {
            if (i && buf_append_char(creq, '\n') < 0) {
                goto toolong;
            }
            if (buf_append(creq, hs[i].lname, hs[i].lname_len) < 0 ||
                buf_append_char(creq, ':') < 0 ||
                (i && buf_append_char(&out->signed_headers, ';') < 0) ||
                buf_append(&out->signed_headers, hs[i].lname, hs[i].lname_len) < 0) {
                goto toolong;
            }
        }
        if (append_header_value(creq, hs[i].value) < 0) {
            goto toolong;
        }
    }
    if (buf_append(creq, "\n\n", 2) < 0 ||
        buf_append(creq, out->signed_headers.data, out->signed_headers.len) < 0) {
        goto toolong;
    }
    rc = 0;
    goto done;
toolong:
    snprintf(err, errlen, "sigv4: headers too large to sign");
done:
    if (hs != local) {
        free(hs);
    }
    if (names != local_names) {
        free(names);
    }
    return rc;
}

/* ---- signing key ---- */

static int derive_key(const struct sigv4_params *p, const char *date, unsigned char key[32])
{
    struct sigv4_key_cache *c = p->cache;
    unsigned char digest[32], k1[32], k2[32], k3[32];
    struct buf seed = BUF_INIT(0);
    int ok = 0, rc = -1;

    if (c) {
        sha256_raw(p->secret_key, strlen(p->secret_key), digest, &ok);
        if (!ok) {
            return -1;
        }
        if (c->valid && !memcmp(c->secret_digest, digest, 32) && !strcmp(c->date, date) &&
            !strcmp(c->region, p->region) && !strcmp(c->service, p->service)) {
            memcpy(key, c->key, 32);
            return 0;
        }
    }
    if (buf_appendf(&seed, "AWS4%s", p->secret_key) < 0) {
        goto done;
    }
    if (sigv4_hmac_sha256(seed.data, seed.len, date, strlen(date), k1) < 0 ||
        sigv4_hmac_sha256(k1, 32, p->region, strlen(p->region), k2) < 0 ||
        sigv4_hmac_sha256(k2, 32, p->service, strlen(p->service), k3) < 0 ||
        sigv4_hmac_sha256(k3, 32, "aws4_request", 12, key) < 0) {
        goto done;
    }
    if (c && strlen(p->region) < sizeof(c->region) && strlen(p->service) < sizeof(c->service)) {
        memcpy(c->secret_digest, digest, 32);
        snprintf(c->date, sizeof(c->date), "%s", date);
        snprintf(c->region, sizeof(c->region), "%s", p->region);
        snprintf(c->service, sizeof(c->service), "%s", p->service);
        memcpy(c->key, key, 32);
        c->valid = 1;
    }
    rc = 0;
done:
    OPENSSL_cleanse(k1, sizeof(k1));
    OPENSSL_cleanse(k2, sizeof(k2));
    OPENSSL_cleanse(k3, sizeof(k3));
    if (seed.data) {
        OPENSSL_cleanse(seed.data, seed.len);
    }
    buf_free(&seed);
    return rc;
}

/* ---- the whole thing ---- */

/* "<date>/<region>/<service>/aws4_request" */
static int append_scope(struct buf *b, const char *date, const struct sigv4_params *p)
{
    if (buf_append(b, date, 8) < 0 || buf_append_char(b, '/') < 0 ||
        buf_append_str(b, p->region) < 0 || buf_append_char(b, '/') < 0 ||
        buf_append_str(b, p->service) < 0) {
        return -1;
    }
    return buf_append_str(b, "/aws4_request");
}

void sigv4_result_init(struct sigv4_result *r)
{
    memset(r, 0, sizeof(*r));
    buf_init(&r->canonical_request, SIGV4_TEXT_MAX);
    buf_init(&r->string_to_sign, SIGV4_TEXT_MAX);
    buf_init(&r->signed_headers, SIGV4_TEXT_MAX);
    buf_init(&r->authorization, SIGV4_TEXT_MAX);
}

void sigv4_result_free(struct sigv4_result *r)
{
    if (!r) {
        return;
    }
    buf_free(&r->canonical_request);
    buf_free(&r->string_to_sign);
    buf_free(&r->signed_headers);
    buf_free(&r->authorization);
}

int sigv4_sign(const struct sigv4_params *p, const struct sigv4_request *req,
               struct sigv4_result *out, char *err, size_t errlen)
{
    struct buf *creq = &out->canonical_request, *sts = &out->string_to_sign;
    char payload_hex[65], creq_hex[65], date[9];
    unsigned char key[32], sig[32];

    buf_reset(creq);
    buf_reset(sts);
    buf_reset(&out->signed_headers);
    buf_reset(&out->authorization);
    out->add_date = out->add_token = 0;
    out->signature[0] = '\0';
    if (!p->access_key || !*p->access_key || !p->secret_key || !*p->secret_key) {
        snprintf(err, errlen, "sigv4: no access key or secret key");
        return -1;
    }
    if (!p->region || !*p->region || !p->service || !*p->service) {
        snprintf(err, errlen, "sigv4: region and service are required");
        return -1;
    }
    if (!req->method || !*req->method) {
        snprintf(err, errlen, "sigv4: no method");
        return -1;
    }
    if (req->payload_hash) {
        if (strlen(req->payload_hash) != 64) {
            snprintf(err, errlen, "sigv4: payload hash is not 64 hex digits");
            return -1;
        }
        memcpy(payload_hex, req->payload_hash, 65);
    } else if (sigv4_sha256_hex(req->body ? req->body : "", req->body_len, payload_hex) < 0) {
        snprintf(err, errlen, "sigv4: sha256 failed");
        return -1;
    }
    if (buf_append_str(creq, req->method) < 0 || buf_append_char(creq, '\n') < 0 ||
        canonical_uri(creq, req->path) < 0 || buf_append_char(creq, '\n') < 0 ||
        canonical_query(creq, req->query) < 0 || buf_append_char(creq, '\n') < 0) {
        snprintf(err, errlen, "sigv4: request line too large to sign");
        return -1;
    }
    if (build_headers(p, req, out, creq, err, errlen) < 0) {
        return -1;
    }
    if (buf_append_char(creq, '\n') < 0 || buf_append(creq, payload_hex, 64) < 0) {
        snprintf(err, errlen, "sigv4: headers too large to sign");
        return -1;
    }
    memcpy(date, out->amz_date, 8);
    date[8] = '\0';
    if (sigv4_sha256_hex(creq->data, creq->len, creq_hex) < 0) {
        snprintf(err, errlen, "sigv4: sha256 failed");
        return -1;
    }
    if (buf_append_str(sts, SIGV4_ALGORITHM "\n") < 0 || buf_append(sts, out->amz_date, 16) < 0 ||
        buf_append_char(sts, '\n') < 0 || append_scope(sts, date, p) < 0 ||
        buf_append_char(sts, '\n') < 0 || buf_append(sts, creq_hex, 64) < 0) {
        snprintf(err, errlen, "sigv4: scope too large");
        return -1;
    }
    if (derive_key(p, date, key) < 0 || sigv4_hmac_sha256(key, 32, sts->data, sts->len, sig) < 0) {
        OPENSSL_cleanse(key, sizeof(key));
        snprintf(err, errlen, "sigv4: hmac failed");
        return -1;
    }
    OPENSSL_cleanse(key, sizeof(key));
    hex_encode(sig, 32, out->signature);
    if (buf_append_str(&out->authorization, SIGV4_ALGORITHM " Credential=") < 0 ||
        buf_append_str(&out->authorization, p->access_key) < 0 ||
        buf_append_char(&out->authorization, '/') < 0 ||
        append_scope(&out->authorization, date, p) < 0 ||
        buf_append_str(&out->authorization, ", SignedHeaders=") < 0 ||
        buf_append(&out->authorization, out->signed_headers.data, out->signed_headers.len) < 0 ||
        buf_append_str(&out->authorization, ", Signature=") < 0 ||
        buf_append(&out->authorization, out->signature, 64) < 0) {
        snprintf(err, errlen, "sigv4: authorization too large");
        return -1;
    }
    return 0;
}
