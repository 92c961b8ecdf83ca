/* Test fixture: a configuration from YAML (yaml_fixture.h) with its
 * policy state and compiled blocklist, what sl_admission_decide() and
 * sl_explain() need (test_admission.c, test_blocklist_net.c). */
#ifndef SLUICE_TEST_ADMISSION_ENV_H
#define SLUICE_TEST_ADMISSION_ENV_H

#include <stdlib.h>

#include "sluice/blocklist.h"
#include "sluice/config.h"
#include "sluice/policy_state.h"
#include "yaml_fixture.h"

struct env {
  struct sl_config *cfg;
  struct sl_policy_set *ps;
  struct sl_blocklist *bl;
};

/* |head| then |body| loaded (failing the test if they do not load). */
static struct env *env_load_with(const char *head, const char *body) {
  struct env *e = calloc(1, sizeof(*e));
  assert_non_null(e);
  e->cfg = yaml_load_ok(head, body);
  e->ps = sl_policy_set_new(e->cfg, NULL, 0);
  assert_non_null(e->ps);
  e->bl = sl_blocklist_new(&e->cfg->blocklist, e->cfg->mode);
  assert_non_null(e->bl);
  return e;
}

static void env_free(struct env *e) {
  sl_blocklist_del(e->bl);
  sl_policy_set_del(e->ps);
  sl_config_free(e->cfg);
  free(e);
}

#endif
