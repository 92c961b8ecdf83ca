/*
 * sluice — the per-worker client of the fleet-wide limits' backend. See
 * client.h for the contract; the lease maths are policies/lease.c.
 *
 * The Redis side (SCRIPT below) is one GCRA state per key: a string
 * holding the key's theoretical arrival time in microseconds of Redis's
 * own clock (TIME, so replicas' clocks never matter), with a TTL of the
 * time until the bucket is full again. An idle key therefore costs Redis
 * nothing once its TTL has passed (a full bucket carries no information),
 * which bounds Redis memory by the keys active within one bucket's refill
 * time. One EVALSHA carries the asks of one loop iteration, up to
 * BATCH_MAX keys (a worker under a storm decides many new keys per
 * iteration; one command per key would make Redis's command rate the
 * request rate). For each key, an ask for n tokens grants min(n,
 * available) at once, atomically (a script runs alone), and answers
 * {granted, remaining, retry_us}: retry_us is the time until one more
 * token when it granted less.
 *
 * Store. A chained hash table of (limit identity, key bytes) -> entry
 * holding the key's struct sl_lease, grown by doubling, at most MAX_KEYS
 * entries (beyond, new keys share one overflow entry per worker, decided
 * by the fallback mode: bounded memory over accuracy). A timer sweeps a
 * bounded slice of buckets per tick and frees entries idle for IDLE_NS
 * with nothing in flight; their unspent tokens are given up (under-
 * admission, the safe side).
 *
 * Command timeouts. Replies come back in the order commands were sent,
 * so a ring of send times (one per command with a callback, which every
 * command here has) gives the oldest outstanding command; a timer checks
 * it, and one older than command_timeout ends the connection: hiredis
 * then calls every pending callback with no reply, each lease in flight
 * fails (its key asks again once up), and a reconnection is scheduled.
 *
 * Sentinel. With `sentinel:` every connection starts with discovery: a
 * short-lived connection to one sentinel asks SENTINEL
 * get-master-addr-by-name (the sentinels are tried in turn, one per
 * attempt, under the same connect/command timeouts and backoff), then the
 * primary it names is connected and its ROLE must be "master" (a sentinel
 * may lag behind a failover). A lost connection or a -READONLY reply (the
 * primary was demoted) ends the connection, and the reconnection
 * discovers again: the bucket stays on one primary, so the script stays
 * atomic. Replication is asynchronous: the last few grants before a
 * failover may be lost by the new primary (over-admission of at most
 * those, bounded by one lease of the fleet).
 */
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libev.h>
#include <openssl/evp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/hash.h"
#include "sluice/lease.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "core/clock.h"
#include "core/container.h"
#include "global/client.h"
#include "global/resolve.h"
#include "global/sentinel_watch.h"

static const char SCRIPT[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local out = {}\n"
    "for i = 1, #KEYS do\n"
    "  local period = tonumber(ARGV[3 * i - 2])\n"
    "  local burst = tonumber(ARGV[3 * i - 1])\n"
    "  local ask = tonumber(ARGV[3 * i])\n"
    "  local tat = tonumber(redis.call('GET', KEYS[i]) or now)\n"
    "  if tat < now then tat = now end\n"
    "  local avail = math.floor((now + burst * period - tat) / period)\n"
    "  if avail < 0 then avail = 0 end\n"
    "  local g = ask\n"
    "  if g > avail then g = avail end\n"
    "  tat = tat + g * period\n"
    "  if g > 0 then\n"
    "    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)\n"
    "  end\n"
    "  local retry = 0\n"
    "  if g < ask then\n"
    "    retry = math.ceil(tat + period - now - burst * period)\n"
    "    if retry < 0 then retry = 0 end\n"
    "  end\n"
    "  out[3 * i - 2] = g\n"
    "  out[3 * i - 1] = avail - g\n"
    "  out[3 * i] = retry\n"
    "end\n"
    "return out\n";

#define MAX_KEYS (1u << 20)          /* per worker */
#define IDLE_NS (30ull * 1000000000u) /* an entry unused this long is dropped */
#define RING (1u << 16)              /* outstanding commands per connection */
#define BACKOFF_MIN_S 0.05
#define BACKOFF_MAX_S 5.0
#define SWEEP_BUCKETS 4096           /* per sweep tick (bounded work) */
#define FB_CACHE 16
#define BATCH_MAX 64                 /* keys per EVALSHA */
#define KEY_MAX 512                  /* a Redis key's bytes (longer keys are hashed) */

/* The asks of one loop iteration, sent as one EVALSHA (the script loops
 * over its keys): the command rate is bounded by the loop's iterations,
 * not by the number of keys. Each entry is in flight (sl_lease_ask) until
 * the reply, so the sweep leaves it alone. */
struct batch {
  uint32_t n;
  uint32_t ask[BATCH_MAX];
  struct entry *e[BATCH_MAX];
};

struct entry {
  struct entry *next;          /* hash chain */
  uint64_t limit_id, hash;
  const char *limit_name;      /* the limit's name in the snapshot it was last used with */
  struct sl_lease l;
  struct sl_lease_params p;    /* the key's parameters at its last decision */
  uint32_t klen;
  uint8_t key[];
};

enum conn_state {
  CONN_IDLE = 0,
  CONN_RESOLVE,     /* looking up a host name (resolve.h), under connect_timeout */
  CONN_DISCOVER,    /* asking a sentinel for the primary */
  CONN_CONNECTING,
  CONN_HANDSHAKE,
  CONN_UP
};

/* What a lookup is for: a sentinel to ask, or the primary itself. */
enum target { TARGET_PRIMARY, TARGET_SENTINEL };

struct sl_global_client {
  struct ev_loop *loop;
  int worker_id;
  const struct sl_global_cfg *g; /* NULL: no backend */
  uint64_t identity;
  struct sl_global_port port;

  redisAsyncContext *ac;
  redisAsyncContext *sac;      /* the sentinel being asked (CONN_DISCOVER) */
  size_t sentinel_at;          /* the sentinel to ask next */
  char sentinel_ip[INET6_ADDRSTRLEN]; /* the one asked last, and its port */
  int sentinel_port;
  struct sl_sentinel_watch *watch; /* +switch-master from it, while up */
  char primary[INET6_ADDRSTRLEN + 8]; /* "ip:port" of the primary (connected or last tried) */
  struct sl_resolve *resolving; /* a lookup in flight (CONN_RESOLVE) */
  enum target resolve_for;
  int resolve_port;
  char resolve_host[254];      /* the name being looked up (logs) */
  unsigned resolve_pick;       /* rotates over a name's addresses, one per attempt */
  enum conn_state state;
  bool counted_down;           /* this worker counts in n_down */
  bool script_loading;
  double backoff_s;
  ev_timer retry_timer;        /* reconnect */
  ev_timer check_timer;        /* command and connect timeouts */
  ev_timer sweep_timer;
  ev_prepare flush_watcher;    /* sends |pending| before the loop waits */
  struct batch *pending;       /* asks not sent yet (this iteration's) */
  char scratch[BATCH_MAX * (KEY_MAX + 48)]; /* the arguments of one EVALSHA */
  ev_tstamp connect_started;
  uint64_t ring[RING];         /* send times (ev_now, ns) of outstanding commands */
  uint32_t ring_head, ring_tail;

  struct entry **buckets;
  size_t nbuckets, nkeys, sweep_at;
  struct entry *overflow;      /* keys beyond MAX_KEYS */
  const char *fb_name[FB_CACHE];
  struct sl_metric_series *fb_series[FB_CACHE];
  unsigned fb_next;
  char sha[41];
};

/* ---- process-wide state: metrics and the one log line per transition */

static _Atomic int n_configured, n_down;
static _Atomic bool ever_up;
static _Atomic bool resolve_warned; /* a failed lookup was logged; cleared by a good one */
static struct sl_metric_series *m_up, *m_commands, *m_asks, *m_granted, *m_keys, *m_timeouts, *m_errors,
    *m_disconnects;
static struct sl_metric_family *f_fallback;
static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;

static void metrics_init(void) {
  m_up = sl_metrics_series(sl_metrics_family("sluice_global_backend_up",
                                             "1 when every worker is connected to the global "
                                             "limits' backend (Redis), else 0",
                                             SL_METRIC_GAUGE, ""),
                           NULL);
  m_commands = sl_metrics_series(
      sl_metrics_family("sluice_global_commands_total",
                        "Lease requests (EVALSHA) sent to the global limits' backend",
                        SL_METRIC_COUNTER, ""),
      NULL);
  m_asks = sl_metrics_series(
      sl_metrics_family("sluice_global_asks_total",
                        "Keys asked for tokens (one EVALSHA carries up to 64 of them)",
                        SL_METRIC_COUNTER, ""),
      NULL);
  m_granted = sl_metrics_series(sl_metrics_family("sluice_global_tokens_granted_total",
                                                  "Tokens granted by the global limits' backend",
                                                  SL_METRIC_COUNTER, ""),
                                NULL);
  m_keys = sl_metrics_series(sl_metrics_family("sluice_global_keys",
                                               "Keys with a local share of a global limit",
                                               SL_METRIC_GAUGE, ""),
                             NULL);
  struct sl_metric_family *fe = sl_metrics_family(
      "sluice_global_backend_errors_total",
      "Failures talking to the global limits' backend, by kind", SL_METRIC_COUNTER, "kind");
  const char *timeout[] = {"timeout"}, *error[] = {"error"}, *disc[] = {"disconnect"};
  m_timeouts = sl_metrics_series(fe, timeout);
  m_errors = sl_metrics_series(fe, error);
  m_disconnects = sl_metrics_series(fe, disc);
  f_fallback = sl_metrics_family("sluice_global_fallback_total",
                                 "Requests of a global limit decided by its fallback mode (the "
                                 "backend down)",
                                 SL_METRIC_COUNTER, "limit");
}

static const char *backend_text(const struct sl_global_client *c) {
  if (!c->g) return "";
  return c->g->n_sentinels ? c->primary : c->g->redis.text;
}

static void publish_up(void) {
  int conf = atomic_load(&n_configured), down = atomic_load(&n_down);
  sl_metric_gauge_set(m_up, conf > 0 && down == 0);
}

/* This worker's connection became usable (|up|) or not. */
static void set_up(struct sl_global_client *c, bool up) {
  if (up == !c->counted_down) return;
  c->counted_down = !up;
  if (up) {
    if (atomic_fetch_sub(&n_down, 1) == 1) {
      atomic_store(&ever_up, true);
      sl_log(SL_LOG_INFO, "global backend up", "redis", backend_text(c), "address", c->primary,
             NULL);
    }
  } else {
    if (atomic_fetch_add(&n_down, 1) == 0 && atomic_load(&ever_up))
      sl_log(SL_LOG_WARN, "global backend down: global limits use their fallback", "redis",
             backend_text(c), "fallback",
             c->g ? (const char *[]){"local", "open", "closed"}[c->g->fallback] : "", NULL);
  }
  publish_up();
}

/* ---- the store ------------------------------------------------------ */

/* Keyed with the process's random key: clients cannot aim keys at one chain. */
static uint64_t entry_hash(uint64_t limit_id, const uint8_t *key, size_t klen) {
  return sl_hash_mix_u64(sl_siphash(sl_hash_process_key(), key, klen), limit_id);
}

static void store_grow(struct sl_global_client *c) {
  size_t nb = c->nbuckets ? c->nbuckets * 2 : 1024;
  struct entry **b = calloc(nb, sizeof(*b));
  if (!b) return; /* stays at its size: chains get longer */
  for (size_t i = 0; i < c->nbuckets; i++) {
    for (struct entry *e = c->buckets[i], *n; e; e = n) {
      n = e->next;
      size_t j = e->hash & (nb - 1);
      e->next = b[j];
      b[j] = e;
    }
  }
  free(c->buckets);
  c->buckets = b;
  c->nbuckets = nb;
  c->sweep_at = 0;
}

/* The entry of |rl|/|key|, created when |create|; NULL when absent or
 * out of memory. Beyond MAX_KEYS, the overflow entry. */
static struct entry *store_get(struct sl_global_client *c, const struct sl_rate_limit_cfg *rl,
                               const uint8_t *key, size_t klen, bool create) {
  uint64_t h = entry_hash(rl->identity, key, klen);
  if (c->nbuckets) {
    for (struct entry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->next)
      if (e->hash == h && e->limit_id == rl->identity && e->klen == klen &&
          !memcmp(e->key, key, klen))
        return e;
  }
  if (!create) return NULL;
  if (c->nkeys >= MAX_KEYS) return c->overflow;
  if (c->nkeys >= c->nbuckets) store_grow(c);
  if (!c->nbuckets) return NULL;
  struct entry *e = calloc(1, sizeof(*e) + klen);
  if (!e) return NULL;
  e->limit_id = rl->identity;
  e->hash = h;
  e->klen = (uint32_t)klen;
  memcpy(e->key, key, klen);
  size_t j = h & (c->nbuckets - 1);
  e->next = c->buckets[j];
  c->buckets[j] = e;
  c->nkeys++;
  sl_metric_gauge_add(m_keys, 1);
  return e;
}

/* The fallback counter of the limit |name| (a snapshot name: bounded),
 * through a small per-worker cache by name pointer: the registry's
 * lookup takes a mutex, and in fallback every request counts. */
static struct sl_metric_series *fallback_series(struct sl_global_client *c, const char *name) {
  for (unsigned i = 0; i < FB_CACHE; i++)
    if (c->fb_name[i] == name) return c->fb_series[i];
  const char *v[] = {name};
  struct sl_metric_series *m = sl_metrics_series(f_fallback, v);
  unsigned i = c->fb_next++ % FB_CACHE;
  c->fb_name[i] = name;
  c->fb_series[i] = m;
  return m;
}

/* ---- commands -------------------------------------------------------- */

static uint64_t loop_ns(const struct sl_global_client *c) {
  return (uint64_t)(ev_now(c->loop) * 1e9);
}

static bool ring_push(struct sl_global_client *c) {
  if (c->ring_head - c->ring_tail >= RING) return false;
  c->ring[c->ring_head++ % RING] = loop_ns(c);
  return true;
}

static void ring_pop(struct sl_global_client *c) {
  if (c->ring_tail != c->ring_head) c->ring_tail++;
}

static void conn_drop(struct sl_global_client *c, const char *why);

/* Sends one command (|argc| arguments) whose reply goes to |fn|. */
static bool send_cmd(struct sl_global_client *c, redisCallbackFn *fn, void *priv, int argc,
                     const char **argv, const size_t *lens) {
  if (!c->ac || !ring_push(c)) return false;
  if (redisAsyncCommandArgv(c->ac, fn, priv, argc, argv, lens) != REDIS_OK) {
    c->ring_head--;
    return false;
  }
  return true;
}

static void on_script_loaded(redisAsyncContext *ac, void *r, void *priv);

static void load_script(struct sl_global_client *c) {
  if (c->script_loading) return;
  const char *argv[] = {"SCRIPT", "LOAD", SCRIPT};
  size_t lens[] = {6, 4, sizeof(SCRIPT) - 1};
  if (send_cmd(c, on_script_loaded, c, 3, argv, lens)) c->script_loading = true;
}

static void batch_fail(struct batch *b) {
  for (uint32_t i = 0; i < b->n; i++) sl_lease_failed(&b->e[i]->l);
  free(b);
}

static bool lease_reply_ok(const redisReply *rep, uint32_t n) {
  if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 * (size_t)n) return false;
  for (size_t i = 0; i < rep->elements; i++)
    if (rep->element[i]->type != REDIS_REPLY_INTEGER) return false;
  return true;
}

/* The reply to an EVALSHA of the batch |priv|: {granted, remaining,
 * retry_us} per key, in the batch's order. */
static void on_lease(redisAsyncContext *ac, void *r, void *priv) {
  struct sl_global_client *c = ac->data;
  struct batch *b = priv;
  redisReply *rep = r;
  if (c) ring_pop(c);
  if (!lease_reply_ok(rep, b->n)) {
    batch_fail(b);
    if (!c || !rep) return; /* connection gone: counted where it went */
    sl_metric_inc(m_errors);
    if (rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, "READONLY", 8)) {
      /* the primary was demoted by a failover: find the new one */
      sl_log(SL_LOG_WARN, "global backend is now a replica: rediscovering the primary", "redis",
             backend_text(c), NULL);
      conn_drop(c, "READONLY");
      return;
    }
    if (rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, "NOSCRIPT", 8)) {
      load_script(c); /* flushed or failed over: load it again; the keys ask again */
      return;
    }
    if (SL_LOG_ENABLED(SL_LOG_WARN))
      sl_log(SL_LOG_WARN, "global backend: unexpected lease reply", "error",
             rep->type == REDIS_REPLY_ERROR ? rep->str : "not {granted, remaining, retry} per key",
             NULL);
    return;
  }
  uint64_t now = sl_now_ns();
  uint64_t granted = 0;
  for (uint32_t i = 0; i < b->n; i++) {
    struct entry *e = b->e[i];
    long long g = rep->element[3 * i]->integer, retry_us = rep->element[3 * i + 2]->integer;
    if (g < 0) g = 0;
    if (g > UINT32_MAX) g = UINT32_MAX;
    if (retry_us < 0) retry_us = 0;
    granted += (uint64_t)g;
    sl_lease_grant(&e->l, &e->p, (uint32_t)g, (uint64_t)retry_us * 1000u, now);
  }
  sl_metric_add(m_granted, granted);
  free(b);
}

/* The Redis key of |e| into |out| (KEY_MAX bytes): <prefix><limit
 * name>:<key bytes>, binary-safe; a longer one is hashed. */
static size_t redis_key(const struct sl_global_client *c, const struct entry *e, char *out) {
  const char *prefix = c->g->key_prefix;
  size_t pl = strlen(prefix), nl = strlen(e->limit_name);
  if (pl + nl + 1 + e->klen <= KEY_MAX) {
    memcpy(out, prefix, pl);
    memcpy(out + pl, e->limit_name, nl);
    out[pl + nl] = ':';
    memcpy(out + pl + nl + 1, e->key, e->klen);
    return pl + nl + 1 + e->klen;
  }
  return (size_t)snprintf(out, KEY_MAX, "%s%.200s:#%016llx", prefix, e->limit_name,
                          (unsigned long long)e->hash);
}

/* Sends this iteration's asks as one EVALSHA. */
static void batch_flush(struct sl_global_client *c) {
  struct batch *b = c->pending;
  if (!b) return;
  c->pending = NULL;
  ev_prepare_stop(c->loop, &c->flush_watcher);
  if (c->state != CONN_UP) { /* lost since the asks were made */
    batch_fail(b);
    return;
  }
  enum { HEAD = 3 };
  const char *argv[HEAD + 4 * BATCH_MAX];
  size_t lens[HEAD + 4 * BATCH_MAX];
  char nkeys[12];
  argv[0] = "EVALSHA", lens[0] = 7;
  argv[1] = c->sha, lens[1] = 40;
  argv[2] = nkeys, lens[2] = (size_t)snprintf(nkeys, sizeof(nkeys), "%u", b->n);
  char *at = c->scratch;
  for (uint32_t i = 0; i < b->n; i++) {
    const struct entry *e = b->e[i];
    argv[HEAD + i] = at;
    lens[HEAD + i] = redis_key(c, e, at);
    at += lens[HEAD + i];
    /* period (microseconds, 3 decimals), burst, ask: at most 48 bytes */
    size_t j = HEAD + b->n + 3 * i;
    int w = sprintf(at, "%.3f", (double)e->p.period_ns / 1000.0);
    argv[j] = at, lens[j] = (size_t)w, at += w;
    w = sprintf(at, "%u", e->p.burst ? e->p.burst : 1);
    argv[j + 1] = at, lens[j + 1] = (size_t)w, at += w;
    w = sprintf(at, "%u", b->ask[i]);
    argv[j + 2] = at, lens[j + 2] = (size_t)w, at += w;
  }
  if (send_cmd(c, on_lease, b, (int)(HEAD + 4 * b->n), argv, lens)) {
    sl_metric_inc(m_commands);
    sl_metric_add(m_asks, b->n);
  } else {
    batch_fail(b);
  }
}

static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents) {
  batch_flush(SL_CONTAINER_OF(w, struct sl_global_client, flush_watcher));
}

/* Queues the ask of entry |e| for |n| tokens: sent with the others of this
 * loop iteration, before the loop waits (or at once when the batch is
 * full). */
static void send_lease(struct sl_global_client *c, struct entry *e, uint32_t n) {
  struct batch *b = c->pending;
  if (!b) {
    b = malloc(sizeof(*b));
    if (!b) {
      sl_lease_failed(&e->l);
      return;
    }
    b->n = 0;
    c->pending = b;
    ev_prepare_start(c->loop, &c->flush_watcher);
  }
  b->e[b->n] = e;
  b->ask[b->n] = n;
  if (++b->n == BATCH_MAX) batch_flush(c);
}

/* ---- the port -------------------------------------------------------- */

static void params_of(const struct sl_global_cfg *g, uint64_t period, uint32_t burst,
                      struct sl_lease_params *p) {
  p->period_ns = period;
  p->burst = burst;
  p->expected_replicas = g->expected_replicas;
  p->lease_ns = g->lease_ms * 1000000u;
  p->lead_ns = p->lease_ns / 4;
  p->fallback = g->fallback;
}

static bool port_decide(void *ctx, const struct sl_rate_limit_cfg *rl, const uint8_t *key,
                        size_t klen, uint64_t period_ns, uint32_t burst, uint64_t now_ns, bool commit,
                        struct sl_global_answer *a) {
  struct sl_global_client *c = ctx;
  bool up = c->state == CONN_UP;
  struct sl_lease_params p;
  params_of(c->g, period_ns, burst, &p);
  a->backend_up = up;
  struct entry *e = store_get(c, rl, key, klen, false);
  if (!commit) {
    static const struct sl_lease fresh;
    const struct sl_lease *l = e ? &e->l : &fresh;
    sl_lease_peek(l, &p, up && e != c->overflow, now_ns, &a->v);
    a->tokens = l->tokens;
    a->demand = sl_lease_demand(l);
    if (a->v.admitted) return true;
    /* Refused here, so never committed: decide it for real (a refusal
     * consumes nothing, and gives the same answer) so that its demand
     * counts and a spent share asks for more. */
  }
  if (!e) e = store_get(c, rl, key, klen, true);
  if (!e) { /* out of memory: the fallback decides, statelessly */
    a->v.admitted = c->g->fallback != SL_FALLBACK_CLOSED;
    a->v.source = SL_LEASE_FROM_FALLBACK;
    return a->v.admitted;
  }
  e->p = p;
  e->limit_name = rl->name;
  bool use_backend = up && e != c->overflow;
  sl_lease_admit(&e->l, &p, use_backend, now_ns, &a->v);
  if (a->v.source == SL_LEASE_FROM_FALLBACK) sl_metric_inc(fallback_series(c, rl->name));
  if (a->v.want_refill && use_backend) send_lease(c, e, sl_lease_ask(&e->l, &p, now_ns));
  a->tokens = e->l.tokens;
  a->demand = sl_lease_demand(&e->l);
  return a->v.admitted;
}

static void port_refund(void *ctx, const struct sl_rate_limit_cfg *rl, const uint8_t *key,
                        size_t klen, enum sl_lease_source src) {
  struct sl_global_client *c = ctx;
  struct entry *e = store_get(c, rl, key, klen, false);
  if (e) sl_lease_refund(&e->l, &e->p, src);
}

/* ---- the connection -------------------------------------------------- */

static void schedule_reconnect(struct sl_global_client *c) {
  if (!c->g) return;
  /* jittered x [0.5, 1.5): replicas that lost Redis together do not all
   * come back in the same millisecond */
  double j = 0.5 + (double)((uint64_t)(uintptr_t)c * 2654435761u ^ loop_ns(c)) / 18446744073709551616.0;
  ev_timer_stop(c->loop, &c->retry_timer);
  ev_timer_set(&c->retry_timer, c->backoff_s * j, 0.);
  ev_timer_start(c->loop, &c->retry_timer);
  c->backoff_s = c->backoff_s * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : c->backoff_s * 2;
}

/* Ends the connection (a timeout, an error, a reload to another backend):
 * pending callbacks run with no reply (their leases fail), and, with a
 * backend still configured, a reconnection is scheduled. */
static void sentinel_drop(struct sl_global_client *c) {
  redisAsyncContext *sac = c->sac;
  c->sac = NULL;
  if (sac) {
    sac->data = NULL;
    redisAsyncFree(sac); /* deferred by hiredis when inside its callback */
  }
}

static void resolve_drop(struct sl_global_client *c) {
  if (c->resolving) sl_resolve_cancel(c->resolving);
  c->resolving = NULL;
}

/* Everything but the primary's connection: the sentinel being asked, a
 * lookup, the +switch-master subscription, and asks not sent yet (their
 * keys ask again once up). */
static void side_drop(struct sl_global_client *c) {
  sentinel_drop(c);
  resolve_drop(c);
  sl_sentinel_watch_close(c->watch);
  c->watch = NULL;
  if (c->pending) {
    batch_fail(c->pending);
    c->pending = NULL;
    ev_prepare_stop(c->loop, &c->flush_watcher);
  }
}

static void conn_drop(struct sl_global_client *c, const char *why) {
  side_drop(c);
  redisAsyncContext *ac = c->ac;
  c->ac = NULL;
  c->state = CONN_IDLE;
  c->script_loading = false;
  c->ring_head = c->ring_tail = 0;
  if (ac) {
    ac->data = NULL; /* callbacks from here on see no client */
    redisAsyncFree(ac);
  }
  set_up(c, false);
  if (why && SL_LOG_ENABLED(SL_LOG_DEBUG))
    sl_log(SL_LOG_DEBUG, "global backend connection closed", "why", why, NULL);
  schedule_reconnect(c);
}

/* "ip:port", "[v6]:port" into |out| (sizeof primary). */
static void addr_text(char out[INET6_ADDRSTRLEN + 8], const char *ip, int port) {
  snprintf(out, INET6_ADDRSTRLEN + 8, strchr(ip, ':') ? "[%s]:%d" : "%s:%d", ip, port);
}

/* The sentinels promoted another primary: drop this one now (its grants
 * would be lost) and discover the new one. */
static void on_switch_master(void *arg, const char *ip, int port) {
  struct sl_global_client *c = arg;
  char now[sizeof(c->primary)];
  addr_text(now, ip, port);
  if (!strcmp(now, c->primary)) return;
  sl_log(SL_LOG_WARN, "sentinel announced a failover: switching primary", "from", c->primary,
         "to", now, NULL);
  conn_drop(c, "switch-master");
}

static void on_script_loaded(redisAsyncContext *ac, void *r, void *priv) {
  struct sl_global_client *c = ac->data;
  redisReply *rep = r;
  if (!c) return;
  ring_pop(c);
  c->script_loading = false;
  if (!rep || rep->type != REDIS_REPLY_STRING || rep->len != 40) {
    sl_metric_inc(m_errors);
    if (rep && SL_LOG_ENABLED(SL_LOG_WARN))
      sl_log(SL_LOG_WARN, "global backend: SCRIPT LOAD failed", "error",
             rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply", NULL);
    conn_drop(c, "script load failed");
    return;
  }
  memcpy(c->sha, rep->str, 40);
  c->sha[40] = '\0';
  if (c->state == CONN_HANDSHAKE) {
    c->state = CONN_UP;
    c->backoff_s = BACKOFF_MIN_S;
    set_up(c, true);
    if (c->g->n_sentinels && !c->watch)
      c->watch = sl_sentinel_watch_open(c->loop, c->sentinel_ip, c->sentinel_port,
                                        c->g->master_name, on_switch_master, c);
  }
}

/* AUTH and SELECT: an error reply ends the connection. */
static void on_handshake(redisAsyncContext *ac, void *r, void *priv) {
  struct sl_global_client *c = ac->data;
  redisReply *rep = r;
  if (!c) return;
  ring_pop(c);
  if (!rep || rep->type == REDIS_REPLY_ERROR) {
    sl_metric_inc(m_errors);
    if (rep)
      sl_log(SL_LOG_WARN, "global backend refused the handshake", "command", (const char *)priv,
             "error", rep->str, NULL);
    conn_drop(c, "handshake refused");
  }
}

/* ROLE of a primary named by a sentinel: anything but "master" (the
 * sentinel had not yet seen a failover) ends the connection, and the next
 * attempt asks the next sentinel. */
static void on_role(redisAsyncContext *ac, void *r, void *priv) {
  struct sl_global_client *c = ac->data;
  redisReply *rep = r;
  if (!c) return;
  ring_pop(c);
  bool master = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 &&
                rep->element[0]->type == REDIS_REPLY_STRING &&
                !strcmp(rep->element[0]->str, "master");
  if (!master) {
    sl_metric_inc(m_errors);
    if (rep)
      sl_log(SL_LOG_WARN, "global backend named by the sentinel is not a primary", "redis",
             backend_text(c), NULL);
    c->sentinel_at++;
    conn_drop(c, "not a primary");
  }
}

static void on_connect(const redisAsyncContext *ac, int status) {
  struct sl_global_client *c = ac->data;
  if (!c) return;
  if (status != REDIS_OK) {
    /* hiredis frees the context after this callback */
    c->ac = NULL;
    sl_metric_inc(m_disconnects);
    conn_drop(c, ac->errstr);
    return;
  }
  c->state = CONN_HANDSHAKE;
  if (c->g->password) {
    const char *argv[] = {"AUTH", c->g->password};
    size_t lens[] = {4, strlen(c->g->password)};
    send_cmd(c, on_handshake, "AUTH", 2, argv, lens);
  }
  if (c->g->database) {
    char db[16];
    size_t dl = (size_t)snprintf(db, sizeof(db), "%u", c->g->database);
    const char *argv[] = {"SELECT", db};
    size_t lens[] = {6, dl};
    send_cmd(c, on_handshake, "SELECT", 2, argv, lens);
  }
  if (c->g->n_sentinels) {
    const char *argv[] = {"ROLE"};
    size_t lens[] = {4};
    send_cmd(c, on_role, NULL, 1, argv, lens);
  }
  load_script(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  struct sl_global_client *c = ac->data;
  if (!c) return; /* we dropped it */
  /* hiredis frees the context after this callback */
  c->ac = NULL;
  sl_metric_inc(m_disconnects);
  conn_drop(c, status == REDIS_OK ? "closed" : ac->errstr);
}

static bool is_numeric(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static void target_open(struct sl_global_client *c, const char *host, int port, bool numeric,
                        enum target t);

/* A context connecting to |ip|:|port| (numeric: never resolves), attached
 * to the loop, in |state| from now; NULL (and a reconnection scheduled)
 * when it cannot even start. */
static redisAsyncContext *ctx_open(struct sl_global_client *c, const char *ip, int port,
                                   redisConnectCallback *on_conn,
                                   redisDisconnectCallback *on_disc, enum conn_state state) {
  redisAsyncContext *ac = redisAsyncConnect(ip, port);
  if (!ac || ac->err) {
    if (ac) redisAsyncFree(ac);
    sl_metric_inc(m_disconnects);
    schedule_reconnect(c);
    return NULL;
  }
  ac->data = c;
  c->state = state;
  c->connect_started = ev_now(c->loop);
  redisLibevAttach(c->loop, ac);
  redisAsyncSetConnectCallback(ac, on_conn);
  redisAsyncSetDisconnectCallback(ac, on_disc);
  return ac;
}

static void primary_open(struct sl_global_client *c, const char *ip, int port) {
  addr_text(c->primary, ip, port);
  c->ring_head = c->ring_tail = 0;
  c->ac = ctx_open(c, ip, port, on_connect, on_disconnect, CONN_CONNECTING);
}

/* A sentinel could not answer (refused, timed out, unknown master):
 * the next attempt, after the backoff, asks the next one. */
static void sentinel_failed(struct sl_global_client *c, const char *why) {
  c->sentinel_at++;
  conn_drop(c, why);
}

static void on_sentinel_reply(redisAsyncContext *sac, void *r, void *priv) {
  struct sl_global_client *c = sac->data;
  redisReply *rep = r;
  if (!c || c->sac != sac) return; /* a failed connect: counted by on_sentinel_connect */
  if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
      rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING ||
      rep->element[0]->len >= INET6_ADDRSTRLEN) {
    sl_metric_inc(m_errors);
    if (rep && SL_LOG_ENABLED(SL_LOG_WARN))
      sl_log(SL_LOG_WARN, "sentinel does not know the primary", "master_name", c->g->master_name,
             "error", rep->type == REDIS_REPLY_ERROR ? rep->str : "no address", NULL);
    sentinel_failed(c, "sentinel gave no primary");
    return;
  }
  char host[INET6_ADDRSTRLEN];
  memcpy(host, rep->element[0]->str, rep->element[0]->len + 1);
  int port = atoi(rep->element[1]->str);
  sentinel_drop(c);
  if (port <= 0 || port > 65535) {
    sentinel_failed(c, "sentinel gave a bad port");
    return;
  }
  /* a sentinel with announce-hostnames names the primary by its name */
  target_open(c, host, port, is_numeric(host), TARGET_PRIMARY);
}

static void on_sentinel_connect(const redisAsyncContext *sac, int status) {
  struct sl_global_client *c = sac->data;
  if (!c || status == REDIS_OK) return; /* the query was queued before */
  c->sac = NULL; /* hiredis frees it after this callback */
  sl_metric_inc(m_disconnects);
  sentinel_failed(c, sac->errstr);
}

static void on_sentinel_disconnect(const redisAsyncContext *sac, int status) {
  struct sl_global_client *c = sac->data;
  if (!c || c->sac != sac) return; /* we dropped it */
  c->sac = NULL;
  sentinel_failed(c, "sentinel closed");
}

/* Asks the sentinel at |ip|:|port| for the primary's address. */
static void discover_open(struct sl_global_client *c, const char *ip, int port) {
  snprintf(c->sentinel_ip, sizeof(c->sentinel_ip), "%s", ip);
  c->sentinel_port = port;
  redisAsyncContext *sac =
      ctx_open(c, ip, port, on_sentinel_connect, on_sentinel_disconnect, CONN_DISCOVER);
  if (!sac) {
    c->sentinel_at++;
    return;
  }
  c->sac = sac;
  const char *argv[] = {"SENTINEL", "get-master-addr-by-name", c->g->master_name};
  size_t lens[] = {8, 23, strlen(c->g->master_name)};
  if (redisAsyncCommandArgv(sac, on_sentinel_reply, NULL, 3, argv, lens) != REDIS_OK)
    sentinel_failed(c, "sentinel query not sent");
}

/* A lookup failed or timed out: logged once until a lookup succeeds (in
 * any worker), then as a refused connection to that target. */
static void resolve_failed(struct sl_global_client *c, enum target t, const char *why) {
  sl_metric_inc(m_errors);
  if (!atomic_exchange(&resolve_warned, true))
    sl_log(SL_LOG_WARN, "global backend: host name lookup failed (retrying with backoff)", "host",
           c->resolve_host, "error", why, NULL);
  if (t == TARGET_SENTINEL)
    sentinel_failed(c, why);
  else
    conn_drop(c, why);
}

static void on_resolved(void *arg, const char (*addrs)[INET6_ADDRSTRLEN], size_t n,
                        const char *error) {
  struct sl_global_client *c = arg;
  c->resolving = NULL;
  c->state = CONN_IDLE;
  if (n == 0) {
    resolve_failed(c, c->resolve_for, error);
    return;
  }
  atomic_store(&resolve_warned, false);
  const char *ip = addrs[c->resolve_pick++ % n];
  if (c->resolve_for == TARGET_SENTINEL)
    discover_open(c, ip, c->resolve_port);
  else
    primary_open(c, ip, c->resolve_port);
}

/* Connects to |host|:|port| as |t|, looking the name up first (off the
 * loop) unless it is numeric. */
static void target_open(struct sl_global_client *c, const char *host, int port, bool numeric,
                        enum target t) {
  if (numeric) {
    if (t == TARGET_SENTINEL)
      discover_open(c, host, port);
    else
      primary_open(c, host, port);
    return;
  }
  c->resolve_for = t;
  c->resolve_port = port;
  snprintf(c->resolve_host, sizeof(c->resolve_host), "%s", host);
  c->resolving = sl_resolve_start(c->loop, host, on_resolved, c);
  if (!c->resolving) {
    resolve_failed(c, t, "cannot start a thread for the lookup");
    return;
  }
  c->state = CONN_RESOLVE;
  c->connect_started = ev_now(c->loop);
}

static void conn_open(struct sl_global_client *c) {
  if (c->g->n_sentinels) {
    const struct sl_hostport *a = &c->g->sentinels[c->sentinel_at % c->g->n_sentinels];
    target_open(c, a->host, a->port, a->numeric, TARGET_SENTINEL);
  } else {
    target_open(c, c->g->redis.host, c->g->redis.port, c->g->redis.numeric, TARGET_PRIMARY);
  }
}

static void retry_cb(struct ev_loop *loop, ev_timer *t, int revents) {
  struct sl_global_client *c = SL_CONTAINER_OF(t, struct sl_global_client, retry_timer);
  if (c->g && !c->ac && !c->sac && !c->resolving) conn_open(c);
}

/* Connect timeout, and the oldest outstanding command's age. */
static void check_cb(struct ev_loop *loop, ev_timer *t, int revents) {
  struct sl_global_client *c = SL_CONTAINER_OF(t, struct sl_global_client, check_timer);
  if (c->g && c->state == CONN_RESOLVE) {
    if ((ev_now(loop) - c->connect_started) * 1000 > (double)c->g->connect_timeout_ms) {
      sl_metric_inc(m_timeouts); /* and an error: resolve_failed(), whose conn_drop cancels it */
      resolve_failed(c, c->resolve_for, "host name lookup timeout");
    }
    return;
  }
  if (c->g && c->state == CONN_DISCOVER) {
    /* one sentinel gets a connect timeout plus a command timeout */
    if ((ev_now(loop) - c->connect_started) * 1000 >
        (double)(c->g->connect_timeout_ms + c->g->command_timeout_ms)) {
      sl_metric_inc(m_timeouts);
      sentinel_failed(c, "sentinel timeout");
    }
    return;
  }
  if (!c->g || !c->ac) return;
  if (c->state == CONN_CONNECTING) {
    if ((ev_now(loop) - c->connect_started) * 1000 > (double)c->g->connect_timeout_ms) {
      sl_metric_inc(m_timeouts);
      conn_drop(c, "connect timeout");
    }
    return;
  }
  if (c->ring_tail == c->ring_head) return;
  uint64_t oldest = c->ring[c->ring_tail % RING];
  if (loop_ns(c) - oldest > c->g->command_timeout_ms * 1000000u) {
    sl_metric_inc(m_timeouts);
    conn_drop(c, "command timeout");
  }
}

static void sweep_cb(struct ev_loop *loop, ev_timer *t, int revents) {
  struct sl_global_client *c = SL_CONTAINER_OF(t, struct sl_global_client, sweep_timer);
  if (!c->nbuckets) return;
  uint64_t now = sl_now_ns();
  for (size_t n = 0; n < SWEEP_BUCKETS && n < c->nbuckets; n++) {
    size_t i = c->sweep_at++ & (c->nbuckets - 1);
    for (struct entry **pp = &c->buckets[i]; *pp;) {
      struct entry *e = *pp;
      if (sl_lease_idle(&e->l, now, IDLE_NS)) {
        *pp = e->next;
        free(e);
        c->nkeys--;
        sl_metric_gauge_add(m_keys, -1);
      } else {
        pp = &e->next;
      }
    }
  }
}

/* ---- lifecycle ------------------------------------------------------- */

struct sl_global_client *sl_global_client_new(struct ev_loop *loop, int worker_id) {
  pthread_once(&metrics_once, metrics_init);
  struct sl_global_client *c = calloc(1, sizeof(*c));
  if (!c) abort();
  c->loop = loop;
  c->worker_id = worker_id;
  c->backoff_s = BACKOFF_MIN_S;
  c->port = (struct sl_global_port){port_decide, port_refund, c};
  c->overflow = calloc(1, sizeof(*c->overflow));
  if (!c->overflow) abort();
  c->overflow->limit_name = "overflow";
  ev_timer_init(&c->retry_timer, retry_cb, 0., 0.);
  ev_timer_init(&c->check_timer, check_cb, 0., 0.);
  ev_timer_init(&c->sweep_timer, sweep_cb, 1., 1.);
  ev_prepare_init(&c->flush_watcher, flush_cb);
  return c;
}

void sl_global_client_configure(struct sl_global_client *c, const struct sl_config *cfg) {
  const struct sl_global_cfg *g = cfg->global.enabled ? &cfg->global : NULL;
  if (!g) {
    if (c->g) {
      conn_drop(c, NULL); /* counts this worker down */
      ev_timer_stop(c->loop, &c->retry_timer);
      ev_timer_stop(c->loop, &c->check_timer);
      ev_timer_stop(c->loop, &c->sweep_timer);
      if (c->counted_down) atomic_fetch_sub(&n_down, 1);
      c->counted_down = false;
      atomic_fetch_sub(&n_configured, 1);
      publish_up();
    }
    c->g = NULL;
    return;
  }
  bool same = c->g && c->identity == g->identity;
  if (!c->g) {
    atomic_fetch_add(&n_configured, 1);
    atomic_fetch_add(&n_down, 1);
    c->counted_down = true;
    publish_up();
  }
  c->g = g;
  c->identity = g->identity;
  /* timeouts are checked four times per command timeout */
  double every = (double)g->command_timeout_ms / 4000.0;
  if (every < 0.001) every = 0.001;
  ev_timer_stop(c->loop, &c->check_timer);
  ev_timer_set(&c->check_timer, every, every);
  ev_timer_start(c->loop, &c->check_timer);
  ev_timer_start(c->loop, &c->sweep_timer);
  if (same && (c->ac || c->sac || c->resolving)) return; /* the connection and every lease carry over */
  if (c->ac || c->sac || c->resolving) {
    conn_drop(c, "backend changed"); /* schedules the reconnection */
    ev_timer_stop(c->loop, &c->retry_timer);
    c->backoff_s = BACKOFF_MIN_S;
  }
  if (!ev_is_active(&c->retry_timer)) conn_open(c);
}

const struct sl_global_port *sl_global_client_port(struct sl_global_client *c) {
  return c && c->g ? &c->port : NULL;
}

void sl_global_client_del(struct sl_global_client *c) {
  if (!c) return;
  side_drop(c); /* before the entries go: a pending batch points at them */
  redisAsyncContext *ac = c->ac;
  c->ac = NULL;
  if (ac) {
    ac->data = NULL;
    redisAsyncFree(ac); /* pending callbacks run now, with no reply */
  }
  ev_timer_stop(c->loop, &c->retry_timer);
  ev_timer_stop(c->loop, &c->check_timer);
  ev_timer_stop(c->loop, &c->sweep_timer);
  if (c->g) {
    if (c->counted_down) atomic_fetch_sub(&n_down, 1);
    atomic_fetch_sub(&n_configured, 1);
    publish_up();
  }
  for (size_t i = 0; i < c->nbuckets; i++)
    for (struct entry *e = c->buckets[i], *n; e; e = n) {
      n = e->next;
      free(e);
    }
  sl_metric_gauge_add(m_keys, -(int64_t)c->nkeys);
  free(c->buckets);
  free(c->overflow);
  free(c);
}
