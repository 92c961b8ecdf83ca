/*
 * sluice — request ids. See request_id.h.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "sluice/hash.h"
#include "core/request_id.h"
#include "core/stream.h"
#include "core/stream-t.h"

static bool usable(const char *v, size_t n) {
  if (n == 0 || n > SL_REQUEST_ID_MAX) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)v[i] < 0x21 || (unsigned char)v[i] > 0x7e) return false;
  return true;
}

static void generate(char out[33]) {
  static atomic_uint threads;
  static __thread uint64_t thread_no, seq;
  if (!thread_no) thread_no = (uint64_t)atomic_fetch_add(&threads, 1) + 1;
  uint64_t in[2] = {thread_no, ++seq};
  uint64_t h[2];
  sl_siphash128(sl_hash_process_key(), in, sizeof(in), h);
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) out[i] = hex[(h[i / 16] >> (60 - 4 * (i % 16))) & 15];
  out[32] = '\0';
}

const char *sl_request_id(struct sl_stream *s, size_t *len) {
  if (!s->request_id[0]) {
    const struct sl_header *h = sl_request_header(&s->req, "x-request-id");
    if (h && usable(h->value, h->value_len)) {
      *len = h->value_len;
      return h->value;
    }
    generate(s->request_id);
  }
  *len = 32;
  return s->request_id;
}
