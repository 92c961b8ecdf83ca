/*
 * sluice — `body` and `headers` of a refusal (struct sl_reject_extra,
 * config-t.h): parsed, printed and fingerprinted the same way wherever a
 * policy lets the configuration add to its answer (maintenance, blocklist
 * entries).
 *
 *   body: {update_url: "https://fw.example.com/3.8.2", min_version: 3.8.2}
 *   headers: {x-ban: spam}
 *
 * Body values are strings, numbers or booleans (a plain scalar that is a
 * JSON number or true/false is written as one; anything else, or a quoted
 * scalar, as a string); keys are never the built-in ones (error, policy,
 * retry_after). Headers are RFC 9110 tokens, never hop-by-hop, framing or
 * the refusal's own (content-type, retry-after, ...).
 */
#ifndef SLUICE_POLICIES_CONFIG_REJECT_EXTRA_H
#define SLUICE_POLICIES_CONFIG_REJECT_EXTRA_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "sluice/config-t.h"

struct cfg_schema;
struct cfg_node;

/* The longest body fragment, so that with the built-in fields the answer
 * fits the refusal's 512-byte body. */
#define SL_REJECT_EXTRA_BODY_MAX 256

/* Parses the `body` and `headers` keys of |map| (either may be absent)
 * into |x| (zeroed first; data in the snapshot arena). Returns false
 * after reporting errors at FILE:LINE:COL. */
bool cs_parse_reject_extra(struct cfg_schema *s, const struct cfg_node *map,
                           struct sl_reject_extra *x);

/* Prints `body:` and `headers:` (each only when set) at indent |ind|, so
 * that the printed file loads back to the same |x|. */
void cfg_print_reject_extra(FILE *out, int ind, const struct sl_reject_extra *x);

/* |h| chained with |x|'s body and headers (sl_hash_mix_*). */
uint64_t sl_reject_extra_mix(uint64_t h, const struct sl_reject_extra *x);

#endif
