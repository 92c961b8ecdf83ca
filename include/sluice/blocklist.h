/*
 * sluice — the blocklist: "is this client address, device id or (device
 * class, firmware) blocked, and by which entry?", each in a lookup (not a
 * scan) for thousands of entries. A request meets the lists in the order
 * client_ip, device_id, firmware (SPEC section 4); in each, the first
 * live enforcing entry in configuration order decides.
 */
#ifndef SLUICE_BLOCKLIST_H
#define SLUICE_BLOCKLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "sluice/blocklist-t.h"
#include "sluice/config-t.h"

/* Compiles |cfg| (entries with parsed ranges). An entry whose mode is
 * SL_MODE_INHERIT takes |global_mode|. The result points into |cfg|'s
 * entries (for reason, status, mark), so it must not outlive the snapshot.
 * Returns NULL when memory runs out (config load: abort). */
struct sl_blocklist *sl_blocklist_new(const struct sl_blocklist_cfg *cfg, enum sl_mode global_mode);
void sl_blocklist_del(struct sl_blocklist *bl);

/* Decides a request of class |cls| (|cls_len| bytes, compared exactly; NULL
 * when no class was identified: then only class-less entries apply) and
 * firmware |fw| (NULL when absent or unparseable) at |now_unix| (entries
 * with expires_unix != 0 && expires_unix <= now_unix have lapsed).
 * Unknown firmware is refused iff the blocklist says `unknown: deny`, or a
 * live entry for the class covers every version (range "x"). Pure,
 * allocation-free, thread-safe (the compiled list is immutable). */
void sl_blocklist_check(const struct sl_blocklist *bl, const char *cls, size_t cls_len,
                        const struct sl_version *fw, int64_t now_unix,
                        struct sl_block_verdict *out);

/* Whether |e| has lapsed at |now_unix|: it has an `expires` time and that
 * time has come (the entry no longer applies). */
static inline bool sl_block_entry_expired(const struct sl_block_entry *e, int64_t now_unix) {
  return e->expires_unix != 0 && e->expires_unix <= now_unix;
}

/* Whether entry |e| applies to a request of class |cls| (|cls_len|
 * bytes; NULL: none identified): it names no class, or that one. */
static inline bool sl_block_entry_class_ok(const struct sl_block_entry *e, const char *cls,
                                           size_t cls_len) {
  if (!e->device_class) return true;
  return cls && strlen(e->device_class) == cls_len && memcmp(e->device_class, cls, cls_len) == 0;
}

/* The client_ip list: entries with a block containing the address
 * (|family| AF_INET with 4 bytes, or AF_INET6 with 16; IPv4-mapped IPv6
 * matches IPv4 blocks) and whose class, if any, is |cls|. |out| as for
 * sl_blocklist_check (never |unknown|). Pure, allocation-free. */
void sl_blocklist_check_addr(const struct sl_blocklist *bl, uint8_t family, const uint8_t *addr,
                             const char *cls, size_t cls_len, int64_t now_unix,
                             struct sl_block_verdict *out);

/* The key sl_blocklist_check_device_id() looks device ids up by:
 * SipHash-1-3 of the id's bytes under the process key. */
uint64_t sl_blocklist_id_hash(const char *id, size_t len);

/* The device_id list, for the device whose id hashes to |hash|
 * (sl_blocklist_id_hash). With |id| (|len| bytes) the id is compared
 * exactly; without (NULL: an idle connection remembers only the hash),
 * an entry listing another id of the same hash matches too, a chance of
 * 2^-64 per listed id. Class and |out| as for sl_blocklist_check_addr. */
void sl_blocklist_check_device_id(const struct sl_blocklist *bl, uint64_t hash, const char *id,
                                  size_t len, const char *cls, size_t cls_len, int64_t now_unix,
                                  struct sl_block_verdict *out);

/* Entries of the client_ip and device_id lists, for callers that can skip
 * them (no address or id to remember, nothing to look up). */
size_t sl_blocklist_n_addr(const struct sl_blocklist *bl);
size_t sl_blocklist_n_device_id(const struct sl_blocklist *bl);

/* The entries of every list of |cfg|, in the order requests meet them
 * (client_ip, device_id, firmware): how many, and entry |i| (NULL past
 * the end). */
size_t sl_blocklist_cfg_count(const struct sl_blocklist_cfg *cfg);
const struct sl_block_entry *sl_blocklist_cfg_at(const struct sl_blocklist_cfg *cfg, size_t i);

/* Number of entries of |cfg| (every list) that have lapsed at |now_unix|. */
size_t sl_blocklist_cfg_expired(const struct sl_blocklist_cfg *cfg, int64_t now_unix);

/* Number of entries compiled (every list), for /explain and the reload
 * summary. */
size_t sl_blocklist_size(const struct sl_blocklist *bl);

#endif
