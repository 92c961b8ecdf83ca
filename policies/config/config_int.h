/*
 * sluice — configuration loader internals, private to policies/config*.c.
 *
 *   config.c         sl_config_load/free, files, include dir, sources, errors
 *   config_yaml.c    libyaml events -> node tree with marks; drop-in merge
 *   config_schema*.c node tree -> struct sl_config, validation, identities (config_schema.h)
 *   config_parse.c   durations, rates, addresses, CIDRs, timestamps, regex
 *   config_print.c   normalised YAML printer
 *
 * The node tree lives in a temporary arena that is freed when loading ends;
 * every mark's file name lives in the snapshot's arena, so a value copied
 * into the snapshot may keep its mark.
 */
#ifndef SLUICE_POLICIES_CONFIG_INT_H
#define SLUICE_POLICIES_CONFIG_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "sluice/arena.h"
#include "sluice/config-t.h"

/* Bounds that keep a hostile or broken file from exhausting the loader:
 * without them a 4 MiB file of two million list items cost hundreds of MiB
 * and a reload runs the same code. The largest configuration we know of
 * (test/bench/reload_bench.py: 200 routes with a rate limit each, 2,000
 * blocklist entries) has about 22,000 nodes, nests 5 levels and uses no
 * alias; the bounds leave it a margin of 9x and more. Node, alias and
 * anchor counts are totals over the main file and every drop-in (struct
 * cfg_budget), so many files cannot add up to what one may not be. At the
 * node bound the tree holds about 25 MiB. */
#define CFG_MAX_FILE_BYTES (4u << 20)   /* per file */
#define CFG_MAX_NODES 200000u           /* nodes, every alias expanded */
#define CFG_MAX_ALIASES 1000u           /* alias uses */
#define CFG_MAX_ANCHORS 1000u           /* anchors */
#define CFG_MAX_DEPTH 64u               /* nesting of mappings and lists */
#define CFG_MAX_SCALAR_BYTES 65536u     /* one scalar (key or value), in bytes */
#define CFG_MAX_ERRORS 1000u            /* per error list; then one "too many" */

enum cfg_kind { CFG_NULL = 0, CFG_SCALAR, CFG_MAP, CFG_SEQ };

/* One YAML node. Maps keep their pairs in order: kids[2*i] is the i-th key
 * (always a scalar), kids[2*i+1] its value; sequences keep items in kids[i].
 * A node reached through several aliases is shared, so the tree is a DAG:
 * never modify a node after parsing (cfg_merge() builds new ones). */
struct cfg_node {
  enum cfg_kind kind;
  bool quoted;          /* scalar not plain (quoted, block, or !!str) */
  uint8_t style;        /* yaml_scalar_style_t, for column arithmetic */
  struct sl_mark mark;  /* start of the node; file lives in the snapshot arena */
  const char *str;      /* scalar text, NUL-terminated (tree arena) */
  size_t len;
  struct cfg_node **kids;
  size_t n;             /* pairs for a map, items for a sequence */
  size_t cap;           /* in pointers */
  uint64_t weight;      /* nodes in this subtree with aliases expanded */
};

/* ---- errors (config.c) ------------------------------------------- */

/* Appends one error; |file| may be NULL (then line and col are ignored). */
void cfg_error_add(struct sl_config_errors *errs, const char *file, uint32_t line,
                   uint32_t col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void cfg_error_addv(struct sl_config_errors *errs, const char *file, uint32_t line,
                    uint32_t col, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

/* ---- YAML (config_yaml.c) ---------------------------------------- */

/* What one load has spent so far, over the main file and its drop-ins;
 * starts zeroed. */
struct cfg_budget {
  uint64_t nodes;    /* with every alias expanded (a node's weight) */
  uint32_t aliases;
  uint32_t anchors;
};

/* Parses |len| bytes of one file named |file| (a string owned by the
 * snapshot), charging its nodes, aliases and anchors to |budget|. Returns
 * the document's root (an empty map for an empty document), allocated in
 * |tree|, or NULL after a fatal error (syntax, a CFG_MAX_* bound), which is
 * appended to |errs| at the line and column where the bound was crossed:
 * parsing stops there, so the memory spent stays proportional to the bound,
 * not to the file. Duplicate keys are reported and the later one dropped;
 * that is not fatal. */
struct cfg_node *cfg_yaml_parse(struct sl_arena *tree, struct sl_config_errors *errs,
                                struct cfg_budget *budget, const char *file,
                                const unsigned char *buf, size_t len);

/* Returns |over| merged onto |base| (SPEC section 3): maps key by key,
 * recursively, |over| winning; in sequences an |over| item that is a map
 * whose `name` equals that of a |base| item replaces it in place, other
 * items are appended; anything else: |over|. Neither input is modified;
 * new nodes are allocated in |tree|. */
struct cfg_node *cfg_merge(struct sl_arena *tree, struct cfg_node *base, struct cfg_node *over);

/* Value of |key| in |map| (NULL when absent or |map| is not a map);
 * |key_out|, if not NULL, receives the key node. */
struct cfg_node *cfg_map_get(const struct cfg_node *map, const char *key,
                             struct cfg_node **key_out);
/* A copy of |map| without |key| (|map| itself when it has no such key). */
struct cfg_node *cfg_map_without(struct sl_arena *tree, struct cfg_node *map, const char *key);

const char *cfg_kind_name(const struct cfg_node *n); /* "a mapping", "a list"... */

/* Column (1-based) of byte |off| of a scalar's text, as well as we can tell
 * for a single-line scalar. */
uint32_t cfg_scalar_col(const struct cfg_node *n, size_t off);

/* ---- schema (config_schema.c) ------------------------------------ */

/* Fills |cfg| from the merged |root|, allocating in cfg->arena. Appends
 * every problem to |errs|. */
void cfg_schema_apply(struct sl_config *cfg, const struct cfg_node *root,
                      struct sl_config_errors *errs);

/* ---- value parsers (config_parse.c) ------------------------------ */

/* Writes |ms| in the largest unit that divides it exactly ("2m", "250ms").
 * |buf| needs 24 bytes. */
void cfg_format_duration(uint64_t ms, char *buf, size_t len);

/* RFC 3339 date-time ("2026-12-01T00:00:00Z", offsets allowed); writes
 * seconds since the epoch. */
int cfg_parse_timestamp(const char *s, int64_t *out, char *err, size_t errlen);
void cfg_format_timestamp(int64_t t, char *buf, size_t len); /* 21 bytes, UTC */

/* True if |s| is an RFC 9110 token (header names, methods). */
bool cfg_is_token(const char *s);

/* Translates a PCRE-style pattern to POSIX ERE for regcomp(): named groups
 * (?P<name>...) and (?<name>...) and (?:...) become plain groups, \d and
 * \D become bracket expressions, escapes inside [...] are rewritten. The
 * result is malloc'd (caller frees). |*class_group| receives the group
 * number of the group named "class" (0 if none). On error returns NULL
 * with a message in |err| and the byte offset in |*err_off|. */
char *cfg_regex_to_posix(const char *re, unsigned *class_group, char *err, size_t errlen,
                         size_t *err_off);

/* Policy identities are chained fingerprints (sluice/hash.h, sl_hash_mix*). */

#endif
