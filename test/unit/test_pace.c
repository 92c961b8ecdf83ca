/*
 * Unit tests for proxy/core/pace.c: the byte bucket (pure arithmetic) and
 * sl_pipe_move, which paced transfers use to move part of a pipe.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/pace.h"
#include "core/pipe.h"

#define MS 1000000ull
#define SEC 1000000000ull
#define T0 (1000 * SEC) /* any start: the clock is monotonic, not zero-based */

static void test_burst(void **state) {
  (void)state;
  assert_int_equal(sl_byte_bucket_burst(1), 1);
  assert_int_equal(sl_byte_bucket_burst(100), 100); /* one second's worth */
  assert_int_equal(sl_byte_bucket_burst(16384), 16384);
  assert_int_equal(sl_byte_bucket_burst(128 * 1024), 16384); /* one chunk */
  assert_int_equal(sl_byte_bucket_burst(800 * 1024), 16384);
  assert_int_equal(sl_byte_bucket_burst(50ull << 20), (50ull << 20) / 50); /* 20 ms */
}

/* Starts full; earns |rate| a second, never more than the burst; a charge
 * beyond what is there is debt that later time pays first. */
static void test_refill_cap_and_debt(void **state) {
  (void)state;
  struct sl_byte_bucket b;
  sl_byte_bucket_init(&b, 128 * 1024, T0);
  assert_int_equal(sl_byte_bucket_avail(&b, T0), 16384);
  sl_byte_bucket_take(&b, T0, 16384);
  assert_int_equal(sl_byte_bucket_avail(&b, T0), 0);
  /* 1/8 s earns 16 KiB: exactly, not a byte more. */
  assert_int_equal(sl_byte_bucket_avail(&b, T0 + SEC / 8), 16384);
  assert_int_equal(sl_byte_bucket_avail(&b, T0 + SEC / 8 - 1), 16383);
  /* Idle time is not saved up beyond the burst. */
  assert_int_equal(sl_byte_bucket_avail(&b, T0 + 60 * SEC), 16384);
  sl_byte_bucket_take(&b, T0 + 60 * SEC, 16384 + 131072); /* one second of debt */
  assert_int_equal(sl_byte_bucket_avail(&b, T0 + 60 * SEC + SEC - 1), 0);
  assert_int_equal(sl_byte_bucket_avail(&b, T0 + 61 * SEC), 0);
  assert_int_equal(sl_byte_bucket_avail(&b, T0 + 61 * SEC + SEC / 128), 1024);
}

/* wait_ns says exactly when |n| bytes exist: not one nanosecond before. */
static void test_wait(void **state) {
  (void)state;
  struct sl_byte_bucket b;
  sl_byte_bucket_init(&b, 1000, T0); /* 1 byte per ms, burst 1000 */
  assert_int_equal(sl_byte_bucket_wait_ns(&b, T0, 1000), 0);
  sl_byte_bucket_take(&b, T0, 1000);
  assert_int_equal(sl_byte_bucket_wait_ns(&b, T0, 250), 250 * MS);
  assert_int_equal(sl_byte_bucket_avail(&b, T0 + 250 * MS - 1), 249);
  assert_int_equal(sl_byte_bucket_avail(&b, T0 + 250 * MS), 250);
  /* A full bucket waits for nothing, however long it was idle. */
  assert_int_equal(sl_byte_bucket_wait_ns(&b, T0 + 3600 * SEC, 1000), 0);
  /* 3 bytes a second: a byte costs 333333334 ns (rounded up, against the
   * client), so three of them take at least a second. */
  sl_byte_bucket_init(&b, 3, T0);
  sl_byte_bucket_take(&b, T0, 3);
  assert_int_equal(sl_byte_bucket_wait_ns(&b, T0, 3), SEC);
  assert_int_equal(sl_byte_bucket_avail(&b, T0 + SEC - 1), 2);
}

/* Whatever the pattern of charges, what passed by time t is at most
 * burst + rate * t: the bound the integration tests rely on. Charges of
 * odd sizes, taken whenever available. */
static void test_never_faster_than_the_rate(void **state) {
  (void)state;
  static const uint64_t rates[] = {1, 7, 1000, 128 * 1024, 3 << 20, 1ull << 40};
  for (size_t k = 0; k < sizeof(rates) / sizeof(rates[0]); k++) {
    struct sl_byte_bucket b;
    uint64_t r = rates[k];
    sl_byte_bucket_init(&b, r, T0);
    unsigned __int128 passed = 0;
    uint64_t now = T0, x = 88172645463325252ull;
    for (int i = 0; i < 20000; i++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      now += x % (3 * MS);
      uint64_t a = sl_byte_bucket_avail(&b, now);
      uint64_t take = a ? 1 + x % a : 0;
      sl_byte_bucket_take(&b, now, take);
      passed += take;
      unsigned __int128 bound = b.burst + (unsigned __int128)r * (now - T0) / SEC;
      assert_true(passed <= bound);
    }
    /* ... and not much slower either: taking all whenever there is some
     * keeps within a burst of the rate (over the run's ~30 s). */
    unsigned __int128 ideal = (unsigned __int128)r * (now - T0) / SEC;
    if (r >= 1000) assert_true(passed + 2 * b.burst + ideal / 100 >= ideal);
  }
}

static void fill(char *buf, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) buf[i] = (char)((i * 131 + seed) & 0xff);
}

/* sl_pipe_move of every length moves exactly those bytes, in order, keeps
 * the rest, and both pipes' accounting stays right. */
static void test_pipe_move(void **state) {
  (void)state;
  static char in[3 * SL_CHUNK_SIZE + 77], out[sizeof(in) + 5];
  fill(in, sizeof(in), 3);
  size_t lens[] = {0, 1, 100, SL_CHUNK_SIZE - 1, SL_CHUNK_SIZE, SL_CHUNK_SIZE + 1,
                   2 * SL_CHUNK_SIZE + 5, sizeof(in) - 1, sizeof(in), sizeof(in) + 9};
  for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
    struct sl_pipe src, dst;
    sl_pipe_init(&src, 64 * 1024);
    sl_pipe_init(&dst, 64 * 1024);
    assert_int_equal(sl_pipe_write(&dst, "head:", 5), 0);
    /* Odd writes so chunks are not all full. */
    for (size_t off = 0; off < sizeof(in); off += 5000) {
      size_t n = sizeof(in) - off < 5000 ? sizeof(in) - off : 5000;
      assert_int_equal(sl_pipe_write(&src, in + off, n), 0);
    }
    size_t want = lens[k] < sizeof(in) ? lens[k] : sizeof(in);
    assert_int_equal(sl_pipe_move(&dst, &src, lens[k]), 0);
    assert_int_equal(dst.len, 5 + want);
    assert_int_equal(src.len, sizeof(in) - want);
    assert_int_equal(sl_pipe_read(&dst, out, sizeof(out)), 5 + want);
    assert_memory_equal(out, "head:", 5);
    assert_memory_equal(out + 5, in, want);
    assert_true(sl_pipe_empty(&dst) && dst.head == NULL);
    /* The rest follows on, and the source can be written to again. */
    assert_int_equal(sl_pipe_write(&src, "!", 1), 0);
    assert_int_equal(sl_pipe_read(&src, out, sizeof(out)), sizeof(in) - want + 1);
    assert_memory_equal(out, in + want, sizeof(in) - want);
    assert_int_equal(out[sizeof(in) - want], '!');
    assert_null(src.head);
    assert_null(src.tail);
  }
  sl_chunk_cache_drain();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_burst),
      cmocka_unit_test(test_refill_cap_and_debt),
      cmocka_unit_test(test_wait),
      cmocka_unit_test(test_never_faster_than_the_rate),
      cmocka_unit_test(test_pipe_move),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
