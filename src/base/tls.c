/* tls.c - a TLS client session: OpenSSL through memory BIOs.
 *
 * OpenSSL never touches the socket: ciphertext read from it is fed in
 * (tls_input), plaintext comes out of tls_read, and what OpenSSL wants to
 * send (handshake, records, alerts) is collected into the caller's output
 * buffer. The server certificate is verified against ca_file or the
 * system roots, for the host name (SNI) or IP literal. The PEM files are
 * read when the context is made, so a missing or empty file is an error
 * there. */
#include "base/tls.h"

#include "base/resolve.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TLS_MAX_PEM (1024 * 1024)

struct tls {
    SSL *ssl;
    BIO *rbio; /* ciphertext in (owned by ssl) */
    BIO *wbio; /* ciphertext out (owned by ssl) */
    char host[256];
    int peer_closed; /* the server's close_notify came */
};

static void ssl_error(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256];

    if (e) {
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(err, errlen, "%s: %s", what, buf);
    } else {
        snprintf(err, errlen, "%s", what);
    }
    ERR_clear_error();
}

/* The file at path in b; an empty or missing one is an error naming it. */
static int read_pem(const char *what, const char *path, struct buf *b, char *err, size_t errlen)
{
    char why[512];

    if (buf_append_file(b, path, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "tls: %s: %s", what, why);
        return -1;
    }
    if (b->len == 0) {
        snprintf(err, errlen, "tls: %s: %s is empty", what, path);
        return -1;
    }
    return 0;
}

static int load_ca(SSL_CTX *ctx, const char *path, char *err, size_t errlen)
{
    struct buf b = BUF_INIT(TLS_MAX_PEM);
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    BIO *bio = NULL;
    X509 *x;
    int n = 0, rc = -1;

    if (read_pem("ca_file", path, &b, err, errlen) < 0) {
        goto done;
    }
    bio = BIO_new_mem_buf(b.data, (int)b.len);
    if (!bio) {
        snprintf(err, errlen, "tls: out of memory");
        goto done;
    }
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        X509_STORE_add_cert(store, x);
        X509_free(x);
        n++;
    }
    ERR_clear_error(); /* the end of the file reads as an error */
    if (n == 0) {
        snprintf(err, errlen, "tls: ca_file: no PEM certificate in %s", path);
        goto done;
    }
    rc = 0;
done:
    BIO_free(bio);
    buf_free(&b);
    return rc;
}

static int load_pair(SSL_CTX *ctx, const char *cert_file, const char *key_file, char *err,
                     size_t errlen)
{
    struct buf cb = BUF_INIT(TLS_MAX_PEM), kb = BUF_INIT(TLS_MAX_PEM);
    BIO *bio = NULL;
    X509 *x = NULL;
    EVP_PKEY *key = NULL;
    int rc = -1;

    if (read_pem("cert_file", cert_file, &cb, err, errlen) < 0 ||
        read_pem("key_file", key_file, &kb, err, errlen) < 0) {
        goto done;
    }
    bio = BIO_new_mem_buf(cb.data, (int)cb.len);
    if (!bio || !(x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
        snprintf(err, errlen, "tls: cert_file: no PEM certificate in %s", cert_file);
        goto done;
    }
    if (SSL_CTX_use_certificate(ctx, x) != 1) {
        ssl_error(err, errlen, "tls: cert_file");
        goto done;
    }
    /* The rest of the file is the chain. */
    for (;;) {
        X509 *extra = PEM_read_bio_X509(bio, NULL, NULL, NULL);

        if (!extra) {
            break;
        }
        if (SSL_CTX_add_extra_chain_cert(ctx, extra) != 1) {
            X509_free(extra);
            ssl_error(err, errlen, "tls: cert_file chain");
            goto done;
        }
    }
    ERR_clear_error();
    BIO_free(bio);
    bio = BIO_new_mem_buf(kb.data, (int)kb.len);
    if (!bio || !(key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL))) {
        snprintf(err, errlen, "tls: key_file: no PEM private key in %s", key_file);
        ERR_clear_error();
        goto done;
    }
    if (SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        ssl_error(err, errlen, "tls: key_file does not match cert_file");
        goto done;
    }
    rc = 0;
done:
    BIO_free(bio);
    X509_free(x);
    EVP_PKEY_free(key);
    buf_free(&cb);
    if (kb.data) {
        explicit_bzero(kb.data, kb.len); /* a plain memset before free may be optimised away */
    }
    buf_free(&kb);
    return rc;
}

SSL_CTX *tls_ctx_new(const char *ca_file, const char *cert_file, const char *key_file,
                     const char *alpn, char *err, size_t errlen)
{
    unsigned char wire[256]; /* ALPN's wire form: a length byte, then the name */
    size_t alen = alpn ? strlen(alpn) : 0;
    int has_cert = cert_file && cert_file[0];
    int has_key = key_file && key_file[0];
    SSL_CTX *ctx;

    if (has_cert != has_key) {
        snprintf(err, errlen, "tls: cert_file and key_file go together");
        return NULL;
    }
    if (alpn && (alen == 0 || alen >= sizeof(wire))) {
        snprintf(err, errlen, "tls: an ALPN protocol name is 1 to 255 bytes");
        return NULL;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ssl_error(err, errlen, "tls: cannot create a context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (alpn) {
        wire[0] = (unsigned char)alen;
        memcpy(wire + 1, alpn, alen);
        if (SSL_CTX_set_alpn_protos(ctx, wire, (unsigned)alen + 1) != 0) { /* 0 is success here */
            ssl_error(err, errlen, "tls: cannot offer ALPN");
            goto fail;
        }
    }
    if (ca_file && ca_file[0]) {
        if (load_ca(ctx, ca_file, err, errlen) < 0) {
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        ssl_error(err, errlen, "tls: cannot load the system's root certificates");
        goto fail;
    }
    if (has_cert && load_pair(ctx, cert_file, key_file, err, errlen) < 0) {
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

struct tls *tls_new(SSL_CTX *ctx, const char *host, char *err, size_t errlen)
{
    struct tls *t = calloc(1, sizeof(*t));

    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(t->host, sizeof(t->host), "%s", host);
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        ssl_error(err, errlen, "tls: cannot create a session");
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    BIO_set_mem_eof_return(t->rbio, -1); /* empty means "more later", not EOF */
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_connect_state(t->ssl);
    if (resolve_is_ip(host)) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host);
    } else {
        SSL_set_tlsext_host_name(t->ssl, host);
        SSL_set1_host(t->ssl, host);
    }
    return t;
}

void tls_free(struct tls *t)
{
    if (!t) {
        return;
    }
    SSL_free(t->ssl); /* frees both BIOs */
    free(t);
}

int tls_input(struct tls *t, const unsigned char *p, size_t n)
{
    return BIO_write(t->rbio, p, (int)n) == (int)n ? 0 : -1;
}

static void failure(struct tls *t, int rc, const char *what, char *err, size_t errlen)
{
    long v = SSL_get_verify_result(t->ssl);

    if (v != X509_V_OK) {
        snprintf(err, errlen, "tls: the certificate of %s is not trusted: %s", t->host,
                 X509_verify_cert_error_string(v));
        ERR_clear_error();
        return;
    }
    if (SSL_get_error(t->ssl, rc) == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        snprintf(err, errlen, "tls: %s: the server closed the connection", what);
        return;
    }
    ssl_error(err, errlen, what);
}

int tls_handshake(struct tls *t, char *err, size_t errlen)
{
    int rc = SSL_do_handshake(t->ssl);

    if (rc != 1) {
        int e = SSL_get_error(t->ssl, rc);

        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            return 0;
        }
        failure(t, rc, "tls handshake", err, errlen);
        return -1;
    }
    return 1;
}

int tls_alpn_is(struct tls *t, const char *proto)
{
    const unsigned char *sel = NULL;
    unsigned int len = 0;
    size_t plen = strlen(proto);

    SSL_get0_alpn_selected(t->ssl, &sel, &len);
    return sel && len == plen && memcmp(sel, proto, plen) == 0;
}

ssize_t tls_read(struct tls *t, unsigned char *buf, size_t n, char *err, size_t errlen)
{
    int rc = SSL_read(t->ssl, buf, (int)n);
    int e;

    if (rc > 0) {
        return rc;
    }
    e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        return 0;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        t->peer_closed = 1;
        snprintf(err, errlen, "the server closed the TLS session");
    } else {
        failure(t, rc, "tls read", err, errlen);
    }
    return -1;
}

int tls_peer_closed(const struct tls *t)
{
    return t->peer_closed;
}

int tls_write(struct tls *t, const unsigned char *p, size_t n, char *err, size_t errlen)
{
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        int rc = SSL_write(t->ssl, p, chunk);

        if (rc <= 0) {
            failure(t, rc, "tls write", err, errlen);
            return -1;
        }
        p += rc;
        n -= (size_t)rc;
    }
    return 0;
}

int tls_output(struct tls *t, struct buf *out)
{
    char *data;
    long n = BIO_get_mem_data(t->wbio, &data);
    int rc = 0;

    if (n > 0) {
        rc = buf_append(out, data, (size_t)n);
        (void)BIO_reset(t->wbio);
    }
    return rc;
}
