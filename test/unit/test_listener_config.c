/*
 * The configuration of listeners[].proxy_protocol and the top-level
 * drain_spread: defaults, values, errors at FILE:LINE:COL, and the printer
 * (check --print) loading back to the same configuration.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "sluice/config.h"
#include "yaml_fixture.h"

/* A configuration whose listener has |extra| lines after its address
 * (line 4 on). */
#define CONFIG(extra)                                           \
  "listeners:\n"                                                \
  "  - name: public\n"                                          \
  "    address: \"127.0.0.1:8080\"\n" extra                     \
  "upstreams: { identity: { address: \"127.0.0.1:8081\" } }\n"  \
  "routes: [ { name: default, upstream: identity } ]\n"
/* 5 lines; what a test appends starts at line 6. */
#define BASE CONFIG("")
/* The listener's proxy_protocol |block| on line 4. */
#define PP(block) CONFIG("    proxy_protocol: " block "\n")

static void expect_error(const char *yaml, uint32_t line, uint32_t col, const char *sub) {
  struct sl_config_errors errs = {0};
  struct sl_config *cfg = yaml_load(yaml, "", &errs);
  bool found = false;
  for (size_t i = 0; i < errs.n; i++)
    found |= errs.items[i].line == line && errs.items[i].col == col &&
             strstr(errs.items[i].message, sub) != NULL;
  if (cfg || !found) {
    sl_config_errors_print(&errs, stderr);
    fail_msg("expected an error at %u:%u containing \"%s\"", line, col, sub);
  }
  sl_config_errors_free(&errs);
}

static void test_defaults(void **state) {
  (void)state;
  struct sl_config *cfg = yaml_load_ok(BASE, "");
  assert_int_equal(cfg->listeners[0].proxy_protocol.n_trusted, 0);
  assert_int_equal(cfg->drain_timeout_ms, 20000);
  sl_config_free(cfg);
  static const struct {
    const char *yaml;
    uint64_t spread_ms;
  } cases[] = {
      {"", 15000}, /* 3/4 of drain_timeout */
      {"drain_timeout: 6s\n", 4500},
      {"drain_timeout: 0s\n", 0},
      {"drain_timeout: 6s\ndrain_spread: 6s\n", 6000},
      {"drain_spread: 0s\n", 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    cfg = yaml_load_ok(BASE, cases[i].yaml);
    assert_int_equal(cfg->drain_spread_ms, cases[i].spread_ms);
    sl_config_free(cfg);
  }
}

static void test_proxy_protocol_values(void **state) {
  (void)state;
  struct sl_config *cfg =
      yaml_load_ok(PP("{ trusted: [ \"10.0.0.0/8\", \"2001:db8::/32\", 192.0.2.7 ] }"), "");
  const struct sl_listener_cfg *l = &cfg->listeners[0];
  assert_int_equal(l->proxy_protocol.n_trusted, 3);
  assert_int_equal(l->proxy_protocol.timeout_ms, 3000);
  assert_int_equal(l->proxy_protocol.trusted[0].family, AF_INET);
  assert_int_equal(l->proxy_protocol.trusted[0].prefix, 8);
  assert_int_equal(l->proxy_protocol.trusted[1].family, AF_INET6);
  assert_int_equal(l->proxy_protocol.trusted[2].prefix, 32);
  sl_config_free(cfg);
  cfg = yaml_load_ok(PP("{ trusted: [ \"10.0.0.0/8\" ], timeout: 500ms }"), "");
  assert_int_equal(cfg->listeners[0].proxy_protocol.timeout_ms, 500);
  sl_config_free(cfg);
}

static void test_errors(void **state) {
  (void)state;
  expect_error(PP("{ timeout: 3s }"), 4, 21, "proxy_protocol: 'trusted' must list");
  expect_error(PP("{ trusted: [] }"), 4, 32, "proxy_protocol: 'trusted' must list");
  expect_error(PP("{ trusted: [ \"10.0.0.0/33\" ] }"), 4, 34, "trusted: ");
  expect_error(PP("{ trusted: [ [ x ] ] }"), 4, 34, "trusted item: expected a string");
  expect_error(PP("{ trusted: [ \"10.0.0.0/8\" ], timeout: 0s }"), 4, 59, "at least 1ms");
  expect_error(PP("{ trusted: [ \"10.0.0.0/8\" ], timout: 3s }"), 4, 50, "timeout");
  expect_error(PP("[ \"10.0.0.0/8\" ]"), 4, 21, "expected a mapping");
  expect_error(BASE "drain_timeout: 5s\ndrain_spread: 6s\n", 7, 15,
               "drain_spread: 6000ms is longer than drain_timeout (5000ms)");
  expect_error(BASE "drain_spread: 21s\n", 6, 15, "longer than drain_timeout (20000ms)");
  expect_error(BASE "drain_spread: soon\n", 6, 15, "drain_spread");
}

static void test_print_round_trip(void **state) {
  (void)state;
  struct sl_config *a = yaml_load_ok(
      PP("{ trusted: [ \"10.0.0.0/8\", \"2001:db8::/32\" ], timeout: 750ms }"),
      "drain_timeout: 8s\ndrain_spread: 5s\n");
  char *t1 = yaml_printed(a);
  assert_non_null(strstr(t1, "    proxy_protocol:\n      trusted:\n        - \"10.0.0.0/8\"\n"
                             "        - \"2001:db8::/32\"\n      timeout: 750ms\n"));
  assert_non_null(strstr(t1, "drain_spread: 5s\n"));
  struct sl_config *b = yaml_load_ok(t1, "");
  char *t2 = yaml_printed(b);
  assert_string_equal(t1, t2);
  assert_int_equal(b->listeners[0].proxy_protocol.n_trusted, 2);
  assert_int_equal(b->drain_spread_ms, 5000);
  free(t1);
  free(t2);
  sl_config_free(a);
  sl_config_free(b);
  /* Without proxy_protocol nothing of it is printed. */
  a = yaml_load_ok(BASE, "");
  t1 = yaml_printed(a);
  assert_null(strstr(t1, "proxy_protocol"));
  free(t1);
  sl_config_free(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_proxy_protocol_values),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_print_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
