/* Unit tests for shaping `bandwidth`: the value parser, schema errors at
 * FILE:LINE:COL, the printer's round trip, the reload diff, the shaping
 * labels (shaping/<name>, shaping/<index>) and what the admission decision
 * hands the data plane (policies/admission.c step 6). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "sluice/admission.h"
#include "sluice/config.h"
#include "sluice/identify.h"
#include "sluice/route.h"
#include "sluice/config_diff.h"
#include "sluice/policy_state.h"
#include "yaml_fixture.h"

/* 9 lines: the shaping list's items start on line 10. */
#define HEAD                                 \
  "listeners:\n"                             \
  "  - name: public\n"                       \
  "    address: \"127.0.0.1:18080\"\n"       \
  "upstreams:\n"                             \
  "  app: { address: \"127.0.0.1:18081\" }\n" \
  "routes:\n"                                \
  "  - name: api\n"                          \
  "    upstream: app\n"                      \
  "shaping:\n"

static void test_parse_values(void **st) {
  (void)st;
  static const struct {
    const char *in;
    uint64_t bytes;
  } ok[] = {{"1/s", 1},          {"65536/s", 65536},     {"64B/s", 64},
            {"64KiB/s", 65536},  {"16KiB/s", 16384},     {"1MiB/s", 1048576},
            {"3GiB/s", 3ull << 30}, {"1024GiB/s", 1ull << 40}};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    struct sl_bandwidth bw = {0};
    char err[160] = "";
    assert_int_equal(sl_parse_bandwidth(ok[i].in, &bw, err, sizeof(err)), 0);
    assert_int_equal(bw.bytes_per_s, ok[i].bytes);
    assert_string_equal(bw.text, ok[i].in);
  }
  static const struct {
    const char *in, *msg;
  } bad[] = {
      {"", "empty bandwidth"},
      {"0/s", "must be positive"},
      {"0KiB/s", "must be positive"},
      {"-5KiB/s", "must be positive"},
      {"64KB/s", "unknown size unit 'KB'"},
      {"64kib/s", "unknown size unit 'kib'"},
      {"64 KiB/s", "unknown size unit ' KiB'"},
      {"64KiB", "needs a '/s'"},
      {"64", "needs a '/s'"},
      {"64KiB/m", "must be per second"},
      {"64KiB/s ", "must be per second"},
      {"KiB/s", "invalid bandwidth"},
      {"1.5MiB/s", "unknown size unit '.5MiB'"},
      {"1025GiB/s", "too large"},
      {"99999999999999999999999/s", "too large"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    struct sl_bandwidth bw = {0};
    char err[160] = "";
    assert_int_equal(sl_parse_bandwidth(bad[i].in, &bw, err, sizeof(err)), -1);
    if (!strstr(err, bad[i].msg)) fail_msg("'%s': got \"%s\", want \"%s\"", bad[i].in, err, bad[i].msg);
    assert_int_equal(bw.bytes_per_s, 0);
  }
}

/* Loads HEAD + |body| expecting exactly one error, at LINE:COL, with |sub|. */
#define expect_error(body, line, col, sub) expect_error_((body), (line), (col), (sub), __LINE__)
static void expect_error_(const char *body, uint32_t line, uint32_t col, const char *sub, int at) {
  struct sl_config_errors errs = {0};
  struct sl_config *cfg = yaml_load(HEAD, body, &errs);
  if (cfg || errs.n != 1 || errs.items[0].line != line || errs.items[0].col != col ||
      !strstr(errs.items[0].message, sub)) {
    sl_config_errors_print(&errs, stderr);
    fail_msg("test line %d: want one error at %u:%u with \"%s\"", at, line, col, sub);
  }
  sl_config_errors_free(&errs);
}

static void test_schema_errors(void **st) {
  (void)st;
  expect_error("  - bandwidth: { down: 0/s }\n", 10, 24, "down: bandwidth '0/s' must be positive");
  expect_error("  - bandwidth: { down: 64KiB/s, up: -1/s }\n", 10, 37,
               "up: bandwidth '-1/s' must be positive");
  expect_error("  - bandwidth: { up: 64KB/s }\n", 10, 22, "unknown size unit 'KB'");
  expect_error("  - bandwidth: { down: 64KiB }\n", 10, 24, "needs a '/s'");
  expect_error("  - bandwidth: { down: [64KiB/s] }\n", 10, 24, "down: expected a string");
  expect_error("  - bandwidth: { sideways: 1/s }\n", 10, 18, "unknown key 'sideways' in bandwidth");
  expect_error("  - bandwidth: {}\n", 10, 16, "bandwidth: give 'down', 'up' or both");
  expect_error("  - bandwidth: 64KiB/s\n", 10, 16, "bandwidth: expected a mapping");
  expect_error("  - match: { path_prefix: \"/v1/\" }\n"
               "    bandwidth:\n"
               "      down: 1MiB/m\n", 12, 13, "must be per second");
}

static const char RULES[] = "  - match: { path_prefix: \"/v1/\" }\n"
                            "    bandwidth: { down: 64KiB/s, up: 16384/s }\n"
                            "  - name: bulk\n"
                            "    bandwidth: { up: 1MiB/s }\n"
                            "    mode: shadow\n";

/* Loaded, the values and labels are right; printed and loaded again, the
 * same configuration prints the same text (a fixed point). */
static void test_values_labels_and_round_trip(void **st) {
  (void)st;
  struct sl_config *a = yaml_load_ok(HEAD, RULES);
  assert_int_equal(a->n_shaping, 2);
  assert_int_equal(a->shaping[0].bw_down.bytes_per_s, 65536);
  assert_int_equal(a->shaping[0].bw_up.bytes_per_s, 16384);
  assert_string_equal(a->shaping[0].label, "shaping/0");
  assert_int_equal(a->shaping[1].bw_down.bytes_per_s, 0);
  assert_int_equal(a->shaping[1].bw_up.bytes_per_s, 1048576);
  assert_string_equal(a->shaping[1].label, "shaping/bulk");
  char *text = yaml_printed(a);
  assert_non_null(strstr(text, "    bandwidth:\n      down: \"64KiB/s\"\n      up: \"16384/s\"\n"));
  assert_non_null(strstr(text, "    bandwidth:\n      up: \"1MiB/s\"\n"));
  struct sl_config *b = yaml_load_ok(text, "");
  char *again = yaml_printed(b);
  assert_string_equal(again, text);
  assert_int_equal(b->shaping[1].bw_up.bytes_per_s, 1048576);
  free(again);
  free(text);
  sl_config_free(b);
  sl_config_free(a);
}

/* A reload that changes only a bandwidth names the shaping section. */
static void test_diff_notices_bandwidth(void **st) {
  (void)st;
  struct sl_config *a = yaml_load_ok(HEAD, RULES);
  struct sl_config *b = yaml_load_ok(HEAD, "  - match: { path_prefix: \"/v1/\" }\n"
                                           "    bandwidth: { down: 64KiB/s, up: 16385/s }\n"
                                           "  - name: bulk\n"
                                           "    bandwidth: { up: 1MiB/s }\n"
                                           "    mode: shadow\n");
  struct sl_config *c = yaml_load_ok(HEAD, RULES);
  struct sl_policy_set *pa = sl_policy_set_new(a, NULL, 0);
  struct sl_policy_set *pb = sl_policy_set_new(b, pa, 0);
  struct sl_policy_set *pc = sl_policy_set_new(c, pb, 0);
  struct sl_config_diff d;
  sl_config_diff(a, pa, b, pb, &d);
  assert_string_equal(d.sections.len ? d.sections.buf : "", "shaping");
  sl_config_diff(a, pa, c, pc, &d);
  assert_int_equal(d.sections.n, 0);
  sl_policy_set_del(pc);
  sl_policy_set_del(pb);
  sl_policy_set_del(pa);
  sl_config_free(c);
  sl_config_free(b);
  sl_config_free(a);
}

/* One request for |path| through |cfg|'s single route. */
static void decide(const struct sl_config *cfg, const struct sl_policy_set *ps, const char *path,
                   struct sl_admission *out) {
  struct sockaddr_in sin = {.sin_family = AF_INET};
  assert_int_equal(inet_pton(AF_INET, "192.0.2.1", &sin.sin_addr), 1);
  struct sl_identity id;
  assert_int_equal(sl_identify(&cfg->identify, (struct sockaddr *)&sin, NULL, 0, &id),
                   SL_IDENTIFY_OK);
  struct sl_request_facts facts = {.method = "GET", .path = path, .listener = "public"};
  struct sl_admission_input in = {.cfg = cfg, .policies = ps, .route = &cfg->routes[0],
                                  .id = &id, .facts = &facts, .now_ns = 1000000000000ull,
                                  .rnd = 12345};
  sl_admission_decide(&in, out);
}

/* An enforcing rule with a bandwidth hands the data plane its rule; a
 * shadow one paces nothing and is counted as a shadow event under its
 * label; a request no rule matches is unpaced. Refusals of named rules
 * carry the name, of unnamed ones the index. */
static void test_admission_hands_over_the_rule(void **st) {
  (void)st;
  struct sl_config *cfg = yaml_load_ok(HEAD, "  - match: { path_prefix: \"/v1/paced\" }\n"
                                             "    bandwidth: { down: 64KiB/s }\n"
                                             "  - name: trial\n"
                                             "    match: { path_prefix: \"/v1/trial\" }\n"
                                             "    bandwidth: { up: 1KiB/s }\n"
                                             "    mode: shadow\n"
                                             "  - name: chaos\n"
                                             "    match: { path_prefix: \"/v1/chaos\" }\n"
                                             "    abort: { percent: 100 }\n"
                                             "  - match: { path_prefix: \"/v1/capped\" }\n"
                                             "    rate: 1/h\n");
  struct sl_policy_set *ps = sl_policy_set_new(cfg, NULL, 0);
  assert_non_null(ps);
  struct sl_admission a;
  decide(cfg, ps, "/v1/paced/x", &a);
  assert_true(a.admit);
  assert_ptr_equal(a.paced, &cfg->shaping[0]);
  assert_int_equal(a.paced->bw_down.bytes_per_s, 65536);
  assert_int_equal(a.n_shadow, 0);

  decide(cfg, ps, "/v1/trial", &a);
  assert_true(a.admit);
  assert_null(a.paced);
  assert_int_equal(a.n_shadow, 1);
  assert_int_equal(a.shadow[0].reason, SL_REASON_SHAPING);
  assert_string_equal(a.shadow[0].policy, "shaping/trial");

  decide(cfg, ps, "/v1/other", &a);
  assert_true(a.admit);
  assert_null(a.paced);
  assert_int_equal(a.n_shadow, 0);

  decide(cfg, ps, "/v1/chaos", &a);
  assert_false(a.admit);
  assert_string_equal(a.policy, "shaping/chaos");
  assert_string_equal(a.error, "shaped_abort");

  decide(cfg, ps, "/v1/capped", &a);
  assert_true(a.admit);
  decide(cfg, ps, "/v1/capped", &a);
  assert_false(a.admit);
  assert_string_equal(a.policy, "shaping/3");
  assert_string_equal(a.error, "shaped_rate");
  sl_policy_set_del(ps);
  sl_config_free(cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_values),
      cmocka_unit_test(test_schema_errors),
      cmocka_unit_test(test_values_labels_and_round_trip),
      cmocka_unit_test(test_diff_notices_bandwidth),
      cmocka_unit_test(test_admission_hands_over_the_rule),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
