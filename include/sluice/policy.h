/*
 * sluice — the policy kind interface: what one kind of route policy gives
 * the loader, the printer, the reload diff and the admission engine,
 * through one ops table (struct sl_kind), in the manner of nginx's
 * ngx_module_t (a context plus the directives it parses) and HAProxy's
 * struct flt_ops (callbacks at fixed points of a stream's life).
 *
 * A kind is one file under policies/kinds/ and one line of
 * policies/kinds/kinds.def. The loader finds a route's policies by the
 * kinds' YAML keys, so a new kind needs no edit of the schema, printer,
 * diff or engine. A route's policies of these kinds run after the
 * blocklist, at their kind's |stage| of SPEC section 4's order (before
 * the route's rate limits, or after them: concurrency), in the order of
 * kinds.def within a stage.
 *
 * Configuration is pure data: a struct sl_policy_cfg (and the kind's data
 * it points to) lives in the snapshot's arena and holds no runtime state.
 * A kind with state gives state_new/state_carry/state_del; the state of a
 * policy is keyed by kind and |identity| (see sl_policies_attach).
 *
 * Two-phase decisions. sl_engine_run() peeks every policy (no side
 * effect), then commits each (takes what the verdict holds); a commit
 * that fails rolls back those committed before it, so a refused request
 * holds and consumes nothing. A peek may answer SL_VERDICT_PENDING when
 * it needs I/O the engine cannot do (e.g. a limit kept in a remote
 * store): see sl_engine_run() for that contract.
 */
#ifndef SLUICE_POLICY_H
#define SLUICE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sluice/breaker-t.h"
#include "sluice/config-t.h"

struct cfg_schema; /* the loader's toolkit (policies/config/config_schema.h) */
struct cfg_node;
struct sl_identity;
struct sl_request_facts;
struct sl_admission;
struct sl_policy_set;
struct sl_reject_extra;

enum sl_verdict {
  SL_VERDICT_ADMIT = 0,
  SL_VERDICT_REFUSE,
  SL_VERDICT_SKIP,    /* does not apply to this request */
  SL_VERDICT_PENDING, /* needs I/O by the data plane; see sl_engine_run() */
};

/* struct sl_policy_cfg (one route policy, pure data) is in config-t.h. */

/* What a policy sees of the request. */
struct sl_policy_ctx {
  const struct sl_config *cfg;
  const struct sl_route_cfg *route;
  const struct sl_identity *id;
  const struct sl_request_facts *facts; /* NULL: none (then header policies see nothing) */
  uint64_t now_ns;
  int64_t now_unix;
  uint64_t rnd;
  bool explain; /* describe, change nothing: commit is not called */
  /* The verdict being built: a commit may publish there what callers read
   * directly (the concurrency kind: out->conc), its rollback clears it. */
  struct sl_admission *out;
};

/* A policy's answer. |why| is written only when ctx->explain is set. */
struct sl_policy_result {
  enum sl_verdict verdict;
  uint16_t status;          /* refusals */
  const char *error;        /* JSON "error" of a refusal, e.g. "header_required" */
  uint64_t retry_after_ns;  /* 0: no Retry-After wait of its own */
  bool retry;               /* a Retry-After even without a wait (the reject minimum) */
  /* A refusal of a crowd that shares one queue (an open breaker): with
   * `spread: backlog` each refusal takes the next free slot of |horizon|,
   * one |period_ns| long (the rate at which what refused it admits
   * again), instead of the jitter window over retry_after_ns. NULL: the
   * window (sluice/horizon.h has the maths). */
  _Atomic uint64_t *horizon;
  uint64_t period_ns;
  const struct sl_reject_extra *extra; /* body fields, headers of a refusal; NULL: none */
  void *pending;            /* SL_VERDICT_PENDING: what the data plane must resolve */
  char why[160];
};

/* Where a kind's policies run in SPEC section 4's order. */
enum sl_kind_stage {
  SL_STAGE_BEFORE_LIMITS = 0, /* after the blocklist, before the route's rate limits */
  SL_STAGE_AFTER_LIMITS,      /* after the rate limits, before the breaker (concurrency) */
  /* right after route selection and identification, before the blocklist
   * (maintenance: nothing reaches the upstream, nothing is charged); runs
   * first of all */
  SL_STAGE_BEFORE_BLOCKLIST,
};

struct sl_kind {
  const char *key;        /* its YAML key in a route, e.g. "require_header" */
  const char *reason;     /* metric label of its refusals, e.g. "require_header" */
  /* Its refusals' enum sl_reject_reason when it keeps a built-in one (an
   * existing metric label, e.g. SL_REASON_CONCURRENCY); 0: numbered by
   * its place in kinds.def (SL_REASON__COUNT + index). */
  uint16_t reason_id;
  enum sl_kind_stage stage;

  /* ---- configuration (the loader, the printer, the reload diff) ---- */
  /* Parses |v|, the value of |key| in a route, into |p| (kind data in the
   * snapshot arena: cs_* helpers of config_schema.h); |p->name| and
   * |p->mark| are set. Reports every problem at its FILE:LINE:COL and
   * returns false if the policy is unusable. */
  bool (*parse)(struct cfg_schema *s, const struct cfg_node *v, struct sl_policy_cfg *p);
  /* Instead of |parse|, for a kind without a key in the route: gives
   * |route| a policy of it when the configuration elsewhere says so (the
   * breaker: the route's upstream has one enabled), setting |p|'s name,
   * mark, mode, identity and data. Such a policy is printed and diffed
   * where it is configured (|print| and |tunables| NULL). */
  bool (*implied)(struct cfg_schema *s, struct sl_route_cfg *route, struct sl_policy_cfg *p);
  /* Prints |p| as YAML under its key at indentation |ind| (the key line
   * included), normalised, for `sluice check --print`. */
  void (*print)(FILE *out, int ind, const struct sl_policy_cfg *p);
  /* Fingerprint of every setting (sluice/hash.h) for the reload diff;
   * settings left out of |identity| make a carried state "retuned". */
  uint64_t (*tunables)(const struct sl_policy_cfg *p);

  /* ---- runtime state (NULL for a stateless kind) ---- */
  void *(*state_new)(const struct sl_policy_cfg *p);
  /* |state| of |from| is carried to |to| (same identity): convert it. */
  void (*state_carry)(void *state, const struct sl_policy_cfg *from,
                      const struct sl_policy_cfg *to, uint64_t now_ns);
  void (*state_del)(void *state);
  /* Instead of state_new..: the policy's state is one the set keeps in a
   * slot of its own (the route's concurrency counter), shared or typed;
   * returns what the engine is given for |p| of |route| (in set->cfg). */
  void *(*state_of)(const struct sl_policy_set *set, const struct sl_route_cfg *route,
                    const struct sl_policy_cfg *p);

  /* ---- decision ---- */
  /* Looks, changes nothing. */
  void (*peek)(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
               struct sl_policy_result *r);
  /* Takes what an admitting peek promised, and may note in |*held| what
   * it holds for the request (a slot, a ticket: given back to rollback and
   * finish); false: it is gone (another worker took it), |r| then says why.
   * NULL: the peek's verdict stands. */
  bool (*commit)(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                 struct sl_policy_result *r, uint64_t *held);
  /* Gives back what commit took (a later policy or stage refused). */
  void (*rollback)(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                   uint64_t held);
  /* The outcome report: the admitted exchange ended (tunnels: closed), with
   * |outcome| after |latency_ns|; release what commit held and learn (a
   * breaker). Called once, by sl_admission_finish(), with the request's
   * verdict |a| (what commit published in c->out). NULL: nothing to do. */
  void (*finish)(const struct sl_policy_cfg *p, void *state, uint64_t held,
                 struct sl_admission *a, enum sl_outcome outcome, uint64_t latency_ns,
                 uint64_t now_ns);
};

/* The registry (policies/kinds/registry.c, from kinds.def): at most
 * SL_ENGINE_MAX_KINDS kinds (a route has at most one policy of each). */
#define SL_ENGINE_MAX_KINDS 32
extern const struct sl_kind *const sl_policy_kinds[];
extern const size_t sl_n_policy_kinds;

/* The kind whose YAML key is |key|, or NULL. */
const struct sl_kind *sl_policy_kind_find(const char *key);

#endif
