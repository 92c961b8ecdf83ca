/*
 * sluice — watching the configuration files for changes (proxy/watch.c).
 *
 * What is watched: the configuration file, every *.yaml of its include
 * directory (names starting with '.' left out, as the loader does) and any
 * extra file the running configuration reads (TLS certificates and keys).
 *
 * How. inotify on the DIRECTORIES that hold them (the file's own directory,
 * and the directory of the file it resolves to when it is a symlink), not
 * on the files: an editor that writes a temporary file and renames it, and
 * the Kubernetes ConfigMap update (a new timestamped directory, a
 * `..data_tmp` symlink renamed over `..data`), both replace the file
 * rather than modify it, and a watch on the old inode would go silent.
 * Behind that, a poll once a second for filesystems where inotify misses
 * events (network and some overlay filesystems): it compares a fingerprint
 * of the files (device, inode, size and mtime of each, following
 * symlinks). Either path arms a debounce timer (SL_WATCH_DEBOUNCE_MS
 * after the last event, at most SL_WATCH_DEBOUNCE_MAX_MS after the first),
 * so that a burst of events ends in one check; the check calls back only
 * if the fingerprint differs from the one of the files last loaded. A
 * change is thus seen within about 1.2 s even without inotify.
 *
 * Threads: everything runs on the loop given to sl_watch_new (the main
 * thread's); nothing here is locked.
 */
#ifndef SLUICE_PROXY_WATCH_H
#define SLUICE_PROXY_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct sl_watch;

#define SL_WATCH_DEBOUNCE_MS 150
#define SL_WATCH_DEBOUNCE_MAX_MS 600
#define SL_WATCH_POLL_MS 1000
/* Bounds: directories watched, include-directory entries fingerprinted. */
#define SL_WATCH_MAX_DIRS 16
#define SL_WATCH_MAX_ENTRIES 4096

/* Called on the loop's thread when the files differ from those last
 * loaded (sl_watch_loaded). */
typedef void (*sl_watch_cb)(void *ud);

/* Watches |config_path| (copied) on |loop|; the include directory and
 * extra files are given by sl_watch_set_files. Without inotify (init
 * failed) only the poll runs; that is logged, not fatal. Aborts on
 * out-of-memory (start-up). */
struct sl_watch *sl_watch_new(struct ev_loop *loop, const char *config_path, sl_watch_cb cb,
                              void *ud);

/* Replaces the set of files beyond the configuration file: |include_dir|
 * (NULL: none) and |extra[0..n_extra)| (copied). Re-arms the directory
 * watches. Returns true if the set differs from the previous one. */
bool sl_watch_set_files(struct sl_watch *w, const char *include_dir, const char *const *extra,
                        size_t n_extra);

/* Fingerprint of the watched files as they are now. Take it before
 * reading the files, so that a change made while they are read is seen
 * as a change afterwards. */
uint64_t sl_watch_fingerprint(const struct sl_watch *w);

/* The files with fingerprint |fp| were loaded (successfully or not): only
 * a further change calls back. */
void sl_watch_loaded(struct sl_watch *w, uint64_t fp);

/* Stops every watcher and frees |w| (NULL is ok). */
void sl_watch_del(struct sl_watch *w);

#endif
