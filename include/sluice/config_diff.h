/*
 * sluice — what a reload changed: routes, upstreams and sections added,
 * removed or changed between two snapshots, and which policies kept their
 * state (carried over by sl_policy_set_new, and then maybe retuned) or
 * start fresh. Pure: the data plane adds its own facts (listeners, the
 * trigger, the blocklist sizes) and logs the result.
 *
 * "Changed" compares fingerprints (sluice/hash.h) of the fields that
 * define behaviour; they are not stored anywhere, so a collision only
 * makes a log line say "unchanged". Policy identities leave the tunables
 * out (a retuned policy keeps its state and is converted), so the diff
 * hashes them apart: a rate limit's rate, burst and overrides, a
 * breaker's settings, a concurrency `max`, and each kind's
 * sl_kind.tunables.
 */
#ifndef SLUICE_CONFIG_DIFF_H
#define SLUICE_CONFIG_DIFF_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/config-t.h"

/* A bounded list of names for a log line: the first names that fit,
 * comma-separated, and a count of all of them. */
struct sl_namelist {
  char buf[120];
  size_t len;
  unsigned n, shown;
};

void sl_namelist_add(struct sl_namelist *nl, const char *name);

struct sl_config_diff {
  struct sl_namelist routes_added, routes_removed, routes_changed;
  struct sl_namelist upstreams_added, upstreams_removed, upstreams_changed;
  struct sl_namelist sections;           /* "identify", "reject", "shaping", "mode", ... */
  struct sl_namelist carried, retuned, fresh; /* policies that have state */
};

struct sl_policy_set;

/* Compares |prev| and |next| and their policy sets (|next_set| built by
 * sl_policy_set_new(next, prev_set, ...)). Zeroes |d| first. */
void sl_config_diff(const struct sl_config *prev, const struct sl_policy_set *prev_set,
                    const struct sl_config *next, const struct sl_policy_set *next_set,
                    struct sl_config_diff *d);

/* What the data plane knows of a reload. */
struct sl_reload_facts {
  const char *trigger;      /* "SIGHUP", "file", "admin", ... */
  unsigned triggers;        /* coalesced triggers; the field shows when > 1 */
  uint64_t generation;      /* of |next| */
  double duration_ms;
  size_t blocklist_before, blocklist_after;
  size_t blocklist_expired; /* of |blocklist_after|, lapsed at reload time */
  const struct sl_namelist *listeners_added, *listeners_removed, *listeners_changed,
      *listeners_tls;       /* TLS certificates reloaded */
};

/* Writes the one-line summary ("routes +1 -0 ~2; upstreams ...; other:
 * none", as POST /reload answers) to |summary| and the JSON fields of the
 * reload log line ("trigger":...,"generation":...,... without braces, for
 * sl_log_json) to |fields|. A field that would not fit in |fields| is left
 * out, so the line stays whole. */
void sl_config_diff_report(const struct sl_config_diff *d, const struct sl_reload_facts *f,
                           char *summary, size_t summary_len, char *fields, size_t fields_len);

#endif
