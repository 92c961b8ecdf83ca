/* standin: a stand-in identity API with a realistic capacity, for the demo
 * and for storm rehearsals (test/tools/fleetsim/, contract in README.md's
 * "Storm demo" section and deploy/runbooks/rehearse-a-storm.md).
 *
 * Capacity model, the database-bound connect handler of the postmortems:
 *   - --workers slots serve one request each for --service-ms;
 *   - a request that finds every slot busy waits in one FIFO queue, so
 *     latency grows with load (queueing: wait = depth / workers * service);
 *   - a request that arrives when --fail-queue or more are already waiting
 *     is queued "doomed": when it reaches a slot it is answered 500 at once
 *     (the handler gave up on the database), so 500s arrive late, as in
 *     production;
 *   - a request that arrives when --stall-queue or more are waiting is never
 *     answered: the client times out (a hung handler);
 *   - a request whose client went away still takes its slot when its turn
 *     comes (the handler does not know), which is what makes storms worse.
 * /healthz answers 200 at once, outside the pool. A WebSocket Upgrade goes
 * through the pool like any request, is answered 101 and then held: frames
 * are echoed, ping answered with pong, close with close. An idle tunnel
 * holds no buffer (about 200 bytes per tunnel).
 *
 * HTTP/1.1 only (sluice talks h1 to upstreams), one thread, libev.
 * Per --report-interval it writes one JSON line to --stats (default stdout):
 *   {"type":"tick","t":..,"requests":N,"ok":N,"errors_500":N,"stalled":N,
 *    "inflight":N,"queued":N,"tunnels":N,"latency_ms":{"p50":..,"p99":..}}
 * counts are per interval, inflight/queued/tunnels are the state at the tick,
 * latency is arrival to answer of the requests answered in the interval
 * (200, 101 and 500). The last line is {"type":"summary",...} with totals.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#define STANDIN_HEAD_MAX 8192   /* request head larger than this: 431, close */
#define STANDIN_FRAME_MAX 65536 /* tunnel frame larger than this: close */

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

struct standin_opts {
    struct sockaddr_in listen;
    int workers;
    double service_s;
    int fail_queue;
    int stall_queue;
    const char *stats_path;
    double report_s;
    double duration_s;
};

enum conn_state {
    CONN_READING,  /* waiting for (the rest of) a request head */
    CONN_WAITING,  /* request queued or in a worker slot */
    CONN_STALLED,  /* never answered; the client will time out */
    CONN_TUNNEL,   /* 101 sent: WebSocket echo */
};

struct request;

struct conn {
    int fd;
    enum conn_state state;
    bool close_after; /* Connection: close, or an error answer */
    ev_io rio;
    ev_io wio;
    char *in;         /* NULL while empty: idle connections hold no buffer */
    size_t in_len, in_cap;
    char *out;        /* bytes not yet written; NULL when drained */
    size_t out_len, out_off;
    struct request *req; /* the request in flight, NULL otherwise */
};

/* A request outlives its connection: a slot still serves an abandoned one. */
struct request {
    struct conn *conn;     /* NULL once the client went away */
    struct request *next;  /* FIFO link */
    ev_tstamp arrived;
    bool websocket;
    bool doomed;           /* answered 500 when it reaches a slot */
    char accept[32];       /* Sec-WebSocket-Accept, when websocket */
};

struct worker {
    ev_timer timer;
    struct request *req;   /* NULL when the slot is free */
};

struct latency_window {
    double *v;
    size_t n, cap;
};

struct counters {
    uint64_t requests, ok, errors_500, stalled;
};

static struct standin_opts g_opts;
static struct ev_loop *g_loop;
static FILE *g_stats;
static struct worker *g_workers;
static int g_busy;
static struct request *g_qhead, *g_qtail;
static int g_queued;
static int g_tunnels;
static struct counters g_tick, g_total;
static struct latency_window g_lat;
static ev_tstamp g_start;

static void conn_close(struct conn *c);
static void conn_process(struct conn *c);
static void tunnel_process(struct conn *c);

static void die(const char *msg)
{
    fprintf(stderr, "standin: %s\n", msg);
    exit(2);
}

static void latency_add(double ms)
{
    if (g_lat.n == g_lat.cap) {
        size_t cap = g_lat.cap ? g_lat.cap * 2 : 1024;
        double *v = realloc(g_lat.v, cap * sizeof(*v));
        if (!v)
            return; /* a lost sample, not a lost process */
        g_lat.v = v;
        g_lat.cap = cap;
    }
    g_lat.v[g_lat.n++] = ms;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of the sorted window; 0 when empty. */
static double latency_pct(double p)
{
    if (g_lat.n == 0)
        return 0;
    size_t i = (size_t)(p * (double)g_lat.n);
    if (i >= g_lat.n)
        i = g_lat.n - 1;
    return g_lat.v[i];
}

/* ---- output ---------------------------------------------------------- */

/* Write what is queued. Returns false when |c| was closed. */
static bool conn_flush(struct conn *c)
{
    while (c->out && c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                ev_io_start(g_loop, &c->wio);
                return true;
            }
            conn_close(c);
            return false;
        }
        c->out_off += (size_t)n;
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
    ev_io_stop(g_loop, &c->wio);
    if (c->close_after) {
        conn_close(c);
        return false;
    }
    /* A pipelined request may be waiting in the buffer. */
    if (c->state == CONN_READING && c->in_len)
        conn_process(c);
    return true;
}

/* Queue |len| bytes for |c| and try to write them. Returns false when |c|
 * was closed. */
static bool conn_send(struct conn *c, const char *data, size_t len)
{
    char *out = realloc(c->out, c->out_len + len);
    if (!out) {
        conn_close(c);
        return false;
    }
    memcpy(out + c->out_len, data, len);
    c->out = out;
    c->out_len += len;
    return conn_flush(c);
}

static void conn_send_status(struct conn *c, int status, const char *reason, const char *body)
{
    char buf[512];
    int n = snprintf(buf, sizeof(buf),
                     "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                     "content-length: %zu\r\n%s\r\n%s",
                     status, reason, strlen(body), c->close_after ? "connection: close\r\n" : "",
                     body);
    conn_send(c, buf, (size_t)n);
}

/* ---- the worker pool ------------------------------------------------- */

/* Answer |r| (its slot is done) and free it. */
static void request_answer(struct request *r, ev_tstamp now)
{
    struct conn *c = r->conn;
    if (r->doomed)
        g_tick.errors_500++, g_total.errors_500++;
    else
        g_tick.ok++, g_total.ok++;
    latency_add((now - r->arrived) * 1000.0);
    if (c) {
        c->req = NULL;
        if (r->doomed) {
            c->state = CONN_READING;
            conn_send_status(c, 500, "Internal Server Error", "{\"error\":\"database timeout\"}");
        } else if (r->websocket) {
            char buf[256];
            int n = snprintf(buf, sizeof(buf),
                             "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                             "connection: Upgrade\r\nsec-websocket-accept: %s\r\n\r\n",
                             r->accept);
            c->state = CONN_TUNNEL;
            g_tunnels++;
            if (conn_send(c, buf, (size_t)n) && c->in_len)
                tunnel_process(c); /* frames sent before the 101 */
        } else {
            c->state = CONN_READING;
            conn_send_status(c, 200, "OK", "{\"status\":\"connected\"}");
        }
    }
    free(r);
}

static void pool_dispatch(ev_tstamp now);

static void worker_done(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = container_of(t, struct worker, timer);
    struct request *r = w->req;
    w->req = NULL;
    g_busy--;
    request_answer(r, ev_now(loop));
    pool_dispatch(ev_now(loop));
}

/* Hand queued requests to free slots. A doomed request costs no service
 * time: it is answered as soon as it reaches a slot. */
static void pool_dispatch(ev_tstamp now)
{
    for (int i = 0; i < g_opts.workers && g_qhead; i++) {
        struct worker *w = &g_workers[i];
        if (w->req)
            continue;
        while (g_qhead) {
            struct request *r = g_qhead;
            g_qhead = r->next;
            if (!g_qhead)
                g_qtail = NULL;
            g_queued--;
            if (r->doomed) {
                request_answer(r, now);
                continue;
            }
            w->req = r;
            g_busy++;
            ev_timer_init(&w->timer, worker_done, g_opts.service_s, 0.);
            ev_timer_start(g_loop, &w->timer);
            break;
        }
    }
}

/* Admit |r| to the pool: a free slot, the queue, doomed, or stalled. */
static void pool_submit(struct conn *c, struct request *r)
{
    g_tick.requests++, g_total.requests++;
    if (g_queued >= g_opts.stall_queue) {
        g_tick.stalled++, g_total.stalled++;
        c->state = CONN_STALLED;
        free(r);
        return;
    }
    r->doomed = g_queued >= g_opts.fail_queue;
    r->conn = c;
    c->req = r;
    c->state = CONN_WAITING;
    r->next = NULL;
    if (g_qtail)
        g_qtail->next = r;
    else
        g_qhead = r;
    g_qtail = r;
    g_queued++;
    if (g_busy < g_opts.workers)
        pool_dispatch(ev_now(g_loop));
}

/* ---- HTTP/1.1 requests ----------------------------------------------- */

/* The value of header |name| in the head [p, end), or NULL; *len its length. */
static const char *header_find(const char *p, const char *end, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *len = (size_t)(ve - v);
            return v;
        }
        p = eol + 2;
    }
    return NULL;
}

static bool value_has(const char *v, size_t len, const char *token)
{
    size_t tl = strlen(token);
    for (size_t i = 0; v && i + tl <= len; i++)
        if (strncasecmp(v + i, token, tl) == 0)
            return true;
    return false;
}

static void ws_accept(const char *key, size_t len, char out[32])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[SHA_DIGEST_LENGTH];
    char buf[128];
    if (len > sizeof(buf) - sizeof(guid))
        len = sizeof(buf) - sizeof(guid);
    memcpy(buf, key, len);
    memcpy(buf + len, guid, sizeof(guid) - 1);
    SHA1((unsigned char *)buf, len + sizeof(guid) - 1, md);
    EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
}

static void conn_consume(struct conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
    if (c->in_len == 0) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
}

/* One request head from c->in, if complete. */
static void http_process(struct conn *c)
{
    const char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) {
        if (c->in_len >= STANDIN_HEAD_MAX) {
            c->close_after = true;
            conn_send_status(c, 431, "Request Header Fields Too Large", "{\"error\":\"head\"}");
        }
        return;
    }
    size_t head_len = (size_t)(end - c->in) + 4;
    const char *line_end = memmem(c->in, head_len, "\r\n", 2);
    const char *hdrs = line_end + 2;
    size_t vlen = 0, body = 0;
    const char *v = header_find(hdrs, end, "content-length", &vlen);
    if (v) {
        char num[24] = {0};
        memcpy(num, v, vlen < sizeof(num) - 1 ? vlen : sizeof(num) - 1);
        body = strtoul(num, NULL, 10);
    }
    if (body > STANDIN_HEAD_MAX) {
        c->close_after = true;
        conn_send_status(c, 413, "Payload Too Large", "{\"error\":\"body\"}");
        return;
    }
    if (c->in_len < head_len + body)
        return; /* wait for the body */
    bool healthz = line_end - c->in >= 12 && memcmp(c->in, "GET /healthz", 12) == 0;
    v = header_find(hdrs, end, "connection", &vlen);
    if (v && value_has(v, vlen, "close"))
        c->close_after = true;
    size_t ulen = 0, klen = 0;
    const char *up = header_find(hdrs, end, "upgrade", &ulen);
    const char *key = header_find(hdrs, end, "sec-websocket-key", &klen);
    bool websocket = up && value_has(up, ulen, "websocket") && key;
    struct request r0 = {.arrived = ev_now(g_loop), .websocket = websocket};
    if (websocket)
        ws_accept(key, klen, r0.accept);
    conn_consume(c, head_len + body);
    if (healthz) {
        conn_send_status(c, 200, "OK", "{\"status\":\"ok\"}");
        return;
    }
    struct request *r = malloc(sizeof(*r));
    if (!r) {
        c->close_after = true;
        conn_send_status(c, 503, "Service Unavailable", "{\"error\":\"memory\"}");
        return;
    }
    *r = r0;
    pool_submit(c, r);
}

/* ---- WebSocket echo -------------------------------------------------- */

/* Echo every complete frame of c->in, unmasked (RFC 6455 5.1). */
static void tunnel_process(struct conn *c)
{
    while (c->in_len >= 2) {
        const unsigned char *p = (const unsigned char *)c->in;
        int op = p[0] & 0x0f;
        bool masked = p[1] & 0x80;
        uint64_t len = p[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            if (c->in_len < 4)
                return;
            len = ((uint64_t)p[2] << 8) | p[3];
            hl = 4;
        } else if (len == 127) {
            if (c->in_len < 10)
                return;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | p[2 + i];
            hl = 10;
        }
        if (len > STANDIN_FRAME_MAX) {
            conn_close(c);
            return;
        }
        size_t mk = masked ? 4 : 0;
        if (c->in_len < hl + mk + len)
            return;
        unsigned char *payload = (unsigned char *)c->in + hl + mk;
        for (uint64_t i = 0; masked && i < len; i++)
            payload[i] ^= p[hl + (i & 3)];
        unsigned char hdr[10];
        size_t ohl = 2;
        int oop = op == 0x9 ? 0xA : op; /* ping -> pong */
        hdr[0] = (unsigned char)(0x80 | oop);
        if (len < 126) {
            hdr[1] = (unsigned char)len;
        } else {
            hdr[1] = 126;
            hdr[2] = (unsigned char)(len >> 8);
            hdr[3] = (unsigned char)len;
            ohl = 4;
        }
        bool closing = op == 0x8;
        if (op != 0xA) { /* an unsolicited pong needs no answer */
            char *frame = malloc(ohl + len);
            if (!frame) {
                conn_close(c);
                return;
            }
            memcpy(frame, hdr, ohl);
            memcpy(frame + ohl, payload, len);
            if (closing)
                c->close_after = true;
            conn_consume(c, hl + mk + len);
            bool alive = conn_send(c, frame, ohl + len);
            free(frame);
            if (!alive || closing)
                return;
        } else {
            conn_consume(c, hl + mk + len);
        }
    }
}

/* ---- connections ------------------------------------------------------ */

static void conn_process(struct conn *c)
{
    if (c->state == CONN_TUNNEL)
        tunnel_process(c);
    else if (c->state == CONN_READING && !c->out)
        http_process(c);
    /* CONN_WAITING / CONN_STALLED: bytes wait in the buffer (pipelining). */
}

static void conn_close(struct conn *c)
{
    if (c->req)
        c->req->conn = NULL; /* its slot still serves it */
    if (c->state == CONN_TUNNEL)
        g_tunnels--;
    ev_io_stop(g_loop, &c->rio);
    ev_io_stop(g_loop, &c->wio);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

static void conn_on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    conn_flush(container_of(w, struct conn, wio));
}

static void conn_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = container_of(w, struct conn, rio);
    size_t cap = c->state == CONN_TUNNEL ? STANDIN_FRAME_MAX + 16 : STANDIN_HEAD_MAX * 2 + 16;
    if (c->in_cap < cap) {
        char *in = realloc(c->in, cap);
        if (!in) {
            conn_close(c);
            return;
        }
        c->in = in;
        c->in_cap = cap;
    }
    if (c->in_len >= c->in_cap) {
        /* Not reading while a full buffer waits (pipelining behind a
         * queued request): the kernel's window pushes back. */
        ev_io_stop(loop, &c->rio);
        return;
    }
    ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        conn_close(c);
        return;
    }
    if (n > 0) {
        c->in_len += (size_t)n;
        conn_process(c);
        return; /* c may be gone */
    }
    if (c->in_len == 0) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    for (int i = 0; i < 256; i++) { /* bounded work per wake-up */
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                fprintf(stderr, "standin: accept: %s\n", strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        ev_io_init(&c->rio, conn_on_read, fd, EV_READ);
        ev_io_init(&c->wio, conn_on_write, fd, EV_WRITE);
        ev_io_start(loop, &c->rio);
    }
}

/* ---- stats and lifetime ---------------------------------------------- */

static void stats_write(const char *type, const struct counters *k, double t)
{
    qsort(g_lat.v, g_lat.n, sizeof(double), cmp_double);
    fprintf(g_stats,
            "{\"type\":\"%s\",\"t\":%.3f,\"requests\":%llu,\"ok\":%llu,\"errors_500\":%llu,"
            "\"stalled\":%llu,\"inflight\":%d,\"queued\":%d,\"tunnels\":%d,"
            "\"latency_ms\":{\"p50\":%.1f,\"p99\":%.1f}}\n",
            type, t, (unsigned long long)k->requests, (unsigned long long)k->ok,
            (unsigned long long)k->errors_500, (unsigned long long)k->stalled, g_busy, g_queued,
            g_tunnels, latency_pct(0.50), latency_pct(0.99));
    fflush(g_stats);
    g_lat.n = 0;
}

static void on_report(struct ev_loop *loop, ev_timer *t, int revents)
{
    stats_write("tick", &g_tick, ev_now(loop) - g_start);
    memset(&g_tick, 0, sizeof(g_tick));
}

static void on_stop(struct ev_loop *loop, ev_signal *s, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

static void on_duration(struct ev_loop *loop, ev_timer *t, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

static void usage(void)
{
    die("usage: standin --listen 127.0.0.1:PORT [--workers 64] [--service-ms 5] "
        "[--fail-queue 256] [--stall-queue 1024] [--stats FILE] [--report-interval MS] "
        "[--duration S]");
}

static double num_arg(const char *flag, const char *v, double lo, double hi)
{
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || d < lo || d > hi) {
        fprintf(stderr, "standin: %s: '%s' is not a number in [%g, %g]\n", flag, v, lo, hi);
        exit(2);
    }
    return d;
}

static void parse_args(int argc, char **argv)
{
    g_opts.workers = 64;
    g_opts.service_s = 0.005;
    g_opts.fail_queue = 256;
    g_opts.stall_queue = 1024;
    g_opts.report_s = 1.0;
    bool have_listen = false;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (!strcmp(f, "--listen")) {
            char host[64];
            const char *colon = strrchr(v, ':');
            if (!colon || (size_t)(colon - v) >= sizeof(host))
                die("--listen: want HOST:PORT");
            memcpy(host, v, (size_t)(colon - v));
            host[colon - v] = 0;
            g_opts.listen.sin_family = AF_INET;
            g_opts.listen.sin_port = htons((uint16_t)num_arg(f, colon + 1, 1, 65535));
            if (inet_pton(AF_INET, host, &g_opts.listen.sin_addr) != 1)
                die("--listen: want an IPv4 address");
            have_listen = true;
        } else if (!strcmp(f, "--workers")) {
            g_opts.workers = (int)num_arg(f, v, 1, 100000);
        } else if (!strcmp(f, "--service-ms")) {
            g_opts.service_s = num_arg(f, v, 0, 600000) / 1000.0;
        } else if (!strcmp(f, "--fail-queue")) {
            g_opts.fail_queue = (int)num_arg(f, v, 0, 10000000);
        } else if (!strcmp(f, "--stall-queue")) {
            g_opts.stall_queue = (int)num_arg(f, v, 0, 10000000);
        } else if (!strcmp(f, "--stats")) {
            g_opts.stats_path = v;
        } else if (!strcmp(f, "--report-interval")) {
            g_opts.report_s = num_arg(f, v, 10, 3600000) / 1000.0;
        } else if (!strcmp(f, "--duration")) {
            g_opts.duration_s = num_arg(f, v, 0, 1e7);
        } else {
            fprintf(stderr, "standin: unknown flag %s\n", f);
            exit(2);
        }
    }
    if (!have_listen)
        usage();
    if (g_opts.stall_queue < g_opts.fail_queue)
        die("--stall-queue must be at least --fail-queue");
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    /* 10,000 tunnels and their clients: raise the soft limit to the hard. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    g_stats = stdout;
    if (g_opts.stats_path && !(g_stats = fopen(g_opts.stats_path, "w"))) {
        perror(g_opts.stats_path);
        return 2;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&g_opts.listen, sizeof(g_opts.listen)) < 0 ||
        listen(lfd, 4096) < 0) {
        perror("standin: listen");
        return 2;
    }
    g_workers = calloc((size_t)g_opts.workers, sizeof(*g_workers));
    if (!g_workers)
        die("out of memory");
    g_loop = EV_DEFAULT;
    g_start = ev_now(g_loop);
    ev_io accept_w;
    ev_io_init(&accept_w, on_accept, lfd, EV_READ);
    ev_io_start(g_loop, &accept_w);
    ev_timer report_w, duration_w;
    ev_timer_init(&report_w, on_report, g_opts.report_s, g_opts.report_s);
    ev_timer_start(g_loop, &report_w);
    if (g_opts.duration_s > 0) {
        ev_timer_init(&duration_w, on_duration, g_opts.duration_s, 0.);
        ev_timer_start(g_loop, &duration_w);
    }
    ev_signal term_w, int_w;
    ev_signal_init(&term_w, on_stop, SIGTERM);
    ev_signal_start(g_loop, &term_w);
    ev_signal_init(&int_w, on_stop, SIGINT);
    ev_signal_start(g_loop, &int_w);
    fprintf(stderr, "standin: listening on %s:%d workers=%d service=%.1fms fail-queue=%d "
            "stall-queue=%d\n", inet_ntoa(g_opts.listen.sin_addr), ntohs(g_opts.listen.sin_port),
            g_opts.workers, g_opts.service_s * 1000, g_opts.fail_queue, g_opts.stall_queue);
    ev_run(g_loop, 0);
    ev_now_update(g_loop);
    stats_write("summary", &g_total, ev_now(g_loop) - g_start);
    return 0;
}
