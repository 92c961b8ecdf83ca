/* Unit tests for policies/config*.c: the configuration loader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ftw.h>
#include <regex.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "sluice/config.h"
#include "../../policies/config/config_int.h"

/* ---- fixtures ----------------------------------------------------- */

static char g_dir[256]; /* per test, under /tmp */

static int setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof(g_dir), "/tmp/sluice-test-config-XXXXXX");
  assert_non_null(mkdtemp(g_dir));
  return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int teardown(void **state) {
  (void)state;
  nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return 0;
}

/* Writes |text| to g_dir/|name| (creating sub-directories) and returns the
 * path (one of 8 static buffers used in turn). */
static const char *write_file(const char *name, const char *text) {
  static char paths[8][512];
  static unsigned turn;
  char *path = paths[turn++ % 8];
  snprintf(path, sizeof(paths[0]), "%s/%s", g_dir, name);
  for (char *p = path + strlen(g_dir) + 1; *p; p++) {
    if (*p == '/') {
      *p = '\0';
      mkdir(path, 0755);
      *p = '/';
    }
  }
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

static struct sl_config *load_text(const char *yaml, struct sl_config_errors *errs) {
  const char *path = write_file("sluice.yaml", yaml);
  return sl_config_load(path, errs);
}

static void dump_errors(const struct sl_config_errors *errs) {
  sl_config_errors_print(errs, stderr);
}

static bool ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && !strcmp(s + a - b, suffix);
}

/* Asserts that |errs| holds an error at FILE(suffix):LINE:COL whose message
 * contains |sub|. */
#define expect_error(errs, file, line, col, sub) expect_error_((errs), (file), (line), (col), (sub), __LINE__)
static void expect_error_(const struct sl_config_errors *errs, const char *file, uint32_t line,
                          uint32_t col, const char *sub, int at) {
  for (size_t i = 0; i < errs->n; i++) {
    const struct sl_config_error *e = &errs->items[i];
    if (e->file && ends_with(e->file, file) && e->line == line && e->col == col &&
        strstr(e->message, sub))
      return;
  }
  dump_errors(errs);
  fail_msg("test line %d: no error %s:%u:%u containing \"%s\"", at, file, line, col, sub);
}

/* Loads |yaml| expecting failure with exactly |n| errors, one of which is
 * at LINE:COL in sluice.yaml and contains |sub|. */
#define expect_only_error(yaml, line, col, sub) expect_only_error_((yaml), (line), (col), (sub), __LINE__)
static void expect_only_error_(const char *yaml, uint32_t line, uint32_t col, const char *sub,
                               int at) {
  struct sl_config_errors errs = {0};
  struct sl_config *cfg = load_text(yaml, &errs);
  if (cfg || errs.n != 1) {
    dump_errors(&errs);
    fail_msg("test line %d: expected exactly one error, got %zu", at, errs.n);
  }
  expect_error_(&errs, "sluice.yaml", line, col, sub, at);
  sl_config_errors_free(&errs);
}

static struct sl_config *must_load(const char *path) {
  struct sl_config_errors errs = {0};
  struct sl_config *cfg = sl_config_load(path, &errs);
  if (!cfg) {
    dump_errors(&errs);
    fail_msg("unexpected configuration errors");
  }
  sl_config_errors_free(&errs);
  return cfg;
}

static void cfg_ok_and_free(const char *path) { sl_config_free(must_load(path)); }

static char *print_to_string(const struct sl_config *cfg) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  assert_int_equal(sl_config_print(cfg, f), 0);
  fclose(f);
  return buf;
}

/* A valid base, 9 lines; tests append to it, so their lines start at 10. */
#define BASE                               \
  "listeners:\n"                           \
  "  - name: public\n"                     \
  "    address: \"127.0.0.1:8080\"\n"      \
  "upstreams:\n"                           \
  "  identity:\n"                          \
  "    address: \"127.0.0.1:8081\"\n"      \
  "routes:\n"                              \
  "  - name: default\n"                    \
  "    upstream: identity\n"

/* Every section, with non-default values. */
static const char FULL[] =
    "listeners:\n"
    "  - name: public\n"
    "    address: \"0.0.0.0:8443\"\n"
    "    tls:\n"
    "      certificate: /etc/sluice/tls.crt\n"
    "      private_key: /etc/sluice/tls.key\n"
    "    max_connections: 40000\n"
    "    connect_rate: { per_ip: \"20/s\", burst: 40, mode: shadow }\n"
    "    timeouts: { request_header: 5s, idle: 90s }\n"
    "    limits: { header_bytes: 8192, headers: 50, h2_streams: 64 }\n"
    "  - name: internal\n"
    "    address: \"[::1]:8080\"\n"
    "admin:\n"
    "  address: \"127.0.0.1:9901\"\n"
    "upstreams:\n"
    "  identity:\n"
    "    address: \"127.0.0.1:8081\"\n"
    "    max_connections: 128\n"
    "    max_pending: 512\n"
    "    timeouts: { connect: 250ms, response: 15s, idle: 2m }\n"
    "    circuit_breaker:\n"
    "      consecutive_failures: 10\n"
    "      failure_ratio: 0.25\n"
    "      window: 20s\n"
    "      min_requests: 40\n"
    "      slow_call: 1500ms\n"
    "      open_for: 7s\n"
    "      half_open_probes: 3\n"
    "      recovery_ramp: 1m\n"
    "      mode: shadow\n"
    "  legacy:\n"
    "    address: \"localhost:9000\"\n"
    "identify:\n"
    "  client_ip: { trusted_proxies: [\"10.0.0.0/8\", \"fd00::/8\"], ipv6_prefix: 64 }\n"
    "  device_class: { user_agent: \"^Homey/(?P<class>[A-Za-z]+) \\\\d\" }\n"
    "  firmware: { header: X-Firmware }\n"
    "  device_id: { header: X-Device }\n"
    "routes:\n"
    "  - name: connect\n"
    "    match:\n"
    "      path_prefix: /v1/connect\n"
    "      method: get\n"
    "      host: API.example.com\n"
    "      header: { X-Tenant: acme, X-Beta: ~ }\n"
    "      listener: public\n"
    "      websocket: true\n"
    "    upstream: identity\n"
    "    rate_limits:\n"
    "      - { key: client_ip, rate: \"5/s\", burst: 10 }\n"
    "      - key: device_class\n"
    "        rate: \"500/s\"\n"
    "        burst: 1000\n"
    "        max_keys: 5000\n"
    "        override: { airtame-hub: \"200/s\", homey-pro: { rate: \"50/m\", burst: 7 } }\n"
    "        mode: shadow\n"
    "      - { name: per-device, key: device_id, rate: \"10/h\" }\n"
    "    concurrency: { max: 512, mode: enforce }\n"
    "    priority: high\n"
    "    idle_timeout: 10m\n"
    "  - name: legacy\n"
    "    match: { path_prefix: /old, websocket: false }\n"
    "    upstream: legacy\n"
    "    priority: low\n"
    "  - name: default\n"
    "    upstream: identity\n"
    "blocklist:\n"
    "  firmware:\n"
    "    - name: inc-2041\n"
    "      class: airtame-hub\n"
    "      versions: \">=3.8.0-b3 <3.8.1\"\n"
    "      status: 403\n"
    "      reason: \"connect handler full-table-scan, INC-2041\"\n"
    "      expires: \"2026-12-01T00:00:00Z\"\n"
    "    - versions: \"3.9.x || =4.0.0\"\n"
    "      status: 410\n"
    "      mode: shadow\n"
    "  unknown: deny\n"
    "reject:\n"
    "  retry_after: { min: 2s, max: 60s, jitter: 0.3 }\n"
    "  body: text\n"
    "shaping:\n"
    "  - match: { path_prefix: \"/v1/\" }\n"
    "    delay: { fixed: 200ms, jitter: 50ms }\n"
    "    abort: { percent: 5, status: 503 }\n"
    "  - name: cap\n"
    "    match: { listener: internal }\n"
    "    rate: \"100/s\"\n"
    "    mode: shadow\n"
    "mode: shadow\n"
    "drain_timeout: 30s\n"
    "access_log: sampled\n"
    "rejection_log_per_sec: 5\n";

/* ---- value parsers ------------------------------------------------ */

static void test_parse_duration(void **state) {
  (void)state;
  static const struct {
    const char *s;
    uint64_t ms;
  } good[] = {{"250ms", 250},  {"5s", 5000},        {"2m", 120000}, {"1h", 3600000},
              {"0s", 0},       {"1m30s", 90000},    {"1.5s", 1500}, {"0.25s", 250},
              {"1h1ms", 3600001}, {"10000ms", 10000}};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    uint64_t ms = 7;
    char err[160] = "";
    if (sl_parse_duration_ms(good[i].s, &ms, err, sizeof(err))) fail_msg("%s: %s", good[i].s, err);
    assert_int_equal(ms, good[i].ms);
  }
  static const char *const bad[] = {"",  "10",  "5x",  "s",   "-1s", "1.s", "0.5ms",
                                    "1 s", "5S", "99999999999999999999s", "1d", "5s "};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uint64_t ms;
    char err[160] = "";
    if (!sl_parse_duration_ms(bad[i], &ms, err, sizeof(err))) fail_msg("accepted '%s'", bad[i]);
    assert_true(err[0]);
  }
  char err[160];
  uint64_t ms;
  sl_parse_duration_ms("10", &ms, err, sizeof(err));
  assert_non_null(strstr(err, "needs a unit"));

  static const struct {
    uint64_t ms;
    const char *s;
  } fmt[] = {{0, "0s"},         {250, "250ms"}, {1000, "1s"},  {1500, "1500ms"}, {60000, "1m"},
             {90000, "90s"},    {120000, "2m"}, {3600000, "1h"}, {5400000, "90m"}};
  for (size_t i = 0; i < sizeof(fmt) / sizeof(fmt[0]); i++) {
    char buf[24];
    cfg_format_duration(fmt[i].ms, buf, sizeof(buf));
    assert_string_equal(buf, fmt[i].s);
    assert_int_equal(sl_parse_duration_ms(buf, &ms, err, sizeof(err)), 0);
    assert_int_equal(ms, fmt[i].ms);
  }
}

static void test_parse_rate(void **state) {
  (void)state;
  struct sl_rate r;
  char err[160];
  assert_int_equal(sl_parse_rate("5/s", &r, err, sizeof(err)), 0);
  assert_int_equal(r.period_ns, 200000000);
  assert_string_equal(r.text, "5/s");
  assert_int_equal(sl_parse_rate("300/m", &r, err, sizeof(err)), 0);
  assert_int_equal(r.period_ns, 200000000);
  assert_int_equal(sl_parse_rate("1/h", &r, err, sizeof(err)), 0);
  assert_int_equal(r.period_ns, UINT64_C(3600000000000));
  assert_int_equal(sl_parse_rate("1000000000/s", &r, err, sizeof(err)), 0);
  assert_int_equal(r.period_ns, 1);
  assert_int_equal(sl_parse_rate("0/s", &r, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "positive"));
  static const char *const bad[] = {"", "5", "5/", "5/d", "/s", "5 /s", "-5/s", "1.5/s",
                                    "1000000001/s", "5/sec", "99999999999999999999999/s"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (!sl_parse_rate(bad[i], &r, err, sizeof(err))) fail_msg("accepted '%s'", bad[i]);
}

/* Backend addresses (global.redis, sentinels) may be host names, kept
 * for lookup at connect time; a mistyped IPv4 address is not a name. */
static void test_parse_hostport(void **state) {
  (void)state;
  struct sl_hostport h;
  char err[200];
  assert_int_equal(sl_parse_hostport("redis-master.cache.svc.cluster.local:6379", &h, err,
                                     sizeof(err)), 0);
  assert_string_equal(h.host, "redis-master.cache.svc.cluster.local");
  assert_int_equal(h.port, 6379);
  assert_false(h.numeric);
  assert_string_equal(h.text, "redis-master.cache.svc.cluster.local:6379");
  assert_int_equal(sl_parse_hostport("localhost:26379", &h, err, sizeof(err)), 0);
  assert_false(h.numeric); /* looked up like any name (::1 and/or 127.0.0.1) */
  assert_int_equal(sl_parse_hostport("redis.:1", &h, err, sizeof(err)), 0); /* rooted */
  assert_int_equal(sl_parse_hostport("10.0.0.5:6379", &h, err, sizeof(err)), 0);
  assert_true(h.numeric);
  assert_string_equal(h.host, "10.0.0.5");
  assert_int_equal(sl_parse_hostport("[fd00::5]:6380", &h, err, sizeof(err)), 0);
  assert_true(h.numeric);
  assert_string_equal(h.host, "fd00::5");
  assert_int_equal(h.port, 6380);
  static const char *const bad[] = {"", "redis", "redis:", "redis:0", "redis:65536", ":6379",
                                    "10.0.0:6379", "1.2.3.4.5:1", "-redis:1", "redis-:1",
                                    "re_dis:1", "a..b:1", ".a:1", "fd00::5:6379", "[zz]:1",
                                    "redis:6o79", "a b:1"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (!sl_parse_hostport(bad[i], &h, err, sizeof(err))) fail_msg("accepted '%s'", bad[i]);
  char longname[300];
  memset(longname, 'a', 64);
  strcpy(longname + 64, ".example:1"); /* a 64-byte label */
  assert_int_not_equal(sl_parse_hostport(longname, &h, err, sizeof(err)), 0);
  sl_parse_hostport("10.0.0:6379", &h, err, sizeof(err));
  assert_non_null(strstr(err, "neither an IPv4 address nor a host name"));
}

static void test_parse_sockaddr(void **state) {
  (void)state;
  struct sl_sockaddr a;
  char err[200];
  assert_int_equal(sl_parse_sockaddr("0.0.0.0:8443", &a, err, sizeof(err)), 0);
  const struct sockaddr_in *sin = (const void *)&a.ss;
  assert_int_equal(sin->sin_family, AF_INET);
  assert_int_equal(ntohs(sin->sin_port), 8443);
  assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_ANY));
  assert_int_equal(a.len, sizeof(struct sockaddr_in));
  assert_string_equal(a.text, "0.0.0.0:8443");

  assert_int_equal(sl_parse_sockaddr("localhost:80", &a, err, sizeof(err)), 0);
  assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
  assert_int_equal(ntohs(sin->sin_port), 80);

  assert_int_equal(sl_parse_sockaddr("[::1]:9901", &a, err, sizeof(err)), 0);
  const struct sockaddr_in6 *sin6 = (const void *)&a.ss;
  assert_int_equal(sin6->sin6_family, AF_INET6);
  assert_int_equal(ntohs(sin6->sin6_port), 9901);
  assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
  assert_int_equal(a.len, sizeof(struct sockaddr_in6));
  assert_int_equal(sl_parse_sockaddr("[::]:8443", &a, err, sizeof(err)), 0);

  static const char *const bad[] = {"",          "127.0.0.1",      "127.0.0.1:",   "127.0.0.1:65536",
                                    ":80",       "::1:80",         "[::1]",        "[::1]80",
                                    "[zz]:80",   "example.com:80", "1.2.3:80",     "1.2.3.4:8o",
                                    "[::1:80",   "1.2.3.4:123456"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (!sl_parse_sockaddr(bad[i], &a, err, sizeof(err))) fail_msg("accepted '%s'", bad[i]);
  sl_parse_sockaddr("::1:80", &a, err, sizeof(err));
  assert_non_null(strstr(err, "brackets"));
  sl_parse_sockaddr("example.com:80", &a, err, sizeof(err));
  assert_non_null(strstr(err, "not resolved"));
}

static void test_parse_cidr(void **state) {
  (void)state;
  struct sl_cidr c;
  char err[200];
  assert_int_equal(sl_parse_cidr("10.0.0.0/8", &c, err, sizeof(err)), 0);
  assert_int_equal(c.family, AF_INET);
  assert_int_equal(c.prefix, 8);
  assert_int_equal(c.addr[0], 10);
  assert_int_equal(sl_parse_cidr("192.168.1.7", &c, err, sizeof(err)), 0);
  assert_int_equal(c.prefix, 32);
  assert_int_equal(sl_parse_cidr("0.0.0.0/0", &c, err, sizeof(err)), 0);
  assert_int_equal(c.prefix, 0);
  assert_int_equal(sl_parse_cidr("fd00::/8", &c, err, sizeof(err)), 0);
  assert_int_equal(c.family, AF_INET6);
  assert_int_equal(c.prefix, 8);
  assert_int_equal(c.addr[0], 0xfd);
  assert_int_equal(sl_parse_cidr("2001:db8::1", &c, err, sizeof(err)), 0);
  assert_int_equal(c.prefix, 128);
  assert_int_equal(sl_parse_cidr("10.128.0.0/9", &c, err, sizeof(err)), 0);

  assert_int_equal(sl_parse_cidr("10.1.2.3/8", &c, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "host bits"));
  assert_non_null(strstr(err, "10.0.0.0/8"));
  assert_int_equal(sl_parse_cidr("fd00::1/8", &c, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "fd00::/8"));
  static const char *const bad[] = {"", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/a", "::/129",
                                    "300.0.0.0/8", "10.0.0/8", "/8", "10.0.0.0/8/8", "10.0.0.0/-1"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (!sl_parse_cidr(bad[i], &c, err, sizeof(err))) fail_msg("accepted '%s'", bad[i]);
}

static void test_parse_timestamp(void **state) {
  (void)state;
  int64_t t;
  char err[200], buf[32];
  assert_int_equal(cfg_parse_timestamp("2026-12-01T00:00:00Z", &t, err, sizeof(err)), 0);
  assert_int_equal(t, 1796083200);
  cfg_format_timestamp(t, buf, sizeof(buf));
  assert_string_equal(buf, "2026-12-01T00:00:00Z");
  assert_int_equal(cfg_parse_timestamp("2026-12-01T02:00:00.5+02:00", &t, err, sizeof(err)), 0);
  assert_int_equal(t, 1796083200);
  assert_int_equal(cfg_parse_timestamp("2024-02-29T00:00:00Z", &t, err, sizeof(err)), 0);
  static const char *const bad[] = {"2026-12-01",           "2026-12-01T00:00:00",
                                    "2026-13-01T00:00:00Z", "2025-02-29T00:00:00Z",
                                    "2026-12-01 00:00:00Z", "2026-12-01T24:00:00Z",
                                    "2026-12-01T00:00:00Zx"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (!cfg_parse_timestamp(bad[i], &t, err, sizeof(err))) fail_msg("accepted '%s'", bad[i]);
}

static void test_regex_translation(void **state) {
  (void)state;
  static const struct {
    const char *in, *out;
    unsigned group;
  } cases[] = {
      {"^Homey/(?P<class>[A-Za-z]+)", "^Homey/([A-Za-z]+)", 1},
      {"^(a)(?<class>b)", "^(a)(b)", 2},
      {"(?:x)(?P<class>\\d+)", "(x)([0-9]+)", 2},
      {"\\((?P<class>[\\w\\-]+)\\)", "\\(([[:alnum:]_-]+)\\)", 1},
      {"(?P<class>[^\\]x])", "([^]x])", 1},
      {"(?P<class>[[:alpha:]])\\D", "([[:alpha:]])[^0-9]", 1},
      {"no groups", "no groups", 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    unsigned g = 99;
    char err[200];
    size_t off;
    char *p = cfg_regex_to_posix(cases[i].in, &g, err, sizeof(err), &off);
    if (!p) fail_msg("%s: %s", cases[i].in, err);
    assert_string_equal(p, cases[i].out);
    assert_int_equal(g, cases[i].group);
    free(p);
  }
  unsigned g;
  char err[200];
  size_t off = 0;
  assert_null(cfg_regex_to_posix("ab(?=c)", &g, err, sizeof(err), &off));
  assert_int_equal(off, 2);
  assert_null(cfg_regex_to_posix("(?P<class>a)(?P<class>b)", &g, err, sizeof(err), &off));
  assert_int_equal(off, 12);
  assert_null(cfg_regex_to_posix("[abc", &g, err, sizeof(err), &off));
  assert_null(cfg_regex_to_posix("abc\\", &g, err, sizeof(err), &off));
}

/* ---- a full, valid configuration ---------------------------------- */

static void test_full_config(void **state) {
  (void)state;
  struct sl_config *cfg = must_load(write_file("sluice.yaml", FULL));

  assert_int_equal(cfg->n_listeners, 2);
  const struct sl_listener_cfg *l = &cfg->listeners[0];
  assert_string_equal(l->name, "public");
  assert_true(ends_with(l->mark.file, "sluice.yaml"));
  assert_int_equal(l->mark.line, 2);
  assert_int_equal(l->mark.col, 5);
  assert_string_equal(l->address.text, "0.0.0.0:8443");
  assert_int_equal(ntohs(((const struct sockaddr_in *)&l->address.ss)->sin_port), 8443);
  assert_string_equal(l->tls_certificate, "/etc/sluice/tls.crt");
  assert_string_equal(l->tls_private_key, "/etc/sluice/tls.key");
  assert_int_equal(l->max_connections, 40000);
  assert_int_equal(l->connect_rate.per_ip.period_ns, 50000000);
  assert_string_equal(l->connect_rate.per_ip.text, "20/s");
  assert_int_equal(l->connect_rate.burst, 40);
  assert_int_equal(l->connect_rate.mode, SL_MODE_SHADOW);
  assert_int_not_equal(l->connect_rate.identity, 0);
  assert_int_equal(l->request_header_timeout_ms, 5000);
  assert_int_equal(l->idle_timeout_ms, 90000);
  assert_int_equal(l->header_bytes, 8192);
  assert_int_equal(l->headers, 50);
  assert_int_equal(l->h2_streams, 64);
  l = &cfg->listeners[1];
  assert_string_equal(l->name, "internal");
  assert_int_equal(l->address.ss.ss_family, AF_INET6);
  assert_null(l->tls_certificate);
  assert_int_equal(l->connect_rate.per_ip.period_ns, 0);
  assert_int_equal(l->max_connections, 50000);

  assert_string_equal(cfg->admin_address.text, "127.0.0.1:9901");
  assert_int_not_equal(cfg->admin_address.len, 0);

  assert_int_equal(cfg->n_upstreams, 2);
  const struct sl_upstream_cfg *u = &cfg->upstreams[0];
  assert_string_equal(u->name, "identity");
  assert_int_equal(u->mark.line, 16);
  assert_int_equal(u->max_connections, 128);
  assert_int_equal(u->max_pending, 512);
  assert_int_equal(u->connect_timeout_ms, 250);
  assert_int_equal(u->response_timeout_ms, 15000);
  assert_int_equal(u->idle_timeout_ms, 120000);
  assert_true(u->breaker.enabled);
  assert_int_equal(u->breaker.consecutive_failures, 10);
  assert_true(u->breaker.failure_ratio == 0.25);
  assert_int_equal(u->breaker.window_ms, 20000);
  assert_int_equal(u->breaker.min_requests, 40);
  assert_int_equal(u->breaker.slow_call_ms, 1500);
  assert_int_equal(u->breaker.open_for_ms, 7000);
  assert_int_equal(u->breaker.half_open_probes, 3);
  assert_int_equal(u->breaker.recovery_ramp_ms, 60000);
  assert_int_equal(u->breaker.mode, SL_MODE_SHADOW);
  u = &cfg->upstreams[1];
  assert_string_equal(u->name, "legacy");
  assert_false(u->breaker.enabled);
  assert_int_equal(((const struct sockaddr_in *)&u->address.ss)->sin_addr.s_addr,
                   htonl(INADDR_LOOPBACK));

  const struct sl_identify_cfg *id = &cfg->identify;
  assert_int_equal(id->n_trusted_proxies, 2);
  assert_int_equal(id->trusted_proxies[0].family, AF_INET);
  assert_int_equal(id->trusted_proxies[0].prefix, 8);
  assert_int_equal(id->trusted_proxies[1].family, AF_INET6);
  assert_int_equal(id->ipv6_prefix, 64);
  assert_null(id->device_class_header);
  assert_string_equal(id->device_class_ua_regex, "^Homey/(?P<class>[A-Za-z]+) \\d");
  assert_string_equal(id->device_class_ua_posix, "^Homey/([A-Za-z]+) [0-9]");
  assert_int_equal(id->device_class_ua_group, 1);
  assert_non_null(id->device_class_ua_compiled);
  regmatch_t m[2];
  const char *ua = "Homey/Pro 7 (Linux)";
  assert_int_equal(regexec(id->device_class_ua_compiled, ua, 2, m, 0), 0);
  assert_int_equal(m[1].rm_so, 6);
  assert_int_equal(m[1].rm_eo, 9);
  assert_string_equal(id->firmware_header, "x-firmware");
  assert_string_equal(id->device_id_header, "x-device");

  assert_int_equal(cfg->n_routes, 3);
  const struct sl_route_cfg *r = &cfg->routes[0];
  assert_string_equal(r->name, "connect");
  assert_int_equal(r->index, 0);
  assert_int_equal(r->mark.line, 39);
  assert_string_equal(r->match.path_prefix, "/v1/connect");
  assert_string_equal(r->match.method, "GET");
  assert_string_equal(r->match.host, "api.example.com");
  assert_int_equal(r->match.n_headers, 2);
  assert_string_equal(r->match.headers[0].name, "x-tenant");
  assert_string_equal(r->match.headers[0].value, "acme");
  assert_string_equal(r->match.headers[1].name, "x-beta");
  assert_null(r->match.headers[1].value);
  assert_string_equal(r->match.listener, "public");
  assert_int_equal(r->match.websocket, 1);
  assert_ptr_equal(r->upstream, &cfg->upstreams[0]);
  assert_int_equal(r->n_rate_limits, 3);
  const struct sl_rate_limit_cfg *rl = &r->rate_limits[0];
  assert_string_equal(rl->name, "connect/client_ip");
  assert_int_equal(rl->key, SL_KEY_CLIENT_IP);
  assert_int_equal(rl->rate.period_ns, 200000000);
  assert_int_equal(rl->burst, 10);
  assert_int_equal(rl->max_keys, 0);
  assert_int_equal(rl->mode, SL_MODE_INHERIT);
  rl = &r->rate_limits[1];
  assert_string_equal(rl->name, "connect/device_class");
  assert_int_equal(rl->key, SL_KEY_DEVICE_CLASS);
  assert_int_equal(rl->burst, 1000);
  assert_int_equal(rl->max_keys, 5000);
  assert_int_equal(rl->mode, SL_MODE_SHADOW);
  assert_int_equal(rl->n_overrides, 2);
  assert_string_equal(rl->overrides[0].match, "airtame-hub");
  assert_int_equal(rl->overrides[0].rate.period_ns, 5000000);
  assert_int_equal(rl->overrides[0].burst, 0);
  assert_string_equal(rl->overrides[1].match, "homey-pro");
  assert_int_equal(rl->overrides[1].rate.period_ns, 1200000000);
  assert_int_equal(rl->overrides[1].burst, 7);
  rl = &r->rate_limits[2];
  assert_string_equal(rl->name, "per-device");
  assert_int_equal(rl->key, SL_KEY_DEVICE_ID);
  assert_int_equal(rl->rate.period_ns, UINT64_C(360000000000));
  assert_int_equal(rl->burst, 1); /* default: one second's worth, at least 1 */
  assert_int_equal(r->concurrency.max, 512);
  assert_int_equal(r->concurrency.mode, SL_MODE_ENFORCE);
  assert_int_not_equal(r->concurrency.identity, 0);
  assert_int_equal(r->priority, SL_PRIORITY_HIGH);
  assert_int_equal(r->idle_timeout_ms, 600000);
  r = &cfg->routes[1];
  assert_string_equal(r->name, "legacy");
  assert_int_equal(r->index, 1);
  assert_int_equal(r->match.websocket, 0);
  assert_ptr_equal(r->upstream, &cfg->upstreams[1]);
  assert_int_equal(r->priority, SL_PRIORITY_LOW);
  r = &cfg->routes[2];
  assert_null(r->match.path_prefix);
  assert_int_equal(r->match.websocket, -1);
  assert_int_equal(r->priority, SL_PRIORITY_NORMAL);
  assert_int_equal(r->concurrency.max, 0);

  assert_int_equal(cfg->blocklist.n_firmware, 2);
  const struct sl_block_entry *b = &cfg->blocklist.firmware[0];
  assert_string_equal(b->name, "inc-2041");
  assert_string_equal(b->device_class, "airtame-hub");
  assert_string_equal(b->versions_text, ">=3.8.0-b3 <3.8.1");
  assert_int_equal(b->versions.n, 1);
  assert_int_equal(b->versions.clauses[0].n, 2);
  assert_int_equal(b->status, 403);
  assert_string_equal(b->reason, "connect handler full-table-scan, INC-2041");
  assert_int_equal(b->expires_unix, 1796083200);
  assert_int_equal(b->mark.line, 68);
  b = &cfg->blocklist.firmware[1];
  assert_null(b->name);
  assert_null(b->device_class);
  assert_int_equal(b->versions.n, 2);
  assert_int_equal(b->status, 410);
  assert_int_equal(b->expires_unix, 0);
  assert_int_equal(b->mode, SL_MODE_SHADOW);
  assert_int_equal(cfg->blocklist.unknown, SL_UNKNOWN_DENY);

  assert_int_equal(cfg->reject.retry_after_min_ms, 2000);
  assert_int_equal(cfg->reject.retry_after_max_ms, 60000);
  assert_true(cfg->reject.jitter == 0.3);
  assert_false(cfg->reject.body_json);

  assert_int_equal(cfg->n_shaping, 2);
  const struct sl_shaping_rule *sr = &cfg->shaping[0];
  assert_string_equal(sr->match.path_prefix, "/v1/");
  assert_int_equal(sr->delay_fixed_ms, 200);
  assert_int_equal(sr->delay_jitter_ms, 50);
  assert_true(sr->abort_percent == 5);
  assert_int_equal(sr->abort_status, 503);
  assert_int_equal(sr->rate_cap.period_ns, 0);
  sr = &cfg->shaping[1];
  assert_string_equal(sr->name, "cap");
  assert_string_equal(sr->match.listener, "internal");
  assert_int_equal(sr->rate_cap.period_ns, 10000000);
  assert_int_equal(sr->mode, SL_MODE_SHADOW);

  assert_int_equal(cfg->mode, SL_MODE_SHADOW);
  assert_int_equal(cfg->drain_timeout_ms, 30000);
  assert_int_equal(cfg->access_log, SL_ACCESS_LOG_SAMPLED);
  assert_int_equal(cfg->rejection_log_per_sec, 5);
  assert_null(cfg->include_dir);

  assert_int_equal(cfg->n_sources, 1);
  uint8_t md[32];
  unsigned int mdlen = 32;
  EVP_Digest(FULL, strlen(FULL), md, &mdlen, EVP_sha256(), NULL);
  assert_memory_equal(cfg->sources[0].sha256, md, 32);
  assert_true(ends_with(cfg->sources[0].path, "/sluice.yaml"));
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  assert_true(cfg->loaded_unix_ms > ((int64_t)ts.tv_sec - 60) * 1000);
  assert_true(cfg->loaded_unix_ms <= ((int64_t)ts.tv_sec + 1) * 1000);
  assert_int_equal(cfg->generation, 0);
  sl_config_free(cfg);
}

static void test_defaults(void **state) {
  (void)state;
  struct sl_config *cfg = must_load(write_file("sluice.yaml", BASE));
  const struct sl_listener_cfg *l = &cfg->listeners[0];
  assert_int_equal(l->max_connections, 50000);
  assert_int_equal(l->request_header_timeout_ms, 10000);
  assert_int_equal(l->idle_timeout_ms, 60000);
  assert_int_equal(l->header_bytes, 16384);
  assert_int_equal(l->headers, 100);
  assert_int_equal(l->h2_streams, 100);
  assert_int_equal(l->connect_rate.per_ip.period_ns, 0);
  assert_int_equal(cfg->admin_address.len, 0);
  const struct sl_upstream_cfg *u = &cfg->upstreams[0];
  assert_int_equal(u->max_connections, 256);
  assert_int_equal(u->max_pending, 1024);
  assert_int_equal(u->connect_timeout_ms, 1000);
  assert_int_equal(u->response_timeout_ms, 10000);
  assert_int_equal(u->idle_timeout_ms, 60000);
  assert_false(u->breaker.enabled);
  assert_int_equal(cfg->identify.ipv6_prefix, 128);
  assert_int_equal(cfg->identify.n_trusted_proxies, 0);
  assert_string_equal(cfg->identify.device_class_header, "x-device-class");
  assert_string_equal(cfg->identify.firmware_header, "x-firmware-version");
  assert_string_equal(cfg->identify.device_id_header, "x-device-id");
  assert_null(cfg->identify.device_class_ua_compiled);
  const struct sl_route_cfg *r = &cfg->routes[0];
  assert_int_equal(r->match.websocket, -1);
  assert_int_equal(r->priority, SL_PRIORITY_NORMAL);
  assert_int_equal(r->idle_timeout_ms, 0);
  assert_int_equal(cfg->blocklist.n_firmware, 0);
  assert_int_equal(cfg->blocklist.unknown, SL_UNKNOWN_ALLOW);
  assert_int_equal(cfg->reject.retry_after_min_ms, 1000);
  assert_int_equal(cfg->reject.retry_after_max_ms, 120000);
  assert_true(cfg->reject.jitter == 0.5);
  assert_true(cfg->reject.body_json);
  assert_int_equal(cfg->n_shaping, 0);
  assert_int_equal(cfg->mode, SL_MODE_ENFORCE);
  assert_int_equal(cfg->drain_timeout_ms, 20000);
  assert_int_equal(cfg->access_log, SL_ACCESS_LOG_OFF);
  assert_int_equal(cfg->rejection_log_per_sec, 10);
  sl_config_free(cfg);

  /* a breaker section with nothing in it takes the documented defaults */
  cfg = must_load(write_file("sluice.yaml", "listeners: [ { name: a, address: \"127.0.0.1:1\" } ]\n"
                                            "routes: [ { name: default, upstream: identity } ]\n"
                                            "upstreams:\n"
                                            "  identity:\n"
                                            "    address: \"127.0.0.1:8081\"\n"
                                            "    circuit_breaker: {}\n"));
  const struct sl_breaker_cfg *b = &cfg->upstreams[0].breaker;
  assert_true(b->enabled);
  assert_int_equal(b->consecutive_failures, 20);
  assert_true(b->failure_ratio == 0.5);
  assert_int_equal(b->window_ms, 10000);
  assert_int_equal(b->min_requests, 50);
  assert_int_equal(b->slow_call_ms, 0);
  assert_int_equal(b->open_for_ms, 5000);
  assert_int_equal(b->half_open_probes, 5);
  assert_int_equal(b->recovery_ramp_ms, 30000);
  sl_config_free(cfg);
}

static void test_example_config_is_valid(void **state) {
  (void)state;
  struct sl_config *cfg = must_load("deploy/examples/sluice.yaml");
  assert_int_equal(cfg->n_listeners, 1);
  assert_string_equal(cfg->listeners[0].address.text, "127.0.0.1:8080");
  assert_string_equal(cfg->admin_address.text, "127.0.0.1:9901");
  assert_string_equal(cfg->upstreams[0].name, "identity");
  assert_string_equal(cfg->upstreams[0].address.text, "127.0.0.1:8081");
  assert_int_equal(cfg->n_routes, 2);
  assert_string_equal(cfg->routes[0].name, "connect");
  assert_string_equal(cfg->routes[1].name, "default");
  sl_config_free(cfg);
}

/* ---- errors, one class at a time, with their exact position ------- */

/* A route may have 64 rate limits (admission keeps one bit per limit to
 * give back what a refused request was charged); 65 is an error at the
 * list. */
static void test_rate_limits_per_route_bounded(void **state) {
  (void)state;
  char yaml[16384];
  for (int n = 64; n <= 65; n++) {
    size_t len = (size_t)snprintf(yaml, sizeof(yaml), "%s    rate_limits:\n", BASE);
    for (int i = 0; i < n; i++)
      len += (size_t)snprintf(yaml + len, sizeof(yaml) - len,
                              "      - { name: l%d, key: client_ip, rate: 5/s }\n", i);
    if (n == 64) {
      struct sl_config *cfg = must_load(write_file("sluice.yaml", yaml));
      assert_int_equal(cfg->routes[0].n_rate_limits, 64);
      sl_config_free(cfg);
    } else {
      expect_only_error(yaml, 11, 7, "route 'default': 65 rate limits, at most 64 are allowed");
    }
  }
}

static void test_error_types(void **state) {
  (void)state;
  expect_only_error(BASE "admin: \"127.0.0.1:9901\"\n", 10, 8,
                    "admin: expected a mapping, got '127.0.0.1:9901'");
  expect_only_error(BASE "shaping: { match: {} }\n", 10, 10, "shaping: expected a list, got a mapping");
  expect_only_error(BASE "    rate_limits: [ { key: client_ip, rate: [5, s] } ]\n", 10, 44,
                    "rate: expected a string, got a list");
  expect_only_error(BASE "    priority: { level: high }\n", 10, 15, "priority: expected a string");
  expect_only_error(BASE "rejection_log_per_sec: ten\n", 10, 24,
                    "rejection_log_per_sec: expected an integer, got 'ten'");
  expect_only_error(BASE "rejection_log_per_sec: \"10\"\n", 10, 24, "expected an integer, got quoted");
  expect_only_error(BASE "rejection_log_per_sec: -1\n", 10, 24, "expected an integer");
  expect_only_error(BASE "rejection_log_per_sec: 99999999999\n", 10, 24, "out of range (0..1000000)");
  expect_only_error(BASE "    match: { websocket: yes }\n", 10, 25,
                    "websocket: expected true or false, got 'yes'");
  expect_only_error(BASE "reject: { retry_after: { jitter: half } }\n", 10, 34,
                    "jitter: expected a number, got 'half'");
  expect_only_error(BASE "access_log: true\n", 10, 13,
                    "access_log: expected one of off, on, sampled, got 'true'");
  expect_only_error(BASE "mode: enforced\n", 10, 7, "mode: expected one of enforce, shadow");
  expect_only_error(BASE "  - [ oops ]\n", 10, 5, "routes item: expected a mapping, got a list");
  expect_only_error("- just\n- a list\n", 1, 1, "the top level must be a mapping");
  expect_only_error(BASE "    name: dup\n", 10, 5, "duplicate key 'name' (first defined at line 8, column 5)");
}

static void test_error_values(void **state) {
  (void)state;
  /* durations */
  expect_only_error(BASE "drain_timeout: 20\n", 10, 16, "duration '20' needs a unit");
  expect_only_error(BASE "drain_timeout: 20 s\n", 10, 16, "unknown duration unit ' s' in '20 s'");
  expect_only_error(BASE "drain_timeout: 3d\n", 10, 16, "unknown duration unit 'd'");
  expect_only_error(BASE "    idle_timeout: 9999999h\n", 10, 19, "longer than a year");
}

static void test_error_values2(void **state) {
  (void)state;
  /* a zero timeout where a positive one is needed */
  expect_only_error(
      "listeners:\n"
      "  - name: public\n"
      "    address: \"127.0.0.1:8080\"\n"
      "    timeouts: { idle: 0s }\n"
      "upstreams: { identity: { address: \"127.0.0.1:8081\", timeouts: { connect: 1ms } } }\n"
      "routes: [ { name: default, upstream: identity } ]\n",
      4, 23, "idle: must be at least 1ms");
  /* rates and bursts */
  expect_only_error(BASE "    rate_limits: [ { key: client_ip, rate: \"0/s\" } ]\n", 10, 44,
                    "rate: rate '0/s' must be positive");
  expect_only_error(BASE "    rate_limits: [ { key: client_ip, rate: 5/d } ]\n", 10, 44,
                    "unknown rate unit '/d'");
  expect_only_error(BASE "    rate_limits: [ { key: client_ip, rate: 5/s, burst: 0 } ]\n", 10, 56,
                    "burst: must be at least 1");
  expect_only_error(BASE "    rate_limits: [ { key: client_ip, rate: 5/s, max_keys: 0 } ]\n", 10,
                    59, "max_keys: 0 is out of range");
  expect_only_error(BASE "    rate_limits: [ { key: ip, rate: 5/s } ]\n", 10, 27,
                    "key: expected one of client_ip, device_class, device_id, route, got 'ip'");
  expect_only_error(BASE "    rate_limits: [ { rate: 5/s } ]\n", 10, 20, "missing 'key'");
  expect_only_error(BASE "    rate_limits: [ { key: route, rate: 5/s, override: { a: 1/s } } ]\n",
                    10, 55, "override: a limit keyed by route");
  expect_only_error(BASE "    rate_limits: [ { key: device_class, rate: 5/s, override: { a: 1/x } } ]\n",
                    10, 67, "override 'a': unknown rate unit");
  /* reject */
  expect_only_error(BASE "reject: { retry_after: { min: 10s, max: 5s } }\n", 10, 31,
                    "retry_after: min (10s) is greater than max (5s)");
  expect_only_error(BASE "reject: { retry_after: { min: 5m } }\n", 10, 31,
                    "retry_after: min (5m) is greater than max (2m)");
  expect_only_error(BASE "reject: { retry_after: { jitter: 1.5 } }\n", 10, 34, "jitter: 1.5 is out of range (0..1)");
  expect_only_error(BASE "reject: { body: html }\n", 10, 17, "body: expected one of json, text");
  /* percent and status */
  expect_only_error(BASE "shaping: [ { abort: { percent: 101 } } ]\n", 10, 32,
                    "percent: 101 is out of range (0..100)");
  expect_only_error(BASE "shaping: [ { abort: { percent: -1 } } ]\n", 10, 32,
                    "percent: -1 is out of range (0..100)");
  expect_only_error(BASE "shaping: [ { abort: { percent: 5, status: 99 } } ]\n", 10, 43,
                    "status: 99 is out of range (100..599)");
  expect_only_error(BASE "blocklist: { firmware: [ { versions: \"<2\", status: 600 } ] }\n", 10,
                    52, "status: 600 is out of range (100..599)");
  /* addresses and CIDRs */
  expect_only_error(BASE "admin: { address: \"api.example.com:9901\" }\n", 10, 19,
                    "address: 'api.example.com' is not a numeric IPv4 address");
  expect_only_error(BASE "admin: { address: \"127.0.0.1\" }\n", 10, 19, "has no port");
}

static void test_error_values3(void **state) {
  (void)state;
  expect_only_error("listeners: [ { name: a, address: \"127.0.0.1:1\" } ]\n"
                    "upstreams:\n"
                    "  identity: { address: \"127.0.0.1:0\" }\n"
                    "routes: [ { name: default, upstream: identity } ]\n",
                    3, 24, "address: port 0 is not a valid upstream port");
  expect_only_error(BASE "identify: { client_ip: { trusted_proxies: [ 10.0.0.0/8, 10.1.2.3/8 ] } }\n",
                    10, 57, "'10.1.2.3/8' has host bits set below the /8 prefix (did you mean 10.0.0.0/8?)");
  expect_only_error(BASE "identify: { client_ip: { trusted_proxies: [ \"10.0.0.0/33\" ] } }\n", 10,
                    45, "prefix length /33 out of range");
  expect_only_error(BASE "identify: { client_ip: { ipv6_prefix: 129 } }\n", 10, 39,
                    "ipv6_prefix: 129 is out of range (1..128)");
  /* headers */
  expect_only_error(BASE "identify: { firmware: { header: \"x firmware\" } }\n", 10, 33,
                    "header: 'x firmware' is not a valid header name");
  expect_only_error(BASE "identify: { device_class: { header: x-class, user_agent: \"(?P<class>a)\" } }\n",
                    10, 27, "give either 'header' or 'user_agent', not both");
  /* the user_agent regex */
  expect_only_error(BASE "identify: { device_class: { user_agent: \"^Homey/([A-Z]+)\" } }\n", 10,
                    41, "needs a group named 'class'");
  expect_only_error(BASE "identify: { device_class: { user_agent: \"^Homey/(?=x)(?P<class>a)\" } }\n",
                    10, 49, "unsupported group syntax '(?='");
  expect_only_error(BASE "identify: { device_class: { user_agent: \"(?P<class>a{2,1})\" } }\n", 10,
                    41, "invalid regular expression");
  /* paths, methods, names */
  expect_only_error(BASE "    match: { path_prefix: v1 }\n", 10, 27, "path_prefix: must start with '/'");
  /* Requests are matched on their normalised path: a prefix must be one. */
  expect_only_error(BASE "    match: { path_prefix: /v1//connect }\n", 10, 27,
                    "path_prefix: '/v1//connect' is not a normalised path; requests are matched on "
                    "their normal form, write '/v1/connect'");
  expect_only_error(BASE "    match: { path_prefix: /v1/%63onnect }\n", 10, 27, "write '/v1/connect'");
  expect_only_error(BASE "    match: { path_prefix: /v1/./connect }\n", 10, 27, "write '/v1/connect'");
  expect_only_error(BASE "    match: { path_prefix: /v1/%3a }\n", 10, 27, "write '/v1/%3A'");
  expect_only_error(BASE "    match: { path_prefix: \"/v1/a%2Fb\" }\n", 10, 27,
                    "can never match: requests with such a path are refused (path_encoded_slash)");
  expect_only_error(BASE "    match: { path_prefix: /.. }\n", 10, 27, "(path_escapes_root)");
  expect_only_error(BASE "    match: { path_prefix: \"/v1?x\" }\n", 10, 27, "has a query or fragment");
  expect_only_error(BASE "    match: { method: \"GE T\" }\n", 10, 22, "not a valid HTTP method");
  expect_only_error(BASE "    match: { host: \"https://x\" }\n", 10, 20, "is not a host name");
  expect_only_error(BASE "  - name: \"bad name\"\n    upstream: identity\n", 10, 11,
                    "name: 'bad name' is not a valid name");
  /* timestamps and version ranges: the column of the offending token */
  expect_only_error(BASE "blocklist: { firmware: [ { versions: \"<2\", expires: 2026-12-01 } ] }\n",
                    10, 53, "expires: invalid timestamp '2026-12-01'");
  expect_only_error(BASE "blocklist:\n"
                         "  firmware:\n"
                         "    - versions: \">=3.8.0-b3 <<3.8.1\"\n",
                    12, 30, "versions: not a version");
  expect_only_error(BASE "blocklist:\n"
                         "  firmware:\n"
                         "    - versions: \">=1.0 banana\"\n",
                    12, 24, "versions: not a version");
  expect_only_error(BASE "blocklist: { firmware: [ { class: x } ] }\n", 10, 26, "missing 'versions'");
  expect_only_error(BASE "blocklist: { unknown: block }\n", 10, 23, "unknown: expected one of allow, deny");
  expect_only_error(BASE "upstreams2: {}\n", 10, 1, "unknown key 'upstreams2'");
}

static void test_error_references(void **state) {
  (void)state;
  expect_only_error(BASE "  - name: other\n    upstream: identiy\n", 11, 15,
                    "upstream: 'identiy' is not a defined upstream (did you mean 'identity'?)");
  expect_only_error(BASE "  - name: other\n    upstream: elsewhere\n", 11, 15,
                    "'elsewhere' is not a defined upstream; defined upstreams are: identity");
  expect_only_error(BASE "  - name: other\n", 10, 5, "route 'other': missing 'upstream'");
  expect_only_error(BASE "    match: { listener: pubic }\n", 10, 24,
                    "listener: 'pubic' is not a defined listener (did you mean 'public'?)");
  expect_only_error(BASE "shaping: [ { match: { listener: admin } } ]\n", 10, 33,
                    "'admin' is not a defined listener; defined listeners are: public");
  expect_only_error(BASE "  - name: default\n    upstream: identity\n", 10, 5,
                    "duplicate route name 'default' (first defined at");
}

static void test_error_references2(void **state) {
  (void)state;
  expect_only_error("listeners:\n"
                    "  - { name: public, address: \"127.0.0.1:1\" }\n"
                    "  - { name: public, address: \"127.0.0.1:2\" }\n"
                    "upstreams: { identity: { address: \"127.0.0.1:8081\" } }\n"
                    "routes: [ { name: default, upstream: identity } ]\n",
                    3, 5, "duplicate listener name 'public'");
  expect_only_error("upstreams: { identity: { address: \"127.0.0.1:8081\" } }\n"
                    "routes: [ { name: default, upstream: identity } ]\n",
                    1, 1, "no listeners defined");
  expect_only_error("listeners: []\n"
                    "upstreams: { identity: { address: \"127.0.0.1:8081\" } }\n"
                    "routes: [ { name: default, upstream: identity } ]\n",
                    1, 1, "no listeners defined");
  expect_only_error("listeners: [ { name: a, address: \"127.0.0.1:1\" } ]\n"
                    "upstreams: { identity: { address: \"127.0.0.1:8081\" } }\n"
                    "routes:\n",
                    3, 1, "no routes defined");
  expect_only_error(BASE "    rate_limits:\n"
                         "      - { key: client_ip, rate: 5/s }\n"
                         "      - { key: client_ip, rate: 50/m }\n",
                    12, 9, "duplicate rate limit name 'default/client_ip' in route 'default'");
  expect_only_error(BASE "blocklist:\n"
                         "  firmware:\n"
                         "    - { name: a, versions: \"<1\" }\n"
                         "    - { name: a, versions: \"<2\" }\n",
                    13, 7, "duplicate blocklist entry name 'a'");
  /* an empty file, a file of comments */
  struct sl_config_errors errs = {0};
  assert_null(load_text("# nothing yet\n", &errs));
  expect_error(&errs, "sluice.yaml", 1, 1, "no listeners defined");
  expect_error(&errs, "sluice.yaml", 1, 1, "no routes defined");
  sl_config_errors_free(&errs);
  /* a missing file */
  assert_null(sl_config_load("/nonexistent/sluice.yaml", &errs));
  assert_int_equal(errs.n, 1);
  assert_string_equal(errs.items[0].file, "/nonexistent/sluice.yaml");
  assert_int_equal(errs.items[0].line, 0);
  assert_non_null(strstr(errs.items[0].message, "cannot read"));
  sl_config_errors_free(&errs);
}

static void test_did_you_mean(void **state) {
  (void)state;
  expect_only_error(BASE "    upstrem: identity\n", 10, 5,
                    "unknown key 'upstrem' in route (did you mean 'upstream'?)");
  expect_only_error(BASE "    rate_limit: []\n", 10, 5, "(did you mean 'rate_limits'?)");
  expect_only_error(BASE "lsteners: []\n", 10, 1, "unknown key 'lsteners' in the top level (did you mean 'listeners'?)");
  expect_only_error("listeners: [ { name: a, address: \"127.0.0.1:1\" } ]\n"
                    "routes: [ { name: default, upstream: identity } ]\n"
                    "upstreams:\n"
                    "  identity:\n"
                    "    address: \"127.0.0.1:8081\"\n"
                    "    circuit_braker: {}\n",
                    6, 5, "unknown key 'circuit_braker' in upstream (did you mean 'circuit_breaker'?)");
  expect_only_error(BASE "reject: { retry_after: { maxx: 5s } }\n", 10, 26,
                    "unknown key 'maxx' in retry_after (did you mean 'max'?)");
  /* nothing close: the valid keys are listed */
  expect_only_error(BASE "    flavour: vanilla\n", 10, 5,
                    "unknown key 'flavour' in route; valid keys are: name, match, upstream, "
                    "rate_limits, concurrency, priority, idle_timeout");
}

static void test_duplicate_keys(void **state) {
  (void)state;
  struct sl_config_errors errs = {0};
  assert_null(load_text(BASE "mode: shadow\n"
                             "drain_timeout: 5s\n"
                             "mode: enforce\n"
                             "upstreams: {}\n",
                        &errs));
  assert_int_equal(errs.n, 2);
  expect_error(&errs, "sluice.yaml", 12, 1, "duplicate key 'mode' (first defined at line 10, column 1)");
  expect_error(&errs, "sluice.yaml", 13, 1, "duplicate key 'upstreams' (first defined at line 4, column 1)");
  sl_config_errors_free(&errs);
  /* in a flow mapping, deep down */
  expect_only_error(BASE "    match: { path_prefix: /a, method: GET, path_prefix: /b }\n", 10, 44,
                    "duplicate key 'path_prefix' (first defined at line 10, column 14)");
}

static void test_multiple_errors(void **state) {
  (void)state;
  struct sl_config_errors errs = {0};
  assert_null(load_text("listeners:\n"                                     /* 1 */
                        "  - name: public\n"                               /* 2 */
                        "    adress: \"0.0.0.0:8443\"\n"                   /* 3 */
                        "    max_connections: lots\n"                      /* 4 */
                        "upstreams:\n"                                     /* 5 */
                        "  identity:\n"                                    /* 6 */
                        "    address: \"127.0.0.1:8081\"\n"                /* 7 */
                        "    timeouts: { connect: 10 }\n"                  /* 8 */
                        "routes:\n"                                        /* 9 */
                        "  - name: connect\n"                              /* 10 */
                        "    upstream: identiti\n"                         /* 11 */
                        "    rate_limits: [ { key: client_ip, rate: 5/x } ]\n" /* 12 */
                        "mode: enforced\n",                                /* 13 */
                        &errs));
  assert_int_equal(errs.n, 7);
  expect_error(&errs, "sluice.yaml", 2, 5, "listener: missing 'address'");
  expect_error(&errs, "sluice.yaml", 3, 5, "unknown key 'adress' in listener (did you mean 'address'?)");
  expect_error(&errs, "sluice.yaml", 4, 22, "max_connections: expected an integer, got 'lots'");
  expect_error(&errs, "sluice.yaml", 8, 26, "connect: duration '10' needs a unit");
  expect_error(&errs, "sluice.yaml", 11, 15, "'identiti' is not a defined upstream");
  expect_error(&errs, "sluice.yaml", 12, 44, "unknown rate unit");
  expect_error(&errs, "sluice.yaml", 13, 7, "mode: expected one of enforce, shadow");
  /* sorted by position */
  for (size_t i = 1; i < errs.n; i++)
    assert_true(errs.items[i - 1].line < errs.items[i].line ||
                (errs.items[i - 1].line == errs.items[i].line && errs.items[i - 1].col <= errs.items[i].col));

  /* the printed form */
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  sl_config_errors_print(&errs, f);
  fclose(f);
  char expect[600];
  snprintf(expect, sizeof(expect), "%s/sluice.yaml:2:5: listener: missing 'address'", g_dir);
  assert_memory_equal(buf, expect, strlen(expect));
  assert_non_null(strstr(buf, "/sluice.yaml:13:7: mode: expected one of enforce, shadow, got 'enforced'\n"));
  free(buf);
  /* errors accumulate across loads until freed */
  size_t n = errs.n;
  assert_null(load_text("mode: x\n", &errs));
  assert_true(errs.n > n);
  sl_config_errors_free(&errs);
  assert_int_equal(errs.n, 0);
  assert_null(errs.items);
}

static void test_error_cap(void **state) {
  (void)state;
  size_t cap = 64 * 1024, off;
  char *yaml = malloc(cap);
  assert_non_null(yaml);
  off = (size_t)snprintf(yaml, cap, "%sidentify: { client_ip: { trusted_proxies: [", BASE);
  for (int i = 0; i < 3000; i++) off += (size_t)snprintf(yaml + off, cap - off, "%sx", i ? "," : "");
  snprintf(yaml + off, cap - off, "] } }\n");
  struct sl_config_errors errs = {0};
  assert_null(load_text(yaml, &errs));
  assert_int_equal(errs.n, 1001);
  assert_string_equal(errs.items[0].message, "trusted_proxies: 'x' is not an IPv4 address");
  assert_null(errs.items[1000].file);
  assert_string_equal(errs.items[1000].message, "too many errors; fix these first");
  sl_config_errors_free(&errs);
  free(yaml);
}

static void test_yaml_syntax_errors(void **state) {
  (void)state;
  expect_only_error(BASE "mode: [enforce\n", 11, 1, "syntax error: did not find expected ',' or ']'");
  expect_only_error(BASE "  bad indentation: here\n", 10, 3, "syntax error");
  expect_only_error(BASE "mode: \"unterminated\n", 11, 1, "syntax error: found unexpected end of stream");
  expect_only_error(BASE "---\nmode: shadow\n", 10, 1, "only one YAML document per file");
  expect_only_error(BASE "blocklist: { firmware: [ { versions: >=3.8.0 } ] }\n", 10, 38,
                    "a value starting with '>' or '|' must be quoted");
  expect_only_error(BASE "blocklist:\n  firmware:\n    - versions: >=3.8.0\n", 12, 18,
                    "a value starting with '>' or '|' must be quoted");
  expect_only_error(BASE "mode: *nowhere\n", 10, 7, "alias '*nowhere' refers to no (finished) anchor");
  expect_only_error(BASE "? [a, b]\n: c\n", 10, 3, "mapping keys must be plain strings, not a list");
  /* invalid UTF-8: a reader error, positioned from its byte offset */
  expect_only_error(BASE "mode: \"\xff\"\n", 10, 8, "invalid input");
  /* aliases that stay within bounds are fine */
  struct sl_config *cfg = must_load(write_file(
      "sluice.yaml", "listeners:\n"
                     "  - &l { name: public, address: \"127.0.0.1:8080\" }\n"
                     "upstreams:\n"
                     "  identity: &u { address: \"127.0.0.1:8081\" }\n"
                     "  copy: *u\n"
                     "routes:\n"
                     "  - { name: a, upstream: identity, rate_limits: [ &rl { key: client_ip, rate: 5/s } ] }\n"
                     "  - { name: b, upstream: copy, rate_limits: [ *rl ] }\n"));
  assert_int_equal(cfg->n_upstreams, 2);
  assert_string_equal(cfg->upstreams[1].address.text, "127.0.0.1:8081");
  assert_string_equal(cfg->routes[1].rate_limits[0].name, "b/client_ip");
  sl_config_free(cfg);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char MAIN_WITH_INCLUDE[];

/* The documented bounds (README "Limits and bad input"), written out so the
 * tests hold the loader to them. */
#define LIMIT_NODES 200000u
#define LIMIT_DEPTH 64u
#define LIMIT_SCALAR 65536u

static void test_billion_laughs(void **state) {
  (void)state;
  char yaml[4096];
  size_t off = (size_t)snprintf(yaml, sizeof(yaml), "%sa0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n", BASE);
  for (int i = 1; i <= 9; i++) {
    off += (size_t)snprintf(yaml + off, sizeof(yaml) - off, "a%d: &a%d [", i, i);
    for (int j = 0; j < 10; j++)
      off += (size_t)snprintf(yaml + off, sizeof(yaml) - off, "%s*a%d", j ? ", " : "", i - 1);
    off += (size_t)snprintf(yaml + off, sizeof(yaml) - off, "]\n");
  }
  double t0 = now_s();
  struct sl_config_errors errs = {0};
  assert_null(load_text(yaml, &errs));
  double dt = now_s() - t0;
  assert_int_equal(errs.n, 1);
  expect_error(&errs, "sluice.yaml", 15, 10, "too many nodes (limit 200000");
  /* level n expands to 1.11..e(n+1) nodes: levels 0..4 add up to 124,000,
   * the first alias of level 5 (line 15, column 10) adds 111,111 more */
  assert_true(dt < 1.0);
  sl_config_errors_free(&errs);

  /* many cheap aliases are bounded too: the 1001st fails, at its column */
  size_t cap = 200000;
  char *big = malloc(cap);
  assert_non_null(big);
  off = (size_t)snprintf(big, cap, "%sx: &x 1\ny: [", BASE);
  for (int j = 0; j < 1000; j++) off += (size_t)snprintf(big + off, cap - off, "*x,");
  snprintf(big + off, cap - off, "*x]\n");
  assert_null(load_text(big, &errs));
  assert_int_equal(errs.n, 1);
  expect_error(&errs, "sluice.yaml", 11, 5 + 3 * 1000, "too many aliases (limit 1000");
  sl_config_errors_free(&errs);

  /* and so are anchors */
  off = (size_t)snprintf(big, cap, "%sy: [", BASE);
  for (int j = 0; j < 1001; j++) off += (size_t)snprintf(big + off, cap - off, "&a%04d 1,", j);
  snprintf(big + off, cap - off, "1]\n");
  assert_null(load_text(big, &errs));
  assert_int_equal(errs.n, 1);
  /* "&a0000 1," is 9 bytes; the 1001st starts at column 5 + 9 * 1000 */
  expect_error(&errs, "sluice.yaml", 10, 5 + 9 * 1000, "too many anchors (limit 1000");
  sl_config_errors_free(&errs);
  free(big);
}

/* BASE as a document is 21 nodes (the root mapping, 7 for listeners, 6 for
 * upstreams, 7 for routes); "x: [" adds the key and the list. */
#define BASE_NODES 21u

/* BASE then "x: [a,a,...]" with |items| items; malloc'd. */
static char *base_with_list(size_t items) {
  size_t cap = sizeof(BASE) + 8 + 2 * items;
  char *yaml = malloc(cap);
  assert_non_null(yaml);
  size_t off = (size_t)snprintf(yaml, cap, "%sx: [", BASE);
  for (size_t i = 0; i < items; i++) {
    yaml[off++] = 'a';
    yaml[off++] = i + 1 < items ? ',' : ']';
  }
  yaml[off++] = '\n';
  yaml[off] = '\0';
  return yaml;
}

/* A list of two million items (the 3.9 MiB file that cost 723 MiB) fails at
 * the item that crosses the node bound, and a file exactly at the bound is
 * parsed (and reaches the schema, which rejects the unknown key). */
static void test_node_limit(void **state) {
  (void)state;
  struct sl_config_errors errs = {0};
  size_t fit = LIMIT_NODES - BASE_NODES - 2; /* items that fit */
  char *yaml = base_with_list(fit);
  assert_null(load_text(yaml, &errs));
  assert_int_equal(errs.n, 1);
  expect_error(&errs, "sluice.yaml", 10, 1, "unknown key 'x' in the top level");
  sl_config_errors_free(&errs);
  free(yaml);

  yaml = base_with_list(fit + 1);
  assert_null(load_text(yaml, &errs));
  assert_int_equal(errs.n, 1);
  /* item i (from 0) is at column 5 + 2i */
  expect_error(&errs, "sluice.yaml", 10, 5 + 2 * (uint32_t)fit,
               "too many nodes (limit 200000 over the configuration and its drop-ins");
  sl_config_errors_free(&errs);
  free(yaml);

  double t0 = now_s();
  yaml = base_with_list(2000000);
  assert_true(strlen(yaml) < (4u << 20));
  assert_null(load_text(yaml, &errs));
  assert_int_equal(errs.n, 1);
  expect_error(&errs, "sluice.yaml", 10, 5 + 2 * (uint32_t)fit, "too many nodes (limit 200000");
  sl_config_errors_free(&errs);
  free(yaml);
  assert_true(now_s() - t0 < 5.0);
}

/* The node bound is a total: two drop-ins of 110,000 nodes each, both
 * fine alone, are not. The error names the drop-in that crossed it. */
static void test_node_limit_across_dropins(void **state) {
  (void)state;
  size_t items = 110000, cap = 16 + 2 * items;
  char *drop = malloc(cap);
  assert_non_null(drop);
  size_t off = (size_t)snprintf(drop, cap, "mode: [");
  for (size_t i = 0; i < items; i++) {
    drop[off++] = 'a';
    drop[off++] = i + 1 < items ? ',' : ']';
  }
  drop[off++] = '\n';
  drop[off] = '\0';
  write_file("conf.d/10-a.yaml", drop);
  write_file("conf.d/20-b.yaml", drop);
  free(drop);
  struct sl_config_errors errs = {0};
  assert_null(sl_config_load(write_file("sluice.yaml", MAIN_WITH_INCLUDE), &errs));
  assert_int_equal(errs.n, 1);
  /* the main file is 43 nodes and 10-a.yaml 110,003 (root, key, list,
   * items): 20-b.yaml may have 89,954, so its item 89,951 (from 0) is the
   * one over */
  size_t main_nodes = 43, a_nodes = 3 + items;
  size_t b_fit = LIMIT_NODES - main_nodes - a_nodes - 3;
  expect_error(&errs, "conf.d/20-b.yaml", 1, 8 + 2 * (uint32_t)b_fit, "too many nodes (limit 200000");
  sl_config_errors_free(&errs);

  /* aliases too: 600 in the main file and 600 in a drop-in */
  unlink(write_file("conf.d/10-a.yaml", ""));
  unlink(write_file("conf.d/20-b.yaml", ""));
  char *text = malloc(8192);
  assert_non_null(text);
  off = (size_t)snprintf(text, 8192, "%sx: &x 1\ny: [", MAIN_WITH_INCLUDE);
  for (int j = 0; j < 600; j++) off += (size_t)snprintf(text + off, 8192 - off, "%s*x", j ? "," : "");
  snprintf(text + off, 8192 - off, "]\n");
  const char *path = write_file("sluice.yaml", text);
  off = (size_t)snprintf(text, 8192, "z: &z 1\nw: [");
  for (int j = 0; j < 600; j++) off += (size_t)snprintf(text + off, 8192 - off, "%s*z", j ? "," : "");
  snprintf(text + off, 8192 - off, "]\n");
  write_file("conf.d/30-c.yaml", text);
  free(text);
  assert_null(sl_config_load(path, &errs));
  assert_int_equal(errs.n, 1);
  /* the 401st alias of 30-c.yaml: "w: [" then 400 of "*z," */
  expect_error(&errs, "conf.d/30-c.yaml", 2, 5 + 3 * 400, "too many aliases (limit 1000");
  sl_config_errors_free(&errs);
}

/* Nesting: 64 levels (the root mapping and 63 lists) parse, the 65th does
 * not. */
static void test_depth_limit(void **state) {
  (void)state;
  char yaml[1024];
  struct sl_config_errors errs = {0};
  for (unsigned lists = LIMIT_DEPTH - 1; lists <= LIMIT_DEPTH; lists++) {
    size_t off = (size_t)snprintf(yaml, sizeof(yaml), "%sx: ", BASE);
    for (unsigned i = 0; i < lists; i++) yaml[off++] = '[';
    for (unsigned i = 0; i < lists; i++) yaml[off++] = ']';
    snprintf(yaml + off, sizeof(yaml) - off, "\n");
    assert_null(load_text(yaml, &errs));
    assert_int_equal(errs.n, 1);
    if (lists < LIMIT_DEPTH)
      expect_error(&errs, "sluice.yaml", 10, 1, "unknown key 'x'");
    else /* the 64th '[' is at column 3 + 64 */
      expect_error(&errs, "sluice.yaml", 10, 3 + LIMIT_DEPTH,
                   "nesting too deep (limit 64 levels");
    sl_config_errors_free(&errs);
  }
  /* far deeper input stops at the same place, whatever its depth */
  size_t n = 1000000;
  char *deep = malloc(sizeof(BASE) + 8 + n);
  assert_non_null(deep);
  size_t off = (size_t)snprintf(deep, sizeof(BASE) + 8, "%sx: ", BASE);
  memset(deep + off, '[', n);
  deep[off + n] = '\0';
  assert_null(load_text(deep, &errs));
  free(deep);
  assert_int_equal(errs.n, 1);
  expect_error(&errs, "sluice.yaml", 10, 3 + LIMIT_DEPTH, "nesting too deep");
  sl_config_errors_free(&errs);
}

static void test_scalar_limit(void **state) {
  (void)state;
  size_t cap = sizeof(BASE) + 32 + LIMIT_SCALAR + 1;
  char *yaml = malloc(cap);
  assert_non_null(yaml);
  struct sl_config_errors errs = {0};
  for (size_t len = LIMIT_SCALAR; len <= LIMIT_SCALAR + 1; len++) {
    size_t off = (size_t)snprintf(yaml, cap, "%smode: ", BASE);
    memset(yaml + off, 'a', len);
    snprintf(yaml + off + len, cap - off - len, "\n");
    assert_null(load_text(yaml, &errs));
    assert_int_equal(errs.n, 1);
    if (len == LIMIT_SCALAR)
      expect_error(&errs, "sluice.yaml", 10, 7, "mode: ");
    else
      expect_error(&errs, "sluice.yaml", 10, 7, "scalar too long: 65537 bytes (limit 65536)");
    sl_config_errors_free(&errs);
  }
  free(yaml);
}

/* Work that grew with the square of a list's length: merging a drop-in's
 * named routes onto the main file's, and checking names for repeats. At
 * 19,000 routes each the merge took 16 s of CPU before it was indexed;
 * sorted, both take milliseconds, so 5 s is a bound no correct build on a
 * loaded machine reaches and the quadratic one always does. */
static void test_big_lists_are_not_quadratic(void **state) {
  (void)state;
  size_t n = 19000, cap = 64 * n + 1024;
  char *main_text = malloc(cap), *drop = malloc(cap);
  assert_non_null(main_text);
  assert_non_null(drop);
  size_t off = (size_t)snprintf(main_text, cap,
                                "include: conf.d\nlisteners: [{name: p, address: \"127.0.0.1:8080\"}]\n"
                                "upstreams: {u: {address: \"127.0.0.1:8081\"}}\nroutes:\n");
  size_t doff = (size_t)snprintf(drop, cap, "routes:\n");
  for (size_t i = 0; i < n; i++) {
    off += (size_t)snprintf(main_text + off, cap - off, "  - {name: r%zu, upstream: u}\n", i);
    doff += (size_t)snprintf(drop + doff, cap - doff, "  - {name: q%zu, upstream: u}\n", i);
  }
  write_file("conf.d/10-more.yaml", drop);
  const char *path = write_file("sluice.yaml", main_text);
  double t0 = now_s();
  struct sl_config *cfg = must_load(path);
  double dt = now_s() - t0;
  assert_int_equal(cfg->n_routes, 2 * n);
  sl_config_free(cfg);
  assert_true(dt < 5.0);
  /* a replaced route keeps its place: the merge by name still works */
  write_file("conf.d/10-more.yaml", "routes:\n  - {name: r7, upstream: u, priority: high}\n");
  cfg = must_load(path);
  assert_int_equal(cfg->n_routes, n);
  assert_string_equal(cfg->routes[7].name, "r7");
  assert_int_equal(cfg->routes[7].priority, SL_PRIORITY_HIGH);
  sl_config_free(cfg);
  /* a repeated name is still found, against its first definition */
  snprintf(main_text + off, cap - off, "  - {name: r3, upstream: u}\n");
  unlink(write_file("conf.d/10-more.yaml", ""));
  struct sl_config_errors errs = {0};
  assert_null(sl_config_load(write_file("sluice.yaml", main_text), &errs));
  assert_int_equal(errs.n, 1);
  expect_error(&errs, "sluice.yaml", 5 + (uint32_t)n, 5, "duplicate route name 'r3' (first defined at ");
  assert_non_null(strstr(errs.items[0].message, "sluice.yaml:8:5)"));
  sl_config_errors_free(&errs);
  free(main_text);
  free(drop);
}

/* ---- drop-ins ----------------------------------------------------- */

static const char MAIN_WITH_INCLUDE[] =
    "include: conf.d\n"
    "listeners:\n"
    "  - name: public\n"
    "    address: \"127.0.0.1:8080\"\n"
    "upstreams:\n"
    "  identity:\n"
    "    address: \"127.0.0.1:8081\"\n"
    "    max_connections: 100\n"
    "routes:\n"
    "  - name: connect\n"
    "    match: { path_prefix: /v1/connect }\n"
    "    upstream: identity\n"
    "  - name: default\n"
    "    upstream: identity\n"
    "blocklist:\n"
    "  firmware:\n"
    "    - { name: old, versions: \"<1.0\" }\n";

static void test_dropin_merge(void **state) {
  (void)state;
  write_file("conf.d/10-override.yaml",
             "upstreams:\n"
             "  identity:\n"
             "    max_pending: 7\n"
             "routes:\n"
             "  - name: connect\n"
             "    match: { path_prefix: /v2/connect }\n"
             "    upstream: identity\n"
             "    priority: high\n"
             "  - name: extra\n"
             "    upstream: identity\n"
             "blocklist:\n"
             "  firmware:\n"
             "    - { class: airtame-hub, versions: \">=3.8.0-b3 <3.8.1\" }\n");
  write_file("conf.d/20-mode.yaml", "mode: shadow\n");
  write_file("conf.d/05-old.yaml", "blocklist:\n  firmware:\n    - { name: old, versions: \"<0.9\" }\n");
  write_file("conf.d/.hidden.yaml", "this is: [not valid\n");
  write_file("conf.d/notes.txt", "neither: [is this\n");
  write_file("conf.d/empty.yaml", "");
  const char *path = write_file("sluice.yaml", MAIN_WITH_INCLUDE);
  struct sl_config *cfg = must_load(path);

  char dir[512];
  snprintf(dir, sizeof(dir), "%s/conf.d", g_dir);
  assert_string_equal(cfg->include_dir, dir);
  /* the main file, then the drop-ins in name order */
  assert_int_equal(cfg->n_sources, 5);
  assert_true(ends_with(cfg->sources[0].path, "/sluice.yaml"));
  assert_true(ends_with(cfg->sources[1].path, "/conf.d/05-old.yaml"));
  assert_true(ends_with(cfg->sources[2].path, "/conf.d/10-override.yaml"));
  assert_true(ends_with(cfg->sources[3].path, "/conf.d/20-mode.yaml"));
  assert_true(ends_with(cfg->sources[4].path, "/conf.d/empty.yaml"));

  /* maps merge key by key */
  assert_int_equal(cfg->n_upstreams, 1);
  assert_string_equal(cfg->upstreams[0].address.text, "127.0.0.1:8081");
  assert_int_equal(cfg->upstreams[0].max_connections, 100);
  assert_int_equal(cfg->upstreams[0].max_pending, 7);
  /* a route replaced in place by name, a new one appended */
  assert_int_equal(cfg->n_routes, 3);
  assert_string_equal(cfg->routes[0].name, "connect");
  assert_string_equal(cfg->routes[0].match.path_prefix, "/v2/connect");
  assert_int_equal(cfg->routes[0].priority, SL_PRIORITY_HIGH);
  assert_true(ends_with(cfg->routes[0].mark.file, "/conf.d/10-override.yaml"));
  assert_int_equal(cfg->routes[0].mark.line, 5);
  assert_string_equal(cfg->routes[1].name, "default");
  assert_true(ends_with(cfg->routes[1].mark.file, "/sluice.yaml"));
  assert_string_equal(cfg->routes[2].name, "extra");
  assert_int_equal(cfg->routes[2].index, 2);
  /* blocklist entries: the named one replaced, the other appended */
  assert_int_equal(cfg->blocklist.n_firmware, 2);
  assert_string_equal(cfg->blocklist.firmware[0].versions_text, "<0.9");
  assert_string_equal(cfg->blocklist.firmware[1].device_class, "airtame-hub");
  assert_int_equal(cfg->mode, SL_MODE_SHADOW);
  sl_config_free(cfg);
}

static void test_dropin_errors(void **state) {
  (void)state;
  write_file("conf.d/10-fine.yaml", "mode: shadow\n");
  write_file("conf.d/50-bad.yaml",
             "routes:\n"
             "  - name: extra\n"
             "    upstream: nope\n"
             "    priorty: high\n"
             "include: more.d\n");
  write_file("conf.d/60-syntax.yaml", "mode: [shadow\n");
  const char *path = write_file("sluice.yaml", MAIN_WITH_INCLUDE);
  struct sl_config_errors errs = {0};
  assert_null(sl_config_load(path, &errs));
  /* a syntax error stops validation, but every file is still parsed */
  assert_int_equal(errs.n, 2);
  expect_error(&errs, "conf.d/50-bad.yaml", 5, 1, "include: only the main configuration file");
  expect_error(&errs, "conf.d/60-syntax.yaml", 2, 1, "syntax error");
  sl_config_errors_free(&errs);

  unlink(write_file("conf.d/60-syntax.yaml", ""));
  assert_null(sl_config_load(path, &errs));
  if (errs.n != 3) dump_errors(&errs);
  assert_int_equal(errs.n, 3);
  expect_error(&errs, "conf.d/50-bad.yaml", 3, 15, "upstream: 'nope' is not a defined upstream");
  expect_error(&errs, "conf.d/50-bad.yaml", 4, 5, "unknown key 'priorty' in route (did you mean 'priority'?)");
  expect_error(&errs, "conf.d/50-bad.yaml", 5, 1, "include: only the main configuration file");
  sl_config_errors_free(&errs);

  /* an error in the main file and one in a drop-in, both reported, in
   * file order: the main file, then the drop-ins */
  write_file("conf.d/50-bad.yaml", "drain_timeout: 5\n");
  char main_text[2048];
  snprintf(main_text, sizeof(main_text), "%saccess_log: maybe\n", MAIN_WITH_INCLUDE);
  path = write_file("sluice.yaml", main_text);
  assert_null(sl_config_load(path, &errs));
  assert_int_equal(errs.n, 2);
  assert_true(ends_with(errs.items[0].file, "/sluice.yaml"));
  assert_int_equal(errs.items[0].line, 18);
  assert_int_equal(errs.items[0].col, 13);
  assert_true(ends_with(errs.items[1].file, "/conf.d/50-bad.yaml"));
  assert_int_equal(errs.items[1].line, 1);
  assert_int_equal(errs.items[1].col, 16);
  sl_config_errors_free(&errs);

  /* a bad value in the main file that a drop-in overrides is gone: the
   * merged configuration is what gets validated */
  write_file("conf.d/50-bad.yaml", "access_log: on\n");
  cfg_ok_and_free(path);
}

static void test_include_missing_dir(void **state) {
  (void)state;
  struct sl_config_errors errs = {0};
  assert_null(load_text("include: nothere\n" BASE, &errs));
  assert_int_equal(errs.n, 1);
  expect_error(&errs, "sluice.yaml", 1, 10, "include: directory '");
  assert_non_null(strstr(errs.items[0].message, "/nothere' does not exist"));
  sl_config_errors_free(&errs);
  expect_only_error("include: [a]\n" BASE, 1, 10, "include: expected a string, got a list");
  expect_only_error("include: \"\"\n" BASE, 1, 10, "include: must not be empty");
  /* an absolute directory */
  char text[1024];
  write_file("abs/x.yaml", "mode: shadow\n");
  snprintf(text, sizeof(text), "include: %s/abs\n%s", g_dir, BASE);
  struct sl_config *cfg = must_load(write_file("sluice.yaml", text));
  assert_int_equal(cfg->mode, SL_MODE_SHADOW);
  sl_config_free(cfg);
  /* the main file inside its own include directory is not merged twice */
  cfg = must_load(write_file("sluice.yaml", "include: .\n" BASE "    rate_limits: [ { key: route, rate: 1/s } ]\n"));
  assert_int_equal(cfg->n_routes, 1);
  assert_int_equal(cfg->n_sources, 1);
  sl_config_free(cfg);
}

/* A Kubernetes ConfigMap volume: the visible files are symlinks through
 * "..data", itself a symlink to a timestamped directory. */
static void test_dropin_configmap_layout(void **state) {
  (void)state;
  write_file("conf.d/..2026_01_01_00_00_00.123/emergency-firmware.yaml",
             "blocklist:\n  firmware:\n    - { class: airtame-hub, versions: \"3.8.x\", reason: INC-2041 }\n");
  char a[512], b[512];
  snprintf(a, sizeof(a), "%s/conf.d/..data", g_dir);
  assert_int_equal(symlink("..2026_01_01_00_00_00.123", a), 0);
  snprintf(b, sizeof(b), "%s/conf.d/emergency-firmware.yaml", g_dir);
  assert_int_equal(symlink("..data/emergency-firmware.yaml", b), 0);
  struct sl_config *cfg = must_load(write_file("sluice.yaml", MAIN_WITH_INCLUDE));
  assert_int_equal(cfg->n_sources, 2);
  assert_true(ends_with(cfg->sources[1].path, "/conf.d/emergency-firmware.yaml"));
  assert_int_equal(cfg->blocklist.n_firmware, 2);
  assert_string_equal(cfg->blocklist.firmware[1].reason, "INC-2041");
  sl_config_free(cfg);
}

/* ---- printing ----------------------------------------------------- */

static void roundtrip(const char *path) {
  struct sl_config *c1 = must_load(path);
  char *t1 = print_to_string(c1);
  const char *p2 = write_file("printed.yaml", t1);
  struct sl_config *c2 = must_load(p2);
  char *t2 = print_to_string(c2);
  if (strcmp(t1, t2)) {
    fprintf(stderr, "--- first\n%s--- second\n%s", t1, t2);
    fail_msg("print(load(print(load(x)))) differs from print(load(x))");
  }
  /* and the policies keep their identities */
  assert_int_equal(c1->n_routes, c2->n_routes);
  for (size_t i = 0; i < c1->n_routes; i++) {
    assert_int_equal(c1->routes[i].concurrency.identity, c2->routes[i].concurrency.identity);
    assert_int_equal(c1->routes[i].n_rate_limits, c2->routes[i].n_rate_limits);
    for (size_t j = 0; j < c1->routes[i].n_rate_limits; j++)
      assert_int_equal(c1->routes[i].rate_limits[j].identity, c2->routes[i].rate_limits[j].identity);
  }
  for (size_t i = 0; i < c1->n_upstreams; i++)
    assert_int_equal(c1->upstreams[i].breaker.identity, c2->upstreams[i].breaker.identity);
  free(t1);
  free(t2);
  sl_config_free(c1);
  sl_config_free(c2);
}

static void test_print_roundtrip(void **state) {
  (void)state;
  roundtrip(write_file("sluice.yaml", FULL));
  roundtrip(write_file("sluice.yaml", BASE));
  roundtrip("deploy/examples/sluice.yaml");
  write_file("conf.d/10.yaml", "routes: [ { name: extra, upstream: identity, match: { header: { X-A: \"q\\\"uote\\\\\" } } } ]\n");
  roundtrip(write_file("sluice.yaml", MAIN_WITH_INCLUDE));

  /* the normalised form fills defaults and canonicalises durations */
  struct sl_config *cfg = must_load(write_file("sluice.yaml", FULL));
  char *t = print_to_string(cfg);
  assert_non_null(strstr(t, "      idle: 90s\n"));
  assert_non_null(strstr(t, "      idle: 2m\n"));
  assert_non_null(strstr(t, "      connect: 250ms\n"));
  assert_non_null(strstr(t, "      slow_call: 1500ms\n"));
  assert_non_null(strstr(t, "        rate: \"500/s\"\n"));
  assert_non_null(strstr(t, "    idle_timeout: 10m\n"));
  assert_non_null(strstr(t, "      expires: \"2026-12-01T00:00:00Z\"\n"));
  assert_non_null(strstr(t, "      failure_ratio: 0.25\n"));
  assert_non_null(strstr(t, "    jitter: 0.3\n"));
  assert_non_null(strstr(t, "access_log: sampled\n"));
  assert_null(strstr(t, "include"));
  free(t);
  sl_config_free(cfg);
}

/* ---- identities --------------------------------------------------- */

static void test_identity(void **state) {
  (void)state;
  struct sl_config *a = must_load(write_file("sluice.yaml", FULL));
  struct sl_config *b = must_load(write_file("sluice.yaml", FULL));
  const struct sl_route_cfg *ra = &a->routes[0], *rb = &b->routes[0];
  for (size_t i = 0; i < ra->n_rate_limits; i++) {
    assert_int_not_equal(ra->rate_limits[i].identity, 0);
    assert_int_equal(ra->rate_limits[i].identity, rb->rate_limits[i].identity);
  }
  assert_int_not_equal(ra->rate_limits[0].identity, ra->rate_limits[1].identity);
  assert_int_equal(ra->concurrency.identity, rb->concurrency.identity);
  assert_int_equal(a->upstreams[0].breaker.identity, b->upstreams[0].breaker.identity);
  assert_int_equal(a->listeners[0].connect_rate.identity, b->listeners[0].connect_rate.identity);
  sl_config_free(b);

  /* the first limit's rate changes: a tunable, no identity changes (the
   * table is kept and converted) */
  char *text = strdup(FULL);
  char *p = strstr(text, "rate: \"5/s\", burst: 10");
  assert_non_null(p);
  p[7] = '6';
  b = must_load(write_file("sluice.yaml", text));
  rb = &b->routes[0];
  assert_int_equal(ra->rate_limits[0].identity, rb->rate_limits[0].identity);
  assert_int_equal(ra->rate_limits[1].identity, rb->rate_limits[1].identity);
  assert_int_equal(ra->rate_limits[2].identity, rb->rate_limits[2].identity);
  assert_int_equal(ra->concurrency.identity, rb->concurrency.identity);
  sl_config_free(b);

  /* the same rate written differently is the same policy; so is a
   * switch from shadow to enforce */
  free(text);
  const char *v1 = BASE "    rate_limits: [ { key: client_ip, rate: 5/s, burst: 3, mode: shadow } ]\n"
                        "    concurrency: { max: 10 }\n";
  const char *v2 = BASE "    rate_limits: [ { key: client_ip, rate: 300/m, burst: 3, mode: enforce } ]\n"
                        "    concurrency: { max: 10, mode: shadow }\n";
  const char *v3 = BASE "    rate_limits: [ { key: client_ip, rate: 300/m, burst: 4 } ]\n"
                        "    concurrency: { max: 11 }\n";
  const char *v4 = BASE "    rate_limits: [ { key: client_ip, rate: 5/s, burst: 3, max_keys: 100 } ]\n";
  const char *v5 = BASE "    rate_limits: [ { key: device_class, rate: 5/s, burst: 3, override: { x: 1/s } } ]\n";
  const char *v6 = BASE "    rate_limits: [ { key: device_class, rate: 5/s, burst: 3, override: { x: 2/s } } ]\n";
  struct sl_config *c1 = must_load(write_file("sluice.yaml", v1));
  struct sl_config *c2 = must_load(write_file("sluice.yaml", v2));
  struct sl_config *c3 = must_load(write_file("sluice.yaml", v3));
  struct sl_config *c4 = must_load(write_file("sluice.yaml", v4));
  struct sl_config *c5 = must_load(write_file("sluice.yaml", v5));
  struct sl_config *c6 = must_load(write_file("sluice.yaml", v6));
  assert_int_equal(c1->routes[0].rate_limits[0].identity, c2->routes[0].rate_limits[0].identity);
  assert_int_equal(c1->routes[0].concurrency.identity, c2->routes[0].concurrency.identity);
  /* burst, concurrency max and override rates are tunables: same state */
  assert_int_equal(c1->routes[0].rate_limits[0].identity, c3->routes[0].rate_limits[0].identity);
  assert_int_equal(c1->routes[0].concurrency.identity, c3->routes[0].concurrency.identity);
  assert_int_equal(c5->routes[0].rate_limits[0].identity, c6->routes[0].rate_limits[0].identity);
  /* breaker settings are tunables too; the address is not */
  {
    const char *u1 = "listeners: [ { name: public, address: \"127.0.0.1:8080\" } ]\nupstreams:\n  identity:\n    address: \"127.0.0.1:9\"\n"
                     "    circuit_breaker: { consecutive_failures: 3, open_for: 5s }\n"
                     "routes: [ { name: default, upstream: identity } ]\n";
    const char *u2 = "listeners: [ { name: public, address: \"127.0.0.1:8080\" } ]\nupstreams:\n  identity:\n    address: \"127.0.0.1:9\"\n"
                     "    circuit_breaker: { consecutive_failures: 9, open_for: 60s }\n"
                     "routes: [ { name: default, upstream: identity } ]\n";
    const char *u3 = "listeners: [ { name: public, address: \"127.0.0.1:8080\" } ]\nupstreams:\n  identity:\n    address: \"127.0.0.1:10\"\n"
                     "    circuit_breaker: { consecutive_failures: 3, open_for: 5s }\n"
                     "routes: [ { name: default, upstream: identity } ]\n";
    struct sl_config *b1 = must_load(write_file("sluice.yaml", u1));
    struct sl_config *b2 = must_load(write_file("sluice.yaml", u2));
    struct sl_config *b3 = must_load(write_file("sluice.yaml", u3));
    assert_int_equal(b1->upstreams[0].breaker.identity, b2->upstreams[0].breaker.identity);
    assert_int_not_equal(b1->upstreams[0].breaker.identity, b3->upstreams[0].breaker.identity);
    sl_config_free(b1);
    sl_config_free(b2);
    sl_config_free(b3);
  }
  /* max_keys sizes the table: a new one */
  assert_int_not_equal(c1->routes[0].rate_limits[0].identity, c4->routes[0].rate_limits[0].identity);
  sl_config_free(c1);
  sl_config_free(c2);
  sl_config_free(c3);
  sl_config_free(c4);
  sl_config_free(c5);
  sl_config_free(c6);
  sl_config_free(a);
}

static void test_null_is_absent(void **state) {
  (void)state;
  /* a drop-in can put a default back by nulling a key */
  write_file("conf.d/10.yaml", "reject: { body: ~ }\nshaping:\n");
  struct sl_config *cfg = must_load(write_file(
      "sluice.yaml", "include: conf.d\n" BASE "reject: { body: text }\nshaping: [ { rate: 1/s } ]\n"));
  assert_true(cfg->reject.body_json);
  assert_int_equal(cfg->n_shaping, 0);
  sl_config_free(cfg);
}

/* Every prefix of a valid file: each either loads (and then prints to
 * something that loads again) or fails with at least one positioned
 * error; none crashes or leaks (the sanitizers watch). */
static void test_every_prefix(void **state) {
  (void)state;
  size_t len = strlen(FULL);
  char *text = malloc(len + 1);
  assert_non_null(text);
  size_t loaded = 0;
  for (size_t n = 0; n <= len; n++) {
    memcpy(text, FULL, n);
    text[n] = '\0';
    struct sl_config_errors errs = {0};
    struct sl_config *cfg = load_text(text, &errs);
    if (cfg) {
      assert_int_equal(errs.n, 0);
      char *t = print_to_string(cfg);
      sl_config_free(must_load(write_file("printed.yaml", t)));
      free(t);
      sl_config_free(cfg);
      loaded++;
    } else {
      assert_true(errs.n > 0);
      for (size_t i = 0; i < errs.n; i++) {
        assert_non_null(errs.items[i].file);
        assert_true(errs.items[i].line >= 1);
        assert_true(errs.items[i].col >= 1);
      }
    }
    sl_config_errors_free(&errs);
  }
  assert_true(loaded > 0);
  free(text);
}


/* `global:` (the backend of fleet-wide limits) and `scope: global`:
 * defaults, values, the password read from its file and never printed,
 * the printed form loading back the same, and errors at FILE:LINE:COL. */
static void test_global_section(void **state) {
  (void)state;
  const char *pw = write_file("redis-password", "s3cret-pw\n");
  char yaml[2048];
  snprintf(yaml, sizeof(yaml),
           BASE "    rate_limits:\n"
                "      - {key: device_class, rate: 1000/s, burst: 100, scope: global}\n"
                "      - {key: client_ip, rate: 5/s}\n"
                "global:\n"
                "  redis: \"127.0.0.1:6390\"\n"
                "  password_file: %s\n"
                "  database: 3\n"
                "  command_timeout: 40ms\n"
                "  key_prefix: \"fleet:\"\n"
                "  expected_replicas: 8\n"
                "  fallback: closed\n"
                "  lease: 250ms\n",
           pw);
  struct sl_config *cfg = must_load(write_file("sluice.yaml", yaml));
  const struct sl_global_cfg *g = &cfg->global;
  assert_true(g->enabled);
  assert_string_equal(g->redis.text, "127.0.0.1:6390");
  assert_string_equal(g->password, "s3cret-pw");
  assert_int_equal(g->database, 3);
  assert_int_equal(g->connect_timeout_ms, 500); /* default */
  assert_int_equal(g->command_timeout_ms, 40);
  assert_string_equal(g->key_prefix, "fleet:");
  assert_int_equal(g->expected_replicas, 8);
  assert_int_equal(g->fallback, SL_FALLBACK_CLOSED);
  assert_int_equal(g->lease_ms, 250);
  assert_int_equal(cfg->routes[0].rate_limits[0].scope, SL_SCOPE_GLOBAL);
  assert_int_equal(cfg->routes[0].rate_limits[1].scope, SL_SCOPE_LOCAL);
  /* scope is part of what a table means: local and global never share state */
  assert_true(cfg->routes[0].rate_limits[0].identity != 0);
  char *printed = print_to_string(cfg);
  assert_null(strstr(printed, "s3cret"));
  assert_non_null(strstr(printed, "password_file:"));
  assert_non_null(strstr(printed, "scope: global"));
  struct sl_config *again = must_load(write_file("printed.yaml", printed));
  char *printed2 = print_to_string(again);
  assert_string_equal(printed, printed2);
  assert_int_equal(again->global.identity, g->identity);
  free(printed);
  free(printed2);
  sl_config_free(again);
  sl_config_free(cfg);

  /* sentinel instead of redis: addresses, master name, a distinct identity,
   * and a print that loads back to the same */
  uint64_t redis_identity;
  {
    struct sl_config *r = must_load(write_file(
        "sluice.yaml", BASE "    rate_limits:\n      - {key: route, rate: 10/s, scope: global}\n"
                            "global: {redis: \"127.0.0.1:26379\"}\n"));
    redis_identity = r->global.identity;
    sl_config_free(r);
  }
  cfg = must_load(write_file(
      "sluice.yaml", BASE "    rate_limits:\n      - {key: route, rate: 10/s, scope: global}\n"
                          "global:\n  sentinel:\n"
                          "    addresses: [\"127.0.0.1:26379\", \"[::1]:26380\"]\n"
                          "    master_name: mymaster\n"));
  assert_int_equal(cfg->global.n_sentinels, 2);
  assert_string_equal(cfg->global.sentinels[1].text, "[::1]:26380");
  assert_string_equal(cfg->global.master_name, "mymaster");
  assert_null(cfg->global.redis.text);
  assert_true(cfg->global.identity != redis_identity);
  printed = print_to_string(cfg);
  assert_non_null(strstr(printed, "master_name: \"mymaster\""));
  again = must_load(write_file("printed.yaml", printed));
  printed2 = print_to_string(again);
  assert_string_equal(printed, printed2);
  assert_int_equal(again->global.identity, cfg->global.identity);
  free(printed);
  free(printed2);
  sl_config_free(again);
  sl_config_free(cfg);

  /* no section: disabled, and no limit may be global */
  cfg = must_load(write_file("sluice.yaml", BASE));
  assert_false(cfg->global.enabled);
  sl_config_free(cfg);
  expect_only_error(BASE "    rate_limits:\n"
                         "      - {key: route, rate: 10/s, scope: global}\n",
                    11, 41, "scope: global needs the top-level 'global' section");
  expect_only_error(BASE "global: {expected_replicas: 2}\n", 10, 9, "global: missing 'redis'");
  expect_only_error(BASE "global: {redis: \"10.0.0:6379\"}\n", 10, 17,
                    "redis: '10.0.0' is neither an IPv4 address nor a host name");
  expect_only_error(BASE "global:\n  sentinel:\n    addresses: [\"s1.redis.svc:26379\", \"bad_name:1\"]\n"
                         "    master_name: m\n",
                    12, 39, "global.sentinel.addresses: 'bad_name' is neither");
  cfg = must_load(write_file("sluice.yaml", BASE "global: {redis: \"redis.cache.svc:6379\"}\n"));
  assert_string_equal(cfg->global.redis.host, "redis.cache.svc");
  assert_false(cfg->global.redis.numeric);
  sl_config_free(cfg);
  expect_only_error(BASE "global: {redis: \"127.0.0.1:6379\", fallback: sideways}\n", 10, 45,
                    "fallback");
  expect_only_error(BASE "global: {redis: \"127.0.0.1:6379\", lease: 1s, command_timeout: 20s}\n",
                    10, 63, "command_timeout 20000ms is more than 10 leases");
  expect_only_error(BASE "global: {redis: \"127.0.0.1:6379\", key_prefix: \"a{b}\"}\n", 10, 47,
                    "key_prefix");
  expect_only_error(BASE "global: {redis: \"127.0.0.1:6379\", scope: global}\n", 10, 35,
                    "unknown key 'scope' in global");
  snprintf(yaml, sizeof(yaml), BASE "global: {redis: \"127.0.0.1:6379\", password_file: %s}\n",
           write_file("empty-password", "\n"));
  struct sl_config_errors errs = {0};
  assert_null(load_text(yaml, &errs));
  expect_error(&errs, "sluice.yaml", 10, 50, "is empty");
  sl_config_errors_free(&errs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_parse_duration, setup, teardown),
      cmocka_unit_test_setup_teardown(test_parse_rate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_parse_sockaddr, setup, teardown),
      cmocka_unit_test_setup_teardown(test_parse_hostport, setup, teardown),
      cmocka_unit_test_setup_teardown(test_parse_cidr, setup, teardown),
      cmocka_unit_test_setup_teardown(test_parse_timestamp, setup, teardown),
      cmocka_unit_test_setup_teardown(test_regex_translation, setup, teardown),
      cmocka_unit_test_setup_teardown(test_full_config, setup, teardown),
      cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
      cmocka_unit_test_setup_teardown(test_example_config_is_valid, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_types, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_values, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_values2, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_values3, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_references, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_references2, setup, teardown),
      cmocka_unit_test_setup_teardown(test_did_you_mean, setup, teardown),
      cmocka_unit_test_setup_teardown(test_duplicate_keys, setup, teardown),
      cmocka_unit_test_setup_teardown(test_multiple_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_cap, setup, teardown),
      cmocka_unit_test_setup_teardown(test_yaml_syntax_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_billion_laughs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_node_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_node_limit_across_dropins, setup, teardown),
      cmocka_unit_test_setup_teardown(test_depth_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_scalar_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_big_lists_are_not_quadratic, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dropin_merge, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dropin_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_include_missing_dir, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dropin_configmap_layout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_print_roundtrip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rate_limits_per_route_bounded, setup, teardown),
      cmocka_unit_test_setup_teardown(test_null_is_absent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_every_prefix, setup, teardown),
      cmocka_unit_test_setup_teardown(test_global_section, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
