/*
 * Unit tests for proxy/front/h1.c through a real connection and no
 * listener (front_world.h): requests fed in every byte split, pipelining,
 * a bad request's 400, header limits and the header timeout (the
 * frontend's on_timeout, reached through its ops table).
 */
#define FUZZ_NAME "test_h1"
#include "front_world.h"

/* ---- responses, parsed by llhttp (strict) -------------------------- */

#define MAX_RESP 16

struct resp {
  int status;
  char body[512];
  size_t body_len;
};

struct resps {
  struct resp r[MAX_RESP];
  size_t n;              /* complete responses */
  const bool *head;      /* head[k]: the k-th request was HEAD */
  bool error;
};

static int on_body(llhttp_t *p, const char *at, size_t n) {
  struct resps *rs = p->data;
  struct resp *r = &rs->r[rs->n];
  size_t take = sizeof(r->body) - r->body_len < n ? sizeof(r->body) - r->body_len : n;
  memcpy(r->body + r->body_len, at, take);
  r->body_len += take;
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  struct resps *rs = p->data;
  rs->r[rs->n].status = p->status_code;
  return rs->head && rs->head[rs->n] ? 1 : 0;
}

static int on_message_complete(llhttp_t *p) {
  struct resps *rs = p->data;
  if (++rs->n == MAX_RESP) return -1;
  return 0;
}

/* Parses everything the client received so far. */
static void parse(const struct tclient *t, struct resps *rs, const bool *head) {
  static llhttp_settings_t st;
  llhttp_settings_init(&st);
  st.on_body = on_body;
  st.on_headers_complete = on_headers_complete;
  st.on_message_complete = on_message_complete;
  memset(rs, 0, sizeof(*rs));
  rs->head = head;
  llhttp_t p;
  llhttp_init(&p, HTTP_RESPONSE, &st);
  p.data = rs;
  llhttp_errno_t e = llhttp_execute(&p, t->buf, t->len);
  rs->error = e != HPE_OK;
}

static bool done_n_responses(struct tclient *t, const void *arg) {
  struct resps rs;
  parse(t, &rs, NULL);
  return rs.n >= *(const size_t *)arg;
}

static const char get_live[] = "GET /up/a HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\n";

/* One request, written in pieces of the sizes |pieces| gives (cycled),
 * turning the world between pieces: answered 200 "ok" by the upstream. */
static void one_request_split(const size_t *pieces, size_t n_pieces) {
  struct tclient *t = tc_open(false);
  size_t off = 0, len = sizeof(get_live) - 1;
  for (size_t k = 0; off < len; k++) {
    size_t n = pieces[k % n_pieces];
    if (n > len - off) n = len - off;
    tc_write(t, get_live + off, n);
    off += n;
    tc_spin(t, 2);
    if (off < len) assert_int_equal(t->len, 0); /* nothing answered before the head is whole */
  }
  size_t want = 1;
  assert_true(tc_until(t, done_n_responses, &want, 2000));
  struct resps rs;
  parse(t, &rs, NULL);
  assert_false(rs.error);
  assert_int_equal(rs.n, 1);
  assert_int_equal(rs.r[0].status, 200);
  assert_int_equal(rs.r[0].body_len, 2);
  assert_memory_equal(rs.r[0].body, "ok", 2);
  assert_false(t->eof); /* keep-alive */
  tc_close(t);
}

static void test_one_byte_at_a_time(void **state) {
  (void)state;
  size_t one = 1;
  one_request_split(&one, 1);
}

/* Every split point of the head into two writes. */
static void test_every_two_way_split(void **state) {
  (void)state;
  for (size_t cut = 1; cut < sizeof(get_live) - 1; cut++) {
    size_t pieces[2] = {cut, sizeof(get_live)};
    one_request_split(pieces, 2);
  }
}

static void test_random_splits(void **state) {
  (void)state;
  srand(12345);
  for (int round = 0; round < 20; round++) {
    size_t pieces[8];
    for (size_t i = 0; i < 8; i++) pieces[i] = 1 + (size_t)(rand() % 13);
    one_request_split(pieces, 8);
  }
}

/* Three requests in one write, a HEAD among them: three answers, in
 * order, the HEAD one without content. */
static void test_pipelined(void **state) {
  (void)state;
  struct tclient *t = tc_open(false);
  tc_puts(t, "GET /up/1 HTTP/1.1\r\nHost: a\r\n\r\n"
             "HEAD /up/2 HTTP/1.1\r\nHost: a\r\n\r\n"
             "GET /up/chunked HTTP/1.1\r\nHost: a\r\n\r\n");
  size_t want = 3;
  static const bool head[MAX_RESP] = {false, true, false};
  double end = tc_now() + 2;
  struct resps rs;
  do {
    tc_pump(t);
    parse(t, &rs, head);
  } while (rs.n < want && tc_now() < end);
  assert_false(rs.error);
  assert_int_equal(rs.n, 3);
  for (int i = 0; i < 3; i++) assert_int_equal(rs.r[i].status, 200);
  assert_int_equal(rs.r[0].body_len, 2);
  assert_int_equal(rs.r[1].body_len, 0);
  assert_int_equal(rs.r[2].body_len, 3);
  assert_memory_equal(rs.r[2].body, "abc", 3);
  tc_close(t);
}

/* Answered by sluice itself, then closed: the status, sluice's JSON body
 * naming |error|, "connection: close" and EOF. */
static void expect_refusal(const char *request, int status, const char *error) {
  struct tclient *t = tc_open(false);
  tc_puts(t, request);
  assert_true(tc_until(t, tc_done_eof, NULL, 2000));
  struct resps rs;
  parse(t, &rs, NULL);
  assert_false(rs.error);
  assert_int_equal(rs.n, 1);
  assert_int_equal(rs.r[0].status, status);
  char body[256];
  int bl = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"policy\":\"http\",\"retry_after\":0}",
                    error);
  assert_int_equal(rs.r[0].body_len, (size_t)bl);
  assert_memory_equal(rs.r[0].body, body, (size_t)bl);
  assert_non_null(memmem(t->buf, t->len, "connection: close\r\n", 19));
  assert_non_null(memmem(t->buf, t->len, "content-type: application/json\r\n", 32));
  tc_close(t);
}

static void test_bad_requests(void **state) {
  (void)state;
  expect_refusal("GET /up HTTP/1.1\r\n\r\n", 400, "missing_host");
  expect_refusal("GET /up HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "duplicate_host");
  expect_refusal("GET /up HTTP/1.1\r\nHost: a\r\nX: 1\r\n  folded\r\n\r\n", 400, "obs_fold");
  expect_refusal("GET /up HTTP/1.1\r\nHost: a\r\nBad Header: 1\r\n\r\n", 400, "bad_request");
}

/* The listener allows 2048 header bytes and 16 fields (world_setup). */
static void test_header_limits(void **state) {
  (void)state;
  static char req[4096];
  int n = snprintf(req, sizeof(req), "GET /up HTTP/1.1\r\nHost: a\r\nX-Big: ");
  memset(req + n, 'v', 2100);
  n += 2100;
  snprintf(req + n, sizeof(req) - (size_t)n, "\r\n\r\n");
  expect_refusal(req, 431, "header_too_large");

  n = snprintf(req, sizeof(req), "GET /up HTTP/1.1\r\nHost: a\r\n");
  for (int i = 0; i < 16; i++) n += snprintf(req + n, sizeof(req) - (size_t)n, "X-%d: v\r\n", i);
  snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
  expect_refusal(req, 431, "too_many_headers");

  /* Just under both limits: served. */
  n = snprintf(req, sizeof(req), "GET /up HTTP/1.1\r\nHost: a\r\n");
  for (int i = 0; i < 14; i++) n += snprintf(req + n, sizeof(req) - (size_t)n, "X-%d: v\r\n", i);
  snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
  struct tclient *t = tc_open(false);
  tc_puts(t, req);
  size_t want = 1;
  assert_true(tc_until(t, done_n_responses, &want, 2000));
  struct resps rs;
  parse(t, &rs, NULL);
  assert_int_equal(rs.r[0].status, 200);
  tc_close(t);
}

/* A head that never completes: the connection timer fires and h1's
 * on_timeout (through the frontend ops) answers 408 and closes. */
static void test_header_timeout(void **state) {
  (void)state;
  struct tclient *t = tc_open(true); /* 1 ms header timeout */
  tc_puts(t, "GET /up HTTP/1.1\r\nHost: a\r\n");
  tc_spin(t, 2);
  assert_true(tc_until(t, tc_done_eof, NULL, 2000));
  struct resps rs;
  parse(t, &rs, NULL);
  assert_int_equal(rs.n, 1);
  assert_int_equal(rs.r[0].status, 408);
  assert_non_null(memmem(t->buf, t->len, "request_header_timeout", 22));
  tc_close(t);
}

/* An idle keep-alive connection past its idle timeout closes without a
 * word. */
static void test_idle_timeout(void **state) {
  (void)state;
  struct tclient *t = tc_open(true);
  assert_true(tc_until(t, tc_done_eof, NULL, 2000));
  assert_int_equal(t->len, 0);
  tc_close(t);
}

int main(void) {
  world_setup();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_byte_at_a_time), cmocka_unit_test(test_every_two_way_split),
      cmocka_unit_test(test_random_splits),      cmocka_unit_test(test_pipelined),
      cmocka_unit_test(test_bad_requests),       cmocka_unit_test(test_header_limits),
      cmocka_unit_test(test_header_timeout),     cmocka_unit_test(test_idle_timeout),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
