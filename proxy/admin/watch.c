/*
 * sluice — configuration file watcher. See watch.h.
 */
#include <errno.h>
#include <dirent.h>
#include <ev.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/hash.h"
#include "sluice/log.h"
#include "admin/watch.h"

#define WATCH_MASK                                                                         \
  (IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO |      \
   IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

#define SL_WATCH_FROM(ptr, member) \
  ((struct sl_watch *)((char *)(ptr)-offsetof(struct sl_watch, member)))

struct watch_dir {
  char *path;
  int wd; /* -1: not watched (gone, or inotify refused it); retried at each poll */
};

struct sl_watch {
  struct ev_loop *loop;
  sl_watch_cb cb;
  void *ud;
  char *config_path;
  char *include_dir;  /* NULL: none */
  char **extra;
  size_t n_extra;

  int ifd; /* inotify, -1 if unavailable */
  ev_io io;
  struct watch_dir dirs[SL_WATCH_MAX_DIRS];
  size_t n_dirs;

  ev_timer debounce;
  ev_tstamp first_event; /* of the burst the debounce timer is waiting out */
  ev_timer poll;
  uint64_t loaded_fp;
};

/* ---- fingerprint ---------------------------------------------------- */


/* One file as stat(2) sees it through symlinks: which inode, how big,
 * when last written or renamed. A missing file hashes its errno, so its
 * appearance is a change too. */
static uint64_t file_hash(uint64_t h, const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return sl_hash_mix_u64(h, (uint64_t)errno | (1ULL << 63));
  h = sl_hash_mix_u64(h, (uint64_t)st.st_dev);
  h = sl_hash_mix_u64(h, (uint64_t)st.st_ino);
  h = sl_hash_mix_u64(h, (uint64_t)st.st_size);
  h = sl_hash_mix_u64(h, (uint64_t)st.st_mtim.tv_sec);
  h = sl_hash_mix_u64(h, (uint64_t)st.st_mtim.tv_nsec);
  h = sl_hash_mix_u64(h, (uint64_t)st.st_ctim.tv_sec);
  return sl_hash_mix_u64(h, (uint64_t)st.st_ctim.tv_nsec);
}

/* The drop-ins the loader would read (policies/config.c load_includes:
 * *.yaml, no leading '.'), combined in an order-independent way since
 * readdir(3) order is not guaranteed. At most SL_WATCH_MAX_ENTRIES. */
static uint64_t include_hash(uint64_t h, const char *dir) {
  DIR *dp = opendir(dir);
  if (!dp) return sl_hash_mix_u64(h, (uint64_t)errno | (1ULL << 62));
  uint64_t sum = 0, n = 0;
  char path[PATH_MAX];
  struct dirent *de;
  while ((de = readdir(dp)) && n < SL_WATCH_MAX_ENTRIES) {
    size_t nl = strlen(de->d_name);
    if (de->d_name[0] == '.' || nl <= 5 || strcmp(de->d_name + nl - 5, ".yaml") != 0) continue;
    int pl = snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
    if (pl < 0 || (size_t)pl >= sizeof(path)) continue;
    sum += file_hash(sl_hash_mix(SL_HASH_SEED, de->d_name, nl), path);
    n++;
  }
  closedir(dp);
  return sl_hash_mix_u64(sl_hash_mix_u64(h, n), sum);
}

uint64_t sl_watch_fingerprint(const struct sl_watch *w) {
  uint64_t h = file_hash(SL_HASH_SEED, w->config_path);
  if (w->include_dir) h = include_hash(h, w->include_dir);
  for (size_t i = 0; i < w->n_extra; i++) h = file_hash(h, w->extra[i]);
  return h;
}

/* ---- directory watches ---------------------------------------------- */

static void dirname_into(char *out, size_t cap, const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) {
    snprintf(out, cap, ".");
  } else if (slash == path) {
    snprintf(out, cap, "/");
  } else {
    size_t n = (size_t)(slash - path);
    if (n >= cap) n = cap - 1;
    memcpy(out, path, n);
    out[n] = '\0';
  }
}

static void add_wanted(char wanted[][PATH_MAX], size_t *n, const char *dir) {
  if (!dir[0] || *n >= SL_WATCH_MAX_DIRS) return;
  for (size_t i = 0; i < *n; i++)
    if (strcmp(wanted[i], dir) == 0) return;
  snprintf(wanted[(*n)++], PATH_MAX, "%s", dir);
}

/* The directory of |path| and, when |path| resolves elsewhere (a
 * symlink, a ConfigMap's ..data/...), the directory it resolves to. */
static void add_file_dirs(char wanted[][PATH_MAX], size_t *n, const char *path) {
  char dir[PATH_MAX], real[PATH_MAX];
  dirname_into(dir, sizeof(dir), path);
  add_wanted(wanted, n, dir);
  if (realpath(path, real)) {
    dirname_into(dir, sizeof(dir), real);
    add_wanted(wanted, n, dir);
  }
}

/* Makes the inotify watches those the current file set needs: keeps
 * live ones, adds missing or lost ones (a directory that was deleted and
 * made again), drops the rest. Symlinks move (a ConfigMap swap points
 * ..data at a new directory), so this runs at every check, not once. */
static void watch_rearm(struct sl_watch *w) {
  if (w->ifd < 0) return;
  static char wanted[SL_WATCH_MAX_DIRS][PATH_MAX];
  size_t n = 0;
  add_file_dirs(wanted, &n, w->config_path);
  if (w->include_dir) {
    char real[PATH_MAX];
    add_wanted(wanted, &n, w->include_dir);
    if (realpath(w->include_dir, real)) add_wanted(wanted, &n, real);
  }
  for (size_t i = 0; i < w->n_extra; i++) add_file_dirs(wanted, &n, w->extra[i]);

  struct watch_dir next[SL_WATCH_MAX_DIRS];
  bool reused[SL_WATCH_MAX_DIRS] = {false};
  for (size_t i = 0; i < n; i++) {
    next[i].path = NULL;
    next[i].wd = -1;
    for (size_t j = 0; j < w->n_dirs; j++) {
      if (!reused[j] && w->dirs[j].wd >= 0 && strcmp(w->dirs[j].path, wanted[i]) == 0) {
        next[i] = w->dirs[j];
        reused[j] = true;
        break;
      }
    }
    if (!next[i].path) {
      next[i].path = strdup(wanted[i]);
      if (!next[i].path) abort();
      /* ENOENT (no include directory yet) is normal: the poll covers it
       * and the next check tries again. */
      next[i].wd = inotify_add_watch(w->ifd, wanted[i], WATCH_MASK);
    }
  }
  for (size_t j = 0; j < w->n_dirs; j++) {
    if (reused[j]) continue;
    bool shared = false; /* two paths of one directory get one wd */
    for (size_t i = 0; i < n && !shared; i++) shared = next[i].wd == w->dirs[j].wd;
    if (w->dirs[j].wd >= 0 && !shared) inotify_rm_watch(w->ifd, w->dirs[j].wd);
    free(w->dirs[j].path);
  }
  memcpy(w->dirs, next, n * sizeof(next[0]));
  w->n_dirs = n;
}

/* ---- debounce, poll, events ----------------------------------------- */

static void debounce_arm(struct sl_watch *w) {
  ev_tstamp now = ev_now(w->loop);
  ev_tstamp delay = SL_WATCH_DEBOUNCE_MS / 1000.0;
  if (ev_is_active(&w->debounce)) {
    /* Push the check back, but never past the burst's cap: a directory
     * written to without pause must not postpone it for ever. */
    ev_tstamp cap = w->first_event + SL_WATCH_DEBOUNCE_MAX_MS / 1000.0 - now;
    if (cap <= 0) return;
    if (delay > cap) delay = cap;
    ev_timer_stop(w->loop, &w->debounce);
  } else {
    w->first_event = now;
  }
  ev_timer_set(&w->debounce, delay, 0.0);
  ev_timer_start(w->loop, &w->debounce);
}

static void debounce_cb(struct ev_loop *loop, ev_timer *t, int revents) {
  struct sl_watch *w = SL_WATCH_FROM(t, debounce);
  (void)loop;
  (void)revents;
  watch_rearm(w);
  if (sl_watch_fingerprint(w) != w->loaded_fp) w->cb(w->ud);
}

static void poll_cb(struct ev_loop *loop, ev_timer *t, int revents) {
  struct sl_watch *w = SL_WATCH_FROM(t, poll);
  (void)loop;
  (void)revents;
  watch_rearm(w);
  if (!ev_is_active(&w->debounce) && sl_watch_fingerprint(w) != w->loaded_fp) debounce_arm(w);
}

static void inotify_cb(struct ev_loop *loop, ev_io *io, int revents) {
  struct sl_watch *w = SL_WATCH_FROM(io, io);
  (void)loop;
  (void)revents;
  char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
  bool any = false;
  /* Bounded: a flood of events is one change to check, not a loop. */
  for (int reads = 0; reads < 16; reads++) {
    ssize_t n = read(w->ifd, buf, sizeof(buf));
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    for (char *p = buf; p < buf + n;) {
      const struct inotify_event *ev = (const struct inotify_event *)p;
      if (ev->mask & IN_IGNORED) {
        for (size_t i = 0; i < w->n_dirs; i++)
          if (w->dirs[i].wd == ev->wd) w->dirs[i].wd = -1;
      }
      any = true;
      p += sizeof(*ev) + ev->len;
    }
  }
  if (any) debounce_arm(w);
}

/* ---- lifecycle ------------------------------------------------------- */

struct sl_watch *sl_watch_new(struct ev_loop *loop, const char *config_path, sl_watch_cb cb,
                              void *ud) {
  struct sl_watch *w = calloc(1, sizeof(*w));
  if (!w) abort();
  w->loop = loop;
  w->cb = cb;
  w->ud = ud;
  w->config_path = strdup(config_path);
  if (!w->config_path) abort();
  w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
#ifdef SLUICE_TESTING
  /* Integration tests exercise the poll alone, as on a filesystem where
   * inotify sees nothing. */
  if (w->ifd >= 0 && getenv("SLUICE_TEST_NO_INOTIFY")) {
    close(w->ifd);
    w->ifd = -1;
    errno = ENOSYS;
  }
#endif
  if (w->ifd < 0) {
    sl_log(SL_LOG_WARN, "inotify unavailable: configuration changes are found by polling",
           "error", strerror(errno), NULL);
  } else {
    ev_io_init(&w->io, inotify_cb, w->ifd, EV_READ);
    ev_io_start(loop, &w->io);
  }
  ev_init(&w->debounce, debounce_cb);
  ev_timer_init(&w->poll, poll_cb, SL_WATCH_POLL_MS / 1000.0, SL_WATCH_POLL_MS / 1000.0);
  ev_timer_start(loop, &w->poll);
  watch_rearm(w);
  w->loaded_fp = sl_watch_fingerprint(w);
  return w;
}

static bool same_str(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

bool sl_watch_set_files(struct sl_watch *w, const char *include_dir, const char *const *extra,
                        size_t n_extra) {
  bool same = same_str(w->include_dir, include_dir) && w->n_extra == n_extra;
  for (size_t i = 0; same && i < n_extra; i++) same = strcmp(w->extra[i], extra[i]) == 0;
  if (same) return false;
  free(w->include_dir);
  for (size_t i = 0; i < w->n_extra; i++) free(w->extra[i]);
  free(w->extra);
  w->include_dir = include_dir ? strdup(include_dir) : NULL;
  w->extra = n_extra ? calloc(n_extra, sizeof(*w->extra)) : NULL;
  if ((include_dir && !w->include_dir) || (n_extra && !w->extra)) abort();
  for (size_t i = 0; i < n_extra; i++)
    if (!(w->extra[i] = strdup(extra[i]))) abort();
  w->n_extra = n_extra;
  watch_rearm(w);
  return true;
}

void sl_watch_loaded(struct sl_watch *w, uint64_t fp) { w->loaded_fp = fp; }

void sl_watch_del(struct sl_watch *w) {
  if (!w) return;
  ev_timer_stop(w->loop, &w->debounce);
  ev_timer_stop(w->loop, &w->poll);
  if (w->ifd >= 0) {
    ev_io_stop(w->loop, &w->io);
    close(w->ifd);
  }
  for (size_t i = 0; i < w->n_dirs; i++) free(w->dirs[i].path);
  free(w->include_dir);
  for (size_t i = 0; i < w->n_extra; i++) free(w->extra[i]);
  free(w->extra);
  free(w->config_path);
  free(w);
}
