/*
 * sluice — bounded byte pipes built from recycled 16 KiB chunks.
 *
 * A pipe carries one direction of one exchange (a request body towards the
 * upstream, a response body or framed output towards a client). Chunks come
 * from a thread-local freelist (h2o's buffer bins, HAProxy's per-thread pool
 * caches): steady state costs no malloc, and an empty pipe holds no memory,
 * so an idle connection or tunnel pins nothing.
 *
 * Pipes are single-threaded: a pipe is only touched by the worker that owns
 * the connection. `cap` is the back-pressure threshold: producers stop
 * reading their source once sl_pipe_full() is true; one read may overshoot
 * it by at most one read's worth, so memory stays bounded by cap + 16 KiB.
 */
#ifndef SLUICE_PROXY_PIPE_H
#define SLUICE_PROXY_PIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#define SL_CHUNK_SIZE 16384

struct sl_chunk {
  struct sl_chunk *next;
  uint32_t start, end; /* readable bytes are data[start..end) */
  char data[SL_CHUNK_SIZE];
};

struct sl_pipe {
  struct sl_chunk *head, *tail;
  size_t len; /* readable bytes */
  size_t cap; /* back-pressure threshold */
};

static inline void sl_pipe_init(struct sl_pipe *p, size_t cap) {
  p->head = p->tail = NULL;
  p->len = 0;
  p->cap = cap;
}
static inline bool sl_pipe_full(const struct sl_pipe *p) { return p->len >= p->cap; }
static inline bool sl_pipe_empty(const struct sl_pipe *p) { return p->len == 0; }

struct sl_chunk *sl_chunk_get(void);  /* NULL on OOM */
void sl_chunk_put(struct sl_chunk *c);
/* Frees the calling thread's freelist (worker exit, tests). */
void sl_chunk_cache_drain(void);

/* Appends |n| bytes. Returns 0, or -1 on OOM (the exchange must then fail). */
int sl_pipe_write(struct sl_pipe *p, const void *data, size_t n);
/* Appends a string literal (its length computed by the compiler). */
#define SL_PIPE_LIT(p, lit) sl_pipe_write((p), "" lit, sizeof(lit) - 1)
/* Appends a NUL-terminated string. */
static inline int sl_pipe_puts(struct sl_pipe *p, const char *str) {
  return sl_pipe_write(p, str, strlen(str));
}
/* Appends |v| in decimal, or in hex with |hex| (chunk sizes): the hot
 * paths build heads without printf (a fifth of the instructions per
 * request when they used it). */
int sl_pipe_put_uint(struct sl_pipe *p, uint64_t v, bool hex);
/* Appends "name: value\r\n". */
static inline int sl_pipe_put_field(struct sl_pipe *p, const char *name, size_t nlen,
                                    const char *value, size_t vlen) {
  int rv = sl_pipe_write(p, name, nlen);
  rv |= sl_pipe_write(p, ": ", 2);
  rv |= sl_pipe_write(p, value, vlen);
  rv |= sl_pipe_write(p, "\r\n", 2);
  return rv;
}
/* printf-style append for small heads (< 1 KiB each call). */
int sl_pipe_printf(struct sl_pipe *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Returns the writable tail span of at least |min| bytes (allocating a chunk
 * if needed) for a read(2) straight into the pipe; commit with
 * sl_pipe_commit(). NULL on OOM. */
char *sl_pipe_reserve(struct sl_pipe *p, size_t min, size_t *avail);
void sl_pipe_commit(struct sl_pipe *p, size_t n);
/* Fills up to |max| iovecs with readable spans; returns the count. */
int sl_pipe_iov(const struct sl_pipe *p, struct iovec *iov, int max);
/* Copies up to |n| bytes out and consumes them; returns bytes copied. */
size_t sl_pipe_read(struct sl_pipe *p, void *dst, size_t n);
/* Drops |n| readable bytes (n <= len). */
void sl_pipe_consume(struct sl_pipe *p, size_t n);
/* Moves all of |src| to the end of |dst| without copying bytes. */
void sl_pipe_splice(struct sl_pipe *dst, struct sl_pipe *src);
void sl_pipe_clear(struct sl_pipe *p);
int sl_pipe_move_slow(struct sl_pipe *dst, struct sl_pipe *src, size_t n);
/* Moves the first |n| bytes of |src| to the end of |dst| (all of it when
 * n >= src->len): whole chunks without copying, the part of a chunk that
 * splits copied (paced transfers, core/pace.h). Returns 0, or -1 on OOM
 * (then nothing of the split chunk moved; the exchange must fail). */
static inline int sl_pipe_move(struct sl_pipe *dst, struct sl_pipe *src, size_t n) {
  if (n >= src->len) {
    sl_pipe_splice(dst, src);
    return 0;
  }
  return sl_pipe_move_slow(dst, src, n);
}

#endif
