/*
 * sluice — the blocklist's client_ip and device_id lists (the firmware
 * list and the object are blocklist.c's).
 *
 * client_ip: every block of every entry goes into one CIDR set
 * (sluice/cidrset.h) carrying the entry's index, so a lookup returns the
 * entries covering the address in configuration order and the first live
 * enforcing one decides. The set hands back the first LOOKUP_CAP of them;
 * only when all of those are lapsed or in shadow and the set has more
 * (an address under more than LOOKUP_CAP overlapping entries: a
 * configuration nobody writes by hand) are the remaining entries scanned.
 *
 * device_id: one slot per (id, entry), sorted by the id's SipHash (process
 * key) and then by entry, so a lookup is a binary search for the hash and
 * a walk of its run, ids compared exactly. Idle connections remember the
 * hash rather than the id (8 bytes instead of up to a header's length),
 * which is all the emergency close needs.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sluice/blocklist.h"
#include "sluice/cidrset.h"
#include "sluice/hash.h"
#include "blocklist_int.h"

enum { LOOKUP_CAP = 32 };

struct bl_id_slot {
  uint64_t hash;
  uint32_t entry;
  uint32_t len;
  const char *id; /* the configuration's */
};

static int slot_cmp(const void *pa, const void *pb) {
  const struct bl_id_slot *a = pa, *b = pb;
  if (a->hash != b->hash) return a->hash < b->hash ? -1 : 1;
  return (a->entry > b->entry) - (a->entry < b->entry);
}

uint64_t sl_blocklist_id_hash(const char *id, size_t len) {
  return sl_siphash(sl_hash_process_key(), id, len);
}

int bl_net_build(struct sl_blocklist *bl) {
  size_t nc = 0, ni = 0;
  for (size_t e = 0; e < bl->ip.n; e++) nc += bl->ip.entries[e].n_cidrs;
  for (size_t e = 0; e < bl->id.n; e++) ni += bl->id.entries[e].n_ids;
  struct sl_cidr *cidrs = malloc((nc + 1) * sizeof(*cidrs));
  uint32_t *vals = malloc((nc + 1) * sizeof(*vals));
  bl->ids = malloc((ni + 1) * sizeof(*bl->ids));
  if (!cidrs || !vals || !bl->ids) goto fail;
  size_t k = 0;
  for (size_t e = 0; e < bl->ip.n; e++)
    for (size_t i = 0; i < bl->ip.entries[e].n_cidrs; i++, k++) {
      cidrs[k] = bl->ip.entries[e].cidrs[i];
      vals[k] = (uint32_t)e;
    }
  bl->ips = sl_cidrset_new(cidrs, vals, nc);
  if (!bl->ips) goto fail;
  for (size_t e = 0; e < bl->id.n; e++)
    for (size_t i = 0; i < bl->id.entries[e].n_ids; i++) {
      const char *id = bl->id.entries[e].ids[i];
      size_t len = strlen(id);
      bl->ids[bl->n_ids++] = (struct bl_id_slot){sl_blocklist_id_hash(id, len), (uint32_t)e,
                                                 (uint32_t)len, id};
    }
  qsort(bl->ids, bl->n_ids, sizeof(*bl->ids), slot_cmp);
  free(cidrs);
  free(vals);
  return 0;
fail:
  free(cidrs);
  free(vals);
  return -1;
}

void bl_net_free(struct sl_blocklist *bl) {
  sl_cidrset_del(bl->ips);
  bl->ips = NULL;
  free(bl->ids);
  bl->ids = NULL;
  bl->n_ids = 0;
}

size_t sl_blocklist_n_addr(const struct sl_blocklist *bl) { return bl->ip.n; }
size_t sl_blocklist_n_device_id(const struct sl_blocklist *bl) { return bl->id.n; }

/* ---- client_ip ------------------------------------------------------ */

/* |family|/|addr| as 16 bytes of the IPv6 space (IPv4 mapped), as the
 * set stores it; false for another family. */
static bool as_v6(uint8_t family, const uint8_t *addr, uint8_t out[16]) {
  if (family == AF_INET6) {
    memcpy(out, addr, 16);
    return true;
  }
  if (family != AF_INET) return false;
  memset(out, 0, 10);
  out[10] = out[11] = 0xff;
  memcpy(out + 12, addr, 4);
  return true;
}

static bool cidr_covers(const struct sl_cidr *c, const uint8_t a[16]) {
  uint8_t b[16];
  unsigned prefix = c->prefix + (c->family == AF_INET ? 96u : 0u);
  if (!as_v6(c->family, c->addr, b)) return false;
  unsigned full = prefix / 8, rest = prefix % 8;
  if (memcmp(a, b, full) != 0) return false;
  if (!rest) return true;
  uint8_t mask = (uint8_t)(0xff << (8 - rest));
  return (a[full] & mask) == (b[full] & mask);
}

/* Entries after |from| the set left out: scanned (see the top). */
static __attribute__((noinline, cold)) void scan_after(const struct sl_blocklist *bl,
                                                       uint32_t from, const uint8_t a[16],
                                                       const char *cls, size_t cls_len,
                                                       int64_t now, struct bl_pick *p) {
  for (size_t e = (size_t)from + 1; e < bl->ip.n && p->enforce == UINT32_MAX; e++) {
    const struct sl_block_entry *be = &bl->ip.entries[e];
    if (!sl_block_entry_class_ok(be, cls, cls_len)) continue;
    for (size_t i = 0; i < be->n_cidrs; i++)
      if (cidr_covers(&be->cidrs[i], a)) {
        bl_pick_one(&bl->ip, (uint32_t)e, now, p);
        break;
      }
  }
}

void sl_blocklist_check_addr(const struct sl_blocklist *bl, uint8_t family, const uint8_t *addr,
                             const char *cls, size_t cls_len, int64_t now_unix,
                             struct sl_block_verdict *out) {
  memset(out, 0, sizeof(*out));
  if (!bl->ip.n) return;
  uint32_t found[LOOKUP_CAP];
  bool more = false;
  size_t n = sl_cidrset_lookup(bl->ips, family, addr, found, LOOKUP_CAP, &more);
  struct bl_pick p = BL_PICK_NONE;
  for (size_t i = 0; i < n; i++)
    if (sl_block_entry_class_ok(&bl->ip.entries[found[i]], cls, cls_len))
      bl_pick_one(&bl->ip, found[i], now_unix, &p);
  uint8_t a[16];
  if (more && p.enforce == UINT32_MAX && as_v6(family, addr, a))
    scan_after(bl, found[n - 1], a, cls, cls_len, now_unix, &p);
  bl_pick_verdict(&bl->ip, &p, out);
}

/* ---- device_id ------------------------------------------------------ */

void sl_blocklist_check_device_id(const struct sl_blocklist *bl, uint64_t hash, const char *id,
                                  size_t len, const char *cls, size_t cls_len, int64_t now_unix,
                                  struct sl_block_verdict *out) {
  memset(out, 0, sizeof(*out));
  size_t lo = 0, hi = bl->n_ids;
  while (lo < hi) { /* the first slot of |hash| */
    size_t mid = lo + (hi - lo) / 2;
    if (bl->ids[mid].hash < hash) lo = mid + 1;
    else hi = mid;
  }
  struct bl_pick p = BL_PICK_NONE;
  for (size_t i = lo; i < bl->n_ids && bl->ids[i].hash == hash; i++) {
    const struct bl_id_slot *sl = &bl->ids[i];
    if (id && (sl->len != len || memcmp(sl->id, id, len) != 0)) continue;
    if (sl_block_entry_class_ok(&bl->id.entries[sl->entry], cls, cls_len))
      bl_pick_one(&bl->id, sl->entry, now_unix, &p);
  }
  bl_pick_verdict(&bl->id, &p, out);
}
