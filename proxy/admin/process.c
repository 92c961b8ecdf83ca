/*
 * sluice — the running process: start-up, signals, housekeeping and
 * shutdown on the main thread. See process.h.
 */
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>

#include "sluice/breaker.h"
#include "sluice/json.h"
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/policy_state.h"
#include "sluice/ratelimit.h"
#include "admin/admin.h"
#include "admin/admin_auth.h"
#include "admin/breaker_watch.h"
#include "admin/build_info.h"
#include "admin/commands.h"
#include "admin/process.h"
#include "admin/reload.h"
#include "admin/upstream_probe.h"
#include "core/freelist.h"
#include "core/clock.h"
#include "core/gen.h"
#include "core/listener.h"
#include "core/stats.h"
#include "core/worker.h"
#include "upstream/upstream.h"

/* The process, with the loop-embedded watchers only this file uses. */
static struct sl_process M;
static ev_signal sig_term, sig_int, sig_hup;
static ev_timer exit_poll;
static ev_timer housekeeping;

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

/* ---- housekeeping -------------------------------------------------- */

/* The metrics collector (sl_metrics_set_collector): at every scrape,
 * the breaker gauges (admin/breaker_watch.c), the recycling pools' and
 * the process's. */
static void scrape_gauges(void *ud) {
  (void)ud;
  sl_freelist_collect(); /* sluice_pool_* (core/freelist.h) */
  sl_build_metrics_collect(); /* process_* */
  sl_pool_collect(); /* sluice_upstream_connections, _pending (upstream/pool.c) */
  sl_listener_set_gauges(&M.listeners); /* sluice_idle_held */
  struct sl_gen *g = sl_gen_current_ref();
  sl_breaker_gauges(g, sl_now_ns());
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
  sl_breaker_watch(g, now); /* transition log lines */
  sl_gen_unref(g);
  /* Listeners removed by a reload go once their last connection closed. */
  sl_listener_set_collect(&M.listeners, sl_workers_acked_min(M.workers, M.n_workers));
}

/* ---- signals and shutdown ----------------------------------------- */

static void begin_shutdown(const char *why) {
  if (M.draining) return;
  M.draining = true;
  struct sl_metric_series *d = sl_metrics_series(sl_stats.draining, NULL);
  if (d) sl_metric_gauge_set(d, 1);
  struct sl_gen *g = sl_gen_current_ref();
  uint64_t timeout = g->cfg->drain_timeout_ms, spread = g->cfg->drain_spread_ms;
  sl_gen_unref(g);
  char t[24], sp[24];
  snprintf(t, sizeof(t), "%llu", (unsigned long long)timeout);
  snprintf(sp, sizeof(sp), "%llu", (unsigned long long)spread);
  sl_log(SL_LOG_INFO, "draining", "signal", why, "drain_timeout_ms", t, "drain_spread_ms", sp, NULL);
  for (int i = 0; i < M.n_workers; i++) sl_worker_notify_stop(&M.workers[i], timeout, spread);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents) {
  (void)loop;
  (void)revents;
  if (w->signum == SIGHUP) {
    sl_reload_request("SIGHUP");
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

/* ---- start-up and the main loop ------------------------------------ */

int sl_run(const struct sl_run_opts *opts) {
  const char *path = opts->config_path;
  int workers = opts->workers;
  M.config_path = path;
  sl_stats_init();
  sl_build_metrics_init();
  sl_breaker_watch_init();
  struct sl_config *cfg = sl_config_load_or_report(path, true);
  if (!cfg) {
    sl_reload_metrics(false, NULL);
    return 1;
  }
  M.n_workers = workers > 0 ? workers : cpus_available();
  signal(SIGPIPE, SIG_IGN);

  char err[512];
  const char *lname = NULL;
  if (sl_listener_set_open(&M.listeners, cfg, M.n_workers, &lname, err, sizeof(err)) != 0) {
    sl_log(SL_LOG_ERROR, "cannot open listener", "listener", lname, "error", err, NULL);
    sl_config_free(cfg);
    return 2;
  }
  struct sl_gen *g = sl_gen_publish(cfg, M.listeners.items, M.listeners.n);
  sl_metrics_set_collector(scrape_gauges, NULL); /* a generation is current from now on */
  sl_reload_metrics(true, cfg);

  M.loop = EV_DEFAULT;
  sl_gen_defer_start(M.loop);
  sl_reload_start(&M, cfg);
  if (cfg->admin_address.len) {
    M.admin_loopback = sl_sockaddr_is_loopback(&cfg->admin_address);
    M.admin = sl_admin_new(M.loop, &cfg->admin_address, &sl_reload_admin_hooks, NULL, err,
                           sizeof(err));
    if (M.admin && cfg->admin_metrics_address.len)
      M.metrics_admin = sl_admin_new(M.loop, &cfg->admin_metrics_address,
                                     &sl_reload_metrics_hooks, NULL, err, sizeof(err));
    if (!M.admin || (cfg->admin_metrics_address.len && !M.metrics_admin)) {
      sl_log(SL_LOG_ERROR, "cannot open admin listener", "error", err, NULL);
      sl_admin_del(M.admin);
      for (int j = 0; j < M.listeners.n; j++) sl_listener_close(M.listeners.items[j]);
      return 2;
    }
    if (!M.admin_loopback && !cfg->admin_token)
      sl_log(SL_LOG_WARN,
             "admin API beyond loopback without admin.token_file: /config, /reload and "
             "/explain answer 403",
             "address", cfg->admin_address.text, NULL);
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
    sl_worker_init(&M.workers[i], i, M.n_workers, sl_gen_ref(g));
    if (sl_worker_start(&M.workers[i]) != 0) {
      sl_log(SL_LOG_ERROR, "cannot start worker thread", NULL);
      return 2;
    }
    M.workers_running++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);

  ev_signal_init(&sig_term, on_signal, SIGTERM);
  ev_signal_init(&sig_int, on_signal, SIGINT);
  ev_signal_init(&sig_hup, on_signal, SIGHUP);
  ev_signal_start(M.loop, &sig_term);
  ev_signal_start(M.loop, &sig_int);
  ev_signal_start(M.loop, &sig_hup);
  ev_timer_init(&exit_poll, exit_poll_cb, 0.05, 0.05);
  ev_timer_start(M.loop, &exit_poll);
  ev_timer_init(&housekeeping, housekeeping_cb, 0.0, 1.0);
  ev_timer_start(M.loop, &housekeeping);
  sl_upstream_probe_start(M.loop); /* admin.readiness: upstreams */

  for (int i = 0; i < M.listeners.n; i++)
    sl_log(SL_LOG_INFO, "listening", "listener", M.listeners.items[i]->name, "address",
           M.listeners.items[i]->address, "tls", M.listeners.items[i]->tls ? "on" : "off", NULL);
  char esc_path[1024];
  size_t pl = 0;
  sl_json_escape(esc_path, sizeof(esc_path), &pl, path);
  esc_path[pl] = '\0';
  sl_log_json(SL_LOG_INFO, "started",
              "\"version\":\"%s\",\"commit\":\"%s\",\"workers\":%d,\"config\":\"%s\"",
              SLUICE_VERSION, sl_build_commit(), M.n_workers, esc_path);
  sl_config_log_expired(cfg, (int64_t)time(NULL));

  ev_run(M.loop, 0);
  /* Workers are gone after the joins below; what they retired late is
   * freed here. */

  for (int i = 0; i < M.n_workers; i++) sl_worker_join(&M.workers[i]);
  M.workers_running = 0;
  sl_gen_defer_stop();
  sl_admin_del(M.admin);
  sl_admin_del(M.metrics_admin);
  sl_upstream_probe_stop();
  sl_reload_stop();
  sl_listener_set_close(&M.listeners);
  free(M.workers);
  sl_gen_clear();
  sl_log(SL_LOG_INFO, "stopped", NULL);
  sl_metrics_reset();
  return 0;
}

