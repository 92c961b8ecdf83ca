/*
 * sluice — compiled firmware blocklist.
 *
 * Each entry's range (a union of clauses, each an intersection of
 * comparisons) becomes a sorted list of disjoint intervals of the version
 * order. Interval ends are "positions" between versions: (v, before) sits
 * just below v and (v, after) just above it, plus -inf and +inf; so
 * ">=3.8.0-b3 <3.8.1" is the open interval ((3.8.0-b3, before),
 * (3.8.1, before)) and "=3.8.0" is ((3.8.0, before), (3.8.0, after)). No
 * version ever equals a position, which makes inclusive and exclusive
 * bounds uniform.
 *
 * (This file: the firmware list and the object; the client_ip and
 * device_id lists are blocklist_net.c's.)
 *
 * Entries are grouped by device class (one group for class-less entries).
 * In a group, every interval end is collected, sorted and deduplicated:
 * consecutive positions delimit elementary segments, and each segment
 * lists the entries covering it, in configuration order (a CSR array).
 * A lookup is one binary search for the class (sorted names), one binary
 * search of the positions per group (the class's and the class-less one),
 * and a scan of a segment's list, which is as long as the number of
 * entries overlapping there (one, in practice). The list is kept whole
 * rather than reduced to its first entry because entries lapse at their
 * own `expires` time and may be in shadow mode: the first live enforcing
 * entry decides.
 */
#include <stdlib.h>
#include <string.h>

#include "sluice/blocklist.h"
#include "sluice/version.h"
#include "blocklist_int.h"

struct pos {
  struct sl_version v;
  int8_t inf;  /* -1: -inf, +1: +inf, 0: finite */
  int8_t side; /* -1: just before v, +1: just after v */
};

struct ival {
  uint32_t entry;
  struct pos lo, hi; /* covers versions strictly between lo and hi */
};

struct bl_fw_group {
  const char *cls; /* NULL for the class-less group */
  size_t cls_len;
  struct pos *pos;
  size_t npos;
  uint32_t *seg_off; /* npos entries: segment i is pos[i]..pos[i+1] */
  uint32_t *ent;     /* entry indices, per segment in config order */
  uint32_t *all;     /* entries covering every version */
  size_t nall;
};

/* ---- positions ----------------------------------------------------- */

static int pos_cmp(const struct pos *a, const struct pos *b) {
  if (a->inf || b->inf) return (a->inf > b->inf) - (a->inf < b->inf); /* finite is 0 */
  int c = sl_version_cmp(&a->v, &b->v);
  if (c) return c;
  return (a->side > b->side) - (a->side < b->side);
}

/* <0 if |p| lies below |v|, >0 above (never 0). */
static int pos_vs(const struct pos *p, const struct sl_version *v) {
  if (p->inf) return p->inf;
  int c = sl_version_cmp(&p->v, v);
  return c ? c : p->side;
}

static int pos_qsort_cmp(const void *a, const void *b) { return pos_cmp(a, b); }

static int ival_qsort_cmp(const void *a, const void *b) {
  const struct ival *x = a, *y = b;
  if (x->entry != y->entry) return x->entry < y->entry ? -1 : 1;
  return pos_cmp(&x->lo, &y->lo);
}

static void pos_max(struct pos *cur, const struct sl_version *v, int8_t side) {
  struct pos p = {.v = *v, .inf = 0, .side = side};
  if (pos_cmp(&p, cur) > 0) *cur = p;
}

static void pos_min(struct pos *cur, const struct sl_version *v, int8_t side) {
  struct pos p = {.v = *v, .inf = 0, .side = side};
  if (pos_cmp(&p, cur) < 0) *cur = p;
}

/* The interval of one clause; false if it is empty. */
static bool clause_ival(const struct sl_vclause *c, struct pos *lo, struct pos *hi) {
  memset(lo, 0, sizeof(*lo));
  memset(hi, 0, sizeof(*hi));
  lo->inf = -1;
  hi->inf = 1;
  for (size_t i = 0; i < c->n; i++) {
    const struct sl_vcmp *m = &c->cmps[i];
    switch (m->op) {
    case SL_VOP_EQ: pos_max(lo, &m->v, -1); pos_min(hi, &m->v, 1); break;
    case SL_VOP_GE: pos_max(lo, &m->v, -1); break;
    case SL_VOP_GT: pos_max(lo, &m->v, 1); break;
    case SL_VOP_LE: pos_min(hi, &m->v, 1); break;
    case SL_VOP_LT: pos_min(hi, &m->v, -1); break;
    }
  }
  return pos_cmp(lo, hi) < 0;
}

/* ---- compilation --------------------------------------------------- */

static int cls_cmp(const char *a, size_t al, const char *b, size_t bl) {
  int c = memcmp(a, b, al < bl ? al : bl);
  if (c) return c;
  return (al > bl) - (al < bl);
}

static int class_qsort_cmp(const void *a, const void *b) {
  const struct bl_fw_group *x = a, *y = b;
  return cls_cmp(x->cls, x->cls_len, y->cls, y->cls_len);
}

static void group_free(struct bl_fw_group *g) {
  free(g->pos);
  free(g->seg_off);
  free(g->ent);
  free(g->all);
}

static size_t pos_index(const struct bl_fw_group *g, const struct pos *p) {
  size_t lo = 0, hi = g->npos;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (pos_cmp(&g->pos[mid], p) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo; /* present by construction */
}

/* Builds |g| from the merged intervals |iv| (sorted by entry, then lo)
 * of its entries. Returns -1 on OOM. */
static int group_build(struct bl_fw_group *g, const struct ival *iv, size_t n) {
  g->pos = malloc((2 * n + 1) * sizeof(*g->pos));
  g->all = malloc((n + 1) * sizeof(*g->all));
  if (!g->pos || !g->all) return -1;
  for (size_t i = 0; i < n; i++) {
    g->pos[2 * i] = iv[i].lo;
    g->pos[2 * i + 1] = iv[i].hi;
    if (iv[i].lo.inf < 0 && iv[i].hi.inf > 0) g->all[g->nall++] = iv[i].entry;
  }
  size_t np = 2 * n;
  qsort(g->pos, np, sizeof(*g->pos), pos_qsort_cmp);
  size_t u = 0;
  for (size_t i = 0; i < np; i++)
    if (u == 0 || pos_cmp(&g->pos[u - 1], &g->pos[i]) != 0) g->pos[u++] = g->pos[i];
  g->npos = u;
  /* Count, then fill, the entries of each segment. */
  g->seg_off = calloc(u + 1, sizeof(*g->seg_off));
  if (!g->seg_off) return -1;
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    size_t a = pos_index(g, &iv[i].lo), b = pos_index(g, &iv[i].hi);
    for (size_t s = a; s < b; s++) g->seg_off[s + 1]++;
    total += b - a;
  }
  for (size_t s = 0; s < u; s++) g->seg_off[s + 1] += g->seg_off[s];
  g->ent = malloc((total + 1) * sizeof(*g->ent));
  uint32_t *fill = calloc(u + 1, sizeof(*fill));
  if (!g->ent || !fill) {
    free(fill);
    return -1;
  }
  for (size_t i = 0; i < n; i++) { /* in entry order: lists come out sorted */
    size_t a = pos_index(g, &iv[i].lo), b = pos_index(g, &iv[i].hi);
    for (size_t s = a; s < b; s++) g->ent[g->seg_off[s] + fill[s]++] = iv[i].entry;
  }
  free(fill);
  return 0;
}

void sl_blocklist_del(struct sl_blocklist *bl) {
  if (!bl) return;
  if (bl->any) group_free(bl->any);
  free(bl->any);
  for (size_t i = 0; i < bl->n_classes; i++) group_free(&bl->classes[i]);
  free(bl->classes);
  free(bl->fw.shadow);
  free(bl->ip.shadow);
  free(bl->id.shadow);
  bl_net_free(bl);
  free(bl);
}

int bl_list_init(struct bl_list *l, const struct sl_block_entry *e, size_t n,
                 enum sl_mode global_mode) {
  l->entries = e;
  l->n = n;
  l->shadow = calloc(n + 1, sizeof(*l->shadow));
  if (!l->shadow) return -1;
  for (size_t i = 0; i < n; i++) {
    enum sl_mode m = e[i].mode == SL_MODE_INHERIT ? global_mode : e[i].mode;
    l->shadow[i] = m == SL_MODE_SHADOW;
  }
  return 0;
}

void bl_pick_verdict(const struct bl_list *l, const struct bl_pick *p,
                     struct sl_block_verdict *out) {
  if (p->enforce != UINT32_MAX) {
    out->entry = &l->entries[p->enforce];
    out->deny = true;
    out->status = out->entry->status ? out->entry->status : 403;
  }
  if (p->shadow != UINT32_MAX) {
    out->shadow = &l->entries[p->shadow];
    out->shadow_deny = true;
  }
  if (p->lapsed != UINT32_MAX) out->lapsed = &l->entries[p->lapsed];
}

struct sl_blocklist *sl_blocklist_new(const struct sl_blocklist_cfg *cfg,
                                      enum sl_mode global_mode) {
  struct sl_blocklist *bl = calloc(1, sizeof(*bl));
  struct ival *iv = NULL;
  size_t niv = 0, cap = 0;
  if (!bl) return NULL;
  bl->unknown = cfg->unknown;
  bl->global_mode = global_mode;
  bl->any = calloc(1, sizeof(*bl->any));
  bl->classes = calloc(cfg->n_firmware + 1, sizeof(*bl->classes));
  if (!bl->any || !bl->classes ||
      bl_list_init(&bl->fw, cfg->firmware, cfg->n_firmware, global_mode) < 0 ||
      bl_list_init(&bl->ip, cfg->client_ip, cfg->n_client_ip, global_mode) < 0 ||
      bl_list_init(&bl->id, cfg->device_id, cfg->n_device_id, global_mode) < 0 ||
      bl_net_build(bl) < 0)
    goto fail;

  /* Merged intervals of every entry, in entry order. */
  for (size_t e = 0; e < cfg->n_firmware; e++) {
    const struct sl_block_entry *be = &cfg->firmware[e];
    size_t first = niv;
    for (size_t c = 0; c < be->versions.n; c++) {
      struct pos lo, hi;
      if (!clause_ival(&be->versions.clauses[c], &lo, &hi)) continue;
      if (niv == cap) {
        cap = cap ? cap * 2 : 16;
        struct ival *p = realloc(iv, cap * sizeof(*iv));
        if (!p) goto fail;
        iv = p;
      }
      iv[niv++] = (struct ival){.entry = (uint32_t)e, .lo = lo, .hi = hi};
    }
    if (niv > first) qsort(iv + first, niv - first, sizeof(*iv), ival_qsort_cmp);
    size_t w = first;
    for (size_t r = first; r < niv; r++) {
      if (w > first && pos_cmp(&iv[r].lo, &iv[w - 1].hi) <= 0) {
        if (pos_cmp(&iv[r].hi, &iv[w - 1].hi) > 0) iv[w - 1].hi = iv[r].hi;
      } else {
        iv[w++] = iv[r];
      }
    }
    niv = w;
  }

  /* Distinct classes, sorted. */
  for (size_t e = 0; e < cfg->n_firmware; e++) {
    const char *c = cfg->firmware[e].device_class;
    if (!c) continue;
    size_t l = strlen(c), k;
    for (k = 0; k < bl->n_classes; k++)
      if (cls_cmp(bl->classes[k].cls, bl->classes[k].cls_len, c, l) == 0) break;
    if (k == bl->n_classes) {
      bl->classes[k].cls = c;
      bl->classes[k].cls_len = l;
      bl->n_classes++;
    }
  }
  qsort(bl->classes, bl->n_classes, sizeof(*bl->classes), class_qsort_cmp);

  /* Each group's intervals are a subsequence of |iv| (still in entry
   * order); gather them into a scratch array per group. */
  struct ival *tmp = malloc((niv + 1) * sizeof(*tmp));
  if (!tmp) goto fail;
  for (size_t k = 0; k <= bl->n_classes; k++) {
    struct bl_fw_group *g = k < bl->n_classes ? &bl->classes[k] : bl->any;
    size_t n = 0;
    for (size_t i = 0; i < niv; i++) {
      const char *c = cfg->firmware[iv[i].entry].device_class;
      bool in = g == bl->any ? c == NULL : c && cls_cmp(g->cls, g->cls_len, c, strlen(c)) == 0;
      if (in) tmp[n++] = iv[i];
    }
    if (group_build(g, tmp, n) < 0) {
      free(tmp);
      goto fail;
    }
  }
  free(tmp);
  free(iv);
  return bl;

fail:
  free(iv);
  sl_blocklist_del(bl);
  return NULL;
}

size_t sl_blocklist_size(const struct sl_blocklist *bl) { return bl->fw.n + bl->ip.n + bl->id.n; }

size_t sl_blocklist_cfg_count(const struct sl_blocklist_cfg *cfg) {
  return cfg->n_client_ip + cfg->n_device_id + cfg->n_firmware;
}

const struct sl_block_entry *sl_blocklist_cfg_at(const struct sl_blocklist_cfg *cfg, size_t i) {
  if (i < cfg->n_client_ip) return &cfg->client_ip[i];
  i -= cfg->n_client_ip;
  if (i < cfg->n_device_id) return &cfg->device_id[i];
  i -= cfg->n_device_id;
  return i < cfg->n_firmware ? &cfg->firmware[i] : NULL;
}

size_t sl_blocklist_cfg_expired(const struct sl_blocklist_cfg *cfg, int64_t now_unix) {
  size_t n = 0, all = sl_blocklist_cfg_count(cfg);
  for (size_t i = 0; i < all; i++)
    n += sl_block_entry_expired(sl_blocklist_cfg_at(cfg, i), now_unix);
  return n;
}

/* ---- lookup -------------------------------------------------------- */

static const struct bl_fw_group *class_find(const struct sl_blocklist *bl, const char *cls,
                                            size_t len) {
  size_t lo = 0, hi = bl->n_classes;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = cls_cmp(bl->classes[mid].cls, bl->classes[mid].cls_len, cls, len);
    if (c == 0) return &bl->classes[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

/* Entries of |g| covering |v|, as a slice. */
static const uint32_t *group_match(const struct bl_fw_group *g, const struct sl_version *v,
                                   size_t *n) {
  /* The last position below v. */
  size_t lo = 0, hi = g->npos;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (pos_vs(&g->pos[mid], v) < 0) lo = mid + 1;
    else hi = mid;
  }
  if (lo == 0 || lo == g->npos) { /* below the first or above the last */
    *n = 0;
    return NULL;
  }
  size_t s = lo - 1;
  *n = g->seg_off[s + 1] - g->seg_off[s];
  return g->ent + g->seg_off[s];
}

static void pick_from(const struct sl_blocklist *bl, const uint32_t *ents, size_t n, int64_t now,
                      struct bl_pick *p) {
  for (size_t i = 0; i < n; i++) bl_pick_one(&bl->fw, ents[i], now, p);
}

void sl_blocklist_check(const struct sl_blocklist *bl, const char *cls, size_t cls_len,
                        const struct sl_version *fw, int64_t now_unix,
                        struct sl_block_verdict *out) {
  memset(out, 0, sizeof(*out));
  struct bl_pick p = BL_PICK_NONE;
  const struct bl_fw_group *g = cls ? class_find(bl, cls, cls_len) : NULL;
  if (fw) {
    size_t n;
    const uint32_t *e = group_match(bl->any, fw, &n);
    pick_from(bl, e, n, now_unix, &p);
    if (g) {
      e = group_match(g, fw, &n);
      pick_from(bl, e, n, now_unix, &p);
    }
  } else {
    out->unknown = true;
    pick_from(bl, bl->any->all, bl->any->nall, now_unix, &p);
    if (g) pick_from(bl, g->all, g->nall, now_unix, &p);
  }
  bl_pick_verdict(&bl->fw, &p, out);
  if (!fw && !out->deny && bl->unknown == SL_UNKNOWN_DENY) {
    if (bl->global_mode == SL_MODE_SHADOW) {
      out->shadow_deny = true;
    } else {
      out->deny = true;
      out->status = 403;
    }
  }
}
