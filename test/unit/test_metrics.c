/*
 * Unit tests for proxy/core/metrics.c: exact exposition text, escaping,
 * concurrent updates, series identity, and a line-format validator.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/metrics.h"

/* ---- a small validator of the text format --------------------------
 * Comment lines are "# HELP name text" or "# TYPE name type"; every other
 * line is `name{label="value",...} value` with a float value. */

static bool name_char(char c, bool first, bool colon_ok) {
  return isalpha((unsigned char)c) || c == '_' || (colon_ok && c == ':') ||
         (!first && isdigit((unsigned char)c));
}

static const char *skip_name(const char *p, bool colon_ok) {
  if (!name_char(*p, true, colon_ok)) return NULL;
  while (name_char(*p, false, colon_ok)) p++;
  return p;
}

static bool valid_value(const char *p, const char *end) {
  size_t n = (size_t)(end - p);
  if (n == 0) return false;
  if ((n == 3 && memcmp(p, "NaN", 3) == 0) || (n == 4 && memcmp(p, "+Inf", 4) == 0) ||
      (n == 4 && memcmp(p, "-Inf", 4) == 0))
    return true;
  char tmp[64];
  if (n >= sizeof(tmp)) return false;
  memcpy(tmp, p, n);
  tmp[n] = '\0';
  char *e;
  strtod(tmp, &e);
  return *e == '\0' && !isspace((unsigned char)tmp[0]);
}

static bool valid_sample_line(const char *p, const char *end) {
  p = skip_name(p, true);
  if (!p) return false;
  if (*p == '{') {
    p++;
    while (*p != '}') {
      p = skip_name(p, false);
      if (!p || *p++ != '=' || *p++ != '"') return false;
      while (*p != '"') {
        if (p >= end || *p == '\n') return false;
        if (*p == '\\') {
          p++;
          if (*p != '\\' && *p != '"' && *p != 'n') return false;
        }
        p++;
      }
      p++;
      if (*p == ',') p++;
      else if (*p != '}') return false;
    }
    p++;
  }
  if (*p++ != ' ') return false;
  return valid_value(p, end);
}

static bool valid_comment_line(const char *p, const char *end) {
  if (strncmp(p, "# HELP ", 7) == 0) {
    const char *q = skip_name(p + 7, true);
    return q && (q == end || *q == ' ');
  }
  if (strncmp(p, "# TYPE ", 7) == 0) {
    const char *q = skip_name(p + 7, true);
    if (!q || *q++ != ' ') return false;
    size_t n = (size_t)(end - q);
    static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
    for (size_t i = 0; i < 5; i++)
      if (n == strlen(types[i]) && memcmp(q, types[i], n) == 0) return true;
  }
  return false;
}

/* Returns the 1-based number of the first bad line, or 0. */
static int validate_exposition(const char *text, size_t len) {
  if (len && text[len - 1] != '\n') return -1;
  int lineno = 0;
  const char *p = text, *end = text + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    lineno++;
    bool ok = *p == '#' ? valid_comment_line(p, nl) : valid_sample_line(p, nl);
    if (!ok) return lineno;
    p = nl + 1;
  }
  return 0;
}

static char *render(void) {
  char *out;
  size_t len;
  assert_int_equal(sl_metrics_render(&out, &len), 0);
  assert_int_equal(strlen(out), len);
  int bad = validate_exposition(out, len);
  if (bad) fprintf(stderr, "bad line %d in:\n%s", bad, out);
  assert_int_equal(bad, 0);
  return out;
}

static int teardown(void **state) {
  (void)state;
  sl_metrics_reset();
  return 0;
}

/* ---- tests -------------------------------------------------------- */

static void test_validator_rejects_bad_lines(void **state) {
  (void)state;
  static const char *const bad[] = {
      "x 1",            /* no trailing newline */
      "x{a=\"b} 1\n",   /* unterminated value */
      "x{a=b} 1\n",     /* unquoted */
      "9x 1\n",         /* bad name */
      "x 1 2 3\n",      /* junk value */
      "x{a=\"\\q\"} 1\n", /* bad escape */
      "# TYPE x widget\n",
      "x\n",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_not_equal(validate_exposition(bad[i], strlen(bad[i])), 0);
  const char *good = "# HELP x a\n# TYPE x counter\nx{a=\"\\\"\\n\\\\\"} 1\nx 1.5e+09\ny NaN\n";
  assert_int_equal(validate_exposition(good, strlen(good)), 0);
}

static void test_empty_registry(void **state) {
  (void)state;
  char *out = render();
  assert_string_equal(out, "");
  free(out);
}

static void test_family_without_series(void **state) {
  (void)state;
  sl_metrics_family("sluice_requests_total", "Requests handled.", SL_METRIC_COUNTER,
                    "route,protocol,code");
  sl_metrics_family("sluice_upstream_request_duration_seconds", "Upstream latency.",
                    SL_METRIC_HISTOGRAM, "upstream");
  char *out = render();
  assert_string_equal(out,
                      "# HELP sluice_requests_total Requests handled.\n"
                      "# TYPE sluice_requests_total counter\n"
                      "# HELP sluice_upstream_request_duration_seconds Upstream latency.\n"
                      "# TYPE sluice_upstream_request_duration_seconds histogram\n");
  free(out);
}

static void test_counter_and_gauge_text(void **state) {
  (void)state;
  struct sl_metric_family *req =
      sl_metrics_family("sluice_requests_total", "Requests handled.", SL_METRIC_COUNTER,
                        "route,protocol,code");
  struct sl_metric_family *gen =
      sl_metrics_family("sluice_config_generation", "Configuration generation.",
                        SL_METRIC_GAUGE, "");
  struct sl_metric_family *ts =
      sl_metrics_family("sluice_config_last_reload_success_timestamp_seconds",
                        "Unix time of the last successful reload.", SL_METRIC_GAUGE, "");
  struct sl_metric_family *active =
      sl_metrics_family("sluice_connections_active", "Open connections.", SL_METRIC_GAUGE,
                        "listener,protocol");

  struct sl_metric_series *a = sl_metrics_series(req, (const char *[]){"api", "h1", "200"});
  struct sl_metric_series *b = sl_metrics_series(req, (const char *[]){"api", "h2", "429"});
  sl_metric_inc(a);
  sl_metric_add(a, 41);
  sl_metric_inc(b);
  sl_metric_gauge_set(sl_metrics_series(gen, NULL), 7);
  sl_metric_gauge_set_double(sl_metrics_series(ts, NULL), 1763733600.125);
  struct sl_metric_series *c = sl_metrics_series(active, (const char *[]){"public", "h1"});
  sl_metric_gauge_add(c, 3);
  sl_metric_gauge_add(c, -5);

  assert_int_equal(sl_metric_counter_value(a), 42);
  assert_true(sl_metric_gauge_value(c) == -2.0);
  assert_true(sl_metric_gauge_value(sl_metrics_series(ts, NULL)) == 1763733600.125);

  char *out = render();
  assert_string_equal(
      out,
      "# HELP sluice_requests_total Requests handled.\n"
      "# TYPE sluice_requests_total counter\n"
      "sluice_requests_total{route=\"api\",protocol=\"h1\",code=\"200\"} 42\n"
      "sluice_requests_total{route=\"api\",protocol=\"h2\",code=\"429\"} 1\n"
      "# HELP sluice_config_generation Configuration generation.\n"
      "# TYPE sluice_config_generation gauge\n"
      "sluice_config_generation 7\n"
      "# HELP sluice_config_last_reload_success_timestamp_seconds Unix time of the last "
      "successful reload.\n"
      "# TYPE sluice_config_last_reload_success_timestamp_seconds gauge\n"
      "sluice_config_last_reload_success_timestamp_seconds 1763733600.125\n"
      "# HELP sluice_connections_active Open connections.\n"
      "# TYPE sluice_connections_active gauge\n"
      "sluice_connections_active{listener=\"public\",protocol=\"h1\"} -2\n");
  free(out);
}

static void test_double_gauge_add(void **state) {
  (void)state;
  struct sl_metric_family *f = sl_metrics_family("g", "", SL_METRIC_GAUGE, "");
  struct sl_metric_series *s = sl_metrics_series(f, NULL);
  sl_metric_gauge_set_double(s, 0.5);
  sl_metric_gauge_add(s, 2);
  assert_true(sl_metric_gauge_value(s) == 2.5);
  sl_metric_gauge_set(s, 4);
  assert_true(sl_metric_gauge_value(s) == 4.0);
  char *out = render();
  assert_string_equal(out, "# HELP g \n# TYPE g gauge\ng 4\n");
  free(out);
}

static void test_histogram_text(void **state) {
  (void)state;
  struct sl_metric_family *f =
      sl_metrics_family("sluice_upstream_request_duration_seconds", "Upstream latency.",
                        SL_METRIC_HISTOGRAM, "upstream");
  struct sl_metric_series *s = sl_metrics_series(f, (const char *[]){"backend"});
  sl_metric_observe(s, 0.001);  /* le is inclusive: lands in 0.001 */
  sl_metric_observe(s, 0.003);  /* 0.005 */
  sl_metric_observe(s, 0.2);    /* 0.25 */
  sl_metric_observe(s, 42);     /* +Inf only */
  sl_metric_observe(s, -1);     /* counted as 0 s */
  assert_int_equal(sl_metric_counter_value(s), 5);

  char *out = render();
  const char *n = "sluice_upstream_request_duration_seconds";
  char want[4096];
  snprintf(want, sizeof(want),
           "# HELP %1$s Upstream latency.\n"
           "# TYPE %1$s histogram\n"
           "%1$s_bucket{upstream=\"backend\",le=\"0.001\"} 2\n"
           "%1$s_bucket{upstream=\"backend\",le=\"0.0025\"} 2\n"
           "%1$s_bucket{upstream=\"backend\",le=\"0.005\"} 3\n"
           "%1$s_bucket{upstream=\"backend\",le=\"0.01\"} 3\n"
           "%1$s_bucket{upstream=\"backend\",le=\"0.025\"} 3\n"
           "%1$s_bucket{upstream=\"backend\",le=\"0.05\"} 3\n"
           "%1$s_bucket{upstream=\"backend\",le=\"0.1\"} 3\n"
           "%1$s_bucket{upstream=\"backend\",le=\"0.25\"} 4\n"
           "%1$s_bucket{upstream=\"backend\",le=\"0.5\"} 4\n"
           "%1$s_bucket{upstream=\"backend\",le=\"1\"} 4\n"
           "%1$s_bucket{upstream=\"backend\",le=\"2.5\"} 4\n"
           "%1$s_bucket{upstream=\"backend\",le=\"5\"} 4\n"
           "%1$s_bucket{upstream=\"backend\",le=\"10\"} 4\n"
           "%1$s_bucket{upstream=\"backend\",le=\"+Inf\"} 5\n"
           "%1$s_sum{upstream=\"backend\"} 42.204\n"
           "%1$s_count{upstream=\"backend\"} 5\n",
           n);
  assert_string_equal(out, want);
  free(out);
}

static void test_histogram_without_labels(void **state) {
  (void)state;
  struct sl_metric_family *f = sl_metrics_family("h_seconds", "h", SL_METRIC_HISTOGRAM, "");
  sl_metric_observe(sl_metrics_series(f, NULL), 0.5);
  char *out = render();
  assert_non_null(strstr(out, "\nh_seconds_bucket{le=\"0.25\"} 0\n"));
  assert_non_null(strstr(out, "\nh_seconds_bucket{le=\"0.5\"} 1\n"));
  assert_non_null(strstr(out, "\nh_seconds_bucket{le=\"+Inf\"} 1\n"));
  assert_non_null(strstr(out, "\nh_seconds_sum 0.5\nh_seconds_count 1\n"));
  free(out);
}

static void test_label_escaping(void **state) {
  (void)state;
  struct sl_metric_family *f =
      sl_metrics_family("esc_total", "Help with \\ and\nnewline \"quoted\".", SL_METRIC_COUNTER,
                        "a,b");
  sl_metric_inc(sl_metrics_series(f, (const char *[]){"back\\slash \"q\"", "line\nbreak"}));
  sl_metric_inc(sl_metrics_series(f, (const char *[]){"", NULL})); /* NULL counts as "" */
  char *out = render();
  assert_string_equal(out,
                      "# HELP esc_total Help with \\\\ and\\nnewline \"quoted\".\n"
                      "# TYPE esc_total counter\n"
                      "esc_total{a=\"back\\\\slash \\\"q\\\"\",b=\"line\\nbreak\"} 1\n"
                      "esc_total{a=\"\",b=\"\"} 1\n");
  free(out);
}

static void test_same_series_for_same_labels(void **state) {
  (void)state;
  struct sl_metric_family *f = sl_metrics_family("same_total", "", SL_METRIC_COUNTER, "x,y");
  assert_ptr_equal(sl_metrics_family("same_total", "other help", SL_METRIC_COUNTER, "x,y"), f);
  char x[16], y[16];
  strcpy(x, "ab");
  strcpy(y, "c");
  struct sl_metric_series *s1 = sl_metrics_series(f, (const char *[]){x, y});
  /* Different storage, same values. */
  struct sl_metric_series *s2 = sl_metrics_series(f, (const char *[]){"ab", "c"});
  assert_ptr_equal(s1, s2);
  /* Concatenations that collide must not. */
  struct sl_metric_series *s3 = sl_metrics_series(f, (const char *[]){"a", "bc"});
  assert_ptr_not_equal(s1, s3);

  /* Enough series to force the table to grow several times; every one
   * is still found afterwards. */
  struct sl_metric_series *all[500];
  for (int i = 0; i < 500; i++) {
    char v[16];
    snprintf(v, sizeof(v), "%d", i);
    all[i] = sl_metrics_series(f, (const char *[]){"k", v});
    assert_non_null(all[i]);
  }
  for (int i = 0; i < 500; i++) {
    char v[16];
    snprintf(v, sizeof(v), "%d", i);
    assert_ptr_equal(sl_metrics_series(f, (const char *[]){"k", v}), all[i]);
  }
  assert_ptr_equal(sl_metrics_series(f, (const char *[]){"ab", "c"}), s1);
  char *out = render();
  free(out);
}

/* ---- concurrency -------------------------------------------------- */

#define THREADS 4
#define ITERS 100000

struct worker_arg {
  struct sl_metric_family *counter, *gauge, *hist;
  int id;
};

static void *worker(void *p) {
  struct worker_arg *w = p;
  char id[8];
  snprintf(id, sizeof(id), "%d", w->id % 2);
  for (int i = 0; i < ITERS; i++) {
    /* Look-ups race with each other and with creation on purpose. */
    struct sl_metric_series *s = sl_metrics_series(w->counter, (const char *[]){"shared"});
    sl_metric_inc(s);
    if (i % 100 == 0) sl_metric_inc(sl_metrics_series(w->counter, (const char *[]){id}));
    sl_metric_gauge_add(sl_metrics_series(w->gauge, NULL), (i & 1) ? -1 : 2);
    sl_metric_observe(sl_metrics_series(w->hist, NULL), 0.002);
  }
  return NULL;
}

/* Renders while the workers run; cmocka's asserts are not thread-safe,
 * so failures are counted and checked by the main thread. */
struct render_arg {
  _Atomic bool stop;
  int failures, renders;
};

static void *renderer(void *p) {
  struct render_arg *r = p;
  while (!atomic_load(&r->stop)) {
    char *out;
    size_t len;
    if (sl_metrics_render(&out, &len) != 0 || validate_exposition(out, len) != 0) r->failures++;
    else free(out);
    r->renders++;
  }
  return NULL;
}

static void test_concurrent_increments(void **state) {
  (void)state;
  struct worker_arg args[THREADS];
  pthread_t th[THREADS], rt;
  struct sl_metric_family *c = sl_metrics_family("conc_total", "", SL_METRIC_COUNTER, "k");
  struct sl_metric_family *g = sl_metrics_family("conc_gauge", "", SL_METRIC_GAUGE, "");
  struct sl_metric_family *h = sl_metrics_family("conc_seconds", "", SL_METRIC_HISTOGRAM, "");
  struct render_arg r = {.stop = false};
  assert_int_equal(pthread_create(&rt, NULL, renderer, &r), 0);
  for (int i = 0; i < THREADS; i++) {
    args[i] = (struct worker_arg){.counter = c, .gauge = g, .hist = h, .id = i};
    assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  atomic_store(&r.stop, true);
  pthread_join(rt, NULL);
  assert_int_equal(r.failures, 0);
  assert_true(r.renders > 0);

  assert_int_equal(sl_metric_counter_value(sl_metrics_series(c, (const char *[]){"shared"})),
                   (uint64_t)THREADS * ITERS);
  assert_int_equal(sl_metric_counter_value(sl_metrics_series(c, (const char *[]){"0"})),
                   2 * ITERS / 100);
  assert_true(sl_metric_gauge_value(sl_metrics_series(g, NULL)) == (double)THREADS * ITERS / 2);
  assert_int_equal(sl_metric_counter_value(sl_metrics_series(h, NULL)), THREADS * ITERS);

  char *out = render();
  assert_non_null(strstr(out, "\nconc_total{k=\"shared\"} 400000\n"));
  assert_non_null(strstr(out, "\nconc_seconds_bucket{le=\"0.001\"} 0\n"));
  assert_non_null(strstr(out, "\nconc_seconds_bucket{le=\"0.0025\"} 400000\n"));
  assert_non_null(strstr(out, "\nconc_seconds_sum 800\n"));
  free(out);
}

static void test_null_series_is_ignored(void **state) {
  (void)state;
  sl_metric_inc(NULL);
  sl_metric_add(NULL, 3);
  sl_metric_gauge_add(NULL, 1);
  sl_metric_gauge_set(NULL, 1);
  sl_metric_gauge_set_double(NULL, 1.5);
  sl_metric_observe(NULL, 1);
  assert_int_equal(sl_metric_counter_value(NULL), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_validator_rejects_bad_lines),
      cmocka_unit_test_teardown(test_empty_registry, teardown),
      cmocka_unit_test_teardown(test_family_without_series, teardown),
      cmocka_unit_test_teardown(test_counter_and_gauge_text, teardown),
      cmocka_unit_test_teardown(test_double_gauge_add, teardown),
      cmocka_unit_test_teardown(test_histogram_text, teardown),
      cmocka_unit_test_teardown(test_histogram_without_labels, teardown),
      cmocka_unit_test_teardown(test_label_escaping, teardown),
      cmocka_unit_test_teardown(test_same_series_for_same_labels, teardown),
      cmocka_unit_test_teardown(test_concurrent_increments, teardown),
      cmocka_unit_test(test_null_series_is_ignored),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
