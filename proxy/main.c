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
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>

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

void sl_gen_unref(struct sl_gen *g) {
  if (!g) return;
  if (atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1) {
    sl_blocklist_del(g->blocklist);
    sl_policies_detach(g->cfg);
    sl_config_free(g->cfg);
    free(g);
  }
}

struct sl_gen *sl_gen_current_ref(void) {
  pthread_mutex_lock(&gen_lock);
  struct sl_gen *g = sl_gen_ref(gen_current);
  pthread_mutex_unlock(&gen_lock);
  return g;
}

/* Publishes |cfg| as the current generation; takes ownership. Policy
 * state of unchanged policies is carried over from the running generation
 * (limiter tables, breakers, concurrency counters). Start-up and reload
 * path: aborts on out-of-memory. */
static struct sl_gen *gen_publish(struct sl_config *cfg) {
  struct sl_gen *g = calloc(1, sizeof(*g));
  if (!g) abort();
  pthread_mutex_lock(&gen_lock);
  const struct sl_config *prev = gen_current ? gen_current->cfg : NULL;
  int rv = sl_policies_attach(cfg, prev);
  pthread_mutex_unlock(&gen_lock);
  if (rv != 0) abort();
  g->blocklist = sl_blocklist_new(&cfg->blocklist, cfg->mode);
  if (!g->blocklist) abort();
  g->cfg = cfg;
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

/* Binds one socket per worker for |lc|. The first bind checks the address
 * is free: SO_REUSEPORT would otherwise let two sluice processes share a
 * port silently, so probe with an exclusive bind first. */
static struct sl_listener *listener_open(const struct sl_listener_cfg *lc, int n_workers,
                                         char *err, size_t errlen) {
  struct sl_listener *l = calloc(1, sizeof(*l));
  if (!l) abort();
  l->name = strdup(lc->name);
  l->address = strdup(lc->address.text);
  l->max_connections = lc->max_connections;
  l->request_header_timeout_ms = lc->request_header_timeout_ms;
  l->idle_timeout_ms = lc->idle_timeout_ms;
  l->header_bytes = lc->header_bytes;
  l->headers = lc->headers;
  l->h2_streams = lc->h2_streams;
  l->fds = calloc((size_t)n_workers, sizeof(int));
  if (!l->name || !l->address || !l->fds) abort();
  for (int i = 0; i < n_workers; i++) l->fds[i] = -1;
  if (lc->tls_certificate) {
    l->tls = true;
    l->ssl_ctx = sl_tls_ctx_new(lc->tls_certificate, lc->tls_private_key, err, errlen);
    if (!l->ssl_ctx) goto fail;
  }
  int probe = bind_socket(&lc->address, false, err, errlen);
  if (probe < 0) goto fail;
  close(probe);
  for (int i = 0; i < n_workers; i++) {
    l->fds[i] = bind_socket(&lc->address, true, err, errlen);
    if (l->fds[i] < 0) goto fail;
  }
  l->n_fds = n_workers;
  l->m_conn_h1 = sl_stats_conn_series(l->name, SL_PROTO_H1);
  l->m_conn_h2 = sl_stats_conn_series(l->name, SL_PROTO_H2);
  return l;
fail:
  for (int i = 0; i < n_workers; i++)
    if (l->fds[i] >= 0) close(l->fds[i]);
  if (l->ssl_ctx) SSL_CTX_free(l->ssl_ctx);
  free(l->fds);
  free(l->name);
  free(l->address);
  free(l);
  return NULL;
}

static void listener_close(struct sl_listener *l) {
  for (int i = 0; i < l->n_fds; i++)
    if (l->fds[i] >= 0) close(l->fds[i]);
  if (l->ssl_ctx) SSL_CTX_free(l->ssl_ctx);
  free(l->fds);
  free(l->name);
  free(l->address);
  free(l);
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

/* Listener settings a running process cannot change without re-binding. */
static bool listeners_changed(const struct sl_config *a, const struct sl_config *b) {
  if (a->n_listeners != b->n_listeners) return true;
  for (size_t i = 0; i < a->n_listeners; i++) {
    const struct sl_listener_cfg *x = &a->listeners[i], *y = &b->listeners[i];
    if (strcmp(x->name, y->name) != 0 || strcmp(x->address.text, y->address.text) != 0)
      return true;
    if ((x->tls_certificate == NULL) != (y->tls_certificate == NULL)) return true;
  }
  return false;
}

/* Loads, validates and publishes the configuration file. Returns 0 on
 * success; on failure the running configuration is untouched and a
 * message is left in M.last_reload_error. */
static int reload_config(const char *trigger) {
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
    return -1;
  }
  struct sl_gen *cur = sl_gen_current_ref();
  if (listeners_changed(cur->cfg, cfg))
    sl_log(SL_LOG_WARN,
           "listener addresses changed: they take effect at the next restart; the rest of the "
           "configuration is applied now",
           NULL);
  sl_gen_unref(cur);
  struct sl_gen *g = gen_publish(cfg);
  for (int i = 0; i < M.n_workers; i++) sl_worker_notify_reload(&M.workers[i]);
  set_reload_metrics(true, g->cfg);
  char gen[24];
  snprintf(gen, sizeof(gen), "%llu", (unsigned long long)g->cfg->generation);
  sl_log(SL_LOG_INFO, "configuration reloaded", "trigger", trigger, "generation", gen, NULL);
  M.last_reload_error[0] = '\0';
  return 0;
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
  int rv = reload_config("admin");
  FILE *f = open_memstream(body, len);
  if (rv == 0) {
    struct sl_gen *g = sl_gen_current_ref();
    *status = 200;
    if (f) fprintf(f, "{\"result\":\"success\",\"generation\":%llu}\n",
                   (unsigned long long)g->cfg->generation);
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
    if (sl_explain(g->cfg, g->blocklist, &r, sl_now_ns(), (int64_t)time(NULL), f, err,
                   sizeof(err)) != 0) {
      *status = 400;
      fprintf(f, "{\"error\":\"%s\"}\n", err);
    }
    fclose(f);
  }
  sl_gen_unref(g);
  free(q);
}

/* ---- housekeeping -------------------------------------------------- */

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
      struct sl_ratelimit_table *t = sl_policy_state_ratelimit(r->rate_limits[j].state);
      if (!t) continue;
      sl_ratelimit_sweep(t, now, 4096);
      const char *values[2] = {r->name, r->rate_limits[j].name};
      struct sl_metric_series *ks = sl_metrics_series(sl_stats.limiter_keys, values);
      if (ks) sl_metric_gauge_set(ks, (int64_t)sl_ratelimit_keys(t));
    }
  }
  for (size_t i = 0; i < cfg->n_upstreams; i++) {
    struct sl_breaker *b = sl_policy_state_breaker(cfg->upstreams[i].breaker_state);
    const char *values[1] = {cfg->upstreams[i].name};
    struct sl_metric_series *bs = sl_metrics_series(sl_stats.breaker_state, values);
    if (bs) sl_metric_gauge_set(bs, b ? (int64_t)sl_breaker_state(b) : 0);
  }
  sl_gen_unref(g);
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
    reload_config("SIGHUP");
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
  if (sl_policies_attach(cfg, NULL) != 0) abort();
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
  if (sl_explain(cfg, bl, &r, sl_now_ns(), (int64_t)time(NULL), stdout, err, sizeof(err)) != 0) {
    fprintf(stderr, "sluice explain: %s\n", err);
    rc = 1;
  }
out:
  for (int i = 0; i < n; i++) free(copies[i]);
  sl_blocklist_del(bl);
  sl_policies_detach(cfg);
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
  M.listeners = calloc(cfg->n_listeners, sizeof(*M.listeners));
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
  struct sl_gen *g = gen_publish(cfg);
  set_reload_metrics(true, cfg);

  M.loop = EV_DEFAULT;
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
    sl_worker_init(&M.workers[i], i, M.listeners, M.n_listeners, sl_gen_ref(g));
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

  for (int i = 0; i < M.n_workers; i++) sl_worker_join(&M.workers[i]);
  M.workers_running = 0;
  sl_admin_del(M.admin);
  for (int i = 0; i < M.n_listeners; i++) listener_close(M.listeners[i]);
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
    printf("sluice %s (nghttp2 %s, %s)\n", SLUICE_VERSION, "libnghttp2",
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
