/*
 * sluice — request identification.
 *
 * Which forwarding header: X-Forwarded-For when present, Forwarded
 * (RFC 7239) otherwise. Every load balancer in front of sluice in practice
 * (AWS ALB/NLB, GCLB, nginx, Envoy, ingress controllers) appends to
 * X-Forwarded-For; fewer speak Forwarded. Either can be forged by a client
 * on its left, which is why only hops appended by trusted proxies (walking
 * from the right) are believed. A trusted proxy that sets only one of the
 * two must strip the other, or a client could pick the header sluice reads.
 *
 * The walk keeps the rightmost 32 hops of the chosen header; a longer
 * chain of trusted proxies than that is not a real deployment, and the
 * leftmost kept hop is then used, which is still an address some trusted
 * proxy reported.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <regex.h>
#include <string.h>
#include <sys/socket.h>

#include "sluice/identify.h"
#include "sluice/version.h"

#define MAX_HOPS 32

struct ip {
  uint8_t family;
  uint8_t a[16];
};

struct slice {
  const char *p;
  size_t len;
};

static bool is_ows(char c) { return c == ' ' || c == '\t'; }

static struct slice trim(const char *p, size_t len) {
  while (len && is_ows(*p)) p++, len--;
  while (len && is_ows(p[len - 1])) len--;
  return (struct slice){p, len};
}

/* ---- addresses ----------------------------------------------------- */

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* IPv4-mapped IPv6 becomes IPv4, so that dual-stack sockets and v4 CIDRs
 * agree. */
static void ip_normalise(struct ip *ip) {
  if (ip->family == AF_INET6 && memcmp(ip->a, v4mapped, 12) == 0) {
    memmove(ip->a, ip->a + 12, 4);
    memset(ip->a + 4, 0, 12);
    ip->family = AF_INET;
  }
}

static void ip_from_sockaddr(const struct sockaddr *sa, struct ip *ip) {
  memset(ip, 0, sizeof(*ip));
  if (!sa) return;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    ip->family = AF_INET;
    memcpy(ip->a, &s4->sin_addr, 4);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    ip->family = AF_INET6;
    memcpy(ip->a, &s6->sin6_addr, 16);
    ip_normalise(ip);
  }
}

/* An IPv6 address of |len| bytes (no brackets, no port). */
static bool ip_parse_v6(const char *p, size_t len, struct ip *ip) {
  char buf[INET6_ADDRSTRLEN];
  if (len == 0 || len >= sizeof(buf)) return false;
  memcpy(buf, p, len);
  buf[len] = '\0';
  if (inet_pton(AF_INET6, buf, ip->a) != 1) return false;
  ip->family = AF_INET6;
  ip_normalise(ip);
  return true;
}

/* Parses a node as found in X-Forwarded-For or Forwarded's for=:
 * "192.0.2.1", "192.0.2.1:80", "2001:db8::1", "[2001:db8::1]",
 * "[2001:db8::1]:80". Returns false for anything else ("unknown",
 * obfuscated identifiers, zone ids, garbage). */
static bool ip_parse(const char *p, size_t len, struct ip *ip) {
  char buf[INET6_ADDRSTRLEN];
  memset(ip, 0, sizeof(*ip));
  if (len == 0) return false;
  if (p[0] == '[') {
    const char *close = memchr(p, ']', len);
    if (!close) return false;
    size_t rest = len - (size_t)(close - p) - 1;
    if (rest && (close[1] != ':' || rest == 1)) return false;
    for (size_t i = 2; i <= rest; i++)
      if (close[i] < '0' || close[i] > '9') return false;
    p++;
    return ip_parse_v6(p, (size_t)(close - p), ip);
  }
  const char *colon = memchr(p, ':', len);
  if (colon && memchr(colon + 1, ':', len - (size_t)(colon - p) - 1)) {
    /* Two colons or more: a bare IPv6 address. */
    return ip_parse_v6(p, len, ip);
  }
  if (colon) { /* IPv4:port */
    size_t plen = len - (size_t)(colon - p) - 1;
    if (plen == 0) return false;
    for (size_t i = 0; i < plen; i++)
      if (colon[1 + i] < '0' || colon[1 + i] > '9') return false;
    len = (size_t)(colon - p);
  }
  if (len >= sizeof(buf)) return false;
  memcpy(buf, p, len);
  buf[len] = '\0';
  if (inet_pton(AF_INET, buf, ip->a) != 1) return false;
  ip->family = AF_INET;
  return true;
}

bool sl_cidr_match(const struct sl_cidr *c, size_t n, uint8_t family, const uint8_t *addr) {
  for (size_t i = 0; i < n; i++) {
    if (c[i].family != family) continue;
    unsigned bits = c[i].prefix, max = family == AF_INET ? 32 : 128;
    if (bits > max) bits = max;
    unsigned full = bits / 8, rem = bits % 8;
    if (memcmp(c[i].addr, addr, full) != 0) continue;
    if (rem) {
      uint8_t mask = (uint8_t)(0xff << (8 - rem));
      if ((c[i].addr[full] & mask) != (addr[full] & mask)) continue;
    }
    return true;
  }
  return false;
}

static bool trusted(const struct sl_identify_cfg *cfg, const struct ip *ip) {
  return ip->family && sl_cidr_match(cfg->trusted_proxies, cfg->n_trusted_proxies, ip->family, ip->a);
}

static void set_addr(const struct sl_identify_cfg *cfg, const struct ip *ip, struct sl_identity *out) {
  out->family = ip->family;
  memcpy(out->addr, ip->a, 16);
  memset(out->key, 0, 16);
  if (ip->family == AF_INET) {
    memcpy(out->key, v4mapped, 12);
    memcpy(out->key + 12, ip->a, 4);
  } else if (ip->family == AF_INET6) {
    unsigned bits = cfg->ipv6_prefix && cfg->ipv6_prefix < 128 ? cfg->ipv6_prefix : 128;
    unsigned full = bits / 8, rem = bits % 8;
    memcpy(out->key, ip->a, full);
    if (rem) out->key[full] = (uint8_t)(ip->a[full] & (0xff << (8 - rem)));
  }
}

/* ---- forwarding headers -------------------------------------------- */

struct hops {
  struct slice s[MAX_HOPS];
  size_t n; /* total seen; the last min(n, MAX_HOPS) are kept */
};

static void hops_push(struct hops *h, const char *p, size_t len) {
  h->s[h->n % MAX_HOPS] = (struct slice){p, len};
  h->n++;
}

static void xff_collect(const char *v, size_t len, struct hops *h) {
  size_t i = 0;
  while (i <= len) {
    size_t j = i;
    while (j < len && v[j] != ',') j++;
    struct slice t = trim(v + i, j - i);
    if (t.len) hops_push(h, t.p, t.len); /* "a,,b": empty elements are noise */
    i = j + 1;
  }
}

/* |a| equals the lowercase |lit| ignoring ASCII case. Only letters fold:
 * "| 0x20" on any byte would also make CR (0x0d) equal '-' (0x2d). */
static bool ieq(const char *a, size_t al, const char *lit) {
  size_t l = strlen(lit);
  if (al != l) return false;
  for (size_t i = 0; i < l; i++) {
    char c = a[i] >= 'A' && a[i] <= 'Z' ? (char)(a[i] | 0x20) : a[i];
    if (c != lit[i]) return false;
  }
  return true;
}

/* RFC 7239 section 4: forwarded-element *( "," forwarded-element ), each
 * element pairs separated by ";", values token or quoted-string (which may
 * hold ',' and ';'). Pushes one hop per element: its first for= value, or
 * a NULL slice (which stops the walk) when there is no for= or its value
 * is unterminated or uses escapes, which no address needs. */
static void fwd_collect(const char *v, size_t len, struct hops *h) {
  size_t i = 0;
  while (i < len) {
    struct slice forv = {NULL, 0};
    bool have_for = false;
    for (;;) { /* one pair */
      while (i < len && is_ows(v[i])) i++;
      size_t k = i;
      while (i < len && v[i] != '=' && v[i] != ';' && v[i] != ',') i++;
      struct slice key = trim(v + k, i - k);
      struct slice val = {NULL, 0};
      if (i < len && v[i] == '=') {
        i++;
        while (i < len && is_ows(v[i])) i++;
        if (i < len && v[i] == '"') {
          size_t q = ++i;
          bool ok = true;
          while (i < len && v[i] != '"') {
            if (v[i] == '\\') ok = false, i++;
            i++;
          }
          if (i >= len) ok = false;
          if (ok) val = (struct slice){v + q, i - q};
          if (i < len) i++; /* closing quote */
        } else {
          size_t q = i;
          while (i < len && v[i] != ';' && v[i] != ',') i++;
          val = trim(v + q, i - q);
        }
      }
      if (!have_for && ieq(key.p, key.len, "for")) {
        have_for = true;
        forv = val;
      }
      while (i < len && v[i] != ';' && v[i] != ',') i++; /* junk after a value */
      if (i < len && v[i] == ';') {
        i++;
        continue;
      }
      break;
    }
    hops_push(h, forv.len ? forv.p : NULL, forv.len);
    if (i < len) i++; /* the ',' */
  }
}

static void client_address(const struct sl_identify_cfg *cfg, const struct ip *peer,
                           const struct sl_hdr *h, size_t n, struct sl_identity *out) {
  struct ip cur = *peer;
  out->forwarded = false;
  if (trusted(cfg, &cur)) {
    struct hops hops;
    hops.n = 0;
    for (size_t i = 0; i < n; i++)
      if (ieq(h[i].name, h[i].name_len, "x-forwarded-for")) xff_collect(h[i].value, h[i].value_len, &hops);
    if (hops.n == 0)
      for (size_t i = 0; i < n; i++)
        if (ieq(h[i].name, h[i].name_len, "forwarded")) fwd_collect(h[i].value, h[i].value_len, &hops);
    size_t kept = hops.n < MAX_HOPS ? hops.n : MAX_HOPS;
    for (size_t k = 0; k < kept; k++) {
      const struct slice *s = &hops.s[(hops.n - 1 - k) % MAX_HOPS];
      struct ip hop;
      if (!s->p || !ip_parse(s->p, s->len, &hop)) break;
      cur = hop;
      out->forwarded = true;
      if (!trusted(cfg, &cur)) break;
    }
  }
  set_addr(cfg, &cur, out);
}

/* ---- identity headers ---------------------------------------------- */

enum name_match { NAME_OTHER = 0, NAME_EXACT, NAME_ALIAS };

/* |name| against the configured |want|: equal, equal once '_' is read as
 * '-', or neither. */
static enum name_match name_match(const char *name, size_t len, const char *want) {
  if (!want) return NAME_OTHER;
  size_t wl = strlen(want);
  if (len != wl) return NAME_OTHER;
  bool alias = false;
  for (size_t i = 0; i < len; i++) {
    if (name[i] == want[i]) continue;
    if (name[i] == '_' && want[i] == '-') {
      alias = true;
      continue;
    }
    return NAME_OTHER;
  }
  return alias ? NAME_ALIAS : NAME_EXACT;
}

/* Collects the single value of header |want|; false on a conflict. */
static bool single_value(const struct sl_hdr *h, size_t n, const char *want, const char **val,
                         size_t *vlen) {
  *val = NULL;
  *vlen = 0;
  if (!want) return true;
  for (size_t i = 0; i < n; i++) {
    enum name_match m = name_match(h[i].name, h[i].name_len, want);
    if (m == NAME_OTHER) continue;
    if (m == NAME_ALIAS) return false;
    struct slice t = trim(h[i].value, h[i].value_len);
    if (!*val) {
      *val = t.p;
      *vlen = t.len;
    } else if (t.len != *vlen || memcmp(t.p, *val, t.len) != 0) {
      return false;
    }
  }
  if (*val && *vlen == 0) *val = NULL;
  return true;
}

static void class_from_ua(const struct sl_identify_cfg *cfg, const struct sl_hdr *h, size_t n,
                          struct sl_identity *out) {
  const regex_t *re = cfg->device_class_ua_compiled;
  unsigned g = cfg->device_class_ua_group;
  if (!re || g == 0 || g >= 32) return;
  for (size_t i = 0; i < n; i++) {
    if (!ieq(h[i].name, h[i].name_len, "user-agent")) continue;
    regmatch_t m[32];
    m[0].rm_so = 0;
    m[0].rm_eo = (regoff_t)h[i].value_len;
    /* REG_STARTEND: match the slice in place, no NUL needed, no copy. */
    if (regexec(re, h[i].value, g + 1, m, REG_STARTEND) != 0) return;
    if (m[g].rm_so < 0 || m[g].rm_eo <= m[g].rm_so) return;
    out->device_class = h[i].value + m[g].rm_so;
    out->device_class_len = (size_t)(m[g].rm_eo - m[g].rm_so);
    return; /* the first User-Agent only */
  }
}

void sl_identify_peer(const struct sl_identify_cfg *cfg, const struct sockaddr *peer,
                      struct sl_identity *out) {
  struct ip ip;
  ip_from_sockaddr(peer, &ip);
  out->forwarded = false;
  set_addr(cfg, &ip, out);
}

int sl_identify(const struct sl_identify_cfg *cfg, const struct sockaddr *peer,
                const struct sl_hdr *h, size_t n, struct sl_identity *out) {
  memset(out, 0, sizeof(*out));
  struct ip ip;
  ip_from_sockaddr(peer, &ip);
  client_address(cfg, &ip, h, n, out);

  if (!single_value(h, n, cfg->firmware_header, &out->firmware, &out->firmware_len)) {
    out->conflict = cfg->firmware_header;
    return SL_IDENTIFY_CONFLICT;
  }
  if (!single_value(h, n, cfg->device_id_header, &out->device_id, &out->device_id_len)) {
    out->conflict = cfg->device_id_header;
    return SL_IDENTIFY_CONFLICT;
  }
  if (cfg->device_class_header) {
    if (!single_value(h, n, cfg->device_class_header, &out->device_class, &out->device_class_len)) {
      out->conflict = cfg->device_class_header;
      return SL_IDENTIFY_CONFLICT;
    }
  } else {
    class_from_ua(cfg, h, n, out);
  }
  if (out->firmware &&
      sl_version_parse(out->firmware, out->firmware_len, &out->firmware_version) == 0)
    out->firmware_valid = true;
  return SL_IDENTIFY_OK;
}

int sl_identify_format_addr(const struct sl_identity *id, char *buf, size_t cap) {
  int af = id->family == AF_INET ? AF_INET : id->family == AF_INET6 ? AF_INET6 : 0;
  if (!af || !inet_ntop(af, id->addr, buf, (socklen_t)cap)) return -1;
  return (int)strlen(buf);
}
