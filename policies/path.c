/*
 * sluice — request path normalisation and prefix matching. See
 * include/sluice/path.h for the normal form and what is refused.
 */
#include <string.h>

#include "sluice/path.h"

static int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* RFC 3986 §2.3: unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~". */
static bool is_unreserved(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

static bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

/* Not in a request target at all, raw (RFC 3986 §2: such bytes travel
 * percent-encoded): a space, or anything beyond ASCII. An HTTP/2 :path may
 * carry them; forwarded to an HTTP/1.1 origin they would break its request
 * line. */
static bool is_invalid(unsigned char c) { return c == ' ' || c >= 0x80; }

/* The refusal for a raw byte of the query or fragment, or OK. */
static enum sl_path_status check_raw(unsigned char c) {
  if (is_control(c)) return SL_PATH_CONTROL;
  if (is_invalid(c)) return SL_PATH_INVALID_CHAR;
  return SL_PATH_OK;
}

/* Where the path part ends: the query ('?') or a fragment ('#'). */
static size_t path_part_len(const char *p, size_t len) {
  size_t i = 0;
  while (i < len && p[i] != '?' && p[i] != '#') i++;
  return i;
}

/* Byte classes for sl_path_is_plain: 0 is an ordinary path byte. */
enum { PC_END = 1, PC_SLOW = 2, PC_SLASH = 3, PC_BAD = 4 };
static const unsigned char path_class[256] = {
    [0 ... 0x20] = PC_BAD, [0x7f ... 0xff] = PC_BAD, ['%'] = PC_SLOW, ['\\'] = PC_SLOW,
    ['?'] = PC_END,        ['#'] = PC_END,           ['/'] = PC_SLASH,
};

bool sl_path_is_plain(const char *p, size_t len) {
  if (len == 0 || p[0] != '/') return false;
  for (size_t i = 0; i < len; i++) {
    unsigned char k = path_class[(unsigned char)p[i]];
    if (k == 0) continue;
    if (k == PC_END) { /* the query: kept as is, if every byte may be */
      for (i++; i < len; i++)
        if (path_class[(unsigned char)p[i]] == PC_BAD) return false;
      return true;
    }
    if (k == PC_SLOW || k == PC_BAD) return false;
    /* "//" and a segment starting with '.' ("." or ".."; "/.well-known"
     * takes the slow path and comes out unchanged). */
    if (i + 1 < len && (p[i + 1] == '/' || p[i + 1] == '.')) return false;
  }
  return true;
}

/* Copies one segment (from |*i| up to the next '/' or |end|) to
 * |out| + |*o|, decoding as the normal form says. */
static enum sl_path_status copy_segment(const char *p, size_t end, size_t *i, char *out,
                                        size_t *o) {
  static const char HEX[] = "0123456789ABCDEF";
  while (*i < end && p[*i] != '/') {
    unsigned char c = (unsigned char)p[*i];
    if (c != '%') {
      if (c == '\\') return SL_PATH_BACKSLASH;
      enum sl_path_status bad = check_raw(c);
      if (bad != SL_PATH_OK) return bad;
      out[(*o)++] = (char)c;
      (*i)++;
      continue;
    }
    int hi = *i + 2 < end ? hex_value((unsigned char)p[*i + 1]) : -1;
    int lo = *i + 2 < end ? hex_value((unsigned char)p[*i + 2]) : -1;
    if (hi < 0 || lo < 0) return SL_PATH_BAD_ESCAPE;
    unsigned char v = (unsigned char)(hi * 16 + lo);
    if (v == '/') return SL_PATH_ENCODED_SLASH;
    if (v == '\\') return SL_PATH_BACKSLASH;
    if (is_control(v)) return SL_PATH_CONTROL;
    if (is_unreserved(v)) {
      out[(*o)++] = (char)v;
    } else {
      out[(*o)++] = '%';
      out[(*o)++] = HEX[hi];
      out[(*o)++] = HEX[lo];
    }
    *i += 3;
  }
  return SL_PATH_OK;
}

/* Invariant of the loop below: |out|[0, o) is a normalised path with no
 * "//" (RFC 3986 §5.2.4's output buffer), and |i| is at a '/' of the
 * input. Each segment is decoded first, then judged: "." is dropped, ".."
 * drops itself and the segment before it. Every input byte yields at most
 * one output byte, so |out| never outgrows the input. */
enum sl_path_status sl_path_normalize(const char *p, size_t len, char *out, size_t *out_len) {
  size_t end = path_part_len(p, len);
  if (end == 0 || p[0] != '/') return SL_PATH_NOT_ABSOLUTE;
  size_t i = 0, o = 0;
  while (i < end) {
    while (i < end && p[i] == '/') i++; /* merge slashes */
    if (o == 0 || out[o - 1] != '/') out[o++] = '/';
    size_t seg = o;
    enum sl_path_status st = copy_segment(p, end, &i, out, &o);
    if (st != SL_PATH_OK) return st;
    size_t n = o - seg;
    if (n == 1 && out[seg] == '.') {
      o = seg;
    } else if (n == 2 && out[seg] == '.' && out[seg + 1] == '.') {
      if (seg == 1) return SL_PATH_ESCAPES_ROOT;
      size_t k = seg - 1; /* the '/' before ".." */
      while (k > 0 && out[k - 1] != '/') k--;
      o = k;
    }
  }
  for (size_t q = end; q < len; q++) {
    enum sl_path_status bad = check_raw((unsigned char)p[q]);
    if (bad != SL_PATH_OK) return bad;
  }
  memcpy(out + o, p + end, len - end);
  o += len - end;
  out[o] = '\0';
  *out_len = o;
  return SL_PATH_OK;
}

const char *sl_path_status_name(enum sl_path_status st) {
  switch (st) {
  case SL_PATH_OK:
    return "ok";
  case SL_PATH_NOT_ABSOLUTE:
    return "bad_request_target";
  case SL_PATH_BAD_ESCAPE:
    return "path_bad_percent_encoding";
  case SL_PATH_ENCODED_SLASH:
    return "path_encoded_slash";
  case SL_PATH_BACKSLASH:
    return "path_backslash";
  case SL_PATH_CONTROL:
    return "path_control_character";
  case SL_PATH_INVALID_CHAR:
    return "path_invalid_character";
  case SL_PATH_ESCAPES_ROOT:
    return "path_escapes_root";
  }
  return "bad_path";
}

bool sl_path_prefix_match(const char *prefix, size_t plen, const char *path) {
  if (strncmp(path, prefix, plen) != 0) return false;
  if (plen > 0 && prefix[plen - 1] == '/') return true;
  char next = path[plen];
  return next == '\0' || next == '/' || next == '?' || next == '#';
}
