/* tls.h - a TLS client session over memory BIOs: the caller owns the socket.
 *
 * OpenSSL never touches a socket: the caller feeds the ciphertext it read
 * (tls_input), takes plaintext out (tls_read), hands plaintext in
 * (tls_write) and moves what OpenSSL wants sent - handshake messages,
 * records, alerts - into its own output buffer (tls_output), so TLS and
 * plain TCP share one read path and one write per loop round.
 *
 * Driving a session: tls_new, then tls_handshake (0: the ClientHello is
 * waiting) and tls_output, and send that. On every read from the socket:
 * tls_input, then tls_handshake until it says 1 (tls_output after each
 * call), then tls_read until it says 0, then tls_output again (a TLS 1.3
 * server's tickets and key updates may want an answer). The server
 * certificate is verified during the handshake, against ca_file or the
 * system roots, for the host name (or IP literal) given to tls_new. */
#ifndef KK_BASE_TLS_H
#define KK_BASE_TLS_H

#include "base/buf.h"

#include <openssl/ssl.h>
#include <stddef.h>
#include <sys/types.h>

/* alpn: NULL (offer none) or one protocol, e.g. "h2" or "http/1.1".
 * ca_file NULL or "": the system's roots. cert_file and key_file NULL or
 * "": no client certificate (one without the other is an error). Reads the
 * PEM files now; errors name the file. NULL with the reason in err. */
SSL_CTX *tls_ctx_new(const char *ca_file, const char *cert_file, const char *key_file,
                     const char *alpn, char *err, size_t errlen);

struct tls;

/* host: sent as SNI (not for an IP literal) and the name or IP the server
 * certificate must carry. ctx stays the caller's (SSL_CTX is reference
 * counted: a session keeps its own reference). */
struct tls *tls_new(SSL_CTX *ctx, const char *host, char *err, size_t errlen);
/* Accepts NULL. */
void tls_free(struct tls *t);
/* Ciphertext read from the socket. -1 when out of memory. */
int tls_input(struct tls *t, const unsigned char *p, size_t n);
/* 1 done (the certificate verified), 0 more input needed, -1 failed
 * ("tls: ..." with OpenSSL's reason, or the certificate's problem). */
int tls_handshake(struct tls *t, char *err, size_t errlen);
/* 1 when the server selected proto by ALPN (after the handshake). */
int tls_alpn_is(struct tls *t, const char *proto);
/* Plaintext from what came in: > 0 bytes, 0 none for now, -1 the session
 * ended: the server's close_notify (tls_peer_closed says 1) or a failure,
 * err says which. A TCP end of file is the caller's to notice (recv 0). */
ssize_t tls_read(struct tls *t, unsigned char *buf, size_t n, char *err, size_t errlen);
/* 1 after tls_read met the server's close_notify (a clean end). */
int tls_peer_closed(const struct tls *t);
/* Encrypt all of p; the records wait for tls_output. -1 with err. */
int tls_write(struct tls *t, const unsigned char *p, size_t n, char *err, size_t errlen);
/* Move the ciphertext due to the socket into out (appended). -1 when out
 * is full or memory ran out. */
int tls_output(struct tls *t, struct buf *out);

#endif
