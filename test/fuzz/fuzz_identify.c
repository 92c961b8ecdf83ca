/*
 * libFuzzer driver for policies/identify.c: sl_identify with a fuzzed
 * header list (X-Forwarded-For and Forwarded walks, identity headers).
 *
 * Input: byte 0 picks the peer (trusted or not, IPv4 or IPv6, unix) and
 * whether the device class comes from a header or a User-Agent regex;
 * byte 1 is the IPv6 key prefix. The rest is header lines "name:value"
 * separated by '\n' (names lowercased, as both frontends deliver them; a
 * line without ':' is a name with an empty value).
 *
 * Invariants checked besides "no crash, no UB": every slice returned
 * points into the header values and is trimmed and non-empty; an
 * untrusted peer, or a trusted one without forwarding headers, is its own
 * client address; the rate-limit key is derived from the address as
 * documented; the firmware is parsed exactly when sl_version_parse takes
 * it; a conflict names one of the configured headers.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <regex.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "sluice/config.h"
#include "sluice/identify.h"
#include "sluice/version.h"

#define MAX_HEADERS 64

static struct sl_cidr trusted[4];
static regex_t ua_re;
static bool ready;

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz_identify: invariant violated: %s\n", what);
    abort();
  }
}

static void setup(void) {
  static const char *const cidrs[] = {"10.0.0.0/8", "127.0.0.0/8", "2001:db8::/32", "::1"};
  char err[128];
  for (size_t i = 0; i < 4; i++)
    if (sl_parse_cidr(cidrs[i], &trusted[i], err, sizeof(err)) != 0) abort();
  /* What the loader makes of "^Homey/(?P<class>[A-Za-z]+)": group 1. */
  if (regcomp(&ua_re, "^Homey/([A-Za-z]+)", REG_EXTENDED) != 0) abort();
  ready = true;
}

static bool within(const char *p, size_t len, const struct sl_hdr *h, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p >= h[i].value && p + len <= h[i].value + h[i].value_len) return true;
  return false;
}

static void check_slice(const char *p, size_t len, const struct sl_hdr *h, size_t n,
                        bool trimmed) {
  if (!p) {
    check(len == 0, "an absent fact has no length");
    return;
  }
  check(len > 0, "a present fact is not empty");
  check(within(p, len, h, n), "a fact is a slice of a header value");
  if (trimmed)
    check(p[0] != ' ' && p[0] != '\t' && p[len - 1] != ' ' && p[len - 1] != '\t',
          "a fact is trimmed of OWS");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!ready) setup();
  if (size < 2) return 0;
  uint8_t sel = data[0], prefix = data[1];
  data += 2;
  size -= 2;

  struct sl_identify_cfg cfg = {
      .trusted_proxies = trusted,
      .n_trusted_proxies = 4,
      .ipv6_prefix = prefix,
      .firmware_header = "x-firmware-version",
      .device_id_header = "x-device-id",
  };
  if (sel & 0x08) {
    cfg.device_class_ua_compiled = &ua_re;
    cfg.device_class_ua_group = 1;
  } else {
    cfg.device_class_header = "x-device-class";
  }

  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
  switch (sel & 0x07) {
  case 0: /* trusted IPv4 */
    s4->sin_family = AF_INET;
    inet_pton(AF_INET, "10.1.2.3", &s4->sin_addr);
    break;
  case 1: /* untrusted IPv4 */
    s4->sin_family = AF_INET;
    inet_pton(AF_INET, "198.51.100.7", &s4->sin_addr);
    break;
  case 2: /* trusted IPv6 */
    s6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::5", &s6->sin6_addr);
    break;
  case 3: /* untrusted IPv6 */
    s6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2a00:1450::1", &s6->sin6_addr);
    break;
  case 4: /* trusted IPv4, seen on a dual-stack socket */
    s6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &s6->sin6_addr);
    break;
  case 5: /* a unix socket peer */
    ss.ss_family = AF_UNIX;
    break;
  default: /* trusted loopback */
    s4->sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &s4->sin_addr);
    break;
  }

  /* Each name and value in its own exactly sized allocation, so ASan sees
   * a read past either. Values are NUL-terminated after their length, as
   * the frontends' are (sl_header): regexec's sanitizer interceptor reads
   * up to the NUL even with REG_STARTEND. */
  struct sl_hdr h[MAX_HEADERS];
  size_t n = 0, off = 0;
  bool has_fwd = false;
  while (off < size && n < MAX_HEADERS) {
    const char *line = (const char *)data + off;
    const char *eol = memchr(line, '\n', size - off);
    size_t len = eol ? (size_t)(eol - line) : size - off;
    off += len + (eol ? 1 : 0);
    const char *colon = memchr(line, ':', len);
    size_t nlen = colon ? (size_t)(colon - line) : len;
    size_t vlen = colon ? len - nlen - 1 : 0;
    char *name = malloc(nlen ? nlen : 1), *value = malloc(vlen + 1);
    for (size_t i = 0; i < nlen; i++)
      name[i] = line[i] >= 'A' && line[i] <= 'Z' ? (char)(line[i] | 0x20) : line[i];
    if (vlen) memcpy(value, colon + 1, vlen);
    value[vlen] = '\0';
    h[n] = (struct sl_hdr){name, nlen, value, vlen};
    if ((nlen == 15 && !memcmp(name, "x-forwarded-for", 15)) ||
        (nlen == 9 && !memcmp(name, "forwarded", 9)))
      has_fwd = true;
    n++;
  }

  struct sl_identity id;
  int rv = sl_identify(&cfg, (const struct sockaddr *)&ss, h, n, &id);
  check(rv == SL_IDENTIFY_OK || rv == SL_IDENTIFY_CONFLICT, "known status");

  /* The address part. */
  struct sl_identity peer;
  sl_identify_peer(&cfg, (const struct sockaddr *)&ss, &peer);
  bool peer_trusted = peer.family && sl_cidr_match(trusted, 4, peer.family, peer.addr);
  if (!peer_trusted || !has_fwd) {
    check(!id.forwarded, "only a trusted peer's forwarding headers are believed");
    check(id.family == peer.family && !memcmp(id.addr, peer.addr, 16) &&
              !memcmp(id.key, peer.key, 16),
          "an unforwarded request is keyed by its peer");
  }
  check(id.family == 0 || id.family == AF_INET || id.family == AF_INET6, "address family");
  if (id.family == AF_INET) {
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    check(!memcmp(id.key, v4mapped, 12) && !memcmp(id.key + 12, id.addr, 4),
          "an IPv4 key is ::ffff:a.b.c.d");
    for (size_t i = 4; i < 16; i++) check(id.addr[i] == 0, "IPv4 uses addr[0..3]");
  } else if (id.family == AF_INET6) {
    unsigned bits = prefix && prefix < 128 ? prefix : 128;
    for (unsigned b = 0; b < 128; b++) {
      unsigned bit_addr = (id.addr[b / 8] >> (7 - b % 8)) & 1;
      unsigned bit_key = (id.key[b / 8] >> (7 - b % 8)) & 1;
      check(bit_key == (b < bits ? bit_addr : 0), "an IPv6 key is the address masked");
    }
  }
  if (id.family) {
    char text[64];
    check(sl_identify_format_addr(&id, text, sizeof(text)) > 0, "an address formats");
  }

  if (rv == SL_IDENTIFY_CONFLICT) {
    check(id.conflict == cfg.firmware_header || id.conflict == cfg.device_id_header ||
              (cfg.device_class_header && id.conflict == cfg.device_class_header),
          "a conflict names a configured header");
  } else {
    check_slice(id.firmware, id.firmware_len, h, n, true);
    check_slice(id.device_id, id.device_id_len, h, n, true);
    check_slice(id.device_class, id.device_class_len, h, n, cfg.device_class_header != NULL);
    struct sl_version v;
    bool parses = id.firmware && sl_version_parse(id.firmware, id.firmware_len, &v) == 0;
    check(id.firmware_valid == parses, "firmware_valid iff the value parses");
    if (parses) check(sl_version_cmp(&v, &id.firmware_version) == 0, "the parsed firmware");
  }
  for (size_t i = 0; i < n; i++) {
    free((void *)h[i].name);
    free((void *)h[i].value);
  }
  return 0;
}
