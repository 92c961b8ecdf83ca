/* Unit tests for policies/kinds/require_header.c: the schema (strict,
 * FILE:LINE:COL), the printer (reads back the same), admission (refused
 * with the status unless a good value, shadow mode, before the rate
 * limits so a refusal consumes nothing), explain, and the kind's commit
 * and rollback seen through admission with a fake kind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include "sluice/admission.h"
#include "sluice/blocklist.h"
#include "sluice/config.h"
#include "sluice/explain.h"
#include "sluice/identify.h"
#include "sluice/policy.h"
#include "sluice/policy_state.h"
#include "sluice/ratelimit.h"
#include "sluice/route.h"
#include "yaml_fixture.h"

#define SEC 1000000000ull
#define T0 (1000 * SEC)

static const char HEAD[] =
    "listeners:\n"
    "  - name: public\n"
    "    address: \"127.0.0.1:18080\"\n"
    "upstreams:\n"
    "  app:\n"
    "    address: \"127.0.0.1:18081\"\n";

static struct sl_policy_set *PS; /* the state of the configuration under test */

static struct sl_config *load(const char *body, struct sl_config_errors *errs) {
  return yaml_load(HEAD, body, errs);
}

static struct sl_config *load_ok(const char *body) {
  struct sl_config *cfg = yaml_load_ok(HEAD, body);
  PS = sl_policy_set_new(cfg, NULL, 0);
  assert_non_null(PS);
  return cfg;
}

static void unload(struct sl_config *cfg) {
  sl_policy_set_del(PS);
  PS = NULL;
  sl_config_free(cfg);
}

static const char CFG[] =
    "routes:\n"
    "  - name: devices\n"
    "    match: { path_prefix: \"/v1\" }\n"
    "    upstream: app\n"
    "    rate_limits:\n"
    "      - { key: route, rate: \"1/m\", burst: 2 }\n"
    "    require_header: { name: X-Device-Class, values: [hub, cam], status: 451 }\n"
    "  - name: watch\n"
    "    upstream: app\n"
    "    require_header:\n"
    "      name: x-key\n"
    "      values: [\"s3cret\"]\n"
    "      mode: shadow\n";

struct hdrs {
  const char *name, *value;
};

static const char *lookup(const void *ctx, const char *name) {
  const struct hdrs *h = ctx;
  return h && h->name && !strcasecmp(h->name, name) ? h->value : NULL;
}

static void decide(const struct sl_config *cfg, const char *p, const struct hdrs *h,
                   struct sl_admission *out) {
  struct sockaddr_in sin = {.sin_family = AF_INET};
  inet_pton(AF_INET, "192.0.2.1", &sin.sin_addr);
  struct sl_identity id;
  assert_int_equal(sl_identify(&cfg->identify, (struct sockaddr *)&sin, NULL, 0, &id),
                   SL_IDENTIFY_OK);
  struct sl_request_facts facts = {
      .method = "GET", .path = p, .listener = "public", .header = lookup, .header_ctx = h};
  const struct sl_route_cfg *route = sl_route_select(cfg, &facts);
  assert_non_null(route);
  struct sl_admission_input in = {
      .cfg = cfg, .policies = PS, .route = route, .id = &id, .facts = &facts, .now_ns = T0, .now_unix = 1};
  sl_admission_decide(&in, out);
}

static const char *reason(const struct sl_admission *a) { return sl_reject_reason_name(a->reason); }

static void test_refused_unless_allowed_value(void **st) {
  (void)st;
  struct sl_config *cfg = load_ok(CFG);
  const struct sl_route_cfg *r = &cfg->routes[0];
  assert_int_equal(r->n_policies, 1);
  assert_string_equal(r->policies[0].name, "devices/require_header");
  struct sl_admission a;

  decide(cfg, "/v1/x", NULL, &a);
  assert_false(a.admit);
  assert_int_equal(a.status, 451);
  assert_string_equal(a.error, "header_required");
  assert_string_equal(a.policy, "devices/require_header");
  assert_string_equal(reason(&a), "require_header");
  assert_int_equal(a.retry_after_s, 0);

  decide(cfg, "/v1/x", &(struct hdrs){"x-device-class", "tv"}, &a);
  assert_false(a.admit);
  decide(cfg, "/v1/x", &(struct hdrs){"x-device-class", "Hub"}, &a); /* values are exact */
  assert_false(a.admit);

  /* Refusals came before the rate limit: its two tokens are all there. */
  decide(cfg, "/v1/x", &(struct hdrs){"X-Device-Class", "hub"}, &a);
  assert_true(a.admit);
  assert_int_equal(a.n_shadow, 0);
  decide(cfg, "/v1/x", &(struct hdrs){"x-device-class", "cam"}, &a);
  assert_true(a.admit);
  decide(cfg, "/v1/x", &(struct hdrs){"x-device-class", "cam"}, &a);
  assert_false(a.admit);
  assert_string_equal(reason(&a), "rate_limit");
  unload(cfg);
}

static void test_shadow_admits_and_reports(void **st) {
  (void)st;
  struct sl_config *cfg = load_ok(CFG);
  struct sl_admission a;
  decide(cfg, "/other", NULL, &a);
  assert_true(a.admit);
  assert_int_equal(a.n_shadow, 1);
  assert_string_equal(a.shadow[0].policy, "watch/require_header");
  assert_string_equal(sl_reject_reason_name(a.shadow[0].reason), "require_header");
  decide(cfg, "/other", &(struct hdrs){"x-key", "s3cret"}, &a);
  assert_true(a.admit);
  assert_int_equal(a.n_shadow, 0);
  unload(cfg);

  /* The global shadow mode covers a policy without a mode of its own. */
  char buf[1024];
  snprintf(buf, sizeof(buf), "%smode: shadow\n", CFG);
  cfg = load_ok(buf);
  decide(cfg, "/v1/x", NULL, &a);
  assert_true(a.admit);
  assert_int_equal(a.n_shadow, 1);
  unload(cfg);
}

static char *explain(const struct sl_config *cfg, const char *p, const char *hname,
                     const char *hvalue) {
  struct sl_explain_request r = {.path = p};
  const char *names[1] = {hname}, *values[1] = {hvalue};
  if (hname) {
    r.header_names = names;
    r.header_values = values;
    r.n_headers = 1;
  }
  char *buf = NULL, err[128];
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_int_equal(sl_explain(cfg, PS, NULL, &r, T0, 1, f, err, sizeof(err)), 0);
  fclose(f);
  return buf;
}

static void test_explain(void **st) {
  (void)st;
  struct sl_config *cfg = load_ok(CFG);
  char *s = explain(cfg, "/v1/x", "x-device-class", "tv");
  assert_non_null(strstr(s, "{\"policy\":\"devices/require_header\",\"kind\":\"require_header\","
                            "\"verdict\":\"reject\",\"why\":\"x-device-class: 'tv' is not one of "
                            "hub, cam\"}"));
  assert_non_null(strstr(s, "\"status\":451"));
  free(s);
  s = explain(cfg, "/v1/x", "x-device-class", "cam");
  assert_non_null(strstr(s, "\"verdict\":\"admit\",\"why\":\"x-device-class: 'cam' is allowed\""));
  free(s);
  s = explain(cfg, "/other", NULL, NULL);
  assert_non_null(strstr(s, "\"verdict\":\"shadow_reject\",\"why\":\"no x-key header\""));
  free(s);
  /* Explain consumed nothing: both rate-limit tokens are left. */
  struct sl_admission a;
  decide(cfg, "/v1/x", &(struct hdrs){"x-device-class", "cam"}, &a);
  assert_true(a.admit);
  decide(cfg, "/v1/x", &(struct hdrs){"x-device-class", "cam"}, &a);
  assert_true(a.admit);
  unload(cfg);
}

static char *print(const struct sl_config *cfg) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_int_equal(sl_config_print(cfg, f), 0);
  fclose(f);
  return buf;
}

static void test_print_reads_back(void **st) {
  (void)st;
  struct sl_config *cfg = load_ok(CFG);
  char *out = print(cfg);
  assert_non_null(strstr(out, "    require_header:\n"
                              "      name: \"x-device-class\"\n"
                              "      values: [\"hub\", \"cam\"]\n"
                              "      status: 451\n"
                              "    priority: normal\n"));
  assert_non_null(strstr(out, "      values: [\"s3cret\"]\n"
                              "      status: 403\n"
                              "      mode: shadow\n"));
  /* The printed file loads to the same configuration. */
  struct sl_config *again = yaml_load_ok(out, "");
  char *out2 = print(again);
  assert_string_equal(out, out2);
  free(out);
  free(out2);
  sl_config_free(again);
  unload(cfg);
}

static void expect_errors(const char *body, const char *const *want, size_t n) {
  struct sl_config_errors errs = {0};
  struct sl_config *cfg = load(body, &errs);
  assert_null(cfg);
  for (size_t i = 0; i < n; i++) {
    bool found = false;
    for (size_t j = 0; j < errs.n && !found; j++) {
      char line[512];
      snprintf(line, sizeof(line), "%u:%u: %s", errs.items[j].line, errs.items[j].col,
               errs.items[j].message);
      found = strcmp(line, want[i]) == 0;
    }
    if (!found) {
      sl_config_errors_print(&errs, stderr);
      fail_msg("missing error: %s", want[i]);
    }
  }
  assert_int_equal(errs.n, n);
  sl_config_errors_free(&errs);
}

static void test_schema_errors(void **st) {
  (void)st;
  static const char *const a[] = {
      "10:21: require_header: missing 'name' (a header name, e.g. x-device-class)",
      "10:23: unknown key 'nam' in require_header (did you mean 'name'?)",
      "10:52: require_header: 'values' must not be empty",
      "10:64: status: 200 is out of range (400..599)",
      "10:75: mode: expected one of enforce, shadow, got 'x'",
  };
  expect_errors("routes:\n"
                "  - name: devices\n"
                "    upstream: app\n"
                "    require_header: { nam: X-Device-Class, values: [], status: 200, mode: x }\n",
                a, sizeof(a) / sizeof(a[0]));
  static const char *const b[] = {
      "10:21: require_header: missing 'values' (the allowed values, e.g. [hub, cam])",
  };
  expect_errors("routes:\n"
                "  - name: devices\n"
                "    upstream: app\n"
                "    require_header: { name: x-a }\n",
                b, 1);
  static const char *const c[] = {
      "10:29: name: 'bad header' is not a valid header name",
      "10:51: values: expected a list, got a mapping",
  };
  expect_errors("routes:\n"
                "  - name: devices\n"
                "    upstream: app\n"
                "    require_header: { name: \"bad header\", values: {a: 1} }\n",
                c, 2);
  static const char *const d[] = {
      "10:5: unknown key 'require_heade' in route (did you mean 'require_header'?)",
      "13:21: require_header: expected a mapping, got 'yes'",
      "16:43: values item: expected a string, got a list",
  };
  expect_errors("routes:\n"
                "  - name: devices\n"
                "    upstream: app\n"
                "    require_heade: { name: x-a, values: [a] }\n"
                "  - name: d2\n"
                "    upstream: app\n"
                "    require_header: yes\n"
                "  - name: d3\n"
                "    upstream: app\n"
                "    require_header: { name: x-a, values: [[a]] }\n",
                d, 3);
}

/* ---- the engine inside admission, with a fake kind that holds state */

static int fake_tokens = 0, fake_rollbacks = 0;
static struct sl_ratelimit_table *fake_steal_from; /* emptied at commit, as by another worker */

static void fake_peek(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                      struct sl_policy_result *r) {
  (void)p, (void)state, (void)c;
  r->verdict = fake_tokens > 0 ? SL_VERDICT_ADMIT : SL_VERDICT_REFUSE;
  r->status = 429;
  r->error = "fake";
}

static bool fake_commit(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                        struct sl_policy_result *r, uint64_t *held) {
  (void)p, (void)state, (void)r;
  *held = 1;
  fake_tokens--;
  struct sl_rl_verdict v;
  while (fake_steal_from &&
         sl_ratelimit_admit(fake_steal_from, "devices", 7, c->route->rate_limits[0].rate.period_ns,
                            c->route->rate_limits[0].burst, c->now_ns, &v)) {
  }
  return true;
}

static void fake_rollback(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                          uint64_t held) {
  (void)p, (void)state, (void)c;
  assert_int_equal(held, 1);
  fake_tokens++;
  fake_rollbacks++;
}

static int fake_finishes;
static void fake_finish(const struct sl_policy_cfg *p, void *state, uint64_t held,
                        struct sl_admission *a, enum sl_outcome outcome, uint64_t latency_ns,
                        uint64_t now_ns) {
  (void)p, (void)state, (void)held, (void)a, (void)latency_ns, (void)now_ns;
  assert_int_equal(outcome, SL_OUTCOME_SUCCESS);
  fake_finishes++;
}

static const struct sl_kind FAKE = {
    .key = "fake", .reason = "fake", .peek = fake_peek, .commit = fake_commit,
    .rollback = fake_rollback, .finish = fake_finish};

/* The engine's policies commit first; a route's rate limit that then
 * refuses at commit (another worker took the last token between look and
 * commit) has them give back what they took. */
static void test_commit_then_rate_limit_refusal_rolls_back(void **st) {
  (void)st;
  struct sl_config *cfg = load_ok(CFG);
  struct sl_route_cfg *r = &cfg->routes[0];
  struct sl_policy_cfg fake = {.kind = &FAKE, .name = "devices/fake", .mode = SL_MODE_ENFORCE};
  struct sl_policy_cfg *saved = r->policies;
  size_t n_saved = r->n_policies;
  r->policies = &fake;
  r->n_policies = 1;
  fake_tokens = 5;
  struct sl_admission a;
  decide(cfg, "/v1/x", NULL, &a);
  assert_true(a.admit);
  assert_int_equal(fake_tokens, 4);
  assert_int_equal(fake_rollbacks, 0);
  assert_int_equal(a.n_held, 1);
  sl_admission_finish(&a, SL_OUTCOME_SUCCESS, 0, T0);
  assert_int_equal(fake_finishes, 1);
  fake_steal_from = sl_policy_state_ratelimit(sl_policy_set_rate_limit(PS, r, 0));
  decide(cfg, "/v1/x", NULL, &a);
  fake_steal_from = NULL;
  assert_false(a.admit);
  assert_string_equal(reason(&a), "rate_limit");
  assert_string_equal(a.policy, "devices/route");
  assert_int_equal(fake_rollbacks, 1);
  assert_int_equal(fake_tokens, 4); /* taken at commit, given back */
  assert_int_equal(a.n_held, 0);
  sl_admission_finish(&a, SL_OUTCOME_CANCELLED, 0, T0);
  assert_int_equal(fake_finishes, 1); /* rolled back: no outcome report */
  /* A refusal by the kind itself: nothing else is charged. */
  fake_tokens = 0;
  decide(cfg, "/v1/x", NULL, &a);
  assert_false(a.admit);
  assert_string_equal(a.policy, "devices/fake");
  assert_string_equal(a.error, "fake");
  r->policies = saved;
  r->n_policies = n_saved;
  unload(cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_refused_unless_allowed_value),
      cmocka_unit_test(test_shadow_admits_and_reports),
      cmocka_unit_test(test_explain),
      cmocka_unit_test(test_print_reads_back),
      cmocka_unit_test(test_schema_errors),
      cmocka_unit_test(test_commit_then_rate_limit_refusal_rolls_back),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
