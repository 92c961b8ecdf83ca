/* standin: a stand-in identity API with a realistic capacity.
 *
 *   build/standin --listen 127.0.0.1:PORT [--workers 64] [--service-ms 5]
 *                 [--fail-queue 256] [--stall-queue 1024] [--stats FILE]
 *                 [--report-interval MS] [--duration S]
 *
 * It behaves like the database-bound connect handlers of the postmortems: a
 * bounded pool of --workers slots, each request holding one for --service-ms.
 * Requests that find every slot busy wait in one FIFO queue, so latency grows
 * with load (queueing). Past --fail-queue waiting requests it answers 500
 * after --service-ms (the handler's pool wait gives up); past --stall-queue
 * unanswered requests it reads the request and never answers (the client
 * times out), as a wedged database does. /healthz answers 200 without queueing. A WebSocket Upgrade goes
 * through the queue like any connect, is answered 101 and then held as an
 * echo tunnel that costs one small struct and no buffer while idle, so 10,000
 * tunnels are cheap.
 *
 * HTTP/1.1 only (sluice talks HTTP/1.1 to upstreams), keep-alive, one request
 * at a time per connection; one thread, libev. Per --report-interval it
 * writes one JSON line (the fleetsim contract, test/tools/fleetsim/):
 *   {"type":"tick","t":..,"requests":N,"ok":N,"errors_500":N,"stalled":N,
 *    "inflight":N,"queued":N,"tunnels":N,"latency_ms":{"p50":..,"p99":..}}
 * Exit 0 after --duration or on SIGTERM/SIGINT, 2 with one line on bad flags.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define STANDIN_HEAD_MAX 8192 /* a larger request head is answered 431 */

enum sd_state {
	SD_READING,  /* reading a request head */
	SD_QUEUED,   /* waiting for a worker slot */
	SD_SERVING,  /* holding a worker slot for --service-ms */
	SD_FAILING,  /* told 500 after --service-ms (the pool wait gave up) */
	SD_STALLED,  /* never answered: the client times out */
	SD_WRITING,  /* response in flight, then back to SD_READING or tunnel */
	SD_TUNNEL,   /* WebSocket echo */
};

struct sd_conn {
	int fd;
	enum sd_state state;
	ev_io io;
	ev_timer service;        /* the worker slot's service time */
	char *buf;               /* input; NULL while an idle tunnel */
	size_t len, cap;
	char *out;               /* pending output */
	size_t out_len, out_off;
	ev_tstamp arrived;       /* when the request head was complete */
	int upgrade;             /* the request asks for a WebSocket */
	int close_after;         /* Connection: close, or protocol error */
	char ws_key[64];
	struct sd_conn *q_next, *q_prev;
};

struct sd_opts {
	struct sockaddr_in listen;
	int workers, fail_queue, stall_queue, report_ms;
	double service_ms, duration_s;
	const char *stats_path;
};

/* The counters of one report interval; gauges are read when ticking. */
struct sd_tick {
	uint64_t requests, ok, errors_500, stalled;
	double *lat;             /* latencies (ms) of answered requests */
	size_t lat_n, lat_cap;
};

static struct sd_opts g_opt = {
	.workers = 64, .fail_queue = 256, .stall_queue = 1024, .report_ms = 1000,
	.service_ms = 5.0, .duration_s = 0,
};
static struct ev_loop *g_loop;
static struct sd_tick g_tick;
static FILE *g_stats;
static ev_tstamp g_start;
static int g_busy;                /* worker slots in use */
static size_t g_queued, g_failing, g_stalled_now, g_tunnels;
static struct sd_conn *g_q_head, *g_q_tail;

static void sd_conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void sd_conn_process(struct sd_conn *c);

static void sd_usage_exit(const char *msg)
{
	fprintf(stderr, "standin: %s\n", msg);
	exit(2);
}

static void sd_lat_add(double ms)
{
	if (g_tick.lat_n == g_tick.lat_cap) {
		size_t cap = g_tick.lat_cap ? g_tick.lat_cap * 2 : 1024;
		double *p = realloc(g_tick.lat, cap * sizeof(*p));
		if (!p)
			return; /* a lost sample skews one tick's percentiles, nothing else */
		g_tick.lat = p;
		g_tick.lat_cap = cap;
	}
	g_tick.lat[g_tick.lat_n++] = ms;
}

static int sd_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Nearest-rank percentile of the sorted samples; 0 when there are none. */
static double sd_percentile(const double *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t rank = (size_t)(p * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1];
}

/* ---- the queue of requests waiting for a worker slot ---- */

static void sd_queue_push(struct sd_conn *c)
{
	c->q_next = NULL;
	c->q_prev = g_q_tail;
	if (g_q_tail)
		g_q_tail->q_next = c;
	else
		g_q_head = c;
	g_q_tail = c;
	g_queued++;
}

static void sd_queue_remove(struct sd_conn *c)
{
	if (c->q_prev)
		c->q_prev->q_next = c->q_next;
	else
		g_q_head = c->q_next;
	if (c->q_next)
		c->q_next->q_prev = c->q_prev;
	else
		g_q_tail = c->q_prev;
	c->q_next = c->q_prev = NULL;
	g_queued--;
}

/* ---- connections ---- */

static void sd_conn_free(struct sd_conn *c)
{
	switch (c->state) {
	case SD_QUEUED:
		sd_queue_remove(c);
		break;
	case SD_SERVING:
		ev_timer_stop(g_loop, &c->service);
		g_busy--;
		break;
	case SD_FAILING:
		ev_timer_stop(g_loop, &c->service);
		g_failing--;
		break;
	case SD_STALLED:
		g_stalled_now--;
		break;
	case SD_TUNNEL:
		g_tunnels--;
		break;
	default:
		break;
	}
	ev_io_stop(g_loop, &c->io);
	close(c->fd);
	free(c->buf);
	free(c->out);
	free(c);
}

static void sd_conn_want(struct sd_conn *c, int events)
{
	if ((c->io.events & (EV_READ | EV_WRITE)) == events)
		return;
	ev_io_stop(g_loop, &c->io);
	ev_io_set(&c->io, c->fd, events);
	if (events)
		ev_io_start(g_loop, &c->io);
}

/* Appends to the pending output; 0, or -1 when out of memory. */
static int sd_conn_send(struct sd_conn *c, const void *data, size_t n)
{
	char *p = realloc(c->out, c->out_len + n);
	if (!p)
		return -1;
	memcpy(p + c->out_len, data, n);
	c->out = p;
	c->out_len += n;
	return 0;
}

/* Writes what it can; 0 when all is written, 1 when it must wait, -1 on error. */
static int sd_conn_flush(struct sd_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 1;
			if (errno == EINTR)
				continue;
			return -1;
		}
		c->out_off += (size_t)n;
	}
	free(c->out);
	c->out = NULL;
	c->out_len = c->out_off = 0;
	return 0;
}

static void sd_respond(struct sd_conn *c, int status, const char *reason, const char *body)
{
	char head[256];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\n%s\r\n",
			 status, reason, strlen(body), c->close_after ? "Connection: close\r\n" : "");
	if (sd_conn_send(c, head, (size_t)n) < 0 || sd_conn_send(c, body, strlen(body)) < 0)
		c->close_after = 1;
	c->state = SD_WRITING;
}

static void sd_respond_101(struct sd_conn *c)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	unsigned char sha[SHA_DIGEST_LENGTH];
	char cat[128], accept[64], head[256];
	int n = snprintf(cat, sizeof(cat), "%s%s", c->ws_key, guid);
	SHA1((const unsigned char *)cat, (size_t)n, sha);
	EVP_EncodeBlock((unsigned char *)accept, sha, SHA_DIGEST_LENGTH);
	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
	if (sd_conn_send(c, head, (size_t)n) < 0)
		c->close_after = 1;
	c->state = SD_WRITING;
}

/* Writes the pending output and moves on: next request, tunnel, or close. */
static void sd_conn_advance(struct sd_conn *c)
{
	int r = sd_conn_flush(c);
	if (r < 0) {
		sd_conn_free(c);
		return;
	}
	if (r > 0) {
		sd_conn_want(c, EV_WRITE);
		return;
	}
	if (c->state == SD_TUNNEL) {
		sd_conn_want(c, EV_READ);
		return;
	}
	if (c->close_after) {
		sd_conn_free(c);
		return;
	}
	if (c->upgrade) {
		c->state = SD_TUNNEL;
		g_tunnels++;
	} else {
		c->state = SD_READING;
	}
	sd_conn_want(c, EV_READ);
	sd_conn_process(c);
}

/* Drops the first N input bytes; an empty buffer is freed at once, so an
 * idle tunnel or a queued request holds none, and a storm of connections
 * reuses one freed chunk instead of leaving a buffer between every two
 * structs (which no malloc_trim can give back). */
static void sd_conn_consume(struct sd_conn *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
	if (c->len == 0) {
		free(c->buf);
		c->buf = NULL;
		c->cap = 0;
	}
}

/* ---- the worker pool ---- */

static void sd_pool_start(struct sd_conn *c);

/* A worker slot became free: the oldest waiting request takes it. */
static void sd_pool_release(void)
{
	g_busy--;
	if (g_q_head) {
		struct sd_conn *c = g_q_head;
		sd_queue_remove(c);
		sd_pool_start(c);
	}
}

static void sd_service_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sd_conn *c = w->data;
	double ms = (ev_now(loop) - c->arrived) * 1000.0;
	g_tick.ok++;
	sd_lat_add(ms);
	if (c->upgrade)
		sd_respond_101(c);
	else
		sd_respond(c, 200, "OK", "{\"status\":\"connected\"}");
	c->state = SD_WRITING;
	sd_pool_release();
	sd_conn_advance(c);
}

static void sd_pool_start(struct sd_conn *c)
{
	g_busy++;
	c->state = SD_SERVING;
	ev_timer_init(&c->service, sd_service_cb, g_opt.service_ms / 1000.0, 0);
	c->service.data = c;
	ev_timer_start(g_loop, &c->service);
}

static void sd_fail_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sd_conn *c = w->data;
	g_failing--;
	g_tick.errors_500++;
	c->upgrade = 0;
	sd_respond(c, 500, "Internal Server Error", "{\"error\":\"db_pool_exhausted\"}");
	sd_conn_advance(c);
}

/* A complete request head: the capacity model decides its fate. A free
 * worker slot always serves. Otherwise every request not yet answered counts
 * as waiting (queued, failing or stalled): while stalled clients hang on, a
 * busy server stays past its thresholds and keeps failing and stalling new
 * requests, and it recovers as they time out and leave, the way the connect
 * handlers of the postmortems did. */
static void sd_admit(struct sd_conn *c)
{
	size_t waiting = g_queued + g_failing + g_stalled_now;
	g_tick.requests++;
	if (g_busy < g_opt.workers) {
		sd_pool_start(c);
	} else if (waiting >= (size_t)g_opt.stall_queue) {
		c->state = SD_STALLED;
		g_stalled_now++;
		g_tick.stalled++;
	} else if (waiting >= (size_t)g_opt.fail_queue) {
		/* The handler waits --service-ms for a pool slot, then gives up. */
		c->state = SD_FAILING;
		g_failing++;
		ev_timer_init(&c->service, sd_fail_cb, g_opt.service_ms / 1000.0, 0);
		c->service.data = c;
		ev_timer_start(g_loop, &c->service);
	} else {
		c->state = SD_QUEUED;
		sd_queue_push(c);
	}
}

/* ---- HTTP/1.1 request heads ---- */

/* The value of header NAME in HEAD (NUL-terminated), copied into OUT. */
static int sd_header(const char *head, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);
	for (const char *p = strstr(head, "\r\n"); p; p = strstr(p, "\r\n")) {
		p += 2;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1, *e;
			while (*v == ' ' || *v == '\t')
				v++;
			e = strstr(v, "\r\n");
			if (!e)
				return 0;
			while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			size_t n = (size_t)(e - v) < cap - 1 ? (size_t)(e - v) : cap - 1;
			memcpy(out, v, n);
			out[n] = '\0';
			return 1;
		}
	}
	return 0;
}

static void sd_bad_request(struct sd_conn *c, int status, const char *reason)
{
	c->close_after = 1;
	c->upgrade = 0;
	sd_conn_consume(c, c->len);
	sd_respond(c, status, reason, "{\"error\":\"bad_request\"}");
	sd_conn_advance(c);
}

/* Parses one request head when complete, and hands it to the pool. */
static void sd_conn_http(struct sd_conn *c)
{
	char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
	if (!end) {
		if (c->len >= STANDIN_HEAD_MAX)
			sd_bad_request(c, 431, "Request Header Fields Too Large");
		return;
	}
	size_t hl = (size_t)(end - c->buf) + 4;
	char save = c->buf[hl - 2];
	c->buf[hl - 2] = '\0'; /* the head, up to its last header's CRLF, as a string */
	char method[16] = "", path[256] = "", version[16] = "", v[128];
	if (sscanf(c->buf, "%15s %255s %15s", method, path, version) != 3 ||
	    strncmp(version, "HTTP/1.", 7) != 0) {
		c->buf[hl - 2] = save;
		sd_bad_request(c, 400, "Bad Request");
		return;
	}
	unsigned long body = 0;
	if (sd_header(c->buf, "Content-Length", v, sizeof(v))) {
		char *e;
		errno = 0;
		body = strtoul(v, &e, 10);
		if (errno || *e || body > 1 << 20) {
			c->buf[hl - 2] = save;
			sd_bad_request(c, 400, "Bad Request");
			return;
		}
	}
	if (sd_header(c->buf, "Transfer-Encoding", v, sizeof(v))) {
		c->buf[hl - 2] = save;
		sd_bad_request(c, 501, "Not Implemented"); /* no chunked bodies here */
		return;
	}
	c->close_after = (sd_header(c->buf, "Connection", v, sizeof(v)) && strcasestr(v, "close")) ||
			 strcmp(version, "HTTP/1.0") == 0;
	c->upgrade = sd_header(c->buf, "Upgrade", v, sizeof(v)) && strcasecmp(v, "websocket") == 0 &&
		     sd_header(c->buf, "Sec-WebSocket-Key", c->ws_key, sizeof(c->ws_key));
	int healthz = strcmp(path, "/healthz") == 0;
	c->buf[hl - 2] = save;
	if (c->len < hl + body) {
		if (hl + body > c->cap) {
			char *p = realloc(c->buf, hl + body);
			if (!p) {
				sd_conn_free(c);
				return;
			}
			c->buf = p;
			c->cap = hl + body;
		}
		return; /* the body is not all here yet */
	}
	sd_conn_consume(c, hl + body); /* what the head said is kept in the struct */
	c->arrived = ev_now(g_loop);
	if (healthz) {
		c->upgrade = 0;
		sd_respond(c, 200, "OK", "{\"status\":\"ok\"}");
		sd_conn_advance(c);
		return;
	}
	/* One request at a time: reading goes on only to see the client leave
	 * (a queued or stalled request whose client timed out frees its place). */
	sd_admit(c);
}

/* ---- WebSocket echo (RFC 6455, client frames masked) ---- */

/* Echoes every complete frame in the buffer; closes on a close frame. */
static void sd_conn_ws(struct sd_conn *c)
{
	for (;;) {
		unsigned char *b = (unsigned char *)c->buf;
		if (c->len < 2)
			return;
		int op = b[0] & 0x0f, masked = b[1] & 0x80;
		uint64_t plen = b[1] & 0x7f;
		size_t off = 2;
		if (plen == 126) {
			if (c->len < 4)
				return;
			plen = (uint64_t)b[2] << 8 | b[3];
			off = 4;
		} else if (plen == 127) {
			if (c->len < 10)
				return;
			plen = 0;
			for (int i = 0; i < 8; i++)
				plen = plen << 8 | b[2 + i];
			off = 10;
		}
		if (!masked || plen > 1 << 20) {
			sd_conn_free(c); /* protocol error: clients must mask */
			return;
		}
		if (c->len < off + 4 + plen)
			return;
		unsigned char *mask = b + off, *pay = b + off + 4;
		for (uint64_t i = 0; i < plen; i++)
			pay[i] ^= mask[i & 3];
		unsigned char hdr[10];
		size_t hn = 0;
		hdr[hn++] = (unsigned char)(0x80 | (op == 9 ? 10 : op)); /* ping -> pong */
		if (plen < 126) {
			hdr[hn++] = (unsigned char)plen;
		} else if (plen < 65536) {
			hdr[hn++] = 126;
			hdr[hn++] = (unsigned char)(plen >> 8);
			hdr[hn++] = (unsigned char)plen;
		} else {
			hdr[hn++] = 127;
			for (int i = 7; i >= 0; i--)
				hdr[hn++] = (unsigned char)(plen >> (8 * i));
		}
		if (op != 10 && (sd_conn_send(c, hdr, hn) < 0 || sd_conn_send(c, pay, plen) < 0)) {
			sd_conn_free(c);
			return;
		}
		sd_conn_consume(c, off + 4 + plen);
		if (op == 8)
			c->close_after = 1;
		if (c->out_len) {
			int r = sd_conn_flush(c);
			if (r < 0 || (r == 0 && c->close_after)) {
				sd_conn_free(c);
				return;
			}
			if (r > 0) {
				sd_conn_want(c, EV_WRITE);
				return;
			}
		}
	}
}

static void sd_conn_process(struct sd_conn *c)
{
	if (c->len == 0)
		return;
	if (c->state == SD_READING)
		sd_conn_http(c);
	else if (c->state == SD_TUNNEL)
		sd_conn_ws(c);
}

static void sd_conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct sd_conn *c = w->data;
	if (revents & EV_WRITE) {
		if (c->state == SD_TUNNEL) {
			int r = sd_conn_flush(c);
			if (r < 0 || (r == 0 && c->close_after)) {
				sd_conn_free(c);
				return;
			}
			if (r == 0)
				sd_conn_want(c, EV_READ);
			return;
		}
		sd_conn_advance(c);
		return;
	}
	if (!c->buf || c->len == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 1024;
		if (cap > STANDIN_HEAD_MAX + (1 << 21)) {
			sd_conn_free(c);
			return;
		}
		char *p = realloc(c->buf, cap);
		if (!p) {
			sd_conn_free(c);
			return;
		}
		c->buf = p;
		c->cap = cap;
	}
	ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		sd_conn_free(c);
		return;
	}
	if (n < 0)
		return;
	c->len += (size_t)n;
	sd_conn_process(c);
}

static void sd_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	for (int i = 0; i < 256; i++) { /* bounded, so one flood cannot starve the timers */
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				fprintf(stderr, "standin: accept: %s\n", strerror(errno));
			return;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct sd_conn *c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->state = SD_READING;
		ev_io_init(&c->io, sd_conn_io_cb, fd, EV_READ);
		c->io.data = c;
		ev_io_start(loop, &c->io);
	}
}

/* ---- reports and lifetime ---- */

static void sd_report(struct ev_loop *loop)
{
	if (g_tick.lat_n)
		qsort(g_tick.lat, g_tick.lat_n, sizeof(double), sd_cmp_double);
	fprintf(g_stats,
		"{\"type\":\"tick\",\"t\":%.3f,\"requests\":%llu,\"ok\":%llu,\"errors_500\":%llu,"
		"\"stalled\":%llu,\"inflight\":%d,\"queued\":%zu,\"failing\":%zu,\"stalled_now\":%zu,\"tunnels\":%zu,"
		"\"latency_ms\":{\"p50\":%.2f,\"p99\":%.2f}}\n",
		ev_now(loop) - g_start, (unsigned long long)g_tick.requests,
		(unsigned long long)g_tick.ok, (unsigned long long)g_tick.errors_500,
		(unsigned long long)g_tick.stalled, g_busy, g_queued, g_failing, g_stalled_now, g_tunnels,
		sd_percentile(g_tick.lat, g_tick.lat_n, 0.50),
		sd_percentile(g_tick.lat, g_tick.lat_n, 0.99));
	fflush(g_stats);
	/* A storm leaves the read buffers of thousands of new tunnels freed
	 * between their structs; hand those pages back so the resident set is
	 * what the idle tunnels hold. */
	malloc_trim(0);
	g_tick.requests = g_tick.ok = g_tick.errors_500 = g_tick.stalled = 0;
	g_tick.lat_n = 0;
}

static void sd_report_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	sd_report(loop);
}

static void sd_stop_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

static void sd_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

static long sd_parse_long(const char *flag, const char *s, long lo, long hi)
{
	char *e, msg[160];
	errno = 0;
	long v = strtol(s, &e, 10);
	if (errno || *e || e == s || v < lo || v > hi) {
		snprintf(msg, sizeof(msg), "%s: want an integer in %ld..%ld, got '%s'", flag, lo, hi, s);
		sd_usage_exit(msg);
	}
	return v;
}

static double sd_parse_double(const char *flag, const char *s, double lo, double hi)
{
	char *e, msg[160];
	errno = 0;
	double v = strtod(s, &e);
	if (errno || *e || e == s || !(v >= lo && v <= hi)) {
		snprintf(msg, sizeof(msg), "%s: want a number in %g..%g, got '%s'", flag, lo, hi, s);
		sd_usage_exit(msg);
	}
	return v;
}

static void sd_parse_args(int argc, char **argv)
{
	int have_listen = 0;
	for (int i = 1; i < argc; i++) {
		const char *f = argv[i];
		if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) {
			printf("usage: standin --listen 127.0.0.1:PORT [--workers 64] [--service-ms 5]\n"
			       "               [--fail-queue 256] [--stall-queue 1024] [--stats FILE]\n"
			       "               [--report-interval MS] [--duration S]\n");
			exit(0);
		}
		if (i + 1 >= argc) {
			char msg[128];
			snprintf(msg, sizeof(msg), "%s needs a value (see --help)", f);
			sd_usage_exit(msg);
		}
		const char *v = argv[++i];
		if (strcmp(f, "--listen") == 0) {
			char host[64];
			const char *colon = strrchr(v, ':');
			if (!colon || (size_t)(colon - v) >= sizeof(host))
				sd_usage_exit("--listen: want IPV4:PORT");
			memcpy(host, v, (size_t)(colon - v));
			host[colon - v] = '\0';
			g_opt.listen.sin_family = AF_INET;
			if (inet_pton(AF_INET, host, &g_opt.listen.sin_addr) != 1)
				sd_usage_exit("--listen: want IPV4:PORT");
			g_opt.listen.sin_port =
				htons((uint16_t)sd_parse_long("--listen port", colon + 1, 1, 65535));
			have_listen = 1;
		} else if (strcmp(f, "--workers") == 0) {
			g_opt.workers = (int)sd_parse_long(f, v, 1, 100000);
		} else if (strcmp(f, "--service-ms") == 0) {
			g_opt.service_ms = sd_parse_double(f, v, 0, 60000);
		} else if (strcmp(f, "--fail-queue") == 0) {
			g_opt.fail_queue = (int)sd_parse_long(f, v, 0, 10000000);
		} else if (strcmp(f, "--stall-queue") == 0) {
			g_opt.stall_queue = (int)sd_parse_long(f, v, 0, 10000000);
		} else if (strcmp(f, "--stats") == 0) {
			g_opt.stats_path = v;
		} else if (strcmp(f, "--report-interval") == 0) {
			g_opt.report_ms = (int)sd_parse_long(f, v, 10, 3600000);
		} else if (strcmp(f, "--duration") == 0) {
			g_opt.duration_s = sd_parse_double(f, v, 0, 86400 * 7);
		} else {
			char msg[128];
			snprintf(msg, sizeof(msg), "unknown flag %s (see --help)", f);
			sd_usage_exit(msg);
		}
	}
	if (!have_listen)
		sd_usage_exit("--listen is required");
	if (g_opt.stall_queue < g_opt.fail_queue)
		sd_usage_exit("--stall-queue must be >= --fail-queue");
}

int main(int argc, char **argv)
{
	sd_parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);

	/* 10,000 tunnels need 10,000 descriptors: raise the soft limit to the hard one. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	g_stats = stdout;
	if (g_opt.stats_path && !(g_stats = fopen(g_opt.stats_path, "w"))) {
		fprintf(stderr, "standin: %s: %s\n", g_opt.stats_path, strerror(errno));
		return 2;
	}
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&g_opt.listen, sizeof(g_opt.listen)) < 0 ||
	    listen(lfd, 4096) < 0) {
		fprintf(stderr, "standin: listen: %s\n", strerror(errno));
		return 2;
	}

	g_loop = EV_DEFAULT;
	g_start = ev_now(g_loop);
	ev_io accept_w;
	ev_io_init(&accept_w, sd_accept_cb, lfd, EV_READ);
	ev_io_start(g_loop, &accept_w);
	ev_timer report_w, stop_w;
	ev_timer_init(&report_w, sd_report_cb, g_opt.report_ms / 1000.0, g_opt.report_ms / 1000.0);
	ev_timer_start(g_loop, &report_w);
	if (g_opt.duration_s > 0) {
		ev_timer_init(&stop_w, sd_stop_cb, g_opt.duration_s, 0);
		ev_timer_start(g_loop, &stop_w);
	}
	ev_signal term_w, int_w;
	ev_signal_init(&term_w, sd_signal_cb, SIGTERM);
	ev_signal_start(g_loop, &term_w);
	ev_signal_init(&int_w, sd_signal_cb, SIGINT);
	ev_signal_start(g_loop, &int_w);
	fprintf(stderr, "standin: listening on %s:%d, %d workers x %.1f ms, 500 past %d queued, "
		"stall past %d\n", inet_ntoa(g_opt.listen.sin_addr), ntohs(g_opt.listen.sin_port),
		g_opt.workers, g_opt.service_ms, g_opt.fail_queue, g_opt.stall_queue);

	ev_run(g_loop, 0);
	sd_report(g_loop); /* the last partial interval */
	if (g_stats != stdout)
		fclose(g_stats);
	return 0;
}
