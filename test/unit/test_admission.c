/* Unit tests for policies/admission.c: the admission pipeline on real
 * configurations (YAML through sl_config_load), real policy state and a
 * fake clock. */
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
#include <unistd.h>

#include "sluice/admission.h"
#include "sluice/blocklist.h"
#include "sluice/breaker.h"
#include "sluice/concurrency.h"
#include "sluice/config.h"
#include "sluice/identify.h"
#include "sluice/policy_state.h"
#include "sluice/ratelimit.h"
#include "sluice/route.h"
#include "admission_env.h"

#define MS 1000000ull
#define SEC 1000000000ull
#define T0 (1000 * SEC)           /* fake monotonic clock start */
#define UNIX0 ((int64_t)1750000000) /* fake wall clock */

/* ---- fixtures ----------------------------------------------------- */

/* What every test configuration shares: a listener and the identity
 * headers. Each test appends upstreams, routes and the rest. */
static const char HEAD[] =
    "listeners:\n"
    "  - name: public\n"
    "    address: \"127.0.0.1:18080\"\n"
    "identify:\n"
    "  client_ip: { trusted_proxies: [\"127.0.0.0/8\"] }\n"
    "  device_class: { header: \"x-device-class\" }\n"
    "  firmware: { header: \"x-firmware-version\" }\n"
    "  device_id: { header: \"x-device-id\" }\n";

/* An upstream with a breaker that opens after 3 failures in a row, for
 * 5 s, closes after one good probe, and does not ramp. */
static const char UPSTREAM[] =
    "upstreams:\n"
    "  identity:\n"
    "    address: \"127.0.0.1:18081\"\n"
    "    circuit_breaker: { consecutive_failures: 3, open_for: 5s, half_open_probes: 1,\n"
    "                       recovery_ramp: 0s }\n";

static struct env *env_load(const char *body) { return env_load_with(HEAD, body); }

/* One hypothetical request. */
struct req {
  const char *path; /* default "/v1/connect" */
  const char *ip;   /* default "192.0.2.1" (the peer: not a trusted proxy) */
  const char *cls;  /* x-device-class, NULL: absent */
  const char *fw;   /* x-firmware-version, NULL: absent */
  const char *dev;  /* x-device-id, NULL: absent */
  uint64_t now;     /* default T0 */
  uint64_t rnd;
};

static const char *no_header(const void *ctx, const char *name) {
  (void)ctx;
  (void)name;
  return NULL;
}

/* Identifies |r| and runs the pipeline; returns the route it met. */
static const struct sl_route_cfg *decide(struct env *e, const struct req *r,
                                         struct sl_admission *out) {
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  assert_int_equal(inet_pton(AF_INET, r->ip ? r->ip : "192.0.2.1", &sin.sin_addr), 1);
  struct sl_hdr h[3];
  size_t n = 0;
  if (r->cls) h[n++] = (struct sl_hdr){"x-device-class", 14, r->cls, strlen(r->cls)};
  if (r->fw) h[n++] = (struct sl_hdr){"x-firmware-version", 18, r->fw, strlen(r->fw)};
  if (r->dev) h[n++] = (struct sl_hdr){"x-device-id", 11, r->dev, strlen(r->dev)};
  struct sl_identity id;
  assert_int_equal(sl_identify(&e->cfg->identify, (struct sockaddr *)&sin, h, n, &id),
                   SL_IDENTIFY_OK);
  struct sl_request_facts facts = {
      .method = "GET",
      .path = r->path ? r->path : "/v1/connect",
      .listener = "public",
      .header = no_header,
  };
  const struct sl_route_cfg *route = sl_route_select(e->cfg, &facts);
  assert_non_null(route);
  struct sl_admission_input in = {
      .cfg = e->cfg,
      .policies = e->ps,
      .route = route,
      .id = &id,
      .blocklist = e->bl,
      .facts = &facts,
      .now_ns = r->now ? r->now : T0,
      .now_unix = UNIX0,
      .rnd = r->rnd,
  };
  sl_admission_decide(&in, out);
  return route;
}

static const struct sl_route_cfg *route_named(struct env *e, const char *name) {
  for (size_t i = 0; i < e->cfg->n_routes; i++)
    if (!strcmp(e->cfg->routes[i].name, name)) return &e->cfg->routes[i];
  fail_msg("no route %s", name);
  return NULL;
}

static struct sl_ratelimit_table *table_of(struct env *e, const char *route, size_t i) {
  const struct sl_route_cfg *r = route_named(e, route);
  assert_true(i < r->n_rate_limits);
  struct sl_ratelimit_table *t = sl_policy_state_ratelimit(sl_policy_set_rate_limit(e->ps, r, i));
  assert_non_null(t);
  return t;
}

static uint32_t in_flight(struct env *e, const char *route) {
  struct sl_concurrency *c = sl_policy_state_concurrency(sl_policy_set_concurrency(e->ps, route_named(e, route)));
  assert_non_null(c);
  return sl_concurrency_in_flight(c);
}

static struct sl_breaker *breaker_of(struct env *e) {
  struct sl_breaker *b = sl_policy_state_breaker(e->ps->breakers[0]);
  assert_non_null(b);
  return b;
}

/* Remaining burst of an IPv4 client's bucket in a client_ip limiter
 * (requests that would still be admitted at |now|, this one included). */
static uint32_t ip_room(struct env *e, const char *route, size_t i, const char *ip, uint64_t now) {
  const struct sl_route_cfg *r = route_named(e, route);
  const struct sl_rate_limit_cfg *rl = &r->rate_limits[i];
  assert_int_equal(rl->key, SL_KEY_CLIENT_IP);
  uint8_t key[16] = {0};
  key[10] = key[11] = 0xff;
  assert_int_equal(inet_pton(AF_INET, ip, key + 12), 1);
  struct sl_rl_verdict v;
  if (!sl_ratelimit_peek(table_of(e, route, i), key, sizeof(key), rl->rate.period_ns, rl->burst,
                         now, &v))
    return 0;
  return v.remaining + 1;
}

#define assert_admitted(a)                                                                   \
  do {                                                                                       \
    if (!(a).admit)                                                                          \
      fail_msg("refused %u %s by %s", (a).status, (a).error ? (a).error : "-", (a).policy); \
  } while (0)

#define assert_refused(a, st, rsn, pol)                                      \
  do {                                                                       \
    assert_false((a).admit);                                                 \
    assert_int_equal((a).status, (st));                                      \
    assert_int_equal((a).reason, (rsn));                                     \
    assert_string_equal((a).policy, (pol));                                  \
    assert_non_null((a).error);                                              \
  } while (0)

static bool has_shadow(const struct sl_admission *a, enum sl_reject_reason r, const char *policy) {
  for (unsigned i = 0; i < a->n_shadow; i++)
    if (a->shadow[i].reason == r && !strcmp(a->shadow[i].policy, policy)) return true;
  return false;
}

static void finish(struct sl_admission *a, enum sl_outcome o, uint64_t now) {
  sl_admission_finish(a, o, 1 * MS, now);
}

/* ---- order -------------------------------------------------------- */

static const char ORDER_CFG[] =
    "routes:\n"
    "  - name: connect\n"
    "    match: { path_prefix: \"/v1/connect\" }\n"
    "    upstream: identity\n"
    "    rate_limits:\n"
    "      - { key: client_ip, rate: \"1/m\", burst: 1 }\n"
    "    concurrency: { max: 1 }\n"
    "  - name: other\n"
    "    match: { path_prefix: \"/\" }\n"
    "    upstream: identity\n"
    "blocklist:\n"
    "  firmware:\n"
    "    - class: airtame-hub\n"
    "      versions: \">=3.8.0-b3 <3.8.1\"\n"
    "      reason: \"INC-2041\"\n"
    "reject:\n"
    "  retry_after: { min: 1s, max: 120s, jitter: 0 }\n"
    "shaping:\n"
    "  - match: { path_prefix: \"/v1/shaped\" }\n"
    "    abort: { percent: 100, status: 418 }\n";

/* blocklist -> rate limit -> concurrency -> breaker -> shaping: each
 * policy answers although every later one would refuse too. */
static void test_order(void **st) {
  (void)st;
  char yaml[4096];
  snprintf(yaml, sizeof(yaml), "%s%s", UPSTREAM, ORDER_CFG);
  struct env *e = env_load(yaml);
  struct sl_admission a, held, x;

  /* A: admitted on connect; takes 192.0.2.1's only token and the only
   * concurrency slot, and keeps it. */
  decide(e, &(struct req){.cls = "airtame-hub", .fw = "3.7.9"}, &held);
  assert_admitted(held);
  assert_non_null(held.conc);
  assert_int_equal(in_flight(e, "connect"), 1);

  /* Trip the breaker through route "other" (same upstream). */
  for (int i = 0; i < 3; i++) {
    decide(e, &(struct req){.path = "/other", .ip = "192.0.2.50"}, &x);
    assert_admitted(x);
    finish(&x, SL_OUTCOME_FAILURE, T0);
  }
  assert_int_equal(sl_breaker_state(breaker_of(e)), SL_BREAKER_OPEN);

  /* Same client, blocked firmware: the blocklist answers first (not the
   * exhausted limit, nor the full route, nor the open breaker). */
  decide(e, &(struct req){.cls = "airtame-hub", .fw = "3.8.0"}, &a);
  assert_refused(a, 403, SL_REASON_BLOCKLIST, "blocklist/firmware/0");
  assert_string_equal(a.error, "blocked");
  assert_non_null(a.block);
  assert_string_equal(a.block->reason, "INC-2041");
  assert_null(a.conc);

  /* Same client, good firmware: the rate limit answers before the full
   * route and the open breaker. */
  decide(e, &(struct req){.cls = "airtame-hub", .fw = "3.8.1"}, &a);
  assert_refused(a, 429, SL_REASON_RATE_LIMIT, "connect/client_ip");
  assert_string_equal(a.error, "rate_limited");

  /* Another client: concurrency answers before the open breaker. */
  decide(e, &(struct req){.ip = "192.0.2.2"}, &a);
  assert_refused(a, 429, SL_REASON_CONCURRENCY, "connect/concurrency");
  assert_int_equal(in_flight(e, "connect"), 1);
  /* ... and it took no quota: 192.0.2.2's bucket is still full. */
  assert_int_equal(ip_room(e, "connect", 0, "192.0.2.2", T0), 1);

  /* The breaker answers before shaping would abort. */
  decide(e, &(struct req){.path = "/v1/shaped"}, &a);
  assert_refused(a, 503, SL_REASON_BREAKER, "upstream/identity");
  assert_string_equal(a.error, "circuit_open");

  /* Breaker closed again (open_for, one good probe): shaping answers. */
  decide(e, &(struct req){.path = "/other", .now = T0 + 5 * SEC}, &x);
  assert_admitted(x);
  finish(&x, SL_OUTCOME_SUCCESS, T0 + 5 * SEC);
  assert_int_equal(sl_breaker_state(breaker_of(e)), SL_BREAKER_CLOSED);
  decide(e, &(struct req){.path = "/v1/shaped", .now = T0 + 5 * SEC}, &a);
  assert_refused(a, 418, SL_REASON_SHAPING, "shaping/0");

  finish(&held, SL_OUTCOME_SUCCESS, T0);
  assert_int_equal(in_flight(e, "connect"), 0);
  env_free(e);
}

/* ---- a refused request consumes nothing ---------------------------- */

static const char TWO_LIMITS_CFG[] =
    "routes:\n"
    "  - name: connect\n"
    "    match: { path_prefix: \"/\" }\n"
    "    upstream: identity\n"
    "    rate_limits:\n"
    "      - { key: client_ip, rate: \"1/h\", burst: 3 }\n"
    "      - { key: device_class, rate: \"1/h\", burst: 1 }\n"
    "    concurrency: { max: 1 }\n"
    "reject:\n"
    "  retry_after: { min: 1s, max: 120s, jitter: 0 }\n";

static void test_refused_consumes_nothing(void **st) {
  (void)st;
  char yaml[4096];
  snprintf(yaml, sizeof(yaml), "%s%s", UPSTREAM, TWO_LIMITS_CFG);
  struct env *e = env_load(yaml);
  struct sl_admission a;

  decide(e, &(struct req){.cls = "x"}, &a);
  assert_admitted(a);
  finish(&a, SL_OUTCOME_SUCCESS, T0);
  assert_int_equal(ip_room(e, "connect", 0, "192.0.2.1", T0), 2);

  /* The second limit refuses class x: the first limit's bucket is left
   * as it was, however often it happens. */
  for (int i = 0; i < 50; i++) {
    decide(e, &(struct req){.cls = "x", .now = T0 + (uint64_t)i * MS}, &a);
    assert_refused(a, 429, SL_REASON_RATE_LIMIT, "connect/device_class");
    assert_null(a.conc);
  }
  assert_int_equal(ip_room(e, "connect", 0, "192.0.2.1", T0), 2);

  /* So two more classes still get in from that address, and the fourth
   * request is the first the client_ip limit refuses. */
  decide(e, &(struct req){.cls = "y"}, &a);
  assert_admitted(a);
  finish(&a, SL_OUTCOME_SUCCESS, T0);
  decide(e, &(struct req){.cls = "z"}, &a);
  assert_admitted(a);
  finish(&a, SL_OUTCOME_SUCCESS, T0);
  decide(e, &(struct req){.cls = "w"}, &a);
  assert_refused(a, 429, SL_REASON_RATE_LIMIT, "connect/client_ip");
  /* ... and w's own bucket was not charged by that refusal. */
  decide(e, &(struct req){.ip = "192.0.2.9", .cls = "w"}, &a);
  assert_admitted(a);

  /* Refused by concurrency (a holds the slot): no quota taken either. */
  struct sl_admission b;
  assert_int_equal(ip_room(e, "connect", 0, "192.0.2.10", T0), 3);
  decide(e, &(struct req){.ip = "192.0.2.10", .cls = "v"}, &b);
  assert_refused(b, 429, SL_REASON_CONCURRENCY, "connect/concurrency");
  assert_int_equal(ip_room(e, "connect", 0, "192.0.2.10", T0), 3);
  finish(&a, SL_OUTCOME_SUCCESS, T0);
  decide(e, &(struct req){.ip = "192.0.2.10", .cls = "v"}, &b);
  assert_admitted(b);
  assert_int_equal(ip_room(e, "connect", 0, "192.0.2.10", T0), 2);
  finish(&b, SL_OUTCOME_SUCCESS, T0);

  /* Refused by the open breaker: no quota, no slot. */
  for (int i = 0; i < 3; i++) {
    decide(e, &(struct req){.ip = "192.0.2.20"}, &a); /* no class: one limit */
    assert_admitted(a);
    finish(&a, SL_OUTCOME_FAILURE, T0);
  }
  assert_int_equal(ip_room(e, "connect", 0, "192.0.2.11", T0), 3);
  decide(e, &(struct req){.ip = "192.0.2.11", .cls = "u"}, &a);
  assert_refused(a, 503, SL_REASON_BREAKER, "upstream/identity");
  assert_int_equal(ip_room(e, "connect", 0, "192.0.2.11", T0), 3);
  assert_int_equal(in_flight(e, "connect"), 0);
  env_free(e);
}

/* More limits on one route than the pipeline has scratch space for on
 * its stack (it used to keep eight): every one of them applies. */
static void test_many_limits_all_apply(void **st) {
  (void)st;
  char yaml[8192];
  int n = snprintf(yaml, sizeof(yaml),
                   "%sroutes:\n"
                   "  - name: connect\n"
                   "    match: { path_prefix: \"/\" }\n"
                   "    upstream: identity\n"
                   "    rate_limits:\n",
                   UPSTREAM);
  for (int i = 0; i < 11; i++)
    n += snprintf(yaml + n, sizeof(yaml) - (size_t)n,
                  "      - { name: l%d, key: route, rate: \"1/h\", burst: %d }\n", i,
                  i == 10 ? 2 : 100);
  struct env *e = env_load(yaml);
  struct sl_admission a;
  decide(e, &(struct req){0}, &a);
  assert_admitted(a);
  decide(e, &(struct req){0}, &a);
  assert_admitted(a);
  decide(e, &(struct req){0}, &a);
  assert_refused(a, 429, SL_REASON_RATE_LIMIT, "l10");
  env_free(e);
}

/* ---- shadow mode -------------------------------------------------- */

static const char SHADOW_BODY[] =
    "routes:\n"
    "  - name: connect\n"
    "    match: { path_prefix: \"/\" }\n"
    "    upstream: identity\n"
    "    rate_limits:\n"
    "      - { key: client_ip, rate: \"1/h\", burst: 2 }\n"
    "    concurrency: { max: 1 }\n"
    "blocklist:\n"
    "  firmware:\n"
    "    - { class: airtame-hub, versions: \"3.8.x\", reason: \"INC-2041\" }\n"
    "shaping:\n"
    "  - match: { path_prefix: \"/v1/shaped\" }\n"
    "    abort: { percent: 100, status: 418 }\n";

static void test_shadow_global(void **st) {
  (void)st;
  char yaml[4096];
  snprintf(yaml, sizeof(yaml), "%s%smode: shadow\n", UPSTREAM, SHADOW_BODY);
  struct env *e = env_load(yaml);
  struct sl_admission a, held;

  /* Blocked firmware: admitted, reported. */
  decide(e, &(struct req){.ip = "192.0.2.7", .cls = "airtame-hub", .fw = "3.8.2"}, &a);
  assert_admitted(a);
  assert_true(has_shadow(&a, SL_REASON_BLOCKLIST, "blocklist/firmware/0"));
  finish(&a, SL_OUTCOME_SUCCESS, T0);

  /* Over the rate limit: every request admitted, each third and later one
   * reported; a would-be-refused request consumes nothing. */
  decide(e, &(struct req){0}, &held);
  assert_admitted(held);
  assert_int_equal(held.n_shadow, 0);
  assert_non_null(held.conc); /* a real slot, so the counter stays honest */
  finish(&held, SL_OUTCOME_SUCCESS, T0);
  decide(e, &(struct req){0}, &held);
  assert_admitted(held);
  assert_int_equal(held.n_shadow, 0);
  /* |held| keeps the slot: the next ones would also meet a full route. */
  for (int i = 0; i < 20; i++) {
    decide(e, &(struct req){0}, &a);
    assert_admitted(a);
    assert_true(has_shadow(&a, SL_REASON_RATE_LIMIT, "connect/client_ip"));
    assert_true(has_shadow(&a, SL_REASON_CONCURRENCY, "connect/concurrency"));
    assert_null(a.conc); /* a shadow refusal holds no slot */
    finish(&a, SL_OUTCOME_SUCCESS, T0);
  }
  assert_int_equal(in_flight(e, "connect"), 1);
  finish(&held, SL_OUTCOME_SUCCESS, T0);
  assert_int_equal(in_flight(e, "connect"), 0);

  /* Open breaker: admitted, reported. */
  for (int i = 0; i < 3; i++) {
    decide(e, &(struct req){.ip = "192.0.2.30"}, &a);
    finish(&a, SL_OUTCOME_FAILURE, T0);
  }
  assert_int_equal(sl_breaker_state(breaker_of(e)), SL_BREAKER_OPEN);
  decide(e, &(struct req){.ip = "192.0.2.31"}, &a);
  assert_admitted(a);
  assert_true(has_shadow(&a, SL_REASON_BREAKER, "upstream/identity"));
  assert_null(a.breaker);
  finish(&a, SL_OUTCOME_SUCCESS, T0);
  assert_int_equal(in_flight(e, "connect"), 0);

  /* Shaping in shadow does not abort. */
  decide(e, &(struct req){.ip = "192.0.2.32", .path = "/v1/shaped"}, &a);
  assert_admitted(a);
  finish(&a, SL_OUTCOME_SUCCESS, T0);
  env_free(e);
}

static void test_shadow_per_policy(void **st) {
  (void)st;
  struct env *e = env_load(
      "upstreams:\n"
      "  identity:\n"
      "    address: \"127.0.0.1:18081\"\n"
      "routes:\n"
      "  - name: connect\n"
      "    match: { path_prefix: \"/\" }\n"
      "    upstream: identity\n"
      "    rate_limits:\n"
      "      - { key: client_ip, rate: \"1/h\", burst: 1, mode: shadow }\n"
      "      - { key: device_class, rate: \"1/h\", burst: 3 }\n"
      "    concurrency: { max: 1, mode: shadow }\n"
      "blocklist:\n"
      "  firmware:\n"
      "    - { class: hub, versions: \"<2.0\", reason: \"watching\", mode: shadow }\n"
      "    - { class: hub, versions: \"=1.0.0\", reason: \"INC-1\" }\n");
  struct sl_admission a, b, c;
  /* The shadow entry reports, the enforcing one refuses. */
  decide(e, &(struct req){.ip = "192.0.2.200", .cls = "hub", .fw = "1.5"}, &a);
  assert_admitted(a);
  assert_true(has_shadow(&a, SL_REASON_BLOCKLIST, "blocklist/firmware/0"));
  finish(&a, SL_OUTCOME_SUCCESS, T0);
  decide(e, &(struct req){.ip = "192.0.2.200", .cls = "hub", .fw = "1.0.0"}, &a);
  assert_refused(a, 403, SL_REASON_BLOCKLIST, "blocklist/firmware/1");
  assert_string_equal(a.block->reason, "INC-1");

  /* client_ip (shadow, burst 1) only reports; device_class (enforcing,
   * burst 3) refuses the fourth request of the class. */
  decide(e, &(struct req){.cls = "cam"}, &a);
  assert_admitted(a);
  assert_int_equal(a.n_shadow, 0);
  decide(e, &(struct req){.cls = "cam"}, &b); /* concurrency full: shadow */
  assert_admitted(b);
  assert_true(has_shadow(&b, SL_REASON_RATE_LIMIT, "connect/client_ip"));
  assert_true(has_shadow(&b, SL_REASON_CONCURRENCY, "connect/concurrency"));
  decide(e, &(struct req){.cls = "cam"}, &c);
  assert_admitted(c);
  finish(&a, SL_OUTCOME_SUCCESS, T0);
  finish(&b, SL_OUTCOME_SUCCESS, T0);
  finish(&c, SL_OUTCOME_SUCCESS, T0);
  decide(e, &(struct req){.cls = "cam"}, &a);
  assert_refused(a, 429, SL_REASON_RATE_LIMIT, "connect/device_class");
  assert_int_equal(in_flight(e, "connect"), 0);
  env_free(e);
}

/* A policy's own `mode: enforce` wins over the global shadow mode. */
static void test_enforce_under_global_shadow(void **st) {
  (void)st;
  struct env *e = env_load(
      "upstreams:\n"
      "  identity:\n"
      "    address: \"127.0.0.1:18081\"\n"
      "routes:\n"
      "  - name: connect\n"
      "    match: { path_prefix: \"/\" }\n"
      "    upstream: identity\n"
      "    rate_limits:\n"
      "      - { key: client_ip, rate: \"1/h\", burst: 1, mode: enforce }\n"
      "      - { key: route, rate: \"1/h\", burst: 1 }\n"
      "mode: shadow\n");
  struct sl_admission a;
  decide(e, &(struct req){0}, &a);
  assert_admitted(a);
  decide(e, &(struct req){.ip = "192.0.2.2"}, &a);
  assert_admitted(a); /* the route limit only reports */
  assert_true(has_shadow(&a, SL_REASON_RATE_LIMIT, "connect/route"));
  decide(e, &(struct req){0}, &a);
  assert_refused(a, 429, SL_REASON_RATE_LIMIT, "connect/client_ip");
  env_free(e);
}

/* ---- device classes ----------------------------------------------- */

static const char CLASS_CFG[] =
    "upstreams:\n"
    "  identity:\n"
    "    address: \"127.0.0.1:18081\"\n"
    "routes:\n"
    "  - name: connect\n"
    "    match: { path_prefix: \"/\" }\n"
    "    upstream: identity\n"
    "    rate_limits:\n"
    "      - key: device_class\n"
    "        rate: \"1/h\"\n"
    "        burst: 2\n"
    "        override: { airtame-hub: { rate: \"1/h\", burst: 5 }, homey: \"1/s\" }\n";

static int burst_of(struct env *e, const char *cls, uint64_t now) {
  int n = 0;
  struct sl_admission a;
  for (int i = 0; i < 100; i++) {
    decide(e, &(struct req){.cls = cls, .ip = "192.0.2.99", .now = now}, &a);
    if (!a.admit) {
      assert_refused(a, 429, SL_REASON_RATE_LIMIT, "connect/device_class");
      break;
    }
    n++;
  }
  return n;
}

static void test_device_class_overrides(void **st) {
  (void)st;
  struct env *e = env_load(CLASS_CFG);
  assert_int_equal(burst_of(e, "airtame-hub", T0), 5); /* override rate and burst */
  assert_int_equal(burst_of(e, "homey", T0), 2);       /* override rate, policy's burst */
  assert_int_equal(burst_of(e, "other", T0), 2);       /* the policy */
  assert_int_equal(burst_of(e, "Homey", T0), 2);       /* exact match only */
  /* homey's rate is 1/s: one more a second later; "other" stays at 1/h. */
  assert_int_equal(burst_of(e, "homey", T0 + SEC), 1);
  assert_int_equal(burst_of(e, "other", T0 + SEC), 0);
  assert_int_equal(burst_of(e, "airtame-hub", T0 + SEC), 0);
  env_free(e);
}

static void test_no_class_skips_class_limiter(void **st) {
  (void)st;
  struct env *e = env_load(CLASS_CFG);
  struct sl_admission a;
  for (int i = 0; i < 50; i++) {
    decide(e, &(struct req){0}, &a);
    assert_admitted(a);
    assert_int_equal(a.n_shadow, 0);
  }
  /* An empty header value is no class either. */
  for (int i = 0; i < 10; i++) {
    decide(e, &(struct req){.cls = "  "}, &a);
    assert_admitted(a);
  }
  assert_int_equal(sl_ratelimit_keys(table_of(e, "connect", 0)), 0);
  env_free(e);
}

/* ---- retry-after -------------------------------------------------- */

static struct env *retry_env(const char *reject) {
  char yaml[2048];
  snprintf(yaml, sizeof(yaml),
           "upstreams:\n"
           "  identity:\n"
           "    address: \"127.0.0.1:18081\"\n"
           "routes:\n"
           "  - name: connect\n"
           "    match: { path_prefix: \"/\" }\n"
           "    upstream: identity\n"
           "    rate_limits:\n"
           "      - { key: client_ip, rate: \"1/m\", burst: 1 }\n"
           "reject:\n"
           "  retry_after: %s\n",
           reject);
  struct env *e = env_load(yaml);
  struct sl_admission a;
  decide(e, &(struct req){0}, &a);
  assert_admitted(a);
  return e;
}

static uint32_t refused_after(struct env *e, uint64_t now, uint64_t rnd) {
  struct sl_admission a;
  decide(e, &(struct req){.now = now, .rnd = rnd}, &a);
  assert_refused(a, 429, SL_REASON_RATE_LIMIT, "connect/client_ip");
  return a.retry_after_s;
}

static void test_retry_after_from_limiter_wait(void **st) {
  (void)st;
  struct env *e = retry_env("{ min: 1s, max: 120s, jitter: 0 }");
  /* 1/m, burst 1, one request taken at T0: admits again at T0 + 60 s. */
  assert_int_equal(refused_after(e, T0, 0), 60);
  assert_int_equal(refused_after(e, T0 + 30 * SEC, ~0ull), 30);
  assert_int_equal(refused_after(e, T0 + 30 * SEC + 500 * MS, 0), 30); /* 29.5 s: up */
  assert_int_equal(refused_after(e, T0 + 59 * SEC + 1, 0), 1);
  env_free(e);

  e = retry_env("{ min: 5s, max: 20s, jitter: 0 }");
  assert_int_equal(refused_after(e, T0, 0), 20);               /* clamped to max */
  assert_int_equal(refused_after(e, T0 + 58 * SEC, 0), 5);     /* raised to min */
  env_free(e);
}

static void test_retry_after_jitter_spread(void **st) {
  (void)st;
  struct env *e = retry_env("{ min: 1s, max: 120s, jitter: 0.5 }");
  uint64_t x = 0x9e3779b97f4a7c15ull;
  uint32_t lo = UINT32_MAX, hi = 0;
  bool seen[121] = {0};
  for (int i = 0; i < 2000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    uint32_t r = refused_after(e, T0 + 20 * SEC, x); /* waits 40 s */
    assert_in_range(r, 40, 60);                       /* [base, base * 1.5] */
    seen[r] = true;
    if (r < lo) lo = r;
    if (r > hi) hi = r;
  }
  assert_int_equal(lo, 40);
  assert_int_equal(hi, 60);
  int distinct = 0;
  for (int i = 0; i <= 120; i++) distinct += seen[i];
  assert_int_equal(distinct, 21);
  /* Within [min, max] even when the wait is longer than max. */
  env_free(e);
  e = retry_env("{ min: 2s, max: 10s, jitter: 0.5 }");
  for (int i = 0; i < 500; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    assert_in_range(refused_after(e, T0, x), 2, 10);
    assert_in_range(refused_after(e, T0 + 59 * SEC, x), 2, 10);
  }
  env_free(e);
}

/* ---- concurrency -------------------------------------------------- */

static void test_concurrency_released_once(void **st) {
  (void)st;
  struct env *e = env_load(
      "upstreams:\n"
      "  identity:\n"
      "    address: \"127.0.0.1:18081\"\n"
      "routes:\n"
      "  - name: connect\n"
      "    match: { path_prefix: \"/\" }\n"
      "    upstream: identity\n"
      "    concurrency: { max: 2 }\n"
      "reject:\n"
      "  retry_after: { min: 3s, max: 120s, jitter: 0 }\n");
  struct sl_admission a, b, c;
  decide(e, &(struct req){0}, &a);
  assert_admitted(a);
  decide(e, &(struct req){0}, &b);
  assert_admitted(b);
  assert_int_equal(in_flight(e, "connect"), 2);
  decide(e, &(struct req){0}, &c);
  assert_refused(c, 429, SL_REASON_CONCURRENCY, "connect/concurrency");
  assert_string_equal(c.error, "concurrency_limited");
  assert_int_equal(c.retry_after_s, 3); /* no wait known: the minimum */

  finish(&a, SL_OUTCOME_SUCCESS, T0);
  assert_int_equal(in_flight(e, "connect"), 1);
  finish(&a, SL_OUTCOME_SUCCESS, T0); /* idempotent */
  finish(&a, SL_OUTCOME_FAILURE, T0);
  assert_int_equal(in_flight(e, "connect"), 1);
  assert_true(a.finished);
  assert_null(a.conc);

  decide(e, &(struct req){0}, &c);
  assert_admitted(c);
  assert_int_equal(in_flight(e, "connect"), 2);
  finish(&b, SL_OUTCOME_SUCCESS, T0);
  finish(&c, SL_OUTCOME_CANCELLED, T0);
  finish(&c, SL_OUTCOME_CANCELLED, T0);
  assert_int_equal(in_flight(e, "connect"), 0);
  env_free(e);
}

/* ---- circuit breaker ---------------------------------------------- */

static const char BREAKER_CFG[] =
    "routes:\n"
    "  - name: connect\n"
    "    match: { path_prefix: \"/\" }\n"
    "    upstream: identity\n"
    "    concurrency: { max: 100 }\n"
    "reject:\n"
    "  retry_after: { min: 1s, max: 120s, jitter: 0 }\n";

static void test_breaker_via_finish(void **st) {
  (void)st;
  char yaml[4096];
  snprintf(yaml, sizeof(yaml), "%s%s", UPSTREAM, BREAKER_CFG);
  struct env *e = env_load(yaml);
  struct sl_admission a;
  /* Two failures, a success (resets the run), three failures. */
  enum sl_outcome seq[] = {SL_OUTCOME_FAILURE, SL_OUTCOME_FAILURE, SL_OUTCOME_SUCCESS,
                           SL_OUTCOME_CANCELLED, SL_OUTCOME_FAILURE, SL_OUTCOME_FAILURE};
  for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
    decide(e, &(struct req){0}, &a);
    assert_admitted(a);
    assert_non_null(a.breaker);
    finish(&a, seq[i], T0);
    assert_int_equal(sl_breaker_state(breaker_of(e)), SL_BREAKER_CLOSED);
  }
  decide(e, &(struct req){0}, &a);
  assert_admitted(a);
  finish(&a, SL_OUTCOME_FAILURE, T0 + 1 * SEC);
  finish(&a, SL_OUTCOME_FAILURE, T0 + 1 * SEC); /* once only */
  assert_int_equal(sl_breaker_state(breaker_of(e)), SL_BREAKER_OPEN);

  /* Open for 5 s from T0 + 1 s: refused, 503, retry-after from open_for. */
  decide(e, &(struct req){.now = T0 + 2 * SEC}, &a);
  assert_refused(a, 503, SL_REASON_BREAKER, "upstream/identity");
  assert_string_equal(a.error, "circuit_open");
  assert_int_equal(a.retry_after_s, 4);
  assert_null(a.conc);
  assert_int_equal(in_flight(e, "connect"), 0);

  /* Half-open at T0 + 6 s: one probe; a second request waits for it. */
  struct sl_admission probe;
  decide(e, &(struct req){.now = T0 + 6 * SEC}, &probe);
  assert_admitted(probe);
  assert_true(probe.breaker_verdict.probe);
  decide(e, &(struct req){.now = T0 + 6 * SEC}, &a);
  assert_refused(a, 503, SL_REASON_BREAKER, "upstream/identity");
  finish(&probe, SL_OUTCOME_SUCCESS, T0 + 6 * SEC);
  assert_int_equal(sl_breaker_state(breaker_of(e)), SL_BREAKER_CLOSED);
  decide(e, &(struct req){.now = T0 + 6 * SEC}, &a);
  assert_admitted(a);
  finish(&a, SL_OUTCOME_SUCCESS, T0 + 6 * SEC);
  assert_int_equal(in_flight(e, "connect"), 0);
  env_free(e);
}

/* The data plane reports the outcome when the response head arrives
 * (sl_breaker_report) and releases the slot when the exchange ends. */
static void test_breaker_via_report(void **st) {
  (void)st;
  char yaml[4096];
  snprintf(yaml, sizeof(yaml), "%s%s", UPSTREAM, BREAKER_CFG);
  struct env *e = env_load(yaml);
  struct sl_admission a;
  for (int i = 0; i < 3; i++) {
    decide(e, &(struct req){0}, &a);
    assert_admitted(a);
    sl_breaker_report(a.breaker, &a.breaker_verdict, SL_OUTCOME_FAILURE, MS, T0);
    a.breaker = NULL; /* as sl_stream_outcome() does */
    assert_int_equal(in_flight(e, "connect"), 1);
    finish(&a, SL_OUTCOME_CANCELLED, T0);
    assert_int_equal(in_flight(e, "connect"), 0);
  }
  assert_int_equal(sl_breaker_state(breaker_of(e)), SL_BREAKER_OPEN);
  decide(e, &(struct req){.now = T0 + SEC}, &a);
  assert_refused(a, 503, SL_REASON_BREAKER, "upstream/identity");
  assert_int_equal(a.retry_after_s, 4);
  env_free(e);
}

/* ---- shaping ------------------------------------------------------ */

static void test_shaping(void **st) {
  (void)st;
  char yaml[4096];
  snprintf(yaml, sizeof(yaml),
           "%s"
           "routes:\n"
           "  - name: connect\n"
           "    match: { path_prefix: \"/\" }\n"
           "    upstream: identity\n"
           "    rate_limits:\n"
           "      - { key: client_ip, rate: \"1/h\", burst: 1 }\n"
           "    concurrency: { max: 1 }\n"
           "shaping:\n"
           "  - match: { path_prefix: \"/v1/abort\" }\n"
           "    delay: { fixed: 200ms }\n"
           "    abort: { percent: 100, status: 418 }\n"
           "  - match: { path_prefix: \"/v1/never\" }\n"
           "    abort: { percent: 0, status: 500 }\n"
           "  - match: { path_prefix: \"/v1/delay\" }\n"
           "    delay: { fixed: 200ms }\n"
           "  - match: { path_prefix: \"/v1/jitter\" }\n"
           "    delay: { fixed: 200ms, jitter: 50ms }\n",
           UPSTREAM);
  struct env *e = env_load(yaml);
  struct sl_admission a;
  uint64_t x = 12345;
  for (int i = 0; i < 200; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    decide(e, &(struct req){.path = "/v1/abort", .rnd = x}, &a);
    assert_refused(a, 418, SL_REASON_SHAPING, "shaping/0");
    assert_string_equal(a.error, "shaped_abort");
    assert_null(a.conc);
    assert_null(a.breaker);
  }
  /* Aborted requests held no slot, no probe, and took no quota. */
  assert_int_equal(in_flight(e, "connect"), 0);
  assert_int_equal(ip_room(e, "connect", 0, "192.0.2.1", T0), 1);

  decide(e, &(struct req){.path = "/v1/never", .ip = "192.0.2.2", .rnd = 0}, &a);
  assert_admitted(a);
  assert_int_equal(a.delay_ms, 0);
  finish(&a, SL_OUTCOME_SUCCESS, T0);
  decide(e, &(struct req){.path = "/v1/delay", .ip = "192.0.2.3", .rnd = ~0ull}, &a);
  assert_admitted(a);
  assert_int_equal(a.delay_ms, 200);
  finish(&a, SL_OUTCOME_SUCCESS, T0);
  for (int i = 0; i < 100; i++) {
    char ip[32];
    snprintf(ip, sizeof(ip), "192.0.2.%d", 100 + i);
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    decide(e, &(struct req){.path = "/v1/jitter", .ip = ip, .rnd = x}, &a);
    assert_admitted(a);
    assert_in_range(a.delay_ms, 200, 250);
    finish(&a, SL_OUTCOME_SUCCESS, T0);
  }
  env_free(e);
}

/* ---- accounting: commit rollback, whole keys ------------------------ */

static const char COMMIT_CFG[] =
    "routes:\n"
    "  - name: connect\n"
    "    match: { path_prefix: \"/v1/connect\" }\n"
    "    upstream: identity\n"
    "    rate_limits:\n"
    "      - { name: loose, key: client_ip, rate: \"1/m\", burst: 5 }\n"
    "      - { name: tight, key: client_ip, rate: \"1/m\", burst: 1 }\n";

/* A limit that refuses at commit (after every limit admitted on look) gives
 * back what the limits before it were charged. Made deterministic by
 * sharing one table between the two limits: the first one's commit then
 * takes the token the second one's look saw, as a racing worker would. */
static void test_commit_refusal_rolls_back(void **st) {
  (void)st;
  char yaml[4096];
  snprintf(yaml, sizeof(yaml), "%s%s", UPSTREAM, COMMIT_CFG);
  struct env *e = env_load(yaml);
  struct sl_route_state *r = &e->ps->routes[route_named(e, "connect") - e->cfg->routes];
  struct sl_policy_state *own = r->rate_limits[1];
  r->rate_limits[1] = sl_policy_state_ref(r->rate_limits[0]);

  struct sl_admission a;
  decide(e, &(struct req){0}, &a);
  /* loose charged the shared key (TAT = now + 1m); tight (burst 1) then
   * refuses at commit. */
  assert_refused(a, 429, SL_REASON_RATE_LIMIT, "tight");
  /* The refused request consumed nothing: the key is full again. */
  assert_int_equal(ip_room(e, "connect", 0, "192.0.2.1", T0), 5);
  decide(e, &(struct req){0}, &a);
  assert_refused(a, 429, SL_REASON_RATE_LIMIT, "tight");
  assert_int_equal(ip_room(e, "connect", 0, "192.0.2.1", T0), 5);

  sl_policy_state_unref(r->rate_limits[1]);
  r->rate_limits[1] = own;
  env_free(e);
}

static const char SHAPED_CAP_CFG[] =
    "routes:\n"
    "  - name: connect\n"
    "    match: { path_prefix: \"/v1/connect\" }\n"
    "    upstream: identity\n"
    "    rate_limits:\n"
    "      - { name: loose, key: client_ip, rate: \"1/m\", burst: 5 }\n"
    "      - { name: tight, key: client_ip, rate: \"1/m\", burst: 1 }\n"
    "shaping:\n"
    "  - match: { path_prefix: \"/v1/connect\" }\n"
    "    rate: \"1/m\"\n";

/* The shaping rate cap, charged before the limits commit, is given back
 * too when a limit refuses at commit. */
static void test_commit_refusal_refunds_shaping_cap(void **st) {
  (void)st;
  char yaml[4096];
  snprintf(yaml, sizeof(yaml), "%s%s", UPSTREAM, SHAPED_CAP_CFG);
  struct env *e = env_load(yaml);
  struct sl_route_state *r = &e->ps->routes[route_named(e, "connect") - e->cfg->routes];
  struct sl_policy_state *own = r->rate_limits[1];
  r->rate_limits[1] = sl_policy_state_ref(r->rate_limits[0]);
  struct sl_admission a;
  decide(e, &(struct req){0}, &a);
  assert_refused(a, 429, SL_REASON_RATE_LIMIT, "tight");
  /* The cap (one request a minute) is untouched: with the limits back to
   * their own tables, the next request passes it. */
  sl_policy_state_unref(r->rate_limits[1]);
  r->rate_limits[1] = own;
  decide(e, &(struct req){0}, &a);
  assert_admitted(a);
  finish(&a, SL_OUTCOME_SUCCESS, T0);
  env_free(e);
}

static const char DEVICE_ID_CFG[] =
    "routes:\n"
    "  - name: connect\n"
    "    match: { path_prefix: \"/v1/connect\" }\n"
    "    upstream: identity\n"
    "    rate_limits:\n"
    "      - { key: device_id, rate: \"1/m\", burst: 1 }\n";

/* Device ids (or tokens) that share their first 64 bytes or more are
 * different keys: all of the key is significant. */
static void test_long_device_ids_distinct(void **st) {
  (void)st;
  char yaml[4096];
  snprintf(yaml, sizeof(yaml), "%s%s", UPSTREAM, DEVICE_ID_CFG);
  struct env *e = env_load(yaml);
  char a_id[300], b_id[300];
  memset(a_id, 'd', 299);
  a_id[299] = '\0';
  memcpy(b_id, a_id, sizeof(a_id));
  b_id[64] = 'e';
  struct sl_admission a;
  decide(e, &(struct req){.dev = a_id}, &a);
  assert_admitted(a);
  finish(&a, SL_OUTCOME_SUCCESS, T0);
  decide(e, &(struct req){.dev = a_id}, &a);
  assert_refused(a, 429, SL_REASON_RATE_LIMIT, "connect/device_id");
  decide(e, &(struct req){.dev = b_id}, &a);
  assert_admitted(a);
  finish(&a, SL_OUTCOME_SUCCESS, T0);
  b_id[64] = 'd';
  b_id[298] = 'z'; /* differs in the last byte only */
  decide(e, &(struct req){.dev = b_id}, &a);
  assert_admitted(a);
  finish(&a, SL_OUTCOME_SUCCESS, T0);
  env_free(e);
}


/* ---- new_keys: rotating a chosen key costs new-key tokens ----------- */

static const char NEW_KEYS_CFG[] =
    "routes:\n"
    "  - name: connect\n"
    "    match: { path_prefix: \"/v1/connect\" }\n"
    "    upstream: identity\n"
    "    rate_limits:\n"
    "      - { key: device_id, rate: \"2/s\", burst: 2,\n"
    "          new_keys: { per: client_ip, rate: \"20/m\", burst: 3 } }\n"
    "reject:\n"
    "  retry_after: { min: 1s, max: 120s, jitter: 0 }\n";

static char *dev_name(char *buf, size_t n, unsigned i) {
  snprintf(buf, n, "token-%u", i);
  return buf;
}

/* One admitted request at T0 from the default address for each device id
 * (one letter each) of |ids|. */
static void admit_new_ids(struct env *e, const char *ids) {
  for (; *ids; ids++) {
    char id[2] = {*ids, 0};
    struct sl_admission a;
    decide(e, &(struct req){.dev = id}, &a);
    assert_admitted(a);
    finish(&a, SL_OUTCOME_SUCCESS, T0);
  }
}

/* The attack of the issue: a new device id (an Authorization token) per
 * request from one address. Each id has a full bucket, so only the cap on
 * new keys per address holds it: burst 3, then one per 3 s (20/m). */
static void test_new_keys_stop_key_rotation(void **st) {
  (void)st;
  char yaml[4096], id[32];
  snprintf(yaml, sizeof(yaml), "%s%s", UPSTREAM, NEW_KEYS_CFG);
  struct env *e = env_load(yaml);
  struct sl_admission a;
  unsigned admitted = 0;
  for (unsigned i = 0; i < 100; i++) {
    decide(e, &(struct req){.dev = dev_name(id, sizeof(id), i)}, &a);
    if (a.admit) {
      admitted++;
      finish(&a, SL_OUTCOME_SUCCESS, T0);
    } else {
      assert_refused(a, 429, SL_REASON_RATE_LIMIT, "connect/device_id/new_keys");
      assert_string_equal(a.error, "rate_limited");
      assert_int_equal(a.retry_after_s, 3); /* the address's own bucket: one key per 3 s */
    }
  }
  assert_int_equal(admitted, 3);
  /* 3 s later the address has one new key again, and only one. */
  decide(e, &(struct req){.dev = "token-500", .now = T0 + 3 * SEC}, &a);
  assert_admitted(a);
  finish(&a, SL_OUTCOME_SUCCESS, T0 + 3 * SEC);
  decide(e, &(struct req){.dev = "token-501", .now = T0 + 3 * SEC}, &a);
  assert_refused(a, 429, SL_REASON_RATE_LIMIT, "connect/device_id/new_keys");
  /* Another address has a budget of its own. */
  decide(e, &(struct req){.dev = "token-502", .ip = "192.0.2.9", .now = T0 + 3 * SEC}, &a);
  assert_admitted(a);
  finish(&a, SL_OUTCOME_SUCCESS, T0 + 3 * SEC);
  env_free(e);
}

/* A device that keeps its id is not charged again while its bucket is
 * in use; a refused new key consumes nothing of its own bucket. */
static void test_new_keys_known_key_is_free(void **st) {
  (void)st;
  char yaml[4096];
  snprintf(yaml, sizeof(yaml), "%s%s", UPSTREAM, NEW_KEYS_CFG);
  struct env *e = env_load(yaml);
  struct sl_admission a;
  admit_new_ids(e, "abc"); /* the address's three new keys */
  decide(e, &(struct req){.dev = "d"}, &a);
  assert_refused(a, 429, SL_REASON_RATE_LIMIT, "connect/device_id/new_keys");
  /* "a" is a known key (its bucket is not full): its second request is
   * its own limit's business only. Its third is over 2/s burst 2. */
  decide(e, &(struct req){.dev = "a"}, &a);
  assert_admitted(a);
  finish(&a, SL_OUTCOME_SUCCESS, T0);
  decide(e, &(struct req){.dev = "a"}, &a);
  assert_refused(a, 429, SL_REASON_RATE_LIMIT, "connect/device_id");
  /* "d" was refused before its own bucket was charged: when the address
   * has a new key again, "d" starts with its whole burst of 2. */
  uint64_t t = T0 + 3 * SEC;
  decide(e, &(struct req){.dev = "d", .now = t}, &a);
  assert_admitted(a);
  finish(&a, SL_OUTCOME_SUCCESS, t);
  decide(e, &(struct req){.dev = "d", .now = t}, &a);
  assert_admitted(a);
  finish(&a, SL_OUTCOME_SUCCESS, t);
  /* A key that has rested a whole bucket (1 s at 2/s burst 2) is new
   * again: "b" and "c" have, and the address has no new key left. */
  decide(e, &(struct req){.dev = "b", .now = t}, &a);
  assert_refused(a, 429, SL_REASON_RATE_LIMIT, "connect/device_id/new_keys");
  env_free(e);
}

static const char NEW_KEYS_TWO_CFG[] =
    "routes:\n"
    "  - name: connect\n"
    "    match: { path_prefix: \"/v1/connect\" }\n"
    "    upstream: identity\n"
    "    rate_limits:\n"
    "      - { name: one, key: device_id, rate: \"2/s\", burst: 2,\n"
    "          new_keys: { rate: \"1/m\", burst: 1 } }\n"
    "      - { name: two, key: device_id, rate: \"2/s\", burst: 2,\n"
    "          new_keys: { rate: \"1/m\", burst: 1 } }\n";

/* Two limits whose new-key caps share one table (as if another worker
 * took the address's last new key between look and commit): the second
 * refuses at commit, and every charge made before it, the first cap's
 * included, is given back. */
static void test_new_keys_commit_refusal_refunds(void **st) {
  (void)st;
  char yaml[4096];
  snprintf(yaml, sizeof(yaml), "%s%s", UPSTREAM, NEW_KEYS_TWO_CFG);
  struct env *e = env_load(yaml);
  struct sl_route_state *r = &e->ps->routes[route_named(e, "connect") - e->cfg->routes];
  assert_non_null(r->new_keys[0]);
  struct sl_policy_state *own = r->new_keys[1];
  r->new_keys[1] = sl_policy_state_ref(r->new_keys[0]);
  struct sl_admission a;
  decide(e, &(struct req){.dev = "x"}, &a);
  assert_refused(a, 429, SL_REASON_RATE_LIMIT, "two/new_keys");
  decide(e, &(struct req){.dev = "x"}, &a);
  assert_refused(a, 429, SL_REASON_RATE_LIMIT, "two/new_keys"); /* not "one/new_keys" */
  sl_policy_state_unref(r->new_keys[1]);
  r->new_keys[1] = own;
  /* Nothing was kept: both limits' buckets of "x" and the first cap are
   * whole (burst 2 of "x" twice, without a new key for the second). */
  decide(e, &(struct req){.dev = "x"}, &a);
  assert_admitted(a);
  finish(&a, SL_OUTCOME_SUCCESS, T0);
  decide(e, &(struct req){.dev = "x"}, &a);
  assert_admitted(a);
  finish(&a, SL_OUTCOME_SUCCESS, T0);
  env_free(e);
}

/* A reload that keeps the limit keeps what each address has used. */
static void test_new_keys_survive_reload(void **st) {
  (void)st;
  char yaml[4096];
  snprintf(yaml, sizeof(yaml), "%s%s", UPSTREAM, NEW_KEYS_CFG);
  struct env *e = env_load(yaml);
  struct sl_admission a;
  admit_new_ids(e, "abc");
  struct env *e2 = env_load(yaml);
  struct sl_policy_set *fresh_set = e2->ps;
  e2->ps = sl_policy_set_new(e2->cfg, e->ps, T0);
  assert_non_null(e2->ps);
  sl_policy_set_del(fresh_set);
  decide(e2, &(struct req){.dev = "d"}, &a);
  assert_refused(a, 429, SL_REASON_RATE_LIMIT, "connect/device_id/new_keys");
  env_free(e2);
  env_free(e);
}

/* ---- the crowd an open breaker refuses ------------------------------ */

static const char BREAKER_SPREAD_CFG[] =
    "routes:\n"
    "  - name: connect\n"
    "    match: { path_prefix: \"/\" }\n"
    "    upstream: identity\n"
    "reject:\n"
    "  retry_after: { min: 1s, max: 120s, jitter: 0, spread: %s }\n";

/* Opens the breaker at T0 after it served 100 successes in its window:
 * 9 whole slots of 1 s and none of the current one have passed (T0 is a
 * whole second), so it learns one success every 90 ms. */
static struct env *breaker_opened(const char *spread) {
  char body[1024], yaml[4096];
  snprintf(body, sizeof(body), BREAKER_SPREAD_CFG, spread);
  snprintf(yaml, sizeof(yaml), "%s%s", UPSTREAM, body);
  struct env *e = env_load(yaml);
  struct sl_admission a;
  for (int i = 0; i < 103; i++) {
    decide(e, &(struct req){0}, &a);
    assert_admitted(a);
    finish(&a, i < 100 ? SL_OUTCOME_SUCCESS : SL_OUTCOME_FAILURE, T0);
  }
  assert_int_equal(sl_breaker_state(breaker_of(e)), SL_BREAKER_OPEN);
  return e;
}

/* 200 clients refused at T0 + 1 s (half-open in 4 s). spread: backlog
 * gives each the next 90 ms slot from then: values from 4 s to
 * ceil(4 + 200 x 0.09) = 22 s, and a whole second n to at most
 * ceil(1 s / 90 ms) + 1 = 13 clients, as many as the upstream served in a
 * second. spread: window tells all of them 4 (jitter 0). */
static void test_breaker_spreads_its_crowd(void **st) {
  (void)st;
  struct env *e = breaker_opened("backlog");
  unsigned told[130] = {0};
  struct sl_admission a;
  for (uint64_t i = 0; i < 200; i++) {
    decide(e, &(struct req){.now = T0 + 1 * SEC, .rnd = i * 0x9E3779B97F4A7C15ull}, &a);
    assert_refused(a, 503, SL_REASON_BREAKER, "upstream/identity");
    assert_true(a.retry_after_s >= 4 && a.retry_after_s <= 22);
    told[a.retry_after_s]++;
  }
  for (unsigned n = 0; n < 130; n++) assert_true(told[n] <= 13);
  assert_true(told[22] + told[21] > 0); /* the crowd reaches the far end */
  env_free(e);

  e = breaker_opened("window");
  for (uint64_t i = 0; i < 200; i++) {
    decide(e, &(struct req){.now = T0 + 1 * SEC, .rnd = i * 0x9E3779B97F4A7C15ull}, &a);
    assert_refused(a, 503, SL_REASON_BREAKER, "upstream/identity");
    assert_int_equal(a.retry_after_s, 4);
  }
  env_free(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_order),
      cmocka_unit_test(test_refused_consumes_nothing),
      cmocka_unit_test(test_many_limits_all_apply),
      cmocka_unit_test(test_shadow_global),
      cmocka_unit_test(test_shadow_per_policy),
      cmocka_unit_test(test_enforce_under_global_shadow),
      cmocka_unit_test(test_device_class_overrides),
      cmocka_unit_test(test_no_class_skips_class_limiter),
      cmocka_unit_test(test_retry_after_from_limiter_wait),
      cmocka_unit_test(test_retry_after_jitter_spread),
      cmocka_unit_test(test_concurrency_released_once),
      cmocka_unit_test(test_breaker_via_finish),
      cmocka_unit_test(test_breaker_via_report),
      cmocka_unit_test(test_shaping),
      cmocka_unit_test(test_commit_refusal_rolls_back),
      cmocka_unit_test(test_commit_refusal_refunds_shaping_cap),
      cmocka_unit_test(test_long_device_ids_distinct),
      cmocka_unit_test(test_new_keys_stop_key_rotation),
      cmocka_unit_test(test_new_keys_known_key_is_free),
      cmocka_unit_test(test_new_keys_commit_refusal_refunds),
      cmocka_unit_test(test_new_keys_survive_reload),
      cmocka_unit_test(test_breaker_spreads_its_crowd),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
