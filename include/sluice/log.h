/*
 * sluice — JSON-line logging on stderr.
 *
 *   {"ts":"2026-11-21T14:00:00.123Z","level":"info","msg":"listening","listener":"public"}
 *
 * sl_log() takes alternating key/value C strings terminated by NULL; values
 * are JSON-escaped. Use SL_LOG_ENABLED() before building expensive
 * arguments: a disabled level costs one comparison (Redis serverLog).
 * Thread-safe: each line is written with one write(2).
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdarg.h>

enum sl_log_level { SL_LOG_DEBUG = 0, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR };

extern enum sl_log_level sl_log_min_level;

#define SL_LOG_ENABLED(lvl) ((lvl) >= sl_log_min_level)

/* Parses "debug|info|warn|error"; returns -1 on an unknown name. */
int sl_log_level_parse(const char *s, enum sl_log_level *out);

void sl_log_(enum sl_log_level lvl, const char *msg, ...) __attribute__((sentinel));
#define sl_log(lvl, ...)                                                       \
  do {                                                                         \
    if (SL_LOG_ENABLED(lvl)) sl_log_((lvl), __VA_ARGS__);                       \
  } while (0)

/* Like sl_log but the fields are a preformatted JSON fragment without the
 * surrounding braces (e.g. "\"count\":3,\"route\":\"x\""), for numbers. */
void sl_log_json(enum sl_log_level lvl, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


#endif
