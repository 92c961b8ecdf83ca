/*
 * libFuzzer driver for proxy/ws.c: sl_ws_track, the WebSocket frame
 * boundary tracker that decides where a close frame may be inserted.
 *
 * Input: byte 0 seeds the split sizes, the rest is the byte stream. The
 * stream is fed one byte at a time (the reference: boundary or not after
 * every byte), then in random pieces and whole; after every piece the
 * tracker must agree with the reference at that offset, and the three
 * must end in the same state. The reference itself is checked against an
 * independent reading of RFC 6455 §5.2 over the whole buffer.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "front/ws.h"

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz_ws: invariant violated: %s\n", what);
    abort();
  }
}

static bool same_state(const struct sl_ws_tracker *a, const struct sl_ws_tracker *b) {
  if (a->broken != b->broken) return false;
  if (a->broken) return true; /* tracking stopped: the rest does not matter */
  return a->payload_left == b->payload_left && a->hdr_len == b->hdr_len &&
         memcmp(a->hdr, b->hdr, a->hdr_len) == 0;
}

/* RFC 6455 §5.2 over the whole buffer: marks every offset where a frame
 * starts; returns the offset where parsing stopped being possible (a
 * 64-bit length with its top bit set), or SIZE_MAX. */
static size_t spec_boundaries(const uint8_t *p, size_t n, bool *at) {
  uint64_t pos = 0;
  while (pos <= n) {
    at[pos] = true;
    if (n - pos < 2) return SIZE_MAX;
    uint8_t len7 = p[pos + 1] & 0x7f;
    uint64_t hlen = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (p[pos + 1] & 0x80 ? 4 : 0);
    if (n - pos < hlen) return SIZE_MAX;
    uint64_t plen = len7;
    if (len7 == 126) plen = (uint64_t)p[pos + 2] << 8 | p[pos + 3];
    if (len7 == 127) {
      if (p[pos + 2] & 0x80) return (size_t)(pos + hlen);
      plen = 0;
      for (int i = 0; i < 8; i++) plen = plen << 8 | p[pos + 2 + i];
    }
    if (plen > n - pos - hlen) return SIZE_MAX; /* ends inside this payload */
    pos += hlen + plen;
  }
  return SIZE_MAX;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint32_t seed = data[0] * 2654435761u + 1;
  const uint8_t *p = data + 1;
  size_t n = size - 1;

  bool *ref = calloc(n + 1, sizeof(bool)), *spec = calloc(n + 1, sizeof(bool));
  struct sl_ws_tracker one = {0};
  ref[0] = sl_ws_at_boundary(&one);
  size_t broken_at = SIZE_MAX;
  for (size_t i = 0; i < n; i++) {
    sl_ws_track(&one, p + i, 1);
    ref[i + 1] = sl_ws_at_boundary(&one);
    if (one.broken && broken_at == SIZE_MAX) broken_at = i + 1;
  }

  size_t spec_broken = spec_boundaries(p, n, spec);
  check(broken_at == spec_broken, "the tracker gives up exactly on a bad 64-bit length");
  for (size_t i = 0; i <= n && i < broken_at; i++)
    check(ref[i] == spec[i], "boundaries are where RFC 6455 puts them");

  /* Random pieces, including empty ones. */
  struct sl_ws_tracker rnd = {0};
  size_t off = 0;
  while (off < n) {
    seed = seed * 1103515245u + 12345u;
    size_t take = (seed >> 16) % 9 == 0 ? 0 : 1 + (seed >> 8) % 300;
    if ((seed >> 4) % 17 == 0) take = 1 + (seed >> 8) % (n - off); /* a long piece */
    if (take > n - off) take = n - off;
    sl_ws_track(&rnd, p + off, take);
    off += take;
    check(sl_ws_at_boundary(&rnd) == ref[off], "a piece ends on a boundary iff it is one");
  }
  check(same_state(&rnd, &one), "pieces end in the byte-at-a-time state");

  struct sl_ws_tracker whole = {0};
  sl_ws_track(&whole, p, n);
  check(sl_ws_at_boundary(&whole) == ref[n], "one call ends on a boundary iff it is one");
  check(same_state(&whole, &one), "one call ends in the byte-at-a-time state");

  free(ref);
  free(spec);
  return 0;
}
