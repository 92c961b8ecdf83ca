/*
 * Unit tests for policies/route.c: first match wins, every match field.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "sluice/route.h"

struct hdrs {
  const char *name, *value;
};

static const char *lookup(const void *ctx, const char *name) {
  for (const struct hdrs *h = ctx; h && h->name; h++)
    if (strcmp(h->name, name) == 0) return h->value;
  return NULL;
}

static struct sl_request_facts facts(const char *method, const char *path, const char *host,
                                     bool ws, const struct hdrs *h) {
  return (struct sl_request_facts){.method = method, .path = path, .host = host,
                                   .listener = "public", .websocket = ws, .header = lookup,
                                   .header_ctx = h};
}

static void test_fields(void **state) {
  (void)state;
  struct sl_header_match hm[] = {{"x-device-class", "hub"}, {"x-beta", NULL}};
  struct sl_route_match m = {.path_prefix = "/v1/connect", .method = "GET",
                             .host = "api.example.com", .listener = "public",
                             .headers = hm, .n_headers = 2, .websocket = 1};
  struct hdrs ok[] = {{"x-device-class", "hub"}, {"x-beta", ""}, {NULL, NULL}};
  struct hdrs wrong[] = {{"x-device-class", "tv"}, {"x-beta", "1"}, {NULL, NULL}};
  struct hdrs missing[] = {{"x-device-class", "hub"}, {NULL, NULL}};
  struct sl_request_facts f = facts("GET", "/v1/connect?x=1", "API.example.com:8443", true, ok);
  assert_true(sl_route_match_one(&m, &f));
  f.websocket = false;
  assert_false(sl_route_match_one(&m, &f));
  f = facts("POST", "/v1/connect", "api.example.com", true, ok);
  assert_false(sl_route_match_one(&m, &f));
  f = facts("GET", "/v1/conn", "api.example.com", true, ok);
  assert_false(sl_route_match_one(&m, &f));
  f = facts("GET", "/v1/connect", "api.example.org", true, ok);
  assert_false(sl_route_match_one(&m, &f));
  f = facts("GET", "/v1/connect", NULL, true, ok);
  assert_false(sl_route_match_one(&m, &f));
  f = facts("GET", "/v1/connect", "api.example.com", true, wrong);
  assert_false(sl_route_match_one(&m, &f));
  f = facts("GET", "/v1/connect", "api.example.com", true, missing);
  assert_false(sl_route_match_one(&m, &f));
  f = facts("GET", "/v1/connect", "api.example.com", true, ok);
  f.listener = "internal";
  assert_false(sl_route_match_one(&m, &f));
  /* The root dot of a fully qualified name is the same host (issue 8). */
  f = facts("GET", "/v1/connect", "api.example.com.", true, ok);
  assert_true(sl_route_match_one(&m, &f));
  f = facts("GET", "/v1/connect", "API.example.com.:443", true, ok);
  assert_true(sl_route_match_one(&m, &f));
  f = facts("GET", "/v1/connect", "api.example.com..", true, ok);
  assert_false(sl_route_match_one(&m, &f));
  /* IPv6 literal hosts keep their brackets; the port is ignored. */
  struct sl_route_match m6 = {.host = "[::1]", .websocket = -1};
  f = facts("GET", "/", "[::1]:8443", false, NULL);
  assert_true(sl_route_match_one(&m6, &f));
}

static void test_first_match_wins(void **state) {
  (void)state;
  struct sl_route_cfg routes[3];
  memset(routes, 0, sizeof(routes));
  routes[0].name = "ws";
  routes[0].match = (struct sl_route_match){.path_prefix = "/v1/", .websocket = 1};
  routes[1].name = "v1";
  routes[1].match = (struct sl_route_match){.path_prefix = "/v1/", .websocket = -1};
  routes[2].name = "default";
  routes[2].match = (struct sl_route_match){.path_prefix = "/", .websocket = -1};
  struct sl_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.routes = routes;
  cfg.n_routes = 3;
  struct sl_request_facts f = facts("GET", "/v1/connect", "h", true, NULL);
  assert_string_equal(sl_route_select(&cfg, &f)->name, "ws");
  f.websocket = false;
  assert_string_equal(sl_route_select(&cfg, &f)->name, "v1");
  f.path = "/health";
  assert_string_equal(sl_route_select(&cfg, &f)->name, "default");
  cfg.n_routes = 2;
  assert_null(sl_route_select(&cfg, &f));
}

/* Issue 8: a prefix matches on segment boundaries of the (normalised)
 * path; "/v1/connector" is not below "/v1/connect". */
static void test_prefix_segment_boundary(void **state) {
  (void)state;
  struct sl_route_match m = {.path_prefix = "/v1/connect", .websocket = -1};
  const char *yes[] = {"/v1/connect", "/v1/connect/", "/v1/connect/x", "/v1/connect?q=1"};
  const char *no[] = {"/v1/connector", "/v1/connect-x", "/v1/conn", "/v1", "/"};
  for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
    struct sl_request_facts f = facts("GET", yes[i], "h", false, NULL);
    if (!sl_route_match_one(&m, &f)) fail_msg("'%s' should match", yes[i]);
  }
  for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
    struct sl_request_facts f = facts("GET", no[i], "h", false, NULL);
    if (sl_route_match_one(&m, &f)) fail_msg("'%s' should not match", no[i]);
  }
  struct sl_route_match dir = {.path_prefix = "/v1/", .websocket = -1};
  struct sl_request_facts f = facts("GET", "/v1/a", "h", false, NULL);
  assert_true(sl_route_match_one(&dir, &f));
  f = facts("GET", "/v1", "h", false, NULL);
  assert_false(sl_route_match_one(&dir, &f));
  f = facts("GET", "/v10/a", "h", false, NULL);
  assert_false(sl_route_match_one(&dir, &f));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fields),
      cmocka_unit_test(test_first_match_wins),
      cmocka_unit_test(test_prefix_segment_boundary),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
