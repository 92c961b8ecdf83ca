/*
 * sluice — PROXY protocol header parser. See proxy_proto.h; section
 * numbers are those of haproxy's doc/proxy-protocol.txt.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "core/proxy_proto.h"

static const uint8_t V2_SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char V1_SIG[] = "PROXY ";

static enum sl_pp_status fail(struct sl_pp_header *h, const char *why) {
  h->error = why;
  return SL_PP_ERROR;
}

/* The first bytes match neither signature: say what they look like, so
 * the log tells a balancer that does not send the header (TLS or HTTP
 * straight away) from noise. */
static enum sl_pp_status not_a_header(struct sl_pp_header *h, uint8_t first) {
  if (first == 0x16) return fail(h, "no PROXY header: the client started a TLS handshake");
  if (first >= 'A' && first <= 'Z') return fail(h, "no PROXY header: the client sent text (HTTP?)");
  return fail(h, "no PROXY header: bad signature");
}

/* A decimal in [0, max] without heading zeroes (§2.1), the whole of
 * [s, e). */
static bool parse_dec(const char *s, const char *e, uint32_t max, uint32_t *out) {
  if (s == e || e - s > 5 || (*s == '0' && e - s > 1)) return false;
  uint32_t v = 0;
  for (; s < e; s++) {
    if (*s < '0' || *s > '9') return false;
    v = v * 10 + (uint32_t)(*s - '0');
  }
  if (v > max) return false;
  *out = v;
  return true;
}

/* Exactly four decimals in [0, 255], one dot apart, no heading zeroes. */
static bool parse_ipv4(const char *s, const char *e, uint8_t out[4]) {
  for (int i = 0; i < 4; i++) {
    const char *d = s;
    while (d < e && *d != '.') d++;
    uint32_t v;
    if (!parse_dec(s, d, 255, &v)) return false;
    out[i] = (uint8_t)v;
    if (i < 3) {
      if (d == e) return false;
      s = d + 1;
    } else if (d != e) {
      return false;
    }
  }
  return true;
}

static bool parse_ipv6(const char *s, const char *e, uint8_t out[16]) {
  char tmp[64];
  if (e - s >= (long)sizeof(tmp) || s == e) return false;
  memcpy(tmp, s, (size_t)(e - s));
  tmp[e - s] = '\0';
  return inet_pton(AF_INET6, tmp, out) == 1;
}

/* One address and port of family |v6| into |ss|. */
static bool v1_addr(const char *a, const char *ae, const char *p, const char *pe, bool v6,
                    struct sockaddr_storage *ss) {
  uint32_t port;
  if (!parse_dec(p, pe, 65535, &port)) return false;
  memset(ss, 0, sizeof(*ss));
  if (v6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    return parse_ipv6(a, ae, s6->sin6_addr.s6_addr);
  }
  struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
  s4->sin_family = AF_INET;
  s4->sin_port = htons((uint16_t)port);
  return parse_ipv4(a, ae, (uint8_t *)&s4->sin_addr.s_addr);
}

/* The line's fields after "PROXY ", [s, e) without the CRLF (§2.1). */
static enum sl_pp_status v1_fields(const char *s, const char *e, struct sl_pp_header *h) {
  const char *f[6];
  size_t n = 0;
  f[n++] = s;
  for (const char *p = s; p < e && n < 6; p++)
    if (*p == ' ') f[n++] = p + 1;
  const char *proto_end = n > 1 ? f[1] - 1 : e;
  if (proto_end - s == 7 && memcmp(s, "UNKNOWN", 7) == 0) {
    h->has_addr = false; /* the rest of the line is ignored */
    return SL_PP_DONE;
  }
  bool v6;
  if (proto_end - s == 4 && memcmp(s, "TCP4", 4) == 0)
    v6 = false;
  else if (proto_end - s == 4 && memcmp(s, "TCP6", 4) == 0)
    v6 = true;
  else
    return fail(h, "PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN");
  if (n != 5 || memchr(f[4], ' ', (size_t)(e - f[4])))
    return fail(h, "PROXY v1: not five fields one space apart");
  if (!v1_addr(f[1], f[2] - 1, f[3], f[4] - 1, v6, &h->src))
    return fail(h, "PROXY v1: bad source address or port");
  if (!v1_addr(f[2], f[3] - 1, f[4], e, v6, &h->dst))
    return fail(h, "PROXY v1: bad destination address or port");
  h->has_addr = true;
  return SL_PP_DONE;
}

static enum sl_pp_status parse_v1(const uint8_t *buf, size_t len, struct sl_pp_header *h) {
  h->version = 1;
  size_t lim = len < SL_PP_V1_MAX ? len : SL_PP_V1_MAX;
  for (size_t i = sizeof(V1_SIG) - 1; i < lim; i++) {
    uint8_t c = buf[i];
    if (c == '\r') {
      if (i + 1 >= SL_PP_V1_MAX) break; /* no room left for the LF */
      if (i + 1 >= len) return SL_PP_NEED_MORE;
      if (buf[i + 1] != '\n') return fail(h, "PROXY v1: CR without LF");
      h->len = i + 2;
      return v1_fields((const char *)buf + sizeof(V1_SIG) - 1, (const char *)buf + i, h);
    }
    if (c < 0x20 || c > 0x7e) return fail(h, "PROXY v1: a byte that is not printable ASCII");
  }
  if (len < SL_PP_V1_MAX) return SL_PP_NEED_MORE;
  h->too_long = true;
  return fail(h, "PROXY v1: no CRLF in the first 107 bytes");
}

static void v2_sockaddr(struct sockaddr_storage *ss, bool v6, const uint8_t *addr,
                        const uint8_t *port) {
  memset(ss, 0, sizeof(*ss));
  uint16_t p;
  memcpy(&p, port, 2); /* network order already */
  if (v6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    s6->sin6_family = AF_INET6;
    memcpy(s6->sin6_addr.s6_addr, addr, 16);
    s6->sin6_port = p;
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    memcpy(&s4->sin_addr.s_addr, addr, 4);
    s4->sin_port = p;
  }
}

static enum sl_pp_status parse_v2(const uint8_t *buf, size_t len, struct sl_pp_header *h) {
  h->version = 2;
  if (len < 13) return SL_PP_NEED_MORE;
  if ((buf[12] >> 4) != 2) return fail(h, "PROXY v2: version is not 2");
  uint8_t cmd = buf[12] & 0x0f;
  if (cmd > 1) return fail(h, "PROXY v2: command is neither LOCAL nor PROXY");
  if (len < 14) return SL_PP_NEED_MORE;
  uint8_t fam = buf[13] >> 4, proto = buf[13] & 0x0f;
  /* LOCAL ignores the family (§2.2); PROXY must name a valid one. */
  if (cmd == 1 && (fam > 3 || proto > 2))
    return fail(h, "PROXY v2: unknown address family or protocol");
  if (len < 16) return SL_PP_NEED_MORE;
  size_t alen = ((size_t)buf[14] << 8) | buf[15];
  if (alen > SL_PP_V2_MAX_LEN) {
    h->too_long = true;
    return fail(h, "PROXY v2: header longer than 16 + 2048 bytes");
  }
  if (cmd == 1) {
    static const size_t need[4] = {0, 12, 36, 216}; /* UNSPEC, INET, INET6, UNIX */
    if (alen < need[fam]) return fail(h, "PROXY v2: length shorter than its addresses");
  }
  if (len < 16 + alen) return SL_PP_NEED_MORE;
  h->len = 16 + alen;
  /* TCP over IPv4 or IPv6 carries the client's address; anything else
   * falls back to the connection's own (§2.2: UNSPEC mode). TLVs after
   * the addresses are skipped: none changes what sluice does. */
  h->has_addr = cmd == 1 && proto == 1 && (fam == 1 || fam == 2);
  if (h->has_addr) {
    bool v6 = fam == 2;
    size_t al = v6 ? 16 : 4;
    const uint8_t *a = buf + 16;
    v2_sockaddr(&h->src, v6, a, a + 2 * al);
    v2_sockaddr(&h->dst, v6, a + al, a + 2 * al + 2);
  }
  return SL_PP_DONE;
}

enum sl_pp_status sl_pp_parse(const uint8_t *buf, size_t len, struct sl_pp_header *h) {
  memset(h, 0, sizeof(*h));
  if (len == 0) return SL_PP_NEED_MORE;
  const uint8_t *sig;
  size_t sig_len;
  if (buf[0] == 'P') {
    sig = (const uint8_t *)V1_SIG;
    sig_len = sizeof(V1_SIG) - 1;
  } else if (buf[0] == V2_SIG[0]) {
    sig = V2_SIG;
    sig_len = sizeof(V2_SIG);
  } else {
    return not_a_header(h, buf[0]);
  }
  size_t n = len < sig_len ? len : sig_len;
  if (memcmp(buf, sig, n) != 0) return not_a_header(h, buf[0]);
  if (len < sig_len) return SL_PP_NEED_MORE;
  return sig == V2_SIG ? parse_v2(buf, len, h) : parse_v1(buf, len, h);
}
