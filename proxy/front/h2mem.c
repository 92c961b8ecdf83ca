/*
 * sluice — nghttp2's allocator. See h2mem.h.
 *
 * Each block carries a 16-byte header with its size class (so free and
 * realloc need no size argument). Classes are powers of two from 64 to
 * 8192 bytes plus 3072, larger blocks go straight to malloc. The 3072
 * class is there for the session struct itself (2,928 bytes in nghttp2
 * 1.52, measured): in the 4096 class every awake session, a WebSocket
 * tunnel's among them, wasted 1,168 bytes. Each thread keeps at
 * most CACHE_PER_CLASS free blocks per class (core/freelist.h, pools
 * "nghttp2_64" .. "nghttp2_8192"); beyond that they go back to malloc, so
 * a burst does not pin memory for ever.
 */
#include <malloc.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/freelist.h"
#include "front/h2mem.h"

#define N_CLASSES 9
#define BIG_CLASS 0xff
#define CACHE_PER_CLASS SL_H2MEM_CACHE_PER_CLASS

struct block {
  union {
    struct block *next; /* while free */
    struct {
      uint8_t cls;      /* size class, or BIG_CLASS */
      size_t size;      /* BIG_CLASS: the requested size */
    } h;
  };
  _Alignas(16) unsigned char data[];
};

static const size_t class_sizes[N_CLASSES] = {64, 128, 256, 512, 1024, 2048, 3072, 4096, 8192};

#define CLASS(n) {.name = "nghttp2_" #n, .max_cached = CACHE_PER_CLASS}
static struct sl_freelist_class classes[N_CLASSES] = {
    CLASS(64),   CLASS(128),  CLASS(256),  CLASS(512), CLASS(1024),
    CLASS(2048), CLASS(3072), CLASS(4096), CLASS(8192)};
#undef CLASS
static __thread struct sl_freelist free_lists[N_CLASSES] = {
    SL_FREELIST_INIT(&classes[0]), SL_FREELIST_INIT(&classes[1]),
    SL_FREELIST_INIT(&classes[2]), SL_FREELIST_INIT(&classes[3]),
    SL_FREELIST_INIT(&classes[4]), SL_FREELIST_INIT(&classes[5]),
    SL_FREELIST_INIT(&classes[6]), SL_FREELIST_INIT(&classes[7]),
    SL_FREELIST_INIT(&classes[8])};

/* Set while sl_h2mem_session_release deletes a session: its blocks skip
 * the caches. */
static __thread bool release_direct;
/* The heap trim after releases (sl_h2mem_session_release). */
static __thread ev_timer trim_timer;
static __thread bool trim_timer_ready;

static int class_of(size_t n) {
  for (int c = 0; c < N_CLASSES; c++)
    if (n <= class_sizes[c]) return c;
  return -1;
}

static size_t class_size(int c) { return class_sizes[c]; }

static void *h2mem_malloc(size_t size, void *ud) {
  (void)ud;
  int c = class_of(size);
  struct block *b;
  if (c < 0) {
    b = malloc(sizeof(*b) + size);
    if (!b) return NULL;
    b->h.cls = BIG_CLASS;
    b->h.size = size;
    return b->data;
  }
  b = sl_freelist_get(&free_lists[c]);
  if (!b) {
    b = malloc(sizeof(*b) + class_size(c));
    if (!b) return NULL;
  }
  b->h.cls = (uint8_t)c;
  b->h.size = 0;
  return b->data;
}

static struct block *block_of(void *p) {
  return (struct block *)((unsigned char *)p - offsetof(struct block, data));
}

static void h2mem_free(void *p, void *ud) {
  (void)ud;
  if (!p) return;
  struct block *b = block_of(p);
  int c = b->h.cls;
  if (c == BIG_CLASS) {
    free(b);
    return;
  }
  if (release_direct)
    sl_freelist_destroy(&free_lists[c], b);
  else
    sl_freelist_put(&free_lists[c], b); /* links through b->next */
}

static void *h2mem_calloc(size_t nmemb, size_t size, void *ud) {
  if (size && nmemb > SIZE_MAX / size) return NULL;
  void *p = h2mem_malloc(nmemb * size, ud);
  if (p) memset(p, 0, nmemb * size);
  return p;
}

static void *h2mem_realloc(void *p, size_t size, void *ud) {
  if (!p) return h2mem_malloc(size, ud);
  struct block *b = block_of(p);
  size_t have = b->h.cls == BIG_CLASS ? b->h.size : class_size(b->h.cls);
  if (b->h.cls != BIG_CLASS && size <= have) return p;
  void *n = h2mem_malloc(size, ud);
  if (!n) return NULL;
  memcpy(n, p, have < size ? have : size);
  h2mem_free(p, ud);
  return n;
}

nghttp2_mem *sl_h2mem(void) {
  static nghttp2_mem mem = {NULL, h2mem_malloc, h2mem_free, h2mem_calloc, h2mem_realloc};
  return &mem;
}

unsigned sl_h2mem_cached(size_t size) {
  int c = class_of(size);
  return c < 0 ? 0 : free_lists[c].n_cached;
}

static void trim_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)w;
  (void)revents;
  malloc_trim(0);
}

void sl_h2mem_session_release(nghttp2_session *session, struct ev_loop *loop) {
  release_direct = true;
  nghttp2_session_del(session);
  release_direct = false;
  if (!trim_timer_ready) {
    ev_timer_init(&trim_timer, trim_cb, SL_H2MEM_TRIM_MS / 1000.0, 0.);
    trim_timer_ready = true;
  }
  /* One trim per window, for every release in it: not re-armed while it
   * runs, so a steady trickle of sleeps still trims once a window. */
  if (!ev_is_active(&trim_timer)) ev_timer_start(loop, &trim_timer);
}

void sl_h2mem_drain(void) {
  /* The trim timer belongs to this thread's loop, which is going away. */
  trim_timer_ready = false;
  for (int c = 0; c < N_CLASSES; c++) sl_freelist_drain(&free_lists[c]);
}
