/*
 * idle_client — opens N connections of one kind to a proxy, waits until
 * each is established the way an idle device leaves it, then holds them
 * all without sending another byte (a measurement tool for
 * test/bench/idle_bench.py and test/integration/test_idle.py; it asserts
 * nothing itself).
 *
 *   idle_client --kind KIND --port P -n N [--host 127.0.0.1] [--sources 64]
 *               [--inflight 256] [--path /] [--timeout 120]
 *
 * Kinds, and what "established" means for each:
 *   h1      TCP connected, no byte sent (h1 before its first request)
 *   h1ka    one GET answered in full (h1 keep-alive after one request)
 *   h2c     preface + SETTINGS sent; the server's SETTINGS and its ACK of
 *           ours received (our ACK of its SETTINGS sent)
 *   tls-h1  TLS handshake (ALPN http/1.1), then one GET answered in full
 *   tls-h2  TLS handshake (ALPN h2), then as h2c
 *   ws-h1   an HTTP/1.1 WebSocket upgrade answered 101
 *   ws-h2   h2c, then an RFC 8441 extended CONNECT on stream 1 answered 200
 *   h2ka    h2c, then a GET of --path on stream 1 answered to its END_STREAM
 *           (an h2 device that polled once and keeps its connection)
 *
 * Connections come from --sources loopback addresses 127.1.X.Y (bound
 * with IP_BIND_ADDRESS_NO_PORT, so the kernel picks the port per
 * destination and one source carries up to the ephemeral range's size),
 * at most --inflight of them being set up at once.
 *
 * Output, one line each on stdout: "HELD n" once all N are established
 * (or "FAILED held=n failed=m reason" if some could not be), then
 * "LOST n" (total closed by the server so far) each time the server
 * closes held connections (read on the next loop turn after the close).
 * Input: the process exits when stdin reaches EOF or --timeout passes
 * before all are held.
 *
 * The per-connection state is one small struct; TLS keeps its SSL object.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum kind { K_H1, K_H1KA, K_H2C, K_TLS_H1, K_TLS_H2, K_WS_H1, K_WS_H2, K_H2KA };
static const char *const kind_names[] = {"h1",    "h1ka",  "h2c",  "tls-h1",
                                         "tls-h2", "ws-h1", "ws-h2", "h2ka"};

enum state { S_CONNECTING, S_HANDSHAKE, S_WAITING, S_HELD, S_DONE };

struct idle_conn {
  ev_io io;
  SSL *ssl;
  enum state st;
  /* h2: what has been seen of the server's greeting */
  bool got_settings, got_ack, got_headers, connect_sent;
  bool in_body;    /* h1: head read, body_left bytes still to come */
  long body_left;
  /* bytes of the current response / frame buffer */
  uint32_t have;
  char buf[512];
};

static struct {
  enum kind kind;
  const char *host;
  int port;
  long n, sources, inflight;
  const char *path;
  double timeout;
  SSL_CTX *ctx;
  struct ev_loop *loop;
  long started, held, failed, lost, in_setup;
  bool reported;
  char reason[160];
} g = {.host = "127.0.0.1", .sources = 64, .inflight = 256, .path = "/", .timeout = 120};

static bool kind_tls(void) { return g.kind == K_TLS_H1 || g.kind == K_TLS_H2; }
static bool kind_h2(void) {
  return g.kind == K_H2C || g.kind == K_TLS_H2 || g.kind == K_WS_H2 || g.kind == K_H2KA;
}

static void start_more(void);

static void fail(struct idle_conn *c, const char *why) {
  if (!g.reason[0]) snprintf(g.reason, sizeof(g.reason), "%s (errno %d)", why, errno);
  ev_io_stop(g.loop, &c->io);
  close(c->io.fd);
  if (c->ssl) SSL_free(c->ssl);
  c->ssl = NULL;
  if (c->st != S_HELD) {
    g.failed++;
    g.in_setup--;
  } else {
    g.lost++;
    g.held--;
    printf("LOST %ld\n", g.lost);
    fflush(stdout);
  }
  c->st = S_DONE;
  start_more();
}

static void report_if_done(void) {
  if (g.reported || g.started < g.n || g.in_setup > 0) return;
  g.reported = true;
  if (g.failed)
    printf("FAILED held=%ld failed=%ld %s\n", g.held, g.failed, g.reason);
  else
    printf("HELD %ld\n", g.held);
  fflush(stdout);
}

static void hold(struct idle_conn *c) {
  c->st = S_HELD;
  g.in_setup--;
  g.held++;
  /* Keep watching for reads: only the server's close (or a GOAWAY / close
   * frame before it) is expected now. */
  start_more();
  report_if_done();
}

/* Sends |len| bytes at once; a fresh socket's buffer always takes these
 * few hundred bytes, so a short write is a failure. */
static int send_all(struct idle_conn *c, const void *p, size_t len) {
  ssize_t n;
  if (c->ssl) {
    n = SSL_write(c->ssl, p, (int)len);
  } else {
    n = send(c->io.fd, p, len, MSG_NOSIGNAL);
  }
  return n == (ssize_t)len ? 0 : -1;
}

/* ---- h2 ----------------------------------------------------------- */

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static size_t hpack_literal(uint8_t *out, const char *name, const char *value) {
  /* Literal header field without indexing, new name (RFC 7541 §6.2.2);
   * names and values here are shorter than 127 bytes, no Huffman. */
  size_t k = 0, nl = strlen(name), vl = strlen(value);
  out[k++] = 0x00;
  out[k++] = (uint8_t)nl;
  memcpy(out + k, name, nl);
  k += nl;
  out[k++] = (uint8_t)vl;
  memcpy(out + k, value, vl);
  return k + vl;
}

static void frame_head(uint8_t *p, size_t len, uint8_t type, uint8_t flags, uint32_t id) {
  p[0] = (uint8_t)(len >> 16);
  p[1] = (uint8_t)(len >> 8);
  p[2] = (uint8_t)len;
  p[3] = type;
  p[4] = flags;
  p[5] = (uint8_t)(id >> 24);
  p[6] = (uint8_t)(id >> 16);
  p[7] = (uint8_t)(id >> 8);
  p[8] = (uint8_t)id;
}

static int h2_greet(struct idle_conn *c) {
  uint8_t out[128];
  size_t k = sizeof(h2_preface) - 1;
  memcpy(out, h2_preface, k);
  frame_head(out + k, 0, 0x4, 0, 0); /* empty SETTINGS */
  k += 9;
  return send_all(c, out, k);
}

static int h2_connect_ws(struct idle_conn *c) {
  uint8_t out[400], *blk = out + 9;
  size_t k = 0;
  k += hpack_literal(blk + k, ":method", "CONNECT");
  k += hpack_literal(blk + k, ":protocol", "websocket");
  k += hpack_literal(blk + k, ":scheme", "http");
  k += hpack_literal(blk + k, ":path", g.path);
  k += hpack_literal(blk + k, ":authority", "127.0.0.1");
  k += hpack_literal(blk + k, "sec-websocket-version", "13");
  frame_head(out, k, 0x1, 0x4 /* END_HEADERS */, 1);
  return send_all(c, out, 9 + k);
}

static int h2_get(struct idle_conn *c) {
  uint8_t out[400], *blk = out + 9;
  size_t k = 0;
  k += hpack_literal(blk + k, ":method", "GET");
  k += hpack_literal(blk + k, ":scheme", "http");
  k += hpack_literal(blk + k, ":path", g.path);
  k += hpack_literal(blk + k, ":authority", "127.0.0.1");
  frame_head(out, k, 0x1, 0x4 | 0x1 /* END_HEADERS | END_STREAM */, 1);
  return send_all(c, out, 9 + k);
}

/* Consumes whole frames from c->buf. Returns 1 once established, 0 for
 * more bytes, -1 on a failure. */
static int h2_parse(struct idle_conn *c) {
  while (c->have >= 9) {
    const uint8_t *p = (const uint8_t *)c->buf;
    uint32_t len = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
    uint8_t type = p[3], flags = p[4];
    uint32_t id = ((uint32_t)p[5] << 24 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 8 | p[8]) &
                  0x7fffffff;
    if (len + 9 > sizeof(c->buf)) return -1; /* nothing this big is expected */
    if (c->have < len + 9) return 0;
    if (type == 0x4 && !(flags & 1)) {
      uint8_t ack[9];
      frame_head(ack, 0, 0x4, 0x1, 0);
      if (send_all(c, ack, 9) != 0) return -1;
      c->got_settings = true;
    } else if (type == 0x4) {
      c->got_ack = true;
    } else if (type == 0x7) {
      return -1; /* GOAWAY */
    } else if (type == 0x3 && id == 1) {
      return -1; /* RST_STREAM on the tunnel */
    } else if (g.kind == K_H2KA && id == 1 && (type == 0x0 || type == 0x1)) {
      if (flags & 0x1) c->got_headers = true; /* END_STREAM: the answer is in */
    } else if (type == 0x1 && id == 1) {
      /* The response HEADERS: :status 200 is static index 8 (0x88). */
      size_t off = 9;
      if (flags & 0x8) off += 1; /* PADDED */
      if (flags & 0x20) off += 5; /* PRIORITY */
      if (len + 9 <= off || p[off] != 0x88) return -1;
      c->got_headers = true;
    }
    memmove(c->buf, c->buf + 9 + len, c->have - 9 - len);
    c->have -= 9 + len;
  }
  if (!c->got_settings || !c->got_ack) return 0;
  if (g.kind != K_WS_H2 && g.kind != K_H2KA) return 1;
  if (!c->connect_sent) {
    c->connect_sent = true; /* settings exchanged: the tunnel or the GET, once */
    if ((g.kind == K_WS_H2 ? h2_connect_ws(c) : h2_get(c)) != 0) return -1;
  }
  return c->got_headers ? 1 : 0;
}

/* ---- h1 ----------------------------------------------------------- */

static int h1_request(struct idle_conn *c) {
  char req[400];
  int n;
  if (g.kind == K_WS_H1)
    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n",
                 g.path);
  else
    n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", g.path);
  return send_all(c, req, (size_t)n);
}

/* Returns 1 once the response (head, and body by Content-Length) is in,
 * 0 for more, -1 on a failure. */
static int h1_parse(struct idle_conn *c) {
  if (c->in_body) {
    c->body_left -= (long)c->have;
    c->have = 0;
    return c->body_left <= 0 ? 1 : 0;
  }
  c->buf[c->have < sizeof(c->buf) ? c->have : sizeof(c->buf) - 1] = '\0';
  char *end = strstr(c->buf, "\r\n\r\n");
  if (!end) return c->have >= sizeof(c->buf) - 1 ? -1 : 0; /* a head this large is not expected */
  int status = 0;
  if (sscanf(c->buf, "HTTP/1.1 %d", &status) != 1) return -1;
  if (g.kind == K_WS_H1) return status == 101 ? 1 : -1;
  if (status != 200) return -1;
  long cl = 0;
  for (char *l = strstr(c->buf, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n"))
    if (strncasecmp(l + 2, "content-length:", 15) == 0) cl = strtol(l + 17, NULL, 10);
  size_t body = c->have - (size_t)(end + 4 - c->buf);
  c->in_body = true;
  c->body_left = cl - (long)body;
  c->have = 0; /* the rest of the body only counts */
  return c->body_left <= 0 ? 1 : 0;
}

/* ---- events ------------------------------------------------------- */

static int greet(struct idle_conn *c) {
  switch (g.kind) {
  case K_H1:
    hold(c);
    return 0;
  case K_H1KA:
  case K_TLS_H1:
  case K_WS_H1:
    c->st = S_WAITING;
    return h1_request(c);
  default:
    c->st = S_WAITING;
    return h2_greet(c);
  }
}

static void on_readable(struct idle_conn *c) {
  for (;;) {
    size_t room = sizeof(c->buf) - 1 - c->have;
    if (room == 0) {
      fail(c, "response too large");
      return;
    }
    ssize_t n;
    if (c->ssl) {
      ERR_clear_error();
      int r = SSL_read(c->ssl, c->buf + c->have, (int)room);
      if (r <= 0) {
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) return;
        n = r == 0 || e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
      } else {
        n = r;
      }
    } else {
      n = recv(c->io.fd, c->buf + c->have, room, 0);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    }
    if (n <= 0) {
      fail(c, n == 0 ? "closed by the server" : "read error");
      return;
    }
    if (c->st == S_HELD) {
      c->have = 0; /* a GOAWAY or close frame before the close: ignored */
      continue;
    }
    c->have += (uint32_t)n;
    int rv = kind_h2() ? h2_parse(c) : h1_parse(c);
    if (rv < 0) {
      fail(c, "unexpected answer");
      return;
    }
    if (rv == 1) {
      c->have = 0;
      hold(c);
      return;
    }
  }
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents) {
  struct idle_conn *c = (struct idle_conn *)w;
  (void)loop;
  if (c->st == S_CONNECTING) {
    int err = 0;
    socklen_t l = sizeof(err);
    getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) {
      errno = err;
      fail(c, "connect failed");
      return;
    }
    ev_io_stop(g.loop, w);
    ev_io_set(w, w->fd, EV_READ);
    ev_io_start(g.loop, w);
    if (kind_tls()) {
      c->ssl = SSL_new(g.ctx);
      SSL_set_fd(c->ssl, w->fd);
      SSL_set_connect_state(c->ssl);
      static const unsigned char alpn_h2[] = "\x02h2", alpn_h1[] = "\x08http/1.1";
      if (g.kind == K_TLS_H2)
        SSL_set_alpn_protos(c->ssl, alpn_h2, sizeof(alpn_h2) - 1);
      else
        SSL_set_alpn_protos(c->ssl, alpn_h1, sizeof(alpn_h1) - 1);
      c->st = S_HANDSHAKE;
    } else if (greet(c) != 0) {
      fail(c, "send failed");
      return;
    }
    if (c->st != S_HANDSHAKE) return;
  }
  if (c->st == S_HANDSHAKE) {
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r != 1) {
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ) return;
      fail(c, "TLS handshake failed");
      return;
    }
    if (greet(c) != 0) fail(c, "send failed");
    return;
  }
  on_readable(c);
}

static void start_one(long i) {
  struct idle_conn *c = calloc(1, sizeof(*c));
  g.started++;
  if (!c) {
    g.failed++;
    snprintf(g.reason, sizeof(g.reason), "out of memory");
    return;
  }
  g.in_setup++;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    g.in_setup--;
    g.failed++;
    if (!g.reason[0]) snprintf(g.reason, sizeof(g.reason), "socket: %s", strerror(errno));
    free(c);
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  long s = i % g.sources;
  struct sockaddr_in src = {.sin_family = AF_INET};
  src.sin_addr.s_addr = htonl((127u << 24) | (1u << 16) | (uint32_t)((s / 250) << 8) |
                              (uint32_t)(s % 250 + 1));
  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g.port)};
  inet_pton(AF_INET, g.host, &dst.sin_addr);
  ev_io_init(&c->io, io_cb, fd, EV_WRITE);
  c->st = S_CONNECTING;
  if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0 ||
      (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) != 0 && errno != EINPROGRESS)) {
    fail(c, "bind/connect");
    return;
  }
  ev_io_start(g.loop, &c->io);
}

static void start_more(void) {
  while (g.started < g.n && g.in_setup < g.inflight) start_one(g.started);
  report_if_done();
}

static void stdin_cb(struct ev_loop *loop, ev_io *w, int revents) {
  char b[64];
  ssize_t n = read(w->fd, b, sizeof(b));
  if (n <= 0) ev_break(loop, EVBREAK_ALL);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  if (g.reported) return;
  if (!g.reason[0]) snprintf(g.reason, sizeof(g.reason), "timeout");
  printf("FAILED held=%ld failed=%ld in_setup=%ld %s\n", g.held, g.failed, g.in_setup, g.reason);
  fflush(stdout);
  g.reported = true;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"kind", 1, 0, 'k'},    {"host", 1, 0, 'H'},     {"port", 1, 0, 'p'},
      {"n", 1, 0, 'n'},       {"sources", 1, 0, 's'},  {"inflight", 1, 0, 'i'},
      {"path", 1, 0, 'P'},    {"timeout", 1, 0, 't'},  {0, 0, 0, 0}};
  int o;
  const char *kind = NULL;
  while ((o = getopt_long(argc, argv, "k:H:p:n:s:i:P:t:", opts, NULL)) != -1) {
    switch (o) {
    case 'k': kind = optarg; break;
    case 'H': g.host = optarg; break;
    case 'p': g.port = atoi(optarg); break;
    case 'n': g.n = atol(optarg); break;
    case 's': g.sources = atol(optarg); break;
    case 'i': g.inflight = atol(optarg); break;
    case 'P': g.path = optarg; break;
    case 't': g.timeout = atof(optarg); break;
    default: return 2;
    }
  }
  size_t nk = sizeof(kind_names) / sizeof(kind_names[0]), k;
  for (k = 0; kind && k < nk; k++)
    if (strcmp(kind, kind_names[k]) == 0) break;
  if (!kind || k == nk || g.port <= 0 || g.n <= 0 || g.sources < 1 || g.sources > 250 * 250 ||
      g.inflight < 1) {
    fprintf(stderr, "usage: idle_client --kind h1|h1ka|h2c|h2ka|tls-h1|tls-h2|ws-h1|ws-h2 "
                    "--port P -n N [--host H] [--sources S] [--inflight I] [--path P] "
                    "[--timeout SECONDS]\n");
    return 2;
  }
  g.kind = (enum kind)k;
  struct rlimit rl = {(rlim_t)g.n + 64, (rlim_t)g.n + 64};
  struct rlimit cur;
  getrlimit(RLIMIT_NOFILE, &cur);
  if (cur.rlim_cur < rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    fprintf(stderr, "idle_client: cannot raise RLIMIT_NOFILE to %ld: %s\n", (long)rl.rlim_cur,
            strerror(errno));
    return 2;
  }
  if (kind_tls()) {
    g.ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(g.ctx, SSL_VERIFY_NONE, NULL); /* a bench against a self-signed cert */
    SSL_CTX_set_mode(g.ctx, SSL_MODE_RELEASE_BUFFERS);
  }
  g.loop = ev_default_loop(EVFLAG_AUTO);
  ev_io in;
  ev_io_init(&in, stdin_cb, 0, EV_READ);
  ev_io_start(g.loop, &in);
  ev_timer t;
  ev_timer_init(&t, timeout_cb, g.timeout, 0.);
  ev_timer_start(g.loop, &t);
  start_more();
  ev_run(g.loop, 0);
  return 0;
}
