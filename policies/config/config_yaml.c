/*
 * sluice — configuration loader: libyaml events to a node tree that keeps
 * every node's mark, and the drop-in merge. See config_int.h.
 *
 * Anchors and aliases are resolved while parsing: an alias shares its
 * anchor's node (the tree becomes a DAG, never copied), and the number of
 * nodes the document would have with every alias expanded is counted as it
 * grows, so a "billion laughs" document fails after a bounded amount of
 * work instead of after exhausting memory. Every other bound (nodes,
 * depth, scalar length, aliases, anchors: config_int.h) is checked before
 * the node it would allocate, so a file over one costs at most the bound.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config_int.h"

#define SCALAR_TAG_STR "tag:yaml.org,2002:str"

struct anchor {
  const char *name;
  struct cfg_node *node;
};

struct frame {
  struct cfg_node *node;
  struct cfg_node *key;   /* map: key waiting for its value */
  const char *anchor;     /* registered when the collection ends */
};

struct builder {
  struct sl_arena *tree;
  struct sl_config_errors *errs;
  const char *file;
  struct frame stack[CFG_MAX_DEPTH];
  size_t depth;
  struct anchor *anchors;
  size_t n_anchors;
  struct cfg_budget *spent; /* shared with the other files of the load */
  struct cfg_node *root;
  int documents;
  bool failed;
};

static void build_error(struct builder *b, const yaml_mark_t *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void build_error(struct builder *b, const yaml_mark_t *m, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  cfg_error_addv(b->errs, b->file, (uint32_t)m->line + 1, (uint32_t)m->column + 1, fmt, ap);
  va_end(ap);
}

static struct cfg_node *node_new(struct builder *b, enum cfg_kind kind, const yaml_mark_t *m) {
  struct cfg_node *n = sl_arena_xalloc(b->tree, sizeof(*n));
  memset(n, 0, sizeof(*n));
  n->kind = kind;
  n->mark.file = b->file;
  n->mark.line = (uint32_t)m->line + 1;
  n->mark.col = (uint32_t)m->column + 1;
  n->weight = 1;
  return n;
}

static void kids_reserve(struct sl_arena *tree, struct cfg_node *n, size_t need) {
  if (need <= n->cap) return;
  size_t cap = n->cap ? n->cap * 2 : 8;
  while (cap < need) cap *= 2;
  struct cfg_node **k = sl_arena_xalloc(tree, cap * sizeof(*k));
  if (n->cap) memcpy(k, n->kids, n->cap * sizeof(*k));
  n->kids = k;
  n->cap = cap;
}

static void seq_append(struct sl_arena *tree, struct cfg_node *seq, struct cfg_node *item) {
  kids_reserve(tree, seq, seq->n + 1);
  seq->kids[seq->n++] = item;
}

static void map_append(struct sl_arena *tree, struct cfg_node *map, struct cfg_node *k,
                       struct cfg_node *v) {
  kids_reserve(tree, map, 2 * map->n + 2);
  map->kids[2 * map->n] = k;
  map->kids[2 * map->n + 1] = v;
  map->n++;
}

/* Charges |add| nodes (with aliases expanded) to the load; false, with the
 * error at |m|, when that crosses CFG_MAX_NODES. */
static bool budget(struct builder *b, uint64_t add, const yaml_mark_t *m) {
  if (add > CFG_MAX_NODES - b->spent->nodes) {
    build_error(b, m,
                "too many nodes (limit %u over the configuration and its drop-ins, "
                "aliases expanded)",
                CFG_MAX_NODES);
    b->failed = true;
    return false;
  }
  b->spent->nodes += add;
  return true;
}

static void anchor_add(struct builder *b, const char *name, struct cfg_node *n,
                       const yaml_mark_t *m) {
  if (b->spent->anchors >= CFG_MAX_ANCHORS) {
    build_error(b, m, "too many anchors (limit %u over the configuration and its drop-ins)",
                CFG_MAX_ANCHORS);
    b->failed = true;
    return;
  }
  b->spent->anchors++;
  if (!b->anchors)
    b->anchors = sl_arena_xalloc(b->tree, CFG_MAX_ANCHORS * sizeof(*b->anchors));
  b->anchors[b->n_anchors].name = name;
  b->anchors[b->n_anchors].node = n;
  b->n_anchors++;
}

/* Adds a finished node to the collection being built (or makes it the
 * document's root). */
static void attach(struct builder *b, struct cfg_node *n, const yaml_mark_t *m) {
  if (b->depth == 0) {
    b->root = n;
    return;
  }
  struct frame *f = &b->stack[b->depth - 1];
  if (f->node->kind == CFG_SEQ) {
    seq_append(b->tree, f->node, n);
    return;
  }
  if (!f->key) {
    if (n->kind != CFG_SCALAR && n->kind != CFG_NULL) {
      build_error(b, m, "mapping keys must be plain strings, not %s", cfg_kind_name(n));
      b->failed = true;
      return;
    }
    f->key = n;
    return;
  }
  map_append(b->tree, f->node, f->key, n);
  f->key = NULL;
}

struct key_ref {
  struct cfg_node *key;
  size_t index;
};

static int key_ref_cmp(const void *pa, const void *pb) {
  const struct key_ref *a = pa, *b = pb;
  size_t n = a->key->len < b->key->len ? a->key->len : b->key->len;
  int c = memcmp(a->key->str, b->key->str, n);
  if (c) return c;
  if (a->key->len != b->key->len) return a->key->len < b->key->len ? -1 : 1;
  return a->index < b->index ? -1 : a->index > b->index;
}

/* Reports every key that repeats an earlier key of |map| (at the later
 * key) and drops it, keeping the first. O(n log n), so a huge map cannot
 * make this quadratic. */
static void map_check_duplicates(struct builder *b, struct cfg_node *map) {
  if (map->n < 2) return;
  struct key_ref *refs = malloc(map->n * sizeof(*refs));
  bool *drop = calloc(map->n, sizeof(*drop));
  if (!refs || !drop) abort();
  for (size_t i = 0; i < map->n; i++) {
    refs[i].key = map->kids[2 * i];
    refs[i].index = i;
  }
  qsort(refs, map->n, sizeof(*refs), key_ref_cmp);
  bool any = false;
  for (size_t i = 1; i < map->n; i++) {
    size_t first = i - 1;
    while (i < map->n && refs[i].key->len == refs[first].key->len &&
           memcmp(refs[i].key->str, refs[first].key->str, refs[i].key->len) == 0) {
      const struct cfg_node *k = refs[i].key, *k0 = refs[first].key;
      cfg_error_add(b->errs, k->mark.file, k->mark.line, k->mark.col,
                    "duplicate key '%s' (first defined at line %u, column %u)", k->str,
                    k0->mark.line, k0->mark.col);
      drop[refs[i].index] = true;
      any = true;
      i++;
    }
  }
  if (any) {
    size_t w = 0;
    for (size_t i = 0; i < map->n; i++) {
      if (drop[i]) continue;
      map->kids[2 * w] = map->kids[2 * i];
      map->kids[2 * w + 1] = map->kids[2 * i + 1];
      w++;
    }
    map->n = w;
  }
  free(drop);
  free(refs);
}

static bool is_null_text(const char *s, size_t len) {
  return len == 0 || (len == 1 && s[0] == '~') ||
         (len == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4)));
}

static void on_scalar(struct builder *b, const yaml_event_t *ev) {
  const yaml_mark_t *m = &ev->start_mark;
  const char *val = (const char *)ev->data.scalar.value;
  size_t len = ev->data.scalar.length;
  if (len > CFG_MAX_SCALAR_BYTES) {
    build_error(b, m, "scalar too long: %zu bytes (limit %u)", len, CFG_MAX_SCALAR_BYTES);
    b->failed = true;
    return;
  }
  if (!budget(b, 1, m)) return;
  bool str_tag = ev->data.scalar.tag && !strcmp((const char *)ev->data.scalar.tag, SCALAR_TAG_STR);
  bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !str_tag;
  struct cfg_node *n = node_new(b, plain && is_null_text(val, len) ? CFG_NULL : CFG_SCALAR, m);
  n->quoted = !plain;
  n->style = (uint8_t)ev->data.scalar.style;
  n->str = sl_arena_strndup(b->tree, val, len);
  if (!n->str) abort();
  n->len = len;
  if (ev->data.scalar.anchor) {
    anchor_add(b, sl_arena_xstrdup(b->tree, (const char *)ev->data.scalar.anchor), n, m);
    if (b->failed) return;
  }
  attach(b, n, m);
}

static void on_collection_start(struct builder *b, const yaml_event_t *ev, enum cfg_kind kind) {
  const yaml_mark_t *m = &ev->start_mark;
  if (b->depth >= CFG_MAX_DEPTH) {
    build_error(b, m, "nesting too deep (limit %u levels of mappings and lists)",
                CFG_MAX_DEPTH);
    b->failed = true;
    return;
  }
  if (!budget(b, 1, m)) return;
  const yaml_char_t *anchor =
      kind == CFG_MAP ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
  struct frame *f = &b->stack[b->depth++];
  f->node = node_new(b, kind, m);
  f->key = NULL;
  f->anchor = anchor ? sl_arena_xstrdup(b->tree, (const char *)anchor) : NULL;
}

static void on_collection_end(struct builder *b, const yaml_event_t *ev) {
  struct frame *f = &b->stack[--b->depth];
  struct cfg_node *n = f->node;
  if (n->kind == CFG_MAP) map_check_duplicates(b, n);
  uint64_t w = 1;
  size_t nk = n->kind == CFG_MAP ? 2 * n->n : n->n;
  for (size_t i = 0; i < nk; i++) w += n->kids[i]->weight;
  n->weight = w;
  if (f->anchor) {
    anchor_add(b, f->anchor, n, &ev->start_mark);
    if (b->failed) return;
  }
  yaml_mark_t m = {.line = n->mark.line - 1, .column = n->mark.col - 1};
  attach(b, n, &m);
}

static void on_alias(struct builder *b, const yaml_event_t *ev) {
  const yaml_mark_t *m = &ev->start_mark;
  const char *name = (const char *)ev->data.alias.anchor;
  struct cfg_node *target = NULL;
  for (size_t i = b->n_anchors; i-- > 0;) {
    if (!strcmp(b->anchors[i].name, name)) {
      target = b->anchors[i].node;
      break;
    }
  }
  if (!target) {
    build_error(b, m, "alias '*%s' refers to no (finished) anchor", name);
    b->failed = true;
    return;
  }
  if (b->spent->aliases >= CFG_MAX_ALIASES) {
    build_error(b, m, "too many aliases (limit %u over the configuration and its drop-ins)",
                CFG_MAX_ALIASES);
    b->failed = true;
    return;
  }
  b->spent->aliases++;
  if (!budget(b, target->weight, m)) return;
  attach(b, target, m);
}

/* Line and column of byte |off| of |buf|, for reader errors, which carry an
 * offset but no mark. */
static yaml_mark_t mark_of_offset(const unsigned char *buf, size_t len, size_t off) {
  yaml_mark_t m = {0};
  if (off > len) off = len;
  for (size_t i = 0; i < off; i++) {
    if (buf[i] == '\n') {
      m.line++;
      m.column = 0;
    } else if ((buf[i] & 0xc0) != 0x80) {
      m.column++;
    }
  }
  m.index = off;
  return m;
}

/* The byte at |m| (line and column, in characters), or -1. */
static int char_at_mark(const unsigned char *buf, size_t len, const yaml_mark_t *m) {
  size_t i = 0, line = 0, col = 0;
  while (i < len && line < m->line)
    if (buf[i++] == '\n') line++;
  while (i < len && col < m->column && buf[i] != '\n') {
    i++;
    while (i < len && (buf[i] & 0xc0) == 0x80) i++;
    col++;
  }
  return i < len ? buf[i] : -1;
}

static void syntax_error(struct builder *b, const yaml_parser_t *p, const unsigned char *buf,
                         size_t len) {
  if (p->error == YAML_MEMORY_ERROR) abort();
  if (p->error == YAML_READER_ERROR) {
    yaml_mark_t m = mark_of_offset(buf, len, p->problem_offset);
    if (p->problem_value != -1)
      build_error(b, &m, "invalid input: %s (byte 0x%02x)", p->problem, p->problem_value & 0xff);
    else
      build_error(b, &m, "invalid input: %s", p->problem);
    return;
  }
  const char *problem = p->problem ? p->problem : "unknown error";
  /* the usual way to get there: versions: >=3.8.0 (a folded block
   * scalar in block context, an invalid token in flow context) */
  int c = char_at_mark(buf, len, &p->problem_mark);
  const char *hint = (p->context && strstr(p->context, "block scalar")) || c == '>' || c == '|'
                         ? "; a value starting with '>' or '|' must be quoted"
                         : "";
  if (p->context)
    build_error(b, &p->problem_mark, "syntax error: %s (%s at line %zu, column %zu)%s", problem,
                p->context, p->context_mark.line + 1, p->context_mark.column + 1, hint);
  else
    build_error(b, &p->problem_mark, "syntax error: %s", problem);
}

struct cfg_node *cfg_yaml_parse(struct sl_arena *tree, struct sl_config_errors *errs,
                                struct cfg_budget *budget, const char *file,
                                const unsigned char *buf, size_t len) {
  struct builder *b = calloc(1, sizeof(*b));
  if (!b) abort();
  b->tree = tree;
  b->errs = errs;
  b->spent = budget;
  b->file = file;

  yaml_parser_t p;
  if (!yaml_parser_initialize(&p)) abort();
  yaml_parser_set_input_string(&p, buf, len);
  bool done = false;
  while (!done && !b->failed) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&p, &ev)) {
      syntax_error(b, &p, buf, len);
      b->failed = true;
      break;
    }
    switch (ev.type) {
    case YAML_STREAM_END_EVENT:
      done = true;
      break;
    case YAML_DOCUMENT_START_EVENT:
      if (++b->documents > 1) {
        build_error(b, &ev.start_mark, "only one YAML document per file is allowed");
        b->failed = true;
      }
      break;
    case YAML_SCALAR_EVENT:
      on_scalar(b, &ev);
      break;
    case YAML_SEQUENCE_START_EVENT:
      on_collection_start(b, &ev, CFG_SEQ);
      break;
    case YAML_MAPPING_START_EVENT:
      on_collection_start(b, &ev, CFG_MAP);
      break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
      on_collection_end(b, &ev);
      break;
    case YAML_ALIAS_EVENT:
      on_alias(b, &ev);
      break;
    default:
      break;
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&p);

  struct cfg_node *root = NULL;
  if (!b->failed) {
    root = b->root;
    if (!root || root->kind == CFG_NULL) {
      yaml_mark_t m = {0};
      if (root) {
        m.line = root->mark.line - 1;
        m.column = root->mark.col - 1;
      }
      root = node_new(b, CFG_MAP, &m);
    }
  }
  free(b);
  return root;
}

/* ---- lookups ------------------------------------------------------ */

static bool key_is(const struct cfg_node *k, const char *key, size_t klen) {
  return k->len == klen && memcmp(k->str, key, klen) == 0;
}

struct cfg_node *cfg_map_get(const struct cfg_node *map, const char *key,
                             struct cfg_node **key_out) {
  if (key_out) *key_out = NULL;
  if (!map || map->kind != CFG_MAP) return NULL;
  size_t klen = strlen(key);
  for (size_t i = 0; i < map->n; i++) {
    if (key_is(map->kids[2 * i], key, klen)) {
      if (key_out) *key_out = map->kids[2 * i];
      return map->kids[2 * i + 1];
    }
  }
  return NULL;
}

static struct cfg_node *node_clone_shallow(struct sl_arena *tree, const struct cfg_node *n) {
  struct cfg_node *c = sl_arena_xalloc(tree, sizeof(*c));
  *c = *n;
  size_t nk = n->kind == CFG_MAP ? 2 * n->n : n->n;
  c->cap = nk ? nk : 0;
  c->kids = NULL;
  if (nk) {
    c->kids = sl_arena_xalloc(tree, nk * sizeof(*c->kids));
    memcpy(c->kids, n->kids, nk * sizeof(*c->kids));
  }
  return c;
}

struct cfg_node *cfg_map_without(struct sl_arena *tree, struct cfg_node *map, const char *key) {
  struct cfg_node *k = NULL;
  cfg_map_get(map, key, &k);
  if (!k) return map;
  struct cfg_node *c = node_clone_shallow(tree, map);
  size_t w = 0;
  for (size_t i = 0; i < c->n; i++) {
    if (c->kids[2 * i] == k) continue;
    c->kids[2 * w] = c->kids[2 * i];
    c->kids[2 * w + 1] = c->kids[2 * i + 1];
    w++;
  }
  c->n = w;
  return c;
}

const char *cfg_kind_name(const struct cfg_node *n) {
  if (!n) return "nothing";
  switch (n->kind) {
  case CFG_NULL:
    return "null";
  case CFG_SCALAR:
    return "a scalar";
  case CFG_MAP:
    return "a mapping";
  case CFG_SEQ:
    return "a list";
  }
  return "?";
}

uint32_t cfg_scalar_col(const struct cfg_node *n, size_t off) {
  switch (n->style) {
  case YAML_SINGLE_QUOTED_SCALAR_STYLE:
  case YAML_DOUBLE_QUOTED_SCALAR_STYLE:
    break;
  case YAML_PLAIN_SCALAR_STYLE:
  case YAML_ANY_SCALAR_STYLE:
    return n->mark.col + (uint32_t)off;
  default:
    return n->mark.col; /* block scalar: the indicator */
  }
  /* Count characters, not bytes, up to |off|. Escapes make this an
   * approximation for double-quoted scalars. */
  uint32_t col = n->mark.col + 1;
  for (size_t i = 0; i < off && i < n->len; i++)
    if (((unsigned char)n->str[i] & 0xc0) != 0x80) col++;
  return col;
}

/* ---- merge -------------------------------------------------------- */

static const struct cfg_node *item_name(const struct cfg_node *item) {
  struct cfg_node *v = cfg_map_get(item, "name", NULL);
  return v && v->kind == CFG_SCALAR ? v : NULL;
}

/* A sorted index of the names of a collection's children (a map's keys, a
 * list's items' `name`), so merging two big collections is O(n log n), not
 * a scan of one per item of the other. */
struct name_ref {
  const struct cfg_node *name;
  size_t index; /* pair or item */
};

static int name_ref_cmp(const void *pa, const void *pb) {
  const struct name_ref *a = pa, *b = pb;
  size_t n = a->name->len < b->name->len ? a->name->len : b->name->len;
  int c = memcmp(a->name->str, b->name->str, n);
  if (c) return c;
  if (a->name->len != b->name->len) return a->name->len < b->name->len ? -1 : 1;
  return a->index < b->index ? -1 : a->index > b->index;
}

/* Index of the first child (lowest index) named like |name| in the sorted
 * |refs|, or SIZE_MAX. */
static size_t name_find(const struct name_ref *refs, size_t n, const struct cfg_node *name) {
  size_t lo = 0, hi = n;
  struct name_ref key = {name, 0};
  while (lo < hi) { /* first ref not below (name, 0) */
    size_t mid = lo + (hi - lo) / 2;
    if (name_ref_cmp(&refs[mid], &key) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < n && refs[lo].name->len == name->len &&
      !memcmp(refs[lo].name->str, name->str, name->len))
    return refs[lo].index;
  return SIZE_MAX;
}

struct cfg_node *cfg_merge(struct sl_arena *tree, struct cfg_node *base, struct cfg_node *over) {
  if (!base) return over;
  if (!over) return base;
  if (base->kind == CFG_MAP && over->kind == CFG_MAP) {
    struct cfg_node *m = node_clone_shallow(tree, base);
    size_t n_base = m->n;
    struct name_ref *refs = malloc((n_base ? n_base : 1) * sizeof(*refs));
    if (!refs) abort();
    for (size_t j = 0; j < n_base; j++) refs[j] = (struct name_ref){m->kids[2 * j], j};
    qsort(refs, n_base, sizeof(*refs), name_ref_cmp);
    for (size_t i = 0; i < over->n; i++) {
      struct cfg_node *ok = over->kids[2 * i], *ov = over->kids[2 * i + 1];
      size_t j = name_find(refs, n_base, ok); /* keys of |over| are unique */
      if (j != SIZE_MAX)
        m->kids[2 * j + 1] = cfg_merge(tree, m->kids[2 * j + 1], ov);
      else
        map_append(tree, m, ok, ov);
    }
    free(refs);
    return m;
  }
  if (base->kind == CFG_SEQ && over->kind == CFG_SEQ) {
    struct cfg_node *s = node_clone_shallow(tree, base);
    size_t n_base = base->n, n_refs = 0;
    struct name_ref *refs = malloc((n_base ? n_base : 1) * sizeof(*refs));
    if (!refs) abort();
    for (size_t j = 0; j < n_base; j++) {
      const struct cfg_node *bn = item_name(s->kids[j]);
      if (bn) refs[n_refs++] = (struct name_ref){bn, j};
    }
    qsort(refs, n_refs, sizeof(*refs), name_ref_cmp);
    for (size_t i = 0; i < over->n; i++) {
      struct cfg_node *item = over->kids[i];
      const struct cfg_node *name = item_name(item);
      /* an item that replaces base item j has j's name, so the index
       * stays true */
      size_t j = name ? name_find(refs, n_refs, name) : SIZE_MAX;
      if (j != SIZE_MAX)
        s->kids[j] = item; /* replaced in place, whole */
      else
        seq_append(tree, s, item);
    }
    free(refs);
    return s;
  }
  return over;
}
