/* Unit tests for policies/allow.c and policies/config/config_allow.c:
 * exemptions (`allow`). Rule matching (AND across criteria, OR within a
 * list, CIDRs v4 and v6, class, device id, header, routes, first match),
 * the schema's errors at LINE:COL, the printer's round trip, the reload
 * diff, and admission with a skip mask on real policy state: a skipped
 * limiter is not charged, a skipped blocklist does not refuse, a skipped
 * concurrency cap takes and releases no slot. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include "sluice/admission.h"
#include "sluice/allow.h"
#include "sluice/blocklist.h"
#include "sluice/concurrency.h"
#include "sluice/config.h"
#include "sluice/config_diff.h"
#include "sluice/explain.h"
#include "sluice/identify.h"
#include "sluice/policy_state.h"
#include "sluice/ratelimit.h"
#include "sluice/route.h"
#include "yaml_fixture.h"

#define SEC 1000000000ull
#define T0 (1000 * SEC)
#define UNIX0 ((int64_t)1750000000)

/* Two routes, a rate limit of one a minute per address, a concurrency
 * cap of one, a firmware block; the allow rules come after. */
static const char BASE[] =
    "listeners: [{ name: public, address: \"127.0.0.1:18080\" }]\n"
    "identify:\n"
    "  { client_ip: { trusted_proxies: [127.0.0.0/8] }, device_class: { header: x-device-class },\n"
    "    firmware: { header: x-firmware-version }, device_id: { header: x-device-id } }\n"
    "upstreams:\n"
    "  identity: { address: \"127.0.0.1:18081\" }\n"
    "routes:\n"
    "  - { name: connect, match: { path_prefix: /v1/connect }, upstream: identity,\n"
    "      rate_limits: [{ key: client_ip, rate: 1/m, burst: 1 }], concurrency: { max: 1 } }\n"
    "  - { name: other, match: { path_prefix: / }, upstream: identity,\n"
    "      rate_limits: [{ key: client_ip, rate: 1/m, burst: 1 }] }\n"
    "blocklist:\n"
    "  firmware:\n"
    "    - { class: hub, versions: \">=1.0.0\", reason: \"INC-1\" }\n"
    "shaping:\n"
    "  - { match: { path_prefix: \"/v1/connect\" }, abort: { percent: 100, status: 418 } }\n";

/* BASE has this many lines: a test's rules start on the next. */
#define BASE_LINES 16

static const char RULES[] =
    "allow:\n"
    "  - name: wallet-api\n"                                  /* rule 0 */
    "    client_ip: [198.51.100.0/24, \"2001:db8::/32\"]\n"
    "    skip: [rate_limits, blocklist, concurrency]\n"
    "  - name: gw\n"                                          /* rule 1: AND */
    "    class: [partner-gw, other-gw]\n"
    "    device_id: [dev-42, dev-7]\n"
    "    skip: [blocklist]\n"
    "  - name: hdr\n"                                         /* rule 2 */
    "    header: { name: X-Partner, value: wallet-api }\n"
    "    routes: [other]\n"
    "    skip: [rate_limits]\n"
    "  - name: present\n"                                     /* rule 3 */
    "    header: { name: x-any }\n"
    "    client_ip: 203.0.113.0/24\n"
    "    skip: [shaping]\n"
    "  - name: late\n"                                        /* rule 4: after rule 0 */
    "    client_ip: 198.51.100.7\n"
    "    skip: [shaping]\n";

struct env {
  struct sl_config *cfg;
  struct sl_policy_set *ps;
  struct sl_blocklist *bl;
};

static struct env env_load(const char *rules) {
  struct env e;
  e.cfg = yaml_load_ok(BASE, rules);
  e.ps = sl_policy_set_new(e.cfg, NULL, 0);
  e.bl = sl_blocklist_new(&e.cfg->blocklist, e.cfg->mode);
  assert_non_null(e.ps);
  assert_non_null(e.bl);
  return e;
}

static void env_free(struct env *e) {
  sl_blocklist_del(e->bl);
  sl_policy_set_del(e->ps);
  sl_config_free(e->cfg);
}

/* A request: the peer |ip| (v4 or v6), identity headers, one extra. */
struct req {
  const char *ip, *path;
  const char *cls, *fw, *dev;
  const char *hname, *hvalue; /* an extra header (lowercase name) */
};

static const char *req_header(const void *ctx, const char *name) {
  const struct req *r = ctx;
  return r->hname && !strcmp(r->hname, name) ? r->hvalue : NULL;
}

/* Identifies |r| into |id| and |f|; returns its route. */
static const struct sl_route_cfg *identify(const struct env *e, const struct req *r,
                                           struct sl_identity *id, struct sl_request_facts *f) {
  struct addrinfo hints = {.ai_flags = AI_NUMERICHOST}, *peer;
  assert_int_equal(getaddrinfo(r->ip ? r->ip : "192.0.2.1", NULL, &hints, &peer), 0);
  struct sl_hdr h[3];
  size_t n = 0;
  if (r->cls) h[n++] = (struct sl_hdr){"x-device-class", 14, r->cls, strlen(r->cls)};
  if (r->fw) h[n++] = (struct sl_hdr){"x-firmware-version", 18, r->fw, strlen(r->fw)};
  if (r->dev) h[n++] = (struct sl_hdr){"x-device-id", 11, r->dev, strlen(r->dev)};
  assert_int_equal(sl_identify(&e->cfg->identify, peer->ai_addr, h, n, id), SL_IDENTIFY_OK);
  freeaddrinfo(peer);
  *f = (struct sl_request_facts){.method = "GET",
                                 .path = r->path ? r->path : "/v1/connect",
                                 .listener = "public",
                                 .header = req_header,
                                 .header_ctx = r};
  const struct sl_route_cfg *route = sl_route_select(e->cfg, f);
  assert_non_null(route);
  return route;
}

/* The name of the rule |r| meets, or "-". */
static const char *rule_of(const struct env *e, const struct req *r) {
  struct sl_identity id;
  struct sl_request_facts f;
  const struct sl_route_cfg *route = identify(e, r, &id, &f);
  const struct sl_allow_rule *rule = sl_allow_match(&e->cfg->allow, route, &id, &f);
  return rule ? rule->name : "-";
}

static void decide(const struct env *e, const struct req *r, struct sl_admission *out) {
  struct sl_identity id;
  struct sl_request_facts f;
  const struct sl_route_cfg *route = identify(e, r, &id, &f);
  struct sl_admission_input in = {.cfg = e->cfg, .policies = e->ps, .route = route, .id = &id,
                                  .blocklist = e->bl, .facts = &f, .now_ns = T0,
                                  .now_unix = UNIX0};
  sl_admission_decide(&in, out);
}

/* ---- matching ----------------------------------------------------- */

static void test_match(void **st) {
  (void)st;
  struct env e = env_load(RULES);
  assert_int_equal(e.cfg->allow.n_rules, 5);
  /* CIDR v4 and v6, OR within the list; first match wins over "late". */
  assert_string_equal(rule_of(&e, &(struct req){.ip = "198.51.100.7"}), "wallet-api");
  assert_string_equal(rule_of(&e, &(struct req){.ip = "198.51.100.255"}), "wallet-api");
  assert_string_equal(rule_of(&e, &(struct req){.ip = "198.51.101.0"}), "-");
  assert_string_equal(rule_of(&e, &(struct req){.ip = "2001:db8:1::9"}), "wallet-api");
  assert_string_equal(rule_of(&e, &(struct req){.ip = "2001:db9::1"}), "-");
  /* An IPv4 client seen on a dual-stack socket is the IPv4 client. */
  assert_string_equal(rule_of(&e, &(struct req){.ip = "::ffff:198.51.100.9"}), "wallet-api");

  /* class AND device_id, OR within each; exact, case-sensitive. */
  assert_string_equal(rule_of(&e, &(struct req){.cls = "partner-gw", .dev = "dev-7"}), "gw");
  assert_string_equal(rule_of(&e, &(struct req){.cls = "other-gw", .dev = "dev-42"}), "gw");
  assert_string_equal(rule_of(&e, &(struct req){.cls = "partner-gw"}), "-");
  assert_string_equal(rule_of(&e, &(struct req){.dev = "dev-42"}), "-");
  assert_string_equal(rule_of(&e, &(struct req){.cls = "partner-gw", .dev = "dev-4"}), "-");
  assert_string_equal(rule_of(&e, &(struct req){.cls = "Partner-gw", .dev = "dev-42"}), "-");
  assert_string_equal(rule_of(&e, &(struct req){.cls = "partner-g", .dev = "dev-42"}), "-");
  assert_string_equal(rule_of(&e, &(struct req){.cls = "partner-gwx", .dev = "dev-42"}), "-");

  /* A header with a value, only on route "other"; presence AND a CIDR. */
  static const struct {
    struct req r;
    const char *rule;
  } cases[] = {
      {{.path = "/x", .hname = "x-partner", .hvalue = "wallet-api"}, "hdr"},
      {{.path = "/v1/connect", .hname = "x-partner", .hvalue = "wallet-api"}, "-"},
      {{.path = "/x", .hname = "x-partner", .hvalue = "wallet-api2"}, "-"},
      {{.ip = "203.0.113.5", .hname = "x-any", .hvalue = ""}, "present"},
      {{.ip = "203.0.114.5", .hname = "x-any", .hvalue = ""}, "-"},
      {{.ip = "203.0.113.5", .hname = "x-other", .hvalue = ""}, "-"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    assert_string_equal(rule_of(&e, &cases[i].r), cases[i].rule);
  env_free(&e);
}

static void test_match_forwarded(void **st) {
  (void)st;
  struct env e = env_load(RULES);
  struct sockaddr_in sin = {.sin_family = AF_INET};
  inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
  struct sl_hdr h = {"x-forwarded-for", 15, "198.51.100.3", 12};
  struct sl_identity id;
  assert_int_equal(sl_identify(&e.cfg->identify, (struct sockaddr *)&sin, &h, 1, &id),
                   SL_IDENTIFY_OK);
  assert_true(id.forwarded);
  const struct sl_allow_rule *r = sl_allow_match(&e.cfg->allow, &e.cfg->routes[0], &id, NULL);
  assert_non_null(r);
  assert_string_equal(r->name, "wallet-api");
  /* From a peer that is not trusted, the header is not believed. */
  inet_pton(AF_INET, "192.0.2.9", &sin.sin_addr);
  assert_int_equal(sl_identify(&e.cfg->identify, (struct sockaddr *)&sin, &h, 1, &id),
                   SL_IDENTIFY_OK);
  assert_null(sl_allow_match(&e.cfg->allow, &e.cfg->routes[0], &id, NULL));
  env_free(&e);
}

/* Rules listed in the other order: the first match is the earlier one. */
static void test_first_match(void **st) {
  (void)st;
  struct env e = env_load("allow:\n"
                          "  - { name: narrow, client_ip: 198.51.100.7/32, skip: [shaping] }\n"
                          "  - { name: wide, client_ip: 198.51.100.0/24, skip: [blocklist] }\n");
  assert_string_equal(rule_of(&e, &(struct req){.ip = "198.51.100.7"}), "narrow");
  assert_string_equal(rule_of(&e, &(struct req){.ip = "198.51.100.8"}), "wide");
  env_free(&e);
}

/* ---- schema ------------------------------------------------------- */

static void expect_error(const char *rules, unsigned line, unsigned col, const char *text) {
  struct sl_config_errors errs = {0};
  struct sl_config *cfg = yaml_load(BASE, rules, &errs);
  assert_null(cfg);
  bool found = false;
  for (size_t i = 0; i < errs.n && !found; i++)
    found = errs.items[i].line == BASE_LINES + line && errs.items[i].col == col &&
            strstr(errs.items[i].message, text);
  if (!found) {
    sl_config_errors_print(&errs, stderr);
    fail_msg("no error '%s' at line %u col %u", text, BASE_LINES + line, col);
  }
  sl_config_errors_free(&errs);
}

static void test_schema_errors(void **st) {
  (void)st;
  static const struct {
    const char *rules;
    unsigned line, col;
    const char *text;
  } cases[] = {
      {"allow:\n  - name: a\n    client_ip: 10.0.0.0/8\n    skip: [rate_limit]\n", 4, 12,
       "unknown policy 'rate_limit' (did you mean 'rate_limits'?)"},
      {"allow:\n  - name: a\n    client_ip: 10.0.0.0/8\n    skip: [nothing_like_it]\n", 4, 12,
       "valid names are: blocklist, rate_limits, shaping, concurrency"},
      {"allow:\n  - name: a\n    client_ip: 10.0.0.0/8\n    skip: [shaping, breaker]\n", 4, 21,
       "'breaker' cannot be skipped"},
      {"allow:\n  - name: a\n    client_ip: 10.0.0.0/8\n    skip: []\n", 4, 11,
       "skip: must not be an empty list"},
      {"allow:\n  - name: a\n    client_ip: 10.0.0.0/8\n", 2, 5, "missing 'skip'"},
      {"allow:\n  - name: a\n    routes: [other]\n    skip: [shaping]\n", 2, 5,
       "give at least one of client_ip, header, class, device_id"},
      {"allow:\n  - name: a\n    client_ip: [10.0.0.1/8]\n    skip: [shaping]\n", 3, 17,
       "host bits set"},
      {"allow:\n  - name: a\n    client_ip: 10.0.0.0/8\n    routes: [conect]\n"
       "    skip: [shaping]\n",
       4, 14, "'conect' is not a defined route (did you mean 'connect'?)"},
      {"allow:\n  - client_ip: 10.0.0.0/8\n    skip: [shaping]\n", 2, 5, "missing 'name'"},
      {"allow:\n  - name: a\n    header: { value: x }\n    skip: [shaping]\n", 3, 13,
       "header: missing 'name'"},
      {"allow:\n  - name: a\n    class: []\n    skip: [shaping]\n", 3, 12,
       "class: must not be an empty list"},
      {"allow:\n  - name: a\n    clas: [x]\n    skip: [shaping]\n", 3, 5,
       "unknown key 'clas' in allow rule (did you mean 'class'?)"},
      {"allow:\n  - { name: a, class: x, skip: [shaping] }\n"
       "  - { name: a, class: y, skip: [shaping] }\n",
       3, 5, "duplicate allow rule name 'a'"},
      {"allow:\n  - name: a\n    device_id: [{ x: y }]\n    skip: [shaping]\n", 3, 17,
       "device_id: expected a string"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    expect_error(cases[i].rules, cases[i].line, cases[i].col, cases[i].text);
  /* More rules than the masks hold: the 65th is the error. */
  char many[64 * 64 + 64];
  size_t off = (size_t)snprintf(many, sizeof(many), "allow:\n");
  for (int i = 0; i < SL_ALLOW_MAX_RULES + 1; i++)
    off += (size_t)snprintf(many + off, sizeof(many) - off,
                            "  - { name: r%d, class: c, skip: [shaping] }\n", i);
  expect_error(many, SL_ALLOW_MAX_RULES + 2, 5, "at most 64 rules");
}

/* A rule naming routes while a route has no name (an error of its own):
 * reported, never compared with the missing name (found by fuzz_config). */
static void test_routes_with_an_unnamed_route(void **st) {
  (void)st;
  struct sl_config_errors errs = {0};
  assert_null(yaml_load("listeners: [{ name: public, address: \"127.0.0.1:18080\" }]\n"
                        "upstreams: { identity: { address: \"127.0.0.1:18081\" } }\n"
                        "routes: [{ match: { path_prefix: / }, upstream: identity }]\n"
                        "allow: [{ name: a, class: x, routes: [connect], skip: [shaping] }]\n",
                        "", &errs));
  bool named = false;
  for (size_t i = 0; i < errs.n; i++)
    named |= errs.items[i].line == 4 && strstr(errs.items[i].message, "'connect' is not a defined");
  assert_true(named);
  sl_config_errors_free(&errs);
}

/* ---- printer and diff --------------------------------------------- */

static char *print_cfg(const struct sl_config *cfg) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_true(f && sl_config_print(cfg, f) == 0 && fclose(f) == 0);
  return buf;
}

static void test_print_round_trip(void **st) {
  (void)st;
  struct env e = env_load(RULES);
  char *once = print_cfg(e.cfg);
  assert_non_null(strstr(once, "allow:\n  - name: \"wallet-api\"\n"
                               "    client_ip: [\"198.51.100.0/24\", \"2001:db8::/32\"]\n"
                               "    skip: [blocklist, rate_limits, concurrency]\n"));
  assert_non_null(strstr(once, "    class: [\"other-gw\", \"partner-gw\"]\n"
                               "    device_id: [\"dev-42\", \"dev-7\"]\n"));
  assert_non_null(strstr(once, "    header:\n      name: \"x-partner\"\n"
                               "      value: \"wallet-api\"\n    routes: [\"other\"]\n"));
  struct sl_config *again = yaml_load_ok(once, "");
  char *twice = print_cfg(again);
  assert_string_equal(once, twice);
  assert_int_equal(again->allow.n_rules, 5);
  free(twice);
  sl_config_free(again);
  free(once);
  /* None: printed as an empty list, which loads. */
  struct env none = env_load("");
  char *p = print_cfg(none.cfg);
  assert_non_null(strstr(p, "\nallow: []\n"));
  free(p);
  env_free(&none);
  env_free(&e);
}

static void test_diff(void **st) {
  (void)st;
  struct env a = env_load(RULES), b = env_load(RULES);
  struct sl_config_diff d;
  sl_config_diff(a.cfg, a.ps, b.cfg, b.ps, &d);
  assert_int_equal(d.sections.n, 0);
  struct env c = env_load("allow:\n  - { name: wallet-api, client_ip: 198.51.100.0/25, "
                          "skip: [rate_limits] }\n");
  sl_config_diff(a.cfg, a.ps, c.cfg, c.ps, &d);
  assert_string_equal(d.sections.buf, "allow");
  env_free(&a);
  env_free(&b);
  env_free(&c);
}

/* ---- admission with a skip mask ----------------------------------- */

/* Requests left in 198.51.100.7's bucket of route |ri|'s limiter. */
static uint32_t room(const struct env *e, size_t ri, const char *ip) {
  const struct sl_route_cfg *r = &e->cfg->routes[ri];
  struct sl_ratelimit_table *t =
      sl_policy_state_ratelimit(sl_policy_set_rate_limit(e->ps, r, 0));
  uint8_t key[16] = {0};
  key[10] = key[11] = 0xff;
  assert_int_equal(inet_pton(AF_INET, ip, key + 12), 1);
  struct sl_rl_verdict v;
  if (!sl_ratelimit_peek(t, key, sizeof(key), r->rate_limits[0].rate.period_ns,
                         r->rate_limits[0].burst, T0, &v))
    return 0;
  return v.remaining + 1;
}

static uint32_t in_flight(const struct env *e) {
  return sl_concurrency_in_flight(
      sl_policy_state_concurrency(sl_policy_set_concurrency(e->ps, &e->cfg->routes[0])));
}

static void test_admission_rate_limit_not_charged(void **st) {
  (void)st;
  struct env e = env_load(RULES);
  struct sl_admission a;
  /* The partner on "other" (no concurrency, no shaping): never refused by
   * the one-a-minute limit, and its bucket is never charged. */
  for (int i = 0; i < 5; i++) {
    decide(&e, &(struct req){.ip = "198.51.100.7", .path = "/x"}, &a);
    assert_true(a.admit);
    assert_non_null(a.allow);
    assert_string_equal(a.allow->name, "wallet-api");
    assert_true(a.skip & SL_SKIP_RATE_LIMITS);
    sl_admission_finish(&a, SL_OUTCOME_SUCCESS, 0, T0);
  }
  assert_int_equal(room(&e, 1, "198.51.100.7"), 1);
  /* The crowd: one, then 429, and its bucket is spent. */
  decide(&e, &(struct req){.ip = "192.0.2.1", .path = "/x"}, &a);
  assert_true(a.admit);
  assert_null(a.allow);
  assert_int_equal(a.skip, 0);
  assert_int_equal(room(&e, 1, "192.0.2.1"), 0);
  decide(&e, &(struct req){.ip = "192.0.2.1", .path = "/x"}, &a);
  assert_false(a.admit);
  assert_int_equal(a.status, 429);
  /* A rule that skips only the rate limits on "other" (hdr): charged on
   * "connect", where it does not apply. */
  struct req h = {.ip = "192.0.2.50", .path = "/x", .hname = "x-partner", .hvalue = "wallet-api"};
  decide(&e, &h, &a);
  assert_true(a.admit);
  decide(&e, &h, &a);
  assert_true(a.admit);
  assert_int_equal(room(&e, 1, "192.0.2.50"), 1);
  env_free(&e);
}

static void test_admission_blocklist_skipped(void **st) {
  (void)st;
  struct env e = env_load(RULES);
  struct sl_admission a;
  struct req blocked = {.ip = "192.0.2.1", .path = "/x", .cls = "hub", .fw = "1.2.0"};
  decide(&e, &blocked, &a);
  assert_false(a.admit);
  assert_int_equal(a.status, 403);
  assert_int_equal(a.reason, SL_REASON_BLOCKLIST);
  /* The same device from the partner's block (skips the blocklist). */
  blocked.ip = "198.51.100.20";
  decide(&e, &blocked, &a);
  assert_true(a.admit);
  assert_true(a.skip & SL_SKIP_BLOCKLIST);
  /* The "gw" rule skips only the blocklist: the rate limit still holds. */
  struct req gw = {.ip = "192.0.2.2", .path = "/x", .cls = "hub", .fw = "1.0.0"};
  decide(&e, &gw, &a);
  assert_false(a.admit); /* not a gw: blocked */
  env_free(&e);
}

static void test_admission_concurrency_skipped(void **st) {
  (void)st;
  /* On "connect": no shaping abort for the partner either. */
  struct env e = env_load("allow:\n"
                          "  - name: wallet-api\n"
                          "    client_ip: 198.51.100.0/24\n"
                          "    skip: [rate_limits, concurrency, shaping]\n");
  struct sl_admission crowd, p1, p2;
  /* The shaping rule aborts everything on /v1/connect with 418. */
  decide(&e, &(struct req){.ip = "192.0.2.1"}, &crowd);
  assert_false(crowd.admit);
  assert_int_equal(crowd.status, 418);
  assert_int_equal(in_flight(&e), 0);

  decide(&e, &(struct req){.ip = "198.51.100.1"}, &p1);
  assert_true(p1.admit);
  decide(&e, &(struct req){.ip = "198.51.100.2"}, &p2);
  assert_true(p2.admit); /* over the cap of 1: not counted */
  assert_int_equal(in_flight(&e), 0);
  assert_null(p1.conc);
  assert_int_equal(p1.n_held, 0);
  /* Take the one slot with a request that holds it (the engine's state,
   * not a request: the crowd is shaped away), then finish the partners:
   * nothing is released for them. */
  struct sl_concurrency *c =
      sl_policy_state_concurrency(sl_policy_set_concurrency(e.ps, &e.cfg->routes[0]));
  assert_true(sl_concurrency_try_acquire(c, 1, SL_PRIORITY_NORMAL));
  assert_int_equal(in_flight(&e), 1);
  sl_admission_finish(&p1, SL_OUTCOME_SUCCESS, 0, T0);
  sl_admission_finish(&p2, SL_OUTCOME_FAILURE, 0, T0);
  assert_int_equal(in_flight(&e), 1);
  sl_concurrency_release(c);
  env_free(&e);
}

/* Explain lists the rule first and each skipped policy as skipped. */
static void test_explain(void **st) {
  (void)st;
  struct env e = env_load(RULES);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  char err[128];
  struct sl_explain_request r = {.path = "/v1/connect", .ip = "198.51.100.7"};
  assert_int_equal(sl_explain(e.cfg, e.ps, e.bl, &r, T0, UNIX0, f, err, sizeof(err)), 0);
  fclose(f);
  assert_non_null(strstr(buf, "{\"policy\":\"allow/wallet-api\",\"kind\":\"allow\","
                              "\"verdict\":\"exempt\",\"why\":\"matched on client_ip (2 blocks); "
                              "skips blocklist, rate_limits, concurrency\"}"));
  assert_non_null(strstr(buf, "{\"policy\":\"blocklist\",\"kind\":\"blocklist\",\"verdict\":"
                              "\"skip\",\"why\":\"skip (allow/wallet-api)\"}"));
  assert_non_null(strstr(buf, "{\"policy\":\"connect/client_ip\",\"kind\":\"rate_limit\","
                              "\"verdict\":\"skip\",\"why\":\"skip (allow/wallet-api)\"}"));
  assert_non_null(strstr(buf, "{\"policy\":\"connect/concurrency\",\"kind\":\"concurrency\","
                              "\"verdict\":\"skip\",\"why\":\"skip (allow/wallet-api)\"}"));
  /* Shaping is not skipped: its abort is the verdict. */
  assert_non_null(strstr(buf, "\"admit\":false,\"status\":418"));
  assert_non_null(strstr(buf, "\"allow\":{\"rule\":\"wallet-api\","
                              "\"skip\":\"blocklist, rate_limits, concurrency\"}"));
  free(buf);
  env_free(&e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_match),
      cmocka_unit_test(test_match_forwarded),
      cmocka_unit_test(test_first_match),
      cmocka_unit_test(test_schema_errors),
      cmocka_unit_test(test_routes_with_an_unnamed_route),
      cmocka_unit_test(test_print_round_trip),
      cmocka_unit_test(test_diff),
      cmocka_unit_test(test_admission_rate_limit_not_charged),
      cmocka_unit_test(test_admission_blocklist_skipped),
      cmocka_unit_test(test_admission_concurrency_skipped),
      cmocka_unit_test(test_explain),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
