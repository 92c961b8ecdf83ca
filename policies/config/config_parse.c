/*
 * sluice — configuration value parsers: durations, rates, bandwidths, socket
 * addresses, CIDRs, RFC 3339 timestamps, header tokens, and the PCRE to
 * POSIX pattern translation. Pure functions; see config.h / config_int.h.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/config.h"
#include "config_int.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

/* ---- durations ---------------------------------------------------- */

/* Grammar: one or more <digits>[.<digits>]<unit>, unit ms|s|m|h, e.g.
 * "250ms", "1.5s", "1m30s". A bare number is refused: "10" could mean
 * seconds or milliseconds, and guessing wrong is a 1000x error. */
int sl_parse_duration_ms(const char *s, uint64_t *out_ms, char *err, size_t errlen) {
  if (!s || !*s) return fail(err, errlen, "empty duration (write e.g. 250ms, 5s, 2m, 1h)");
  const char *p = s;
  uint64_t total = 0;
  while (*p) {
    if (!isdigit((unsigned char)*p))
      return fail(err, errlen, "invalid duration '%s' (write e.g. 250ms, 5s, 2m, 1h)", s);
    uint64_t ip = 0;
    while (isdigit((unsigned char)*p)) {
      if (__builtin_mul_overflow(ip, 10, &ip) || __builtin_add_overflow(ip, (uint64_t)(*p - '0'), &ip))
        return fail(err, errlen, "duration '%s' is too large", s);
      p++;
    }
    uint64_t fnum = 0, fden = 1;
    if (*p == '.') {
      p++;
      if (!isdigit((unsigned char)*p))
        return fail(err, errlen, "invalid duration '%s' (write e.g. 250ms, 5s, 2m, 1h)", s);
      while (isdigit((unsigned char)*p)) {
        if (fden >= UINT64_C(1000000000))
          return fail(err, errlen, "duration '%s' has too many decimals", s);
        fnum = fnum * 10 + (uint64_t)(*p - '0');
        fden *= 10;
        p++;
      }
    }
    uint64_t unit;
    if (p[0] == 'm' && p[1] == 's') {
      unit = 1;
      p += 2;
    } else if (*p == 's') {
      unit = 1000;
      p++;
    } else if (*p == 'm') {
      unit = 60000;
      p++;
    } else if (*p == 'h') {
      unit = 3600000;
      p++;
    } else if (*p == '\0') {
      return fail(err, errlen, "duration '%s' needs a unit: ms, s, m or h (e.g. %ss)", s, s);
    } else {
      const char *u = p;
      while (*p && !isdigit((unsigned char)*p)) p++;
      return fail(err, errlen, "unknown duration unit '%.*s' in '%s' (use ms, s, m or h)",
                  (int)(p - u), u, s);
    }
    uint64_t v;
    if (__builtin_mul_overflow(ip, unit, &v) || __builtin_add_overflow(total, v, &total))
      return fail(err, errlen, "duration '%s' is too large", s);
    if (fnum) {
      uint64_t f = fnum * unit; /* < 1e9 * 3.6e6: no overflow */
      if (f % fden) return fail(err, errlen, "duration '%s' is not a whole number of milliseconds", s);
      if (__builtin_add_overflow(total, f / fden, &total))
        return fail(err, errlen, "duration '%s' is too large", s);
    }
  }
  *out_ms = total;
  return 0;
}

void cfg_format_duration(uint64_t ms, char *buf, size_t len) {
  if (ms == 0)
    snprintf(buf, len, "0s");
  else if (ms % 3600000 == 0)
    snprintf(buf, len, "%lluh", (unsigned long long)(ms / 3600000));
  else if (ms % 60000 == 0)
    snprintf(buf, len, "%llum", (unsigned long long)(ms / 60000));
  else if (ms % 1000 == 0)
    snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
  else
    snprintf(buf, len, "%llums", (unsigned long long)ms);
}

/* ---- rates -------------------------------------------------------- */

/* "N/s", "N/m", "N/h"; N a positive integer. The period is rounded down to
 * a whole nanosecond (7/h is 514285714285 ns). |out->text| points at |s|:
 * the caller keeps |s| alive. */
int sl_parse_rate(const char *s, struct sl_rate *out, char *err, size_t errlen) {
  if (!s || !*s) return fail(err, errlen, "empty rate (write e.g. 5/s, 300/m, 1000/h)");
  const char *p = s;
  uint64_t n = 0;
  if (!isdigit((unsigned char)*p))
    return fail(err, errlen, "invalid rate '%s' (write e.g. 5/s, 300/m, 1000/h)", s);
  while (isdigit((unsigned char)*p)) {
    if (__builtin_mul_overflow(n, 10, &n) || __builtin_add_overflow(n, (uint64_t)(*p - '0'), &n))
      return fail(err, errlen, "rate '%s' is too large", s);
    p++;
  }
  if (*p != '/')
    return fail(err, errlen, "invalid rate '%s': expected N/s, N/m or N/h", s);
  p++;
  uint64_t unit_ns;
  if (!strcmp(p, "s"))
    unit_ns = UINT64_C(1000000000);
  else if (!strcmp(p, "m"))
    unit_ns = UINT64_C(60000000000);
  else if (!strcmp(p, "h"))
    unit_ns = UINT64_C(3600000000000);
  else
    return fail(err, errlen, "unknown rate unit '/%s' in '%s' (use /s, /m or /h)", p, s);
  if (n == 0) return fail(err, errlen, "rate '%s' must be positive", s);
  if (n > unit_ns) return fail(err, errlen, "rate '%s' is too high (at most 1000000000/s)", s);
  out->period_ns = unit_ns / n;
  out->text = s;
  return 0;
}

/* ---- bandwidths ---------------------------------------------------- */

/* "N/s" or "N<unit>/s", unit B, KiB, MiB or GiB (powers of 1024; decimal
 * units are refused rather than guessed at); N a positive integer. Per
 * second only: a byte rate per minute means nothing to a socket. At most
 * 1024 GiB/s, so the pacer's arithmetic cannot overflow. |out->text| points
 * at |s|. */
int sl_parse_bandwidth(const char *s, struct sl_bandwidth *out, char *err, size_t errlen) {
  static const char hint[] = "write e.g. 64KiB/s, 1MiB/s or 65536/s";
  if (!s || !*s) return fail(err, errlen, "empty bandwidth (%s)", hint);
  const char *p = s;
  if (*p == '-') return fail(err, errlen, "bandwidth '%s' must be positive", s);
  if (!isdigit((unsigned char)*p)) return fail(err, errlen, "invalid bandwidth '%s' (%s)", s, hint);
  uint64_t n = 0;
  while (isdigit((unsigned char)*p)) {
    if (__builtin_mul_overflow(n, 10, &n) || __builtin_add_overflow(n, (uint64_t)(*p - '0'), &n))
      return fail(err, errlen, "bandwidth '%s' is too large (at most 1024GiB/s)", s);
    p++;
  }
  const char *slash = strchr(p, '/');
  if (!slash) return fail(err, errlen, "bandwidth '%s' needs a '/s' (e.g. %s/s)", s, s);
  static const struct {
    const char *unit;
    unsigned shift;
  } units[] = {{"", 0}, {"B", 0}, {"KiB", 10}, {"MiB", 20}, {"GiB", 30}};
  size_t ul = (size_t)(slash - p);
  int u = -1;
  for (int i = 0; i < (int)(sizeof(units) / sizeof(units[0])); i++)
    if (strlen(units[i].unit) == ul && memcmp(units[i].unit, p, ul) == 0) u = i;
  if (u < 0)
    return fail(err, errlen, "unknown size unit '%.*s' in bandwidth '%s' (use B, KiB, MiB or GiB)",
                (int)ul, p, s);
  if (strcmp(slash, "/s") != 0)
    return fail(err, errlen, "bandwidth '%s' must be per second ('/s')", s);
  if (n == 0) return fail(err, errlen, "bandwidth '%s' must be positive", s);
  if (n > (UINT64_C(1) << 40) >> units[u].shift)
    return fail(err, errlen, "bandwidth '%s' is too large (at most 1024GiB/s)", s);
  out->bytes_per_s = n << units[u].shift;
  out->text = s;
  return 0;
}

/* ---- addresses ---------------------------------------------------- */

static int parse_port(const char *p, const char *whole, uint16_t *port, char *err, size_t errlen) {
  if (!*p) return fail(err, errlen, "address '%s' has no port", whole);
  unsigned long v = 0;
  for (const char *q = p; *q; q++) {
    if (!isdigit((unsigned char)*q) || q - p >= 5)
      return fail(err, errlen, "invalid port '%s' in '%s'", p, whole);
    v = v * 10 + (unsigned long)(*q - '0');
  }
  if (v > 65535) return fail(err, errlen, "port %lu out of range (0..65535) in '%s'", v, whole);
  *port = (uint16_t)v;
  return 0;
}

/* "1.2.3.4:80", "[::1]:80", "localhost:80" (127.0.0.1). Numeric only:
 * loading a configuration never waits on DNS. |out->text| points at |s|. */
int sl_parse_sockaddr(const char *s, struct sl_sockaddr *out, char *err, size_t errlen) {
  if (!s || !*s) return fail(err, errlen, "empty address (write e.g. 127.0.0.1:8080 or [::1]:8080)");
  char host[64];
  const char *port;
  memset(out, 0, sizeof(*out));
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close) return fail(err, errlen, "address '%s' has no closing ']'", s);
    size_t hl = (size_t)(close - s - 1);
    if (hl == 0 || hl >= sizeof(host)) return fail(err, errlen, "invalid IPv6 address in '%s'", s);
    memcpy(host, s + 1, hl);
    host[hl] = '\0';
    if (close[1] != ':') return fail(err, errlen, "address '%s' needs a port after ']:'", s);
    port = close + 2;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
      return fail(err, errlen, "'%s' is not a numeric IPv6 address", host);
    uint16_t pn;
    if (parse_port(port, s, &pn, err, errlen)) return -1;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(pn);
    out->len = sizeof(*sin6);
  } else {
    const char *colon = strrchr(s, ':');
    if (!colon) return fail(err, errlen, "address '%s' has no port (write HOST:PORT)", s);
    if (memchr(s, ':', (size_t)(colon - s)))
      return fail(err, errlen, "IPv6 address '%s' needs brackets, e.g. [::1]:8080", s);
    size_t hl = (size_t)(colon - s);
    if (hl == 0) return fail(err, errlen, "address '%s' has no host (write e.g. 0.0.0.0%s)", s, colon);
    if (hl >= sizeof(host)) return fail(err, errlen, "invalid host in '%s'", s);
    memcpy(host, s, hl);
    host[hl] = '\0';
    port = colon + 1;
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
    if (!strcmp(host, "localhost")) {
      sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
      return fail(err, errlen,
                  "'%s' is not a numeric IPv4 address (host names are not resolved; "
                  "use an IP address or localhost)",
                  host);
    }
    uint16_t pn;
    if (parse_port(port, s, &pn, err, errlen)) return -1;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(pn);
    out->len = sizeof(*sin);
  }
  out->text = s;
  return 0;
}

/* True when |h| is a host name of RFC 1123 labels: letters, digits and
 * '-' (not first or last), 1 to 63 bytes each, dot-separated (a final dot
 * allowed), at most 253 bytes; and not all digits and dots (a mistyped
 * IPv4 address is an error, not a name to look up). */
static bool host_name_ok(const char *h) {
  size_t n = strlen(h);
  if (n == 0 || n > 253) return false;
  if (h[n - 1] == '.') n--;
  bool alpha = false;
  size_t label = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)h[i];
    if (ch == '.') {
      if (label == 0 || h[i - 1] == '-') return false;
      label = 0;
      continue;
    }
    if (!isalnum(ch) && ch != '-') return false;
    if (ch == '-' && label == 0) return false;
    if (isalpha(ch) || ch == '-') alpha = true;
    if (++label > 63) return false;
  }
  return label > 0 && h[n - 1] != '-' && alpha;
}

int sl_parse_hostport(const char *s, struct sl_hostport *out, char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  if (!s || !*s) return fail(err, errlen, "empty address (write e.g. 10.0.0.5:6379 or redis.default.svc:6379)");
  if (s[0] == '[') {
    struct sl_sockaddr a;
    if (sl_parse_sockaddr(s, &a, err, errlen)) return -1;
    const char *close = strchr(s, ']');
    memcpy(out->host, s + 1, (size_t)(close - s - 1)); /* < 64: checked by sl_parse_sockaddr */
    out->port = ntohs(((struct sockaddr_in6 *)&a.ss)->sin6_port);
    out->numeric = true;
  } else {
    const char *colon = strrchr(s, ':');
    if (!colon) return fail(err, errlen, "address '%s' has no port (write HOST:PORT)", s);
    if (memchr(s, ':', (size_t)(colon - s)))
      return fail(err, errlen, "IPv6 address '%s' needs brackets, e.g. [fd00::5]:6379", s);
    char *host = out->host;
    size_t hl = (size_t)(colon - s);
    if (hl == 0 || hl >= sizeof(out->host))
      return fail(err, errlen, "address '%s' has no valid host", s);
    memcpy(host, s, hl);
    host[hl] = '\0';
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1) {
      out->numeric = true;
    } else if (!host_name_ok(host)) {
      return fail(err, errlen,
                  "'%s' is neither an IPv4 address nor a host name (letters, digits, '-' and "
                  "'.', at most 253 characters)",
                  host);
    }
    if (parse_port(colon + 1, s, &out->port, err, errlen)) return -1;
  }
  if (out->port == 0) {
    return fail(err, errlen, "port 0 in '%s': name the port the server listens on", s);
  }
  out->text = s;
  return 0;
}

/* "10.0.0.0/8", "fd00::/8"; a bare address is a host route (/32, /128).
 * Host bits set below the prefix are refused: "10.1.2.3/8" is far more
 * often a typo than a deliberate way of writing 10.0.0.0/8. */
int sl_parse_cidr(const char *s, struct sl_cidr *out, char *err, size_t errlen) {
  if (!s || !*s) return fail(err, errlen, "empty CIDR (write e.g. 10.0.0.0/8)");
  char host[64];
  const char *slash = strchr(s, '/');
  size_t hl = slash ? (size_t)(slash - s) : strlen(s);
  if (hl == 0 || hl >= sizeof(host)) return fail(err, errlen, "invalid CIDR '%s'", s);
  memcpy(host, s, hl);
  host[hl] = '\0';
  memset(out, 0, sizeof(*out));
  unsigned max;
  if (strchr(host, ':')) {
    if (inet_pton(AF_INET6, host, out->addr) != 1)
      return fail(err, errlen, "'%s' is not an IPv6 address", host);
    out->family = AF_INET6;
    max = 128;
  } else {
    if (inet_pton(AF_INET, host, out->addr) != 1)
      return fail(err, errlen, "'%s' is not an IPv4 address", host);
    out->family = AF_INET;
    max = 32;
  }
  unsigned prefix = max;
  if (slash) {
    const char *p = slash + 1;
    if (!*p) return fail(err, errlen, "CIDR '%s' has no prefix length after '/'", s);
    prefix = 0;
    for (; *p; p++) {
      if (!isdigit((unsigned char)*p) || prefix > max)
        return fail(err, errlen, "invalid prefix length in '%s'", s);
      prefix = prefix * 10 + (unsigned)(*p - '0');
    }
    if (prefix > max)
      return fail(err, errlen, "prefix length /%u out of range (0..%u) in '%s'", prefix, max, s);
  }
  out->prefix = (uint8_t)prefix;
  unsigned bytes = max / 8;
  bool host_bits = false;
  uint8_t masked[16];
  for (unsigned i = 0; i < bytes; i++) {
    unsigned bit0 = i * 8;
    uint8_t mask = bit0 >= prefix ? 0 : prefix - bit0 >= 8 ? 0xff : (uint8_t)(0xff << (8 - (prefix - bit0)));
    masked[i] = out->addr[i] & mask;
    if (masked[i] != out->addr[i]) host_bits = true;
  }
  if (host_bits) {
    char net[INET6_ADDRSTRLEN];
    inet_ntop(out->family, masked, net, sizeof(net));
    return fail(err, errlen, "'%s' has host bits set below the /%u prefix (did you mean %s/%u?)", s,
                prefix, net, prefix);
  }
  return 0;
}

/* ---- timestamps --------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static bool digits(const char *p, int n, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < n; i++) {
    if (!isdigit((unsigned char)p[i])) return false;
    v = v * 10 + (unsigned)(p[i] - '0');
  }
  *out = v;
  return true;
}

int cfg_parse_timestamp(const char *s, int64_t *out, char *err, size_t errlen) {
  static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  unsigned Y, M, D, h, mi, sec;
  const char *p = s;
  if (strlen(s) < 20 || !digits(p, 4, &Y) || p[4] != '-' || !digits(p + 5, 2, &M) || p[7] != '-' ||
      !digits(p + 8, 2, &D) || (p[10] != 'T' && p[10] != 't') || !digits(p + 11, 2, &h) ||
      p[13] != ':' || !digits(p + 14, 2, &mi) || p[16] != ':' || !digits(p + 17, 2, &sec))
    goto bad;
  p += 19;
  if (*p == '.') {
    p++;
    if (!isdigit((unsigned char)*p)) goto bad;
    while (isdigit((unsigned char)*p)) p++; /* fractions of a second: dropped */
  }
  int64_t offset = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    unsigned oh, om;
    if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 || om > 59)
      goto bad;
    offset = (int64_t)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
    p += 6;
  } else {
    return fail(err, errlen, "timestamp '%s' needs a time zone: append Z for UTC", s);
  }
  if (*p) goto bad;
  bool leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
  if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] || (M == 2 && D == 29 && !leap) || h > 23 ||
      mi > 59 || sec > 60)
    return fail(err, errlen, "timestamp '%s' is not a valid date and time", s);
  if (sec == 60) sec = 59; /* leap second: close enough for an expiry */
  *out = days_from_civil(Y, M, D) * 86400 + h * 3600 + mi * 60 + sec - offset;
  return 0;
bad:
  return fail(err, errlen, "invalid timestamp '%s' (write RFC 3339, e.g. 2026-12-01T00:00:00Z)", s);
}

void cfg_format_timestamp(int64_t t, char *buf, size_t len) {
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- tokens ------------------------------------------------------- */

bool cfg_is_token(const char *s) {
  /* RFC 9110 section 5.6.2 tchar */
  static const char extra[] = "!#$%&'*+-.^_`|~";
  if (!*s) return false;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (!isalnum(c) && !(c && strchr(extra, c))) return false;
  }
  return true;
}

/* ---- PCRE-style patterns to POSIX ERE ----------------------------- */

struct sbuf {
  char *p;
  size_t n, cap;
};

static void sb_put(struct sbuf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + n + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) abort();
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* Rewrites one bracket expression starting at re[*i] == '['. POSIX has no
 * escapes inside brackets, so "\d" becomes "0-9", "\]" moves the ']' to
 * the front and "\-" moves the '-' to the end, where both are literal. */
static int bracket_to_posix(const char *re, size_t *i, struct sbuf *out, char *err, size_t errlen,
                            size_t *err_off) {
  size_t start = *i, j = *i + 1;
  bool neg = false, rbracket = false, dash = false, caret = false;
  struct sbuf body = {0};
  if (re[j] == '^') {
    neg = true;
    j++;
  }
  if (re[j] == ']') {
    rbracket = true;
    j++;
  }
  for (;;) {
    char c = re[j];
    if (!c) {
      free(body.p);
      *err_off = start;
      return fail(err, errlen, "unterminated '[' in pattern");
    }
    if (c == ']') break;
    if (c == '[' && (re[j + 1] == ':' || re[j + 1] == '=' || re[j + 1] == '.')) {
      char close[3] = {re[j + 1], ']', 0};
      const char *end = strstr(re + j + 2, close);
      if (!end) {
        free(body.p);
        *err_off = j;
        return fail(err, errlen, "unterminated '[%c' in pattern", re[j + 1]);
      }
      sb_put(&body, re + j, (size_t)(end + 2 - (re + j)));
      j = (size_t)(end + 2 - re);
      continue;
    }
    if (c == '\\') {
      char e = re[j + 1];
      switch (e) {
      case 'd': sb_puts(&body, "0-9"); break;
      case 'w': sb_puts(&body, "[:alnum:]_"); break;
      case 's': sb_puts(&body, "[:space:]"); break;
      case ']': rbracket = true; break;
      case '-': dash = true; break;
      case '^': caret = true; break;
      case 'n': sb_puts(&body, "\n"); break;
      case 't': sb_puts(&body, "\t"); break;
      case '\0':
        free(body.p);
        *err_off = j;
        return fail(err, errlen, "pattern ends with a backslash");
      default:
        if (isalnum((unsigned char)e)) {
          free(body.p);
          *err_off = j;
          return fail(err, errlen, "escape '\\%c' inside [...] is not supported", e);
        }
        sb_put(&body, &e, 1);
      }
      j += 2;
      continue;
    }
    sb_put(&body, &c, 1);
    j++;
  }
  if (caret && !body.n && !rbracket) {
    /* "[\^]" or "[\^\-]": a lone caret cannot be written as a POSIX bracket */
    sb_puts(out, dash ? "[-^]" : "\\^");
    if (neg) {
      free(body.p);
      *err_off = start;
      return fail(err, errlen, "negated bracket of only '^' is not supported");
    }
  } else {
    sb_puts(out, neg ? "[^" : "[");
    if (rbracket) sb_puts(out, "]");
    if (body.n) sb_put(out, body.p, body.n);
    if (caret) sb_puts(out, "^");
    if (dash) sb_puts(out, "-");
    sb_puts(out, "]");
  }
  free(body.p);
  *i = j + 1;
  return 0;
}

char *cfg_regex_to_posix(const char *re, unsigned *class_group, char *err, size_t errlen,
                         size_t *err_off) {
  struct sbuf out = {0};
  unsigned group = 0;
  *class_group = 0;
  sb_puts(&out, "");
  for (size_t i = 0; re[i];) {
    char c = re[i];
    if (c == '\\') {
      char e = re[i + 1];
      if (!e) {
        *err_off = i;
        fail(err, errlen, "pattern ends with a backslash");
        goto fail;
      }
      if (e == 'd')
        sb_puts(&out, "[0-9]");
      else if (e == 'D')
        sb_puts(&out, "[^0-9]");
      else
        sb_put(&out, re + i, 2);
      i += 2;
    } else if (c == '[') {
      if (bracket_to_posix(re, &i, &out, err, errlen, err_off)) goto fail;
    } else if (c == '(' && re[i + 1] == '?') {
      size_t name_at;
      if (re[i + 2] == 'P' && re[i + 3] == '<')
        name_at = i + 4;
      else if (re[i + 2] == '<' && re[i + 3] != '=' && re[i + 3] != '!')
        name_at = i + 3;
      else if (re[i + 2] == ':')
        name_at = 0;
      else {
        *err_off = i;
        fail(err, errlen, "unsupported group syntax '(?%c'", re[i + 2] ? re[i + 2] : ' ');
        goto fail;
      }
      group++;
      if (name_at) {
        size_t e = name_at;
        while (isalnum((unsigned char)re[e]) || re[e] == '_') e++;
        if (re[e] != '>' || e == name_at) {
          *err_off = i;
          fail(err, errlen, "invalid group name");
          goto fail;
        }
        if (e - name_at == 5 && !memcmp(re + name_at, "class", 5)) {
          if (*class_group) {
            *err_off = i;
            fail(err, errlen, "more than one group named 'class'");
            goto fail;
          }
          *class_group = group;
        }
        i = e + 1;
      } else {
        i += 3;
      }
      sb_puts(&out, "(");
    } else {
      if (c == '(') group++;
      sb_put(&out, &c, 1);
      i++;
    }
  }
  return out.p;
fail:
  free(out.p);
  return NULL;
}

/* ---- identity hashing --------------------------------------------- */

