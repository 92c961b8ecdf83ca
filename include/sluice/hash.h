/*
 * sluice — the one hash: SipHash-1-3 (Aumasson & Bernstein; one
 * compression and three finalisation rounds, as Rust's std HashMap).
 *
 * Every hash of sluice goes through here: limiter tables keyed by client
 * data (with a table's own random key), and the fingerprints that tell
 * "changed" from "same" (policy identities, reload summaries, watched
 * files, metric label sets, cache slots), with the process key. The
 * process key is random (getrandom(2) at first use), so no value computed
 * here is meaningful across processes, and nobody outside can aim inputs
 * at one bucket of any table.
 */
#ifndef SLUICE_HASH_H
#define SLUICE_HASH_H

#include <stddef.h>
#include <stdint.h>

struct sl_hash_key {
  uint64_t k0, k1;
};

/* The key from 16 bytes (little-endian halves). */
struct sl_hash_key sl_hash_key_from(const uint8_t seed[16]);
/* This process's random key (thread-safe; the same for the process's life). */
const struct sl_hash_key *sl_hash_process_key(void);

/* One-shot: all |len| bytes of |in|. */
uint64_t sl_siphash(const struct sl_hash_key *k, const void *in, size_t len);
/* The 128-bit output variant: two independent 64-bit halves. */
void sl_siphash128(const struct sl_hash_key *k, const void *in, size_t len, uint64_t out[2]);

/* Incremental, for a fingerprint of several fields. Feeding the same
 * bytes in any split gives the same result as sl_siphash over their
 * concatenation. The field helpers delimit: sl_hasher_str includes the
 * terminating NUL (so ("ab","c") and ("a","bc") differ) and hashes NULL
 * apart from ""; sl_hasher_u64 feeds 8 bytes. */
struct sl_hasher {
  uint64_t v0, v1, v2, v3;
  uint64_t tail; /* pending bytes, little-endian */
  size_t len;    /* bytes fed so far */
};

void sl_hasher_init(struct sl_hasher *h, const struct sl_hash_key *k);
void sl_hasher_bytes(struct sl_hasher *h, const void *p, size_t n);
void sl_hasher_str(struct sl_hasher *h, const char *s);
void sl_hasher_u64(struct sl_hasher *h, uint64_t v);
uint64_t sl_hasher_final(const struct sl_hasher *h);

/* A fingerprint of one C string under the process key (NULL allowed). */
uint64_t sl_hash_str(const char *s);

/* Chained fingerprints under the process key, for code that builds one
 * field at a time: h = sl_hash_mix_str(sl_hash_mix_u64(SL_HASH_SEED, a), b).
 * Each step is a whole SipHash of (h, field); the field helpers delimit as
 * sl_hasher_str / sl_hasher_u64 do. Not for hot paths: configuration
 * identities, reload summaries, file fingerprints. */
#define SL_HASH_SEED UINT64_C(0x736c75696365) /* "sluice" */
uint64_t sl_hash_mix(uint64_t h, const void *p, size_t n);
uint64_t sl_hash_mix_u64(uint64_t h, uint64_t v);
uint64_t sl_hash_mix_str(uint64_t h, const char *s);

#endif
