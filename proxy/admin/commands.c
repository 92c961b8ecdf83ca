/*
 * sluice — `sluice check` and `sluice explain`, and configuration loading
 * with its error report. See commands.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/blocklist.h"
#include "sluice/config.h"
#include "sluice/explain.h"
#include "sluice/log.h"
#include "sluice/policy_state.h"
#include "admin/commands.h"
#include "core/clock.h"
#include "front/tls.h"

void sl_config_log_errors(const struct sl_config_errors *errs, const char *msg) {
  for (size_t i = 0; i < errs->n; i++) {
    char where[512];
    snprintf(where, sizeof(where), "%s:%u:%u", errs->items[i].file, errs->items[i].line,
             errs->items[i].col);
    sl_log(SL_LOG_ERROR, msg, "where", where, "error", errs->items[i].message, NULL);
  }
}

struct sl_config *sl_config_load_or_report(const char *path, bool as_log) {
  struct sl_config_errors errs = {0};
  struct sl_config *cfg = sl_config_load(path, &errs);
  if (!cfg) {
    if (as_log)
      sl_config_log_errors(&errs, "invalid configuration");
    else
      sl_config_errors_print(&errs, stderr);
    sl_config_errors_free(&errs);
  }
  return cfg;
}

/* Each blocklist entry of |cfg| that has lapsed at |now_unix|, as
 * "FILE:LINE:COL: warning: ..." (or "error:" when |strict|) on stderr.
 * Returns how many. */
static size_t check_expired(const struct sl_config *cfg, const char *path, int64_t now_unix,
                            bool strict) {
  size_t n = 0, all = sl_blocklist_cfg_count(&cfg->blocklist);
  for (size_t i = 0; i < all; i++) {
    const struct sl_block_entry *e = sl_blocklist_cfg_at(&cfg->blocklist, i);
    if (!sl_block_entry_expired(e, now_unix)) continue;
    char what[512];
    sl_config_describe_expiry(e, now_unix, what, sizeof(what));
    fprintf(stderr, "%s:%u:%u: %s: %s\n", e->mark.file ? e->mark.file : path, e->mark.line,
            e->mark.col, strict ? "error" : "warning", what);
    n++;
  }
  return n;
}

void sl_config_log_expired(const struct sl_config *cfg, int64_t now_unix) {
  enum { SHOWN = 10 };
  size_t n = 0, all = sl_blocklist_cfg_count(&cfg->blocklist);
  for (size_t i = 0; i < all; i++) {
    const struct sl_block_entry *e = sl_blocklist_cfg_at(&cfg->blocklist, i);
    if (!sl_block_entry_expired(e, now_unix) || n++ >= SHOWN) continue;
    char what[512], where[512];
    sl_config_describe_expiry(e, now_unix, what, sizeof(what));
    snprintf(where, sizeof(where), "%s:%u:%u", e->mark.file ? e->mark.file : "", e->mark.line,
             e->mark.col);
    sl_log(SL_LOG_WARN, "blocklist entry expired", "where", where, "detail", what, NULL);
  }
  if (n > SHOWN) {
    sl_log_json(SL_LOG_WARN, "more blocklist entries expired", "\"count\":%zu", n - SHOWN);
  }
}

int sl_cmd_check(const char *path, bool print) {
  return sl_cmd_check_with(path, &(struct sl_check_opts){.print = print});
}

int sl_cmd_check_with(const char *path, const struct sl_check_opts *o) {
  bool print = o->print;
  struct sl_config *cfg = sl_config_load_or_report(path, false);
  if (!cfg) return 1;
  /* Validate exactly what `run` would load: certificates and keys are
   * opened and matched too, so a deploy pipeline's check cannot pass a
   * configuration that then fails to start (postmortem 003). */
  int bad = 0;
  for (size_t i = 0; i < cfg->n_listeners; i++) {
    const struct sl_listener_cfg *lc = &cfg->listeners[i];
    if (!lc->tls_certificate) continue;
    char err[512];
    SSL_CTX *ctx = sl_tls_ctx_new(lc, err, sizeof(err));
    if (!ctx) {
      fprintf(stderr, "%s:%u:%u: listener '%s': %s\n", lc->mark.file ? lc->mark.file : path,
              lc->mark.line, lc->mark.col, lc->name, err);
      bad = 1;
      continue;
    }
    SSL_CTX_free(ctx);
  }
  /* An expired entry blocks nothing: say so, so that nobody believes a
   * block is in force when it lapsed (issue 12). */
  if (check_expired(cfg, path, (int64_t)time(NULL), o->strict) && o->strict) bad = 1;
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
int sl_cmd_explain(const char *path, const char *method, const char *ip, const char **hdrs,
                   int n_hdrs, const char *req_path) {
  struct sl_config *cfg = sl_config_load_or_report(path, false);
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

