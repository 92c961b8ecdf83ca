/* One device: its state machine and its reconnect behaviour.
 *
 *   WAIT --timer--> CONNECTING --writable--> EXCHANGE --response--> HOLDING
 *     ^                 |                        |                     |
 *     +---- backoff ----+---- error/refusal -----+------ lost ---------+
 *
 * Every attempt ends in exactly one of fs_count_admitted, _refused or
 * _error (a storm or the end of the run ends one in flight as an error),
 * which is what makes a report's sums add up. ws: HOLDING keeps the
 * upgraded connection until it is lost. poll: HOLDING is the idle kept
 * connection; the timer sends the next request on it (a new attempt). */
#include "fleetsim.h"

#include <errno.h>
#include <math.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define DEV_OF(w, member) ((struct device *)((char *)(w) - offsetof(struct device, member)))

static int dev_is_ws(void) { return fs.cfg.mode == FS_WS_H1 || fs.cfg.mode == FS_WS_H2; }

static int dev_is_h2(void) { return fs.cfg.mode == FS_WS_H2 || fs.cfg.mode == FS_POLL_H2; }

static void io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

void device_init(struct device *d, uint32_t idx)
{
    memset(d, 0, sizeof *d);
    d->idx = idx;
    ev_io_init(&d->io, io_cb, -1, 0);
    ev_timer_init(&d->timer, timer_cb, 0, 0);
}

static void io_want(struct device *d, int events)
{
    if (ev_is_active(&d->io) && d->io.events == events)
        return;
    ev_io_stop(fs.loop, &d->io);
    ev_io_set(&d->io, d->io.fd, events);
    ev_io_start(fs.loop, &d->io);
}

static void timer_arm(struct device *d, double after)
{
    ev_timer_stop(fs.loop, &d->timer);
    ev_timer_set(&d->timer, after, 0);
    ev_timer_start(fs.loop, &d->timer);
}

/* Closes the connection, if any; the device leaves the connected count. */
static void dev_close(struct device *d)
{
    if (d->io.fd >= 0) {
        ev_io_stop(fs.loop, &d->io);
        h2_session_free(d);
        net_close(d);
        close(d->io.fd);
        ev_io_set(&d->io, -1, 0);
    }
    if (d->counted) {
        fs_connected_add(-1);
        d->counted = 0;
    }
}

/* The delay before the next attempt, after |d->failures| consecutive
 * failures (a lost connection counts as the first). */
static double dev_backoff(const struct device *d)
{
    const struct fs_config *c = &fs.cfg;
    if (d->crashloop)
        return 1.0 / c->crash_rate;
    switch (c->reconnect) {
    case RC_NONE:
        return 0;
    case RC_FIXED:
        return c->rc_fixed;
    case RC_RETRY_AFTER:
        if (d->retry_after > 0)
            return d->retry_after;
        __attribute__((fallthrough)); /* without Retry-After: exponential */
    case RC_EXPO: {
        int k = d->failures > 0 ? d->failures - 1 : 0;
        double window = k >= 40 ? c->rc_cap : c->rc_base * ldexp(1.0, k);
        if (window > c->rc_cap)
            window = c->rc_cap;
        return fs_random() * window; /* full jitter */
    }
    }
    return 0;
}

static void dev_wait(struct device *d, double delay)
{
    d->state = DEV_WAIT;
    timer_arm(d, delay);
}

/* The attempt in flight is over: its exchange state goes. */
static void attempt_end(struct device *d)
{
    fs.inflight--;
    h1_exchange_free(d->x);
    d->x = NULL;
    ev_timer_stop(fs.loop, &d->timer);
}

/* The attempt failed (refusal_key set: refused; else error err_key): the
 * connection goes and the device backs off. */
static void attempt_failed(struct device *d, const char *err_key, const char *refusal_key)
{
    attempt_end(d);
    if (refusal_key)
        fs_count_refused(refusal_key);
    else
        fs_count_error(err_key);
    dev_close(d);
    if (d->failures < UINT16_MAX)
        d->failures++;
    dev_wait(d, dev_backoff(d));
}

static void attempt_start(struct device *d)
{
    fs.started++;
    fs.inflight++;
    d->attempt_start = ev_time();
    d->x = dev_is_h2() ? NULL : h1_exchange_new(d, dev_is_ws());
    if (!d->x && !dev_is_h2()) {
        attempt_failed(d, "alloc", NULL);
        return;
    }
    timer_arm(d, fs.cfg.timeout);
    if (d->io.fd >= 0) { /* poll on the kept connection */
        d->state = DEV_EXCHANGE;
        if (d->h2 && h2_attempt_begin(d) < 0) {
            attempt_failed(d, "protocol", NULL);
            return;
        }
        io_want(d, EV_READ | EV_WRITE);
        return;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        attempt_failed(d, "socket", NULL);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const struct fs_cidr *src = &fs.cfg.sources;
    if (src->set) {
        /* The port is chosen at connect(), per (source, target): each
         * source address has its own ephemeral range. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in sa = {.sin_family = AF_INET};
        sa.sin_addr.s_addr = htonl(src->base + d->idx % src->count);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            close(fd);
            attempt_failed(d, "bind", NULL);
            return;
        }
    }
    if (connect(fd, (struct sockaddr *)&fs.cfg.target, sizeof fs.cfg.target) < 0 &&
        errno != EINPROGRESS) {
        close(fd);
        attempt_failed(d, "connect", NULL);
        return;
    }
    d->state = DEV_CONNECTING;
    ev_io_set(&d->io, fd, EV_WRITE);
    ev_io_start(fs.loop, &d->io);
}

/* A whole response arrived. */
static void attempt_answered(struct device *d)
{
    int h2 = d->h2 != NULL;
    int status = h2 ? h2_status(d) : h1_status(d->x);
    int ws = dev_is_ws();
    if (status >= 400) {
        char key[64];
        if (h2)
            h2_refusal_key(d, key, sizeof key);
        else
            h1_refusal_key(d->x, key, sizeof key);
        int ra = h2 ? h2_retry_after(d) : h1_retry_after(d->x);
        d->retry_after = ra > 0 ? (ra < UINT16_MAX ? ra : UINT16_MAX) : 0;
        attempt_failed(d, NULL, key);
        return;
    }
    if (ws ? status != (h2 ? 200 : 101) : status < 200) {
        attempt_failed(d, "protocol", NULL);
        return;
    }
    int keep = ws || h2 || h1_keep_alive(d->x);
    fs_count_admitted((ev_time() - d->attempt_start) * 1000.0);
    attempt_end(d);
    d->failures = 0;
    d->retry_after = 0;
    if (!keep) {
        dev_close(d);
    } else {
        d->state = DEV_HOLDING;
        io_want(d, EV_READ);
        if (!d->counted) {
            d->counted = 1;
            fs_connected_add(1);
        }
    }
    if (d->crashloop)
        timer_arm(d, 1.0 / fs.cfg.crash_rate);
    else if (!ws)
        timer_arm(d, fs.cfg.poll_interval);
    if (!keep)
        d->state = DEV_WAIT;
}

/* The held connection closed or failed: reconnect per the behaviour. */
static void dev_lost(struct device *d)
{
    /* ws-h2: the tunnel's close frame may have said when to come back
     * (h2.c keeps it with the session, which dev_close frees). */
    int ra = d->h2 ? h2_retry_after(d) : 0;
    if (ra > 0)
        d->retry_after = ra < UINT16_MAX ? (uint16_t)ra : UINT16_MAX;
    ev_timer_stop(fs.loop, &d->timer);
    dev_close(d);
    d->failures = 1;
    dev_wait(d, dev_backoff(d));
}

/* The connection is up (and TLS done): the exchange starts. h2: the
 * session and the attempt's stream. Returns -1 when the attempt failed. */
static int exchange_open(struct device *d)
{
    d->state = DEV_EXCHANGE;
    if (dev_is_h2()) {
        if (d->ssl && !net_alpn_is(d, "h2")) {
            attempt_failed(d, "protocol", NULL); /* the server did not pick h2 */
            return -1;
        }
        if (h2_session_new(d) < 0 || h2_attempt_begin(d) < 0) {
            attempt_failed(d, "protocol", NULL);
            return -1;
        }
    }
    io_want(d, EV_READ | EV_WRITE);
    return 0;
}

/* h2, in an exchange or holding: the session reads and writes; the
 * attempt ends when its stream has an answer or is reset. */
static void h2_io(struct device *d, int revents)
{
    char buf[8192];
    int want, holding = d->state == DEV_HOLDING;
    if (revents & EV_READ) {
        for (int i = 0; i < 16; i++) {
            ssize_t r = net_recv(d, buf, sizeof buf, &want);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            if (r <= 0) {
                if (holding)
                    dev_lost(d);
                else
                    attempt_failed(d, d->ssl && r < 0 && errno == EPROTO ? "tls" : "reset", NULL);
                return;
            }
            enum h1_result res = h2_read(d, buf, (size_t)r);
            if (holding) {
                if (res == H1_BAD || h2_tunnel_lost(d)) {
                    dev_lost(d);
                    return;
                }
                continue;
            }
            if (res == H1_BAD || res == H1_RESET) {
                attempt_failed(d, res == H1_BAD ? "protocol" : "reset", NULL);
                return;
            }
            if (res == H1_DONE) {
                attempt_answered(d);
                if (d->state != DEV_HOLDING || !d->h2)
                    return;
                holding = 1;
            }
        }
    }
    if (h2_write(d) < 0) {
        if (holding)
            dev_lost(d);
        else
            attempt_failed(d, "reset", NULL);
        return;
    }
    io_want(d, h2_want_write(d) ? EV_READ | EV_WRITE : EV_READ);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct device *d = DEV_OF(w, io);
    char buf[4096];
    if (d->state == DEV_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
            attempt_failed(d, "connect", NULL);
            return;
        }
        if (fs.cfg.tls) {
            if (net_tls_start(d) < 0) {
                attempt_failed(d, "tls", NULL);
                return;
            }
            d->state = DEV_HANDSHAKE;
        } else if (exchange_open(d) < 0) {
            return;
        } else {
            revents = EV_WRITE;
        }
    }
    int want;
    if (d->state == DEV_HANDSHAKE) {
        int r = net_tls_handshake(d, &want);
        if (r < 0) {
            attempt_failed(d, "tls", NULL);
            return;
        }
        if (r == 0) {
            io_want(d, want);
            return;
        }
        if (exchange_open(d) < 0)
            return;
        revents = EV_WRITE;
    }
    if (d->state == DEV_EXCHANGE && d->h2) {
        h2_io(d, revents);
        return;
    }
    if (d->state == DEV_HOLDING && d->h2) {
        h2_io(d, revents);
        return;
    }
    if (d->state == DEV_EXCHANGE) {
        if (revents & EV_WRITE) {
            const char *p;
            size_t n = h1_pending(d->x, &p);
            ssize_t r = n ? net_send(d, p, n, &want) : 0;
            if (r < 0 && errno != EAGAIN) {
                attempt_failed(d, d->ssl ? "tls" : "reset", NULL);
                return;
            }
            if (r > 0)
                h1_sent(d->x, (size_t)r);
            if (h1_pending(d->x, &p) == 0)
                io_want(d, EV_READ);
        }
        if (!(revents & EV_READ))
            return;
        for (int i = 0; i < 16; i++) {
            ssize_t r = net_recv(d, buf, sizeof buf, &want);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                if (want == EV_WRITE) /* TLS: a read that must write first */
                    io_want(d, EV_READ | EV_WRITE);
                return;
            }
            if (r <= 0) {
                if (r == 0 && h1_eof(d->x) == H1_DONE)
                    attempt_answered(d);
                else
                    attempt_failed(d, "reset", NULL);
                return;
            }
            enum h1_result res = h1_feed(d->x, buf, (size_t)r);
            if (res == H1_BAD) {
                attempt_failed(d, "protocol", NULL);
                return;
            }
            if (res == H1_DONE) {
                /* The tunnel's first bytes may have come with its 101: a
                 * close that says when to come back, if evicted at once. */
                int ra = h1_tunnel_retry_after(d->x, buf, (size_t)r);
                attempt_answered(d);
                if (ra > 0)
                    d->retry_after = (uint16_t)ra;
                return;
            }
        }
        return;
    }
    if (d->state == DEV_HOLDING) {
        /* Tunnel data (echo) or an unasked-for byte on a kept connection:
         * read and drop; EOF or an error is the loss of the connection. */
        for (int i = 0; i < 4; i++) {
            ssize_t r = net_recv(d, buf, sizeof buf, &want);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                io_want(d, want == EV_WRITE ? EV_READ | EV_WRITE : EV_READ);
                return;
            }
            if (r <= 0) {
                dev_lost(d);
                return;
            }
            int ra = dev_is_ws() ? fs_ws_close_retry_after(buf, (size_t)r) : 0;
            if (ra > 0)
                d->retry_after = (uint16_t)ra; /* a close that says when to come back */
        }
    }
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct device *d = DEV_OF(w, timer);
    switch (d->state) {
    case DEV_WAIT:
        attempt_start(d);
        break;
    case DEV_CONNECTING:
    case DEV_HANDSHAKE:
    case DEV_EXCHANGE:
        attempt_failed(d, "timeout", NULL);
        break;
    case DEV_HOLDING:
        if (d->crashloop)
            dev_close(d); /* the crash: a fresh connection each time */
        attempt_start(d);
        break;
    default:
        break;
    }
}

int device_headers(const struct device *d, struct fs_header *out, char *store, size_t store_len)
{
    const struct fs_config *c = &fs.cfg;
    const struct fs_class *cl = &c->classes[d->cls];
    int n = 0;
    size_t used = 0;
#define DEV_HDR(nm, val) \
    (out[n].name = (nm), out[n].name_len = strlen(nm), out[n].value = (val), \
     out[n].value_len = strlen(val), n++)
    int l = snprintf(store, store_len, "dev-%u", d->idx);
    DEV_HDR(c->id_header, store);
    used = (size_t)l + 1;
    if (cl->name[0])
        DEV_HDR("x-device-class", cl->name);
    if (cl->firmware[0])
        DEV_HDR("x-firmware-version", cl->firmware);
    if (c->xff.set && used + 16 <= store_len) {
        uint32_t a = c->xff.base + d->idx % c->xff.count;
        snprintf(store + used, store_len - used, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255,
                 (a >> 8) & 255, a & 255);
        DEV_HDR("x-forwarded-for", store + used);
    }
#undef DEV_HDR
    for (int i = 0; i < c->nheaders; i++) { /* "Name: value", checked by the flags */
        const char *h = c->headers[i], *colon = strchr(h, ':'), *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        out[n].name = h;
        out[n].name_len = (size_t)(colon - h);
        out[n].value = v;
        out[n].value_len = strlen(v);
        n++;
    }
    return n;
}

void device_start(struct device *d, double delay)
{
    dev_wait(d, delay);
}

void device_storm(struct device *d)
{
    if (d->state == DEV_WAIT || d->state == DEV_STOPPED)
        return; /* already waiting to reconnect */
    if (d->state == DEV_CONNECTING || d->state == DEV_HANDSHAKE || d->state == DEV_EXCHANGE) {
        attempt_end(d);
        fs_count_error("storm");
    }
    ev_timer_stop(fs.loop, &d->timer);
    dev_close(d);
    if (d->failures < UINT16_MAX)
        d->failures++;
    dev_wait(d, dev_backoff(d));
}

void device_stop(struct device *d)
{
    if (d->state == DEV_CONNECTING || d->state == DEV_HANDSHAKE || d->state == DEV_EXCHANGE) {
        attempt_end(d);
        fs_count_error("unfinished");
    }
    ev_timer_stop(fs.loop, &d->timer);
    dev_close(d);
    d->state = DEV_STOPPED;
}
