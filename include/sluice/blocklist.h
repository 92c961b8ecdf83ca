/*
 * sluice — firmware blocklist: "is (device class, firmware) blocked, and by
 * which entry?" in O(log n) for thousands of entries.
 */
#ifndef SLUICE_BLOCKLIST_H
#define SLUICE_BLOCKLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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

/* Number of entries of |cfg| that have lapsed at |now_unix|. */
size_t sl_blocklist_cfg_expired(const struct sl_blocklist_cfg *cfg, int64_t now_unix);

/* Number of entries compiled, for /explain. */
size_t sl_blocklist_size(const struct sl_blocklist *bl);

#endif
