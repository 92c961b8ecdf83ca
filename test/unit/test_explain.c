/* Unit tests for policies/explain.c: `sluice explain` and GET /explain
 * write one valid JSON object naming the route, every policy met and the
 * verdict, against live policy state, and consume nothing. */
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
#include "sluice/explain.h"
#include "sluice/identify.h"
#include "sluice/policy_state.h"
#include "sluice/route.h"

#define MS 1000000ull
#define SEC 1000000000ull
#define T0 (1000 * SEC)
#define UNIX0 ((int64_t)1750000000)

/* ---- a minimal strict JSON checker (RFC 8259) ---------------------- */

static const char *json_value(const char *p, int depth);

static const char *ws(const char *p) {
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  return p;
}

static const char *json_string(const char *p) {
  if (*p++ != '"') return NULL;
  for (;;) {
    unsigned char c = (unsigned char)*p++;
    if (c == '"') return p;
    if (c < 0x20) return NULL; /* includes the NUL: unterminated */
    if (c >= 0x80) {           /* well-formed UTF-8 (RFC 3629), no overlongs */
      unsigned need = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2
                    : c >= 0xf0 && c <= 0xf4 ? 3 : 0;
      if (!need) return NULL;
      unsigned char c1 = (unsigned char)*p;
      if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 > 0x9f) || (c == 0xf0 && c1 < 0x90) ||
          (c == 0xf4 && c1 > 0x8f))
        return NULL;
      for (unsigned i = 0; i < need; i++, p++)
        if ((unsigned char)*p < 0x80 || (unsigned char)*p > 0xbf) return NULL;
      continue;
    }
    if (c != '\\') continue;
    c = (unsigned char)*p++;
    if (c == 'u') {
      for (int i = 0; i < 4; i++, p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
          return NULL;
    } else if (!strchr("\"\\/bfnrt", c) || c == 0) {
      return NULL;
    }
  }
}

static const char *json_number(const char *p) {
  if (*p == '-') p++;
  if (*p == '0') {
    p++;
  } else if (*p >= '1' && *p <= '9') {
    while (*p >= '0' && *p <= '9') p++;
  } else {
    return NULL;
  }
  if (*p == '.') {
    p++;
    if (!(*p >= '0' && *p <= '9')) return NULL;
    while (*p >= '0' && *p <= '9') p++;
  }
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '+' || *p == '-') p++;
    if (!(*p >= '0' && *p <= '9')) return NULL;
    while (*p >= '0' && *p <= '9') p++;
  }
  return p;
}

static const char *json_value(const char *p, int depth) {
  if (depth > 32) return NULL;
  p = ws(p);
  if (*p == '{') {
    p = ws(p + 1);
    if (*p == '}') return p + 1;
    for (;;) {
      p = json_string(ws(p));
      if (!p) return NULL;
      p = ws(p);
      if (*p++ != ':') return NULL;
      p = json_value(p, depth + 1);
      if (!p) return NULL;
      p = ws(p);
      if (*p == '}') return p + 1;
      if (*p++ != ',') return NULL;
    }
  }
  if (*p == '[') {
    p = ws(p + 1);
    if (*p == ']') return p + 1;
    for (;;) {
      p = json_value(p, depth + 1);
      if (!p) return NULL;
      p = ws(p);
      if (*p == ']') return p + 1;
      if (*p++ != ',') return NULL;
    }
  }
  if (*p == '"') return json_string(p);
  if (!strncmp(p, "true", 4)) return p + 4;
  if (!strncmp(p, "false", 5)) return p + 5;
  if (!strncmp(p, "null", 4)) return p + 4;
  return json_number(p);
}

/* One JSON object and nothing but whitespace after it. */
static bool json_valid_object(const char *s) {
  const char *p = ws(s);
  if (*p != '{') return false;
  p = json_value(p, 0);
  return p && *ws(p) == '\0';
}

static void test_json_checker(void **st) {
  (void)st;
  assert_true(json_valid_object("{}"));
  assert_true(json_valid_object("{\"a\":[1,-2.5e3,true,null,\"x\\\"\\u00e9\"],\"b\":{}}\n"));
  assert_false(json_valid_object("{\"a\":1,}"));
  assert_false(json_valid_object("{\"a\":\"\x01\"}"));
  assert_false(json_valid_object("{\"a\":\"\\x\"}"));
  assert_false(json_valid_object("{\"a\":01}"));
  assert_false(json_valid_object("{\"a\":1}{}"));
  assert_false(json_valid_object("{\"a\":\"open}"));
  assert_true(json_valid_object("{\"a\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}"));
  assert_false(json_valid_object("{\"a\":\"\xff\"}"));
  assert_false(json_valid_object("{\"a\":\"\xc3(\"}"));
  assert_false(json_valid_object("{\"a\":\"\xc0\xaf\"}"));     /* overlong '/' */
  assert_false(json_valid_object("{\"a\":\"\xed\xa0\x80\"}")); /* surrogate */
}

/* ---- fixtures ----------------------------------------------------- */

static const char CFG[] =
    "listeners:\n"
    "  - name: public\n"
    "    address: \"127.0.0.1:18080\"\n"
    "upstreams:\n"
    "  identity:\n"
    "    address: \"127.0.0.1:18081\"\n"
    "    circuit_breaker: { consecutive_failures: 2, open_for: 5s, half_open_probes: 1,\n"
    "                       recovery_ramp: 0s }\n"
    "identify:\n"
    "  client_ip: { trusted_proxies: [\"127.0.0.0/8\"] }\n"
    "  device_class: { header: \"x-device-class\" }\n"
    "  firmware: { header: \"x-firmware-version\" }\n"
    "  device_id: { header: \"x-device-id\" }\n"
    "routes:\n"
    "  - name: connect\n"
    "    match: { path_prefix: \"/v1/connect\" }\n"
    "    upstream: identity\n"
    "    rate_limits:\n"
    "      - { key: client_ip, rate: \"1/m\", burst: 2 }\n"
    "      - { key: device_class, rate: \"10/s\", burst: 20 }\n"
    "    concurrency: { max: 1 }\n"
    "  - name: staging\n"
    "    match: { path_prefix: \"/v1/staging\" }\n"
    "    upstream: identity\n"
    "blocklist:\n"
    "  firmware:\n"
    "    - class: airtame-hub\n"
    "      versions: \">=3.8.0-b3 <3.8.1\"\n"
    "      status: 451\n"
    "      reason: \"full \\\"table\\\" scan \\\\ INC-2041\\ttab\"\n"
    "reject:\n"
    "  retry_after: { min: 1s, max: 120s, jitter: 0 }\n"
    "shaping:\n"
    "  - match: { path_prefix: \"/v1/staging/sometimes\" }\n"
    "    delay: { fixed: 150ms }\n"
    "    abort: { percent: 5, status: 503 }\n"
    "  - match: { path_prefix: \"/v1/staging/always\" }\n"
    "    abort: { percent: 100, status: 418 }\n";

struct env {
  struct sl_config *cfg;
  struct sl_policy_set *ps;
  struct sl_blocklist *bl;
  char path[256];
};

static int setup(void **state) {
  struct env *e = calloc(1, sizeof(*e));
  assert_non_null(e);
  snprintf(e->path, sizeof(e->path), "/tmp/sluice-test-explain-XXXXXX");
  int fd = mkstemp(e->path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  assert_non_null(f);
  fputs(CFG, f);
  fclose(f);
  struct sl_config_errors errs = {0};
  e->cfg = sl_config_load(e->path, &errs);
  if (!e->cfg) sl_config_errors_print(&errs, stderr);
  sl_config_errors_free(&errs);
  assert_non_null(e->cfg);
  e->ps = sl_policy_set_new(e->cfg, NULL, 0);
  assert_non_null(e->ps);
  e->bl = sl_blocklist_new(&e->cfg->blocklist, e->cfg->mode);
  assert_non_null(e->bl);
  *state = e;
  return 0;
}

static int teardown(void **state) {
  struct env *e = *state;
  sl_blocklist_del(e->bl);
  sl_policy_set_del(e->ps);
  sl_config_free(e->cfg);
  unlink(e->path);
  free(e);
  return 0;
}

/* Runs sl_explain; returns its output (malloc'd) after checking it is one
 * valid JSON object, and its return code in |rc|. */
static char *explain(struct env *e, const char *ip, const char *path, uint64_t now, int *rc,
                     int n, ...) {
  const char *names[8], *values[8];
  va_list ap;
  va_start(ap, n);
  for (int i = 0; i < n; i++) {
    names[i] = va_arg(ap, const char *);
    values[i] = va_arg(ap, const char *);
  }
  va_end(ap);
  struct sl_explain_request r = {.path = path, .ip = ip, .header_names = names,
                                 .header_values = values, .n_headers = n};
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  char err[128] = "";
  *rc = sl_explain(e->cfg, e->ps, e->bl, &r, now, UNIX0, f, err, sizeof(err));
  fclose(f);
  if (*rc == 0 && !json_valid_object(buf)) fail_msg("not one valid JSON object: %s", buf);
  if (*rc != 0) {
    free(buf);
    buf = strdup(err);
  }
  return buf;
}

static void assert_has(const char *out, const char *needle) {
  if (!strstr(out, needle)) fail_msg("expected %s in %s", needle, out);
}

static void assert_lacks(const char *out, const char *needle) {
  if (strstr(out, needle)) fail_msg("did not expect %s in %s", needle, out);
}

/* The real pipeline, for putting live state into the policies. */
static void admit(struct env *e, const char *ip, const char *path, const char *cls, uint64_t now,
                  struct sl_admission *out) {
  struct sockaddr_in sin = {.sin_family = AF_INET};
  assert_int_equal(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
  struct sl_hdr h[1];
  size_t n = 0;
  if (cls) h[n++] = (struct sl_hdr){"x-device-class", 14, cls, strlen(cls)};
  struct sl_identity id;
  assert_int_equal(sl_identify(&e->cfg->identify, (struct sockaddr *)&sin, h, n, &id), 0);
  struct sl_request_facts facts = {.method = "GET", .path = path, .listener = "public"};
  const struct sl_route_cfg *route = sl_route_select(e->cfg, &facts);
  assert_non_null(route);
  struct sl_admission_input in = {.cfg = e->cfg, .policies = e->ps, .route = route, .id = &id,
                                  .blocklist = e->bl, .facts = &facts, .now_ns = now,
                                  .now_unix = UNIX0};
  sl_admission_decide(&in, out);
}

/* ---- tests -------------------------------------------------------- */

static void test_no_route(void **state) {
  struct env *e = *state;
  int rc;
  char *out = explain(e, "192.0.2.1", "/elsewhere", T0, &rc, 0);
  assert_int_equal(rc, 0);
  assert_has(out, "\"route\":null");
  assert_has(out, "\"policies\":[]");
  assert_has(out, "\"verdict\":{\"admit\":false,\"status\":404,\"error\":\"no_route\"");
  assert_has(out, "\"path\":\"/elsewhere\"");
  free(out);
}

/* Issue 8: explain routes the normalised path, as the data plane does,
 * shows it (and the raw one), and reports a path sluice refuses as the
 * 400 it gets. */
static void test_normalised_path(void **state) {
  struct env *e = *state;
  int rc;
  const char *tricks[] = {"/v1//connect", "/v1/%63onnect", "/v1/./connect", "/v1/x/../connect"};
  for (size_t i = 0; i < sizeof(tricks) / sizeof(tricks[0]); i++) {
    char *out = explain(e, "192.0.2.1", tricks[i], T0, &rc, 0);
    assert_int_equal(rc, 0);
    assert_has(out, "\"route\":\"connect\"");
    assert_has(out, "\"path\":\"/v1/connect\",\"raw_path\":");
    free(out);
  }
  char *out = explain(e, "192.0.2.1", "/v1/connector", T0, &rc, 0);
  assert_has(out, "\"route\":null");
  free(out);
  out = explain(e, "192.0.2.1", "/v1/connect", T0, &rc, 0);
  assert_false(strstr(out, "raw_path"));
  free(out);
  out = explain(e, "192.0.2.1", "/v1/a%2Fb", T0, &rc, 0);
  assert_int_equal(rc, 0);
  assert_has(out, "\"path\":\"/v1/a%2Fb\"");
  assert_has(out, "\"verdict\":{\"admit\":false,\"status\":400,\"error\":\"path_encoded_slash\"");
  free(out);
}

static void test_blocked_firmware(void **state) {
  struct env *e = *state;
  int rc;
  char *out = explain(e, "192.0.2.1", "/v1/connect", T0, &rc, 2, "X-Device-Class", "airtame-hub",
                      "x-firmware-version", "3.8.0-b10");
  assert_int_equal(rc, 0);
  assert_has(out, "\"route\":\"connect\"");
  assert_has(out, "\"upstream\":\"identity\"");
  assert_has(out, "\"device_class\":\"airtame-hub\"");
  assert_has(out, "\"firmware\":\"3.8.0-b10\"");
  assert_has(out, "\"policy\":\"blocklist/firmware/0\",\"kind\":\"blocklist\",\"verdict\":\"deny\"");
  /* The entry's reason, escaped. */
  assert_has(out, "full \\\"table\\\" scan \\\\ INC-2041\\u0009tab");
  /* A block without `expires` tells devices to stay away as long as the
   * reject config allows (max 120 s, jitter 0), not to retry at once. */
  assert_has(out, "\"verdict\":{\"admit\":false,\"status\":451,\"error\":\"blocked\","
                  "\"policy\":\"blocklist/firmware/0\",\"retry_after\":120}");
  free(out);

  /* A neighbouring version is admitted; the blocklist says why. */
  out = explain(e, "192.0.2.1", "/v1/connect", T0, &rc, 2, "x-device-class", "airtame-hub",
                "x-firmware-version", "3.8.0-b2");
  assert_has(out, "\"policy\":\"blocklist/firmware\",\"kind\":\"blocklist\",\"verdict\":\"allow\"");
  assert_has(out, "\"verdict\":{\"admit\":true");
  free(out);
}

static void test_admitted(void **state) {
  struct env *e = *state;
  int rc;
  char *out = explain(e, "192.0.2.1", "/v1/connect?x=1", T0, &rc, 1, "x-device-class", "homey");
  assert_int_equal(rc, 0);
  assert_has(out, "\"request\":{\"method\":\"GET\",\"path\":\"/v1/connect?x=1\",\"ip\":\"192.0.2.1\"}");
  assert_has(out, "\"client_ip\":\"192.0.2.1\"");
  assert_has(out, "\"firmware\":null");
  assert_has(out, "\"policy\":\"connect/client_ip\",\"kind\":\"rate_limit\",\"verdict\":\"admit\"");
  assert_has(out, "\"policy\":\"connect/device_class\",\"kind\":\"rate_limit\",\"verdict\":\"admit\"");
  assert_has(out, "\"policy\":\"connect/concurrency\",\"kind\":\"concurrency\",\"verdict\":\"admit\"");
  assert_has(out, "\"policy\":\"upstream/identity\",\"kind\":\"breaker\",\"verdict\":\"admit\"");
  assert_has(out, "\"verdict\":{\"admit\":true,\"shadow_rejections\":0}");
  free(out);

  /* Without a device class the class limiter is skipped, and says so. */
  out = explain(e, "192.0.2.1", "/v1/connect", T0, &rc, 0);
  assert_has(out, "\"policy\":\"connect/device_class\",\"kind\":\"rate_limit\",\"verdict\":\"skip\"");
  assert_has(out, "\"verdict\":{\"admit\":true");
  free(out);

  /* Through a trusted proxy, the forwarded client is the one explained. */
  out = explain(e, "127.0.0.1", "/v1/connect", T0, &rc, 1, "x-forwarded-for", "198.51.100.7");
  assert_has(out, "\"client_ip\":\"198.51.100.7\"");
  free(out);
}

/* Explaining consumes nothing, however often. */
static void test_explain_consumes_nothing(void **state) {
  struct env *e = *state;
  int rc;
  for (int i = 0; i < 50; i++) {
    char *out = explain(e, "192.0.2.40", "/v1/connect", T0, &rc, 0);
    assert_has(out, "\"verdict\":{\"admit\":true");
    free(out);
  }
  struct sl_admission a;
  admit(e, "192.0.2.40", "/v1/connect", NULL, T0, &a);
  assert_true(a.admit);
  struct sl_concurrency *c = sl_policy_state_concurrency(sl_policy_set_concurrency(e->ps, &e->cfg->routes[0]));
  assert_int_equal(sl_concurrency_in_flight(c), 1);
  sl_admission_finish(&a, SL_OUTCOME_SUCCESS, MS, T0);
  assert_int_equal(sl_concurrency_in_flight(c), 0);
}

static void test_rate_limited(void **state) {
  struct env *e = *state;
  struct sl_admission a;
  for (int i = 0; i < 2; i++) {
    admit(e, "192.0.2.5", "/v1/connect", NULL, T0, &a);
    assert_true(a.admit);
    sl_admission_finish(&a, SL_OUTCOME_SUCCESS, MS, T0);
  }
  int rc;
  /* 1/m burst 2, both taken at T0: admits again at T0 + 60 s. */
  char *out = explain(e, "192.0.2.5", "/v1/connect", T0 + 10 * SEC, &rc, 0);
  assert_int_equal(rc, 0);
  assert_has(out, "\"policy\":\"connect/client_ip\",\"kind\":\"rate_limit\",\"verdict\":\"reject\"");
  assert_has(out, "admits again in 50000 ms");
  assert_has(out, "\"verdict\":{\"admit\":false,\"status\":429,\"error\":\"rate_limited\","
                  "\"policy\":\"connect/client_ip\",\"retry_after\":50}");
  /* The first refusal ends the trace: later policies are not met. */
  assert_lacks(out, "connect/concurrency");
  free(out);
  /* Another client is not affected. */
  out = explain(e, "192.0.2.6", "/v1/connect", T0 + 10 * SEC, &rc, 0);
  assert_has(out, "\"verdict\":{\"admit\":true");
  free(out);
}

/* GET /explain reflects live state: a full route is refused by its
 * concurrency limit, not only described as full. */
static void test_concurrency_full(void **state) {
  struct env *e = *state;
  struct sl_admission held;
  admit(e, "192.0.2.8", "/v1/connect", NULL, T0, &held);
  assert_true(held.admit);
  int rc;
  char *out = explain(e, "192.0.2.9", "/v1/connect", T0, &rc, 0);
  assert_has(out, "\"policy\":\"connect/concurrency\",\"kind\":\"concurrency\",\"verdict\":\"reject\"");
  assert_has(out, "\"verdict\":{\"admit\":false,\"status\":429,\"error\":\"concurrency_limited\","
                  "\"policy\":\"connect/concurrency\"");
  free(out);
  sl_admission_finish(&held, SL_OUTCOME_SUCCESS, MS, T0);
  out = explain(e, "192.0.2.9", "/v1/connect", T0, &rc, 0);
  assert_has(out, "\"verdict\":{\"admit\":true");
  free(out);
}

/* ... and an open breaker refuses with 503, until it may half-open. */
static void test_breaker_open(void **state) {
  struct env *e = *state;
  struct sl_admission a;
  for (int i = 0; i < 2; i++) {
    admit(e, "192.0.2.10", "/v1/staging", NULL, T0, &a);
    assert_true(a.admit);
    sl_admission_finish(&a, SL_OUTCOME_FAILURE, MS, T0);
  }
  int rc;
  char *out = explain(e, "192.0.2.11", "/v1/staging", T0 + SEC, &rc, 0);
  assert_has(out, "\"policy\":\"upstream/identity\",\"kind\":\"breaker\",\"verdict\":\"reject\"");
  assert_has(out, "\"verdict\":{\"admit\":false,\"status\":503,\"error\":\"circuit_open\","
                  "\"policy\":\"upstream/identity\",\"retry_after\":4}");
  free(out);
  /* open_for has passed: the next request would be a half-open probe. */
  out = explain(e, "192.0.2.11", "/v1/staging", T0 + 6 * SEC, &rc, 0);
  assert_has(out, "\"policy\":\"upstream/identity\",\"kind\":\"breaker\",\"verdict\":\"admit\"");
  assert_has(out, "\"verdict\":{\"admit\":true");
  free(out);
}

/* Shaping: a certain abort is the verdict; a probabilistic one is
 * described, not drawn (explain has no dice to roll). */
static void test_shaping(void **state) {
  struct env *e = *state;
  int rc;
  char *out = explain(e, "192.0.2.12", "/v1/staging/always", T0, &rc, 0);
  assert_has(out, "\"verdict\":{\"admit\":false,\"status\":418,\"error\":\"shaped_abort\"");
  free(out);
  out = explain(e, "192.0.2.12", "/v1/staging/sometimes", T0, &rc, 0);
  assert_has(out, "\"kind\":\"shaping\"");
  assert_has(out, "abort 5.0%");
  assert_has(out, "\"verdict\":{\"admit\":true,\"shadow_rejections\":0,\"delay_ms\":150}");
  free(out);
}

static void test_ambiguous_identity(void **state) {
  struct env *e = *state;
  int rc;
  char *out = explain(e, "192.0.2.1", "/v1/connect", T0, &rc, 2, "x-firmware-version", "3.8.0",
                      "X-Firmware-Version", "3.9.0");
  assert_int_equal(rc, 0);
  assert_has(out, "\"verdict\":{\"admit\":false,\"status\":400,\"error\":\"ambiguous_identity\"");
  assert_has(out, "x-firmware-version");
  free(out);
}

/* Paths and header values are bytes: whatever a device sends, the answer
 * is valid JSON (UTF-8), with U+FFFD for what is not text. */
static void test_not_utf8(void **state) {
  struct env *e = *state;
  int rc;
  char *out = explain(e, "192.0.2.1", "/v1/connect/\xff\xfe\xc3(\xe2\x82", T0, &rc, 2,
                      "x-device-class", "caf\xc3\xa9\xc0\xaf", "x-device-id",
                      "\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82\xac");
  assert_int_equal(rc, 0);
  /* Raw bytes beyond ASCII have no place in a target: refused, and the
   * path still shown as valid JSON. */
  assert_has(out, "\"path\":\"/v1/connect/\\ufffd\\ufffd\\ufffd(\\ufffd\\ufffd\"");
  assert_has(out, "\"error\":\"path_invalid_character\"");
  free(out);
  out = explain(e, "192.0.2.1", "/v1/connect", T0, &rc, 2, "x-device-class",
                "caf\xc3\xa9\xc0\xaf", "x-device-id",
                "\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82\xac");
  assert_int_equal(rc, 0);
  assert_has(out, "\"device_class\":\"caf\xc3\xa9\\ufffd\\ufffd\"");
  assert_has(out, "\"device_id\":\"\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\xe2\x82\xac\"");
  free(out);
}

static void test_bad_ip(void **state) {
  struct env *e = *state;
  int rc;
  const char *bad[] = {"not-an-ip", "", "256.1.1.1", "192.0.2.1:80", "::g"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char *msg = explain(e, bad[i], "/v1/connect", T0, &rc, 0);
    assert_int_equal(rc, -1);
    assert_has(msg, "not an IP address");
    free(msg);
  }
  char *out = explain(e, "2001:db8::1", "/v1/connect", T0, &rc, 0);
  assert_int_equal(rc, 0);
  assert_has(out, "\"client_ip\":\"2001:db8::1\"");
  free(out);
  /* NULL: the loopback default. */
  out = explain(e, NULL, "/v1/connect", T0, &rc, 0);
  assert_int_equal(rc, 0);
  assert_has(out, "\"ip\":\"127.0.0.1\"");
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_checker),
      cmocka_unit_test_setup_teardown(test_no_route, setup, teardown),
      cmocka_unit_test_setup_teardown(test_normalised_path, setup, teardown),
      cmocka_unit_test_setup_teardown(test_blocked_firmware, setup, teardown),
      cmocka_unit_test_setup_teardown(test_admitted, setup, teardown),
      cmocka_unit_test_setup_teardown(test_explain_consumes_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rate_limited, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrency_full, setup, teardown),
      cmocka_unit_test_setup_teardown(test_breaker_open, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shaping, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ambiguous_identity, setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_utf8, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_ip, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
