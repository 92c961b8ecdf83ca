/* Unit tests for proxy/core/stats.c: rejection counters and the per-policy log
 * throttle (SPEC section 6: at most N lines per second per policy, with a
 * count of the lines suppressed). The worker's cached loop clock is faked;
 * log lines are captured from stderr. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <pthread.h>
#include <unistd.h>

#include <ev.h>

/* The time each worker's loop last cached (ev_now), under test control. */
static double g_now = 1000.25;
#define ev_now(loop) ((void)(loop), g_now)
#include "../../proxy/core/stats.c"
#undef ev_now

static struct sl_worker g_worker;

/* ---- capturing stderr --------------------------------------------- */

static int g_saved_fd = -1;
static FILE *g_capture;

static void capture_begin(void) {
  fflush(stderr);
  g_capture = tmpfile();
  assert_non_null(g_capture);
  g_saved_fd = dup(STDERR_FILENO);
  assert_true(g_saved_fd >= 0);
  assert_true(dup2(fileno(g_capture), STDERR_FILENO) >= 0);
}

/* Returns what was written to stderr since capture_begin() (malloc'd). */
static char *capture_end(void) {
  fflush(stderr);
  assert_true(dup2(g_saved_fd, STDERR_FILENO) >= 0);
  close(g_saved_fd);
  long n = ftell(g_capture);
  assert_true(n >= 0);
  char *text = calloc(1, (size_t)n + 1);
  assert_non_null(text);
  rewind(g_capture);
  assert_int_equal(fread(text, 1, (size_t)n, g_capture), (size_t)n);
  fclose(g_capture);
  return text;
}

struct lines {
  int n;
  unsigned suppressed[64];
};

/* The lines of |text| with msg |msg| and policy |policy|, and their
 * "suppressed" counts. */
static struct lines lines_of(const char *text, const char *msg, const char *policy) {
  struct lines out = {0};
  char want_msg[128], want_policy[128];
  snprintf(want_msg, sizeof(want_msg), "\"msg\":\"%s\"", msg);
  snprintf(want_policy, sizeof(want_policy), "\"policy\":\"%s\"", policy);
  for (const char *p = text; *p;) {
    const char *nl = strchr(p, '\n');
    size_t len = nl ? (size_t)(nl - p) : strlen(p);
    char line[1024];
    snprintf(line, sizeof(line), "%.*s", (int)len, p);
    if (strstr(line, want_msg) && strstr(line, want_policy)) {
      const char *s = strstr(line, "\"suppressed\":");
      assert_non_null(s);
      if (out.n < 64) out.suppressed[out.n] = (unsigned)strtoul(s + 13, NULL, 10);
      out.n++;
    }
    p += len + (nl ? 1 : 0);
  }
  return out;
}

static void reject(const char *route, const char *policy, bool shadow, int times) {
  for (int i = 0; i < times; i++)
    sl_stats_rejection(&g_worker, route, policy, SL_REASON_RATE_LIMIT, shadow,
                       &(struct sl_stats_who){.client_ip = "192.0.2.1"});
}

static uint64_t counter(bool shadow, const char *route, const char *policy) {
  const char *values[3] = {route, policy, "rate_limit"};
  struct sl_metric_series *s =
      sl_metrics_series(shadow ? sl_stats.shadow_rejections : sl_stats.rejections, values);
  assert_non_null(s);
  return sl_metric_counter_value(s);
}

/* ---- tests -------------------------------------------------------- */

static void test_lines_per_second_and_suppressed(void **st) {
  (void)st;
  sl_stats_set_rejection_log_rate(3);
  capture_begin();
  g_now = 1000.25;
  reject("r1", "r1/client_ip", false, 10);
  g_now = 1000.99;
  reject("r1", "r1/client_ip", false, 2);
  g_now = 1001.0; /* the next second: its first line tells of the 9 */
  reject("r1", "r1/client_ip", false, 1);
  char *text = capture_end();
  struct lines l = lines_of(text, "rejected", "r1/client_ip");
  assert_int_equal(l.n, 4);
  assert_int_equal(l.suppressed[0], 0);
  assert_int_equal(l.suppressed[3], 9);
  assert_int_equal(counter(false, "r1", "r1/client_ip"), 13);
  assert_non_null(strstr(text, "\"level\":\"warn\""));
  assert_non_null(strstr(text, "\"client_ip\":\"192.0.2.1\""));
  free(text);
}

/* Workers cache their loop clocks independently: a worker whose clock still
 * says the previous second must not open a fresh window for the policy. */
static void test_lagging_worker_clock_opens_no_window(void **st) {
  (void)st;
  sl_stats_set_rejection_log_rate(3);
  capture_begin();
  g_now = 2000.0; /* worker A, already in the new second */
  reject("r2", "r2/client_ip", false, 3);
  g_now = 1999.999; /* worker B, one loop iteration behind */
  reject("r2", "r2/client_ip", false, 5);
  g_now = 2000.001; /* worker A again */
  reject("r2", "r2/client_ip", false, 5);
  g_now = 2001.0;
  reject("r2", "r2/client_ip", false, 1);
  char *text = capture_end();
  struct lines l = lines_of(text, "rejected", "r2/client_ip");
  assert_int_equal(l.n, 4); /* 3 in second 2000, 1 in 2001 */
  assert_int_equal(l.suppressed[3], 10);
  free(text);
}

/* Home slot of a throttle key, as rej_log_slot() computes it. */
static size_t old_slot(const char *route, const char *policy) {
  uint64_t h = sl_stats_rejection_key(route, policy, SL_REASON_RATE_LIMIT);
  if (h == 0) h = 1;
  return (size_t)(h ^ (h >> 32)) % REJ_LOG_SLOTS;
}

/* A storm on one policy neither silences another policy nor lends it its
 * suppressed count, even when their hashes fall on the same slot. */
static void test_policies_throttled_apart(void **st) {
  (void)st;
  char other[64];
  size_t want = old_slot("r3", "r3/a");
  int i;
  for (i = 0; i < 100000; i++) {
    snprintf(other, sizeof(other), "r3/b%d", i);
    if (old_slot("r3", other) == want) break;
  }
  assert_true(i < 100000);
  sl_stats_set_rejection_log_rate(2);
  capture_begin();
  g_now = 3000.5;
  reject("r3", "r3/a", false, 50);
  reject("r3", other, false, 1);
  g_now = 3001.5;
  reject("r3", other, false, 1);
  reject("r3", "r3/a", false, 1);
  char *text = capture_end();
  struct lines a = lines_of(text, "rejected", "r3/a");
  struct lines b = lines_of(text, "rejected", other);
  assert_int_equal(b.n, 2);
  assert_int_equal(b.suppressed[0], 0);
  assert_int_equal(b.suppressed[1], 0);
  assert_int_equal(a.n, 3);
  assert_int_equal(a.suppressed[2], 48);
  free(text);
}

/* Shadow and enforced refusals of one policy are counted and throttled
 * apart (a policy switched to shadow by a reload is still visible). */
static void test_shadow_apart(void **st) {
  (void)st;
  sl_stats_set_rejection_log_rate(2);
  capture_begin();
  g_now = 4000.5;
  reject("r4", "r4/client_ip", false, 10);
  reject("r4", "r4/client_ip", true, 3);
  g_now = 4001.5;
  reject("r4", "r4/client_ip", true, 1);
  char *text = capture_end();
  struct lines enforced = lines_of(text, "rejected", "r4/client_ip");
  struct lines shadow = lines_of(text, "shadow rejection", "r4/client_ip");
  assert_int_equal(enforced.n, 2);
  assert_int_equal(shadow.n, 3);
  assert_int_equal(shadow.suppressed[0], 0);
  assert_int_equal(shadow.suppressed[2], 1);
  assert_int_equal(counter(false, "r4", "r4/client_ip"), 10);
  assert_int_equal(counter(true, "r4", "r4/client_ip"), 4);
  free(text);
}

static void test_rate_zero_is_silent(void **st) {
  (void)st;
  sl_stats_set_rejection_log_rate(0);
  capture_begin();
  g_now = 5000.5;
  reject("r5", "r5/client_ip", false, 20);
  char *text = capture_end();
  assert_int_equal(lines_of(text, "rejected", "r5/client_ip").n, 0);
  assert_int_equal(counter(false, "r5", "r5/client_ip"), 20);
  free(text);
}

/* Many policies (more than the old 256 slots would hold apart): each gets
 * its own lines. */
static void test_many_policies(void **st) {
  (void)st;
  sl_stats_set_rejection_log_rate(1);
  capture_begin();
  g_now = 6000.5;
  char name[64];
  for (int i = 0; i < 300; i++) {
    snprintf(name, sizeof(name), "r6/p%d", i);
    reject("r6", name, false, 2);
  }
  char *text = capture_end();
  for (int i = 0; i < 300; i++) {
    snprintf(name, sizeof(name), "r6/p%d", i);
    if (lines_of(text, "rejected", name).n != 1) fail_msg("policy %s: not one line", name);
  }
  free(text);
}

static uint64_t requests_of(const char *route, const char *code) {
  const char *values[3] = {route, "h1", code};
  return sl_metric_counter_value(sl_metrics_series(sl_stats.requests, values));
}

/* A reload frees a snapshot and its route names; the next snapshot may put
 * another route's name at the same address. The per-thread caches must
 * count that route under its own label, not the old one's. Simulated by
 * rewriting a name in place; every cache keyed by a name is checked. */
static void test_reused_name_memory_counts_right_label(void **st) {
  (void)st;
  char *name = malloc(16);
  assert_non_null(name);
  strcpy(name, "alpha");
  sl_stats_request_done(&g_worker, name, 0, 200, 0.01);
  sl_stats_upstream_done(&g_worker, name, 200, 0.001);
  sl_stats_firmware_unknown(name, true);
  sl_stats_connection_accepted(name);
  strcpy(name, "bravo"); /* same address, another name */
  sl_stats_request_done(&g_worker, name, 0, 200, 0.01);
  sl_stats_upstream_done(&g_worker, name, 200, 0.001);
  sl_stats_firmware_unknown(name, true);
  sl_stats_connection_accepted(name);
  assert_int_equal(requests_of("alpha", "200"), 1);
  assert_int_equal(requests_of("bravo", "200"), 1);
  const char *ua[2] = {"alpha", "200"}, *ub[2] = {"bravo", "200"};
  assert_int_equal(sl_metric_counter_value(sl_metrics_series(sl_stats.upstream_requests, ua)), 1);
  assert_int_equal(sl_metric_counter_value(sl_metrics_series(sl_stats.upstream_requests, ub)), 1);
  const char *fa[2] = {"alpha", "absent"}, *fb[2] = {"bravo", "absent"};
  assert_int_equal(sl_metric_counter_value(sl_metrics_series(sl_stats.firmware_unknown, fa)), 1);
  assert_int_equal(sl_metric_counter_value(sl_metrics_series(sl_stats.firmware_unknown, fb)), 1);
  const char *la[1] = {"alpha"}, *lb[1] = {"bravo"};
  assert_int_equal(sl_metric_counter_value(sl_metrics_series(sl_stats.connections_total, la)), 1);
  assert_int_equal(sl_metric_counter_value(sl_metrics_series(sl_stats.connections_total, lb)), 1);
  /* The histogram too: one observation each. */
  char *out;
  size_t len;
  assert_int_equal(sl_metrics_render(&out, &len), 0);
  assert_non_null(strstr(out, "sluice_upstream_request_duration_seconds_count{upstream=\"alpha\"} 1\n"));
  assert_non_null(strstr(out, "sluice_upstream_request_duration_seconds_count{upstream=\"bravo\"} 1\n"));
  free(out);
  /* And the same name at another address is still the same series. */
  char other[16] = "alpha";
  sl_stats_request_done(&g_worker, other, 0, 200, 0.01);
  assert_int_equal(requests_of("alpha", "200"), 2);
  free(name);
}

/* The rendered value of |sample| (a full "name{labels}" prefix), or -1. */
static double rendered(const char *sample) {
  char *out;
  size_t len;
  assert_int_equal(sl_metrics_render(&out, &len), 0);
  double v = -1;
  char *at = strstr(out, sample);
  if (at && at[strlen(sample)] == ' ') v = strtod(at + strlen(sample) + 1, NULL);
  free(out);
  return v;
}

/* sluice_request_duration_seconds: one observation per exchange counted
 * (status codes share the route's series), in cumulative buckets by the
 * seconds given; a negative duration (a tunnel's, observed when it opened)
 * counts the request only. */
static void test_request_duration(void **st) {
  (void)st;
  const char *route = "timed";
  sl_stats_request_done(&g_worker, route, 1, 200, 0.0004);
  sl_stats_request_done(&g_worker, route, 1, 429, 0.003);
  sl_stats_request_done(&g_worker, route, 1, 200, 0.3);
  sl_stats_request_done(&g_worker, route, 1, 101, -1);
  sl_stats_request_duration(route, 1, 0.02); /* the 101's upgrade */
  const char *p = "sluice_request_duration_seconds_bucket{route=\"timed\",protocol=\"h2\",le=";
  char key[256];
  static const struct {
    const char *le;
    double n;
  } want[] = {{"0.001", 1}, {"0.0025", 1}, {"0.005", 2}, {"0.025", 3},
              {"0.25", 3},  {"0.5", 4},    {"10", 4},    {"+Inf", 4}};
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    snprintf(key, sizeof(key), "%s\"%s\"}", p, want[i].le);
    if (rendered(key) != want[i].n) fail_msg("%s: %g, not %g", key, rendered(key), want[i].n);
  }
  assert_true(rendered("sluice_request_duration_seconds_count{route=\"timed\",protocol=\"h2\"}") ==
              4);
  double sum = rendered("sluice_request_duration_seconds_sum{route=\"timed\",protocol=\"h2\"}");
  assert_true(sum > 0.3233 && sum < 0.3235);
  const char *v[3] = {route, "h2", "101"};
  assert_int_equal(sl_metric_counter_value(sl_metrics_series(sl_stats.requests, v)), 1);
}

struct counting {
  const char *route;
  int n;
};

static void *counting_main(void *arg) {
  struct counting *c = arg;
  for (int i = 0; i < c->n; i++) {
    sl_stats_request_done(&g_worker, c->route, 0, 200 + (i & 1), 0.002);
    sl_stats_upstream_done(&g_worker, c->route, 200, 0.001);
  }
  return NULL;
}

/* Workers count into the shared registry through their own caches at once
 * (ThreadSanitizer): nothing lost, nothing under another label. */
static void test_threads_count_apart(void **st) {
  (void)st;
  struct counting c[2] = {{"thread-a", 20000}, {"thread-b", 20000}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, counting_main, &c[i]);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  assert_int_equal(requests_of("thread-a", "200") + requests_of("thread-a", "201"), 20000);
  assert_int_equal(requests_of("thread-b", "200") + requests_of("thread-b", "201"), 20000);
  assert_true(rendered("sluice_request_duration_seconds_count{route=\"thread-a\",protocol=\"h1\"}") ==
              20000);
}

int main(void) {
  sl_stats_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lines_per_second_and_suppressed),
      cmocka_unit_test(test_lagging_worker_clock_opens_no_window),
      cmocka_unit_test(test_policies_throttled_apart),
      cmocka_unit_test(test_shadow_apart),
      cmocka_unit_test(test_rate_zero_is_silent),
      cmocka_unit_test(test_many_policies),
      cmocka_unit_test(test_reused_name_memory_counts_right_label),
      cmocka_unit_test(test_threads_count_apart),
      cmocka_unit_test(test_request_duration),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  sl_metrics_reset();
  return rc;
}
