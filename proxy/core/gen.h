/*
 * sluice — configuration generations (proxy/core/gen.c).
 *
 * A published configuration and what the data plane derives from it. A
 * stream holds a reference for its whole life, so in-flight requests
 * finish on the configuration they started with.
 *
 * Threads: the main thread publishes (sl_gen_publish), workers pick the
 * current one up (sl_gen_current_ref) and drop references from any thread.
 * The last reference of a retired generation dropped on a worker is
 * handed to the main loop (sl_gen_defer_start), which frees it: freeing a
 * large configuration is work for the main thread, not for a worker
 * between two requests.
 */
#ifndef SLUICE_CORE_GEN_H
#define SLUICE_CORE_GEN_H

#include <stdatomic.h>
#include <stdint.h>

struct ev_loop;
struct sl_config;
struct sl_policy_set;
struct sl_listener;

struct sl_gen {
  struct sl_config *cfg;     /* pure data */
  struct sl_policy_set *policies; /* its policies' runtime state (sl_policy_set_new) */
  struct sl_blocklist *blocklist; /* compiled from cfg->blocklist */
  /* The listeners workers accept on while this generation is current
   * (the array is the generation's; the listeners are the main
   * thread's). A worker reads it only when it picks the generation up:
   * a listener a later generation retires is freed once every worker
   * has acknowledged that later generation (sl_worker.acked_generation)
   * and its last connection has closed. */
  struct sl_listener **listeners;
  int n_listeners;
  atomic_long refs;
  struct sl_gen *retired_next; /* main thread's free list (see sl_gen_unref) */
};

struct sl_gen *sl_gen_ref(struct sl_gen *g);
void sl_gen_unref(struct sl_gen *g);
/* The current generation (main thread publishes, workers pick it up). */
struct sl_gen *sl_gen_current_ref(void);

/* Publishes |cfg| as the current generation; takes ownership. Policy
 * state of unchanged policies is carried over from the running generation
 * (limiter tables, breakers, concurrency counters). The generation gets a
 * copy of |listeners[0..n)|, the set workers accept on once they pick it
 * up, and the next generation number (cfg->generation). Returns the new
 * generation (the current one holds its reference: borrowed). Start-up
 * and reload path: aborts on out-of-memory. */
struct sl_gen *sl_gen_publish(struct sl_config *cfg, struct sl_listener *const *listeners, int n);
/* The number sl_gen_publish will give the next generation. */
uint64_t sl_gen_next_number(void);
/* Drops the current generation (exit). */
void sl_gen_clear(void);

/* From now on, a last reference dropped on a thread other than the
 * caller's is freed on |loop| (the caller's, the main loop). */
void sl_gen_defer_start(struct ev_loop *loop);
/* Frees what is pending and goes back to freeing in place (after the
 * workers were joined). */
void sl_gen_defer_stop(void);

#endif
