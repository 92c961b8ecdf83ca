/*
 * sluice — JSON-line logging. See include/sluice/log.h.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "sluice/json.h"
#include "sluice/log.h"

enum sl_log_level sl_log_min_level = SL_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int sl_log_level_parse(const char *s, enum sl_log_level *out) {
  for (int i = 0; i < 4; i++) {
    if (strcasecmp(s, level_names[i]) == 0) {
      *out = (enum sl_log_level)i;
      return 0;
    }
  }
  if (strcasecmp(s, "warning") == 0) {
    *out = SL_LOG_WARN;
    return 0;
  }
  return -1;
}

static size_t log_prefix(char *buf, size_t cap, enum sl_log_level lvl, const char *msg) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(buf, cap,
                   "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"msg\":\"",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, ts.tv_nsec / 1000000, level_names[lvl]);
  size_t len = n > 0 ? (size_t)n : 0;
  sl_json_escape(buf, cap, &len, msg);
  if (len + 1 < cap) buf[len++] = '"';
  return len;
}

static void log_emit(char *buf, size_t cap, size_t len) {
  if (len + 2 >= cap) len = cap - 3;
  buf[len++] = '}';
  buf[len++] = '\n';
  ssize_t w = write(STDERR_FILENO, buf, len);
  (void)w;
}

void sl_log_(enum sl_log_level lvl, const char *msg, ...) {
  char buf[2048];
  size_t len = log_prefix(buf, sizeof(buf), lvl, msg);
  va_list ap;
  va_start(ap, msg);
  for (;;) {
    const char *k = va_arg(ap, const char *);
    if (!k) break;
    const char *v = va_arg(ap, const char *);
    if (len + 4 >= sizeof(buf)) break;
    buf[len++] = ',';
    buf[len++] = '"';
    sl_json_escape(buf, sizeof(buf), &len, k);
    if (len + 4 >= sizeof(buf)) break;
    buf[len++] = '"';
    buf[len++] = ':';
    buf[len++] = '"';
    sl_json_escape(buf, sizeof(buf), &len, v ? v : "");
    if (len + 1 < sizeof(buf)) buf[len++] = '"';
  }
  va_end(ap);
  log_emit(buf, sizeof(buf), len);
}

void sl_log_json(enum sl_log_level lvl, const char *msg, const char *fmt, ...) {
  if (!SL_LOG_ENABLED(lvl)) return;
  char buf[2048];
  size_t len = log_prefix(buf, sizeof(buf), lvl, msg);
  if (fmt && *fmt && len + 2 < sizeof(buf)) {
    buf[len++] = ',';
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + len, sizeof(buf) - len - 3, fmt, ap);
    va_end(ap);
    if (n > 0) len += (size_t)n < sizeof(buf) - len - 3 ? (size_t)n : sizeof(buf) - len - 4;
  }
  log_emit(buf, sizeof(buf), len);
}
