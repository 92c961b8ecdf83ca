/*
 * sluice — bump allocator freed in one go (nginx ngx_pool, h2o mem pool).
 *
 * Used for per-request data on the hot path and for configuration
 * snapshots. Not thread-safe: one owner at a time.
 *
 * Out-of-memory: sl_arena_alloc() returns NULL; callers on the request path
 * fail the request (503), callers at start-up/config load use
 * sl_arena_xalloc(), which aborts.
 */
#ifndef SLUICE_ARENA_H
#define SLUICE_ARENA_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct sl_arena_chunk {
  struct sl_arena_chunk *next;
  size_t size, used;
  _Alignas(16) unsigned char data[];
};

struct sl_arena {
  struct sl_arena_chunk *head;
  size_t chunk_size; /* default size of a new chunk's data */
};

static inline void sl_arena_init(struct sl_arena *a, size_t chunk_size) {
  a->head = NULL;
  a->chunk_size = chunk_size ? chunk_size : 4096;
}

/* Releases every chunk but the first (kept for reuse), so an arena embedded
 * in a recycled object costs no malloc in steady state. */
static inline void sl_arena_reset(struct sl_arena *a) {
  struct sl_arena_chunk *c = a->head;
  if (!c) return;
  while (c->next) {
    struct sl_arena_chunk *n = c->next;
    free(c);
    c = n;
  }
  c->used = 0;
  a->head = c;
}

static inline void sl_arena_free(struct sl_arena *a) {
  struct sl_arena_chunk *c = a->head;
  while (c) {
    struct sl_arena_chunk *n = c->next;
    free(c);
    c = n;
  }
  a->head = NULL;
}

/* Returns |n| bytes aligned to 16, or NULL when malloc fails. */
static inline void *sl_arena_alloc(struct sl_arena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  struct sl_arena_chunk *c = a->head;
  if (!c || c->size - c->used < n) {
    size_t sz = n > a->chunk_size ? n : a->chunk_size;
    struct sl_arena_chunk *nc = malloc(sizeof(*nc) + sz);
    if (!nc) return NULL;
    nc->size = sz;
    nc->used = 0;
    /* A big one-off allocation goes behind the current chunk so the
     * current chunk's free space is not wasted. */
    if (c && n > a->chunk_size) {
      nc->next = c->next;
      c->next = nc;
    } else {
      nc->next = c;
      a->head = nc;
    }
    c = nc;
  }
  void *p = c->data + c->used;
  c->used += n;
  return p;
}

/* For start-up and config load only: aborts on out-of-memory. */
static inline void *sl_arena_xalloc(struct sl_arena *a, size_t n) {
  void *p = sl_arena_alloc(a, n);
  if (!p) abort();
  return p;
}

/* |n| zeroed objects of |size| bytes (config load: aborts on out-of-memory
 * or overflow). */
static inline void *sl_arena_xcalloc(struct sl_arena *a, size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) abort();
  void *p = sl_arena_xalloc(a, n * size);
  memset(p, 0, n * size);
  return p;
}

static inline char *sl_arena_strndup(struct sl_arena *a, const char *s, size_t n) {
  char *p = sl_arena_alloc(a, n + 1);
  if (!p) return NULL;
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

static inline char *sl_arena_xstrdup(struct sl_arena *a, const char *s) {
  char *p = sl_arena_strndup(a, s, strlen(s));
  if (!p) abort();
  return p;
}

#endif
