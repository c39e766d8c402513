/* test_tls.c - base/tls against a node TLS server on 127.0.0.1: the handshake driven by hand
 * over a plain socket, ALPN, the certificate's trust and name, data both ways, the server's
 * close_notify, and the context's errors naming the file. */
#include "base/buf.h"
#include "base/tls.h"

#include "spawn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

struct fx {
    struct spawned srv;
    int port;
    char dir[64];
    char ca[128];
};

/* Certificates from the rig (cert.pem is its own CA, for 127.0.0.1 and localhost); a server
 * offering ALPN http/1.1 that answers "pong:<data>" and ends the session (close_notify) on
 * "bye". */
static int setup(void **state)
{
    static struct fx f;
    char script[1400], line[256];
    char *argv[4];
    const char *p;

    memset(&f, 0, sizeof(f));
    snprintf(f.dir, sizeof(f.dir), "/tmp/kk-tls-XXXXXX");
    if (!mkdtemp(f.dir)) {
        return -1;
    }
    snprintf(f.ca, sizeof(f.ca), "%s/cert.pem", f.dir);
    snprintf(script, sizeof(script),
             "require('%s/certs.js').makeTestCert({dir:'%s'});"
             "const tls=require('tls'),fs=require('fs');"
             "const s=tls.createServer({key:fs.readFileSync('%s/key.pem'),"
             "cert:fs.readFileSync('%s/cert.pem'),ALPNProtocols:['http/1.1']},(c)=>{"
             "c.on('error',()=>{});c.on('data',(d)=>{"
             "if(String(d).includes('bye'))c.end();else c.write('pong:'+d);});});"
             "s.listen(0,'127.0.0.1',()=>console.log(JSON.stringify({ready:true,port:"
             "s.address().port})));process.stdin.on('end',()=>process.exit(0));",
             KK_RIG_DIR, f.dir, f.dir, f.dir);
    argv[0] = (char *)"node";
    argv[1] = (char *)"-e";
    argv[2] = script;
    argv[3] = NULL;
    if (spawn_start(&f.srv, argv) < 0 || spawn_read_line(&f.srv, line, sizeof(line), 60) < 0 ||
        !(p = strstr(line, "\"port\":"))) {
        spawn_stop(&f.srv);
        return -1;
    }
    f.port = (int)strtol(p + 7, NULL, 10);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];

    spawn_stop(&f->srv);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int dial(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* What the session has for the socket, sent. */
static void flush(int fd, struct tls *t)
{
    struct buf out = BUF_INIT(1 << 20);
    size_t off = 0;

    assert_int_equal(tls_output(t, &out), 0);
    while (off < out.len) {
        ssize_t n = send(fd, out.data + off, out.len - off, MSG_NOSIGNAL);

        assert_true(n > 0);
        off += (size_t)n;
    }
    buf_free(&out);
}

/* One read from the socket into the session; 0 at the end of file. */
static ssize_t pull(int fd, struct tls *t)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    unsigned char b[16384];
    ssize_t n;

    if (poll(&p, 1, 15000) != 1) {
        fail_msg("no data from the server within 15 s");
    }
    n = recv(fd, b, sizeof(b), 0);
    assert_true(n >= 0);
    if (n > 0) {
        assert_int_equal(tls_input(t, b, (size_t)n), 0);
    }
    return n;
}

/* The handshake, driven as a loop would: 1 done, -1 failed (err). */
static int handshake(int fd, struct tls *t, char *err, size_t errlen)
{
    for (;;) {
        int rc = tls_handshake(t, err, errlen);

        flush(fd, t); /* the ClientHello first, then the Finished (or an alert) */
        if (rc != 0) {
            return rc;
        }
        if (pull(fd, t) == 0) {
            snprintf(err, errlen, "end of file during the handshake");
            return -1;
        }
    }
}

static void test_session(void **state)
{
    struct fx *f = *state;
    char err[512], got[256];
    size_t glen = 0;
    SSL_CTX *ctx = tls_ctx_new(f->ca, NULL, NULL, "http/1.1", err, sizeof(err));
    struct tls *t;
    unsigned char b[256];
    ssize_t m;
    int fd;

    assert_non_null(ctx);
    t = tls_new(ctx, "localhost", err, sizeof(err));
    assert_non_null(t);
    SSL_CTX_free(ctx); /* the session holds its own reference */
    fd = dial(f->port);
    if (handshake(fd, t, err, sizeof(err)) != 1) {
        fail_msg("handshake: %s", err);
    }
    assert_true(tls_alpn_is(t, "http/1.1"));
    assert_false(tls_alpn_is(t, "h2"));
    assert_false(tls_alpn_is(t, "http/1"));

    /* Data both ways; 0 means none for now. */
    assert_int_equal(tls_write(t, (const unsigned char *)"ping", 4, err, sizeof(err)), 0);
    flush(fd, t);
    while (glen < 9) {
        assert_true(pull(fd, t) > 0);
        while ((m = tls_read(t, b, sizeof(b), err, sizeof(err))) > 0) {
            assert_true(glen + (size_t)m < sizeof(got));
            memcpy(got + glen, b, (size_t)m);
            glen += (size_t)m;
        }
        assert_int_equal(m, 0);
        flush(fd, t);
    }
    got[glen] = '\0';
    assert_string_equal(got, "pong:ping");
    assert_false(tls_peer_closed(t));

    /* The server ends the session: -1 with tls_peer_closed, not a failure. */
    assert_int_equal(tls_write(t, (const unsigned char *)"bye", 3, err, sizeof(err)), 0);
    flush(fd, t);
    for (;;) {
        ssize_t n = pull(fd, t);

        m = tls_read(t, b, sizeof(b), err, sizeof(err));
        if (m != 0 || n == 0) {
            break;
        }
    }
    assert_int_equal(m, -1);
    assert_true(tls_peer_closed(t));
    assert_non_null(strstr(err, "closed the TLS session"));
    close(fd);
    tls_free(t);
    tls_free(NULL);
}

/* No ALPN offered: the server selects none. */
static void test_no_alpn(void **state)
{
    struct fx *f = *state;
    char err[512];
    SSL_CTX *ctx = tls_ctx_new(f->ca, NULL, NULL, NULL, err, sizeof(err));
    struct tls *t;
    int fd;

    assert_non_null(ctx);
    t = tls_new(ctx, "127.0.0.1", err, sizeof(err));
    assert_non_null(t);
    fd = dial(f->port);
    if (handshake(fd, t, err, sizeof(err)) != 1) {
        fail_msg("handshake: %s", err);
    }
    assert_false(tls_alpn_is(t, "http/1.1"));
    close(fd);
    tls_free(t);
    SSL_CTX_free(ctx);
}

/* The certificate is checked for trust and for the name asked for. */
static void test_verification(void **state)
{
    struct fx *f = *state;
    char err[512];
    SSL_CTX *ctx;
    struct tls *t;
    int fd;

    /* The system's roots do not know the test certificate. */
    ctx = tls_ctx_new(NULL, NULL, NULL, "http/1.1", err, sizeof(err));
    assert_non_null(ctx);
    t = tls_new(ctx, "127.0.0.1", err, sizeof(err));
    fd = dial(f->port);
    assert_int_equal(handshake(fd, t, err, sizeof(err)), -1);
    if (!strstr(err, "tls:") || !strstr(err, "not trusted")) {
        fail_msg("untrusted: %s", err);
    }
    close(fd);
    tls_free(t);
    SSL_CTX_free(ctx);

    /* Trusted, but for 127.0.0.1 and localhost only. */
    ctx = tls_ctx_new(f->ca, NULL, NULL, NULL, err, sizeof(err));
    assert_non_null(ctx);
    t = tls_new(ctx, "other.example", err, sizeof(err));
    fd = dial(f->port);
    assert_int_equal(handshake(fd, t, err, sizeof(err)), -1);
    if (!strstr(err, "other.example") || !strstr(err, "not trusted")) {
        fail_msg("wrong name: %s", err);
    }
    close(fd);
    tls_free(t);
    t = tls_new(ctx, "127.0.0.2", err, sizeof(err));
    fd = dial(f->port);
    assert_int_equal(handshake(fd, t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not trusted"));
    close(fd);
    tls_free(t);
    SSL_CTX_free(ctx);
}

static void test_ctx_errors(void **state)
{
    struct fx *f = *state;
    char err[512], path[160];

    assert_null(tls_ctx_new("/nonexistent/ca.pem", NULL, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "tls: ca_file"));
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
    assert_null(tls_ctx_new(NULL, f->ca, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "go together"));
    assert_null(tls_ctx_new(NULL, NULL, NULL, "", err, sizeof(err)));
    assert_non_null(strstr(err, "ALPN"));
    /* A key file that holds no key. */
    assert_null(tls_ctx_new(f->ca, f->ca, f->ca, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "key_file"));
    snprintf(path, sizeof(path), "%s/key.pem", f->dir);
    /* A certificate file that holds no certificate. */
    assert_null(tls_ctx_new(NULL, path, path, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "cert_file"));
    assert_non_null(strstr(err, path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_session),
        cmocka_unit_test(test_no_alpn),
        cmocka_unit_test(test_verification),
        cmocka_unit_test(test_ctx_errors),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
