/*
 * sluice — compiled blocklist (types only). Functions in
 * blocklist.h; the entries themselves are struct sl_block_entry (config-t.h).
 */
#ifndef SLUICE_BLOCKLIST_T_H
#define SLUICE_BLOCKLIST_T_H

#include <stdbool.h>
#include <stdint.h>

struct sl_block_entry;

/* A blocklist compiled from one configuration snapshot; opaque. */
struct sl_blocklist;

struct sl_block_verdict {
  bool deny;                          /* refuse with |status| */
  bool unknown;                       /* firmware absent or unparseable: count it */
  bool shadow_deny;                   /* a shadow-mode rule would have refused */
  uint16_t status;                    /* when |deny| */
  /* The first (in configuration order) live enforcing entry that matched,
   * or NULL (no match, or the refusal is the `unknown: deny` setting). */
  const struct sl_block_entry *entry;
  /* The first live shadow-mode entry that matched (log and count only). */
  const struct sl_block_entry *shadow;
  /* The first entry that would have matched but has expired (explain says
   * so instead of a silent allow); NULL when none. */
  const struct sl_block_entry *lapsed;
};

#endif
