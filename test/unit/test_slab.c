/*
 * Unit tests for core/slab.c: objects come zeroed, freed ones are reused,
 * blocks hold SL_SLAB_PER_BLOCK objects, and drain frees them (ASan checks
 * that nothing leaks and that a freed object is poisoned).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/slab.h"

struct obj {
  char bytes[100];
};

static __thread struct sl_slab slab = SL_SLAB_INIT(sizeof(struct obj));

static void test_zeroed_reused_packed(void **state) {
  (void)state;
  assert_int_equal(slab.size, 112); /* rounded up to 16 */
  struct obj *o[SL_SLAB_PER_BLOCK + 1];
  for (int i = 0; i <= SL_SLAB_PER_BLOCK; i++) {
    o[i] = sl_slab_calloc(&slab);
    assert_non_null(o[i]);
    for (size_t k = 0; k < sizeof(o[i]->bytes); k++) assert_int_equal(o[i]->bytes[k], 0);
    memset(o[i], 0x5a, sizeof(*o[i]));
  }
  /* The first block's objects are consecutive. */
  for (int i = 1; i < SL_SLAB_PER_BLOCK; i++)
    assert_int_equal((char *)o[i] - (char *)o[i - 1], (ptrdiff_t)slab.size);
  sl_slab_free(&slab, o[3]);
  sl_slab_free(&slab, NULL);
  struct obj *again = sl_slab_calloc(&slab);
  assert_ptr_equal(again, o[3]);
  assert_int_equal(again->bytes[0], 0); /* zeroed again */
  for (int i = 0; i <= SL_SLAB_PER_BLOCK; i++) sl_slab_free(&slab, o[i]);
  sl_slab_drain(&slab);
  assert_null(slab.free);
  /* Usable again after a drain. */
  struct obj *p = sl_slab_calloc(&slab);
  assert_non_null(p);
  sl_slab_free(&slab, p);
  sl_slab_drain(&slab);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_zeroed_reused_packed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
