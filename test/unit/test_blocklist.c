/* Unit tests for policies/blocklist.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sluice/blocklist.h"
#include "sluice/config.h"
#include "sluice/version.h"

struct fixture {
  struct sl_block_entry *e;
  size_t n;
  struct sl_blocklist_cfg cfg;
};

static void add(struct fixture *f, const char *cls, const char *range, uint16_t status,
                int64_t expires, enum sl_mode mode) {
  f->e = realloc(f->e, (f->n + 1) * sizeof(*f->e));
  assert_non_null(f->e);
  struct sl_block_entry *e = &f->e[f->n++];
  memset(e, 0, sizeof(*e));
  e->device_class = cls;
  e->versions_text = range;
  char err[128];
  size_t off;
  if (sl_vrange_parse(range, &e->versions, err, sizeof(err), &off) != 0) fail_msg("%s: %s", range, err);
  e->status = status;
  e->reason = range;
  e->expires_unix = expires;
  e->mode = mode;
}

static void fixture_free(struct fixture *f) {
  for (size_t i = 0; i < f->n; i++) sl_vrange_free(&f->e[i].versions);
  free(f->e);
}

static struct sl_blocklist *compile(struct fixture *f, enum sl_unknown_firmware unk, enum sl_mode global) {
  f->cfg.firmware = f->e;
  f->cfg.n_firmware = f->n;
  f->cfg.unknown = unk;
  struct sl_blocklist *bl = sl_blocklist_new(&f->cfg, global);
  assert_non_null(bl);
  return bl;
}

static void check(const struct sl_blocklist *bl, const char *cls, const char *fw, int64_t now,
                  struct sl_block_verdict *out) {
  struct sl_version v;
  const struct sl_version *pv = NULL;
  if (fw && sl_version_parse(fw, strlen(fw), &v) == 0) pv = &v;
  sl_blocklist_check(bl, cls, cls ? strlen(cls) : 0, pv, now, out);
}

static const int64_t NOW = 1790000000;

/* The INC-2041 block: airtame-hub >=3.8.0-b3 <3.8.1. */
static void test_incident_range(void **st) {
  (void)st;
  struct fixture f = {0};
  add(&f, "airtame-hub", ">=3.8.0-b3 <3.8.1", 403, 0, SL_MODE_INHERIT);
  struct sl_blocklist *bl = compile(&f, SL_UNKNOWN_ALLOW, SL_MODE_ENFORCE);
  struct sl_block_verdict v;
  const struct {
    const char *cls, *fw;
    bool deny;
  } cases[] = {
      {"airtame-hub", "3.8.0-b2", false}, {"airtame-hub", "3.8.0-b3", true},
      {"airtame-hub", "3.8.0b3", true},   {"airtame-hub", "3.8.0-b10", true},
      {"airtame-hub", "3.8.0-rc1", true}, {"airtame-hub", "3.8.0", true},
      {"airtame-hub", "v3.8", true},      {"airtame-hub", "3.8.0.1", true},
      {"airtame-hub", "3.8.1", false},    {"airtame-hub", "3.7.99", false},
      {"airtame-hub", "4.0.0", false},    {"airtame-hub2", "3.8.0", false},
      {"airtame-hu", "3.8.0", false},     {"homey", "3.8.0", false},
      {NULL, "3.8.0", false},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    check(bl, cases[i].cls, cases[i].fw, NOW, &v);
    if (v.deny != cases[i].deny) fail_msg("%s %s: deny %d", cases[i].cls, cases[i].fw, v.deny);
    if (v.deny) {
      assert_ptr_equal(v.entry, &f.e[0]);
      assert_int_equal(v.status, 403);
    }
    assert_false(v.unknown);
  }
  sl_blocklist_del(bl);
  fixture_free(&f);
}

static void test_order_expiry_and_modes(void **st) {
  (void)st;
  struct fixture f = {0};
  add(&f, "hub", "3.8.x", 451, NOW - 1, SL_MODE_ENFORCE);      /* 0: lapsed */
  add(&f, "hub", ">=3.8.2 <3.9", 410, NOW + 60, SL_MODE_SHADOW); /* 1: shadow */
  add(&f, NULL, "3.8.5 || 3.8.6", 418, 0, SL_MODE_INHERIT);     /* 2: any class */
  add(&f, "hub", ">=3.8.0 <=3.8.5", 403, NOW + 60, SL_MODE_INHERIT); /* 3 */
  struct sl_blocklist *bl = compile(&f, SL_UNKNOWN_ALLOW, SL_MODE_ENFORCE);
  struct sl_block_verdict v;

  check(bl, "hub", "3.8.1", NOW, &v); /* 0 lapsed, 3 matches */
  assert_true(v.deny);
  assert_ptr_equal(v.entry, &f.e[3]);
  assert_null(v.shadow);

  check(bl, "hub", "3.8.1", NOW - 10, &v); /* before 0 lapsed: 0 wins */
  assert_ptr_equal(v.entry, &f.e[0]);
  assert_int_equal(v.status, 451);

  check(bl, "hub", "3.8.5", NOW, &v); /* 1 shadow, 2 any-class and 3 match: 2 first */
  assert_true(v.deny);
  assert_ptr_equal(v.entry, &f.e[2]);
  assert_int_equal(v.status, 418);
  assert_ptr_equal(v.shadow, &f.e[1]);
  assert_true(v.shadow_deny);

  check(bl, "hub", "3.8.3", NOW, &v); /* 1 shadow and 3 */
  assert_ptr_equal(v.entry, &f.e[3]);
  assert_ptr_equal(v.shadow, &f.e[1]);

  check(bl, "hub", "3.8.7", NOW, &v); /* shadow only: not denied */
  assert_false(v.deny);
  assert_null(v.entry);
  assert_ptr_equal(v.shadow, &f.e[1]);

  check(bl, "hub", "3.8.7", NOW + 60, &v); /* 1 lapsed */
  assert_false(v.deny);
  assert_null(v.shadow);

  check(bl, "other", "3.8.6", NOW, &v);
  assert_ptr_equal(v.entry, &f.e[2]);
  check(bl, NULL, "3.8.6", NOW, &v);
  assert_ptr_equal(v.entry, &f.e[2]);
  check(bl, NULL, "3.8.4", NOW, &v);
  assert_false(v.deny);
  sl_blocklist_del(bl);

  /* Global shadow: inheriting entries only shadow-deny. */
  bl = compile(&f, SL_UNKNOWN_ALLOW, SL_MODE_SHADOW);
  check(bl, "hub", "3.8.1", NOW, &v);
  assert_false(v.deny);
  assert_ptr_equal(v.shadow, &f.e[3]);
  sl_blocklist_del(bl);
  fixture_free(&f);
}

static void test_unknown_firmware(void **st) {
  (void)st;
  struct fixture f = {0};
  add(&f, "hub", "3.8.x", 403, 0, SL_MODE_INHERIT);
  struct sl_blocklist *bl = compile(&f, SL_UNKNOWN_ALLOW, SL_MODE_ENFORCE);
  struct sl_block_verdict v;
  check(bl, "hub", NULL, NOW, &v);
  assert_true(v.unknown);
  assert_false(v.deny);
  check(bl, "hub", "garbage", NOW, &v);
  assert_true(v.unknown);
  assert_false(v.deny);
  sl_blocklist_del(bl);

  bl = compile(&f, SL_UNKNOWN_DENY, SL_MODE_ENFORCE);
  check(bl, "hub", "3..8", NOW, &v);
  assert_true(v.unknown);
  assert_true(v.deny);
  assert_int_equal(v.status, 403);
  assert_null(v.entry);
  check(bl, "hub", "3.9.0", NOW, &v);
  assert_false(v.deny);
  assert_false(v.unknown);
  sl_blocklist_del(bl);

  bl = compile(&f, SL_UNKNOWN_DENY, SL_MODE_SHADOW);
  check(bl, "hub", NULL, NOW, &v);
  assert_false(v.deny);
  assert_true(v.shadow_deny);
  sl_blocklist_del(bl);
  fixture_free(&f);

  /* A whole-class block ("x") also catches devices of that class that
   * send no firmware. */
  struct fixture g = {0};
  add(&g, "broken", "x", 403, 0, SL_MODE_ENFORCE);
  add(&g, "broken", "*", 403, NOW - 5, SL_MODE_ENFORCE);
  bl = compile(&g, SL_UNKNOWN_ALLOW, SL_MODE_ENFORCE);
  check(bl, "broken", NULL, NOW, &v);
  assert_true(v.deny);
  assert_ptr_equal(v.entry, &g.e[0]);
  check(bl, "fine", NULL, NOW, &v);
  assert_false(v.deny);
  check(bl, "broken", "0.0.0-0", NOW, &v);
  assert_true(v.deny);
  sl_blocklist_del(bl);
  fixture_free(&g);
}

static void test_empty(void **st) {
  (void)st;
  struct fixture f = {0};
  struct sl_blocklist *bl = compile(&f, SL_UNKNOWN_ALLOW, SL_MODE_ENFORCE);
  struct sl_block_verdict v;
  check(bl, "x", "1.0.0", NOW, &v);
  assert_false(v.deny);
  assert_int_equal(sl_blocklist_size(bl), 0);
  sl_blocklist_del(bl);
  /* An entry whose range is empty matches nothing. */
  add(&f, NULL, ">=2 <1", 403, 0, SL_MODE_ENFORCE);
  add(&f, NULL, ">1.0.0 <=1.0.0", 403, 0, SL_MODE_ENFORCE);
  bl = compile(&f, SL_UNKNOWN_ALLOW, SL_MODE_ENFORCE);
  check(bl, NULL, "1.0.0", NOW, &v);
  assert_false(v.deny);
  check(bl, NULL, "1.5.0", NOW, &v);
  assert_false(v.deny);
  sl_blocklist_del(bl);
  fixture_free(&f);
}

/* ---- against brute force ------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng % n);
}

static void rnd_version(char *buf, size_t cap) {
  static const char *tags[] = {"", "", "", "-b1", "-b3", "-b10", "-rc1", ".1", "-0"};
  snprintf(buf, cap, "%u.%u.%u%s", rnd(3), rnd(6), rnd(4), tags[rnd(9)]);
}

/* Thousands of random entries (overlapping, ORs, equalities, wildcards,
 * lapsed, shadow) against sl_vrange_match() entry by entry. */
static void test_random_against_bruteforce(void **st) {
  (void)st;
  static const char *classes[] = {NULL, "a", "b", "c", "dd"};
  static const char *ops[] = {">=", ">", "<=", "<", "=", ""};
  struct fixture f = {0};
  char (*texts)[128] = calloc(3000, 128);
  for (int i = 0; i < 3000; i++) {
    char a[32], b[32];
    rnd_version(a, sizeof(a));
    rnd_version(b, sizeof(b));
    switch (rnd(5)) {
    case 0: snprintf(texts[i], 128, "%s%s", ops[rnd(6)], a); break;
    case 1: snprintf(texts[i], 128, ">=%s <%s", a, b); break;
    case 2: snprintf(texts[i], 128, "%s%s || %s%s", ops[rnd(6)], a, ops[rnd(6)], b); break;
    case 3: snprintf(texts[i], 128, "%u.%u.x", rnd(3), rnd(6)); break;
    default: snprintf(texts[i], 128, ">%s <=%s || =%s", a, b, a); break;
    }
    int64_t exp = rnd(4) == 0 ? NOW - 1 : (rnd(2) ? 0 : NOW + 100);
    add(&f, classes[rnd(5)], texts[i], (uint16_t)(400 + rnd(100)), exp,
        rnd(6) == 0 ? SL_MODE_SHADOW : SL_MODE_INHERIT);
  }
  struct sl_blocklist *bl = compile(&f, SL_UNKNOWN_ALLOW, SL_MODE_ENFORCE);
  for (int q = 0; q < 20000; q++) {
    char fw[32];
    rnd_version(fw, sizeof(fw));
    const char *cls = classes[rnd(5)];
    struct sl_version v;
    assert_int_equal(sl_version_parse(fw, strlen(fw), &v), 0);
    struct sl_block_verdict got;
    sl_blocklist_check(bl, cls, cls ? strlen(cls) : 0, &v, NOW, &got);
    const struct sl_block_entry *want = NULL, *want_shadow = NULL;
    for (size_t i = 0; i < f.n; i++) {
      const struct sl_block_entry *e = &f.e[i];
      if (e->device_class && (!cls || strcmp(e->device_class, cls) != 0)) continue;
      if (e->expires_unix && e->expires_unix <= NOW) continue;
      if (!sl_vrange_match(&e->versions, &v)) continue;
      if (e->mode == SL_MODE_SHADOW) {
        if (!want_shadow) want_shadow = e;
      } else if (!want) {
        want = e;
      }
    }
    if (got.entry != want || got.shadow != want_shadow)
      fail_msg("class %s fw %s: got %zd/%zd want %zd/%zd", cls ? cls : "-", fw,
               got.entry ? got.entry - f.e : -1, got.shadow ? got.shadow - f.e : -1,
               want ? want - f.e : -1, want_shadow ? want_shadow - f.e : -1);
    assert_int_equal(got.deny, want != NULL);
  }
  sl_blocklist_del(bl);
  fixture_free(&f);
  free(texts);
}

/* Expired entries (issue 12): the verdict names the first lapsed entry
 * that would have matched, so explain can say so instead of a silent
 * allow; the count and the wording use the same "now". */
static void test_lapsed_entries(void **st) {
  (void)st;
  struct fixture f = {0};
  add(&f, "hub", "3.8.x", 403, NOW - 2 * 86400, SL_MODE_INHERIT); /* 0: lapsed 2 days ago */
  add(&f, "hub", ">=3.8.2", 403, NOW, SL_MODE_INHERIT);         /* 1: lapses exactly now */
  add(&f, NULL, "x", 403, NOW - 1, SL_MODE_SHADOW);              /* 2: every version, lapsed */
  add(&f, "hub", "=3.8.4", 410, NOW + 3 * 3600, SL_MODE_INHERIT); /* 3: live 3 more hours */
  f.e[0].name = "bad-3.8";
  struct sl_blocklist *bl = compile(&f, SL_UNKNOWN_ALLOW, SL_MODE_ENFORCE);
  struct sl_block_verdict v;

  check(bl, "hub", "3.8.1", NOW, &v); /* only lapsed entries match: 0 is the first */
  assert_false(v.deny);
  assert_false(v.shadow_deny);
  assert_ptr_equal(v.lapsed, &f.e[0]);
  check(bl, "hub", "3.9.0", NOW, &v); /* 1 (lapsed at NOW) and 2 */
  assert_false(v.deny);
  assert_ptr_equal(v.lapsed, &f.e[1]);
  check(bl, "hub", "3.9.0", NOW - 1, &v); /* a second earlier 1 was live */
  assert_true(v.deny);
  assert_ptr_equal(v.entry, &f.e[1]);
  assert_ptr_equal(v.lapsed, &f.e[0] + 2); /* 2 lapsed at NOW - 1 */
  check(bl, "hub", "3.8.4", NOW, &v); /* 3 denies; lapsed ones are still reported */
  assert_true(v.deny);
  assert_ptr_equal(v.entry, &f.e[3]);
  assert_ptr_equal(v.lapsed, &f.e[0]);
  check(bl, "other", NULL, NOW, &v); /* unknown firmware: the "x" entry covers it */
  assert_true(v.unknown);
  assert_ptr_equal(v.lapsed, &f.e[2]);
  check(bl, "hub", "4.0", NOW - 10, &v); /* nothing lapsed yet but 0, which does not cover 4.0 */
  assert_null(v.lapsed);
  check(bl, "other", "1.0", NOW - 2 * 86400 - 1, &v); /* nothing lapsed at all */
  assert_null(v.lapsed);
  assert_true(v.shadow_deny);

  assert_int_equal(sl_blocklist_cfg_expired(&f.cfg, NOW), 3);
  assert_int_equal(sl_blocklist_cfg_expired(&f.cfg, NOW - 1), 2);
  assert_int_equal(sl_blocklist_cfg_expired(&f.cfg, NOW - 2 * 86400 - 1), 0);
  assert_int_equal(sl_blocklist_cfg_expired(&f.cfg, NOW + 3 * 3600), 4);
  f.e[3].expires_unix = 0; /* never */
  assert_int_equal(sl_blocklist_cfg_expired(&f.cfg, INT64_MAX), 3);
  sl_blocklist_del(bl);
  fixture_free(&f);
}

/* The wording of check, the logs and explain, at a fixed "now". */
static void test_describe_expiry(void **st) {
  (void)st;
  /* 2026-11-30T10:00:00Z */
  const int64_t T = 1796032800;
  struct sl_block_entry e = {.name = "bad-3.8", .versions_text = ">=3.8.0-b3 <3.8.1",
                             .expires_unix = T};
  char buf[256];
  sl_config_describe_expiry(&e, T + 2 * 86400 + 3600, buf, sizeof(buf));
  assert_string_equal(buf, "blocklist entry 'bad-3.8' expired at 2026-11-30T10:00:00Z "
                           "(2 days ago): it no longer blocks anything");
  sl_config_describe_expiry(&e, T, buf, sizeof(buf)); /* lapsed the very second */
  assert_string_equal(buf, "blocklist entry 'bad-3.8' expired at 2026-11-30T10:00:00Z "
                           "(0 seconds ago): it no longer blocks anything");
  sl_config_describe_expiry(&e, T + 61, buf, sizeof(buf));
  assert_non_null(strstr(buf, "(1 minute ago)"));
  sl_config_describe_expiry(&e, T + 86399, buf, sizeof(buf));
  assert_non_null(strstr(buf, "(23 hours ago)"));
  sl_config_describe_expiry(&e, T - 3 * 3600, buf, sizeof(buf));
  assert_string_equal(buf, "blocklist entry 'bad-3.8' expires at 2026-11-30T10:00:00Z (in 3 hours)");
  e.name = NULL;
  e.device_class = "airtame-hub";
  sl_config_describe_expiry(&e, T + 1, buf, sizeof(buf));
  assert_string_equal(buf, "blocklist entry for versions '>=3.8.0-b3 <3.8.1' of class "
                           "'airtame-hub' expired at 2026-11-30T10:00:00Z (1 second ago): "
                           "it no longer blocks anything");
  e.device_class = NULL;
  sl_config_describe_expiry(&e, T + 1, buf, sizeof(buf));
  assert_string_equal(buf, "blocklist entry for versions '>=3.8.0-b3 <3.8.1' expired at "
                           "2026-11-30T10:00:00Z (1 second ago): it no longer blocks anything");
  e.expires_unix = 0; /* never expires: nothing to say */
  sl_config_describe_expiry(&e, T, buf, sizeof(buf));
  assert_string_equal(buf, "");
  char tiny[16]; /* truncated, still terminated */
  e.expires_unix = T;
  sl_config_describe_expiry(&e, T, tiny, sizeof(tiny));
  assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_incident_range),
      cmocka_unit_test(test_order_expiry_and_modes),
      cmocka_unit_test(test_unknown_firmware),
      cmocka_unit_test(test_empty),
      cmocka_unit_test(test_lapsed_entries),
      cmocka_unit_test(test_describe_expiry),
      cmocka_unit_test(test_random_against_bruteforce),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
