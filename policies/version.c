/*
 * sluice — firmware versions and version ranges (SPEC section 4).
 *
 * Version grammar (what devices really send, tolerated on purpose):
 *
 *   version  = OWS [ "v" | "V" ] num *3( "." num ) [ pre ] [ "+" build ] OWS
 *   num      = 1*DIGIT                       ; value <= UINT32_MAX
 *   pre      = "-" tag | ALPHA-led tag       ; "3.8.0-b3", "3.8.0b3"
 *   tag      = 1*( ALNUM ) *( ( "." | "-" ) 1*ALNUM )
 *   build    = 1*( ALNUM | "." | "-" )       ; ignored entirely
 *
 * Missing components are zero ("v3.8" is 3.8.0, "3" is 3.0.0); a fourth
 * component orders after the first three ("3.8.0.1" > "3.8.0"). Tags are
 * stored lowercased with their separators, and compared run by run:
 * separators only split runs, digit runs compare numerically, letter runs
 * lexically, a digit run sorts before a letter run (as in semver), and a tag
 * with fewer runs sorts first when all its runs are equal ("rc" < "rc1").
 * A release (empty tag) sorts after every pre-release of its numbers. So
 * b3 < b10 < rc1 < release, and "rc.1" == "rc1".
 *
 * Range grammar:
 *
 *   range    = clause *( OWS "||" OWS clause )
 *   clause   = term *( 1*SP term )           ; AND
 *   term     = [ op OWS ] version | wildcard
 *   op       = ">=" | ">" | "<=" | "<" | "="  ; none: "="
 *   wildcard = [ "=" ] [ "v" ] ( "x" | "*" | num "." ( "x" | "*" ) ...)
 *
 * Ranges are intervals of the total order above, nothing more: unlike
 * node-semver, "<3.8.1" includes 3.8.1-rc1, because a pre-release of 3.8.1
 * is older than 3.8.1 and a firmware team writing "<3.8.1" means "anything
 * before the fixed release".
 *
 * Wildcards. "3.8.x" (also "3.8.*", "3.8.x.x") means every version whose
 * first two components are 3 and 8, INCLUDING the pre-releases of 3.8.0
 * (3.8.0-b1 is a 3.8 firmware), and excluding those of 3.9.0 (3.9.0-b1 is
 * not). In the total order that is exactly
 *
 *   >=3.8.0-0 <3.9.0-0
 *
 * because "0" is the lowest possible tag (a single digit run of value 0;
 * a tag cannot be empty, and a digit run sorts before any letter run), so
 * 3.8.0-0 is the first version of the 3.8 line and 3.9.0-0 the first one
 * after it. This is also how node-semver spells the bounds. "3.x" is
 * >=3.0.0-0 <4.0.0-0; "x" and "*" alone match everything. A wildcard with
 * a bound at UINT32_MAX ("4294967295.x") has no upper bound. Wildcards take
 * no operator other than "=": ">3.8.x" is rejected as ambiguous rather than
 * guessed at, since a guess in a blocklist blocks the wrong devices.
 *
 * A bare or "=" version without wildcard is an equality on the parsed
 * value: "=3.8" is "=3.8.0", it does NOT mean 3.8.x.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/version.h"

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static bool is_alnum(unsigned char c) { return is_digit(c) || is_alpha(c); }
static bool is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

/* Parses 1*DIGIT at s[*i] into *out. Returns -1 when there is no digit or
 * the value exceeds UINT32_MAX. */
static int parse_num(const char *s, size_t len, size_t *i, uint32_t *out) {
  size_t j = *i;
  uint64_t v = 0;
  if (j >= len || !is_digit((unsigned char)s[j])) return -1;
  while (j < len && is_digit((unsigned char)s[j])) {
    v = v * 10 + (uint64_t)(s[j] - '0');
    if (v > UINT32_MAX) return -1;
    j++;
  }
  *i = j;
  *out = (uint32_t)v;
  return 0;
}

/* The core parser: parses a version at s[0..len) and stops at the first
 * byte it cannot use, returning its index in *end. With |allow_wild|, a
 * component may be "x"/"X"/"*", which sets *wild_at to the index of the
 * first wildcard component (else *wild_at is 4). Returns 0 or -1. */
static int parse_version_prefix(const char *s, size_t len, size_t *end, struct sl_version *out,
                                bool allow_wild, unsigned *wild_at) {
  size_t i = 0;
  unsigned n = 0;
  memset(out, 0, sizeof(*out));
  if (wild_at) *wild_at = 4;
  if (i < len && (s[i] == 'v' || s[i] == 'V')) i++;
  for (;;) {
    if (n == 4) return -1; /* a fifth component */
    if (allow_wild && i < len && (s[i] == 'x' || s[i] == 'X' || s[i] == '*')) {
      /* "x" must not be the start of a tag: "3.x" yes, "3.xy" no. */
      if (i + 1 < len && is_alnum((unsigned char)s[i + 1])) return -1;
      if (*wild_at == 4) *wild_at = n;
      i++;
    } else {
      if (wild_at && *wild_at != 4) return -1; /* "3.x.5" */
      if (parse_num(s, len, &i, &out->num[n]) < 0) return -1;
    }
    n++;
    if (i < len && s[i] == '.') {
      i++;
      continue; /* another component is now mandatory: "3." and "3..8" fail */
    }
    break;
  }
  bool wild = wild_at && *wild_at != 4;
  /* Pre-release tag. */
  if (i < len && (s[i] == '-' || is_alpha((unsigned char)s[i]))) {
    if (wild) return -1; /* "3.x-b1" */
    if (s[i] == '-') i++;
    size_t o = 0;
    bool need_alnum = true;
    while (i < len) {
      unsigned char c = (unsigned char)s[i];
      if (is_alnum(c)) {
        need_alnum = false;
      } else if ((c == '.' || c == '-') && !need_alnum) {
        need_alnum = true;
      } else {
        break;
      }
      if (o + 1 >= SL_VERSION_PRE_MAX) return -1;
      out->pre[o++] = (char)(is_alpha(c) ? (c | 0x20) : c);
      i++;
    }
    if (o == 0 || need_alnum) return -1; /* "3.8.0-", "3.8.0-b." */
    out->pre[o] = '\0';
  }
  /* Build metadata: validated, then ignored. */
  if (i < len && s[i] == '+') {
    size_t j = ++i;
    while (i < len && (is_alnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '-')) i++;
    if (i == j) return -1;
  }
  *end = i;
  return 0;
}

int sl_version_parse(const char *s, size_t len, struct sl_version *out) {
  size_t b = 0, e = len, end;
  while (b < e && is_ows((unsigned char)s[b])) b++;
  while (e > b && is_ows((unsigned char)s[e - 1])) e--;
  if (b == e) return -1;
  if (parse_version_prefix(s + b, e - b, &end, out, false, NULL) < 0) return -1;
  return end == e - b ? 0 : -1;
}

/* Compares two digit runs numerically without converting (no overflow). */
static int cmp_digits(const char *a, size_t al, const char *b, size_t bl) {
  while (al > 1 && *a == '0') a++, al--;
  while (bl > 1 && *b == '0') b++, bl--;
  if (al != bl) return al < bl ? -1 : 1;
  int c = memcmp(a, b, al);
  return (c > 0) - (c < 0);
}

/* Natural comparison of two non-empty tags, see the file comment. */
static int cmp_tags(const char *a, const char *b) {
  for (;;) {
    while (*a == '.' || *a == '-') a++;
    while (*b == '.' || *b == '-') b++;
    if (!*a || !*b) return (*a != 0) - (*b != 0);
    bool ad = is_digit((unsigned char)*a), bd = is_digit((unsigned char)*b);
    if (ad != bd) return ad ? -1 : 1;
    size_t al = 0, bl = 0;
    if (ad) {
      while (is_digit((unsigned char)a[al])) al++;
      while (is_digit((unsigned char)b[bl])) bl++;
      int c = cmp_digits(a, al, b, bl);
      if (c) return c;
    } else {
      while (is_alpha((unsigned char)a[al])) al++;
      while (is_alpha((unsigned char)b[bl])) bl++;
      int c = memcmp(a, b, al < bl ? al : bl);
      if (c) return (c > 0) - (c < 0);
      if (al != bl) return al < bl ? -1 : 1;
    }
    a += al;
    b += bl;
  }
}

int sl_version_cmp(const struct sl_version *a, const struct sl_version *b) {
  for (int i = 0; i < 4; i++)
    if (a->num[i] != b->num[i]) return a->num[i] < b->num[i] ? -1 : 1;
  bool ar = a->pre[0] == '\0', br = b->pre[0] == '\0';
  if (ar || br) return (int)ar - (int)br; /* release after pre-releases */
  return cmp_tags(a->pre, b->pre);
}

int sl_version_format(const struct sl_version *v, char *buf, size_t cap) {
  int n;
  if (v->num[3])
    n = snprintf(buf, cap, "%u.%u.%u.%u", v->num[0], v->num[1], v->num[2], v->num[3]);
  else
    n = snprintf(buf, cap, "%u.%u.%u", v->num[0], v->num[1], v->num[2]);
  if (n < 0 || (size_t)n >= cap) return -1;
  if (v->pre[0]) {
    int m = snprintf(buf + n, cap - (size_t)n, "-%s", v->pre);
    if (m < 0 || (size_t)m >= cap - (size_t)n) return -1;
    n += m;
  }
  return n;
}

/* ---- ranges ------------------------------------------------------- */

struct vbuild {
  struct sl_vclause *clauses;
  size_t n, cap;
  struct sl_vcmp *cmps; /* of the clause being built */
  size_t ncmp, capcmp;
};

static int push_cmp(struct vbuild *b, enum sl_vop op, const struct sl_version *v) {
  if (b->ncmp == b->capcmp) {
    size_t cap = b->capcmp ? b->capcmp * 2 : 4;
    struct sl_vcmp *p = realloc(b->cmps, cap * sizeof(*p));
    if (!p) return -1;
    b->cmps = p;
    b->capcmp = cap;
  }
  b->cmps[b->ncmp].op = op;
  b->cmps[b->ncmp].v = *v;
  b->ncmp++;
  return 0;
}

/* Moves the clause being built into the list (an empty clause is "any"). */
static int close_clause(struct vbuild *b) {
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 2;
    struct sl_vclause *p = realloc(b->clauses, cap * sizeof(*p));
    if (!p) return -1;
    b->clauses = p;
    b->cap = cap;
  }
  b->clauses[b->n].cmps = b->cmps;
  b->clauses[b->n].n = b->ncmp;
  b->n++;
  b->cmps = NULL;
  b->ncmp = b->capcmp = 0;
  return 0;
}

static void set_err(char *err, size_t errlen, size_t *err_off, size_t off, const char *msg) {
  if (err && errlen) snprintf(err, errlen, "%s", msg);
  if (err_off) *err_off = off;
}

/* The first version of the line starting at |v| truncated to |keep|
 * components: "3.8" -> 3.8.0-0. */
static void wild_bound(struct sl_version *v, unsigned keep) {
  for (unsigned k = keep; k < 4; k++) v->num[k] = 0;
  strcpy(v->pre, "0");
}

static int add_wildcard(struct vbuild *b, const struct sl_version *v, unsigned wild_at) {
  if (wild_at == 0) return 0; /* "x": no constraint */
  struct sl_version lo = *v, hi = *v;
  wild_bound(&lo, wild_at);
  if (push_cmp(b, SL_VOP_GE, &lo) < 0) return -1;
  /* Upper bound: bump the last fixed component, carrying is impossible
   * (UINT32_MAX has no successor: then there is no upper bound). */
  if (hi.num[wild_at - 1] == UINT32_MAX) return 0;
  hi.num[wild_at - 1]++;
  wild_bound(&hi, wild_at);
  return push_cmp(b, SL_VOP_LT, &hi);
}

int sl_vrange_parse(const char *expr, struct sl_vrange *out, char *err, size_t errlen,
                    size_t *err_off) {
  struct vbuild b = {0};
  size_t len = strlen(expr), i = 0;
  bool clause_has_term = false, any_term = false;
  memset(out, 0, sizeof(*out));

  for (;;) {
    while (i < len && is_ows((unsigned char)expr[i])) i++;
    if (i >= len) break;
    if (expr[i] == '|') {
      if (i + 1 >= len || expr[i + 1] != '|') {
        set_err(err, errlen, err_off, i, "expected \"||\"");
        goto fail;
      }
      if (!clause_has_term) {
        set_err(err, errlen, err_off, i, "\"||\" without a range on its left");
        goto fail;
      }
      if (close_clause(&b) < 0) goto oom;
      clause_has_term = false;
      i += 2;
      continue;
    }
    size_t tok = i;
    enum sl_vop op = SL_VOP_EQ;
    bool explicit_op = true;
    if (expr[i] == '>' || expr[i] == '<') {
      bool gt = expr[i] == '>';
      i++;
      if (i < len && expr[i] == '=') {
        op = gt ? SL_VOP_GE : SL_VOP_LE;
        i++;
      } else {
        op = gt ? SL_VOP_GT : SL_VOP_LT;
      }
    } else if (expr[i] == '=') {
      i++;
      if (i < len && expr[i] == '=') i++; /* "==" tolerated */
    } else {
      explicit_op = false;
    }
    while (explicit_op && i < len && is_ows((unsigned char)expr[i])) i++;
    size_t vstart = i, vend = i;
    while (vend < len && !is_ows((unsigned char)expr[vend]) && expr[vend] != '|') vend++;
    if (vend == vstart) {
      set_err(err, errlen, err_off, vstart < len ? vstart : tok,
              "expected a version after the operator");
      goto fail;
    }
    struct sl_version v;
    unsigned wild_at;
    size_t end;
    if (parse_version_prefix(expr + vstart, vend - vstart, &end, &v, true, &wild_at) < 0 ||
        end != vend - vstart) {
      set_err(err, errlen, err_off, vstart, "not a version");
      goto fail;
    }
    if (wild_at != 4) {
      if (op != SL_VOP_EQ) {
        set_err(err, errlen, err_off, tok, "a wildcard version takes no <, <=, > or >= operator");
        goto fail;
      }
      if (add_wildcard(&b, &v, wild_at) < 0) goto oom;
    } else if (push_cmp(&b, op, &v) < 0) {
      goto oom;
    }
    clause_has_term = any_term = true;
    i = vend;
  }
  if (!any_term) {
    set_err(err, errlen, err_off, len, "empty version range");
    goto fail;
  }
  if (!clause_has_term) {
    set_err(err, errlen, err_off, len, "\"||\" without a range on its right");
    goto fail;
  }
  if (close_clause(&b) < 0) goto oom;
  out->clauses = b.clauses;
  out->n = b.n;
  return 0;

oom:
  set_err(err, errlen, err_off, i, "out of memory");
fail:
  free(b.cmps);
  for (size_t k = 0; k < b.n; k++) free(b.clauses[k].cmps);
  free(b.clauses);
  return -1;
}

void sl_vrange_free(struct sl_vrange *r) {
  if (!r) return;
  for (size_t k = 0; k < r->n; k++) free(r->clauses[k].cmps);
  free(r->clauses);
  r->clauses = NULL;
  r->n = 0;
}

static bool cmp_holds(const struct sl_vcmp *c, const struct sl_version *v) {
  int r = sl_version_cmp(v, &c->v);
  switch (c->op) {
  case SL_VOP_EQ: return r == 0;
  case SL_VOP_LT: return r < 0;
  case SL_VOP_LE: return r <= 0;
  case SL_VOP_GT: return r > 0;
  case SL_VOP_GE: return r >= 0;
  }
  return false;
}

bool sl_vrange_match(const struct sl_vrange *r, const struct sl_version *v) {
  for (size_t k = 0; k < r->n; k++) {
    const struct sl_vclause *c = &r->clauses[k];
    size_t j = 0;
    while (j < c->n && cmp_holds(&c->cmps[j], v)) j++;
    if (j == c->n) return true;
  }
  return false;
}
