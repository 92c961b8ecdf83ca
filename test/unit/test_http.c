/*
 * Unit tests for proxy/http.c: the one hop-by-hop filter (both
 * directions) and the Connection list it reads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "../../proxy/proxy.h"

static enum sl_hop hop(enum sl_http_dir d, const char *name, const char *conn) {
  return sl_http_hop(d, name, strlen(name), conn);
}

/* RFC 9110 §7.6.1 fields and framing go in neither direction, whatever
 * their case; Connection is reported as such. */
static void test_hop_by_hop_both_ways(void **state) {
  (void)state;
  static const char *const both[] = {"keep-alive", "Keep-Alive", "proxy-connection", "TE",
                                     "trailer", "transfer-encoding", "Upgrade",
                                     "content-length", "CONTENT-LENGTH"};
  for (size_t i = 0; i < sizeof(both) / sizeof(both[0]); i++) {
    assert_int_equal(hop(SL_HTTP_REQUEST, both[i], NULL), SL_HOP_DROP);
    assert_int_equal(hop(SL_HTTP_RESPONSE, both[i], NULL), SL_HOP_DROP);
  }
  assert_int_equal(hop(SL_HTTP_REQUEST, "connection", NULL), SL_HOP_CONNECTION);
  assert_int_equal(hop(SL_HTTP_RESPONSE, "Connection", NULL), SL_HOP_CONNECTION);
  static const char *const kept[] = {"content-type", "x-a", "te-x", "cookie", "set-cookie",
                                     "connectionx", "etag"};
  for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
    assert_int_equal(hop(SL_HTTP_REQUEST, kept[i], NULL), SL_HOP_KEEP);
    assert_int_equal(hop(SL_HTTP_RESPONSE, kept[i], NULL), SL_HOP_KEEP);
  }
}

/* What sluice writes itself is dropped from requests only: an origin's
 * Host or Forwarded-like field in a response is its own business. */
static void test_request_only_fields(void **state) {
  (void)state;
  static const char *const req_only[] = {"host", "expect", "forwarded", "x-forwarded-for",
                                         "x-forwarded-proto", "http2-settings"};
  for (size_t i = 0; i < sizeof(req_only) / sizeof(req_only[0]); i++) {
    assert_int_equal(hop(SL_HTTP_REQUEST, req_only[i], NULL), SL_HOP_DROP);
    assert_int_equal(hop(SL_HTTP_RESPONSE, req_only[i], NULL), SL_HOP_KEEP);
  }
}

/* Fields a Connection list names are dropped both ways, matched as whole
 * tokens without case, with any spacing. */
static void test_connection_named(void **state) {
  (void)state;
  const char *list = " X-Internal ,\tfoo,keep-alive,,bar ";
  for (int d = SL_HTTP_REQUEST; d <= SL_HTTP_RESPONSE; d++) {
    assert_int_equal(hop(d, "x-internal", list), SL_HOP_DROP);
    assert_int_equal(hop(d, "X-INTERNAL", list), SL_HOP_DROP);
    assert_int_equal(hop(d, "foo", list), SL_HOP_DROP);
    assert_int_equal(hop(d, "bar", list), SL_HOP_DROP);
    assert_int_equal(hop(d, "fo", list), SL_HOP_KEEP);
    assert_int_equal(hop(d, "x-internals", list), SL_HOP_KEEP);
    assert_int_equal(hop(d, "x-public", list), SL_HOP_KEEP);
    assert_int_equal(hop(d, "x-public", ""), SL_HOP_KEEP);
  }
}

/* Every Connection field counts: one is used as is, several are joined. */
static void test_connection_list(void **state) {
  (void)state;
  struct sl_arena a;
  sl_arena_init(&a, 256);
  struct sl_header h[] = {
      {"x-a", "1", 3, 1},
      {"connection", "x-a", 10, 3},
      {"host", "h", 4, 1},
      {"connection", "X-B, close", 10, 10},
  };
  int oom = 1;
  assert_null(sl_http_connection_list(&a, h, 1, &oom));
  assert_int_equal(oom, 0);
  assert_ptr_equal(sl_http_connection_list(&a, h, 3, &oom), h[1].value);
  const char *l = sl_http_connection_list(&a, h, 4, &oom);
  assert_int_equal(oom, 0);
  assert_string_equal(l, "x-a,X-B, close");
  assert_int_equal(sl_http_hop(SL_HTTP_RESPONSE, "x-b", 3, l), SL_HOP_DROP);
  assert_int_equal(sl_http_hop(SL_HTTP_RESPONSE, "x-a", 3, l), SL_HOP_DROP);
  sl_arena_free(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hop_by_hop_both_ways),
      cmocka_unit_test(test_request_only_fields),
      cmocka_unit_test(test_connection_named),
      cmocka_unit_test(test_connection_list),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
