/*
 * sluice — per-key in-flight counters: a bounded, thread-shared table for
 * `concurrency: {key: device_id | client_ip | device_class}`.
 *
 * A key has an entry only while it has something in flight: the entry is
 * taken by the key's first acquire and freed when its count returns to 0,
 * so the table holds at most the keys in flight, never more than
 * |max_keys| of them. Keys are identified by a SipHash-1-3 fingerprint
 * under the table's own random key (40 bits, within the two buckets of 16
 * slots a key may live in), so clients cannot aim keys at one bucket.
 * Counts are exact across workers: an acquire holds the spin locks of the
 * key's two buckets (in address order; a few instructions held), a
 * release the lock of the entry's bucket.
 *
 * Full table: when |max_keys| keys are in flight, or (the table has twice
 * max_keys slots and a new key goes to the emptier of its two buckets:
 * practically never) both of the key's buckets are full, a new key is
 * refused (SL_CONC_TABLE_FULL) rather than counted
 * somewhere shared: an attacker filling the table cannot make the limit
 * of the devices already in it go away, and a shared overflow counter
 * with the per-key `max` would refuse nearly everything anyway.
 */
#ifndef SLUICE_CONC_TABLE_H
#define SLUICE_CONC_TABLE_H

#include <stddef.h>
#include <stdint.h>

struct sl_conc_table; /* opaque */

enum sl_conc_result {
  SL_CONC_TAKEN = 0,   /* a slot taken: release it with the handle */
  SL_CONC_LIMITED,     /* the key has |limit| in flight already */
  SL_CONC_TABLE_FULL,  /* a new key and no room for it */
};

/* A table for |max_keys| keys in flight at once (0: 1000000, like a
 * limiter's), keyed with |seed| (128 random bits). Memory is reserved up
 * front (16 bytes per key, touched as keys arrive). NULL on OOM. */
struct sl_conc_table *sl_conc_table_new(uint32_t max_keys, const uint8_t seed[16]);
void sl_conc_table_del(struct sl_conc_table *t);

/* Takes one slot of |key| (|len| bytes, all significant) if it has fewer
 * than |limit| in flight (limit 0: unlimited, still counted). On
 * SL_CONC_TAKEN, |*handle| names the entry: pass it to
 * sl_conc_table_release() exactly once when the exchange or tunnel ends.
 * Thread-safe, allocation-free. */
enum sl_conc_result sl_conc_table_acquire(struct sl_conc_table *t, const void *key, size_t len,
                                          uint32_t limit, uint64_t *handle);
void sl_conc_table_release(struct sl_conc_table *t, uint64_t handle);

/* In flight for |key| now (explain); relaxed, takes no lock. */
uint32_t sl_conc_table_count(const struct sl_conc_table *t, const void *key, size_t len);
/* Keys with something in flight, and the table's max_keys. */
uint32_t sl_conc_table_keys(const struct sl_conc_table *t);
uint32_t sl_conc_table_max_keys(const struct sl_conc_table *t);

#endif
