/*
 * sluice — the compiled blocklist's layout, private to policies/blocklist*.c:
 * blocklist.c (firmware ranges, the whole object), blocklist_net.c (client
 * addresses and device ids), blocklist_stage.c (the admission stage).
 */
#ifndef SLUICE_POLICIES_BLOCKLIST_INT_H
#define SLUICE_POLICIES_BLOCKLIST_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sluice/blocklist.h"
#include "sluice/config-t.h"

struct sl_cidrset;
struct bl_fw_group;
struct bl_id_slot;

/* The entries of one list, with their effective modes. */
struct bl_list {
  const struct sl_block_entry *entries; /* the configuration's */
  size_t n;
  bool *shadow; /* effective mode per entry (the global one when inherited) */
};

struct sl_blocklist {
  enum sl_unknown_firmware unknown;
  enum sl_mode global_mode;
  /* firmware (blocklist.c) */
  struct bl_list fw;
  struct bl_fw_group *any;     /* class-less entries */
  struct bl_fw_group *classes; /* sorted by name */
  size_t n_classes;
  /* client_ip, device_id (blocklist_net.c) */
  struct bl_list ip, id;
  struct sl_cidrset *ips;      /* every block of every entry, value: its index */
  struct bl_id_slot *ids;      /* (hash, entry) sorted */
  size_t n_ids;
};

/* Filled by blocklist_net.c into |bl| (whose ip/id lists are set);
 * -1 when memory runs out. Freed by bl_net_free (idempotent). */
int bl_net_build(struct sl_blocklist *bl);
void bl_net_free(struct sl_blocklist *bl);

/* The first entry, in configuration order, of each kind among those a
 * lookup found: live enforcing, live shadow, lapsed. */
struct bl_pick {
  uint32_t enforce, shadow, lapsed; /* UINT32_MAX: none */
};
#define BL_PICK_NONE ((struct bl_pick){UINT32_MAX, UINT32_MAX, UINT32_MAX})

static inline void bl_pick_one(const struct bl_list *l, uint32_t e, int64_t now,
                               struct bl_pick *p) {
  uint32_t *slot = sl_block_entry_expired(&l->entries[e], now) ? &p->lapsed
                   : l->shadow[e]                               ? &p->shadow
                                                                : &p->enforce;
  if (e < *slot) *slot = e;
}

/* |out| from |p| (status 403 unless the entry says otherwise). */
void bl_pick_verdict(const struct bl_list *l, const struct bl_pick *p,
                     struct sl_block_verdict *out);

/* Effective modes of |l|'s entries; -1 when memory runs out. */
int bl_list_init(struct bl_list *l, const struct sl_block_entry *e, size_t n,
                 enum sl_mode global_mode);

struct sl_admission_input;
struct sl_admission;

/* Step 1 of admission (policies/admission.c): the blocklist's lists in
 * order (client_ip, device_id, firmware) for |in|; shadow matches go to
 * |out|'s shadow list, explain lines to |tf| (NULL: none). Returns false
 * when an enforcing entry (or `unknown: deny`) refused: |out| says so. */
bool sl_blocklist_stage(const struct sl_admission_input *in, struct sl_admission *out, FILE *tf,
                        bool *first);

#endif
