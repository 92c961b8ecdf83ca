/*
 * Unit tests for proxy/h2mem.c: nghttp2's per-thread size-class allocator.
 * AddressSanitizer checks that every block is writable over its size and
 * that nothing leaks after sl_h2mem_drain().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "front/h2mem.h"

static void test_sizes_and_reuse(void **state) {
  (void)state;
  nghttp2_mem *m = sl_h2mem();
  size_t sizes[] = {0, 1, 63, 64, 65, 200, 1024, 4096, 8192, 8193, 100000};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    unsigned char *p = m->malloc(sizes[i], m->mem_user_data);
    assert_non_null(p);
    memset(p, 0xab, sizes[i]);
    m->free(p, m->mem_user_data);
  }
  /* A freed block of a class comes back for the next request of it. */
  void *a = m->malloc(100, NULL);
  m->free(a, NULL);
  void *b = m->malloc(120, NULL);
  assert_ptr_equal(a, b);
  m->free(b, NULL);
  m->free(NULL, NULL);
  sl_h2mem_drain();
}

static void test_calloc_and_realloc(void **state) {
  (void)state;
  nghttp2_mem *m = sl_h2mem();
  unsigned char *p = m->calloc(10, 30, NULL);
  for (int i = 0; i < 300; i++) assert_int_equal(p[i], 0);
  memset(p, 7, 300);
  /* Growing across classes keeps the contents. */
  unsigned char *q = m->realloc(p, 5000, NULL);
  for (int i = 0; i < 300; i++) assert_int_equal(q[i], 7);
  memset(q, 9, 5000);
  /* Into a big block and back down. */
  unsigned char *r = m->realloc(q, 20000, NULL);
  for (int i = 0; i < 5000; i++) assert_int_equal(r[i], 9);
  unsigned char *t = m->realloc(r, 10, NULL);
  assert_int_equal(t[0], 9);
  m->free(t, NULL);
  assert_null(m->calloc(SIZE_MAX / 2, 4, NULL)); /* overflow refused */
  sl_h2mem_drain();
}

/* Many blocks in flight at once (hundreds of streams), then all freed:
 * the cache keeps exactly its bound per class and gives the excess back to
 * malloc (ASan sees no leak after the drain). */
static void test_many_in_flight(void **state) {
  (void)state;
  nghttp2_mem *m = sl_h2mem();
  enum { N = 5000, BOUND = SL_H2MEM_CACHE_PER_CLASS };
  static void *blocks[N];
  sl_h2mem_drain();
  assert_int_equal(sl_h2mem_cached(100), 0);
  for (int i = 0; i < N; i++) {
    blocks[i] = m->malloc(65 + (size_t)(i % 60), NULL); /* all in the 128-byte class */
    assert_non_null(blocks[i]);
  }
  for (int i = 0; i < N; i++) {
    m->free(blocks[i], NULL);
    /* Every free is cached until the bound, none after it. */
    assert_int_equal(sl_h2mem_cached(100), i + 1 < BOUND ? i + 1 : BOUND);
  }
  assert_int_equal(sl_h2mem_cached(100), BOUND);
  assert_int_equal(sl_h2mem_cached(64), 0); /* other classes untouched */
  /* The cached ones are handed out again before malloc is asked. */
  for (int i = 0; i < BOUND; i++) blocks[i] = m->malloc(128, NULL);
  assert_int_equal(sl_h2mem_cached(100), 0);
  for (int i = 0; i < BOUND; i++) m->free(blocks[i], NULL);
  assert_int_equal(sl_h2mem_cached(100), BOUND);
  /* Blocks above the largest class never sit in a cache. */
  void *big = m->malloc(100000, NULL);
  m->free(big, NULL);
  assert_int_equal(sl_h2mem_cached(100000), 0);
  sl_h2mem_drain();
  assert_int_equal(sl_h2mem_cached(100), 0);
}

/* Frame buffer slots: a block between 8 KiB and 20 KiB (nghttp2's
 * 16,394-byte outbound frame buffer) is page-aligned, the session's first
 * one is tracked (sl_h2mem_for) until freed, its pages can be given back
 * while it is live (its bytes then read as zeros), a freed slot is
 * reused, and class blocks are never page-aligned (which would make them
 * read as slots). */
static void test_frame_buffer_slots(void **state) {
  (void)state;
  void *fb = NULL;
  nghttp2_mem m = sl_h2mem_for(&fb);
  unsigned char *p = m.malloc(16394, m.mem_user_data);
  assert_non_null(p);
  assert_int_equal((uintptr_t)p % 4096, 0);
  assert_ptr_equal(fb, p);
  unsigned char *extra = m.malloc(16394, m.mem_user_data); /* a CONTINUATION chunk */
  assert_ptr_equal(fb, p);                                  /* still the first */
  memset(p, 0xab, 16394);
  sl_h2mem_release_pages(p);
  for (size_t i = 0; i < 16394; i += 512) assert_int_equal(p[i], 0);
  p[0] = 1; /* usable again: a zeroed page faults in */
  m.free(extra, m.mem_user_data);
  assert_ptr_equal(fb, p);
  /* Growing within the slot keeps it; beyond, the block moves out of the
   * arena with its contents and is no longer the frame buffer. */
  assert_ptr_equal(m.realloc(p, 20000, m.mem_user_data), p);
  memset(p, 5, 20000);
  unsigned char *q = m.realloc(p, 30000, m.mem_user_data);
  assert_non_null(q);
  assert_int_not_equal((uintptr_t)q % 4096, 0);
  for (size_t i = 0; i < 20000; i += 100) assert_int_equal(q[i], 5);
  assert_null(fb);
  m.free(q, m.mem_user_data);
  /* A freed slot comes back for the next session. */
  unsigned char *r = m.malloc(10000, m.mem_user_data);
  assert_ptr_equal(fb, r);
  m.free(r, m.mem_user_data);
  assert_null(fb);
  unsigned char *r2 = m.malloc(16394, NULL);
  assert_ptr_equal(r2, r);
  m.free(r2, NULL);
  /* No class block is page-aligned, however malloc lays them out. */
  enum { N = 3000 };
  static void *blocks[N];
  for (int i = 0; i < N; i++) {
    blocks[i] = m.malloc(4096 + (size_t)(i % 3) * 1000, NULL);
    assert_int_not_equal((uintptr_t)blocks[i] % 4096, 0);
  }
  for (int i = 0; i < N; i++) m.free(blocks[i], NULL);
  sl_h2mem_drain();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sizes_and_reuse),
      cmocka_unit_test(test_calloc_and_realloc),
      cmocka_unit_test(test_many_in_flight),
      cmocka_unit_test(test_frame_buffer_slots),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
