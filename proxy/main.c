/*
 * sluice — command line, start-up, signals, reloads and shutdown (the
 * main thread).
 *
 *   sluice [run] -c FILE [--workers N] [--log-level LEVEL]
 *   sluice check -c FILE [--print]
 *   sluice explain -c FILE [--ip A] [--header 'K: V']... [--method M] PATH
 *   sluice version
 *
 * Exit codes: 0 ok, 1 invalid configuration or usage, 2 runtime failure.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/sha.h>

#include "sluice/hash.h"
#include "sluice/json.h"
#include "sluice/blocklist.h"
#include "sluice/config.h"
#include "sluice/explain.h"
#include "sluice/policy_state.h"
#include "sluice/breaker.h"
#include "sluice/ratelimit.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/route.h"
#include "admin.h"
#include "proxy.h"
#include "stats.h"
#include "watch.h"
#include "worker.h"

#define SLUICE_VERSION "0.1.0"

int sl_n_workers = 1;
atomic_int sl_workers_exited;

/* ---- generations -------------------------------------------------- */

static pthread_mutex_t gen_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sl_gen *gen_current;
static uint64_t gen_counter;

struct sl_gen *sl_gen_ref(struct sl_gen *g) {
  atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
  return g;
}

static void gen_free(struct sl_gen *g) {
  sl_blocklist_del(g->blocklist);
  sl_policy_set_del(g->policies);
  sl_config_free(g->cfg);
  free(g->listeners);
  free(g);
}

/* Retired generations whose last reference a worker dropped: freeing a
 * large configuration (thousands of blocklist entries) is work for the
 * main thread, not for a worker between two requests. */
static pthread_mutex_t retired_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sl_gen *retired_gens;
static struct ev_loop *retired_loop; /* the main loop, once it runs */
static ev_async retired_async;
static pthread_t main_thread;

static void retired_free_all(void) {
  pthread_mutex_lock(&retired_lock);
  struct sl_gen *g = retired_gens;
  retired_gens = NULL;
  pthread_mutex_unlock(&retired_lock);
  while (g) {
    struct sl_gen *next = g->retired_next;
    gen_free(g);
    g = next;
  }
}

static void retired_cb(struct ev_loop *loop, ev_async *w, int revents) {
  (void)loop;
  (void)w;
  (void)revents;
  retired_free_all();
}

void sl_gen_unref(struct sl_gen *g) {
  if (!g) return;
  if (atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1) return;
  if (!retired_loop || pthread_equal(pthread_self(), main_thread)) {
    gen_free(g);
    return;
  }
  pthread_mutex_lock(&retired_lock);
  g->retired_next = retired_gens;
  retired_gens = g;
  pthread_mutex_unlock(&retired_lock);
  ev_async_send(retired_loop, &retired_async);
}

struct sl_gen *sl_gen_current_ref(void) {
  pthread_mutex_lock(&gen_lock);
  struct sl_gen *g = sl_gen_ref(gen_current);
  pthread_mutex_unlock(&gen_lock);
  return g;
}

/* Publishes |cfg| as the current generation; takes ownership. Policy
 * state of unchanged policies is carried over from the running generation
 * (limiter tables, breakers, concurrency counters). The generation gets a
 * copy of |listeners[0..n)|, the set workers accept on once they pick it
 * up. Start-up and reload path: aborts on out-of-memory. */
static struct sl_gen *gen_publish(struct sl_config *cfg, struct sl_listener *const *listeners,
                                  int n) {
  struct sl_gen *g = calloc(1, sizeof(*g));
  if (!g) abort();
  pthread_mutex_lock(&gen_lock);
  const struct sl_policy_set *prev = gen_current ? gen_current->policies : NULL;
  g->policies = sl_policy_set_new(cfg, prev, sl_now_ns());
  pthread_mutex_unlock(&gen_lock);
  if (!g->policies) abort();
  g->blocklist = sl_blocklist_new(&cfg->blocklist, cfg->mode);
  if (!g->blocklist) abort();
  g->cfg = cfg;
  g->n_listeners = n;
  g->listeners = calloc(n > 0 ? (size_t)n : 1, sizeof(*g->listeners));
  if (!g->listeners) abort();
  for (int i = 0; i < n; i++) g->listeners[i] = listeners[i];
  atomic_init(&g->refs, 1);
  sl_stats_set_rejection_log_rate(cfg->rejection_log_per_sec);
  cfg->generation = ++gen_counter;
  pthread_mutex_lock(&gen_lock);
  struct sl_gen *old = gen_current;
  gen_current = g;
  pthread_mutex_unlock(&gen_lock);
  sl_gen_unref(old);
  return g;
}

/* ---- process state ------------------------------------------------ */

struct sl_main {
  struct ev_loop *loop;
  const char *config_path;
  struct sl_worker *workers;
  int n_workers;
  struct sl_listener **listeners;
  int n_listeners;
  struct sl_admin *admin;
  bool draining;
  int workers_running;
  ev_signal sig_term, sig_int, sig_hup;
  ev_async worker_exit;
  ev_timer exit_poll;
  ev_timer housekeeping;
  char last_reload_error[1024];
  char last_reload_summary[512];
  /* Reload triggers (SIGHUP, file changes) only set `reload_pending`; one
   * zero-delay timer runs the reload, so however many triggers arrive
   * while a reload runs, at most one more follows it. POST /reload runs
   * at once (its answer says how it went) and absorbs a pending one. */
  bool reload_pending;
  unsigned reload_triggers; /* coalesced into the pending reload */
  const char *reload_trigger;
  ev_timer reload_timer;
  struct sl_watch *watch;
  /* Generation of the last listener-set or certificate change; workers
   * have applied it once every acked_generation reached it. */
  uint64_t listeners_gen;
  struct retired *retired; /* waiting for workers and connections */
};

static struct sl_main M;

/* CPUs this process may use: the affinity mask, further limited by a
 * cgroup CPU quota (v2 cpu.max, v1 cfs quota), rounded up, at least 1.
 * A sidecar limited to 0.5 CPU runs one worker. */
static int cpus_available(void) {
  cpu_set_t set;
  int n = 1;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
  double quota = -1;
  FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
  if (f) {
    char q[32];
    long period;
    if (fscanf(f, "%31s %ld", q, &period) == 2 && strcmp(q, "max") != 0 && period > 0)
      quota = atof(q) / (double)period;
    fclose(f);
  } else {
    long q = -1, period = 0;
    f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "r");
    if (f) {
      if (fscanf(f, "%ld", &q) != 1) q = -1;
      fclose(f);
    }
    f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "r");
    if (f) {
      if (fscanf(f, "%ld", &period) != 1) period = 0;
      fclose(f);
    }
    if (q > 0 && period > 0) quota = (double)q / (double)period;
  }
  if (quota > 0) {
    int qn = (int)ceil(quota);
    if (qn < n) n = qn;
  }
  return n < 1 ? 1 : n;
}

static int bind_socket(const struct sl_sockaddr *a, bool reuseport, char *err, size_t errlen) {
  int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0) {
    snprintf(err, errlen, "cannot bind %s: %s", a->text, strerror(errno));
    close(fd);
    return -1;
  }
  if (listen(fd, 4096) != 0) {
    snprintf(err, errlen, "cannot listen on %s: %s", a->text, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

/* Device, inode, size and mtime of the certificate and key files: a
 * reload rebuilds a listener's TLS context only when these or the paths
 * changed (a rotated certificate keeps its path, e.g. a Secret's ..data
 * swap). Taken before the files are read. */
static uint64_t tls_files_fp(const char *cert, const char *key) {
  uint64_t h = 1469598103934665603ULL;
  const char *paths[2] = {cert, key};
  for (int i = 0; i < 2; i++) {
    struct stat st;
    uint64_t v[5] = {0};
    if (stat(paths[i], &st) == 0) {
      v[0] = (uint64_t)st.st_dev;
      v[1] = (uint64_t)st.st_ino;
      v[2] = (uint64_t)st.st_size;
      v[3] = (uint64_t)st.st_mtim.tv_sec;
      v[4] = (uint64_t)st.st_mtim.tv_nsec;
    }
    const unsigned char *b = (const unsigned char *)v;
    for (size_t j = 0; j < sizeof(v); j++) h = (h ^ b[j]) * 1099511628211ULL;
  }
  return h;
}

/* Stores |lc|'s limits; workers read them atomically, new connections
 * (and existing ones at their next request or timer) meet them. */
static void listener_set_limits(struct sl_listener *l, const struct sl_listener_cfg *lc) {
  atomic_store(&l->max_connections, lc->max_connections);
  atomic_store(&l->request_header_timeout_ms, lc->request_header_timeout_ms);
  atomic_store(&l->idle_timeout_ms, lc->idle_timeout_ms);
  atomic_store(&l->header_bytes, lc->header_bytes);
  atomic_store(&l->headers, lc->headers);
  atomic_store(&l->h2_streams, lc->h2_streams);
}

static bool listener_limits_differ(const struct sl_listener *l, const struct sl_listener_cfg *lc) {
  return atomic_load(&l->max_connections) != lc->max_connections ||
         atomic_load(&l->request_header_timeout_ms) != lc->request_header_timeout_ms ||
         atomic_load(&l->idle_timeout_ms) != lc->idle_timeout_ms ||
         atomic_load(&l->header_bytes) != lc->header_bytes ||
         atomic_load(&l->headers) != lc->headers || atomic_load(&l->h2_streams) != lc->h2_streams;
}

/* Frees |l|: its remaining sockets, its TLS context, its strings. The
 * caller knows no worker watches it and no connection points to it. */
static void listener_close(struct sl_listener *l) {
  for (int i = 0; i < l->n_fds; i++)
    if (l->fds[i] >= 0) close(l->fds[i]);
  SSL_CTX *ctx = atomic_load(&l->ssl_ctx);
  if (ctx) SSL_CTX_free(ctx);
  free(l->fds);
  free(l->name);
  free(l->address);
  free(l->tls_certificate);
  free(l->tls_private_key);
  free(l);
}

/* A listener for |lc| with its TLS context but no socket yet (fds all
 * -1). Returns NULL with a message in |err| if the certificate or key
 * cannot be loaded. Aborts on out-of-memory (start-up and reload). */
static struct sl_listener *listener_new(const struct sl_listener_cfg *lc, int n_workers,
                                        char *err, size_t errlen) {
  struct sl_listener *l = calloc(1, sizeof(*l));
  if (!l) abort();
  l->name = strdup(lc->name);
  l->address = strdup(lc->address.text);
  listener_set_limits(l, lc);
  l->fds = calloc((size_t)n_workers, sizeof(int));
  if (!l->name || !l->address || !l->fds) abort();
  for (int i = 0; i < n_workers; i++) l->fds[i] = -1;
  l->n_fds = n_workers;
  if (lc->tls_certificate) {
    l->tls = true;
    l->tls_certificate = strdup(lc->tls_certificate);
    l->tls_private_key = strdup(lc->tls_private_key);
    if (!l->tls_certificate || !l->tls_private_key) abort();
    l->tls_files_fp = tls_files_fp(lc->tls_certificate, lc->tls_private_key);
    SSL_CTX *ctx = sl_tls_ctx_new(lc->tls_certificate, lc->tls_private_key, err, errlen);
    if (!ctx) {
      listener_close(l);
      return NULL;
    }
    atomic_init(&l->ssl_ctx, ctx);
  }
  l->m_conn_h1 = sl_stats_conn_series(l->name, SL_PROTO_H1);
  l->m_conn_h2 = sl_stats_conn_series(l->name, SL_PROTO_H2);
  return l;
}

/* Binds one socket per worker for |lc|. The first bind checks the address
 * is free: SO_REUSEPORT would otherwise let two sluice processes share a
 * port silently, so probe with an exclusive bind first. */
static struct sl_listener *listener_open(const struct sl_listener_cfg *lc, int n_workers,
                                         char *err, size_t errlen) {
  struct sl_listener *l = listener_new(lc, n_workers, err, errlen);
  if (!l) return NULL;
  int probe = bind_socket(&lc->address, false, err, errlen);
  if (probe < 0) goto fail;
  close(probe);
  for (int i = 0; i < n_workers; i++) {
    l->fds[i] = bind_socket(&lc->address, true, err, errlen);
    if (l->fds[i] < 0) goto fail;
  }
  return l;
fail:
  listener_close(l);
  return NULL;
}

/* ---- retiring what workers may still use --------------------------- */

/* A TLS context replaced by a reload, or a listener a reload removed,
 * freed once every worker has acknowledged generation `gen` (so none can
 * load the old pointer again) and, for a listener, its last connection
 * has closed (connections point to their listener). Main thread only. */
struct retired {
  SSL_CTX *ctx;
  struct sl_listener *lis;
  uint64_t gen;
  struct retired *next;
};

static void retire(SSL_CTX *ctx, struct sl_listener *lis, uint64_t gen) {
  struct retired *r = calloc(1, sizeof(*r));
  if (!r) abort();
  r->ctx = ctx;
  r->lis = lis;
  r->gen = gen;
  r->next = M.retired;
  M.retired = r;
}

static bool workers_acked(uint64_t gen) {
  for (int i = 0; i < M.n_workers; i++)
    if (atomic_load(&M.workers[i].acked_generation) < gen) return false;
  return true;
}

/* Waits up to |timeout_ms| for every worker to acknowledge |gen|. Workers
 * answer their wakeup within one loop iteration, so this is short unless
 * one is stuck; the wait keeps a reload's answer true (a removed listener
 * refuses connections once POST /reload has returned). */
static bool workers_wait(uint64_t gen, int timeout_ms) {
  for (int waited = 0; !workers_acked(gen); waited++) {
    if (waited >= timeout_ms) return false;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  return true;
}

/* Frees what no worker and no connection uses any more. |all|: at exit,
 * after the workers were joined. */
static void retired_collect(bool all) {
  for (struct retired **pp = &M.retired; *pp;) {
    struct retired *r = *pp;
    bool done = all || (workers_acked(r->gen) &&
                        (!r->lis || atomic_load(&r->lis->n_connections) == 0));
    if (!done) {
      pp = &r->next;
      continue;
    }
    if (r->ctx) SSL_CTX_free(r->ctx);
    if (r->lis) listener_close(r->lis);
    *pp = r->next;
    free(r);
  }
}

/* ---- listener changes on reload ------------------------------------ */

/* A name list for the reload log line, bounded: the first names that fit
 * and a count of the rest. */
struct namelist {
  char buf[120];
  size_t len;
  unsigned n, shown;
};

static void namelist_add(struct namelist *nl, const char *name) {
  nl->n++;
  size_t need = strlen(name) + (nl->len ? 1 : 0);
  if (nl->len + need >= sizeof(nl->buf)) return;
  if (nl->len) nl->buf[nl->len++] = ',';
  memcpy(nl->buf + nl->len, name, strlen(name) + 1);
  nl->len += strlen(name);
  nl->shown++;
}

/* What a reload does to each listener of the new configuration. */
struct lis_plan {
  const struct sl_listener_cfg *lc;
  struct sl_listener *keep; /* running, same name, address and TLS mode */
  struct sl_listener *from; /* running, same address: `made` takes its sockets */
  struct sl_listener *made; /* new (bound, or waiting for `from`'s sockets) */
  SSL_CTX *new_ctx;         /* `keep` only: its certificate or key changed */
  uint64_t new_fp;
};

struct lis_change {
  struct lis_plan *plans; /* [cfg->n_listeners] */
  size_t n;
  bool *claimed;          /* [M.n_listeners]: kept or taken over */
  bool needs_ack;         /* sockets or TLS contexts changed hands */
  struct namelist added, removed, changed, tls;
};

static void lis_change_free(struct lis_change *ch, bool failed) {
  for (size_t i = 0; failed && i < ch->n; i++) {
    if (ch->plans[i].made) listener_close(ch->plans[i].made);
    if (ch->plans[i].new_ctx) SSL_CTX_free(ch->plans[i].new_ctx);
  }
  free(ch->plans);
  free(ch->claimed);
}

/* Prepares every listener of |cfg| without touching the running ones:
 * loads changed certificates, binds new addresses. Returns 0, or -1 with
 * a message in |err| after undoing what it prepared (the running
 * configuration stays as it is). */
static int listeners_prepare(const struct sl_config *cfg, struct lis_change *ch, char *err,
                             size_t errlen) {
  memset(ch, 0, sizeof(*ch));
  ch->n = cfg->n_listeners;
  ch->plans = calloc(ch->n ? ch->n : 1, sizeof(*ch->plans));
  ch->claimed = calloc(M.n_listeners ? (size_t)M.n_listeners : 1, sizeof(bool));
  if (!ch->plans || !ch->claimed) abort();
  /* First the listeners that stay, so that one replaced by another name
   * cannot steal a socket from a listener that is kept. */
  for (size_t i = 0; i < ch->n; i++) {
    const struct sl_listener_cfg *lc = &cfg->listeners[i];
    struct lis_plan *p = &ch->plans[i];
    p->lc = lc;
    for (int j = 0; j < M.n_listeners; j++) {
      struct sl_listener *l = M.listeners[j];
      if (ch->claimed[j] || strcmp(l->name, lc->name) != 0 ||
          strcmp(l->address, lc->address.text) != 0 || l->tls != (lc->tls_certificate != NULL))
        continue;
      ch->claimed[j] = true;
      p->keep = l;
      break;
    }
  }
  for (size_t i = 0; i < ch->n; i++) {
    struct lis_plan *p = &ch->plans[i];
    const struct sl_listener_cfg *lc = p->lc;
    char why[400];
    if (p->keep) {
      if (!lc->tls_certificate) continue;
      uint64_t fp = tls_files_fp(lc->tls_certificate, lc->tls_private_key);
      if (fp == p->keep->tls_files_fp && strcmp(p->keep->tls_certificate, lc->tls_certificate) == 0 &&
          strcmp(p->keep->tls_private_key, lc->tls_private_key) == 0)
        continue;
      p->new_fp = fp;
      p->new_ctx = sl_tls_ctx_new(lc->tls_certificate, lc->tls_private_key, why, sizeof(why));
      if (!p->new_ctx) goto fail;
      continue;
    }
    for (int j = 0; j < M.n_listeners && !p->from; j++) {
      if (!ch->claimed[j] && strcmp(M.listeners[j]->address, lc->address.text) == 0) {
        ch->claimed[j] = true;
        p->from = M.listeners[j];
      }
    }
    p->made = p->from ? listener_new(lc, M.n_workers, why, sizeof(why))
                      : listener_open(lc, M.n_workers, why, sizeof(why));
    if (!p->made) goto fail;
    continue;
  fail:
    snprintf(err, errlen, "listener %s: %s", lc->name, why);
    lis_change_free(ch, true);
    return -1;
  }
  return 0;
}

/* Applies a prepared change (cannot fail): stores limits, swaps TLS
 * contexts, moves sockets to successors, retires what is gone as of
 * generation |gen|, and makes the new set M.listeners. Call before the
 * generation is published, so workers see the moved sockets with it. */
static void listeners_commit(struct lis_change *ch, uint64_t gen) {
  struct sl_listener **next = calloc(ch->n ? ch->n : 1, sizeof(*next));
  if (!next) abort();
  for (size_t i = 0; i < ch->n; i++) {
    struct lis_plan *p = &ch->plans[i];
    if (p->keep) {
      if (listener_limits_differ(p->keep, p->lc)) namelist_add(&ch->changed, p->keep->name);
      listener_set_limits(p->keep, p->lc);
      if (p->new_ctx) {
        retire(atomic_exchange(&p->keep->ssl_ctx, p->new_ctx), NULL, gen);
        free(p->keep->tls_certificate);
        free(p->keep->tls_private_key);
        p->keep->tls_certificate = strdup(p->lc->tls_certificate);
        p->keep->tls_private_key = strdup(p->lc->tls_private_key);
        if (!p->keep->tls_certificate || !p->keep->tls_private_key) abort();
        p->keep->tls_files_fp = p->new_fp;
        p->new_ctx = NULL;
        namelist_add(&ch->tls, p->keep->name);
        ch->needs_ack = true;
      }
      next[i] = p->keep;
      continue;
    }
    if (p->from) {
      for (int w = 0; w < M.n_workers; w++) {
        p->made->fds[w] = p->from->fds[w];
        p->from->fds[w] = -1;
      }
      namelist_add(&ch->changed, p->made->name);
    } else {
      namelist_add(&ch->added, p->made->name);
    }
    sl_log(SL_LOG_INFO, "listening", "listener", p->made->name, "address", p->made->address,
           "tls", p->made->tls ? "on" : "off", NULL);
    next[i] = p->made;
    p->made = NULL;
    ch->needs_ack = true;
  }
  for (int j = 0; j < M.n_listeners; j++) {
    struct sl_listener *l = M.listeners[j];
    bool stays = false;
    for (size_t i = 0; i < ch->n && !stays; i++) stays = next[i] == l;
    if (stays) continue;
    bool replaced = false;
    for (size_t i = 0; i < ch->n && !replaced; i++) replaced = ch->plans[i].from == l;
    if (!replaced) {
      namelist_add(&ch->removed, l->name);
      sl_log(SL_LOG_INFO, "stopped listening; open connections carry on", "listener", l->name,
             "address", l->address, NULL);
    }
    retire(NULL, l, gen);
    ch->needs_ack = true;
  }
  free(M.listeners);
  M.listeners = next;
  M.n_listeners = (int)ch->n;
}

/* ---- configuration loading ---------------------------------------- */

static void log_config_errors(const struct sl_config_errors *errs, const char *msg) {
  for (size_t i = 0; i < errs->n; i++) {
    char where[512];
    snprintf(where, sizeof(where), "%s:%u:%u", errs->items[i].file, errs->items[i].line,
             errs->items[i].col);
    sl_log(SL_LOG_ERROR, msg, "where", where, "error", errs->items[i].message, NULL);
  }
}

static void set_reload_metrics(bool ok, const struct sl_config *cfg) {
  struct sl_metric_series *last = sl_metrics_series(sl_stats.config_last_ok, NULL);
  struct sl_metric_series *total =
      sl_metrics_series(sl_stats.config_reloads, (const char *[]){ok ? "success" : "failure"});
  if (last) sl_metric_gauge_set(last, ok ? 1 : 0);
  if (total) sl_metric_inc(total);
  if (ok) {
    struct sl_metric_series *gen = sl_metrics_series(sl_stats.config_generation, NULL);
    struct sl_metric_series *ts = sl_metrics_series(sl_stats.config_last_ok_ts, NULL);
    if (gen) sl_metric_gauge_set(gen, (int64_t)cfg->generation);
    if (ts) sl_metric_gauge_set_double(ts, (double)cfg->loaded_unix_ms / 1000.0);
  }
}

/* ---- what a reload changed ----------------------------------------- */

/* Fingerprints (sluice/hash.h) of the fields that define behaviour, to tell "changed" from
 * "same" per route, upstream and section. Not stored anywhere: a
 * collision only makes a log line say "unchanged". */

static uint64_t dh_match(uint64_t h, const struct sl_route_match *m) {
  h = sl_hash_mix_str(sl_hash_mix_str(sl_hash_mix_str(sl_hash_mix_str(h, m->path_prefix), m->method), m->host), m->listener);
  h = sl_hash_mix_u64(h, (uint64_t)(int64_t)m->websocket);
  for (size_t i = 0; i < m->n_headers; i++)
    h = sl_hash_mix_str(sl_hash_mix_str(h, m->headers[i].name), m->headers[i].value);
  return sl_hash_mix_u64(h, m->n_headers);
}

/* Policy identities leave the tunables out (a retuned policy keeps its
 * state and is converted), so the diff hashes them apart: a rate limit's
 * rate, burst and overrides; a breaker's settings. */
static uint64_t rate_limit_tunables(const struct sl_rate_limit_cfg *rl) {
  uint64_t h = sl_hash_mix_u64(sl_hash_mix_u64(SL_HASH_SEED, rl->rate.period_ns), rl->burst);
  for (size_t j = 0; j < rl->n_overrides; j++)
    h = sl_hash_mix_u64(sl_hash_mix_u64(sl_hash_mix_str(h, rl->overrides[j].match), rl->overrides[j].rate.period_ns),
               rl->overrides[j].burst);
  return h;
}

static uint64_t breaker_tunables(const struct sl_breaker_cfg *b) {
  uint64_t h = sl_hash_mix_u64(sl_hash_mix_u64(sl_hash_mix_u64(SL_HASH_SEED, b->consecutive_failures), b->window_ms),
                      b->min_requests);
  h = sl_hash_mix(h, &b->failure_ratio, sizeof(b->failure_ratio));
  h = sl_hash_mix_u64(sl_hash_mix_u64(sl_hash_mix_u64(h, b->slow_call_ms), b->open_for_ms), b->half_open_probes);
  return sl_hash_mix_u64(sl_hash_mix_u64(h, b->recovery_ramp_ms), (uint64_t)b->enabled);
}

static uint64_t route_hash(const struct sl_route_cfg *r) {
  uint64_t h = dh_match(sl_hash_mix_str(SL_HASH_SEED, r->name), &r->match);
  h = sl_hash_mix_str(h, r->upstream ? r->upstream->name : NULL);
  for (size_t i = 0; i < r->n_rate_limits; i++) {
    const struct sl_rate_limit_cfg *rl = &r->rate_limits[i];
    h = sl_hash_mix_u64(sl_hash_mix_u64(h, rl->identity), (uint64_t)rl->mode);
    h = sl_hash_mix_u64(h, rate_limit_tunables(rl));
  }
  h = sl_hash_mix_u64(sl_hash_mix_u64(h, r->concurrency.identity), (uint64_t)r->concurrency.mode);
  h = sl_hash_mix_u64(h, r->concurrency.max);
  h = sl_hash_mix_u64(sl_hash_mix_u64(h, r->n_rate_limits), (uint64_t)r->priority);
  return sl_hash_mix_u64(h, r->idle_timeout_ms);
}

static uint64_t upstream_hash(const struct sl_upstream_cfg *u) {
  uint64_t h = sl_hash_mix_str(sl_hash_mix_str(SL_HASH_SEED, u->name), u->address.text);
  h = sl_hash_mix_u64(sl_hash_mix_u64(h, u->max_connections), u->max_pending);
  h = sl_hash_mix_u64(sl_hash_mix_u64(sl_hash_mix_u64(h, u->connect_timeout_ms), u->response_timeout_ms),
             u->idle_timeout_ms);
  h = sl_hash_mix_u64(h, breaker_tunables(&u->breaker));
  return sl_hash_mix_u64(sl_hash_mix_u64(sl_hash_mix_u64(h, u->breaker.identity), (uint64_t)u->breaker.mode),
                (uint64_t)u->breaker.enabled);
}

static uint64_t identify_hash(const struct sl_identify_cfg *id) {
  uint64_t h = sl_hash_mix(SL_HASH_SEED, id->trusted_proxies,
                        id->n_trusted_proxies * sizeof(*id->trusted_proxies));
  h = sl_hash_mix_u64(sl_hash_mix_u64(h, id->n_trusted_proxies), id->ipv6_prefix);
  h = sl_hash_mix_str(sl_hash_mix_str(h, id->device_class_header), id->device_class_ua_regex);
  return sl_hash_mix_str(sl_hash_mix_str(h, id->firmware_header), id->device_id_header);
}

static uint64_t shaping_hash(const struct sl_config *c) {
  uint64_t h = sl_hash_mix_u64(SL_HASH_SEED, c->n_shaping);
  for (size_t i = 0; i < c->n_shaping; i++) {
    const struct sl_shaping_rule *r = &c->shaping[i];
    h = dh_match(sl_hash_mix_str(h, r->name), &r->match);
    h = sl_hash_mix_u64(sl_hash_mix_u64(sl_hash_mix_u64(h, r->delay_fixed_ms), r->delay_jitter_ms), r->abort_status);
    h = sl_hash_mix(h, &r->abort_percent, sizeof(r->abort_percent));
    h = sl_hash_mix_u64(sl_hash_mix_u64(h, r->rate_cap.period_ns), (uint64_t)r->mode);
  }
  return h;
}

/* Sections other than routes, upstreams, listeners and the blocklist. */
static void diff_sections(const struct sl_config *a, const struct sl_config *b,
                          struct namelist *out) {
  if (identify_hash(&a->identify) != identify_hash(&b->identify)) namelist_add(out, "identify");
  if (memcmp(&a->reject, &b->reject, sizeof(a->reject)) != 0) namelist_add(out, "reject");
  if (shaping_hash(a) != shaping_hash(b)) namelist_add(out, "shaping");
  if (a->mode != b->mode) namelist_add(out, "mode");
  if (a->drain_timeout_ms != b->drain_timeout_ms) namelist_add(out, "drain_timeout");
  if (a->access_log != b->access_log) namelist_add(out, "access_log");
  if (a->rejection_log_per_sec != b->rejection_log_per_sec) namelist_add(out, "rejection_log");
  if (!a->include_dir != !b->include_dir ||
      (a->include_dir && strcmp(a->include_dir, b->include_dir) != 0))
    namelist_add(out, "include");
}

static void diff_routes(const struct sl_config *a, const struct sl_config *b,
                        struct namelist *added, struct namelist *removed,
                        struct namelist *changed) {
  for (size_t i = 0; i < b->n_routes; i++) {
    const struct sl_route_cfg *r = &b->routes[i], *o = NULL;
    for (size_t j = 0; j < a->n_routes && !o; j++)
      if (strcmp(a->routes[j].name, r->name) == 0) o = &a->routes[j];
    if (!o) namelist_add(added, r->name);
    else if (route_hash(o) != route_hash(r)) namelist_add(changed, r->name);
  }
  for (size_t j = 0; j < a->n_routes; j++) {
    bool kept = false;
    for (size_t i = 0; i < b->n_routes && !kept; i++)
      kept = strcmp(a->routes[j].name, b->routes[i].name) == 0;
    if (!kept) namelist_add(removed, a->routes[j].name);
  }
}

static void diff_upstreams(const struct sl_config *a, const struct sl_config *b,
                           struct namelist *added, struct namelist *removed,
                           struct namelist *changed) {
  for (size_t i = 0; i < b->n_upstreams; i++) {
    const struct sl_upstream_cfg *u = &b->upstreams[i], *o = NULL;
    for (size_t j = 0; j < a->n_upstreams && !o; j++)
      if (strcmp(a->upstreams[j].name, u->name) == 0) o = &a->upstreams[j];
    if (!o) namelist_add(added, u->name);
    else if (upstream_hash(o) != upstream_hash(u)) namelist_add(changed, u->name);
  }
  for (size_t j = 0; j < a->n_upstreams; j++) {
    bool kept = false;
    for (size_t i = 0; i < b->n_upstreams && !kept; i++)
      kept = strcmp(a->upstreams[j].name, b->upstreams[i].name) == 0;
    if (!kept) namelist_add(removed, a->upstreams[j].name);
  }
}

/* A policy state of the previous configuration and a hash of the
 * tunables it was used with. */
struct prev_state {
  void *state;
  uint64_t tunables;
};

static int prev_cmp(const void *x, const void *y) {
  uintptr_t a = (uintptr_t)((const struct prev_state *)x)->state;
  uintptr_t b = (uintptr_t)((const struct prev_state *)y)->state;
  return a < b ? -1 : a > b;
}

/* |state| (NULL: the policy has none) is carried over if it is one of
 * the previous configuration's, |prev[0..n)| sorted by state; it was also
 * retuned (converted to new rates, a new max, new breaker settings) when
 * its |tunables| differ from those it had. */
static void policy_classify(void *state, uint64_t tunables, const char *label,
                            const struct prev_state *prev, size_t n, struct namelist *carried,
                            struct namelist *retuned, struct namelist *fresh) {
  if (!state) return;
  struct prev_state key = {state, 0};
  const struct prev_state *p = bsearch(&key, prev, n, sizeof(*prev), prev_cmp);
  namelist_add(p ? carried : fresh, label);
  if (p && p->tunables != tunables) namelist_add(retuned, label);
}

/* Every policy of |b| that has state: carried over from |a| (the same
 * state object: sl_policies_attach matched kind and identity), and then
 * possibly retuned, or fresh. */
static void diff_policies(const struct sl_config *a, const struct sl_policy_set *pa,
                          const struct sl_config *b, const struct sl_policy_set *pb,
                          struct namelist *carried, struct namelist *retuned,
                          struct namelist *fresh) {
  size_t n = 0, cap = a->n_upstreams;
  for (size_t i = 0; i < a->n_routes; i++) cap += a->routes[i].n_rate_limits + 1;
  struct prev_state *prev = calloc(cap ? cap : 1, sizeof(*prev));
  if (!prev) abort();
  for (size_t i = 0; i < a->n_routes; i++) {
    const struct sl_route_cfg *r = &a->routes[i];
    for (size_t j = 0; j < r->n_rate_limits; j++)
      if (pa->routes[i].rate_limits[j])
        prev[n++] = (struct prev_state){pa->routes[i].rate_limits[j], rate_limit_tunables(&r->rate_limits[j])};
    if (pa->routes[i].concurrency) prev[n++] = (struct prev_state){pa->routes[i].concurrency, r->concurrency.max};
  }
  for (size_t i = 0; i < a->n_upstreams; i++)
    if (pa->breakers[i])
      prev[n++] = (struct prev_state){pa->breakers[i],
                                      breaker_tunables(&a->upstreams[i].breaker)};
  qsort(prev, n, sizeof(*prev), prev_cmp);
  char label[256];
  for (size_t i = 0; i < b->n_routes; i++) {
    const struct sl_route_cfg *r = &b->routes[i];
    for (size_t j = 0; j < r->n_rate_limits; j++)
      policy_classify(pb->routes[i].rate_limits[j], rate_limit_tunables(&r->rate_limits[j]),
                      r->rate_limits[j].name, prev, n, carried, retuned, fresh);
    snprintf(label, sizeof(label), "%s/concurrency", r->name);
    policy_classify(pb->routes[i].concurrency, r->concurrency.max, label, prev, n, carried, retuned,
                    fresh);
  }
  for (size_t i = 0; i < b->n_upstreams; i++) {
    snprintf(label, sizeof(label), "%s/breaker", b->upstreams[i].name);
    policy_classify(pb->breakers[i], breaker_tunables(&b->upstreams[i].breaker),
                    label, prev, n, carried, retuned, fresh);
  }
  free(prev);
}

/* A JSON fragment ("k":v,...) for sl_log_json, bounded so that the log
 * line stays whole: a field that would not fit is left out. */
struct frag {
  char buf[1700];
  size_t len;
};

static void frag_names(struct frag *f, const char *key, const struct namelist *nl) {
  if (!nl->n) return;
  char v[sizeof(nl->buf) + 64];
  size_t vl = 0;
  sl_json_escape(v, sizeof(v), &vl, nl->buf);
  if (nl->n > nl->shown) vl += (size_t)snprintf(v + vl, sizeof(v) - vl, " (+%u more)", nl->n - nl->shown);
  if (f->len + strlen(key) + vl + 8 >= sizeof(f->buf)) return;
  f->len += (size_t)snprintf(f->buf + f->len, sizeof(f->buf) - f->len, "%s\"%s\":\"%.*s\"",
                             f->len ? "," : "", key, (int)vl, v);
}

static void frag_str(struct frag *f, const char *key, const char *value) {
  char v[256];
  size_t vl = 0;
  sl_json_escape(v, sizeof(v), &vl, value);
  if (f->len + strlen(key) + vl + 8 >= sizeof(f->buf)) return;
  f->len += (size_t)snprintf(f->buf + f->len, sizeof(f->buf) - f->len, "%s\"%s\":\"%.*s\"",
                             f->len ? "," : "", key, (int)vl, v);
}

static void frag_num(struct frag *f, const char *key, unsigned long long v) {
  if (f->len + strlen(key) + 32 >= sizeof(f->buf)) return;
  f->len += (size_t)snprintf(f->buf + f->len, sizeof(f->buf) - f->len, "%s\"%s\":%llu",
                             f->len ? "," : "", key, v);
}

/* Logs the one line a reload leaves: what triggered it, the generation,
 * and what changed between |a| (the previous configuration) and |b|.
 * Also leaves a short summary in M.last_reload_summary for POST /reload. */
static void log_reload(const char *trigger, unsigned triggers, const struct sl_gen *ga,
                       const struct sl_gen *gb, size_t bl_before, size_t bl_after,
                       const struct lis_change *lc, double ms) {
  struct namelist r_add = {0}, r_del = {0}, r_chg = {0}, u_add = {0}, u_del = {0}, u_chg = {0};
  struct namelist sect = {0}, carried = {0}, retuned = {0}, fresh = {0};
  const struct sl_config *a = ga->cfg, *b = gb->cfg;
  diff_routes(a, b, &r_add, &r_del, &r_chg);
  diff_upstreams(a, b, &u_add, &u_del, &u_chg);
  diff_sections(a, b, &sect);
  diff_policies(a, ga->policies, b, gb->policies, &carried, &retuned, &fresh);
  struct frag f = {.len = 0};
  frag_str(&f, "trigger", trigger);
  if (triggers > 1) frag_num(&f, "coalesced_triggers", triggers);
  frag_num(&f, "generation", b->generation);
  if (f.len + 40 < sizeof(f.buf))
    f.len += (size_t)snprintf(f.buf + f.len, sizeof(f.buf) - f.len, ",\"duration_ms\":%.3f", ms);
  snprintf(M.last_reload_summary, sizeof(M.last_reload_summary),
           "routes +%u -%u ~%u; upstreams +%u -%u ~%u; listeners +%u -%u ~%u tls %u; "
           "blocklist %zu->%zu; policies %u carried, %u fresh; other: %s",
           r_add.n, r_del.n, r_chg.n, u_add.n, u_del.n, u_chg.n, lc->added.n, lc->removed.n,
           lc->changed.n, lc->tls.n, bl_before, bl_after, carried.n, fresh.n,
           sect.n ? sect.buf : "none");
  frag_str(&f, "summary", M.last_reload_summary);
  frag_names(&f, "routes_added", &r_add);
  frag_names(&f, "routes_removed", &r_del);
  frag_names(&f, "routes_changed", &r_chg);
  frag_names(&f, "upstreams_added", &u_add);
  frag_names(&f, "upstreams_removed", &u_del);
  frag_names(&f, "upstreams_changed", &u_chg);
  frag_names(&f, "listeners_added", &lc->added);
  frag_names(&f, "listeners_removed", &lc->removed);
  frag_names(&f, "listeners_changed", &lc->changed);
  frag_names(&f, "listeners_tls_reloaded", &lc->tls);
  char bl[48];
  snprintf(bl, sizeof(bl), "%zu->%zu", bl_before, bl_after);
  frag_str(&f, "blocklist_entries", bl);
  frag_num(&f, "policies_carried", carried.n);
  frag_num(&f, "policies_fresh", fresh.n);
  frag_names(&f, "policies_fresh_names", &fresh);
  frag_names(&f, "policies_carried_names", &carried);
  frag_names(&f, "policies_retuned_names", &retuned);
  frag_names(&f, "sections_changed", &sect);
  f.buf[f.len] = '\0';
  sl_log_json(SL_LOG_INFO, "configuration reloaded", "%s", f.buf);
}

/* ---- reloading ----------------------------------------------------- */

static void reload_failed(const char *msg) {
  snprintf(M.last_reload_error, sizeof(M.last_reload_error), "%s", msg);
  sl_log(SL_LOG_ERROR, "reload rejected; the running configuration is unchanged", "error", msg,
         NULL);
  set_reload_metrics(false, NULL);
}

/* Tells the watcher which files beyond the main one the running
 * configuration was read from (drop-ins, certificates); returns true if
 * that set changed. */
static bool watch_files_of(const struct sl_config *cfg) {
  if (!M.watch) return false;
  const char *extra[2 * 64];
  size_t n = 0;
  for (size_t i = 0; i < cfg->n_listeners && n + 2 <= sizeof(extra) / sizeof(extra[0]); i++) {
    if (!cfg->listeners[i].tls_certificate) continue;
    extra[n++] = cfg->listeners[i].tls_certificate;
    extra[n++] = cfg->listeners[i].tls_private_key;
  }
  return sl_watch_set_files(M.watch, cfg->include_dir, extra, n);
}

/* Loads, validates and publishes the configuration file: the whole new
 * configuration is checked (YAML, schema, certificates, new listener
 * addresses bound) before anything running is touched. Returns 0 on
 * success; on failure the running configuration is untouched, the error
 * is logged and left in M.last_reload_error, and the reload metrics say
 * so. Main thread; blocks at most ~1 s waiting for workers when
 * listeners change. */
static int reload_config(const char *trigger, unsigned triggers) {
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  M.last_reload_summary[0] = '\0';
  if (M.draining) {
    reload_failed("draining: the process is shutting down");
    return -1;
  }
  /* Fingerprint first: a file changed while it is read counts as a change
   * still to load, and a file that fails to load is not retried until it
   * changes again. */
  uint64_t fp = M.watch ? sl_watch_fingerprint(M.watch) : 0;
  struct sl_config_errors errs = {0};
  struct sl_config *cfg = sl_config_load(M.config_path, &errs);
  if (!cfg) {
    log_config_errors(&errs, "reload rejected: invalid configuration");
    size_t off = 0;
    M.last_reload_error[0] = '\0';
    for (size_t i = 0; i < errs.n && off < sizeof(M.last_reload_error) - 1; i++) {
      int n = snprintf(M.last_reload_error + off, sizeof(M.last_reload_error) - off,
                       "%s:%u:%u: %s\n", errs.items[i].file, errs.items[i].line,
                       errs.items[i].col, errs.items[i].message);
      if (n < 0) break;
      off += (size_t)n;
    }
    sl_config_errors_free(&errs);
    set_reload_metrics(false, NULL);
    if (M.watch) sl_watch_loaded(M.watch, fp);
    return -1;
  }
  /* A listener change moves sockets between listeners: the previous one
   * must have reached every worker first. */
  if (!workers_wait(M.listeners_gen, 1000)) {
    sl_config_free(cfg);
    reload_failed("workers have not applied the previous listener change yet; retry");
    return -1;
  }
  struct lis_change ch;
  char err[512];
  if (listeners_prepare(cfg, &ch, err, sizeof(err)) != 0) {
    sl_config_free(cfg);
    reload_failed(err);
    if (M.watch) sl_watch_loaded(M.watch, fp);
    return -1;
  }
  struct sl_gen *cur = sl_gen_current_ref();
  if (cur->cfg->admin_address.len != cfg->admin_address.len ||
      memcmp(&cur->cfg->admin_address.ss, &cfg->admin_address.ss, cfg->admin_address.len) != 0)
    sl_log(SL_LOG_WARN, "admin address changed: it takes effect at the next restart", NULL);
  uint64_t gen_next = gen_counter + 1;
  listeners_commit(&ch, gen_next);
  struct sl_gen *g = gen_publish(cfg, M.listeners, M.n_listeners);
  for (int i = 0; i < M.n_workers; i++) sl_worker_notify_reload(&M.workers[i]);
  if (ch.needs_ack) {
    M.listeners_gen = g->cfg->generation;
    if (!workers_wait(g->cfg->generation, 1000))
      sl_log(SL_LOG_WARN, "workers slow to apply the listener change; old sockets close later",
             NULL);
  }
  retired_collect(false);
  set_reload_metrics(true, g->cfg);
  if (M.watch) {
    if (watch_files_of(g->cfg)) fp = sl_watch_fingerprint(M.watch);
    sl_watch_loaded(M.watch, fp);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
  log_reload(trigger, triggers, cur, g, sl_blocklist_size(cur->blocklist),
             sl_blocklist_size(g->blocklist), &ch, ms);
  lis_change_free(&ch, false);
  sl_gen_unref(cur);
  M.last_reload_error[0] = '\0';
  return 0;
}

static void reload_timer_cb(struct ev_loop *loop, ev_timer *t, int revents) {
  (void)loop;
  (void)t;
  (void)revents;
  if (!M.reload_pending) return;
  M.reload_pending = false;
  unsigned n = M.reload_triggers;
  M.reload_triggers = 0;
  reload_config(M.reload_trigger, n);
}

/* Asks for a reload at the next loop iteration; triggers that arrive
 * before it runs join it (bounded: one pending reload at most). */
static void reload_request(const char *trigger) {
  if (!M.reload_pending) M.reload_trigger = trigger;
  M.reload_pending = true;
  M.reload_triggers++;
  if (!ev_is_active(&M.reload_timer)) {
    ev_timer_set(&M.reload_timer, 0.0, 0.0);
    ev_timer_start(M.loop, &M.reload_timer);
  }
}

static void on_files_changed(void *ud) {
  (void)ud;
  reload_request("file");
}

/* ---- admin hooks -------------------------------------------------- */

static void hook_ready(void *ud, int *status) {
  (void)ud;
  *status = (!M.draining && M.workers_running > 0) ? 200 : 503;
}

static void hook_config(void *ud, char **body, size_t *len) {
  (void)ud;
  struct sl_gen *g = sl_gen_current_ref();
  const struct sl_config *cfg = g->cfg;
  FILE *f = open_memstream(body, len);
  if (!f) {
    sl_gen_unref(g);
    return;
  }
  fprintf(f, "# generation: %llu\n", (unsigned long long)cfg->generation);
  time_t secs = (time_t)(cfg->loaded_unix_ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char ts[32];
  strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
  fprintf(f, "# loaded_at: %s\n", ts);
  for (size_t i = 0; i < cfg->n_sources; i++) {
    fprintf(f, "# source: %s sha256:", cfg->sources[i].path);
    for (int j = 0; j < 32; j++) fprintf(f, "%02x", cfg->sources[i].sha256[j]);
    fputc('\n', f);
  }
  sl_config_print(cfg, f);
  fclose(f);
  sl_gen_unref(g);
}

static void hook_reload(void *ud, int *status, char **body, size_t *len) {
  (void)ud;
  /* Runs now, so the answer can say how it went; a reload already
   * pending is part of this one. */
  unsigned triggers = M.reload_triggers + 1;
  M.reload_pending = false;
  M.reload_triggers = 0;
  int rv = reload_config("admin", triggers);
  FILE *f = open_memstream(body, len);
  if (rv == 0) {
    struct sl_gen *g = sl_gen_current_ref();
    *status = 200;
    if (f) {
      char esc[1024];
      size_t n_esc = 0;
      sl_json_escape(esc, sizeof(esc), &n_esc, M.last_reload_summary);
      esc[n_esc] = '\0';
      fprintf(f, "{\"result\":\"success\",\"generation\":%llu,\"changes\":\"%s\"}\n",
              (unsigned long long)g->cfg->generation, esc);
    }
    sl_gen_unref(g);
  } else {
    *status = 400;
    if (f) {
      char esc[2048];
      size_t n = 0;
      sl_json_escape(esc, sizeof(esc), &n, M.last_reload_error);
      esc[n] = '\0';
      fprintf(f, "{\"result\":\"failure\",\"errors\":\"%s\"}\n", esc);
    }
  }
  if (f) fclose(f);
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static void url_decode(char *s) {
  char *o = s;
  for (; *s; s++) {
    if (*s == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
      *o++ = (char)(hexval(s[1]) * 16 + hexval(s[2]));
      s += 2;
    } else if (*s == '+') {
      *o++ = ' ';
    } else {
      *o++ = *s;
    }
  }
  *o = '\0';
}

static void hook_explain(void *ud, const char *query, int *status, char **body, size_t *len) {
  (void)ud;
  char *q = strdup(query ? query : "");
  const char *names[32], *values[32];
  struct sl_explain_request r = {.method = "GET", .path = "/", .header_names = names,
                                 .header_values = values};
  char *save = NULL;
  for (char *tok = q ? strtok_r(q, "&", &save) : NULL; tok; tok = strtok_r(NULL, "&", &save)) {
    char *eq = strchr(tok, '=');
    if (!eq) continue;
    *eq = '\0';
    char *v = eq + 1;
    url_decode(v);
    if (strcmp(tok, "path") == 0) {
      r.path = v;
    } else if (strcmp(tok, "ip") == 0) {
      r.ip = v;
    } else if (strcmp(tok, "method") == 0) {
      r.method = v;
    } else if (strcmp(tok, "listener") == 0) {
      r.listener = v;
    } else if (strcmp(tok, "header") == 0 && r.n_headers < 32) {
      char *colon = strchr(v, ':');
      if (!colon) continue;
      *colon = '\0';
      char *val = colon + 1;
      while (*val == ' ') val++;
      names[r.n_headers] = v;
      values[r.n_headers++] = val;
    }
  }
  struct sl_gen *g = sl_gen_current_ref();
  FILE *f = open_memstream(body, len);
  char err[128];
  *status = 200;
  if (f) {
    if (sl_explain(g->cfg, g->policies, g->blocklist, &r, sl_now_ns(), (int64_t)time(NULL), f, err,
                   sizeof(err)) != 0) {
      *status = 400;
      char esc[256];
      size_t n = 0;
      sl_json_escape(esc, sizeof(esc), &n, err);
      esc[n] = '\0';
      fprintf(f, "{\"error\":\"%s\"}\n", esc);
    }
    fclose(f);
  }
  sl_gen_unref(g);
  free(q);
}

/* ---- housekeeping -------------------------------------------------- */

/* The metrics collector (sl_metrics_set_collector): at every scrape,
 * sluice_circuit_breaker_state of each upstream from its breaker's state
 * at this instant (open for long enough is half-open: the next request is
 * a probe), so the gauge never lags a refusal nor outlives `open_for`. */
static void breaker_gauges(void *ud) {
  (void)ud;
  struct sl_gen *g = sl_gen_current_ref();
  const struct sl_config *cfg = g->cfg;
  uint64_t now = sl_now_ns();
  for (size_t i = 0; i < cfg->n_upstreams; i++) {
    struct sl_breaker *b = sl_policy_state_breaker(g->policies->breakers[i]);
    const char *values[1] = {cfg->upstreams[i].name};
    struct sl_metric_series *bs = sl_metrics_series(sl_stats.breaker_state, values);
    if (bs) sl_metric_gauge_set(bs, b ? (int64_t)sl_breaker_state_at(b, now) : 0);
  }
  sl_gen_unref(g);
}

/* Once a second on the main thread: gauges that are cheaper to sample
 * than to maintain on the request path, and a bounded sweep of idle
 * limiter keys (so sluice_limiter_keys reflects active keys). */
static void housekeeping_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)w;
  (void)revents;
  struct sl_gen *g = sl_gen_current_ref();
  const struct sl_config *cfg = g->cfg;
  uint64_t now = sl_now_ns();
  for (size_t i = 0; i < cfg->n_routes; i++) {
    const struct sl_route_cfg *r = &cfg->routes[i];
    for (size_t j = 0; j < r->n_rate_limits; j++) {
      struct sl_ratelimit_table *t = sl_policy_state_ratelimit(g->policies->routes[i].rate_limits[j]);
      if (!t) continue;
      sl_ratelimit_sweep(t, now, 4096);
      const char *values[2] = {r->name, r->rate_limits[j].name};
      struct sl_metric_series *ks = sl_metrics_series(sl_stats.limiter_keys, values);
      if (ks) sl_metric_gauge_set(ks, (int64_t)sl_ratelimit_keys(t));
    }
  }
  sl_gen_unref(g);
  /* Listeners removed by a reload go once their last connection closed. */
  retired_collect(false);
}

/* ---- signals and shutdown ----------------------------------------- */

static void begin_shutdown(const char *why) {
  if (M.draining) return;
  M.draining = true;
  struct sl_metric_series *d = sl_metrics_series(sl_stats.draining, NULL);
  if (d) sl_metric_gauge_set(d, 1);
  struct sl_gen *g = sl_gen_current_ref();
  uint64_t timeout = g->cfg->drain_timeout_ms;
  sl_gen_unref(g);
  sl_log(SL_LOG_INFO, "draining", "signal", why, NULL);
  for (int i = 0; i < M.n_workers; i++) sl_worker_notify_stop(&M.workers[i], timeout);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents) {
  (void)loop;
  (void)revents;
  if (w->signum == SIGHUP) {
    reload_request("SIGHUP");
    return;
  }
  begin_shutdown(w->signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* Workers leave their loops on their own once drained (or at the drain
 * deadline); the main loop polls for that and then joins them, so the
 * admin listener keeps answering /readyz 503 meanwhile. */
static void exit_poll_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)w;
  (void)revents;
  if (M.draining && atomic_load(&sl_workers_exited) == M.n_workers) ev_break(loop, EVBREAK_ALL);
}

/* ---- commands ----------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: sluice [run] -c FILE [--workers N] [--log-level debug|info|warn|error]\n"
          "       sluice check -c FILE [--print]\n"
          "       sluice explain -c FILE [--ip A] [--method M] [--header 'K: V']... PATH\n"
          "       sluice version\n");
}

static struct sl_config *load_or_report(const char *path, bool as_log) {
  struct sl_config_errors errs = {0};
  struct sl_config *cfg = sl_config_load(path, &errs);
  if (!cfg) {
    if (as_log)
      log_config_errors(&errs, "invalid configuration");
    else
      sl_config_errors_print(&errs, stderr);
    sl_config_errors_free(&errs);
  }
  return cfg;
}

static int cmd_check(const char *path, bool print) {
  struct sl_config *cfg = load_or_report(path, false);
  if (!cfg) return 1;
  /* Validate exactly what `run` would load: certificates and keys are
   * opened and matched too, so a deploy pipeline's check cannot pass a
   * configuration that then fails to start (postmortem 003). */
  int bad = 0;
  for (size_t i = 0; i < cfg->n_listeners; i++) {
    const struct sl_listener_cfg *lc = &cfg->listeners[i];
    if (!lc->tls_certificate) continue;
    char err[512];
    SSL_CTX *ctx = sl_tls_ctx_new(lc->tls_certificate, lc->tls_private_key, err, sizeof(err));
    if (!ctx) {
      fprintf(stderr, "%s:%u:%u: listener '%s': %s\n", lc->mark.file ? lc->mark.file : path,
              lc->mark.line, lc->mark.col, lc->name, err);
      bad = 1;
      continue;
    }
    SSL_CTX_free(ctx);
  }
  if (bad) {
    sl_config_free(cfg);
    return 1;
  }
  if (print) sl_config_print(cfg, stdout);
  else fprintf(stderr, "%s: ok\n", path);
  sl_config_free(cfg);
  return 0;
}

/* Evaluates against fresh policy state (full buckets, closed breakers):
 * what the configuration does to this request in a quiet moment. For the
 * live state of a running proxy, use GET /explain on the admin listener. */
static int cmd_explain(const char *path, const char *method, const char *ip, const char **hdrs,
                       int n_hdrs, const char *req_path) {
  struct sl_config *cfg = load_or_report(path, false);
  if (!cfg) return 1;
  struct sl_policy_set *ps = sl_policy_set_new(cfg, NULL, sl_now_ns());
  if (!ps) abort();
  struct sl_blocklist *bl = sl_blocklist_new(&cfg->blocklist, cfg->mode);
  if (!bl) abort();
  const char *names[64], *values[64];
  char *copies[64];
  int n = 0, rc = 0;
  for (int i = 0; i < n_hdrs && i < 64; i++) {
    copies[n] = strdup(hdrs[i]);
    char *colon = copies[n] ? strchr(copies[n], ':') : NULL;
    if (!colon) {
      fprintf(stderr, "sluice explain: --header wants 'Name: value', got '%s'\n", hdrs[i]);
      free(copies[n]);
      rc = 1;
      goto out;
    }
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ') v++;
    names[n] = copies[n];
    values[n++] = v;
  }
  struct sl_explain_request r = {.method = method, .path = req_path, .ip = ip,
                                 .header_names = names, .header_values = values, .n_headers = n};
  char err[128];
  if (sl_explain(cfg, ps, bl, &r, sl_now_ns(), (int64_t)time(NULL), stdout, err, sizeof(err)) != 0) {
    fprintf(stderr, "sluice explain: %s\n", err);
    rc = 1;
  }
out:
  for (int i = 0; i < n; i++) free(copies[i]);
  sl_blocklist_del(bl);
  sl_policy_set_del(ps);
  sl_config_free(cfg);
  return rc;
}

static int cmd_run(const char *path, int workers) {
  M.config_path = path;
  sl_stats_init();
  struct sl_config *cfg = load_or_report(path, true);
  if (!cfg) {
    set_reload_metrics(false, NULL);
    return 1;
  }
  M.n_workers = workers > 0 ? workers : cpus_available();
  sl_n_workers = M.n_workers;
  signal(SIGPIPE, SIG_IGN);

  M.n_listeners = (int)cfg->n_listeners;
  M.listeners = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*M.listeners));
  if (!M.listeners) abort();
  for (size_t i = 0; i < cfg->n_listeners; i++) {
    char err[512];
    M.listeners[i] = listener_open(&cfg->listeners[i], M.n_workers, err, sizeof(err));
    if (!M.listeners[i]) {
      sl_log(SL_LOG_ERROR, "cannot open listener", "listener", cfg->listeners[i].name, "error",
             err, NULL);
      for (size_t j = 0; j < i; j++) listener_close(M.listeners[j]);
      sl_config_free(cfg);
      return 2;
    }
  }
  struct sl_gen *g = gen_publish(cfg, M.listeners, M.n_listeners);
  sl_metrics_set_collector(breaker_gauges, NULL); /* a generation is current from now on */
  set_reload_metrics(true, cfg);

  M.loop = EV_DEFAULT;
  main_thread = pthread_self();
  ev_async_init(&retired_async, retired_cb);
  ev_async_start(M.loop, &retired_async);
  retired_loop = M.loop;
  /* Watch from the files as loaded; a change between the load and this
   * fingerprint (microseconds) would wait for the next one. */
  M.watch = sl_watch_new(M.loop, path, on_files_changed, NULL);
  watch_files_of(cfg);
  sl_watch_loaded(M.watch, sl_watch_fingerprint(M.watch));
  ev_init(&M.reload_timer, reload_timer_cb);
  if (cfg->admin_address.len) {
    static const struct sl_admin_hooks hooks = {
        .ready = hook_ready, .config = hook_config, .reload = hook_reload,
        .explain = hook_explain};
    char err[256];
    M.admin = sl_admin_new(M.loop, &cfg->admin_address, &hooks, NULL, err, sizeof(err));
    if (!M.admin) {
      sl_log(SL_LOG_ERROR, "cannot open admin listener", "error", err, NULL);
      for (int j = 0; j < M.n_listeners; j++) listener_close(M.listeners[j]);
      return 2;
    }
  }

  /* Workers must not take signals: the main loop handles them. */
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, &old);
  M.workers = calloc((size_t)M.n_workers, sizeof(*M.workers));
  if (!M.workers) abort();
  for (int i = 0; i < M.n_workers; i++) {
    sl_worker_init(&M.workers[i], i, sl_gen_ref(g));
    if (sl_worker_start(&M.workers[i]) != 0) {
      sl_log(SL_LOG_ERROR, "cannot start worker thread", NULL);
      return 2;
    }
    M.workers_running++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);

  ev_signal_init(&M.sig_term, on_signal, SIGTERM);
  ev_signal_init(&M.sig_int, on_signal, SIGINT);
  ev_signal_init(&M.sig_hup, on_signal, SIGHUP);
  ev_signal_start(M.loop, &M.sig_term);
  ev_signal_start(M.loop, &M.sig_int);
  ev_signal_start(M.loop, &M.sig_hup);
  ev_timer_init(&M.exit_poll, exit_poll_cb, 0.05, 0.05);
  ev_timer_start(M.loop, &M.exit_poll);
  ev_timer_init(&M.housekeeping, housekeeping_cb, 0.0, 1.0);
  ev_timer_start(M.loop, &M.housekeeping);

  char nw[16];
  snprintf(nw, sizeof(nw), "%d", M.n_workers);
  for (int i = 0; i < M.n_listeners; i++)
    sl_log(SL_LOG_INFO, "listening", "listener", M.listeners[i]->name, "address",
           M.listeners[i]->address, "tls", M.listeners[i]->tls ? "on" : "off", NULL);
  sl_log(SL_LOG_INFO, "started", "version", SLUICE_VERSION, "workers", nw, "config", path, NULL);

  ev_run(M.loop, 0);
  /* Workers are gone after the joins below; what they retired late is
   * freed here. */

  for (int i = 0; i < M.n_workers; i++) sl_worker_join(&M.workers[i]);
  M.workers_running = 0;
  retired_loop = NULL; /* from here on the main thread frees directly */
  retired_free_all();
  sl_admin_del(M.admin);
  ev_timer_stop(M.loop, &M.reload_timer);
  sl_watch_del(M.watch);
  M.watch = NULL;
  for (int i = 0; i < M.n_listeners; i++) listener_close(M.listeners[i]);
  retired_collect(true);
  free(M.listeners);
  free(M.workers);
  pthread_mutex_lock(&gen_lock);
  struct sl_gen *last = gen_current;
  gen_current = NULL;
  pthread_mutex_unlock(&gen_lock);
  sl_gen_unref(last);
  sl_log(SL_LOG_INFO, "stopped", NULL);
  sl_metrics_reset();
  return 0;
}

int main(int argc, char **argv) {
  const char *cmd = "run";
  int argi = 1;
  if (argc > 1 && argv[1][0] != '-') {
    cmd = argv[1];
    argi = 2;
  }
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
    printf("sluice %s (nghttp2 %s, %s)\n", SLUICE_VERSION, nghttp2_version(0)->version_str,
           OpenSSL_version(OPENSSL_VERSION));
    return 0;
  }
  if (strcmp(cmd, "run") != 0 && strcmp(cmd, "check") != 0 && strcmp(cmd, "explain") != 0) {
    fprintf(stderr, "sluice: unknown command '%s'\n", cmd);
    usage(stderr);
    return 1;
  }
  static const struct option opts[] = {
      {"config", required_argument, NULL, 'c'}, {"workers", required_argument, NULL, 'w'},
      {"log-level", required_argument, NULL, 'l'}, {"print", no_argument, NULL, 'p'},
      {"ip", required_argument, NULL, 'i'},     {"header", required_argument, NULL, 'H'},
      {"method", required_argument, NULL, 'm'}, {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *config = NULL, *ip = NULL, *method = "GET";
  const char *hdrs[64];
  int n_hdrs = 0, workers = 0;
  bool print = false;
  optind = argi;
  int ch;
  while ((ch = getopt_long(argc, argv, "c:w:l:H:h", opts, NULL)) != -1) {
    switch (ch) {
    case 'c':
      config = optarg;
      break;
    case 'w': {
      char *end;
      long v = strtol(optarg, &end, 10);
      if (*end || v < 1 || v > 256) {
        fprintf(stderr, "sluice: --workers wants a number from 1 to 256, got '%s'\n", optarg);
        return 1;
      }
      workers = (int)v;
      break;
    }
    case 'l':
      if (sl_log_level_parse(optarg, &sl_log_min_level) != 0) {
        fprintf(stderr, "sluice: unknown log level '%s'\n", optarg);
        return 1;
      }
      break;
    case 'p':
      print = true;
      break;
    case 'i':
      ip = optarg;
      break;
    case 'H':
      if (n_hdrs < 64) hdrs[n_hdrs++] = optarg;
      break;
    case 'm':
      method = optarg;
      break;
    case 'h':
      usage(stdout);
      return 0;
    default:
      usage(stderr);
      return 1;
    }
  }
  if (!config) {
    fprintf(stderr, "sluice: -c FILE is required\n");
    usage(stderr);
    return 1;
  }
  if (strcmp(cmd, "check") == 0) return cmd_check(config, print);
  if (strcmp(cmd, "explain") == 0) {
    if (optind != argc - 1) {
      fprintf(stderr, "sluice explain: give exactly one request PATH\n");
      usage(stderr);
      return 1;
    }
    return cmd_explain(config, method, ip, hdrs, n_hdrs, argv[optind]);
  }
  if (optind != argc) {
    fprintf(stderr, "sluice: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return 1;
  }
  return cmd_run(config, workers);
}
