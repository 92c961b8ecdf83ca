/*
 * sluice — build and process facts. See build_info.h.
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>

#include "sluice/metrics.h"
#include "admin/build_info.h"

#ifndef SLUICE_COMMIT
#define SLUICE_COMMIT "unknown"
#endif

const char *sl_build_commit(void) { return SLUICE_COMMIT; }

void sl_build_info_print(FILE *out) {
  fprintf(out, "sluice %s (commit %s; nghttp2 %s, %s)\n", SLUICE_VERSION, sl_build_commit(),
          nghttp2_version(0)->version_str, OpenSSL_version(OPENSSL_VERSION));
}

static struct {
  struct sl_metric_series *cpu, *rss, *vsize, *fds, *max_fds;
} proc;

void sl_build_metrics_init(void) {
  struct sl_metric_family *bi = sl_metrics_family(
      "sluice_build_info", "sluice's version and commit, and the library versions it runs with (always 1).",
      SL_METRIC_GAUGE, "version,commit,nghttp2,openssl");
  const char *v[4] = {SLUICE_VERSION, sl_build_commit(), nghttp2_version(0)->version_str,
                      OpenSSL_version(OPENSSL_VERSION)};
  struct sl_metric_series *s = sl_metrics_series(bi, v);
  if (s) sl_metric_gauge_set(s, 1);

  struct timeval tv;
  gettimeofday(&tv, NULL);
  s = sl_metrics_series(sl_metrics_family("process_start_time_seconds",
                                          "Start time of the process since the Unix epoch, in seconds.",
                                          SL_METRIC_GAUGE, ""),
                        NULL);
  if (s) sl_metric_gauge_set_double(s, (double)tv.tv_sec + (double)tv.tv_usec / 1e6);
  proc.cpu = sl_metrics_series(
      sl_metrics_family("process_cpu_seconds_total", "User and system CPU time spent, in seconds.",
                        SL_METRIC_SAMPLED_COUNTER, ""),
      NULL);
  proc.rss = sl_metrics_series(sl_metrics_family("process_resident_memory_bytes",
                                                 "Resident memory size, in bytes.",
                                                 SL_METRIC_GAUGE, ""),
                               NULL);
  proc.vsize = sl_metrics_series(sl_metrics_family("process_virtual_memory_bytes",
                                                   "Virtual memory size, in bytes.",
                                                   SL_METRIC_GAUGE, ""),
                                 NULL);
  proc.fds = sl_metrics_series(
      sl_metrics_family("process_open_fds", "Open file descriptors.", SL_METRIC_GAUGE, ""), NULL);
  proc.max_fds = sl_metrics_series(sl_metrics_family("process_max_fds",
                                                     "The limit of open file descriptors.",
                                                     SL_METRIC_GAUGE, ""),
                                   NULL);
}

/* utime, stime (clock ticks), vsize (bytes) and rss (pages) from
 * /proc/self/stat; false if it cannot be read. The command name (field 2)
 * may hold spaces and parentheses: the fields after it follow the last ')'. */
static bool read_stat(unsigned long *utime, unsigned long *stime, unsigned long *vsize,
                      long *rss) {
  FILE *f = fopen("/proc/self/stat", "r");
  if (!f) return false;
  char buf[1024];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  if (!p) return false;
  /* fields 3.. : state ppid pgrp session tty tpgid flags minflt cminflt
   * majflt cmajflt utime(14) stime(15) cutime cstime priority nice
   * num_threads itrealvalue starttime(22) vsize(23) rss(24) */
  return sscanf(p + 1,
                " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d "
                "%*u %lu %ld",
                utime, stime, vsize, rss) == 4;
}

static long count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  long n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the directory's own descriptor */
}

void sl_build_metrics_collect(void) {
  unsigned long ut, st, vsize;
  long rss;
  if (read_stat(&ut, &st, &vsize, &rss)) {
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    if (proc.cpu && tick > 0) sl_metric_gauge_set_double(proc.cpu, (double)(ut + st) / (double)tick);
    if (proc.rss && page > 0) sl_metric_gauge_set(proc.rss, rss * page);
    if (proc.vsize) sl_metric_gauge_set(proc.vsize, (int64_t)vsize);
  }
  long fds = count_fds();
  if (proc.fds && fds >= 0) sl_metric_gauge_set(proc.fds, fds);
  struct rlimit rl;
  if (proc.max_fds && getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    sl_metric_gauge_set(proc.max_fds, (int64_t)rl.rlim_cur);
}
