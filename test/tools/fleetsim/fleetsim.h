/* The fleet simulator (issue 13): types shared by its modules.
 *
 *   fleetsim.c  flags, the run (ramp, storms, duration), per-interval reports
 *   device.c    one device's state machine: connect, exchange, hold, lose,
 *               reconnect per the chosen behaviour
 *   h1.c        the HTTP/1.1 exchange: request bytes, response parsing (llhttp)
 *   lat.h       latency histogram
 *
 * One libev loop, one thread. A device costs its struct (about 120 bytes);
 * the exchange state (parser, buffers) exists only while an attempt is in
 * flight. */
#ifndef FLEETSIM_H
#define FLEETSIM_H

#include <ev.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "lat.h"

enum fs_mode { FS_WS_H1, FS_WS_H2, FS_POLL_H1, FS_POLL_H2 };
enum fs_reconnect { RC_NONE, RC_FIXED, RC_EXPO, RC_RETRY_AFTER };

#define FS_MAX_CLASSES 16
#define FS_MAX_HEADERS 16
#define FS_MAX_STORMS 32

struct fs_class {
    char name[48];
    char firmware[48];
    double share;
};

struct fs_cidr {
    uint32_t base; /* host order, network address */
    uint32_t count; /* usable addresses */
    int set;
};

struct fs_config {
    struct sockaddr_in target;
    char host[128];           /* Host header */
    char host_only[128];      /* the target's host, without the port */
    int tls, insecure;
    char sni[128];            /* --sni, else the target host unless an IP */
    char alpn[16];            /* --alpn, else by mode */
    const char *cacert;
    int devices;
    enum fs_mode mode;
    double poll_interval;     /* s */
    char path[256];
    struct fs_class classes[FS_MAX_CLASSES];
    int nclasses;
    char id_header[64];
    struct fs_cidr sources, xff;
    const char *headers[FS_MAX_HEADERS];
    int nheaders;
    double ramp;              /* s */
    double storms[FS_MAX_STORMS];
    int nstorms;
    enum fs_reconnect reconnect;
    double rc_fixed, rc_base, rc_cap;   /* s */
    double crash_share, crash_rate;     /* share of devices, attempts/s */
    double timeout;           /* s */
    double duration;          /* s */
    double report_interval;   /* s */
    const char *out;
    uint64_t seed;
};

/* Outcome counters: one set per interval, one for the run. */
#define FS_MAX_KEYS 64
struct fs_keycount {
    char key[64];
    uint64_t n;
};
struct fs_counts {
    uint64_t attempts, admitted, refused, errors;
    struct fs_keycount refused_by[FS_MAX_KEYS];
    int nrefused_by;
    struct fs_keycount errors_by[FS_MAX_KEYS];
    int nerrors_by;
    struct lat_hist lat;
};

struct fs_exchange;

enum dev_state {
    DEV_WAIT,        /* timer armed: the next attempt (or not started) */
    DEV_CONNECTING,  /* socket connecting, attempt in flight */
    DEV_HANDSHAKE,   /* TLS handshake, attempt in flight */
    DEV_EXCHANGE,    /* request sent (or being sent), response awaited */
    DEV_HOLDING,     /* ws: tunnel admitted; poll: idle kept connection */
    DEV_STOPPED,
};

struct device {
    ev_io io;
    ev_timer timer;
    struct fs_exchange *x;   /* only while an attempt is in flight */
    struct ssl_st *ssl;      /* --tls: as long as the connection */
    struct fs_h2 *h2;        /* h2 modes: the session, as long as the connection */
    double attempt_start;    /* ev_now at the attempt's start */
    uint32_t idx;
    uint16_t failures;       /* consecutive failed attempts (backoff exponent) */
    uint16_t retry_after;    /* s, from the last refusal; 0 when none */
    uint8_t state;
    uint8_t cls;
    uint8_t crashloop;
    uint8_t counted;         /* counted in fs.connected */
};

struct fs_storm {
    double at;
    double recovered;        /* s after the storm; < 0 until 99% connected */
};

struct fs_run {
    struct fs_config cfg;
    struct ev_loop *loop;
    struct device *devs;
    FILE *out;
    double t0;
    struct fs_counts tick, total;
    uint64_t connected, connected_max, started, inflight;
    struct fs_storm storms[FS_MAX_STORMS];
    int nstorms_done;
    uint64_t rng;
};

extern struct fs_run fs;

/* fleetsim.c: outcome accounting (every attempt ends in exactly one). */
void fs_count_admitted(double latency_ms);
void fs_count_refused(const char *key);
void fs_count_error(const char *key);
void fs_connected_add(int delta);
double fs_random(void);

/* device.c */
/* The headers a device sends about itself (id, class, firmware, X-Forwarded-For,
 * --header), in |store|; returns the count (<= FS_DEV_HEADERS). */
#define FS_DEV_HEADERS (4 + FS_MAX_HEADERS)
struct fs_header {
    const char *name, *value;
    size_t name_len, value_len;
};
int device_headers(const struct device *d, struct fs_header *out, char *store, size_t store_len);
void device_init(struct device *d, uint32_t idx);
void device_start(struct device *d, double delay);
void device_storm(struct device *d);
void device_stop(struct device *d);

/* net.c: the byte stream (socket or TLS). send/recv: -1 with errno EAGAIN
 * and *want the readiness to wait for; 0 is EOF. */
int net_tls_init(void);
int net_tls_start(struct device *d);
int net_tls_handshake(struct device *d, int *want); /* 1 done, 0 wait, -1 failed */
int net_alpn_is(const struct device *d, const char *proto);
ssize_t net_send(struct device *d, const void *buf, size_t n, int *want);
ssize_t net_recv(struct device *d, void *buf, size_t n, int *want);
void net_close(struct device *d);

/* h1.c: the exchange of one attempt over HTTP/1.1. */
enum h1_result { H1_MORE, H1_DONE, H1_BAD, H1_RESET };
struct fs_exchange *h1_exchange_new(const struct device *d, int upgrade);
void h1_exchange_free(struct fs_exchange *x);
/* Bytes still to send: *buf, returns the count. */
size_t h1_pending(struct fs_exchange *x, const char **buf);
void h1_sent(struct fs_exchange *x, size_t n);
enum h1_result h1_feed(struct fs_exchange *x, const char *data, size_t len);
/* The peer closed: H1_DONE if that ended a response delimited by close. */
enum h1_result h1_eof(struct fs_exchange *x);
int h1_status(const struct fs_exchange *x);
int h1_keep_alive(const struct fs_exchange *x);
int h1_retry_after(const struct fs_exchange *x);
/* After a 101 that ended in |data| (|len| bytes, the last h1_feed): the
 * retry-after of a close frame that came right behind it, else 0. */
int h1_tunnel_retry_after(const struct fs_exchange *x, const char *data, size_t len);
/* "429 rate_limited" (status + the JSON body's "error"), or "429". */
void h1_refusal_key(const struct fs_exchange *x, char *out, size_t n);
void fs_refusal_key(int status, const char *body, char *out, size_t n);
/* Appends to a NUL-terminated |body| of |cap| bytes what fits (the start of
 * a refusal body is all the simulator reads). */
void fs_body_keep(char *body, size_t cap, size_t *len, const void *data, size_t n);
/* A held tunnel's bytes from the server start at a frame boundary (the
 * devices send nothing, so nothing comes back but a close): if they start
 * with a WebSocket close frame whose reason says "retry-after N" (sluice's
 * limits.max_idle eviction), N (at most 65535); else 0. */
int fs_ws_close_retry_after(const void *data, size_t n);

/* h2.c: the nghttp2 client session of one connection; one attempt (a
 * stream) at a time: ws-h2 an RFC 8441 CONNECT held open, poll-h2 a GET.
 * Results as for h1 (H1_RESET: the stream was reset before its answer). */
struct fs_h2;
int h2_session_new(struct device *d);
void h2_session_free(struct device *d);
int h2_attempt_begin(struct device *d);
int h2_write(struct device *d);          /* -1: the connection failed */
int h2_want_write(const struct device *d);
enum h1_result h2_read(struct device *d, const char *buf, size_t n);
int h2_tunnel_lost(const struct device *d);
int h2_status(const struct device *d);
int h2_retry_after(const struct device *d);
void h2_refusal_key(const struct device *d, char *out, size_t n);

#endif
