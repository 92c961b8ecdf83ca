/*
 * Unit tests for proxy/upstream/: the HTTP/1.1 backend driven through the
 * pool over a socketpair (upstream_world.h), with a real libev loop.
 * Responses are fed whole, one byte at a time and in random splits;
 * pipelined answers are matched to their requests in order; a head past
 * the listener's limits fails the exchange; a full response pipe stops
 * reading the origin until the frontend drains it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>

#include "upstream_world.h"

static const char *resp_header(const struct sl_stream *s, const char *name) {
  for (uint32_t i = 0; i < s->resp.n_headers; i++)
    if (strcmp(s->resp.headers[i].name, name) == 0) return s->resp.headers[i].value;
  return NULL;
}

/* Feeds |resp| to the origin end in pieces: |split| 0 whole, 1 one byte
 * at a time, else random pieces of 1..split bytes (seeded). */
static void feed(int fd, const char *resp, size_t n, size_t split, unsigned seed) {
  srand(seed);
  size_t off = 0;
  while (off < n) {
    size_t k = split == 0 ? n - off : split == 1 ? 1 : 1 + (size_t)rand() % split;
    if (k > n - off) k = n - off;
    origin_write(fd, resp + off, k);
    off += k;
    pump();
  }
}

struct resp_case {
  const char *name;
  const char *bytes;
  int status;
  bool close_delimited; /* the origin closes to end the body */
  bool has_x_a;
};

static const struct resp_case cases[] = {
    {"content-length",
     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nX-A: 1\r\n\r\n"
     "hello world",
     200, false, true},
    {"chunked",
     "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-A:  1 \r\n\r\n"
     "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
     201, false, true},
    {"interim",
     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
     "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-A: 1\r\n\r\nhello world",
     200, false, true},
    {"close-delimited", "HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nhello world", 200, true, true},
};

static void run_case(const struct resp_case *c, size_t split, unsigned seed) {
  world_setup(1);
  struct exchange x = {0};
  exchange_open(&x, "GET", "/x?y=1");
  struct sl_stream *s = x.s;
  struct fe_rec *rec = &x.rec;
  assert_true(strncmp(x.req, "GET /x?y=1 HTTP/1.1\r\nhost: t.example\r\n", 38) == 0);
  assert_non_null(strstr(x.req, "\r\nx-forwarded-for: 127.0.0.1\r\n"));
  assert_true(strlen(x.req) >= 4 && strcmp(x.req + strlen(x.req) - 4, "\r\n\r\n") == 0);

  feed(x.fd, c->bytes, strlen(c->bytes), split, seed);
  if (c->close_delimited) {
    assert_false(rec->done); /* no framing: only the close ends it */
    close(x.fd);
    x.fd = -1;
    pump();
  }
  if (!rec->done || rec->status != c->status)
    fail_msg("%s, split %zu, seed %u: done %d status %d", c->name, split, seed, rec->done,
             rec->status);
  assert_int_equal(rec->heads, 1); /* interim answers are not forwarded */
  assert_int_equal(rec->body_len, 11);
  assert_memory_equal(rec->body, "hello world", 11);
  if (c->has_x_a) assert_string_equal(resp_header(s, "x-a"), "1");
  /* Framing and interim fields stay on the origin's hop. */
  assert_null(resp_header(s, "content-length"));
  assert_null(resp_header(s, "transfer-encoding"));
  assert_null(resp_header(s, "link"));
  assert_null(s->up); /* the exchange let go of its connection */
  /* A framed response leaves a reusable connection, a close does not. */
  assert_int_equal(pool->n_conns, c->close_delimited ? 0 : 1);
  assert_true(c->close_delimited ? pool->idle == NULL : pool->idle != NULL);
  exchange_close(&x);
  world_teardown();
}

static void test_response_whole(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) run_case(&cases[i], 0, 0);
}

static void test_response_byte_by_byte(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) run_case(&cases[i], 1, 0);
}

static void test_response_random_splits(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    for (unsigned seed = 1; seed <= 20; seed++) run_case(&cases[i], 13, seed);
}

/* A head past limits.header_bytes (or limits.headers) of the listener the
 * request came in on is the origin's failure: 502
 * upstream_header_too_large, and the connection is closed. Within the
 * limits the same head is answered. */
static void check_head(uint32_t header_bytes, uint32_t headers, const char *resp, bool fits) {
  world_setup(1);
  atomic_store(&lis.header_bytes, header_bytes);
  atomic_store(&lis.headers, headers);
  struct exchange x = {0};
  exchange_open(&x, "GET", "/big");
  feed(x.fd, resp, strlen(resp), 7, 3);
  if (fits) {
    assert_int_equal(x.rec.status, 200);
    assert_true(x.rec.done);
  } else {
    assert_int_equal(x.rec.status, 502);
    assert_true(x.s->local_response);
    assert_non_null(x.s->local_body);
    assert_non_null(
        memmem(x.s->local_body, x.s->local_body_len, "upstream_header_too_large", 25));
    assert_int_equal(pool->n_conns, 0);
  }
  exchange_close(&x);
  world_teardown();
}

static void test_head_too_large(void **state) {
  (void)state;
  char big[1024];
  snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nX-Big: %0400d\r\nContent-Length: 0\r\n\r\n", 0);
  static const char many[] =
      "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nContent-Length: 0\r\n\r\n";
  check_head(256, 64, big, false);
  check_head(8192, 3, many, false);
  check_head(8192, 64, big, true);
  check_head(8192, 5, many, true);
}

/* With pipeline: 4, bodyless requests share one connection; the answers,
 * whatever their splits, go to their requests in order (a HEAD's answer
 * has no body despite its Content-Length). */
static void run_pipeline(size_t split, unsigned seed) {
  world_setup(4);
  struct fe_rec rec[3] = {{0}};
  struct sl_stream *s0 = world_stream("GET", "/a", &rec[0]);
  int fd = world_origin(s0);
  struct sl_stream *s1 = world_stream("HEAD", "/b", &rec[1]);
  struct sl_stream *s2 = world_stream("GET", "/c", &rec[2]);
  sl_upstream_start(s1);
  sl_upstream_start(s2);
  pump();
  assert_int_equal(pool->n_conns, 1);
  assert_ptr_equal(s1->up, s0->up);
  assert_ptr_equal(s2->up, s0->up);
  char req[8192];
  origin_read(fd, req, sizeof(req));
  char *a = strstr(req, "GET /a "), *b = strstr(req, "HEAD /b "), *c = strstr(req, "GET /c ");
  assert_true(a && b && c && a < b && b < c);
  static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX-N: 0\r\n\r\nA"
                             "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-N: 1\r\n\r\n"
                             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-N: 2\r\n\r\n"
                             "3\r\nCCC\r\n0\r\n\r\n";
  feed(fd, resp, sizeof(resp) - 1, split, seed);
  const char *want[] = {"A", "", "CCC"};
  const char *n[] = {"0", "1", "2"};
  struct sl_stream *ss[] = {s0, s1, s2};
  for (int i = 0; i < 3; i++) {
    assert_true(rec[i].done);
    assert_int_equal(rec[i].status, 200);
    assert_string_equal(resp_header(ss[i], "x-n"), n[i]);
    assert_int_equal(rec[i].body_len, strlen(want[i]));
    assert_memory_equal(rec[i].body, want[i], strlen(want[i]));
    assert_null(ss[i]->up);
  }
  assert_non_null(pool->idle); /* all answered: back in the pool */
  for (int i = 0; i < 3; i++) {
    sl_stream_del(ss[i]);
    fe_rec_free(&rec[i]);
  }
  close(fd);
  world_teardown();
}

static void test_pipelined_in_order(void **state) {
  (void)state;
  run_pipeline(0, 0);
  run_pipeline(1, 0);
  for (unsigned seed = 1; seed <= 10; seed++) run_pipeline(29, seed);
}

/* A response body larger than SL_BODY_PIPE_CAP: while the frontend does
 * not drain, the pipe holds at most the cap plus one read and the origin
 * is not read; once drained, the rest flows, byte-exact. */
static void test_backpressure(void **state) {
  (void)state;
  world_setup(1);
  struct exchange x = {.rec = {.hold = true}};
  exchange_open(&x, "GET", "/bytes");
  struct sl_stream *s = x.s;
  struct fe_rec *rec = &x.rec;
  int fd = x.fd;
  const size_t total = 4 * SL_BODY_PIPE_CAP + 123;
  char *body = malloc(total);
  for (size_t i = 0; i < total; i++) body[i] = (char)(i % 251);
  char head[128];
  int hl = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", total);
  origin_write(fd, head, (size_t)hl);
  /* Write what the socket takes without the loop running, then let the
   * backend read until it stops. */
  size_t sent = 0;
  for (;;) {
    ssize_t r = write(fd, body + sent, total - sent);
    if (r <= 0) break;
    sent += (size_t)r;
  }
  pump();
  struct sl_upconn *u = s->up;
  assert_non_null(u);
  assert_int_equal(rec->status, 200);
  assert_true(s->resp_body.len >= SL_BODY_PIPE_CAP);
  assert_true(s->resp_body.len <= SL_BODY_PIPE_CAP + SL_CHUNK_SIZE);
  assert_false(ev_is_active(&u->rio)); /* paused: the origin is not read */
  size_t held = s->resp_body.len;
  pump();
  assert_int_equal(s->resp_body.len, held);
  /* The frontend drains; reading resumes, until all has arrived. */
  rec->hold = false;
  for (int round = 0; round < 10000 && !rec->done; round++) {
    fe_take_body(s, rec);
    sl_stream_response_drained(s);
    if (sent < total) {
      ssize_t r = write(fd, body + sent, total - sent);
      if (r > 0) sent += (size_t)r;
    }
    pump();
    assert_true(s->resp_body.len <= SL_BODY_PIPE_CAP + SL_CHUNK_SIZE);
  }
  assert_true(rec->done);
  assert_int_equal(rec->body_len, total);
  assert_memory_equal(rec->body, body, total);
  free(body);
  exchange_close(&x);
  world_teardown();
}

/* An origin that closes before answering a fresh connection: 502
 * upstream_closed (no replay: the connection was not a reused one). */
static void test_closed_before_answer(void **state) {
  (void)state;
  world_setup(1);
  struct exchange x = {0};
  exchange_open(&x, "GET", "/gone");
  close(x.fd);
  x.fd = -1;
  pump();
  assert_int_equal(x.rec.status, 502);
  assert_non_null(memmem(x.s->local_body, x.s->local_body_len, "upstream_closed", 15));
  assert_int_equal(pool->n_conns, 0);
  exchange_close(&x);
  world_teardown();
}

/* A request body of unknown length goes out chunked, each piece framed as
 * it is taken from the stream's pipe, then the last chunk; the frontend
 * hears how much was taken. */
static void test_request_body_chunked(void **state) {
  (void)state;
  world_setup(1);
  struct exchange x = {0};
  x.s = world_stream("POST", "/up", &x.rec);
  x.s->req.has_body = true;
  x.s->req_done = false;
  sl_pipe_write(&x.s->req_body, "hello", 5);
  x.fd = world_origin(x.s);
  origin_read(x.fd, x.req, sizeof(x.req));
  assert_non_null(strstr(x.req, "\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"));
  assert_null(strstr(x.req, "0\r\n\r\n"));
  sl_pipe_write(&x.s->req_body, " world!", 7);
  x.s->req_done = true;
  sl_stream_request_body(x.s);
  pump();
  origin_read(x.fd, x.req, sizeof(x.req));
  assert_string_equal(x.req, "7\r\n world!\r\n0\r\n\r\n");
  assert_int_equal(x.rec.drained, 12);
  static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  feed(x.fd, resp, sizeof(resp) - 1, 0, 0);
  assert_true(x.rec.done);
  assert_int_equal(x.rec.status, 200);
  assert_non_null(pool->idle);
  exchange_close(&x);
  world_teardown();
}

/* The keep-alive race: the origin closes a reused connection as the next
 * request reaches it. An idempotent request is sent again on a new
 * connection (here the pool's address refuses, so the second attempt
 * fails to connect: 502 upstream_connect_failed); a POST is not replayed
 * (502 upstream_closed). */
static void check_reused_close(const char *method, const char *want_error, bool retried) {
  world_setup(1);
  struct exchange x = {0};
  exchange_open(&x, "GET", "/first");
  static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  feed(x.fd, resp, sizeof(resp) - 1, 0, 0);
  assert_true(x.rec.done);
  assert_non_null(pool->idle);
  struct fe_rec rec2 = {0};
  struct sl_stream *s2 = world_stream(method, "/second", &rec2);
  if (strcmp(method, "POST") == 0) {
    s2->req.has_body = true;
    s2->req.content_length = 3;
    s2->req_done = true;
    sl_pipe_write(&s2->req_body, "abc", 3);
  }
  struct sl_upconn *idle = pool->idle;
  sl_upstream_start(s2);
  assert_ptr_equal(s2->up, idle); /* taken from the idle list */
  assert_null(pool->idle);
  pump();
  origin_read(x.fd, x.req, sizeof(x.req));
  assert_non_null(strstr(x.req, "/second HTTP/1.1\r\n"));
  close(x.fd);
  x.fd = -1;
  /* The retry's connect fails or is answered by a close: bounded by the
   * pool's connect timeout (1 s), so the loop blocks in the event loop
   * until then, never longer than the deadline. */
  for (ev_tstamp until = ev_time() + 3.0; rec2.status == 0 && ev_time() < until;)
    ev_run(w.loop, EVRUN_ONCE);
  assert_int_equal(rec2.status, 502);
  assert_non_null(memmem(s2->local_body, s2->local_body_len, want_error, strlen(want_error)));
  assert_int_equal(s2->upstream_retried, retried);
  assert_int_equal(pool->n_conns, 0);
  sl_stream_del(s2);
  fe_rec_free(&rec2);
  exchange_close(&x);
  world_teardown();
}

static void test_reused_connection_closed(void **state) {
  (void)state;
  check_reused_close("GET", "upstream_connect_failed", true);
  check_reused_close("POST", "upstream_closed", false);
}

/* sluice_upstream_connections{upstream="origin",state} or, with state
 * NULL, sluice_upstream_pending, as the collector sets them. */
static int64_t pool_gauge(const char *state) {
  sl_pool_collect();
  const char *conns[2] = {"origin", state}, *pending[1] = {"origin"};
  struct sl_metric_series *m = state ? sl_metrics_series(sl_stats.upstream_connections, conns)
                                     : sl_metrics_series(sl_stats.upstream_pending, pending);
  return (int64_t)sl_metric_gauge_value(m);
}

/* The pool's gauges follow a connection from opening (active) through its
 * exchange (active) to the idle list, and a stream waiting behind
 * max_connections (pending) until it leaves; a freed pool reads 0. */
static void test_pool_gauges(void **state) {
  (void)state;
  world_setup(1);
  struct exchange x = {0};
  x.s = world_stream("GET", "/g", &x.rec);
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  struct sl_upconn *u = sl_upconn_adopt(pool, sv[0]);
  assert_non_null(u);
  u->s = x.s;
  x.s->up = u;
  assert_int_equal(pool_gauge("active"), 1); /* opening counts as active */
  assert_int_equal(pool_gauge("idle"), 0);
  x.fd = sv[1];
  pump();
  origin_read(x.fd, x.req, sizeof(x.req));
  assert_int_equal(pool_gauge("active"), 1);
  /* A second stream waits behind max_connections 1. */
  pool->max_conns = 1;
  struct fe_rec rec2 = {0};
  struct sl_stream *s2 = world_stream("GET", "/h", &rec2);
  sl_upstream_start(s2);
  assert_true(s2->queued);
  assert_int_equal(pool_gauge(NULL), 1);
  sl_upstream_detach(s2); /* the client left */
  assert_int_equal(pool_gauge(NULL), 0);
  sl_stream_del(s2);
  fe_rec_free(&rec2);
  feed(x.fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 40, 0, 0);
  assert_true(x.rec.done);
  assert_int_equal(pool_gauge("active"), 0);
  assert_int_equal(pool_gauge("idle"), 1);
  exchange_close(&x);
  world_teardown();
  assert_int_equal(pool_gauge("idle"), 0);
  assert_int_equal(pool_gauge("active"), 0);
}

static atomic_bool scraping;

static void *scraper_main(void *arg) {
  (void)arg;
  while (atomic_load(&scraping)) sl_pool_collect();
  return NULL;
}

/* The collector reads every pool's counts and the registry from another
 * thread while the worker makes pools, runs exchanges and frees pools
 * (make tsan runs this: a plain cross-thread read would be reported). */
static void test_pool_gauges_scraped_concurrently(void **state) {
  (void)state;
  atomic_store(&scraping, true);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, scraper_main, NULL), 0);
  for (int round = 0; round < 3; round++) run_case(&cases[0], 0, 0);
  for (unsigned seed = 1; seed <= 5; seed++) run_case(&cases[1], 13, seed);
  atomic_store(&scraping, false);
  pthread_join(th, NULL);
  assert_int_equal(pool_gauge("idle"), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_response_whole),
      cmocka_unit_test(test_response_byte_by_byte),
      cmocka_unit_test(test_response_random_splits),
      cmocka_unit_test(test_head_too_large),
      cmocka_unit_test(test_pipelined_in_order),
      cmocka_unit_test(test_backpressure),
      cmocka_unit_test(test_closed_before_answer),
      cmocka_unit_test(test_request_body_chunked),
      cmocka_unit_test(test_reused_connection_closed),
      cmocka_unit_test(test_pool_gauges),
      cmocka_unit_test(test_pool_gauges_scraped_concurrently),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
