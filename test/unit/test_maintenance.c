/* Unit tests for policies/kinds/maintenance.c: admission (refused first,
 * before the blocklist and the rate limits, so nothing is charged; the
 * Retry-After from the configured base through sl_retry_after_s; the top
 * level implied in every route, a route's own winning; shadow), the
 * refusal extras (body fields rendered into the JSON body), the printer
 * (reads back the same) and the schema (FILE:LINE:COL). */
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
#include "sluice/blocklist.h"
#include "sluice/config.h"
#include "sluice/identify.h"
#include "sluice/policy.h"
#include "sluice/policy_state.h"
#include "sluice/retry.h"
#include "sluice/route.h"
#include "yaml_fixture.h"

#define NS_PER_S 1000000000ull

static const char BASE[] =
    "listeners:\n"
    "  - name: public\n"
    "    address: \"127.0.0.1:18080\"\n"
    "upstreams:\n"
    "  app:\n"
    "    address: \"127.0.0.1:18081\"\n"
    "reject: { retry_after: { min: 1s, max: 1h, jitter: 0.5 } }\n";

static const char CFG[] =
    "maintenance:\n"
    "  retry_after: 300s\n"
    "  body: { message: \"back at 14:00\", eta: 300, planned: true }\n"
    "  headers: { X-Maintenance: planned }\n"
    "routes:\n"
    "  - name: api\n"
    "    match: { path_prefix: \"/v1\" }\n"
    "    upstream: app\n"
    "    maintenance: { status: 502, retry_after: 10s, mode: shadow }\n"
    "  - name: rest\n"
    "    upstream: app\n"
    "    rate_limits:\n"
    "      - { key: route, rate: \"1/h\", burst: 1 }\n";

struct world {
  struct sl_config *cfg;
  struct sl_policy_set *ps;
};

static struct world up(const char *body) {
  struct world w = {yaml_load_ok(BASE, body), NULL};
  w.ps = sl_policy_set_new(w.cfg, NULL, 0);
  assert_non_null(w.ps);
  return w;
}

static void down(struct world *w) {
  sl_policy_set_del(w->ps);
  sl_config_free(w->cfg);
}

static void admit_or_not(const struct world *w, const char *path, uint64_t rnd,
                         const struct sl_blocklist *bl, struct sl_admission *out) {
  struct sockaddr_in sin = {.sin_family = AF_INET};
  inet_pton(AF_INET, "192.0.2.7", &sin.sin_addr);
  struct sl_identity id;
  assert_int_equal(sl_identify(&w->cfg->identify, (struct sockaddr *)&sin, NULL, 0, &id),
                   SL_IDENTIFY_OK);
  struct sl_request_facts facts = {.method = "GET", .path = path, .listener = "public"};
  const struct sl_route_cfg *route = sl_route_select(w->cfg, &facts);
  assert_non_null(route);
  struct sl_admission_input in = {.cfg = w->cfg, .policies = w->ps, .route = route, .id = &id,
                                  .blocklist = bl, .facts = &facts, .now_ns = 5 * NS_PER_S,
                                  .now_unix = 1, .rnd = rnd};
  sl_admission_decide(&in, out);
}

static void test_top_level_refuses_every_route_first(void **st) {
  (void)st;
  struct world w = up(CFG);
  struct sl_admission a;
  /* 300s base, jitter 0.5: [300, 450], the bounds at the extreme draws. */
  admit_or_not(&w, "/other", 0, NULL, &a);
  assert_false(a.admit);
  assert_int_equal(a.status, 503);
  assert_string_equal(a.error, "maintenance");
  assert_string_equal(a.policy, "maintenance");
  assert_string_equal(sl_reject_reason_name(a.reason), "maintenance");
  assert_int_equal(a.retry_after_s, 300);
  admit_or_not(&w, "/other", UINT64_MAX, NULL, &a);
  assert_int_equal(a.retry_after_s, 450);
  assert_non_null(a.extra);
  assert_string_equal(a.extra->body, ",\"message\":\"back at 14:00\",\"eta\":300,\"planned\":true");
  assert_int_equal(a.extra->n_headers, 1);
  assert_string_equal(a.extra->headers[0].name, "x-maintenance");
  assert_string_equal(a.extra->headers[0].value, "planned");
  /* The rate limit (burst 1) was never charged: a policy after it. */
  const struct sl_route_cfg *rest = &w.cfg->routes[1];
  assert_int_equal(rest->n_policies, 1);
  assert_string_equal(rest->policies[0].name, "maintenance");
  down(&w);
}

static void test_route_overrides_and_shadows(void **st) {
  (void)st;
  struct world w = up(CFG);
  struct sl_admission a;
  admit_or_not(&w, "/v1/x", 0, NULL, &a);
  assert_true(a.admit); /* the route's own, in shadow: not the top level's */
  assert_int_equal(a.n_shadow, 1);
  assert_string_equal(a.shadow[0].policy, "api/maintenance");
  assert_string_equal(sl_reject_reason_name(a.shadow[0].reason), "maintenance");
  assert_null(a.extra);
  down(&w);
}

static void test_before_the_blocklist(void **st) {
  (void)st;
  static const char cfg[] =
      "maintenance: { status: 599, retry_after: 0s }\n"
      "routes:\n  - { name: r, upstream: app }\n"
      "blocklist:\n  unknown: deny\n";
  struct world w = up(cfg);
  struct sl_blocklist *bl = sl_blocklist_new(&w.cfg->blocklist, w.cfg->mode);
  assert_non_null(bl);
  struct sl_admission a;
  admit_or_not(&w, "/", 0, bl, &a);
  assert_false(a.admit);
  assert_int_equal(a.status, 599);
  assert_string_equal(a.error, "maintenance");
  assert_int_equal(a.retry_after_s, 1); /* 0s: the reject minimum */
  assert_null(a.block);
  sl_blocklist_del(bl);
  down(&w);
}

static void test_body_json_extra(void **st) {
  (void)st;
  char buf[128];
  int n = sl_reject_body_json_extra(buf, sizeof(buf), "maintenance", "maintenance", 300,
                                    ",\"message\":\"x\"");
  assert_string_equal(buf, "{\"error\":\"maintenance\",\"policy\":\"maintenance\","
                           "\"retry_after\":300,\"message\":\"x\"}");
  assert_int_equal(n, (int)strlen(buf));
  assert_int_equal(sl_reject_body_json_extra(buf, 60, "maintenance", "maintenance", 300,
                                             ",\"message\":\"x\""), -1);
  assert_string_equal(buf, "");
}

/* |out| loads to a configuration that prints the same; frees |out|. */
static void assert_reads_back(char *out) {
  struct sl_config *again = yaml_load_ok(out, "");
  char *twice = yaml_printed(again);
  sl_config_free(again);
  assert_string_equal(twice, out);
  free(twice);
  free(out);
}

static void test_print_reads_back(void **st) {
  (void)st;
  struct world w = up(CFG);
  char *out = yaml_printed(w.cfg);
  assert_non_null(strstr(out, "maintenance:\n  status: 503\n  retry_after: 5m\n  body:\n"
                              "    \"message\": \"back at 14:00\"\n    \"eta\": 300\n"
                              "    \"planned\": true\n  headers:\n"
                              "    \"x-maintenance\": \"planned\"\n"));
  assert_non_null(strstr(out, "    maintenance:\n      status: 502\n      retry_after: 10s\n"
                              "      mode: shadow\n"));
  /* Printed once at the top, not again in route "rest" (implied there). */
  const char *p = out;
  int n = 0;
  while ((p = strstr(p, "maintenance:\n"))) n++, p++;
  assert_int_equal(n, 2);
  assert_reads_back(out);
  down(&w);
}

static void test_schema_errors(void **st) {
  (void)st;
  static const char bad[] =
      "maintenance:\n"
      "  body: { policy: x, ok: 1 }\n"
      "  headers: { Transfer-Encoding: chunked }\n"
      "routes:\n  - { name: r, upstream: app, maintenance: { status: 600 } }\n";
  static const char *const want[] = {
      "2:11: body: 'policy' is a built-in field of the rejection body (error, policy, "
      "retry_after)",
      "3:14: headers: 'transfer-encoding' is a hop-by-hop, framing or refusal header sluice "
      "sets itself",
      "5:54: status: 600 is out of range (400..599)",
  };
  struct sl_config_errors errs = {0};
  assert_null(yaml_load(BASE, bad, &errs));
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    bool found = false;
    for (size_t j = 0; j < errs.n && !found; j++) {
      char line[512];
      snprintf(line, sizeof(line), "%u:%u: %s", errs.items[j].line - 7, errs.items[j].col,
               errs.items[j].message);
      found = !strcmp(line, want[i]);
    }
    if (!found) sl_config_errors_print(&errs, stderr);
    assert_true(found);
  }
  assert_int_equal(errs.n, 3);
  sl_config_errors_free(&errs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_top_level_refuses_every_route_first),
      cmocka_unit_test(test_route_overrides_and_shadows),
      cmocka_unit_test(test_before_the_blocklist),
      cmocka_unit_test(test_body_json_extra),
      cmocka_unit_test(test_print_reads_back),
      cmocka_unit_test(test_schema_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
