/*
 * sluice — GCRA (generic cell rate algorithm) rate limiting.
 *
 * A rate is one event every `period_ns` nanoseconds with a bucket of
 * `burst` events (burst 0 is taken as 1): from idle a key may send `burst`
 * requests at once, then one per period. State is one 64-bit theoretical
 * arrival time (TAT) per key. Integer nanoseconds throughout, saturating,
 * time passed in (the loop's cached clock, never a syscall per request).
 * A rejected request consumes nothing.
 *
 * Tables are thread-safe and meant to be shared by every worker, so that a
 * limit is exact whichever worker a request lands on. Decisions are
 * allocation-free.
 */
#ifndef SLUICE_RATELIMIT_H
#define SLUICE_RATELIMIT_H

#include <stddef.h>
#include "sluice/ratelimit-t.h"

/* One GCRA step on a single state |*tat| (not synchronised: the caller
 * owns it). With |commit| false nothing is written. Returns v->admitted. */
bool sl_gcra_step(uint64_t *tat, uint64_t period_ns, uint32_t burst, uint64_t now_ns,
                  bool commit, struct sl_rl_verdict *v);

/* Creates a table for |max_keys| keys (0: SL_RATELIMIT_DEFAULT_MAX_KEYS).
 * |seed| keys the hash (SipHash-1-3), so that clients cannot aim keys at one
 * bucket: pass 128 random bits. Memory is reserved up front (about 23 bytes
 * per key) but pages are touched only as keys arrive. Returns NULL when
 * memory runs out. */
struct sl_ratelimit_table *sl_ratelimit_table_new(uint32_t max_keys, const uint8_t seed[16]);
void sl_ratelimit_table_del(struct sl_ratelimit_table *t);

/* Decides one request for |key| (|len| bytes, all of them significant: a
 * 16-byte IP key or a string of any length; identified by a 128-bit keyed
 * hash, see ratelimit.c) at |now_ns|, and on admission
 * charges it. Returns v->admitted. A key not in the table starts with a full
 * bucket; when the table (or both of the key's buckets) is full, an idle key
 * is evicted, and when none is idle the request is decided by the table's
 * single shared overflow bucket (v->overflow) rather than going unlimited.
 * Per-key overrides are just different |period_ns|/|burst|. Thread-safe. */
bool sl_ratelimit_admit(struct sl_ratelimit_table *t, const void *key, size_t len,
                        uint64_t period_ns, uint32_t burst, uint64_t now_ns,
                        struct sl_rl_verdict *v);

/* Like sl_ratelimit_admit() but changes nothing (/explain, shadow mode
 * previews). */
bool sl_ratelimit_peek(struct sl_ratelimit_table *t, const void *key, size_t len,
                       uint64_t period_ns, uint32_t burst, uint64_t now_ns,
                       struct sl_rl_verdict *v);

/* Locates |key| in |t| and prefetches both candidate buckets, so that the
 * memory latency of a large table overlaps with other work. */
void sl_ratelimit_locate(const struct sl_ratelimit_table *t, const void *key, size_t len,
                         struct sl_rl_ref *ref);
/* sl_ratelimit_peek / sl_ratelimit_admit for a located key (|commit|
 * false: look only). Same results as the keyed calls. */
bool sl_ratelimit_decide_ref(struct sl_ratelimit_table *t, const struct sl_rl_ref *ref,
                             uint64_t period_ns, uint32_t burst, uint64_t now_ns, bool commit,
                             struct sl_rl_verdict *v);

/* Undoes one admission of the key located as |ref|, charged with
 * |period_ns| by sl_ratelimit_decide_ref() (commit true) or
 * sl_ratelimit_admit(), when a later policy refuses the request: a refused
 * request consumes nothing. Call only for a charge that was made; it went
 * to the key's state if the key is resident, else to the overflow bucket.
 * Thread-safe. */
void sl_ratelimit_refund(struct sl_ratelimit_table *t, const struct sl_rl_ref *ref,
                         uint64_t period_ns);

/* A reload changed the rate or burst of the limit that owns |t|: converts
 * every active key with map[its class] (|n| entries, class >= n: map[0]),
 * so that each key keeps the share of its bucket it has used instead of
 * starting full. Idle keys need nothing. Walks the whole table, each
 * bucket under its lock (reload path, main thread). Returns keys changed. */
size_t sl_ratelimit_reparam(struct sl_ratelimit_table *t, const struct sl_rl_reparam *map,
                            size_t n, uint64_t now_ns);

/* Resident keys, for the sluice_limiter_keys gauge. Relaxed read. */
uint64_t sl_ratelimit_keys(const struct sl_ratelimit_table *t);
void sl_ratelimit_stats(const struct sl_ratelimit_table *t, struct sl_rl_stats *out);

/* Removes up to |max_buckets| buckets' worth of idle keys (TAT <= now),
 * continuing where the previous call stopped (incremental, bounded work:
 * call it from a timer). Idle keys carry no information, so this changes
 * no decision; it only keeps the key count honest. Returns keys removed. */
size_t sl_ratelimit_sweep(struct sl_ratelimit_table *t, uint64_t now_ns, size_t max_buckets);

#endif
