/*
 * Unit tests for proxy/core/stream.c: the protocol-neutral exchange
 * driven by a test frontend (its struct sl_frontend_ops records what
 * stream.c and the upstream side call) on a connection of the in-process
 * world (front_world.h): dispatch to a local answer, to a dead upstream,
 * and a request body under back-pressure against the live stub.
 */
#define FUZZ_NAME "test_stream"
#include "front_world.h"

/* ---- the test frontend --------------------------------------------- */

static struct {
  int heads, bodies, aborts;
  int status;
  char body[1024];
  size_t body_len;
  unsigned drained_calls;
  size_t drained_bytes;
  bool resume; /* set by request_body_drained: the producer may go on */
} fe;

static void fe_response_head(struct sl_stream *s) {
  fe.heads++;
  fe.status = s->resp.status;
  s->resp_head_sent = true;
}

static void fe_take(const char *p, size_t n) {
  size_t take = sizeof(fe.body) - fe.body_len < n ? sizeof(fe.body) - fe.body_len : n;
  memcpy(fe.body + fe.body_len, p, take);
  fe.body_len += take;
}

static void fe_response_body(struct sl_stream *s) {
  fe.bodies++;
  if (s->local_body_len) {
    fe_take(s->local_body, s->local_body_len);
    s->local_body_len = 0;
  }
  bool took = !sl_pipe_empty(&s->resp_body);
  while (!sl_pipe_empty(&s->resp_body)) {
    char buf[512];
    size_t n = sl_pipe_read(&s->resp_body, buf, sizeof(buf));
    fe_take(buf, n);
  }
  if (took) sl_stream_response_drained(s);
}

/* Like h1 (resume reading) and h2 (consume: WINDOW_UPDATE), the frontend
 * only notes that it may produce again; it never pushes from here. */
static void fe_request_body_drained(struct sl_stream *s, size_t n) {
  (void)s;
  fe.drained_calls++;
  fe.drained_bytes += n;
  fe.resume = true;
}

static void fe_abort(struct sl_stream *s) {
  (void)s;
  fe.aborts++;
}

static const struct sl_frontend_ops test_fe = {
    .response_head = fe_response_head,
    .response_body = fe_response_body,
    .request_body_drained = fe_request_body_drained,
    .abort = fe_abort,
};

/* ---- helpers --------------------------------------------------------- */

static struct tclient *client;

/* A stream on a fresh world connection, its request head filled in as a
 * frontend would. */
static struct sl_stream *stream_open(const char *method, const char *path,
                                     const char *const *headers, size_t n_headers) {
  memset(&fe, 0, sizeof(fe));
  client = tc_open(false);
  struct sl_conn *c = w.conns;
  assert_non_null(c);
  struct sl_stream *s = sl_stream_new(c, &test_fe, SL_PROTO_H1);
  assert_non_null(s);
  s->req.method = method;
  s->req.path = path;
  s->req.authority = "a";
  s->req.scheme = "http";
  assert_int_equal(sl_stream_add_header(s, "host", 4, "a", 1), 0);
  for (size_t i = 0; i < n_headers; i++)
    assert_int_equal(sl_stream_add_header(s, headers[2 * i], strlen(headers[2 * i]),
                                          headers[2 * i + 1], strlen(headers[2 * i + 1])),
                     0);
  return s;
}

static void stream_close(struct sl_stream *s) {
  sl_stream_finish_metrics(s);
  sl_stream_del(s);
  tc_close(client);
}

static bool done_head(struct tclient *t, const void *arg) {
  (void)t;
  (void)arg;
  return fe.heads > 0;
}

static bool done_resume(struct tclient *t, const void *arg) {
  (void)t;
  (void)arg;
  return fe.resume || fe.heads > 0;
}

static bool done_body(struct tclient *t, const void *arg) {
  (void)t;
  const struct sl_stream *s = arg;
  return s->resp_done && fe.body_len > 0;
}

/* ---- tests ----------------------------------------------------------- */

/* A blocklisted firmware (9.x: 410) is answered by sluice during
 * dispatch: head and body at once, no upstream. */
static void test_dispatch_local_answer(void **state) {
  (void)state;
  static const char *const h[] = {"x-firmware-version", "9.1.0"};
  struct sl_stream *s = stream_open("GET", "/x", h, 1);
  sl_stream_dispatch(s);
  assert_int_equal(fe.heads, 1);
  assert_int_equal(fe.status, 410);
  assert_true(s->local_response);
  assert_true(s->resp_done);
  assert_null(s->up);
  static const char want[] = "{\"error\":\"blocked\"";
  assert_true(fe.body_len > sizeof(want) - 1);
  assert_memory_equal(fe.body, want, sizeof(want) - 1);
  const struct sl_header *ct = sl_request_header(
      &(struct sl_request){.headers = s->resp.headers, .n_headers = s->resp.n_headers},
      "content-type");
  assert_non_null(ct);
  assert_string_equal(ct->value, "application/json");
  stream_close(s);
}

/* sl_stream_respond_error with a retry-after adds the header; the body
 * names the error and policy. */
static void test_respond_error_retry_after(void **state) {
  (void)state;
  struct sl_stream *s = stream_open("GET", "/x", NULL, 0);
  sl_stream_respond_error(s, 429, "rate_limited", "per_device", 7);
  assert_int_equal(fe.status, 429);
  const struct sl_header *ra = sl_request_header(
      &(struct sl_request){.headers = s->resp.headers, .n_headers = s->resp.n_headers},
      "retry-after");
  assert_non_null(ra);
  assert_string_equal(ra->value, "7");
  static const char want[] =
      "{\"error\":\"rate_limited\",\"policy\":\"per_device\",\"retry_after\":7}";
  assert_int_equal(fe.body_len, sizeof(want) - 1);
  assert_memory_equal(fe.body, want, sizeof(want) - 1);
  stream_close(s);
}

/* The "dead" upstream refuses connections: the stream is answered 502 by
 * the upstream side through sl_stream_upstream_failed. */
static void test_dispatch_dead_upstream(void **state) {
  (void)state;
  struct sl_stream *s = stream_open("GET", "/nothing-here", NULL, 0);
  sl_stream_dispatch(s);
  assert_true(tc_until(client, done_head, NULL, 2000));
  assert_int_equal(fe.status, 502);
  assert_true(s->local_response);
  assert_non_null(memmem(fe.body, fe.body_len, "upstream/dead", 13));
  stream_close(s);
}

/* A 200000-byte request body to the live stub. The producer writes into
 * req_body until sl_pipe_full and stops; it goes on only once the
 * upstream side took bytes and called request_body_drained. The whole
 * body arrives (the stub answers 200 "ok" only after the last byte). */
static void test_request_body_back_pressure(void **state) {
  (void)state;
  enum { TOTAL = 200000 };
  static const char *const h[] = {"content-length", "200000"};
  struct sl_stream *s = stream_open("POST", "/up/upload", h, 1);
  s->req.content_length = TOTAL;
  s->req.has_body = true;
  sl_stream_dispatch(s);
  assert_int_equal(fe.heads, 0);
  static char block[4096];
  memset(block, 'q', sizeof(block));
  size_t sent = 0;
  unsigned pauses = 0;
  while (sent < TOTAL) {
    while (sent < TOTAL && !sl_pipe_full(&s->req_body)) {
      size_t n = TOTAL - sent < sizeof(block) ? TOTAL - sent : sizeof(block);
      assert_int_equal(sl_pipe_write(&s->req_body, block, n), 0);
      sent += n;
    }
    if (sent == TOTAL) s->req_done = true;
    fe.resume = false;
    sl_stream_request_body(s);
    if (sent == TOTAL) break;
    if (!sl_pipe_full(&s->req_body)) continue; /* taken at once */
    pauses++; /* full: the producer waits for the drained callback */
    unsigned calls = fe.drained_calls;
    assert_true(tc_until(client, done_resume, NULL, 2000));
    assert_true(fe.drained_calls > calls);
    assert_false(sl_pipe_full(&s->req_body));
  }
  assert_true(pauses > 0); /* 200 KB against a 64 KiB pipe: it had to wait */
  assert_true(tc_until(client, done_body, s, 2000));
  assert_int_equal(fe.status, 200);
  assert_int_equal(fe.body_len, 2);
  assert_memory_equal(fe.body, "ok", 2);
  assert_int_equal(fe.drained_bytes, TOTAL);
  assert_int_equal(fe.aborts, 0);
  stream_close(s);
}

int main(void) {
  world_setup();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dispatch_local_answer),
      cmocka_unit_test(test_respond_error_retry_after),
      cmocka_unit_test(test_dispatch_dead_upstream),
      cmocka_unit_test(test_request_body_back_pressure),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
