/*
 * sluice — what a rejection says: the retry-after value and the JSON body.
 * Pure functions: randomness comes in as an argument.
 */
#ifndef SLUICE_RETRY_H
#define SLUICE_RETRY_H

#include <stddef.h>
#include <stdint.h>
#include "sluice/config-t.h"

/* The retry-after header value in whole seconds for a rejection whose
 * policy admits again in |wait_ns| (e.g. sl_rl_verdict.retry_after_ns),
 * given the reject config and a uniformly random |rnd|.
 *
 *   base = ceil(wait_ns / 1 s), clamped to [ceil(min), floor(max)]
 *   w    = round(base * jitter), at least 1 s when jitter > 0
 *   result uniform in [base, min(base + w, max)]
 *
 * The spread only goes up: a client that retries before `base` is refused
 * again for certain, so every retry earlier than the admit time is wasted
 * load. Spreading proportionally to `base` smears a herd rejected together
 * over a window as wide as a fraction of the wait, and the 1 s floor keeps
 * whole-second rounding from collapsing a short window (1 s * 0.5) back to
 * one value, which is when a reconnecting fleet is most synchronised. When
 * `base` is clamped to `max` (the real wait is longer still), the window
 * becomes [max - w, max] instead, never below `min`, so a fleet that all
 * hit the cap is spread too. */
uint32_t sl_retry_after_s(const struct sl_reject_cfg *cfg, uint64_t wait_ns, uint64_t rnd);

/* Renders {"error":"<error>","policy":"<policy>","retry_after":N} into
 * |buf| (NUL-terminated), JSON-escaping both strings (NULL is ""). Returns
 * the length without the NUL, or -1 if |cap| is too small (|buf| then holds
 * no usable JSON). No allocation. */
int sl_reject_body_json(char *buf, size_t cap, const char *error, const char *policy,
                        uint32_t retry_after_s);

/* struct sl_reject_extra (what a refusal adds: body members, headers) is
 * in config-t.h, with the configuration it comes from. */

/* sl_reject_body_json() with |extra_body| (JSON members, see struct
 * sl_reject_extra; NULL: none) before the closing brace. */
int sl_reject_body_json_extra(char *buf, size_t cap, const char *error, const char *policy,
                              uint32_t retry_after_s, const char *extra_body);

#endif
