/*
 * Unit tests for policies/hash.c (SipHash-1-3) and policies/json.c (the
 * JSON string escaper). The SipHash vectors come from an independent
 * Python model of the reference siphash.c that reproduces the published
 * SipHash-2-4 vector (key 00..0f, empty message: 0x726fdb47dd0e0e31) and
 * Rust's SipHasher13 one (0xabac0158050fc4dc) when run with those rounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/hash.h"
#include "sluice/json.h"

static struct sl_hash_key key_0_15(void) {
  uint8_t seed[16];
  for (int i = 0; i < 16; i++) seed[i] = (uint8_t)i;
  return sl_hash_key_from(seed);
}

static const struct {
  size_t len;
  uint64_t h64, h128[2];
} vectors[] = {
    {0, 0xabac0158050fc4dcULL, {0xbea58827b2bc7ee7ULL, 0x13030dd6adb62fdULL}},
    {1, 0xc9f49bf37d57ca93ULL, {0xa8edd36004376ffcULL, 0x63f02f2bcc73055eULL}},
    {7, 0xd3927d989bb11140ULL, {0xc3e0aaf223b98410ULL, 0x77ab4808c82e2fa6ULL}},
    {8, 0x369095118d299a8eULL, {0xb4dae3d5e1fe12aaULL, 0x99c7f935ab164f72ULL}},
    {15, 0xd320d86d2a519956ULL, {0x6c52bdb205557ec1ULL, 0x9017e1eeccd2129ULL}},
    {16, 0xcc4fdd1a7d908b66ULL, {0xeb8e511557d9a8d0ULL, 0x93179e3df8b013b5ULL}},
    {63, 0x9d199062b7bbb3a8ULL, {0x6f42fe4ee300584cULL, 0xad6052a70a6b9f07ULL}},
};

static void test_vectors(void **st) {
  (void)st;
  struct sl_hash_key k = key_0_15();
  uint8_t msg[64];
  for (int i = 0; i < 64; i++) msg[i] = (uint8_t)i;
  for (size_t v = 0; v < sizeof(vectors) / sizeof(vectors[0]); v++) {
    uint64_t out[2];
    assert_int_equal(sl_siphash(&k, msg, vectors[v].len), vectors[v].h64);
    sl_siphash128(&k, msg, vectors[v].len, out);
    assert_int_equal(out[0], vectors[v].h128[0]);
    assert_int_equal(out[1], vectors[v].h128[1]);
  }
}

/* Every split of every prefix of a 40-byte message into three pieces
 * gives the one-shot hash. */
static void test_incremental_equals_one_shot(void **st) {
  (void)st;
  struct sl_hash_key k = key_0_15();
  uint8_t msg[40];
  for (int i = 0; i < 40; i++) msg[i] = (uint8_t)(i * 37 + 11);
  for (size_t n = 0; n <= sizeof(msg); n++) {
    uint64_t want = sl_siphash(&k, msg, n);
    for (size_t a = 0; a <= n; a++)
      for (size_t b = a; b <= n; b++) {
        struct sl_hasher h;
        sl_hasher_init(&h, &k);
        sl_hasher_bytes(&h, msg, a);
        sl_hasher_bytes(&h, msg + a, b - a);
        sl_hasher_bytes(&h, msg + b, n - b);
        assert_int_equal(sl_hasher_final(&h), want);
      }
  }
}

static void test_fields_delimit(void **st) {
  (void)st;
  const struct sl_hash_key *k = sl_hash_process_key();
  struct sl_hasher a, b, c, d;
  sl_hasher_init(&a, k), sl_hasher_str(&a, "ab"), sl_hasher_str(&a, "c");
  sl_hasher_init(&b, k), sl_hasher_str(&b, "a"), sl_hasher_str(&b, "bc");
  sl_hasher_init(&c, k), sl_hasher_str(&c, NULL);
  sl_hasher_init(&d, k), sl_hasher_str(&d, "");
  assert_int_not_equal(sl_hasher_final(&a), sl_hasher_final(&b));
  assert_int_not_equal(sl_hasher_final(&c), sl_hasher_final(&d));
  assert_int_equal(sl_hash_mix_str(SL_HASH_SEED, "x"), sl_hash_mix_str(SL_HASH_SEED, "x"));
  assert_int_not_equal(sl_hash_mix_str(SL_HASH_SEED, "x"), sl_hash_mix_str(SL_HASH_SEED, "y"));
  assert_int_not_equal(sl_hash_mix_u64(1, 2), sl_hash_mix_u64(2, 1));
}

/* ---- JSON --------------------------------------------------------- */

static char *esc(const char *s, size_t n, size_t cap, bool *all) {
  char *buf = malloc(cap);
  assert_non_null(buf);
  size_t len = 0;
  *all = sl_json_escape_n(buf, cap, &len, s, n);
  assert_true(len < cap);
  buf[len] = '\0';
  return buf;
}

static void test_json_escapes(void **st) {
  (void)st;
  static const struct {
    const char *in;
    size_t n;
    const char *out;
  } cases[] = {
      {"plain", 5, "plain"},
      {"a\"b\\c", 5, "a\\\"b\\\\c"},
      {"\n\r\t\x01\x7f", 5, "\\n\\u000d\\u0009\\u0001\\u007f"},
      {"caf\xc3\xa9", 5, "caf\xc3\xa9"},                 /* well-formed: copied */
      {"\xe2\x82\xac", 3, "\xe2\x82\xac"},               /* U+20AC */
      {"\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80"},       /* U+1F600 */
      {"\xff", 1, "\\ufffd"},                            /* never valid */
      {"\xc3", 1, "\\ufffd"},                            /* cut sequence */
      {"\xc0\xaf", 2, "\\ufffd\\ufffd"},                 /* overlong '/' */
      {"\xed\xa0\x80", 3, "\\ufffd\\ufffd\\ufffd"},      /* surrogate */
      {"\xf4\x90\x80\x80", 4, "\\ufffd\\ufffd\\ufffd\\ufffd"}, /* > U+10FFFF */
      {"a\0b", 3, "a\\u0000b"},                          /* NUL is a byte */
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    bool all;
    char *got = esc(cases[i].in, cases[i].n, 64, &all);
    assert_true(all);
    assert_string_equal(got, cases[i].out);
    free(got);
  }
}

/* A buffer too small is cut between whole characters: never inside an
 * escape or a UTF-8 sequence, and one byte is left for the NUL. */
static void test_json_cut_on_boundaries(void **st) {
  (void)st;
  const char *in = "x\"\xc3\xa9\x01\xff";
  const char *full = "x\\\"\xc3\xa9\\u0001\\ufffd";
  size_t flen = strlen(full);
  static const size_t boundaries[] = {0, 1, 3, 5, 11, 17};
  for (size_t cap = 1; cap <= flen + 1; cap++) {
    bool all;
    char *got = esc(in, strlen(in), cap, &all);
    size_t glen = strlen(got);
    size_t want = 0;
    for (size_t b = 0; b < sizeof(boundaries) / sizeof(boundaries[0]); b++)
      if (boundaries[b] < cap) want = boundaries[b];
    assert_int_equal(glen, want);
    assert_memory_equal(got, full, glen);
    assert_int_equal(all, glen == flen);
    free(got);
  }
}

static void test_json_file(void **st) {
  (void)st;
  char *out = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&out, &n);
  assert_non_null(f);
  sl_json_escape_file(f, "q\"\xfe", 3);
  fclose(f);
  assert_string_equal(out, "q\\\"\\ufffd");
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vectors),
      cmocka_unit_test(test_incremental_equals_one_shot),
      cmocka_unit_test(test_fields_delimit),
      cmocka_unit_test(test_json_escapes),
      cmocka_unit_test(test_json_cut_on_boundaries),
      cmocka_unit_test(test_json_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
