/*
 * The world a frontend fuzz driver runs sluice in (fuzz_h1.c, fuzz_h2.c;
 * also the frontend unit tests, through test/unit/front_world.h):
 * one worker (its libev loop, flushed by an ev_prepare as worker.c does),
 * one listener and one configuration generation, set up once; a stub
 * upstream on the same loop; and, per input, a connection accepted from
 * one end of a socketpair, torn down at the end.
 *
 * Upstreams: "live" is a stub in this process, on the same loop, that
 * parses what sluice sends it and answers every request 200 (or 101 to a
 * WebSocket upgrade, then echoes the tunnel); "dead" is a loopback port
 * nothing listens on, so dispatch there fails fast with 502.
 *
 * A header of static definitions for one translation unit each: define
 * FUZZ_NAME (the driver's name, for reports) before including it.
 */
#ifndef SLUICE_FUZZ_WORLD_H
#define SLUICE_FUZZ_WORLD_H

#ifndef FUZZ_NAME
#error "define FUZZ_NAME before including fuzz_world.h"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <llhttp.h>

#include "sluice/blocklist.h"
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/policy_state.h"
#include "core/clock.h"
#include "core/conn.h"
#include "core/gen.h"
#include "core/listener-t.h"
#include "core/stats.h"
#include "core/stream.h"
#include "core/worker-t.h"
#include "front/front.h"
#include "upstream/upstream.h"
#include "front/ws.h"

/* ---- stand-ins for core/gen.c --------------------------------------- */

/* The driver's one generation is never published: these keep the
 * library's gen.o (and its configuration teardown) out of the link. */
static struct sl_gen gen; /* the driver keeps one reference for good */

struct sl_gen *sl_gen_ref(struct sl_gen *g) {
  atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
  return g;
}

void sl_gen_unref(struct sl_gen *g) {
  if (g) atomic_fetch_sub_explicit(&g->refs, 1, memory_order_relaxed);
}

struct sl_gen *sl_gen_current_ref(void) { return sl_gen_ref(&gen); }

/* ---- the world ------------------------------------------------------ */

static struct sl_worker w;
static struct sl_listener lis;
static ev_prepare flush_watcher;

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, FUZZ_NAME ": invariant violated: %s\n", what);
    abort();
  }
}

static void flush_cb(struct ev_loop *loop, ev_prepare *p, int revents) {
  (void)loop;
  (void)p;
  (void)revents;
  sl_worker_flush_all(&w);
}

/* ---- the live upstream: a stub on the same loop ------------------- */

/* The stub parses what sluice sends it with llhttp, strict like the
 * frontend: sluice re-serialises every request, and what it sends an
 * upstream must be well-formed HTTP/1.1 whatever the client sent (a
 * parse error here is request smuggling or header injection waiting to
 * happen). Each complete request is answered in order: 200 with a small
 * body (none for HEAD; chunked for /up/chunked), or 101 to a WebSocket
 * upgrade, after which the stub echoes the tunnel. */
struct stub_conn {
  ev_io io;
  llhttp_t parser;
  bool tunnel;        /* after a 101: echo */
  bool ws, chunked;   /* of the request being parsed */
  char field[32];     /* header name being parsed (truncated) */
  size_t field_len;
  char key[64];       /* Sec-WebSocket-Key value */
  size_t key_len;
  char seen[4096];    /* the last bytes received, for the report */
  size_t seen_len;
  struct stub_conn *next, *prev;
};

static ev_io stub_listen;
static struct stub_conn *stub_conns;
static llhttp_settings_t stub_settings;

static void stub_close(struct stub_conn *s) {
  ev_io_stop(w.loop, &s->io);
  close(s->io.fd);
  if (s->prev) s->prev->next = s->next;
  else stub_conns = s->next;
  if (s->next) s->next->prev = s->prev;
  free(s);
}

static void stub_send(struct stub_conn *s, const char *p, size_t n) {
  /* Loopback with small answers: the socket buffer takes them whole;
   * anything it refuses is dropped, which sluice must survive too. */
  while (n > 0) {
    ssize_t r = write(s->io.fd, p, n);
    if (r <= 0) return;
    p += r;
    n -= (size_t)r;
  }
}

static int stub_on_message_begin(llhttp_t *p) {
  struct stub_conn *s = p->data;
  s->ws = s->chunked = false;
  s->field_len = s->key_len = 0;
  return 0;
}

static int stub_on_url(llhttp_t *p, const char *at, size_t n) {
  struct stub_conn *s = p->data;
  if (n >= 11 && !memcmp(at, "/up/chunked", 11)) s->chunked = true;
  return 0;
}

static int stub_on_header_field(llhttp_t *p, const char *at, size_t n) {
  struct stub_conn *s = p->data;
  size_t take = sizeof(s->field) - s->field_len;
  if (take > n) take = n;
  memcpy(s->field + s->field_len, at, take);
  s->field_len += take;
  return 0;
}

static int stub_on_header_value(llhttp_t *p, const char *at, size_t n) {
  struct stub_conn *s = p->data;
  if (s->field_len == 17 && !strncasecmp(s->field, "sec-websocket-key", 17)) {
    size_t take = sizeof(s->key) - s->key_len;
    if (take > n) take = n;
    memcpy(s->key + s->key_len, at, take);
    s->key_len += take;
  } else if (s->field_len == 7 && !strncasecmp(s->field, "upgrade", 7) && n >= 9 &&
             !strncasecmp(at, "websocket", 9)) {
    s->ws = true;
  }
  return 0;
}

static int stub_on_header_value_complete(llhttp_t *p) {
  ((struct stub_conn *)p->data)->field_len = 0;
  return 0;
}

static int stub_on_message_complete(llhttp_t *p) {
  struct stub_conn *s = p->data;
  if (p->upgrade && s->ws) {
    char accept[29], resp[256];
    sl_ws_accept(s->key, s->key_len, accept);
    int rl = snprintf(resp, sizeof(resp),
                      "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                      "connection: upgrade\r\nsec-websocket-accept: %s\r\n\r\n",
                      accept);
    stub_send(s, resp, (size_t)rl);
    s->tunnel = true;
    return 0; /* llhttp pauses on the upgrade: the rest is tunnel */
  }
  static const char ok[] = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
                           "content-length: 2\r\n\r\nok";
  static const char chunked[] = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                                "3\r\nabc\r\n0\r\n\r\n";
  if (p->method == HTTP_HEAD) stub_send(s, ok, sizeof(ok) - 3);
  else if (s->chunked) stub_send(s, chunked, sizeof(chunked) - 1);
  else stub_send(s, ok, sizeof(ok) - 1);
  return 0;
}

static void stub_remember(struct stub_conn *s, const char *p, size_t n) {
  if (n >= sizeof(s->seen)) {
    memcpy(s->seen, p + n - sizeof(s->seen), sizeof(s->seen));
    s->seen_len = sizeof(s->seen);
    return;
  }
  if (s->seen_len + n > sizeof(s->seen)) {
    size_t drop = s->seen_len + n - sizeof(s->seen);
    memmove(s->seen, s->seen + drop, s->seen_len - drop);
    s->seen_len -= drop;
  }
  memcpy(s->seen + s->seen_len, p, n);
  s->seen_len += n;
}

static void stub_read_cb(struct ev_loop *loop, ev_io *io, int revents) {
  struct stub_conn *s = (struct stub_conn *)io;
  (void)loop;
  (void)revents;
  char buf[4096];
  ssize_t r = read(io->fd, buf, sizeof(buf));
  if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
    stub_close(s);
    return;
  }
  if (r < 0) return;
  if (s->tunnel) {
    stub_send(s, buf, (size_t)r);
    return;
  }
  stub_remember(s, buf, (size_t)r);
  llhttp_errno_t err = llhttp_execute(&s->parser, buf, (size_t)r);
  if (err == HPE_PAUSED_UPGRADE) {
    const char *rest = llhttp_get_error_pos(&s->parser);
    if (s->tunnel && rest && rest < buf + r) stub_send(s, rest, (size_t)(buf + r - rest));
    if (!s->tunnel) { /* an upgrade the stub does not speak: refuse, close */
      stub_close(s);
    }
    return;
  }
  if (err != HPE_OK) {
    fprintf(stderr, FUZZ_NAME ": sluice sent the upstream bytes llhttp rejects (%s: %s):\n",
            llhttp_errno_name(err), llhttp_get_error_reason(&s->parser));
    fwrite(s->seen, 1, s->seen_len, stderr);
    fputc('\n', stderr);
    check(0, "what sluice sends upstream is well-formed HTTP/1.1");
  }
}

static void stub_accept_cb(struct ev_loop *loop, ev_io *io, int revents) {
  (void)revents;
  for (;;) {
    int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    struct stub_conn *s = calloc(1, sizeof(*s));
    if (!s) abort();
    llhttp_init(&s->parser, HTTP_REQUEST, &stub_settings);
    s->parser.data = s;
    ev_io_init(&s->io, stub_read_cb, fd, EV_READ);
    ev_io_start(loop, &s->io);
    s->next = stub_conns;
    if (stub_conns) stub_conns->prev = s;
    stub_conns = s;
  }
}

/* A loopback TCP socket on a free port: listening (the stub) or closed
 * again at once (the dead upstream's port). */
static int loopback_port(bool keep_listening, int *fd_out) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof(a);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &al) != 0 || (keep_listening && listen(fd, 64) != 0))
    abort();
  if (keep_listening) *fd_out = fd;
  else close(fd);
  return ntohs(a.sin_port);
}

/* ---- set-up ------------------------------------------------------- */

static void world_setup(void) {
  sl_log_min_level = (enum sl_log_level)(SL_LOG_ERROR + 1); /* quiet */
  signal(SIGPIPE, SIG_IGN); /* as sluice's main does: writes to closed peers fail */
  sl_stats_init();

  w.id = 0;
  w.loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
  if (!w.loop) abort();
  ev_prepare_init(&flush_watcher, flush_cb);
  ev_prepare_start(w.loop, &flush_watcher);

  llhttp_settings_init(&stub_settings);
  stub_settings.on_message_begin = stub_on_message_begin;
  stub_settings.on_url = stub_on_url;
  stub_settings.on_header_field = stub_on_header_field;
  stub_settings.on_header_value = stub_on_header_value;
  stub_settings.on_header_value_complete = stub_on_header_value_complete;
  stub_settings.on_message_complete = stub_on_message_complete;
  int stub_fd;
  int live = loopback_port(true, &stub_fd), dead = loopback_port(false, NULL);
  ev_io_init(&stub_listen, stub_accept_cb, stub_fd, EV_READ);
  ev_io_start(w.loop, &stub_listen);

  char path[] = "/tmp/sluice-" FUZZ_NAME "-XXXXXX";
  int cfd = mkstemp(path);
  if (cfd < 0) abort();
  FILE *f = fdopen(cfd, "w");
  fprintf(f,
          "listeners:\n"
          "  - { name: fuzz, address: \"127.0.0.1:1\" }\n"
          "upstreams:\n"
          "  live: { address: \"127.0.0.1:%d\" }\n"
          "  dead: { address: \"127.0.0.1:%d\", timeouts: { connect: 100ms } }\n"
          "identify:\n"
          "  client_ip: { trusted_proxies: [\"127.0.0.0/8\"] }\n"
          "routes:\n"
          "  - name: ws\n"
          "    match: { path_prefix: /ws, websocket: true }\n"
          "    upstream: live\n"
          "  - name: live\n"
          "    match: { path_prefix: /up }\n"
          "    upstream: live\n"
          "    concurrency: { max: 4 }\n"
          "  - name: tenant\n"
          "    match: { host: blocked.example, method: POST, header: { x-tenant: ~ } }\n"
          "    upstream: dead\n"
          "  - name: dead\n"
          "    match: { path_prefix: / }\n"
          "    upstream: dead\n"
          "blocklist:\n"
          "  firmware:\n"
          "    - { versions: \">=3.8.0-b1 <3.8.1\", class: homey, reason: fuzz }\n"
          "    - { versions: \"9.x\", status: 410 }\n",
          live, dead);
  fclose(f);
  struct sl_config_errors errs = {0};
  struct sl_config *cfg = sl_config_load(path, &errs);
  unlink(path);
  if (!cfg) {
    sl_config_errors_print(&errs, stderr);
    abort();
  }
  gen.policies = sl_policy_set_new(cfg, NULL, sl_now_ns());
  if (!gen.policies) abort();
  gen.cfg = cfg;
  gen.blocklist = sl_blocklist_new(&cfg->blocklist, cfg->mode);
  atomic_init(&gen.refs, 1);
  w.gen = sl_gen_ref(&gen);

  /* The listener the connections arrive on; small limits so that the
   * 431 paths are within a fuzz input's reach. */
  lis.name = "fuzz";
  lis.address = "127.0.0.1:1";
  atomic_init(&lis.max_connections, 1000);
  atomic_init(&lis.request_header_timeout_ms, 10000);
  atomic_init(&lis.idle_timeout_ms, 60000);
  atomic_init(&lis.header_bytes, 2048);
  atomic_init(&lis.headers, 16);
  atomic_init(&lis.h2_streams, 16);
}

/* ---- one input ---------------------------------------------------- */

/* Accepts a new client connection on the fuzz listener from one end of a
 * socketpair and returns the other end (the client's), non-blocking.
 * |expire|: 1 ms header and idle timeouts for this connection. */
static int world_accept(bool expire) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) abort();
  struct sockaddr_storage peer;
  memset(&peer, 0, sizeof(peer));
  struct sockaddr_in *p4 = (struct sockaddr_in *)&peer;
  p4->sin_family = AF_INET;
  p4->sin_port = htons(40000);
  p4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  atomic_store(&lis.request_header_timeout_ms, expire ? 1 : 10000);
  atomic_store(&lis.idle_timeout_ms, expire ? 1 : 60000);
  ev_now_update(w.loop);
  sl_conn_accept(&w, &lis, sv[0], &peer, NULL);
  return sv[1];
}

/* The client went away: tears down whatever sluice still holds (client
 * connections, upstream pools, stub connections) and checks nothing is
 * left. */
static void world_teardown(void) {
  while (w.conns) sl_conn_close(w.conns);
  for (struct sl_pool *p = w.pools; p; p = p->next) sl_pool_close_all(p);
  sl_worker_flush_all(&w);
  while (stub_conns) stub_close(stub_conns);
  ev_run(w.loop, EVRUN_NOWAIT);
  check(w.conns == NULL && w.n_conns == 0, "every connection is closed");
}

#endif
