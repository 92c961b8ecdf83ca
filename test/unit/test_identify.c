/* Unit tests for policies/identify.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <regex.h>
#include <cmocka.h>

#include "sluice/identify.h"

static struct sl_cidr cidr(const char *addr, uint8_t prefix) {
  struct sl_cidr c;
  memset(&c, 0, sizeof(c));
  c.prefix = prefix;
  if (strchr(addr, ':')) {
    c.family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, addr, c.addr), 1);
  } else {
    c.family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, addr, c.addr), 1);
  }
  return c;
}

static struct sockaddr_storage peer_ss;

static const struct sockaddr *peer(const char *addr) {
  memset(&peer_ss, 0, sizeof(peer_ss));
  if (strchr(addr, ':')) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&peer_ss;
    s6->sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, addr, &s6->sin6_addr), 1);
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&peer_ss;
    s4->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, addr, &s4->sin_addr), 1);
  }
  return (const struct sockaddr *)&peer_ss;
}

static struct sl_hdr H(const char *name, const char *value) {
  return (struct sl_hdr){name, strlen(name), value, strlen(value)};
}

static struct sl_cidr trusted[3];

static struct sl_identify_cfg base_cfg(void) {
  trusted[0] = cidr("10.0.0.0", 8);
  trusted[1] = cidr("fd00::", 8);
  trusted[2] = cidr("192.0.2.7", 32);
  struct sl_identify_cfg c;
  memset(&c, 0, sizeof(c));
  c.trusted_proxies = trusted;
  c.n_trusted_proxies = 3;
  c.ipv6_prefix = 128;
  c.device_class_header = "x-device-class";
  c.firmware_header = "x-firmware-version";
  c.device_id_header = "x-device-id";
  return c;
}

static const char *addr_of(const struct sl_identity *id) {
  static char buf[64];
  if (sl_identify_format_addr(id, buf, sizeof(buf)) < 0) return "-";
  return buf;
}

struct xff_case {
  const char *peer;
  const char *hdr[3][2]; /* name, value */
  const char *want;
  bool forwarded;
};

static const struct xff_case xff_cases[] = {
    /* untrusted peer: headers ignored */
    {"203.0.113.9", {{"x-forwarded-for", "1.1.1.1"}}, "203.0.113.9", false},
    {"203.0.113.9", {{"forwarded", "for=1.1.1.1"}}, "203.0.113.9", false},
    /* trusted peer, one hop */
    {"10.1.2.3", {{"x-forwarded-for", "198.51.100.4"}}, "198.51.100.4", true},
    /* the rightmost untrusted hop wins; a forged left part is ignored */
    {"10.1.2.3", {{"x-forwarded-for", "6.6.6.6, 198.51.100.4, 10.9.9.9"}}, "198.51.100.4", true},
    /* several headers are one list, in order */
    {"10.1.2.3", {{"x-forwarded-for", "6.6.6.6, 198.51.100.4"}, {"x-forwarded-for", "10.0.0.1"}},
     "198.51.100.4", true},
    /* all trusted: the leftmost */
    {"10.1.2.3", {{"x-forwarded-for", "10.0.0.5, 192.0.2.7"}}, "10.0.0.5", true},
    /* garbage from a trusted hop: stop at the last trusted address */
    {"10.1.2.3", {{"x-forwarded-for", "1.1.1.1, garbage, 10.0.0.9"}}, "10.0.0.9", true},
    {"10.1.2.3", {{"x-forwarded-for", "unknown"}}, "10.1.2.3", false},
    /* ports and brackets */
    {"10.1.2.3", {{"x-forwarded-for", "198.51.100.4:5555"}}, "198.51.100.4", true},
    {"10.1.2.3", {{"x-forwarded-for", "[2001:db8::1]:443"}}, "2001:db8::1", true},
    {"10.1.2.3", {{"x-forwarded-for", "2001:db8::2"}}, "2001:db8::2", true},
    {"10.1.2.3", {{"x-forwarded-for", "::ffff:198.51.100.9"}}, "198.51.100.9", true},
    {"10.1.2.3", {{"x-forwarded-for", " , 198.51.100.4 ,"}}, "198.51.100.4", true},
    /* IPv4-mapped trusted peer */
    {"::ffff:10.1.2.3", {{"x-forwarded-for", "198.51.100.4"}}, "198.51.100.4", true},
    /* IPv6 trusted proxy */
    {"fd12::1", {{"x-forwarded-for", "2001:db8::7"}}, "2001:db8::7", true},
    /* Forwarded (RFC 7239 examples, section 4 and 7.4) */
    {"10.1.2.3", {{"forwarded", "for=192.0.2.43"}}, "192.0.2.43", true},
    {"10.1.2.3", {{"forwarded", "for=\"[2001:db8:cafe::17]:4711\""}}, "2001:db8:cafe::17", true},
    {"10.1.2.3", {{"forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43"}}, "192.0.2.60", true},
    {"10.1.2.3", {{"forwarded", "for=198.51.100.17, for=192.0.2.43"}}, "192.0.2.43", true},
    {"10.1.2.3", {{"forwarded", "For=\"198.51.100.17\";proto=https, for=10.0.0.3"}}, "198.51.100.17", true},
    {"10.1.2.3", {{"forwarded", "for=198.51.100.17;by=\"a,b;c\", for=10.0.0.3"}}, "198.51.100.17", true},
    {"10.1.2.3", {{"forwarded", "for=unknown, for=10.0.0.3"}}, "10.0.0.3", true},
    {"10.1.2.3", {{"forwarded", "for=_hidden"}}, "10.1.2.3", false},
    {"10.1.2.3", {{"forwarded", "proto=https"}}, "10.1.2.3", false},
    {"10.1.2.3", {{"forwarded", "for=\"1.2.3.4"}}, "10.1.2.3", false},
    /* X-Forwarded-For wins over Forwarded */
    {"10.1.2.3", {{"forwarded", "for=1.1.1.1"}, {"x-forwarded-for", "2.2.2.2"}}, "2.2.2.2", true},
};

static void test_client_address(void **st) {
  (void)st;
  struct sl_identify_cfg cfg = base_cfg();
  for (size_t i = 0; i < sizeof(xff_cases) / sizeof(xff_cases[0]); i++) {
    const struct xff_case *c = &xff_cases[i];
    struct sl_hdr h[3];
    size_t n = 0;
    while (n < 3 && c->hdr[n][0]) {
      h[n] = H(c->hdr[n][0], c->hdr[n][1]);
      n++;
    }
    struct sl_identity id;
    assert_int_equal(sl_identify(&cfg, peer(c->peer), h, n, &id), SL_IDENTIFY_OK);
    if (strcmp(addr_of(&id), c->want) != 0 || id.forwarded != c->forwarded)
      fail_msg("case %zu (%s): got %s/%d want %s/%d", i, c->hdr[0][1], addr_of(&id), id.forwarded,
               c->want, c->forwarded);
  }
}

static void test_keys_and_ipv6_prefix(void **st) {
  (void)st;
  struct sl_identify_cfg cfg = base_cfg();
  struct sl_identity a, b, c;
  cfg.ipv6_prefix = 64;
  sl_identify(&cfg, peer("2001:db8:1:2:aaaa::1"), NULL, 0, &a);
  sl_identify(&cfg, peer("2001:db8:1:2:bbbb:cccc:dddd:eeee"), NULL, 0, &b);
  sl_identify(&cfg, peer("2001:db8:1:3::1"), NULL, 0, &c);
  assert_memory_equal(a.key, b.key, 16); /* same /64 */
  assert_memory_not_equal(a.key, c.key, 16);
  assert_string_equal(addr_of(&a), "2001:db8:1:2:aaaa::1"); /* address itself intact */
  uint8_t want[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2};
  assert_memory_equal(a.key, want, 16);

  cfg.ipv6_prefix = 56; /* a non-byte boundary is masked bitwise */
  sl_identify(&cfg, peer("2001:db8:1:2ff::1"), NULL, 0, &a);
  sl_identify(&cfg, peer("2001:db8:1:200::1"), NULL, 0, &b);
  assert_memory_equal(a.key, b.key, 16);
  cfg.ipv6_prefix = 60;
  sl_identify(&cfg, peer("2001:db8:1:2ff::1"), NULL, 0, &a);
  sl_identify(&cfg, peer("2001:db8:1:20f::1"), NULL, 0, &b);
  assert_memory_not_equal(a.key, b.key, 16);

  /* Aggregation applies to forwarded addresses too. */
  cfg.ipv6_prefix = 64;
  struct sl_hdr h[] = {H("x-forwarded-for", "2001:db8:9:9::1")}, h2[] = {H("x-forwarded-for", "2001:db8:9:9::2")};
  sl_identify(&cfg, peer("10.0.0.1"), h, 1, &a);
  sl_identify(&cfg, peer("10.0.0.1"), h2, 1, &b);
  assert_memory_equal(a.key, b.key, 16);

  /* IPv4 keys are v4-mapped, equal whether the socket was v4 or v6. */
  sl_identify(&cfg, peer("198.51.100.1"), NULL, 0, &a);
  sl_identify(&cfg, peer("::ffff:198.51.100.1"), NULL, 0, &b);
  assert_memory_equal(a.key, b.key, 16);
  uint8_t v4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 1};
  assert_memory_equal(a.key, v4, 16);
  sl_identify_peer(&cfg, peer("198.51.100.1"), &c);
  assert_memory_equal(c.key, v4, 16);
}

static void test_device_headers(void **st) {
  (void)st;
  struct sl_identify_cfg cfg = base_cfg();
  struct sl_identity id;
  struct sl_hdr h[] = {
      H("host", "api"),
      H("x-device-class", " airtame-hub "),
      H("x-firmware-version", "3.8.0b3"),
      H("x-device-id", "abc-123"),
  };
  assert_int_equal(sl_identify(&cfg, peer("203.0.113.1"), h, 4, &id), SL_IDENTIFY_OK);
  assert_int_equal(id.device_class_len, 11);
  assert_memory_equal(id.device_class, "airtame-hub", 11);
  assert_true(id.firmware_valid);
  assert_string_equal(id.firmware_version.pre, "b3");
  assert_int_equal(id.device_id_len, 7);

  /* Absent, empty and unparseable. */
  struct sl_hdr h2[] = {H("x-device-class", ""), H("x-firmware-version", "banana")};
  assert_int_equal(sl_identify(&cfg, peer("203.0.113.1"), h2, 2, &id), SL_IDENTIFY_OK);
  assert_null(id.device_class);
  assert_non_null(id.firmware);
  assert_false(id.firmware_valid);
  assert_null(id.device_id);
  assert_int_equal(sl_identify(&cfg, peer("203.0.113.1"), NULL, 0, &id), SL_IDENTIFY_OK);
  assert_null(id.firmware);

  /* The same value twice is not a conflict. */
  struct sl_hdr h3[] = {H("x-firmware-version", "3.8.0"), H("x-firmware-version", "3.8.0 ")};
  assert_int_equal(sl_identify(&cfg, peer("203.0.113.1"), h3, 2, &id), SL_IDENTIFY_OK);
  assert_true(id.firmware_valid);
}

static void test_conflicts(void **st) {
  (void)st;
  struct sl_identify_cfg cfg = base_cfg();
  struct sl_identity id;
  struct {
    struct sl_hdr h[2];
    const char *conflict;
  } cases[] = {
      {{H("x-firmware-version", "3.8.0"), H("x-firmware-version", "3.9.0")}, "x-firmware-version"},
      {{H("x-firmware-version", "3.8.0"), H("x_firmware_version", "3.8.0")}, "x-firmware-version"},
      {{H("x_firmware-version", "3.8.0"), H("host", "a")}, "x-firmware-version"},
      {{H("x-firmware_version", "1"), H("host", "a")}, "x-firmware-version"},
      {{H("x-device-class", "a"), H("x-device-class", "b")}, "x-device-class"},
      {{H("x_device_class", "a"), H("host", "a")}, "x-device-class"},
      {{H("x-device-id", "a"), H("x-device-id", "b")}, "x-device-id"},
      {{H("x-device_id", "a"), H("host", "a")}, "x-device-id"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    if (sl_identify(&cfg, peer("203.0.113.1"), cases[i].h, 2, &id) != SL_IDENTIFY_CONFLICT)
      fail_msg("case %zu: no conflict", i);
    assert_string_equal(id.conflict, cases[i].conflict);
  }
  /* Look-alikes that are not aliases. */
  struct sl_hdr ok[] = {H("x-firmware-versions", "1"), H("x-firmware_versio", "2"), H("xfirmware-version", "3")};
  assert_int_equal(sl_identify(&cfg, peer("203.0.113.1"), ok, 3, &id), SL_IDENTIFY_OK);
  assert_null(id.firmware);
}

static void test_device_class_from_user_agent(void **st) {
  (void)st;
  struct sl_identify_cfg cfg = base_cfg();
  regex_t re;
  /* The loader's translation of ^Homey/(?P<class>[A-Za-z]+) */
  assert_int_equal(regcomp(&re, "^(Homey|Athom)/([A-Za-z]+)", REG_EXTENDED), 0);
  cfg.device_class_header = NULL;
  cfg.device_class_ua_compiled = &re;
  cfg.device_class_ua_group = 2;
  struct sl_identity id;
  /* Not NUL-terminated after the value: REG_STARTEND must bound the match. */
  char ua[] = "Homey/Pro 8.1.0XXXX";
  struct sl_hdr h[] = {{"user-agent", 10, ua, 9}};
  assert_int_equal(sl_identify(&cfg, peer("203.0.113.1"), h, 1, &id), SL_IDENTIFY_OK);
  assert_int_equal(id.device_class_len, 3);
  assert_memory_equal(id.device_class, "Pro", 3);
  struct sl_hdr h2[] = {H("user-agent", "curl/8.0")};
  assert_int_equal(sl_identify(&cfg, peer("203.0.113.1"), h2, 1, &id), SL_IDENTIFY_OK);
  assert_null(id.device_class);
  regfree(&re);
}

static void test_cidr_match(void **st) {
  (void)st;
  struct sl_cidr c[] = {cidr("10.128.0.0", 9), cidr("2001:db8::", 33), cidr("0.0.0.0", 0)};
  uint8_t a[16] = {10, 200, 0, 1};
  assert_true(sl_cidr_match(c, 1, AF_INET, a));
  a[1] = 127;
  assert_false(sl_cidr_match(c, 1, AF_INET, a));
  assert_true(sl_cidr_match(c, 3, AF_INET, a)); /* 0.0.0.0/0 */
  uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8, 0x7f, 0xff};
  assert_true(sl_cidr_match(c + 1, 1, AF_INET6, b));
  b[4] = 0x80;
  assert_false(sl_cidr_match(c + 1, 1, AF_INET6, b));
  assert_false(sl_cidr_match(c, 1, AF_INET6, a)); /* family mismatch */
}

/* Every prefix of forwarding and identity header values, each in a heap
 * buffer of exactly its size (ASan catches a read past value_len). */
static void test_every_prefix(void **st) {
  (void)st;
  struct sl_identify_cfg cfg = base_cfg();
  const char *vals[][2] = {
      {"x-forwarded-for", "6.6.6.6, [2001:db8::1]:443, 198.51.100.4:80, 10.0.0.1"},
      {"forwarded", "for=\"[2001:db8:cafe::17]:4711\";proto=https, For=192.0.2.43;by=\"a,b\""},
      {"forwarded", "for=\"a\\\"b\", for=unknown"},
      {"x-firmware-version", " 3.8.0-rc.1+build "},
  };
  for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
    size_t n = strlen(vals[i][1]);
    for (size_t l = 0; l <= n; l++) {
      char *b = malloc(l ? l : 1);
      memcpy(b, vals[i][1], l);
      struct sl_hdr h = {vals[i][0], strlen(vals[i][0]), b, l};
      struct sl_identity id;
      assert_int_equal(sl_identify(&cfg, peer("10.1.1.1"), &h, 1, &id), SL_IDENTIFY_OK);
      free(b);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_client_address),
      cmocka_unit_test(test_keys_and_ipv6_prefix),
      cmocka_unit_test(test_device_headers),
      cmocka_unit_test(test_conflicts),
      cmocka_unit_test(test_device_class_from_user_agent),
      cmocka_unit_test(test_cidr_match),
      cmocka_unit_test(test_every_prefix),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
