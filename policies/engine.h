/*
 * sluice — the admission engine's private interface (policies/ only):
 * the two-phase run of a route's policies of registered kinds
 * (sluice/policy.h) and the verdict helpers admission.c shares with it.
 */
#ifndef SLUICE_POLICIES_ENGINE_H
#define SLUICE_POLICIES_ENGINE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sluice/admission.h"
#include "sluice/policy.h"

/* At most this many policies of registered kinds a route (one per kind). */
#define SL_ENGINE_MAX_POLICIES SL_ENGINE_MAX_KINDS

/* One run over a route's policies; zero it before the first call. */
struct sl_engine_run {
  size_t next;        /* the policy to peek next */
  uint64_t admitted;  /* bit i: policy i admitted (to commit) */
  unsigned held_base; /* out->held[held_base..n_held): committed by this run */
  /* sl_engine_resume() gave policy |next| this verdict (owned by the
   * caller, alive until the next sl_engine_peek()); NULL: none. */
  const struct sl_policy_result *answer;
};

static inline bool sl_engine_is_shadow(const struct sl_config *cfg, enum sl_mode own) {
  if (own == SL_MODE_SHADOW) return true;
  if (own == SL_MODE_ENFORCE) return false;
  return cfg->mode == SL_MODE_SHADOW;
}

/* The refusal reason of |p|'s kind: its built-in one, or SL_REASON__COUNT
 * + its place in kinds.def. */
static inline enum sl_reject_reason sl_engine_reason(const struct sl_policy_cfg *p) {
  if (p->kind->reason_id) return (enum sl_reject_reason)p->kind->reason_id;
  return (enum sl_reject_reason)(SL_REASON__COUNT + p->kind_index);
}

/* Peeks |ps[i]| for i from run->next (states[i]: its state, or |states|
 * NULL: none has any). Returns
 *   SL_VERDICT_ADMIT    every one admits, skips, or refuses in shadow mode
 *                       (reported in out->shadow); call sl_engine_commit();
 *   SL_VERDICT_REFUSE   |out| is refused (status, reason, policy, error,
 *                       retry_after_s); nothing is held;
 *   SL_VERDICT_PENDING  policy run->next needs I/O first; |*pending|
 *                       receives its result's |pending| (what to look up).
 * The pending contract: nothing has been committed yet, so a request
 * dropped while pending needs no clean-up. The data plane does the I/O
 * (it owns sockets and the loop), gives the policy's verdict with
 * sl_engine_resume(), and calls sl_engine_peek() again with the same
 * arguments: the policies before run->next are not peeked again. A
 * resumed verdict is reported and enforced like a peeked one.
 * |trace|/|first|: explain output, as admission.c writes it. */
enum sl_verdict sl_engine_peek(struct sl_engine_run *run, const struct sl_policy_cfg *ps, size_t n,
                               void *const *states, const struct sl_policy_ctx *c,
                               struct sl_admission *out, void **pending, FILE *trace,
                               bool *first);

/* The verdict of the pending policy, from the data plane's I/O. */
void sl_engine_resume(struct sl_engine_run *run, const struct sl_policy_result *r);

/* Commits every policy that admitted, in order, noting each one with a
 * commit in out->held (for rollback and sl_admission_finish()). Returns
 * SL_VERDICT_ADMIT, or SL_VERDICT_REFUSE with |out| refused after giving
 * back what the policies committed before the one that failed took (a
 * commit that fails in shadow mode is reported and passes; more than
 * SL_ADMISSION_MAX_HELD holding policies refuse with 503). Not for
 * explain. */
enum sl_verdict sl_engine_commit(struct sl_engine_run *run, const struct sl_policy_cfg *ps,
                                 size_t n, void *const *states, const struct sl_policy_ctx *c,
                                 struct sl_admission *out);

/* Gives back everything this run committed (a later stage refused), last
 * first, and forgets it (sl_admission_finish() will not report it). */
void sl_engine_rollback(struct sl_engine_run *run, const struct sl_policy_ctx *c,
                        struct sl_admission *out);

/* Peek then commit. */
enum sl_verdict sl_engine_run(struct sl_engine_run *run, const struct sl_policy_cfg *ps, size_t n,
                              void *const *states, const struct sl_policy_ctx *c,
                              struct sl_admission *out, void **pending, FILE *trace, bool *first);

/* ---- verdict helpers (admission.c and the engine) ---- */

/* Explain: one JSON object per policy evaluated; |policy| and |why| are
 * escaped. No-op (and no call) when |f| is NULL, the hot path's case. */
void sl_engine_trace_write(FILE *f, bool *first, const char *policy, const char *kind,
                           const char *verdict, const char *why);
static inline void sl_engine_trace(FILE *f, bool *first, const char *policy, const char *kind,
                                   const char *verdict, const char *why) {
  if (f) sl_engine_trace_write(f, first, policy, kind, verdict, why);
}

/* Explain: |policy| was skipped by the request's allow rule (out->allow):
 * verdict "skip", why "skip (allow/<rule>)". */
void sl_engine_trace_exempt_write(FILE *f, bool *first, const char *policy, const char *kind,
                                  const struct sl_admission *out);
static inline void sl_engine_trace_exempt(FILE *f, bool *first, const char *policy,
                                          const char *kind, const struct sl_admission *out) {
  if (f) sl_engine_trace_exempt_write(f, first, policy, kind, out);
}

static inline void sl_engine_refuse(struct sl_admission *out, uint16_t status,
                                    enum sl_reject_reason reason, const char *error,
                                    uint32_t retry_after_s) {
  out->admit = false;
  out->status = status;
  out->reason = reason;
  out->error = error;
  out->retry_after_s = retry_after_s;
}
/* A shadow refusal, "<route>/<what>" (or |route| alone if |what| is NULL). */
void sl_engine_add_shadow(struct sl_admission *out, enum sl_reject_reason r, const char *route,
                          const char *what);
/* Bounded copy of a policy name (no printf on the refusal path). */
static inline void sl_engine_set_name(char dst[SL_POLICY_NAME_MAX], const char *src) {
  size_t n = strlen(src);
  if (n >= SL_POLICY_NAME_MAX) n = SL_POLICY_NAME_MAX - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

#endif
