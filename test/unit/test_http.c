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

#include "core/http.h"
#include "core/stream-t.h"

static enum sl_hop hop(enum sl_http_dir d, const char *name, const char *conn) {
  return sl_http_hop(d, name, strlen(name), conn);
}

/* RFC 9110 §7.6.1 fields and framing go in neither direction, whatever
 * their case; Connection is reported as such; what sluice writes itself
 * is dropped from requests only (an origin's Host or Forwarded field in a
 * response is its own business); the rest is forwarded. */
static void test_fields_by_direction(void **state) {
  (void)state;
  static const struct {
    const char *name;
    enum sl_hop req, resp;
  } t[] = {
      {"keep-alive", SL_HOP_DROP, SL_HOP_DROP},
      {"Keep-Alive", SL_HOP_DROP, SL_HOP_DROP},
      {"proxy-connection", SL_HOP_DROP, SL_HOP_DROP},
      {"TE", SL_HOP_DROP, SL_HOP_DROP},
      {"trailer", SL_HOP_DROP, SL_HOP_DROP},
      {"transfer-encoding", SL_HOP_DROP, SL_HOP_DROP},
      {"Upgrade", SL_HOP_DROP, SL_HOP_DROP},
      {"CONTENT-LENGTH", SL_HOP_DROP, SL_HOP_DROP},
      {"connection", SL_HOP_CONNECTION, SL_HOP_CONNECTION},
      {"Connection", SL_HOP_CONNECTION, SL_HOP_CONNECTION},
      {"host", SL_HOP_DROP, SL_HOP_KEEP},
      {"expect", SL_HOP_DROP, SL_HOP_KEEP},
      {"forwarded", SL_HOP_DROP, SL_HOP_KEEP},
      {"x-forwarded-for", SL_HOP_DROP, SL_HOP_KEEP},
      {"x-forwarded-proto", SL_HOP_DROP, SL_HOP_KEEP},
      {"http2-settings", SL_HOP_DROP, SL_HOP_KEEP},
      {"content-type", SL_HOP_KEEP, SL_HOP_KEEP},
      {"te-x", SL_HOP_KEEP, SL_HOP_KEEP},
      {"set-cookie", SL_HOP_KEEP, SL_HOP_KEEP},
      {"connectionx", SL_HOP_KEEP, SL_HOP_KEEP},
  };
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    assert_int_equal(hop(SL_HTTP_REQUEST, t[i].name, NULL), t[i].req);
    assert_int_equal(hop(SL_HTTP_RESPONSE, t[i].name, NULL), t[i].resp);
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
      cmocka_unit_test(test_fields_by_direction),
      cmocka_unit_test(test_connection_named),
      cmocka_unit_test(test_connection_list),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
