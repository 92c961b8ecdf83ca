/*
 * sluice — Prometheus metrics registry. See include/sluice/metrics.h.
 *
 * Layout:
 *   - families form a singly linked list in registration order; a new family
 *     is appended under `reg_lock` and published with a release store, so
 *     sl_metrics_render() walks the list without the lock;
 *   - each family keeps its series twice: in a chained hash table keyed by
 *     the label-value tuple (under the family's mutex, used only by
 *     sl_metrics_series()) and in a creation-ordered list published the same
 *     way as families, for rendering;
 *   - a series' value is a relaxed atomic: counters uint64, gauges int64
 *     (or double bits once sl_metric_gauge_set_double() was used), and
 *     histograms per-bucket uint64 counts plus the sum in integer
 *     nanoseconds (fetch_add, no CAS loop).
 *
 * Series are never freed before sl_metrics_reset(), so pointers handed out
 * stay valid for the life of the process.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/hash.h"
#include "sluice/metrics.h"

/* Histogram upper bounds in seconds (Prometheus' defaults, plus 0.001),
 * and the same bounds as written in the `le` label. */
#define HIST_NBOUNDS 13
static const double hist_bounds[HIST_NBOUNDS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
static const char *const hist_le[HIST_NBOUNDS] = {
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
    "0.25",  "0.5",    "1",     "2.5",  "5",     "10",
};

struct sl_metric_series {
  /* Values first, on their own cache line(s), so that workers bumping one
   * series do not false-share with the bookkeeping of another. */
  union {
    _Atomic uint64_t counter;
    struct {
      _Atomic int64_t ival;
      _Atomic uint64_t dbits; /* double, valid when is_double */
      _Atomic bool is_double;
    } gauge;
    struct {
      _Atomic uint64_t buckets[HIST_NBOUNDS + 1]; /* not cumulative; last is +Inf */
      _Atomic uint64_t sum_ns;
    } hist;
  } v;
  struct sl_metric_family *family;
  struct sl_metric_series *hash_next;        /* under family->lock */
  _Atomic(struct sl_metric_series *) next;   /* creation order, for render */
  uint64_t hash;
  char **values;  /* n_labels strings */
  char *labels;   /* rendered `a="x",b="y"` (escaped), "" when no labels */
};

struct sl_metric_family {
  char *name, *help;
  enum sl_metric_type type;
  char **label_names;
  size_t n_labels;
  char *labels_spec; /* as registered, to check re-registration */
  _Atomic(struct sl_metric_family *) next;

  pthread_mutex_t lock; /* protects buckets, nbuckets, count, tail */
  struct sl_metric_series **buckets;
  size_t nbuckets, count;
  _Atomic(struct sl_metric_series *) head;
  struct sl_metric_series *tail;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(struct sl_metric_family *) reg_head;
static struct sl_metric_family *reg_tail; /* under reg_lock */

/* ---- helpers ------------------------------------------------------ */

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) abort();
  return p;
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  return memcpy(xmalloc(n), s, n);
}

static _Noreturn void registry_fatal(const char *name, const char *why) {
  fprintf(stderr, "sluice: metric family %s: %s\n", name, why);
  abort();
}

/* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*; label names: no colon, and not
 * starting with "__" (reserved). */
static bool valid_name(const char *s, size_t n, bool is_label) {
  if (n == 0) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (!is_label && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return !(is_label && n >= 2 && s[0] == '_' && s[1] == '_');
}

/* The label set's fingerprint: each value with its terminating NUL, so
 * that ("ab","c") and ("a","bc") differ. */
static uint64_t hash_values(const char *const *values, size_t n) {
  struct sl_hasher h;
  sl_hasher_init(&h, sl_hash_process_key());
  for (size_t i = 0; i < n; i++) sl_hasher_str(&h, values[i] ? values[i] : "");
  return sl_hasher_final(&h);
}

/* ---- a growable output buffer ------------------------------------- */

struct obuf {
  char *p;
  size_t len, cap;
  bool oom;
};

static void ob_reserve(struct obuf *b, size_t n) {
  if (b->oom || b->cap - b->len >= n) return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap - b->len < n) cap *= 2;
  char *np = realloc(b->p, cap);
  if (!np) {
    b->oom = true;
    return;
  }
  b->p = np;
  b->cap = cap;
}

static void ob_put(struct obuf *b, const char *s, size_t n) {
  ob_reserve(b, n);
  if (b->oom) return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static void ob_puts(struct obuf *b, const char *s) { ob_put(b, s, strlen(s)); }

static void ob_putc(struct obuf *b, char c) { ob_put(b, &c, 1); }

/* Label values escape backslash, double-quote and line feed; HELP text
 * escapes only backslash and line feed (exposition format 0.0.4). */
static void ob_escaped(struct obuf *b, const char *s, bool quote) {
  for (; *s; s++) {
    if (*s == '\\') ob_put(b, "\\\\", 2);
    else if (*s == '\n') ob_put(b, "\\n", 2);
    else if (quote && *s == '"') ob_put(b, "\\\"", 2);
    else ob_putc(b, *s);
  }
}

static void ob_u64(struct obuf *b, uint64_t v) {
  char tmp[24];
  int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
  ob_put(b, tmp, (size_t)n);
}

static void ob_i64(struct obuf *b, int64_t v) {
  char tmp[24];
  int n = snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
  ob_put(b, tmp, (size_t)n);
}

/* Shortest of %.15g..%.17g that reads back as the same double. */
static void ob_double(struct obuf *b, double v) {
  if (isnan(v)) {
    ob_puts(b, "NaN");
    return;
  }
  if (isinf(v)) {
    ob_puts(b, v > 0 ? "+Inf" : "-Inf");
    return;
  }
  char tmp[40];
  int n = 0;
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
    if (strtod(tmp, NULL) == v) break;
  }
  ob_put(b, tmp, (size_t)n);
}

/* ---- registration ------------------------------------------------- */

struct sl_metric_family *sl_metrics_family(const char *name, const char *help,
                                           enum sl_metric_type type, const char *labels) {
  if (!labels) labels = "";
  pthread_mutex_lock(&reg_lock);
  for (struct sl_metric_family *f = atomic_load_explicit(&reg_head, memory_order_relaxed); f;
       f = atomic_load_explicit(&f->next, memory_order_relaxed)) {
    if (strcmp(f->name, name) != 0) continue;
    if (f->type != type || strcmp(f->labels_spec, labels) != 0)
      registry_fatal(name, "registered twice with a different type or labels");
    pthread_mutex_unlock(&reg_lock);
    return f;
  }
  if (!valid_name(name, strlen(name), false)) registry_fatal(name, "invalid metric name");

  struct sl_metric_family *f = xmalloc(sizeof(*f));
  memset(f, 0, sizeof(*f));
  f->name = xstrdup(name);
  f->help = xstrdup(help ? help : "");
  f->type = type;
  f->labels_spec = xstrdup(labels);

  /* Split "route,protocol,code". */
  size_t n = 0;
  if (*labels) {
    n = 1;
    for (const char *p = labels; *p; p++) n += *p == ',';
  }
  f->label_names = xmalloc(n * sizeof(char *));
  const char *p = labels;
  for (size_t i = 0; i < n; i++) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (!valid_name(p, len, true)) registry_fatal(name, "invalid label name");
    if (type == SL_METRIC_HISTOGRAM && len == 2 && memcmp(p, "le", 2) == 0)
      registry_fatal(name, "a histogram cannot have a label named le");
    f->label_names[i] = xmalloc(len + 1);
    memcpy(f->label_names[i], p, len);
    f->label_names[i][len] = '\0';
    for (size_t j = 0; j < i; j++)
      if (strcmp(f->label_names[j], f->label_names[i]) == 0)
        registry_fatal(name, "duplicate label name");
    p = e ? e + 1 : p + len;
  }
  f->n_labels = n;

  pthread_mutex_init(&f->lock, NULL);
  f->nbuckets = 16;
  f->buckets = xmalloc(f->nbuckets * sizeof(*f->buckets));
  memset(f->buckets, 0, f->nbuckets * sizeof(*f->buckets));

  if (reg_tail) atomic_store_explicit(&reg_tail->next, f, memory_order_release);
  else atomic_store_explicit(&reg_head, f, memory_order_release);
  reg_tail = f;
  pthread_mutex_unlock(&reg_lock);
  return f;
}

/* ---- series lookup ------------------------------------------------ */

static bool series_matches(const struct sl_metric_series *s, uint64_t h,
                           const char *const *values, size_t n) {
  if (s->hash != h) return false;
  for (size_t i = 0; i < n; i++)
    if (strcmp(s->values[i], values[i] ? values[i] : "") != 0) return false;
  return true;
}

static void series_free(struct sl_metric_series *s, size_t n) {
  if (!s) return;
  if (s->values)
    for (size_t i = 0; i < n; i++) free(s->values[i]);
  free(s->values);
  free(s->labels);
  free(s);
}

/* Builds a series with its escaped label text; NULL on out-of-memory. */
static struct sl_metric_series *series_create(struct sl_metric_family *f, uint64_t h,
                                              const char *const *values) {
  size_t sz = (sizeof(struct sl_metric_series) + 63) & ~(size_t)63;
  struct sl_metric_series *s = aligned_alloc(64, sz);
  if (!s) return NULL;
  memset(s, 0, sizeof(*s));
  s->family = f;
  s->hash = h;
  s->values = calloc(f->n_labels ? f->n_labels : 1, sizeof(char *));
  if (!s->values) goto fail;
  struct obuf b = {0};
  for (size_t i = 0; i < f->n_labels; i++) {
    const char *v = values[i] ? values[i] : "";
    s->values[i] = strdup(v);
    if (!s->values[i]) {
      free(b.p);
      goto fail;
    }
    if (i) ob_putc(&b, ',');
    ob_puts(&b, f->label_names[i]);
    ob_put(&b, "=\"", 2);
    ob_escaped(&b, v, true);
    ob_putc(&b, '"');
  }
  ob_putc(&b, '\0');
  if (b.oom) {
    free(b.p);
    goto fail;
  }
  s->labels = b.p;
  return s;
fail:
  series_free(s, f->n_labels);
  return NULL;
}

/* Doubles the table when the load factor passes 2; on out-of-memory the
 * table just stays denser. Caller holds f->lock. */
static void family_grow(struct sl_metric_family *f) {
  size_t nb = f->nbuckets * 2;
  struct sl_metric_series **nt = calloc(nb, sizeof(*nt));
  if (!nt) return;
  for (size_t i = 0; i < f->nbuckets; i++) {
    struct sl_metric_series *s = f->buckets[i];
    while (s) {
      struct sl_metric_series *next = s->hash_next;
      size_t j = s->hash & (nb - 1);
      s->hash_next = nt[j];
      nt[j] = s;
      s = next;
    }
  }
  free(f->buckets);
  f->buckets = nt;
  f->nbuckets = nb;
}

struct sl_metric_series *sl_metrics_series(struct sl_metric_family *f, const char *const *values) {
  static const char *const no_values[1] = {""};
  if (!values) values = no_values;
  uint64_t h = hash_values(values, f->n_labels);

  pthread_mutex_lock(&f->lock);
  size_t i = h & (f->nbuckets - 1);
  struct sl_metric_series *s;
  for (s = f->buckets[i]; s; s = s->hash_next)
    if (series_matches(s, h, values, f->n_labels)) goto out;

  s = series_create(f, h, values);
  if (!s) goto out;
  s->hash_next = f->buckets[i];
  f->buckets[i] = s;
  if (f->tail) atomic_store_explicit(&f->tail->next, s, memory_order_release);
  else atomic_store_explicit(&f->head, s, memory_order_release);
  f->tail = s;
  if (++f->count > 2 * f->nbuckets) family_grow(f);
out:
  pthread_mutex_unlock(&f->lock);
  return s;
}

/* ---- updates (any thread; relaxed) ---------------------------------
 * Every updater accepts NULL (a series that could not be allocated) and
 * does nothing, so callers on the request path need not check. */

/* Gauges, and counters sampled from elsewhere, keep an int64 or a double. */
static bool gauge_stored(const struct sl_metric_family *f) {
  return f->type == SL_METRIC_GAUGE || f->type == SL_METRIC_SAMPLED_COUNTER;
}

void sl_metric_add(struct sl_metric_series *s, uint64_t n) {
  if (!s) return;
  switch (s->family->type) {
  case SL_METRIC_COUNTER:
    atomic_fetch_add_explicit(&s->v.counter, n, memory_order_relaxed);
    break;
  case SL_METRIC_GAUGE:
  case SL_METRIC_SAMPLED_COUNTER:
    sl_metric_gauge_add(s, (int64_t)n);
    break;
  case SL_METRIC_HISTOGRAM:
    break;
  }
}

void sl_metric_inc(struct sl_metric_series *s) { sl_metric_add(s, 1); }

static double bits_to_double(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof(d));
  return d;
}

static uint64_t double_to_bits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof(u));
  return u;
}

/* A gauge is integer until sl_metric_gauge_set_double() is first called on
 * it; from then on every update goes to the double (adds by CAS loop).
 * Mixing the two styles concurrently on one series is not supported. */
void sl_metric_gauge_add(struct sl_metric_series *s, int64_t delta) {
  if (!s || !gauge_stored(s->family)) return;
  if (!atomic_load_explicit(&s->v.gauge.is_double, memory_order_relaxed)) {
    atomic_fetch_add_explicit(&s->v.gauge.ival, delta, memory_order_relaxed);
    return;
  }
  uint64_t old = atomic_load_explicit(&s->v.gauge.dbits, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(
      &s->v.gauge.dbits, &old, double_to_bits(bits_to_double(old) + (double)delta),
      memory_order_relaxed, memory_order_relaxed)) {
  }
}

void sl_metric_gauge_set(struct sl_metric_series *s, int64_t value) {
  if (!s || !gauge_stored(s->family)) return;
  if (atomic_load_explicit(&s->v.gauge.is_double, memory_order_relaxed))
    atomic_store_explicit(&s->v.gauge.dbits, double_to_bits((double)value), memory_order_relaxed);
  else
    atomic_store_explicit(&s->v.gauge.ival, value, memory_order_relaxed);
}

void sl_metric_gauge_set_double(struct sl_metric_series *s, double value) {
  if (!s || !gauge_stored(s->family)) return;
  atomic_store_explicit(&s->v.gauge.dbits, double_to_bits(value), memory_order_relaxed);
  atomic_store_explicit(&s->v.gauge.is_double, true, memory_order_relaxed);
}

/* Negative and NaN observations count as 0 s; the sum saturates at about
 * 584 years of nanoseconds rather than wrap. */
void sl_metric_observe(struct sl_metric_series *s, double seconds) {
  if (!s || s->family->type != SL_METRIC_HISTOGRAM) return;
  if (!(seconds > 0)) seconds = 0;
  size_t i = 0;
  while (i < HIST_NBOUNDS && seconds > hist_bounds[i]) i++;
  atomic_fetch_add_explicit(&s->v.hist.buckets[i], 1, memory_order_relaxed);
  double ns = seconds * 1e9 + 0.5;
  uint64_t add = ns >= 1.8e19 ? UINT64_C(1) << 63 : (uint64_t)ns;
  atomic_fetch_add_explicit(&s->v.hist.sum_ns, add, memory_order_relaxed);
}

uint64_t sl_metric_counter_value(const struct sl_metric_series *s) {
  if (!s) return 0;
  struct sl_metric_series *m = (struct sl_metric_series *)s; /* atomics loads need non-const */
  switch (s->family->type) {
  case SL_METRIC_COUNTER:
    return atomic_load_explicit(&m->v.counter, memory_order_relaxed);
  case SL_METRIC_GAUGE:
  case SL_METRIC_SAMPLED_COUNTER: {
    double d = sl_metric_gauge_value(s);
    return d > 0 ? (uint64_t)d : 0;
  }
  case SL_METRIC_HISTOGRAM: {
    uint64_t n = 0;
    for (size_t i = 0; i <= HIST_NBOUNDS; i++)
      n += atomic_load_explicit(&m->v.hist.buckets[i], memory_order_relaxed);
    return n;
  }
  }
  return 0;
}

double sl_metric_gauge_value(const struct sl_metric_series *s) {
  if (!s) return 0;
  struct sl_metric_series *m = (struct sl_metric_series *)s;
  if (s->family->type == SL_METRIC_COUNTER)
    return (double)atomic_load_explicit(&m->v.counter, memory_order_relaxed);
  if (!gauge_stored(s->family)) return 0;
  if (atomic_load_explicit(&m->v.gauge.is_double, memory_order_relaxed))
    return bits_to_double(atomic_load_explicit(&m->v.gauge.dbits, memory_order_relaxed));
  return (double)atomic_load_explicit(&m->v.gauge.ival, memory_order_relaxed);
}

/* ---- rendering ---------------------------------------------------- */

/* `name{labels}` or `name{labels,le="x"}`; braces only when non-empty. */
static void ob_series_name(struct obuf *b, const char *name, const char *suffix,
                           const char *labels, const char *le) {
  ob_puts(b, name);
  ob_puts(b, suffix);
  if (!*labels && !le) return;
  ob_putc(b, '{');
  ob_puts(b, labels);
  if (le) {
    if (*labels) ob_putc(b, ',');
    ob_puts(b, "le=\"");
    ob_puts(b, le);
    ob_putc(b, '"');
  }
  ob_putc(b, '}');
}

static void render_series(struct obuf *b, const struct sl_metric_family *f,
                          struct sl_metric_series *s) {
  switch (f->type) {
  case SL_METRIC_COUNTER:
    ob_series_name(b, f->name, "", s->labels, NULL);
    ob_putc(b, ' ');
    ob_u64(b, atomic_load_explicit(&s->v.counter, memory_order_relaxed));
    ob_putc(b, '\n');
    break;
  case SL_METRIC_GAUGE:
  case SL_METRIC_SAMPLED_COUNTER:
    ob_series_name(b, f->name, "", s->labels, NULL);
    ob_putc(b, ' ');
    if (atomic_load_explicit(&s->v.gauge.is_double, memory_order_relaxed))
      ob_double(b, bits_to_double(atomic_load_explicit(&s->v.gauge.dbits, memory_order_relaxed)));
    else
      ob_i64(b, atomic_load_explicit(&s->v.gauge.ival, memory_order_relaxed));
    ob_putc(b, '\n');
    break;
  case SL_METRIC_HISTOGRAM: {
    /* Read each bucket once so that the cumulative counts, +Inf and _count
     * agree with each other even while workers keep observing. */
    uint64_t cum = 0;
    for (size_t i = 0; i <= HIST_NBOUNDS; i++) {
      cum += atomic_load_explicit(&s->v.hist.buckets[i], memory_order_relaxed);
      ob_series_name(b, f->name, "_bucket", s->labels, i < HIST_NBOUNDS ? hist_le[i] : "+Inf");
      ob_putc(b, ' ');
      ob_u64(b, cum);
      ob_putc(b, '\n');
    }
    ob_series_name(b, f->name, "_sum", s->labels, NULL);
    ob_putc(b, ' ');
    ob_double(b, (double)atomic_load_explicit(&s->v.hist.sum_ns, memory_order_relaxed) / 1e9);
    ob_putc(b, '\n');
    ob_series_name(b, f->name, "_count", s->labels, NULL);
    ob_putc(b, ' ');
    ob_u64(b, cum);
    ob_putc(b, '\n');
    break;
  }
  }
}

static void (*_Atomic collector)(void *);
static void *_Atomic collector_ud;

void sl_metrics_set_collector(void (*fn)(void *ud), void *ud) {
  atomic_store(&collector_ud, ud);
  atomic_store(&collector, fn);
}

int sl_metrics_render(char **out, size_t *len) {
  static const char *const type_names[] = {"counter", "gauge", "histogram", "counter"};
  void (*fn)(void *) = atomic_load(&collector);
  if (fn) fn(atomic_load(&collector_ud));
  struct obuf b = {0};
  ob_reserve(&b, 4096);
  for (struct sl_metric_family *f = atomic_load_explicit(&reg_head, memory_order_acquire); f;
       f = atomic_load_explicit(&f->next, memory_order_acquire)) {
    ob_puts(&b, "# HELP ");
    ob_puts(&b, f->name);
    ob_putc(&b, ' ');
    ob_escaped(&b, f->help, false);
    ob_puts(&b, "\n# TYPE ");
    ob_puts(&b, f->name);
    ob_putc(&b, ' ');
    ob_puts(&b, type_names[f->type]);
    ob_putc(&b, '\n');
    for (struct sl_metric_series *s = atomic_load_explicit(&f->head, memory_order_acquire); s;
         s = atomic_load_explicit(&s->next, memory_order_acquire))
      render_series(&b, f, s);
  }
  ob_putc(&b, '\0'); /* convenience for callers that print it; not counted */
  if (b.oom) {
    free(b.p);
    *out = NULL;
    *len = 0;
    return -1;
  }
  *out = b.p;
  *len = b.len - 1;
  return 0;
}

/* Not thread-safe: no other thread may use the registry meanwhile. */
void sl_metrics_reset(void) {
  pthread_mutex_lock(&reg_lock);
  struct sl_metric_family *f = atomic_load_explicit(&reg_head, memory_order_relaxed);
  atomic_store_explicit(&reg_head, NULL, memory_order_relaxed);
  reg_tail = NULL;
  pthread_mutex_unlock(&reg_lock);
  while (f) {
    struct sl_metric_family *fn = atomic_load_explicit(&f->next, memory_order_relaxed);
    struct sl_metric_series *s = atomic_load_explicit(&f->head, memory_order_relaxed);
    while (s) {
      struct sl_metric_series *sn = atomic_load_explicit(&s->next, memory_order_relaxed);
      series_free(s, f->n_labels);
      s = sn;
    }
    for (size_t i = 0; i < f->n_labels; i++) free(f->label_names[i]);
    free(f->label_names);
    free(f->buckets);
    pthread_mutex_destroy(&f->lock);
    free(f->name);
    free(f->help);
    free(f->labels_spec);
    free(f);
    f = fn;
  }
}
