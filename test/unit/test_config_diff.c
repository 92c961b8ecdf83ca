/* Unit tests for policies/config/config_diff.c: the reload summary
 * (routes, upstreams, sections added/removed/changed; policies carried,
 * retuned or fresh) and the log line's fields. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <unistd.h>

#include "sluice/config.h"
#include "sluice/config_diff.h"
#include "sluice/policy_state.h"
#include "yaml_fixture.h"

/* A listener and the start of upstream app. */
#define HEAD                                 \
  "listeners:\n"                             \
  "  - name: public\n"                       \
  "    address: \"127.0.0.1:18080\"\n"       \
  "upstreams:\n"                             \
  "  app:\n"                                 \
  "    address: \"127.0.0.1:18081\"\n"

static const char BASE[] =
    HEAD
    "    circuit_breaker: { consecutive_failures: 5 }\n"
    "  old:\n"
    "    address: \"127.0.0.1:18082\"\n"
    "routes:\n"
    "  - name: api\n"
    "    match: { path_prefix: \"/api\" }\n"
    "    upstream: app\n"
    "    rate_limits:\n"
    "      - { key: client_ip, rate: \"5/s\", burst: 10 }\n"
    "    concurrency: { max: 10 }\n"
    "  - name: gone\n"
    "    match: { path_prefix: \"/gone\" }\n"
    "    upstream: old\n"
    "  - name: same\n"
    "    upstream: app\n"
    "    require_header: { name: x-a, values: [a] }\n";

/* api: rate retuned (same identity), concurrency max retuned; gone
 * removed; fresh route "new" with a fresh limit; upstream old removed,
 * new2 added; app's breaker retuned; reject and mode changed. */
static const char NEXT[] =
    HEAD
    "    circuit_breaker: { consecutive_failures: 9 }\n"
    "  new2:\n"
    "    address: \"127.0.0.1:18083\"\n"
    "routes:\n"
    "  - name: api\n"
    "    match: { path_prefix: \"/api\" }\n"
    "    upstream: app\n"
    "    rate_limits:\n"
    "      - { key: client_ip, rate: \"50/s\", burst: 10 }\n"
    "    concurrency: { max: 20 }\n"
    "  - name: new\n"
    "    upstream: new2\n"
    "    rate_limits:\n"
    "      - { key: route, rate: \"1/s\" }\n"
    "  - name: same\n"
    "    upstream: app\n"
    "    require_header: { name: x-a, values: [a] }\n"
    "reject: { retry_after: { min: 2s } }\n"
    "mode: shadow\n";

static struct sl_config *load(const char *text) { return yaml_load_ok(text, ""); }

static void names(const struct sl_namelist *nl, const char *want, unsigned n) {
  assert_string_equal(nl->len ? nl->buf : "", want);
  assert_int_equal(nl->n, n);
}

static void test_diff(void **st) {
  (void)st;
  struct sl_config *a = load(BASE), *b = load(NEXT);
  struct sl_policy_set *pa = sl_policy_set_new(a, NULL, 0), *pb = sl_policy_set_new(b, pa, 0);
  assert_non_null(pa);
  assert_non_null(pb);
  struct sl_config_diff d;
  sl_config_diff(a, pa, b, pb, &d);
  names(&d.routes_added, "new", 1);
  names(&d.routes_removed, "gone", 1);
  names(&d.routes_changed, "api", 1);
  names(&d.upstreams_added, "new2", 1);
  names(&d.upstreams_removed, "old", 1);
  names(&d.upstreams_changed, "app", 1);
  names(&d.sections, "reject,mode", 2);
  names(&d.carried, "api/client_ip,api/concurrency,same/concurrency,app/breaker", 4);
  names(&d.retuned, "api/client_ip,api/concurrency,app/breaker", 3);
  names(&d.fresh, "new/route,new/concurrency,new2/breaker", 3);

  struct sl_namelist la = {0}, none = {0};
  sl_namelist_add(&la, "admin2");
  struct sl_reload_facts rf = {.trigger = "SIGHUP", .triggers = 2, .generation = 7,
                               .duration_ms = 1.5, .blocklist_before = 3, .blocklist_after = 0,
                               .listeners_added = &la, .listeners_removed = &none,
                               .listeners_changed = &none, .listeners_tls = &none};
  char summary[512], fields[1700];
  sl_config_diff_report(&d, &rf, summary, sizeof(summary), fields, sizeof(fields));
  assert_string_equal(summary,
                      "routes +1 -1 ~1; upstreams +1 -1 ~1; listeners +1 -0 ~0 tls 0; "
                      "blocklist 3->0; policies 4 carried, 3 fresh; other: reject,mode");
  assert_string_equal(
      fields,
      "\"trigger\":\"SIGHUP\",\"coalesced_triggers\":2,\"generation\":7,\"duration_ms\":1.500,"
      "\"summary\":\"routes +1 -1 ~1; upstreams +1 -1 ~1; listeners +1 -0 ~0 tls 0; "
      "blocklist 3->0; policies 4 carried, 3 fresh; other: reject,mode\","
      "\"routes_added\":\"new\",\"routes_removed\":\"gone\",\"routes_changed\":\"api\","
      "\"upstreams_added\":\"new2\",\"upstreams_removed\":\"old\",\"upstreams_changed\":\"app\","
      "\"listeners_added\":\"admin2\",\"blocklist_entries\":\"3->0\",\"policies_carried\":4,"
      "\"policies_fresh\":3,\"policies_fresh_names\":\"new/route,new/concurrency,new2/breaker\","
      "\"policies_carried_names\":\"api/client_ip,api/concurrency,same/concurrency,app/breaker\","
      "\"policies_retuned_names\":\"api/client_ip,api/concurrency,app/breaker\","
      "\"sections_changed\":\"reject,mode\"");

  /* The same file again: nothing changed, everything carried. */
  struct sl_config *c = load(NEXT);
  struct sl_policy_set *pc = sl_policy_set_new(c, pb, 0);
  assert_non_null(pc);
  sl_config_diff(b, pb, c, pc, &d);
  assert_int_equal(d.routes_added.n + d.routes_removed.n + d.routes_changed.n, 0);
  assert_int_equal(d.upstreams_added.n + d.upstreams_removed.n + d.upstreams_changed.n, 0);
  assert_int_equal(d.sections.n + d.retuned.n + d.fresh.n, 0);
  assert_int_equal(d.carried.n, 7);
  sl_config_diff_report(&d, &(struct sl_reload_facts){.trigger = "file", .triggers = 1},
                        summary, sizeof(summary), fields, sizeof(fields));
  assert_string_equal(summary, "routes +0 -0 ~0; upstreams +0 -0 ~0; listeners +0 -0 ~0 tls 0; "
                               "blocklist 0->0; policies 7 carried, 0 fresh; other: none");
  assert_null(strstr(fields, "coalesced_triggers"));
  sl_policy_set_del(pc);
  sl_config_free(c);
  sl_policy_set_del(pb);
  sl_config_free(b);
  sl_policy_set_del(pa);
  sl_config_free(a);
}

/* A kind's settings count as the route's: changing require_header's
 * values changes the route. */
static void test_kind_tunables_change_route(void **st) {
  (void)st;
  struct sl_config *a = load(BASE);
  char buf[2048];
  snprintf(buf, sizeof(buf), "%s", BASE);
  char *v = strstr(buf, "values: [a]");
  assert_non_null(v);
  memcpy(v, "values: [b]", 11);
  struct sl_config *b = load(buf);
  struct sl_policy_set *pa = sl_policy_set_new(a, NULL, 0), *pb = sl_policy_set_new(b, pa, 0);
  struct sl_config_diff d;
  sl_config_diff(a, pa, b, pb, &d);
  names(&d.routes_changed, "same", 1);
  sl_policy_set_del(pb);
  sl_config_free(b);
  b = load(BASE);
  pb = sl_policy_set_new(b, pa, 0);
  sl_config_diff(a, pa, b, pb, &d);
  assert_int_equal(d.routes_changed.n, 0);
  sl_policy_set_del(pb);
  sl_config_free(b);
  sl_policy_set_del(pa);
  sl_config_free(a);
}

/* Turning the top-level maintenance on, retuning it and turning it off
 * are each named under "other" (the routes it is implied in change too). */
static void test_maintenance_named(void **st) {
  (void)st;
  char on[2048], longer[2048];
  snprintf(on, sizeof(on), "%smaintenance: { retry_after: 300s }\n", BASE);
  snprintf(longer, sizeof(longer), "%smaintenance: { retry_after: 600s }\n", BASE);
  /* on, the same again, retuned, off */
  const char *steps[] = {BASE, on, on, longer, BASE};
  const char *want[] = {NULL, "maintenance", "", "maintenance", "maintenance"};
  struct sl_config *prev = load(steps[0]);
  struct sl_policy_set *pp = sl_policy_set_new(prev, NULL, 0);
  for (size_t i = 1; i < 5; i++) {
    struct sl_config *next = load(steps[i]);
    struct sl_policy_set *pn = sl_policy_set_new(next, pp, 0);
    struct sl_config_diff d;
    sl_config_diff(prev, pp, next, pn, &d);
    const char *w = want[i];
    names(&d.sections, w, *w ? 1 : 0);
    if (*w) assert_true(d.routes_changed.n > 0);
    sl_policy_set_del(pp);
    sl_config_free(prev);
    prev = next;
    pp = pn;
  }
  sl_policy_set_del(pp);
  sl_config_free(prev);
}

/* Name lists are bounded: the first names that fit, and a count. */
static void test_namelist_bounded(void **st) {
  (void)st;
  struct sl_namelist nl = {0};
  char name[40];
  for (int i = 0; i < 20; i++) {
    snprintf(name, sizeof(name), "route-number-%02d", i);
    sl_namelist_add(&nl, name);
  }
  assert_int_equal(nl.n, 20);
  assert_true(nl.shown < 20 && nl.shown > 0);
  assert_true(nl.len < sizeof(nl.buf));
  struct sl_config_diff d = {0};
  d.routes_added = nl;
  char summary[512], fields[1700];
  sl_config_diff_report(&d, &(struct sl_reload_facts){.trigger = "x"}, summary, sizeof(summary),
                        fields, sizeof(fields));
  char more[32];
  snprintf(more, sizeof(more), " (+%u more)\"", 20 - nl.shown);
  assert_non_null(strstr(fields, more));
  /* A field that does not fit is left out; the fragment stays whole. */
  char small[64];
  sl_config_diff_report(&d, &(struct sl_reload_facts){.trigger = "x"}, summary, sizeof(summary),
                        small, sizeof(small));
  assert_string_equal(small, "\"trigger\":\"x\",\"generation\":0,\"blocklist_entries\":\"0->0\"");
}

/* The reload line counts active and expired blocklist entries apart
 * (issue 12), beside blocklist_entries; none when the list is empty. */
static void test_blocklist_expired_counts(void **st) {
  (void)st;
  struct sl_config_diff d = {0};
  char summary[512], fields[1700];
  sl_config_diff_report(&d,
                        &(struct sl_reload_facts){.trigger = "file", .blocklist_before = 2,
                                                  .blocklist_after = 5, .blocklist_expired = 2},
                        summary, sizeof(summary), fields, sizeof(fields));
  assert_non_null(strstr(fields, "\"blocklist_entries\":\"2->5\",\"blocklist_active\":3,"
                                 "\"blocklist_expired\":2"));
  assert_non_null(strstr(summary, "blocklist 2->5;"));
  sl_config_diff_report(&d,
                        &(struct sl_reload_facts){.trigger = "file", .blocklist_before = 2,
                                                  .blocklist_after = 1},
                        summary, sizeof(summary), fields, sizeof(fields));
  assert_non_null(strstr(fields, "\"blocklist_active\":1,\"blocklist_expired\":0"));
  sl_config_diff_report(&d,
                        &(struct sl_reload_facts){.trigger = "file", .blocklist_before = 2},
                        summary, sizeof(summary), fields, sizeof(fields));
  assert_null(strstr(fields, "blocklist_active"));
  assert_null(strstr(fields, "blocklist_expired"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_diff),
      cmocka_unit_test(test_kind_tunables_change_route),
      cmocka_unit_test(test_maintenance_named),
      cmocka_unit_test(test_namelist_bounded),
      cmocka_unit_test(test_blocklist_expired_counts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
