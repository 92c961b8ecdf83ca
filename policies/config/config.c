/*
 * sluice — configuration loader: files, the include directory, sources,
 * the error list; sl_config_load() and sl_config_free(). See config.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "sluice/cidrset.h"
#include "sluice/config.h"
#include "sluice/version.h"
#include "config_int.h"

/* ---- errors ------------------------------------------------------- */

/* At most CFG_MAX_ERRORS errors are kept, then one "too many errors": a
 * broken file must not cost memory in proportion to its size. */
void cfg_error_addv(struct sl_config_errors *errs, const char *file, uint32_t line, uint32_t col,
                    const char *fmt, va_list ap) {
  if (errs->n > CFG_MAX_ERRORS) return;
  bool last = errs->n == CFG_MAX_ERRORS;
  if (errs->n == errs->cap) {
    size_t cap = errs->cap ? errs->cap * 2 : 16;
    struct sl_config_error *items = realloc(errs->items, cap * sizeof(*items));
    if (!items) abort();
    errs->items = items;
    errs->cap = cap;
  }
  struct sl_config_error *e = &errs->items[errs->n];
  if (last) file = NULL;
  e->file = NULL;
  if (file && !(e->file = strdup(file))) abort();
  e->line = file ? line : 0;
  e->col = file ? col : 0;
  if (last) {
    if (!(e->message = strdup("too many errors; fix these first"))) abort();
  } else if (vasprintf(&e->message, fmt, ap) < 0) {
    abort();
  }
  errs->n++;
}

void cfg_error_add(struct sl_config_errors *errs, const char *file, uint32_t line, uint32_t col,
                   const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  cfg_error_addv(errs, file, line, col, fmt, ap);
  va_end(ap);
}

void sl_config_errors_print(const struct sl_config_errors *errs, FILE *out) {
  for (size_t i = 0; i < errs->n; i++) {
    const struct sl_config_error *e = &errs->items[i];
    if (e->file && e->line)
      fprintf(out, "%s:%u:%u: %s\n", e->file, e->line, e->col, e->message);
    else if (e->file)
      fprintf(out, "%s: %s\n", e->file, e->message);
    else
      fprintf(out, "%s\n", e->message);
  }
}

void sl_config_errors_free(struct sl_config_errors *errs) {
  for (size_t i = 0; i < errs->n; i++) {
    free(errs->items[i].file);
    free(errs->items[i].message);
  }
  free(errs->items);
  errs->items = NULL;
  errs->n = errs->cap = 0;
}

/* ---- loading ------------------------------------------------------ */

struct loader {
  struct sl_config *cfg;
  struct sl_config_errors *errs;
  struct sl_arena tree;          /* the node trees; freed when loading ends */
  struct cfg_budget spent;       /* over every file of this load */
  struct sl_config_source *src;  /* grows; copied into the snapshot */
  size_t n_src, cap_src;
  bool fatal;                    /* a file could not be read or parsed */
};

/* Reads a regular file of at most CFG_MAX_FILE_BYTES. Returns a malloc'd
 * buffer or NULL with errno set (EFBIG: too large, EISDIR/EINVAL: not a
 * regular file). */
static unsigned char *read_file(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  struct stat st;
  unsigned char *buf = NULL;
  if (fstat(fd, &st) < 0) goto fail;
  if (!S_ISREG(st.st_mode)) {
    errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
    goto fail;
  }
  if (st.st_size > (off_t)CFG_MAX_FILE_BYTES) {
    errno = EFBIG;
    goto fail;
  }
  size_t cap = (size_t)st.st_size + 1, n = 0;
  buf = malloc(cap);
  if (!buf) abort();
  for (;;) {
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0) {
      if (errno == EINTR) continue;
      goto fail;
    }
    if (r == 0) break;
    n += (size_t)r;
    if (n == cap) { /* grew while we read it */
      if (cap > CFG_MAX_FILE_BYTES) {
        errno = EFBIG;
        goto fail;
      }
      cap *= 2;
      unsigned char *nb = realloc(buf, cap);
      if (!nb) abort();
      buf = nb;
    }
  }
  close(fd);
  *len = n;
  return buf;
fail:;
  int e = errno;
  free(buf);
  close(fd);
  errno = e;
  return NULL;
}

static void sha256(const unsigned char *buf, size_t len, uint8_t out[32]) {
  unsigned int n = 32;
  if (!EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL)) abort();
}

/* Reads, hashes and parses one file; returns its root, or NULL (reported,
 * and loading will not go on to the schema). */
static struct cfg_node *load_file(struct loader *L, const char *path) {
  const char *file = sl_arena_xstrdup(L->cfg->arena, path);
  size_t len;
  unsigned char *buf = read_file(path, &len);
  if (!buf) {
    int e = errno;
    cfg_error_add(L->errs, file, 0, 0, "cannot read: %s",
                  e == EFBIG ? "larger than the 4 MiB a configuration file may have"
                             : strerror(e));
    L->fatal = true;
    return NULL;
  }
  if (L->n_src == L->cap_src) {
    L->cap_src = L->cap_src ? 2 * L->cap_src : 8;
    L->src = realloc(L->src, L->cap_src * sizeof(*L->src));
    if (!L->src) abort();
  }
  struct sl_config_source *s = &L->src[L->n_src++];
  s->path = file;
  sha256(buf, len, s->sha256);
  struct cfg_node *root = cfg_yaml_parse(&L->tree, L->errs, &L->spent, file, buf, len);
  free(buf);
  if (!root) {
    L->fatal = true;
    return NULL;
  }
  if (root->kind != CFG_MAP) {
    cfg_error_add(L->errs, file, root->mark.line, root->mark.col,
                  "the top level must be a mapping (listeners:, routes:, ...), not %s",
                  cfg_kind_name(root));
    L->fatal = true;
    return NULL;
  }
  return root;
}

static int strptr_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Merges every *.yaml of the include directory onto |root|, in strcmp
 * order. Names starting with '.' are skipped: that leaves out editor
 * droppings and the "..data" and "..2026_..." entries of a Kubernetes
 * ConfigMap volume, whose visible files are symlinks that stat() follows. */
static struct cfg_node *load_includes(struct loader *L, const char *main_path,
                                      struct cfg_node *root) {
  struct cfg_node *inc_key;
  struct cfg_node *inc = cfg_map_get(root, "include", &inc_key);
  if (!inc || inc->kind != CFG_SCALAR || !inc->len) return root; /* the schema reports */

  const char *dir;
  const char *slash = strrchr(main_path, '/');
  if (inc->str[0] == '/' || !slash) {
    dir = sl_arena_xstrdup(L->cfg->arena, inc->str);
  } else {
    size_t dl = (size_t)(slash - main_path);
    char *d = sl_arena_xalloc(L->cfg->arena, dl + 1 + inc->len + 1);
    memcpy(d, main_path, dl);
    d[dl] = '/';
    memcpy(d + dl + 1, inc->str, inc->len + 1);
    dir = d;
  }
  L->cfg->include_dir = dir;

  DIR *dp = opendir(dir);
  if (!dp) {
    int e = errno;
    if (e == ENOENT)
      cfg_error_add(L->errs, inc->mark.file, inc->mark.line, inc->mark.col,
                    "include: directory '%s' does not exist", dir);
    else
      cfg_error_add(L->errs, inc->mark.file, inc->mark.line, inc->mark.col,
                    "include: cannot open directory '%s': %s", dir, strerror(e));
    L->fatal = true;
    return root;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(dp))) {
    size_t nl = strlen(de->d_name);
    if (de->d_name[0] == '.' || nl <= 5 || strcmp(de->d_name + nl - 5, ".yaml")) continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      names = realloc(names, cap * sizeof(*names));
      if (!names) abort();
    }
    if (!(names[n++] = strdup(de->d_name))) abort();
  }
  closedir(dp);
  if (n) qsort(names, n, sizeof(*names), strptr_cmp);

  struct stat main_st;
  bool have_main = stat(main_path, &main_st) == 0;
  for (size_t i = 0; i < n; i++) {
    char *path;
    if (asprintf(&path, "%s/%s", dir, names[i]) < 0) abort();
    struct stat st;
    if (stat(path, &st) == 0) {
      bool skip = !S_ISREG(st.st_mode) || /* a directory called x.yaml */
                  (have_main && st.st_dev == main_st.st_dev && st.st_ino == main_st.st_ino);
      if (skip) {
        free(path);
        continue;
      }
    }
    struct cfg_node *drop = load_file(L, path);
    free(path);
    if (!drop) continue;
    struct cfg_node *k;
    cfg_map_get(drop, "include", &k);
    if (k) {
      cfg_error_add(L->errs, k->mark.file, k->mark.line, k->mark.col,
                    "include: only the main configuration file may include a directory");
      drop = cfg_map_without(&L->tree, drop, "include");
    }
    root = cfg_merge(&L->tree, root, drop);
  }
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  return root;
}

static size_t file_rank(const struct sl_config_source *src, size_t n_src, const char *file) {
  if (!file) return SIZE_MAX;
  for (size_t i = 0; i < n_src; i++)
    if (!strcmp(src[i].path, file)) return i;
  return n_src;
}

/* Sorts errors [first, n) by file (in load order), line, column, then the
 * order they were found in, and drops exact repeats (a node reached
 * through several aliases reports once). */
static void sort_errors(struct sl_config_errors *errs, size_t first, const struct sl_config_source *src,
                        size_t n_src) {
  size_t n = errs->n - first;
  if (n == 0) return;
  struct sl_config_error *e = errs->items + first;
  size_t *rank = malloc(n * sizeof(*rank));
  if (!rank) abort();
  for (size_t i = 0; i < n; i++) rank[i] = file_rank(src, n_src, e[i].file);
  /* insertion sort: stable, and error lists are short */
  for (size_t i = 1; i < n; i++) {
    struct sl_config_error x = e[i];
    size_t rx = rank[i], j = i;
    while (j > 0 && (rank[j - 1] > rx || (rank[j - 1] == rx && (e[j - 1].line > x.line ||
                                                               (e[j - 1].line == x.line &&
                                                                e[j - 1].col > x.col))))) {
      e[j] = e[j - 1];
      rank[j] = rank[j - 1];
      j--;
    }
    e[j] = x;
    rank[j] = rx;
  }
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    bool dup = false;
    for (size_t j = w; j-- > 0;) {
      if (rank[j] != rank[i] || e[j].line != e[i].line || e[j].col != e[i].col) break;
      if (!strcmp(e[j].message, e[i].message)) {
        dup = true;
        break;
      }
    }
    if (dup) {
      free(e[i].file);
      free(e[i].message);
      continue;
    }
    e[w] = e[i];
    rank[w] = rank[i];
    w++;
  }
  errs->n = first + w;
  free(rank);
}

struct sl_config *sl_config_load(const char *path, struct sl_config_errors *errs) {
  size_t first_err = errs->n;
  struct sl_arena *arena = malloc(sizeof(*arena));
  if (!arena) abort();
  sl_arena_init(arena, 16384);
  struct sl_config *cfg = sl_arena_xalloc(arena, sizeof(*cfg));
  memset(cfg, 0, sizeof(*cfg));
  cfg->arena = arena;

  struct loader L = {.cfg = cfg, .errs = errs};
  sl_arena_init(&L.tree, 65536);
  struct cfg_node *root = load_file(&L, path);
  if (root) root = load_includes(&L, path, root);
  if (!L.fatal) cfg_schema_apply(cfg, root, errs);

  cfg->n_sources = L.n_src;
  if (L.n_src) {
    cfg->sources = sl_arena_xalloc(arena, L.n_src * sizeof(*cfg->sources));
    memcpy(cfg->sources, L.src, L.n_src * sizeof(*cfg->sources));
  }
  sort_errors(errs, first_err, L.src, L.n_src);
  free(L.src);
  sl_arena_free(&L.tree);

  if (errs->n > first_err) {
    sl_config_free(cfg);
    return NULL;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  cfg->loaded_unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  return cfg;
}

void sl_config_free(struct sl_config *cfg) {
  if (!cfg) return;
  if (cfg->identify.device_class_ua_compiled) {
    regfree(cfg->identify.device_class_ua_compiled);
    free(cfg->identify.device_class_ua_compiled);
  }
  for (size_t i = 0; i < cfg->blocklist.n_firmware; i++)
    sl_vrange_free(&cfg->blocklist.firmware[i].versions);
  sl_cidrset_del(cfg->allow.cidrs);
  struct sl_arena *arena = cfg->arena; /* |cfg| lives in it */
  sl_arena_free(arena);
  free(arena);
}
