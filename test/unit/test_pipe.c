/*
 * Unit tests for proxy/pipe.c: bounded chunk pipes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/pipe.h"

static void fill_pattern(char *buf, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) buf[i] = (char)((i * 31 + seed) & 0xff);
}

/* Writes of every size from 1 byte to several chunks come back out
 * byte-exact through iov + consume, and an emptied pipe holds no chunk. */
static void test_write_read_every_split(void **state) {
  (void)state;
  static char in[3 * SL_CHUNK_SIZE + 123], out[sizeof(in)];
  fill_pattern(in, sizeof(in), 7);
  size_t splits[] = {1, 2, 7, 100, 4095, 4096, SL_CHUNK_SIZE - 1, SL_CHUNK_SIZE,
                     SL_CHUNK_SIZE + 1, sizeof(in)};
  for (size_t k = 0; k < sizeof(splits) / sizeof(splits[0]); k++) {
    struct sl_pipe p;
    sl_pipe_init(&p, 64 * 1024);
    for (size_t off = 0; off < sizeof(in); off += splits[k]) {
      size_t n = sizeof(in) - off < splits[k] ? sizeof(in) - off : splits[k];
      assert_int_equal(sl_pipe_write(&p, in + off, n), 0);
    }
    assert_int_equal(p.len, sizeof(in));
    size_t got = 0;
    while (!sl_pipe_empty(&p)) {
      struct iovec iov[4];
      int n = sl_pipe_iov(&p, iov, 4);
      assert_true(n >= 1);
      /* Consume an odd amount to cross chunk boundaries. */
      size_t take = iov[0].iov_len > 1000 ? 1000 : iov[0].iov_len;
      memcpy(out + got, iov[0].iov_base, take);
      got += take;
      sl_pipe_consume(&p, take);
    }
    assert_int_equal(got, sizeof(in));
    assert_memory_equal(in, out, sizeof(in));
    assert_null(p.head);
    assert_null(p.tail);
  }
  sl_chunk_cache_drain();
}

static void test_full_and_cap(void **state) {
  (void)state;
  struct sl_pipe p;
  sl_pipe_init(&p, 100);
  char buf[99] = {0};
  assert_false(sl_pipe_full(&p));
  assert_int_equal(sl_pipe_write(&p, buf, sizeof(buf)), 0);
  assert_false(sl_pipe_full(&p));
  assert_int_equal(sl_pipe_write(&p, buf, 1), 0);
  assert_true(sl_pipe_full(&p));
  sl_pipe_consume(&p, 1);
  assert_false(sl_pipe_full(&p));
  sl_pipe_clear(&p);
  assert_true(sl_pipe_empty(&p));
  assert_null(p.head);
  sl_chunk_cache_drain();
}

/* Splice moves chunks without copying: the bytes keep their addresses. */
static void test_splice_moves_without_copy(void **state) {
  (void)state;
  struct sl_pipe a, b;
  sl_pipe_init(&a, 1 << 20);
  sl_pipe_init(&b, 1 << 20);
  assert_int_equal(sl_pipe_write(&a, "hello ", 6), 0);
  assert_int_equal(sl_pipe_write(&b, "world", 5), 0);
  const char *where = b.head->data + b.head->start;
  sl_pipe_splice(&a, &b);
  assert_true(sl_pipe_empty(&b));
  assert_null(b.head);
  assert_int_equal(a.len, 11);
  struct iovec iov[4];
  int n = sl_pipe_iov(&a, iov, 4);
  assert_int_equal(n, 2);
  assert_ptr_equal(iov[1].iov_base, where);
  char out[12] = {0};
  assert_int_equal(sl_pipe_read(&a, out, sizeof(out)), 11);
  assert_string_equal(out, "hello world");
  /* Appending after a splice lands after the spliced bytes. */
  sl_pipe_splice(&a, &b); /* empty source: no-op */
  assert_int_equal(sl_pipe_write(&a, "!", 1), 0);
  assert_int_equal(sl_pipe_read(&a, out, sizeof(out)), 1);
  assert_int_equal(out[0], '!');
  sl_pipe_clear(&a);
  sl_chunk_cache_drain();
}

static void test_reserve_commit_and_printf(void **state) {
  (void)state;
  struct sl_pipe p;
  sl_pipe_init(&p, 1 << 20);
  size_t avail;
  char *dst = sl_pipe_reserve(&p, 10, &avail);
  assert_non_null(dst);
  assert_true(avail >= 10);
  memcpy(dst, "abc", 3);
  sl_pipe_commit(&p, 3);
  assert_int_equal(sl_pipe_printf(&p, "%zx\r\n", (size_t)255), 0);
  char out[16] = {0};
  assert_int_equal(sl_pipe_read(&p, out, sizeof(out)), 7);
  assert_string_equal(out, "abcff\r\n");
  /* A reservation larger than what is left in the tail opens a chunk. */
  char big[SL_CHUNK_SIZE - 2];
  memset(big, 'x', sizeof(big));
  assert_int_equal(sl_pipe_write(&p, big, sizeof(big)), 0);
  dst = sl_pipe_reserve(&p, 4096, &avail);
  assert_non_null(dst);
  assert_true(avail >= 4096);
  sl_pipe_clear(&p);
  sl_chunk_cache_drain();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_write_read_every_split),
      cmocka_unit_test(test_full_and_cap),
      cmocka_unit_test(test_splice_moves_without_copy),
      cmocka_unit_test(test_reserve_commit_and_printf),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
