/*
 * Unit tests for proxy/admin/admin.c: a real admin listener on 127.0.0.1:0, its
 * libev loop in a thread, driven with plain blocking sockets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "sluice/config-t.h"
#include "sluice/metrics.h"
#include "admin/admin.h"

/* ---- hooks -------------------------------------------------------- */

static _Atomic int ready_status = 200;
static _Atomic int reload_calls;
static char explain_query[1024];

static void hook_ready(void *ud, int *status) { *status = atomic_load(&ready_status); }

static void hook_config(void *ud, char **body, size_t *len) {
  *body = strdup("generation: 3\nroutes: []\n");
  *len = strlen(*body);
}

static void hook_reload(void *ud, int *status, char **body, size_t *len) {
  atomic_fetch_add(&reload_calls, 1);
  *status = 422;
  *body = strdup("{\"ok\":false,\"errors\":[\"x.yaml:3:7: unknown key\"]}\n");
  *len = strlen(*body);
}

/* "big=N" answers N bytes of a known pattern; anything else echoes. */
static void hook_explain(void *ud, const char *query, int *status, char **body, size_t *len) {
  snprintf(explain_query, sizeof(explain_query), "%s", query);
  *status = 200;
  if (strncmp(query, "big=", 4) == 0) {
    size_t n = strtoul(query + 4, NULL, 10);
    char *b = malloc(n);
    for (size_t i = 0; i < n; i++) b[i] = (char)('a' + i % 23);
    *body = b;
    *len = n;
    return;
  }
  char *b = malloc(strlen(query) + 16);
  *len = (size_t)sprintf(b, "query=%s\n", query);
  *body = b;
}

static const struct sl_admin_hooks hooks = {
    .ready = hook_ready, .config = hook_config, .reload = hook_reload, .explain = hook_explain};

/* ---- the server under test ---------------------------------------- */

struct server {
  struct ev_loop *loop;
  struct sl_admin *admin;
  ev_async stop;
  pthread_t thread;
  int port;
};

static void on_stop(struct ev_loop *loop, ev_async *w, int revents) { ev_break(loop, EVBREAK_ALL); }

static void *loop_thread(void *p) {
  struct server *s = p;
  ev_run(s->loop, 0);
  return NULL;
}

static struct server *server_start(double timeout, const struct sl_admin_hooks *h) {
  struct server *s = calloc(1, sizeof(*s));
  s->loop = ev_loop_new(EVFLAG_AUTO);
  struct sl_sockaddr addr = {.text = "127.0.0.1:0"};
  struct sockaddr_in *sin = (struct sockaddr_in *)&addr.ss;
  sin->sin_family = AF_INET;
  sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin->sin_port = 0;
  addr.len = sizeof(*sin);
  char err[256] = "";
  s->admin = sl_admin_new(s->loop, &addr, h, NULL, err, sizeof(err));
  if (!s->admin) fprintf(stderr, "%s\n", err);
  assert_non_null(s->admin);
  if (timeout > 0) sl_admin_set_timeout(s->admin, timeout);
  s->port = sl_admin_port(s->admin);
  assert_true(s->port > 0);
  ev_async_init(&s->stop, on_stop);
  ev_async_start(s->loop, &s->stop);
  assert_int_equal(pthread_create(&s->thread, NULL, loop_thread, s), 0);
  return s;
}

static void server_stop(struct server *s) {
  ev_async_send(s->loop, &s->stop);
  pthread_join(s->thread, NULL);
  sl_admin_del(s->admin);
  ev_async_stop(s->loop, &s->stop);
  ev_loop_destroy(s->loop);
  free(s);
}

static int setup(void **state) {
  struct sl_metric_family *f =
      sl_metrics_family("admin_test_total", "Test counter.", SL_METRIC_COUNTER, "k");
  sl_metric_add(sl_metrics_series(f, (const char *[]){"v"}), 5);
  atomic_store(&ready_status, 200);
  *state = server_start(0, &hooks);
  return 0;
}

static int teardown(void **state) {
  server_stop(*state);
  sl_metrics_reset();
  return 0;
}

static int port_of(void **state) { return ((struct server *)*state)->port; }

/* ---- a blocking client -------------------------------------------- */

struct client {
  int fd;
  size_t len;
  char buf[1 << 16];
};

struct resp {
  int status;
  char head[4096];
  char body[1 << 15];
  size_t body_len;
};

static struct client *cli_open(int port) {
  struct client *c = calloc(1, sizeof(*c));
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(c->fd >= 0);
  struct timeval tv = {.tv_sec = 5};
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
  return c;
}

static void cli_close(struct client *c) {
  close(c->fd);
  free(c);
}

static void cli_send(struct client *c, const char *data, size_t len) {
  while (len) {
    ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
    assert_true(n > 0);
    data += n;
    len -= (size_t)n;
  }
}

static void cli_sends(struct client *c, const char *s) { cli_send(c, s, strlen(s)); }

/* Reads more into the buffer: >0 bytes, 0 on EOF, -1 on error/timeout. */
static ssize_t cli_fill(struct client *c) {
  if (c->len == sizeof(c->buf)) return -1;
  ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
  if (n > 0) c->len += (size_t)n;
  return n;
}

static void cli_consume(struct client *c, size_t n) {
  memmove(c->buf, c->buf + n, c->len - n);
  c->len -= n;
}

/* Reads one response. |head_request|: no body follows whatever
 * content-length says. Returns 0, or -1 if the connection ended first. */
static int cli_response(struct client *c, struct resp *r, bool head_request) {
  memset(r, 0, sizeof(*r));
  char *end;
  while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4)))
    if (cli_fill(c) <= 0) return -1;
  size_t hl = (size_t)(end - c->buf) + 4;
  assert_true(hl < sizeof(r->head));
  memcpy(r->head, c->buf, hl);
  r->head[hl] = '\0';
  cli_consume(c, hl);
  assert_int_equal(sscanf(r->head, "HTTP/1.1 %d ", &r->status), 1);
  const char *cl = strcasestr(r->head, "\r\ncontent-length: ");
  size_t want = cl ? strtoul(cl + 18, NULL, 10) : 0;
  if (head_request) want = 0;
  assert_true(want < sizeof(r->body));
  while (c->len < want)
    if (cli_fill(c) <= 0) return -1;
  memcpy(r->body, c->buf, want);
  r->body[want] = '\0';
  r->body_len = want;
  cli_consume(c, want);
  return 0;
}

/* After the last response: true if the server closed the connection
 * (EOF, nothing more sent) within the receive timeout. */
static bool cli_eof(struct client *c) {
  if (c->len) return false;
  return cli_fill(c) == 0;
}

static const char *header(const struct resp *r, const char *name, char *out, size_t cap) {
  char pat[64];
  snprintf(pat, sizeof(pat), "\r\n%s: ", name);
  const char *p = strcasestr(r->head, pat);
  if (!p) return NULL;
  p += strlen(pat);
  size_t n = strcspn(p, "\r");
  if (n >= cap) n = cap - 1;
  memcpy(out, p, n);
  out[n] = '\0';
  return out;
}

/* One request on a fresh connection. */
static void roundtrip(int port, const char *req, struct resp *r) {
  struct client *c = cli_open(port);
  cli_sends(c, req);
  assert_int_equal(cli_response(c, r, strncmp(req, "HEAD ", 5) == 0), 0);
  cli_close(c);
}

static struct resp R; /* big; one at a time */

/* ---- routes ------------------------------------------------------- */

static void test_healthz(void **state) {
  char v[128];
  roundtrip(port_of(state), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", &R);
  assert_int_equal(R.status, 200);
  assert_string_equal(R.body, "ok\n");
  assert_string_equal(header(&R, "connection", v, sizeof(v)), "keep-alive");
  assert_string_equal(header(&R, "content-type", v, sizeof(v)), "text/plain; charset=utf-8");
}

static void test_readyz(void **state) {
  roundtrip(port_of(state), "GET /readyz HTTP/1.1\r\n\r\n", &R);
  assert_int_equal(R.status, 200);
  atomic_store(&ready_status, 503);
  roundtrip(port_of(state), "GET /readyz HTTP/1.1\r\n\r\n", &R);
  assert_int_equal(R.status, 503);
  assert_true(strstr(R.head, "503 Service Unavailable\r\n") != NULL);
}

static void test_metrics(void **state) {
  char v[128];
  roundtrip(port_of(state), "GET /metrics HTTP/1.1\r\n\r\n", &R);
  assert_int_equal(R.status, 200);
  assert_string_equal(header(&R, "content-type", v, sizeof(v)),
                      "text/plain; version=0.0.4; charset=utf-8");
  assert_string_equal(R.body, "# HELP admin_test_total Test counter.\n"
                              "# TYPE admin_test_total counter\n"
                              "admin_test_total{k=\"v\"} 5\n");
}

static void test_config(void **state) {
  roundtrip(port_of(state), "GET /config HTTP/1.1\r\n\r\n", &R);
  assert_int_equal(R.status, 200);
  assert_string_equal(R.body, "generation: 3\nroutes: []\n");
}

static void test_reload(void **state) {
  char v[128];
  int before = atomic_load(&reload_calls);
  roundtrip(port_of(state), "POST /reload HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", &R);
  assert_int_equal(R.status, 422);
  assert_int_equal(atomic_load(&reload_calls), before + 1);
  assert_string_equal(header(&R, "content-type", v, sizeof(v)), "application/json");
  assert_non_null(strstr(R.body, "unknown key"));

  roundtrip(port_of(state), "GET /reload HTTP/1.1\r\n\r\n", &R);
  assert_int_equal(R.status, 405);
  assert_string_equal(header(&R, "allow", v, sizeof(v)), "POST");
  assert_int_equal(atomic_load(&reload_calls), before + 1);
}

static void test_explain(void **state) {
  roundtrip(port_of(state), "GET /explain?ip=10.0.0.1&path=/v1/x&header=X-A:b HTTP/1.1\r\n\r\n",
            &R);
  assert_int_equal(R.status, 200);
  assert_string_equal(R.body, "query=ip=10.0.0.1&path=/v1/x&header=X-A:b\n");
  roundtrip(port_of(state), "GET /explain HTTP/1.1\r\n\r\n", &R);
  assert_int_equal(R.status, 200);
  assert_string_equal(explain_query, "");
}

static void test_not_found_and_method(void **state) {
  char v[128];
  roundtrip(port_of(state), "GET /nope HTTP/1.1\r\n\r\n", &R);
  assert_int_equal(R.status, 404);
  roundtrip(port_of(state), "GET /healthzz HTTP/1.1\r\n\r\n", &R);
  assert_int_equal(R.status, 404);
  roundtrip(port_of(state), "GET / HTTP/1.1\r\n\r\n", &R);
  assert_int_equal(R.status, 404);
  roundtrip(port_of(state), "POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &R);
  assert_int_equal(R.status, 405);
  assert_string_equal(header(&R, "allow", v, sizeof(v)), "GET, HEAD");
  roundtrip(port_of(state), "DELETE /metrics HTTP/1.1\r\n\r\n", &R);
  assert_int_equal(R.status, 405);
}

static void test_missing_hooks(void **state) {
  struct sl_admin_hooks none = {0};
  struct server *s = server_start(0, &none);
  roundtrip(s->port, "GET /readyz HTTP/1.1\r\n\r\n", &R);
  assert_int_equal(R.status, 200);
  roundtrip(s->port, "GET /config HTTP/1.1\r\n\r\n", &R);
  assert_int_equal(R.status, 404);
  roundtrip(s->port, "POST /reload HTTP/1.1\r\n\r\n", &R);
  assert_int_equal(R.status, 404);
  server_stop(s);
}

/* ---- the guard on /config, /reload and /explain ----------------------- */

static char auth_seen[5000];
static _Atomic int auth_calls;
static _Atomic bool auth_null;

/* Admits "Bearer good"; 403 for "Bearer forbidden"; 401 otherwise. */
static int hook_authorize(void *ud, const char *auth, size_t len) {
  atomic_fetch_add(&auth_calls, 1);
  atomic_store(&auth_null, auth == NULL);
  snprintf(auth_seen, sizeof(auth_seen), "%.*s", (int)len, auth ? auth : "");
  if (auth && len == 11 && !memcmp(auth, "Bearer good", 11)) return 200;
  if (auth && len == 16 && !memcmp(auth, "Bearer forbidden", 16)) return 403;
  return 401;
}

static void test_guarded_routes(void **state) {
  (void)state;
  struct sl_admin_hooks h = hooks;
  h.authorize = hook_authorize;
  struct server *s = server_start(0, &h);
  char v[256];
  atomic_store(&auth_calls, 0);
  /* Open routes never ask. */
  roundtrip(s->port, "GET /metrics HTTP/1.1\r\n\r\n", &R);
  assert_int_equal(R.status, 200);
  roundtrip(s->port, "GET /readyz HTTP/1.1\r\n\r\n", &R);
  assert_int_equal(R.status, 200);
  assert_int_equal(atomic_load(&auth_calls), 0);
  /* No credentials: 401 with a Bearer challenge; the hook saw NULL. */
  roundtrip(s->port, "GET /config HTTP/1.1\r\n\r\n", &R);
  assert_int_equal(R.status, 401);
  assert_true(atomic_load(&auth_null));
  assert_string_equal(header(&R, "www-authenticate", v, sizeof(v)), "Bearer realm=\"sluice-admin\"");
  assert_non_null(strstr(R.body, "\"error\":\"unauthorized\""));
  int before = atomic_load(&reload_calls);
  roundtrip(s->port, "POST /reload HTTP/1.1\r\nAuthorization: Bearer bad\r\n\r\n", &R);
  assert_int_equal(R.status, 401);
  assert_int_equal(atomic_load(&reload_calls), before); /* not reloaded */
  assert_string_equal(auth_seen, "Bearer bad");
  /* The field name in any case and in pieces is found. */
  struct client *c = cli_open(s->port);
  cli_sends(c, "GET /explain?a=1 HTTP/1.1\r\nauThoriZ");
  cli_sends(c, "ation: Bearer good\r\n\r\n");
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, 200);
  assert_string_equal(R.body, "query=a=1\n");
  cli_close(c);
  roundtrip(s->port, "POST /reload HTTP/1.1\r\nAuthorization: Bearer good\r\n\r\n", &R);
  assert_int_equal(R.status, 422); /* the reload hook's own answer */
  assert_int_equal(atomic_load(&reload_calls), before + 1);
  /* 403: refused whatever the credentials. */
  roundtrip(s->port, "GET /config HTTP/1.1\r\nAuthorization: Bearer forbidden\r\n\r\n", &R);
  assert_int_equal(R.status, 403);
  assert_non_null(strstr(R.body, "\"error\":\"token_required\""));
  /* Two Authorization fields, or one too long: the hook sees none. */
  roundtrip(s->port,
            "GET /config HTTP/1.1\r\nAuthorization: Bearer good\r\nAuthorization: Bearer good\r\n\r\n",
            &R);
  assert_int_equal(R.status, 401);
  assert_true(atomic_load(&auth_null));
  char big[4400 + 64];
  int n = snprintf(big, sizeof(big), "GET /config HTTP/1.1\r\nAuthorization: Bearer ");
  memset(big + n, 'g', 4300);
  snprintf(big + n + 4300, sizeof(big) - (size_t)n - 4300, "\r\n\r\n");
  roundtrip(s->port, big, &R);
  assert_int_equal(R.status, 401);
  assert_true(atomic_load(&auth_null));
  /* Trailing blanks are not part of the value; a chunked body's trailer
   * fields carry no credentials (RFC 9110 §6.5.1). */
  roundtrip(s->port, "GET /config HTTP/1.1\r\nAuthorization: Bearer good \t\r\n\r\n", &R);
  assert_int_equal(R.status, 200);
  before = atomic_load(&reload_calls);
  roundtrip(s->port,
            "POST /reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            "3\r\nabc\r\n0\r\nAuthorization: Bearer good\r\n\r\n",
            &R);
  assert_int_equal(R.status, 401);
  assert_true(atomic_load(&auth_null));
  assert_int_equal(atomic_load(&reload_calls), before);
  /* A keep-alive connection forgets the last request's credentials. */
  c = cli_open(s->port);
  cli_sends(c, "GET /config HTTP/1.1\r\nAuthorization: Bearer good\r\n\r\n");
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, 200);
  cli_sends(c, "GET /config HTTP/1.1\r\n\r\n");
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, 401);
  cli_close(c);
  server_stop(s);
}

static void test_head(void **state) {
  char v[128];
  struct client *c = cli_open(port_of(state));
  cli_sends(c, "HEAD /healthz HTTP/1.1\r\n\r\n");
  assert_int_equal(cli_response(c, &R, true), 0);
  assert_int_equal(R.status, 200);
  assert_string_equal(header(&R, "content-length", v, sizeof(v)), "3");
  /* No body was sent: the next response starts right away. */
  cli_sends(c, "GET /healthz HTTP/1.1\r\n\r\n");
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, 200);
  assert_string_equal(R.body, "ok\n");
  cli_close(c);
}

/* ---- connection handling ------------------------------------------ */

static void test_keep_alive(void **state) {
  struct client *c = cli_open(port_of(state));
  cli_sends(c, "GET /healthz HTTP/1.1\r\n\r\n");
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, 200);
  cli_sends(c, "GET /metrics HTTP/1.1\r\n\r\n");
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, 200);
  assert_non_null(strstr(R.body, "admin_test_total"));
  /* A body on a keep-alive connection is read and ignored. */
  cli_sends(c, "POST /reload HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789");
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, 422);
  cli_sends(c, "POST /reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
               "5\r\nhello\r\n0\r\n\r\n");
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, 422);
  cli_sends(c, "GET /healthz HTTP/1.1\r\n\r\n");
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, 200);
  cli_close(c);
}

static void test_pipelined(void **state) {
  struct client *c = cli_open(port_of(state));
  cli_sends(c, "GET /healthz HTTP/1.1\r\n\r\n"
               "GET /nope HTTP/1.1\r\n\r\n"
               "GET /config HTTP/1.1\r\n\r\n"
               "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"
               "GET /healthz HTTP/1.1\r\n\r\n"); /* after close: never answered */
  int want[] = {200, 404, 200, 200};
  for (int i = 0; i < 4; i++) {
    assert_int_equal(cli_response(c, &R, false), 0);
    assert_int_equal(R.status, want[i]);
  }
  assert_true(cli_eof(c));
  cli_close(c);
}

static void test_connection_close(void **state) {
  char v[128];
  struct client *c = cli_open(port_of(state));
  cli_sends(c, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_string_equal(header(&R, "connection", v, sizeof(v)), "close");
  assert_true(cli_eof(c));
  cli_close(c);

  c = cli_open(port_of(state));
  cli_sends(c, "GET /healthz HTTP/1.0\r\n\r\n");
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, 200);
  assert_true(cli_eof(c));
  cli_close(c);

  c = cli_open(port_of(state));
  cli_sends(c, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_string_equal(header(&R, "connection", v, sizeof(v)), "keep-alive");
  cli_sends(c, "GET /healthz HTTP/1.1\r\n\r\n");
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, 200);
  cli_close(c);

  /* An upgrade request is answered, then the connection closes. */
  c = cli_open(port_of(state));
  cli_sends(c, "GET /healthz HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, 200);
  assert_true(cli_eof(c));
  cli_close(c);
}

static void expect_refused(int port, const char *req, size_t len, int status) {
  struct client *c = cli_open(port);
  cli_send(c, req, len);
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, status);
  assert_non_null(strstr(R.head, "\r\nconnection: close\r\n"));
  assert_true(cli_eof(c));
  cli_close(c);
}

static void test_garbage(void **state) {
  static const char g1[] = "\x01\x02garbage\r\n\r\n";
  expect_refused(port_of(state), g1, sizeof(g1) - 1, 400);
  static const char g2[] = "GET /healthz HTTP/9.9\r\n\r\n";
  expect_refused(port_of(state), g2, sizeof(g2) - 1, 400);
  static const char g3[] = "GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n";
  expect_refused(port_of(state), g3, sizeof(g3) - 1, 400);
  static const char g4[] = "GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
  expect_refused(port_of(state), g4, sizeof(g4) - 1, 400);
  static const char g5[] = "GET /x\0y HTTP/1.1\r\n\r\n";
  expect_refused(port_of(state), g5, sizeof(g5) - 1, 400);
  /* A request cut short by EOF gets a 400 too. */
  struct client *c = cli_open(port_of(state));
  cli_sends(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
  shutdown(c->fd, SHUT_WR);
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, 400);
  assert_true(cli_eof(c));
  cli_close(c);
}

static void test_limits(void **state) {
  int port = port_of(state);
  static char big[200 * 1024];

  /* Declared body over 64 KiB: refused before it is sent. */
  const char *r1 = "POST /reload HTTP/1.1\r\nContent-Length: 65537\r\n\r\n";
  expect_refused(port, r1, strlen(r1), 413);
  /* Exactly 64 KiB is fine. */
  struct client *c = cli_open(port);
  cli_sends(c, "POST /reload HTTP/1.1\r\nContent-Length: 65536\r\n\r\n");
  memset(big, 'a', 65536);
  cli_send(c, big, 65536);
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, 422);
  cli_close(c);

  /* Chunked body over 64 KiB: refused when it gets there. */
  size_t n = (size_t)sprintf(big, "POST /reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 3; i++) {
    n += (size_t)sprintf(big + n, "8000\r\n");
    memset(big + n, 'b', 0x8000);
    n += 0x8000;
    n += (size_t)sprintf(big + n, "\r\n");
  }
  expect_refused(port, big, n, 413);

  /* URL over 8 KiB. */
  n = (size_t)sprintf(big, "GET /");
  memset(big + n, 'u', 9000);
  n += 9000;
  n += (size_t)sprintf(big + n, " HTTP/1.1\r\n\r\n");
  expect_refused(port, big, n, 414);

  /* Too many header fields. */
  n = (size_t)sprintf(big, "GET /healthz HTTP/1.1\r\n");
  for (int i = 0; i < 150; i++) n += (size_t)sprintf(big + n, "X-H%d: v\r\n", i);
  n += (size_t)sprintf(big + n, "\r\n");
  expect_refused(port, big, n, 431);

  /* One huge header value. */
  n = (size_t)sprintf(big, "GET /healthz HTTP/1.1\r\nX-Big: ");
  memset(big + n, 'h', 20000);
  n += 20000;
  n += (size_t)sprintf(big + n, "\r\n\r\n");
  expect_refused(port, big, n, 431);
}

static void test_byte_at_a_time(void **state) {
  struct client *c = cli_open(port_of(state));
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  const char *req = "GET /explain?a=b HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n";
  for (size_t i = 0; req[i]; i++) {
    cli_send(c, req + i, 1);
    if (i % 8 == 0) usleep(1000);
  }
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, 200);
  assert_string_equal(R.body, "query=a=b\n");
  cli_close(c);
}

/* Two pipelined requests split into two writes at every position: the
 * parser's pause/resume must pick up exactly where the first ended. */
static void test_split_everywhere(void **state) {
  const char *req = "POST /reload HTTP/1.1\r\nContent-Length: 2\r\n\r\nab"
                    "GET /explain?q HTTP/1.1\r\n\r\n";
  size_t n = strlen(req);
  for (size_t cut = 1; cut < n; cut++) {
    struct client *c = cli_open(port_of(state));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    cli_send(c, req, cut);
    usleep(2000);
    cli_send(c, req + cut, n - cut);
    assert_int_equal(cli_response(c, &R, false), 0);
    assert_int_equal(R.status, 422);
    assert_int_equal(cli_response(c, &R, false), 0);
    assert_int_equal(R.status, 200);
    assert_string_equal(R.body, "query=q\n");
    cli_close(c);
  }
}

/* A response much bigger than the socket buffers, read slowly: exercises
 * partial writes and the write watcher. */
static void test_large_response(void **state) {
  struct sl_metric_family *f =
      sl_metrics_family("admin_big_total", "Many series.", SL_METRIC_COUNTER, "route,code");
  for (int i = 0; i < 20000; i++) {
    char route[32], code[8];
    snprintf(route, sizeof(route), "route-%05d", i);
    snprintf(code, sizeof(code), "%d", 200 + i % 300);
    sl_metric_add(sl_metrics_series(f, (const char *[]){route, code}), (uint64_t)i);
  }
  char *want;
  size_t want_len;
  assert_int_equal(sl_metrics_render(&want, &want_len), 0);
  assert_true(want_len > 500000);

  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  struct timeval tv = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port_of(state))};
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
  const char *req = "GET /metrics HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n";
  assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
  usleep(50 * 1000); /* let the server fill the socket and wait */

  size_t cap = want_len + 4096, len = 0;
  char *got = malloc(cap);
  const char *tail = "\r\n\r\nok\n";
  while (len < strlen(tail) || memcmp(got + len - strlen(tail), tail, strlen(tail)) != 0) {
    assert_true(len < cap);
    ssize_t n = recv(fd, got + len, cap - len < 1500 ? cap - len : 1500, 0);
    assert_true(n > 0);
    len += (size_t)n;
  }
  close(fd);
  char *body = memmem(got, len, "\r\n\r\n", 4);
  assert_non_null(body);
  body += 4;
  char cl[64];
  snprintf(cl, sizeof(cl), "content-length: %zu\r\n", want_len);
  assert_non_null(memmem(got, (size_t)(body - got), cl, strlen(cl)));
  assert_memory_equal(body, want, want_len);
  assert_memory_equal(body + want_len, "HTTP/1.1 200 OK\r\n", 17);
  free(got);
  free(want);
}

/* 32 MiB, more than loopback socket buffers take at once, read slowly: the
 * server must go through partial writes and its write watcher. */
static void test_partial_writes(void **state) {
  size_t want = 32u << 20;
  struct client *c = cli_open(port_of(state));
  char req[128];
  snprintf(req, sizeof(req), "GET /explain?big=%zu HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n", want);
  cli_sends(c, req);
  char *end;
  while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4))) assert_true(cli_fill(c) > 0);
  cli_consume(c, (size_t)(end - c->buf) + 4);
  size_t got = 0;
  int pause = 0;
  while (got < want) {
    if (c->len == 0) {
      assert_true(cli_fill(c) > 0);
      if (++pause % 512 == 0) usleep(1000);
    }
    size_t n = c->len < want - got ? c->len : want - got;
    for (size_t i = 0; i < n; i++)
      if (c->buf[i] != (char)('a' + (got + i) % 23)) fail_msg("byte %zu differs", got + i);
    got += n;
    cli_consume(c, n);
  }
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, 200);
  assert_string_equal(R.body, "ok\n");
  cli_close(c);
}

static void test_timeouts(void **state) {
  struct server *s = server_start(0.3, &hooks);
  struct timespec t0, t1;

  /* A partial request gets 408, then the connection closes. */
  struct client *c = cli_open(s->port);
  cli_sends(c, "GET /heal");
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, 408);
  assert_true(cli_eof(c));
  clock_gettime(CLOCK_MONOTONIC, &t1);
  assert_true(t1.tv_sec - t0.tv_sec < 3);
  cli_close(c);

  /* Dripping bytes does not extend the deadline. */
  c = cli_open(s->port);
  cli_sends(c, "GET /healthz HTTP/1.1\r\n");
  for (int i = 0; i < 5; i++) {
    usleep(100 * 1000);
    if (send(c->fd, "X: y\r\n", 6, MSG_NOSIGNAL) < 0) break;
  }
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, 408);
  cli_close(c);

  /* An idle keep-alive connection is closed without a word. */
  c = cli_open(s->port);
  cli_sends(c, "GET /healthz HTTP/1.1\r\n\r\n");
  assert_int_equal(cli_response(c, &R, false), 0);
  assert_int_equal(R.status, 200);
  assert_true(cli_eof(c));
  cli_close(c);

  c = cli_open(s->port);
  assert_true(cli_eof(c));
  cli_close(c);
  server_stop(s);
}

static void test_max_connections(void **state) {
  int port = port_of(state);
  struct client *cs[64];
  for (int i = 0; i < 64; i++) {
    cs[i] = cli_open(port);
    cli_sends(cs[i], "GET /healthz HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_response(cs[i], &R, false), 0);
    assert_int_equal(R.status, 200);
  }
  struct client *extra = cli_open(port);
  assert_int_equal(cli_response(extra, &R, false), 0);
  assert_int_equal(R.status, 503);
  assert_true(cli_eof(extra));
  cli_close(extra);

  /* Freeing a slot lets a new connection in (once the server noticed). */
  cli_close(cs[0]);
  bool ok = false;
  for (int tries = 0; tries < 100 && !ok; tries++) {
    struct client *c = cli_open(port);
    cli_sends(c, "GET /healthz HTTP/1.1\r\n\r\n");
    ok = cli_response(c, &R, false) == 0 && R.status == 200;
    cli_close(c);
    if (!ok) usleep(20 * 1000);
  }
  assert_true(ok);
  for (int i = 1; i < 64; i++) cli_close(cs[i]);
}

static void test_bind_error(void **state) {
  struct sl_sockaddr addr = {.text = "127.0.0.1:busy"};
  struct sockaddr_in *sin = (struct sockaddr_in *)&addr.ss;
  sin->sin_family = AF_INET;
  sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin->sin_port = htons((uint16_t)port_of(state));
  addr.len = sizeof(*sin);
  char err[256] = "";
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  assert_null(sl_admin_new(loop, &addr, &hooks, NULL, err, sizeof(err)));
  assert_non_null(strstr(err, "127.0.0.1:busy"));
  assert_non_null(strstr(err, "bind"));
  struct sl_sockaddr none = {0};
  assert_null(sl_admin_new(loop, &none, &hooks, NULL, err, sizeof(err)));
  ev_loop_destroy(loop);
}

/* ---- fuzz-ish: nothing on the admin port may crash or hang ---------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}

static size_t make_input(char *buf, size_t cap) {
  static const char *const valid[] = {
      "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
      "POST /reload HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody",
      "POST /reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n",
      "GET /explain?ip=1.2.3.4&path=/a HTTP/1.1\r\nConnection: close\r\n\r\n",
      "HEAD /metrics HTTP/1.0\r\n\r\n",
  };
  static const char *const pieces[] = {
      "GET ", "POST ", "HEAD ", "/", "/metrics", "?", "HTTP/1.1", "HTTP/1.0", "\r\n", "\n",
      "\r\n\r\n", ": ", "Content-Length", "Transfer-Encoding", "chunked", "0", "ffffffff",
      "-1", " ", "\t", "\0", "\xff", "Connection", "close", "Upgrade", "Expect",
  };
  size_t n = 0;
  switch (rnd() % 3) {
  case 0: /* random bytes */
    n = 1 + rnd() % 512;
    for (size_t i = 0; i < n; i++) buf[i] = (char)rnd();
    break;
  case 1: { /* a valid request with a few bytes mutated, dropped or cut */
    const char *v = valid[rnd() % 5];
    n = strlen(v);
    memcpy(buf, v, n);
    int muts = 1 + rnd() % 4;
    for (int m = 0; m < muts; m++) {
      size_t at = rnd() % n;
      switch (rnd() % 3) {
      case 0: buf[at] = (char)rnd(); break;
      case 1: memmove(buf + at, buf + at + 1, n - at - 1); n--; break;
      case 2: n = at + 1; break;
      }
      if (n == 0) n = 1;
    }
    break;
  }
  default: /* HTTP-ish tokens in random order */
    for (int i = 1 + rnd() % 40; i > 0; i--) {
      const char *p = pieces[rnd() % (sizeof(pieces) / sizeof(pieces[0]))];
      size_t l = strlen(p) ? strlen(p) : 1; /* "\0" is one NUL byte */
      if (n + l >= cap) break;
      memcpy(buf + n, p, l);
      n += l;
    }
  }
  return n;
}

static void test_fuzz_garbage(void **state) {
  int port = port_of(state);
  char buf[4096];
  int iters = getenv("ADMIN_FUZZ_ITERS") ? atoi(getenv("ADMIN_FUZZ_ITERS")) : 400;
  if (getenv("ADMIN_FUZZ_SEED")) rng_state = strtoull(getenv("ADMIN_FUZZ_SEED"), NULL, 0) | 1;
  for (int iter = 0; iter < iters; iter++) {
    size_t n = make_input(buf, sizeof(buf));
    struct client *c = cli_open(port);
    /* Sometimes in two writes, to split the input somewhere. */
    size_t cut = rnd() % (n + 1);
    cli_send(c, buf, cut);
    if (cut < n) cli_send(c, buf + cut, n - cut);
    shutdown(c->fd, SHUT_WR);
    /* Whatever came back, the server must close cleanly and promptly: EOF,
     * not a reset (it lingers over input it dropped), and never leave us
     * waiting for the receive timeout. */
    ssize_t r;
    char sink[8192];
    errno = 0;
    while ((r = recv(c->fd, sink, sizeof(sink), 0)) > 0) {
    }
    if (r < 0) {
      fprintf(stderr, "iteration %d: recv: %s; input (%zu bytes):\n", iter, strerror(errno), n);
      fwrite(buf, 1, n, stderr);
      fail();
    }
    cli_close(c);
  }
  /* Still serving. */
  roundtrip(port, "GET /healthz HTTP/1.1\r\n\r\n", &R);
  assert_int_equal(R.status, 200);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_healthz, setup, teardown),
      cmocka_unit_test_setup_teardown(test_readyz, setup, teardown),
      cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
      cmocka_unit_test_setup_teardown(test_config, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
      cmocka_unit_test_setup_teardown(test_explain, setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_found_and_method, setup, teardown),
      cmocka_unit_test_setup_teardown(test_missing_hooks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_guarded_routes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_head, setup, teardown),
      cmocka_unit_test_setup_teardown(test_keep_alive, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pipelined, setup, teardown),
      cmocka_unit_test_setup_teardown(test_connection_close, setup, teardown),
      cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
      cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
      cmocka_unit_test_setup_teardown(test_byte_at_a_time, setup, teardown),
      cmocka_unit_test_setup_teardown(test_split_everywhere, setup, teardown),
      cmocka_unit_test_setup_teardown(test_large_response, setup, teardown),
      cmocka_unit_test_setup_teardown(test_partial_writes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeouts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_max_connections, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bind_error, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fuzz_garbage, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
