/*
 * sluice — request ids. See request_id.h.
 *
 * A generated id is 16 hex digits naming the thread in this process (a
 * keyed hash of the thread's number: the process's random key makes it
 * differ between processes and replicas) and 16 of a per-thread sequence,
 * kept as text and incremented in place: an id costs a copy of 32 bytes,
 * not a hash per request.
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

static const char hex[] = "0123456789abcdef";

static void put_hex64(char *out, uint64_t v) {
  for (int i = 15; i >= 0; i--, v >>= 4) out[i] = hex[v & 15];
}

/* The thread's 32 digits: its name, then its sequence number, which is
 * incremented in place (the carry rarely goes past the last digit). */
static void generate(char out[33]) {
  static atomic_uint threads;
  static __thread char id[32];
  static __thread bool named;
  if (!named) {
    uint64_t no = (uint64_t)atomic_fetch_add(&threads, 1) + 1;
    put_hex64(id, sl_siphash(sl_hash_process_key(), &no, sizeof(no)));
    memset(id + 16, '0', 16);
    named = true;
  }
  for (int i = 31; i >= 16; i--) {
    if (id[i] == 'f') {
      id[i] = '0';
      continue;
    }
    id[i] = id[i] == '9' ? 'a' : (char)(id[i] + 1);
    break;
  }
  memcpy(out, id, 32);
  out[32] = '\0';
}

const char *sl_request_id_from(struct sl_stream *s, const struct sl_header *client,
                               size_t *len) {
  if (!s->rid) {
    if (client && usable(client->value, client->value_len)) {
      s->rid = client->value;
      s->rid_len = (uint16_t)client->value_len;
    } else {
      generate(s->request_id);
      s->rid = s->request_id;
      s->rid_len = 32;
    }
  }
  *len = s->rid_len;
  return s->rid;
}

const char *sl_request_id(struct sl_stream *s, size_t *len) {
  if (s->rid) {
    *len = s->rid_len;
    return s->rid;
  }
  return sl_request_id_from(s, sl_request_header(&s->req, "x-request-id"), len);
}
