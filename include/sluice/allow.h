/*
 * sluice — exemptions (`allow`, pure): which rule, if any, exempts a
 * request from named policies, so that a partner's traffic is never shed
 * by a ban or a limit meant for the crowd (postmortem 002: wallet-api's
 * address was banned as a spammer and the app went down with it).
 *
 * A rule matches when every criterion it gives matches (AND across
 * client_ip, header, class, device_id and routes; OR within a list). The
 * first matching rule, in configuration order, is the request's: its
 * `skip` mask (SL_SKIP_*, config-t.h) is what admission leaves out.
 * Evaluated once per request, right after identification; a
 * configuration without rules costs one branch (cfg->allow.n_rules).
 */
#ifndef SLUICE_ALLOW_H
#define SLUICE_ALLOW_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/config-t.h"
#include "sluice/identify-t.h"
#include "sluice/route.h"

/* The first rule of |a| that matches the request on |route|, identified
 * as |id| (client_ip: its identified address; class, device_id), with
 * |f| for the header criterion (NULL: no header matches). NULL: none.
 * Allocation-free and thread-safe (|a| is immutable). */
const struct sl_allow_rule *sl_allow_match(const struct sl_allow_cfg *a,
                                           const struct sl_route_cfg *route,
                                           const struct sl_identity *id,
                                           const struct sl_request_facts *f);

/* The names `skip` accepts, in their fixed order (the printer's, explain's):
 * "blocklist", "rate_limits", "shaping", then the keys of the policy
 * kinds of kinds.def. Entry |i|'s name with its bit in |*bit|, or NULL
 * past the end. */
const char *sl_allow_skip_name(size_t i, uint64_t *bit);

/* "blocklist, rate_limits, concurrency": the names of |skip|'s bits, in
 * that order, cut to fit |len|. */
void sl_allow_describe_skip(uint64_t skip, char *buf, size_t len);

/* For explain: what |r| matched on and what it skips, e.g. "client_ip in
 * 1 block, header x-partner; skips blocklist, rate_limits". */
void sl_allow_describe(const struct sl_allow_rule *r, char *buf, size_t len);

#endif
