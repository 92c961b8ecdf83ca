/* Unit tests for policies/blocklist_net.c and blocklist_stage.c: the
 * client_ip and device_id lists (compiled from YAML through
 * sl_config_load, as the binary reads it), their parse errors at
 * LINE:COL, the printed form, and the blocklist stage of admission. */
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
#include <sys/socket.h>

#include "sluice/admission.h"
#include "sluice/blocklist.h"
#include "sluice/config.h"
#include "sluice/identify.h"
#include "sluice/policy_state.h"
#include "sluice/retry.h"
#include "sluice/route.h"
#include "sluice/version.h"
#include "admission_env.h"

#define UNIX0 ((int64_t)1750000000) /* fake wall clock: 2025-06-15T15:06:40Z */

static const char HEAD[] =
    "listeners:\n"
    "  - name: public\n"
    "    address: \"127.0.0.1:18080\"\n"
    "upstreams:\n"
    "  identity: { address: \"127.0.0.1:18081\" }\n"
    "identify: {device_class: {header: x-device-class}, firmware: {header: x-firmware-version},\n"
    "           device_id: {header: x-device-id}}\n"
    "routes:\n"
    "  - name: default\n"
    "    match: { path_prefix: \"/\" }\n"
    "    upstream: identity\n"
    "reject:\n"
    "  retry_after: { min: 1s, max: 120s, jitter: 0 }\n";

static struct env *env_load(const char *body) { return env_load_with(HEAD, body); }

/* |text| as (family, 16 bytes). */
static uint8_t addr_of(const char *text, uint8_t a[16]) {
  memset(a, 0, 16);
  if (inet_pton(AF_INET, text, a) == 1) return AF_INET;
  assert_int_equal(inet_pton(AF_INET6, text, a), 1);
  return AF_INET6;
}

static void check_ip(const struct env *e, const char *ip, const char *cls, int64_t now,
                     struct sl_block_verdict *v) {
  uint8_t a[16];
  uint8_t fam = addr_of(ip, a);
  sl_blocklist_check_addr(e->bl, fam, a, cls, cls ? strlen(cls) : 0, now, v);
}

static const char *name_of(const struct sl_block_entry *e) { return e ? e->name : NULL; }

/* ---- client_ip ------------------------------------------------------ */

static const char IPS[] =
    "blocklist:\n"
    "  client_ip:\n"
    "    - name: old-ban\n"
    "      cidrs: [203.0.113.0/24]\n"
    "      expires: \"2025-01-01T00:00:00Z\"\n"
    "    - name: watch\n"
    "      cidrs: [\"203.0.113.0/25\", \"2001:db8:bad::/48\"]\n"
    "      mode: shadow\n"
    "    - name: spam-source-002\n"
    "      cidrs: [203.0.113.0/24, \"2001:db8:bad::/48\"]\n"
    "      status: 429\n"
    "    - name: wide\n"
    "      cidrs: [203.0.0.0/16]\n"
    "    - name: hubs-only\n"
    "      cidrs: [198.51.100.7]\n"
    "      class: airtame-hub\n";

static void test_ip_first_live_entry_decides(void **st) {
  (void)st;
  struct env *e = env_load(IPS);
  struct sl_block_verdict v;
  /* Covered by all of the first four: the expired one is skipped (and
   * reported as lapsed), the shadow one reported, spam-source decides. */
  check_ip(e, "203.0.113.9", NULL, UNIX0, &v);
  assert_true(v.deny);
  assert_int_equal(v.status, 429);
  assert_string_equal(v.entry->label, "blocklist/client_ip/spam-source-002");
  assert_string_equal(name_of(v.lapsed), "old-ban");
  /* Before old-ban expired, it decided. */
  check_ip(e, "203.0.113.9", NULL, UNIX0 - 200 * 86400, &v);
  assert_string_equal(name_of(v.entry), "old-ban");
  static const struct {
    const char *ip, *cls;
    const char *entry, *shadow; /* NULL: none */
  } cases[] = {
      {"203.0.113.9", NULL, "spam-source-002", "watch"},
      {"203.0.113.200", NULL, "spam-source-002", NULL}, /* outside the shadow /25 */
      {"203.0.7.1", NULL, "wide", NULL},
      {"2001:db8:bad:1::5", NULL, "spam-source-002", "watch"},
      /* IPv4-mapped IPv6 (a dual-stack socket) matches IPv4 blocks */
      {"::ffff:203.0.113.9", NULL, "spam-source-002", "watch"},
      {"2001:db8:bae::1", NULL, NULL, NULL},
      {"192.0.2.1", NULL, NULL, NULL},
      /* a class-restricted entry applies to that class only */
      {"198.51.100.7", "airtame-hub", "hubs-only", NULL},
      {"198.51.100.7", "homey", NULL, NULL},
      {"198.51.100.7", NULL, NULL, NULL},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    check_ip(e, cases[i].ip, cases[i].cls, UNIX0, &v);
    const char *got = name_of(v.entry), *sh = name_of(v.shadow);
    if ((got == NULL) != (cases[i].entry == NULL) || (got && strcmp(got, cases[i].entry)) ||
        (sh == NULL) != (cases[i].shadow == NULL) || (sh && strcmp(sh, cases[i].shadow)) ||
        v.deny != (got != NULL))
      fail_msg("%s (%s): entry %s shadow %s", cases[i].ip, cases[i].cls ? cases[i].cls : "-",
               got ? got : "-", sh ? sh : "-");
  }
  /* Another family (a unix socket peer) matches nothing. */
  uint8_t z[16] = {0};
  sl_blocklist_check_addr(e->bl, 0, z, NULL, 0, UNIX0, &v);
  assert_false(v.deny);
  assert_int_equal(sl_blocklist_size(e->bl), 5);
  assert_int_equal(sl_blocklist_n_addr(e->bl), 5);
  assert_int_equal(sl_blocklist_cfg_expired(&e->cfg->blocklist, UNIX0), 1);
  env_free(e);
}

/* More overlapping entries than one set lookup returns: the ones the set
 * left out are scanned, so the first live enforcing entry still decides. */
static void test_ip_many_overlapping_entries(void **st) {
  (void)st;
  char *yaml = malloc(64 * 1024);
  assert_non_null(yaml);
  size_t n = (size_t)sprintf(yaml, "blocklist:\n  client_ip:\n");
  for (int i = 0; i < 40; i++)
    n += (size_t)sprintf(yaml + n, "    - { name: e%d, cidrs: [10.0.0.0/8], %s }\n", i,
                         i < 36 ? "expires: \"2025-01-01T00:00:00Z\"" : "status: 451");
  struct env *e = env_load(yaml);
  struct sl_block_verdict v;
  check_ip(e, "10.1.2.3", NULL, UNIX0, &v);
  assert_true(v.deny);
  assert_string_equal(name_of(v.entry), "e36");
  assert_int_equal(v.status, 451);
  assert_string_equal(name_of(v.lapsed), "e0");
  env_free(e);
  free(yaml);
}

/* Thousands of entries (postmortem 002's ban list grew by the hour). */
static void test_ip_thousands_of_entries(void **st) {
  (void)st;
  size_t cap = 5000 * 64 + 64;
  char *yaml = malloc(cap);
  assert_non_null(yaml);
  size_t n = (size_t)sprintf(yaml, "blocklist:\n  client_ip:\n");
  for (int i = 0; i < 5000; i++)
    n += (size_t)snprintf(yaml + n, cap - n, "    - { name: b%d, cidrs: [\"10.%d.%d.0/24\"] }\n", i,
                          i / 256, i % 256);
  struct env *e = env_load(yaml);
  struct sl_block_verdict v;
  for (int i = 0; i < 5000; i += 499) {
    char ip[32], want[16];
    snprintf(ip, sizeof(ip), "10.%d.%d.77", i / 256, i % 256);
    snprintf(want, sizeof(want), "b%d", i);
    check_ip(e, ip, NULL, UNIX0, &v);
    assert_true(v.deny);
    assert_string_equal(name_of(v.entry), want);
  }
  check_ip(e, "10.200.0.1", NULL, UNIX0, &v);
  assert_false(v.deny);
  env_free(e);
  free(yaml);
}

/* ---- device_id ------------------------------------------------------ */

static const char IDS[] =
    "blocklist:\n"
    "  device_id:\n"
    "    - name: stolen-units\n"
    "      ids: [dev-0001, dev-0002]\n"
    "      mode: shadow\n"
    "    - ids: [dev-0002, dev-0003]\n"
    "      reason: \"returned for refund\"\n"
    "    - name: thermostats\n"
    "      ids: [dev-0004]\n"
    "      class: thermostat\n"
    "    - name: lapsed\n"
    "      ids: [dev-0005]\n"
    "      expires: \"2025-01-01T00:00:00Z\"\n";

static void check_id(const struct env *e, const char *id, const char *cls, bool by_hash_only,
                     struct sl_block_verdict *v) {
  sl_blocklist_check_device_id(e->bl, sl_blocklist_id_hash(id, strlen(id)),
                               by_hash_only ? NULL : id, strlen(id), cls, cls ? strlen(cls) : 0,
                               UNIX0, v);
}

static void test_device_ids(void **st) {
  (void)st;
  struct env *e = env_load(IDS);
  struct sl_block_verdict v;
  static const struct {
    const char *id, *cls;
    const char *label, *shadow, *lapsed; /* NULL: none */
  } cases[] = {
      {"dev-0001", NULL, NULL, "stolen-units", NULL},
      {"dev-0002", NULL, "blocklist/device_id/1", "stolen-units", NULL}, /* unnamed: its index */
      {"dev-0003", NULL, "blocklist/device_id/1", NULL, NULL},
      {"dev-0004", "thermostat", "blocklist/device_id/thermostats", NULL, NULL},
      {"dev-0004", "hub", NULL, NULL, NULL},
      {"dev-0005", NULL, NULL, NULL, "lapsed"},
      /* ids are compared whole: no prefix, no case folding */
      {"dev-000", NULL, NULL, NULL, NULL},
      {"DEV-0002", NULL, NULL, NULL, NULL},
  };
  for (int hash_only = 0; hash_only < 2; hash_only++)
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
      check_id(e, cases[i].id, cases[i].cls, hash_only, &v);
      const char *got = v.entry ? v.entry->label : NULL, *sh = name_of(v.shadow),
                 *la = name_of(v.lapsed);
      bool ok = v.deny == (cases[i].label != NULL) && v.shadow_deny == (cases[i].shadow != NULL) &&
                (!got || !strcmp(got, cases[i].label)) && (!sh || !strcmp(sh, cases[i].shadow)) &&
                (la == NULL) == (cases[i].lapsed == NULL) && (!la || !strcmp(la, cases[i].lapsed));
      if (!ok)
        fail_msg("%s (hash only: %d): entry %s shadow %s lapsed %s", cases[i].id, hash_only,
                 got ? got : "-", sh ? sh : "-", la ? la : "-");
    }
  check_id(e, "dev-0002", NULL, false, &v);
  assert_string_equal(v.entry->reason, "returned for refund");
  /* With the id, a slot of the same hash but another id does not match
   * (the hash of dev-0003 given with the id dev-0009). */
  sl_blocklist_check_device_id(e->bl, sl_blocklist_id_hash("dev-0003", 8), "dev-0009", 8, NULL,
                               0, UNIX0, &v);
  assert_false(v.deny);
  assert_int_equal(sl_blocklist_n_device_id(e->bl), 4);
  env_free(e);
}

/* ---- parse errors --------------------------------------------------- */

/* |body| (after HEAD) fails with an error at its line |line| (1: its
 * first), column |col|, containing |sub|. */
static void expect_error(const char *body, uint32_t line, uint32_t col, const char *sub) {
  for (const char *p = HEAD; *p; p++) line += *p == '\n';
  struct sl_config_errors errs = {0};
  struct sl_config *cfg = yaml_load(HEAD, body, &errs);
  bool found = false;
  for (size_t i = 0; i < errs.n; i++)
    if (errs.items[i].line == line && errs.items[i].col == col &&
        strstr(errs.items[i].message, sub))
      found = true;
  if (!found) {
    sl_config_errors_print(&errs, stderr);
    fail_msg("no error %u:%u containing \"%s\"", line, col, sub);
  }
  assert_null(cfg);
  sl_config_errors_free(&errs);
}

static void test_parse_errors(void **st) {
  (void)st;
  /* The bad block of a list, at its column. */
  expect_error("blocklist:\n  client_ip:\n    - cidrs: [203.0.113.0/24, 203.0.113.999/24]\n",
               3, 31, "cidrs: '203.0.113.999' is not an IPv4 address");
  expect_error("blocklist:\n  client_ip:\n    - cidrs: [\"2001:db8::1/24\"]\n", 3, 15,
               "cidrs:");
  expect_error("blocklist:\n  client_ip:\n    - cidrs: []\n", 3, 7, "'cidrs' needs at least one");
  expect_error("blocklist:\n  client_ip:\n    - name: x\n", 3, 7, "'cidrs' needs at least one");
  expect_error("blocklist:\n  device_id:\n    - ids: []\n", 3, 7, "'ids' needs at least one");
  expect_error("blocklist:\n  device_id:\n    - ids: [\"\"]\n", 3, 13, "ids: a device id is 1 to");
  expect_error("blocklist:\n  device_id:\n    - { name: a, ids: [x] }\n    - { name: a, ids: [y] }\n",
               4, 7, "duplicate device_id entry name 'a'");
  expect_error("blocklist:\n  client_ip:\n    - { cidrs: [10.0.0.0/8], versions: \"<2\" }\n", 3,
               30, "unknown key 'versions' in client_ip entry");
  expect_error("blocklist:\n  client_ip:\n    - cidrs: [10.0.0.0/8]\n      body: {policy: x}\n",
               4, 14, "'policy' is a built-in field");
  expect_error("blocklist:\n  firmware:\n    - versions: \"<2\"\n      headers: {content-type: x}\n",
               4, 17, "'content-type' is a hop-by-hop");
  expect_error("blocklist:\n  clientip: []\n", 2, 3, "unknown key 'clientip' in blocklist");
}

/* ---- printed form --------------------------------------------------- */

static void test_print_round_trip(void **st) {
  (void)st;
  static const char body[] =
      "blocklist:\n"
      "  client_ip:\n"
      "    - name: spam-source-002\n"
      "      cidrs: [203.0.113.0/24, \"2001:db8:bad::/48\"]\n"
      "      reason: \"crash-looping app build 7.1.0\"\n"
      "      expires: 2026-12-31T00:00:00Z\n"
      "      mode: shadow\n"
      "      body: {help_url: \"https://status.example.com\", code: 2, quoted: \"7\"}\n"
      "      headers: {x-ban: spam}\n"
      "  device_id:\n"
      "    - ids: [dev-0001, \"dev \\\"2\\\"\"]\n"
      "      class: thermostat\n"
      "  firmware:\n"
      "    - name: bad-381\n"
      "      versions: \">=3.8.0-b3 <3.8.1\"\n"
      "      body: {update_url: \"https://fw.example.com/3.8.2\", min_version: 3.8.2}\n";
  struct sl_config *a = yaml_load_ok(HEAD, body);
  char *pa = yaml_printed(a);
  assert_non_null(strstr(pa, "  client_ip:\n    - cidrs: [\"203.0.113.0/24\", \"2001:db8:bad::/48\"]\n"
                             "      name: \"spam-source-002\"\n"));
  assert_non_null(strstr(pa, "      body:\n        \"help_url\": \"https://status.example.com\"\n"
                             "        \"code\": 2\n        \"quoted\": \"7\"\n"
                             "      headers:\n        \"x-ban\": \"spam\"\n"));
  assert_non_null(strstr(pa, "  device_id:\n    - ids: [\"dev-0001\", \"dev \\\"2\\\"\"]\n"));
  struct sl_config *b = yaml_load_ok(pa, "");
  char *pb = yaml_printed(b);
  assert_string_equal(pa, pb);
  /* What the loader made of the extras: one JSON fragment each. */
  assert_string_equal(b->blocklist.client_ip[0].extra.body,
                      ",\"help_url\":\"https://status.example.com\",\"code\":2,\"quoted\":\"7\"");
  assert_string_equal(b->blocklist.firmware[0].extra.body,
                      ",\"update_url\":\"https://fw.example.com/3.8.2\",\"min_version\":\"3.8.2\"");
  assert_string_equal(b->blocklist.device_id[0].ids[1], "dev \"2\"");
  free(pa);
  free(pb);
  sl_config_free(a);
  sl_config_free(b);
}

/* ---- the admission stage -------------------------------------------- */

struct req {
  const char *ip; /* the identified client address; default 192.0.2.1 */
  const char *cls, *fw, *dev;
};

/* Runs the pipeline on the identity |r| describes (as sl_identify() would
 * make it: the forwarded address, slices of the header values). */
static void decide(struct env *e, const struct req *r, FILE *trace, struct sl_admission *out) {
  struct sl_identity id;
  memset(&id, 0, sizeof(id));
  id.family = addr_of(r->ip ? r->ip : "192.0.2.1", id.addr);
  id.forwarded = r->ip != NULL;
  id.device_class = r->cls;
  id.device_class_len = r->cls ? strlen(r->cls) : 0;
  id.device_id = r->dev;
  id.device_id_len = r->dev ? strlen(r->dev) : 0;
  id.firmware = r->fw;
  id.firmware_len = r->fw ? strlen(r->fw) : 0;
  id.firmware_valid = r->fw && sl_version_parse(r->fw, id.firmware_len, &id.firmware_version) == 0;
  struct sl_request_facts facts = {.method = "GET", .path = "/v1/connect", .listener = "public"};
  struct sl_admission_input in = {
      .cfg = e->cfg, .policies = e->ps, .route = &e->cfg->routes[0], .id = &id,
      .blocklist = e->bl, .facts = &facts, .now_ns = 1, .now_unix = UNIX0, .trace = trace};
  sl_admission_decide(&in, out);
}

static const char STAGE[] =
    "blocklist:\n"
    "  client_ip:\n"
    "    - {name: spam-source-002, cidrs: [203.0.113.0/24], expires: \"2025-06-15T15:07:40Z\",\n"
    "       body: {help_url: \"https://status.example.com\"}, headers: {x-ban: spam}}\n"
    "    - {name: watch, cidrs: [198.51.100.0/24], mode: shadow}\n"
    "  device_id: [{name: stolen-units, ids: [dev-0001], status: 410}]\n"
    "  firmware: [{versions: \"<2\"}]\n"
    "  unknown: deny\n";

static void test_stage_order_labels_and_extras(void **st) {
  (void)st;
  struct env *e = env_load(STAGE);
  struct sl_admission a;
  /* client_ip first: the address decides before the device and firmware. */
  decide(e, &(struct req){.ip = "203.0.113.5", .dev = "dev-0001", .fw = "1.0"}, NULL, &a);
  assert_false(a.admit);
  assert_int_equal(a.status, 403);
  assert_int_equal(a.reason, SL_REASON_BLOCKLIST);
  assert_string_equal(a.error, "blocked");
  assert_string_equal(a.policy, "blocklist/client_ip/spam-source-002");
  assert_non_null(a.extra);
  assert_string_equal(a.extra->body, ",\"help_url\":\"https://status.example.com\"");
  assert_int_equal(a.extra->n_headers, 1);
  assert_string_equal(a.extra->headers[0].name, "x-ban");
  /* Stay away until the entry expires, 60 s after UNIX0 (2025-06-15T15:06:40Z;
   * jitter 0), rather than reject.retry_after.max. */
  assert_int_equal(a.retry_after_s, 60);
  /* Then the device id. */
  decide(e, &(struct req){.ip = "192.0.2.1", .dev = "dev-0001", .fw = "1.0"}, NULL, &a);
  assert_false(a.admit);
  assert_int_equal(a.status, 410);
  assert_string_equal(a.policy, "blocklist/device_id/stolen-units");
  assert_null(a.extra);
  /* Then firmware: an unnamed entry is named by its index. */
  decide(e, &(struct req){.ip = "192.0.2.1", .dev = "dev-0009", .fw = "1.0"}, NULL, &a);
  assert_false(a.admit);
  assert_string_equal(a.policy, "blocklist/firmware/0");
  /* `unknown: deny` keeps the list's own label. */
  decide(e, &(struct req){.ip = "192.0.2.1"}, NULL, &a);
  assert_false(a.admit);
  assert_string_equal(a.policy, "blocklist/firmware");
  /* A shadow entry reports under its label and lets the request on. */
  decide(e, &(struct req){.ip = "198.51.100.1", .fw = "3.0"}, NULL, &a);
  assert_true(a.admit);
  assert_int_equal(a.n_shadow, 1);
  assert_string_equal(a.shadow[0].policy, "blocklist/client_ip/watch");
  assert_int_equal(a.shadow[0].reason, SL_REASON_BLOCKLIST);
  env_free(e);
}

static char *trace_of(struct env *e, const struct req *r, int64_t now_unix) {
  (void)now_unix;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  struct sl_admission a;
  decide(e, r, f, &a);
  fclose(f);
  return buf;
}

static void test_stage_explain_lines(void **st) {
  (void)st;
  struct env *e = env_load(
      "blocklist:\n"
      "  client_ip:\n"
      "    - name: old-ban\n"
      "      cidrs: [203.0.113.0/24]\n"
      "      expires: \"2025-01-01T00:00:00Z\"\n"
      "    - name: watch\n"
      "      cidrs: [198.51.100.0/24]\n"
      "      mode: shadow\n"
      "      reason: \"watching 002\"\n"
      "  device_id:\n"
      "    - { name: stolen, ids: [dev-1], reason: \"stolen\" }\n");
  char *t = trace_of(e, &(struct req){.ip = "203.0.113.5", .fw = "1.0"}, UNIX0);
  assert_non_null(strstr(t, "{\"policy\":\"blocklist/client_ip\",\"kind\":\"blocklist\","
                            "\"verdict\":\"allow\",\"why\":\"blocklist entry 'old-ban' expired at "
                            "2025-01-01T00:00:00Z"));
  assert_non_null(strstr(t, "{\"policy\":\"blocklist/device_id\",\"kind\":\"blocklist\","
                            "\"verdict\":\"skip\",\"why\":\"request carries no device id\"}"));
  free(t);
  t = trace_of(e, &(struct req){.ip = "198.51.100.5", .dev = "dev-1"}, UNIX0);
  assert_non_null(strstr(t, "{\"policy\":\"blocklist/client_ip/watch\",\"kind\":\"blocklist\","
                            "\"verdict\":\"shadow_deny\",\"why\":\"watching 002\"}"));
  assert_non_null(strstr(t, "{\"policy\":\"blocklist/device_id/stolen\",\"kind\":\"blocklist\","
                            "\"verdict\":\"deny\",\"why\":\"stolen\"}"));
  free(t);
  env_free(e);
}

/* The refusal body with an entry's extras: the name (as "policy") and
 * the fields, within the data plane's 512 bytes at the longest. */
static void test_body_with_extras_fits(void **st) {
  (void)st;
  char body[4096];
  size_t n = (size_t)sprintf(body, "blocklist:\n  client_ip:\n    - name: ");
  for (int i = 0; i < 64; i++) body[n++] = 'n';
  n += (size_t)sprintf(body + n, "\n      cidrs: [10.0.0.0/8]\n      body: {k: \"");
  for (int i = 0; i < 240; i++) body[n++] = 'v';
  n += (size_t)sprintf(body + n, "\"}\n");
  body[n] = '\0';
  struct env *e = env_load(body);
  struct sl_admission a;
  decide(e, &(struct req){.ip = "10.0.0.1"}, NULL, &a);
  assert_false(a.admit);
  char out[512];
  int len = sl_reject_body_json_extra(out, sizeof(out), a.error, a.policy, a.retry_after_s,
                                      a.extra->body);
  assert_true(len > 0);
  assert_non_null(strstr(out, "\"policy\":\"blocklist/client_ip/nnnn"));
  env_free(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ip_first_live_entry_decides),
      cmocka_unit_test(test_ip_many_overlapping_entries),
      cmocka_unit_test(test_ip_thousands_of_entries),
      cmocka_unit_test(test_device_ids),
      cmocka_unit_test(test_parse_errors),
      cmocka_unit_test(test_print_round_trip),
      cmocka_unit_test(test_stage_order_labels_and_extras),
      cmocka_unit_test(test_stage_explain_lines),
      cmocka_unit_test(test_body_with_extras_fits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
