/*
 * PROXY protocol parser (proxy/core/proxy_proto.c): v1 TCP4, TCP6 and
 * UNKNOWN, v2 PROXY and LOCAL over IPv4 and IPv6 with TLVs skipped; every
 * valid header cut at every byte needs more and never errs; the bytes after
 * a header are not looked at; malformed and oversized headers fail with a
 * reason as early as the bytes allow.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "core/proxy_proto.h"

static const uint8_t SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* A v2 header into |out|: ver_cmd, fam, |alen| bytes of |addr| (zeros
 * beyond). Returns its length. */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *addr, size_t alen) {
  memcpy(out, SIG, 12);
  out[12] = ver_cmd;
  out[13] = fam;
  out[14] = (uint8_t)(alen >> 8);
  out[15] = (uint8_t)alen;
  memset(out + 16, 0, alen);
  if (addr) memcpy(out + 16, addr, alen);
  return 16 + alen;
}

static void src_is(const struct sl_pp_header *h, const char *ip, uint16_t port) {
  char got[64];
  assert_true(h->has_addr);
  if (h->src.ss_family == AF_INET) {
    const struct sockaddr_in *s = (const struct sockaddr_in *)&h->src;
    inet_ntop(AF_INET, &s->sin_addr, got, sizeof(got));
    assert_int_equal(ntohs(s->sin_port), port);
  } else {
    assert_int_equal(h->src.ss_family, AF_INET6);
    const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&h->src;
    inet_ntop(AF_INET6, &s->sin6_addr, got, sizeof(got));
    assert_int_equal(ntohs(s->sin6_port), port);
  }
  assert_string_equal(got, ip);
}

/* |hdr| is a complete header of |len| bytes: every proper prefix needs
 * more (never an error), the whole parses, and so does the whole followed
 * by stream bytes (not consumed). Returns the parse of the whole. */
static struct sl_pp_header whole(const uint8_t *hdr, size_t len) {
  struct sl_pp_header h;
  for (size_t i = 0; i < len; i++) {
    if (sl_pp_parse(hdr, i, &h) != SL_PP_NEED_MORE) fail_msg("prefix of %zu/%zu bytes: %s", i, len, h.error);
  }
  uint8_t buf[SL_PP_MAX_HEADER + 64];
  memcpy(buf, hdr, len);
  memcpy(buf + len, "\x16\x03\x01GET / HTTP/1.1\r\n", 19);
  assert_int_equal(sl_pp_parse(buf, len + 19, &h), SL_PP_DONE);
  assert_int_equal(h.len, len);
  assert_int_equal(sl_pp_parse(hdr, len, &h), SL_PP_DONE);
  assert_int_equal(h.len, len);
  return h;
}

static void bad(const char *hdr, size_t len, bool too_long) {
  struct sl_pp_header h;
  enum sl_pp_status st = sl_pp_parse((const uint8_t *)hdr, len, &h);
  if (st != SL_PP_ERROR) fail_msg("accepted %.*s", (int)len, hdr);
  assert_non_null(h.error);
  assert_int_equal(h.too_long, too_long);
}

#define BAD(s) bad((s), sizeof(s) - 1, false)

static void test_v1_tcp4(void **state) {
  (void)state;
  const char *l = "PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n";
  struct sl_pp_header h = whole((const uint8_t *)l, strlen(l));
  assert_int_equal(h.version, 1);
  src_is(&h, "203.0.113.7", 56324);
  assert_int_equal(ntohs(((const struct sockaddr_in *)&h.dst)->sin_port), 443);
  /* The longest TCP4 line and the extremes of ports. */
  l = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 0\r\n";
  h = whole((const uint8_t *)l, strlen(l));
  src_is(&h, "255.255.255.255", 65535);
}

static void test_v1_tcp6_and_unknown(void **state) {
  (void)state;
  const char *l = "PROXY TCP6 2001:db8::7 2001:db8::1 1234 8443\r\n";
  struct sl_pp_header h = whole((const uint8_t *)l, strlen(l));
  src_is(&h, "2001:db8::7", 1234);
  l = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "65535 65535\r\n";
  assert_int_equal(strlen(l), 104);
  h = whole((const uint8_t *)l, strlen(l));
  assert_true(h.has_addr);
  l = "PROXY UNKNOWN\r\n";
  h = whole((const uint8_t *)l, strlen(l));
  assert_false(h.has_addr);
  /* UNKNOWN: whatever precedes the CRLF is ignored, up to 107 bytes. */
  l = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "65535 65535\r\n";
  assert_int_equal(strlen(l), SL_PP_V1_MAX);
  h = whole((const uint8_t *)l, strlen(l));
  assert_false(h.has_addr);
}

static void test_v1_malformed(void **state) {
  (void)state;
  BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n");          /* LF without CR */
  BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX");         /* CR without LF */
  BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n");       /* trailing space */
  BAD("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n");       /* two spaces */
  BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n");          /* a field missing */
  BAD("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n");       /* heading zero */
  BAD("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n");       /* heading zero in a port */
  BAD("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n");
  BAD("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n");
  BAD("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n");
  BAD("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n");
  BAD("PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n");    /* family mismatch */
  BAD("PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n");
  BAD("PROXY TCP6 2001:db8:::1 2001:db8::1 1 2\r\n");
  BAD("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n");
  BAD("PROXY UNKNOWNX\r\n");
  BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\x01\r\n");    /* not printable */
  BAD("PROXY\r\n");
  BAD("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
  BAD("PROXX ");
  /* Errors come as soon as a byte cannot belong to a header. */
  BAD("PROXY TCP4 1.2.3.4\n");
  BAD("PR0");
}

static void test_v1_too_long(void **state) {
  (void)state;
  char l[200];
  memcpy(l, "PROXY UNKNOWN ", 14);
  memset(l + 14, 'x', sizeof(l) - 14);
  struct sl_pp_header h;
  for (size_t i = 0; i < SL_PP_V1_MAX; i++) assert_int_equal(sl_pp_parse((uint8_t *)l, i, &h), SL_PP_NEED_MORE);
  bad(l, SL_PP_V1_MAX, true);
  bad(l, sizeof(l), true);
  /* A CRLF one byte too late: the line would be 108 bytes. */
  l[SL_PP_V1_MAX - 1] = '\r';
  l[SL_PP_V1_MAX] = '\n';
  bad(l, SL_PP_V1_MAX + 1, true);
  bad(l, SL_PP_V1_MAX, true);
}

static void test_v2_proxy_inet(void **state) {
  (void)state;
  uint8_t a[12] = {203, 0, 113, 7, 192, 0, 2, 1, 0xdc, 0x04, 0x01, 0xbb};
  uint8_t b[64];
  size_t n = v2(b, 0x21, 0x11, a, sizeof(a));
  struct sl_pp_header h = whole(b, n);
  assert_int_equal(h.version, 2);
  src_is(&h, "203.0.113.7", 0xdc04);
  assert_int_equal(ntohs(((const struct sockaddr_in *)&h.dst)->sin_port), 443);
}

static void test_v2_proxy_inet6_with_tlvs(void **state) {
  (void)state;
  uint8_t a[36 + 40];
  memset(a, 0, sizeof(a));
  inet_pton(AF_INET6, "2001:db8::7", a);
  inet_pton(AF_INET6, "2001:db8::1", a + 16);
  a[32] = 0x30, a[33] = 0x39; /* 12345 */
  a[34] = 0x20, a[35] = 0xfb; /* 8443 */
  /* TLVs (AWS's VPC endpoint id, a NOOP) are skipped, not interpreted. */
  uint8_t *t = a + 36;
  t[0] = 0xEA, t[1] = 0, t[2] = 23, t[3] = 0x01;
  memcpy(t + 4, "vpce-0123456789abcdef", 21);
  t[26] = 0x04, t[27] = 0, t[28] = 9;
  uint8_t b[128];
  size_t n = v2(b, 0x21, 0x21, a, sizeof(a));
  struct sl_pp_header h = whole(b, n);
  assert_int_equal(h.len, 16 + 76);
  src_is(&h, "2001:db8::7", 12345);
}

static void test_v2_without_addresses(void **state) {
  (void)state;
  uint8_t b[300];
  /* LOCAL (the balancer's own health check), with or without addresses,
   * whatever its family byte says. */
  struct sl_pp_header h = whole(b, v2(b, 0x20, 0x00, NULL, 0));
  assert_false(h.has_addr);
  h = whole(b, v2(b, 0x20, 0x11, NULL, 12));
  assert_false(h.has_addr);
  h = whole(b, v2(b, 0x20, 0xff, NULL, 3));
  assert_false(h.has_addr);
  /* PROXY over UNSPEC, AF_UNIX or UDP: the connection's own address. */
  h = whole(b, v2(b, 0x21, 0x00, NULL, 0));
  assert_false(h.has_addr);
  h = whole(b, v2(b, 0x21, 0x31, NULL, 216));
  assert_false(h.has_addr);
  h = whole(b, v2(b, 0x21, 0x12, NULL, 12));
  assert_false(h.has_addr);
}

static void test_v2_malformed(void **state) {
  (void)state;
  uint8_t b[SL_PP_MAX_HEADER + 32];
  struct sl_pp_header h;
  size_t n = v2(b, 0x21, 0x11, NULL, 12);
  /* Each signature byte wrong in turn fails at that byte. */
  for (size_t i = 0; i < 12; i++) {
    b[i] ^= 0x40;
    assert_int_equal(sl_pp_parse(b, i + 1, &h), SL_PP_ERROR);
    assert_int_equal(sl_pp_parse(b, n, &h), SL_PP_ERROR);
    b[i] ^= 0x40;
  }
  v2(b, 0x11, 0x11, NULL, 12); /* version 1 in a v2 header */
  assert_int_equal(sl_pp_parse(b, 13, &h), SL_PP_ERROR);
  v2(b, 0x22, 0x11, NULL, 12); /* command 2 */
  assert_int_equal(sl_pp_parse(b, 13, &h), SL_PP_ERROR);
  v2(b, 0x21, 0x41, NULL, 12); /* family 4 */
  assert_int_equal(sl_pp_parse(b, 14, &h), SL_PP_ERROR);
  v2(b, 0x21, 0x13, NULL, 12); /* protocol 3 */
  assert_int_equal(sl_pp_parse(b, 14, &h), SL_PP_ERROR);
  v2(b, 0x21, 0x11, NULL, 11); /* shorter than two IPv4 addresses and ports */
  assert_int_equal(sl_pp_parse(b, 16, &h), SL_PP_ERROR);
  assert_false(h.too_long);
  v2(b, 0x21, 0x21, NULL, 35);
  assert_int_equal(sl_pp_parse(b, 16 + 35, &h), SL_PP_ERROR);
  v2(b, 0x21, 0x31, NULL, 215);
  assert_int_equal(sl_pp_parse(b, 16, &h), SL_PP_ERROR);
  /* The length cap: the largest allowed parses, one more fails on the
   * length field alone (nothing after it needs to arrive). */
  n = v2(b, 0x21, 0x11, NULL, SL_PP_V2_MAX_LEN);
  assert_int_equal(sl_pp_parse(b, n, &h), SL_PP_DONE);
  v2(b, 0x21, 0x11, NULL, SL_PP_V2_MAX_LEN + 1);
  assert_int_equal(sl_pp_parse(b, 16, &h), SL_PP_ERROR);
  assert_true(h.too_long);
  b[14] = 0xff, b[15] = 0xff;
  assert_int_equal(sl_pp_parse(b, 16, &h), SL_PP_ERROR);
  assert_true(h.too_long);
}

static void test_not_a_header(void **state) {
  (void)state;
  struct sl_pp_header h;
  assert_int_equal(sl_pp_parse((const uint8_t *)"", 0, &h), SL_PP_NEED_MORE);
  assert_int_equal(sl_pp_parse((const uint8_t *)"\x16\x03\x01", 1, &h), SL_PP_ERROR);
  assert_non_null(strstr(h.error, "TLS"));
  assert_int_equal(sl_pp_parse((const uint8_t *)"GET / HTTP/1.1\r\n", 16, &h), SL_PP_ERROR);
  assert_non_null(strstr(h.error, "text"));
  assert_int_equal(sl_pp_parse((const uint8_t *)"PRI * HTTP/2.0", 3, &h), SL_PP_ERROR);
  assert_int_equal(sl_pp_parse((const uint8_t *)"\0", 1, &h), SL_PP_ERROR);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_v1_tcp4),
      cmocka_unit_test(test_v1_tcp6_and_unknown),
      cmocka_unit_test(test_v1_malformed),
      cmocka_unit_test(test_v1_too_long),
      cmocka_unit_test(test_v2_proxy_inet),
      cmocka_unit_test(test_v2_proxy_inet6_with_tlvs),
      cmocka_unit_test(test_v2_without_addresses),
      cmocka_unit_test(test_v2_malformed),
      cmocka_unit_test(test_not_a_header),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
