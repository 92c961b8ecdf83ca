/*
 * sluice — a header name, header value or request target that llhttp
 * hands over in pieces (one span per llhttp_execute call that sees part of
 * it, so a field split across reads arrives as several spans).
 *
 * A field that arrives whole costs no copy here: it stays a slice of the
 * parser's input until its *_complete callback, where the one consumer
 * (the header array) copies it. Only a field that spans reads is copied,
 * into a scratch buffer owned by the parser's owner that grows
 * geometrically in place (realloc, doubling): n bytes in any number of
 * pieces cost O(n) copying and at most 2n bytes, never a copy per piece
 * left behind in an arena. The caller bounds the total before adding (the
 * header_bytes limit), so the buffer never grows past that limit's next
 * power of two. Not thread-safe: one parser, one owner.
 */
#ifndef SLUICE_HPIECE_H
#define SLUICE_HPIECE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Scratch kept between messages up to this size (bytes); a bigger one is
 * freed by its owner once the message is complete. */
#define SL_HPIECE_KEEP_CAP 4096

struct sl_hpiece {
  const char *at; /* the bytes so far: a slice of the parser's input, or buf */
  size_t len;
  char *buf;      /* owned scratch, NULL until a field spans reads */
  size_t cap;
};

/* Forgets the bytes (the field is complete); the scratch is kept. */
static inline void sl_hpiece_clear(struct sl_hpiece *p) {
  p->at = NULL;
  p->len = 0;
}

/* Releases the scratch. |p| may be used again afterwards. */
static inline void sl_hpiece_free(struct sl_hpiece *p) {
  free(p->buf);
  p->buf = NULL;
  p->cap = 0;
  sl_hpiece_clear(p);
}

/* Between messages: forgets the bytes, and gives back a scratch that a big
 * split head grew (over SL_HPIECE_KEEP_CAP) rather than hold it on an idle
 * keep-alive connection. */
static inline void sl_hpiece_reset(struct sl_hpiece *p) {
  if (p->cap > SL_HPIECE_KEEP_CAP)
    sl_hpiece_free(p);
  else
    sl_hpiece_clear(p);
}

/* Makes buf hold at least |need| bytes, keeping its contents and moving
 * |at| along when it points into buf. Returns 0, or -1 on out-of-memory. */
static inline int sl_hpiece_reserve(struct sl_hpiece *p, size_t need) {
  if (need <= p->cap) return 0;
  size_t cap = p->cap ? p->cap : 256;
  while (cap < need) cap *= 2;
  bool owned = p->buf && p->at == p->buf;
  char *nb = realloc(p->buf, cap);
  if (!nb) return -1;
  p->buf = nb;
  p->cap = cap;
  if (owned) p->at = nb;
  return 0;
}

/* Appends |n| bytes at |at| (a span of the current parser input; it stays
 * valid until that llhttp_execute call returns). Returns 0, or -1 on
 * out-of-memory. */
static inline int sl_hpiece_add(struct sl_hpiece *p, const char *at, size_t n) {
  if (p->len == 0) {
    p->at = at;
    p->len = n;
    return 0;
  }
  bool owned = p->buf && p->at == p->buf;
  if (sl_hpiece_reserve(p, p->len + n)) return -1;
  if (!owned) memcpy(p->buf, p->at, p->len);
  memcpy(p->buf + p->len, at, n);
  p->at = p->buf;
  p->len += n;
  return 0;
}

/* The parser's input is about to go away (llhttp_execute returned with
 * the field incomplete): moves a slice into the scratch. Returns 0, or -1
 * on out-of-memory. */
static inline int sl_hpiece_keep(struct sl_hpiece *p) {
  if (p->len == 0 || (p->buf && p->at == p->buf)) return 0;
  if (sl_hpiece_reserve(p, p->len)) return -1;
  memcpy(p->buf, p->at, p->len);
  p->at = p->buf;
  return 0;
}

#endif
