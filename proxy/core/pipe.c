/*
 * sluice — bounded byte pipes. See pipe.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/freelist.h"
#include "core/pipe.h"

/* Per-thread freelist. 64 chunks (1 MiB) per worker are kept for reuse;
 * beyond that chunks go back to malloc so a burst does not pin memory. */
#define SL_CHUNK_CACHE_MAX 64

static struct sl_freelist_class chunk_class = {.name = "pipe_chunk",
                                               .max_cached = SL_CHUNK_CACHE_MAX};
static __thread struct sl_freelist chunk_cache = SL_FREELIST_INIT(&chunk_class);

struct sl_chunk *sl_chunk_get(void) {
  struct sl_chunk *c = sl_freelist_get(&chunk_cache);
  if (!c) {
    c = malloc(sizeof(*c));
    if (!c) return NULL;
  }
  c->next = NULL;
  c->start = c->end = 0;
  return c;
}

void sl_chunk_put(struct sl_chunk *c) { sl_freelist_put(&chunk_cache, c); }

void sl_chunk_cache_drain(void) { sl_freelist_drain(&chunk_cache); }

char *sl_pipe_reserve(struct sl_pipe *p, size_t min, size_t *avail) {
  if (min > SL_CHUNK_SIZE) min = SL_CHUNK_SIZE;
  struct sl_chunk *t = p->tail;
  if (!t || SL_CHUNK_SIZE - t->end < min) {
    struct sl_chunk *c = sl_chunk_get();
    if (!c) return NULL;
    if (t)
      t->next = c;
    else
      p->head = c;
    p->tail = t = c;
  }
  *avail = SL_CHUNK_SIZE - t->end;
  return t->data + t->end;
}

void sl_pipe_commit(struct sl_pipe *p, size_t n) {
  p->tail->end += (uint32_t)n;
  p->len += n;
}

int sl_pipe_write(struct sl_pipe *p, const void *data, size_t n) {
  const char *src = data;
  while (n > 0) {
    size_t avail;
    char *dst = sl_pipe_reserve(p, 1, &avail);
    if (!dst) return -1; /* the caller fails the exchange; a partial append is never delivered */
    size_t take = avail < n ? avail : n;
    memcpy(dst, src, take);
    sl_pipe_commit(p, take);
    src += take;
    n -= take;
  }
  return 0;
}

int sl_pipe_printf(struct sl_pipe *p, const char *fmt, ...) {
  char tmp[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof(tmp)) return -1;
  return sl_pipe_write(p, tmp, (size_t)n);
}

int sl_pipe_iov(const struct sl_pipe *p, struct iovec *iov, int max) {
  int n = 0;
  for (struct sl_chunk *c = p->head; c && n < max; c = c->next) {
    if (c->end == c->start) continue;
    iov[n].iov_base = c->data + c->start;
    iov[n].iov_len = c->end - c->start;
    n++;
  }
  return n;
}

void sl_pipe_consume(struct sl_pipe *p, size_t n) {
  while (n > 0 && p->head) {
    struct sl_chunk *c = p->head;
    size_t have = c->end - c->start;
    if (n < have) {
      c->start += (uint32_t)n;
      p->len -= n;
      return;
    }
    n -= have;
    p->len -= have;
    p->head = c->next;
    if (!p->head) p->tail = NULL;
    sl_chunk_put(c);
  }
  /* Drop fully consumed chunks (including an empty head) eagerly so an
   * idle pipe holds no memory. */
  while (p->head && p->head->start == p->head->end) {
    struct sl_chunk *c = p->head;
    p->head = c->next;
    if (!p->head) p->tail = NULL;
    sl_chunk_put(c);
  }
}

size_t sl_pipe_read(struct sl_pipe *p, void *dst, size_t n) {
  char *out = dst;
  size_t done = 0;
  while (done < n && p->head) {
    struct sl_chunk *c = p->head;
    size_t have = c->end - c->start;
    size_t take = have < n - done ? have : n - done;
    memcpy(out + done, c->data + c->start, take);
    done += take;
    sl_pipe_consume(p, take);
  }
  return done;
}

void sl_pipe_splice(struct sl_pipe *dst, struct sl_pipe *src) {
  if (!src->head) return;
  if (dst->tail)
    dst->tail->next = src->head;
  else
    dst->head = src->head;
  dst->tail = src->tail;
  dst->len += src->len;
  src->head = src->tail = NULL;
  src->len = 0;
}

int sl_pipe_move_slow(struct sl_pipe *dst, struct sl_pipe *src, size_t n) {
  /* The chunks that move whole are cut off as one pipe and spliced. */
  struct sl_pipe whole = {.head = src->head};
  struct sl_chunk *c = src->head;
  while (c && c->end - c->start <= n) {
    n -= c->end - c->start;
    whole.len += c->end - c->start;
    whole.tail = c;
    c = c->next;
  }
  if (whole.tail) {
    whole.tail->next = NULL;
    src->head = c;
    if (!c) src->tail = NULL;
    src->len -= whole.len;
    sl_pipe_splice(dst, &whole);
  }
  /* The chunk that splits: its first |n| bytes are copied. */
  if (!n || !c) return 0;
  if (sl_pipe_write(dst, c->data + c->start, n) != 0) return -1;
  sl_pipe_consume(src, n);
  return 0;
}

void sl_pipe_clear(struct sl_pipe *p) {
  while (p->head) {
    struct sl_chunk *c = p->head;
    p->head = c->next;
    sl_chunk_put(c);
  }
  p->tail = NULL;
  p->len = 0;
}

int sl_pipe_put_uint(struct sl_pipe *p, uint64_t v, bool hex) {
  static const char digits[] = "0123456789abcdef";
  char buf[24];
  size_t i = sizeof(buf);
  unsigned base = hex ? 16 : 10;
  do {
    buf[--i] = digits[v % base];
    v /= base;
  } while (v);
  return sl_pipe_write(p, buf + i, sizeof(buf) - i);
}
