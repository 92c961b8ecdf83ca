/*
 * sluice — per-thread slabs of fixed-size objects. See slab.h.
 */
#include <stdlib.h>
#include <string.h>

#include "core/slab.h"

/* Under AddressSanitizer a free object is poisoned, so that a use after
 * free is still caught although the memory stays in the slab. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SLAB_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define SLAB_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define SLAB_POISON(p, n) ((void)(p), (void)(n))
#define SLAB_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* The free list's link, in the first word of a free (poisoned) object. */
static void *link_get(void *o) {
  SLAB_UNPOISON(o, sizeof(void *));
  void *next = *(void **)o;
  SLAB_POISON(o, sizeof(void *));
  return next;
}

static void link_set(void *o, void *next) {
  SLAB_UNPOISON(o, sizeof(void *));
  *(void **)o = next;
  SLAB_POISON(o, sizeof(void *));
}

struct sl_slab_block {
  struct sl_slab_block *next;
  _Alignas(16) unsigned char objs[];
};

void *sl_slab_calloc(struct sl_slab *s) {
  if (!s->free) {
    struct sl_slab_block *b = malloc(sizeof(*b) + SL_SLAB_PER_BLOCK * s->size);
    if (!b) return NULL;
    b->next = s->blocks;
    s->blocks = b;
    SLAB_POISON(b->objs, SL_SLAB_PER_BLOCK * s->size);
    for (size_t i = SL_SLAB_PER_BLOCK; i-- > 0;) {
      void *o = b->objs + i * s->size;
      link_set(o, s->free);
      s->free = o;
    }
  }
  void *o = s->free;
  s->free = link_get(o);
  SLAB_UNPOISON(o, s->size);
  memset(o, 0, s->size);
  return o;
}

void sl_slab_free(struct sl_slab *s, void *obj) {
  if (!obj) return;
  SLAB_POISON(obj, s->size);
  link_set(obj, s->free);
  s->free = obj;
}

void sl_slab_drain(struct sl_slab *s) {
  while (s->blocks) {
    struct sl_slab_block *b = s->blocks;
    s->blocks = b->next;
    SLAB_UNPOISON(b->objs, SL_SLAB_PER_BLOCK * s->size);
    free(b);
  }
  s->free = NULL;
}
