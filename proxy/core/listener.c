/*
 * sluice — listeners: bind, open, close, and a reload's listener change
 * (prepare, then commit). See listener.h.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/config-t.h"
#include "sluice/hash.h"
#include "sluice/log.h"
#include "core/listener.h"
#include "core/stats.h"
#include "core/stream-t.h" /* SL_PROTO_H1, SL_PROTO_H2 */
#include "front/tls.h"

static int bind_socket(const struct sl_sockaddr *a, bool reuseport, char *err, size_t errlen) {
  int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  /* Linux copies TCP_NODELAY to every accepted socket: set once here, not
   * once per connection (Linux's sk_clone keeps the listener's nonagle flag). */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
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

/* Device, inode, size and mtime of the certificate, key and ticket key
 * files, the ticket key file's path, the suites and groups: a reload
 * rebuilds a listener's TLS context only when these or the paths changed (a rotated certificate
 * keeps its path, e.g. a Secret's ..data swap). Taken before the files
 * are read. */
static uint64_t tls_files_fp(const struct sl_listener_cfg *lc) {
  uint64_t h = 1469598103934665603ULL;
  const char *const settings[2] = {lc->tls_ciphersuites, lc->tls_groups};
  for (int i = 0; i < 2; i++) {
    for (const char *c = settings[i] ? settings[i] : ""; *c; c++)
      h = (h ^ (unsigned char)*c) * 1099511628211ULL;
    h = (h ^ 0xfe) * 1099511628211ULL;
  }
  const char *paths[3] = {lc->tls_certificate, lc->tls_private_key, lc->tls_ticket_keys};
  for (int i = 0; i < 3; i++) {
    struct stat st;
    uint64_t v[5] = {0};
    if (paths[i]) {
      for (const char *c = paths[i]; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ULL;
      h = (h ^ 0xff) * 1099511628211ULL;
    }
    if (paths[i] && stat(paths[i], &st) == 0) {
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

static uint64_t proxy_protocol_fp(const struct sl_listener_cfg *lc) {
  if (!lc->proxy_protocol.n_trusted) return 0;
  uint64_t h = sl_hash_mix(SL_HASH_SEED, lc->proxy_protocol.trusted,
                           lc->proxy_protocol.n_trusted * sizeof(*lc->proxy_protocol.trusted));
  return sl_hash_mix_u64(sl_hash_mix_u64(h, lc->proxy_protocol.n_trusted),
                         lc->proxy_protocol.timeout_ms) | 1;
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
  atomic_store(&l->max_idle, lc->max_idle);
  atomic_store(&l->proxy_protocol_fp, proxy_protocol_fp(lc));
}

static bool listener_limits_differ(const struct sl_listener *l, const struct sl_listener_cfg *lc) {
  return atomic_load(&l->max_connections) != lc->max_connections ||
         atomic_load(&l->request_header_timeout_ms) != lc->request_header_timeout_ms ||
         atomic_load(&l->idle_timeout_ms) != lc->idle_timeout_ms ||
         atomic_load(&l->header_bytes) != lc->header_bytes ||
         atomic_load(&l->headers) != lc->headers || atomic_load(&l->h2_streams) != lc->h2_streams ||
         atomic_load(&l->max_idle) != lc->max_idle ||
         atomic_load(&l->proxy_protocol_fp) != proxy_protocol_fp(lc);
}

/* Frees |l|: its remaining sockets, its TLS context, its strings. The
 * caller knows no worker watches it and no connection points to it. */
void sl_listener_close(struct sl_listener *l) {
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
    l->tls_files_fp = tls_files_fp(lc);
    SSL_CTX *ctx = sl_tls_ctx_new(lc, err, errlen);
    if (!ctx) {
      sl_listener_close(l);
      return NULL;
    }
    atomic_init(&l->ssl_ctx, ctx);
  }
  l->m_conn_h1 = sl_stats_conn_series(l->name, SL_PROTO_H1);
  l->m_conn_h2 = sl_stats_conn_series(l->name, SL_PROTO_H2);
  l->m_h2_asleep = sl_stats_h2_asleep_series(l->name);
  l->m_idle_evictions = sl_stats_idle_evictions_series(l->name);
  l->m_idle_held = sl_stats_idle_held_series(l->name);
  return l;
}

/* Binds one socket per worker for |lc|. The first bind checks the address
 * is free: SO_REUSEPORT would otherwise let two sluice processes share a
 * port silently, so probe with an exclusive bind first. */
struct sl_listener *sl_listener_open(const struct sl_listener_cfg *lc, int n_workers, char *err,
                                     size_t errlen) {
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
  sl_listener_close(l);
  return NULL;
}


/* ---- retiring what workers may still use --------------------------- */

static void retire(struct sl_listener_set *set, SSL_CTX *ctx, struct sl_listener *lis,
                   uint64_t gen) {
  struct sl_retired *r = calloc(1, sizeof(*r));
  if (!r) abort();
  r->ctx = ctx;
  r->lis = lis;
  r->gen = gen;
  r->next = set->retired;
  set->retired = r;
}

static void collect(struct sl_listener_set *set, uint64_t acked, bool all) {
  for (struct sl_retired **pp = &set->retired; *pp;) {
    struct sl_retired *r = *pp;
    bool done = all || (acked >= r->gen &&
                        (!r->lis || atomic_load(&r->lis->n_connections) == 0));
    if (!done) {
      pp = &r->next;
      continue;
    }
    if (r->ctx) SSL_CTX_free(r->ctx);
    if (r->lis) sl_listener_close(r->lis);
    *pp = r->next;
    free(r);
  }
}

void sl_listener_set_collect(struct sl_listener_set *set, uint64_t acked) {
  collect(set, acked, false);
}

void sl_listener_set_gauges(const struct sl_listener_set *set) {
  for (int i = 0; i < set->n; i++) {
    struct sl_listener *l = set->items[i];
    if (l->m_idle_held)
      sl_metric_gauge_set(l->m_idle_held,
                          (int64_t)atomic_load_explicit(&l->n_idle, memory_order_relaxed));
  }
}

int sl_listener_set_open(struct sl_listener_set *set, const struct sl_config *cfg, int n_workers,
                         const char **name, char *err, size_t errlen) {
  set->n_workers = n_workers;
  set->n = (int)cfg->n_listeners;
  set->items = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*set->items));
  if (!set->items) abort();
  for (size_t i = 0; i < cfg->n_listeners; i++) {
    set->items[i] = sl_listener_open(&cfg->listeners[i], n_workers, err, errlen);
    if (!set->items[i]) {
      *name = cfg->listeners[i].name;
      for (size_t j = 0; j < i; j++) sl_listener_close(set->items[j]);
      free(set->items);
      set->items = NULL;
      set->n = 0;
      return -1;
    }
  }
  return 0;
}

void sl_listener_set_close(struct sl_listener_set *set) {
  for (int i = 0; i < set->n; i++) sl_listener_close(set->items[i]);
  collect(set, 0, true);
  free(set->items);
  set->items = NULL;
  set->n = 0;
}

/* ---- listener changes on reload ------------------------------------ */

void sl_lis_change_free(struct sl_lis_change *ch, bool failed) {
  for (size_t i = 0; failed && i < ch->n; i++) {
    if (ch->plans[i].made) sl_listener_close(ch->plans[i].made);
    if (ch->plans[i].new_ctx) SSL_CTX_free(ch->plans[i].new_ctx);
  }
  free(ch->plans);
  free(ch->claimed);
}

/* Prepares every listener of |cfg| without touching the running ones:
 * loads changed certificates, binds new addresses. Returns 0, or -1 with
 * a message in |err| after undoing what it prepared (the running
 * configuration stays as it is). */
int sl_listeners_prepare(struct sl_listener_set *set, const struct sl_config *cfg,
                         struct sl_lis_change *ch, char *err, size_t errlen) {
  memset(ch, 0, sizeof(*ch));
  ch->n = cfg->n_listeners;
  ch->plans = calloc(ch->n ? ch->n : 1, sizeof(*ch->plans));
  ch->claimed = calloc(set->n ? (size_t)set->n : 1, sizeof(bool));
  if (!ch->plans || !ch->claimed) abort();
  /* First the listeners that stay, so that one replaced by another name
   * cannot steal a socket from a listener that is kept. */
  for (size_t i = 0; i < ch->n; i++) {
    const struct sl_listener_cfg *lc = &cfg->listeners[i];
    struct sl_lis_plan *p = &ch->plans[i];
    p->lc = lc;
    for (int j = 0; j < set->n; j++) {
      struct sl_listener *l = set->items[j];
      if (ch->claimed[j] || strcmp(l->name, lc->name) != 0 ||
          strcmp(l->address, lc->address.text) != 0 || l->tls != (lc->tls_certificate != NULL))
        continue;
      ch->claimed[j] = true;
      p->keep = l;
      break;
    }
  }
  for (size_t i = 0; i < ch->n; i++) {
    struct sl_lis_plan *p = &ch->plans[i];
    const struct sl_listener_cfg *lc = p->lc;
    char why[400];
    if (p->keep) {
      if (!lc->tls_certificate) continue;
      uint64_t fp = tls_files_fp(lc);
      if (fp == p->keep->tls_files_fp && strcmp(p->keep->tls_certificate, lc->tls_certificate) == 0 &&
          strcmp(p->keep->tls_private_key, lc->tls_private_key) == 0)
        continue;
      p->new_fp = fp;
      p->new_ctx = sl_tls_ctx_new(lc, why, sizeof(why));
      if (!p->new_ctx) goto fail;
      continue;
    }
    for (int j = 0; j < set->n && !p->from; j++) {
      if (!ch->claimed[j] && strcmp(set->items[j]->address, lc->address.text) == 0) {
        ch->claimed[j] = true;
        p->from = set->items[j];
      }
    }
    p->made = p->from ? listener_new(lc, set->n_workers, why, sizeof(why))
                      : sl_listener_open(lc, set->n_workers, why, sizeof(why));
    if (!p->made) goto fail;
    continue;
  fail:
    snprintf(err, errlen, "listener %s: %s", lc->name, why);
    sl_lis_change_free(ch, true);
    return -1;
  }
  return 0;
}

/* Applies a prepared change (cannot fail): stores limits, swaps TLS
 * contexts, moves sockets to successors, retires what is gone as of
 * generation |gen|, and makes the new set set->items. Call before the
 * generation is published, so workers see the moved sockets with it. */
void sl_listeners_commit(struct sl_listener_set *set, struct sl_lis_change *ch, uint64_t gen) {
  struct sl_listener **next = calloc(ch->n ? ch->n : 1, sizeof(*next));
  if (!next) abort();
  for (size_t i = 0; i < ch->n; i++) {
    struct sl_lis_plan *p = &ch->plans[i];
    if (p->keep) {
      if (listener_limits_differ(p->keep, p->lc)) sl_namelist_add(&ch->changed, p->keep->name);
      listener_set_limits(p->keep, p->lc);
      if (p->new_ctx) {
        retire(set, atomic_exchange(&p->keep->ssl_ctx, p->new_ctx), NULL, gen);
        free(p->keep->tls_certificate);
        free(p->keep->tls_private_key);
        p->keep->tls_certificate = strdup(p->lc->tls_certificate);
        p->keep->tls_private_key = strdup(p->lc->tls_private_key);
        if (!p->keep->tls_certificate || !p->keep->tls_private_key) abort();
        p->keep->tls_files_fp = p->new_fp;
        p->new_ctx = NULL;
        sl_namelist_add(&ch->tls, p->keep->name);
        ch->needs_ack = true;
      }
      next[i] = p->keep;
      continue;
    }
    if (p->from) {
      for (int w = 0; w < set->n_workers; w++) {
        p->made->fds[w] = p->from->fds[w];
        p->from->fds[w] = -1;
      }
      sl_namelist_add(&ch->changed, p->made->name);
    } else {
      sl_namelist_add(&ch->added, p->made->name);
    }
    sl_log(SL_LOG_INFO, "listening", "listener", p->made->name, "address", p->made->address,
           "tls", p->made->tls ? "on" : "off", NULL);
    next[i] = p->made;
    p->made = NULL;
    ch->needs_ack = true;
  }
  for (int j = 0; j < set->n; j++) {
    struct sl_listener *l = set->items[j];
    bool stays = false;
    for (size_t i = 0; i < ch->n && !stays; i++) stays = next[i] == l;
    if (stays) continue;
    bool replaced = false;
    for (size_t i = 0; i < ch->n && !replaced; i++) replaced = ch->plans[i].from == l;
    if (!replaced) {
      sl_namelist_add(&ch->removed, l->name);
      sl_log(SL_LOG_INFO, "stopped listening; open connections carry on", "listener", l->name,
             "address", l->address, NULL);
    }
    retire(set, NULL, l, gen);
    ch->needs_ack = true;
  }
  free(set->items);
  set->items = next;
  set->n = (int)ch->n;
}

