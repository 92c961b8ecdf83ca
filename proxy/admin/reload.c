/*
 * sluice — reload orchestration on the main thread: what triggers a
 * reload (SIGHUP and file changes, coalesced; POST /reload at once),
 * loading and checking the new configuration, the listener change and the
 * generation swap, and the admin hooks' bodies (/readyz, /config, /reload,
 * /explain). See reload.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>

#include "sluice/config_diff.h"
#include "sluice/blocklist.h"
#include "sluice/config.h"
#include "sluice/explain.h"
#include "sluice/json.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "admin/admin.h"
#include "admin/admin_auth.h"
#include "admin/commands.h"
#include "admin/process.h"
#include "admin/reload.h"
#include "admin/upstream_probe.h"
#include "admin/watch.h"
#include "core/clock.h"
#include "core/gen.h"
#include "core/listener.h"
#include "core/stats.h"
#include "core/worker.h"

/* The process being reloaded (sl_reload_start). */
static struct sl_process *P;

static struct {
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
} R;

void sl_reload_metrics(bool ok, const struct sl_config *cfg) {
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


/* Waits up to |timeout_ms| for every worker to acknowledge |gen|. Workers
 * answer their wakeup within one loop iteration, so this is short unless
 * one is stuck; the wait keeps a reload's answer true (a removed listener
 * refuses connections once POST /reload has returned). */
static bool workers_wait(uint64_t gen, int timeout_ms) {
  for (int waited = 0; sl_workers_acked_min(P->workers, P->n_workers) < gen; waited++) {
    if (waited >= timeout_ms) return false;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  return true;
}

static void reload_failed(const char *msg) {
  snprintf(R.last_reload_error, sizeof(R.last_reload_error), "%s", msg);
  sl_log(SL_LOG_ERROR, "reload rejected; the running configuration is unchanged", "error", msg,
         NULL);
  sl_reload_metrics(false, NULL);
}

/* Tells the watcher which files beyond the main one the running
 * configuration was read from (drop-ins, certificates); returns true if
 * that set changed. */
static bool watch_files_of(const struct sl_config *cfg) {
  if (!R.watch) return false;
  const char *extra[3 * 64];
  size_t n = 0;
  for (size_t i = 0; i < cfg->n_listeners && n + 3 <= sizeof(extra) / sizeof(extra[0]); i++) {
    if (!cfg->listeners[i].tls_certificate) continue;
    extra[n++] = cfg->listeners[i].tls_certificate;
    extra[n++] = cfg->listeners[i].tls_private_key;
    if (cfg->listeners[i].tls_ticket_keys) extra[n++] = cfg->listeners[i].tls_ticket_keys;
  }
  return sl_watch_set_files(R.watch, cfg->include_dir, extra, n);
}

static bool same_sockaddr(const struct sl_sockaddr *a, const struct sl_sockaddr *b) {
  return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* Loads, validates and publishes the configuration file: the whole new
 * configuration is checked (YAML, schema, certificates, new listener
 * addresses bound) before anything running is touched. Returns 0 on
 * success; on failure the running configuration is untouched, the error
 * is logged and left in R.last_reload_error, and the reload metrics say
 * so. Main thread; blocks at most ~1 s waiting for workers when
 * listeners change. */
static int reload_config(const char *trigger, unsigned triggers) {
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  R.last_reload_summary[0] = '\0';
  if (P->draining) {
    reload_failed("draining: the process is shutting down");
    return -1;
  }
  /* Fingerprint first: a file changed while it is read counts as a change
   * still to load, and a file that fails to load is not retried until it
   * changes again. */
  uint64_t fp = R.watch ? sl_watch_fingerprint(R.watch) : 0;
  struct sl_config_errors errs = {0};
  struct sl_config *cfg = sl_config_load(P->config_path, &errs);
  if (!cfg) {
    sl_config_log_errors(&errs, "reload rejected: invalid configuration");
    size_t off = 0;
    R.last_reload_error[0] = '\0';
    for (size_t i = 0; i < errs.n && off < sizeof(R.last_reload_error) - 1; i++) {
      int n = snprintf(R.last_reload_error + off, sizeof(R.last_reload_error) - off,
                       "%s:%u:%u: %s\n", errs.items[i].file, errs.items[i].line,
                       errs.items[i].col, errs.items[i].message);
      if (n < 0) break;
      off += (size_t)n;
    }
    sl_config_errors_free(&errs);
    sl_reload_metrics(false, NULL);
    if (R.watch) sl_watch_loaded(R.watch, fp);
    return -1;
  }
  /* A listener change moves sockets between listeners: the previous one
   * must have reached every worker first. */
  if (!workers_wait(R.listeners_gen, 1000)) {
    sl_config_free(cfg);
    reload_failed("workers have not applied the previous listener change yet; retry");
    return -1;
  }
  struct sl_lis_change ch;
  char err[512];
  if (sl_listeners_prepare(&P->listeners, cfg, &ch, err, sizeof(err)) != 0) {
    sl_config_free(cfg);
    reload_failed(err);
    if (R.watch) sl_watch_loaded(R.watch, fp);
    return -1;
  }
  struct sl_gen *cur = sl_gen_current_ref();
  if (!same_sockaddr(&cur->cfg->admin_address, &cfg->admin_address) ||
      !same_sockaddr(&cur->cfg->admin_metrics_address, &cfg->admin_metrics_address))
    sl_log(SL_LOG_WARN, "admin address changed: it takes effect at the next restart", NULL);
  uint64_t gen_next = sl_gen_next_number();
  sl_listeners_commit(&P->listeners, &ch, gen_next);
  struct sl_gen *g = sl_gen_publish(cfg, P->listeners.items, P->listeners.n);
  for (int i = 0; i < P->n_workers; i++) sl_worker_notify_reload(&P->workers[i]);
  if (ch.needs_ack) {
    R.listeners_gen = g->cfg->generation;
    if (!workers_wait(g->cfg->generation, 1000))
      sl_log(SL_LOG_WARN, "workers slow to apply the listener change; old sockets close later",
             NULL);
  }
  sl_listener_set_collect(&P->listeners, sl_workers_acked_min(P->workers, P->n_workers));
  sl_reload_metrics(true, g->cfg);
  sl_upstream_probe_reloaded();
  if (R.watch) {
    if (watch_files_of(g->cfg)) fp = sl_watch_fingerprint(R.watch);
    sl_watch_loaded(R.watch, fp);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
  struct sl_config_diff d;
  sl_config_diff(cur->cfg, cur->policies, g->cfg, g->policies, &d);
  char fields[1700];
  sl_config_diff_report(&d,
                        &(struct sl_reload_facts){.trigger = trigger,
                                                  .triggers = triggers,
                                                  .generation = g->cfg->generation,
                                                  .duration_ms = ms,
                                                  .blocklist_before = sl_blocklist_size(cur->blocklist),
                                                  .blocklist_after = sl_blocklist_size(g->blocklist),
                                                  .blocklist_expired = sl_blocklist_cfg_expired(&g->cfg->blocklist, (int64_t)time(NULL)),
                                                  .listeners_added = &ch.added,
                                                  .listeners_removed = &ch.removed,
                                                  .listeners_changed = &ch.changed,
                                                  .listeners_tls = &ch.tls},
                        R.last_reload_summary, sizeof(R.last_reload_summary), fields,
                        sizeof(fields));
  sl_log_json(SL_LOG_INFO, "configuration reloaded", "%s", fields);
  sl_lis_change_free(&ch, false);
  sl_gen_unref(cur);
  R.last_reload_error[0] = '\0';
  return 0;
}

static void reload_timer_cb(struct ev_loop *loop, ev_timer *t, int revents) {
  (void)loop;
  (void)t;
  (void)revents;
  if (!R.reload_pending) return;
  R.reload_pending = false;
  unsigned n = R.reload_triggers;
  R.reload_triggers = 0;
  reload_config(R.reload_trigger, n);
}

void sl_reload_request(const char *trigger) {
  if (!R.reload_pending) R.reload_trigger = trigger;
  R.reload_pending = true;
  R.reload_triggers++;
  if (!ev_is_active(&R.reload_timer)) {
    ev_timer_set(&R.reload_timer, 0.0, 0.0);
    ev_timer_start(P->loop, &R.reload_timer);
  }
}

static void on_files_changed(void *ud) {
  (void)ud;
  sl_reload_request("file");
}

/* ---- admin hooks -------------------------------------------------- */

static void hook_ready(void *ud, int *status) {
  (void)ud;
  *status = (!P->draining && P->workers_running > 0) ? 200 : 503;
  if (*status != 200) return;
  struct sl_gen *g = sl_gen_current_ref();
  if (g->cfg->admin_readiness == SL_READINESS_UPSTREAMS && !sl_upstream_probe_all_up(g))
    *status = 503;
  sl_gen_unref(g);
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
  unsigned triggers = R.reload_triggers + 1;
  R.reload_pending = false;
  R.reload_triggers = 0;
  int rv = reload_config("admin", triggers);
  FILE *f = open_memstream(body, len);
  if (rv == 0) {
    struct sl_gen *g = sl_gen_current_ref();
    *status = 200;
    if (f) {
      char esc[1024];
      size_t n_esc = 0;
      sl_json_escape(esc, sizeof(esc), &n_esc, R.last_reload_summary);
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
      sl_json_escape(esc, sizeof(esc), &n, R.last_reload_error);
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

/* The token of the current configuration (a reload may rotate it); the
 * address of the listener as bound at start-up (a changed address waits
 * for a restart). */
static int hook_authorize(void *ud, const char *auth, size_t len) {
  (void)ud;
  struct sl_gen *g = sl_gen_current_ref();
  int st = sl_admin_authorize(g->cfg->admin_token, P->admin_loopback, auth, len);
  sl_gen_unref(g);
  return st;
}

const struct sl_admin_hooks sl_reload_admin_hooks = {.ready = hook_ready,
                                                     .config = hook_config,
                                                     .reload = hook_reload,
                                                     .explain = hook_explain,
                                                     .authorize = hook_authorize};

/* admin.metrics_address: /metrics, /healthz and /readyz only (the other
 * routes have no hook there: 404). */
const struct sl_admin_hooks sl_reload_metrics_hooks = {.ready = hook_ready};

/* ---- start and stop ------------------------------------------------ */

void sl_reload_start(struct sl_process *p, const struct sl_config *cfg) {
  P = p;
  /* Watch from the files as loaded; a change between the load and this
   * fingerprint (microseconds) would wait for the next one. */
  R.watch = sl_watch_new(p->loop, p->config_path, on_files_changed, NULL);
  watch_files_of(cfg);
  sl_watch_loaded(R.watch, sl_watch_fingerprint(R.watch));
  ev_init(&R.reload_timer, reload_timer_cb);
}

void sl_reload_stop(void) {
  ev_timer_stop(P->loop, &R.reload_timer);
  sl_watch_del(R.watch);
  R.watch = NULL;
}
