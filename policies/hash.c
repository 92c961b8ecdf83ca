/*
 * sluice — SipHash-1-3. See include/sluice/hash.h.
 */
#include <pthread.h>
#include <string.h>
#include <sys/random.h>

#include "sluice/hash.h"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND(v0, v1, v2, v3)                                                              \
  do {                                                                                        \
    v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                                 \
    v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                                    \
    v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                                    \
    v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                                 \
  } while (0)

static inline uint64_t load_le64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

struct sl_hash_key sl_hash_key_from(const uint8_t seed[16]) {
  struct sl_hash_key k = {load_le64(seed), load_le64(seed + 8)};
  return k;
}

static struct sl_hash_key process_key;
static pthread_once_t process_key_once = PTHREAD_ONCE_INIT;

static void process_key_init(void) {
  uint8_t seed[16];
  size_t got = 0;
  while (got < sizeof(seed)) {
    ssize_t n = getrandom(seed + got, sizeof(seed) - got, 0);
    if (n > 0) got += (size_t)n;
    /* EINTR: try again; getrandom(2) on Linux >= 3.17 does not fail
     * otherwise once the pool is initialised. */
  }
  process_key = sl_hash_key_from(seed);
}

const struct sl_hash_key *sl_hash_process_key(void) {
  pthread_once(&process_key_once, process_key_init);
  return &process_key;
}

/* The last block: the 0-7 remaining bytes and the length in the top byte. */
static inline uint64_t last_block(const uint8_t *in, size_t len) {
  uint64_t b = (uint64_t)len << 56;
  switch (len & 7) {
  case 7: b |= (uint64_t)in[6] << 48; /* fall through */
  case 6: b |= (uint64_t)in[5] << 40; /* fall through */
  case 5: b |= (uint64_t)in[4] << 32; /* fall through */
  case 4: b |= (uint64_t)in[3] << 24; /* fall through */
  case 3: b |= (uint64_t)in[2] << 16; /* fall through */
  case 2: b |= (uint64_t)in[1] << 8;  /* fall through */
  case 1: b |= (uint64_t)in[0];       /* fall through */
  default: break;
  }
  return b;
}

/* Initialisation, compression and finalisation of the reference
 * siphash.c with cROUNDS=1, dROUNDS=3; |wide| selects the 128-bit output
 * (v1 ^= 0xee at initialisation, 0xee then 0xdd in finalisation). */
static void siphash13(const struct sl_hash_key *k, const uint8_t *in, size_t len, int wide,
                      uint64_t out[2]) {
  uint64_t v0 = 0x736f6d6570736575ULL ^ k->k0, v1 = 0x646f72616e646f6dULL ^ k->k1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ k->k0, v3 = 0x7465646279746573ULL ^ k->k1;
  if (wide) v1 ^= 0xee;
  const uint8_t *end = in + (len & ~(size_t)7);
  for (; in != end; in += 8) {
    uint64_t m = load_le64(in);
    v3 ^= m;
    SIPROUND(v0, v1, v2, v3);
    v0 ^= m;
  }
  uint64_t b = last_block(in, len);
  v3 ^= b;
  SIPROUND(v0, v1, v2, v3);
  v0 ^= b;
  v2 ^= wide ? 0xee : 0xff;
  SIPROUND(v0, v1, v2, v3);
  SIPROUND(v0, v1, v2, v3);
  SIPROUND(v0, v1, v2, v3);
  out[0] = v0 ^ v1 ^ v2 ^ v3;
  if (!wide) return;
  v1 ^= 0xdd;
  SIPROUND(v0, v1, v2, v3);
  SIPROUND(v0, v1, v2, v3);
  SIPROUND(v0, v1, v2, v3);
  out[1] = v0 ^ v1 ^ v2 ^ v3;
}

uint64_t sl_siphash(const struct sl_hash_key *k, const void *in, size_t len) {
  uint64_t out[2];
  siphash13(k, in, len, 0, out);
  return out[0];
}

void sl_siphash128(const struct sl_hash_key *k, const void *in, size_t len, uint64_t out[2]) {
  siphash13(k, in, len, 1, out);
}

void sl_hasher_init(struct sl_hasher *h, const struct sl_hash_key *k) {
  h->v0 = 0x736f6d6570736575ULL ^ k->k0;
  h->v1 = 0x646f72616e646f6dULL ^ k->k1;
  h->v2 = 0x6c7967656e657261ULL ^ k->k0;
  h->v3 = 0x7465646279746573ULL ^ k->k1;
  h->tail = 0;
  h->len = 0;
}

static inline void hasher_block(struct sl_hasher *h, uint64_t m) {
  h->v3 ^= m;
  SIPROUND(h->v0, h->v1, h->v2, h->v3);
  h->v0 ^= m;
}

void sl_hasher_bytes(struct sl_hasher *h, const void *p, size_t n) {
  const uint8_t *b = p;
  size_t fill = h->len & 7;
  h->len += n;
  /* Top up the pending block (at most 7 bytes), then whole blocks, then
   * the rest into the (then empty) pending block in one load. */
  while (fill && n) {
    h->tail |= (uint64_t)*b++ << (8 * fill);
    n--;
    if (++fill == 8) {
      hasher_block(h, h->tail);
      h->tail = 0;
      fill = 0;
    }
  }
  for (; n >= 8; n -= 8, b += 8) hasher_block(h, load_le64(b));
  if (n) {
    uint8_t last[8] = {0};
    memcpy(last, b, n);
    h->tail = load_le64(last); /* fill is 0 here: the pending block was empty */
  }
}

void sl_hasher_str(struct sl_hasher *h, const char *s) {
  if (!s) {
    sl_hasher_bytes(h, "\xff", 1); /* no C string is "\xff" without a NUL after it */
    return;
  }
  sl_hasher_bytes(h, s, strlen(s) + 1);
}

void sl_hasher_u64(struct sl_hasher *h, uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
  sl_hasher_bytes(h, b, 8);
}

uint64_t sl_hasher_final(const struct sl_hasher *h) {
  uint64_t v0 = h->v0, v1 = h->v1, v2 = h->v2, v3 = h->v3;
  uint64_t b = h->tail | (uint64_t)h->len << 56;
  v3 ^= b;
  SIPROUND(v0, v1, v2, v3);
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND(v0, v1, v2, v3);
  SIPROUND(v0, v1, v2, v3);
  SIPROUND(v0, v1, v2, v3);
  return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t sl_hash_str(const char *s) {
  struct sl_hasher h;
  sl_hasher_init(&h, sl_hash_process_key());
  sl_hasher_str(&h, s);
  return sl_hasher_final(&h);
}

uint64_t sl_hash_mix(uint64_t h, const void *p, size_t n) {
  struct sl_hasher s;
  sl_hasher_init(&s, sl_hash_process_key());
  sl_hasher_u64(&s, h);
  sl_hasher_bytes(&s, p, n);
  return sl_hasher_final(&s);
}

uint64_t sl_hash_mix_u64(uint64_t h, uint64_t v) {
  struct sl_hasher s;
  sl_hasher_init(&s, sl_hash_process_key());
  sl_hasher_u64(&s, h);
  sl_hasher_u64(&s, v);
  return sl_hasher_final(&s);
}

uint64_t sl_hash_mix_str(uint64_t h, const char *str) {
  struct sl_hasher s;
  sl_hasher_init(&s, sl_hash_process_key());
  sl_hasher_u64(&s, h);
  sl_hasher_str(&s, str);
  return sl_hasher_final(&s);
}
