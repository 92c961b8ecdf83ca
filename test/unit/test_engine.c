/* Unit tests for policies/engine.c: the two-phase run of a route's
 * policies of registered kinds (peek all, commit all, roll back), shadow
 * mode, and the "pending" contract, with fake kinds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sluice/admission.h"
#include "sluice/policy.h"
#include "../../policies/engine.h"

/* A counter of tokens: peek admits while some are left, commit takes
 * one (and fails if another request took the last one in between),
 * rollback gives it back. */
struct tokens {
  int left;
  int peeks, commits, rollbacks, finishes;
  enum sl_outcome last_outcome;
  uint64_t last_latency, last_now;
  int steal_on_commit; /* tokens that vanish just before a commit */
};

static void tok_peek(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                     struct sl_policy_result *r) {
  (void)p;
  struct tokens *t = state;
  t->peeks++;
  r->verdict = t->left > 0 ? SL_VERDICT_ADMIT : SL_VERDICT_REFUSE;
  if (r->verdict == SL_VERDICT_REFUSE) {
    r->status = 429;
    r->error = "no_tokens";
    r->retry_after_ns = 0;
  }
  if (c->explain) snprintf(r->why, sizeof(r->why), "%d left", t->left);
}

static bool tok_commit(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                       struct sl_policy_result *r, uint64_t *held) {
  (void)p;
  (void)c;
  struct tokens *t = state;
  *held = (uint64_t)t->left; /* the token taken: its number */
  t->left -= t->steal_on_commit;
  t->steal_on_commit = 0;
  if (t->left <= 0) {
    r->status = 429;
    r->error = "no_tokens";
    return false;
  }
  t->left--;
  t->commits++;
  return true;
}

static void tok_rollback(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                         uint64_t held) {
  (void)p;
  (void)c;
  struct tokens *t = state;
  assert_int_equal(held, (uint64_t)t->left + 1); /* what commit noted */
  t->left++;
  t->rollbacks++;
}

/* The outcome report: tokens that are given back when the exchange ends
 * (like a concurrency slot), and the outcome seen. */
static void tok_finish(const struct sl_policy_cfg *p, void *state, uint64_t held,
                       struct sl_admission *a, enum sl_outcome outcome, uint64_t latency_ns,
                       uint64_t now_ns) {
  (void)p, (void)a;
  struct tokens *t = state;
  assert_true(held > 0);
  t->left++;
  t->finishes++;
  t->last_outcome = outcome;
  t->last_latency = latency_ns;
  t->last_now = now_ns;
}

static const struct sl_kind TOKENS = {
    .key = "tokens", .reason = "tokens", .peek = tok_peek, .commit = tok_commit,
    .rollback = tok_rollback};
static const struct sl_kind SLOTS = {
    .key = "slots", .reason = "slots", .peek = tok_peek, .commit = tok_commit,
    .rollback = tok_rollback, .finish = tok_finish};

/* A kind that needs I/O: pends until the data plane answers. */
struct remote {
  int peeks;
  char lookup[16];
};

static void remote_peek(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                        struct sl_policy_result *r) {
  (void)p;
  (void)c;
  struct remote *s = state;
  s->peeks++;
  r->verdict = SL_VERDICT_PENDING;
  r->pending = s->lookup;
}

static const struct sl_kind REMOTE = {.key = "remote", .reason = "remote", .peek = remote_peek};

static struct sl_config CFG = {.mode = SL_MODE_ENFORCE,
                               .reject = {.retry_after_min_ms = 1000, .retry_after_max_ms = 5000}};

static struct sl_policy_cfg policy(const struct sl_kind *k, uint16_t index, const char *name,
                                   enum sl_mode mode) {
  return (struct sl_policy_cfg){.kind = k, .kind_index = index, .name = name, .mode = mode};
}

static struct sl_admission fresh(void) {
  struct sl_admission a;
  memset(&a, 0, sizeof(a));
  a.admit = true;
  return a;
}

/* Runs |ps[0..n)| under |cfg| (peek, then commit) into |out|. */
static enum sl_verdict go(struct sl_engine_run *run, const struct sl_policy_cfg *ps, size_t n,
                          void *const *states, const struct sl_config *cfg,
                          struct sl_admission *out, void **pending) {
  struct sl_policy_ctx c = {.cfg = cfg};
  bool first = true;
  return sl_engine_run(run, ps, n, states, &c, out, pending, NULL, &first);
}

static void test_all_admit_commits_each_once(void **st) {
  (void)st;
  struct tokens a = {.left = 2}, b = {.left = 1};
  struct sl_policy_cfg ps[2] = {policy(&TOKENS, 0, "r/a", SL_MODE_INHERIT),
                                policy(&TOKENS, 0, "r/b", SL_MODE_INHERIT)};
  void *states[2] = {&a, &b};
  struct sl_engine_run run = {0};
  struct sl_admission out = fresh();
  assert_int_equal(go(&run, ps, 2, states, &CFG, &out, NULL), SL_VERDICT_ADMIT);
  assert_true(out.admit);
  assert_int_equal(a.left, 1);
  assert_int_equal(b.left, 0);
  assert_int_equal(a.commits + b.commits, 2);
}

/* A peek refusal: nothing is committed, the later policy is not asked. */
static void test_peek_refusal_takes_nothing(void **st) {
  (void)st;
  struct tokens a = {.left = 5}, b = {.left = 0}, c3 = {.left = 5};
  struct sl_policy_cfg ps[3] = {policy(&TOKENS, 3, "r/a", SL_MODE_INHERIT),
                                policy(&TOKENS, 3, "r/b", SL_MODE_INHERIT),
                                policy(&TOKENS, 3, "r/c", SL_MODE_INHERIT)};
  void *states[3] = {&a, &b, &c3};
  struct sl_engine_run run = {0};
  struct sl_admission out = fresh();
  assert_int_equal(go(&run, ps, 3, states, &CFG, &out, NULL), SL_VERDICT_REFUSE);
  assert_false(out.admit);
  assert_int_equal(out.status, 429);
  assert_string_equal(out.error, "no_tokens");
  assert_string_equal(out.policy, "r/b");
  assert_int_equal(out.reason, SL_REASON__COUNT + 3);
  assert_int_equal(a.left, 5);
  assert_int_equal(c3.peeks, 0);
  assert_int_equal(a.commits + b.commits + c3.commits, 0);
}

/* A commit that fails (the last token went between peek and commit)
 * gives back what the policies before it took. */
static void test_commit_failure_rolls_back(void **st) {
  (void)st;
  struct tokens a = {.left = 5}, b = {.left = 1, .steal_on_commit = 1};
  struct sl_policy_cfg ps[2] = {policy(&TOKENS, 0, "r/a", SL_MODE_INHERIT),
                                policy(&TOKENS, 0, "r/b", SL_MODE_INHERIT)};
  void *states[2] = {&a, &b};
  struct sl_engine_run run = {0};
  struct sl_admission out = fresh();
  assert_int_equal(go(&run, ps, 2, states, &CFG, &out, NULL), SL_VERDICT_REFUSE);
  assert_false(out.admit);
  assert_string_equal(out.policy, "r/b");
  assert_int_equal(a.left, 5);
  assert_int_equal(a.rollbacks, 1);
  assert_int_equal(b.rollbacks, 0);
  /* A later stage refusing rolls back everything committed. */
  struct tokens x = {.left = 3};
  void *xs[1] = {&x};
  struct sl_engine_run r2 = {0};
  out = fresh();
  assert_int_equal(go(&r2, ps, 1, xs, &CFG, &out, NULL), SL_VERDICT_ADMIT);
  assert_int_equal(x.left, 2);
  struct sl_policy_ctx c = {.cfg = &CFG};
  sl_engine_rollback(&r2, &c, &out);
  assert_int_equal(x.left, 3);
  sl_engine_rollback(&r2, &c, &out); /* once only */
  assert_int_equal(x.left, 3);
  assert_int_equal(out.n_held, 0);
}

/* Shadow mode: reported, admitted, not charged. Global shadow applies to
 * an inheriting policy, not to an enforcing one. */
static void test_shadow(void **st) {
  (void)st;
  struct tokens a = {.left = 0}, b = {.left = 2};
  struct sl_policy_cfg ps[2] = {policy(&TOKENS, 1, "r/a", SL_MODE_SHADOW),
                                policy(&TOKENS, 1, "r/b", SL_MODE_INHERIT)};
  void *states[2] = {&a, &b};
  struct sl_engine_run run = {0};
  struct sl_admission out = fresh();
  assert_int_equal(go(&run, ps, 2, states, &CFG, &out, NULL), SL_VERDICT_ADMIT);
  assert_true(out.admit);
  assert_int_equal(out.n_shadow, 1);
  assert_string_equal(out.shadow[0].policy, "r/a");
  assert_int_equal(out.shadow[0].reason, SL_REASON__COUNT + 1);
  assert_int_equal(a.commits, 0);
  assert_int_equal(b.left, 1);

  struct sl_config shadow_all = CFG;
  shadow_all.mode = SL_MODE_SHADOW;
  struct sl_policy_cfg enf = policy(&TOKENS, 1, "r/e", SL_MODE_ENFORCE);
  struct sl_policy_cfg inh = policy(&TOKENS, 1, "r/i", SL_MODE_INHERIT);
  struct tokens z = {.left = 0};
  void *zs[1] = {&z};
  struct sl_engine_run r2 = {0}, r3 = {0};
  out = fresh();
  assert_int_equal(go(&r2, &inh, 1, zs, &shadow_all, &out, NULL), SL_VERDICT_ADMIT);
  assert_int_equal(out.n_shadow, 1);
  out = fresh();
  assert_int_equal(go(&r3, &enf, 1, zs, &shadow_all, &out, NULL), SL_VERDICT_REFUSE);
}

/* Pending: the engine stops at the policy that needs I/O, having
 * committed nothing; the data plane answers and runs again from there,
 * without peeking the earlier policies twice. */
static void test_pending_then_resume(void **st) {
  (void)st;
  struct tokens a = {.left = 1}, b = {.left = 1};
  struct remote rm = {.lookup = "bucket:42"};
  struct sl_policy_cfg ps[3] = {policy(&TOKENS, 0, "r/a", SL_MODE_INHERIT),
                                policy(&REMOTE, 1, "r/remote", SL_MODE_INHERIT),
                                policy(&TOKENS, 0, "r/b", SL_MODE_INHERIT)};
  void *states[3] = {&a, &rm, &b};
  struct sl_engine_run run = {0};
  struct sl_admission out = fresh();
  void *pending = NULL;
  assert_int_equal(go(&run, ps, 3, states, &CFG, &out, &pending), SL_VERDICT_PENDING);
  assert_ptr_equal(pending, rm.lookup);
  assert_int_equal(run.next, 1);
  assert_true(out.admit);
  assert_int_equal(a.left, 1); /* nothing committed while pending */
  assert_int_equal(b.peeks, 0);

  struct sl_policy_result answer = {.verdict = SL_VERDICT_ADMIT};
  sl_engine_resume(&run, &answer);
  assert_int_equal(go(&run, ps, 3, states, &CFG, &out, &pending), SL_VERDICT_ADMIT);
  assert_int_equal(a.peeks, 1);
  assert_int_equal(rm.peeks, 1);
  assert_int_equal(a.left, 0);
  assert_int_equal(b.left, 0);

  /* The answer may be a refusal: enforced like a peeked one. */
  struct tokens a2 = {.left = 1};
  void *states2[3] = {&a2, &rm, &b};
  struct sl_engine_run r2 = {0};
  out = fresh();
  assert_int_equal(go(&r2, ps, 3, states2, &CFG, &out, &pending), SL_VERDICT_PENDING);
  struct sl_policy_result no = {.verdict = SL_VERDICT_REFUSE, .status = 503,
                                .error = "store_says_no"};
  sl_engine_resume(&r2, &no);
  assert_int_equal(go(&r2, ps, 3, states2, &CFG, &out, &pending), SL_VERDICT_REFUSE);
  assert_int_equal(out.status, 503);
  assert_string_equal(out.policy, "r/remote");
  assert_int_equal(a2.left, 1);
}

/* The outcome report: a committed policy whose kind has finish hears how
 * the exchange ended, once, through sl_admission_finish(); a refused or
 * rolled back one does not. */
static void test_finish_reports_outcome(void **st) {
  (void)st;
  struct tokens s = {.left = 1}, t = {.left = 3};
  struct sl_policy_cfg ps[2] = {policy(&SLOTS, 2, "r/slots", SL_MODE_INHERIT),
                                policy(&TOKENS, 0, "r/tokens", SL_MODE_INHERIT)};
  void *states[2] = {&s, &t};
  struct sl_engine_run run = {0};
  struct sl_admission out = fresh();
  assert_int_equal(go(&run, ps, 2, states, &CFG, &out, NULL), SL_VERDICT_ADMIT);
  assert_int_equal(out.n_held, 2);
  assert_int_equal(s.left, 0); /* the slot is held */
  struct sl_engine_run r2 = {0};
  struct sl_admission out2 = fresh();
  assert_int_equal(go(&r2, ps, 2, states, &CFG, &out2, NULL), SL_VERDICT_REFUSE);
  assert_string_equal(out2.policy, "r/slots");
  assert_int_equal(out2.reason, SL_REASON__COUNT + 2);
  sl_admission_finish(&out, SL_OUTCOME_FAILURE, 7, 99);
  assert_int_equal(s.finishes, 1);
  assert_int_equal(s.left, 1);
  assert_int_equal(s.last_outcome, SL_OUTCOME_FAILURE);
  assert_int_equal(s.last_latency, 7);
  assert_int_equal(s.last_now, 99);
  assert_int_equal(t.finishes, 0); /* TOKENS has no finish */
  sl_admission_finish(&out, SL_OUTCOME_SUCCESS, 0, 100); /* idempotent */
  assert_int_equal(s.finishes, 1);
  /* Rolled back: no report. */
  struct sl_engine_run r3 = {0};
  struct sl_admission out3 = fresh();
  assert_int_equal(go(&r3, ps, 2, states, &CFG, &out3, NULL), SL_VERDICT_ADMIT);
  struct sl_policy_ctx c = {.cfg = &CFG};
  sl_engine_rollback(&r3, &c, &out3);
  assert_int_equal(s.left, 1);
  sl_admission_finish(&out3, SL_OUTCOME_CANCELLED, 0, 0);
  assert_int_equal(s.finishes, 1);
}

/* Explain: every policy is traced, nothing is committed by a peek. */
static void test_explain_trace(void **st) {
  (void)st;
  struct tokens a = {.left = 1}, b = {.left = 0};
  struct sl_policy_cfg ps[2] = {policy(&TOKENS, 0, "r/a", SL_MODE_INHERIT),
                                policy(&TOKENS, 0, "r/\"b\"", SL_MODE_SHADOW)};
  void *states[2] = {&a, &b};
  struct sl_policy_ctx c = {.cfg = &CFG, .explain = true};
  struct sl_engine_run run = {0};
  struct sl_admission out = fresh();
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  bool first = true;
  assert_int_equal(sl_engine_run(&run, ps, 2, states, &c, &out, NULL, f, &first),
                   SL_VERDICT_ADMIT);
  fclose(f);
  assert_string_equal(buf,
                      "{\"policy\":\"r/a\",\"kind\":\"tokens\",\"verdict\":\"admit\",\"why\":\"1 left\"},"
                      "{\"policy\":\"r/\\\"b\\\"\",\"kind\":\"tokens\",\"verdict\":\"shadow_reject\","
                      "\"why\":\"0 left\"}");
  assert_int_equal(a.left, 1);
  free(buf);
}

/* A kind's refusals are labelled with the kind's own reason. */
static void test_reason_names(void **st) {
  (void)st;
  assert_string_equal(sl_reject_reason_name(SL_REASON_RATE_LIMIT), "rate_limit");
  assert_string_equal(sl_reject_reason_name(SL_REASON_SHAPING), "shaping");
  const struct sl_kind *rh = sl_policy_kind_find("require_header");
  assert_non_null(rh);
  size_t k = 0;
  while (sl_policy_kinds[k] != rh) k++;
  assert_string_equal(sl_reject_reason_name((enum sl_reject_reason)(SL_REASON__COUNT + k)),
                      "require_header");
  assert_string_equal(sl_reject_reason_name((enum sl_reject_reason)(SL_REASON__COUNT + 999)),
                      "unknown");
  assert_null(sl_policy_kind_find("no_such_kind"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_all_admit_commits_each_once),
      cmocka_unit_test(test_peek_refusal_takes_nothing),
      cmocka_unit_test(test_commit_failure_rolls_back),
      cmocka_unit_test(test_shadow),
      cmocka_unit_test(test_pending_then_resume),
      cmocka_unit_test(test_finish_reports_outcome),
      cmocka_unit_test(test_explain_trace),
      cmocka_unit_test(test_reason_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
