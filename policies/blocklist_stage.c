/*
 * sluice — the blocklist stage of admission (step 1 of SPEC section 4's
 * order): client_ip, then device_id, then firmware; the first enforcing
 * entry to match refuses with its status, "error":"blocked", reason label
 * "blocklist" and the entry's label ("blocklist/<list>/<name or index>")
 * as the policy; `unknown: deny` keeps the list's own label
 * "blocklist/firmware". A shadow entry's match is reported under its
 * label and the request goes on.
 */
#include <stdio.h>
#include <string.h>

#include "sluice/admission.h"
#include "sluice/blocklist.h"
#include "sluice/config.h"
#include "sluice/retry.h"
#include "blocklist_int.h"
#include "engine.h"

/* How long a blocked device is told to stay away: until the entry
 * expires, or as long as the reject config allows (a block is an incident
 * response, not a burst; a quick retry would only be refused again). */
static uint32_t block_retry_after(const struct sl_admission_input *in,
                                  const struct sl_block_entry *e) {
  uint64_t wait_ns = in->cfg->reject.retry_after_max_ms * 1000000ull;
  if (e && e->expires_unix > in->now_unix) {
    uint64_t until = (uint64_t)(e->expires_unix - in->now_unix) * 1000000000ull;
    if (until < wait_ns) wait_ns = until;
  }
  return sl_retry_after_s(&in->cfg->reject, wait_ns, in->rnd);
}

/* Applies list |list|'s verdict |bv|: reports a shadow match, refuses on
 * an enforcing one (true), or traces the allow (|allow_why|). */
static __attribute__((noinline)) bool apply_match(const struct sl_admission_input *in,
                                                  struct sl_admission *out, FILE *tf,
                                                  bool *first, const char *list,
                                                  const struct sl_block_verdict *bv,
                                                  const char *allow_why) {
  const struct sl_config *cfg = in->cfg;
  bool enforce =
      bv->deny && !sl_engine_is_shadow(cfg, bv->entry ? bv->entry->mode : SL_MODE_INHERIT);
  if (bv->shadow_deny || (bv->deny && !enforce)) {
    const struct sl_block_entry *se = bv->shadow ? bv->shadow : bv->entry;
    const char *label = se ? se->label : list;
    sl_engine_add_shadow(out, SL_REASON_BLOCKLIST, label, NULL);
    sl_engine_trace(tf, first, label, "blocklist", "shadow_deny",
                    se && se->reason ? se->reason : "matched a shadow entry");
  }
  if (enforce) {
    const struct sl_block_entry *e = bv->entry;
    sl_engine_set_name(out->policy, e ? e->label : list);
    out->block = e;
    if (e && (e->extra.body || e->extra.n_headers)) out->extra = &e->extra;
    sl_engine_refuse(out, bv->status ? bv->status : 403, SL_REASON_BLOCKLIST, "blocked",
                     block_retry_after(in, e));
    const char *why = e && e->reason ? e->reason
                      : bv->unknown      ? "unknown firmware: deny"
                                         : "blocked";
    sl_engine_trace(tf, first, out->policy, "blocklist", "deny", why);
    return true;
  }
  if (!tf || bv->deny || bv->shadow_deny) return false;
  if (bv->lapsed) { /* explain: say it lapsed rather than a silent allow */
    char lapsed[512];
    sl_config_describe_expiry(bv->lapsed, in->now_unix, lapsed, sizeof(lapsed));
    sl_engine_trace(tf, first, list, "blocklist", "allow", lapsed);
  } else {
    sl_engine_trace(tf, first, list, "blocklist", "allow", allow_why);
  }
  return false;
}

/* The common request matches nothing and is not explained: nothing to
 * do, so it pays no call. */
static inline bool apply(const struct sl_admission_input *in, struct sl_admission *out, FILE *tf,
                         bool *first, const char *list, const struct sl_block_verdict *bv,
                         const char *allow_why) {
  if (!bv->deny && !bv->shadow_deny && !tf) return false;
  return apply_match(in, out, tf, first, list, bv, allow_why);
}

bool sl_blocklist_stage(const struct sl_admission_input *in, struct sl_admission *out, FILE *tf,
                        bool *first) {
  const struct sl_blocklist *bl = in->blocklist;
  const struct sl_identity *id = in->id;
  const char *cls = id->device_class;
  size_t cls_len = cls ? id->device_class_len : 0;
  struct sl_block_verdict bv;
  if (bl->ip.n) {
    sl_blocklist_check_addr(bl, id->family, id->addr, cls, cls_len, in->now_unix, &bv);
    if (apply(in, out, tf, first, "blocklist/client_ip", &bv, "no entry matches")) return false;
  }
  if (bl->id.n) {
    if (id->device_id && id->device_id_len) {
      sl_blocklist_check_device_id(bl, sl_blocklist_id_hash(id->device_id, id->device_id_len),
                                   id->device_id, id->device_id_len, cls, cls_len, in->now_unix,
                                   &bv);
      if (apply(in, out, tf, first, "blocklist/device_id", &bv, "no entry matches")) return false;
    } else {
      sl_engine_trace(tf, first, "blocklist/device_id", "blocklist", "skip",
                      "request carries no device id");
    }
  }
  sl_blocklist_check(bl, cls, cls_len, id->firmware_valid ? &id->firmware_version : NULL,
                     in->now_unix, &bv);
  if (apply(in, out, tf, first, "blocklist/firmware", &bv,
            bv.unknown ? "firmware absent or unparseable: allowed (unknown: allow)"
                       : "no entry matches"))
    return false;
  out->firmware_unknown = bv.unknown;
  return true;
}
