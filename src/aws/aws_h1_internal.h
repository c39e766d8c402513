/* aws_h1_internal.h - what aws_h1.c (requests, origins) and aws_h1_conn.c
 * (connections) share. Not for other files. */
#ifndef KK_AWS_H1_INTERNAL_H
#define KK_AWS_H1_INTERNAL_H

#include "aws/aws_h1.h"
#include "aws/aws_h1_answer.h"
#include "base/buf.h"
#include "base/loop.h"
#include "base/pool.h"
#include "base/resolve.h"
#include "base/tls.h"

#include <stddef.h>
#include <stdint.h>

#define AWS_H1_IDLE_MS                                                                             \
    50000 /* older idle connections are closed, not reused (servers drop them)                     \
           */
#define AWS_H1_KEEP_BUF ((size_t)64 << 10) /* buffer memory kept with an idle connection */
#define AWS_H1_ERR      512

enum aws_h1_conn_state { AWS_H1_CONNECTING, AWS_H1_HANDSHAKE, AWS_H1_BUSY, AWS_H1_IDLE };

struct h1_req {
    struct aws_h1 *h;
    struct h1_origin *o;
    struct aws_http_request req; /* its pointers stay valid until done (the client's promise) */
    aws_http_done_fn done;
    void *cctx;
    struct h1_conn *conn; /* NULL while waiting */
    struct h1_req *next;  /* the origin's waiting list */
    struct loop_timer timer;
    long total_ms, connect_ms;
    int retried;
    void *pool_next;
};

struct h1_conn {
    struct aws_h1 *h;
    struct h1_origin *o;
    int fd;
    enum aws_h1_conn_state st;
    struct tls *tls;
    struct h1_req *req;
    struct h1_conn *next_idle;
    struct h1_conn *prev, *next; /* all of the origin's connections */
    struct loop_timer timer;     /* connect and handshake */
    uint64_t idle_since;
    unsigned watched;
    int addr_i;
    int reused;    /* answered a request before: a close before any answer is retried */
    int got_bytes; /* bytes of the current answer came */
    /* out: the head (plain) or all ciphertext due (TLS); the body of a
     * plain request is written from the caller's memory. */
    struct buf out;
    size_t out_pos;
    const char *body;
    size_t body_len, body_pos;
    struct aws_h1_answer ans;
};

struct h1_origin {
    struct aws_h1 *h;
    struct h1_origin *next;
    char *key; /* "scheme://authority" */
    int tls;
    char host[256];
    char port[8];
    char authority[300]; /* Host header */
    struct resolve_addrs addrs;
    int have_addrs;
    uint64_t addrs_at;
    struct resolver *res;
    int resolving;
    struct h1_conn *conns;
    struct h1_conn *idle; /* most recently used first */
    unsigned long nconns;
    struct h1_req *wait_head, *wait_tail;
    struct loop_defer pump;
};

struct aws_h1 {
    struct loop *loop;
    struct aws_transport transport;
    SSL_CTX *ssl_ctx; /* made at the first https origin */
    struct aws_http_settings set;
    struct h1_origin *origins;
    int norigins;
    struct pool reqs;
    int busy; /* > 0 inside callbacks: a destroy then frees at the end */
    int dead;
};

/* aws_h1.c */
void aws_h1_enter(struct aws_h1 *h);
void aws_h1_leave(struct aws_h1 *h);
/* Answer r (off every connection and list) and let it go. */
void aws_h1_req_finish(struct h1_req *r, long status, const char *body, size_t len,
                       const char *terr);
/* The same with a transport error: the text, then " (url)". */
void aws_h1_req_fail(struct h1_req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Pump o's waiting requests at the end of the round. */
void aws_h1_origin_kick(struct h1_origin *o);
void aws_h1_wait_push_front(struct h1_origin *o, struct h1_req *r);

/* aws_h1_conn.c */
/* Open a connection for r (off the waiting list, its timer running). */
void aws_h1_conn_open(struct h1_origin *o, struct h1_req *r);
/* Send r on c (idle or just connected). 0, or -1 with c closed and r
 * sent again later (a reused connection) or failed. */
int aws_h1_conn_send(struct h1_conn *c, struct h1_req *r);
/* Close c at once; its request (if any) is the caller's to answer. */
void aws_h1_conn_free(struct h1_conn *c);
/* The same, and o's waiting requests get a chance at a new connection. */
void aws_h1_conn_close(struct h1_conn *c);

#endif
