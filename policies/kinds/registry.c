/*
 * sluice — the registry of policy kinds, from kinds.def.
 */
#include <string.h>

#include "sluice/policy.h"

#define SL_POLICY_KIND(name) extern const struct sl_kind sl_kind_##name;
#include "kinds.def"
#undef SL_POLICY_KIND

const struct sl_kind *const sl_policy_kinds[] = {
#define SL_POLICY_KIND(name) &sl_kind_##name,
#include "kinds.def"
#undef SL_POLICY_KIND
};

const size_t sl_n_policy_kinds = sizeof(sl_policy_kinds) / sizeof(sl_policy_kinds[0]);

const struct sl_kind *sl_policy_kind_find(const char *key) {
  for (size_t i = 0; i < sl_n_policy_kinds; i++)
    if (!strcmp(sl_policy_kinds[i]->key, key)) return sl_policy_kinds[i];
  return NULL;
}
