/*
 * The PROXY header on a real connection (proxy/core/conn.c through the
 * front world's socketpair): header and request split at every byte into
 * two writes, or sent one byte at a time, always give the header's client
 * as the connection's peer and the request answered (no byte after the
 * header lost or taken by the header reader); a bad header and a header
 * timeout close the connection.
 */
#define FUZZ_NAME "test_conn_proxy"
#include "front_world.h"

#include "core/proxy_proto.h"

static struct sl_cidr any4 = {.family = AF_INET, .prefix = 0};
static struct sl_listener_cfg plc;

/* A connection of a proxy_protocol listener (|timeout_ms| for the header),
 * the client's end returned like tc_open. */
static struct tclient *pp_open(uint64_t timeout_ms) {
  static struct tclient t;
  memset(&t, 0, sizeof(t));
  plc.proxy_protocol.trusted = &any4;
  plc.proxy_protocol.n_trusted = 1;
  plc.proxy_protocol.timeout_ms = timeout_ms;
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  struct sockaddr_storage peer;
  memset(&peer, 0, sizeof(peer));
  struct sockaddr_in *p4 = (struct sockaddr_in *)&peer;
  p4->sin_family = AF_INET;
  p4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ev_now_update(w.loop);
  sl_conn_accept(&w, &lis, sv[0], &peer, &plc);
  t.fd = sv[1];
  return &t;
}

static const char hdr_v1[] = "PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\n";
static const char req[] = "GET /up/a HTTP/1.1\r\nHost: a\r\n\r\n";

static bool done_ok(struct tclient *t, const void *arg) {
  (void)arg;
  return t->eof || memmem(t->buf, t->len, "\r\n\r\nok", 6) != NULL;
}

/* Writes |msg| (|len| bytes) in two writes cut at |cut| (or one byte per
 * write when |cut| is 0), turning the world between writes; then expects
 * the answer and the header's client as the peer. */
static void send_and_check(const char *msg, size_t len, size_t cut, const char *want_ip) {
  struct tclient *t = pp_open(2000);
  for (size_t off = 0; off < len;) {
    size_t n = cut ? (off < cut ? cut - off : len - off) : 1;
    tc_write(t, msg + off, n);
    off += n;
    tc_spin(t, 2);
    assert_false(t->eof);
  }
  assert_true(tc_until(t, done_ok, NULL, 2000));
  assert_false(t->eof);
  assert_non_null(memmem(t->buf, t->len, "HTTP/1.1 200", 12));
  assert_non_null(w.conns);
  assert_string_equal(w.conns->peer_ip, want_ip);
  tc_close(t);
}

static void test_every_split(void **state) {
  (void)state;
  char msg[256];
  size_t hl = strlen(hdr_v1), len = hl + strlen(req);
  memcpy(msg, hdr_v1, hl);
  memcpy(msg + hl, req, strlen(req));
  for (size_t cut = 1; cut < len; cut++) send_and_check(msg, len, cut, "203.0.113.7");
  send_and_check(msg, len, 0, "203.0.113.7");
}

static void test_v2_and_local(void **state) {
  (void)state;
  uint8_t msg[128];
  static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
  memcpy(msg, sig, 12);
  const uint8_t rest[] = {0x21, 0x11, 0x00, 0x0c, 198, 51, 100, 9, 192, 0, 2, 1, 0x9c, 0x40, 0x01, 0xbb};
  memcpy(msg + 12, rest, sizeof(rest));
  size_t hl = 12 + sizeof(rest);
  memcpy(msg + hl, req, strlen(req));
  send_and_check((const char *)msg, hl + strlen(req), hl, "198.51.100.9");
  send_and_check((const char *)msg, hl + strlen(req), hl + 3, "198.51.100.9");
  const uint8_t local[] = {0x20, 0x00, 0x00, 0x00};
  memcpy(msg + 12, local, sizeof(local));
  memcpy(msg + 16, req, strlen(req));
  send_and_check((const char *)msg, 16 + strlen(req), 16, "127.0.0.1");
}

/* sluice closes without sending a byte. */
static void expect_silent_close(struct tclient *t) {
  assert_true(tc_until(t, tc_done_eof, NULL, 2000));
  assert_int_equal(t->len, 0);
  tc_close(t);
}

static void test_bad_header_closes(void **state) {
  (void)state;
  static const char *bad[] = {"GET / HTTP/1.1\r\n\r\n", "PROXY TCP4 1.2.3.4\n", "\x16\x03\x01"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    struct tclient *t = pp_open(2000);
    tc_puts(t, bad[i]);
    expect_silent_close(t);
  }
  /* Half a header, then nothing, past the 5 ms header timeout. */
  struct tclient *t = pp_open(5);
  tc_puts(t, "PROXY TCP4 ");
  tc_spin(t, 2);
  assert_false(t->eof);
  expect_silent_close(t);
}

int main(void) {
  world_setup();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_split),
      cmocka_unit_test(test_v2_and_local),
      cmocka_unit_test(test_bad_header_closes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
