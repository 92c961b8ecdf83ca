/*
 * sluice — per-thread slabs of fixed-size objects that live as long as a
 * connection (the connection itself, its h2 state).
 *
 * Why not malloc: an idle connection is a few hundred bytes, but malloc
 * places it next to whatever the connection allocated around it (the h2
 * session, TLS state, buffers). Once those are freed, as an idle h2
 * session put to sleep is (front/h2sleep.h), each small survivor keeps a
 * whole page resident between freed neighbours: 4 KiB per idle connection
 * instead of a few hundred bytes. Slabs pack the survivors together, so
 * the freed memory around them is whole pages the heap can give back.
 *
 * A slab class serves one object size; each thread carves blocks of
 * SL_SLAB_PER_BLOCK objects from malloc and keeps freed objects on its own
 * list (no lock). Blocks are given back only by sl_slab_drain (worker
 * exit): memory is bounded by the thread's peak number of live objects,
 * as HAProxy's pools are. Objects must be freed on the thread that
 * allocated them.
 */
#ifndef SLUICE_CORE_SLAB_H
#define SLUICE_CORE_SLAB_H

#include <stddef.h>

#define SL_SLAB_PER_BLOCK 64

struct sl_slab_block;

struct sl_slab {
  size_t size;                  /* of one object, rounded up to 16 */
  void *free;                   /* free objects, linked through their first word */
  struct sl_slab_block *blocks; /* every block carved so far */
};

/* Initialiser of a __thread slab of objects of |sz| bytes:
 *   static __thread struct sl_slab conns = SL_SLAB_INIT(sizeof(struct sl_conn)); */
#define SL_SLAB_INIT(sz) {.size = ((sz) + 15) & ~(size_t)15}

/* A zeroed object, or NULL when memory runs out. */
void *sl_slab_calloc(struct sl_slab *s);
/* Gives |obj| (from this thread's |s|; NULL is ignored) back. */
void sl_slab_free(struct sl_slab *s, void *obj);
/* Frees every block of the calling thread's |s|: only once none of its
 * objects is in use (worker exit, tests). */
void sl_slab_drain(struct sl_slab *s);

#endif
