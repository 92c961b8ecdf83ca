/*
 * sluice — nghttp2's allocator. See h2mem.h.
 *
 * Each block carries a 16-byte header with its size class (so free and
 * realloc need no size argument). Classes are powers of two from 64 to
 * 8192 bytes plus 3072. The 3072 class is there for the session struct
 * itself (2,928 bytes in nghttp2 1.52, measured): in the 4096 class every
 * awake session, a WebSocket tunnel's among them, wasted 1,168 bytes.
 * Each thread keeps at most CACHE_PER_CLASS free blocks per class
 * (core/freelist.h, pools "nghttp2_64" .. "nghttp2_8192"); beyond that
 * they go back to malloc, so a burst does not pin memory for ever.
 * Blocks up to 20 KiB beyond the classes (each session's 16 KiB outbound
 * frame buffer) are page-aligned arena slots without a header (see "frame
 * buffer slots" below): a page-aligned pointer is a slot, and a class
 * block never is (block_new moves one that would be). Larger ones are
 * malloc'd with a BIG_CLASS header.
 */
#include <malloc.h>
#include <sys/mman.h>
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
      uint8_t cls;      /* size class */
      size_t size;      /* bytes between malloc's pointer and the block (0 or 16) */
    } h;
  };
  _Alignas(16) unsigned char data[];
};

static const size_t class_sizes[N_CLASSES] = {64, 128, 256, 512, 1024, 2048, 3072, 4096, 8192};

static void block_destroy(void *obj);
#define CLASS(n) {.name = "nghttp2_" #n, .max_cached = CACHE_PER_CLASS, .destroy = block_destroy}
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

#define PAGE 4096u
static inline bool page_aligned(const void *p) { return ((uintptr_t)p & (PAGE - 1)) == 0; }

/* A new block of |size| bytes of data whose data is not page-aligned
 * (page-aligned pointers are frame buffer slots, which carry no header):
 * when malloc's answer would be, the block moves 16 bytes into a slightly
 * larger allocation, and h.size records the shift for block_destroy. */
static struct block *block_new(size_t size) {
  unsigned char *raw = malloc(sizeof(struct block) + size);
  if (!raw) return NULL;
  struct block *b = (struct block *)raw;
  if (!page_aligned(b->data)) {
    b->h.size = 0;
    return b;
  }
  free(raw);
  raw = malloc(sizeof(struct block) + size + 16);
  if (!raw) return NULL;
  size_t shift = page_aligned(raw + sizeof(struct block)) ? 16 : 0;
  b = (struct block *)(raw + shift);
  b->h.size = shift;
  return b;
}

static unsigned char *block_raw(struct block *b) { return (unsigned char *)b - b->h.size; }

/* The freelists' destructor (h.size survives in the list: the link
 * overlays only the first 8 bytes). */
static void block_destroy(void *obj) { free(block_raw(obj)); }

static struct block *block_of(void *p) {
  return (struct block *)((unsigned char *)p - offsetof(struct block, data));
}

/* ---- frame buffer slots ------------------------------------------------
 *
 * Blocks over 8 KiB and up to FB_SLOT (nghttp2's outbound frame buffer,
 * NGHTTP2_FRAMEBUF_CHUNKLEN = 16,394 bytes, one per session, and the
 * extra chunks a large HEADERS frame takes for a moment) are page-aligned
 * slots of per-thread arenas mapped FB_CHUNK at a time. Every page of a
 * slot is the slot's own, so its pages can be given back to the kernel
 * while the block is live but holds nothing (sl_h2mem_release_pages) and
 * when it is free: up to FB_WARM free slots keep their pages for the next
 * session (a core/freelist.h pool, "nghttp2_framebuf", linked through
 * their first word); beyond, and for a sleeping session's, they go back
 * at once to the cold list, an array of pointers rather than links inside
 * the slots, so that a slot whose pages were given back stays without.
 * (posix_memalign from the heap did the same for the live case, but its
 * alignment fragments pinned heap pages once sessions went to sleep:
 * tls-h2 idle 21.5 -> 24.3 KiB.) Arenas are never unmapped while the
 * thread runs: the address space stays at the thread's peak, the
 * resident pages do not. */
#define FB_SLOT (5u * PAGE)
#define FB_CHUNK_SLOTS 64u /* 1.25 MiB of address space per mapping */
#define FB_WARM 64u

static void fb_cool(void *slot);
static struct sl_freelist_class fb_class = {
    .name = "nghttp2_framebuf", .max_cached = FB_WARM, .destroy = fb_cool};
static __thread struct sl_freelist fb_warm = SL_FREELIST_INIT(&fb_class);
static __thread void **fb_cold; /* free slots without resident pages */
static __thread size_t fb_ncold, fb_cold_cap;
static __thread void **fb_chunks;
static __thread size_t fb_nchunks, fb_chunks_cap;

static bool grow(void ***arr, size_t *cap, size_t need) {
  if (need <= *cap) return true;
  size_t n = *cap ? *cap * 2 : 64;
  while (n < need) n *= 2;
  void **a = realloc(*arr, n * sizeof(*a));
  if (!a) return false;
  *arr = a;
  *cap = n;
  return true;
}

/* A slot: a warm one, else a cold one, else the first of a new arena
 * (the others go to the cold list, untouched). */
static void *fb_alloc(void) {
  void *p = sl_freelist_get(&fb_warm);
  if (p) return p;
  if (fb_ncold) return fb_cold[--fb_ncold];
  if (!grow(&fb_chunks, &fb_chunks_cap, fb_nchunks + 1) ||
      !grow(&fb_cold, &fb_cold_cap, fb_ncold + FB_CHUNK_SLOTS))
    return NULL;
  unsigned char *m = mmap(NULL, (size_t)FB_CHUNK_SLOTS * FB_SLOT, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return NULL;
  fb_chunks[fb_nchunks++] = m;
  for (unsigned i = FB_CHUNK_SLOTS - 1; i >= 1; i--) fb_cold[fb_ncold++] = m + (size_t)i * FB_SLOT;
  return m;
}

/* The warm pool's destructor: the slot's pages go back, the slot to the
 * cold list. */
static void fb_cool(void *slot) {
  madvise(slot, FB_SLOT, MADV_DONTNEED);
  /* out of memory for the list: the slot's address space is lost, not its pages */
  if (grow(&fb_cold, &fb_cold_cap, fb_ncold + 1)) fb_cold[fb_ncold++] = slot;
}

static void fb_free(void *p) {
  if (release_direct)
    sl_freelist_destroy(&fb_warm, p);
  else
    sl_freelist_put(&fb_warm, p); /* cooled by fb_cool when the pool is full */
}

static void *h2mem_malloc(size_t size, void *ud) {
  int c = class_of(size);
  struct block *b;
  if (c < 0) {
    if (size <= FB_SLOT) {
      void *p = fb_alloc();
      void **fb = ud;
      if (p && fb && !*fb) *fb = p; /* the session's frame buffer: its first slot */
      return p;
    }
    b = block_new(size); /* rare: a header value larger than FB_SLOT */
    if (!b) return NULL;
    b->h.cls = BIG_CLASS;
    return b->data;
  }
  b = sl_freelist_get(&free_lists[c]);
  if (!b) {
    b = block_new(class_size(c));
    if (!b) return NULL;
  }
  b->h.cls = (uint8_t)c;
  return b->data;
}

static void h2mem_free(void *p, void *ud) {
  if (!p) return;
  if (page_aligned(p)) {
    void **fb = ud;
    if (fb && *fb == p) *fb = NULL;
    fb_free(p);
    return;
  }
  struct block *b = block_of(p);
  int c = b->h.cls;
  if (c == BIG_CLASS) {
    free(block_raw(b));
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
  size_t have;
  bool tracked = false;
  if (page_aligned(p)) {
    if (size <= FB_SLOT) return p;
    have = FB_SLOT;
    tracked = ud && *(void **)ud == p;
  } else {
    struct block *b = block_of(p);
    have = b->h.cls == BIG_CLASS
               ? malloc_usable_size(block_raw(b)) - (size_t)((unsigned char *)p - block_raw(b))
               : class_size(b->h.cls);
    if (size <= have) return p;
  }
  void *n = h2mem_malloc(size, ud);
  if (!n) return NULL;
  memcpy(n, p, have < size ? have : size);
  h2mem_free(p, ud);
  if (tracked && page_aligned(n)) *(void **)ud = n; /* the frame buffer moved */
  return n;
}

nghttp2_mem *sl_h2mem(void) {
  static nghttp2_mem mem = {NULL, h2mem_malloc, h2mem_free, h2mem_calloc, h2mem_realloc};
  return &mem;
}

nghttp2_mem sl_h2mem_for(void **big) {
  return (nghttp2_mem){big, h2mem_malloc, h2mem_free, h2mem_calloc, h2mem_realloc};
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

void sl_h2mem_release_pages(void *p) {
  if (p && page_aligned(p)) madvise(p, FB_SLOT, MADV_DONTNEED);
}

void sl_h2mem_drain(void) {
  /* The trim timer belongs to this thread's loop, which is going away. */
  trim_timer_ready = false;
  for (int c = 0; c < N_CLASSES; c++) sl_freelist_drain(&free_lists[c]);
  sl_freelist_drain(&fb_warm); /* to the cold list */
  /* The arenas, once every slot is back on the cold list (a session still
   * alive keeps them: process exit takes them then). */
  if (fb_ncold == fb_nchunks * FB_CHUNK_SLOTS) {
    for (size_t i = 0; i < fb_nchunks; i++) munmap(fb_chunks[i], (size_t)FB_CHUNK_SLOTS * FB_SLOT);
    free(fb_chunks);
    free(fb_cold);
    fb_chunks = NULL;
    fb_cold = NULL;
    fb_nchunks = fb_chunks_cap = fb_ncold = fb_cold_cap = 0;
  }
}
