/*
 * sluice — JSON string escaping. See include/sluice/json.h.
 */
#include <string.h>

#include "sluice/json.h"

/* Length of the well-formed UTF-8 sequence at |s| (|avail| bytes
 * readable), or 0 if the bytes there are not one (RFC 3629 table 3-7). */
static size_t utf8_len(const unsigned char *s, size_t avail) {
  unsigned char c = s[0], lo = 0x80, hi = 0xbf;
  size_t len;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f; /* no surrogates */
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f; /* nothing past U+10FFFF */
  } else {
    return 0;
  }
  if (avail < len || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xbf) return 0;
  return len;
}

/* The escaped form of the character at |s| into |out| (at most 6 bytes);
 * returns its length and sets |*used| to the input bytes it stands for. */
static size_t escape_one(const unsigned char *s, size_t avail, char out[6], size_t *used) {
  static const char hex[] = "0123456789abcdef";
  unsigned char c = s[0];
  *used = 1;
  if (c == '"' || c == '\\') {
    out[0] = '\\', out[1] = (char)c;
    return 2;
  }
  if (c == '\n') { /* the one short form: log lines carry many */
    out[0] = '\\', out[1] = 'n';
    return 2;
  }
  if (c < 0x20 || c == 0x7f) {
    memcpy(out, "\\u00", 4);
    out[4] = hex[c >> 4], out[5] = hex[c & 15];
    return 6;
  }
  if (c < 0x80) {
    out[0] = (char)c;
    return 1;
  }
  size_t k = utf8_len(s, avail);
  if (k == 0) {
    memcpy(out, "\\ufffd", 6);
    return 6;
  }
  memcpy(out, s, k);
  *used = k;
  return k;
}

/* A byte that stands for itself: printable ASCII but the two JSON escapes. */
static inline bool plain(unsigned char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; }

bool sl_json_escape_n(char *buf, size_t cap, size_t *len, const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t at = *len, i = 0;
  bool all = true;
  while (i < n) {
    /* A run of plain bytes goes in with one copy (most strings are one run). */
    size_t run = 0;
    while (i + run < n && plain(p[i + run])) run++;
    if (run) {
      if (at + run >= cap) { /* what fits of it, keeping the NUL's byte */
        run = cap > at + 1 ? cap - at - 1 : 0;
        all = false;
      }
      memcpy(buf + at, p + i, run);
      at += run;
      i += run;
      if (!all) break;
      continue;
    }
    char esc[6];
    size_t used, k = escape_one(p + i, n - i, esc, &used);
    if (at + k >= cap) {
      all = false;
      break;
    }
    memcpy(buf + at, esc, k);
    at += k;
    i += used;
  }
  *len = at;
  return all;
}

bool sl_json_escape(char *buf, size_t cap, size_t *len, const char *s) {
  return s ? sl_json_escape_n(buf, cap, len, s, strlen(s)) : true;
}

void sl_json_escape_file(FILE *f, const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    char esc[6];
    size_t used, k = escape_one(p + i, n - i, esc, &used);
    fwrite(esc, 1, k, f);
    i += used;
  }
}
